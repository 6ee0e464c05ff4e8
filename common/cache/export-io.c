/* SPDX-License-Identifier: BSD-3-Clause */
/* export-io.c — the one door from an export to its backing store.
 *
 * WHAT: backing read / write / zero / trim / flush / extents for an export, each
 * clipped to the export's size, with NCACHE_* flags translated to
 * BACKING_* here and nowhere else, the trim queue's ordering (a write
 * never overtaken by an earlier trim; a read never serving what a queued
 * trim dropped) and the backsync bookkeeping (every completed change
 * counted, so the next sync flushes it).  The contract is in
 * export-io.h.
 * WHY: these four lines were written at every site that touched the
 * backing store (the request paths, writeback, mode none), and the sites
 * had started to disagree (one checked for a missing trim queue, the
 * other did not).  A path that forgets one is a durability or ordering
 * bug; with one door none can forget, and a new backing driver sees one
 * caller.
 * INVARIANTS:
 * - No backing write, zero or trim goes out before the trim queue's
 *   barrier over its range has passed (except the queue's own issue).
 * - backing_write_gen is bumped after every write, zero or trim, failed
 *   or not (a failed write may have changed part of the range).
 * - The backing never sees a range past the export's size.
 * THREADS AND LOCKS: any thread; no engine lock is taken here (the trim
 * queue has its own; a backing flush takes backing_flush_lock inside
 * backsync.c).  Never called from the trim queue's issue callback except
 * for issue_one itself.
 * FAILURE: -errno from the backing store (logged by its driver).  A
 * queued trim that fails while issued before a read or a flush is logged
 * at debug level and ignored (trims are advisory).
 * NOT HERE: the cache side of a backing change (forget, settle the cuts,
 * DELETE: request.c's ORDERING); the flush of the backing itself and the
 * journal's hook (backsync.c); the queue (trimq.c).
 */
#include <config.h>

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "backing.h"
#include "cache-internal.h"
#include "clock.h"
#include "compiler.h"
#include "export-io.h"
#include "log.h"
#include "trimq.h"

static uint32_t
backing_flags_of (uint32_t flags)
{
  uint32_t bflags = 0;

  if (flags & NCACHE_FUA)
    bflags |= BACKING_FUA;
  if (flags & NCACHE_MAY_TRIM)
    bflags |= BACKING_MAY_TRIM;
  if (flags & NCACHE_FAST_ZERO)
    bflags |= BACKING_FAST;
  return bflags;
}

uint64_t
export_io_clipped (const struct ncache_export *nc, uint64_t lo, uint64_t hi)
{
  uint64_t size = nc->caps.size_bytes;

  if (lo >= size || hi <= lo)
    return 0;
  return MIN (hi, size) - lo;
}

/* Clip [lo, *hi) to the export: false if nothing is left. */
static bool
clip (const struct ncache_export *nc, uint64_t lo, uint64_t *hi)
{
  uint64_t n = export_io_clipped (nc, lo, *hi);

  *hi = lo + n;
  return n > 0;
}

/* Before a change of [lo, hi): an earlier queued trim must not land
 * after it.
 */
static void
barrier (struct ncache_export *nc, uint64_t lo, uint64_t hi)
{
  if (nc->tq != NULL)
    trimq_write_barrier (nc->tq, lo, hi - lo);
}

/* The trim queue's issue callback: one backing trim (the queue orders it
 * against writes itself, so no barrier).
 */
static int
issue_one (void *opaque, uint64_t offset, uint64_t count)
{
  struct ncache_export *nc = opaque;
  int r;

  r = backing_trim (nc->backing, count, offset, 0);
  request_backing_wrote (nc, r);
  return r;
}

int
export_io_issue_trims (struct ncache_export *nc, bool all)
{
  if (nc->tq == NULL)
    return 0;
  return trimq_issue (nc->tq, all, issue_one, nc);
}

/* Everything queued goes out before a read or a flush; failures are
 * logged only (advisory).
 */
static void
issue_all_advisory (struct ncache_export *nc)
{
  int r = export_io_issue_trims (nc, true);

  if (r < 0)
    log_debug ("export '%s': a queued trim failed: %s (trims are "
               "advisory)", nc->name, strerror (-r));
}

int
export_io_read (struct ncache_export *nc, void *dst, uint64_t lo, uint64_t hi)
{
  uint64_t end = hi;
  int r = 0;

  if (clip (nc, lo, &end)) {
    /* A queued trim over the range goes out first (see trimq.h). */
    if (trimq_overlaps (nc->tq, lo, end - lo))
      issue_all_advisory (nc);
    r = backing_pread (nc->backing, dst, end - lo, lo);
  }
  else
    end = lo;
  if (r == 0 && end < hi)
    memset ((uint8_t *) dst + (end - lo), 0, hi - end);
  return r;
}

int
export_io_read_nowait (struct ncache_export *nc, void *dst, uint64_t lo,
                       uint64_t hi)
{
  uint64_t end = hi;

  if (clip (nc, lo, &end)) {
    /* Issuing a queued trim first would wait. */
    if (trimq_overlaps (nc->tq, lo, end - lo) ||
        backing_pread_nowait (nc->backing, dst, end - lo, lo) < 0)
      return -EAGAIN;
  }
  else
    end = lo;
  if (end < hi)
    memset ((uint8_t *) dst + (end - lo), 0, hi - end);
  return 0;
}

enum change { CHANGE_WRITE, CHANGE_ZERO, CHANGE_TRIM };

/* THE backing-write rule, the one place it is written: a change of
 * [lo, hi) (already clipped) passes the trim queue's barrier, goes to the
 * backing store, and is counted for the next sync whatever its result.
 */
static int
change (struct ncache_export *nc, enum change op, const void *src, uint64_t lo,
        uint64_t hi, uint32_t flags)
{
  uint32_t bflags = backing_flags_of (flags);
  int r;

  barrier (nc, lo, hi);
  switch (op) {
  case CHANGE_WRITE:
    r = backing_pwrite (nc->backing, src, hi - lo, lo, bflags);
    break;
  case CHANGE_ZERO:
    r = backing_zero (nc->backing, hi - lo, lo, bflags);
    break;
  case CHANGE_TRIM:
  default:
    r = backing_trim (nc->backing, hi - lo, lo, bflags);
    break;
  }
  request_backing_wrote (nc, r);
  return r;
}

int
export_io_write (struct ncache_export *nc, const void *src, uint64_t lo,
                 uint64_t hi, uint32_t flags)
{
  if (!clip (nc, lo, &hi))
    return 0;
  return change (nc, CHANGE_WRITE, src, lo, hi, flags);
}

int
export_io_zero (struct ncache_export *nc, uint64_t lo, uint64_t hi,
                uint32_t flags)
{
  if (!clip (nc, lo, &hi))
    return 0;
  return change (nc, CHANGE_ZERO, NULL, lo, hi, flags);
}

int
export_io_trim (struct ncache_export *nc, uint64_t lo, uint64_t hi,
                uint32_t flags)
{
  if (!clip (nc, lo, &hi))
    return 0;
  if (!(flags & NCACHE_FUA) && nc->tq != NULL &&
      trimq_add (nc->tq, lo, hi - lo, clock_now_ms ()) == 0)
    return 0;
  return change (nc, CHANGE_TRIM, NULL, lo, hi, flags);
}

static int
flush (struct ncache_export *nc, bool client)
{
  /* Mode none keeps no backsync counters: every flush goes out. */
  if (nc->dev == NULL)
    return backing_flush (nc->backing);
  /* Queued trims go out first, so the flush covers them too. */
  if (nc->tq != NULL && trimq_len (nc->tq) > 0)
    issue_all_advisory (nc);
  return client ? request_backing_sync_flush (nc) : request_backing_sync (nc);
}

int
export_io_flush (struct ncache_export *nc)
{
  return flush (nc, false);
}

int
export_io_flush_client (struct ncache_export *nc)
{
  return flush (nc, true);
}

int
export_io_extents (struct ncache_export *nc, uint64_t lo, uint64_t hi,
                   backing_extent_fn fn, void *opaque)
{
  if (!clip (nc, lo, &hi))
    return 0;
  return backing_extents (nc->backing, hi - lo, lo, fn, opaque);
}
