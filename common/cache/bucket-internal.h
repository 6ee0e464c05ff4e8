/* SPDX-License-Identifier: BSD-3-Clause */
/* bucket-internal.h — the small helpers shared by the bucket set's files.
 *
 * WHAT: the state changes every part of the bucket set makes (counts,
 * states, the FREE FIFO, PENDING, write points, gen bumps, the per-export
 * counters, the once-per-set complaints), as static inline functions so
 * bucket.c, bucket-alloc.c, bucket-discard.c and bucket-gc.c change a
 * bucket in exactly one way.
 * WHY: the bucket set is one module in several files (one noun each); the
 * invariants of bucket.c's head hold only if every file goes through these.
 *
 * INVARIANTS: those of bucket.c; each helper keeps nr_state, the totals,
 * nr_fresh and nr_moving exact.
 *
 * THREADS AND LOCKS: the *_locked helpers need bs->lock held; gen_load,
 * prio_load, prio_store are atomic and need no lock.
 *
 * FAILURE: pop_free_locked returns -ENOSPC (and logs a BUG) when the
 * counts and the FIFO disagree; nothing else fails.  complain_locked and
 * that BUG abort in debug and test builds (invariant.h).
 *
 * NOT HERE: struct bucket_set itself (bucket.h, BUCKET_INTERNALS); any
 * decision (which bucket, when to write prios): the .c files.
 * Only the bucket set's own files include this header.
 */
#ifndef NBDCACHE_BUCKET_INTERNAL_H
#define NBDCACHE_BUCKET_INTERNAL_H

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>

#define BUCKET_INTERNALS
#include "bkey.h"
#include "bucket.h"
#include "cdev.h"
#include "compiler.h"
#include "invariant.h"
#include "log.h"

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
static inline void
set_counts_locked (struct bucket_set *bs, struct bucket *b, uint32_t live,
                   uint32_t dirty)
{
  ASSERT_HELD (&bs->lock);
  bs->total_live_blocks = bs->total_live_blocks - b->live_blocks + live;
  bs->total_dirty_blocks = bs->total_dirty_blocks - b->dirty_blocks + dirty;
  if (b->dirty_blocks == 0 && dirty > 0)
    bs->nr_dirty_buckets++;
  else if (b->dirty_blocks > 0 && dirty == 0)
    bs->nr_dirty_buckets--;
  b->live_blocks = live;
  b->dirty_blocks = dirty;
}

static inline void
clear_moving_locked (struct bucket_set *bs, struct bucket *b)
{
  ASSERT_HELD (&bs->lock);
  if (__atomic_load_n (&b->moving, __ATOMIC_RELAXED)) {
    __atomic_store_n (&b->moving, false, __ATOMIC_RELAXED);
    bs->nr_moving--;
  }
}

/* A fresh bucket stops being fresh when it leaves EMPTY or is bumped
 * again (that gen is not durable yet).
 */
static inline void
unfresh_locked (struct bucket_set *bs, struct bucket *b)
{
  ASSERT_HELD (&bs->lock);
  if (b->fresh) {
    b->fresh = false;
    bs->nr_fresh--;
  }
}

static inline void
bump_gen_locked (struct bucket_set *bs, struct bucket *b)
{
  ASSERT_HELD (&bs->lock);
  unfresh_locked (bs, b);
  __atomic_store_n (&b->gen, (uint8_t) (b->gen + 1), __ATOMIC_RELEASE);
  set_counts_locked (bs, b, 0, 0);
  b->gc_live = b->gc_dirty = 0;
  clear_moving_locked (bs, b);
}

static inline void
kick (struct bucket_set *bs, bool need_gc)
{
  if (bs->hooks.kick != NULL)
    bs->hooks.kick (bs->hooks.opaque, need_gc);
}

/* Add sign * blocks to a per-export counter.  Going below 0 is a BUG
 * (a key removed that was never added): clamped at 0 after it.
 */
static inline void
export_add_locked (struct bucket_set *bs, uint64_t *counters,
                   uint16_t export_id, uint32_t blocks, int sign)
{
  ASSERT_HELD (&bs->lock);
  uint64_t v;

  if (export_id == 0 || export_id > NC_MAX_EXPORTS)
    return;
  v = __atomic_load_n (&counters[export_id], __ATOMIC_RELAXED);
  if (sign > 0)
    v += blocks;
  else if (BUG_ONCE (v < blocks, "per-export block counter of export %u "
                     "would go below zero (%" PRIu64 " - %" PRIu32 ")",
                     (unsigned) export_id, v, blocks))
    v = 0;
  else
    v -= blocks;
  __atomic_store_n (&counters[export_id], v, __ATOMIC_RELAXED);
}

static inline void
gc_export_add_locked (struct bucket_set *bs, uint64_t *counters,
                      uint16_t export_id, uint32_t blocks, int sign)
{
  ASSERT_HELD (&bs->lock);
  if (export_id == 0 || export_id > NC_MAX_EXPORTS)
    return;
  if (sign > 0)
    counters[export_id] += blocks;
  else if (BUG_ONCE (counters[export_id] < blocks, "GC recount counter of "
                     "export %u would go below zero", (unsigned) export_id))
    counters[export_id] = 0;
  else
    counters[export_id] -= blocks;
}

/* Has the GC walk passed k's position (so it will not note k)? */
static inline bool
behind_gc_cursor_locked (struct bucket_set *bs, const struct nc_key *k)
{
  ASSERT_HELD (&bs->lock);
  return bs->gc_active && bs->gc_cursor_set &&
    bkey_cmp_pos (k, bs->gc_cursor_export, bs->gc_cursor_end) <= 0;
}

static inline uint64_t
open_seq (struct bucket_set *bs)
{
  if (bs->hooks.journal_open_seq == NULL)
    return 0;
  return bs->hooks.journal_open_seq (bs->hooks.opaque);
}

static inline void
set_state_locked (struct bucket_set *bs, uint32_t i, enum bucket_state st)
{
  ASSERT_HELD (&bs->lock);
  struct bucket *b = &bs->b[i];

  unfresh_locked (bs, b);
  bs->nr_state[b->state]--;
  bs->nr_state[st]++;
  b->state = st;
}

static inline void
push_free_locked (struct bucket_set *bs, uint32_t i)
{
  ASSERT_HELD (&bs->lock);
  set_state_locked (bs, i, BUCKET_FREE);
  bs->free_fifo[(bs->free_head + bs->free_len) % bs->nbuckets] = i;
  bs->free_len++;
}

static inline int
pop_free_locked (struct bucket_set *bs, uint32_t *out)
{
  ASSERT_HELD (&bs->lock);
  while (bs->free_len > 0) {
    uint32_t i = bs->free_fifo[bs->free_head];

    bs->free_head = (bs->free_head + 1) % bs->nbuckets;
    bs->free_len--;
    if (bs->b[i].state == BUCKET_FREE) {
      *out = i;
      return 0;
    }
  }
  log_error ("BUG: cache device %s: bucket allocator: %" PRIu32 " FREE "
             "buckets counted but none listed", bs->cd->path,
             bs->nr_state[BUCKET_FREE]);
  INVARIANT_ABORT ();
  return -ENOSPC;
}

static inline void
make_pending_locked (struct bucket_set *bs, uint32_t i, uint64_t seq)
{
  ASSERT_HELD (&bs->lock);
  struct bucket *b = &bs->b[i];

  set_state_locked (bs, i, BUCKET_PENDING);
  b->free_seq = seq;
  if (!b->on_pending_list) {
    b->on_pending_list = true;
    bs->pending[bs->nr_pending++] = i;
  }
}

/* An OPEN bucket that no write point owns and no write holds. */
static inline void
settle_open_locked (struct bucket_set *bs, uint32_t i)
{
  ASSERT_HELD (&bs->lock);
  if (bs->b[i].live_blocks > 0)
    set_state_locked (bs, i, BUCKET_DATA);
  else
    make_pending_locked (bs, i, open_seq (bs));
}

static inline void
close_wp_locked (struct bucket_set *bs, struct bucket_write_point *w)
{
  ASSERT_HELD (&bs->lock);
  struct bucket *b = &bs->b[w->bucket];

  w->valid = false;
  b->in_wp = false;
  if (b->open == 0)
    settle_open_locked (bs, w->bucket);
}

static inline void
open_wp_locked (struct bucket_set *bs, struct bucket_write_point *w,
                uint32_t i)
{
  ASSERT_HELD (&bs->lock);
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

/* Caller bugs, each kind logged once per set; a debug or test build
 * aborts (invariant.h), a release build carries on with the clamp or
 * refusal that follows the complaint.
 */
enum complaint {
  COMPLAIN_ACCOUNT = 1u << 0,
  COMPLAIN_PUT = 1u << 1,
  COMPLAIN_FREE_NODE = 1u << 2,
  COMPLAIN_DISCARD_STALL = 1u << 3,
  COMPLAIN_DISCARD_DONE = 1u << 4,
};

static inline void
complain_locked (struct bucket_set *bs, enum complaint kind, const char *what,
                 uint32_t bucket)
{
  ASSERT_HELD (&bs->lock);
  if (bs->complained & kind)
    return;
  bs->complained |= kind;
  log_error ("BUG: cache device %s: bucket %" PRIu32 ": %s (not logged "
             "again)", bs->cd->path, bucket, what);
  INVARIANT_ABORT ();
}

#endif /* NBDCACHE_BUCKET_INTERNAL_H */
