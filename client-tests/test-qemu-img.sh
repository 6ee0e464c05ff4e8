#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-qemu-img.sh — qemu-img info of an export; qemu-img convert of a
# mostly-zero qcow2 image with random clusters into an export whose backing
# holds random garbage (so the zero ranges must really be zeroed), then
# qemu-img compare against the source.
set -e
. "${srcdir:-.}/functions.sh"
requires qemu-img qemu-io cmp
requires_python                 # /usr/bin/python3 parses the JSON

tmp=$(make_tmpdir)
size=16M

# Source: a qcow2 with a few random 64 KiB clusters, zero elsewhere.
random_file "$tmp/data" 1M
qemu-img create -q -f qcow2 "$tmp/src.qcow2" $size
for off in 0 3M 7M 12M 15M; do
  qemu-io -f qcow2 "$tmp/src.qcow2" \
    -c "write -s $tmp/data $off 64k" >/dev/null
done
qemu-img convert -f qcow2 -O raw "$tmp/src.qcow2" "$tmp/src.raw"

for kind in $(server_kinds); do
  random_file "$tmp/disk.img" $size      # garbage that must be overwritten
  write_config "$tmp/c.conf" "$tmp/disk.img" -
  run_server "$kind" "$tmp/c.conf" disk -- "
    set -e
    qemu-img info --output=json \"\$uri\" > $tmp/info.json
    qemu-img convert -n -f qcow2 -O raw $tmp/src.qcow2 \"\$uri\"
    qemu-img compare -f qcow2 -F raw $tmp/src.qcow2 \"\$uri\"
  "
  "$PYTHON" - "$tmp/info.json" <<'EOF' || die "[$kind] qemu-img info"
import json, sys
j = json.load(open(sys.argv[1]))
print("qemu-img info:", j)
sys.exit(0 if j["virtual-size"] == 16 * 1024 * 1024 else 1)
EOF
  cmp "$tmp/src.raw" "$tmp/disk.img" || die "[$kind] backing file differs"
  echo "[$kind] qemu-img info/convert/compare OK"
done
