/* SPDX-License-Identifier: BSD-3-Clause */
/* super.c — the superblock: read and validate it, update it, and keep its
 * export table.
 *
 * WHAT: super_validate (every invariant of super.h, naming the first that
 * fails), super_read (the newest valid of the two copies), super_write
 * (seq + 1 to the other slot, then sync), and the export table helpers.
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

#include "cdev.h"
#include "compiler.h"
#include "csum.h"
#include "log.h"
#include "ondisk.h"
#include "super.h"

void
super_set_csum (struct nc_sb *sb)
{
  sb->csum = nc_csum (sb, sizeof *sb);
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
  if (sb->csum != nc_csum (sb, sizeof *sb))
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
  why = "too few data buckets";
  if (sb->nbuckets - data_first < NC_MIN_DATA_BUCKETS)
    goto bad;

  for (i = 0; i < NC_MAX_EXPORTS; i++) {
    const struct nc_sb_export *e = &sb->exports[i];

    if (e->id == 0)
      continue;
    why = "an export id is out of range";
    if (e->id > NC_MAX_EXPORTS)
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
    used++;
  }
  why = "nr_exports does not match the export table";
  if (sb->nr_exports != used)
    goto bad;
  return NULL;

 bad:
  return why;
}

/* ---- reading ---- */

enum copy_state {
  COPY_IO_ERROR,                /* the read failed */
  COPY_NO_MAGIC,                /* not ours (or never written) */
  COPY_INVALID,                 /* ours, but fails validation */
  COPY_VALID,
};

struct copy {
  enum copy_state state;
  int err;                      /* COPY_IO_ERROR: -errno */
  const char *why;              /* COPY_INVALID: the reason */
};

static void
read_copy (struct cdev *cd, struct nc_sb *buf, int slot, struct copy *c)
{
  int r = cdev_pread (cd, buf, NC_BLOCK_BYTES,
                      (uint64_t) slot * NC_BLOCK_BYTES);

  c->err = 0;
  c->why = NULL;
  if (r < 0) {
    c->state = COPY_IO_ERROR;
    c->err = r;
    c->why = "read error";
    return;
  }
  if (buf->magic != NC_SB_MAGIC) {
    c->state = COPY_NO_MAGIC;
    c->why = "no superblock magic";
    return;
  }
  c->why = super_validate (buf, cd->size_bytes);
  /* A copy in the wrong slot would make the next update overwrite the
   * newest copy instead of the older one.
   */
  if (c->why == NULL && buf->seq % NC_SB_SLOTS != (uint64_t) slot)
    c->why = "seq does not match its slot";
  c->state = c->why == NULL ? COPY_VALID : COPY_INVALID;
}

int
super_probe (struct cdev *cd)
{
  struct nc_sb *buf;
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

/* NULL if two valid copies of one cache set agree on what never changes
 * after format (the geometry) and after an export is added (its slot's
 * id and backing URI — slots are never freed or reused; the name and
 * mode are informational, the size may grow and is checked against the
 * backing itself at every bind),
 * else why not and *slot_out the export slot (or -1).  A bit flip in
 * the newer copy's export table, checksum recomputed, would otherwise
 * attach the backing as a new export and orphan its dirty data.
 */
static const char *
copies_disagree (const struct nc_sb *a, const struct nc_sb *b, int *slot_out)
{
  int i;

  *slot_out = -1;
  if (a->block_bytes != b->block_bytes || a->device_bytes != b->device_bytes
      || a->bucket_blocks != b->bucket_blocks || a->nbuckets != b->nbuckets
      || a->journal_first != b->journal_first
      || a->journal_buckets != b->journal_buckets
      || a->prio_first != b->prio_first || a->prio_buckets != b->prio_buckets
      || a->data_first != b->data_first)
    return "the geometry differs";
  for (i = 0; i < NC_MAX_EXPORTS; i++) {
    const struct nc_sb_export *x = &a->exports[i], *y = &b->exports[i];

    if (x->id == 0 || y->id == 0)
      continue;                 /* added since: only the newer has it */
    *slot_out = i;
    if (x->id != y->id || memcmp (x->uri, y->uri, sizeof x->uri) != 0)
      return "an export slot's identity (id or backing URI) differs";
  }
  return NULL;
}

int
super_read (struct cdev *cd, struct nc_sb *sb, int *slot)
{
  struct nc_sb *buf;
  struct copy c[NC_SB_SLOTS];
  int best = -1, other, i, r;

  if (cd->size_bytes < NC_SB_SLOTS * NC_BLOCK_BYTES) {
    log_error ("%s: not an nbdcache cache device (only %" PRIu64
               " bytes); format it with 'nbdcache format %s' or set "
               "create = yes", cd->path, cd->size_bytes, cd->path);
    return -ENOTSUP;
  }
  buf = cdev_alloc_buffer (NC_SB_SLOTS * NC_BLOCK_BYTES);
  if (buf == NULL)
    return -ENOMEM;

  for (i = 0; i < NC_SB_SLOTS; i++) {
    read_copy (cd, &buf[i], i, &c[i]);
    if (c[i].state == COPY_VALID &&
        (best < 0 || buf[i].seq > buf[best].seq))
      best = i;
  }

  if (best >= 0) {
    const char *why;
    int eslot;

    other = 1 - best;
    if (c[other].state == COPY_VALID &&
        memcmp (buf[best].uuid, buf[other].uuid, sizeof buf[best].uuid) == 0
        && (why = copies_disagree (&buf[best], &buf[other], &eslot))
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
    if (c[other].state == COPY_INVALID || c[other].state == COPY_IO_ERROR)
      log_warning ("%s: superblock copy %d is unusable (%s); using copy %d "
                   "(seq %" PRIu64 ")", cd->path, other, c[other].why, best,
                   buf[best].seq);
    memcpy (sb, &buf[best], sizeof *sb);
    if (slot != NULL)
      *slot = best;
    free (buf);
    return 0;
  }

  if (c[0].state == COPY_NO_MAGIC && c[1].state == COPY_NO_MAGIC) {
    log_error ("%s: not an nbdcache cache device (no superblock); format "
               "it with 'nbdcache format %s' or set create = yes",
               cd->path, cd->path);
    r = -ENOTSUP;
  }
  else if (c[0].state != COPY_INVALID && c[1].state != COPY_INVALID) {
    /* An unreadable copy and one without magic: we cannot tell. */
    log_error ("%s: cannot read the superblock (copy 0: %s; copy 1: %s)",
               cd->path, c[0].why, c[1].why);
    r = c[0].state == COPY_IO_ERROR ? c[0].err : c[1].err;
  }
  else {
    log_error ("%s: corrupt nbdcache superblock: copy 0: %s; copy 1: %s",
               cd->path, c[0].why, c[1].why);
    r = -EBADMSG;
  }
  free (buf);
  return r;
}

/* ---- writing ---- */

int
super_write (struct cdev *cd, struct nc_sb *sb)
{
  struct nc_sb *buf;
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
  buf = cdev_alloc_buffer (NC_BLOCK_BYTES);
  if (buf == NULL) {
    r = -ENOMEM;
    goto undo;
  }
  memcpy (buf, sb, sizeof *sb);
  r = cdev_pwrite (cd, buf, NC_BLOCK_BYTES,
                   (uint64_t) slot * NC_BLOCK_BYTES, 0);
  free (buf);
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

/* ---- the export table ---- */

struct nc_sb_export *
super_find_export (struct nc_sb *sb, const char *uri)
{
  size_t i;

  for (i = 0; i < NC_MAX_EXPORTS; i++) {
    struct nc_sb_export *e = &sb->exports[i];

    if (e->id != 0 && strncmp (e->uri, uri, sizeof e->uri) == 0 &&
        is_terminated (e->uri, sizeof e->uri))
      return e;
  }
  return NULL;
}

/* Also -EEXIST if uri is already in the table (find it instead): two
 * slots with one uri would make the binding ambiguous.
 */
int
super_add_export (struct nc_sb *sb, const char *name, const char *uri,
                  uint64_t backing_bytes, uint8_t mode,
                  struct nc_sb_export **out)
{
  bool used[NC_MAX_EXPORTS + 1] = { false };
  struct nc_sb_export *e = NULL;
  uint16_t id;
  size_t i;

  if (strlen (uri) >= NC_URI_MAX)
    return -ENAMETOOLONG;
  if (super_find_export (sb, uri) != NULL)
    return -EEXIST;
  for (i = 0; i < NC_MAX_EXPORTS; i++) {
    if (sb->exports[i].id == 0) {
      if (e == NULL)
        e = &sb->exports[i];
    }
    else if (sb->exports[i].id <= NC_MAX_EXPORTS)
      used[sb->exports[i].id] = true;
  }
  for (id = 1; id <= NC_MAX_EXPORTS && used[id]; id++)
    ;
  if (e == NULL || id > NC_MAX_EXPORTS)
    return -ENOSPC;

  memset (e, 0, sizeof *e);
  e->id = id;
  e->mode = mode;
  e->backing_bytes = backing_bytes;
  /* The name is informational: a long one is cut, not refused. */
  snprintf (e->name, sizeof e->name, "%s", name != NULL ? name : "");
  memcpy (e->uri, uri, strlen (uri) + 1);
  sb->nr_exports++;
  if (out != NULL)
    *out = e;
  return 0;
}
