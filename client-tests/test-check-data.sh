#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-check-data.sh — data checksums end to end: `nbdcache check --data`
# finds a damaged cached block, and the server never serves it.
#
# WHAT: nbdcached caches a disk in writeback mode: 64 blocks written
# (dirty), 64 other blocks of the disk read (promoted: clean), FLUSH, one
# more block written with FUA, and the server is killed (so writeback, which starts when the export has
# been idle for a second, leaves the written blocks dirty; the keys are
# in the journal, pending replay).  `nbdcache check
# --data` says clean and counts the blocks.  Then, each on a fresh copy of
# the cache device:
#   dirty: one bit of a dirty block flipped: check --data exits 1, names
#          the export and "1 DIRTY block"; plain check still exits 0 (it
#          reads no data); neither changes the device; a restarted server
#          answers a read of that block with EIO and the other blocks
#          right, and its stats count the corrupt dirty block;
#   clean: one bit of a clean block flipped: check --data exits 0 with a
#          note "1 clean block"; the server serves the block right (from
#          the disk) and counts a corrupt clean block;
#   inline: a last FUA write after the FLUSH is a journal write of its own
#          whose entry (version 4) carries its block: check reports the
#          inline data and check --data counts the block as "next open
#          rewrites them" instead of verifying it (also on the undamaged
#          device); with one bit of its cached copy flipped check --data
#          still exits 0, and a restarted server writes it back from the
#          entry (its log says so) and serves it right.
# All of it twice: a buffered cache (direct = no) and an O_DIRECT one
# (direct = yes), whose hits the loop thread reads through its io_uring:
# there the damaged dirty block must be found by the ring's completion
# and the read redone by a worker (the server's debug line counts it).
# HOW: a cached block is found in the cache file by its content (each
# block written or read has a unique 16-byte tag), python3.  The inline
# block holds its tag once, at its start: the journal entry's copy of it
# (in stamped sectors) then never starts a 4 KiB block of the file.
set -e
. "${srcdir:-.}/functions.sh"
requires nbdsh python3 sha256sum

NBDCACHE_TOOL=$(abspath "${NBDCACHE_TOOL:-$top_builddir/admin/nbdcache}")

# scenario DIRECT: everything below, on a cache with direct = DIRECT.
# (The body is not indented: its here-documents end at column 0.)
scenario () {
local direct=$1 dir rc victim before after
dir=$(make_tmpdir)
truncate -s 64M "$dir/disk.img"
# The disk's blocks 1000.. hold tagged data (read later: clean keys).
python3 - "$dir/disk.img" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    for i in range(64):
        f.seek((1000 + i) * 4096)
        f.write((b"CLEAN-BLOCK-%04d" % i) * 256)
PY
write_config "$dir/c.conf" "$dir/disk.img" - \
  "cache = ssd" "mode = writeback" "writeback_percent = 100" \
  "sequential_cutoff = 0" \
  "" "[cache ssd]" "path = $dir/ssd.img" "size = 32M" "create = yes" \
  "bucket_size = 64K" "direct = $direct"
sed -i 's/^\[server\]$/[server]\nlog_level = debug/' "$dir/c.conf"

# The server is killed right after the FLUSH: writeback (which starts
# once the export is idle for a second) has no time to clean the blocks.
rc=0
run_server nbdcached "$dir/c.conf" disk -- \
  "nbdsh -u \"\$uri\" -c '
for i in range(64):
    h.pwrite(b\"DIRTY-BLOCK-%04d\" % i * 256, (i * 3) * 4096)
for i in range(64):
    assert h.pread(4096, (1000 + i) * 4096) == b\"CLEAN-BLOCK-%04d\" % i * 256
h.flush()
h.pwrite(b\"INLINE-BLOCK-000\" + b\"inline data \" * 340, 2000 * 4096,
         nbd.CMD_FLAG_FUA)
' && touch $dir/written && kill -9 \$PPID" || rc=$?
[ -e "$dir/written" ] || die "writing and reading through the cache failed"
# A dirty block that was not written back (normally all of them).
victim=$(python3 - "$dir/disk.img" <<'PY'
import sys
with open(sys.argv[1], "rb") as f:
    for i in range(64):
        f.seek(i * 3 * 4096)
        if f.read(16) != b"DIRTY-BLOCK-%04d" % i:
            print(i)
            break
    else:
        sys.exit("every block was written back before the kill")
PY
) || die "no dirty block left to damage"

# check_data: nbdcache check --data on the cache, its report in
# check.out and on stdout, its exit status in rc.
check_data () {
  rc=0
  "$NBDCACHE_TOOL" check --data "$dir/ssd.img" > "$dir/check.out" 2>&1 ||
    rc=$?
  cat "$dir/check.out"
}

check_data
[ $rc = 0 ] && grep -q "^result: clean" "$dir/check.out" ||
  die "the undamaged cache is not clean (exit $rc)"
grep -q "^data: ok, [0-9]* blocks verified, 0 corrupt" "$dir/check.out" ||
  die "check --data did not report the blocks it verified"
# The FUA write after the FLUSH: a journal write of its own whose entry
# (version 4) carries its block; the next open writes it back.
grep -q "^journal: the newest write carries the data of 1 key inline; the next open writes it back where the index still points at it" \
  "$dir/check.out" || die "check did not report the entry's inline data"
grep -q "^data: 1 of them not verified: the newest journal write carries them, the next open rewrites them" \
  "$dir/check.out" ||
  die "check --data did not count the inline block as rewritten at the next open"
cp "$dir/ssd.img" "$dir/pristine.img"

# flip TAG: flip a bit in the cached block that starts with TAG.
flip () {
  python3 - "$dir/ssd.img" "$1" <<'PY'
import sys
path, tag = sys.argv[1], sys.argv[2].encode()
data = open(path, "rb").read()
for off in range(0, len(data), 4096):
    if data[off:off + len(tag)] == tag:
        break
else:
    sys.exit("block %s not found in the cache" % tag)
with open(path, "r+b") as f:
    f.seek(off + 1000)
    b = f.read(1)
    f.seek(off + 1000)
    f.write(bytes([b[0] ^ 0x10]))
PY
}

# ---- dirty ----
flip "$(printf DIRTY-BLOCK-%04d "$victim")"
before=$(sha256sum < "$dir/ssd.img")
check_data
[ $rc = 1 ] || die "dirty: check --data exited $rc, not 1 (damaged)"
grep -q "^data of export 1 (disk): 1 DIRTY block fails its" "$dir/check.out" ||
  die "dirty: check --data did not name the export and the block"
rc=0
"$NBDCACHE_TOOL" check "$dir/ssd.img" > "$dir/check.out" 2>&1 || rc=$?
[ $rc = 0 ] || die "dirty: plain check (no --data) exited $rc"
after=$(sha256sum < "$dir/ssd.img")
[ "$before" = "$after" ] || die "dirty: check modified the device"
run_server nbdcached "$dir/c.conf" disk -- \
  "nbdsh -u \"\$uri\" -c '
import errno
try:
    h.pread(4096, $((victim * 3)) * 4096)
    raise SystemExit(\"the damaged dirty block was served\")
except nbd.Error as e:
    assert e.errno == errno.EIO or \"EIO\" in str(e), e
for i in range(64):
    if i != $victim:
        assert h.pread(4096, (i * 3) * 4096) == b\"DIRTY-BLOCK-%04d\" % i * 256
for i in range(64):
    assert h.pread(4096, (1000 + i) * 4096) == b\"CLEAN-BLOCK-%04d\" % i * 256
'" 2> "$dir/server.err" || {
  cat "$dir/server.err"
  die "dirty: the server served the damaged block or others wrongly"
}
cat "$dir/server.err"
grep -q "corrupt_dirty_blocks [1-9]" "$dir/server.err" ||
  die "dirty: the server's stats do not count the corrupt dirty block"
grep -q "1 dirty block(s) of export 1 in bucket .* fail their data checksum" \
  "$dir/server.err" || die "dirty: the server did not log the bad block"
if [ "$direct" = yes ]; then
  if grep -q "no io_uring for cache hits" "$dir/server.err"; then
    echo "$0: NOTE: no io_uring here: the ring's check is NOT tested" >&2
  else
    grep -q "io_uring: [0-9]* reads served, [1-9][0-9]* redone" \
      "$dir/server.err" ||
      die "dirty: the ring's read of the damaged block was not redone"
  fi
fi
echo "direct = $direct: dirty: check --data exit 1, plain check 0, device unchanged, EIO: OK"

# ---- clean ----
cp "$dir/pristine.img" "$dir/ssd.img"
flip "CLEAN-BLOCK-0011"
check_data
[ $rc = 0 ] || die "clean: check --data exited $rc, not 0"
grep -q "note: 1 clean block fails its" "$dir/check.out" ||
  die "clean: check --data did not note the clean block"
run_server nbdcached "$dir/c.conf" disk -- \
  "nbdsh -u \"\$uri\" -c '
for i in range(64):
    assert h.pread(4096, (1000 + i) * 4096) == b\"CLEAN-BLOCK-%04d\" % i * 256
'" 2> "$dir/server.err" || {
  cat "$dir/server.err"
  die "clean: the damaged clean block was not served right"
}
cat "$dir/server.err"
grep -q "corrupt_clean_blocks 1" "$dir/server.err" ||
  die "clean: the server's stats do not count the corrupt clean block"
echo "direct = $direct: clean: check --data exit 0 with a note, served from the disk: OK"

# ---- inline ----
# The block the newest journal entry carries, damaged in its cached copy
# (as if its write never reached the device): not verified, so not
# reported; the next open writes it back from the entry and serves it.
cp "$dir/pristine.img" "$dir/ssd.img"
flip "INLINE-BLOCK-000"
check_data
[ $rc = 0 ] && grep -q "^result: clean" "$dir/check.out" ||
  die "inline: check --data exited $rc, not 0 (the block is rewritten at open)"
grep -q "^data: 1 of them not verified" "$dir/check.out" ||
  die "inline: check --data did not count the block as rewritten"
! grep -q "fails its" "$dir/check.out" ||
  die "inline: check --data verified the block the entry carries"
run_server nbdcached "$dir/c.conf" disk -- \
  "nbdsh -u \"\$uri\" -c '
assert h.pread(4096, 2000 * 4096) == \\
    b\"INLINE-BLOCK-000\" + b\"inline data \" * 340
'" 2> "$dir/server.err" || {
  cat "$dir/server.err"
  die "inline: the block was not written back from the journal"
}
grep -q "1 block(s) of the newest journal write rewritten from its entries" \
  "$dir/server.err" || die "inline: the server did not log the rewrite"
grep -q "corrupt_dirty_blocks 0" "$dir/server.err" ||
  die "inline: the server counted a corrupt dirty block"
echo "direct = $direct: inline: not verified by check, rewritten at open: OK"
}

scenario no
scenario yes
