#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# test-units.sh — systemd-analyze verify accepts nbdcached.service and
# nbdcached.socket, as built (paths substituted).
#
# verify insists that ExecStart= names an executable that exists, so the
# units are checked as copies whose ExecStart points at the nbdcached of
# this build.  The tmpfiles.d entry is applied by systemd-tmpfiles under a
# root directory of the test's own (nothing outside it is touched).
set -euo pipefail

: "${srcdir:=$(dirname "$0")}"
: "${NBDCACHED:?NBDCACHED: the nbdcached to test}"
for tool in systemd-analyze systemd-tmpfiles; do
  if ! command -v "$tool" >/dev/null; then
    echo "SKIP: $tool is not installed (apt-get install systemd)"
    exit 77
  fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test-units.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

sbindir=$(sed -n 's|^ExecStart=\(.*\)/nbdcached .*|\1|p' nbdcached.service)
[ -n "$sbindir" ] || { echo "FAIL: no ExecStart in nbdcached.service"; exit 1; }
sed "s|^ExecStart=$sbindir/nbdcached |ExecStart=$NBDCACHED |" \
  nbdcached.service > "$tmp/nbdcached.service"
cp "$srcdir/nbdcached.socket" "$tmp/nbdcached.socket"

# Every warning is a failure: verify prints them but exits 0 for some.
out=$(cd "$tmp" && systemd-analyze verify --man=no \
        ./nbdcached.service ./nbdcached.socket 2>&1) || {
  printf '%s\n' "$out"
  echo "FAIL: systemd-analyze verify"
  exit 1
}
if [ -n "$out" ]; then
  printf '%s\n' "$out"
  echo "FAIL: systemd-analyze verify printed warnings"
  exit 1
fi
echo "systemd-analyze verify: nbdcached.service and nbdcached.socket are clean"

# The hardening the unit promises (issue 13): present, not just valid.
for key in Type=notify ProtectSystem=strict PrivateTmp=yes NoNewPrivileges=yes \
           CapabilityBoundingSet= RuntimeDirectory=nbdcached \
           StateDirectory=nbdcached; do
  grep -q "^$key" nbdcached.service ||
    { echo "FAIL: nbdcached.service lacks $key"; exit 1; }
done

# The tmpfiles.d entry: created under a root of our own.
mkdir "$tmp/root"
systemd-tmpfiles --root="$tmp/root" --create "$PWD/nbdcached.conf"
[ -d "$tmp/root/run/nbdcached" ] && [ -d "$tmp/root/var/lib/nbdcached" ] ||
  { echo "FAIL: systemd-tmpfiles did not create the directories"; exit 1; }
echo "tmpfiles.d entry: OK"
