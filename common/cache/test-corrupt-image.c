/* SPDX-License-Identifier: BSD-3-Clause */
/* test-corrupt-image.c — test-corrupt's own reader of a cache image (see
 * test-corrupt-image.h): parsed with ondisk.h and nc_csum only, never with
 * the engine's readers.
 */
#include <config.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "csum.h"
#include "journal-internal.h"
#include "ondisk.h"
#include "super.h"
#include "test-corrupt-image.h"

uint64_t
bucket_byte (const struct image *im, uint32_t bucket)
{
  return (uint64_t) bucket * im->sb.bucket_blocks * NC_BLOCK_BYTES;
}

void
image_load (struct image *im, unsigned char *p)
{
  const struct nc_sb *a = (const void *) p;
  const struct nc_sb *b = (const void *) (p + NC_BLOCK_BYTES);

  im->p = p;
  /* The test never damages the superblock: take the newer copy. */
  im->sb = (b->magic == NC_SB_MAGIC && b->seq > a->seq) ? *b : *a;
  assert_true (im->sb.magic == NC_SB_MAGIC);
}

/* The bytes an entry's checksum covers: header and keys and, in
 * version 4, the inline data after them.
 */
uint64_t
jentry_csum_bytes (const struct nc_jentry *e)
{
  uint64_t n = sizeof *e + (uint64_t) e->nkeys * sizeof (struct nc_key);

  if (e->version == NC_JENTRY_VERSION_INLINE)
    n += jentry_inline_bytes (e->keys, e->nkeys);
  return n;
}

/* The payload (header and keys) of the journal entry at image offset
 * off, or NULL if it is not a valid entry; valid until the next call.
 */
const struct nc_jentry *
jentry_at (const struct image *im, uint64_t off, uint64_t ring_blocks_left)
{
  static unsigned char payload[JOURNAL_MAX_ENTRY_BLOCKS * NC_BLOCK_BYTES];
  const struct nc_jentry *e = (const void *) (im->p + off);
  const struct nc_jentry *pe = (const void *) payload;
  uint32_t bad;

  uint64_t covered;

  if (e->magic != NC_JOURNAL_MAGIC || e->nblocks == 0 ||
      e->nblocks > JOURNAL_MAX_ENTRY_BLOCKS || e->nblocks > ring_blocks_left ||
      !jentry_payload (e, e->nblocks, jstamp_seed (im->sb.uuid), payload,
                       &bad) ||
      pe->nkeys > keys_in_blocks (pe->version, pe->nblocks))
    return NULL;
  covered = jentry_csum_bytes (pe);
  if (covered > jentry_payload_bytes (pe->version, pe->nblocks) ||
      pe->csum != nc_csum (pe, (size_t) covered))
    return NULL;
  return pe;
}

/* The valid journal entry with the highest seq: its ring byte offset. */
uint64_t
newest_jentry (const struct image *im)
{
  uint64_t first = bucket_byte (im, im->sb.journal_first), best = 0;
  uint64_t blocks = (uint64_t) im->sb.journal_buckets * im->sb.bucket_blocks;
  uint64_t best_seq = 0, i;

  for (i = 0; i < blocks; i++) {
    const struct nc_jentry *e = jentry_at (im, first + i * NC_BLOCK_BYTES,
                                           blocks - i);

    if (e == NULL)
      continue;
    if (e->seq > best_seq) {
      best_seq = e->seq;
      best = first + i * NC_BLOCK_BYTES;
    }
  }
  assert_true (best_seq > 0);
  return best;
}

uint32_t
span_blocks (const struct image *im)
{
  /* bset.c's geometry: the first MiB, at most the bucket. */
  uint32_t span = (1u << 20) / NC_BLOCK_BYTES;

  return span < im->sb.bucket_blocks ? span : im->sb.bucket_blocks;
}

void
read_chain (const struct image *im, struct node *n)
{
  uint64_t base = bucket_byte (im, n->bucket);
  uint32_t b = 0, span = span_blocks (im);

  n->nr = 0;
  while (b < span && n->nr < MAX_CHAIN) {
    const struct nc_bset *h = (const void *) (im->p + base
                                              + (uint64_t) b * NC_BLOCK_BYTES);
    uint32_t nb = (uint32_t) ((sizeof *h + (uint64_t) h->nkeys
                               * sizeof (struct nc_key) + NC_BLOCK_BYTES - 1)
                              / NC_BLOCK_BYTES);

    if (h->magic != NC_BSET_MAGIC || h->nonce != n->nonce ||
        h->seq != n->nr + 1 || nb > span - b ||
        h->csum != nc_csum (h, sizeof *h + (size_t) h->nkeys
                            * sizeof (struct nc_key)))
      break;
    n->level = h->level;
    n->chain[n->nr++] = (struct bset_at) {
      .block = b, .nblocks = nb, .seq = h->seq,
      .journal_seq = h->journal_seq, .nkeys = h->nkeys,
    };
    b += nb;
  }
  assert_true (n->nr > 0);
}

const struct nc_bset *
bset_hdr (const struct image *im, const struct node *n, unsigned i)
{
  return (const void *) (im->p + bucket_byte (im, n->bucket)
                         + (uint64_t) n->chain[i].block * NC_BLOCK_BYTES);
}

/* Every live node, from the newest journal entry's root down. */
unsigned
live_nodes (const struct image *im, struct node *out, unsigned max)
{
  const struct nc_jentry *e = (const void *) (im->p + newest_jentry (im));
  unsigned nr = 0, i;

  if (e->root.size == 0)
    return 0;
  out[nr++] = (struct node) { .bucket = e->root.bucket,
                              .nonce = e->root.nonce };
  for (i = 0; i < nr; i++) {
    const struct nc_bset *h;
    uint32_t k;

    read_chain (im, &out[i]);
    h = bset_hdr (im, &out[i], out[i].nr - 1);
    if (h->level == 0)
      continue;
    for (k = 0; k < h->nkeys && nr < max; k++)
      out[nr++] = (struct node) { .bucket = h->keys[k].bucket,
                                  .nonce = h->keys[k].nonce };
  }
  return nr;
}

/* Recompute the checksum of the bset at byte offset off of the image. */
void
rechecksum_bset (unsigned char *p, uint64_t off)
{
  struct nc_bset *h = (void *) (p + off);

  h->csum = nc_csum (h, sizeof *h + (size_t) h->nkeys
                     * sizeof (struct nc_key));
}

/* Byte offset in the image of bset i of node n. */
uint64_t
bset_off (const struct image *im, const struct node *n, unsigned i)
{
  return bucket_byte (im, n->bucket)
    + (uint64_t) n->chain[i].block * NC_BLOCK_BYTES;
}

/* A live node with at least `min_bsets` bsets (level `level`, or any if
 * level < 0), the one with the most keys.  Fails the test if none.
 */
struct node
pick_node (const struct image *im, unsigned min_bsets, int level)
{
  static struct node nodes[MAX_NODES];
  unsigned nr = live_nodes (im, nodes, MAX_NODES), i, best = nr;

  for (i = 0; i < nr; i++) {
    if (nodes[i].nr < min_bsets || (level >= 0 && nodes[i].level != level))
      continue;
    if (best == nr || nodes[i].chain[nodes[i].nr - 1].nkeys >
        nodes[best].chain[nodes[best].nr - 1].nkeys)
      best = i;
  }
  if (best == nr)
    fail_msg ("no live node with %u bsets at level %d", min_bsets, level);
  return nodes[best];
}

/* The prio copy in use (the newer valid one) of image m. */
struct nc_prio *
prio_in_use (const struct image *im, unsigned char *m)
{
  struct nc_prio *c[2];
  size_t bytes = sizeof (struct nc_prio)
    + (size_t) im->sb.nbuckets * sizeof (struct nc_prio_entry);
  int i, use = -1;

  for (i = 0; i < 2; i++) {
    c[i] = (void *) (m + bucket_byte (im, im->sb.prio_first
                                      + (uint32_t) i * im->sb.prio_buckets));
    if (c[i]->magic == NC_PRIO_MAGIC && c[i]->csum == nc_csum (c[i], bytes)
        && (use < 0 || c[i]->seq > c[use]->seq))
      use = i;
  }
  assert_true (use >= 0);
  return c[use];
}

void
rechecksum_prio (const struct image *im, struct nc_prio *p)
{
  p->csum = nc_csum (p, sizeof *p + (size_t) im->sb.nbuckets
                     * sizeof (struct nc_prio_entry));
}

/* A data bucket that a live leaf's key points into, with its key's gen. */
uint32_t
live_data_bucket (const struct image *im, uint8_t *gen)
{
  static struct node nodes[MAX_NODES];
  unsigned nr = live_nodes (im, nodes, MAX_NODES), i;

  for (i = 0; i < nr; i++) {
    const struct nc_bset *h = bset_hdr (im, &nodes[i], nodes[i].nr - 1);
    uint32_t k;

    if (h->level != 0)
      continue;
    for (k = 0; k < h->nkeys; k++)
      if (!(h->keys[k].flags & NC_KEY_ZERO)) {
        *gen = h->keys[k].gen;
        return h->keys[k].bucket;
      }
  }
  fail_msg ("no data key");
  return 0;
}

/* Is `bucket` named by a data key of a live leaf? */
bool
leaf_uses_bucket (const struct image *im, uint32_t bucket)
{
  static struct node nodes[MAX_NODES];
  unsigned nr = live_nodes (im, nodes, MAX_NODES), i;

  for (i = 0; i < nr; i++) {
    const struct nc_bset *h = bset_hdr (im, &nodes[i], nodes[i].nr - 1);
    uint32_t k;

    for (k = 0; h->level == 0 && k < h->nkeys; k++)
      if (!(h->keys[k].flags & NC_KEY_ZERO) && h->keys[k].bucket == bucket)
        return true;
  }
  return false;
}

/* Superblock copy `slot` of image m, head and table. */
struct nc_sb *
img_sb_get (const unsigned char *m, int slot)
{
  struct nc_sb *sb = calloc (1, sizeof *sb);

  assert_non_null (sb);
  memcpy (sb, m + (size_t) slot * NC_BLOCK_BYTES, NC_BLOCK_BYTES);
  assert_true (sb->table_blocks >= 1 &&
               sb->table_blocks <= NC_TABLE_BLOCKS_MAX);
  memcpy (sb->exports, m + super_table_offset (sb, slot),
          (size_t) sb->table_blocks * NC_BLOCK_BYTES);
  return sb;
}

void
img_sb_put (unsigned char *m, int slot, const struct nc_sb *sb)
{
  memcpy (m + (size_t) slot * NC_BLOCK_BYTES, sb, NC_BLOCK_BYTES);
  memcpy (m + super_table_offset (sb, slot), sb->exports,
          (size_t) sb->table_blocks * NC_BLOCK_BYTES);
}
