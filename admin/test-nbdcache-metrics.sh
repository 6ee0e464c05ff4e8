#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# test-nbdcache-metrics.sh — nbdcache stats --prometheus and nbdcached's
# metrics_listen, end to end against a real server.
#
# WHAT:
# 1. A real nbdcached (NBDCACHED) with a control socket and
#    metrics_listen = 127.0.0.1:0 (an ephemeral port, read from the
#    server's "serving GET /metrics on" log line): after known I/O (1 MiB
#    written, then read back, through NBD), `nbdcache stats --prometheus`
#    and GET /metrics are parsed by a Prometheus text-format parser (every
#    sample under its family's # HELP and # TYPE, families not split,
#    counters named *_total, labels well-formed) and their values must
#    equal the `nbdcache stats --json` document taken around them:
#    reads, writes, bytes, hits, misses, size, every integer field of every
#    export and cache present as a metric; export and cache labels.
# 1b. The request counters' invariants (nbdcache(8), stats: hits + misses
#    = reads, ...) on `nbdcache stats --json` after a mixed workload
#    through NBD on one export per mode (writeback, writethrough,
#    writearound, none).
# 2. A second nbdcached with metrics_listen = an absolute Unix socket path:
#    GET /metrics 200, HEAD without a body, 404 for another path, 405 for
#    POST, 400 for garbage, 431 for a request over the size limit, and
#    with METRICS_MAX_CONNS (16) connections open a 17th is closed at
#    once, and once they are answered a request is served again.
# 3. Usage errors of the new options exit 2.
# HOW: run by "make check" in admin/.  Each server runs with --run, so it
# stops when the script does; no fixed ports, no sleeps.  Every check
# prints ok/FAIL; exit 1 if any failed, 77 if nbdcached or nbdcopy is
# missing.
set -u
: "${NBDCACHE:=./nbdcache}"
: "${NBDCACHED:=../server/nbdcached}"
PYTHON=/usr/bin/python3
[ -x "$PYTHON" ] || PYTHON=python3

for f in "$NBDCACHE" "$NBDCACHED"; do
    if [ ! -x "$f" ]; then
        echo "$0: $f not built" >&2
        exit 1
    fi
done
if ! command -v nbdcopy >/dev/null 2>&1; then
    echo "$0: SKIP: no nbdcopy (libnbd-bin)" >&2
    exit 77
fi
NBDCACHE=$(cd "$(dirname "$NBDCACHE")" && pwd)/$(basename "$NBDCACHE")
NBDCACHED=$(cd "$(dirname "$NBDCACHED")" && pwd)/$(basename "$NBDCACHED")

# Unix socket paths are short: keep the directory short.
tmp=$(mktemp -d /tmp/nbdcache-met.XXXXXX) || exit 1
cleanup () {
    if [ -n "${KEEP_TMP:-}" ]; then echo "KEEP_TMP: leaving $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
failures=0

fail () {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

ok () {
    echo "ok: $*"
}

# ---- usage errors ----
usage_error () {
    what=$1
    shift
    "$NBDCACHE" "$@" >"$tmp/out" 2>"$tmp/err"
    status=$?
    if [ "$status" -eq 2 ] && grep -q "Usage:" "$tmp/err"; then
        ok "usage error: $what: exit 2"
    else
        fail "usage error: $what: exit $status, expected 2 and the usage"
        sed 's/^/  stderr: /' "$tmp/err" >&2
    fi
}
usage_error "--json --prometheus" stats --socket "$tmp/x" --json --prometheus
usage_error "--prometheus --watch" stats --socket "$tmp/x" --prometheus --watch

# write_config FILE METRICS_LISTEN
write_config () {
    cat >"$1" <<EOF
[server]
log = stderr
workers = 2
control_socket = $tmp/ctl
metrics_listen = $2

[cache ssd]
path = $tmp/cache.img
size = 32M
create = yes
bucket_size = 64K
direct = no

[export disk]
backing = $tmp/disk.img
size = 8M
cache = ssd
mode = writeback

[export plain]
backing = $tmp/plain.img
size = 1M
EOF
}

# ---- 1. --prometheus and GET /metrics over TCP, against the JSON ----
head -c 1048576 /dev/urandom >"$tmp/data"
write_config "$tmp/tcp.conf" 127.0.0.1:0
cat >"$tmp/run1.sh" <<EOF
set -e
nbdcopy '$tmp/data' "nbd+unix:///disk?socket=$tmp/nbd.sock"
nbdcopy "nbd+unix:///disk?socket=$tmp/nbd.sock" '$tmp/back'
port=\$(sed -n 's/.*serving GET \/metrics on 127\.0\.0\.1:\([0-9]*\)\$/\1/p' \
    '$tmp/server1.log')
echo "\$port" >'$tmp/port'
'$NBDCACHE' stats --socket '$tmp/ctl' --json >'$tmp/before.json'
'$NBDCACHE' stats --socket '$tmp/ctl' --prometheus >'$tmp/cli.prom'
'$PYTHON' -c '
import sys, urllib.request
r = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1],
                           timeout=30)
open(sys.argv[2], "w").write(r.headers["Content-Type"] + "\n")
open(sys.argv[3], "wb").write(r.read())
' "\$port" '$tmp/http.ctype' '$tmp/http.prom'
'$NBDCACHE' stats --socket '$tmp/ctl' --json >'$tmp/after.json'
EOF
"$NBDCACHED" -f -c "$tmp/tcp.conf" -U "$tmp/nbd.sock" --run "sh $tmp/run1.sh" \
    >"$tmp/server1.log" 2>&1
status=$?
if [ $status -ne 0 ]; then
    fail "server with metrics_listen on TCP: exit status $status"
    tail -n 40 "$tmp/server1.log" | sed 's/^/  server: /' >&2
else
    ok "server with metrics_listen = 127.0.0.1:0 (port $(cat "$tmp/port"))"
    cmp -s -n 1048576 "$tmp/data" "$tmp/back" || fail "the data read back differs"
fi

cat >"$tmp/prom.py" <<'EOF'
# A parser of the Prometheus text exposition format (version 0.0.4), as
# strict as this test needs: returns {family: (type, help,
# {(name, labels): value})}.
import re, sys

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"'

def parse(text):
    fams, order, cur = {}, [], None
    assert text.endswith("\n"), "no final newline"
    for n, line in enumerate(text.split("\n")[:-1], 1):
        where = "line %d: %r" % (n, line)
        m = re.fullmatch(r"# HELP (%s) (.*)" % NAME, line)
        if m:
            assert m.group(1) not in fams, "family split: " + where
            fams[m.group(1)] = [None, m.group(2), {}]
            order.append(m.group(1))
            cur = m.group(1)
            continue
        m = re.fullmatch(r"# TYPE (%s) (counter|gauge|untyped)" % NAME, line)
        if m:
            assert m.group(1) == cur and fams[cur][0] is None, where
            fams[cur][0] = m.group(2)
            continue
        assert not line.startswith("#"), "unknown comment: " + where
        m = re.fullmatch(r"(%s)(?:\{(.*)\})? (\S+)" % NAME, line)
        assert m, "not a sample: " + where
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        assert name == cur, "sample outside its family: " + where
        assert fams[cur][0] is not None, "sample before # TYPE: " + where
        pairs = re.findall(LABEL, labels)
        assert ",".join('%s="%s"' % p for p in pairs) == labels, \
            "bad labels: " + where
        float(value)
        fams[cur][2][(name, tuple(sorted(pairs)))] = float(value)
    for f, (t, h, s) in fams.items():
        assert t is not None and s, "family without TYPE or samples: " + f
        if t == "counter":
            assert f.endswith("_total"), "counter not *_total: " + f
    return fams

def value(fams, family, **labels):
    t, h, samples = fams[family]
    key = (family, tuple(sorted(labels.items())))
    assert key in samples, "no sample %s%s" % (family, labels)
    return samples[key]
EOF

if [ $status -eq 0 ]; then
    if "$PYTHON" - "$tmp" >"$tmp/cmp" 2>&1 <<'EOF'; then
import json, sys
sys.path.insert(0, sys.argv[1])
from prom import parse, value
d = sys.argv[1]
before = json.load(open(d + "/before.json"))
after = json.load(open(d + "/after.json"))
ctype = open(d + "/http.ctype").read().strip()
assert ctype.startswith("text/plain; version=0.0.4"), ctype
for src in ("cli", "http"):
    fams = parse(open("%s/%s.prom" % (d, src)).read())
    for b, a in zip(before["exports"], after["exports"]):
        lab = {"export": b["name"], "cache": b["cache"] or ""}
        # No client I/O between the two documents: these cannot move.
        for key, fam in (("reads", "reads_total"), ("writes", "writes_total"),
                         ("bytes_read", "read_bytes_total"),
                         ("bytes_written", "written_bytes_total"),
                         ("hits", "hits_total"), ("misses", "misses_total"),
                         ("size_bytes", "size_bytes")):
            assert b[key] == a[key], (key, b, a)
            got = value(fams, "nbdcache_export_" + fam, **lab)
            assert got == b[key], (src, b["name"], key, got, b[key])
        # Every integer field is a metric, its value between the two
        # documents (writeback may run meanwhile).
        for key, v in b.items():
            if not isinstance(v, int) or isinstance(v, bool):
                continue
            names = [f for f in fams if f.startswith("nbdcache_export_") and
                     (f[16:] == key or f[16:] == key + "_total" or
                      f[16:].startswith(key + "_") or
                      {"bytes_read": "read_bytes_total",
                       "bytes_written": "written_bytes_total"}.get(key)
                      == f[16:])]
            assert names, ("no metric for", key)
        info = value(fams, "nbdcache_export_info", export=b["name"],
                     cache=lab["cache"], mode=b["mode"],
                     readonly=str(b["readonly"]).lower(),
                     backing_driver=b["backing"]["driver"])
        assert info == 1
    disk = [e for e in before["exports"] if e["name"] == "disk"][0]
    assert disk["bytes_written"] == 1 << 20 and disk["bytes_read"] == 1 << 20, disk
    assert value(fams, "nbdcache_export_hits_total", export="disk",
                 cache="ssd") > 0
    for c in before["caches"]:
        for key in ("size_bytes", "bucket_bytes", "buckets"):
            assert value(fams, "nbdcache_cache_" + key, cache=c["name"]) \
                == c[key], (src, key)
        # Between the two documents (writeback's commits may move it).
        ca = [x for x in after["caches"] if x["name"] == c["name"]][0]
        assert fams["nbdcache_cache_journal_inlined_total"][0] == "counter"
        assert c["journal_inlined"] <= value(
            fams, "nbdcache_cache_journal_inlined_total", cache=c["name"]) \
            <= ca["journal_inlined"], src
print("cli and http agree with the JSON")
EOF
        ok "--prometheus and GET /metrics: $(cat "$tmp/cmp")"
    else
        fail "--prometheus / GET /metrics do not match the JSON"
        sed 's/^/  /' "$tmp/cmp" >&2
    fi
fi

# ---- 1b. the request counters' invariants (nbdcache(8), stats) ----
# Three cached exports, one per mode, and one uncached: a 6 MiB stream
# written (past the 4 MiB sequential cutoff: write bypasses in writeback
# and writethrough), then the whole 8 MiB read back twice, in 1 MiB and
# in 64 KiB requests (full hits, partial hits across cached and bypassed
# pieces, misses, streams past the cutoff), then every relation checked exactly
# on `nbdcache stats --json` (nothing is in flight when it is taken).
# nbdcopy runs one request at a time on one connection: with its default
# parallel requests a slow (sanitizer) build saw the stream out of order,
# detected no sequential stream, cached everything and had no misses.
rm -f "$tmp/cache.img"
cat >"$tmp/inv.conf" <<EOF
[server]
log = stderr
workers = 2
control_socket = $tmp/ctl

[cache ssd]
path = $tmp/cache.img
size = 32M
create = yes
bucket_size = 64K
direct = no
EOF
for e in writeback writethrough writearound none; do
    if [ $e = none ]; then c=""; else c="cache = ssd"; fi
    cat >>"$tmp/inv.conf" <<EOF

[export $e]
backing = $tmp/inv-$e.img
size = 8M
$c
mode = $e
EOF
done
head -c 6291456 /dev/urandom >"$tmp/data6"
cat >"$tmp/run-inv.sh" <<EOF
set -e
for e in writeback writethrough writearound none; do
    nbdcopy -C 1 -R 1 '$tmp/data6' "nbd+unix:///\$e?socket=$tmp/nbd.sock"
    for rs in 1048576 65536; do
        nbdcopy -C 1 -R 1 --request-size=\$rs \
            "nbd+unix:///\$e?socket=$tmp/nbd.sock" '$tmp/back-inv'
        cmp -s -n 6291456 '$tmp/data6' '$tmp/back-inv'
    done
done
'$NBDCACHE' stats --socket '$tmp/ctl' --json >'$tmp/inv.json'
EOF
if "$NBDCACHED" -f -c "$tmp/inv.conf" -U "$tmp/nbd.sock" \
    --run "sh $tmp/run-inv.sh" >"$tmp/server-inv.log" 2>&1; then
    if "$PYTHON" - "$tmp/inv.json" >"$tmp/inv.out" 2>&1 <<'EOF'; then
import json, sys
doc = json.load(open(sys.argv[1]))
seen = set()
for e in doc["exports"]:
    keys = ("reads", "writes", "zeroes", "hits", "misses", "promotions",
            "bypasses", "write_bypasses", "sequential_bypasses", "errors")
    print(e["name"] + ": " + " ".join("%s %d" % (k, e[k]) for k in keys))
    seen.add(e["name"])
    assert e["errors"] == 0, e
    assert e["reads"] > 0 and e["writes"] > 0, e
    if e["mode"] == "none":
        for k in ("hits", "misses", "promotions", "bypasses",
                  "write_bypasses", "sequential_bypasses"):
            assert e[k] == 0, (e["name"], k, e[k])
        continue
    assert e["hits"] + e["misses"] == e["reads"], (e["name"], "hits + misses")
    assert e["write_bypasses"] <= e["bypasses"], e["name"]
    assert e["promotions"] + e["bypasses"] - e["write_bypasses"] \
        <= e["misses"], (e["name"], "promotions + read bypasses")
    assert e["write_bypasses"] <= e["writes"] + e["zeroes"], e["name"]
    if e["mode"] == "writearound":
        assert e["write_bypasses"] == 0, e["name"]
    assert e["sequential_bypasses"] <= e["bypasses"], e["name"]
    assert e["hits"] > 0 and e["misses"] > 0, (e["name"], "no mix")
assert seen == {"writeback", "writethrough", "writearound", "none"}, seen
EOF
        ok "stats invariants in every mode:"
        sed 's/^/  /' "$tmp/inv.out"
    else
        fail "stats invariants do not hold"
        sed 's/^/  /' "$tmp/inv.out" >&2
    fi
else
    fail "server for the stats invariants failed"
    tail -n 40 "$tmp/server-inv.log" | sed 's/^/  server: /' >&2
fi

# ---- 2. metrics_listen on a Unix socket: the HTTP responder's limits ----
rm -f "$tmp/cache.img"
write_config "$tmp/unix.conf" "$tmp/m.sock"
cat >"$tmp/http.py" <<'EOF'
import socket, sys
path = sys.argv[1]

def conn():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(path)
    return s

def ask(req):
    s = conn()
    s.sendall(req)
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    s.close()
    return data

def status(resp):
    return resp.split(b"\r\n", 1)[0].decode()

# First (an error answer keeps its connection until the client's close
# is read, which the client cannot observe): 16 connections open, the
# 17th is closed without an answer.
idle = [conn() for _ in range(16)]
idle[0].sendall(b"GET /met")   # a request still coming: no answer yet
extra = conn()
try:
    extra.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
    got = extra.recv(100)
except (BrokenPipeError, ConnectionResetError):
    got = b""                   # closed before or after the request
assert got == b"", got
# Finish the idle requests: each answer ends (EOF) in the server callback
# that frees its connection, so when the last EOF is read every slot is
# free again, and a new connection is served.
idle[0].sendall(b"rics HTTP/1.1\r\n\r\n")
for s in idle[1:]:
    s.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
for s in idle:
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    s.close()
    assert status(data) == "HTTP/1.1 200 OK", data[:100]
assert status(ask(b"GET /metrics HTTP/1.1\r\n\r\n")) == "HTTP/1.1 200 OK"
r = ask(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
assert status(r) == "HTTP/1.1 200 OK", r[:200]
head, body = r.split(b"\r\n\r\n", 1)
assert b"# TYPE nbdcache_export_reads_total counter" in body
assert ("Content-Length: %d" % len(body)).encode() in head, head
r = ask(b"GET /metrics?x=1 HTTP/1.0\n\n")
assert status(r) == "HTTP/1.1 200 OK", r[:200]
r = ask(b"HEAD /metrics HTTP/1.1\r\n\r\n")
assert status(r) == "HTTP/1.1 200 OK" and r.endswith(b"\r\n\r\n"), r[:300]
assert status(ask(b"GET / HTTP/1.1\r\n\r\n")).endswith("404 Not Found")
r = ask(b"POST /metrics HTTP/1.1\r\n\r\n")
assert status(r).endswith("405 Method Not Allowed") and b"Allow: GET" in r
assert status(ask(b"hello\r\n\r\n")).endswith("400 Bad Request")
r = ask(b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 8192 + b"\r\n\r\n")
assert status(r).endswith("431 Request Header Fields Too Large"), r[:100]
print("200, HEAD, 404, 405, 400, 431, the connection limit")
EOF
cat >"$tmp/run2.sh" <<EOF
'$PYTHON' '$tmp/http.py' '$tmp/m.sock' >'$tmp/http.out' 2>&1
EOF
"$NBDCACHED" -f -c "$tmp/unix.conf" -U "$tmp/nbd.sock" --run "sh $tmp/run2.sh" \
    >"$tmp/server2.log" 2>&1
status=$?
if [ $status -eq 0 ] && [ ! -e "$tmp/m.sock" ]; then
    ok "metrics_listen on a Unix socket: $(cat "$tmp/http.out"); removed at exit"
else
    fail "metrics_listen on a Unix socket: exit status $status"
    sed 's/^/  client: /' "$tmp/http.out" >&2
    tail -n 20 "$tmp/server2.log" | sed 's/^/  server: /' >&2
fi

# ---- a bad metrics_listen stops the start, naming the key ----
write_config "$tmp/bad.conf" "nonsense"
"$NBDCACHED" -f -c "$tmp/bad.conf" -U "$tmp/nbd.sock" --run "true" \
    >"$tmp/server3.log" 2>&1
status=$?
if [ $status -ne 0 ] && grep -q "metrics_listen" "$tmp/server3.log"; then
    ok "a bad metrics_listen: start-up fails (exit $status), naming the key"
else
    fail "a bad metrics_listen: exit $status"
    sed 's/^/  server: /' "$tmp/server3.log" >&2
fi

if [ "$failures" -ne 0 ]; then
    echo "$0: $failures failure(s)" >&2
    exit 1
fi
echo "all ok"
