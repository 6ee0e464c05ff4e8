/* SPDX-License-Identifier: BSD-3-Clause */
/* cache-data.h — the one door to the data blocks on the cache device.
 *
 * Owns: nothing; it borrows the device's cdev and bucket set.  Every read
 * of a key's data (a READ hit, writeback, moving GC) and every write of
 * data into space a write point gave out (a write, a promotion, moving
 * GC) goes through these calls, which keep the data contract in one
 * place:
 * - where a key's blocks are: block offset_blocks of bucket b is at byte
 *   (b * bucket_blocks + offset_blocks) * 4 KiB of the device;
 * - a read is valid only if the key's bucket gen still matches after the
 *   read (the bucket may have been reused while we read: then -ESTALE,
 *   and the caller looks again or leaves the key alone);
 * - data reaches the device before the key that points at it exists:
 *   cache_data_write fills in the key's location only after the write;
 * - with data checksums (datacsum.h) every block read is verified, and
 *   the checksums of data written are stored before the write returns
 *   (on the device before any key for the data can be durable).
 * Buffers may be unaligned (nbdkit's are): they are bounced.
 * Threads: any; no lock is held or taken (the gen is a lock-free load).
 * The caller holds an open reference on the space it writes
 * (bucket_alloc_data*) until the key is inserted.
 * Not here: allocation (bucket.c), inserting keys (btree.c), what to
 * cache and when (request.c).
 */
#ifndef NBDCACHE_CACHE_DATA_H
#define NBDCACHE_CACHE_DATA_H

#include <stdint.h>

#include "ondisk.h"

struct ncache_device;
struct bucket_extent;

/* Byte offset on the cache device of block offset_blocks of bucket. */
uint64_t cache_data_offset (const struct ncache_device *dev, uint32_t bucket,
                            uint32_t offset_blocks);
/* Read len bytes of k's data, starting skip bytes into it, into dst.
 * -ESTALE if k's bucket gen moved (what was read may not be k's data).
 * -EBADMSG if a block read (every block the range touches is read whole)
 * does not verify: counted as a clean or dirty corrupt block and logged
 * once per bucket here; dst holds what was read and must not be used.
 */
int cache_data_read (struct ncache_device *dev, const struct nc_key *k,
                     uint64_t skip, void *dst, uint64_t len);
/* The same for a read-modify-write: whole blocks that REDO's stash
 * holds for k's gen (journal-stash.c: the bytes k's write put there) are
 * copied from memory, not read; anything else is cache_data_read.
 */
int cache_data_read_stashed (struct ncache_device *dev,
                             const struct nc_key *k, uint64_t skip,
                             void *dst, uint64_t len);
/* The same, only if it needs no wait (an aligned read from a buffered
 * device's page cache): 0, or -EAGAIN for anything else (a moved gen
 * included; the caller then takes the blocking way).
 */
int cache_data_read_nowait (struct ncache_device *dev, const struct nc_key *k,
                            uint64_t skip, void *dst, uint64_t len);
/* Moving GC: read all of k's blocks into dst, unverified, and their
 * stored checksums into words[k->size] (untouched without checksums);
 * -ESTALE as above.  The checksums move with the data
 * (cache_data_write_moved), so a corrupt block stays detectably corrupt.
 */
int cache_data_read_moving (struct ncache_device *dev, const struct nc_key *k,
                            void *dst, uint32_t *words);
/* Write k->size whole blocks from src into ext (k->size <= ext->nblocks),
 * then point k at ext (bucket, offset, gen).  k untouched on failure.
 * flags: 0, or CDEV_STREAM for a client's write (cdev.h: a hint that the
 * data need not stay in memory; a promotion keeps 0, its data was just
 * read and is likely read again).
 */
int cache_data_write (struct ncache_device *dev,
                      const struct bucket_extent *ext, const void *src,
                      uint32_t flags, struct nc_key *k);
/* The same for data read by cache_data_read_moving from where k points:
 * the checksums are words (rewritten in place for the new blocks), not
 * computed from src.
 */
int cache_data_write_moved (struct ncache_device *dev,
                            const struct bucket_extent *ext, const void *src,
                            uint32_t *words, struct nc_key *k);

#endif /* NBDCACHE_CACHE_DATA_H */
