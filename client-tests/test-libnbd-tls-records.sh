#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-libnbd-tls-records.sh — each reply under TLS comes in the fewest
# TLS records its size allows (test-tls-records.c), against nbdcached and
# nbdkit + the plugin, with tls = require and X.509 server certificates
# from make_x509_certs; "disk" is 16 MiB of random data.
set -e
. "${srcdir:-.}/functions.sh"
requires openssl

tmp=$(make_tmpdir)
prog=$(cd "${builddir:-.}" && pwd)/test-tls-records
certs=$tmp/pki
make_x509_certs "$certs"
random_file "$tmp/disk.img" 16M
cat > "$tmp/tls.conf" <<CONF
[server]
log = stderr
workers = 4
tls = require
tls_certificates = $certs

[export disk]
backing = $tmp/disk.img
CONF

failed=
for kind in $(tls_server_kinds); do
  echo "==== $kind ====" >&2
  SERVER_KIND=$kind TLS_CERTS=$certs \
    run_server "$kind" "$tmp/tls.conf" disk \
      plugin:--tls=require plugin:--tls-certificates="$certs" -- \
      "'$prog' \"\$unixsocket\"" || failed="$failed $kind"
done
[ -z "$failed" ] || die "failed with:$failed"
