#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-qemu-io.sh — qemu-io writes and reads with patterns through an export:
# aligned and unaligned writes, FUA writes, write-zeroes (with and without
# unmap), discard, flush.  Every read checks a pattern; afterwards the
# backing file must equal a local file that got the same qemu-io commands.
set -e
. "${srcdir:-.}/functions.sh"
requires qemu-io cmp truncate

tmp=$(make_tmpdir)

K=1024
M=$((1024 * 1024))
cmds=(
  # aligned write and read back
  -c "write -P 0xab 0 1M"
  -c "read -P 0xab 0 1M"
  # FUA write
  -c "write -f -P 0x77 1M 64k"
  -c "read -P 0x77 1M 64k"
  # zeroes inside written data, the data around them untouched
  -c "write -z 256k 256k"
  -c "read -P 0 256k 256k"
  -c "read -P 0xab 0 256k"
  -c "read -P 0xab 512k 512k"
  # discard: on a file backing, trimmed data reads back as zeroes
  # (mode none punches a hole); the NBD spec alone would not promise it
  -c "write -P 0xcd 2M 1M"
  -c "discard 2M 1M"
  -c "read -P 0 2M 1M"
  # write zeroes that may unmap
  -c "write -P 0xee 6M 1M"
  -c "write -z -u 6M 1M"
  -c "read -P 0 6M 1M"
  # unaligned write, its neighbours unchanged
  -c "write -P 0x5a 4097 1000"
  -c "read -P 0x5a 4097 1000"
  -c "read -P 0xab 4096 1"
  -c "read -P 0xab 5097 1"
  # unaligned zeroes overlapping the end of it
  -c "write -z 5000 300"
  -c "read -P 0 5000 300"
  -c "read -P 0x5a 4097 903"
  -c "read -P 0xab 5300 100"
  # an unaligned write crossing a 4 KiB boundary, with FUA
  -c "write -f -P 0x11 $((3 * M + 4000)) 200"
  -c "read -P 0x11 $((3 * M + 4000)) 200"
  -c "read -P 0 $((3 * M + 3999)) 1"
  -c "read -P 0 $((3 * M + 4200)) 1"
  # the last byte of the export
  -c "write -P 0x42 $((8 * M - 1)) 1"
  -c "read -P 0x42 $((8 * M - 1)) 1"
  -c "flush"
)

# The model: the same commands on a plain local file.
truncate -s 8M "$tmp/model.img"
qemu-io -f raw "$tmp/model.img" "${cmds[@]}" > "$tmp/model.log" ||
  { cat "$tmp/model.log"; die "qemu-io on the local model file failed"; }

# Pass the commands to the server's shell quoted, one word each.
quoted=$(printf '%q ' "${cmds[@]}")

for kind in $(server_kinds); do
  rm -f "$tmp/disk.img"
  write_config "$tmp/c.conf" "$tmp/disk.img" 8M
  run_server "$kind" "$tmp/c.conf" disk -- \
    "bash -c 'qemu-io -f raw \"\$uri\" \"\$@\" > $tmp/$kind.log 2>&1' qemu-io $quoted" ||
    { cat "$tmp/$kind.log"; die "[$kind] qemu-io failed"; }
  if grep -i 'fail\|error' "$tmp/$kind.log"; then
    die "[$kind] qemu-io reported a failure"
  fi
  cmp "$tmp/model.img" "$tmp/disk.img" || die "[$kind] backing file differs from the model"
  echo "[$kind] qemu-io OK"
done
