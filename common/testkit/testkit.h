/* SPDX-License-Identifier: BSD-3-Clause */
/* testkit.h — the one test kit every cmocka unit test links.
 *
 * Owns: nothing global except the log capture's buffers.  Four pieces:
 *
 * 1. Sizes: KIB, MIB, GIB as uint64_t.
 *
 * 2. One PRNG (xoshiro256**, seeded through splitmix64, whose one-word
 *    stream test_splitmix_next is the light variant) and ONE seed
 *    variable, NBDCACHE_SEED (decimal or 0x hex).  test_seed_from_env
 *    always prints the seed the same way, "<program>: seed <n> (...)", so
 *    every randomised failure can be replayed.  Tests that need several
 *    streams derive them with test_mix64 (seed ^ index).
 *
 * 3. Log capture: the logger's sink kept in memory — error and warning
 *    counts, the last error and the last warning, and a ring of the last
 *    lines that test_log_dump prints on failure.  NBDCACHE_TEST_VERBOSE=1
 *    lets every message through to stderr as well.
 *
 * 4. The environment: numbers from the environment, a monotonic clock.
 *
 * Threads: the log capture is thread-safe (one mutex); a PRNG belongs to
 * one thread.
 * Not here: fakes and stores of one module (beside that module's tests:
 * common/cache/test-store.c, fake-*.c); the crash model.
 */
#ifndef NBDCACHE_TESTKIT_H
#define NBDCACHE_TESTKIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- 1. sizes ---- */

#define KIB (UINT64_C (1) << 10)
#define MIB (UINT64_C (1) << 20)
#define GIB (UINT64_C (1) << 30)

/* ---- 2. PRNG and seed ---- */

struct test_rng {
  uint64_t s[4];
};

void test_rng_seed (struct test_rng *rng, uint64_t seed);
uint64_t test_rng_next (struct test_rng *rng);
/* Uniform in [0, n); n = 0 returns 0. */
uint64_t test_rng_below (struct test_rng *rng, uint64_t n);
/* Uniform in [lo, hi] (inclusive). */
uint64_t test_rng_range (struct test_rng *rng, uint64_t lo, uint64_t hi);
/* True with probability percent / 100. */
bool test_rng_chance (struct test_rng *rng, unsigned percent);
/* splitmix64 of x: mixes a seed and an index into a new seed. */
uint64_t test_mix64 (uint64_t x);
/* The splitmix64 stream over one word of state (the generator that seeds
 * a test_rng): *state advances, the next number comes back.  For tests
 * that keep their randomness in a uint64_t; any state is valid.
 */
uint64_t test_splitmix_next (uint64_t *state);

/* The seed from NBDCACHE_SEED (decimal or 0x hex), else from the clock
 * and pid.  Prints "<program>: seed <n> (NBDCACHE_SEED=<n> to replay)"
 * or "<program>: seed <n> (from NBDCACHE_SEED)" on stdout.
 */
uint64_t test_seed_from_env (const char *program);

/* ---- 3. log capture ---- */

/* Route the logger into the capture (level WARNING, or DEBUG with
 * NBDCACHE_TEST_VERBOSE=1) and clear it.
 */
void test_log_capture (void);
/* Forget the counts, the last lines and the ring. */
void test_log_clear (void);
/* Errors / warnings captured since the last clear. */
unsigned test_log_errors (void);
unsigned test_log_warnings (void);
/* The last error / warning since the last clear ("" if none).  The
 * pointer stays valid; its content changes with the next message.
 */
const char *test_log_last_error (void);
const char *test_log_last_warning (void);
/* Print the ring (the last lines) to stderr under a heading. */
void test_log_dump (const char *heading);

/* ---- 4. environment ---- */

/* A whole unsigned number, decimal or 0x hex, nothing after it. */
bool test_parse_u64 (const char *s, uint64_t *out);

/* An unsigned number from the environment variable `name`, or dflt if it
 * is unset or empty.  A malformed value prints a message and returns dflt.
 */
uint64_t test_env_u64 (const char *name, uint64_t dflt);
/* Monotonic clock in milliseconds. */
uint64_t test_now_ms (void);

#endif /* NBDCACHE_TESTKIT_H */
