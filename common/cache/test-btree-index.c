/* SPDX-License-Identifier: BSD-3-Clause */
/* test-btree-index.c — the index's operations: inserts and lookups.
 *
 * WHAT: inserts and lookups (cuts at the front, back and middle, cuts
 * across leaves, DELETE, ZERO, exports kept apart), splits up to depth 3
 * with real node sizes and deeper with a small max_keys, a randomised
 * model check against a flat per-block array (also checking the bucket
 * accounting exactly) with small, real and a bounded node cache, stale
 * keys, placeholders, and threads: inserters on separate exports,
 * lookups, and a journal-like thread closing entries and writing pinned
 * leaves, all at once.
 * HOW: the real cdev simulator and the fakes of test-btree-fx.h.
 * SEED: the randomised tests take NBDCACHE_SEED (printed always).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "bkey.h"
#include "bset.h"
#include "btree.h"
#include "bucket.h"
#include "cdev.h"
#include "journal.h"
#include "log.h"
#include "testkit.h"
#include "ondisk.h"
#include "super.h"
#include "test-btree-fx.h"

/* ---- tests ---- */

static void
test_btree_insert_lookup_single (void **state)
{
  struct ctx c;
  struct btree_piece pc[8];
  struct btree_stats st;
  uint64_t seq = 0;
  bool cut = true;
  struct nc_key k;
  int n;

  ctx_init (&c, 0, 0);
  assert_int_equal (btree_node_max_keys (&c.sb), 1021);
  n = btree_lookup (c.bt, 1, 0, 100, pc, 8, NULL);
  assert_int_equal (n, 1);
  assert_false (pc[0].found);
  assert_int_equal (pc[0].end, 100);

  k = dkey (1, 10, 20, 20, 3, c.bs);
  assert_int_equal (btree_insert (c.bt, &k, 1, &seq, &cut), 0);
  assert_int_equal (seq, 1);
  assert_false (cut);
  assert_true (c.j->needed);    /* a new root */
  assert_int_equal (c.j->nr_open, 1);
  assert_int_equal (c.bs->live[20], 10);

  n = btree_lookup (c.bt, 1, 0, 30, pc, 8, NULL);
  assert_int_equal (n, 3);
  assert_false (pc[0].found);
  assert_int_equal (pc[0].start, 0);
  assert_int_equal (pc[0].end, 10);
  assert_true (pc[1].found);
  assert_int_equal (pc[1].start, 10);
  assert_int_equal (pc[1].end, 20);
  assert_int_equal (pc[1].key.bucket, 20);
  assert_int_equal (pc[1].key.offset, 3);
  assert_false (pc[2].found);
  assert_int_equal (pc[2].end, 30);

  /* Clipped copies; max pieces respected. */
  n = btree_lookup (c.bt, 1, 12, 15, pc, 8, NULL);
  assert_int_equal (n, 1);
  assert_true (pc[0].found);
  assert_int_equal (pc[0].key.offset, 5);
  assert_int_equal (pc[0].key.size, 3);
  assert_int_equal (pc[0].key.end, 15);
  n = btree_lookup (c.bt, 1, 0, 30, pc, 1, NULL);
  assert_int_equal (n, 1);
  assert_int_equal (pc[0].end, 10);

  assert_int_equal (btree_lookup (c.bt, 1, 5, 5, pc, 8, NULL), -EINVAL);
  assert_int_equal (btree_lookup (c.bt, 1, 5, 6, pc, 0, NULL), -EINVAL);
  k.size = 0;
  assert_int_equal (btree_insert (c.bt, &k, 1, NULL, NULL), -EINVAL);

  btree_get_stats (c.bt, &st);
  assert_int_equal (st.depth, 1);
  assert_int_equal (st.dirty_leaves, 1);
  assert_int_equal (st.nodes_in_memory, 1);
  ctx_free (&c);
}

/* btree_insert_nowait: an empty tree, or a leaf that could split, is
 * -EAGAIN with nothing changed (no key, no split, no node write); else
 * the same insert as btree_insert.
 */
static void
test_btree_insert_nowait (void **state)
{
  struct ctx c;
  struct btree_piece pc[4];
  struct btree_stats st0, st;
  struct nc_key k;
  uint64_t seq = 0;
  bool cut = false;
  unsigned i, done = 0;
  int r = 0;

  (void) state;
  ctx_init (&c, 8, 0);
  k = dkey (1, 0, 4, 20, 0, c.bs);
  assert_int_equal (btree_insert_nowait (c.bt, &k, 1, &seq, &cut), -EAGAIN);
  assert_int_equal (btree_lookup (c.bt, 1, 0, 4, pc, 4, NULL), 1);
  assert_false (pc[0].found);
  assert_int_equal (btree_insert (c.bt, &k, 1, &seq, &cut), 0);
  btree_get_stats (c.bt, &st0);
  for (i = 1; i < 16 && r == 0; i++) {
    k = dkey (1, i * 10, i * 10 + 4, 20 + i, 0, c.bs);
    r = btree_insert_nowait (c.bt, &k, 1, &seq, &cut);
    if (r == 0)
      done++;
  }
  assert_int_equal (r, -EAGAIN);
  assert_true (done >= 4);   /* max_keys 8: room for a key while 2 fit */
  btree_get_stats (c.bt, &st);
  assert_int_equal (st.splits, st0.splits);
  assert_int_equal (st.node_writes, st0.node_writes);
  assert_int_equal (st.node_reads, st0.node_reads);
  /* The refused key is not there; the others are. */
  i--;
  assert_int_equal (btree_lookup (c.bt, 1, i * 10, i * 10 + 4, pc, 4, NULL),
                    1);
  assert_false (pc[0].found);
  assert_int_equal (btree_lookup (c.bt, 1, 10, 14, pc, 4, NULL), 1);
  assert_true (pc[0].found);
  /* The blocking insert takes it, splitting. */
  assert_int_equal (btree_insert (c.bt, &k, 1, &seq, &cut), 0);
  assert_int_equal (btree_lookup (c.bt, 1, i * 10, i * 10 + 4, pc, 4, NULL),
                    1);
  assert_true (pc[0].found);
  ctx_free (&c);
}

static void
test_btree_cuts (void **state)
{
  struct ctx c;
  struct model *m = calloc (1, sizeof *m);
  struct nc_key k;
  bool cut = false;

  assert_non_null (m);
  ctx_init (&c, 0, 0);
  k = dkey (1, 10, 20, 20, 0, c.bs);
  insert1 (&c, k);
  model_apply (m, &k);
  /* Front. */
  k = dkey (1, 5, 12, 21, 0, c.bs);
  assert_int_equal (btree_insert (c.bt, &k, 1, NULL, &cut), 0);
  assert_true (cut);
  model_apply (m, &k);
  check_all (&c, m);
  /* Back. */
  k = dkey (1, 18, 25, 22, 1, c.bs);
  insert1 (&c, k);
  model_apply (m, &k);
  check_all (&c, m);
  /* Middle: [12, 18) of bucket 20 splits in two around [14, 16). */
  k = dkey (1, 14, 16, 23, 9, c.bs);
  insert1 (&c, k);
  model_apply (m, &k);
  check_all (&c, m);
  check_accounting (&c, m);
  assert_int_equal (c.bs->live[20], 4);
  /* Exactly covering, and covering several keys. */
  k = dkey (1, 14, 16, 24, 0, c.bs);
  insert1 (&c, k);
  model_apply (m, &k);
  k = fkey (1, 3, 26, NC_KEY_ZERO);
  insert1 (&c, k);
  model_apply (m, &k);
  check_all (&c, m);
  check_accounting (&c, m);
  assert_int_equal (c.bs->live[20] + c.bs->live[21] + c.bs->live[22]
                    + c.bs->live[23] + c.bs->live[24], 0);
  /* No overlap: nothing cut. */
  k = dkey (1, 40, 41, 26, 0, c.bs);
  assert_int_equal (btree_insert (c.bt, &k, 1, NULL, &cut), 0);
  assert_false (cut);
  ctx_free (&c);
  free (m);
}

static void
test_btree_cut_across_leaves (void **state)
{
  struct ctx c;
  struct model *m = calloc (1, sizeof *m);
  struct walk_count w;
  struct nc_key k;
  uint64_t i;

  assert_non_null (m);
  ctx_init (&c, 0, 0);
  /* 3000 one-block keys at even blocks: several leaves of 1021. */
  for (i = 0; i < 3000; i++) {
    k = dkey (1, 2 * i, 2 * i + 1, DATA_FIRST + (uint32_t) (i % 200),
              (uint32_t) (i % 16), c.bs);
    insert1 (&c, k);
    model_apply (m, &k);
  }
  assert_int_equal (walk_count (&c, &w), 0);
  assert_true (w.leaves >= 3);
  assert_int_equal (w.keys, 3000);
  check_all (&c, m);
  check_accounting (&c, m);

  /* One ZERO key over most of them, straddling the first and last. */
  k = fkey (1, 1, 5999, NC_KEY_ZERO);
  insert1 (&c, k);
  model_apply (m, &k);
  check_all (&c, m);
  check_accounting (&c, m);
  /* Block 0's key and one ZERO piece in each leaf. */
  assert_int_equal (walk_count (&c, &w), 0);
  assert_int_equal (w.keys, 1 + w.leaves);
  /* A DELETE over a block straddling an existing key's both ends. */
  k = fkey (1, 100, 101, NC_KEY_DELETE);
  insert1 (&c, k);
  model_apply (m, &k);
  check_all (&c, m);
  assert_int_equal (walk_count (&c, &w), 0);
  assert_int_equal (w.keys, 2 + w.leaves);
  ctx_free (&c);
  free (m);
}

static void
test_btree_delete_zero_exports (void **state)
{
  struct ctx c;
  struct model *m = calloc (1, sizeof *m);
  struct btree_piece pc[4];
  struct nc_key k, keys[3];

  assert_non_null (m);
  ctx_init (&c, 0, 0);
  /* The same range in two exports. */
  keys[0] = dkey (1, 100, 200, 30, 0, c.bs);
  keys[0].size = 16;
  keys[0].end = 116;
  keys[1] = fkey (1, 116, 300, NC_KEY_ZERO);
  keys[2] = fkey (1, 150, 160, NC_KEY_DELETE);
  assert_int_equal (btree_insert (c.bt, keys, 3, NULL, NULL), 0);
  model_apply (m, &keys[0]);
  model_apply (m, &keys[1]);
  model_apply (m, &keys[2]);
  assert_int_equal (c.j->nr_open, 3);
  k = dkey (2, 100, 116, 31, 0, c.bs);
  insert1 (&c, k);
  model_apply (m, &k);
  check_all (&c, m);
  check_accounting (&c, m);
  assert_int_equal (c.bs->live[30], 16);
  assert_int_equal (c.bs->live[31], 16);

  assert_int_equal (btree_lookup (c.bt, 1, 120, 130, pc, 4, NULL), 1);
  assert_true (pc[0].found);
  assert_true (bkey_is_zero (&pc[0].key));
  /* Deleting export 2's range leaves export 1 alone. */
  k = fkey (2, 0, 1000, NC_KEY_DELETE);
  insert1 (&c, k);
  model_apply (m, &k);
  check_all (&c, m);
  check_accounting (&c, m);
  /* A DELETE on an empty tree creates nothing. */
  btree_destroy (c.bt);
  ctx_make_btree (&c);
  insert1 (&c, fkey (1, 0, 10, NC_KEY_DELETE));
  assert_int_equal (btree_lookup (c.bt, 1, 0, 10, pc, 4, NULL), 1);
  assert_false (pc[0].found);
  ctx_free (&c);
  free (m);
}

/* Sequential appends with real node sizes until the root has split twice:
 * depth 3.  Spot lookups, walk counts, reload.
 */
static void
test_btree_depth3_sequential (void **state)
{
  struct ctx c;
  struct btree_stats st;
  struct walk_count w;
  struct btree_piece pc[4];
  struct nc_key *batch = malloc (64 * sizeof *batch);
  uint64_t i = 0, n;
  size_t b;

  assert_non_null (batch);
  ctx_init (&c, 0, 0);
  for (;;) {
    for (b = 0; b < 64; b++, i++)
      batch[b] = dkey (1, i, i + 1, DATA_FIRST + (uint32_t) (i % 200),
                       (uint32_t) (i % 16), c.bs);
    assert_int_equal (btree_insert (c.bt, batch, 64, NULL, NULL), 0);
    btree_get_stats (c.bt, &st);
    if (st.depth == 3)
      break;
    assert_true (i < 2000000);
  }
  n = i;
  print_message ("depth 3 after %" PRIu64 " keys, %" PRIu64 " splits, %"
                 PRIu64 " nodes\n", n, st.splits, st.nodes_in_memory);
  assert_int_equal (walk_count (&c, &w), 0);
  assert_int_equal (w.keys, n);
  assert_int_equal (w.max_level, 2);
  for (i = 0; i < n; i += n / 97) {
    assert_int_equal (btree_lookup (c.bt, 1, i, i + 1, pc, 4, NULL), 1);
    assert_true (pc[0].found);
    assert_int_equal (pc[0].key.bucket, DATA_FIRST + (uint32_t) (i % 200));
  }
  assert_int_equal (btree_write_all (c.bt), 0);
  assert_int_equal (ctx_reopen (&c), 0);
  assert_int_equal (walk_count (&c, &w), 0);
  assert_int_equal (w.keys, n);
  btree_get_stats (c.bt, &st);
  assert_int_equal (st.depth, 3);
  ctx_free (&c);
  free (batch);
}

/* Random inserts with tiny nodes against the model; splits at every
 * level; write_all and a fresh btree give the same answers.
 */
static void
model_run (uint32_t max_keys, uint64_t cache_bytes, unsigned ops,
           unsigned min_depth)
{
  struct ctx c;
  struct model *m = calloc (1, sizeof *m);
  struct btree_stats st;
  struct walk_count w;
  uint64_t rs = seed ^ max_keys ^ (cache_bytes << 20);
  unsigned i;

  assert_non_null (m);
  ctx_init (&c, max_keys, cache_bytes);
  for (i = 0; i < ops; i++) {
    assert_int_equal (random_insert (&c, m, &rs), 0);
    if (i % 500 == 499) {
      check_all (&c, m);
      check_accounting (&c, m);
      assert_int_equal (walk_count (&c, &w), 0);
    }
    if (cache_bytes != 0) {
      btree_get_stats (c.bt, &st);
      assert_true (st.node_bytes_in_memory <= cache_bytes);
    }
  }
  check_all (&c, m);
  check_accounting (&c, m);
  btree_get_stats (c.bt, &st);
  print_message ("max_keys %u cache %" PRIu64 ": depth %u, %" PRIu64
                 " splits, %" PRIu64 " node reads, %" PRIu64 " writes, %"
                 PRIu64 " evictions, %" PRIu64 " nodes in memory\n",
                 max_keys, cache_bytes, st.depth, st.splits, st.node_reads,
                 st.node_writes, st.node_evictions, st.nodes_in_memory);
  assert_true (st.depth >= min_depth);
  if (cache_bytes != 0) {
    assert_true (st.node_evictions > 0);
    assert_true (st.node_reads > 0);
  }
  assert_int_equal (btree_write_all (c.bt), 0);
  btree_get_stats (c.bt, &st);
  assert_int_equal (st.dirty_leaves, 0);
  assert_int_equal (ctx_reopen (&c), 0);
  check_all (&c, m);
  assert_int_equal (walk_count (&c, &w), 0);
  ctx_free (&c);
  free (m);
}

static void
test_btree_model_small_nodes (void **state)
{
  model_run (8, 0, 6000, 4);
}

static void
test_btree_model_real_nodes (void **state)
{
  dense = true;
  model_run (0, 0, 8000, 2);
  dense = false;
}

/* Tiny node cache: memory stays under the bound, answers stay right. */
static void
test_btree_model_bounded_cache (void **state)
{
  /* Nodes of 32 keys are ~1.1 KiB: room for about 29, of which the
   * interior nodes (never evicted) take about 6.
   */
  model_run (32, 32768, 4000, 3);
  /* Real nodes (~33 KiB): the root and two leaves. */
  dense = true;
  model_run (0, 3 * 33000, 8000, 2);
  dense = false;
}

static void
test_btree_stale_keys (void **state)
{
  struct ctx c;
  struct btree_piece pc[4];
  struct walk_count w;
  struct nc_key k;
  bool cut = true;

  ctx_init (&c, 0, 0);
  insert1 (&c, dkey (1, 0, 8, 40, 0, c.bs));
  insert1 (&c, dkey (1, 8, 16, 41, 0, c.bs));
  insert1 (&c, dkey (1, 16, 24, 40, 8, c.bs));
  assert_int_equal (c.bs->live[40], 16);
  c.bs->gen[40]++;              /* bucket 40 invalidated */
  assert_int_equal (btree_lookup (c.bt, 1, 0, 24, pc, 4, NULL), 3);
  assert_false (pc[0].found);
  assert_true (pc[1].found);
  assert_false (pc[2].found);
  /* A cut meeting a stale key drops it without accounting, but reports
   * `cut` (the gen bump that made it stale may not be durable yet).
   */
  k = fkey (1, 4, 6, NC_KEY_DELETE);
  assert_int_equal (btree_insert (c.bt, &k, 1, NULL, &cut), 0);
  assert_true (cut);
  assert_int_equal (c.bs->live[40], 16);
  assert_int_equal (walk_count (&c, &w), 0);
  assert_int_equal (w.keys, 2);
  /* A stale key is never stored. */
  k = dkey (1, 30, 31, 40, 0, c.bs);
  k.gen--;
  insert1 (&c, k);
  assert_int_equal (walk_count (&c, &w), 0);
  assert_int_equal (w.keys, 2);
  /* The sweep drops what is left and notes live keys' gens. */
  assert_int_equal (btree_sweep (c.bt), 0);
  assert_int_equal (c.bs->gc_begins, 1);
  assert_int_equal (c.bs->gc_ends, 1);
  assert_int_equal (c.bs->gc_notes, 1);
  assert_int_equal (walk_count (&c, &w), 0);
  assert_int_equal (w.keys, 1);
  assert_int_equal (btree_lookup (c.bt, 1, 0, 24, pc, 4, NULL), 3);
  assert_true (pc[1].found);
  ctx_free (&c);
}

static void
test_btree_placeholders (void **state)
{
  struct ctx c;
  struct btree_piece pc[4];
  struct btree_stats st;
  uint64_t ph1, ph2, ph3;
  bool inserted;
  struct nc_key k;

  ctx_init (&c, 0, 0);
  insert1 (&c, dkey (1, 10, 20, 20, 0, c.bs));
  assert_int_equal (btree_lookup (c.bt, 1, 0, 10, pc, 4, &ph1), 1);
  assert_true (ph1 != 0);
  assert_int_equal (btree_lookup (c.bt, 1, 30, 40, pc, 4, &ph2), 1);
  assert_int_equal (btree_lookup (c.bt, 1, 50, 60, pc, 4, &ph3), 1);
  assert_true (ph1 != ph2 && ph2 != ph3);

  /* A write overlapping ph2 kills it; a write elsewhere does not hurt
   * ph1; other exports do not count.
   */
  insert1 (&c, dkey (1, 39, 41, 21, 0, c.bs));
  insert1 (&c, dkey (2, 0, 10, 21, 2, c.bs));
  insert1 (&c, fkey (1, 10, 11, NC_KEY_DELETE)); /* touching, not over */

  k = dkey (1, 0, 10, 22, 0, c.bs);
  assert_int_equal (btree_insert_promoted (c.bt, ph1, &k, &inserted, NULL), 0);
  assert_true (inserted);
  assert_int_equal (btree_lookup (c.bt, 1, 0, 10, pc, 4, NULL), 1);
  assert_true (pc[0].found);
  assert_int_equal (pc[0].key.bucket, 22);

  k = dkey (1, 30, 40, 23, 0, c.bs);
  assert_int_equal (btree_insert_promoted (c.bt, ph2, &k, &inserted, NULL), 0);
  assert_false (inserted);
  assert_int_equal (btree_lookup (c.bt, 1, 30, 39, pc, 4, NULL), 1);
  assert_false (pc[0].found);
  /* Used once: a second promotion with the same id is refused. */
  k = dkey (1, 0, 10, 24, 0, c.bs);
  assert_int_equal (btree_insert_promoted (c.bt, ph1, &k, &inserted, NULL), 0);
  assert_false (inserted);

  /* Trim kills; dropped placeholders are gone. */
  insert1 (&c, fkey (1, 55, 56, NC_KEY_DELETE));
  k = dkey (1, 50, 60, 25, 0, c.bs);
  assert_int_equal (btree_insert_promoted (c.bt, ph3, &k, &inserted, NULL), 0);
  assert_false (inserted);
  assert_int_equal (btree_lookup (c.bt, 1, 70, 80, pc, 4, &ph1), 1);
  btree_placeholder_drop (c.bt, ph1);
  k = dkey (1, 70, 80, 25, 0, c.bs);
  assert_int_equal (btree_insert_promoted (c.bt, ph1, &k, &inserted, NULL), 0);
  assert_false (inserted);
  btree_get_stats (c.bt, &st);
  assert_int_equal (st.placeholders_killed, 2);
  /* The placeholder covers the pieces returned, not the whole request. */
  assert_int_equal (btree_lookup (c.bt, 1, 0, 100, pc, 1, &ph1), 1);
  assert_int_equal (pc[0].end, 10);
  insert1 (&c, dkey (1, 50, 51, 26, 0, c.bs));
  k = dkey (1, 0, 10, 27, 0, c.bs);
  assert_int_equal (btree_insert_promoted (c.bt, ph1, &k, &inserted, NULL), 0);
  assert_true (inserted);
  ctx_free (&c);
}


/* ---- threads ---- */

struct thread_arg {
  struct ctx *c;
  struct model *m;
  uint16_t x;
  uint64_t rs;
  unsigned ops;
  int r;
};

static bool threads_done;

static void *
inserter (void *opaque)
{
  struct thread_arg *a = opaque;
  unsigned i;

  for (i = 0; i < a->ops && a->r == 0; i++) {
    struct nc_key k = random_key (a->c, &a->rs, a->x);
    struct btree_piece pc[4];
    uint64_t ph;

    a->r = btree_insert (a->c->bt, &k, 1, NULL, NULL);
    if (a->r == 0)
      model_apply (a->m, &k);
    if (a->r == 0 && i % 7 == 0) {
      a->r = btree_lookup (a->c->bt, a->x, bkey_start (&k), k.end, pc, 4,
                           &ph);
      btree_placeholder_drop (a->c->bt, ph);
      a->r = a->r > 0 ? 0 : -1;
    }
  }
  return NULL;
}

static void *
committer (void *opaque)
{
  struct thread_arg *a = opaque;

  while (!__atomic_load_n (&threads_done, __ATOMIC_ACQUIRE) && a->r == 0) {
    uint64_t seq;

    a->r = btree_journal_close_entry (a->c->bt, a->c->j);
    seq = journal_open_seq (a->c->j);
    if (a->r == 0)
      a->r = btree_write_pinned (a->c->bt, seq);
    sched_yield ();
  }
  return NULL;
}

static void
test_btree_threads (void **state)
{
  struct ctx c;
  struct model *m = calloc (1, sizeof *m);
  struct thread_arg args[4];
  pthread_t th[4];
  struct walk_count w;
  int i;

  assert_non_null (m);
  ctx_init (&c, 16, 20000);
  threads_done = false;
  for (i = 0; i < 4; i++) {
    args[i] = (struct thread_arg) {
      .c = &c, .m = m, .x = (uint16_t) (i + 1), .rs = seed + (uint64_t) i,
      .ops = 3000,
    };
    assert_int_equal (pthread_create (&th[i], NULL,
                                      i < 3 ? inserter : committer,
                                      &args[i]), 0);
  }
  for (i = 0; i < 3; i++)
    pthread_join (th[i], NULL);
  __atomic_store_n (&threads_done, true, __ATOMIC_RELEASE);
  pthread_join (th[3], NULL);
  for (i = 0; i < 4; i++)
    assert_int_equal (args[i].r, 0);
  check_all (&c, m);
  check_accounting (&c, m);
  assert_int_equal (walk_count (&c, &w), 0);
  assert_int_equal (btree_write_all (c.bt), 0);
  assert_int_equal (ctx_reopen (&c), 0);
  check_all (&c, m);
  ctx_free (&c);
  free (m);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_btree_insert_lookup_single),
    cmocka_unit_test (test_btree_insert_nowait),
    cmocka_unit_test (test_btree_cuts),
    cmocka_unit_test (test_btree_cut_across_leaves),
    cmocka_unit_test (test_btree_delete_zero_exports),
    cmocka_unit_test (test_btree_depth3_sequential),
    cmocka_unit_test (test_btree_model_small_nodes),
    cmocka_unit_test (test_btree_model_real_nodes),
    cmocka_unit_test (test_btree_model_bounded_cache),
    cmocka_unit_test (test_btree_stale_keys),
    cmocka_unit_test (test_btree_placeholders),
    cmocka_unit_test (test_btree_threads),
  };
  test_log_capture ();
  seed = test_seed_from_env ("test-btree-index");
  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
