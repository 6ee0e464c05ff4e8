#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-check-readonly.sh — `nbdcache check` never writes to the device.
#
# WHAT: nbdcached commits one write of 9,000 keys (three journal entries)
# through a writeback cache; then journal entries are made to look torn
# (one sector of each holds a fill sector, as if that part of the write
# never reached the device) so that the last of those entries is no
# longer part of the replayable chain.  Recovery would write fill over it
# (an interrupted commit's survivor); `nbdcache check` must not: the
# device is byte-identical afterwards (checksum before/after), check does
# not fail on a write ("Read-only file system", result INCOMPLETE), and it
# reports what it found.
set -e
. "${srcdir:-.}/functions.sh"
requires nbdsh python3 sha256sum

NBDCACHE_TOOL=$(abspath "${NBDCACHE_TOOL:-$top_builddir/admin/nbdcache}")
dir=$(make_tmpdir)
truncate -s 80M "$dir/disk.img"
# journal_delay_ms = 10000: the 9,000 writes below commit at the flush, as
# one write of 9,000 keys — three journal entries sharing write_first.
write_config "$dir/c.conf" "$dir/disk.img" - \
  "cache = ssd" "mode = writeback" \
  "" "[cache ssd]" "path = $dir/ssd.img" "size = 32M" "create = yes" \
  "bucket_size = 64K" "direct = no" "journal_delay_ms = 10000"

run_server nbdcached "$dir/c.conf" disk -- \
  "nbdsh -u \"\$uri\" -c '
for i in range(9000):
    h.aio_pwrite(b\"\\1\" * 4096, i * 8192)
    if i % 64 == 63:
        while h.aio_in_flight() > 0: h.poll(-1)
while h.aio_in_flight() > 0: h.poll(-1)
h.flush()
'" || die "writing through the cache failed"

# Tear entries (sector 1 := a fill sector of the ring, a valid stamp of
# something else: that sector "was never written") so that the newest
# replayable chain ends inside that multi-entry write: its middle entry
# and every entry newer than the write.  Its last entry stays valid:
# recovery drops it as an interrupted commit's survivor (a write); check
# must not.  (Damage instead of a tear is refused: see
# test-check-journal-damage.sh.)
python3 - "$dir/ssd.img" <<'PY' || die "no multi-entry journal write found"
import struct, sys
img = open(sys.argv[1], "r+b")
data = img.read(16 << 20)
found = {}
fill = None
for off in range(0, len(data), 4096):
    if (fill is None and data[off + 500:off + 504] == b"JSMT" and
            data[off + 488:off + 496] == bytes(8)):
        fill = data[off:off + 512]
    if data[off + 8:off + 16] == b"NCNJNRL1":
        seq = struct.unpack_from("<Q", data, off + 40)[0]
        wf = struct.unpack_from("<Q", data, off + 96)[0]
        found[seq] = (wf, off)
groups = {}
for seq, (wf, off) in found.items():
    groups.setdefault(wf, []).append(seq)
big = [sorted(g) for wf, g in groups.items() if wf and len(g) >= 3]
if not big or fill is None:
    sys.exit(1)
g = max(big)
damage = [g[1]] + [s for s in found if s > g[-1]]
print("journal write %d..%d; damaging entries %s" % (g[0], g[-1],
                                                    sorted(damage)))
for s in damage:
    img.seek(found[s][1] + 512)
    img.write(fill)
PY

before=$(sha256sum < "$dir/ssd.img")
rc=0
"$NBDCACHE_TOOL" check "$dir/ssd.img" > "$dir/check.out" 2> "$dir/check.err" ||
  rc=$?
cat "$dir/check.out" "$dir/check.err"
after=$(sha256sum < "$dir/ssd.img")
[ "$before" = "$after" ] || die "nbdcache check modified the cache device"
echo "the device is byte-identical after check: OK"
if grep -Ei "read-only file system|INCOMPLETE|write at offset" \
     "$dir/check.out" "$dir/check.err"; then
  die "nbdcache check tried to write"
fi
[ "$rc" != 2 ] || die "nbdcache check failed (exit 2) instead of checking"
grep -E "^journal: " "$dir/check.out" >/dev/null ||
  die "nbdcache check did not report on the journal"
grep -E "entries [0-9]+\.\.[0-9]+ of an interrupted commit would be dropped" \
  "$dir/check.err" >/dev/null ||
  die "nbdcache check did not report the entries recovery would drop"
echo "nbdcache check exit $rc, no write attempted: OK"
