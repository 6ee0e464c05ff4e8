/* SPDX-License-Identifier: BSD-3-Clause */
/* forget.h — what the cache forgets around a backing change (request.c's
 * ORDERING rule 1) and the export's cut bookkeeping.
 *
 * Owns: nothing; it updates nc->cut_seq (atomic, only grows).
 * Threads: any; the caller holds the range lock over the blocks it
 * forgets (writeback: over what it writes back).  The btree and journal
 * take their own locks inside.
 * Not here: the backing change itself (export-io.h), the durability of
 * the backing store (backsync.c).
 */
#ifndef NBDCACHE_FORGET_H
#define NBDCACHE_FORGET_H

#include <stdbool.h>
#include <stdint.h>

struct ncache_export;

/* A key of nc was cut by an insert in journal entry seq. */
void forget_note_cut (struct ncache_export *nc, uint64_t seq);
/* Wait until every cut of nc's keys is durable (before a backing change;
 * writeback calls it under the range lock of what it writes back).
 * 0 or -errno.
 */
int forget_settle_cuts (struct ncache_export *nc);
/* DELETE blocks [start, end) of nc (journaled, cuts noted).  *seq / *cut
 * as btree_insert.  0 or -errno.
 */
int forget_range (struct ncache_export *nc, uint64_t start, uint64_t end,
                  uint64_t *seq, bool *cut);
/* Before the backing store changes under blocks [b0, b1): every piece
 * that is not DIRTY gets a DELETE, then the cuts are settled.  *dirty is
 * set if a DIRTY piece was left (the final DELETE relies on the backing
 * write then).  0 or -errno.
 */
int forget_before_backing (struct ncache_export *nc, uint64_t b0, uint64_t b1,
                           bool *dirty);
/* After the backing change: the final DELETE over [b0, b1), bracketed
 * as relying on backing data when dirty (rule 2).  0 or -errno.
 */
int forget_after_backing (struct ncache_export *nc, uint64_t b0, uint64_t b1,
                          bool dirty);

#endif /* NBDCACHE_FORGET_H */
