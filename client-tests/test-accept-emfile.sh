#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-accept-emfile.sh — out of file descriptors: nbdcached, run with
# RLIMIT_NOFILE = 64, gets more idle connections than it has fds.  accept
# then fails with EMFILE while the pending connection stays in the backlog;
# the server must pause accepting (not call accept again at once, forever),
# log the episode once, use almost no CPU while paused, and serve a new
# client (nbdinfo) once some connections close.
#
# A Python driver starts the server in captive mode (--run 'echo ready;
# exec cat') with the fd limit set in the server only, opens 100 Unix
# connections, waits (with a deadline) for the accept error in the log,
# connects to the control socket too, measures the server's CPU time (utime + stime from /proc/PID/stat) over
# a 2 s window, closes 60 of the connections, then runs nbdinfo while the
# other 40 are still open.
set -e
. "${srcdir:-.}/functions.sh"
requires_python
requires nbdinfo
nbdcached_only

tmp=$(make_tmpdir)
write_config "$tmp/c.conf" "$tmp/disk.img" 1M
# The control socket's accept must not spin either.
sed -i "s|^\[server\]\$|[server]\ncontrol_socket = $tmp/ctl|" "$tmp/c.conf"
grep -q '^control_socket' "$tmp/c.conf" || die "cannot add control_socket"

cat > "$tmp/emfile.py" <<'EOF'
import os, resource, signal, socket, subprocess, sys, time

conf, sock, log, nbdcached, ctl = sys.argv[1:6]
FD_LIMIT = 64
NR_CLIENTS = 100
MAX_CPU_S = 0.2                 # over the 2 s window
MAX_ACCEPT_LINES = 3

def limit():
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))

logf = open(log, "w")
p = subprocess.Popen([nbdcached, "-f", "-c", conf, "-U", sock, "-e", "disk",
                      "--run", "echo ready; exec cat >/dev/null"],
                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                     stderr=logf, preexec_fn=limit)
if p.stdout.readline() != b"ready\n":
    print("FAIL: server did not become ready"); sys.exit(1)

def cpu_s():
    with open("/proc/%d/stat" % p.pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

def accept_lines():
    with open(log, errors="replace") as f:
        return sum(1 for l in f if "accept:" in l)

bad = 0
clients = []
try:
    for i in range(NR_CLIENTS):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(sock)
        clients.append(s)
    # Wait for the server to run out of fds (a deadline, not a sleep).
    deadline = time.monotonic() + 30
    while accept_lines() == 0:
        if time.monotonic() > deadline or p.poll() is not None:
            print("FAIL: no accept error logged with %d connections and "
                  "an fd limit of %d" % (NR_CLIENTS, FD_LIMIT))
            p.kill(); sys.exit(1)
        time.sleep(0.05)
    # A control client while out of fds: pending on the control socket.
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(ctl)
    clients.insert(0, s)
    c0 = cpu_s()
    time.sleep(2)               # the measurement window
    used = cpu_s() - c0
    n = accept_lines()
    print("out of fds: server CPU %.2f s in 2 s, %d accept error line(s)"
          % (used, n))
    if used > MAX_CPU_S:
        print("FAIL: the server spins while out of fds (%.2f s CPU > %.2f)"
              % (used, MAX_CPU_S)); bad = 1
    if n > MAX_ACCEPT_LINES:
        print("FAIL: %d accept error lines (at most %d)"
              % (n, MAX_ACCEPT_LINES)); bad = 1
    # Close 60 of the 100 (the server accepted the first ~55): it resumes
    # accepting, takes the 40 left, and still has fds for a new client.
    for s in clients[:60]:
        s.close()
    clients = clients[60:]
    r = subprocess.run(["nbdinfo", "--size",
                        "nbd+unix:///disk?socket=" + sock],
                       capture_output=True, timeout=30)
    if r.returncode != 0 or r.stdout.strip() != b"1048576":
        print("FAIL: nbdinfo after closing the connections: %r %r"
              % (r.stdout, r.stderr)); bad = 1
    else:
        print("nbdinfo served after 60 connections closed")
finally:
    for s in clients:
        s.close()
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
    p.stdin.close()
    try:
        rc = p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill(); rc = "timeout"
logf.close()
if rc != 0:
    print("FAIL: server exit status %s" % rc); bad = 1
with open(log, errors="replace") as f:
    if not any("accepting connections again" in l for l in f):
        print("FAIL: the end of the episode was not logged"); bad = 1
sys.exit(bad)
EOF

rc=0
"$PYTHON" "$tmp/emfile.py" "$tmp/c.conf" "$tmp/sock" "$tmp/log" \
  "$NBDCACHED" "$tmp/ctl" || rc=$?
echo "--- server log (first 20 lines) ---"
head -n 20 "$tmp/log"
[ $rc = 0 ] || die "out of file descriptors"
echo "out of file descriptors: OK"
