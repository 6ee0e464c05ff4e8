#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-config-scale.sh — loading a config is linear in its number of
# sections: 40,000 [export] sections (two of them on one backing, which
# must still be found) pass --check-config well inside a generous bound.
# Before the name index and the sorted identity check, duplicate headers
# were found by a linear search per section and backings compared pairwise:
# 40,000 exports took over 20 s (0.77 s for 20,000).
set -e
. "${srcdir:-.}/functions.sh"
requires python3 timeout

tmp=$(make_tmpdir)
bound=${CONFIG_SCALE_BOUND_S:-10}

# gen N FILE [DUP]: N exports on files that do not exist yet (size = 1M);
# with DUP the last one reuses the first's backing (a conflict).
gen ()
{
  python3 - "$1" "$2" "$tmp" "${3:-}" <<'PY'
import sys
n, path, d, dup = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
with open(path, "w") as f:
    f.write("[server]\nlisten = unix:%s/s.sock\n" % d)
    for i in range(n):
        b = 0 if dup and i == n - 1 else i
        f.write("[export e%d]\nbacking = %s/b%d.img\nsize = 1M\n" % (i, d, b))
PY
}

gen 40000 "$tmp/big.conf"
start=$(date +%s%N)
if ! timeout "$bound" "$NBDCACHED" --check-config "$tmp/big.conf" \
     > "$tmp/big.out"; then
  echo "FAIL: --check-config of 40000 exports did not succeed within ${bound}s" >&2
  exit 1
fi
end=$(date +%s%N)
grep -q "OK (40000 export(s)" "$tmp/big.out"
echo "40000 exports: $(( (end - start) / 1000000 )) ms (bound ${bound} s)"

# The fast path still finds a conflict and a duplicate name.
gen 40000 "$tmp/dup.conf" dup
printf '[export e7]\nbacking = %s/x.img\nsize = 1M\n' "$tmp" >> "$tmp/dup.conf"
rc=0
timeout "$bound" "$NBDCACHED" --check-config "$tmp/dup.conf" \
  2> "$tmp/dup.err" || rc=$?
[ "$rc" = 1 ] || { cat "$tmp/dup.err" >&2; echo "FAIL: rc $rc" >&2; exit 1; }
grep -q "dup.conf:120001:.*same file as \[export e0\]" "$tmp/dup.err" || {
  cat "$tmp/dup.err" >&2; echo "FAIL: the shared backing was not reported" >&2
  exit 1; }
grep -q "duplicate section \[export e7\] (first at line 24)" "$tmp/dup.err" || {
  cat "$tmp/dup.err" >&2; echo "FAIL: the duplicate was not reported" >&2
  exit 1; }
echo "PASS"
