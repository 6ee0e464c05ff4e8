#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-exit-with-parent.sh — nbdcached --exit-with-parent: when the process
# that started it exits, the server stops the orderly way (as at SIGTERM:
# "stopping", the export's statistics, "stopped"; its socket and pidfile
# removed), not killed; as root also after a privilege drop (-u nobody),
# which clears the kernel's setting.  The parent is a shell that waits on a
# FIFO; the server's readiness is its --print-uri line; no sleeps.
# nbdcached only (nbdkit has its own --exit-with-parent).
set -e
. "${srcdir:-.}/functions.sh"
requires nbdinfo mkfifo timeout
nbdcached_only

tmp=$(make_tmpdir)
write_config "$tmp/c.conf" "$tmp/disk.img" 16M

# stops_with_parent NAME [OPTION…]: start the server under a parent shell,
# check it serves, let the parent exit, wait for the server to go.
stops_with_parent ()
{
  local name=$1 parent spid uri
  shift
  rm -f "$tmp/release" "$tmp/uris" "$tmp/log" "$tmp/spid"
  mkfifo "$tmp/release" "$tmp/uris"
  # The parent: starts the server in the background, then blocks until
  # released.  Without -f: --exit-with-parent implies it.
  bash -c '"$@" > "'"$tmp/uris"'" 2> "'"$tmp/log"'" &
           echo $! > "'"$tmp/spid"'"
           read -r x < "'"$tmp/release"'"' \
    parent "$NBDCACHED" -c "$tmp/c.conf" -U "$tmp/sock" -P "$tmp/pid" \
    --exit-with-parent --print-uri "$@" &
  parent=$!
  on_exit "kill $parent 2>/dev/null; [ -f $tmp/pid ] && kill \$(cat $tmp/pid)"

  read -r uri < "$tmp/uris" ||
    { cat "$tmp/log" >&2; die "$name: no URI: the server did not start"; }
  spid=$(cat "$tmp/spid")
  [ "$(cat "$tmp/pid")" = "$spid" ] ||
    die "$name: the server daemonized (pid $(cat "$tmp/pid") != $spid)"
  nbdinfo --size "$uri" > /dev/null || die "$name: the server does not serve"
  kill -0 "$spid" || die "$name: the server died early"

  echo release > "$tmp/release"
  wait "$parent" || true
  timeout 60 tail --pid="$spid" -f /dev/null ||
    die "$name: the server (pid $spid) still runs 60 s after its parent exited"
  cat "$tmp/log" >&2
  grep -q "signal 15 received" "$tmp/log" || die "$name: no SIGTERM logged"
  grep -q "stopping:" "$tmp/log" || die "$name: no orderly stop"
  grep -q "export 'disk': reads" "$tmp/log" ||
    die "$name: no statistics: not a clean stop"
  grep -q "stopped" "$tmp/log" || die "$name: did not reach 'stopped'"
}

stops_with_parent plain
[ ! -e "$tmp/sock" ] || die "socket left behind"
[ ! -e "$tmp/pid" ] || die "pidfile left behind"
echo "--exit-with-parent: orderly stop when the parent exited OK"

# The privilege drop clears the parent-death signal (prctl(2)): it must be
# armed after it.  Root only; the socket and pidfile, in a root-only
# directory, cannot be removed by nobody, so they are not checked.
if [ "$(id -u)" = 0 ] && getent passwd nobody > /dev/null; then
  chmod 755 "$tmp"
  stops_with_parent "-u nobody" -u nobody
  grep -q "serving as uid $(id -u nobody)" "$tmp/log" || die "-u nobody: no drop"
  rm -f "$tmp/sock" "$tmp/pid"
  echo "--exit-with-parent -u nobody: still armed after the drop OK"
else
  echo "NOTE: not root: --exit-with-parent with -u not tested" >&2
fi
