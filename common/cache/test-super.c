/* SPDX-License-Identifier: BSD-3-Clause */
/* test-super.c — unit tests for the superblock (super.c).
 *
 * WHAT: format then read; every invariant of super_validate broken one at
 * a time (with the checksum fixed up, so exactly that check must catch
 * it) and named; one corrupt copy (the other is used, with a warning),
 * both corrupt (-EBADMSG naming both reasons), no magic (-ENOTSUP and the
 * "format it" hint); super_write alternating slots, a failed or torn write
 * keeping the previous copy, and a retry after a failure not touching the
 * good copy; the export table (add, find, full, long uri, long name,
 * duplicate uri); format geometry, refusals (tiny device, bad bucket and
 * journal sizes) and format crash-safety (a crash at every write never
 * leaves an old or half-made superblock that reads as valid).
 * HOW: the simulated cache device (cdev-sim.c) loses unsynced writes on a
 * crash; a "big" device in this file keeps only blocks 0-1 and drops every
 * other write, for geometry tests on terabyte devices.  prio_format and
 * journal_format are stubs here (prio.c and journal.c have their own
 * tests): each writes one recognisable block and records whether the old
 * superblocks were already gone when it was called.
 * SEED: the torn-write tests are randomised; NBDCACHE_SEED overrides the
 * seed, which is always printed.
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

#define DEV_BYTES (64 * MIB)

static uint64_t seed;

/* ---- captured log messages ---- */

#define assert_error_contains(s) \
  do {                                                                  \
    if (strstr (test_log_last_error (), (s)) == NULL)                  \
      fail_msg ("expected an error containing \"%s\", got \"%s\"",      \
                (s), test_log_last_error ());                          \
  } while (0)

/* ---- stubs for prio.c and journal.c ---- */

struct stub_calls {
  unsigned prio, journal;
  bool sb_gone_at_prio, sb_gone_at_journal; /* blocks 0-1 zero then */
};
static struct stub_calls stubs;

#define PRIO_MARK "STUBPRIO"
#define JOURNAL_MARK "STUBJRNL"

static bool
blocks01_zero (struct cdev *cd)
{
  uint8_t *buf = cdev_alloc_buffer (2 * NC_BLOCK_BYTES);
  bool zero = buf != NULL;
  size_t i;

  if (zero && cdev_pread (cd, buf, 2 * NC_BLOCK_BYTES, 0) < 0)
    zero = false;
  for (i = 0; zero && i < 2 * NC_BLOCK_BYTES; i++)
    if (buf[i] != 0)
      zero = false;
  free (buf);
  return zero;
}

/* One block at the start of `bucket`: a mark and the uuid. */
static int
write_mark (struct cdev *cd, const struct nc_sb *sb, uint32_t bucket,
            const char *mark)
{
  uint8_t *buf = cdev_alloc_buffer (NC_BLOCK_BYTES);
  int r;

  if (buf == NULL)
    return -ENOMEM;
  memcpy (buf, mark, 8);
  memcpy (buf + 8, sb->uuid, sizeof sb->uuid);
  r = cdev_pwrite (cd, buf, NC_BLOCK_BYTES, super_bucket_offset (sb, bucket),
                   0);
  free (buf);
  return r;
}

static bool
has_mark (struct cdev *cd, const struct nc_sb *sb, uint32_t bucket,
          const char *mark)
{
  uint8_t *buf = cdev_alloc_buffer (NC_BLOCK_BYTES);
  bool ok;

  assert_non_null (buf);
  assert_int_equal (cdev_pread (cd, buf, NC_BLOCK_BYTES,
                                super_bucket_offset (sb, bucket)), 0);
  ok = memcmp (buf, mark, 8) == 0 &&
    memcmp (buf + 8, sb->uuid, sizeof sb->uuid) == 0;
  free (buf);
  return ok;
}

int
prio_format (struct cdev *cd, const struct nc_sb *sb)
{
  stubs.prio++;
  stubs.sb_gone_at_prio = blocks01_zero (cd);
  assert_null (super_validate (sb, cd->size_bytes));
  return write_mark (cd, sb, sb->prio_first, PRIO_MARK);
}

int
journal_format (struct cdev *cd, const struct nc_sb *sb)
{
  stubs.journal++;
  stubs.sb_gone_at_journal = blocks01_zero (cd);
  assert_null (super_validate (sb, cd->size_bytes));
  return write_mark (cd, sb, sb->journal_first, JOURNAL_MARK);
}

/* ---- a big device: keeps blocks 0-1, drops the rest ---- */

struct big_dev {
  struct cdev cd;               /* first */
  uint8_t head[2 * NC_BLOCK_BYTES];
  uint64_t nr_writes;
};

static int
big_pread (struct cdev *cd, void *buf, size_t count, uint64_t offset)
{
  struct big_dev *b = (struct big_dev *) cd;

  memset (buf, 0, count);
  if (offset < sizeof b->head)
    memcpy (buf, b->head + offset, MIN (count, sizeof b->head - offset));
  return 0;
}

static int
big_pwrite (struct cdev *cd, const void *buf, size_t count, uint64_t offset,
            uint32_t flags)
{
  struct big_dev *b = (struct big_dev *) cd;

  assert_true (offset % NC_BLOCK_BYTES == 0 && count % NC_BLOCK_BYTES == 0);
  assert_true (offset + count <= cd->size_bytes);
  b->nr_writes++;
  if (offset < sizeof b->head)
    memcpy (b->head + offset, buf, MIN (count, sizeof b->head - offset));
  return 0;
}

static int big_sync (struct cdev *cd) { return 0; }
static int big_discard (struct cdev *cd, uint64_t c, uint64_t o) { return 0; }
static void big_close (struct cdev *cd) { free (cd); }

static const struct cdev_ops big_ops = {
  .name = "big", .pread = big_pread, .pwrite = big_pwrite,
  .sync = big_sync, .discard = big_discard, .close = big_close,
};

static struct cdev *
big_create (uint64_t size_bytes)
{
  struct big_dev *b = calloc (1, sizeof *b);

  assert_non_null (b);
  b->cd.ops = &big_ops;
  b->cd.path = (char *) "big";
  b->cd.size_bytes = size_bytes;
  return &b->cd;
}

/* ---- a gate in front of a simulated device: dies at sync number N ----
 *
 * cdev-sim can kill the device at a chosen write; this kills it at a
 * chosen sync instead (the sync does not happen), to crash between a
 * write and the sync that was meant to make it durable.
 */

struct gate_dev {
  struct cdev cd;               /* first */
  struct cdev *inner;           /* a cdev-sim */
  uint64_t nr_syncs, fail_sync_at;
  bool dead;
};

static int
gate_pread (struct cdev *cd, void *buf, size_t count, uint64_t offset)
{
  struct gate_dev *g = (struct gate_dev *) cd;
  return g->dead ? -EIO : cdev_pread (g->inner, buf, count, offset);
}

static int
gate_pwrite (struct cdev *cd, const void *buf, size_t count, uint64_t offset,
             uint32_t flags)
{
  struct gate_dev *g = (struct gate_dev *) cd;
  return g->dead ? -EIO : cdev_pwrite (g->inner, buf, count, offset, flags);
}

static int
gate_sync (struct cdev *cd)
{
  struct gate_dev *g = (struct gate_dev *) cd;

  if (++g->nr_syncs == g->fail_sync_at)
    g->dead = true;
  return g->dead ? -EIO : cdev_sync (g->inner);
}

static int gate_discard (struct cdev *cd, uint64_t c, uint64_t o) { return 0; }
static void gate_close (struct cdev *cd) { free (cd); }

static const struct cdev_ops gate_ops = {
  .name = "gate", .pread = gate_pread, .pwrite = gate_pwrite,
  .sync = gate_sync, .discard = gate_discard, .close = gate_close,
};

static struct cdev *
gate_create (struct cdev *inner, uint64_t fail_sync_at)
{
  struct gate_dev *g = calloc (1, sizeof *g);

  assert_non_null (g);
  g->cd.ops = &gate_ops;
  g->cd.path = (char *) "gate";
  g->cd.size_bytes = inner->size_bytes;
  g->inner = inner;
  g->fail_sync_at = fail_sync_at;
  return &g->cd;
}

/* ---- helpers ---- */

static struct cdev *
sim (uint64_t bytes)
{
  struct cdev *cd;

  assert_int_equal (cdev_sim_create (bytes, &cd), 0);
  return cd;
}

static const uint8_t uuid_a[16] = "uuid-A-uuid-A-uu";
static const uint8_t uuid_b[16] = "uuid-B-uuid-B-uu";

static struct cdev *
formatted (uint64_t bytes, uint32_t bucket_bytes)
{
  struct cdev *cd = sim (bytes);
  struct nc_format_options o = { .bucket_bytes = bucket_bytes,
                                 .uuid = uuid_a, .quiet = true };

  assert_int_equal (nc_format (cd, &o), 0);
  return cd;
}

static void
read_slot (struct cdev *cd, int slot, struct nc_sb *sb)
{
  cdev_sim_peek (cd, (uint64_t) slot * NC_BLOCK_BYTES, sb, sizeof *sb);
}

static void
poke_byte (struct cdev *cd, uint64_t offset, uint8_t xor)
{
  uint8_t b;

  cdev_sim_peek (cd, offset, &b, 1);
  b ^= xor;
  cdev_sim_poke (cd, offset, &b, 1);
}

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
  assert_int_equal (sb.data_first, 7);
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
   * 64 + 1 Mi * 4 bytes = 5 buckets.
   */
  cd = big_create (UINT64_C (1) << 40);
  assert_int_equal (nc_format (cd, &o), 0);
  assert_int_equal (super_read (cd, &sb, NULL), 0);
  assert_int_equal (sb.nbuckets, 1u << 20);
  assert_int_equal (sb.journal_buckets, 128);
  assert_int_equal (sb.prio_buckets, 5);
  assert_int_equal (sb.prio_first, 129);
  assert_int_equal (sb.data_first, 139);
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
  assert_int_equal (sb.data_first, 35);

  /* An explicit journal size is rounded up to whole buckets. */
  o.bucket_bytes = 0;
  o.journal_bytes = 4 * MIB + 512 * KIB;
  assert_int_equal (nc_format (cd, &o), 0);
  assert_int_equal (super_read (cd, &sb, NULL), 0);
  assert_int_equal (sb.journal_buckets, 5);
  assert_int_equal (sb.data_first, 8);

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

  /* 1 + 4 + 2 + 8 = 15 buckets of 1 MiB is the least. */
  cd = sim (15 * MIB - NC_BLOCK_BYTES);
  test_log_clear ();
  o.journal_bytes = 0;
  assert_int_equal (nc_format (cd, &o), -EINVAL);
  assert_error_contains ("at least 15728640 bytes");
  assert_int_equal (cdev_sim_nr_writes (cd), 0);
  cdev_close (cd);
  cd = sim (15 * MIB);
  assert_int_equal (nc_format (cd, &o), 0);
  cdev_close (cd);

  /* With 64 KiB buckets the least is 15 * 64 KiB. */
  cd = sim (15 * 64 * KIB - NC_BLOCK_BYTES);
  test_log_clear ();
  o.bucket_bytes = 64 * KIB;
  assert_int_equal (nc_format (cd, &o), -EINVAL);
  assert_error_contains ("at least 983040 bytes");
  cdev_close (cd);
  cd = sim (8 * KIB);
  assert_int_equal (nc_format (cd, &o), -EINVAL);
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
CORRUPT (c_magic, sb->magic ^= 0x100)
CORRUPT (c_version, sb->version = 2)
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
         sb->journal_buckets = 61; sb->prio_first = 62; sb->data_first = 64;
         sb->prio_buckets = 1)
CORRUPT (c_regions_huge,
         sb->journal_buckets = UINT32_MAX; sb->prio_first = 0)
CORRUPT (c_prio_small, sb->bucket_blocks = 16; sb->nbuckets = 20000;
         *device_bytes = UINT64_C (1) << 40)
CORRUPT (c_few_data, sb->nbuckets = sb->data_first + NC_MIN_DATA_BUCKETS - 1)
CORRUPT (c_export_id, sb->exports[0].id = 16; sb->nr_exports = 1;
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
CORRUPT (c_nr_exports_less, sb->exports[1].id = 2; sb->exports[9].id = 7;
         sb->nr_exports = 1)

static const struct corruption corruptions[] = {
  { "csum", c_csum, "bad checksum", true },
  { "a byte under the csum", c_data_byte, "bad checksum", true },
  { "magic", c_magic, "bad magic", false },
  { "version 2", c_version, "unsupported format version", false },
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
        c->apply == c_magic)
      continue;                 /* not expressible on this device */
    for (slot = 0; slot < 2; slot++) {
      sb = good;
      sb.seq = 2 - slot;
      c->apply (&sb, &device_bytes);
      if (!c->keep_csum)
        super_set_csum (&sb);
      cdev_sim_poke (cd, (uint64_t) slot * NC_BLOCK_BYTES, &sb, sizeof sb);
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
    cdev_sim_poke (cd, 0, &odd, sizeof odd);
    test_log_clear ();
    assert_int_equal (super_read (cd, &sb, &slot), -EBADMSG);
    assert_error_contains ("copy 0: seq does not match its slot");
    odd.seq = 2;
    super_set_csum (&odd);
    cdev_sim_poke (cd, 0, &odd, sizeof odd);
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
  srandom ((unsigned) seed);
  for (i = 0; i < 2 * NC_BLOCK_BYTES; i++)
    junk[i] = (uint8_t) random ();
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

/* ---- super_write ---- */

static void
test_super_write_alternates (void **state)
{
  struct cdev *cd = formatted (DEV_BYTES, 0);
  struct nc_sb sb, got, other;
  uint64_t syncs;
  int slot, i;

  assert_int_equal (super_read (cd, &sb, &slot), 0);
  for (i = 0; i < 6; i++) {
    uint64_t seq = sb.seq;

    syncs = cdev_sim_nr_syncs (cd);
    snprintf (sb.exports[0].name, NC_NAME_MAX, "round %d", i);
    sb.exports[0].id = 1;
    sb.nr_exports = 1;
    assert_int_equal (super_write (cd, &sb), 0);
    assert_int_equal (sb.seq, seq + 1);
    assert_true (cdev_sim_nr_syncs (cd) > syncs);
    /* Durable at once, in the other slot; the old copy is untouched. */
    cdev_sim_crash (cd, 0);
    assert_int_equal (super_read (cd, &got, &slot), 0);
    assert_int_equal (slot, (int) ((seq + 1) % 2));
    assert_int_equal (got.seq, seq + 1);
    assert_string_equal (got.exports[0].name, sb.exports[0].name);
    read_slot (cd, 1 - slot, &other);
    assert_null (super_validate (&other, DEV_BYTES));
    assert_int_equal (other.seq, seq);
  }

  /* An invalid superblock is never written. */
  got = sb;
  got.data_first++;
  test_log_clear ();
  assert_int_equal (super_write (cd, &got), -EINVAL);
  assert_int_equal (got.seq, sb.seq);
  assert_error_contains ("refusing to write an invalid superblock");
  assert_int_equal (super_read (cd, &got, NULL), 0);
  assert_int_equal (got.seq, sb.seq);
  cdev_close (cd);
}

static void
test_super_write_failure_keeps_previous (void **state)
{
  struct cdev *cd = formatted (DEV_BYTES, 0);
  struct nc_sb sb, got;
  int slot;

  assert_int_equal (super_read (cd, &sb, &slot), 0);
  assert_int_equal (sb.seq, 2);

  /* The device dies at the superblock write. */
  cdev_sim_fail_at_write (cd, cdev_sim_nr_writes (cd) + 1);
  strcpy (sb.exports[0].uri, "file:/x");
  sb.exports[0].id = 1;
  sb.nr_exports = 1;
  test_log_clear ();
  assert_int_equal (super_write (cd, &sb), -EIO);
  assert_error_contains ("copy 0 is kept");
  /* seq is put back, so a retry targets slot 1 again, not slot 0. */
  assert_int_equal (sb.seq, 2);
  cdev_sim_crash (cd, 0);
  assert_int_equal (super_read (cd, &got, &slot), 0);
  assert_int_equal (slot, 0);
  assert_int_equal (got.seq, 2);
  assert_int_equal (got.nr_exports, 0);

  /* Fail once more; the good copy (slot 0) must survive the retry that
   * finally succeeds.
   */
  cdev_sim_fail_write_once (cd, NC_BLOCK_BYTES, NC_BLOCK_BYTES);
  assert_int_equal (super_write (cd, &sb), -EIO);
  assert_int_equal (sb.seq, 2);
  assert_int_equal (super_write (cd, &sb), 0);
  assert_int_equal (sb.seq, 3);
  cdev_sim_crash (cd, 0);
  assert_int_equal (super_read (cd, &got, &slot), 0);
  assert_int_equal (slot, 1);
  assert_int_equal (got.nr_exports, 1);
  read_slot (cd, 0, &got);
  assert_int_equal (got.seq, 2);
  assert_null (super_validate (&got, DEV_BYTES));
  cdev_close (cd);
}

/* A write that reached the device but not its sync, then power loss:
 * either the new copy survived whole or the old one is used — never an
 * error, never anything else.
 */
static void
test_super_write_torn (void **state)
{
  struct cdev *cd = formatted (DEV_BYTES, 0);
  struct nc_sb sb, next, got;
  struct nc_sb *buf = cdev_alloc_buffer (NC_BLOCK_BYTES);
  unsigned i, saw_old = 0, saw_new = 0;
  int slot;

  assert_non_null (buf);
  assert_int_equal (super_read (cd, &sb, NULL), 0);
  for (i = 0; i < 64; i++) {
    next = sb;
    next.seq++;
    next.created_unix = i;
    super_set_csum (&next);
    *buf = next;
    /* What super_write does before its sync. */
    assert_int_equal (cdev_pwrite (cd, buf, NC_BLOCK_BYTES,
                                   (next.seq % 2) * NC_BLOCK_BYTES, 0), 0);
    cdev_sim_crash (cd, seed + i + 1);
    assert_int_equal (super_read (cd, &got, &slot), 0);
    if (got.seq == sb.seq) {
      saw_old++;
      assert_memory_equal (&got, &sb, sizeof sb);
    }
    else {
      saw_new++;
      assert_memory_equal (&got, &next, sizeof next);
      sb = next;
    }
  }
  /* Both outcomes happen with a fair tear (1/2 per block). */
  assert_true (saw_old > 0 && saw_new > 0);

  /* A half-written block (the first half new, the second old) is refused
   * by its checksum and the other copy is used.
   */
  next = sb;
  next.seq++;
  /* Differ in both halves of the block. */
  next.created_unix += 1000;
  next.exports[NC_MAX_EXPORTS - 1].mode ^= 1;
  super_set_csum (&next);
  read_slot (cd, (int) (next.seq % 2), &got);
  memcpy (&got, &next, NC_BLOCK_BYTES / 2);
  cdev_sim_poke (cd, (next.seq % 2) * NC_BLOCK_BYTES, &got, sizeof got);
  test_log_clear ();
  assert_int_equal (super_read (cd, &got, NULL), 0);
  assert_int_equal (got.seq, sb.seq);
  assert_non_null (strstr (test_log_last_warning (), "bad checksum"));
  free (buf);
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

/* ---- the export table ---- */

static void
test_super_exports (void **state)
{
  struct cdev *cd = formatted (DEV_BYTES, 0);
  struct nc_sb sb, got;
  struct nc_sb_export *e, *e2;
  char uri[NC_URI_MAX + 8], name[80];
  int i;

  assert_int_equal (super_read (cd, &sb, NULL), 0);
  assert_null (super_find_export (&sb, "file:/nothing"));

  for (i = 1; i <= NC_MAX_EXPORTS; i++) {
    snprintf (uri, sizeof uri, "file:/backing/%d", i);
    snprintf (name, sizeof name, "export%d", i);
    assert_int_equal (super_add_export (&sb, name, uri, (uint64_t) i * MIB,
                                        (uint8_t) (i % 4), &e), 0);
    assert_int_equal (e->id, i);
    assert_int_equal (sb.nr_exports, i);
  }
  /* Full. */
  assert_int_equal (super_add_export (&sb, "x", "file:/x", 1, 0, &e),
                    -ENOSPC);
  assert_int_equal (sb.nr_exports, NC_MAX_EXPORTS);

  for (i = 1; i <= NC_MAX_EXPORTS; i++) {
    snprintf (uri, sizeof uri, "file:/backing/%d", i);
    e = super_find_export (&sb, uri);
    assert_non_null (e);
    assert_int_equal (e->id, i);
    assert_int_equal (e->backing_bytes, (uint64_t) i * MIB);
    assert_int_equal (e->mode, i % 4);
  }
  assert_null (super_find_export (&sb, "file:/backing/1x"));
  assert_null (super_find_export (&sb, "file:/backing/"));

  /* Free ids 3 and 9 (caller-side removal): the lowest comes back. */
  e = super_find_export (&sb, "file:/backing/9");
  memset (e, 0, sizeof *e);
  e = super_find_export (&sb, "file:/backing/3");
  memset (e, 0, sizeof *e);
  sb.nr_exports -= 2;
  assert_int_equal (super_add_export (&sb, NULL, "nbd://h/x", 5, 1, &e), 0);
  assert_int_equal (e->id, 3);
  assert_string_equal (e->name, "");
  assert_int_equal (super_add_export (&sb, "y", "nbd://h/y", 5, 1, &e2), 0);
  assert_int_equal (e2->id, 9);

  /* The table survives a write and a read. */
  assert_int_equal (super_write (cd, &sb), 0);
  assert_int_equal (super_read (cd, &got, NULL), 0);
  assert_memory_equal (&got, &sb, sizeof sb);
  cdev_close (cd);
}

static void
test_super_export_limits (void **state)
{
  struct nc_sb sb;
  struct nc_sb_export *e = NULL;
  char uri[NC_URI_MAX + 1], name[NC_NAME_MAX + 20];
  struct cdev *cd = formatted (DEV_BYTES, 0);

  assert_int_equal (super_read (cd, &sb, NULL), 0);
  /* A uri of NC_URI_MAX bytes has no room for the NUL. */
  memset (uri, 'u', NC_URI_MAX);
  uri[NC_URI_MAX] = '\0';
  assert_int_equal (super_add_export (&sb, "n", uri, 1, 0, &e),
                    -ENAMETOOLONG);
  assert_int_equal (sb.nr_exports, 0);
  /* One byte less fits exactly. */
  uri[NC_URI_MAX - 1] = '\0';
  assert_int_equal (super_add_export (&sb, "n", uri, 1, 0, &e), 0);
  assert_int_equal (strlen (e->uri), NC_URI_MAX - 1);
  assert_ptr_equal (super_find_export (&sb, uri), e);
  /* The same uri twice would make the binding ambiguous. */
  assert_int_equal (super_add_export (&sb, "n2", uri, 1, 0, NULL), -EEXIST);
  /* A long name is cut to NC_NAME_MAX - 1 bytes. */
  memset (name, 'n', sizeof name - 1);
  name[sizeof name - 1] = '\0';
  assert_int_equal (super_add_export (&sb, name, "file:/z", 1, 0, &e), 0);
  assert_int_equal (strlen (e->name), NC_NAME_MAX - 1);
  assert_int_equal (e->id, 2);
  super_set_csum (&sb);
  assert_null (super_validate (&sb, DEV_BYTES));
  cdev_close (cd);
}

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

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_super_csum),
    cmocka_unit_test (test_super_format_then_read),
    cmocka_unit_test (test_super_format_random_uuid),
    cmocka_unit_test (test_super_format_geometry),
    cmocka_unit_test (test_super_format_refusals),
    cmocka_unit_test (test_super_validate_each_field),
    cmocka_unit_test (test_super_read_refuses_corruptions),
    cmocka_unit_test (test_super_one_copy_corrupt),
    cmocka_unit_test (test_super_read_error_copy),
    cmocka_unit_test (test_super_both_corrupt),
    cmocka_unit_test (test_super_no_magic),
    cmocka_unit_test (test_super_write_alternates),
    cmocka_unit_test (test_super_write_failure_keeps_previous),
    cmocka_unit_test (test_super_write_torn),
    cmocka_unit_test (test_super_format_crash),
    cmocka_unit_test (test_super_format_wipes_old_metadata),
    cmocka_unit_test (test_super_exports),
    cmocka_unit_test (test_super_export_limits),
  };
  seed = test_seed_from_env ("test-super");
  test_log_capture ();
  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
