#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-remote-rbd.sh — exports cached over a Ceph RBD image (backing =
# rbd:POOL/IMAGE) on a throwaway single-node cluster, checked with the rbd
# CLI reading what reached Ceph.
#
# One cluster for the whole script (client-tests/ceph-cluster.sh, stopped
# at exit).  Then:
#   1. for each server kind, writeback: nbdinfo --map shows the new image's
#      hole through the server; nbdcopy a random 24 MiB image in, read it
#      back, compare; write everything back (nbdcached: `nbdcache flush`;
#      plugin: flush_on_stop = yes); `rbd export` of the image equals the
#      random image byte for byte, and its tail is zeros; the plugin
#      given backing=rbd:… ceph-conf=… readonly=yes as parameters reads
#      the same bytes.
#   2. nbdcached: two instances, each with its own cache in writethrough
#      mode, over ONE image at once (two librbd clients taking the image's
#      exclusive lock in turns); each client writes its own half (the
#      config has no way to export a range of a backing, so the ranges are
#      the clients'); each instance reads the other's half back (a cache
#      miss served from Ceph); `rbd export` holds both halves.
#   3. nbdcached: the crash promise over RBD: test-cache-crash.sh's
#      workload (its crash.py, taken from that file so the two cannot
#      drift) in writeback over a 64 MiB image: kill -9 under load,
#      restart on the same cache and image, every block holds its newest
#      durable write; then SIGTERM with flush_on_stop, and the image in
#      Ceph reads the same as the export did.
# CRASH_SEED repeats part 3's workload (the seed is printed).
set -e
. "${srcdir:-.}/functions.sh"
. "$srcdir/ceph-cluster.sh"
requires nbdcopy nbdinfo nbdsh cmp

NBDCACHE_TOOL=$(abspath "${NBDCACHE_TOOL:-$top_builddir/admin/nbdcache}")
export NBDCACHE_TOOL
tmp=$(make_tmpdir)
export tmp
random_file "$tmp/src" 24M

ceph_cluster_start "$tmp/ceph"

# ---- 1. writeback, both front ends ----

for kind in $(server_kinds); do
  dir=$tmp/$kind
  mkdir -p "$dir"
  rbdq create "rbd/wb-$kind" --size 32M
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

[export rbd]
backing = rbd:rbd/wb-$kind
ceph_conf = $CEPH_CONF
ceph_id = admin
backing_timeout = 60
cache = ssd
mode = writeback
sequential_cutoff = 0
EOF
  case $kind in
    nbdcached)
      flush="'$NBDCACHE_TOOL' flush --socket '$dir/ctl' rbd" ;;
    plugin)
      echo "flush_on_stop = yes" >> "$dir/c.conf"
      flush=true ;;
  esac

  run_server "$kind" "$dir/c.conf" rbd -- "
    nbdinfo --map \"\$uri\" > '$dir/map-before' &&
    nbdcopy '$tmp/src' \"\$uri\" &&
    nbdcopy \"\$uri\" '$dir/out' &&
    $flush" || die "[$kind] the run over RBD failed"

  head -c 24M "$dir/out" | cmp - "$tmp/src" ||
    die "[$kind] data read back differs"
  grep -Eq '^ +0 +33554432 +3 +hole,zero$' "$dir/map-before" ||
    die "[$kind] the new image's map is not one hole: $(cat "$dir/map-before")"

  rbdq export "rbd/wb-$kind" "$dir/ceph.img" >/dev/null 2>&1 ||
    die "[$kind] rbd export failed"
  head -c 24M "$dir/ceph.img" | cmp - "$tmp/src" ||
    die "[$kind] the image in Ceph differs from the data after the flush"
  cmp -n 8M "$dir/ceph.img" /dev/zero -i 24M:0 ||
    die "[$kind] the image's tail in Ceph is not zero"
  echo "[$kind] rbd export equals the data written through the cache"

  # The plugin's own parameters, uncached and read-only (the image is
  # opened read-only): the same data.
  if [ $kind = plugin ]; then
    $(nbdkit_env) "$NBDKIT" -U - "$PLUGIN" backing=rbd:rbd/wb-plugin \
      ceph-conf="$CEPH_CONF" ceph-id=admin backing-timeout=60 readonly=yes \
      --run "unset LD_PRELOAD; nbdcopy \"\$uri\" '$dir/params.img'" ||
      die "[plugin] backing=rbd:… with ceph-*= parameters failed"
    cmp "$dir/params.img" "$dir/ceph.img" ||
      die "[plugin] backing=rbd:… read-only reads other data"
    echo "[plugin] backing=rbd:… ceph-conf=… readonly=yes reads the image"
  fi
done

# ---- 2. two nbdcached instances in writethrough over one image ----

if want_server nbdcached; then
  dir=$tmp/two
  mkdir -p "$dir"
  rbdq create rbd/shared --size 32M
  random_file "$dir/a" 16M
  random_file "$dir/b" 16M
  for i in a b; do
    cat > "$dir/$i.conf" <<EOF
[server]
log = stderr
workers = 4

[cache ssd]
path = $dir/cache-$i.img
size = 64M
create = yes
direct = no

[export shared]
backing = rbd:rbd/shared
ceph_conf = $CEPH_CONF
cache = ssd
mode = writethrough
sequential_cutoff = 0
EOF
  done
  # nbdsh code: write FILE at OFFSET; 16 MiB at OFFSET to stdout.
  put () { printf "h.pwrite(open('%s', 'rb').read(), %d)" "$1" "$2"; }
  get () { printf "import sys; sys.stdout.buffer.write(h.pread(%d, %d))" \
             $((16 << 20)) "$1"; }
  cat > "$dir/second.sh" <<EOF
set -e
run_b=\$1
. "\$srcdir/functions.sh"
run_server nbdcached '$dir/b.conf' shared -- "\$run_b"
EOF
  # Instance A runs instance B inside its --run; B's --run does the work
  # with both URIs.  A writes [0,16M), B writes [16M,32M); then each reads
  # both halves (its own: a hit; the other's: a miss, from Ceph).
  inner="
    nbdsh -u \"\$uri_a\" -c \"$(put "$dir/a" 0)\" &&
    nbdsh -u \"\$uri\" -c \"$(put "$dir/b" 16777216)\" &&
    nbdsh -u \"\$uri_a\" -c \"$(get 0)\" > '$dir/a-a' &&
    nbdsh -u \"\$uri_a\" -c \"$(get 16777216)\" > '$dir/a-b' &&
    nbdsh -u \"\$uri\" -c \"$(get 0)\" > '$dir/b-a' &&
    nbdsh -u \"\$uri\" -c \"$(get 16777216)\" > '$dir/b-b'"
  run_server nbdcached "$dir/a.conf" shared -- \
    "uri_a=\$uri; export uri_a; bash '$dir/second.sh' $(_ct_shquote "$inner")" ||
    die "[two] the run of two instances over one image failed"

  cmp "$dir/a-a" "$dir/a" || die "[two] A reads its own half wrong"
  cmp "$dir/a-b" "$dir/b" || die "[two] A reads B's half wrong"
  cmp "$dir/b-a" "$dir/a" || die "[two] B reads A's half wrong"
  cmp "$dir/b-b" "$dir/b" || die "[two] B reads its own half wrong"
  rbdq export rbd/shared "$dir/ceph.img" >/dev/null 2>&1 ||
    die "[two] rbd export failed"
  cat "$dir/a" "$dir/b" | cmp - "$dir/ceph.img" ||
    die "[two] the image in Ceph is not A's half then B's"
  echo "[two] two writethrough instances over one image: both halves in Ceph"
fi

# ---- 3. kill -9 under a writeback load over RBD, restart, verify ----

if want_server nbdcached; then
  requires_python_nbd
  dir=$tmp/crash
  mkdir -p "$dir"
  sed -n "/^cat > \"\$tmp\/crash.py\" <<'EOF'$/,/^EOF$/p" \
    "$srcdir/test-cache-crash.sh" | sed '1d;$d' > "$dir/crash.py"
  grep -q '^def start_server' "$dir/crash.py" ||
    die "[crash] cannot take crash.py from test-cache-crash.sh"
  seed=${CRASH_SEED:-$RANDOM$RANDOM}
  echo "[crash] seed $seed (set CRASH_SEED=$seed to repeat)"
  rbdq create rbd/crash --size 64M
  cat > "$dir/c.conf" <<EOF
[server]
log = stderr
workers = 4

[cache ssd]
path = $dir/cache.img
size = 256M
create = yes
bucket_size = 1M
direct = no

[export disk]
backing = rbd:rbd/crash
ceph_conf = $CEPH_CONF
cache = ssd
mode = writeback
flush_on_stop = yes
EOF
  timeout -k 10 "$SERVER_TIMEOUT_S" \
    "$PYTHON" "$dir/crash.py" nbdcached "$dir" "$dir/server.log" "$seed" \
    $((64 << 20)) yes "$NBDCACHED" -f -c "$dir/c.conf" -U @SOCK@ ||
    die "[crash] the crash promise over RBD failed (seed $seed; log $dir/server.log)"

  # flush_on_stop wrote everything back at the SIGTERM: Ceph now holds
  # what the export served after the restart.
  "$NBDCACHED" -f -c "$dir/c.conf" -U "$dir/last.sock" -e disk \
    --run "nbdcopy \"\$uri\" '$dir/export.img'" 2>> "$dir/server.log" ||
    die "[crash] cannot read the export back"
  rbdq export rbd/crash "$dir/ceph.img" >/dev/null 2>&1 ||
    die "[crash] rbd export failed"
  cmp "$dir/export.img" "$dir/ceph.img" ||
    die "[crash] after the flush on stop, Ceph differs from the export"
  echo "[crash] kill -9 over RBD: crash promise held, Ceph equals the export"
fi
