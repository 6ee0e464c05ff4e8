/* SPDX-License-Identifier: BSD-3-Clause */
/* export-io.h — the one door from an export to its backing store.
 *
 * Owns: nothing; it borrows the export's backing, trim queue and
 * backsync counters.  Every backing read, write, zero, trim and flush of
 * the engine's data paths (cache.c in mode none, request.c, writeback.c)
 * goes through these functions, which keep the backing contract in one
 * place:
 * - clip: byte ranges are clipped to the export's size (a cached export
 *   works in whole 4 KiB blocks; the last one may pass the end).  Reads
 *   past the end return zeros, writes past it go nowhere.
 * - translate: callers pass NCACHE_* flags; BACKING_* exist only here.
 * - the trim queue (trimq.h): a read overlapping a queued trim issues the
 *   queue first; a write, zero or immediate trim passes the queue's
 *   barrier first.  An export without a queue (mode none) skips both.
 * - backsync (backsync.c, ORDERING rule 2): every write, zero or trim
 *   counts as a backing change once it completed (or failed), so the
 *   next sync flushes it.
 * Threads: any; the calls take no engine lock (the trim queue has its own).
 * Not here: what the cache must do around a backing change (forget,
 * settle the cuts: request.c's ORDERING rule 1) — the callers do it.
 */
#ifndef NBDCACHE_EXPORT_IO_H
#define NBDCACHE_EXPORT_IO_H

#include <stdbool.h>
#include <stdint.h>

#include "backing.h"

struct ncache_export;

/* How many bytes of [lo, hi) lie within the export (what the calls
 * below send to the backing store for that range).
 */
uint64_t export_io_clipped (const struct ncache_export *nc, uint64_t lo,
                            uint64_t hi);
/* Bytes [lo, hi) of the export into dst; past the backing's end zeros. */
int export_io_read (struct ncache_export *nc, void *dst, uint64_t lo,
                    uint64_t hi);
/* The same, only if the backing store can serve it without waiting;
 * -EAGAIN otherwise (nothing logged: export_io_read reports errors).
 */
int export_io_read_nowait (struct ncache_export *nc, void *dst, uint64_t lo,
                           uint64_t hi);
/* Bytes [lo, hi) from src.  flags: NCACHE_FUA. */
int export_io_write (struct ncache_export *nc, const void *src, uint64_t lo,
                     uint64_t hi, uint32_t flags);
/* Bytes [lo, hi) read as zeros.  flags: NCACHE_FUA, NCACHE_MAY_TRIM,
 * NCACHE_FAST_ZERO (-ENOTSUP if it would not be fast).
 */
int export_io_zero (struct ncache_export *nc, uint64_t lo, uint64_t hi,
                    uint32_t flags);
/* Trim bytes [lo, hi): queued (merged, batched, issued before any flush
 * and before a read of the range), or at once with NCACHE_FUA, without a
 * queue, or when the queue cannot take it.
 */
int export_io_trim (struct ncache_export *nc, uint64_t lo, uint64_t hi,
                    uint32_t flags);
/* Issue queued trims: one due batch, or everything queued (all).  The
 * first error (trims are advisory: the caller logs it and goes on).
 */
int export_io_issue_trims (struct ncache_export *nc, bool all);
/* Queued trims out, then make every backing change completed before this
 * call durable (one flush serves concurrent callers; none if nothing
 * changed; mode none always flushes).  0 or -errno.
 */
int export_io_flush (struct ncache_export *nc);
/* export_io_flush for a client's FLUSH: outside writeback mode it also
 * fails (-EIO, once) for a failed backing flush that another caller saw
 * since the previous client FLUSH (request_backing_sync_flush): writes
 * acknowledged before it may be lost.
 */
int export_io_flush_client (struct ncache_export *nc);
/* The backing store's own status of bytes [lo, hi) (base:allocation),
 * through fn as backing_extents does; nothing past the export's end.
 * 0 or -errno.
 */
int export_io_extents (struct ncache_export *nc, uint64_t lo, uint64_t hi,
                       backing_extent_fn fn, void *opaque);

#endif /* NBDCACHE_EXPORT_IO_H */
