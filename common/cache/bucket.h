/* SPDX-License-Identifier: BSD-3-Clause */
/* bucket.h — buckets: gens, priorities, live counts, the allocator, and
 * the persistent prio copies.
 *
 * WHAT: one in-memory struct per bucket of the cache device, and the
 * allocator that hands out space:
 * - data space through two *write points* (open buckets filled
 *   sequentially): WP_DIRTY for writeback writes and WP_CLEAN for
 *   promotions and writethrough copies, so clean data shares buckets only
 *   with clean data and a clean bucket can be evicted whole;
 * - whole buckets for btree nodes (bucket_alloc_node), which may dip into
 *   a reserve that data allocations leave alone, so a split never fails
 *   for lack of space.
 * bucket.c is the states and accounting, bucket-alloc.c the allocator,
 * bucket-discard.c and bucket-gc.c the discard batches and the GC's
 * bookkeeping; prio.c reads and writes the prio copies (gens +
 * priorities) described in ondisk.h.
 *
 * GENS: a pointer (bucket, gen) is valid while the bucket's gen equals
 * gen.  Reusing a bucket bumps its gen, and the new gen is made durable
 * (prio_write, which syncs) *before* the bucket is handed out, so after
 * any crash every pointer into the bucket's previous life is stale.
 * To keep 8-bit gens unambiguous a bucket is never bumped more than
 * BUCKET_GEN_MAX_DISTANCE past the oldest gen any key may still hold
 * (oldest_gen, recomputed by every btree walk: recovery and btree_sweep).
 *
 * LIFE OF A DATA BUCKET:
 *   FREE (gen durable, ready) -> OPEN (a write point fills it; holds
 *   an open count while writes into it are in flight) -> DATA (live_blocks
 *   > 0) -> PENDING (live_blocks reached 0: the keys that emptied it are
 *   in the journal entry `free_seq`, not yet durable) -> EMPTY (that entry
 *   is durable; needs a gen bump) -> FREE.
 *   Eviction: a DATA bucket with dirty_blocks == 0, not open, of the lowest
 *   prio, is invalidated by a gen bump (its keys go stale) -> FREE.
 *   Node buckets: FREE -> BTREE -> (bucket_free_node) PENDING -> EMPTY.
 *   Journal, prio and bucket 0: META, never allocated.
 *
 * ACCOUNTING: the btree calls bucket_account for every key it stores (+1)
 * and every key or part of a key it cuts (-1); keys with a stale gen are
 * ignored.  live_blocks / dirty_blocks are therefore exact for the
 * current gen.
 *
 * PRIORITIES: a hit raises the bucket's prio to BUCKET_PRIO_HIT (or by a
 * step); every BUCKET_DECAY_IOS accounted I/Os all prios decay.  Eviction
 * picks the lowest.
 *
 * THREADS AND LOCKS: one mutex inside the bucket set.  Lock order:
 * btree lock -> bucket lock (the btree calls in under its lock); the
 * bucket code never calls the btree or the journal while holding its lock.
 * bucket_gen is a lock-free acquire load (read path gen recheck).
 * FAILURE: -ENOSPC when no space can be had without dropping dirty data;
 * -EAGAIN when only a btree sweep (stale keys) would free gens; -EIO from
 * prio writes (logged).
 */
#ifndef NBDCACHE_BUCKET_H
#define NBDCACHE_BUCKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ondisk.h"

struct cdev;
struct bucket_set;

#define BUCKET_GEN_MAX_DISTANCE 96
#define BUCKET_PRIO_HIT 32768u
#define BUCKET_DECAY_IOS 4096u
/* Node buckets kept back from data allocations. */
#define BUCKET_BTREE_RESERVE 8u

enum bucket_wp { WP_DIRTY = 0, WP_CLEAN = 1, NR_WRITE_POINTS };

enum bucket_state {
  BUCKET_META = 0,              /* superblock, journal, prio: never used */
  BUCKET_FREE,                  /* gen bumped and durable: ready */
  BUCKET_EMPTY,                 /* unused; needs a gen bump first */
  BUCKET_PENDING,               /* emptied; free once free_seq is durable */
  BUCKET_OPEN,                  /* a write point is filling it */
  BUCKET_DATA,
  BUCKET_BTREE,
  BUCKET_DISCARD,               /* busy: gen bumped and durable, discard
                                   pending or in flight; never handed out */
};

/* A piece of data space. */
struct bucket_extent {
  uint32_t bucket;
  uint32_t offset;              /* blocks within the bucket */
  uint32_t nblocks;
  uint8_t gen;
};

struct bucket_hooks {
  void *opaque;
  /* Journal: the seq of the entry now open (keys accounted now land in
   * it).  Lock-free.
   */
  uint64_t (*journal_open_seq) (void *opaque);
  /* Journal: commit everything added so far and wait (called without the
   * bucket lock, and only from bucket_alloc_data, never under the btree
   * lock).  0 or -errno.
   */
  int (*journal_flush) (void *opaque);
  /* Optional: wake the device's background thread (gc.h's gc_kick):
   * EMPTY buckets wait for a discard batch, an allocation is waiting for
   * one, or free buckets ran low (need_gc: only a GC pass would help).
   * Called with the bucket lock held: it must only signal.  NULL: with
   * discard on, allocations never wait for a discard batch (nothing
   * could wake the thread); they bump EMPTY buckets themselves.
   */
  void (*kick) (void *opaque, bool need_gc);
};

struct bucket_usage {
  uint32_t nbuckets;            /* data + btree area */
  uint32_t free, empty, pending, open, data, btree;
  uint32_t dirty_buckets;       /* data buckets with dirty_blocks > 0 */
  uint64_t live_blocks, dirty_blocks;
  uint32_t discard;             /* BUCKET_DISCARD (busy) */
  uint64_t evictions;           /* since open */
  uint64_t prio_writes;
  uint64_t discards, discard_batches, discard_errors; /* since open */
  uint64_t gc_runs, gc_freed, gc_fixed; /* completed recounts; buckets */
  uint32_t moving;              /* buckets selected for moving GC now */
};

/* In-memory state for a device with superblock sb (valid).  Every data
 * bucket starts EMPTY with gen 0 until prio_read and the recovery marks.
 */
int bucket_set_create (struct cdev *cd, const struct nc_sb *sb,
                       const struct bucket_hooks *hooks,
                       struct bucket_set **out);
void bucket_set_destroy (struct bucket_set *bs);

/* ---- prio.c ---- */
/* Load gens and prios from the newest valid prio copy.  -EBADMSG (logged,
 * naming the copy and the reason) if neither is valid.
 */
int prio_read (struct bucket_set *bs);
/* Write every bucket's gen and prio to the older copy with seq+1, sync.
 * Takes the bucket lock.
 */
int prio_write (struct bucket_set *bs);
/* Format: write copy A (seq 1) with every gen 0 and prio 0; no sync. */
int prio_format (struct cdev *cd, const struct nc_sb *sb);
/* For nbdcache check/show: validate one copy (0 = A, 1 = B); NULL if
 * valid (and *seq set) or a static reason.
 */
const char *prio_check_copy (struct cdev *cd, const struct nc_sb *sb,
                             int copy, uint64_t *seq);

/* ---- recovery marks (single-threaded, before serving) ---- */
/* Forget all marks: every non-META bucket unmarked, counts zero.  Device
 * open marks twice (before and after replaying the journal).
 */
void bucket_mark_begin (struct bucket_set *bs);
/* A reachable btree node. */
void bucket_mark_btree (struct bucket_set *bs, uint32_t bucket);
/* A leaf key met by the walk: notes its gen for oldest_gen and, when the
 * gen is current, counts it live (and dirty).  True if the key is current.
 */
bool bucket_mark_key (struct bucket_set *bs, const struct nc_key *k);
/* Walk finished: unmarked data buckets become EMPTY, marked ones DATA;
 * oldest_gen is set for every bucket.
 */
void bucket_mark_done (struct bucket_set *bs);

/* ---- GC: the run-time recount (btree_sweep drives it) ----
 * The walk goes leaf by leaf in key order and drops the btree lock
 * between batches of leaves, so inserts run while it is under way:
 * - begin: every data bucket's gc counts (live, dirty) := 0, gc oldest
 *   gen := its gen, the cursor := before everything.
 * - note(k): a key the walk met: lowers the bucket's gc oldest gen to
 *   k's gen; a current-gen data key adds its blocks to the gc counts.
 * - cursor(x, end): the walk has noted every key at positions up to
 *   (export x, block end) inclusive.  From now on bucket_account of a key
 *   whose position (export_id, end) is at or before the cursor also
 *   updates the gc counts (the walk will not see it), so at the end the
 *   gc counts are exact for the keys in the index, like the live counts.
 *   All three are called under the btree lock, like bucket_account.
 * - end(complete): complete = the whole index was walked and what it
 *   changed is durable: oldest gens are published; every DATA bucket
 *   (not open, not in a write point) whose live or dirty count differs
 *   from its gc count is corrected (logged once per run as an accounting
 *   bug, counted in gc_fixed); a DATA bucket with nothing live becomes
 *   PENDING (freed once the journal's open entry is durable; counted in
 *   gc_freed).  complete = false: nothing is published (an aborted walk).
 * The per-export dirty counters (below) are recounted the same way, so
 * the walk notes every key it meets, ZERO keys and stale keys included.
 */
void bucket_gc_begin (struct bucket_set *bs);
void bucket_gc_note (struct bucket_set *bs, const struct nc_key *k);
void bucket_gc_cursor (struct bucket_set *bs, uint16_t export_id,
                       uint64_t end);
void bucket_gc_end (struct bucket_set *bs, bool complete);

/* ---- run time ---- */

/* The bucket's gen now (acquire). */
uint8_t bucket_gen (struct bucket_set *bs, uint32_t bucket);
/* A data key whose gen differs from its bucket's. */
bool bucket_ptr_stale (struct bucket_set *bs, const struct nc_key *k);
/* A data key stale after any crash: its gen differs from the bucket's
 * durable gen too.  A key only bucket_ptr_stale may come back to life if
 * the gen bump is lost (its prio write failed or is in flight); only a
 * key stale for good may leave the index unjournaled (bnode_drop_stale).
 */
bool bucket_ptr_stale_durably (struct bucket_set *bs, const struct nc_key *k);

/* Up to nblocks contiguous blocks from write point wp (fewer at the end of
 * a bucket).  *out holds an open reference on out->bucket: release it with
 * bucket_put_open once the key is inserted (or abandoned).  May block to
 * make new gens durable, to evict cold clean buckets, or to wait for a
 * journal commit that frees PENDING buckets.  -ENOSPC if the cache is
 * full of dirty data and btree nodes; -EAGAIN if a btree sweep is needed.
 */
int bucket_alloc_data (struct bucket_set *bs, enum bucket_wp wp,
                       uint32_t nblocks, struct bucket_extent *out);
/* The same for the discard thread itself (moving GC): where
 * bucket_alloc_data would wait for a discard batch it returns -EBUSY, so
 * the caller can run the batch and try again.
 */
int bucket_alloc_data_nowait (struct bucket_set *bs, enum bucket_wp wp,
                              uint32_t nblocks, struct bucket_extent *out);
/* The same, only from memory (an event loop): the write point's open
 * bucket, or a FREE bucket above the btree reserve; -EAGAIN (nothing
 * changed) where bucket_alloc_data would evict, flush, wait or sweep.
 */
int bucket_alloc_data_quick (struct bucket_set *bs, enum bucket_wp wp,
                             uint32_t nblocks, struct bucket_extent *out);
void bucket_put_open (struct bucket_set *bs, uint32_t bucket);

/* A whole bucket for a btree node, gen durable.  Never waits for the
 * journal (it is called under the btree lock); may use the reserve and
 * evict clean buckets.  -ENOSPC only if that fails too.
 */
int bucket_alloc_node (struct bucket_set *bs, uint32_t *bucket, uint8_t *gen);
/* A node bucket is no longer referenced by the in-memory tree; it becomes
 * reusable once journal entry `seq` is durable.
 */
void bucket_free_node (struct bucket_set *bs, uint32_t bucket, uint64_t seq);

/* Key stored (sign +1) or cut away (sign -1; k is the part removed).
 * Stale and ZERO keys are ignored.  A data bucket whose live count drops
 * to 0 becomes PENDING at the journal's open seq.
 */
void bucket_account (struct bucket_set *bs, const struct nc_key *k, int sign);

/* Journal entry `durable_seq` and all before it are durable: PENDING
 * buckets with free_seq <= durable_seq become EMPTY.
 */
void bucket_journal_committed (struct bucket_set *bs, uint64_t durable_seq);

/* A read hit the bucket: raise its prio; counts an I/O for decay. */
void bucket_hit (struct bucket_set *bs, uint32_t bucket);
/* Count an I/O for decay without a hit. */
void bucket_io (struct bucket_set *bs);

void bucket_get_usage (struct bucket_set *bs, struct bucket_usage *u);
enum bucket_state bucket_state_of (struct bucket_set *bs, uint32_t bucket);

/* Per export: blocks of current-gen DIRTY data keys and of DIRTY ZERO
 * keys (accounted by bucket_account and the recovery marks, like the
 * bucket counts).  Lock-free (relaxed atomics).
 */
uint64_t bucket_export_dirty_blocks (struct bucket_set *bs,
                                     uint16_t export_id);
uint64_t bucket_export_dirty_zero_blocks (struct bucket_set *bs,
                                          uint16_t export_id);

/* Data space in blocks (data + btree area minus the btree reserve), the
 * base of the dirty target and limit.
 */
uint64_t bucket_data_capacity_blocks (struct bucket_set *bs);

/* ---- discards: busy buckets (XFS's busy extents, at bucket size) ----
 * Turned on by bucket_set_discard (device config `discard`).  Then an
 * EMPTY bucket (freed by trims, overwrites, GC; its freeing journal entry
 * durable) is not bumped by the allocator itself: the discard thread
 * takes batches, which bump the gens and make them durable (no key into
 * the old data can come back) and mark the buckets BUCKET_DISCARD — busy:
 * the allocator never hands them out.  A prio write costs the whole copy
 * (4 MiB at 1 TiB), so one write bumps *every* EMPTY bucket that may be
 * bumped ("fresh": gen durable, nothing points at it) and the batches
 * that follow take fresh buckets with no write: a start-up pass over a
 * large, empty cache costs one prio write, not one per batch.
 * The thread discards them with no lock held, then bucket_discard_done
 * makes them FREE.  An allocation that finds nothing FREE but busy
 * buckets waits for the batch (bounded by one discard batch) rather than
 * failing.  Evicted buckets (clean data invalidated for immediate reuse)
 * are not discarded.
 */
void bucket_set_discard (struct bucket_set *bs, bool on);
/* Up to max EMPTY buckets (ascending bucket order, so neighbours merge
 * into long extents) become BUCKET_DISCARD; their numbers go to out[].
 * When no EMPTY bucket is fresh, first bumps every EMPTY bucket that may
 * be bumped, with one prio write.  Returns how many (0: none waiting),
 * -EIO if the prio write failed (the buckets stay EMPTY, not fresh), or
 * -EAGAIN if gens are at their distance limit (a sweep is needed; nothing
 * taken).
 */
int bucket_discard_take (struct bucket_set *bs, uint32_t *out, uint32_t max);
/* The batch is done; failed = the discards that failed (counted; the
 * buckets are reused anyway: a discard is advisory).  They become FREE.
 */
void bucket_discard_done (struct bucket_set *bs, const uint32_t *b,
                          uint32_t n, uint32_t failed);
/* EMPTY buckets waiting for a discard batch. */
uint32_t bucket_discard_waiting (struct bucket_set *bs);

/* ---- moving GC ----
 * Select up to max DATA buckets that hold dirty data, are not open or in
 * a write point, and are at most fill_percent full (live blocks), the
 * emptiest first, while their live blocks fit in the FREE space less the
 * btree reserve.  They are flagged "moving" and returned in out[].  The
 * mover copies their keys elsewhere (btree_replace); when the last live
 * block leaves, the bucket empties and is freed as usual.
 */
uint32_t bucket_moving_select (struct bucket_set *bs, unsigned fill_percent,
                               uint32_t *out, uint32_t max);
/* Lock-free: is the bucket flagged moving (the mover's scan filter). */
bool bucket_is_moving (struct bucket_set *bs, uint32_t bucket);
/* Clear the flags of a finished (or abandoned) selection. */
void bucket_moving_done (struct bucket_set *bs, const uint32_t *b,
                         uint32_t n);

/* ---- internals shared by the bucket set's files and prio.c ----
 * Added by the bucket module (additive): visible only where the includer
 * defines BUCKET_INTERNALS before including this header, which only
 * bucket-internal.h (bucket*.c), prio.c and the bucket tests do.  Every other module sees the
 * opaque struct bucket_set above.
 */
#ifdef BUCKET_INTERNALS

#include <pthread.h>

#define BUCKET_NR_STATES (BUCKET_DISCARD + 1)

/* One bucket.  gen and prio are accessed atomically (gen: release store,
 * acquire load; prio: relaxed), moving too (relaxed); everything else
 * under bs->lock.
 */
struct bucket {
  uint64_t free_seq;            /* PENDING: journal seq that must be
                                   durable before reuse */
  uint64_t clean_seq;           /* journal seq of the last change that took
                                   dirty blocks out of it (a cut, a mark
                                   clean): durable before it is evicted */
  uint32_t live_blocks;         /* current-gen keys pointing here, blocks */
  uint32_t dirty_blocks;        /* of which DIRTY, blocks */
  uint32_t gc_live, gc_dirty;   /* the recount running: blocks of the
                                   current gen found so far */
  uint32_t open;                /* allocations not yet bucket_put_open */
  uint16_t prio;                /* LRU priority; atomic */
  uint8_t gen;                  /* atomic */
  uint8_t disk_gen;             /* the gen the last prio write (or read)
                                   made durable; atomic */
  uint8_t oldest_gen;           /* oldest gen any key may still hold */
  uint8_t gc_oldest;            /* oldest gen seen by the sweep running */
  uint8_t state;                /* enum bucket_state */
  bool marked;                  /* recovery walk: a reachable btree node */
  bool in_wp;                   /* the current bucket of a write point */
  bool on_pending_list;         /* listed in bs->pending */
  bool moving;                  /* selected for moving GC; atomic */
  bool fresh;                   /* EMPTY only: gen bumped and durable, no
                                   pointer holds it: reusable with no
                                   further bump (counted in nr_fresh) */
};

struct bucket_write_point {
  bool valid;                   /* false: no current bucket */
  uint32_t bucket;
  uint32_t next;                /* first unallocated block in it */
};

struct bucket_set {
  struct cdev *cd;              /* borrowed */
  uint64_t durable_seq;         /* the journal's, as last committed */
  struct nc_sb sb;              /* copy: geometry and uuid never change */
  struct bucket_hooks hooks;    /* zeroed if none were given */
  pthread_mutex_t lock;
  struct bucket *b;             /* [nbuckets] */
  uint32_t nbuckets, data_first, bucket_blocks;
  uint32_t nr_state[BUCKET_NR_STATES]; /* buckets per state */

  /* FREE buckets in hand-out order: a ring of nbuckets entries. */
  uint32_t *free_fifo;
  uint32_t free_head, free_len;
  /* Every PENDING bucket (and maybe some that left PENDING since). */
  uint32_t *pending;
  uint32_t nr_pending;
  /* Batches: buckets made FREE per gen-bump pass, buckets evicted. */
  uint32_t refill_batch, evict_batch;
  uint32_t *scratch;            /* [max (refill, evict batch)] */
  uint32_t empty_cursor;        /* where the next EMPTY search starts */
  uint32_t nr_fresh;            /* EMPTY buckets with fresh set */
  uint32_t discard_cursor;      /* where bucket_discard_take looks next */

  struct bucket_write_point wp[NR_WRITE_POINTS];

  /* Prio copies: the newest valid one is prio_copy (0 = A, 1 = B) with
   * prio_seq; the next write goes to the other copy with prio_seq + 1.
   */
  void *prio_buf;               /* cdev buffer of prio_copy_bytes */
  uint64_t prio_seq;
  int prio_copy;

  uint64_t prio_writes, evictions;
  /* Sums over the data buckets, kept by set_counts_locked so usage
   * questions (promotion on every read miss, stats) cost O(1).
   */
  uint64_t total_live_blocks, total_dirty_blocks;
  uint32_t nr_dirty_buckets;
  uint64_t ios;                 /* atomic: I/Os counted for decay */
  unsigned complained;          /* kinds of caller bugs already logged */

  /* Discards (bucket_set_discard).  discard_done_gen counts finished
   * batches (and mode changes); allocators waiting for one sleep on
   * discard_cond (CLOCK_MONOTONIC).
   */
  bool discard;
  pthread_cond_t discard_cond;
  uint64_t discard_done_gen;
  uint32_t discard_waiters;     /* allocations asleep on discard_cond */
  bool discard_stalled;         /* no batch came in time: allocations bump
                                   EMPTY buckets themselves until one does */
  uint64_t discards, discard_batches, discard_errors, discard_fallbacks;

  /* The GC recount (bucket_gc_*): active between begin and end; the
   * cursor is "before everything" until gc_cursor_set.
   */
  bool gc_active, gc_cursor_set;
  uint16_t gc_cursor_export;
  uint64_t gc_cursor_end;
  uint64_t gc_runs, gc_freed, gc_fixed;
  uint64_t gc_export_dirty[NC_MAX_EXPORTS + 1];
  uint64_t gc_export_zero[NC_MAX_EXPORTS + 1];

  /* Per export id: blocks of current DIRTY data keys and of DIRTY ZERO
   * keys.  Written under the lock, read lock-free (relaxed atomics).
   */
  uint64_t export_dirty[NC_MAX_EXPORTS + 1];
  uint64_t export_zero[NC_MAX_EXPORTS + 1];

  uint32_t nr_moving;           /* buckets flagged moving */
};

/* Bytes of one prio copy that are used, rounded up to a block. */
static inline size_t
prio_copy_bytes (const struct nc_sb *sb)
{
  size_t n = sizeof (struct nc_prio)
    + (size_t) sb->nbuckets * sizeof (struct nc_prio_entry);
  return (n + NC_BLOCK_BYTES - 1) / NC_BLOCK_BYTES * NC_BLOCK_BYTES;
}

/* prio_write with bs->lock held (the allocator's gen bumps). */
int prio_write_locked (struct bucket_set *bs);
/* Every non-META bucket EMPTY with no counts, no write points, empty
 * FREE and PENDING lists (prio_read, after loading new gens).  Lock held.
 */
void bucket_reset_locked (struct bucket_set *bs);

#endif /* BUCKET_INTERNALS */

#endif /* NBDCACHE_BUCKET_H */
