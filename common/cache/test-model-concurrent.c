/* SPDX-License-Identifier: BSD-3-Clause */
/* test-model-concurrent.c — the model test with threads: 4 threads on
 * disjoint regions, and 4 threads striped by 512-byte sector so every
 * 4 KiB block is written by all of them at once (a partial-block
 * read-modify-write must not lose a neighbour's write), in each cached
 * mode.
 * SEED: NBDCACHE_SEED (printed); see test-model-fx.h.
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

/* ---- concurrent variants ---- */

struct worker {
  struct ctx *c;
  pthread_t thread;
  unsigned id;
  bool striped;                 /* own sectors id, id+4, … of STRIPE_BYTES */
  uint64_t lo, hi;              /* own region [lo, hi) when not striped */
  unsigned nr_ops;
  struct test_rng rng;
  unsigned char *buf;
  bool *stop;                   /* shared; atomic */
  char msg[2048];               /* the failure, if any */
  bool failed;
};

static void
worker_fail (struct worker *wk, const char *fmt, ...)
  ATTRIBUTE_FORMAT_PRINTF (2, 3);

static void
worker_fail (struct worker *wk, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (wk->msg, sizeof wk->msg, fmt, ap);
  va_end (ap);
  wk->failed = true;
  __atomic_store_n (wk->stop, true, __ATOMIC_RELAXED);
}

/* Compare the bytes this worker owns in [off, off+count). */
static bool
worker_check (struct worker *wk, unsigned op, const unsigned char *got,
              uint64_t off, uint64_t count)
{
  const unsigned char *want = wk->c->model + off;
  uint64_t i;

  for (i = 0; i < count; i++) {
    uint64_t at = off + i;

    if (wk->striped && (at / 512) % NR_THREADS != wk->id)
      continue;
    if (got[i] != want[i]) {
      uint64_t w0 = at & ~UINT64_C (7);
      char gd[160] = "", wd[160] = "";

      if (w0 >= off && w0 + 8 <= off + count) {
        describe_word (got + (w0 - off), w0, gd, sizeof gd);
        describe_word (want + (w0 - off), w0, wd, sizeof wd);
      }
      worker_fail (wk, "thread %u op #%u: READ [%" PRIu64 ", +%" PRIu64
                   "): byte %" PRIu64 " is 0x%02x, expected 0x%02x "
                   "(word at %" PRIu64 ": expected %s; got %s)", wk->id, op,
                   off, count, at, got[i], want[i], w0, wd, gd);
      return false;
    }
  }
  return true;
}

static void *
worker_run (void *arg)
{
  struct worker *wk = arg;
  struct ctx *c = wk->c;
  unsigned op;
  int r;

  for (op = 1; op <= wk->nr_ops &&
         !__atomic_load_n (wk->stop, __ATOMIC_RELAXED); op++) {
    unsigned k = (unsigned) test_rng_below (&wk->rng, 100);
    /* Pattern ids: unique per thread and op. */
    uint32_t pid = (uint32_t) (op * NR_THREADS + wk->id + 1);
    uint64_t off, count;

    if (wk->striped) {
      uint64_t nr_own = STRIPE_BYTES / 512 / NR_THREADS;
      uint64_t s = test_rng_below (&wk->rng, nr_own) * NR_THREADS + wk->id;

      if (k < 50) {                             /* write my sector */
        off = s * 512;
        count = 512;
        fill_pattern (wk->buf, off, count, pid);
        r = ncache_pwrite (c->nc, wk->buf, count, off,
                           test_rng_chance (&wk->rng, 10) ? NCACHE_FUA : 0);
        if (r < 0) {
          worker_fail (wk, "thread %u op #%u: WRITE [%" PRIu64 ", +512) "
                       "failed: %s", wk->id, op, off, strerror (-r));
          break;
        }
        memcpy (c->model + off, wk->buf, count);
        continue;
      }
      /* Read the whole block (everyone's sectors), check mine. */
      off = ROUND_DOWN (s * 512, 4096);
      count = test_rng_chance (&wk->rng, 70) ? 4096 : 4 * 4096;
      count = MIN (count, STRIPE_BYTES - off);
    }
    else {
      count = MIN (pick_count (&wk->rng), (wk->hi - wk->lo) / 4);
      off = wk->lo + test_rng_below (&wk->rng, wk->hi - wk->lo - count + 1);
      if (k < 40) {
        fill_pattern (wk->buf, off, count, pid);
        r = ncache_pwrite (c->nc, wk->buf, count, off,
                           test_rng_chance (&wk->rng, 10) ? NCACHE_FUA : 0);
        if (r < 0) {
          worker_fail (wk, "thread %u op #%u: WRITE [%" PRIu64 ", +%" PRIu64
                       ") failed: %s", wk->id, op, off, count, strerror (-r));
          break;
        }
        memcpy (c->model + off, wk->buf, count);
        continue;
      }
      if (k < 45) {
        r = ncache_zero (c->nc, count, off, NCACHE_MAY_TRIM);
        if (r < 0) {
          worker_fail (wk, "thread %u op #%u: ZERO [%" PRIu64 ", +%" PRIu64
                       ") failed: %s", wk->id, op, off, count, strerror (-r));
          break;
        }
        memset (c->model + off, 0, count);
        continue;
      }
    }
    if (k >= 90) {
      if ((r = ncache_flush (c->nc, 0)) < 0) {
        worker_fail (wk, "thread %u op #%u: FLUSH failed: %s", wk->id, op,
                     strerror (-r));
        break;
      }
      continue;
    }
    if ((r = ncache_pread (c->nc, wk->buf, count, off, 0)) < 0) {
      worker_fail (wk, "thread %u op #%u: READ [%" PRIu64 ", +%" PRIu64
                   ") failed: %s", wk->id, op, off, count, strerror (-r));
      break;
    }
    if (!worker_check (wk, op, wk->buf, off, count))
      break;
  }
  return NULL;
}

static void
run_concurrent (void **state, bool striped)
{
  struct ctx *c = *state;
  struct worker wk[NR_THREADS];
  bool stop = false, failed = false;
  unsigned i;
  int r;

  if ((r = open_export (c, true)) < 0) {
    test_log_dump ("engine log");
    fail_msg ("mode %s: formatting and opening the export failed: %s",
              ncache_mode_name (c->mode), strerror (-r));
  }
  memset (wk, 0, sizeof wk);
  for (i = 0; i < NR_THREADS; i++) {
    wk[i].c = c;
    wk[i].id = i;
    wk[i].striped = striped;
    wk[i].lo = i * (EXPORT_BYTES / NR_THREADS);
    wk[i].hi = (i + 1) * (EXPORT_BYTES / NR_THREADS);
    /* Striped ops are small (one sector or a few blocks): do more. */
    wk[i].nr_ops = MAX (striped ? c->nr_ops / 2 : c->nr_ops / NR_THREADS,
                        10u);
    wk[i].stop = &stop;
    test_rng_seed (&wk[i].rng, test_mix64 (c->seed + 1000 * (i + 1) +
                                           (striped ? 77 : 0)));
    wk[i].buf = malloc (MAX_IO_BYTES);
    assert_non_null (wk[i].buf);
  }
  for (i = 0; i < NR_THREADS; i++)
    if ((r = pthread_create (&wk[i].thread, NULL, worker_run, &wk[i])) != 0)
      fail_msg ("pthread_create: %s", strerror (r));
  for (i = 0; i < NR_THREADS; i++)
    pthread_join (wk[i].thread, NULL);
  for (i = 0; i < NR_THREADS; i++) {
    if (wk[i].failed) {
      fprintf (stderr, "\nFAIL: %s, mode %s, seed %" PRIu64 "\n  %s\n",
               striped ? "striped sectors (every block shared by all threads)"
               : "disjoint regions", ncache_mode_name (c->mode), c->seed,
               wk[i].msg);
      failed = true;
    }
    free (wk[i].buf);
  }
  if (failed) {
    test_log_dump ("  engine log");
    fprintf (stderr, "  (in these tests \"op #N\" in a pattern is thread op "
             "* %u + thread + 1)\n", NR_THREADS);
    fprintf (stderr, "  replay (thread timing varies): NBDCACHE_SEED=%" PRIu64
             " NBDCACHE_MODEL_OPS=%u NBDCACHE_MODEL_FILTER=test_model_%s_%s"
             " ./test-model\n", c->seed, c->nr_ops,
             striped ? "striped" : "concurrent", ncache_mode_name (c->mode));
    fail_msg ("concurrent test failed: see above");
  }
  /* Everything, exactly, after a clean reopen. */
  c->op = 0;
  if (!reopen (c, true)) {
    fail_footer (c);
    fail_msg ("mode %s seed %" PRIu64 ": check after the threads: see above",
              ncache_mode_name (c->mode), c->seed);
  }
}

static void
test_model_concurrent_writeback (void **state)
{
  run_concurrent (state, false);
}

static void
test_model_concurrent_writethrough (void **state)
{
  run_concurrent (state, false);
}

static void
test_model_concurrent_writearound (void **state)
{
  run_concurrent (state, false);
}

static void
test_model_striped_writeback (void **state)
{
  run_concurrent (state, true);
}

static void
test_model_striped_writethrough (void **state)
{
  run_concurrent (state, true);
}

static void
test_model_striped_writearound (void **state)
{
  run_concurrent (state, true);
}

int
main (void)
{
  struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown (test_model_concurrent_writeback,
                                     setup_writeback, teardown),
    cmocka_unit_test_setup_teardown (test_model_concurrent_writethrough,
                                     setup_writethrough, teardown),
    cmocka_unit_test_setup_teardown (test_model_concurrent_writearound,
                                     setup_writearound, teardown),
    cmocka_unit_test_setup_teardown (test_model_striped_writeback,
                                     setup_writeback, teardown),
    cmocka_unit_test_setup_teardown (test_model_striped_writethrough,
                                     setup_writethrough, teardown),
    cmocka_unit_test_setup_teardown (test_model_striped_writearound,
                                     setup_writearound, teardown),
  };
  const char *filter = getenv ("NBDCACHE_MODEL_FILTER");
  struct params p;
  size_t i;

  p.seed = test_seed_from_env ("test-model-concurrent");
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
