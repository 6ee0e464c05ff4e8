/* SPDX-License-Identifier: BSD-3-Clause */
/* test-cache-spy.h — a "spy" backing store for the export-handle tests
 * (test-cache.c, test-cache-extents.c).
 *
 * WHAT: wraps a memory store: forwards the data, records what reached
 * the backing (calls, flags), lets a test choose the capabilities, inject
 * one error, and script the extents it reports.  A fake with real data,
 * not a mock.
 * INVARIANTS: a spy_record outlives its spy (the ncache owns the spy).
 * THREADS: pread / pwrite counters are atomic (concurrency tests); the
 * rest is for one thread.  FAILURE: setup failures fail the test
 * (cmocka asserts).
 */
#ifndef NBDCACHE_TEST_CACHE_SPY_H
#define NBDCACHE_TEST_CACHE_SPY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backing.h"
#include "cache.h"

#define EXPORT_BYTES (1024 * 1024)

struct script_extent {
  uint64_t length;
  uint32_t flags;
};

/* What a test sees of a spy; it outlives the spy, which the ncache owns. */
struct spy_record {
  unsigned nr_pread, nr_pwrite, nr_flush, nr_trim, nr_zero, nr_extents;
  unsigned nr_close;
  uint32_t last_flags;          /* flags of the last pwrite/trim/zero */
  int fail_next;                /* -errno for the next I/O call, once */
  const struct script_extent *script; /* NULL: forward to the memory store */
  size_t nr_script;
  uint64_t script_skew;         /* add this to reported offsets (a bug) */
};

struct spy_caps {
  bool readonly, can_trim, can_zero, can_fast_zero, can_extents;
};

extern const struct spy_caps all_caps;

struct backing *spy_create (uint64_t size_bytes, const struct spy_caps *caps,
                            struct spy_record *rec);
/* An export in mode none of EXPORT_BYTES over a new spy. */
struct ncache_export *open_spy (const struct spy_caps *caps, bool readonly,
                                struct spy_record *rec);
void fill_pattern (unsigned char *buf, size_t count, uint64_t offset,
                   unsigned seed);
bool is_zero (const unsigned char *buf, size_t count);
/* An extents callback counting its calls in *(unsigned *) opaque. */
int count_extent (void *opaque, uint64_t offset, uint64_t length,
                  uint32_t flags);

#endif /* NBDCACHE_TEST_CACHE_SPY_H */
