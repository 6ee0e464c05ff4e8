/* SPDX-License-Identifier: BSD-3-Clause */
/* test-promote-min.c — promote_min: a miss promotes the aligned block
 * around it (read-ahead for a slow backing).
 *
 * WHAT: through the public API (cache.h) on a simulated cache device and a
 * memory store (test-helpers) of a size that is not a multiple of the
 * block, counting the store's requests with its power hook.  Checks that:
 * - with promote_min = 64K, a 4K miss reads its aligned 64K block in one
 *   backing request, serves the right bytes, and the other 15 blocks of
 *   that 64K are then hits with no backing request;
 * - the widening stops at a cached block (a block written, dirty, inside
 *   the 64K keeps its newer data) and at the export's end (the last,
 *   partial 64K);
 * - with promote_min = 0 (the default) a 4K miss promotes 4K only.
 * FAILURE: cmocka assertions.
 */
#include <config.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backing.h"
#include "cache-internal.h"
#include "cache.h"
#include "cdev.h"
#include "test-helpers.h"

#define MIB (UINT64_C (1) << 20)
#define DEVICE_BYTES (64 * MIB)
/* 1 MiB and 40K: the last 64K block is partial. */
#define EXPORT_BYTES (MIB + 40 * KIB)

struct ctx {
  struct cdev *cd;
  struct ncache_device *dev;
  struct test_store *store;
  struct ncache_export *nc;
  unsigned requests;            /* backing requests (the power hook) */
};

static bool
count_power (void *opaque)
{
  struct ctx *c = opaque;

  __atomic_add_fetch (&c->requests, 1, __ATOMIC_RELAXED);
  return true;
}

static int
open_with (void **state, uint64_t promote_min)
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
  ncache_export_tuning_default (&tuning);
  tuning.writeback_off = true;
  tuning.sequential_cutoff_bytes = 0;
  tuning.promote_min_bytes = promote_min;
  if (cdev_sim_create (DEVICE_BYTES, &c->cd) < 0 ||
      ncache_device_open_cdev ("pm", c->cd, true, &dt, &c->dev) < 0 ||
      test_store_create (EXPORT_BYTES, "memory:pm", &c->store) < 0)
    return -1;
  data = test_store_data (c->store);
  for (i = 0; i < EXPORT_BYTES; i++)
    data[i] = (unsigned char) (i * 7 + (i >> 12));
  test_store_set_power_fn (c->store, count_power, c);
  {
    struct ncache_config cfg = {
      .name = "pm", .device = c->dev, .mode = NCACHE_MODE_WRITEBACK,
      .tuning = &tuning,
    };

    if (test_store_open (c->store, &b) < 0 || ncache_open (&cfg, b, &c->nc) < 0)
      return -1;
  }
  *state = c;
  return 0;
}

static int
setup_64k (void **state)
{
  return open_with (state, 64 * KIB);
}

static int
setup_off (void **state)
{
  return open_with (state, 0);
}

static int
teardown (void **state)
{
  struct ctx *c = *state;

  ncache_close (c->nc);
  ncache_device_close (c->dev);
  test_store_destroy (c->store);
  free (c);
  return 0;
}

static unsigned
requests (struct ctx *c)
{
  return __atomic_load_n (&c->requests, __ATOMIC_RELAXED);
}

/* Read 4K at off, check it against the store (or want), and return the
 * number of backing requests it took.
 */
static unsigned
read4k (struct ctx *c, uint64_t off, const unsigned char *want)
{
  unsigned char buf[4096];
  unsigned before = requests (c);

  assert_int_equal (ncache_pread (c->nc, buf, sizeof buf, off, 0), 0);
  assert_memory_equal (buf, want ? want
                       : test_store_data (c->store) + off, sizeof buf);
  return requests (c) - before;
}

static void
test_promote_min_block (void **state)
{
  struct ctx *c = *state;
  uint64_t off;

  /* A miss in the middle of [128K, 192K): one request for all of it. */
  assert_int_equal (read4k (c, 128 * KIB + 20 * KIB, NULL), 1);
  for (off = 128 * KIB; off < 192 * KIB; off += 4 * KIB)
    assert_int_equal (read4k (c, off, NULL), 0);
  /* Not beyond it. */
  assert_int_equal (read4k (c, 192 * KIB, NULL), 1);
  assert_int_equal (read4k (c, 124 * KIB, NULL), 1);
}

static void
test_promote_min_stops_at_cached (void **state)
{
  struct ctx *c = *state;
  unsigned char mine[4096];
  uint64_t off;

  memset (mine, 0x5a, sizeof mine);
  /* A dirty block inside [256K, 320K), then a miss before it. */
  assert_int_equal (ncache_pwrite (c->nc, mine, sizeof mine, 300 * KIB, 0),
                    0);
  assert_int_equal (read4k (c, 260 * KIB, NULL), 1);
  for (off = 256 * KIB; off < 300 * KIB; off += 4 * KIB)
    assert_int_equal (read4k (c, off, NULL), 0);
  assert_int_equal (read4k (c, 300 * KIB, mine), 0);
  /* After it: a separate gap of the same 64K, promoted by its own miss. */
  assert_int_equal (read4k (c, 316 * KIB, NULL), 1);
  for (off = 304 * KIB; off < 320 * KIB; off += 4 * KIB)
    assert_int_equal (read4k (c, off, NULL), 0);
}

static void
test_promote_min_export_end (void **state)
{
  struct ctx *c = *state;
  uint64_t off;

  /* The last 64K block is [1M, 1M + 40K): a miss in it promotes to the
   * end and no further.
   */
  assert_int_equal (read4k (c, MIB + 8 * KIB, NULL), 1);
  for (off = MIB; off < EXPORT_BYTES; off += 4 * KIB)
    assert_int_equal (read4k (c, off, NULL), 0);
}

static void
test_promote_min_off (void **state)
{
  struct ctx *c = *state;

  assert_int_equal (read4k (c, 128 * KIB + 20 * KIB, NULL), 1);
  assert_int_equal (read4k (c, 128 * KIB + 20 * KIB, NULL), 0);
  assert_int_equal (read4k (c, 128 * KIB + 24 * KIB, NULL), 1);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown (test_promote_min_block, setup_64k,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_promote_min_stops_at_cached,
                                     setup_64k, teardown),
    cmocka_unit_test_setup_teardown (test_promote_min_export_end, setup_64k,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_promote_min_off, setup_off,
                                     teardown),
  };

  return cmocka_run_group_tests (tests, NULL, NULL);
}
