#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
# protocol-fuzz.py — a seeded live-server NBD protocol fuzzer (raw sockets).
#
# WHAT: batches of abusive connections to a running server, each batch
# followed by a clean client (nbdinfo) that must still be answered:
#   handshake  a valid handshake with random byte mutations / truncation
#   partial    a valid handshake, then part of a request header, then close
#   lying      a WRITE (or option) whose length is more than is sent
#   pipeline   thousands of requests in one burst, then close mid-replies
#   random     valid handshake, then random request headers (types, flags,
#              offsets, counts), some with payloads
# WHY: the server must survive anything a peer sends; a crash or a hang
# shows up as the clean client failing.
# Usage: protocol-fuzz.py URI SECONDS SEED [KIND]
# KIND plugin: handshakes, partial headers and lying option lengths only,
# no request left in flight: nbdkit 1.32 (Debian 12) itself aborts when a
# connection ends with replies still being sent (even after DISC, in our
# runs)
# ("connections.c:402: raw_send_socket: Assertion `sock >= 0' failed"),
# which is not ours to fix.
# URI: nbd+unix:///EXPORT?socket=PATH or nbd://HOST:PORT/EXPORT.
# Exit 0, or 1 naming the batch, the seed and what the clean client said.
import random
import socket
import struct
import subprocess
import sys
import time
import urllib.parse

uri, seconds, seed = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
graceful = len(sys.argv) > 4 and sys.argv[4] == "plugin"
rng = random.Random(seed)
u = urllib.parse.urlparse(uri)
export = urllib.parse.unquote(u.path[1:]).encode()

IHAVEOPT = 0x49484156454F5054
REQ_MAGIC, EREQ_MAGIC = 0x25609513, 0x21e41c71
OPT_GO, OPT_SR, OPT_EH, OPT_SMC, OPT_LIST, OPT_INFO, OPT_ABORT = \
    7, 8, 11, 10, 3, 6, 2


def connect():
    if u.scheme == "nbd+unix":
        path = urllib.parse.parse_qs(u.query)["socket"][0]
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(path)
    else:
        s = socket.create_connection((u.hostname, u.port or 10809), 5)
    s.settimeout(5)
    return s


def opt(o, data=b""):
    return struct.pack(">QII", IHAVEOPT, o, len(data)) + data


def go_data(name=None):
    name = export if name is None else name
    return struct.pack(">I", len(name)) + name + struct.pack(">H", 0)


def recv_exact(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError
        b += c
    return b


def handshake(s, extended=False, structured=False):
    """Negotiate to transmission; returns True if the server agreed."""
    recv_exact(s, 18)                            # NBDMAGIC IHAVEOPT flags
    s.sendall(struct.pack(">I", 3))
    for o in ([OPT_EH] if extended else []) + ([OPT_SR] if structured
                                                else []) + [OPT_GO]:
        s.sendall(opt(o, go_data() if o == OPT_GO else b""))
        while True:
            _, _, rep, ln = struct.unpack(">QIII", recv_exact(s, 20))
            recv_exact(s, ln)
            if rep == 1:                         # ACK
                break
            if rep & 0x80000000:
                if o == OPT_GO:
                    return False
                break
    return True


def req(t, off, count, flags=0, cookie=0, extended=False):
    if extended:
        return struct.pack(">IHHQQQ", EREQ_MAGIC, flags, t, cookie, off,
                           count)
    return struct.pack(">IHHQQI", REQ_MAGIC, flags, t, cookie, off,
                       count & 0xffffffff)


def finish(s, ext):
    """The end of a burst: abrupt, or (graceful) DISC and every reply."""
    if not graceful:
        drain(s, rng.choice([0, 4096, 1 << 20, 64 << 20]))
        return
    s.settimeout(10)
    s.sendall(req(2, 0, 0, extended=ext))
    while s.recv(1 << 20):
        pass


def drain(s, limit=1 << 20):
    got = 0
    try:
        s.settimeout(0.2 if rng.random() < 0.5 else 0.01)
        while got < limit:
            c = s.recv(65536)
            if not c:
                break
            got += len(c)
    except (socket.timeout, OSError):
        pass


def mutate(b):
    b = bytearray(b)
    for _ in range(rng.randint(1, 6)):
        k = rng.random()
        if k < 0.5 and b:
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        elif k < 0.7 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif k < 0.85:
            del b[rng.randrange(len(b) + 1):]
        else:
            b[rng.randrange(len(b) + 1):0] = bytes(
                rng.randrange(256) for _ in range(rng.randint(1, 16)))
    return bytes(b)


def t_handshake():
    s = connect()
    try:
        recv_exact(s, 18)
        msg = struct.pack(">I", 3) + rng.choice([
            opt(OPT_GO, go_data()),
            opt(OPT_LIST) + opt(OPT_ABORT),
            opt(OPT_INFO, go_data() + struct.pack(">H", 1)),
            opt(OPT_SR) + opt(OPT_SMC, struct.pack(">I", len(export)) +
                              export + struct.pack(">I", 1) +
                              struct.pack(">I", 15) + b"base:allocation")
            + opt(OPT_GO, go_data()),
            opt(OPT_EH) + opt(OPT_GO, go_data()),
        ]) + (b"" if graceful else req(0, 0, 512))
        s.sendall(mutate(msg))
        drain(s)
    finally:
        s.close()


def t_partial():
    s = connect()
    try:
        ext = rng.random() < 0.3
        if handshake(s, extended=ext):
            h = req(rng.randrange(8), 0, 4096, extended=ext)
            s.sendall((b"" if graceful else req(0, 0, 4096, extended=ext)) +
                      h[:rng.randrange(1, len(h))])
            if rng.random() < 0.5:
                drain(s)
    finally:
        s.close()


def t_lying():
    s = connect()
    try:
        if graceful or rng.random() < 0.3:
            recv_exact(s, 18)
            s.sendall(struct.pack(">I", 3) +
                      struct.pack(">QII", IHAVEOPT, OPT_GO,
                                  rng.choice([100, 70000, 1 << 20,
                                              0xffffffff]))
                      + b"x" * rng.randrange(64))
        elif handshake(s):
            count = rng.choice([4096, 65536, 1 << 20, 32 << 20, 0xffffffff])
            s.sendall(req(1, 0, count, cookie=7) +
                      b"p" * rng.randrange(min(count, 200000)))
        if rng.random() < 0.5:
            drain(s)
    finally:
        s.close()


def t_pipeline():
    s = connect()
    try:
        ext = rng.random() < 0.3
        if handshake(s, extended=ext, structured=rng.random() < 0.5):
            n = rng.randint(1000, 4000)
            burst = b"".join(
                req(rng.choice([0, 0, 0, 3, 5]), rng.randrange(256) * 4096,
                    4096, cookie=i, extended=ext) for i in range(n))
            try:
                s.settimeout(2 if not graceful else 30)
                s.sendall(burst)
            except (socket.timeout, OSError):
                pass
            finish(s, ext)
    finally:
        s.close()


def t_random():
    s = connect()
    try:
        ext = rng.random() < 0.3
        if handshake(s, extended=ext, structured=rng.random() < 0.5):
            out = b""
            for i in range(rng.randint(1, 50)):
                t = rng.choice([0, 1, 2, 3, 4, 5, 6, 7, rng.randrange(65536)])
                off = rng.choice([0, 4096, rng.randrange(1 << 40),
                                  (1 << 64) - 512])
                count = rng.choice([0, 1, 512, 4096, 65536,
                                    rng.randrange(1 << 32)])
                out += req(t, off, count, rng.randrange(1 << 16), i, ext)
                if t == 1 and count <= 65536 and rng.random() < 0.8:
                    out += b"w" * count
            s.sendall(out)
            finish(s, ext)
    except (socket.timeout, OSError, EOFError):
        pass
    finally:
        s.close()


def clean_client():
    r = subprocess.run(["nbdinfo", "--size", uri], capture_output=True,
                       text=True, timeout=30)
    return r.returncode == 0, (r.stdout + r.stderr).strip()


kinds = [t_handshake, t_partial, t_lying]
if not graceful:
    kinds += [t_pipeline, t_random]
deadline = time.monotonic() + seconds
batch = conns = 0
while time.monotonic() < deadline:
    batch += 1
    for _ in range(rng.randint(5, 20)):
        kind = rng.choice(kinds)
        try:
            kind()
        except (socket.timeout, OSError, EOFError, struct.error):
            pass                    # the server may close on us: fine
        conns += 1
    ok, said = clean_client()
    if not ok:
        print("FAIL: seed %d batch %d (%d connections so far): the clean "
              "client failed: %s" % (seed, batch, conns, said))
        sys.exit(1)
print("seed %d: %d batches, %d abusive connections, the server answered "
      "a clean client after each" % (seed, batch, conns))
