#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-cache-forget.sh — "nbdcache forget" frees an export's slot, so a
# cache serves any number of exports over time, and it never loses dirty
# data unless told to.
#
# WHAT: for each server kind, one cache (64 KiB buckets: 56 slots):
#   1. 20 exports one after another, each a new backing file written
#      through the cache (writethrough), its file removed, then forgotten
#      by path: all 20 are served, each in the freed slot of the one
#      before (the table was 15 slots and had no way
#      to free one);
#   2. a writeback export (writeback_percent = 100) writes 0x5a, stays
#      dirty (1M: writeback trickles at 64 KiB/s below its target, and
#      the server stops before it is idle for a second); forget is
#      refused while the server runs (the device is in use), refused
#      without --discard-dirty (dirty data), refused with it
#      but without --yes and no terminal; with --yes it is forgotten;
#   3. a new file at the same path gets the freed id and reads zeros:
#      none of the forgotten keys are seen.
# WHY (issue 12 §2): slots were never freed (15 at most) and there was no
# way to forget an export short of reformatting the cache.
set -e
. "${srcdir:-.}/functions.sh"
requires qemu-io
requires truncate
NBDCACHE=$(abspath "${NBDCACHE:-$top_builddir/admin/nbdcache}")

tmp=$(make_tmpdir)
failed=""

conf_for ()
{
  local dir=$1 backing=$2 mode=$3
  write_config "$dir/c.conf" "$backing" - "cache = ssd" "mode = $mode" \
    "writeback_percent = 100"
  cat >> "$dir/c.conf" <<EOC

[cache ssd]
path = $dir/cache.img
size = 32M
create = yes
bucket_size = 64K
EOC
}

for kind in $(server_kinds); do
  dir=$tmp/$kind
  mkdir -p "$dir"
  echo "==== $kind ====" >&2

  # 1. More exports over time than the old table had slots.
  for i in $(seq 1 20); do
    truncate -s 1M "$dir/disk$i.img"
    conf_for "$dir" "$dir/disk$i.img" writethrough
    run_server "$kind" "$dir/c.conf" "disk$i" -- \
      'qemu-io -f raw -c "write -P 0x11 0 64k" "$uri"' 2> "$dir/log" ||
      { cat "$dir/log" >&2; failed="$failed $kind:export-$i"; break; }
    rm "$dir/disk$i.img"
    "$NBDCACHE" forget "$dir/cache.img" "$dir/disk$i.img" > "$dir/out" \
      2> "$dir/log" ||
      { cat "$dir/log" >&2; failed="$failed $kind:forget-$i"; break; }
  done

  # 2. Dirty data: never dropped unless told to.
  truncate -s 4M "$dir/dirty.img"
  conf_for "$dir" "$dir/dirty.img" writeback
  # Written, then forget at once while the server has the device (one
  # run: an idle second would start writing the dirty data back).
  run_server "$kind" "$dir/c.conf" dirty -- \
    "qemu-io -f raw -c 'write -P 0x5a 0 1M' \"\$uri\" || exit 1
     rc=0; '$NBDCACHE' forget '$dir/cache.img' dirty 2> '$dir/log-inuse' ||
     rc=\$?; [ \$rc = 2 ]" || failed="$failed $kind:in-use"
  cat "$dir/log-inuse" >&2
  grep -q "in use" "$dir/log-inuse" || failed="$failed $kind:in-use-message"

  rc=0
  "$NBDCACHE" forget "$dir/cache.img" dirty 2> "$dir/log" < /dev/null || rc=$?
  cat "$dir/log" >&2
  [ $rc = 1 ] || failed="$failed $kind:dirty-refused"
  grep -q "bytes of dirty data.*--discard-dirty" "$dir/log" ||
    failed="$failed $kind:dirty-message"
  rc=0
  "$NBDCACHE" forget --discard-dirty "$dir/cache.img" dirty 2> "$dir/log" \
    < /dev/null || rc=$?
  cat "$dir/log" >&2
  [ $rc = 1 ] || failed="$failed $kind:no-tty-refused"
  grep -q "needs --yes" "$dir/log" || failed="$failed $kind:no-tty-message"
  "$NBDCACHE" forget --discard-dirty --yes "$dir/cache.img" dirty \
    < /dev/null || failed="$failed $kind:discard"
  "$NBDCACHE" show "$dir/cache.img" > "$dir/show"
  cat "$dir/show" >&2
  grep -q "exports: *0 of 56 slots" "$dir/show" ||
    failed="$failed $kind:show-after"

  # 3. A new file at that path: a new export in the freed slot, which
  # never sees the forgotten data.
  rm "$dir/dirty.img"
  truncate -s 4M "$dir/dirty.img"
  run_server "$kind" "$dir/c.conf" dirty -- \
    'qemu-io -f raw -c "read -P 0 0 4M" "$uri"' ||
    failed="$failed $kind:new-export-sees-old-data"
done

[ -z "$failed" ] || die "failed:$failed"
echo "$0: PASS"
