/* SPDX-License-Identifier: BSD-3-Clause */
/* log-capture.c — the logger's sink for tests.
 *
 * WHAT: counts of errors and warnings, the last error and the last
 * warning, and a ring of the last LOG_RING_LINES lines of every level
 * captured, which test_log_dump prints when a test fails.
 * NBDCACHE_TEST_VERBOSE=1 also copies every message to stderr.
 * WHY: tests assert that a condition was logged (once, with the right
 * words) and stay quiet otherwise; one capture instead of a copy per test.
 * INVARIANTS: counts and last lines cover the messages since the last
 * test_log_clear; the ring the last LOG_RING_LINES of them.
 * THREADS AND LOCKS: the engine logs from its threads: one mutex guards
 * everything here.
 * FAILURE: none; lines longer than LOG_LINE_BYTES are cut.
 * NOT HERE: the logger itself (common/util/log.c).
 */
#include <config.h>

#include <pthread.h>
#include <stdio.h>

#include "compiler.h"
#include "log.h"
#include "testkit.h"

#define LOG_RING_LINES 40
#define LOG_LINE_BYTES 1024

static pthread_mutex_t capture_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_ring[LOG_RING_LINES][LOG_LINE_BYTES];
static unsigned log_ring_next;  /* lines captured since the last clear */
static char last_error[LOG_LINE_BYTES], last_warning[LOG_LINE_BYTES];
static unsigned nr_errors, nr_warnings;
static bool log_verbose;

static void
capture_sink (enum log_level level, const char *msg)
{
  static const char *const names[] = { "error", "warning", "info", "debug" };
  const char *name = (unsigned) level < ARRAY_SIZE (names) ? names[level] : "?";

  pthread_mutex_lock (&capture_lock);
  if (level == LOG_LEVEL_ERROR) {
    snprintf (last_error, sizeof last_error, "%s", msg);
    nr_errors++;
  }
  else if (level == LOG_LEVEL_WARNING) {
    snprintf (last_warning, sizeof last_warning, "%s", msg);
    nr_warnings++;
  }
  snprintf (log_ring[log_ring_next % LOG_RING_LINES], LOG_LINE_BYTES,
            "%s: %s", name, msg);
  log_ring_next++;
  pthread_mutex_unlock (&capture_lock);
  if (log_verbose)
    fprintf (stderr, "log: %s: %s\n", name, msg);
}

void
test_log_capture (void)
{
  log_verbose = test_env_u64 ("NBDCACHE_TEST_VERBOSE", 0) != 0;
  log_set_level (log_verbose ? LOG_LEVEL_DEBUG : LOG_LEVEL_WARNING);
  test_log_clear ();
  log_set_sink (capture_sink);
}

void
test_log_clear (void)
{
  pthread_mutex_lock (&capture_lock);
  log_ring_next = 0;
  last_error[0] = last_warning[0] = '\0';
  nr_errors = nr_warnings = 0;
  pthread_mutex_unlock (&capture_lock);
}

unsigned
test_log_errors (void)
{
  unsigned n;

  pthread_mutex_lock (&capture_lock);
  n = nr_errors;
  pthread_mutex_unlock (&capture_lock);
  return n;
}

unsigned
test_log_warnings (void)
{
  unsigned n;

  pthread_mutex_lock (&capture_lock);
  n = nr_warnings;
  pthread_mutex_unlock (&capture_lock);
  return n;
}

const char *
test_log_last_error (void)
{
  return last_error;
}

const char *
test_log_last_warning (void)
{
  return last_warning;
}

void
test_log_dump (const char *heading)
{
  unsigned i, first;

  pthread_mutex_lock (&capture_lock);
  first = log_ring_next > LOG_RING_LINES ? log_ring_next - LOG_RING_LINES : 0;
  fprintf (stderr, "%s (%u log line(s), last %u):\n", heading,
           log_ring_next, log_ring_next - first);
  for (i = first; i < log_ring_next; i++)
    fprintf (stderr, "  %s\n", log_ring[i % LOG_RING_LINES]);
  pthread_mutex_unlock (&capture_lock);
}
