/* SPDX-License-Identifier: BSD-3-Clause */
/* test-corrupt-image.h — test-corrupt's own reader of a cache image.
 *
 * WHAT: finds the live metadata of a device image (the newer superblock
 * copy, the newest journal entry, the btree's live nodes and their bset
 * chains, the prio copy in use) and recomputes checksums after a mutation.
 * WHY: the corruption tests must locate and damage metadata independently
 * of the engine's readers, so a bug there cannot hide itself; ondisk.h and
 * nc_csum are the only things shared.  Failures are cmocka failures (this
 * is test code: the image is one the test itself made).
 */
#ifndef NBDCACHE_TEST_CORRUPT_IMAGE_H
#define NBDCACHE_TEST_CORRUPT_IMAGE_H

#include <stdbool.h>
#include <stdint.h>

#include "ondisk.h"

#define MAX_NODES 256
#define MAX_CHAIN 64

struct image {
  unsigned char *p;
  struct nc_sb sb;
};

struct bset_at {
  uint32_t block, nblocks;
  uint64_t seq, journal_seq;
  uint32_t nkeys;
};

struct node {
  uint32_t bucket;
  uint16_t level;
  uint64_t nonce;
  struct bset_at chain[MAX_CHAIN];
  unsigned nr;
};

/* The image byte offset of a bucket. */
uint64_t bucket_byte (const struct image *im, uint32_t bucket);

/* im over image p, with the newer superblock copy. */
void image_load (struct image *im, unsigned char *p);

/* The payload (header and keys) of the journal entry at image offset
 * off, or NULL if it is not a valid entry; valid until the next call.
 */
uint64_t jentry_csum_bytes (const struct nc_jentry *e);
const struct nc_jentry *jentry_at (const struct image *im, uint64_t off,
                                   uint64_t ring_blocks_left);

/* The valid journal entry with the highest seq: its ring byte offset. */
uint64_t newest_jentry (const struct image *im);

/* Blocks of a bucket that hold bsets (bset.c's geometry). */
uint32_t span_blocks (const struct image *im);

/* n's chain of valid bsets (n->bucket and n->nonce set by the caller). */
void read_chain (const struct image *im, struct node *n);

/* The header of bset i of node n. */
const struct nc_bset *bset_hdr (const struct image *im, const struct node *n,
                                unsigned i);

/* Every live node, from the newest journal entry's root down. */
unsigned live_nodes (const struct image *im, struct node *out, unsigned max);

/* Recompute the checksum of the bset at byte offset off of the image. */
void rechecksum_bset (unsigned char *p, uint64_t off);

/* Byte offset in the image of bset i of node n. */
uint64_t bset_off (const struct image *im, const struct node *n,
                   unsigned i);

/* A live node with at least `min_bsets` bsets (level `level`, or any if
 * level < 0), the one with the most keys.  Fails the test if none.
 */
struct node pick_node (const struct image *im, unsigned min_bsets,
                       int level);

/* The prio copy in use (the newer valid one) of image m. */
struct nc_prio *prio_in_use (const struct image *im, unsigned char *m);

/* Recompute a prio copy's checksum. */
void rechecksum_prio (const struct image *im, struct nc_prio *p);

/* A data bucket that a live leaf's key points into, with its key's gen. */
uint32_t live_data_bucket (const struct image *im, uint8_t *gen);

/* Is `bucket` named by a data key of a live leaf? */
bool leaf_uses_bucket (const struct image *im, uint32_t bucket);

/* Superblock copy `slot` of image m, head and table. */
struct nc_sb *img_sb_get (const unsigned char *m, int slot);

/* Write sb back as superblock copy `slot` of image m, head and table. */
void img_sb_put (unsigned char *m, int slot, const struct nc_sb *sb);

#endif /* NBDCACHE_TEST_CORRUPT_IMAGE_H */
