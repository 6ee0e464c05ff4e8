#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-backing-identity.sh — an export keeps its cached (dirty) data when
# its backing file is renamed or moved with its directory, and a different
# file at the same path is refused, never served with the old one's data.
#
# WHAT: for each server kind, a writeback export (writeback_percent = 100,
# so writes stay dirty in the cache) in a directory whose config names the
# backing file and the cache by relative paths:
#   1. write 0x5a at [0, 1M); stop (the data is dirty: the backing file
#      still reads zeros there);
#   2. move the whole directory (mv d d2) and start from there: [0, 1M)
#      reads 0x5a;
#   3. rename the backing file (disk.img -> renamed.img, config edited):
#      still 0x5a;
#   4. put another file (a copy made without extended attributes, so with
#      the same content but not the same file) at that path: the start is
#      refused with a message saying it is not the backing store the cache
#      holds data for; the original put back, 0x5a again.
# WHY (issue 12 §2): the cache keyed an export by its absolute path, so
# moving the directory orphaned the dirty data (reads returned the stale
# backing), and a replaced file was served with the old file's data.
set -e
. "${srcdir:-.}/functions.sh"
requires qemu-io
requires truncate

tmp=$(make_tmpdir)
failed=""

for kind in $(server_kinds); do
  dir=$tmp/$kind/d
  mkdir -p "$dir"
  echo "==== $kind ====" >&2
  truncate -s 8M "$dir/disk.img"
  write_config "$dir/c.conf" disk.img - "cache = ssd" \
    "mode = writeback" "writeback_percent = 100"
  cat >> "$dir/c.conf" <<EOC

[cache ssd]
path = cache.img
size = 64M
create = yes
bucket_size = 64K
EOC
  run_server "$kind" "$dir/c.conf" disk -- \
    'qemu-io -f raw -c "write -P 0x5a 0 1M" "$uri"' ||
    { failed="$failed $kind:write"; continue; }
  if ! cmp -s -n 1048576 "$dir/disk.img" /dev/zero; then
    echo "$0: FAIL: [$kind] the write reached the backing file" >&2
    failed="$failed $kind:dirty"
  fi

  # 2. The directory moved.
  mv "$tmp/$kind/d" "$tmp/$kind/moved"
  dir=$tmp/$kind/moved
  run_server "$kind" "$dir/c.conf" disk -- \
    'qemu-io -f raw -c "read -P 0x5a 0 1M" "$uri"' 2> "$dir/log-moved" ||
    failed="$failed $kind:moved-directory"
  cat "$dir/log-moved" >&2

  # 3. The backing file renamed (the export keeps its name).
  mv "$dir/disk.img" "$dir/renamed.img"
  sed -i 's/^backing = disk.img$/backing = renamed.img/' "$dir/c.conf"
  run_server "$kind" "$dir/c.conf" disk -- \
    'qemu-io -f raw -c "read -P 0x5a 0 1M" "$uri"' ||
    failed="$failed $kind:renamed"

  # 4. A different file at the same path: refused.
  mv "$dir/renamed.img" "$dir/original.img"
  cp "$dir/original.img" "$dir/renamed.img"     # no xattrs: another file
  rc=0
  run_server "$kind" "$dir/c.conf" disk -- \
    'qemu-io -f raw -c "read -P 0 0 1M" "$uri"' 2> "$dir/log-other" || rc=$?
  cat "$dir/log-other" >&2
  if [ $rc = 0 ] || [ $rc -ge 126 ]; then
    echo "$0: FAIL: [$kind] another file at the backing's path: exit" \
         "status $rc, want a clean refusal" >&2
    failed="$failed $kind:other-file-served"
  fi
  grep -q "is not the backing store that cache .* holds data for" \
    "$dir/log-other" || failed="$failed $kind:other-file-message"
  mv "$dir/original.img" "$dir/renamed.img"
  run_server "$kind" "$dir/c.conf" disk -- \
    'qemu-io -f raw -c "read -P 0x5a 0 1M" "$uri"' ||
    failed="$failed $kind:original-back"
done

[ -z "$failed" ] || die "failed:$failed"
echo "$0: PASS"
