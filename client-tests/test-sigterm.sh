#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-sigterm.sh — SIGTERM under load: every write the server acknowledged
# is on the backing file afterwards, writes it refused (ESHUTDOWN) are not,
# nothing else ever lands anywhere, and the server exits 0.
#
# (nbdkit + the plugin: nbdkit keeps serving a connected client after
# SIGTERM, so there the driver disconnects once its writes are done.)
#
# A Python (libnbd) driver starts the server itself in captive mode with
# --run 'echo ready; exec cat' and reads "ready" from the pipe: the server
# is listening by then (no sleep).  It keeps 64 writes of unique data in
# flight, sends SIGTERM after $SIGTERM_AFTER acknowledgements, keeps issuing
# writes until the connection ends, then waits for the server's exit status.
set -e
. "${srcdir:-.}/functions.sh"
requires_python_nbd

tmp=$(make_tmpdir)
block_bytes=$((16 * 1024))
nr_blocks=8192                  # 128 MiB
: "${SIGTERM_AFTER:=1000}"
seed=${SIGTERM_SEED:-$RANDOM}
echo "seed $seed (set SIGTERM_SEED to repeat)"

cat > "$tmp/load.py" <<'EOF'
import errno, functools, os, signal, struct, subprocess, sys, time
import nbd

(backing, sock, block_bytes, nr_blocks, kill_after, seed, depth,
 expect_shutdown) = (
    sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]),
    int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]),
    sys.argv[8] == "yes")
server_argv = sys.argv[9:]

def data(i):
    return struct.pack("<QQ", seed, i) * (block_bytes // 16)

print("starting:", server_argv, flush=True)
p = subprocess.Popen(server_argv, stdin=subprocess.PIPE,
                     stdout=subprocess.PIPE)
line = p.stdout.readline()
if line != b"ready\n":
    print("server did not become ready: %r, exit status %r" % (line, p.wait()))
    sys.exit(1)

h = nbd.NBD()
h.set_export_name("disk")
h.connect_unix(sock)
assert h.get_size() == block_bytes * nr_blocks

ACKED, REFUSED, OTHER = "acked", "refused", "other"
status = {}                     # block -> ACKED | REFUSED | (OTHER, errno)
bufs = {}                       # keep buffers alive while in flight
killed_at = None
in_flight_at_kill = None

def done(i, err):
    e = err.value
    if e == 0:
        status[i] = ACKED
    elif e == errno.ESHUTDOWN:
        status[i] = REFUSED
    else:
        status[i] = (OTHER, e)
    bufs.pop(i, None)
    return 1

nxt = 0
deadline = time.monotonic() + 120
end = "all blocks written"
try:
    while True:
        while h.aio_in_flight() < depth and nxt < nr_blocks:
            bufs[nxt] = nbd.Buffer.from_bytearray(bytearray(data(nxt)))
            h.aio_pwrite(bufs[nxt], nxt * block_bytes,
                         completion=functools.partial(done, nxt))
            nxt += 1
        if h.aio_in_flight() == 0 and nxt >= nr_blocks:
            break
        acked = sum(1 for s in status.values() if s == ACKED)
        if killed_at is None and acked >= kill_after:
            killed_at = nxt
            in_flight_at_kill = h.aio_in_flight()
            print("SIGTERM after %d acks, %d requests in flight"
                  % (acked, in_flight_at_kill), flush=True)
            os.kill(p.pid, signal.SIGTERM)
        if time.monotonic() > deadline:
            print("FAIL: the connection is still alive 120 s in")
            p.kill()
            sys.exit(1)
        h.poll(1000)
except nbd.Error as ex:
    end = "connection ended: %s" % ex
print(end, flush=True)
if end == "all blocks written":
    # Still connected: disconnect cleanly so a server that drains by waiting
    # for its clients (nbdkit) can exit.
    try:
        h.shutdown()
    except nbd.Error as ex:
        print("shutdown: %s" % ex)

# Let the captive command (cat) finish, then the server's exit status.
p.stdin.close()
try:
    rc = p.wait(timeout=60)
except subprocess.TimeoutExpired:
    print("FAIL: the server did not exit within 60 s of its connection ending")
    p.kill()
    sys.exit(1)
try:
    h.close()
except Exception:
    pass

n_acked = sum(1 for s in status.values() if s == ACKED)
n_refused = sum(1 for s in status.values() if s == REFUSED)
others = {i: s for i, s in status.items() if s not in (ACKED, REFUSED)}
print("issued %d, acked %d, refused with ESHUTDOWN %d, other errors %d, "
      "no reply %d; server exit status %d"
      % (nxt, n_acked, n_refused, len(others), nxt - len(status), rc))
if others:
    print("other errors (block: errno):",
          dict(list((i, s[1]) for i, s in others.items())[:10]))

bad = 0
if rc != 0:
    print("FAIL: server exit status %d, expected 0" % rc)
    bad = 1
if killed_at is None:
    print("FAIL: never sent SIGTERM (fewer than %d acks)" % kill_after)
    bad = 1
if expect_shutdown and end == "all blocks written" and n_refused == 0:
    print("FAIL: the server kept serving everything after SIGTERM")
    bad = 1
# nbdcached answers every request it receives after SIGTERM with ESHUTDOWN
# (it lingers on a quiet connection before closing), so no request may
# end with another error or without a reply.
if expect_shutdown and (others or nxt != len(status)):
    print("FAIL: requests after SIGTERM must be acked or refused with "
          "ESHUTDOWN, not dropped")
    bad = 1
if expect_shutdown and n_refused == 0:
    print("FAIL: no request was refused with ESHUTDOWN after SIGTERM")
    bad = 1

zero = bytes(block_bytes)
wrong = []
with open(backing, "rb") as f:
    for i in range(nr_blocks):
        got = f.read(block_bytes)
        s = status.get(i)
        if s == ACKED:
            ok = got == data(i)
        elif s == REFUSED or i >= nxt:
            ok = got == zero       # never executed, or never sent
        else:
            ok = got in (zero, data(i))  # no reply: either is fine
        if not ok:
            wrong.append((i, s))
if wrong:
    print("FAIL: %d blocks have the wrong content, e.g. %s"
          % (len(wrong), wrong[:10]))
    bad = 1
sys.exit(bad)
EOF

for kind in $(server_kinds); do
  echo "==== $kind ====" >&2
  rm -f "$tmp/disk.img"
  write_config "$tmp/c.conf" "$tmp/disk.img" $((block_bytes * nr_blocks))
  sock=$tmp/$kind.sock
  run='echo ready; exec cat >/dev/null'
  case $kind in
    nbdcached)
      [ -x "$NBDCACHED" ] || die "nbdcached not built: $NBDCACHED"
      shutdown=yes
      argv=("$NBDCACHED" -f -c "$tmp/c.conf" -U "$sock" -e disk --run "$run") ;;
    plugin)
      [ -f "$PLUGIN" ] || die "the plugin is not built: $PLUGIN"
      # nbdkit drains its own way on SIGTERM: it serves its connections
      # until the clients leave.  Still checked: acked writes are on the
      # backing file and nbdkit exits 0.
      shutdown=no
      argv=($(nbdkit_env) "$NBDKIT" -U "$sock" "$PLUGIN"
            "config=$tmp/c.conf" export=disk --run "$run") ;;
  esac
  "$PYTHON" "$tmp/load.py" "$tmp/disk.img" "$sock" $block_bytes $nr_blocks \
    "$SIGTERM_AFTER" "$seed" 64 $shutdown "${argv[@]}" ||
    die "[$kind] SIGTERM under load (seed $seed)"
  echo "[$kind] SIGTERM under load OK"
done
