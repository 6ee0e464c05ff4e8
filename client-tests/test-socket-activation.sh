#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-socket-activation.sh — systemd socket activation: libnbd's
# "[ CMD … ]" syntax starts the server with LISTEN_PID/LISTEN_FDS=1 and a
# listening socket on fd 3.  The server must serve that socket (not its
# [server] listen addresses), in the foreground: nbdinfo sees the export,
# nbdcopy writes data in and reads it back through two separate servers.
set -e
. "${srcdir:-.}/functions.sh"
requires nbdinfo nbdcopy cmp pgrep
requires_python                 # /usr/bin/python3 parses the JSON

tmp=$(make_tmpdir)
random_file "$tmp/src" 4M

for kind in $(server_kinds); do
  echo "==== $kind ====" >&2
  rm -f "$tmp/disk.img" "$tmp/out" "$tmp/listen.sock"
  write_config "$tmp/c.conf" "$tmp/disk.img" 4M
  # A listen address that socket activation must ignore.
  sed -i "s|^\[server\]$|[server]\nlisten = unix:$tmp/listen.sock|" "$tmp/c.conf"
  mapfile -t argv < <(server_stdio_argv "$kind" "$tmp/c.conf" disk | grep -vx -- -s)
  [ ${#argv[@]} -gt 0 ] || die "[$kind] no server command"
  echo "+ [ ${argv[*]} ]" >&2

  nbdinfo --json -- [ "${argv[@]}" ] > "$tmp/info.json" ||
    die "[$kind] nbdinfo over socket activation"
  "$PYTHON" -c '
import json, sys
e = json.load(open(sys.argv[1]))["exports"][0]
print("export-size", e["export-size"])
sys.exit(0 if e["export-size"] == 4 * 1024 * 1024 else 1)
' "$tmp/info.json" || die "[$kind] wrong export size"

  nbdcopy "$tmp/src" -- [ "${argv[@]}" ] ||
    die "[$kind] nbdcopy into a socket-activated server"
  nbdcopy -- [ "${argv[@]}" ] "$tmp/out" ||
    die "[$kind] nbdcopy out of a socket-activated server"
  cmp "$tmp/src" "$tmp/out" || die "[$kind] data read back differs"
  cmp "$tmp/src" "$tmp/disk.img" || die "[$kind] backing file differs"

  [ ! -e "$tmp/listen.sock" ] ||
    die "[$kind] listened on [server] listen despite socket activation"
  # Foreground: libnbd reaped its server; a daemonized copy would linger.
  if pids=$(pgrep -f -- "$tmp/c.conf"); then
    die "[$kind] server processes left behind (daemonized?): $pids"
  fi
  echo "[$kind] socket activation OK"
done
