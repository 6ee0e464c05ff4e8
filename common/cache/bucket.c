/* SPDX-License-Identifier: BSD-3-Clause */
/* bucket.c — the bucket set: states, gens, priorities, live accounting.
 *
 * WHAT: the in-memory state of every bucket of a cache device (bucket.h
 * describes the life of a bucket): create / destroy, the recovery marks,
 * gens, hits and prio decay, live and dirty accounting, PENDING buckets
 * freed by journal commits, and the usage questions.  This head is the
 * design note of the whole set, which spans five files: the allocator
 * (bucket-alloc.c): two write
 * points for data, whole buckets for btree nodes, a FIFO of FREE buckets
 * refilled in batches (gen bumps of EMPTY buckets, then eviction of cold
 * clean buckets), and the list of PENDING buckets that the journal frees.
 * The bookkeeping of the background work: busy (DISCARD) buckets
 * handed to the discard thread in batches (bucket-discard.c), the GC
 * recount that checks the live counts against the index and the
 * moving-GC selection (bucket-gc.c); the per-export dirty counters
 * (here).  The helpers that change a bucket's state are shared by all of
 * them (bucket-internal.h).
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
 * NOT HERE: the prio copies on disk (prio.c); the allocator, discards and
 * the GC's bookkeeping (bucket-alloc.c, bucket-discard.c, bucket-gc.c);
 * walking the index, moving dirty data and issuing discards (btree.c,
 * gc.c).
 */
#include <config.h>
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "bucket-internal.h"
#include "clock.h"

/* Gen bumps of EMPTY buckets per prio write: at least this many. */
#define REFILL_BATCH_MIN 64u
/* Clean buckets evicted per prio write: at least this many. */
#define EVICT_BATCH_MIN 4u
/* A hit above BUCKET_PRIO_HIT adds this. */
#define PRIO_HIT_STEP (BUCKET_PRIO_HIT / 8)
#define PRIO_MAX UINT16_MAX

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
  ASSERT_HELD (&bs->lock);
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
      export_add_locked (bs, bs->export_zero, k->export_id, k->size, +1);
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
      export_add_locked (bs, bs->export_dirty, k->export_id, k->size, +1);
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

bool
bucket_ptr_stale_durably (struct bucket_set *bs, const struct nc_key *k)
{
  const struct bucket *b;

  if (!bkey_has_data (k))
    return false;
  if (k->bucket >= bs->nbuckets)
    return true;
  b = &bs->b[k->bucket];
  return k->gen != gen_load (b) &&
    k->gen != __atomic_load_n (&b->disk_gen, __ATOMIC_ACQUIRE);
}

static void
account_zero (struct bucket_set *bs, const struct nc_key *k, int sign)
{
  if (!bkey_is_dirty (k) || (k->flags & NC_KEY_DELETE))
    return;
  pthread_mutex_lock (&bs->lock);
  export_add_locked (bs, bs->export_zero, k->export_id, k->size, sign);
  if (behind_gc_cursor_locked (bs, k))
    gc_export_add_locked (bs, bs->gc_export_zero, k->export_id, k->size,
                          sign);
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
    export_add_locked (bs, bs->export_dirty, k->export_id, k->size, sign);
  if (in_gc && is_dirty)
    gc_export_add_locked (bs, bs->gc_export_dirty, k->export_id, k->size,
                          sign);
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
    /* The key is behind the cursor, so it was counted: a BUG if not. */
    n = is_dirty ? k->size : 0;
    if (BUG_ONCE (b->gc_live < k->size || b->gc_dirty < n, "GC recount of "
                  "bucket %" PRIu32 " would go below zero", k->bucket)) {
      b->gc_live -= MIN (b->gc_live, k->size);
      b->gc_dirty -= MIN (b->gc_dirty, n);
    }
    else {
      b->gc_live -= k->size;
      b->gc_dirty -= n;
    }
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
    /* Not evictable until the change is durable: a crash before it
     * would leave the DIRTY key, pointing at a bumped gen, in the index
     * (recovery refuses that as corruption: crosscheck.c).  bcache
     * flushes its journal before each prio write for the same reason.
     */
    b->clean_seq = open_seq (bs);
  }
  if (BUG_ONCE (dirty > live, "bucket %" PRIu32 ": more dirty than live "
                "blocks", k->bucket))
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
  if (durable_seq > bs->durable_seq)
    bs->durable_seq = durable_seq;
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
