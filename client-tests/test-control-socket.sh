#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-control-socket.sh — nbdcached's control socket ([server]
# control_socket): the stats and flush commands that `nbdcache` uses.
#
# WHAT: nbdcached serves "disk" (writeback on cache "ssd"), "plain" (no
# cache) and "ro" (read-only, no cache) with a control socket; a Python
# client (libnbd for the I/O, a plain Unix socket for the control
# protocol) checks, while the server runs:
#  1. the socket is a socket of mode 0600;
#  2. after writes and reads, "stats" is one JSON line: version 1, every
#     export with name/mode/readonly/cache/size_bytes and every field of
#     struct ncache_stats, every open cache with name/path and every field
#     of struct ncache_device_stats, all plausible (writes and bytes
#     counted exactly, dirty or written back, buckets add up);
#  3. "stats NAME" gives only that export and its cache; "stats nope" and
#     "flush nope" give {"error":"no export 'nope'"}; an unknown command,
#     an over-long line: errors;
#  4. a control connection that sends nothing does not hold up others
#     (each is served by its own thread, not the event loop);
#  5. "flush disk": progress lines (remaining <= total), then done ok;
#     afterwards stats show dirty_bytes 0 and dirty_zero_bytes 0, and the
#     backing file equals the model of what was written (cmp, while the
#     server still runs: the flush put it there, not the shutdown);
#  6. "flush plain", "flush ro": done ok; a flush whose client hangs up at
#     once does not hurt the server;
# and then, outside:
#  7. the server stops promptly (a control connection left open does not
#     hold it) and removes the socket;
#  8. SIGTERM while a flush of 32 MiB of dirty data runs: the flush client
#     gets done (ok or "Operation canceled") and the server stops.
# WHY: the admin tool (nbdcache stats|flush, admin/) is written against
# exactly this protocol.
# HOW: captive mode (run_server), nbdcached only (the plugin has no control
# socket).  No sleeps: every wait is a read with a timeout.
set -e
. "${srcdir:-.}/functions.sh"
requires cmp
requires_python
requires_python_nbd
nbdcached_only

tmp=$(make_tmpdir)
ctl=$tmp/ctl.sock
truncate -s 4M "$tmp/ro.img"
write_config "$tmp/c.conf" "$tmp/disk.img" 64M "cache = ssd" "mode = writeback"
# The control socket belongs in [server]: rewrite the header line.
sed -i "s|^\[server\]\$|[server]\ncontrol_socket = $ctl|" "$tmp/c.conf"
cat >> "$tmp/c.conf" <<EOF

[export plain]
backing = $tmp/plain.img
size = 16M

[export ro]
backing = $tmp/ro.img
readonly = yes

[cache ssd]
path = $tmp/cache.img
size = 64M
create = yes
bucket_size = 64K
direct = no
EOF
grep -q "^control_socket = $ctl\$" "$tmp/c.conf" || die "config not written"

cat > "$tmp/control.py" <<'EOF'
import json, os, socket, stat, sys
import nbd

ctl, model_path = sys.argv[1], sys.argv[2]
uri = os.environ["uri"]
M = 1 << 20
fails = 0

def check(cond, what):
    global fails
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        fails += 1

def connect():
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(60)
    s.connect(ctl)
    return s

def command(line):
    """Send one line, return the reply's lines (until the server closes)."""
    s = connect()
    s.sendall(line)
    out = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        out += d
    s.close()
    check(out.endswith(b"\n"), "%r: reply ends with a newline" % line[:40])
    return [json.loads(l) for l in out.decode().splitlines()]

def one(line):
    r = command(line)
    check(len(r) == 1, "%r: one JSON line" % line[:40])
    return r[0]

EXPORT_FIELDS = """reads writes flushes trims zeroes caches extents bytes_read
 bytes_written errors hits misses bypasses promotions dirty_bytes
 dirty_zero_bytes sequential_bypasses writeback_bytes writeback_batches
 writeback_errors writeback_rate writeback_target_bytes throttled_writes
 backing_trims_queued backing_trim_batches backing_trim_extents
 write_bypasses""".split()
DEVICE_FIELDS = """size_bytes bucket_bytes buckets free_buckets data_buckets
 btree_buckets dirty_buckets discard_pending_buckets live_bytes dirty_bytes
 evictions gc_runs gc_freed_buckets gc_stale_keys gc_fixed_buckets
 moving_gc_runs moving_gc_bytes moving_gc_nospc discards discard_batches discard_errors
 journal_commits journal_entries journal_keys journal_waiters
 journal_max_batch_waiters journal_inlined btree_depth btree_nodes_in_memory
 btree_node_bytes_in_memory node_reads node_writes data_checksums
 corrupt_clean_blocks corrupt_dirty_blocks checksum_page_writes""".split()

def uint(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0

# 1. The socket.
st = os.lstat(ctl)
check(stat.S_ISSOCK(st.st_mode), "control socket is a socket")
check(stat.S_IMODE(st.st_mode) == 0o600,
      "control socket mode is 0600 (%o)" % stat.S_IMODE(st.st_mode))

# Some I/O, mirrored in the model of the backing file.
model = bytearray(open(model_path, "rb").read())
h = nbd.NBD()
h.connect_uri(uri)
writes = [(M, os.urandom(2 * M)), (5 * M + 4096, os.urandom(65536)),
          (20 * M, os.urandom(M))]
for off, data in writes:
    h.pwrite(data, off)
    model[off:off + len(data)] = data
h.zero(M, 10 * M)
model[10 * M:11 * M] = bytes(M)
check(h.pread(65536, 5 * M + 4096) == writes[1][1], "read back")
h.pread(M, 30 * M)                        # a hole: may cost no engine read
# A FLUSH commits the big writes; then a 4 KiB FUA write is a journal
# write of its own that carries its data (journal_inlined).
h.flush()
small = os.urandom(4096)
h.pwrite(small, 33 * M, nbd.CMD_FLAG_FUA)
model[33 * M:33 * M + 4096] = small

# 2. stats.
doc = one(b"stats\n")
check(doc.get("version") == 1, "stats: version 1")
exports = {e["name"]: e for e in doc.get("exports", [])}
check(sorted(exports) == ["disk", "plain", "ro"],
      "stats: every export: %s" % sorted(exports))
for name, e in exports.items():
    missing = [f for f in ["mode", "readonly", "cache", "size_bytes"] +
               EXPORT_FIELDS if f not in e]
    check(not missing, "stats: export %s has every field (missing %s)"
          % (name, missing))
    check(all(uint(e[f]) for f in EXPORT_FIELDS if f in e),
          "stats: export %s: counters are unsigned integers" % name)
d = exports["disk"]
check(d["mode"] == "writeback" and d["cache"] == "ssd" and
      d["readonly"] is False and d["size_bytes"] == 64 * M,
      "stats: disk: mode, cache, readonly, size")
check(d["writes"] == 4 and d["zeroes"] == 1 and
      d["bytes_written"] == 3 * M + 65536 + 4096 and d["reads"] >= 1 and
      d["bytes_read"] >= 65536,
      "stats: disk: writes %d zeroes %d bytes_written %d reads %d "
      "bytes_read %d" % (d["writes"], d["zeroes"], d["bytes_written"],
                         d["reads"], d["bytes_read"]))
check(d["hits"] + d["misses"] + d["bypasses"] > 0, "stats: disk: cache used")
check(d["dirty_bytes"] > 0 or d["writeback_bytes"] >= 3 * M,
      "stats: disk: written data is dirty (%d) or written back (%d)"
      % (d["dirty_bytes"], d["writeback_bytes"]))
p = exports["plain"]
check(p["mode"] == "none" and p["cache"] is None and p["hits"] == 0 and
      p["dirty_bytes"] == 0, "stats: plain: mode none, cache null")
check(exports["ro"]["readonly"] is True, "stats: ro is read-only")
caches = doc.get("caches", [])
check([c.get("name") for c in caches] == ["ssd"], "stats: the one cache")
if caches:
    c = caches[0]
    missing = [f for f in ["path"] + DEVICE_FIELDS if f not in c]
    check(not missing, "stats: cache has every field (missing %s)" % missing)
    check(c.get("path", "").endswith("/cache.img"), "stats: cache path")
    check(c.get("bucket_bytes") == 65536 and c.get("buckets", 0) > 0 and
          c.get("free_buckets", 1 << 62) <= c.get("buckets", 0) and
          c.get("size_bytes", 1 << 62) <= 64 * M and
          c.get("live_bytes", 0) > 0,
          "stats: cache: plausible sizes %s" % {k: c.get(k) for k in
          ["bucket_bytes", "buckets", "free_buckets", "size_bytes",
           "live_bytes"]})
    check(1 <= c.get("journal_inlined", 0) <= c.get("journal_commits", 0),
          "stats: cache: the small FUA write's commit carried its data "
          "(journal_inlined %s of %s commits)"
          % (c.get("journal_inlined"), c.get("journal_commits")))

# 3. One export, unknown names, bad commands.
doc = one(b"stats disk\n")
check([e["name"] for e in doc["exports"]] == ["disk"] and
      [c["name"] for c in doc["caches"]] == ["ssd"], "stats disk")
doc = one(b"stats plain\r\n")
check([e["name"] for e in doc["exports"]] == ["plain"] and
      doc["caches"] == [], "stats plain (CRLF): no cache")
check(one(b"stats nope\n") == {"error": "no export 'nope'"}, "stats nope")
check(one(b"flush nope\n") == {"error": "no export 'nope'"}, "flush nope")
check(one(b"bogus\n") == {"error": "unknown command"}, "unknown command")
check(one(b"statsdisk\n") == {"error": "unknown command"}, "statsdisk")
check("error" in one(b"stats " + b"x" * 2000 + b"\n"), "over-long line")

# 4. An idle control connection does not block another.
idle = connect()
check(one(b"stats ro\n")["exports"][0]["name"] == "ro",
      "stats while another control connection is idle")

# 5. flush disk.
data = os.urandom(M)                      # more dirty data, just before
h.pwrite(data, 40 * M)
model[40 * M:41 * M] = data
events = command(b"flush disk\n")
check(len(events) >= 1 and events[-1] == {"event": "done", "result": "ok"},
      "flush disk: done ok: %s" % events[-1:])
progress = events[:-1]
check(all(e.get("event") == "progress" and
          uint(e.get("remaining_bytes")) and uint(e.get("total_bytes")) and
          e["remaining_bytes"] <= e["total_bytes"] for e in progress),
      "flush disk: %d progress lines well-formed" % len(progress))
d = one(b"stats disk\n")["exports"][0]
check(d["dirty_bytes"] == 0, "after flush: dirty_bytes 0 (%d)"
      % d["dirty_bytes"])
check(d["dirty_zero_bytes"] == 0, "after flush: dirty_zero_bytes 0 (%d)"
      % d["dirty_zero_bytes"])
with open(model_path, "wb") as f:
    f.write(model)

# 6. Other flushes.
check(command(b"flush plain\n")[-1] == {"event": "done", "result": "ok"},
      "flush plain (mode none): done ok")
check(command(b"flush ro\n")[-1] == {"event": "done", "result": "ok"},
      "flush ro (read-only): done ok")
s = connect()
s.sendall(b"flush disk\n")
s.close()
check(one(b"stats disk\n")["exports"][0]["name"] == "disk",
      "server fine after a flush client hung up")
idle.close()
h.shutdown()
sys.exit(1 if fails else 0)
EOF

# The backing file's model starts as the backing file (sparse zeroes).
truncate -s 64M "$tmp/model.img"

# 7. A control connection left open when the command ends (a background
# process holding it, idle, for up to 60 s) must not hold up the stop:
# the server waits CONTROL_GRACE_MS (2 s) for it, then cuts it (without
# that, only its 10 s read timeout would end it).  The holder says "ok"
# through a fifo once connected, so the command ends only after that.
mkfifo "$tmp/held"
cat > "$tmp/hold.py" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
    msg = "ok"
except OSError as e:
    msg = "cannot connect: %s" % e
with open(sys.argv[2], "w") as f:
    f.write(msg + "\n")
s.settimeout(60)
try:
    s.recv(1)
except OSError:
    pass
EOF
run_server nbdcached "$tmp/c.conf" disk -- \
  "'$PYTHON' '$tmp/control.py' '$ctl' '$tmp/model.img' &&
   cmp '$tmp/model.img' '$tmp/disk.img' &&
   { '$PYTHON' '$tmp/hold.py' '$ctl' '$tmp/held' & } &&
   read held < '$tmp/held' && echo \"holder: \$held\" &&
   [ \"\$held\" = ok ] && date +%s.%N > '$tmp/t0'" ||
  die "control socket checks failed"
elapsed=$(awk -v t0="$(cat "$tmp/t0")" -v t1="$(date +%s.%N)" \
          'BEGIN { printf "%.1f", t1 - t0 }')
echo "the server stopped $elapsed s after the command ended"
awk "BEGIN { exit !($elapsed < 6) }" ||
  die "the server took $elapsed s to stop with a control connection open"
[ ! -e "$ctl" ] || die "the control socket $ctl was not removed at exit"

# 8. SIGTERM while a flush runs: the flush ends (done ok, or cancelled),
# its client hears how, and the server still stops cleanly.
cat > "$tmp/sigterm.py" <<'EOF'
import json, os, random, signal, socket, sys
import nbd
ctl, server_pid = sys.argv[1], int(sys.argv[2])
h = nbd.NBD()
h.connect_uri(os.environ["uri"])
chunk = 65536
offsets = list(range(0, 32 << 20, chunk))
random.shuffle(offsets)                   # not sequential: stays in the cache
buf = os.urandom(chunk)
for off in offsets:
    h.aio_pwrite(buf, off)
    while h.aio_in_flight() >= 32:
        h.poll(-1)
while h.aio_in_flight() > 0:
    h.poll(-1)
h.shutdown()
s = socket.socket(socket.AF_UNIX)
s.settimeout(60)
s.connect(ctl)
s.sendall(b"flush disk\n")
# The signal goes after the first line: before it, the connection may
# still wait in the listen backlog, which a stopping server resets.
out = b""
while b"\n" not in out:
    d = s.recv(65536)
    if not d:
        break
    out += d
first = json.loads(out.decode().splitlines()[0])
os.kill(server_pid, signal.SIGTERM)
while True:
    d = s.recv(65536)
    if not d:
        break
    out += d
last = json.loads(out.decode().splitlines()[-1])
print("flush: first line %s, last line %s" % (first, last))
if first.get("event") == "done":
    print("note: the flush ended before SIGTERM was sent")
ok = last in ({"event": "done", "result": "ok"},
              {"event": "done", "result": "error",
               "error": os.strerror(125)})        # ECANCELED
with open(sys.argv[3], "w") as f:
    f.write("ok\n" if ok else "bad\n")
EOF
run_server nbdcached "$tmp/c.conf" disk -- \
  "'$PYTHON' '$tmp/sigterm.py' '$ctl' \$PPID '$tmp/sigterm.result'" ||
  die "the server failed after SIGTERM during a flush"
# The server's status on SIGTERM is its own, not the command's.
[ "$(cat "$tmp/sigterm.result" 2>/dev/null)" = ok ] ||
  die "flush during SIGTERM: no clean done line"
[ ! -e "$ctl" ] || die "the control socket was not removed after SIGTERM"
echo "control socket OK"
