/* SPDX-License-Identifier: BSD-3-Clause */
/* btree.h — the index: a B+tree of extent keys with a bounded node cache.
 *
 * WHAT: maps (export_id, block range) to where the data is: a data key
 * (bucket, offset, gen, DIRTY?), a ZERO key, or nothing (a miss).
 * - Leaves hold struct nc_key extents, sorted by (export_id, end) and
 *   disjoint.  Interior nodes hold child pointers: key (export_id, end) =
 *   the greatest position the child covers; the last child of every level
 *   covers up to (NC_EXPORT_ID_MAX, UINT64_MAX).  All leaves are at level 0.
 * - A node owns one bucket; each node write appends a full sorted bset
 *   (ondisk.h) after the previous one; when the bucket is full the node
 *   moves to a new bucket.  A node holds at most btree_node_max_keys keys
 *   (min(4096, what lets two bsets fit in a bucket)); a full node splits in
 *   two.  Nodes are never merged (an empty leaf is legal).
 * - Each leaf owns the blocks between its bounds: no key crosses from
 *   one leaf's blocks into another's.  Inserting a key goes leaf by leaf
 *   over its range: in each leaf it cuts every key it overlaps (a key
 *   straddling both ends is split in two) and stores its piece there, as
 *   one change of that leaf, so a leaf written at any time holds, for
 *   each block, its old value or the new one — never a cut without the
 *   piece that replaced it.  A DELETE key only cuts.
 *
 * DURABILITY: leaf changes are written lazily.  Every inserted key is also
 * appended to the journal (journal_add) under the btree lock, and a leaf
 * with unwritten changes carries a pin (the journal seq of its first such
 * change); the journal asks btree_write_pinned to write leaves before it
 * drops entries.  Structural changes (split, move to a new bucket, new
 * root) are written at once: new nodes are written and synced, then the
 * parent is rewritten and synced, up to the root; a new root is recorded
 * by the next journal entry (journal_mark_needed).  A replaced node's
 * bucket is freed with bucket_free_node at the journal's open seq, so it
 * is not reused before a durable entry no longer refers to it.  Before any
 * node write the cache device is synced (the data keys point at must be
 * durable before the keys are).
 *
 * NODE CACHE: interior nodes and the root stay in memory; leaves are
 * loaded on demand and evicted (least recently used, clean first; a dirty
 * leaf is written before it is evicted) to keep the bytes of all in-memory
 * nodes under node_cache_bytes (config node_cache_size, default 64 MiB).
 * 100 M extents in 64 MiB of nodes work; it is only slower.
 *
 * PLACEHOLDERS (race-free promotion, bcache's "check key"): a lookup may
 * register a placeholder over the range it returned.  Any later insert
 * that overlaps it (write, trim, zero, invalidate) kills it.  The read path
 * fetches from the backing store, writes the cache, and inserts with
 * btree_insert_promoted, which stores the key only if its placeholder is
 * still alive — so a racing write always wins.  Placeholders are memory
 * only and never journaled.
 *
 * STALE KEYS: a data key whose bucket gen has moved on is treated as a
 * miss by lookups and dropped when met by cuts, node writes and sweeps.
 *
 * THREADS AND LOCKS: one mutex (the btree lock) around every operation,
 * including node loads and writes.  Lock order: btree -> journal -> bucket.
 * The journal's hooks (close_entry, reclaim) take the btree lock
 * themselves, so journal_wait/flush must never be called with it held.
 * FAILURE: -EIO from device I/O; -EBADMSG (logged with the bucket and the
 * reason) when a node read from disk fails its checksum or an invariant —
 * the node is never trusted; -ENOSPC if no node bucket can be had.
 */
#ifndef NBDCACHE_BTREE_H
#define NBDCACHE_BTREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ondisk.h"

struct cdev;
struct bucket_set;
struct journal;
struct btree;

#define BTREE_MAX_DEPTH 8
#define BTREE_NODE_CACHE_DEFAULT_BYTES (UINT64_C (64) << 20)

struct btree_config {
  struct cdev *cd;
  const struct nc_sb *sb;       /* valid; read-only here */
  struct bucket_set *bs;
  struct journal *journal;      /* NULL: read-only use (nbdcache check) */
  uint64_t node_cache_bytes;    /* 0 = default */
  /* What a crash may have torn (bset.h, struct bset_geom): a bset whose
   * journal_seq is below torn_jseq_min (the journal's open seq after
   * replay) or above torn_jseq_max (that plus the ring's blocks) was
   * durable, so damage to it is corruption.  0 = unknown (tests).
   */
  uint64_t torn_jseq_min, torn_jseq_max;
  /* Tests only: keys per node, 4 .. btree_node_max_keys (sb), so that a
   * few thousand keys build a deep tree.  0 = btree_node_max_keys (sb).
   * A tree must be reopened with the value it was written with.
   */
  uint32_t max_keys;
  /* Optional: called before a write of nodes that include a leaf (under
   * the btree lock, with no other engine lock): make durable what keys
   * may rely on outside the cache device (the backing stores: request.c's
   * ORDERING rule 2).  Interior nodes hold only node pointers, so their
   * writes skip it.  0 or -errno (the write fails).
   */
  int (*pre_write) (void *opaque);
  void *pre_write_opaque;
};

int btree_create (const struct btree_config *cfg, struct btree **out);
/* Frees memory only: call btree_write_all first to keep changes. */
void btree_destroy (struct btree *bt);

/* Keys per node for this device. */
uint32_t btree_node_max_keys (const struct nc_sb *sb);

/* ---- recovery (single-threaded, before serving) ---- */
/* The root from the journal (root->size == 0: empty tree; the first
 * insert creates a leaf root).  Loads and checks the root node.
 */
int btree_set_root (struct btree *bt, const struct nc_key *root,
                    uint16_t level);
/* While false, inserts do not call bucket_account (recovery: the buckets
 * are counted by a walk afterwards).  Default true.
 */
void btree_set_accounting (struct btree *bt, bool on);
/* One replayed journal key (DELETE keys cut; stale data keys skipped:
 * not stored, but they still cut what they overlap, as they did when
 * first inserted — else an older key they had replaced would come back).
 * Not journaled again.
 */
int btree_replay_key (struct btree *bt, const struct nc_key *k);

struct btree_walk_ops {
  void *opaque;
  /* Each node reached, parents before children. */
  int (*node) (void *opaque, uint32_t bucket, uint16_t level,
               uint32_t nkeys);
  /* Each leaf key in order (stale ones too: the callback decides). */
  int (*key) (void *opaque, const struct nc_key *k);
};
/* Visit the whole tree (loading nodes through the bounded cache), checking
 * every invariant: keys sorted, disjoint, valid (bkey_invalid_*), within
 * the parent's bounds, child gens current, levels consistent.  -EBADMSG
 * on the first violation (logged).  A callback's non-zero return stops
 * the walk and is returned.
 */
int btree_walk (struct btree *bt, const struct btree_walk_ops *ops);

/* GENS ON DISK: the allocator never bumps a bucket more than
 * BUCKET_GEN_MAX_DISTANCE past the oldest gen a key in the (durable)
 * index may hold, so every data key's gen is at most that far behind its
 * bucket's gen, modulo 256; a key "further behind" is really *ahead* of
 * its bucket: the prio copy lost a bump (rolled back), and stale keys
 * would come back to life.  btree_walk checks every leaf key with
 * BUCKET_GEN_MAX_DISTANCE.  Journal keys may lag by more (a key cut
 * after it was journaled is not held back by the walk that publishes
 * oldest gens, but the next commit drops it from the replay range), so
 * recovery checks them with 2 * BUCKET_GEN_MAX_DISTANCE.  0, or -EBADMSG
 * logged with where / where_no naming the node bucket or journal key.
 */
int btree_check_key_gen (struct bucket_set *bs, const struct nc_key *k,
                         unsigned max_distance, const char *where,
                         uint64_t where_no);

/* ---- run time ---- */

/* What a lookup found for one piece of the range. */
struct btree_piece {
  uint64_t start, end;          /* blocks, [start, end) */
  bool found;                   /* false: a miss (no key or a stale one) */
  struct nc_key key;            /* if found: clipped to exactly the piece */
};

/* Describe [start, end) of export_id as consecutive pieces from start.
 * Fills at most max pieces and returns how many (>= 1); if they end
 * before `end`, call again from the last piece's end.  With placeholder
 * != NULL, registers a placeholder over [start, last piece end) and
 * returns its id (always non-zero) in *placeholder.
 */
int btree_lookup (struct btree *bt, uint16_t export_id, uint64_t start,
                  uint64_t end, struct btree_piece *out, size_t max,
                  uint64_t *placeholder);
/* The same without a placeholder, only if it needs no wait: -EAGAIN when
 * the index lock is held by another thread or a node on the way is not
 * in memory (btree_lookup would read it).
 */
int btree_lookup_nowait (struct btree *bt, uint16_t export_id,
                         uint64_t start, uint64_t end,
                         struct btree_piece *out, size_t max);

/* Insert keys (data, ZERO or DELETE, all of one export) in order: each
 * cuts what it overlaps, kills overlapping placeholders, is accounted in
 * the bucket set and journaled.  *seq (optional) = the journal seq that
 * holds them; *cut (optional) = true if any existing key was cut,
 * stale ones included (a stale key's gen bump may not be durable yet).  A stale data key is not stored (it only cuts).  On an
 * error part way (-EIO, -ENOSPC from a split) the keys up to and
 * including the failing one may be applied, and are journaled.
 */
int btree_insert (struct btree *bt, const struct nc_key *keys, size_t n,
                  uint64_t *seq, bool *cut);
/* The same, only if it needs no wait and no I/O (an event loop's
 * completion): -EAGAIN with nothing changed when the index lock is held
 * by another thread, a node on the way is not in memory, a leaf could
 * split, the node cache is over its bound, or the index is broken (the
 * blocking insert then reports it).  Otherwise btree_insert's result.
 */
int btree_insert_nowait (struct btree *bt, const struct nc_key *keys,
                         size_t n, uint64_t *seq, bool *cut);

/* Insert a promoted (clean) key only if placeholder id is still alive;
 * then drop the placeholder.  *inserted says which happened.
 */
int btree_insert_promoted (struct btree *bt, uint64_t placeholder,
                           const struct nc_key *k, bool *inserted,
                           uint64_t *seq);
/* Drop a placeholder without inserting (the read failed, no space …). */
void btree_placeholder_drop (struct btree *bt, uint64_t placeholder);

/* Journal hooks. */
int btree_journal_close_entry (void *bt, struct journal *j);
int btree_write_pinned (void *bt, uint64_t seq);
/* Write every leaf with unwritten changes (clean shutdown). */
int btree_write_all (struct btree *bt);

/* GC (bcache's): one pass over the whole index that drops stale keys,
 * recounts every data bucket's live and dirty blocks and the oldest gen
 * any key holds (bucket_gc_*, see bucket.h), writes what it changed, and
 * publishes.  Incremental: it holds the btree lock for at most
 * BTREE_GC_LEAVES_PER_HOLD leaves at a time, so requests run in between
 * (inserts during the pass are counted through the gc cursor).  Called
 * by the GC thread and when the allocator says -EAGAIN; concurrent calls
 * are serialised (a second caller waits, then runs its own pass).
 * *stale_keys (optional) = stale keys dropped.
 */
#define BTREE_GC_LEAVES_PER_HOLD 16
int btree_sweep (struct btree *bt);
int btree_gc (struct btree *bt, uint64_t *stale_keys);
/* Tests only (added by the btree module): fn (opaque) is called by
 * btree_gc between two holds of the btree lock, with the btree lock free
 * (so it may insert, look up, scan) but the gc lock held (so it must not
 * call btree_gc or btree_sweep).  NULL: no hook (the default).
 */
typedef void (*btree_gc_hook_fn) (void *opaque);
void btree_set_gc_hook (struct btree *bt, btree_gc_hook_fn fn, void *opaque);

/* ---- scanning and replace-if-unchanged (writeback, moving GC) ---- */

/* A position: keys are visited in (export_id, end) order. */
struct btree_cursor {
  uint16_t export_id;
  uint64_t block;               /* next key visited ends after this */
  bool done;                    /* past last_export: nothing more */
};
/* true: the scan returns this key.  Called with the btree lock held: it
 * must be cheap and must not call the btree or the journal (bucket calls
 * are fine: lock order btree -> bucket).  A NULL filter takes every key.
 */
typedef bool (*btree_filter_fn) (void *opaque, const struct nc_key *k);
/* Collect up to max current (non-stale) leaf keys, whole (not clipped),
 * for which filter returns true, in order from *cur up to the end of
 * export last_export, and advance *cur past the last key visited.  Holds
 * the btree lock for at most BTREE_SCAN_LEAVES_PER_HOLD leaves per call,
 * so it may return 0 with cur->done false: call again.  Returns the
 * number of keys or -errno.  The keys are a snapshot: by the time the
 * caller acts they may have been replaced (see btree_replace).
 */
#define BTREE_SCAN_LEAVES_PER_HOLD 16
int btree_scan (struct btree *bt, struct btree_cursor *cur,
                uint16_t last_export, btree_filter_fn filter, void *opaque,
                struct nc_key *out, size_t max);

/* Replace-if-unchanged (bcache's cmpxchg insert), for n pairs: new[i]
 * covers exactly old[i]'s range and export.  Every part of that range
 * where the index still holds a piece of old[i] — a key with the same
 * flags, the same bucket and gen, and the same bucket offset for the same
 * block (so a piece cut from it matches, a rewrite does not) — becomes
 * the corresponding part of new[i] (a data key is clipped with its
 * offset; a ZERO key is just clipped).  Other parts are left alone: a
 * block rewritten, trimmed or zeroed meanwhile keeps its newer value.
 * Used to mark written-back keys clean (new = old without NC_KEY_DIRTY)
 * and to move data (new = old at a new place).  Journaled (as plain
 * inserts of the replacing pieces, so replay reproduces it) and
 * accounted like btree_insert, all under one hold of the btree lock.
 * *replaced_blocks (optional) = blocks replaced; *seq (optional) = the
 * journal seq holding the change.  A stale old[i] replaces nothing.
 * Also (btree module): a stale new[i] (data key) replaces nothing either
 * (it would drop the data); new[i] may be a DELETE key (drop the pieces
 * of old[i]); -EINVAL if a pair is malformed (nothing applied).  On an
 * error part way, the pairs before the failing one are applied and
 * journaled, like btree_insert.
 */
int btree_replace (struct btree *bt, const struct nc_key *old,
                   const struct nc_key *new_keys, size_t n,
                   uint64_t *replaced_blocks, uint64_t *seq);

struct btree_stats {
  uint16_t depth;               /* 1 = the root is a leaf; 0 = empty */
  uint64_t nodes_in_memory, node_bytes_in_memory, node_cache_bytes;
  uint64_t dirty_leaves;
  uint64_t node_reads, node_writes, node_evictions, splits;
  uint64_t placeholders_killed;
};
void btree_get_stats (struct btree *bt, struct btree_stats *st);

#endif /* NBDCACHE_BTREE_H */
