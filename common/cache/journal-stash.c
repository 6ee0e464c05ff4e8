/* SPDX-License-Identifier: BSD-3-Clause */
/* journal-stash.c — REDO's stash: the bytes of data blocks just written
 * to the cache device, so a commit whose entries carry their data
 * (journal.c REDO) copies them from memory instead of reading them back.
 *
 * WHAT: a direct-mapped table of STASH_SLOTS blocks; device block b goes
 * to slot b % STASH_SLOTS, tagged with b and the gen of b's bucket the
 * write was for.  The data paths (cache-data.c, request-async-write.c)
 * put every block they write there once the write completed, before its
 * key can reach the journal; jwrite's read_inline takes a key's blocks
 * from it when every one is there with the key's block and gen, else
 * reads them back from the device as before.  The read of a
 * read-modify-write (a write of part of a block: request.c patch_block,
 * through cache_data_read_stashed) takes its block from here the same
 * way.
 * WHY: the read-back was one device read (a real one with O_DIRECT) in
 * the wait of every FLUSH or FUA write a REDO commit serves, and small
 * sequential writes read back the block the previous one wrote.  A write
 * point hands out a bucket's blocks in order, so the blocks written last
 * are consecutive slots and do not evict each other.
 * INVARIANTS: a slot tagged (b, g) holds the bytes of the last completed
 * write of device block b, and that write was for gen g of b's bucket:
 * every data write of the engine puts its blocks, or forgets them when
 * it failed or is larger than this stash takes (journal_stash_put), so a
 * slot never outlives a later write of its block (recovery's redo,
 * assemble.c, writes before anything was put, and the same bytes for the
 * same gen anyway).  Within one gen a
 * block is written at most once (write points never hand out a block
 * twice; a bucket is reused only after its gen moved), so (b, gen) names
 * one write, and a key of another gen (a stale key after the bucket's
 * reuse) never matches.  What the stash supplies is thus exactly what
 * that write put on the device; a key whose write it does not hold is
 * read back.
 * THREADS AND LOCKS: st->lock guards the table, held across the copies
 * (a block each way; never across I/O).  Any thread.
 * FAILURE: none: a miss is the old read.  No memory: no stash (every
 * lookup misses).
 * Client reads never use it: they verify what the device holds.
 * NOT HERE: which entries carry data (journal-write.c), recovery's use
 * of it (journal-replay.c, assemble.c).
 */
#include <config.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cdev.h"
#include "journal.h"
#include "journal-internal.h"
#include "ondisk.h"

#define BLK ((size_t) NC_BLOCK_BYTES)

struct stash_tag {
  uint64_t block_plus1;         /* device block + 1; 0: empty */
  uint8_t gen;
};

struct journal_stash {
  pthread_mutex_t lock;
  struct stash_tag tag[STASH_SLOTS];
  unsigned char *data;          /* STASH_SLOTS blocks */
};

int
jstash_create (struct journal_stash **out)
{
  struct journal_stash *st = calloc (1, sizeof *st);

  if (st == NULL)
    return -ENOMEM;
  st->data = cdev_alloc_buffer (STASH_SLOTS * BLK);
  if (st->data == NULL) {
    free (st);
    return -ENOMEM;
  }
  pthread_mutex_init (&st->lock, NULL);
  *out = st;
  return 0;
}

void
jstash_destroy (struct journal_stash *st)
{
  if (st == NULL)
    return;
  pthread_mutex_destroy (&st->lock);
  free (st->data);
  free (st);
}

/* Drop every slot holding a block of [block, block + nblocks). */
static void
forget_locked (struct journal_stash *st, uint64_t block, uint64_t nblocks)
{
  uint64_t i, n = nblocks < STASH_SLOTS ? nblocks : STASH_SLOTS;

  for (i = 0; i < n; i++) {
    struct stash_tag *t = &st->tag[(block + i) % STASH_SLOTS];

    if (t->block_plus1 > block && t->block_plus1 - 1 - block < nblocks)
      t->block_plus1 = 0;
  }
}

void
journal_stash_put (struct journal *j, uint64_t block, uint8_t gen,
                   uint64_t nblocks, const void *src)
{
  struct journal_stash *st = j != NULL ? j->stash : NULL;
  const unsigned char *s = src;
  uint64_t i;

  if (st == NULL)               /* no journal (read-only), or no stash */
    return;
  pthread_mutex_lock (&st->lock);
  if (s == NULL || nblocks > JOURNAL_INLINE_MAX_BLOCKS)
    forget_locked (st, block, nblocks);
  else
    for (i = 0; i < nblocks; i++) {
      struct stash_tag *t = &st->tag[(block + i) % STASH_SLOTS];

      memcpy (st->data + ((block + i) % STASH_SLOTS) * BLK, s + i * BLK,
              BLK);
      t->block_plus1 = block + i + 1;
      t->gen = gen;
    }
  pthread_mutex_unlock (&st->lock);
}

bool
journal_stash_get (struct journal *j, uint64_t block, uint8_t gen, uint64_t nblocks,
            void *dst)
{
  struct journal_stash *st = j->stash;
  unsigned char *d = dst;
  uint64_t i;
  bool hit = true;

  if (st == NULL || nblocks > STASH_SLOTS)
    return false;
  pthread_mutex_lock (&st->lock);
  for (i = 0; i < nblocks && hit; i++) {
    const struct stash_tag *t = &st->tag[(block + i) % STASH_SLOTS];

    hit = t->block_plus1 == block + i + 1 && t->gen == gen;
  }
  for (i = 0; i < nblocks && hit; i++)
    memcpy (d + i * BLK, st->data + ((block + i) % STASH_SLOTS) * BLK, BLK);
  pthread_mutex_unlock (&st->lock);
  return hit;
}
