/* SPDX-License-Identifier: BSD-3-Clause */
/* gc.c — a cache device's background thread: discards, GC, moving GC.
 *
 * WHAT: the thread gc.h describes.  It wakes every GC_TICK_MS, on
 * gc_kick, and at stop; each round does, in order:
 *   1. discards: batches of EMPTY buckets taken busy by
 *      bucket_discard_take (gens durable), merged into runs of
 *      neighbouring buckets, one cdev_discard per run, then
 *      bucket_discard_done;
 *   2. a btree_gc pass when one is due (GC_PERIOD_MS since the last,
 *      a kick asking for one, or free space low — at most once per
 *      LOW_GC_INTERVAL_MS then);
 *   3. moving GC when free space is low (or forced): fragmented buckets
 *      holding dirty data are selected, their keys found with btree_scan,
 *      each key copied to new space and swapped in with btree_replace.
 *      A key's data checksums move with it, unverified (cache-data.h):
 *      a corrupt block stays detectably corrupt, and moving costs no
 *      hashing.
 * WHY: the allocator must never do slow work on a request's behalf that
 * can be done ahead of time: discards are advisory I/O, GC walks the
 * whole index, and moving GC is the only way to reclaim a bucket that
 * still holds a little dirty data.
 *
 * INVARIANTS:
 * - A bucket is discarded only while BUCKET_DISCARD: its new gen is
 *   durable, so no key into the discarded data can come back.
 * - Moving GC copies a key's blocks to space from the write point
 *   matching the key (dirty -> WP_DIRTY, clean -> WP_CLEAN), checks
 *   after the read that the old bucket's gen did not move (else the read
 *   may have seen the bucket's next life and the copy is dropped), and
 *   keeps the open reference on the new space until btree_replace has
 *   run; btree_replace only replaces blocks still held by the old key,
 *   so a block rewritten meanwhile keeps its newer value.  Dirty data is
 *   moved, never dropped; the journal commit that makes the replacement
 *   durable syncs the device first, so the copy is durable before the
 *   key pointing at it.
 * - Rounds never overlap (run_lock): the thread and gc_run_once take
 *   turns.
 *
 * THREADS AND LOCKS: g->lock guards the wake-up flags and the stats
 * only and is a leaf: nothing else is called with it held (gc_kick is
 * called from the allocator with the bucket lock held).  g->run_lock is
 * held across a round, with no engine lock: btree_gc, btree_scan and
 * btree_replace take the btree lock themselves, and all device I/O here
 * (discards, moving reads and writes) is done with no lock held.
 *
 * FAILURE: an error stops that step of the round; it is counted
 * (errors), logged at most once per ERROR_LOG_INTERVAL_MS, and the step
 * runs again at the next wake-up.  Moving GC running out of space is not
 * an error: its selection fits the blocks to move into the space free
 * at that moment, and foreground writes may take that space first; the
 * pass stops where it is, is counted (moving_nospc) and logged at debug.  A failed discard is counted and the
 * buckets are reused anyway (a discard is advisory).  The device keeps
 * serving throughout.
 *
 * NOT HERE: the bucket states and the batch bookkeeping (bucket.c), the
 * index walk and replace-if-unchanged (btree.c), writeback (writeback.c).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bkey.h"
#include "btree.h"
#include "bucket.h"
#include "cache-data.h"
#include "cache-internal.h"
#include "cdev.h"
#include "clock.h"
#include "compiler.h"
#include "gc.h"
#include "invariant.h"
#include "log.h"
#include "super.h"

/* The thread looks for discards and low space this often. */
#define GC_TICK_MS 1000
/* With free space low, a GC pass at most this often. */
#define LOW_GC_INTERVAL_MS 1000
#define ERROR_LOG_INTERVAL_MS 60000
/* Keys per btree_scan call of the mover. */
#define MOVE_SCAN_KEYS 64

struct gc {
  struct ncache_device *dev;    /* borrowed */
  pthread_t thread;
  bool thread_started;

  pthread_mutex_t lock;         /* the fields below */
  pthread_cond_t cond;          /* CLOCK_MONOTONIC */
  bool stop;
  bool kicked;                  /* gc_kick since the last round began */
  bool need_gc;                 /* a kick asked for a GC pass */
  struct gc_stats st;
  uint64_t last_error_log_ms;

  pthread_mutex_t run_lock;     /* one round at a time */
  uint64_t last_gc_ms;          /* under run_lock */
  void *buf;                    /* one bucket; under run_lock */
  uint32_t *words;              /* its data checksums; under run_lock */
  uint32_t *batch;              /* [GC_DISCARD_BATCH]; under run_lock */
};



/* Count an error and log it, at most once per ERROR_LOG_INTERVAL_MS. */
static void
gc_error (struct gc *g, const char *what, int r)
{
  uint64_t now = clock_now_ms ();
  bool say;

  pthread_mutex_lock (&g->lock);
  g->st.errors++;
  say = g->last_error_log_ms == 0 ||
    now - g->last_error_log_ms >= ERROR_LOG_INTERVAL_MS;
  if (say)
    g->last_error_log_ms = now;
  pthread_mutex_unlock (&g->lock);
  if (say)
    log_error ("cache '%s': background %s failed: %s (retried later; "
               "further errors not logged for %d s)", g->dev->name, what,
               strerror (-r), ERROR_LOG_INTERVAL_MS / 1000);
}

/* ---- 1. discards ---- */

/* Discard one batch of busy buckets (sorted), merged into runs.  The
 * number of failed runs.
 */
static uint32_t
discard_runs (struct gc *g, const uint32_t *b, uint32_t n,
              uint64_t *nruns)
{
  struct ncache_device *dev = g->dev;
  uint64_t bucket_bytes = super_bucket_bytes (&dev->sb);
  uint32_t i = 0, failed = 0;

  while (i < n) {
    uint32_t j = i + 1;
    int r;

    while (j < n && b[j] == b[j - 1] + 1)
      j++;
    r = cdev_discard (dev->cd, (uint64_t) (j - i) * bucket_bytes,
                      super_bucket_offset (&dev->sb, b[i]));
    if (r < 0) {
      failed++;
      gc_error (g, "discard", r);
    }
    (*nruns)++;
    i = j;
  }
  return failed;
}

static bool
stopping (struct gc *g)
{
  bool stop;

  pthread_mutex_lock (&g->lock);
  stop = g->stop;
  pthread_mutex_unlock (&g->lock);
  return stop;
}

/* Batches until no EMPTY bucket waits or the thread is asked to stop (a
 * pass over a large empty cache is many batches; what is left waits for
 * the next start).  Sets *need_gc if gens are at their distance limit.
 */
static int
do_discards (struct gc *g, bool *need_gc)
{
  struct bucket_set *bs = g->dev->bs;

  while (!stopping (g) && bucket_discard_waiting (bs) > 0) {
    uint64_t runs = 0;
    uint32_t failed;
    int n = bucket_discard_take (bs, g->batch, GC_DISCARD_BATCH);

    if (n == -EAGAIN) {
      *need_gc = true;
      return 0;
    }
    if (n < 0) {
      gc_error (g, "discard batch (prio write)", n);
      return n;
    }
    if (n == 0)
      return 0;
    failed = discard_runs (g, g->batch, (uint32_t) n, &runs);
    bucket_discard_done (bs, g->batch, (uint32_t) n, failed);
    pthread_mutex_lock (&g->lock);
    g->st.discard_batches++;
    g->st.discard_extents += runs;
    g->st.discard_buckets += (uint64_t) n;
    g->st.discard_errors += failed;
    pthread_mutex_unlock (&g->lock);
  }
  return 0;
}

/* ---- 2. GC ---- */

static int
do_gc (struct gc *g)
{
  uint64_t stale = 0;
  int r;

  r = btree_gc (g->dev->bt, &stale);
  g->last_gc_ms = clock_now_ms ();
  if (r < 0) {
    gc_error (g, "GC pass", r);
    return r;
  }
  pthread_mutex_lock (&g->lock);
  g->st.runs++;
  g->st.stale_keys += stale;
  pthread_mutex_unlock (&g->lock);
  return 0;
}

/* ---- 3. moving GC ---- */

/* Space for the mover.  The allocator would wait for a discard batch,
 * and this thread is the one that runs them: run them here instead.
 */
static int
mover_alloc (struct gc *g, enum bucket_wp wp, uint32_t nblocks,
             struct bucket_extent *ext)
{
  struct bucket_set *bs = g->dev->bs;
  bool need_gc = false;
  unsigned tries;
  int r;

  for (tries = 0; tries < 4; tries++) {
    r = bucket_alloc_data_nowait (bs, wp, nblocks, ext);
    if (r != -EBUSY)
      return r;
    if ((r = do_discards (g, &need_gc)) < 0)
      return r;
  }
  /* Others keep taking what the batches free: wait like them (bounded). */
  return bucket_alloc_data (bs, wp, nblocks, ext);
}

static bool
in_moving_bucket (void *opaque, const struct nc_key *k)
{
  struct bucket_set *bs = opaque;

  return bkey_has_data (k) && bucket_is_moving (bs, k->bucket);
}

/* Move one key, piece by piece (an allocation may return less than the
 * rest of the key).  Blocks replaced go to *moved.
 */
static int
move_key (struct gc *g, const struct nc_key *k, uint64_t *moved,
          uint64_t *pieces)
{
  struct ncache_device *dev = g->dev;
  enum bucket_wp wp = bkey_is_dirty (k) ? WP_DIRTY : WP_CLEAN;
  uint64_t pos = bkey_start (k);
  int r;

  while (pos < k->end) {
    struct bucket_extent ext;
    struct nc_key old = *k, nk;
    uint64_t replaced = 0;

    r = mover_alloc (g, wp, (uint32_t) (k->end - pos), &ext);
    if (r < 0)
      return r;
    if (pos > bkey_start (&old))
      bkey_cut_front (&old, pos);
    if (pos + ext.nblocks < old.end)
      bkey_cut_back (&old, pos + ext.nblocks);

    r = cache_data_read_moving (dev, &old, g->buf, g->words);
    if (r == -ESTALE) {
      /* The old bucket moved on: the read may have seen its next life. */
      bucket_put_open (dev->bs, ext.bucket);
      return 0;
    }
    nk = old;
    if (r == 0)
      r = cache_data_write_moved (dev, &ext, g->buf, g->words, &nk);
    if (r == 0) {
      r = btree_replace (dev->bt, &old, &nk, 1, &replaced, NULL);
    }
    bucket_put_open (dev->bs, ext.bucket);
    if (r < 0)
      return r;
    *moved += replaced;
    *pieces += replaced > 0;
    pos = old.end;
  }
  return 0;
}

static int
do_moving (struct gc *g, bool *need_gc)
{
  struct ncache_device *dev = g->dev;
  uint32_t sel[GC_MOVING_MAX_BUCKETS], nsel;
  struct btree_cursor cur = { .export_id = 0, .block = 0, .done = false };
  struct nc_key *keys;
  uint64_t moved = 0, pieces = 0;
  int r = 0, n, i;

  nsel = bucket_moving_select (dev->bs, GC_MOVING_FILL_PERCENT, sel,
                               GC_MOVING_MAX_BUCKETS);
  if (nsel == 0)
    return 0;
  keys = malloc (MOVE_SCAN_KEYS * sizeof *keys);
  if (keys == NULL) {
    bucket_moving_done (dev->bs, sel, nsel);
    return -ENOMEM;
  }
  while (!cur.done) {
    n = btree_scan (dev->bt, &cur, NC_MAX_EXPORTS, in_moving_bucket,
                    dev->bs, keys, MOVE_SCAN_KEYS);
    if (n < 0) {
      r = n;
      break;
    }
    for (i = 0; i < n && r == 0; i++)
      r = move_key (g, &keys[i], &moved, &pieces);
    if (r < 0)
      break;
    /* Buckets the moved keys emptied wait for a discard: keep the
     * allocator (ours included) supplied.
     */
    if ((r = do_discards (g, need_gc)) < 0)
      break;
  }
  bucket_moving_done (dev->bs, sel, nsel);
  free (keys);
  if (r == -EAGAIN)
    *need_gc = true;
  if (r == -ENOSPC) {
    /* Foreground writes took the free space the selection counted on
     * (it fits the moved blocks into what was free when it ran): the
     * keys moved so far are in place, the rest stay where they are, and
     * the next low-space round tries again.  Not an error: the cache is
     * full of dirty data, which writeback drains.
     */
    log_debug ("cache '%s': moving GC: out of space after %" PRIu64
               " blocks; pass skipped", dev->name, moved);
    pthread_mutex_lock (&g->lock);
    g->st.moving_nospc++;
    pthread_mutex_unlock (&g->lock);
    r = 0;
  }
  if (r < 0)
    gc_error (g, "moving GC", r);
  pthread_mutex_lock (&g->lock);
  g->st.moving_runs++;
  g->st.moving_bytes += moved * NC_BLOCK_BYTES;
  g->st.moving_keys += pieces;
  pthread_mutex_unlock (&g->lock);
  log_debug ("cache '%s': moving GC: %" PRIu32 " buckets, %" PRIu64
             " blocks moved", dev->name, nsel, moved);
  return r;
}

/* ---- a round ---- */

static bool
free_low (struct gc *g)
{
  struct bucket_usage u;
  uint64_t avail;

  bucket_get_usage (g->dev->bs, &u);
  avail = (uint64_t) u.free + u.empty + u.discard;
  return avail * 100 < (uint64_t) u.nbuckets * GC_FREE_LOW_PERCENT;
}

/* With run_lock held.  The first error, or 0. */
static int
round_locked (struct gc *g, bool need_gc, bool force_gc, bool force_moving)
{
  ASSERT_HELD (&g->run_lock);
  uint64_t now = clock_now_ms ();
  bool low;
  int r, first = 0;

  if ((r = do_discards (g, &need_gc)) < 0)
    first = r;
  if (stopping (g))
    return first;
  low = free_low (g);
  if (force_gc || need_gc || now - g->last_gc_ms >= GC_PERIOD_MS ||
      (low && now - g->last_gc_ms >= LOW_GC_INTERVAL_MS)) {
    if ((r = do_gc (g)) < 0 && first == 0)
      first = r;
    low = free_low (g);
  }
  if (force_moving || low) {
    need_gc = false;
    if ((r = do_moving (g, &need_gc)) < 0 && first == 0)
      first = r;
    if (need_gc && (r = do_gc (g)) < 0 && first == 0)
      first = r;
  }
  return first;
}

static void *
gc_thread (void *arg)
{
  struct gc *g = arg;

  pthread_mutex_lock (&g->lock);
  while (!g->stop) {
    bool need_gc;

    if (!g->kicked) {
      struct timespec ts;

      ts = clock_timespec_of_ms (clock_now_ms () + GC_TICK_MS);
      pthread_cond_timedwait (&g->cond, &g->lock, &ts);
      if (g->stop)
        break;
    }
    need_gc = g->need_gc;
    g->kicked = g->need_gc = false;
    pthread_mutex_unlock (&g->lock);

    pthread_mutex_lock (&g->run_lock);
    round_locked (g, need_gc, false, false);
    pthread_mutex_unlock (&g->run_lock);

    pthread_mutex_lock (&g->lock);
  }
  pthread_mutex_unlock (&g->lock);
  return NULL;
}

/* ---- lifecycle ---- */

static void
gc_free (struct gc *g)
{
  pthread_cond_destroy (&g->cond);
  pthread_mutex_destroy (&g->lock);
  pthread_mutex_destroy (&g->run_lock);
  free (g->buf);
  free (g->words);
  free (g->batch);
  free (g);
}

int
gc_start (struct ncache_device *dev, struct gc **out)
{
  struct gc *g = calloc (1, sizeof *g);
  int r;

  if (g == NULL)
    return -ENOMEM;
  g->dev = dev;
  g->last_gc_ms = clock_now_ms ();
  g->buf = cdev_alloc_buffer (super_bucket_bytes (&dev->sb));
  g->words = calloc (dev->sb.bucket_blocks, sizeof *g->words);
  g->batch = calloc (GC_DISCARD_BATCH, sizeof *g->batch);
  if (g->buf == NULL || g->words == NULL || g->batch == NULL) {
    free (g->buf);
    free (g->words);
    free (g->batch);
    free (g);
    return -ENOMEM;
  }
  pthread_mutex_init (&g->lock, NULL);
  pthread_mutex_init (&g->run_lock, NULL);
  r = -clock_cond_init (&g->cond);
  if (r == 0)
    r = pthread_create (&g->thread, NULL, gc_thread, g);
  if (r != 0) {
    log_error ("cache '%s': cannot start the GC thread: %s", dev->name,
               strerror (r));
    gc_free (g);
    return -r;
  }
  g->thread_started = true;
  *out = g;
  return 0;
}

void
gc_stop (struct gc *g)
{
  if (g == NULL)
    return;
  pthread_mutex_lock (&g->lock);
  g->stop = true;
  pthread_cond_signal (&g->cond);
  pthread_mutex_unlock (&g->lock);
  if (g->thread_started)
    pthread_join (g->thread, NULL);
  gc_free (g);
}

void
gc_kick (struct gc *g, bool need_gc)
{
  if (g == NULL)
    return;
  pthread_mutex_lock (&g->lock);
  g->kicked = true;
  g->need_gc |= need_gc;
  pthread_cond_signal (&g->cond);
  pthread_mutex_unlock (&g->lock);
}

int
gc_run_once (struct gc *g, bool force_moving)
{
  int r;

  if (g == NULL)
    return -EINVAL;
  pthread_mutex_lock (&g->run_lock);
  r = round_locked (g, false, true, force_moving);
  pthread_mutex_unlock (&g->run_lock);
  return r;
}

void
gc_get_stats (struct gc *g, struct gc_stats *st)
{
  if (g == NULL) {
    memset (st, 0, sizeof *st);
    return;
  }
  pthread_mutex_lock (&g->lock);
  *st = g->st;
  pthread_mutex_unlock (&g->lock);
}
