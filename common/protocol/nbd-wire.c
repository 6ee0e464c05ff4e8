/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-wire.c — byte-exact NBD transmission headers (see nbd-wire.h).
 *
 * WHAT: encode/decode of request, reply, chunk and option-reply headers.
 * WHY: shared by the server's hot path and the test clients.
 * FAILURE: decode reports a wrong magic as -EBADMSG; nothing else fails.
 * NOT HERE: validation of ranges and flags (that is the server's policy).
 */
#include <config.h>

#include <errno.h>
#include <string.h>

#include "byteorder.h"
#include "nbd-wire.h"

int
nbd_decode_request (const void *buf, bool extended, struct nbd_req *out)
{
  const unsigned char *p = buf;
  uint32_t magic = get_be32 (p);

  if (magic != (extended ? NBD_EXTENDED_REQUEST_MAGIC : NBD_REQUEST_MAGIC))
    return -EBADMSG;
  out->flags = get_be16 (p + 4);
  out->type = get_be16 (p + 6);
  out->cookie = get_be64 (p + 8);
  out->offset = get_be64 (p + 16);
  out->count = extended ? get_be64 (p + 24) : get_be32 (p + 24);
  return 0;
}

size_t
nbd_encode_request (void *buf, bool extended, const struct nbd_req *req)
{
  unsigned char *p = buf;

  put_be32 (p, extended ? NBD_EXTENDED_REQUEST_MAGIC : NBD_REQUEST_MAGIC);
  put_be16 (p + 4, req->flags);
  put_be16 (p + 6, req->type);
  put_be64 (p + 8, req->cookie);
  put_be64 (p + 16, req->offset);
  if (extended) {
    put_be64 (p + 24, req->count);
    return 32;
  }
  put_be32 (p + 24, (uint32_t) req->count);
  return 28;
}

size_t
nbd_encode_simple_reply (void *buf, uint64_t cookie, uint32_t nbd_error)
{
  unsigned char *p = buf;

  put_be32 (p, NBD_SIMPLE_REPLY_MAGIC);
  put_be32 (p + 4, nbd_error);
  put_be64 (p + 8, cookie);
  return 16;
}

size_t
nbd_encode_chunk_header (void *buf, bool extended, uint16_t flags,
                         uint16_t type, uint64_t cookie, uint64_t offset,
                         uint64_t payload_len)
{
  unsigned char *p = buf;

  put_be32 (p, extended ? NBD_EXTENDED_REPLY_MAGIC : NBD_STRUCTURED_REPLY_MAGIC);
  put_be16 (p + 4, flags);
  put_be16 (p + 6, type);
  put_be64 (p + 8, cookie);
  if (extended) {
    put_be64 (p + 16, offset);
    put_be64 (p + 24, payload_len);
    return 32;
  }
  put_be32 (p + 16, (uint32_t) payload_len);
  return 20;
}

size_t
nbd_encode_option_reply (void *buf, uint32_t option, uint32_t reply,
                         uint32_t payload_len)
{
  unsigned char *p = buf;

  put_be64 (p, NBD_REP_MAGIC);
  put_be32 (p + 8, option);
  put_be32 (p + 12, reply);
  put_be32 (p + 16, payload_len);
  return 20;
}

uint32_t
nbd_errno_to_wire (int err)
{
  if (err < 0)
    err = -err;
  switch (err) {
  case 0:          return NBD_SUCCESS;
  case EROFS:
  case EPERM:
  case EACCES:     return NBD_EPERM;
  case EIO:        return NBD_EIO;
  case ENOMEM:     return NBD_ENOMEM;
  case EINVAL:
  case ERANGE:
  case EBADMSG:    return NBD_EINVAL;
#ifdef EDQUOT
  case EDQUOT:
#endif
  case EFBIG:
  case ENOSPC:     return NBD_ENOSPC;
  case EOVERFLOW:  return NBD_EOVERFLOW;
#if defined (EOPNOTSUPP) && EOPNOTSUPP != ENOTSUP
  case EOPNOTSUPP:
#endif
  case ENOTSUP:    return NBD_ENOTSUP;
  case ESHUTDOWN:  return NBD_ESHUTDOWN;
  default:         return NBD_EIO;
  }
}
