/* SPDX-License-Identifier: BSD-3-Clause */
/* format.c — a whole new, empty cache (format.h).
 *
 * WHAT: nc_format plans the geometry (layout.h), checks the planned
 * superblock against super_validate, and writes the regions in an order
 * that is safe at every crash point.
 * WHY its own file: format writes through three modules (superblock, prio,
 * journal); inside the superblock module it made a circle with the two
 * modules that the superblock's checksum serves.
 *
 * INVARIANTS:
 * - it never leaves a state that reads as the *old* cache, nor a
 *   half-made new one that reads as valid:
 *     1. zero blocks 0 and 1 (both superblock copies), sync;
 *     2. zero the journal ring and the first block of both prio copies
 *        (an old journal entry or prio copy with the same uuid must never
 *        be taken for a new one), write prio copy A and the first journal
 *        entry (prio_format, journal_format), sync;
 *     3. write both superblock copies (each its export table, then its
 *        head) — seq 1 in slot 1 and seq 2 in slot 0, so both are valid
 *        and the usual alternation continues with slot 1 — and sync.
 *   A crash before step 3 is durable leaves no superblock magic: the
 *   device reads as "not an nbdcache device" and is formatted again.
 *
 * THREADS AND LOCKS: none here; the caller has the device to itself.
 * FAILURE: -EINVAL for options or a device that cannot work, -errno from
 * I/O; every failure is logged once with the device path and the step.
 * NOT HERE: the superblock's rules (super.c), prio copies (prio.c) and the
 * first journal entry (journal-replay.c), written through their modules.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/random.h>

#include "bucket.h"
#include "cdev.h"
#include "compiler.h"
#include "format.h"
#include "journal.h"
#include "layout.h"
#include "log.h"
#include "ondisk.h"
#include "super.h"

#define MIB (UINT64_C (1) << 20)

/* Zeroing writes are issued in pieces of this size. */
#define FORMAT_ZERO_CHUNK_BYTES (1 * MIB)

/* Write zeros over [offset, offset + count) (block multiples). */
static int
zero_range (struct cdev *cd, uint64_t offset, uint64_t count)
{
  size_t chunk = MIN (count, FORMAT_ZERO_CHUNK_BYTES);
  void *zeros;
  int r = 0;

  if (count == 0)
    return 0;
  zeros = cdev_alloc_buffer (chunk);
  if (zeros == NULL)
    return -ENOMEM;
  while (count > 0 && r == 0) {
    size_t n = MIN (count, (uint64_t) chunk);

    r = cdev_pwrite (cd, zeros, n, offset, 0);
    offset += n;
    count -= n;
  }
  free (zeros);
  return r;
}

static void
human_size (uint64_t bytes, char *buf, size_t size)
{
  static const char units[] = "BKMGTP";
  unsigned u = 0;

  while (u + 1 < sizeof units - 1 && bytes >= 1024 && bytes % 1024 == 0) {
    bytes /= 1024;
    u++;
  }
  if (u == 0)
    snprintf (buf, size, "%" PRIu64 " bytes", bytes);
  else
    snprintf (buf, size, "%" PRIu64 " %ciB", bytes, units[u]);
}

/* Fill in the geometry of *sb for this device, or -EINVAL (logged). */
static int
plan_layout (struct cdev *cd, const struct nc_format_options *opts,
             struct nc_sb *sb)
{
  struct nc_layout l;
  char s1[32], s2[32];
  int r;

  r = nc_layout_plan (cd->size_bytes, opts->bucket_bytes,
                      opts->journal_bytes, &l);
  if (r == -EINVAL) {
    log_error ("%s: bucket size %" PRIu64 " bytes: it must be a power of "
               "two from 64 KiB to 64 MiB", cd->path, l.bucket_bytes);
    return -EINVAL;
  }
  if (r == -ERANGE) {
    human_size (opts->journal_bytes, s1, sizeof s1);
    human_size (NC_LAYOUT_JOURNAL_BUCKETS_MIN * l.bucket_bytes, s2,
                sizeof s2);
    log_error ("%s: journal size %s is too small: the journal needs at "
               "least %u buckets (%s with this bucket size)", cd->path,
               s1, NC_LAYOUT_JOURNAL_BUCKETS_MIN, s2);
    return -EINVAL;
  }
  if (r < 0) {
    human_size (l.bucket_bytes, s1, sizeof s1);
    log_error ("%s: the device is too small (%" PRIu64 " bytes): with %s "
               "buckets and a %" PRIu64 "-bucket journal it must be at "
               "least %" PRIu64 " bytes (the superblock bucket, the "
               "journal, two prio copies, the data checksum region and %u data "
               "buckets)", cd->path,
               cd->size_bytes, s1, l.journal_buckets, l.min_device_bytes,
               NC_MIN_DATA_BUCKETS);
    return -EINVAL;
  }

  sb->bucket_blocks = (uint32_t) (l.bucket_bytes / NC_BLOCK_BYTES);
  sb->nbuckets = (uint32_t) l.nbuckets;
  sb->journal_first = 1;
  sb->journal_buckets = (uint32_t) l.journal_buckets;
  sb->prio_first = 1 + (uint32_t) l.journal_buckets;
  sb->prio_buckets = (uint32_t) l.prio_buckets;
  sb->data_first = (uint32_t) l.data_first;
  if (opts->no_data_checksums)
    sb->data_first -= (uint32_t) l.csum_buckets;
  else {
    sb->features = NC_FEATURE_DATA_CSUM;
    sb->csum_first = sb->prio_first + 2 * sb->prio_buckets;
    sb->csum_buckets = (uint32_t) l.csum_buckets;
  }
  sb->table_blocks = super_table_blocks_for (sb->bucket_blocks);
  return 0;
}

int
nc_format (struct cdev *cd, const struct nc_format_options *opts)
{
  static const struct nc_format_options defaults;
  struct nc_sb *sb;
  const char *why;
  char s1[32], s2[32];
  int r;

  if (opts == NULL)
    opts = &defaults;
  sb = calloc (1, sizeof *sb);
  if (sb == NULL)
    return -ENOMEM;

  sb->magic = NC_SB_MAGIC;
  sb->version = NC_FORMAT_VERSION;
  sb->block_bytes = NC_BLOCK_BYTES;
  sb->device_bytes = cd->size_bytes;
  sb->created_unix = (uint64_t) time (NULL);
  if ((r = plan_layout (cd, opts, sb)) < 0)
    goto out;
  if (opts->uuid != NULL)
    memcpy (sb->uuid, opts->uuid, sizeof sb->uuid);
  else {
    ssize_t n = getrandom (sb->uuid, sizeof sb->uuid, 0);

    if (n != (ssize_t) sizeof sb->uuid) {
      r = n < 0 ? -errno : -EIO;
      log_error ("%s: format: cannot get random bytes for the uuid: %s",
                 cd->path, strerror (-r));
      goto out;
    }
  }
  sb->seq = 1;
  super_set_csum (sb);
  if ((why = super_validate (sb, cd->size_bytes)) != NULL) {
    /* plan_layout and super_validate disagree: a bug, not the device. */
    log_error ("%s: format: the planned superblock is invalid (%s)",
               cd->path, why);
    r = -EINVAL;
    goto out;
  }

  /* 1. No superblock: from here a crash leaves "not an nbdcache device". */
  if ((r = zero_range (cd, 0, NC_SB_SLOTS * NC_BLOCK_BYTES)) < 0 ||
      (r = cdev_sync (cd)) < 0) {
    log_error ("%s: format: cannot clear the old superblocks", cd->path);
    goto out;
  }

  /* 2. The journal and prio regions, then their first contents. */
  if ((r = zero_range (cd, super_bucket_offset (sb, sb->journal_first),
                       sb->journal_buckets * super_bucket_bytes (sb))) < 0 ||
      (r = zero_range (cd, super_bucket_offset (sb, sb->prio_first),
                       NC_BLOCK_BYTES)) < 0 ||
      (r = zero_range (cd, super_bucket_offset (sb, sb->prio_first +
                                                sb->prio_buckets),
                       NC_BLOCK_BYTES)) < 0) {
    log_error ("%s: format: cannot clear the journal and prio regions",
               cd->path);
    goto out;
  }
  if ((r = prio_format (cd, sb)) < 0 || (r = journal_format (cd, sb)) < 0 ||
      (r = cdev_sync (cd)) < 0) {
    log_error ("%s: format: cannot write the first prio copy and journal "
               "entry", cd->path);
    goto out;
  }

  /* 3. Both superblock copies (each its table, then its head), last. */
  r = super_write_copy (cd, sb, 1);                     /* seq 1 */
  if (r == 0) {
    sb->seq = 2;
    super_set_csum (sb);
    r = super_write_copy (cd, sb, 0);                   /* seq 2 */
  }
  if (r < 0 || (r = cdev_sync (cd)) < 0) {
    log_error ("%s: format: cannot write the superblocks", cd->path);
    goto out;
  }

  if (!opts->quiet) {
    human_size (super_bucket_bytes (sb), s1, sizeof s1);
    human_size ((uint64_t) sb->journal_buckets * super_bucket_bytes (sb),
                s2, sizeof s2);
    log_info ("%s: formatted: %" PRIu32 " buckets of %s, journal %s, "
              "%" PRIu32 " data buckets", cd->path, sb->nbuckets, s1, s2,
              sb->nbuckets - sb->data_first);
  }
  r = 0;

 out:
  free (sb);
  return r;
}
