/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-proto.h — NBD wire constants and structures.
 *
 * WHAT: every magic, option, reply, info, command, flag, chunk type and
 * error number of the NBD protocol (NetworkBlockDevice/nbd doc/proto.md),
 * plus packed structs for the fixed-size messages, with pinned sizes.
 * WHY: the server, the tests and the raw-socket clients share one
 * definition; nothing here depends on the engine.
 * INVARIANTS: all wire integers are big-endian; the structs are used only
 * as size/layout documentation and for building replies — parse incoming
 * bytes with byteorder.h, never by casting a receive buffer.
 * NOT HERE: policy (what the server supports), I/O.
 */
#ifndef NBDCACHE_NBD_PROTO_H
#define NBDCACHE_NBD_PROTO_H

#include <stdint.h>

/* ---- handshake ---- */
#define NBD_MAGIC               UINT64_C (0x4e42444d41474943) /* "NBDMAGIC" */
#define NBD_IHAVEOPT            UINT64_C (0x49484156454F5054) /* "IHAVEOPT" */
#define NBD_REP_MAGIC           UINT64_C (0x3e889045565a9)

/* Handshake flags (server, 16 bits). */
#define NBD_FLAG_FIXED_NEWSTYLE (1 << 0)
#define NBD_FLAG_NO_ZEROES      (1 << 1)
/* Client flags (32 bits). */
#define NBD_FLAG_C_FIXED_NEWSTYLE NBD_FLAG_FIXED_NEWSTYLE
#define NBD_FLAG_C_NO_ZEROES      NBD_FLAG_NO_ZEROES

/* Options. */
#define NBD_OPT_EXPORT_NAME       1
#define NBD_OPT_ABORT             2
#define NBD_OPT_LIST              3
#define NBD_OPT_PEEK_EXPORT       4 /* withdrawn */
#define NBD_OPT_STARTTLS          5
#define NBD_OPT_INFO              6
#define NBD_OPT_GO                7
#define NBD_OPT_STRUCTURED_REPLY  8
#define NBD_OPT_LIST_META_CONTEXT 9
#define NBD_OPT_SET_META_CONTEXT  10
#define NBD_OPT_EXTENDED_HEADERS  11

/* Option reply types. */
#define NBD_REP_ERR_BIT              UINT32_C (0x80000000)
#define NBD_REP_ACK                  1
#define NBD_REP_SERVER               2
#define NBD_REP_INFO                 3
#define NBD_REP_META_CONTEXT         4
#define NBD_REP_ERR_UNSUP            (NBD_REP_ERR_BIT | 1)
#define NBD_REP_ERR_POLICY           (NBD_REP_ERR_BIT | 2)
#define NBD_REP_ERR_INVALID          (NBD_REP_ERR_BIT | 3)
#define NBD_REP_ERR_PLATFORM         (NBD_REP_ERR_BIT | 4)
#define NBD_REP_ERR_TLS_REQD         (NBD_REP_ERR_BIT | 5)
#define NBD_REP_ERR_UNKNOWN          (NBD_REP_ERR_BIT | 6)
#define NBD_REP_ERR_SHUTDOWN         (NBD_REP_ERR_BIT | 7)
#define NBD_REP_ERR_BLOCK_SIZE_REQD  (NBD_REP_ERR_BIT | 8)
#define NBD_REP_ERR_TOO_BIG          (NBD_REP_ERR_BIT | 9)
#define NBD_REP_ERR_EXT_HEADER_REQD  (NBD_REP_ERR_BIT | 10)

/* NBD_REP_INFO types. */
#define NBD_INFO_EXPORT      0
#define NBD_INFO_NAME        1
#define NBD_INFO_DESCRIPTION 2
#define NBD_INFO_BLOCK_SIZE  3

/* Transmission flags (16 bits). */
#define NBD_FLAG_HAS_FLAGS          (1 << 0)
#define NBD_FLAG_READ_ONLY          (1 << 1)
#define NBD_FLAG_SEND_FLUSH         (1 << 2)
#define NBD_FLAG_SEND_FUA           (1 << 3)
#define NBD_FLAG_ROTATIONAL         (1 << 4)
#define NBD_FLAG_SEND_TRIM          (1 << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES  (1 << 6)
#define NBD_FLAG_SEND_DF            (1 << 7)
#define NBD_FLAG_CAN_MULTI_CONN     (1 << 8)
#define NBD_FLAG_SEND_RESIZE        (1 << 9)
#define NBD_FLAG_SEND_CACHE         (1 << 10)
#define NBD_FLAG_SEND_FAST_ZERO     (1 << 11)
#define NBD_FLAG_BLOCK_STAT_PAYLOAD (1 << 12)

/* ---- transmission ---- */
#define NBD_REQUEST_MAGIC          UINT32_C (0x25609513)
#define NBD_EXTENDED_REQUEST_MAGIC UINT32_C (0x21e41c71)
#define NBD_SIMPLE_REPLY_MAGIC     UINT32_C (0x67446698)
#define NBD_STRUCTURED_REPLY_MAGIC UINT32_C (0x668e33ef)
#define NBD_EXTENDED_REPLY_MAGIC   UINT32_C (0x6e8a278c)

/* Commands. */
#define NBD_CMD_READ         0
#define NBD_CMD_WRITE        1
#define NBD_CMD_DISC         2
#define NBD_CMD_FLUSH        3
#define NBD_CMD_TRIM         4
#define NBD_CMD_CACHE        5
#define NBD_CMD_WRITE_ZEROES 6
#define NBD_CMD_BLOCK_STATUS 7
#define NBD_CMD_RESIZE       8

/* Command flags (16 bits). */
#define NBD_CMD_FLAG_FUA         (1 << 0)
#define NBD_CMD_FLAG_NO_HOLE     (1 << 1)
#define NBD_CMD_FLAG_DF          (1 << 2)
#define NBD_CMD_FLAG_REQ_ONE     (1 << 3)
#define NBD_CMD_FLAG_FAST_ZERO   (1 << 4)
#define NBD_CMD_FLAG_PAYLOAD_LEN (1 << 5)

/* Structured reply flags and chunk types. */
#define NBD_REPLY_FLAG_DONE              (1 << 0)
#define NBD_REPLY_TYPE_NONE              0
#define NBD_REPLY_TYPE_OFFSET_DATA       1
#define NBD_REPLY_TYPE_OFFSET_HOLE       2
#define NBD_REPLY_TYPE_BLOCK_STATUS      5
#define NBD_REPLY_TYPE_BLOCK_STATUS_EXT  6
#define NBD_REPLY_TYPE_ERROR_BIT         (1 << 15)
#define NBD_REPLY_TYPE_ERROR             (NBD_REPLY_TYPE_ERROR_BIT | 1)
#define NBD_REPLY_TYPE_ERROR_OFFSET      (NBD_REPLY_TYPE_ERROR_BIT | 2)

/* base:allocation states. */
#define NBD_STATE_HOLE (1 << 0)
#define NBD_STATE_ZERO (1 << 1)

/* Error numbers on the wire (not the host's errno values). */
#define NBD_SUCCESS    0
#define NBD_EPERM      1
#define NBD_EIO        5
#define NBD_ENOMEM     12
#define NBD_EINVAL     22
#define NBD_ENOSPC     28
#define NBD_EOVERFLOW  75
#define NBD_ENOTSUP    95
#define NBD_ESHUTDOWN  108

/* ---- limits ---- */
#define NBD_MAX_STRING          4096            /* bytes; names, messages */
#define NBD_MIN_BLOCK_SIZE      1               /* bytes */
#define NBD_PREFERRED_BLOCK_SIZE 4096           /* bytes */
#define NBD_MAX_PAYLOAD         (64 * 1024 * 1024) /* bytes */

/* ---- fixed-size wire messages ---- */
struct nbd_new_handshake {
  uint64_t nbdmagic;            /* NBD_MAGIC */
  uint64_t version;             /* NBD_IHAVEOPT */
  uint16_t gflags;              /* handshake flags */
} __attribute__ ((__packed__));

struct nbd_option_header {
  uint64_t magic;               /* NBD_IHAVEOPT */
  uint32_t option;
  uint32_t optlen;              /* bytes of data following */
} __attribute__ ((__packed__));

struct nbd_option_reply {
  uint64_t magic;               /* NBD_REP_MAGIC */
  uint32_t option;
  uint32_t reply;
  uint32_t replylen;            /* bytes of data following */
} __attribute__ ((__packed__));

/* Reply to NBD_OPT_EXPORT_NAME (124 zero bytes follow unless NO_ZEROES). */
struct nbd_export_name_reply {
  uint64_t exportsize;          /* bytes */
  uint16_t eflags;
} __attribute__ ((__packed__));

struct nbd_info_export {
  uint16_t info;                /* NBD_INFO_EXPORT */
  uint64_t exportsize;          /* bytes */
  uint16_t eflags;
} __attribute__ ((__packed__));

struct nbd_info_block_size {
  uint16_t info;                /* NBD_INFO_BLOCK_SIZE */
  uint32_t minimum;             /* bytes */
  uint32_t preferred;           /* bytes */
  uint32_t maximum;             /* bytes */
} __attribute__ ((__packed__));

struct nbd_request {
  uint32_t magic;               /* NBD_REQUEST_MAGIC */
  uint16_t flags;
  uint16_t type;
  uint64_t cookie;
  uint64_t offset;              /* bytes */
  uint32_t count;               /* bytes */
} __attribute__ ((__packed__));

struct nbd_extended_request {
  uint32_t magic;               /* NBD_EXTENDED_REQUEST_MAGIC */
  uint16_t flags;
  uint16_t type;
  uint64_t cookie;
  uint64_t offset;              /* bytes */
  uint64_t count;               /* bytes (payload length for WRITE) */
} __attribute__ ((__packed__));

struct nbd_simple_reply {
  uint32_t magic;               /* NBD_SIMPLE_REPLY_MAGIC */
  uint32_t error;               /* NBD_E* */
  uint64_t cookie;
} __attribute__ ((__packed__));

struct nbd_structured_reply {
  uint32_t magic;               /* NBD_STRUCTURED_REPLY_MAGIC */
  uint16_t flags;               /* NBD_REPLY_FLAG_* */
  uint16_t type;                /* NBD_REPLY_TYPE_* */
  uint64_t cookie;
  uint32_t length;              /* bytes of payload following */
} __attribute__ ((__packed__));

struct nbd_extended_reply {
  uint32_t magic;               /* NBD_EXTENDED_REPLY_MAGIC */
  uint16_t flags;
  uint16_t type;
  uint64_t cookie;
  uint64_t offset;              /* the request's offset, bytes */
  uint64_t length;              /* bytes of payload following */
} __attribute__ ((__packed__));

/* Chunk payload prefixes. */
struct nbd_chunk_offset_hole {
  uint64_t offset;              /* bytes */
  uint32_t length;              /* bytes */
} __attribute__ ((__packed__));

struct nbd_chunk_error {
  uint32_t error;               /* NBD_E* */
  uint16_t msglen;              /* bytes of message following */
} __attribute__ ((__packed__));

struct nbd_block_descriptor_32 {
  uint32_t length;              /* bytes */
  uint32_t status;
} __attribute__ ((__packed__));

struct nbd_block_descriptor_64 {
  uint64_t length;              /* bytes */
  uint64_t status;
} __attribute__ ((__packed__));

_Static_assert (sizeof (struct nbd_new_handshake) == 18, "handshake size");
_Static_assert (sizeof (struct nbd_option_header) == 16, "option size");
_Static_assert (sizeof (struct nbd_option_reply) == 20, "option reply size");
_Static_assert (sizeof (struct nbd_export_name_reply) == 10, "export reply");
_Static_assert (sizeof (struct nbd_info_export) == 12, "info export size");
_Static_assert (sizeof (struct nbd_info_block_size) == 14, "info block size");
_Static_assert (sizeof (struct nbd_request) == 28, "request size");
_Static_assert (sizeof (struct nbd_extended_request) == 32, "ext request");
_Static_assert (sizeof (struct nbd_simple_reply) == 16, "simple reply");
_Static_assert (sizeof (struct nbd_structured_reply) == 20, "chunk header");
_Static_assert (sizeof (struct nbd_extended_reply) == 32, "ext reply");
_Static_assert (sizeof (struct nbd_chunk_offset_hole) == 12, "hole chunk");
_Static_assert (sizeof (struct nbd_chunk_error) == 6, "error chunk");
_Static_assert (sizeof (struct nbd_block_descriptor_32) == 8, "bs desc 32");
_Static_assert (sizeof (struct nbd_block_descriptor_64) == 16, "bs desc 64");

/* ---- names, for logs and tests (nbd-names.c) ---- */
const char *nbd_opt_name (uint32_t option);
const char *nbd_rep_name (uint32_t reply);
const char *nbd_cmd_name (uint16_t type);
const char *nbd_err_name (uint32_t nbd_error);

#endif /* NBDCACHE_NBD_PROTO_H */
