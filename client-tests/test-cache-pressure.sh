#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-cache-pressure.sh — a writeback export whose working set is twice
# its cache device: every byte must come back, through eviction and
# writeback, across a clean restart, and reach the backing file on a
# flush.
#
# WHAT: for nbdcached and for nbdkit + the plugin, a 64 MiB backing file
# (PRESSURE_SIZE_M) and a fresh 32 MiB cache file with 64 KiB buckets
# (about 29 MiB of data buckets), export mode = writeback,
# sequential_cutoff = 0 (nothing goes around the cache), and:
#   1. write: nbdcopy a seeded random file over the whole export, then
#      libnbd (python) overwrites PRESSURE_OVERWRITES (default 40) seeded
#      pieces of 1 byte..256 KiB (unaligned) from a second file, in a
#      shuffled order; the model is the first file with those pieces of the
#      second; read it back with nbdcopy (cmp with the model) and again in
#      another shuffled order of other pieces (compared piece by piece);
#      nbdcached: `nbdcache stats` must show evictions and writeback;
#   2. clean stop, restart on the same cache and backing: the whole export
#      again (qemu-img convert + cmp, and a third shuffled order);
#   3. flush: overwrite PRESSURE_OVERWRITES other pieces from a third
#      file (fresh dirty data), then nbdcached: `nbdcache flush --socket
#      CTL disk` at once, while it runs ([server] control_socket); the
#      backing file must equal the model right after it and after the stop,
#      and `nbdcache stats --json` must show no dirty data; the plugin (no
#      control socket): that start has flush_on_stop = yes, and after the
#      stop the backing file must equal the model.
# WHY: the working set cannot fit, so the cache must write dirty data back
# and evict clean buckets to take the writes, and must never hand out a
# stale or misplaced block while doing so (doc/design.md, the crash promise, 2).
# HOW: captive servers (run_server: private Unix socket, the clients run
# from the server's --run, a clean stop when they exit), so no ports and no
# sleeps.  Logs per start in the test directory, shown when a start fails.
# Environment: NBDCACHE_SEED repeats a run (printed); PRESSURE_SIZE_M the
# working set in MiB (default 64; the cache stays 32 MiB);
# PRESSURE_OVERWRITES the pieces overwritten (default 40); SERVERS one
# kind; KEEP_TMP=1 keeps the files.
set -e
. "${srcdir:-.}/functions.sh"
requires nbdcopy qemu-img cmp
requires_python_nbd

seed=${NBDCACHE_SEED:-$RANDOM$RANDOM}
echo "seed $seed (set NBDCACHE_SEED=$seed to repeat)"
M=$((1024 * 1024))
size=$((${PRESSURE_SIZE_M:-64} * M))
cache_size=32M
overwrites=${PRESSURE_OVERWRITES:-40}
NBDCACHE_TOOL=$(abspath "${NBDCACHE_TOOL:-$top_builddir/admin/nbdcache}")

tmp=$(make_tmpdir)

# Seeded contents: the first full write and the overwrites of steps 1
# and 3.
"$PYTHON" - "$seed" "$size" "$tmp/data1.img" "$tmp/data2.img" \
  "$tmp/data3.img" <<'EOF'
import random, sys
seed, size = int(sys.argv[1]), int(sys.argv[2])
for i, path in enumerate(sys.argv[3:]):
    with open(path, "wb") as f:
        f.write(random.Random(seed * 3 + i).randbytes(size))
EOF

# pieces.py write|read URI MODEL SEED [DATA2 COUNT]: the export in pieces
# of 1 byte..256 KiB in a shuffled order.  write: overwrite the first COUNT
# of them from DATA2 and write the result to MODEL (which starts as a copy
# of the first file); read: every piece must equal MODEL.  (Writes into a
# full cache are slow, a few hundred ms each with the engine of today, so
# the overwrites are few; the nbdcopy fill is the bulk of the pressure.)
cat > "$tmp/pieces.py" <<'EOF'
import random, sys
import nbd

op, uri, model_path, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
rng = random.Random(seed)
with open(model_path, "rb") as f:
    model = bytearray(f.read())
h = nbd.NBD()
h.connect_uri(uri)
size = h.get_size()
assert size == len(model), (size, len(model))

pieces = []
off = 0
while off < size:
    n = min(size - off, rng.choice((rng.randint(1, 4096),
                                    rng.randint(1, 64) * 4096,
                                    rng.randint(1, 256 * 1024))))
    pieces.append((off, n))
    off += n
rng.shuffle(pieces)

if op == "write":
    with open(sys.argv[5], "rb") as f:
        data2 = f.read()
    count = int(sys.argv[6])
    written = 0
    for off, n in pieces[:count]:
        h.pwrite(data2[off:off + n], off)
        model[off:off + n] = data2[off:off + n]
        written += n
    h.flush()
    with open(model_path, "wb") as f:
        f.write(model)
    print("pieces: %d of %d pieces overwritten, %d bytes"
          % (min(count, len(pieces)), len(pieces), written))
else:
    for off, n in pieces:
        got = h.pread(n, off)
        if got != model[off:off + n]:
            bad = next(i for i in range(n) if got[i] != model[off + i])
            sys.exit("pieces: MISMATCH at byte %d (piece [%d, +%d)): "
                     "read 0x%02x, expected 0x%02x"
                     % (off + bad, off, n, got[bad], model[off + bad]))
    print("pieces: %d pieces read back in a shuffled order, all equal"
          % len(pieces))
h.shutdown()
EOF

# The control socket (nbdcached only) needs `nbdcache flush`.
have_flush=no
if [ -x "$NBDCACHE_TOOL" ] && "$NBDCACHE_TOOL" --help | grep -q '^  flush'; then
  have_flush=yes
else
  echo "NOTE: $NBDCACHE_TOOL has no flush command: nbdcached is flushed" \
       "with flush_on_stop = yes instead"
fi

# serve LABEL CMD: one start of the server of $kind on $dir/c.conf, its
# output in $dir/LABEL.log (the tail shown if it fails).
serve ()
{
  local label=$1 cmd=$2 rc=0 t0=$EPOCHREALTIME log=$dir/$1.log
  run_server "$kind" "$dir/c.conf" disk -- "$cmd" 2> "$log" || rc=$?
  if [ $rc != 0 ]; then
    echo "---- $log (tail) ----" >&2
    tail -n 60 "$log" >&2
    echo "---- end of log ----" >&2
    die "[$kind] $label: exit status $rc (seed $seed)"
  fi
  grep -h '^pieces:' "$log" | sed "s/^/[$kind] $label: /" || true
  echo "[$kind] $label OK: $(awk "BEGIN { printf \"%.1f\", $EPOCHREALTIME - $t0 }") s"
}

for kind in $(server_kinds); do
  echo "==== $kind ===="
  dir=$tmp/$kind
  mkdir -p "$dir"
  cp "$tmp/data1.img" "$dir/model.img"
  flush_how=flush_on_stop
  [ $kind = nbdcached ] && [ $have_flush = yes ] && flush_how=control
  write_config "$dir/c.conf" "$dir/disk.img" "$size" \
    "cache = ssd" "mode = writeback" "sequential_cutoff = 0"
  cat >> "$dir/c.conf" <<EOF

[cache ssd]
path = $dir/cache.img
size = $cache_size
create = yes
bucket_size = 64K
direct = no
EOF
  if [ $flush_how = control ]; then
    sed -i "s|^\[server\]\$|&\ncontrol_socket = $dir/ctl|" "$dir/c.conf"
  fi
  py="'$PYTHON' '$tmp/pieces.py'"

  # 1. fill past capacity, overwrite pieces, read back twice.
  serve write "nbdcopy '$tmp/data1.img' \"\$uri\" &&
               $py write \"\$uri\" '$dir/model.img' $((seed + 1)) \
                 '$tmp/data2.img' $overwrites &&
               nbdcopy \"\$uri\" '$dir/out.img' &&
               cmp '$dir/model.img' '$dir/out.img' &&
               $py read \"\$uri\" '$dir/model.img' $((seed + 2)) &&
               { [ $flush_how != control ] ||
                 '$NBDCACHE_TOOL' stats --socket '$dir/ctl' --json disk \
                   > '$dir/stats-write.json'; }"
  rm -f "$dir/out.img"
  if [ $flush_how = control ]; then
    "$PYTHON" - "$dir/stats-write.json" <<'EOF' ||
import json, sys
doc = json.load(open(sys.argv[1]))
e = doc["exports"][0]
c = doc["caches"][0]
print("[nbdcached] write: hits %d misses %d promotions %d bypasses %d, "
      "written back %d bytes in %d batches, throttled writes %d; cache: "
      "evictions %d, gc_runs %d, discards %d in %d batches"
      % (e["hits"], e["misses"], e["promotions"], e["bypasses"],
         e["writeback_bytes"], e["writeback_batches"], e["throttled_writes"],
         c["evictions"], c["gc_runs"], c["discards"], c["discard_batches"]))
assert c["evictions"] > 0, "no evictions"
assert e["writeback_bytes"] > 0, "nothing written back"
EOF
      die "[$kind] the write phase did not evict and write back (seed $seed)"
  fi
  cmp -s "$tmp/data1.img" "$dir/model.img" &&
    die "[$kind] the overwrites changed nothing: the model is the first file"

  # 2. clean restart on the same cache: everything again.
  serve restart "qemu-img convert -f raw -O raw \"\$uri\" '$dir/out.img' &&
                 cmp '$dir/model.img' '$dir/out.img' &&
                 $py read \"\$uri\" '$dir/model.img' $((seed + 3))"
  rm -f "$dir/out.img"

  # 3. fresh dirty data, then flush: the backing file must equal the model.
  write3="$py write \"\$uri\" '$dir/model.img' $((seed + 4)) \
            '$tmp/data3.img' $overwrites"
  if [ $flush_how = control ]; then
    tool="'$NBDCACHE_TOOL'"
    serve flush "$write3 &&
                 $tool stats --socket '$dir/ctl' --json disk > '$dir/stats-pre.json' &&
                 $tool flush --socket '$dir/ctl' disk &&
                 cmp '$dir/model.img' '$dir/disk.img' &&
                 $tool stats --socket '$dir/ctl' --json disk > '$dir/stats.json' &&
                 $tool stats --socket '$dir/ctl' disk >&2"
    "$PYTHON" - "$dir/stats-pre.json" "$dir/stats.json" <<'EOF' ||
import json, sys
pre = json.load(open(sys.argv[1]))["exports"][0]
doc = json.load(open(sys.argv[2]))
e = doc["exports"][0]
c = doc["caches"][0]
print("[nbdcached] flush: dirty before %d bytes (zero extents %d), after %d;"
      " written back in this run %d bytes"
      % (pre["dirty_bytes"], pre["dirty_zero_bytes"], e["dirty_bytes"],
         e["writeback_bytes"]))
assert e["dirty_bytes"] == 0 and e["dirty_zero_bytes"] == 0, e
assert c["dirty_bytes"] == 0, c
EOF
      die "[$kind] dirty data left after nbdcache flush (seed $seed)"
    grep -h "clean (" "$dir/flush.log" | sed "s/^/[$kind] /" || true
  else
    sed -i 's/^mode = writeback$/&\nflush_on_stop = yes/' "$dir/c.conf"
    grep -q '^flush_on_stop = yes' "$dir/c.conf" || die "sed flush_on_stop"
    serve flush "$write3"
  fi
  cmp "$dir/model.img" "$dir/disk.img" ||
    die "[$kind] after the flush ($flush_how) the backing file differs" \
        "from what was written (seed $seed)"
  echo "[$kind] after the flush ($flush_how) the backing file equals the data"

  [ -n "$KEEP_TMP" ] || rm -f "$dir/disk.img" "$dir/cache.img" "$dir/model.img"
done
echo "cache pressure OK (seed $seed)"
