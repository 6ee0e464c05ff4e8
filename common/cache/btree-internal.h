/* SPDX-License-Identifier: BSD-3-Clause */
/* btree-internal.h — what btree.c, btree-walk.c and bnode.c share: the
 * in-memory node, the index's state, the node cache's functions and the
 * tree's paths and inserts.
 *
 * Owns: nothing; btree.c owns struct btree, bnode.c its node cache part.
 * Threads: every function here runs with bt->lock held (the caller took
 * it in a btree.h function).
 * Not here: the public API (btree.h), the bset format (bset.h).  Only
 * btree.c, btree-walk.c and bnode.c include this.
 */
#ifndef NBDCACHE_BTREE_INTERNAL_H
#define NBDCACHE_BTREE_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bkey.h"
#include "bset.h"
#include "btree.h"
#include "ondisk.h"

/* Dirty leaves written together when eviction finds no clean one. */
#define BNODE_SHRINK_BATCH 16

struct btree_node {
  struct btree_node *hash_next;
  struct btree_node *lru_prev, *lru_next;     /* on_lru */
  struct btree_node *dirty_prev, *dirty_next; /* dirty */
  struct bpos hi;               /* greatest position it may hold */
  uint64_t nonce;
  uint64_t seq;                 /* of its last bset (0: none written) */
  uint64_t pin;                 /* dirty: journal seq of the first change */
  uint32_t bucket;
  uint32_t next_block;          /* where its next bset goes */
  uint32_t nkeys;
  uint16_t level;
  uint8_t gen;
  bool dirty;                   /* a leaf with unwritten changes */
  bool on_lru;                  /* an evictable leaf (not the root) */
  struct nc_key keys[];         /* [cap_keys], sorted */
};

struct placeholder {
  uint64_t id;
  uint64_t start, end;          /* blocks */
  uint16_t export_id;
  bool alive;
};

/* The nodes from the root down to one position.  node[l] is at level l;
 * idx[l] is the child taken (interior) or the key index (leaf); lo[l] is
 * node[l]'s lower bound (exclusive).  Valid until the tree's shape changes
 * (a split) or a node is loaded (which may evict the leaf).
 */
struct btree_path {
  uint16_t depth;               /* root level + 1 */
  struct btree_node *node[BTREE_MAX_DEPTH];
  uint32_t idx[BTREE_MAX_DEPTH];
  struct bpos lo[BTREE_MAX_DEPTH];
};

struct btree {
  pthread_mutex_t lock;
  /* Serialises btree_gc passes; taken before lock, never by requests. */
  pthread_mutex_t gc_lock;
  btree_gc_hook_fn gc_hook;     /* tests: between two holds of a pass */
  void *gc_hook_opaque;
  struct cdev *cd;              /* borrowed */
  struct bucket_set *bs;        /* borrowed */
  struct journal *journal;      /* borrowed; NULL: read-only use */
  int (*pre_write) (void *opaque); /* btree_config's; may be NULL */
  void *pre_write_opaque;
  struct bset_geom geom;
  uint64_t cache_bytes;         /* node_cache_bytes */
  size_t node_size;             /* bytes of one node in memory */
  bool accounting;
  bool no_node_reads;           /* a lookup that must not wait: a node not
                                   in memory is -EAGAIN, not a read */
  int broken;                   /* 0, or the error that broke it */
  uint64_t broken_pin;          /* oldest pin when it broke, else MAX */
  uint64_t rng;                 /* nonces */

  struct btree_node *root;      /* NULL: empty tree */

  struct btree_node **hash;     /* [hash_size], a power of two */
  uint32_t hash_size;
  uint64_t nr_nodes, bytes;
  struct btree_node *lru_head, *lru_tail;     /* head = most recent */
  struct btree_node *dirty_head, *dirty_tail; /* head = oldest pin */
  uint64_t nr_dirty;
  struct btree_node *spare;     /* one freed node kept for reuse */

  void *rbuf;                   /* cdev buffer: node reads */
  void *wbuf;                   /* cdev buffer: one largest bset */
  struct btree_path path;
  struct btree_node *batch[BNODE_SHRINK_BATCH];
  struct btree_node **wlist;    /* write_pinned / write_all */
  size_t wlist_cap;

  struct placeholder *ph;
  size_t nr_ph, cap_ph;
  uint64_t next_ph_id;

  uint64_t node_reads, node_writes, evictions, splits, ph_killed;
};

/* First key index at or after (export_id, end). */
static inline uint32_t
lower_bound (const struct btree_node *n, uint16_t export_id, uint64_t end)
{
  uint32_t lo = 0, hi = n->nkeys;

  while (lo < hi) {
    uint32_t mid = lo + (hi - lo) / 2;

    if (bkey_cmp_pos (&n->keys[mid], export_id, end) < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}


/* The position just after p, in *next; false if p is BPOS_MAX. */
static inline bool
bpos_after (struct bpos p, struct bpos *next)
{
  if (p.end != UINT64_MAX) {
    next->export_id = p.export_id;
    next->end = p.end + 1;
    return true;
  }
  if (p.export_id == NC_EXPORT_ID_MAX)
    return false;
  next->export_id = (uint16_t) (p.export_id + 1);
  next->end = 0;
  return true;
}

/* ---- bnode.c: nodes in memory (bt->lock held below) ---- */

/* The journal's open seq (0 without a journal). */
uint64_t bnode_open_seq (struct btree *bt);
/* Refuse every later update (logged once); freezes the oldest pin. */
void bnode_set_broken (struct btree *bt, int r, const char *what);

/* The node in memory that owns bucket, or NULL. */
struct btree_node *bnode_find (const struct btree *bt, uint32_t bucket);
/* Put a leaf on the LRU list (most recent) / move it to the front. */
void bnode_lru_add (struct btree *bt, struct btree_node *n);
void bnode_lru_touch (struct btree *bt, struct btree_node *n);
/* A leaf changed: dirty, pinned at the journal's open seq if it was clean. */
void bnode_mark_dirty (struct btree *bt, struct btree_node *n);

/* A new empty node in a new bucket (nothing on disk refers to it yet),
 * in the hash, not on the LRU list.
 */
int bnode_new (struct btree *bt, uint16_t level, struct btree_node **out);
/* Give up a node made by bnode_new that nothing refers to (its bucket is
 * freed).
 */
void bnode_discard (struct btree *bt, struct btree_node *n);
/* Forget a node (hash if hashed, lists, memory); its bucket is the
 * caller's business.
 */
void bnode_release (struct btree *bt, struct btree_node *n, bool hashed);
/* Release every node; the tree is empty afterwards. */
void bnode_free_all (struct btree *bt);
/* Remove a leaf's data keys whose bucket moved on; how many went. */
uint32_t bnode_drop_stale (struct btree *bt, struct btree_node *n);

/* Evict least recently used leaves until `want` more bytes fit under
 * node_cache_bytes (never fails; may write dirty leaves).
 */
void bnode_shrink (struct btree *bt, size_t want);
/* Read the node ptr names (level, bounds (lo, hi]) from disk into the
 * cache; on the LRU list if lru.
 */
int bnode_read (struct btree *bt, const struct nc_key *ptr, uint16_t level,
                struct bpos lo, struct bpos hi, bool lru,
                struct btree_node **out);
/* Child i of parent (whose lower bound is plo), from memory or disk. */
int bnode_child (struct btree *bt, struct btree_node *parent, uint32_t i,
                 struct bpos plo, struct btree_node **out);
/* Write nodes (distinct, one level) as a new bset each, moving those whose
 * bucket is full and rewriting their parents; clean afterwards.
 */
int bnode_write (struct btree *bt, struct btree_node **nodes, size_t n);

/* ---- btree.c, for btree-walk.c (bt->lock held) ---- */

/* bt->path from the root down to level `stop`, towards position
 * (export_id, end).  The tree is not empty.
 */
int path_find (struct btree *bt, uint16_t export_id, uint64_t end,
               uint16_t stop);
/* Move bt->path to the first key of the next leaf.  1 if there is none. */
int path_next_leaf (struct btree *bt);
/* Why k may not be inserted, or NULL. */
const char *invalid_insert (const struct btree *bt, const struct nc_key *k);
/* Insert keys; journal the ones attempted if `journal`. */
int insert_keys_locked (struct btree *bt, const struct nc_key *keys,
                        size_t n, bool journal, uint64_t *seq, bool *cut);
/* Write every dirty leaf whose pin is below seq (all: UINT64_MAX). */
int write_dirty_locked (struct btree *bt, uint64_t seq);

#endif /* NBDCACHE_BTREE_INTERNAL_H */
