#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-remote-rbd-outage.sh — the Ceph cluster behind an rbd:POOL/IMAGE
# backing goes away and comes back while nbdcached serves it, and is away
# when nbdcached starts: what the RBD driver promises, seen by a client,
# by `nbdcache stats` and by `rbd export`.
#
# One throwaway cluster (ceph-cluster.sh) with its OSD on bluestore-on-file,
# so that the OSD and the monitor can be killed (SIGKILL) and started
# again on their data.  The image (32 MiB) is filled with random data by
# `rbd import` first, so that a read the cache misses must reach an OSD.
# nbdcached serves it in writeback mode over a 16 MiB cache with
# backing_timeout = 3.  Inside nbdcached's --run:
#   1. 2 MiB written at 0 (dirty), 2 MiB after it read (cached); stats:
#      "connected";
#   2. the OSD and the monitor are killed: the cached reads still work; a
#      read of uncached data fails with EIO after the timeout (not before
#      2.5 s, not after 10 s) and the connection lives; then 256 KiB
#      pieces are written from 4 MiB on until one fails: the failure is
#      EIO within 15 s, after at least 2 MiB more was accepted and no more
#      than the dirty limit (70 % of 16 MiB, plus one piece); every
#      acknowledged byte reads back from the cache;
#   3. stats: "disconnected since …", timed-out requests counted;
#   4. the monitor and the OSD are started again: stats turn "connected"
#      (the driver's prober; within 60 s), with reconnect attempts
#      counted; `nbdcache flush` writes everything back (tried again
#      while a write still times out right after the restart); stats: 0
#      dirty;
# then `rbd export` of the image equals what was acknowledged, byte for
# byte.  Then the start with the cluster away:
#   5. the monitor killed, backing_timeout = 2: the start fails after the
#      timeout (not after 15 s) with a message naming the export, the
#      image and backing_timeout; it does not hang;
#   6. the monitor started again right after nbdcached, backing_timeout =
#      60: nbdcached comes up and serves the image (librados retries the
#      monitor; whether nbdcached asked before the monitor listened is
#      not forced, only likely);
#   7. the OSD killed (the monitor up), backing_timeout = 2: opening the
#      image fails after the timeout, naming backing_timeout.
# The main code had no outage state for RBD (stats said nothing), so it
# fails at step 3.  SERVER_TIMEOUT_S bounds each server run: a hang fails.
set -e
. "${srcdir:-.}/functions.sh"
. "$srcdir/ceph-cluster.sh"
requires nbdcopy nbdinfo cmp
requires_python
requires_python_nbd
nbdcached_only
: "${SERVER_TIMEOUT_S:=300}"

NBDCACHE_TOOL=$(abspath "${NBDCACHE_TOOL:-$top_builddir/admin/nbdcache}")
tmp=$(make_tmpdir)
random_file "$tmp/src" 32M
random_file "$tmp/new" 32M

CEPH_OBJECTSTORE=bluestore ceph_cluster_start "$tmp/ceph"
rbdq import "$tmp/src" rbd/img >/dev/null 2>&1 || die "rbd import failed"

# client.py URI STEP NEW SRC ACKED: the client's view.
cat > "$tmp/client.py" <<'EOF'
import nbd, sys, time
uri, step, new_file, src_file, acked_file = sys.argv[1:6]
new = open(new_file, "rb").read()
src = open(src_file, "rb").read()
M = 1 << 20
h = nbd.NBD()
h.connect_uri(uri)
if step == "before":
    h.pwrite(new[:2 * M], 0)
    if h.pread(2 * M, 2 * M) != src[2 * M:4 * M]:
        sys.exit("before: uncached read: wrong data")
    h.shutdown()
    sys.exit(0)

# down: cached data is served.
if h.pread(2 * M, 0) != new[:2 * M] or h.pread(2 * M, 2 * M) != src[2 * M:4 * M]:
    sys.exit("down: cached read: wrong data")
t0 = time.monotonic()
try:
    h.pread(4096, 30 * M)
    sys.exit("down: uncached read with the cluster down succeeded")
except nbd.Error as e:
    took = time.monotonic() - t0
    if e.errnum != 5:
        sys.exit("down: uncached read: %s, expected EIO" % e)
    if not 2.5 <= took <= 10:
        sys.exit("down: uncached read failed after %.1f s, expected ~3" % took)
    print("down: uncached read failed with EIO after %.1f s" % took)
if h.pread(4096, 0) != new[:4096]:
    sys.exit("down: cached read after the failure: wrong data")

# down: writes are taken as dirty data up to the dirty limit, then EIO.
piece = 256 << 10
cache = 16 * M
off = 4 * M
while True:
    if off >= 32 * M:
        sys.exit("down: %d MiB accepted with the cluster down and a 16 MiB "
                 "cache" % (off >> 20))
    t0 = time.monotonic()
    try:
        h.pwrite(new[off:off + piece], off)
    except nbd.Error as e:
        took = time.monotonic() - t0
        if e.errnum != 5:
            sys.exit("down: write at %d: %s, expected EIO" % (off, e))
        break
    off += piece
acked = off - 4 * M
print("down: accepted %d KiB as dirty data; the next write failed with EIO "
      "after %.1f s" % (acked >> 10, took))
open(acked_file, "w").write("%d\n" % off)
if took > 15:
    sys.exit("down: the refused write waited %.1f s" % took)
if acked < 2 * M:
    sys.exit("down: only %d KiB accepted before the refusal" % (acked >> 10))
if 2 * M + acked > cache * 70 // 100 + piece:
    sys.exit("down: %d KiB dirty accepted, above the dirty limit (70%% of "
             "16 MiB)" % ((2 * M + acked) >> 10))
for o in range(4 * M, off, M):
    n = min(M, off - o)
    if h.pread(n, o) != new[o:o + n]:
        sys.exit("down: cached read at %d after the refusal: wrong data" % o)
h.shutdown()
EOF

cat > "$tmp/steps.sh" <<EOF
set -e
. "$srcdir/functions.sh"
. "$srcdir/ceph-cluster.sh"
_ceph_dir=$tmp/ceph
stats () { timeout 20 "$NBDCACHE_TOOL" stats --socket "$tmp/ctl" rbd > "$tmp/stats-\$1"; }
client () { "$PYTHON" "$tmp/client.py" "\$uri" \$1 "$tmp/new" "$tmp/src" "$tmp/acked"; }
client before
stats 1
ceph_daemon_kill osd.0
ceph_daemon_kill mon.a
client down
stats 2
ceph_daemon_start mon.a
ceph_daemon_start osd.0
for (( i = 0; i < 600; i++ )); do
  stats 3
  grep -q ': connected (' "$tmp/stats-3" && break
  sleep 0.1
done
# A flush ends at the first failed backing write (nbdcache(8)).  A write
# may still time out right after the restart (a busy 2-core machine, a
# 3 s timeout, an OSD still peering): an admin would flush again.
flushed=
for (( i = 1; i <= 8; i++ )); do
  if timeout 120 "$NBDCACHE_TOOL" flush --socket "$tmp/ctl" rbd; then
    flushed=yes; break
  fi
  echo "flush attempt \$i failed; the cluster is settling; again" >&2
  sleep 2
done
[ -n "\$flushed" ]
stats 4
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

[export rbd]
backing = rbd:rbd/img
ceph_conf = $CEPH_CONF
backing_timeout = 3
cache = ssd
mode = writeback
sequential_cutoff = 0
EOF

run_server nbdcached "$tmp/c.conf" rbd -- "bash '$tmp/steps.sh'" ||
  die "the outage scenario failed"

grep -E '^  backing .*: connected \(1 of 1 connections up\)$' \
  "$tmp/stats-1" || die "stats before: not connected: $(cat "$tmp/stats-1")"
grep -E '^  backing .*: disconnected since [0-9]{4}-' "$tmp/stats-2" ||
  die "stats during the outage: $(cat "$tmp/stats-2")"
grep -E '^  remote .* [1-9][0-9]* timed out$' "$tmp/stats-2" ||
  die "stats during the outage: no timed-out request: $(cat "$tmp/stats-2")"
grep -E '^  dirty +[1-9]' "$tmp/stats-2" ||
  die "stats during the outage: no dirty data: $(cat "$tmp/stats-2")"
grep -E '^  backing .*: connected \(1 of 1 connections up\)$' \
  "$tmp/stats-3" || die "stats after: not connected: $(cat "$tmp/stats-3")"
grep -E '^  remote +[1-9][0-9]* reconnect attempts' "$tmp/stats-3" ||
  die "stats after: no reconnect attempts counted: $(cat "$tmp/stats-3")"
grep -E '^  dirty +0 ' "$tmp/stats-4" ||
  die "stats after the flush: still dirty: $(cat "$tmp/stats-4")"

# What was acknowledged: new[0, 2M), src[2M, 4M), new[4M, acked), src
# after; but the refused piece [acked, acked + 256K) may hold either (a
# write that failed with EIO may still have reached the image, as on any
# block device; the driver only guarantees it lands before anything
# submitted after it).
acked=$(cat "$tmp/acked")
piece=$((256 << 10))
expect () {
  head -c 2M "$tmp/new"; head -c 4M "$tmp/src" | tail -c 2M
  head -c "$1" "$tmp/new" | tail -c +$((4 * 1048576 + 1))
  tail -c +$(($1 + 1)) "$tmp/src"
}
expect "$acked" > "$tmp/expected"
expect $((acked + piece)) > "$tmp/expected-late"
rbdq export rbd/img "$tmp/ceph.img" >/dev/null 2>&1 || die "rbd export failed"
if ! cmp "$tmp/ceph.img" "$tmp/expected"; then
  cmp "$tmp/ceph.img" "$tmp/expected-late" ||
    die "the image in Ceph differs from what was acknowledged"
  echo "(the refused write reached the image late)"
  mv "$tmp/expected-late" "$tmp/expected"
fi
echo "cluster lost and back: cached reads served, EIO after the timeout," \
     "$((acked - 4 * 1048576)) bytes more taken as dirty data then EIO," \
     "stats followed, all of it in Ceph after the flush"

# ---- the cluster away at start ----

conf () {
  cat <<EOF
[server]
log = stderr

[cache ssd]
path = $tmp/cache-$1.img
size = 16M
create = yes
direct = no

[export rbd]
backing = rbd:rbd/img
ceph_conf = $CEPH_CONF
backing_timeout = $1
cache = ssd
mode = writeback
EOF
}
conf 2 > "$tmp/short.conf"
conf 60 > "$tmp/long.conf"

# start_fails WHAT: nbdcached with backing_timeout = 2 fails to start
# after about the timeout, with a message naming the export, the image
# and backing_timeout.
start_fails () {
  local t0 rc=0 took_ms
  t0=$(date +%s%N)
  timeout -k 5 60 "$NBDCACHED" -f -c "$tmp/short.conf" -U "$tmp/s" -e rbd \
    --run true 2> "$tmp/start-short.log" || rc=$?
  took_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  cat "$tmp/start-short.log" >&2
  [ $rc != 0 ] || die "start: nbdcached started with $1"
  [ $rc != 124 ] || die "start: nbdcached hung with $1"
  [ $took_ms -ge 1500 ] && [ $took_ms -le 15000 ] ||
    die "start: failed after $took_ms ms with $1, expected ~2 s"
  grep -E "export 'rbd': cannot open backing 'rbd:rbd/img'" \
    "$tmp/start-short.log" >/dev/null &&
    grep -E "rbd:rbd/img: .*within backing_timeout" \
      "$tmp/start-short.log" >/dev/null ||
    die "start with $1: the message does not name the export, image and timeout"
  echo "start with $1: failed after $took_ms ms, clearly"
}

ceph_daemon_kill mon.a
start_fails "the monitor down"

# The monitor comes back while nbdcached waits for it.
timeout -k 5 "$SERVER_TIMEOUT_S" "$NBDCACHED" -f -c "$tmp/long.conf" \
  -U "$tmp/s" -e rbd --run "nbdcopy \"\$uri\" '$tmp/late.img'" \
  2> "$tmp/start-long.log" &
server=$!
ceph_daemon_start mon.a
wait $server || { cat "$tmp/start-long.log" >&2
                  die "start: nbdcached did not come up with the monitor"; }
cmp "$tmp/late.img" "$tmp/expected" ||
  die "start: the image read after a late monitor differs"
echo "start with the monitor coming late: served the image"

ceph_daemon_kill osd.0
start_fails "the OSD down"
