/* SPDX-License-Identifier: BSD-3-Clause */
/* test-fanout.c — fanout_run: every job once, many at once, stop on error.
 *
 * WHAT: a job count n and a lane count L: every item runs exactly once;
 * with L lanes, L jobs are in flight together (each job waits until L are,
 * which a serial fanout would never reach: a deadline turns that into a
 * failure instead of a hang); the first failure stops new items and is
 * returned.  THREADS: fanout's lanes.  FAILURE: cmocka assertions.
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "fanout.h"

#define N 200u
#define LANES 8u

struct jobs {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  unsigned runs[N];
  unsigned in_flight, peak;
  bool lane_busy[LANES];
  bool lane_clash;
  unsigned wait_for;            /* jobs wait until this many are in flight */
  unsigned fail_item;           /* N: none */
  bool timed_out;
};

static int
job (void *opaque, unsigned lane, unsigned item)
{
  struct jobs *j = opaque;
  struct timespec deadline;
  int r = 0;

  clock_gettime (CLOCK_REALTIME, &deadline);
  deadline.tv_sec += 10;
  pthread_mutex_lock (&j->lock);
  j->runs[item]++;
  if (lane >= LANES || j->lane_busy[lane])
    j->lane_clash = true;
  else
    j->lane_busy[lane] = true;
  j->in_flight++;
  if (j->in_flight > j->peak)
    j->peak = j->in_flight;
  pthread_cond_broadcast (&j->cond);
  while (j->peak < j->wait_for && !j->timed_out && r == 0)
    r = pthread_cond_timedwait (&j->cond, &j->lock, &deadline);
  if (r != 0)
    j->timed_out = true;
  j->in_flight--;
  if (lane < LANES)
    j->lane_busy[lane] = false;
  pthread_mutex_unlock (&j->lock);
  return item == j->fail_item ? -EIO : 0;
}

static void
init (struct jobs *j, unsigned wait_for, unsigned fail_item)
{
  memset (j, 0, sizeof *j);
  pthread_mutex_init (&j->lock, NULL);
  pthread_cond_init (&j->cond, NULL);
  j->wait_for = wait_for;
  j->fail_item = fail_item;
}

static void
test_fanout_every_item_once_in_parallel (void **state)
{
  struct jobs j;
  unsigned i;

  (void) state;
  init (&j, LANES, N);
  assert_int_equal (fanout_run (N, LANES, job, &j), 0);
  for (i = 0; i < N; i++)
    assert_int_equal (j.runs[i], 1);
  assert_false (j.timed_out);
  assert_false (j.lane_clash);
  assert_int_equal (j.peak, LANES);
}

static void
test_fanout_more_lanes_than_items (void **state)
{
  struct jobs j;

  (void) state;
  init (&j, 3, N);
  assert_int_equal (fanout_run (3, LANES, job, &j), 0);
  assert_int_equal (j.runs[0] + j.runs[1] + j.runs[2], 3);
  assert_false (j.timed_out);
  assert_int_equal (fanout_run (0, LANES, job, &j), 0);
}

static void
test_fanout_failure_stops_new_items (void **state)
{
  struct jobs j;
  unsigned i, started = 0;

  (void) state;
  init (&j, 1, 0);
  assert_int_equal (fanout_run (N, 1, job, &j), -EIO);
  for (i = 0; i < N; i++)
    started += j.runs[i];
  assert_int_equal (started, 1);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_fanout_every_item_once_in_parallel),
    cmocka_unit_test (test_fanout_more_lanes_than_items),
    cmocka_unit_test (test_fanout_failure_stops_new_items),
  };

  return cmocka_run_group_tests (tests, NULL, NULL);
}
