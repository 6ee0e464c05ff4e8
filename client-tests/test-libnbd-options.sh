#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-libnbd-options.sh — option haggling through libnbd (test-options.c)
# against nbdcached and nbdkit + the plugin.
# Serves "disk" (64 MiB, the default export) and "second" (1 MiB,
# read-only) with the descriptions test-options.c expects.
set -e
. "${srcdir:-.}/functions.sh"

tmp=$(make_tmpdir)
prog=$(cd "${builddir:-.}" && pwd)/test-options
truncate -s 1M "$tmp/second.img"
cat > "$tmp/c.conf" <<EOF
[server]
log = stderr
workers = 4
default_export = disk

[export disk]
backing = $tmp/disk.img
size = 64M
description = nbdcache test disk

[export second]
backing = $tmp/second.img
readonly = yes
description = the second export
EOF

# SERVER_KIND tells the program which server it talks to.
failed=
for kind in $(server_kinds); do
  echo "==== $kind ====" >&2
  SERVER_KIND=$kind run_server "$kind" "$tmp/c.conf" disk -- \
    "'$prog' \"\$uri\"" || failed="$failed $kind"
done
[ -z "$failed" ] || die "failed with:$failed"
