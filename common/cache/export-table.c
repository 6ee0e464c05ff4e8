/* SPDX-License-Identifier: BSD-3-Clause */
/* export-table.c — freeing a slot of a cache's export table ("nbdcache
 * forget").
 *
 * WHAT: ncache_device_find_export names a slot (by id, export name,
 * backing URI or path) and says how much dirty data it holds;
 * ncache_device_forget_export marks the slot as being forgotten (a
 * superblock write), drops every key of the slot's id (dirty ones only
 * when asked; past the slot's recorded size too), makes that durable,
 * writes the index and a journal entry that needs no older one, then
 * frees the slot in both superblock copies; device_finish_forgets, at
 * open, finishes a forget a crash interrupted.
 * WHY: an export whose backing store is gone for good would otherwise
 * keep its slot, and its cached data, forever; the table is finite.
 * INVARIANTS: a slot is freed only after its keys are durably deleted
 * (the journal flushed) and neither the index on disk nor the journal's
 * replay range holds one, so a new export given the id never sees them,
 * and recovery, which checks each key it reads, never finds a DIRTY key
 * without its export (assemble.c).
 * The superblock is written twice, so both copies have the slot free
 * before the id can be reused (super.c's copy agreement).
 * THREADS AND LOCKS: the device is open by this process alone (the cdev
 * lock) and the slot is not bound; dev->lock around the table.
 * FAILURE: -EBUSY (bound), -ENOTEMPTY (dirty data, no discard), -ENOENT
 * (no such slot), -EEXIST (a name that matches several slots), -errno
 * from I/O; every refusal logged with what to do.  A failure before the
 * mark is durable changes nothing; after it the slot is never bound again
 * (device.c refuses it) and the next open finishes the forget, so the
 * export is never served with part of its keys.  test-forget-crash.c
 * cuts the device at each write.
 * Also here: device_drop_keys, the durable drop of an export's keys that
 * forget, --allow-shrink (device.c) and detach (live.c) share.
 * NOT HERE: binding (device.c), the command line (admin/forget-export.c).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backing.h"
#include "bkey.h"
#include "btree.h"
#include "bucket.h"
#include "cache-internal.h"
#include "cdev.h"
#include "journal.h"
#include "log.h"
#include "super.h"

/* (cache-internal.h) --allow-shrink, forget and a detach.  Called without
 * dev->lock (the btree takes its own).
 */
int
device_drop_keys (struct ncache_device *dev, const char *name,
                  const char *why, uint16_t id, uint64_t from, uint64_t to)
{
  const uint64_t max_blocks = UINT64_C (1) << 30;
  int r = 0;

  while (from < to && r == 0) {
    uint64_t end = to - from > max_blocks ? from + max_blocks : to;
    struct nc_key k;

    memset (&k, 0, sizeof k);
    k.export_id = id;
    k.end = end;
    k.size = (uint32_t) (end - from);
    k.flags = NC_KEY_DELETE;
    r = btree_insert (dev->bt, &k, 1, NULL, NULL);
    from = end;
  }
  if (r == 0)
    r = journal_flush (dev->journal);
  if (r < 0)
    log_error ("export '%s': dropping %s failed: %s", name, why,
               strerror (-r));
  return r;
}

#define FORGET_SCAN_PIECES 32

/* DELETE every key of export id at or past block `from`, journaled (the
 * caller's drop commits them).  The slot's recorded size can lag its
 * keys (the two superblock copies may disagree on it, the newer one
 * lost), and a key left behind would show in the export given the id
 * next.  0 or -errno.
 */
static int
drop_keys_past (struct ncache_device *dev, uint16_t id, uint64_t from)
{
  struct btree_piece p[FORGET_SCAN_PIECES];
  uint64_t pos = from;
  struct nc_key k;
  int n, i, r;

  while (pos < UINT64_MAX) {
    n = btree_lookup (dev->bt, id, pos, UINT64_MAX, p, FORGET_SCAN_PIECES,
                      NULL);
    if (n < 0)
      return n;
    for (i = 0; i < n; i++) {
      if (p[i].found) {
        bkey_init (&k, id, p[i].start, p[i].end, NC_KEY_DELETE);
        if ((r = btree_insert (dev->bt, &k, 1, NULL, NULL)) < 0)
          return r;
      }
      pos = p[i].end;
    }
  }
  return 0;
}

static void
fill_info (struct ncache_device *dev, const struct nc_sb_export *e,
           struct ncache_slot_info *out)
{
  memset (out, 0, sizeof *out);
  out->id = e->id;
  snprintf (out->name, sizeof out->name, "%s", e->name);
  snprintf (out->uri, sizeof out->uri, "%s", e->uri);
  out->backing_bytes = e->backing_bytes;
  out->dirty_bytes = bucket_export_dirty_blocks (dev->bs, e->id)
    * NC_BLOCK_BYTES;
  out->open = dev->export_open[e->id];
}

static bool
all_digits (const char *s)
{
  if (*s == '\0')
    return false;
  for (; *s; s++)
    if (*s < '0' || *s > '9')
      return false;
  return true;
}

int
ncache_device_find_export (struct ncache_device *dev, const char *which,
                           struct ncache_slot_info *out)
{
  struct nc_sb_export *e = NULL, *by_name = NULL;
  char *file_uri = NULL;
  unsigned n_name = 0;
  size_t i;
  int r = 0;

  if (strncmp (which, "file:", 5) != 0 && !all_digits (which))
    file_uri = backing_file_uri (which);
  pthread_mutex_lock (&dev->lock);
  if (all_digits (which)) {
    unsigned long id = strtoul (which, NULL, 10);

    e = id <= NC_MAX_EXPORTS ? super_find_id (&dev->sb, (uint16_t) id)
      : NULL;
  }
  if (e == NULL)
    e = super_find_export (&dev->sb, which);
  if (e == NULL && file_uri != NULL)
    e = super_find_export (&dev->sb, file_uri);
  if (e == NULL)
    for (i = 0; i < super_table_slots (&dev->sb); i++)
      if (dev->sb.exports[i].id != 0 &&
          strcmp (dev->sb.exports[i].name, which) == 0) {
        by_name = &dev->sb.exports[i];
        n_name++;
      }
  if (e == NULL && n_name > 1) {
    log_error ("cache '%s' (%s): %u exports are named '%s'; name the one "
               "to forget by its id (nbdcache show %s)", dev->name,
               dev->cd->path, n_name, which, dev->cd->path);
    r = -EEXIST;
  }
  else if (e == NULL && by_name == NULL) {
    log_error ("cache '%s' (%s): no export '%s' in its export table (by "
               "id, name, backing URI or path; nbdcache show %s lists "
               "them)", dev->name, dev->cd->path, which, dev->cd->path);
    r = -ENOENT;
  }
  else
    fill_info (dev, e != NULL ? e : by_name, out);
  pthread_mutex_unlock (&dev->lock);
  free (file_uri);
  return r;
}

int
ncache_device_forget_export (struct ncache_device *dev, uint16_t id,
                             bool discard_dirty)
{
  struct ncache_slot_info info;
  struct nc_sb_export *e, saved;
  uint64_t blocks;
  int r;

  pthread_mutex_lock (&dev->lock);
  e = super_find_id (&dev->sb, id);
  if (e == NULL) {
    pthread_mutex_unlock (&dev->lock);
    log_error ("cache '%s': no export id %u", dev->name, id);
    return -ENOENT;
  }
  fill_info (dev, e, &info);
  if (info.open) {
    pthread_mutex_unlock (&dev->lock);
    log_error ("cache '%s': export id %u (%s) is in use", dev->name, id,
               info.uri);
    return -EBUSY;
  }
  /* A slot being forgotten was allowed to lose its dirty data already. */
  if (info.dirty_bytes > 0 && !discard_dirty &&
      !(e->flags & NC_SLOT_FORGETTING)) {
    pthread_mutex_unlock (&dev->lock);
    log_error ("cache '%s' (%s): export id %u ('%s', %s) has %" PRIu64
               " bytes of dirty data, newer than its backing store: not "
               "forgetting it.  Serve it once with its backing store so the "
               "data is written back (or flushed: nbdcache flush), or lose "
               "that data with --discard-dirty", dev->name, dev->cd->path,
               id, info.name, info.uri, info.dirty_bytes);
    return -ENOTEMPTY;
  }
  /* Mark the slot first: once the mark is durable the export is gone
   * for good, whatever happens next (a crash: the next open finishes the
   * forget), so it is never served with only part of its keys.
   */
  if (!(e->flags & NC_SLOT_FORGETTING)) {
    e->flags |= NC_SLOT_FORGETTING;
    if ((r = super_write (dev->cd, &dev->sb)) < 0) {
      e->flags &= ~NC_SLOT_FORGETTING;
      super_set_csum (&dev->sb);
      pthread_mutex_unlock (&dev->lock);
      log_error ("cache '%s': export id %u: marking its slot as being "
                 "forgotten failed: %s; nothing changed", dev->name, id,
                 strerror (-r));
      return r;
    }
  }
  /* Reserve the slot while its keys go (no bind may take it). */
  dev->export_open[id] = true;
  blocks = (e->backing_bytes + NC_BLOCK_BYTES - 1) / NC_BLOCK_BYTES;
  pthread_mutex_unlock (&dev->lock);

  r = drop_keys_past (dev, id, blocks);
  if (r == 0)
    r = device_drop_keys (dev, info.name,
                          "the forgotten export's cached data", id, 0,
                          blocks);
  else
    log_error ("export '%s': dropping the cached data past its recorded "
               "size failed: %s", info.name, strerror (-r));
  /* Recovery checks the on-disk index and every journal key it replays,
   * one by one, against the table: a DIRTY key of a freed id is
   * corruption to it, even if a later DELETE in the journal cuts it.  So
   * before the slot is freed, write every changed node (the index on disk
   * no longer holds the id's keys), then commit an entry that needs no
   * older one (the entries that hold them leave the replay range).
   */
  if (r == 0 && (r = btree_write_all (dev->bt)) == 0) {
    journal_mark_needed (dev->journal);
    r = journal_flush (dev->journal);
  }
  if (r < 0)
    log_error ("export '%s': making the index durable without the "
               "forgotten export's keys failed: %s; not freeing the slot",
               info.name, strerror (-r));
  if (r == 0 && bucket_export_dirty_blocks (dev->bs, id) != 0) {
    log_error ("cache '%s': export id %u still has dirty data after its "
               "keys were dropped; not freeing the slot", dev->name, id);
    r = -EIO;
  }

  pthread_mutex_lock (&dev->lock);
  dev->export_open[id] = false;
  if (r == 0) {
    e = super_find_id (&dev->sb, id);
    saved = *e;
    super_remove_export (&dev->sb, e);
    if ((r = super_write (dev->cd, &dev->sb)) < 0) {
      *e = saved;
      dev->sb.nr_exports++;
      super_set_csum (&dev->sb);
    }
    else if ((r = super_write (dev->cd, &dev->sb)) < 0)
      log_warning ("cache '%s': the second superblock write failed; the "
                   "slot is free in the newer copy", dev->name);
  }
  pthread_mutex_unlock (&dev->lock);
  if (r == 0)
    log_info ("cache '%s' (%s): forgot export id %u ('%s', %s)%s",
              dev->name, dev->cd->path, id, info.name, info.uri,
              info.dirty_bytes > 0 ? ", its dirty data discarded" : "");
  return r;
}

void
device_finish_forgets (struct ncache_device *dev)
{
  uint16_t ids[NC_MAX_EXPORTS];
  size_t i, n = 0;

  pthread_mutex_lock (&dev->lock);
  for (i = 0; i < super_table_slots (&dev->sb); i++)
    if (dev->sb.exports[i].id != 0 &&
        (dev->sb.exports[i].flags & NC_SLOT_FORGETTING))
      ids[n++] = dev->sb.exports[i].id;
  pthread_mutex_unlock (&dev->lock);
  for (i = 0; i < n; i++) {
    log_warning ("cache '%s' (%s): 'nbdcache forget' of export id %u was "
                 "interrupted; finishing it", dev->name, dev->cd->path,
                 ids[i]);
    if (ncache_device_forget_export (dev, ids[i], true) < 0)
      log_error ("cache '%s' (%s): export id %u stays marked as being "
                 "forgotten (it is not served); run 'nbdcache forget %s %u' "
                 "to finish it", dev->name, dev->cd->path, ids[i],
                 dev->cd->path, ids[i]);
  }
}
