/* SPDX-License-Identifier: BSD-3-Clause */
/* cache-data.c — the one door to the data blocks on the cache device.
 *
 * WHAT: where a key's blocks are on the device, reading them back with
 * the bucket-gen recheck, and writing data into allocated space then
 * pointing a key at it (the contract is in cache-data.h).  Unaligned
 * buffers go through bounce buffers of at most BOUNCE_BYTES.
 * WHY: the request paths, writeback and moving GC each read a key's data
 * and rechecked its gen, and each wrote data and made its key, with the
 * offset arithmetic written three times.  A path that forgets the
 * recheck serves (or writes back, or moves) another key's data; one door
 * cannot forget.
 * With data checksums (datacsum.h) a read verifies every block it
 * touches against its checksum (a partial block is read whole), and a
 * write stores the checksums of what it wrote (in memory; their region
 * pages are written and synced before any journal commit or leaf write,
 * so before the key the caller makes can be durable).  Every write also
 * tells REDO's stash what it put where (journal-stash.c: its invariant
 * needs every data write), and a read-modify-write's read takes whole
 * blocks from it (cache_data_read_stashed).
 * INVARIANTS: a read that returns 0 saw k's data (the gen did not move
 * until after the read completed) and, with checksums, every block of it
 * verified; a key is pointed at space only after its data (and its
 * checksums) were written there.
 * THREADS AND LOCKS: any thread; no lock held across the I/O.
 * FAILURE: -EIO (logged by the cdev driver), -ENOMEM for a bounce
 * buffer, -ESTALE for a read that raced a bucket's reuse, -EBADMSG for
 * a block that failed its checksum (counted, logged once per bucket).
 * NOT HERE: allocation, key insertion, eviction.
 */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bkey.h"
#include "bucket.h"
#include "cache-data.h"
#include "cache-internal.h"
#include "cdev.h"
#include "compiler.h"
#include "datacsum.h"
#include "journal.h"
#include "log.h"

#define BLK ((uint64_t) NC_BLOCK_BYTES)
/* Unaligned buffers go through bounce buffers of at most this size. */
#define BOUNCE_BYTES (256u * 1024)

uint64_t
cache_data_offset (const struct ncache_device *dev, uint32_t bucket,
                   uint32_t offset_blocks)
{
  return ((uint64_t) bucket * dev->sb.bucket_blocks + offset_blocks) * BLK;
}

/* The cdev contract wants block-aligned buffers (O_DIRECT or not);
 * nbdcached's request buffers are, nbdkit's may not be.
 */
static bool
io_aligned (const void *buf)
{
  return ((uintptr_t) buf % NC_BLOCK_BYTES) == 0;
}

/* Verify the nblocks blocks of data read from byte dev_off (no-op
 * without data checksums); adds the bad ones to *bad.
 */
static void
verify (struct ncache_device *dev, uint64_t dev_off, const uint8_t *data,
        uint64_t nblocks, uint64_t *bad, uint64_t *first_bad)
{
  if (dev->dc != NULL && bad != NULL)
    *bad += datacsum_verify (dev->dc, dev_off / BLK, nblocks, data,
                             *bad == 0 ? first_bad : NULL);
}

/* Read `len` bytes starting `skip` bytes into the cache-device blocks that
 * begin at byte dev_off.  Bounces what O_DIRECT cannot take directly.
 * bad (may be NULL: do not verify): the blocks that do not verify are
 * added to it; every block touched is read and verified whole.
 */
static int
dev_read (struct ncache_device *dev, uint64_t dev_off, uint64_t skip,
          uint8_t *dst, uint64_t len, uint64_t *bad, uint64_t *first_bad)
{
  struct cdev *cd = dev->cd;
  uint8_t *bounce = NULL;
  int r = 0;

  dev_off += skip / BLK * BLK;
  skip %= BLK;
  if (skip == 0 && len % BLK == 0 && io_aligned (dst)) {
    r = cdev_pread (cd, dst, len, dev_off);
    if (r == 0)
      verify (dev, dev_off, dst, len / BLK, bad, first_bad);
    return r;
  }

  bounce = cdev_alloc_buffer (BOUNCE_BYTES);
  if (bounce == NULL)
    return -ENOMEM;
  while (len > 0) {
    uint64_t blocks = MIN ((skip + len + BLK - 1) / BLK, BOUNCE_BYTES / BLK);
    uint64_t n = MIN (len, blocks * BLK - skip);

    r = cdev_pread (cd, bounce, blocks * BLK, dev_off);
    if (r < 0)
      break;
    verify (dev, dev_off, bounce, blocks, bad, first_bad);
    memcpy (dst, bounce + skip, n);
    dst += n;
    len -= n;
    dev_off += blocks * BLK;
    skip = 0;
  }
  free (bounce);
  return r;
}

/* Write whole blocks from src to byte dev_off; flags: cdev_pwrite's. */
static int
dev_write (struct ncache_device *dev, uint64_t dev_off, const uint8_t *src,
           uint64_t nblocks, uint32_t flags)
{
  struct cdev *cd = dev->cd;
  uint8_t *bounce;
  int r = 0;

  if (io_aligned (src))
    return cdev_pwrite (cd, src, nblocks * BLK, dev_off, flags);
  bounce = cdev_alloc_buffer (BOUNCE_BYTES);
  if (bounce == NULL)
    return -ENOMEM;
  while (nblocks > 0 && r == 0) {
    uint64_t n = MIN (nblocks, BOUNCE_BYTES / BLK);

    memcpy (bounce, src, n * BLK);
    r = cdev_pwrite (cd, bounce, n * BLK, dev_off, flags);
    src += n * BLK;
    dev_off += n * BLK;
    nblocks -= n;
  }
  free (bounce);
  return r;
}

/* Blocks of k that did not verify: count, log once per bucket.  The
 * caller decides what it means (cache-data.h).
 */
static int
report_bad (struct ncache_device *dev, const struct nc_key *k, uint64_t bad,
            uint64_t first_bad)
{
  bool dirty = bkey_is_dirty (k);

  datacsum_note_bad (dev->dc, dirty, bad);
  if (datacsum_first_report (dev->dc, k->bucket))
    log_error ("cache '%s': %" PRIu64 " %s block(s) of export %u in bucket "
               "%" PRIu32 " fail their data checksum (first: device block %"
               PRIu64 "); %s", dev->name, bad, dirty ? "dirty" : "clean",
               k->export_id, k->bucket, first_bad,
               dirty ? "reads of them fail with EIO and they are not "
               "written back" : "they are read from the backing store");
  return -EBADMSG;
}

int
cache_data_read (struct ncache_device *dev, const struct nc_key *k,
                 uint64_t skip, void *dst, uint64_t len)
{
  uint64_t bad = 0, first_bad = 0;
  int r;

  r = dev_read (dev, cache_data_offset (dev, k->bucket, k->offset), skip,
                dst, len, &bad, &first_bad);
  if (r < 0)
    return r;
  /* The words were read after the data: an unchanged gen means neither
   * was rewritten meanwhile, so the verdict is about k's data.
   */
  if (bucket_gen (dev->bs, k->bucket) != k->gen)
    return -ESTALE;
  if (bad > 0)
    return report_bad (dev, k, bad, first_bad);
  return 0;
}

int
cache_data_read_stashed (struct ncache_device *dev, const struct nc_key *k,
                         uint64_t skip, void *dst, uint64_t len)
{
  uint64_t off = cache_data_offset (dev, k->bucket, k->offset) + skip;

  /* A stale key (its bucket reused) is -ESTALE here as there. */
  if (dev->journal != NULL && skip % BLK == 0 && len % BLK == 0 &&
      journal_stash_get (dev->journal, off / BLK, k->gen, len / BLK, dst))
    return bucket_gen (dev->bs, k->bucket) != k->gen ? -ESTALE : 0;
  return cache_data_read (dev, k, skip, dst, len);
}

int
cache_data_read_nowait (struct ncache_device *dev, const struct nc_key *k,
                        uint64_t skip, void *dst, uint64_t len)
{
  uint64_t off = cache_data_offset (dev, k->bucket, k->offset) + skip;

  if (skip % BLK != 0 || len % BLK != 0 || !io_aligned (dst))
    return -EAGAIN;
  if (cdev_pread_nowait (dev->cd, dst, len, off) < 0)
    return -EAGAIN;
  /* A block that does not verify: the blocking way decides and counts. */
  if (dev->dc != NULL &&
      datacsum_verify (dev->dc, off / BLK, len / BLK, dst, NULL) > 0)
    return -EAGAIN;
  if (bucket_gen (dev->bs, k->bucket) != k->gen)
    return -EAGAIN;
  return 0;
}

int
cache_data_read_moving (struct ncache_device *dev, const struct nc_key *k,
                        void *dst, uint32_t *words)
{
  uint64_t off = cache_data_offset (dev, k->bucket, k->offset);
  int r;

  r = dev_read (dev, off, 0, dst, (uint64_t) k->size * BLK, NULL, NULL);
  if (r < 0)
    return r;
  if (dev->dc != NULL)
    datacsum_load (dev->dc, off / BLK, k->size, words);
  if (bucket_gen (dev->bs, k->bucket) != k->gen)
    return -ESTALE;
  return 0;
}

/* Write k's data (and its words: NULL = computed) to ext, then point k
 * there; flags: cdev_pwrite's.
 */
static int
write_key (struct ncache_device *dev, const struct bucket_extent *ext,
           const void *src, const uint32_t *words, uint32_t flags,
           struct nc_key *k)
{
  uint64_t off = cache_data_offset (dev, ext->bucket, ext->offset);
  int r;

  assert (k->size <= ext->nblocks);
  r = dev_write (dev, off, src, k->size, flags);
  /* Before the key can reach the journal (journal-stash.c). */
  journal_stash_put (dev->journal, off / BLK, ext->gen, k->size,
                     r == 0 ? src : NULL);
  if (r == 0 && dev->dc != NULL)
    r = datacsum_store (dev->dc, off / BLK, k->size, src, words);
  if (r < 0)
    return r;
  k->bucket = ext->bucket;
  k->offset = ext->offset;
  k->gen = ext->gen;
  return 0;
}

int
cache_data_write (struct ncache_device *dev, const struct bucket_extent *ext,
                  const void *src, uint32_t flags, struct nc_key *k)
{
  return write_key (dev, ext, src, NULL, flags, k);
}

int
cache_data_write_moved (struct ncache_device *dev,
                        const struct bucket_extent *ext, const void *src,
                        uint32_t *words, struct nc_key *k)
{
  uint64_t from = cache_data_offset (dev, k->bucket, k->offset) / BLK;
  uint64_t to = cache_data_offset (dev, ext->bucket, ext->offset) / BLK;
  uint32_t i;

  if (dev->dc == NULL)
    return write_key (dev, ext, src, NULL, 0, k);
  for (i = 0; i < k->size; i++)
    words[i] = datacsum_move (words[i], from + i, to + i);
  return write_key (dev, ext, src, words, 0, k);
}
