#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-backing-missing.sh — a deleted backing file is not re-created empty
# while the cache holds data for it.
#
# WHAT: for each server kind and each cached mode (writeback: the cache
# holds dirty data; writethrough: clean data): an export with `size =`
# (so its backing file is created when missing) on a fresh cache.
#   1. write 1 MiB through it (qemu-io), stop the server;
#   2. delete the backing file and start again: the server must refuse
#      (exit 1..125), with an error naming the cache, and must not create
#      the backing file;
#   3. a brand-new export (another backing path, never cached) on the
#      same, now used, cache is still created and served (the rule is
#      about stores the cache knows, not about `size =`).
# WHY (issue 15): the export came back silently as an empty disk while the
# cache still held keys (even dirty ones) for the old content.
set -e
. "${srcdir:-.}/functions.sh"
requires qemu-io

tmp=$(make_tmpdir)
failed=""

for kind in $(server_kinds); do
  for mode in writeback writethrough; do
    dir=$tmp/$kind-$mode
    mkdir -p "$dir"
    echo "==== $kind $mode ====" >&2
    write_config "$dir/c.conf" "$dir/disk.img" 8M "cache = ssd" "mode = $mode"
    cat >> "$dir/c.conf" <<EOF

[cache ssd]
path = $dir/cache.img
size = 64M
create = yes
bucket_size = 64K
EOF
    run_server "$kind" "$dir/c.conf" disk -- \
      'qemu-io -f raw -c "write -P 0x5a 0 1M" "$uri"' ||
      { failed="$failed $kind-$mode:write"; continue; }
    [ -f "$dir/disk.img" ] || die "the backing file was not created"

    rm "$dir/disk.img"
    rc=0
    run_server "$kind" "$dir/c.conf" disk -- 'true' 2> "$dir/log" || rc=$?
    cat "$dir/log" >&2
    if [ $rc = 0 ] || [ $rc -ge 126 ]; then
      echo "$0: FAIL: [$kind $mode] restart without the backing: exit" \
           "status $rc, want a clean refusal" >&2
      failed="$failed $kind-$mode:refuse"
    fi
    if ! grep -q "missing, but cache 'ssd' holds data for it" "$dir/log"; then
      echo "$0: FAIL: [$kind $mode] no error naming the cache" >&2
      failed="$failed $kind-$mode:message"
    fi
    if [ -e "$dir/disk.img" ]; then
      echo "$0: FAIL: [$kind $mode] the backing file was re-created" >&2
      failed="$failed $kind-$mode:created"
    fi

    # A store new to the cache is still created (a config without the
    # refused export: nbdcached opens every export it lists).
    write_config "$dir/c2.conf" "$dir/fresh.img" 8M "cache = ssd" \
      "mode = $mode"
    sed -n '/^\[cache ssd\]/,$p' "$dir/c.conf" >> "$dir/c2.conf"
    run_server "$kind" "$dir/c2.conf" fresh -- \
      'qemu-io -f raw -c "read -P 0 0 64k" "$uri"' ||
      failed="$failed $kind-$mode:fresh"
    [ -f "$dir/fresh.img" ] || failed="$failed $kind-$mode:fresh-file"
  done
done

[ -z "$failed" ] || die "failed:$failed"
echo "$0: PASS"
