#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-tcp.sh — nbdcached listening on TCP: IPv4 127.0.0.1:0, IPv6 [::1]:0
# and ":0" (the wildcard address), each on an ephemeral port in $port,
# with $uri in the nbd://HOST:PORT/EXPORT form; nbdinfo connects through it.
#
# nbdcached only: nbdkit cannot listen on an ephemeral port in --run mode
# (it reports port 0), and its TCP listener is nbdkit's code, not ours.
set -e
. "${srcdir:-.}/functions.sh"
nbdcached_only
requires nbdinfo

tmp=$(make_tmpdir)
write_config "$tmp/c.conf" "$tmp/disk.img" 4M

# Inside the server's --run: check $port and $uri, then nbdinfo both the
# $uri and an explicitly built URI.
cat > "$tmp/check.sh" <<'EOF'
set -e
host=$1
echo "uri=$uri port=$port export=$export"
case "$port" in
  ""|0|*[!0-9]*) echo "bad \$port '$port'"; exit 1 ;;
esac
[ "$uri" = "nbd://$host:$port/disk" ] || { echo "bad \$uri '$uri'"; exit 1; }
[ -z "$unixsocket" ] || { echo "\$unixsocket set on TCP: '$unixsocket'"; exit 1; }
nbdinfo --size "$uri" > "$out"
EOF

tcp_case ()
{
  local listen=$1 host=$2 connect=$3
  rm -f "$tmp/size"
  run_server nbdcached "$tmp/c.conf" disk -l "$listen" -- \
    "out=$tmp/size; export out; sh $tmp/check.sh '$host' && nbdinfo --size nbd://$connect:\$port/disk >> $tmp/size" ||
    die "listening on $listen"
  [ "$(cat "$tmp/size")" = "4194304
4194304" ] || die "listening on $listen: nbdinfo --size printed: $(cat "$tmp/size")"
  echo "[nbdcached] TCP $listen OK"
}

tcp_case 127.0.0.1:0 127.0.0.1 127.0.0.1

# ":PORT" listens on every address; $uri then names some host that reaches
# it, so only the IPv4 loopback connection is checked.
run_server nbdcached "$tmp/c.conf" disk -l :0 -- \
  "nbdinfo --size nbd://127.0.0.1:\$port/disk > $tmp/size" ||
  die "listening on :0"
[ "$(cat "$tmp/size")" = 4194304 ] || die "listening on :0: nbdinfo printed $(cat "$tmp/size")"
echo "[nbdcached] TCP :0 OK"

if grep -q '^0\{31\}1 ' /proc/net/if_inet6 2>/dev/null; then
  tcp_case '[::1]:0' '[::1]' '[::1]'
else
  echo "$0: NOTE: this host has no ::1 (see /proc/net/if_inet6): IPv6 part NOT tested" >&2
fi
