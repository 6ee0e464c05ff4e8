#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-plugin-access.sh — the plugin enforces an [export]'s access rules
# from a shared config the way nbdcached does, instead of ignoring them:
# tls = require refuses plaintext clients (nbdkit --tls=on) and hides the
# export from plaintext LIST; allow refuses TCP clients outside the list;
# allow_unix = no refuses Unix-socket clients; allow_subjects, which nbdkit
# cannot check, makes nbdkit refuse to start (fail closed).  The same
# behaviour of nbdcached is tested in test-tls-policy.sh.
set -e
. "${srcdir:-.}/functions.sh"
requires nbdinfo openssl
want_server plugin || { echo "plugin not selected (SERVERS)"; exit 77; }

tmp=$(make_tmpdir)
make_x509_certs "$tmp/pki" >/dev/null
ckdir="$tmp/pki/client-alice"
cat > "$tmp/c.conf" <<EOF
[server]
tls = on
tls_certificates = $tmp/pki
tls_verify_peer = yes

[export tlsonly]
backing = $tmp/a.img
size = 1M
tls = require

[export net10]
backing = $tmp/b.img
size = 1M
allow = 10.0.0.0/8

[export nounix]
backing = $tmp/c.img
size = 1M
allow_unix = no

[export subjects]
backing = $tmp/d.img
size = 1M
allow_subjects = CN=alice,O=Example
EOF

# An ASan plugin needs the ASan runtime preloaded into nbdkit, which then
# hangs at exit after a TLS session (see tls_server_kinds in functions.sh):
# there, only the plaintext refusals are checked.
skip_tls_session=
if _ct_plugin_asan; then
  skip_tls_session=1
  echo "NOTE: ASan plugin: the TLS session to the tls = require export is skipped" >&2
fi

# The plugin's refusals, checked inside --run so that a refusal cannot pass
# because nbdkit never started.
cat > "$tmp/tlsonly.sh" <<EOF
set -e
if nbdinfo --size "nbd+unix:///tlsonly?socket=\$unixsocket" 2>$tmp/err; then
  echo "FAIL: plaintext client served a tls = require export"; exit 1
fi
cat $tmp/err
if nbdinfo --list "nbd+unix:///?socket=\$unixsocket" 2>&1 | grep -q 'export="tlsonly"'; then
  echo "FAIL: tls = require export listed in plaintext"; exit 1
fi
[ -n "$skip_tls_session" ] && exit 0
nbdinfo --size "nbds+unix:///tlsonly?socket=\$unixsocket&tls-certificates=$ckdir"
EOF
run_server plugin "$tmp/c.conf" tlsonly plugin:--tls=on \
  "plugin:--tls-certificates=$tmp/pki" -- "sh $tmp/tlsonly.sh" ||
  die "[plugin] tls = require"
echo "[plugin] tls = require: plaintext refused and unlisted, TLS served: OK"

cat > "$tmp/net10.sh" <<EOF
if nbdinfo --size "nbd://127.0.0.1:\$port/net10" 2>$tmp/err; then
  echo "FAIL: 127.0.0.1 served an export with allow = 10.0.0.0/8"; exit 1
fi
cat $tmp/err
EOF
run_server plugin "$tmp/c.conf" net10 -l 127.0.0.1:0 -- "sh $tmp/net10.sh" ||
  die "[plugin] allow"
echo "[plugin] allow = 10.0.0.0/8 refuses 127.0.0.1: OK"

cat > "$tmp/nounix.sh" <<EOF
if nbdinfo --size "nbd+unix:///nounix?socket=\$unixsocket" 2>$tmp/err; then
  echo "FAIL: a Unix-socket client was served with allow_unix = no"; exit 1
fi
cat $tmp/err
EOF
run_server plugin "$tmp/c.conf" nounix -- "sh $tmp/nounix.sh" ||
  die "[plugin] allow_unix"
echo "[plugin] allow_unix = no refuses Unix clients: OK"

rm -f "$tmp/ran"
expect_fail run_server plugin "$tmp/c.conf" subjects -- "touch $tmp/ran"
[ ! -e "$tmp/ran" ] || die "[plugin] an allow_subjects export was served"
echo "[plugin] allow_subjects refuses to start (fail closed): OK"
