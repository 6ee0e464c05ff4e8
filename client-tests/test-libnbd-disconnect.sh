#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-libnbd-disconnect.sh — connections that die with requests in flight
# (test-disconnect.c: a bad magic or an oversized payload after a burst of
# requests, and resets), against nbdcached and nbdkit + the plugin; the
# server must survive every one and still serve.  DISCONNECT_ROUNDS sets
# the rounds per case (default 40).  nbdkit < 1.33.10 itself aborts on
# such hang-ups with several threads per connection (see
# nbdkit_hangup_opts), and hangs at exit with an ASan plugin preloaded
# (see hangup_server_kinds).
set -e
. "${srcdir:-.}/functions.sh"

tmp=$(make_tmpdir)
prog=$(cd "${builddir:-.}" && pwd)/test-disconnect
write_config "$tmp/c.conf" "$tmp/disk.img" 64M
hangup_opts=($(nbdkit_hangup_opts))

failed=
for kind in $(hangup_server_kinds); do
  echo "==== $kind ====" >&2
  SERVER_KIND=$kind run_server "$kind" "$tmp/c.conf" disk "${hangup_opts[@]}" -- \
    "'$prog' \"\$unixsocket\"" || failed="$failed $kind"
done
[ -z "$failed" ] || die "failed with:$failed"
