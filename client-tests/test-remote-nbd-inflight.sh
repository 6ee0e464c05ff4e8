#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-remote-nbd-inflight.sh — over a slow remote, a client's queue depth
# becomes that many backing reads in flight, whatever `workers` says.
#
# The remote is nbdkit's file plugin over 128 KiB of random data behind
# the delay filter (500 ms per read), in captive mode as in
# test-remote-nbd.sh.  nbdcached runs with workers = 1 and an empty cache;
# nbdcopy reads the whole export as 32 requests of 4 KiB, all in flight at
# once (--requests=32, one connection, no extents).  Every request is a
# miss: with a fixed pool of one thread they run one after another (32 x
# 500 ms = 16 s); the elastic pool (server/worker.c) grows once calls prove
# slow and overlaps them (about 1-2 s).  The test fails at 8 s or more: a
# margin of 4x or more either way on a loaded machine.  nbdcached only:
# under nbdkit the number in flight is nbdkit's --threads.
set -e
. "${srcdir:-.}/functions.sh"
requires nbdkit nbdcopy cmp
nbdcached_only

tmp=$(make_tmpdir)
random_file "$tmp/remote.img" 128K
cat > "$tmp/c.conf" <<EOF
[server]
log = stderr
workers = 1

[cache ssd]
path = $tmp/cache.img
size = 64M
create = yes
direct = no

[export remote]
backing = nbd+unix:///?socket=$tmp/remote.sock
backing_timeout = 60
cache = ssd
mode = writeback
sequential_cutoff = 0
EOF

# Run inside the remote's --run (so /bin/sh): nbdcached, and nbdcopy
# inside ITS --run command, timed.
cat > "$tmp/inner.sh" <<'EOF'
set -e
. "$srcdir/functions.sh"
run_server nbdcached "$tmp/c.conf" remote -- "
  start=\$(date +%s%N) &&
  nbdcopy --no-extents --connections=1 --requests=32 --request-size=4096 \
    \"\$uri\" '$tmp/out' &&
  end=\$(date +%s%N) &&
  echo \$(( (end - start) / 1000000 )) > '$tmp/ms'"
EOF
export tmp
nbdkit -U "$tmp/remote.sock" --filter=delay file "$tmp/remote.img" \
  rdelay=500ms --run "bash '$tmp/inner.sh'" ||
  die "the run over the remote failed"

cmp "$tmp/out" "$tmp/remote.img" || die "data read back differs"
ms=$(cat "$tmp/ms")
echo "32 cold 4k reads at QD32 over a 500 ms remote, workers = 1: $ms ms"
[ "$ms" -lt 8000 ] ||
  die "misses did not overlap: $ms ms (one at a time would be ~16000)"
