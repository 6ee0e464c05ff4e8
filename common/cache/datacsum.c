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
 * A store only sets words in memory and marks their page dirty; the
 * device's pre_write hook, which runs before every journal commit and
 * every leaf write (the only writes that make keys durable), writes the
 * dirty pages and syncs them: batched, a page costs one write per commit
 * however many blocks it covers were written (4k random writes: no
 * measurable cost; one page write per data write cost ~40% of the IOPS).
 * INVARIANTS: a flush returns only once every page dirty when it looked
 * is written (by it, or by a concurrent flush it waited for under the
 * page lock), and reports whether a sync is needed (a page write not
 * known to be followed by one); so a key's words are durable before the
 * key can be.  A crash can tear a page write; the words it changed
 * belong to keys not yet durable, all others are the same in the old and
 * new page.
 * THREADS AND LOCKS: words, the dirty bits and the counters: atomics.
 * page[p].lock serialises the writes of page p and is held across the
 * write (a leaf: nothing else is taken under it); the update/written seqs
 * say whether a write is still needed.
 * FAILURE: a page write error fails the flush (logged), so the journal
 * commit or leaf write that needed it fails; open fails on a read error
 * or no memory.
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
  uint64_t *dirty;              /* atomic: a bit per page stored since
                                   its last write */
  uint8_t *reported;            /* a bit per bucket: logged once */
  uint32_t bucket_blocks, nbuckets;
  uint64_t bad_clean, bad_dirty, page_writes; /* atomic counters */
  uint64_t synced_writes;       /* atomic: page_writes a sync followed */
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
  dc->dirty = calloc ((dc->npages + 63) / 64, sizeof *dc->dirty);
  if (dc->words == NULL || dc->pages == NULL || dc->reported == NULL ||
      dc->dirty == NULL) {
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
  free (dc->dirty);
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
  free (dc->dirty);
  free (dc);
}

/* Write page p unless a write that began after its last update has
 * completed; then, if nothing was stored meanwhile, it is clean.  Under
 * the page lock: a concurrent flush waits here for the write in progress,
 * so every flush returns only once every page it found dirty is written.
 */
static int
write_page (struct datacsum *dc, uint64_t p)
{
  struct dcpage *pg = &dc->pages[p];
  uint64_t *word = &dc->dirty[p / 64], bit = UINT64_C (1) << (p % 64);
  uint32_t *buf;
  uint64_t snap, i;
  int r = 0;

  pthread_mutex_lock (&pg->lock);
  snap = __atomic_load_n (&pg->updates, __ATOMIC_ACQUIRE);
  if (pg->written < snap) {
    buf = cdev_alloc_buffer (BLK);
    if (buf == NULL) {
      r = -ENOMEM;
      goto out;
    }
    for (i = 0; i < NC_DCSUM_PER_BLOCK; i++)
      buf[i] = __atomic_load_n (&dc->words[p * NC_DCSUM_PER_BLOCK + i],
                                __ATOMIC_RELAXED);
    r = cdev_pwrite (dc->cd, buf, BLK, dc->region_off + p * BLK, 0);
    free (buf);
    if (r < 0)
      goto out;
    pg->written = snap;
    __atomic_add_fetch (&dc->page_writes, 1, __ATOMIC_ACQ_REL);
  }
  /* A store after the snapshot set the bit again (or will). */
  if (__atomic_load_n (&pg->updates, __ATOMIC_ACQUIRE) == pg->written)
    __atomic_and_fetch (word, ~bit, __ATOMIC_ACQ_REL);
 out:
  pthread_mutex_unlock (&pg->lock);
  return r;
}

int
datacsum_store (struct datacsum *dc, uint64_t block, uint64_t n,
                const void *data, const uint32_t *words)
{
  const uint8_t *d = data;
  uint64_t i, p;

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
     * reads this seq or a later one sees them; then the page is dirty.
     */
    __atomic_add_fetch (&dc->pages[p].updates, 1, __ATOMIC_ACQ_REL);
    __atomic_or_fetch (&dc->dirty[p / 64], UINT64_C (1) << (p % 64),
                       __ATOMIC_ACQ_REL);
  }
  return 0;
}

int
datacsum_flush (struct datacsum *dc, uint64_t *unsynced)
{
  uint64_t w, p, bits, pw;
  int r;

  *unsynced = 0;
  if (dc == NULL || dc->readonly)
    return 0;
  for (w = 0; w < (dc->npages + 63) / 64; w++) {
    bits = __atomic_load_n (&dc->dirty[w], __ATOMIC_ACQUIRE);
    while (bits != 0) {
      p = w * 64 + (uint64_t) __builtin_ctzll (bits);
      bits &= bits - 1;
      if ((r = write_page (dc, p)) < 0) {
        log_error ("%s: cannot write the data checksums at offset %" PRIu64
                   ": %s", dc->cd->path, dc->region_off + p * BLK,
                   strerror (-r));
        return r;
      }
    }
  }
  /* A page another flush wrote (its bit was clear when we looked) is
   * counted before its bit was cleared: we see it here.
   */
  pw = __atomic_load_n (&dc->page_writes, __ATOMIC_ACQUIRE);
  if (__atomic_load_n (&dc->synced_writes, __ATOMIC_ACQUIRE) < pw)
    *unsynced = pw;
  return 0;
}

void
datacsum_note_synced (struct datacsum *dc, uint64_t upto)
{
  uint64_t cur = __atomic_load_n (&dc->synced_writes, __ATOMIC_RELAXED);

  while (cur < upto &&
         !__atomic_compare_exchange_n (&dc->synced_writes, &cur, upto, true,
                                       __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
    ;
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
