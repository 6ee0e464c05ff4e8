/* SPDX-License-Identifier: BSD-3-Clause */
/* super.c — the superblock: read and validate it, update it, and keep its
 * export table.
 *
 * WHAT: super_validate (every invariant of super.h, naming the first that
 * fails), super_read (the newest valid of the two copies, either format
 * version: a version 1 copy is converted in memory), super_write (seq + 1
 * to the other slot, table then head, then sync), and the export table:
 * THE one lookup of a backing store's slot (super_match_export), adding
 * and freeing slots.
 * A leaf: it calls the cache device and the checksum, nothing above.
 * WHY: the superblock says where everything else is and which backing
 * store each export id belongs to; nothing may trust the device before a
 * copy of it has passed every check here.
 *
 * INVARIANTS:
 * - Copy n lives in block n (n = 0, 1).  A copy with seq s is always in
 *   slot s % 2 (super_read refuses one that is not), so super_write
 *   overwrites the *older* copy and a torn or failed write leaves the
 *   newer one intact.  On failure super_write puts
 *   the in-memory seq back, so a retry targets the same (older) slot again
 *   rather than the only good copy.
 * - super_write refuses to write a superblock that does not validate.
 * - The geometry never changes after format, and an export slot's
 *   identity (id and backing URI) never changes after it is added
 *   (slots are never freed): two valid copies of one cache set agree on
 *   both, or super_read refuses (-EBADMSG).  The recorded backing size
 *   may grow (device.c: a grown backing is served at its new size), so
 *   the copies may differ there; the newer one wins like everywhere.
 *
 * THREADS AND LOCKS: none here; the caller serialises (the device's
 * superblock mutex, or a single-threaded tool).
 * FAILURE: -EBADMSG for a corrupt superblock, -ENOTSUP for a device with no
 * superblock magic at all,
 * -errno from I/O (cdev logs those; we add what we were doing).  Every
 * failure is logged once here with the device path; super_add_export is
 * pure memory and leaves the message to its caller, which knows the export.
 * NOT HERE: writing a new cache (format.c), the checksum (csum.c), prio
 * copies (prio.c) and journal entries (journal.c).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cdev.h"
#include "compiler.h"
#include "csum.h"
#include "layout.h"
#include "log.h"
#include "ondisk.h"
#include "super.h"

uint32_t
super_table_blocks_for (uint32_t bucket_blocks)
{
  uint32_t t = bucket_blocks > NC_TABLE_FIRST_BLOCK
    ? (bucket_blocks - NC_TABLE_FIRST_BLOCK) / 2 : 0;

  return t < NC_TABLE_BLOCKS_MAX ? t : NC_TABLE_BLOCKS_MAX;
}

/* The table's checksum as sb's features say it is computed: every byte
 * (NC_FEATURE_TABLE_CSUM), or, on a cache written before that bit, the
 * old way with the first 8 bytes skipped.
 */
static uint64_t
table_csum (const struct nc_sb *sb)
{
  size_t bytes = (size_t) sb->table_blocks * NC_BLOCK_BYTES;

  return sb->features & NC_FEATURE_TABLE_CSUM
    ? nc_csum_whole (sb->exports, bytes) : nc_csum (sb->exports, bytes);
}

/* Every write of a version 2 head goes through here: it writes the
 * whole-table checksum, so a cache from before NC_FEATURE_TABLE_CSUM
 * gets it at its first superblock write.
 */
void
super_set_csum (struct nc_sb *sb)
{
  sb->features |= NC_FEATURE_TABLE_CSUM;
  if (sb->table_blocks >= 1 && sb->table_blocks <= NC_TABLE_BLOCKS_MAX)
    sb->table_csum = table_csum (sb);
  sb->csum = nc_csum (sb, NC_BLOCK_BYTES);
}

static bool
is_terminated (const char *s, size_t size)
{
  return memchr (s, '\0', size) != NULL;
}

const char *
super_validate (const struct nc_sb *sb, uint64_t device_bytes)
{
  const char *why;
  uint64_t bucket_bytes, prio_end, data_first, prio_needed;
  bool seen[NC_MAX_EXPORTS + 1] = { false };
  uint32_t used = 0;
  size_t i;

  why = "bad checksum";
  if (sb->csum != nc_csum (sb, NC_BLOCK_BYTES))
    goto bad;
  why = "bad magic";
  if (sb->magic != NC_SB_MAGIC)
    goto bad;
  why = "unsupported format version";
  if (sb->version != NC_FORMAT_VERSION)
    goto bad;
  why = "block size is not 4096";
  if (sb->block_bytes != NC_BLOCK_BYTES)
    goto bad;
  why = "bucket size is not a power of two";
  if (!is_power_of_2 (sb->bucket_blocks))
    goto bad;
  why = "bucket size is outside 64 KiB .. 64 MiB";
  if (sb->bucket_blocks < NC_BUCKET_BLOCKS_MIN ||
      sb->bucket_blocks > NC_BUCKET_BLOCKS_MAX)
    goto bad;
  bucket_bytes = (uint64_t) sb->bucket_blocks * NC_BLOCK_BYTES;
  why = "the buckets extend past the end of the device";
  if ((uint64_t) sb->nbuckets * bucket_bytes > device_bytes)
    goto bad;
  why = "the journal overlaps the superblock bucket";
  if (sb->journal_first < 1)
    goto bad;
  why = "the journal is empty";
  if (sb->journal_buckets == 0)
    goto bad;
  why = "the prio copies are empty";
  if (sb->prio_buckets == 0)
    goto bad;
  why = "the prio copies do not follow the journal";
  if ((uint64_t) sb->journal_first + sb->journal_buckets != sb->prio_first)
    goto bad;
  prio_end = (uint64_t) sb->prio_first + 2 * (uint64_t) sb->prio_buckets;
  why = "unknown feature flags";
  if ((sb->features & ~NC_FEATURE_ALL) != 0)
    goto bad;
  if (sb->features & NC_FEATURE_DATA_CSUM) {
    why = "the data checksum region does not follow the prio copies";
    if (sb->csum_first != prio_end)
      goto bad;
    prio_end += sb->csum_buckets;
  }
  else {
    why = "a data checksum region without the feature flag";
    if (sb->csum_first != 0 || sb->csum_buckets != 0)
      goto bad;
  }
  why = "the data area does not follow the prio copies";
  if (prio_end != sb->data_first)
    goto bad;
  data_first = sb->data_first;
  why = "the metadata regions run past the last bucket";
  if (data_first >= sb->nbuckets)
    goto bad;
  prio_needed = sizeof (struct nc_prio) +
    (uint64_t) sb->nbuckets * sizeof (struct nc_prio_entry);
  why = "a prio copy is too small for the bucket count";
  if (prio_needed > (uint64_t) sb->prio_buckets * bucket_bytes)
    goto bad;
  why = "the data checksum region is too small for the bucket count";
  if ((sb->features & NC_FEATURE_DATA_CSUM) &&
      sb->csum_buckets < nc_layout_csum_buckets (sb->nbuckets))
    goto bad;
  why = "too few data buckets";
  if (sb->nbuckets - data_first < NC_MIN_DATA_BUCKETS)
    goto bad;
  why = "the export table size does not match the bucket size";
  if (sb->table_blocks != super_table_blocks_for (sb->bucket_blocks) ||
      sb->table_blocks == 0)
    goto bad;
  why = "bad export table checksum";
  if (sb->table_csum != table_csum (sb))
    goto bad;

  for (i = 0; i < super_table_slots (sb); i++) {
    const struct nc_sb_export *e = &sb->exports[i];

    if (e->id == 0)
      continue;
    why = "an export id is out of range";
    if (e->id > super_table_slots (sb))
      goto bad;
    why = "duplicate export id";
    if (seen[e->id])
      goto bad;
    seen[e->id] = true;
    why = "an export uri is not NUL-terminated";
    if (!is_terminated (e->uri, sizeof e->uri))
      goto bad;
    why = "an export name is not NUL-terminated";
    if (!is_terminated (e->name, sizeof e->name))
      goto bad;
    why = "an export device id is not NUL-terminated";
    if (!is_terminated (e->devid, sizeof e->devid))
      goto bad;
    why = "an export has an unknown backing kind";
    if (e->kind > NC_BACKING_LEGACY)
      goto bad;
    used++;
  }
  why = "nr_exports does not match the export table";
  if (sb->nr_exports != used)
    goto bad;
  return NULL;

 bad:
  return why;
}

/* ---- version 1 ---- */

/* NULL if the v1 copy's own checks pass (those that the conversion would
 * hide: its checksum, its id range, unterminated strings), else why not.
 * The geometry is checked after conversion, by super_validate.
 */
static const char *
v1_validate (const struct nc_sb_v1 *v1)
{
  bool seen[NC_V1_MAX_EXPORTS + 1] = { false };
  size_t i;

  if (v1->csum != nc_csum (v1, sizeof *v1))
    return "bad checksum";
  for (i = 0; i < NC_V1_MAX_EXPORTS; i++) {
    const struct nc_sb_v1_export *e = &v1->exports[i];

    if (e->id == 0)
      continue;
    if (e->id > NC_V1_MAX_EXPORTS)
      return "an export id is out of range";
    if (seen[e->id])
      return "duplicate export id";
    seen[e->id] = true;
    if (!is_terminated (e->uri, sizeof e->uri))
      return "an export uri is not NUL-terminated";
    if (!is_terminated (e->name, sizeof e->name))
      return "an export name is not NUL-terminated";
  }
  return NULL;
}

void
super_from_v1 (const struct nc_sb_v1 *v1, struct nc_sb *sb)
{
  size_t i;

  memset (sb, 0, sizeof *sb);
  sb->magic = v1->magic;
  sb->version = NC_FORMAT_VERSION;
  sb->block_bytes = v1->block_bytes;
  sb->seq = v1->seq;
  memcpy (sb->uuid, v1->uuid, sizeof sb->uuid);
  sb->device_bytes = v1->device_bytes;
  sb->created_unix = v1->created_unix;
  sb->bucket_blocks = v1->bucket_blocks;
  sb->nbuckets = v1->nbuckets;
  sb->journal_first = v1->journal_first;
  sb->journal_buckets = v1->journal_buckets;
  sb->prio_first = v1->prio_first;
  sb->prio_buckets = v1->prio_buckets;
  sb->data_first = v1->data_first;
  sb->nr_exports = v1->nr_exports;
  sb->table_blocks = super_table_blocks_for (v1->bucket_blocks);
  for (i = 0; i < NC_V1_MAX_EXPORTS && i < NC_MAX_EXPORTS; i++) {
    const struct nc_sb_v1_export *o = &v1->exports[i];
    struct nc_sb_export *e = &sb->exports[i];

    if (o->id == 0)
      continue;
    e->id = o->id;
    e->mode = o->mode;
    e->backing_bytes = o->backing_bytes;
    /* A file (or block device) was known by its path only: the first
     * bind finds it there and records what identifies it.  A remote's
     * URI is its identity.
     */
    e->kind = strncmp (o->uri, "file:", 5) == 0 ? NC_BACKING_LEGACY
      : NC_BACKING_URI;
    memcpy (e->name, o->name, strnlen (o->name, sizeof o->name));
    memcpy (e->uri, o->uri, strnlen (o->uri, sizeof o->uri));
  }
  super_set_csum (sb);
}

int
super_to_v1 (const struct nc_sb *sb, struct nc_sb_v1 *v1)
{
  uint32_t n = super_table_slots (sb), used = 0;
  size_t i;

  memset (v1, 0, sizeof *v1);
  for (i = 0; i < n; i++) {
    const struct nc_sb_export *e = &sb->exports[i];
    struct nc_sb_v1_export *o;

    if (e->id == 0)
      continue;
    if (e->id > NC_V1_MAX_EXPORTS || used == NC_V1_MAX_EXPORTS ||
        strlen (e->uri) >= sizeof o->uri)
      return -E2BIG;
    o = &v1->exports[used++];
    o->id = e->id;
    o->mode = e->mode;
    o->backing_bytes = e->backing_bytes;
    snprintf (o->name, sizeof o->name, "%s", e->name);
    memcpy (o->uri, e->uri, strlen (e->uri) + 1);
  }
  v1->magic = sb->magic;
  v1->version = NC_FORMAT_VERSION_V1;
  v1->block_bytes = sb->block_bytes;
  v1->seq = sb->seq;
  memcpy (v1->uuid, sb->uuid, sizeof v1->uuid);
  v1->device_bytes = sb->device_bytes;
  v1->created_unix = sb->created_unix;
  v1->bucket_blocks = sb->bucket_blocks;
  v1->nbuckets = sb->nbuckets;
  v1->journal_first = sb->journal_first;
  v1->journal_buckets = sb->journal_buckets;
  v1->prio_first = sb->prio_first;
  v1->prio_buckets = sb->prio_buckets;
  /* Version 1 has no data checksums: their region becomes data buckets
   * that hold nothing (no key points there; their gens are 0).
   */
  v1->data_first = sb->prio_first + 2 * sb->prio_buckets;
  v1->nr_exports = used;
  v1->csum = nc_csum (v1, sizeof *v1);
  return 0;
}

/* ---- reading ---- */

static void
read_copy (struct cdev *cd, struct nc_sb *sb, int slot,
           struct super_copy *c)
{
  struct nc_sb_v1 *head = cdev_alloc_buffer (NC_BLOCK_BYTES);
  int r;

  memset (c, 0, sizeof *c);
  if (head == NULL) {
    c->state = SUPER_COPY_IO_ERROR;
    c->err = -ENOMEM;
    c->why = "out of memory";
    return;
  }
  r = cdev_pread (cd, head, NC_BLOCK_BYTES, (uint64_t) slot * NC_BLOCK_BYTES);
  if (r < 0) {
    c->state = SUPER_COPY_IO_ERROR;
    c->err = r;
    c->why = "read error";
    goto out;
  }
  if (head->magic != NC_SB_MAGIC) {
    c->state = SUPER_COPY_NO_MAGIC;
    c->why = "no superblock magic";
    goto out;
  }
  c->has_magic = true;
  c->seq = head->seq;
  c->version = head->version;
  if (head->version == NC_FORMAT_VERSION_V1) {
    if ((c->why = v1_validate (head)) == NULL) {
      super_from_v1 (head, sb);
      c->why = super_validate (sb, cd->size_bytes);
    }
  }
  else if (head->version != NC_FORMAT_VERSION)
    c->why = "unsupported format version";
  else {
    uint32_t tb;

    memset (sb, 0, sizeof *sb);
    memcpy (sb, head, NC_BLOCK_BYTES);
    tb = sb->table_blocks;
    if (tb == 0 || tb != super_table_blocks_for (sb->bucket_blocks) ||
        sb->csum != nc_csum (sb, NC_BLOCK_BYTES))
      c->why = super_validate (sb, cd->size_bytes);  /* names it */
    else {
      void *t = cdev_alloc_buffer ((size_t) tb * NC_BLOCK_BYTES);

      r = t == NULL ? -ENOMEM
        : cdev_pread (cd, t, (size_t) tb * NC_BLOCK_BYTES,
                      super_table_offset (sb, slot));
      if (r < 0) {
        free (t);
        c->state = SUPER_COPY_IO_ERROR;
        c->err = r;
        c->why = "export table read error";
        goto out;
      }
      memcpy (sb->exports, t, (size_t) tb * NC_BLOCK_BYTES);
      free (t);
      c->why = super_validate (sb, cd->size_bytes);
    }
  }
  /* A copy in the wrong slot would make the next update overwrite the
   * newest copy instead of the older one.
   */
  if (c->why == NULL && head->seq % NC_SB_SLOTS != (uint64_t) slot)
    c->why = "seq does not match its slot";
  c->state = c->why == NULL ? SUPER_COPY_VALID : SUPER_COPY_INVALID;
 out:
  free (head);
}

void
super_read_copy (struct cdev *cd, int slot, struct nc_sb *sb,
                 struct super_copy *c)
{
  if (cd->size_bytes < NC_SB_SLOTS * NC_BLOCK_BYTES) {
    memset (c, 0, sizeof *c);
    c->state = SUPER_COPY_NO_MAGIC;
    c->why = "device too small";
    return;
  }
  read_copy (cd, sb, slot, c);
}

int
super_probe (struct cdev *cd)
{
  struct nc_sb_v1 *buf;
  int i, r = -ENOTSUP;

  if (cd->size_bytes < NC_SB_SLOTS * NC_BLOCK_BYTES)
    return -ENOTSUP;
  buf = cdev_alloc_buffer (NC_SB_SLOTS * NC_BLOCK_BYTES);
  if (buf == NULL)
    return -ENOMEM;
  i = cdev_pread (cd, buf, NC_SB_SLOTS * NC_BLOCK_BYTES, 0);
  if (i < 0)
    r = i;
  else
    for (i = 0; i < NC_SB_SLOTS; i++)
      if (buf[i].magic == NC_SB_MAGIC)
        r = 0;
  free (buf);
  return r;
}

/* ---- the one definition of "the same backing store" ---- */

bool
super_same_backing (const struct nc_sb_export *a, const struct nc_sb_export *b)
{
  if (a->kind != b->kind)
    return false;
  switch (a->kind) {
  case NC_BACKING_FILE:
    if ((a->flags & NC_ID_UUID) != (b->flags & NC_ID_UUID))
      return false;
    if (a->flags & NC_ID_UUID)
      return memcmp (a->uuid, b->uuid, sizeof a->uuid) == 0;
    if (a->dev != b->dev || a->ino != b->ino)
      return false;
    if ((a->flags & NC_ID_BTIME) && (b->flags & NC_ID_BTIME))
      return a->btime_sec == b->btime_sec && a->btime_nsec == b->btime_nsec;
    return true;
  case NC_BACKING_BLOCK:
    return strncmp (a->devid, b->devid, sizeof a->devid) == 0;
  default:
    return strncmp (a->uri, b->uri, sizeof a->uri) == 0;
  }
}

const char *
super_copies_disagree (const struct nc_sb *newer, const struct nc_sb *older,
                       int *slot_out)
{
  const struct nc_sb *a = newer, *b = older;
  uint32_t n;
  size_t i;

  *slot_out = -1;
  if (a->block_bytes != b->block_bytes || a->device_bytes != b->device_bytes
      || a->bucket_blocks != b->bucket_blocks || a->nbuckets != b->nbuckets
      || a->journal_first != b->journal_first
      || a->journal_buckets != b->journal_buckets
      || a->prio_first != b->prio_first || a->prio_buckets != b->prio_buckets
      || a->data_first != b->data_first || a->table_blocks != b->table_blocks
      || ((a->features ^ b->features) & ~NC_FEATURE_TABLE_CSUM) != 0
      || a->csum_first != b->csum_first
      || a->csum_buckets != b->csum_buckets)
    return "the geometry differs";
  n = super_table_slots (a);
  for (i = 0; i < n; i++) {
    const struct nc_sb_export *x = &a->exports[i], *y = &b->exports[i];

    if (x->id == 0 || y->id == 0)
      continue;                 /* added or forgotten since */
    *slot_out = (int) i;
    if (x->id != y->id)
      return "an export slot's id differs";
    if (y->kind == NC_BACKING_LEGACY && x->kind != NC_BACKING_LEGACY)
      continue;                 /* adopted since (a v1 slot) */
    if (!super_same_backing (x, y))
      return "an export slot's backing identity differs";
  }
  *slot_out = -1;
  return NULL;
}

int
super_read_version (struct cdev *cd, struct nc_sb *sb, int *slot,
                    uint32_t *version)
{
  struct nc_sb *buf;
  struct super_copy c[NC_SB_SLOTS];
  int best = -1, other, i, r;

  if (cd->size_bytes < NC_SB_SLOTS * NC_BLOCK_BYTES) {
    log_error ("%s: not an nbdcache cache device (only %" PRIu64
               " bytes); format it with 'nbdcache format %s' or set "
               "create = yes", cd->path, cd->size_bytes, cd->path);
    return -ENOTSUP;
  }
  buf = calloc (NC_SB_SLOTS, sizeof *buf);
  if (buf == NULL)
    return -ENOMEM;

  for (i = 0; i < NC_SB_SLOTS; i++) {
    read_copy (cd, &buf[i], i, &c[i]);
    if (c[i].state == SUPER_COPY_VALID &&
        (best < 0 || buf[i].seq > buf[best].seq))
      best = i;
  }

  if (best >= 0) {
    const char *why;
    int eslot;

    other = 1 - best;
    if (c[other].state == SUPER_COPY_VALID &&
        memcmp (buf[best].uuid, buf[other].uuid, sizeof buf[best].uuid) == 0
        && (why = super_copies_disagree (&buf[best], &buf[other], &eslot))
        != NULL) {
      if (eslot >= 0)
        log_error ("%s: corrupt nbdcache superblock: copies %d (seq %" PRIu64
                   ") and %d (seq %" PRIu64 ") disagree: export slot %d: %s",
                   cd->path, best, buf[best].seq, other, buf[other].seq,
                   eslot, why);
      else
        log_error ("%s: corrupt nbdcache superblock: copies %d (seq %" PRIu64
                   ") and %d (seq %" PRIu64 ") disagree: %s", cd->path, best,
                   buf[best].seq, other, buf[other].seq, why);
      free (buf);
      return -EBADMSG;
    }
    if (c[other].state == SUPER_COPY_INVALID ||
        c[other].state == SUPER_COPY_IO_ERROR)
      log_warning ("%s: superblock copy %d is unusable (%s); using copy %d "
                   "(seq %" PRIu64 ")", cd->path, other, c[other].why, best,
                   buf[best].seq);
    memcpy (sb, &buf[best], sizeof *sb);
    if (slot != NULL)
      *slot = best;
    if (version != NULL)
      *version = c[best].version;
    free (buf);
    return 0;
  }

  if (c[0].state == SUPER_COPY_NO_MAGIC && c[1].state == SUPER_COPY_NO_MAGIC) {
    log_error ("%s: not an nbdcache cache device (no superblock); format "
               "it with 'nbdcache format %s' or set create = yes",
               cd->path, cd->path);
    r = -ENOTSUP;
  }
  else if (c[0].state != SUPER_COPY_INVALID &&
           c[1].state != SUPER_COPY_INVALID) {
    /* An unreadable copy and one without magic: we cannot tell. */
    log_error ("%s: cannot read the superblock (copy 0: %s; copy 1: %s)",
               cd->path, c[0].why, c[1].why);
    r = c[0].state == SUPER_COPY_IO_ERROR ? c[0].err : c[1].err;
  }
  else {
    log_error ("%s: corrupt nbdcache superblock: copy 0: %s; copy 1: %s",
               cd->path, c[0].why, c[1].why);
    r = -EBADMSG;
  }
  free (buf);
  return r;
}

int
super_read (struct cdev *cd, struct nc_sb *sb, int *slot)
{
  return super_read_version (cd, sb, slot, NULL);
}

/* ---- writing ---- */

int
super_write_copy (struct cdev *cd, const struct nc_sb *sb, int slot)
{
  size_t tbytes = (size_t) sb->table_blocks * NC_BLOCK_BYTES;
  uint8_t *buf = cdev_alloc_buffer (tbytes > NC_BLOCK_BYTES ? tbytes
                                    : NC_BLOCK_BYTES);
  int r;

  if (buf == NULL)
    return -ENOMEM;
  /* The table first: the head names it by checksum, so a head that
   * reaches the device before its table is refused, not trusted.
   */
  memcpy (buf, sb->exports, tbytes);
  r = cdev_pwrite (cd, buf, tbytes, super_table_offset (sb, slot), 0);
  if (r == 0) {
    memcpy (buf, sb, NC_BLOCK_BYTES);
    r = cdev_pwrite (cd, buf, NC_BLOCK_BYTES,
                     (uint64_t) slot * NC_BLOCK_BYTES, 0);
  }
  free (buf);
  return r;
}

int
super_write (struct cdev *cd, struct nc_sb *sb)
{
  const char *why;
  int slot, r;

  sb->seq++;
  super_set_csum (sb);
  slot = (int) (sb->seq % NC_SB_SLOTS);

  if ((why = super_validate (sb, cd->size_bytes)) != NULL) {
    log_error ("%s: refusing to write an invalid superblock (%s)",
               cd->path, why);
    r = -EINVAL;
    goto undo;
  }
  r = super_write_copy (cd, sb, slot);
  if (r == 0)
    r = cdev_sync (cd);
  if (r < 0) {
    log_error ("%s: writing superblock copy %d (seq %" PRIu64 ") failed; "
               "copy %d is kept", cd->path, slot, sb->seq, 1 - slot);
    goto undo;
  }
  return 0;

 undo:
  /* The next attempt must overwrite this (older) slot again, never the
   * good copy in the other one.
   */
  sb->seq--;
  super_set_csum (sb);
  return r;
}

int
super_upgrade (struct cdev *cd, struct nc_sb *sb)
{
  int r;

  /* Each write goes to the older slot; after the first the newest copy is
   * version 2, after the second both are.  A crash before the first sync
   * leaves the version 1 copies (the next open converts again).
   */
  sb->upgraded_unix = (uint64_t) time (NULL);
  if ((r = super_write (cd, sb)) < 0 || (r = super_write (cd, sb)) < 0) {
    log_error ("%s: converting the superblock to format version %u failed: "
               "%s", cd->path, NC_FORMAT_VERSION, strerror (-r));
    return r;
  }
  log_info ("%s: converted the cache from format version 1 to %u (%" PRIu32
            " export slots)", cd->path, NC_FORMAT_VERSION,
            super_table_slots (sb));
  return 0;
}

/* ---- the export table ---- */

struct nc_sb_export *
super_find_export (struct nc_sb *sb, const char *uri)
{
  size_t i;

  for (i = 0; i < super_table_slots (sb); i++) {
    struct nc_sb_export *e = &sb->exports[i];

    if (e->id != 0 && strncmp (e->uri, uri, sizeof e->uri) == 0 &&
        is_terminated (e->uri, sizeof e->uri))
      return e;
  }
  return NULL;
}

struct nc_sb_export *
super_find_id (const struct nc_sb *sb, uint16_t id)
{
  size_t i;

  if (id == 0)
    return NULL;
  for (i = 0; i < super_table_slots (sb); i++)
    if (sb->exports[i].id == id)
      return (struct nc_sb_export *) &sb->exports[i];
  return NULL;
}

enum super_match
super_match_export (struct nc_sb *sb, const struct nc_sb_export *want,
                    struct nc_sb_export **out)
{
  uint32_t n = super_table_slots (sb);
  struct nc_sb_export *legacy = NULL, *same_uri = NULL;
  size_t i;

  *out = NULL;
  for (i = 0; i < n; i++) {
    struct nc_sb_export *e = &sb->exports[i];

    if (e->id == 0)
      continue;
    if (e->kind != NC_BACKING_LEGACY && super_same_backing (e, want)) {
      *out = e;
      return SUPER_MATCH;
    }
    if (strncmp (e->uri, want->uri, sizeof e->uri) == 0) {
      if (e->kind == NC_BACKING_LEGACY)
        legacy = e;
      else
        same_uri = e;
    }
  }
  if (legacy != NULL) {
    *out = legacy;
    return SUPER_MATCH_ADOPT;
  }
  if (same_uri != NULL) {
    *out = same_uri;
    return SUPER_MATCH_CONFLICT;
  }
  return SUPER_MATCH_NONE;
}

/* Also -EEXIST if want's backing is already in the table (find it
 * instead): two slots for one backing would make the binding ambiguous.
 */
int
super_add_identity (struct nc_sb *sb, const struct nc_sb_export *want,
                    struct nc_sb_export **out)
{
  uint32_t n = super_table_slots (sb);
  bool used[NC_MAX_EXPORTS + 1] = { false };
  struct nc_sb_export *e = NULL, *found;
  uint16_t id;
  size_t i;

  if (!is_terminated (want->uri, sizeof want->uri) ||
      !is_terminated (want->devid, sizeof want->devid))
    return -ENAMETOOLONG;
  if (super_match_export (sb, want, &found) == SUPER_MATCH)
    return -EEXIST;
  for (i = 0; i < n; i++) {
    if (sb->exports[i].id == 0) {
      if (e == NULL)
        e = &sb->exports[i];
    }
    else if (sb->exports[i].id <= n)
      used[sb->exports[i].id] = true;
  }
  for (id = 1; id <= n && used[id]; id++)
    ;
  if (e == NULL || id > n)
    return -ENOSPC;

  *e = *want;
  e->id = id;
  e->name[sizeof e->name - 1] = '\0';
  memset (e->pad1, 0, sizeof e->pad1);
  e->pad0 = 0;
  sb->nr_exports++;
  if (out != NULL)
    *out = e;
  return 0;
}

int
super_add_export (struct nc_sb *sb, const char *name, const char *uri,
                  uint64_t backing_bytes, uint8_t mode,
                  struct nc_sb_export **out)
{
  struct nc_sb_export want;

  if (strlen (uri) >= NC_URI_MAX)
    return -ENAMETOOLONG;
  if (super_find_export (sb, uri) != NULL)
    return -EEXIST;
  memset (&want, 0, sizeof want);
  want.kind = NC_BACKING_URI;
  want.mode = mode;
  want.backing_bytes = backing_bytes;
  /* The name is informational: a long one is cut, not refused. */
  snprintf (want.name, sizeof want.name, "%s", name != NULL ? name : "");
  memcpy (want.uri, uri, strlen (uri) + 1);
  return super_add_identity (sb, &want, out);
}

void
super_remove_export (struct nc_sb *sb, struct nc_sb_export *e)
{
  if (e->id == 0)
    return;
  memset (e, 0, sizeof *e);
  sb->nr_exports--;
}
