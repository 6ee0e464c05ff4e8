#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# test-notify.sh — nbdcached tells a service manager when it is ready and
# when it stops (nbdcached.service is Type=notify).
#
# notify-listen.py plays systemd: it owns the NOTIFY_SOCKET, starts
# nbdcached in the foreground on a private Unix socket, and checks that
# READY=1 arrives, that the listener accepts an NBD connection at that
# moment, and that SIGTERM brings STOPPING=1 and exit status 0.
set -euo pipefail

: "${srcdir:=$(dirname "$0")}"
: "${NBDCACHED:?NBDCACHED: the nbdcached to test}"
python=/usr/bin/python3
if [ ! -x "$python" ]; then
  echo "SKIP: $python is not installed"
  exit 77
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test-notify.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

truncate -s 16M "$tmp/disk.img"
cat > "$tmp/n.conf" <<CONF
[server]
listen = unix:$tmp/sock

[export disk]
backing = $tmp/disk.img
CONF

"$python" "$srcdir/notify-listen.py" "$tmp" "$tmp/sock" -- \
  "$NBDCACHED" -f -c "$tmp/n.conf"
