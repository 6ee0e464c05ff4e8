/* SPDX-License-Identifier: BSD-3-Clause */
/* test-btree-persist.c — the index on disk: persistence, recovery and
 * failures.
 *
 * WHAT: nodes moving when their bucket is full, torn and corrupt bsets,
 * walk (including an unsorted but correctly checksummed node) and a walk
 * that stops, the journal hooks (pins, close_entry, write_pinned),
 * replay, I/O and allocation failures, and a crash sweep: random work,
 * journal commits, a device that dies at a random write and tears
 * unsynced blocks, recovery from the newest durable entry (its root, its
 * keys from last_seq replayed); then every block must hold its value at
 * that entry or a value a later key wrote there (leaves are written
 * lazily and may carry newer keys), never an older one or a hole no
 * DELETE made.
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

#include "csum.h"
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

static void
test_btree_node_moves (void **state)
{
  struct ctx c;
  struct model *m = calloc (1, sizeof *m);
  struct walk_count w;
  uint32_t first_root, leaf0;
  uint64_t i;
  size_t freed_before;
  struct nc_key k;

  assert_non_null (m);
  ctx_init (&c, 0, 0);
  /* The root leaf: one-block bsets, 16 per bucket. */
  k = dkey (1, 0, 1, 20, 0, c.bs);
  insert1 (&c, k);
  model_apply (m, &k);
  assert_int_equal (ctx_commit (&c), 0);
  first_root = c.j->e[c.j->nr - 1].root.bucket;
  for (i = 1; i < 16; i++) {
    k = dkey (1, i, i + 1, 20, (uint32_t) i, c.bs);
    insert1 (&c, k);
    model_apply (m, &k);
    assert_int_equal (btree_write_all (c.bt), 0);
    assert_int_equal (ctx_commit (&c), 0);
    assert_int_equal (c.j->e[c.j->nr - 1].root.bucket, first_root);
  }
  /* Blocks 0 (empty first bset) .. 15 are used: the next write moves. */
  freed_before = c.bs->nr_freed;
  k = dkey (1, 16, 17, 21, 0, c.bs);
  insert1 (&c, k);
  model_apply (m, &k);
  c.j->needed = false;
  assert_int_equal (btree_write_all (c.bt), 0);
  assert_true (c.j->needed);
  assert_int_equal (c.bs->nr_freed, freed_before + 1);
  assert_int_equal (c.bs->freed[c.bs->nr_freed - 1].bucket, first_root);
  assert_int_equal (c.bs->freed[c.bs->nr_freed - 1].seq, c.j->open_seq);
  assert_int_equal (ctx_reopen (&c), 0);
  assert_true (c.j->e[c.j->nr - 1].root.bucket != first_root);
  check_all (&c, m);

  /* A non-root leaf: its parent is rewritten when it moves. */
  for (i = 100; i < 1200; i++) {
    k = dkey (2, i, i + 1, 22, 0, c.bs);
    insert1 (&c, k);
    model_apply (m, &k);
  }
  assert_int_equal (btree_write_all (c.bt), 0);
  assert_int_equal (walk_count (&c, &w), 0);
  assert_true (w.leaves >= 2);
  leaf0 = w.leaf_buckets[0];
  for (i = 0; i < 20; i++) {
    k = dkey (1, 2 + i, 3 + i, 23, (uint32_t) i % 16, c.bs);
    insert1 (&c, k);
    model_apply (m, &k);
    assert_int_equal (btree_write_all (c.bt), 0);
  }
  assert_int_equal (walk_count (&c, &w), 0);
  assert_true (w.leaf_buckets[0] != leaf0);
  assert_int_equal (ctx_reopen (&c), 0);
  check_all (&c, m);
  assert_int_equal (walk_count (&c, &w), 0);
  ctx_free (&c);
  free (m);
}

/* Find the newest bset of the node in `bucket` (level, nonce). */
static void
newest_bset (struct ctx *c, uint32_t bucket, uint16_t level, uint64_t nonce,
             struct bpos hi, struct nc_key *keys, struct bset_node_info *info)
{
  struct bset_geom g;
  void *buf;

  bset_geom_init (&g, &c->sb, c->max_keys ? c->max_keys
                  : btree_node_max_keys (&c->sb));
  buf = cdev_alloc_buffer ((size_t) g.span_blocks * NC_BLOCK_BYTES);
  assert_non_null (buf);
  assert_int_equal (bset_read_node (&g, c->cd, buf, bucket, level, nonce,
                                    BPOS_MIN, hi, keys, info), 0);
  free (buf);
}

static void
test_btree_torn_and_corrupt_bsets (void **state)
{
  struct ctx c;
  struct btree_piece pc[4];
  struct nc_key root, k;
  uint8_t block[NC_BLOCK_BYTES];
  uint64_t off;

  ctx_init (&c, 0, 0);
  insert1 (&c, dkey (1, 0, 4, 20, 0, c.bs));
  assert_int_equal (btree_write_all (c.bt), 0);     /* bset 2 (1: empty) */
  insert1 (&c, dkey (1, 10, 14, 21, 0, c.bs));
  assert_int_equal (btree_write_all (c.bt), 0);     /* bset 3, block 2 */
  assert_int_equal (btree_journal_close_entry (c.bt, c.j), 0);
  root = c.j->e[c.j->nr - 1].root;
  off = (uint64_t) root.bucket * BUCKET_BLOCKS * NC_BLOCK_BYTES;

  /* Tear the last bset: the one before it is the node. */
  cdev_sim_peek (c.cd, off + 2 * NC_BLOCK_BYTES, block, sizeof block);
  block[sizeof (struct nc_bset) + 4] ^= 0xff;  /* key 0's end */
  cdev_sim_poke (c.cd, off + 2 * NC_BLOCK_BYTES, block, sizeof block);
  assert_int_equal (ctx_reopen (&c), 0);
  assert_int_equal (btree_lookup (c.bt, 1, 0, 4, pc, 4, NULL), 1);
  assert_true (pc[0].found);
  assert_int_equal (btree_lookup (c.bt, 1, 10, 14, pc, 4, NULL), 1);
  assert_false (pc[0].found);
  /* The next write goes over the torn one and is read back. */
  insert1 (&c, dkey (1, 20, 24, 22, 0, c.bs));
  assert_int_equal (btree_write_all (c.bt), 0);
  assert_int_equal (ctx_reopen (&c), 0);
  assert_int_equal (btree_lookup (c.bt, 1, 20, 24, pc, 4, NULL), 1);
  assert_true (pc[0].found);

  /* A bad first bset: the node is refused, naming its bucket. */
  root = c.j->e[c.j->nr - 1].root;
  off = (uint64_t) root.bucket * BUCKET_BLOCKS * NC_BLOCK_BYTES;
  cdev_sim_peek (c.cd, off, block, sizeof block);
  block[20] ^= 0x01;
  cdev_sim_poke (c.cd, off, block, sizeof block);
  test_log_clear ();
  btree_destroy (c.bt);
  ctx_make_btree (&c);
  assert_int_equal (btree_set_root (c.bt, &root, 0), -EBADMSG);
  assert_true (test_log_errors () > 0);
  {
    char want[64];

    snprintf (want, sizeof want, "bucket %u", root.bucket);
    assert_non_null (strstr (test_log_last_error (), want));
  }
  /* A stale root pointer (gen moved on) is refused too. */
  k = root;
  k.gen++;
  assert_int_equal (btree_set_root (c.bt, &k, 0), -EBADMSG);
  ctx_free (&c);
}

static void
test_btree_walk_and_unsorted_node (void **state)
{
  struct ctx c;
  struct walk_count w;
  struct nc_key *keys = malloc (1021 * sizeof *keys), root;
  struct bset_node_info info;
  struct nc_bset *h;
  uint8_t *buf;
  uint32_t leaf, blk, i;
  uint64_t off;

  assert_non_null (keys);
  ctx_init (&c, 0, 0);
  for (i = 0; i < 3000; i++)
    insert1 (&c, dkey (1, 3 * i, 3 * i + 2, 20 + i % 50, i % 8, c.bs));
  assert_int_equal (walk_count (&c, &w), 0);
  assert_int_equal (w.keys, 3000);
  assert_int_equal (w.nodes, w.leaves + 1);
  assert_int_equal (btree_write_all (c.bt), 0);
  assert_int_equal (ctx_reopen (&c), 0);
  root = c.j->e[c.j->nr - 1].root;
  assert_int_equal (c.j->e[c.j->nr - 1].level, 1);
  assert_int_equal (root.size, 1);
  assert_int_equal (root.end, UINT64_MAX);
  assert_int_equal (root.export_id, NC_EXPORT_ID_MAX);

  /* The second leaf: swap two keys in its newest bset, fix the csum. */
  newest_bset (&c, root.bucket, 1, root.nonce, BPOS_MAX, keys, &info);
  leaf = keys[1].bucket;
  newest_bset (&c, leaf, 0, keys[1].nonce, bpos_of (&keys[1]), keys, &info);
  blk = info.next_block - bset_blocks (info.nkeys);
  off = ((uint64_t) leaf * BUCKET_BLOCKS + blk) * NC_BLOCK_BYTES;
  buf = malloc ((size_t) bset_blocks (info.nkeys) * NC_BLOCK_BYTES);
  assert_non_null (buf);
  cdev_sim_peek (c.cd, off, buf, (size_t) bset_blocks (info.nkeys)
                 * NC_BLOCK_BYTES);
  h = (struct nc_bset *) buf;
  assert_int_equal (h->nkeys, info.nkeys);
  root = h->keys[3];
  h->keys[3] = h->keys[4];
  h->keys[4] = root;
  h->csum = nc_csum (h, sizeof *h + h->nkeys * sizeof (struct nc_key));
  cdev_sim_poke (c.cd, off, buf, (size_t) bset_blocks (info.nkeys)
                 * NC_BLOCK_BYTES);
  assert_int_equal (ctx_reopen (&c), 0);
  test_log_clear ();
  assert_int_equal (walk_count (&c, &w), -EBADMSG);
  assert_true (test_log_errors () > 0);
  assert_non_null (strstr (test_log_last_error (), "not sorted"));
  assert_int_equal (w.leaves, 1);       /* stopped at the second leaf */
  ctx_free (&c);
  free (buf);
  free (keys);
}

static int
stop_at_third (void *opaque, const struct nc_key *k)
{
  int *n = opaque;

  return ++*n == 3 ? 42 : 0;
}

static void
test_btree_walk_stops (void **state)
{
  struct ctx c;
  int n = 0;
  const struct btree_walk_ops ops = { .opaque = &n, .key = stop_at_third };

  ctx_init (&c, 0, 0);
  assert_int_equal (btree_walk (c.bt, &ops), 0);      /* empty tree */
  insert1 (&c, dkey (1, 0, 1, 20, 0, c.bs));
  insert1 (&c, dkey (1, 1, 2, 20, 1, c.bs));
  insert1 (&c, dkey (1, 2, 3, 20, 2, c.bs));
  insert1 (&c, dkey (1, 3, 4, 20, 3, c.bs));
  assert_int_equal (btree_walk (c.bt, &ops), 42);
  assert_int_equal (n, 3);
  ctx_free (&c);
}

static void
test_btree_journal_hooks (void **state)
{
  struct ctx c;
  struct btree_stats st;
  struct walk_count w;
  uint64_t seq = 0, i;

  ctx_init (&c, 8, 0);
  /* Empty tree: size 0 root, no pin. */
  assert_int_equal (btree_journal_close_entry (c.bt, c.j), 0);
  assert_int_equal (c.j->e[0].root.size, 0);
  assert_int_equal (c.j->e[0].last_seq, 1);
  /* seq 2: keys into two leaves far apart. */
  for (i = 0; i < 40; i++) {
    struct nc_key k = dkey (1, i * 100, i * 100 + 1, 20, 0, c.bs);

    assert_int_equal (btree_insert (c.bt, &k, 1, &seq, NULL), 0);
    assert_int_equal (seq, 2);
  }
  assert_int_equal (btree_write_all (c.bt), 0);
  assert_int_equal (ctx_commit (&c), 0);  /* entry 2 */
  assert_int_equal (c.j->e[1].last_seq, 2);
  assert_int_equal (c.j->e[1].nkeys, 40);
  /* seq 3 dirties the leaf of block 0; seq 4 the leaf of block 3900
   * (replacing a key: no leaf grows, none splits).
   */
  insert1 (&c, dkey (1, 0, 1, 20, 1, c.bs));
  assert_int_equal (ctx_commit (&c), 0);  /* entry 3, pin 3 */
  assert_int_equal (c.j->e[2].last_seq, 3);
  insert1 (&c, dkey (1, 3900, 3901, 20, 2, c.bs));
  assert_int_equal (ctx_commit (&c), 0);  /* entry 4, pin still 3 */
  assert_int_equal (c.j->e[3].last_seq, 3);
  btree_get_stats (c.bt, &st);
  assert_int_equal (st.dirty_leaves, 2);
  /* Reclaim below 4 writes only the first leaf. */
  assert_int_equal (btree_write_pinned (c.bt, 4), 0);
  btree_get_stats (c.bt, &st);
  assert_int_equal (st.dirty_leaves, 1);
  assert_int_equal (ctx_commit (&c), 0);  /* entry 5 */
  assert_int_equal (c.j->e[4].last_seq, 4);
  assert_int_equal (btree_write_pinned (c.bt, UINT64_MAX), 0);
  assert_int_equal (ctx_commit (&c), 0);  /* entry 6: nothing pinned */
  assert_int_equal (c.j->e[5].last_seq, 6);
  assert_int_equal (walk_count (&c, &w), 0);
  assert_int_equal (w.keys, 40);
  ctx_free (&c);
}

static void
test_btree_replay (void **state)
{
  struct ctx c;
  struct btree_piece pc[4];
  struct nc_key k;
  size_t adds;

  ctx_init (&c, 0, 0);
  insert1 (&c, dkey (1, 0, 10, 20, 0, c.bs));
  adds = c.j->nr_open;
  btree_set_accounting (c.bt, false);
  k = dkey (1, 5, 15, 21, 0, c.bs);
  assert_int_equal (btree_replay_key (c.bt, &k), 0);
  assert_int_equal (c.j->nr_open, adds);      /* not journaled again */
  assert_int_equal (c.bs->live[21], 0);       /* not accounted */
  assert_int_equal (c.bs->live[20], 10);
  /* A stale replayed key is not stored but still cuts what it covered. */
  k = dkey (1, 0, 3, 22, 0, c.bs);
  k.gen = (uint8_t) (c.bs->gen[22] + 1);
  assert_int_equal (btree_replay_key (c.bt, &k), 0);
  assert_int_equal (btree_lookup (c.bt, 1, 0, 15, pc, 4, NULL), 3);
  assert_false (pc[0].found);
  assert_int_equal (pc[0].end, 3);
  assert_int_equal (pc[1].key.bucket, 20);
  assert_int_equal (pc[2].key.bucket, 21);
  k = fkey (1, 0, 100, NC_KEY_DELETE);
  assert_int_equal (btree_replay_key (c.bt, &k), 0);
  btree_set_accounting (c.bt, true);
  assert_int_equal (btree_lookup (c.bt, 1, 0, 15, pc, 4, NULL), 1);
  assert_false (pc[0].found);
  ctx_free (&c);
}

/* A split that fails (write error, no bucket) leaves the key inserted in
 * an over-full leaf and returns the error; the next insert there splits
 * first.  A failed lazy write keeps the leaf dirty.  All can be retried.
 */
static void
test_btree_write_failures (void **state)
{
  struct ctx c;
  struct model *m = calloc (1, sizeof *m);
  struct btree_stats st;
  struct walk_count w;
  struct nc_key k;
  uint64_t i;
  int r;

  assert_non_null (m);
  ctx_init (&c, 8, 0);
  for (i = 0; i < 8; i++) {
    k = dkey (1, i, i + 1, 20, (uint32_t) i, c.bs);
    insert1 (&c, k);
    model_apply (m, &k);
  }
  /* The root leaf is full: the next insert splits and writes. */
  k = dkey (1, 100, 101, 21, 0, c.bs);
  cdev_sim_fail_at_write (c.cd, cdev_sim_nr_writes (c.cd) + 1);
  assert_int_equal (btree_insert (c.bt, &k, 1, NULL, NULL), -EIO);
  model_apply (m, &k);
  btree_get_stats (c.bt, &st);
  assert_int_equal (st.depth, 1);
  check_all (&c, m);
  assert_int_equal (walk_count (&c, &w), 0);
  assert_int_equal (w.keys, 9);
  cdev_sim_crash (c.cd, 0);     /* the device comes back */
  k = dkey (1, 101, 102, 21, 1, c.bs);
  insert1 (&c, k);
  model_apply (m, &k);
  btree_get_stats (c.bt, &st);
  assert_int_equal (st.depth, 2);
  check_all (&c, m);

  /* No node bucket: -ENOSPC, nothing changed, then fine. */
  for (i = 200; ; i++) {
    k = dkey (1, i, i + 1, 22, 0, c.bs);
    c.bs->fail_alloc = true;
    r = btree_insert (c.bt, &k, 1, NULL, NULL);
    c.bs->fail_alloc = false;
    model_apply (m, &k);
    if (r == -ENOSPC)
      break;
    assert_int_equal (r, 0);
  }
  check_all (&c, m);
  assert_int_equal (walk_count (&c, &w), 0);
  k = dkey (1, i + 1, i + 2, 22, 1, c.bs);
  insert1 (&c, k);
  model_apply (m, &k);
  check_all (&c, m);
  assert_int_equal (walk_count (&c, &w), 0);

  /* A failed lazy leaf write keeps the leaf dirty; the retry writes it. */
  k = dkey (1, 300, 301, 22, 1, c.bs);
  insert1 (&c, k);
  model_apply (m, &k);
  cdev_sim_fail_at_write (c.cd, cdev_sim_nr_writes (c.cd) + 1);
  assert_int_equal (btree_write_all (c.bt), -EIO);
  btree_get_stats (c.bt, &st);
  assert_true (st.dirty_leaves > 0);
  cdev_sim_crash (c.cd, 0);
  assert_int_equal (btree_write_all (c.bt), 0);
  assert_int_equal (ctx_reopen (&c), 0);
  check_all (&c, m);
  ctx_free (&c);
  free (m);
}

/* Recovery as device.c does it: the newest durable entry's root, then
 * its keys last_seq .. seq replayed without accounting.
 */
static int
recover (struct ctx *c)
{
  struct journal *j = c->j;
  const struct fj_entry *e;
  struct walk_count w;
  size_t i, k;
  int r;

  fj_free_entries_after (j, j->durable_seq);
  free (j->open_keys);
  j->open_keys = NULL;
  j->nr_open = j->cap_open = 0;
  assert_true (j->nr > 0);
  e = &j->e[j->nr - 1];
  j->open_seq = e->seq + 1;
  btree_destroy (c->bt);
  ctx_make_btree (c);
  if ((r = btree_set_root (c->bt, &e->root, e->level)) < 0)
    return r;
  /* Walk #1: the node buckets of the recovered tree. */
  memset (c->bs->node, 0, sizeof c->bs->node);
  if ((r = walk_count (c, &w)) < 0)
    return r;
  for (i = 0; i < w.nr_all; i++)
    c->bs->node[w.all_buckets[i]] = true;
  /* Node buckets the recovered tree does not use are free again (reuse
   * bumps their gen), as after bucket_mark_done.
   */
  c->bs->nr_freed = 0;
  for (i = DATA_FIRST + DATA_BUCKETS; i < c->bs->next_node; i++)
    if (!c->bs->node[i]) {
      c->bs->node[i] = true;
      bucket_free_node (c->bs, (uint32_t) i, 0);
    }
  btree_set_accounting (c->bt, false);
  for (i = 0; i < j->nr; i++)
    if (j->e[i].seq >= e->last_seq)
      for (k = 0; k < j->e[i].nkeys; k++)
        if ((r = btree_replay_key (c->bt, &j->e[i].keys[k])) < 0)
          return r;
  btree_set_accounting (c->bt, true);
  if ((r = btree_write_all (c->bt)) < 0)
    return r;
  /* Recount like walk #2; mark node buckets. */
  memset (c->bs->live, 0, sizeof c->bs->live);
  memset (c->bs->node, 0, sizeof c->bs->node);
  if ((r = walk_count (c, &w)) < 0)
    return r;
  for (i = 0; i < w.nr_all; i++)
    c->bs->node[w.all_buckets[i]] = true;
  assert_true (w.nr_all < 4096);
  return 0;
}

static int
recount_key (void *opaque, const struct nc_key *k)
{
  bucket_account (opaque, k, +1);
  return 0;
}

static void
test_btree_crash_recovery (void **state)
{
  struct ctx c;
  struct model *m = calloc (1, sizeof *m), *durable = calloc (1, sizeof *m);
  struct model *got = calloc (1, sizeof *m);
  struct post post = { 0 };
  uint64_t rs = seed ^ UINT64_C (0xc0ffee);
  unsigned round, crashes = 0, failed_ops = 0, newer = 0;

  assert_non_null (m);
  assert_non_null (durable);
  ctx_init (&c, 8, 6000);
  assert_int_equal (ctx_commit (&c), 0);
  for (round = 0; round < 60; round++) {
    unsigned ops = 20 + (unsigned) rng_below (&rs, 200), i;
    bool die = rng_below (&rs, 3) != 0;
    const struct btree_walk_ops recount = {
      .opaque = c.bs, .key = recount_key,
    };
    int r = 0;

    if (die)
      cdev_sim_fail_at_write (c.cd, cdev_sim_nr_writes (c.cd) + 1
                              + rng_below (&rs, 150));
    for (i = 0; i < ops && r == 0; i++) {
      unsigned what = (unsigned) rng_below (&rs, 100);

      if (what < 85)
        r = random_insert_post (&c, m, &rs, &post);
      else if (what < 95) {
        r = ctx_commit (&c);
        if (r == 0) {
          memcpy (durable, m, sizeof *m);
          post.n = 0;
        }
      }
      else
        r = btree_write_pinned (c.bt, c.j->durable_seq);
    }
    if (r != 0)
      failed_ops++;
    /* Power loss: unsynced blocks survive or not, at random. */
    cdev_sim_crash (c.cd, test_splitmix_next (&rs) | 1);
    crashes++;
    r = recover (&c);
    if (r != 0)
      fail_msg ("recovery failed: %d (round %u, seed %" PRIu64 ")", r, round,
                seed);
    model_from_btree (&c, got);
    check_after_crash (got, durable, &post);
    if (memcmp (got, durable, sizeof *got) != 0)
      newer++;
    memcpy (m, got, sizeof *m);
    memcpy (durable, got, sizeof *m);
    post.n = 0;
    check_all (&c, m);
    memset (c.bs->live, 0, sizeof c.bs->live);
    assert_int_equal (btree_walk (c.bt, &recount), 0);
    check_accounting (&c, m);
  }
  print_message ("%u crashes, %u rounds ended by a dead device, %u "
                 "recovered newer than the durable entry\n", crashes,
                 failed_ops, newer);
  ctx_free (&c);
  free (m);
  free (durable);
  free (got);
  free (post.k);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_btree_node_moves),
    cmocka_unit_test (test_btree_torn_and_corrupt_bsets),
    cmocka_unit_test (test_btree_walk_and_unsorted_node),
    cmocka_unit_test (test_btree_walk_stops),
    cmocka_unit_test (test_btree_journal_hooks),
    cmocka_unit_test (test_btree_replay),
    cmocka_unit_test (test_btree_write_failures),
    cmocka_unit_test (test_btree_crash_recovery),
  };
  test_log_capture ();
  seed = test_seed_from_env ("test-btree-persist");
  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
