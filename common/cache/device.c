/* SPDX-License-Identifier: BSD-3-Clause */
/* device.c — a cache device: open (with recovery), close, export binding.
 *
 * WHAT: ncache_device_open / ncache_device_open_cdev / ncache_device_close,
 * and device_bind_export / device_unbind_export, which tie an export to
 * its id in the superblock's export table.
 * WHY: one place runs the recovery order of cache-internal.h, so nothing
 * serves from a device whose metadata was not fully checked and replayed.
 * INVARIANTS:
 * - After open succeeds: the superblock, prios, journal chain and every
 *   reachable btree node have passed their checksums and invariants; the
 *   journal has committed an entry recording the current root; bucket live
 *   and dirty counts are exact; the journal thread runs.
 * - An export id is used by at most one open export at a time, and only
 *   with the backing store it was first bound to, by identity
 *   (super_match_export: a renamed file keeps its id, another file at its
 *   path is refused).  A backing found larger is served at its new size
 *   (the table is updated durably first); one found smaller is refused,
 *   since keys past its new end could hold data that no longer has a
 *   place, unless allow_shrink: the dirty data below the new end is
 *   written back first, then the keys past it dropped.
 * - A version 1 superblock is converted (super_upgrade) before anything
 *   else is written to the device.
 * THREADS AND LOCKS: open and close are single-threaded (nothing is served
 * yet / any more).  dev->lock guards the export table and export_open[];
 * it is never held with the btree, journal or bucket locks.
 * FAILURE: every error is logged with the device's name and path; a device
 * that is unformatted (without create), foreign or corrupt is refused, never
 * reformatted behind the admin's back.  create = yes formats only a device
 * where neither nbdcache nor libblkid finds anything; the device is locked
 * (cdev.h) before that is looked at, so nobody else is using it.  A cache
 * file that this open created (size =) is removed again when the open
 * fails (too small to format, say): it never held anything.
 * NOT HERE: requests (request.c), the modules' own formats.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backing.h"
#include "btree.h"
#include "bucket.h"
#include "cache-data.h"
#include "cache-internal.h"
#include "cdev.h"
#include "datacsum.h"
#include "format.h"
#include "gc.h"
#include "invariant.h"
#include "journal.h"
#include "log.h"
#include "super.h"

/* ---- hooks: the allocator and the journal call back through dev ---- */

/* The allocator wants the background thread (bucket lock held: only
 * signal).  gc_ptr_lock keeps close from freeing the thread meanwhile.
 */
static void
hook_kick (void *opaque, bool need_gc)
{
  struct ncache_device *dev = opaque;

  pthread_mutex_lock (&dev->gc_ptr_lock);
  if (dev->gc != NULL)
    gc_kick (dev->gc, need_gc);
  pthread_mutex_unlock (&dev->gc_ptr_lock);
}

/* Stop the background thread (if any), out of the kick's reach first. */
static void
device_stop_gc (struct ncache_device *dev)
{
  struct gc *g;

  pthread_mutex_lock (&dev->gc_ptr_lock);
  g = dev->gc;
  dev->gc = NULL;
  pthread_mutex_unlock (&dev->gc_ptr_lock);
  gc_stop (g);
}

/* A clean key must never be durable before the backing data it stands
 * for (request.c's mode table): flush the exports' backing stores first.
 * And no key before its data checksums (datacsum.h): write the dirty
 * region pages and sync them (the journal's pre-flush may be skipped by
 * its pipeline; a leaf write's comes anyway, but pages must not wait).
 */
static int
sync_region (struct ncache_device *dev)
{
  uint64_t unsynced = 0;
  int r = 0;

  if (dev->dc != NULL)
    r = datacsum_flush (dev->dc, &unsynced);
  if (r == 0 && unsynced > 0 && (r = cdev_sync (dev->cd)) == 0)
    datacsum_note_synced (dev->dc, unsynced);
  return r;
}

static int
hook_pre_write (void *opaque)
{
  struct ncache_device *dev = opaque;
  int r;

  r = request_sync_backings (dev);
  return r < 0 ? r : sync_region (dev);
}

/* The journal's pre_write for a write whose entries carry their data
 * (journal.c REDO), in two halves: the backing stores first, before any
 * entry is written; then the region pages (hook_write_unsynced), possibly
 * while the entries' writes are in flight, synced by that write's final
 * sync (hook_synced).  If it never completes, replay writes the data back
 * and its words with it (hook_data_redone).
 */
static int
hook_pre_write_unsynced (void *opaque)
{
  return request_sync_backings (opaque);
}

static int
hook_write_unsynced (void *opaque, uint64_t *token)
{
  struct ncache_device *dev = opaque;

  *token = 0;
  return dev->dc != NULL ? datacsum_flush (dev->dc, token) : 0;
}

static void
hook_synced (void *opaque, uint64_t token)
{
  struct ncache_device *dev = opaque;

  if (dev->dc != NULL)
    datacsum_note_synced (dev->dc, token);
}

/* Replay wrote this data back from a journal entry: its words follow. */
static int
hook_data_redone (void *opaque, uint64_t block, uint32_t blocks,
                  const void *data)
{
  struct ncache_device *dev = opaque;

  return dev->dc != NULL ? datacsum_store (dev->dc, block, blocks, data, NULL)
    : 0;
}

static int
hook_redo_flush (void *opaque)
{
  return sync_region (opaque);
}

/* ---- recovery ---- */

/* Steps 2–6 of OPEN in cache-internal.h, through assemble.c (the
 * superblock was read by the caller, which may have formatted first).
 */
static int
recover (struct ncache_device *dev, const struct ncache_device_tuning *t)
{
  const struct assemble_options o = {
    .node_cache_bytes = t->node_cache_bytes,
    .journal_delay_ms = t->journal_delay_ms,
    .kick = hook_kick,
    .pre_write = hook_pre_write,
    .pre_write_unsynced = hook_pre_write_unsynced,
    .write_unsynced = hook_write_unsynced,
    .synced = hook_synced,
    .data_redone = hook_data_redone,
    .redo_flush = hook_redo_flush,
    .opaque = dev,
  };
  struct assembly *a = &dev->assembly;
  int r;

  if ((r = assemble_prios (a, &o)) < 0 ||
      (r = assemble_journal (a, &o)) < 0 ||
      (r = assemble_index (a, &o)) < 0) {
    assemble_release (a);
    return r;
  }
  log_info ("cache '%s' (%s): %" PRIu64 " journal key(s) replayed",
            dev->name, dev->cd->path, a->journal_keys);
  return 0;
}

static void
device_free (struct ncache_device *dev)
{
  device_stop_gc (dev);
  if (dev->journal)
    journal_destroy (dev->journal);
  btree_destroy (dev->bt);
  bucket_set_destroy (dev->bs);
  datacsum_close (dev->dc);
  cdev_close (dev->cd);
  pthread_mutex_destroy (&dev->lock);
  pthread_mutex_destroy (&dev->gc_ptr_lock);
  pthread_mutex_destroy (&dev->exports_lock);
  free (dev->name);
  free (dev);
}

int
ncache_device_open_cdev (const char *name, struct cdev *cd, bool create,
                         const struct ncache_device_tuning *tuning,
                         struct ncache_device **out)
{
  const struct ncache_device_tuning defaults = { 0 };
  const struct ncache_device_tuning *t = tuning ? tuning : &defaults;
  struct ncache_device *dev;
  int r;

  dev = calloc (1, sizeof *dev);
  if (dev == NULL || (dev->name = strdup (name ? name : "")) == NULL) {
    log_error ("cache '%s': out of memory", name ? name : "");
    free (dev);
    cdev_close (cd);
    return -ENOMEM;
  }
  pthread_mutex_init (&dev->lock, NULL);
  pthread_mutex_init (&dev->gc_ptr_lock, NULL);
  pthread_mutex_init (&dev->exports_lock, NULL);
  dev->cd = cd;

  r = create ? super_probe (cd) : 0;
  if (r == -ENOTSUP) {
    const struct nc_format_options fopts = {
      .bucket_bytes = t->format_bucket_bytes,
      .journal_bytes = t->format_journal_bytes,
      .quiet = true,
    };
    log_info ("cache '%s' (%s): no nbdcache superblock; formatting "
              "(create = yes)", dev->name, cd->path);
    r = nc_format (cd, &fopts);
  }
  {
    const struct assemble_slots slots = {
      .sb = &dev->sb, .bs = &dev->bs, .journal = &dev->journal,
      .bt = &dev->bt,
    };

    assemble_init (&dev->assembly, cd, dev->name, &slots);
  }
  if (r == 0)
    r = assemble_super (&dev->assembly);
  /* A version 1 cache is converted before anything else is written
   * (super.c: crash-safe; nothing else in it changes).
   */
  if (r == 0 && dev->assembly.sb_version == NC_FORMAT_VERSION_V1)
    r = super_upgrade (cd, &dev->sb);
  /* The data checksums before anything may read or write data. */
  if (r == 0)
    r = datacsum_open (cd, &dev->sb, false, &dev->dc);
  if (r < 0)
    goto err;

  r = recover (dev, t);
  if (r < 0) {
    log_error ("cache '%s' (%s): cannot open: %s%s", dev->name, cd->path,
               strerror (-r),
               r == -EBADMSG ? " (metadata is corrupt; it is not used)" :
               r == -EPROTONOSUPPORT ? " (written by a newer version of "
               "nbdcache; it is not used)" : "");
    goto err;
  }
  device_finish_forgets (dev);
  dev->discard = t->discard;
  {
    struct timespec ts;

    /* ZERO key ids only need to differ from those still in the index. */
    clock_gettime (CLOCK_REALTIME, &ts);
    dev->zero_id = (uint32_t) (ts.tv_nsec ^ (ts.tv_sec * 2654435761u)
                               ^ dev->sb.seq);
  }
  bucket_set_discard (dev->bs, t->discard);
  if (!t->gc_off) {
    struct gc *g;

    if ((r = gc_start (dev, &g)) < 0) {
      log_error ("cache '%s' (%s): cannot start the GC thread: %s",
                 dev->name, cd->path, strerror (-r));
      goto err;
    }
    pthread_mutex_lock (&dev->gc_ptr_lock);
    dev->gc = g;
    pthread_mutex_unlock (&dev->gc_ptr_lock);
  }
  log_info ("cache '%s' (%s): open, %" PRIu32 " buckets of %" PRIu64
            " KiB%s", dev->name, cd->path, dev->sb.nbuckets,
            super_bucket_bytes (&dev->sb) / 1024,
            t->discard ? ", discard on" : "");
  *out = dev;
  return 0;

 err:
  device_free (dev);
  return r;
}

/* create = yes formats a device with no nbdcache superblock: not when it
 * holds another program's data that libblkid recognises (an ext4 image,
 * a partition table, an LVM volume), or when we cannot tell.  0 or
 * -EEXIST (logged).
 */
static int
refuse_foreign (const struct ncache_device_config *cfg, struct cdev *cd)
{
  char what[256];
  int r = super_probe (cd);

  if (r != -ENOTSUP)
    return 0;                   /* a cache (or an error the open reports) */
  r = cdev_foreign_signature (cfg->path, what, sizeof what);
  if (r == 0)
    return 0;
  log_error ("cache '%s' (%s): create = yes formats a device that holds "
             "no nbdcache cache, but this one %s%s; not touching it (if it "
             "is really meant to be a cache: nbdcache format --force %s)",
             cfg->name ? cfg->name : "", cfg->path,
             r > 0 ? "holds " : "could not be probed",
             r > 0 ? what : "", cfg->path);
  return -EEXIST;
}

int
ncache_device_open (const struct ncache_device_config *cfg,
                    struct ncache_device **out)
{
  struct cdev_file_options fopts = { 0 };
  struct ncache_device_tuning t = { 0 };
  struct cdev *cd;
  bool created;
  int r;

  if (cfg == NULL || cfg->path == NULL) {
    log_error ("cache device: no configuration");
    return -EINVAL;
  }
  fopts.direct = cfg->direct;
  fopts.create_size_bytes = cfg->create ? cfg->size_bytes : 0;
  r = cdev_file_open (cfg->path, &fopts, &cd);
  if (r < 0)
    return r;
  created = cd->created;
  if (cfg->create && (r = refuse_foreign (cfg, cd)) < 0) {
    cdev_close (cd);
    goto err;
  }
  t.node_cache_bytes = cfg->node_cache_bytes;
  t.journal_delay_ms = cfg->journal_delay_ms;
  t.format_bucket_bytes = cfg->bucket_bytes;
  t.format_journal_bytes = cfg->journal_bytes;
  t.discard = cfg->discard == NCACHE_DISCARD_YES ||
    (cfg->discard == NCACHE_DISCARD_AUTO && cd->is_block_device);
  r = ncache_device_open_cdev (cfg->name, cd, cfg->create, &t, out);
  if (r == 0)
    return 0;
 err:
  /* A file this open created holds nothing anyone wrote (it was never
   * served): leaving it would make the next start, with a corrected
   * size, find a half-made cache and fail the same way.
   */
  if (created) {
    if (unlink (cfg->path) == 0)
      log_info ("cache '%s': removed %s, which this start created",
                cfg->name ? cfg->name : "", cfg->path);
    else
      log_warning ("cache '%s': cannot remove %s, which this start "
                   "created: %m", cfg->name ? cfg->name : "", cfg->path);
  }
  return r;
}

void
ncache_device_close (struct ncache_device *dev)
{
  int r;

  if (dev == NULL)
    return;
  if (dev->nr_open_exports > 0)
    log_error ("cache '%s': closed with %u export(s) still open",
               dev->name, dev->nr_open_exports);
  /* The background thread first: nothing may change the index while it
   * is written out for the last time.
   */
  device_stop_gc (dev);
  /* Write every changed leaf, then one last entry whose last_seq is its
   * own: the next open replays nothing.
   */
  r = btree_write_all (dev->bt);
  if (r < 0)
    log_error ("cache '%s': writing the index at close failed: %s "
               "(the journal still has it)", dev->name, strerror (-r));
  journal_mark_needed (dev->journal);
  r = journal_stop (dev->journal);
  if (r < 0)
    log_error ("cache '%s': last journal commit failed: %s",
               dev->name, strerror (-r));
  device_free (dev);
}

/* ---- export binding ---- */

int
ncache_backing_open (struct ncache_device *dev, const char *export_name,
                     const char *location,
                     const struct backing_open_options *opts,
                     struct backing **out)
{
  struct backing_open_options o = { 0 };
  char *uri = NULL;
  bool known = false;
  int r;

  if (opts != NULL)
    o = *opts;
  if (dev != NULL && o.create_size_bytes > 0) {
    if ((r = backing_location_uri (location, &uri)) < 0) {
      log_error ("export '%s': %s", export_name, strerror (-r));
      return r;
    }
    if (uri != NULL) {
      pthread_mutex_lock (&dev->lock);
      known = super_find_export (&dev->sb, uri) != NULL;
      pthread_mutex_unlock (&dev->lock);
    }
    if (known)
      o.create_size_bytes = 0;  /* it must exist */
  }
  r = backing_open (location, &o, out);
  if (r == -ENOENT && known)
    log_error ("export '%s': the backing store %s is missing, but cache '%s' "
               "holds data for it: refusing to create it empty (the cached "
               "data, dirty data included, belongs to the old content); "
               "restore the backing store, or reformat the cache (nbdcache "
               "format --force) to forget its data", export_name, uri,
               dev->name);
  free (uri);
  return r;
}

/* The backing grew from old_bytes to new_bytes.  The cache padded the
 * last block with zeros past old_bytes (a read past the end reads zeros,
 * and a client never writes there), so when old_bytes is not a multiple
 * of the block size, a cached last block is only right if the backing
 * also reads zeros in [old_bytes, min (new end, end of that block)): true
 * after truncate -s, false if data was appended.  0 if so (or nothing to
 * check), -EINVAL (logged) if not, -errno from the read.
 */
static int
check_grown_tail (struct ncache_device *dev, const char *name,
                  struct backing *backing, uint64_t old_bytes)
{
  uint8_t buf[NC_BLOCK_BYTES];
  uint64_t end = (old_bytes / NC_BLOCK_BYTES + 1) * NC_BLOCK_BYTES;
  size_t n, i;
  int r;

  if (backing == NULL || old_bytes % NC_BLOCK_BYTES == 0)
    return 0;
  if (end > backing->size_bytes)
    end = backing->size_bytes;
  n = (size_t) (end - old_bytes);
  if ((r = backing_pread (backing, buf, n, old_bytes)) < 0) {
    log_error ("export '%s': reading the backing store past its old end "
               "(%" PRIu64 " bytes) failed: %s", name, old_bytes,
               strerror (-r));
    return r;
  }
  for (i = 0; i < n; i++)
    if (buf[i] != 0) {
      log_error ("export '%s': %s grew from %" PRIu64 " to %" PRIu64
                 " bytes, and the bytes appended inside its old last "
                 "%u-byte block are not zero, while cache '%s' holds that "
                 "block as it was (zeros past the old end): refusing to "
                 "serve it; grow the backing store with zeros (truncate -s) "
                 "or to a multiple of %u bytes", name, backing->uri,
                 old_bytes, backing->size_bytes, NC_BLOCK_BYTES, dev->name,
                 NC_BLOCK_BYTES);
      return -EINVAL;
    }
  return 0;
}

#define SHRINK_PIECES 32
#define SHRINK_CHUNK_BYTES (1024 * 1024)

/* --allow-shrink, before anything is dropped: copy the export's dirty
 * data below the new end (blocks [0, end)) to the backing store and flush
 * it, so the backing holds it whatever happens next.  The keys stay DIRTY
 * (writeback writes the same data again later: harmless).  A piece whose
 * bucket moved meanwhile (-ESTALE) is looked up again.  0 or -errno
 * (logged); nothing is dropped on failure.
 */
static int
write_back_below (struct ncache_device *dev, const char *name, uint16_t id,
                  struct backing *b, uint64_t end)
{
  struct btree_piece p[SHRINK_PIECES];
  uint64_t pos = 0, written = 0;
  uint8_t *buf;
  int n, i, r = 0;

  if (b == NULL || bucket_export_dirty_blocks (dev->bs, id) == 0)
    return 0;
  if (b->readonly) {
    log_error ("export '%s': the backing store is read-only, so the dirty "
               "data below its new end cannot be written back first; "
               "--allow-shrink refused", name);
    return -EROFS;
  }
  buf = malloc (SHRINK_CHUNK_BYTES);
  if (buf == NULL)
    return -ENOMEM;
  while (pos < end && r == 0) {
    n = btree_lookup (dev->bt, id, pos, end, p, SHRINK_PIECES, NULL);
    if (n < 0) {
      r = n;
      break;
    }
    for (i = 0; i < n && r == 0; i++) {
      const struct nc_key *k = &p[i].key;
      uint64_t off = p[i].start * NC_BLOCK_BYTES;
      uint64_t len = (p[i].end - p[i].start) * NC_BLOCK_BYTES, done;

      pos = p[i].end;
      if (!p[i].found || !(k->flags & NC_KEY_DIRTY))
        continue;
      if (k->flags & NC_KEY_ZERO) {
        r = backing_zero (b, len, off, 0);
        written += len;
        continue;
      }
      for (done = 0; done < len && r == 0; done += SHRINK_CHUNK_BYTES) {
        uint64_t m = MIN (len - done, (uint64_t) SHRINK_CHUNK_BYTES);

        r = cache_data_read (dev, k, done, buf, m);
        if (r == -ESTALE) {     /* moved: look this piece up again */
          pos = p[i].start + done / NC_BLOCK_BYTES;
          r = 0;
          i = n;
          break;
        }
        if (r == 0)
          r = backing_pwrite (b, buf, (size_t) m, off + done, 0);
        if (r == 0)
          written += m;
      }
    }
  }
  free (buf);
  if (r == 0)
    r = backing_flush (b);
  if (r < 0)
    log_error ("export '%s': writing back the dirty data below the new end "
               "failed: %s; --allow-shrink dropped nothing", name,
               strerror (-r));
  else
    log_info ("export '%s': wrote back %" PRIu64 " bytes of dirty data below "
              "the new end before dropping what lies past it", name,
              written);
  return r;
}

/* --allow-shrink: with the slot reserved (export_open set), write back the
 * dirty data below the new end, drop the keys past it, then let the
 * caller record the new size.  Called and returns with dev->lock held;
 * drops it around the I/O.
 */
static int
shrink_locked (struct ncache_device *dev, const char *name, const char *uri,
               struct nc_sb_export *e, struct backing *backing,
               uint64_t size_bytes)
{
  ASSERT_HELD (&dev->lock);
  uint64_t old_blocks = (e->backing_bytes + NC_BLOCK_BYTES - 1)
    / NC_BLOCK_BYTES;
  uint64_t dirty0, dirty1;
  uint16_t id = e->id;
  int r;

  if (size_bytes % NC_BLOCK_BYTES != 0) {
    log_error ("export '%s': %s shrank to %" PRIu64 " bytes, which is not a "
               "multiple of %u: the cache's last block would keep data "
               "past the new end; --allow-shrink needs a size that is",
               name, uri, size_bytes, NC_BLOCK_BYTES);
    return -EINVAL;
  }
  dev->export_open[id] = true;
  pthread_mutex_unlock (&dev->lock);
  r = write_back_below (dev, name, id, backing, size_bytes / NC_BLOCK_BYTES);
  dirty0 = bucket_export_dirty_blocks (dev->bs, id);
  if (r == 0)
    r = device_drop_keys (dev, name, "the cached data past the new end", id,
                          size_bytes / NC_BLOCK_BYTES, old_blocks);
  dirty1 = bucket_export_dirty_blocks (dev->bs, id);
  pthread_mutex_lock (&dev->lock);
  dev->export_open[id] = false;
  if (r < 0)
    return r;
  log_warning ("export '%s': %s shrank from %" PRIu64 " to %" PRIu64
               " bytes; --allow-shrink: the cached data past the new end "
               "is dropped (%" PRIu64 " bytes of it dirty, now lost)",
               name, uri, e->backing_bytes, size_bytes,
               (dirty0 > dirty1 ? dirty0 - dirty1 : 0) * NC_BLOCK_BYTES);
  return 0;
}

/* The candidate slot for a backing: what identifies it, from the backing
 * store itself (tag: give a file without one its user.nbdcache.id).
 */
static int
identify (const char *name, const char *uri, struct backing *backing,
          uint64_t size_bytes, enum ncache_mode mode, bool tag,
          struct nc_sb_export *want, int *xattr_err)
{
  struct backing_identity id;
  int r;

  memset (want, 0, sizeof *want);
  *xattr_err = 0;
  if (strlen (uri) >= sizeof want->uri) {
    log_error ("export '%s': the backing URI %s is too long for the "
               "cache's export table (%u bytes at most)", name, uri,
               NC_URI_MAX - 1);
    return -ENAMETOOLONG;
  }
  memcpy (want->uri, uri, strlen (uri) + 1);
  snprintf (want->name, sizeof want->name, "%s", name);
  want->mode = (uint8_t) mode;
  want->backing_bytes = size_bytes;
  want->kind = NC_BACKING_URI;
  if (backing == NULL)
    return 0;
  if ((r = backing_identify (backing, tag, &id)) < 0) {
    log_error ("export '%s': cannot tell what identifies %s: %s", name, uri,
               strerror (-r));
    return r;
  }
  switch (id.kind) {
  case BACKING_ID_FILE:
    want->kind = NC_BACKING_FILE;
    want->dev = id.dev;
    want->ino = id.ino;
    if (id.has_btime) {
      want->flags |= NC_ID_BTIME;
      want->btime_sec = id.btime_sec;
      want->btime_nsec = id.btime_nsec;
    }
    if (id.has_uuid) {
      want->flags |= NC_ID_UUID;
      memcpy (want->uuid, id.uuid, sizeof want->uuid);
    }
    *xattr_err = id.xattr_err;
    break;
  case BACKING_ID_BLOCK:
    want->kind = NC_BACKING_BLOCK;
    snprintf (want->devid, sizeof want->devid, "%s", id.devid);
    break;
  case BACKING_ID_URI:
    break;
  }
  return 0;
}

static void
describe (const struct nc_sb_export *e, char *buf, size_t size)
{
  char u[40];
  size_t i;

  switch (e->kind) {
  case NC_BACKING_FILE:
    if (e->flags & NC_ID_UUID) {
      for (i = 0; i < sizeof e->uuid; i++)
        snprintf (u + 2 * i, 3, "%02x", e->uuid[i]);
      snprintf (buf, size, "file id %s", u);
    }
    else
      snprintf (buf, size, "inode %" PRIu64 " on device %#" PRIx64
                " (no " BACKING_ID_XATTR ")", e->ino, e->dev);
    break;
  case NC_BACKING_BLOCK:
    snprintf (buf, size, "block device %s", e->devid);
    break;
  default:
    snprintf (buf, size, "%.80s", e->uri);
    break;
  }
}

/* Find want's slot, tagging a new file first.  Called with dev->lock
 * held; may drop it around the tagging.  0 and *e (NULL: not in the
 * table, want is ready to add), or -errno (logged).
 */
static int
find_slot_locked (struct ncache_device *dev, const char *name,
                  const char *uri, struct backing *backing,
                  uint64_t size_bytes, enum ncache_mode mode,
                  struct nc_sb_export *want, struct nc_sb_export **e)
{
  ASSERT_HELD (&dev->lock);
  char have[96], had[96];
  enum super_match m;
  int xattr_err, r;

  if ((r = identify (name, uri, backing, size_bytes, mode, false, want,
                     &xattr_err)) < 0)
    return r;
  m = super_match_export (&dev->sb, want, e);
  if ((m == SUPER_MATCH_NONE || m == SUPER_MATCH_ADOPT) &&
      want->kind == NC_BACKING_FILE && !(want->flags & NC_ID_UUID) &&
      xattr_err == 0) {
    /* A file the table does not know: give it its id now, so it keeps
     * its slot when renamed.  (Not for one that conflicts: a file
     * without an id at a known path is not the one the cache knows.)
     */
    pthread_mutex_unlock (&dev->lock);
    r = identify (name, uri, backing, size_bytes, mode, true, want,
                  &xattr_err);
    pthread_mutex_lock (&dev->lock);
    if (r < 0)
      return r;
    m = super_match_export (&dev->sb, want, e);
  }
  if (want->kind == NC_BACKING_FILE && !(want->flags & NC_ID_UUID) &&
      m != SUPER_MATCH)
    log_info ("export '%s': %s has no " BACKING_ID_XATTR " (%s): cache '%s' "
              "knows it by device and inode, so it keeps its cached data "
              "when renamed within its filesystem, but not when copied or "
              "moved to another one", name, uri,
              xattr_err == -ENOTSUP ? "its filesystem keeps no user "
              "extended attributes" : strerror (-xattr_err), dev->name);
  switch (m) {
  case SUPER_MATCH:
  case SUPER_MATCH_NONE:
    return 0;
  case SUPER_MATCH_ADOPT:
    log_info ("export '%s': cache '%s' knew %s by its path only (format "
              "version 1); it now records what identifies it", name,
              dev->name, uri);
    (*e)->kind = want->kind;
    (*e)->flags = want->flags;
    (*e)->dev = want->dev;
    (*e)->ino = want->ino;
    (*e)->btime_sec = want->btime_sec;
    (*e)->btime_nsec = want->btime_nsec;
    memcpy ((*e)->uuid, want->uuid, sizeof want->uuid);
    memcpy ((*e)->devid, want->devid, sizeof want->devid);
    return 1;
  case SUPER_MATCH_CONFLICT:
    describe (want, have, sizeof have);
    describe (*e, had, sizeof had);
    log_error ("export '%s': %s is not the backing store that cache '%s' "
               "holds data for under this name (export id %u: %s; this one "
               "has %s): refusing to serve it with another store's cached "
               "data.  Put the original back (a copy made without its "
               "extended attributes is not the original), or, if it is "
               "gone for good, drop its cached data with 'nbdcache forget "
               "%s %u' (nbdcached stopped; --discard-dirty if it holds "
               "dirty data)", name, uri, dev->name, (*e)->id, had, have,
               dev->cd->path, (*e)->id);
    return -EEXIST;
  }
  return -EINVAL;
}

int
device_bind_export (struct ncache_device *dev, const char *name,
                    const char *uri, struct backing *backing,
                    uint64_t size_bytes, enum ncache_mode mode,
                    bool allow_shrink, uint16_t *id)
{
  struct nc_sb_export *e, saved, want;
  bool changed = false;
  int r = 0;

  pthread_mutex_lock (&dev->lock);
  r = find_slot_locked (dev, name, uri, backing, size_bytes, mode, &want, &e);
  if (r < 0)
    goto out;
  if (r > 0)
    changed = true;             /* a version 1 slot adopted */
  r = 0;
  if (e != NULL && dev->export_open[e->id]) {
    log_error ("export '%s': %s is already open on cache '%s'%s%s",
               name, uri, dev->name,
               strcmp (e->uri, uri) != 0 ? " as " : "",
               strcmp (e->uri, uri) != 0 ? e->uri : "");
    r = -EBUSY;
    goto out;
  }
  if (e != NULL && (e->flags & NC_SLOT_FORGETTING)) {
    log_error ("export '%s': cache '%s' is forgetting %s (export id %u: "
               "'nbdcache forget' was interrupted, its cached data may be "
               "gone): not served; finish it with 'nbdcache forget %s %u'",
               name, dev->name, e->uri, e->id, dev->cd->path, e->id);
    r = -EBUSY;
    goto out;
  }
  if (e != NULL && size_bytes < e->backing_bytes && !allow_shrink) {
    log_error ("export '%s': %s shrank from %" PRIu64 " to %" PRIu64
               " bytes since cache '%s' last served it; the cache may hold "
               "data (dirty data included) for the part that is gone, so "
               "it is not served: restore the size (truncate -s %" PRIu64
               " %s for a file), or start once with --allow-shrink "
               "(nbdcached) or allow-shrink=true (the plugin) to drop the "
               "cached data past the new end, dirty data included",
               name, uri, e->backing_bytes, size_bytes,
               dev->name, e->backing_bytes,
               strncmp (uri, "file://", 7) == 0 ? uri + 7 : uri);
    r = -EINVAL;
    goto out;
  }
  if (e != NULL && size_bytes < e->backing_bytes) {
    if ((r = shrink_locked (dev, name, uri, e, backing, size_bytes)) < 0)
      goto out;
    saved = *e;
    e->backing_bytes = size_bytes;
    changed = true;
  }
  if (e == NULL) {
    r = super_add_identity (&dev->sb, &want, &e);
    if (r < 0) {
      log_error ("export '%s': cannot add %s to cache '%s': %s", name, uri,
                 dev->name, r == -ENOSPC
                 ? "its export table is full; free the slot of an export "
                 "that is gone with 'nbdcache forget'"
                 : strerror (-r));
      goto out;
    }
    memset (&saved, 0, sizeof saved);   /* undo = free the slot again */
    changed = true;
  }
  else {
    if (!changed)
      saved = *e;
    if (strcmp (e->uri, uri) != 0) {
      char how[96];

      describe (e, how, sizeof how);
      log_info ("export '%s': cache '%s' knew this backing store as %s; "
                "it is %s now (the same store by %s: cached data "
                "kept)", name, dev->name, e->uri, uri, how);
      memcpy (e->uri, want.uri, sizeof e->uri);
      changed = true;
    }
    if (e->kind == NC_BACKING_FILE && (e->dev != want.dev ||
                                       e->ino != want.ino)) {
      e->dev = want.dev;
      e->ino = want.ino;
      e->flags = (e->flags & ~NC_ID_BTIME) | (want.flags & NC_ID_BTIME);
      e->btime_sec = want.btime_sec;
      e->btime_nsec = want.btime_nsec;
      changed = true;
    }
    if (strncmp (e->name, want.name, sizeof e->name) != 0) {
      memcpy (e->name, want.name, sizeof e->name);
      changed = true;
    }
    if (size_bytes > e->backing_bytes) {
      if ((r = check_grown_tail (dev, name, backing, e->backing_bytes)) < 0)
        goto out;
      log_info ("export '%s': %s grew from %" PRIu64 " to %" PRIu64
                " bytes; served at the new size, cached data kept",
                name, uri, e->backing_bytes, size_bytes);
      e->backing_bytes = size_bytes;
      changed = true;
    }
    if (e->mode != (uint8_t) mode) {
      e->mode = (uint8_t) mode;
      changed = true;
    }
  }
  /* Durable before anything is served at the new size: the other copy
   * keeps the old table if this write fails or tears (super.c).
   */
  if (changed && (r = super_write (dev->cd, &dev->sb)) < 0) {
    log_error ("export '%s': cannot update the superblock of cache '%s': "
               "%s", name, dev->name, strerror (-r));
    if (saved.id == 0)
      dev->sb.nr_exports--;
    *e = saved;
    super_set_csum (&dev->sb);
    goto out;
  }
  /* A new slot goes into both copies: then a bit flip in its identity
   * (checksum recomputed) makes the copies disagree and is refused
   * (super_read), where a slot in one copy only has nothing to be
   * compared with — the backing would be bound as a new export and the
   * slot's dirty data orphaned.  If this second write fails the slot is
   * durable in one copy, as before.
   */
  if (changed && saved.id == 0 && (r = super_write (dev->cd, &dev->sb)) < 0)
    log_warning ("export '%s': the second superblock copy of cache '%s' "
                 "does not have the new export yet: %s", name, dev->name,
                 strerror (-r));
  r = 0;
  dev->export_open[e->id] = true;
  __atomic_fetch_add (&dev->nr_open_exports, 1, __ATOMIC_RELAXED);
  *id = e->id;
 out:
  pthread_mutex_unlock (&dev->lock);
  return r;
}

void
device_unbind_export (struct ncache_device *dev, uint16_t id)
{
  pthread_mutex_lock (&dev->lock);
  if (id <= NC_MAX_EXPORTS && dev->export_open[id]) {
    dev->export_open[id] = false;
    __atomic_fetch_sub (&dev->nr_open_exports, 1, __ATOMIC_RELAXED);
  }
  pthread_mutex_unlock (&dev->lock);
}

int
device_set_export_mode (struct ncache_device *dev, const char *name,
                        uint16_t id, enum ncache_mode mode)
{
  struct nc_sb_export *e = NULL, saved;
  uint32_t i;
  int r = 0;

  pthread_mutex_lock (&dev->lock);
  for (i = 0; i < NC_MAX_EXPORTS; i++)
    if (dev->sb.exports[i].id == id)
      e = &dev->sb.exports[i];
  if (e == NULL || e->mode == (uint8_t) mode)
    goto out;
  saved = *e;
  e->mode = (uint8_t) mode;
  if ((r = super_write (dev->cd, &dev->sb)) < 0) {
    log_error ("export '%s': cannot record mode %s in the superblock of "
               "cache '%s': %s", name, ncache_mode_name (mode), dev->name,
               strerror (-r));
    *e = saved;
    super_set_csum (&dev->sb);
  }
 out:
  pthread_mutex_unlock (&dev->lock);
  return r;
}
