#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-moving-gc-pressure.sh — bulk writes that fill the cache do not make
# moving GC log an error.
#
# WHAT: for each server kind: a 128 MiB cache (1 MiB buckets, the
# default) in writeback mode with sequential_cutoff = 0 under a 512 MiB
# export; 6 x 256 MiB of random data written with nbdcopy over 4
# connections (twice the cache size each; 1 MiB and 64 KiB requests),
# then 20000 4 KiB writes, one every 8 KiB past the copy, at queue depth
# 16 (qemu-img bench).  Moving GC selects fragmented buckets against
# the free space of the moment; the writes take that space while it
# copies.  The server's log must have no error line about
# moving GC (before: "background moving GC failed: No space left on
# device" at error level), and the last bulk copy must read back.
# WHY (issue 12): an error in the log for what is ordinary pressure.
set -e
. "${srcdir:-.}/functions.sh"
requires nbdcopy qemu-img cmp

tmp=$(make_tmpdir)
random_file "$tmp/data" 256M

failed=""
for kind in $(server_kinds); do
  dir=$tmp/$kind
  mkdir -p "$dir"
  echo "==== $kind ====" >&2
  write_config "$dir/c.conf" "$dir/disk.img" 512M \
    "cache = ssd" "mode = writeback" "sequential_cutoff = 0"
  cat >> "$dir/c.conf" <<EOC

[cache ssd]
path = $dir/cache.img
size = 128M
create = yes
EOC
  run_server "$kind" "$dir/c.conf" disk -- "
    set -e
    for i in 1 2 3; do
      nbdcopy -C 4 '$tmp/data' \"\$uri\"
      nbdcopy -C 4 --request-size=65536 '$tmp/data' \"\$uri\"
    done
    qemu-img bench -f raw -w -c 20000 -s 4096 -S 8192 -o 256M -d 16 \
      \"\$uri\" > /dev/null
    nbdcopy \"\$uri\" - | head -c 268435456 | cmp - '$tmp/data'" \
    2> "$dir/log" || { cat "$dir/log" >&2; failed="$failed $kind:run"; continue; }
  if grep -i "error.*moving GC" "$dir/log" >&2; then
    echo "$0: FAIL: [$kind] moving GC logged an error" >&2
    failed="$failed $kind:log"
  fi
done

[ -z "$failed" ] || die "failed:$failed"
echo "$0: PASS"
