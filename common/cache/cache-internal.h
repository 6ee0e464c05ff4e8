/* SPDX-License-Identifier: BSD-3-Clause */
/* cache-internal.h — how the engine fits together (read this first).
 *
 * MODULES (one noun per file):
 *   ondisk.h        the format, byte for byte
 *   cdev*.c         raw cache-device I/O: file/block device, simulated,
 *                   and an event loop's io_uring for reads (cdev-ring.c)
 *   csum.c          the checksum of every metadata block
 *   super.c         superblock: read (v1 and v2), validate, write, the
 *                   v1 conversion, the export table and THE slot lookup
 *   format.c        a new, empty cache on a device
 *   bkey.c          key validity
 *   bucket.c        buckets: states, gens, priorities, accounting
 *   bucket-alloc.c  the allocator: free buckets, write points, nodes
 *   bucket-discard.c batched discards of freed buckets
 *   bucket-gc.c     GC's recount and moving GC's choice of buckets
 *   prio.c          the prio copies: gens and priorities on disk
 *   journal.c       the journal: open entries, group commit, the commit
 *                   thread, reclaim
 *   journal-write.c one commit write: fill, entries, pre-flush, pwrites,
 *                   pre-close, final sync
 *   journal-stash.c REDO's stash of data blocks just written (inline
 *                   data copied, not read back)
 *   journal-replay.c reading the ring: scan, validation, the chain to
 *                   replay, the check, format's first entry
 *   btree.c         the index: lookup, insert, split, walk
 *   btree-walk.c    the index's GC pass, scans, replace-if-unchanged
 *   bnode.c         btree nodes in memory: the bounded node cache, node
 *                   reads and writes
 *   bset.c          a node's bucket on disk: bsets, torn and corrupt ones
 *   assemble.c      the recovery order (OPEN below), read-write or
 *                   read-only for inspection
 *   crosscheck.c    recovery's checks across structures: stale DIRTY
 *                   keys, keys past their export's end
 *   device.c        a cache device: open, close, export binding
 *   export-table.c  freeing an export's slot (nbdcache forget), and
 *                   finishing one a crash interrupted; dropping an
 *                   export's keys (also for shrink and detach)
 *   request-hit.c   reads of hits only, without waiting (NCACHE_NOWAIT,
 *                   a ring's O_DIRECT reads)
 *   request-async-write.c  writeback WRITEs through a ring: queued
 *                   without waiting, keys inserted at completion
 *   request.c       the per-mode request paths (the mode table at its top,
 *                   doc/design.md) and
 *                   the crash ordering of cache and backing (its ORDERING)
 *   export-io.c     per export: the one door to the backing store
 *   cache-data.c    the one door to data blocks on the cache device
 *   datacsum.c      the data checksum region: a checksum per cached block
 *   forget.c        ORDERING rule 1: the cache forgets, durably, before
 *                   the backing store changes
 *   rangelock.c     per export: writers' range locks
 *   backsync.c      per export: backing durability; the journal's hook
 *   status.c        BLOCK_STATUS: base:allocation and nbdcache:state
 *   piece-walk.c    one walk over an export's index, piece by piece
 *   missflight.c    per export: concurrent misses of a block, one read
 *   writeback.c     per export: dirty data back to the backing store
 *   wbrate.c        writeback's PI rate controller
 *   gc.c            per device: GC, moving GC, batched discards
 *   seqcut.c        per export: sequential streams bypass the cache
 *   trimq.c         per export: merged, batched backing trims
 *   mode.c          cache mode names
 *   live.c          per export: settings changed while it serves (set,
 *                   detach, attach) and the request gate they wait on
 *   cache.c         the public API (cache.h): checks, stats, dispatch
 *
 * A CACHE DEVICE (struct ncache_device) owns: the cdev, the superblock, the
 * bucket set, the journal (and its commit thread) and the btree.  Exports
 * opened on it (struct ncache_export) borrow it; each has an export id from the
 * superblock's export table, bound to what identifies its backing
 * store (super_match_export) and its size.
 *
 * OPEN (recovery): device.c opens the file and formats if it must; the
 * order below is written once, in assemble.c, which nbdcache show/check
 * (read-only) and the benchmark run too:
 *   1. super_read: the newest valid superblock (or refuse: unformatted,
 *      foreign, corrupt; format only if create = yes and the device has no
 *      nbdcache magic at all).
 *   2. prio_read: gens and priorities.
 *   3. journal_replay: collect the keys of the live entries and the root.
 *   4. btree_set_root; walk #1 marks every reachable node bucket and every
 *      current key's bucket, plus the buckets of the journal's keys, so
 *      nothing they point at is reused while replaying; then the
 *      cross-checks (crosscheck.h): a stale DIRTY key or a key past its
 *      export's end must be replaced by a later journal key.
 *   5. replay the collected keys into the btree (accounting off), write
 *      every changed leaf, start the journal and commit an entry that
 *      records the (possibly new) root: from here the old entries are
 *      not needed.
 *   6. walk #2 recounts live and dirty blocks exactly (bucket_mark_*):
 *      the allocator is ready, accounting on.
 *   Any -EBADMSG on the way refuses the device: corrupt metadata is
 *   never trusted.
 *
 * LOCK ORDER: btree lock -> journal lock -> bucket lock; device->lock
 * (export table, superblock writes) is taken only at export open/close
 * and by a live mode change (live.c), and never with the others.  Data
 * I/O (cdev pread/pwrite of user data, backing I/O) happens with no lock
 * held.  An export's live.lock (set / detach / attach) comes before
 * everything: it is held across a drain, a gate wait and the superblock
 * write, and no request ever takes it.
 *
 * THE PROMISE (doc/design.md): data is written to the cache device before its
 * key is inserted; a key is journaled when inserted; FUA and FLUSH wait
 * for the journal entry (whose commit syncs the device first).  So every
 * acknowledged-durable write has both its data and its key durable.
 */
#ifndef NBDCACHE_CACHE_INTERNAL_H
#define NBDCACHE_CACHE_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "assemble.h"
#include "cache.h"
#include "ondisk.h"

struct cdev;
struct bucket_set;
struct journal;
struct btree;
struct writeback;
struct gc;
struct seqcut;
struct trimq;

struct ncache_device {
  char *name;                   /* [cache NAME]; for logs */
  struct cdev *cd;              /* owned */
  struct nc_sb sb;              /* in memory; updated under lock */
  struct assembly assembly;     /* how it was put together; the modules
                                   call each other back through it */
  struct bucket_set *bs;
  struct journal *journal;
  struct btree *bt;
  struct datacsum *dc;          /* the data checksums; NULL: the cache
                                   has none (NC_FEATURE_DATA_CSUM) */
  struct gc *gc;                /* background thread; NULL until started;
                                   set and cleared under gc_ptr_lock */
  pthread_mutex_t gc_ptr_lock;  /* a leaf lock: the allocator's kick
                                   (under the bucket lock) vs close */
  bool discard;                 /* config: discard freed buckets */
  uint32_t zero_id;             /* atomic: the last ZERO key id (random
                                   start at open) */
  pthread_mutex_t lock;         /* sb export table, export_open[] */
  bool export_open[NC_MAX_EXPORTS + 1]; /* by id: an ncache has it */
  unsigned nr_open_exports;     /* also read without the lock (atomic) */
  /* The open exports (linked by ncache.next_on_dev), whose backing
   * stores every journal commit flushes first (request_sync_backings).
   * Held across those flushes; taken before an export's
   * backing_flush_lock, after nothing else.
   */
  pthread_mutex_t exports_lock;
  struct ncache_export *exports;
  /* Keys that rely on backing data (backsync.c): the newest journal seq
   * holding one, and inserts of such keys in progress.  While one is not
   * durable, commits and node writes flush the backing stores first.
   * Atomic.
   */
  uint64_t backsync_seq;
  unsigned backsync_busy;
};

/* Writes in flight over block ranges of one export (request.c): a write
 * waits while another one overlaps its blocks, so read-modify-write of a
 * partial block and write-around never interleave with a write to the
 * same blocks.
 */
struct range_lock_entry {
  uint64_t start, end;          /* blocks */
  struct range_lock_entry *next;
};
struct range_lock {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  struct range_lock_entry *active;
};

/* live.c — the request gate: a request counts itself in the slot of the
 * gate's generation when it starts and reads the mode after; a change
 * stores the new mode, bumps the generation and waits for the old slot
 * to empty.  Then every request still running started under the new
 * mode.
 */
struct live {
  pthread_mutex_t lock;         /* serialises set / detach / attach */
  /* ---- under lock ---- */
  enum ncache_mode attach_mode; /* detached: the mode attach restores */
  /* ---- atomic ---- */
  bool detaching;               /* reads promote nothing (detach runs) */
  unsigned gen;                 /* the gate's generation */
  uint64_t inflight[2];         /* requests per generation parity */
  unsigned waiting;             /* a change waits for a slot to empty */
  pthread_mutex_t gate_lock;    /* with gate_cond: the waiter sleeps */
  pthread_cond_t gate_cond;
};

/* An export (cache.h's struct ncache_export). */
struct ncache_export {
  char *name;                   /* export name for logs; never NULL */
  /* The mode new requests run under (live.c): read once per request, at
   * its start, inside the request gate; NONE with a device = detached.
   * Atomic.
   */
  enum ncache_mode mode;
  struct backing *backing;      /* owned */
  struct ncache_caps caps;
  struct ncache_device *dev;    /* borrowed; NULL in mode none */
  uint16_t export_id;           /* in dev's export table */
  struct range_lock rl;
  struct ncache_export_tuning tuning;
  struct writeback *wb;         /* cached modes; NULL in mode none */
  struct seqcut *seq;           /* cached modes; NULL when cutoff is 0 */
  struct trimq *tq;             /* cached modes */
  struct missflight *mf;        /* cached modes: misses in flight */
  struct live live;             /* live settings, the request gate */

  /* Set by any successful write, trim or zero; tells close whether the
   * backing store needs a last flush.  Atomic.
   */
  bool written;
  /* The backing store's durability (request.c, cached modes): every
   * backing write, zero or trim bumps backing_write_gen when it has
   * completed (request_backing_wrote); a flush that started when it was
   * g sets backing_flushed_gen to g.  So backing_flushed_gen >= g means
   * every backing change completed before the gen was g is durable.
   * Atomic; flushes serialised by backing_flush_lock.
   */
  uint64_t backing_write_gen, backing_flushed_gen;
  uint64_t backing_flush_fails; /* failed flushes: the epoch (backsync.c) */
  uint64_t backing_fails_told;  /* of them, reported to a client FLUSH */
  pthread_mutex_t backing_flush_lock;
  /* This export's share of dev->backsync_seq / _busy: the journal's hook
   * flushes only the exports with such keys pending.  Atomic.
   */
  uint64_t backsync_seq;
  unsigned backsync_busy;
  struct ncache_export *next_on_dev; /* dev->exports, under its exports_lock */
  /* The newest journal seq holding a DELETE that cut a key of this export
   * (request.c): until it is durable, no backing change may go out under
   * a possibly stale clean key.  Atomic, only grows.
   */
  uint64_t cut_seq;

  /* Statistics; atomic, relaxed. */
  uint64_t nr_reads, nr_writes, nr_flushes, nr_trims, nr_zeroes,
    nr_caches, nr_extents;
  uint64_t bytes_read, bytes_written;
  uint64_t nr_errors;
  uint64_t nr_hits, nr_misses, nr_bypasses, nr_promotions;
  uint64_t nr_seq_bypasses, nr_write_bypasses;
};

#define STAT_ADD(nc, field, n) \
  __atomic_fetch_add (&(nc)->field, (uint64_t) (n), __ATOMIC_RELAXED)
#define STAT_LOAD(nc, field) \
  __atomic_load_n (&(nc)->field, __ATOMIC_RELAXED)

/* ---- piece-walk.c ---- */
struct btree_piece;
/* What a piece_walk callback returns besides 0 (go on) and -errno. */
#define PIECE_WALK_AGAIN 1      /* look the range up again from this lo */
#define PIECE_WALK_STOP 2       /* end the walk; piece_walk returns 0 */
typedef int (*piece_walk_fn) (void *opaque, const struct btree_piece *p,
                              uint64_t lo, uint64_t hi);
/* Walk bytes [offset, offset + count) of nc's index in order: fn sees
 * each piece (p->found: a key clipped to the piece; else a hole in the
 * index) as bytes [lo, hi).  batch_done (may be NULL) runs after each
 * btree lookup.  0, or a lookup's or fn's -errno.
 */
int piece_walk (struct ncache_export *nc, uint64_t offset, uint64_t count,
                piece_walk_fn fn, void (*batch_done) (void *opaque),
                void *opaque);

/* ---- request.c: the cached-mode paths (nc->dev != NULL).  Ranges and
 * flags are already checked by cache.c.  0 or -errno.
 */
/* fn NULL: a plain read; else ncache_pread_extents' report. */
int request_pread (struct ncache_export *nc, void *buf, size_t count,
                   uint64_t offset, ncache_extent_fn fn, void *opaque);
/* NCACHE_NOWAIT: all hits, served without waiting, or -EAGAIN with
 * nothing done.  count > 0.
 */
int request_pread_nowait (struct ncache_export *nc, void *buf, size_t count,
                          uint64_t offset);
/* ncache_pread_async's hit path: queued (0) or -EAGAIN with nothing done;
 * _done: the gen recheck and the side effects of a served read.
 */
int request_pread_async (struct ncache_export *nc, struct cdev_ring *ring,
                         void *buf, size_t count, uint64_t offset,
                         struct ncache_aread *a, void *cookie);
int request_pread_async_done (struct ncache_export *nc, size_t count,
                              uint64_t offset, const struct ncache_aread *a);
int request_pwrite (struct ncache_export *nc, enum ncache_mode mode,
                    const void *buf, size_t count,
                    uint64_t offset, uint32_t flags);
/* ncache_pwrite_async's writeback path (request-async-write.c): queued
 * (0) or -EAGAIN with nothing done; _done: the keys in, or -EAGAIN with
 * everything undone, or the insert's error.
 */
int request_pwrite_async (struct ncache_export *nc, struct cdev_ring *ring,
                          const void *buf, size_t count, uint64_t offset,
                          struct ncache_awrite *w, void *cookie);
int request_pwrite_async_done (struct ncache_export *nc, const void *buf,
                               size_t count, uint64_t offset,
                               struct ncache_awrite *w);
int request_flush (struct ncache_export *nc);
int request_trim (struct ncache_export *nc, uint64_t count, uint64_t offset,
                  uint32_t flags);
int request_zero (struct ncache_export *nc, enum ncache_mode mode,
                  uint64_t count, uint64_t offset, uint32_t flags);
int request_cache (struct ncache_export *nc, uint64_t count, uint64_t offset);
int request_extents (struct ncache_export *nc, uint64_t count, uint64_t offset,
                     bool req_one, ncache_extent_fn fn, void *opaque);
int request_state_extents (struct ncache_export *nc, uint64_t count,
                           uint64_t offset, bool req_one, ncache_extent_fn fn,
                           void *opaque);
void range_lock_init (struct range_lock *rl);
void range_lock_destroy (struct range_lock *rl);
/* Writes, zeroes, trims and writeback hold the range lock over blocks
 * [start, end) of the export while they touch them.
 */
void range_lock_take (struct range_lock *rl, struct range_lock_entry *e,
                      uint64_t start, uint64_t end);
void range_lock_release (struct range_lock *rl, struct range_lock_entry *e);
/* Does anyone hold blocks overlapping [start, end) right now? */
bool range_lock_busy (struct range_lock *rl, uint64_t start, uint64_t end);
/* range_lock_take without the wait: true and e held, or false (busy). */
bool range_lock_try (struct range_lock *rl, struct range_lock_entry *e,
                     uint64_t start, uint64_t end);
/* A backing write, zero or trim of nc has completed with result r (a
 * failed one, r < 0, is not counted as a change).
 */
void request_backing_wrote (struct ncache_export *nc, int r);
/* Make every backing change of nc completed before this call durable
 * (one flush serves concurrent callers).  0 or -errno.
 */
int request_backing_sync (struct ncache_export *nc);
/* The export's backing flush epoch: it changes when a backing flush
 * fails (the store may have dropped changes made before it).
 */
uint64_t request_backing_epoch (struct ncache_export *nc);
/* request_backing_sync for changes made since `epoch` was read: -EIO if
 * a backing flush failed since (they may be lost).
 */
int request_backing_sync_since (struct ncache_export *nc, uint64_t epoch);
/* request_backing_sync for a client FLUSH: outside writeback mode it
 * also fails (-EIO, once) for a failed backing flush since the previous
 * client FLUSH that another caller saw: writes acknowledged before it may
 * be lost.
 */
int request_backing_sync_flush (struct ncache_export *nc);
/* Around the insert of a key that relies on backing data (a clean key
 * after a backing write, a promotion of data not known durable, a DELETE
 * dropping dirty data the backing now holds): begin before, end with the
 * journal seq that holds it (or the open seq after an error).
 */
void request_backsync_begin (struct ncache_export *nc);
void request_backsync_end (struct ncache_export *nc, uint64_t seq);
/* Has the backing store of nc changed since its last flush? */
bool request_backing_unflushed (struct ncache_export *nc);
/* An export joins / leaves its device's list (dev->exports); attach
 * before its first I/O, detach after its last.
 */
void request_attach (struct ncache_export *nc);
void request_detach (struct ncache_export *nc);
/* The journal's pre_write hook: request_backing_sync of every export
 * of dev with keys relying on its backing store pending (ORDERING rule
 * 2).  0 or the first -errno.
 */
int request_sync_backings (struct ncache_device *dev);

/* Extra knobs for ncache_device_open_cdev (tests and the config). */
struct ncache_device_tuning {
  uint64_t node_cache_bytes;    /* 0 = 64 MiB */
  unsigned journal_delay_ms;    /* 0 = 100 */
  uint32_t format_bucket_bytes; /* create: 0 = 1 MiB */
  uint64_t format_journal_bytes; /* create: 0 = default */
  bool discard;                 /* discard freed buckets (config) */
  bool gc_off;                  /* tests: no GC thread (gc_run_once) */
};

/* Open (and, with create, format) a cache device on an already-open cdev.
 * Takes ownership of cd on every path.  ncache_device_open is this on a
 * cdev_file_open'ed path.
 */
int ncache_device_open_cdev (const char *name, struct cdev *cd, bool create,
                             const struct ncache_device_tuning *tuning,
                             struct ncache_device **out);

/* Bind an export to its id (find or add by what identifies the backing,
 * super_match_export; refuse an id already open, and another backing at
 * a path the table knows).  A version 1 slot is adopted; a file new to
 * the table gets its user.nbdcache.id.  A backing that grew since the table recorded its size
 * gets the new size in the table (superblock written before this
 * returns; backing, if not NULL, is read to check the old last block);
 * one that shrank is refused unless allow_shrink (then the dirty data
 * below the new end is written back to backing and flushed, and the keys
 * past the new end are dropped, durably, before the new size is
 * recorded).  0 and
 * *id, or -errno (logged).
 */
int device_bind_export (struct ncache_device *dev, const char *name,
                        const char *uri, struct backing *backing,
                        uint64_t size_bytes, enum ncache_mode mode,
                        bool allow_shrink, uint16_t *id);
void device_unbind_export (struct ncache_device *dev, uint16_t id);
/* Record mode in export id's table entry (superblock written before
 * this returns; the old entry kept if the write fails).  0 or -errno
 * (logged).
 */
int device_set_export_mode (struct ncache_device *dev, const char *name,
                            uint16_t id, enum ncache_mode mode);
/* export-table.c: finish every forget a crash interrupted (slots marked
 * NC_SLOT_FORGETTING), at open, after recovery; one that fails again
 * leaves its slot marked (never bound; logged).
 */
void device_finish_forgets (struct ncache_device *dev);
/* export-table.c: drop every key of export id in blocks [from, to),
 * durably (journal flushed): --allow-shrink, forget, detach.  Dirty keys are dropped too: the caller made sure there are
 * none it needs.  0 or -errno (logged with `why`).
 */
int device_drop_keys (struct ncache_device *dev, const char *name,
                      const char *why, uint16_t id, uint64_t from,
                      uint64_t to);

/* ---- live.c: the request gate ---- */
struct live_ticket {
  unsigned slot;
  bool counted;                 /* false: an export without a device */
};
/* Every request of an export with a device passes the gate: the mode it
 * runs under, read once.  Pair with live_end.
 */
enum ncache_mode live_begin (struct ncache_export *nc,
                             struct live_ticket *t);
void live_end (struct ncache_export *nc, const struct live_ticket *t);
/* Reads promote nothing while a detach runs. */
bool live_detaching (struct ncache_export *nc);
/* The mode now (atomic). */
enum ncache_mode live_mode (struct ncache_export *nc);
void live_init (struct ncache_export *nc);
void live_destroy (struct ncache_export *nc);

#endif /* NBDCACHE_CACHE_INTERNAL_H */
