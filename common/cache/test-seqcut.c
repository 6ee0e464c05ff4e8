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
 * INVARIANTS: the random test prints its seed; NBDCACHE_SEED repeats
 * it.  Time is passed explicitly (seqcut_check_at), so nothing depends on
 * the machine's speed.
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

#include "testkit.h"

#include "seqcut.h"

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
  uint64_t seed = test_seed_from_env (test);

  return seed ? seed : 1;
}

/* The question without the accounting: the same answer as the check
 * would give, and the stream unchanged by asking.
 */
static void
test_seqcut_would_bypass_changes_nothing (void **state)
{
  struct seqcut *s = create (4 * MIB);
  int i;

  (void) state;
  assert_false (seqcut_would_bypass_at (s, 0, MIB, 0));
  for (i = 0; i < 3; i++)
    assert_false (seqcut_check_at (s, i * MIB, MIB, 0));
  /* Asked many times: still one MiB short of the cutoff. */
  for (i = 0; i < 10; i++) {
    assert_false (seqcut_would_bypass_at (s, 3 * MIB, MIB - 1, 0));
    assert_true (seqcut_would_bypass_at (s, 3 * MIB, MIB, 0));
  }
  assert_false (seqcut_would_bypass_at (s, 3 * MIB + 1, MIB, 0));
  assert_false (seqcut_check_at (s, 3 * MIB, MIB - 1, 0));
  assert_true (seqcut_would_bypass_at (s, 4 * MIB - 1, 1, 0));
  assert_true (seqcut_check_at (s, 4 * MIB - 1, 1, 0));
  /* A timed-out stream is a new one; cutoff 0 never bypasses. */
  assert_false (seqcut_would_bypass_at (s, 4 * MIB, MIB, 1000000));
  seqcut_set_cutoff (s, 0);
  assert_false (seqcut_would_bypass_at (s, 4 * MIB, 10 * MIB, 0));
  seqcut_destroy (s);
}

static void
test_seqcut_threshold_exact (void **state)
{
  struct seqcut *s = create (4 * MIB);
  struct seqcut *t = create (4 * MIB + 1);
  int i;

  /* 1 MIB requests: the fourth reaches 4 MIB and bypasses, and so does
   * every later one.
   */
  for (i = 0; i < 3; ++i)
    assert_false (seqcut_check_at (s, i * MIB, MIB, 0));
  assert_true (seqcut_check_at (s, 3 * MIB, MIB, 0));
  assert_true (seqcut_check_at (s, 4 * MIB, 4 * KIB, 0));
  assert_true (seqcut_check_at (s, 4 * MIB + 4 * KIB, 1, 0));

  /* One byte more of cutoff: the fourth does not, the fifth does. */
  for (i = 0; i < 4; ++i)
    assert_false (seqcut_check_at (t, i * MIB, MIB, 0));
  assert_true (seqcut_check_at (t, 4 * MIB, 1, 0));

  /* A single request: at the cutoff bypasses, one byte short does not. */
  assert_true (seqcut_check_at (s, 10 * GIB, 4 * MIB, 0));
  assert_false (seqcut_check_at (s, 20 * GIB, 4 * MIB - 1, 0));
  /* …and one more byte continuing it does. */
  assert_true (seqcut_check_at (s, 20 * GIB + 4 * MIB - 1, 1, 0));

  seqcut_destroy (s);
  seqcut_destroy (t);
}

static void
test_seqcut_continuation_needs_exact_start (void **state)
{
  struct seqcut *s = create (4 * MIB);

  assert_false (seqcut_check_at (s, 0, 3 * MIB, 0));
  /* A gap of one byte or an overlap of one byte is a new stream. */
  assert_false (seqcut_check_at (s, 3 * MIB + 1, MIB, 0));
  assert_false (seqcut_check_at (s, 3 * MIB - 1, MIB, 0));
  /* The original stream is still there and continues exactly. */
  assert_true (seqcut_check_at (s, 3 * MIB, MIB, 0));
  /* Zero-length requests never bypass and change nothing. */
  assert_false (seqcut_check_at (s, 4 * MIB, 0, 0));
  assert_true (seqcut_check_at (s, 4 * MIB, 1, 0));
  seqcut_destroy (s);
}

static void
test_seqcut_timeout (void **state)
{
  struct seqcut *s = create (4 * MIB);
  const uint64_t T = SEQCUT_STREAM_TIMEOUT_MS;

  /* Used exactly SEQCUT_STREAM_TIMEOUT_MS ago: still the same stream. */
  assert_false (seqcut_check_at (s, 0, MIB, 1000));
  assert_false (seqcut_check_at (s, MIB, MIB, 1000 + T));
  assert_false (seqcut_check_at (s, 2 * MIB, MIB, 1000 + 2 * T));
  assert_true (seqcut_check_at (s, 3 * MIB, MIB, 1000 + 3 * T));

  /* One millisecond more: a new stream, counted from zero. */
  assert_false (seqcut_check_at (s, 10 * GIB, MIB, 100000));
  assert_false (seqcut_check_at (s, 10 * GIB + MIB, MIB, 100000 + T));
  assert_false (seqcut_check_at (s, 10 * GIB + 2 * MIB, MIB,
                                 100000 + 2 * T + 1));
  assert_false (seqcut_check_at (s, 10 * GIB + 3 * MIB, MIB,
                                 100000 + 2 * T + 2));
  assert_false (seqcut_check_at (s, 10 * GIB + 4 * MIB, MIB,
                                 100000 + 2 * T + 3));
  assert_true (seqcut_check_at (s, 10 * GIB + 5 * MIB, MIB,
                                100000 + 2 * T + 4));

  /* A clock that steps back counts as no time passing. */
  assert_false (seqcut_check_at (s, 20 * GIB, 3 * MIB, 500000));
  assert_true (seqcut_check_at (s, 20 * GIB + 3 * MIB, MIB, 400000));
  seqcut_destroy (s);
}

static void
test_seqcut_lru_replacement (void **state)
{
  struct seqcut *s = create (4 * MIB);
  uint64_t now = 0;
  int i;

  /* SEQCUT_STREAMS streams of 1 MIB each, stream i at i GIB; stream 0 is
   * the least recently used.
   */
  for (i = 0; i < SEQCUT_STREAMS; ++i)
    assert_false (seqcut_check_at (s, i * GIB, MIB, now++));
  /* Touch stream 0 (now 2 MIB): stream 1 becomes the least recent. */
  assert_false (seqcut_check_at (s, MIB, MIB, now++));
  /* The 129th stream evicts stream 1, and only it. */
  assert_false (seqcut_check_at (s, 1000 * GIB, MIB, now++));

  /* Stream 2, the next oldest, survived: 1 + 3 MIB reaches the cutoff. */
  assert_true (seqcut_check_at (s, 2 * GIB + MIB, 3 * MIB, now++));
  /* Stream 0 survived with its 2 MIB. */
  assert_true (seqcut_check_at (s, 2 * MIB, 2 * MIB, now++));
  /* The 129th stream is tracked. */
  assert_true (seqcut_check_at (s, 1000 * GIB + MIB, 3 * MIB, now++));
  /* The newest of the original ones too. */
  assert_true (seqcut_check_at (s, (SEQCUT_STREAMS - 1) * GIB + MIB,
                                3 * MIB, now++));
  /* Stream 1 was forgotten: this starts a new stream of 3 MIB. */
  assert_false (seqcut_check_at (s, GIB + MIB, 3 * MIB, now++));
  seqcut_destroy (s);
}

static void
test_seqcut_lru_cycle (void **state)
{
  /* SEQCUT_STREAMS + 1 streams round robin: each new request evicts the
   * very stream that would have continued next, so nothing ever bypasses;
   * with SEQCUT_STREAMS streams all of them are remembered.
   */
  struct seqcut *s = create (4 * MIB);
  struct seqcut *t = create (4 * MIB);
  uint64_t now = 0;
  int round, i;

  for (round = 0; round < 6; ++round)
    for (i = 0; i < SEQCUT_STREAMS + 1; ++i)
      assert_false (seqcut_check_at (s, i * GIB + round * MIB, MIB, now++));
  for (round = 0; round < 4; ++round)
    for (i = 0; i < SEQCUT_STREAMS; ++i)
      assert_int_equal (seqcut_check_at (t, i * GIB + round * MIB, MIB,
                                         now++), round == 3);
  seqcut_destroy (s);
  seqcut_destroy (t);
}

static void
test_seqcut_interleaved_streams (void **state)
{
  struct seqcut *s = create (4 * MIB);
  const uint64_t a = 0, b = 7 * GIB;
  uint64_t now = 0;
  int i;

  /* Two readers alternating 512 KIB requests: both detected at their
   * eighth request.
   */
  for (i = 0; i < 12; ++i) {
    bool want = i >= 7;

    assert_int_equal (seqcut_check_at (s, a + i * 512 * KIB, 512 * KIB,
                                       now++), want);
    assert_int_equal (seqcut_check_at (s, b + i * 512 * KIB, 512 * KIB,
                                       now++), want);
  }
  seqcut_destroy (s);
}

static void
test_seqcut_random_never_bypasses (void **state)
{
  struct seqcut *s = create (256 * KIB);
  uint64_t seed = seed_from_env ("test_seqcut_random_never_bypasses");
  uint64_t now = 0;
  int i, bypassed = 0;

  /* 4 KIB-aligned requests of up to 64 KIB anywhere in 1 TiB.  A chance
   * continuation is possible but four in a row are not.
   */
  for (i = 0; i < 50000; ++i) {
    uint64_t offset = (test_splitmix_next (&seed) % (UINT64_C (1) << 28)) * 4 * KIB;
    uint64_t count = (test_splitmix_next (&seed) % 16 + 1) * 4 * KIB;

    bypassed += seqcut_check_at (s, offset, count, now);
    now += test_splitmix_next (&seed) % 3;
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
    assert_false (seqcut_check_at (s, i * MIB, MIB, 0));
  assert_false (seqcut_check_at (s, 0, UINT64_MAX, 0));
  assert_false (seqcut_check (s, 64 * MIB, 32 * MIB));
  seqcut_destroy (s);
  seqcut_destroy (NULL);
}

static void
test_seqcut_saturates (void **state)
{
  struct seqcut *s = create (4 * MIB);

  /* An end past the offset space saturates at UINT64_MAX, not wraps. */
  assert_false (seqcut_check_at (s, UINT64_MAX - 10, MIB, 0));
  assert_false (seqcut_check_at (s, MIB - 11, MIB, 0));
  assert_true (seqcut_check_at (s, UINT64_MAX, 3 * MIB, 0));
  seqcut_destroy (s);
}

static void
test_seqcut_real_clock (void **state)
{
  struct seqcut *s = create (4 * MIB);
  int i;

  /* Well within the timeout on any machine. */
  for (i = 0; i < 3; ++i)
    assert_false (seqcut_check (s, i * MIB, MIB));
  assert_true (seqcut_check (s, 3 * MIB, MIB));
  seqcut_destroy (s);
}

#define N_THREADS 4
#define REQ_BYTES (64 * KIB)
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
  struct seqcut *s = create (4 * MIB);
  struct streamer w[N_THREADS];
  pthread_t th[N_THREADS];
  int i;

  for (i = 0; i < N_THREADS; ++i) {
    w[i] = (struct streamer) { .s = s, .base = (uint64_t) i * 100 * GIB };
    assert_int_equal (pthread_create (&th[i], NULL, streamer_thread, &w[i]),
                      0);
  }
  for (i = 0; i < N_THREADS; ++i) {
    assert_int_equal (pthread_join (th[i], NULL), 0);
    /* The 64th 64 KIB request reaches 4 MIB. */
    assert_int_equal (w[i].first_bypass, 4 * MIB / REQ_BYTES - 1);
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
    cmocka_unit_test (test_seqcut_would_bypass_changes_nothing),
  };

  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
