/* SPDX-License-Identifier: BSD-3-Clause */
/* backsync.c — the backing stores' durability, for request.c's ORDERING
 * rule 2: no key may be durable before the backing data it relies on.
 *
 * WHAT: per export, two generation counters.  Every backing write, zero
 * or trim bumps backing_write_gen once it has completed
 * (request_backing_wrote); request_backing_sync flushes the backing
 * store unless a flush that started after the last completed change
 * already succeeded (backing_flushed_gen).  The device keeps a list of
 * its open exports; the journal calls request_sync_backings before it
 * writes any entry, and the btree before it writes any node, so a clean
 * key (writethrough, a promotion of freshly written data) or a DELETE
 * dropping dirty data the backing now holds is never durable before that
 * backing data is.  Only such keys need it: their inserts are bracketed
 * by request_backsync_begin / _end, and the hook flushes only the exports
 * with one in progress or not yet durable (writearound's DELETEs of clean
 * keys, writeback's dirty keys need no backing flush; one export's dead
 * backing store does not stop the commits of the others).  A backing
 * change that failed is not counted: nothing relies on it.  FLUSH and writeback use the
 * same sync: concurrent callers share one flush, and nothing is flushed
 * when nothing changed.
 * THREADS AND LOCKS: the counters are atomics; backing_flush_lock
 * serialises the flushes of one export (held across the flush);
 * dev->exports_lock guards the list and is held across the hook's
 * flushes, so an export cannot close under them; order: exports_lock,
 * then backing_flush_lock.  The journal's commit thread calls in without
 * the journal or btree lock.
 * FAILURE: a failed flush leaves backing_flushed_gen where it was (the
 * next sync retries) and fails the journal commit (retried), so nothing
 * is made durable on top of it.  A store reports a failed flush once
 * (backing.h): the data it may have dropped is not flushed again by the
 * next flush, which succeeds.  So every failure bumps the export's flush
 * epoch, and a caller whose changes were made before it (every sync
 * waiting for the lock meanwhile; writeback, which reads the epoch before
 * its backing writes: request_backing_sync_since) fails too: writeback
 * keeps its keys dirty and writes them again.  In writethrough and
 * writearound the client's writes live in the backing store: the next
 * client FLUSH after a failure it did not see fails once
 * (request_backing_sync_flush), as fsync reports a writeback error.
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "backing.h"
#include "cache-internal.h"
#include "journal.h"
#include "log.h"

void
request_backing_wrote (struct ncache_export *nc, int r)
{
  if (r == 0)
    __atomic_add_fetch (&nc->backing_write_gen, 1, __ATOMIC_ACQ_REL);
}

uint64_t
request_backing_epoch (struct ncache_export *nc)
{
  return __atomic_load_n (&nc->backing_flush_fails, __ATOMIC_ACQUIRE);
}

int
request_backing_sync_since (struct ncache_export *nc, uint64_t epoch)
{
  uint64_t want = __atomic_load_n (&nc->backing_write_gen, __ATOMIC_ACQUIRE);
  uint64_t g;
  int r = 0;

  if (__atomic_load_n (&nc->backing_flushed_gen, __ATOMIC_ACQUIRE) < want) {
    pthread_mutex_lock (&nc->backing_flush_lock);
    /* A flush that started while we waited for the lock may cover us. */
    if (__atomic_load_n (&nc->backing_flushed_gen, __ATOMIC_ACQUIRE) < want) {
      g = __atomic_load_n (&nc->backing_write_gen, __ATOMIC_ACQUIRE);
      r = backing_flush (nc->backing);
      if (r == 0)
        __atomic_store_n (&nc->backing_flushed_gen, g, __ATOMIC_RELEASE);
      else
        __atomic_add_fetch (&nc->backing_flush_fails, 1, __ATOMIC_ACQ_REL);
    }
    pthread_mutex_unlock (&nc->backing_flush_lock);
  }
  /* A flush failed since the caller's changes were made: the store may
   * have dropped them (a failed fsync, a remote that restarted), and that
   * failure went to another caller, whose flush the next one will not
   * repeat.  Ours is not durable either.
   */
  if (r == 0 && request_backing_epoch (nc) != epoch)
    r = -EIO;
  return r;
}

int
request_backing_sync (struct ncache_export *nc)
{
  return request_backing_sync_since (nc, request_backing_epoch (nc));
}

int
request_backing_sync_flush (struct ncache_export *nc)
{
  uint64_t seen, now;
  int r;

  /* Writeback's own batches keep their data dirty and retry. */
  /* The live mode, read as live.c's live_mode does (not called: live.c
   * drains through writeback, which flushes through here).
   */
  if (__atomic_load_n (&nc->mode, __ATOMIC_SEQ_CST) == NCACHE_MODE_WRITEBACK)
    return request_backing_sync (nc);
  seen = __atomic_load_n (&nc->backing_fails_told, __ATOMIC_ACQUIRE);
  r = request_backing_sync_since (nc, seen);
  now = request_backing_epoch (nc);
  while (seen < now &&
         !__atomic_compare_exchange_n (&nc->backing_fails_told, &seen, now,
                                       false, __ATOMIC_ACQ_REL,
                                       __ATOMIC_ACQUIRE))
    ;
  return r;
}

void
request_attach (struct ncache_export *nc)
{
  struct ncache_device *dev = nc->dev;

  pthread_mutex_init (&nc->backing_flush_lock, NULL);
  pthread_mutex_lock (&dev->exports_lock);
  nc->next_on_dev = dev->exports;
  dev->exports = nc;
  pthread_mutex_unlock (&dev->exports_lock);
}

void
request_detach (struct ncache_export *nc)
{
  struct ncache_device *dev = nc->dev;
  struct ncache_export **pp;

  pthread_mutex_lock (&dev->exports_lock);
  for (pp = &dev->exports; *pp != NULL; pp = &(*pp)->next_on_dev)
    if (*pp == nc) {
      *pp = nc->next_on_dev;
      break;
    }
  pthread_mutex_unlock (&dev->exports_lock);
  pthread_mutex_destroy (&nc->backing_flush_lock);
}

void
request_backsync_begin (struct ncache_export *nc)
{
  __atomic_add_fetch (&nc->backsync_busy, 1, __ATOMIC_ACQ_REL);
  __atomic_add_fetch (&nc->dev->backsync_busy, 1, __ATOMIC_ACQ_REL);
}

static void
raise_seq (uint64_t *p, uint64_t seq)
{
  uint64_t cur = __atomic_load_n (p, __ATOMIC_RELAXED);

  while (cur < seq &&
         !__atomic_compare_exchange_n (p, &cur, seq, false,
                                       __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
    ;
}

void
request_backsync_end (struct ncache_export *nc, uint64_t seq)
{
  raise_seq (&nc->backsync_seq, seq);
  raise_seq (&nc->dev->backsync_seq, seq);
  __atomic_sub_fetch (&nc->backsync_busy, 1, __ATOMIC_ACQ_REL);
  __atomic_sub_fetch (&nc->dev->backsync_busy, 1, __ATOMIC_ACQ_REL);
}

/* Has nc a key relying on its backing store being inserted, or in an
 * entry not durable yet (so perhaps in the one about to be written)?
 */
static bool
backsync_pending (struct ncache_export *nc, uint64_t durable)
{
  return __atomic_load_n (&nc->backsync_busy, __ATOMIC_ACQUIRE) > 0 ||
    __atomic_load_n (&nc->backsync_seq, __ATOMIC_ACQUIRE) > durable;
}

bool
request_backing_unflushed (struct ncache_export *nc)
{
  return __atomic_load_n (&nc->backing_flushed_gen, __ATOMIC_ACQUIRE) <
    __atomic_load_n (&nc->backing_write_gen, __ATOMIC_ACQUIRE);
}

int
request_sync_backings (struct ncache_device *dev)
{
  struct ncache_export *nc;
  uint64_t durable;
  int r, result = 0;

  /* Nothing that relies on the backing stores is being inserted or is
   * short of durable: the entries and nodes written now need no flush
   * (an older such key's commit flushed them already).
   */
  if (__atomic_load_n (&dev->backsync_busy, __ATOMIC_ACQUIRE) == 0 &&
      __atomic_load_n (&dev->backsync_seq, __ATOMIC_ACQUIRE) <=
      journal_durable_seq (dev->journal))
    return 0;
  /* Only the exports with such keys: another export's slow or dead
   * backing store must not hold up this commit.
   */
  durable = journal_durable_seq (dev->journal);
  pthread_mutex_lock (&dev->exports_lock);
  for (nc = dev->exports; nc != NULL; nc = nc->next_on_dev)
    if (backsync_pending (nc, durable) &&
        (r = request_backing_sync (nc)) < 0 && result == 0) {
      log_error ("export '%s': flushing the backing store before a journal "
                 "commit failed: %s", nc->name, strerror (-r));
      result = r;
    }
  pthread_mutex_unlock (&dev->exports_lock);
  return result;
}
