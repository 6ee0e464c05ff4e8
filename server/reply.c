/* SPDX-License-Identifier: BSD-3-Clause */
/* reply.c — encodes a finished request's reply into its output message.
 *
 * WHAT: builds the iovec list for r->out: a simple reply; structured or
 * extended chunks (OFFSET_DATA / OFFSET_HOLE for reads; BLOCK_STATUS or
 * BLOCK_STATUS_EXT, one chunk per selected meta context; NONE); or an
 * error — an ERROR chunk carrying a message when structured replies are
 * on, else the simple reply's error field.
 * WHY: one place knows the three reply formats; the data of a read is
 * never copied: its iovec points into the request's buffer.
 * INVARIANTS: with extended headers every reply is an extended chunk; with
 * only structured replies, reads use chunks and other successes use a
 * simple reply (allowed by the spec since they carry no payload).
 * Host errno values are translated to NBD error numbers here and only here
 * (nbd_errno_to_wire).
 * THREADS: runs on the worker that executed the request, or on the loop
 * thread for requests refused during validation; touches only r.
 * FAILURE: none; every input has an encoding.
 */
#include <config.h>

#include <errno.h>
#include <string.h>

#include "byteorder.h"
#include "server.h"

static void
add_iov (struct request *r, void *base, size_t len)
{
  r->out.iov[r->out.iovcnt].iov_base = base;
  r->out.iov[r->out.iovcnt].iov_len = len;
  r->out.iovcnt++;
}

static void
prepare_error (struct request *r, bool structured, bool extended)
{
  uint32_t nbd_err = nbd_errno_to_wire (r->error);
  const char *msg = r->errmsg ? r->errmsg : strerror (-r->error);
  size_t msglen = strlen (msg);
  unsigned char *p = r->hdr;
  size_t n;

  if (!structured) {
    add_iov (r, p, nbd_encode_simple_reply (p, r->h.cookie, nbd_err));
    return;
  }
  if (msglen > NBD_MAX_STRING)
    msglen = NBD_MAX_STRING;
  n = nbd_encode_chunk_header (p, extended, NBD_REPLY_FLAG_DONE,
                               NBD_REPLY_TYPE_ERROR, r->h.cookie, r->h.offset,
                               6 + msglen);
  put_be32 (p + n, nbd_err);
  put_be16 (p + n + 4, msglen);
  add_iov (r, p, n + 6);
  add_iov (r, (void *) msg, msglen);
}

static void
prepare_read (struct request *r, bool structured, bool extended)
{
  unsigned char *p = r->hdr;
  unsigned i;

  if (!structured) {
    add_iov (r, p, nbd_encode_simple_reply (p, r->h.cookie, NBD_SUCCESS));
    add_iov (r, r->buf, r->h.count);
    return;
  }
  for (i = 0; i < r->nr_chunks; i++) {
    const struct read_chunk *ch = &r->chunks[i];
    uint16_t flags = i + 1 == r->nr_chunks ? NBD_REPLY_FLAG_DONE : 0;
    size_t n;

    if (ch->hole) {
      n = nbd_encode_chunk_header (p, extended, flags,
                                   NBD_REPLY_TYPE_OFFSET_HOLE, r->h.cookie,
                                   r->h.offset, 12);
      put_be64 (p + n, ch->offset);
      put_be32 (p + n + 8, ch->length);
      add_iov (r, p, n + 12);
      p += n + 12;
    }
    else {
      n = nbd_encode_chunk_header (p, extended, flags,
                                   NBD_REPLY_TYPE_OFFSET_DATA, r->h.cookie,
                                   r->h.offset, 8 + ch->length);
      put_be64 (p + n, ch->offset);
      add_iov (r, p, n + 8);
      add_iov (r, (char *) r->buf + (ch->offset - r->h.offset), ch->length);
      p += n + 8;
    }
  }
}

/* One BLOCK_STATUS (or BLOCK_STATUS_EXT) chunk per selected context, in
 * the order nbd-request.c collected them; only the last carries DONE.
 */
static void
prepare_block_status (struct request *r, bool extended)
{
  unsigned char *p = r->hdr;
  size_t dsize = extended ? 16 : 8;
  size_t prefix = extended ? 8 : 4;
  struct bs_chunk {
    uint32_t id;                /* the context's id from SET_META_CONTEXT */
    unsigned first, n;          /* its descriptors in r->extents */
  } ctx[2];
  unsigned nr_ctx = 0, i;

  if (r->conn->meta_base_allocation)
    ctx[nr_ctx++] = (struct bs_chunk) {
      META_CONTEXT_BASE_ALLOCATION_ID, 0, r->nr_extents,
    };
  if (r->conn->meta_nbdcache_state)
    ctx[nr_ctx++] = (struct bs_chunk) {
      META_CONTEXT_NBDCACHE_STATE_ID, r->nr_extents, r->nr_state_extents,
    };
  for (i = 0; i < nr_ctx; i++) {
    size_t n = nbd_encode_chunk_header (p, extended,
                                        i + 1 == nr_ctx ? NBD_REPLY_FLAG_DONE
                                                        : 0,
                                        extended
                                        ? NBD_REPLY_TYPE_BLOCK_STATUS_EXT
                                        : NBD_REPLY_TYPE_BLOCK_STATUS,
                                        r->h.cookie, r->h.offset,
                                        prefix + ctx[i].n * dsize);

    put_be32 (p + n, ctx[i].id);
    if (extended)
      put_be32 (p + n + 4, ctx[i].n);
    add_iov (r, p, n + prefix);
    add_iov (r, r->extents + ctx[i].first * dsize, ctx[i].n * dsize);
    p += n + prefix;
  }
}

void
reply_prepare (struct request *r)
{
  bool extended = r->conn->extended;
  bool structured = r->conn->structured || extended;
  unsigned char *p = r->hdr;

  r->out.iovcnt = 0;
  if (r->error < 0) {
    prepare_error (r, structured, extended);
    return;
  }
  switch (r->h.type) {
  case NBD_CMD_READ:
    prepare_read (r, structured, extended);
    return;
  case NBD_CMD_BLOCK_STATUS:
    prepare_block_status (r, extended);
    return;
  default:
    if (extended)
      add_iov (r, p, nbd_encode_chunk_header (p, true, NBD_REPLY_FLAG_DONE,
                                              NBD_REPLY_TYPE_NONE, r->h.cookie,
                                              r->h.offset, 0));
    else
      add_iov (r, p, nbd_encode_simple_reply (p, r->h.cookie, NBD_SUCCESS));
    return;
  }
}
