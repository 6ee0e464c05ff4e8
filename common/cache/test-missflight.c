/* SPDX-License-Identifier: BSD-3-Clause */
/* test-missflight.c — concurrent misses of one block read it once.
 *
 * WHAT: through the public API (cache.h) on a simulated cache device and
 * a surviving memory store (test-helpers) whose power hook doubles as a
 * gate: the first backing read of a test blocks in it until the test
 * opens the gate, so a second reader of the same blocks surely arrives
 * while the first read is in flight.  Checks that:
 * - two readers of one block cause one backing read, and both get the
 *   data (the second waited for the first's promotion, then hit);
 * - a reader of a block inside a larger miss in flight waits for it too;
 * - when the flight's backing read fails, its waiter reads for itself.
 * No sleeps: the test waits on conditions (the gate's entries, the join
 * hook) with a generous deadline that only a broken engine reaches.
 * THREADS: the test thread plus two reader threads per case.
 * FAILURE: cmocka assertions.
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "backing.h"
#include "cache-internal.h"
#include "cache.h"
#include "cdev.h"
#include "missflight.h"
#include "test-gate.h"
#include "test-helpers.h"

#define MIB (UINT64_C (1) << 20)
#define DEVICE_BYTES (64 * MIB)
#define EXPORT_BYTES (4 * MIB)


struct ctx {
  struct cdev *cd;
  struct ncache_device *dev;
  struct test_store *store;
  struct ncache_export *nc;
  struct gate g;
};

static int
setup (void **state)
{
  const struct ncache_device_tuning dt = {
    .journal_delay_ms = 5, .format_bucket_bytes = 256 * KIB,
  };
  struct ncache_export_tuning tuning;
  struct ctx *c = calloc (1, sizeof *c);
  struct backing *b = NULL;
  unsigned char *data;
  uint64_t i;

  if (c == NULL)
    return -1;
  test_log_capture ();
  gate_init (&c->g);
  ncache_export_tuning_default (&tuning);
  tuning.writeback_off = true;
  tuning.sequential_cutoff_bytes = 0;
  if (cdev_sim_create (DEVICE_BYTES, &c->cd) < 0 ||
      ncache_device_open_cdev ("mf", c->cd, true, &dt, &c->dev) < 0 ||
      test_store_create (EXPORT_BYTES, "memory:mf", &c->store) < 0)
    return -1;
  data = test_store_data (c->store);
  for (i = 0; i < EXPORT_BYTES; i++)
    data[i] = (unsigned char) (i * 7 + (i >> 12));
  test_store_set_power_fn (c->store, gate_power, &c->g);
  {
    struct ncache_config cfg = {
      .name = "mf", .device = c->dev, .mode = NCACHE_MODE_WRITEBACK,
      .tuning = &tuning,
    };

    if (test_store_open (c->store, &b) < 0 || ncache_open (&cfg, b, &c->nc) < 0)
      return -1;
  }
  missflight_set_join_hook (c->nc->mf, gate_joined, &c->g);
  *state = c;
  return 0;
}

static int
teardown (void **state)
{
  struct ctx *c = *state;

  ncache_close (c->nc);
  ncache_device_close (c->dev);
  test_store_destroy (c->store);
  gate_destroy (&c->g);
  free (c);
  return 0;
}

struct reader {
  struct ncache_export *nc;
  uint64_t offset, count;
  unsigned char *buf;
  int r;
  pthread_t thread;
};

static void *
reader_main (void *arg)
{
  struct reader *rd = arg;

  rd->r = ncache_pread (rd->nc, rd->buf, rd->count, rd->offset, 0);
  return NULL;
}

static void
reader_start (struct ctx *c, struct reader *rd, uint64_t offset,
              uint64_t count)
{
  rd->nc = c->nc;
  rd->offset = offset;
  rd->count = count;
  rd->buf = malloc (count);
  assert_non_null (rd->buf);
  assert_int_equal (pthread_create (&rd->thread, NULL, reader_main, rd), 0);
}

/* Joins the reader; checks its result and, on success, its data. */
static void
reader_finish (struct ctx *c, struct reader *rd, int want)
{
  pthread_join (rd->thread, NULL);
  assert_int_equal (rd->r, want);
  if (want == 0)
    assert_memory_equal (rd->buf, test_store_data (c->store) + rd->offset,
                         rd->count);
  free (rd->buf);
}

static uint64_t
preads (struct ctx *c)
{
  struct test_store_counts n;

  test_store_get_counts (c->store, &n);
  return n.preads;
}

/* A first reader of [a_off, +a_len) stops at the gate; a second reads
 * [b_off, +b_len) and must wait for the first's flight.
 */
static void
race (struct ctx *c, uint64_t a_off, uint64_t a_len, uint64_t b_off,
      uint64_t b_len, bool fail_first, uint64_t want_preads)
{
  struct reader a, b;
  uint64_t before = preads (c);

  c->g.fail_first = fail_first;
  c->g.armed = true;
  reader_start (c, &a, a_off, a_len);
  gate_wait (&c->g, 1, 0);
  reader_start (c, &b, b_off, b_len);
  /* Fixed: b joins a's flight.  Broken: b reaches the gate itself. */
  gate_wait (&c->g, 2, 1);
  gate_open (&c->g);
  reader_finish (c, &a, fail_first ? -EIO : 0);
  reader_finish (c, &b, 0);
  assert_int_equal (c->g.joined, 1);
  assert_int_equal (preads (c) - before, want_preads);
}

static void
test_missflight_same_block_one_read (void **state)
{
  struct ctx *c = *state;

  race (c, 20 * 4 * KIB, 4 * KIB, 20 * 4 * KIB, 4 * KIB, false, 1);
  /* And it is cached now: a third read is a hit. */
  {
    struct reader r;

    c->g.armed = false;
    reader_start (c, &r, 20 * 4 * KIB, 4 * KIB);
    reader_finish (c, &r, 0);
  }
  assert_int_equal (missflight_nr_joined (c->nc->mf), 1);
}

static void
test_missflight_inside_larger_miss (void **state)
{
  struct ctx *c = *state;

  race (c, 64 * KIB, 64 * KIB, 96 * KIB, 4 * KIB, false, 1);
}

static void
test_missflight_failed_flight_waiter_reads (void **state)
{
  struct ctx *c = *state;

  /* a's read fails; b, after waiting, misses again and reads itself. */
  race (c, 256 * KIB, 4 * KIB, 256 * KIB, 4 * KIB, true, 2);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown (test_missflight_same_block_one_read,
                                     setup, teardown),
    cmocka_unit_test_setup_teardown (test_missflight_inside_larger_miss,
                                     setup, teardown),
    cmocka_unit_test_setup_teardown (test_missflight_failed_flight_waiter_reads,
                                     setup, teardown),
  };

  return cmocka_run_group_tests (tests, NULL, NULL);
}
