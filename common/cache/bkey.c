/* SPDX-License-Identifier: BSD-3-Clause */
/* bkey.c — validity of keys read from the cache device.
 *
 * WHAT: bkey_invalid_leaf and bkey_invalid_ptr (bkey.h): given a key and
 * the device geometry, NULL if the key is well formed, else a short static
 * reason for the caller's corruption message.
 * WHY: every key that comes off the device (btree node, journal entry)
 * passes through here before anything trusts its bucket or offset; one
 * definition keeps the btree, the journal and nbdcache check agreeing.
 *
 * INVARIANTS (what "valid" means):
 * - leaf: size >= 1; end >= size (the extent starts at or after block 0);
 *   flags within NC_KEY_ALL_FLAGS (DELETE is journal-only, never in a
 *   node); export_id in 1 .. NC_MAX_EXPORTS; nonce 0; and unless ZERO,
 *   data_first <= bucket < nbuckets and offset + size <= bucket_blocks.
 *   A ZERO key points nowhere: its offset and gen are 0 (every ZERO or
 *   DELETE key is made from nothing, and cutting one never moves its
 *   offset; its bucket field carries an id, request.c), so a data key
 *   whose ZERO flag flipped, checksum recomputed, is refused rather than
 *   read as zeros (unless it was at offset 0 of a bucket at gen 0).
 * - ptr (interior-node child): data_first <= bucket < nbuckets, flags 0,
 *   nonce != 0.  Its (export_id, end) is a bound, not an extent, so it may
 *   be the NC_EXPORT_ID_MAX / UINT64_MAX sentinel and size is not checked.
 * THREADS AND LOCKS: pure functions, no state.
 * FAILURE: none; the caller logs the reason with its context.
 * NOT HERE: gen checks (the bucket set knows gens), ordering and overlap
 * between keys (the bset reader), the journal's DELETE keys.
 */
#include <config.h>

#include <stddef.h>
#include <stdint.h>

#include "bkey.h"
#include "ondisk.h"

static const char *
invalid_bucket (uint32_t bucket, uint32_t data_first, uint32_t nbuckets)
{
  if (bucket < data_first)
    return "bucket is in the metadata area";
  if (bucket >= nbuckets)
    return "bucket is beyond the device";
  return NULL;
}

const char *
bkey_invalid_leaf (const struct nc_key *k, uint32_t bucket_blocks,
                   uint32_t data_first, uint32_t nbuckets)
{
  const char *why;

  if (k->size == 0)
    return "key has size 0";
  if (k->end < k->size)
    return "key starts before block 0";
  if (k->flags & ~NC_KEY_ALL_FLAGS)
    return "key has unknown or journal-only flags";
  if (k->export_id == 0 || k->export_id > NC_MAX_EXPORTS)
    return "key has an invalid export id";
  if (k->nonce != 0)
    return "leaf key has a nonce";
  if ((k->flags & NC_KEY_NOHOLE) && !(k->flags & NC_KEY_ZERO))
    return "NOHOLE on a key that is not ZERO";
  if (k->flags & NC_KEY_ZERO)
    return k->offset != 0 || k->gen != 0
      ? "ZERO key has a data pointer (offset or gen)" : NULL;
  if ((why = invalid_bucket (k->bucket, data_first, nbuckets)) != NULL)
    return why;
  if (k->offset > bucket_blocks || k->size > bucket_blocks - k->offset)
    return "key extends past the end of its bucket";
  return NULL;
}

const char *
bkey_invalid_insert (const struct nc_key *k, uint32_t bucket_blocks,
                     uint32_t data_first, uint32_t nbuckets)
{
  struct nc_key t = *k;

  if (t.flags & NC_KEY_DELETE) {
    if (t.flags != NC_KEY_DELETE)
      return "DELETE key with other flags";
    /* A DELETE's pointer is unused (older code moved its offset when it
     * cut one, assemble.c): checked as a ZERO key without it.
     */
    t.flags = NC_KEY_ZERO;
    t.offset = 0;
    t.gen = 0;
  }
  return bkey_invalid_leaf (&t, bucket_blocks, data_first, nbuckets);
}

const char *
bkey_invalid_ptr (const struct nc_key *k, uint32_t data_first,
                  uint32_t nbuckets)
{
  const char *why;

  if ((why = invalid_bucket (k->bucket, data_first, nbuckets)) != NULL)
    return why;
  if (k->flags != 0)
    return "child pointer has flags";
  if (k->nonce == 0)
    return "child pointer has no nonce";
  return NULL;
}
