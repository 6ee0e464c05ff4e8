#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-libnbd-live-set.sh — nbdcache set / detach / attach on a running
# nbdcached under a running workload (test-integrity.c).
#
# WHAT: nbdcached serves "disk" (writeback on cache "ssd") with a control
# socket.  Inside its --run command:
#  1. refusals, exit 1 with a clear message: an unknown key, a key that
#     cannot change live (cache), a bad value, attach of an attached
#     export; usage errors exit 2;
#  2. test-integrity (4 connections, random writes, zeroes, trims and
#     reads checked against its model) runs while the CLI keeps changing
#     the export: every cached mode, sequential_cutoff, writeback_percent,
#     promote_min, detach (stats: mode none, detached), attach (configured
#     mode and a given one), set mode=none / mode=writeback; every command
#     must succeed and the workload must see exactly its model;
#  3. nbdcache flush, then the whole export read through NBD (nbdcopy)
#     equals the backing file byte for byte; a detach, and the same again.
# WHY: the admin changes a running export (issue 12 §3): nothing a
# client wrote may be lost or read stale across any of these changes.
# HOW: captive mode (run_server), nbdcached only (the plugin has no
# control socket).  No sleeps: the changes loop until the workload ends.
# TEST_DURATION_S: seconds of workload (default 8); NBDCACHE_SEED repeats
# the workload's random choices (printed).
set -e
. "${srcdir:-.}/functions.sh"
requires cmp nbdcopy
nbdcached_only

tmp=$(make_tmpdir)
ctl=$tmp/ctl.sock
prog=$(cd "${builddir:-.}" && pwd)/test-integrity
tool=$(abspath "${NBDCACHE_TOOL:-$top_builddir/admin/nbdcache}")
[ -x "$tool" ] || die "no nbdcache tool at $tool"
export TEST_DURATION_S=${TEST_DURATION_S:-8}

write_config "$tmp/c.conf" "$tmp/disk.img" 64M "cache = ssd" \
  "mode = writeback"
sed -i "s|^\[server\]\$|[server]\ncontrol_socket = $ctl|" "$tmp/c.conf"
cat >> "$tmp/c.conf" <<EOF

[cache ssd]
path = $tmp/cache.img
size = 64M
create = yes
bucket_size = 64K
direct = no
EOF

cat > "$tmp/run.sh" <<'EOF'
# run.sh TOOL CTL PROG TMP — inside nbdcached's --run ($uri is set).
set -e
tool=$1 ctl=$2 prog=$3 tmp=$4
fail () { echo "FAIL: $*" >&2; exit 1; }
ctlcmd () { local c=$1; shift; "$tool" "$c" --socket "$ctl" "$@"; }
# must_refuse STATUS PATTERN CMD…: exit STATUS, stderr matching PATTERN.
must_refuse ()
{
  local want=$1 pat=$2 rc=0
  shift 2
  "$tool" "$@" 2> "$tmp/err" > /dev/null || rc=$?
  [ "$rc" = "$want" ] || { cat "$tmp/err" >&2; fail "$* exited $rc, not $want"; }
  grep -q -- "$pat" "$tmp/err" || { cat "$tmp/err" >&2; fail "$*: no '$pat'"; }
  echo "ok   refused: $* ($(head -1 "$tmp/err"))"
}
stats_has ()
{
  ctlcmd stats --json disk > "$tmp/stats.json"
  grep -q -- "$1" "$tmp/stats.json" || { cat "$tmp/stats.json" >&2; fail "stats: no $1"; }
}

must_refuse 1 "unknown key" set --socket "$ctl" disk no_such_key=1
must_refuse 1 "restart" set --socket "$ctl" disk cache=other
must_refuse 1 "expected" set --socket "$ctl" disk writeback_percent=200
must_refuse 1 "is attached" attach --socket "$ctl" disk
must_refuse 1 "no export" detach --socket "$ctl" nope
must_refuse 2 "KEY=VALUE" set --socket "$ctl" disk
must_refuse 2 "MODE" attach --socket "$ctl" disk none
stats_has '"mode":"writeback"'
stats_has '"detached":false'

"$prog" "$uri" > "$tmp/integrity.log" 2>&1 &
ipid=$!
rounds=0
while kill -0 $ipid 2> /dev/null; do
  ctlcmd set disk mode=writethrough
  ctlcmd set disk mode=writearound sequential_cutoff=1M
  ctlcmd set disk mode=writeback writeback_percent=5 promote_min=64K
  ctlcmd detach disk
  stats_has '"detached":true'
  stats_has '"mode":"none"'
  ctlcmd stats disk | grep -q "detached from cache 'ssd'" ||
    fail "nbdcache stats does not say detached"
  ctlcmd attach disk
  stats_has '"mode":"writeback"'
  ctlcmd set disk mode=none
  ctlcmd attach disk writethrough
  ctlcmd set disk mode=writeback sequential_cutoff=4M promote_min=0 \
    writeback_percent=10
  rounds=$((rounds + 1))
done
rc=0
wait $ipid || rc=$?
cat "$tmp/integrity.log"
[ $rc = 0 ] || fail "test-integrity failed (exit $rc) during the changes"
[ $rounds -ge 1 ] || fail "no round of changes ran"
echo "ok   $rounds rounds of set/detach/attach during the workload"

ctlcmd flush disk
nbdcopy "$uri" "$tmp/export.img"
cmp "$tmp/export.img" "$tmp/disk.img" || fail "export != backing after flush"
echo "ok   after flush: the export equals the backing file"
ctlcmd detach disk
nbdcopy "$uri" "$tmp/export2.img"
cmp "$tmp/export.img" "$tmp/export2.img" || fail "detached export differs"
cmp "$tmp/export2.img" "$tmp/disk.img" || fail "export != backing detached"
echo "ok   detached: the export equals the backing file"
EOF

run_server nbdcached "$tmp/c.conf" disk -- \
  "bash '$tmp/run.sh' '$tool' '$ctl' '$prog' '$tmp'"
