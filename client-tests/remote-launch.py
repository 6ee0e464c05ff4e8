#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
# remote-launch.py SOCK LOG ARGS… — start a remote for the remote-backing
# client tests: nbdkit -f ARGS… on the Unix socket SOCK by socket
# activation, so it is listening before this returns (and can be killed and
# started again at will).  Writes nbdkit's pid to remote.pid beside SOCK.
# nbdkit exits with its parent, so a keeper process (detached from the
# test's output, stderr appended to LOG) stays its parent until it exits.
import os, socket, sys
sock, log, args = sys.argv[1], sys.argv[2], sys.argv[3:]
try:
    os.unlink(sock)
except FileNotFoundError:
    pass
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sock)
s.listen(64)
r, w = os.pipe()
if os.fork() == 0:
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.dup2(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), 2)
    child = os.fork()
    if child == 0:
        if s.fileno() == 3:
            os.set_inheritable(3, True)
        else:
            os.dup2(s.fileno(), 3)
        os.environ["LISTEN_PID"] = str(os.getpid())
        os.environ["LISTEN_FDS"] = "1"
        os.execvp("nbdkit", ["nbdkit", "-f"] + args)
    s.close()
    os.write(w, b"%d" % child)
    os.close(w)
    os.waitpid(child, 0)
    os._exit(0)
os.close(w)
pid = int(os.read(r, 64))
with open(os.path.join(os.path.dirname(sock), "remote.pid"), "w") as f:
    f.write("%d\n" % pid)
