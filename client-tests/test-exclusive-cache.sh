#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-exclusive-cache.sh — a cache device is opened by one process at a
# time.
#
# WHAT: for each server kind as the first opener (nbdcached, nbdkit + the
# plugin) on a config with a writeback export on a [cache] file: while it
# serves (inside its --run command), and after one write + flush through
# NBD,
#   - the other kind started on the SAME config is refused (exit != 0,
#     never runs its command) with a message naming the cache file and
#     its holder ("in use by nbdcached (pid N)");
#   - `nbdcache format --force` of the cache is refused, and so is
#     `nbdcache show` (it cannot see a consistent view of a device in use);
# then, after the first server stops, the write reads back from a fresh
# start, and `nbdcache check` says the cache is clean.
# WHY: before the lock, the second opener replayed and wrote the same
# cache: after a restart a flushed write read as zeros and check said
# clean; `format --force` under a running server was accepted.
# HOW: the checks run inside the first server's --run, so a refusal cannot
# pass because the first server never started; the second opener's status
# and messages go to files that are checked after.
set -e
. "${srcdir:-.}/functions.sh"
requires nbdsh grep timeout
NBDCACHE_TOOL=$(abspath "${NBDCACHE_TOOL:-$top_builddir/admin/nbdcache}")
[ -x "$NBDCACHE_TOOL" ] || die "nbdcache is not built: $NBDCACHE_TOOL"

tmp=$(make_tmpdir)

# The argv (one shell-quoted line) that starts KIND on CONF and runs CMD.
second_argv ()
{
  local kind=$1 conf=$2 cmd=$3 sockdir
  _ct_need_binary "$kind"
  case "$kind" in
    nbdcached)
      sockdir=$(make_tmpdir)
      printf '%q ' timeout -k 5 60 "$NBDCACHED" -f -c "$conf" \
        -U "$sockdir/sock" --run "$cmd" ;;
    plugin)
      printf '%q ' timeout -k 5 60 $(nbdkit_env) "$NBDKIT" -U - "$PLUGIN" \
        "config=$conf" export=disk --run "$cmd" ;;
  esac
}

for first in $(server_kinds); do
  case "$first" in nbdcached) second=plugin ;; *) second=nbdcached ;; esac
  dir=$tmp/$first
  mkdir -p "$dir"
  truncate -s 4M "$dir/disk.img"
  write_config "$dir/c.conf" "$dir/disk.img" - "cache = ssd" \
    "mode = writeback" "" "[cache ssd]" "path = $dir/ssd.img" "size = 64M" \
    "create = yes"
  head -c 65536 /dev/urandom > "$dir/data"

  # Run inside the first server: a flushed write, then the other openers.
  {
    echo "set +e"
    echo "nbdsh -u \"\$uri\" -c 'h.pwrite(open(\"$dir/data\", \"rb\").read(), 1048576); h.flush()' || exit 1"
    if want_server "$second"; then
      echo "$(second_argv "$second" "$dir/c.conf" "touch $dir/second-ran") 2> $dir/second.err"
      echo "echo \$? > $dir/second.rc"
    fi
    echo "$NBDCACHE_TOOL format --force $dir/ssd.img > $dir/format.out 2> $dir/format.err"
    echo "echo \$? > $dir/format.rc"
    echo "$NBDCACHE_TOOL show $dir/ssd.img > $dir/show.out 2> $dir/show.err"
    echo "echo \$? > $dir/show.rc"
    echo "exit 0"
  } > "$dir/inside.sh"

  run_server "$first" "$dir/c.conf" disk -- "bash $dir/inside.sh" ||
    die "[$first] the first server failed"

  if want_server "$second"; then
    cat "$dir/second.err" >&2
    [ "$(cat "$dir/second.rc")" != 0 ] ||
      die "[$first] $second started on a cache $first was using"
    [ ! -e "$dir/second-ran" ] ||
      die "[$first] $second served a cache $first was using"
    grep -E "ssd\.img: in use by .*\(pid [0-9]+\)" "$dir/second.err" \
      >/dev/null ||
      die "[$first] $second: no message naming the cache and its holder"
    echo "[$first] a second opener ($second) was refused: OK"
  fi

  cat "$dir/format.err" >&2
  [ "$(cat "$dir/format.rc")" != 0 ] ||
    die "[$first] nbdcache format --force was accepted on a cache in use"
  grep -E "ssd\.img: in use by" "$dir/format.err" >/dev/null ||
    die "[$first] format: no message saying the cache is in use"
  echo "[$first] nbdcache format --force of a cache in use was refused: OK"

  cat "$dir/show.err" >&2
  [ "$(cat "$dir/show.rc")" != 0 ] ||
    die "[$first] nbdcache show reported a cache in use as if it were idle"
  grep -E "ssd\.img: in use by" "$dir/show.err" >/dev/null ||
    die "[$first] show: no message saying the cache is in use"
  echo "[$first] nbdcache show of a cache in use says so: OK"

  # Nothing was lost: a fresh start reads the flushed write back (from the
  # cache: writeback), and the cache checks clean.
  run_server "$first" "$dir/c.conf" disk -- \
    "nbdsh -u \"\$uri\" -c 'import sys; sys.exit(h.pread(65536, 1048576) != open(\"$dir/data\", \"rb\").read())'" ||
    die "[$first] the flushed write did not survive the other openers"
  "$NBDCACHE_TOOL" check "$dir/ssd.img" >&2 ||
    die "[$first] nbdcache check: the cache is not clean"
  echo "[$first] the flushed write survived: OK"
done
