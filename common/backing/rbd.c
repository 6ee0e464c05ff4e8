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
 *   to a restarted or remapped OSD.  A request fails with -EIO once it
 *   has had no answer for backing_timeout (backing_remote_options'
 *   timeout_ms, 30 s by default), bounded twice: librados'
 *   rados_osd_op_timeout / rados_mon_op_timeout / client_mount_timeout
 *   (whole seconds, rounded up), and our own timed wait on every
 *   completion, because librbd also queues requests where librados'
 *   timeouts do not reach (waiting for the exclusive lock, a refresh).
 * - A caller that stops waiting never lets librbd touch its buffer: data
 *   goes through a bounce buffer that belongs to the request (struct
 *   rbd_req), and the request is freed by whichever comes last, the
 *   caller or the completion.
 * - The write barrier: a write, trim or zero whose caller timed out may
 *   still land when the cluster comes back.  Until its completion has
 *   come, no request is submitted (each waits, within its own timeout):
 *   so a late write can neither overwrite data written back after it,
 *   nor change data a read after it has put in the cache, nor slip past
 *   a flush.  The engine treats the failed write as not done (the range
 *   reads as old or new data, as after any failed write) and writes its
 *   dirty data again.
 * - Our own stale exclusive lock: librbd takes the image's exclusive lock
 *   (cls lock "rbd_lock" on the header object) before its first write.
 *   If the OSD applies that lock request but its reply is lost (the OSD
 *   dies, or librados' op timeout fires first), the lock stays held by
 *   this very client on the OSD while librbd believes it does not hold
 *   it: every later acquire fails (the same cookie: EEXIST; another
 *   cookie of ours: librbd refuses to break, i.e. blocklist, its own
 *   lock, EINVAL), and so does every write, for good (seen with Ceph
 *   16.2 after an OSD restart).  So when a write-like request fails with
 *   an error that is not a timeout, and librbd says it does not own the
 *   lock, the lockers of the header are listed on the OSD; a lock held by
 *   our own client instance (rados_get_instance_id) is ours and stale, it
 *   is released (rados_unlock with its cookie, logged), and the request
 *   is tried once more.  A lock held by any other client is never
 *   touched: librbd's own break logic owns that case.  The window where
 *   this could release a lock librbd has just taken (an acquire that
 *   succeeded while another request failed for another reason, librbd
 *   not yet calling itself the owner) needs a second writer to matter;
 *   nbdcache requires the image for itself.
 * - Reachability (for stats, backing_remote_get_state): "down" from the
 *   first request that timed out until any request or probe is answered.
 *   While down, a prober thread stats the image's header object once a
 *   second (each bounded by the timeout) and counts those probes as
 *   reconnect attempts; librados reconnects by itself.
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
 * struct rbd_req (mutex + condition, shared only with its completion).
 * state_lock guards the reachability fields; it is never held across a
 * librbd / librados call.  lock_fix_lock serialises the release of our
 * own stale exclusive lock; it is held across librados calls (each
 * bounded by backing_timeout) and never with state_lock held.  One
 * prober thread per handle, joined at close.
 *
 * FAILURE: librbd's errors are returned as -errno and logged once with the
 * operation and range; a timeout is -EIO (logged as such); a write-like
 * op on a read-only open is -EROFS.  Open fails (-errno, logged with what
 * failed: the cluster, the pool, the image) if the image cannot be
 * opened: its size is needed to serve anything.  A cluster that does not
 * answer at open fails it after backing_timeout (librados retries the
 * monitors meanwhile, so one starting alongside is fine) per step:
 * connecting, then opening the image.
 *
 * NOT HERE: snapshots, clones, namespaces, image creation.
 */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <rados/librados.h>
#include <rbd/librbd.h>

#include "backing.h"
#include "clock.h"
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
/* While the cluster does not answer, one probe per this. */
#define PROBE_INTERVAL_MS    1000u
/* librbd's exclusive lock: the cls lock of this name on the header. */
#define RBD_LOCK_NAME        "rbd_lock"
/* Room for rados_list_lockers' answer (a few lockers at most). */
#define LOCKERS_BUF_BYTES    4096

struct backing_rbd {
  struct backing b;             /* first: the common head */
  rados_t cluster;              /* NULL until created */
  rados_ioctx_t ioctx;          /* NULL until the pool is open */
  rbd_image_t image;            /* NULL until the image is open */
  uint32_t timeout_ms;          /* backing_timeout: one request's bound */
  char *probe_oid;              /* the image's header object; NULL until
                                   the image is open */

  pthread_mutex_t lock_fix_lock; /* serialises release_own_stale_lock */

  /* Reachability, for stats (backing_remote_get_state) and the prober. */
  pthread_mutex_t state_lock;
  pthread_cond_t state_cond;    /* CLOCK_MONOTONIC; wakes the prober */
  int64_t down_since_s;         /* time(2) of the first unanswered request
                                   since the last answer; 0 = answering */
  uint64_t probes;              /* probes sent while down (reconnect
                                   attempts) */
  uint64_t timed_out;           /* requests failed with EIO on timeout */
  unsigned abandoned_writes;    /* write-like requests whose caller timed
                                   out, still in librbd's hands: no request
                                   is submitted until they are done */
  bool closing;                 /* the prober must exit */
  bool prober_started;          /* prober is joinable */
  pthread_t prober;
};

/* One request to librbd or librados, waited for by its caller for at
 * most timeout_ms.  On the heap: a caller that gives up marks it
 * abandoned and the completion (which librbd / librados always delivers,
 * however late) frees it.  Data moves through buf, which the request
 * owns, never through the caller's buffer: a late completion cannot write
 * into (or read from) memory the caller has since reused.
 */
struct rbd_req {
  pthread_mutex_t lock;
  pthread_cond_t cond;          /* CLOCK_MONOTONIC */
  bool done;                    /* the completion ran */
  bool abandoned;               /* the caller left: the completion frees */
  struct backing_rbd *writer;   /* write-like: counted in its
                                   abandoned_writes once abandoned */
  ssize_t ret;                  /* the completion's return value */
  void *buf;                    /* bounce buffer (read, write), or NULL */
  rbd_completion_t rbd_c;       /* NULL, or the librbd completion */
  rados_completion_t rados_c;   /* NULL, or the librados completion */
  uint64_t stat_size;           /* rados_aio_stat's outputs */
  time_t stat_mtime;
};

static const struct backing_ops rbd_ops;

static struct backing_rbd *
to_rbd (struct backing *b)
{
  return (struct backing_rbd *) b;
}

/* ---- reachability: what stats show, and the prober ---- */

/* A request got no answer within the timeout. */
static void
note_timeout (struct backing_rbd *r)
{
  pthread_mutex_lock (&r->state_lock);
  r->timed_out++;
  if (r->down_since_s == 0) {
    r->down_since_s = time (NULL);
    log_warning ("backing %s: the Ceph cluster does not answer (no reply "
                 "within backing_timeout, %" PRIu32 " ms); cached data is "
                 "still served, probing every %u ms", r->b.uri,
                 r->timeout_ms, PROBE_INTERVAL_MS);
    pthread_cond_broadcast (&r->state_cond);
  }
  pthread_mutex_unlock (&r->state_lock);
}

/* The cluster answered a request or a probe. */
static void
note_answer (struct backing_rbd *r)
{
  pthread_mutex_lock (&r->state_lock);
  if (r->down_since_s != 0) {
    log_info ("backing %s: the Ceph cluster answers again (after %" PRId64
              " s, %" PRIu64 " probes)", r->b.uri,
              (int64_t) time (NULL) - r->down_since_s, r->probes);
    r->down_since_s = 0;
    pthread_cond_broadcast (&r->state_cond);
  }
  pthread_mutex_unlock (&r->state_lock);
}

/* ---- asynchronous requests, waited for by their caller ---- */

static void
req_free (struct rbd_req *q)
{
  if (q->rbd_c != NULL)
    rbd_aio_release (q->rbd_c);
  if (q->rados_c != NULL)
    rados_aio_release (q->rados_c);
  pthread_cond_destroy (&q->cond);
  pthread_mutex_destroy (&q->lock);
  free (q->buf);
  free (q);
}

/* A request with a bounce buffer of buf_bytes (0: none): 0 or -errno. */
static int
req_new (size_t buf_bytes, struct rbd_req **out)
{
  struct rbd_req *q = calloc (1, sizeof *q);
  int e;

  if (q == NULL)
    return -ENOMEM;
  if (buf_bytes > 0 && (q->buf = malloc (buf_bytes)) == NULL) {
    free (q);
    return -ENOMEM;
  }
  if ((e = clock_cond_init (&q->cond)) < 0) {
    free (q->buf);
    free (q);
    return e;
  }
  pthread_mutex_init (&q->lock, NULL);
  *out = q;
  return 0;
}

/* Completion side (librbd's / librados' finisher thread). */
static void
req_finish (struct rbd_req *q, ssize_t ret)
{
  bool orphan;

  pthread_mutex_lock (&q->lock);
  q->ret = ret;
  q->done = true;
  orphan = q->abandoned;
  if (!orphan)
    pthread_cond_signal (&q->cond);
  pthread_mutex_unlock (&q->lock);
  if (!orphan)
    return;
  if (q->writer != NULL) {      /* the write barrier lifts */
    struct backing_rbd *r = q->writer;

    pthread_mutex_lock (&r->state_lock);
    assert (r->abandoned_writes > 0);
    r->abandoned_writes--;
    pthread_cond_broadcast (&r->state_cond);
    pthread_mutex_unlock (&r->state_lock);
  }
  req_free (q);                 /* its caller timed out long ago */
}

static void
on_rbd_complete (rbd_completion_t c, void *arg)
{
  req_finish (arg, rbd_aio_get_return_value (c));
}

static void
on_rados_complete (rados_completion_t c, void *arg)
{
  req_finish (arg, rados_aio_get_return_value (c));
}

/* Wait for a submitted request until deadline_ms (monotonic).  0 (q->ret
 * is the result; the caller frees q), or -ETIMEDOUT (q now belongs to its
 * completion; a write-like one holds the write barrier until then).
 */
static int
req_wait (struct rbd_req *q, uint64_t deadline_ms)
{
  struct timespec deadline = clock_timespec_of_ms (deadline_ms);
  int e = 0;

  pthread_mutex_lock (&q->lock);
  while (!q->done && e != ETIMEDOUT)
    e = pthread_cond_timedwait (&q->cond, &q->lock, &deadline);
  if (!q->done) {
    q->abandoned = true;
    if (q->writer != NULL) {
      pthread_mutex_lock (&q->writer->state_lock);
      q->writer->abandoned_writes++;
      pthread_mutex_unlock (&q->writer->state_lock);
    }
    pthread_mutex_unlock (&q->lock);
    return -ETIMEDOUT;
  }
  pthread_mutex_unlock (&q->lock);
  return 0;
}

/* The write barrier: wait until no abandoned write-like request is left
 * in librbd's hands, or until deadline_ms.  0 or -ETIMEDOUT.  A late
 * write must land before anything submitted after it is even read, so
 * that nothing written back later is overwritten by it and no read caches
 * data it is about to change.
 */
static int
wait_barrier (struct backing_rbd *r, uint64_t deadline_ms)
{
  struct timespec deadline = clock_timespec_of_ms (deadline_ms);
  int e = 0;

  pthread_mutex_lock (&r->state_lock);
  while (r->abandoned_writes > 0 && e != ETIMEDOUT)
    e = pthread_cond_timedwait (&r->state_cond, &r->state_lock, &deadline);
  e = r->abandoned_writes > 0 ? -ETIMEDOUT : 0;
  pthread_mutex_unlock (&r->state_lock);
  return e;
}

enum rbd_req_kind { REQ_READ, REQ_WRITE, REQ_FLUSH, REQ_DISCARD, REQ_ZERO };

/* Submit one request and wait for it: 0, -ETIMEDOUT (no answer within
 * the timeout, ours or librados'), or librbd's -errno (not logged).
 */
static int
submit_once (struct backing_rbd *r, enum rbd_req_kind kind, void *buf,
             uint64_t count, uint64_t offset, int op_flags)
{
  bool data = kind == REQ_READ || kind == REQ_WRITE;
  uint64_t deadline_ms = clock_now_ms () + r->timeout_ms;
  struct rbd_req *q;
  ssize_t ret;
  int e;

  if (wait_barrier (r, deadline_ms) < 0) {
    note_timeout (r);
    return -ETIMEDOUT;
  }
  if ((e = req_new (data ? count : 0, &q)) < 0)
    return e;
  if (kind != REQ_READ && kind != REQ_FLUSH)
    q->writer = r;
  if (kind == REQ_WRITE)
    memcpy (q->buf, buf, count);
  if ((e = rbd_aio_create_completion (q, on_rbd_complete, &q->rbd_c)) < 0) {
    q->rbd_c = NULL;
    req_free (q);
    return e;
  }
  switch (kind) {
  case REQ_READ:
    e = rbd_aio_read2 (r->image, offset, count, q->buf, q->rbd_c, op_flags);
    break;
  case REQ_WRITE:
    e = rbd_aio_write2 (r->image, offset, count, q->buf, q->rbd_c,
                        op_flags);
    break;
  case REQ_FLUSH:
    e = rbd_aio_flush (r->image, q->rbd_c);
    break;
  case REQ_DISCARD:
    e = rbd_aio_discard (r->image, offset, count, q->rbd_c);
    break;
  case REQ_ZERO:
    e = rbd_aio_write_zeroes (r->image, offset, count, q->rbd_c, 0,
                              op_flags);
    break;
  }
  if (e < 0) {
    req_free (q);               /* not submitted: no completion will run */
    return e;
  }
  if (req_wait (q, deadline_ms) < 0) {
    note_timeout (r);
    return -ETIMEDOUT;
  }
  ret = q->ret;
  if (ret >= 0 && kind == REQ_READ) {
    if ((uint64_t) ret == count)
      memcpy (buf, q->buf, count);
    else
      ret = -EIO;               /* short read inside the image */
  }
  req_free (q);
  if (ret == -ETIMEDOUT)
    note_timeout (r);
  else if (ret >= 0)
    note_answer (r);
  return ret < 0 ? (int) ret : 0;
}

/* Is the image's exclusive lock held on the OSD by this client while
 * librbd does not own it?  Then release it (see "Our own stale exclusive
 * lock" above): true if a stale lock was released, so that a failed
 * request is worth trying again.  Synchronous librados calls, each
 * bounded by rados_osd_op_timeout (backing_timeout).  Serialised by
 * lock_fix_lock, so concurrent failures release it once.
 */
static bool
release_own_stale_lock (struct backing_rbd *r)
{
  char tag[256], clients[LOCKERS_BUF_BYTES], cookies[LOCKERS_BUF_BYTES];
  char addrs[LOCKERS_BUF_BYTES], self[64];
  size_t tag_len = sizeof tag, clients_len = sizeof clients;
  size_t cookies_len = sizeof cookies, addrs_len = sizeof addrs;
  const char *client, *cookie;
  bool released = false;
  int exclusive = 0, owner = 1;
  ssize_t n, i;

  pthread_mutex_lock (&r->lock_fix_lock);
  if (rbd_is_exclusive_lock_owner (r->image, &owner) < 0 || owner)
    goto out;                   /* no exclusive-lock feature, or ours */
  n = rados_list_lockers (r->ioctx, r->probe_oid, RBD_LOCK_NAME, &exclusive,
                          tag, &tag_len, clients, &clients_len, cookies,
                          &cookies_len, addrs, &addrs_len);
  if (n <= 0)
    goto out;                   /* no lock, no answer, or a huge list */
  snprintf (self, sizeof self, "client.%" PRIu64,
            rados_get_instance_id (r->cluster));
  client = clients;
  cookie = cookies;
  for (i = 0; i < n; i++) {
    /* librbd may have taken it properly meanwhile: ask again last. */
    if (strcmp (client, self) == 0 &&
        rbd_is_exclusive_lock_owner (r->image, &owner) == 0 && !owner) {
      int e = rados_unlock (r->ioctx, r->probe_oid, RBD_LOCK_NAME, cookie);

      if (e == 0 || e == -ENOENT) {
        log_warning ("backing %s: released this client's own stale "
                     "exclusive lock on the image (%s, cookie '%s'): the "
                     "cluster applied a lock request whose reply was lost, "
                     "so librbd could never take the lock again",
                     r->b.uri, self, cookie);
        released = true;
      }
      else
        log_error ("backing %s: cannot release this client's own stale "
                   "exclusive lock (cookie '%s'): %s", r->b.uri, cookie,
                   strerror (-e));
    }
    client += strlen (client) + 1;
    cookie += strlen (cookie) + 1;
  }
 out:
  pthread_mutex_unlock (&r->lock_fix_lock);
  return released;
}

/* Submit one request and wait for it, as submit_once; a write-like
 * request that failed because of our own stale exclusive lock is tried
 * once more after the lock is released.
 */
static int
submit_wait (struct backing_rbd *r, enum rbd_req_kind kind, void *buf,
             uint64_t count, uint64_t offset, int op_flags)
{
  int e = submit_once (r, kind, buf, count, offset, op_flags);

  if (e < 0 && e != -ETIMEDOUT && kind != REQ_READ &&
      release_own_stale_lock (r))
    e = submit_once (r, kind, buf, count, offset, op_flags);
  return e;
}

/* One probe: does the OSD holding the image's header answer a stat?
 * true if the cluster answered.
 */
static bool
probe (struct backing_rbd *r)
{
  struct rbd_req *q;
  ssize_t ret;

  if (req_new (0, &q) < 0)
    return false;
  if (rados_aio_create_completion2 (q, on_rados_complete, &q->rados_c) < 0) {
    q->rados_c = NULL;
    req_free (q);
    return false;
  }
  if (rados_aio_stat (r->ioctx, r->probe_oid, q->rados_c, &q->stat_size,
                      &q->stat_mtime) < 0) {
    req_free (q);
    return false;
  }
  if (req_wait (q, clock_now_ms () + r->timeout_ms) < 0)
    return false;               /* q is its completion's now */
  ret = q->ret;
  req_free (q);
  return ret >= 0 || ret == -ENOENT;
}

/* The prober thread: while the cluster is down, one probe every
 * PROBE_INTERVAL_MS (each bounded by the timeout), so that stats say
 * "connected" again once it answers even if no request comes.
 */
static void *
prober (void *arg)
{
  struct backing_rbd *r = arg;
  struct timespec next;
  bool answered;

  pthread_mutex_lock (&r->state_lock);
  for (;;) {
    while (!r->closing && r->down_since_s == 0)
      pthread_cond_wait (&r->state_cond, &r->state_lock);
    if (r->closing)
      break;
    r->probes++;
    pthread_mutex_unlock (&r->state_lock);
    answered = probe (r);
    if (answered)
      note_answer (r);
    pthread_mutex_lock (&r->state_lock);
    if (answered)
      continue;
    next = clock_timespec_of_ms (clock_now_ms () + PROBE_INTERVAL_MS);
    while (!r->closing && r->down_since_s != 0 &&
           pthread_cond_timedwait (&r->state_cond, &r->state_lock,
                                   &next) != ETIMEDOUT)
      ;
  }
  pthread_mutex_unlock (&r->state_lock);
  return NULL;
}

static int
rbd_remote_state_op (struct backing *b, struct backing_remote_state *out)
{
  struct backing_rbd *r = to_rbd (b);

  pthread_mutex_lock (&r->state_lock);
  *out = (struct backing_remote_state) {
    .connections = 1,
    .connected = r->down_since_s == 0,
    .down_since_s = r->down_since_s,
    .reconnect_attempts = r->probes,
    .retried_requests = 0,      /* librados resends unseen */
    .timed_out_requests = r->timed_out,
  };
  pthread_mutex_unlock (&r->state_lock);
  return 0;
}

/* Logs a failed op; returns its error, a timeout as -EIO. */
static int
log_failure (struct backing_rbd *r, const char *what, uint64_t count,
             uint64_t offset, int e)
{
  if (e == -ETIMEDOUT) {
    log_error ("backing %s: %s of %" PRIu64 " bytes at %" PRIu64 ": no "
               "answer within backing_timeout (%" PRIu32 " ms)", r->b.uri,
               what, count, offset, r->timeout_ms);
    return -EIO;
  }
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
bulk (struct backing_rbd *r, enum rbd_req_kind req, uint64_t count,
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
  if (e == -ETIMEDOUT)
    note_timeout (r);
  else if (e >= 0)
    note_answer (r);
  if (e < 0) {
    free (s.v);
    return log_failure (r, "extents", count, offset, e);
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

/* ---- tests only ---- */

int
backing_rbd_test_exec_on_header (struct backing *b, const char *cls,
                                 const char *method, const char *in,
                                 size_t in_len)
{
  struct backing_rbd *r = to_rbd (b);

  if (b->ops != &rbd_ops)
    return -EINVAL;
  return rados_exec (r->ioctx, r->probe_oid, cls, method, in, in_len, NULL,
                     0);
}

/* ---- open and close ---- */

static void
free_rbd (struct backing_rbd *r)
{
  if (r->prober_started) {
    pthread_mutex_lock (&r->state_lock);
    r->closing = true;
    pthread_cond_broadcast (&r->state_cond);
    pthread_mutex_unlock (&r->state_lock);
    pthread_join (r->prober, NULL);  /* at most one probe's timeout */
  }
  /* librbd waits for the requests still in flight (their completions
   * free the abandoned ones); each is bounded by librados' timeouts.
   */
  if (r->image != NULL)
    rbd_close (r->image);
  if (wait_barrier (r, clock_now_ms ()) < 0) {
    /* A completion still to come would touch r: leak it, never free it
     * under one.  (librbd's close waits for its requests: not expected.)
     */
    log_warning ("backing %s: closed with %u abandoned write(s) still in "
                 "flight; leaking the handle", r->b.uri, r->abandoned_writes);
    return;
  }
  if (r->ioctx != NULL)
    rados_ioctx_destroy (r->ioctx);
  if (r->cluster != NULL)
    rados_shutdown (r->cluster);
  pthread_cond_destroy (&r->state_cond);
  pthread_mutex_destroy (&r->state_lock);
  pthread_mutex_destroy (&r->lock_fix_lock);
  free (r->probe_oid);
  free (r->b.uri);
  free (r);
}

static void
rbd_close_op (struct backing *b)
{
  struct backing_rbd *r = to_rbd (b);

  if (r->image != NULL && !b->readonly)
    (void) submit_wait (r, REQ_FLUSH, NULL, 0, 0, 0);  /* bounded */
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
  snprintf (secs, sizeof secs, "%" PRIu32, (r->timeout_ms + 999) / 1000);
  if ((e = conf_set (r, "rados_osd_op_timeout", secs)) < 0 ||
      (e = conf_set (r, "rados_mon_op_timeout", secs)) < 0 ||
      (e = conf_set (r, "client_mount_timeout", secs)) < 0)
    return e;
  return 0;
}

/* The name of the image's header object, which the prober stats:
 * "rbd_header.ID" (format 2), or the format 1 header "NAME.rbd".
 */
static int
header_oid (struct backing_rbd *r)
{
  char id[128], name[256];
  int e = rbd_get_id (r->image, id, sizeof id);

  if (e == 0)
    e = asprintf (&r->probe_oid, "rbd_header.%s", id);
  else if ((e = rbd_get_name (r->image, name, &(size_t) { sizeof name }))
           == 0)
    e = asprintf (&r->probe_oid, "%s.rbd", name);
  else {
    log_error ("backing %s: the image's id: %s", r->b.uri, strerror (-e));
    return e;
  }
  if (e < 0) {
    r->probe_oid = NULL;
    return -ENOMEM;
  }
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
  r->timeout_ms = opts->remote.timeout_ms ? opts->remote.timeout_ms
    : DEFAULT_TIMEOUT_MS;
  if ((e = clock_cond_init (&r->state_cond)) < 0) {
    free (r);
    goto out;
  }
  pthread_mutex_init (&r->state_lock, NULL);
  pthread_mutex_init (&r->lock_fix_lock, NULL);
  if ((r->b.uri = strdup (uri)) == NULL) {
    e = -ENOMEM;
    goto err;
  }
  if ((e = configure (r, opts)) < 0)
    goto err;
  /* librados retries the monitors until client_mount_timeout (set from
   * backing_timeout): a cluster starting alongside is not an error.
   */
  if ((e = rados_connect (r->cluster)) < 0) {
    log_error ("backing %s: cannot connect to the Ceph cluster: %s%s",
               r->b.uri, strerror (-e), e == -ETIMEDOUT
               ? " (no monitor answered within backing_timeout)" : "");
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
               pool, e == -ENOENT ? "no such image"
               : e == -ETIMEDOUT ? "the OSDs did not answer within "
               "backing_timeout" : strerror (-e));
    goto err;
  }
  if ((e = header_oid (r)) < 0)
    goto err;
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
  if ((e = pthread_create (&r->prober, NULL, prober, r)) != 0) {
    e = -e;
    log_error ("backing %s: cannot start the prober thread: %s", r->b.uri,
               strerror (-e));
    goto err;
  }
  r->prober_started = true;
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
  .remote_state = rbd_remote_state_op,
};
