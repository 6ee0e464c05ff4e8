/* SPDX-License-Identifier: BSD-3-Clause */
/* test-bucket.c — unit tests for the bucket set's states (bucket.c) and
 * the prio copies (prio.c).
 *
 * WHAT: prio copies (round trip, A/B alternation, one or both corrupt, a
 * foreign uuid, an unformatted device); gens made durable before a bucket
 * is handed out (crash after allocation, a failing prio write);
 * accounting, PENDING -> EMPTY on commit, stale and ZERO keys, underflow;
 * the gen distance limit (-EAGAIN, sweep); recovery marks; hits and
 * decay.
 * HOW: the fixture of test-bucket-fx.h.
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
#include "csum.h"
#include "log.h"
#include "testkit.h"
#include "ondisk.h"
#include "super.h"

#include "test-bucket-fx.h"

/* ---- prio copies ---- */

static void
test_bucket_prio_roundtrip (void **state)
{
  struct fx fx;
  uint64_t seq;
  uint32_t i;

  fx_open (&fx);
  /* format wrote A seq 1; B is "never written" */
  assert_null (prio_check_copy (fx.cd, &fx.sb, 0, &seq));
  assert_int_equal (seq, 1);
  assert_string_equal (prio_check_copy (fx.cd, &fx.sb, 1, &seq),
                       "never written");
  assert_int_equal (test_log_warnings (), 0);  /* not worth a warning at open */
  assert_int_equal (fx.bs->prio_copy, 0);
  assert_int_equal (fx.bs->prio_seq, 1);

  for (i = 0; i < NBUCKETS; i++) {
    fx.bs->b[i].gen = (uint8_t) (i * 7 + 3);
    fx.bs->b[i].prio = (uint16_t) (i * 1000 + 1);
  }
  assert_int_equal (prio_write (fx.bs), 0);         /* -> B, seq 2 */
  assert_null (prio_check_copy (fx.cd, &fx.sb, 1, &seq));
  assert_int_equal (seq, 2);
  assert_null (prio_check_copy (fx.cd, &fx.sb, 0, &seq));
  assert_int_equal (seq, 1);

  /* A forward move (within the gen-distance limit: prio_read refuses
   * copies in which a gen went backwards).
   */
  fx.bs->b[DATA_FIRST].gen = 100;
  assert_int_equal (prio_write (fx.bs), 0);         /* -> A, seq 3 */
  assert_null (prio_check_copy (fx.cd, &fx.sb, 0, &seq));
  assert_int_equal (seq, 3);
  assert_int_equal (usage (fx.bs).prio_writes, 2);

  /* Survives a crash (prio_write synced) and reads back exactly. */
  fx_detach (&fx);
  cdev_sim_crash (fx.cd, 0);
  fx_attach (&fx);
  assert_int_equal (fx.bs->prio_seq, 3);
  assert_int_equal (fx.bs->prio_copy, 0);
  for (i = 0; i < NBUCKETS; i++) {
    uint8_t want = i == DATA_FIRST ? 100 : (uint8_t) (i * 7 + 3);

    assert_int_equal (bucket_gen (fx.bs, i), want);
    assert_int_equal (fx.bs->b[i].prio, (uint16_t) (i * 1000 + 1));
  }
  /* The next write alternates again: B, seq 4. */
  assert_int_equal (prio_write (fx.bs), 0);
  assert_null (prio_check_copy (fx.cd, &fx.sb, 1, &seq));
  assert_int_equal (seq, 4);
  assert_int_equal (test_log_errors (), 0);
  assert_string_equal (prio_check_copy (fx.cd, &fx.sb, 2, &seq),
                       "no such copy");
  fx_close (&fx);
}

static void
test_bucket_prio_one_copy_corrupt (void **state)
{
  struct fx fx;
  uint64_t seq;

  fx_open (&fx);
  fx.bs->b[10].gen = 11;
  assert_int_equal (prio_write (fx.bs), 0);         /* B seq 2: gen 11 */
  fx.bs->b[10].gen = 12;
  assert_int_equal (prio_write (fx.bs), 0);         /* A seq 3: gen 12 */
  fx_detach (&fx);

  /* Corrupt the newest (A), in an entry: B wins, with a warning. */
  flip_byte (fx.cd, copy_offset (0) + sizeof (struct nc_prio) + 4 * 10);
  assert_string_equal (prio_check_copy (fx.cd, &fx.sb, 0, &seq),
                       "bad checksum");
  test_log_clear ();
  fx_attach (&fx);
  assert_int_equal (bucket_gen (fx.bs, 10), 11);
  assert_int_equal (fx.bs->prio_seq, 2);
  assert_int_equal (test_log_errors (), 0);
  assert_int_equal (test_log_warnings (), 1);
  assert_non_null (strstr (test_log_last_warning (), "sim"));
  assert_non_null (strstr (test_log_last_warning (), "copy A"));
  assert_non_null (strstr (test_log_last_warning (), "bad checksum"));
  /* The next write replaces the bad copy. */
  assert_int_equal (prio_write (fx.bs), 0);
  assert_null (prio_check_copy (fx.cd, &fx.sb, 0, &seq));
  assert_int_equal (seq, 3);
  fx_detach (&fx);

  /* Corrupt the older (B, seq 2) header: A (seq 3) is used. */
  flip_byte (fx.cd, copy_offset (1) + 8);           /* the magic */
  test_log_clear ();
  fx_attach (&fx);
  assert_int_equal (fx.bs->prio_seq, 3);
  assert_int_equal (fx.bs->prio_copy, 0);
  assert_int_equal (bucket_gen (fx.bs, 10), 11);
  assert_int_equal (test_log_warnings (), 1);
  assert_non_null (strstr (test_log_last_warning (), "copy B"));
  assert_non_null (strstr (test_log_last_warning (), "bad magic"));
  fx_close (&fx);
}

static void
test_bucket_prio_both_corrupt (void **state)
{
  struct fx fx;
  struct bucket_set *bs;
  struct nc_sb other;
  uint64_t seq;

  fx_open (&fx);
  assert_int_equal (prio_write (fx.bs), 0);         /* B seq 2 */
  fx_detach (&fx);
  flip_byte (fx.cd, copy_offset (0) + 100);
  flip_byte (fx.cd, copy_offset (1) + 100);
  assert_int_equal (bucket_set_create (fx.cd, &fx.sb, fx_hooks (&fx), &bs),
                    0);
  test_log_clear ();
  assert_int_equal (prio_read (bs), -EBADMSG);
  assert_int_equal (test_log_errors (), 1);
  assert_non_null (strstr (test_log_last_error (), "sim"));
  assert_non_null (strstr (test_log_last_error (), "copy A: bad checksum"));
  assert_non_null (strstr (test_log_last_error (), "copy B: bad checksum"));
  bucket_set_destroy (bs);

  /* Valid copies of another cache (different uuid) are refused. */
  make_sb (&other, NBUCKETS, seed + 1);
  assert_int_equal (prio_format (fx.cd, &fx.sb), 0);
  assert_string_equal (prio_check_copy (fx.cd, &other, 0, &seq),
                       "uuid differs from the superblock");
  assert_int_equal (bucket_set_create (fx.cd, &other, NULL, &bs), 0);
  test_log_clear ();
  assert_int_equal (prio_read (bs), -EBADMSG);
  assert_non_null (strstr (test_log_last_error (), "uuid"));
  bucket_set_destroy (bs);

  /* A different bucket count. */
  make_sb (&other, NBUCKETS - 1, seed);
  assert_string_equal (prio_check_copy (fx.cd, &other, 0, &seq),
                       "bucket count differs from the superblock");

  /* An unformatted device. */
  cdev_close (fx.cd);
  assert_int_equal (cdev_sim_create ((uint64_t) NBUCKETS * BUCKET_BLOCKS *
                                     NC_BLOCK_BYTES, &fx.cd), 0);
  assert_int_equal (bucket_set_create (fx.cd, &fx.sb, NULL, &bs), 0);
  test_log_clear ();
  assert_int_equal (prio_read (bs), -EBADMSG);
  assert_non_null (strstr (test_log_last_error (), "never written"));
  bucket_set_destroy (bs);

  /* A read error on the only valid copy is the error returned. */
  assert_int_equal (prio_format (fx.cd, &fx.sb), 0);
  cdev_sim_fail_read_once (fx.cd, copy_offset (0), NC_BLOCK_BYTES);
  assert_int_equal (bucket_set_create (fx.cd, &fx.sb, NULL, &bs), 0);
  test_log_clear ();
  assert_int_equal (prio_read (bs), -EIO);
  assert_non_null (strstr (test_log_last_error (), "copy A: read error"));
  bucket_set_destroy (bs);
  cdev_close (fx.cd);
}

/* ---- gens ---- */

static void
test_bucket_gen_durable_before_handout (void **state)
{
  struct fx fx;
  struct bucket_extent e;
  uint32_t node;
  uint8_t node_gen, gens[NBUCKETS];
  uint64_t syncs;
  uint32_t i;

  fx_open (&fx);
  syncs = cdev_sim_nr_syncs (fx.cd);
  assert_int_equal (bucket_alloc_data (fx.bs, WP_DIRTY, 3, &e), 0);
  assert_int_equal (e.gen, 1);                      /* bumped from 0 */
  assert_int_equal (bucket_gen (fx.bs, e.bucket), 1);
  assert_true (cdev_sim_nr_syncs (fx.cd) > syncs);
  assert_int_equal (bucket_alloc_node (fx.bs, &node, &node_gen), 0);
  assert_int_not_equal (node, e.bucket);
  assert_int_equal (node_gen, 1);
  for (i = 0; i < NBUCKETS; i++)
    gens[i] = bucket_gen (fx.bs, i);

  /* Power loss right after the hand-out: the gens are on disk. */
  fx_detach (&fx);
  cdev_sim_crash (fx.cd, 1);
  fx_attach (&fx);
  assert_int_equal (bucket_gen (fx.bs, e.bucket), e.gen);
  assert_int_equal (bucket_gen (fx.bs, node), node_gen);
  for (i = 0; i < NBUCKETS; i++)
    assert_int_equal (bucket_gen (fx.bs, i), gens[i]);

  /* A prio write that fails hands nothing out. */
  cdev_sim_fail_at_write (fx.cd, 1);
  test_log_clear ();
  assert_int_equal (bucket_alloc_data (fx.bs, WP_CLEAN, 1, &e), -EIO);
  assert_true (test_log_errors () >= 1);
  assert_int_equal (usage (fx.bs).open, 0);
  assert_int_equal (usage (fx.bs).free, 0);
  assert_int_equal (bucket_alloc_node (fx.bs, &node, &node_gen), -EIO);
  check_state_counts (fx.bs);
  /* After the "reboot" the same set recovers and allocates. */
  cdev_sim_crash (fx.cd, 0);
  assert_int_equal (bucket_alloc_data (fx.bs, WP_CLEAN, 1, &e), 0);
  fx_detach (&fx);
  fx_attach (&fx);
  assert_int_equal (bucket_gen (fx.bs, e.bucket), e.gen);
  fx_close (&fx);
}

/* ---- accounting ---- */

static void
test_bucket_accounting (void **state)
{
  struct fx fx;
  struct bucket_extent e;
  struct nc_key kd, kc, part, stale, zero;
  struct bucket_usage u;

  fx_open (&fx);
  assert_int_equal (bucket_alloc_data (fx.bs, WP_DIRTY, BUCKET_BLOCKS, &e),
                    0);
  e.nblocks = 10;
  kd = key_for (&e, 100, NC_KEY_DIRTY);
  e.offset = 10;
  e.nblocks = 6;
  kc = key_for (&e, 200, 0);
  bucket_account (fx.bs, &kd, +1);
  bucket_account (fx.bs, &kc, +1);
  bucket_put_open (fx.bs, e.bucket);
  u = usage (fx.bs);
  assert_int_equal (u.live_blocks, 16);
  assert_int_equal (u.dirty_blocks, 10);
  assert_int_equal (u.dirty_buckets, 1);
  assert_int_equal (u.data, 1);

  /* Stale and ZERO keys count nowhere. */
  stale = kd;
  stale.gen = (uint8_t) (kd.gen + 1);
  bucket_account (fx.bs, &stale, +1);
  bucket_account (fx.bs, &stale, -1);
  stale.gen = (uint8_t) (kd.gen - 1);
  bucket_account (fx.bs, &stale, -1);
  assert_true (bucket_ptr_stale (fx.bs, &stale));
  assert_false (bucket_ptr_stale (fx.bs, &kd));
  zero = kd;
  zero.flags = NC_KEY_ZERO | NC_KEY_DIRTY;
  zero.bucket = 0;
  /* (added before it is removed: removing a key never added is a BUG of
   * the per-export zero counter) */
  bucket_account (fx.bs, &zero, +1);
  bucket_account (fx.bs, &zero, -1);
  assert_false (bucket_ptr_stale (fx.bs, &zero));
  u = usage (fx.bs);
  assert_int_equal (u.live_blocks, 16);
  assert_int_equal (u.dirty_blocks, 10);

  /* Cut part of the dirty key, then mark the rest clean (writeback). */
  part = kd;
  part.size = 4;
  bucket_account (fx.bs, &part, -1);
  part.size = 6;
  bucket_account (fx.bs, &part, -1);
  part.flags = 0;
  bucket_account (fx.bs, &part, +1);
  u = usage (fx.bs);
  assert_int_equal (u.live_blocks, 12);
  assert_int_equal (u.dirty_blocks, 0);
  assert_int_equal (u.dirty_buckets, 0);

  /* Emptying it: PENDING at the journal's open seq, until durable. */
  fx.open_seq = 7;
  bucket_account (fx.bs, &part, -1);
  assert_int_equal (bucket_state_of (fx.bs, e.bucket), BUCKET_DATA);
  bucket_account (fx.bs, &kc, -1);
  assert_int_equal (bucket_state_of (fx.bs, e.bucket), BUCKET_PENDING);
  /* a cut and re-insert in one insert revives it */
  bucket_account (fx.bs, &kc, +1);
  assert_int_equal (bucket_state_of (fx.bs, e.bucket), BUCKET_DATA);
  fx.open_seq = 8;
  bucket_account (fx.bs, &kc, -1);
  assert_int_equal (bucket_state_of (fx.bs, e.bucket), BUCKET_PENDING);
  bucket_journal_committed (fx.bs, 7);
  assert_int_equal (bucket_state_of (fx.bs, e.bucket), BUCKET_PENDING);
  bucket_journal_committed (fx.bs, 8);
  assert_int_equal (bucket_state_of (fx.bs, e.bucket), BUCKET_EMPTY);
  u = usage (fx.bs);
  assert_int_equal (u.live_blocks, 0);
  assert_int_equal (u.pending, 0);

  /* Underflow: a BUG, logged once and clamped in a release build
   * (NBDCACHE_BUG_NONFATAL, invariant.h; a test build aborts).
   */
  setenv ("NBDCACHE_BUG_NONFATAL", "1", 1);
  assert_int_equal (test_log_errors (), 0);
  e = (struct bucket_extent) { 0 };
  fill_bucket (&fx, WP_CLEAN, 0, 300);
  assert_int_equal (bucket_alloc_data (fx.bs, WP_DIRTY, 2, &e), 0);
  kd = key_for (&e, 400, NC_KEY_DIRTY);
  bucket_account (fx.bs, &kd, +1);
  kd.size = 5;
  bucket_account (fx.bs, &kd, -1);
  bucket_account (fx.bs, &kd, -1);
  /* the export's dirty counter and the bucket's count, each once */
  assert_int_equal (test_log_errors (), 2);
  assert_non_null (strstr (test_log_last_error (), "below zero"));
  u = usage (fx.bs);
  assert_int_equal (u.live_blocks, BUCKET_BLOCKS);  /* the clean bucket */
  assert_int_equal (u.dirty_blocks, 0);
  unsetenv ("NBDCACHE_BUG_NONFATAL");
  check_state_counts (fx.bs);
  fx_close (&fx);
}
/* ---- gen distance ---- */

static void
test_bucket_gen_distance (void **state)
{
  struct fx fx;
  struct bucket_extent e;
  struct nc_key k = { .end = 1, .size = 1, .export_id = 1 };
  uint32_t i, b;
  uint8_t g;

  fx_open (&fx);
  /* Every data bucket at gen 96 with a stale key of gen 0 in the tree:
   * one more bump would make gen 0 ambiguous.
   */
  for (i = DATA_FIRST; i < NBUCKETS; i++)
    fx.bs->b[i].gen = BUCKET_GEN_MAX_DISTANCE;
  bucket_mark_begin (fx.bs);
  for (i = DATA_FIRST; i < NBUCKETS; i++) {
    k.bucket = i;
    k.gen = 0;
    assert_false (bucket_mark_key (fx.bs, &k));
  }
  bucket_mark_done (fx.bs);
  assert_int_equal (fx.bs->b[DATA_FIRST].oldest_gen, 0);
  assert_int_equal (bucket_alloc_data (fx.bs, WP_DIRTY, 1, &e), -EAGAIN);
  assert_int_equal (bucket_alloc_node (fx.bs, &b, &g), -ENOSPC);
  assert_int_equal (usage (fx.bs).prio_writes, 0);

  /* A sweep that still meets one such key frees every other bucket. */
  bucket_gc_begin (fx.bs);
  k.bucket = DATA_FIRST;
  bucket_gc_note (fx.bs, &k);
  k.gen = 50;                  /* less far behind: distance 47 is fine */
  k.bucket = DATA_FIRST + 1;
  bucket_gc_note (fx.bs, &k);
  bucket_gc_end (fx.bs, true);
  assert_int_equal (fx.bs->b[DATA_FIRST + 1].oldest_gen, 50);
  assert_int_equal (bucket_alloc_data (fx.bs, WP_DIRTY, 1, &e), 0);
  assert_int_not_equal (e.bucket, DATA_FIRST);
  assert_int_equal (e.gen, BUCKET_GEN_MAX_DISTANCE + 1);
  assert_int_equal (bucket_state_of (fx.bs, DATA_FIRST), BUCKET_EMPTY);

  /* Gens wrap: at 255 with nothing older the next gen is 0. */
  fx.bs->b[DATA_FIRST].gen = 255;
  bucket_gc_begin (fx.bs);
  bucket_gc_end (fx.bs, true);
  for (i = 0; i < 2 * NDATA; i++) {
    bucket_put_open (fx.bs, e.bucket);
    if (bucket_alloc_data (fx.bs, WP_DIRTY, BUCKET_BLOCKS, &e) != 0)
      break;
    if (e.bucket == DATA_FIRST)
      break;
  }
  assert_int_equal (e.bucket, DATA_FIRST);
  assert_int_equal (e.gen, 0);
  check_state_counts (fx.bs);
  fx_close (&fx);
}

/* ---- recovery marks ---- */

static void
test_bucket_marks (void **state)
{
  struct fx fx;
  struct nc_key k = { .end = 10, .size = 4, .export_id = 1 };
  struct nc_key z = { .end = 20, .size = 4, .export_id = 1,
                      .flags = NC_KEY_ZERO };
  const uint32_t node = 6, data = 7, stale = 8;
  struct bucket_usage u;
  int pass;

  fx_open (&fx);
  fx.bs->b[data].gen = 5;
  fx.bs->b[stale].gen = 9;
  for (pass = 0; pass < 2; pass++) {               /* recovery marks twice */
    bucket_mark_begin (fx.bs);
    bucket_mark_btree (fx.bs, node);
    bucket_mark_btree (fx.bs, 1);                  /* META: ignored */
    k.bucket = data;
    k.gen = 5;
    k.flags = NC_KEY_DIRTY;
    assert_true (bucket_mark_key (fx.bs, &k));
    k.flags = 0;
    k.offset = 4;
    assert_true (bucket_mark_key (fx.bs, &k));
    k.bucket = stale;
    k.gen = 3;
    assert_false (bucket_mark_key (fx.bs, &k));
    k.gen = 7;
    assert_false (bucket_mark_key (fx.bs, &k));
    assert_true (bucket_mark_key (fx.bs, &z));
    k.bucket = NBUCKETS;
    assert_false (bucket_mark_key (fx.bs, &k));
    bucket_mark_done (fx.bs);
  }
  assert_int_equal (bucket_state_of (fx.bs, node), BUCKET_BTREE);
  assert_int_equal (bucket_state_of (fx.bs, data), BUCKET_DATA);
  assert_int_equal (bucket_state_of (fx.bs, stale), BUCKET_EMPTY);
  assert_int_equal (bucket_state_of (fx.bs, 1), BUCKET_META);
  assert_int_equal (fx.bs->b[stale].oldest_gen, 3);
  assert_int_equal (fx.bs->b[data].oldest_gen, 5);
  assert_int_equal (fx.bs->b[data].live_blocks, 8);
  assert_int_equal (fx.bs->b[data].dirty_blocks, 4);
  u = usage (fx.bs);
  assert_int_equal (u.btree, 1);
  assert_int_equal (u.data, 1);
  assert_int_equal (u.empty, NDATA - 2);
  assert_int_equal (u.live_blocks, 8);
  assert_int_equal (u.dirty_blocks, 4);

  /* Accounting after the marks goes on from the counts. */
  k.bucket = data;
  k.gen = 5;
  k.flags = NC_KEY_DIRTY;
  k.offset = 0;
  bucket_account (fx.bs, &k, -1);
  k.flags = 0;
  k.offset = 4;
  bucket_account (fx.bs, &k, -1);
  assert_int_equal (bucket_state_of (fx.bs, data), BUCKET_PENDING);

  /* A later mark keeps FREE (durable bump), OPEN and PENDING buckets,
   * and drops unreachable nodes.
   */
  bucket_free_node (fx.bs, node, 100);             /* node -> PENDING */
  {
    uint32_t b;
    uint8_t g;
    struct bucket_extent e;

    assert_int_equal (bucket_alloc_node (fx.bs, &b, &g), 0);
    assert_int_equal (bucket_alloc_data (fx.bs, WP_CLEAN, 1, &e), 0);
    bucket_put_open (fx.bs, e.bucket);
    bucket_mark_begin (fx.bs);
    bucket_mark_done (fx.bs);
    assert_int_equal (bucket_state_of (fx.bs, b), BUCKET_EMPTY);
    assert_int_equal (bucket_state_of (fx.bs, e.bucket), BUCKET_OPEN);
  }
  assert_int_equal (bucket_state_of (fx.bs, node), BUCKET_PENDING);
  assert_int_equal (bucket_state_of (fx.bs, data), BUCKET_PENDING);
  assert_true (usage (fx.bs).free > 0);
  bucket_journal_committed (fx.bs, 100);
  assert_int_equal (bucket_state_of (fx.bs, node), BUCKET_EMPTY);
  assert_int_equal (bucket_state_of (fx.bs, data), BUCKET_EMPTY);
  check_state_counts (fx.bs);
  fx_close (&fx);
}

/* ---- prios at run time ---- */

static void
test_bucket_hit_and_decay (void **state)
{
  struct fx fx;
  const uint32_t b = 20, c = 21;
  uint32_t i;
  uint16_t p;

  fx_open (&fx);
  assert_int_equal (fx.bs->b[b].prio, 0);
  bucket_hit (fx.bs, b);
  assert_int_equal (fx.bs->b[b].prio, BUCKET_PRIO_HIT);
  bucket_hit (fx.bs, b);
  p = fx.bs->b[b].prio;
  assert_true (p > BUCKET_PRIO_HIT);
  for (i = 0; i < 100; i++)
    bucket_hit (fx.bs, b);
  assert_int_equal (fx.bs->b[b].prio, UINT16_MAX);  /* saturates */
  bucket_hit (fx.bs, 0);                            /* META: only counted */
  bucket_hit (fx.bs, NBUCKETS + 5);
  assert_int_equal (fx.bs->b[0].prio, 0);

  /* Decay: every BUCKET_DECAY_IOS I/Os each prio loses an eighth. */
  fx.bs->b[c].prio = 800;
  for (i = fx.bs->ios % BUCKET_DECAY_IOS; i + 1 < BUCKET_DECAY_IOS; i++)
    bucket_io (fx.bs);
  assert_int_equal (fx.bs->b[c].prio, 800);
  bucket_io (fx.bs);
  assert_int_equal (fx.bs->b[c].prio, 700);
  assert_int_equal (fx.bs->b[b].prio, UINT16_MAX - (UINT16_MAX + 7) / 8);
  fx.bs->b[c].prio = 1;
  for (i = 0; i < BUCKET_DECAY_IOS; i++)
    bucket_io (fx.bs);
  assert_int_equal (fx.bs->b[c].prio, 0);

  /* Prios persist with the gens. */
  fx.bs->b[c].prio = 1234;
  assert_int_equal (prio_write (fx.bs), 0);
  fx_detach (&fx);
  fx_attach (&fx);
  assert_int_equal (fx.bs->b[c].prio, 1234);
  fx_close (&fx);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_bucket_prio_roundtrip),
    cmocka_unit_test (test_bucket_prio_one_copy_corrupt),
    cmocka_unit_test (test_bucket_prio_both_corrupt),
    cmocka_unit_test (test_bucket_gen_durable_before_handout),
    cmocka_unit_test (test_bucket_accounting),
    cmocka_unit_test (test_bucket_gen_distance),
    cmocka_unit_test (test_bucket_marks),
    cmocka_unit_test (test_bucket_hit_and_decay),
  };

  seed = test_seed_from_env ("test-bucket");
  test_log_capture ();
  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
