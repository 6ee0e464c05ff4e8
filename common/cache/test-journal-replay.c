/* SPDX-License-Identifier: BSD-3-Clause */
/* test-journal-replay.c — what the journal's recovery finds after bad
 * writes.
 *
 * WHAT: a torn last write (crash between the entry pwrite and its sync,
 * random tears) falls back to the previous chain; a batch whose first
 * entry is torn falls back and the ring is reused correctly afterwards; a
 * corrupt entry in the middle of the chain is -EBADMSG; a foreign uuid is
 * ignored; an I/O error fails the waiter with -EIO and the keys are
 * committed by the next commit; a reclaim error.
 * HOW: the fixture of test-journal-fx.h.
 * SEED: randomised tests print their seed; NBDCACHE_SEED overrides it.
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

#include "csum.h"
#include "cdev.h"
#include "journal.h"
#include "log.h"
#include "testkit.h"
#include "ondisk.h"
#include "super.h"
#include "test-journal-fx.h"

/* The device dies between the entry pwrite and its sync; power loss tears
 * the unsynced blocks at random.  Replay gives the previous chain or a
 * prefix of the torn write that is complete, and writing continues
 * correctly over the leftovers.
 */
static void
test_journal_torn_tail (void **state)
{
  const uint32_t kpe = kpe_for (32);
  unsigned iter, fell_back = 0;
  uint64_t tear = seed;

  for (iter = 0; iter < 24; iter++) {
    struct env e;
    uint64_t d, s;
    uint64_t tear_seed = iter == 0 ? 0 : test_splitmix_next (&tear) | 1;

    env_init (&e, 2, LONG_DELAY_MS);
    fake_add (&e.f, 7);
    assert_int_equal (journal_flush (e.j), 0);
    d = journal_durable_seq (e.j);

    faulty_fail_sync (e.fy, 2);   /* pre-flush ok, post-write sync dies */
    s = fake_add (&e.f, 3 * kpe - 5);
    assert_int_equal (journal_wait (e.j, s), -EIO);
    assert_int_equal (journal_durable_seq (e.j), d);
    env_crash (&e, tear_seed);
    assert_true (journal_durable_seq (e.j) >= d);
    if (journal_durable_seq (e.j) == d)
      fell_back++;
    if (tear_seed == 0)
      assert_int_equal (journal_durable_seq (e.j), d);

    /* The seqs of the lost entries are written again, elsewhere or in
     * place; a second crash must still replay cleanly.
     */
    fake_add (&e.f, kpe + 1);
    assert_int_equal (journal_flush (e.j), 0);
    s = fake_add (&e.f, 2);
    assert_int_equal (journal_wait (e.j, s), 0);
    env_crash (&e, tear_seed);
    assert_int_equal (journal_durable_seq (e.j), s);
    env_free (&e);
  }
  assert_true (fell_back >= 12);
}

/* A write of three entries is durable, then its first entry turns bad: the
 * remaining two are a torn write, not corruption; the older chain is
 * used, the two are dropped, and their seqs are reused safely.
 */
static void
test_journal_first_entry_torn (void **state)
{
  const uint32_t kpe = kpe_for (32);
  struct env e;
  struct journal_check_info info;
  uint64_t d, s, first;
  uint32_t pos, nb, pos2, nb2;
  unsigned char hdr[NC_BLOCK_BYTES];

  env_init (&e, 2, LONG_DELAY_MS);
  fake_add (&e.f, 9);
  assert_int_equal (journal_flush (e.j), 0);
  d = journal_durable_seq (e.j);
  first = journal_open_seq (e.j);
  s = fake_add (&e.f, 2 * kpe + 1);
  assert_int_equal (s, first + 2);
  assert_int_equal (journal_wait (e.j, s), 0);

  assert_true (find_entry (&e, first, &pos, &nb));
  assert_true (find_entry (&e, first + 1, &pos2, &nb2));
  flip_byte (&e, e.ring_offset + (uint64_t) (pos + nb) * NC_BLOCK_BYTES
             - NC_BLOCK_BYTES + 100);
  assert_int_equal (journal_check (e.sim, &e.sb, &info), 0);
  assert_int_equal (info.last_seq, d);

  env_crash (&e, 0);
  assert_int_equal (journal_durable_seq (e.j), d);
  assert_int_equal (e.f.nrecs, 9);
  /* The survivors were dropped. */
  cdev_sim_peek (e.sim, e.ring_offset + (uint64_t) pos2 * NC_BLOCK_BYTES,
                 hdr, sizeof hdr);
  assert_int_not_equal (((struct nc_jentry *) hdr)->magic,
                        NC_JOURNAL_MAGIC);

  /* Reuse the seqs: a small entry `first` now, then first + 1 .. */
  s = fake_add (&e.f, 1);
  assert_int_equal (s, first);
  assert_int_equal (journal_wait (e.j, s), 0);
  s = fake_add (&e.f, kpe + 2);
  assert_int_equal (journal_wait (e.j, s), 0);
  env_crash (&e, 0);
  assert_int_equal (journal_durable_seq (e.j), s);
  assert_int_equal (e.f.nrecs, 9 + 1 + kpe + 2);
  env_free (&e);
}

/* An entry in the middle of the chain (an older, acknowledged write) is
 * corrupt: that is not a torn tail, the journal is refused.
 */
static void
test_journal_corrupt_middle (void **state)
{
  struct env e;
  struct journal_check_info info;
  struct journal *j2;
  struct nc_key root;
  uint16_t level;
  uint32_t pos, nb;
  int i;

  env_init (&e, 4, LONG_DELAY_MS);
  for (i = 0; i < 6; i++) {
    fake_add (&e.f, 10);
    assert_int_equal (journal_flush (e.j), 0);
  }
  assert_int_equal (journal_durable_seq (e.j), 7);
  assert_true (find_entry (&e, 4, &pos, &nb));
  flip_byte (&e, e.ring_offset + (uint64_t) pos * NC_BLOCK_BYTES + 112 + 5);
  test_log_clear ();
  assert_int_equal (journal_check (e.sim, &e.sb, &info), -EBADMSG);
  assert_true (error_logged ("missing or corrupt"));
  assert_int_equal (journal_create (e.sim, &e.sb, &j2), 0);
  assert_int_equal (journal_replay (j2, collect, NULL, &root, &level),
                    -EBADMSG);
  journal_destroy (j2);

  /* The newest entry alone cannot be told from a torn write: replay
   * falls back to 6.  (The middle one is repaired first.)
   */
  flip_byte (&e, e.ring_offset + (uint64_t) pos * NC_BLOCK_BYTES + 112 + 5);
  assert_int_equal (journal_check (e.sim, &e.sb, &info), 0);
  assert_int_equal (info.last_seq, 7);
  assert_true (find_entry (&e, 7, &pos, &nb));
  flip_byte (&e, e.ring_offset + (uint64_t) pos * NC_BLOCK_BYTES + 112 + 5);
  assert_int_equal (journal_check (e.sim, &e.sb, &info), 0);
  assert_int_equal (info.last_seq, 6);
  assert_int_equal (info.first_seq, 2);  /* the oldest pin: the first key */
  assert_int_equal (info.valid_entries_seen, 6);

  /* A bad magic in the middle is just as fatal. */
  assert_true (find_entry (&e, 3, &pos, &nb));
  flip_byte (&e, e.ring_offset + (uint64_t) pos * NC_BLOCK_BYTES + 8);
  assert_int_equal (journal_check (e.sim, &e.sb, &info), -EBADMSG);
  env_free (&e);
}

/* Entries of another cache set (another uuid) are invisible, even with a
 * higher seq or the seq of one of ours.
 */
static void
test_journal_foreign_uuid (void **state)
{
  struct env e;
  struct journal_check_info info;
  unsigned char buf[NC_BLOCK_BYTES];
  struct nc_jentry *je = (struct nc_jentry *) buf;
  uint64_t d;

  env_init (&e, 4, LONG_DELAY_MS);
  fake_add (&e.f, 4);
  assert_int_equal (journal_flush (e.j), 0);
  fake_add (&e.f, 4);
  assert_int_equal (journal_flush (e.j), 0);
  d = journal_durable_seq (e.j);

  memset (buf, 0, sizeof buf);
  je->magic = NC_JOURNAL_MAGIC;
  je->version = NC_META_VERSION;
  je->nblocks = 1;
  memcpy (je->uuid, e.sb.uuid, 16);
  je->uuid[3] ^= 1;
  je->seq = d + 100;
  je->last_seq = d + 100;
  je->csum = nc_csum (je, sizeof *je);
  cdev_sim_poke (e.sim, e.ring_offset + (uint64_t) (e.ring_blocks - 1) *
                 NC_BLOCK_BYTES, buf, sizeof buf);
  je->seq = d;
  je->last_seq = 1;
  je->csum = nc_csum (je, sizeof *je);
  cdev_sim_poke (e.sim, e.ring_offset + (uint64_t) (e.ring_blocks - 3) *
                 NC_BLOCK_BYTES, buf, sizeof buf);

  assert_int_equal (journal_check (e.sim, &e.sb, &info), 0);
  assert_int_equal (info.last_seq, d);
  assert_int_equal (info.valid_entries_seen, d);
  env_crash (&e, 0);
  assert_int_equal (journal_durable_seq (e.j), d);
  assert_int_equal (e.f.nrecs, 8);
  env_free (&e);
}

/* A write error fails the waiter with -EIO; the keys stay and the next
 * commit writes them.
 */
static void
test_journal_io_error (void **state)
{
  struct env e;
  struct journal_stats st;
  uint64_t s1, s2;

  env_init (&e, 2, LONG_DELAY_MS);
  fake_add (&e.f, 2);
  assert_int_equal (journal_flush (e.j), 0);

  test_log_clear ();
  cdev_sim_fail_write_once (e.sim, e.ring_offset,
                            (uint64_t) e.ring_blocks * NC_BLOCK_BYTES);
  s1 = fake_add (&e.f, 5);
  assert_int_equal (journal_wait (e.j, s1), -EIO);
  assert_true (test_log_errors () >= 1);
  assert_true (error_logged ("retried"));
  journal_get_stats (e.j, &st);
  assert_int_equal (st.errors, 1);
  assert_true (journal_durable_seq (e.j) < s1);

  s2 = fake_add (&e.f, 5);
  assert_true (s2 > s1);
  assert_int_equal (journal_wait (e.j, s2), 0);
  assert_int_equal (journal_wait (e.j, s1), 0);
  journal_get_stats (e.j, &st);
  assert_int_equal (st.errors, 1);
  assert_int_equal (st.keys, 12);

  env_crash (&e, 0);
  assert_int_equal (e.f.nrecs, 12);
  env_free (&e);
}

/* A failing reclaim fails the waiters; a working one lets the commit
 * through, and the failed keys are still committed.
 */
static void
test_journal_reclaim_error (void **state)
{
  const uint32_t kpe = kpe_for (32);
  struct env e;
  uint64_t s;
  int i, r = 0;

  env_init (&e, 2, LONG_DELAY_MS);
  pthread_mutex_lock (&e.f.lock);
  e.f.reclaim_result = -EIO;
  pthread_mutex_unlock (&e.f.lock);
  /* Fill the ring until a commit needs reclaim. */
  for (i = 0; i < 20 && r == 0; i++) {
    s = fake_add (&e.f, kpe);
    r = journal_wait (e.j, s);
  }
  assert_int_equal (r, -EIO);
  assert_true (e.f.nreclaims >= 1);
  pthread_mutex_lock (&e.f.lock);
  e.f.reclaim_result = 0;
  pthread_mutex_unlock (&e.f.lock);
  assert_int_equal (journal_wait (e.j, s), 0);
  assert_int_equal (journal_flush (e.j), 0);
  env_crash (&e, 0);
  assert_int_equal (e.f.nrecs, (size_t) i * kpe);
  env_free (&e);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_journal_torn_tail),
    cmocka_unit_test (test_journal_first_entry_torn),
    cmocka_unit_test (test_journal_corrupt_middle),
    cmocka_unit_test (test_journal_foreign_uuid),
    cmocka_unit_test (test_journal_io_error),
    cmocka_unit_test (test_journal_reclaim_error),
  };

  seed = test_seed_from_env ("test-journal-replay");
  test_log_capture ();
  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
