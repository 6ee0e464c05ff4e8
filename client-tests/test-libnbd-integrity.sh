#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-libnbd-integrity.sh — random concurrent writes, zeroes and trims over
# 4 connections compared with a model (test-integrity.c), against nbdcached
# and nbdkit + the plugin.  NBDCACHE_SEED repeats a run (the seed is printed);
# TEST_DURATION_S sets the seconds per server (default 8).
set -e
. "${srcdir:-.}/functions.sh"

tmp=$(make_tmpdir)
prog=$(cd "${builddir:-.}" && pwd)/test-integrity
write_config "$tmp/c.conf" "$tmp/disk.img" 64M
export TEST_DURATION_S=${TEST_DURATION_S:-8}

failed=
for kind in $(server_kinds); do
  echo "==== $kind ====" >&2
  SERVER_KIND=$kind run_server "$kind" "$tmp/c.conf" disk -- \
    "'$prog' \"\$uri\"" || failed="$failed $kind"
done
[ -z "$failed" ] || die "failed with:$failed"
