#!/usr/bin/env bash
# test-config-errors.sh — negative startup: one config per kind of config
# error.  nbdcached exits 1 without serving, naming FILE:LINE in its
# messages; `nbdcached --check-config` reports the same and exits 1; nbdkit
# with the plugin (config=FILE) refuses to start too.  A valid config
# passes --check-config with 0; a cache device that is foreign or corrupt
# is refused at startup with a clear message.
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
