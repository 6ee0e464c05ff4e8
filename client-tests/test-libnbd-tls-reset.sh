#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-libnbd-tls-reset.sh — STARTTLS forgets what was negotiated before
# it, and a TLS-only server refuses options before it (test-tls-reset.c),
# against nbdcached and nbdkit + the plugin, with TLS on and required.
# X.509 server certificates from make_x509_certs; "disk" is 16 MiB of
# random data.
set -e
. "${srcdir:-.}/functions.sh"
requires openssl

tmp=$(make_tmpdir)
prog=$(cd "${builddir:-.}" && pwd)/test-tls-reset
certs=$tmp/pki
make_x509_certs "$certs"
random_file "$tmp/disk.img" 16M

failed=
for mode in on require; do
  cat > "$tmp/$mode.conf" <<EOF
[server]
log = stderr
workers = 4
tls = $mode
tls_certificates = $certs

[export disk]
backing = $tmp/disk.img
EOF
  for kind in $(tls_server_kinds); do
    echo "==== $kind, TLS $mode ====" >&2
    SERVER_KIND=$kind TLS_MODE=$mode TLS_CERTS=$certs \
      run_server "$kind" "$tmp/$mode.conf" disk \
        plugin:--tls=$mode plugin:--tls-certificates="$certs" -- \
        "'$prog' \"\$unixsocket\"" || failed="$failed $kind/tls=$mode"
  done
done
[ -z "$failed" ] || die "failed with:$failed"
