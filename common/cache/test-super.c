/* SPDX-License-Identifier: BSD-3-Clause */
/* test-super.c — unit tests for reading the superblock (super.c) and its
 * checksum (csum.c).
 *
 * WHAT: every invariant of super_validate broken one at a time (with the
 * checksum fixed up, so exactly that check must catch it) and named; one
 * corrupt copy (the other is used, with a warning), a copy that cannot
 * be read, both corrupt (-EBADMSG naming both reasons), no magic
 * (-ENOTSUP and the "format it" hint); what nc_csum covers; the export
 * table's checksum covers its first 8 bytes (slot 0's id and flags), and
 * a table checksummed the old way still reads and is upgraded.
 * HOW: the simulated cache device (cdev-sim.c) and the fixtures of
 * test-super-fx.c (a formatted device, peek and poke).
 * SEED: the no-magic test fills the superblocks with random bytes;
 * NBDCACHE_SEED overrides the seed, which is always printed.
 * THREADS AND LOCKS: single-threaded.  FAILURE: cmocka assertions.
 * NOT HERE: super_write and the export table (test-super-write.c),
 * nc_format (test-format.c).
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

static void
test_super_csum (void **state)
{
  uint8_t buf[64];
  uint64_t c;
  size_t i;

  for (i = 0; i < sizeof buf; i++)
    buf[i] = (uint8_t) i;
  c = nc_csum (buf, sizeof buf);
  /* The first 8 bytes (where the checksum lives) are not covered. */
  buf[0] ^= 0xff;
  buf[7] ^= 0xff;
  assert_int_equal (nc_csum (buf, sizeof buf), c);
  buf[8] ^= 1;
  assert_int_not_equal (nc_csum (buf, sizeof buf), c);
  buf[8] ^= 1;
  buf[63] ^= 1;
  assert_int_not_equal (nc_csum (buf, sizeof buf), c);
}

/* A cache written before NC_FEATURE_TABLE_CSUM: its table checksum
 * skips the first 8 bytes and still validates; the next checksum update
 * (every superblock write) sets the bit and covers every byte.
 */
static void
test_super_table_csum_legacy (void **state)
{
  struct cdev *cd = formatted (DEV_BYTES, 0);
  struct nc_sb sb;
  size_t tbytes;

  assert_int_equal (super_read (cd, &sb, NULL), 0);
  assert_true (sb.features & NC_FEATURE_TABLE_CSUM);
  tbytes = (size_t) sb.table_blocks * NC_BLOCK_BYTES;
  assert_int_equal (sb.table_csum, nc_csum_whole (sb.exports, tbytes));

  sb.features &= ~NC_FEATURE_TABLE_CSUM;
  sb.table_csum = nc_csum (sb.exports, tbytes);
  sb.csum = nc_csum (&sb, NC_BLOCK_BYTES);
  assert_null (super_validate (&sb, DEV_BYTES));

  super_set_csum (&sb);
  assert_true (sb.features & NC_FEATURE_TABLE_CSUM);
  assert_int_equal (sb.table_csum, nc_csum_whole (sb.exports, tbytes));
  assert_null (super_validate (&sb, DEV_BYTES));
  sb.exports[0].flags ^= NC_SLOT_FORGETTING;
  assert_string_equal (super_validate (&sb, DEV_BYTES),
                       "bad export table checksum");
  cdev_close (cd);
}

/* ---- super_validate: one broken invariant at a time ---- */

struct corruption {
  const char *what;
  void (*apply) (struct nc_sb *sb, uint64_t *device_bytes);
  const char *why;
  bool keep_csum;               /* do not fix the checksum up */
};

#define CORRUPT(name, body) \
  static void name (struct nc_sb *sb, uint64_t *device_bytes) { body; }

CORRUPT (c_csum, sb->csum ^= 1)
CORRUPT (c_data_byte, sb->exports[3].uri[7] ^= 0x20)
/* The table's first 8 bytes: slot 0's id, mode, kind and flags (a
 * FORGETTING bit set there would drop the export's data).
 */
CORRUPT (c_slot0_flags, sb->exports[0].flags ^= NC_SLOT_FORGETTING)
CORRUPT (c_slot0_id, sb->exports[0].id ^= 1)
CORRUPT (c_magic, sb->magic ^= 0x100)
CORRUPT (c_version, sb->version = 3)
CORRUPT (c_version0, sb->version = 0)
CORRUPT (c_block, sb->block_bytes = 512)
CORRUPT (c_bucket_pow2, sb->bucket_blocks = 100)
CORRUPT (c_bucket_small, sb->bucket_blocks = 8)
CORRUPT (c_bucket_big, sb->bucket_blocks = 32768)
CORRUPT (c_bucket_zero, sb->bucket_blocks = 0)
CORRUPT (c_nbuckets_past, sb->nbuckets++)
CORRUPT (c_device_shrank, *device_bytes -= MIB)
CORRUPT (c_nbuckets_huge, sb->nbuckets = UINT32_MAX)
CORRUPT (c_journal_first0,
         sb->journal_first = 0; sb->prio_first--; sb->data_first--)
CORRUPT (c_journal_empty,
         sb->journal_buckets = 0; sb->prio_first = 1; sb->data_first = 3)
CORRUPT (c_prio_empty, sb->prio_buckets = 0; sb->data_first = 5)
CORRUPT (c_journal_overlaps_prio, sb->journal_buckets++)
CORRUPT (c_prio_gap, sb->prio_first++; sb->data_first++)
CORRUPT (c_data_overlaps_prio, sb->data_first--)
CORRUPT (c_data_gap, sb->data_first++)
CORRUPT (c_regions_past,
         sb->journal_buckets = 61; sb->prio_first = 62; sb->csum_first = 64;
         sb->data_first = 65; sb->prio_buckets = 1)
CORRUPT (c_features, sb->features |= 0x80)
CORRUPT (c_csum_gap, sb->csum_first++; sb->data_first++)
CORRUPT (c_csum_small, sb->csum_buckets = 0; sb->data_first--)
CORRUPT (c_csum_no_flag, sb->features = 0)
CORRUPT (c_regions_huge,
         sb->journal_buckets = UINT32_MAX; sb->prio_first = 0)
CORRUPT (c_prio_small, sb->bucket_blocks = 16; sb->nbuckets = 20000;
         *device_bytes = UINT64_C (1) << 40)
CORRUPT (c_few_data, sb->nbuckets = sb->data_first + NC_MIN_DATA_BUCKETS - 1)
CORRUPT (c_export_id, sb->exports[0].id = super_table_slots (sb) + 1;
         sb->nr_exports = 1;
         strcpy (sb->exports[0].uri, "file:/a"))
CORRUPT (c_export_id_max, sb->exports[2].id = 0xffff; sb->nr_exports = 1)
CORRUPT (c_export_dup,
         sb->exports[0].id = 3; sb->exports[5].id = 3; sb->nr_exports = 2)
CORRUPT (c_export_uri,
         sb->exports[4].id = 1; sb->nr_exports = 1;
         memset (sb->exports[4].uri, 'u', NC_URI_MAX))
CORRUPT (c_export_name,
         sb->exports[4].id = 1; sb->nr_exports = 1;
         memset (sb->exports[4].name, 'n', NC_NAME_MAX))
CORRUPT (c_nr_exports_more, sb->nr_exports = 1)
CORRUPT (c_table_blocks, sb->table_blocks--)
CORRUPT (c_table_zero, sb->table_blocks = 0)
CORRUPT (c_export_kind, sb->exports[7].id = 1; sb->nr_exports = 1;
         sb->exports[7].kind = 9)
CORRUPT (c_export_devid, sb->exports[7].id = 1; sb->nr_exports = 1;
         memset (sb->exports[7].devid, 'd', NC_DEVID_MAX))
CORRUPT (c_nr_exports_less, sb->exports[1].id = 2; sb->exports[9].id = 7;
         sb->nr_exports = 1)

static const struct corruption corruptions[] = {
  { "csum", c_csum, "bad checksum", true },
  { "a byte of the table", c_data_byte, "bad export table checksum", true },
  { "slot 0's flags", c_slot0_flags, "bad export table checksum", true },
  { "slot 0's id", c_slot0_id, "bad export table checksum", true },
  { "table size", c_table_blocks,
    "the export table size does not match the bucket size", false },
  { "no table", c_table_zero,
    "the export table size does not match the bucket size", false },
  { "export kind", c_export_kind, "an export has an unknown backing kind",
    false },
  { "export devid", c_export_devid,
    "an export device id is not NUL-terminated", false },
  { "magic", c_magic, "bad magic", false },
  { "version 3", c_version, "unsupported format version", false },
  { "version 0", c_version0, "unsupported format version", false },
  { "block size", c_block, "block size is not 4096", false },
  { "bucket 100 blocks", c_bucket_pow2,
    "bucket size is not a power of two", false },
  { "bucket 0 blocks", c_bucket_zero,
    "bucket size is not a power of two", false },
  { "bucket 8 blocks", c_bucket_small,
    "bucket size is outside 64 KiB .. 64 MiB", false },
  { "bucket 32768 blocks", c_bucket_big,
    "bucket size is outside 64 KiB .. 64 MiB", false },
  { "nbuckets + 1", c_nbuckets_past,
    "the buckets extend past the end of the device", false },
  { "device shrank", c_device_shrank,
    "the buckets extend past the end of the device", false },
  { "nbuckets huge", c_nbuckets_huge,
    "the buckets extend past the end of the device", false },
  { "journal at bucket 0", c_journal_first0,
    "the journal overlaps the superblock bucket", false },
  { "no journal", c_journal_empty, "the journal is empty", false },
  { "no prio", c_prio_empty, "the prio copies are empty", false },
  { "journal overlaps prio", c_journal_overlaps_prio,
    "the prio copies do not follow the journal", false },
  { "gap before prio", c_prio_gap,
    "the prio copies do not follow the journal", false },
  { "data overlaps prio", c_data_overlaps_prio,
    "the data area does not follow the prio copies", false },
  { "gap before data", c_data_gap,
    "the data area does not follow the prio copies", false },
  { "unknown feature", c_features, "unknown feature flags", false },
  { "gap before the checksums", c_csum_gap,
    "the data checksum region does not follow the prio copies", false },
  { "checksum region empty", c_csum_small,
    "the data checksum region is too small for the bucket count", false },
  { "checksum region, no flag", c_csum_no_flag,
    "a data checksum region without the feature flag", false },
  { "regions past nbuckets", c_regions_past,
    "the metadata regions run past the last bucket", false },
  { "regions overflow", c_regions_huge,
    "the prio copies do not follow the journal", false },
  { "prio copy too small", c_prio_small,
    "a prio copy is too small for the bucket count", false },
  { "7 data buckets", c_few_data, "too few data buckets", false },
  { "export id 16", c_export_id, "an export id is out of range", false },
  { "export id 65535", c_export_id_max,
    "an export id is out of range", false },
  { "duplicate export id", c_export_dup, "duplicate export id", false },
  { "unterminated uri", c_export_uri,
    "an export uri is not NUL-terminated", false },
  { "unterminated name", c_export_name,
    "an export name is not NUL-terminated", false },
  { "nr_exports too big", c_nr_exports_more,
    "nr_exports does not match the export table", false },
  { "nr_exports too small", c_nr_exports_less,
    "nr_exports does not match the export table", false },
};

static void
test_super_validate_each_field (void **state)
{
  struct cdev *cd = formatted (DEV_BYTES, 0);
  struct nc_sb good, sb;
  size_t i;

  assert_int_equal (super_read (cd, &good, NULL), 0);
  assert_null (super_validate (&good, DEV_BYTES));
  /* A bigger device than the sb needs is fine. */
  assert_null (super_validate (&good, 2 * DEV_BYTES));

  for (i = 0; i < sizeof corruptions / sizeof corruptions[0]; i++) {
    const struct corruption *c = &corruptions[i];
    uint64_t device_bytes = DEV_BYTES;
    const char *why;

    sb = good;
    c->apply (&sb, &device_bytes);
    if (!c->keep_csum)
      super_set_csum (&sb);
    why = super_validate (&sb, device_bytes);
    if (why == NULL || strcmp (why, c->why) != 0)
      fail_msg ("%s: expected \"%s\", got \"%s\"", c->what, c->why,
                why ? why : "(valid)");
  }
  cdev_close (cd);
}

/* Every corruption, written to both copies on the device: super_read
 * refuses with -EBADMSG and names the reason of each copy.
 */
static void
test_super_read_refuses_corruptions (void **state)
{
  struct cdev *cd = formatted (DEV_BYTES, 0);
  struct nc_sb good, sb;
  size_t i;
  int slot;
  char expect[512];

  assert_int_equal (super_read (cd, &good, NULL), 0);
  for (i = 0; i < sizeof corruptions / sizeof corruptions[0]; i++) {
    const struct corruption *c = &corruptions[i];
    uint64_t device_bytes = DEV_BYTES;

    if (c->apply == c_device_shrank || c->apply == c_prio_small ||
        c->apply == c_magic || c->apply == c_data_byte ||
        c->apply == c_slot0_flags || c->apply == c_slot0_id)
      continue;                 /* not expressible on this device (a
                                   kept csum over a changed seq) */
    for (slot = 0; slot < 2; slot++) {
      sb = good;
      sb.seq = 2 - slot;
      c->apply (&sb, &device_bytes);
      if (!c->keep_csum)
        super_set_csum (&sb);
      write_slot (cd, slot, &sb);
    }
    test_log_clear ();
    if (super_read (cd, &sb, NULL) != -EBADMSG)
      fail_msg ("%s: not refused", c->what);
    snprintf (expect, sizeof expect, "copy 0: %s; copy 1: %s", c->why,
              c->why);
    assert_error_contains (expect);
    assert_error_contains ("sim");
  }
  cdev_close (cd);
}

static void
test_super_one_copy_corrupt (void **state)
{
  struct cdev *cd = formatted (DEV_BYTES, 0);
  struct nc_sb sb;
  int slot;

  /* Slot 0 (seq 2, the newer) damaged: slot 1 is used, with a warning. */
  poke_byte (cd, 100, 0x01);
  test_log_clear ();
  assert_int_equal (super_read (cd, &sb, &slot), 0);
  assert_int_equal (slot, 1);
  assert_int_equal (sb.seq, 1);
  assert_int_equal (test_log_warnings (), 1);
  assert_non_null (strstr (test_log_last_warning (), "copy 0"));
  assert_non_null (strstr (test_log_last_warning (), "bad checksum"));
  assert_int_equal (test_log_errors (), 0);

  /* Repair slot 0, damage slot 1 (the older one). */
  poke_byte (cd, 100, 0x01);
  poke_byte (cd, NC_BLOCK_BYTES + 4000, 0x80);
  test_log_clear ();
  assert_int_equal (super_read (cd, &sb, &slot), 0);
  assert_int_equal (slot, 0);
  assert_int_equal (sb.seq, 2);
  assert_int_equal (test_log_warnings (), 1);
  assert_non_null (strstr (test_log_last_warning (), "copy 1"));

  /* A valid copy in the wrong slot (seq 3 in slot 0) is refused: trusting
   * it would make the next update overwrite the newest copy.
   */
  {
    struct nc_sb odd;

    read_slot (cd, 0, &odd);
    odd.seq = 3;
    super_set_csum (&odd);
    write_slot (cd, 0, &odd);
    test_log_clear ();
    assert_int_equal (super_read (cd, &sb, &slot), -EBADMSG);
    assert_error_contains ("copy 0: seq does not match its slot");
    odd.seq = 2;
    super_set_csum (&odd);
    write_slot (cd, 0, &odd);
    assert_int_equal (super_read (cd, &sb, &slot), 0);
    assert_int_equal (slot, 0);
  }

  /* A zeroed copy (no magic) beside a valid one is used silently. */
  {
    uint8_t zero[NC_BLOCK_BYTES] = { 0 };
    cdev_sim_poke (cd, NC_BLOCK_BYTES, zero, sizeof zero);
  }
  test_log_clear ();
  assert_int_equal (super_read (cd, &sb, &slot), 0);
  assert_int_equal (slot, 0);
  assert_int_equal (test_log_warnings () + test_log_errors (), 0);
  cdev_close (cd);
}

static void
test_super_read_error_copy (void **state)
{
  struct cdev *cd = formatted (DEV_BYTES, 0);
  struct nc_sb sb;
  int slot;

  /* Slot 0 unreadable: slot 1 is used, with a warning. */
  cdev_sim_fail_read_once (cd, 0, NC_BLOCK_BYTES);
  test_log_clear ();
  assert_int_equal (super_read (cd, &sb, &slot), 0);
  assert_int_equal (slot, 1);
  assert_non_null (strstr (test_log_last_warning (), "read error"));

  /* Slot 0 unreadable, slot 1 without magic: an I/O error, not "not an
   * nbdcache device" (which would invite a format).
   */
  {
    uint8_t zero[NC_BLOCK_BYTES] = { 0 };
    cdev_sim_poke (cd, NC_BLOCK_BYTES, zero, sizeof zero);
  }
  cdev_sim_fail_read_once (cd, 0, NC_BLOCK_BYTES);
  test_log_clear ();
  assert_int_equal (super_read (cd, &sb, &slot), -EIO);
  assert_error_contains ("cannot read the superblock");
  cdev_close (cd);
}

static void
test_super_both_corrupt (void **state)
{
  struct cdev *cd = formatted (DEV_BYTES, 0);
  struct nc_sb sb;
  int slot = 7;

  poke_byte (cd, 200, 0x04);
  poke_byte (cd, NC_BLOCK_BYTES + 200, 0x04);
  test_log_clear ();
  memset (&sb, 0xaa, sizeof sb);
  assert_int_equal (super_read (cd, &sb, &slot), -EBADMSG);
  assert_int_equal (slot, 7);
  assert_int_equal (test_log_errors (), 1);
  assert_error_contains ("sim: corrupt nbdcache superblock: copy 0: bad "
                         "checksum; copy 1: bad checksum");

  /* Magic in one copy only, garbage in the other: still corrupt. */
  {
    uint8_t junk[NC_BLOCK_BYTES];
    memset (junk, 0x5a, sizeof junk);
    cdev_sim_poke (cd, 0, junk, sizeof junk);
  }
  test_log_clear ();
  assert_int_equal (super_read (cd, &sb, NULL), -EBADMSG);
  assert_error_contains ("copy 0: no superblock magic; copy 1: bad checksum");
  cdev_close (cd);
}

static void
test_super_no_magic (void **state)
{
  struct cdev *cd = sim (DEV_BYTES);
  struct nc_sb sb;
  struct test_rng rng;
  uint8_t *junk;
  size_t i;

  test_log_clear ();
  assert_int_equal (super_read (cd, &sb, NULL), -ENOTSUP);
  assert_error_contains ("sim: not an nbdcache cache device (no "
                         "superblock); format it with 'nbdcache format "
                         "sim' or set create = yes");

  /* Random garbage is not an nbdcache device either. */
  junk = malloc (2 * NC_BLOCK_BYTES);
  assert_non_null (junk);
  test_rng_seed (&rng, seed);
  for (i = 0; i < 2 * NC_BLOCK_BYTES; i++)
    junk[i] = (uint8_t) test_rng_next (&rng);
  cdev_sim_poke (cd, 0, junk, 2 * NC_BLOCK_BYTES);
  free (junk);
  test_log_clear ();
  assert_int_equal (super_read (cd, &sb, NULL), -ENOTSUP);
  cdev_close (cd);

  /* Nor is a device too small to hold the two copies. */
  cd = sim (NC_BLOCK_BYTES);
  test_log_clear ();
  assert_int_equal (super_read (cd, &sb, NULL), -ENOTSUP);
  assert_error_contains ("not an nbdcache cache device");
  cdev_close (cd);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_super_csum),
    cmocka_unit_test (test_super_table_csum_legacy),
    cmocka_unit_test (test_super_validate_each_field),
    cmocka_unit_test (test_super_read_refuses_corruptions),
    cmocka_unit_test (test_super_one_copy_corrupt),
    cmocka_unit_test (test_super_read_error_copy),
    cmocka_unit_test (test_super_both_corrupt),
    cmocka_unit_test (test_super_no_magic),
  };
  seed = test_seed_from_env ("test-super");
  test_log_capture ();
  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
