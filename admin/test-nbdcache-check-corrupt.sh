#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# test-nbdcache-check-corrupt.sh — nbdcache check on corrupt caches with
# dirty data: DAMAGED, never clean.
#
# WHAT: common/cache/test-corrupt builds a writeback cache full of dirty
# data (a clean, a crashed and a crashed one whose newest journal entry
# carries its data inline, version 4) and writes every image it opens to
# a directory: the three base images, the inline one with the data of its
# newest write lost (the next open writes it back), a genuinely torn last
# bset, and the
# corruptions (a zeroed bset in the middle of a node's chain, a zeroed key
# block of a durable bset, bset.seq = 0 and a key count one short with
# recomputed checksums, a bad checksum on a durable bset, a journal entry
# with seq 2^64 - 1, the newest journal entry with one bit flipped or one
# 512-byte sector zeroed, one byte of the version 4 entry's inline data
# flipped (stamp left bad or recomputed), a prio gen rolled back against
# the keys and against
# the other prio copy, the newer superblock copy's export URI changed, a
# dirty key of an export id the table does not have).  nbdcache check
# must say clean (exit 0) for the base images, the lost inline data and
# the torn bset, and for the unclean image
# with its journal in the version 1 layout, REFUSED (exit 1, "written by a
# newer version") for the newest journal entry rewritten as version 5,
# and DAMAGED (exit 1) for
# every corruption, and must not change any image.  nbdcache check --json
# on every image must print one JSON document that says the same: status,
# exit status, problem count, every report line and PROBLEM detail of the
# text output, a non-empty problems list exactly when damaged.
# HOW: run by "make check" in admin/ with NBDCACHE pointing at the binary
# and TEST_CORRUPT at the test-corrupt program (built by "make check" in
# common/cache, which runs first; skipped, 77, if it is not built).
set -u
: "${NBDCACHE:=./nbdcache}"
: "${TEST_CORRUPT:=../common/cache/test-corrupt}"
PYTHON=/usr/bin/python3
[ -x "$PYTHON" ] || PYTHON=python3

if [ ! -x "$NBDCACHE" ]; then
    echo "$0: $NBDCACHE not built" >&2
    exit 1
fi
if [ ! -x "$TEST_CORRUPT" ]; then
    echo "$0: $TEST_CORRUPT not built; skipping" >&2
    exit 77
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test-nbdcache-check-corrupt.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
failures=0

fail () {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

mkdir "$tmp/img"
if ! NBDCACHE_CORRUPT_IMAGES="$tmp/img" NBDCACHE_CORRUPT_MUTANTS=0 \
        "$TEST_CORRUPT" >"$tmp/log" 2>&1; then
    cat "$tmp/log" >&2
    fail "test-corrupt did not pass"
fi

# check NAME STATUS WORD: nbdcache check on NAME.img exits STATUS and
# prints "result: WORD"; the image is not modified.
check () {
    img="$tmp/img/$1.img"
    if [ ! -f "$img" ]; then
        fail "$1: no image written"
        return
    fi
    before=$(cksum <"$img")
    "$NBDCACHE" check "$img" >"$tmp/out" 2>&1
    status=$?
    if [ "$status" -ne "$2" ] || ! grep -q "^result: $3" "$tmp/out"; then
        fail "$1: exit status $status, expected $2 and 'result: $3'"
        sed 's/^/  /' "$tmp/out" >&2
    else
        echo "ok: $1: exit $status, $3"
    fi
    [ "$(cksum <"$img")" = "$before" ] || fail "$1: check modified the image"
    check_json "$1" "$img" "$status"
}

# check_json NAME IMG STATUS: --json agrees with the text report.
check_json () {
    "$NBDCACHE" check "$2" >"$tmp/text" 2>/dev/null
    "$NBDCACHE" check --json "$2" >"$tmp/json" 2>/dev/null
    jstatus=$?
    if [ "$jstatus" -ne "$3" ]; then
        fail "$1: check --json exit status $jstatus, text $3"
        return
    fi
    if "$PYTHON" - "$tmp/text" "$tmp/json" "$3" >"$tmp/cmp" 2>&1 <<'EOF'; then
import json, re, sys
text = open(sys.argv[1]).read().splitlines()
raw = open(sys.argv[2]).read()
assert raw.count("\n") == 1, "not one line"
doc = json.loads(raw)
status = int(sys.argv[3])
assert doc["exit_status"] == status, doc["exit_status"]
assert text[0].startswith("checking ") and text[-1].startswith("result: ")
result = text[-1][len("result: "):]
want = {"clean": "clean", "DAMAGED": "damaged", "REFUSED": "newer-version",
        "INCOMPLETE": "incomplete"}[result.split(":")[0].split(" ")[0]]
assert doc["status"] == want, (doc["status"], want)
m = re.match(r"DAMAGED: (\d+) problems?$", result)
assert doc["counts"]["problems"] == (int(m.group(1)) if m else
                                     1 if want == "newer-version" else 0), \
    doc["counts"]
body = text[1:-1]
lines = [l for l in body if not l.startswith("  ")]
details = [l.strip()[len("PROBLEM: "):] if l.strip().startswith("PROBLEM: ")
           else l.strip() for l in body if l.startswith("  ")]
got = ["%s: %s" % (l["stage"], l["message"]) for l in doc["lines"]]
assert got == lines, (got, lines)
assert doc["details"] == details, (doc["details"], details)
probs = ["%s: %s" % (p["stage"], p["message"]) for p in doc["problems"]]
assert probs == ["%s: %s" % (l["stage"], l["message"]) for l in doc["lines"]
                 if l["kind"] == "problem"]
assert (len(probs) > 0) == (want in ("damaged", "newer-version")), probs
print("%s, %d lines, %d problems" % (want, len(got), len(probs)))
EOF
        echo "ok: $1: --json agrees ($(cat "$tmp/cmp"))"
    else
        fail "$1: check --json disagrees with the text report"
        sed 's/^/  /' "$tmp/cmp" >&2
    fi
}

check clean 0 clean
check unclean 0 clean
check torn-bset 0 clean
check journal-plain 0 clean
check inline 0 clean
check inline-data-lost 0 clean
check journal-newer-version 1 "REFUSED: written by a newer version of nbdcache"
for m in zero-middle-bset zero-newest-bset-keys bset-seq-0 bset-nkeys-short \
         old-bad-bset journal-seq-max journal-newest-bit \
         journal-newest-sector prio-gen-rollback \
         prio-gen-rollback-journal \
         prio-copies-gen-backwards sb-export-uri-flip \
         dirty-key-foreign-export inline-data-flip \
         inline-data-flip-stamped journal-delete-flags; do
    check "$m" 1 DAMAGED
done

# show_refused NAME: nbdcache show on an image whose journal a newer
# version wrote says REFUSED, not DAMAGED, and exits 1; --json says
# "newer_version": true and "damaged": false.  A clean image says false.
show_refused () {
    img="$tmp/img/$1.img"
    "$NBDCACHE" show "$img" >"$tmp/show" 2>&1
    status=$?
    if [ "$status" -ne 1 ] ||
       ! grep -q '^journal: *REFUSED: written by a newer version' "$tmp/show" ||
       ! grep -q '^REFUSED: written by a newer version' "$tmp/show" ||
       grep -q DAMAGED "$tmp/show"; then
        fail "$1: show exit $status, expected 1 and REFUSED, not DAMAGED"
        sed 's/^/  /' "$tmp/show" >&2
        return
    fi
    for want in "$1:true" "clean:false"; do
        "$NBDCACHE" show --json "$tmp/img/${want%%:*}.img" \
            >"$tmp/show.json" 2>/dev/null
        if ! "$PYTHON" - "$tmp/show.json" "${want#*:}" <<'EOF'; then
import json, sys
doc = json.load(open(sys.argv[1]))
assert doc["newer_version"] == (sys.argv[2] == "true"), doc
assert doc["damaged"] is False, doc
EOF
            fail "${want%%:*}: show --json newer_version is not ${want#*:}"
            return
        fi
    done
    echo "ok: $1: show says REFUSED (exit 1), --json newer_version"
}
show_refused journal-newer-version

[ "$failures" -eq 0 ] || { echo "$failures failure(s)" >&2; exit 1; }
echo "all ok"
