/* backing.h — the backing-store driver contract.
 *
 * WHAT: one ops table that every backing store implements (a local file or
 * block device today; a remote NBD server and Ceph RBD later; an in-memory
 * store and a fault-injecting store for tests), and the functions that open
 * one from a URI.
 * WHY: the engine holds the authoritative data on the backing store and must
 * not care what kind it is.
 *
 * CONTRACT (every driver):
 * - Every call may block and must be safe to call from many threads at
 *   once on the same handle (no hidden file-position state: pread/pwrite).
 * - Return 0 on success or a negative errno; a driver logs the failure once
 *   with its context (path, offset) before returning it.
 * - pread/pwrite transfer exactly count bytes or fail (short transfers are
 *   looped inside the driver; EOF inside the store's size is -EIO).
 * - Callers never pass a range outside [0, size_bytes): the engine checks
 *   ranges before calling.  Drivers may still refuse with -EINVAL.
 * - BACKING_FUA: the data is durable before the call returns.
 * - flush: everything completed before the call is durable after it.
 * - trim: advisory; afterwards the range reads as its old data or zeros.
 *   A driver that cannot trim sets can_trim = false and returns 0 anyway.
 * - zero: afterwards the range reads as zeros.  BACKING_MAY_TRIM allows
 *   deallocation; BACKING_FAST means "only if it is fast (no data writes),
 *   else return -ENOTSUP at once, changing nothing".
 * - extents: reports, in order and without gaps, extents starting at offset
 *   covering at least one byte, via the callback; the callback returns 0 to
 *   continue, >0 to stop early, <0 to fail with that error.
 *   A driver without allocation information reports one allocated extent.
 * - close: releases everything; never fails visibly.
 *
 * NOT HERE: caching, range checks against the export's size, NBD errors.
 */
#ifndef NBDCACHE_BACKING_H
#define NBDCACHE_BACKING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Flags for pwrite / trim / zero. */
#define BACKING_FUA      (1u << 0)
#define BACKING_MAY_TRIM (1u << 1) /* zero: may deallocate */
#define BACKING_FAST     (1u << 2) /* zero: only if fast, else -ENOTSUP */

/* Extent flags (the same bits as NBD's base:allocation). */
#define BACKING_EXTENT_HOLE (1u << 0)
#define BACKING_EXTENT_ZERO (1u << 1)

struct backing;

typedef int (*backing_extent_fn) (void *opaque, uint64_t offset,
                                  uint64_t length, uint32_t flags);

struct backing_ops {
  const char *name;             /* "file", "memory", "faulty" … */
  int (*pread) (struct backing *b, void *buf, size_t count, uint64_t offset);
  int (*pwrite) (struct backing *b, const void *buf, size_t count,
                 uint64_t offset, uint32_t flags);
  int (*flush) (struct backing *b);
  int (*trim) (struct backing *b, uint64_t count, uint64_t offset,
               uint32_t flags);
  int (*zero) (struct backing *b, uint64_t count, uint64_t offset,
               uint32_t flags);
  int (*extents) (struct backing *b, uint64_t count, uint64_t offset,
                  backing_extent_fn fn, void *opaque);
  void (*close) (struct backing *b);
};

/* The common head of every driver's handle.  Drivers embed it first. */
struct backing {
  const struct backing_ops *ops;
  char *uri;                    /* identity, e.g. "file:///srv/disk.img" */
  uint64_t size_bytes;
  bool readonly;                /* opened read-only: pwrite/trim/zero fail */
  bool can_trim;                /* trim really deallocates */
  bool can_zero;                /* zero is efficient (no data written) */
  bool can_fast_zero;           /* zero with BACKING_FAST can succeed */
  bool can_extents;             /* extents reports real holes/zeros */
  bool is_block_device;
};

struct backing_open_options {
  bool readonly;
  /* If the store does not exist, create it sparse with this size (bytes).
   * 0 means it must already exist.  An existing file is never resized.
   */
  uint64_t create_size_bytes;
};

/* Open by URI: "file:///path", a plain path (file), "memory:SIZE" (bytes,
 * with optional K/M/G/T suffix).  0 and *out set, or -errno (logged).
 */
int backing_open (const char *uri, const struct backing_open_options *opts,
                  struct backing **out);

/* The uri a store opened from `location` (as backing_open takes it) will
 * have: for a file, "file://" + its absolute path (struct backing's uri);
 * NULL for other kinds.  0 and *out set (caller frees), or -ENOMEM.
 * Lets a caller ask about a store before opening (or creating) it.
 */
int backing_location_uri (const char *location, char **out);

/* Drivers, callable directly. */
int backing_file_open (const char *path, const struct backing_open_options *opts,
                       struct backing **out);
int backing_memory_create (uint64_t size_bytes, struct backing **out);
/* "file://" + the absolute form of path (file.c); NULL if out of memory. */
char *backing_file_uri (const char *path);

/* NULL is a no-op. */
void backing_close (struct backing *b);

/* Thin dispatchers, for readability at call sites. */
static inline int
backing_pread (struct backing *b, void *buf, size_t count, uint64_t offset)
{ return b->ops->pread (b, buf, count, offset); }
static inline int
backing_pwrite (struct backing *b, const void *buf, size_t count,
                uint64_t offset, uint32_t flags)
{ return b->ops->pwrite (b, buf, count, offset, flags); }
static inline int
backing_flush (struct backing *b)
{ return b->ops->flush (b); }
static inline int
backing_trim (struct backing *b, uint64_t count, uint64_t offset, uint32_t flags)
{ return b->ops->trim (b, count, offset, flags); }
static inline int
backing_zero (struct backing *b, uint64_t count, uint64_t offset, uint32_t flags)
{ return b->ops->zero (b, count, offset, flags); }
static inline int
backing_extents (struct backing *b, uint64_t count, uint64_t offset,
                 backing_extent_fn fn, void *opaque)
{ return b->ops->extents (b, count, offset, fn, opaque); }

#endif /* NBDCACHE_BACKING_H */
