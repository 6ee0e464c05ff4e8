/* SPDX-License-Identifier: BSD-3-Clause */
/* bkey.h — extent keys: ordering, ranges, cutting.
 *
 * WHAT: small inline helpers over struct nc_key (ondisk.h), used in memory
 * and on disk alike: start/end, ordering by (export_id, end), overlap,
 * trimming the front or back of an extent (a data key's offset moves with
 * its start), and validity checks for keys read from disk.
 * WHY: every module that touches keys (btree, journal, the request paths,
 * nbdcache check) must agree on what a key means.
 * INVARIANTS: a valid leaf key has size >= 1, end >= size, flags within
 * NC_KEY_ALL_FLAGS, and, unless ZERO, offset + size <= bucket_blocks.
 * THREADS: pure functions.
 */
#ifndef NBDCACHE_BKEY_H
#define NBDCACHE_BKEY_H

#include <stdbool.h>
#include <stdint.h>

#include "ondisk.h"

/* A key without data (ZERO, DELETE) is at most this many blocks (the size
 * field is 32 bits).
 */
#define BKEY_MAX_BLOCKS (UINT32_C (1) << 30)

static inline uint64_t bkey_start (const struct nc_key *k)
{ return k->end - k->size; }

/* A key of export_id over blocks [start, end) with flags; no location. */
static inline void
bkey_init (struct nc_key *k, uint16_t export_id, uint64_t start,
           uint64_t end, uint8_t flags)
{
  *k = (struct nc_key) { .export_id = export_id, .end = end,
                         .size = (uint32_t) (end - start), .flags = flags };
}

/* Order by (export_id, end).  <0, 0, >0. */
static inline int
bkey_cmp (const struct nc_key *a, const struct nc_key *b)
{
  if (a->export_id != b->export_id)
    return a->export_id < b->export_id ? -1 : 1;
  if (a->end != b->end)
    return a->end < b->end ? -1 : 1;
  return 0;
}

/* Compare a key's position with (export_id, end). */
static inline int
bkey_cmp_pos (const struct nc_key *a, uint16_t export_id, uint64_t end)
{
  if (a->export_id != export_id)
    return a->export_id < export_id ? -1 : 1;
  if (a->end != end)
    return a->end < end ? -1 : 1;
  return 0;
}

/* Do k and [start, end) of export_id overlap? */
static inline bool
bkey_overlaps (const struct nc_key *k, uint16_t export_id,
               uint64_t start, uint64_t end)
{
  return k->export_id == export_id && bkey_start (k) < end && start < k->end;
}

/* Keep [new_start, k->end): drop the front.  new_start in (start, end). */
static inline void
bkey_cut_front (struct nc_key *k, uint64_t new_start)
{
  uint64_t drop = new_start - bkey_start (k);
  /* A ZERO or DELETE key points nowhere: its offset stays 0 (bkey.c). */
  if (!(k->flags & (NC_KEY_ZERO | NC_KEY_DELETE)))
    k->offset += (uint32_t) drop;
  k->size -= (uint32_t) drop;
}

/* Keep [start, new_end): drop the back.  new_end in (start, end). */
static inline void
bkey_cut_back (struct nc_key *k, uint64_t new_end)
{
  k->size -= (uint32_t) (k->end - new_end);
  k->end = new_end;
}

static inline bool bkey_is_zero (const struct nc_key *k)
{ return (k->flags & NC_KEY_ZERO) != 0; }
static inline bool bkey_is_dirty (const struct nc_key *k)
{ return (k->flags & NC_KEY_DIRTY) != 0; }
static inline bool bkey_has_data (const struct nc_key *k)
{ return (k->flags & (NC_KEY_ZERO | NC_KEY_DELETE)) == 0; }

/* NULL if k is a well-formed leaf key for a device whose buckets are
 * bucket_blocks long and number nbuckets (data buckets start at
 * data_first), else a static reason.  Used on every key read from disk.
 */
const char *bkey_invalid_leaf (const struct nc_key *k, uint32_t bucket_blocks,
                               uint32_t data_first, uint32_t nbuckets);
/* NULL if k is well-formed as btree_insert and the journal take keys: a
 * leaf key (bkey_invalid_leaf), or a DELETE of a range (NC_KEY_DELETE
 * alone; its pointer is unused, checked as a ZERO key of that range).
 * The one rule for both recovery (btree insert) and nbdcache check
 * (assemble.c), so check never calls clean a journal recovery refuses.
 */
const char *bkey_invalid_insert (const struct nc_key *k,
                                 uint32_t bucket_blocks, uint32_t data_first,
                                 uint32_t nbuckets);
/* Same for an interior-node child pointer. */
const char *bkey_invalid_ptr (const struct nc_key *k, uint32_t data_first,
                              uint32_t nbuckets);

#endif /* NBDCACHE_BKEY_H */
