#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# test-spdx.sh — every tracked source file, script, man page and build file
# says its licence: an "SPDX-License-Identifier: BSD-3-Clause" line in its
# first 5 lines (COPYING holds the text).  Which files count, and their
# comment syntax, is decided in one place: build-aux/add-spdx, whose
# --check mode this runs.  Skips (77) outside a git checkout (a release
# tarball has no file list to check).
set -euo pipefail

top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
if ! command -v git >/dev/null ||
   ! git -C "$top_srcdir" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  echo "SKIP: $top_srcdir is not a git checkout"
  exit 77
fi
exec "$top_srcdir/build-aux/add-spdx" --check
