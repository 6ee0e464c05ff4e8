/* SPDX-License-Identifier: BSD-3-Clause */
/* test-model-sequential.c — the model test, one thread: thousands of
 * random operations per mode (none, writeback, writethrough, writearound)
 * with clean and crash reopens, compared byte for byte with the model;
 * and a self-test that the checkers can fail.
 * SEED: NBDCACHE_SEED (printed); NBDCACHE_MODEL_OPS, _FILTER, _TRIM_STALE
 * as described in test-model-fx.h.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backing.h"
#include "cache.h"
#include "cache-internal.h"
#include "cdev.h"
#include "compiler.h"
#include "test-model-fx.h"

static void
run_model (void **state)
{
  struct ctx *c = *state;
  struct test_rng *rng = &c->rng;
  unsigned next_reopen;
  int r;

  if ((r = open_export (c, true)) < 0) {
    test_log_dump ("engine log");
    fail_msg ("mode %s: formatting and opening the export failed: %s",
              ncache_mode_name (c->mode), strerror (-r));
  }
  next_reopen = (unsigned) test_rng_range (rng, 200, 800);

  for (c->op = 1; c->op <= c->nr_ops; c->op++) {
    unsigned k = (unsigned) test_rng_below (rng, 100);
    uint64_t count = pick_count (rng), off = pick_offset (rng, count);
    uint32_t flags = 0;
    bool ok = true;

    if (c->op == next_reopen) {
      bool crash = c->mode != NCACHE_MODE_NONE && c->nr_reopens % 2 == 1;

      if (crash ? !crash_reopen (c, c->nr_crashes % 2 == 0)
          : !reopen (c, false)) {
        fail_footer (c);
        fail_msg ("mode %s seed %" PRIu64 ": see above",
                  ncache_mode_name (c->mode), c->seed);
      }
      next_reopen += (unsigned) test_rng_range (rng, 200, 800);
      continue;
    }
    if (k < 20)
      ok = do_read (c, off, count, "READ");
    else if (k < 26) {
      /* Re-read around a recent op. */
      const struct rec *p = last_rec (c);

      if (p != NULL && p->count > 0 && p->count <= MAX_IO_BYTES)
        ok = do_read (c, p->offset, p->count, "READ(again)");
      else
        ok = do_read (c, off, count, "READ");
    }
    else if (k < 52) {
      if (test_rng_chance (rng, 12))
        flags |= NCACHE_FUA;
      ok = do_write (c, off, count, flags);
    }
    else if (k < 60) {
      if (test_rng_chance (rng, 50))
        flags |= NCACHE_MAY_TRIM;
      if (test_rng_chance (rng, 10))
        flags |= NCACHE_FAST_ZERO;
      if (test_rng_chance (rng, 10))
        flags |= NCACHE_FUA;
      ok = do_zero (c, off, count, flags);
    }
    else if (k < 66) {
      if (test_rng_chance (rng, 10))
        flags |= NCACHE_FUA;
      ok = do_trim (c, off, count, flags);
    }
    else if (k < 72)
      ok = do_simple (c, "FLUSH", ncache_flush (c->nc, 0), 0, 0);
    else if (k < 73)
      ok = do_drain (c);
    else if (k < 74)
      ok = do_gc (c);
    else if (k < 80)
      ok = do_simple (c, "CACHE", ncache_cache (c->nc, count, off, 0),
                      off, count);
    else if (k < 88)
      ok = do_extents (c, off, count);
    else if (k < 89)
      ok = do_stream (c);
    else {
      /* Overwrite part of a recent write: partial-block overlaps. */
      const struct rec *p = last_rec (c);

      if (p != NULL && p->count > 1) {
        off = p->offset + test_rng_below (rng, p->count);
        count = MIN (count, EXPORT_BYTES - off);
      }
      ok = do_write (c, off, count, 0);
    }
    if (!ok) {
      fail_footer (c);
      fail_msg ("mode %s seed %" PRIu64 " op #%u: see above",
                ncache_mode_name (c->mode), c->seed, c->op);
    }
  }

  c->op = c->nr_ops + 1;
  if (!reopen (c, true)) {
    fail_footer (c);
    fail_msg ("mode %s seed %" PRIu64 ": final check: see above",
              ncache_mode_name (c->mode), c->seed);
  }
  {
    struct ncache_stats st;
    ncache_get_stats (c->nc, &st);
    print_message ("mode %s: %u ops, %u reopens (%u crashes); hits %" PRIu64 " misses %"
                   PRIu64 " bypasses %" PRIu64 " promotions %" PRIu64
                   " (since the last reopen); cutoff %" PRIu64 " KiB, "
                   "flush_on_stop %d; before it: %" PRIu64 " sequential "
                   "bypass(es), %" PRIu64 " byte(s) written back\n",
                   ncache_mode_name (c->mode), c->nr_ops, c->nr_reopens,
                   c->nr_crashes, st.hits, st.misses, st.bypasses, st.promotions,
                   c->tuning.sequential_cutoff_bytes / KIB,
                   c->tuning.flush_on_stop, c->last_seq_bypasses,
                   c->last_wb_bytes);
  }
}

static void
test_model_none (void **state)
{
  run_model (state);
}

static void
test_model_writeback (void **state)
{
  run_model (state);
}

static void
test_model_writethrough (void **state)
{
  run_model (state);
}

static void
test_model_writearound (void **state)
{
  run_model (state);
}

/* The checkers themselves must be able to fail. */
static void
test_model_checkers_fail (void **state)
{
  struct ctx *c = *state;
  unsigned char got[64];
  uint64_t off = 4096 + 3;

  c->out = fopen ("/dev/null", "w");
  assert_non_null (c->out);
  memcpy (got, c->model + off, sizeof got);
  assert_true (check_bytes (c, "self-test", got, off, sizeof got));
  got[10] ^= 1;                               /* a flipped bit */
  assert_false (check_bytes (c, "self-test", got, off, sizeof got));
  memcpy (got, c->model + off, sizeof got);
  set_trimmed (c, off, sizeof got, true);
  memset (got, 0, 8);                         /* trimmed: zero is fine */
  assert_true (check_bytes (c, "self-test", got, off, sizeof got));
  got[9] = (unsigned char) (c->model[off + 9] ^ 0x55); /* a third value */
  assert_false (check_bytes (c, "self-test", got, off, sizeof got));
  set_trimmed (c, off, sizeof got, false);
  memset (got, 0, 8);                         /* no longer trimmed */
  assert_false (check_bytes (c, "self-test", got, off, sizeof got));
  /* Misplaced data: the right op's bytes from 8 bytes further on. */
  memcpy (got, c->model + off + 8, sizeof got);
  assert_false (check_bytes (c, "self-test", got, off, sizeof got));

  /* Trimmed bytes reading as older data: only with TRIM_STALE, and only
   * data a logged write put there.
   */
  c->op = 5;
  record (c, "WRITE", off, sizeof got, 0, 0);
  fill_pattern (c->model + off, off, sizeof got, 6);     /* the model: op 6 */
  set_trimmed (c, off, sizeof got, true);
  fill_pattern (got, off, sizeof got, 5);                /* read: op 5 */
  c->trim_stale_ok = false;
  assert_false (check_bytes (c, "self-test", got, off, sizeof got));
  c->trim_stale_ok = true;
  assert_true (check_bytes (c, "self-test", got, off, sizeof got));
  fill_pattern (got, off, sizeof got, 7);                /* never written */
  assert_false (check_bytes (c, "self-test", got, off, sizeof got));
  c->trim_stale_ok = false;
  set_trimmed (c, off, sizeof got, false);

  /* Extents: a gap, an overrun, a false ZERO, a good answer. */
  c->stop_after = 0;
  c->called_after_stop = false;
  c->nr_ext = 2;
  c->ext[0].offset = 0; c->ext[0].length = 4096; c->ext[0].flags = 0;
  c->ext[1].offset = 8192; c->ext[1].length = 4096; c->ext[1].flags = 0;
  assert_false (check_extents (c, 0, 12288, 0));
  c->ext[1].offset = 4096; c->ext[1].length = 16384;
  assert_false (check_extents (c, 0, 12288, 0));
  c->ext[1].length = 8192;
  assert_true (check_extents (c, 0, 12288, 0));
  c->ext[1].flags = NCACHE_EXTENT_ZERO;       /* but the model has data */
  assert_false (check_extents (c, 0, 12288, 0));
  c->nr_ext = 1;
  assert_false (check_extents (c, 0, 12288, 0));
  assert_true (check_extents (c, 0, 12288, NCACHE_REQ_ONE));
  fclose (c->out);
  c->out = stderr;
}

int
main (void)
{
  struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown (test_model_checkers_fail,
                                     setup_none, teardown),
    cmocka_unit_test_setup_teardown (test_model_none, setup_none, teardown),
    cmocka_unit_test_setup_teardown (test_model_writeback,
                                     setup_writeback, teardown),
    cmocka_unit_test_setup_teardown (test_model_writethrough,
                                     setup_writethrough, teardown),
    cmocka_unit_test_setup_teardown (test_model_writearound,
                                     setup_writearound, teardown),
  };
  const char *filter = getenv ("NBDCACHE_MODEL_FILTER");
  struct params p;
  size_t i;

  p.seed = test_seed_from_env ("test-model-sequential");
  p.nr_ops = (unsigned) test_env_u64 ("NBDCACHE_MODEL_OPS", 4000);
  if (p.nr_ops == 0)
    p.nr_ops = 1;
  p.trim_stale = getenv ("NBDCACHE_MODEL_TRIM_STALE") == NULL ? -1
    : test_env_u64 ("NBDCACHE_MODEL_TRIM_STALE", 0) != 0;
  /* Each setup reads the parameters from its initial state. */
  for (i = 0; i < ARRAY_SIZE (tests); i++)
    tests[i].initial_state = &p;
  test_log_capture ();
  if (filter != NULL && *filter != '\0')
    cmocka_set_test_filter (filter);
  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
