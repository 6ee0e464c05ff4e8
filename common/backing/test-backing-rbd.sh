#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-backing-rbd.sh — runs test-backing-rbd (the RBD driver's unit tests)
# against a throwaway single-node Ceph cluster started here and stopped at
# exit (client-tests/ceph-cluster.sh): two empty 64 MiB images, one the
# tests write freely, one only the extents test writes (sparse).
set -e
: "${srcdir:=.}"
: "${top_srcdir:=$srcdir/../..}"
: "${top_builddir:=../..}"
export top_srcdir top_builddir
test_dir=$(pwd)
. "$top_srcdir/client-tests/functions.sh"
. "$top_srcdir/client-tests/ceph-cluster.sh"

tmp=$(make_tmpdir)
ceph_cluster_start "$tmp/ceph"
rbdq create rbd/unit --size 64M
rbdq create rbd/sparse --size 64M

# The outage test freezes the OSD (SIGSTOP) and thaws it; never leave it
# frozen.
osd_pid=$(cat "$tmp/ceph/osd.0.pid") || die "no OSD pid"
on_exit "kill -CONT $osd_pid 2>/dev/null || :"
NBDCACHE_TEST_RBD_OSD_PID=$osd_pid \
NBDCACHE_TEST_RBD_IMAGE=rbd:rbd/unit \
NBDCACHE_TEST_RBD_SPARSE=rbd:rbd/sparse \
  "$test_dir/test-backing-rbd" || die "test-backing-rbd failed"

# The data reached Ceph: the rbd CLI reads what the driver's last test
# wrote at the image's end (64 MiB - 4 KiB, a FUA write then flush).
rbdq export rbd/unit "$tmp/unit.img" >/dev/null 2>&1 ||
  die "rbd export failed"
[ "$(stat -c %s "$tmp/unit.img")" -eq $((64 << 20)) ] ||
  die "rbd export: wrong size"
tail -c 4096 "$tmp/unit.img" | cmp -s - <(head -c 4096 /dev/zero) &&
  die "rbd export: the driver's last write is not in Ceph"
exit 0
