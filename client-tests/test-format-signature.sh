#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-format-signature.sh — nbdcache format does not destroy another
# program's data without --force, and show / check name it instead of
# suggesting to format it.
#
# WHAT: an ext4 filesystem made with mkfs.ext4 on a 64 MiB file (with a
# file in it):
#   - `nbdcache format IMG` exits 1, names "ext4 filesystem", and leaves
#     the image byte for byte as it was;
#   - `nbdcache check IMG` and `nbdcache show IMG` exit 2, say it holds an
#     ext4 filesystem, and do not mention formatting;
#   - a server with create = yes on it (nbdcached, nbdkit + the plugin)
#     refuses to start, naming ext4, and leaves the image as it was;
#   - `nbdcache format --force IMG` formats it (exit 0, says what it
#     overwrote), and `nbdcache check` then says clean.
# A dos partition table is refused the same way.
# WHY: before, format overwrote an ext4 image without a word, and check on
# a wrong file suggested formatting it.
set -e
. "${srcdir:-.}/functions.sh"
requires mkfs.ext4 cmp grep
NBDCACHE_TOOL=$(abspath "${NBDCACHE_TOOL:-$top_builddir/admin/nbdcache}")
[ -x "$NBDCACHE_TOOL" ] || die "nbdcache is not built: $NBDCACHE_TOOL"

tmp=$(make_tmpdir)
img=$tmp/ext4.img
truncate -s 64M "$img"
echo "precious" > "$tmp/precious"
mkfs.ext4 -q -F -d "$tmp/precious" "$img" 2>/dev/null ||
  mkfs.ext4 -q -F "$img" || die "mkfs.ext4 failed"
cp "$img" "$tmp/orig.img"

rc=0
"$NBDCACHE_TOOL" format "$img" > "$tmp/out" 2> "$tmp/err" || rc=$?
cat "$tmp/out" "$tmp/err" >&2
[ $rc = 1 ] || die "format of an ext4 image exited $rc, expected 1"
grep -q "ext4 filesystem" "$tmp/err" ||
  die "format did not say it found an ext4 filesystem"
cmp "$img" "$tmp/orig.img" || die "format changed the ext4 image"
echo "format of an ext4 image refused, naming ext4: OK"

for cmd in check show; do
  rc=0
  "$NBDCACHE_TOOL" $cmd "$img" > "$tmp/out" 2> "$tmp/err" || rc=$?
  cat "$tmp/out" "$tmp/err" >&2
  [ $rc = 2 ] || die "$cmd of an ext4 image exited $rc, expected 2"
  grep -q "it holds an ext4 filesystem" "$tmp/err" ||
    die "$cmd did not say the image holds an ext4 filesystem"
  ! grep -qi "format" "$tmp/out" "$tmp/err" ||
    die "$cmd suggests formatting an ext4 filesystem"
  echo "$cmd of an ext4 image names it and does not suggest format: OK"
done
cmp "$img" "$tmp/orig.img" || die "check or show changed the ext4 image"

# create = yes formats a device with no nbdcache cache, but not this one.
truncate -s 1M "$tmp/disk.img"
write_config "$tmp/c.conf" "$tmp/disk.img" - "cache = ssd" "" \
  "[cache ssd]" "path = $img" "create = yes"
for kind in $(server_kinds); do
  rm -f "$tmp/ran"
  rc=0
  run_server "$kind" "$tmp/c.conf" disk -- "touch $tmp/ran" \
    2> "$tmp/$kind.err" || rc=$?
  cat "$tmp/$kind.err" >&2
  [ $rc != 0 ] && [ ! -e "$tmp/ran" ] ||
    die "[$kind] create = yes served an ext4 image as a cache"
  grep -q "holds an ext4 filesystem" "$tmp/$kind.err" ||
    die "[$kind] create = yes: no message naming the ext4 filesystem"
  cmp "$img" "$tmp/orig.img" || die "[$kind] create = yes changed the image"
  echo "[$kind] create = yes on an ext4 image refused: OK"
done

"$NBDCACHE_TOOL" format --force "$img" > "$tmp/out" 2> "$tmp/err" ||
  { cat "$tmp/err" >&2; die "format --force of an ext4 image failed"; }
cat "$tmp/out" "$tmp/err" >&2
grep -q "ext4 filesystem" "$tmp/err" ||
  die "format --force did not say what it overwrote"
"$NBDCACHE_TOOL" check "$img" >&2 || die "check after format --force failed"
echo "format --force of an ext4 image: OK"

# A dos partition table: one primary partition entry and the 0x55AA
# boot signature, written by hand (sfdisk is not always installed).
pt=$tmp/pt.img
truncate -s 64M "$pt"
printf '\000\040\041\000\203\024\020\010\000\010\000\000\240\206\001\000' |
  dd of="$pt" bs=1 seek=446 conv=notrunc 2>/dev/null
printf '\125\252' | dd of="$pt" bs=1 seek=510 conv=notrunc 2>/dev/null
rc=0
"$NBDCACHE_TOOL" format "$pt" 2> "$tmp/err" >/dev/null || rc=$?
cat "$tmp/err" >&2
[ $rc = 1 ] || die "format of a partitioned image exited $rc, expected 1"
grep -q "dos partition table" "$tmp/err" ||
  die "format did not name the partition table"
echo "format of a partitioned image refused: OK"
