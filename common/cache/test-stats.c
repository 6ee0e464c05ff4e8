/* SPDX-License-Identifier: BSD-3-Clause */
/* test-stats.c — an export's statistics keep their documented invariants.
 *
 * WHAT: cache.h's "STATISTICS" (every counter counts successful
 * requests; a read is exactly one of hit / miss; a miss at most one of
 * bypass / promotion; write bypasses only where the mode caches writes)
 * in each mode: writeback, writethrough, writearound and none.
 * HOW: through the public API on a simulated cache device and a
 * surviving memory store (test-helpers), with writeback off.  First a
 * scripted sequence whose every counter is predicted exactly: a cold
 * miss, a full hit, a partial hit, a read and a write past the
 * sequential cutoff, a write then its read, a zero, a CACHE, and two
 * concurrent misses of one block (single-flight: the waiter hits); the
 * store's power hook is a gate that holds the first backing read until
 * the second reader has joined its flight.  Then a seeded mixed workload
 * from two threads (reads of every size, including partial hits and
 * cutoff streams, writes, zeroes, trims, CACHE), after which every
 * invariant is checked exactly and the operation counters equal what the
 * threads issued.
 * SEED: NBDCACHE_SEED replays the mixed workload; the seed is printed.
 * THREADS: the test thread plus two workers; no sleeps (the gate waits on
 * conditions with a deadline only a broken engine reaches).
 * FAILURE: cmocka assertions.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "backing.h"
#include "cache-internal.h"
#include "cache.h"
#include "cdev.h"
#include "missflight.h"
#include "test-gate.h"
#include "test-helpers.h"

#define DEVICE_BYTES (64 * MIB)
#define EXPORT_BYTES (8 * MIB)
#define CUTOFF_BYTES (256 * KIB)
#define WORKERS 2
#define OPS_PER_WORKER 1500

static uint64_t seed;


struct ctx {
  enum ncache_mode mode;
  struct cdev *cd;
  struct ncache_device *dev;
  struct test_store *store;
  struct ncache_export *nc;
  struct gate g;
};

static int
setup_mode (void **state, enum ncache_mode mode)
{
  const struct ncache_device_tuning dt = {
    .journal_delay_ms = 5, .format_bucket_bytes = 256 * KIB,
  };
  struct ncache_export_tuning tuning;
  struct ctx *c = calloc (1, sizeof *c);
  struct backing *b = NULL;
  unsigned char *data;
  uint64_t i;

  if (c == NULL)
    return -1;
  c->mode = mode;
  test_log_capture ();
  gate_init (&c->g);
  ncache_export_tuning_default (&tuning);
  tuning.writeback_off = true;
  tuning.sequential_cutoff_bytes = CUTOFF_BYTES;
  if (mode != NCACHE_MODE_NONE &&
      (cdev_sim_create (DEVICE_BYTES, &c->cd) < 0 ||
       ncache_device_open_cdev ("st", c->cd, true, &dt, &c->dev) < 0))
    return -1;
  if (test_store_create (EXPORT_BYTES, "memory:st", &c->store) < 0)
    return -1;
  data = test_store_data (c->store);
  for (i = 0; i < EXPORT_BYTES; i++)
    data[i] = (unsigned char) (i * 7 + (i >> 12));
  test_store_set_power_fn (c->store, gate_power, &c->g);
  {
    struct ncache_config cfg = {
      .name = "st", .device = c->dev, .mode = mode, .tuning = &tuning,
    };

    if (test_store_open (c->store, &b) < 0 ||
        ncache_open (&cfg, b, &c->nc) < 0)
      return -1;
  }
  if (c->nc->mf)
    missflight_set_join_hook (c->nc->mf, gate_joined, &c->g);
  *state = c;
  return 0;
}

static int
setup_writeback (void **state)
{
  return setup_mode (state, NCACHE_MODE_WRITEBACK);
}

static int
setup_writethrough (void **state)
{
  return setup_mode (state, NCACHE_MODE_WRITETHROUGH);
}

static int
setup_writearound (void **state)
{
  return setup_mode (state, NCACHE_MODE_WRITEAROUND);
}

static int
setup_none (void **state)
{
  return setup_mode (state, NCACHE_MODE_NONE);
}

static int
teardown (void **state)
{
  struct ctx *c = *state;

  ncache_close (c->nc);
  ncache_device_close (c->dev);
  test_store_destroy (c->store);
  gate_destroy (&c->g);
  free (c);
  return 0;
}

static void
print_stats (const char *what, const struct ncache_stats *st)
{
  printf ("%s: reads %" PRIu64 " writes %" PRIu64 " zeroes %" PRIu64
          " hits %" PRIu64 " misses %" PRIu64 " promotions %" PRIu64
          " bypasses %" PRIu64 " write_bypasses %" PRIu64
          " sequential_bypasses %" PRIu64 " errors %" PRIu64 "\n",
          what, st->reads, st->writes, st->zeroes, st->hits, st->misses,
          st->promotions, st->bypasses, st->write_bypasses,
          st->sequential_bypasses, st->errors);
}

/* Every invariant of cache.h's "STATISTICS", exactly (nothing in flight). */
static void
check_invariants (const struct ctx *c, const struct ncache_stats *st)
{
  assert_int_equal (st->errors, 0);
  if (c->mode == NCACHE_MODE_NONE) {
    assert_int_equal (st->hits, 0);
    assert_int_equal (st->misses, 0);
    assert_int_equal (st->promotions, 0);
    assert_int_equal (st->bypasses, 0);
    assert_int_equal (st->write_bypasses, 0);
    assert_int_equal (st->sequential_bypasses, 0);
    return;
  }
  assert_int_equal (st->hits + st->misses, st->reads);
  assert_true (st->write_bypasses <= st->bypasses);
  assert_true (st->promotions + (st->bypasses - st->write_bypasses)
               <= st->misses);
  assert_true (st->write_bypasses <= st->writes + st->zeroes);
  if (c->mode == NCACHE_MODE_WRITEAROUND)
    assert_int_equal (st->write_bypasses, 0);
  assert_true (st->sequential_bypasses <= st->bypasses);
}

/* The counters a step changes, as deltas. */
struct delta {
  uint64_t hits, misses, promotions, bypasses, write_bypasses, seq;
};

/* Run nothing; compare st - *before with d (all zero in mode none), then
 * make *before the current counters.
 */
static void
expect (struct ctx *c, struct ncache_stats *before, const char *step,
        struct delta d)
{
  struct ncache_stats st;

  ncache_get_stats (c->nc, &st);
  print_stats (step, &st);
  check_invariants (c, &st);
  if (c->mode == NCACHE_MODE_NONE)
    memset (&d, 0, sizeof d);
  assert_int_equal (st.hits - before->hits, d.hits);
  assert_int_equal (st.misses - before->misses, d.misses);
  assert_int_equal (st.promotions - before->promotions, d.promotions);
  assert_int_equal (st.bypasses - before->bypasses, d.bypasses);
  assert_int_equal (st.write_bypasses - before->write_bypasses,
                    d.write_bypasses);
  assert_int_equal (st.sequential_bypasses - before->sequential_bypasses,
                    d.seq);
  *before = st;
}

static void
read_ok (struct ctx *c, uint64_t offset, uint64_t count)
{
  unsigned char *buf = malloc (count);

  assert_non_null (buf);
  assert_int_equal (ncache_pread (c->nc, buf, count, offset, 0), 0);
  assert_memory_equal (buf, test_store_data (c->store) + offset, count);
  free (buf);
}

static void
write_ok (struct ctx *c, uint64_t offset, uint64_t count, unsigned char v)
{
  unsigned char *buf = malloc (count);

  assert_non_null (buf);
  memset (buf, v, count);
  assert_int_equal (ncache_pwrite (c->nc, buf, count, offset, 0), 0);
  free (buf);
}

struct reader {
  struct ncache_export *nc;
  uint64_t offset, count;
  unsigned char buf[4096];
  int r;
  pthread_t thread;
};

static void *
reader_main (void *arg)
{
  struct reader *rd = arg;

  rd->r = ncache_pread (rd->nc, rd->buf, rd->count, rd->offset, 0);
  return NULL;
}

/* Two concurrent misses of one 4k block: the second joins the first's
 * flight, then finds the block cached.
 */
static void
same_block_race (struct ctx *c, uint64_t offset)
{
  struct reader a = { .nc = c->nc, .offset = offset, .count = 4096 };
  struct reader b = a;

  gate_set (&c->g, true, false);
  assert_int_equal (pthread_create (&a.thread, NULL, reader_main, &a), 0);
  gate_wait (&c->g, 1, 0);
  assert_int_equal (pthread_create (&b.thread, NULL, reader_main, &b), 0);
  gate_wait (&c->g, 0, 1);
  gate_set (&c->g, false, true);
  pthread_join (a.thread, NULL);
  pthread_join (b.thread, NULL);
  assert_int_equal (a.r, 0);
  assert_int_equal (b.r, 0);
  assert_memory_equal (a.buf, test_store_data (c->store) + offset, 4096);
  assert_memory_equal (b.buf, test_store_data (c->store) + offset, 4096);
}

/* The scripted sequence: every counter predicted. */
static void
test_stats_script (void **state)
{
  struct ctx *c = *state;
  bool wa = c->mode == NCACHE_MODE_WRITEAROUND;
  struct ncache_stats st = { 0 };
  unsigned char *buf = malloc (4096);

  assert_non_null (buf);
  read_ok (c, 0, 4096);
  expect (c, &st, "cold miss", (struct delta) { .misses = 1,
                                                 .promotions = 1 });
  read_ok (c, 0, 4096);
  expect (c, &st, "full hit", (struct delta) { .hits = 1 });
  read_ok (c, 0, 16384);        /* block 0 cached, 1..3 not */
  expect (c, &st, "partial hit", (struct delta) { .misses = 1,
                                                   .promotions = 1 });
  read_ok (c, 0, 16384);
  expect (c, &st, "partial hit promoted", (struct delta) { .hits = 1 });
  read_ok (c, 2 * 4096, 4096 + 2048); /* unaligned, inside cached blocks */
  expect (c, &st, "unaligned hit", (struct delta) { .hits = 1 });
  assert_int_equal (ncache_pread (c->nc, buf, 0, 0, 0), 0);
  expect (c, &st, "empty read", (struct delta) { .hits = 1 });
  /* One read of the cutoff's size bypasses on its own. */
  read_ok (c, 1 * MIB, CUTOFF_BYTES);
  expect (c, &st, "sequential read", (struct delta) { .misses = 1,
                                                       .bypasses = 1,
                                                       .seq = 1 });
  /* A cutoff-sized read over cached blocks only is a hit, not a bypass
   * (CACHE prefetches without counting a read).
   */
  assert_int_equal (ncache_cache (c->nc, CUTOFF_BYTES, 0, 0), 0);
  read_ok (c, 0, CUTOFF_BYTES);
  expect (c, &st, "sequential hit", (struct delta) { .hits = 1 });
  /* A read that spans the bypassed range, then cached. */
  read_ok (c, 1 * MIB + 8192, 8192);
  expect (c, &st, "miss after bypass", (struct delta) { .misses = 1,
                                                         .promotions = 1 });
  /* A write, then its read. */
  write_ok (c, 2 * MIB, 8192, 0xa5);
  expect (c, &st, "write", (struct delta) { 0 });
  memset (test_store_data (c->store) + 2 * MIB, 0xa5, 8192);
  read_ok (c, 2 * MIB, 8192);
  if (wa)
    expect (c, &st, "read after write", (struct delta) { .misses = 1,
                                                          .promotions = 1 });
  else
    expect (c, &st, "read after write", (struct delta) { .hits = 1 });
  /* A write past the cutoff goes around: a write bypass where the mode
   * would have cached it.
   */
  write_ok (c, 3 * MIB, CUTOFF_BYTES, 0x5a);
  memset (test_store_data (c->store) + 3 * MIB, 0x5a, CUTOFF_BYTES);
  if (wa)
    expect (c, &st, "sequential write", (struct delta) { 0 });
  else
    expect (c, &st, "sequential write",
            (struct delta) { .bypasses = 1, .write_bypasses = 1, .seq = 1 });
  /* Zeroes and CACHE: neither hit nor miss. */
  assert_int_equal (ncache_zero (c->nc, 8192, 4 * MIB, 0), 0);
  memset (test_store_data (c->store) + 4 * MIB, 0, 8192);
  assert_int_equal (ncache_cache (c->nc, 65536, 5 * MIB, 0), 0);
  expect (c, &st, "zero and cache", (struct delta) { 0 });
  read_ok (c, 5 * MIB, 65536);
  expect (c, &st, "read of prefetched", (struct delta) { .hits = 1 });
  /* Single-flight: one miss, one hit. */
  if (c->mode != NCACHE_MODE_NONE) {
    same_block_race (c, 6 * MIB);
    expect (c, &st, "same-block race", (struct delta) { .hits = 1,
                                                         .misses = 1,
                                                         .promotions = 1 });
  }
  free (buf);
}

struct worker {
  struct ctx *c;
  uint64_t seed;
  unsigned id;
  uint64_t reads, writes, zeroes;
  pthread_t thread;
};

/* Each worker owns its own 1 MiB window's writes (so data stays
 * checkable) but reads everywhere in [0, 4 MiB).
 */
static void *
worker_main (void *arg)
{
  struct worker *w = arg;
  struct ncache_export *nc = w->c->nc;
  struct test_rng rng;
  unsigned char *buf = malloc (2 * CUTOFF_BYTES);
  unsigned i;

  if (buf == NULL)
    return NULL;
  test_rng_seed (&rng, test_mix64 (w->seed ^ w->id));
  for (i = 0; i < OPS_PER_WORKER; i++) {
    uint64_t pick = test_rng_below (&rng, 100);
    uint64_t len, off;

    if (pick < 55) {
      /* Reads: mostly small, sometimes unaligned, sometimes a stream. */
      len = test_rng_chance (&rng, 5) ? CUTOFF_BYTES
        : test_rng_range (&rng, 1, 16) * 4096;
      off = test_rng_below (&rng, 4 * MIB / 4096) * 4096;
      if (test_rng_chance (&rng, 20)) {
        off += test_rng_below (&rng, 4096);
        len -= test_rng_below (&rng, 2048);
      }
      if (off + len > 4 * MIB)
        off = 4 * MIB - len;
      if (ncache_pread (nc, buf, len, off, 0) == 0)
        w->reads++;
    }
    else if (pick < 85) {
      len = test_rng_chance (&rng, 5) ? CUTOFF_BYTES
        : test_rng_range (&rng, 1, 8) * 4096 - test_rng_below (&rng, 512);
      off = 4 * MIB + w->id * MIB + test_rng_below (&rng, MIB - len);
      memset (buf, (int) (i & 0xff), len);
      if (ncache_pwrite (nc, buf, len, off, 0) == 0)
        w->writes++;
    }
    else if (pick < 93) {
      len = test_rng_range (&rng, 1, 8) * 4096 + test_rng_below (&rng, 100);
      off = 4 * MIB + w->id * MIB + test_rng_below (&rng, MIB - len);
      if (ncache_zero (nc, len, off, 0) == 0)
        w->zeroes++;
    }
    else if (pick < 97) {
      len = test_rng_range (&rng, 1, 8) * 4096;
      off = 4 * MIB + w->id * MIB + test_rng_below (&rng, MIB - len);
      (void) ncache_trim (nc, len, off, 0);
    }
    else {
      off = test_rng_below (&rng, 4 * MIB / 4096) * 4096;
      (void) ncache_cache (nc, 4096 * 4, MIN (off, 4 * MIB - 16384), 0);
    }
  }
  free (buf);
  return NULL;
}

/* The mixed workload from two threads, then every invariant exactly. */
static void
test_stats_mixed (void **state)
{
  struct ctx *c = *state;
  struct worker w[WORKERS];
  struct ncache_stats st;
  uint64_t reads = 0, writes = 0, zeroes = 0;
  unsigned i;

  for (i = 0; i < WORKERS; i++) {
    w[i] = (struct worker) { .c = c, .seed = seed, .id = i };
    assert_int_equal (pthread_create (&w[i].thread, NULL, worker_main,
                                      &w[i]), 0);
  }
  for (i = 0; i < WORKERS; i++) {
    pthread_join (w[i].thread, NULL);
    reads += w[i].reads;
    writes += w[i].writes;
    zeroes += w[i].zeroes;
  }
  ncache_get_stats (c->nc, &st);
  print_stats (ncache_mode_name (c->mode), &st);
  check_invariants (c, &st);
  assert_int_equal (st.reads, reads);
  assert_int_equal (st.writes, writes);
  assert_int_equal (st.zeroes, zeroes);
  assert_int_equal (reads + writes + zeroes, WORKERS * OPS_PER_WORKER
                    - (st.trims + st.caches));
  if (c->mode != NCACHE_MODE_NONE) {
    /* The workload reaches every kind it was made for. */
    assert_true (st.hits > 0);
    assert_true (st.misses > 0);
    assert_true (st.promotions > 0);
    assert_true (st.sequential_bypasses > 0);
  }
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
#define BOTH(setup)                                                     \
    cmocka_unit_test_setup_teardown (test_stats_script, setup, teardown), \
    cmocka_unit_test_setup_teardown (test_stats_mixed, setup, teardown)
    BOTH (setup_writeback),
    BOTH (setup_writethrough),
    BOTH (setup_writearound),
    BOTH (setup_none),
#undef BOTH
  };

  seed = test_seed_from_env ("test-stats");
  return cmocka_run_group_tests (tests, NULL, NULL);
}
