/* SPDX-License-Identifier: BSD-3-Clause */
/* datacsum.h — the data checksum region: a checksum per cached block.
 *
 * Owns: the whole region in memory (a 32-bit word per 4 KiB block of the
 * device: 1/1024 of the device size), loaded at open, and the page
 * writes that keep the region on the device in step with it.
 * Threads: any.  Words are read and stored atomically; a region page is
 * written under its own page lock, the only lock here, taken by nothing
 * else and held across that one write (it IS the ordering of the writes
 * of that page: the last write holds every update made before it).
 * Stores only mark pages dirty; the pages are written (and synced) in
 * batches before any key can become durable: the device's pre_write hook
 * (before every journal commit and leaf write) calls datacsum_flush.
 * On disk: ondisk.h, DATA CHECKSUMS (NC_FEATURE_DATA_CSUM).
 * Not here: where a key's blocks are and the gen recheck (cache-data.c),
 * what a mismatch means for a request (request.c, writeback.c).
 */
#ifndef NBDCACHE_DATACSUM_H
#define NBDCACHE_DATACSUM_H

#include <stdbool.h>
#include <stdint.h>

#include "ondisk.h"

struct cdev;
struct datacsum;

/* The word of a 4 KiB block holding data at device block `block`. */
uint32_t datacsum_of (const void *data, uint64_t block);
/* A word moved with its data from block `from` to block `to`. */
uint32_t datacsum_move (uint32_t word, uint64_t from, uint64_t to);

/* Load sb's region from cd.  0 and *out set (NULL when sb has no
 * NC_FEATURE_DATA_CSUM: the cache has no data checksums), or -errno
 * (logged).  readonly: datacsum_store is refused (an inspection).
 */
int datacsum_open (struct cdev *cd, const struct nc_sb *sb, bool readonly,
                   struct datacsum **out);
/* NULL is a no-op. */
void datacsum_close (struct datacsum *dc);

/* Set the words of blocks [block, block + n): from the data (n blocks of
 * 4 KiB) when words is NULL, else words[i] as they are; their region
 * page(s) are dirty until datacsum_flush.  0, or -EROFS, -EINVAL.
 */
int datacsum_store (struct datacsum *dc, uint64_t block, uint64_t n,
                    const void *data, const uint32_t *words);
/* Before a write that can make a key durable (a journal entry, a leaf):
 * write every dirty region page, and wait for those another flush is
 * writing.  *unsynced = 0 when every page write so far is known to be
 * followed by a sync; else the caller syncs the device, then calls
 * datacsum_note_synced (dc, *unsynced).  0 or -errno (logged).  NULL dc:
 * nothing to do.
 */
int datacsum_flush (struct datacsum *dc, uint64_t *unsynced);
void datacsum_note_synced (struct datacsum *dc, uint64_t upto);
/* Copy the words of blocks [block, block + n) to words[]. */
void datacsum_load (const struct datacsum *dc, uint64_t block, uint64_t n,
                    uint32_t *words);
/* How many of the n blocks of data (starting at device block `block`) do
 * not match their words; *first_bad (if not NULL) = the first such block.
 */
uint64_t datacsum_verify (const struct datacsum *dc, uint64_t block,
                          uint64_t n, const void *data, uint64_t *first_bad);

/* Blocks found corrupt (by datacsum_note_bad), clean and dirty. */
void datacsum_note_bad (struct datacsum *dc, bool dirty, uint64_t blocks);
void datacsum_get_counts (const struct datacsum *dc, uint64_t *clean,
                          uint64_t *dirty, uint64_t *page_writes);
/* True the first time for `bucket` (log it then), false after. */
bool datacsum_first_report (struct datacsum *dc, uint32_t bucket);

#endif /* NBDCACHE_DATACSUM_H */
