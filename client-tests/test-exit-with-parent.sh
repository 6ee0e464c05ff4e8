#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-exit-with-parent.sh — nbdcached --exit-with-parent: when the process
# that started it exits, the server stops the orderly way (as at SIGTERM:
# "stopping", the export's statistics, "stopped"; its socket and pidfile
# removed), not killed.  The parent is a shell that waits on a FIFO; the
# server's readiness is its --print-uri line; no sleeps.
# nbdcached only (nbdkit has its own --exit-with-parent).
set -e
. "${srcdir:-.}/functions.sh"
requires nbdinfo mkfifo timeout
nbdcached_only

tmp=$(make_tmpdir)
write_config "$tmp/c.conf" "$tmp/disk.img" 16M
mkfifo "$tmp/release" "$tmp/uris"

# The parent: starts the server in the background, then blocks until
# released.  Without -f: --exit-with-parent implies it.
bash -c '"$@" > "'"$tmp/uris"'" 2> "'"$tmp/log"'" &
         echo $! > "'"$tmp/spid"'"
         read -r x < "'"$tmp/release"'"' \
  parent "$NBDCACHED" -c "$tmp/c.conf" -U "$tmp/sock" -P "$tmp/pid" \
  --exit-with-parent --print-uri &
parent=$!
on_exit "kill $parent 2>/dev/null; [ -f $tmp/pid ] && kill \$(cat $tmp/pid)"

read -r uri < "$tmp/uris" || { cat "$tmp/log" >&2; die "no URI: the server did not start"; }
spid=$(cat "$tmp/spid")
[ "$(cat "$tmp/pid")" = "$spid" ] || die "the server daemonized (pid $(cat "$tmp/pid") != $spid)"
nbdinfo --size "$uri" > /dev/null || die "the server does not serve"
kill -0 "$spid" || die "the server died early"

echo release > "$tmp/release"
wait "$parent" || true
timeout 60 tail --pid="$spid" -f /dev/null ||
  die "the server (pid $spid) still runs 60 s after its parent exited"
cat "$tmp/log" >&2
grep -q "signal 15 received" "$tmp/log" || die "no SIGTERM logged"
grep -q "stopping:" "$tmp/log" || die "no orderly stop"
grep -q "export 'disk': reads" "$tmp/log" || die "no statistics: not a clean stop"
grep -q "stopped" "$tmp/log" || die "did not reach 'stopped'"
[ ! -e "$tmp/sock" ] || die "socket left behind"
[ ! -e "$tmp/pid" ] || die "pidfile left behind"
echo "--exit-with-parent: orderly stop when the parent exited OK"
