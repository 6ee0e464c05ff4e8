#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# test-nbdcache-control.sh — nbdcache stats and flush, end to end.
#
# WHAT:
# 1. Against a fake control socket (a small python3 server speaking the
#    protocol of nbdcache(8)): the request lines sent, the stats table
#    (fields, hit ratio, "?" for fields an older/newer server lacks, control
#    characters from the server replaced), --json passing the document
#    through, server errors (exit 1), garbage / hang-ups / a flush cut off
#    (exit 2), unknown events ignored, the progress bar with an ETA on a
#    terminal only, and the usage and connection errors (missing socket,
#    refused connection, config without control_socket: exit 2, naming
#    the path).
# 2. Against a real nbdcached (NBDCACHED, default ../server/nbdcached)
#    with a control socket, when it is built: stats of a writeback export
#    after writes through NBD, -c CONFIG, flush (exit 0, then the backing
#    file equals what was written, dirty_bytes 0), flush of an unknown
#    export (exit 1).  Skipped with a loud note if nbdcached, nbdcopy or
#    control_socket support is missing.
# HOW: run by "make check" in admin/ with NBDCACHE pointing at the binary.
# Every check prints ok/FAIL; the script exits 1 if any failed.  No fixed
# ports; the fake socket appears only once it listens (bind + listen on a
# temporary name, then rename), so no sleeps for readiness.  KEEP_TMP=1
# keeps the files.
set -u
: "${NBDCACHE:=./nbdcache}"
: "${NBDCACHED:=../server/nbdcached}"
PYTHON=/usr/bin/python3
[ -x "$PYTHON" ] || PYTHON=python3

if [ ! -x "$NBDCACHE" ]; then
    echo "$0: $NBDCACHE not built" >&2
    exit 1
fi
if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "$0: SKIP: no python3 for the fake control socket" >&2
    exit 77
fi
NBDCACHE=$(cd "$(dirname "$NBDCACHE")" && pwd)/$(basename "$NBDCACHE")

# Unix socket paths are short: keep the directory short.
tmp=$(mktemp -d /tmp/nbdcache-ctl.XXXXXX) || exit 1
fake_pid=
cleanup () {
    [ -n "$fake_pid" ] && kill "$fake_pid" 2>/dev/null
    if [ -n "${KEEP_TMP:-}" ]; then echo "KEEP_TMP: leaving $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
failures=0

fail () {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

ok () {
    echo "ok: $*"
}

run () {
    expect=$1
    what=$2
    shift 2
    "$NBDCACHE" "$@" >"$tmp/out" 2>"$tmp/err"
    status=$?
    if [ "$status" -ne "$expect" ]; then
        fail "$what: exit status $status, expected $expect"
        sed 's/^/  stdout: /' "$tmp/out" >&2
        sed 's/^/  stderr: /' "$tmp/err" >&2
        return 1
    fi
    ok "$what"
}

expect () {
    if grep -F -q -- "$2" "$tmp/$1"; then
        ok "$3"
    else
        fail "$3: '$2' not in std$1"
        sed "s/^/  std$1: /" "$tmp/$1" >&2
    fi
}

expect_not () {
    if grep -F -q -- "$2" "$tmp/$1"; then
        fail "$3: '$2' in std$1"
        sed "s/^/  std$1: /" "$tmp/$1" >&2
    else
        ok "$3"
    fi
}

# wait_for FILE: up to 20 s for FILE to appear.
wait_for () {
    i=0
    while [ ! -e "$1" ]; do
        i=$((i + 1))
        [ $i -gt 400 ] && return 1
        "$PYTHON" -c 'import time; time.sleep(0.05)'
    done
}

# ---- the fake control socket ----
cat >"$tmp/fake.py" <<'EOF'
import json, os, socket, sys, time

path, log = sys.argv[1], sys.argv[2]
M = 1 << 20
disk = {"name": "disk", "mode": "writeback", "cache": "ssd",
        "size_bytes": 64 * M,
        "reads": 40, "writes": 30, "flushes": 2, "trims": 1, "zeroes": 3,
        "caches": 0, "extents": 5, "bytes_read": 10 * M,
        "bytes_written": 12 * M, "errors": 0,
        "hits": 30, "misses": 10, "bypasses": 4, "promotions": 10,
        "dirty_bytes": 3 * M, "dirty_zero_bytes": M,
        "sequential_bypasses": 2, "writeback_bytes": 9 * M,
        "writeback_batches": 7, "writeback_errors": 1,
        "writeback_rate": 5 * M, "writeback_target_bytes": 6 * M,
        "throttled_writes": 0, "backing_trims_queued": 6,
        "backing_trim_batches": 2, "backing_trim_extents": 3}
plain = {"name": "plain", "mode": "none", "readonly": True, "cache": None,
         "size_bytes": 1 * M, "reads": 1, "writes": 0}
ssd = {"name": "ssd", "path": "/dev/fake-ssd", "size_bytes": 32 * M,
       "bucket_bytes": 65536, "buckets": 512, "free_buckets": 400,
       "data_buckets": 90, "btree_buckets": 6, "dirty_buckets": 20,
       "discard_pending_buckets": 3, "live_bytes": 5 * M,
       "dirty_bytes": 4 * M, "evictions": 11, "gc_runs": 3,
       "gc_freed_buckets": 17, "gc_stale_keys": 8, "gc_fixed_buckets": 0,
       "moving_gc_runs": 1, "moving_gc_bytes": 2 * M, "discards": 40,
       "discard_batches": 4, "discard_errors": 0, "journal_commits": 50,
       "journal_entries": 52, "journal_keys": 300, "journal_waiters": 75,
       "journal_max_batch_waiters": 9, "journal_inlined": 7,
       "btree_depth": 2,
       "btree_nodes_in_memory": 12, "btree_node_bytes_in_memory": 3 * M,
       "node_reads": 4, "node_writes": 30}
evil = dict(disk, name="ev\x1b[2Jil")

tmp = path + ".tmp"
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(tmp)
s.listen(16)
os.rename(tmp, path)

def progress(c, r, t):
    c.sendall(b'{"event":"progress","remaining_bytes":%d,"total_bytes":%d}\n'
              % (r, t))

while True:
    c, _ = s.accept()
    f = c.makefile("rb")
    line = f.readline().decode("utf-8", "replace")
    with open(log, "a") as l:
        l.write(repr(line) + "\n")
    req = line.rstrip("\n")
    def send(o):
        c.sendall((json.dumps(o) + "\n").encode())
    if req == "stats":
        send({"version": 1, "exports": [disk, plain], "caches": [ssd]})
    elif req == "stats disk":
        send({"version": 1, "exports": [disk], "caches": [ssd]})
    elif req == "stats v2":
        send({"version": 2, "exports": [{"name": "v2", "mode": "writeback",
              "cache": "ssd", "size_bytes": M}], "caches": []})
    elif req == "stats evil":
        send({"version": 1, "exports": [evil], "caches": []})
    elif req == "stats garbage":
        c.sendall(b"this is not json\n")
    elif req == "stats hangup":
        pass
    elif req.startswith("stats "):
        send({"error": "no export '%s'" % req[6:]})
    elif req == "flush disk":
        for r in (8 * M, 4 * M, 0):
            progress(c, r, 8 * M)
        send({"event": "done", "result": "ok"})
    elif req == "flush slow":
        for r in (8 * M, 6 * M, 4 * M, 2 * M, 0):
            progress(c, r, 8 * M)
            time.sleep(0.3)
        send({"event": "done", "result": "ok"})
    elif req == "flush bad":
        progress(c, 8 * M, 8 * M)
        send({"event": "done", "result": "error",
              "error": "backing write failed: Input/output error"})
    elif req == "flush cut":
        progress(c, 8 * M, 8 * M)
    elif req == "flush future":
        send({"event": "something-new", "x": 1})
        send({"event": "done", "result": "ok"})
    elif req == "flush maybe":
        send({"event": "done", "result": "maybe"})
    elif req == "flush clean":
        send({"event": "done", "result": "ok"})
    elif req.startswith("flush "):
        send({"error": "no export '%s'" % req[6:]})
    else:
        send({"error": "unknown request"})
    f.close()   # the socket closes only when its file objects are closed
    c.close()
EOF

sock=$tmp/ctl
"$PYTHON" "$tmp/fake.py" "$sock" "$tmp/requests" &
fake_pid=$!
wait_for "$sock" || { echo "$0: the fake control socket did not start" >&2
                      exit 1; }

# last_request: the last line the fake received (python repr).
last_request () {
    tail -n 1 "$tmp/requests"
}

# ---- usage ----
run 2 "stats with two exports" stats --socket "$sock" a b
run 2 "flush without EXPORT" flush --socket "$sock" &&
    expect err "EXPORT is missing" "flush: missing EXPORT named"
run 2 "--socket and -c together" stats --socket "$sock" -c /nonexistent
run 2 "export name with a newline" flush --socket "$sock" "$(printf 'a\nb')"
run 0 "stats --help" stats --help && expect out "nbdcache stats" "stats usage"
run 0 "flush --help" flush --help && expect out "nbdcache flush" "flush usage"
run 0 "--help lists stats and flush" --help &&
    expect out "stats [EXPORT]" "--help: stats" &&
    expect out "flush EXPORT" "--help: flush"

# ---- connection errors ----
run 2 "stats on a missing socket" stats --socket "$tmp/none" &&
    expect err "$tmp/none" "missing socket: path named" &&
    expect err "No such file" "missing socket: reason"
"$PYTHON" -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1])' "$tmp/dead"
run 2 "flush on a socket nobody listens on" flush --socket "$tmp/dead" disk &&
    expect err "$tmp/dead" "refused: path named" &&
    expect err "refused" "refused: reason"
: >"$tmp/plainfile"
run 2 "stats on a regular file" stats --socket "$tmp/plainfile"

# -c CONFIG
: >"$tmp/disk.img"
cat >"$tmp/nocontrol.conf" <<EOF
[server]
log = stderr

[export disk]
backing = $tmp/disk.img
size = 1M
EOF
run 2 "-c CONFIG without control_socket" stats -c "$tmp/nocontrol.conf" &&
    expect err "control_socket" "no control_socket: key named" &&
    expect err "$tmp/nocontrol.conf" "no control_socket: file named"
run 2 "-c a missing config" stats -c "$tmp/nothing.conf" &&
    expect err "$tmp/nothing.conf" "missing config named"
sed "s|^log = stderr|&\ncontrol_socket = $sock|" "$tmp/nocontrol.conf" \
    >"$tmp/fake.conf"
run 0 "stats -c CONFIG" stats -c "$tmp/fake.conf" &&
    expect out "export 'disk'" "-c CONFIG reaches the socket"

# ---- stats ----
run 0 "stats" stats --socket "$sock" &&
    expect out "export 'disk': writeback on cache 'ssd', 64 MiB" \
        "stats: export head line" &&
    expect out "reads 40, writes 30, flushes 2, trims 1, zeroes 3" \
        "stats: requests" &&
    expect out "hits 30, misses 10, hit ratio 75.0%, promotions 10" \
        "stats: hits, misses and hit ratio" &&
    expect out "bypasses      4, sequential cutoff 2" "stats: bypasses" &&
    expect out "dirty         3 MiB (zero extents 1 MiB)" "stats: dirty" &&
    expect out "rate 5 MiB/s, target 6 MiB; 9 MiB written back in 7 batches, errors 1" \
        "stats: writeback" &&
    expect out "queued 6, batched into 2, extents issued 3" \
        "stats: backing trims" &&
    expect out "export 'plain': none, 1 MiB, read-only" \
        "stats: uncached read-only export" &&
    expect out "cache 'ssd' (/dev/fake-ssd): 32 MiB in 512 buckets of 64 KiB" \
        "stats: cache head line" &&
    expect out "free 400, data 90, btree 6, dirty 20, discard pending 3" \
        "stats: buckets" &&
    expect out "evictions     11 buckets" "stats: evictions" &&
    expect out "3 runs, freed 17 buckets" "stats: gc" &&
    expect out "40 buckets in 4 batches (10.0 per batch)" "stats: discards" &&
    expect out "journal       50 commits, 52 entries, 300 keys, 7 writes carried their data (one sync each)" \
        "stats: journal" &&
    expect out "group commit  1.5 waiters per commit on average, at most 9" \
        "stats: journal batches" &&
    expect out "depth 2, 12 nodes in memory (3 MiB)" "stats: btree"
[ "$(last_request)" = "'stats\\n'" ] && ok "stats sent the line 'stats'" ||
    fail "stats sent $(last_request)"
n=$(grep -c "^export 'plain'" "$tmp/out")
[ "$(sed -n "/^export 'plain'/,\$p" "$tmp/out" | grep -c 'hit ratio')" = 0 ] &&
    ok "no cache lines for an uncached export" ||
    fail "cache lines printed for an uncached export"

run 0 "stats EXPORT" stats --socket "$sock" disk &&
    expect_not out "export 'plain'" "stats EXPORT: only that export"
[ "$(last_request)" = "'stats disk\\n'" ] && ok "stats sent the line 'stats disk'" ||
    fail "stats EXPORT sent $(last_request)"

run 0 "stats --json" stats --socket "$sock" --json
"$PYTHON" - "$tmp/out" <<'EOF' && ok "stats --json: the server's document" ||
import json, sys
doc = json.load(open(sys.argv[1]))
assert doc["version"] == 1
assert [e["name"] for e in doc["exports"]] == ["disk", "plain"]
assert doc["exports"][0]["hits"] == 30
assert doc["exports"][1]["cache"] is None
assert doc["caches"][0]["journal_max_batch_waiters"] == 9
assert doc["caches"][0]["journal_inlined"] == 7
EOF
    fail "stats --json output is not the document"
[ "$(wc -l <"$tmp/out")" -eq 1 ] && ok "stats --json: one line" ||
    fail "stats --json: not one line"

run 1 "stats of an unknown export" stats --socket "$sock" nosuch &&
    expect err "no export 'nosuch'" "server error shown"
run 1 "stats --json of an unknown export" stats --socket "$sock" --json nosuch &&
    expect out '"error"' "--json: the error document on stdout"
run 2 "stats: an answer that is not JSON" stats --socket "$sock" garbage &&
    expect err "not JSON" "garbage reported"
run 2 "stats: the server hangs up" stats --socket "$sock" hangup &&
    expect err "without an answer" "hang-up reported"
run 0 "stats of a version 2 document" stats --socket "$sock" v2 &&
    expect err "version 2" "version mismatch warned" &&
    expect out "hits ?, misses ?, hit ratio -" "absent fields show as ?"
run 0 "stats: control characters from the server" stats --socket "$sock" evil &&
    expect out "export 'ev?[2Jil'" "control characters replaced"

# ---- flush ----
run 0 "flush" flush --socket "$sock" disk &&
    expect out "export 'disk': clean (8 MiB dirty at the start" \
        "flush: final line" &&
    expect_not err "flushing" "flush: no progress bar into a pipe"
[ "$(last_request)" = "'flush disk\\n'" ] && ok "flush sent the line 'flush disk'" ||
    fail "flush sent $(last_request)"
[ ! -s "$tmp/err" ] && ok "flush: nothing on stderr" ||
    fail "flush wrote to stderr: $(cat "$tmp/err")"
run 0 "flush with nothing dirty" flush --socket "$sock" clean &&
    expect out "clean (nothing dirty at the start" "flush: nothing dirty"
run 1 "flush: the server reports an error" flush --socket "$sock" bad &&
    expect err "backing write failed: Input/output error" \
        "flush: server error shown" &&
    expect err "not clean" "flush: says not clean"
run 1 "flush of an unknown export" flush --socket "$sock" nosuch &&
    expect err "no export 'nosuch'" "flush: unknown export shown"
run 2 "flush: connection closed before done" flush --socket "$sock" cut &&
    expect err "before the flush of 'cut' finished" "flush: cut reported"
run 0 "flush: unknown events ignored" flush --socket "$sock" future
run 2 "flush: unknown result" flush --socket "$sock" maybe

# The progress bar, on a terminal only (script(1) gives a pty).
if command -v script >/dev/null 2>&1; then
    script -qec "'$NBDCACHE' flush --socket '$sock' slow" /dev/null \
        >"$tmp/tty" 2>&1
    status=$?
    [ $status -eq 0 ] && ok "flush on a terminal" ||
        fail "flush on a terminal: exit status $status"
    cp "$tmp/tty" "$tmp/out"
    expect out "flushing slow [" "terminal: a progress bar"
    expect out "left, " "terminal: remaining bytes"
    grep -q "ETA 0:0[0-9]" "$tmp/tty" && ok "terminal: an ETA" ||
        fail "terminal: no ETA in $(cat -v "$tmp/tty")"
    expect out "export 'slow': clean" "terminal: final line"
else
    echo "NOTE: no script(1): the progress bar on a terminal is not tested"
fi

kill "$fake_pid" 2>/dev/null
wait "$fake_pid" 2>/dev/null
fake_pid=

# ---- a real nbdcached ----
real_server () {
    if [ ! -x "$NBDCACHED" ]; then
        echo "NOTE: $NBDCACHED not built: the real server is NOT tested" >&2
        return 0
    fi
    if ! command -v nbdcopy >/dev/null 2>&1; then
        echo "NOTE: no nbdcopy: the real server is NOT tested" >&2
        return 0
    fi
    r=$tmp/real
    mkdir -p "$r"
    head -c $((8 * 1048576)) /dev/urandom >"$r/data"
    cat >"$r/c.conf" <<EOF
[server]
log = stderr
workers = 2
control_socket = $r/ctl

[cache ssd]
path = $r/cache.img
size = 32M
create = yes
bucket_size = 64K
direct = no

[export disk]
backing = $r/disk.img
size = 8M
cache = ssd
mode = writeback

[export plain]
backing = $r/plain.img
size = 1M
EOF
    cat >"$r/run.sh" <<EOF
set -e
nbdcopy '$r/data' "nbd+unix:///disk?socket=$r/nbd.sock"
'$NBDCACHE' stats -c '$r/c.conf' >'$r/stats1.txt'
'$NBDCACHE' stats --socket '$r/ctl' --json disk >'$r/stats1.json'
'$NBDCACHE' flush -c '$r/c.conf' disk >'$r/flush.txt'
cmp '$r/data' '$r/disk.img'
'$NBDCACHE' stats --socket '$r/ctl' --json >'$r/stats2.json'
rc=0
'$NBDCACHE' flush --socket '$r/ctl' nosuch 2>'$r/flush-nosuch.err' || rc=\$?
echo \$rc >'$r/flush-nosuch.rc'
EOF
    "$NBDCACHED" -f -c "$r/c.conf" -U "$r/nbd.sock" --run "sh $r/run.sh" \
        >"$r/server.log" 2>&1
    status=$?
    if grep -q "control_socket" "$r/server.log" &&
        grep -qi "unknown key" "$r/server.log"; then
        echo "NOTE: this nbdcached has no control_socket: the real server" \
             "is NOT tested" >&2
        return 0
    fi
    if [ $status -ne 0 ]; then
        fail "real server: exit status $status"
        sed 's/^/  server: /' "$r/server.log" | tail -n 40 >&2
        return 0
    fi
    ok "real server: writes, stats, flush; the backing file equals the data"
    cp "$r/stats1.txt" "$tmp/out"
    expect out "export 'disk': writeback on cache 'ssd', 8 MiB" \
        "real stats: disk"
    expect out "written 8 MiB" "real stats: bytes written"
    expect out "export 'plain': none" "real stats: plain"
    expect out "cache 'ssd' ($r/cache.img)" "real stats: cache"
    cp "$r/flush.txt" "$tmp/out"
    expect out "export 'disk': clean" "real flush: clean"
    "$PYTHON" - "$r/stats1.json" "$r/stats2.json" <<'EOF' &&
import json, sys
one = json.load(open(sys.argv[1]))
two = json.load(open(sys.argv[2]))
assert [e["name"] for e in one["exports"]] == ["disk"], one
assert one["exports"][0]["bytes_written"] == 8 << 20, one
disk = [e for e in two["exports"] if e["name"] == "disk"][0]
assert disk["dirty_bytes"] == 0 and disk["dirty_zero_bytes"] == 0, disk
assert len(two["exports"]) == 2 and len(two["caches"]) == 1, two
EOF
        ok "real stats --json: one export; after the flush nothing dirty" ||
        fail "real stats --json: unexpected documents"
    [ "$(cat "$r/flush-nosuch.rc")" = 1 ] &&
        ok "real flush of an unknown export: exit 1" ||
        fail "real flush of an unknown export: exit $(cat "$r/flush-nosuch.rc")"
}
real_server

if [ "$failures" -ne 0 ]; then
    echo "$0: $failures failure(s)" >&2
    exit 1
fi
echo "$0: all passed"
exit 0
