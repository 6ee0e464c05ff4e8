#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# test-privdrop.sh — user = / group = (and -u / -g): nbdcached started as
# root serves as the configured user, seen in /proc/PID/status, after it
# opened what needs root; an unknown user stops it before anything opens.
#
# Needs root (skips otherwise) and the user "nobody" with group "nogroup"
# (Debian's).  The backing file and the cache file are root-only (0600) in
# a root-only directory: nbdcached can serve them only because it opened
# them before switching.
set -euo pipefail

: "${NBDCACHED:?NBDCACHED: the nbdcached to test}"
if [ "$(id -u)" -ne 0 ]; then
  echo "SKIP: needs root to switch users"
  exit 77
fi
getent passwd nobody >/dev/null && getent group nogroup >/dev/null || {
  echo "SKIP: no user nobody / group nogroup"
  exit 77
}
command -v nbdinfo >/dev/null || { echo "SKIP: nbdinfo is not installed"; exit 77; }
nobody_uid=$(id -u nobody)
nogroup_gid=$(getent group nogroup | cut -d: -f3)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test-privdrop.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
chmod 0711 "$tmp"               # nobody may reach the socket, nothing else
mkdir "$tmp/out"

head -c 1M /dev/urandom > "$tmp/disk.img"
chmod 0600 "$tmp/disk.img"
cat > "$tmp/p.conf" <<CONF
[server]
user = nobody
group = nogroup

[cache ssd]
path = $tmp/ssd.img
create = yes
size = 16M

[export disk]
backing = $tmp/disk.img
cache = ssd
CONF

# As a daemon: the parent exits 0 only once the child serves (after the
# switch), so the checks below never race it.
"$NBDCACHED" -c "$tmp/p.conf" -U "$tmp/sock" -P "$tmp/pid"
pid=$(cat "$tmp/pid")
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$tmp"' EXIT
grep -E '^(Uid|Gid|Groups|CapEff):' "/proc/$pid/status" > "$tmp/out/status"
nbdcopy "nbd+unix:///disk?socket=$tmp/sock" - | cmp - "$tmp/disk.img"
kill "$pid"
tail --pid="$pid" -f /dev/null   # until it has drained and exited
cat "$tmp/out/status"
want_uid=$(printf 'Uid:\t%s\t%s\t%s\t%s' "$nobody_uid" "$nobody_uid" "$nobody_uid" "$nobody_uid")
want_gid=$(printf 'Gid:\t%s\t%s\t%s\t%s' "$nogroup_gid" "$nogroup_gid" "$nogroup_gid" "$nogroup_gid")
grep -qxF "$want_uid" "$tmp/out/status" || { echo "FAIL: not serving as nobody"; exit 1; }
grep -qxF "$want_gid" "$tmp/out/status" || { echo "FAIL: not serving as nogroup"; exit 1; }
grep -qx 'CapEff:[[:space:]]*0*' "$tmp/out/status" ||
  { echo "FAIL: capabilities left after the switch"; exit 1; }
echo "served as nobody:nogroup with no capabilities; the export read back"

# -u overrides the config; an unknown user stops nbdcached at once.
if "$NBDCACHED" -f -c "$tmp/p.conf" -U "$tmp/sock2" -u no-such-user-xyz \
     --run true > "$tmp/out/refused" 2>&1; then
  cat "$tmp/out/refused"; echo "FAIL: an unknown user was accepted"; exit 1
fi
cat "$tmp/out/refused"
grep -q "user 'no-such-user-xyz': no such user" "$tmp/out/refused" ||
  { echo "FAIL: not the expected message"; exit 1; }
[ ! -e "$tmp/sock2" ] || { echo "FAIL: it listened before refusing"; exit 1; }
echo "an unknown user is refused before anything is opened"
