/* SPDX-License-Identifier: BSD-3-Clause */
/* test-bucket.c — unit tests for the bucket set (bucket.c) and the prio
 * copies (prio.c).
 *
 * WHAT: prio copies (round trip, A/B alternation, one or both corrupt, a
 * foreign uuid, an unformatted device); gens made durable before a bucket
 * is handed out (crash after allocation, a failing prio write); write
 * points; accounting, PENDING -> EMPTY on commit, stale and ZERO keys,
 * underflow; node buckets; PENDING buckets freed through a journal flush
 * taken without the bucket lock; eviction (lowest prio, clean only),
 * -ENOSPC, the node reserve; the gen distance limit (-EAGAIN, sweep);
 * recovery marks; hits and decay; a randomised model run and a threaded
 * run.
 * HOW: a simulated cache device (cdev-sim.c) with a hand-built superblock
 * (16-block buckets, 64 of them, data from bucket 5) and a fake journal:
 * an open seq that a flush commits (calling bucket_journal_committed, as
 * the real journal does before waking waiters).  The test sees the bucket
 * internals (BUCKET_INTERNALS) to set gens and prios directly.
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
#include "csum.h"
#include "log.h"
#include "ondisk.h"
#include "super.h"

#define BUCKET_BLOCKS 16u
#define NBUCKETS 64u
#define DATA_FIRST 5u
#define NDATA (NBUCKETS - DATA_FIRST)
#define PRIO_FIRST 3u

static uint64_t seed;

/* ---- captured log messages ---- */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char last_error[1024], last_warning[1024];
static unsigned nr_errors, nr_warnings;

static void
capture_log (enum log_level level, const char *msg)
{
  pthread_mutex_lock (&log_lock);
  if (level == LOG_LEVEL_ERROR) {
    snprintf (last_error, sizeof last_error, "%s", msg);
    nr_errors++;
  }
  else if (level == LOG_LEVEL_WARNING) {
    snprintf (last_warning, sizeof last_warning, "%s", msg);
    nr_warnings++;
  }
  pthread_mutex_unlock (&log_lock);
}

static void
reset_log (void)
{
  pthread_mutex_lock (&log_lock);
  last_error[0] = last_warning[0] = '\0';
  nr_errors = nr_warnings = 0;
  pthread_mutex_unlock (&log_lock);
}

/* ---- fixture: a sim device, a superblock, a fake journal ---- */

struct fx {
  struct cdev *cd;
  struct nc_sb sb;
  struct bucket_set *bs;
  uint64_t open_seq;            /* atomic: the journal's open entry */
  unsigned flushes;
  bool flush_saw_lock_held;
  int flush_error;              /* returned by the next flush, once */
};

static uint64_t
fake_open_seq (void *opaque)
{
  struct fx *fx = opaque;

  return __atomic_load_n (&fx->open_seq, __ATOMIC_RELAXED);
}

static int
fake_flush (void *opaque)
{
  struct fx *fx = opaque;
  uint64_t durable;
  int r;

  if (pthread_mutex_trylock (&fx->bs->lock) != 0)
    fx->flush_saw_lock_held = true;
  else
    pthread_mutex_unlock (&fx->bs->lock);
  fx->flushes++;
  if ((r = fx->flush_error) != 0) {
    fx->flush_error = 0;
    return r;
  }
  durable = __atomic_fetch_add (&fx->open_seq, 1, __ATOMIC_RELAXED);
  bucket_journal_committed (fx->bs, durable);
  return 0;
}

static void
make_sb (struct nc_sb *sb, uint32_t nbuckets, uint64_t uuid_seed)
{
  unsigned i;

  memset (sb, 0, sizeof *sb);
  sb->magic = NC_SB_MAGIC;
  sb->version = NC_FORMAT_VERSION;
  sb->block_bytes = NC_BLOCK_BYTES;
  sb->seq = 1;
  for (i = 0; i < sizeof sb->uuid; i++)
    sb->uuid[i] = (uint8_t) ((uuid_seed >> (8 * (i % 8))) + i * 31);
  sb->bucket_blocks = BUCKET_BLOCKS;
  sb->nbuckets = nbuckets;
  sb->device_bytes = (uint64_t) nbuckets * BUCKET_BLOCKS * NC_BLOCK_BYTES;
  sb->journal_first = 1;
  sb->journal_buckets = 2;
  sb->prio_first = PRIO_FIRST;
  sb->prio_buckets = 1;
  sb->data_first = DATA_FIRST;
  sb->csum = nc_csum (sb, sizeof *sb);
}

static const struct bucket_hooks *
fx_hooks (struct fx *fx)
{
  static __thread struct bucket_hooks h;

  h.opaque = fx;
  h.journal_open_seq = fake_open_seq;
  h.journal_flush = fake_flush;
  return &h;
}

/* A bucket set over the device as recovery leaves it: prios read, marks
 * done (nothing reachable: every data bucket EMPTY).
 */
static void
fx_attach (struct fx *fx)
{
  assert_int_equal (bucket_set_create (fx->cd, &fx->sb, fx_hooks (fx),
                                       &fx->bs), 0);
  assert_int_equal (prio_read (fx->bs), 0);
  bucket_mark_begin (fx->bs);
  bucket_mark_done (fx->bs);
}

static void
fx_open (struct fx *fx)
{
  memset (fx, 0, sizeof *fx);
  fx->open_seq = 1;
  make_sb (&fx->sb, NBUCKETS, seed);
  assert_int_equal (cdev_sim_create ((uint64_t) NBUCKETS * BUCKET_BLOCKS *
                                     NC_BLOCK_BYTES, &fx->cd), 0);
  assert_int_equal (prio_format (fx->cd, &fx->sb), 0);
  assert_int_equal (cdev_sync (fx->cd), 0);
  fx_attach (fx);
  reset_log ();
}

static void
fx_detach (struct fx *fx)
{
  bucket_set_destroy (fx->bs);
  fx->bs = NULL;
}

static void
fx_close (struct fx *fx)
{
  fx_detach (fx);
  cdev_close (fx->cd);
}

static uint64_t
copy_offset (int copy)
{
  return (uint64_t) (PRIO_FIRST + copy) * BUCKET_BLOCKS * NC_BLOCK_BYTES;
}

static void
flip_byte (struct cdev *cd, uint64_t offset)
{
  uint8_t c;

  cdev_sim_peek (cd, offset, &c, 1);
  c ^= 0x40;
  cdev_sim_poke (cd, offset, &c, 1);
}

static struct nc_key
key_for (const struct bucket_extent *e, uint64_t end, uint8_t flags)
{
  struct nc_key k = {
    .end = end, .size = e->nblocks, .bucket = e->bucket, .offset = e->offset,
    .export_id = 1, .flags = flags, .gen = e->gen,
  };
  return k;
}

static struct bucket_usage
usage (struct bucket_set *bs)
{
  struct bucket_usage u;

  bucket_get_usage (bs, &u);
  return u;
}

static void
check_state_counts (struct bucket_set *bs)
{
  struct bucket_usage u = usage (bs);
  uint32_t n[BUCKET_BTREE + 1] = { 0 }, i;

  assert_int_equal (u.free + u.empty + u.pending + u.open + u.data + u.btree,
                    NDATA);
  for (i = DATA_FIRST; i < NBUCKETS; i++)
    n[bucket_state_of (bs, i)]++;
  assert_int_equal (n[BUCKET_META], 0);
  assert_int_equal (n[BUCKET_FREE], u.free);
  assert_int_equal (n[BUCKET_EMPTY], u.empty);
  assert_int_equal (n[BUCKET_PENDING], u.pending);
  assert_int_equal (n[BUCKET_OPEN], u.open);
  assert_int_equal (n[BUCKET_DATA], u.data);
  assert_int_equal (n[BUCKET_BTREE], u.btree);
  for (i = 0; i < DATA_FIRST; i++)
    assert_int_equal (bucket_state_of (bs, i), BUCKET_META);
}

/* Allocate a whole bucket from wp and store one key over it. */
static struct bucket_extent
fill_bucket (struct fx *fx, enum bucket_wp wp, uint8_t flags, uint64_t end)
{
  struct bucket_extent e;
  struct nc_key k;

  assert_int_equal (bucket_alloc_data (fx->bs, wp, BUCKET_BLOCKS, &e), 0);
  assert_int_equal (e.offset, 0);
  assert_int_equal (e.nblocks, BUCKET_BLOCKS);
  k = key_for (&e, end, flags);
  bucket_account (fx->bs, &k, +1);
  bucket_put_open (fx->bs, e.bucket);
  assert_int_equal (bucket_state_of (fx->bs, e.bucket), BUCKET_DATA);
  return e;
}

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
  assert_int_equal (nr_warnings, 0);  /* not worth a warning at open */
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
  assert_int_equal (nr_errors, 0);
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
  reset_log ();
  fx_attach (&fx);
  assert_int_equal (bucket_gen (fx.bs, 10), 11);
  assert_int_equal (fx.bs->prio_seq, 2);
  assert_int_equal (nr_errors, 0);
  assert_int_equal (nr_warnings, 1);
  assert_non_null (strstr (last_warning, "sim"));
  assert_non_null (strstr (last_warning, "copy A"));
  assert_non_null (strstr (last_warning, "bad checksum"));
  /* The next write replaces the bad copy. */
  assert_int_equal (prio_write (fx.bs), 0);
  assert_null (prio_check_copy (fx.cd, &fx.sb, 0, &seq));
  assert_int_equal (seq, 3);
  fx_detach (&fx);

  /* Corrupt the older (B, seq 2) header: A (seq 3) is used. */
  flip_byte (fx.cd, copy_offset (1) + 8);           /* the magic */
  reset_log ();
  fx_attach (&fx);
  assert_int_equal (fx.bs->prio_seq, 3);
  assert_int_equal (fx.bs->prio_copy, 0);
  assert_int_equal (bucket_gen (fx.bs, 10), 11);
  assert_int_equal (nr_warnings, 1);
  assert_non_null (strstr (last_warning, "copy B"));
  assert_non_null (strstr (last_warning, "bad magic"));
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
  reset_log ();
  assert_int_equal (prio_read (bs), -EBADMSG);
  assert_int_equal (nr_errors, 1);
  assert_non_null (strstr (last_error, "sim"));
  assert_non_null (strstr (last_error, "copy A: bad checksum"));
  assert_non_null (strstr (last_error, "copy B: bad checksum"));
  bucket_set_destroy (bs);

  /* Valid copies of another cache (different uuid) are refused. */
  make_sb (&other, NBUCKETS, seed + 1);
  assert_int_equal (prio_format (fx.cd, &fx.sb), 0);
  assert_string_equal (prio_check_copy (fx.cd, &other, 0, &seq),
                       "uuid differs from the superblock");
  assert_int_equal (bucket_set_create (fx.cd, &other, NULL, &bs), 0);
  reset_log ();
  assert_int_equal (prio_read (bs), -EBADMSG);
  assert_non_null (strstr (last_error, "uuid"));
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
  reset_log ();
  assert_int_equal (prio_read (bs), -EBADMSG);
  assert_non_null (strstr (last_error, "never written"));
  bucket_set_destroy (bs);

  /* A read error on the only valid copy is the error returned. */
  assert_int_equal (prio_format (fx.cd, &fx.sb), 0);
  cdev_sim_fail_read_once (fx.cd, copy_offset (0), NC_BLOCK_BYTES);
  assert_int_equal (bucket_set_create (fx.cd, &fx.sb, NULL, &bs), 0);
  reset_log ();
  assert_int_equal (prio_read (bs), -EIO);
  assert_non_null (strstr (last_error, "copy A: read error"));
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
  reset_log ();
  assert_int_equal (bucket_alloc_data (fx.bs, WP_CLEAN, 1, &e), -EIO);
  assert_true (nr_errors >= 1);
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

  /* A put too many is complained about, not fatal. */
  reset_log ();
  bucket_put_open (fx.bs, c1.bucket);
  assert_int_equal (nr_errors, 1);
  check_state_counts (fx.bs);
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

  /* Underflow: logged once, clamped. */
  assert_int_equal (nr_errors, 0);
  e = (struct bucket_extent) { 0 };
  fill_bucket (&fx, WP_CLEAN, 0, 300);
  assert_int_equal (bucket_alloc_data (fx.bs, WP_DIRTY, 2, &e), 0);
  kd = key_for (&e, 400, NC_KEY_DIRTY);
  bucket_account (fx.bs, &kd, +1);
  kd.size = 5;
  bucket_account (fx.bs, &kd, -1);
  bucket_account (fx.bs, &kd, -1);
  assert_int_equal (nr_errors, 1);
  assert_non_null (strstr (last_error, "below zero"));
  u = usage (fx.bs);
  assert_int_equal (u.live_blocks, BUCKET_BLOCKS);  /* the clean bucket */
  assert_int_equal (u.dirty_blocks, 0);
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
  /* A data key into a node bucket is a bug elsewhere: ignored. */
  k.bucket = b;
  bucket_account (fx.bs, &k, +1);
  assert_int_equal (nr_errors, 1);
  assert_int_equal (usage (fx.bs).live_blocks, 0);

  bucket_free_node (fx.bs, b, 5);
  assert_int_equal (bucket_state_of (fx.bs, b), BUCKET_PENDING);
  bucket_journal_committed (fx.bs, 4);
  assert_int_equal (bucket_state_of (fx.bs, b), BUCKET_PENDING);
  bucket_journal_committed (fx.bs, 5);
  assert_int_equal (bucket_state_of (fx.bs, b), BUCKET_EMPTY);
  /* freeing it twice is complained about */
  reset_log ();
  bucket_free_node (fx.bs, b, 6);
  assert_int_equal (nr_errors, 1);
  assert_int_equal (bucket_state_of (fx.bs, b), BUCKET_EMPTY);
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
  assert_int_equal (nr_errors, 0);

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
  assert_int_equal (nr_errors, 0);
  fx_close (&fx);
  free (all);
  free (w);
}

int
main (void)
{
  const char *env = getenv ("NBDCACHE_SEED");
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_bucket_prio_roundtrip),
    cmocka_unit_test (test_bucket_prio_one_copy_corrupt),
    cmocka_unit_test (test_bucket_prio_both_corrupt),
    cmocka_unit_test (test_bucket_gen_durable_before_handout),
    cmocka_unit_test (test_bucket_write_points),
    cmocka_unit_test (test_bucket_accounting),
    cmocka_unit_test (test_bucket_nodes),
    cmocka_unit_test (test_bucket_pending_needs_flush),
    cmocka_unit_test (test_bucket_evict_lowest_clean),
    cmocka_unit_test (test_bucket_node_evicts_clean),
    cmocka_unit_test (test_bucket_gen_distance),
    cmocka_unit_test (test_bucket_marks),
    cmocka_unit_test (test_bucket_hit_and_decay),
    cmocka_unit_test (test_bucket_model),
    cmocka_unit_test (test_bucket_threads),
  };

  seed = env != NULL ? strtoull (env, NULL, 0) : (uint64_t) time (NULL);
  fprintf (stderr, "test-bucket: NBDCACHE_SEED=%" PRIu64 "\n", seed);
  log_set_sink (capture_log);
  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
