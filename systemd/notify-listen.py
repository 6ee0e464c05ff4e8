#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
# notify-listen.py — play systemd's side of sd_notify for one nbdcached.
#
# Usage: notify-listen.py DIR UNIXSOCK -- NBDCACHED-ARGV…
# Binds DIR/notify (a Unix datagram socket), starts NBDCACHED-ARGV with
# NOTIFY_SOCKET pointing there, and waits (at most 60 s) for READY=1.  At
# that moment the server must accept on UNIXSOCK: the script connects and
# reads the NBD greeting ("NBDMAGIC").  Then it sends SIGTERM, expects
# STOPPING=1 and the server's exit status 0.  Prints each message; exits 0
# only if everything happened in that order.
import os
import signal
import socket
import subprocess
import sys

TIMEOUT_S = 60


def fail(msg, proc=None):
    print("notify-listen: FAIL: " + msg, flush=True)
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait()
    sys.exit(1)


def wait_for(ns, word, proc):
    while True:
        try:
            data = ns.recv(4096).decode()
        except socket.timeout:
            fail("no %s within %d s" % (word, TIMEOUT_S), proc)
        print("notify-listen: received %r" % data, flush=True)
        if word in data.split("\n"):
            return


def main():
    if len(sys.argv) < 4 or sys.argv[3] != "--":
        print("usage: notify-listen.py DIR UNIXSOCK -- ARGV…", file=sys.stderr)
        sys.exit(2)
    tmpdir, unixsock, argv = sys.argv[1], sys.argv[2], sys.argv[4:]
    path = os.path.join(tmpdir, "notify")
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind(path)
    ns.settimeout(TIMEOUT_S)
    env = dict(os.environ, NOTIFY_SOCKET=path)
    proc = subprocess.Popen(argv, env=env)

    wait_for(ns, "READY=1", proc)
    if proc.poll() is not None:
        fail("READY=1 but the server exited with %d" % proc.returncode)
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.settimeout(TIMEOUT_S)
    try:
        c.connect(unixsock)
        greeting = c.recv(8)
    except OSError as e:
        fail("READY=1 was sent but %s does not accept: %s" % (unixsock, e),
             proc)
    if greeting != b"NBDMAGIC":
        fail("READY=1 was sent but the greeting is %r" % greeting, proc)
    print("notify-listen: the listener accepts at READY=1", flush=True)
    c.close()

    proc.send_signal(signal.SIGTERM)
    wait_for(ns, "STOPPING=1", proc)
    try:
        rc = proc.wait(TIMEOUT_S)
    except subprocess.TimeoutExpired:
        fail("the server did not exit within %d s of SIGTERM" % TIMEOUT_S,
             proc)
    if rc != 0:
        fail("the server exited with %d" % rc)
    print("notify-listen: OK", flush=True)


main()
