/* SPDX-License-Identifier: BSD-3-Clause */
/* journal.h — the journal: a ring of entries that makes index updates
 * durable with one write, group commit, replay at open.
 *
 * WHAT: keys inserted into the btree are appended to the *open entry* in
 * memory (journal_add); a commit thread writes it out.  A commit is:
 *   close the entry (under the btree lock, through hooks->close_entry,
 *   which calls journal_close_entry_locked with the root and the oldest
 *   pin) -> hooks->pre_write (the backing stores: a clean key must not be
 *   durable before the backing data it stands for) -> cdev_sync
 *   (pre-flush: the data those keys point at, and btree node writes, are
 *   durable) -> write the entry blocks -> cdev_sync -> durable_seq
 *   advances -> hooks->committed -> waiters wake.  While callers wait for
 *   more, the next entries are closed before that final cdev_sync, which
 *   then serves as their pre-flush: one cdev_sync per write under a
 *   stream of flushes (journal.c PIPELINE).
 * Group commit: every journal_wait / journal_flush that arrives while a
 * commit is in flight is served by the next one, whatever the number of
 * callers.  An open entry with keys is also committed delay_ms after its
 * first key (journal_delay_ms, default 100).
 *
 * RING: entries are whole blocks, written one after another through the
 * journal buckets; an entry never straddles the end of the ring (the
 * writer wraps to block 0).  Space from the start of the entry last_seq of
 * the newest *durable* entry up to the write position is in use; a commit
 * that would overwrite it first asks hooks->reclaim(seq) to write the btree
 * nodes pinning older entries, then re-closes with a newer last_seq.
 * An open entry larger than one entry can hold (JOURNAL_MAX_ENTRY_KEYS)
 * is written as several consecutive entries in one commit.
 *
 * PINS: a btree leaf with unwritten changes records the open seq at its
 * first change (its pin); last_seq of a new entry = min(oldest pin,
 * the entry's own seq).  So an entry is dropped from the ring only when
 * every key in it is in a durable btree node.
 *
 * REPLAY: scan every block of the ring for valid entries (csum, magic,
 * version, uuid, nblocks fits); choose the highest seq E such that every
 * entry E.last_seq .. E is present and valid (a torn multi-entry commit
 * leaves an incomplete chain and an older E is used).  Replay those keys
 * in order.  No such E -> -EBADMSG.  Entries newer than E are told
 * apart by their sector stamps (ondisk.h, entry version 2): a torn write
 * (never acknowledged) is dropped, an entry written whole and damaged
 * since is -EBADMSG (journal-replay.c TORN OR DAMAGED).  A needed entry
 * written whole by a newer build (a version above those this one reads)
 * is -EPROTONOSUPPORT, named with its version (NEWER VERSIONS).  Writing
 * continues after E.
 *
 * THREADS AND LOCKS: one mutex + condvars inside.  journal_add and
 * journal_close_entry_locked are called with the btree lock held (lock
 * order: btree -> journal).  The commit thread takes no lock while doing
 * I/O and calls the hooks without the journal lock; so does a caller of
 * journal_wait_or_commit that runs a commit itself.  journal_wait /
 * journal_flush must never be called with the btree lock held.
 * FAILURE: a failed commit (I/O error) fails every waiter of that commit
 * with -EIO and is retried by the next; the keys stay in memory.  After
 * journal_stop, add/wait return -ESHUTDOWN.
 */
#ifndef NBDCACHE_JOURNAL_H
#define NBDCACHE_JOURNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ondisk.h"

struct cdev;
struct journal;

/* Most data one write's entries carry inline (journal.c REDO): 64 KiB. */
#define JOURNAL_INLINE_MAX_BLOCKS 16u

/* Keys per on-disk entry: one entry is at most 64 blocks (256 KiB). */
#define JOURNAL_MAX_ENTRY_BLOCKS 64u
#define JOURNAL_MAX_ENTRY_KEYS \
  ((JOURNAL_MAX_ENTRY_BLOCKS * NC_JSECTORS_PER_BLOCK \
    * NC_JSECTOR_PAYLOAD_BYTES - sizeof (struct nc_jentry)) \
   / sizeof (struct nc_key))
/* journal_throttle waits while the open entry holds more keys than this. */
#define JOURNAL_THROTTLE_KEYS (4 * JOURNAL_MAX_ENTRY_KEYS)

struct journal_hooks {
  void *opaque;
  /* Take the btree lock, call journal_close_entry_locked (j, &that lock,
   * root, level, oldest_pin) and return its result, release the lock.
   * oldest_pin is UINT64_MAX when no leaf has unwritten changes.
   */
  int (*close_entry) (void *opaque, struct journal *j);
  /* Write every btree node whose pin is < seq (and sync).  Called without
   * the journal lock.  0 or -errno.
   */
  int (*reclaim) (void *opaque, uint64_t seq);
  /* Optional.  Before the entries are written: make durable whatever
   * outside the cache device their keys depend on (every backing write
   * completed before the entries were closed).  Called without the
   * journal lock.  0 or -errno (the commit fails and is retried).
   */
  int (*pre_write) (void *opaque);
  /* Optional, all three or none.  pre_write for a write that skips its
   * pre-flush (journal.c REDO), in two halves: pre_write_unsynced, before
   * any entry is written, makes durable what outside the cache device
   * the keys depend on; write_unsynced writes what the cache device must
   * hold with the entries (data checksum pages), leaving its sync to the
   * write's final sync, possibly while the entries' own writes are in
   * flight (journal-write.c OVERLAP), and sets *token to what `synced`
   * (called after that sync succeeded) must be told.  Without them such
   * a write calls pre_write.
   */
  int (*pre_write_unsynced) (void *opaque);
  int (*write_unsynced) (void *opaque, uint64_t *token);
  void (*synced) (void *opaque, uint64_t token);
  /* Entries up to durable_seq are durable (allocator frees buckets). */
  void (*committed) (void *opaque, uint64_t durable_seq);
};

struct journal_stats {
  uint64_t commits;             /* successful commits */
  uint64_t entries;             /* entries written */
  uint64_t keys;                /* keys written */
  uint64_t waiters;             /* journal_wait/flush calls served */
  uint64_t max_batch_waiters;   /* most waiters served by one commit */
  uint64_t reclaims;
  uint64_t errors;
  uint64_t presynced;           /* writes needing no pre-flush (journal.c
                                   PIPELINE) */
  uint64_t fill_syncs;          /* writes that filled ring blocks first,
                                   with a sync of their own (FILL) */
  uint64_t inlined;             /* writes whose entries carried their data
                                   and skipped the pre-flush (REDO) */
  uint64_t inline_stashed_blocks; /* ... of their data, copied from the
                                   stash (journal-stash.c) */
  uint64_t inline_read_blocks;  /* ... read back from the device */
  uint64_t waiting;             /* journal_wait callers waiting now */
  uint64_t durable_seq, last_seq;
  uint64_t ring_blocks, ring_used_blocks;
};

/* Nothing is read or started yet. */
int journal_create (struct cdev *cd, const struct nc_sb *sb,
                    struct journal **out);
/* Stops the thread if running (without a final commit: see journal_stop). */
void journal_destroy (struct journal *j);

typedef int (*journal_replay_fn) (void *opaque, const struct nc_key *k,
                                  uint64_t seq);
/* Scan and replay (see REPLAY).  fn gets every key of entries
 * last_seq..E in order; a non-zero return stops replay and is returned.
 * *root / *root_level are E's.  Afterwards the next entry is E.seq + 1.
 */
int journal_replay (struct journal *j, journal_replay_fn fn, void *opaque,
                    struct nc_key *root, uint16_t *root_level);

/* After journal_replay: REDO (journal.c).  fn gets, in entry order,
 * every data key that the newest replayed write's entries carry inline,
 * with its size * 4096 bytes; the caller writes back those blocks whose
 * key is still live at the same bucket, offset and gen, and makes them
 * durable before the journal writes again.  A non-zero return stops and
 * is returned.  The inline data is freed afterwards (a second call sees
 * none).
 */
typedef int (*journal_redo_fn) (void *opaque, const struct nc_key *k,
                                const void *data);
int journal_redo (struct journal *j, journal_redo_fn fn, void *opaque);
/* How many data keys journal_redo would hand out (check, inspect). */
size_t journal_redo_count (const struct journal *j);

/* For format: write entry seq 1, last_seq 1, empty root, no keys, at block
 * 0 of the ring.  No sync.
 */
int journal_format (struct cdev *cd, const struct nc_sb *sb);

/* For nbdcache check: replay without a callback, reporting in *info. */
struct journal_check_info {
  uint64_t first_seq, last_seq;   /* replayed range */
  uint64_t nkeys;
  uint64_t valid_entries_seen;    /* in the whole ring */
};
int journal_check (struct cdev *cd, const struct nc_sb *sb,
                   struct journal_check_info *info);

/* Start the commit thread (after replay). */
int journal_start (struct journal *j, unsigned delay_ms,
                   const struct journal_hooks *hooks);
/* Commit what is open (if anything), then stop the thread.  Returns the
 * last commit's result.
 */
int journal_stop (struct journal *j);

/* ---- with the btree lock held ---- */
/* Append keys to the open entry; returns the seq they will be written
 * in.  Never blocks on I/O.
 */
uint64_t journal_add (struct journal *j, const struct nc_key *keys, size_t n);
/* The open entry must be written even if it has no keys (root changed). */
void journal_mark_needed (struct journal *j);
/* Called from hooks->close_entry only, with btree_lock (the btree's lock,
 * which the journal cannot name otherwise) held: it is asserted.
 */
int journal_close_entry_locked (struct journal *j, pthread_mutex_t *btree_lock,
                                const struct nc_key *root, uint16_t root_level,
                                uint64_t oldest_pin);

/* ---- any thread, no lock held ---- */
/* REDO's stash (journal-stash.c): device blocks [block, block + nblocks)
 * of a bucket at gen `gen` now hold src (nblocks * 4096 bytes), a data
 * write that completed; call it before the write's key is added, so a
 * commit carrying the key copies the bytes instead of reading them back.
 * src NULL: the write failed (the blocks' contents are unknown).  Every
 * write of data blocks must call it (journal-stash.c INVARIANTS); j NULL
 * (no journal) does nothing; runs over JOURNAL_INLINE_MAX_BLOCKS are
 * forgotten rather than kept.
 */
void journal_stash_put (struct journal *j, uint64_t block, uint8_t gen,
                        uint64_t nblocks, const void *src);
/* Copy device blocks [block, block + nblocks) of gen `gen` into dst and
 * return true if the stash holds every one of them (journal-stash.c
 * INVARIANTS: then they are the bytes the write of that gen put there);
 * else false and dst untouched.
 */
bool journal_stash_get (struct journal *j, uint64_t block, uint8_t gen,
                        uint64_t nblocks, void *dst);

/* ---- any thread, no btree lock ---- */
/* Seq of the open entry (lock-free). */
uint64_t journal_open_seq (struct journal *j);
uint64_t journal_durable_seq (struct journal *j);
/* Wait until entry seq is durable (kicks a commit).  0 or -EIO. */
int journal_wait (struct journal *j, uint64_t seq);
/* Everything added so far durable: 0 at once if nothing is open. */
int journal_flush (struct journal *j);
/* The same, but when no commit is running the caller runs it itself
 * rather than waking the commit thread and sleeping (journal.c INLINE
 * COMMIT): two thread hand-offs fewer for a lone FLUSH or FUA write.
 * The hooks then run in the caller's thread: call these with no lock
 * held that a hook takes (btree, bucket, exports, backing flush locks);
 * a request's range lock is fine (no hook takes one).
 */
int journal_wait_or_commit (struct journal *j, uint64_t seq);
int journal_flush_or_commit (struct journal *j);
/* Wait while the open entry is over JOURNAL_THROTTLE_KEYS. */
void journal_throttle (struct journal *j);
/* Would journal_throttle wait now (or is the journal lock busy)? */
bool journal_would_throttle (struct journal *j);

void journal_get_stats (struct journal *j, struct journal_stats *st);

#endif /* NBDCACHE_JOURNAL_H */
