#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-libnbd-meta-access.sh — NBD_OPT_LIST_META_CONTEXT and
# NBD_OPT_SET_META_CONTEXT refuse what NBD_OPT_INFO refuses
# (test-meta-access.c, a plain-text raw client): a TLS-only export
# (ERR_TLS_REQD) and one closed to Unix-socket clients (ERR_POLICY), next
# to an open one.  nbdcached only: nbdkit answers these options itself.
set -e
. "${srcdir:-.}/functions.sh"
nbdcached_only
requires openssl

tmp=$(make_tmpdir)
prog=$(cd "${builddir:-.}" && pwd)/test-meta-access
make_x509_certs "$tmp/pki"
cat > "$tmp/c.conf" <<CONF
[server]
log = stderr
workers = 2
tls = on
tls_certificates = $tmp/pki

[export disk]
backing = $tmp/disk.img
size = 1M

[export secret]
backing = $tmp/secret.img
size = 1M
tls = require

[export nounix]
backing = $tmp/nounix.img
size = 1M
allow_unix = no
CONF

run_server nbdcached "$tmp/c.conf" disk -- "'$prog' \"\$unixsocket\"" ||
  die "meta context access checks"
