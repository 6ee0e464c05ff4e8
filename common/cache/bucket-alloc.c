/* SPDX-License-Identifier: BSD-3-Clause */
/* bucket-alloc.c — the bucket allocator: FREE buckets and write points.
 *
 * WHAT: makes FREE buckets (gen bumps of EMPTY buckets in batches with one
 * prio write, then eviction of the coldest clean DATA buckets through a
 * heap, or waiting for a discard batch) and hands them out: blocks from
 * the two data write points, whole buckets for btree nodes, and the
 * releases (open references put, node buckets freed to PENDING).
 * WHY: reusing a bucket means bumping its gen and making that durable
 * before anything is written into it; doing it in batches makes a prio
 * write cost O(batch) allocations, not one each.  bcache's alloc.c.
 *
 * INVARIANTS: those of bucket.c's head, in particular: a FREE bucket's gen
 * is durable; data allocations leave BUCKET_BTREE_RESERVE FREE buckets for
 * nodes; a bucket with dirty blocks is never evicted; with discard on, an
 * allocation waits at most DISCARD_WAIT_MS for a batch, then the set is
 * "stalled" and bumps EMPTY buckets itself until the next batch.
 *
 * THREADS AND LOCKS: everything under bs->lock; prio writes happen under
 * it; hooks->journal_flush is called with it dropped and the write point
 * is re-examined afterwards; waiting for discards sleeps on discard_cond.
 *
 * FAILURE: -ENOSPC (no FREE bucket without dropping dirty data), -EAGAIN
 * (only stale keys block gen bumps: run btree_sweep), -EBUSY (the nowait
 * variant would have to wait), -EIO from prio writes (the bumped buckets
 * stay EMPTY).  A put of a bucket that is not open or freeing a bucket
 * that holds no node: logged once per set, ignored.
 *
 * NOT HERE: the bucket states and accounting (bucket.c), the discard
 * batches (bucket-discard.c), the prio copies (prio.c).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <time.h>

#include "bucket-internal.h"
#include "clock.h"

/* Journal flushes one data allocation may wait for before it evicts. */
#define MAX_FLUSHES 2

/* How long an allocation waits for discard batches before it reuses
 * EMPTY buckets undiscarded.
 */
#define DISCARD_WAIT_MS 2000

/* take_free_locked: "drop the lock, flush the journal, try again". */
#define NEED_FLUSH 1
/* take_free_locked: "wait for a discard batch, try again". */
#define NEED_DISCARD 2

/* take_free_locked flags. */
enum {
  TAKE_MAY_FLUSH = 1u << 0,     /* may ask for a journal flush */
  TAKE_MAY_WAIT = 1u << 1,      /* may ask to wait for a discard batch */
  TAKE_BUMP_EMPTY = 1u << 2,    /* bump EMPTY buckets even if discard on */
};

/* ---- making FREE buckets ---- */

/* Bump up to refill_batch EMPTY buckets and make them durable and FREE
 * (fresh ones need no bump, and no prio write if all are fresh).
 * Returns how many, or -errno.  *gen_limited is set when an EMPTY bucket
 * was passed over for its gen distance.
 */
static int
refill_from_empty_locked (struct bucket_set *bs, bool *gen_limited)
{
  ASSERT_HELD (&bs->lock);
  uint32_t ndata = bs->nbuckets - bs->data_first;
  uint32_t n = 0, bumped = 0, seen, i;
  int r;

  if (bs->nr_state[BUCKET_EMPTY] == 0)
    return 0;
  i = bs->empty_cursor;
  for (seen = 0; seen < ndata && n < bs->refill_batch; seen++) {
    struct bucket *b;

    if (i < bs->data_first || i >= bs->nbuckets)
      i = bs->data_first;
    b = &bs->b[i];
    if (b->state == BUCKET_EMPTY) {
      if (b->fresh)
        bs->scratch[n++] = i;
      else if (can_bump (b)) {
        bump_gen_locked (bs, b);
        bs->scratch[n++] = i;
        bumped++;
      }
      else
        *gen_limited = true;
    }
    i++;
  }
  bs->empty_cursor = i;
  if (n == 0)
    return 0;
  if (bumped > 0 && (r = prio_write_locked (bs)) < 0) {
    /* Undo the bumps: nothing holds the new gens (the buckets were not
     * handed out), and retries bumping again and again (GC raising
     * oldest_gen between them) would take the gens further past the
     * durable copy than prio_read accepts as moving forward.
     */
    for (i = 0; i < n; i++) {
      struct bucket *b = &bs->b[bs->scratch[i]];

      if (!b->fresh)
        __atomic_store_n (&b->gen, (uint8_t) (b->gen - 1), __ATOMIC_RELEASE);
    }
    return r;
  }
  for (i = 0; i < n; i++)
    push_free_locked (bs, bs->scratch[i]);
  return (int) n;
}

/* Eviction candidates: a max-heap on (prio, bucket) of the k lowest. */
static bool
cand_above (struct bucket_set *bs, uint32_t a, uint32_t b)
{
  uint16_t pa = prio_load (&bs->b[a]), pb = prio_load (&bs->b[b]);

  return pa != pb ? pa > pb : a > b;
}

static void
heap_sift_down (struct bucket_set *bs, uint32_t *h, uint32_t n, uint32_t i)
{
  for (;;) {
    uint32_t l = 2 * i + 1, r = l + 1, m = i, t;

    if (l < n && cand_above (bs, h[l], h[m]))
      m = l;
    if (r < n && cand_above (bs, h[r], h[m]))
      m = r;
    if (m == i)
      return;
    t = h[i];
    h[i] = h[m];
    h[m] = t;
    i = m;
  }
}

static void
heap_sift_up (struct bucket_set *bs, uint32_t *h, uint32_t i)
{
  while (i > 0) {
    uint32_t p = (i - 1) / 2, t;

    if (!cand_above (bs, h[i], h[p]))
      return;
    t = h[i];
    h[i] = h[p];
    h[p] = t;
    i = p;
  }
}

/* Invalidate up to `want` clean DATA buckets of the lowest prio (their
 * keys go stale), make the new gens durable and the buckets FREE, lowest
 * prio first.  Returns how many, or -errno.
 */
static int
evict_locked (struct bucket_set *bs, uint32_t want, bool *gen_limited,
              bool *flush_limited)
{
  ASSERT_HELD (&bs->lock);
  uint32_t *h = bs->scratch;
  uint32_t k = MIN (MAX (want, bs->evict_batch),
                    MAX (bs->refill_batch, bs->evict_batch));
  uint32_t n = 0, i;
  int r;

  if (bs->nr_state[BUCKET_DATA] == 0)
    return 0;
  for (i = bs->data_first; i < bs->nbuckets; i++) {
    struct bucket *b = &bs->b[i];

    if (b->state != BUCKET_DATA || b->dirty_blocks > 0 || b->open > 0)
      continue;
    if (!can_bump (b)) {
      *gen_limited = true;
      continue;
    }
    if (b->clean_seq > bs->durable_seq) {
      *flush_limited = true;    /* its DIRTY keys' end is not durable */
      continue;
    }
    if (n < k) {
      h[n] = i;
      heap_sift_up (bs, h, n);
      n++;
    }
    else if (cand_above (bs, h[0], i)) {
      h[0] = i;
      heap_sift_down (bs, h, n, 0);
    }
  }
  if (n == 0)
    return 0;
  /* Heap sort: ascending (prio, bucket). */
  for (i = n; i > 1; i--) {
    uint32_t t = h[0];

    h[0] = h[i - 1];
    h[i - 1] = t;
    heap_sift_down (bs, h, i - 1, 0);
  }
  for (i = 0; i < n; i++) {
    bump_gen_locked (bs, &bs->b[h[i]]);
    set_state_locked (bs, h[i], BUCKET_EMPTY);
  }
  if ((r = prio_write_locked (bs)) < 0)
    return r;
  for (i = 0; i < n; i++)
    push_free_locked (bs, h[i]);
  bs->evictions += n;
  log_debug ("cache device %s: evicted %" PRIu32 " clean buckets",
             bs->cd->path, n);
  return (int) n;
}

/* Is there an EMPTY bucket the discard thread could take now? */
static bool
empty_takeable_locked (struct bucket_set *bs)
{
  ASSERT_HELD (&bs->lock);
  uint32_t i;

  if (bs->nr_state[BUCKET_EMPTY] == 0)
    return false;
  if (bs->nr_fresh > 0)
    return true;
  for (i = bs->data_first; i < bs->nbuckets; i++)
    if (bs->b[i].state == BUCKET_EMPTY && can_bump (&bs->b[i]))
      return true;
  return false;
}

/* A FREE bucket, leaving `reserve` FREE ones behind.  NEED_FLUSH when
 * TAKE_MAY_FLUSH and a journal commit would free PENDING buckets;
 * NEED_DISCARD when TAKE_MAY_WAIT and a discard batch would (discard on:
 * EMPTY buckets are the discard thread's unless TAKE_BUMP_EMPTY or the
 * set is stalled).
 */
static int
take_free_locked (struct bucket_set *bs, uint32_t reserve, unsigned flags,
                  uint32_t *out)
{
  ASSERT_HELD (&bs->lock);
  bool gen_limited = false, flush_limited = false;
  /* Without a kick hook no discard thread can be woken: waiting for one
   * would only wait out its timer, so bump EMPTY buckets here.
   */
  bool defer_empty = bs->discard && !bs->discard_stalled &&
    bs->hooks.kick != NULL && !(flags & TAKE_BUMP_EMPTY);
  uint32_t nfree;
  int r;

  if (bs->nr_state[BUCKET_FREE] > reserve)
    return pop_free_locked (bs, out);

  kick (bs, false);             /* running low: discards, GC, moving GC */
  if (!defer_empty) {
    if ((r = refill_from_empty_locked (bs, &gen_limited)) < 0)
      return r;
    if (bs->nr_state[BUCKET_FREE] > reserve)
      return pop_free_locked (bs, out);
  }
  else if ((flags & TAKE_MAY_WAIT) &&
           (bs->nr_state[BUCKET_DISCARD] > 0 || empty_takeable_locked (bs)))
    return NEED_DISCARD;

  if ((flags & TAKE_MAY_FLUSH) && bs->nr_state[BUCKET_PENDING] > 0 &&
      bs->hooks.journal_flush != NULL)
    return NEED_FLUSH;

  nfree = bs->nr_state[BUCKET_FREE];
  if ((r = evict_locked (bs, reserve + 1 - nfree, &gen_limited,
                         &flush_limited)) < 0)
    return r;
  if (bs->nr_state[BUCKET_FREE] > reserve)
    return pop_free_locked (bs, out);
  if (flush_limited && (flags & TAKE_MAY_FLUSH) &&
      bs->hooks.journal_flush != NULL)
    return NEED_FLUSH;

  /* Busy buckets come back when their batch is done. */
  if ((flags & TAKE_MAY_WAIT) && bs->nr_state[BUCKET_DISCARD] > 0)
    return NEED_DISCARD;
  if (gen_limited || (defer_empty && bs->nr_state[BUCKET_EMPTY] > 0)) {
    kick (bs, true);
    return -EAGAIN;
  }
  return -ENOSPC;
}

/* Sleep until a discard batch finishes (or the mode changes).  0, or
 * -ETIMEDOUT at the deadline (CLOCK_MONOTONIC).
 */
static int
wait_discard_locked (struct bucket_set *bs, const struct timespec *deadline)
{
  ASSERT_HELD (&bs->lock);
  uint64_t gen = bs->discard_done_gen;
  int r = 0;

  bs->discard_waiters++;
  kick (bs, false);
  while (bs->discard_done_gen == gen && r == 0)
    r = pthread_cond_timedwait (&bs->discard_cond, &bs->lock, deadline);
  bs->discard_waiters--;
  return bs->discard_done_gen != gen ? 0 : -ETIMEDOUT;
}

static void
deadline_after_ms (struct timespec *ts, unsigned ms)
{
  *ts = clock_timespec_of_ms (clock_now_ms () + ms);
}

/* No discard batch came in time: reuse EMPTY buckets undiscarded until
 * the next batch finishes.
 */
static void
stall_locked (struct bucket_set *bs)
{
  ASSERT_HELD (&bs->lock);
  bs->discard_stalled = true;
  bs->discard_fallbacks++;
  if (bs->complained & COMPLAIN_DISCARD_STALL)
    return;
  bs->complained |= COMPLAIN_DISCARD_STALL;
  log_warning ("cache device %s: no discard batch finished within %d ms; "
               "reusing freed buckets without discarding them until one "
               "does (not logged again)", bs->cd->path, DISCARD_WAIT_MS);
}

/* may_wait false: -EBUSY instead of waiting for a discard batch. */
static int
alloc_data (struct bucket_set *bs, enum bucket_wp wp, uint32_t nblocks,
            bool may_wait, struct bucket_extent *out)
{
  struct bucket_write_point *w;
  unsigned flags = TAKE_MAY_WAIT;
  struct timespec deadline;
  bool waited = false;
  int flushes = 0, r;
  uint32_t i;

  if ((unsigned) wp >= NR_WRITE_POINTS || nblocks == 0)
    return -EINVAL;
  w = &bs->wp[wp];
  pthread_mutex_lock (&bs->lock);
  for (;;) {
    if (w->valid) {
      struct bucket *b = &bs->b[w->bucket];
      uint32_t n = MIN (nblocks, bs->bucket_blocks - w->next);

      out->bucket = w->bucket;
      out->offset = w->next;
      out->nblocks = n;
      out->gen = gen_load (b);
      b->open++;
      w->next += n;
      if (w->next == bs->bucket_blocks)
        close_wp_locked (bs, w);
      pthread_mutex_unlock (&bs->lock);
      return 0;
    }
    r = take_free_locked (bs, BUCKET_BTREE_RESERVE,
                          flags | (flushes < MAX_FLUSHES ? TAKE_MAY_FLUSH : 0),
                          &i);
    if (r == 0) {
      open_wp_locked (bs, w, i);
      continue;
    }
    if (r == NEED_DISCARD && !may_wait) {
      r = -EBUSY;
      break;
    }
    if (r == NEED_DISCARD) {
      if (!waited)
        deadline_after_ms (&deadline, DISCARD_WAIT_MS);
      waited = true;
      if (wait_discard_locked (bs, &deadline) < 0) {
        stall_locked (bs);
        flags = TAKE_BUMP_EMPTY;
      }
      continue;
    }
    if (r != NEED_FLUSH)
      break;
    flushes++;
    pthread_mutex_unlock (&bs->lock);
    r = bs->hooks.journal_flush (bs->hooks.opaque);
    pthread_mutex_lock (&bs->lock);
    if (r < 0)
      break;
  }
  pthread_mutex_unlock (&bs->lock);
  return r;
}

int
bucket_alloc_data (struct bucket_set *bs, enum bucket_wp wp,
                   uint32_t nblocks, struct bucket_extent *out)
{
  return alloc_data (bs, wp, nblocks, true, out);
}

int
bucket_alloc_data_nowait (struct bucket_set *bs, enum bucket_wp wp,
                          uint32_t nblocks, struct bucket_extent *out)
{
  return alloc_data (bs, wp, nblocks, false, out);
}

int
bucket_alloc_data_quick (struct bucket_set *bs, enum bucket_wp wp,
                         uint32_t nblocks, struct bucket_extent *out)
{
  struct bucket_write_point *w;
  struct bucket *b;
  uint32_t i;

  if ((unsigned) wp >= NR_WRITE_POINTS || nblocks == 0)
    return -EINVAL;
  w = &bs->wp[wp];
  pthread_mutex_lock (&bs->lock);
  if (!w->valid) {
    if (bs->nr_state[BUCKET_FREE] <= BUCKET_BTREE_RESERVE ||
        pop_free_locked (bs, &i) < 0) {
      pthread_mutex_unlock (&bs->lock);
      return -EAGAIN;
    }
    open_wp_locked (bs, w, i);
  }
  b = &bs->b[w->bucket];
  out->bucket = w->bucket;
  out->offset = w->next;
  out->nblocks = MIN (nblocks, bs->bucket_blocks - w->next);
  out->gen = gen_load (b);
  b->open++;
  w->next += out->nblocks;
  if (w->next == bs->bucket_blocks)
    close_wp_locked (bs, w);
  pthread_mutex_unlock (&bs->lock);
  return 0;
}

void
bucket_put_open (struct bucket_set *bs, uint32_t bucket)
{
  struct bucket *b;

  if (!is_data_bucket (bs, bucket))
    return;
  b = &bs->b[bucket];
  pthread_mutex_lock (&bs->lock);
  if (b->state != BUCKET_OPEN || b->open == 0)
    complain_locked (bs, COMPLAIN_PUT, "put of a bucket that is not open", bucket);
  else if (--b->open == 0 && !b->in_wp)
    settle_open_locked (bs, bucket);
  pthread_mutex_unlock (&bs->lock);
}

int
bucket_alloc_node (struct bucket_set *bs, uint32_t *bucket, uint8_t *gen)
{
  unsigned flags = TAKE_BUMP_EMPTY | TAKE_MAY_WAIT;
  struct timespec deadline;
  uint32_t i;
  int r;

  pthread_mutex_lock (&bs->lock);
  /* Under the btree lock: EMPTY buckets are bumped at once (undiscarded);
   * only buckets already in a discard batch are waited for, bounded.
   */
  deadline_after_ms (&deadline, DISCARD_WAIT_MS);
  while ((r = take_free_locked (bs, 0, flags, &i)) == NEED_DISCARD)
    if (wait_discard_locked (bs, &deadline) < 0)
      flags = TAKE_BUMP_EMPTY;
  if (r == 0) {
    struct bucket *b = &bs->b[i];

    set_state_locked (bs, i, BUCKET_BTREE);
    set_counts_locked (bs, b, 0, 0);
    prio_store (b, 0);
    *bucket = i;
    *gen = gen_load (b);
  }
  pthread_mutex_unlock (&bs->lock);
  /* bucket.h promises -ENOSPC only; a gen-limited set is just as full
   * for a caller that cannot sweep.
   */
  return r == -EAGAIN ? -ENOSPC : r;
}

void
bucket_free_node (struct bucket_set *bs, uint32_t bucket, uint64_t seq)
{
  if (!is_data_bucket (bs, bucket))
    return;
  pthread_mutex_lock (&bs->lock);
  if (bs->b[bucket].state != BUCKET_BTREE)
    complain_locked (bs, COMPLAIN_FREE_NODE, "freeing a node bucket that holds no node", bucket);
  else
    make_pending_locked (bs, bucket, seq);
  pthread_mutex_unlock (&bs->lock);
}

/* A DIRTY ZERO key: only the per-export counter. */
