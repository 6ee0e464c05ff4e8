#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-single.sh — single-connection mode (-s): the server speaks NBD on
# stdin/stdout, serves that one connection, then exits 0.  Driven by libnbd:
# nbdsh with h.connect_command (the way libnbd users start a server), and a
# Python socketpair so the server's exit status can be checked.  nbdcached
# must also ignore the [server] listen addresses in this mode.
set -e
. "${srcdir:-.}/functions.sh"
requires nbdsh
requires_python_nbd

tmp=$(make_tmpdir)

for kind in $(server_kinds); do
  echo "==== $kind ====" >&2
  rm -f "$tmp/disk.img" "$tmp/listen.sock"
  write_config "$tmp/c.conf" "$tmp/disk.img" 4M
  # A listen address that -s must ignore (nbdcached reads [server]).
  sed -i "s|^\[server\]$|[server]\nlisten = unix:$tmp/listen.sock|" "$tmp/c.conf"
  server_stdio_argv "$kind" "$tmp/c.conf" disk > "$tmp/argv"
  echo "+ $(tr '\n' ' ' < "$tmp/argv")" >&2

  # 1. nbdsh + connect_command: write, flush, read back.
  ARGV_FILE=$tmp/argv nbdsh -c '
import os
argv = open(os.environ["ARGV_FILE"]).read().splitlines()
h.set_export_name("disk")
h.connect_command(argv)
assert h.get_size() == 4 * 1024 * 1024, h.get_size()
buf = b"single-connection mode " * 100
h.pwrite(buf, 4096)
h.flush()
assert h.pread(len(buf), 4096) == buf
h.shutdown()
' || die "[$kind] nbdsh connect_command"
  "$PYTHON" -c '
import sys
buf = b"single-connection mode " * 100
with open(sys.argv[1], "rb") as f:
    f.seek(4096)
    sys.exit(0 if f.read(len(buf)) == buf else 1)
' "$tmp/disk.img" || die "[$kind] the write is not on the backing file"

  # 2. a socketpair: one connection served, then the server exits 0.
  "$PYTHON" - "$tmp/argv" <<'EOF' || die "[$kind] -s exit status"
import socket, subprocess, sys
import nbd
argv = open(sys.argv[1]).read().splitlines()
mine, theirs = socket.socketpair()
p = subprocess.Popen(argv, stdin=theirs, stdout=theirs)
theirs.close()
h = nbd.NBD()
h.set_export_name("disk")
h.connect_socket(mine.detach())   # libnbd owns the fd now
assert h.pread(512, 4096)[:6] == b"single"
h.shutdown()
try:
    rc = p.wait(timeout=60)
except subprocess.TimeoutExpired:
    p.kill()
    print("FAIL: still running 60 s after its only client left")
    sys.exit(1)
print("exit status", rc)
sys.exit(0 if rc == 0 else 1)
EOF
  [ ! -e "$tmp/listen.sock" ] || die "[$kind] -s listened on [server] listen"
  echo "[$kind] single-connection mode OK"
done
