/* SPDX-License-Identifier: BSD-3-Clause */
/* test-btree-bg.c — unit tests for the index's background operations:
 * btree_scan, btree_replace and the incremental btree_gc (btree.c).
 *
 * WHAT: scan order, filters, stale keys skipped, whole keys, the cursor
 * resumed across many leaves and exports, the per-hold leaf bound and the
 * done flag; replace-if-unchanged: unchanged keys, a rewrite / trim /
 * zero in the middle of old between scan and replace (kept), the parts of
 * old cut off by a later write (replaced), a piece of old split across
 * leaves, moves, ZERO keys, stale old or new, malformed pairs, the
 * journal (replaying it reproduces the result) and the accounting; GC:
 * stale keys dropped (and durable), the recount equals the live counts
 * while inserts, trims and replaces run between holds (driven by the test
 * hook btree_set_gc_hook, deterministic) and while a thread inserts
 * during passes of another, concurrent passes serialised, and GC with a
 * device that dies at a random write, a crash, and recovery that finds
 * no live key lost.
 * HOW: the real cdev simulator; fakes of the bucket set and the journal
 * (what btree.c and bnode.c call), built against bucket.h and journal.h,
 * as in test-btree.c.  The fake bucket set keeps live and dirty counts
 * from bucket_account, and GC counts exactly as bucket.h's contract says
 * (begin, note, cursor, end); it flags a note at or before the cursor
 * (double count), a cursor that goes back, a pass that begins inside
 * another, and any GC count that differs from the live count at a
 * complete end.
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

#include "bkey.h"
#include "btree.h"
#include "bucket.h"
#include "cdev.h"
#include "compiler.h"
#include "csum.h"
#include "journal.h"
#include "log.h"
#include "ondisk.h"
#include "super.h"

static uint64_t seed;

static uint64_t
rng_next (uint64_t *s)
{
  uint64_t z = (*s += UINT64_C (0x9e3779b97f4a7c15));

  z = (z ^ (z >> 30)) * UINT64_C (0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C (0x94d049bb133111eb);
  return z ^ (z >> 31);
}

static uint64_t
rng_below (uint64_t *s, uint64_t n)
{
  return n ? rng_next (s) % n : 0;
}

static void
quiet_log (enum log_level level, const char *msg)
{
  if (getenv ("NBDCACHE_TEST_VERBOSE") != NULL)
    fprintf (stderr, "log: %s\n", msg);
}

/* ---- a fake bucket set ---- */

#define BUCKET_BLOCKS 64u
#define NBUCKETS 2048u
#define DATA_FIRST 8u
#define DATA_BUCKETS 256u

struct bucket_set {
  uint8_t gen[NBUCKETS];
  bool node[NBUCKETS];
  int64_t live[NBUCKETS], dirty[NBUCKETS];
  int64_t gc_live[NBUCKETS], gc_dirty[NBUCKETS];
  uint32_t next_node;
  uint32_t freed[NBUCKETS];
  uint64_t freed_seq[NBUCKETS];
  size_t nr_freed;
  uint64_t durable_seq;
  bool gc_on, have_cursor;
  uint16_t cur_x;
  uint64_t cur_end;
  unsigned errors;
  uint64_t gc_begins, gc_complete, gc_aborted, gc_cursors, gc_mismatch;
};

uint8_t
bucket_gen (struct bucket_set *bs, uint32_t bucket)
{
  return bucket < NBUCKETS ? __atomic_load_n (&bs->gen[bucket],
                                              __ATOMIC_ACQUIRE) : 0;
}

bool
bucket_ptr_stale (struct bucket_set *bs, const struct nc_key *k)
{
  return bkey_has_data (k) && k->gen != bucket_gen (bs, k->bucket);
}

static void
fake_error (struct bucket_set *bs, const char *what)
{
  fprintf (stderr, "fake bucket set: %s\n", what);
  bs->errors++;
}

int
bucket_alloc_node (struct bucket_set *bs, uint32_t *bucket, uint8_t *gen)
{
  size_t i;

  for (i = 0; i < bs->nr_freed; i++)
    if (bs->freed_seq[i] <= bs->durable_seq) {
      uint32_t b = bs->freed[i];

      bs->nr_freed--;
      bs->freed[i] = bs->freed[bs->nr_freed];
      bs->freed_seq[i] = bs->freed_seq[bs->nr_freed];
      __atomic_store_n (&bs->gen[b], (uint8_t) (bs->gen[b] + 1),
                        __ATOMIC_RELEASE);
      bs->node[b] = true;
      *bucket = b;
      *gen = bs->gen[b];
      return 0;
    }
  if (bs->next_node >= NBUCKETS)
    return -ENOSPC;
  *bucket = bs->next_node++;
  bs->node[*bucket] = true;
  *gen = bs->gen[*bucket];
  return 0;
}

void
bucket_free_node (struct bucket_set *bs, uint32_t bucket, uint64_t seq)
{
  if (bucket >= NBUCKETS || !bs->node[bucket]) {
    fake_error (bs, "freeing a bucket that holds no node");
    return;
  }
  bs->node[bucket] = false;
  bs->freed[bs->nr_freed] = bucket;
  bs->freed_seq[bs->nr_freed++] = seq;
}

static bool
at_or_before_cursor (struct bucket_set *bs, const struct nc_key *k)
{
  return bs->have_cursor && (k->export_id < bs->cur_x ||
                             (k->export_id == bs->cur_x &&
                              k->end <= bs->cur_end));
}

void
bucket_account (struct bucket_set *bs, const struct nc_key *k, int sign)
{
  int64_t d = sign * (int64_t) k->size;

  if (!bkey_has_data (k) || bucket_ptr_stale (bs, k))
    return;
  bs->live[k->bucket] += d;
  if (bkey_is_dirty (k))
    bs->dirty[k->bucket] += d;
  if (bs->live[k->bucket] < 0 || bs->dirty[k->bucket] < 0)
    fake_error (bs, "a count below 0");
  if (bs->gc_on && at_or_before_cursor (bs, k)) {
    bs->gc_live[k->bucket] += d;
    if (bkey_is_dirty (k))
      bs->gc_dirty[k->bucket] += d;
  }
}

void
bucket_gc_begin (struct bucket_set *bs)
{
  if (bs->gc_on)
    fake_error (bs, "a GC pass began inside another");
  bs->gc_on = true;
  bs->have_cursor = false;
  memset (bs->gc_live, 0, sizeof bs->gc_live);
  memset (bs->gc_dirty, 0, sizeof bs->gc_dirty);
  bs->gc_begins++;
}

void
bucket_gc_note (struct bucket_set *bs, const struct nc_key *k)
{
  if (!bs->gc_on)
    fake_error (bs, "note outside a pass");
  if (at_or_before_cursor (bs, k))
    fake_error (bs, "note of a key at or before the cursor");
  if (!bkey_has_data (k) || bucket_ptr_stale (bs, k))
    return;
  bs->gc_live[k->bucket] += k->size;
  if (bkey_is_dirty (k))
    bs->gc_dirty[k->bucket] += k->size;
}

void
bucket_gc_cursor (struct bucket_set *bs, uint16_t export_id, uint64_t end)
{
  if (bs->have_cursor && (export_id < bs->cur_x ||
                          (export_id == bs->cur_x && end < bs->cur_end)))
    fake_error (bs, "the cursor went back");
  bs->have_cursor = true;
  bs->cur_x = export_id;
  bs->cur_end = end;
  bs->gc_cursors++;
}

void
bucket_gc_end (struct bucket_set *bs, bool complete)
{
  uint32_t b;

  bs->gc_on = false;
  if (!complete) {
    bs->gc_aborted++;
    return;
  }
  bs->gc_complete++;
  if (!bs->have_cursor || bs->cur_x != NC_EXPORT_ID_MAX ||
      bs->cur_end != UINT64_MAX)
    fake_error (bs, "a complete pass whose cursor is not at the end");
  for (b = 0; b < NBUCKETS; b++)
    if (bs->gc_live[b] != bs->live[b] || bs->gc_dirty[b] != bs->dirty[b]) {
      if (bs->gc_mismatch++ == 0)
        fprintf (stderr, "fake bucket set: bucket %u: gc live %" PRId64
                 " dirty %" PRId64 ", live %" PRId64 " dirty %" PRId64
                 "\n", b, bs->gc_live[b], bs->gc_dirty[b], bs->live[b],
                 bs->dirty[b]);
    }
}

/* ---- a fake journal (keeps closed entries for replay) ---- */

struct fj_entry {
  uint64_t seq, last_seq;
  struct nc_key root;
  uint16_t level;
  struct nc_key *keys;
  size_t nkeys;
};

struct journal {
  uint64_t open_seq, durable_seq;
  struct nc_key *open_keys;
  size_t nr_open, cap_open;
  struct fj_entry *e;
  size_t nr, cap;
};

uint64_t
journal_add (struct journal *j, const struct nc_key *keys, size_t n)
{
  if (j->nr_open + n > j->cap_open) {
    j->cap_open = (j->nr_open + n) * 2;
    j->open_keys = realloc (j->open_keys, j->cap_open * sizeof *keys);
    assert_non_null (j->open_keys);
  }
  memcpy (j->open_keys + j->nr_open, keys, n * sizeof *keys);
  j->nr_open += n;
  return j->open_seq;
}

void
journal_mark_needed (struct journal *j)
{
}

int
journal_close_entry_locked (struct journal *j, const struct nc_key *root,
                            uint16_t root_level, uint64_t oldest_pin)
{
  struct fj_entry *e;

  if (j->nr == j->cap) {
    j->cap = j->cap ? j->cap * 2 : 64;
    j->e = realloc (j->e, j->cap * sizeof *j->e);
    assert_non_null (j->e);
  }
  e = &j->e[j->nr++];
  e->seq = j->open_seq;
  e->last_seq = oldest_pin < j->open_seq ? oldest_pin : j->open_seq;
  e->root = *root;
  e->level = root_level;
  e->keys = j->open_keys;
  e->nkeys = j->nr_open;
  j->open_keys = NULL;
  j->nr_open = j->cap_open = 0;
  __atomic_store_n (&j->open_seq, j->open_seq + 1, __ATOMIC_RELEASE);
  return 0;
}

uint64_t
journal_open_seq (struct journal *j)
{
  return __atomic_load_n (&j->open_seq, __ATOMIC_ACQUIRE);
}

/* ---- the context ---- */

struct ctx {
  struct nc_sb sb;
  struct cdev *cd;
  struct bucket_set *bs;
  struct journal *j;
  struct btree *bt;
  uint32_t max_keys;
  uint64_t cache_bytes;         /* 0: small (leaves come and go) */
};

static void
ctx_make_btree (struct ctx *c)
{
  struct btree_config cfg = {
    .cd = c->cd, .sb = &c->sb, .bs = c->bs, .journal = c->j,
    .node_cache_bytes = c->cache_bytes ? c->cache_bytes : 40000,
    .max_keys = c->max_keys,
  };

  assert_int_equal (btree_create (&cfg, &c->bt), 0);
}

static void
ctx_init (struct ctx *c, uint32_t max_keys)
{
  memset (c, 0, sizeof *c);
  c->sb.magic = NC_SB_MAGIC;
  c->sb.version = NC_FORMAT_VERSION;
  c->sb.block_bytes = NC_BLOCK_BYTES;
  c->sb.bucket_blocks = BUCKET_BLOCKS;
  c->sb.nbuckets = NBUCKETS;
  c->sb.journal_first = 1;
  c->sb.journal_buckets = 2;
  c->sb.prio_first = 3;
  c->sb.prio_buckets = 1;
  c->sb.data_first = DATA_FIRST;
  c->max_keys = max_keys;
  assert_int_equal (cdev_sim_create ((uint64_t) NBUCKETS * BUCKET_BLOCKS
                                     * NC_BLOCK_BYTES, &c->cd), 0);
  c->bs = calloc (1, sizeof *c->bs);
  c->j = calloc (1, sizeof *c->j);
  assert_non_null (c->bs);
  assert_non_null (c->j);
  c->bs->next_node = DATA_FIRST + DATA_BUCKETS;
  c->j->open_seq = 1;
  ctx_make_btree (c);
}

static void
ctx_free (struct ctx *c)
{
  size_t i;

  assert_int_equal (c->bs->errors, 0);
  assert_int_equal (c->bs->gc_mismatch, 0);
  btree_destroy (c->bt);
  cdev_close (c->cd);
  for (i = 0; i < c->j->nr; i++)
    free (c->j->e[i].keys);
  free (c->j->e);
  free (c->j->open_keys);
  free (c->j);
  free (c->bs);
}

/* Close the open entry through the btree's hook, sync, call it durable. */
static int
ctx_commit (struct ctx *c)
{
  int r;

  assert_int_equal (btree_journal_close_entry (c->bt, c->j), 0);
  if ((r = cdev_sync (c->cd)) == 0)
    c->bs->durable_seq = c->j->durable_seq = c->j->e[c->j->nr - 1].seq;
  return r;
}

static struct nc_key
dkey (struct ctx *c, uint16_t x, uint64_t s, uint64_t e, uint32_t bucket,
      uint32_t off, uint8_t flags)
{
  struct nc_key k;

  memset (&k, 0, sizeof k);
  k.export_id = x;
  k.end = e;
  k.size = (uint32_t) (e - s);
  k.flags = flags;
  if (!(flags & (NC_KEY_ZERO | NC_KEY_DELETE))) {
    k.bucket = bucket;
    k.offset = off;
    k.gen = c->bs->gen[bucket];
  }
  return k;
}

static void
insert1 (struct ctx *c, struct nc_key k)
{
  assert_int_equal (btree_insert (c->bt, &k, 1, NULL, NULL), 0);
}

/* The one piece covering block b of export x (found or not). */
static struct btree_piece
at (struct ctx *c, uint16_t x, uint64_t b)
{
  struct btree_piece pc;

  assert_int_equal (btree_lookup (c->bt, x, b, b + 1, &pc, 1, NULL), 1);
  return pc;
}

/* Block b holds data bucket/offset with flags (offset of block b). */
static void
expect_data (struct ctx *c, uint16_t x, uint64_t b, uint32_t bucket,
             uint32_t off, uint8_t flags)
{
  struct btree_piece pc = at (c, x, b);

  if (!pc.found || pc.key.bucket != bucket || pc.key.offset != off ||
      pc.key.flags != flags)
    fail_msg ("export %u block %" PRIu64 ": found %d bucket %u offset %u "
              "flags %#x; want bucket %u offset %u flags %#x", x, b,
              pc.found, pc.key.bucket, pc.key.offset, pc.key.flags, bucket,
              off, flags);
}

static void
expect_flags (struct ctx *c, uint16_t x, uint64_t b, bool found,
              uint8_t flags)
{
  struct btree_piece pc = at (c, x, b);

  assert_int_equal (pc.found, found);
  if (found)
    assert_int_equal (pc.key.flags, flags);
}

/* ---- scan ---- */

static bool
want_dirty (void *opaque, const struct nc_key *k)
{
  unsigned *calls = opaque;

  (*calls)++;
  return bkey_is_dirty (k);
}

static bool
want_none (void *opaque, const struct nc_key *k)
{
  return false;
}

struct walk_keys {
  struct nc_key *k;
  size_t n;
  uint64_t stale, leaves;
  struct bucket_set *bs;
};

static int
wk_key (void *opaque, const struct nc_key *k)
{
  struct walk_keys *w = opaque;

  if (bucket_ptr_stale (w->bs, k))
    w->stale++;
  else if (w->k != NULL)
    w->k[w->n++] = *k;
  return 0;
}

static int
wk_node (void *opaque, uint32_t bucket, uint16_t level, uint32_t nkeys)
{
  struct walk_keys *w = opaque;

  if (level == 0)
    w->leaves++;
  return 0;
}

/* Every key the tree holds (current ones into w->k if not NULL). */
static void
walk_keys (struct ctx *c, struct walk_keys *w)
{
  const struct btree_walk_ops ops = {
    .opaque = w, .node = wk_node, .key = wk_key,
  };

  w->n = 0;
  w->stale = w->leaves = 0;
  w->bs = c->bs;
  assert_int_equal (btree_walk (c->bt, &ops), 0);
}

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

/* ---- block values (for snapshots and crash checks) ---- */

#define NEXP 3
#define NBLK 4096u

/* What key k says about block b: 0 nothing, else a code naming it. */
static uint64_t
code_of (const struct nc_key *k, uint64_t b)
{
  if (k->flags & NC_KEY_DELETE)
    return 0;
  if (k->flags & NC_KEY_ZERO)
    return (UINT64_C (1) << 60) | k->flags;
  return ((uint64_t) k->bucket << 40)
    | ((uint64_t) (k->offset + (b - bkey_start (k))) << 8) | k->flags;
}

typedef uint64_t snap_t[NEXP + 1][NBLK];

static void
snapshot (struct ctx *c, snap_t *v)
{
  struct btree_piece pc[16];
  uint16_t x;

  memset (v, 0, sizeof *v);
  for (x = 1; x <= NEXP; x++) {
    uint64_t pos = 0, b;

    while (pos < NBLK) {
      int n = btree_lookup (c->bt, x, pos, NBLK, pc, 16, NULL), i;

      assert_true (n >= 1);
      for (i = 0; i < n; i++, pos = pc[i - 1].end)
        for (b = pc[i].start; pc[i].found && b < pc[i].end; b++)
          (*v)[x][b] = code_of (&pc[i].key, b);
    }
  }
}

static int
mark_node (void *opaque, uint32_t bucket, uint16_t level, uint32_t nkeys)
{
  ((struct bucket_set *) opaque)->node[bucket] = true;
  return 0;
}

static int
recount_live (void *opaque, const struct nc_key *k)
{
  bucket_account (opaque, k, +1);
  return 0;
}

/* The fake's live and dirty counts equal a recount of the index. */
static void
check_counts (struct ctx *c)
{
  static int64_t live[NBUCKETS], dirty[NBUCKETS];
  const struct btree_walk_ops ops = { .opaque = c->bs, .key = recount_live };
  uint32_t b;

  memcpy (live, c->bs->live, sizeof live);
  memcpy (dirty, c->bs->dirty, sizeof dirty);
  memset (c->bs->live, 0, sizeof live);
  memset (c->bs->dirty, 0, sizeof dirty);
  assert_int_equal (btree_walk (c->bt, &ops), 0);
  for (b = 0; b < NBUCKETS; b++)
    if (live[b] != c->bs->live[b] || dirty[b] != c->bs->dirty[b])
      fail_msg ("bucket %u: counted %" PRId64 " live %" PRId64 " dirty, the "
                "index holds %" PRId64 " %" PRId64 " (seed %" PRIu64 ")", b,
                live[b], dirty[b], c->bs->live[b], c->bs->dirty[b], seed);
}

/* Node buckets: the tree's are marked, the others free again; with
 * recount, live and dirty counts from the keys (stale ones ignored).
 */
static int
mark_tree (struct ctx *c, bool recount)
{
  const struct btree_walk_ops ops = {
    .opaque = c->bs, .node = mark_node, .key = recount ? recount_live : NULL,
  };
  uint32_t b;
  int r;

  if (recount) {
    memset (c->bs->live, 0, sizeof c->bs->live);
    memset (c->bs->dirty, 0, sizeof c->bs->dirty);
  }
  memset (c->bs->node, 0, sizeof c->bs->node);
  if ((r = btree_walk (c->bt, &ops)) < 0)
    return r;
  c->bs->nr_freed = 0;
  for (b = DATA_FIRST + DATA_BUCKETS; b < c->bs->next_node; b++)
    if (!c->bs->node[b]) {
      c->bs->node[b] = true;
      bucket_free_node (c->bs, b, 0);
    }
  return 0;
}

/* Recovery as device.c does it: the newest durable entry's root, its
 * keys from last_seq on replayed without accounting, then a recount.
 */
static int
recover (struct ctx *c)
{
  struct journal *j = c->j;
  const struct fj_entry *e;
  size_t i, k;
  int r;

  while (j->nr > 0 && j->e[j->nr - 1].seq > j->durable_seq)
    free (j->e[--j->nr].keys);
  free (j->open_keys);
  j->open_keys = NULL;
  j->nr_open = j->cap_open = 0;
  assert_true (j->nr > 0);
  e = &j->e[j->nr - 1];
  j->open_seq = e->seq + 1;
  btree_destroy (c->bt);
  ctx_make_btree (c);
  if ((r = btree_set_root (c->bt, &e->root, e->level)) < 0 ||
      (r = mark_tree (c, false)) < 0)
    return r;
  btree_set_accounting (c->bt, false);
  for (i = 0; i < j->nr; i++)
    for (k = 0; j->e[i].seq >= e->last_seq && k < j->e[i].nkeys; k++)
      if ((r = btree_replay_key (c->bt, &j->e[i].keys[k])) < 0)
        return r;
  btree_set_accounting (c->bt, true);
  if ((r = btree_write_all (c->bt)) < 0)
    return r;
  return mark_tree (c, true);
}

/* ---- replace ---- */

#define B1 (DATA_FIRST + 1)
#define B2 (DATA_FIRST + 2)
#define B3 (DATA_FIRST + 3)
#define B4 (DATA_FIRST + 4)
#define B5 (DATA_FIRST + 5)

static struct nc_key
clean (struct nc_key k)
{
  k.flags &= (uint8_t) ~NC_KEY_DIRTY;
  return k;
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
    cdev_sim_crash (c.cd, rng_next (&rs) | 1);
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
    cmocka_unit_test (test_scan),
    cmocka_unit_test (test_replace),
    cmocka_unit_test (test_gc_stale),
    cmocka_unit_test (test_gc_between_holds),
    cmocka_unit_test (test_gc_threads),
    cmocka_unit_test (test_gc_crash),
  };
  const char *s = getenv ("NBDCACHE_SEED");

  log_set_sink (quiet_log);
  seed = s != NULL && *s ? strtoull (s, NULL, 0)
    : (uint64_t) time (NULL) ^ ((uint64_t) getpid () << 16);
  printf ("test-btree-bg: seed %" PRIu64 " (NBDCACHE_SEED=%" PRIu64
          " to replay)\n", seed, seed);
  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
