#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-reload-tls.sh — a reload re-reads the TLS certificate, key, CA and
# PSK file: new handshakes use the new ones, sessions already up keep
# theirs.
#
# WHAT: nbdcached serves "disk" over TCP with tls = require, a
# certificate directory S (server certificate of CA "A") and a PSK file
# (alice, key 1).  A Python client (libnbd, which verifies the server's
# certificate over TCP) checks:
#  1. before: a client trusting CA A connects (and keeps its session
#     open, with a pattern written); one trusting only CA B is refused;
#     PSK key 1 works, key 2 does not;
#  2. the files in S are replaced by CA B's server certificate and key and
#     the PSK file by key 2 (same paths: the config does not change), then
#     `nbdcache reload`: exit 0;
#  3. after: a client trusting CA B connects, one trusting only CA A is
#     refused (the new certificate is served); PSK key 2 works, key 1 does
#     not; the session opened before still reads its pattern and writes;
#  4. a broken rotation (a server key that is not a key): reload exits 1
#     naming the file, and new clients still get the working certificate
#     of step 2.
# WHY: issue 12 §3: certificates are rotated without a restart.
# HOW: captive mode, TCP on an ephemeral port; nbdcached only (nbdkit
# has no reload).
set -e
. "${srcdir:-.}/functions.sh"
requires openssl
requires_python
requires_python_nbd
nbdcached_only

NBDCACHE_TOOL=$(abspath "${NBDCACHE_TOOL:-$top_builddir/admin/nbdcache}")
[ -x "$NBDCACHE_TOOL" ] || die "nbdcache is not built: $NBDCACHE_TOOL"
export NBDCACHE_TOOL

tmp=$(make_tmpdir)
make_x509_certs "$tmp/A"
make_x509_certs "$tmp/B"
mkdir "$tmp/S"
cp -p "$tmp/A/ca-cert.pem" "$tmp/A/server-cert.pem" "$tmp/A/server-key.pem" \
  "$tmp/S/"
make_psk "$tmp/psk1" alice > /dev/null
make_psk "$tmp/psk2" alice > /dev/null
cp -p "$tmp/psk1" "$tmp/psk"
truncate -s 8M "$tmp/disk.img"
cat > "$tmp/c.conf" <<EOF
[server]
log = stderr
workers = 4
control_socket = $tmp/ctl.sock
tls = require
tls_certificates = $tmp/S
tls_psk_file = $tmp/psk

[export disk]
backing = $tmp/disk.img
EOF

cat > "$tmp/tls.py" <<'EOF'
import os, shutil, subprocess, sys
import nbd

tmp = sys.argv[1]
port = int(os.environ["port"])
tool = os.environ["NBDCACHE_TOOL"]
M = 1 << 20
fails = 0

def check(cond, what):
    global fails
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        fails += 1

def x509(trust):
    """A session verifying the server against trust's CA, or None."""
    h = nbd.NBD()
    h.set_tls(nbd.TLS_REQUIRE)
    h.set_tls_certificates(trust)
    h.set_export_name("disk")
    try:
        h.connect_tcp("localhost", str(port))
        return h
    except nbd.Error as e:
        print("     (%s: %s)" % (os.path.basename(os.path.dirname(trust)), e))
        return None

def psk(path):
    h = nbd.NBD()
    h.set_tls(nbd.TLS_REQUIRE)
    h.set_tls_psk_file(path)
    h.set_tls_username("alice")
    h.set_export_name("disk")
    try:
        h.connect_tcp("localhost", str(port))
        h.pread(512, 0)
        h.shutdown()
        return True
    except nbd.Error as e:
        print("     (%s: %s)" % (os.path.basename(path), e))
        return False

def reload():
    p = subprocess.run([tool, "reload", "--socket", tmp + "/ctl.sock"],
                       capture_output=True, text=True, timeout=120)
    print("nbdcache reload: exit %d\n--- stdout\n%s--- stderr\n%s---"
          % (p.returncode, p.stdout, p.stderr), flush=True)
    return p

A, B = tmp + "/A/client-none", tmp + "/B/client-none"

# 1. Before.
old = x509(A)
check(old is not None, "before: a client trusting CA A connects")
if old is None:
    sys.exit(1)
old.pwrite(b"\x5a" * M, 0)
old.flush()
check(x509(B) is None, "before: a client trusting only CA B is refused")
check(psk(tmp + "/psk1"), "before: PSK key 1 works")
check(not psk(tmp + "/psk2"), "before: PSK key 2 is refused")

# 2. Rotate in place.
for f in ("ca-cert.pem", "server-cert.pem", "server-key.pem"):
    shutil.copy(tmp + "/B/" + f, tmp + "/S/" + f)
shutil.copy(tmp + "/psk2", tmp + "/psk")
p = reload()
check(p.returncode == 0, "rotation: reload exits 0")
check("TLS certificates, keys and PSK file re-read" in p.stdout,
      "rotation: the report says the TLS files were re-read")

# 3. After.
h = x509(B)
check(h is not None, "after: a client trusting CA B connects")
if h is not None:
    h.shutdown()
check(x509(A) is None, "after: a client trusting only CA A is refused")
check(psk(tmp + "/psk2"), "after: PSK key 2 works")
check(not psk(tmp + "/psk1"), "after: PSK key 1 is refused")
check(old.pread(M, 0) == b"\x5a" * M,
      "the session opened before still reads")
old.pwrite(b"\xa5" * M, M)
old.flush()
check(old.pread(M, M) == b"\xa5" * M, "the session opened before still writes")

# 4. A broken rotation changes nothing.
with open(tmp + "/S/server-key.pem", "w") as f:
    f.write("not a key\n")
p = reload()
check(p.returncode == 1, "broken key: reload exits 1")
check("server-key.pem" in p.stderr, "broken key: the file is named")
h = x509(B)
check(h is not None, "broken key: new clients still get the working "
      "certificate")
if h is not None:
    h.shutdown()
old.shutdown()
sys.exit(1 if fails else 0)
EOF

run_server nbdcached "$tmp/c.conf" disk -l 127.0.0.1:0 -- \
  "'$PYTHON' '$tmp/tls.py' '$tmp'" || die "TLS reload failed"
