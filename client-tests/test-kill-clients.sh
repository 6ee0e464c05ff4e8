#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-kill-clients.sh — real clients killed with SIGKILL in the middle of
# a transfer, over and over; the server must survive every kill and then
# serve a clean client correctly.
#
# WHAT: inside one server (nbdcached, then nbdkit + the plugin), a loop
# starts a client, lets it run for a random moment and kills it with -9:
#   nbdcopy --connections=4 --requests=64 export -> null:  (deep read queue)
#   nbdcopy --connections=4 --requests=64 file -> export   (deep write queue)
#   test-integrity (4 connections, random I/O, 16 in flight each)
# nbdcopy is killed a random 0–150 ms after its first progress line (so it
# is connected and copying); test-integrity a random 20–400 ms after it
# starts.  Then a clean nbdcopy writes a known image and reads it back
# (cmp), and test-integrity runs clean for 3 s.
# WHY: a client that vanishes leaves requests parsed, queued and running
# on the server's workers; the server must neither touch freed or cleared
# connection state nor stop serving others.
# Environment: KILL_ROUNDS (most kills per server, default 60),
# KILL_SECONDS (time budget per server, default 20; the loop stops at
# whichever comes first), NBDCACHE_SEED (the kill delays; printed).
# nbdkit < 1.33.10 aborts by itself on such kills with several threads per
# connection: the plugin runs with --threads=1 there (nbdkit_hangup_opts).
set -e
. "${srcdir:-.}/functions.sh"
requires nbdcopy cmp mkfifo

tmp=$(make_tmpdir)
integrity=$(cd "${builddir:-.}" && pwd)/test-integrity
[ -x "$integrity" ] || die "test-integrity is not built: $integrity"
random_file "$tmp/disk.img" 96M
random_file "$tmp/src.img" 96M
random_file "$tmp/clean.img" 96M
write_config "$tmp/c.conf" "$tmp/disk.img" -
hangup_opts=($(nbdkit_hangup_opts))

seed=${NBDCACHE_SEED:-$(( $(date +%s) ^ $$ ))}
echo "$0: seed $seed (NBDCACHE_SEED=$seed repeats the kill delays)"
TMP=$tmp KILL_ROUNDS=${KILL_ROUNDS:-60} KILL_SECONDS=${KILL_SECONDS:-20}
INTEGRITY=$integrity SEED=$seed
export TMP KILL_ROUNDS KILL_SECONDS INTEGRITY SEED

cat > "$tmp/kill.sh" <<'EOF'
# Runs inside the server (bash): $uri is the export.
set -e
RANDOM=$SEED
kills=0 early=0 i=0
end=$((SECONDS + KILL_SECONDS))
rm -f "$TMP/progress"
mkfifo "$TMP/progress"

# A random delay of $1..$2 ms, as seconds for sleep.
delay () { printf '0.%03d' $(( $1 + RANDOM % ($2 - $1 + 1) )); }

while [ $i -lt "$KILL_ROUNDS" ] && [ $SECONDS -lt $end ]; do
  case $((i % 3)) in
    0|1)
      if [ $((i % 3)) = 0 ]; then
        nbdcopy --connections=4 --requests=64 --progress=3 "$uri" null: \
          3>"$TMP/progress" 2>/dev/null &
      else
        nbdcopy --connections=4 --requests=64 --progress=3 \
          "$TMP/src.img" "$uri" 3>"$TMP/progress" 2>/dev/null &
      fi
      pid=$!
      # Keep the fifo open until the kill: a closed reader would stop
      # nbdcopy with SIGPIPE instead.
      exec 5<"$TMP/progress"
      read -r line <&5 || true       # EOF: it ended before reporting
      sleep "$(delay 0 150)"
      ;;
    2)
      TEST_DURATION_S=60 NBDCACHE_SEED=$RANDOM "$INTEGRITY" "$uri" \
        >/dev/null 2>&1 &
      pid=$!
      sleep "$(delay 20 400)"
      ;;
  esac
  if kill -9 $pid 2>/dev/null; then
    kills=$((kills + 1))
  else
    early=$((early + 1))
  fi
  rc=0
  wait $pid || rc=$?
  exec 5<&- 2>/dev/null || true
  # Killed (137), or finished/failed before the kill, but never because
  # the server died: that shows below.
  i=$((i + 1))
done
echo "kill loop: $i clients, $kills killed mid-run, $early ended first"
[ $kills -gt 0 ] || { echo "FAIL: no client was killed"; exit 1; }

# The server is alive and correct.
nbdcopy "$TMP/clean.img" "$uri"
rm -f "$TMP/out.img"
nbdcopy "$uri" "$TMP/out.img"
cmp "$TMP/clean.img" "$TMP/out.img" ||
  { echo "FAIL: a clean copy after the kills read different data"; exit 1; }
TEST_DURATION_S=3 "$INTEGRITY" "$uri" >"$TMP/integrity.log" 2>&1 ||
  { cat "$TMP/integrity.log"; echo "FAIL: test-integrity after the kills"; exit 1; }
echo "clean clients after the kills: OK"
EOF

failed=
for kind in $(hangup_server_kinds); do
  echo "==== $kind ====" >&2
  SERVER_KIND=$kind run_server "$kind" "$tmp/c.conf" disk \
    "${hangup_opts[@]}" -- "bash '$tmp/kill.sh'" || failed="$failed $kind"
done
[ -z "$failed" ] || die "failed with:$failed"
