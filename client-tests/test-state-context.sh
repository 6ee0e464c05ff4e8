#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-state-context.sh — the nbdcache:state meta context of nbdcached.
#
# WHAT: through libnbd (python3 nbd bindings), nbdinfo and a small raw
# client for extended headers, against nbdcached serving a writeback
# export on a cache device ("disk") and an uncached one ("plain"):
#  1. LIST_META_CONTEXT: no query lists base:allocation and nbdcache:state;
#     "nbdcache:" lists nbdcache:state; an unknown leaf lists nothing;
#     SET with the bare namespace "nbdcache:" selects nothing.
#  2. both contexts selected: an untouched range is state 0; a written
#     range is CACHED|DIRTY (state 3) and allocated data in base:allocation;
#     write_zeroes gives CACHED|ZERO (+DIRTY) and base:allocation ZERO;
#     REQ_ONE gives exactly one extent per context.
#  3. only nbdcache:state, only base:allocation: one chunk, that context.
#  4. the uncached export reports state 0 after a write.
#  5. nbdinfo --map=nbdcache:state shows the written range cached.
#  6. extended headers (raw client): two BLOCK_STATUS_EXT chunks with ids
#     from SET_META_CONTEXT, DONE only on the last; their descriptors
#     cover the request.
# WHY: nbdcache:state is nbdcached's own context (nbdkit plugins cannot add
# contexts): it lets admins and tests see what the cache holds.
# HOW: captive mode (run_server); nbdcached only.  Background writeback
# may clean a range between the write and the query (it trickles at its
# minimum rate and runs at full speed after 1 s idle), so the DIRTY check
# rewrites and retries a few times before failing; CACHED never goes away.
set -e
. "${srcdir:-.}/functions.sh"
requires nbdinfo
requires_python
requires_python_nbd
nbdcached_only

tmp=$(make_tmpdir)
write_config "$tmp/c.conf" "$tmp/disk.img" 64M "cache = ssd" "mode = writeback"
cat >> "$tmp/c.conf" <<EOF

[export plain]
backing = $tmp/plain.img
size = 16M

[cache ssd]
path = $tmp/cache.img
size = 64M
create = yes
bucket_size = 64K
direct = no
EOF

cat > "$tmp/state.py" <<'EOF'
import os, socket, struct, sys
import nbd

uri = os.environ["uri"]
sock = os.environ["unixsocket"]
plain_uri = "nbd+unix:///plain?socket=" + sock
M = 1 << 20
CACHED, DIRTY, ZERO = 1, 2, 4
fails = 0

def check(cond, what):
    global fails
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        fails += 1

def connect(contexts, u=uri):
    h = nbd.NBD()
    for c in contexts:
        h.add_meta_context(c)
    h.connect_uri(u)
    return h

def status(h, off, length, flags=0):
    """{context: [(offset, length, flags), ...]} for one BLOCK_STATUS."""
    got = {}
    def cb(ctx, o, entries, err):
        assert ctx not in got, "two chunks for " + ctx
        pos, l = o, []
        for i in range(0, len(entries), 2):
            l.append((pos, entries[i], entries[i + 1]))
            pos += entries[i]
        got[ctx] = l
        return 0
    h.block_status(length, off, cb, flags)
    return got

def covered(ext, off, length, pred):
    """Bytes of [off, off+length) in extents whose flags satisfy pred."""
    n = 0
    for (o, l, f) in ext:
        lo, hi = max(o, off), min(o + l, off + length)
        if lo < hi and pred(f):
            n += hi - lo
    return n

# 1. LIST and wildcard SET.
def listed(queries):
    h = nbd.NBD()
    h.set_opt_mode(True)
    for q in queries:
        h.add_meta_context(q)
    h.connect_uri(uri)
    names = []
    h.opt_list_meta_context(lambda name: names.append(name) or 0)
    h.opt_abort()
    return sorted(names)

check(listed([]) == ["base:allocation", "nbdcache:state"],
      "LIST without queries: %s" % listed([]))
check(listed(["nbdcache:"]) == ["nbdcache:state"], "LIST nbdcache:")
check(listed(["nbdcache:state"]) == ["nbdcache:state"], "LIST nbdcache:state")
check(listed(["nbdcache:bogus"]) == [], "LIST nbdcache:bogus lists nothing")
check(listed(["base:", "nbdcache:"]) == ["base:allocation", "nbdcache:state"],
      "LIST base: nbdcache:")
h = connect(["nbdcache:"])
check(not h.can_meta_context("nbdcache:state"),
      "SET nbdcache: (bare namespace) selects nothing")
h.shutdown()

# 2. Both contexts.
h = connect(["base:allocation", "nbdcache:state"])
check(h.can_meta_context("base:allocation") and
      h.can_meta_context("nbdcache:state"), "SET selects both contexts")

st = status(h, 32 * M, M)
check(sorted(st) == ["base:allocation", "nbdcache:state"],
      "one chunk per context")
check(covered(st["nbdcache:state"], 32 * M, M, lambda f: f == 0) == M,
      "untouched range is state 0: %s" % st["nbdcache:state"])
check(sum(l for (_, l, _) in st["nbdcache:state"]) == M,
      "state extents cover exactly the request")

data = os.urandom(M)
for attempt in range(4):
    h.pwrite(data, M)
    st = status(h, M, M)
    s = st["nbdcache:state"]
    cached = covered(s, M, M, lambda f: f & CACHED)
    dirty = covered(s, M, M, lambda f: f & DIRTY)
    if cached == M and dirty >= M * 3 // 4:
        break
    print("note: attempt %d: cached %d dirty %d of %d: %s"
          % (attempt, cached, dirty, M, s), flush=True)
check(cached == M, "written range is CACHED")
check(dirty >= M * 3 // 4, "written range is DIRTY (%d of %d bytes)"
      % (dirty, M))
check(covered(s, M, M, lambda f: f & ZERO) == 0, "written range is not ZERO")
check(covered(st["base:allocation"], M, M, lambda f: f == 0) == M,
      "base:allocation: written range is allocated data: %s"
      % st["base:allocation"])

h.zero(M, 8 * M)
st = status(h, 8 * M, M)
s = st["nbdcache:state"]
check(covered(s, 8 * M, M, lambda f: (f & (CACHED | ZERO)) == CACHED | ZERO)
      == M, "write_zeroes range is CACHED|ZERO: %s" % s)
check(covered(st["base:allocation"], 8 * M, M, lambda f: f & 2) == M,
      "base:allocation: zeroed range reads as zero: %s" % st["base:allocation"])

st = status(h, 0, 16 * M, nbd.CMD_FLAG_REQ_ONE)
check(sorted(st) == ["base:allocation", "nbdcache:state"] and
      all(len(v) == 1 for v in st.values()),
      "REQ_ONE: one extent per context: %s" % st)
check(st["nbdcache:state"][0][2] == 0 and st["nbdcache:state"][0][1] <= M,
      "REQ_ONE: first state extent is the untouched start")
h.shutdown()

# 3. One context at a time.
h = connect(["nbdcache:state"])
check(not h.can_meta_context("base:allocation"), "only nbdcache:state")
st = status(h, 0, 4 * M)
check(sorted(st) == ["nbdcache:state"], "only the nbdcache:state chunk")
check(covered(st["nbdcache:state"], M, M, lambda f: f & CACHED) == M,
      "nbdcache:state alone: written range CACHED")
h.shutdown()
h = connect(["base:allocation"])
st = status(h, 0, 4 * M)
check(sorted(st) == ["base:allocation"], "only the base:allocation chunk")
h.shutdown()

# 4. Uncached export: nothing is ever cached.
h = connect(["base:allocation", "nbdcache:state"], plain_uri)
h.pwrite(b"\x55" * 65536, 0)
st = status(h, 0, 4 * M)
check(covered(st["nbdcache:state"], 0, 4 * M, lambda f: f == 0) == 4 * M,
      "uncached export: state 0 everywhere: %s" % st["nbdcache:state"])
h.shutdown()

# 6. Extended headers, raw.
def recv_all(s, n):
    b = b""
    while len(b) < n:
        d = s.recv(n - len(b))
        if not d:
            raise EOFError("server closed the connection")
        b += d
    return b

def option(s, opt, data=b""):
    s.sendall(struct.pack(">QII", 0x49484156454F5054, opt, len(data)) + data)
    replies = []
    while True:
        magic, o, typ, l = struct.unpack(">QIII", recv_all(s, 20))
        assert magic == 0x3e889045565a9 and o == opt
        replies.append((typ, recv_all(s, l)))
        if typ == 1 or typ & 0x80000000:
            return replies

s = socket.socket(socket.AF_UNIX)
s.connect(sock)
magic, ihaveopt, hflags = struct.unpack(">QQH", recv_all(s, 18))
s.sendall(struct.pack(">I", 3))           # FIXED_NEWSTYLE | NO_ZEROES
check(option(s, 11)[-1][0] == 1, "raw: EXTENDED_HEADERS acked")
name = b"disk"
queries = [b"nbdcache:state", b"base:allocation"]
data = struct.pack(">I", len(name)) + name + struct.pack(">I", len(queries))
for q in queries:
    data += struct.pack(">I", len(q)) + q
ids = {}
for typ, d in option(s, 10, data):
    if typ == 4:
        ids[d[4:].decode()] = struct.unpack(">I", d[:4])[0]
check(ids == {"base:allocation": 1, "nbdcache:state": 2},
      "raw: SET ids %s" % ids)
r = option(s, 7, struct.pack(">I", len(name)) + name + struct.pack(">H", 0))
check(r[-1][0] == 1, "raw: GO acked")
s.sendall(struct.pack(">IHHQQQ", 0x21e41c71, 0, 7, 42, 0, 16 * M))
chunks = []
while True:
    magic, flags, typ, cookie, off, length = \
        struct.unpack(">IHHQQQ", recv_all(s, 32))
    payload = recv_all(s, length)
    assert magic == 0x6e8a278c and cookie == 42 and off == 0
    chunks.append((flags, typ, payload))
    if flags & 1:
        break
check(len(chunks) == 2 and all(t == 6 for (_, t, _) in chunks),
      "raw: two BLOCK_STATUS_EXT chunks: %s" % [(f, t) for (f, t, _) in chunks])
check([f & 1 for (f, _, _) in chunks] == [0, 1], "raw: DONE only on the last")
seen = {}
for (_, _, p) in chunks:
    cid, n = struct.unpack(">II", p[:8])
    desc = [struct.unpack(">QQ", p[8 + 16 * i:24 + 16 * i]) for i in range(n)]
    check(len(p) == 8 + 16 * n and n > 0 and
          sum(l for (l, _) in desc) == 16 * M,
          "raw: context %d: %d descriptors covering the request" % (cid, n))
    seen[cid] = desc
check(sorted(seen) == [1, 2], "raw: one chunk per context id")
pos = 0
for (l, f) in seen.get(2, []):
    if pos <= M and pos + l >= 2 * M:
        check(f & CACHED, "raw: state of the written range has CACHED")
    pos += l
s.sendall(struct.pack(">IHHQQQ", 0x21e41c71, 0, 2, 43, 0, 0))   # DISC
s.close()

sys.exit(1 if fails else 0)
EOF

run_server nbdcached "$tmp/c.conf" disk -- \
  "'$PYTHON' '$tmp/state.py' &&
   nbdinfo --map=nbdcache:state --json \"\$uri\" > '$tmp/map.json'" ||
  die "nbdcache:state checks failed"

# 5. nbdinfo's view of the same (after the run above: the cache device is
# persistent, so the written range is still cached, dirty or not).
"$PYTHON" - "$tmp/map.json" <<'EOF' || die "nbdinfo --map=nbdcache:state"
import json, sys
M = 1 << 20
ext = json.load(open(sys.argv[1]))
print(ext)
cached = sum(min(e["offset"] + e["length"], 2 * M) - max(e["offset"], M)
             for e in ext
             if e["offset"] < 2 * M and M < e["offset"] + e["length"]
             and e["type"] & 1)
untouched = [e for e in ext if e["offset"] <= 40 * M < e["offset"] + e["length"]]
assert cached == M, "written range not cached in nbdinfo's map"
assert untouched and untouched[0]["type"] == 0, "untouched range not 0"
assert sum(e["length"] for e in ext) == 64 * M, "map does not cover the export"
print("nbdinfo --map=nbdcache:state OK")
EOF
echo "nbdcache:state OK"
