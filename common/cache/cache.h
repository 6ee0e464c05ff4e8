/* cache.h — THE public API of the nbdcache engine.
 *
 * WHAT: an export ("ncache") serves a byte range backed by a backing store
 * (common/backing) and, optionally, cached on a local SSD cache device
 * ("ncache_device") in one of four modes.  Front ends (nbdcached, the
 * nbdkit plugin) call only what is declared here.
 *
 * OWNS: an ncache owns its backing store (ncache_open takes ownership on
 * every path).  A cache device is shared by the exports opened on it and
 * must outlive them.
 *
 * THREADS: every function may block and is thread-safe; all connections of
 * an export share one ncache, so a flush covers writes from every one of
 * them (multi-conn).  Front ends never call the engine from an event loop.
 *
 * ERRORS: 0 or a negative errno.  The engine logs with context where the
 * error happens; callers only translate (to NBD errors, nbdkit_set_error).
 *   -EINVAL   malformed request or range (front ends check ranges first)
 *   -ENOSPC   write past the end
 *   -EPERM / -EROFS  write to a read-only export
 *   -ENOTSUP  FAST_ZERO that would not be fast; unsupported mode (for now)
 *   -EIO      backing or cache device failure
 *
 * ON DISK: nothing yet in mode none; the cache device format is described in
 * cache-internal.h and nbdcache-format(5) once the engine core lands.
 *
 * NOT HERE: NBD wire handling, TLS, sockets, config files.
 */
#ifndef NBDCACHE_CACHE_H
#define NBDCACHE_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct backing;
struct ncache;
struct ncache_device;

enum ncache_mode {
  NCACHE_MODE_NONE = 0,         /* straight to the backing store */
  NCACHE_MODE_WRITEBACK,
  NCACHE_MODE_WRITETHROUGH,
  NCACHE_MODE_WRITEAROUND,
};

/* "none|writeback|writethrough|writearound" <-> enum.  0 or -EINVAL. */
int ncache_mode_from_string (const char *s, enum ncache_mode *out);
const char *ncache_mode_name (enum ncache_mode mode);

/* ---- request flags ---- */
#define NCACHE_FUA       (1u << 0) /* pwrite/trim/zero: durable on return */
#define NCACHE_MAY_TRIM  (1u << 1) /* zero: may punch a hole (no NO_HOLE) */
#define NCACHE_FAST_ZERO (1u << 2) /* zero: fail -ENOTSUP unless fast */
#define NCACHE_REQ_ONE   (1u << 3) /* extents: one extent is enough */

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
};

/* 0 and *out set, or -errno (logged). */
int ncache_device_open (const struct ncache_device_config *cfg,
                        struct ncache_device **out);
/* NULL is a no-op.  All exports on the device must be closed first. */
void ncache_device_close (struct ncache_device *dev);

/* ---- exports ---- */
struct ncache_config {
  const char *name;             /* export name, for logs and stats */
  struct ncache_device *device; /* NULL = no cache device */
  enum ncache_mode mode;        /* must be NONE when device == NULL */
  bool readonly;
};

/* Open an export over a backing store.  Takes ownership of `backing` on
 * every path.  0 and *out set, or -errno (logged with the reason, e.g. a
 * mode the engine cannot serve).
 */
int ncache_open (const struct ncache_config *cfg, struct backing *backing,
                 struct ncache **out);
/* Commits what must be committed, closes the backing.  NULL is a no-op. */
void ncache_close (struct ncache *nc);

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
void ncache_get_caps (struct ncache *nc, struct ncache_caps *caps);

/* ---- requests: ranges must lie within [0, size) ---- */
int ncache_pread (struct ncache *nc, void *buf, size_t count,
                  uint64_t offset, uint32_t flags);
int ncache_pwrite (struct ncache *nc, const void *buf, size_t count,
                   uint64_t offset, uint32_t flags);
int ncache_flush (struct ncache *nc, uint32_t flags);
int ncache_trim (struct ncache *nc, uint64_t count, uint64_t offset,
                 uint32_t flags);
int ncache_zero (struct ncache *nc, uint64_t count, uint64_t offset,
                 uint32_t flags);
/* Prefetch into the cache device (no-op without one). */
int ncache_cache (struct ncache *nc, uint64_t count, uint64_t offset,
                  uint32_t flags);
int ncache_extents (struct ncache *nc, uint64_t count, uint64_t offset,
                    uint32_t flags, ncache_extent_fn fn, void *opaque);

/* ---- statistics ---- */
struct ncache_stats {
  uint64_t reads, writes, flushes, trims, zeroes, caches, extents;
  uint64_t bytes_read, bytes_written;
  uint64_t errors;
  /* Cache device counters; zero in mode none. */
  uint64_t hits, misses, bypasses, promotions, dirty_bytes;
};
void ncache_get_stats (struct ncache *nc, struct ncache_stats *stats);

#endif /* NBDCACHE_CACHE_H */
