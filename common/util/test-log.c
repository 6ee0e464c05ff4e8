/* SPDX-License-Identifier: BSD-3-Clause */
/* test-log.c — unit tests for log.c.
 *
 * WHAT: level filtering, the sink, the stderr line format, one write per
 * line under concurrent loggers, long messages, errno preservation,
 * level-name parsing, and rate-limited logging (the decision at given
 * times, one line per call site per interval, the suppressed count on
 * the next line, exact counts under concurrent callers), and the
 * per-thread capture (nbdcached's reload answer).
 * WHY: the plugin relies on the sink, the server on the stderr format, and
 * every module on log_msg() not clobbering errno.
 * INVARIANTS: stderr is captured by dup2()ing a pipe over fd 2 and always
 * restored before assertions run (so cmocka's own output is not lost).
 * The total written while captured stays far below the pipe's capacity
 * (64 KiB), so no reader thread is needed.
 * THREADS AND LOCKS: the concurrency test starts a few threads that log
 * at once; everything else is single-threaded.
 * FAILURE: assertion failures are reported by cmocka.
 * NOT HERE: syslog delivery (there is no syslog daemon to read back from
 * in a test; the target switch is exercised, the output is not).
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "log.h"

/* ---- sink capture ---- */

#define MAX_CAPTURED 64

static struct {
  enum log_level level;
  char *msg;
} captured[MAX_CAPTURED];
static size_t n_captured;

static void
capture_sink (enum log_level level, const char *msg)
{
  if (n_captured < MAX_CAPTURED) {
    captured[n_captured].level = level;
    captured[n_captured].msg = strdup (msg);
    n_captured++;
  }
}

static void
clear_captured (void)
{
  size_t i;

  for (i = 0; i < n_captured; ++i)
    free (captured[i].msg);
  n_captured = 0;
}

/* ---- stderr capture ---- */

struct stderr_capture {
  int saved_fd;
  int pipe_fd[2];
};

static void
stderr_capture_begin (struct stderr_capture *c)
{
  assert_int_equal (pipe (c->pipe_fd), 0);
  c->saved_fd = dup (STDERR_FILENO);
  assert_true (c->saved_fd >= 0);
  assert_true (dup2 (c->pipe_fd[1], STDERR_FILENO) == STDERR_FILENO);
  close (c->pipe_fd[1]);
}

/* Restore stderr and return everything written (caller frees). */
static char *
stderr_capture_end (struct stderr_capture *c)
{
  size_t cap = 4096, len = 0;
  char *buf = malloc (cap);
  ssize_t r;

  dup2 (c->saved_fd, STDERR_FILENO);
  close (c->saved_fd);
  assert_non_null (buf);
  for (;;) {
    if (len + 1 == cap) {
      cap *= 2;
      buf = realloc (buf, cap);
      assert_non_null (buf);
    }
    r = read (c->pipe_fd[0], buf + len, cap - 1 - len);
    if (r < 0 && errno == EINTR)
      continue;
    assert_true (r >= 0);
    if (r == 0)
      break;
    len += (size_t) r;
  }
  close (c->pipe_fd[0]);
  buf[len] = '\0';
  return buf;
}

static int
setup (void **state)
{
  log_init ("test-log", LOG_TARGET_STDERR, LOG_LEVEL_INFO);
  log_set_sink (NULL);
  clear_captured ();
  return 0;
}

static int
teardown (void **state)
{
  log_set_sink (NULL);
  clear_captured ();
  return 0;
}

static void
test_log_sink_filters_levels (void **state)
{
  log_set_sink (capture_sink);
  log_set_level (LOG_LEVEL_WARNING);

  log_error ("e %d", 1);
  log_warning ("w %s", "two");
  log_info ("i %d", 3);
  log_debug ("d %d", 4);

  assert_int_equal (n_captured, 2);
  assert_int_equal (captured[0].level, LOG_LEVEL_ERROR);
  assert_string_equal (captured[0].msg, "e 1");
  assert_int_equal (captured[1].level, LOG_LEVEL_WARNING);
  assert_string_equal (captured[1].msg, "w two");

  assert_true (log_enabled (LOG_LEVEL_ERROR));
  assert_true (log_enabled (LOG_LEVEL_WARNING));
  assert_false (log_enabled (LOG_LEVEL_INFO));
  assert_false (log_enabled (LOG_LEVEL_DEBUG));

  clear_captured ();
  log_set_level (LOG_LEVEL_DEBUG);
  log_debug ("now %s", "visible");
  log_info ("info too");
  assert_int_equal (n_captured, 2);
  assert_int_equal (captured[0].level, LOG_LEVEL_DEBUG);
  assert_string_equal (captured[0].msg, "now visible");
  assert_int_equal (captured[1].level, LOG_LEVEL_INFO);

  clear_captured ();
  log_set_level (LOG_LEVEL_ERROR);
  log_warning ("hidden");
  log_error ("shown");
  assert_int_equal (n_captured, 1);
  assert_string_equal (captured[0].msg, "shown");
}

static void
test_log_sink_strips_one_newline (void **state)
{
  log_set_sink (capture_sink);
  log_error ("with newline\n");
  log_error ("%s", "");
  assert_int_equal (n_captured, 2);
  assert_string_equal (captured[0].msg, "with newline");
  assert_string_equal (captured[1].msg, "");
}

static void
test_log_stderr_format (void **state)
{
  struct stderr_capture c;
  char *out;

  log_init ("/usr/sbin/prog", LOG_TARGET_STDERR, LOG_LEVEL_INFO);
  stderr_capture_begin (&c);
  log_error ("disk %s at offset %d", "x.img", 42);
  log_warning ("careful\n");
  log_info ("hello");
  log_debug ("not shown");
  out = stderr_capture_end (&c);

  assert_string_equal (out,
                       "prog: error: disk x.img at offset 42\n"
                       "prog: warning: careful\n"
                       "prog: info: hello\n");
  free (out);
}

static void
test_log_sink_overrides_stderr (void **state)
{
  struct stderr_capture c;
  char *out;

  stderr_capture_begin (&c);
  log_set_sink (capture_sink);
  log_error ("to the sink");
  log_set_sink (NULL);
  log_error ("to stderr");
  out = stderr_capture_end (&c);

  assert_string_equal (out, "test-log: error: to stderr\n");
  assert_int_equal (n_captured, 1);
  assert_string_equal (captured[0].msg, "to the sink");
  free (out);
}

static void
test_log_long_message (void **state)
{
  const size_t n = 5000;        /* bytes, beyond the stack buffer */
  char *big = malloc (n + 1);
  char *expected;
  struct stderr_capture c;
  char *out;

  assert_non_null (big);
  memset (big, 'a', n);
  big[n - 1] = 'z';
  big[n] = '\0';

  log_set_sink (capture_sink);
  log_error ("<%s>", big);
  assert_int_equal (n_captured, 1);
  assert_int_equal (strlen (captured[0].msg), n + 2);
  assert_int_equal (captured[0].msg[0], '<');
  assert_int_equal (captured[0].msg[n], 'z');
  assert_int_equal (captured[0].msg[n + 1], '>');
  log_set_sink (NULL);

  stderr_capture_begin (&c);
  log_error ("%s", big);
  out = stderr_capture_end (&c);
  assert_int_equal (asprintf (&expected, "test-log: error: %s\n", big),
                    (int) (n + strlen ("test-log: error: \n")));
  assert_string_equal (out, expected);
  free (expected);
  free (out);
  free (big);
}

static void
test_log_preserves_errno (void **state)
{
  log_set_sink (capture_sink);
  errno = ENOSPC;
  log_error ("failed: %m");
  assert_int_equal (errno, ENOSPC);
  assert_int_equal (n_captured, 1);
  assert_string_equal (captured[0].msg, "failed: No space left on device");

  /* A filtered message leaves errno alone too. */
  errno = EIO;
  log_debug ("filtered");
  assert_int_equal (errno, EIO);
}

static void
test_log_level_from_string (void **state)
{
  static const struct {
    const char *s;
    int r;
    enum log_level level;
  } cases[] = {
    { "error", 0, LOG_LEVEL_ERROR },
    { "warning", 0, LOG_LEVEL_WARNING },
    { "info", 0, LOG_LEVEL_INFO },
    { "debug", 0, LOG_LEVEL_DEBUG },
    { "DEBUG", 0, LOG_LEVEL_DEBUG },
    { "Warning", 0, LOG_LEVEL_WARNING },
    { "warn", -EINVAL, 0 },
    { "", -EINVAL, 0 },
    { "info ", -EINVAL, 0 },
    { "trace", -EINVAL, 0 },
    { NULL, -EINVAL, 0 },
  };
  size_t i;

  for (i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
    enum log_level level = (enum log_level) 99;
    int r = log_level_from_string (cases[i].s, &level);

    assert_int_equal (r, cases[i].r);
    if (r == 0)
      assert_int_equal (level, cases[i].level);
    else
      assert_int_equal (level, 99);
  }
}

#define N_THREADS 4
#define LINES_PER_THREAD 100

static void *
log_thread (void *arg)
{
  int id = (int) (intptr_t) arg;
  int i;

  for (i = 0; i < LINES_PER_THREAD; ++i)
    log_info ("thread %d line %03d ....................", id, i);
  return NULL;
}

static void
test_log_concurrent_lines_intact (void **state)
{
  struct stderr_capture c;
  pthread_t th[N_THREADS];
  int seen[N_THREADS][LINES_PER_THREAD] = { { 0 } };
  char *out, *line, *save;
  int i, j, lines = 0;

  stderr_capture_begin (&c);
  for (i = 0; i < N_THREADS; ++i)
    assert_int_equal (pthread_create (&th[i], NULL, log_thread,
                                      (void *) (intptr_t) i), 0);
  for (i = 0; i < N_THREADS; ++i)
    pthread_join (th[i], NULL);
  out = stderr_capture_end (&c);

  for (line = strtok_r (out, "\n", &save); line != NULL;
       line = strtok_r (NULL, "\n", &save)) {
    int id, n, end = 0;

    if (sscanf (line, "test-log: info: thread %d line %d "
                "....................%n", &id, &n, &end) != 2 ||
        end != (int) strlen (line) ||
        id < 0 || id >= N_THREADS || n < 0 || n >= LINES_PER_THREAD) {
      print_error ("garbled line: \"%s\"\n", line);
      fail ();
    }
    seen[id][n]++;
    lines++;
  }
  assert_int_equal (lines, N_THREADS * LINES_PER_THREAD);
  for (i = 0; i < N_THREADS; ++i)
    for (j = 0; j < LINES_PER_THREAD; ++j)
      assert_int_equal (seen[i][j], 1);
  free (out);
}

static void
test_log_syslog_target_switch (void **state)
{
  struct stderr_capture c;
  char *out;

  /* Messages to syslog must not appear on stderr; the sink still wins. */
  stderr_capture_begin (&c);
  log_init ("test-log", LOG_TARGET_SYSLOG, LOG_LEVEL_ERROR);
  log_debug ("filtered before reaching syslog");
  log_set_sink (capture_sink);
  log_error ("to the sink, not syslog");
  log_set_sink (NULL);
  log_init ("test-log", LOG_TARGET_STDERR, LOG_LEVEL_INFO);
  log_info ("back on stderr");
  out = stderr_capture_end (&c);

  assert_string_equal (out, "test-log: info: back on stderr\n");
  assert_int_equal (n_captured, 1);
  assert_string_equal (captured[0].msg, "to the sink, not syslog");
  free (out);
}

/* ---- rate limits ---- */

static void
test_log_ratelimit_check_times (void **state)
{
  struct log_ratelimit rl = { .interval_ms = 100 };
  uint64_t n = 99;

  assert_true (log_ratelimit_check (&rl, 1000, &n));
  assert_int_equal (n, 0);
  assert_false (log_ratelimit_check (&rl, 1000, &n));
  assert_false (log_ratelimit_check (&rl, 1050, &n));
  assert_false (log_ratelimit_check (&rl, 1099, &n));
  assert_true (log_ratelimit_check (&rl, 1100, &n));
  assert_int_equal (n, 3);
  assert_false (log_ratelimit_check (&rl, 1150, &n));
  assert_true (log_ratelimit_check (&rl, 5000, &n));
  assert_int_equal (n, 1);
  /* The default interval when none is set; time 0 is a valid first time. */
  memset (&rl, 0, sizeof rl);
  assert_true (log_ratelimit_check (&rl, 0, &n));
  assert_false (log_ratelimit_check (&rl, LOG_RATELIMIT_INTERVAL_MS - 1, &n));
  assert_true (log_ratelimit_check (&rl, LOG_RATELIMIT_INTERVAL_MS + 1, &n));
  assert_int_equal (n, 1);
}

static void
test_log_ratelimited_one_line_per_site (void **state)
{
  int i;

  log_set_sink (capture_sink);
  for (i = 0; i < 1000; i++)
    log_error_ratelimited ("write at %d: no space", i);
  for (i = 0; i < 10; i++)
    log_warning_ratelimited ("another site %d", i);
  assert_int_equal (n_captured, 2);
  assert_int_equal (captured[0].level, LOG_LEVEL_ERROR);
  assert_string_equal (captured[0].msg, "write at 0: no space");
  assert_int_equal (captured[1].level, LOG_LEVEL_WARNING);
  assert_string_equal (captured[1].msg, "another site 0");
}

static void
test_log_ratelimited_reports_suppressed (void **state)
{
  struct log_ratelimit rl = LOG_RATELIMIT_INIT;
  int i;

  log_set_sink (capture_sink);
  for (i = 0; i < 6; i++)
    log_ratelimited_msg (&rl, LOG_LEVEL_ERROR, "full %d\n", i);
  assert_int_equal (n_captured, 1);
  rl.last_ms = 1;               /* the interval is over */
  errno = ENOSPC;
  log_ratelimited_msg (&rl, LOG_LEVEL_ERROR, "full %d: %m\n", 6);
  assert_int_equal (errno, ENOSPC);
  assert_int_equal (n_captured, 2);
  assert_string_equal (captured[1].msg, "full 6: No space left on device "
                       "(5 similar messages suppressed)");
  /* Nothing suppressed since: no suffix. */
  rl.last_ms = 1;
  log_ratelimited_msg (&rl, LOG_LEVEL_ERROR, "full %d", 7);
  assert_int_equal (n_captured, 3);
  assert_string_equal (captured[2].msg, "full 7");
}

static void
test_log_ratelimit_off (void **state)
{
  int i;

  log_set_sink (capture_sink);
  log_set_ratelimit (false);
  for (i = 0; i < 5; i++)
    log_error_ratelimited ("each %d", i);
  log_set_ratelimit (true);
  for (i = 0; i < 5; i++)
    log_error_ratelimited ("limited %d", i);
  assert_int_equal (n_captured, 6);
  assert_string_equal (captured[4].msg, "each 4");
  assert_string_equal (captured[5].msg, "limited 0");
}

#define RL_THREADS 4
#define RL_CALLS 2000

static struct log_ratelimit shared_rl;

static void *
ratelimited_thread (void *arg)
{
  int i;

  (void) arg;
  for (i = 0; i < RL_CALLS; i++)
    log_ratelimited_msg (&shared_rl, LOG_LEVEL_ERROR, "same error");
  return NULL;
}

static void
test_log_ratelimited_concurrent_counts (void **state)
{
  pthread_t th[RL_THREADS];
  char want[128];
  int i;

  /* Only one line is logged (the sink is called once, from one thread). */
  log_set_sink (capture_sink);
  for (i = 0; i < RL_THREADS; i++)
    assert_int_equal (pthread_create (&th[i], NULL, ratelimited_thread,
                                      NULL), 0);
  for (i = 0; i < RL_THREADS; i++)
    pthread_join (th[i], NULL);
  assert_int_equal (n_captured, 1);
  shared_rl.last_ms = 1;
  log_ratelimited_msg (&shared_rl, LOG_LEVEL_ERROR, "same error");
  assert_int_equal (n_captured, 2);
  snprintf (want, sizeof want, "same error (%d similar messages suppressed)",
            RL_THREADS * RL_CALLS - 1);
  assert_string_equal (captured[1].msg, want);
}

/* Capture collects this thread's lines at its level, even those the log
 * level filters out, prefixes errors and warnings, and leaves the sink
 * alone; another thread's lines are not collected.
 */
static void *
log_from_thread (void *arg)
{
  log_error ("from another thread");
  return arg;
}

static void
test_log_capture_this_thread (void **state)
{
  pthread_t th;
  char *text;

  log_set_sink (capture_sink);
  log_set_level (LOG_LEVEL_ERROR);
  assert_null (log_capture_end ());             /* none running */
  assert_int_equal (log_capture_begin (LOG_LEVEL_INFO), 0);
  assert_int_equal (log_capture_begin (LOG_LEVEL_INFO), -EBUSY);
  log_error ("bad %s:%d", "f.conf", 12);
  log_warning ("careful");
  log_info ("export '%s': added", "x");
  log_debug ("not at info");
  assert_int_equal (pthread_create (&th, NULL, log_from_thread, NULL), 0);
  pthread_join (th, NULL);
  text = log_capture_end ();
  assert_non_null (text);
  assert_string_equal (text, "error: bad f.conf:12\n"
                             "warning: careful\n"
                             "export 'x': added\n");
  free (text);
  /* The sink saw what the level lets through, nothing more. */
  assert_int_equal (n_captured, 2);
  assert_string_equal (captured[0].msg, "bad f.conf:12");
  assert_string_equal (captured[1].msg, "from another thread");

  /* Nothing logged: "", and capturing has stopped. */
  assert_int_equal (log_capture_begin (LOG_LEVEL_ERROR), 0);
  log_warning ("below the capture level");
  text = log_capture_end ();
  assert_string_equal (text, "");
  free (text);
  assert_null (log_capture_end ());
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown (test_log_sink_filters_levels,
                                     setup, teardown),
    cmocka_unit_test_setup_teardown (test_log_sink_strips_one_newline,
                                     setup, teardown),
    cmocka_unit_test_setup_teardown (test_log_stderr_format, setup, teardown),
    cmocka_unit_test_setup_teardown (test_log_sink_overrides_stderr,
                                     setup, teardown),
    cmocka_unit_test_setup_teardown (test_log_long_message, setup, teardown),
    cmocka_unit_test_setup_teardown (test_log_preserves_errno,
                                     setup, teardown),
    cmocka_unit_test_setup_teardown (test_log_level_from_string,
                                     setup, teardown),
    cmocka_unit_test_setup_teardown (test_log_concurrent_lines_intact,
                                     setup, teardown),
    cmocka_unit_test_setup_teardown (test_log_syslog_target_switch,
                                     setup, teardown),
    cmocka_unit_test_setup_teardown (test_log_ratelimit_check_times,
                                     setup, teardown),
    cmocka_unit_test_setup_teardown (test_log_ratelimited_one_line_per_site,
                                     setup, teardown),
    cmocka_unit_test_setup_teardown (test_log_ratelimited_reports_suppressed,
                                     setup, teardown),
    cmocka_unit_test_setup_teardown (test_log_ratelimited_concurrent_counts,
                                     setup, teardown),
    cmocka_unit_test_setup_teardown (test_log_ratelimit_off, setup, teardown),
    cmocka_unit_test_setup_teardown (test_log_capture_this_thread,
                                     setup, teardown),
  };

  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
