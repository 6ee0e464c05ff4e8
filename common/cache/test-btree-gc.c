/* SPDX-License-Identifier: BSD-3-Clause */
/* test-btree-gc.c — the incremental GC pass (btree-walk.c).
 *
 * WHAT: stale keys dropped (and durable), the recount equals the live
 * counts while inserts, trims and replaces run between holds (driven by
 * the test hook btree_set_gc_hook, deterministic) and while a thread
 * inserts during passes of another, concurrent passes serialised, and GC
 * with a device that dies at a random write, a crash, and recovery that
 * finds no live key lost.
 * HOW: the fakes of test-btree-walk-fx.h.
 * SEED: randomised tests take NBDCACHE_SEED (printed always).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "testkit.h"

#include "bkey.h"
#include "btree.h"
#include "bucket.h"
#include "cdev.h"
#include "compiler.h"
#include "journal.h"
#include "log.h"
#include "ondisk.h"
#include "super.h"
#include "test-btree-walk-fx.h"

/* ---- GC ---- */

/* Random work over exports 1 .. NEXP: data (dirty or clean), ZERO,
 * DELETE; sometimes a replace of a key found by a scan.  Records what it
 * tried in post (if not NULL).  Returns the first error.
 */
struct post {
  struct nc_key k[4096];
  size_t n;
};

static int
random_op (struct ctx *c, uint64_t *rs, struct post *post)
{
  uint16_t x = (uint16_t) (1 + rng_below (rs, NEXP));
  unsigned what = (unsigned) rng_below (rs, 100);
  uint64_t s = rng_below (rs, NBLK - 70);
  uint32_t len = 1 + (uint32_t) rng_below (rs, rng_below (rs, 8) ? 6 : 60);
  uint32_t bkt = DATA_FIRST + (uint32_t) rng_below (rs, DATA_BUCKETS);
  struct nc_key k;

  if (what < 8) {
    struct btree_cursor cur = { x, s, false };
    struct nc_key old, nw;
    int n = btree_scan (c->bt, &cur, x, NULL, NULL, &old, 1);

    if (n <= 0)
      return n;
    nw = bkey_is_zero (&old) ? clean (old)
      : dkey (c, x, bkey_start (&old), old.end, bkt, 0, old.flags);
    if (post != NULL && post->n < 4096)
      post->k[post->n++] = nw;
    return btree_replace (c->bt, &old, &nw, 1, NULL, NULL);
  }
  if (what < 70)
    k = dkey (c, x, s, s + MIN (len, 64), bkt,
              (uint32_t) rng_below (rs, BUCKET_BLOCKS - MIN (len, 64) + 1),
              what < 40 ? NC_KEY_DIRTY : 0);
  else if (what < 85)
    k = dkey (c, x, s, s + len, 0, 0, NC_KEY_ZERO | NC_KEY_DIRTY);
  else
    k = dkey (c, x, s, s + len, 0, 0, NC_KEY_DELETE);
  if (post != NULL && post->n < 4096)
    post->k[post->n++] = k;
  return btree_insert (c->bt, &k, 1, NULL, NULL);
}

static void
fill (struct ctx *c, uint64_t *rs, unsigned n)
{
  unsigned i;

  for (i = 0; i < n; i++) {
    assert_int_equal (random_op (c, rs, NULL), 0);
    if (i % 256 == 255)
      assert_int_equal (ctx_commit (c), 0);
  }
}

static void
bump_gens (struct ctx *c, uint64_t *rs, unsigned n)
{
  unsigned i;

  for (i = 0; i < n; i++) {
    uint32_t b = DATA_FIRST + (uint32_t) rng_below (rs, DATA_BUCKETS);

    /* An eviction: the bucket's keys go stale, its counts go. */
    c->bs->gen[b]++;
    c->bs->live[b] = c->bs->dirty[b] = 0;
  }
}

static void
test_gc_stale (void **state)
{
  struct ctx c;
  struct walk_keys w = { .k = NULL };
  uint64_t rs = seed ^ 0x57a1e, stale = 99, before;
  struct nc_key root;
  uint16_t level;

  /* Empty tree: a complete pass. */
  ctx_init (&c, 6);
  assert_int_equal (btree_gc (c.bt, &stale), 0);
  assert_int_equal (stale, 0);
  assert_int_equal (c.bs->gc_complete, 1);
  fill (&c, &rs, 3000);
  assert_int_equal (btree_write_all (c.bt), 0);
  /* Leaves stay in memory: only the pass's own write makes them durable. */
  c.cache_bytes = 1 << 20;
  assert_int_equal (ctx_commit (&c), 0);
  root = c.j->e[c.j->nr - 1].root;
  level = c.j->e[c.j->nr - 1].level;
  btree_destroy (c.bt);
  ctx_make_btree (&c);
  assert_int_equal (btree_set_root (c.bt, &root, level), 0);
  bump_gens (&c, &rs, 40);
  walk_keys (&c, &w);
  before = w.stale;
  assert_true (before > 0);
  assert_int_equal (btree_gc (c.bt, &stale), 0);
  assert_int_equal (stale, before);
  assert_int_equal (c.bs->gc_complete, 2);
  assert_int_equal (c.bs->gc_aborted, 0);
  assert_true (c.bs->gc_cursors >= w.leaves);
  /* What it dropped is on disk: a fresh btree from the root (nothing
   * written in between) sees none.
   */
  assert_int_equal (ctx_commit (&c), 0);
  root = c.j->e[c.j->nr - 1].root;
  level = c.j->e[c.j->nr - 1].level;
  btree_destroy (c.bt);
  ctx_make_btree (&c);
  assert_int_equal (btree_set_root (c.bt, &root, level), 0);
  walk_keys (&c, &w);
  assert_int_equal (w.stale, 0);
  check_counts (&c);
  assert_int_equal (btree_sweep (c.bt), 0);
  assert_int_equal (c.bs->gc_complete, 3);
  ctx_free (&c);
}

struct hook_arg {
  struct ctx *c;
  uint64_t rs;
  unsigned calls, ops;
  struct post *post;
  bool commit;
  int r;
};

/* Between two holds of a pass: a burst of random work anywhere (before
 * and after the cursor), and sometimes a commit.
 */
static void
gc_hook (void *opaque)
{
  struct hook_arg *h = opaque;
  unsigned i, n = (unsigned) rng_below (&h->rs, 12);

  h->calls++;
  for (i = 0; i < n && h->r == 0; i++, h->ops++)
    h->r = random_op (h->c, &h->rs, h->post);
  if (h->commit && h->r == 0 && rng_below (&h->rs, 4) == 0)
    h->r = ctx_commit (h->c);
}

static void
test_gc_between_holds (void **state)
{
  struct ctx c;
  struct walk_keys w = { .k = NULL };
  struct hook_arg h = { .c = &c };
  uint64_t rs = seed ^ 0x401d;
  unsigned pass;

  ctx_init (&c, 6);
  h.rs = rs ^ 1;
  fill (&c, &rs, 3000);
  btree_set_gc_hook (c.bt, gc_hook, &h);
  for (pass = 0; pass < 4; pass++) {
    walk_keys (&c, &w);
    bump_gens (&c, &rs, 10);
    h.calls = 0;
    assert_int_equal (btree_gc (c.bt, NULL), 0);
    assert_int_equal (h.r, 0);
    /* Incremental: at most BTREE_GC_LEAVES_PER_HOLD leaves per hold. */
    assert_true (h.calls + 1 >= w.leaves / BTREE_GC_LEAVES_PER_HOLD);
    assert_int_equal (c.bs->gc_complete, pass + 1);
    assert_int_equal (c.bs->gc_mismatch, 0);
    assert_int_equal (c.bs->errors, 0);
    check_counts (&c);
  }
  print_message ("%u ops between holds\n", h.ops);
  btree_set_gc_hook (c.bt, NULL, NULL);
  ctx_free (&c);
}

/* ---- threads: GC passes while another thread works ---- */

struct gc_thread {
  struct ctx *c;
  unsigned passes;
  int r;
};

static void *
gc_thread (void *opaque)
{
  struct gc_thread *g = opaque;
  unsigned i;

  for (i = 0; i < g->passes && g->r == 0; i++)
    g->r = btree_gc (g->c->bt, NULL);
  return NULL;
}

/* In the first pause of a pass, start a second pass in a thread: it must
 * wait for the first (polled for up to 100 ms: it must not begin).
 */
struct serial_arg {
  struct ctx *c;
  struct gc_thread g;
  pthread_t t;
  bool started;
};

static void
serial_hook (void *opaque)
{
  struct serial_arg *a = opaque;
  uint64_t begins = __atomic_load_n (&a->c->bs->gc_begins, __ATOMIC_RELAXED);
  struct timespec t0, now;

  if (a->started)
    return;
  a->started = true;
  assert_int_equal (pthread_create (&a->t, NULL, gc_thread, &a->g), 0);
  clock_gettime (CLOCK_MONOTONIC, &t0);
  do {
    sched_yield ();
    assert_int_equal (__atomic_load_n (&a->c->bs->gc_begins,
                                       __ATOMIC_RELAXED), begins);
    clock_gettime (CLOCK_MONOTONIC, &now);
  } while ((now.tv_sec - t0.tv_sec) * 1000000000L
           + (now.tv_nsec - t0.tv_nsec) < 100000000L);
}

static void
test_gc_threads (void **state)
{
  struct ctx c;
  struct gc_thread g[2];
  pthread_t t[2];
  uint64_t rs = seed ^ 0x7ead;
  unsigned ops = 0, i;

  ctx_init (&c, 6);
  fill (&c, &rs, 2000);
  {
    struct serial_arg a = { .c = &c, .g = { .c = &c, .passes = 1 } };

    btree_set_gc_hook (c.bt, serial_hook, &a);
    assert_int_equal (btree_gc (c.bt, NULL), 0);
    assert_true (a.started);
    assert_int_equal (pthread_join (a.t, NULL), 0);
    assert_int_equal (a.g.r, 0);
    assert_int_equal (c.bs->errors, 0);
    assert_int_equal (c.bs->gc_complete, 2);
    btree_set_gc_hook (c.bt, NULL, NULL);
    c.bs->gc_complete = 0;
  }
  for (i = 0; i < 2; i++) {
    g[i] = (struct gc_thread) { .c = &c, .passes = 3 };
    assert_int_equal (pthread_create (&t[i], NULL, gc_thread, &g[i]), 0);
  }
  /* Work until both GC threads are through (each op is short). */
  while (__atomic_load_n (&c.bs->gc_complete, __ATOMIC_RELAXED)
         + __atomic_load_n (&c.bs->gc_aborted, __ATOMIC_RELAXED) < 6) {
    assert_int_equal (random_op (&c, &rs, NULL), 0);
    if (++ops % 200 == 0)
      assert_int_equal (ctx_commit (&c), 0);
  }
  for (i = 0; i < 2; i++) {
    assert_int_equal (pthread_join (t[i], NULL), 0);
    assert_int_equal (g[i].r, 0);
  }
  assert_int_equal (c.bs->gc_complete, 6);
  assert_int_equal (c.bs->gc_mismatch, 0);
  check_counts (&c);
  print_message ("%u ops during 6 passes\n", ops);
  ctx_free (&c);
}

/* ---- GC and a crash ---- */

static void
test_gc_crash (void **state)
{
  struct ctx c;
  static snap_t durable, got;
  struct post *post = calloc (1, sizeof *post);
  struct hook_arg h = { .c = &c, .post = post, .commit = true };
  uint64_t rs = seed ^ 0xc4a5, rounds, aborted = 0;
  int r;

  assert_non_null (post);
  ctx_init (&c, 6);
  h.rs = rs ^ 2;
  fill (&c, &rs, 1500);
  for (rounds = 0; rounds < 25; rounds++) {
    uint16_t x;
    uint64_t b;
    size_t i;

    assert_int_equal (ctx_commit (&c), 0);
    snapshot (&c, &durable);
    bump_gens (&c, &rs, 8);
    /* Stale blocks read as misses, before and after. */
    snapshot (&c, &durable);
    post->n = 0;
    h.r = 0;
    btree_set_gc_hook (c.bt, gc_hook, &h);
    if (rng_below (&rs, 4) != 0)
      cdev_sim_fail_at_write (c.cd, cdev_sim_nr_writes (c.cd) + 1
                              + rng_below (&rs, 400));
    r = btree_gc (c.bt, NULL);
    if (r != 0 || h.r != 0)
      aborted++;
    cdev_sim_crash (c.cd, test_splitmix_next (&rs) | 1);
    /* The hook's commits may have made some of post durable. */
    assert_int_equal (recover (&c), 0);
    snapshot (&c, &got);
    for (x = 1; x <= NEXP; x++)
      for (b = 0; b < NBLK; b++) {
        bool ok = got[x][b] == durable[x][b];

        for (i = 0; i < post->n && !ok; i++)
          ok = post->k[i].export_id == x && b >= bkey_start (&post->k[i])
            && b < post->k[i].end && code_of (&post->k[i], b) == got[x][b];
        if (!ok)
          fail_msg ("round %" PRIu64 ": export %u block %" PRIu64 " is %#"
                    PRIx64 ", durable %#" PRIx64 " (seed %" PRIu64 ")",
                    rounds, x, b, got[x][b], durable[x][b], seed);
      }
    check_counts (&c);
    /* The recovered tree takes a complete pass. */
    assert_int_equal (btree_gc (c.bt, NULL), 0);
    check_counts (&c);
    fill (&c, &rs, 100);
  }
  print_message ("%" PRIu64 " rounds, %" PRIu64 " passes cut short by the "
                 "device dying\n", rounds, aborted);
  assert_true (c.bs->gc_aborted > 0);
  ctx_free (&c);
  free (post);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_gc_stale),
    cmocka_unit_test (test_gc_between_holds),
    cmocka_unit_test (test_gc_threads),
    cmocka_unit_test (test_gc_crash),
  };
  test_log_capture ();
  seed = test_seed_from_env ("test-btree-gc");
  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
