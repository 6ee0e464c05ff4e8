/* SPDX-License-Identifier: BSD-3-Clause */
/* cache.h — THE public API of the nbdcache engine.
 *
 * WHAT: an export (struct ncache_export, its functions named ncache_*)
 * serves a byte range backed by a backing store (common/backing) and,
 * optionally, cached on a local SSD cache device (struct ncache_device)
 * in one of four modes.  Front ends (nbdcached, the
 * nbdkit plugin) call only what is declared here.
 *
 * OWNS: an export owns its backing store (ncache_open takes ownership on
 * every path).  A cache device is shared by the exports opened on it and
 * must outlive them.
 *
 * THREADS: every function may block and is thread-safe; all connections of
 * an export share one ncache_export, so a flush covers writes from every one of
 * them (multi-conn).  Front ends never call the engine from an event loop.
 *
 * ERRORS: 0 or a negative errno.  The engine logs with context where the
 * error happens; callers only translate (to NBD errors, nbdkit_set_error).
 *   -EINVAL   malformed request or range (front ends check ranges first)
 *   -ENOSPC   write past the end
 *   -EPERM / -EROFS  write to a read-only export
 *   -ENOTSUP  FAST_ZERO that would not be fast
 *   -EIO      backing or cache device failure
 *
 * ON DISK: nothing in mode none (no cache device); the cache device format
 * is ondisk.h byte for byte, nbdcache-format(5) for people, and how the
 * engine's modules use it is cache-internal.h.
 *
 * NOT HERE: NBD wire handling, TLS, sockets, config files.
 */
#ifndef NBDCACHE_CACHE_H
#define NBDCACHE_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct backing;
struct backing_open_options;
struct ncache_export;
struct ncache_device;

enum ncache_mode {
  NCACHE_MODE_NONE = 0,         /* straight to the backing store */
  NCACHE_MODE_WRITEBACK,
  NCACHE_MODE_WRITETHROUGH,
  NCACHE_MODE_WRITEAROUND,
};

/* Config `discard`: whether freed buckets are discarded before reuse.
 * 0 (a zeroed config) means no.  AUTO: yes on a block device
 * (BLKDISCARD), no on a regular file, where a punched hole makes the next
 * write into it allocate blocks again (cdev-file.c: PREALLOCATION).
 */
enum ncache_discard {
  NCACHE_DISCARD_NO = 0,
  NCACHE_DISCARD_YES,
  NCACHE_DISCARD_AUTO,
};

/* "none|writeback|writethrough|writearound" <-> enum.  0 or -EINVAL. */
int ncache_mode_from_string (const char *s, enum ncache_mode *out);
const char *ncache_mode_name (enum ncache_mode mode);

/* ---- request flags ---- */
#define NCACHE_FUA       (1u << 0) /* pwrite/trim/zero: durable on return */
#define NCACHE_MAY_TRIM  (1u << 1) /* zero: may punch a hole (no NO_HOLE) */
#define NCACHE_FAST_ZERO (1u << 2) /* zero: fail -ENOTSUP unless fast */
#define NCACHE_REQ_ONE   (1u << 3) /* extents: one extent is enough */
/* pread: serve only if nothing has to wait — every byte a cache hit read
 * from a buffered cache device's page cache (no node read, no contended
 * index lock), or in mode none a page-cache hit of a file backing; else
 * -EAGAIN with nothing done and nothing counted (call again without the
 * flag).  Lets an event loop answer a read itself, without a hand-off to
 * a thread; a miss, a remote backing or an O_DIRECT cache never qualify.
 */
#define NCACHE_NOWAIT    (1u << 4)

/* Extent flags (same bits as NBD base:allocation). */
#define NCACHE_EXTENT_HOLE (1u << 0)
#define NCACHE_EXTENT_ZERO (1u << 1)

/* Called in order for contiguous extents starting at the request offset.
 * Return 0 to continue, >0 to stop (enough), <0 to fail with that error.
 */
typedef int (*ncache_extent_fn) (void *opaque, uint64_t offset,
                                 uint64_t length, uint32_t flags);

/* ---- cache devices ---- */
struct ncache_device_config {
  const char *name;             /* [cache NAME], for logs and stats */
  const char *path;             /* file or block device */
  uint64_t size_bytes;          /* file size when created; 0 = existing */
  bool create;                  /* format if it has no nbdcache superblock */
  bool direct;                  /* O_DIRECT */
  uint32_t bucket_bytes;        /* format only; 0 = 1 MiB */
  uint64_t journal_bytes;       /* format only; 0 = default */
  uint64_t node_cache_bytes;    /* btree node cache bound; 0 = 64 MiB */
  unsigned journal_delay_ms;    /* group-commit delay; 0 = 100 */
  /* Discard freed buckets (BLKDISCARD / FALLOC_FL_PUNCH_HOLE) in batches
   * before they are reused.  Config `discard`, default auto (front ends
   * set it; a zeroed config means no).
   */
  enum ncache_discard discard;
};

/* 0 and *out set, or -errno (logged). */
int ncache_device_open (const struct ncache_device_config *cfg,
                        struct ncache_device **out);
/* NULL is a no-op.  All exports on the device must be closed first. */
void ncache_device_close (struct ncache_device *dev);

/* ---- the export table (export-table.c) ---- */
struct ncache_slot_info {
  uint16_t id;
  char name[64];                /* export name when last bound */
  char uri[256];                /* backing store where last found */
  uint64_t backing_bytes;
  uint64_t dirty_bytes;         /* cached data newer than the backing */
  bool open;                    /* bound by an export now */
};
/* The slot named by `which`: an export id, a backing URI or file path, or
 * an export name (refused if several slots have it).  0 and *out, or
 * -ENOENT / -EEXIST (logged).
 */
int ncache_device_find_export (struct ncache_device *dev, const char *which,
                               struct ncache_slot_info *out);
/* Drop export id's keys (durably) and free its slot.  Refused while it is
 * bound (-EBUSY) or holds dirty data unless discard_dirty (-ENOTEMPTY).
 * 0 or -errno (logged).
 */
int ncache_device_forget_export (struct ncache_device *dev, uint16_t id,
                                 bool discard_dirty);

/* ---- exports ---- */
/* Per-export knobs of the background work.  ncache_export_tuning_default
 * fills the defaults; a NULL tuning in ncache_config means the defaults.
 */
struct ncache_export_tuning {
  /* Writeback's dirty target, in percent of the cache device's data space
   * shared by the exports open on it (0 .. 100; default 10).  0 = write
   * back everything as fast as the backing store takes it.
   */
  unsigned writeback_percent;
  /* A sequential stream longer than this bypasses the cache (reads not
   * promoted, writes go around).  0 = off; default 4 MiB.
   */
  uint64_t sequential_cutoff_bytes;
  /* A read miss promotes the aligned block of this size around it (like
   * nbdkit's cache-min-block-size), as far as it is not cached already:
   * read-ahead for a slow backing.  0 = off (default); a power of two,
   * at most a bucket.
   */
  uint64_t promote_min_bytes;
  /* ncache_close writes back every dirty block first (default false: the
   * cache device is persistent, dirty data is safe in it).
   */
  bool flush_on_stop;
  /* Tests: no background writeback thread (dirty data stays until
   * ncache_drain or close with flush_on_stop).  Default false.
   */
  bool writeback_off;
  /* Tests: the PI controller's update period; 0 = 1000 ms. */
  unsigned writeback_update_ms;
};
void ncache_export_tuning_default (struct ncache_export_tuning *t);

struct ncache_config {
  const char *name;             /* export name, for logs and stats */
  struct ncache_device *device; /* NULL = no cache device */
  enum ncache_mode mode;        /* must be NONE when device == NULL */
  bool readonly;
  const struct ncache_export_tuning *tuning; /* NULL = defaults; copied */
  /* The backing store shrank since the cache last served it: serve it at
   * its new size (a multiple of 4096 bytes), dropping the cached keys past
   * its new end, dirty ones included (their data is lost: the admin asked
   * for it).  false: such an export is refused.
   */
  bool allow_shrink;
};

/* backing_open for an export that will be cached on dev (NULL: plain
 * backing_open).  A store that dev's export table already knows (the
 * cache holds data for it, maybe dirty) is never created: if it is
 * missing, -ENOENT with an error naming the export, the store and the
 * cache — an empty store would silently replace the data the cache
 * holds keys for.  Only a store new to the cache may be created
 * (opts->create_size_bytes).  0 and *out set, or -errno (logged).
 */
int ncache_backing_open (struct ncache_device *dev, const char *export_name,
                         const char *location,
                         const struct backing_open_options *opts,
                         struct backing **out);

/* Open an export over a backing store.  Takes ownership of `backing` on
 * every path.  0 and *out set, or -errno (logged with the reason, e.g. a
 * mode the engine cannot serve).
 */
int ncache_open (const struct ncache_config *cfg, struct backing *backing,
                 struct ncache_export **out);
/* Commits what must be committed, closes the backing.  NULL is a no-op. */
void ncache_close (struct ncache_export *nc);

/* What the export can do; stable for the life of the handle. */
struct ncache_caps {
  uint64_t size_bytes;
  bool readonly;
  bool can_flush;
  bool can_fua;
  bool can_trim;
  bool can_zero;
  bool can_fast_zero;
  bool can_cache;
  bool can_extents;             /* extents reports real holes/zeros */
  bool can_multi_conn;
};
void ncache_get_caps (struct ncache_export *nc, struct ncache_caps *caps);

/* ---- requests: ranges must lie within [0, size) ---- */
int ncache_pread (struct ncache_export *nc, void *buf, size_t count,
                  uint64_t offset, uint32_t flags);
/* A read that also says which parts read as zeros, in one walk of the
 * index (an NBD structured READ reply sends those as holes).  fn is called
 * in order for consecutive extents covering [offset, offset + count),
 * each once it is served: flags 0, its data is in buf; NCACHE_EXTENT_ZERO,
 * it reads as zeros and buf was NOT written there (a ZERO key; in mode
 * none a zero extent of the backing store, whose extents are asked
 * first).  fn returns 0 to go on, > 0 to stop being told: that extent's
 * bytes and every later byte are then written to buf (zeros included)
 * and fn is not called again;
 * < 0 fails the read with that error.  Misses are read (and promoted) as
 * data, never probed.  flags: none yet (0).  Counted as one read.
 */
int ncache_pread_extents (struct ncache_export *nc, void *buf, size_t count,
                          uint64_t offset, uint32_t flags,
                          ncache_extent_fn fn, void *opaque);

/* ---- reads of hits through a ring (an event loop's io_uring) ----
 *
 * For an export whose cache device is O_DIRECT: ncache_pread_async
 * looks [offset, offset + count) up without waiting and, if every block
 * is a hit (and the index lock was free, every node in memory, buf and
 * the range block-aligned, room on the ring), queues the device reads on
 * `ring` with `cookie` and returns 0: a->pending reads will complete
 * through cdev_ring_reap, each lowering a->pending and recording a
 * failure in a->err.  Otherwise -EAGAIN, with nothing queued, counted or
 * changed.  Once a->pending is 0, ncache_pread_async_done rechecks what
 * the blocking read rechecks (no bucket was reused while it was read,
 * the mode did not change) and counts the read: 0, buf holds the data;
 * -EAGAIN, do the read again with ncache_pread.  No lock or ticket is
 * held in between.  cache.c; the hit path is request.c's.
 */
#define NCACHE_AREAD_MAX 8      /* device reads per request, at most */
struct ncache_aread {
  unsigned pending;             /* reads queued and not yet completed */
  int err;                      /* the first failed read's, or 0 */
  /* private */
  int mode;
  unsigned nr;
  uint32_t bucket[NCACHE_AREAD_MAX];
  uint8_t gen[NCACHE_AREAD_MAX];
  /* Where each piece landed, for the data checksums: */
  void *dst[NCACHE_AREAD_MAX];
  uint64_t dev_block[NCACHE_AREAD_MAX];
  uint32_t blocks[NCACHE_AREAD_MAX];
};
struct cdev_ring;
/* The ring itself, through the engine's door (cdev-ring.c underneath;
 * its contract is cdev.h's): made and owned by one thread; -ENOSYS from
 * create when there is no io_uring (built without liburing, or the
 * kernel refuses it: use ncache_pread alone).  The eventfd is readable
 * when completions wait; reap calls fn (cookie, 0 or -errno, opaque) for
 * each; wait submits, then blocks for one (0 at once if none is in
 * flight); everything queued is reaped before destroy (NULL: no-op).
 */
typedef void (*ncache_ring_done_fn) (void *cookie, int result, void *opaque);
int ncache_ring_create (unsigned depth, struct cdev_ring **out);
int ncache_ring_eventfd (const struct cdev_ring *ring);
int ncache_ring_submit (struct cdev_ring *ring);
unsigned ncache_ring_reap (struct cdev_ring *ring, ncache_ring_done_fn fn,
                           void *opaque);
unsigned ncache_ring_in_flight (const struct cdev_ring *ring);
int ncache_ring_wait (struct cdev_ring *ring);
void ncache_ring_destroy (struct cdev_ring *ring);
int ncache_pread_async (struct ncache_export *nc, struct cdev_ring *ring,
                        void *buf, size_t count, uint64_t offset,
                        struct ncache_aread *a, void *cookie);
int ncache_pread_async_done (struct ncache_export *nc, size_t count,
                             uint64_t offset, struct ncache_aread *a);

/* ---- writes through a ring ----
 *
 * The WRITE counterpart (request-async-write.c has the easy case it
 * qualifies and why): ncache_pwrite_async either queues the cache
 * device's writes of [offset, offset + count) from buf on `ring` with
 * `cookie` and returns 0 — w->pending (>= 1) writes complete through
 * ncache_ring_reap as for reads, and the WRITE holds its range lock, the
 * mode gate and its buckets until ncache_pwrite_async_done — or returns
 * -EAGAIN with nothing queued, counted or changed: call ncache_pwrite.
 * Once w->pending is 0, ncache_pwrite_async_done (same buf, count and
 * offset; buf untouched in between) inserts the keys and counts the
 * write: 0, the WRITE is done exactly as ncache_pwrite would have done
 * it (the data on the device, the keys in the index: acknowledge it);
 * -EAGAIN, nothing of it happened: redo it with ncache_pwrite; another
 * -errno, the WRITE failed (counted).  Only with flags 0 (no FUA).  A
 * live change or detach waits for the writes on the ring: complete them
 * from a thread that is not waiting for the change.
 */
#define NCACHE_AWRITE_MAX 4     /* device writes (extents) per request */
struct ncache_awrite {
  unsigned pending;             /* writes queued and not yet completed */
  int err;                      /* the first failed write's, or 0 */
  /* private */
  unsigned nr;                  /* keys */
  unsigned live_slot;           /* the gate's ticket */
  uint64_t rl_words[3];         /* the range lock entry */
  uint64_t key_words[NCACHE_AWRITE_MAX * 4];    /* the DIRTY keys */
};
int ncache_pwrite_async (struct ncache_export *nc, struct cdev_ring *ring,
                         const void *buf, size_t count, uint64_t offset,
                         uint32_t flags, struct ncache_awrite *w,
                         void *cookie);
int ncache_pwrite_async_done (struct ncache_export *nc, const void *buf,
                              size_t count, uint64_t offset,
                              struct ncache_awrite *w);
int ncache_pwrite (struct ncache_export *nc, const void *buf, size_t count,
                   uint64_t offset, uint32_t flags);
int ncache_flush (struct ncache_export *nc, uint32_t flags);
int ncache_trim (struct ncache_export *nc, uint64_t count, uint64_t offset,
                 uint32_t flags);
int ncache_zero (struct ncache_export *nc, uint64_t count, uint64_t offset,
                 uint32_t flags);
/* Prefetch into the cache device (no-op without one). */
int ncache_cache (struct ncache_export *nc, uint64_t count, uint64_t offset,
                  uint32_t flags);
int ncache_extents (struct ncache_export *nc, uint64_t count, uint64_t offset,
                    uint32_t flags, ncache_extent_fn fn, void *opaque);

/* nbdcache:state — what the cache holds, per extent (the bits of our own
 * NBD meta context; mode none and uncached ranges report 0).
 */
#define NCACHE_STATE_CACHED (1u << 0) /* the cache device holds the data */
#define NCACHE_STATE_DIRTY  (1u << 1) /* newer than the backing store */
#define NCACHE_STATE_ZERO   (1u << 2) /* a zero extent in the index */
/* Like ncache_extents, with NCACHE_STATE_* flags (NCACHE_REQ_ONE works). */
int ncache_state_extents (struct ncache_export *nc, uint64_t count,
                          uint64_t offset,
                          uint32_t flags, ncache_extent_fn fn, void *opaque);

/* Progress of a long operation: remaining and total (at the start) bytes.
 * Return non-zero to cancel.
 */
typedef int (*ncache_progress_fn) (void *opaque, uint64_t remaining_bytes,
                                   uint64_t total_bytes);
/* Write back every dirty block (data and zero extents) of the export at
 * full speed, flush the backing store, and return when the export is
 * clean: 0.  fn (may be NULL) is called about every 250 ms.  -EIO if a
 * backing write or flush failed meanwhile (the data stays dirty and is
 * retried in the background), -ECANCELED if fn asked, -EROFS for a
 * read-only export.  Mode none and an export with nothing dirty: 0 at
 * once (after a flush).
 */
int ncache_drain (struct ncache_export *nc, ncache_progress_fn fn,
                  void *opaque);

/* ---- live settings: changed while the export serves ----
 *
 * Like bcache's sysfs cache_mode: the admin (nbdcache set / detach /
 * attach over nbdcached's control socket) and a config reload change a
 * running export through this one door.  A change applies to the
 * requests that start after the call returns; a request in flight
 * finishes under the setting it started with (each request reads the
 * mode once, when it starts).  The cache device's export table records
 * the mode (nbdcache show); the config file is never rewritten, so a
 * restart serves the config's mode again.
 *
 * DETACH (mode none on an export with a cache device): new writes go
 * around the cache and nothing is promoted; every dirty block is written
 * back and the backing store flushed (as ncache_drain); then every key of
 * the export is dropped, durably, and requests go straight to the
 * backing store.  If the write-back fails (the backing store is down) the
 * export stays attached in its mode, with its dirty data: nothing
 * acknowledged is lost.  ATTACH puts a detached export back in a cached
 * mode, cold (a later attach never serves data from before the detach).
 */
struct ncache_export_params {
  enum ncache_mode mode;        /* new requests' mode; NONE when detached */
  bool detached;                /* a cache device, but mode none now */
  enum ncache_mode attach_mode; /* detached: the mode attach restores */
  unsigned writeback_percent;
  uint64_t sequential_cutoff_bytes;
  uint64_t promote_min_bytes;
  bool flush_on_stop;
};
void ncache_export_get_params (struct ncache_export *nc,
                               struct ncache_export_params *p);

/* The keys ncache_export_set takes, as the config file spells them. */
#define NCACHE_LIVE_KEYS \
  "mode, sequential_cutoff, writeback_percent, promote_min, flush_on_stop"

/* Set one setting by its config key and value, as in [export NAME] of
 * nbdcached.conf(5) (sizes with K/M/G suffixes, booleans yes/no).
 * mode = none detaches (no progress), a cached mode on a detached export
 * attaches in it.  msg (may be NULL) gets a one-line reason on error,
 * meant for the admin.  0, or:
 *   -ENOENT   not a key of an export
 *   -ENOTSUP  a key that cannot change while the export serves (restart)
 *   -EINVAL   a bad value, or a cache key on an export without a cache
 *   -EIO …    from the detach (the export stays attached)
 */
int ncache_export_set (struct ncache_export *nc, const char *key,
                       const char *value, char *msg, size_t msg_size);
/* Detach (above).  fn as ncache_drain's (may be NULL).  0 (also when
 * already detached), or -errno with msg set: -EINVAL no cache device,
 * -EIO a backing write or flush failed, -ECANCELED fn asked, -EROFS a
 * read-only export holding dirty data.
 */
int ncache_export_detach (struct ncache_export *nc, ncache_progress_fn fn,
                          void *opaque, char *msg, size_t msg_size);
/* Attach a detached export in mode (NONE: the mode it had when it was
 * detached).  0, or -errno with msg set: -EINVAL no cache device or not a
 * cached mode, -EALREADY not detached, -EIO the cache device failed.
 */
int ncache_export_attach (struct ncache_export *nc, enum ncache_mode mode,
                          char *msg, size_t msg_size);

/* ---- statistics ----
 *
 * STATISTICS — every counter counts REQUESTS (not blocks or bytes; the
 * bytes are bytes_read / bytes_written), and only requests that
 * succeeded: a failed one is counted in errors and nowhere else.  The
 * operation counters (reads … extents) count each request once.  With a
 * cache device (all zero in mode none) each successful READ is exactly
 * one of:
 *   hits      every byte came from the cache device (also a read of
 *             nothing, and a read that waited for another's miss of the
 *             same blocks (single-flight) and then found them cached);
 *   misses    at least one byte came from the backing store — a partial
 *             hit is a miss.
 * A miss is at most one of:
 *   bypasses (its read part) — a missed piece was kept out of the cache
 *             on purpose: the sequential cutoff, the cache ~95% pinned by
 *             dirty data and nodes, no clean space;
 *   promotions — not a bypass, and at least one missed block was
 *             inserted into the cache (a miss that lost a race with a
 *             writer is neither).
 * A WRITE or WRITE_ZEROES is a write bypass when its mode would have put
 * it into the cache (writeback, writethrough) but it went to the backing
 * store only: the sequential cutoff (WRITE only) or no room.  Writearound
 * never caches a write, so it has no write bypasses.  bypasses counts
 * read and write bypasses; sequential_bypasses those of them the cutoff
 * caused.  CACHE (prefetch) requests are counted in caches only.
 * INVARIANTS, exact whenever no request is in flight (a snapshot during
 * I/O may be off by the requests in flight; test-stats.c checks them):
 *   hits + misses == reads                          (with a cache device)
 *   promotions + (bypasses - write_bypasses) <= misses
 *   write_bypasses <= writes + zeroes;  0 in writearound
 *   sequential_bypasses <= bypasses
 *   hits == misses == promotions == bypasses == 0   (mode none; a
 *   detached export keeps what it counted while attached)
 */
struct ncache_stats {
  uint64_t reads, writes, flushes, trims, zeroes, caches, extents;
  uint64_t bytes_read, bytes_written;
  uint64_t errors;
  /* Cache device counters (above); zero in mode none. */
  uint64_t hits, misses, promotions, bypasses;
  uint64_t dirty_bytes;         /* this export's dirty data now */
  uint64_t dirty_zero_bytes;    /* this export's dirty zero extents now */
  uint64_t sequential_bypasses; /* bypasses the sequential cutoff caused */
  uint64_t writeback_bytes;     /* written back (data and zero extents) */
  uint64_t writeback_batches;
  uint64_t writeback_errors;    /* failed backing writes/flushes (retried) */
  uint64_t writeback_rate;      /* the controller's rate now, bytes/s */
  uint64_t writeback_target_bytes; /* its dirty target */
  uint64_t throttled_writes;    /* writes that waited at the dirty limit */
  uint64_t backing_trims_queued, backing_trim_batches,
    backing_trim_extents;       /* backing trims: queued, batches, issued */
  uint64_t write_bypasses;      /* the writes among bypasses */
};
void ncache_get_stats (struct ncache_export *nc, struct ncache_stats *stats);

/* Every field of struct ncache_stats, in struct order: X (name, log),
 * (tests and the benchmarks read "reads R writes W hits H misses M
 * promotions P bypasses B dirty_bytes D" off the log line, in that order),
 * log 1 if the shutdown log line shows it.  The control socket's JSON
 * lists every field, the log lines (ncache_log_stats) those with log 1.
 * A field added to the struct is added here (a static assert counts).
 */
#define NCACHE_STATS_FIELDS(X)                                          \
  X (reads, 1) X (writes, 1) X (flushes, 0) X (trims, 0) X (zeroes, 0)  \
  X (caches, 0) X (extents, 0) X (bytes_read, 0) X (bytes_written, 0)   \
  X (errors, 0) X (hits, 1) X (misses, 1) X (promotions, 1)             \
  X (bypasses, 1) X (dirty_bytes, 1) X (dirty_zero_bytes, 1)          \
  X (sequential_bypasses, 1) X (writeback_bytes, 1)                     \
  X (writeback_batches, 1) X (writeback_errors, 1) X (writeback_rate, 0) \
  X (writeback_target_bytes, 0) X (throttled_writes, 1)                 \
  X (backing_trims_queued, 0) X (backing_trim_batches, 1)               \
  X (backing_trim_extents, 0) X (write_bypasses, 0)

/* Log the export's counters on one info line ("export 'NAME': reads N
 * writes N ..."), the fields NCACHE_STATS_FIELDS marks.  Front ends call
 * it at shutdown.
 */
void ncache_log_stats (struct ncache_export *nc, const char *name);

/* A cache device's own counters (all exports on it). */
struct ncache_device_stats {
  uint64_t size_bytes, bucket_bytes;
  uint64_t buckets, free_buckets, data_buckets, btree_buckets,
    dirty_buckets, discard_pending_buckets;
  uint64_t live_bytes, dirty_bytes;
  uint64_t evictions;           /* clean buckets invalidated for space */
  uint64_t gc_runs, gc_freed_buckets, gc_stale_keys, gc_fixed_buckets;
  uint64_t moving_gc_runs, moving_gc_bytes;
  uint64_t moving_gc_nospc;     /* passes cut short: writes took the space */
  uint64_t discards, discard_batches, discard_errors; /* discards: buckets */
  uint64_t journal_commits, journal_entries, journal_keys,
    journal_waiters, journal_max_batch_waiters;
  uint64_t journal_inlined;     /* journal writes whose entries carried
                                   their data: one cache-device sync for
                                   a small FLUSH/FUA (nbdcache-format(5)
                                   Redo) */
  uint64_t btree_depth, btree_nodes_in_memory, btree_node_bytes_in_memory;
  uint64_t node_reads, node_writes;
  /* Data checksums (nbdcache-format(5)): 1 if the cache has them; blocks
   * found corrupt (each time one is read: a clean one is dropped and read
   * from the backing store, a dirty one fails its read with EIO and
   * stays dirty, never written back); checksum region pages written.
   */
  uint64_t data_checksums, corrupt_clean_blocks, corrupt_dirty_blocks,
    checksum_page_writes;
};
void ncache_device_get_stats (struct ncache_device *dev,
                              struct ncache_device_stats *stats);

/* Every field of struct ncache_device_stats, as NCACHE_STATS_FIELDS. */
#define NCACHE_DEVICE_STATS_FIELDS(X)                                   \
  X (size_bytes, 0) X (bucket_bytes, 0) X (buckets, 1)                  \
  X (free_buckets, 1) X (data_buckets, 0) X (btree_buckets, 0)          \
  X (dirty_buckets, 0) X (discard_pending_buckets, 0) X (live_bytes, 0) \
  X (dirty_bytes, 1) X (evictions, 1) X (gc_runs, 1)                    \
  X (gc_freed_buckets, 0) X (gc_stale_keys, 0) X (gc_fixed_buckets, 0)  \
  X (moving_gc_runs, 0) X (moving_gc_bytes, 1) X (moving_gc_nospc, 0)   \
  X (discards, 1) X (discard_batches, 1) X (discard_errors, 1)          \
  X (journal_commits, 1) X (journal_entries, 0) X (journal_keys, 0)     \
  X (journal_waiters, 0) X (journal_max_batch_waiters, 1)               \
  X (journal_inlined, 0)                                                \
  X (btree_depth, 0) X (btree_nodes_in_memory, 0)                       \
  X (btree_node_bytes_in_memory, 0) X (node_reads, 0) X (node_writes, 0) \
  X (data_checksums, 0) X (corrupt_clean_blocks, 1)                     \
  X (corrupt_dirty_blocks, 1) X (checksum_page_writes, 0)

/* The device's counters on one info line ("cache 'NAME': buckets N
 * free_buckets N ..."), the fields NCACHE_DEVICE_STATS_FIELDS marks.
 */
void ncache_device_log_stats (struct ncache_device *dev);
/* The device's name ([cache NAME]) as given at open. */
const char *ncache_device_name (const struct ncache_device *dev);

#endif /* NBDCACHE_CACHE_H */
