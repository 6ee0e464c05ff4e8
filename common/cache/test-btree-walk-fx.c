/* SPDX-License-Identifier: BSD-3-Clause */
/* test-btree-walk-fx.c — the walk tests' fixture (test-btree-walk-fx.h):
 * fakes of the bucket set and the journal, the context, block snapshots.
 *
 * WHAT: see test-btree-walk-fx.h.
 * WHY: scans, replaces and GC passes are checked against fakes that count
 * exactly as bucket.h's contract says.
 * INVARIANTS: the fake's GC counts equal its live counts at a complete
 * end.
 * THREADS AND LOCKS: the fakes run under the btree lock.
 * FAILURE: misuse counts an error that the tests assert 0.
 * NOT HERE: the tests (test-btree-scan.c, test-btree-gc.c).
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
#include "csum.h"
#include "invariant.h"
#include "journal.h"
#include "log.h"
#include "ondisk.h"
#include "super.h"
#include "test-btree-walk-fx.h"

uint64_t seed;

uint64_t
rng_below (uint64_t *s, uint64_t n)
{
  return n ? test_splitmix_next (s) % n : 0;
}

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

/* The fake has no prio copies: a gen bump is durable at once. */
bool
bucket_ptr_stale_durably (struct bucket_set *bs, const struct nc_key *k)
{
  return bucket_ptr_stale (bs, k);
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
  /* Atomic: test_gc_threads polls both counters without the btree lock. */
  if (!complete) {
    __atomic_add_fetch (&bs->gc_aborted, 1, __ATOMIC_RELAXED);
    return;
  }
  __atomic_add_fetch (&bs->gc_complete, 1, __ATOMIC_RELAXED);
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
journal_close_entry_locked (struct journal *j, pthread_mutex_t *btree_lock,
                            const struct nc_key *root, uint16_t root_level,
                            uint64_t oldest_pin)
{
  ASSERT_HELD (btree_lock);
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

void
ctx_make_btree (struct ctx *c)
{
  struct btree_config cfg = {
    .cd = c->cd, .sb = &c->sb, .bs = c->bs, .journal = c->j,
    .node_cache_bytes = c->cache_bytes ? c->cache_bytes : 40000,
    .max_keys = c->max_keys,
  };

  assert_int_equal (btree_create (&cfg, &c->bt), 0);
}

void
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

void
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
int
ctx_commit (struct ctx *c)
{
  int r;

  assert_int_equal (btree_journal_close_entry (c->bt, c->j), 0);
  if ((r = cdev_sync (c->cd)) == 0)
    c->bs->durable_seq = c->j->durable_seq = c->j->e[c->j->nr - 1].seq;
  return r;
}

struct nc_key
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

void
insert1 (struct ctx *c, struct nc_key k)
{
  assert_int_equal (btree_insert (c->bt, &k, 1, NULL, NULL), 0);
}

/* The one piece covering block b of export x (found or not). */
struct btree_piece
at (struct ctx *c, uint16_t x, uint64_t b)
{
  struct btree_piece pc;

  assert_int_equal (btree_lookup (c->bt, x, b, b + 1, &pc, 1, NULL), 1);
  return pc;
}

/* Block b holds data bucket/offset with flags (offset of block b). */
void
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

void
expect_flags (struct ctx *c, uint16_t x, uint64_t b, bool found,
              uint8_t flags)
{
  struct btree_piece pc = at (c, x, b);

  assert_int_equal (pc.found, found);
  if (found)
    assert_int_equal (pc.key.flags, flags);
}

/* ---- scan ---- */

bool
want_dirty (void *opaque, const struct nc_key *k)
{
  unsigned *calls = opaque;

  (*calls)++;
  return bkey_is_dirty (k);
}

bool
want_none (void *opaque, const struct nc_key *k)
{
  return false;
}

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
void
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

/* What key k says about block b: 0 nothing, else a code naming it. */
uint64_t
code_of (const struct nc_key *k, uint64_t b)
{
  if (k->flags & NC_KEY_DELETE)
    return 0;
  if (k->flags & NC_KEY_ZERO)
    return (UINT64_C (1) << 60) | k->flags;
  return ((uint64_t) k->bucket << 40)
    | ((uint64_t) (k->offset + (b - bkey_start (k))) << 8) | k->flags;
}

void
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
void
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
int
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

struct nc_key
clean (struct nc_key k)
{
  k.flags &= (uint8_t) ~NC_KEY_DIRTY;
  return k;
}
