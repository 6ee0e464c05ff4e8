/* SPDX-License-Identifier: BSD-3-Clause */
/* csum.h — the checksum of every metadata block.
 *
 * Owns: nothing; a pure function of the bytes.
 * Threads: any.
 * On disk: every metadata block (superblock, prio copy, journal entry,
 * bset) begins with a 64-bit csum field, then the bytes it covers:
 * XXH3-64 of buf[8, len).
 * Not here: which bytes a block covers (each module knows its own length).
 * WHY its own file: every module that reads or writes metadata needs it;
 * in the superblock module it made the superblock a neighbour of
 * everything (and format, which calls prio and journal, a circle).
 */
#ifndef NBDCACHE_CSUM_H
#define NBDCACHE_CSUM_H

#include <stddef.h>
#include <stdint.h>

/* XXH3-64 of buf[8, len); len >= 8. */
uint64_t nc_csum (const void *buf, size_t len);
/* XXH3-64 of buf[0, len): for data named by a checksum kept elsewhere
 * (the export table, whose checksum is in the superblock head).
 */
uint64_t nc_csum_whole (const void *buf, size_t len);

#endif /* NBDCACHE_CSUM_H */
