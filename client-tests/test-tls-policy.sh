#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-tls-policy.sh — who may see and open which export: TLS-only servers
# and exports, client address allow lists, client certificate subjects.
#  1. [server] tls = require (both kinds; nbdkit --tls=require): a
#     plain-text client is refused — nbdinfo and nbdinfo --list fail,
#     qemu-img reports NBD_REP_ERR_TLS_REQD ("TLS negotiation required").
#  2. [export] tls = require with [server] tls = on: plain-text LIST shows
#     only the plain export, LIST over TLS shows both; the TLS-only export
#     is refused in plain text (ERR_TLS_REQD) and served over TLS, the
#     plain export is served either way.
#  3. allow = CIDR…: over TCP from 127.0.0.1, allow = 10.0.0.0/8 and
#     allow = ::1/128 refuse (NBD_REP_ERR_POLICY: qemu-img "Denied by
#     server"), allow = 127.0.0.0/8 and no allow list accept; over a Unix
#     socket the allow lists do not apply, but allow_unix = no refuses.
#     IPv6 (from ::1, when the host has it): ::1/128 accepts, 10.0.0.0/8
#     refuses.  LIST over TCP shows only the exports the client may open.
#  4. allow_subjects (tls_verify_peer = yes): alice (subject DN) and carol
#     (email SAN; DNS SAN on another export) are served, mallory — valid
#     certificate, same CA — is refused with ERR_POLICY.
# Parts 2-4 are nbdcached only: nbdkit serves one export per process with
# one TLS setting, and nbdkit 1.32 has no per-export address or
# certificate-subject policy that the plugin could apply (the plugin does
# not read these keys).
set -e
. "${srcdir:-.}/functions.sh"
requires openssl nbdinfo qemu-img
requires_python                 # /usr/bin/python3 reads nbdinfo --json

tmp=$(make_tmpdir)
certs=$tmp/pki
make_x509_certs "$certs"
CERTS=$certs TMP=$tmp
export CERTS TMP PYTHON

# ---- 1. TLS-only server, plain-text client (both kinds) -----------------
cat > "$tmp/require.conf" <<EOF
[server]
log = stderr
tls = require
tls_certificates = $certs

[export disk]
backing = $tmp/disk.img
size = 1M
EOF
cat > "$tmp/plain-client.sh" <<'EOF'
set -e
. "$srcdir/client-checks.sh"
must_fail "plain-text nbdinfo" "" nbdinfo "nbd+unix:///disk?socket=$unixsocket"
must_fail "plain-text nbdinfo --list" "" \
  nbdinfo --list "nbd+unix:///?socket=$unixsocket"
must_fail "plain-text qemu-img: NBD_REP_ERR_TLS_REQD" \
  "TLS negotiation required before option 7" \
  qemu-img info --image-opts \
    "driver=nbd,server.type=unix,server.path=$unixsocket,export=disk"
must_work "the same server over TLS" \
  nbdinfo --size "nbds+unix:///disk?socket=$unixsocket&tls-certificates=$CERTS/client-alice"
EOF
for kind in $(tls_server_kinds); do
  run_server "$kind" "$tmp/require.conf" disk \
    plugin:--tls=require plugin:--tls-certificates="$certs" -- \
    ". '$tmp/plain-client.sh'" ||
    die "[$kind] a plain-text client of a TLS-only server"
  echo "[$kind] plain-text client of a TLS-only server refused OK"
done

want_server nbdcached ||
  { echo "$0: NOTE: the rest is nbdcached only (see the top comment)" >&2; exit 0; }

# ---- 2. a TLS-only export next to a plain one ---------------------------
cat > "$tmp/mixed.conf" <<EOF
[server]
log = stderr
tls = on
tls_certificates = $certs

[export plain]
backing = $tmp/plain.img
size = 1M

[export secret]
backing = $tmp/secret.img
size = 2M
tls = require
EOF
cat > "$tmp/mixed.sh" <<'EOF'
set -e
. "$srcdir/client-checks.sh"
plain="nbd+unix:///?socket=$unixsocket"
tls="nbds+unix:///?socket=$unixsocket&tls-certificates=$CERTS/client-alice"
tlsx () { echo "nbds+unix:///$1?socket=$unixsocket&tls-certificates=$CERTS/client-alice"; }
# list_names URI: the sorted export names nbdinfo --list reports.
list_names () {
  nbdinfo --list --json "$1" |
    "$PYTHON" -c 'import json, sys; print(" ".join(sorted(e["export-name"] for e in json.load(sys.stdin)["exports"])))'
}

must_work "plain-text LIST" nbdinfo --list "$plain"
names=$(list_names "$plain")
[ "$names" = plain ] ||
  { echo "FAIL: plain-text LIST shows [$names], expected only [plain]"; exit 1; }
echo "ok: plain-text LIST hides the TLS-only export"
must_work "LIST over TLS" nbdinfo --list "$tls"
names=$(list_names "$tls")
[ "$names" = "plain secret" ] ||
  { echo "FAIL: LIST over TLS shows [$names], expected [plain secret]"; exit 1; }
echo "ok: LIST over TLS shows both exports"

must_work "plain export in plain text" \
  nbdinfo --size "nbd+unix:///plain?socket=$unixsocket"
must_work "plain export over TLS" nbdinfo --size "$(tlsx plain)"
must_fail "TLS-only export in plain text (nbdinfo)" "" \
  nbdinfo --size "nbd+unix:///secret?socket=$unixsocket"
must_fail "TLS-only export in plain text: NBD_REP_ERR_TLS_REQD (qemu-img)" \
  "TLS negotiation required before option 7" \
  qemu-img info --image-opts \
    "driver=nbd,server.type=unix,server.path=$unixsocket,export=secret"
[ "$(nbdinfo --size "$(tlsx secret)")" = 2097152 ] ||
  { echo "FAIL: the TLS-only export over TLS"; exit 1; }
echo "ok: the TLS-only export is served over TLS"
must_work "TLS-only export over TLS (qemu-img)" \
  qemu-img info \
    --object "tls-creds-x509,id=tls0,endpoint=client,dir=$CERTS/client-alice" \
    --image-opts "driver=nbd,server.type=unix,server.path=$unixsocket,export=secret,tls-creds=tls0,tls-hostname=localhost"
EOF
run_server nbdcached "$tmp/mixed.conf" plain -- ". '$tmp/mixed.sh'" ||
  die "[nbdcached] a TLS-only export next to a plain one"
echo "[nbdcached] per-export tls = require OK"

# ---- 3. address allow lists ---------------------------------------------
cat > "$tmp/allow.conf" <<EOF
[server]
log = stderr

[export open]
backing = $tmp/open.img
size = 1M

[export net10]
backing = $tmp/net10.img
size = 1M
allow = 10.0.0.0/8

[export loopback]
backing = $tmp/loopback.img
size = 1M
allow = 10.0.0.0/8, 127.0.0.0/8

[export v6only]
backing = $tmp/v6only.img
size = 1M
allow = ::1/128

[export nounix]
backing = $tmp/nounix.img
size = 1M
allow_unix = no
EOF
cat > "$tmp/allow-tcp.sh" <<'EOF'
set -e
. "$srcdir/client-checks.sh"
host=${1:-127.0.0.1}
qhost=${2:-$host}
qemu_tcp () { echo "driver=nbd,server.type=inet,server.host=$qhost,server.port=$port,export=$1"; }
ok () {
  must_work "$1 from $host (nbdinfo)" nbdinfo --size "nbd://$host:$port/$1"
}
denied () {
  must_fail "$1 from $host (nbdinfo)" "" nbdinfo --size "nbd://$host:$port/$1"
  must_fail "$1 from $host: NBD_REP_ERR_POLICY (qemu-img)" \
    "Denied by server for option 7" qemu-img info --image-opts "$(qemu_tcp "$1")"
}
if [ "$host" = 127.0.0.1 ]; then
  ok open; ok loopback; ok nounix
  denied net10; denied v6only
  want="loopback nounix open"
else
  ok open; ok v6only; ok nounix
  denied net10; denied loopback
  want="nounix open v6only"
fi
# LIST shows only the exports this client may open.
names=$(nbdinfo --list --json "nbd://$host:$port/" |
  "$PYTHON" -c 'import json, sys; print(" ".join(sorted(e["export-name"] for e in json.load(sys.stdin)["exports"])))')
[ "$names" = "$want" ] ||
  { echo "FAIL: LIST from $host shows [$names], expected [$want]"; exit 1; }
echo "ok: LIST from $host shows only [$want]"
EOF
cat > "$tmp/allow-unix.sh" <<'EOF'
set -e
. "$srcdir/client-checks.sh"
for e in open net10 loopback v6only; do
  must_work "$e over a Unix socket (allow lists are for TCP)" \
    nbdinfo --size "nbd+unix:///$e?socket=$unixsocket"
done
must_fail "nounix over a Unix socket (nbdinfo)" "" \
  nbdinfo --size "nbd+unix:///nounix?socket=$unixsocket"
must_fail "nounix over a Unix socket: NBD_REP_ERR_POLICY (qemu-img)" \
  "Denied by server for option 7" \
  qemu-img info --image-opts \
    "driver=nbd,server.type=unix,server.path=$unixsocket,export=nounix"
EOF
run_server nbdcached "$tmp/allow.conf" open -l 127.0.0.1:0 -- \
  ". '$tmp/allow-tcp.sh'" || die "[nbdcached] allow lists over IPv4"
echo "[nbdcached] allow lists over IPv4 OK"
if grep -q '^0\{31\}1 ' /proc/net/if_inet6 2>/dev/null; then
  run_server nbdcached "$tmp/allow.conf" open -l '[::1]:0' -- \
    "set -- '[::1]' ::1; . '$tmp/allow-tcp.sh'" ||
    die "[nbdcached] allow lists over IPv6"
  echo "[nbdcached] allow lists over IPv6 OK"
else
  echo "$0: NOTE: this host has no ::1: IPv6 allow lists NOT tested" >&2
fi
run_server nbdcached "$tmp/allow.conf" open -- ". '$tmp/allow-unix.sh'" ||
  die "[nbdcached] allow lists and allow_unix over a Unix socket"
echo "[nbdcached] allow_unix OK"

# ---- 4. certificate subjects --------------------------------------------
cat > "$tmp/subjects.conf" <<EOF
[server]
log = stderr
tls = require
tls_certificates = $certs
tls_verify_peer = yes

[export disk]
backing = $tmp/disk.img
size = 1M
allow_subjects = CN=alice,O=Example; carol@example.com

[export bydns]
backing = $tmp/bydns.img
size = 1M
allow_subjects = carol.example.com
EOF
cat > "$tmp/subjects.sh" <<'EOF'
set -e
. "$srcdir/client-checks.sh"
u () { echo "nbds+unix:///$1?socket=$unixsocket&tls-certificates=$CERTS/$2"; }
qemu () {
  qemu-img info \
    --object "tls-creds-x509,id=tls0,endpoint=client,dir=$CERTS/$2" \
    --image-opts "driver=nbd,server.type=unix,server.path=$unixsocket,export=$1,tls-creds=tls0,tls-hostname=localhost"
}
must_work "alice (subject CN=alice,O=Example)" nbdinfo --size "$(u disk client-alice)"
must_work "carol (email SAN carol@example.com)" nbdinfo --size "$(u disk client-carol)"
must_work "carol (DNS SAN carol.example.com)" nbdinfo --size "$(u bydns client-carol)"
must_fail "mallory (nbdinfo)" "" nbdinfo --size "$(u disk client-mallory)"
must_fail "mallory: NBD_REP_ERR_POLICY (qemu-img)" \
  "Denied by server for option 7" qemu disk client-mallory
must_fail "alice on an export that allows only carol's DNS name" \
  "Denied by server for option 7" qemu bydns client-alice
must_work "alice again after the refusals" nbdinfo --size "$(u disk client-alice)"
EOF
run_server nbdcached "$tmp/subjects.conf" disk -- ". '$tmp/subjects.sh'" ||
  die "[nbdcached] allow_subjects"
echo "[nbdcached] allow_subjects OK"
