#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-libnbd-raw.sh — the protocol byte by byte from a raw-socket client
# (test-raw.c) against nbdcached and nbdkit + the plugin.  "disk" is
# 128 MiB; "big" is an 8 GiB sparse export for the 64-bit requests (only
# nbdcached has extended headers).
set -e
. "${srcdir:-.}/functions.sh"

tmp=$(make_tmpdir)
prog=$(cd "${builddir:-.}" && pwd)/test-raw
cat > "$tmp/c.conf" <<EOF
[server]
log = stderr
workers = 4
default_export = disk

[export disk]
backing = $tmp/disk.img
size = 128M

[export big]
backing = $tmp/big.img
size = 8G
EOF

failed=
for kind in $(server_kinds); do
  echo "==== $kind ====" >&2
  SERVER_KIND=$kind run_server "$kind" "$tmp/c.conf" disk -- \
    "'$prog' \"\$unixsocket\"" || failed="$failed $kind"
done
[ -z "$failed" ] || die "failed with:$failed"
