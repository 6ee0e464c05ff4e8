/* SPDX-License-Identifier: BSD-3-Clause */
/* test-datacsum.c — unit tests for data checksums (datacsum.c and what
 * the cache data door, reads, writeback and moving GC do with them).
 *
 * WHAT: a flipped byte in a clean cached block is served from the backing
 * store, counted once, and the key dropped; in a dirty block the read
 * fails with EIO (whole and partial reads of it; its neighbours read
 * right), writeback refuses it (drain fails, the backing store never gets
 * it, it stays dirty and counted) while writing back the rest; moving GC
 * carries the checksum so the moved block is still detected; checksums
 * survive a reopen (the region pages were written) and unaligned,
 * partial-block writes verify; a cache formatted without the feature
 * works, without checksums (stats say so); the checksum of a block
 * depends on where it is (misplaced data does not verify); a partial
 * write patches a block just written from REDO's stash, not from its
 * damaged device copy, while client reads still see the damage.
 * HOW: the fixture of test-dev-fx.h (a real cache device on a simulated
 * cdev, one writeback export, writeback off), a short journal delay; the
 * cached block is found through the index and damaged with
 * cdev_sim_poke.
 * SEED: the data patterns derive from NBDCACHE_SEED (printed).
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

#include <cmocka.h>

#include "backing.h"
#include "bkey.h"
#include "btree.h"
#include "cache-data.h"
#include "cache-internal.h"
#include "cache.h"
#include "cdev.h"
#include "datacsum.h"
#include "format.h"
#include "gc.h"
#include "log.h"
#include "testkit.h"
#include "test-dev-fx.h"

uint64_t seed;

/* Flip one bit of the cached copy of export block `block`. */
static uint64_t
flip (struct ctx *c, uint64_t block, uint32_t byte)
{
  uint64_t off = where (c, block, NULL) + byte;
  unsigned char v;

  cdev_sim_peek (c->cd, off, &v, 1);
  v ^= 0x10;
  cdev_sim_poke (c->cd, off, &v, 1);
  return off;
}

/* ---- clean ---- */

static void
test_datacsum_clean_from_backing (void **state)
{
  struct ctx c;
  struct nc_key k;

  ctx_open (&c, "dc", 5, 0);
  write_pattern (&c, 0, 64 * BLK, 1, 0);
  assert_int_equal (ncache_drain (c.nc, NULL, NULL), 0);
  assert_int_equal (dstats (&c).dirty_bytes, 0);
  (void) where (&c, 5, &k);
  assert_false (bkey_is_dirty (&k));
  flip (&c, 5, 100);

  /* Served right (from the backing store), counted, logged once. */
  test_log_clear ();
  check_range (&c, 0, 64 * BLK);
  assert_int_equal (dstats (&c).corrupt_clean_blocks, 1);
  assert_int_equal (dstats (&c).corrupt_dirty_blocks, 0);
  assert_int_equal (test_log_errors (), 1);
  assert_non_null (strstr (test_log_last_error (), "data checksum"));

  /* The key was dropped: the block misses, is promoted afresh, and
   * nothing is counted again.
   */
  check_range (&c, 5 * BLK, 6 * BLK);
  check_range (&c, 0, 64 * BLK);
  assert_int_equal (dstats (&c).corrupt_clean_blocks, 1);
  assert_int_equal (test_log_errors (), 1);
  /* A partial read of a damaged clean block: from the backing too. */
  flip (&c, 9, 4000);
  check_range (&c, 9 * BLK + 17, 9 * BLK + 300);
  assert_int_equal (dstats (&c).corrupt_clean_blocks, 2);
  check_range (&c, 0, 64 * BLK);
  ctx_close (&c);
}

/* ---- dirty ---- */

static void
test_datacsum_dirty_eio (void **state)
{
  struct ctx c;
  unsigned char *back = malloc (EXPORT_BYTES);

  assert_non_null (back);
  ctx_open (&c, "dc", 5, 0);
  write_pattern (&c, 0, 32 * BLK, 2, 0);
  flip (&c, 7, 0);

  test_log_clear ();
  assert_int_equal (ncache_pread (c.nc, c.buf, 32 * BLK, 0, 0), -EIO);
  assert_int_equal (ncache_pread (c.nc, c.buf, 100, 7 * BLK + 50, 0), -EIO);
  assert_true (dstats (&c).corrupt_dirty_blocks >= 2);
  assert_int_equal (dstats (&c).corrupt_clean_blocks, 0);
  assert_int_equal (test_log_errors (), 1);    /* once per bucket */
  /* The neighbours read right. */
  check_range (&c, 0, 7 * BLK);
  check_range (&c, 8 * BLK, 32 * BLK);
  check_range (&c, 6 * BLK + 5, 7 * BLK);

  /* Writeback refuses it and writes the rest back. */
  assert_int_equal (ncache_drain (c.nc, NULL, NULL), -EIO);
  assert_int_equal (backing_pread (c.b, back, 32 * BLK, 0), 0);
  assert_memory_equal (back, c.model, 7 * BLK);
  assert_memory_equal (back + 8 * BLK, c.model + 8 * BLK, 24 * BLK);
  {
    static const unsigned char zero[BLK];

    assert_memory_equal (back + 7 * BLK, zero, BLK);
  }
  assert_int_equal (dstats (&c).dirty_bytes, BLK);
  assert_int_equal (ncache_pread (c.nc, c.buf, BLK, 7 * BLK, 0), -EIO);

  /* Overwriting the block heals it. */
  write_pattern (&c, 7 * BLK, BLK, 3, 0);
  check_range (&c, 0, 32 * BLK);
  assert_int_equal (ncache_drain (c.nc, NULL, NULL), 0);
  assert_int_equal (dstats (&c).dirty_bytes, 0);
  free (back);
  ctx_close (&c);
}

/* ---- moving GC ---- */

static void
test_datacsum_gc_moves_checksum (void **state)
{
  struct ctx c;
  struct gc *g;
  uint64_t before, after;
  unsigned i;

  ctx_open (&c, "dc", 5, 0);
  /* 16 fragmented buckets: each keeps 4 live dirty blocks. */
  for (i = 0; i < 16; i++)
    write_pattern (&c, (uint64_t) i * BUCKET_BYTES, BUCKET_BYTES, 1, 0);
  for (i = 0; i < 16; i++)
    write_pattern (&c, (uint64_t) i * BUCKET_BYTES, BUCKET_BYTES * 3 / 4, 2,
                   0);
  assert_int_equal (ncache_flush (c.nc, 0), 0);
  /* A live block of the first bucket damaged, another left alone. */
  before = flip (&c, 13, 2048);
  pthread_mutex_lock (&c.dev->gc_ptr_lock);
  g = c.dev->gc;
  pthread_mutex_unlock (&c.dev->gc_ptr_lock);
  assert_int_equal (gc_run_once (g, true), 0);
  after = where (&c, 13, NULL) + 2048;
  assert_true (after != before);                /* it moved */
  assert_int_equal (ncache_pread (c.nc, c.buf, BLK, 13 * BLK, 0), -EIO);
  check_range (&c, 12 * BLK, 13 * BLK);
  check_range (&c, 14 * BLK, 16 * BLK);
  check_range (&c, BUCKET_BYTES, EXPORT_BYTES / 4);
  assert_true (dstats (&c).corrupt_dirty_blocks >= 1);
  ctx_close (&c);
}

/* ---- on the device ---- */

static void
test_datacsum_reopen (void **state)
{
  struct ctx c;
  unsigned char odd[1000];
  size_t i;

  ctx_open (&c, "dc", 5, 0);
  write_pattern (&c, 0, 40 * BLK, 4, 0);
  /* An unaligned, partial-block write (read-modify-write). */
  for (i = 0; i < sizeof odd; i++)
    c.model[3 * BLK + 77 + i] = odd[i] = (unsigned char) (i * 13 + seed);
  assert_int_equal (ncache_pwrite (c.nc, odd, sizeof odd, 3 * BLK + 77, 0),
                    0);
  assert_int_equal (ncache_flush (c.nc, 0), 0);
  assert_true (dstats (&c).checksum_page_writes >= 1);
  assert_int_equal (dstats (&c).data_checksums, 1);
  ctx_detach (&c);
  ctx_attach (&c, false);
  /* The checksums came back from the region: everything verifies. */
  check_range (&c, 0, 40 * BLK);
  assert_int_equal (dstats (&c).corrupt_dirty_blocks, 0);
  flip (&c, 3, 3);
  assert_int_equal (ncache_pread (c.nc, c.buf, BLK, 3 * BLK, 0), -EIO);
  ctx_close (&c);
}

static void
test_datacsum_without_feature (void **state)
{
  struct ctx c;

  ctx_open (&c, "dc", 5, CTX_NO_CHECKSUMS);
  assert_int_equal (c.dev->sb.features & NC_FEATURE_DATA_CSUM, 0);
  write_pattern (&c, 0, 16 * BLK, 5, 0);
  check_range (&c, 0, 16 * BLK);
  assert_int_equal (dstats (&c).data_checksums, 0);
  assert_int_equal (dstats (&c).checksum_page_writes, 0);
  /* Without checksums a flip goes unseen (what the feature is for). */
  flip (&c, 2, 9);
  assert_int_equal (ncache_pread (c.nc, c.buf, 16 * BLK, 0, 0), 0);
  assert_memory_not_equal (c.buf, c.model, 16 * BLK);
  ctx_close (&c);
}

static void
test_datacsum_word (void **state)
{
  unsigned char blk[BLK];
  uint32_t w;

  memset (blk, 0xab, sizeof blk);
  w = datacsum_of (blk, 1000);
  assert_int_not_equal (w, datacsum_of (blk, 1001));    /* misplaced */
  assert_int_equal (datacsum_move (w, 1000, 1001), datacsum_of (blk, 1001));
  blk[4095] ^= 1;
  assert_int_not_equal (w, datacsum_of (blk, 1000));
}

/* A write of part of a block takes the block it patches from REDO's
 * stash when that block was just written (journal-stash.c): a device
 * copy damaged after the write is not read (without the stash the write
 * would fail with EIO, the dirty block being corrupt).  A client read
 * never uses the stash: it still sees the damage.  A key of another gen
 * gets nothing from it.
 */
static void
test_datacsum_rmw_from_stash (void **state)
{
  struct ctx c;
  struct nc_key k;
  unsigned char *b = cdev_alloc_buffer (BLK);

  assert_non_null (b);
  ctx_open (&c, "dc", 5, 0);
  write_pattern (&c, 5 * BLK, BLK, 4, 0);
  flip (&c, 5, 300);
  write_pattern (&c, 5 * BLK + 200, 100, 5, 0);
  check_range (&c, 5 * BLK, 6 * BLK);

  write_pattern (&c, 9 * BLK, BLK, 6, 0);
  flip (&c, 9, 10);
  test_log_clear ();
  assert_int_equal (ncache_pread (c.nc, c.buf, BLK, 9 * BLK, 0), -EIO);

  write_pattern (&c, 11 * BLK, BLK, 7, 0);
  where (&c, 11, &k);
  assert_int_equal (cache_data_read_stashed (c.dev, &k, 0, b, BLK), 0);
  assert_memory_equal (b, c.model + 11 * BLK, BLK);
  k.gen++;
  assert_int_equal (cache_data_read_stashed (c.dev, &k, 0, b, BLK), -ESTALE);
  free (b);
  ctx_close (&c);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_datacsum_word),
    cmocka_unit_test (test_datacsum_clean_from_backing),
    cmocka_unit_test (test_datacsum_dirty_eio),
    cmocka_unit_test (test_datacsum_gc_moves_checksum),
    cmocka_unit_test (test_datacsum_reopen),
    cmocka_unit_test (test_datacsum_without_feature),
    cmocka_unit_test (test_datacsum_rmw_from_stash),
  };

  seed = test_seed_from_env ("test-datacsum");
  test_log_capture ();
  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
