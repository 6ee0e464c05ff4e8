/* SPDX-License-Identifier: BSD-3-Clause */
/* crosscheck.h — recovery's checks across structures: what the format
 * promises about keys, bucket gens and the export table together, which
 * no one structure's checksum can vouch for.
 *
 * Owns: the tree's suspect keys and (read-only assembly) a copy of the
 * journal's live keys, from assemble_journal until the index walk that
 * ends with crosscheck_finish.
 * Threads: one (the assembly's).
 * On disk: reads nothing itself; gens come from the bucket set (the prio
 * copy read in step 2), sizes from the superblock's export table.
 * Not here: one structure's own checks (checksums, key order and bounds:
 * bset.c, journal-replay.c, super.c, prio.c); the gen-distance check of
 * every key (btree.h, GENS ON DISK); DIRTY keys of export ids not in the
 * table (assemble.c).
 *
 * THE PROMISES (each a consequence of the write order of the engine):
 * 1. A DIRTY data key's bucket is never reused while the key is live: a
 *    bucket is reused (gen bumped) only once nothing live points into it,
 *    and dirty data is never evicted.  So a DIRTY data key whose gen is
 *    not its bucket's gen (stale) was cut before the bump: the key that
 *    cut it is in the journal after it (a bump needs the cut durable,
 *    and the journal keeps every entry whose keys a durable node lacks).
 *    A stale DIRTY key the journal does not cover is dirty data read as
 *    stale — the prio copy's gen is wrong (bumped by corruption).
 * 2. Every key of an export in the table lies within the size the table
 *    records (a backing that grew is recorded before anything is written
 *    past its old end; --allow-shrink drops, durably, the keys past the
 *    new end before it records the new size).  A key past the end that
 *    the journal does not cover (a DELETE of a shrink) is a key whose
 *    position was corrupted.
 * "Covered" means: every block of the key is covered by journal keys
 * later than it (any journal key, for a key of the tree: the tree is
 * older than every live journal entry).  A violation refuses the device
 * (-EBADMSG): its metadata checksums but does not make sense.
 */
#ifndef NBDCACHE_CROSSCHECK_H
#define NBDCACHE_CROSSCHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ondisk.h"

struct bucket_set;
struct crosscheck;

/* sb, name and path (for messages) are borrowed: they outlive it.  0 and
 * *out, or -ENOMEM.
 */
int crosscheck_create (const struct nc_sb *sb, const char *name,
                       const char *path, struct crosscheck **out);
/* NULL is a no-op. */
void crosscheck_destroy (struct crosscheck *cx);

/* A live journal key, in replay order, copied.  0 or -ENOMEM. */
int crosscheck_journal_key (struct crosscheck *cx, const struct nc_key *k);
/* Or all of them at once, borrowed (the read-write assembly's replay
 * list: no copy); they must stay until crosscheck_finish.  Only if none
 * was given one by one.
 */
void crosscheck_borrow_journal (struct crosscheck *cx,
                                const struct nc_key *keys, size_t n);
/* A leaf key met by the index walk; current: its gen is its bucket's.
 * 0 or -ENOMEM.
 */
int crosscheck_tree_key (struct crosscheck *cx, const struct nc_key *k,
                         bool current);
/* After the walk, with the gens as read from disk (bs borrowed): every
 * promise above holds.  0, -EBADMSG (logged: the first violation, and
 * how many), or -ENOMEM.  A malformed journal key (one the replay
 * refuses) skips the checks: 0.
 */
int crosscheck_finish (struct crosscheck *cx, struct bucket_set *bs);

#endif /* NBDCACHE_CROSSCHECK_H */
