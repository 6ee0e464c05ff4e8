#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-fuzzers.sh — `make check`: every libFuzzer harness for a bounded
# time (FUZZ_TIME, default 15 s each; under ASan/UBSan), after replaying
# the committed regression inputs (fuzz/regressions/<name>/).
# Skips (77) when clang cannot build a libFuzzer binary.
set -euo pipefail
: "${top_srcdir:?}" "${top_builddir:?}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n)\n{ return 0; }\n' \
  >"$tmp/t.c"
if ! ${FUZZ_CC:-clang} -fsanitize=fuzzer,address,undefined "$tmp/t.c" \
     -o "$tmp/t" 2>/dev/null; then
  echo "SKIP: clang -fsanitize=fuzzer does not work (install clang and libclang-rt-14-dev)"
  exit 77
fi
FUZZ_TIME=${FUZZ_TIME:-15} exec "$top_srcdir/fuzz/run-fuzzers"
