/* SPDX-License-Identifier: BSD-3-Clause */
/* test-bucket-alloc.c — unit tests for the bucket allocator
 * (bucket-alloc.c).
 *
 * WHAT: write points; node buckets; PENDING buckets freed through a
 * journal flush taken without the bucket lock; eviction (lowest prio,
 * clean only), -ENOSPC, the node reserve; a randomised model run and a
 * threaded run.
 * HOW: the fixture of test-bucket-fx.h.
 * SEED: the model and threaded runs are randomised; NBDCACHE_SEED
 * overrides the seed, which is always printed.
 */
#include <config.h>

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

#define BUCKET_INTERNALS
#include "bucket.h"
#include "cdev.h"
#include "compiler.h"
#include "log.h"
#include "testkit.h"
#include "ondisk.h"
#include "super.h"

#include "test-bucket-fx.h"

/* ---- write points ---- */

static void
test_bucket_write_points (void **state)
{
  struct fx fx;
  struct bucket_extent d1, d2, d3, c1, c2;
  struct nc_key k;

  fx_open (&fx);
  assert_int_equal (bucket_alloc_data (fx.bs, WP_DIRTY, 5, &d1), 0);
  assert_int_equal (d1.offset, 0);
  assert_int_equal (d1.nblocks, 5);
  assert_int_equal (bucket_alloc_data (fx.bs, WP_CLEAN, 3, &c1), 0);
  assert_int_not_equal (c1.bucket, d1.bucket);
  assert_int_equal (c1.offset, 0);
  /* DIRTY continues where it was; only what is left in the bucket. */
  assert_int_equal (bucket_alloc_data (fx.bs, WP_DIRTY, 20, &d2), 0);
  assert_int_equal (d2.bucket, d1.bucket);
  assert_int_equal (d2.offset, 5);
  assert_int_equal (d2.nblocks, BUCKET_BLOCKS - 5);
  assert_int_equal (bucket_state_of (fx.bs, d1.bucket), BUCKET_OPEN);
  /* Full: the next goes to a new bucket; CLEAN is untouched. */
  assert_int_equal (bucket_alloc_data (fx.bs, WP_DIRTY, 2, &d3), 0);
  assert_int_not_equal (d3.bucket, d1.bucket);
  assert_int_not_equal (d3.bucket, c1.bucket);
  assert_int_equal (d3.offset, 0);
  assert_int_equal (bucket_alloc_data (fx.bs, WP_CLEAN, 2, &c2), 0);
  assert_int_equal (c2.bucket, c1.bucket);
  assert_int_equal (c2.offset, 3);
  assert_int_equal (bucket_alloc_data (fx.bs, WP_CLEAN, 0, &c2), -EINVAL);

  /* The full bucket stays OPEN while writes into it are in flight. */
  k = key_for (&d1, 100, NC_KEY_DIRTY);
  bucket_account (fx.bs, &k, +1);
  bucket_put_open (fx.bs, d1.bucket);
  assert_int_equal (bucket_state_of (fx.bs, d1.bucket), BUCKET_OPEN);
  bucket_put_open (fx.bs, d2.bucket);               /* abandoned */
  assert_int_equal (bucket_state_of (fx.bs, d1.bucket), BUCKET_DATA);
  assert_int_equal (usage (fx.bs).live_blocks, 5);

  /* The current bucket of a write point stays OPEN at open count 0. */
  bucket_put_open (fx.bs, d3.bucket);
  assert_int_equal (bucket_state_of (fx.bs, d3.bucket), BUCKET_OPEN);

  /* A closed bucket whose writes were all abandoned is PENDING. */
  bucket_put_open (fx.bs, c1.bucket);
  bucket_put_open (fx.bs, c2.bucket);
  assert_int_equal (bucket_alloc_data (fx.bs, WP_CLEAN, 11, &c2), 0);
  assert_int_equal (c2.offset, 5);
  bucket_put_open (fx.bs, c2.bucket);
  assert_int_equal (bucket_state_of (fx.bs, c1.bucket), BUCKET_PENDING);
  assert_int_equal (fx.bs->b[c1.bucket].free_seq, fx.open_seq);

  /* A put too many is a BUG: it aborts a test build, so the release
   * build's refusal is checked with NBDCACHE_BUG_NONFATAL (invariant.h).
   */
  setenv ("NBDCACHE_BUG_NONFATAL", "1", 1);
  test_log_clear ();
  bucket_put_open (fx.bs, c1.bucket);
  assert_int_equal (test_log_errors (), 1);
  unsetenv ("NBDCACHE_BUG_NONFATAL");
  check_state_counts (fx.bs);
  fx_close (&fx);
}

static void
test_bucket_nodes (void **state)
{
  struct fx fx;
  uint32_t b, b2;
  uint8_t gen;
  struct nc_key k = { .end = 1, .size = 1, .gen = 1, .export_id = 1 };

  fx_open (&fx);
  assert_int_equal (bucket_alloc_node (fx.bs, &b, &gen), 0);
  assert_int_equal (bucket_state_of (fx.bs, b), BUCKET_BTREE);
  assert_int_equal (gen, bucket_gen (fx.bs, b));
  assert_int_equal (bucket_alloc_node (fx.bs, &b2, &gen), 0);
  assert_int_not_equal (b, b2);
  assert_int_equal (usage (fx.bs).btree, 2);
  /* A data key into a node bucket is a bug elsewhere: a BUG, which a
   * release build ignores (NBDCACHE_BUG_NONFATAL, invariant.h).
   */
  setenv ("NBDCACHE_BUG_NONFATAL", "1", 1);
  k.bucket = b;
  bucket_account (fx.bs, &k, +1);
  assert_int_equal (test_log_errors (), 1);
  assert_int_equal (usage (fx.bs).live_blocks, 0);

  bucket_free_node (fx.bs, b, 5);
  assert_int_equal (bucket_state_of (fx.bs, b), BUCKET_PENDING);
  bucket_journal_committed (fx.bs, 4);
  assert_int_equal (bucket_state_of (fx.bs, b), BUCKET_PENDING);
  bucket_journal_committed (fx.bs, 5);
  assert_int_equal (bucket_state_of (fx.bs, b), BUCKET_EMPTY);
  /* freeing it twice is complained about */
  test_log_clear ();
  bucket_free_node (fx.bs, b, 6);
  assert_int_equal (test_log_errors (), 1);
  assert_int_equal (bucket_state_of (fx.bs, b), BUCKET_EMPTY);
  unsetenv ("NBDCACHE_BUG_NONFATAL");
  check_state_counts (fx.bs);
  fx_close (&fx);
}

/* ---- pressure: PENDING, eviction, -ENOSPC, reserve ---- */

static void
test_bucket_pending_needs_flush (void **state)
{
  struct fx fx;
  struct bucket_extent e[NDATA];
  struct nc_key k;
  uint32_t i, n = 0;
  int r;

  fx_open (&fx);
  /* Fill every bucket data may use with dirty data. */
  while ((r = bucket_alloc_data (fx.bs, WP_DIRTY, BUCKET_BLOCKS, &e[n])) ==
         0) {
    k = key_for (&e[n], 1000 + 100 * n, NC_KEY_DIRTY);
    bucket_account (fx.bs, &k, +1);
    bucket_put_open (fx.bs, e[n].bucket);
    n++;
  }
  assert_int_equal (r, -ENOSPC);
  assert_int_equal (n, NDATA - BUCKET_BTREE_RESERVE);
  assert_int_equal (fx.flushes, 0);
  /* The btree cuts three of them away: PENDING, not yet reusable. */
  for (i = 0; i < 3; i++) {
    k = key_for (&e[i], 1000 + 100 * i, NC_KEY_DIRTY);
    bucket_account (fx.bs, &k, -1);
    assert_int_equal (bucket_state_of (fx.bs, e[i].bucket), BUCKET_PENDING);
  }
  /* The allocator flushes the journal (without its lock) and reuses them. */
  assert_int_equal (bucket_alloc_data (fx.bs, WP_DIRTY, 1, &e[0]), 0);
  assert_int_equal (fx.flushes, 1);
  assert_false (fx.flush_saw_lock_held);
  assert_int_equal (usage (fx.bs).pending, 0);
  assert_int_equal (usage (fx.bs).evictions, 0);

  /* Abandon that bucket (PENDING again), use up the FREE ones above the
   * reserve: a failing flush is returned, and the next try succeeds.
   */
  bucket_put_open (fx.bs, e[0].bucket);
  assert_int_equal (bucket_alloc_data (fx.bs, WP_DIRTY, BUCKET_BLOCKS, &e[0]),
                    0);
  assert_int_equal (e[0].nblocks, BUCKET_BLOCKS - 1);
  bucket_put_open (fx.bs, e[0].bucket);
  assert_int_equal (bucket_state_of (fx.bs, e[0].bucket), BUCKET_PENDING);
  while (usage (fx.bs).free > BUCKET_BTREE_RESERVE) {
    assert_int_equal (bucket_alloc_data (fx.bs, WP_DIRTY, BUCKET_BLOCKS,
                                         &e[1]), 0);
    k = key_for (&e[1], 9000 + 100 * e[1].bucket, NC_KEY_DIRTY);
    bucket_account (fx.bs, &k, +1);
    bucket_put_open (fx.bs, e[1].bucket);
  }
  assert_int_equal (fx.flushes, 1);
  assert_int_equal (usage (fx.bs).pending, 1);
  fx.flush_error = -EIO;
  assert_int_equal (bucket_alloc_data (fx.bs, WP_DIRTY, 1, &e[3]), -EIO);
  assert_int_equal (bucket_alloc_data (fx.bs, WP_DIRTY, 1, &e[3]), 0);
  assert_false (fx.flush_saw_lock_held);
  check_state_counts (fx.bs);
  fx_close (&fx);
}

static void
test_bucket_evict_lowest_clean (void **state)
{
  struct fx fx;
  struct bucket_extent e[NDATA], x;
  bool dirty[NBUCKETS] = { false }, evicted[NBUCKETS] = { false };
  uint8_t gen[NBUCKETS];
  uint32_t i, n, lowest = 0, nevicted = 0, order[NDATA], nclean = 0;
  struct bucket_usage u;
  uint8_t g;
  int r;

  fx_open (&fx);
  for (n = 0; n < NDATA - BUCKET_BTREE_RESERVE; n++) {
    bool d = n % 2 == 1;

    e[n] = fill_bucket (&fx, d ? WP_DIRTY : WP_CLEAN, d ? NC_KEY_DIRTY : 0,
                        1000 + 100 * n);
    dirty[e[n].bucket] = d;
    gen[e[n].bucket] = e[n].gen;
  }
  assert_int_equal (usage (fx.bs).free, BUCKET_BTREE_RESERVE);
  /* Prios: a permutation; dirty buckets get the lowest of all. */
  for (i = 0; i < n; i++) {
    uint32_t b = e[i].bucket;

    fx.bs->b[b].prio = dirty[b] ? (uint16_t) i : (uint16_t) (1000 +
                                                            (i * 37) % 101);
    if (!dirty[b]) {
      if (nclean == 0 || fx.bs->b[b].prio < fx.bs->b[lowest].prio)
        lowest = b;
      order[nclean++] = b;
    }
  }

  /* Only the reserve is FREE: the next data bucket needs an eviction,
   * which takes the lowest clean bucket (and a few more, lowest first).
   */
  assert_int_equal (bucket_alloc_data (fx.bs, WP_CLEAN, 1, &x), 0);
  assert_false (dirty[x.bucket]);
  assert_int_not_equal (bucket_gen (fx.bs, lowest), gen[lowest]);
  assert_true (bucket_ptr_stale (fx.bs, &(struct nc_key) {
        .end = 1, .size = 1, .bucket = lowest, .gen = gen[lowest] }));
  u = usage (fx.bs);
  assert_true (u.evictions >= 1);
  assert_int_equal (u.free, BUCKET_BTREE_RESERVE + u.evictions - 1);
  /* Every evicted bucket had a lower prio than every clean survivor. */
  for (i = 0; i < nclean; i++)
    evicted[order[i]] = bucket_gen (fx.bs, order[i]) != gen[order[i]];
  for (i = 0; i < nclean; i++) {
    uint32_t a = order[i], j;

    if (!evicted[a])
      continue;
    nevicted++;
    for (j = 0; j < nclean; j++)
      if (!evicted[order[j]])
        assert_true (fx.bs->b[a].prio < fx.bs->b[order[j]].prio ||
                     a == x.bucket);
  }
  assert_int_equal (nevicted, u.evictions);
  bucket_put_open (fx.bs, x.bucket);

  /* Keep taking whole buckets for dirty data: every clean bucket goes,
   * no dirty one ever does, and then there is no space.
   */
  while ((r = bucket_alloc_data (fx.bs, WP_DIRTY, BUCKET_BLOCKS, &x)) == 0) {
    struct nc_key k = key_for (&x, 50000 + x.bucket, NC_KEY_DIRTY);

    assert_false (dirty[x.bucket]);
    bucket_account (fx.bs, &k, +1);
    bucket_put_open (fx.bs, x.bucket);
  }
  assert_int_equal (r, -ENOSPC);
  for (i = DATA_FIRST; i < NBUCKETS; i++)
    if (dirty[i]) {
      assert_int_equal (bucket_gen (fx.bs, i), gen[i]);
      assert_int_equal (bucket_state_of (fx.bs, i), BUCKET_DATA);
    }
  u = usage (fx.bs);
  assert_int_equal (u.free, BUCKET_BTREE_RESERVE);  /* kept for nodes */
  assert_int_equal (u.evictions, nclean);
  /* all but the reserve and the CLEAN write point's bucket */
  assert_int_equal (u.dirty_buckets, NDATA - BUCKET_BTREE_RESERVE - 1);

  /* Nodes may use the reserve, and then there is nothing. */
  for (i = 0; i < BUCKET_BTREE_RESERVE; i++)
    assert_int_equal (bucket_alloc_node (fx.bs, &n, &g), 0);
  assert_int_equal (bucket_alloc_node (fx.bs, &n, &g), -ENOSPC);
  assert_int_equal (fx.flushes, 0);
  check_state_counts (fx.bs);
  fx_close (&fx);
}

static void
test_bucket_node_evicts_clean (void **state)
{
  struct fx fx;
  struct bucket_extent e[NDATA], x;
  struct nc_key k;
  uint32_t i, b;
  uint8_t g;

  fx_open (&fx);
  for (i = 0; i < NDATA - BUCKET_BTREE_RESERVE; i++)
    e[i] = fill_bucket (&fx, WP_CLEAN, 0, 1000 + 100 * i);
  for (i = 0; i < BUCKET_BTREE_RESERVE; i++)
    assert_int_equal (bucket_alloc_node (fx.bs, &b, &g), 0);
  /* Two buckets emptied, not yet reusable. */
  for (i = 0; i < 2; i++) {
    k = key_for (&e[i], 1000 + 100 * i, 0);
    bucket_account (fx.bs, &k, -1);
  }
  assert_int_equal (usage (fx.bs).pending, 2);
  /* No FREE bucket left: a node never waits for the journal (it is
   * called under the btree lock); it evicts a clean bucket.
   */
  assert_int_equal (bucket_alloc_node (fx.bs, &b, &g), 0);
  assert_true (usage (fx.bs).evictions >= 1);
  assert_int_equal (fx.flushes, 0);
  assert_int_equal (usage (fx.bs).pending, 2);
  /* Data may not take the last FREE ones: it flushes the journal first. */
  assert_int_equal (bucket_alloc_data (fx.bs, WP_DIRTY, 1, &x), 0);
  assert_int_equal (fx.flushes, 1);
  assert_int_equal (usage (fx.bs).pending, 0);
  check_state_counts (fx.bs);
  fx_close (&fx);
}

/* ---- randomised model ---- */

static uint64_t
rnd (uint64_t *s)
{
  uint64_t z = (*s += UINT64_C (0x9e3779b97f4a7c15));

  z = (z ^ (z >> 30)) * UINT64_C (0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C (0x94d049bb133111eb);
  return z ^ (z >> 31);
}

#define MAX_KEYS 4096

struct model {
  struct nc_key keys[MAX_KEYS];
  size_t nkeys;
};

static void
model_check (struct fx *fx, struct model *m)
{
  uint64_t live = 0, dirty = 0;
  struct bucket_usage u;
  size_t i;

  for (i = 0; i < m->nkeys; i++) {
    const struct nc_key *k = &m->keys[i];
    bool stale = bucket_ptr_stale (fx->bs, k);

    /* Dirty data is never evicted. */
    if (k->flags & NC_KEY_DIRTY)
      assert_false (stale);
    if (!stale) {
      enum bucket_state st = bucket_state_of (fx->bs, k->bucket);

      assert_true (st == BUCKET_OPEN || st == BUCKET_DATA);
      live += k->size;
      if (k->flags & NC_KEY_DIRTY)
        dirty += k->size;
    }
  }
  u = usage (fx->bs);
  assert_int_equal (u.live_blocks, live);
  assert_int_equal (u.dirty_blocks, dirty);
  check_state_counts (fx->bs);
}

/* A new extent never overlaps a live key of the same bucket and gen. */
static void
model_check_extent (struct model *m, const struct bucket_extent *e)
{
  size_t i;

  assert_true (e->nblocks >= 1);
  assert_true (e->offset + e->nblocks <= BUCKET_BLOCKS);
  for (i = 0; i < m->nkeys; i++) {
    const struct nc_key *k = &m->keys[i];

    if (k->bucket == e->bucket && k->gen == e->gen)
      assert_true (k->offset + k->size <= e->offset ||
                   e->offset + e->nblocks <= k->offset);
  }
}

static void
model_remove (struct model *m, size_t i)
{
  m->keys[i] = m->keys[--m->nkeys];
}

/* What btree_sweep does: drop stale keys, note the others. */
static void
model_sweep (struct fx *fx, struct model *m)
{
  size_t i;

  bucket_gc_begin (fx->bs);
  for (i = 0; i < m->nkeys;) {
    if (bucket_ptr_stale (fx->bs, &m->keys[i]))
      model_remove (m, i);
    else
      bucket_gc_note (fx->bs, &m->keys[i++]);
  }
  bucket_gc_end (fx->bs, true);
}

static void
test_bucket_model (void **state)
{
  struct fx fx;
  struct model *m = calloc (1, sizeof *m);
  uint64_t s = seed;
  uint32_t nodes[NDATA], nnodes = 0;
  unsigned step, nospc = 0, again = 0, max_dist = 0;
  uint64_t end = 1;
  uint32_t b;

  assert_non_null (m);
  fx_open (&fx);
  for (step = 0; step < 60000; step++) {
    unsigned op = rnd (&s) % 100;

    if (op < 40 && m->nkeys < MAX_KEYS) {
      enum bucket_wp wp = rnd (&s) % 2 ? WP_DIRTY : WP_CLEAN;
      struct bucket_extent e;
      int r = bucket_alloc_data (fx.bs, wp, 1 + rnd (&s) % 20, &e);

      if (r == -EAGAIN) {
        again++;
        model_sweep (&fx, m);
      }
      else if (r == -ENOSPC) {
        /* Writeback: a dirty key becomes clean (cut, re-insert). */
        size_t i;

        nospc++;
        for (i = 0; i < m->nkeys; i++)
          if (m->keys[i].flags & NC_KEY_DIRTY) {
            bucket_account (fx.bs, &m->keys[i], -1);
            m->keys[i].flags = 0;
            bucket_account (fx.bs, &m->keys[i], +1);
            if (rnd (&s) % 2)
              break;
          }
      }
      else {
        assert_int_equal (r, 0);
        assert_int_equal (e.gen, bucket_gen (fx.bs, e.bucket));
        model_check_extent (m, &e);
        if (rnd (&s) % 8 != 0) {
          struct nc_key k = key_for (&e, end += 100,
                                     wp == WP_DIRTY ? NC_KEY_DIRTY : 0);

          bucket_account (fx.bs, &k, +1);
          m->keys[m->nkeys++] = k;
        }
        bucket_put_open (fx.bs, e.bucket);
      }
    }
    else if (op < 70 && m->nkeys > 0) {
      /* A cut: all of a key, or its front. */
      size_t i = rnd (&s) % m->nkeys;
      struct nc_key *k = &m->keys[i], part = *k;

      if (k->size > 1 && rnd (&s) % 2) {
        part.size = 1 + (uint32_t) (rnd (&s) % (k->size - 1));
        bucket_account (fx.bs, &part, -1);
        k->offset += part.size;
        k->size -= part.size;
      }
      else {
        bucket_account (fx.bs, k, -1);
        model_remove (m, i);
      }
    }
    else if (op < 80) {
      uint64_t durable = __atomic_fetch_add (&fx.open_seq, 1,
                                             __ATOMIC_RELAXED);

      bucket_journal_committed (fx.bs, durable - rnd (&s) % 2);
    }
    else if (op < 85) {
      uint8_t g;

      if (nnodes < 4 && bucket_alloc_node (fx.bs, &nodes[nnodes], &g) == 0)
        nnodes++;
      else if (nnodes > 0)
        bucket_free_node (fx.bs, nodes[--nnodes], fx.open_seq);
    }
    else if (m->nkeys > 0)
      bucket_hit (fx.bs, m->keys[rnd (&s) % m->nkeys].bucket);
    if (step % 16 == 0)
      model_check (&fx, m);
    for (b = DATA_FIRST; b < NBUCKETS; b++)
      max_dist = MAX (max_dist, (uint8_t) (fx.bs->b[b].gen -
                                           fx.bs->b[b].oldest_gen));
  }
  model_check (&fx, m);
  print_message ("model: %u steps, %zu keys, %" PRIu64 " evictions, "
                 "%u ENOSPC, %u EAGAIN, %u flushes, %" PRIu64
                 " prio writes, max gen distance %u\n", step, m->nkeys,
                 usage (fx.bs).evictions, nospc, again, fx.flushes,
                 usage (fx.bs).prio_writes, max_dist);
  assert_true (usage (fx.bs).evictions > 0);
  assert_true (again > 0);
  assert_true (max_dist <= BUCKET_GEN_MAX_DISTANCE);
  assert_false (fx.flush_saw_lock_held);
  assert_int_equal (test_log_errors (), 0);

  /* Recovery from what is on disk recounts the same. */
  {
    size_t i;
    uint64_t live = 0;

    fx_detach (&fx);
    cdev_sim_crash (fx.cd, 0);
    fx_attach (&fx);
    bucket_mark_begin (fx.bs);
    for (i = 0; i < m->nkeys; i++)
      if (bucket_mark_key (fx.bs, &m->keys[i]))
        live += m->keys[i].size;
      else
        assert_false (m->keys[i].flags & NC_KEY_DIRTY);
    bucket_mark_done (fx.bs);
    assert_int_equal (usage (fx.bs).live_blocks, live);
  }
  fx_close (&fx);
  free (m);
}

/* ---- threads ---- */

#define THREAD_ALLOCS 400

struct worker {
  struct fx *fx;
  enum bucket_wp wp;
  uint64_t seed;
  struct bucket_extent got[THREAD_ALLOCS];
  unsigned n;
};

static void *
worker_run (void *arg)
{
  struct worker *w = arg;
  unsigned i;

  for (i = 0; i < THREAD_ALLOCS; i++) {
    struct bucket_extent *e = &w->got[w->n];
    struct nc_key k;

    if (bucket_alloc_data (w->fx->bs, w->wp, 1 + rnd (&w->seed) % 3, e) != 0)
      break;
    k = key_for (e, 1 + i, w->wp == WP_DIRTY ? NC_KEY_DIRTY : 0);
    bucket_account (w->fx->bs, &k, +1);
    bucket_hit (w->fx->bs, e->bucket);
    bucket_put_open (w->fx->bs, e->bucket);
    w->n++;
  }
  return NULL;
}

static int
cmp_extent (const void *a, const void *b)
{
  const struct bucket_extent *x = a, *y = b;

  if (x->bucket != y->bucket)
    return x->bucket < y->bucket ? -1 : 1;
  if (x->gen != y->gen)
    return x->gen < y->gen ? -1 : 1;
  return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static void
test_bucket_threads (void **state)
{
  struct fx fx;
  struct worker *w = calloc (4, sizeof *w);
  struct bucket_extent *all = calloc (4 * THREAD_ALLOCS, sizeof *all);
  pthread_t th[4];
  unsigned i, j, n = 0;

  assert_non_null (w);
  assert_non_null (all);
  fx_open (&fx);
  for (i = 0; i < 4; i++) {
    w[i].fx = &fx;
    w[i].wp = i % 2 ? WP_DIRTY : WP_CLEAN;
    w[i].seed = seed + i;
    assert_int_equal (pthread_create (&th[i], NULL, worker_run, &w[i]), 0);
  }
  for (i = 0; i < 4; i++) {
    assert_int_equal (pthread_join (th[i], NULL), 0);
    for (j = 0; j < w[i].n; j++)
      all[n++] = w[i].got[j];
  }
  qsort (all, n, sizeof *all, cmp_extent);
  for (i = 1; i < n; i++)
    if (all[i].bucket == all[i - 1].bucket && all[i].gen == all[i - 1].gen)
      assert_true (all[i - 1].offset + all[i - 1].nblocks <= all[i].offset);
  assert_true (n > THREAD_ALLOCS);
  check_state_counts (fx.bs);
  assert_int_equal (test_log_errors (), 0);
  fx_close (&fx);
  free (all);
  free (w);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_bucket_write_points),
    cmocka_unit_test (test_bucket_nodes),
    cmocka_unit_test (test_bucket_pending_needs_flush),
    cmocka_unit_test (test_bucket_evict_lowest_clean),
    cmocka_unit_test (test_bucket_node_evicts_clean),
    cmocka_unit_test (test_bucket_model),
    cmocka_unit_test (test_bucket_threads),
  };

  seed = test_seed_from_env ("test-bucket-alloc");
  test_log_capture ();
  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
