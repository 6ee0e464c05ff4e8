#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-backing-shrink.sh — --allow-shrink writes the dirty data below the
# new end back to the backing store before it drops what lies past it.
#
# WHAT: for each server kind, a writeback export (writeback_percent =
# 100) on an 8M file writes 0x5a at [0, 1M) and 0x44 at [6M, 7M) and stops
# with them dirty; the file is cut to 4M:
#   1. without --allow-shrink the start is refused and the file untouched;
#   2. with it (the plugin: allow-shrink=true) and a client that does
#      nothing: right after, the backing file itself holds 0x5a at
#      [0, 1M) (written back at the start, not left to background
#      writeback), is still 4M, and the export reads 0x5a there;
#   3. grown back to 8M, [6M, 7M) reads zeros: the dirty data past the
#      end was dropped.
# WHY (issue 12 §2): a shrunk backing is refused unless --allow-shrink,
# which drops the cached keys past the new end after writing back what
# belongs below it.  test-backing-resize.sh covers grow and the refusal.
set -e
. "${srcdir:-.}/functions.sh"
requires qemu-io
requires truncate

tmp=$(make_tmpdir)
failed=""

for kind in $(server_kinds); do
  dir=$tmp/$kind
  mkdir -p "$dir"
  echo "==== $kind ====" >&2
  truncate -s 8M "$dir/disk.img"
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
    'qemu-io -f raw -c "write -P 0x5a 0 1M" -c "write -P 0x44 6M 1M" "$uri"' ||
    { failed="$failed $kind:write"; continue; }
  # 1M dirty at 64 KiB/s trickle: most of it is still in the cache only.
  truncate -s 4M "$dir/disk.img"

  rc=0
  run_server "$kind" "$dir/c.conf" disk -- 'true' 2> "$dir/log" || rc=$?
  cat "$dir/log" >&2
  if [ $rc = 0 ] || [ $rc -ge 126 ]; then
    failed="$failed $kind:shrink-not-refused"
  fi

  rc=0
  if [ "$kind" = nbdcached ]; then
    run_server "$kind" "$dir/c.conf" disk --allow-shrink -- 'true' \
      2> "$dir/log" || rc=$?
  else
    timeout -k 10 "$SERVER_TIMEOUT_S" $(nbdkit_env) "$NBDKIT" -U - \
      "$PLUGIN" config="$dir/c.conf" export=disk allow-shrink=true \
      --run 'true' 2> "$dir/log" || rc=$?
  fi
  cat "$dir/log" >&2
  [ $rc = 0 ] || failed="$failed $kind:allow-shrink"
  size=$(stat -c %s "$dir/disk.img")
  [ "$size" = 4194304 ] || failed="$failed $kind:size-$size"
  head -c 1048576 /dev/zero | tr '\0' '\132' > "$dir/want"
  cmp -n 1048576 "$dir/disk.img" "$dir/want" ||
    failed="$failed $kind:not-written-back-first"

  run_server "$kind" "$dir/c.conf" disk -- \
    'qemu-io -f raw -c "read -P 0x5a 0 1M" "$uri"' ||
    failed="$failed $kind:read-after-shrink"
  truncate -s 8M "$dir/disk.img"
  run_server "$kind" "$dir/c.conf" disk -- \
    'qemu-io -f raw -c "read -P 0x5a 0 1M" -c "read -P 0 6M 1M" "$uri"' ||
    failed="$failed $kind:past-end-not-dropped"
done

[ -z "$failed" ] || die "failed:$failed"
echo "$0: PASS"
