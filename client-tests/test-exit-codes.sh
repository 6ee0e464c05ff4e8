#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-exit-codes.sh — the exit status convention (HACKING.md, "Exit
# status"; the EXIT STATUS sections of nbdcached(8) and nbdcache(8)): a
# usage error — an unknown option, a missing or bad option argument, a
# missing, stray or conflicting argument — exits 2 in every program and
# every nbdcache command; an invalid configuration exits 1.
set -e
. "${srcdir:-.}/functions.sh"

NBDCACHE=$(abspath "${NBDCACHE:-$top_builddir/admin/nbdcache}")
[ -x "$NBDCACHED" ] || die "nbdcached is not built: $NBDCACHED"
[ -x "$NBDCACHE" ] || die "nbdcache is not built: $NBDCACHE"
tmp=$(make_tmpdir)
cd "$tmp"
truncate -s 1M disk.img

failed=0
# expect STATUS CMD…: CMD exits STATUS (stdin empty, output kept quiet).
expect ()
{
  local want=$1 rc=0
  shift
  timeout 60 "$@" < /dev/null > out 2> err || rc=$?
  if [ "$rc" != "$want" ]; then
    echo "FAIL: exit $rc, expected $want: $*" >&2
    sed 's/^/    /' err >&2
    failed=1
  else
    echo "ok: $want: $*"
  fi
}

# --- nbdcached: usage errors ------------------------------------------------
expect 2 "$NBDCACHED" --no-such-option
expect 2 "$NBDCACHED" -w                        # missing argument
expect 2 "$NBDCACHED" -w 0                      # bad value
expect 2 "$NBDCACHED" --log nowhere
expect 2 "$NBDCACHED" -p 70000
expect 2 "$NBDCACHED" disk.img stray.img        # one BACKING only
expect 2 "$NBDCACHED" -c x.conf disk.img        # a config file or BACKING
expect 2 "$NBDCACHED" --mode writeback          # ad-hoc option, no BACKING
expect 2 "$NBDCACHED" --cache-size 1G --cache c.img  # ... idem
expect 2 "$NBDCACHED" --cache-size 1G disk.img  # --cache-size without --cache
expect 2 "$NBDCACHED" -s --print-uri -c x.conf
# --- nbdcached: configuration errors exit 1 ----------------------------------
printf '[export x]\nbacking = %s/disk.img\nmode = sideways\n' "$tmp" > bad.conf
expect 1 "$NBDCACHED" --check-config bad.conf
expect 1 "$NBDCACHED" -f -c bad.conf -U sock
expect 1 "$NBDCACHED" -f -c missing.conf -U sock
expect 1 "$NBDCACHED" -f -U sock --mode sideways disk.img   # ad-hoc: the same
# --- nbdcached: success ------------------------------------------------------
expect 0 "$NBDCACHED" --help
expect 0 "$NBDCACHED" --version

# --- nbdcache: usage errors, top level and every command ---------------------
expect 2 "$NBDCACHE"
expect 2 "$NBDCACHE" --no-such-option
expect 2 "$NBDCACHE" no-such-command
for cmd in format show check stats flush reload; do
  expect 2 "$NBDCACHE" "$cmd" --no-such-option
done
expect 2 "$NBDCACHE" format                     # PATH missing
expect 2 "$NBDCACHE" format a.img b.img         # too many
expect 2 "$NBDCACHE" format --size nonsense c.img
expect 2 "$NBDCACHE" show
expect 2 "$NBDCACHE" check
expect 2 "$NBDCACHE" stats                      # neither --socket nor -c
expect 2 "$NBDCACHE" flush                      # no export, no socket
expect 2 "$NBDCACHE" reload extra                # no argument taken
expect 2 "$NBDCACHE" reload --socket x -c y      # one or the other
expect 2 "$NBDCACHE" reload --socket "$tmp/no.sock"   # no server there
expect 2 "$NBDCACHE" stats --socket x --json --prometheus   # one output format
expect 2 "$NBDCACHE" stats --socket x --watch -n 0        # interval out of range
expect 2 "$NBDCACHE" stats --socket x -n 1                # -n without --watch
expect 2 "$NBDCACHE" check --json                          # PATH missing
expect 0 "$NBDCACHE" --help
expect 0 "$NBDCACHE" help
expect 0 "$NBDCACHE" --version

[ $failed = 0 ] || die "exit statuses differ from the convention"
echo "exit statuses: usage 2, configuration 1, success 0 OK"
