#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-plugin-params.sh — the plugin's key=value parameters and nbdcached's
# config file refuse the same bad values with the same words.
#
# WHAT: for each bad value of a key that is both an [export] / [cache] key
# and a plugin parameter (mode, readonly, size, cache-size, discard,
# writeback-percent, sequential-cutoff, backing-connections,
# backing-timeout, backing), `nbdcached --check-config` on a file with it
# and nbdkit with the plugin given it as a parameter both refuse it, and
# the plugin's message equals the file's once the file's "FILE:LINE: " is
# dropped and the key is spelt as the parameter (cache-size= is [cache]
# size, the others '-' for '_').  A parameter given twice is refused too.
# WHY: the plugin used to re-implement these checks with its own words
# (and its own limits); both now go through the config library's key
# table (common/config/config-params.c).
set -e
. "${srcdir:-.}/functions.sh"
requires grep sed
want_server plugin || { echo "plugin not selected (SERVERS)"; exit 77; }
_ct_need_binary plugin
_ct_need_binary nbdcached

tmp=$(make_tmpdir)
truncate -s 1M "$tmp/disk.img"

# same SECTION KEY PARAM VALUE: the file's message for KEY = VALUE in
# SECTION, and the plugin's for PARAM=VALUE, are one message.
same ()
{
  local section=$1 key=$2 param=$3 value=$4 conf=$tmp/c.conf rc file_msg
  local plugin_msg extra=()
  {
    echo "[cache ssd]"
    echo "path = $tmp/ssd.img"
    [ "$section" = cache ] && echo "$key = $value"
    echo "[export disk]"
    [ "$key" = backing ] || echo "backing = $tmp/disk.img"
    echo "cache = ssd"
    [ "$section" = export ] && echo "$key = $value"
  } > "$conf"
  rc=0
  "$NBDCACHED" --check-config "$conf" 2> "$tmp/file.err" || rc=$?
  [ $rc = 1 ] || die "$key = $value: --check-config exited $rc, expected 1"
  # The value's own message: the first one naming the key.
  file_msg=$(sed -n "s/^.*c\.conf:[0-9]*: \(.*\b$key\b.*\)$/\1/p" \
               "$tmp/file.err" | head -n 1)
  [ -n "$file_msg" ] || { cat "$tmp/file.err" >&2; die "$key = $value: no message"; }
  file_msg=${file_msg/"$key"/"$param"}   # the key, not the words

  [ "$param" = backing ] || extra=(backing="$tmp/disk.img")
  [ "$section" = cache ] && [ "$param" != cache ] && extra+=(cache="$tmp/ssd.img")
  rc=0
  timeout -k 10 "$SERVER_TIMEOUT_S" $(nbdkit_env) "$NBDKIT" -U - "$PLUGIN" \
    "${extra[@]}" "$param=$value" --run "touch $tmp/ran" \
    2> "$tmp/plugin.err" || rc=$?
  [ $rc != 0 ] || die "[plugin] $param=$value: started"
  [ ! -e "$tmp/ran" ] || die "[plugin] $param=$value: served"
  plugin_msg=$(grep -F "error: " "$tmp/plugin.err" | head -n 1 |
                 sed 's/^.*error: //')
  echo "file:   $file_msg"
  echo "plugin: $plugin_msg"
  [ "$plugin_msg" = "$file_msg" ] ||
    die "$param=$value: the plugin says '$plugin_msg', the file '$file_msg'"
}

same export mode mode sideways
same export readonly readonly maybe
same export size size 12Q
same export size size 0
same export size size 9223372036854775808   # 2^63: more than off_t
same export writeback_percent writeback-percent 200
same export sequential_cutoff sequential-cutoff big
same export backing_connections backing-connections 0
same export backing_timeout backing-timeout 5m
same export backing backing rbd:pool
same export backing backing gopher://host/x
same cache size cache-size 0
same cache discard discard maybe
echo "bad values: the same message from the file and the plugin: OK"

# A parameter given twice, like a key set twice in a section.
rc=0
timeout -k 10 "$SERVER_TIMEOUT_S" $(nbdkit_env) "$NBDKIT" -U - "$PLUGIN" \
  backing="$tmp/disk.img" mode=none mode=writeback --run true \
  2> "$tmp/twice.err" || rc=$?
cat "$tmp/twice.err" >&2
[ $rc != 0 ] || die "mode= given twice: started"
grep -q "duplicate key 'mode'" "$tmp/twice.err" ||
  die "mode= given twice: no 'duplicate key' message"
echo "a parameter given twice: refused: OK"
