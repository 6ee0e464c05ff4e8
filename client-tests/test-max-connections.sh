#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-max-connections.sh — max_connections = 2 on an export: two clients
# connect, a third is refused with a clear error while they are connected,
# and once one leaves a new client gets in.  Both front ends enforce it.
set -e
. "${srcdir:-.}/functions.sh"
requires_python_nbd

tmp=$(make_tmpdir)
cat > "$tmp/c.conf" <<EOF
[export limited]
backing = $tmp/limited.img
size = 1M
max_connections = 2
EOF

cat > "$tmp/check.py" <<'EOF'
import os, sys
import nbd

uri = os.environ["uri"]

def connect():
    h = nbd.NBD()
    h.connect_uri(uri)
    return h

a = connect()
b = connect()
try:
    c = connect()
    print("FAIL: a third connection was accepted with max_connections = 2")
    sys.exit(1)
except nbd.Error as ex:
    print("third connection refused as expected: %s" % ex)
# The two connected clients still work.
a.pwrite(b"x" * 512, 0)
assert b.pread(512, 0) == b"x" * 512
a.shutdown()
del a
# A slot is free again: a new client gets in.
c = connect()
assert c.pread(512, 0) == b"x" * 512
c.shutdown()
b.shutdown()
print("max_connections enforced: OK")
EOF

for kind in $(server_kinds); do
  run_server "$kind" "$tmp/c.conf" limited -- \
    "/usr/bin/python3 $tmp/check.py" ||
    die "[$kind] max_connections"
  echo "[$kind] max_connections = 2: OK"
done
