/* SPDX-License-Identifier: BSD-3-Clause */
/* test-redo.c — a FLUSH or FUA commit of little data costs one cache
 * device sync, and recovery writes the newest write's data back from its
 * journal entries (journal.c REDO, assemble.c).
 *
 * WHAT: a 4 KiB write then FLUSH, a 4 KiB FUA write and a 1 KiB FUA write
 * each cost one sync (data checksums on); a write larger than the inline
 * limit costs two.  After a crash where the newest write's data and its
 * checksum page never reached the device, the data is back (redone) and
 * reads verify; the same for each of the 8 subsets of the newest FUA
 * write's data, page and entry that a crash before its one sync may keep
 * (journal-write.c CRASH POINTS): never refused, nothing acknowledged
 * lost, no checksum failure.  A block the newest write's entry carries but the index
 * no longer maps there (overwritten in the same commit) is left alone;
 * so is one whose bucket's gen moved on durably (an eviction) and whose
 * next life wrote there.
 * Rot: a block of an acknowledged, synced write damaged afterwards is
 * never silently lost: if that write is the newest, recovery rewrites it
 * from the entry; if it is older, reads of it fail with EIO, its
 * neighbours and every other write read right, and nothing is dropped.
 * HOW: the fixture of test-dev-fx.h (a real cache device on a simulated
 * cdev, one writeback export, writeback off: dirty data lives only in the
 * cache) with a long journal delay, so only FLUSH and FUA commit.  A
 * crash (ctx_crash): the device dies at its next write, the engine
 * closes, unsynced writes are lost (cdev_sim_crash), reopen.
 * Damage: cdev_sim_poke.
 * SEED: the data patterns derive from NBDCACHE_SEED (printed).
 */
#include <config.h>

/* The moved-bucket test bumps a gen as an eviction does. */
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

#include <cmocka.h>

#include "backing.h"
#include "bkey.h"
#include "btree.h"
#include "bucket.h"
#include "cache-data.h"
#include "cache-internal.h"
#include "cache.h"
#include "cdev.h"
#include "journal.h"
#include "log.h"
#include "testkit.h"
#include "test-dev-fx.h"

uint64_t seed;

#define DELAY_MS 600000         /* only FLUSH and FUA commit */

static void
ctx_open_redo (struct ctx *c)
{
  ctx_open (c, "rd", DELAY_MS, 0);
}

/* Power loss and reopen. */
static void
crash_reopen (struct ctx *c)
{
  ctx_crash (c);
  ctx_attach (c, false);
}

static void
scribble (struct ctx *c, uint64_t dev_off)
{
  unsigned char junk[BLK];

  memset (junk, 0xee, sizeof junk);
  cdev_sim_poke (c->cd, dev_off, junk, sizeof junk);
}

/* The data checksum region, as the device holds it now. */
static uint64_t
region_off (struct ctx *c)
{
  return (uint64_t) c->dev->sb.csum_first * c->dev->sb.bucket_blocks * BLK;
}

static size_t
region_bytes (struct ctx *c)
{
  return (size_t) c->dev->sb.csum_buckets * c->dev->sb.bucket_blocks * BLK;
}

static void
test_redo_one_sync (void **state)
{
  struct ctx c;
  uint64_t s;

  ctx_open_redo (&c);
  /* Warm up: the first commits may fill the ring (a sync of their own). */
  write_pattern (&c, 0, BLK, 1, 0);
  assert_int_equal (ncache_flush (c.nc, 0), 0);
  write_pattern (&c, 64 * BLK, BLK, 1, NCACHE_FUA);

  write_pattern (&c, 8 * BLK, BLK, 2, 0);
  s = cdev_sim_nr_syncs (c.cd);
  assert_int_equal (ncache_flush (c.nc, 0), 0);
  assert_int_equal (cdev_sim_nr_syncs (c.cd) - s, 1);

  s = cdev_sim_nr_syncs (c.cd);
  write_pattern (&c, 16 * BLK, BLK, 3, NCACHE_FUA);
  assert_int_equal (cdev_sim_nr_syncs (c.cd) - s, 1);

  s = cdev_sim_nr_syncs (c.cd);
  write_pattern (&c, 24 * BLK + 1024, 1024, 4, NCACHE_FUA);
  assert_int_equal (cdev_sim_nr_syncs (c.cd) - s, 1);

  /* More than the inline limit: the pre-flush comes back. */
  write_pattern (&c, 128 * BLK, (JOURNAL_INLINE_MAX_BLOCKS + 1) * BLK, 5, 0);
  s = cdev_sim_nr_syncs (c.cd);
  assert_int_equal (ncache_flush (c.nc, 0), 0);
  assert_true (cdev_sim_nr_syncs (c.cd) - s >= 2);

  crash_reopen (&c);
  check_range (&c, 0, 256 * BLK);
  ctx_close (&c);
}

/* The newest write's data and its checksum page never reached the
 * device (only the entry did): recovery writes both back.
 */
static void
test_redo_lost_data_redone (void **state)
{
  struct ctx c;
  unsigned char *region;
  uint64_t off;

  ctx_open_redo (&c);
  write_pattern (&c, 0, 4 * BLK, 1, 0);
  assert_int_equal (ncache_flush (c.nc, 0), 0);
  region = malloc (region_bytes (&c));
  assert_non_null (region);
  cdev_sim_peek (c.cd, region_off (&c), region, region_bytes (&c));
  write_pattern (&c, 32 * BLK, BLK, 2, NCACHE_FUA);
  off = where (&c, 32, NULL);
  /* As if the data and region page writes were still in flight. */
  scribble (&c, off);
  cdev_sim_poke (c.cd, region_off (&c), region, region_bytes (&c));
  free (region);
  crash_reopen (&c);
  check_range (&c, 0, 64 * BLK);
  assert_int_equal (dstats (&c).corrupt_dirty_blocks, 0);
  assert_int_equal (dstats (&c).dirty_bytes, 5 * BLK);
  ctx_close (&c);
}

/* What the device holds at byte off: the data block of the newest
 * write, a data checksum page, a journal ring block, or anything else.
 */
enum part { PART_DATA = 1, PART_PAGE = 2, PART_ENTRY = 4, PART_OTHER = 8 };

static enum part
part_of (struct ctx *c, uint64_t off, uint64_t data_off)
{
  const uint64_t bb = (uint64_t) c->dev->sb.bucket_blocks * BLK;
  const uint64_t ring = (uint64_t) c->dev->sb.journal_first * bb;

  if (off == data_off)
    return PART_DATA;
  if (off >= region_off (c) && off < region_off (c) + region_bytes (c))
    return PART_PAGE;
  if (off >= ring && off < ring + (uint64_t) c->dev->sb.journal_buckets * bb)
    return PART_ENTRY;
  return PART_OTHER;
}

/* The crash points of one small FUA write (journal.c REDO,
 * journal-write.c OVERLAP): its data block, its checksum page and its
 * journal entry are written with no sync between them (the page and the
 * entry even at once), so a power loss before the final sync may keep
 * any subset of the three.  For each of the 8: the device opens (never
 * refused), every earlier acknowledged write reads back, nothing fails
 * its checksum, and the write itself reads back whole if its entry was
 * kept, else the old data reads (it was never acknowledged).  The write
 * runs whole (acknowledged, synced); then the parts outside the subset
 * get their bytes from before it back, as if those writes had never
 * reached the device.
 */
static void
test_redo_crash_subsets (void **state)
{
  const size_t dev_bytes = DEVICE_BYTES;
  unsigned char *before, *now, old_model[BLK];
  unsigned keep, seen;
  uint64_t off, data_off;
  struct ctx c;

  before = malloc (dev_bytes);
  now = malloc (dev_bytes);
  assert_non_null (before);
  assert_non_null (now);
  for (keep = 0; keep < 8; keep++) {
    ctx_open_redo (&c);
    /* Warm up (ring fill), and earlier acknowledged writes to keep. */
    write_pattern (&c, 0, 4 * BLK, 1, 0);
    assert_int_equal (ncache_flush (c.nc, 0), 0);
    write_pattern (&c, 8 * BLK, BLK, 2, NCACHE_FUA);
    cdev_sim_peek (c.cd, 0, before, dev_bytes);
    memcpy (old_model, c.model + 32 * BLK, BLK);
    write_pattern (&c, 32 * BLK, BLK, 3, NCACHE_FUA);
    data_off = where (&c, 32, NULL);
    cdev_sim_peek (c.cd, 0, now, dev_bytes);
    seen = 0;
    for (off = 0; off < dev_bytes; off += BLK) {
      enum part pt;

      if (memcmp (before + off, now + off, BLK) == 0)
        continue;
      pt = part_of (&c, off, data_off);
      seen |= pt;
      if (pt != PART_OTHER && !(keep & pt))
        cdev_sim_poke (c.cd, off, before + off, BLK);
    }
    /* The write touched exactly its data, one page and its entry. */
    assert_int_equal (seen, PART_DATA | PART_PAGE | PART_ENTRY);
    if (!(keep & PART_ENTRY))
      memcpy (c.model + 32 * BLK, old_model, BLK);
    crash_reopen (&c);
    check_range (&c, 0, 64 * BLK);
    assert_int_equal (dstats (&c).corrupt_dirty_blocks, 0);
    assert_int_equal (dstats (&c).corrupt_clean_blocks, 0);
    ctx_close (&c);
  }
  free (before);
  free (now);
}

/* Two writes of one block in one commit: the first key's blocks are dead
 * (the index maps the block to the second), so recovery leaves them.
 */
static void
test_redo_skips_dead_blocks (void **state)
{
  struct ctx c;
  unsigned char got[BLK], junk[BLK];
  uint64_t first;

  ctx_open_redo (&c);
  write_pattern (&c, 0, BLK, 1, 0);
  assert_int_equal (ncache_flush (c.nc, 0), 0);
  write_pattern (&c, 40 * BLK, BLK, 2, 0);
  first = where (&c, 40, NULL);
  write_pattern (&c, 40 * BLK, BLK, 3, 0);
  assert_true (where (&c, 40, NULL) != first);
  assert_int_equal (ncache_flush (c.nc, 0), 0);
  scribble (&c, first);
  crash_reopen (&c);
  check_range (&c, 0, 64 * BLK);
  memset (junk, 0xee, sizeof junk);
  cdev_sim_peek (c.cd, first, got, sizeof got);
  assert_memory_equal (got, junk, sizeof got);
  ctx_close (&c);
}

/* The bucket of a key the newest write carries moved on durably (an
 * eviction's gen bump, its prios written) and its next life wrote where
 * the key's data was: replay drops the key as stale and redo leaves that
 * block alone (journal.c REDO: only where the index still maps the key's
 * bucket, offset and gen, the bucket at that gen).
 */
static void
test_redo_skips_moved_bucket (void **state)
{
  struct ctx c;
  struct nc_key k;
  struct bucket *b;
  unsigned char got[BLK], life[BLK];
  uint64_t off, s;

  ctx_open_redo (&c);
  /* Writethrough: clean keys, which an eviction may invalidate (dirty
   * data is never evicted: a DIRTY key with a moved gen is refused).
   */
  c.mode = NCACHE_MODE_WRITETHROUGH;
  ctx_detach (&c);
  ctx_attach (&c, false);
  write_pattern (&c, 0, BLK, 1, 0);
  assert_int_equal (ncache_flush (c.nc, 0), 0);
  s = cdev_sim_nr_syncs (c.cd);
  write_pattern (&c, 48 * BLK, BLK, 2, NCACHE_FUA);
  assert_int_equal (cdev_sim_nr_syncs (c.cd) - s, 1);   /* carried */
  off = where (&c, 48, &k);
  assert_false (k.flags & NC_KEY_DIRTY);
  /* The eviction: gen + 1, durable; then the bucket's next life. */
  b = &c.dev->bs->b[k.bucket];
  pthread_mutex_lock (&c.dev->bs->lock);
  __atomic_store_n (&b->gen, (uint8_t) (k.gen + 1), __ATOMIC_RELEASE);
  pthread_mutex_unlock (&c.dev->bs->lock);
  assert_int_equal (prio_write (c.dev->bs), 0);
  memset (life, 0x5a, sizeof life);
  cdev_sim_poke (c.cd, off, life, sizeof life);
  crash_reopen (&c);

  assert_int_equal (bucket_gen (c.dev->bs, k.bucket), (uint8_t) (k.gen + 1));
  cdev_sim_peek (c.cd, off, got, sizeof got);
  assert_memory_equal (got, life, sizeof got);
  /* The evicted block reads from the backing store, like the rest. */
  check_range (&c, 0, 64 * BLK);
  ctx_close (&c);
}

/* Rot: acknowledged, synced, then damaged.  Never silently lost. */
static void
test_redo_rot (void **state)
{
  struct ctx c;
  uint64_t older, newest, dirty;

  ctx_open_redo (&c);
  write_pattern (&c, 0, 8 * BLK, 1, 0);
  assert_int_equal (ncache_flush (c.nc, 0), 0);
  write_pattern (&c, 16 * BLK, 2 * BLK, 2, NCACHE_FUA);
  older = where (&c, 3, NULL);
  newest = where (&c, 17, NULL);
  dirty = dstats (&c).dirty_bytes;
  scribble (&c, older);
  scribble (&c, newest);
  crash_reopen (&c);
  /* Nothing dropped. */
  assert_int_equal (dstats (&c).dirty_bytes, dirty);
  /* The older write's damaged block: a loud EIO; its neighbours fine. */
  assert_int_equal (ncache_pread (c.nc, c.buf, BLK, 3 * BLK, 0), -EIO);
  check_range (&c, 0, 3 * BLK);
  check_range (&c, 4 * BLK, 8 * BLK);
  /* The newest write's block: rewritten from its entry. */
  check_range (&c, 16 * BLK, 18 * BLK);
  assert_true (dstats (&c).corrupt_dirty_blocks >= 1);
  ctx_close (&c);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_redo_one_sync),
    cmocka_unit_test (test_redo_lost_data_redone),
    cmocka_unit_test (test_redo_crash_subsets),
    cmocka_unit_test (test_redo_skips_dead_blocks),
    cmocka_unit_test (test_redo_skips_moved_bucket),
    cmocka_unit_test (test_redo_rot),
  };

  seed = test_seed_from_env ("test-redo");
  test_log_capture ();
  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
