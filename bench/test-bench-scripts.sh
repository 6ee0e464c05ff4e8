#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# test-bench-scripts.sh — the benchmark scripts cannot rot silently.
#
# WHAT: parses run-bench, run-remote-bench and bench-lib.sh (bash -n), runs
# each script's --help, checks that an unknown option is refused, and (when
# gnuplot is installed) draws a sample table with bench-lib.sh's bench_plot
# and checks the SVG names every column and ratio label.
# WHY: the benchmarks themselves take minutes and are never run by make
# check; a syntax error or a broken helper would otherwise show only when
# someone next benchmarks.  A whole quick remote bench takes about two minutes
# on a small, shared VM: too slow to run here.
# FAILURE: exit 1 with the failing step; 77 (skip) only without bash.

set -euo pipefail
srcdir=${srcdir:-$(dirname "$0")}
bench=$(cd "$srcdir" && pwd)

for f in run-bench run-remote-bench bench-lib.sh; do
  bash -n "$bench/$f" || { echo "FAIL: $f does not parse"; exit 1; }
done
for f in run-bench run-remote-bench; do
  out=$("$bench/$f" --help) || { echo "FAIL: $f --help exited $?"; exit 1; }
  grep -q "^Usage: *bench/$f" <<< "$out" || { echo "FAIL: $f --help has no Usage line"; exit 1; }
  if "$bench/$f" --no-such-option >/dev/null 2>&1; then
    echo "FAIL: $f accepted an unknown option"; exit 1
  fi
done

if command -v gnuplot >/dev/null; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  cat > "$tmp/plot.dat" <<'DAT'
row direct nbdkit-cache nbdcached-wb r-direct r-nbdkit-cache r-nbdcached-wb
"cold-randread-4k-qd32-1conn (kIOPS)" 14.2 11.0 4.1 1.00x 0.77x 0.29x
"randwrite-4k-qd1-fsync (kIOPS)" 0.2 - 1.5 1.00x - 7.50x
DAT
  prog=test tmp=$tmp bash -c '. "$1"; bench_plot "$2" "sample" "$3" 3' _ \
    "$bench/bench-lib.sh" "$tmp/plot.svg" "$tmp/plot.dat" 2>"$tmp/plot.err" ||
    { cat "$tmp/plot.err"; echo "FAIL: bench_plot failed"; exit 1; }
  for word in direct nbdkit-cache nbdcached-wb 0.77x 7.50x cold-randread-4k-qd32-1conn; do
    grep -q -- "$word" "$tmp/plot.svg" || { echo "FAIL: the plot lacks '$word'"; exit 1; }
  done
fi
echo "PASS"
