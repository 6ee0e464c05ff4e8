/* SPDX-License-Identifier: BSD-3-Clause */
/* btree.c — the index: a B+tree of extent keys (see btree.h).
 *
 * WHAT: btree.h's API: lookups, inserts (cut and store, leaf by leaf),
 * splits, placeholders, the journal hooks (root and oldest pin, writing
 * pinned leaves) and recovery (root, replay, walk).  The walks that run
 * beside requests — the incremental GC pass, scans and replace-if-
 * unchanged — are btree-walk.c.  bnode.c keeps nodes in memory and writes
 * them; bset.c is the on-disk format of a node.
 * WHY: the index is what makes cached data findable and what a crash must
 * leave consistent; this file owns its shape.
 * INVARIANTS:
 * - All leaves are at level 0.  An interior node's pointers are strictly
 *   increasing positions (export_id, end) and its last one equals its
 *   upper bound `hi`; the root's hi is (NC_EXPORT_ID_MAX, UINT64_MAX).
 * - Each leaf owns the blocks between its bounds: a key of a leaf with
 *   bounds (lo, hi] ends at or below hi and, if it is of lo's export,
 *   starts at or after lo.end.  So an insert is applied leaf by leaf, one
 *   piece of the key in each leaf it spans, and a leaf never holds the cut
 *   of an insert without its piece: whenever a leaf is written, each of
 *   its blocks holds its old value or the new one.  (A key cut in one leaf
 *   and stored whole in another could be written half, and a crash would
 *   then lose a flushed write under an unflushed one.)
 * - A node holds at most max_keys keys, except just after one change to a
 *   leaf (at most two more), after which the leaf is split at once; if
 *   that split fails, the next change splits first.  A full parent is
 *   split before it gets another pointer.
 * - Splits: both halves are written and synced, then the parent is
 *   rewritten (a split root gets a new root, recorded by the next
 *   journal entry), then the old bucket is freed at the journal's open
 *   seq.  Appending inserts split 7:1 so that sequential writes fill
 *   leaves.
 * THREADS AND LOCKS: one mutex, bt->lock, around every public call,
 * including node reads and writes; journal and bucket calls are made with
 * it held (lock order btree -> journal -> bucket).  The journal's hooks
 * take it themselves.  btree_lookup_nowait only tries the lock and reads
 * no node (bt->no_node_reads, set while it holds the lock): -EAGAIN
 * instead of waiting.  bt->gc_lock serialises GC passes; it is taken
 * before bt->lock and never by request paths.
 * FAILURE: -EINVAL for a malformed key; -EBADMSG (logged with the bucket)
 * for a node that fails a check; -EIO and friends from the device;
 * -ENOSPC when no node bucket can be had; -ENOMEM.  An insert that fails
 * part way keeps (and journals) what it applied.  After a broken write
 * (bnode.c) every insert returns that error.
 * NOT HERE: node memory, eviction and node writes (bnode.c), the bset
 * format (bset.c), the GC pass, scans and replace (btree-walk.c), buckets,
 * the journal.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/random.h>

#include "bkey.h"
#include "bset.h"
#include "btree-internal.h"
#include "btree.h"
#include "bucket.h"
#include "cdev.h"
#include "compiler.h"
#include "invariant.h"
#include "journal.h"
#include "log.h"
#include "ondisk.h"

#define HASH_MIN_SIZE 256u
#define PLACEHOLDERS_MIN 16u

uint32_t
btree_node_max_keys (const struct nc_sb *sb)
{
  uint64_t half = (uint64_t) sb->bucket_blocks * NC_BLOCK_BYTES / 2;
  uint64_t n = (half - sizeof (struct nc_bset)) / sizeof (struct nc_key);

  return (uint32_t) MIN (n, 4096);
}

static struct nc_key
ptr_key (const struct btree_node *n, struct bpos pos)
{
  struct nc_key k;

  memset (&k, 0, sizeof k);
  k.end = pos.end;
  k.export_id = pos.export_id;
  k.bucket = n->bucket;
  k.gen = n->gen;
  k.nonce = n->nonce;
  return k;
}

/* ---- paths ---- */

/* bt->path from the root down to level `stop`, towards position
 * (export_id, end).  The tree is not empty.
 */
int
path_find (struct btree *bt, uint16_t export_id, uint64_t end, uint16_t stop)
{
  struct btree_path *p = &bt->path;
  struct btree_node *n = bt->root;
  struct bpos lo = BPOS_MIN;
  uint16_t l = n->level;
  int r;

  p->depth = (uint16_t) (l + 1);
  for (;;) {
    uint32_t i = lower_bound (n, export_id, end);

    p->node[l] = n;
    p->idx[l] = i;
    p->lo[l] = lo;
    if (l == stop)
      break;
    if (unlikely (i >= n->nkeys)) {
      log_error ("btree: interior node in bucket %" PRIu32 " does not cover "
                 "its range", n->bucket);
      return -EIO;
    }
    if ((r = bnode_child (bt, n, i, lo, &n)) < 0)
      return r;
    if (i > 0)
      lo = bpos_of (&p->node[l]->keys[i - 1]);
    l--;
  }
  return 0;
}

/* Move bt->path to the first key of the next leaf.  1 if there is none. */
int
path_next_leaf (struct btree *bt)
{
  struct btree_path *p = &bt->path;
  uint16_t l;
  int r;

  for (l = 1; l < p->depth; l++)
    if (p->idx[l] + 1 < p->node[l]->nkeys)
      break;
  if (l >= p->depth)
    return 1;
  p->idx[l]++;
  while (l > 0) {
    struct btree_node *n = p->node[l], *c;
    uint32_t i = p->idx[l];
    struct bpos lo = i > 0 ? bpos_of (&n->keys[i - 1]) : p->lo[l];

    if ((r = bnode_child (bt, n, i, p->lo[l], &c)) < 0)
      return r;
    l--;
    p->node[l] = c;
    p->idx[l] = 0;
    p->lo[l] = lo;
  }
  return 0;
}

/* ---- splits ---- */

/* Split bt->path.node[level] in two new nodes; its parent gets one more
 * pointer (split first if full); splitting the root grows the tree.  ins
 * is where the last key went (a leaf) or where the new pointer will go
 * (a parent): at the end, the split is 7:1 so that sequential inserts
 * fill nodes.  bt->path is invalid afterwards.
 */
static int
split (struct btree *bt, uint16_t level, uint32_t ins)
{
  struct btree_path *p = &bt->path;
  struct btree_node *nd = p->node[level], *parent = NULL;
  struct btree_node *a = NULL, *b = NULL, *root = NULL, *pair[2];
  uint32_t n = nd->nkeys, mid, pi = 0;
  int r;

  if (nd != bt->root) {
    parent = p->node[level + 1];
    if (parent->nkeys >= bt->geom.max_keys) {
      struct bpos hi = nd->hi;

      if ((r = split (bt, (uint16_t) (level + 1), p->idx[level + 1])) < 0)
        return r;
      if ((r = path_find (bt, hi.export_id, hi.end, level)) < 0)
        return r;
      if (p->node[level] != nd) {
        log_error ("btree: lost the node in bucket %" PRIu32 " while "
                   "splitting its parent", nd->bucket);
        return -EIO;
      }
      parent = p->node[level + 1];
    }
    pi = p->idx[level + 1];
  } else if (nd->level + 1 >= BTREE_MAX_DEPTH) {
    log_error ("btree: the tree is %d levels deep and cannot grow",
               BTREE_MAX_DEPTH);
    return -ENOSPC;
  }

  if (n < 2) {
    log_error ("btree: asked to split a node of %" PRIu32 " keys", n);
    return -EIO;
  }
  mid = ins + 1 >= n ? n - n / 8 : n / 2;
  if (mid == 0 || mid >= n)
    mid = n / 2;
  if ((r = bnode_new (bt, level, &a)) < 0 ||
      (r = bnode_new (bt, level, &b)) < 0 ||
      (parent == NULL && (r = bnode_new (bt, (uint16_t) (level + 1),
                                         &root)) < 0))
    goto discard;
  memcpy (a->keys, nd->keys, (size_t) mid * sizeof *nd->keys);
  a->nkeys = mid;
  a->hi = bpos_of (&nd->keys[mid - 1]);
  memcpy (b->keys, nd->keys + mid, (size_t) (n - mid) * sizeof *nd->keys);
  b->nkeys = n - mid;
  b->hi = nd->hi;
  pair[0] = a;
  pair[1] = b;
  if ((r = bnode_write (bt, pair, 2)) < 0)
    goto discard;

  if (parent == NULL) {
    root->keys[0] = ptr_key (a, a->hi);
    root->keys[1] = ptr_key (b, BPOS_MAX);
    root->nkeys = 2;
    root->hi = BPOS_MAX;
    if ((r = bnode_write (bt, &root, 1)) < 0)
      goto discard;
    bt->root = root;
    if (bt->journal != NULL)
      journal_mark_needed (bt->journal);
  }
  else {
    memmove (&parent->keys[pi + 1], &parent->keys[pi],
             (size_t) (parent->nkeys - pi) * sizeof *parent->keys);
    parent->keys[pi] = ptr_key (a, a->hi);
    parent->keys[pi + 1] = ptr_key (b, b->hi);
    parent->nkeys++;
    r = bnode_write (bt, &parent, 1);
    if (r < 0)
      bnode_set_broken (bt, r,
                        "the parent of a split node could not be written");
  }

  /* nd's keys live in a and b now (in memory, and on disk unless
   * broken).
   */
  if (level == 0) {
    bnode_lru_add (bt, a);
    bnode_lru_add (bt, b);
  }
  if (r == 0)
    bucket_free_node (bt->bs, nd->bucket, bnode_open_seq (bt));
  bnode_release (bt, nd, true);
  bt->splits++;
  return r;

 discard:
  bnode_discard (bt, a);
  bnode_discard (bt, b);
  bnode_discard (bt, root);
  return r;
}

static void
kill_placeholders (struct btree *bt, uint16_t x, uint64_t s, uint64_t e)
{
  size_t i;

  for (i = 0; i < bt->nr_ph; i++) {
    struct placeholder *ph = &bt->ph[i];

    if (ph->alive && ph->export_id == x && ph->start < e && s < ph->end) {
      ph->alive = false;
      bt->ph_killed++;
    }
  }
}

/* ---- inserting ---- */

static int
new_root_leaf (struct btree *bt)
{
  struct btree_node *n;
  int r;

  if ((r = bnode_new (bt, 0, &n)) < 0)
    return r;
  n->hi = BPOS_MAX;
  if ((r = bnode_write (bt, &n, 1)) < 0) {
    bnode_discard (bt, n);
    return r;
  }
  bt->root = n;
  if (bt->journal != NULL)
    journal_mark_needed (bt->journal);
  return 0;
}

/* Account the part [from, to) of c as cut away. */
static void
account_cut (struct btree *bt, const struct nc_key *c, uint64_t from,
             uint64_t to)
{
  struct nc_key part = *c;

  /* Data keys count in their bucket; DIRTY ZERO keys in their export's
   * dirty-zero total (bucket_account sorts them out).
   */
  if (!bt->accounting || (!bkey_has_data (c) && !bkey_is_zero (c)))
    return;
  if (from > bkey_start (&part))
    bkey_cut_front (&part, from);
  if (to < part.end)
    bkey_cut_back (&part, to);
  bucket_account (bt->bs, &part, -1);
}

/* Apply k to blocks [ps, pe), all of which the path's leaf covers (and
 * no other leaf does): cut every key there that overlaps, store k's piece
 * (if store), in one change of the leaf; then split it if it is over.
 * The leaf never holds the cut without the piece, so whenever it is
 * written, each of its blocks has its old value or k's.
 */
static int
leaf_apply (struct btree *bt, const struct nc_key *k, bool store,
            uint64_t ps, uint64_t pe, bool *cut)
{
  struct btree_node *leaf = bt->path.node[0];
  const uint16_t x = k->export_id;
  struct nc_key repl[3], back;
  uint32_t nrepl = 0, i, j, n = leaf->nkeys, ins;
  bool changed = false, have_back = false;

  i = lower_bound (leaf, x, ps + 1);
  for (j = i; j < n; j++) {
    struct nc_key *c = &leaf->keys[j];
    uint64_t a = bkey_start (c), b = c->end;

    if (c->export_id != x || a >= pe)
      break;
    changed = true;
    /* A stale key counts as cut too: its gen bump may not be durable
     * yet (request.c's ORDERING rule 1 needs the DELETE durable then).
     */
    *cut = true;
    if (bucket_ptr_stale (bt->bs, c))
      continue;                 /* dropped whole */
    account_cut (bt, c, MAX (a, ps), MIN (b, pe));
    if (a < ps) {               /* only the first can start before */
      repl[nrepl] = *c;
      bkey_cut_back (&repl[nrepl], ps);
      nrepl++;
    }
    if (b > pe) {               /* only the last can end after */
      back = *c;
      bkey_cut_front (&back, pe);
      have_back = true;
    }
  }
  ins = i + nrepl;
  if (store) {
    struct nc_key *piece = &repl[nrepl++];

    *piece = *k;
    if (bkey_start (piece) < ps)
      bkey_cut_front (piece, ps);
    if (piece->end > pe)
      bkey_cut_back (piece, pe);
    if (bt->accounting)
      bucket_account (bt->bs, piece, +1);
    changed = true;
  }
  if (have_back)
    repl[nrepl++] = back;
  if (!changed)
    return 0;

  /* Keys [i, j) become repl[0 .. nrepl): at most two more. */
  if (nrepl != j - i)
    memmove (&leaf->keys[i + nrepl], &leaf->keys[j],
             (size_t) (n - j) * sizeof *leaf->keys);
  memcpy (&leaf->keys[i], repl, (size_t) nrepl * sizeof *repl);
  leaf->nkeys = n - (j - i) + nrepl;
  bnode_mark_dirty (bt, leaf);
  if (leaf->nkeys <= bt->geom.max_keys)
    return 0;
  if (bnode_drop_stale (bt, leaf) > 0 && leaf->nkeys <= bt->geom.max_keys)
    return 0;
  return split (bt, 0, ins);
}

/* Apply one key: leaf by leaf over its range (each leaf owns the blocks
 * between its lower and upper bound), cutting and storing a piece in
 * each.
 */
static int
insert_one (struct btree *bt, const struct nc_key *k, bool *cut)
{
  const uint16_t x = k->export_id;
  const bool store = (k->flags & NC_KEY_DELETE) == 0 &&
    !bucket_ptr_stale (bt->bs, k);
  uint64_t pos = bkey_start (k);
  int r;

  kill_placeholders (bt, x, pos, k->end);
  if (bt->root == NULL) {
    if (!store)
      return 0;
    if ((r = new_root_leaf (bt)) < 0)
      return r;
  }
  while (pos < k->end) {
    struct btree_node *leaf;
    uint64_t pe = k->end;

    if ((r = path_find (bt, x, pos + 1, 0)) < 0)
      return r;
    leaf = bt->path.node[0];
    if (leaf->nkeys > bt->geom.max_keys) {
      /* An earlier split failed: split the unchanged leaf first. */
      if ((r = split (bt, 0, leaf->nkeys)) < 0)
        return r;
      continue;
    }
    if (leaf->hi.export_id == x && leaf->hi.end < pe)
      pe = leaf->hi.end;
    if ((r = leaf_apply (bt, k, store, pos, pe, cut)) < 0)
      return r;
    pos = pe;
  }
  return 0;
}

const char *
invalid_insert (const struct btree *bt, const struct nc_key *k)
{
  return bkey_invalid_insert (k, bt->geom.bucket_blocks, bt->geom.data_first,
                              bt->geom.nbuckets);
}

/* Insert keys; journal the ones attempted if `journal`. */
int
insert_keys_locked (struct btree *bt, const struct nc_key *keys, size_t n,
                    bool journal, uint64_t *seq, bool *cut)
{
  ASSERT_HELD (&bt->lock);
  bool c = false;
  size_t i, done = 0;
  int r = 0;

  if (bt->broken)
    return bt->broken;
  for (i = 0; i < n; i++) {
    const char *why = invalid_insert (bt, &keys[i]);

    if (why != NULL) {
      log_error ("btree: refusing to insert key %zu (export %u, end %" PRIu64
                 ", size %" PRIu32 "): %s", i, keys[i].export_id,
                 keys[i].end, keys[i].size, why);
      return -EINVAL;
    }
  }
  for (i = 0; i < n && r == 0; i++) {
    r = insert_one (bt, &keys[i], &c);
    /* A failed key may have cut already: journal it too (replaying a key
     * whose data was written is harmless).
     */
    done = i + 1;
  }
  if (journal && bt->journal != NULL && done > 0) {
    uint64_t s = journal_add (bt->journal, keys, done);

    if (seq != NULL)
      *seq = s;
  }
  else if (seq != NULL)
    *seq = bnode_open_seq (bt);
  if (cut != NULL)
    *cut = c;
  bnode_shrink (bt, 0);
  return r;
}

/* ---- placeholders ---- */

static struct placeholder *
ph_find (struct btree *bt, uint64_t id)
{
  size_t i;

  for (i = 0; i < bt->nr_ph; i++)
    if (bt->ph[i].id == id)
      return &bt->ph[i];
  return NULL;
}

static void
ph_remove (struct btree *bt, struct placeholder *ph)
{
  *ph = bt->ph[--bt->nr_ph];
}

static int
ph_add (struct btree *bt, uint16_t x, uint64_t s, uint64_t e, uint64_t *id)
{
  if (bt->nr_ph == bt->cap_ph) {
    size_t cap = bt->cap_ph ? bt->cap_ph * 2 : PLACEHOLDERS_MIN;
    struct placeholder *t = realloc (bt->ph, cap * sizeof *t);

    if (t == NULL)
      return -ENOMEM;
    bt->ph = t;
    bt->cap_ph = cap;
  }
  *id = ++bt->next_ph_id;
  bt->ph[bt->nr_ph++] = (struct placeholder) {
    .id = *id, .start = s, .end = e, .export_id = x, .alive = true,
  };
  return 0;
}

/* ---- public: life cycle ---- */

int
btree_create (const struct btree_config *cfg, struct btree **out)
{
  struct btree *bt;
  uint64_t seed = 0;
  uint32_t max_keys;

  if (cfg == NULL || cfg->cd == NULL || cfg->sb == NULL || cfg->bs == NULL)
    return -EINVAL;
  max_keys = btree_node_max_keys (cfg->sb);
  if (cfg->max_keys != 0) {
    if (cfg->max_keys < 4 || cfg->max_keys > max_keys)
      return -EINVAL;
    max_keys = cfg->max_keys;
  }
  bt = calloc (1, sizeof *bt);
  if (bt == NULL)
    return -ENOMEM;
  bt->cd = cfg->cd;
  bt->bs = cfg->bs;
  bt->journal = cfg->journal;
  bt->pre_write = cfg->pre_write;
  bt->pre_write_opaque = cfg->pre_write_opaque;
  bset_geom_init (&bt->geom, cfg->sb, max_keys);
  bt->geom.torn_jseq_min = cfg->torn_jseq_min;
  bt->geom.torn_jseq_max = cfg->torn_jseq_max;
  bt->cache_bytes = cfg->node_cache_bytes ? cfg->node_cache_bytes
    : BTREE_NODE_CACHE_DEFAULT_BYTES;
  bt->node_size = sizeof (struct btree_node)
    + (size_t) bt->geom.cap_keys * sizeof (struct nc_key);
  bt->accounting = true;
  bt->broken_pin = UINT64_MAX;
  if (getrandom (&seed, sizeof seed, GRND_NONBLOCK) != sizeof seed)
    seed = (uint64_t) time (NULL) ^ ((uint64_t) getpid () << 32)
      ^ (uint64_t) (uintptr_t) bt;
  bt->rng = seed;
  bt->hash_size = HASH_MIN_SIZE;
  bt->hash = calloc (bt->hash_size, sizeof *bt->hash);
  bt->rbuf = cdev_alloc_buffer ((size_t) bt->geom.read_blocks
                                * NC_BLOCK_BYTES);
  bt->wbuf = cdev_alloc_buffer ((size_t) bt->geom.max_bset_blocks
                                * NC_BLOCK_BYTES);
  if (bt->hash == NULL || bt->rbuf == NULL || bt->wbuf == NULL) {
    free (bt->hash);
    free (bt->rbuf);
    free (bt->wbuf);
    free (bt);
    return -ENOMEM;
  }
  pthread_mutex_init (&bt->lock, NULL);
  pthread_mutex_init (&bt->gc_lock, NULL);
  *out = bt;
  return 0;
}

void
btree_destroy (struct btree *bt)
{
  if (bt == NULL)
    return;
  bnode_free_all (bt);
  free (bt->spare);
  free (bt->hash);
  free (bt->rbuf);
  free (bt->wbuf);
  free (bt->wlist);
  free (bt->ph);
  pthread_mutex_destroy (&bt->lock);
  pthread_mutex_destroy (&bt->gc_lock);
  free (bt);
}

/* ---- public: recovery ---- */

int
btree_set_root (struct btree *bt, const struct nc_key *root, uint16_t level)
{
  struct btree_node *n;
  const char *why;
  int r = 0;

  pthread_mutex_lock (&bt->lock);
  bnode_free_all (bt);
  if (root->size == 0)
    goto out;
  r = -EBADMSG;
  if (level >= BTREE_MAX_DEPTH) {
    log_error ("btree: root level %u is too deep", level);
    goto out;
  }
  if ((why = bkey_invalid_ptr (root, bt->geom.data_first,
                               bt->geom.nbuckets)) != NULL) {
    log_error ("btree: root pointer (bucket %" PRIu32 "): %s",
               root->bucket, why);
    goto out;
  }
  if ((r = bnode_read (bt, root, level, BPOS_MIN, BPOS_MAX, false, &n)) < 0)
    goto out;
  bt->root = n;
 out:
  pthread_mutex_unlock (&bt->lock);
  return r;
}

void
btree_set_accounting (struct btree *bt, bool on)
{
  pthread_mutex_lock (&bt->lock);
  bt->accounting = on;
  pthread_mutex_unlock (&bt->lock);
}

int
btree_replay_key (struct btree *bt, const struct nc_key *k)
{
  int r;

  pthread_mutex_lock (&bt->lock);
  r = insert_keys_locked (bt, k, 1, false, NULL, NULL);
  pthread_mutex_unlock (&bt->lock);
  return r;
}

int
btree_check_key_gen (struct bucket_set *bs, const struct nc_key *k,
                     unsigned max_distance, const char *where,
                     uint64_t where_no)
{
  uint8_t gen = bucket_gen (bs, k->bucket);
  uint8_t behind = (uint8_t) (gen - k->gen);

  if (behind <= max_distance)
    return 0;
  log_error ("%s %" PRIu64 ": key of export %u blocks %" PRIu64 "+%" PRIu32
             " points at bucket %" PRIu32 " gen %u, but the bucket is at gen "
             "%u: the key's gen is newer than its bucket's (%u behind is "
             "beyond the gen-distance limit of %u): the prio copy is out of "
             "date or corrupt", where, where_no, k->export_id,
             k->end - k->size, k->size, k->bucket, k->gen, gen, behind,
             max_distance);
  return -EBADMSG;
}

static inline int
check_key_gen (struct btree *bt, const struct nc_key *k,
               unsigned max_distance, const char *where, uint32_t bucket)
{
  return btree_check_key_gen (bt->bs, k, max_distance, where, bucket);
}

static int
walk_node (struct btree *bt, const struct btree_walk_ops *ops,
           struct btree_node *n, struct bpos lo)
{
  const char *why;
  uint32_t i, bad = 0;
  int r;

  why = bset_check_keys (&bt->geom, n->level, n->keys, n->nkeys, lo, n->hi,
                         &bad);
  if (why != NULL) {
    log_error ("btree node in bucket %" PRIu32 " (level %u): key %" PRIu32
               ": %s", n->bucket, n->level, bad, why);
    return -EBADMSG;
  }
  if (ops->node != NULL &&
      (r = ops->node (ops->opaque, n->bucket, n->level, n->nkeys)) != 0)
    return r;
  if (n->level == 0) {
    for (i = 0; i < n->nkeys; i++) {
      const struct nc_key *k = &n->keys[i];

      if (bkey_has_data (k) &&
          (r = check_key_gen (bt, k, BUCKET_GEN_MAX_DISTANCE,
                              "btree node in bucket", n->bucket)) < 0)
        return r;
      if (ops->key != NULL && (r = ops->key (ops->opaque, k)) != 0)
        return r;
    }
    return 0;
  }
  for (i = 0; i < n->nkeys; i++) {
    const struct nc_key ptr = n->keys[i];
    uint8_t gen = bucket_gen (bt->bs, ptr.bucket);
    struct btree_node *c;

    if (gen != ptr.gen) {
      log_error ("btree node in bucket %" PRIu32 " (level %u): child %"
                 PRIu32 " points at bucket %" PRIu32 " gen %u, but the "
                 "bucket is at gen %u", n->bucket, n->level, i, ptr.bucket,
                 ptr.gen, gen);
      return -EBADMSG;
    }
    if ((r = bnode_child (bt, n, i, lo, &c)) < 0)
      return r;
    if (c->level + 1 != n->level || bpos_cmp (c->hi, bpos_of (&ptr)) != 0) {
      log_error ("btree node in bucket %" PRIu32 ": level or bound differs "
                 "from its parent's pointer", c->bucket);
      return -EBADMSG;
    }
    if ((r = walk_node (bt, ops, c, i > 0 ? bpos_of (&n->keys[i - 1])
                        : lo)) != 0)
      return r;
  }
  return 0;
}

int
btree_walk (struct btree *bt, const struct btree_walk_ops *ops)
{
  int r = 0;

  pthread_mutex_lock (&bt->lock);
  if (bt->root != NULL)
    r = walk_node (bt, ops, bt->root, BPOS_MIN);
  bnode_shrink (bt, 0);
  pthread_mutex_unlock (&bt->lock);
  return r;
}

/* ---- public: run time ---- */

/* Append piece [s, e) (k: found, clipped to it; NULL: a miss, merged with
 * a miss just before).  False if out is full.
 */
static bool
emit (struct btree_piece *out, size_t max, size_t *np, uint64_t s,
      uint64_t e, const struct nc_key *k)
{
  struct btree_piece *pc;

  if (k == NULL && *np > 0 && !out[*np - 1].found && out[*np - 1].end == s) {
    out[*np - 1].end = e;
    return true;
  }
  if (*np == max)
    return false;
  pc = &out[(*np)++];
  pc->start = s;
  pc->end = e;
  pc->found = k != NULL;
  if (k != NULL) {
    pc->key = *k;
    if (bkey_start (&pc->key) < s)
      bkey_cut_front (&pc->key, s);
    if (pc->key.end > e)
      bkey_cut_back (&pc->key, e);
  }
  else
    memset (&pc->key, 0, sizeof pc->key);
  return true;
}

static int
lookup_locked (struct btree *bt, uint16_t export_id, uint64_t start,
               uint64_t end, struct btree_piece *out, size_t max,
               uint64_t *placeholder)
{
  ASSERT_HELD (&bt->lock);
  struct btree_path *p = &bt->path;
  size_t np = 0;
  uint64_t pos = start;
  int r = 0;

  if (bt->root == NULL) {
    emit (out, max, &np, start, end, NULL);
    pos = end;
    goto done;
  }
  if ((r = path_find (bt, export_id, start + 1, 0)) < 0)
    goto out;
  while (pos < end) {
    struct btree_node *leaf = p->node[0];
    const struct nc_key *k = NULL;
    uint64_t a, pe;

    if (p->idx[0] >= leaf->nkeys) {
      if ((r = path_next_leaf (bt)) < 0)
        goto out;
      if (r == 0)
        continue;
      r = 0;
    }
    else
      k = &leaf->keys[p->idx[0]];
    if (k == NULL || k->export_id != export_id || bkey_start (k) >= end) {
      if (emit (out, max, &np, pos, end, NULL))
        pos = end;
      break;
    }
    a = bkey_start (k);
    if (a > pos) {
      if (!emit (out, max, &np, pos, a, NULL))
        break;
      pos = a;
    }
    pe = MIN (k->end, end);
    if (!emit (out, max, &np, pos, pe,
               bucket_ptr_stale (bt->bs, k) ? NULL : k))
      break;
    pos = pe;
    p->idx[0]++;
  }
 done:
  if (placeholder != NULL) {
    if ((r = ph_add (bt, export_id, start, pos, placeholder)) < 0)
      goto out;
  }
  r = (int) np;
 out:
  return r;
}

int
btree_lookup (struct btree *bt, uint16_t export_id, uint64_t start,
              uint64_t end, struct btree_piece *out, size_t max,
              uint64_t *placeholder)
{
  int r;

  if (start >= end || max == 0 || out == NULL)
    return -EINVAL;
  pthread_mutex_lock (&bt->lock);
  r = lookup_locked (bt, export_id, start, end, out, max, placeholder);
  pthread_mutex_unlock (&bt->lock);
  return r;
}

int
btree_lookup_nowait (struct btree *bt, uint16_t export_id, uint64_t start,
                     uint64_t end, struct btree_piece *out, size_t max)
{
  int r;

  if (start >= end || max == 0 || out == NULL)
    return -EINVAL;
  if (pthread_mutex_trylock (&bt->lock) != 0)
    return -EAGAIN;
  bt->no_node_reads = true;
  r = lookup_locked (bt, export_id, start, end, out, max, NULL);
  bt->no_node_reads = false;
  pthread_mutex_unlock (&bt->lock);
  return r;
}

int
btree_insert (struct btree *bt, const struct nc_key *keys, size_t n,
              uint64_t *seq, bool *cut)
{
  int r;

  pthread_mutex_lock (&bt->lock);
  r = insert_keys_locked (bt, keys, n, true, seq, cut);
  pthread_mutex_unlock (&bt->lock);
  return r;
}

/* btree_insert_nowait's check, lock held and no_node_reads set: every
 * leaf the keys touch is in memory and has room for all of them (a key
 * adds at most two to a leaf: leaf_apply), so no split and no read; the
 * node cache is within its bound, so the shrink after the insert writes
 * nothing.
 */
static bool
insert_needs_no_io_locked (struct btree *bt, const struct nc_key *keys,
                           size_t n)
{
  ASSERT_HELD (&bt->lock);
  size_t i;

  if (bt->broken || bt->root == NULL || bt->bytes > bt->cache_bytes)
    return false;
  for (i = 0; i < n; i++) {
    const struct nc_key *k = &keys[i];
    uint64_t pos = bkey_start (k);

    if (invalid_insert (bt, k) != NULL)
      return false;
    while (pos < k->end) {
      struct btree_node *leaf;

      if (path_find (bt, k->export_id, pos + 1, 0) < 0)
        return false;
      leaf = bt->path.node[0];
      if (leaf->nkeys + 2 * n > bt->geom.max_keys)
        return false;
      if (leaf->hi.export_id != k->export_id || leaf->hi.end >= k->end)
        break;
      pos = leaf->hi.end;
    }
  }
  return true;
}

int
btree_insert_nowait (struct btree *bt, const struct nc_key *keys, size_t n,
                     uint64_t *seq, bool *cut)
{
  bool ok;
  int r = -EAGAIN;

  if (pthread_mutex_trylock (&bt->lock) != 0)
    return -EAGAIN;
  bt->no_node_reads = true;
  ok = insert_needs_no_io_locked (bt, keys, n);
  bt->no_node_reads = false;
  if (ok)
    r = insert_keys_locked (bt, keys, n, true, seq, cut);
  pthread_mutex_unlock (&bt->lock);
  return r;
}

int
btree_insert_promoted (struct btree *bt, uint64_t placeholder,
                       const struct nc_key *k, bool *inserted, uint64_t *seq)
{
  struct placeholder *ph;
  bool alive = false;
  int r = 0;

  pthread_mutex_lock (&bt->lock);
  ph = ph_find (bt, placeholder);
  if (ph != NULL) {
    alive = ph->alive;
    ph_remove (bt, ph);
  }
  if (alive)
    r = insert_keys_locked (bt, k, 1, true, seq, NULL);
  else if (seq != NULL)
    *seq = bnode_open_seq (bt);
  pthread_mutex_unlock (&bt->lock);
  if (inserted != NULL)
    *inserted = alive && r == 0;
  return r;
}

void
btree_placeholder_drop (struct btree *bt, uint64_t placeholder)
{
  struct placeholder *ph;

  pthread_mutex_lock (&bt->lock);
  if ((ph = ph_find (bt, placeholder)) != NULL)
    ph_remove (bt, ph);
  pthread_mutex_unlock (&bt->lock);
}

int
btree_journal_close_entry (void *opaque, struct journal *j)
{
  struct btree *bt = opaque;
  struct nc_key root;
  uint16_t level = 0;
  uint64_t pin;
  int r;

  memset (&root, 0, sizeof root);
  pthread_mutex_lock (&bt->lock);
  if (bt->root != NULL) {
    root = ptr_key (bt->root, BPOS_MAX);
    root.size = 1;
    level = bt->root->level;
  }
  pin = bt->dirty_head != NULL ? bt->dirty_head->pin : UINT64_MAX;
  pin = MIN (pin, bt->broken_pin);
  r = journal_close_entry_locked (j, &bt->lock, &root, level, pin);
  pthread_mutex_unlock (&bt->lock);
  return r;
}

/* Write every dirty leaf whose pin is below seq (all: UINT64_MAX). */
int
write_dirty_locked (struct btree *bt, uint64_t seq)
{
  ASSERT_HELD (&bt->lock);
  struct btree_node *n;
  size_t nr = 0;

  if (bt->broken)
    return bt->broken;
  if (bt->wlist_cap < bt->nr_dirty) {
    struct btree_node **t = realloc (bt->wlist, bt->nr_dirty * sizeof *t);

    if (t == NULL)
      return -ENOMEM;
    bt->wlist = t;
    bt->wlist_cap = bt->nr_dirty;
  }
  for (n = bt->dirty_head; n != NULL && n->pin < seq; n = n->dirty_next)
    bt->wlist[nr++] = n;
  return bnode_write (bt, bt->wlist, nr);
}

int
btree_write_pinned (void *opaque, uint64_t seq)
{
  struct btree *bt = opaque;
  int r;

  pthread_mutex_lock (&bt->lock);
  r = write_dirty_locked (bt, seq);
  pthread_mutex_unlock (&bt->lock);
  return r;
}

int
btree_write_all (struct btree *bt)
{
  int r;

  pthread_mutex_lock (&bt->lock);
  r = write_dirty_locked (bt, UINT64_MAX);
  bnode_shrink (bt, 0);
  pthread_mutex_unlock (&bt->lock);
  return r;
}

void
btree_get_stats (struct btree *bt, struct btree_stats *st)
{
  pthread_mutex_lock (&bt->lock);
  memset (st, 0, sizeof *st);
  st->depth = bt->root != NULL ? (uint16_t) (bt->root->level + 1) : 0;
  st->nodes_in_memory = bt->nr_nodes;
  st->node_bytes_in_memory = bt->bytes;
  st->node_cache_bytes = bt->cache_bytes;
  st->dirty_leaves = bt->nr_dirty;
  st->node_reads = bt->node_reads;
  st->node_writes = bt->node_writes;
  st->node_evictions = bt->evictions;
  st->splits = bt->splits;
  st->placeholders_killed = bt->ph_killed;
  pthread_mutex_unlock (&bt->lock);
}
