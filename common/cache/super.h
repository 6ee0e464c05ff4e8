/* SPDX-License-Identifier: BSD-3-Clause */
/* super.h — the superblock: read and validate it, update the export table.
 *
 * WHAT: super_read picks the newest valid copy and checks every field;
 * super_write writes seq+1 to the other slot and syncs; helpers find/add
 * exports in the table.  Writing a new cache is format.h; the checksum of
 * every metadata block is csum.h.
 * WHY: the superblock is the one place that says where everything is and
 * which backing store each export id belongs to.
 *
 * INVARIANTS of a valid superblock (super_validate checks all of them and
 * names the first that fails):
 *   csum, magic, version, block_bytes == 4096; bucket_blocks a power of two
 *   in [NC_BUCKET_BLOCKS_MIN, MAX]; nbuckets * bucket_blocks * 4096 <=
 *   device size; 1 <= journal_first; regions [journal], [prio A], [prio B]
 *   are consecutive, non-empty, and end at data_first < nbuckets; the prio
 *   copy fits: 64 + nbuckets * 4 <= prio_buckets * bucket bytes; at least
 *   NC_MIN_DATA_BUCKETS data buckets; every used export slot has id
 *   1..NC_MAX_EXPORTS (unique), a NUL-terminated uri and name; nr_exports
 *   equals the used slots.
 *
 * THREADS: the caller serialises (the device's superblock mutex).
 * FAILURE: -EBADMSG with a message naming the device, the copy and the
 * reason for a bad superblock; -ENOTSUP / "not an nbdcache device" when
 * neither copy has the magic; -errno from I/O.
 */
#ifndef NBDCACHE_SUPER_H
#define NBDCACHE_SUPER_H

#include <stdbool.h>
#include <stdint.h>

#include "layout.h"
#include "ondisk.h"

struct cdev;

#define NC_MIN_DATA_BUCKETS NC_LAYOUT_MIN_DATA_BUCKETS

/* Read both copies, return the newest valid one in *sb (and which slot in
 * *slot if non-NULL).  Returns -ENOTSUP if neither copy has our magic
 * ("not an nbdcache cache device"), -EBADMSG if there is one but no copy is
 * valid, logging why each copy was refused.
 */
int super_read (struct cdev *cd, struct nc_sb *sb, int *slot);

/* Quietly: 0 if either superblock slot has our magic (valid or not),
 * -ENOTSUP if neither does (an unformatted or foreign device), -errno on
 * an I/O error.  Lets "create = yes" decide to format without logging an
 * error first.
 */
int super_probe (struct cdev *cd);

/* NULL if valid, else a static string saying what is wrong. */
const char *super_validate (const struct nc_sb *sb, uint64_t device_bytes);

/* sb->seq++, recompute csum, write to slot seq % 2, sync. */
int super_write (struct cdev *cd, struct nc_sb *sb);

/* Recompute sb->csum (used by super_write and tests). */
void super_set_csum (struct nc_sb *sb);

/* The export-table slot whose uri equals `uri`, or NULL. */
struct nc_sb_export *super_find_export (struct nc_sb *sb, const char *uri);
/* Add an export (lowest free id) in memory; the caller writes the sb.
 * -ENOSPC if the table is full, -ENAMETOOLONG if uri does not fit.
 */
int super_add_export (struct nc_sb *sb, const char *name, const char *uri,
                      uint64_t backing_bytes, uint8_t mode,
                      struct nc_sb_export **out);

/* Byte offsets of regions, from a valid sb. */
static inline uint64_t
super_bucket_offset (const struct nc_sb *sb, uint32_t bucket)
{
  return (uint64_t) bucket * sb->bucket_blocks * NC_BLOCK_BYTES;
}
static inline uint64_t
super_bucket_bytes (const struct nc_sb *sb)
{
  return (uint64_t) sb->bucket_blocks * NC_BLOCK_BYTES;
}

#endif /* NBDCACHE_SUPER_H */
