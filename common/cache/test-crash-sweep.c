/* SPDX-License-Identifier: BSD-3-Clause */
/* test-crash-sweep.c — the crash sweep over points, and main.
 *
 * WHAT: the clean run that counts the device writes and syncs (the ops a
 * crash point numbers), the choice of crash
 * points (first and last ALWAYS_FIRST, the rest stratified at random, or
 * all), the tear seed of each point, the TAP lines, the options.
 * WHY: test-crash.h says what is checked; this decides where.
 * INVARIANTS: points are sorted and distinct; NBDCACHE_CRASH_POINTS (or
 * --points) per mode, --all every point.
 * THREADS AND LOCKS: single-threaded.
 * FAILURE: exit 1 on a failed point or a usage error.
 * NOT HERE: one run (test-crash-run.c).
 */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backing.h"
#include "cache.h"
#include "cache-internal.h"
#include "cdev.h"
#include "compiler.h"
#include "gc.h"
#include "test-crash.h"
#include "test-helpers.h"
#include "test-stable.h"

/* ---- the sweep ---- */

static int
cmp_u64 (const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

  return x < y ? -1 : x > y;
}

/* The crash points for a run with `total` device ops (writes and syncs,
 * numbered together): all of them if
 * want == 0 or want >= total; else the first and last ALWAYS_FIRST (a
 * quarter of want each, if fewer) and the rest stratified at random in
 * between, one per stratum.  Sorted, distinct.
 */
static uint64_t *
choose_points (const struct config *cfg, enum ncache_mode mode,
               uint64_t total, size_t *n_out)
{
  struct test_rng rng;
  uint64_t *p, i, mid_lo, mid_hi, mid;
  size_t n = 0, k, want, ends;

  if (total == 0) {
    *n_out = 0;
    return calloc (1, sizeof (uint64_t));
  }
  want = cfg->points == 0 || cfg->points >= total ? total : cfg->points;
  p = calloc (want, sizeof *p);
  if (p == NULL)
    return NULL;
  if (want == total) {
    for (i = 0; i < total; i++)
      p[i] = i + 1;
    *n_out = total;
    return p;
  }
  /* want < total here, so total > 2 * ends and the middle is not empty. */
  ends = MIN ((size_t) ALWAYS_FIRST, want / 4);
  for (i = 1; i <= ends; i++)
    p[n++] = i;
  for (i = total - ends + 1; i <= total; i++)
    p[n++] = i;
  test_rng_seed (&rng, test_mix64 (cfg->seed ^ ((uint64_t) mode << 40)));
  mid_lo = ends + 1;
  mid_hi = total - ends;                  /* inclusive */
  mid = mid_hi - mid_lo + 1;
  for (k = 0; n < want; k++) {
    uint64_t strata = want - 2 * ends;
    uint64_t j = k % strata;
    uint64_t lo = mid_lo + j * mid / strata;
    uint64_t hi = mid_lo + (j + 1) * mid / strata - 1;

    p[n++] = test_rng_range (&rng, lo, MAX (lo, hi));
  }
  qsort (p, n, sizeof *p, cmp_u64);
  for (i = 0, k = 0; i < n; i++)
    if (k == 0 || p[i] != p[k - 1])
      p[k++] = p[i];
  *n_out = k;
  return p;
}

static uint64_t
tear_for (const struct config *cfg, uint64_t point, size_t index)
{
  return index % 2 ? test_mix64 (cfg->seed ^ (point * 0x9e37)) | 1 : 0;
}

/* 0 = pass. */
static int
sweep_mode (const struct config *cfg, const struct workload *w,
            enum ncache_mode mode, struct run *run, unsigned tap)
{
  uint64_t t0 = test_now_ms (), t_clean, total, *points;
  size_t n, i, checked = 0, torn = 0, failures = 0, at_sync = 0, missed = 0;

  run->mode = mode;

  if (cfg->one_point) {
    run->point = cfg->one_point;
    run->tear = cfg->one_tear_set ? cfg->one_tear : 0;
    if (run_point (run) < 0) {
      printf ("not ok %u - crash %s: point %" PRIu64 " (%s) tear %" PRIu64
              "\n", tap, ncache_mode_name (mode), run->point,
              point_kind (run), run->tear);
      return -1;
    }
    printf ("ok %u - crash %s: point %" PRIu64 " (%s) tear %" PRIu64 ", %"
            PRIu64 " ms\n", tap, ncache_mode_name (mode), run->point,
            point_kind (run), run->tear, test_now_ms () - t0);
    return 0;
  }

  /* The clean run: no fault, clean close, then a torn power loss: must
   * lose nothing.  It also gives the number of device writes and syncs.
   */
  run->point = 0;
  run->tear = test_mix64 (cfg->seed) | 1;
  if (run_point (run) < 0) {
    printf ("not ok %u - crash %s: the clean run failed\n", tap,
            ncache_mode_name (mode));
    return -1;
  }
  total = run->total_ops;
  t_clean = test_now_ms () - t0;
  if (!cfg->quiet)
    printf ("# %s: clean run: %u ops, %" PRIu64 " device writes and syncs "
            "(%" PRIu64 " syncs; %" PRIu64 " by the workload, %" PRIu64
            " by close), %" PRIu64 " ms\n", ncache_mode_name (mode),
            w->nr_ops, total, run->total_syncs, run->workload_ops,
            total - run->workload_ops, t_clean);

  points = choose_points (cfg, mode, total, &n);
  if (points == NULL) {
    printf ("not ok %u - crash %s: out of memory\n", tap,
            ncache_mode_name (mode));
    return -1;
  }
  for (i = 0; i < n; i++) {
    run->point = points[i];
    run->tear = tear_for (cfg, points[i], i);
    checked++;
    torn += run->tear != 0;
    if (run_point (run) < 0) {
      failures++;
      if (!cfg->keep_going)
        break;
    }
    if (run->death_kind == NULL)
      missed++;
    else if (strcmp (run->death_kind, "sync") == 0)
      at_sync++;
    if (!cfg->quiet && (i + 1) % 100 == 0)
      printf ("# %s: %zu/%zu points, %" PRIu64 " ms\n",
              ncache_mode_name (mode), i + 1, n, test_now_ms () - t0);
    fflush (stdout);
  }
  printf ("%s %u - crash %s: %zu point(s) checked (%zu torn; the device "
          "died at %zu sync(s), %zu write(s), not at all %zu time(s)) of %"
          PRIu64 " device writes and syncs, %u ops, %zu failure(s), %" PRIu64
          " ms\n", failures ? "not ok" : "ok", tap, ncache_mode_name (mode),
          checked, torn, at_sync, checked - at_sync - missed, missed, total,
          w->nr_ops, failures, test_now_ms () - t0);
  free (points);
  return failures ? -1 : 0;
}

static void
usage (FILE *f)
{
  fprintf (f,
           "usage: " PROGRAM " [--mode writeback|writethrough|writearound]\n"
           "         [--points K | --all] [--seed S] [--ops N] [--tail K]\n"
           "         [--point N [--tear T]] [--keep-going]\n"
           "         [--journal-delay-ms MS] [--drainer-ms MS] [--fua-heavy]\n"
           "         [--no-data-csum] [--quiet]\n"
           "  NBDCACHE_SEED sets the seed too; the seed is always printed.\n");
}

static bool
parse_num (const char *s, uint64_t *out)
{
  char *end;

  if (s == NULL || *s == '\0' || *s == '-')
    return false;
  errno = 0;
  *out = strtoull (s, &end, 0);
  return errno == 0 && *end == '\0';
}

int
main (int argc, char *argv[])
{
  enum { OPT_JDELAY = 256, OPT_KEEP, OPT_TEAR, OPT_DRAINER, OPT_FUA,
         OPT_NOCSUM };
  static const struct option longopts[] = {
    { "mode", required_argument, NULL, 'm' },
    { "points", required_argument, NULL, 'k' },
    { "all", no_argument, NULL, 'a' },
    { "seed", required_argument, NULL, 's' },
    { "ops", required_argument, NULL, 'o' },
    { "tail", required_argument, NULL, 't' },
    { "point", required_argument, NULL, 'p' },
    { "tear", required_argument, NULL, OPT_TEAR },
    { "keep-going", no_argument, NULL, OPT_KEEP },
    { "journal-delay-ms", required_argument, NULL, OPT_JDELAY },
    { "drainer-ms", required_argument, NULL, OPT_DRAINER },
    { "fua-heavy", no_argument, NULL, OPT_FUA },
    { "no-data-csum", no_argument, NULL, OPT_NOCSUM },
    { "quiet", no_argument, NULL, 'q' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  struct config cfg = {
    .nr_ops = 2000,
    .export_bytes = 32 * (uint64_t) MIB,
    .device_bytes = 8 * (uint64_t) MIB,
    .bucket_bytes = 64 * KIB,
    .journal_delay_ms = 10,
    .drainer_ms = DRAINER_MS,
    .points = 400,
  };
  enum ncache_mode modes[1] = { CRASH_MODE };
  unsigned nr_modes = 1, i, tap = 1;
  bool seed_set = false;
  struct workload w = { 0 };
  struct run run = { 0 };
  struct test_store *store = NULL;
  unsigned char *initial = NULL;
  uint64_t v;
  int c, status = 0;

  if (getenv ("NBDCACHE_CRASH_POINTS") != NULL) {
    if (!parse_num (getenv ("NBDCACHE_CRASH_POINTS"), &v) || v == 0 ||
        v > UINT32_MAX) {
      fprintf (stderr, PROGRAM ": NBDCACHE_CRASH_POINTS: not a number of "
               "points\n");
      return 1;
    }
    cfg.points = (unsigned) v;
  }
  while ((c = getopt_long (argc, argv, "h", longopts, NULL)) != -1) {
    switch (c) {
    case 'm':
      if (ncache_mode_from_string (optarg, &modes[0]) < 0 ||
          modes[0] == NCACHE_MODE_NONE) {
        fprintf (stderr, PROGRAM ": --mode %s: not a cache mode\n", optarg);
        return 1;
      }
      nr_modes = 1;
      break;
    case 'k':
      if (!parse_num (optarg, &v) || v == 0 || v > UINT32_MAX)
        goto bad_number;
      cfg.points = (unsigned) v;
      break;
    case 'a':
      cfg.points = 0;
      break;
    case 's':
      if (!parse_num (optarg, &cfg.seed))
        goto bad_number;
      seed_set = true;
      break;
    case 'o':
      if (!parse_num (optarg, &v) || v == 0 || v > 1000000)
        goto bad_number;
      cfg.nr_ops = (unsigned) v;
      break;
    case 't':
      if (!parse_num (optarg, &v) || v > UINT32_MAX)
        goto bad_number;
      cfg.tail = (unsigned) v;
      break;
    case 'p':
      if (!parse_num (optarg, &cfg.one_point) || cfg.one_point == 0)
        goto bad_number;
      break;
    case OPT_TEAR:
      if (!parse_num (optarg, &cfg.one_tear))
        goto bad_number;
      cfg.one_tear_set = true;
      break;
    case OPT_KEEP:
      cfg.keep_going = true;
      break;
    case OPT_DRAINER:
      if (!parse_num (optarg, &v) || v > 10000)
        goto bad_number;
      cfg.drainer_ms = (unsigned) v;
      break;
    case OPT_JDELAY:
      if (!parse_num (optarg, &v) || v == 0 || v > 3600000)
        goto bad_number;
      cfg.journal_delay_ms = (unsigned) v;
      break;
    case OPT_FUA:
      cfg.fua_heavy = true;
      break;
    case OPT_NOCSUM:
      cfg.no_data_csum = true;
      break;
    case 'q':
      cfg.quiet = true;
      break;
    case 'h':
      usage (stdout);
      return 0;
    default:
      usage (stderr);
      return 1;
    }
  }
  if (optind != argc) {
    usage (stderr);
    return 1;
  }
  if (seed_set)
    printf (PROGRAM ": seed %" PRIu64 " (from --seed)\n", cfg.seed);
  else
    cfg.seed = test_seed_from_env (PROGRAM);
  test_log_capture ();

  printf ("1..%u\n", nr_modes + 2);
  if (test_model_self_test () < 0) {
    printf ("not ok %u - model self-test\n", tap);
    return 1;
  }
  printf ("ok %u - model self-test\n", tap++);
  if (test_store_self_test () < 0) {
    printf ("not ok %u - volatile store self-test\n", tap);
    return 1;
  }
  printf ("ok %u - volatile store self-test\n", tap++);

  if (make_workload (&cfg, &w) < 0 ||
      (initial = make_initial (cfg.export_bytes)) == NULL ||
      test_store_create (cfg.export_bytes, "test-store:crash", &store) < 0 ||
      test_model_create (cfg.export_bytes / SECTOR, &run.model) < 0 ||
      (run.buf = malloc (IO_CHUNK_BYTES)) == NULL ||
      (run.served = malloc (cfg.export_bytes)) == NULL ||
      (run.result = calloc (cfg.nr_ops, sizeof *run.result)) == NULL) {
    fprintf (stderr, PROGRAM ": out of memory\n");
    status = 1;
    goto out;
  }
  run.cfg = &cfg;
  run.w = &w;
  run.store = store;
  run.initial = initial;

  for (i = 0; i < nr_modes; i++)
    if (sweep_mode (&cfg, &w, modes[i], &run, tap++) < 0)
      status = 1;

 out:
  free (run.buf);
  free (run.served);
  free (run.result);
  test_model_destroy (run.model);
  test_store_destroy (store);
  free (initial);
  free (w.ops);
  return status;

 bad_number:
  fprintf (stderr, PROGRAM ": bad number '%s'\n", optarg);
  return 1;
}
