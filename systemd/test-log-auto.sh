#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# test-log-auto.sh — log = auto (the default): stderr in the foreground;
# a daemon logs its start-up to stderr (errors reach the terminal), then
# detaches it (fd 2 is /dev/null: nothing more reaches the terminal it was
# started from) and logs to syslog; under systemd's journal stream
# (JOURNAL_STREAM = stderr's DEV:INODE) syslog, which keeps the levels;
# a JOURNAL_STREAM inherited by a process whose stderr is elsewhere counts
# for nothing.
set -euo pipefail

: "${NBDCACHED:?NBDCACHED: the nbdcached to test}"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test-log-auto.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
truncate -s 1M "$tmp/disk.img"
cat > "$tmp/l.conf" <<CONF
[export disk]
backing = $tmp/disk.img
CONF

fail () { echo "FAIL: $*"; exit 1; }

# 1. Foreground: stderr.
"$NBDCACHED" -f -c "$tmp/l.conf" -U "$tmp/s1" --run true 2> "$tmp/fg.err"
grep -q 'info: listening on' "$tmp/fg.err" || fail "foreground: nothing on stderr"
grep -q 'info: stopped' "$tmp/fg.err" || fail "foreground: no 'stopped' on stderr"
echo "foreground: stderr"

# 2. A daemon: start-up on stderr, then stderr detached.
"$NBDCACHED" -c "$tmp/l.conf" -U "$tmp/s2" -P "$tmp/pid" 2> "$tmp/daemon.err"
pid=$(cat "$tmp/pid")
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$tmp"' EXIT
fd2=$(readlink "/proc/$pid/fd/2")
kill "$pid"
tail --pid="$pid" -f /dev/null
cat "$tmp/daemon.err"
[ "$fd2" = /dev/null ] || fail "daemon: fd 2 is $fd2, not /dev/null"
grep -q 'info: listening on' "$tmp/daemon.err" ||
  fail "daemon: the start-up messages did not reach stderr"
if grep -q 'signal 15 received\|info: stopped' "$tmp/daemon.err"; then
  fail "daemon: messages after start-up still reach the terminal"
fi
echo "daemon: start-up on stderr, then stderr detached (syslog)"

# 3. Under the journal: stderr is JOURNAL_STREAM, so syslog, and nothing
# on the stream.
: > "$tmp/journal.err"
js=$(stat -c '%d:%i' "$tmp/journal.err")
JOURNAL_STREAM=$js "$NBDCACHED" -f -c "$tmp/l.conf" -U "$tmp/s3" --run true \
  2> "$tmp/journal.err"
if [ -s "$tmp/journal.err" ]; then
  cat "$tmp/journal.err"
  fail "under the journal stream: messages on stderr instead of syslog"
fi
echo "under systemd's journal stream: syslog"

# 4. An inherited JOURNAL_STREAM that is not our stderr: stderr.
JOURNAL_STREAM=$js "$NBDCACHED" -f -c "$tmp/l.conf" -U "$tmp/s4" --run true \
  2> "$tmp/other.err"
grep -q 'info: listening on' "$tmp/other.err" ||
  fail "an inherited JOURNAL_STREAM silenced stderr"
echo "an inherited JOURNAL_STREAM: stderr"

# 5. log = stderr stays stderr for a daemon (as asked).
"$NBDCACHED" -c "$tmp/l.conf" -U "$tmp/s5" -P "$tmp/pid5" --log stderr \
  2> "$tmp/daemon-stderr.err"
pid=$(cat "$tmp/pid5")
fd2=$(readlink "/proc/$pid/fd/2")
kill "$pid"
tail --pid="$pid" -f /dev/null
[ "$fd2" != /dev/null ] || fail "--log stderr: the daemon's stderr was detached"
grep -q 'info: stopped' "$tmp/daemon-stderr.err" ||
  fail "--log stderr: the daemon's later messages are gone"
echo "--log stderr: a daemon keeps stderr"
