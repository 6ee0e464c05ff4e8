#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-format-upgrade.sh — a cache of on-disk format version 1, dirty data
# in it, is converted to version 2 when a server opens it, and serves that
# data; its file backing is then known by identity, not path.
#
# WHAT: for each server kind: a writeback export (writeback_percent =
# 100) writes 0x5a at [0, 1M) and stops with it dirty; make-v1-cache
# rewrites the cache's superblock as version 1 (what the previous release
# wrote: bsets, prios and journal are the same); nbdcache show says
# "version 1" and nbdcache check passes; the server opens it: [0, 1M)
# reads 0x5a, and show says version 2 with the export's identity recorded
# (file-id); the backing file renamed then still reads 0x5a.
# WHY (issue 12 §2): format changes must come with an upgrade path from
# v1: an existing cache opens and is converted, nothing lost.
set -e
. "${srcdir:-.}/functions.sh"
requires qemu-io
requires truncate
NBDCACHE=$(abspath "${NBDCACHE:-$top_builddir/admin/nbdcache}")
MAKE_V1=$(abspath "$top_builddir/client-tests/make-v1-cache")
[ -x "$MAKE_V1" ] || die "$MAKE_V1 not built (make check builds it)"

tmp=$(make_tmpdir)
failed=""

for kind in $(server_kinds); do
  dir=$tmp/$kind
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
  cmp -s -n 1048576 "$dir/disk.img" /dev/zero ||
    failed="$failed $kind:not-dirty"

  "$MAKE_V1" "$dir/cache.img" || { failed="$failed $kind:make-v1"; continue; }
  "$NBDCACHE" show "$dir/cache.img" > "$dir/show1" || true
  cat "$dir/show1" >&2
  grep -q "format: *version 1 (converted" "$dir/show1" ||
    failed="$failed $kind:show-v1"
  grep -q "dirty 1 MiB" "$dir/show1" || failed="$failed $kind:v1-dirty"
  "$NBDCACHE" check "$dir/cache.img" >&2 || failed="$failed $kind:check-v1"

  run_server "$kind" "$dir/c.conf" disk -- \
    'qemu-io -f raw -c "read -P 0x5a 0 1M" "$uri"' 2> "$dir/log" ||
    failed="$failed $kind:read-after-upgrade"
  cat "$dir/log" >&2
  "$NBDCACHE" show --json "$dir/cache.img" > "$dir/show2" || true
  cat "$dir/show2" >&2
  grep -q '"version": 2,' "$dir/show2" || failed="$failed $kind:show-v2"
  grep -q '"identity": "file-id"' "$dir/show2" ||
    failed="$failed $kind:identity-recorded"
  "$NBDCACHE" check "$dir/cache.img" >&2 || failed="$failed $kind:check-v2"

  mv "$dir/disk.img" "$dir/renamed.img"
  sed -i 's/^backing = disk.img$/backing = renamed.img/' "$dir/c.conf"
  run_server "$kind" "$dir/c.conf" disk -- \
    'qemu-io -f raw -c "read -P 0x5a 0 1M" "$uri"' ||
    failed="$failed $kind:renamed-after-upgrade"
done

[ -z "$failed" ] || die "failed:$failed"
echo "$0: PASS"
