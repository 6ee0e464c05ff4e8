#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-multi-export.sh — two exports with different contents: each name
# reaches its own backing file, the empty name reaches default_export, and
# an unknown name is refused.  For the plugin (one export per nbdkit):
# export=NAME selects that section of the config, and an unknown NAME makes
# nbdkit refuse to start.
set -e
. "${srcdir:-.}/functions.sh"
requires nbdcopy nbdinfo cmp

tmp=$(make_tmpdir)
random_file "$tmp/a.img" 1M
random_file "$tmp/b.img" 2M
cat > "$tmp/c.conf" <<EOF
[server]
log = stderr
default_export = b

[export a]
backing = $tmp/a.img

[export b]
backing = $tmp/b.img
EOF

# ---- nbdcached: one server, both exports ----
cat > "$tmp/check.sh" <<EOF
set -e
nbdcopy "nbd+unix:///a?socket=\$unixsocket" $tmp/a.out
nbdcopy "nbd+unix:///b?socket=\$unixsocket" $tmp/b.out
nbdcopy "nbd+unix:///?socket=\$unixsocket" $tmp/default.out
if nbdinfo "nbd+unix:///nosuch?socket=\$unixsocket" > $tmp/nosuch.out 2>&1; then
  echo "FAIL: an unknown export name was served"; exit 1
fi
cat $tmp/nosuch.out
EOF
if want_server nbdcached; then
  rm -f "$tmp"/*.out
  run_server nbdcached "$tmp/c.conf" a -- "sh $tmp/check.sh" ||
    die "[nbdcached] reaching the exports by name"
  cmp "$tmp/a.img" "$tmp/a.out" || die "[nbdcached] export a has the wrong data"
  cmp "$tmp/b.img" "$tmp/b.out" || die "[nbdcached] export b has the wrong data"
  cmp "$tmp/b.img" "$tmp/default.out" ||
    die "[nbdcached] the empty name did not reach default_export b"
  # libnbd says why the server refused: not a crash, not a protocol error.
  grep -qi 'unknown\|not found\|no such\|unavailable\|ENOENT\|server reported' \
    "$tmp/nosuch.out" || die "[nbdcached] no clear refusal for an unknown name"
  echo "[nbdcached] two exports by name, default, unknown refused: OK"
fi

# ---- the plugin: export=NAME picks the section ----
if want_server plugin; then
  for name in a b; do
    rm -f "$tmp/$name.out"
    run_server plugin "$tmp/c.conf" $name -- "nbdcopy \"\$uri\" $tmp/$name.out" ||
      die "[plugin] export=$name"
    cmp "$tmp/$name.img" "$tmp/$name.out" ||
      die "[plugin] export=$name has the wrong data"
  done
  rm -f "$tmp/ran"
  expect_fail run_server plugin "$tmp/c.conf" nosuch -- "touch $tmp/ran"
  [ ! -e "$tmp/ran" ] || die "[plugin] export=nosuch was served"
  echo "[plugin] export=NAME selects the section, unknown refused: OK"
fi
