#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-backing-resize.sh — a grown backing store is served at its new size
# with its cached data; a shrunk one is refused and nothing is lost.
#
# WHAT: for each server kind, a writeback export on a fresh cache, with
# writeback_percent = 100 so what is written stays dirty in the cache:
#   1. write 0x5a at [0, 1M) (dirty) and read [4M, 5M) (pre-filled 0x77
#      on the backing: promoted, clean); stop;
#   2. grow the backing file 8M -> 12M (truncate -s), start: the export
#      is 12M, [0, 1M) reads 0x5a, [4M, 5M) 0x77, [8M, 12M) zeros; write
#      0x44 at [10M, 11M); stop;
#   3. start again: still 12M, 0x44 kept (the new size is recorded);
#   4. shrink to 6M: the start is refused with a message naming both
#      sizes and the remedy; the cache is untouched;
#   5. restore 12M: everything above reads back;
#   6. shrink to 6M again and start with --allow-shrink (the plugin:
#      allow-shrink=true): served at 6M with [0, 6M) intact; grown back to
#      12M, [6M, 12M) reads zeros (the dirty 0x44 past the end was dropped,
#      never served again).
# WHY (issue 12): growing a backing image made the server refuse to start,
# and the only remedy offered (format --force) destroyed the cache.
set -e
. "${srcdir:-.}/functions.sh"
requires qemu-io
requires nbdinfo
requires truncate

tmp=$(make_tmpdir)
failed=""

for kind in $(server_kinds); do
  dir=$tmp/$kind
  mkdir -p "$dir"
  echo "==== $kind ====" >&2
  truncate -s 8M "$dir/disk.img"
  printf '\167%.0s' $(seq 1 1024) > "$dir/k"         # 1 KiB of 0x77
  for i in $(seq 0 1023); do cat "$dir/k"; done |
    dd of="$dir/disk.img" bs=1M seek=4 conv=notrunc status=none
  write_config "$dir/c.conf" "$dir/disk.img" - "cache = ssd" \
    "mode = writeback" "writeback_percent = 100"
  cat >> "$dir/c.conf" <<EOC

[cache ssd]
path = $dir/cache.img
size = 64M
create = yes
bucket_size = 64K
EOC
  run_server "$kind" "$dir/c.conf" disk -- \
    'qemu-io -f raw -c "write -P 0x5a 0 1M" -c "read -P 0x77 4M 1M" "$uri"' ||
    { failed="$failed $kind:write"; continue; }
  # The write is in the cache only (dirty), else the test proves little.
  if ! cmp -s -n 1048576 "$dir/disk.img" /dev/zero; then
    echo "$0: FAIL: [$kind] the write reached the backing file" >&2
    failed="$failed $kind:dirty"
  fi

  truncate -s 12M "$dir/disk.img"
  run_server "$kind" "$dir/c.conf" disk -- '
    set -e
    size=$(nbdinfo --size "$uri")
    [ "$size" = 12582912 ] || { echo "size $size, want 12582912" >&2; exit 1; }
    qemu-io -f raw -c "read -P 0x5a 0 1M" -c "read -P 0x77 4M 1M" \
      -c "read -P 0 8M 4M" -c "write -P 0x44 10M 1M" "$uri"' \
    2> "$dir/log-grow" || failed="$failed $kind:grow"
  cat "$dir/log-grow" >&2
  # nbdkit shows only errors without -v.
  [ "$kind" = plugin ] ||
    grep -q "grew from 8388608 to 12582912 bytes" "$dir/log-grow" ||
    failed="$failed $kind:grow-message"

  run_server "$kind" "$dir/c.conf" disk -- '
    set -e
    size=$(nbdinfo --size "$uri")
    [ "$size" = 12582912 ] || { echo "size $size, want 12582912" >&2; exit 1; }
    qemu-io -f raw -c "read -P 0x5a 0 1M" -c "read -P 0x44 10M 1M" "$uri"' ||
    failed="$failed $kind:regrow"

  truncate -s 6M "$dir/disk.img"
  rc=0
  run_server "$kind" "$dir/c.conf" disk -- 'true' 2> "$dir/log-shrink" || rc=$?
  cat "$dir/log-shrink" >&2
  if [ $rc = 0 ] || [ $rc -ge 126 ]; then
    echo "$0: FAIL: [$kind] shrunk backing: exit status $rc, want a" \
         "clean refusal" >&2
    failed="$failed $kind:shrink-refuse"
  fi
  grep -q "shrank from 12582912 to 6291456 bytes.*truncate -s 12582912" \
    "$dir/log-shrink" || failed="$failed $kind:shrink-message"

  truncate -s 12M "$dir/disk.img"
  run_server "$kind" "$dir/c.conf" disk -- \
    'qemu-io -f raw -c "read -P 0x5a 0 1M" -c "read -P 0x77 4M 1M" \
       -c "read -P 0x44 10M 1M" "$uri"' ||
    failed="$failed $kind:after-shrink"

  # Shrink again, this time served with --allow-shrink (nbdcached) or
  # allow-shrink=true (plugin): 6M, the data below the end kept, the
  # cached (dirty) data past it dropped, so a later grow reads zeros there.
  truncate -s 6M "$dir/disk.img"
  check='set -e
    size=$(nbdinfo --size "$uri")
    [ "$size" = 6291456 ] || { echo "size $size, want 6291456" >&2; exit 1; }
    qemu-io -f raw -c "read -P 0x5a 0 1M" -c "read -P 0x77 4M 1M" "$uri"'
  rc=0
  if [ "$kind" = nbdcached ]; then
    run_server "$kind" "$dir/c.conf" disk --allow-shrink -- "$check" \
      2> "$dir/log-allow" || rc=$?
  else
    # As run_server does: the ASan preload (if any) stays out of clients.
    timeout -k 10 "$SERVER_TIMEOUT_S" $(nbdkit_env) "$NBDKIT" -U - \
      "$PLUGIN" config="$dir/c.conf" export=disk allow-shrink=true \
      --run "unset LD_PRELOAD; export uri; $check" 2> "$dir/log-allow" ||
      rc=$?
  fi
  cat "$dir/log-allow" >&2
  [ $rc = 0 ] || failed="$failed $kind:allow-shrink"
  [ "$kind" = plugin ] ||
    grep -q "shrank from 12582912 to 6291456 bytes; --allow-shrink" \
      "$dir/log-allow" || failed="$failed $kind:allow-shrink-message"
  truncate -s 12M "$dir/disk.img"
  run_server "$kind" "$dir/c.conf" disk -- \
    'qemu-io -f raw -c "read -P 0x5a 0 1M" -c "read -P 0 6M 6M" "$uri"' ||
    failed="$failed $kind:after-allow-shrink"
done

[ -z "$failed" ] || die "failed:$failed"
echo "$0: PASS"
