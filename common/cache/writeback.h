/* SPDX-License-Identifier: BSD-3-Clause */
/* writeback.h — writing an export's dirty data back to its backing store.
 *
 * WHAT: one background thread per export with a cache device (any cached
 * mode: an export reopened in writethrough may hold dirty data from an
 * earlier writeback run).  It loops:
 *   1. scan: up to WRITEBACK_BATCH_KEYS dirty keys / WRITEBACK_BATCH_BYTES
 *      of the export, in (export, offset) order from a cursor that wraps
 *      (btree_scan with a DIRTY filter) — bcache's keybuf;
 *   2. for each run of keys: take the export's range lock over it (so no
 *      foreground write to those blocks interleaves: a write-around of the
 *      same blocks lands strictly before or after), read the data from the
 *      cache device (rechecking the bucket gen: a replaced key is
 *      skipped), let the backing trim queue drop or finish overlapping
 *      trims (trimq_write_barrier), write it to the backing store
 *      (adjacent keys merged into one write; a ZERO key becomes
 *      backing_zero, MAY_TRIM unless the key says NO_HOLE), release;
 *      every write of the batch is issued before any is waited for
 *      (btrfs's submit-all-then-wait: the backing's page cache or queue
 *      takes them, the flush below waits);
 *   3. flush the backing store (backing_flush), and only then
 *   4. mark the keys clean with btree_replace (new = old without
 *      NC_KEY_DIRTY): a block rewritten meanwhile stays dirty.
 *   Crash promise 3: a key is never marked clean before the backing store
 *   made its data durable.
 * RATE: wbrate (PI) toward the target = writeback_percent of the device's
 * data capacity divided among the exports open on it, updated every
 * writeback_update_ms.  When the export has had no foreground I/O for
 * WRITEBACK_IDLE_MS, or a drain is running, or the device is above the
 * dirty limit, it writes at full speed.  Between batches it sleeps so the
 * bytes written match the rate (woken early by kick, drain, stop).
 * BACKPRESSURE: writeback_throttle (called by writeback-mode writes and
 * zeroes before they allocate) waits while the device's dirty data is above
 * WRITEBACK_DIRTY_LIMIT_PERCENT of its data capacity, at most
 * WRITEBACK_THROTTLE_MAX_MS per write; a write still above the limit then
 * goes around the cache (bcache's cutoff: straight to the backing store,
 * so with the backing store unreachable it fails with EIO after
 * backing_timeout instead of filling the cache with dirty data it cannot
 * write back).  No unbounded queue anywhere.
 * ERRORS: a failed cache read, backing write or flush leaves the batch's
 * keys dirty (nothing is marked clean), is logged (rate-limited) and
 * counted, and the thread retries after a backoff doubling from 100 ms to
 * 30 s; the export keeps serving.  Nothing dirty is ever dropped.
 * THREADS AND LOCKS: the thread takes the export's range lock (request.c),
 * then btree / journal / bucket locks inside their calls; its own mutex
 * protects the state below and is never held across I/O or another lock.
 * FAILURE at start: -ENOMEM / thread creation errors.
 */
#ifndef NBDCACHE_WRITEBACK_H
#define NBDCACHE_WRITEBACK_H

#include <stdbool.h>
#include <stdint.h>

#include "cache.h"

struct ncache_export;
struct writeback;

#define WRITEBACK_BATCH_KEYS 512
#define WRITEBACK_BATCH_BYTES (UINT64_C (32) << 20)
#define WRITEBACK_IDLE_MS 1000
#define WRITEBACK_DIRTY_LIMIT_PERCENT 70
#define WRITEBACK_THROTTLE_MAX_MS 200
#define WRITEBACK_BACKOFF_MIN_MS 100
#define WRITEBACK_BACKOFF_MAX_MS 30000

struct writeback_stats {
  uint64_t bytes;               /* written back: data and zero extents */
  uint64_t keys, batches;
  uint64_t errors;              /* failed batches */
  uint64_t rate;                /* bytes/s now */
  uint64_t target_bytes;
  uint64_t throttled;           /* writes that waited in throttle */
};

/* Start the thread for nc (nc->dev != NULL) unless tuning->writeback_off;
 * *out is set either way (writeback_off: a handle without a thread,
 * which drain and close still use).  0 or -errno.
 */
int writeback_start (struct ncache_export *nc,
                     const struct ncache_export_tuning *tuning,
                     struct writeback **out);
/* Stop and free (NULL: no-op).  Waits for the batch in flight; what is
 * still dirty stays dirty (safe in the cache device).
 */
void writeback_stop (struct writeback *wb);
/* Foreground I/O happened (idle detection).  Cheap: an atomic store. */
void writeback_note_io (struct writeback *wb);
/* Wake the thread now (new dirty data past the target, a flush). */
void writeback_kick (struct writeback *wb);
/* Writeback-mode writes call this before allocating (see BACKPRESSURE).
 * True: the device is still above its dirty limit after the bounded wait,
 * the write must go around the cache.
 */
bool writeback_throttle (struct writeback *wb);
/* Would writeback_throttle wait now?  Changes nothing, never waits. */
bool writeback_would_throttle (struct writeback *wb);
/* ncache_drain: write everything back (in the calling thread if there is
 * no background thread, else with it at full speed) and flush; see
 * cache.h for the results.
 */
int writeback_drain (struct writeback *wb, ncache_progress_fn fn,
                     void *opaque);
/* Change writeback_percent live (0 .. 100; the thread picks it up at its
 * next batch or rate update).
 */
void writeback_set_percent (struct writeback *wb, unsigned percent);
void writeback_get_stats (struct writeback *wb, struct writeback_stats *st);

/* Tests only (additive, writeback.c): fn runs in every batch after the
 * backing flush and before the keys are marked clean, with no lock held,
 * in the thread running the batch (the background thread, or the
 * drain's caller with writeback_off).  Set it before any I/O; NULL
 * clears it.
 */
typedef void (*writeback_test_hook_fn) (void *opaque);
void writeback_set_test_hook (struct writeback *wb, writeback_test_hook_fn fn,
                              void *opaque);

#endif /* NBDCACHE_WRITEBACK_H */
