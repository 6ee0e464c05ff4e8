#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-one-file-two-names.sh — one cache device or backing file under two
# names is refused, before anything is served.
#
# WHAT:
#   1. two [cache] sections, path = c.cache and path = ./c.cache:
#      --check-config exits 1 naming both FILE:LINEs, and both server
#      kinds refuse to start;
#   2. a cached (writeback) and an uncached export of one backing file
#      (disk.img and ./disk.img): the same, with both lines;
#   3. two servers on one backing file (two configs): while the first
#      kind serves it writable, the other kind is refused at runtime with
#      a message naming the file and its holder; a read-only export with
#      share_backing = yes (the documented escape hatch) starts next to it
#      and reads the first server's flushed write.
# WHY: before, --check-config said OK to 1 and 2: two allocators handed
# out the same buckets, and the cached export's writeback overwrote the
# uncached one's writes; 3 lost writes the same way across processes.
set -e
. "${srcdir:-.}/functions.sh"
requires grep nbdsh timeout

tmp=$(make_tmpdir)
truncate -s 4M "$tmp/disk.img"
header="[server]
log = stderr
"                                       # lines 1-3

# refused NAME "LINE1 LINE2" : $tmp/NAME.conf is refused by --check-config
# and at startup by both kinds, naming NAME.conf:LINE1 and NAME.conf:LINE2.
refused ()
{
  local name=$1 conf=$tmp/$1.conf l rc kind err
  cat -n "$conf" >&2
  rc=0
  "$NBDCACHED" --check-config "$conf" 2> "$tmp/$name.check.err" || rc=$?
  cat "$tmp/$name.check.err" >&2
  [ $rc = 1 ] || die "$name: --check-config exited $rc, expected 1"
  for l in $2; do
    grep -q "$name\\.conf:$l\\b" "$tmp/$name.check.err" ||
      die "$name: --check-config did not name $name.conf:$l"
  done
  for kind in $(server_kinds); do
    rm -f "$tmp/ran"
    rc=0
    ( cd "$tmp" && run_server "$kind" "$conf" disk -- "touch $tmp/ran" ) \
      2> "$tmp/$name.$kind.err" || rc=$?
    cat "$tmp/$name.$kind.err" >&2
    [ $rc != 0 ] || die "$name: [$kind] started"
    [ ! -e "$tmp/ran" ] || die "$name: [$kind] served"
    grep -q "is the same file as" "$tmp/$name.$kind.err" ||
      die "$name: [$kind] no message about the same file"
  done
  echo "$name: refused with both lines: OK"
}

# 1. one cache file, two sections (lines 5 and 10)
cat > "$tmp/two-caches.conf" <<EOF
$header
[cache a]
path = c.cache
size = 64M
create = yes

[cache b]
path = ./c.cache
size = 64M
create = yes

[export disk]
backing = disk.img
cache = a
mode = writeback

[export other]
backing = other.img
size = 1M
cache = b
mode = writeback
EOF
refused two-caches "5 10"
[ ! -e "$tmp/c.cache" ] || die "two-caches: the cache file was created anyway"

# 2. a cached and an uncached export of one backing (lines 10 and 15)
cat > "$tmp/alias.conf" <<EOF
$header
[cache ssd]
path = ssd.cache
size = 64M
create = yes

[export disk]
backing = disk.img
cache = ssd
mode = writeback

[export raw]
backing = ./disk.img
EOF
refused alias "10 15"

# 3. two servers, one backing
write_config "$tmp/writer.conf" "$tmp/disk.img" -
write_config "$tmp/reader.conf" "$tmp/disk.img" - "readonly = yes" \
  "share_backing = yes"
head -c 4096 /dev/urandom > "$tmp/data"
for first in $(server_kinds); do
  case "$first" in nbdcached) second=plugin ;; *) second=nbdcached ;; esac
  want_server "$second" || continue
  _ct_need_binary "$second"
  sockdir=$(make_tmpdir)
  # second_cmd CONF SOCKNAME: the start of $second's command line on CONF.
  second_cmd ()
  {
    if [ "$second" = nbdcached ]; then
      printf '%q ' timeout -k 5 60 "$NBDCACHED" -f -U "$sockdir/$2" -c "$1"
    else
      printf '%q ' timeout -k 5 60 $(nbdkit_env) "$NBDKIT" -U - "$PLUGIN" \
        export=disk "config=$1"
    fi
  }
  rm -f "$tmp/second.rc" "$tmp/reader.rc" "$tmp/second-ran"
  cat > "$tmp/inside.sh" <<EOF
set +e
nbdsh -u "\$uri" -c 'h.pwrite(open("$tmp/data", "rb").read(), 0); h.flush()' || exit 1
$(second_cmd "$tmp/writer.conf" w.sock) --run 'touch $tmp/second-ran' 2> $tmp/second.err
echo \$? > $tmp/second.rc
$(second_cmd "$tmp/reader.conf" r.sock) --run 'unset LD_PRELOAD; nbdsh -u "\$uri" -c "import sys; sys.exit(h.pread(4096, 0) != open(\\"$tmp/data\\", \\"rb\\").read())"' 2> $tmp/reader.err
echo \$? > $tmp/reader.rc
exit 0
EOF
  run_server "$first" "$tmp/writer.conf" disk -- "bash $tmp/inside.sh" ||
    die "[$first] the writer failed"
  cat "$tmp/second.err" >&2
  [ "$(cat "$tmp/second.rc")" != 0 ] && [ ! -e "$tmp/second-ran" ] ||
    die "[$first] a second writer ($second) on the same backing started"
  grep -E "disk\.img: in use by .*\(pid [0-9]+\)" "$tmp/second.err" \
    >/dev/null || die "[$first] $second: no message naming the file and holder"
  echo "[$first] a second writer ($second) on one backing was refused: OK"
  cat "$tmp/reader.err" >&2
  [ "$(cat "$tmp/reader.rc")" = 0 ] ||
    die "[$first] a share_backing reader ($second) failed next to the writer"
  echo "[$first] a share_backing = yes reader ($second) ran alongside: OK"
done
