#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-config-errors.sh — negative startup: one config per kind of config
# error.  nbdcached exits 1 without serving, naming FILE:LINE in its
# messages; `nbdcached --check-config` reports the same and exits 1; nbdkit
# with the plugin (config=FILE) refuses to start too.  A valid config
# passes --check-config with 0; a cache device that is foreign or corrupt
# is refused at startup with a clear message.  A cache size too small to
# format is refused at its line and no file is left behind (also by the
# plugin's cache-size=); nbdcached reports every missing directory for its
# pidfile, sockets and cache files in one run (and an unwritable one when
# not root); a start that fails after making its pidfile and sockets
# removes them.
set -e
. "${srcdir:-.}/functions.sh"
requires grep

tmp=$(make_tmpdir)
touch "$tmp/disk.img"
truncate -s 1M "$tmp/disk.img"
truncate -s 64M "$tmp/ssd.img"

# bad_case NAME "LINE…" : $tmp/NAME.conf (already written) is invalid; one of
# LINE… is where the error is (some errors have two reasonable places).
bad_case ()
{
  local name=$1 lines=$2 conf=$tmp/$1.conf l pat="" rc kind
  for l in $lines; do
    pat="$pat${pat:+|}$name\\.conf:$l:"
  done
  echo "==== $name: expect an error at $name.conf:{$lines} ====" >&2
  cat -n "$conf" >&2

  # --check-config
  rc=0
  "$NBDCACHED" --check-config "$conf" 2> "$tmp/$name.check.err" || rc=$?
  cat "$tmp/$name.check.err" >&2
  [ $rc = 1 ] || die "$name: --check-config exited $rc, expected 1"
  grep -Eq "$pat" "$tmp/$name.check.err" ||
    die "$name: --check-config did not name $name.conf:{$lines}:"

  # startup, both kinds: exit 1, the message, and the command never runs
  for kind in $(server_kinds); do
    rm -f "$tmp/ran"
    rc=0
    run_server "$kind" "$conf" disk -- "touch $tmp/ran" \
      2> "$tmp/$name.$kind.err" || rc=$?
    cat "$tmp/$name.$kind.err" >&2
    [ $rc = 1 ] || die "$name: [$kind] startup exited $rc, expected 1"
    [ ! -e "$tmp/ran" ] || die "$name: [$kind] served despite the bad config"
    grep -Eq "$pat" "$tmp/$name.$kind.err" ||
      die "$name: [$kind] did not name $name.conf:{$lines}:"
  done
  echo "$name: refused with $name.conf:{$lines}: OK"
}

header="[server]
log = stderr
"                                       # lines 1-3

# unknown section (line 4)
cat > "$tmp/unknown-section.conf" <<EOF
$header
[exprot disk]
backing = $tmp/disk.img

[export disk]
backing = $tmp/disk.img
EOF
bad_case unknown-section 4

# unknown key (line 6)
cat > "$tmp/unknown-key.conf" <<EOF
$header
[export disk]
backing = $tmp/disk.img
colour = blue
EOF
bad_case unknown-key 6

# bad values: a boolean, a size, a number, an enum (line 6 each)
for kv in "readonly = maybe" "size = 12Q" "max_connections = many" \
          "mode = sideways"; do
  cat > "$tmp/bad-value.conf" <<EOF
$header
[export disk]
backing = $tmp/disk.img
$kv
EOF
  bad_case bad-value 6
done
cat > "$tmp/bad-value.conf" <<EOF
$header
workers = -3
[export disk]
backing = $tmp/disk.img
EOF
bad_case bad-value 4

# missing backing file, no size to create it (line 5)
cat > "$tmp/missing-backing.conf" <<EOF
$header
[export disk]
backing = $tmp/no-such-file.img
EOF
bad_case missing-backing 5

# reference to an unknown cache (line 6)
cat > "$tmp/unknown-cache.conf" <<EOF
$header
[export disk]
backing = $tmp/disk.img
cache = nosuch
EOF
bad_case unknown-cache 6

# a cache mode without a cache (line 6, or the section at line 4)
cat > "$tmp/mode-without-cache.conf" <<EOF
$header
[export disk]
backing = $tmp/disk.img
mode = writeback
EOF
bad_case mode-without-cache "6 4"

# the same section twice (the second one, line 7)
cat > "$tmp/duplicate-section.conf" <<EOF
$header
[export disk]
backing = $tmp/disk.img

[export disk]
backing = $tmp/disk.img
EOF
bad_case duplicate-section 7

# an export without its required backing key (the section, line 4)
cat > "$tmp/missing-key.conf" <<EOF
$header
[export disk]
description = no backing here
EOF
bad_case missing-key 4

# ---- a valid config: --check-config says 0, and the server serves it ----
# (relative paths are relative to the config file's directory)
cat > "$tmp/valid.conf" <<EOF
$header
[export disk]
backing = disk.img
description = fine
EOF
"$NBDCACHED" --check-config "$tmp/valid.conf" ||
  die "--check-config of a valid config failed"
for kind in $(server_kinds); do
  rm -f "$tmp/ran"
  ( cd / && run_server "$kind" "$tmp/valid.conf" disk -- "touch $tmp/ran" ) ||
    die "[$kind] a valid config did not start"
  [ -e "$tmp/ran" ] || die "[$kind] the --run command did not run"
done
echo "valid config: OK"

# ---- a cache device: served when it can be trusted, refused when it is
# not an nbdcache device (without create = yes) or its metadata is
# corrupt — never served uncached, never reformatted behind our back. ----
cached_conf () {                # $1 = cache file, $2 = extra [cache] lines
  cat > "$tmp/cached.conf" <<EOF
$header
[cache ssd]
path = $1
$2

[export disk]
backing = $tmp/disk.img
cache = ssd
mode = writeback
EOF
}

refused_cache () {              # $1 = what, $2 = regex the error must match
  "$NBDCACHED" --check-config "$tmp/cached.conf" ||
    die "--check-config refused a valid config ($1)"
  for kind in $(server_kinds); do
    rm -f "$tmp/ran"
    rc=0
    run_server "$kind" "$tmp/cached.conf" disk -- "touch $tmp/ran" \
      2> "$tmp/cached.$kind.err" || rc=$?
    cat "$tmp/cached.$kind.err" >&2
    [ $rc = 1 ] || die "[$kind] $1: exit $rc, expected 1"
    [ ! -e "$tmp/ran" ] || die "[$kind] $1: served anyway"
    grep -Ei 'error' "$tmp/cached.$kind.err" | grep -Ei "$2" >/dev/null ||
      die "[$kind] $1: no clear message (want /$2/)"
  done
  echo "$1: refused OK"
}

# create = yes formats a new file and serves it.
cached_conf "$tmp/ssd.img" "size = 64M
create = yes"
for kind in $(server_kinds); do
  rm -f "$tmp/ran"
  run_server "$kind" "$tmp/cached.conf" disk -- "touch $tmp/ran" ||
    die "[$kind] a new cache with create = yes did not start"
  [ -e "$tmp/ran" ] || die "[$kind] cached export: --run did not run"
done
echo "cached export with create = yes: OK"

# A file that is not an nbdcache device, without create = yes.
head -c 16777216 /dev/urandom > "$tmp/foreign.img"
cached_conf "$tmp/foreign.img" ""
refused_cache "foreign cache device" "not an nbdcache"

# A formatted cache whose superblocks are both damaged: refused even with
# create = yes (never reformatted).
cp "$tmp/ssd.img" "$tmp/corrupt.img"
printf 'garbage!' | dd of="$tmp/corrupt.img" bs=1 seek=100 conv=notrunc 2>/dev/null
printf 'garbage!' | dd of="$tmp/corrupt.img" bs=1 seek=4196 conv=notrunc 2>/dev/null
cached_conf "$tmp/corrupt.img" "create = yes"
refused_cache "corrupt cache device" "corrupt|checksum"

# ---- a cache too small to format: refused at its size = line before a
# file is made (both kinds read the config); the plugin's own
# cache-size= fails at the format and removes the file it created. ----
cat > "$tmp/cache-too-small.conf" <<EOF
$header
[cache ssd]
path = $tmp/new-cache.img
create = yes
size = 2M

[export disk]
backing = $tmp/disk.img
cache = ssd
mode = writeback
EOF
bad_case cache-too-small 7
grep -q "at least 16777216 bytes" "$tmp/cache-too-small.check.err" ||
  die "cache-too-small: the message does not give the minimum size"
[ ! -e "$tmp/new-cache.img" ] ||
  die "cache-too-small: a failed start left the cache file behind"
if want_server plugin; then
  _ct_need_binary plugin
  rc=0
  timeout -k 10 "$SERVER_TIMEOUT_S" $(nbdkit_env) "$NBDKIT" -U - "$PLUGIN" \
    backing="$tmp/disk.img" cache="$tmp/new-cache.img" create=yes \
    cache-size=2M mode=writeback --run "touch $tmp/ran" \
    2> "$tmp/plugin-small.err" || rc=$?
  cat "$tmp/plugin-small.err" >&2
  [ $rc != 0 ] || die "[plugin] cache-size=2M: started"
  grep -q "too small" "$tmp/plugin-small.err" ||
    die "[plugin] cache-size=2M: no message saying it is too small"
  [ ! -e "$tmp/new-cache.img" ] ||
    die "[plugin] cache-size=2M: the cache file was left behind"
  echo "plugin cache-size too small: refused, no file left: OK"
fi

# ---- nbdcached's own files: every directory that does not exist is
# reported in one --check-config run, each at its line; a start that
# fails after making its pidfile and sockets removes them. ----
if want_server nbdcached; then
  cat > "$tmp/server-paths.conf" <<EOF
$header
pidfile = $tmp/no-dir/nbdcached.pid
control_socket = $tmp/no-dir/ctl.sock
listen = unix:$tmp/no-dir/nbd.sock

[cache ssd]
path = $tmp/no-dir/cache.img
create = yes
size = 64M

[export disk]
backing = $tmp/disk.img
cache = ssd
mode = writeback
EOF
  rc=0
  "$NBDCACHED" --check-config "$tmp/server-paths.conf" \
    2> "$tmp/server-paths.err" || rc=$?
  cat "$tmp/server-paths.err" >&2
  [ $rc = 1 ] || die "server-paths: --check-config exited $rc, expected 1"
  for l in 4 5 6 9; do
    grep -q "server-paths\.conf:$l: .*no-dir.*No such file or directory" \
      "$tmp/server-paths.err" ||
      die "server-paths: line $l not reported (all four in one run)"
  done
  rc=0
  "$NBDCACHED" -f -c "$tmp/server-paths.conf" --run "touch $tmp/ran" \
    2> "$tmp/server-paths.start.err" || rc=$?
  [ $rc = 1 ] || die "server-paths: start exited $rc, expected 1"
  grep -q "server-paths\.conf:9:" "$tmp/server-paths.start.err" ||
    die "server-paths: the start did not report the lines too"
  echo "server paths: all reported at --check-config and at start: OK"

  if [ "$(id -u)" != 0 ]; then
    mkdir "$tmp/ro"
    chmod 555 "$tmp/ro"
    sed "s|$tmp/no-dir/nbdcached.pid|$tmp/ro/nbdcached.pid|" \
      "$tmp/server-paths.conf" > "$tmp/server-ro.conf"
    rc=0
    "$NBDCACHED" --check-config "$tmp/server-ro.conf" \
      2> "$tmp/server-ro.err" || rc=$?
    cat "$tmp/server-ro.err" >&2
    [ $rc = 1 ] || die "server-ro: --check-config exited $rc, expected 1"
    grep -q "server-ro\.conf:4: pidfile .*cannot create it in" \
      "$tmp/server-ro.err" || die "server-ro: no permission error at line 4"
    echo "pidfile in a read-only directory: reported: OK"
  fi

  # The control socket cannot be made (a directory is in the way): the
  # pidfile and the listening socket made before it must go.
  mkdir -p "$tmp/run/ctl.sock"
  cat > "$tmp/failed-start.conf" <<EOF
$header
pidfile = $tmp/run/nbdcached.pid
control_socket = $tmp/run/ctl.sock
listen = unix:$tmp/run/nbd.sock

[export disk]
backing = $tmp/disk.img
EOF
  rm -f "$tmp/ran"
  rc=0
  "$NBDCACHED" -f -c "$tmp/failed-start.conf" --run "touch $tmp/ran" \
    2> "$tmp/failed-start.err" || rc=$?
  cat "$tmp/failed-start.err" >&2
  [ $rc = 1 ] || die "failed-start: exited $rc, expected 1"
  [ ! -e "$tmp/ran" ] || die "failed-start: served anyway"
  [ ! -e "$tmp/run/nbdcached.pid" ] ||
    die "failed-start: the pidfile was left behind"
  [ ! -e "$tmp/run/nbd.sock" ] ||
    die "failed-start: the listening socket was left behind"
  echo "failed start: pidfile and socket removed: OK"
fi
