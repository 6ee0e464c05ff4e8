# SPDX-License-Identifier: BSD-3-Clause
# client-checks.sh — assertions for client commands run INSIDE a server's
# --run command (POSIX sh: nbdkit and nbdcached run it with /bin/sh).
#
# WHAT: must_work / must_fail run one client command, label it, and stop
# the --run command (exit 1, so run_server fails) with a clear message if
# it did not do what the test expects.  Source it from the command:
#   run_server KIND CONF EXP … -- ". '$srcdir/client-checks.sh'; must_work …"
# WHY: a refusal test must not pass because the server never started: run
# the refused client inside a server that is known to be up (run_server
# then succeeds only if every check passed), instead of `expect_fail
# run_server …`, which a config error would satisfy.
#
#   must_work LABEL CMD…          CMD must exit 0.
#   must_fail LABEL REGEX CMD…    CMD must fail cleanly (exit 1..125) and
#                                 its stdout+stderr must match the extended
#                                 REGEX, case-insensitively ("" = anything):
#                                 the reason, not just any failure.
# Both print CMD's output (indented) so the log shows what happened.

_cc_out=$(mktemp "${TMPDIR:-/tmp}/client-checks.XXXXXX") || exit 1
trap 'rm -f "$_cc_out"' EXIT

_cc_show ()
{
  sed 's/^/    | /' "$_cc_out" >&2
}

must_work ()
{
  _cc_label=$1
  shift
  echo "+ [$_cc_label] $*" >&2
  _cc_rc=0
  "$@" >"$_cc_out" 2>&1 || _cc_rc=$?
  _cc_show
  if [ $_cc_rc != 0 ]; then
    echo "FAIL: $_cc_label: should work, but exit status $_cc_rc" >&2
    exit 1
  fi
  echo "ok: $_cc_label" >&2
}

must_fail ()
{
  _cc_label=$1
  _cc_regex=$2
  shift 2
  echo "+ [$_cc_label] (must fail) $*" >&2
  _cc_rc=0
  "$@" >"$_cc_out" 2>&1 || _cc_rc=$?
  _cc_show
  if [ $_cc_rc = 0 ]; then
    echo "FAIL: $_cc_label: should have been refused, but worked" >&2
    exit 1
  fi
  if [ $_cc_rc -ge 126 ]; then
    echo "FAIL: $_cc_label: crashed or killed (exit status $_cc_rc)" >&2
    exit 1
  fi
  if [ -n "$_cc_regex" ] && ! grep -q -i -E -- "$_cc_regex" "$_cc_out"; then
    echo "FAIL: $_cc_label: failed (exit status $_cc_rc), but not with" \
         "a message matching /$_cc_regex/" >&2
    exit 1
  fi
  echo "ok: $_cc_label (refused, exit status $_cc_rc)" >&2
}
