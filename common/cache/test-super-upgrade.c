/* SPDX-License-Identifier: BSD-3-Clause */
/* test-super-upgrade.c — unit tests for the format version 1 -> 2
 * conversion of the superblock (super.c).
 *
 * WHAT: a version 1 superblock (both copies, as main wrote them: the
 * export table in the head block) is read and converted in memory with
 * every slot's id, uri, name, size and mode; file: slots are LEGACY (known
 * by path until their first bind), others URI; super_upgrade writes both
 * copies as version 2; a crash at every write of the conversion, with
 * torn unsynced blocks, leaves a superblock that reads as version 1 or 2
 * with the same table, and a second conversion finishes the job.
 * HOW: the simulated cache device (cdev-sim.c) and the superblock
 * fixtures (test-super-fx.c); super_to_v1 encodes a version 1 head.
 * SEED: the tear pattern of the crashes; NBDCACHE_SEED overrides it.
 * THREADS AND LOCKS: single-threaded.  FAILURE: cmocka assertions.
 * NOT HERE: the engine's open converting a cache with data in it
 * (client-tests/test-format-upgrade.sh).
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

#include <cmocka.h>

#include "cdev.h"
#include "format.h"
#include "log.h"
#include "ondisk.h"
#include "super.h"
#include "testkit.h"
#include "test-super-fx.h"

static uint64_t seed;

static const char *const uris[] = {
  "file:///srv/a.img", "nbd://host/x", "file:///srv/c.img",
};

/* A formatted device whose superblock (both copies) is version 1 with
 * the three exports of uris[] (ids 1, 2, 3); *want is it in memory.
 */
static struct cdev *
v1_device (struct nc_sb *want)
{
  struct cdev *cd = sim (DEV_BYTES);
  const struct nc_format_options o = {
    .bucket_bytes = 64 * 1024, .uuid = uuid_a, .quiet = true,
    .no_data_checksums = true,  /* version 1 had none */
  };
  struct nc_sb_v1 v1;
  size_t i;
  int slot;

  assert_int_equal (nc_format (cd, &o), 0);
  assert_int_equal (super_read (cd, want, NULL), 0);
  for (i = 0; i < 3; i++)
    assert_int_equal (super_add_export (want, "e", uris[i],
                                        (i + 1) * MIB, (uint8_t) i, NULL), 0);
  for (slot = 0; slot < 2; slot++) {
    want->seq = 10 + (uint64_t) slot;       /* 10 in slot 0, 11 in slot 1 */
    assert_int_equal (super_to_v1 (want, &v1), 0);
    cdev_sim_poke (cd, (uint64_t) slot * NC_BLOCK_BYTES, &v1, sizeof v1);
  }
  /* Whatever version 1 left in the rest of bucket 0 (nothing it wrote):
   * the conversion must not depend on zeros there.
   */
  {
    uint8_t junk[NC_BLOCK_BYTES];

    memset (junk, 0xa5, sizeof junk);
    cdev_sim_poke (cd, 2 * NC_BLOCK_BYTES, junk, sizeof junk);
    cdev_sim_poke (cd, 9 * NC_BLOCK_BYTES, junk, sizeof junk);
  }
  return cd;
}

/* got has want's exports, converted. */
static void
assert_table (const struct nc_sb *got, const struct nc_sb *want)
{
  size_t i;

  assert_int_equal (got->nr_exports, 3);
  for (i = 0; i < 3; i++) {
    const struct nc_sb_export *e = super_find_export ((struct nc_sb *) got,
                                                      uris[i]);

    assert_non_null (e);
    assert_int_equal (e->id, i + 1);
    assert_int_equal (e->backing_bytes, (i + 1) * MIB);
    assert_int_equal (e->mode, i);
    assert_string_equal (e->name, "e");
    assert_int_equal (e->kind, strncmp (uris[i], "file:", 5) == 0
                      ? NC_BACKING_LEGACY : NC_BACKING_URI);
  }
  assert_memory_equal (got->uuid, want->uuid, sizeof got->uuid);
  assert_int_equal (got->nbuckets, want->nbuckets);
  assert_int_equal (got->data_first, want->data_first);
}

static void
test_super_upgrade_reads_v1 (void **state)
{
  struct nc_sb *want = calloc (2, sizeof *want), *got = want + 1;
  struct cdev *cd = v1_device (want);
  uint32_t version = 0;
  int slot;

  assert_int_equal (super_read_version (cd, got, &slot, &version), 0);
  assert_int_equal (version, NC_FORMAT_VERSION_V1);
  assert_int_equal (slot, 1);
  assert_int_equal (got->seq, 11);
  assert_int_equal (got->version, NC_FORMAT_VERSION);
  assert_int_equal (got->table_blocks, (16 - 2) / 2);
  assert_int_equal (super_table_slots (got), 56);
  assert_table (got, want);

  /* A corrupt version 1 copy is refused like any other: the other one is
   * used.
   */
  poke_byte (cd, NC_BLOCK_BYTES + 300, 0x10);
  test_log_clear ();
  assert_int_equal (super_read_version (cd, got, &slot, &version), 0);
  assert_int_equal (slot, 0);
  assert_int_equal (version, NC_FORMAT_VERSION_V1);
  assert_non_null (strstr (test_log_last_warning (), "bad checksum"));
  assert_table (got, want);
  cdev_close (cd);
  free (want);
}

static void
test_super_upgrade_converts (void **state)
{
  struct nc_sb *want = calloc (3, sizeof *want), *got = want + 1;
  struct nc_sb *other = want + 2;
  struct cdev *cd = v1_device (want);
  uint32_t version = 0;

  assert_int_equal (super_read_version (cd, got, NULL, &version), 0);
  assert_int_equal (super_upgrade (cd, got), 0);
  assert_int_equal (got->seq, 13);
  assert_true (got->upgraded_unix > 0);
  cdev_sim_crash (cd, 0);
  assert_int_equal (super_read_version (cd, got, NULL, &version), 0);
  assert_int_equal (version, NC_FORMAT_VERSION);
  assert_table (got, want);
  /* Both copies are version 2 now. */
  read_slot (cd, 0, other);
  assert_int_equal (other->version, NC_FORMAT_VERSION);
  assert_null (super_validate (other, DEV_BYTES));
  read_slot (cd, 1, other);
  assert_int_equal (other->version, NC_FORMAT_VERSION);
  assert_null (super_validate (other, DEV_BYTES));
  cdev_close (cd);
  free (want);
}

/* The conversion cut at its n-th write (the device dies there), then
 * power loss with a random tear of what was not synced: the superblock
 * still reads, as version 1 or 2, with the same table; converting again
 * (as the next open does) ends in version 2.
 */
static void
test_super_upgrade_crash_sweep (void **state)
{
  struct nc_sb *want = calloc (2, sizeof *want), *got = want + 1;
  unsigned n, t, saw_v1 = 0, saw_v2 = 0;

  for (n = 1; n <= 5; n++)
    for (t = 0; t < 8; t++) {
      struct cdev *cd = v1_device (want);
      uint32_t version = 0;
      uint64_t tear = seed + n * 100 + t;

      assert_int_equal (super_read_version (cd, got, NULL, &version), 0);
      cdev_sim_crash (cd, 0);             /* counters from 0 */
      cdev_sim_fail_at_write (cd, n);
      test_log_clear ();
      (void) super_upgrade (cd, got);
      cdev_sim_crash (cd, tear);
      if (super_read_version (cd, got, NULL, &version) != 0)
        fail_msg ("write %u, tear %" PRIu64 ": the superblock does not read "
                  "after a crash in the conversion", n, tear);
      assert_table (got, want);
      if (version == NC_FORMAT_VERSION_V1) {
        saw_v1++;
        assert_int_equal (super_upgrade (cd, got), 0);
        assert_int_equal (super_read_version (cd, got, NULL, &version), 0);
        assert_table (got, want);
      }
      else
        saw_v2++;
      assert_int_equal (version, NC_FORMAT_VERSION);
      cdev_close (cd);
    }
  /* Cut before the first sync: version 1; after it: version 2. */
  assert_true (saw_v1 > 0 && saw_v2 > 0);
  free (want);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_super_upgrade_reads_v1),
    cmocka_unit_test (test_super_upgrade_converts),
    cmocka_unit_test (test_super_upgrade_crash_sweep),
  };

  seed = test_seed_from_env ("test-super-upgrade");
  test_log_capture ();
  return cmocka_run_group_tests (tests, NULL, NULL);
}
