#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-remote-nbd-dirty-limit.sh — writeback with the remote gone: writes
# are accepted as dirty data up to the cache's dirty limit, then wait
# (bounded) and fail with EIO, never silently dropped; and everything
# acknowledged reaches the remote when it comes back.
#
# The remote (nbdkit file, started by remote-launch.py) is killed right
# after nbdcached connected; nbdcached serves it in writeback mode over a
# 16 MiB cache with backing_timeout = 2.  Inside nbdcached's --run:
#   1. a client writes 256 KiB pieces of random data from offset 0 until a
#      write fails: the failure is EIO, comes within the throttle plus the
#      timeout (not after 15 s), after at least a quarter of the cache was
#      accepted and no more than the cache's dirty limit (70 %, plus one
#      throttled write); the connection lives: every acknowledged byte
#      reads back from the cache;
#   2. stats: "disconnected since …", dirty data counted;
#   3. the remote is started again: `nbdcache flush` writes the dirty data
#      back; stats: "connected";
# and afterwards the remote's file equals every acknowledged byte.
set -e
. "${srcdir:-.}/functions.sh"
requires nbdkit cmp
requires_python
requires_python_nbd
nbdcached_only

NBDCACHE_TOOL=$(abspath "${NBDCACHE_TOOL:-$top_builddir/admin/nbdcache}")
tmp=$(make_tmpdir)
random_file "$tmp/src" 32M
truncate -s 32M "$tmp/remote.img"
on_exit 'kill -9 $(cat "$tmp/remote.pid" 2>/dev/null) 2>/dev/null || :'
launch=$(abspath "${srcdir:-.}/remote-launch.py")

cat > "$tmp/start-remote.sh" <<EOF
exec "$PYTHON" "$launch" "$tmp/remote.sock" "$tmp/remote.log" \
  file "$tmp/remote.img"
EOF

# writer.py URI SRC ACKED: step 1; the acknowledged length goes to ACKED.
cat > "$tmp/writer.py" <<'EOF'
import nbd, sys, time
uri, src, acked_file = sys.argv[1:4]
data = open(src, "rb").read()
piece = 256 << 10
cache = 16 << 20
h = nbd.NBD()
h.connect_uri(uri)
off = 0
while True:
    if off >= len(data):
        sys.exit("%d MiB accepted with the remote down and a 16 MiB cache"
                 % (off >> 20))
    t0 = time.monotonic()
    try:
        h.pwrite(data[off:off + piece], off)
    except nbd.Error as e:
        took = time.monotonic() - t0
        if e.errnum != 5:
            sys.exit("write at %d: %s, expected EIO" % (off, e))
        break
    off += piece
print("accepted %d KiB as dirty data; the next write failed with EIO after"
      " %.1f s" % (off >> 10, took))
open(acked_file, "w").write("%d\n" % off)
if took > 15:
    sys.exit("the refused write waited %.1f s" % took)
if off < cache // 4:
    sys.exit("only %d KiB accepted before the refusal" % (off >> 10))
if off > cache * 70 // 100 + piece:
    sys.exit("%d KiB dirty accepted, above the dirty limit (70%% of 16 MiB)"
             % (off >> 10))
# The connection lives and the acknowledged data is served from the cache.
for o in range(0, off, 1 << 20):
    n = min(1 << 20, off - o)
    if h.pread(n, o) != data[o:o + n]:
        sys.exit("cached read at %d after the refusal: wrong data" % o)
h.shutdown()
EOF

cat > "$tmp/steps.sh" <<EOF
set -e
stats () { "$NBDCACHE_TOOL" stats --socket "$tmp/ctl" remote > "$tmp/stats-\$1"; }
kill -9 \$(cat "$tmp/remote.pid")
"$PYTHON" "$tmp/writer.py" "\$uri" "$tmp/src" "$tmp/acked"
stats 2
sh "$tmp/start-remote.sh"
"$NBDCACHE_TOOL" flush --socket "$tmp/ctl" remote
stats 3
EOF

cat > "$tmp/c.conf" <<EOF
[server]
log = stderr
control_socket = $tmp/ctl

[cache ssd]
path = $tmp/cache.img
size = 16M
bucket_size = 128K
create = yes
direct = no

[export remote]
backing = nbd+unix:///?socket=$tmp/remote.sock
backing_timeout = 2
cache = ssd
mode = writeback
sequential_cutoff = 0
EOF

sh "$tmp/start-remote.sh"
run_server nbdcached "$tmp/c.conf" remote -- "sh '$tmp/steps.sh'" ||
  die "the dirty-limit scenario failed"

grep -E '^  backing .*: disconnected since [0-9]{4}-' "$tmp/stats-2" ||
  die "stats during the outage: $(cat "$tmp/stats-2")"
grep -E '^  dirty +[1-9]' "$tmp/stats-2" ||
  die "stats during the outage: no dirty data: $(cat "$tmp/stats-2")"
grep -E '^  backing .*: connected \([1-9][0-9]* of [0-9]+ connections up\)$' \
  "$tmp/stats-3" || die "stats after: not connected: $(cat "$tmp/stats-3")"
grep -E '^  dirty +0 ' "$tmp/stats-3" ||
  die "stats after the flush: still dirty: $(cat "$tmp/stats-3")"
acked=$(cat "$tmp/acked")
cmp -n "$acked" "$tmp/remote.img" "$tmp/src" ||
  die "the remote's content differs from the acknowledged data"
echo "remote down: $acked bytes accepted as dirty data, then EIO;" \
     "all of it on the remote after the restart and flush"
