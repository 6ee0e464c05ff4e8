/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-wire.h — encoding and decoding of NBD transmission messages.
 *
 * WHAT: pure functions that turn request headers from bytes into a struct,
 * and reply headers / chunk headers / option replies from values into
 * bytes, for both the compact (28-byte request) and the extended-header
 * (32-byte request and reply) forms; and the one errno -> NBD error map.
 * WHY: the server, the raw-socket test clients and the unit tests share one
 * byte-exact definition.  No allocation, no I/O: the hot path encodes
 * straight into a caller's buffer.
 * INVARIANTS: buffers are at least the size the function returns / documents
 * (NBD_MAX_HEADER_BYTES is always enough).
 */
#ifndef NBDCACHE_NBD_WIRE_H
#define NBDCACHE_NBD_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nbd-proto.h"

#define NBD_MAX_HEADER_BYTES 32

/* A decoded request header (either form). */
struct nbd_req {
  uint16_t flags;               /* NBD_CMD_FLAG_* */
  uint16_t type;                /* NBD_CMD_* */
  uint64_t cookie;
  uint64_t offset;              /* bytes */
  uint64_t count;               /* bytes (32-bit in compact form) */
};

/* 28 (compact) or 32 (extended). */
static inline size_t
nbd_request_size (bool extended)
{
  return extended ? sizeof (struct nbd_extended_request)
                  : sizeof (struct nbd_request);
}

/* 0, or -EBADMSG if the magic is not the one for this form. */
int nbd_decode_request (const void *buf, bool extended, struct nbd_req *out);
/* Returns bytes written (28 or 32).  For clients and tests. */
size_t nbd_encode_request (void *buf, bool extended, const struct nbd_req *req);

/* Simple reply: 16 bytes. */
size_t nbd_encode_simple_reply (void *buf, uint64_t cookie, uint32_t nbd_error);

/* Structured (20 bytes) or extended (32 bytes) chunk header.  `offset` is
 * the request's offset and is only encoded in the extended form.
 */
size_t nbd_encode_chunk_header (void *buf, bool extended, uint16_t flags,
                                uint16_t type, uint64_t cookie,
                                uint64_t offset, uint64_t payload_len);

/* Option reply header: 20 bytes. */
size_t nbd_encode_option_reply (void *buf, uint32_t option, uint32_t reply,
                                uint32_t payload_len);

/* Host errno (positive or negative) -> NBD_E* on the wire.  Unknown errors
 * become NBD_EINVAL for EINVAL-like codes and NBD_EIO otherwise; EROFS and
 * EPERM become NBD_EPERM, EDQUOT/EFBIG/ENOSPC become NBD_ENOSPC, ENOTSUP and
 * EOPNOTSUPP become NBD_ENOTSUP, EOVERFLOW stays, ESHUTDOWN stays, ENOMEM
 * stays.  0 -> NBD_SUCCESS.
 */
uint32_t nbd_errno_to_wire (int err);

#endif /* NBDCACHE_NBD_WIRE_H */
