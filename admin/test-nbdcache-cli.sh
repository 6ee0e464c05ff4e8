#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# test-nbdcache-cli.sh — the nbdcache command line, end to end on files.
#
# WHAT: format (sparse creation, sizes, refusals, --force), show (text and
# JSON), check (clean, one superblock copy damaged -> still clean but
# reported, both damaged -> 1, a damaged prio copy or journal -> 1, a
# garbage file -> 2 with "not an nbdcache cache device"), that show and
# check never modify the device, and the usage and exit statuses.
# HOW: run by "make check" in admin/ with NBDCACHE pointing at the binary
# (default ./nbdcache).  Every check prints ok/FAIL; the script exits 1 if
# any failed.  Devices are sparse files in a private temporary directory.
set -u
: "${NBDCACHE:=./nbdcache}"

if [ ! -x "$NBDCACHE" ]; then
    echo "$0: $NBDCACHE not built" >&2
    exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test-nbdcache-cli.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
failures=0

fail () {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

ok () {
    echo "ok: $*"
}

# run EXPECTED_STATUS DESCRIPTION ARGS...: run nbdcache, keep its output
# in $tmp/out and $tmp/err, check the exit status.
run () {
    expect=$1
    what=$2
    shift 2
    "$NBDCACHE" "$@" >"$tmp/out" 2>"$tmp/err"
    status=$?
    if [ "$status" -ne "$expect" ]; then
        fail "$what: exit status $status, expected $expect"
        sed 's/^/  stdout: /' "$tmp/out" >&2
        sed 's/^/  stderr: /' "$tmp/err" >&2
        return 1
    fi
    ok "$what"
}

# expect FILE PATTERN DESCRIPTION: a fixed string must be in out/err.
expect () {
    if grep -F -q -- "$2" "$tmp/$1"; then
        ok "$3"
    else
        fail "$3: '$2' not in std$1"
        sed "s/^/  std$1: /" "$tmp/$1" >&2
    fi
}

# poke FILE OFFSET: overwrite one byte (a zero byte in a fresh cache)
# with 0x55.
poke () {
    printf 'U' | dd of="$1" bs=1 seek="$2" conv=notrunc 2>/dev/null ||
        fail "dd into $1 at $2"
}

sum () {
    cksum <"$1"
}

MiB=1048576
dev="$tmp/cache.img"

# ---- usage ----
run 2 "no arguments" && expect err "Usage: nbdcache" "no arguments prints usage"
run 0 "--help" --help && expect out "nbdcache COMMAND PATH" "--help prints usage"
run 0 "--version" --version && expect out "nbdcache " "--version"
run 2 "unknown command" frobnicate "$dev" &&
    expect err "unknown command 'frobnicate'" "unknown command named"
run 2 "format without PATH" format
run 2 "show with two paths" show a b
run 2 "bad size" format "$dev" --size 12Q &&
    expect err "is not a size" "bad size explained"
run 2 "unknown option" check --frobnicate "$dev"

# ---- format ----
run 2 "format of a missing file without --size" format "$dev" &&
    expect err "give --size" "missing file: hint to use --size"
run 0 "format --size 64M" format "$dev" --size 64M &&
    expect out "formatted an nbdcache cache" "format reports success"
size=$(wc -c <"$dev")
[ "$size" -eq $((64 * MiB)) ] && ok "file created with 64 MiB" ||
    fail "file size $size, expected $((64 * MiB))"
uuid1=$(sed -n 's/^  uuid: *//p' "$tmp/out")
[ -n "$uuid1" ] && ok "format prints the uuid" || fail "no uuid printed"

run 1 "format of a formatted cache without --force" format "$dev" &&
    expect err "already holds an nbdcache cache" "refusal says why" &&
    expect err "--force" "refusal mentions --force"
run 0 "format --force" format "$dev" --force
uuid2=$(sed -n 's/^  uuid: *//p' "$tmp/out")
[ -n "$uuid2" ] && [ "$uuid2" != "$uuid1" ] && ok "--force made a new cache" ||
    fail "uuid after --force: '$uuid2' (before '$uuid1')"

# ---- show and check on a clean cache ----
before=$(sum "$dev")
run 0 "show" show "$dev" &&
    expect out "uuid:          $uuid2" "show: uuid" &&
    expect out "64 of 1 MiB" "show: buckets" &&
    expect out "journal      buckets 1-4" "show: journal region" &&
    expect out "exports:       0 of 512 slots" "show: export table" &&
    expect out "0 keys pending replay" "show: journal keys" &&
    expect out "56 free" "show: bucket usage" &&
    expect out "data checksums: yes" "show: data checksums"
run 0 "show --json" show --json "$dev" &&
    expect out '"damaged": false' "show --json: damaged false" &&
    expect out "\"uuid\": \"$uuid2\"" "show --json: uuid"
if command -v python3 >/dev/null 2>&1; then
    if python3 -m json.tool <"$tmp/out" >/dev/null 2>&1; then
        ok "show --json parses"
    else
        fail "show --json is not valid JSON"
    fi
fi
run 0 "check of a clean cache" check "$dev" &&
    expect out "superblock copy 0: ok, seq 2 (in use)" "check: copy 0" &&
    expect out "superblock copy 1: ok, seq 1" "check: copy 1" &&
    expect out "prio copy A: ok" "check: prio A" &&
    expect out "journal: ok" "check: journal" &&
    expect out "index: ok" "check: index" &&
    expect out "result: clean" "check: clean"
[ "$(sum "$dev")" = "$before" ] && ok "show and check did not write" ||
    fail "show or check modified the device"

# ---- bucket and journal sizes ----
dev2="$tmp/small-buckets.img"
run 0 "format --bucket-size 64K --journal-size 8M" \
    format "$dev2" --size 32M --bucket-size 64K --journal-size 8M
run 0 "show of 64K buckets" show "$dev2" &&
    expect out "512 of 64 KiB" "show: 64 KiB buckets" &&
    expect out "journal      buckets 1-128 (128 buckets, 8 MiB)" \
        "show: 8 MiB journal"
run 0 "check of 64K buckets" check "$dev2"
run 1 "bucket size not a power of two" format "$dev2" --force --bucket-size 3M &&
    expect err "power of two" "bad bucket size explained"
run 1 "bucket size too small" format "$dev2" --force --bucket-size 32K
run 1 "journal under 4 buckets" format "$dev2" --force --journal-size 1M &&
    expect err "at least 4 buckets" "small journal explained"
run 1 "device too small" format "$tmp/tiny.img" --size 8M &&
    expect err "at least 16777216 bytes" "minimum size given"

# ---- damage ----
# One superblock copy damaged: the other is used; check reports it, exit 0.
poke "$dev" 200
run 0 "check with superblock copy 0 damaged" check "$dev" &&
    expect out "superblock copy 0: DAMAGED (bad checksum)" \
        "check reports the damaged copy" &&
    expect out "superblock copy 1: ok, seq 1 (in use)" "check uses copy 1" &&
    expect out "result: clean" "one bad copy is not damage"
run 0 "show with superblock copy 0 damaged" show "$dev" &&
    expect out "copy 0: INVALID (bad checksum)" "show reports the bad copy"

# Both copies damaged: 1.
poke "$dev" $((4096 + 200))
run 1 "check with both superblock copies damaged" check "$dev" &&
    expect out "result: DAMAGED" "check: damaged" &&
    expect err "copy 0: bad checksum; copy 1: bad checksum" \
        "both reasons given"
run 1 "show with both copies damaged" show "$dev"
run 1 "show --json with both copies damaged" show --json "$dev" &&
    expect out '"damaged": true' "show --json: damaged true"
run 1 "format refuses a damaged cache without --force" format "$dev" &&
    expect err "damaged nbdcache cache" "damaged cache named"

# Prio copy A damaged (B is never written before the first prio update).
run 0 "reformat" format "$dev" --force
poke "$dev" $((5 * MiB + 100))
run 1 "check with the only prio copy damaged" check "$dev" &&
    expect out "prio copy A: DAMAGED" "prio damage reported"

# The journal's only entry damaged.
run 0 "reformat" format "$dev" --force
poke "$dev" $((1 * MiB + 100))
run 1 "check with the journal damaged" check "$dev" &&
    expect out "journal: DAMAGED" "journal damage reported"

# ---- not a cache ----
garbage="$tmp/garbage.img"
dd if=/dev/urandom of="$garbage" bs=1M count=20 2>/dev/null
before=$(sum "$garbage")
run 2 "check of a garbage file" check "$garbage" &&
    expect err "not an nbdcache cache device" "garbage: refused" &&
    expect out "not an nbdcache cache device" "garbage: result line"
run 2 "show of a garbage file" show "$garbage" &&
    expect err "not an nbdcache cache device" "garbage: named" &&
    if grep -q -i "format" "$tmp/err"; then
        fail "garbage: show suggests formatting someone's data"
    else
        ok "garbage: no hint to format it"
    fi
[ "$(sum "$garbage")" = "$before" ] && ok "garbage untouched" ||
    fail "show or check modified the garbage file"
run 2 "check of a missing file" check "$tmp/nothing.img"
: >"$tmp/empty.img"
run 2 "check of an empty file" check "$tmp/empty.img"

if [ "$failures" -ne 0 ]; then
    echo "$0: $failures failure(s)" >&2
    exit 1
fi
echo "$0: all passed"
exit 0
