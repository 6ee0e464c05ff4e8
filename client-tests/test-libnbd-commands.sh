#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-libnbd-commands.sh — every command and flag through libnbd
# (test-commands.c) against nbdcached and nbdkit + the plugin: the
# read-write tests on "disk", the read-only ones on "ro".  Both backing
# files get the known sparse layout (test-commands --prepare) afresh before
# each server runs.
set -e
. "${srcdir:-.}/functions.sh"

tmp=$(make_tmpdir)
prog=$(cd "${builddir:-.}" && pwd)/test-commands
cat > "$tmp/c.conf" <<EOF
[server]
log = stderr
workers = 4

[export disk]
backing = $tmp/disk.img
description = laid out by test-commands --prepare

[export ro]
backing = $tmp/ro.img
readonly = yes
EOF

failed=
for kind in $(server_kinds); do
  echo "==== $kind ====" >&2
  "$prog" --prepare "$tmp/disk.img" || die "cannot prepare disk.img"
  "$prog" --prepare "$tmp/ro.img" || die "cannot prepare ro.img"
  SERVER_KIND=$kind run_server "$kind" "$tmp/c.conf" disk -- \
    "'$prog' \"\$uri\"" || failed="$failed $kind"
  SERVER_KIND=$kind run_server "$kind" "$tmp/c.conf" ro -- \
    "'$prog' -r \"\$uri\"" || failed="$failed $kind(ro)"
done
[ -z "$failed" ] || die "failed with:$failed"
