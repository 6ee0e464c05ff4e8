/* SPDX-License-Identifier: BSD-3-Clause */
/* bset.h — a btree node's bucket on disk: building a bset, reading the
 * newest valid one back, checking a node's keys.  Internal to the btree
 * (btree.c and its test); nothing else includes it.
 *
 * Owns: nothing; pure functions over caller buffers, plus reads of one
 * node bucket.
 * On disk: struct nc_bset (ondisk.h).  A node's bsets are appended one
 * after another from block 0 of its bucket, each padded to a block; the
 * newest valid one is the node.  Only the first span_blocks blocks of a
 * node bucket are used (a whole 64 MiB bucket of appended bsets would make
 * every node read 64 MiB long); when the next bset does not fit there the
 * node moves to a new bucket.
 * Threads: the caller serialises (the btree lock).
 * Not here: the tree, the node cache, when nodes are written (btree.c).
 */
#ifndef NBDCACHE_BSET_H
#define NBDCACHE_BSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ondisk.h"

struct cdev;

/* A position in key order: (export_id, end). */
struct bpos {
  uint64_t end;
  uint16_t export_id;
};

#define BPOS_MIN ((struct bpos) { 0, 0 })
#define BPOS_MAX ((struct bpos) { UINT64_MAX, NC_EXPORT_ID_MAX })

static inline struct bpos
bpos_of (const struct nc_key *k)
{
  return (struct bpos) { k->end, k->export_id };
}

static inline int
bpos_cmp (struct bpos a, struct bpos b)
{
  if (a.export_id != b.export_id)
    return a.export_id < b.export_id ? -1 : 1;
  if (a.end != b.end)
    return a.end < b.end ? -1 : 1;
  return 0;
}

/* Node geometry of one device. */
struct bset_geom {
  uint8_t uuid[16];
  uint32_t bucket_blocks, data_first, nbuckets;
  uint32_t max_keys;            /* a node over this is split */
  uint32_t cap_keys;            /* max_keys + 2: most a node or bset holds
                                   (one change adds at most two keys; a
                                   node whose split failed stays over) */
  uint32_t span_blocks;         /* blocks of a node bucket holding bsets */
  uint32_t max_bset_blocks;     /* blocks of a bset of cap_keys keys */
  uint32_t read_blocks;         /* blocks read at a time: the largest bset
                                   and the next header, so a node written
                                   once is one read */
  /* A torn bset's journal_seq lies in [torn_jseq_min, torn_jseq_max]
   * (bset.c, TORN OR CORRUPT): min = the journal's open seq after replay
   * (newest durable entry + 1), max = min plus the ring's blocks (entries
   * closed but never durable).  0 = unknown (tests of the bare btree):
   * no bound.
   */
  uint64_t torn_jseq_min, torn_jseq_max;
};

void bset_geom_init (struct bset_geom *g, const struct nc_sb *sb,
                     uint32_t max_keys);

/* Blocks a bset of nkeys keys takes. */
static inline uint32_t
bset_blocks (uint32_t nkeys)
{
  uint64_t bytes = sizeof (struct nc_bset)
    + (uint64_t) nkeys * sizeof (struct nc_key);
  return (uint32_t) ((bytes + NC_BLOCK_BYTES - 1) / NC_BLOCK_BYTES);
}

/* Fill buf (bset_blocks (nkeys) blocks) with a complete bset: header,
 * keys, zero padding, checksum.
 */
void bset_build (const struct bset_geom *g, void *buf, uint16_t level,
                 uint64_t nonce, uint64_t seq, uint64_t journal_seq,
                 const struct nc_key *keys, uint32_t nkeys);

/* NULL if keys[0 .. nkeys) are a valid node at `level` bounded by
 * (lo, hi]: leaf keys valid (bkey_invalid_leaf), sorted, disjoint and
 * wholly inside the node's blocks (a key of lo's export starts at or
 * after lo.end: each leaf owns the blocks between its bounds);
 * child pointers valid (bkey_invalid_ptr), strictly increasing, at least
 * one, the last equal to hi.  Else a static reason; *bad (if not NULL)
 * is the index of the offending key.
 */
const char *bset_check_keys (const struct bset_geom *g, uint16_t level,
                             const struct nc_key *keys, uint32_t nkeys,
                             struct bpos lo, struct bpos hi, uint32_t *bad);

/* What bset_read_node found. */
struct bset_node_info {
  uint32_t nkeys;
  uint32_t next_block;          /* first block after the newest bset */
  uint64_t seq;                 /* of the newest bset */
  uint64_t journal_seq;
  uint32_t nr_bsets;            /* valid bsets in the chain */
  uint32_t torn_block;          /* a torn last bset starts here (its first
                                   block should be zeroed before the node
                                   is written again); 0 = none */
};

/* Read node bucket `bucket` (expected level and nonce, bounds (lo, hi])
 * into keys[0 .. cap_keys) and *info.  buf is a cdev buffer of
 * read_blocks blocks.  Walks the bsets from block 0 while each has a good
 * checksum, magic, version, uuid, nonce, level, key count, zero padding
 * and seq = previous + 1, and takes the last of them.  Where the walk
 * stops must look like the end of the chain or a torn last write (see
 * bset.c, TORN OR CORRUPT).  -EBADMSG (logged once, naming the bucket,
 * block and reason) if even the first bset is bad, the stop is
 * corruption, or the keys fail bset_check_keys; -errno from the read.
 */
int bset_read_node (const struct bset_geom *g, struct cdev *cd, void *buf,
                    uint32_t bucket, uint16_t level, uint64_t nonce,
                    struct bpos lo, struct bpos hi, struct nc_key *keys,
                    struct bset_node_info *info);

#endif /* NBDCACHE_BSET_H */
