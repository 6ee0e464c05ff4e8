#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-nbdcopy.sh — nbdcopy round trip: a random 32 MiB file into the export
# and back out, compared byte for byte with cmp (also the backing file).
set -e
. "${srcdir:-.}/functions.sh"
requires nbdcopy cmp

tmp=$(make_tmpdir)
random_file "$tmp/src" 32M

for kind in $(server_kinds); do
  # A fresh backing file each time: the server creates it (size = 32M).
  rm -f "$tmp/disk.img" "$tmp/out"
  write_config "$tmp/c.conf" "$tmp/disk.img" 32M
  run_server "$kind" "$tmp/c.conf" disk -- \
    "nbdcopy $tmp/src \"\$uri\" && nbdcopy \"\$uri\" $tmp/out"
  cmp "$tmp/src" "$tmp/out" || die "[$kind] data read back differs"
  cmp "$tmp/src" "$tmp/disk.img" || die "[$kind] backing file differs"
  echo "[$kind] nbdcopy round trip OK"
done
