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
 *   NC_MIN_DATA_BUCKETS data buckets; table_blocks is what the bucket size
 *   gives (super_table_blocks_for) and table_csum matches the table; every
 *   used export slot (of the first table_blocks * 8) has id 1..slots
 *   (unique), a known kind, a NUL-terminated uri, name and devid;
 *   nr_exports equals the used slots.
 *
 * VERSION 1: a version 1 copy is read, checked and converted in memory
 * (super_from_v1); super_read_version says which version the copy in use
 * had, and super_upgrade writes it back as version 2 (device.c does, at
 * every writable open).
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
/* As super_read, and *version (if non-NULL) the format version the copy
 * in use has on the device (NC_FORMAT_VERSION_V1: converted in memory,
 * not yet written).
 */
int super_read_version (struct cdev *cd, struct nc_sb *sb, int *slot,
                        uint32_t *version);

/* One copy, for tools that show both (inspect.c).  sb gets the copy,
 * converted if version 1, when state is SUPER_COPY_VALID (and possibly
 * garbage otherwise).
 */
enum super_copy_state {
  SUPER_COPY_IO_ERROR,          /* the read failed */
  SUPER_COPY_NO_MAGIC,          /* not ours (or never written) */
  SUPER_COPY_INVALID,           /* ours, but fails validation */
  SUPER_COPY_VALID,
};
struct super_copy {
  enum super_copy_state state;
  int err;                      /* SUPER_COPY_IO_ERROR: -errno */
  const char *why;              /* not VALID: the reason (static) */
  bool has_magic;
  uint64_t seq;                 /* has_magic: the head's seq */
  uint32_t version;             /* has_magic: the head's version */
};
void super_read_copy (struct cdev *cd, int slot, struct nc_sb *sb,
                      struct super_copy *c);

/* NULL if two valid copies of one cache set (newer, older) agree on what
 * never changes (the geometry; each used slot's id and backing identity,
 * super_same_backing, except a LEGACY slot adopted since), else why not
 * and *slot_out the table slot (or -1).  A bit flip in the newer copy's
 * export table, checksum recomputed, would otherwise attach the backing
 * as a new export and orphan its dirty data.
 */
const char *super_copies_disagree (const struct nc_sb *newer,
                                   const struct nc_sb *older, int *slot_out);

/* Quietly: 0 if either superblock slot has our magic (valid or not),
 * -ENOTSUP if neither does (an unformatted or foreign device), -errno on
 * an I/O error.  Lets "create = yes" decide to format without logging an
 * error first.
 */
int super_probe (struct cdev *cd);

/* NULL if valid, else a static string saying what is wrong. */
const char *super_validate (const struct nc_sb *sb, uint64_t device_bytes);

/* sb->seq++, recompute csums, write table and head to slot seq % 2,
 * sync.
 */
int super_write (struct cdev *cd, struct nc_sb *sb);
/* Write sb as it is (csums set) to copy `slot`: table, then head; no
 * sync (format.c, tests).
 */
int super_write_copy (struct cdev *cd, const struct nc_sb *sb, int slot);
/* A version 1 superblock read by super_read_version: write it as version
 * 2 to both copies (two super_writes; crash-safe, see super.c).  0 or
 * -errno (logged).
 */
int super_upgrade (struct cdev *cd, struct nc_sb *sb);
/* Convert a version 1 head (valid or not) to the in-memory form. */
void super_from_v1 (const struct nc_sb_v1 *v1, struct nc_sb *sb);
/* The version 1 head of sb (tests and the fixture tool that makes a
 * version 1 cache: bsets, prios and journal are the same in both
 * versions; a data checksum region becomes empty data buckets: version
 * 1 has none).  -E2BIG if sb does not fit version 1 (an id above 15,
 * more than 15 exports, a uri of 176 bytes or more).
 */
int super_to_v1 (const struct nc_sb *sb, struct nc_sb_v1 *v1);

/* Recompute sb->table_csum and sb->csum (used by super_write and tests). */
void super_set_csum (struct nc_sb *sb);

/* Export table blocks per copy for a bucket size (0: too small). */
uint32_t super_table_blocks_for (uint32_t bucket_blocks);
/* Slots in sb's table (ids are 1 .. this). */
static inline uint32_t
super_table_slots (const struct nc_sb *sb)
{
  uint32_t t = sb->table_blocks <= NC_TABLE_BLOCKS_MAX
    ? sb->table_blocks : NC_TABLE_BLOCKS_MAX;
  return t * NC_TABLE_SLOTS_PER_BLOCK;
}
/* Byte offset of table copy `slot`. */
static inline uint64_t
super_table_offset (const struct nc_sb *sb, int slot)
{
  return ((uint64_t) NC_TABLE_FIRST_BLOCK
          + (uint64_t) slot * sb->table_blocks) * NC_BLOCK_BYTES;
}

/* ---- the export table: THE lookup of a backing store's slot ---- */

/* True if two slots (or a slot and a candidate) name the same backing
 * store: FILE by its user.nbdcache.id, else (no id: xattrs unsupported)
 * by device, inode and birth time; BLOCK by devid; URI and LEGACY by uri.
 */
bool super_same_backing (const struct nc_sb_export *a,
                         const struct nc_sb_export *b);

enum super_match {
  SUPER_MATCH_NONE,             /* not in the table: add it */
  SUPER_MATCH,                  /* *out is its slot */
  SUPER_MATCH_ADOPT,            /* *out is a version 1 (LEGACY) slot at
                                   want's uri: record want's identity */
  SUPER_MATCH_CONFLICT,         /* *out is another backing's slot whose
                                   last known place is want's uri: a
                                   different backing at the same path */
};
/* Where `want` (a candidate slot: kind, flags, identity, uri) belongs. */
enum super_match super_match_export (struct nc_sb *sb,
                                     const struct nc_sb_export *want,
                                     struct nc_sb_export **out);
/* The slot with export id `id`, or NULL. */
struct nc_sb_export *super_find_id (const struct nc_sb *sb, uint16_t id);
/* The used slot whose uri equals `uri`, or NULL. */
struct nc_sb_export *super_find_export (struct nc_sb *sb, const char *uri);
/* Add want (lowest free id) in memory; the caller writes the sb.
 * -ENOSPC if the table is full, -ENAMETOOLONG if a string is not
 * terminated, -EEXIST if its backing has a slot already.
 */
int super_add_identity (struct nc_sb *sb, const struct nc_sb_export *want,
                        struct nc_sb_export **out);
/* super_add_identity of a URI-kind slot. */
int super_add_export (struct nc_sb *sb, const char *name, const char *uri,
                      uint64_t backing_bytes, uint8_t mode,
                      struct nc_sb_export **out);
/* Free slot e in memory (its keys must be gone: forget). */
void super_remove_export (struct nc_sb *sb, struct nc_sb_export *e);

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
