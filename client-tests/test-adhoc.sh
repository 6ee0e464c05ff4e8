#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-adhoc.sh — the ad-hoc mode (nbdcached BACKING, no config file)
# through real clients: nbdinfo, nbdcopy and qemu-img, uncached and cached
# (writeback on a cache created by --cache-size, then reopened without it),
# -r, -e, the default export "", --print-uri, and a bad option value
# refused by the config loader with the generated text shown.
# nbdcached only: the plugin has no ad-hoc mode (nbdkit file FILE is its).
set -e
. "${srcdir:-.}/functions.sh"
requires nbdinfo nbdcopy qemu-img cmp
nbdcached_only

tmp=$(make_tmpdir)
random_file "$tmp/data" 8M
truncate -s 32M "$tmp/disk.img"

# adhoc [OPTION…] BACKING -- CMD: the server in the foreground on a private
# socket, CMD run with $uri once listening.
adhoc ()
{
  local -a opts=()
  while [ "$1" != "--" ]; do opts+=("$1"); shift; done
  shift
  echo "+ nbdcached -f -U $tmp/sock ${opts[*]} --run '$*'" >&2
  timeout -k 10 "$SERVER_TIMEOUT_S" \
    "$NBDCACHED" -f -U "$tmp/sock" "${opts[@]}" --run "$*"
}

# --- 1. uncached: write with nbdcopy, read back, qemu-img sees the size ----
adhoc "$tmp/disk.img" -- "
  nbdinfo --size \"\$uri\" > $tmp/size &&
  nbdcopy $tmp/data \"\$uri\" &&
  nbdcopy \"\$uri\" $tmp/back.img &&
  qemu-img info --output=json \"\$uri\" > $tmp/qemu.json &&
  qemu-img compare -U -f raw -F raw $tmp/data \"\$uri\""
[ "$(cat "$tmp/size")" = $((32 << 20)) ] || die "uncached: size $(cat "$tmp/size")"
cmp -n $((8 << 20)) "$tmp/data" "$tmp/back.img" || die "uncached: data read back differs"
cmp -n $((8 << 20)) "$tmp/data" "$tmp/disk.img" || die "uncached: backing file differs"
grep -q '"virtual-size": 33554432' "$tmp/qemu.json" || die "uncached: qemu-img info"
echo "uncached: nbdinfo, nbdcopy, qemu-img OK"

# --- 2. cached (writeback) on a cache created by --cache-size ---------------
random_file "$tmp/data2" 4M
adhoc --cache "$tmp/cache.img" --cache-size 64M --mode writeback \
  "$tmp/disk.img" -- "
  nbdcopy $tmp/data2 \"\$uri\" &&
  nbdcopy \"\$uri\" $tmp/back2.img &&
  nbdinfo --json \"\$uri\" > $tmp/cached.json" 2> "$tmp/cached.log" ||
  { cat "$tmp/cached.log" >&2; die "cached run failed"; }
cat "$tmp/cached.log" >&2
[ -f "$tmp/cache.img" ] || die "--cache-size did not create the cache"
grep -q "cache 'adhoc'" "$tmp/cached.log" || die "cached: no cache in the log"
cmp -n $((4 << 20)) "$tmp/data2" "$tmp/back2.img" || die "cached: data read back differs"
# Reopened without --cache-size (the cache exists now), read-only, with a
# name: the data written (maybe still dirty in the cache) reads back.
adhoc --cache "$tmp/cache.img" --mode writeback -r -e disk2 \
  "$tmp/disk.img" -- "
  nbdinfo --json \"\$uri\" > $tmp/ro.json &&
  nbdcopy \"\$uri\" $tmp/back3.img &&
  qemu-img compare -U -f raw -F raw $tmp/back3.img \"nbd+unix:///?socket=$tmp/sock\" &&
  ! nbdcopy $tmp/data \"\$uri\" 2>/dev/null"
cmp -n $((4 << 20)) "$tmp/data2" "$tmp/back3.img" || die "cached: data after reopen differs"
"$PYTHON" - "$tmp/ro.json" <<'EOF' || die "-r / -e not applied"
import json, sys
e = json.load(open(sys.argv[1]))["exports"][0]
assert e["export-name"] == "disk2", e["export-name"]
assert e["is_read_only"] is True
EOF
echo "cached: created, written, reopened read-only by name (and \"\" as default) OK"

# --- 3. --print-uri names the export the clients use ------------------------
adhoc --print-uri -e 'my disk' "$tmp/disk.img" -- "true" > "$tmp/uri" 2>/dev/null
[ "$(cat "$tmp/uri")" = "nbd+unix:///my%20disk?socket=$tmp/sock" ] ||
  die "--print-uri printed '$(cat "$tmp/uri")'"
echo "--print-uri OK"

# --- 4. the config loader validates: a bad value is refused, shown ---------
rc=0
"$NBDCACHED" -f -U "$tmp/sock" --mode sideways "$tmp/disk.img" \
  2> "$tmp/bad.err" || rc=$?
cat "$tmp/bad.err" >&2
[ $rc = 1 ] || die "bad --mode: exit $rc, expected 1 (a config error)"
grep -q "command-line.conf:[0-9]*: .*mode" "$tmp/bad.err" || die "no FILE:LINE mode message"
grep -q "mode = sideways" "$tmp/bad.err" || die "the generated text was not shown"
[ ! -e "$tmp/sock" ] || die "a refused start left its socket"
rc=0
"$NBDCACHED" -f -U "$tmp/sock" --mode writeback "$tmp/disk.img" \
  2> "$tmp/bad2.err" || rc=$?
[ $rc = 1 ] && grep -q "needs a cache device" "$tmp/bad2.err" ||
  die "--mode writeback without --cache: exit $rc: $(cat "$tmp/bad2.err")"
echo "bad values refused by the config loader OK"

# --- 5. -U -: a private socket for --run, removed with its directory -------
timeout -k 10 "$SERVER_TIMEOUT_S" "$NBDCACHED" -U - "$tmp/disk.img" --run "
  nbdinfo --size \"\$uri\" > $tmp/size5 && echo \"\$unixsocket\" > $tmp/sock5"
[ "$(cat "$tmp/size5")" = $((32 << 20)) ] || die "-U -: no size"
sock5=$(cat "$tmp/sock5")
case "$sock5" in /*/socket) ;; *) die "-U -: socket '$sock5'" ;; esac
[ ! -e "$sock5" ] && [ ! -e "${sock5%/socket}" ] ||
  die "-U -: $sock5 or its directory left behind"
echo "-U -: private socket, removed at exit OK"
