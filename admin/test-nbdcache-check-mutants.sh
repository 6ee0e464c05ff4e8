#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# test-nbdcache-check-mutants.sh — the metadata-mutation tally, with
# nbdcache check on every mutant.
#
# WHAT: runs common/cache/test-mutants (a cache with dirty data and
# pending journal entries; N seeded mutants per region, checksums kept
# and recomputed; each must be refused, served right or answered with
# EIO, never served wrong) with NBDCACHE pointing at the nbdcache binary,
# so each mutant is also checked: check must never say clean while wrong
# metadata would be served, and must never change the image.  The test
# prints the seed and the tally (NBDCACHE_SEED replays a run,
# NBDCACHE_MUTANTS sets N).
# HOW: run by "make check" in admin/ with NBDCACHE and TEST_MUTANTS set
# (test-mutants is built by "make check" in common/cache, which runs
# first; skipped, 77, if it is not built).
set -u
: "${NBDCACHE:=./nbdcache}"
: "${TEST_MUTANTS:=../common/cache/test-mutants}"

if [ ! -x "$NBDCACHE" ]; then
    echo "$0: $NBDCACHE not built" >&2
    exit 1
fi
if [ ! -x "$TEST_MUTANTS" ]; then
    echo "$0: $TEST_MUTANTS not built; skipping" >&2
    exit 77
fi
case $NBDCACHE in
    /*) ;;
    *) NBDCACHE=$PWD/$NBDCACHE ;;
esac
NBDCACHE=$NBDCACHE exec "$TEST_MUTANTS"
