#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-cache-full-log.sh — a full cache filesystem logs one error line,
# not one per failed write.
#
# WHAT: for each server kind: a 64 MiB cache file (bucket_size = 64K,
# created and formatted by the server) on a 4 MiB tmpfs, caching a 64 MiB
# export in writeback mode with sequential_cutoff = 0, so every write is
# cached.  24 MiB of random data written with nbdcopy fill the tmpfs
# after a few MiB: every cache write after that fails with ENOSPC (the
# engine then writes around the cache, so the client sees success).  The
# server's log must hold at least one and at most MAX_LINES (2) lines
# about failed cache device writes; before the rate limit it held one per
# failed write (about 90 here).  The data must still read back.
# HOW: the tmpfs is mounted in a private user and mount namespace
# (unshare -rm), so the test needs no root and leaves no mount behind;
# skipped (77) where unshare or tmpfs mounts are not allowed.
set -e
. "${srcdir:-.}/functions.sh"
requires unshare nbdcopy cmp

: "${MAX_LINES:=2}"

tmp=$(make_tmpdir)
mkdir "$tmp/probe"
unshare -rm sh -c "mount -t tmpfs -o size=1M tmpfs '$tmp/probe'" \
  2>/dev/null || skip "cannot mount a tmpfs in a user namespace (unshare -rm)"
random_file "$tmp/data" 24M

failed=""
# The plugin's run logs I/O errors on its way out: the same ASan-preload
# deadlock at nbdkit's exit as hangup_server_kinds describes.
for kind in $(hangup_server_kinds); do
  _ct_need_binary "$kind"
  dir=$tmp/$kind
  mkdir -p "$dir/small"
  write_config "$dir/c.conf" "$dir/disk.img" 64M \
    "cache = ssd" "mode = writeback" "sequential_cutoff = 0"
  cat >> "$dir/c.conf" <<EOF

[cache ssd]
path = $dir/small/cache.img
size = 64M
create = yes
bucket_size = 64K
EOF
  case "$kind" in
    nbdcached)
      server="$(printf '%q ' "$NBDCACHED" -f -c "$dir/c.conf" -U "$dir/sock" \
                -e disk)" ;;
    plugin)
      server="$(nbdkit_env) $(printf '%q ' "$NBDKIT" -U "$dir/sock" \
                "$PLUGIN" "config=$dir/c.conf" export=disk)" ;;
  esac
  cat > "$dir/run.sh" <<EOF
unset LD_PRELOAD
nbdcopy '$tmp/data' 'nbd+unix:///disk?socket=$dir/sock' &&
nbdcopy 'nbd+unix:///disk?socket=$dir/sock' '$dir/back' &&
echo copied
EOF
  echo "==== $kind ====" >&2
  rc=0
  unshare -rm sh -c "mount -t tmpfs -o size=4M tmpfs '$dir/small' &&
    exec timeout -k 10 $SERVER_TIMEOUT_S $server --run 'sh $dir/run.sh'" \
    > "$dir/out" 2> "$dir/log" || rc=$?
  cat "$dir/out"
  if [ $rc != 0 ] || ! grep -qx copied "$dir/out"; then
    cat "$dir/log" >&2
    echo "$0: FAIL: [$kind] exit status $rc" >&2
    failed="$failed $kind"
    continue
  fi
  head -c 24M "$dir/back" | cmp - "$tmp/data" ||
    { failed="$failed $kind"; echo "$0: FAIL: [$kind] data differ" >&2; }
  n=$(grep -c "cdev .*: write at offset .*No space left on device" \
        "$dir/log" || true)
  echo "[$kind] cache write error lines: $n (bound 1..$MAX_LINES)"
  grep -m 3 "No space left" "$dir/log" || true
  if [ "$n" -lt 1 ] || [ "$n" -gt "$MAX_LINES" ]; then
    echo "$0: FAIL: [$kind] $n error lines about the full cache" >&2
    failed="$failed $kind"
  fi
done

[ -z "$failed" ] || die "failed with:$failed"
echo "$0: PASS"
