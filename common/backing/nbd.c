/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd.c — a backing store on a remote NBD server (libnbd).
 *
 * WHAT: the backing ops (backing.h) over one or more NBD connections to
 * a remote export named by a libnbd URI (nbd://HOST[:PORT]/EXPORT,
 * nbd+unix:///EXPORT?socket=PATH, nbds://…, nbds+unix://…).  Requests
 * are split to the remote's maximum block size and sent concurrently;
 * requests not aligned to the remote's minimum block size become
 * read-modify-write cycles; FUA is emulated with a flush where the
 * remote lacks it; base:allocation answers extents.
 * WHY: the product caches remote disks; the engine must stay unaware of
 * where its backing store lives.
 *
 * INVARIANTS:
 * - Every request this driver sends is idempotent: a read, a write of
 *   the same bytes to the same place, a flush, a trim, a zero, a block
 *   status query.  A request interrupted by a lost connection is resent
 *   on the re-established one (nbd-conn.c) and fails with -EIO only
 *   after the timeout (backing_remote_options.timeout_ms, 30 s default).
 * - What reaches the remote obeys its block-size constraints: offsets and
 *   lengths are multiples of min_bytes (except a range ending at the
 *   export's end), data requests are at most max_bytes, trims, zeros and
 *   block status queries at most max_bulk_bytes.
 * - With min_bytes > 1 every write-like request (write, zero, trim) holds
 *   its min_bytes-aligned range in the range lock, so a read-modify-write
 *   never writes back stale bytes over a concurrent write to the same
 *   block.
 * - b.uri is the URI without secrets (tls-psk-file and tls-certificates
 *   query parameters removed); connect_uri is the URI as given.
 *
 * THREADS AND LOCKS: any number of callers at once; each blocks only on
 * its own requests.  Lock order and the I/O threads: nbd-internal.h.
 *
 * FAILURE: the remote's errors are returned as -errno and logged once
 * with the operation and range; a write-like op on a read-only remote is
 * -EROFS; BACKING_FAST where the remote cannot zero quickly is -ENOTSUP,
 * not logged.  Open fails (-errno, logged) if the connections cannot
 * be made within the timeout (backing_timeout): while nothing listens at
 * the remote's address (connection refused, no such socket, host
 * unreachable) it retries with backoff from OPEN_BACKOFF_MIN_MS to
 * OPEN_BACKOFF_MAX_MS, so a remote starting at the same time is no error;
 * a refused handshake fails at once; a handshake left unanswered fails at
 * the timeout instead of hanging.  The remote's size and properties are
 * needed to serve anything, so there is no open without it (yet).
 *
 * NOT HERE: the connections and their I/O threads (nbd-conn.c); NBD_CMD_
 * CACHE (the ops table has no prefetch op, can_cache is only recorded).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libnbd.h>

#include "backing.h"
#include "clock.h"
#include "log.h"
#include "compiler.h"
#include "nbd-internal.h"

#define DEFAULT_TIMEOUT_MS   30000
#define MULTI_CONN_DEFAULT   4
#define MAX_CONNECTIONS      64
#define DATA_MAX_BYTES       (32u << 20)  /* NBD's default payload limit */
#define BULK_MAX_BYTES       (1u << 30)   /* trim/zero/status length */
#define WINDOW               64           /* requests per nbd_run */
#define ZERO_BUF_BYTES       (1u << 20)   /* emulated zero: write size */
#define OPEN_BACKOFF_MIN_MS  100          /* open: first retry delay */
#define OPEN_BACKOFF_MAX_MS  2000         /* open: longest retry delay */

static const struct backing_ops nbd_ops;

static struct backing_nbd *
to_nbd (struct backing *b)
{
  return (struct backing_nbd *) b;
}

static uint64_t
round_down (struct backing_nbd *n, uint64_t x)
{
  return x - x % n->min_bytes;
}

static uint64_t
round_up (struct backing_nbd *n, uint64_t x)
{
  uint64_t r = x + (n->min_bytes - x % n->min_bytes) % n->min_bytes;

  return r > n->b.size_bytes ? n->b.size_bytes : r;
}

/* An offset the remote accepts as a range's start or end. */
static bool
is_boundary (struct backing_nbd *n, uint64_t x)
{
  return x % n->min_bytes == 0 || x == n->b.size_bytes;
}

/* ---- the range lock (write-like ops when min_bytes > 1) ---- */

static void
range_acquire (struct backing_nbd *n, struct nbd_range *me,
               uint64_t start, uint64_t end)
{
  struct nbd_range *r;

  me->start = start;
  me->end = end;
  if (n->min_bytes == 1)
    return;
  pthread_mutex_lock (&n->range_lock);
 again:
  for (r = n->ranges; r != NULL; r = r->next)
    if (r->start < end && start < r->end) {
      pthread_cond_wait (&n->range_cond, &n->range_lock);
      goto again;
    }
  me->next = n->ranges;
  n->ranges = me;
  pthread_mutex_unlock (&n->range_lock);
}

static void
range_release (struct backing_nbd *n, struct nbd_range *me)
{
  struct nbd_range **pp;

  if (n->min_bytes == 1)
    return;
  pthread_mutex_lock (&n->range_lock);
  for (pp = &n->ranges; *pp != me; pp = &(*pp)->next)
    ;
  *pp = me->next;
  pthread_cond_broadcast (&n->range_cond);
  pthread_mutex_unlock (&n->range_lock);
}

/* ---- transfers: split to the remote's maximum, WINDOW at a time ---- */

static int
xfer (struct backing_nbd *n, enum nbd_op op, void *buf, uint64_t count,
      uint64_t offset, uint32_t flags)
{
  uint64_t chunk = (op == NBD_OP_READ || op == NBD_OP_WRITE)
    ? n->max_bytes : n->max_bulk_bytes;
  struct nbd_req reqs[WINDOW];
  char *p = buf;

  while (count > 0) {
    size_t nr = 0;
    int r;

    while (count > 0 && nr < WINDOW) {
      uint64_t len = count < chunk ? count : chunk;

      reqs[nr++] = (struct nbd_req) {
        .op = op, .buf = p, .count = len, .offset = offset, .flags = flags,
      };
      if (p != NULL)
        p += len;
      count -= len;
      offset += len;
    }
    if ((r = nbd_run (n, reqs, nr)) < 0)
      return r;
  }
  return 0;
}

static int
log_failure (struct backing_nbd *n, const char *what, uint64_t count,
             uint64_t offset, int r)
{
  log_error ("backing %s: %s of %" PRIu64 " bytes at %" PRIu64 ": %s",
             n->b.uri, what, count, offset, strerror (-r));
  return r;
}

void
nbd_note_lost (struct backing_nbd *n)
{
  uint64_t done = __atomic_load_n (&n->writes_done, __ATOMIC_ACQUIRE);

  pthread_mutex_lock (&n->flush_lock);
  if (done > n->settled && done > n->at_risk)
    n->at_risk = done;
  pthread_mutex_unlock (&n->flush_lock);
}

static int
run_flush (struct backing_nbd *n)
{
  struct nbd_req reqs[MAX_CONNECTIONS];
  size_t nr = 1, i;

  /* Without multi-conn a flush covers only its own connection's writes. */
  if (!n->can_multi_conn && n->nr_conns > 1)
    nr = n->nr_conns;
  for (i = 0; i < nr; i++)
    reqs[i] = (struct nbd_req) {
      .op = NBD_OP_FLUSH, .conn = nr > 1 ? &n->conns[i] : NULL,
    };
  return nbd_run (n, reqs, nr);
}

/* A flush vouches for the writes completed before it started, and only if
 * no connection was lost between their completion and its end (a lost
 * connection during the flush is noted by the time it returns: the
 * connection's thread notes it before resending).  Otherwise -EIO, once:
 * the writes in its window are settled (reported), later writes are
 * judged by the next flush.  A failed flush settles its window too (the
 * remote may have dropped that data, as Linux drops dirty pages after a
 * failed fsync; the caller was told).
 */
static int
do_flush (struct backing_nbd *n)
{
  uint64_t start;
  int r;

  if (!n->can_flush)
    return 0;                   /* writes are durable when done */
  start = __atomic_load_n (&n->writes_done, __ATOMIC_ACQUIRE);
  r = run_flush (n);
  pthread_mutex_lock (&n->flush_lock);
  if (r == 0 && n->at_risk > n->settled && start > n->settled) {
    log_error ("backing %s: a connection was lost after writes this flush "
               "would vouch for; the remote may have lost them",
               n->b.uri);
    r = -EIO;
  }
  if (start > n->settled)
    n->settled = start;
  pthread_mutex_unlock (&n->flush_lock);
  return r;
}

/* ---- read ---- */

static int
nbd_pread_op (struct backing *b, void *buf, size_t count, uint64_t offset)
{
  struct backing_nbd *n = to_nbd (b);
  uint64_t a0, a1;
  char *bounce;
  int r;

  if (is_boundary (n, offset) && is_boundary (n, offset + count))
    r = xfer (n, NBD_OP_READ, buf, count, offset, 0);
  else {
    a0 = round_down (n, offset);
    a1 = round_up (n, offset + count);
    if ((bounce = malloc (a1 - a0)) == NULL)
      return log_failure (n, "read", count, offset, -ENOMEM);
    r = xfer (n, NBD_OP_READ, bounce, a1 - a0, a0, 0);
    if (r == 0)
      memcpy (buf, bounce + (offset - a0), count);
    free (bounce);
  }
  return r < 0 ? log_failure (n, "read", count, offset, r) : 0;
}

/* ---- write ---- */

/* Writes [offset, offset+count), read-modify-writing the partial blocks
 * at either end.  The caller holds the range lock over the aligned range.
 */
static int
write_range (struct backing_nbd *n, const void *buf, uint64_t count,
             uint64_t offset, uint32_t nflags)
{
  uint64_t end = offset + count, a0, a1, t0;
  struct nbd_req rd[2];
  size_t nr = 0;
  char *bounce;
  int r;

  if (is_boundary (n, offset) && is_boundary (n, end))
    return xfer (n, NBD_OP_WRITE, (void *) buf, count, offset, nflags);

  a0 = round_down (n, offset);
  a1 = round_up (n, end);
  if ((bounce = malloc (a1 - a0)) == NULL)
    return -ENOMEM;
  if (!is_boundary (n, offset)) {
    uint64_t len = a1 - a0 < n->min_bytes ? a1 - a0 : n->min_bytes;

    rd[nr++] = (struct nbd_req) {
      .op = NBD_OP_READ, .buf = bounce, .count = len, .offset = a0,
    };
  }
  t0 = round_down (n, end);
  if (!is_boundary (n, end) && (nr == 0 || t0 != a0))
    rd[nr++] = (struct nbd_req) {
      .op = NBD_OP_READ, .buf = bounce + (t0 - a0), .count = a1 - t0,
      .offset = t0,
    };
  r = nbd_run (n, rd, nr);
  if (r == 0) {
    memcpy (bounce + (offset - a0), buf, count);
    r = xfer (n, NBD_OP_WRITE, bounce, a1 - a0, a0, nflags);
  }
  free (bounce);
  return r;
}

static int
locked_write (struct backing_nbd *n, const void *buf, uint64_t count,
              uint64_t offset, uint32_t nflags)
{
  struct nbd_range range;
  int r;

  range_acquire (n, &range, round_down (n, offset),
                 round_up (n, offset + count));
  r = write_range (n, buf, count, offset, nflags);
  range_release (n, &range);
  return r;
}

static uint32_t
fua_flag (struct backing_nbd *n, uint32_t flags)
{
  return (flags & BACKING_FUA) && n->can_fua ? LIBNBD_CMD_FLAG_FUA : 0;
}

/* After a write-like op: FUA emulated with a flush where needed. */
static int
emulate_fua (struct backing_nbd *n, uint32_t flags, int r)
{
  if (r == 0 && (flags & BACKING_FUA) && !n->can_fua)
    r = do_flush (n);
  return r;
}

static int
refuse_readonly (struct backing_nbd *n, const char *what, uint64_t count,
                 uint64_t offset)
{
  log_error ("backing %s: %s of %" PRIu64 " bytes at %" PRIu64
             ": the remote is read-only", n->b.uri, what, count, offset);
  return -EROFS;
}

static int
nbd_pwrite_op (struct backing *b, const void *buf, size_t count,
               uint64_t offset, uint32_t flags)
{
  struct backing_nbd *n = to_nbd (b);
  int r;

  if (b->readonly)
    return refuse_readonly (n, "write", count, offset);
  r = locked_write (n, buf, count, offset, fua_flag (n, flags));
  r = emulate_fua (n, flags, r);
  return r < 0 ? log_failure (n, "write", count, offset, r) : 0;
}

static int
nbd_flush_op (struct backing *b)
{
  struct backing_nbd *n = to_nbd (b);
  int r = do_flush (n);

  return r < 0 ? log_failure (n, "flush", 0, 0, r) : 0;
}

/* ---- trim and zero ---- */

static int
nbd_trim_op (struct backing *b, uint64_t count, uint64_t offset,
             uint32_t flags)
{
  struct backing_nbd *n = to_nbd (b);
  struct nbd_range range;
  uint64_t start, end;
  int r;

  if (b->readonly)
    return refuse_readonly (n, "trim", count, offset);
  if (!b->can_trim)
    return 0;
  /* Advisory: only the whole remote blocks inside the range. */
  start = round_up (n, offset);
  end = offset + count == b->size_bytes ? b->size_bytes
    : round_down (n, offset + count);
  if (start >= end)
    return 0;
  range_acquire (n, &range, start, end);
  r = xfer (n, NBD_OP_TRIM, NULL, end - start, start, fua_flag (n, flags));
  range_release (n, &range);
  r = emulate_fua (n, flags, r);
  return r < 0 ? log_failure (n, "trim", count, offset, r) : 0;
}

/* Zeroes by writing zeros (read-modify-write at unaligned ends). */
static int
write_zeros (struct backing_nbd *n, uint64_t count, uint64_t offset,
             uint32_t nflags)
{
  size_t buf_bytes = count < ZERO_BUF_BYTES ? count : ZERO_BUF_BYTES;
  char *zeros;
  int r = 0;

  if (count == 0)
    return 0;
  if ((zeros = calloc (1, buf_bytes)) == NULL)
    return -ENOMEM;
  while (count > 0 && r == 0) {
    uint64_t len = count < buf_bytes ? count : buf_bytes;

    r = locked_write (n, zeros, len, offset, nflags);
    count -= len;
    offset += len;
  }
  free (zeros);
  return r;
}

static int
zero_range (struct backing_nbd *n, uint64_t count, uint64_t offset,
            uint32_t flags)
{
  uint64_t end = offset + count, start_in, end_in;
  uint32_t nflags = fua_flag (n, flags);
  struct nbd_range range;
  int r;

  if (!n->b.can_zero)
    return write_zeros (n, count, offset, nflags);

  start_in = round_up (n, offset);
  end_in = is_boundary (n, end) ? end : round_down (n, end);
  if (start_in >= end_in)
    return write_zeros (n, count, offset, nflags);
  if ((r = write_zeros (n, start_in - offset, offset, nflags)) < 0)
    return r;
  if (!(flags & BACKING_MAY_TRIM))
    nflags |= LIBNBD_CMD_FLAG_NO_HOLE;
  if (flags & BACKING_FAST)
    nflags |= LIBNBD_CMD_FLAG_FAST_ZERO;
  range_acquire (n, &range, start_in, end_in);
  r = xfer (n, NBD_OP_ZERO, NULL, end_in - start_in, start_in, nflags);
  range_release (n, &range);
  if (r < 0)
    return r;
  return write_zeros (n, end - end_in, end_in, fua_flag (n, flags));
}

static int
nbd_zero_op (struct backing *b, uint64_t count, uint64_t offset,
             uint32_t flags)
{
  struct backing_nbd *n = to_nbd (b);
  int r;

  if (b->readonly)
    return refuse_readonly (n, "zero", count, offset);
  if (flags & BACKING_FAST) {
    /* Fast means no data written: not emulated, not read-modify-write. */
    if (!b->can_fast_zero || !is_boundary (n, offset) ||
        !is_boundary (n, offset + count))
      return -ENOTSUP;
  }
  r = zero_range (n, count, offset, flags);
  r = emulate_fua (n, flags, r);
  if (r == -ENOTSUP && (flags & BACKING_FAST))
    return r;
  return r < 0 ? log_failure (n, "zero", count, offset, r) : 0;
}

/* ---- extents ---- */

static int
nbd_extents_op (struct backing *b, uint64_t count, uint64_t offset,
                backing_extent_fn fn, void *opaque)
{
  struct backing_nbd *n = to_nbd (b);
  uint64_t a0, a1, len, pos, end = offset + count;
  struct nbd_req req;
  bool reported = false;
  size_t i;
  int r;

  if (!b->can_extents)
    return fn (opaque, offset, count, 0) < 0 ? -EIO : 0;

  a0 = round_down (n, offset);
  len = end - a0 < n->max_bulk_bytes ? end - a0 : n->max_bulk_bytes;
  a1 = round_up (n, a0 + len);
  if (a1 - a0 > n->max_bulk_bytes)
    a1 -= n->min_bytes;
  req = (struct nbd_req) {
    .op = NBD_OP_BLOCK_STATUS, .count = a1 - a0, .offset = a0,
  };
  if ((r = nbd_run (n, &req, 1)) < 0) {
    free (req.entries);
    return log_failure (n, "block status", count, offset, r);
  }

  pos = a0;
  r = 0;
  for (i = 0; i + 1 < req.nr_entries && pos < end; i += 2) {
    uint64_t e_start = pos, e_end = pos + req.entries[i];
    uint64_t s = e_start > offset ? e_start : offset;
    uint64_t e = e_end < end ? e_end : end;

    pos = e_end;
    if (s >= e)
      continue;
    r = fn (opaque, s, e - s,
            req.entries[i + 1] & (BACKING_EXTENT_HOLE | BACKING_EXTENT_ZERO));
    reported = true;
    if (r != 0)
      break;
  }
  free (req.entries);
  if (r < 0)
    return r;
  if (!reported)
    return log_failure (n, "block status (no extent returned)", count,
                        offset, -EIO);
  return 0;
}

/* ---- open and close ---- */

static void
free_nbd (struct backing_nbd *n)
{
  unsigned i;

  for (i = 0; n->conns != NULL && i < n->nr_conns; i++)
    nbd_conn_stop (&n->conns[i]);
  free (n->conns);
  pthread_cond_destroy (&n->range_cond);
  pthread_mutex_destroy (&n->range_lock);
  pthread_mutex_destroy (&n->flush_lock);
  free (n->connect_uri);
  free (n->tls_certificates);
  free (n->tls_psk_file);
  free (n->tls_username);
  free (n->b.uri);
  free (n);
}

static void
nbd_close_op (struct backing *b)
{
  free_nbd (to_nbd (b));
}

static int nbd_remote_state_op (struct backing *b,
                                struct backing_remote_state *out);

static const struct backing_ops nbd_ops = {
  .name = "nbd",
  .pread = nbd_pread_op,
  .pwrite = nbd_pwrite_op,
  .flush = nbd_flush_op,
  .trim = nbd_trim_op,
  .zero = nbd_zero_op,
  .extents = nbd_extents_op,
  .close = nbd_close_op,
  .remote_state = nbd_remote_state_op,
};

/* The URI without the query parameters that name secrets. */
static char *
identity_uri (const char *uri)
{
  static const char *const secret[] = { "tls-psk-file=", "tls-certificates=" };
  const char *q = strchr (uri, '?');
  char *out = malloc (strlen (uri) + 1);
  char *o;
  bool first = true;

  if (out == NULL)
    return NULL;
  if (q == NULL)
    return strcpy (out, uri);
  memcpy (out, uri, q - uri);
  o = out + (q - uri);
  for (q++; *q != '\0';) {
    size_t len = strcspn (q, "&");
    bool keep = true;
    size_t k;

    for (k = 0; k < sizeof secret / sizeof secret[0]; k++)
      if (strncmp (q, secret[k], strlen (secret[k])) == 0)
        keep = false;
    if (keep && len > 0) {
      *o++ = first ? '?' : '&';
      memcpy (o, q, len);
      o += len;
      first = false;
    }
    q += len;
    if (*q == '&')
      q++;
  }
  *o = '\0';
  return out;
}

static char *
dup_or_null (const char *s, bool *oom)
{
  char *d;

  if (s == NULL)
    return NULL;
  if ((d = strdup (s)) == NULL)
    *oom = true;
  return d;
}

/* One attempt at one handle: asynchronous, so that a remote that accepts
 * the connection but never answers the handshake cannot hang us past
 * deadline_ms.  0, or -errno with the reason in why.
 */
static int
try_connect (struct backing_nbd *n, uint64_t deadline_ms,
             struct nbd_handle **out, char *why, size_t why_size)
{
  struct nbd_handle *h;
  uint64_t now;
  int r;

  if ((r = nbd_conn_new_handle (n, &h)) < 0) {
    snprintf (why, why_size, "cannot create a handle");
    return r;
  }
  if (nbd_aio_connect_uri (h, n->connect_uri) == -1)
    goto failed;
  while (nbd_aio_is_connecting (h) == 1) {
    now = clock_now_ms ();
    if (now >= deadline_ms) {
      snprintf (why, why_size, "no answer to the NBD handshake");
      nbd_close (h);
      return -ETIMEDOUT;
    }
    if (nbd_poll (h, deadline_ms - now > 1000 ? 1000
                  : (int) (deadline_ms - now)) == -1)
      goto failed;
  }
  if (nbd_aio_is_ready (h) == 1) {
    *out = h;
    return 0;
  }
 failed:
  r = nbd_get_errno ();
  snprintf (why, why_size, "%s",
            nbd_get_error () ? nbd_get_error () : "connection failed");
  nbd_close (h);
  return r > 0 ? -r : -EIO;
}

/* Is this failure "nothing is listening there (yet)"?  Those are worth
 * retrying at open: a remote started at the same time as we are (a boot,
 * a test) is not an error.  A refused handshake (TLS, no such export) is.
 */
static bool
not_listening (int r)
{
  return r == -ECONNREFUSED || r == -ENOENT || r == -EHOSTUNREACH ||
         r == -ENETUNREACH || r == -EAGAIN;
}

/* Connects one handle by deadline_ms, retrying with backoff while
 * nothing listens at the remote's address.  0 or -errno (logged).
 */
static int
connect_one (struct backing_nbd *n, uint64_t deadline_ms,
             struct nbd_handle **out)
{
  uint32_t backoff_ms = OPEN_BACKOFF_MIN_MS;
  bool warned = false;
  char why[256];
  uint64_t now;
  int r;

  for (;;) {
    if ((r = try_connect (n, deadline_ms, out, why, sizeof why)) == 0) {
      if (warned)
        log_info ("backing %s: connected", n->b.uri);
      return 0;
    }
    now = clock_now_ms ();
    if (!not_listening (r) || now + backoff_ms >= deadline_ms)
      break;
    if (!warned)
      log_warning ("backing %s: cannot connect: %s; retrying for up to "
                   "%" PRIu64 " s (backing_timeout)", n->b.uri, why,
                   (deadline_ms - now + 999) / 1000);
    warned = true;
    poll (NULL, 0, (int) backoff_ms);
    backoff_ms = MIN (backoff_ms * 2, OPEN_BACKOFF_MAX_MS);
  }
  if (warned || r == -ETIMEDOUT)
    log_error ("backing %s: cannot connect: %s (gave up after "
               "backing_timeout, %u s)", n->b.uri, why,
               (n->timeout_ms + 999) / 1000);
  else
    log_error ("backing %s: cannot connect: %s", n->b.uri, why);
  return r;
}

/* The remote's properties, from the first connection. */
static void
read_properties (struct backing_nbd *n, struct nbd_handle *h, bool readonly)
{
  int64_t min = nbd_get_block_size (h, LIBNBD_SIZE_MINIMUM);
  int64_t max = nbd_get_block_size (h, LIBNBD_SIZE_MAXIMUM);

  n->b.readonly = readonly || nbd_is_read_only (h) == 1;
  n->can_flush = nbd_can_flush (h) == 1;
  n->can_fua = nbd_can_fua (h) == 1;
  n->can_multi_conn = nbd_can_multi_conn (h) == 1;
  n->can_cache = nbd_can_cache (h) == 1;
  n->b.can_trim = !n->b.readonly && nbd_can_trim (h) == 1;
  n->b.can_zero = !n->b.readonly && nbd_can_zero (h) == 1;
  n->b.can_fast_zero = n->b.can_zero && nbd_can_fast_zero (h) == 1;
  n->b.can_extents =
    nbd_can_meta_context (h, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;

  n->min_bytes = min > 1 ? (uint64_t) min : 1;
  n->max_bytes = max > 0 && (uint64_t) max < DATA_MAX_BYTES
    ? (uint64_t) max : DATA_MAX_BYTES;
  n->max_bulk_bytes = max > 0 && (uint64_t) max < BULK_MAX_BYTES
    ? (uint64_t) max : BULK_MAX_BYTES;
  n->max_bytes = round_down (n, n->max_bytes);
  n->max_bulk_bytes = round_down (n, n->max_bulk_bytes);
  if (n->max_bytes == 0)
    n->max_bytes = n->min_bytes;
  if (n->max_bulk_bytes == 0)
    n->max_bulk_bytes = n->min_bytes;
}

int
backing_nbd_open (const char *uri, const struct backing_open_options *opts,
                  struct backing **out)
{
  static const struct backing_open_options defaults;
  const struct backing_remote_options *ro;
  struct backing_nbd *n;
  struct nbd_handle *h;
  uint64_t deadline_ms;
  bool oom = false;
  int64_t size;
  unsigned i;
  int r;

  if (opts == NULL)
    opts = &defaults;
  ro = &opts->remote;
  if ((n = calloc (1, sizeof *n)) == NULL)
    return -ENOMEM;
  pthread_mutex_init (&n->range_lock, NULL);
  pthread_mutex_init (&n->flush_lock, NULL);
  pthread_cond_init (&n->range_cond, NULL);
  n->b.ops = &nbd_ops;
  n->b.uri = identity_uri (uri);
  n->connect_uri = dup_or_null (uri, &oom);
  n->tls_certificates = dup_or_null (ro->tls_certificates, &oom);
  n->tls_psk_file = dup_or_null (ro->tls_psk_file, &oom);
  n->tls_username = dup_or_null (ro->tls_username, &oom);
  n->tls_no_verify = ro->tls_no_verify;
  n->timeout_ms = ro->timeout_ms ? ro->timeout_ms : DEFAULT_TIMEOUT_MS;
  if (oom || n->b.uri == NULL) {
    r = -ENOMEM;
    goto err;
  }
  if ((ro->tls_certificates || ro->tls_psk_file || ro->tls_username ||
       ro->tls_no_verify) && !backing_is_tls_uri (uri)) {
    log_error ("backing %s: TLS settings given, but the URI does not ask "
               "for TLS (use nbds:// or nbds+unix://)", n->b.uri);
    r = -EINVAL;
    goto err;
  }
  if (ro->connections > MAX_CONNECTIONS) {
    log_error ("backing %s: at most %d connections", n->b.uri,
               MAX_CONNECTIONS);
    r = -EINVAL;
    goto err;
  }

  deadline_ms = clock_now_ms () + n->timeout_ms;
  if ((r = connect_one (n, deadline_ms, &h)) < 0)
    goto err;
  if ((size = nbd_get_size (h)) < 0) {
    log_error ("backing %s: %s", n->b.uri, nbd_get_error ());
    nbd_close (h);
    r = -EIO;
    goto err;
  }
  n->b.size_bytes = size;
  read_properties (n, h, opts->readonly);

  n->nr_conns = ro->connections ? ro->connections
    : n->can_multi_conn ? MULTI_CONN_DEFAULT : 1;
  if (n->nr_conns > 1 && !n->can_multi_conn)
    log_warning ("backing %s: %u connections to a remote without "
                 "multi-conn: every flush goes to all of them",
                 n->b.uri, n->nr_conns);
  if ((n->conns = calloc (n->nr_conns, sizeof *n->conns)) == NULL) {
    nbd_close (h);
    r = -ENOMEM;
    goto err;
  }
  for (i = 0; i < n->nr_conns; i++) {
    if (i > 0 && (r = connect_one (n, deadline_ms, &h)) < 0)
      goto err;
    if (i > 0 && nbd_get_size (h) != size) {
      log_error ("backing %s: the remote's size differs between "
                 "connections", n->b.uri);
      nbd_close (h);
      r = -EIO;
      goto err;
    }
    if ((r = nbd_conn_start (n, &n->conns[i], i, h)) < 0) {
      nbd_close (h);
      goto err;
    }
  }

  log_info ("backing %s: %" PRIu64 " bytes, %u connection%s%s, block size "
            "%" PRIu64 "..%" PRIu64 "%s%s%s%s%s", n->b.uri, n->b.size_bytes,
            n->nr_conns, n->nr_conns == 1 ? "" : "s",
            n->can_multi_conn ? " (multi-conn)" : "",
            n->min_bytes, n->max_bytes, n->b.readonly ? ", read-only" : "",
            n->can_flush ? ", flush" : "", n->can_fua ? ", fua" : "",
            n->b.can_zero ? ", zero" : "",
            n->b.can_extents ? ", base:allocation" : "");
  *out = &n->b;
  return 0;

 err:
  free_nbd (n);
  return r;
}

static int
nbd_remote_state_op (struct backing *b, struct backing_remote_state *out)
{
  struct backing_nbd *n = to_nbd (b);
  unsigned i;

  *out = (struct backing_remote_state) { .connections = n->nr_conns };
  for (i = 0; i < n->nr_conns; i++) {
    struct nbd_conn *c = &n->conns[i];

    pthread_mutex_lock (&c->lock);
    if (c->up)
      out->connected++;
    else if (c->down_since_s > out->down_since_s)
      out->down_since_s = c->down_since_s;  /* the last one to go down */
    out->reconnect_attempts += c->reconnect_attempts;
    out->retried_requests += c->retried;
    out->timed_out_requests += c->timed_out;
    pthread_mutex_unlock (&c->lock);
  }
  if (out->connected > 0)
    out->down_since_s = 0;      /* reachable: requests still flow */
  return 0;
}
