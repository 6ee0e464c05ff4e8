/* SPDX-License-Identifier: BSD-3-Clause */
/* rng.c — the tests' one PRNG and their one seed variable.
 *
 * WHAT: xoshiro256** seeded through splitmix64, and the seed from
 * NBDCACHE_SEED (else the clock and pid), printed the same way by every
 * test so any randomised failure can be replayed.
 * WHY: one generator and one variable, instead of a private one per test
 * and four variable names.
 * INVARIANTS: a seeded state is never all zeros.
 * THREADS AND LOCKS: none; a struct test_rng belongs to one thread.
 * FAILURE: a malformed NBDCACHE_SEED is reported and a fresh seed used.
 * NOT HERE: what the tests do with the numbers.
 */
#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "testkit.h"

uint64_t
test_mix64 (uint64_t x)
{
  uint64_t z = x + UINT64_C (0x9e3779b97f4a7c15);

  z = (z ^ (z >> 30)) * UINT64_C (0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C (0x94d049bb133111eb);
  return z ^ (z >> 31);
}

uint64_t
test_splitmix_next (uint64_t *state)
{
  uint64_t x = *state;

  *state = x + UINT64_C (0x9e3779b97f4a7c15);
  return test_mix64 (x);
}

void
test_rng_seed (struct test_rng *rng, uint64_t seed)
{
  uint64_t x = seed;
  int i;

  for (i = 0; i < 4; i++) {
    x += UINT64_C (0x9e3779b97f4a7c15);
    rng->s[i] = test_mix64 (x);
  }
  if ((rng->s[0] | rng->s[1] | rng->s[2] | rng->s[3]) == 0)
    rng->s[0] = 1;
}

static inline uint64_t
rotl (uint64_t x, int k)
{
  return (x << k) | (x >> (64 - k));
}

/* xoshiro256** */
uint64_t
test_rng_next (struct test_rng *rng)
{
  uint64_t *s = rng->s;
  uint64_t result = rotl (s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;

  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl (s[3], 45);
  return result;
}

uint64_t
test_rng_below (struct test_rng *rng, uint64_t n)
{
  uint64_t limit, x;

  if (n == 0)
    return 0;
  /* Reject the top partial range so the result is unbiased. */
  limit = UINT64_MAX - UINT64_MAX % n;
  do
    x = test_rng_next (rng);
  while (x >= limit);
  return x % n;
}

uint64_t
test_rng_range (struct test_rng *rng, uint64_t lo, uint64_t hi)
{
  if (hi <= lo)
    return lo;
  if (lo == 0 && hi == UINT64_MAX)
    return test_rng_next (rng);
  return lo + test_rng_below (rng, hi - lo + 1);
}

bool
test_rng_chance (struct test_rng *rng, unsigned percent)
{
  return test_rng_below (rng, 100) < percent;
}

uint64_t
test_seed_from_env (const char *program)
{
  const char *s = getenv ("NBDCACHE_SEED");
  uint64_t seed;
  struct timespec ts;

  if (s != NULL && *s != '\0' && test_parse_u64 (s, &seed)) {
    printf ("%s: seed %" PRIu64 " (from NBDCACHE_SEED)\n", program, seed);
  }
  else {
    if (s != NULL && *s != '\0')
      fprintf (stderr, "%s: NBDCACHE_SEED=%s is not a number; ignored\n",
               program, s);
    clock_gettime (CLOCK_REALTIME, &ts);
    seed = test_mix64 ((uint64_t) ts.tv_sec * 1000000000 + ts.tv_nsec
                       + ((uint64_t) getpid () << 32));
    /* Keep it short enough to type. */
    seed %= UINT64_C (1000000000000);
    printf ("%s: seed %" PRIu64 " (NBDCACHE_SEED=%" PRIu64 " to replay)\n",
            program, seed, seed);
  }
  fflush (stdout);
  return seed;
}
