#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# test-pod.sh — every manual page is valid POD, without warnings, and
# converts cleanly.
#
# Run by "make check" in man/ with srcdir and PODFILES set.  Fails (exit 1)
# on any podchecker error or warning; skips (77) only if podchecker itself
# is missing, which cannot happen where pod2man (required by configure)
# is installed.
set -u
: "${srcdir:=.}"
: "${PODFILES:=nbdcached.8.pod nbdcached.conf.5.pod nbdkit-nbdcache-plugin.1.pod}"

if ! command -v podchecker >/dev/null 2>&1; then
    echo "$0: podchecker not found" >&2
    exit 77
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test-pod.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

status=0
for pod in $PODFILES; do
    f="$srcdir/$pod"
    if [ ! -f "$f" ]; then
        echo "FAIL: $f: missing" >&2
        status=1
        continue
    fi
    if ! podchecker -warnings -warnings "$f" >"$tmp/out" 2>&1; then
        cat "$tmp/out" >&2
        echo "FAIL: $f: podchecker found errors" >&2
        status=1
    elif grep -q 'WARNING' "$tmp/out"; then
        cat "$tmp/out" >&2
        echo "FAIL: $f: podchecker warnings" >&2
        status=1
    else
        echo "ok: $f"
    fi
done
exit $status
