/* SPDX-License-Identifier: BSD-3-Clause */
/* test-format.c — unit tests for formatting a cache device (format.c).
 *
 * WHAT: format then read; a random uuid; the geometry (bucket, journal
 * and prio sizes up to terabyte devices); the refusals (tiny device, bad
 * bucket and journal sizes); crash-safety (a crash at every write never
 * leaves an old or half-made superblock that reads as valid) and the old
 * journal and prio contents wiped.
 * HOW: the simulated cache device (cdev-sim.c) loses unsynced writes on a
 * crash; the "big" device of test-super-fx.c keeps only blocks 0-1 and
 * drops every other write, for geometry on terabyte devices.
 * prio_format and journal_format are stubs (test-super-fx.c; prio.c and
 * journal.c have their own tests): each writes one recognisable block
 * and records whether the old superblocks were already gone.
 * SEED: the crash tests are randomised; NBDCACHE_SEED overrides the seed,
 * which is always printed.
 * THREADS AND LOCKS: single-threaded.  FAILURE: cmocka assertions.
 * NOT HERE: reading the superblock (test-super.c), super_write
 * (test-super-write.c).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "bucket.h"
#include "cdev.h"
#include "csum.h"
#include "format.h"
#include "journal.h"
#include "log.h"
#include "testkit.h"
#include "ondisk.h"
#include "super.h"
#include "test-super-fx.h"

static uint64_t seed;

/* ---- format and read ---- */

static void
test_super_format_then_read (void **state)
{
  struct cdev *cd = sim (DEV_BYTES);
  struct nc_format_options o = { .uuid = uuid_a, .quiet = true };
  struct nc_sb sb, copy;
  int slot = -1;
  time_t now = time (NULL);

  memset (&stubs, 0, sizeof stubs);
  assert_int_equal (nc_format (cd, &o), 0);
  assert_int_equal (stubs.prio, 1);
  assert_int_equal (stubs.journal, 1);
  /* The old superblocks were gone (and synced) before anything else. */
  assert_true (stubs.sb_gone_at_prio);
  assert_true (stubs.sb_gone_at_journal);

  assert_int_equal (super_read (cd, &sb, &slot), 0);
  assert_int_equal (slot, 0);
  assert_int_equal (sb.seq, 2);
  assert_int_equal (sb.magic, NC_SB_MAGIC);
  assert_int_equal (sb.version, NC_FORMAT_VERSION);
  assert_int_equal (sb.block_bytes, NC_BLOCK_BYTES);
  assert_memory_equal (sb.uuid, uuid_a, 16);
  assert_int_equal (sb.device_bytes, DEV_BYTES);
  assert_true (sb.created_unix + 5 >= (uint64_t) now &&
               sb.created_unix <= (uint64_t) now + 5);
  /* 64 MiB, 1 MiB buckets: journal max(2 MiB, 4 buckets) = 4 buckets. */
  assert_int_equal (sb.bucket_blocks, NC_BUCKET_BLOCKS_DEFAULT);
  assert_int_equal (sb.nbuckets, 64);
  assert_int_equal (sb.journal_first, 1);
  assert_int_equal (sb.journal_buckets, 4);
  assert_int_equal (sb.prio_first, 5);
  assert_int_equal (sb.prio_buckets, 1);
  /* The data checksum region: 64 buckets * 256 blocks * 4 bytes. */
  assert_int_equal (sb.features,
                    NC_FEATURE_DATA_CSUM | NC_FEATURE_TABLE_CSUM);
  assert_int_equal (sb.csum_first, 7);
  assert_int_equal (sb.csum_buckets, 1);
  assert_int_equal (sb.data_first, 8);
  assert_int_equal (sb.nr_exports, 0);

  /* Both copies valid: seq 2 in slot 0, seq 1 in slot 1, same content. */
  read_slot (cd, 1, &copy);
  assert_null (super_validate (&copy, DEV_BYTES));
  assert_int_equal (copy.seq, 1);
  copy.seq = 2;
  super_set_csum (&copy);
  assert_memory_equal (&copy, &sb, sizeof sb);

  /* prio and journal contents were made durable before the superblock. */
  cdev_sim_crash (cd, 0);
  assert_true (has_mark (cd, &sb, sb.prio_first, PRIO_MARK));
  assert_true (has_mark (cd, &sb, sb.journal_first, JOURNAL_MARK));
  assert_int_equal (super_read (cd, &sb, &slot), 0);
  cdev_close (cd);
}

static void
test_super_format_random_uuid (void **state)
{
  struct cdev *c1 = sim (DEV_BYTES), *c2 = sim (DEV_BYTES);
  struct nc_format_options o = { .quiet = true };
  struct nc_sb s1, s2;
  static const uint8_t zero[16];

  assert_int_equal (nc_format (c1, &o), 0);
  assert_int_equal (nc_format (c2, &o), 0);
  assert_int_equal (super_read (c1, &s1, NULL), 0);
  assert_int_equal (super_read (c2, &s2, NULL), 0);
  assert_memory_not_equal (s1.uuid, s2.uuid, 16);
  assert_memory_not_equal (s1.uuid, zero, 16);
  cdev_close (c1);
  cdev_close (c2);
}

static void
test_super_format_geometry (void **state)
{
  struct cdev *cd;
  struct nc_format_options o = { .quiet = true, .uuid = uuid_a };
  struct nc_sb sb;

  /* 1 TiB, 1 MiB buckets: journal capped at 128 MiB; prio copy
   * 64 + 1 Mi * 4 bytes = 5 buckets; data checksums 1 GiB = 1024.
   */
  cd = big_create (UINT64_C (1) << 40);
  assert_int_equal (nc_format (cd, &o), 0);
  assert_int_equal (super_read (cd, &sb, NULL), 0);
  assert_int_equal (sb.nbuckets, 1u << 20);
  assert_int_equal (sb.journal_buckets, 128);
  assert_int_equal (sb.prio_buckets, 5);
  assert_int_equal (sb.prio_first, 129);
  assert_int_equal (sb.csum_buckets, 1024);
  assert_int_equal (sb.data_first, 139 + 1024);
  cdev_close (cd);

  /* 64 MiB, 64 KiB buckets: journal 1/32 = 2 MiB = 32 buckets. */
  cd = sim (DEV_BYTES);
  o.bucket_bytes = 64 * KIB;
  assert_int_equal (nc_format (cd, &o), 0);
  assert_int_equal (super_read (cd, &sb, NULL), 0);
  assert_int_equal (sb.bucket_blocks, 16);
  assert_int_equal (sb.nbuckets, 1024);
  assert_int_equal (sb.journal_buckets, 32);
  assert_int_equal (sb.prio_buckets, 1);
  assert_int_equal (sb.data_first, 36);

  /* An explicit journal size is rounded up to whole buckets. */
  o.bucket_bytes = 0;
  o.journal_bytes = 4 * MIB + 512 * KIB;
  assert_int_equal (nc_format (cd, &o), 0);
  assert_int_equal (super_read (cd, &sb, NULL), 0);
  assert_int_equal (sb.journal_buckets, 5);
  assert_int_equal (sb.data_first, 9);

  /* A device that is not a whole number of buckets: the tail is unused. */
  cdev_close (cd);
  cd = sim (DEV_BYTES + 12 * NC_BLOCK_BYTES);
  o.journal_bytes = 0;
  assert_int_equal (nc_format (cd, &o), 0);
  assert_int_equal (super_read (cd, &sb, NULL), 0);
  assert_int_equal (sb.nbuckets, 64);
  assert_int_equal (sb.device_bytes, DEV_BYTES + 12 * NC_BLOCK_BYTES);
  cdev_close (cd);

  /* 64 MiB buckets on 16 GiB: the 4-bucket minimum beats 128 MiB. */
  cd = big_create (UINT64_C (16) << 30);
  o.bucket_bytes = 64 * MIB;
  assert_int_equal (nc_format (cd, &o), 0);
  assert_int_equal (super_read (cd, &sb, NULL), 0);
  assert_int_equal (sb.bucket_blocks, NC_BUCKET_BLOCKS_MAX);
  assert_int_equal (sb.journal_buckets, 4);
  cdev_close (cd);
}

static void
test_super_format_refusals (void **state)
{
  static const uint32_t bad_sizes[] = {
    1, 4096, 32 * KIB, 3 * MIB, 128 * MIB, 96 * KIB, 0x80000000u,
  };
  struct cdev *cd;
  struct nc_format_options o = { .quiet = true };
  size_t i;

  cd = sim (DEV_BYTES);
  for (i = 0; i < sizeof bad_sizes / sizeof bad_sizes[0]; i++) {
    test_log_clear ();
    o.bucket_bytes = bad_sizes[i];
    assert_int_equal (nc_format (cd, &o), -EINVAL);
    assert_error_contains ("power of two from 64 KiB to 64 MiB");
  }
  /* A journal under 4 buckets. */
  test_log_clear ();
  o.bucket_bytes = 0;
  o.journal_bytes = 4 * MIB - 1;
  assert_int_equal (nc_format (cd, &o), -EINVAL);
  assert_error_contains ("journal size");
  assert_error_contains ("at least 4 buckets");
  /* A journal that leaves fewer than 8 data buckets. */
  test_log_clear ();
  o.journal_bytes = 60 * MIB;
  assert_int_equal (nc_format (cd, &o), -EINVAL);
  assert_error_contains ("too small");
  /* Nothing was written by a refused format. */
  assert_int_equal (cdev_sim_nr_writes (cd), 0);
  cdev_close (cd);

  /* 1 + 4 + 2 + 1 + 8 = 16 buckets of 1 MiB is the least. */
  cd = sim (16 * MIB - NC_BLOCK_BYTES);
  test_log_clear ();
  o.journal_bytes = 0;
  assert_int_equal (nc_format (cd, &o), -EINVAL);
  assert_error_contains ("at least 16777216 bytes");
  assert_int_equal (cdev_sim_nr_writes (cd), 0);
  cdev_close (cd);
  cd = sim (16 * MIB);
  assert_int_equal (nc_format (cd, &o), 0);
  cdev_close (cd);

  /* With 64 KiB buckets the least is 16 * 64 KiB. */
  cd = sim (16 * 64 * KIB - NC_BLOCK_BYTES);
  test_log_clear ();
  o.bucket_bytes = 64 * KIB;
  assert_int_equal (nc_format (cd, &o), -EINVAL);
  assert_error_contains ("at least 1048576 bytes");
  cdev_close (cd);
  cd = sim (8 * KIB);
  assert_int_equal (nc_format (cd, &o), -EINVAL);
  cdev_close (cd);
}

/* ---- format crash safety ---- */

/* Reformat a cache (uuid A) as uuid B, with the device dying at write n
 * and losing unsynced writes: afterwards the device is either "not an
 * nbdcache device" or the complete new cache (with its prio and journal
 * contents durable) — never the old cache, never a half-made new one.
 */
static void
test_super_format_crash (void **state)
{
  struct nc_format_options o = { .uuid = uuid_b, .quiet = true };
  struct cdev *cd = formatted (DEV_BYTES, 0);
  struct nc_sb sb;
  uint64_t n, total;
  unsigned seen_none = 0, seen_new = 0, t;

  /* How many writes does a format take? */
  cdev_sim_crash (cd, 0);
  assert_int_equal (nc_format (cd, &o), 0);
  total = cdev_sim_nr_writes (cd);
  assert_true (total >= 4);

  for (n = 1; n <= total + 1; n++) {
    for (t = 0; t < 3; t++) {
      int r;

      /* Back to a fresh uuid-A cache. */
      o.uuid = uuid_a;
      assert_int_equal (nc_format (cd, &o), 0);
      cdev_sim_crash (cd, 0);
      o.uuid = uuid_b;
      cdev_sim_fail_at_write (cd, n);
      r = nc_format (cd, &o);
      assert_true (n <= total ? r < 0 : r == 0);
      cdev_sim_crash (cd, t == 0 ? 0 : seed * 31 + n * 3 + t);
      test_log_clear ();
      r = super_read (cd, &sb, NULL);
      if (r == -ENOTSUP) {
        seen_none++;
        continue;
      }
      assert_int_equal (r, 0);
      if (memcmp (sb.uuid, uuid_a, 16) == 0) {
        /* Only if the very first write (clearing the superblocks) never
         * happened: then nothing else did either.
         */
        assert_int_equal (n, 1);
        assert_true (has_mark (cd, &sb, sb.prio_first, PRIO_MARK));
        assert_true (has_mark (cd, &sb, sb.journal_first, JOURNAL_MARK));
        continue;
      }
      assert_memory_equal (sb.uuid, uuid_b, 16);
      assert_true (has_mark (cd, &sb, sb.prio_first, PRIO_MARK));
      assert_true (has_mark (cd, &sb, sb.journal_first, JOURNAL_MARK));
      seen_new++;
    }
  }
  assert_true (seen_none > 0 && seen_new > 0);

  /* The same with the device dying at each sync instead (the writes
   * before it are torn at random).
   */
  seen_none = seen_new = 0;
  for (n = 1; n <= 4; n++) {
    for (t = 0; t < 16; t++) {
      struct cdev *gate;
      int r;

      o.uuid = uuid_a;
      assert_int_equal (nc_format (cd, &o), 0);
      o.uuid = uuid_b;
      gate = gate_create (cd, n);
      r = nc_format (gate, &o);
      cdev_close (gate);
      assert_true (r < 0 || n > 3);
      cdev_sim_crash (cd, seed * 17 + n * 16 + t + 1);
      test_log_clear ();
      r = super_read (cd, &sb, NULL);
      if (r == -ENOTSUP) {
        seen_none++;
        continue;
      }
      assert_int_equal (r, 0);
      if (memcmp (sb.uuid, uuid_a, 16) == 0) {
        /* The first sync never happened, so the old superblock may
         * survive; but then so did everything else of the old cache.
         */
        assert_int_equal (n, 1);
        continue;
      }
      assert_memory_equal (sb.uuid, uuid_b, 16);
      assert_true (has_mark (cd, &sb, sb.prio_first, PRIO_MARK));
      assert_true (has_mark (cd, &sb, sb.journal_first, JOURNAL_MARK));
      seen_new++;
    }
  }
  assert_true (seen_none > 0 && seen_new > 0);
  cdev_close (cd);
}

/* Old journal and prio contents are wiped by a format. */
static void
test_super_format_wipes_old_metadata (void **state)
{
  struct cdev *cd = formatted (DEV_BYTES, 0);
  struct nc_sb sb;
  uint8_t junk[NC_BLOCK_BYTES], got[NC_BLOCK_BYTES];
  static const uint8_t zero[NC_BLOCK_BYTES];
  uint32_t b;

  assert_int_equal (super_read (cd, &sb, NULL), 0);
  memset (junk, 0x77, sizeof junk);
  for (b = sb.journal_first; b < sb.data_first; b++) {
    cdev_sim_poke (cd, super_bucket_offset (&sb, b), junk, sizeof junk);
    cdev_sim_poke (cd, super_bucket_offset (&sb, b + 1) - NC_BLOCK_BYTES,
                   junk, sizeof junk);
  }
  assert_int_equal (nc_format (cd, NULL), 0);
  assert_int_equal (super_read (cd, &sb, NULL), 0);
  /* Every journal block but the stub's first entry is zero. */
  for (b = sb.journal_first; b < sb.prio_first; b++) {
    cdev_sim_peek (cd, super_bucket_offset (&sb, b + 1) - NC_BLOCK_BYTES,
                   got, sizeof got);
    assert_memory_equal (got, zero, sizeof got);
    if (b != sb.journal_first) {
      cdev_sim_peek (cd, super_bucket_offset (&sb, b), got, sizeof got);
      assert_memory_equal (got, zero, sizeof got);
    }
  }
  /* Prio copy B starts with a zero block (no stale header). */
  cdev_sim_peek (cd, super_bucket_offset (&sb, sb.prio_first +
                                          sb.prio_buckets),
                 got, sizeof got);
  assert_memory_equal (got, zero, sizeof got);
  cdev_close (cd);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_super_format_then_read),
    cmocka_unit_test (test_super_format_random_uuid),
    cmocka_unit_test (test_super_format_geometry),
    cmocka_unit_test (test_super_format_refusals),
    cmocka_unit_test (test_super_format_crash),
    cmocka_unit_test (test_super_format_wipes_old_metadata),
  };
  seed = test_seed_from_env ("test-format");
  test_log_capture ();
  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
