#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-reload-inflight.sh — a reload removes an export while one of its
# requests is in a worker: that request finishes and succeeds, the next
# gets ESHUTDOWN, then the server closes the connection.
#
# WHAT: export "gone" is uncached over a remote (nbdkit's memory plugin
# behind the log filter and the delay filter: every write takes
# 5 s), so a write to it stays in a worker while the test reloads.  A
# Python client:
#  1. sends one write to "gone" and waits until the remote's log shows it
#     arrived (so nbdcached has handed it to a worker);
#  2. `nbdcache reload` with "gone" removed: exit 0, the report says one
#     connection finishes its requests; the reload answers while the write
#     is still in flight (it does not wait for the removed export);
#  3. the in-flight write completes without an error; the next write gets
#     ESHUTDOWN; the server then closes the connection;
#  4. "keep" (a file backing) still serves a new connection.
# WHY: the NBD spec lets a server that is going away answer ESHUTDOWN, but
# a request it already accepted must still be carried out and answered.
# HOW: captive mode inside the remote's --run, nbdcached only.  The one
# wait (for the remote's log line) is a readiness wait with a deadline.
set -e
. "${srcdir:-.}/functions.sh"
requires nbdkit
requires_python
requires_python_nbd
nbdcached_only

NBDCACHE_TOOL=$(abspath "${NBDCACHE_TOOL:-$top_builddir/admin/nbdcache}")
[ -x "$NBDCACHE_TOOL" ] || die "nbdcache is not built: $NBDCACHE_TOOL"
export NBDCACHE_TOOL

tmp=$(make_tmpdir)
# c1.conf: keep and gone; c2.conf: keep only.
for v in 1 2; do
  {
    echo "[server]"
    echo "log = stderr"
    echo "workers = 4"
    echo "control_socket = $tmp/ctl.sock"
    echo
    echo "[export keep]"
    echo "backing = $tmp/keep.img"
    echo "size = 8M"
    if [ $v = 1 ]; then
      echo
      echo "[export gone]"
      echo "backing = nbd+unix:///?socket=$tmp/remote.sock"
      echo "backing_timeout = 60"
    fi
  } > "$tmp/c$v.conf" || die "cannot write $tmp/c$v.conf"
done
cp "$tmp/c1.conf" "$tmp/c.conf"

cat > "$tmp/inflight.py" <<'EOF'
import os, shutil, subprocess, sys, time
import nbd

tmp = sys.argv[1]
sock = os.environ["unixsocket"]
tool = os.environ["NBDCACHE_TOOL"]
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

def remote_writes():
    try:
        with open(tmp + "/remote.log") as f:
            return sum(1 for l in f if "Write" in l and "return" not in l)
    except FileNotFoundError:
        return 0

# 1. One write in a worker (the remote holds it for 5 s).
h = connect("gone")
before = remote_writes()
cookie = h.aio_pwrite(b"\x77" * 4096, 0)
deadline = time.monotonic() + 30
while remote_writes() == before and time.monotonic() < deadline:
    h.poll(10)                  # readiness wait: drives libnbd, 10 ms
check(remote_writes() > before, "the write reached the remote")

# 2. Remove "gone".
shutil.copy(tmp + "/c2.conf", tmp + "/c.conf")
p = subprocess.run([tool, "reload", "--socket", tmp + "/ctl.sock"],
                   capture_output=True, text=True, timeout=60)
print("nbdcache reload: exit %d\n%s%s" % (p.returncode, p.stdout, p.stderr),
      flush=True)
check(p.returncode == 0, "reload: exit 0")
check("export 'gone': removed: 1 connection(s) finish their requests"
      in p.stdout, "reload: one connection finishes its requests")
check(not h.aio_command_completed(cookie),
      "the reload answered while the write was still in flight")

# 3. The write finishes and succeeds; the next one gets ESHUTDOWN.
while not h.aio_command_completed(cookie):
    h.poll(-1)
check(True, "the in-flight write completed without an error")
try:
    h.pwrite(b"\x78" * 4096, 4096)
    check(False, "a write after the reload fails")
except nbd.Error as e:
    check(e.errno == "ESHUTDOWN", "a write after the reload: ESHUTDOWN (%s)"
          % e)
deadline = time.monotonic() + 20
while not (h.aio_is_dead() or h.aio_is_closed()) and \
      time.monotonic() < deadline:
    try:
        h.poll(1000)
    except nbd.Error:
        break
check(h.aio_is_dead() or h.aio_is_closed(),
      "then the server closed the connection")

# 4. The other export is untouched.
k = connect("keep")
k.pwrite(b"\x01" * 4096, 0)
check(k.pread(4096, 0) == b"\x01" * 4096, "keep still serves")
k.shutdown()
sys.exit(1 if fails else 0)
EOF

cat > "$tmp/inner.sh" <<'EOF'
set -e
. "$srcdir/functions.sh"
run_server nbdcached "$tmp/c.conf" keep -- \
  "'$PYTHON' '$tmp/inflight.py' '$tmp'"
EOF
export tmp srcdir
nbdkit -U "$tmp/remote.sock" --filter=log --filter=delay memory 16M \
  wdelay=5 logfile="$tmp/remote.log" --run "bash '$tmp/inner.sh'" ||
  die "the in-flight reload run failed"
