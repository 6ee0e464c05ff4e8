# SPDX-License-Identifier: BSD-3-Clause
# functions.sh — shared shell helpers for the client tests.  Source it.
#
# WHAT: runs a command against a freshly started server of either kind,
# the same way for both, so every client test covers nbdcached AND
# nbdkit + the nbdcache plugin.
# HOW: both servers run in "captive" mode: the server listens on a private
# Unix socket (or an ephemeral TCP port), runs the command with $uri,
# $unixsocket, $port and $export set (exported into its environment), and
# exits when the command exits, with the command's exit status.  No fixed
# ports, no sleeps: the socket is listening before the command starts.
#
# Usage:
#   . "$srcdir/functions.sh"
#   requires nbdinfo                 # exit 77 if a tool is truly absent
#   tmp=$(make_tmpdir)               # removed at exit
#   write_config "$tmp/c.conf" "$tmp/disk.img" 64M [extra export lines…]
#   run_server nbdcached "$tmp/c.conf" disk -- nbdinfo '$uri'
#   run_server plugin    "$tmp/c.conf" disk -- nbdinfo '$uri'
#   for_each_server CONF EXPORT -- CMD…   # both kinds, fails if either fails
#
# Environment from the build: $top_builddir, $top_srcdir, $srcdir.
# NBDCACHED and PLUGIN may be overridden (e.g. a sanitizer build).
#
# DETAILS
# - The tests are bash scripts (this file uses bash arrays).  Sourcing it
#   turns on pipefail, puts /usr/bin first in PATH (FACTS: Debian's python3
#   has the nbd module), sets UBSAN_OPTIONS=halt_on_error=1 unless set, and
#   installs an ERR trap that names the failing line under `set -e`.
# - CMD… after "--" is joined with spaces into ONE shell command line that
#   the server runs with /bin/sh -c once it is listening; quote it so that
#   $uri is expanded by that shell, not by the test:  -- 'nbdinfo "$uri"'.
# - run_server KIND CONF EXPORT [SERVER-OPTION…] -- CMD…
#     nbdcached: $NBDCACHED -f -c CONF -U $dir/sock -e EXPORT [OPTION…] --run CMD
#                (no -U when an OPTION is -l/--listen/-U/--unix: e.g.
#                `run_server nbdcached c.conf disk -l 127.0.0.1:0 -- …`)
#     plugin:    nbdkit -U - [OPTION…] $PLUGIN config=CONF export=EXPORT
#                       -e EXPORT --run CMD
#   nbdkit sets $uri/$unixsocket/$port as shell variables only; the wrapper
#   here exports them and sets $export, so CMD sees the same for both kinds.
#   Returns the server's exit status (= CMD's status on success).
#   Per-kind options: an OPTION written "nbdcached:OPT" or "plugin:OPT" is
#   passed (as OPT) to that kind only, so one for_each_server line can give
#   each front end its own way of saying the same thing, e.g. nbdkit's TLS
#   flags: `plugin:--tls=require plugin:--tls-certificates=$dir`.
#   TCP for the plugin: `-l HOST:PORT` (or --listen HOST:PORT) becomes
#   nbdkit's `-i HOST -p PORT` instead of `-U -`.  nbdkit 1.32 reports port
#   0 for an ephemeral port, so with PORT 0 the wrapper finds the real port
#   of nbdkit's listening socket (its fd in /proc/$PPID/fd, looked up in
#   /proc/net/tcp{,6}) before CMD runs, and fixes $port and $uri.
# - write_config CONF BACKING SIZE [LINE…]: one [server] section and one
#   [export NAME], NAME = basename of BACKING without its extension
#   ("$tmp/disk.img" -> "disk").  SIZE "" or "-" = no size key (BACKING
#   must exist).  Each LINE is appended to the export section verbatim.
# - for_each_server CONF EXPORT [OPTION…] -- CMD…: run_server for every kind
#   in $(server_kinds), all of them even if one fails; 1 if any failed.
# - server_kinds: "nbdcached plugin", or $SERVERS when set (to debug one
#   kind by hand; a skipped kind is printed loudly).  want_server KIND:
#   is KIND among them?  nbdcached_only: exit 77 when SERVERS excludes
#   nbdcached (for tests of behaviour that only nbdcached has).
#   tls_server_kinds: server_kinds without an ASan build of the plugin
#   (nbdkit with the ASan runtime preloaded hangs at exit after TLS);
#   hangup_server_kinds: the same, for tests whose clients hang up with
#   requests in flight (the same hang at exit).
# - make_tmpdir: a fresh directory under one per-test root that an EXIT trap
#   removes (KEEP_TMP=1 keeps it).  Works inside $( ) because the root and
#   the trap are created when this file is sourced.
# - on_exit 'CMD': run CMD at exit, before the directory is removed (call it
#   from the test's main shell, not inside $( )).
# - requires TOOL…        exit 77 if a tool is absent
#   requires_python       exit 77 without $PYTHON (/usr/bin/python3)
#   requires_python_nbd   exit 77 without Debian's python3 nbd module
#   die MSG  /  skip MSG  exit 1 / 77 with a message
#   expect_fail CMD…      CMD must fail cleanly (exit 1..125); a success or a
#                         crash (signal, 126+) fails the test
#   expect_backing_refused KIND CONF EXPORT LOG
#                         the server must refuse to start EXPORT because its
#                         backing is not the store the cache holds data for:
#                         it never serves (a marker its command would make
#                         stays absent), exits 1..125, and LOG (its stderr)
#                         says "is not the backing store that cache … holds
#                         data for" and names `nbdcache forget`; 1 (with
#                         the reasons) if not
#   still_dirty FILE      some of FILE's first MiB still reads zeros: a
#                         write of a pattern there is (at least in part)
#                         only in the cache (writeback may have written
#                         some back, even with writeback_percent = 100)
#   random_file PATH SIZE random bytes, SIZE as head -c takes it (32M)
#   nbdkit_env            prints "env LD_PRELOAD=…" when the plugin is an
#                         ASan build (nbdkit itself is not), else nothing
#   nbdkit_hangup_opts    run_server options for tests where clients hang
#                         up with requests in flight: "plugin:--threads=1"
#                         (printed with a NOTE) when nbdkit is older than
#                         1.33.10, whose core aborts in raw_send_socket
#                         (`sock >= 0`) when a connection's worker threads
#                         reply after another closed the socket (upstream
#                         commit 9d82aa4f); nothing otherwise
#   server_stdio_argv KIND CONF EXPORT: one argv word per line for running
#                         the server on stdin/stdout (-s), for libnbd's
#                         connect_command
#
# TLS material (openssl CLI, EC P-256 keys, a few ms each; keys mode 0600):
#   make_x509_certs DIR   a test PKI in DIR (created):
#     DIR/ca-cert.pem ca-key.pem           the CA ("nbdcache test CA")
#     DIR/server-cert.pem server-key.pem   CN=localhost, SAN DNS:localhost,
#                                          IP:127.0.0.1, IP:::1; serverAuth
#     DIR/client-cert.pem client-key.pem   CN=alice,O=Example; clientAuth
#   so DIR is both a server certificates directory (nbdkit/qemu/nbdcached
#   layout) and a libnbd/qemu client directory for alice.  More client
#   directories (ca-cert.pem [+ client-cert.pem client-key.pem]):
#     DIR/client-alice/        alice again, without the server's files
#     DIR/client-mallory/      CN=mallory,O=Example, signed by the CA
#     DIR/client-carol/        CN=carol,O=Example with SANs
#                              email:carol@example.com, DNS:carol.example.com
#     DIR/client-none/         trusts the CA, no client certificate
#     DIR/client-expired/      CN=alice,O=Example, signed by the CA, valid
#                              2020-01-01 to 2020-01-02 only
#     DIR/client-wrong-ca/     trusts the CA; its certificate (CN=alice,
#                              O=Example) is signed by the wrong CA
#     DIR/client-trusts-wrong-ca/  alice's certificate, but trusts only the
#                              wrong CA (so it must refuse the server)
#     DIR/wrong-ca/            an unrelated CA (ca-cert.pem, ca-key.pem)
#   make_psk FILE USER [HEXKEY]  append "USER:HEXKEY" to FILE (mode 0600),
#                         HEXKEY a fresh random 32-byte key if not given;
#                         prints the key.  The nbdkit/libnbd/qemu psk format.
# Checks of clients run INSIDE a server's --run command (so that a refusal
# cannot pass because the server never started): client-checks.sh, a POSIX
# sh file with must_work / must_fail, sourced from the command.
#
# NOT HERE: anything a test checks; every assertion lives in its test.

set -o pipefail

# Debian's python3 (with the nbd module) and nbdsh must win over any other;
# nbd-client lives in /usr/sbin, which a non-root PATH may lack.
PATH=/usr/bin:$PATH:/usr/sbin:/sbin
export PATH

die ()
{
  echo "$0: FAIL: $*" >&2
  exit 1
}

skip ()
{
  echo "$0: SKIP: $*" >&2
  exit 77
}

# Absolute paths: tests cd around and pass paths to servers.
abspath ()
{
  case "$1" in
    /*) printf '%s\n' "$1" ;;
    *) printf '%s/%s\n' "$(pwd)" "$1" ;;
  esac
}

: "${srcdir:=.}"
: "${top_srcdir:=$srcdir/..}"
: "${top_builddir:=..}"
srcdir=$(cd "$srcdir" && pwd) || die "srcdir $srcdir not found"
top_srcdir=$(cd "$top_srcdir" && pwd) || die "top_srcdir not found"
top_builddir=$(cd "$top_builddir" && pwd) || die "top_builddir not found"
export srcdir top_srcdir top_builddir

NBDCACHED=$(abspath "${NBDCACHED:-$top_builddir/server/nbdcached}")
PLUGIN=$(abspath "${PLUGIN:-$top_builddir/plugin/.libs/nbdkit-nbdcache-plugin.so}")
NBDKIT=${NBDKIT:-nbdkit}
PYTHON=${PYTHON:-/usr/bin/python3}
# In a sanitizer build, undefined behaviour must fail the test, not just
# print a line into the log (ASan stops at the first error by itself).
: "${UBSAN_OPTIONS:=print_stacktrace=1:halt_on_error=1}"
export UBSAN_OPTIONS
# A hung server must not hang `make check` forever.
: "${SERVER_TIMEOUT_S:=600}"
export NBDCACHED PLUGIN NBDKIT PYTHON

requires ()
{
  local t
  for t in "$@"; do
    command -v "$t" >/dev/null 2>&1 || skip "$t not found"
  done
}

requires_python ()
{
  [ -x "$PYTHON" ] || skip "$PYTHON not found"
}

requires_python_nbd ()
{
  "$PYTHON" -c 'import nbd' 2>/dev/null ||
    skip "$PYTHON cannot import nbd (apt-get install python3-libnbd)"
}

# ---- temporary files -------------------------------------------------

# Unix socket paths are limited to 107 bytes: keep the root short.
_ct_base=${TMPDIR:-/tmp}
[ ${#_ct_base} -gt 60 ] && _ct_base=/tmp
_ct_root=$(mktemp -d "$_ct_base/nbdcache-ct.XXXXXX") ||
  die "cannot create a temporary directory in $_ct_base"
_ct_on_exit=()

on_exit ()
{
  _ct_on_exit+=("$1")
}

_ct_cleanup ()
{
  local rc=$? i
  set +e
  for (( i = ${#_ct_on_exit[@]} - 1; i >= 0; i-- )); do
    eval "${_ct_on_exit[i]}"
  done
  if [ -n "$KEEP_TMP" ]; then
    echo "$0: KEEP_TMP set: leaving $_ct_root" >&2
  else
    rm -rf "$_ct_root"
  fi
  exit $rc
}
trap _ct_cleanup EXIT
# Under `set -e`, say which command failed before the script exits.
trap 'echo "$0: FAIL: line $LINENO: exit status $?: $BASH_COMMAND" >&2' ERR
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

make_tmpdir ()
{
  mktemp -d "$_ct_root/t.XXXXXX" || die "mktemp failed"
}

random_file ()
{
  head -c "$2" /dev/urandom > "$1" || die "cannot write $1"
}

# ---- config ----------------------------------------------------------

write_config ()
{
  local conf=$1 backing=$2 size=$3 name line
  shift 3
  name=${backing##*/}
  name=${name%.*}
  {
    echo "# written by $0"
    echo "[server]"
    echo "log = stderr"
    echo "workers = 4"
    echo
    echo "[export $name]"
    echo "backing = $backing"
    case "$size" in
      ""|-) ;;
      *) echo "size = $size" ;;
    esac
    for line in "$@"; do
      echo "$line"
    done
  } > "$conf" || die "cannot write $conf"
}

# ---- servers ---------------------------------------------------------

server_kinds ()
{
  if [ -n "$SERVERS" ]; then
    echo "$0: NOTE: SERVERS=$SERVERS: only these server kinds are tested" >&2
    echo "$SERVERS"
  else
    echo "nbdcached plugin"
  fi
}

# server_kinds for TLS tests: without the plugin when it is an ASan build.
# nbdkit is not instrumented, so an ASan plugin needs the runtime
# preloaded (nbdkit_env), and a preloaded runtime leaves glibc's setlocale
# lock in a state that deadlocks nbdkit at exit after TLS sessions (in
# p11-kit's destructor, freelocale; seen with nbdkit 1.32 + GnuTLS 3.7 on
# Debian 12, also with an ASan-only plugin, never without the preload).
tls_server_kinds ()
{
  _ct_kinds_without_asan_plugin "after TLS"
}

# The same deadlock follows clients that hang up with requests in flight
# (nbdkit logs errors on its way out): server_kinds without an ASan plugin.
hangup_server_kinds ()
{
  _ct_kinds_without_asan_plugin "after clients hang up mid-request"
}

_ct_kinds_without_asan_plugin ()
{
  local k out=""
  for k in $(server_kinds); do
    if [ "$k" = plugin ] && _ct_plugin_asan; then
      echo "$0: NOTE: the plugin is an ASan build: nbdkit with the ASan" \
           "runtime preloaded hangs at exit $1; plugin NOT tested" >&2
      continue
    fi
    out="$out $k"
  done
  echo $out
}

# Is KIND among the kinds to test?
want_server ()
{
  [[ " $(server_kinds 2>/dev/null) " == *" $1 "* ]]
}

# For tests of behaviour only nbdcached has: skip when SERVERS excludes it.
nbdcached_only ()
{
  want_server nbdcached || skip "SERVERS=$SERVERS excludes nbdcached"
}

# Is the plugin an ASan build?  Then nbdkit (not built with ASan) needs the
# runtime preloaded, or dlopen fails.
_ct_plugin_asan ()
{
  [ "$SANITIZER" = 1 ] && return 0
  # Not `ldd | grep -q`: with pipefail, grep quitting early fails ldd.
  [ -f "$PLUGIN" ] && [[ "$(ldd "$PLUGIN" 2>/dev/null)" == *libasan* ]]
}

# libstdc++ is preloaded too: nbdkit is C, so without it ASan finds no
# real __cxa_throw when a C++ library the plugin loads later (librados)
# throws, and aborts ("CHECK failed: … real___cxa_throw").
nbdkit_env ()
{
  local lib cxx
  if _ct_plugin_asan; then
    lib=$(${CC:-gcc} -print-file-name=libasan.so)
    [ -f "$lib" ] || die "plugin is an ASan build but libasan.so not found"
    cxx=$(${CC:-gcc} -print-file-name=libstdc++.so.6)
    [ -f "$cxx" ] && lib=$lib:$cxx
    echo "env LD_PRELOAD=$lib"
  fi
}

nbdkit_hangup_opts ()
{
  local v
  v=$("$NBDKIT" --version 2>/dev/null | awk '{ print $2; exit }')
  [ -n "$v" ] || return 0
  if [ "$(printf '%s\n1.33.10\n' "$v" | sort -V | head -n 1)" != 1.33.10 ]; then
    echo "$0: NOTE: nbdkit $v aborts when a client hangs up with requests" \
         "in flight on several threads (fixed in 1.33.10): the plugin is" \
         "tested with --threads=1" >&2
    echo "plugin:--threads=1"
  fi
}

_ct_need_binary ()
{
  case "$1" in
    nbdcached)
      [ -x "$NBDCACHED" ] ||
        die "nbdcached is not built: $NBDCACHED (run make first)" ;;
    plugin)
      requires "$NBDKIT"
      [ -f "$PLUGIN" ] ||
        die "the plugin is not built: $PLUGIN (run make first)" ;;
    *)
      die "unknown server kind '$1' (nbdcached|plugin)" ;;
  esac
}

# Quote one word for /bin/sh.
_ct_shquote ()
{
  printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"
}

# Dash code run before the plugin's CMD when nbdkit listens on an
# ephemeral TCP port: nbdkit (the shell's parent) reports port 0, so find
# its listening socket's real port and fix $port and $uri.
_ct_nbdkit_port_fixup='
if [ "$port" = 0 ]; then
  _ct_inodes=$(ls -l /proc/$PPID/fd 2>/dev/null | sed -n "s/.*socket:\[\([0-9]*\)\]$/\1/p")
  _ct_hex=$(for _ct_i in $_ct_inodes; do
              awk -v i=$_ct_i "\$4 == \"0A\" && \$10 == i { split(\$2, a, \":\"); print a[2]; exit }" /proc/net/tcp /proc/net/tcp6 2>/dev/null
            done | head -n 1)
  if [ -z "$_ct_hex" ]; then
    echo "run_server: cannot find the TCP port nbdkit (pid $PPID) listens on" >&2
    exit 1
  fi
  port=$(printf %d 0x$_ct_hex)
  uri=${uri%%:0*}:$port${uri#*:0}
  unset _ct_inodes _ct_hex _ct_i
fi
'

run_server ()
{
  local kind=$1 conf=$2 exp=$3 cmd rc dir listen=yes o prefix=""
  local -a opts=() argv=()
  [ $# -ge 3 ] || die "usage: run_server KIND CONF EXPORT [OPT…] -- CMD…"
  shift 3
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    case "$1" in
      nbdcached:*|plugin:*)
        # Per-kind option: only for that kind.
        [ "${1%%:*}" = "$kind" ] && opts+=("${1#*:}") ;;
      *)
        opts+=("$1") ;;
    esac
    shift
  done
  [ "$1" = "--" ] || die "run_server: missing -- before the command"
  shift
  cmd="$*"
  conf=$(abspath "$conf")
  _ct_need_binary "$kind"

  case "$kind" in
    nbdcached)
      for o in "${opts[@]}"; do
        case "$o" in
          -l|--listen|--listen=*|-U|--unix|--unix=*|-s|--single) listen=no ;;
        esac
      done
      argv=("$NBDCACHED" -f -c "$conf")
      if [ $listen = yes ]; then
        dir=$(make_tmpdir)
        argv+=(-U "$dir/sock")
      fi
      argv+=(-e "$exp" "${opts[@]}" --run "$cmd")
      ;;
    plugin)
      # -l HOST:PORT -> nbdkit -i HOST -p PORT (instead of -U -).
      local -a nopts=()
      local i=0 addr host
      while [ $i -lt ${#opts[@]} ]; do
        o=${opts[i]}
        addr=
        case "$o" in
          -l|--listen) i=$((i + 1)); addr=${opts[i]} ;;
          --listen=*) addr=${o#--listen=} ;;
          *) nopts+=("$o") ;;
        esac
        if [ -n "$addr" ]; then
          case "$addr" in
            unix:*) die "run_server: plugin: listen on unix: is the default" ;;
          esac
          host=${addr%:*}
          host=${host#[}
          host=${host%]}
          listen=no
          [ -n "$host" ] && nopts+=(-i "$host")
          nopts+=(-p "${addr##*:}")
          prefix=$_ct_nbdkit_port_fixup
        fi
        i=$((i + 1))
      done
      # nbdkit sets these as shell variables only: export them, set
      # $export as nbdcached does, and keep the ASan preload (if any) out of
      # the clients.
      argv=($(nbdkit_env) "$NBDKIT")
      [ $listen = yes ] && argv+=(-U -)
      argv+=("${nopts[@]}" "$PLUGIN"
             "config=$conf" "export=$exp" -e "$exp"
             --run "$prefix
export=$(_ct_shquote "$exp"); unset LD_PRELOAD; export uri unixsocket port export; $cmd")
      ;;
  esac

  echo "+ [$kind] $(printf '%q ' "${argv[@]}")" >&2
  rc=0
  timeout -k 10 "$SERVER_TIMEOUT_S" "${argv[@]}" || rc=$?
  [ $rc = 124 ] && echo "$0: [$kind] timed out after $SERVER_TIMEOUT_S s" >&2
  echo "+ [$kind] exit status $rc" >&2
  return $rc
}

for_each_server ()
{
  local kind failed=""
  for kind in $(server_kinds); do
    echo "==== $kind ====" >&2
    run_server "$kind" "$@" || failed="$failed $kind"
  done
  if [ -n "$failed" ]; then
    echo "$0: failed with:$failed" >&2
    return 1
  fi
  return 0
}

server_stdio_argv ()
{
  local kind=$1 conf exp=$3 w
  conf=$(abspath "$2")
  _ct_need_binary "$kind"
  case "$kind" in
    nbdcached)
      printf '%s\n' "$NBDCACHED" -s -c "$conf" ;;
    plugin)
      for w in $(nbdkit_env); do printf '%s\n' "$w"; done
      printf '%s\n' "$NBDKIT" -s "$PLUGIN" "config=$conf" "export=$exp" ;;
  esac
}

expect_fail ()
{
  local rc=0
  echo "+ (must fail) $*" >&2
  "$@" || rc=$?
  if [ $rc = 0 ]; then
    die "succeeded but should have failed: $*"
  elif [ $rc -ge 126 ]; then
    die "crashed or killed (exit status $rc) instead of failing cleanly: $*"
  fi
  echo "+ (failed as expected, exit status $rc)" >&2
  return 0
}

still_dirty ()
{
  local n
  n=$(head -c 1048576 "$1" | tr -d '\000' | wc -c)
  [ "$n" -lt 1048576 ] && return 0
  echo "$0: FAIL: the first MiB of $1 was all written back: the cache" \
       "no longer holds it dirty" >&2
  return 1
}

expect_backing_refused ()
{
  local kind=$1 conf=$2 exp=$3 log=$4 marker rc=0 bad=""
  marker=$(make_tmpdir)/served
  run_server "$kind" "$conf" "$exp" -- \
    ": > '$marker'; qemu-io -f raw -c 'read 0 4096' \"\$uri\"" \
    2> "$log" || rc=$?
  cat "$log" >&2
  if [ -e "$marker" ]; then
    bad="$bad served"
  elif [ $rc = 0 ] || [ $rc -ge 126 ]; then
    bad="$bad exit-status-$rc"
  fi
  grep -q "is not the backing store that cache .* holds data for" "$log" ||
    bad="$bad message"
  grep -q "nbdcache forget" "$log" || bad="$bad remedy"
  [ -z "$bad" ] && return 0
  echo "$0: FAIL: [$kind] $exp: another backing store at its path was not" \
       "refused cleanly:$bad" >&2
  return 1
}

# ---- TLS material ------------------------------------------------------

# A new EC P-256 private key, mode 0600.
_ct_key ()
{
  ( umask 077 &&
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
      -out "$1" 2>/dev/null ) || die "openssl genpkey $1 failed"
  chmod 0600 "$1"
}

# _ct_ca DIR CN: a self-signed CA in DIR/ca-cert.pem, DIR/ca-key.pem.
_ct_ca ()
{
  mkdir -p "$1" || die "mkdir $1"
  _ct_key "$1/ca-key.pem"
  openssl req -new -x509 -key "$1/ca-key.pem" -out "$1/ca-cert.pem" \
    -days 3650 -subj "/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null ||
    die "openssl req (CA $2) failed"
}

# _ct_leaf CADIR KEY CERT SUBJECT EXTENSIONS: a key and a certificate
# signed by the CA in CADIR, valid for ten years.
_ct_leaf ()
{
  local cadir=$1 key=$2 cert=$3 subj=$4 ext=$5
  _ct_key "$key"
  openssl req -new -key "$key" -subj "$subj" -out "$cert.csr" 2>/dev/null ||
    die "openssl req $subj failed"
  printf '%s\n' "$ext" > "$cert.ext"
  openssl x509 -req -in "$cert.csr" -CA "$cadir/ca-cert.pem" \
    -CAkey "$cadir/ca-key.pem" -set_serial "0x$(openssl rand -hex 8)" \
    -days 3650 -extfile "$cert.ext" -out "$cert" 2>/dev/null ||
    die "openssl x509 -req $subj failed"
  rm -f "$cert.csr" "$cert.ext"
}

_ct_client_ext='basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth'

# _ct_client_dir DIR CA-CERT KEY CERT: a libnbd/qemu client directory.
_ct_client_dir ()
{
  mkdir -p "$1" || die "mkdir $1"
  cp "$2" "$1/ca-cert.pem" || die "cp $2"
  if [ -n "$3" ]; then
    cp -p "$3" "$1/client-key.pem" && cp "$4" "$1/client-cert.pem" ||
      die "cp $3 $4"
  fi
}

make_x509_certs ()
{
  local d w
  [ $# = 1 ] || die "usage: make_x509_certs DIR"
  requires openssl
  mkdir -p "$1" || die "mkdir $1"
  d=$(cd "$1" && pwd)
  w=$d/wrong-ca

  _ct_ca "$d" "nbdcache test CA"
  _ct_ca "$w" "nbdcache wrong CA"

  _ct_leaf "$d" "$d/server-key.pem" "$d/server-cert.pem" "/O=Example/CN=localhost" \
    'basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1'
  # RFC 2253 prints the last RDN first: this subject is "CN=alice,O=Example".
  _ct_leaf "$d" "$d/client-key.pem" "$d/client-cert.pem" "/O=Example/CN=alice" \
    "$_ct_client_ext"
  _ct_client_dir "$d/client-alice" "$d/ca-cert.pem" \
    "$d/client-key.pem" "$d/client-cert.pem"

  _ct_leaf "$d" "$d/mallory-key.pem" "$d/mallory-cert.pem" \
    "/O=Example/CN=mallory" "$_ct_client_ext"
  _ct_client_dir "$d/client-mallory" "$d/ca-cert.pem" \
    "$d/mallory-key.pem" "$d/mallory-cert.pem"
  rm -f "$d/mallory-key.pem" "$d/mallory-cert.pem"

  _ct_leaf "$d" "$d/carol-key.pem" "$d/carol-cert.pem" \
    "/O=Example/CN=carol" "$_ct_client_ext
subjectAltName=email:carol@example.com,DNS:carol.example.com"
  _ct_client_dir "$d/client-carol" "$d/ca-cert.pem" \
    "$d/carol-key.pem" "$d/carol-cert.pem"
  rm -f "$d/carol-key.pem" "$d/carol-cert.pem"

  _ct_client_dir "$d/client-none" "$d/ca-cert.pem"

  # Alice's name, the wrong issuer.
  _ct_leaf "$w" "$w/alice-key.pem" "$w/alice-cert.pem" "/O=Example/CN=alice" \
    "$_ct_client_ext"
  _ct_client_dir "$d/client-wrong-ca" "$d/ca-cert.pem" \
    "$w/alice-key.pem" "$w/alice-cert.pem"
  rm -f "$w/alice-key.pem" "$w/alice-cert.pem"

  _ct_client_dir "$d/client-trusts-wrong-ca" "$w/ca-cert.pem" \
    "$d/client-key.pem" "$d/client-cert.pem"

  # Expired: `openssl x509 -req` (OpenSSL 3.0) cannot set a notAfter in the
  # past; `openssl ca` can, with a throwaway database.
  mkdir -p "$d/ca-db" || die "mkdir $d/ca-db"
  : > "$d/ca-db/index.txt"
  cat > "$d/ca-db/ca.cnf" <<CNF || die "cannot write $d/ca-db/ca.cnf"
[ca]
default_ca = test_ca
[test_ca]
database = $d/ca-db/index.txt
new_certs_dir = $d/ca-db
certificate = $d/ca-cert.pem
private_key = $d/ca-key.pem
rand_serial = yes
default_md = sha256
policy = any
unique_subject = no
x509_extensions = client_ext
[any]
commonName = supplied
organizationName = optional
[client_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
CNF
  mkdir -p "$d/client-expired" || die "mkdir $d/client-expired"
  cp "$d/ca-cert.pem" "$d/client-expired/ca-cert.pem" || die "cp ca-cert.pem"
  _ct_key "$d/client-expired/client-key.pem"
  openssl req -new -key "$d/client-expired/client-key.pem" \
    -subj "/O=Example/CN=alice" -out "$d/ca-db/expired.csr" 2>/dev/null ||
    die "openssl req (expired) failed"
  openssl ca -batch -notext -preserveDN -config "$d/ca-db/ca.cnf" \
    -in "$d/ca-db/expired.csr" -out "$d/client-expired/client-cert.pem" \
    -startdate 20200101000000Z -enddate 20200102000000Z \
    >"$d/ca-db/log" 2>&1 ||
    die "openssl ca (expired certificate) failed: $(cat "$d/ca-db/log")"
  rm -rf "$d/ca-db"

  # Check what the tests rely on, so a broken PKI fails here, loudly.
  openssl verify -CAfile "$d/ca-cert.pem" "$d/server-cert.pem" \
    "$d/client-cert.pem" "$d/client-mallory/client-cert.pem" \
    "$d/client-carol/client-cert.pem" >/dev/null ||
    die "make_x509_certs: the new certificates do not verify"
  ! openssl verify -CAfile "$d/ca-cert.pem" \
    "$d/client-expired/client-cert.pem" >/dev/null 2>&1 ||
    die "make_x509_certs: the expired certificate verifies"
  ! openssl verify -CAfile "$d/ca-cert.pem" \
    "$d/client-wrong-ca/client-cert.pem" >/dev/null 2>&1 ||
    die "make_x509_certs: the wrong CA's certificate verifies"
}

make_psk ()
{
  local file=$1 user=$2 key=$3
  [ $# -ge 2 ] || die "usage: make_psk FILE USER [HEXKEY]"
  if [ -z "$key" ]; then
    requires openssl
    key=$(openssl rand -hex 32) || die "openssl rand failed"
  fi
  ( umask 077 && printf '%s:%s\n' "$user" "$key" >> "$file" ) ||
    die "cannot write $file"
  chmod 0600 "$file"
  printf '%s\n' "$key"
}
