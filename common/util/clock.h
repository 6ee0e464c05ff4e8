/* SPDX-License-Identifier: BSD-3-Clause */
/* clock.h — the monotonic clock, in the units the code base uses.
 *
 * WHAT: now in milliseconds and nanoseconds (CLOCK_MONOTONIC), the
 * timespec of a monotonic millisecond time (for pthread_cond_timedwait),
 * and a condition variable whose timed waits use that clock.
 * WHY: the engine's threads (journal, writeback, GC), the allocator's
 * bounded waits, the trim queue and the sequential cutoff all time things
 * the same way; one copy keeps the units and the clock the same.
 * THREADS: all safe from any thread.  FAILURE: clock_cond_init returns
 * 0 or -errno; the rest cannot fail (CLOCK_MONOTONIC always exists on
 * Linux).
 */
#ifndef NBDCACHE_CLOCK_H
#define NBDCACHE_CLOCK_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

static inline uint64_t
clock_now_ns (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * UINT64_C (1000000000) + (uint64_t) ts.tv_nsec;
}

static inline uint64_t
clock_now_ms (void)
{
  return clock_now_ns () / 1000000;
}

/* The timespec of monotonic time ms (e.g. clock_now_ms () + 200). */
static inline struct timespec
clock_timespec_of_ms (uint64_t ms)
{
  struct timespec ts = {
    .tv_sec = (time_t) (ms / 1000),
    .tv_nsec = (long) (ms % 1000) * 1000000L,
  };

  return ts;
}

/* A condition variable whose pthread_cond_timedwait deadlines are
 * CLOCK_MONOTONIC times (clock_timespec_of_ms).  0 or -errno.
 */
static inline int
clock_cond_init (pthread_cond_t *c)
{
  pthread_condattr_t a;
  int r;

  if ((r = pthread_condattr_init (&a)) != 0)
    return -r;
  r = pthread_condattr_setclock (&a, CLOCK_MONOTONIC);
  if (r == 0)
    r = pthread_cond_init (c, &a);
  pthread_condattr_destroy (&a);
  return -r;
}

#endif /* NBDCACHE_CLOCK_H */
