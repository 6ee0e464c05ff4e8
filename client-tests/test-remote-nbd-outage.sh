#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-remote-nbd-outage.sh — the remote backing goes away and comes back
# while nbdcached serves it: what the driver promises, seen by a client and
# by `nbdcache stats`.
#
# The remote is nbdkit's file plugin, started by a small launcher that
# binds its Unix socket first and hands it over by socket activation (so
# it is listening before anything connects, and it can be killed and
# started again at will).  nbdcached serves it in writeback mode with
# backing_timeout = 3.  Inside nbdcached's --run:
#   1. 8 MiB written (dirty in the cache); stats: "connected";
#   2. the remote is killed (SIGKILL): a read of cached data still works,
#      a read of uncached data fails with EIO after the timeout (not
#      before 2.5 s, not after 10 s) and the client's connection lives;
#      stats: "disconnected since …";
#   3. the remote is started again: the uncached read works, `nbdcache
#      flush` writes the dirty data back, stats: "connected" with
#      reconnect attempts counted;
# and afterwards the remote's file equals the data byte for byte.
set -e
. "${srcdir:-.}/functions.sh"
requires nbdkit cmp
requires_python
requires_python_nbd
nbdcached_only

NBDCACHE_TOOL=$(abspath "${NBDCACHE_TOOL:-$top_builddir/admin/nbdcache}")
tmp=$(make_tmpdir)
random_file "$tmp/src" 8M
truncate -s 32M "$tmp/remote.img"
on_exit 'kill -9 $(cat "$tmp/remote.pid" 2>/dev/null) 2>/dev/null || :'
launch=$(abspath "${srcdir:-.}/remote-launch.py")

cat > "$tmp/start-remote.sh" <<EOF
exec "$PYTHON" "$launch" "$tmp/remote.sock" "$tmp/remote.log" \
  --filter=delay file "$tmp/remote.img" rdelay=1ms wdelay=1ms
EOF

# client.py URI STEP: the client's view in steps 2 and 3.
cat > "$tmp/client.py" <<'EOF'
import nbd, sys, time
uri, step = sys.argv[1], sys.argv[2]
data = open(sys.argv[3], "rb").read()
h = nbd.NBD()
h.connect_uri(uri)
if h.pread(65536, 4096) != data[4096:4096 + 65536]:
    sys.exit("cached read: wrong data")
t0 = time.monotonic()
if step == "down":
    try:
        h.pread(4096, 24 << 20)
        sys.exit("uncached read with the remote down succeeded")
    except nbd.Error as e:
        took = time.monotonic() - t0
        if e.errnum != 5:
            sys.exit("uncached read: %s, expected EIO" % e)
        if not 2.5 <= took <= 10:
            sys.exit("uncached read failed after %.1f s, expected ~3" % took)
        print("down: uncached read failed with EIO after %.1f s" % took)
    if h.pread(4096, 0) != data[:4096]:
        sys.exit("cached read after the failure: wrong data")
else:
    if h.pread(4096, 24 << 20) != bytes(4096):
        sys.exit("uncached read after the restart: wrong data")
    print("up: uncached read worked after %.1f s" % (time.monotonic() - t0))
h.shutdown()
EOF

cat > "$tmp/steps.sh" <<EOF
set -e
stats () { "$NBDCACHE_TOOL" stats --socket "$tmp/ctl" remote > "$tmp/stats-\$1"; }
nbdcopy "$tmp/src" "\$uri"
stats 1
kill -9 \$(cat "$tmp/remote.pid")
"$PYTHON" "$tmp/client.py" "\$uri" down "$tmp/src"
stats 2
sh "$tmp/start-remote.sh"
"$PYTHON" "$tmp/client.py" "\$uri" up "$tmp/src"
"$NBDCACHE_TOOL" flush --socket "$tmp/ctl" remote
stats 3
EOF

cat > "$tmp/c.conf" <<EOF
[server]
log = stderr
control_socket = $tmp/ctl

[cache ssd]
path = $tmp/cache.img
size = 64M
create = yes
direct = no

[export remote]
backing = nbd+unix:///?socket=$tmp/remote.sock
backing_timeout = 3
cache = ssd
mode = writeback
sequential_cutoff = 0
EOF

sh "$tmp/start-remote.sh"
run_server nbdcached "$tmp/c.conf" remote -- "sh '$tmp/steps.sh'" ||
  die "the outage scenario failed"

grep -E '^  backing .*: connected \(([0-9]+) of \1 connections up\)$' \
  "$tmp/stats-1" || die "stats before: not connected: $(cat "$tmp/stats-1")"
grep -E '^  backing .*: disconnected since [0-9]{4}-' "$tmp/stats-2" ||
  die "stats during the outage: $(cat "$tmp/stats-2")"
# (Some of the connections may still be waiting for their next attempt.)
grep -E '^  backing .*: connected \([1-9][0-9]* of [0-9]+ connections up\)$' \
  "$tmp/stats-3" || die "stats after: not connected: $(cat "$tmp/stats-3")"
grep -E '^  remote +[1-9][0-9]* reconnect attempts' "$tmp/stats-3" ||
  die "stats after: no reconnect attempts counted: $(cat "$tmp/stats-3")"
head -c 8M "$tmp/remote.img" | cmp - "$tmp/src" ||
  die "the remote's content differs from the data after the flush"
echo "remote lost and back: cached reads served, EIO after the timeout," \
     "flushed to the restarted remote, stats followed"
