#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-libnbd-buffer-bound.sh — [server] max_buffer bounds the memory that
# clients which never read their replies can pin (test-buffer-bound.c:
# 4 connections x 8 reads of 32 MiB, 1 GiB, unread for 1.5 s; the server's
# peak resident size must stay under the bound plus 96 MiB).  nbdcached
# only: the key is nbdcached's.
set -e
. "${srcdir:-.}/functions.sh"
nbdcached_only

tmp=$(make_tmpdir)
prog=$(cd "${builddir:-.}" && pwd)/test-buffer-bound
bound=64
write_config "$tmp/c.conf" "$tmp/disk.img" 256M
# max_buffer is a [server] key: put it right after the header.
sed -i "s/^\[server\]$/[server]\nmax_buffer = ${bound}M/" "$tmp/c.conf"
grep -q "^max_buffer = ${bound}M$" "$tmp/c.conf" || die "cannot set max_buffer"

# An ASan build keeps freed memory in quarantine (256 MiB by default),
# which would count as the server's own: keep it small.
ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=8
export ASAN_OPTIONS

# In the --run shell, $PPID is nbdcached.
BOUND_MIB=$bound run_server nbdcached "$tmp/c.conf" disk -- \
  "'$prog' \"\$unixsocket\" \$PPID" || die "memory bound"
