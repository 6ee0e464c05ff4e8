/* SPDX-License-Identifier: BSD-3-Clause */
/* test-helpers.h — scaffolding shared by the engine's model and crash tests.
 *
 * Owns: nothing global.  Three independent pieces:
 *
 * 1. The test kit (common/testkit/testkit.h): the PRNG, the seed
 *    (NBDCACHE_SEED, always printed), numbers from the environment and
 *    the log capture; included here for the model and crash tests.
 *
 * 2. A "surviving" memory store (struct test_store) and backing handles
 *    over it (backing.h ops).  The store belongs to the test; ncache_open
 *    takes a handle, and the handle's close frees only the handle, so the
 *    bytes outlive ncache_close and can be reopened by a new export, like
 *    a real disk outlives the server.  By default every completed write
 *    is kept: a crash of the server process (or of the cache device)
 *    never loses a backing write, so flush and FUA are no-ops.  In
 *    VOLATILE mode (test_store_set_volatile) the store is a disk with a
 *    write cache: completed writes, zeroes and trims are visible at once
 *    but durable only after a flush (or at once with BACKING_FUA), and
 *    test_store_crash (a power loss) settles every sector changed since
 *    the last flush to its durable content or its new one.  A power hook
 *    (test_store_set_power_fn) lets a test cut the store's power at the
 *    same moment as the cache device's: from then on every request fails
 *    with -EIO and changes nothing.  can_trim, can_zero and can_fast_zero
 *    are true; trim and zero store zeros; extents report one data extent
 *    (a driver without allocation information).
 *
 * 3. The per-sector crash model (struct test_model): what each 512-byte
 *    sector of an export may read after a crash, given the sequence of
 *    operations and which of them were acknowledged.  Values are ids:
 *    TEST_VALUE_INIT (the initial backing content), TEST_VALUE_ZERO, and
 *    TEST_VALUE_FIRST_OP + op index for the data a write op put there.
 *    Every sector of every value has a distinct, decodable pattern
 *    (test_sector_fill / test_sector_decode), so a misplaced or stale
 *    sector names the op and the sector it came from.  The rules are
 *    written out in test-sector-model.c; test-crash.h's top comment is the
 *    prose version of the promise they encode.
 *
 * Threads: the store is thread-safe (one rwlock).  A PRNG and a model
 * belong to one thread each.
 * Not here: the workloads, the comparison of byte-exact models
 * (test-model-*.c), the crash sweep (test-crash.h).
 */
#ifndef NBDCACHE_TEST_HELPERS_H
#define NBDCACHE_TEST_HELPERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compiler.h"

struct backing;
struct ncache_export;

/* ---- 1. PRNG, seeds, environment, log capture: the test kit ---- */

#include "testkit.h"

/* ---- 2. the surviving memory store ---- */

struct test_store;

/* A zeroed store of size_bytes, identified to the engine by `uri`
 * (the engine binds an export to its backing URI and size).
 */
int test_store_create (uint64_t size_bytes, const char *uri,
                       struct test_store **out);
/* NULL is a no-op.  No handle may be open. */
void test_store_destroy (struct test_store *st);
/* A new backing handle over the store; ncache_open takes ownership of it.
 * Closing it frees the handle only.
 */
int test_store_open (struct test_store *st, struct backing **out);
/* Direct access to the bytes, for setting up and checking (no lock: only
 * while no export is open on the store).  In volatile mode, changes made
 * here are not tracked: call test_store_set_volatile (st, true) after
 * them to make them durable.
 */
unsigned char *test_store_data (struct test_store *st);
uint64_t test_store_size (const struct test_store *st);
unsigned test_store_nr_open (struct test_store *st);

/* Volatile mode on: the current bytes become the durable ones and from
 * now on a change (pwrite, zero, trim, of any size and alignment) is
 * durable only after a flush, or at once with BACKING_FUA (FUA makes the
 * whole 512-byte sectors it touches durable, which a crash may do
 * anyway).  Off: everything is durable, now and from now on.  Calling it
 * again with on = true re-snapshots (everything now is durable).
 * 0 or -ENOMEM (the store is unchanged).  Thread-safe.
 */
int test_store_set_volatile (struct test_store *st, bool on);
/* A power loss of the store, in volatile mode (else a no-op): every
 * 512-byte sector changed since the last flush either loses the change
 * (back to its durable content) or keeps its new content, whole.
 * tear_seed 0: every such sector loses it; otherwise each sector flips
 * its own coin, test_mix64 (tear_seed ^ sector * golden ratio), so a seed
 * reproduces the same outcome whatever the order of the writes.
 * Afterwards everything is durable.  No handle should be open.
 */
void test_store_crash (struct test_store *st, uint64_t tear_seed);
/* Sectors changed since the last flush (volatile mode; else 0). */
uint64_t test_store_nr_unflushed (struct test_store *st);
/* The power hook: while fn (opaque) returns false, every request of every
 * handle fails with -EIO before touching anything (a machine without
 * power).  fn runs in the engine's threads, with no store lock held; it
 * must be thread-safe and must not call the store.  NULL: always on.
 * Set or change it only while no handle is open.
 */
typedef bool (*test_store_power_fn) (void *opaque);
void test_store_set_power_fn (struct test_store *st, test_store_power_fn fn,
                              void *opaque);

struct test_store_counts {
  uint64_t preads, pwrites, fua_writes, flushes, trims, zeroes, extents;
};
void test_store_get_counts (struct test_store *st,
                            struct test_store_counts *counts);

/* What nbdcache:state says is dirty in [0, size_bytes) of an export:
 * DIRTY bytes (data) and DIRTY|ZERO bytes, and the first dirty extent.
 * 0 or the error of ncache_state_extents.
 */
struct test_dirty {
  uint64_t bytes, zero_bytes;
  uint64_t first, first_len;
  uint32_t first_flags;
};
int test_scan_dirty (struct ncache_export *nc, uint64_t size_bytes,
                     struct test_dirty *out);

/* ---- 3. the per-sector crash model ---- */

#define TEST_SECTOR_BYTES 512u

/* Value ids. */
#define TEST_VALUE_INIT     0u  /* the backing's initial content */
#define TEST_VALUE_ZERO     1u  /* all zeros */
#define TEST_VALUE_FIRST_OP 2u  /* TEST_VALUE_FIRST_OP + op index */
#define TEST_VALUE_GARBAGE  UINT32_MAX /* decode: not a value we made */

static inline uint32_t
test_value_of_op (uint32_t op_index)
{
  return TEST_VALUE_FIRST_OP + op_index;
}

/* Fill one sector with value `value` of sector `sector` (value must not
 * be TEST_VALUE_ZERO, which is plain zeros): 32 repetitions of the pair
 * (tagged value id, tagged sector number), little-endian.
 */
void test_sector_fill (void *buf, uint32_t value, uint64_t sector);
/* Decode a sector read back: TEST_VALUE_ZERO for zeros, the value id and
 * *sector_out for a pattern, TEST_VALUE_GARBAGE for anything else (torn,
 * mixed, foreign bytes).
 */
uint32_t test_sector_decode (const void *buf, uint64_t *sector_out);

/* What an op did, as the model needs it. */
enum test_op_kind {
  TEST_OP_WRITE = 0,
  TEST_OP_ZERO,
  TEST_OP_TRIM,
  TEST_OP_FLUSH,
  TEST_OP_READ,
  /* Workload-only kinds (background work on demand): the model ignores
   * them like reads — a drain or a GC pass changes no sector's value and
   * promises no durability beyond what flushes promise.
   */
  TEST_OP_DRAIN,
  TEST_OP_GC,
};

struct test_model;

/* A model of nr_sectors sectors, all TEST_VALUE_INIT and durable. */
int test_model_create (uint64_t nr_sectors, struct test_model **out);
/* NULL is a no-op. */
void test_model_destroy (struct test_model *m);
/* Back to the state after create, keeping the allocations. */
void test_model_reset (struct test_model *m);
uint64_t test_model_nr_sectors (const struct test_model *m);

/* Record op `value` (a value id; ignored for trim and flush) over sectors
 * [first, first + n).  acked: the op returned 0; fua: it carried
 * NCACHE_FUA.  A flush covers every sector (first and n are ignored).
 * Reads change nothing and need not be recorded.  Returns 0 or -ENOMEM.
 */
int test_model_apply (struct test_model *m, enum test_op_kind kind,
                      uint32_t value, uint64_t first, uint64_t n,
                      bool acked, bool fua);
/* A clean close (the device never died): everything that happened is
 * durable, exactly as after a successful flush.
 */
static inline int
test_model_clean_close (struct test_model *m)
{
  return test_model_apply (m, TEST_OP_FLUSH, 0, 0, 0, true, false);
}

/* Is `value` (decoded at `from_sector`) an acceptable read of `sector`?
 *  live = false: after a crash (durable, maybe, trims);
 *  live = true:  now, without a crash (the current candidates).
 * `written_here(opaque, value, sector)` answers "did the op with this
 * value id ever write this sector" — used for trimmed sectors, which may
 * read any value ever written there, zeros, or the initial content.
 */
typedef bool (*test_written_fn) (void *opaque, uint32_t value,
                                 uint64_t sector);
bool test_model_allows (struct test_model *m, uint64_t sector,
                        uint32_t value, uint64_t from_sector, bool live,
                        test_written_fn written_here, void *opaque);

/* For messages: a sector's candidates.  Live: `durable` is the current
 * candidate list and `maybe` is empty; after a crash: the guaranteed
 * values and the possible ones.  The pointers stay valid until the next
 * apply or reset.
 */
struct test_sector_view {
  const uint32_t *durable;
  size_t nr_durable;
  const uint32_t *maybe;
  size_t nr_maybe;
  bool trimmed;                 /* the wildcard of a trim applies */
};
void test_model_view (struct test_model *m, uint64_t sector, bool live,
                      struct test_sector_view *view);

/* Runs the model's own rules against hand-made histories, so the checker
 * itself can fail.  0, or -1 after printing which rule broke.
 */
int test_model_self_test (void);
/* The same for the store's volatile mode, crash and power hook. */
int test_store_self_test (void);

#endif /* NBDCACHE_TEST_HELPERS_H */
