/* SPDX-License-Identifier: BSD-3-Clause */
/* test-super-write.c — unit tests for writing the superblock (super.c)
 * and its export table.
 *
 * WHAT: super_write alternating slots, a failed or torn write keeping the
 * previous copy, and a retry after a failure not touching the good copy;
 * the export table (add, find, full, long uri, long name, duplicate uri);
 * THE slot lookup (super_match_export): a renamed or moved file found by
 * its id, another file at a known path refused, the no-xattr fallback
 * (dev + inode + birth time, a reused inode refused), a block device
 * under another name, a version 1 slot adopted; the copies' agreement
 * on identities (adoption and freed slots allowed).
 * HOW: the simulated cache device (cdev-sim.c) loses unsynced writes on a
 * crash; the fixtures of test-super-fx.c.
 * SEED: the torn-write test is randomised; NBDCACHE_SEED overrides the
 * seed, which is always printed.
 * THREADS AND LOCKS: single-threaded.  FAILURE: cmocka assertions.
 * NOT HERE: reading and validating (test-super.c), nc_format
 * (test-format.c).
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
    memcpy (buf, &next, NC_BLOCK_BYTES);  /* the head; same table */
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
  cdev_sim_poke (cd, (next.seq % 2) * NC_BLOCK_BYTES, &got, NC_BLOCK_BYTES);
  test_log_clear ();
  assert_int_equal (super_read (cd, &got, NULL), 0);
  assert_int_equal (got.seq, sb.seq);
  assert_non_null (strstr (test_log_last_warning (), "checksum"));
  free (buf);
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
  unsigned i;

  assert_int_equal (super_read (cd, &sb, NULL), 0);
  assert_null (super_find_export (&sb, "file:/nothing"));

  for (i = 1; i <= NC_MAX_EXPORTS; i++) {
    snprintf (uri, sizeof uri, "file:/backing/%u", i);
    snprintf (name, sizeof name, "export%u", i);
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
    snprintf (uri, sizeof uri, "file:/backing/%u", i);
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

/* ---- THE slot lookup: super_match_export ---- */

static struct nc_sb_export
file_id (const char *uri, uint8_t u, uint64_t ino, int64_t btime)
{
  struct nc_sb_export w;

  memset (&w, 0, sizeof w);
  w.kind = NC_BACKING_FILE;
  w.dev = 7;
  w.ino = ino;
  if (u != 0) {
    w.flags |= NC_ID_UUID;
    memset (w.uuid, u, sizeof w.uuid);
  }
  if (btime != 0) {
    w.flags |= NC_ID_BTIME;
    w.btime_sec = btime;
  }
  snprintf (w.uri, sizeof w.uri, "%s", uri);
  return w;
}

static void
test_super_match_identity (void **state)
{
  struct cdev *cd = formatted (DEV_BYTES, 0);
  struct nc_sb sb;
  struct nc_sb_export w, *e, *a, *b, *c, *d;

  assert_int_equal (super_read (cd, &sb, NULL), 0);
  /* a: a file with an id; b: one without (no user xattrs), known by
   * dev + ino + btime; c: a block device; d: a version 1 slot.
   */
  w = file_id ("file:///a", 0xaa, 10, 0);
  assert_int_equal (super_match_export (&sb, &w, &e), SUPER_MATCH_NONE);
  assert_int_equal (super_add_identity (&sb, &w, &a), 0);
  assert_int_equal (super_add_identity (&sb, &w, NULL), -EEXIST);
  w = file_id ("file:///b", 0, 20, 1000);
  assert_int_equal (super_add_identity (&sb, &w, &b), 0);
  memset (&w, 0, sizeof w);
  w.kind = NC_BACKING_BLOCK;
  strcpy (w.devid, "wwid:naa.5000");
  strcpy (w.uri, "file:///dev/sdx");
  assert_int_equal (super_add_identity (&sb, &w, &c), 0);
  assert_int_equal (super_add_export (&sb, "v1", "file:///d", 1, 0, &d), 0);
  d->kind = NC_BACKING_LEGACY;

  /* Renamed / moved (another inode too): the id finds it. */
  w = file_id ("file:///elsewhere/a2", 0xaa, 99, 0);
  assert_int_equal (super_match_export (&sb, &w, &e), SUPER_MATCH);
  assert_ptr_equal (e, a);
  /* Another file at a's path, without an id or with another one. */
  w = file_id ("file:///a", 0, 10, 0);
  assert_int_equal (super_match_export (&sb, &w, &e), SUPER_MATCH_CONFLICT);
  assert_ptr_equal (e, a);
  w = file_id ("file:///a", 0xbb, 11, 0);
  assert_int_equal (super_match_export (&sb, &w, &e), SUPER_MATCH_CONFLICT);
  /* No xattrs: renamed within the filesystem (same inode, birth time). */
  w = file_id ("file:///b-renamed", 0, 20, 1000);
  assert_int_equal (super_match_export (&sb, &w, &e), SUPER_MATCH);
  assert_ptr_equal (e, b);
  /* ... an inode number reused by a new file: another birth time. */
  w = file_id ("file:///b", 0, 20, 2000);
  assert_int_equal (super_match_export (&sb, &w, &e), SUPER_MATCH_CONFLICT);
  assert_ptr_equal (e, b);
  /* A block device under another name. */
  memset (&w, 0, sizeof w);
  w.kind = NC_BACKING_BLOCK;
  strcpy (w.devid, "wwid:naa.5000");
  strcpy (w.uri, "file:///dev/disk/by-id/x");
  assert_int_equal (super_match_export (&sb, &w, &e), SUPER_MATCH);
  assert_ptr_equal (e, c);
  /* A version 1 slot is adopted by whatever is at its path. */
  w = file_id ("file:///d", 0xdd, 30, 0);
  assert_int_equal (super_match_export (&sb, &w, &e), SUPER_MATCH_ADOPT);
  assert_ptr_equal (e, d);
  /* An adopted slot may differ from the older copy's LEGACY one; another
   * identity in a used slot may not.
   */
  {
    struct nc_sb *older = calloc (1, sizeof *older);
    int slot;

    assert_non_null (older);
    memcpy (older, &sb, sizeof sb);
    d->kind = NC_BACKING_FILE;
    d->flags = NC_ID_UUID;
    memset (d->uuid, 0xdd, sizeof d->uuid);
    assert_null (super_copies_disagree (&sb, older, &slot));
    a->uuid[0] ^= 1;
    assert_non_null (super_copies_disagree (&sb, older, &slot));
    assert_int_equal (slot, (int) (a - sb.exports));
    a->uuid[0] ^= 1;
    /* A slot freed since (forget) is not a disagreement. */
    super_remove_export (&sb, b);
    assert_int_equal (sb.nr_exports, 3);
    assert_null (super_copies_disagree (&sb, older, &slot));
    free (older);
  }
  cdev_close (cd);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_super_write_alternates),
    cmocka_unit_test (test_super_write_failure_keeps_previous),
    cmocka_unit_test (test_super_write_torn),
    cmocka_unit_test (test_super_exports),
    cmocka_unit_test (test_super_export_limits),
    cmocka_unit_test (test_super_match_identity),
  };
  seed = test_seed_from_env ("test-super-write");
  test_log_capture ();
  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
