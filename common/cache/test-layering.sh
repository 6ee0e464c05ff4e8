#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# test-layering.sh — doc/design.md's layering, enforced by reading #include lines.
#
# WHAT: fails if
#   1. anything under common/ includes libev (<ev.h>), OpenSSL (openssl/…)
#      or nbdkit's headers (nbdkit-plugin.h, nbdkit-filter.h …): the engine
#      and its libraries know nothing of the front ends' machinery;
#   2. anything in server/, plugin/ or common/config/ (the config
#      library the front ends share: a user of the engine, not a part of
#      it) includes a header of common/cache other than its public API,
#      cache.h (cache-internal.h, ondisk.h, btree.h … whatever exists there
#      now or later) — with one named exception: layout.h, the format's
#      geometry as pure inline arithmetic (no engine state, no engine
#      symbol), which the config check common/config/config-paths.c, and
#      only it, needs to refuse a too-small cache before it is created,
#      with format's own numbers, and without linking the engine into the
#      config library;
#   3. the front ends cross over: server/ includes nbdkit's headers, or
#      plugin/ includes libev or OpenSSL;
#   4. anything in admin/ includes a header of common/cache outside the
#      public API (cache.h) and the inspection headers (ADMIN_HEADERS:
#      assemble.h, the one way to put a device together, read-only for
#      show/check; the on-disk format and geometry; format; the superblock
#      and cache-device reads; key predicates; the bucket usage and the
#      journal check that inspection reports; the data checksums, which
#      check --data verifies the cached data against).  In particular never the
#      btree, the bset format or an *-internal.h: recovery is not written
#      again outside the engine;
#   5. two C files (*.c, *.h) anywhere in the tree share a basename
#      (`break request.c:300` in gdb, a grep for a file, must name one);
#   6. a circle between files returns: headers under common/ that include
#      each other, or engine objects (this build's common/cache/.libs/*.o)
#      that call each other (build-aux/file-cycles finds both).  A call
#      circle named below (KNOWN_CALL_CIRCLES, empty now) is tolerated;
#      any other, or a known one grown by a file, fails.
# WHY: "server/ and plugin/ include only the engine's public header" is a
# promise in doc/design.md; a test keeps it true as files are added.
# SELF-TEST: after checking the real tree, it copies the sources to a
# temporary directory, checks that the clean copy passes, then plants one
# violation of each kind and checks that every one is caught — a checker
# that cannot fail is a defect.
# ENV: top_srcdir (set by make check; defaults to two levels above this
# script); objdir, where the engine's objects are (make check: .libs of
# the build directory; the call check is skipped, and says so, when run by
# hand without objects); CC, to build the planted call circle.  Exit 0 = clean, 1 = a violation or a broken self-test.

set -u

if [ -z "${top_srcdir:-}" ]; then
  top_srcdir=$(cd "$(dirname "$0")/../.." && pwd)
fi

nr_bad=0
quiet=0

# Print the names a file includes, one a line ("ev.h", "openssl/ssl.h").
includes ()
{
  sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]\([^>"]*\)[>"].*/\1/p' "$1"
}

violation ()
{
  nr_bad=$((nr_bad + 1))
  [ "$quiet" = 1 ] || echo "$0: $1: includes $2: $3" >&2
}

# Files (*.c, *.h) under $1, at most $2 levels deep, sorted; none if absent.
sources ()
{
  [ -d "$1" ] || return 0
  find "$1" -maxdepth "$2" -type f \( -name '*.c' -o -name '*.h' \) | LC_ALL=C sort
}

# What admin/ may include from common/cache (rule 4).
ADMIN_HEADERS="cache.h assemble.h ondisk.h layout.h format.h super.h cdev.h
bkey.h bucket.h journal.h datacsum.h"

# Check the tree rooted at $1; sets nr_bad to the number of violations.
check_tree ()
{
  root=$1
  nr_bad=0

  for f in $(sources "$root/common" 10); do
    for inc in $(includes "$f"); do
      case $inc in
        ev.h|*/ev.h)
          violation "$f" "$inc" "common/ never includes libev" ;;
        openssl/*|*/openssl/*)
          violation "$f" "$inc" "common/ never includes OpenSSL" ;;
        nbdkit-*.h|*/nbdkit-*.h)
          violation "$f" "$inc" "common/ never includes nbdkit headers" ;;
      esac
    done
  done

  for f in $(sources "$root/server" 1) $(sources "$root/plugin" 1) \
           $(sources "$root/common/config" 1); do
    # The one exception (see the file comment): layout.h, in one file.
    allowed=cache.h
    [ "$f" = "$root/common/config/config-paths.c" ] && allowed="cache.h layout.h"
    for inc in $(includes "$f"); do
      base=${inc##*/}
      case " $allowed " in
        *" $base "*) engine_ok=1 ;;
        *) engine_ok=0 ;;
      esac
      case $inc in
        */common/cache/*|common/cache/*)
          if [ "$engine_ok" = 0 ]; then
            violation "$f" "$inc" "front ends include only cache.h from the engine"
            continue
          fi ;;
      esac
      if [ "$engine_ok" = 0 ] && [ -e "$root/common/cache/$base" ]; then
        violation "$f" "$inc" "front ends include only cache.h from the engine"
      fi
      case $f in
        "$root"/server/*)
          case $inc in
            nbdkit-*.h|*/nbdkit-*.h)
              violation "$f" "$inc" "nbdcached never includes nbdkit headers" ;;
          esac ;;
        "$root"/plugin/*)
          case $inc in
            ev.h|*/ev.h|openssl/*|*/openssl/*)
              violation "$f" "$inc" "the plugin never includes libev or OpenSSL" ;;
          esac ;;
      esac
    done
  done
  for f in $(sources "$root/admin" 1); do
    for inc in $(includes "$f"); do
      base=${inc##*/}
      case $inc in
        */common/cache/*|common/cache/*) ;;
        *) [ -e "$root/common/cache/$base" ] || continue ;;
      esac
      case " $(echo $ADMIN_HEADERS) " in
        *" $base "*) ;;
        *) violation "$f" "$inc" "admin/ includes only cache.h and the inspection headers" ;;
      esac
    done
  done
  dups=$(cd "$root" && find . -path ./build -prune -o -path './build-*' -prune \
           -o -type f \( -name '*.c' -o -name '*.h' \) -print |
         sed 's|.*/||' | LC_ALL=C sort | uniq -d)
  for d in $dups; do
    nr_bad=$((nr_bad + 1))
    [ "$quiet" = 1 ] || echo "$0: $d: two files share this basename" >&2
  done
  [ "$nr_bad" -eq 0 ]
}

# ---- the real tree ----
status=0
tree_ok=1
if check_tree "$top_srcdir"; then
  echo "layering: ok ($top_srcdir)"
else
  echo "layering: FAIL: $nr_bad violation(s) in $top_srcdir" >&2
  status=1
  tree_ok=0
fi

# ---- circles between files ----
cycles="$top_srcdir/build-aux/file-cycles"

# Known call circles, each on one line, files sorted.  Remove a line when
# its circle is gone (the check then keeps it gone).  None is left: the
# bucket set's split (bucket-*.c) ended bucket.o <-> prio.o, super.c's
# (csum.c, format.c) the superblock's circle through the journal, and the
# doors (export-io.c, forget.c) request.o <-> writeback.o.
KNOWN_CALL_CIRCLES=''

# $1 = circles found (one a line); prints those not known.
unknown_circles ()
{
  printf '%s\n' "$1" | while read -r c; do
    [ -n "$c" ] || continue
    printf '%s\n' "$KNOWN_CALL_CIRCLES" | grep -qxF "$c" || echo "$c"
  done
}

inc_circles=$("$cycles" includes "$top_srcdir"/common/*) || status=1
if [ -n "$inc_circles" ]; then
  printf 'layering: FAIL: headers include each other: %s\n' $inc_circles >&2
  status=1
else
  echo "layering: no include circles under common/"
fi

objdir=${objdir:-}
if [ -n "$objdir" ] && ls "$objdir"/*.o >/dev/null 2>&1; then
  objs=$(ls "$objdir"/*.o | grep -v '/cdev-sim\.o$')
  call_circles=$("$cycles" calls $objs) || status=1
  bad=$(unknown_circles "$call_circles")
  if [ -n "$bad" ]; then
    printf '%s\n' "$bad" | sed 's/^/layering: FAIL: a call circle: /' >&2
    status=1
  else
    echo "layering: call circles only the known ones ($(printf '%s\n' "$call_circles" | grep -c .))"
  fi
else
  echo "layering: call circles not checked (no objects; objdir=${objdir:-unset})"
  [ -z "$objdir" ] || status=1
fi

# The circle checks can fail: plant an include circle and a call circle.
ctmp=$(mktemp -d "${TMPDIR:-/tmp}/test-layering-c.XXXXXX") || exit 1
printf '#include "planted-b.h"\n' > "$ctmp/planted-a.h"
printf '#include "planted-a.h"\n' > "$ctmp/planted-b.h"
if [ "$("$cycles" includes "$ctmp")" != "planted-a.h planted-b.h" ]; then
  echo "layering self-test: FAIL: a planted include circle is not caught" >&2
  status=1
fi
if command -v "${CC:-cc}" >/dev/null 2>&1; then
  printf 'int planted_b (void);\nint planted_a (void) { return planted_b (); }\n' \
    > "$ctmp/a.c"
  printf 'int planted_a (void);\nint planted_b (void) { return 0; }\nint planted_c (void) { return planted_a (); }\n' \
    > "$ctmp/b.c"
  if ! ${CC:-cc} -c -o "$ctmp/a.o" "$ctmp/a.c" ||
     ! ${CC:-cc} -c -o "$ctmp/b.o" "$ctmp/b.c" ||
     [ -z "$(unknown_circles "$("$cycles" calls "$ctmp/a.o" "$ctmp/b.o")")" ]; then
    echo "layering self-test: FAIL: a planted call circle is not caught" >&2
    status=1
  fi
elif [ -n "$objdir" ]; then
  echo "layering self-test: FAIL: no C compiler to plant a call circle" >&2
  status=1
fi
rm -rf "$ctmp"

# ---- self-test on a copy ----
tmp=$(mktemp -d "${TMPDIR:-/tmp}/test-layering.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM

(cd "$top_srcdir" &&
 for d in common server plugin; do
   [ -d "$d" ] || continue
   find "$d" -type f \( -name '*.c' -o -name '*.h' \)
 done) | while read -r f; do
  mkdir -p "$tmp/$(dirname "$f")" && cp "$top_srcdir/$f" "$tmp/$f"
done
mkdir -p "$tmp/common/util" "$tmp/common/backing" "$tmp/common/cache" \
         "$tmp/common/config" "$tmp/server" "$tmp/plugin" "$tmp/admin"

# $1 = file to plant (relative), $2 = its content, $3 = description.
expect_caught ()
{
  printf '%s\n' "$2" > "$tmp/$1"
  quiet=1
  if check_tree "$tmp"; then
    echo "layering self-test: FAIL: not caught: $3" >&2
    status=1
  fi
  quiet=0
  rm -f "$tmp/$1"
}

# The clean-copy checks mean something only if the real tree is clean.
if [ "$tree_ok" = 1 ]; then
  quiet=1
  if ! check_tree "$tmp"; then
    echo "layering self-test: FAIL: the clean copy does not pass" >&2
    status=1
  fi
  quiet=0
fi

expect_caught common/util/planted.c '#include <ev.h>' "libev in common/"
expect_caught common/backing/planted.h '#  include <openssl/ssl.h>' \
  "OpenSSL in common/"
expect_caught common/cache/planted.c '#include <nbdkit-plugin.h>' \
  "nbdkit in common/"
expect_caught common/cache/planted.c ' # include "nbdkit-filter.h" /* x */' \
  "nbdkit (indented, quoted) in common/"

# Engine-private headers, whether or not they exist in the real tree yet.
printf '/* planted */\n' > "$tmp/common/cache/planted-internal.h"
expect_caught server/planted.c '#include "planted-internal.h"' \
  "a private engine header in server/"
expect_caught plugin/planted.c '#include "planted-internal.h"' \
  "a private engine header in plugin/"
expect_caught server/planted.h '#include "../common/cache/cache-internal.h"' \
  "a private engine header by path in server/"
expect_caught common/config/planted.c '#include "planted-internal.h"' \
  "a private engine header in common/config/"
expect_caught admin/planted.c '#include "planted-internal.h"' \
  "a private engine header in admin/"
expect_caught admin/planted.c '#include "btree.h"' \
  "the btree (recovery by hand) in admin/"
rm -f "$tmp/common/cache/planted-internal.h"
# layout.h is allowed in config-paths.c only.
expect_caught server/planted.c '#include "layout.h"' "layout.h in server/"
expect_caught common/config/planted.c '#include "layout.h"' \
  "layout.h in another file of common/config/"
expect_caught server/bkey.c '/* planted */' "a duplicate basename"

expect_caught server/planted.c '#include <nbdkit-plugin.h>' "nbdkit in server/"
expect_caught plugin/planted.c '#include <ev.h>' "libev in plugin/"
expect_caught plugin/planted.c '#include <openssl/ssl.h>' "OpenSSL in plugin/"

# And what is allowed stays allowed.
printf '#include "cache.h"\n#include "../common/cache/cache.h"\n' \
  > "$tmp/server/planted-ok.c"
printf '#include <nbdkit-plugin.h>\n#include "cache.h"\n#include "backing.h"\n' \
  > "$tmp/plugin/planted-ok-plugin.c"
quiet=1
if [ "$tree_ok" = 1 ] && ! check_tree "$tmp"; then
  echo "layering self-test: FAIL: allowed includes were reported" >&2
  status=1
fi
quiet=0

[ "$status" -eq 0 ] && echo "layering self-test: ok (19 planted violations caught)"
exit "$status"
