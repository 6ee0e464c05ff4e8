/* SPDX-License-Identifier: BSD-3-Clause */
/* backing.h — the backing-store driver contract.
 *
 * WHAT: one ops table that every backing store implements (a local file or
 * block device, a remote NBD server, a Ceph RBD image; an in-memory
 * store and a fault-injecting store for tests), and the functions that open
 * one from a URI.
 * WHY: the engine holds the authoritative data on the backing store and must
 * not care what kind it is.
 *
 * CONTRACT (every driver):
 * - Every call may block (except pread_nowait) and must be safe to call
 *   from many threads at once on the same handle (no hidden file-position
 *   state: pread/pwrite).
 * - pread_nowait is optional (NULL: never possible): the read only if the
 *   data can be had without waiting (a file's page cache), else -EAGAIN,
 *   logging nothing; the caller then calls pread, which reports real
 *   errors.  It lets an event loop serve a read without a thread hand-off.
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
 * - Every op is idempotent (the same call twice leaves the same state), so
 *   a remote driver resends what a lost connection interrupted and fails
 *   with -EIO only after its timeout (backing_remote_options.timeout_ms);
 *   callers must not rely on an op failing fast while a remote is away.
 *
 * NOT HERE: caching, range checks against the export's size, NBD errors.
 */
#ifndef NBDCACHE_BACKING_H
#define NBDCACHE_BACKING_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Flags for pwrite / trim / zero. */
#define BACKING_FUA      (1u << 0)
#define BACKING_MAY_TRIM (1u << 1) /* zero: may deallocate */
#define BACKING_FAST     (1u << 2) /* zero: only if fast, else -ENOTSUP */

/* Extent flags (the same bits as NBD's base:allocation). */
#define BACKING_EXTENT_HOLE (1u << 0)
#define BACKING_EXTENT_ZERO (1u << 1)

struct backing;
struct backing_remote_state;
struct backing_identity;

typedef int (*backing_extent_fn) (void *opaque, uint64_t offset,
                                  uint64_t length, uint32_t flags);

struct backing_ops {
  const char *name;             /* "file", "memory", "faulty" … */
  int (*pread) (struct backing *b, void *buf, size_t count, uint64_t offset);
  int (*pread_nowait) (struct backing *b, void *buf, size_t count,
                       uint64_t offset);  /* optional, see CONTRACT */
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
  /* A remote driver's connection state (backing_remote_get_state); NULL
   * for a local store.  Must not block on the remote.
   */
  int (*remote_state) (struct backing *b, struct backing_remote_state *out);
  /* What identifies the store (backing_identify); NULL: its uri. */
  int (*identify) (struct backing *b, bool tag,
                   struct backing_identity *out);
};

/* What identifies a backing store, whatever its path (the cache's export
 * table records it: nbdcache-format(5)).
 */
enum backing_id_kind {
  BACKING_ID_URI,               /* no better identity: the uri */
  BACKING_ID_FILE,              /* a regular file */
  BACKING_ID_BLOCK,             /* a block device */
};
struct backing_identity {
  enum backing_id_kind kind;
  uint64_t dev, ino;            /* FILE: st_dev, st_ino */
  bool has_btime;               /* FILE: birth time known (statx) */
  int64_t btime_sec;
  uint32_t btime_nsec;
  bool has_uuid;                /* FILE: the xattr user.nbdcache.id */
  uint8_t uuid[16];
  int xattr_err;                /* FILE, !has_uuid: 0 (none set yet) or
                                   -errno why it cannot be read or set
                                   (-ENOTSUP: the filesystem has no user
                                   xattrs; -EACCES, -EPERM, -EROFS) */
  char devid[64];               /* BLOCK: "wwid:…", "serial:…", "dm:…",
                                   "md:…", "loop:DEV:INO:BTIME[+OFF]"
                                   (with ":partN" for a partition) or
                                   "devt:MAJ:MIN" */
};
#define BACKING_ID_XATTR "user.nbdcache.id"

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

/* How to reach a remote (nbd:// …) backing; local drivers ignore it.
 * Zero / NULL fields mean the default.  Strings are copied at open.
 */
struct backing_remote_options {
  unsigned connections;         /* 0 = 4 if the remote offers multi-conn,
                                   else 1 */
  uint32_t timeout_ms;          /* per request, retries included;
                                   0 = 30000 */
  const char *tls_certificates; /* X.509 directory (ca-cert.pem …) */
  bool tls_no_verify;           /* do not verify the remote's certificate */
  const char *tls_psk_file;     /* PSK keys file (psktool format) */
  const char *tls_username;     /* PSK user; NULL = the URI's user or
                                   the local login name */
};

/* How to reach a Ceph cluster for an rbd:POOL/IMAGE backing; other
 * drivers ignore it.  NULL fields mean librados' defaults.  Strings are
 * copied at open (by librados).
 */
struct backing_ceph_options {
  const char *conf;             /* ceph.conf; NULL = $CEPH_CONF, then
                                   /etc/ceph/ceph.conf … */
  const char *id;               /* client id without "client."; NULL =
                                   "admin" */
  const char *keyring;          /* keyring file; NULL = ceph.conf's */
  const char *key;              /* the key itself (base64): a secret */
};

struct backing_open_options {
  bool readonly;
  /* File backings are locked for the life of the handle (whole-file OFD
   * lock: exclusive when writable, shared when read-only; a conflicting
   * opener gets -EBUSY).  share = true takes no lock, so the handle may
   * sit next to a writer; it is refused (-EINVAL) unless readonly.
   */
  bool share;
  /* If the store does not exist, create it sparse with this size (bytes).
   * 0 means it must already exist.  An existing file is never resized.
   */
  uint64_t create_size_bytes;
  struct backing_remote_options remote; /* timeout_ms: rbd too */
  struct backing_ceph_options ceph;
};

/* The connection state of a remote backing, for stats and logs. */
struct backing_remote_state {
  unsigned connections;         /* configured */
  unsigned connected;           /* of them, up now */
  int64_t down_since_s;         /* wall clock (time(2)) since when no
                                   connection has been up; 0 while at
                                   least one is */
  uint64_t reconnect_attempts;  /* since open, all connections */
  uint64_t retried_requests;    /* requests resent after a lost connection */
  uint64_t timed_out_requests;  /* requests failed with EIO on timeout */
};

/* Open by URI: "file:///path", a plain path (file), "memory:SIZE" (bytes,
 * with optional K/M/G/T suffix), or a libnbd URI (nbd://, nbds://,
 * nbd+unix://, nbds+unix://) for the remote NBD driver, or rbd:POOL/IMAGE
 * for the Ceph RBD driver.
 * 0 and *out set, or -errno (logged).
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
int backing_nbd_open (const char *uri, const struct backing_open_options *opts,
                      struct backing **out);
int backing_rbd_open (const char *uri, const struct backing_open_options *opts,
                      struct backing **out);

/* Tests only (test-backing-rbd.c): call the object class method
 * cls.method with input in on the rbd backing b's image header object,
 * as b's own Ceph client.  0 or -errno.
 */
int backing_rbd_test_exec_on_header (struct backing *b, const char *cls,
                                     const char *method, const char *in,
                                     size_t in_len);

/* Split "rbd:POOL/IMAGE" (both non-empty, no further '/' or '@'):
 * 0 with *pool and *image malloc'ed, -EINVAL, or -ENOMEM.
 */
int backing_rbd_parse_uri (const char *uri, char **pool, char **image);

/* True if uri names a Ceph RBD image (rbd:…). */
static inline bool
backing_is_rbd_uri (const char *uri)
{
  return strncmp (uri, "rbd:", 4) == 0;
}

/* True if an rbd: uri is well formed: rbd:POOL/IMAGE, both non-empty, no
 * further '/' (namespaces) or '@' (snapshots).  Inline for the config
 * parser, as above.
 */
static inline bool
backing_rbd_uri_valid (const char *uri)
{
  const char *spec = uri + 4, *slash;

  if (!backing_is_rbd_uri (uri) || (slash = strchr (spec, '/')) == NULL)
    return false;
  return slash != spec && slash[1] != '\0' &&
    strchr (slash + 1, '/') == NULL && strchr (spec, '@') == NULL;
}

/* True if uri names a remote backing (a libnbd URI scheme).  Inline so
 * that the config parser can tell without linking the drivers.
 */
static inline bool
backing_is_remote_uri (const char *uri)
{
  static const char *const schemes[] = {
    "nbd://", "nbds://", "nbd+unix://", "nbds+unix://",
    "nbd+vsock://", "nbds+vsock://",
  };
  size_t i;

  for (i = 0; i < sizeof schemes / sizeof schemes[0]; i++)
    if (strncmp (uri, schemes[i], strlen (schemes[i])) == 0)
      return true;
  return false;
}

/* True if uri asks for TLS (nbds://, nbds+unix://, nbds+vsock://). */
static inline bool
backing_is_tls_uri (const char *uri)
{
  return strncmp (uri, "nbds://", 7) == 0 || strncmp (uri, "nbds+", 5) == 0;
}

/* The connection state of a remote backing (NBD or RBD, through the
 * driver's remote_state op): 0, or -ENOTSUP for a local one.  Safe from
 * any thread while b is open; never waits for the remote.
 */
int backing_remote_get_state (struct backing *b,
                              struct backing_remote_state *out);
/* "file://" + the absolute form of path (file.c); NULL if out of memory. */
char *backing_file_uri (const char *path);

/* What identifies b (see struct backing_identity).  tag: for a regular
 * file without user.nbdcache.id, set a new random one first (if that
 * fails, has_uuid stays false and xattr_err says why; not an error).
 * 0, or -errno from fstat.
 */
int backing_identify (struct backing *b, bool tag,
                      struct backing_identity *out);
/* The file driver's identify, on an open fd (file-identity.c). */
int backing_fd_identify (int fd, bool tag, struct backing_identity *out);

/* NULL is a no-op. */
void backing_close (struct backing *b);

/* Thin dispatchers, for readability at call sites. */
static inline int
backing_pread (struct backing *b, void *buf, size_t count, uint64_t offset)
{ return b->ops->pread (b, buf, count, offset); }
/* 0, or -EAGAIN when the data cannot be had without waiting. */
static inline int
backing_pread_nowait (struct backing *b, void *buf, size_t count,
                      uint64_t offset)
{
  return b->ops->pread_nowait ? b->ops->pread_nowait (b, buf, count, offset)
                              : -EAGAIN;
}
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
