/* SPDX-License-Identifier: BSD-3-Clause */
/* bnode.c — btree nodes in memory: the bounded node cache, node reads,
 * node writes.
 *
 * WHAT: the hash of nodes by bucket, the LRU list of evictable leaves, the
 * list of dirty leaves in pin order, node memory, eviction, reading a
 * node through bset.c, and writing nodes: appending a bset in the node's
 * bucket, or moving the node to a new bucket and rewriting its parent.
 * WHY: the tree's shape (btree.c) and the life of its nodes in memory and
 * on disk are two concerns; this one decides what is in memory and makes
 * node writes durable in the right order.
 * INVARIANTS:
 * - Every node in memory is in the hash.  Interior nodes and the root
 *   are never evicted; other leaves are on the LRU list (head = most
 *   recent) and are evicted clean first (dirty ones are written, in
 *   batches, then evicted).  Bytes of all nodes <= node_cache_bytes,
 *   except while nothing evictable is left or writing fails.
 * - Dirty leaves are listed in pin order: a pin is the journal open seq
 *   at the leaf's first unwritten change, taken under the btree lock, so
 *   appending keeps the order and the head has the oldest pin.
 * - A node write syncs the device first (the data its keys point at is
 *   durable before the keys), writes, syncs.  A node that moved is
 *   durable before its parent is rewritten to point at it; its old bucket
 *   is freed only after that, at the journal's open seq; a moved root is
 *   recorded by the next journal entry (journal_mark_needed).  A node is
 *   clean (pin released) only when all of that succeeded.
 * THREADS AND LOCKS: bt->lock held by the caller throughout; the journal
 * and bucket calls made here take their own locks (btree -> journal ->
 * bucket).
 * FAILURE: a write that fails before any parent is touched leaves the
 * nodes where they were (moves undone, new buckets freed) and dirty: it
 * can be retried.  If a parent rewrite fails after its child moved, memory
 * and disk disagree: the btree is broken (bnode_set_broken) and refuses
 * every later update and node write.  Reads: -EBADMSG (logged by bset.c)
 * or the device's error; a torn last bset found by a read is zeroed
 * (when the btree has a journal, i.e. is not read-only).
 * NOT HERE: the bset format (bset.c), paths, splits, inserts (btree.c).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bkey.h"
#include "bset.h"
#include "btree-internal.h"
#include "bucket.h"
#include "cdev.h"
#include "compiler.h"
#include "journal.h"
#include "log.h"
#include "ondisk.h"

/* Memory and disk may disagree from now on: refuse every later update and
 * keep the journal's oldest needed entry where it is.
 */
void
bnode_set_broken (struct btree *bt, int r, const char *what)
{
  if (bt->broken != 0)
    return;
  bt->broken = r < 0 ? r : -EIO;
  bt->broken_pin = bt->dirty_head != NULL ? bt->dirty_head->pin
    : (bt->journal != NULL ? journal_open_seq (bt->journal) : 0);
  log_error ("btree: %s (%s); the index takes no more updates", what,
             strerror (-bt->broken));
}

uint64_t
bnode_open_seq (struct btree *bt)
{
  return bt->journal != NULL ? journal_open_seq (bt->journal) : 0;
}

static uint64_t
new_nonce (struct btree *bt)
{
  uint64_t z;

  do {
    z = (bt->rng += UINT64_C (0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C (0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C (0x94d049bb133111eb);
    z ^= z >> 31;
  } while (z == 0);
  return z;
}

/* ---- the node hash, LRU and dirty lists ---- */

static inline uint32_t
hash_slot (const struct btree *bt, uint32_t bucket)
{
  return (uint32_t) ((bucket * UINT64_C (0x9e3779b97f4a7c15)) >> 32)
    & (bt->hash_size - 1);
}

struct btree_node *
bnode_find (const struct btree *bt, uint32_t bucket)
{
  struct btree_node *n;

  for (n = bt->hash[hash_slot (bt, bucket)]; n != NULL; n = n->hash_next)
    if (n->bucket == bucket)
      return n;
  return NULL;
}

/* Double the table; on ENOMEM keep the old one (chains just get longer). */
static void
hash_grow (struct btree *bt)
{
  uint32_t old_size = bt->hash_size, i;
  struct btree_node **old = bt->hash;
  struct btree_node **t = calloc ((size_t) old_size * 2, sizeof *t);

  if (t == NULL)
    return;
  bt->hash = t;
  bt->hash_size = old_size * 2;
  for (i = 0; i < old_size; i++) {
    struct btree_node *n = old[i], *next;

    for (; n != NULL; n = next) {
      uint32_t s = hash_slot (bt, n->bucket);

      next = n->hash_next;
      n->hash_next = t[s];
      t[s] = n;
    }
  }
  free (old);
}

static void
hash_add (struct btree *bt, struct btree_node *n)
{
  uint32_t s;

  if (bt->nr_nodes > bt->hash_size)
    hash_grow (bt);
  s = hash_slot (bt, n->bucket);
  n->hash_next = bt->hash[s];
  bt->hash[s] = n;
}

static void
hash_del (struct btree *bt, struct btree_node *n)
{
  struct btree_node **pp = &bt->hash[hash_slot (bt, n->bucket)];

  for (; *pp != NULL; pp = &(*pp)->hash_next)
    if (*pp == n) {
      *pp = n->hash_next;
      n->hash_next = NULL;
      return;
    }
}

void
bnode_lru_add (struct btree *bt, struct btree_node *n)
{
  n->on_lru = true;
  n->lru_prev = NULL;
  n->lru_next = bt->lru_head;
  if (bt->lru_head != NULL)
    bt->lru_head->lru_prev = n;
  else
    bt->lru_tail = n;
  bt->lru_head = n;
}

static void
lru_del (struct btree *bt, struct btree_node *n)
{
  if (n->lru_prev != NULL)
    n->lru_prev->lru_next = n->lru_next;
  else
    bt->lru_head = n->lru_next;
  if (n->lru_next != NULL)
    n->lru_next->lru_prev = n->lru_prev;
  else
    bt->lru_tail = n->lru_prev;
  n->lru_prev = n->lru_next = NULL;
  n->on_lru = false;
}

void
bnode_lru_touch (struct btree *bt, struct btree_node *n)
{
  if (n->on_lru && bt->lru_head != n) {
    lru_del (bt, n);
    bnode_lru_add (bt, n);
  }
}

/* A leaf changed: it needs a write, and pins the journal's open entry. */
void
bnode_mark_dirty (struct btree *bt, struct btree_node *n)
{
  if (n->dirty)
    return;
  n->dirty = true;
  n->pin = bnode_open_seq (bt);
  n->dirty_next = NULL;
  n->dirty_prev = bt->dirty_tail;
  if (bt->dirty_tail != NULL)
    bt->dirty_tail->dirty_next = n;
  else
    bt->dirty_head = n;
  bt->dirty_tail = n;
  bt->nr_dirty++;
}

static void
clear_dirty (struct btree *bt, struct btree_node *n)
{
  if (!n->dirty)
    return;
  if (n->dirty_prev != NULL)
    n->dirty_prev->dirty_next = n->dirty_next;
  else
    bt->dirty_head = n->dirty_next;
  if (n->dirty_next != NULL)
    n->dirty_next->dirty_prev = n->dirty_prev;
  else
    bt->dirty_tail = n->dirty_prev;
  n->dirty_prev = n->dirty_next = NULL;
  n->dirty = false;
  n->pin = 0;
  bt->nr_dirty--;
}

/* ---- node memory ---- */

/* Memory for a node, counted in bt->bytes; not in any list yet. */
static struct btree_node *
node_alloc (struct btree *bt, uint16_t level)
{
  struct btree_node *n = bt->spare;

  if (n != NULL)
    bt->spare = NULL;
  else if ((n = malloc (bt->node_size)) == NULL)
    return NULL;
  memset (n, 0, sizeof *n);
  n->level = level;
  bt->nr_nodes++;
  bt->bytes += bt->node_size;
  return n;
}

/* Forget a node: out of the hash (if hashed) and every list, memory
 * freed.  Its bucket is the caller's business.
 */
void
bnode_release (struct btree *bt, struct btree_node *n, bool hashed)
{
  if (hashed)
    hash_del (bt, n);
  if (n->on_lru)
    lru_del (bt, n);
  clear_dirty (bt, n);
  bt->nr_nodes--;
  bt->bytes -= bt->node_size;
  if (bt->spare == NULL)
    bt->spare = n;
  else
    free (n);
}

/* A new, empty node in a new bucket (nothing on disk refers to it). */
int
bnode_new (struct btree *bt, uint16_t level, struct btree_node **out)
{
  struct btree_node *n = node_alloc (bt, level);
  int r;

  if (n == NULL)
    return -ENOMEM;
  r = bucket_alloc_node (bt->bs, &n->bucket, &n->gen);
  if (r < 0) {
    log_error ("btree: no bucket for a new node: %s", strerror (-r));
    bnode_release (bt, n, false);
    return r;
  }
  n->nonce = new_nonce (bt);
  hash_add (bt, n);
  *out = n;
  return 0;
}

/* Give up a node made by bnode_new that nothing refers to. */
void
bnode_discard (struct btree *bt, struct btree_node *n)
{
  if (n == NULL)
    return;
  bucket_free_node (bt->bs, n->bucket, bnode_open_seq (bt));
  bnode_release (bt, n, true);
}

/* Remove a leaf's data keys whose bucket moved on durably; how many went.
 * The removal is not journaled: a key whose gen bump is not durable yet
 * (its prio write failed, or is in flight) stays, so a later DELETE over
 * it still counts as a cut and waits for its commit (request.c's
 * ORDERING rule 1).  Dropped, it would make a backing change there look
 * like one over nothing, and a crash that lost the bump would bring back
 * a clean key over the changed backing store.
 */
uint32_t
bnode_drop_stale (struct btree *bt, struct btree_node *n)
{
  uint32_t i, w = 0, dropped;

  for (i = 0; i < n->nkeys; i++) {
    if (bucket_ptr_stale_durably (bt->bs, &n->keys[i]))
      continue;
    if (w != i)
      n->keys[w] = n->keys[i];
    w++;
  }
  dropped = n->nkeys - w;
  n->nkeys = w;
  return dropped;
}

/* ---- the node cache ---- */

/* Evict least recently used leaves (clean first; dirty ones are written
 * in batches) until `want` more bytes fit.  Never fails: if nothing can
 * go, the cache stays over its bound (write errors are logged).
 */
void
bnode_shrink (struct btree *bt, size_t want)
{
  while (bt->bytes + want > bt->cache_bytes) {
    struct btree_node *n;
    size_t nb = 0;

    for (n = bt->lru_tail; n != NULL; n = n->lru_prev)
      if (!n->dirty)
        break;
    if (n != NULL) {
      bnode_release (bt, n, true);
      bt->evictions++;
      continue;
    }
    for (n = bt->lru_tail; n != NULL && nb < BNODE_SHRINK_BATCH;
         n = n->lru_prev)
      bt->batch[nb++] = n;
    if (nb == 0 || bnode_write (bt, bt->batch, nb) < 0)
      return;
  }
}

/* Zero (and sync) the first block of a torn last bset, as the journal
 * drops a torn commit's survivors: once the journal moves past its
 * journal seq it would read as corruption (bset.c, TORN OR CORRUPT).
 */
static int
zero_torn (struct btree *bt, uint32_t bucket, uint32_t block)
{
  uint64_t off = ((uint64_t) bucket * bt->geom.bucket_blocks + block)
    * NC_BLOCK_BYTES;
  int r;

  memset (bt->wbuf, 0, NC_BLOCK_BYTES);
  if ((r = cdev_pwrite (bt->cd, bt->wbuf, NC_BLOCK_BYTES, off, 0)) < 0 ||
      (r = cdev_sync (bt->cd)) < 0)
    log_error ("btree node in bucket %" PRIu32 ": cannot drop its torn bset "
               "at block %" PRIu32 ": %s", bucket, block, strerror (-r));
  return r;
}

/* Read the node `ptr` names from disk: level, bounds (lo, hi]. */
int
bnode_read (struct btree *bt, const struct nc_key *ptr_in, uint16_t level,
            struct bpos lo, struct bpos hi, bool lru,
            struct btree_node **out)
{
  const struct nc_key ptr = *ptr_in; /* eviction may rewrite the parent */
  struct bset_node_info info;
  struct btree_node *n;
  uint8_t gen = bucket_gen (bt->bs, ptr.bucket);
  int r;

  if (gen != ptr.gen) {
    log_error ("btree node in bucket %" PRIu32 " (level %u): pointer has "
               "gen %u but the bucket is at gen %u",
               ptr.bucket, level, ptr.gen, gen);
    return -EBADMSG;
  }
  bnode_shrink (bt, bt->node_size);
  n = node_alloc (bt, level);
  if (n == NULL)
    return -ENOMEM;
  r = bset_read_node (&bt->geom, bt->cd, bt->rbuf, ptr.bucket, level,
                      ptr.nonce, lo, hi, n->keys, &info);
  if (r == 0 && info.torn_block != 0 && bt->journal != NULL)
    r = zero_torn (bt, ptr.bucket, info.torn_block);
  if (r < 0) {
    bnode_release (bt, n, false);
    return r;
  }
  n->bucket = ptr.bucket;
  n->gen = ptr.gen;
  n->nonce = ptr.nonce;
  n->seq = info.seq;
  n->next_block = info.next_block;
  n->nkeys = info.nkeys;
  n->hi = hi;
  hash_add (bt, n);
  if (lru)
    bnode_lru_add (bt, n);
  bt->node_reads++;
  *out = n;
  return 0;
}

/* Child i of parent (whose lower bound is plo), from memory or disk. */
int
bnode_child (struct btree *bt, struct btree_node *parent, uint32_t i,
             struct bpos plo, struct btree_node **out)
{
  const struct nc_key *ptr = &parent->keys[i];
  struct btree_node *n = bnode_find (bt, ptr->bucket);
  struct bpos lo = i > 0 ? bpos_of (&parent->keys[i - 1]) : plo;

  if (n != NULL) {
    if (unlikely (n->nonce != ptr->nonce || n->level + 1 != parent->level)) {
      log_error ("btree: node in bucket %" PRIu32 " in memory does not "
                 "match its parent's pointer", ptr->bucket);
      return -EIO;
    }
    bnode_lru_touch (bt, n);
    *out = n;
    return 0;
  }
  if (bt->no_node_reads)
    return -EAGAIN;
  return bnode_read (bt, ptr, parent->level - 1, lo, bpos_of (ptr),
                     parent->level == 1, out);
}

/* The parent of n (not the root) and the index of its pointer, which
 * must still name bucket `bucket`.  Only interior nodes lie on the way,
 * and they are all in memory.
 */
static int
find_parent (struct btree *bt, const struct btree_node *n, uint32_t bucket,
             struct btree_node **parent, uint32_t *idx)
{
  struct btree_node *c = bt->root;
  uint32_t i;

  while (c != NULL && c->level > n->level + 1) {
    i = lower_bound (c, n->hi.export_id, n->hi.end);
    c = i < c->nkeys ? bnode_find (bt, c->keys[i].bucket) : NULL;
  }
  if (c == NULL || c->level != n->level + 1)
    goto bad;
  i = lower_bound (c, n->hi.export_id, n->hi.end);
  if (i >= c->nkeys || c->keys[i].bucket != bucket ||
      bpos_cmp (bpos_of (&c->keys[i]), n->hi) != 0)
    goto bad;
  *parent = c;
  *idx = i;
  return 0;

 bad:
  log_error ("btree: cannot find the parent of the node in bucket %" PRIu32,
             bucket);
  return -EIO;
}

/* ---- node writes ---- */

struct node_move {
  struct btree_node *node;
  uint32_t bucket, next_block;
  uint8_t gen;
  uint64_t nonce, seq;
};

static void
node_move_undo (struct btree *bt, const struct node_move *m)
{
  struct btree_node *n = m->node;

  bucket_free_node (bt->bs, n->bucket, bnode_open_seq (bt));
  hash_del (bt, n);
  n->bucket = m->bucket;
  n->gen = m->gen;
  n->nonce = m->nonce;
  n->seq = m->seq;
  n->next_block = m->next_block;
  hash_add (bt, n);
}

/* Write nodes (distinct, same level) as a new bset each: one sync before
 * (the data their keys point at becomes durable first), the writes, one
 * sync after.  A node whose bucket has no room moves to a new bucket and
 * its parent is rewritten the same way (recursively); a moved root is
 * recorded by the next journal entry.  On success every node is clean.
 */
int
bnode_write (struct btree *bt, struct btree_node **nodes, size_t n)
{
  struct node_move *mv = NULL;
  struct btree_node **parents = NULL;
  size_t nmv = 0, np = 0, i, j;
  uint64_t jseq = bnode_open_seq (bt);
  bool root_moved = false;
  int r;

  if (bt->broken)
    return bt->broken;
  if (n == 0)
    return 0;
  mv = malloc (n * sizeof *mv);
  parents = malloc (n * sizeof *parents);
  r = -ENOMEM;
  if (mv == NULL || parents == NULL)
    goto out;

  for (i = 0; i < n; i++) {
    struct btree_node *nd = nodes[i];
    uint32_t b;
    uint8_t g;

    if (nd->level == 0)
      bnode_drop_stale (bt, nd);
    if (nd->next_block + bset_blocks (nd->nkeys) <= bt->geom.span_blocks)
      continue;
    r = bucket_alloc_node (bt->bs, &b, &g);
    if (r < 0) {
      log_error ("btree: no bucket to move the node in bucket %" PRIu32
                 " to: %s", nd->bucket, strerror (-r));
      goto undo;
    }
    mv[nmv++] = (struct node_move) {
      .node = nd, .bucket = nd->bucket, .next_block = nd->next_block,
      .gen = nd->gen, .nonce = nd->nonce, .seq = nd->seq,
    };
    hash_del (bt, nd);
    nd->bucket = b;
    nd->gen = g;
    nd->nonce = new_nonce (bt);
    nd->seq = 0;
    nd->next_block = 0;
    hash_add (bt, nd);
  }

  /* Only leaves hold keys that rely on backing data (request.c, ORDERING
   * rule 2); interior nodes hold node pointers.  So a parent's write (a
   * split's, or a moved node's repointing below) never flushes the
   * backing, and a failing backing cannot break the tree through one.
   */
  for (i = 0; i < n && nodes[i]->level != 0; i++)
    ;
  if (i < n && bt->pre_write != NULL &&
      (r = bt->pre_write (bt->pre_write_opaque)) < 0)
    goto undo;
  if ((r = cdev_sync (bt->cd)) < 0)
    goto undo;
  for (i = 0; i < n; i++) {
    struct btree_node *nd = nodes[i];
    uint32_t nb = bset_blocks (nd->nkeys);
    uint64_t off = ((uint64_t) nd->bucket * bt->geom.bucket_blocks
                    + nd->next_block) * NC_BLOCK_BYTES;

    bset_build (&bt->geom, bt->wbuf, nd->level, nd->nonce, nd->seq + 1,
                jseq, nd->keys, nd->nkeys);
    if ((r = cdev_pwrite (bt->cd, bt->wbuf, (size_t) nb * NC_BLOCK_BYTES,
                          off, 0)) < 0)
      goto undo;
    nd->seq++;
    nd->next_block += nb;
    bt->node_writes++;
  }
  if ((r = cdev_sync (bt->cd)) < 0)
    goto undo;

  /* The moved nodes are durable where they are now: repoint parents. */
  for (j = 0; j < nmv; j++) {
    struct btree_node *nd = mv[j].node, *p;
    uint32_t pi;
    size_t k;

    if (nd == bt->root) {
      root_moved = true;
      continue;
    }
    if ((r = find_parent (bt, nd, mv[j].bucket, &p, &pi)) < 0) {
      bnode_set_broken (bt, r, "a moved node has no parent");
      goto out;
    }
    p->keys[pi].bucket = nd->bucket;
    p->keys[pi].gen = nd->gen;
    p->keys[pi].nonce = nd->nonce;
    for (k = 0; k < np && parents[k] != p; k++)
      ;
    if (k == np)
      parents[np++] = p;
  }
  if (np > 0 && (r = bnode_write (bt, parents, np)) < 0) {
    bnode_set_broken (bt, r,
                      "the parent of a moved node could not be written");
    goto out;
  }
  if (root_moved && bt->journal != NULL)
    journal_mark_needed (bt->journal);
  for (j = 0; j < nmv; j++)
    bucket_free_node (bt->bs, mv[j].bucket, jseq);
  for (i = 0; i < n; i++)
    clear_dirty (bt, nodes[i]);
  r = 0;
  goto out;

 undo:
  /* Nothing on disk refers to the new buckets: go back to the old ones.
   * Bsets already written in place stay (the next one follows them).
   */
  for (j = 0; j < nmv; j++) {
    struct btree_node *nd = mv[j].node;

    if (nd->bucket != mv[j].bucket)
      node_move_undo (bt, &mv[j]);
  }
 out:
  free (mv);
  free (parents);
  return r;
}

void
bnode_free_all (struct btree *bt)
{
  uint32_t i;

  for (i = 0; i < bt->hash_size; i++)
    while (bt->hash[i] != NULL)
      bnode_release (bt, bt->hash[i], true);
  bt->root = NULL;
}

