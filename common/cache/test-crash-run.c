/* SPDX-License-Identifier: BSD-3-Clause */
/* test-crash-run.c — one run of the crash sweep: a fresh device, the
 * workload, the device's death (and maybe the store's power), the close,
 * the kill or power loss, the reopen and the checks.
 *
 * WHAT: run_point and what it needs: the power hook, opening the export,
 * running ops (with the drainer thread in writeback mode), the hang
 * watchdog.
 * WHY: one point is one experiment; the sweep (test-crash-sweep.c) only
 * picks points.
 * INVARIANTS: after run_point the device and the export are closed.
 * THREADS AND LOCKS: the drainer thread only calls ncache_drain; the
 * watchdog is SIGALRM.
 * FAILURE: -1 after a report (test-crash-check.c), else 0.
 * NOT HERE: choosing points (test-crash-sweep.c).
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
#include "format.h"
#include "gc.h"
#include "test-crash.h"
#include "test-helpers.h"
#include "test-stable.h"

bool
device_dead (struct run *run, struct cdev *cd)
{
  return run->point != 0 &&
    cdev_sim_nr_ops (cd) >= run->base_ops + run->point;
}

/* What the crash point fell on, for the reports: a write, a sync, or
 * nothing (the run made fewer writes and syncs than the point).
 */
const char *
point_kind (const struct run *run)
{
  const char *kind = run->death_kind;

  if (run->point == 0)
    return "no crash point: the clean run";
  if (run->total_ops == 0 && run->cd != NULL)   /* still running */
    kind = cdev_sim_death (run->cd);
  if (kind == NULL)
    return "the device has not died (yet)";
  return strcmp (kind, "sync") == 0 ? "the device died at a SYNC"
    : "the device died at a write";
}

/* The store's power hook (engine threads): off once the device died, on
 * the points that cut the power.  run->point, base_ops and cd do not
 * change while it is armed.
 */
static bool
store_powered (void *opaque)
{
  struct run *run = opaque;

  return !__atomic_load_n (&run->armed, __ATOMIC_ACQUIRE) ||
    !device_dead (run, run->cd);
}

/* Derived from the seed and the point, so --point replays it: 3 in 4. */
static bool
power_cut_for (const struct config *cfg, uint64_t point)
{
  return point != 0 &&
    (test_mix64 (cfg->seed ^ (point * 0x5bd1e995) ^ 0xc07) & 3) != 0;
}

/* Of those, one in three is a process kill rather than a power loss. */
static bool
killed_for (const struct config *cfg, uint64_t point)
{
  return power_cut_for (cfg, point) &&
    test_mix64 (cfg->seed ^ (point * 0x9e3779b9) ^ 0x4b111) % 3 == 0;
}

static int
open_all (struct run *run, struct cdev *cd, bool create,
          struct ncache_device **dev_out, struct ncache_export **nc_out)
{
  const struct ncache_device_tuning tuning = {
    .node_cache_bytes = NODE_CACHE_BYTES,
    .journal_delay_ms = run->cfg->journal_delay_ms,
    .format_bucket_bytes = run->cfg->bucket_bytes,
    .discard = true,
  };
  struct ncache_export_tuning et;
  struct ncache_config ncfg = {
    .name = "crash", .mode = run->mode, .readonly = false, .tuning = &et,
  };
  struct backing *b;
  int r;

  /* The background writer works all the time. */
  ncache_export_tuning_default (&et);
  et.writeback_percent = 0;
  et.writeback_update_ms = WB_UPDATE_MS;

  cdev_sim_hold (cd);           /* the engine takes this reference */
  r = ncache_device_open_cdev ("crash-cache", cd, create, &tuning, dev_out);
  if (r < 0)
    return r;
  if ((r = test_store_open (run->store, &b)) < 0)
    goto err_dev;
  ncfg.device = *dev_out;
  if ((r = ncache_open (&ncfg, b, nc_out)) < 0)  /* owns b on every path */
    goto err_dev;
  return 0;

 err_dev:
  ncache_device_close (*dev_out);
  *dev_out = NULL;
  return r;
}

static int
run_op (struct run *run, struct ncache_export *nc, unsigned i)
{
  const struct op *op = &run->w->ops[i];
  struct ncache_device *dev = run->dev;

  switch (op->kind) {
  case TEST_OP_WRITE:
    fill_op (run, i, run->buf);
    return ncache_pwrite (nc, run->buf, op->count, op->offset, op->flags);
  case TEST_OP_ZERO:
    return ncache_zero (nc, op->count, op->offset, op->flags);
  case TEST_OP_TRIM:
    return ncache_trim (nc, op->count, op->offset, op->flags);
  case TEST_OP_FLUSH:
    return ncache_flush (nc, 0);
  case TEST_OP_READ:
    return ncache_pread (nc, run->buf, op->count, op->offset, 0);
  case TEST_OP_DRAIN:
    return ncache_drain (nc, NULL, NULL);
  case TEST_OP_GC:
    /* NULL until the GC thread is started at device open. */
    return dev->gc != NULL ? gc_run_once (dev->gc, op->flags != 0) : 0;
  }
  return -EINVAL;
}

/* A drain that returned 0 left the export clean, by the stats and by
 * nbdcache:state (only this thread writes).  false after a report.
 */
static bool
drain_left_clean (struct run *run, struct ncache_export *nc, unsigned i)
{
  struct ncache_stats st;
  struct test_dirty d;
  int r;

  ncache_get_stats (nc, &st);
  if ((r = test_scan_dirty (nc, run->cfg->export_bytes, &d)) < 0) {
    if (device_dead (run, run->cd))
      return true;              /* state reads the index: may fail now */
    fail_header (run, "nbdcache:state after drain op #%u failed: %s", i,
                 strerror (-r));
    return false;
  }
  if (st.dirty_bytes == 0 && st.dirty_zero_bytes == 0 && d.bytes == 0 &&
      d.zero_bytes == 0)
    return true;
  fail_header (run, "drain op #%u returned 0 but the export is not clean: "
               "the stats say %" PRIu64 " dirty byte(s) and %" PRIu64
               " dirty zero byte(s), nbdcache:state %" PRIu64 " and %"
               PRIu64 " (first dirty extent [%" PRIu64 ", +%" PRIu64 "))",
               i, st.dirty_bytes, st.dirty_zero_bytes, d.bytes, d.zero_bytes,
               d.first, d.first_len);
  return false;
}

/* ---- the drainer ----
 * The controller alone writes back slowly (its minimum rate, 64 KiB/s,
 * is a few blocks during a whole workload), so in writeback mode a
 * second thread keeps the background writer at full speed: ncache_drain
 * in a loop, a pause of cfg->drainer_ms between drains (a timed wait on
 * the stop condition, not a sleep), results ignored (they fail once the
 * device died).  Writeback batches then run concurrently with the
 * foreground ops, and crash points land inside them.
 */
struct drainer {
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  bool stop;                    /* under lock */
  bool running;
  struct ncache_export *nc;
  unsigned pause_ms;
  uint64_t drains, failed;      /* for the summary */
};

static void *
drainer_run (void *arg)
{
  struct drainer *d = arg;
  struct timespec until;

  pthread_mutex_lock (&d->lock);
  while (!d->stop) {
    pthread_mutex_unlock (&d->lock);
    if (ncache_drain (d->nc, NULL, NULL) < 0)
      d->failed++;
    d->drains++;
    clock_gettime (CLOCK_MONOTONIC, &until);
    until.tv_nsec += (long) d->pause_ms * 1000000;
    until.tv_sec += until.tv_nsec / 1000000000;
    until.tv_nsec %= 1000000000;
    pthread_mutex_lock (&d->lock);
    while (!d->stop &&
           pthread_cond_timedwait (&d->cond, &d->lock, &until) == 0)
      ;
  }
  pthread_mutex_unlock (&d->lock);
  return NULL;
}

static void
drainer_start (struct drainer *d, struct ncache_export *nc, unsigned pause_ms)
{
  pthread_condattr_t ca;

  memset (d, 0, sizeof *d);
  if (pause_ms == 0)
    return;
  d->nc = nc;
  d->pause_ms = pause_ms;
  pthread_mutex_init (&d->lock, NULL);
  pthread_condattr_init (&ca);
  pthread_condattr_setclock (&ca, CLOCK_MONOTONIC);
  pthread_cond_init (&d->cond, &ca);
  pthread_condattr_destroy (&ca);
  d->running = pthread_create (&d->thread, NULL, drainer_run, d) == 0;
  if (!d->running) {
    pthread_cond_destroy (&d->cond);
    pthread_mutex_destroy (&d->lock);
  }
}

static void
drainer_stop (struct drainer *d)
{
  if (!d->running)
    return;
  pthread_mutex_lock (&d->lock);
  d->stop = true;
  pthread_cond_signal (&d->cond);
  pthread_mutex_unlock (&d->lock);
  pthread_join (d->thread, NULL);
  pthread_cond_destroy (&d->cond);
  pthread_mutex_destroy (&d->lock);
  d->running = false;
}

/* Run the workload on an open export; the model follows each result. */
static void
run_workload (struct run *run, struct cdev *cd, struct ncache_export *nc)
{
  unsigned i, reported = 0, dead_since = 0;
  struct drainer drainer;

  drainer_start (&drainer, nc, run->mode == NCACHE_MODE_WRITEBACK ?
                 run->cfg->drainer_ms : 0);

  for (i = 0; i < run->w->nr_ops && !run->failed; i++) {
    const struct op *op = &run->w->ops[i];
    bool dead_before = device_dead (run, cd);
    int r = run_op (run, nc, i);
    bool dead_after = device_dead (run, cd);

    run->result[i] = r;
    run->executed = i + 1;
    if (dead_after && run->death_op < 0) {
      run->death_op = (int) i;
      dead_since = i;
    }
    if (r < 0 && run->first_failed < 0)
      run->first_failed = (int) i;
    if (r < 0 && !dead_after) {
      fail_header (run, "op #%u failed with %s while the cache device was "
                   "healthy", i, strerror (-r));
      break;
    }
    if (test_model_apply (run->model, op->kind,
                          test_value_of_op (i), op->offset / SECTOR,
                          op->count / SECTOR, r == 0,
                          (op->flags & NCACHE_FUA) != 0) < 0) {
      fail_header (run, "out of memory in the model");
      break;
    }
    if (op->kind == TEST_OP_READ && r == 0) {
      /* Quietly count first, so the header comes before the details. */
      unsigned quiet = MAX_BAD_SECTORS, bad;

      bad = check_read (run, run->buf, op->offset, op->count, true, &quiet);
      if (bad > 0) {
        fail_header (run, "read op #%u returned %u wrong sector(s) %s "
                     "(no crash yet: a live read)", i, bad,
                     dead_before ? "after the device died"
                     : "while the device was healthy");
        check_read (run, run->buf, op->offset, op->count, true, &reported);
        break;
      }
    }
    if (op->kind == TEST_OP_DRAIN && r == 0 && !drain_left_clean (run, nc, i))
      break;
    if (run->cfg->tail && run->death_op >= 0 &&
        i - dead_since >= run->cfg->tail)
      break;
  }
  drainer_stop (&drainer);
}

/* ---- the hang watchdog ----
 * An engine that never returns (a close waiting forever on a dead
 * device, a lost wake-up) would hang the sweep with no clue; SIGALRM
 * prints which point hung and exits.  The message is formatted before
 * the alarm is armed, so the handler only calls write and _exit.  The
 * one static in this file: a signal handler has no other way in.
 */
static char hang_msg[512];

static void
on_alarm (int sig)
{
  ssize_t ignored = write (STDERR_FILENO, hang_msg, strlen (hang_msg));

  (void) ignored;
  _exit (1);
}

static void
arm_watchdog (const struct run *run)
{
  unsigned secs = (unsigned) test_env_u64 ("NBDCACHE_CRASH_HANG_SECONDS",
                                           HANG_SECONDS);
  char replay[300];

  if (secs == 0)
    return;
  format_replay (run, replay, sizeof replay);
  snprintf (hang_msg, sizeof hang_msg,
            "\nFAIL: HANG: mode %s, seed %" PRIu64 ", crash point %" PRIu64
            ", tear seed %" PRIu64 ": no result after %u s\n  replay: %s\n",
            ncache_mode_name (run->mode), run->cfg->seed, run->point,
            run->tear, secs, replay);
  signal (SIGALRM, on_alarm);
  alarm (secs);
}

/* One point (or the clean run when run->point == 0).  0 = pass. */
int
run_point (struct run *run)
{
  struct cdev *cd = NULL;
  struct ncache_device *dev = NULL;
  struct ncache_export *nc = NULL;
  uint64_t end_ops;
  int r;

  arm_watchdog (run);
  run->failed = false;
  run->executed = 0;
  run->death_op = run->first_failed = -1;
  run->died = false;
  run->death_kind = NULL;
  run->base_ops = run->base_syncs = 0;
  run->workload_ops = run->total_ops = run->total_syncs = 0;
  run->power_cut = power_cut_for (run->cfg, run->point);
  run->killed = killed_for (run->cfg, run->point);
  run->store_tear = run->tear ? test_mix64 (run->tear ^ 0x570e) | 1 : 0;
  run->store_unflushed = 0;
  __atomic_store_n (&run->armed, false, __ATOMIC_RELEASE);
  test_model_reset (run->model);
  memcpy (test_store_data (run->store), run->initial, run->cfg->export_bytes);
  if ((r = test_store_set_volatile (run->store, true)) < 0) {
    fail_header (run, "test_store_set_volatile: %s", strerror (-r));
    goto out;
  }
  test_store_set_power_fn (run->store, run->power_cut ? store_powered : NULL,
                           run);
  test_log_clear ();

  run->cd = NULL;
  if ((r = cdev_sim_create (run->cfg->device_bytes, &cd)) < 0) {
    fail_header (run, "cdev_sim_create: %s", strerror (-r));
    goto out;
  }
  run->cd = cd;
  if (run->cfg->no_data_csum) {
    const struct nc_format_options o = {
      .bucket_bytes = run->cfg->bucket_bytes, .quiet = true,
      .no_data_checksums = true,
    };

    r = nc_format (cd, &o);
  }
  if (r < 0 || (r = open_all (run, cd, true, &dev, &nc)) < 0) {
    fail_header (run, "formatting and opening the fresh device failed: %s",
                 strerror (-r));
    goto out;
  }
  run->dev = dev;
  run->base_ops = cdev_sim_nr_ops (cd);
  run->base_syncs = cdev_sim_nr_syncs (cd);
  if (run->point)
    cdev_sim_fail_at_op (cd, run->base_ops + run->point);
  __atomic_store_n (&run->armed, true, __ATOMIC_RELEASE);

  run_workload (run, cd, nc);
  end_ops = cdev_sim_nr_ops (cd);
  run->workload_ops = end_ops - run->base_ops;
  ncache_close (nc);
  nc = NULL;
  run->dev = NULL;
  ncache_device_close (dev);
  dev = NULL;
  run->total_ops = cdev_sim_nr_ops (cd) - run->base_ops;
  run->total_syncs = cdev_sim_nr_syncs (cd) - run->base_syncs;
  run->died = device_dead (run, cd);
  run->death_kind = cdev_sim_death (cd);
  /* No handle is open now: the hook is off, before the counters reset. */
  __atomic_store_n (&run->armed, false, __ATOMIC_RELEASE);
  test_store_set_power_fn (run->store, NULL, NULL);
  if (run->failed)
    goto out;
  if (test_store_nr_open (run->store) != 0) {
    fail_header (run, "ncache_close did not close the backing handle");
    goto out;
  }
  if (!run->died && test_model_clean_close (run->model) < 0) {
    fail_header (run, "out of memory in the model");
    goto out;
  }

  /* One power loss for both: the cache device and the backing store; or
   * a process kill: both keep everything they were given.
   */
  run->store_unflushed = test_store_nr_unflushed (run->store);
  if (run->killed) {
    cdev_sim_kill (cd);
    if ((r = test_store_set_volatile (run->store, true)) < 0) {
      fail_header (run, "test_store_set_volatile: %s", strerror (-r));
      goto out;
    }
  }
  else {
    /* Half the torn points tear inside blocks too (512-byte sectors). */
    if (run->tear & 2)
      cdev_sim_crash_sectors (cd, run->tear);
    else
      cdev_sim_crash (cd, run->tear);
    test_store_crash (run->store, run->store_tear);
  }
  if ((r = open_all (run, cd, false, &dev, &nc)) < 0) {
    fail_header (run, "reopening the crashed device failed: %s "
                 "(a crash must never leave the cache unopenable)",
                 strerror (-r));
    goto out;
  }
  verify_after_crash (run, nc);
  if (!run->failed)
    verify_clean_in_backing (run, nc);
  if (!run->failed)
    verify_stable (run, nc);
  if (!run->failed)
    prove_usable (run, nc);

 out:
  if (run->failed)
    fail_footer (run);
  __atomic_store_n (&run->armed, false, __ATOMIC_RELEASE);
  run->dev = NULL;
  ncache_close (nc);
  ncache_device_close (dev);
  test_store_set_power_fn (run->store, NULL, NULL);
  cdev_close (cd);              /* our reference */
  run->cd = NULL;
  alarm (0);
  return run->failed ? -1 : 0;
}
