/* SPDX-License-Identifier: BSD-3-Clause */
/* datacsum.c — the data checksum region: a checksum per cached block.
 *
 * WHAT: the region of NC_FEATURE_DATA_CSUM (ondisk.h, DATA CHECKSUMS),
 * whole in memory: one 32-bit word per 4 KiB block of the device, loaded
 * at open; storing words and writing the region pages (4 KiB, 1024 words,
 * so one page covers 4 MiB of the device) that hold them; verifying data
 * against them.
 * WHY: an SSD that flips a bit or writes a block to the wrong place must
 * not make us serve wrong data: a clean block that does not verify is
 * read from the backing store instead, a dirty one fails with EIO.  A
 * word per block (not per key, not per bucket) keeps the keys and the
 * btree as they were, lets a partial read verify only what it reads, and
 * lets the region be written as plain blocks with no metadata of its own
 * (a damaged region page just makes the blocks it covers fail to verify:
 * detected, never wrong).
 * INVARIANTS: a store returns only after a page write that began after
 * its words were set has completed (the page's `written` seq reached the
 * store's own); so data written, then stored, then its key inserted, has
 * its words on the device before the key can be journaled: the journal's
 * pre-flush (and everything else that orders data before keys) orders the
 * words too.  A crash can tear a page write; the words it changed belong
 * to keys not yet made, all others are the same in the old and new page.
 * THREADS AND LOCKS: words: atomic loads and stores.  page[p].lock
 * serialises the writes of page p and is held across the write (a leaf:
 * nothing else is taken under it); concurrent stores to one page share
 * one write when they can (group commit through the update/written seqs).
 * FAILURE: a page write error is returned to the store (the caller drops
 * the data); open fails on a read error or no memory.
 * NOT HERE: the layout (layout.h, format.c), what a mismatch means.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "cdev.h"
#include "compiler.h"
#include "datacsum.h"
#include "log.h"
#include "ondisk.h"

#define BLK ((uint64_t) NC_BLOCK_BYTES)
/* Open reads the region in pieces of this size. */
#define LOAD_BYTES (UINT64_C (1) << 20)

struct dcpage {
  pthread_mutex_t lock;         /* the writes of this page */
  uint64_t updates;             /* atomic: stores begun on this page */
  uint64_t written;             /* under lock: the updates seq the last
                                   good write covered */
};

struct datacsum {
  struct cdev *cd;              /* borrowed */
  bool readonly;
  uint64_t region_off;          /* bytes: the region on the device */
  uint64_t nblocks;             /* device blocks covered */
  uint64_t npages;
  uint32_t *words;              /* nblocks words (npages pages, aligned) */
  struct dcpage *pages;
  uint8_t *reported;            /* a bit per bucket: logged once */
  uint32_t bucket_blocks, nbuckets;
  uint64_t bad_clean, bad_dirty, page_writes; /* atomic counters */
};

/* A 64-bit finaliser (splitmix64): the block number's part of a word. */
static uint32_t
mix (uint64_t b)
{
  b += UINT64_C (0x9e3779b97f4a7c15);
  b = (b ^ (b >> 30)) * UINT64_C (0xbf58476d1ce4e5b9);
  b = (b ^ (b >> 27)) * UINT64_C (0x94d049bb133111eb);
  return (uint32_t) (b ^ (b >> 31));
}

uint32_t
datacsum_of (const void *data, uint64_t block)
{
  return (uint32_t) XXH3_64bits (data, NC_BLOCK_BYTES) ^ mix (block);
}

uint32_t
datacsum_move (uint32_t word, uint64_t from, uint64_t to)
{
  return word ^ mix (from) ^ mix (to);
}

int
datacsum_open (struct cdev *cd, const struct nc_sb *sb, bool readonly,
               struct datacsum **out)
{
  struct datacsum *dc;
  uint64_t bytes, off, i;
  int r;

  if (!(sb->features & NC_FEATURE_DATA_CSUM)) {
    *out = NULL;
    return 0;
  }
  dc = calloc (1, sizeof *dc);
  if (dc == NULL)
    return -ENOMEM;
  dc->cd = cd;
  dc->readonly = readonly;
  dc->bucket_blocks = sb->bucket_blocks;
  dc->nbuckets = sb->nbuckets;
  dc->nblocks = (uint64_t) sb->nbuckets * sb->bucket_blocks;
  dc->npages = (dc->nblocks + NC_DCSUM_PER_BLOCK - 1) / NC_DCSUM_PER_BLOCK;
  dc->region_off = (uint64_t) sb->csum_first * sb->bucket_blocks * BLK;
  bytes = dc->npages * BLK;
  if (bytes > (uint64_t) sb->csum_buckets * sb->bucket_blocks * BLK) {
    log_error ("%s: the data checksum region is too small", cd->path);
    free (dc);
    return -EBADMSG;
  }
  dc->words = cdev_alloc_buffer (bytes);
  dc->pages = calloc (dc->npages, sizeof *dc->pages);
  dc->reported = calloc ((sb->nbuckets + 7) / 8, 1);
  if (dc->words == NULL || dc->pages == NULL || dc->reported == NULL) {
    log_error ("%s: no memory for the data checksums (%" PRIu64 " bytes)",
               cd->path, bytes);
    r = -ENOMEM;
    goto err;
  }
  for (off = 0; off < bytes; off += LOAD_BYTES) {
    uint64_t n = MIN (LOAD_BYTES, bytes - off);

    r = cdev_pread (cd, (uint8_t *) dc->words + off, n, dc->region_off + off);
    if (r < 0) {
      log_error ("%s: cannot read the data checksum region: %s", cd->path,
                 strerror (-r));
      goto err;
    }
  }
  for (i = 0; i < dc->npages; i++)
    pthread_mutex_init (&dc->pages[i].lock, NULL);
  *out = dc;
  return 0;

 err:
  free (dc->words);
  free (dc->pages);
  free (dc->reported);
  free (dc);
  return r;
}

void
datacsum_close (struct datacsum *dc)
{
  uint64_t i;

  if (dc == NULL)
    return;
  for (i = 0; i < dc->npages; i++)
    pthread_mutex_destroy (&dc->pages[i].lock);
  free (dc->words);
  free (dc->pages);
  free (dc->reported);
  free (dc);
}

/* Write page p if no write begun after update `seq` has been. */
static int
write_page (struct datacsum *dc, uint64_t p, uint64_t seq)
{
  struct dcpage *pg = &dc->pages[p];
  uint32_t *buf;
  uint64_t snap, i;
  int r = 0;

  pthread_mutex_lock (&pg->lock);
  if (pg->written >= seq)
    goto out;                   /* a later snapshot holds our words */
  buf = cdev_alloc_buffer (BLK);
  if (buf == NULL) {
    r = -ENOMEM;
    goto out;
  }
  snap = __atomic_load_n (&pg->updates, __ATOMIC_ACQUIRE);
  for (i = 0; i < NC_DCSUM_PER_BLOCK; i++)
    buf[i] = __atomic_load_n (&dc->words[p * NC_DCSUM_PER_BLOCK + i],
                              __ATOMIC_RELAXED);
  r = cdev_pwrite (dc->cd, buf, BLK, dc->region_off + p * BLK, 0);
  free (buf);
  if (r == 0) {
    pg->written = snap;
    __atomic_add_fetch (&dc->page_writes, 1, __ATOMIC_RELAXED);
  }
 out:
  pthread_mutex_unlock (&pg->lock);
  return r;
}

int
datacsum_store (struct datacsum *dc, uint64_t block, uint64_t n,
                const void *data, const uint32_t *words)
{
  const uint8_t *d = data;
  uint64_t i, p, seq;
  int r;

  if (dc->readonly)
    return -EROFS;
  if (block > dc->nblocks || n > dc->nblocks - block)
    return -EINVAL;
  for (i = 0; i < n; i++)
    __atomic_store_n (&dc->words[block + i],
                      words ? words[i] : datacsum_of (d + i * BLK, block + i),
                      __ATOMIC_RELAXED);
  for (p = block / NC_DCSUM_PER_BLOCK;
       n > 0 && p <= (block + n - 1) / NC_DCSUM_PER_BLOCK; p++) {
    /* The increment publishes the words above (release): a snapshot that
     * reads this seq or a later one sees them.
     */
    seq = __atomic_add_fetch (&dc->pages[p].updates, 1, __ATOMIC_ACQ_REL);
    if ((r = write_page (dc, p, seq)) < 0)
      return r;
  }
  return 0;
}

void
datacsum_load (const struct datacsum *dc, uint64_t block, uint64_t n,
               uint32_t *words)
{
  uint64_t i;

  for (i = 0; i < n; i++)
    words[i] = block + i < dc->nblocks
      ? __atomic_load_n (&dc->words[block + i], __ATOMIC_RELAXED)
      : 0;
}

uint64_t
datacsum_verify (const struct datacsum *dc, uint64_t block, uint64_t n,
                 const void *data, uint64_t *first_bad)
{
  const uint8_t *d = data;
  uint64_t i, bad = 0;

  for (i = 0; i < n; i++) {
    uint32_t w = block + i < dc->nblocks
      ? __atomic_load_n (&dc->words[block + i], __ATOMIC_RELAXED) : 0;

    if (block + i < dc->nblocks && w == datacsum_of (d + i * BLK, block + i))
      continue;
    if (bad++ == 0 && first_bad != NULL)
      *first_bad = block + i;
  }
  return bad;
}

void
datacsum_note_bad (struct datacsum *dc, bool dirty, uint64_t blocks)
{
  __atomic_add_fetch (dirty ? &dc->bad_dirty : &dc->bad_clean, blocks,
                      __ATOMIC_RELAXED);
}

void
datacsum_get_counts (const struct datacsum *dc, uint64_t *clean,
                     uint64_t *dirty, uint64_t *page_writes)
{
  *clean = __atomic_load_n (&dc->bad_clean, __ATOMIC_RELAXED);
  *dirty = __atomic_load_n (&dc->bad_dirty, __ATOMIC_RELAXED);
  *page_writes = __atomic_load_n (&dc->page_writes, __ATOMIC_RELAXED);
}

bool
datacsum_first_report (struct datacsum *dc, uint32_t bucket)
{
  uint8_t bit = (uint8_t) (1u << (bucket % 8));

  if (bucket >= dc->nbuckets)
    return false;
  return (__atomic_fetch_or (&dc->reported[bucket / 8], bit,
                             __ATOMIC_RELAXED) & bit) == 0;
}
