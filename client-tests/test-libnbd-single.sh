#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-libnbd-single.sh — libnbd runs the server on a socketpair as its
# stdin/stdout (nbdcached -s, nbdkit -s) and talks to it (test-single.c).
set -e
. "${srcdir:-.}/functions.sh"

tmp=$(make_tmpdir)
prog=$(cd "${builddir:-.}" && pwd)/test-single
write_config "$tmp/c.conf" "$tmp/disk.img" 16M

failed=
for kind in $(server_kinds); do
  echo "==== $kind ====" >&2
  mapfile -t argv < <(server_stdio_argv "$kind" "$tmp/c.conf" disk)
  [ ${#argv[@]} -gt 0 ] || die "no server command for $kind"
  echo "+ [$kind] $prog ${argv[*]}" >&2
  SERVER_KIND=$kind "$prog" "${argv[@]}" || failed="$failed $kind"
done
[ -z "$failed" ] || die "failed with:$failed"
