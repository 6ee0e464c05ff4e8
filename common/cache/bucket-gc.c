/* SPDX-License-Identifier: BSD-3-Clause */
/* bucket-gc.c — the bucket set's bookkeeping for GC: the recount and
 * the moving-GC selection.
 *
 * WHAT: the GC recount (begin, note every current key the index walk
 * finds, move the cursor, end: fix live / dirty counts and per-export
 * counters that were wrong, free buckets nothing points into) and the
 * moving-GC selection (flag the sparsest dirty DATA buckets so their live
 * data is rewritten elsewhere, clear the flags when done).
 * WHY: the run-time accounting is exact only if every caller is; the
 * recount makes it self-healing.  Moving GC turns fragmented dirty
 * buckets back into whole free ones.
 *
 * INVARIANTS: while the recount runs, gc_live / gc_dirty hold, for the
 * current gen, the blocks of the keys noted by the walk plus those
 * accounted at or before the cursor; a gen bump zeroes them.  A bucket
 * flagged moving counts once in nr_moving; a gen bump clears the flag.
 *
 * THREADS AND LOCKS: everything under bs->lock; the walk itself runs in
 * btree.c / gc.c, which call in per key (lock order btree -> bucket).
 *
 * FAILURE: nothing fails; an incomplete walk (complete = false) changes
 * no counts.  A recount that finds wrong counts is a BUG: corrected in a
 * release build, an abort in debug and test builds (invariant.h).
 *
 * NOT HERE: walking the index and moving the data (btree-walk.c, gc.c).
 */
#include <config.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "bucket-internal.h"

/* ---- GC recount ---- */

void
bucket_gc_begin (struct bucket_set *bs)
{
  uint32_t i;

  pthread_mutex_lock (&bs->lock);
  for (i = bs->data_first; i < bs->nbuckets; i++) {
    struct bucket *b = &bs->b[i];

    b->gc_oldest = gen_load (b);
    b->gc_live = b->gc_dirty = 0;
  }
  memset (bs->gc_export_dirty, 0, sizeof bs->gc_export_dirty);
  memset (bs->gc_export_zero, 0, sizeof bs->gc_export_zero);
  bs->gc_active = true;
  bs->gc_cursor_set = false;
  pthread_mutex_unlock (&bs->lock);
}

void
bucket_gc_note (struct bucket_set *bs, const struct nc_key *k)
{
  struct bucket *b;
  uint8_t gen;

  if (!bkey_has_data (k)) {
    if (bkey_is_zero (k) && bkey_is_dirty (k)) {
      pthread_mutex_lock (&bs->lock);
      if (bs->gc_active)
        gc_export_add_locked (bs, bs->gc_export_zero, k->export_id,
                              k->size, +1);
      pthread_mutex_unlock (&bs->lock);
    }
    return;
  }
  if (!is_data_bucket (bs, k->bucket))
    return;
  b = &bs->b[k->bucket];
  pthread_mutex_lock (&bs->lock);
  gen = gen_load (b);
  if (k->gen == gen) {
    if (bs->gc_active) {
      b->gc_live += k->size;
      if (bkey_is_dirty (k)) {
        b->gc_dirty += k->size;
        gc_export_add_locked (bs, bs->gc_export_dirty, k->export_id, k->size,
                              +1);
      }
    }
  }
  else if (gen_older (gen, k->gen, b->gc_oldest))
    b->gc_oldest = k->gen;
  pthread_mutex_unlock (&bs->lock);
}

void
bucket_gc_cursor (struct bucket_set *bs, uint16_t export_id, uint64_t end)
{
  pthread_mutex_lock (&bs->lock);
  if (bs->gc_active) {
    bs->gc_cursor_set = true;
    bs->gc_cursor_export = export_id;
    bs->gc_cursor_end = end;
  }
  pthread_mutex_unlock (&bs->lock);
}

/* Correct one per-export counter from its recount; true if it was off. */
static bool
fix_export_locked (struct bucket_set *bs, uint64_t *counters,
                   const uint64_t *gc, unsigned x)
{
  ASSERT_HELD (&bs->lock);
  if (__atomic_load_n (&counters[x], __ATOMIC_RELAXED) == gc[x])
    return false;
  __atomic_store_n (&counters[x], gc[x], __ATOMIC_RELAXED);
  return true;
}

void
bucket_gc_end (struct bucket_set *bs, bool complete)
{
  uint32_t i, fixed = 0, freed = 0, first = 0, exports_fixed = 0;
  uint32_t was_live = 0, was_dirty = 0, gc_live = 0, gc_dirty = 0;
  uint64_t seq;

  pthread_mutex_lock (&bs->lock);
  if (!bs->gc_active || !complete) {
    bs->gc_active = false;
    pthread_mutex_unlock (&bs->lock);
    return;
  }
  bs->gc_active = false;
  seq = open_seq (bs);
  for (i = bs->data_first; i < bs->nbuckets; i++) {
    struct bucket *b = &bs->b[i];

    b->oldest_gen = b->gc_oldest;
    if (b->state != BUCKET_DATA || b->open > 0 || b->in_wp)
      continue;
    if (b->live_blocks != b->gc_live || b->dirty_blocks != b->gc_dirty) {
      if (fixed++ == 0) {
        first = i;
        was_live = b->live_blocks;
        was_dirty = b->dirty_blocks;
        gc_live = b->gc_live;
        gc_dirty = b->gc_dirty;
      }
      set_counts_locked (bs, b, b->gc_live, MIN (b->gc_dirty, b->gc_live));
    }
    if (b->live_blocks == 0) {
      make_pending_locked (bs, i, seq);
      freed++;
    }
  }
  for (i = 1; i <= NC_MAX_EXPORTS; i++) {
    exports_fixed += fix_export_locked (bs, bs->export_dirty,
                                        bs->gc_export_dirty, i);
    exports_fixed += fix_export_locked (bs, bs->export_zero,
                                        bs->gc_export_zero, i);
  }
  bs->gc_runs++;
  bs->gc_fixed += fixed;
  bs->gc_freed += freed;
  if (fixed > 0)
    log_error ("BUG: cache device %s: GC recount: %" PRIu32 " buckets had "
               "wrong block counts (first: bucket %" PRIu32 ", live %" PRIu32
               " counted %" PRIu32 ", dirty %" PRIu32 " counted %" PRIu32
               "); corrected (an accounting bug)", bs->cd->path, fixed,
               first, was_live, gc_live, was_dirty, gc_dirty);
  if (exports_fixed > 0)
    log_error ("BUG: cache device %s: GC recount: %" PRIu32 " per-export dirty "
               "counters were wrong; corrected (an accounting bug)",
               bs->cd->path, exports_fixed);
  /* Corrected in a release build; a debug or test build stops here. */
  if (fixed > 0 || exports_fixed > 0)
    INVARIANT_ABORT ();
  pthread_mutex_unlock (&bs->lock);
}

/* ---- moving GC ---- */

static bool
movable_locked (struct bucket_set *bs, const struct bucket *b,
                uint32_t max_live)
{
  ASSERT_HELD (&bs->lock);
  return b->state == BUCKET_DATA && b->dirty_blocks > 0 && b->open == 0 &&
    !b->in_wp && !__atomic_load_n (&b->moving, __ATOMIC_RELAXED) &&
    b->live_blocks <= max_live;
}

/* Emptiest first: every candidate with live < cut, and up to at_cut of
 * those with live == cut, found from a histogram of live counts so the
 * selection costs two passes over the buckets.
 */
uint32_t
bucket_moving_select (struct bucket_set *bs, unsigned fill_percent,
                      uint32_t *out, uint32_t max)
{
  uint32_t max_live, *hist, v, n = 0, i, j, cut = 0, at_cut = 0, taken = 0;
  uint64_t budget, used = 0;

  if (max == 0 || fill_percent == 0)
    return 0;
  max_live = (uint32_t) MIN ((uint64_t) bs->bucket_blocks * fill_percent / 100,
                             bs->bucket_blocks);
  hist = calloc ((size_t) max_live + 1, sizeof *hist);
  if (hist == NULL)
    return 0;
  pthread_mutex_lock (&bs->lock);
  if (bs->nr_state[BUCKET_FREE] <= BUCKET_BTREE_RESERVE)
    goto out;
  budget = (uint64_t) (bs->nr_state[BUCKET_FREE] - BUCKET_BTREE_RESERVE) *
    bs->bucket_blocks;
  for (i = bs->data_first; i < bs->nbuckets; i++)
    if (movable_locked (bs, &bs->b[i], max_live))
      hist[bs->b[i].live_blocks]++;
  /* live_blocks > 0 for DATA, so hist[0] stays 0. */
  for (v = 1; v <= max_live && taken < max; v++) {
    uint64_t fit = (budget - used) / v;
    uint32_t c = (uint32_t) MIN ((uint64_t) hist[v],
                                 MIN ((uint64_t) (max - taken), fit));

    cut = v;
    at_cut = c;
    taken += c;
    used += (uint64_t) c * v;
    if (c < hist[v])
      break;
  }
  if (taken == 0)
    goto out;
  for (i = bs->data_first; i < bs->nbuckets && n < taken; i++) {
    struct bucket *b = &bs->b[i];

    if (!movable_locked (bs, b, max_live) || b->live_blocks > cut)
      continue;
    if (b->live_blocks == cut) {
      if (at_cut == 0)
        continue;
      at_cut--;
    }
    /* Insertion sort by live blocks: emptiest first. */
    for (j = n; j > 0 && bs->b[out[j - 1]].live_blocks > b->live_blocks; j--)
      out[j] = out[j - 1];
    out[j] = i;
    n++;
  }
  for (i = 0; i < n; i++)
    __atomic_store_n (&bs->b[out[i]].moving, true, __ATOMIC_RELAXED);
  bs->nr_moving += n;
 out:
  pthread_mutex_unlock (&bs->lock);
  free (hist);
  return n;
}

bool
bucket_is_moving (struct bucket_set *bs, uint32_t bucket)
{
  if (!is_data_bucket (bs, bucket))
    return false;
  return __atomic_load_n (&bs->b[bucket].moving, __ATOMIC_RELAXED);
}

void
bucket_moving_done (struct bucket_set *bs, const uint32_t *b, uint32_t n)
{
  uint32_t i;

  pthread_mutex_lock (&bs->lock);
  for (i = 0; i < n; i++)
    if (is_data_bucket (bs, b[i]))
      clear_moving_locked (bs, &bs->b[b[i]]);
  pthread_mutex_unlock (&bs->lock);
}
