/* SPDX-License-Identifier: BSD-3-Clause */
/* journal-verify.c — per-key data checksums for a journal write that
 * skips its pre-flush, and their check at recovery.
 *
 * WHAT: a commit that a waiter (FLUSH, FUA) wants, whose entries are not
 * already covered by an earlier sync (journal.c PIPELINE) and whose data
 * keys point at no more than JVERIFY_MAX_BYTES, writes its entries
 * without the pre-flush: data (written before the keys were added), the
 * entries, then ONE sync.  Those entries are version 3 with
 * NC_JENTRY_DATA_UNFLUSHED (ondisk.h), and the nonce of each data key
 * holds jverify_csum of the key's data as read back here before the
 * write.  Recovery (journal-replay.c) checks that data for the entries of
 * the newest write only.
 * WHY: without the pre-flush a crash can leave the entries durable and
 * some of their data not: replay cannot tell stale blocks from the data
 * the key names, and would serve them.  The checksum, seeded with the
 * key's place, range, export and gen, is the key's own: a block still
 * holding an older occupant's bytes (another key, another export) cannot
 * match it unless the bytes are equal, and then replaying is right
 * anyway.  The data checksum region (datacsum.c) cannot say this: its
 * word for the block may be as stale as the block.
 *
 * SAFETY: acknowledgements come after the write's sync.  Every later
 * write's sync also covers the data of every earlier write, so only the
 * newest write of the chain can have undurable data, and nothing in it
 * was acknowledged unless its sync completed — and then all its data is
 * durable and checks.  A mismatch thus means the sync did not complete:
 * the whole newest write is dropped as a torn one is (its seqs reused).
 * A data key of the newest write whose gen is no longer its bucket's
 * (evicted, or freed by a later key of the same write, then bumped — a
 * bump is durable before the bucket is written) points at nothing that
 * matters and is not checked: otherwise an acknowledged write could be
 * dropped because a bucket one of its keys pointed at was reused since.
 * Older writes are never checked, for the same reason.
 *
 * THREADS: jverify_stamp runs in the commit thread (the token holder)
 * on its own buffer; jverify_check at recovery, single-threaded.
 *
 * FAILURE: a read error returns -errno (the commit fails and is retried;
 * recovery fails).  A key whose blocks lie outside the device is left to
 * replay's key validation (not checked here).
 */
#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <xxhash.h>

#include "cdev.h"
#include "journal-internal.h"
#include "ondisk.h"

bool
jverify_key_has_data (const struct nc_key *k)
{
  return !(k->flags & (NC_KEY_DELETE | NC_KEY_ZERO)) && k->size > 0;
}

/* Device block of the key's data, or false if it lies outside. */
static bool
key_block (const struct ring_geom *g, const struct nc_key *k,
           uint64_t *block)
{
  uint64_t b = (uint64_t) k->bucket * g->bucket_blocks + k->offset;

  if (g->bucket_blocks == 0 || k->bucket >= g->nbuckets ||
      k->size > JVERIFY_MAX_BYTES / NC_BLOCK_BYTES ||
      b + k->size > g->cd->size_bytes / NC_BLOCK_BYTES)
    return false;
  *block = b;
  return true;
}

bool
jverify_wanted (const struct ring_geom *g, const struct nc_key *keys,
                size_t n)
{
  uint64_t bytes = 0, block;
  size_t i;

  for (i = 0; i < n; i++) {
    if (!jverify_key_has_data (&keys[i]))
      continue;
    if (!key_block (g, &keys[i], &block))
      return false;
    bytes += (uint64_t) keys[i].size * NC_BLOCK_BYTES;
    if (bytes > JVERIFY_MAX_BYTES)
      return false;
  }
  return true;
}

/* The seed names the key: its device block, range, export and gen. */
uint64_t
jverify_csum (const void *data, const struct nc_key *k, uint64_t block)
{
  const uint64_t s[4] = {
    block, k->end, k->size, (uint64_t) k->export_id << 8 | k->gen,
  };

  return XXH3_64bits_withSeed (data, (size_t) k->size * NC_BLOCK_BYTES,
                               XXH3_64bits (s, sizeof s));
}

static int
vbuf_get (void **buf)
{
  if (*buf == NULL && (*buf = cdev_alloc_buffer (JVERIFY_MAX_BYTES)) == NULL)
    return -ENOMEM;
  return 0;
}

int
jverify_stamp (const struct ring_geom *g, void **buf, struct nc_key *keys,
               size_t n)
{
  uint64_t block;
  size_t i;
  int r;

  if ((r = vbuf_get (buf)) < 0)
    return r;
  for (i = 0; i < n; i++) {
    struct nc_key *k = &keys[i];

    k->nonce = 0;
    if (!jverify_key_has_data (k))
      continue;
    if (!key_block (g, k, &block))
      return -EINVAL;           /* a key the writer made: a bug */
    r = cdev_pread (g->cd, *buf, (size_t) k->size * NC_BLOCK_BYTES,
                    block * NC_BLOCK_BYTES);
    if (r < 0)
      return r;
    k->nonce = jverify_csum (*buf, k, block);
  }
  return 0;
}

int
jverify_check (const struct ring_geom *g, const struct jverify_gens *gens,
               void **buf, const struct nc_jentry *e, uint32_t *bad_key)
{
  uint64_t block;
  uint32_t i;
  int r;

  *bad_key = UINT32_MAX;
  if ((r = vbuf_get (buf)) < 0)
    return r;
  for (i = 0; i < e->nkeys; i++) {
    const struct nc_key *k = &e->keys[i];

    if (!jverify_key_has_data (k) || !key_block (g, k, &block))
      continue;
    if (gens != NULL && gens->gen != NULL && k->bucket < g->nbuckets &&
        gens->gen (gens->opaque, k->bucket) != k->gen)
      continue;                 /* stale: see SAFETY */
    r = cdev_pread (g->cd, *buf, (size_t) k->size * NC_BLOCK_BYTES,
                    block * NC_BLOCK_BYTES);
    if (r < 0)
      return r;
    if (jverify_csum (*buf, k, block) != k->nonce) {
      *bad_key = i;
      return 0;
    }
    if (gens != NULL && gens->verified != NULL)
      gens->verified (gens->opaque, k, block, *buf);
  }
  return 0;
}

void
journal_set_gens (struct journal *j,
                  uint8_t (*gen) (void *opaque, uint32_t bucket), void *opaque)
{
  j->gens.gen = gen;
  j->gens.opaque = opaque;
}

void
journal_set_verified (struct journal *j,
                      void (*verified) (void *opaque, const struct nc_key *k,
                                        uint64_t block, const void *data))
{
  j->gens.verified = verified;
}
