#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-pidfile-daemon.sh — daemon mode (no -f) with a pidfile: the command
# returns 0 only once the daemon is listening, so a client connects at once
# (no sleep, no polling); the pidfile holds the daemon's pid; the daemon is
# detached (its own session, not the starting process); SIGTERM through the
# pidfile makes it exit 0.
#
# nbdcached only: daemonizing is nbdkit's own code, not the plugin's.
#
# A Python driver makes itself a child subreaper (prctl) so the daemon,
# orphaned by its parent, is re-parented to it: that is how its exit status
# is observed.
set -e
. "${srcdir:-.}/functions.sh"
nbdcached_only
requires nbdinfo
requires_python
[ -x "$NBDCACHED" ] || die "nbdcached is not built: $NBDCACHED"

tmp=$(make_tmpdir)
write_config "$tmp/c.conf" "$tmp/disk.img" 4M

"$PYTHON" - "$NBDCACHED" "$tmp" <<'EOF' || die "daemon mode"
import ctypes, os, signal, subprocess, sys, time

nbdcached, tmp = sys.argv[1], sys.argv[2]
sock, pidfile = tmp + "/sock", tmp + "/pid"
PR_SET_CHILD_SUBREAPER = 36
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
    print("prctl(PR_SET_CHILD_SUBREAPER): errno %d" % ctypes.get_errno())
    sys.exit(1)

def fail(msg):
    print("FAIL:", msg)
    try:
        os.kill(daemon, signal.SIGKILL)
    except Exception:
        pass
    sys.exit(1)

argv = [nbdcached, "-c", tmp + "/c.conf", "-U", sock, "-P", pidfile]
print("+", " ".join(argv), flush=True)
r = subprocess.run(argv, timeout=60)
daemon = None
if r.returncode != 0:
    fail("the starting process exited %d" % r.returncode)
if not os.path.exists(pidfile):
    fail("no pidfile after the starting process returned")
text = open(pidfile).read()
daemon = int(text.strip())
print("pidfile: %r" % text, flush=True)
if not text.endswith("\n"):
    fail("the pidfile does not end with a newline")
try:
    os.kill(daemon, 0)
except ProcessLookupError:
    fail("pid %d from the pidfile is not running" % daemon)
with open("/proc/%d/stat" % daemon) as f:
    stat = f.read().rsplit(")", 1)[1].split()
ppid, sid = int(stat[1]), int(stat[3])
if ppid != os.getpid():
    fail("the daemon's parent is %d, not us (%d): did the starting "
         "process really exit?" % (ppid, os.getpid()))
if sid != daemon:
    fail("the daemon is not a session leader (sid %d): no setsid?" % sid)
if os.getsid(0) == sid:
    fail("the daemon shares our session")

# Listening already: the starting process returned only after that.
uri = "nbd+unix:///disk?socket=" + sock
r = subprocess.run(["nbdinfo", "--size", uri], capture_output=True,
                   text=True, timeout=60)
if r.returncode != 0 or r.stdout.strip() != str(4 * 1024 * 1024):
    fail("nbdinfo --size: status %d, stdout %r, stderr %r"
         % (r.returncode, r.stdout, r.stderr))

os.kill(daemon, signal.SIGTERM)
# waitpid blocks; alarm bounds it.
signal.signal(signal.SIGALRM, lambda *a: fail("no exit 60 s after SIGTERM"))
signal.alarm(60)
_, status = os.waitpid(daemon, 0)
signal.alarm(0)
if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
    fail("daemon ended with wait status 0x%x, expected exit 0" % status)
print("daemon %d exited 0 after SIGTERM" % daemon)
EOF
echo "[nbdcached] daemon mode with a pidfile OK"
