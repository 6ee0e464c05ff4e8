/* SPDX-License-Identifier: BSD-3-Clause */
/* test-forget-crash.c — "nbdcache forget" (export-table.c) under a crash
 * at each of its writes, and over keys past the slot's recorded size.
 *
 * WHAT: a simulated cache device holds two exports over memory stores: A
 * (id 1) with clean data (written, then drained), dirty data and clean
 * data promoted by a read; B (id 2) with dirty data.  Forgetting A marks
 * its slot (a superblock write), drops its keys through the journal,
 * commits it, writes the index, then frees the slot (two superblock
 * writes).  The sweep cuts the device at each of those writes (and at the
 * writes of the close after it, and past the end: no fault), then loses
 * the power with every tear pattern cdev-sim has (blocks torn or not,
 * sectors torn inside blocks, a process kill that keeps every write),
 * reopens and checks, for forget with and without --discard-dirty (the
 * latter after A was drained, so it holds no dirty data):
 *   - the cache opens;
 *   - A's slot is there and A reads exactly what it read before (every
 *     key kept: the crash came before forget's first superblock write,
 *     which marks the slot, was durable); or A's slot is gone (forget
 *     finished, by the reopen if the crash came after the mark): then a
 *     new export C gets A's id and reads its own backing store, never a
 *     key of A.  Never the slot with part of its keys, or with none;
 *   - B reads its dirty data, always;
 *   - and the sweep saw both outcomes (the slot kept and the slot freed).
 * A slot whose mark is durable is never bound, and the next open finishes
 * its forget.  Keys past the size recorded in A's slot (the recorded size can lag:
 * the two superblock copies may disagree on it) are dropped too: C, given
 * the id, reads its own data there.
 * HOW: cdev-sim (fail at write N, crash / crash_sectors / kill), the
 * memory store of test-helpers; the public API plus the export table in
 * memory (cache-internal.h) for the lagging size.
 * SEED: the tear patterns; NBDCACHE_SEED replays a run.
 * THREADS AND LOCKS: single-threaded test; the engine's own threads (the
 * journal timer, GC) run underneath, so a point's write numbering may
 * shift a little between runs.  FAILURE: cmocka assertions with the
 * point, the tear and the variant.
 * NOT HERE: the command line (client-tests/test-cache-forget.sh), the
 * crash sweep of the data path (test-crash-*.c).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cache-internal.h"
#include "cache.h"
#include "cdev.h"
#include "super.h"
#include "test-helpers.h"

#define DEVICE_BYTES (32 * MIB)
#define EXPORT_BYTES (4 * MIB)
#define BUCKET_BYTES (256 * KIB)
#define TEARS 4                 /* crash, crash_sectors, kill, crash(0) */

static uint64_t seed;

/* What each store holds at the start, and what the exports write. */
enum {
  A_BACKING = 0x11, B_BACKING = 0x22, C_BACKING = 0x33,
  A_CLEAN = 0xa1, A_DIRTY = 0xa2, B_DIRTY = 0xb1,
};

struct ctx {
  struct cdev *cd;
  struct ncache_device *dev;
  struct test_store *a, *b, *c;
  unsigned char *want_a;        /* A as read before the forget */
  unsigned char *backing_a;     /* A's store (= A with no key) */
  unsigned char *buf;
};

static void
fill (struct test_store *st, int byte)
{
  memset (test_store_data (st), byte, EXPORT_BYTES);
}

static int
open_device (struct ctx *c, bool create)
{
  const struct ncache_device_tuning dt = {
    .journal_delay_ms = 5, .format_bucket_bytes = BUCKET_BYTES,
  };

  if (create) {
    if (cdev_sim_create (DEVICE_BYTES, &c->cd) < 0)
      return -ENOMEM;
  }
  cdev_sim_hold (c->cd);
  return ncache_device_open_cdev ("forget-cache", c->cd, create, &dt,
                                  &c->dev);
}

static int
open_export (struct ctx *c, struct test_store *st, const char *name,
             struct ncache_export **nc)
{
  struct ncache_export_tuning t;
  struct ncache_config cfg = {
    .name = name, .device = c->dev, .mode = NCACHE_MODE_WRITEBACK,
    .tuning = &t,
  };
  struct backing *b = NULL;
  int r;

  ncache_export_tuning_default (&t);
  t.writeback_off = true;       /* dirty data stays dirty */
  t.sequential_cutoff_bytes = 0;
  if ((r = test_store_open (st, &b)) < 0)
    return r;
  return ncache_open (&cfg, b, nc);
}

static void
write_pattern (struct ncache_export *nc, uint64_t off, uint64_t len,
               int byte, unsigned char *buf)
{
  memset (buf, byte, len);
  assert_int_equal (ncache_pwrite (nc, buf, len, off, 0), 0);
}

/* The export's id in the table, or 0 if its slot is gone. */
static uint16_t
slot_of (struct ctx *c, const char *uri)
{
  struct ncache_slot_info info;

  return ncache_device_find_export (c->dev, uri, &info) == 0 ? info.id : 0;
}

/* A fresh device: A with clean, dirty (unless drain_all) and promoted
 * data, B with dirty data; both closed, the device open.
 */
static void
setup_device (struct ctx *c, bool drain_all)
{
  struct ncache_export *nc;

  fill (c->a, A_BACKING);
  fill (c->b, B_BACKING);
  fill (c->c, C_BACKING);
  assert_int_equal (open_device (c, true), 0);

  assert_int_equal (open_export (c, c->a, "a", &nc), 0);
  write_pattern (nc, 0, MIB, A_CLEAN, c->buf);
  assert_int_equal (ncache_drain (nc, NULL, NULL), 0);
  write_pattern (nc, MIB, MIB, A_DIRTY, c->buf);
  assert_int_equal (ncache_pread (nc, c->buf, MIB, 2 * MIB, 0), 0);
  if (drain_all)
    assert_int_equal (ncache_drain (nc, NULL, NULL), 0);
  assert_int_equal (ncache_pread (nc, c->want_a, EXPORT_BYTES, 0, 0), 0);
  ncache_close (nc);
  memcpy (c->backing_a, test_store_data (c->a), EXPORT_BYTES);

  assert_int_equal (open_export (c, c->b, "b", &nc), 0);
  write_pattern (nc, 0, MIB, B_DIRTY, c->buf);
  ncache_close (nc);
  assert_int_equal (slot_of (c, "memory:a"), 1);
  assert_int_equal (slot_of (c, "memory:b"), 2);
}

static void
setup_stores (struct ctx *c)
{
  memset (c, 0, sizeof *c);
  assert_int_equal (test_store_create (EXPORT_BYTES, "memory:a", &c->a), 0);
  assert_int_equal (test_store_create (EXPORT_BYTES, "memory:b", &c->b), 0);
  assert_int_equal (test_store_create (EXPORT_BYTES, "memory:c", &c->c), 0);
  c->want_a = malloc (EXPORT_BYTES);
  c->backing_a = malloc (EXPORT_BYTES);
  c->buf = malloc (EXPORT_BYTES);
  assert_non_null (c->want_a);
  assert_non_null (c->backing_a);
  assert_non_null (c->buf);
}

static void
teardown_stores (struct ctx *c)
{
  test_store_destroy (c->a);
  test_store_destroy (c->b);
  test_store_destroy (c->c);
  free (c->want_a);
  free (c->backing_a);
  free (c->buf);
}

/* How a point ended for A. */
enum outcome { KEPT, FREED };

/* After the reopen: A kept with all its keys, or its slot free and C
 * given its id reads only C's data; B intact.
 */
static enum outcome
check_after (struct ctx *c, const char *what)
{
  struct ncache_export *nc;
  enum outcome o = KEPT;
  uint64_t i;

  if (slot_of (c, "memory:a") != 0) {
    assert_int_equal (open_export (c, c->a, "a", &nc), 0);
    assert_int_equal (ncache_pread (nc, c->buf, EXPORT_BYTES, 0, 0), 0);
    ncache_close (nc);
    if (memcmp (c->buf, c->want_a, EXPORT_BYTES) == 0)
      o = KEPT;
    else if (memcmp (c->buf, c->backing_a, EXPORT_BYTES) == 0)
      fail_msg ("%s: A's slot survived with none of its keys (its dirty "
                "data gone, the export still served)", what);
    else {
      for (i = 0; i < EXPORT_BYTES; i++)
        if (c->buf[i] != c->want_a[i])
          break;
      fail_msg ("%s: A's slot survived with part of its keys: byte %" PRIu64
                " reads %#x, was %#x, its backing has %#x", what, i,
                c->buf[i], c->want_a[i], c->backing_a[i]);
    }
  }
  else {
    o = FREED;
    assert_int_equal (open_export (c, c->c, "c", &nc), 0);
    if (slot_of (c, "memory:c") != 1)
      fail_msg ("%s: C got id %u, not the freed id 1", what,
                slot_of (c, "memory:c"));
    assert_int_equal (ncache_pread (nc, c->buf, EXPORT_BYTES, 0, 0), 0);
    ncache_close (nc);
    for (i = 0; i < EXPORT_BYTES; i++)
      if (c->buf[i] != C_BACKING)
        fail_msg ("%s: A's slot was freed but a key of it is left: C (same "
                  "id) reads %#x at byte %" PRIu64, what, c->buf[i], i);
  }

  assert_int_equal (open_export (c, c->b, "b", &nc), 0);
  assert_int_equal (ncache_pread (nc, c->buf, EXPORT_BYTES, 0, 0), 0);
  ncache_close (nc);
  for (i = 0; i < EXPORT_BYTES; i++)
    if (c->buf[i] != (i < MIB ? B_DIRTY : B_BACKING))
      fail_msg ("%s: export B reads %#x at byte %" PRIu64, what, c->buf[i],
                i);
  return o;
}

static void
power_loss (struct cdev *cd, unsigned tear, uint64_t tear_seed)
{
  switch (tear) {
  case 0: cdev_sim_crash (cd, tear_seed); break;
  case 1: cdev_sim_crash_sectors (cd, tear_seed); break;
  case 2: cdev_sim_kill (cd); break;
  default: cdev_sim_crash (cd, 0); break;
  }
}

static void
sweep (bool discard_dirty)
{
  const char *variant = discard_dirty ? "--discard-dirty" : "clean only";
  unsigned counts[2] = { 0, 0 };
  struct ctx c;
  uint64_t base, total, n;
  unsigned t;
  char what[160];

  setup_stores (&c);
  /* A clean run: how many writes forget and the close make. */
  setup_device (&c, !discard_dirty);
  base = cdev_sim_nr_writes (c.cd);
  assert_int_equal (ncache_device_forget_export (c.dev, 1, discard_dirty), 0);
  ncache_device_close (c.dev);
  total = cdev_sim_nr_writes (c.cd) - base;
  cdev_sim_crash (c.cd, 0);
  c.dev = NULL;
  assert_int_equal (open_device (&c, false), 0);
  assert_int_equal (check_after (&c, variant), FREED);
  ncache_device_close (c.dev);
  cdev_close (c.cd);
  assert_true (total >= 3);     /* the journal, then two superblocks */

  for (n = 1; n <= total + 1; n++)
    for (t = 0; t < TEARS; t++) {
      uint64_t tear_seed = seed ^ (n * 1000 + t + 1);
      enum outcome o;

      snprintf (what, sizeof what, "%s: device dead at write %" PRIu64
                " of %" PRIu64 ", tear pattern %u, seed %#" PRIx64, variant,
                n, total, t, tear_seed);
      setup_device (&c, !discard_dirty);
      base = cdev_sim_nr_writes (c.cd);
      cdev_sim_fail_at_write (c.cd, base + n);
      test_log_clear ();
      (void) ncache_device_forget_export (c.dev, 1, discard_dirty);
      ncache_device_close (c.dev);
      c.dev = NULL;
      power_loss (c.cd, t, tear_seed);
      if (open_device (&c, false) != 0) {
        test_log_dump ("the engine's last messages");
        fail_msg ("%s: the cache does not open", what);
      }
      o = check_after (&c, what);
      counts[o]++;
      ncache_device_close (c.dev);
      cdev_close (c.cd);
    }
  printf ("forget %s: %" PRIu64 " writes swept x %u tears: kept %u, "
          "freed %u\n", variant, total + 1, TEARS, counts[KEPT],
          counts[FREED]);
  /* Cut before the mark is durable the slot stays; after it, the forget
   * is finished (at the reopen if need be).
   */
  assert_true (counts[KEPT] > 0);
  assert_true (counts[FREED] > 0);
  teardown_stores (&c);
}

static void
test_forget_crash_discard_dirty (void **state)
{
  (void) state;
  sweep (true);
}

static void
test_forget_crash_clean (void **state)
{
  (void) state;
  sweep (false);
}

/* The slot's recorded size lags its keys (as when the newer superblock
 * copy, which recorded a grow, is lost): forget still drops every key of
 * the id.
 */
static void
test_forget_keys_past_recorded_size (void **state)
{
  struct ncache_export *nc;
  struct nc_sb_export *e;
  struct ctx c;
  uint64_t i;

  (void) state;
  setup_stores (&c);
  setup_device (&c, true);
  pthread_mutex_lock (&c.dev->lock);
  e = super_find_export (&c.dev->sb, "memory:a");
  assert_non_null (e);
  e->backing_bytes = MIB / 2;
  pthread_mutex_unlock (&c.dev->lock);
  assert_int_equal (ncache_device_forget_export (c.dev, 1, false), 0);
  assert_int_equal (slot_of (&c, "memory:a"), 0);
  assert_int_equal (open_export (&c, c.c, "c", &nc), 0);
  assert_int_equal (slot_of (&c, "memory:c"), 1);
  assert_int_equal (ncache_pread (nc, c.buf, EXPORT_BYTES, 0, 0), 0);
  ncache_close (nc);
  for (i = 0; i < EXPORT_BYTES; i++)
    if (c.buf[i] != C_BACKING)
      fail_msg ("a key of the forgotten export past its recorded size is "
                "left: the export given its id reads %#x at byte %" PRIu64,
                c.buf[i], i);
  ncache_device_close (c.dev);
  cdev_close (c.cd);
  teardown_stores (&c);
}

/* A slot marked as being forgotten (the mark durable, the rest not done:
 * a crash right after forget's first write) is never bound, and the next
 * open of the device finishes the forget.
 */
static void
test_forget_mark_finished_at_open (void **state)
{
  struct ncache_export *nc = NULL;
  struct nc_sb_export *e;
  struct ctx c;

  (void) state;
  setup_stores (&c);
  setup_device (&c, false);
  pthread_mutex_lock (&c.dev->lock);
  e = super_find_export (&c.dev->sb, "memory:a");
  assert_non_null (e);
  e->flags |= NC_SLOT_FORGETTING;
  assert_int_equal (super_write (c.cd, &c.dev->sb), 0);
  pthread_mutex_unlock (&c.dev->lock);

  test_log_clear ();
  assert_int_equal (open_export (&c, c.a, "a", &nc), -EBUSY);
  assert_non_null (strstr (test_log_last_error (), "is forgetting"));
  ncache_device_close (c.dev);
  cdev_sim_crash (c.cd, 0);

  test_log_clear ();
  assert_int_equal (open_device (&c, false), 0);
  assert_non_null (strstr (test_log_last_warning (), "was interrupted; "
                           "finishing it"));
  assert_int_equal (check_after (&c, "a marked slot reopened"), FREED);
  ncache_device_close (c.dev);
  cdev_close (c.cd);
  teardown_stores (&c);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_forget_keys_past_recorded_size),
    cmocka_unit_test (test_forget_mark_finished_at_open),
    cmocka_unit_test (test_forget_crash_clean),
    cmocka_unit_test (test_forget_crash_discard_dirty),
  };

  seed = test_seed_from_env ("test-forget-crash");
  test_log_capture ();
  return cmocka_run_group_tests (tests, NULL, NULL);
}
