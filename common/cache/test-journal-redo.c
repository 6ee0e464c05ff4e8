/* SPDX-License-Identifier: BSD-3-Clause */
/* test-journal-redo.c — a journal write whose entries carry their data
 * (journal.c REDO) and what replay hands back.
 *
 * WHAT: a FLUSH-waited write of a small data key costs one sync and is a
 * version 4 entry; after a crash the newest write is replayed whole
 * (nothing is dropped, even when its data blocks changed) and its inline
 * data comes back through journal_redo as it was written; an older
 * write's data does not come back; a commit with more data than
 * JOURNAL_INLINE_MAX_BLOCKS pre-flushes (version 2, two syncs); a torn
 * version 4 entry is not replayed; and when the device dies at the
 * write's one sync and loses unsynced blocks at random, a surviving
 * entry brings its data back even where the data block was lost.  The
 * stash (journal-stash.c) supplies a key's bytes only for the block and
 * gen its write put there: never after the slot was reused, evicted or
 * forgotten.
 * HOW: the fixture of test-journal-fx.h; the "data" blocks are in the
 * two buckets after the ring, written through the device as the engine
 * does before it journals a key; cdev_sim_poke changes a data block's
 * durable bytes (a data write that never arrived, or rot).  Whether the
 * redone blocks are still live is the assembly's question
 * (test-redo.c).
 * SEED: the fixture's (NBDCACHE_SEED overrides it).
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

#include "cdev.h"
#include "journal.h"
#include "journal-internal.h"
#include "log.h"
#include "ondisk.h"
#include "testkit.h"
#include "test-journal-fx.h"

#define DATA_BUCKET 3u          /* env_init (e, 2, ...): buckets 3 and 4 */

static uint64_t
slot_block (unsigned slot)
{
  return (uint64_t) DATA_BUCKET * BUCKET_BLOCKS + slot;
}

/* Write `blocks` blocks of pattern at slot (not synced) and journal a
 * DIRTY key naming them; returns its seq.
 */
static uint64_t
put (struct env *e, unsigned slot, uint32_t blocks, unsigned char pattern)
{
  const size_t len = (size_t) blocks * NC_BLOCK_BYTES;
  void *buf = cdev_alloc_buffer (len);
  struct nc_key k;
  uint64_t seq, b = slot_block (slot);

  assert_non_null (buf);
  memset (buf, pattern, len);
  assert_int_equal (cdev_pwrite (&e->fy->head, buf, len,
                                 b * NC_BLOCK_BYTES, 0), 0);
  free (buf);
  pthread_mutex_lock (&e->f.lock);
  fake_make_keys (&e->f, &k, 1);
  k.size = blocks;
  k.flags = NC_KEY_DIRTY;
  k.bucket = b / BUCKET_BLOCKS;
  k.offset = b % BUCKET_BLOCKS;
  k.gen = 0;
  seq = journal_add (e->j, &k, 1);
  fake_record (&e->f, &k, seq);
  pthread_mutex_unlock (&e->f.lock);
  return seq;
}

/* Change a data block's durable bytes behind the journal's back. */
static void
scribble (struct env *e, unsigned slot)
{
  unsigned char buf[NC_BLOCK_BYTES];

  memset (buf, 0xee, sizeof buf);
  cdev_sim_poke (e->sim, slot_block (slot) * NC_BLOCK_BYTES, buf,
                 sizeof buf);
}

/* The version of the entry with seq in the ring. */
static uint32_t
entry_version (struct env *e, uint64_t seq)
{
  struct nc_jentry h;
  uint32_t pos, nblocks;

  assert_true (find_entry (e, seq, &pos, &nblocks));
  cdev_sim_peek (e->sim, e->ring_offset + (uint64_t) pos * NC_BLOCK_BYTES,
                 &h, sizeof h);
  return h.version;
}

/* What journal_redo hands back. */
struct redone {
  struct nc_key k[8];
  unsigned char first_byte[8], last_byte[8];
  size_t n;
};

static int
take (void *opaque, const struct nc_key *k, const void *data)
{
  struct redone *rd = opaque;
  const unsigned char *d = data;

  assert_true (rd->n < 8);
  rd->k[rd->n] = *k;
  rd->first_byte[rd->n] = d[0];
  rd->last_byte[rd->n] = d[(size_t) k->size * NC_BLOCK_BYTES - 1];
  rd->n++;
  return 0;
}

static void
test_redo_one_sync (void **state)
{
  struct env e;
  struct journal_stats st;
  uint64_t s, syncs, fills;

  env_init (&e, 2, LONG_DELAY_MS);
  assert_int_equal (journal_flush (e.j), 0);
  journal_get_stats (e.j, &st);
  syncs = cdev_sim_nr_syncs (e.sim);
  fills = st.fill_syncs;
  s = put (&e, 0, 1, 0x11);
  assert_int_equal (journal_wait (e.j, s), 0);
  journal_get_stats (e.j, &st);
  /* Data and entry made durable by ONE sync (FILL's own apart). */
  assert_int_equal (cdev_sim_nr_syncs (e.sim) - syncs
                    - (st.fill_syncs - fills), 1);
  assert_true (st.inlined >= 1);
  assert_int_equal (entry_version (&e, s), NC_JENTRY_VERSION_INLINE);
  env_crash (&e, 0);
  assert_int_equal (journal_durable_seq (e.j), s);
  env_free (&e);
}

/* The newest write's data changed before the crash (it never arrived, or
 * rotted): the write is kept and its data comes back from the entry; the
 * older write's does not (a later sync covered it).
 */
static void
test_redo_newest_carried (void **state)
{
  struct env e;
  struct redone rd = { .n = 0 };
  uint64_t s1, s2;

  env_init (&e, 2, LONG_DELAY_MS);
  s1 = put (&e, 0, 1, 0x11);
  assert_int_equal (journal_flush (e.j), 0);
  /* Three keys in one write (within the test ring's 4-block entries):
   * blocks 1 and 2 follow each other on the device (read in one run),
   * block 5 does not.
   */
  s2 = put (&e, 1, 1, 0x22);
  put (&e, 2, 1, 0x33);
  s2 = put (&e, 5, 1, 0x55);
  assert_int_equal (journal_flush (e.j), 0);
  assert_true (s1 < s2);
  assert_int_equal (entry_version (&e, s2), NC_JENTRY_VERSION_INLINE);
  scribble (&e, 0);
  scribble (&e, 2);
  scribble (&e, 5);
  env_crash (&e, 0);
  /* Nothing dropped. */
  assert_int_equal (journal_durable_seq (e.j), s2);
  assert_int_equal (journal_redo_count (e.j), 3);
  assert_int_equal (journal_redo (e.j, take, &rd), 0);
  assert_int_equal (rd.n, 3);
  assert_int_equal (rd.k[0].bucket, DATA_BUCKET);
  assert_int_equal (rd.k[0].offset, 1);
  assert_int_equal (rd.k[0].size, 1);
  assert_int_equal (rd.first_byte[0], 0x22);
  assert_int_equal (rd.last_byte[0], 0x22);
  assert_int_equal (rd.k[1].offset, 2);
  assert_int_equal (rd.first_byte[1], 0x33);
  assert_int_equal (rd.last_byte[1], 0x33);
  assert_int_equal (rd.k[2].offset, 5);
  assert_int_equal (rd.first_byte[2], 0x55);
  assert_int_equal (rd.last_byte[2], 0x55);
  /* Handed out once. */
  assert_int_equal (journal_redo_count (e.j), 0);
  env_free (&e);
}

/* More data than JOURNAL_INLINE_MAX_BLOCKS: the pre-flush, version 2. */
static void
test_redo_big_write_preflushes (void **state)
{
  struct env e;
  struct journal_stats st;
  uint64_t s = 0, syncs, fills;
  unsigned i;

  env_init (&e, 2, LONG_DELAY_MS);
  assert_int_equal (journal_flush (e.j), 0);
  journal_get_stats (e.j, &st);
  syncs = cdev_sim_nr_syncs (e.sim);
  fills = st.fill_syncs;
  for (i = 0; i <= JOURNAL_INLINE_MAX_BLOCKS / 8; i++)
    s = put (&e, 0, 8, 0x55);
  assert_int_equal (journal_flush (e.j), 0);
  journal_get_stats (e.j, &st);
  assert_int_equal (st.inlined, 0);
  assert_int_equal (entry_version (&e, s), NC_JENTRY_VERSION);
  assert_int_equal (cdev_sim_nr_syncs (e.sim) - syncs
                    - (st.fill_syncs - fills), 2);
  env_crash (&e, 0);
  assert_int_equal (journal_durable_seq (e.j), s);
  assert_int_equal (journal_redo_count (e.j), 0);
  env_free (&e);
}

/* A version 4 entry whose write was torn (a sector still holds what was
 * there before) was never acknowledged: not replayed, nothing redone.
 */
static void
test_redo_torn_entry_not_replayed (void **state)
{
  struct env e;
  const size_t ring_bytes = (size_t) 2 * BUCKET_BLOCKS * NC_BLOCK_BYTES;
  unsigned char *old = malloc (ring_bytes);
  uint32_t pos, nb;
  uint64_t s1, s2;

  assert_non_null (old);
  env_init (&e, 2, LONG_DELAY_MS);
  s1 = put (&e, 0, 1, 0x11);
  assert_int_equal (journal_flush (e.j), 0);
  cdev_sim_peek (e.sim, e.ring_offset, old, ring_bytes);
  s2 = put (&e, 1, 1, 0x22);
  assert_int_equal (journal_flush (e.j), 0);
  assert_true (find_entry (&e, s2, &pos, &nb));
  assert_int_equal (entry_version (&e, s2), NC_JENTRY_VERSION_INLINE);
  tear_sector (&e, old, pos, nb * NC_JSECTORS_PER_BLOCK - 1);
  env_crash (&e, 0);
  assert_int_equal (journal_durable_seq (e.j), s1);
  /* s1's write is now the newest: its data (and only it) comes back. */
  assert_int_equal (journal_redo_count (e.j), 1);
  free (old);
  env_free (&e);
}

/* The device dies at the write's one sync (after its data and entry
 * pwrites), then loses or keeps each unsynced block at random: whenever
 * the entry survived, replay keeps the write whole and hands its data
 * back, also when the data block itself was lost; when it did not, the
 * write is gone (never acknowledged).  Both cases must be seen.
 */
static void
test_redo_sync_dies (void **state)
{
  struct env e;
  unsigned char blk[NC_BLOCK_BYTES];
  unsigned kept_data_lost = 0, dropped = 0, i;
  uint64_t t, s1 = 0, s2;

  for (t = 1; t < 400 && (kept_data_lost == 0 || dropped == 0); t++) {
    struct redone rd = { .n = 0 };

    env_init (&e, 2, LONG_DELAY_MS);
    /* Until the ring is filled (FILL syncs of its own), so the one sync
     * of the next write is the first sync it makes.
     */
    for (i = 0;; i++) {
      bool filled;

      assert_true (i < 64);

      s1 = put (&e, 0, 1, 0x11);
      assert_int_equal (journal_flush (e.j), 0);
      pthread_mutex_lock (&e.j->lock);
      filled = e.j->unfilled_len == 0;
      pthread_mutex_unlock (&e.j->lock);
      if (filled)
        break;
    }
    s2 = put (&e, 1, 1, 0x22);
    faulty_fail_sync (e.fy, 1);
    assert_int_equal (journal_flush (e.j), -EIO);
    env_crash (&e, (seed ^ (t * 0x9e3779b97f4a7c15u)) & ~(uint64_t) 2);
    cdev_sim_peek (e.sim, slot_block (1) * NC_BLOCK_BYTES, blk, sizeof blk);
    if (journal_durable_seq (e.j) == s2) {
      assert_int_equal (journal_redo (e.j, take, &rd), 0);
      assert_int_equal (rd.n, 1);
      assert_int_equal (rd.k[0].offset, 1);
      assert_int_equal (rd.first_byte[0], 0x22);
      assert_int_equal (rd.last_byte[0], 0x22);
      kept_data_lost += blk[0] != 0x22;
    }
    else {
      assert_int_equal (journal_durable_seq (e.j), s1);
      dropped++;
    }
    env_free (&e);
  }
  assert_true (kept_data_lost > 0);
  assert_true (dropped > 0);
}

/* ---- the stash (journal-stash.c) ---- */

/* Journal a one-block DIRTY key at slot for gen; writes nothing. */
static uint64_t
key_at (struct env *e, unsigned slot, uint8_t gen)
{
  struct nc_key k;
  uint64_t seq, b = slot_block (slot);

  pthread_mutex_lock (&e->f.lock);
  fake_make_keys (&e->f, &k, 1);
  k.size = 1;
  k.flags = NC_KEY_DIRTY;
  k.bucket = b / BUCKET_BLOCKS;
  k.offset = b % BUCKET_BLOCKS;
  k.gen = gen;
  seq = journal_add (e->j, &k, 1);
  fake_record (&e->f, &k, seq);
  pthread_mutex_unlock (&e->f.lock);
  return seq;
}

/* Tell the stash that device block `block` now holds pattern for gen. */
static void
stash (struct env *e, uint64_t block, uint8_t gen, unsigned char pattern)
{
  unsigned char *buf = cdev_alloc_buffer (NC_BLOCK_BYTES);

  assert_non_null (buf);
  memset (buf, pattern, NC_BLOCK_BYTES);
  journal_stash_put (e->j, block, gen, 1, buf);
  free (buf);
}

/* The device's bytes at slot, not through the stash. */
static void
poke (struct env *e, unsigned slot, unsigned char pattern)
{
  unsigned char buf[NC_BLOCK_BYTES];

  memset (buf, pattern, sizeof buf);
  cdev_sim_poke (e->sim, slot_block (slot) * NC_BLOCK_BYTES, buf,
                 sizeof buf);
}

/* Flush the one key at slot, crash, and return the byte redone for it;
 * *stashed / *read: its inline blocks from the stash / read back.
 */
static unsigned char
redone_byte (struct env *e, uint64_t *stashed, uint64_t *read)
{
  struct redone rd = { .n = 0 };
  struct journal_stats st;

  assert_int_equal (journal_flush (e->j), 0);
  journal_get_stats (e->j, &st);
  *stashed = st.inline_stashed_blocks;
  *read = st.inline_read_blocks;
  env_crash (e, 0);
  assert_int_equal (journal_redo (e->j, take, &rd), 0);
  assert_int_equal (rd.n, 1);
  assert_int_equal (rd.first_byte[0], rd.last_byte[0]);
  return rd.first_byte[0];
}

/* A key whose write the stash holds is carried from memory: the device
 * (poked to differ, which no engine write does) is not read.
 */
static void
test_stash_supplies (void **state)
{
  struct env e;
  uint64_t stashed, read;

  env_init (&e, 2, LONG_DELAY_MS);
  assert_int_equal (journal_flush (e.j), 0);
  poke (&e, 3, 0x33);
  stash (&e, slot_block (3), 7, 0x11);
  key_at (&e, 3, 7);
  assert_int_equal (redone_byte (&e, &stashed, &read), 0x11);
  assert_int_equal (stashed, 1);
  assert_int_equal (read, 0);
  env_free (&e);
}

/* The bucket was reused: the stash holds the block for gen 7, the key
 * is for gen 8 (its write bypassed the stash here, which no engine write
 * does): never the stale bytes, the device's are read back.
 */
static void
test_stash_other_gen_misses (void **state)
{
  struct env e;
  uint64_t stashed, read;

  env_init (&e, 2, LONG_DELAY_MS);
  assert_int_equal (journal_flush (e.j), 0);
  stash (&e, slot_block (3), 7, 0x11);
  poke (&e, 3, 0x22);
  key_at (&e, 3, 8);
  assert_int_equal (redone_byte (&e, &stashed, &read), 0x22);
  assert_int_equal (stashed, 0);
  assert_int_equal (read, 1);
  env_free (&e);
}

/* A reuse that went through the stash replaces the old gen's bytes; a
 * block of the same slot (b + STASH_SLOTS) evicts it; a failed write
 * and a large one forget it.  The key then gets the device's bytes.
 */
static void
test_stash_replaced_or_forgotten (void **state)
{
  struct env e;
  unsigned char *big;
  uint64_t stashed, read, b = slot_block (3);
  unsigned how;

  big = cdev_alloc_buffer ((JOURNAL_INLINE_MAX_BLOCKS + 1) * NC_BLOCK_BYTES);
  assert_non_null (big);
  memset (big, 0x55, (JOURNAL_INLINE_MAX_BLOCKS + 1) * NC_BLOCK_BYTES);
  for (how = 0; how < 4; how++) {
    env_init (&e, 2, LONG_DELAY_MS);
    assert_int_equal (journal_flush (e.j), 0);
    stash (&e, b, 7, 0x11);
    poke (&e, 3, 0x44);
    switch (how) {
    case 0:                     /* reused: gen 8 through the stash */
      stash (&e, b, 8, 0x22);
      poke (&e, 3, 0x22);
      key_at (&e, 3, 8);
      assert_int_equal (redone_byte (&e, &stashed, &read), 0x22);
      assert_int_equal (stashed, 1);
      break;
    case 1:                     /* the slot's other block */
      stash (&e, b + STASH_SLOTS, 7, 0x66);
      key_at (&e, 3, 7);
      assert_int_equal (redone_byte (&e, &stashed, &read), 0x44);
      assert_int_equal (read, 1);
      break;
    case 2:                     /* a failed write */
      journal_stash_put (e.j, b, 7, 1, NULL);
      key_at (&e, 3, 7);
      assert_int_equal (redone_byte (&e, &stashed, &read), 0x44);
      assert_int_equal (read, 1);
      break;
    default:                    /* a write larger than the stash takes */
      journal_stash_put (e.j, b - 1, 7, JOURNAL_INLINE_MAX_BLOCKS + 1, big);
      key_at (&e, 3, 7);
      assert_int_equal (redone_byte (&e, &stashed, &read), 0x44);
      assert_int_equal (read, 1);
      break;
    }
    env_free (&e);
  }
  free (big);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_redo_one_sync),
    cmocka_unit_test (test_redo_newest_carried),
    cmocka_unit_test (test_redo_big_write_preflushes),
    cmocka_unit_test (test_redo_torn_entry_not_replayed),
    cmocka_unit_test (test_redo_sync_dies),
    cmocka_unit_test (test_stash_supplies),
    cmocka_unit_test (test_stash_other_gen_misses),
    cmocka_unit_test (test_stash_replaced_or_forgotten),
  };

  seed = test_seed_from_env ("test-journal-redo");
  test_log_capture ();
  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
