/* SPDX-License-Identifier: BSD-3-Clause */
/* test-btree-fx.c — the btree tests' fixture (test-btree-fx.h): fakes of
 * the bucket set and the journal, the context, the model, walk helpers.
 *
 * WHAT: see test-btree-fx.h.
 * WHY: the index is tested alone, against fakes that check how it uses
 * buckets and the journal; two programs share them.
 * INVARIANTS: the fake bucket set's live counts equal the blocks of the
 * current keys (checked against the model).
 * THREADS AND LOCKS: the fakes run under the btree lock.
 * FAILURE: misuse of the fakes counts an error that the tests assert 0.
 * NOT HERE: the tests.
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
#include "bset.h"
#include "btree.h"
#include "bucket.h"
#include "cdev.h"
#include "csum.h"
#include "invariant.h"
#include "journal.h"
#include "log.h"
#include "testkit.h"
#include "ondisk.h"
#include "super.h"
#include "test-btree-fx.h"

uint64_t seed;

uint64_t
rng_below (uint64_t *s, uint64_t n)
{
  return n ? test_splitmix_next (s) % n : 0;
}

uint8_t
bucket_gen (struct bucket_set *bs, uint32_t bucket)
{
  return bucket < bs->nbuckets ? __atomic_load_n (&bs->gen[bucket],
                                                  __ATOMIC_ACQUIRE) : 0;
}

bool
bucket_ptr_stale (struct bucket_set *bs, const struct nc_key *k)
{
  if (!bkey_has_data (k))
    return false;
  return k->bucket >= bs->nbuckets || k->gen != bucket_gen (bs, k->bucket);
}

/* The fake has no prio copies: a gen bump is durable at once. */
bool
bucket_ptr_stale_durably (struct bucket_set *bs, const struct nc_key *k)
{
  return bucket_ptr_stale (bs, k);
}

int
bucket_alloc_node (struct bucket_set *bs, uint32_t *bucket, uint8_t *gen)
{
  size_t i;

  if (bs->fail_alloc)
    return -ENOSPC;
  for (i = 0; i < bs->nr_freed; i++)
    if (bs->freed[i].seq <= bs->durable_seq) {
      uint32_t b = bs->freed[i].bucket;

      bs->freed[i] = bs->freed[--bs->nr_freed];
      bs->gen[b]++;             /* reuse bumps the gen, like bucket.c */
      bs->node[b] = true;
      bs->nr_alloc++;
      *bucket = b;
      *gen = bs->gen[b];
      return 0;
    }
  if (bs->next_node >= bs->nbuckets)
    return -ENOSPC;
  *bucket = bs->next_node++;
  bs->node[*bucket] = true;
  *gen = bs->gen[*bucket];
  bs->nr_alloc++;
  return 0;
}

void
bucket_free_node (struct bucket_set *bs, uint32_t bucket, uint64_t seq)
{
  if (bucket >= bs->nbuckets || !bs->node[bucket]) {
    fprintf (stderr, "fake bucket set: freeing bucket %u holding no node\n",
             bucket);
    bs->errors++;
    return;
  }
  bs->node[bucket] = false;
  if (bs->nr_freed == bs->cap_freed) {
    bs->cap_freed = bs->cap_freed ? bs->cap_freed * 2 : 64;
    bs->freed = realloc (bs->freed, bs->cap_freed * sizeof *bs->freed);
    assert_non_null (bs->freed);
  }
  bs->freed[bs->nr_freed++] = (struct fake_freed) { bucket, seq };
  bs->nr_free++;
}

void
bucket_account (struct bucket_set *bs, const struct nc_key *k, int sign)
{
  if (!bkey_has_data (k) || bucket_ptr_stale (bs, k))
    return;
  bs->live[k->bucket] += sign * (int64_t) k->size;
  if (bs->live[k->bucket] < 0) {
    fprintf (stderr, "fake bucket set: bucket %u live count below 0\n",
             k->bucket);
    bs->errors++;
  }
}

void
bucket_gc_begin (struct bucket_set *bs)
{
  bs->gc_begins++;
}

void
bucket_gc_note (struct bucket_set *bs, const struct nc_key *k)
{
  if (bkey_has_data (k))
    bs->gc_notes++;
}

void
bucket_gc_cursor (struct bucket_set *bs, uint16_t export_id, uint64_t end)
{
}

void
bucket_gc_end (struct bucket_set *bs, bool complete)
{
  if (complete)
    bs->gc_ends++;
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
  j->adds++;
  return j->open_seq;
}

void
journal_mark_needed (struct journal *j)
{
  j->needed = true;
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
  j->needed = false;
  return 0;
}

/* Lock-free, like journal.c's. */
uint64_t
journal_open_seq (struct journal *j)
{
  return __atomic_load_n (&j->open_seq, __ATOMIC_ACQUIRE);
}

void
fj_free_entries_after (struct journal *j, uint64_t seq)
{
  while (j->nr > 0 && j->e[j->nr - 1].seq > seq) {
    free (j->e[j->nr - 1].keys);
    j->nr--;
  }
}

static void
fj_destroy (struct journal *j)
{
  fj_free_entries_after (j, 0);
  free (j->e);
  free (j->open_keys);
  free (j);
}

void
ctx_make_btree (struct ctx *c)
{
  struct btree_config cfg = {
    .cd = c->cd, .sb = &c->sb, .bs = c->bs, .journal = c->j,
    .node_cache_bytes = c->cache_bytes, .max_keys = c->max_keys,
  };

  assert_int_equal (btree_create (&cfg, &c->bt), 0);
}

void
ctx_init (struct ctx *c, uint32_t max_keys, uint64_t cache_bytes)
{
  size_t i;

  memset (c, 0, sizeof *c);
  c->sb.magic = NC_SB_MAGIC;
  c->sb.version = NC_FORMAT_VERSION;
  c->sb.block_bytes = NC_BLOCK_BYTES;
  for (i = 0; i < sizeof c->sb.uuid; i++)
    c->sb.uuid[i] = (uint8_t) (0xa0 + i);
  c->sb.bucket_blocks = BUCKET_BLOCKS;
  c->sb.nbuckets = NBUCKETS;
  c->sb.journal_first = 1;
  c->sb.journal_buckets = 2;
  c->sb.prio_first = 3;
  c->sb.prio_buckets = 1;
  c->sb.data_first = DATA_FIRST;
  c->max_keys = max_keys;
  c->cache_bytes = cache_bytes;
  assert_int_equal (cdev_sim_create ((uint64_t) NBUCKETS * BUCKET_BLOCKS
                                     * NC_BLOCK_BYTES, &c->cd), 0);
  c->bs = calloc (1, sizeof *c->bs);
  assert_non_null (c->bs);
  c->bs->nbuckets = NBUCKETS;
  c->bs->data_first = DATA_FIRST;
  c->bs->data_buckets = DATA_BUCKETS;
  c->bs->next_node = DATA_FIRST + DATA_BUCKETS;
  c->j = calloc (1, sizeof *c->j);
  assert_non_null (c->j);
  c->j->open_seq = 1;
  ctx_make_btree (c);
  test_log_clear ();
}

void
ctx_free (struct ctx *c)
{
  assert_int_equal (c->bs->errors, 0);
  btree_destroy (c->bt);
  cdev_close (c->cd);
  free (c->bs->freed);
  free (c->bs);
  fj_destroy (c->j);
}

/* Close the journal's open entry (through the btree hook), sync like a
 * commit does, and call it durable.  Returns the sync's result.
 */
int
ctx_commit (struct ctx *c)
{
  int r;

  assert_int_equal (btree_journal_close_entry (c->bt, c->j), 0);
  r = cdev_sync (c->cd);
  if (r == 0) {
    c->j->durable_seq = c->j->e[c->j->nr - 1].seq;
    c->bs->durable_seq = c->j->durable_seq;
  }
  return r;
}

/* A fresh btree on the same device from the newest closed entry's root. */
int
ctx_reopen (struct ctx *c)
{
  const struct fj_entry *e;

  assert_int_equal (btree_journal_close_entry (c->bt, c->j), 0);
  e = &c->j->e[c->j->nr - 1];
  btree_destroy (c->bt);
  ctx_make_btree (c);
  return btree_set_root (c->bt, &e->root, e->level);
}

struct nc_key
dkey (uint16_t x, uint64_t start, uint64_t end, uint32_t bucket,
      uint32_t offset, struct bucket_set *bs)
{
  struct nc_key k;

  memset (&k, 0, sizeof k);
  k.export_id = x;
  k.end = end;
  k.size = (uint32_t) (end - start);
  k.bucket = bucket;
  k.offset = offset;
  k.gen = bs->gen[bucket];
  return k;
}

struct nc_key
fkey (uint16_t x, uint64_t start, uint64_t end, uint8_t flags)
{
  struct nc_key k;

  memset (&k, 0, sizeof k);
  k.export_id = x;
  k.end = end;
  k.size = (uint32_t) (end - start);
  k.flags = flags;
  return k;
}

void
insert1 (struct ctx *c, struct nc_key k)
{
  assert_int_equal (btree_insert (c->bt, &k, 1, NULL, NULL), 0);
}

static uint64_t
mv_data (uint32_t bucket, uint32_t offset)
{
  return 2 + ((uint64_t) bucket << 20) + offset;
}

/* Block b (inside k) as k sets it. */
static void
model_apply1 (struct model *m, const struct nc_key *k, uint64_t b)
{
  m->v[k->export_id][b] = (k->flags & NC_KEY_DELETE) ? MV_NONE
    : (k->flags & NC_KEY_ZERO) ? MV_ZERO
    : mv_data (k->bucket, k->offset + (uint32_t) (b - bkey_start (k)));
}

void
model_apply (struct model *m, const struct nc_key *k)
{
  uint64_t b;

  for (b = bkey_start (k); b < k->end; b++)
    model_apply1 (m, k, b);
}

/* Compare btree lookups of export x, blocks [s, e), with the model,
 * `maxp` pieces per call.
 */
static void
check_range (struct ctx *c, const struct model *m, uint16_t x, uint64_t s,
             uint64_t e, size_t maxp)
{
  struct btree_piece pc[16];
  uint64_t pos = s;

  assert_true (maxp <= 16);
  while (pos < e) {
    int n = btree_lookup (c->bt, x, pos, e, pc, maxp, NULL);
    int i;

    assert_true (n >= 1);
    assert_true ((size_t) n <= maxp);
    for (i = 0; i < n; i++) {
      uint64_t b;

      if (pc[i].start != pos || pc[i].end <= pc[i].start || pc[i].end > e) {
        fail_msg ("export %u piece %d [%" PRIu64 ", %" PRIu64 ") at %" PRIu64,
                  x, i, pc[i].start, pc[i].end, pos);
      }
      if (i > 0 && !pc[i].found && !pc[i - 1].found)
        fail_msg ("two adjacent misses at %" PRIu64, pc[i].start);
      if (pc[i].found) {
        assert_int_equal (bkey_start (&pc[i].key), pc[i].start);
        assert_int_equal (pc[i].key.end, pc[i].end);
        assert_int_equal (pc[i].key.export_id, x);
      }
      for (b = pc[i].start; b < pc[i].end; b++) {
        uint64_t want = m->v[x][b], got = MV_NONE;

        if (pc[i].found)
          got = bkey_is_zero (&pc[i].key) ? MV_ZERO
            : mv_data (pc[i].key.bucket,
                       pc[i].key.offset + (uint32_t) (b - pc[i].start));
        if (got != want)
          fail_msg ("export %u block %" PRIu64 ": btree %#" PRIx64
                    ", model %#" PRIx64 " (seed %" PRIu64 ")",
                    x, b, got, want, seed);
      }
      pos = pc[i].end;
    }
  }
}

void
check_all (struct ctx *c, const struct model *m)
{
  uint16_t x;

  for (x = 1; x <= NEXP; x++)
    check_range (c, m, x, 0, NBLK, 16);
}

/* The fake bucket set's live counts equal the model's data blocks. */
void
check_accounting (struct ctx *c, const struct model *m)
{
  static int64_t want[FAKE_MAX_BUCKETS];
  uint16_t x;
  uint64_t b;
  uint32_t i;

  memset (want, 0, sizeof want);
  for (x = 1; x <= NEXP; x++)
    for (b = 0; b < NBLK; b++)
      if (m->v[x][b] >= 2)
        want[(m->v[x][b] - 2) >> 20]++;
  for (i = 0; i < NBUCKETS; i++)
    if (want[i] != c->bs->live[i])
      fail_msg ("bucket %u: live %" PRId64 ", model %" PRId64 " (seed %"
                PRIu64 ")", i, c->bs->live[i], want[i], seed);
}
bool dense;

/* A random key over the model's range. */
struct nc_key
random_key (struct ctx *c, uint64_t *rs, uint16_t x)
{
  unsigned what = (unsigned) rng_below (rs, 100);
  uint64_t len, s;

  if (dense) {
    len = 1 + rng_below (rs, 3);
    s = rng_below (rs, NBLK - len + 1);
    if (what < 90)
      return dkey (x, s, s + len, DATA_FIRST
                   + (uint32_t) rng_below (rs, DATA_BUCKETS),
                   (uint32_t) rng_below (rs, BUCKET_BLOCKS - len + 1), c->bs);
    return fkey (x, s, s + len, what < 95 ? NC_KEY_ZERO : NC_KEY_DELETE);
  }
  if (what < 65) {
    uint32_t bucket = DATA_FIRST + (uint32_t) rng_below (rs, DATA_BUCKETS);
    uint32_t off;

    len = 1 + rng_below (rs, rng_below (rs, 4) == 0 ? BUCKET_BLOCKS : 4);
    off = (uint32_t) rng_below (rs, BUCKET_BLOCKS - len + 1);
    s = rng_below (rs, NBLK - len + 1);
    return dkey (x, s, s + len, bucket, off, c->bs);
  }
  len = 1 + rng_below (rs, rng_below (rs, 8) == 0 ? 2000 : 40);
  s = rng_below (rs, NBLK - len + 1);
  return fkey (x, s, s + len, what < 82 ? NC_KEY_ZERO : NC_KEY_DELETE);
}

static void
post_add (struct post *p, const struct nc_key *k)
{
  if (p->n == p->cap) {
    p->cap = p->cap ? 2 * p->cap : 256;
    p->k = realloc (p->k, p->cap * sizeof *p->k);
    assert_non_null (p->k);
  }
  p->k[p->n++] = *k;
}

/* n random keys of one export in one btree_insert, applied to m (and
 * recorded in post, if not NULL, even when the insert fails).
 */
int
random_insert_post (struct ctx *c, struct model *m, uint64_t *rs,
                    struct post *post)
{
  struct nc_key keys[4] = { { 0 } };
  uint16_t x = (uint16_t) (1 + rng_below (rs, 2));
  size_t n = rng_below (rs, 10) == 0 ? 1 + rng_below (rs, 4) : 1, i;
  int r;

  for (i = 0; i < n; i++) {
    keys[i] = random_key (c, rs, x);
    if (post != NULL)
      post_add (post, &keys[i]);
  }
  r = btree_insert (c->bt, keys, n, NULL, NULL);
  if (r == 0)
    for (i = 0; i < n; i++)
      model_apply (m, &keys[i]);
  return r;
}

int
random_insert (struct ctx *c, struct model *m, uint64_t *rs)
{
  return random_insert_post (c, m, rs, NULL);
}

/* What the btree says, block by block, in model form. */
void
model_from_btree (struct ctx *c, struct model *m)
{
  struct btree_piece pc[16];
  uint16_t x;

  memset (m, 0, sizeof *m);
  for (x = 1; x <= NEXP; x++) {
    uint64_t pos = 0;

    while (pos < NBLK) {
      int n = btree_lookup (c->bt, x, pos, NBLK, pc, 16, NULL), i;

      assert_true (n >= 1);
      for (i = 0; i < n; i++) {
        uint64_t b;

        for (b = pc[i].start; b < pc[i].end && pc[i].found; b++)
          m->v[x][b] = bkey_is_zero (&pc[i].key) ? MV_ZERO
            : mv_data (pc[i].key.bucket,
                       pc[i].key.offset + (uint32_t) (b - pc[i].start));
        pos = pc[i].end;
      }
    }
  }
}

/* After a crash every block holds its value at the durable entry or one
 * that a later (not durable) key wrote there: never anything older, never
 * a hole a DELETE did not make.
 */
void
check_after_crash (const struct model *got, const struct model *durable,
                   const struct post *post)
{
  uint16_t x;
  uint64_t b;
  size_t i;

  for (x = 1; x <= NEXP; x++)
    for (b = 0; b < NBLK; b++) {
      bool ok = got->v[x][b] == durable->v[x][b];

      for (i = 0; i < post->n && !ok; i++) {
        struct model one;
        const struct nc_key *k = &post->k[i];

        if (k->export_id != x || b < bkey_start (k) || b >= k->end)
          continue;
        one.v[x][b] = MV_NONE;
        model_apply1 (&one, k, b);
        ok = one.v[x][b] == got->v[x][b];
      }
      if (!ok)
        fail_msg ("after the crash export %u block %" PRIu64 " is %#" PRIx64
                  ", durable %#" PRIx64 ", and no later key wrote that "
                  "(seed %" PRIu64 ")", x, b, got->v[x][b],
                  durable->v[x][b], seed);
    }
}

static int
count_node (void *opaque, uint32_t bucket, uint16_t level, uint32_t nkeys)
{
  struct walk_count *w = opaque;

  w->nodes++;
  if (level == 0) {
    w->leaves++;
    if (w->nr_leaf_buckets < 64)
      w->leaf_buckets[w->nr_leaf_buckets++] = bucket;
  }
  if (w->nr_all < 4096)
    w->all_buckets[w->nr_all++] = bucket;
  if (level > w->max_level)
    w->max_level = level;
  return 0;
}

static int
count_key (void *opaque, const struct nc_key *k)
{
  struct walk_count *w = opaque;

  w->keys++;
  return 0;
}

int
walk_count (struct ctx *c, struct walk_count *w)
{
  const struct btree_walk_ops ops = {
    .opaque = w, .node = count_node, .key = count_key,
  };

  memset (w, 0, sizeof *w);
  return btree_walk (c->bt, &ops);
}
