/* SPDX-License-Identifier: BSD-3-Clause */
/* test-seqcut.c — unit tests for the sequential cutoff.
 *
 * WHAT: the exact threshold (length >= cutoff, the current request
 * included), stream continuation, the stream timeout at its exact edge,
 * LRU replacement of SEQCUT_STREAMS streams, interleaved streams, random
 * I/O (seeded) never bypassing, cutoff 0, the real-clock entry point and
 * concurrent streams from several threads.
 * WHY: a wrong cutoff either pollutes the cache with scans or stops
 * caching the working set.
 * INVARIANTS: the random test prints its seed; NBDCACHE_SEED (or
 * NBDCACHE_TEST_SEED) repeats it.  Time is passed explicitly
 * (seqcut_check_at), so nothing depends on the machine's speed.
 * THREADS AND LOCKS: the concurrency test runs one stream per thread and
 * reports through counters (cmocka's assertions are not thread-safe).
 * FAILURE: cmocka assertions.
 * NOT HERE: what a bypass does to requests (test-cache.c).
 */
#include <config.h>

#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <cmocka.h>

#include "seqcut.h"

#define KiB (UINT64_C (1) << 10)
#define MiB (UINT64_C (1) << 20)
#define GiB (UINT64_C (1) << 30)

static struct seqcut *
create (uint64_t cutoff_bytes)
{
  struct seqcut *s = NULL;

  assert_int_equal (seqcut_create (cutoff_bytes, &s), 0);
  assert_non_null (s);
  return s;
}

static uint64_t
seed_from_env (const char *test)
{
  const char *env = getenv ("NBDCACHE_SEED");
  uint64_t seed;

  if (env == NULL)
    env = getenv ("NBDCACHE_TEST_SEED");
  seed = env ? strtoull (env, NULL, 0) : (uint64_t) time (NULL);
  printf ("%s: seed %" PRIu64 " (set NBDCACHE_SEED to repeat)\n",
          test, seed);
  return seed ? seed : 1;
}

static uint64_t
rng_next (uint64_t *s)
{
  /* xorshift64* */
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * UINT64_C (2685821657736338717);
}

static void
test_seqcut_threshold_exact (void **state)
{
  struct seqcut *s = create (4 * MiB);
  struct seqcut *t = create (4 * MiB + 1);
  int i;

  /* 1 MiB requests: the fourth reaches 4 MiB and bypasses, and so does
   * every later one.
   */
  for (i = 0; i < 3; ++i)
    assert_false (seqcut_check_at (s, i * MiB, MiB, 0));
  assert_true (seqcut_check_at (s, 3 * MiB, MiB, 0));
  assert_true (seqcut_check_at (s, 4 * MiB, 4 * KiB, 0));
  assert_true (seqcut_check_at (s, 4 * MiB + 4 * KiB, 1, 0));

  /* One byte more of cutoff: the fourth does not, the fifth does. */
  for (i = 0; i < 4; ++i)
    assert_false (seqcut_check_at (t, i * MiB, MiB, 0));
  assert_true (seqcut_check_at (t, 4 * MiB, 1, 0));

  /* A single request: at the cutoff bypasses, one byte short does not. */
  assert_true (seqcut_check_at (s, 10 * GiB, 4 * MiB, 0));
  assert_false (seqcut_check_at (s, 20 * GiB, 4 * MiB - 1, 0));
  /* …and one more byte continuing it does. */
  assert_true (seqcut_check_at (s, 20 * GiB + 4 * MiB - 1, 1, 0));

  seqcut_destroy (s);
  seqcut_destroy (t);
}

static void
test_seqcut_continuation_needs_exact_start (void **state)
{
  struct seqcut *s = create (4 * MiB);

  assert_false (seqcut_check_at (s, 0, 3 * MiB, 0));
  /* A gap of one byte or an overlap of one byte is a new stream. */
  assert_false (seqcut_check_at (s, 3 * MiB + 1, MiB, 0));
  assert_false (seqcut_check_at (s, 3 * MiB - 1, MiB, 0));
  /* The original stream is still there and continues exactly. */
  assert_true (seqcut_check_at (s, 3 * MiB, MiB, 0));
  /* Zero-length requests never bypass and change nothing. */
  assert_false (seqcut_check_at (s, 4 * MiB, 0, 0));
  assert_true (seqcut_check_at (s, 4 * MiB, 1, 0));
  seqcut_destroy (s);
}

static void
test_seqcut_timeout (void **state)
{
  struct seqcut *s = create (4 * MiB);
  const uint64_t T = SEQCUT_STREAM_TIMEOUT_MS;

  /* Used exactly SEQCUT_STREAM_TIMEOUT_MS ago: still the same stream. */
  assert_false (seqcut_check_at (s, 0, MiB, 1000));
  assert_false (seqcut_check_at (s, MiB, MiB, 1000 + T));
  assert_false (seqcut_check_at (s, 2 * MiB, MiB, 1000 + 2 * T));
  assert_true (seqcut_check_at (s, 3 * MiB, MiB, 1000 + 3 * T));

  /* One millisecond more: a new stream, counted from zero. */
  assert_false (seqcut_check_at (s, 10 * GiB, MiB, 100000));
  assert_false (seqcut_check_at (s, 10 * GiB + MiB, MiB, 100000 + T));
  assert_false (seqcut_check_at (s, 10 * GiB + 2 * MiB, MiB,
                                 100000 + 2 * T + 1));
  assert_false (seqcut_check_at (s, 10 * GiB + 3 * MiB, MiB,
                                 100000 + 2 * T + 2));
  assert_false (seqcut_check_at (s, 10 * GiB + 4 * MiB, MiB,
                                 100000 + 2 * T + 3));
  assert_true (seqcut_check_at (s, 10 * GiB + 5 * MiB, MiB,
                                100000 + 2 * T + 4));

  /* A clock that steps back counts as no time passing. */
  assert_false (seqcut_check_at (s, 20 * GiB, 3 * MiB, 500000));
  assert_true (seqcut_check_at (s, 20 * GiB + 3 * MiB, MiB, 400000));
  seqcut_destroy (s);
}

static void
test_seqcut_lru_replacement (void **state)
{
  struct seqcut *s = create (4 * MiB);
  uint64_t now = 0;
  int i;

  /* SEQCUT_STREAMS streams of 1 MiB each, stream i at i GiB; stream 0 is
   * the least recently used.
   */
  for (i = 0; i < SEQCUT_STREAMS; ++i)
    assert_false (seqcut_check_at (s, i * GiB, MiB, now++));
  /* Touch stream 0 (now 2 MiB): stream 1 becomes the least recent. */
  assert_false (seqcut_check_at (s, MiB, MiB, now++));
  /* The 129th stream evicts stream 1, and only it. */
  assert_false (seqcut_check_at (s, 1000 * GiB, MiB, now++));

  /* Stream 2, the next oldest, survived: 1 + 3 MiB reaches the cutoff. */
  assert_true (seqcut_check_at (s, 2 * GiB + MiB, 3 * MiB, now++));
  /* Stream 0 survived with its 2 MiB. */
  assert_true (seqcut_check_at (s, 2 * MiB, 2 * MiB, now++));
  /* The 129th stream is tracked. */
  assert_true (seqcut_check_at (s, 1000 * GiB + MiB, 3 * MiB, now++));
  /* The newest of the original ones too. */
  assert_true (seqcut_check_at (s, (SEQCUT_STREAMS - 1) * GiB + MiB,
                                3 * MiB, now++));
  /* Stream 1 was forgotten: this starts a new stream of 3 MiB. */
  assert_false (seqcut_check_at (s, GiB + MiB, 3 * MiB, now++));
  seqcut_destroy (s);
}

static void
test_seqcut_lru_cycle (void **state)
{
  /* SEQCUT_STREAMS + 1 streams round robin: each new request evicts the
   * very stream that would have continued next, so nothing ever bypasses;
   * with SEQCUT_STREAMS streams all of them are remembered.
   */
  struct seqcut *s = create (4 * MiB);
  struct seqcut *t = create (4 * MiB);
  uint64_t now = 0;
  int round, i;

  for (round = 0; round < 6; ++round)
    for (i = 0; i < SEQCUT_STREAMS + 1; ++i)
      assert_false (seqcut_check_at (s, i * GiB + round * MiB, MiB, now++));
  for (round = 0; round < 4; ++round)
    for (i = 0; i < SEQCUT_STREAMS; ++i)
      assert_int_equal (seqcut_check_at (t, i * GiB + round * MiB, MiB,
                                         now++), round == 3);
  seqcut_destroy (s);
  seqcut_destroy (t);
}

static void
test_seqcut_interleaved_streams (void **state)
{
  struct seqcut *s = create (4 * MiB);
  const uint64_t a = 0, b = 7 * GiB;
  uint64_t now = 0;
  int i;

  /* Two readers alternating 512 KiB requests: both detected at their
   * eighth request.
   */
  for (i = 0; i < 12; ++i) {
    bool want = i >= 7;

    assert_int_equal (seqcut_check_at (s, a + i * 512 * KiB, 512 * KiB,
                                       now++), want);
    assert_int_equal (seqcut_check_at (s, b + i * 512 * KiB, 512 * KiB,
                                       now++), want);
  }
  seqcut_destroy (s);
}

static void
test_seqcut_random_never_bypasses (void **state)
{
  struct seqcut *s = create (256 * KiB);
  uint64_t seed = seed_from_env ("test_seqcut_random_never_bypasses");
  uint64_t now = 0;
  int i, bypassed = 0;

  /* 4 KiB-aligned requests of up to 64 KiB anywhere in 1 TiB.  A chance
   * continuation is possible but four in a row are not.
   */
  for (i = 0; i < 50000; ++i) {
    uint64_t offset = (rng_next (&seed) % (UINT64_C (1) << 28)) * 4 * KiB;
    uint64_t count = (rng_next (&seed) % 16 + 1) * 4 * KiB;

    bypassed += seqcut_check_at (s, offset, count, now);
    now += rng_next (&seed) % 3;
  }
  assert_int_equal (bypassed, 0);
  seqcut_destroy (s);
}

static void
test_seqcut_cutoff_zero_disables (void **state)
{
  struct seqcut *s = create (0);
  uint64_t i;

  for (i = 0; i < 64; ++i)
    assert_false (seqcut_check_at (s, i * MiB, MiB, 0));
  assert_false (seqcut_check_at (s, 0, UINT64_MAX, 0));
  assert_false (seqcut_check (s, 64 * MiB, 32 * MiB));
  seqcut_destroy (s);
  seqcut_destroy (NULL);
}

static void
test_seqcut_saturates (void **state)
{
  struct seqcut *s = create (4 * MiB);

  /* An end past the offset space saturates at UINT64_MAX, not wraps. */
  assert_false (seqcut_check_at (s, UINT64_MAX - 10, MiB, 0));
  assert_false (seqcut_check_at (s, MiB - 11, MiB, 0));
  assert_true (seqcut_check_at (s, UINT64_MAX, 3 * MiB, 0));
  seqcut_destroy (s);
}

static void
test_seqcut_real_clock (void **state)
{
  struct seqcut *s = create (4 * MiB);
  int i;

  /* Well within the timeout on any machine. */
  for (i = 0; i < 3; ++i)
    assert_false (seqcut_check (s, i * MiB, MiB));
  assert_true (seqcut_check (s, 3 * MiB, MiB));
  seqcut_destroy (s);
}

#define N_THREADS 4
#define REQ_BYTES (64 * KiB)
#define N_REQS 200

struct streamer {
  struct seqcut *s;
  uint64_t base;
  int first_bypass;             /* index of the first bypass, or -1 */
  int wrong;                    /* bypass flips back to false */
};

static void *
streamer_thread (void *arg)
{
  struct streamer *w = arg;
  int i;

  w->first_bypass = -1;
  for (i = 0; i < N_REQS; ++i) {
    bool bypass = seqcut_check_at (w->s, w->base + i * REQ_BYTES, REQ_BYTES,
                                   0);

    if (bypass && w->first_bypass < 0)
      w->first_bypass = i;
    else if (!bypass && w->first_bypass >= 0)
      w->wrong++;
  }
  return NULL;
}

static void
test_seqcut_concurrent_streams (void **state)
{
  struct seqcut *s = create (4 * MiB);
  struct streamer w[N_THREADS];
  pthread_t th[N_THREADS];
  int i;

  for (i = 0; i < N_THREADS; ++i) {
    w[i] = (struct streamer) { .s = s, .base = (uint64_t) i * 100 * GiB };
    assert_int_equal (pthread_create (&th[i], NULL, streamer_thread, &w[i]),
                      0);
  }
  for (i = 0; i < N_THREADS; ++i) {
    assert_int_equal (pthread_join (th[i], NULL), 0);
    /* The 64th 64 KiB request reaches 4 MiB. */
    assert_int_equal (w[i].first_bypass, 4 * MiB / REQ_BYTES - 1);
    assert_int_equal (w[i].wrong, 0);
  }
  seqcut_destroy (s);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_seqcut_threshold_exact),
    cmocka_unit_test (test_seqcut_continuation_needs_exact_start),
    cmocka_unit_test (test_seqcut_timeout),
    cmocka_unit_test (test_seqcut_lru_replacement),
    cmocka_unit_test (test_seqcut_lru_cycle),
    cmocka_unit_test (test_seqcut_interleaved_streams),
    cmocka_unit_test (test_seqcut_random_never_bypasses),
    cmocka_unit_test (test_seqcut_cutoff_zero_disables),
    cmocka_unit_test (test_seqcut_saturates),
    cmocka_unit_test (test_seqcut_real_clock),
    cmocka_unit_test (test_seqcut_concurrent_streams),
  };

  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
