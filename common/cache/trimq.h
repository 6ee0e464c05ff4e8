/* SPDX-License-Identifier: BSD-3-Clause */
/* trimq.h — the backing store's trim queue: merged, batched trims.
 *
 * WHAT: TRIM requests to the backing store (after the cache dropped its
 * keys) are queued here instead of being issued one by one.  Queued
 * ranges are merged (overlapping or adjacent ranges become one) and kept
 * sorted by offset.  The export's background thread issues them in
 * batches of up to TRIMQ_BATCH extents when TRIMQ_BATCH are waiting or the
 * oldest has waited TRIMQ_MAX_AGE_MS; a FLUSH issues everything first.
 * ORDERING: a write to the backing store must never be overtaken by an
 * earlier trim.  Every write, zero or trim of the backing store goes
 * through export-io.c, which calls trimq_write_barrier first: the queued
 * parts that overlap the write are dropped (the write supersedes them —
 * a trim is advisory) and the call waits while an issued batch overlaps.
 * Reads: a read from the backing store that overlaps a queued trim
 * issues the queue first (trimq_overlaps): the cache dropped the range's
 * keys — maybe dirty data or a ZERO key newer than the backing store —
 * so the backing's pre-trim bytes must not be served as the trimmed
 * range's content.
 * THREADS AND LOCKS: thread-safe; one mutex and a condition variable.
 * The issue callback runs with no lock held; one batch is in flight at a
 * time (a second issuer waits for it).
 * FAILURE: add returns -ENOMEM (the caller then trims synchronously); a
 * failed issue is logged by the driver, counted, and dropped (advisory).
 */
#ifndef NBDCACHE_TRIMQ_H
#define NBDCACHE_TRIMQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TRIMQ_BATCH 100
#define TRIMQ_MAX_AGE_MS 1000

struct trimq;

/* Issue one trim (the export's backing_trim).  0 or -errno. */
typedef int (*trimq_issue_fn) (void *opaque, uint64_t offset,
                               uint64_t count);

struct trimq_stats {
  uint64_t queued;              /* trims added */
  uint64_t batches;             /* batches issued */
  uint64_t extents;             /* extents issued (after merging) */
  uint64_t superseded;          /* extents (or parts) dropped by writes */
  uint64_t errors;
};

int trimq_create (struct trimq **out);
/* NULL: no-op.  Queued trims are dropped (call trimq_issue all first). */
void trimq_destroy (struct trimq *q);
/* Queue [offset, offset + count), merging.  now_ms: monotonic clock. */
int trimq_add (struct trimq *q, uint64_t offset, uint64_t count,
               uint64_t now_ms);
/* Drop the queued parts overlapping [offset, offset + count) (an extent
 * with the write strictly inside is split in two; if that cannot allocate,
 * the whole extent is dropped), then wait while an issued batch overlaps.
 * count 0: no-op.  Never call it from the issue callback (it would wait
 * for itself).
 */
void trimq_write_barrier (struct trimq *q, uint64_t offset, uint64_t count);
/* True if a batch is due at now_ms: at least TRIMQ_BATCH extents are
 * waiting, or one has waited at least TRIMQ_MAX_AGE_MS (now_ms - the time
 * its oldest part was added >= TRIMQ_MAX_AGE_MS; a merged extent keeps
 * the oldest time of its parts).
 */
bool trimq_due (struct trimq *q, uint64_t now_ms);
/* Issue one batch (all = false) or everything queued (all = true) through
 * fn; returns the first error (the batch is finished either way).
 * One batch is up to TRIMQ_BATCH extents, taken in offset order from a
 * cursor that goes round the offset space (so no range starves).  all =
 * true issues batch after batch, in offset order, everything queued when
 * the call began (and whatever merged into it); it returns once no batch
 * holding any of it is in flight.  Nothing queued: returns 0, no batch.
 */
int trimq_issue (struct trimq *q, bool all, trimq_issue_fn fn, void *opaque);
/* Extents queued (after merging), not counting a batch in flight. */
size_t trimq_len (struct trimq *q);
/* Is any part of [offset, offset + count) queued or in flight?  A read
 * from the backing store of such a range issues the queue first, so that
 * a trim is never "undone" by a read of the backing's older data (a
 * dropped DIRTY key, a dropped ZERO key).
 */
bool trimq_overlaps (struct trimq *q, uint64_t offset, uint64_t count);
void trimq_get_stats (struct trimq *q, struct trimq_stats *st);

#endif /* NBDCACHE_TRIMQ_H */
