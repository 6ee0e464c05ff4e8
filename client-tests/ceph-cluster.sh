# SPDX-License-Identifier: BSD-3-Clause
# ceph-cluster.sh — a throwaway single-node Ceph cluster for the RBD tests.
#
# WHAT: ceph_cluster_start DIR starts one monitor and one OSD (memstore,
# 1 GiB of RAM at most) on 127.0.0.1 at a free port, everything (config,
# data, logs, sockets, pid files) under DIR, creates the pool "rbd" with one
# replica, and exports CEPH_CONF=DIR/ceph.conf so that librados, `ceph` and
# `rbd` find it.  The cluster is stopped when the test exits (on_exit).
# ceph_cluster_stop stops it earlier.  `cephq ARGS…` and `rbdq ARGS…` run
# `ceph` / `rbd` under a timeout (without a ceph-mgr some ceph commands
# hang forever).  CEPH_OBJECTSTORE=bluestore (set before the start) keeps
# the OSD's data in a sparse file under DIR instead of RAM, so that
# ceph_daemon_kill / ceph_daemon_start can stop a daemon (mon.a, osd.0)
# and start it again with its data (memstore loses it when the OSD stops).
# WHY: the rbd:POOL/IMAGE backing must be tested against real librbd and
# OSDs; Debian 12's Ceph (Pacific) runs offline on loopback as root or not.
#
# Sourced by bash tests AFTER functions.sh (uses die, skip, on_exit).
# Skips (77) if the Ceph packages are missing.  ~15–35 s to a usable pool.
# NOT HERE: images (the tests create their own with `rbdq create`).

CEPH_TIMEOUT_S=${CEPH_TIMEOUT_S:-60}

cephq ()
{
  [ -n "$CEPH_CONF" ] || die "cephq: CEPH_CONF is unset (no cluster started)"
  timeout "$CEPH_TIMEOUT_S" ceph --connect-timeout 30 "$@"
}

rbdq ()
{
  [ -n "$CEPH_CONF" ] || die "rbdq: CEPH_CONF is unset (no cluster started)"
  timeout "$CEPH_TIMEOUT_S" rbd "$@"
}

# A TCP port on 127.0.0.1 that nothing listens on now.
_ceph_free_port ()
{
  /usr/bin/python3 -c '
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

_ceph_write_conf ()
{
  local d=$1 port=$2
  cat > "$d/ceph.conf" <<EOF
[global]
fsid = $(uuidgen)
mon host = 127.0.0.1:$port
auth cluster required = none
auth service required = none
auth client required = none
public network = 127.0.0.0/8
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
osd crush chooseleaf type = 0
osd pool default pg autoscale mode = off
mon data avail warn = 1
run dir = $d
admin socket = \$run_dir/\$name.\$pid.asok
log file = $d/\$name.log
pid file = $d/\$name.pid

[mon.a]
public addr = 127.0.0.1:$port
mon data = $d/mon.a

[osd]
osd data = $d/osd.\$id
osd memory target = 1073741824
EOF
  case ${CEPH_OBJECTSTORE:-memstore} in
    memstore) cat >> "$d/ceph.conf" <<EOF
osd objectstore = memstore
memstore device bytes = 1073741824
EOF
      ;;
    bluestore) cat >> "$d/ceph.conf" <<EOF
osd objectstore = bluestore
bluestore block create = true
bluestore block size = 4294967296
bluestore block path = $d/osd.\$id.block
EOF
      ;;
    *) die "CEPH_OBJECTSTORE: memstore or bluestore, not $CEPH_OBJECTSTORE" ;;
  esac
}

# ceph_daemon_kill NAME: SIGKILL a daemon of the cluster (mon.a, osd.0),
# and wait until it is gone.
ceph_daemon_kill ()
{
  local d=${_ceph_dir:?no cluster} pid i
  pid=$(cat "$d/$1.pid") || die "ceph_daemon_kill: no $d/$1.pid"
  kill -KILL "$pid" 2>/dev/null || die "ceph_daemon_kill: $1 is not running"
  for (( i = 0; i < 100; i++ )); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  rm -f "$d/$1.pid"
}

# ceph_daemon_start NAME: start a daemon again (mon.a, osd.N) on its data.
ceph_daemon_start ()
{
  local type=${1%%.*} id=${1#*.}
  [ -n "${_ceph_dir:-}" ] || die "ceph_daemon_start: no cluster"
  case $type in
    mon) timeout 60 ceph-mon --id "$id" ;;
    osd) timeout 60 ceph-osd -i "$id" ;;
    *) die "ceph_daemon_start: mon.ID or osd.ID, not $1" ;;
  esac || die "ceph_daemon_start: $1 did not start"
}

ceph_cluster_stop ()
{
  local d=${_ceph_dir:-} f pid i
  [ -n "$d" ] || return 0
  _ceph_dir=
  for f in "$d"/*.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f") || continue
    kill -TERM "$pid" 2>/dev/null || continue
    # ceph-osd takes a few seconds on SIGTERM; then be firm.
    for (( i = 0; i < 100; i++ )); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  done
}

ceph_cluster_start ()
{
  local d=$1 port uuid id attempt
  command -v ceph-mon >/dev/null && command -v ceph-osd >/dev/null &&
    command -v ceph >/dev/null && command -v rbd >/dev/null &&
    command -v uuidgen >/dev/null ||
    skip "Ceph not installed (apt-get install --no-install-recommends ceph-mon ceph-osd ceph-common)"
  mkdir -p "$d" || die "cannot create $d"
  d=$(cd "$d" && pwd)
  export CEPH_CONF=$d/ceph.conf
  _ceph_dir=$d
  on_exit ceph_cluster_stop

  # The port may be taken between the probe and the bind: retry.
  for attempt in 1 2 3; do
    port=$(_ceph_free_port) || die "no free port"
    rm -rf "$d/mon.a"
    _ceph_write_conf "$d" "$port"
    timeout 60 ceph-mon --id a --mkfs > "$d/mkfs.out" 2>&1 ||
      die "ceph-mon --mkfs failed: $(cat "$d/mkfs.out")"
    timeout 60 ceph-mon --id a && break
    echo "$0: ceph-mon did not start on port $port (attempt $attempt)" >&2
  done
  [ -f "$d/mon.a.pid" ] || die "ceph-mon did not start; see $d/mon.a.log"

  uuid=$(uuidgen)
  id=$(cephq osd new "$uuid") || die "ceph osd new failed"
  mkdir -p "$d/osd.$id"
  timeout 60 ceph-osd -i "$id" --mkfs --osd-uuid "$uuid" \
    > "$d/osd-mkfs.out" 2>&1 ||
    die "ceph-osd --mkfs failed: $(cat "$d/osd-mkfs.out")"
  timeout 60 ceph-osd -i "$id" || die "ceph-osd did not start"

  cephq osd pool create rbd 8 8 >/dev/null 2>&1 ||
    die "ceph osd pool create failed"
  cephq osd pool set rbd size 1 --yes-i-really-mean-it >/dev/null 2>&1 ||
    die "ceph osd pool set size failed"
  # Waits for the OSD to serve the pool's placement groups.
  rbdq pool init rbd || die "rbd pool init failed (see $d/*.log)"
}
