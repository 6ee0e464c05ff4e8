#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-nbd-client-list.sh — `nbd-client -l` (the nbd project's own client)
# lists every export with its description, over a Unix socket and over TCP.
#
# Listing several exports is nbdcached only: the plugin serves exactly one
# export per nbdkit (for it: nbd-client -l succeeds and lists exactly one),
# and nbdkit cannot listen on an ephemeral TCP port in --run mode.
set -e
. "${srcdir:-.}/functions.sh"
requires nbd-client sort diff wc

tmp=$(make_tmpdir)
cat > "$tmp/c.conf" <<EOF
[server]
log = stderr

[export alpha]
backing = $tmp/alpha.img
size = 1M
description = the first export

[export beta]
backing = $tmp/beta.img
size = 1M

[export gamma]
backing = $tmp/gamma.img
size = 1M
description = third: with a colon
EOF

# nbd-client prints "Negotiation: .." and then one line per export:
# "NAME: DESCRIPTION", or "NAME" when there is no description.
cat > "$tmp/expected" <<EOF
alpha: the first export
beta
gamma: third: with a colon
EOF

check_list ()
{
  sed -e '1s/^Negotiation: \.*//' -e '/^$/d' "$1" | sort > "$1.sorted"
  diff -u "$tmp/expected" "$1.sorted" || die "nbd-client -l listed ($2):"
  echo "[nbdcached] nbd-client -l over $2 OK"
}

if want_server nbdcached; then
  run_server nbdcached "$tmp/c.conf" alpha -- \
    "nbd-client -l -unix \"\$unixsocket\" > $tmp/unix.out"
  check_list "$tmp/unix.out" "a Unix socket"

  run_server nbdcached "$tmp/c.conf" alpha -l 127.0.0.1:0 -- \
    "nbd-client -l 127.0.0.1 \"\$port\" > $tmp/tcp.out"
  check_list "$tmp/tcp.out" "TCP"
fi

if want_server plugin; then
  run_server plugin "$tmp/c.conf" alpha -- \
    "nbd-client -l -unix \"\$unixsocket\" > $tmp/plugin.out"
  cat "$tmp/plugin.out"
  [ "$(tail -n +2 "$tmp/plugin.out" | wc -l)" = 1 ] ||
    die "[plugin] nbd-client -l did not list exactly one export"
  echo "[plugin] nbd-client -l lists one export OK"
fi
