#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# test-nbdcache-watch.sh — nbdcache stats --watch on a terminal and off.
#
# WHAT: against a real nbdcached (NBDCACHED) after known I/O (1 MiB
# written through NBD, then read back: hits in writeback mode):
# 1. stdout not a terminal: `--watch -n 0.1 --count 3` prints exactly one
#    line per export per refresh (3 x 2), each with a timestamp, export=,
#    a hit ratio, rates ("-" on the first refresh only, numbers after),
#    dirty and target bytes for the cached export, and backing=.
# 2. On a pseudo-terminal (python3's pty): the screen is cleared and
#    redrawn (the cursor hidden, then shown again at the end), shows
#    "export 'disk'" and "hit ratio … overall" with a percentage, IOPS
#    and throughput on the second screen, the dirty bar toward the
#    writeback target, and SIGINT ends it with exit 0.
# 3. Usage errors: -n 0, -n x, --count -1, -n without --watch, --watch
#    with --json: exit 2.
# HOW: run by "make check" in admin/.  The server runs with --run, so it
# stops when the script does; no fixed ports, no sleeps (the terminal test
# reads until the screen appears, then interrupts).  Every check prints
# ok/FAIL; exit 1 if any failed, 77 without nbdcopy.
set -u
: "${NBDCACHE:=./nbdcache}"
: "${NBDCACHED:=../server/nbdcached}"
PYTHON=/usr/bin/python3
[ -x "$PYTHON" ] || PYTHON=python3

for f in "$NBDCACHE" "$NBDCACHED"; do
    if [ ! -x "$f" ]; then
        echo "$0: $f not built" >&2
        exit 1
    fi
done
if ! command -v nbdcopy >/dev/null 2>&1; then
    echo "$0: SKIP: no nbdcopy (libnbd-bin)" >&2
    exit 77
fi
NBDCACHE=$(cd "$(dirname "$NBDCACHE")" && pwd)/$(basename "$NBDCACHE")
NBDCACHED=$(cd "$(dirname "$NBDCACHED")" && pwd)/$(basename "$NBDCACHED")

tmp=$(mktemp -d /tmp/nbdcache-watch.XXXXXX) || exit 1
cleanup () {
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

# ---- 3. usage errors ----
usage_error () {
    what=$1
    shift
    "$NBDCACHE" stats --socket "$tmp/none" "$@" >"$tmp/out" 2>"$tmp/err"
    status=$?
    if [ "$status" -eq 2 ] && grep -q "Usage:" "$tmp/err"; then
        ok "usage error: $what: exit 2"
    else
        fail "usage error: $what: exit $status, expected 2 and the usage"
        sed 's/^/  stderr: /' "$tmp/err" >&2
    fi
}
usage_error "-n 0" --watch -n 0
usage_error "-n x" --watch -n x
usage_error "--count -1" --watch --count -1
usage_error "-n without --watch" -n 1
usage_error "--count without --watch" --count 1
usage_error "--watch --json" --watch --json

# ---- the server ----
cat >"$tmp/c.conf" <<EOF
[server]
log = stderr
workers = 2
control_socket = $tmp/ctl

[cache ssd]
path = $tmp/cache.img
size = 32M
create = yes
bucket_size = 64K
direct = no

[export disk]
backing = $tmp/disk.img
size = 8M
cache = ssd
mode = writeback

[export plain]
backing = $tmp/plain.img
size = 1M
EOF
head -c 1048576 /dev/urandom >"$tmp/data"

cat >"$tmp/onpty.py" <<'EOF'
# Run CMD on a pseudo-terminal; read until the second screen shows the
# last export, then SIGINT it; print its exit status and save everything it wrote.
import os, pty, signal, sys
out, cmd = sys.argv[1], sys.argv[2:]
pid, fd = pty.fork()
if pid == 0:
    os.execv(cmd[0], cmd)
data, sent = b"", False
while True:
    try:
        b = os.read(fd, 65536)
    except OSError:             # EIO: the child closed the terminal
        break
    if not b:
        break
    data += b
    # The second screen (rates need two answers), drawn in full.
    screens = data.split(b"\x1b[H\x1b[2J")
    if not sent and len(screens) >= 3 and b"export 'plain'" in screens[2]:
        os.kill(pid, signal.SIGINT)
        sent = True
_, st = os.waitpid(pid, 0)
open(out, "wb").write(data)
print(os.waitstatus_to_exitcode(st))
EOF

cat >"$tmp/run.sh" <<EOF
set -e
nbdcopy '$tmp/data' "nbd+unix:///disk?socket=$tmp/nbd.sock"
nbdcopy "nbd+unix:///disk?socket=$tmp/nbd.sock" '$tmp/back'
'$NBDCACHE' stats --socket '$tmp/ctl' --watch -n 0.1 --count 3 \
    >'$tmp/plain.txt' 2>'$tmp/plain.err'
'$PYTHON' '$tmp/onpty.py' '$tmp/screen.bin' '$NBDCACHE' stats \
    --socket '$tmp/ctl' --watch -n 0.1 >'$tmp/pty.status'
EOF
"$NBDCACHED" -f -c "$tmp/c.conf" -U "$tmp/nbd.sock" --run "sh $tmp/run.sh" \
    >"$tmp/server.log" 2>&1
status=$?
if [ $status -ne 0 ]; then
    fail "server run: exit status $status"
    tail -n 30 "$tmp/server.log" | sed 's/^/  server: /' >&2
    cat "$tmp/plain.err" >&2 2>/dev/null
else
    ok "server run: I/O, --watch to a file and on a terminal"
fi

# ---- 1. plain lines ----
if "$PYTHON" - "$tmp/plain.txt" >"$tmp/cmp" 2>&1 <<'EOF'; then
import re, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) == 6, "%d lines, not 3 refreshes x 2 exports" % len(lines)
assert "\x1b" not in "".join(lines), "escape sequences off a terminal"
stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
for i, line in enumerate(lines):
    name = ("disk", "plain")[i % 2]
    assert re.match(stamp + " export=%s mode=" % name, line), line
    f = dict(kv.split("=", 1) for kv in line.split(" backing=")[0]
             .split(" ")[1:])
    assert "backing=" in line and line.split(" backing=")[1], line
    first = i < 2
    for k in ("reads/s", "writes/s", "read_bytes/s", "written_bytes/s"):
        assert (f[k] == "-") == first, (k, line)
        if not first:
            assert re.fullmatch(r"\d+", f[k]), (k, line)
    if name == "disk":
        assert re.fullmatch(r"\d+\.\d%", f["hit_ratio"]), line
        assert float(f["hit_ratio"][:-1]) > 0, line
        assert re.fullmatch(r"\d+", f["dirty_bytes"]), line
        assert re.fullmatch(r"\d+", f["target_bytes"]), line
    else:
        assert "dirty_bytes" not in f, line
print("6 lines, rates from the second refresh on, a hit ratio for disk")
EOF
    ok "--watch off a terminal: $(cat "$tmp/cmp")"
else
    fail "--watch off a terminal: plain lines wrong"
    sed 's/^/  /' "$tmp/cmp" "$tmp/plain.txt" >&2
fi

# ---- 2. the terminal ----
if "$PYTHON" - "$tmp/screen.bin" "$tmp/pty.status" >"$tmp/cmp" 2>&1 <<'EOF'; then
import re, sys
screen = open(sys.argv[1], "rb").read().decode("utf-8", "replace")
status = open(sys.argv[2]).read().strip()
assert status == "0", "exit status %s after SIGINT" % status
assert screen.startswith("\x1b[?25l"), "cursor not hidden"
assert "\x1b[H\x1b[2J" in screen, "screen not cleared"
assert screen.rstrip("\r\n").endswith("\x1b[?25h"), "cursor not shown again"
last = screen.split("\x1b[H\x1b[2J")[-1]
assert "nbdcache stats --watch: every 0.1 s" in last, last
assert "export 'disk'  writeback on cache 'ssd'" in last, last
assert "export 'plain'  none" in last, last
m = re.search(r"hit ratio (\S+) now, (\d+\.\d)% overall", last)
assert m and float(m.group(2)) > 0, last
assert re.search(r"dirty \S+ \S+ \[[#-]{20}\] \d+% of target", last), last
assert re.search(r"IOPS read \d+ write \d+ other \d+   throughput read "
                 r"\S+ \S+/s write \S+ \S+/s", last), last
print("cleared, 'disk' with hit ratio %s%% overall, SIGINT: exit 0"
      % m.group(2))
EOF
    ok "--watch on a terminal: $(cat "$tmp/cmp")"
else
    fail "--watch on a terminal: the screen is wrong"
    sed 's/^/  /' "$tmp/cmp" >&2
    cat -v "$tmp/screen.bin" | head -30 | sed 's/^/  screen: /' >&2
fi

if [ "$failures" -ne 0 ]; then
    echo "$0: $failures failure(s)" >&2
    exit 1
fi
echo "all ok"
