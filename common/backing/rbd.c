/* SPDX-License-Identifier: BSD-3-Clause */
/* rbd.c — a backing store on a Ceph RBD image (librbd).
 *
 * WHAT: the backing ops (backing.h) over one RBD image named
 * "rbd:POOL/IMAGE", through librados + librbd's asynchronous API: every
 * call submits one rbd_aio_* request with a completion whose callback
 * (run on librbd's finisher thread) wakes the blocked caller, so as many
 * requests are in flight to the OSDs as the engine has threads calling.
 * Writes with BACKING_FUA carry LIBRADOS_OP_FLAG_FADVISE_FUA; zero is
 * rbd_aio_write_zeroes, trim rbd_aio_discard; extents come from
 * rbd_diff_iterate2 (allocated object extents; the gaps are holes that
 * read as zeros).
 * WHY: Ceph RBD is the scale-out block store users put an SSD cache in
 * front of; the engine must stay unaware of where its backing lives.
 *
 * INVARIANTS:
 * - librbd's own RAM cache is off (rbd_cache = false, set after ceph.conf
 *   is read, so a client ceph.conf cannot turn it on): nbdcache is the
 *   cache, and with librbd's cache off a completed write is on the OSDs'
 *   stable storage (Ceph acknowledges a write once it is committed), which
 *   is what makes BACKING_FUA and flush honest.
 * - b.uri is "rbd:POOL/IMAGE": no key, keyring or ceph.conf path.
 * - Every op is idempotent (backing.h); librados itself resends requests
 *   to a restarted or remapped OSD; rados_osd_op_timeout and
 *   rados_mon_op_timeout bound a request (backing_remote_options'
 *   timeout_ms, 30 s by default), after which it fails with -EIO.
 * - No flush epoch (unlike nbd.c and file.c): with librbd's cache off a
 *   write completes only once the OSDs have committed it to stable
 *   storage, and librados resends to a restarted OSD within the same
 *   request (an OSD that loses power replays its journal / WAL), so a
 *   completed write cannot be lost by a reconnection and flush vouches
 *   for nothing that was not durable already.  A flush failure is librbd's
 *   own and returned as is.
 *
 * THREADS AND LOCKS: any number of callers at once on one handle
 * (librbd's image handle is thread-safe).  Each call waits on its own
 * struct rbd_wait (mutex + condition); nothing is shared between calls.
 *
 * FAILURE: librbd's errors are returned as -errno and logged once with the
 * operation and range; a timeout is -EIO; a write-like op on a read-only
 * open is -EROFS.  Open fails (-errno, logged with what failed: the
 * cluster, the pool, the image) if the image cannot be opened: its size is
 * needed to serve anything.
 *
 * NOT HERE: snapshots, clones, namespaces, image creation; the remote
 * state for stats (backing_remote_get_state is the NBD driver's).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rados/librados.h>
#include <rbd/librbd.h>

#include "backing.h"
#include "log.h"

#define RBD_PREFIX           "rbd:"
#define DEFAULT_TIMEOUT_MS   30000
/* One extents query looks at no more than this: without the fast-diff
 * feature librbd lists every object of the range (4 MiB each).
 */
#define EXTENTS_MAX_BYTES    (64u << 20)
/* write_zeroes and discard take a size_t / uint64_t length; keep each
 * request a sane size for the OSD ops librbd fans it out into.
 */
#define BULK_MAX_BYTES       (1u << 30)

struct backing_rbd {
  struct backing b;             /* first: the common head */
  rados_t cluster;              /* NULL until created */
  rados_ioctx_t ioctx;          /* NULL until the pool is open */
  rbd_image_t image;            /* NULL until the image is open */
};

/* One caller's wait for one completion. */
struct rbd_wait {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  bool done;
  ssize_t ret;                  /* rbd_aio_get_return_value */
};

static const struct backing_ops rbd_ops;

static struct backing_rbd *
to_rbd (struct backing *b)
{
  return (struct backing_rbd *) b;
}

/* ---- asynchronous requests, waited for by their caller ---- */

/* librbd's finisher thread. */
static void
on_complete (rbd_completion_t c, void *arg)
{
  struct rbd_wait *w = arg;

  pthread_mutex_lock (&w->lock);
  w->ret = rbd_aio_get_return_value (c);
  w->done = true;
  pthread_cond_signal (&w->cond);
  pthread_mutex_unlock (&w->lock);
}

enum rbd_req { REQ_READ, REQ_WRITE, REQ_FLUSH, REQ_DISCARD, REQ_ZERO };

/* Submit one request and wait for it: 0 or -errno (not logged). */
static int
submit_wait (struct backing_rbd *r, enum rbd_req req, void *buf,
             uint64_t count, uint64_t offset, int op_flags)
{
  struct rbd_wait w = { .done = false };
  rbd_completion_t c;
  int e;

  pthread_mutex_init (&w.lock, NULL);
  pthread_cond_init (&w.cond, NULL);
  if ((e = rbd_aio_create_completion (&w, on_complete, &c)) < 0)
    goto out;
  switch (req) {
  case REQ_READ:
    e = rbd_aio_read2 (r->image, offset, count, buf, c, op_flags);
    break;
  case REQ_WRITE:
    e = rbd_aio_write2 (r->image, offset, count, buf, c, op_flags);
    break;
  case REQ_FLUSH:
    e = rbd_aio_flush (r->image, c);
    break;
  case REQ_DISCARD:
    e = rbd_aio_discard (r->image, offset, count, c);
    break;
  case REQ_ZERO:
    e = rbd_aio_write_zeroes (r->image, offset, count, c, 0, op_flags);
    break;
  }
  if (e < 0) {
    rbd_aio_release (c);
    goto out;
  }
  pthread_mutex_lock (&w.lock);
  while (!w.done)
    pthread_cond_wait (&w.cond, &w.lock);
  pthread_mutex_unlock (&w.lock);
  rbd_aio_release (c);
  if (w.ret < 0)
    e = (int) w.ret;
  else if (req == REQ_READ && (uint64_t) w.ret != count)
    e = -EIO;                   /* short read inside the image */
  else
    e = 0;
 out:
  pthread_cond_destroy (&w.cond);
  pthread_mutex_destroy (&w.lock);
  /* The contract's timeout error is -EIO (librados says -ETIMEDOUT). */
  return e == -ETIMEDOUT ? -EIO : e;
}

static int
log_failure (struct backing_rbd *r, const char *what, uint64_t count,
             uint64_t offset, int e)
{
  log_error ("backing %s: %s of %" PRIu64 " bytes at %" PRIu64 ": %s",
             r->b.uri, what, count, offset, strerror (-e));
  return e;
}

static int
refuse_readonly (struct backing_rbd *r, const char *what, uint64_t count,
                 uint64_t offset)
{
  log_error ("backing %s: %s of %" PRIu64 " bytes at %" PRIu64
             ": the image is open read-only", r->b.uri, what, count, offset);
  return -EROFS;
}

/* ---- the ops ---- */

static int
rbd_pread_op (struct backing *b, void *buf, size_t count, uint64_t offset)
{
  struct backing_rbd *r = to_rbd (b);
  int e;

  if (count == 0)
    return 0;
  e = submit_wait (r, REQ_READ, buf, count, offset, 0);
  return e < 0 ? log_failure (r, "read", count, offset, e) : 0;
}

static int
rbd_pwrite_op (struct backing *b, const void *buf, size_t count,
               uint64_t offset, uint32_t flags)
{
  struct backing_rbd *r = to_rbd (b);
  int op_flags = flags & BACKING_FUA ? LIBRADOS_OP_FLAG_FADVISE_FUA : 0;
  int e;

  if (b->readonly)
    return refuse_readonly (r, "write", count, offset);
  if (count == 0)
    return 0;
  e = submit_wait (r, REQ_WRITE, (void *) buf, count, offset, op_flags);
  return e < 0 ? log_failure (r, "write", count, offset, e) : 0;
}

static int
rbd_flush_op (struct backing *b)
{
  struct backing_rbd *r = to_rbd (b);
  int e;

  if (b->readonly)
    return 0;
  e = submit_wait (r, REQ_FLUSH, NULL, 0, 0, 0);
  return e < 0 ? log_failure (r, "flush", 0, 0, e) : 0;
}

/* A bulk request (discard, zero) in pieces of at most BULK_MAX_BYTES. */
static int
bulk (struct backing_rbd *r, enum rbd_req req, uint64_t count,
      uint64_t offset, int op_flags)
{
  while (count > 0) {
    uint64_t n = count < BULK_MAX_BYTES ? count : BULK_MAX_BYTES;
    int e = submit_wait (r, req, NULL, n, offset, op_flags);

    if (e < 0)
      return e;
    count -= n;
    offset += n;
  }
  return 0;
}

static int
rbd_trim_op (struct backing *b, uint64_t count, uint64_t offset,
             uint32_t flags)
{
  struct backing_rbd *r = to_rbd (b);
  int e;

  if (b->readonly)
    return refuse_readonly (r, "trim", count, offset);
  e = bulk (r, REQ_DISCARD, count, offset, 0);
  if (e == 0 && (flags & BACKING_FUA))
    e = submit_wait (r, REQ_FLUSH, NULL, 0, 0, 0);
  return e < 0 ? log_failure (r, "trim", count, offset, e) : 0;
}

/* write_zeroes never writes data: it discards whole objects and zeroes
 * (truncates) the partial ones, so BACKING_FAST can always be honoured.
 */
static int
rbd_zero_op (struct backing *b, uint64_t count, uint64_t offset,
             uint32_t flags)
{
  struct backing_rbd *r = to_rbd (b);
  int op_flags = flags & BACKING_FUA ? LIBRADOS_OP_FLAG_FADVISE_FUA : 0;
  int e;

  if (b->readonly)
    return refuse_readonly (r, "zero", count, offset);
  e = bulk (r, REQ_ZERO, count, offset, op_flags);
  return e < 0 ? log_failure (r, "zero", count, offset, e) : 0;
}

/* ---- extents: rbd_diff_iterate2's allocated extents, gaps are holes ---- */

struct rbd_span {
  uint64_t start, end;
};

struct rbd_spans {
  struct rbd_span *v;
  size_t len, cap;
  int error;
};

static int
collect_span (uint64_t offset, size_t length, int exists, void *opaque)
{
  struct rbd_spans *s = opaque;

  if (!exists || length == 0)
    return 0;                   /* a hole: the gaps are holes anyway */
  if (s->len == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 16;
    struct rbd_span *v = realloc (s->v, cap * sizeof *v);

    if (v == NULL) {
      s->error = -ENOMEM;
      return -ENOMEM;
    }
    s->v = v;
    s->cap = cap;
  }
  s->v[s->len++] = (struct rbd_span) { offset, offset + length };
  return 0;
}

static int
compare_span (const void *a, const void *b)
{
  const struct rbd_span *x = a, *y = b;

  return x->start < y->start ? -1 : x->start > y->start;
}

static int
rbd_extents_op (struct backing *b, uint64_t count, uint64_t offset,
                backing_extent_fn fn, void *opaque)
{
  struct backing_rbd *r = to_rbd (b);
  struct rbd_spans s = { .v = NULL };
  uint64_t end, pos;
  size_t i;
  int e;

  if (count > EXTENTS_MAX_BYTES)
    count = EXTENTS_MAX_BYTES;
  end = offset + count;
  e = rbd_diff_iterate2 (r->image, NULL, offset, count, 1, 0, collect_span,
                         &s);
  if (s.error < 0)
    e = s.error;
  if (e < 0) {
    free (s.v);
    return log_failure (r, "extents", count, offset,
                        e == -ETIMEDOUT ? -EIO : e);
  }
  /* The callbacks need not come in order, and may touch or overlap. */
  if (s.len > 1)
    qsort (s.v, s.len, sizeof *s.v, compare_span);
  pos = offset;
  e = 0;
  for (i = 0; i < s.len && pos < end && e == 0; i++) {
    uint64_t start = s.v[i].start < pos ? pos : s.v[i].start;
    uint64_t stop = s.v[i].end;

    while (i + 1 < s.len && s.v[i + 1].start <= stop) {
      if (s.v[i + 1].end > stop)
        stop = s.v[i + 1].end;
      i++;
    }
    if (stop > end)
      stop = end;
    if (stop <= start)
      continue;
    if (start > pos)
      e = fn (opaque, pos, start - pos,
              BACKING_EXTENT_HOLE | BACKING_EXTENT_ZERO);
    if (e == 0)
      e = fn (opaque, start, stop - start, 0);
    pos = stop;
  }
  if (e == 0 && pos < end)
    e = fn (opaque, pos, end - pos, BACKING_EXTENT_HOLE | BACKING_EXTENT_ZERO);
  free (s.v);
  return e < 0 ? e : 0;
}

/* ---- open and close ---- */

static void
free_rbd (struct backing_rbd *r)
{
  if (r->image != NULL)
    rbd_close (r->image);
  if (r->ioctx != NULL)
    rados_ioctx_destroy (r->ioctx);
  if (r->cluster != NULL)
    rados_shutdown (r->cluster);
  free (r->b.uri);
  free (r);
}

static void
rbd_close_op (struct backing *b)
{
  struct backing_rbd *r = to_rbd (b);

  if (r->image != NULL && !b->readonly)
    (void) rbd_flush (r->image);
  free_rbd (r);
}

int
backing_rbd_parse_uri (const char *uri, char **pool_out, char **image_out)
{
  const char *spec, *slash;
  char *pool, *image;

  if (!backing_rbd_uri_valid (uri))
    return -EINVAL;
  spec = uri + strlen (RBD_PREFIX);
  slash = strchr (spec, '/');
  if ((pool = strndup (spec, (size_t) (slash - spec))) == NULL)
    return -ENOMEM;
  if ((image = strdup (slash + 1)) == NULL) {
    free (pool);
    return -ENOMEM;
  }
  *pool_out = pool;
  *image_out = image;
  return 0;
}

static int
conf_set (struct backing_rbd *r, const char *key, const char *value)
{
  int e = rados_conf_set (r->cluster, key, value);

  if (e < 0)
    log_error ("backing %s: ceph option %s: %s", r->b.uri, key,
               strerror (-e));
  return e;
}

/* Create the cluster handle and read its configuration. */
static int
configure (struct backing_rbd *r, const struct backing_open_options *opts)
{
  const struct backing_ceph_options *co = &opts->ceph;
  uint32_t timeout_ms = opts->remote.timeout_ms ? opts->remote.timeout_ms
    : DEFAULT_TIMEOUT_MS;
  char secs[32];
  int e;

  if ((e = rados_create (&r->cluster, co->id)) < 0) {
    r->cluster = NULL;
    log_error ("backing %s: cannot create a Ceph client%s%s: %s", r->b.uri,
               co->id ? " for id " : "", co->id ? co->id : "",
               strerror (-e));
    return e;
  }
  /* The explicit file must be read; the default search ($CEPH_CONF,
   * /etc/ceph/ceph.conf, ~/.ceph/config, ./ceph.conf) may find nothing,
   * and then the mon addresses must come from elsewhere (CEPH_ARGS).
   */
  e = rados_conf_read_file (r->cluster, co->conf);
  if (e < 0 && co->conf != NULL) {
    log_error ("backing %s: ceph.conf %s: %s", r->b.uri, co->conf,
               strerror (-e));
    return e;
  }
  if ((e = rados_conf_parse_env (r->cluster, NULL)) < 0) {
    log_error ("backing %s: CEPH_ARGS: %s", r->b.uri, strerror (-e));
    return e;
  }
  if (co->keyring != NULL && (e = conf_set (r, "keyring", co->keyring)) < 0)
    return e;
  if (co->key != NULL && (e = conf_set (r, "key", co->key)) < 0)
    return e;
  if ((e = conf_set (r, "rbd_cache", "false")) < 0)
    return e;
  snprintf (secs, sizeof secs, "%" PRIu32, (timeout_ms + 999) / 1000);
  if ((e = conf_set (r, "rados_osd_op_timeout", secs)) < 0 ||
      (e = conf_set (r, "rados_mon_op_timeout", secs)) < 0 ||
      (e = conf_set (r, "client_mount_timeout", secs)) < 0)
    return e;
  return 0;
}

int
backing_rbd_open (const char *uri, const struct backing_open_options *opts,
                  struct backing **out)
{
  static const struct backing_open_options defaults;
  struct backing_rbd *r;
  char *pool = NULL, *image = NULL;
  uint64_t size;
  int e;

  if (opts == NULL)
    opts = &defaults;
  if ((e = backing_rbd_parse_uri (uri, &pool, &image)) < 0) {
    if (e == -EINVAL)
      log_error ("backing %s: expected rbd:POOL/IMAGE", uri);
    return e;
  }
  if ((r = calloc (1, sizeof *r)) == NULL) {
    e = -ENOMEM;
    goto out;
  }
  r->b.ops = &rbd_ops;
  if ((r->b.uri = strdup (uri)) == NULL) {
    e = -ENOMEM;
    goto err;
  }
  if ((e = configure (r, opts)) < 0)
    goto err;
  if ((e = rados_connect (r->cluster)) < 0) {
    log_error ("backing %s: cannot connect to the Ceph cluster: %s",
               r->b.uri, strerror (-e));
    goto err;
  }
  if ((e = rados_ioctx_create (r->cluster, pool, &r->ioctx)) < 0) {
    r->ioctx = NULL;
    log_error ("backing %s: pool '%s': %s", r->b.uri, pool,
               e == -ENOENT ? "no such pool" : strerror (-e));
    goto err;
  }
  e = opts->readonly
    ? rbd_open_read_only (r->ioctx, image, &r->image, NULL)
    : rbd_open (r->ioctx, image, &r->image, NULL);
  if (e < 0) {
    r->image = NULL;
    log_error ("backing %s: image '%s' in pool '%s': %s", r->b.uri, image,
               pool, e == -ENOENT ? "no such image" : strerror (-e));
    goto err;
  }
  if ((e = rbd_get_size (r->image, &size)) < 0) {
    log_error ("backing %s: size: %s", r->b.uri, strerror (-e));
    goto err;
  }
  r->b.size_bytes = size;
  r->b.readonly = opts->readonly;
  r->b.can_trim = !opts->readonly;
  r->b.can_zero = !opts->readonly;
  r->b.can_fast_zero = !opts->readonly;
  r->b.can_extents = true;
  log_info ("backing %s: %" PRIu64 " bytes%s, librbd cache off",
            r->b.uri, size, opts->readonly ? ", read-only" : "");
  *out = &r->b;
  e = 0;
  goto out;

 err:
  free_rbd (r);
 out:
  free (pool);
  free (image);
  return e == -ETIMEDOUT ? -EIO : e;
}

static const struct backing_ops rbd_ops = {
  .name = "rbd",
  .pread = rbd_pread_op,
  .pwrite = rbd_pwrite_op,
  .flush = rbd_flush_op,
  .trim = rbd_trim_op,
  .zero = rbd_zero_op,
  .extents = rbd_extents_op,
  .close = rbd_close_op,
};
