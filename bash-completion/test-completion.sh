#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# test-completion.sh — the bash completion completes what the programs of
# this build accept: options (read from their --help), option values,
# nbdcache's commands.
set -euo pipefail

: "${srcdir:=$(dirname "$0")}"
: "${top_builddir:?top_builddir: the build directory}"
PATH=$top_builddir/server:$top_builddir/admin:$PATH
. "$srcdir/nbdcached"

fail () { echo "FAIL: $*"; exit 1; }

# complete LINE: COMPREPLY for the last word of LINE (a trailing space
# means an empty word), printed sorted on one line.
complete_line () {
  read -r -a COMP_WORDS <<<"$1"
  [[ $1 == *' ' ]] && COMP_WORDS+=('')
  COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
  COMPREPLY=()
  case ${COMP_WORDS[0]} in
    nbdcached) _nbdcached ;;
    nbdcache) _nbdcache ;;
  esac
  printf '%s\n' "${COMPREPLY[@]}" | sort | tr '\n' ' ' | sed 's/ $//'
}

expect () {
  local got
  got=$(complete_line "$1")
  [ "$got" = "$2" ] || fail "'$1': got '$got', want '$2'"
  echo "ok: '$1' -> $2"
}

expect 'nbdcached --lo' '--log'
expect 'nbdcached --log ' 'auto stderr syslog'
expect 'nbdcached --check-' '--check-config'
expect 'nbdcached --us' '--user'
expect 'nbdcached -u roo' 'root'
expect 'nbdcached --print' '--print-uri'
expect 'nbdcached --exit-with' '--exit-with-parent'
expect 'nbdcached --mode ' 'none writearound writeback writethrough'
expect 'nbdcached --tls ' 'off on require'
expect 'nbdcached --cache-s' '--cache-size'
expect 'nbdcached -r /dev/nul' '/dev/null'
expect 'nbdcache fl' 'flush'
expect 'nbdcache ' 'attach check detach flush forget format reload set show stats'
expect 'nbdcache forg' 'forget'
expect 'nbdcache forget /dev/nul' '/dev/null'

# Every command nbdcache --help lists under "Commands:" is completed (the
# list above is written by hand; this catches a new command left out).
help_cmds=$(nbdcache --help | sed -n '/^Commands:/,$p' |
              sed -n 's/^  \([a-z][a-z]*\)\( .*\)\{0,1\}$/\1/p' | sort -u |
              tr '\n' ' ' | sed 's/ $//')
[ -n "$help_cmds" ] || fail "no commands found in nbdcache --help"
expect 'nbdcache ' "$help_cmds"
expect 'nbdcache rel' 'reload'
expect 'nbdcache det' 'detach'
expect 'nbdcache set -c x.conf disk ' 'flush_on_stop= mode= promote_min= sequential_cutoff= writeback_percent='
expect 'nbdcache set --socket s disk mode=writeback se' 'sequential_cutoff='
expect 'nbdcache set disk mode=w' 'mode=writearound mode=writeback mode=writethrough'
expect 'nbdcache set disk mode=' 'mode=none mode=writearound mode=writeback mode=writethrough'
expect 'nbdcache set disk ' 'flush_on_stop= mode= promote_min= sequential_cutoff= writeback_percent='
expect 'nbdcache set di' ''
expect 'nbdcache attach -c x.conf disk ' 'writearound writeback writethrough'
expect 'nbdcache attach disk writeback ' ''
expect 'nbdcache format --for' '--force'
expect 'nbdcache stats --prom' '--prometheus'
expect 'nbdcache stats --wat' '--watch'
expect 'nbdcache stats --watch --inter' '--interval'
expect 'nbdcache stats --watch -n ' ''
expect 'nbdcache stats --watch --cou' '--count'
