#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-cache-modes.sh — real clients against cached exports, in every cached
# mode (writeback, writethrough, writearound), for nbdcached and for nbdkit
# + the plugin (config=FILE export=disk), with clean restarts in between.
#
# WHAT: for each mode and each server kind: a fresh cache file ([cache]
# create = yes, size = 64M, bucket_size = 64K: a 64 MiB export does not fit
# beside the journal and the index, so reads evict and writeback fills up
# with dirty data) and a fresh 64 MiB backing file of seeded random
# content, then five server starts on the same two files, each stopped
# cleanly (the client command exits, the server shuts down):
#   1. cold:      qemu-img convert the export; it equals the original;
#   2. restart1:  the same; every block is read once, so the cache hits in
#                 the shutdown statistics (> 0) are data that survived the
#                 clean restart and were served from the cache;
#   3. integrity: test-integrity (libnbd, 4 connections, random writes,
#                 zeroes, trims and reads, aligned and not, FUA, checked
#                 against its model; NBDCACHE_SEED = the seed printed here);
#   4. write:     nbdcopy a seeded random file in and back out (cmp); qemu-io
#                 pattern writes (4 KiB-aligned, 512-byte, odd offsets,
#                 across 4 KiB and 64 KiB boundaries, FUA), write zeroes
#                 (with and without unmap, aligned and not), discard, and
#                 reads with patterns; nbdinfo --map: the zeroed ranges are
#                 zero (asserted in writeback; printed in the other modes);
#     then, stopped: writethrough/writearound: the backing file equals the
#                 model (their writes go to it); writeback: the backing file
#                 may lag (write-back is lazy): printed, with dirty_bytes;
#   5. restart2:  the final patterns read back with qemu-io, the zero map
#                 again (writeback), and the whole export equals the model
#                 (the model: src.img + the same qemu-io commands on a local
#                 file).  In writeback with a lagging backing file, that is
#                 data only the cache held, served after a restart.
# WHY: the engine's unit tests drive the cache directly; this drives it
# through both front ends with the clients people use.
# HOW: every server runs in captive mode (run_server: a private socket, the
# clients run by the server's --run), so no ports, no sleeps; each start's
# log goes to a file, shown when the start fails.  For the statistics line
# the plugin runs with nbdkit -v (it is an nbdkit debug message).
# Environment: NBDCACHE_SEED repeats a run (the seed is printed; it seeds the
# backing and nbdcopy contents and test-integrity); TEST_DURATION_S the
# seconds of test-integrity per mode and kind (default 1); TEST_SIZE_M the
# export size in MiB (default 64; at least 32); CACHE_DIRECT=yes for an
# O_DIRECT cache file; MODES a subset of the modes; SERVERS one kind;
# KEEP_TMP=1 keeps the files and logs.
set -e
. "${srcdir:-.}/functions.sh"
requires qemu-img qemu-io nbdcopy nbdinfo cmp dd
requires_python

seed=${NBDCACHE_SEED:-$RANDOM$RANDOM}
echo "seed $seed (set NBDCACHE_SEED=$seed to repeat)"
modes=${MODES:-writeback writethrough writearound}
duration=${TEST_DURATION_S:-1}
prog=$(cd "${builddir:-.}" && pwd)/test-integrity
[ -x "$prog" ] || die "$prog is not built (make check builds it)"

K=1024
M=$((1024 * 1024))
size=$((${TEST_SIZE_M:-64} * M))

tmp=$(make_tmpdir)

# Seeded random contents: the backing file's original and nbdcopy's input.
"$PYTHON" - "$seed" "$size" "$tmp/orig.img" "$tmp/src.img" <<'EOF'
import random, sys
seed, size = int(sys.argv[1]), int(sys.argv[2])
for i, path in enumerate(sys.argv[3:]):
    with open(path, "wb") as f:
        f.write(random.Random(seed * 2 + i).randbytes(size))
EOF

# The cache file through the page cache by default (direct = no): with
# O_DIRECT on a small VM's disk the runs take about twice as long, and
# test-cache-crash.sh already serves from an O_DIRECT cache.  The engine
# wants block-aligned buffers either way, so nbdkit's unaligned buffers
# take the same bounce path.  CACHE_DIRECT=yes uses O_DIRECT where the
# file system supports it (tmpfs does not).
direct=no
if [ "${CACHE_DIRECT:-no}" = yes ]; then
  if dd if=/dev/zero of="$tmp/direct-probe" bs=4096 count=1 oflag=direct \
       2>/dev/null; then
    direct=yes
  else
    echo "NOTE: $tmp does not support O_DIRECT: the cache uses direct = no"
  fi
  rm -f "$tmp/direct-probe"
fi
echo "cache file direct = $direct"

# ---- the qemu-io commands and their model ---------------------------------

# Applied after nbdcopy filled the export with src.img: every read checks
# a pattern that the commands before it wrote.
zstart=$((20 * M + 123)) zlen=100000     # unaligned zeroes, whole blocks inside
cmds=(
  # aligned write and read back
  -c "write -P 0xab 0 1M"
  -c "read -P 0xab 0 1M"
  # FUA write
  -c "write -f -P 0x77 1M 64k"
  -c "read -P 0x77 1M 64k"
  # zeroes (no unmap: NBD_CMD_FLAG_NO_HOLE) inside written data
  -c "write -z 256k 256k"
  -c "read -P 0 256k 256k"
  -c "read -P 0xab 0 256k"
  -c "read -P 0xab 512k 512k"
  # discard, aligned: on a file backing, trimmed data reads back as zeroes
  # (the backing store is trimmed too); the NBD spec alone would not
  # promise it
  -c "write -P 0xcd 2M 1M"
  -c "discard 2M 1M"
  -c "read -P 0 2M 1M"
  # write zeroes that may unmap
  -c "write -P 0xee 6M 1M"
  -c "write -z -u 6M 1M"
  -c "read -P 0 6M 1M"
  # 512-byte aligned writes inside a 4 KiB block, neighbours unchanged
  -c "write -P 0x33 $((8 * K + 512)) 512"
  -c "write -P 0x34 $((8 * K + 3584)) 512"
  -c "read -P 0xab $((8 * K)) 512"
  -c "read -P 0x33 $((8 * K + 512)) 512"
  -c "read -P 0xab $((8 * K + 1024)) 2560"
  -c "read -P 0x34 $((8 * K + 3584)) 512"
  -c "read -P 0xab $((12 * K)) 512"
  # unaligned write at an odd offset, its neighbours unchanged
  -c "write -P 0x5a 4097 1000"
  -c "read -P 0x5a 4097 1000"
  -c "read -P 0xab 4096 1"
  -c "read -P 0xab 5097 1"
  # unaligned zeroes overlapping the end of it
  -c "write -z 5000 300"
  -c "read -P 0 5000 300"
  -c "read -P 0x5a 4097 903"
  -c "read -P 0xab 5300 100"
  # an unaligned FUA write crossing a 4 KiB boundary
  -c "write -P 0x22 $((3 * M)) 64k"
  -c "write -f -P 0x11 $((3 * M + 4000)) 200"
  -c "read -P 0x11 $((3 * M + 4000)) 200"
  -c "read -P 0x22 $((3 * M + 3999)) 1"
  -c "read -P 0x22 $((3 * M + 4200)) 1"
  # an odd-sized write at an odd offset across a 64 KiB bucket boundary
  -c "write -P 0x44 $((16 * M - 3)) 70001"
  -c "read -P 0x44 $((16 * M - 3)) 70001"
  # unaligned zeroes spanning whole blocks, over written data
  -c "write -P 0x55 $((20 * M)) 256k"
  -c "write -z $zstart $zlen"
  -c "read -P 0 $zstart $zlen"
  -c "read -P 0x55 $((20 * M)) 123"
  -c "read -P 0x55 $((zstart + zlen)) 1000"
  # far from the rest, and the last byte of the export
  -c "write -P 0x99 $((size - 4 * M)) 2M"
  -c "read -P 0x99 $((size - 4 * M)) 2M"
  -c "write -P 0x42 $((size - 1)) 1"
  -c "read -P 0x42 $((size - 1)) 1"
  -c "flush"
)

# What the commands above leave behind, read after a restart.
final_reads=(
  -c "read -P 0xab 0 4096"
  -c "read -P 0x5a 4097 903"
  -c "read -P 0 5000 300"
  -c "read -P 0xab 5300 2892"
  -c "read -P 0xab $((8 * K)) 512"
  -c "read -P 0x33 $((8 * K + 512)) 512"
  -c "read -P 0xab $((8 * K + 1024)) 2560"
  -c "read -P 0x34 $((8 * K + 3584)) 512"
  -c "read -P 0xab $((12 * K)) $((244 * K))"
  -c "read -P 0 256k 256k"
  -c "read -P 0xab 512k 512k"
  -c "read -P 0x77 1M 64k"
  -c "read -P 0 2M 1M"
  -c "read -P 0x22 $((3 * M)) 4000"
  -c "read -P 0x11 $((3 * M + 4000)) 200"
  -c "read -P 0x22 $((3 * M + 4200)) $((64 * K - 4200))"
  -c "read -P 0 6M 1M"
  -c "read -P 0x44 $((16 * M - 3)) 70001"
  -c "read -P 0x55 $((20 * M)) 123"
  -c "read -P 0 $zstart $zlen"
  -c "read -P 0x55 $((zstart + zlen)) $((20 * M + 256 * K - zstart - zlen))"
  -c "read -P 0x99 $((size - 4 * M)) 2M"
  -c "read -P 0x42 $((size - 1)) 1"
)

# Ranges that write zeroes left as whole 4 KiB blocks: OFFSET:LENGTH.
zb0=$(( (zstart + 4095) / 4096 * 4096 ))
zb1=$(( (zstart + zlen) / 4096 * 4096 ))
zero_ranges="$((256 * K)):$((256 * K)) $((6 * M)):$M $zb0:$((zb1 - zb0))"

# qemu_io_ok LOG: qemu-io's exit status is not reliable for failed
# commands; its output names them.
qemu_io_ok ()
{
  ! grep -i 'fail\|error\|mismatch' "$1"
}

# The model: src.img with the same commands, on a local file.  Both lists
# must pass there, or the test itself is wrong.
cp "$tmp/src.img" "$tmp/model.img"
qemu-io -f raw "$tmp/model.img" "${cmds[@]}" > "$tmp/model.log" 2>&1 &&
  qemu_io_ok "$tmp/model.log" ||
  { cat "$tmp/model.log"; die "qemu-io on the local model file failed"; }
qemu-io -f raw -r "$tmp/model.img" "${final_reads[@]}" > "$tmp/model.log" 2>&1 &&
  qemu_io_ok "$tmp/model.log" ||
  { cat "$tmp/model.log"; die "final_reads do not match the local model"; }

# Passed to the server's shell quoted, one word each.
cmds_q=$(printf '%q ' "${cmds[@]}")
final_q=$(printf '%q ' "${final_reads[@]}")

# ---- helpers --------------------------------------------------------------

# serve LABEL CMD: one start of the server of $kind on $dir/c.conf, its
# output in $dir/LABEL.log (shown if it fails).  Sets $log.
serve ()
{
  local label=$1 cmd=$2 rc=0 t0=$EPOCHREALTIME
  log=$dir/$label.log
  run_server "$kind" "$dir/c.conf" disk \
    plugin:-v plugin:-D plugin:nbdkit.backend.datapath=0 \
    -- "$cmd" 2> "$log" || rc=$?
  if [ $rc != 0 ]; then
    echo "---- $log (tail) ----" >&2
    tail -n 80 "$log" >&2
    echo "---- end of log ----" >&2
    die "[$mode/$kind] $label: exit status $rc (seed $seed)"
  fi
  echo "[$mode/$kind] $label: $(awk "BEGIN { printf \"%.1f\", $EPOCHREALTIME - $t0 }") s" >&2
}

# stat_of NAME: a number from the shutdown statistics line of $log.
stat_of ()
{
  local line
  line=$(grep -o "export 'disk': reads .*dirty_bytes [0-9]*" "$log" | tail -n 1) || true
  [ -n "$line" ] || die "[$mode/$kind] no statistics line in $log"
  printf '%s\n' "$line" | sed -n "s/.* $1 \([0-9]*\).*/\1/p"
}

# check_zero_map JSON: every range of $zero_ranges is zero (type bit 2) in
# nbdinfo --map --json output; prints what it finds.
check_zero_map ()
{
  "$PYTHON" - "$1" $zero_ranges <<'EOF'
import json, sys
with open(sys.argv[1]) as f:
    extents = json.load(f)
bad = 0
for r in sys.argv[2:]:
    off, length = map(int, r.split(":"))
    over = [x for x in extents
            if x["offset"] < off + length and off < x["offset"] + x["length"]]
    covered = sum(min(off + length, x["offset"] + x["length"]) -
                  max(off, x["offset"]) for x in over)
    ok = covered == length and all(x["type"] & 2 for x in over)
    print("  [%d, +%d): %s %s" % (off, length, "zero" if ok else "NOT zero",
          [(x["offset"], x["length"], x["type"]) for x in over]))
    bad |= not ok
sys.exit(bad)
EOF
}

# ---- the runs -------------------------------------------------------------

for mode in $modes; do
  case $mode in
    writeback|writethrough|writearound) ;;
    *) die "unknown mode '$mode' in MODES" ;;
  esac
  for kind in $(server_kinds); do
    echo "==== $mode / $kind ====" >&2
    dir=$tmp/$mode-$kind
    mkdir -p "$dir"
    cp "$tmp/orig.img" "$dir/disk.img"
    write_config "$dir/c.conf" "$dir/disk.img" - "cache = ssd" "mode = $mode"
    cat >> "$dir/c.conf" <<EOF

[cache ssd]
path = $dir/cache.img
size = 64M
create = yes
bucket_size = 64K
direct = $direct
EOF

    # 1. cold cache: a full read, promoting into the cache (and evicting:
    # the export is larger than the cache).
    serve cold "qemu-img convert -O raw \"\$uri\" $dir/out &&
                cmp $tmp/orig.img $dir/out"
    [ -f "$dir/cache.img" ] || die "[$mode/$kind] no cache file was created"
    echo "[$mode/$kind] cold read OK: promotions $(stat_of promotions)" \
         "bypasses $(stat_of bypasses)"

    # 2. clean restart on the same cache: the same content, partly from
    # the cache.  Every block is read once, so a hit is data that the cold
    # read put into the cache and that survived the restart.
    serve restart1 "qemu-img convert -O raw \"\$uri\" $dir/out &&
                    cmp $tmp/orig.img $dir/out"
    hits=$(stat_of hits)
    [ "$hits" -gt 0 ] ||
      die "[$mode/$kind] no cache hits in a full read after a clean" \
          "restart: the cache's contents were not served"
    echo "[$mode/$kind] full read after a restart OK: hits $hits" \
         "misses $(stat_of misses)"

    # 3. libnbd: 4 connections, random I/O against a model.
    serve integrity "NBDCACHE_SEED=$seed TEST_DURATION_S=$duration \
                     SERVER_KIND=$kind '$prog' \"\$uri\" >&2"
    grep '^test-integrity: seed' "$log" | sed "s/^/[$mode\/$kind] /"

    # 4. nbdcopy round trip, qemu-io, the zero map.
    serve write "nbdcopy $tmp/src.img \"\$uri\" &&
                 nbdcopy \"\$uri\" $dir/copy &&
                 cmp $tmp/src.img $dir/copy &&
                 { qemu-io -f raw \"\$uri\" $cmds_q > $dir/qemu-io.log 2>&1 ||
                   { cat $dir/qemu-io.log; exit 1; }; } &&
                 nbdinfo --map --json \"\$uri\" > $dir/map.json"
    qemu_io_ok "$dir/qemu-io.log" ||
      die "[$mode/$kind] qemu-io reported a failure (see above)"
    rm -f "$dir/copy"
    if [ $mode = writeback ]; then
      check_zero_map "$dir/map.json" ||
        die "[$mode/$kind] nbdinfo --map: zeroed ranges are not zero"
      echo "[$mode/$kind] nbdinfo --map: zeroed ranges are zero"
    else
      echo "[$mode/$kind] nbdinfo --map (not checked in $mode):"
      check_zero_map "$dir/map.json" || true
    fi
    dirty=$(stat_of dirty_bytes)
    if [ $mode = writeback ]; then
      lagged=no
      if cmp -s "$tmp/model.img" "$dir/disk.img"; then
        echo "[$mode/$kind] after a clean stop the backing file holds" \
             "every write (dirty_bytes $dirty)"
      else
        lagged=yes
        echo "[$mode/$kind] after a clean stop the backing file lags" \
             "(dirty_bytes $dirty): the cache holds the rest"
      fi
    else
      cmp "$tmp/model.img" "$dir/disk.img" ||
        die "[$mode/$kind] after a clean stop the backing file differs" \
            "from the model ($mode writes go to the backing store)"
      echo "[$mode/$kind] backing file equals the model (dirty_bytes $dirty)"
    fi
    echo "[$mode/$kind] nbdcopy round trip and qemu-io OK"

    # 5. clean restart: the patterns, the zero map, the whole export.
    serve restart2 "{ qemu-io -r -f raw \"\$uri\" $final_q > $dir/final.log 2>&1 ||
                      { cat $dir/final.log; exit 1; }; } &&
                    nbdinfo --map --json \"\$uri\" > $dir/map2.json &&
                    qemu-img convert -O raw \"\$uri\" $dir/out &&
                    cmp $tmp/model.img $dir/out"
    qemu_io_ok "$dir/final.log" ||
      die "[$mode/$kind] qemu-io after a restart reported a failure"
    if [ $mode = writeback ]; then
      check_zero_map "$dir/map2.json" ||
        die "[$mode/$kind] nbdinfo --map after a restart: zeroed ranges" \
            "are not zero"
    fi
    echo "[$mode/$kind] after a restart: patterns, zeroes and the whole" \
         "export OK (hits $(stat_of hits) misses $(stat_of misses))"
    if [ $mode = writeback ] && [ "$lagged" = yes ]; then
      echo "[$mode/$kind] the backing file lagged, the export did not:" \
           "the cache held and served the rest across the restart"
    fi

    # Free the space (about 200 MiB per mode and kind) unless kept.
    [ -n "$KEEP_TMP" ] || rm -f "$dir/out" "$dir/disk.img" "$dir/cache.img"
  done
done
echo "cache modes OK (seed $seed)"
