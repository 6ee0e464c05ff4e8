#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-print-uri.sh — nbdcached --print-uri: one URI per export, through the
# first listener (Unix socket or TCP, an ephemeral port printed as bound),
# nbds:// for an export that requires TLS; each printed URI works with
# nbdinfo; a daemon prints them before its parent exits.
# nbdcached only (nbdkit's own --print-uri is nbdkit's).
set -e
. "${srcdir:-.}/functions.sh"
requires nbdinfo openssl
nbdcached_only

tmp=$(make_tmpdir)
make_psk "$tmp/psk" alice > /dev/null
cat > "$tmp/c.conf" <<EOF
[server]
log = stderr
tls = on
tls_psk_file = $tmp/psk

[export one]
backing = $tmp/one.img
size = 1M

[export two]
backing = $tmp/two.img
size = 2M

[export secret]
backing = $tmp/secret.img
size = 3M
tls = require
EOF

# --- 1. Unix socket: three URIs, the TLS-only export as nbds+unix ----------
timeout -k 10 "$SERVER_TIMEOUT_S" "$NBDCACHED" -f -c "$tmp/c.conf" \
  -U "$tmp/sock" --print-uri --run "
  nbdinfo --size 'nbd+unix:///one?socket=$tmp/sock' > $tmp/one.size &&
  nbdinfo --size 'nbd+unix:///two?socket=$tmp/sock' > $tmp/two.size" \
  > "$tmp/unix.uris"
cat "$tmp/unix.uris" >&2
cat > "$tmp/unix.want" <<EOF
nbd+unix:///one?socket=$tmp/sock
nbd+unix:///two?socket=$tmp/sock
nbds+unix:///secret?socket=$tmp/sock
EOF
diff -u "$tmp/unix.want" "$tmp/unix.uris" || die "unix: wrong URIs"
echo "unix: one URI per export, nbds+unix for the TLS-only one OK"

# --- 2. TCP, ephemeral port: the printed URIs work --------------------------
# Each URI is used by a client while the server runs: --run reads the file.
timeout -k 10 "$SERVER_TIMEOUT_S" "$NBDCACHED" -f -c "$tmp/c.conf" \
  -l 127.0.0.1:0 --print-uri --run "
  exec 3< $tmp/tcp.uris
  read -r u1 <&3 && read -r u2 <&3 && read -r u3 <&3 &&
  nbdinfo --size \"\$u1\" > $tmp/u1.size &&
  nbdinfo --size \"\$u2\" > $tmp/u2.size &&
  nbdinfo --size \"nbds://alice@\${u3#nbds://}?tls-psk-file=$tmp/psk\" > $tmp/u3.size &&
  test \"\$u1\" = \"\$uri\"" -e one > "$tmp/tcp.uris"
cat "$tmp/tcp.uris" >&2
grep -qx 'nbd://127.0.0.1:[1-9][0-9]*/one' "$tmp/tcp.uris" || die "tcp: no URI of one"
grep -qx 'nbds://127.0.0.1:[1-9][0-9]*/secret' "$tmp/tcp.uris" || die "tcp: no nbds URI"
[ "$(cat "$tmp/u1.size") $(cat "$tmp/u2.size") $(cat "$tmp/u3.size")" = \
  "1048576 2097152 3145728" ] || die "tcp: the URIs reached the wrong exports"
echo "tcp: printed URIs reach their exports OK"

# --- 3. daemon: the URIs are out when the parent exits ----------------------
"$NBDCACHED" -c "$tmp/c.conf" -U "$tmp/dsock" -P "$tmp/pid" --print-uri \
  > "$tmp/daemon.uris"
on_exit "[ -f $tmp/pid ] && kill \$(cat $tmp/pid)"
head -n 1 "$tmp/daemon.uris" | grep -qx "nbd+unix:///one?socket=$tmp/dsock" ||
  die "daemon: printed '$(cat "$tmp/daemon.uris")'"
nbdinfo --size "$(head -n 1 "$tmp/daemon.uris")" > /dev/null ||
  die "daemon: the printed URI does not work"
pid=$(cat "$tmp/pid")
kill "$pid"
tail --pid="$pid" -f /dev/null
echo "daemon: URIs printed before the parent exited OK"

# --- 4. -s has no URI: a usage error ----------------------------------------
rc=0
"$NBDCACHED" -s -c "$tmp/c.conf" --print-uri < /dev/null 2> /dev/null || rc=$?
[ $rc = 2 ] || die "-s --print-uri: exit $rc, expected 2"
echo "-s --print-uri refused OK"
