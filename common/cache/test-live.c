/* SPDX-License-Identifier: BSD-3-Clause */
/* test-live.c — live settings of a running export: mode switches, detach,
 * attach, the tuning keys (live.c, cache.h "live settings").
 *
 * WHAT: through the public API on a simulated cache device and a memory
 * store (test-helpers).  Checks that:
 * - a mode switch applies to the requests after it: a write before a
 *   switch writeback -> writethrough stays dirty, one after it reaches
 *   the backing store at once; back in writeback a write is dirty again;
 *   the export table records the mode; writethrough -> writeback ->
 *   drain leaves the backing store equal to every acknowledged write;
 * - detach writes back the dirty data, then serves from the backing
 *   store with nothing cached; a write while detached goes to the backing
 *   store only, and after attach (cold) reads return it, never the data
 *   cached before the detach; with the backing store down, detach fails
 *   with -EIO and the export keeps its mode and its dirty data;
 * - the keys: unknown -ENOENT, fixed -ENOTSUP, bad values -EINVAL;
 *   sequential_cutoff and promote_min take effect live;
 * - concurrent: 4 threads of seeded random reads / writes / zeroes /
 *   flushes on their own regions, checked against a model, while the
 *   main thread switches between every mode, detaches and attaches;
 *   then a drain and the backing store byte for byte, and a reopen.
 * SEED: NBDCACHE_SEED (printed).  NBDCACHE_LIVE_OPS: ops per thread.
 * FAILURE: cmocka assertions; the workers record, the main thread fails.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backing.h"
#include "bucket.h"
#include "cache-internal.h"
#include "cache.h"
#include "cdev.h"
#include "test-helpers.h"

#define DEVICE_BYTES (32 * MIB)
#define EXPORT_BYTES (8 * MIB)
#define BUCKET_BYTES (256 * KIB)
#define NR_THREADS 4
#define MAX_IO_BYTES (64 * KIB)

struct ctx {
  struct cdev *cd;
  struct ncache_device *dev;
  struct test_store *store;
  struct ncache_export *nc;
  struct ncache_export_tuning tuning;
  enum ncache_mode mode;
  bool power_off;               /* atomic: the store fails every request */
  /* The next backing request blocks until released (atomics): armed ->
   * the request takes it (blocked) -> the test sets released.
   */
  bool block_armed, blocked, released;
  unsigned char *model;         /* EXPORT_BYTES */
  uint64_t seed;
  char msg[256];
};

static bool
store_power (void *opaque)
{
  struct ctx *c = opaque;

  if (__atomic_exchange_n (&c->block_armed, false, __ATOMIC_SEQ_CST)) {
    __atomic_store_n (&c->blocked, true, __ATOMIC_SEQ_CST);
    while (!__atomic_load_n (&c->released, __ATOMIC_SEQ_CST))
      sched_yield ();
  }
  return !__atomic_load_n (&c->power_off, __ATOMIC_RELAXED);
}

static int
open_export (struct ctx *c, bool create)
{
  const struct ncache_device_tuning dt = {
    .journal_delay_ms = 5, .format_bucket_bytes = BUCKET_BYTES,
  };
  struct ncache_config cfg = {
    .name = "live", .mode = c->mode, .tuning = &c->tuning,
  };
  struct backing *b = NULL;
  int r;

  if (create && (r = cdev_sim_create (DEVICE_BYTES, &c->cd)) < 0)
    return r;
  cdev_sim_hold (c->cd);
  if ((r = ncache_device_open_cdev ("live-cache", c->cd, create, &dt,
                                    &c->dev)) < 0)
    return r;
  cfg.device = c->dev;
  if ((r = test_store_open (c->store, &b)) < 0)
    return r;
  return ncache_open (&cfg, b, &c->nc);
}

static void
close_export (struct ctx *c)
{
  ncache_close (c->nc);
  c->nc = NULL;
  ncache_device_close (c->dev);
  c->dev = NULL;
}

static int
setup_with (void **state, bool writeback_thread)
{
  struct ctx *c = calloc (1, sizeof *c);
  unsigned char *data;
  uint64_t i;

  if (c == NULL)
    return -1;
  test_log_capture ();
  c->seed = test_seed_from_env ("test-live");
  c->mode = NCACHE_MODE_WRITEBACK;
  ncache_export_tuning_default (&c->tuning);
  c->tuning.writeback_off = !writeback_thread;
  c->tuning.writeback_update_ms = 10;
  c->tuning.sequential_cutoff_bytes = 0;
  c->model = malloc (EXPORT_BYTES);
  if (c->model == NULL ||
      test_store_create (EXPORT_BYTES, "memory:live", &c->store) < 0)
    return -1;
  data = test_store_data (c->store);
  for (i = 0; i < EXPORT_BYTES; i++)
    data[i] = (unsigned char) (i * 13 + (i >> 12));
  memcpy (c->model, data, EXPORT_BYTES);
  test_store_set_power_fn (c->store, store_power, c);
  if (open_export (c, true) < 0)
    return -1;
  *state = c;
  return 0;
}

static int
setup_quiet (void **state)
{
  return setup_with (state, false);
}

static int
setup_busy (void **state)
{
  return setup_with (state, true);
}

static int
teardown (void **state)
{
  struct ctx *c = *state;

  __atomic_store_n (&c->power_off, false, __ATOMIC_RELAXED);
  close_export (c);
  cdev_close (c->cd);
  test_store_destroy (c->store);
  free (c->model);
  free (c);
  return 0;
}

/* ---- helpers ---- */

static void
write_at (struct ctx *c, uint64_t off, uint64_t count, unsigned char v)
{
  unsigned char *buf = malloc (count);

  assert_non_null (buf);
  memset (buf, v, count);
  assert_int_equal (ncache_pwrite (c->nc, buf, count, off, 0), 0);
  memcpy (c->model + off, buf, count);
  free (buf);
}

static void
check_read (struct ctx *c, uint64_t off, uint64_t count)
{
  unsigned char *buf = malloc (count);

  assert_non_null (buf);
  assert_int_equal (ncache_pread (c->nc, buf, count, off, 0), 0);
  assert_memory_equal (buf, c->model + off, count);
  free (buf);
}

static bool
store_has (struct ctx *c, uint64_t off, uint64_t count)
{
  return memcmp (test_store_data (c->store) + off, c->model + off,
                 count) == 0;
}

/* The NCACHE_STATE_* flags of the first extent at off. */
static int
state_cb (void *opaque, uint64_t offset, uint64_t length, uint32_t flags)
{
  (void) offset;
  (void) length;
  *(uint32_t *) opaque = flags;
  return 1;
}

static uint32_t
state_at (struct ctx *c, uint64_t off)
{
  uint32_t flags = 0xffffffff;

  assert_int_equal (ncache_state_extents (c->nc, 4096, off, NCACHE_REQ_ONE,
                                          state_cb, &flags), 0);
  return flags;
}

static int
set (struct ctx *c, const char *key, const char *value)
{
  return ncache_export_set (c->nc, key, value, c->msg, sizeof c->msg);
}

/* The mode the cache device's export table records for the export. */
static uint8_t
table_mode (struct ctx *c)
{
  unsigned i;

  for (i = 0; i < NC_MAX_EXPORTS; i++)
    if (c->dev->sb.exports[i].id == c->nc->export_id)
      return c->dev->sb.exports[i].mode;
  return 0xff;
}

/* ---- mode switches ---- */

static void
test_live_mode_switch_before_after (void **state)
{
  struct ctx *c = *state;
  struct ncache_export_params p;

  write_at (c, 0, 64 * KIB, 0xa1);
  assert_true (state_at (c, 0) & NCACHE_STATE_DIRTY);
  assert_false (store_has (c, 0, 64 * KIB));

  assert_int_equal (set (c, "mode", "writethrough"), 0);
  ncache_export_get_params (c->nc, &p);
  assert_int_equal (p.mode, NCACHE_MODE_WRITETHROUGH);
  assert_false (p.detached);
  assert_int_equal (table_mode (c), NCACHE_MODE_WRITETHROUGH);

  /* The write before the switch is still dirty and reads back. */
  assert_true (state_at (c, 0) & NCACHE_STATE_DIRTY);
  check_read (c, 0, 64 * KIB);
  /* A write after it goes to the backing store, cached clean. */
  write_at (c, MIB, 64 * KIB, 0xb2);
  assert_true (store_has (c, MIB, 64 * KIB));
  assert_int_equal (state_at (c, MIB) & NCACHE_STATE_DIRTY, 0);

  assert_int_equal (set (c, "mode", "writearound"), 0);
  write_at (c, 2 * MIB, 64 * KIB, 0xc3);
  assert_true (store_has (c, 2 * MIB, 64 * KIB));
  assert_int_equal (state_at (c, 2 * MIB) & NCACHE_STATE_CACHED, 0);

  assert_int_equal (set (c, "mode", "writeback"), 0);
  assert_int_equal (table_mode (c), NCACHE_MODE_WRITEBACK);
  write_at (c, 3 * MIB, 64 * KIB, 0xd4);
  assert_true (state_at (c, 3 * MIB) & NCACHE_STATE_DIRTY);
  assert_false (store_has (c, 3 * MIB, 64 * KIB));

  /* Nothing acknowledged is lost: drained, the backing has it all. */
  assert_int_equal (ncache_drain (c->nc, NULL, NULL), 0);
  assert_memory_equal (test_store_data (c->store), c->model, EXPORT_BYTES);
  check_read (c, 0, EXPORT_BYTES);
}

/* writeback -> writethrough with the writeback thread running: the dirty
 * data goes back by itself; a reopen in the new mode reads every write.
 */
static void
test_live_writeback_to_writethrough (void **state)
{
  struct ctx *c = *state;
  struct ncache_stats st;
  unsigned i;

  for (i = 0; i < 64; i++)
    write_at (c, i * 96 * KIB, 24 * KIB, (unsigned char) (0x40 + i));
  assert_int_equal (set (c, "mode", "writethrough"), 0);
  for (i = 0; i < 16; i++)
    write_at (c, i * 200 * KIB + 4 * KIB, 8 * KIB, (unsigned char) (0x90 + i));
  assert_int_equal (ncache_drain (c->nc, NULL, NULL), 0);
  ncache_get_stats (c->nc, &st);
  assert_int_equal (st.dirty_bytes, 0);
  assert_memory_equal (test_store_data (c->store), c->model, EXPORT_BYTES);

  /* A restart serves the config's mode (writeback here) over the same
   * data.
   */
  close_export (c);
  assert_int_equal (open_export (c, false), 0);
  check_read (c, 0, EXPORT_BYTES);
}

/* ---- detach and attach ---- */

static void
test_live_detach_attach (void **state)
{
  struct ctx *c = *state;
  struct ncache_export_params p;
  struct ncache_stats st;

  write_at (c, 0, 256 * KIB, 0x11);            /* dirty in the cache */
  check_read (c, MIB, 256 * KIB);               /* clean, promoted */
  assert_true (state_at (c, MIB) & NCACHE_STATE_CACHED);

  assert_int_equal (ncache_export_detach (c->nc, NULL, NULL, c->msg,
                                          sizeof c->msg), 0);
  ncache_export_get_params (c->nc, &p);
  assert_int_equal (p.mode, NCACHE_MODE_NONE);
  assert_true (p.detached);
  assert_int_equal (p.attach_mode, NCACHE_MODE_WRITEBACK);
  assert_int_equal (table_mode (c), NCACHE_MODE_NONE);
  /* Written back, and nothing of the export is cached any more. */
  assert_true (store_has (c, 0, 256 * KIB));
  ncache_get_stats (c->nc, &st);
  assert_int_equal (st.dirty_bytes, 0);
  assert_int_equal (state_at (c, 0), 0);
  assert_int_equal (state_at (c, MIB), 0);
  assert_int_equal (bucket_export_dirty_blocks (c->dev->bs,
                                                c->nc->export_id), 0);

  /* Detached: writes go to the backing store only. */
  write_at (c, 0, 64 * KIB, 0x22);
  write_at (c, MIB, 64 * KIB, 0x33);
  assert_true (store_has (c, 0, 256 * KIB));
  assert_true (store_has (c, MIB, 256 * KIB));
  check_read (c, 0, 2 * MIB);
  assert_int_equal (ncache_flush (c->nc, 0), 0);
  /* Again: already detached is fine. */
  assert_int_equal (ncache_export_detach (c->nc, NULL, NULL, c->msg,
                                          sizeof c->msg), 0);

  /* Attach (cold): never the data cached before the detach. */
  assert_int_equal (ncache_export_attach (c->nc, NCACHE_MODE_NONE, c->msg,
                                          sizeof c->msg), 0);
  ncache_export_get_params (c->nc, &p);
  assert_int_equal (p.mode, NCACHE_MODE_WRITEBACK);
  assert_false (p.detached);
  assert_int_equal (table_mode (c), NCACHE_MODE_WRITEBACK);
  check_read (c, 0, 2 * MIB);
  assert_int_equal (ncache_export_attach (c->nc, NCACHE_MODE_NONE, c->msg,
                                          sizeof c->msg), -EALREADY);

  /* set mode=none is detach, a cached mode on a detached export attach. */
  write_at (c, 4 * MIB, 64 * KIB, 0x44);
  assert_int_equal (set (c, "mode", "none"), 0);
  assert_true (store_has (c, 4 * MIB, 64 * KIB));
  write_at (c, 4 * MIB, 4 * KIB, 0x55);
  assert_int_equal (set (c, "mode", "writethrough"), 0);
  ncache_export_get_params (c->nc, &p);
  assert_int_equal (p.mode, NCACHE_MODE_WRITETHROUGH);
  check_read (c, 0, EXPORT_BYTES);

  /* A reopen after all this reads the same. */
  close_export (c);
  assert_int_equal (open_export (c, false), 0);
  check_read (c, 0, EXPORT_BYTES);
}

/* With the backing store down the dirty data cannot go back: detach is
 * refused, the export keeps its mode and its data.
 */
static void
test_live_detach_refused_backing_down (void **state)
{
  struct ctx *c = *state;
  struct ncache_export_params p;
  int r;

  write_at (c, 0, 128 * KIB, 0x66);
  __atomic_store_n (&c->power_off, true, __ATOMIC_RELAXED);
  r = ncache_export_detach (c->nc, NULL, NULL, c->msg, sizeof c->msg);
  assert_int_equal (r, -EIO);
  assert_non_null (strstr (c->msg, "not detached"));
  ncache_export_get_params (c->nc, &p);
  assert_int_equal (p.mode, NCACHE_MODE_WRITEBACK);
  assert_false (p.detached);
  assert_int_equal (table_mode (c), NCACHE_MODE_WRITEBACK);
  assert_true (state_at (c, 0) & NCACHE_STATE_DIRTY);
  check_read (c, 0, 128 * KIB);                 /* from the cache */

  __atomic_store_n (&c->power_off, false, __ATOMIC_RELAXED);
  assert_int_equal (ncache_export_detach (c->nc, NULL, NULL, c->msg,
                                          sizeof c->msg), 0);
  assert_true (store_has (c, 0, 128 * KIB));
  check_read (c, 0, EXPORT_BYTES);
}

/* ---- a change waits for the requests in flight ---- */

struct bg_op {
  struct ctx *c;
  pthread_t thread;
  int (*fn) (struct bg_op *op);
  uint64_t off;
  unsigned char buf[512];
  int r;
  bool done;                    /* atomic */
};

static void *
bg_run (void *arg)
{
  struct bg_op *op = arg;

  op->r = op->fn (op);
  __atomic_store_n (&op->done, true, __ATOMIC_SEQ_CST);
  return NULL;
}

static void
bg_start (struct bg_op *op, struct ctx *c, int (*fn) (struct bg_op *))
{
  op->c = c;
  op->fn = fn;
  op->done = false;
  assert_int_equal (pthread_create (&op->thread, NULL, bg_run, op), 0);
}

static int
bg_write (struct bg_op *op)
{
  return ncache_pwrite (op->c->nc, op->buf, sizeof op->buf, op->off, 0);
}

static int
bg_detach (struct bg_op *op)
{
  return ncache_export_detach (op->c->nc, NULL, NULL, NULL, 0);
}

static int
bg_attach (struct bg_op *op)
{
  return ncache_export_attach (op->c->nc, NCACHE_MODE_WRITEBACK, NULL, 0);
}

/* Start a 512-byte write at off that blocks in its first backing request
 * (writeback: the read of its partial block; detached: the write).
 */
static void
start_blocked_write (struct ctx *c, struct bg_op *w, uint64_t off,
                     unsigned char v)
{
  __atomic_store_n (&c->released, false, __ATOMIC_SEQ_CST);
  __atomic_store_n (&c->blocked, false, __ATOMIC_SEQ_CST);
  __atomic_store_n (&c->block_armed, true, __ATOMIC_SEQ_CST);
  w->off = off;
  memset (w->buf, v, sizeof w->buf);
  bg_start (w, c, bg_write);
  while (!__atomic_load_n (&c->blocked, __ATOMIC_SEQ_CST))
    sched_yield ();
}

/* Until the change ch has finished, or waits for the gate. */
static void
until_change_waits (struct ctx *c, struct bg_op *ch)
{
  while (!__atomic_load_n (&ch->done, __ATOMIC_SEQ_CST) &&
         __atomic_load_n (&c->nc->live.waiting, __ATOMIC_SEQ_CST) == 0)
    sched_yield ();
}

/* A writeback-mode write in flight when the detach starts (blocked in the
 * read of its partial block) ends before the detach writes back: its
 * dirty data is not left behind in a cache that no longer serves.
 */
static void
test_live_detach_waits_for_inflight (void **state)
{
  struct ctx *c = *state;
  struct bg_op w, d;

  start_blocked_write (c, &w, 3 * MIB + 1024, 0x77);
  bg_start (&d, c, bg_detach);
  until_change_waits (c, &d);
  __atomic_store_n (&c->released, true, __ATOMIC_SEQ_CST);
  pthread_join (w.thread, NULL);
  pthread_join (d.thread, NULL);
  assert_int_equal (w.r, 0);
  assert_int_equal (d.r, 0);
  memcpy (c->model + w.off, w.buf, sizeof w.buf);
  check_read (c, 3 * MIB, 64 * KIB);
  assert_true (store_has (c, 0, EXPORT_BYTES));
}

/* A detached (straight to the backing) write in flight when the attach
 * starts ends before any read may promote: no stale clean key.
 */
static void
test_live_attach_waits_for_inflight (void **state)
{
  struct ctx *c = *state;
  struct bg_op w, a;
  unsigned char buf[4096];

  assert_int_equal (ncache_export_detach (c->nc, NULL, NULL, NULL, 0), 0);
  start_blocked_write (c, &w, 5 * MIB, 0x88);
  bg_start (&a, c, bg_attach);
  until_change_waits (c, &a);
  /* If the attach did not wait, this read promotes the old bytes. */
  if (__atomic_load_n (&a.done, __ATOMIC_SEQ_CST))
    assert_int_equal (ncache_pread (c->nc, buf, sizeof buf, 5 * MIB, 0), 0);
  __atomic_store_n (&c->released, true, __ATOMIC_SEQ_CST);
  pthread_join (w.thread, NULL);
  pthread_join (a.thread, NULL);
  assert_int_equal (w.r, 0);
  assert_int_equal (a.r, 0);
  memcpy (c->model + w.off, w.buf, sizeof w.buf);
  check_read (c, 5 * MIB, 64 * KIB);
  check_read (c, 5 * MIB, 64 * KIB);
}

/* ---- the keys ---- */

static void
test_live_keys (void **state)
{
  struct ctx *c = *state;
  struct ncache_export_params p;
  struct ncache_stats st0, st1;
  unsigned char buf[4096];
  unsigned i;

  assert_int_equal (set (c, "no_such_key", "1"), -ENOENT);
  assert_non_null (strstr (c->msg, "unknown key"));
  assert_int_equal (set (c, "cache", "other"), -ENOTSUP);
  assert_non_null (strstr (c->msg, "restart"));
  assert_int_equal (set (c, "mode", "fastest"), -EINVAL);
  assert_int_equal (set (c, "writeback_percent", "101"), -EINVAL);
  assert_int_equal (set (c, "promote_min", "12K"), -EINVAL);
  assert_int_equal (set (c, "promote_min", "1G"), -EINVAL);
  assert_int_equal (set (c, "flush_on_stop", "maybe"), -EINVAL);

  assert_int_equal (set (c, "writeback_percent", "25"), 0);
  assert_int_equal (set (c, "flush_on_stop", "yes"), 0);
  ncache_export_get_params (c->nc, &p);
  assert_int_equal (p.writeback_percent, 25);
  assert_true (p.flush_on_stop);

  /* sequential_cutoff: off at open; 64K now: a sequential stream of 16K
   * writes bypasses the cache from its fourth write on.
   */
  assert_int_equal (set (c, "sequential_cutoff", "64K"), 0);
  ncache_get_stats (c->nc, &st0);
  for (i = 0; i < 8; i++)
    write_at (c, 5 * MIB + i * 16 * KIB, 16 * KIB, (unsigned char) i);
  ncache_get_stats (c->nc, &st1);
  assert_true (st1.sequential_bypasses - st0.sequential_bypasses >= 4);
  assert_int_equal (set (c, "sequential_cutoff", "0"), 0);
  ncache_get_stats (c->nc, &st0);
  for (i = 0; i < 8; i++)
    write_at (c, 6 * MIB + i * 16 * KIB, 16 * KIB, (unsigned char) i);
  ncache_get_stats (c->nc, &st1);
  assert_int_equal (st1.sequential_bypasses, st0.sequential_bypasses);

  /* promote_min: a 4K miss promotes its aligned 64K block. */
  assert_int_equal (set (c, "promote_min", "64K"), 0);
  assert_int_equal (ncache_pread (c->nc, buf, sizeof buf, 7 * MIB + 8 * KIB,
                                  0), 0);
  assert_true (state_at (c, 7 * MIB) & NCACHE_STATE_CACHED);
  assert_true (state_at (c, 7 * MIB + 60 * KIB) & NCACHE_STATE_CACHED);
  ncache_export_get_params (c->nc, &p);
  assert_int_equal (p.promote_min_bytes, 64 * KIB);
  check_read (c, 0, EXPORT_BYTES);
}

/* An export without a cache device: only mode none. */
static void
test_live_no_device (void **state)
{
  struct ncache_config cfg = { .name = "plain", .mode = NCACHE_MODE_NONE };
  struct test_store *store;
  struct ncache_export *nc;
  struct backing *b;
  char msg[256];

  (void) state;
  assert_int_equal (test_store_create (MIB, "memory:plain", &store), 0);
  assert_int_equal (test_store_open (store, &b), 0);
  assert_int_equal (ncache_open (&cfg, b, &nc), 0);
  assert_int_equal (ncache_export_set (nc, "mode", "writeback", msg,
                                       sizeof msg), -EINVAL);
  assert_non_null (strstr (msg, "no cache device"));
  assert_int_equal (ncache_export_set (nc, "mode", "none", msg, sizeof msg),
                    0);
  assert_int_equal (ncache_export_set (nc, "sequential_cutoff", "1M", msg,
                                       sizeof msg), -EINVAL);
  assert_int_equal (ncache_export_detach (nc, NULL, NULL, msg, sizeof msg),
                    -EINVAL);
  ncache_close (nc);
  test_store_destroy (store);
}

/* ---- concurrent ---- */

struct worker {
  struct ctx *c;
  pthread_t thread;
  unsigned id;
  uint64_t lo, hi;
  unsigned nr_ops;
  struct test_rng rng;
  unsigned char *buf;
  unsigned *running;            /* atomic */
  char msg[512];
  bool failed;
};

static void *
worker_run (void *arg)
{
  struct worker *wk = arg;
  struct ctx *c = wk->c;
  unsigned op;
  int r = 0;

  for (op = 1; op <= wk->nr_ops && !wk->failed; op++) {
    unsigned k = (unsigned) test_rng_below (&wk->rng, 100);
    uint64_t count = test_rng_range (&wk->rng, 1, MAX_IO_BYTES);
    uint64_t off = wk->lo + test_rng_below (&wk->rng,
                                            wk->hi - wk->lo - count + 1);
    const char *what;

    if (test_rng_chance (&wk->rng, 50)) {       /* aligned, as most are */
      off = off / 4096 * 4096;
      count = (count + 4095) / 4096 * 4096;
      if (off + count > wk->hi)
        count = wk->hi - off;
    }
    if (k < 45) {
      what = "write";
      memset (wk->buf, (int) (op * NR_THREADS + wk->id) & 0xff, count);
      wk->buf[0] = (unsigned char) wk->id;
      r = ncache_pwrite (c->nc, wk->buf, count, off,
                         test_rng_chance (&wk->rng, 10) ? NCACHE_FUA : 0);
      if (r == 0)
        memcpy (c->model + off, wk->buf, count);
    }
    else if (k < 52) {
      what = "zero";
      r = ncache_zero (c->nc, count, off, test_rng_chance (&wk->rng, 50)
                       ? NCACHE_MAY_TRIM : 0);
      if (r == 0)
        memset (c->model + off, 0, count);
    }
    else if (k < 58) {
      what = "flush";
      r = ncache_flush (c->nc, 0);
    }
    else {
      what = "read";
      r = ncache_pread (c->nc, wk->buf, count, off, 0);
      if (r == 0 && memcmp (wk->buf, c->model + off, count) != 0) {
        uint64_t i = 0;

        while (wk->buf[i] == c->model[off + i])
          i++;
        snprintf (wk->msg, sizeof wk->msg, "thread %u op %u: read [%" PRIu64
                  ", +%" PRIu64 "): byte %" PRIu64 " is 0x%02x, expected "
                  "0x%02x", wk->id, op, off, count, off + i, wk->buf[i],
                  c->model[off + i]);
        wk->failed = true;
      }
    }
    if (r < 0) {
      snprintf (wk->msg, sizeof wk->msg, "thread %u op %u: %s [%" PRIu64
                ", +%" PRIu64 ") failed: %s", wk->id, op, what, off, count,
                strerror (-r));
      wk->failed = true;
    }
  }
  __atomic_sub_fetch (wk->running, 1, __ATOMIC_SEQ_CST);
  return NULL;
}

static void
test_live_concurrent_switch (void **state)
{
  static const char *const modes[] = {
    "writeback", "writethrough", "writearound", "none",
  };
  struct ctx *c = *state;
  struct worker wk[NR_THREADS];
  struct test_rng rng;
  unsigned running = NR_THREADS, i, switches = 0, detaches = 0;
  unsigned nr_ops = (unsigned) test_env_u64 ("NBDCACHE_LIVE_OPS", 3000);
  bool failed = false;
  int r;

  test_rng_seed (&rng, c->seed);
  memset (wk, 0, sizeof wk);
  for (i = 0; i < NR_THREADS; i++) {
    wk[i].c = c;
    wk[i].id = i;
    wk[i].lo = i * (EXPORT_BYTES / NR_THREADS);
    wk[i].hi = (i + 1) * (EXPORT_BYTES / NR_THREADS);
    wk[i].nr_ops = nr_ops;
    wk[i].running = &running;
    test_rng_seed (&wk[i].rng, test_mix64 (c->seed + 1000 * (i + 1)));
    wk[i].buf = malloc (MAX_IO_BYTES);
    assert_non_null (wk[i].buf);
  }
  for (i = 0; i < NR_THREADS; i++)
    assert_int_equal (pthread_create (&wk[i].thread, NULL, worker_run,
                                      &wk[i]), 0);
  /* Switch while the workers run: every mode, detach, attach. */
  while (__atomic_load_n (&running, __ATOMIC_SEQ_CST) > 0) {
    const char *m = modes[test_rng_below (&rng, ARRAY_SIZE (modes))];

    r = set (c, "mode", m);
    if (r != 0) {
      fprintf (stderr, "seed %" PRIu64 ": set mode=%s: %s (%s)\n", c->seed,
               m, strerror (-r), c->msg);
      failed = true;
      break;
    }
    switches++;
    detaches += strcmp (m, "none") == 0;
  }
  for (i = 0; i < NR_THREADS; i++)
    pthread_join (wk[i].thread, NULL);
  for (i = 0; i < NR_THREADS; i++) {
    if (wk[i].failed) {
      fprintf (stderr, "FAIL seed %" PRIu64 ": %s\n", c->seed, wk[i].msg);
      failed = true;
    }
    free (wk[i].buf);
  }
  fprintf (stderr, "seed %" PRIu64 ": %u mode switches (%u to none) during "
           "%u ops per thread\n", c->seed, switches, detaches, nr_ops);
  if (failed) {
    test_log_dump ("engine log");
    fail_msg ("concurrent switch failed: NBDCACHE_SEED=%" PRIu64, c->seed);
  }
  /* Everything acknowledged: after a drain the backing store, byte for
   * byte, and a reopen reads the same.
   */
  assert_int_equal (set (c, "mode", "writeback"), 0);
  check_read (c, 0, EXPORT_BYTES);
  assert_int_equal (ncache_drain (c->nc, NULL, NULL), 0);
  assert_memory_equal (test_store_data (c->store), c->model, EXPORT_BYTES);
  close_export (c);
  assert_int_equal (open_export (c, false), 0);
  check_read (c, 0, EXPORT_BYTES);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown (test_live_mode_switch_before_after,
                                     setup_quiet, teardown),
    cmocka_unit_test_setup_teardown (test_live_writeback_to_writethrough,
                                     setup_busy, teardown),
    cmocka_unit_test_setup_teardown (test_live_detach_attach,
                                     setup_quiet, teardown),
    cmocka_unit_test_setup_teardown (test_live_detach_refused_backing_down,
                                     setup_quiet, teardown),
    cmocka_unit_test_setup_teardown (test_live_detach_waits_for_inflight,
                                     setup_quiet, teardown),
    cmocka_unit_test_setup_teardown (test_live_attach_waits_for_inflight,
                                     setup_quiet, teardown),
    cmocka_unit_test_setup_teardown (test_live_keys, setup_quiet, teardown),
    cmocka_unit_test (test_live_no_device),
    cmocka_unit_test_setup_teardown (test_live_concurrent_switch,
                                     setup_busy, teardown),
  };

  return cmocka_run_group_tests (tests, NULL, NULL);
}
