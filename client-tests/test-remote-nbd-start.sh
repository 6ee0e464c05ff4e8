#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-remote-nbd-start.sh — nbdcached starting while its remote backing
# is not there (yet): it retries for backing_timeout, then refuses with a
# message naming the export, the URI and the timeout; it never hangs.
#
#   1. nothing listens at the remote's socket, backing_timeout = 2: the
#      start fails after the retries (not before 1 s, not after 15 s), the
#      message names export 'remote', the URI and backing_timeout;
#   2. a socket that listens but never answers the handshake: the start
#      fails at the timeout (the old code hung here forever);
#   3. the remote is started while nbdcached retries (once its "retrying"
#      warning is out), backing_timeout = 60: nbdcached comes up and
#      serves the remote's data.
set -e
. "${srcdir:-.}/functions.sh"
requires nbdkit nbdinfo
requires_python
nbdcached_only

tmp=$(make_tmpdir)
on_exit 'kill -9 $(cat "$tmp/remote.pid" 2>/dev/null) 2>/dev/null || :'
launch=$(abspath "${srcdir:-.}/remote-launch.py")
random_file "$tmp/remote.img" 1M

conf () {
  cat <<EOF
[server]
log = stderr

[cache ssd]
path = $tmp/cache.img
size = 16M
create = yes
direct = no

[export remote]
backing = nbd+unix:///?socket=$tmp/remote.sock
backing_timeout = $1
cache = ssd
mode = writeback
EOF
}
conf 2 > "$tmp/short.conf"
conf 60 > "$tmp/long.conf"

cat > "$tmp/start.py" <<'EOF'
import os, socket, subprocess, sys, time
nbdcached, tmp, launch, python = sys.argv[1:5]
sock = os.path.join(tmp, "remote.sock")
uri = "nbd+unix:///?socket=" + sock

def run(conf, on_line=None, run="true"):
    t0 = time.monotonic()
    p = subprocess.Popen([nbdcached, "-f", "-c", os.path.join(tmp, conf),
                          "-U", os.path.join(tmp, "s"), "-e", "remote",
                          "--run", run],
                         stderr=subprocess.PIPE, text=True)
    err = []
    for line in p.stderr:
        sys.stderr.write(line)
        err.append(line)
        if on_line:
            on_line(line)
    try:
        rc = p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        sys.exit("%s: nbdcached did not exit" % conf)
    return rc, time.monotonic() - t0, "".join(err)

def refused(what, err, took):
    for want in ("export 'remote'", uri, "backing_timeout"):
        if want not in err:
            sys.exit("%s: the message does not name %r" % (what, want))
    if not 1 <= took <= 15:
        sys.exit("%s: refused after %.1f s, expected ~2" % (what, took))
    print("%s: refused after %.1f s" % (what, took))

# 1. Nothing there.
rc, took, err = run("short.conf")
if rc == 0:
    sys.exit("started with nothing listening at the remote")
refused("nothing listening", err, took)

# 2. A socket nobody serves.  (Old code: hangs; the 30 s wait fails it.)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sock)
s.listen(16)
rc, took, err = run("short.conf")
if rc == 0:
    sys.exit("started against a remote that never answers")
refused("silent remote", err, took)
s.close()
os.unlink(sock)

# 3. The remote comes up while nbdcached retries.
started = []
def start_remote(line):
    if "retrying" in line and not started:
        subprocess.check_call([python, launch, sock,
                               os.path.join(tmp, "remote.log"), "file",
                               os.path.join(tmp, "remote.img")])
        started.append(1)
rc, took, err = run("long.conf", start_remote,
                    'test "$(nbdinfo --size "$uri")" = 1048576')
if not started:
    sys.exit("no 'retrying' warning while the remote was down")
if rc != 0:
    sys.exit("did not come up once the remote started (exit %d)" % rc)
print("remote started late: nbdcached came up after %.1f s" % took)
EOF

"$PYTHON" "$tmp/start.py" "$NBDCACHED" "$tmp" "$launch" "$PYTHON" ||
  die "starting with the remote down"
echo "remote down at start: retried for backing_timeout, refused clearly," \
     "came up when the remote did"
