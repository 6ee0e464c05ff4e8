#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-libnbd-reload.sh — nbdcached re-reads its config (`nbdcache reload`,
# SIGHUP) under a running 4-connection workload.
#
# WHAT: nbdcached serves "keep", "gone", "chg" and "busy" (writeback on
# cache "ssd").  While the integrity program (test-integrity.c: random
# writes, zeroes, trims and reads over 4 connections checked against a
# model) runs on "keep", a Python client (reload.py):
#  1. writes a pattern to "gone" and "chg" (flushed: dirty in the cache),
#     keeps a connection to "busy" open, and sends writes to "gone" that
#     race the reload;
#  2. reloads (nbdcache reload) a config where "gone" is removed, "new"
#     added (uncached), "chg" has mode = writethrough and a new size
#     (ignored for an existing file, but not a live key: idle, reopened),
#     "busy" mode = writethrough and a new sequential_cutoff (a client is
#     connected: the engine's live setter applies them "at once") and
#     readonly = yes, "keep" a new description: the report names each;
#  3. the racing writes each either succeeded or got ESHUTDOWN (nothing
#     else: no dropped reply); a write after the reload gets ESHUTDOWN, and
#     then the server closes the connection;
#  4. LIST shows keep, chg, busy, new; "gone" cannot be opened; "keep"
#     has the new description; "new" takes writes; "chg" reads back its
#     pattern (the dirty data survived the reopen) and stats say
#     writethrough; "busy" is in writethrough and still serves its
#     client, which can still write, while a new connection is read-only
#     (EPERM);
#  5. a config with an unknown key: reload exits 1 naming FILE:LINE, and
#     the running config is unchanged (LIST);
#  6. a config that changes [cache ssd] while exports use it: reload
#     exits 1 ("is changed while export(s) …"), nothing changes;
#  7. SIGHUP with export "hup" added: LIST shows it (a bounded wait:
#     SIGHUP has no answer);
# and the integrity program, still running during all of it, passes;
# finally the server is restarted with the first config and "gone" reads
# back the pattern and every racing write that succeeded (its dirty data
# stayed in the cache).
# WHY: issue 12 §3: live reconfiguration without cutting unaffected
# clients or losing acknowledged data.
# HOW: captive mode (run_server), nbdcached only (the plugin has no
# reload).  No sleeps as synchronisation: SIGHUP is waited for by polling
# LIST with a deadline.
set -e
. "${srcdir:-.}/functions.sh"
requires_python
requires_python_nbd
nbdcached_only

NBDCACHE_TOOL=$(abspath "${NBDCACHE_TOOL:-$top_builddir/admin/nbdcache}")
[ -x "$NBDCACHE_TOOL" ] || die "nbdcache is not built: $NBDCACHE_TOOL"
prog=$(cd "${builddir:-.}" && pwd)/test-integrity
[ -x "$prog" ] || die "test-integrity is not built: $prog"
export NBDCACHE_TOOL

tmp=$(make_tmpdir)
ctl=$tmp/ctl.sock

# gen_config FILE VARIANT: the one place the configs are written.
#   1     the first config
#   2     gone removed, new added, chg writethrough, busy writethrough and
#         sequential_cutoff,
#         keep's description
#   bad   2 with an unknown key in [export keep]
#   cache 2 with [cache ssd] node_cache_size changed
#   hup   2 with export "hup" added
gen_config ()
{
  local f=$1 v=$2 mode=writeback desc=before cutoff="" nodecache=""
  local busymode=writeback chgsize=16M
  [ "$v" = 1 ] || { mode=writethrough; desc=after; busymode=writethrough;
                    chgsize=24M;
                    cutoff="sequential_cutoff = 1M
readonly = yes"; }
  [ "$v" = cache ] && nodecache="node_cache_size = 8M"
  {
    echo "[server]"
    echo "log = stderr"
    echo "workers = 4"
    echo "control_socket = $ctl"
    echo
    echo "[export keep]"
    echo "backing = $tmp/keep.img"
    echo "size = 64M"
    echo "cache = ssd"
    echo "mode = writeback"
    echo "description = $desc"
    if [ "$v" = bad ]; then echo "no_such_key = 1"; fi
    echo
    if [ "$v" = 1 ]; then
      echo "[export gone]"
      echo "backing = $tmp/gone.img"
      echo "size = 16M"
      echo "cache = ssd"
      echo "mode = writeback"
      echo
    else
      echo "[export new]"
      echo "backing = $tmp/new.img"
      echo "size = 8M"
      echo
    fi
    if [ "$v" = hup ]; then
      echo "[export hup]"
      echo "backing = $tmp/hup.img"
      echo "size = 8M"
      echo
    fi
    echo "[export chg]"
    echo "backing = $tmp/chg.img"
    echo "size = $chgsize"
    echo "cache = ssd"
    echo "mode = $mode"
    echo
    echo "[export busy]"
    echo "backing = $tmp/busy.img"
    echo "size = 16M"
    echo "cache = ssd"
    echo "mode = $busymode"
    if [ -n "$cutoff" ]; then echo "$cutoff"; fi
    echo
    echo "[cache ssd]"
    echo "path = $tmp/cache.img"
    echo "size = 256M"
    echo "create = yes"
    echo "bucket_size = 64K"
    echo "direct = no"
    if [ -n "$nodecache" ]; then echo "$nodecache"; fi
  } > "$f" || die "cannot write $f"
}

for v in 1 2 bad cache hup; do
  gen_config "$tmp/c$v.conf" $v
done
cp "$tmp/c1.conf" "$tmp/c.conf"
# The line of the unknown key, for the FILE:LINE check.
badline=$(grep -n '^no_such_key' "$tmp/cbad.conf" | cut -d: -f1)
[ -n "$badline" ] || die "cbad.conf has no bad line"

cat > "$tmp/reload.py" <<'EOF'
import json, os, shutil, signal, socket, subprocess, sys, time
import nbd

tmp, ctl, badline, server_pid = (sys.argv[1], sys.argv[2], int(sys.argv[3]),
                                 int(sys.argv[4]))
sock = os.environ["unixsocket"]
tool = os.environ["NBDCACHE_TOOL"]
conf = tmp + "/c.conf"
M = 1 << 20
fails = 0

def check(cond, what):
    global fails
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        fails += 1

def connect(name):
    h = nbd.NBD()
    h.set_export_name(name)
    h.connect_unix(sock)
    return h

def names():
    h = nbd.NBD()
    h.set_opt_mode(True)
    h.connect_unix(sock)
    out = []
    h.opt_list(lambda n, d: out.append(n) or 0)
    h.opt_abort()
    return sorted(out)

def reload(racing_handle=None):
    """nbdcache reload; meanwhile racing_handle's requests keep moving."""
    p = subprocess.Popen([tool, "reload", "--socket", ctl], text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    while racing_handle and racing_handle.aio_in_flight() > 0 and \
          p.poll() is None:
        racing_handle.poll(10)
    p.stdout_text, p.stderr_text = p.communicate(timeout=120)
    p.stdout, p.stderr = p.stdout_text, p.stderr_text
    print("nbdcache reload: exit %d\n--- stdout\n%s--- stderr\n%s---"
          % (p.returncode, p.stdout, p.stderr), flush=True)
    return p

def stats():
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(60)
    s.connect(ctl)
    s.sendall(b"stats\n")
    out = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        out += d
    return {e["name"]: e for e in json.loads(out)["exports"]}

def pattern(byte):
    return bytes([byte]) * M

# 1. Data on "gone" and "chg", a client on "busy".
gone = connect("gone")
gone.pwrite(pattern(0x11), 0)
gone.flush()
chg = connect("chg")
chg.pwrite(pattern(0x22), 0)
chg.flush()
chg.shutdown()
del chg
busy = connect("busy")
busy.pwrite(pattern(0x33), 0)
check(names() == ["busy", "chg", "gone", "keep"], "LIST before: %s" % names())

# Writes to "gone" that race the reload: 1 MiB each at 1..16 MiB.
racing = {}
for i in range(1, 16):
    racing[i] = gone.aio_pwrite(pattern(0x40 + i), i * M)

# 2. Reload.
shutil.copy(tmp + "/c2.conf", conf)
p = reload(gone)
check(p.returncode == 0, "reload: exit 0")
out = p.stdout
check("export 'new': added" in out, "report: new added")
check("export 'gone': removed" in out, "report: gone removed")
check("export 'chg': size changed: reopened" in out, "report: chg reopened")
check("export 'busy': changed (mode, sequential_cutoff): applied at once"
      in out, "report: busy's mode and cutoff applied at once")
check("export 'keep': changed (description)" in out,
      "report: keep's description")
check("export 'busy': changed (readonly)" in out, "report: busy read-only")

# 3. The racing writes: done or ESHUTDOWN, nothing else.
ok = []
while gone.aio_in_flight() > 0:
    gone.poll(-1)
for i, cookie in racing.items():
    try:
        gone.aio_command_completed(cookie)
        ok.append(i)
    except nbd.Error as e:
        check(e.errno == "ESHUTDOWN",
              "racing write %d: ESHUTDOWN if not done (got %s)" % (i, e))
print("racing writes that completed: %s" % ok, flush=True)
with open(tmp + "/racing-ok", "w") as f:
    f.write(" ".join(str(i) for i in ok))
try:
    gone.pwrite(pattern(0x99), 0)
    check(False, "a write to a removed export fails")
except nbd.Error as e:
    check(e.errno == "ESHUTDOWN",
          "a write after the reload gets ESHUTDOWN (%s)" % e)
# Then the server closes the connection (after a quiet second).
deadline = time.monotonic() + 20
while not gone.aio_is_dead() and not gone.aio_is_closed() \
      and time.monotonic() < deadline:
    try:
        gone.poll(1000)
    except nbd.Error:
        break
check(gone.aio_is_dead() or gone.aio_is_closed(),
      "the removed export's connection was closed by the server")

# 4. The new table.
check(names() == ["busy", "chg", "keep", "new"], "LIST after: %s" % names())
try:
    connect("gone")
    check(False, "gone cannot be opened")
except nbd.Error as e:
    check(True, "gone cannot be opened (%s)" % e)
h = nbd.NBD()
h.set_opt_mode(True)
h.set_full_info(True)
h.set_export_name("keep")
h.connect_unix(sock)
h.opt_info()
check(h.get_export_description() == "after",
      "keep: new description %r" % h.get_export_description())
h.opt_abort()
new = connect("new")
new.pwrite(pattern(0x55), 0)
check(new.pread(M, 0) == pattern(0x55), "new: takes writes")
new.shutdown()
chg = connect("chg")
check(chg.pread(M, 0) == pattern(0x22),
      "chg: its dirty data survived the reopen")
chg.shutdown()
st = stats()
check(st["chg"]["mode"] == "writethrough", "chg: stats say writethrough")
check(st["busy"]["mode"] == "writethrough",
      "busy: writethrough at once, its client still connected")
check(busy.pread(M, 0) == pattern(0x33), "busy: its client never noticed")
busy.pwrite(pattern(0x34), M)
check(busy.pread(M, M) == pattern(0x34),
      "busy: the client opened before readonly = yes still writes")
ro = connect("busy")
check(ro.is_read_only(), "busy: a new connection is read-only")
try:
    ro.pwrite(pattern(0x35), 2 * M)
    check(False, "busy: a new connection cannot write")
except nbd.Error as e:
    check(e.errno == "EPERM", "busy: a new connection's write gets EPERM (%s)"
          % e)
ro.shutdown()

# 5. A bad config.
shutil.copy(tmp + "/cbad.conf", conf)
p = reload()
check(p.returncode == 1, "bad config: exit 1")
check("c.conf:%d:" % badline in p.stderr and "no_such_key" in p.stderr,
      "bad config: FILE:LINE of the unknown key")
check("old configuration keeps running" in p.stderr,
      "bad config: says the old one keeps running")
check(names() == ["busy", "chg", "keep", "new"], "LIST unchanged")

# 6. A cache section in use changed.
shutil.copy(tmp + "/ccache.conf", conf)
p = reload()
check(p.returncode == 1, "cache in use changed: exit 1")
check("cache 'ssd' is changed while export(s)" in p.stderr,
      "cache in use changed: refused with the reason")
check(names() == ["busy", "chg", "keep", "new"], "LIST unchanged")

# 7. SIGHUP.
shutil.copy(tmp + "/chup.conf", conf)
os.kill(server_pid, signal.SIGHUP)
deadline = time.monotonic() + 30
while "hup" not in names() and time.monotonic() < deadline:
    time.sleep(0.05)            # a readiness wait: SIGHUP has no answer
check(names() == ["busy", "chg", "hup", "keep", "new"],
      "SIGHUP: LIST %s" % names())
busy.shutdown()
sys.exit(1 if fails else 0)
EOF

cat > "$tmp/run.sh" <<EOF
set -e
server_pid=\$(cat '$tmp/pid')
TEST_DURATION_S=\${TEST_DURATION_S:-20} '$prog' "\$uri" > '$tmp/integrity.log' 2>&1 &
ipid=\$!
rc=0
'$PYTHON' '$tmp/reload.py' '$tmp' '$ctl' $badline \$server_pid || rc=1
if kill -0 \$ipid 2>/dev/null; then
  echo "ok   the integrity program ran during every reload"
else
  echo "FAIL the integrity program ended before the reloads did"
  rc=1
fi
wait \$ipid || { echo "FAIL the integrity program failed on keep"; rc=1; }
cat '$tmp/integrity.log'
exit \$rc
EOF
run_server nbdcached "$tmp/c.conf" keep -P "$tmp/pid" -- "sh '$tmp/run.sh'" ||
  die "the reload run failed"

# The removed export's dirty data stayed in the cache: serve the first
# config again and read "gone" back.
cp "$tmp/c1.conf" "$tmp/c.conf"
cat > "$tmp/verify.py" <<'EOF'
import os, sys
import nbd
M = 1 << 20
h = nbd.NBD()
h.connect_uri(os.environ["uri"])
fails = 0
if h.pread(M, 0) != bytes([0x11]) * M:
    print("FAIL gone: the flushed pattern is lost"); fails += 1
ok = [int(i) for i in open(sys.argv[1]).read().split()]
for i in ok:
    if h.pread(M, i * M) != bytes([0x40 + i]) * M:
        print("FAIL gone: acknowledged racing write %d is lost" % i)
        fails += 1
print("gone: pattern and %d acknowledged racing writes read back" % len(ok))
sys.exit(1 if fails else 0)
EOF
run_server nbdcached "$tmp/c.conf" gone -- \
  "'$PYTHON' '$tmp/verify.py' '$tmp/racing-ok'" ||
  die "the removed export lost data"
