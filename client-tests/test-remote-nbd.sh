#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-remote-nbd.sh — an export cached in writeback mode over a remote NBD
# server: data in, data out, flushed to the remote byte for byte.
#
# The remote is nbdkit's file plugin behind the delay filter (1 ms per
# request) on a private Unix socket, in captive mode: the server under test
# is started from inside the remote's --run command, so the remote is
# listening before it connects and is gone when the test ends.  For each
# server kind:
#   - before any write, nbdinfo --map shows the remote's hole through the
#     server (base:allocation from the remote);
#   - nbdcopy a random 24 MiB image into the export (backing = nbd+unix://…,
#     [cache] in writeback mode), read it back, compare;
#   - write everything back (nbdcached: `nbdcache flush` on the control
#     socket; plugin: flush_on_stop = yes) and compare the remote's file
#     with the image byte for byte;
#   - nbdinfo --map shows the data written and the hole after it.
set -e
. "${srcdir:-.}/functions.sh"
requires nbdkit nbdcopy nbdinfo cmp

NBDCACHE_TOOL=$(abspath "${NBDCACHE_TOOL:-$top_builddir/admin/nbdcache}")
export NBDCACHE_TOOL
tmp=$(make_tmpdir)
random_file "$tmp/src" 24M

# Run inside the remote's --run (so /bin/sh): the server under test on the
# config, the checks inside ITS --run command.
cat > "$tmp/inner.sh" <<'EOF'
set -e
. "$srcdir/functions.sh"
case $kind in
  nbdcached)
    flush="'$NBDCACHE_TOOL' flush --socket '$dir/ctl' remote &&
           head -c 24M '$dir/remote.img' | cmp - '$tmp/src'" ;;
  plugin) flush=true ;;
esac
run_server "$kind" "$dir/c.conf" remote -- "
  nbdinfo --map \"\$uri\" > '$dir/map-before' &&
  nbdcopy '$tmp/src' \"\$uri\" &&
  nbdcopy \"\$uri\" '$dir/out' &&
  $flush &&
  nbdinfo --map \"\$uri\" > '$dir/map-after'"
EOF

for kind in $(server_kinds); do
  dir=$tmp/$kind
  mkdir -p "$dir"
  truncate -s 32M "$dir/remote.img"
  cat > "$dir/c.conf" <<EOF
[server]
log = stderr
workers = 4
control_socket = $dir/ctl

[cache ssd]
path = $dir/cache.img
size = 64M
create = yes
direct = no

[export remote]
backing = nbd+unix:///?socket=$dir/remote.sock
backing_timeout = 20
cache = ssd
mode = writeback
sequential_cutoff = 0
EOF
  [ $kind = plugin ] && echo "flush_on_stop = yes" >> "$dir/c.conf"

  export kind dir tmp
  nbdkit -U "$dir/remote.sock" --filter=delay file "$dir/remote.img" \
    rdelay=1ms wdelay=1ms --run "bash '$tmp/inner.sh'" ||
    die "[$kind] the run over the remote failed"

  head -c 24M "$dir/out" | cmp - "$tmp/src" ||
    die "[$kind] data read back differs"
  cmp -n 8M "$dir/out" /dev/zero -i 24M:0 ||
    die "[$kind] the export's tail does not read as zeros"
  head -c 24M "$dir/remote.img" | cmp - "$tmp/src" ||
    die "[$kind] the remote's content differs from the image after the flush"
  cmp -n 8M "$dir/remote.img" /dev/zero -i 24M:0 ||
    die "[$kind] the remote's tail is not zero"
  echo "[$kind] remote content equals the image"

  # The map through the server is the remote's: one hole before, data
  # then a hole after.
  grep -Eq '^ +0 +33554432 +3 +hole,zero$' "$dir/map-before" ||
    die "[$kind] before writing, the map is not one hole: $(cat "$dir/map-before")"
  grep -Eq '^ +25165824 +8388608 +3 +hole,zero$' "$dir/map-after" ||
    die "[$kind] after writing, the tail is not a hole: $(cat "$dir/map-after")"
  echo "[$kind] nbdinfo --map shows the remote's holes"
done
