/* SPDX-License-Identifier: BSD-3-Clause */
/* gc.h — a cache device's background thread: GC, moving GC, discards.
 *
 * WHAT: one thread per cache device, woken by a timer (GC_PERIOD_MS), by
 * the allocator running low (gc_kick), and at close.  Each round, in
 * this order:
 *   1. discards: while EMPTY buckets wait and discard is on, take a batch
 *      of up to GC_DISCARD_BATCH buckets (bucket_discard_take: busy,
 *      gens durable), merge neighbours into extents, issue cdev_discard
 *      for each with no lock held, and bucket_discard_done;
 *   2. GC (btree_gc: stale keys dropped, live counts and oldest gens
 *      recounted, empty buckets freed) when due: every GC_PERIOD_MS, or
 *      when kicked because gens hit their distance limit (-EAGAIN) or
 *      free buckets fell below GC_FREE_LOW_PERCENT;
 *   3. moving GC when free buckets are below GC_FREE_LOW_PERCENT and
 *      buckets holding dirty data are fragmented (at most
 *      GC_MOVING_FILL_PERCENT full): bucket_moving_select, btree_scan for
 *      the keys in those buckets (all exports), read each key's data,
 *      write it to new space from the matching write point (dirty ->
 *      WP_DIRTY, clean -> WP_CLEAN), btree_replace old -> new; a key
 *      replaced meanwhile is left alone (its copy is simply not used);
 *      bucket_moving_done.  Dirty data is moved, never dropped.
 * No lock is held across device I/O; btree_gc and btree_scan bound how
 * long they hold the btree lock.
 * THREADS AND LOCKS: the thread's own mutex/cond for wake-ups only.
 * FAILURE: errors are logged (rate-limited), counted, and the round is
 * retried at the next wake-up; the device keeps serving.
 */
#ifndef NBDCACHE_GC_H
#define NBDCACHE_GC_H

#include <stdbool.h>
#include <stdint.h>

struct ncache_device;
struct gc;

#define GC_PERIOD_MS 30000
#define GC_DISCARD_BATCH 100
#define GC_FREE_LOW_PERCENT 10
#define GC_MOVING_FILL_PERCENT 50
#define GC_MOVING_MAX_BUCKETS 16

struct gc_stats {
  uint64_t runs;                /* btree_gc passes completed */
  uint64_t stale_keys;          /* dropped by them */
  uint64_t moving_runs, moving_bytes, moving_keys;
  uint64_t moving_nospc;        /* passes cut short: space taken by writes */
  uint64_t discard_batches, discard_extents, discard_buckets,
    discard_errors;
  uint64_t errors;
};

/* Start the thread for dev (after recovery).  0 or -errno. */
int gc_start (struct ncache_device *dev, struct gc **out);
/* Stop, waiting for the round in flight.  NULL: no-op. */
void gc_stop (struct gc *g);
/* Wake the thread; need_gc asks for a btree_gc pass this round. */
void gc_kick (struct gc *g, bool need_gc);
/* Run one full round now in the calling thread (tests; `nbdcache` admin
 * could use it): discards, a GC pass, and a moving GC pass if any bucket
 * qualifies (regardless of free space when force_moving).
 */
int gc_run_once (struct gc *g, bool force_moving);
void gc_get_stats (struct gc *g, struct gc_stats *st);

#endif /* NBDCACHE_GC_H */
