/* SPDX-License-Identifier: BSD-3-Clause */
/* test-gc.c — unit tests for the device background thread (gc.c).
 *
 * WHAT: moving GC compacts fragmented dirty buckets (data reads back
 * identical, dirty data stays dirty, the old buckets are freed, the
 * blocks moved are exactly the live ones); batched discards after a big
 * trim (batches happen, the discarded buckets read as zeros on the
 * device, allocation never stalls, data written before and after still
 * reads back); a GC pass through gc_run_once (stale keys dropped, the
 * recount finds nothing to fix); a key stale only in memory (its gen
 * bump not durable) kept by the pass, so a DELETE over it is a cut;
 * stop/kick lifecycle.
 * HOW: the fixture of test-dev-fx.h (a real cache device on a simulated
 * cdev with 64 KiB buckets, one writeback export, writeback and the
 * sequential cutoff off, so dirty data stays put), a short journal delay.
 * The device's own background thread runs (woken by the allocator's
 * kicks); the test drives extra rounds with gc_run_once, which takes
 * turns with the thread.
 * SEED: the data patterns derive from NBDCACHE_SEED (printed).
 */
#include <config.h>

/* The stale-key test bumps a gen in memory as an eviction does. */
#define BUCKET_INTERNALS

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "backing.h"
#include "bkey.h"
#include "btree.h"
#include "bucket.h"
#include "cache-internal.h"
#include "cache.h"
#include "cdev.h"
#include "gc.h"
#include "log.h"
#include "testkit.h"
#include "test-dev-fx.h"
#include "super.h"

uint64_t seed;

/* The device's background thread. */
static struct gc *
gc_of (struct ctx *c)
{
  struct gc *g;

  pthread_mutex_lock (&c->dev->gc_ptr_lock);
  g = c->dev->gc;
  pthread_mutex_unlock (&c->dev->gc_ptr_lock);
  assert_non_null (g);
  return g;
}

static void
check_all (struct ctx *c)
{
  check_range (c, 0, EXPORT_BYTES);
}

static struct bucket_usage
usage (struct ctx *c)
{
  struct bucket_usage u;

  bucket_get_usage (c->dev->bs, &u);
  return u;
}

static struct gc_stats
gstats (struct ctx *c)
{
  struct gc_stats st;

  gc_get_stats (gc_of (c), &st);
  return st;
}

/* ---- moving GC ---- */

#define CHUNKS 16u

static void
test_gc_moving (void **state)
{
  struct ctx c;
  struct bucket_usage u0, u1;
  struct gc_stats st;
  uint64_t xdirty;
  unsigned i;

  ctx_open (&c, "gc", 5, 0);
  /* 16 buckets of dirty data, then 3/4 of each overwritten: each old
   * bucket keeps 4 live dirty blocks (25 % full).
   */
  for (i = 0; i < CHUNKS; i++)
    write_pattern (&c, (uint64_t) i * BUCKET_BYTES, BUCKET_BYTES, 1, 0);
  for (i = 0; i < CHUNKS; i++)
    write_pattern (&c, (uint64_t) i * BUCKET_BYTES, BUCKET_BYTES * 3 / 4, 2,
                   0);
  assert_int_equal (ncache_flush (c.nc, 0), 0);
  check_all (&c);
  u0 = usage (&c);
  xdirty = bucket_export_dirty_blocks (c.dev->bs, c.nc->export_id);
  assert_int_equal (u0.dirty_blocks, CHUNKS * BUCKET_BLOCKS);
  assert_int_equal (xdirty, CHUNKS * BUCKET_BLOCKS);

  assert_int_equal (gc_run_once (gc_of (&c), true), 0);
  st = gstats (&c);
  assert_int_equal (st.moving_runs, 1);
  /* Exactly the live blocks of the 16 fragmented buckets moved. */
  assert_int_equal (st.moving_bytes,
                    (uint64_t) CHUNKS * (BUCKET_BLOCKS / 4) * NC_BLOCK_BYTES);
  assert_true (st.moving_keys >= CHUNKS);
  assert_int_equal (st.errors, 0);
  assert_true (st.runs >= 1);
  assert_int_equal (usage (&c).moving, 0);
  check_all (&c);

  /* Moved, not dropped: still dirty, counted the same. */
  u1 = usage (&c);
  assert_int_equal (u1.dirty_blocks, u0.dirty_blocks);
  assert_int_equal (u1.live_blocks, u0.live_blocks);
  assert_int_equal (bucket_export_dirty_blocks (c.dev->bs, c.nc->export_id),
                    xdirty);

  /* Once the replacement is durable the old buckets are free: 16 data
   * buckets became (at most) 4 full ones and part of a write point.
   */
  assert_int_equal (ncache_flush (c.nc, 0), 0);
  assert_int_equal (gc_run_once (gc_of (&c), false), 0);
  u1 = usage (&c);
  assert_true (u1.data + u1.open + 11 <= u0.data + u0.open);
  assert_int_equal (u1.gc_fixed, 0);
  check_all (&c);

  /* Nothing fragmented is left: a forced round moves nothing more. */
  assert_int_equal (gc_run_once (gc_of (&c), true), 0);
  assert_int_equal (gstats (&c).moving_bytes, st.moving_bytes);

  /* And it all survives a reopen of the device (the backing store was
   * never written: writeback off; everything must come from the cache).
   */
  ctx_detach (&c);
  ctx_attach (&c, false);
  check_all (&c);
  assert_int_equal (usage (&c).dirty_blocks, u0.dirty_blocks);
  assert_int_equal (test_log_errors (), 0);
  ctx_close (&c);
}

/* Writes racing with the mover: a block rewritten while its old copy
 * is being moved keeps the new data (replace-if-unchanged).
 */
struct racer {
  struct ctx *c;
  uint64_t rng;
  bool stop;                    /* atomic */
  unsigned writes, failures;
};

static void *
racer_run (void *arg)
{
  struct racer *r = arg;
  unsigned tag = 10;

  while (!__atomic_load_n (&r->stop, __ATOMIC_RELAXED) ||
         r->writes < 64) {
    uint64_t x = (r->rng += UINT64_C (0x9e3779b97f4a7c15));
    uint64_t blk = (x >> 20) % (CHUNKS * BUCKET_BLOCKS);
    uint64_t off = blk * NC_BLOCK_BYTES;
    size_t i;

    for (i = 0; i < NC_BLOCK_BYTES; i++)
      r->c->model[off + i] = (unsigned char) (tag * 29 + i + (x >> 8));
    if (ncache_pwrite (r->c->nc, r->c->model + off, NC_BLOCK_BYTES, off,
                       0) != 0)
      r->failures++;
    r->writes++;
    tag++;
  }
  return NULL;
}

static void
test_gc_moving_races (void **state)
{
  struct ctx c;
  struct racer r;
  pthread_t th;
  unsigned i, round;

  ctx_open (&c, "gc", 5, 0);
  memset (&r, 0, sizeof r);
  r.c = &c;
  r.rng = seed;
  for (round = 0; round < 3; round++) {
    for (i = 0; i < CHUNKS; i++)
      write_pattern (&c, (uint64_t) i * BUCKET_BYTES, BUCKET_BYTES, round,
                     0);
    for (i = 0; i < CHUNKS; i++)
      write_pattern (&c, (uint64_t) i * BUCKET_BYTES, BUCKET_BYTES * 5 / 8,
                     round + 100, 0);
    r.stop = false;
    r.writes = 0;
    assert_int_equal (pthread_create (&th, NULL, racer_run, &r), 0);
    assert_int_equal (gc_run_once (gc_of (&c), true), 0);
    __atomic_store_n (&r.stop, true, __ATOMIC_RELAXED);
    assert_int_equal (pthread_join (th, NULL), 0);
    assert_int_equal (r.failures, 0);
    check_all (&c);
  }
  assert_true (gstats (&c).moving_bytes > 0);
  assert_int_equal (usage (&c).gc_fixed, 0);
  assert_int_equal (test_log_errors (), 0);
  ctx_close (&c);
}

/* ---- discards ---- */

static bool
all_zero (const unsigned char *p, size_t n)
{
  size_t i;

  for (i = 0; i < n; i++)
    if (p[i] != 0)
      return false;
  return true;
}

static void
test_gc_discard (void **state)
{
  struct ctx c;
  struct gc_stats st0, st;
  struct bucket_usage u;
  uint32_t nb, i, zeroed = 0;
  bool *held;
  unsigned char *bb = malloc (BUCKET_BYTES);

  assert_non_null (bb);
  ctx_open (&c, "gc", 5, CTX_DISCARD);
  nb = c.dev->sb.nbuckets;
  held = calloc (nb, sizeof *held);
  assert_non_null (held);

  /* Every bucket starts EMPTY: one round discards them all (batches of
   * GC_DISCARD_BATCH), so writes find FREE buckets without waiting.
   */
  assert_int_equal (gc_run_once (gc_of (&c), false), 0);
  st0 = gstats (&c);
  assert_true (st0.discard_batches >= 2);
  assert_true (st0.discard_buckets >= nb - c.dev->sb.data_first - 16);
  assert_true (st0.discard_extents >= st0.discard_batches);
  assert_int_equal (st0.discard_errors, 0);

  /* 2 MiB to trim, 512 KiB to keep. */
  write_pattern (&c, 0, 2 * MIB, 1, 0);
  write_pattern (&c, 2 * MIB, 512 * KIB, 2, 0);
  assert_int_equal (ncache_flush (c.nc, 0), 0);
  for (i = c.dev->sb.data_first; i < nb; i++)
    held[i] = bucket_state_of (c.dev->bs, i) == BUCKET_DATA;

  assert_int_equal (ncache_trim (c.nc, 2 * MIB, 0, 0), 0);
  memset (c.model, 0, 2 * MIB);
  assert_int_equal (ncache_flush (c.nc, 0), 0);       /* -> EMPTY */
  assert_int_equal (gc_run_once (gc_of (&c), false), 0);
  st = gstats (&c);
  assert_true (st.discard_batches > st0.discard_batches);
  assert_true (st.discard_buckets - st0.discard_buckets >=
               2 * MIB / BUCKET_BYTES);
  u = usage (&c);
  assert_true (u.discard_batches >= st.discard_batches);
  assert_int_equal (u.discard, 0);
  assert_int_equal (bucket_discard_waiting (c.dev->bs), 0);

  /* The buckets that held the trimmed data and are FREE now were
   * discarded: the (simulated) device holds zeros there.
   */
  for (i = c.dev->sb.data_first; i < nb; i++) {
    if (!held[i] || bucket_state_of (c.dev->bs, i) != BUCKET_FREE)
      continue;
    cdev_sim_peek (c.cd, super_bucket_offset (&c.dev->sb, i), bb,
                   BUCKET_BYTES);
    assert_true (all_zero (bb, BUCKET_BYTES));
    zeroed++;
  }
  assert_true (zeroed >= 2 * MIB / BUCKET_BYTES - 2);
  check_all (&c);

  /* The space is reused: write it all again, then read back. */
  write_pattern (&c, 0, 2 * MIB, 3, 0);
  write_pattern (&c, 3 * MIB, MIB, 4, 0);
  assert_int_equal (ncache_flush (c.nc, 0), 0);
  check_all (&c);
  /* No allocation had to wait out a missing discard batch. */
  assert_int_equal (test_log_warnings (), 0);
  assert_int_equal (test_log_errors (), 0);
  free (held);
  free (bb);
  ctx_close (&c);
}

/* ---- GC pass and lifecycle ---- */

static void
test_gc_pass_and_kick (void **state)
{
  struct ctx c;
  struct gc_stats st;
  struct bucket_usage u;
  uint64_t t0;
  struct timespec ts;

  ctx_open (&c, "gc", 5, 0);
  write_pattern (&c, 0, MIB, 1, 0);
  write_pattern (&c, 0, MIB / 2, 2, 0);
  assert_int_equal (ncache_flush (c.nc, 0), 0);
  assert_int_equal (gc_run_once (gc_of (&c), false), 0);
  st = gstats (&c);
  assert_true (st.runs >= 1);
  assert_int_equal (st.moving_runs, 0);       /* free space is not low */
  u = usage (&c);
  assert_true (u.gc_runs >= 1);
  assert_int_equal (u.gc_fixed, 0);
  check_all (&c);

  /* A kick asking for GC makes the thread run a pass soon (well before
   * GC_PERIOD_MS).
   */
  st = gstats (&c);
  gc_kick (gc_of (&c), true);
  gc_kick (NULL, true);
  clock_gettime (CLOCK_MONOTONIC, &ts);
  t0 = (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
  for (;;) {
    uint64_t now;

    if (gstats (&c).runs > st.runs)
      break;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    now = (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
    assert_true (now - t0 < 10000);
  }
  check_all (&c);
  gc_stop (NULL);
  assert_int_equal (test_log_errors (), 0);
  ctx_close (&c);
}

/* ---- stale keys leave the index only once the gen bump is durable ---- */

/* An eviction bumps the gen in memory, then writes the prios; a key that
 * is stale only in memory comes back to life if a crash loses the bump.
 * The GC pass must keep it, so a DELETE over it (a TRIM, a backing write's
 * forget) still counts as a cut and waits for its commit (request.c's
 * ORDERING rule 1); dropped unjournaled, the backing could be trimmed
 * under a clean key a crash brings back (the crash sweep's promise 6).
 */
static void
test_gc_keeps_stale_until_durable (void **state)
{
  struct ctx c;
  struct btree_piece p;
  struct nc_key del;
  struct bucket *b;
  uint64_t seq = 0;
  bool cut = false;

  ctx_open (&c, "gc", 5, 0);
  /* A read miss promotes a clean key. */
  assert_int_equal (ncache_pread (c.nc, c.buf, 4 * KIB, MIB, 0), 0);
  assert_int_equal (ncache_flush (c.nc, 0), 0);
  assert_int_equal (btree_lookup (c.dev->bt, c.nc->export_id, MIB / 4096,
                                  MIB / 4096 + 1, &p, 1, NULL), 1);
  assert_true (p.found);
  assert_false (p.key.flags & NC_KEY_DIRTY);

  /* The eviction's bump, its prio write not (yet) durable. */
  b = &c.dev->bs->b[p.key.bucket];
  pthread_mutex_lock (&c.dev->bs->lock);
  __atomic_store_n (&b->gen, (uint8_t) (b->gen + 1), __ATOMIC_RELEASE);
  pthread_mutex_unlock (&c.dev->bs->lock);
  assert_true (bucket_ptr_stale (c.dev->bs, &p.key));
  assert_false (bucket_ptr_stale_durably (c.dev->bs, &p.key));

  assert_int_equal (gc_run_once (gc_of (&c), false), 0);
  bkey_init (&del, c.nc->export_id, MIB / 4096, MIB / 4096 + 1,
             NC_KEY_DELETE);
  assert_int_equal (btree_insert (c.dev->bt, &del, 1, &seq, &cut), 0);
  assert_true (cut);

  /* Durable bump: now the pass may drop such keys. */
  pthread_mutex_lock (&c.dev->bs->lock);
  __atomic_store_n (&b->gen, (uint8_t) (b->gen - 1), __ATOMIC_RELEASE);
  pthread_mutex_unlock (&c.dev->bs->lock);
  (void) state;
  ctx_close (&c);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_gc_moving),
    cmocka_unit_test (test_gc_moving_races),
    cmocka_unit_test (test_gc_discard),
    cmocka_unit_test (test_gc_pass_and_kick),
    cmocka_unit_test (test_gc_keeps_stale_until_durable),
  };

  seed = test_seed_from_env ("test-gc");
  test_log_capture ();
  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
