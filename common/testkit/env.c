/* SPDX-License-Identifier: BSD-3-Clause */
/* env.c — numbers from the environment and a monotonic clock, for tests.
 *
 * WHAT: test_env_u64 (decimal or 0x hex, malformed values reported and
 * ignored) and test_now_ms.
 * WHY: every test tunes itself the same way (NBDCACHE_CRASH_POINTS, …).
 * INVARIANTS: none.  THREADS AND LOCKS: none (getenv only).
 * FAILURE: a malformed value prints one line and gives the default.
 * NOT HERE: the seed (rng.c).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "testkit.h"

bool
test_parse_u64 (const char *s, uint64_t *out)
{
  char *end;
  unsigned long long v;

  if (s == NULL || *s == '\0' || *s == '-')
    return false;
  errno = 0;
  v = strtoull (s, &end, 0);
  if (errno != 0 || *end != '\0')
    return false;
  *out = v;
  return true;
}

uint64_t
test_env_u64 (const char *name, uint64_t dflt)
{
  const char *s = getenv (name);
  uint64_t v;

  if (s == NULL || *s == '\0')
    return dflt;
  if (!test_parse_u64 (s, &v)) {
    fprintf (stderr, "%s=%s is not a number; using %" PRIu64 "\n",
             name, s, dflt);
    return dflt;
  }
  return v;
}

uint64_t
test_now_ms (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}
