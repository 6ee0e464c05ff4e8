/* SPDX-License-Identifier: BSD-3-Clause */
/* bucket.c — the bucket set: states, gens, priorities, live accounting and
 * the allocator.
 *
 * WHAT: the in-memory state of every bucket of a cache device (bucket.h
 * describes the life of a bucket) and the allocator over it: two write
 * points for data, whole buckets for btree nodes, a FIFO of FREE buckets
 * refilled in batches (gen bumps of EMPTY buckets, then eviction of cold
 * clean buckets), and the list of PENDING buckets that the journal frees.
 * Also the bookkeeping of the background work: busy (DISCARD) buckets
 * handed to the discard thread in batches, the GC recount that checks
 * the live counts against the index, the per-export dirty counters, and
 * the moving-GC selection.
 * WHY: a bucket is the unit of reuse; reusing one means bumping its gen
 * and making that durable before anything is written into it, so every
 * old pointer into it is stale after any crash.
 *
 * INVARIANTS:
 * - nr_state[s] is the number of buckets in state s.
 * - free_fifo holds exactly the FREE buckets, each once.  A FREE bucket's
 *   gen is durable (it was in a prio copy written and synced after its
 *   last bump) and nothing points into it with that gen.
 * - pending lists every PENDING bucket (on_pending_list); entries of
 *   buckets that left PENDING are dropped at the next commit.
 * - OPEN: the current bucket of a write point (in_wp) or one still
 *   holding open references; DATA has open == 0 and live_blocks > 0
 *   (after marks; run-time cuts turn it PENDING at 0).
 * - A bucket is bumped only while (gen + 1 - oldest_gen) mod 256 <=
 *   BUCKET_GEN_MAX_DISTANCE; oldest_gen only moves forward through marks
 *   and sweeps.
 * - Data allocations leave BUCKET_BTREE_RESERVE FREE buckets for nodes.
 * - A bucket with dirty_blocks > 0 is never evicted.
 * - Discard on: the allocator does not bump EMPTY buckets itself; the
 *   discard thread takes them (gens bumped and durable, state DISCARD)
 *   and gives them back FREE.  An allocation that needs a bucket waits
 *   for a finished batch.  If none finishes within DISCARD_WAIT_MS (no
 *   background thread, or a stuck one) the set is "stalled": allocations
 *   bump EMPTY buckets themselves, undiscarded, until the next finished
 *   batch — so a missing discard thread costs one wait, never a deadlock.
 *   With no kick hook (nothing can wake a discard thread) allocations
 *   never wait: they bump EMPTY buckets themselves as with discard off,
 *   and the discard thread gets what they leave.
 * - fresh (EMPTY only, nr_fresh of them): the gen is bumped and durable
 *   and nothing points at it, exactly as for a FREE bucket.  A discard
 *   take that finds none bumps every bumpable EMPTY bucket with one prio
 *   write and marks them fresh, so a pass over N empty buckets costs one
 *   prio write (O(N) bytes), not N / batch of them; later takes and the
 *   allocator's refill use fresh buckets with no write.  Leaving EMPTY,
 *   another bump, a failed write and bucket_reset_locked clear it.
 * - GC recount running: gc_live / gc_dirty hold, for the current gen,
 *   the blocks of the keys noted by the walk plus those accounted at or
 *   before the cursor; a gen bump zeroes them (the keys went stale).
 * - export_dirty[x] / export_zero[x]: blocks of current DIRTY data keys /
 *   DIRTY ZERO keys of export x, as accounted (clamped at 0).
 *
 * THREADS AND LOCKS: bs->lock guards everything except gen (release
 * stores under the lock, acquire loads anywhere), prio (relaxed atomics:
 * hits are lock-free) and the I/O counter.  Prio writes happen under the
 * lock (they serialise the allocators and freeze the gens they write);
 * hooks->journal_flush is always called with the lock dropped, and the
 * write point is re-examined afterwards.  Callers may hold the btree and
 * journal locks (lock order btree -> journal -> bucket).
 *
 * FAILURE: -ENOSPC (no FREE bucket can be made without dropping dirty
 * data), -EAGAIN (only stale keys block gen bumps: run btree_sweep), -EIO
 * from prio writes (logged there; the bumped buckets stay EMPTY and are
 * bumped again later).  Accounting that would underflow, a put of a bucket
 * that is not open, freeing a node bucket that holds no node: bugs
 * elsewhere, each kind logged once per set and ignored (counts clamped),
 * never fatal.
 *
 * NOT HERE: the prio copies on disk (prio.c); walking the index, moving
 * dirty data and issuing discards (btree.c, gc.c).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BUCKET_INTERNALS
#include "bkey.h"
#include "bucket.h"
#include "cdev.h"
#include "clock.h"
#include "compiler.h"
#include "log.h"

/* Gen bumps of EMPTY buckets per prio write: at least this many. */
#define REFILL_BATCH_MIN 64u
/* Clean buckets evicted per prio write: at least this many. */
#define EVICT_BATCH_MIN 4u
/* Journal flushes one data allocation may wait for before it evicts. */
#define MAX_FLUSHES 2
/* A hit above BUCKET_PRIO_HIT adds this. */
#define PRIO_HIT_STEP (BUCKET_PRIO_HIT / 8)
#define PRIO_MAX UINT16_MAX

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

static inline uint8_t
gen_load (const struct bucket *b)
{
  return __atomic_load_n (&b->gen, __ATOMIC_ACQUIRE);
}

static inline uint16_t
prio_load (const struct bucket *b)
{
  return __atomic_load_n (&b->prio, __ATOMIC_RELAXED);
}

static inline void
prio_store (struct bucket *b, uint16_t prio)
{
  __atomic_store_n (&b->prio, prio, __ATOMIC_RELAXED);
}

/* Is gen a further behind cur than gen b (modulo 256)? */
static inline bool
gen_older (uint8_t cur, uint8_t a, uint8_t b)
{
  return (uint8_t) (cur - a) > (uint8_t) (cur - b);
}

static inline bool
is_data_bucket (const struct bucket_set *bs, uint32_t bucket)
{
  return bucket >= bs->data_first && bucket < bs->nbuckets;
}

/* May the bucket take one more gen bump? */
static inline bool
can_bump (const struct bucket *b)
{
  return (uint8_t) (b->gen + 1 - b->oldest_gen) <= BUCKET_GEN_MAX_DISTANCE;
}

/* The new gen is made durable by the caller (a prio write) before the
 * bucket is handed out.  Pointers with the old gen are stale from now.
 */
/* Set b's live and dirty block counts, keeping the set's totals exact.
 * Every change of a bucket's counts goes through here.
 */
static void
set_counts_locked (struct bucket_set *bs, struct bucket *b, uint32_t live,
                   uint32_t dirty)
{
  bs->total_live_blocks = bs->total_live_blocks - b->live_blocks + live;
  bs->total_dirty_blocks = bs->total_dirty_blocks - b->dirty_blocks + dirty;
  if (b->dirty_blocks == 0 && dirty > 0)
    bs->nr_dirty_buckets++;
  else if (b->dirty_blocks > 0 && dirty == 0)
    bs->nr_dirty_buckets--;
  b->live_blocks = live;
  b->dirty_blocks = dirty;
}

static void
clear_moving_locked (struct bucket_set *bs, struct bucket *b)
{
  if (__atomic_load_n (&b->moving, __ATOMIC_RELAXED)) {
    __atomic_store_n (&b->moving, false, __ATOMIC_RELAXED);
    bs->nr_moving--;
  }
}

/* A fresh bucket stops being fresh when it leaves EMPTY or is bumped
 * again (that gen is not durable yet).
 */
static void
unfresh_locked (struct bucket_set *bs, struct bucket *b)
{
  if (b->fresh) {
    b->fresh = false;
    bs->nr_fresh--;
  }
}

static void
bump_gen_locked (struct bucket_set *bs, struct bucket *b)
{
  unfresh_locked (bs, b);
  __atomic_store_n (&b->gen, (uint8_t) (b->gen + 1), __ATOMIC_RELEASE);
  set_counts_locked (bs, b, 0, 0);
  b->gc_live = b->gc_dirty = 0;
  clear_moving_locked (bs, b);
}

static void
kick (struct bucket_set *bs, bool need_gc)
{
  if (bs->hooks.kick != NULL)
    bs->hooks.kick (bs->hooks.opaque, need_gc);
}

/* Add sign * blocks to a per-export counter, clamped at 0. */
static void
export_add_locked (uint64_t *counters, uint16_t export_id, uint32_t blocks,
                   int sign)
{
  uint64_t v;

  if (export_id == 0 || export_id > NC_MAX_EXPORTS)
    return;
  v = __atomic_load_n (&counters[export_id], __ATOMIC_RELAXED);
  if (sign > 0)
    v += blocks;
  else
    v = v >= blocks ? v - blocks : 0;
  __atomic_store_n (&counters[export_id], v, __ATOMIC_RELAXED);
}

static void
gc_export_add_locked (uint64_t *counters, uint16_t export_id,
                      uint32_t blocks, int sign)
{
  if (export_id == 0 || export_id > NC_MAX_EXPORTS)
    return;
  if (sign > 0)
    counters[export_id] += blocks;
  else
    counters[export_id] -= MIN (counters[export_id], (uint64_t) blocks);
}

/* Has the GC walk passed k's position (so it will not note k)? */
static bool
behind_gc_cursor_locked (const struct bucket_set *bs, const struct nc_key *k)
{
  return bs->gc_active && bs->gc_cursor_set &&
    bkey_cmp_pos (k, bs->gc_cursor_export, bs->gc_cursor_end) <= 0;
}

static uint64_t
open_seq (struct bucket_set *bs)
{
  if (bs->hooks.journal_open_seq == NULL)
    return 0;
  return bs->hooks.journal_open_seq (bs->hooks.opaque);
}

static void
set_state_locked (struct bucket_set *bs, uint32_t i, enum bucket_state st)
{
  struct bucket *b = &bs->b[i];

  unfresh_locked (bs, b);
  bs->nr_state[b->state]--;
  bs->nr_state[st]++;
  b->state = st;
}

static void
push_free_locked (struct bucket_set *bs, uint32_t i)
{
  set_state_locked (bs, i, BUCKET_FREE);
  bs->free_fifo[(bs->free_head + bs->free_len) % bs->nbuckets] = i;
  bs->free_len++;
}

static int
pop_free_locked (struct bucket_set *bs, uint32_t *out)
{
  while (bs->free_len > 0) {
    uint32_t i = bs->free_fifo[bs->free_head];

    bs->free_head = (bs->free_head + 1) % bs->nbuckets;
    bs->free_len--;
    if (bs->b[i].state == BUCKET_FREE) {
      *out = i;
      return 0;
    }
  }
  log_error ("cache device %s: bucket allocator: %" PRIu32 " FREE buckets "
             "counted but none listed (bug)", bs->cd->path,
             bs->nr_state[BUCKET_FREE]);
  return -ENOSPC;
}

static void
make_pending_locked (struct bucket_set *bs, uint32_t i, uint64_t seq)
{
  struct bucket *b = &bs->b[i];

  set_state_locked (bs, i, BUCKET_PENDING);
  b->free_seq = seq;
  if (!b->on_pending_list) {
    b->on_pending_list = true;
    bs->pending[bs->nr_pending++] = i;
  }
}

/* An OPEN bucket that no write point owns and no write holds. */
static void
settle_open_locked (struct bucket_set *bs, uint32_t i)
{
  if (bs->b[i].live_blocks > 0)
    set_state_locked (bs, i, BUCKET_DATA);
  else
    make_pending_locked (bs, i, open_seq (bs));
}

static void
close_wp_locked (struct bucket_set *bs, struct bucket_write_point *w)
{
  struct bucket *b = &bs->b[w->bucket];

  w->valid = false;
  b->in_wp = false;
  if (b->open == 0)
    settle_open_locked (bs, w->bucket);
}

static void
open_wp_locked (struct bucket_set *bs, struct bucket_write_point *w,
                uint32_t i)
{
  struct bucket *b = &bs->b[i];

  set_state_locked (bs, i, BUCKET_OPEN);
  b->in_wp = true;
  b->open = 0;
  set_counts_locked (bs, b, 0, 0);
  b->gc_live = b->gc_dirty = 0;
  prio_store (b, BUCKET_PRIO_HIT);
  w->valid = true;
  w->bucket = i;
  w->next = 0;
}

/* Caller bugs, each kind logged once per set. */
enum complaint {
  COMPLAIN_ACCOUNT = 1u << 0,
  COMPLAIN_PUT = 1u << 1,
  COMPLAIN_FREE_NODE = 1u << 2,
  COMPLAIN_DISCARD_STALL = 1u << 3,
  COMPLAIN_DISCARD_DONE = 1u << 4,
};

static void
complain_locked (struct bucket_set *bs, enum complaint kind, const char *what,
                 uint32_t bucket)
{
  if (bs->complained & kind)
    return;
  bs->complained |= kind;
  log_error ("cache device %s: bucket %" PRIu32 ": %s (a bug; not logged "
             "again)", bs->cd->path, bucket, what);
}

/* ---- making FREE buckets ---- */

/* Bump up to refill_batch EMPTY buckets and make them durable and FREE
 * (fresh ones need no bump, and no prio write if all are fresh).
 * Returns how many, or -errno.  *gen_limited is set when an EMPTY bucket
 * was passed over for its gen distance.
 */
static int
refill_from_empty_locked (struct bucket_set *bs, bool *gen_limited)
{
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
evict_locked (struct bucket_set *bs, uint32_t want, bool *gen_limited)
{
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
  bool gen_limited = false;
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
  if ((r = evict_locked (bs, reserve + 1 - nfree, &gen_limited)) < 0)
    return r;
  if (bs->nr_state[BUCKET_FREE] > reserve)
    return pop_free_locked (bs, out);

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
  bs->discard_stalled = true;
  bs->discard_fallbacks++;
  if (bs->complained & COMPLAIN_DISCARD_STALL)
    return;
  bs->complained |= COMPLAIN_DISCARD_STALL;
  log_warning ("cache device %s: no discard batch finished within %d ms; "
               "reusing freed buckets without discarding them until one "
               "does (not logged again)", bs->cd->path, DISCARD_WAIT_MS);
}

/* ---- create / destroy ---- */

int
bucket_set_create (struct cdev *cd, const struct nc_sb *sb,
                   const struct bucket_hooks *hooks,
                   struct bucket_set **out)
{
  struct bucket_set *bs;
  uint32_t i, ndata;
  uint64_t copy_end;
  int r;

  copy_end = (uint64_t) sb->prio_first + 2 * (uint64_t) sb->prio_buckets;
  if (sb->bucket_blocks == 0 || sb->nbuckets <= sb->data_first ||
      copy_end > sb->data_first || sb->prio_buckets == 0 ||
      prio_copy_bytes (sb) >
      (uint64_t) sb->prio_buckets * sb->bucket_blocks * NC_BLOCK_BYTES) {
    log_error ("cache device %s: bucket set: inconsistent superblock "
               "geometry", cd->path);
    return -EINVAL;
  }

  bs = calloc (1, sizeof *bs);
  if (bs == NULL)
    return -ENOMEM;
  bs->cd = cd;
  bs->sb = *sb;
  if (hooks != NULL)
    bs->hooks = *hooks;
  bs->nbuckets = sb->nbuckets;
  bs->data_first = sb->data_first;
  bs->bucket_blocks = sb->bucket_blocks;
  ndata = bs->nbuckets - bs->data_first;
  bs->refill_batch = MAX (REFILL_BATCH_MIN, ndata >> 9);
  bs->evict_batch = MAX (EVICT_BATCH_MIN, ndata >> 10);
  bs->prio_copy = 1;            /* so the first write goes to copy A */

  r = -ENOMEM;
  bs->b = calloc (bs->nbuckets, sizeof *bs->b);
  bs->free_fifo = calloc (bs->nbuckets, sizeof *bs->free_fifo);
  bs->pending = calloc (bs->nbuckets, sizeof *bs->pending);
  bs->scratch = calloc (MAX (bs->refill_batch, bs->evict_batch),
                        sizeof *bs->scratch);
  bs->prio_buf = cdev_alloc_buffer (prio_copy_bytes (sb));
  if (bs->b == NULL || bs->free_fifo == NULL || bs->pending == NULL ||
      bs->scratch == NULL || bs->prio_buf == NULL)
    goto err;
  if ((r = -pthread_mutex_init (&bs->lock, NULL)) < 0)
    goto err;
  if ((r = clock_cond_init (&bs->discard_cond)) < 0) {
    pthread_mutex_destroy (&bs->lock);
    goto err;
  }

  for (i = 0; i < bs->nbuckets; i++)
    bs->b[i].state = i < bs->data_first ? BUCKET_META : BUCKET_EMPTY;
  bs->nr_state[BUCKET_META] = bs->data_first;
  bs->nr_state[BUCKET_EMPTY] = ndata;
  bs->empty_cursor = bs->discard_cursor = bs->data_first;
  *out = bs;
  return 0;

 err:
  free (bs->b);
  free (bs->free_fifo);
  free (bs->pending);
  free (bs->scratch);
  free (bs->prio_buf);
  free (bs);
  return r;
}

void
bucket_set_destroy (struct bucket_set *bs)
{
  if (bs == NULL)
    return;
  pthread_cond_destroy (&bs->discard_cond);
  pthread_mutex_destroy (&bs->lock);
  free (bs->b);
  free (bs->free_fifo);
  free (bs->pending);
  free (bs->scratch);
  free (bs->prio_buf);
  free (bs);
}

void
bucket_reset_locked (struct bucket_set *bs)
{
  uint32_t i;

  memset (bs->nr_state, 0, sizeof bs->nr_state);
  for (i = 0; i < bs->nbuckets; i++) {
    struct bucket *b = &bs->b[i];

    set_counts_locked (bs, b, 0, 0);
    b->open = 0;
    b->marked = b->in_wp = b->on_pending_list = false;
    b->moving = b->fresh = false;
    b->gc_live = b->gc_dirty = 0;
    b->free_seq = 0;
    b->oldest_gen = b->gc_oldest = gen_load (b);
    b->state = i < bs->data_first ? BUCKET_META : BUCKET_EMPTY;
    bs->nr_state[b->state]++;
  }
  for (i = 0; i < NR_WRITE_POINTS; i++)
    bs->wp[i].valid = false;
  bs->free_head = bs->free_len = 0;
  bs->nr_pending = 0;
  bs->nr_moving = bs->nr_fresh = 0;
  bs->empty_cursor = bs->discard_cursor = bs->data_first;
  bs->gc_active = false;
}

/* ---- recovery marks ---- */

void
bucket_mark_begin (struct bucket_set *bs)
{
  uint32_t i;

  pthread_mutex_lock (&bs->lock);
  for (i = bs->data_first; i < bs->nbuckets; i++) {
    struct bucket *b = &bs->b[i];

    b->marked = false;
    set_counts_locked (bs, b, 0, 0);
    b->oldest_gen = gen_load (b);
  }
  for (i = 0; i <= NC_MAX_EXPORTS; i++) {
    __atomic_store_n (&bs->export_dirty[i], 0, __ATOMIC_RELAXED);
    __atomic_store_n (&bs->export_zero[i], 0, __ATOMIC_RELAXED);
  }
  pthread_mutex_unlock (&bs->lock);
}

void
bucket_mark_btree (struct bucket_set *bs, uint32_t bucket)
{
  if (!is_data_bucket (bs, bucket))
    return;
  pthread_mutex_lock (&bs->lock);
  bs->b[bucket].marked = true;
  pthread_mutex_unlock (&bs->lock);
}

bool
bucket_mark_key (struct bucket_set *bs, const struct nc_key *k)
{
  struct bucket *b;
  uint8_t gen;
  bool current;

  if (!bkey_has_data (k)) {
    if (bkey_is_zero (k) && bkey_is_dirty (k)) {
      pthread_mutex_lock (&bs->lock);
      export_add_locked (bs->export_zero, k->export_id, k->size, +1);
      pthread_mutex_unlock (&bs->lock);
    }
    return true;                /* points nowhere: never stale */
  }
  if (!is_data_bucket (bs, k->bucket))
    return false;
  b = &bs->b[k->bucket];
  pthread_mutex_lock (&bs->lock);
  gen = gen_load (b);
  current = k->gen == gen;
  if (current) {
    set_counts_locked (bs, b, b->live_blocks + k->size,
                       b->dirty_blocks + (bkey_is_dirty (k) ? k->size : 0));
    if (bkey_is_dirty (k))
      export_add_locked (bs->export_dirty, k->export_id, k->size, +1);
  }
  else if (gen_older (gen, k->gen, b->oldest_gen))
    b->oldest_gen = k->gen;
  pthread_mutex_unlock (&bs->lock);
  return current;
}

void
bucket_mark_done (struct bucket_set *bs)
{
  uint32_t i;

  pthread_mutex_lock (&bs->lock);
  memset (bs->nr_state, 0, sizeof bs->nr_state);
  bs->nr_state[BUCKET_META] = bs->data_first;
  bs->free_head = bs->free_len = 0;
  bs->nr_pending = 0;
  bs->nr_fresh = 0;
  for (i = bs->data_first; i < bs->nbuckets; i++) {
    struct bucket *b = &bs->b[i];
    enum bucket_state old = b->state, st;

    b->on_pending_list = false;
    if (b->in_wp || b->open > 0)
      st = BUCKET_OPEN;
    else if (b->marked) {
      if (b->live_blocks > 0)
        log_warning ("cache device %s: bucket %" PRIu32 " holds a btree "
                     "node and %" PRIu32 " blocks of data keys; keeping it "
                     "as a node", bs->cd->path, i, b->live_blocks);
      st = BUCKET_BTREE;
    }
    else if (b->live_blocks > 0)
      st = BUCKET_DATA;
    else if (old == BUCKET_FREE || old == BUCKET_PENDING)
      st = old;                 /* keep a durable bump / a pending free */
    else
      st = BUCKET_EMPTY;
    if (st == BUCKET_BTREE || st == BUCKET_EMPTY || st == BUCKET_FREE ||
        st == BUCKET_PENDING)
      set_counts_locked (bs, b, 0, 0);
    b->state = st;
    bs->nr_state[st]++;
    if (b->fresh && (old != BUCKET_EMPTY || st != BUCKET_EMPTY))
      b->fresh = false;
    if (b->fresh)
      bs->nr_fresh++;
    if (st == BUCKET_FREE)
      bs->free_fifo[bs->free_len++] = i;
    else if (st == BUCKET_PENDING) {
      b->on_pending_list = true;
      bs->pending[bs->nr_pending++] = i;
    }
  }
  pthread_mutex_unlock (&bs->lock);
}

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
        gc_export_add_locked (bs->gc_export_zero, k->export_id, k->size, +1);
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
        gc_export_add_locked (bs->gc_export_dirty, k->export_id, k->size,
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
fix_export_locked (uint64_t *counters, const uint64_t *gc, unsigned x)
{
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
    exports_fixed += fix_export_locked (bs->export_dirty,
                                        bs->gc_export_dirty, i);
    exports_fixed += fix_export_locked (bs->export_zero,
                                        bs->gc_export_zero, i);
  }
  bs->gc_runs++;
  bs->gc_fixed += fixed;
  bs->gc_freed += freed;
  if (fixed > 0)
    log_error ("cache device %s: GC recount: %" PRIu32 " buckets had wrong "
               "block counts (first: bucket %" PRIu32 ", live %" PRIu32
               " counted %" PRIu32 ", dirty %" PRIu32 " counted %" PRIu32
               "); corrected (an accounting bug)", bs->cd->path, fixed,
               first, was_live, gc_live, was_dirty, gc_dirty);
  if (exports_fixed > 0)
    log_error ("cache device %s: GC recount: %" PRIu32 " per-export dirty "
               "counters were wrong; corrected (an accounting bug)",
               bs->cd->path, exports_fixed);
  pthread_mutex_unlock (&bs->lock);
}

/* ---- run time ---- */

uint8_t
bucket_gen (struct bucket_set *bs, uint32_t bucket)
{
  if (bucket >= bs->nbuckets)
    return 0;
  return gen_load (&bs->b[bucket]);
}

bool
bucket_ptr_stale (struct bucket_set *bs, const struct nc_key *k)
{
  if (!bkey_has_data (k))
    return false;
  if (k->bucket >= bs->nbuckets)
    return true;
  return k->gen != gen_load (&bs->b[k->bucket]);
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
static void
account_zero (struct bucket_set *bs, const struct nc_key *k, int sign)
{
  if (!bkey_is_dirty (k) || (k->flags & NC_KEY_DELETE))
    return;
  pthread_mutex_lock (&bs->lock);
  export_add_locked (bs->export_zero, k->export_id, k->size, sign);
  if (behind_gc_cursor_locked (bs, k))
    gc_export_add_locked (bs->gc_export_zero, k->export_id, k->size, sign);
  pthread_mutex_unlock (&bs->lock);
}

void
bucket_account (struct bucket_set *bs, const struct nc_key *k, int sign)
{
  struct bucket *b;
  uint32_t live, dirty, n;
  bool is_dirty = bkey_is_dirty (k), in_gc;

  if (sign == 0)
    return;
  if (bkey_is_zero (k)) {
    account_zero (bs, k, sign);
    return;
  }
  if (!bkey_has_data (k))
    return;
  if (!is_data_bucket (bs, k->bucket))
    return;
  b = &bs->b[k->bucket];
  pthread_mutex_lock (&bs->lock);
  if (k->gen != gen_load (b))
    goto out;                   /* stale: counted nowhere */
  switch ((enum bucket_state) b->state) {
  case BUCKET_OPEN:
  case BUCKET_DATA:
  case BUCKET_PENDING:
  case BUCKET_EMPTY:
    break;
  default:
    complain_locked (bs, COMPLAIN_ACCOUNT, "a current data key points into a bucket holding "
                     "no data", k->bucket);
    goto out;
  }
  in_gc = behind_gc_cursor_locked (bs, k);
  if (is_dirty)
    export_add_locked (bs->export_dirty, k->export_id, k->size, sign);
  if (in_gc && is_dirty)
    gc_export_add_locked (bs->gc_export_dirty, k->export_id, k->size, sign);
  if (sign > 0) {
    set_counts_locked (bs, b, b->live_blocks + k->size,
                       b->dirty_blocks + (is_dirty ? k->size : 0));
    if (in_gc) {
      b->gc_live += k->size;
      b->gc_dirty += is_dirty ? k->size : 0;
    }
    if (b->state == BUCKET_EMPTY || b->state == BUCKET_PENDING)
      set_state_locked (bs, k->bucket, BUCKET_DATA);
    goto out;
  }
  if (in_gc) {
    b->gc_live -= MIN (b->gc_live, k->size);
    n = is_dirty ? k->size : 0;
    b->gc_dirty -= MIN (b->gc_dirty, n);
  }
  live = b->live_blocks;
  dirty = b->dirty_blocks;
  if (live < k->size) {
    complain_locked (bs, COMPLAIN_ACCOUNT, "live block count would go below zero", k->bucket);
    live = 0;
  }
  else
    live -= k->size;
  if (is_dirty) {
    if (dirty < k->size) {
      complain_locked (bs, COMPLAIN_ACCOUNT, "dirty block count would go below zero",
                       k->bucket);
      dirty = 0;
    }
    else
      dirty -= k->size;
  }
  if (dirty > live)
    dirty = live;
  set_counts_locked (bs, b, live, dirty);
  if (b->state == BUCKET_DATA && b->live_blocks == 0)
    make_pending_locked (bs, k->bucket, open_seq (bs));
 out:
  pthread_mutex_unlock (&bs->lock);
}

void
bucket_journal_committed (struct bucket_set *bs, uint64_t durable_seq)
{
  uint32_t i, kept = 0;
  bool emptied = false;

  pthread_mutex_lock (&bs->lock);
  for (i = 0; i < bs->nr_pending; i++) {
    uint32_t n = bs->pending[i];
    struct bucket *b = &bs->b[n];

    if (b->state == BUCKET_PENDING && b->free_seq > durable_seq) {
      bs->pending[kept++] = n;
      continue;
    }
    b->on_pending_list = false;
    if (b->state == BUCKET_PENDING) {
      set_state_locked (bs, n, BUCKET_EMPTY);
      emptied = true;
    }
  }
  bs->nr_pending = kept;
  if (emptied && bs->discard)
    kick (bs, false);           /* a discard batch is waiting */
  pthread_mutex_unlock (&bs->lock);
}

/* Every prio loses an eighth (at least 1 while above 0).  A hit racing
 * with the pass wins.
 */
static void
decay_prios (struct bucket_set *bs)
{
  uint32_t i;

  pthread_mutex_lock (&bs->lock);
  for (i = bs->data_first; i < bs->nbuckets; i++) {
    struct bucket *b = &bs->b[i];
    uint16_t old = prio_load (b);

    if (old == 0)
      continue;
    __atomic_compare_exchange_n (&b->prio, &old,
                                 (uint16_t) (old - (old + 7) / 8), false,
                                 __ATOMIC_RELAXED, __ATOMIC_RELAXED);
  }
  pthread_mutex_unlock (&bs->lock);
}

void
bucket_io (struct bucket_set *bs)
{
  uint64_t n = __atomic_add_fetch (&bs->ios, 1, __ATOMIC_RELAXED);

  if (n % BUCKET_DECAY_IOS == 0)
    decay_prios (bs);
}

void
bucket_hit (struct bucket_set *bs, uint32_t bucket)
{
  if (is_data_bucket (bs, bucket)) {
    struct bucket *b = &bs->b[bucket];
    uint16_t old = prio_load (b), new;

    do {
      if (old < BUCKET_PRIO_HIT)
        new = BUCKET_PRIO_HIT;
      else
        new = (uint16_t) MIN ((uint32_t) old + PRIO_HIT_STEP, PRIO_MAX);
    } while (!__atomic_compare_exchange_n (&b->prio, &old, new, true,
                                           __ATOMIC_RELAXED,
                                           __ATOMIC_RELAXED));
  }
  bucket_io (bs);
}

void
bucket_get_usage (struct bucket_set *bs, struct bucket_usage *u)
{
  memset (u, 0, sizeof *u);
  pthread_mutex_lock (&bs->lock);
  u->nbuckets = bs->nbuckets - bs->data_first;
  u->free = bs->nr_state[BUCKET_FREE];
  u->empty = bs->nr_state[BUCKET_EMPTY];
  u->pending = bs->nr_state[BUCKET_PENDING];
  u->open = bs->nr_state[BUCKET_OPEN];
  u->data = bs->nr_state[BUCKET_DATA];
  u->btree = bs->nr_state[BUCKET_BTREE];
  u->live_blocks = bs->total_live_blocks;
  u->dirty_blocks = bs->total_dirty_blocks;
  u->dirty_buckets = bs->nr_dirty_buckets;
  u->evictions = bs->evictions;
  u->prio_writes = bs->prio_writes;
  u->discard = bs->nr_state[BUCKET_DISCARD];
  u->discards = bs->discards;
  u->discard_batches = bs->discard_batches;
  u->discard_errors = bs->discard_errors;
  u->gc_runs = bs->gc_runs;
  u->gc_freed = bs->gc_freed;
  u->gc_fixed = bs->gc_fixed;
  u->moving = bs->nr_moving;
  pthread_mutex_unlock (&bs->lock);
}

enum bucket_state
bucket_state_of (struct bucket_set *bs, uint32_t bucket)
{
  enum bucket_state st;

  if (bucket >= bs->nbuckets)
    return BUCKET_META;
  pthread_mutex_lock (&bs->lock);
  st = bs->b[bucket].state;
  pthread_mutex_unlock (&bs->lock);
  return st;
}

uint64_t
bucket_export_dirty_blocks (struct bucket_set *bs, uint16_t export_id)
{
  if (export_id == 0 || export_id > NC_MAX_EXPORTS)
    return 0;
  return __atomic_load_n (&bs->export_dirty[export_id], __ATOMIC_RELAXED);
}

uint64_t
bucket_export_dirty_zero_blocks (struct bucket_set *bs, uint16_t export_id)
{
  if (export_id == 0 || export_id > NC_MAX_EXPORTS)
    return 0;
  return __atomic_load_n (&bs->export_zero[export_id], __ATOMIC_RELAXED);
}

uint64_t
bucket_data_capacity_blocks (struct bucket_set *bs)
{
  uint32_t n = bs->nbuckets - bs->data_first;

  n = n > BUCKET_BTREE_RESERVE ? n - BUCKET_BTREE_RESERVE : 0;
  return (uint64_t) n * bs->bucket_blocks;
}

/* ---- discards ---- */

void
bucket_set_discard (struct bucket_set *bs, bool on)
{
  pthread_mutex_lock (&bs->lock);
  bs->discard = on;
  bs->discard_stalled = false;
  bs->discard_done_gen++;       /* waiters re-examine */
  pthread_cond_broadcast (&bs->discard_cond);
  pthread_mutex_unlock (&bs->lock);
}

/* Bump every EMPTY bucket that is not fresh and may be bumped, with one
 * prio write; they become fresh.  How many, or -errno (then none is
 * fresh: nr_fresh was 0 on entry).  *gen_limited as refill.
 */
static int
bump_all_empty_locked (struct bucket_set *bs, bool *gen_limited)
{
  uint32_t n = 0, i;
  int r;

  for (i = bs->data_first; i < bs->nbuckets; i++) {
    struct bucket *b = &bs->b[i];

    if (b->state != BUCKET_EMPTY || b->fresh)
      continue;
    if (!can_bump (b)) {
      *gen_limited = true;
      continue;
    }
    bump_gen_locked (bs, b);
    b->fresh = true;            /* undone below if the write fails */
    bs->nr_fresh++;
    n++;
  }
  if (n == 0)
    return 0;
  /* Once this is durable no key into the old data can come back, so
   * discarding and reusing the buckets is safe.  On failure they stay
   * EMPTY, not fresh, their bumps undone (as in refill: retries must not
   * take the gens ever further past the durable copy); the fresh ones
   * are exactly those bumped here (nr_fresh was 0).
   */
  if ((r = prio_write_locked (bs)) < 0) {
    for (i = bs->data_first; i < bs->nbuckets; i++) {
      struct bucket *b = &bs->b[i];

      if (b->fresh)
        __atomic_store_n (&b->gen, (uint8_t) (b->gen - 1), __ATOMIC_RELEASE);
      unfresh_locked (bs, b);
    }
    return r;
  }
  return (int) n;
}

/* Up to max fresh buckets in ascending order from discard_cursor (from
 * data_first again if none lies after it), made BUCKET_DISCARD.
 */
static uint32_t
take_fresh_locked (struct bucket_set *bs, uint32_t *out, uint32_t max)
{
  uint32_t n = 0, i, pass;

  for (pass = 0; pass < 2 && n == 0 && bs->nr_fresh > 0; pass++) {
    if (pass == 1)
      bs->discard_cursor = bs->data_first;
    for (i = MAX (bs->discard_cursor, bs->data_first);
         i < bs->nbuckets && n < max && bs->nr_fresh > 0; i++)
      if (bs->b[i].fresh) {
        set_state_locked (bs, i, BUCKET_DISCARD);
        out[n++] = i;
      }
    bs->discard_cursor = i;
  }
  return n;
}

int
bucket_discard_take (struct bucket_set *bs, uint32_t *out, uint32_t max)
{
  bool gen_limited = false;
  int r;

  pthread_mutex_lock (&bs->lock);
  if (bs->nr_fresh == 0 && bs->nr_state[BUCKET_EMPTY] > 0 &&
      (r = bump_all_empty_locked (bs, &gen_limited)) < 0) {
    /* No batch is coming: waiting allocations refill by themselves (and
     * meet the device error there) until a batch succeeds.
     */
    bs->discard_stalled = true;
    bs->discard_done_gen++;
    pthread_cond_broadcast (&bs->discard_cond);
    pthread_mutex_unlock (&bs->lock);
    return r;
  }
  r = (int) take_fresh_locked (bs, out, max);
  pthread_mutex_unlock (&bs->lock);
  return r == 0 && gen_limited ? -EAGAIN : r;
}

void
bucket_discard_done (struct bucket_set *bs, const uint32_t *b, uint32_t n,
                     uint32_t failed)
{
  uint32_t i;

  pthread_mutex_lock (&bs->lock);
  for (i = 0; i < n; i++) {
    if (!is_data_bucket (bs, b[i]) || bs->b[b[i]].state != BUCKET_DISCARD) {
      complain_locked (bs, COMPLAIN_DISCARD_DONE,
                       "discard done for a bucket that is not busy", b[i]);
      continue;
    }
    push_free_locked (bs, b[i]);
    bs->discards++;
  }
  bs->discard_batches++;
  bs->discard_errors += failed;
  bs->discard_stalled = false;
  bs->discard_done_gen++;
  pthread_cond_broadcast (&bs->discard_cond);
  pthread_mutex_unlock (&bs->lock);
}

uint32_t
bucket_discard_waiting (struct bucket_set *bs)
{
  uint32_t n;

  pthread_mutex_lock (&bs->lock);
  n = bs->discard ? bs->nr_state[BUCKET_EMPTY] : 0;
  pthread_mutex_unlock (&bs->lock);
  return n;
}

/* ---- moving GC ---- */

static bool
movable_locked (const struct bucket *b, uint32_t max_live)
{
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
    if (movable_locked (&bs->b[i], max_live))
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

    if (!movable_locked (b, max_live) || b->live_blocks > cut)
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
