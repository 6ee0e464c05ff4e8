#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-nbdinfo.sh — what nbdinfo sees: size, flags, block sizes, description,
# read-only/rotational, the allocation map of a sparse backing file, and
# (nbdcached only) the export list.
set -e
. "${srcdir:-.}/functions.sh"
requires nbdinfo truncate dd
requires_python                 # /usr/bin/python3 parses the JSON

tmp=$(make_tmpdir)

# json_assert FILE PYTHON-BOOL-EXPR… : every expression, evaluated with
# j = the parsed JSON (and e = its first export if it has any), is true.
json_assert ()
{
  local file=$1
  shift
  "$PYTHON" - "$file" "$@" <<'EOF'
import json, sys
with open(sys.argv[1]) as f:
    j = json.load(f)
e = j["exports"][0] if isinstance(j, dict) and j.get("exports") else None
bad = 0
for expr in sys.argv[2:]:
    try:
        ok = eval(expr)
    except Exception as ex:
        ok = False
        print("error evaluating %s: %r" % (expr, ex))
    if not ok:
        print("FAILED: %s" % expr)
        bad = 1
if bad:
    print(json.dumps(j, indent=1))
sys.exit(bad)
EOF
}

# --- 1. a writable, non-rotational export with a description --------------
write_config "$tmp/rw.conf" "$tmp/disk.img" 64M "description = test disk one"
for kind in $(server_kinds); do
  out=$tmp/rw.$kind.json
  run_server "$kind" "$tmp/rw.conf" disk -- "nbdinfo --json \"\$uri\" > $out"
  json_assert "$out" \
    'len(j["exports"]) == 1' \
    'e["export-size"] == 64 * 1024 * 1024' \
    'e["description"] == "test disk one"' \
    'e["is_read_only"] is False' \
    'e["is_rotational"] is False' \
    'e["can_flush"] is True' \
    'e["can_fua"] is True' \
    'e["can_trim"] is True' \
    'e["can_zero"] is True' \
    'e["can_fast_zero"] is True' \
    'e["can_multi_conn"] is True' \
    'e["can_cache"] is True' \
    'e["can_df"] is True' \
    'j["structured"] is True' \
    '"base:allocation" in e["contexts"]' \
    'e["block_size_minimum"] == 1' \
    'e["block_size_preferred"] == 4096' \
    'e["block_size_maximum"] == 64 * 1024 * 1024' ||
    die "[$kind] nbdinfo --json of a writable export"
  echo "[$kind] flags, sizes and description OK"
done

# --- 2. readonly and rotational come from the config -----------------------
write_config "$tmp/ro.conf" "$tmp/disk.img" 64M \
  "readonly = yes" "rotational = yes"
for kind in $(server_kinds); do
  out=$tmp/ro.$kind.json
  run_server "$kind" "$tmp/ro.conf" disk -- "nbdinfo --json \"\$uri\" > $out"
  json_assert "$out" \
    'e["is_read_only"] is True' \
    'e["is_rotational"] is True' \
    'e["can_trim"] is False' \
    'e["can_zero"] is False' \
    'e["can_fast_zero"] is False' ||
    die "[$kind] nbdinfo --json of a read-only rotational export"
  echo "[$kind] readonly/rotational OK"
done

# --- 3. --map of a backing file with data and holes ------------------------
# 8 MiB: data [0,1M) and [4M,5M), holes elsewhere.  Adjacent extents of the
# same type are merged before comparing: servers may split them as they like.
truncate -s 8M "$tmp/sparse.img"
dd if=/dev/urandom of="$tmp/sparse.img" bs=1M count=1 conv=notrunc status=none
dd if=/dev/urandom of="$tmp/sparse.img" bs=1M count=1 seek=4 conv=notrunc \
  status=none
write_config "$tmp/map.conf" "$tmp/sparse.img" -
for kind in $(server_kinds); do
  out=$tmp/map.$kind.json
  run_server "$kind" "$tmp/map.conf" sparse -- \
    "nbdinfo --map --json \"\$uri\" > $out"
  "$PYTHON" - "$out" <<'EOF' || die "[$kind] nbdinfo --map"
import json, sys
M = 1024 * 1024
with open(sys.argv[1]) as f:
    extents = json.load(f)
merged = []
for x in extents:
    if merged and merged[-1][2] == x["type"] and \
       merged[-1][0] + merged[-1][1] == x["offset"]:
        merged[-1][1] += x["length"]
    else:
        merged.append([x["offset"], x["length"], x["type"]])
# type: 0 = data, 3 = hole + zero
expected = [[0, M, 0], [M, 3 * M, 3], [4 * M, M, 0], [5 * M, 3 * M, 3]]
if merged != expected:
    print("map:      %s\nexpected: %s\nraw: %s" % (merged, expected, extents))
    sys.exit(1)
EOF
  echo "[$kind] --map OK"
done

# --- 4. --list shows every export with its description ---------------------
# nbdcached only: the plugin serves exactly one export (export=NAME), so
# there is no list of exports to check.
want_server nbdcached || exit 0
cat > "$tmp/list.conf" <<EOF
[server]
log = stderr
default_export = beta

[export alpha]
backing = $tmp/alpha.img
size = 1M
description = the first

[export beta]
backing = $tmp/beta.img
size = 2M
description = the second

[export gamma]
backing = $tmp/gamma.img
size = 3M
EOF
out=$tmp/list.json
run_server nbdcached "$tmp/list.conf" alpha -- \
  "nbdinfo --list --json \"\$uri\" > $out"
json_assert "$out" \
  'sorted(x["export-name"] for x in j["exports"]) == ["alpha", "beta", "gamma"]' \
  '{x["export-name"]: (x.get("description") or None) for x in j["exports"]} == {"alpha": "the first", "beta": "the second", "gamma": None}' \
  '{x["export-name"]: x["export-size"] for x in j["exports"]} == {"alpha": 1 << 20, "beta": 2 << 20, "gamma": 3 << 20}' ||
  die "[nbdcached] nbdinfo --list"
echo "[nbdcached] --list OK"
