/* SPDX-License-Identifier: BSD-3-Clause */
/* test-btree.c — unit tests for the index (btree.c, bnode.c, bset.c).
 *
 * WHAT: inserts and lookups (cuts at the front, back and middle, cuts
 * across leaves, DELETE, ZERO, exports kept apart), splits up to depth 3
 * with real node sizes and deeper with a small max_keys, a randomised
 * model check against a flat per-block array (also checking the bucket
 * accounting exactly), persistence (write_all then a fresh btree from the
 * root), nodes moving when their bucket is full, torn and corrupt bsets,
 * stale keys, placeholders, the bounded node cache, walk (including an
 * unsorted but correctly checksummed node), the journal hooks (pins,
 * close_entry, write_pinned), replay, I/O and allocation failures, and a
 * crash sweep: random work, journal commits, a device that dies at a
 * random write and tears unsynced blocks, recovery from the newest
 * durable entry (its root, its keys from last_seq replayed); then every
 * block must hold its value at that entry or a value a later key wrote
 * there (leaves are written lazily and may carry newer keys), never an
 * older one or a hole no DELETE made.  Threads: inserters on separate
 * exports, lookups, and a journal-like thread closing entries and writing
 * pinned leaves, all at once.
 * HOW: the real cdev simulator (cdev-sim.c); fakes of the bucket set and
 * the journal (only what btree.c calls), built against bucket.h and
 * journal.h.  The fake bucket set counts live blocks per bucket from
 * bucket_account and flags misuse (freeing a bucket that holds no node,
 * live counts below zero); the fake journal keeps its entries (keys,
 * root, last_seq) so a test can replay them like journal.c would.
 * SEED: the randomised tests take NBDCACHE_SEED (printed always).
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
#include "journal.h"
#include "log.h"
#include "ondisk.h"
#include "super.h"

/* ---- logging ---- */

static char last_error[1024];
static unsigned nr_log_errors;
static bool verbose;

static void
capture_log (enum log_level level, const char *msg)
{
  if (level == LOG_LEVEL_ERROR) {
    snprintf (last_error, sizeof last_error, "%s", msg);
    nr_log_errors++;
  }
  if (verbose)
    fprintf (stderr, "log: %s\n", msg);
}

/* ---- seed ---- */

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

/* ---- a fake bucket set ---- */

#define FAKE_MAX_BUCKETS 8192u

struct fake_freed {
  uint32_t bucket;
  uint64_t seq;
};

struct bucket_set {
  uint32_t nbuckets, data_first, data_buckets; /* data keys: [first, +n) */
  uint8_t gen[FAKE_MAX_BUCKETS];
  bool node[FAKE_MAX_BUCKETS];  /* holds a node */
  int64_t live[FAKE_MAX_BUCKETS];
  uint32_t next_node;           /* next never-used node bucket */
  struct fake_freed *freed;
  size_t nr_freed, cap_freed;
  uint64_t durable_seq;         /* freed buckets come back after this */
  bool fail_alloc;
  unsigned errors;              /* misuse seen */
  uint64_t nr_alloc, nr_free, gc_begins, gc_notes, gc_ends;
};

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

/* ---- a fake journal ---- */

struct fj_entry {
  uint64_t seq, last_seq;
  struct nc_key root;
  uint16_t level;
  struct nc_key *keys;
  size_t nkeys;
};

struct journal {
  uint64_t open_seq;
  struct nc_key *open_keys;
  size_t nr_open, cap_open;
  struct fj_entry *e;           /* closed entries, by seq */
  size_t nr, cap;
  uint64_t durable_seq;
  bool needed;
  uint64_t adds;
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
  j->adds++;
  return j->open_seq;
}

void
journal_mark_needed (struct journal *j)
{
  j->needed = true;
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
  j->needed = false;
  return 0;
}

/* Lock-free, like journal.c's. */
uint64_t
journal_open_seq (struct journal *j)
{
  return __atomic_load_n (&j->open_seq, __ATOMIC_ACQUIRE);
}

static void
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

/* ---- the test context ---- */

#define BUCKET_BLOCKS 16u
#define NBUCKETS 4096u
#define DATA_FIRST 8u
#define DATA_BUCKETS 256u

struct ctx {
  struct nc_sb sb;
  struct cdev *cd;
  struct bucket_set *bs;
  struct journal *j;
  struct btree *bt;
  uint32_t max_keys;
  uint64_t cache_bytes;
};

static void
ctx_make_btree (struct ctx *c)
{
  struct btree_config cfg = {
    .cd = c->cd, .sb = &c->sb, .bs = c->bs, .journal = c->j,
    .node_cache_bytes = c->cache_bytes, .max_keys = c->max_keys,
  };

  assert_int_equal (btree_create (&cfg, &c->bt), 0);
}

static void
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
  nr_log_errors = 0;
}

static void
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
static int
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
static int
ctx_reopen (struct ctx *c)
{
  const struct fj_entry *e;

  assert_int_equal (btree_journal_close_entry (c->bt, c->j), 0);
  e = &c->j->e[c->j->nr - 1];
  btree_destroy (c->bt);
  ctx_make_btree (c);
  return btree_set_root (c->bt, &e->root, e->level);
}

static struct nc_key
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

static struct nc_key
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

static void
insert1 (struct ctx *c, struct nc_key k)
{
  assert_int_equal (btree_insert (c->bt, &k, 1, NULL, NULL), 0);
}

/* ---- the model: one value per block ---- */

#define NEXP 3                  /* exports 1 .. 3; 3 stays empty */
#define NBLK 8192u

#define MV_NONE 0u
#define MV_ZERO 1u

struct model {
  uint64_t v[NEXP + 1][NBLK];
};

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

static void
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

static void
check_all (struct ctx *c, const struct model *m)
{
  uint16_t x;

  for (x = 1; x <= NEXP; x++)
    check_range (c, m, x, 0, NBLK, 16);
}

/* The fake bucket set's live counts equal the model's data blocks. */
static void
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

/* Dense: short data keys and short deletes only, so that keys pile up
 * (enough to split real-sized nodes).
 */
static bool dense;

/* A random key over the model's range. */
static struct nc_key
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

/* Keys inserted (or attempted) since the last durable commit. */
struct post {
  struct nc_key *k;
  size_t n, cap;
};

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
static int
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

static int
random_insert (struct ctx *c, struct model *m, uint64_t *rs)
{
  return random_insert_post (c, m, rs, NULL);
}

/* What the btree says, block by block, in model form. */
static void
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
static void
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

/* ---- walk helpers ---- */

struct walk_count {
  uint64_t nodes, leaves, keys;
  uint16_t max_level;
  uint32_t leaf_buckets[64];
  size_t nr_leaf_buckets;
  uint32_t all_buckets[4096];
  size_t nr_all;
};

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

static int
walk_count (struct ctx *c, struct walk_count *w)
{
  const struct btree_walk_ops ops = {
    .opaque = w, .node = count_node, .key = count_key,
  };

  memset (w, 0, sizeof *w);
  return btree_walk (c->bt, &ops);
}

/* ---- tests ---- */

static void
test_btree_insert_lookup_single (void **state)
{
  struct ctx c;
  struct btree_piece pc[8];
  struct btree_stats st;
  uint64_t seq = 0;
  bool cut = true;
  struct nc_key k;
  int n;

  ctx_init (&c, 0, 0);
  assert_int_equal (btree_node_max_keys (&c.sb), 1021);
  n = btree_lookup (c.bt, 1, 0, 100, pc, 8, NULL);
  assert_int_equal (n, 1);
  assert_false (pc[0].found);
  assert_int_equal (pc[0].end, 100);

  k = dkey (1, 10, 20, 20, 3, c.bs);
  assert_int_equal (btree_insert (c.bt, &k, 1, &seq, &cut), 0);
  assert_int_equal (seq, 1);
  assert_false (cut);
  assert_true (c.j->needed);    /* a new root */
  assert_int_equal (c.j->nr_open, 1);
  assert_int_equal (c.bs->live[20], 10);

  n = btree_lookup (c.bt, 1, 0, 30, pc, 8, NULL);
  assert_int_equal (n, 3);
  assert_false (pc[0].found);
  assert_int_equal (pc[0].start, 0);
  assert_int_equal (pc[0].end, 10);
  assert_true (pc[1].found);
  assert_int_equal (pc[1].start, 10);
  assert_int_equal (pc[1].end, 20);
  assert_int_equal (pc[1].key.bucket, 20);
  assert_int_equal (pc[1].key.offset, 3);
  assert_false (pc[2].found);
  assert_int_equal (pc[2].end, 30);

  /* Clipped copies; max pieces respected. */
  n = btree_lookup (c.bt, 1, 12, 15, pc, 8, NULL);
  assert_int_equal (n, 1);
  assert_true (pc[0].found);
  assert_int_equal (pc[0].key.offset, 5);
  assert_int_equal (pc[0].key.size, 3);
  assert_int_equal (pc[0].key.end, 15);
  n = btree_lookup (c.bt, 1, 0, 30, pc, 1, NULL);
  assert_int_equal (n, 1);
  assert_int_equal (pc[0].end, 10);

  assert_int_equal (btree_lookup (c.bt, 1, 5, 5, pc, 8, NULL), -EINVAL);
  assert_int_equal (btree_lookup (c.bt, 1, 5, 6, pc, 0, NULL), -EINVAL);
  k.size = 0;
  assert_int_equal (btree_insert (c.bt, &k, 1, NULL, NULL), -EINVAL);

  btree_get_stats (c.bt, &st);
  assert_int_equal (st.depth, 1);
  assert_int_equal (st.dirty_leaves, 1);
  assert_int_equal (st.nodes_in_memory, 1);
  ctx_free (&c);
}

static void
test_btree_cuts (void **state)
{
  struct ctx c;
  struct model *m = calloc (1, sizeof *m);
  struct nc_key k;
  bool cut = false;

  assert_non_null (m);
  ctx_init (&c, 0, 0);
  k = dkey (1, 10, 20, 20, 0, c.bs);
  insert1 (&c, k);
  model_apply (m, &k);
  /* Front. */
  k = dkey (1, 5, 12, 21, 0, c.bs);
  assert_int_equal (btree_insert (c.bt, &k, 1, NULL, &cut), 0);
  assert_true (cut);
  model_apply (m, &k);
  check_all (&c, m);
  /* Back. */
  k = dkey (1, 18, 25, 22, 1, c.bs);
  insert1 (&c, k);
  model_apply (m, &k);
  check_all (&c, m);
  /* Middle: [12, 18) of bucket 20 splits in two around [14, 16). */
  k = dkey (1, 14, 16, 23, 9, c.bs);
  insert1 (&c, k);
  model_apply (m, &k);
  check_all (&c, m);
  check_accounting (&c, m);
  assert_int_equal (c.bs->live[20], 4);
  /* Exactly covering, and covering several keys. */
  k = dkey (1, 14, 16, 24, 0, c.bs);
  insert1 (&c, k);
  model_apply (m, &k);
  k = fkey (1, 3, 26, NC_KEY_ZERO);
  insert1 (&c, k);
  model_apply (m, &k);
  check_all (&c, m);
  check_accounting (&c, m);
  assert_int_equal (c.bs->live[20] + c.bs->live[21] + c.bs->live[22]
                    + c.bs->live[23] + c.bs->live[24], 0);
  /* No overlap: nothing cut. */
  k = dkey (1, 40, 41, 26, 0, c.bs);
  assert_int_equal (btree_insert (c.bt, &k, 1, NULL, &cut), 0);
  assert_false (cut);
  ctx_free (&c);
  free (m);
}

static void
test_btree_cut_across_leaves (void **state)
{
  struct ctx c;
  struct model *m = calloc (1, sizeof *m);
  struct walk_count w;
  struct nc_key k;
  uint64_t i;

  assert_non_null (m);
  ctx_init (&c, 0, 0);
  /* 3000 one-block keys at even blocks: several leaves of 1021. */
  for (i = 0; i < 3000; i++) {
    k = dkey (1, 2 * i, 2 * i + 1, DATA_FIRST + (uint32_t) (i % 200),
              (uint32_t) (i % 16), c.bs);
    insert1 (&c, k);
    model_apply (m, &k);
  }
  assert_int_equal (walk_count (&c, &w), 0);
  assert_true (w.leaves >= 3);
  assert_int_equal (w.keys, 3000);
  check_all (&c, m);
  check_accounting (&c, m);

  /* One ZERO key over most of them, straddling the first and last. */
  k = fkey (1, 1, 5999, NC_KEY_ZERO);
  insert1 (&c, k);
  model_apply (m, &k);
  check_all (&c, m);
  check_accounting (&c, m);
  /* Block 0's key and one ZERO piece in each leaf. */
  assert_int_equal (walk_count (&c, &w), 0);
  assert_int_equal (w.keys, 1 + w.leaves);
  /* A DELETE over a block straddling an existing key's both ends. */
  k = fkey (1, 100, 101, NC_KEY_DELETE);
  insert1 (&c, k);
  model_apply (m, &k);
  check_all (&c, m);
  assert_int_equal (walk_count (&c, &w), 0);
  assert_int_equal (w.keys, 2 + w.leaves);
  ctx_free (&c);
  free (m);
}

static void
test_btree_delete_zero_exports (void **state)
{
  struct ctx c;
  struct model *m = calloc (1, sizeof *m);
  struct btree_piece pc[4];
  struct nc_key k, keys[3];

  assert_non_null (m);
  ctx_init (&c, 0, 0);
  /* The same range in two exports. */
  keys[0] = dkey (1, 100, 200, 30, 0, c.bs);
  keys[0].size = 16;
  keys[0].end = 116;
  keys[1] = fkey (1, 116, 300, NC_KEY_ZERO);
  keys[2] = fkey (1, 150, 160, NC_KEY_DELETE);
  assert_int_equal (btree_insert (c.bt, keys, 3, NULL, NULL), 0);
  model_apply (m, &keys[0]);
  model_apply (m, &keys[1]);
  model_apply (m, &keys[2]);
  assert_int_equal (c.j->nr_open, 3);
  k = dkey (2, 100, 116, 31, 0, c.bs);
  insert1 (&c, k);
  model_apply (m, &k);
  check_all (&c, m);
  check_accounting (&c, m);
  assert_int_equal (c.bs->live[30], 16);
  assert_int_equal (c.bs->live[31], 16);

  assert_int_equal (btree_lookup (c.bt, 1, 120, 130, pc, 4, NULL), 1);
  assert_true (pc[0].found);
  assert_true (bkey_is_zero (&pc[0].key));
  /* Deleting export 2's range leaves export 1 alone. */
  k = fkey (2, 0, 1000, NC_KEY_DELETE);
  insert1 (&c, k);
  model_apply (m, &k);
  check_all (&c, m);
  check_accounting (&c, m);
  /* A DELETE on an empty tree creates nothing. */
  btree_destroy (c.bt);
  ctx_make_btree (&c);
  insert1 (&c, fkey (1, 0, 10, NC_KEY_DELETE));
  assert_int_equal (btree_lookup (c.bt, 1, 0, 10, pc, 4, NULL), 1);
  assert_false (pc[0].found);
  ctx_free (&c);
  free (m);
}

/* Sequential appends with real node sizes until the root has split twice:
 * depth 3.  Spot lookups, walk counts, reload.
 */
static void
test_btree_depth3_sequential (void **state)
{
  struct ctx c;
  struct btree_stats st;
  struct walk_count w;
  struct btree_piece pc[4];
  struct nc_key *batch = malloc (64 * sizeof *batch);
  uint64_t i = 0, n;
  size_t b;

  assert_non_null (batch);
  ctx_init (&c, 0, 0);
  for (;;) {
    for (b = 0; b < 64; b++, i++)
      batch[b] = dkey (1, i, i + 1, DATA_FIRST + (uint32_t) (i % 200),
                       (uint32_t) (i % 16), c.bs);
    assert_int_equal (btree_insert (c.bt, batch, 64, NULL, NULL), 0);
    btree_get_stats (c.bt, &st);
    if (st.depth == 3)
      break;
    assert_true (i < 2000000);
  }
  n = i;
  print_message ("depth 3 after %" PRIu64 " keys, %" PRIu64 " splits, %"
                 PRIu64 " nodes\n", n, st.splits, st.nodes_in_memory);
  assert_int_equal (walk_count (&c, &w), 0);
  assert_int_equal (w.keys, n);
  assert_int_equal (w.max_level, 2);
  for (i = 0; i < n; i += n / 97) {
    assert_int_equal (btree_lookup (c.bt, 1, i, i + 1, pc, 4, NULL), 1);
    assert_true (pc[0].found);
    assert_int_equal (pc[0].key.bucket, DATA_FIRST + (uint32_t) (i % 200));
  }
  assert_int_equal (btree_write_all (c.bt), 0);
  assert_int_equal (ctx_reopen (&c), 0);
  assert_int_equal (walk_count (&c, &w), 0);
  assert_int_equal (w.keys, n);
  btree_get_stats (c.bt, &st);
  assert_int_equal (st.depth, 3);
  ctx_free (&c);
  free (batch);
}

/* Random inserts with tiny nodes against the model; splits at every
 * level; write_all and a fresh btree give the same answers.
 */
static void
model_run (uint32_t max_keys, uint64_t cache_bytes, unsigned ops,
           unsigned min_depth)
{
  struct ctx c;
  struct model *m = calloc (1, sizeof *m);
  struct btree_stats st;
  struct walk_count w;
  uint64_t rs = seed ^ max_keys ^ (cache_bytes << 20);
  unsigned i;

  assert_non_null (m);
  ctx_init (&c, max_keys, cache_bytes);
  for (i = 0; i < ops; i++) {
    assert_int_equal (random_insert (&c, m, &rs), 0);
    if (i % 500 == 499) {
      check_all (&c, m);
      check_accounting (&c, m);
      assert_int_equal (walk_count (&c, &w), 0);
    }
    if (cache_bytes != 0) {
      btree_get_stats (c.bt, &st);
      assert_true (st.node_bytes_in_memory <= cache_bytes);
    }
  }
  check_all (&c, m);
  check_accounting (&c, m);
  btree_get_stats (c.bt, &st);
  print_message ("max_keys %u cache %" PRIu64 ": depth %u, %" PRIu64
                 " splits, %" PRIu64 " node reads, %" PRIu64 " writes, %"
                 PRIu64 " evictions, %" PRIu64 " nodes in memory\n",
                 max_keys, cache_bytes, st.depth, st.splits, st.node_reads,
                 st.node_writes, st.node_evictions, st.nodes_in_memory);
  assert_true (st.depth >= min_depth);
  if (cache_bytes != 0) {
    assert_true (st.node_evictions > 0);
    assert_true (st.node_reads > 0);
  }
  assert_int_equal (btree_write_all (c.bt), 0);
  btree_get_stats (c.bt, &st);
  assert_int_equal (st.dirty_leaves, 0);
  assert_int_equal (ctx_reopen (&c), 0);
  check_all (&c, m);
  assert_int_equal (walk_count (&c, &w), 0);
  ctx_free (&c);
  free (m);
}

static void
test_btree_model_small_nodes (void **state)
{
  model_run (8, 0, 6000, 4);
}

static void
test_btree_model_real_nodes (void **state)
{
  dense = true;
  model_run (0, 0, 8000, 2);
  dense = false;
}

/* Tiny node cache: memory stays under the bound, answers stay right. */
static void
test_btree_model_bounded_cache (void **state)
{
  /* Nodes of 32 keys are ~1.1 KiB: room for about 29, of which the
   * interior nodes (never evicted) take about 6.
   */
  model_run (32, 32768, 4000, 3);
  /* Real nodes (~33 KiB): the root and two leaves. */
  dense = true;
  model_run (0, 3 * 33000, 8000, 2);
  dense = false;
}

static void
test_btree_node_moves (void **state)
{
  struct ctx c;
  struct model *m = calloc (1, sizeof *m);
  struct walk_count w;
  uint32_t first_root, leaf0;
  uint64_t i;
  size_t freed_before;
  struct nc_key k;

  assert_non_null (m);
  ctx_init (&c, 0, 0);
  /* The root leaf: one-block bsets, 16 per bucket. */
  k = dkey (1, 0, 1, 20, 0, c.bs);
  insert1 (&c, k);
  model_apply (m, &k);
  assert_int_equal (ctx_commit (&c), 0);
  first_root = c.j->e[c.j->nr - 1].root.bucket;
  for (i = 1; i < 16; i++) {
    k = dkey (1, i, i + 1, 20, (uint32_t) i, c.bs);
    insert1 (&c, k);
    model_apply (m, &k);
    assert_int_equal (btree_write_all (c.bt), 0);
    assert_int_equal (ctx_commit (&c), 0);
    assert_int_equal (c.j->e[c.j->nr - 1].root.bucket, first_root);
  }
  /* Blocks 0 (empty first bset) .. 15 are used: the next write moves. */
  freed_before = c.bs->nr_freed;
  k = dkey (1, 16, 17, 21, 0, c.bs);
  insert1 (&c, k);
  model_apply (m, &k);
  c.j->needed = false;
  assert_int_equal (btree_write_all (c.bt), 0);
  assert_true (c.j->needed);
  assert_int_equal (c.bs->nr_freed, freed_before + 1);
  assert_int_equal (c.bs->freed[c.bs->nr_freed - 1].bucket, first_root);
  assert_int_equal (c.bs->freed[c.bs->nr_freed - 1].seq, c.j->open_seq);
  assert_int_equal (ctx_reopen (&c), 0);
  assert_true (c.j->e[c.j->nr - 1].root.bucket != first_root);
  check_all (&c, m);

  /* A non-root leaf: its parent is rewritten when it moves. */
  for (i = 100; i < 1200; i++) {
    k = dkey (2, i, i + 1, 22, 0, c.bs);
    insert1 (&c, k);
    model_apply (m, &k);
  }
  assert_int_equal (btree_write_all (c.bt), 0);
  assert_int_equal (walk_count (&c, &w), 0);
  assert_true (w.leaves >= 2);
  leaf0 = w.leaf_buckets[0];
  for (i = 0; i < 20; i++) {
    k = dkey (1, 2 + i, 3 + i, 23, (uint32_t) i % 16, c.bs);
    insert1 (&c, k);
    model_apply (m, &k);
    assert_int_equal (btree_write_all (c.bt), 0);
  }
  assert_int_equal (walk_count (&c, &w), 0);
  assert_true (w.leaf_buckets[0] != leaf0);
  assert_int_equal (ctx_reopen (&c), 0);
  check_all (&c, m);
  assert_int_equal (walk_count (&c, &w), 0);
  ctx_free (&c);
  free (m);
}

/* Find the newest bset of the node in `bucket` (level, nonce). */
static void
newest_bset (struct ctx *c, uint32_t bucket, uint16_t level, uint64_t nonce,
             struct bpos hi, struct nc_key *keys, struct bset_node_info *info)
{
  struct bset_geom g;
  void *buf;

  bset_geom_init (&g, &c->sb, c->max_keys ? c->max_keys
                  : btree_node_max_keys (&c->sb));
  buf = cdev_alloc_buffer ((size_t) g.span_blocks * NC_BLOCK_BYTES);
  assert_non_null (buf);
  assert_int_equal (bset_read_node (&g, c->cd, buf, bucket, level, nonce,
                                    BPOS_MIN, hi, keys, info), 0);
  free (buf);
}

static void
test_btree_torn_and_corrupt_bsets (void **state)
{
  struct ctx c;
  struct btree_piece pc[4];
  struct nc_key root, k;
  uint8_t block[NC_BLOCK_BYTES];
  uint64_t off;

  ctx_init (&c, 0, 0);
  insert1 (&c, dkey (1, 0, 4, 20, 0, c.bs));
  assert_int_equal (btree_write_all (c.bt), 0);     /* bset 2 (1: empty) */
  insert1 (&c, dkey (1, 10, 14, 21, 0, c.bs));
  assert_int_equal (btree_write_all (c.bt), 0);     /* bset 3, block 2 */
  assert_int_equal (btree_journal_close_entry (c.bt, c.j), 0);
  root = c.j->e[c.j->nr - 1].root;
  off = (uint64_t) root.bucket * BUCKET_BLOCKS * NC_BLOCK_BYTES;

  /* Tear the last bset: the one before it is the node. */
  cdev_sim_peek (c.cd, off + 2 * NC_BLOCK_BYTES, block, sizeof block);
  block[sizeof (struct nc_bset) + 4] ^= 0xff;  /* key 0's end */
  cdev_sim_poke (c.cd, off + 2 * NC_BLOCK_BYTES, block, sizeof block);
  assert_int_equal (ctx_reopen (&c), 0);
  assert_int_equal (btree_lookup (c.bt, 1, 0, 4, pc, 4, NULL), 1);
  assert_true (pc[0].found);
  assert_int_equal (btree_lookup (c.bt, 1, 10, 14, pc, 4, NULL), 1);
  assert_false (pc[0].found);
  /* The next write goes over the torn one and is read back. */
  insert1 (&c, dkey (1, 20, 24, 22, 0, c.bs));
  assert_int_equal (btree_write_all (c.bt), 0);
  assert_int_equal (ctx_reopen (&c), 0);
  assert_int_equal (btree_lookup (c.bt, 1, 20, 24, pc, 4, NULL), 1);
  assert_true (pc[0].found);

  /* A bad first bset: the node is refused, naming its bucket. */
  root = c.j->e[c.j->nr - 1].root;
  off = (uint64_t) root.bucket * BUCKET_BLOCKS * NC_BLOCK_BYTES;
  cdev_sim_peek (c.cd, off, block, sizeof block);
  block[20] ^= 0x01;
  cdev_sim_poke (c.cd, off, block, sizeof block);
  nr_log_errors = 0;
  btree_destroy (c.bt);
  ctx_make_btree (&c);
  assert_int_equal (btree_set_root (c.bt, &root, 0), -EBADMSG);
  assert_true (nr_log_errors > 0);
  {
    char want[64];

    snprintf (want, sizeof want, "bucket %u", root.bucket);
    assert_non_null (strstr (last_error, want));
  }
  /* A stale root pointer (gen moved on) is refused too. */
  k = root;
  k.gen++;
  assert_int_equal (btree_set_root (c.bt, &k, 0), -EBADMSG);
  ctx_free (&c);
}

static void
test_btree_stale_keys (void **state)
{
  struct ctx c;
  struct btree_piece pc[4];
  struct walk_count w;
  struct nc_key k;
  bool cut = true;

  ctx_init (&c, 0, 0);
  insert1 (&c, dkey (1, 0, 8, 40, 0, c.bs));
  insert1 (&c, dkey (1, 8, 16, 41, 0, c.bs));
  insert1 (&c, dkey (1, 16, 24, 40, 8, c.bs));
  assert_int_equal (c.bs->live[40], 16);
  c.bs->gen[40]++;              /* bucket 40 invalidated */
  assert_int_equal (btree_lookup (c.bt, 1, 0, 24, pc, 4, NULL), 3);
  assert_false (pc[0].found);
  assert_true (pc[1].found);
  assert_false (pc[2].found);
  /* A cut meeting a stale key drops it without accounting, but reports
   * `cut` (the gen bump that made it stale may not be durable yet).
   */
  k = fkey (1, 4, 6, NC_KEY_DELETE);
  assert_int_equal (btree_insert (c.bt, &k, 1, NULL, &cut), 0);
  assert_true (cut);
  assert_int_equal (c.bs->live[40], 16);
  assert_int_equal (walk_count (&c, &w), 0);
  assert_int_equal (w.keys, 2);
  /* A stale key is never stored. */
  k = dkey (1, 30, 31, 40, 0, c.bs);
  k.gen--;
  insert1 (&c, k);
  assert_int_equal (walk_count (&c, &w), 0);
  assert_int_equal (w.keys, 2);
  /* The sweep drops what is left and notes live keys' gens. */
  assert_int_equal (btree_sweep (c.bt), 0);
  assert_int_equal (c.bs->gc_begins, 1);
  assert_int_equal (c.bs->gc_ends, 1);
  assert_int_equal (c.bs->gc_notes, 1);
  assert_int_equal (walk_count (&c, &w), 0);
  assert_int_equal (w.keys, 1);
  assert_int_equal (btree_lookup (c.bt, 1, 0, 24, pc, 4, NULL), 3);
  assert_true (pc[1].found);
  ctx_free (&c);
}

static void
test_btree_placeholders (void **state)
{
  struct ctx c;
  struct btree_piece pc[4];
  struct btree_stats st;
  uint64_t ph1, ph2, ph3;
  bool inserted;
  struct nc_key k;

  ctx_init (&c, 0, 0);
  insert1 (&c, dkey (1, 10, 20, 20, 0, c.bs));
  assert_int_equal (btree_lookup (c.bt, 1, 0, 10, pc, 4, &ph1), 1);
  assert_true (ph1 != 0);
  assert_int_equal (btree_lookup (c.bt, 1, 30, 40, pc, 4, &ph2), 1);
  assert_int_equal (btree_lookup (c.bt, 1, 50, 60, pc, 4, &ph3), 1);
  assert_true (ph1 != ph2 && ph2 != ph3);

  /* A write overlapping ph2 kills it; a write elsewhere does not hurt
   * ph1; other exports do not count.
   */
  insert1 (&c, dkey (1, 39, 41, 21, 0, c.bs));
  insert1 (&c, dkey (2, 0, 10, 21, 2, c.bs));
  insert1 (&c, fkey (1, 10, 11, NC_KEY_DELETE)); /* touching, not over */

  k = dkey (1, 0, 10, 22, 0, c.bs);
  assert_int_equal (btree_insert_promoted (c.bt, ph1, &k, &inserted, NULL), 0);
  assert_true (inserted);
  assert_int_equal (btree_lookup (c.bt, 1, 0, 10, pc, 4, NULL), 1);
  assert_true (pc[0].found);
  assert_int_equal (pc[0].key.bucket, 22);

  k = dkey (1, 30, 40, 23, 0, c.bs);
  assert_int_equal (btree_insert_promoted (c.bt, ph2, &k, &inserted, NULL), 0);
  assert_false (inserted);
  assert_int_equal (btree_lookup (c.bt, 1, 30, 39, pc, 4, NULL), 1);
  assert_false (pc[0].found);
  /* Used once: a second promotion with the same id is refused. */
  k = dkey (1, 0, 10, 24, 0, c.bs);
  assert_int_equal (btree_insert_promoted (c.bt, ph1, &k, &inserted, NULL), 0);
  assert_false (inserted);

  /* Trim kills; dropped placeholders are gone. */
  insert1 (&c, fkey (1, 55, 56, NC_KEY_DELETE));
  k = dkey (1, 50, 60, 25, 0, c.bs);
  assert_int_equal (btree_insert_promoted (c.bt, ph3, &k, &inserted, NULL), 0);
  assert_false (inserted);
  assert_int_equal (btree_lookup (c.bt, 1, 70, 80, pc, 4, &ph1), 1);
  btree_placeholder_drop (c.bt, ph1);
  k = dkey (1, 70, 80, 25, 0, c.bs);
  assert_int_equal (btree_insert_promoted (c.bt, ph1, &k, &inserted, NULL), 0);
  assert_false (inserted);
  btree_get_stats (c.bt, &st);
  assert_int_equal (st.placeholders_killed, 2);
  /* The placeholder covers the pieces returned, not the whole request. */
  assert_int_equal (btree_lookup (c.bt, 1, 0, 100, pc, 1, &ph1), 1);
  assert_int_equal (pc[0].end, 10);
  insert1 (&c, dkey (1, 50, 51, 26, 0, c.bs));
  k = dkey (1, 0, 10, 27, 0, c.bs);
  assert_int_equal (btree_insert_promoted (c.bt, ph1, &k, &inserted, NULL), 0);
  assert_true (inserted);
  ctx_free (&c);
}

static void
test_btree_walk_and_unsorted_node (void **state)
{
  struct ctx c;
  struct walk_count w;
  struct nc_key *keys = malloc (1021 * sizeof *keys), root;
  struct bset_node_info info;
  struct nc_bset *h;
  uint8_t *buf;
  uint32_t leaf, blk, i;
  uint64_t off;

  assert_non_null (keys);
  ctx_init (&c, 0, 0);
  for (i = 0; i < 3000; i++)
    insert1 (&c, dkey (1, 3 * i, 3 * i + 2, 20 + i % 50, i % 8, c.bs));
  assert_int_equal (walk_count (&c, &w), 0);
  assert_int_equal (w.keys, 3000);
  assert_int_equal (w.nodes, w.leaves + 1);
  assert_int_equal (btree_write_all (c.bt), 0);
  assert_int_equal (ctx_reopen (&c), 0);
  root = c.j->e[c.j->nr - 1].root;
  assert_int_equal (c.j->e[c.j->nr - 1].level, 1);
  assert_int_equal (root.size, 1);
  assert_int_equal (root.end, UINT64_MAX);
  assert_int_equal (root.export_id, NC_EXPORT_ID_MAX);

  /* The second leaf: swap two keys in its newest bset, fix the csum. */
  newest_bset (&c, root.bucket, 1, root.nonce, BPOS_MAX, keys, &info);
  leaf = keys[1].bucket;
  newest_bset (&c, leaf, 0, keys[1].nonce, bpos_of (&keys[1]), keys, &info);
  blk = info.next_block - bset_blocks (info.nkeys);
  off = ((uint64_t) leaf * BUCKET_BLOCKS + blk) * NC_BLOCK_BYTES;
  buf = malloc ((size_t) bset_blocks (info.nkeys) * NC_BLOCK_BYTES);
  assert_non_null (buf);
  cdev_sim_peek (c.cd, off, buf, (size_t) bset_blocks (info.nkeys)
                 * NC_BLOCK_BYTES);
  h = (struct nc_bset *) buf;
  assert_int_equal (h->nkeys, info.nkeys);
  root = h->keys[3];
  h->keys[3] = h->keys[4];
  h->keys[4] = root;
  h->csum = nc_csum (h, sizeof *h + h->nkeys * sizeof (struct nc_key));
  cdev_sim_poke (c.cd, off, buf, (size_t) bset_blocks (info.nkeys)
                 * NC_BLOCK_BYTES);
  assert_int_equal (ctx_reopen (&c), 0);
  nr_log_errors = 0;
  assert_int_equal (walk_count (&c, &w), -EBADMSG);
  assert_true (nr_log_errors > 0);
  assert_non_null (strstr (last_error, "not sorted"));
  assert_int_equal (w.leaves, 1);       /* stopped at the second leaf */
  ctx_free (&c);
  free (buf);
  free (keys);
}

static int
stop_at_third (void *opaque, const struct nc_key *k)
{
  int *n = opaque;

  return ++*n == 3 ? 42 : 0;
}

static void
test_btree_walk_stops (void **state)
{
  struct ctx c;
  int n = 0;
  const struct btree_walk_ops ops = { .opaque = &n, .key = stop_at_third };

  ctx_init (&c, 0, 0);
  assert_int_equal (btree_walk (c.bt, &ops), 0);      /* empty tree */
  insert1 (&c, dkey (1, 0, 1, 20, 0, c.bs));
  insert1 (&c, dkey (1, 1, 2, 20, 1, c.bs));
  insert1 (&c, dkey (1, 2, 3, 20, 2, c.bs));
  insert1 (&c, dkey (1, 3, 4, 20, 3, c.bs));
  assert_int_equal (btree_walk (c.bt, &ops), 42);
  assert_int_equal (n, 3);
  ctx_free (&c);
}

static void
test_btree_journal_hooks (void **state)
{
  struct ctx c;
  struct btree_stats st;
  struct walk_count w;
  uint64_t seq = 0, i;

  ctx_init (&c, 8, 0);
  /* Empty tree: size 0 root, no pin. */
  assert_int_equal (btree_journal_close_entry (c.bt, c.j), 0);
  assert_int_equal (c.j->e[0].root.size, 0);
  assert_int_equal (c.j->e[0].last_seq, 1);
  /* seq 2: keys into two leaves far apart. */
  for (i = 0; i < 40; i++) {
    struct nc_key k = dkey (1, i * 100, i * 100 + 1, 20, 0, c.bs);

    assert_int_equal (btree_insert (c.bt, &k, 1, &seq, NULL), 0);
    assert_int_equal (seq, 2);
  }
  assert_int_equal (btree_write_all (c.bt), 0);
  assert_int_equal (ctx_commit (&c), 0);  /* entry 2 */
  assert_int_equal (c.j->e[1].last_seq, 2);
  assert_int_equal (c.j->e[1].nkeys, 40);
  /* seq 3 dirties the leaf of block 0; seq 4 the leaf of block 3900
   * (replacing a key: no leaf grows, none splits).
   */
  insert1 (&c, dkey (1, 0, 1, 20, 1, c.bs));
  assert_int_equal (ctx_commit (&c), 0);  /* entry 3, pin 3 */
  assert_int_equal (c.j->e[2].last_seq, 3);
  insert1 (&c, dkey (1, 3900, 3901, 20, 2, c.bs));
  assert_int_equal (ctx_commit (&c), 0);  /* entry 4, pin still 3 */
  assert_int_equal (c.j->e[3].last_seq, 3);
  btree_get_stats (c.bt, &st);
  assert_int_equal (st.dirty_leaves, 2);
  /* Reclaim below 4 writes only the first leaf. */
  assert_int_equal (btree_write_pinned (c.bt, 4), 0);
  btree_get_stats (c.bt, &st);
  assert_int_equal (st.dirty_leaves, 1);
  assert_int_equal (ctx_commit (&c), 0);  /* entry 5 */
  assert_int_equal (c.j->e[4].last_seq, 4);
  assert_int_equal (btree_write_pinned (c.bt, UINT64_MAX), 0);
  assert_int_equal (ctx_commit (&c), 0);  /* entry 6: nothing pinned */
  assert_int_equal (c.j->e[5].last_seq, 6);
  assert_int_equal (walk_count (&c, &w), 0);
  assert_int_equal (w.keys, 40);
  ctx_free (&c);
}

static void
test_btree_replay (void **state)
{
  struct ctx c;
  struct btree_piece pc[4];
  struct nc_key k;
  size_t adds;

  ctx_init (&c, 0, 0);
  insert1 (&c, dkey (1, 0, 10, 20, 0, c.bs));
  adds = c.j->nr_open;
  btree_set_accounting (c.bt, false);
  k = dkey (1, 5, 15, 21, 0, c.bs);
  assert_int_equal (btree_replay_key (c.bt, &k), 0);
  assert_int_equal (c.j->nr_open, adds);      /* not journaled again */
  assert_int_equal (c.bs->live[21], 0);       /* not accounted */
  assert_int_equal (c.bs->live[20], 10);
  /* A stale replayed key is not stored but still cuts what it covered. */
  k = dkey (1, 0, 3, 22, 0, c.bs);
  k.gen = (uint8_t) (c.bs->gen[22] + 1);
  assert_int_equal (btree_replay_key (c.bt, &k), 0);
  assert_int_equal (btree_lookup (c.bt, 1, 0, 15, pc, 4, NULL), 3);
  assert_false (pc[0].found);
  assert_int_equal (pc[0].end, 3);
  assert_int_equal (pc[1].key.bucket, 20);
  assert_int_equal (pc[2].key.bucket, 21);
  k = fkey (1, 0, 100, NC_KEY_DELETE);
  assert_int_equal (btree_replay_key (c.bt, &k), 0);
  btree_set_accounting (c.bt, true);
  assert_int_equal (btree_lookup (c.bt, 1, 0, 15, pc, 4, NULL), 1);
  assert_false (pc[0].found);
  ctx_free (&c);
}

/* A split that fails (write error, no bucket) leaves the key inserted in
 * an over-full leaf and returns the error; the next insert there splits
 * first.  A failed lazy write keeps the leaf dirty.  All can be retried.
 */
static void
test_btree_write_failures (void **state)
{
  struct ctx c;
  struct model *m = calloc (1, sizeof *m);
  struct btree_stats st;
  struct walk_count w;
  struct nc_key k;
  uint64_t i;
  int r;

  assert_non_null (m);
  ctx_init (&c, 8, 0);
  for (i = 0; i < 8; i++) {
    k = dkey (1, i, i + 1, 20, (uint32_t) i, c.bs);
    insert1 (&c, k);
    model_apply (m, &k);
  }
  /* The root leaf is full: the next insert splits and writes. */
  k = dkey (1, 100, 101, 21, 0, c.bs);
  cdev_sim_fail_at_write (c.cd, cdev_sim_nr_writes (c.cd) + 1);
  assert_int_equal (btree_insert (c.bt, &k, 1, NULL, NULL), -EIO);
  model_apply (m, &k);
  btree_get_stats (c.bt, &st);
  assert_int_equal (st.depth, 1);
  check_all (&c, m);
  assert_int_equal (walk_count (&c, &w), 0);
  assert_int_equal (w.keys, 9);
  cdev_sim_crash (c.cd, 0);     /* the device comes back */
  k = dkey (1, 101, 102, 21, 1, c.bs);
  insert1 (&c, k);
  model_apply (m, &k);
  btree_get_stats (c.bt, &st);
  assert_int_equal (st.depth, 2);
  check_all (&c, m);

  /* No node bucket: -ENOSPC, nothing changed, then fine. */
  for (i = 200; ; i++) {
    k = dkey (1, i, i + 1, 22, 0, c.bs);
    c.bs->fail_alloc = true;
    r = btree_insert (c.bt, &k, 1, NULL, NULL);
    c.bs->fail_alloc = false;
    model_apply (m, &k);
    if (r == -ENOSPC)
      break;
    assert_int_equal (r, 0);
  }
  check_all (&c, m);
  assert_int_equal (walk_count (&c, &w), 0);
  k = dkey (1, i + 1, i + 2, 22, 1, c.bs);
  insert1 (&c, k);
  model_apply (m, &k);
  check_all (&c, m);
  assert_int_equal (walk_count (&c, &w), 0);

  /* A failed lazy leaf write keeps the leaf dirty; the retry writes it. */
  k = dkey (1, 300, 301, 22, 1, c.bs);
  insert1 (&c, k);
  model_apply (m, &k);
  cdev_sim_fail_at_write (c.cd, cdev_sim_nr_writes (c.cd) + 1);
  assert_int_equal (btree_write_all (c.bt), -EIO);
  btree_get_stats (c.bt, &st);
  assert_true (st.dirty_leaves > 0);
  cdev_sim_crash (c.cd, 0);
  assert_int_equal (btree_write_all (c.bt), 0);
  assert_int_equal (ctx_reopen (&c), 0);
  check_all (&c, m);
  ctx_free (&c);
  free (m);
}

/* Recovery as device.c does it: the newest durable entry's root, then
 * its keys last_seq .. seq replayed without accounting.
 */
static int
recover (struct ctx *c)
{
  struct journal *j = c->j;
  const struct fj_entry *e;
  struct walk_count w;
  size_t i, k;
  int r;

  fj_free_entries_after (j, j->durable_seq);
  free (j->open_keys);
  j->open_keys = NULL;
  j->nr_open = j->cap_open = 0;
  assert_true (j->nr > 0);
  e = &j->e[j->nr - 1];
  j->open_seq = e->seq + 1;
  btree_destroy (c->bt);
  ctx_make_btree (c);
  if ((r = btree_set_root (c->bt, &e->root, e->level)) < 0)
    return r;
  /* Walk #1: the node buckets of the recovered tree. */
  memset (c->bs->node, 0, sizeof c->bs->node);
  if ((r = walk_count (c, &w)) < 0)
    return r;
  for (i = 0; i < w.nr_all; i++)
    c->bs->node[w.all_buckets[i]] = true;
  /* Node buckets the recovered tree does not use are free again (reuse
   * bumps their gen), as after bucket_mark_done.
   */
  c->bs->nr_freed = 0;
  for (i = DATA_FIRST + DATA_BUCKETS; i < c->bs->next_node; i++)
    if (!c->bs->node[i]) {
      c->bs->node[i] = true;
      bucket_free_node (c->bs, (uint32_t) i, 0);
    }
  btree_set_accounting (c->bt, false);
  for (i = 0; i < j->nr; i++)
    if (j->e[i].seq >= e->last_seq)
      for (k = 0; k < j->e[i].nkeys; k++)
        if ((r = btree_replay_key (c->bt, &j->e[i].keys[k])) < 0)
          return r;
  btree_set_accounting (c->bt, true);
  if ((r = btree_write_all (c->bt)) < 0)
    return r;
  /* Recount like walk #2; mark node buckets. */
  memset (c->bs->live, 0, sizeof c->bs->live);
  memset (c->bs->node, 0, sizeof c->bs->node);
  if ((r = walk_count (c, &w)) < 0)
    return r;
  for (i = 0; i < w.nr_all; i++)
    c->bs->node[w.all_buckets[i]] = true;
  assert_true (w.nr_all < 4096);
  return 0;
}

static int
recount_key (void *opaque, const struct nc_key *k)
{
  bucket_account (opaque, k, +1);
  return 0;
}

static void
test_btree_crash_recovery (void **state)
{
  struct ctx c;
  struct model *m = calloc (1, sizeof *m), *durable = calloc (1, sizeof *m);
  struct model *got = calloc (1, sizeof *m);
  struct post post = { 0 };
  uint64_t rs = seed ^ UINT64_C (0xc0ffee);
  unsigned round, crashes = 0, failed_ops = 0, newer = 0;

  assert_non_null (m);
  assert_non_null (durable);
  ctx_init (&c, 8, 6000);
  assert_int_equal (ctx_commit (&c), 0);
  for (round = 0; round < 60; round++) {
    unsigned ops = 20 + (unsigned) rng_below (&rs, 200), i;
    bool die = rng_below (&rs, 3) != 0;
    const struct btree_walk_ops recount = {
      .opaque = c.bs, .key = recount_key,
    };
    int r = 0;

    if (die)
      cdev_sim_fail_at_write (c.cd, cdev_sim_nr_writes (c.cd) + 1
                              + rng_below (&rs, 150));
    for (i = 0; i < ops && r == 0; i++) {
      unsigned what = (unsigned) rng_below (&rs, 100);

      if (what < 85)
        r = random_insert_post (&c, m, &rs, &post);
      else if (what < 95) {
        r = ctx_commit (&c);
        if (r == 0) {
          memcpy (durable, m, sizeof *m);
          post.n = 0;
        }
      }
      else
        r = btree_write_pinned (c.bt, c.j->durable_seq);
    }
    if (r != 0)
      failed_ops++;
    /* Power loss: unsynced blocks survive or not, at random. */
    cdev_sim_crash (c.cd, rng_next (&rs) | 1);
    crashes++;
    r = recover (&c);
    if (r != 0)
      fail_msg ("recovery failed: %d (round %u, seed %" PRIu64 ")", r, round,
                seed);
    model_from_btree (&c, got);
    check_after_crash (got, durable, &post);
    if (memcmp (got, durable, sizeof *got) != 0)
      newer++;
    memcpy (m, got, sizeof *m);
    memcpy (durable, got, sizeof *m);
    post.n = 0;
    check_all (&c, m);
    memset (c.bs->live, 0, sizeof c.bs->live);
    assert_int_equal (btree_walk (c.bt, &recount), 0);
    check_accounting (&c, m);
  }
  print_message ("%u crashes, %u rounds ended by a dead device, %u "
                 "recovered newer than the durable entry\n", crashes,
                 failed_ops, newer);
  ctx_free (&c);
  free (m);
  free (durable);
  free (got);
  free (post.k);
}

/* ---- threads ---- */

struct thread_arg {
  struct ctx *c;
  struct model *m;
  uint16_t x;
  uint64_t rs;
  unsigned ops;
  int r;
};

static bool threads_done;

static void *
inserter (void *opaque)
{
  struct thread_arg *a = opaque;
  unsigned i;

  for (i = 0; i < a->ops && a->r == 0; i++) {
    struct nc_key k = random_key (a->c, &a->rs, a->x);
    struct btree_piece pc[4];
    uint64_t ph;

    a->r = btree_insert (a->c->bt, &k, 1, NULL, NULL);
    if (a->r == 0)
      model_apply (a->m, &k);
    if (a->r == 0 && i % 7 == 0) {
      a->r = btree_lookup (a->c->bt, a->x, bkey_start (&k), k.end, pc, 4,
                           &ph);
      btree_placeholder_drop (a->c->bt, ph);
      a->r = a->r > 0 ? 0 : -1;
    }
  }
  return NULL;
}

static void *
committer (void *opaque)
{
  struct thread_arg *a = opaque;

  while (!__atomic_load_n (&threads_done, __ATOMIC_ACQUIRE) && a->r == 0) {
    uint64_t seq;

    a->r = btree_journal_close_entry (a->c->bt, a->c->j);
    seq = journal_open_seq (a->c->j);
    if (a->r == 0)
      a->r = btree_write_pinned (a->c->bt, seq);
    sched_yield ();
  }
  return NULL;
}

static void
test_btree_threads (void **state)
{
  struct ctx c;
  struct model *m = calloc (1, sizeof *m);
  struct thread_arg args[4];
  pthread_t th[4];
  struct walk_count w;
  int i;

  assert_non_null (m);
  ctx_init (&c, 16, 20000);
  threads_done = false;
  for (i = 0; i < 4; i++) {
    args[i] = (struct thread_arg) {
      .c = &c, .m = m, .x = (uint16_t) (i + 1), .rs = seed + (uint64_t) i,
      .ops = 3000,
    };
    assert_int_equal (pthread_create (&th[i], NULL,
                                      i < 3 ? inserter : committer,
                                      &args[i]), 0);
  }
  for (i = 0; i < 3; i++)
    pthread_join (th[i], NULL);
  __atomic_store_n (&threads_done, true, __ATOMIC_RELEASE);
  pthread_join (th[3], NULL);
  for (i = 0; i < 4; i++)
    assert_int_equal (args[i].r, 0);
  check_all (&c, m);
  check_accounting (&c, m);
  assert_int_equal (walk_count (&c, &w), 0);
  assert_int_equal (btree_write_all (c.bt), 0);
  assert_int_equal (ctx_reopen (&c), 0);
  check_all (&c, m);
  ctx_free (&c);
  free (m);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_btree_insert_lookup_single),
    cmocka_unit_test (test_btree_cuts),
    cmocka_unit_test (test_btree_cut_across_leaves),
    cmocka_unit_test (test_btree_delete_zero_exports),
    cmocka_unit_test (test_btree_depth3_sequential),
    cmocka_unit_test (test_btree_model_small_nodes),
    cmocka_unit_test (test_btree_model_real_nodes),
    cmocka_unit_test (test_btree_model_bounded_cache),
    cmocka_unit_test (test_btree_node_moves),
    cmocka_unit_test (test_btree_torn_and_corrupt_bsets),
    cmocka_unit_test (test_btree_stale_keys),
    cmocka_unit_test (test_btree_placeholders),
    cmocka_unit_test (test_btree_walk_and_unsorted_node),
    cmocka_unit_test (test_btree_walk_stops),
    cmocka_unit_test (test_btree_journal_hooks),
    cmocka_unit_test (test_btree_replay),
    cmocka_unit_test (test_btree_write_failures),
    cmocka_unit_test (test_btree_crash_recovery),
    cmocka_unit_test (test_btree_threads),
  };
  const char *s = getenv ("NBDCACHE_SEED");

  verbose = getenv ("NBDCACHE_TEST_VERBOSE") != NULL;
  log_set_sink (capture_log);
  seed = s != NULL && *s ? strtoull (s, NULL, 0)
    : (uint64_t) time (NULL) ^ ((uint64_t) getpid () << 16);
  printf ("test-btree: seed %" PRIu64 " (NBDCACHE_SEED=%" PRIu64
          " to replay)\n", seed, seed);
  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
