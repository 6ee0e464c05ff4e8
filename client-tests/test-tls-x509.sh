#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-tls-x509.sh — TLS with X.509 certificates through real clients,
# against nbdcached ([server] tls = require, tls_certificates = DIR) and
# nbdkit + the plugin (nbdkit --tls=require --tls-certificates=DIR):
#  1. Unix socket: nbdinfo and nbdcopy (both directions, cmp) over
#     nbds+unix://, qemu-img info/convert/compare with tls-creds-x509;
#     a plain-text client is refused; qemu-img trusting only the wrong CA,
#     or expecting another host name, refuses the server.
#  2. TCP (127.0.0.1, ephemeral port): nbdinfo by name (nbds://localhost,
#     SAN DNS) and by address (nbds://127.0.0.1, SAN IP), nbdcopy, qemu-img;
#     a client trusting only the wrong CA refuses the server.
#  3. tls_verify_peer = yes (nbdkit --tls-verify-peer): alice's client
#     certificate is accepted (nbdinfo, qemu-img); no client certificate,
#     an expired one, or one from the wrong CA is refused, and the server
#     still serves alice afterwards.
# libnbd 1.14 verifies the server's certificate only over TCP (it has no
# host name for a Unix socket, and no tls-hostname URI parameter): server
# verification over Unix is checked with qemu-img (tls-hostname=localhost).
set -e
. "${srcdir:-.}/functions.sh"
requires openssl nbdinfo nbdcopy qemu-img cmp

tmp=$(make_tmpdir)
certs=$tmp/pki
make_x509_certs "$certs"
random_file "$tmp/disk.img" 8M
cp "$tmp/disk.img" "$tmp/orig.img"
random_file "$tmp/new1.img" 8M
random_file "$tmp/new2.img" 8M
# The client scripts below read these from the environment.
CERTS=$certs TMP=$tmp
export CERTS TMP

# tls_conf FILE [SERVER-LINE…]: tls = require with $certs, one export
# "disk" on $tmp/disk.img.
tls_conf ()
{
  local f=$1 line
  shift
  {
    echo "[server]"
    echo "log = stderr"
    echo "workers = 4"
    echo "tls = require"
    echo "tls_certificates = $certs"
    for line in "$@"; do echo "$line"; done
    echo
    echo "[export disk]"
    echo "backing = $tmp/disk.img"
  } > "$f" || die "cannot write $f"
}
tls_conf "$tmp/x509.conf"
tls_conf "$tmp/verify.conf" "tls_verify_peer = yes"

# qemu's NBD client options for $unixsocket / $port (sourced in --run).
cat > "$tmp/qemu.sh" <<'EOF'
# qemu_obj DIR: the --object; qemu_unix [HOSTNAME], qemu_tcp: --image-opts.
qemu_obj () { echo "tls-creds-x509,id=tls0,endpoint=client,dir=$1"; }
qemu_unix () {
  echo "driver=nbd,server.type=unix,server.path=$unixsocket,export=disk,tls-creds=tls0,tls-hostname=${1:-localhost}"
}
qemu_tcp () {
  echo "driver=nbd,server.type=inet,server.host=localhost,server.port=$port,export=disk,tls-creds=tls0"
}
EOF

# ---- 1. Unix socket ------------------------------------------------------
cat > "$tmp/unix.sh" <<'EOF'
set -e
. "$srcdir/client-checks.sh"
. "$TMP/qemu.sh"
a="nbds+unix:///disk?socket=$unixsocket&tls-certificates=$CERTS/client-alice"

must_work "nbdinfo over nbds+unix" nbdinfo "$a"
nbdinfo --json "$a" > "$TMP/info.json"
grep -q '"TLS": true' "$TMP/info.json" ||
  { echo "FAIL: nbdinfo --json does not report TLS"; cat "$TMP/info.json"; exit 1; }
[ "$(nbdinfo --size "$a")" = 8388608 ] || { echo "FAIL: size"; exit 1; }

rm -f "$TMP/out.img"
must_work "nbdcopy export -> file" nbdcopy "$a" "$TMP/out.img"
cmp "$TMP/orig.img" "$TMP/out.img" ||
  { echo "FAIL: nbdcopy over TLS read different data"; exit 1; }
must_work "nbdcopy file -> export" nbdcopy "$TMP/new1.img" "$a"
rm -f "$TMP/out.img"
must_work "nbdcopy export -> file again" nbdcopy "$a" "$TMP/out.img"
cmp "$TMP/new1.img" "$TMP/out.img" ||
  { echo "FAIL: nbdcopy over TLS wrote different data"; exit 1; }

must_work "qemu-img info (tls-creds-x509)" \
  qemu-img info --object "$(qemu_obj "$CERTS/client-alice")" \
    --image-opts "$(qemu_unix)"
must_work "qemu-img convert (tls-creds-x509)" \
  qemu-img convert -n --object "$(qemu_obj "$CERTS/client-alice")" \
    -f raw "$TMP/new2.img" --target-image-opts "$(qemu_unix)"
must_work "qemu-img compare (tls-creds-x509)" \
  qemu-img compare --object "$(qemu_obj "$CERTS/client-alice")" \
    --image-opts "driver=raw,file.filename=$TMP/new2.img" "$(qemu_unix)"

must_fail "plain-text nbdinfo on a TLS-only server" "" \
  nbdinfo "nbd+unix:///disk?socket=$unixsocket"
must_fail "plain-text qemu-img on a TLS-only server" "TLS negotiation required" \
  qemu-img info --image-opts \
    "driver=nbd,server.type=unix,server.path=$unixsocket,export=disk"
must_fail "qemu-img trusting only the wrong CA" "issuer|certificate" \
  qemu-img info --object "$(qemu_obj "$CERTS/wrong-ca")" \
    --image-opts "$(qemu_unix)"
must_fail "qemu-img expecting another host name" "hostname" \
  qemu-img info --object "$(qemu_obj "$CERTS/client-none")" \
    --image-opts "$(qemu_unix not-this-host.example)"
must_work "the server still serves after the refusals" nbdinfo --size "$a"
EOF

for kind in $(tls_server_kinds); do
  cp "$tmp/orig.img" "$tmp/disk.img"
  run_server "$kind" "$tmp/x509.conf" disk \
    plugin:--tls=require plugin:--tls-certificates="$certs" -- \
    ". '$tmp/unix.sh'" || die "[$kind] X.509 over a Unix socket"
  cmp "$tmp/new2.img" "$tmp/disk.img" ||
    die "[$kind] the backing file does not hold what qemu-img wrote over TLS"
  echo "[$kind] X.509 over a Unix socket OK"
done

# ---- 2. TCP --------------------------------------------------------------
cat > "$tmp/tcp.sh" <<'EOF'
set -e
. "$srcdir/client-checks.sh"
. "$TMP/qemu.sh"
q="tls-certificates=$CERTS/client-alice"

must_work "nbdinfo nbds://localhost (SAN DNS:localhost)" \
  nbdinfo "nbds://localhost:$port/disk?$q"
must_work "nbdinfo nbds://127.0.0.1 (SAN IP:127.0.0.1)" \
  nbdinfo "nbds://127.0.0.1:$port/disk?$q"
rm -f "$TMP/out.img"
must_work "nbdcopy over nbds://" nbdcopy "nbds://localhost:$port/disk?$q" "$TMP/out.img"
cmp "$TMP/orig.img" "$TMP/out.img" ||
  { echo "FAIL: nbdcopy over nbds:// read different data"; exit 1; }
must_work "qemu-img info over TCP" \
  qemu-img info --object "$(qemu_obj "$CERTS/client-alice")" \
    --image-opts "$(qemu_tcp)"
must_fail "a client trusting only the wrong CA refuses the server" \
  "certificate|verif" \
  nbdinfo "nbds://localhost:$port/disk?tls-certificates=$CERTS/client-trusts-wrong-ca"
must_fail "plain-text nbdinfo over TCP" "" nbdinfo "nbd://localhost:$port/disk"
EOF

for kind in $(tls_server_kinds); do
  cp "$tmp/orig.img" "$tmp/disk.img"
  run_server "$kind" "$tmp/x509.conf" disk -l 127.0.0.1:0 \
    plugin:--tls=require plugin:--tls-certificates="$certs" -- \
    ". '$tmp/tcp.sh'" || die "[$kind] X.509 over TCP"
  echo "[$kind] X.509 over TCP OK"
done

# ---- 3. client certificates ---------------------------------------------
cat > "$tmp/verify.sh" <<'EOF'
set -e
. "$srcdir/client-checks.sh"
. "$TMP/qemu.sh"
u () { echo "nbds+unix:///disk?socket=$unixsocket&tls-certificates=$CERTS/$1"; }

must_work "alice's certificate is accepted" nbdinfo --size "$(u client-alice)"
must_work "alice's certificate is accepted (qemu-img)" \
  qemu-img info --object "$(qemu_obj "$CERTS/client-alice")" \
    --image-opts "$(qemu_unix)"
must_fail "no client certificate" "" nbdinfo --size "$(u client-none)"
must_fail "no client certificate (qemu-img)" "" \
  qemu-img info --object "$(qemu_obj "$CERTS/client-none")" \
    --image-opts "$(qemu_unix)"
must_fail "an expired client certificate" "" nbdinfo --size "$(u client-expired)"
must_fail "a client certificate from the wrong CA" "" \
  nbdinfo --size "$(u client-wrong-ca)"
must_work "alice is still served after the refusals" \
  nbdinfo --size "$(u client-alice)"
EOF

for kind in $(tls_server_kinds); do
  run_server "$kind" "$tmp/verify.conf" disk \
    plugin:--tls=require plugin:--tls-certificates="$certs" \
    plugin:--tls-verify-peer -- \
    ". '$tmp/verify.sh'" || die "[$kind] client certificates"
  echo "[$kind] client certificates OK"
done
