#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-timeouts.sh — [server] request_timeout, drain_timeout and
# handshake_timeout, from a raw-socket Python client (nbdcached only):
#  (a) two clients on an export with max_connections = 2 send a WRITE
#      header announcing 1 MiB, then 64 KiB of it, and stall with the
#      socket open: request_timeout = 1s closes both, and a third client
#      then gets in and writes and reads back;
#  (b) with a client stalled mid-payload and request_timeout = 60s,
#      SIGTERM: the server cuts it after drain_timeout = 2s and exits 0
#      within 2 s + margin, and a FUA write acknowledged before is in the
#      backing file;
#  (c) 50 connections that stop in the middle of the handshake are closed
#      after handshake_timeout = 1s, and their fds released (/proc/PID/fd);
#  (d) a client that dies (close) in the middle of a WRITE payload frees
#      its max_connections slot at once (no timeout involved).
# Each server runs in captive mode (--run 'echo ready; exec cat'): it is
# listening once "ready" is read.  Waits are for events (EOF on a socket,
# the process exiting) with deadlines, never sleeps.
set -e
. "${srcdir:-.}/functions.sh"
requires_python
nbdcached_only

tmp=$(make_tmpdir)

cat > "$tmp/timeouts.py" <<'EOF'
import atexit, os, signal, socket, struct, subprocess, sys, time

tmp, nbdcached, case = sys.argv[1], sys.argv[2], sys.argv[3]
MiB = 1024 * 1024
IHAVEOPT = 0x49484156454F5054
OPT_GO, REP_ACK = 7, 1
REQ_MAGIC, SIMPLE_REPLY_MAGIC = 0x25609513, 0x67446698
CMD_READ, CMD_WRITE, FLAG_FUA = 0, 1, 1
EOF_DEADLINE_S = 15

def fail(msg):
    print("FAIL: " + msg, flush=True)
    sys.exit(1)

def start(name, server_keys, export_keys=""):
    conf = os.path.join(tmp, name + ".conf")
    with open(conf, "w") as f:
        f.write("[server]\nlog = stderr\nworkers = 2\n%s\n"
                "[export disk]\nbacking = %s/%s.img\nsize = 4M\n%s\n"
                % (server_keys, tmp, name, export_keys))
    sock = os.path.join(tmp, name + ".sock")
    log = open(os.path.join(tmp, name + ".log"), "w")
    p = subprocess.Popen([nbdcached, "-f", "-c", conf, "-U", sock,
                          "-e", "disk", "--run",
                          "echo ready; exec cat >/dev/null"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=log)
    atexit.register(lambda: p.poll() is None and p.kill())
    if p.stdout.readline() != b"ready\n":
        fail("server %s did not become ready" % name)
    return p, sock

def recv_all(s, n):
    b = b""
    while len(b) < n:
        d = s.recv(n - len(b))
        if not d:
            raise EOFError("server closed the connection")
        b += d
    return b

def greeting(sock):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(60)
    s.connect(sock)
    magic, opt, flags = struct.unpack(">QQH", recv_all(s, 18))
    assert magic == 0x4e42444d41474943 and opt == IHAVEOPT
    return s

def go(sock, name=b"disk"):
    """A connection in transmission, or (None, reply type) if refused."""
    s = greeting(sock)
    s.sendall(struct.pack(">I", 3))             # FIXED_NEWSTYLE|NO_ZEROES
    data = struct.pack(">I", len(name)) + name + struct.pack(">H", 0)
    s.sendall(struct.pack(">QII", IHAVEOPT, OPT_GO, len(data)) + data)
    while True:
        magic, opt, rtype, rlen = struct.unpack(">QIII", recv_all(s, 20))
        recv_all(s, rlen)
        if rtype == REP_ACK:
            return s, rtype
        if rtype & 0x80000000:
            s.close()
            return None, rtype

cookie = 0
def request(s, rtype, offset, count, flags=0):
    global cookie
    cookie += 1
    s.sendall(struct.pack(">IHHQQI", REQ_MAGIC, flags, rtype, cookie,
                          offset, count))
    return cookie

def reply(s, want_cookie, nbytes=0):
    magic, err, ck = struct.unpack(">IIQ", recv_all(s, 16))
    assert magic == SIMPLE_REPLY_MAGIC and ck == want_cookie, (magic, ck)
    return err, recv_all(s, nbytes) if err == 0 else b""

def write_read(s, offset, data, flags=0):
    request(s, CMD_WRITE, offset, len(data), flags)
    s.sendall(data)
    err, _ = reply(s, cookie)
    if err:
        fail("WRITE failed: error %d" % err)
    request(s, CMD_READ, offset, len(data))
    err, got = reply(s, cookie, len(data))
    if err or got != data:
        fail("READ back failed: error %d" % err)

def stall_mid_payload(s):
    request(s, CMD_WRITE, 0, MiB)
    s.sendall(b"\xab" * (64 * 1024))

def wait_closed(s):
    """True if the server closes s within EOF_DEADLINE_S."""
    s.settimeout(EOF_DEADLINE_S)
    try:
        while s.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False

def stop(p, deadline_s):
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    p.stdin.close()
    try:
        rc = p.wait(timeout=deadline_s)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        fail("the server did not exit within %.0f s of SIGTERM" % deadline_s)
    return rc, time.monotonic() - t0

if case == "a":
    p, sock = start("a", "request_timeout = 1s", "max_connections = 2")
    stalled = []
    for i in range(2):
        s, rt = go(sock)
        if s is None:
            fail("client %d refused (reply type 0x%x)" % (i, rt))
        stall_mid_payload(s)
        stalled.append(s)
    s, rt = go(sock)
    if s is not None:
        fail("a third connection was accepted with max_connections = 2")
    t0 = time.monotonic()
    for s in stalled:
        if not wait_closed(s):
            fail("a client stalled mid-payload is still connected %d s "
                 "later (request_timeout = 1s)" % EOF_DEADLINE_S)
    print("stalled clients closed after %.1f s" % (time.monotonic() - t0))
    s, rt = go(sock)
    if s is None:
        fail("a new client is refused (0x%x) after the stalled ones were "
             "closed" % rt)
    write_read(s, MiB, os.urandom(4096))
    s.close()
    print("a third client connects and works")
    rc, _ = stop(p, 30)
    if rc != 0:
        fail("server exit status %d" % rc)

elif case == "b":
    p, sock = start("b", "request_timeout = 60s\ndrain_timeout = 2s")
    pattern = os.urandom(64 * 1024)
    a, rt = go(sock)
    write_read(a, 2 * MiB, pattern, FLAG_FUA)
    a.close()
    b, rt = go(sock)
    stall_mid_payload(b)
    rc, took = stop(p, 2 + 5)
    print("SIGTERM with a client stalled mid-payload: exit status %d "
          "after %.1f s" % (rc, took))
    if rc != 0:
        fail("server exit status %d" % rc)
    b.close()
    with open(os.path.join(tmp, "b.img"), "rb") as f:
        f.seek(2 * MiB)
        if f.read(len(pattern)) != pattern:
            fail("the acknowledged FUA write is not in the backing file")
    print("the acknowledged FUA write is durable")

elif case == "c":
    p, sock = start("c", "handshake_timeout = 1s")
    fds = lambda: len(os.listdir("/proc/%d/fd" % p.pid))
    half = []
    for i in range(50):
        s = greeting(sock)          # accepted: the greeting came
        if i % 2:
            s.sendall(struct.pack(">I", 3))   # client flags, then nothing
        half.append(s)
    # The server has accepted all 50 (each sent its greeting).
    before = fds()
    for s in half:
        if not wait_closed(s):
            fail("a half-handshake connection is still open %d s later "
                 "(handshake_timeout = 1s)" % EOF_DEADLINE_S)
        s.close()
    after = fds()
    print("server fds: %d with 50 half-handshakes, %d after" % (before, after))
    if after > before - 50:
        fail("the server still holds their fds")
    s, rt = go(sock)
    if s is None:
        fail("a new client is refused (0x%x)" % rt)
    s.close()
    rc, _ = stop(p, 30)
    if rc != 0:
        fail("server exit status %d" % rc)

elif case == "d":
    p, sock = start("d", "", "max_connections = 2")
    for i in range(3):
        x, rt = go(sock)
        if x is None:
            fail("round %d: refused (0x%x): a client that died mid-payload "
                 "still holds its slot" % (i, rt))
        stall_mid_payload(x)
        x.close()
    for i in range(2):
        x, rt = go(sock)
        if x is None:
            fail("refused (0x%x) after clients died mid-payload" % rt)
        write_read(x, 0, os.urandom(4096))
    print("clients that died mid-payload released their slots")
    rc, _ = stop(p, 30)
    if rc != 0:
        fail("server exit status %d" % rc)
EOF

failed=
for c in a b c d; do
  echo "==== case $c ===="
  if "$PYTHON" "$tmp/timeouts.py" "$tmp" "$NBDCACHED" $c; then
    echo "case $c OK"
  else
    failed="$failed $c"
  fi
  echo "--- server log ---"
  cat "$tmp/$c.log" 2>/dev/null || :
done
[ -z "$failed" ] || die "failed:$failed"
echo "timeouts: OK"
