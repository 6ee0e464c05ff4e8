/* SPDX-License-Identifier: BSD-3-Clause */
/* test-btree-scan.c — btree_scan and btree_replace (btree-walk.c).
 *
 * WHAT: scan order, filters, stale keys skipped, whole keys, the cursor
 * resumed across many leaves and exports, the per-hold leaf bound and the
 * done flag; replace-if-unchanged: unchanged keys, a rewrite / trim /
 * zero in the middle of old between scan and replace (kept), the parts of
 * old cut off by a later write (replaced), a piece of old split across
 * leaves, moves, ZERO keys, stale old or new, malformed pairs, the
 * journal (replaying it reproduces the result) and the accounting.
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

static void
test_scan (void **state)
{
  struct ctx c;
  struct nc_key *all = calloc (4000, sizeof *all), out[5];
  struct walk_keys w = { .k = all };
  struct btree_cursor cur = { 1, 0, false };
  uint64_t rs = seed ^ 0x5ca9;
  size_t i, got = 0, want = 0;
  unsigned calls = 0, zero_returns = 0, nscan = 0;
  uint16_t x;
  int n;

  assert_non_null (all);
  ctx_init (&c, 6);
  /* Exports 1, 2, 4 (3 empty): disjoint keys with gaps, a third dirty. */
  for (x = 1; x <= 4; x++)
    for (i = 0; x != 3 && i < 300; i++) {
      uint64_t s = i * 10 + rng_below (&rs, 3);
      uint32_t len = 1 + (uint32_t) rng_below (&rs, 7);
      unsigned kind = (unsigned) rng_below (&rs, 6);
      uint32_t bkt = DATA_FIRST + (uint32_t) rng_below (&rs, DATA_BUCKETS);

      insert1 (&c, dkey (&c, x, s, s + len, bkt, 3,
                         kind < 2 ? NC_KEY_DIRTY : kind == 2
                         ? NC_KEY_ZERO | NC_KEY_DIRTY : kind == 3
                         ? NC_KEY_ZERO : 0));
      if (i % 100 == 99)
        assert_int_equal (ctx_commit (&c), 0);
    }
  /* Some buckets move on: their keys are stale and never scanned. */
  for (i = 0; i < 40; i++)
    c.bs->gen[DATA_FIRST + rng_below (&rs, DATA_BUCKETS)]++;
  walk_keys (&c, &w);
  assert_true (w.stale > 0);
  assert_true (w.leaves > 4 * BTREE_SCAN_LEAVES_PER_HOLD);

  /* Dirty keys of exports 1 .. 2, 5 at a time: exactly the walk's, whole,
   * in order, none twice.
   */
  while (!cur.done) {
    n = btree_scan (c.bt, &cur, 2, want_dirty, &calls, out, 5);
    assert_true (n >= 0 && n <= 5);
    nscan++;
    for (i = 0; i < (size_t) n; i++, got++) {
      while (want < w.n && (all[want].export_id > 2 ||
                            !bkey_is_dirty (&all[want])))
        want++;
      assert_true (want < w.n);
      assert_memory_equal (&out[i], &all[want], sizeof out[i]);
      want++;
    }
  }
  while (want < w.n && (all[want].export_id > 2 ||
                        !bkey_is_dirty (&all[want])))
    want++;
  for (i = want; i < w.n; i++)
    assert_false (all[i].export_id <= 2 && bkey_is_dirty (&all[i]));
  assert_true (got > 50);
  assert_true (calls > got);
  assert_true (nscan >= (got + 4) / 5);
  /* done stays done. */
  assert_int_equal (btree_scan (c.bt, &cur, 2, NULL, NULL, out, 5), 0);

  /* Nothing matches: each call visits at most BTREE_SCAN_LEAVES_PER_HOLD
   * leaves, so it takes at least leaves / that many calls.
   */
  cur = (struct btree_cursor) { 0, 0, false };
  nscan = 0;
  while (!cur.done) {
    n = btree_scan (c.bt, &cur, NC_EXPORT_ID_MAX, want_none, NULL, out, 5);
    assert_int_equal (n, 0);
    if (!cur.done)
      zero_returns++;
    nscan++;
  }
  assert_true (zero_returns + 1 >= w.leaves / BTREE_SCAN_LEAVES_PER_HOLD);

  /* A cursor inside a key returns it whole; an export past last_export is
   * done at once; an empty export is done.
   */
  for (i = 0; i < w.n && all[i].export_id != 2; i++)
    ;
  cur = (struct btree_cursor) { 2, all[i].end - 1, false };
  assert_int_equal (btree_scan (c.bt, &cur, 2, NULL, NULL, out, 1), 1);
  assert_memory_equal (&out[0], &all[i], sizeof out[0]);
  /* The cursor is past the key: at its end, or (when the key was the
   * last of its leaf) at the leaf's upper bound — never past the next key.
   */
  assert_true (cur.export_id > 2 ||
               (cur.export_id == 2 && cur.block >= all[i].end));
  if (i + 1 < w.n)
    assert_true (all[i + 1].export_id > cur.export_id ||
                 (all[i + 1].export_id == cur.export_id &&
                  all[i + 1].end > cur.block));
  cur = (struct btree_cursor) { 4, 0, false };
  assert_int_equal (btree_scan (c.bt, &cur, 3, NULL, NULL, out, 5), 0);
  assert_true (cur.done);
  cur = (struct btree_cursor) { 3, 0, false };
  while (!cur.done)
    assert_int_equal (btree_scan (c.bt, &cur, 3, NULL, NULL, out, 5), 0);
  /* Resume after the tree changed under the cursor: order holds. */
  cur = (struct btree_cursor) { 1, 0, false };
  got = 0;
  {
    struct nc_key last = { 0 };

    while (!cur.done) {
      n = btree_scan (c.bt, &cur, 4, NULL, NULL, out, 5);
      assert_true (n >= 0);
      for (i = 0; i < (size_t) n; i++) {
        assert_true (bkey_cmp (&last, &out[i]) < 0);
        last = out[i];
      }
      got += (size_t) n;
      i = rng_below (&rs, 3000);
      insert1 (&c, dkey (&c, 1 + (uint16_t) rng_below (&rs, 4), i, i + 2,
                         DATA_FIRST, 0, NC_KEY_DELETE));
    }
  }
  assert_true (got > 100);
  assert_int_equal (btree_scan (c.bt, &cur, 4, NULL, NULL, out, 0), -EINVAL);
  ctx_free (&c);
  free (all);
}

static void
test_replace (void **state)
{
  struct ctx c;
  struct nc_key old[3], nw[3], k;
  uint64_t blocks = 0, seq = 0, b, n0;
  static snap_t before, after;
  struct walk_keys w = { .k = NULL };
  size_t i;

  ctx_init (&c, 4);
  /* Small keys everywhere first, so that leaf bounds fall inside old. */
  for (b = 0; b < 600; b += 2)
    insert1 (&c, dkey (&c, 1, b, b + 1, B5, (uint32_t) (b % 60), 0));
  old[0] = dkey (&c, 1, 100, 140, B1, 10, NC_KEY_DIRTY);
  insert1 (&c, old[0]);
  /* old is stored as several pieces (one per leaf). */
  {
    struct nc_key pieces[8];
    struct btree_cursor cur = { 1, 99, false };
    int n = btree_scan (c.bt, &cur, 1, want_dirty, &(unsigned) { 0 },
                        pieces, 8);

    while (n >= 0 && n < 2 && !cur.done)
      n += btree_scan (c.bt, &cur, 1, want_dirty, &(unsigned) { 0 },
                       pieces + n, (size_t) (8 - n));
    assert_true (n >= 2);
  }
  /* Between scan and replace: a rewrite, a trim and a zero in the middle;
   * a rewrite into the same bucket at another offset.
   */
  insert1 (&c, dkey (&c, 1, 115, 120, B2, 0, NC_KEY_DIRTY));
  insert1 (&c, dkey (&c, 1, 125, 127, 0, 0, NC_KEY_DELETE));
  insert1 (&c, dkey (&c, 1, 130, 132, 0, 0, NC_KEY_ZERO | NC_KEY_DIRTY));
  insert1 (&c, dkey (&c, 1, 135, 137, B1, 50, NC_KEY_DIRTY));
  /* A move of another key, split by a later write. */
  old[1] = dkey (&c, 1, 200, 210, B3, 0, NC_KEY_DIRTY);
  insert1 (&c, old[1]);
  insert1 (&c, dkey (&c, 1, 205, 206, B2, 7, NC_KEY_DIRTY));
  nw[1] = dkey (&c, 1, 200, 210, B4, 20, NC_KEY_DIRTY);
  /* A ZERO key with a differently flagged zero in the middle. */
  old[2] = dkey (&c, 2, 300, 320, 0, 0, NC_KEY_ZERO | NC_KEY_DIRTY);
  insert1 (&c, old[2]);
  insert1 (&c, dkey (&c, 2, 305, 308, 0, 0,
                     NC_KEY_ZERO | NC_KEY_DIRTY | NC_KEY_NOHOLE));
  nw[0] = clean (old[0]);
  nw[2] = clean (old[2]);
  assert_int_equal (c.bs->dirty[B1], 31);
  assert_int_equal (ctx_commit (&c), 0);

  /* Malformed: nothing happens. */
  k = nw[0];
  k.size--;
  snapshot (&c, &before);
  assert_int_equal (btree_replace (c.bt, old, &k, 1, &blocks, NULL),
                    -EINVAL);
  snapshot (&c, &after);
  assert_memory_equal (before, after, sizeof before);

  assert_int_equal (btree_replace (c.bt, old, nw, 3, &blocks, &seq), 0);
  assert_int_equal (seq, journal_open_seq (c.j));
  assert_int_equal (blocks, (40 - 5 - 2 - 2 - 2) + (10 - 1) + (20 - 3));
  for (b = 100; b < 140; b++) {
    if (b >= 115 && b < 120)
      expect_data (&c, 1, b, B2, (uint32_t) (b - 115), NC_KEY_DIRTY);
    else if (b >= 125 && b < 127)
      expect_flags (&c, 1, b, false, 0);
    else if (b >= 130 && b < 132)
      expect_flags (&c, 1, b, true, NC_KEY_ZERO | NC_KEY_DIRTY);
    else if (b >= 135 && b < 137)
      expect_data (&c, 1, b, B1, (uint32_t) (50 + b - 135), NC_KEY_DIRTY);
    else
      expect_data (&c, 1, b, B1, (uint32_t) (10 + b - 100), 0);
  }
  for (b = 200; b < 210; b++)
    if (b == 205)
      expect_data (&c, 1, b, B2, 7, NC_KEY_DIRTY);
    else
      expect_data (&c, 1, b, B4, (uint32_t) (20 + b - 200), NC_KEY_DIRTY);
  for (b = 300; b < 320; b++)
    expect_flags (&c, 2, b, true, b >= 305 && b < 308
                  ? NC_KEY_ZERO | NC_KEY_DIRTY | NC_KEY_NOHOLE
                  : NC_KEY_ZERO);
  assert_int_equal (c.bs->dirty[B1], 2);
  assert_int_equal (c.bs->live[B1], 29 + 2);
  assert_int_equal (c.bs->live[B3], 0);
  assert_int_equal (c.bs->live[B4], 9);
  assert_int_equal (c.bs->dirty[B4], 9);
  check_counts (&c);

  /* Again: nothing is a piece of old any more. */
  snapshot (&c, &before);
  assert_int_equal (btree_replace (c.bt, old, nw, 3, &blocks, NULL), 0);
  assert_int_equal (blocks, 0);
  /* A stale old, a stale new: nothing replaced. */
  old[0] = dkey (&c, 3, 10, 20, B3, 30, NC_KEY_DIRTY);
  insert1 (&c, old[0]);
  nw[0] = dkey (&c, 3, 10, 20, B4, 40, NC_KEY_DIRTY);
  nw[0].gen = (uint8_t) (nw[0].gen - 1);
  assert_int_equal (btree_replace (c.bt, old, nw, 1, &blocks, NULL), 0);
  assert_int_equal (blocks, 0);
  expect_data (&c, 3, 15, B3, 35, NC_KEY_DIRTY);
  nw[0] = clean (old[0]);
  old[0].gen = (uint8_t) (old[0].gen + 1);
  assert_int_equal (btree_replace (c.bt, old, nw, 1, &blocks, NULL), 0);
  assert_int_equal (blocks, 0);
  expect_data (&c, 3, 15, B3, 35, NC_KEY_DIRTY);
  /* A DELETE new drops exactly the pieces of old. */
  old[0].gen--;
  insert1 (&c, dkey (&c, 3, 12, 13, B5, 1, 0));
  nw[0] = dkey (&c, 3, 10, 20, 0, 0, NC_KEY_DELETE);
  assert_int_equal (btree_replace (c.bt, old, nw, 1, &blocks, NULL), 0);
  assert_int_equal (blocks, 9);
  expect_data (&c, 3, 12, B5, 1, 0);
  expect_flags (&c, 3, 11, false, 0);
  expect_flags (&c, 3, 19, false, 0);
  check_counts (&c);

  /* The journal (plain inserts) reproduces all of it. */
  snapshot (&c, &before);
  assert_int_equal (ctx_commit (&c), 0);
  cdev_sim_crash (c.cd, 0);
  assert_int_equal (recover (&c), 0);
  snapshot (&c, &after);
  assert_memory_equal (before, after, sizeof before);
  for (i = 0, n0 = 0; i < c.j->nr; i++)
    n0 += c.j->e[i].nkeys;
  assert_true (n0 > 300);
  walk_keys (&c, &w);
  check_counts (&c);
  ctx_free (&c);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_scan),
    cmocka_unit_test (test_replace),
  };
  test_log_capture ();
  seed = test_seed_from_env ("test-btree-scan");
  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
