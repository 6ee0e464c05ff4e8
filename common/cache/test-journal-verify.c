/* SPDX-License-Identifier: BSD-3-Clause */
/* test-journal-verify.c — a journal write that skips its pre-flush
 * (journal-verify.c) and what recovery makes of it.
 *
 * WHAT: a FLUSH-waited write of a small data key costs one sync and is a
 * version 3 entry; the newest write whose data did not arrive is dropped
 * (its seqs reused, check agrees); one whose data arrived is kept; an
 * older flagged write is not checked (its bucket may have been reused
 * since: its data changed, yet it stays); a key of the newest write whose
 * gen is no longer its bucket's is not checked; a commit with more data
 * than JVERIFY_MAX_BYTES pre-flushes as before.
 * HOW: the fixture of test-journal-fx.h; the "data" blocks are in the
 * two buckets after the ring, written through the device as the engine
 * does before it journals a key; cdev_sim_poke changes a data block's
 * durable bytes to play a data write that never arrived (or a bucket
 * reused later).
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
put (struct env *e, unsigned slot, uint32_t blocks, unsigned char pattern,
     uint8_t gen)
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
  k.gen = gen;
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

/* Two waited writes; the second's data changes before the crash (it
 * never arrived) or not.  Returns the durable seq after recovery.
 */
static uint64_t
newest (bool arrived, uint64_t *s1, uint64_t *s2)
{
  struct env e;
  struct journal_stats st;
  uint64_t syncs, durable;

  env_init (&e, 2, LONG_DELAY_MS);
  *s1 = put (&e, 0, 1, 0x11, 0);
  assert_int_equal (journal_flush (e.j), 0);
  journal_get_stats (e.j, &st);
  syncs = cdev_sim_nr_syncs (e.sim) - st.fill_syncs;
  *s2 = put (&e, 1, 2, 0x22, 0);
  assert_int_equal (journal_flush (e.j), 0);
  journal_get_stats (e.j, &st);
  /* One sync for the whole write: data and entry (FILL syncs apart). */
  assert_true (st.unflushed >= 2);
  assert_int_equal (cdev_sim_nr_syncs (e.sim) - st.fill_syncs - syncs, 1);
  assert_int_equal (entry_version (&e, *s2), NC_JENTRY_VERSION_VERIFY);
  if (!arrived)
    scribble (&e, 2);           /* the second block of the second key */
  env_crash (&e, 0);
  durable = journal_durable_seq (e.j);
  /* The reopened journal works on (over the dropped write's seqs). */
  put (&e, 4, 1, 0x44, 0);
  assert_int_equal (journal_flush (e.j), 0);
  env_crash (&e, 0);
  env_free (&e);
  return durable;
}

static void
test_verify_newest_torn_dropped (void **state)
{
  uint64_t s1, s2, d = newest (false, &s1, &s2);

  assert_true (d < s2);
}

static void
test_verify_newest_arrived_kept (void **state)
{
  uint64_t s1, s2, d = newest (true, &s1, &s2);

  assert_int_equal (d, s2);
}

/* An older flagged write is never checked: after the next write its data
 * was synced, and its bucket may be reused since. */
static void
test_verify_older_not_checked (void **state)
{
  struct env e;
  uint64_t s1, s2;

  env_init (&e, 2, LONG_DELAY_MS);
  s1 = put (&e, 0, 1, 0x11, 0);
  assert_int_equal (journal_flush (e.j), 0);
  s2 = put (&e, 1, 1, 0x22, 0);
  assert_int_equal (journal_flush (e.j), 0);
  assert_int_equal (entry_version (&e, s1), NC_JENTRY_VERSION_VERIFY);
  scribble (&e, 0);
  env_crash (&e, 0);
  assert_int_equal (journal_durable_seq (e.j), s2);
  env_free (&e);
}

static uint8_t
gen_seven (void *opaque, uint32_t bucket)
{
  (void) opaque;
  (void) bucket;
  return 7;
}

/* A key of the newest write whose bucket was bumped since (evicted, or
 * freed and reused) points at nothing: not checked, the write stays. */
static void
test_verify_stale_gen_not_checked (void **state)
{
  struct env e;
  uint64_t s1, s2;

  env_init (&e, 2, LONG_DELAY_MS);
  s1 = put (&e, 0, 1, 0x11, 7);
  s2 = put (&e, 1, 1, 0x22, 6);  /* stale: the bucket's gen is 7 */
  assert_int_equal (journal_flush (e.j), 0);
  assert_true (s1 <= s2);
  scribble (&e, 1);
  e.gen = gen_seven;
  env_crash (&e, 0);
  assert_int_equal (journal_durable_seq (e.j), s2);
  /* The current key of that write is still checked. */
  s1 = put (&e, 2, 1, 0x33, 7);
  assert_int_equal (journal_flush (e.j), 0);
  scribble (&e, 2);
  env_crash (&e, 0);
  assert_true (journal_durable_seq (e.j) < s1);
  env_free (&e);
}

/* More data than JVERIFY_MAX_BYTES: the pre-flush, a version 2 entry. */
static void
test_verify_big_write_preflushes (void **state)
{
  struct env e;
  struct journal_stats st;
  uint64_t s, syncs;
  unsigned i;

  env_init (&e, 2, LONG_DELAY_MS);
  assert_int_equal (journal_flush (e.j), 0);
  syncs = cdev_sim_nr_syncs (e.sim);
  /* 2 buckets of 16 blocks = 128 KiB of real data; the keys repeat it
   * until they name more than JVERIFY_MAX_BYTES.
   */
  for (i = 0; i <= JVERIFY_MAX_BYTES / (16 * NC_BLOCK_BYTES); i++)
    s = put (&e, 0, 16, 0x55, 0);
  assert_int_equal (journal_flush (e.j), 0);
  journal_get_stats (e.j, &st);
  assert_int_equal (st.unflushed, 0);
  assert_int_equal (entry_version (&e, s), NC_JENTRY_VERSION);
  assert_int_equal (cdev_sim_nr_syncs (e.sim) - syncs - st.fill_syncs, 2);
  env_crash (&e, 0);
  env_free (&e);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_verify_newest_torn_dropped),
    cmocka_unit_test (test_verify_newest_arrived_kept),
    cmocka_unit_test (test_verify_older_not_checked),
    cmocka_unit_test (test_verify_stale_gen_not_checked),
    cmocka_unit_test (test_verify_big_write_preflushes),
  };

  seed = test_seed_from_env ("test-journal-verify");
  test_log_capture ();
  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
