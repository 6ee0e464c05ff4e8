#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# test-default-config.sh — the installed /etc/nbdcached.conf serves nothing
# until an export is added, and an export added as a file of
# nbdcached.conf.d/ makes it a valid configuration.
set -euo pipefail

: "${srcdir:=$(dirname "$0")}"
: "${NBDCACHED:?NBDCACHED: the nbdcached to test}"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test-default-config.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# The runtime directory is systemd's (RuntimeDirectory=, tmpfiles.d):
# point it into the scratch directory, since --check-config checks that
# the directories of the sockets exist.
mkdir "$tmp/run"
sed "s|/run/nbdcached/|$tmp/run/|g" "$srcdir/nbdcached.conf" \
  > "$tmp/nbdcached.conf"
grep -q "$tmp/run/" "$tmp/nbdcached.conf" ||
  { echo "FAIL: the default config names no /run/nbdcached/ path"; exit 1; }

# As installed: refused, with the reason.
if "$NBDCACHED" --check-config "$tmp/nbdcached.conf" > "$tmp/out" 2>&1; then
  cat "$tmp/out"
  echo "FAIL: the default config is accepted with no export"
  exit 1
fi
cat "$tmp/out"
grep -qF "$tmp/nbdcached.conf:1: no [export NAME] section: nothing to serve" \
  "$tmp/out" || { echo "FAIL: not the expected refusal"; exit 1; }

# An export in nbdcached.conf.d/: valid.
mkdir "$tmp/nbdcached.conf.d"
truncate -s 1M "$tmp/disk0.img"
printf '[export disk0]\nbacking = ../disk0.img\n' \
  > "$tmp/nbdcached.conf.d/disk0.conf"
"$NBDCACHED" --check-config "$tmp/nbdcached.conf"
