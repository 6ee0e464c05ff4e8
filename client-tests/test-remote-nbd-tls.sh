#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-remote-nbd-tls.sh — a remote backing reached over TLS with a
# pre-shared key, configured through each front end's own keys.
#
# The remote is nbdkit's file plugin with --tls=require --tls-psk on a
# private Unix socket (captive mode: the servers under test run inside its
# --run command).  nbdcached gets backing = nbds+unix://… with
# backing_tls_psk_file / backing_tls_username / backing_connections /
# backing_timeout in its [export]; the plugin gets the same as backing-*=
# parameters (its backing= form).  Each, in writethrough mode, takes a
# random image with nbdcopy, reads it back, and the remote's file must
# equal it.  With the wrong key, both refuse to start.
set -e
. "${srcdir:-.}/functions.sh"
requires nbdkit nbdcopy cmp openssl

tmp=$(make_tmpdir)
random_file "$tmp/src" 8M
make_psk "$tmp/remote.psk" alice > /dev/null
make_psk "$tmp/wrong.psk" alice > /dev/null
truncate -s 16M "$tmp/remote.img"

# The nbdcached config for PSK file $1.
nbdcached_conf ()
{
  cat <<EOF
[server]
log = stderr

[cache ssd]
path = $tmp/cache-$2.img
size = 32M
create = yes
direct = no

[export remote]
backing = nbds+unix:///?socket=$tmp/remote.sock
backing_tls_psk_file = $1
backing_tls_username = alice
backing_connections = 2
backing_timeout = 10s
cache = ssd
mode = writethrough
EOF
}
nbdcached_conf "$tmp/remote.psk" good > "$tmp/good.conf"
nbdcached_conf "$tmp/wrong.psk" wrong > "$tmp/wrong.conf"

# Runs inside the remote's --run (/bin/sh): everything that needs it.
cat > "$tmp/inner.sh" <<'EOF'
set -e
. "$srcdir/functions.sh"
plugin_args ()
{
  echo "backing=nbds+unix:///?socket=$tmp/remote.sock" \
       "backing-tls-psk-file=$1 backing-tls-username=alice" \
       "backing-connections=2 backing-timeout=10s" \
       "cache=$tmp/cache-plugin-$2.img create=yes cache-size=32M" \
       "mode=writethrough"
}
for kind in $(tls_server_kinds); do
  rm -f "$tmp/out-$kind"
  roundtrip="nbdcopy '$tmp/src' \"\$uri\" && nbdcopy \"\$uri\" '$tmp/out-$kind'"
  case $kind in
    nbdcached)
      run_server nbdcached "$tmp/good.conf" remote -- "$roundtrip"
      expect_fail run_server nbdcached "$tmp/wrong.conf" remote -- true ;;
    plugin)
      $(nbdkit_env) nbdkit -U - "$PLUGIN" $(plugin_args "$tmp/remote.psk" good) \
        --run "$roundtrip"
      expect_fail $(nbdkit_env) nbdkit -U - "$PLUGIN" \
        $(plugin_args "$tmp/wrong.psk" wrong) --run true ;;
  esac
  head -c 8M "$tmp/out-$kind" | cmp - "$tmp/src"
  head -c 8M "$tmp/remote.img" | cmp - "$tmp/src"
  echo "[$kind] round trip over TLS-PSK to the remote OK; the wrong key is refused"
  truncate -s 0 "$tmp/remote.img"
  truncate -s 16M "$tmp/remote.img"
done
EOF

export tmp
nbdkit -U "$tmp/remote.sock" --tls=require --tls-psk="$tmp/remote.psk" \
  file "$tmp/remote.img" --run "bash '$tmp/inner.sh'" ||
  die "the runs over the TLS remote failed"
