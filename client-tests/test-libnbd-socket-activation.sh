#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-libnbd-socket-activation.sh — libnbd starts the server with a
# listening socket on fd 3 (LISTEN_PID/LISTEN_FDS) and talks to it
# (test-socket-activation.c): nbdcached -c CONF, and nbdkit PLUGIN.
set -e
. "${srcdir:-.}/functions.sh"

tmp=$(make_tmpdir)
prog=$(cd "${builddir:-.}" && pwd)/test-socket-activation
write_config "$tmp/c.conf" "$tmp/disk.img" 16M
# The two servers at once need a backing each: one writer per file.
write_config "$tmp/c2.conf" "$tmp/disk.img" 16M
sed -i "s|^backing = .*|backing = $tmp/disk2.img|" "$tmp/c2.conf"

failed=
for kind in $(server_kinds); do
  echo "==== $kind ====" >&2
  case $kind in
    nbdcached) argv=("$NBDCACHED" -c "$tmp/c.conf"
                     -- "$NBDCACHED" -c "$tmp/c2.conf") ;;
    plugin)    argv=($(nbdkit_env) "$NBDKIT" "$PLUGIN" "config=$tmp/c.conf"
                     export=disk
                     -- $(nbdkit_env) "$NBDKIT" "$PLUGIN" "config=$tmp/c2.conf"
                     export=disk) ;;
  esac
  _ct_need_binary "$kind"
  echo "+ [$kind] $prog ${argv[*]}" >&2
  SERVER_KIND=$kind "$prog" "${argv[@]}" || failed="$failed $kind"
done
[ -z "$failed" ] || die "failed with:$failed"
