/* SPDX-License-Identifier: BSD-3-Clause */
/* cache.c — an export ("ncache"): requests onto the backing store.
 *
 * WHAT: the export handle behind cache.h: open and close, capabilities,
 * every request (range and flag checks, FUA, extents clipped to the
 * request) and statistics.  In mode none (no cache device, or detached)
 * every request goes straight to the backing store through its door
 * (export-io.c); in a cached mode the checked request goes to request.c.
 * Each request reads its mode once, when it starts, through the request
 * gate (live.c): a live change of mode applies to the requests after it.
 * WHY: front ends (nbdcached, the nbdkit plugin) see one API whatever the
 * mode; checks happen once, here, before any mode's path runs.
 * INVARIANTS:
 * - nc->caps is computed once at open and never changes (a live mode
 *   change keeps can_fast_zero: a FAST_ZERO that is not fast then fails
 *   with ENOTSUP, which the NBD spec allows at any time).
 * - Every request is checked against [0, size_bytes) and its allowed flags
 *   before the backing store sees it: the backing never gets a range
 *   outside the store or a flag it does not define.
 * - A request that fails is counted in stats.errors and nowhere else; a
 *   request that succeeds is counted in exactly one operation counter.
 * THREADS AND LOCKS: no lock here.  The handle is immutable after open
 * except for the statistics counters, which are updated with relaxed
 * atomics (a snapshot may mix counters from slightly different instants).
 * The backing store is thread-safe by its contract and request.c does its
 * own locking, so requests from any number of threads run concurrently.
 * FAILURE: 0 or -errno.  Client mistakes (range, flags, read-only) are
 * logged at debug level only — the front end reports them to the client;
 * backing failures were already logged by the driver.
 * NOT HERE: the cached paths (request.c), the cache device (device.c);
 * NBD wire errors (the front ends translate).
 */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backing.h"
#include "btree.h"
#include "bucket.h"
#include "cache-internal.h"
#include "cache.h"
#include "cdev.h"
#include "compiler.h"
#include "datacsum.h"
#include "export-io.h"
#include "gc.h"
#include "journal.h"
#include "log.h"
#include "missflight.h"
#include "seqcut.h"
#include "trimq.h"
#include "writeback.h"

/* Count a failure and hand the error back, so call sites read
 * `return failed (nc, r);`.
 */
static int
failed (struct ncache_export *nc, int r)
{
  STAT_ADD (nc, nr_errors, 1);
  return r;
}

static void
mark_written (struct ncache_export *nc)
{
  if (!__atomic_load_n (&nc->written, __ATOMIC_RELAXED))
    __atomic_store_n (&nc->written, true, __ATOMIC_RELAXED);
}

/* A cache device goes with a caching mode and the reverse.  Logs the
 * reason; -EINVAL.
 */
static int
check_servable (const struct ncache_config *cfg, const char *name)
{
  switch (cfg->mode) {
  case NCACHE_MODE_NONE:
    if (cfg->device == NULL)
      return 0;
    log_error ("export '%s': mode none with a cache device: use writeback, "
               "writethrough or writearound", name);
    return -EINVAL;
  case NCACHE_MODE_WRITEBACK:
  case NCACHE_MODE_WRITETHROUGH:
  case NCACHE_MODE_WRITEAROUND:
    if (cfg->device != NULL)
      return 0;
    log_error ("export '%s': cache mode '%s' needs a cache device",
               name, ncache_mode_name (cfg->mode));
    return -EINVAL;
  }
  log_error ("export '%s': invalid cache mode %d", name, (int) cfg->mode);
  return -EINVAL;
}

void
ncache_export_tuning_default (struct ncache_export_tuning *t)
{
  memset (t, 0, sizeof *t);
  t->writeback_percent = 10;
  t->sequential_cutoff_bytes = SEQCUT_DEFAULT_BYTES;
  t->flush_on_stop = false;
  t->writeback_off = false;
  t->writeback_update_ms = 1000;
}

/* The background parts of a cached export: cutoff, trim queue, writeback.
 * Logs; 0 or -errno (whatever was made is freed by close_background).
 */
static int
open_background (struct ncache_export *nc)
{
  int r;

  /* Made even when off: the cutoff can be set live. */
  if ((r = seqcut_create (nc->tuning.sequential_cutoff_bytes,
                          &nc->seq)) < 0) {
    log_error ("export '%s': sequential cutoff: %s", nc->name, strerror (-r));
    return r;
  }
  if ((r = trimq_create (&nc->tq)) < 0) {
    log_error ("export '%s': trim queue: %s", nc->name, strerror (-r));
    return r;
  }
  if ((r = missflight_create (&nc->mf)) < 0) {
    log_error ("export '%s': misses in flight: %s", nc->name, strerror (-r));
    return r;
  }
  if ((r = writeback_start (nc, &nc->tuning, &nc->wb)) < 0) {
    log_error ("export '%s': writeback: %s", nc->name, strerror (-r));
    return r;
  }
  return 0;
}

static void
close_background (struct ncache_export *nc)
{
  writeback_stop (nc->wb);
  nc->wb = NULL;
  trimq_destroy (nc->tq);
  nc->tq = NULL;
  missflight_destroy (nc->mf);
  nc->mf = NULL;
  seqcut_destroy (nc->seq);
  nc->seq = NULL;
}

int
ncache_open (const struct ncache_config *cfg, struct backing *backing,
             struct ncache_export **out)
{
  const char *name = cfg && cfg->name ? cfg->name : "";
  struct ncache_export *nc;
  int r;

  if (cfg == NULL || backing == NULL) {
    log_error ("export '%s': no %s", name,
               cfg == NULL ? "configuration" : "backing store");
    r = -EINVAL;
    goto err_backing;
  }
  if ((r = check_servable (cfg, name)) < 0)
    goto err_backing;

  nc = calloc (1, sizeof *nc);
  if (nc == NULL) {
    r = -errno;
    log_error ("export '%s': calloc: %s", name, strerror (errno));
    goto err_backing;
  }
  nc->name = strdup (name);
  if (nc->name == NULL) {
    r = -errno;
    log_error ("export '%s': strdup: %s", name, strerror (errno));
    goto err_free;
  }
  nc->mode = cfg->mode;
  nc->backing = backing;
  nc->dev = cfg->device;
  if (cfg->tuning != NULL)
    nc->tuning = *cfg->tuning;
  else
    ncache_export_tuning_default (&nc->tuning);
  if (nc->tuning.writeback_percent > 100)
    nc->tuning.writeback_percent = 100;
  if (nc->dev != NULL) {
    r = device_bind_export (nc->dev, name, backing->uri ? backing->uri : name,
                            backing, backing->size_bytes, cfg->mode,
                            cfg->allow_shrink, &nc->export_id);
    if (r < 0) {
      free (nc->name);
      goto err_free;
    }
  }
  range_lock_init (&nc->rl);
  live_init (nc);
  if (nc->dev != NULL)
    request_attach (nc);

  nc->caps.size_bytes = backing->size_bytes;
  nc->caps.readonly = cfg->readonly || backing->readonly;
  nc->caps.can_flush = true;
  nc->caps.can_fua = true;
  nc->caps.can_trim = backing->can_trim || nc->dev != NULL;
  nc->caps.can_zero = backing->can_zero || nc->dev != NULL;
  /* Writeback zeroes are a key in the index: always fast. */
  nc->caps.can_fast_zero = backing->can_fast_zero ||
    nc->mode == NCACHE_MODE_WRITEBACK;
  /* Mode none: a prefetch has nothing to fill, so CACHE succeeds at once,
   * which is a valid implementation of the command.
   */
  nc->caps.can_cache = true;
  nc->caps.can_extents = backing->can_extents || nc->dev != NULL;
  /* Every connection shares this handle and the backing's flush covers
   * every completed write, whoever sent it.
   */
  nc->caps.can_multi_conn = true;

  if (nc->dev != NULL && (r = open_background (nc)) < 0) {
    close_background (nc);
    request_detach (nc);
    device_unbind_export (nc->dev, nc->export_id);
    live_destroy (nc);
    range_lock_destroy (&nc->rl);
    free (nc->name);
    goto err_free;
  }

  log_debug ("export '%s': opened over %s (%s), %" PRIu64 " bytes, mode %s%s",
             nc->name, backing->uri ? backing->uri : "?", backing->ops->name,
             nc->caps.size_bytes, ncache_mode_name (nc->mode),
             nc->caps.readonly ? ", read-only" : "");
  *out = nc;
  return 0;

 err_free:
  free (nc);
 err_backing:
  backing_close (backing);
  return r;
}

void
ncache_close (struct ncache_export *nc)
{
  int r;

  if (nc == NULL)
    return;
  if (nc->dev != NULL) {
    if (__atomic_load_n (&nc->tuning.flush_on_stop, __ATOMIC_RELAXED) &&
        !nc->caps.readonly) {
      log_info ("export '%s': flush_on_stop: writing back dirty data",
                nc->name);
      r = writeback_drain (nc->wb, NULL, NULL);
      if (r < 0)
        log_error ("export '%s': flush_on_stop: writeback failed (%s); the "
                   "dirty data stays in the cache device", nc->name,
                   strerror (-r));
    }
    writeback_stop (nc->wb);
    nc->wb = NULL;
    /* Everything acknowledged becomes durable: queued trims, the backing,
     * then the journal.
     */
    r = request_flush (nc);
    if (r < 0)
      log_error ("export '%s': final flush failed: %s",
                 nc->name, strerror (-r));
    close_background (nc);
    request_detach (nc);
    device_unbind_export (nc->dev, nc->export_id);
  }
  else if (!nc->caps.readonly &&
           __atomic_load_n (&nc->written, __ATOMIC_RELAXED)) {
    r = export_io_flush (nc);
    if (r < 0)
      log_error ("export '%s': final flush of the backing store failed: %s",
                 nc->name, strerror (-r));
  }
  live_destroy (nc);
  range_lock_destroy (&nc->rl);
  backing_close (nc->backing);
  free (nc->name);
  free (nc);
}

void
ncache_get_caps (struct ncache_export *nc, struct ncache_caps *caps)
{
  *caps = nc->caps;
}

/* ---- request checks ---- */

static int
check_flags (struct ncache_export *nc, const char *what, uint32_t flags,
             uint32_t allowed)
{
  if (unlikely (flags & ~allowed)) {
    log_debug ("export '%s': %s: invalid flags 0x%" PRIx32,
               nc->name, what, flags);
    return -EINVAL;
  }
  return 0;
}

/* Reads, trims, caches, extents: -EINVAL outside the export.  Writes and
 * zeroes past the end: -ENOSPC (the NBD spec's choice for them).
 */
static int
check_range (struct ncache_export *nc, const char *what, uint64_t count,
             uint64_t offset, int err)
{
  if (unlikely (!range_within (offset, count, nc->caps.size_bytes))) {
    log_debug ("export '%s': %s: range [%" PRIu64 ", +%" PRIu64 ") "
               "outside the export (%" PRIu64 " bytes)",
               nc->name, what, offset, count, nc->caps.size_bytes);
    return err;
  }
  return 0;
}

static int
check_writable (struct ncache_export *nc, const char *what)
{
  if (unlikely (nc->caps.readonly)) {
    log_debug ("export '%s': %s: the export is read-only", nc->name, what);
    return -EPERM;
  }
  return 0;
}

/* ---- requests ---- */

int
ncache_pread (struct ncache_export *nc, void *buf, size_t count,
              uint64_t offset,
              uint32_t flags)
{
  struct live_ticket t;
  enum ncache_mode mode;
  int r;

  if ((r = check_flags (nc, "read", flags, NCACHE_NOWAIT)) < 0 ||
      (r = check_range (nc, "read", count, offset, -EINVAL)) < 0)
    return failed (nc, r);
  if (flags & NCACHE_NOWAIT) {
    /* Not served: nothing happened, nothing is counted. */
    if (count == 0)
      return -EAGAIN;
    mode = live_begin (nc, &t);
    r = mode != NCACHE_MODE_NONE ? request_pread_nowait (nc, buf, count, offset)
      : export_io_read_nowait (nc, buf, offset, offset + count);
    live_end (nc, &t);
    if (r < 0)
      return r;
  }
  else {
    mode = live_begin (nc, &t);
    if (count > 0)
      r = mode != NCACHE_MODE_NONE
        ? request_pread (nc, buf, count, offset, NULL, NULL)
        : export_io_read (nc, buf, offset, offset + count);
    else if (mode != NCACHE_MODE_NONE)
      STAT_ADD (nc, nr_hits, 1);  /* a read of nothing misses nothing */
    live_end (nc, &t);
    if (r < 0)
      return failed (nc, r);
  }
  STAT_ADD (nc, nr_reads, 1);
  STAT_ADD (nc, bytes_read, count);
  return 0;
}

/* The mode is checked again at the end: a read begun in one mode and
 * finished in another is redone (cache.h), so no ticket is held while
 * the ring reads.
 */
/* The ring's door for front ends: cdev-ring.c's calls, unchanged. */
int
ncache_ring_create (unsigned depth, struct cdev_ring **out)
{
  return cdev_ring_create (depth, out);
}

int
ncache_ring_eventfd (const struct cdev_ring *ring)
{
  return cdev_ring_eventfd (ring);
}

int
ncache_ring_submit (struct cdev_ring *ring)
{
  return cdev_ring_submit (ring);
}

unsigned
ncache_ring_reap (struct cdev_ring *ring, ncache_ring_done_fn fn,
                  void *opaque)
{
  return cdev_ring_reap (ring, fn, opaque);
}

unsigned
ncache_ring_in_flight (const struct cdev_ring *ring)
{
  return cdev_ring_in_flight (ring);
}

int
ncache_ring_wait (struct cdev_ring *ring)
{
  return cdev_ring_wait (ring);
}

void
ncache_ring_destroy (struct cdev_ring *ring)
{
  cdev_ring_destroy (ring);
}

int
ncache_pread_async (struct ncache_export *nc, struct cdev_ring *ring,
                    void *buf, size_t count, uint64_t offset,
                    struct ncache_aread *a, void *cookie)
{
  struct live_ticket t;
  int r = -EAGAIN;

  if (count == 0 || check_range (nc, "read", count, offset, -EINVAL) < 0)
    return -EAGAIN;             /* the blocking read reports it */
  a->mode = live_begin (nc, &t);
  if (a->mode != NCACHE_MODE_NONE && !live_detaching (nc))
    r = request_pread_async (nc, ring, buf, count, offset, a, cookie);
  live_end (nc, &t);
  return r;
}

int
ncache_pread_async_done (struct ncache_export *nc, size_t count,
                         uint64_t offset, struct ncache_aread *a)
{
  struct live_ticket t;
  int r = -EAGAIN;

  assert (a->pending == 0);
  if ((int) live_begin (nc, &t) == a->mode && !live_detaching (nc))
    r = request_pread_async_done (nc, count, offset, a);
  live_end (nc, &t);
  if (r < 0)
    return r;
  STAT_ADD (nc, nr_reads, 1);
  STAT_ADD (nc, bytes_read, count);
  return 0;
}

int
ncache_pwrite_async (struct ncache_export *nc, struct cdev_ring *ring,
                     const void *buf, size_t count, uint64_t offset,
                     uint32_t flags, struct ncache_awrite *w, void *cookie)
{
  struct live_ticket t;
  int r = -EAGAIN;

  /* Anything ncache_pwrite would refuse or report: it does. */
  if (flags != 0 || count == 0 || nc->caps.readonly ||
      !range_within (offset, count, nc->caps.size_bytes))
    return -EAGAIN;
  if (live_begin (nc, &t) == NCACHE_MODE_WRITEBACK && !live_detaching (nc))
    r = request_pwrite_async (nc, ring, buf, count, offset, w, cookie);
  if (r < 0) {
    live_end (nc, &t);
    return r;
  }
  /* The ticket is held until _done, as ncache_pwrite holds it. */
  assert (t.counted);
  w->live_slot = t.slot;
  return 0;
}

int
ncache_pwrite_async_done (struct ncache_export *nc, const void *buf,
                          size_t count, uint64_t offset,
                          struct ncache_awrite *w)
{
  struct live_ticket t = { .slot = w->live_slot, .counted = true };
  int r;

  assert (w->pending == 0);
  r = request_pwrite_async_done (nc, buf, count, offset, w);
  live_end (nc, &t);
  if (r == -EAGAIN)
    return r;
  if (r < 0)
    return failed (nc, r);
  mark_written (nc);
  STAT_ADD (nc, nr_writes, 1);
  STAT_ADD (nc, bytes_written, count);
  return 0;
}

/* Mode none's ncache_pread_extents: the index is the backing store's,
 * so its extents are asked first (collected: a driver's callback must
 * not call the driver again), then the data parts are read, and each
 * extent is reported once read.  Out of room, or a driver that breaks
 * its extents contract: the rest is read as data.
 */
#define NONE_READ_EXTENTS 16

struct none_extents {
  uint64_t next, end;           /* bytes: collected up to next */
  unsigned n;
  struct none_extent {
    uint64_t lo, hi;            /* bytes */
    bool zero;
  } e[NONE_READ_EXTENTS];
};

static int
none_collect (void *opaque, uint64_t offset, uint64_t length, uint32_t flags)
{
  struct none_extents *s = opaque;
  bool zero = (flags & NCACHE_EXTENT_ZERO) != 0;
  uint64_t hi;

  if (offset != s->next || length == 0)
    return -EIO;
  hi = MIN (offset + length, s->end);
  if (s->n > 0 && s->e[s->n - 1].zero == zero)
    s->e[s->n - 1].hi = hi;
  else if (s->n == NONE_READ_EXTENTS) {
    s->e[s->n - 1].zero = false;
    hi = s->e[s->n - 1].hi = s->end;
  }
  else
    s->e[s->n++] = (struct none_extent) { .lo = offset, .hi = hi,
                                          .zero = zero };
  s->next = hi;
  return hi >= s->end ? 1 : 0;
}

static int
none_pread_extents (struct ncache_export *nc, void *buf, uint64_t count,
                    uint64_t offset, ncache_extent_fn fn, void *opaque)
{
  struct none_extents s = { .next = offset, .end = offset + count };
  bool fill = false;
  unsigned i;
  int r;

  if (!nc->caps.can_extents ||
      export_io_extents (nc, offset, offset + count, none_collect, &s) < 0 ||
      s.next < s.end) {
    s.n = 1;
    s.e[0] = (struct none_extent) { .lo = offset, .hi = offset + count };
  }
  for (i = 0; i < s.n; i++) {
    const struct none_extent *e = &s.e[i];
    uint8_t *dst = (uint8_t *) buf + (e->lo - offset);

    if (!e->zero)
      r = export_io_read (nc, dst, e->lo, e->hi);
    else if (fill) {
      memset (dst, 0, e->hi - e->lo);
      r = 0;
    }
    else
      r = 0;
    if (r == 0 && !fill) {
      r = fn (opaque, e->lo, e->hi - e->lo, e->zero ? NCACHE_EXTENT_ZERO : 0);
      fill = r > 0;
      if (fill && e->zero)
        memset (dst, 0, e->hi - e->lo);
    }
    if (r < 0)
      return r;
  }
  return 0;
}

int
ncache_pread_extents (struct ncache_export *nc, void *buf, size_t count,
                      uint64_t offset, uint32_t flags, ncache_extent_fn fn,
                      void *opaque)
{
  struct live_ticket t;
  enum ncache_mode mode;
  int r = 0;

  if ((r = check_flags (nc, "read", flags, 0)) < 0 ||
      (r = check_range (nc, "read", count, offset, -EINVAL)) < 0)
    return failed (nc, r);
  mode = live_begin (nc, &t);
  if (count > 0)
    r = mode != NCACHE_MODE_NONE
      ? request_pread (nc, buf, count, offset, fn, opaque)
      : none_pread_extents (nc, buf, count, offset, fn, opaque);
  else if (mode != NCACHE_MODE_NONE)
    STAT_ADD (nc, nr_hits, 1);
  live_end (nc, &t);
  if (r < 0)
    return failed (nc, r);
  STAT_ADD (nc, nr_reads, 1);
  STAT_ADD (nc, bytes_read, count);
  return 0;
}

int
ncache_pwrite (struct ncache_export *nc, const void *buf, size_t count,
               uint64_t offset, uint32_t flags)
{
  struct live_ticket t;
  enum ncache_mode mode;
  int r;

  if ((r = check_flags (nc, "write", flags, NCACHE_FUA)) < 0 ||
      (r = check_writable (nc, "write")) < 0 ||
      (r = check_range (nc, "write", count, offset, -ENOSPC)) < 0)
    return failed (nc, r);
  mode = live_begin (nc, &t);
  if (mode != NCACHE_MODE_NONE)
    r = request_pwrite (nc, mode, buf, count, offset, flags);
  else if (count > 0)
    r = export_io_write (nc, buf, offset, offset + count, flags);
  else if (flags & NCACHE_FUA)
    r = export_io_flush (nc);
  live_end (nc, &t);
  if (r < 0)
    return failed (nc, r);
  mark_written (nc);
  STAT_ADD (nc, nr_writes, 1);
  STAT_ADD (nc, bytes_written, count);
  return 0;
}

int
ncache_flush (struct ncache_export *nc, uint32_t flags)
{
  struct live_ticket t;
  int r;

  if ((r = check_flags (nc, "flush", flags, 0)) < 0)
    return failed (nc, r);
  /* Detached: the backing store and its queued trims, with the cached
   * modes' error reporting (export_io_flush_client).
   */
  r = live_begin (nc, &t) != NCACHE_MODE_NONE ? request_flush (nc)
    : nc->dev ? export_io_flush_client (nc) : export_io_flush (nc);
  live_end (nc, &t);
  if (r < 0)
    return failed (nc, r);
  STAT_ADD (nc, nr_flushes, 1);
  return 0;
}

int
ncache_trim (struct ncache_export *nc, uint64_t count, uint64_t offset,
             uint32_t flags)
{
  struct live_ticket t;
  int r;

  if ((r = check_flags (nc, "trim", flags, NCACHE_FUA)) < 0 ||
      (r = check_writable (nc, "trim")) < 0 ||
      (r = check_range (nc, "trim", count, offset, -EINVAL)) < 0)
    return failed (nc, r);
  if (live_begin (nc, &t) != NCACHE_MODE_NONE)
    r = request_trim (nc, count, offset, flags);
  else if (count > 0)
    r = export_io_trim (nc, offset, offset + count, flags);
  else if (flags & NCACHE_FUA)
    r = export_io_flush (nc);
  live_end (nc, &t);
  if (r < 0)
    return failed (nc, r);
  mark_written (nc);
  STAT_ADD (nc, nr_trims, 1);
  return 0;
}

int
ncache_zero (struct ncache_export *nc, uint64_t count, uint64_t offset,
             uint32_t flags)
{
  const uint32_t allowed = NCACHE_FUA | NCACHE_MAY_TRIM | NCACHE_FAST_ZERO;
  struct live_ticket t;
  enum ncache_mode mode;
  int r;

  if ((r = check_flags (nc, "zero", flags, allowed)) < 0 ||
      (r = check_writable (nc, "zero")) < 0 ||
      (r = check_range (nc, "zero", count, offset, -ENOSPC)) < 0)
    return failed (nc, r);
  /* A backing store that never zeroes fast fails FAST_ZERO at once. */
  if ((flags & NCACHE_FAST_ZERO) && !nc->caps.can_fast_zero)
    return failed (nc, -ENOTSUP);
  mode = live_begin (nc, &t);
  if (mode != NCACHE_MODE_NONE)
    r = request_zero (nc, mode, count, offset, flags);
  else if ((flags & NCACHE_FAST_ZERO) && !nc->backing->can_fast_zero)
    r = -ENOTSUP;               /* detached from a writeback cache */
  else if (count > 0)
    r = export_io_zero (nc, offset, offset + count, flags);
  else if (flags & NCACHE_FUA)
    r = export_io_flush (nc);
  live_end (nc, &t);
  if (r < 0)
    return failed (nc, r);
  mark_written (nc);
  STAT_ADD (nc, nr_zeroes, 1);
  return 0;
}

int
ncache_cache (struct ncache_export *nc, uint64_t count, uint64_t offset,
              uint32_t flags)
{
  struct live_ticket t;
  int r;

  if ((r = check_flags (nc, "cache", flags, 0)) < 0 ||
      (r = check_range (nc, "cache", count, offset, -EINVAL)) < 0)
    return failed (nc, r);
  /* Mode none: nothing to prefetch into. */
  if (live_begin (nc, &t) != NCACHE_MODE_NONE)
    r = request_cache (nc, count, offset);
  live_end (nc, &t);
  if (r < 0)
    return failed (nc, r);
  STAT_ADD (nc, nr_caches, 1);
  return 0;
}

/* ---- extents ---- */

struct extents_state {
  struct ncache_export *nc;
  uint64_t next;                /* where the next extent must start */
  uint64_t end;                 /* end of the request */
  bool req_one;
  ncache_extent_fn fn;
  void *opaque;
  int err;                      /* the caller's or our own error */
  bool stopped;                 /* stopped on purpose: not an error */
};

static int
extents_clip (void *opaque, uint64_t offset, uint64_t length, uint32_t flags)
{
  struct extents_state *s = opaque;
  uint64_t len;
  int r;

  if (s->stopped || s->err)
    return 1;
  if (offset != s->next || length == 0) {
    log_error ("export '%s': backing store %s reported extent "
               "[%" PRIu64 ", +%" PRIu64 ") where %" PRIu64 " was expected",
               s->nc->name, s->nc->backing->ops->name, offset, length, s->next);
    s->err = -EIO;
    return -EIO;
  }
  len = MIN (length, s->end - offset);
  r = s->fn (s->opaque, offset, len,
             flags & (NCACHE_EXTENT_HOLE | NCACHE_EXTENT_ZERO));
  if (r < 0) {
    s->err = r;
    return r;
  }
  s->next = offset + len;
  if (r > 0 || s->req_one || s->next >= s->end) {
    s->stopped = true;
    return 1;
  }
  return 0;
}

int
ncache_extents (struct ncache_export *nc, uint64_t count, uint64_t offset,
                uint32_t flags, ncache_extent_fn fn, void *opaque)
{
  struct extents_state s = {
    .nc = nc, .next = offset, .end = offset + count,
    .req_one = (flags & NCACHE_REQ_ONE) != 0, .fn = fn, .opaque = opaque,
  };
  struct live_ticket t;
  bool cached;
  int r;

  if ((r = check_flags (nc, "extents", flags, NCACHE_REQ_ONE)) < 0 ||
      (r = check_range (nc, "extents", count, offset, -EINVAL)) < 0)
    return failed (nc, r);
  cached = live_begin (nc, &t) != NCACHE_MODE_NONE;
  if (cached && count > 0) {
    r = request_extents (nc, count, offset, s.req_one, fn, opaque);
    live_end (nc, &t);
    if (r < 0)
      return failed (nc, r);
  }
  else if (count > 0) {
    r = export_io_extents (nc, offset, offset + count, extents_clip, &s);
    live_end (nc, &t);
    if (s.err < 0)
      return failed (nc, s.err);
    if (r < 0)
      return failed (nc, r);
    if (s.next == offset) {
      log_error ("export '%s': backing store %s reported no extent at "
                 "%" PRIu64, nc->name, nc->backing->ops->name, offset);
      return failed (nc, -EIO);
    }
  }
  else
    live_end (nc, &t);
  STAT_ADD (nc, nr_extents, 1);
  return 0;
}

int
ncache_state_extents (struct ncache_export *nc, uint64_t count, uint64_t offset,
                      uint32_t flags, ncache_extent_fn fn, void *opaque)
{
  struct live_ticket t;
  int r;

  if ((r = check_flags (nc, "state extents", flags, NCACHE_REQ_ONE)) < 0 ||
      (r = check_range (nc, "state extents", count, offset, -EINVAL)) < 0)
    return failed (nc, r);
  if (count == 0)
    return 0;
  if (live_begin (nc, &t) != NCACHE_MODE_NONE)
    r = request_state_extents (nc, count, offset,
                               (flags & NCACHE_REQ_ONE) != 0, fn, opaque);
  else
    r = fn (opaque, offset, count, 0);  /* nothing is cached */
  live_end (nc, &t);
  if (r < 0)
    return failed (nc, r);
  STAT_ADD (nc, nr_extents, 1);
  return 0;
}

int
ncache_drain (struct ncache_export *nc, ncache_progress_fn fn, void *opaque)
{
  int r;

  if (nc->dev == NULL)
    r = nc->caps.readonly ? 0 : export_io_flush (nc);
  else
    r = writeback_drain (nc->wb, fn, opaque);
  if (r < 0 && r != -ECANCELED)
    STAT_ADD (nc, nr_errors, 1);
  return r;
}

/* ---- statistics ---- */

void
ncache_get_stats (struct ncache_export *nc, struct ncache_stats *stats)
{
  memset (stats, 0, sizeof *stats);
  stats->reads = STAT_LOAD (nc, nr_reads);
  stats->writes = STAT_LOAD (nc, nr_writes);
  stats->flushes = STAT_LOAD (nc, nr_flushes);
  stats->trims = STAT_LOAD (nc, nr_trims);
  stats->zeroes = STAT_LOAD (nc, nr_zeroes);
  stats->caches = STAT_LOAD (nc, nr_caches);
  stats->extents = STAT_LOAD (nc, nr_extents);
  stats->bytes_read = STAT_LOAD (nc, bytes_read);
  stats->bytes_written = STAT_LOAD (nc, bytes_written);
  stats->errors = STAT_LOAD (nc, nr_errors);
  stats->hits = STAT_LOAD (nc, nr_hits);
  stats->misses = STAT_LOAD (nc, nr_misses);
  stats->bypasses = STAT_LOAD (nc, nr_bypasses);
  stats->promotions = STAT_LOAD (nc, nr_promotions);
  stats->sequential_bypasses = STAT_LOAD (nc, nr_seq_bypasses);
  stats->write_bypasses = STAT_LOAD (nc, nr_write_bypasses);
  if (nc->dev) {
    struct writeback_stats ws;
    struct trimq_stats ts;

    stats->dirty_bytes = bucket_export_dirty_blocks (nc->dev->bs,
                                                     nc->export_id)
      * NC_BLOCK_BYTES;
    stats->dirty_zero_bytes =
      bucket_export_dirty_zero_blocks (nc->dev->bs, nc->export_id)
      * NC_BLOCK_BYTES;
    writeback_get_stats (nc->wb, &ws);
    stats->writeback_bytes = ws.bytes;
    stats->writeback_batches = ws.batches;
    stats->writeback_errors = ws.errors;
    stats->writeback_rate = ws.rate;
    stats->writeback_target_bytes = ws.target_bytes;
    stats->throttled_writes = ws.throttled;
    trimq_get_stats (nc->tq, &ts);
    stats->backing_trims_queued = ts.queued;
    stats->backing_trim_batches = ts.batches;
    stats->backing_trim_extents = ts.extents;
  }
}

const char *
ncache_device_name (const struct ncache_device *dev)
{
  return dev->name;
}

void
ncache_device_get_stats (struct ncache_device *dev,
                         struct ncache_device_stats *st)
{
  struct bucket_usage u;
  struct journal_stats js;
  struct btree_stats bts;
  struct gc_stats gs;

  memset (st, 0, sizeof *st);
  bucket_get_usage (dev->bs, &u);
  journal_get_stats (dev->journal, &js);
  btree_get_stats (dev->bt, &bts);
  st->bucket_bytes = (uint64_t) dev->sb.bucket_blocks * NC_BLOCK_BYTES;
  st->size_bytes = (uint64_t) dev->sb.nbuckets * st->bucket_bytes;
  st->buckets = u.nbuckets;
  st->free_buckets = u.free;
  st->data_buckets = u.data;
  st->btree_buckets = u.btree;
  st->dirty_buckets = u.dirty_buckets;
  st->discard_pending_buckets = u.discard + bucket_discard_waiting (dev->bs);
  st->live_bytes = u.live_blocks * NC_BLOCK_BYTES;
  st->dirty_bytes = u.dirty_blocks * NC_BLOCK_BYTES;
  st->evictions = u.evictions;
  st->gc_freed_buckets = u.gc_freed;
  st->gc_fixed_buckets = u.gc_fixed;
  st->discards = u.discards;
  st->discard_batches = u.discard_batches;
  st->discard_errors = u.discard_errors;
  st->gc_runs = u.gc_runs;      /* every completed recount, any caller */
  if (dev->gc != NULL) {
    gc_get_stats (dev->gc, &gs);
    st->gc_stale_keys = gs.stale_keys;
    st->moving_gc_runs = gs.moving_runs;
    st->moving_gc_bytes = gs.moving_bytes;
    st->moving_gc_nospc = gs.moving_nospc;
  }
  st->journal_commits = js.commits;
  st->journal_entries = js.entries;
  st->journal_keys = js.keys;
  st->journal_waiters = js.waiters;
  st->journal_max_batch_waiters = js.max_batch_waiters;
  st->journal_inlined = js.inlined;
  st->btree_depth = bts.depth;
  st->btree_nodes_in_memory = bts.nodes_in_memory;
  st->btree_node_bytes_in_memory = bts.node_bytes_in_memory;
  st->node_reads = bts.node_reads;
  st->node_writes = bts.node_writes;
  if (dev->dc != NULL) {
    st->data_checksums = 1;
    datacsum_get_counts (dev->dc, &st->corrupt_clean_blocks,
                         &st->corrupt_dirty_blocks,
                         &st->checksum_page_writes);
  }
}

/* ---- the statistics log lines ---- */

#define COUNT_FIELD(f, log) + 1
_Static_assert (sizeof (struct ncache_stats) ==
                (0 NCACHE_STATS_FIELDS (COUNT_FIELD)) * sizeof (uint64_t),
                "NCACHE_STATS_FIELDS misses a field of struct ncache_stats");
_Static_assert (sizeof (struct ncache_device_stats) ==
                (0 NCACHE_DEVICE_STATS_FIELDS (COUNT_FIELD))
                * sizeof (uint64_t),
                "NCACHE_DEVICE_STATS_FIELDS misses a field of "
                "struct ncache_device_stats");
#undef COUNT_FIELD

/* Append " name value" to buf (a line of at most size bytes, cut if
 * longer: it is a log line).
 */
static void
append_field (char *buf, size_t size, size_t *len, const char *name,
              uint64_t v)
{
  int n;

  if (*len >= size)
    return;
  n = snprintf (buf + *len, size - *len, " %s %" PRIu64, name, v);
  if (n > 0)
    *len += (size_t) n;
}

void
ncache_log_stats (struct ncache_export *nc, const char *name)
{
  struct ncache_stats st;
  char line[1024];
  size_t len = 0;

  ncache_get_stats (nc, &st);
  line[0] = '\0';
#define LOG_FIELD(f, log)                                       \
  if (log)                                                      \
    append_field (line, sizeof line, &len, #f, st.f);
  NCACHE_STATS_FIELDS (LOG_FIELD)
#undef LOG_FIELD
  log_info ("export '%s':%s", name, line);
}

void
ncache_device_log_stats (struct ncache_device *dev)
{
  struct ncache_device_stats st;
  char line[1024];
  size_t len = 0;

  ncache_device_get_stats (dev, &st);
  line[0] = '\0';
#define LOG_FIELD(f, log)                                       \
  if (log)                                                      \
    append_field (line, sizeof line, &len, #f, st.f);
  NCACHE_DEVICE_STATS_FIELDS (LOG_FIELD)
#undef LOG_FIELD
  log_info ("cache '%s':%s", ncache_device_name (dev), line);
}
