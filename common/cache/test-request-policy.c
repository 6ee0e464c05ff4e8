/* SPDX-License-Identifier: BSD-3-Clause */
/* test-request-policy.c — the request paths' own decisions around the
 * background work.
 *
 * WHAT: through the public API (cache.h) on a simulated cache device and
 * a surviving memory store (test-helpers), checks what request.c and
 * cache.c do with the background modules:
 * - the sequential cutoff: a long sequential stream stops being promoted
 *   (reads) and goes around the cache (writes); random I/O never does;
 *   cutoff 0 disables it;
 * - backing trims are queued and merged, issued at a FLUSH (and never
 *   after a later write to the same range: a write supersedes them);
 * - nbdcache:state reports cached / dirty / zero per extent and merges
 *   neighbours with the same state; REQ_ONE gives one extent;
 * - FAST_ZERO: always fast in writeback, ENOTSUP at once in the other
 *   modes when the backing cannot zero fast (nothing changed);
 * - per-export dirty bytes: two exports on one device are counted apart;
 * - a journal commit flushes only the backing stores of the exports with
 *   keys relying on them: one export's failing backing flush (or failing
 *   writes) does not fail another export's FLUSH or FUA write;
 * - a failed backing flush another caller saw fails the next FLUSH of a
 *   writethrough export once;
 * - ncache_drain in mode none is a flush; on a read-only export with
 *   dirty data it is EROFS, and the data stays.
 * The writeback thread is off here (tuning.writeback_off) so that what
 * reaches the backing store is decided by the request paths alone.
 * THREADS: single-threaded test.  FAILURE: cmocka assertions.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backing.h"
#include "cache-internal.h"
#include "cache.h"
#include "cdev.h"
#include "faulty.h"
#include "test-helpers.h"

#define DEVICE_BYTES (64 * MIB)
#define EXPORT_BYTES (16 * MIB)

struct ctx {
  struct cdev *cd;
  struct ncache_device *dev;
  struct test_store *store, *store2;
  struct ncache_export *nc, *nc2;
  struct ncache_export_tuning tuning;
  unsigned char *buf;
};

static struct backing *
store_handle (struct test_store *st, bool fast_zero)
{
  struct backing *b = NULL;

  assert_int_equal (test_store_open (st, &b), 0);
  b->can_fast_zero = fast_zero;
  return b;
}

static struct ncache_export *
open_export (struct ctx *c, const char *name, struct test_store *st,
             enum ncache_mode mode, bool fast_zero)
{
  struct ncache_config cfg = {
    .name = name, .device = c->dev, .mode = mode, .tuning = &c->tuning,
  };
  struct ncache_export *nc = NULL;

  if (mode == NCACHE_MODE_NONE)
    cfg.device = NULL;
  assert_int_equal (ncache_open (&cfg, store_handle (st, fast_zero), &nc), 0);
  return nc;
}

static int
setup (void **state)
{
  const struct ncache_device_tuning dt = {
    .journal_delay_ms = 5, .format_bucket_bytes = 256 * KIB,
  };
  struct ctx *c = calloc (1, sizeof *c);

  if (c == NULL)
    return -1;
  test_log_capture ();
  ncache_export_tuning_default (&c->tuning);
  c->tuning.writeback_off = true;
  if (cdev_sim_create (DEVICE_BYTES, &c->cd) < 0 ||
      ncache_device_open_cdev ("bg", c->cd, true, &dt, &c->dev) < 0 ||
      test_store_create (EXPORT_BYTES, "memory:bg-one", &c->store) < 0 ||
      test_store_create (EXPORT_BYTES, "memory:bg-two", &c->store2) < 0 ||
      (c->buf = cdev_alloc_buffer (4 * MIB)) == NULL)
    return -1;
  *state = c;
  return 0;
}

static int
teardown (void **state)
{
  struct ctx *c = *state;

  ncache_close (c->nc);
  ncache_close (c->nc2);
  ncache_device_close (c->dev);
  test_store_destroy (c->store);
  test_store_destroy (c->store2);
  free (c->buf);
  free (c);
  return 0;
}

static void
fill (unsigned char *p, size_t n, unsigned seed)
{
  size_t i;

  for (i = 0; i < n; i++)
    p[i] = (unsigned char) (seed * 131 + i * 7 + (i >> 12));
}

static struct ncache_stats
stats_of (struct ncache_export *nc)
{
  struct ncache_stats st;

  ncache_get_stats (nc, &st);
  return st;
}

static struct test_store_counts
counts_of (struct test_store *st)
{
  struct test_store_counts n;

  test_store_get_counts (st, &n);
  return n;
}

/* ---- sequential cutoff ---- */

static void
test_cutoff_writes_go_around (void **state)
{
  struct ctx *c = *state;
  uint64_t before, off;
  unsigned i;

  c->tuning.sequential_cutoff_bytes = 256 * KIB;
  c->nc = open_export (c, "seq", c->store, NCACHE_MODE_WRITEBACK, true);
  before = counts_of (c->store).pwrites;
  /* 16 sequential writes of 64 KiB: the stream passes 256 KiB on the 4th
   * or 5th; the rest go around the cache to the backing store.
   */
  for (i = 0, off = 0; i < 16; i++, off += 64 * KIB) {
    fill (c->buf, 64 * KIB, i);
    assert_int_equal (ncache_pwrite (c->nc, c->buf, 64 * KIB, off, 0), 0);
  }
  assert_true (stats_of (c->nc).sequential_bypasses >= 10);
  assert_true (stats_of (c->nc).sequential_bypasses <= 13);
  assert_true (counts_of (c->store).pwrites - before >= 10);
  /* Everything reads back, whichever way it went. */
  for (i = 0, off = 0; i < 16; i++, off += 64 * KIB) {
    unsigned char want[64 * 1024];

    fill (want, sizeof want, i);
    assert_int_equal (ncache_pread (c->nc, c->buf, 64 * KIB, off, 0), 0);
    assert_memory_equal (c->buf, want, sizeof want);
  }
}

static void
test_cutoff_reads_not_promoted (void **state)
{
  struct ctx *c = *state;
  uint64_t off;
  unsigned i;

  c->tuning.sequential_cutoff_bytes = 256 * KIB;
  c->nc = open_export (c, "seqr", c->store, NCACHE_MODE_WRITEBACK, true);
  for (i = 0, off = 4 * MIB; i < 32; i++, off += 64 * KIB)
    assert_int_equal (ncache_pread (c->nc, c->buf, 64 * KIB, off, 0), 0);
  /* Only the head of the stream (before the cutoff) was promoted. */
  assert_true (stats_of (c->nc).promotions <= 8);
  assert_true (stats_of (c->nc).sequential_bypasses >= 27);
}

static void
test_cutoff_random_and_off (void **state)
{
  struct ctx *c = *state;
  struct test_rng rng;
  uint64_t seed = test_seed_from_env ("test-request-policy");
  unsigned i;

  test_rng_seed (&rng, seed);
  c->tuning.sequential_cutoff_bytes = 256 * KIB;
  c->nc = open_export (c, "rnd", c->store, NCACHE_MODE_WRITEBACK, true);
  /* 4 KiB-aligned offsets: 4096 places, so a request continues one of
   * the 128 streams about 3% of the time, and passing 256 KiB takes three
   * such continuations in a row.
   */
  for (i = 0; i < 200; i++) {
    uint64_t off = test_rng_below (&rng, (EXPORT_BYTES - 64 * KIB) / (4 * KIB))
      * 4 * KIB;
    assert_int_equal (ncache_pread (c->nc, c->buf, 64 * KIB, off, 0), 0);
    off = test_rng_below (&rng, (EXPORT_BYTES - 64 * KIB) / (4 * KIB))
      * 4 * KIB;
    fill (c->buf, 64 * KIB, i);
    assert_int_equal (ncache_pwrite (c->nc, c->buf, 64 * KIB, off, 0), 0);
  }
  /* Random 64 KiB requests rarely continue each other: a lucky pair
   * makes a stream of 128 KiB, never past 256 KiB.
   */
  assert_int_equal (stats_of (c->nc).sequential_bypasses, 0);

  /* Cutoff 0: even a long stream stays in the cache (a fresh export, so
   * nothing of it is cached yet).
   */
  ncache_close (c->nc);
  c->tuning.sequential_cutoff_bytes = 0;
  c->nc = open_export (c, "rnd0", c->store2, NCACHE_MODE_WRITEBACK, true);
  for (i = 0; i < 32; i++)
    assert_int_equal (ncache_pread (c->nc, c->buf, 64 * KIB,
                                    8 * MIB + i * 64 * KIB, 0), 0);
  assert_int_equal (stats_of (c->nc).sequential_bypasses, 0);
  assert_true (stats_of (c->nc).promotions >= 32);
}

/* ---- backing trims: queued, merged, issued at flush ---- */

static void
test_trims_batched_at_flush (void **state)
{
  struct ctx *c = *state;
  uint64_t before;
  unsigned i;

  c->nc = open_export (c, "trim", c->store, NCACHE_MODE_WRITEBACK, true);
  before = counts_of (c->store).trims;
  /* Ten separate 4 KiB trims and four adjacent ones (one extent). */
  for (i = 0; i < 10; i++)
    assert_int_equal (ncache_trim (c->nc, 4 * KIB, i * 64 * KIB, 0), 0);
  for (i = 0; i < 4; i++)
    assert_int_equal (ncache_trim (c->nc, 4 * KIB, 2 * MIB + i * 4 * KIB, 0),
                      0);
  assert_int_equal (counts_of (c->store).trims - before, 0);
  assert_int_equal (stats_of (c->nc).backing_trims_queued, 14);
  assert_int_equal (ncache_flush (c->nc, 0), 0);
  assert_int_equal (counts_of (c->store).trims - before, 11);
  assert_int_equal (stats_of (c->nc).backing_trim_extents, 11);
  assert_true (stats_of (c->nc).backing_trim_batches >= 1);

  /* FUA: at once. */
  assert_int_equal (ncache_trim (c->nc, 4 * KIB, 5 * MIB, NCACHE_FUA), 0);
  assert_int_equal (counts_of (c->store).trims - before, 12);
}

static void
test_write_supersedes_queued_trim (void **state)
{
  struct ctx *c = *state;
  unsigned char want[8192];

  /* writearound: the write goes to the backing store at once; a queued
   * trim issued after it would zero it (the test store's trim stores
   * zeros).
   */
  c->nc = open_export (c, "wat", c->store, NCACHE_MODE_WRITEAROUND, true);
  assert_int_equal (ncache_trim (c->nc, 64 * KIB, 1 * MIB, 0), 0);
  fill (want, sizeof want, 7);
  memcpy (c->buf, want, sizeof want);
  assert_int_equal (ncache_pwrite (c->nc, c->buf, sizeof want,
                                   1 * MIB + 8 * KIB, 0), 0);
  assert_int_equal (ncache_flush (c->nc, 0), 0);
  assert_memory_equal (test_store_data (c->store) + 1 * MIB + 8 * KIB, want,
                       sizeof want);
  /* The rest of the trimmed range was trimmed: two pieces were issued. */
  assert_int_equal (stats_of (c->nc).backing_trim_extents, 2);
}

/* ---- nbdcache:state ---- */

struct ext {
  uint64_t off, len;
  uint32_t flags;
};
struct ext_list {
  struct ext e[64];
  size_t n;
};

static int
collect (void *opaque, uint64_t offset, uint64_t length, uint32_t flags)
{
  struct ext_list *l = opaque;

  if (l->n == 64)
    return -ENOMEM;
  l->e[l->n++] = (struct ext) { offset, length, flags };
  return 0;
}

static void
test_state_extents (void **state)
{
  struct ctx *c = *state;
  struct ext_list l = { .n = 0 };

  c->tuning.sequential_cutoff_bytes = 0;
  c->nc = open_export (c, "state", c->store, NCACHE_MODE_WRITEBACK, true);
  fill (c->buf, 8 * KIB, 1);
  assert_int_equal (ncache_pwrite (c->nc, c->buf, 8 * KIB, 0, 0), 0);
  assert_int_equal (ncache_zero (c->nc, 16 * KIB, 64 * KIB, 0), 0);
  assert_int_equal (ncache_pread (c->nc, c->buf, 4 * KIB, 128 * KIB, 0), 0);

  assert_int_equal (ncache_state_extents (c->nc, 256 * KIB, 0, 0, collect,
                                          &l), 0);
  assert_int_equal (l.n, 6);
  assert_true (l.e[0].off == 0 && l.e[0].len == 8 * KIB);
  assert_int_equal (l.e[0].flags, NCACHE_STATE_CACHED | NCACHE_STATE_DIRTY);
  assert_true (l.e[1].off == 8 * KIB && l.e[1].len == 56 * KIB);
  assert_int_equal (l.e[1].flags, 0);
  assert_true (l.e[2].off == 64 * KIB && l.e[2].len == 16 * KIB);
  assert_int_equal (l.e[2].flags, NCACHE_STATE_CACHED | NCACHE_STATE_DIRTY
                    | NCACHE_STATE_ZERO);
  assert_true (l.e[3].off == 80 * KIB && l.e[3].len == 48 * KIB);
  assert_int_equal (l.e[3].flags, 0);
  assert_true (l.e[4].off == 128 * KIB && l.e[4].len == 4 * KIB);
  assert_int_equal (l.e[4].flags, NCACHE_STATE_CACHED);
  assert_true (l.e[5].off == 132 * KIB && l.e[5].len == 124 * KIB);

  /* Unaligned request: clipped exactly; REQ_ONE: one extent. */
  l.n = 0;
  assert_int_equal (ncache_state_extents (c->nc, 10000, 1000,
                                          NCACHE_REQ_ONE, collect, &l), 0);
  assert_int_equal (l.n, 1);
  assert_true (l.e[0].off == 1000 && l.e[0].len == 8 * KIB - 1000);
  /* Out of range: EINVAL. */
  assert_int_equal (ncache_state_extents (c->nc, 8192, EXPORT_BYTES - 4096,
                                          0, collect, &l), -EINVAL);
}

static void
test_state_extents_mode_none (void **state)
{
  struct ctx *c = *state;
  struct ext_list l = { .n = 0 };

  c->nc = open_export (c, "none", c->store, NCACHE_MODE_NONE, true);
  assert_int_equal (ncache_state_extents (c->nc, 1 * MIB, 0, 0, collect, &l),
                    0);
  assert_int_equal (l.n, 1);
  assert_true (l.e[0].len == 1 * MIB && l.e[0].flags == 0);
  assert_int_equal (ncache_drain (c->nc, NULL, NULL), 0);
}

/* ---- FAST_ZERO ---- */

static void
test_fast_zero_rules (void **state)
{
  struct ctx *c = *state;
  struct test_store_counts n0;

  /* Writeback: a ZERO key, fast even over a slow backing store. */
  c->nc = open_export (c, "fzwb", c->store, NCACHE_MODE_WRITEBACK, false);
  assert_int_equal (ncache_zero (c->nc, 1 * MIB, 0, NCACHE_FAST_ZERO), 0);
  ncache_close (c->nc);

  /* Writethrough over a store that cannot zero fast: ENOTSUP at once,
   * nothing sent to the backing store.
   */
  c->nc = open_export (c, "fzwt", c->store2, NCACHE_MODE_WRITETHROUGH, false);
  n0 = counts_of (c->store2);
  assert_int_equal (ncache_zero (c->nc, 1 * MIB, 0, NCACHE_FAST_ZERO),
                    -ENOTSUP);
  assert_int_equal (counts_of (c->store2).zeroes, n0.zeroes);
  assert_int_equal (counts_of (c->store2).pwrites, n0.pwrites);
  ncache_close (c->nc);

  /* Writethrough over a fast store: fine, unless an edge block needs data
   * written (not fast).
   */
  c->nc = open_export (c, "fzwt", c->store2, NCACHE_MODE_WRITETHROUGH, true);
  assert_int_equal (ncache_zero (c->nc, 1 * MIB, 0, NCACHE_FAST_ZERO), 0);
  assert_int_equal (ncache_zero (c->nc, 4096, 512, NCACHE_FAST_ZERO),
                    -ENOTSUP);
}

/* ---- one export's dead backing, another's commits ---- */

static void
test_dead_backing_spares_others (void **state)
{
  struct ctx *c = *state;
  struct ncache_config cfg = {
    .name = "two", .device = c->dev, .mode = NCACHE_MODE_WRITEAROUND,
    .tuning = &c->tuning,
  };
  struct backing *faulty = NULL;

  c->nc = open_export (c, "one", c->store, NCACHE_MODE_WRITETHROUGH, true);
  assert_int_equal (backing_faulty_wrap (store_handle (c->store2, true),
                                         &faulty), 0);
  assert_int_equal (ncache_open (&cfg, faulty, &c->nc2), 0);

  /* Export two: one backing write that worked, one that failed; then
   * its backing flushes fail.
   */
  fill (c->buf, 64 * KIB, 2);
  assert_int_equal (ncache_pwrite (c->nc2, c->buf, 64 * KIB, 0, 0), 0);
  backing_faulty_fail_writes (faulty, MIB, 64 * KIB);
  assert_int_equal (ncache_pwrite (c->nc2, c->buf, 64 * KIB, MIB, 0), -EIO);
  backing_faulty_fail_writes (faulty, 0, 0);
  backing_faulty_fail_flush (faulty, true);

  /* Export one's writethrough keys rely on its own backing only: its
   * FUA write and FLUSH commit without export two's flush.
   */
  fill (c->buf, 64 * KIB, 1);
  assert_int_equal (ncache_pwrite (c->nc, c->buf, 64 * KIB, 0,
                                   NCACHE_FUA), 0);
  assert_int_equal (ncache_pwrite (c->nc, c->buf, 64 * KIB, MIB, 0), 0);
  assert_int_equal (ncache_flush (c->nc, 0), 0);
  /* Export two's own FLUSH still reports its store's failure. */
  assert_int_equal (ncache_flush (c->nc2, 0), -EIO);
  backing_faulty_fail_flush (faulty, false);
  assert_int_equal (ncache_flush (c->nc2, 0), 0);
}

/* Writethrough: the backing flush after a write fails for another caller
 * (the journal's hook), and the store may have dropped the write.  The
 * next client FLUSH must not succeed as if nothing happened: EIO once.
 */
static void
test_flush_reports_failure_seen_by_hook (void **state)
{
  struct ctx *c = *state;
  struct ncache_config cfg = {
    .name = "one", .device = c->dev, .mode = NCACHE_MODE_WRITETHROUGH,
    .tuning = &c->tuning,
  };
  struct backing *faulty = NULL;

  assert_int_equal (backing_faulty_wrap (store_handle (c->store, true),
                                         &faulty), 0);
  assert_int_equal (ncache_open (&cfg, faulty, &c->nc), 0);
  fill (c->buf, 64 * KIB, 3);
  assert_int_equal (ncache_pwrite (c->nc, c->buf, 64 * KIB, 0, 0), 0);
  /* A backing write completed and not flushed yet (the write above may
   * have been flushed by its commit already).
   */
  request_backing_wrote (c->nc, 0);
  backing_faulty_fail_flush (faulty, true);
  /* What the journal's hook does before a commit. */
  assert_int_equal (request_backing_sync (c->nc), -EIO);
  backing_faulty_fail_flush (faulty, false);
  assert_int_equal (ncache_flush (c->nc, 0), -EIO);
  assert_int_equal (ncache_flush (c->nc, 0), 0);
}

/* ---- per-export dirty bytes ---- */

static void
test_dirty_per_export (void **state)
{
  struct ctx *c = *state;

  c->nc = open_export (c, "one", c->store, NCACHE_MODE_WRITEBACK, true);
  c->nc2 = open_export (c, "two", c->store2, NCACHE_MODE_WRITEBACK, true);
  fill (c->buf, 128 * KIB, 3);
  assert_int_equal (ncache_pwrite (c->nc, c->buf, 128 * KIB, 0, 0), 0);
  assert_int_equal (ncache_pwrite (c->nc2, c->buf, 8 * KIB, 0, 0), 0);
  assert_int_equal (ncache_zero (c->nc2, 1 * MIB, 1 * MIB, 0), 0);
  assert_int_equal (stats_of (c->nc).dirty_bytes, 128 * KIB);
  assert_int_equal (stats_of (c->nc).dirty_zero_bytes, 0);
  assert_int_equal (stats_of (c->nc2).dirty_bytes, 8 * KIB);
  assert_int_equal (stats_of (c->nc2).dirty_zero_bytes, 1 * MIB);
  /* Overwrite: still 128 KiB dirty, not 256. */
  assert_int_equal (ncache_pwrite (c->nc, c->buf, 128 * KIB, 0, 0), 0);
  assert_int_equal (stats_of (c->nc).dirty_bytes, 128 * KIB);
  /* Trim drops dirty data. */
  assert_int_equal (ncache_trim (c->nc, 64 * KIB, 0, 0), 0);
  assert_int_equal (stats_of (c->nc).dirty_bytes, 64 * KIB);
}

/* A read-only export cannot write back what an earlier run left dirty:
 * ncache_drain says EROFS and the data stays dirty (and readable).
 */
static void
test_drain_readonly (void **state)
{
  struct ctx *c = *state;
  struct ncache_config cfg = {
    .name = "ro", .device = c->dev, .mode = NCACHE_MODE_WRITEBACK,
    .readonly = true, .tuning = &c->tuning,
  };
  unsigned char want[8192];

  c->nc = open_export (c, "ro", c->store, NCACHE_MODE_WRITEBACK, true);
  fill (want, sizeof want, 9);
  memcpy (c->buf, want, sizeof want);
  assert_int_equal (ncache_pwrite (c->nc, c->buf, sizeof want, 0, 0), 0);
  ncache_close (c->nc);
  c->nc = NULL;
  assert_int_equal (ncache_open (&cfg, store_handle (c->store, true), &c->nc),
                    0);
  assert_int_equal (stats_of (c->nc).dirty_bytes, sizeof want);
  assert_int_equal (ncache_drain (c->nc, NULL, NULL), -EROFS);
  assert_int_equal (stats_of (c->nc).dirty_bytes, sizeof want);
  assert_int_equal (ncache_pread (c->nc, c->buf, sizeof want, 0, 0), 0);
  assert_memory_equal (c->buf, want, sizeof want);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown (test_cutoff_writes_go_around, setup,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_cutoff_reads_not_promoted, setup,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_cutoff_random_and_off, setup,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_trims_batched_at_flush, setup,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_write_supersedes_queued_trim, setup,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_state_extents, setup, teardown),
    cmocka_unit_test_setup_teardown (test_state_extents_mode_none, setup,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_fast_zero_rules, setup, teardown),
    cmocka_unit_test_setup_teardown (test_dead_backing_spares_others, setup,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_flush_reports_failure_seen_by_hook,
                                     setup, teardown),
    cmocka_unit_test_setup_teardown (test_dirty_per_export, setup, teardown),
    cmocka_unit_test_setup_teardown (test_drain_readonly, setup, teardown),
  };

  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
