#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-protocol-fuzz.sh — a live server survives a seeded protocol fuzzer
# (protocol-fuzz.py: mutated handshakes, partial headers then disconnects,
# lying lengths, pipelines of thousands, random requests) and answers a
# clean client (nbdinfo) after every batch; for each server kind
# (nbdcached, nbdkit + the plugin), on a cached export.
# NBDCACHE_SEED picks the seed (printed); PROTOCOL_FUZZ_SECONDS the time
# per server (default 20).
set -e
. "${srcdir:-.}/functions.sh"
requires nbdinfo truncate
requires_python

seed=${NBDCACHE_SEED:-$(( $(date +%s) % 100000 ))}
secs=${PROTOCOL_FUZZ_SECONDS:-20}
echo "seed: $seed (NBDCACHE_SEED=$seed to repeat)"
tmp=$(make_tmpdir)
truncate -s 16M "$tmp/disk.img"
write_config "$tmp/c.conf" "$tmp/disk.img" - \
  "cache = ssd" "mode = writeback" \
  "" "[cache ssd]" "path = $tmp/ssd.img" "size = 32M" "create = yes" \
  "bucket_size = 64K" "direct = no"

failed=""
# Abusive clients hang up mid-request: with an ASan plugin, nbdkit then
# deadlocks at exit (hangup_server_kinds says why).
for kind in $(hangup_server_kinds); do
  echo "==== $kind ====" >&2
  run_server "$kind" "$tmp/c.conf" disk -- \
    "$PYTHON $(abspath "${srcdir:-.}")/protocol-fuzz.py \"\$uri\" $secs $seed $kind" ||
    failed="$failed $kind"
done
[ -z "$failed" ] || die "failed with:$failed (seed $seed)"
