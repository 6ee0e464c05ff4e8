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
 * INVARIANTS: a read that returns 0 saw k's data (the gen did not move
 * until after the read completed); a key is pointed at space only after
 * its data was written there.
 * THREADS AND LOCKS: any thread; no lock held across the I/O.
 * FAILURE: -EIO (logged by the cdev driver), -ENOMEM for a bounce
 * buffer, -ESTALE for a read that raced a bucket's reuse.
 * NOT HERE: allocation, key insertion, eviction.
 */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bucket.h"
#include "cache-data.h"
#include "cache-internal.h"
#include "cdev.h"
#include "compiler.h"

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

/* Read `len` bytes starting `skip` bytes into the cache-device blocks that
 * begin at byte dev_off.  Bounces what O_DIRECT cannot take directly.
 */
static int
dev_read (struct ncache_device *dev, uint64_t dev_off, uint64_t skip,
          uint8_t *dst, uint64_t len)
{
  struct cdev *cd = dev->cd;
  uint8_t *bounce = NULL;
  int r = 0;

  dev_off += skip / BLK * BLK;
  skip %= BLK;
  if (skip == 0 && len % BLK == 0 && io_aligned (dst))
    return cdev_pread (cd, dst, len, dev_off);

  bounce = cdev_alloc_buffer (BOUNCE_BYTES);
  if (bounce == NULL)
    return -ENOMEM;
  while (len > 0) {
    uint64_t blocks = MIN ((skip + len + BLK - 1) / BLK, BOUNCE_BYTES / BLK);
    uint64_t n = MIN (len, blocks * BLK - skip);

    r = cdev_pread (cd, bounce, blocks * BLK, dev_off);
    if (r < 0)
      break;
    memcpy (dst, bounce + skip, n);
    dst += n;
    len -= n;
    dev_off += blocks * BLK;
    skip = 0;
  }
  free (bounce);
  return r;
}

/* Write whole blocks from src to byte dev_off. */
static int
dev_write (struct ncache_device *dev, uint64_t dev_off, const uint8_t *src,
           uint64_t nblocks)
{
  struct cdev *cd = dev->cd;
  uint8_t *bounce;
  int r = 0;

  if (io_aligned (src))
    return cdev_pwrite (cd, src, nblocks * BLK, dev_off, 0);
  bounce = cdev_alloc_buffer (BOUNCE_BYTES);
  if (bounce == NULL)
    return -ENOMEM;
  while (nblocks > 0 && r == 0) {
    uint64_t n = MIN (nblocks, BOUNCE_BYTES / BLK);

    memcpy (bounce, src, n * BLK);
    r = cdev_pwrite (cd, bounce, n * BLK, dev_off, 0);
    src += n * BLK;
    dev_off += n * BLK;
    nblocks -= n;
  }
  free (bounce);
  return r;
}

int
cache_data_read (struct ncache_device *dev, const struct nc_key *k,
                 uint64_t skip, void *dst, uint64_t len)
{
  int r;

  r = dev_read (dev, cache_data_offset (dev, k->bucket, k->offset), skip,
                dst, len);
  if (r < 0)
    return r;
  if (bucket_gen (dev->bs, k->bucket) != k->gen)
    return -ESTALE;
  return 0;
}

int
cache_data_read_nowait (struct ncache_device *dev, const struct nc_key *k,
                        uint64_t skip, void *dst, uint64_t len)
{
  if (skip % BLK != 0 || len % BLK != 0 || !io_aligned (dst))
    return -EAGAIN;
  if (cdev_pread_nowait (dev->cd, dst, len,
                         cache_data_offset (dev, k->bucket, k->offset) + skip)
      < 0)
    return -EAGAIN;
  if (bucket_gen (dev->bs, k->bucket) != k->gen)
    return -EAGAIN;
  return 0;
}

int
cache_data_write (struct ncache_device *dev, const struct bucket_extent *ext,
                  const void *src, struct nc_key *k)
{
  int r;

  assert (k->size <= ext->nblocks);
  r = dev_write (dev, cache_data_offset (dev, ext->bucket, ext->offset), src,
                 k->size);
  if (r < 0)
    return r;
  k->bucket = ext->bucket;
  k->offset = ext->offset;
  k->gen = ext->gen;
  return 0;
}
