#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-connection-log.sh — nbdcached logs every connection's open and close
# and every refusal at info, once per event, each with the client's
# address, the export and the TLS state: four nbdinfo clients over TCP
# (an export; an unknown export; a TLS-only export without TLS; the same
# with TLS-PSK), then the log is counted line by line.
# nbdcached only (nbdkit's connection log is nbdkit's).
set -e
. "${srcdir:-.}/functions.sh"
requires nbdinfo openssl
nbdcached_only

tmp=$(make_tmpdir)
make_psk "$tmp/psk" alice > /dev/null
cat > "$tmp/c.conf" <<EOF
[server]
log = stderr
log_level = info
tls = on
tls_psk_file = $tmp/psk

[export a]
backing = $tmp/a.img
size = 1M

[export s]
backing = $tmp/s.img
size = 1M
tls = require
EOF

timeout -k 10 "$SERVER_TIMEOUT_S" "$NBDCACHED" -f -c "$tmp/c.conf" \
  -l 127.0.0.1:0 -e a --run "
  nbdinfo --size \"nbd://127.0.0.1:\$port/a\" &&
  ! nbdinfo --size \"nbd://127.0.0.1:\$port/nope\" &&
  ! nbdinfo --size \"nbd://127.0.0.1:\$port/s\" &&
  nbdinfo --size \"nbds://alice@127.0.0.1:\$port/s?tls-psk-file=$tmp/psk\"
  " > /dev/null 2> "$tmp/log" || { cat "$tmp/log" >&2; die "a client failed"; }
cat "$tmp/log" >&2

# count PATTERN N: exactly N lines of the log match the ERE PATTERN.
count ()
{
  local n
  n=$(grep -cE "$1" "$tmp/log" || true)
  [ "$n" = "$2" ] || die "$n lines match '$1', expected $2"
}
client='^nbdcached: info: 127\.0\.0\.1:[0-9]+: '
count "${client}opened export 'a' \(no TLS" 1
count "${client}closed export 'a' \(no TLS; " 1
count "${client}export 'nope' refused: no such export \(no TLS\)" 1
count "${client}export 's' refused: this export requires TLS.* \(no TLS\)" 1
count "${client}opened export 's' \(TLSv1\.[23], PSK user alice" 1
count "${client}closed export 's' \(TLSv1\.[23], PSK user alice; " 1
count "${client}closed during negotiation, no export \(no TLS\)" 2
# Once per event: four connections, four closes, two opens, two refusals.
count "opened export" 2
count ": closed " 4
count "refused" 2
echo "connection open/close/refusal lines at info, once each OK"
