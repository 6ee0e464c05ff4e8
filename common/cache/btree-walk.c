/* SPDX-License-Identifier: BSD-3-Clause */
/* btree-walk.c — walks over the index beside requests: the GC pass,
 * scans, and replace-if-unchanged.
 *
 * WHAT: the incremental GC pass (stale keys dropped, the bucket set's
 * recount fed key by key), btree_scan (the writeback's and moving GC's
 * cursor over keys matching a filter, wrapping at the end) and
 * btree_replace (replace a key by another only where the index still
 * holds the old one: writeback's mark-clean and moving GC's move, done as
 * ordinary inserts of the replacing pieces, so accounting, placeholders
 * and the journal treat them like any insert).
 * WHY: these walk the tree in pieces while requests keep inserting; they
 * share the tree's paths and inserts (btree-internal.h) but not its
 * shape rules, which stay in btree.c.
 *
 * INVARIANTS: btree.c's, and:
 * - GC: a pass holds bt->lock for at most BTREE_GC_LEAVES_PER_HOLD
 *   leaves, then lets go and resumes after the upper bound of the last
 *   leaf it did (leaves are never merged, so that bound stays a leaf
 *   boundary); bucket_gc_cursor tells the bucket set that every key up to
 *   there was noted, so inserts meanwhile are counted exactly once.
 * - A replace changes only the blocks where the index still holds a piece
 *   of the old key (same flags, bucket, gen and bucket offset for the
 *   block); a block rewritten, trimmed or zeroed meanwhile keeps its value.
 *
 * THREADS AND LOCKS: bt->lock around every public call, as in btree.c; a
 * GC pass takes bt->gc_lock first and drops bt->lock between holds.
 * Bucket calls are made with bt->lock held (lock order btree -> journal
 * -> bucket).
 *
 * FAILURE: -errno from node reads and writes and from inserts (a replace
 * that fails part way keeps what it applied, like any insert); -EINVAL
 * for a malformed key pair.  A GC pass that fails ends the bucket
 * recount as incomplete (no counts change).
 *
 * NOT HERE: the tree's shape, lookups and inserts (btree.c); node memory
 * and writes (bnode.c); the bucket set's side of the recount
 * (bucket-gc.c); what writeback and moving GC do with the keys (writeback.c,
 * gc.c).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bkey.h"
#include "btree-internal.h"
#include "btree.h"
#include "bucket.h"
#include "compiler.h"
#include "log.h"

/* ---- GC ---- */

void
btree_set_gc_hook (struct btree *bt, btree_gc_hook_fn fn, void *opaque)
{
  pthread_mutex_lock (&bt->lock);
  bt->gc_hook = fn;
  bt->gc_hook_opaque = opaque;
  pthread_mutex_unlock (&bt->lock);
}

/* One hold of a GC pass: from the leaf after *cur, at most
 * BTREE_GC_LEAVES_PER_HOLD leaves: drop stale keys, note every key, move
 * the cursor to the leaf's upper bound.  1 when the last leaf is done.
 */
static int
gc_hold (struct btree *bt, struct bpos *cur, uint64_t *dropped)
{
  struct btree_path *p = &bt->path;
  struct bpos next;
  unsigned n;
  int r;

  if (bt->root == NULL) {
    /* Empty (and it stays so: nodes are never merged away). */
    bucket_gc_cursor (bt->bs, NC_EXPORT_ID_MAX, UINT64_MAX);
    return 1;
  }
  if (!bpos_after (*cur, &next))
    return 1;
  if ((r = path_find (bt, next.export_id, next.end, 0)) < 0)
    return r;
  for (n = 0;; n++) {
    struct btree_node *leaf = p->node[0];
    uint32_t i, d;

    d = bnode_drop_stale (bt, leaf);
    if (d > 0) {
      bnode_mark_dirty (bt, leaf);
      *dropped += d;
    }
    for (i = 0; i < leaf->nkeys; i++)
      bucket_gc_note (bt->bs, &leaf->keys[i]);
    /* Leaves are never merged, so this bound stays a leaf boundary: the
     * next hold starts exactly after it, and a key inserted meanwhile is
     * either at or before it (counted through the cursor) or after it
     * (noted by the walk).  The rightmost leaf ends at BPOS_MAX.
     */
    *cur = leaf->hi;
    bucket_gc_cursor (bt->bs, cur->export_id, cur->end);
    if (bpos_cmp (*cur, BPOS_MAX) == 0)
      return 1;
    if (n + 1 >= BTREE_GC_LEAVES_PER_HOLD)
      return 0;
    if ((r = path_next_leaf (bt)) != 0)
      return r;
  }
}

int
btree_gc (struct btree *bt, uint64_t *stale_keys)
{
  struct bpos cur = BPOS_MIN;
  uint64_t dropped = 0;
  bool first = true;
  int r;

  pthread_mutex_lock (&bt->gc_lock);
  pthread_mutex_lock (&bt->lock);
  bucket_gc_begin (bt->bs);
  /* The first hold starts at the first leaf (cur is before everything:
   * bpos_after (BPOS_MIN) = (0, 1), and no key ends at block 0).
   */
  for (;;) {
    if (!first) {
      btree_gc_hook_fn hook = bt->gc_hook;
      void *opaque = bt->gc_hook_opaque;

      bnode_shrink (bt, 0);
      pthread_mutex_unlock (&bt->lock);
      if (hook != NULL)
        hook (opaque);
      pthread_mutex_lock (&bt->lock);
    }
    first = false;
    if ((r = gc_hold (bt, &cur, &dropped)) != 0)
      break;
  }
  /* Only a complete walk whose dropped stale keys are durable may publish
   * oldest gens: published earlier, the allocator could bump a bucket past
   * a stale key that a crash would bring back from an older leaf.
   */
  if (r > 0)
    r = write_dirty_locked (bt, UINT64_MAX);
  bucket_gc_end (bt->bs, r == 0);
  if (r < 0)
    log_warning ("btree: GC pass stopped: %s", strerror (-r));
  bnode_shrink (bt, 0);
  pthread_mutex_unlock (&bt->lock);
  pthread_mutex_unlock (&bt->gc_lock);
  if (stale_keys != NULL)
    *stale_keys = dropped;
  return r;
}

int
btree_sweep (struct btree *bt)
{
  return btree_gc (bt, NULL);
}

/* ---- scanning ---- */

int
btree_scan (struct btree *bt, struct btree_cursor *cur, uint16_t last_export,
            btree_filter_fn filter, void *opaque, struct nc_key *out,
            size_t max)
{
  struct btree_path *p = &bt->path;
  struct bpos next;
  unsigned leaves = 1;
  size_t n = 0;
  int r = 0;

  if (cur == NULL || out == NULL || max == 0)
    return -EINVAL;
  if (cur->done)
    return 0;
  if (!bpos_after ((struct bpos) { .end = cur->block, .export_id = cur->export_id }, &next) ||
      next.export_id > last_export) {
    cur->done = true;
    return 0;
  }
  pthread_mutex_lock (&bt->lock);
  if (bt->root == NULL) {
    cur->done = true;
    goto out;
  }
  if ((r = path_find (bt, next.export_id, next.end, 0)) < 0)
    goto out;
  for (;;) {
    struct btree_node *leaf = p->node[0];

    for (; p->idx[0] < leaf->nkeys; p->idx[0]++) {
      const struct nc_key *k = &leaf->keys[p->idx[0]];

      if (k->export_id > last_export) {
        cur->done = true;
        goto out;
      }
      if (!bucket_ptr_stale (bt->bs, k) &&
          (filter == NULL || filter (opaque, k))) {
        if (n == max)
          goto out;
        out[n++] = *k;
      }
      cur->export_id = k->export_id;
      cur->block = k->end;
    }
    /* Everything up to the leaf's upper bound is visited. */
    cur->export_id = leaf->hi.export_id;
    cur->block = leaf->hi.end;
    if (leaf->hi.export_id > last_export ||
        (leaf->hi.export_id == last_export && leaf->hi.end == UINT64_MAX)) {
      cur->done = true;
      break;
    }
    if (leaves >= BTREE_SCAN_LEAVES_PER_HOLD)
      break;
    if ((r = path_next_leaf (bt)) < 0)
      goto out;
    if (r > 0) {
      cur->done = true;
      break;
    }
    leaves++;
  }
 out:
  bnode_shrink (bt, 0);
  pthread_mutex_unlock (&bt->lock);
  return r < 0 ? r : (int) n;
}

/* ---- replace-if-unchanged ---- */

/* Is index key c, over its blocks that old covers, a piece of old: the
 * same flags and (data) the same bucket, gen and block-for-block offset,
 * or (ZERO) the same zero id in the bucket field — request.c gives every
 * ZERO key a new one, so a zero repeated meanwhile is not taken for the
 * one writeback wrote (a write-around may have come in between).
 */
static bool
piece_of (const struct nc_key *c, const struct nc_key *old)
{
  uint64_t b;

  if (c->flags != old->flags)
    return false;
  if (!bkey_has_data (c))
    return c->bucket == old->bucket;
  if (c->bucket != old->bucket || c->gen != old->gen)
    return false;
  /* Compare the offsets of one block both cover (exact: each distance is
   * below a key's size).
   */
  b = MAX (bkey_start (c), bkey_start (old));
  return c->offset + (b - bkey_start (c)) ==
    old->offset + (b - bkey_start (old));
}

struct piece_buf {
  struct nc_key *k;
  size_t n, cap;
};

/* new_key clipped to [s, e), appended (merged with the previous piece if
 * they touch: new_key is contiguous).
 */
static int
piece_add (struct piece_buf *pb, const struct nc_key *new_key, uint64_t s,
           uint64_t e)
{
  struct nc_key *k;

  if (pb->n > 0 && pb->k[pb->n - 1].end == s) {
    k = &pb->k[pb->n - 1];
    s = bkey_start (k);
  }
  else {
    if (pb->n == pb->cap) {
      size_t cap = pb->cap ? pb->cap * 2 : 16;
      struct nc_key *t = realloc (pb->k, cap * sizeof *t);

      if (t == NULL)
        return -ENOMEM;
      pb->k = t;
      pb->cap = cap;
    }
    k = &pb->k[pb->n++];
  }
  *k = *new_key;
  if (bkey_start (k) < s)
    bkey_cut_front (k, s);
  if (k->end > e)
    bkey_cut_back (k, e);
  return 0;
}

/* The parts of old's range the index still holds as pieces of old, as
 * clips of new_key, into pb.
 */
static int
collect_pieces (struct btree *bt, const struct nc_key *old,
                const struct nc_key *new_key, struct piece_buf *pb)
{
  struct btree_path *p = &bt->path;
  const uint16_t x = old->export_id;
  const uint64_t os = bkey_start (old);
  int r;

  pb->n = 0;
  if (bt->root == NULL)
    return 0;
  if ((r = path_find (bt, x, os + 1, 0)) < 0)
    return r;
  for (;;) {
    struct btree_node *leaf = p->node[0];

    for (; p->idx[0] < leaf->nkeys; p->idx[0]++) {
      const struct nc_key *c = &leaf->keys[p->idx[0]];

      if (c->export_id != x || bkey_start (c) >= old->end)
        return 0;
      if (!bucket_ptr_stale (bt->bs, c) && piece_of (c, old) &&
          (r = piece_add (pb, new_key, MAX (bkey_start (c), os),
                          MIN (c->end, old->end))) < 0)
        return r;
    }
    if (bpos_cmp (leaf->hi, (struct bpos) { .end = old->end, .export_id = x }) >= 0)
      return 0;
    if ((r = path_next_leaf (bt)) != 0)
      return r < 0 ? r : 0;
  }
}

static const char *
invalid_pair (const struct btree *bt, const struct nc_key *old,
              const struct nc_key *new_key)
{
  const char *why;

  if (old->flags & NC_KEY_DELETE)
    return "old is a DELETE key";
  if ((why = invalid_insert (bt, old)) != NULL ||
      (why = invalid_insert (bt, new_key)) != NULL)
    return why;
  if (old->export_id != new_key->export_id || old->end != new_key->end ||
      old->size != new_key->size)
    return "new does not cover exactly old's range";
  return NULL;
}

int
btree_replace (struct btree *bt, const struct nc_key *old,
               const struct nc_key *new_keys, size_t n,
               uint64_t *replaced_blocks, uint64_t *seq)
{
  struct piece_buf pb = { NULL, 0, 0 };
  uint64_t blocks = 0, s = 0;
  size_t i, j;
  int r = 0;

  pthread_mutex_lock (&bt->lock);
  s = bnode_open_seq (bt);
  if (bt->broken) {
    r = bt->broken;
    goto out;
  }
  for (i = 0; i < n; i++) {
    const char *why = invalid_pair (bt, &old[i], &new_keys[i]);

    if (why != NULL) {
      log_error ("btree: refusing to replace key %zu (export %u, end %"
                 PRIu64 ", size %" PRIu32 "): %s", i, old[i].export_id,
                 old[i].end, old[i].size, why);
      r = -EINVAL;
      goto out;
    }
  }
  for (i = 0; i < n; i++) {
    if (bucket_ptr_stale (bt->bs, &old[i]) ||
        bucket_ptr_stale (bt->bs, &new_keys[i]))
      continue;
    if ((r = collect_pieces (bt, &old[i], &new_keys[i], &pb)) < 0)
      goto out;
    if (pb.n == 0)
      continue;
    /* Ordinary inserts: cut, store, account, kill placeholders, journal;
     * replaying them gives the same result.
     */
    if ((r = insert_keys_locked (bt, pb.k, pb.n, true, &s, NULL)) < 0)
      goto out;
    for (j = 0; j < pb.n; j++)
      blocks += pb.k[j].size;
  }
 out:
  bnode_shrink (bt, 0);
  pthread_mutex_unlock (&bt->lock);
  free (pb.k);
  if (replaced_blocks != NULL)
    *replaced_blocks = blocks;
  if (seq != NULL)
    *seq = s;
  return r;
}
