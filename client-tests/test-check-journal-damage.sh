#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-check-journal-damage.sh — damage to the newest journal entry is
# reported, never read as a torn commit.
#
# WHAT: nbdcached writes through a writeback cache and FLUSHes, and stops.
# `nbdcache check` says clean.  Then the newest journal entry — written
# whole, acknowledged — gets one bit flipped, or one 512-byte sector
# zeroed (each on a fresh copy of the device): `nbdcache check` must exit
# 1 with "result: DAMAGED" and name the entry, must not change the device,
# and nbdcached must refuse the cache.  (Before entry stamps, recovery
# dropped such an entry as a torn commit and check said clean.)
# HOW: the journal ring is found from the superblock; the entry with the
# highest seq is the newest (python3).
set -e
. "${srcdir:-.}/functions.sh"
requires nbdsh python3 sha256sum

NBDCACHE_TOOL=$(abspath "${NBDCACHE_TOOL:-$top_builddir/admin/nbdcache}")
dir=$(make_tmpdir)
truncate -s 64M "$dir/disk.img"
write_config "$dir/c.conf" "$dir/disk.img" - \
  "cache = ssd" "mode = writeback" \
  "" "[cache ssd]" "path = $dir/ssd.img" "size = 32M" "create = yes" \
  "bucket_size = 64K" "direct = no" "journal_delay_ms = 10000"

run_server nbdcached "$dir/c.conf" disk -- \
  "nbdsh -u \"\$uri\" -c '
for i in range(700):
    h.aio_pwrite(bytes([i % 251 + 1]) * 4096, i * 12288)
    if i % 64 == 63:
        while h.aio_in_flight() > 0: h.poll(-1)
while h.aio_in_flight() > 0: h.poll(-1)
h.flush()
'" || die "writing through the cache failed"

rc=0
"$NBDCACHE_TOOL" check "$dir/ssd.img" > "$dir/check.out" 2>&1 || rc=$?
[ $rc = 0 ] && grep -q "^result: clean" "$dir/check.out" || {
  cat "$dir/check.out"
  die "the undamaged cache is not clean (exit $rc)"
}
cp "$dir/ssd.img" "$dir/pristine.img"

# damage HOW: print the newest entry's seq; damage it in ssd.img.
damage () {
  python3 - "$dir/ssd.img" "$1" <<'PY'
import struct, sys
path, how = sys.argv[1], sys.argv[2]
img = open(path, "r+b")
sb = img.read(4096)
bucket_blocks, nbuckets, jfirst, jbuckets = struct.unpack_from("<4I", sb, 64)
ring = jfirst * bucket_blocks * 4096
img.seek(ring)
data = img.read(jbuckets * bucket_blocks * 4096)
best = None
for off in range(0, len(data), 4096):
    if data[off + 8:off + 16] != b"NCNJNRL1":
        continue
    version, = struct.unpack_from("<I", data, off + 16)
    seq, = struct.unpack_from("<Q", data, off + 40)
    if version in (1, 2) and (best is None or seq > best[0]):
        best = (seq, off)
if best is None:
    sys.exit("no journal entry found")
seq, off = best
sector = ring + off + 512      # the entry's sector 1
img.seek(sector)
if how == "flip":
    b = bytearray(img.read(512))
    b[100] ^= 0x10
    img.seek(sector)
    img.write(bytes(b))
else:
    img.write(bytes(512))
print(seq)
PY
}

for how in flip zero; do
  cp "$dir/pristine.img" "$dir/ssd.img"
  seq=$(damage $how) || die "$how: no journal entry to damage"
  echo "$how: damaged the newest journal entry, seq $seq"
  before=$(sha256sum < "$dir/ssd.img")
  rc=0
  "$NBDCACHE_TOOL" check "$dir/ssd.img" > "$dir/check.out" 2>&1 || rc=$?
  cat "$dir/check.out"
  after=$(sha256sum < "$dir/ssd.img")
  [ "$before" = "$after" ] || die "$how: nbdcache check modified the device"
  [ $rc = 1 ] || die "$how: nbdcache check exited $rc, not 1 (damaged)"
  grep -q "^result: DAMAGED" "$dir/check.out" ||
    die "$how: nbdcache check did not say damaged"
  grep -q "entry $seq " "$dir/check.out" ||
    die "$how: nbdcache check did not name entry $seq"
  expect_fail run_server nbdcached "$dir/c.conf" disk -- "true"
  echo "$how: check exit 1 (damaged), device unchanged, server refused: OK"
done
