/* SPDX-License-Identifier: BSD-3-Clause */
/* faulty.h — a fault-injecting backing store, for tests.
 *
 * WHAT: wraps another backing handle (backing.h ops) and fails chosen I/O
 * with -EIO while a fault is armed: writes (pwrite, zero, trim) touching
 * a byte range, reads touching a byte range, and flushes.  Everything
 * else passes through to the inner store unchanged, including its uri,
 * size and capabilities (so an export binds to the same cache slot as it
 * would over the inner store).
 * WHY: writeback must keep data dirty and retry when the backing store
 * fails, and reads of failing ranges must give the client EIO; the tests
 * need a store that fails on command and recovers on command.
 * THREADS AND LOCKS: thread-safe; the fault settings are atomics, so they
 * can be changed while I/O runs.
 * FAILURE: an injected failure is logged at debug level and returns -EIO.
 */
#ifndef NBDCACHE_FAULTY_H
#define NBDCACHE_FAULTY_H

#include <stdbool.h>
#include <stdint.h>

struct backing;

/* Takes ownership of inner on every path (closing the result closes
 * inner; a failure closes it at once).  The head is copied from inner:
 * size and capabilities, and the uri as our own copy.  0 and *out, or
 * -ENOMEM (-EINVAL for a NULL inner).
 */
int backing_faulty_wrap (struct backing *inner, struct backing **out);
/* Arm (count > 0) or disarm (count = 0) the write fault over
 * [offset, offset + count).  Writes, zeroes and trims overlapping it (at
 * least one common byte; zero-length I/O overlaps nothing) fail.  The
 * controls below take a handle from backing_faulty_wrap only; any other
 * handle is logged and ignored (nr_failed returns 0).
 */
void backing_faulty_fail_writes (struct backing *b, uint64_t offset,
                                 uint64_t count);
/* Likewise for reads (pread; extents pass through). */
void backing_faulty_fail_reads (struct backing *b, uint64_t offset,
                                uint64_t count);
/* Fail every flush, and every pwrite, zero and trim with BACKING_FUA,
 * while on.
 */
void backing_faulty_fail_flush (struct backing *b, bool on);
/* Injected failures so far. */
uint64_t backing_faulty_nr_failed (struct backing *b);

#endif /* NBDCACHE_FAULTY_H */
