#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-tls-psk.sh — TLS with pre-shared keys (the "username:hexkey" file
# nbdkit, libnbd and qemu share), against nbdcached ([server] tls = require,
# tls_psk_file = FILE) and nbdkit + the plugin (--tls=require --tls-psk=FILE):
#  1. Unix socket: nbdinfo with the user from the URI
#     (nbds+unix://alice@/disk?socket=…&tls-psk-file=…), an nbdcopy round
#     trip (cmp), qemu-img with tls-creds-psk; refused: the right user with
#     a different key, a user the server does not know (with alice's key),
#     a plain-text client.  The server still serves alice afterwards.
#  2. TCP (127.0.0.1, ephemeral port): nbdinfo and nbdcopy over
#     nbds://alice@localhost:PORT/disk.
#  3. nbdcached only: one server with both a PSK file and X.509
#     certificates serves PSK clients and certificate clients (nbdkit uses
#     only the PSK when given both, so the plugin has no equivalent).
#  4. nbdcached only: the same with tls_verify_peer = yes (the shipped
#     example config): PSK clients (nbdinfo, nbdcopy, qemu-img) still get
#     in, certificate clients need a verified certificate.
set -e
. "${srcdir:-.}/functions.sh"
requires openssl nbdinfo nbdcopy qemu-img cmp

tmp=$(make_tmpdir)
make_psk "$tmp/keys.psk" alice > "$tmp/alice.key"
make_psk "$tmp/keys.psk" bob >/dev/null
# The same user with another key; another user with alice's key.
make_psk "$tmp/wrong-key.psk" alice >/dev/null
make_psk "$tmp/unknown-user.psk" carol "$(cat "$tmp/alice.key")" >/dev/null
# qemu's tls-creds-psk reads DIR/keys.psk.
mkdir "$tmp/qemu-psk"
cp -p "$tmp/keys.psk" "$tmp/qemu-psk/keys.psk"
[ "$(stat -c %a "$tmp/keys.psk")" = 600 ] || die "make_psk: keys.psk is not mode 0600"
grep -q -E '^alice:[0-9a-f]{64}$' "$tmp/keys.psk" ||
  die "make_psk: no alice:<64 hex digits> line in keys.psk"

random_file "$tmp/disk.img" 8M
cp "$tmp/disk.img" "$tmp/orig.img"
random_file "$tmp/new.img" 8M
TMP=$tmp
export TMP

cat > "$tmp/psk.conf" <<EOF
[server]
log = stderr
workers = 4
tls = require
tls_psk_file = $tmp/keys.psk

[export disk]
backing = $tmp/disk.img
EOF
psk_opts=(plugin:--tls=require plugin:--tls-psk="$tmp/keys.psk")

# ---- 1. Unix socket ------------------------------------------------------
cat > "$tmp/unix.sh" <<'EOF'
set -e
. "$srcdir/client-checks.sh"
u () { echo "nbds+unix://$1@/disk?socket=$unixsocket&tls-psk-file=$TMP/$2"; }

must_work "nbdinfo as alice" nbdinfo "$(u alice keys.psk)"
nbdinfo --json "$(u alice keys.psk)" > "$TMP/info.json"
grep -q '"TLS": true' "$TMP/info.json" ||
  { echo "FAIL: nbdinfo --json does not report TLS"; cat "$TMP/info.json"; exit 1; }
must_work "nbdinfo as bob (a second user in the file)" \
  nbdinfo --size "$(u bob keys.psk)"
rm -f "$TMP/out.img"
must_work "nbdcopy export -> file" nbdcopy "$(u alice keys.psk)" "$TMP/out.img"
cmp "$TMP/orig.img" "$TMP/out.img" ||
  { echo "FAIL: nbdcopy over PSK read different data"; exit 1; }
must_work "nbdcopy file -> export" nbdcopy "$TMP/new.img" "$(u alice keys.psk)"
rm -f "$TMP/out.img"
must_work "nbdcopy export -> file again" nbdcopy "$(u alice keys.psk)" "$TMP/out.img"
cmp "$TMP/new.img" "$TMP/out.img" ||
  { echo "FAIL: nbdcopy over PSK wrote different data"; exit 1; }
must_work "qemu-img info (tls-creds-psk)" \
  qemu-img info \
    --object "tls-creds-psk,id=tls0,endpoint=client,dir=$TMP/qemu-psk,username=alice" \
    --image-opts "driver=nbd,server.type=unix,server.path=$unixsocket,export=disk,tls-creds=tls0"

must_fail "alice with the wrong key" "" nbdinfo --size "$(u alice wrong-key.psk)"
must_fail "an unknown user (carol, with alice's key)" "" \
  nbdinfo --size "$(u carol unknown-user.psk)"
must_fail "plain text" "" nbdinfo --size "nbd+unix:///disk?socket=$unixsocket"
must_work "alice is still served after the refusals" \
  nbdinfo --size "$(u alice keys.psk)"
EOF

for kind in $(tls_server_kinds); do
  cp "$tmp/orig.img" "$tmp/disk.img"
  run_server "$kind" "$tmp/psk.conf" disk "${psk_opts[@]}" -- \
    ". '$tmp/unix.sh'" || die "[$kind] PSK over a Unix socket"
  cmp "$tmp/new.img" "$tmp/disk.img" ||
    die "[$kind] the backing file does not hold what nbdcopy wrote over PSK"
  echo "[$kind] PSK over a Unix socket OK"
done

# ---- 2. TCP --------------------------------------------------------------
cat > "$tmp/tcp.sh" <<'EOF'
set -e
. "$srcdir/client-checks.sh"
t="nbds://alice@localhost:$port/disk?tls-psk-file=$TMP/keys.psk"
must_work "nbdinfo over nbds://alice@localhost" nbdinfo --size "$t"
rm -f "$TMP/out.img"
must_work "nbdcopy over nbds://alice@localhost" nbdcopy "$t" "$TMP/out.img"
cmp "$TMP/orig.img" "$TMP/out.img" ||
  { echo "FAIL: nbdcopy over PSK/TCP read different data"; exit 1; }
must_fail "alice with the wrong key over TCP" "" \
  nbdinfo --size "nbds://alice@localhost:$port/disk?tls-psk-file=$TMP/wrong-key.psk"
EOF

for kind in $(tls_server_kinds); do
  cp "$tmp/orig.img" "$tmp/disk.img"
  run_server "$kind" "$tmp/psk.conf" disk -l 127.0.0.1:0 "${psk_opts[@]}" -- \
    ". '$tmp/tcp.sh'" || die "[$kind] PSK over TCP"
  echo "[$kind] PSK over TCP OK"
done

# ---- 3. PSK and X.509 on one server (nbdcached only) ---------------------
want_server nbdcached || exit 0
make_x509_certs "$tmp/pki"
CERTS=$tmp/pki
export CERTS
cat > "$tmp/both.conf" <<EOF
[server]
log = stderr
workers = 4
tls = require
tls_psk_file = $tmp/keys.psk
tls_certificates = $tmp/pki

[export disk]
backing = $tmp/disk.img
EOF
cat > "$tmp/both.sh" <<'EOF'
set -e
. "$srcdir/client-checks.sh"
must_work "PSK client" \
  nbdinfo --size "nbds+unix://alice@/disk?socket=$unixsocket&tls-psk-file=$TMP/keys.psk"
must_work "X.509 client" \
  nbdinfo --size "nbds+unix:///disk?socket=$unixsocket&tls-certificates=$CERTS/client-alice"
must_work "X.509 client (qemu-img, verifying the server)" \
  qemu-img info \
    --object "tls-creds-x509,id=tls0,endpoint=client,dir=$CERTS/client-alice" \
    --image-opts "driver=nbd,server.type=unix,server.path=$unixsocket,export=disk,tls-creds=tls0,tls-hostname=localhost"
must_fail "PSK client with the wrong key" "" \
  nbdinfo --size "nbds+unix://alice@/disk?socket=$unixsocket&tls-psk-file=$TMP/wrong-key.psk"
EOF
run_server nbdcached "$tmp/both.conf" disk -- ". '$tmp/both.sh'" ||
  die "[nbdcached] PSK and X.509 on one server"
echo "[nbdcached] PSK and X.509 on one server OK"

# ---- 4. The same with tls_verify_peer = yes (nbdcached only) -------------
# What conf/nbdcached-tls.conf.example ships: certificate clients must
# present a verified certificate, PSK clients authenticate with their key.
# (OpenSSL refuses a PSK handshake under SSL_VERIFY_PEER unless the
# context has a session id context.)
sed 's/^tls = require$/tls = require\ntls_verify_peer = yes/' \
  "$tmp/both.conf" > "$tmp/verify.conf"
grep -q '^tls_verify_peer = yes$' "$tmp/verify.conf" ||
  die "could not write $tmp/verify.conf"
cat > "$tmp/verify.sh" <<'EOF'
set -e
. "$srcdir/client-checks.sh"
must_work "PSK client (nbdinfo)" \
  nbdinfo --size "nbds+unix://alice@/disk?socket=$unixsocket&tls-psk-file=$TMP/keys.psk"
rm -f "$TMP/out.img"
must_work "PSK client (nbdcopy)" \
  nbdcopy "nbds+unix://alice@/disk?socket=$unixsocket&tls-psk-file=$TMP/keys.psk" "$TMP/out.img"
cmp "$TMP/disk.img" "$TMP/out.img" ||
  { echo "FAIL: nbdcopy over PSK with verify-peer read different data"; exit 1; }
must_work "PSK client (qemu-img, tls-creds-psk)" \
  qemu-img info \
    --object "tls-creds-psk,id=tls0,endpoint=client,dir=$TMP/qemu-psk,username=alice" \
    --image-opts "driver=nbd,server.type=unix,server.path=$unixsocket,export=disk,tls-creds=tls0,tls-hostname=localhost"
must_work "X.509 client with a certificate" \
  nbdinfo --size "nbds+unix:///disk?socket=$unixsocket&tls-certificates=$CERTS/client-alice"
must_fail "X.509 client without a certificate" "" \
  nbdinfo --size "nbds+unix:///disk?socket=$unixsocket&tls-certificates=$CERTS/client-none"
must_fail "PSK client with the wrong key" "" \
  nbdinfo --size "nbds+unix://alice@/disk?socket=$unixsocket&tls-psk-file=$TMP/wrong-key.psk"
must_work "PSK client after the refusals" \
  nbdinfo --size "nbds+unix://alice@/disk?socket=$unixsocket&tls-psk-file=$TMP/keys.psk"
EOF
run_server nbdcached "$tmp/verify.conf" disk -- ". '$tmp/verify.sh'" ||
  die "[nbdcached] PSK with tls_verify_peer = yes"
echo "[nbdcached] PSK with tls_verify_peer = yes OK"
