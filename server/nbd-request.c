/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-request.c — transmission-phase requests: parse, validate, execute.
 *
 * WHAT: the loop thread turns buffered bytes into requests, checks each
 * against the specification and the export (flags, ranges, read-only,
 * negotiated features), answers invalid ones at once, and batches valid
 * ones to the worker pool; a worker runs the engine call
 * (nbd_request_execute).  A lone small READ that the engine can serve
 * without waiting (NCACHE_NOWAIT) is answered by the loop itself.
 * WHY: every error the specification names is decided here, in one place,
 * before any engine call; the engine sees only well-formed requests.
 * INVARIANTS:
 * - Every request that carries a payload (WRITE; with extended headers any
 *   request flagged PAYLOAD_LEN) has its payload consumed, even when it is
 *   refused, so the stream stays in sync.  Absurd payloads (> 1 GiB) close
 *   the connection instead.
 * - in_flight is incremented when a header is parsed and decremented when
 *   its reply has been written or abandoned (nbd_request_release).  The READ
 *   or WRITE buffer is charged to the memory bound (buffer.c) over the same
 *   span; a header whose buffer does not fit is left unparsed.
 * - Requests are recycled through a per-connection free list (loop thread
 *   only), keeping buffers up to REQUEST_KEEP_BUF_BYTES, so the steady-state
 *   hot path does not allocate.
 * THREADS: parse/alloc/release on the loop thread; execute on a worker
 * (or, for an inline READ, a non-blocking engine call on the loop).
 * FAILURE: a bad request magic closes the connection (there is no way to
 * resynchronise); engine errors become NBD error replies (reply.c).
 * NOT HERE: encoding replies (reply.c), socket I/O (conn.c).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "byteorder.h"
#include "compiler.h"
#include "log.h"
#include "server.h"

#define REQUEST_KEEP_BUF_BYTES (4 * 1024 * 1024)
#define MAX_FREE_REQUESTS      64
#define BUF_ALIGN              4096   /* bytes; O_DIRECT-friendly */

/* Every log line about a connection's requests goes through here, prefixed
 * with the peer: the one place to rate-limit them, since a hostile client
 * can cause one per request.  (Engine errors are logged by the engine and
 * become error replies; they are not logged again here.)
 */
static void ATTRIBUTE_FORMAT_PRINTF (3, 4)
request_log (const struct conn *c, enum log_level level, const char *fmt, ...)
{
  char msg[256];
  va_list ap;

  if (!log_enabled (level))
    return;
  va_start (ap, fmt);
  vsnprintf (msg, sizeof msg, fmt, ap);
  va_end (ap);
  log_msg (level, "%s: %s", c->peer, msg);
}

/* Make r->buf at least bufsize bytes (contents not kept).  0 or -ENOMEM. */
static int
grow_buf (struct request *r, size_t bufsize)
{
  void *p;

  if (bufsize <= r->buf_cap)
    return 0;
  free (r->buf);
  r->buf = NULL;
  r->buf_cap = 0;
  if (posix_memalign (&p, BUF_ALIGN, bufsize) != 0)
    return -ENOMEM;
  r->buf = p;
  r->buf_cap = bufsize;
  return 0;
}

struct request *
nbd_request_alloc (struct conn *c, size_t bufsize)
{
  struct request *r = c->free_reqs;

  if (r) {
    c->free_reqs = r->next;
    c->nr_free_reqs--;
    c->free_buf_bytes -= r->buf_cap;
  }
  else if ((r = calloc (1, sizeof *r)) == NULL)
    return NULL;

  if (grow_buf (r, bufsize) < 0) {
    free (r->extents);
    free (r);
    return NULL;
  }
  r->next = NULL;
  r->conn = c;
  r->out.next = NULL;
  r->out.iovcnt = 0;
  r->out.release = nbd_request_release;
  r->buffer_bytes = 0;
  r->error = 0;
  r->errmsg = NULL;
  r->synchronous = false;
  r->nr_chunks = 0;
  r->nr_extents = 0;
  r->nr_state_extents = 0;
  return r;
}

/* The reply has been written (or the connection is gone). */
void
nbd_request_release (struct conn *c, struct outmsg *m)
{
  struct request *r = (struct request *) m;

  c->in_flight--;
  buffer_uncharge (c, r);
  if (r->buf_cap > REQUEST_KEEP_BUF_BYTES ||
      c->free_buf_bytes + r->buf_cap > CONN_FREE_BUF_BYTES) {
    free (r->buf);
    r->buf = NULL;
    r->buf_cap = 0;
  }
  if (c->nr_free_reqs < MAX_FREE_REQUESTS && !c->destroyed) {
    r->next = c->free_reqs;
    c->free_reqs = r;
    c->nr_free_reqs++;
    c->free_buf_bytes += r->buf_cap;
  }
  else {
    free (r->buf);
    free (r->extents);
    free (r);
  }
  conn_reply_sent (c);
}

/* Answer from the loop thread, without a worker. */
static void
finish_now (struct conn *c, struct request *r)
{
  r->synchronous = true;
  reply_prepare (r);
  conn_queue (c, &r->out);
}

static void
dispatch (struct conn *c, struct request *r)
{
  r->next = NULL;
  if (c->batch_tail)
    c->batch_tail->next = r;
  else
    c->batch_head = r;
  c->batch_tail = r;
  c->batch_n++;
}

/* Returns 0, or -errno with *msg set, for the request in r->h. */
static int
validate (struct conn *c, struct request *r, const char **msg)
{
  const struct nbd_req *h = &r->h;
  const struct export *exp = c->exp;
  uint16_t known = NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_DF |
                   NBD_CMD_FLAG_REQ_ONE | NBD_CMD_FLAG_FAST_ZERO;
  uint64_t size = exp->caps.size_bytes;
  bool in_range = range_within (h->offset, h->count, size);

  if (c->extended)
    known |= NBD_CMD_FLAG_PAYLOAD_LEN;
  if (h->flags & ~known) {
    *msg = "unknown command flags";
    return -EINVAL;
  }
  if ((h->flags & NBD_CMD_FLAG_PAYLOAD_LEN) && h->type != NBD_CMD_WRITE) {
    *msg = "payload not allowed with this command";
    return -EINVAL;
  }
  if ((h->flags & NBD_CMD_FLAG_DF) &&
      (h->type != NBD_CMD_READ || !c->structured)) {
    *msg = "DF flag is only valid on reads with structured replies";
    return -EINVAL;
  }
  if ((h->flags & NBD_CMD_FLAG_NO_HOLE) && h->type != NBD_CMD_WRITE_ZEROES) {
    *msg = "NO_HOLE flag is only valid on WRITE_ZEROES";
    return -EINVAL;
  }
  if ((h->flags & NBD_CMD_FLAG_FAST_ZERO) && h->type != NBD_CMD_WRITE_ZEROES) {
    *msg = "FAST_ZERO flag is only valid on WRITE_ZEROES";
    return -EINVAL;
  }
  if ((h->flags & NBD_CMD_FLAG_REQ_ONE) && h->type != NBD_CMD_BLOCK_STATUS) {
    *msg = "REQ_ONE flag is only valid on BLOCK_STATUS";
    return -EINVAL;
  }

  switch (h->type) {
  case NBD_CMD_READ:
    if (h->count == 0 || h->count > NBD_MAX_PAYLOAD) {
      *msg = h->count ? "read larger than the maximum payload"
                      : "zero-length read";
      return -EINVAL;
    }
    if (!in_range) {
      *msg = "read beyond the end of the export";
      return -EINVAL;
    }
    return 0;

  case NBD_CMD_WRITE:
    if (c->eflags & NBD_FLAG_READ_ONLY) {
      *msg = "export is read-only";
      return -EPERM;
    }
    if (h->count == 0 || h->count > NBD_MAX_PAYLOAD) {
      *msg = h->count ? "write larger than the maximum payload"
                      : "zero-length write";
      return -EINVAL;
    }
    if (!in_range) {
      *msg = "write beyond the end of the export";
      return -ENOSPC;
    }
    return 0;

  case NBD_CMD_FLUSH:
    if (h->offset != 0 || h->count != 0) {
      *msg = "flush must have offset and length 0";
      return -EINVAL;
    }
    return 0;

  case NBD_CMD_TRIM:
    if (c->eflags & NBD_FLAG_READ_ONLY) {
      *msg = "export is read-only";
      return -EPERM;
    }
    if (h->count == 0 || !in_range) {
      *msg = h->count ? "trim beyond the end of the export"
                      : "zero-length trim";
      return -EINVAL;
    }
    return 0;

  case NBD_CMD_WRITE_ZEROES:
    if (c->eflags & NBD_FLAG_READ_ONLY) {
      *msg = "export is read-only";
      return -EPERM;
    }
    if (h->count == 0) {
      *msg = "zero-length write zeroes";
      return -EINVAL;
    }
    if (!in_range) {
      *msg = "write zeroes beyond the end of the export";
      return -ENOSPC;
    }
    return 0;

  case NBD_CMD_CACHE:
    if (h->count == 0 || !in_range) {
      *msg = h->count ? "cache beyond the end of the export"
                      : "zero-length cache";
      return -EINVAL;
    }
    return 0;

  case NBD_CMD_BLOCK_STATUS:
    if (!c->meta_base_allocation && !c->meta_nbdcache_state) {
      *msg = "no meta context negotiated";
      return -EINVAL;
    }
    if (h->count == 0 || !in_range) {
      *msg = h->count ? "block status beyond the end of the export"
                      : "zero-length block status";
      return -EINVAL;
    }
    return 0;

  default:
    *msg = "unknown command";
    return -EINVAL;
  }
}

/* Bytes of payload that follow this request's header on the wire. */
static uint64_t
payload_bytes (const struct conn *c, const struct nbd_req *h)
{
  if (h->type == NBD_CMD_WRITE)
    return h->count;
  if (c->extended && (h->flags & NBD_CMD_FLAG_PAYLOAD_LEN))
    return h->count;
  return 0;
}

/* Bytes of buffer a request will hold if it is valid. */
static uint64_t
buffer_need (const struct nbd_req *h)
{
  if ((h->type == NBD_CMD_READ || h->type == NBD_CMD_WRITE) &&
      h->count <= NBD_MAX_PAYLOAD)
    return h->count;
  return 0;
}

/* A lone small READ — nothing else of this connection in flight — is
 * answered here, on the loop thread, when the engine can serve it without
 * waiting (NCACHE_NOWAIT: a page-cache hit of a file backing, or cache
 * hits from a buffered cache device).  At queue depth 1 the two hand-offs
 * loop -> worker -> loop (a futex wake-up and an ev_async one, each a
 * context switch) cost more than the read itself.  Anything that could
 * wait (a miss, a remote, an O_DIRECT cache, a busy index lock) is
 * -EAGAIN at once and goes to the workers as before; with more requests
 * in flight the workers serve them in parallel, so this never takes the
 * loop's time from other connections for long.  True if answered.
 */
_Static_assert (INLINE_READ_MAX_BYTES < READ_HOLE_MIN_BYTES,
                "an inline read never needs the hole lookup");

static bool
try_inline_read (struct conn *c, struct request *r)
{
  int err;

  if (c->in_flight != 1 || r->h.count > INLINE_READ_MAX_BYTES)
    return false;
  err = ncache_pread (c->exp->nc, r->buf, r->h.count, r->h.offset,
                      NCACHE_NOWAIT);
  if (err == -EAGAIN)
    return false;
  r->chunks[0] = (struct read_chunk) {
    .offset = r->h.offset, .length = r->h.count, .hole = false,
  };
  r->nr_chunks = 1;
  r->error = err;
  reply_prepare (r);
  conn_queue (c, &r->out);
  return true;
}

static void
stop_reading_until_drained (struct conn *c)
{
  c->phase = PHASE_CLOSING;
  c->close_after_output = true;
  conn_set_reading (c, false);
}

/* Consume one message from the input buffer.  Returns true to be called
 * again, false when more input is needed or parsing must pause.
 */
bool
nbd_request_parse (struct conn *c)
{
  size_t avail = c->rend - c->rstart;
  size_t hsize = nbd_request_size (c->extended);
  struct request *r;
  struct nbd_req peek;
  bool bad_magic;
  const char *msg = NULL;
  uint64_t payload;
  int err;

  if (c->discard_left > 0) {
    size_t take = avail < c->discard_left ? avail : c->discard_left;

    c->rstart += take;
    c->discard_left -= take;
    if (c->discard_left > 0)
      return false;
    r = c->after_discard;
    c->after_discard = NULL;
    finish_now (c, r);
    return true;
  }

  if (c->payload_req) {
    uint64_t want;
    size_t take;

    r = c->payload_req;
    want = r->h.count - c->payload_got;
    take = avail < want ? avail : want;
    memcpy ((char *) r->buf + c->payload_got, c->rbuf + c->rstart, take);
    c->rstart += take;
    c->payload_got += take;
    if (c->payload_got < r->h.count)
      return false;
    c->payload_req = NULL;
    if (!devring_write (c, r))
      dispatch (c, r);
    return true;
  }

  if (c->in_flight >= CONN_MAX_IN_FLIGHT) {
    conn_set_reading (c, false);    /* conn_reply_sent resumes at 64 */
    return false;
  }
  if (avail < hsize)
    return false;
  /* A request whose buffer does not fit the memory bound waits, unread,
   * with the socket no longer read (buffer.c resumes it).
   */
  bad_magic = nbd_decode_request (c->rbuf + c->rstart, c->extended,
                                  &peek) < 0;
  if (!bad_magic && !buffer_admit (c, buffer_need (&peek)))
    return false;

  if ((r = nbd_request_alloc (c, 0)) == NULL) {
    request_log (c, LOG_LEVEL_ERROR, "out of memory");
    conn_close (c);
    return false;
  }
  if (bad_magic) {
    request_log (c, LOG_LEVEL_INFO, "bad request magic 0x%08x, closing",
                 get_be32 (c->rbuf + c->rstart));
    c->in_flight++;
    nbd_request_release (c, &r->out);
    conn_close (c);
    return false;
  }
  r->h = peek;
  c->rstart += hsize;
  c->in_flight++;

  if (r->h.type == NBD_CMD_DISC) {
    request_log (c, LOG_LEVEL_DEBUG, "NBD_CMD_DISC");
    nbd_request_release (c, &r->out);
    stop_reading_until_drained (c);
    conn_flush_output (c);
    return false;
  }

  payload = payload_bytes (c, &r->h);
  err = validate (c, r, &msg);
  if (err == 0 && conn_shutting_down (c)) {
    err = -ESHUTDOWN;
    msg = c->srv->stopping ? "server is shutting down"
                           : "export removed by a reload";
  }
  if (err < 0) {
    request_log (c, LOG_LEVEL_DEBUG, "%s: %s", nbd_cmd_name (r->h.type), msg);
    r->error = err;
    r->errmsg = msg;
    if (payload > 0) {
      if (payload > MAX_DISCARD_BYTES) {
        request_log (c, LOG_LEVEL_INFO,
                     "%s with a %" PRIu64 "-byte payload, closing",
                     nbd_cmd_name (r->h.type), payload);
        nbd_request_release (c, &r->out);
        conn_close (c);
        return false;
      }
      c->discard_left = payload;
      c->after_discard = r;
      return true;
    }
    finish_now (c, r);
    return true;
  }

  if ((r->h.type == NBD_CMD_WRITE || r->h.type == NBD_CMD_READ) &&
      grow_buf (r, r->h.count) < 0) {
    request_log (c, LOG_LEVEL_ERROR,
                 "out of memory for a %" PRIu64 "-byte request", r->h.count);
    nbd_request_release (c, &r->out);
    conn_close (c);
    return false;
  }
  if (r->h.type == NBD_CMD_WRITE || r->h.type == NBD_CMD_READ)
    buffer_charge (c, r, r->h.count);

  if (r->h.type == NBD_CMD_WRITE) {
    c->payload_req = r;
    c->payload_got = 0;
    return true;                /* the payload branch above takes over */
  }
  if (r->h.type == NBD_CMD_READ &&
      (try_inline_read (c, r) || devring_read (c, r)))
    return true;
  dispatch (c, r);
  return true;
}

/* ---- worker side ---- */

/* ncache_pread_extents' report: the reply's chunks, extent by extent.
 * A hole chunk's bytes are not in r->buf unless it had to become data.
 */
static int
collect_read_chunk (void *opaque, uint64_t offset, uint64_t length,
                    uint32_t flags)
{
  struct request *r = opaque;
  bool hole = (flags & NCACHE_EXTENT_ZERO) != 0;
  struct read_chunk *last = r->nr_chunks ? &r->chunks[r->nr_chunks - 1] : NULL;
  uint64_t end = r->h.offset + r->h.count;

  if (offset >= end)
    return 1;
  if (offset + length > end)
    length = end - offset;
  if (last && last->hole == hole && last->offset + last->length == offset) {
    last->length += length;
    return 0;
  }
  if (r->nr_chunks == MAX_READ_CHUNKS) {
    /* Out of chunk slots: the rest is sent as data (the engine fills in
     * every later byte; this chunk's zeros are ours to write).
     */
    if (last->hole)
      memset ((char *) r->buf + (last->offset - r->h.offset), 0,
              last->length);
    last->hole = false;
    last->length = end - last->offset;
    return 1;
  }
  r->chunks[r->nr_chunks++] = (struct read_chunk) {
    .offset = offset, .length = length, .hole = hole,
  };
  return 0;
}

/* A large structured READ (without DF) reports zero ranges as hole
 * chunks; the engine finds them in the same walk of its index that
 * reads the data (ncache_pread_extents).  Anything else is one data chunk.
 */
static int
execute_read (struct request *r)
{
  struct conn *c = r->conn;
  struct ncache_export *nc = c->exp->nc;
  int err;

  r->nr_chunks = 0;
  if (c->structured && !(r->h.flags & NBD_CMD_FLAG_DF) &&
      r->h.count >= READ_HOLE_MIN_BYTES && c->exp->caps.can_extents) {
    err = ncache_pread_extents (nc, r->buf, r->h.count, r->h.offset, 0,
                                collect_read_chunk, r);
    if (err == 0 && (r->nr_chunks == 0 ||
                     r->chunks[r->nr_chunks - 1].offset +
                     r->chunks[r->nr_chunks - 1].length
                     != r->h.offset + r->h.count))
      err = -EIO;               /* the engine broke its contract */
    return err;
  }
  r->chunks[0] = (struct read_chunk) {
    .offset = r->h.offset, .length = r->h.count, .hole = false,
  };
  r->nr_chunks = 1;
  return ncache_pread (nc, r->buf, r->h.count, r->h.offset, 0);
}

/* Descriptors of one meta context, appended to r->extents after those of
 * the contexts collected before it.
 */
struct bs_collector {
  struct request *r;
  unsigned first;               /* index of this context's first descriptor */
  unsigned n;                   /* descriptors so far */
  uint32_t mask;                /* the flags this context defines */
};

static int
collect_block_status (void *opaque, uint64_t offset, uint64_t length,
                      uint32_t flags)
{
  struct bs_collector *bc = opaque;
  struct request *r = bc->r;
  bool extended = r->conn->extended;
  size_t dsize = extended ? 16 : 8;
  uint64_t end = r->h.offset + r->h.count;
  unsigned char *d;

  if (offset >= end)
    return 1;
  if (offset + length > end)
    length = end - offset;
  if (!extended && length > UINT32_MAX)
    length = UINT32_MAX & ~UINT32_C (4095);
  flags &= bc->mask;

  /* Merge with the previous descriptor when the status is the same. */
  if (bc->n > 0) {
    unsigned char *prev = r->extents + (bc->first + bc->n - 1) * dsize;
    uint64_t plen = extended ? get_be64 (prev) : get_be32 (prev);
    uint64_t pflags = extended ? get_be64 (prev + 8) : get_be32 (prev + 4);
    if (pflags == flags && (extended || plen + length <= UINT32_MAX)) {
      if (extended)
        put_be64 (prev, plen + length);
      else
        put_be32 (prev, plen + length);
      return 0;
    }
    if ((r->h.flags & NBD_CMD_FLAG_REQ_ONE) ||
        bc->n >= MAX_EXTENTS_PER_REPLY)
      return 1;
  }
  if ((bc->first + bc->n + 1) * dsize > r->extents_bytes) {
    size_t n = r->extents_bytes ? r->extents_bytes * 2 : 64 * dsize;
    unsigned char *p = realloc (r->extents, n);
    if (p == NULL)
      return -ENOMEM;
    r->extents = p;
    r->extents_bytes = n;
  }
  d = r->extents + (bc->first + bc->n) * dsize;
  if (extended) {
    put_be64 (d, length);
    put_be64 (d + 8, flags);
  }
  else {
    put_be32 (d, length);
    put_be32 (d + 4, flags);
  }
  bc->n++;
  return 0;
}

/* BLOCK_STATUS: one list of descriptors per selected context, base
 * allocation first (reply.c sends them in the same order).
 */
static int
execute_block_status (struct request *r)
{
  struct conn *c = r->conn;
  const struct nbd_req *h = &r->h;
  uint32_t flags = (h->flags & NBD_CMD_FLAG_REQ_ONE) ? NCACHE_REQ_ONE : 0;
  struct bs_collector bc = { .r = r };
  int err;

  r->nr_extents = r->nr_state_extents = 0;
  if (c->meta_base_allocation) {
    bc.mask = NBD_STATE_HOLE | NBD_STATE_ZERO;
    err = ncache_extents (c->exp->nc, h->count, h->offset, flags,
                          collect_block_status, &bc);
    if (err < 0)
      return err;
    if (bc.n == 0)
      return -EIO;              /* the engine must report something */
    r->nr_extents = bc.n;
  }
  if (c->meta_nbdcache_state) {
    bc = (struct bs_collector) {
      .r = r, .first = r->nr_extents,
      .mask = NCACHE_STATE_CACHED | NCACHE_STATE_DIRTY | NCACHE_STATE_ZERO,
    };
    err = ncache_state_extents (c->exp->nc, h->count, h->offset, flags,
                                collect_block_status, &bc);
    if (err < 0)
      return err;
    if (bc.n == 0)
      return -EIO;
    r->nr_state_extents = bc.n;
  }
  return 0;
}

void
nbd_request_execute (struct request *r)
{
  struct ncache_export *nc = r->conn->exp->nc;
  const struct nbd_req *h = &r->h;
  uint32_t fua = (h->flags & NBD_CMD_FLAG_FUA) ? NCACHE_FUA : 0;
  uint32_t zflags;
  int err;

  switch (h->type) {
  case NBD_CMD_READ:
    err = execute_read (r);
    break;
  case NBD_CMD_WRITE:
    err = ncache_pwrite (nc, r->buf, h->count, h->offset, fua);
    break;
  case NBD_CMD_FLUSH:
    err = ncache_flush (nc, 0);
    break;
  case NBD_CMD_TRIM:
    err = ncache_trim (nc, h->count, h->offset, fua);
    break;
  case NBD_CMD_WRITE_ZEROES:
    zflags = fua;
    if (!(h->flags & NBD_CMD_FLAG_NO_HOLE))
      zflags |= NCACHE_MAY_TRIM;
    if (h->flags & NBD_CMD_FLAG_FAST_ZERO)
      zflags |= NCACHE_FAST_ZERO;
    err = ncache_zero (nc, h->count, h->offset, zflags);
    break;
  case NBD_CMD_CACHE:
    err = ncache_cache (nc, h->count, h->offset, 0);
    break;
  case NBD_CMD_BLOCK_STATUS:
    err = execute_block_status (r);
    break;
  default:
    err = -EINVAL;              /* validate() let nothing else through */
    break;
  }
  r->error = err;
  if (err < 0)
    r->errmsg = NULL;           /* reply.c uses strerror */
}
