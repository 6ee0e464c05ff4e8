/* SPDX-License-Identifier: BSD-3-Clause */
/* test-nbd-proto.c — unit tests for nbd-wire.c and nbd-names.c.
 *
 * WHAT: request decode/encode round trips in both header forms; byte-exact
 * expected encodings of simple replies, structured and extended chunk
 * headers and option replies (written out by hand from the NBD spec, so a
 * byte-order or offset slip in the encoder fails here); bad magic; the
 * errno -> NBD error map; the name tables.
 * WHY: the server, the raw-socket clients and these tests must agree on
 * every byte; the expected arrays below are the independent reference.
 * NOT HERE: option negotiation and request policy (server tests).
 */
#include <config.h>

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "nbd-proto.h"
#include "nbd-wire.h"

static void
test_nbd_proto_compact_request_bytes (void **state)
{
  /* NBD_CMD_WRITE with FUA, cookie 0x0102030405060708, offset 0x1000,
   * count 0x200, as the spec lays it out.
   */
  static const unsigned char expected[28] = {
    0x25, 0x60, 0x95, 0x13,                         /* magic */
    0x00, 0x01,                                     /* flags: FUA */
    0x00, 0x01,                                     /* type: WRITE */
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, /* cookie */
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, /* offset */
    0x00, 0x00, 0x02, 0x00,                         /* count */
  };
  struct nbd_req req = {
    .flags = NBD_CMD_FLAG_FUA, .type = NBD_CMD_WRITE,
    .cookie = UINT64_C (0x0102030405060708), .offset = 0x1000, .count = 0x200,
  };
  struct nbd_req back;
  unsigned char buf[NBD_MAX_HEADER_BYTES];

  memset (buf, 0xee, sizeof buf);
  assert_int_equal (nbd_encode_request (buf, false, &req), 28);
  assert_int_equal (nbd_request_size (false), 28);
  assert_memory_equal (buf, expected, sizeof expected);
  assert_int_equal (buf[28], 0xee);     /* nothing written past the end */

  memset (&back, 0, sizeof back);
  assert_int_equal (nbd_decode_request (expected, false, &back), 0);
  assert_int_equal (back.flags, req.flags);
  assert_int_equal (back.type, req.type);
  assert_true (back.cookie == req.cookie);
  assert_true (back.offset == req.offset);
  assert_true (back.count == req.count);
}

static void
test_nbd_proto_extended_request_bytes (void **state)
{
  /* BLOCK_STATUS with REQ_ONE, a count that needs 64 bits. */
  static const unsigned char expected[32] = {
    0x21, 0xe4, 0x1c, 0x71,                         /* magic */
    0x00, 0x08,                                     /* flags: REQ_ONE */
    0x00, 0x07,                                     /* type: BLOCK_STATUS */
    0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa, 0x99, 0x88, /* cookie */
    0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, /* offset 2^40 */
    0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x01, /* count 2^33 + 1 */
  };
  struct nbd_req req = {
    .flags = NBD_CMD_FLAG_REQ_ONE, .type = NBD_CMD_BLOCK_STATUS,
    .cookie = UINT64_C (0xffeeddccbbaa9988),
    .offset = UINT64_C (1) << 40, .count = (UINT64_C (1) << 33) + 1,
  };
  struct nbd_req back;
  unsigned char buf[NBD_MAX_HEADER_BYTES];

  assert_int_equal (nbd_encode_request (buf, true, &req), 32);
  assert_int_equal (nbd_request_size (true), 32);
  assert_memory_equal (buf, expected, sizeof expected);

  memset (&back, 0, sizeof back);
  assert_int_equal (nbd_decode_request (expected, true, &back), 0);
  assert_int_equal (back.flags, req.flags);
  assert_int_equal (back.type, req.type);
  assert_true (back.cookie == req.cookie);
  assert_true (back.offset == req.offset);
  assert_true (back.count == req.count);
}

/* Encode, decode and compare many field patterns in both forms. */
static void
test_nbd_proto_request_round_trip (void **state)
{
  static const uint64_t values[] = {
    0, 1, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, UINT32_MAX,
    UINT64_C (0x100000000), UINT64_C (0x8000000000000000), UINT64_MAX,
  };
  size_t i, j;

  for (i = 0; i < sizeof values / sizeof values[0]; i++)
    for (j = 0; j < sizeof values / sizeof values[0]; j++) {
      for (int ext = 0; ext <= 1; ext++) {
        struct nbd_req req = {
          .flags = (uint16_t) values[i], .type = (uint16_t) (values[j] >> 3),
          .cookie = values[i] ^ values[j], .offset = values[j],
          .count = ext ? values[i] : (uint32_t) values[i],
        };
        struct nbd_req back;
        unsigned char buf[NBD_MAX_HEADER_BYTES];

        assert_int_equal (nbd_encode_request (buf, ext, &req),
                          nbd_request_size (ext));
        memset (&back, 0x5a, sizeof back);
        assert_int_equal (nbd_decode_request (buf, ext, &back), 0);
        assert_int_equal (back.flags, req.flags);
        assert_int_equal (back.type, req.type);
        assert_true (back.cookie == req.cookie);
        assert_true (back.offset == req.offset);
        assert_true (back.count == req.count);
      }
    }
}

static void
test_nbd_proto_bad_magic (void **state)
{
  struct nbd_req req = { .type = NBD_CMD_READ, .count = 512 };
  struct nbd_req back;
  unsigned char buf[NBD_MAX_HEADER_BYTES];

  /* Each form refuses the other's magic. */
  nbd_encode_request (buf, false, &req);
  assert_int_equal (nbd_decode_request (buf, true, &back), -EBADMSG);
  nbd_encode_request (buf, true, &req);
  assert_int_equal (nbd_decode_request (buf, false, &back), -EBADMSG);

  /* A single flipped bit in the magic. */
  nbd_encode_request (buf, false, &req);
  buf[3] ^= 0x01;
  assert_int_equal (nbd_decode_request (buf, false, &back), -EBADMSG);
  memset (buf, 0, sizeof buf);
  assert_int_equal (nbd_decode_request (buf, false, &back), -EBADMSG);
  assert_int_equal (nbd_decode_request (buf, true, &back), -EBADMSG);
  /* Reply magics are not request magics. */
  nbd_encode_simple_reply (buf, 1, 0);
  assert_int_equal (nbd_decode_request (buf, false, &back), -EBADMSG);
}

static void
test_nbd_proto_simple_reply_bytes (void **state)
{
  static const unsigned char expected[16] = {
    0x67, 0x44, 0x66, 0x98,                         /* magic */
    0x00, 0x00, 0x00, 0x1c,                         /* error: ENOSPC (28) */
    0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, /* cookie */
  };
  unsigned char buf[NBD_MAX_HEADER_BYTES];

  memset (buf, 0xee, sizeof buf);
  assert_int_equal (nbd_encode_simple_reply (buf, UINT64_C (0x1122334455667788),
                                             NBD_ENOSPC), 16);
  assert_memory_equal (buf, expected, sizeof expected);
  assert_int_equal (buf[16], 0xee);
}

static void
test_nbd_proto_structured_chunk_bytes (void **state)
{
  static const unsigned char expected[20] = {
    0x66, 0x8e, 0x33, 0xef,                         /* magic */
    0x00, 0x01,                                     /* flags: DONE */
    0x00, 0x01,                                     /* type: OFFSET_DATA */
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2a, /* cookie */
    0x00, 0x00, 0x10, 0x08,                         /* length 4096 + 8 */
  };
  unsigned char buf[NBD_MAX_HEADER_BYTES];

  memset (buf, 0xee, sizeof buf);
  /* The offset is not part of the compact chunk header. */
  assert_int_equal (nbd_encode_chunk_header (buf, false, NBD_REPLY_FLAG_DONE,
                                             NBD_REPLY_TYPE_OFFSET_DATA, 42,
                                             UINT64_C (0xdeadbeef), 4104),
                    20);
  assert_memory_equal (buf, expected, sizeof expected);
  assert_int_equal (buf[20], 0xee);
}

static void
test_nbd_proto_extended_chunk_bytes (void **state)
{
  static const unsigned char expected[32] = {
    0x6e, 0x8a, 0x27, 0x8c,                         /* magic */
    0x00, 0x00,                                     /* flags */
    0x80, 0x02,                                     /* type: ERROR_OFFSET */
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, /* cookie */
    0x00, 0x00, 0x00, 0x00, 0xde, 0xad, 0xbe, 0xef, /* offset */
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, /* length 2^32 */
  };
  unsigned char buf[NBD_MAX_HEADER_BYTES];

  assert_int_equal (nbd_encode_chunk_header (buf, true, 0,
                                             NBD_REPLY_TYPE_ERROR_OFFSET, 7,
                                             UINT64_C (0xdeadbeef),
                                             UINT64_C (1) << 32),
                    32);
  assert_memory_equal (buf, expected, sizeof expected);
}

static void
test_nbd_proto_option_reply_bytes (void **state)
{
  static const unsigned char expected[20] = {
    0x00, 0x03, 0xe8, 0x89, 0x04, 0x55, 0x65, 0xa9, /* NBD_REP_MAGIC */
    0x00, 0x00, 0x00, 0x07,                         /* option: GO */
    0x80, 0x00, 0x00, 0x02,                         /* reply: ERR_POLICY */
    0x00, 0x00, 0x01, 0x00,                         /* length 256 */
  };
  unsigned char buf[NBD_MAX_HEADER_BYTES];

  memset (buf, 0xee, sizeof buf);
  assert_int_equal (nbd_encode_option_reply (buf, NBD_OPT_GO,
                                             NBD_REP_ERR_POLICY, 256), 20);
  assert_memory_equal (buf, expected, sizeof expected);
  assert_int_equal (buf[20], 0xee);
}

static void
test_nbd_proto_errno_to_wire (void **state)
{
  static const struct { int err; uint32_t wire; } map[] = {
    { 0, NBD_SUCCESS },
    { EPERM, NBD_EPERM }, { EROFS, NBD_EPERM }, { EACCES, NBD_EPERM },
    { EIO, NBD_EIO },
    { ENOMEM, NBD_ENOMEM },
    { EINVAL, NBD_EINVAL }, { ERANGE, NBD_EINVAL }, { EBADMSG, NBD_EINVAL },
    { ENOSPC, NBD_ENOSPC }, { EFBIG, NBD_ENOSPC }, { EDQUOT, NBD_ENOSPC },
    { EOVERFLOW, NBD_EOVERFLOW },
    { ENOTSUP, NBD_ENOTSUP }, { EOPNOTSUPP, NBD_ENOTSUP },
    { ESHUTDOWN, NBD_ESHUTDOWN },
    /* Anything else is an I/O error. */
    { ENOENT, NBD_EIO }, { EBADF, NBD_EIO }, { ETIMEDOUT, NBD_EIO },
    { 9999, NBD_EIO },
  };
  size_t i;

  for (i = 0; i < sizeof map / sizeof map[0]; i++) {
    assert_int_equal (nbd_errno_to_wire (map[i].err), map[i].wire);
    /* Engine-style negative errnos map the same. */
    assert_int_equal (nbd_errno_to_wire (-map[i].err), map[i].wire);
  }
  /* The wire numbers are the spec's, not the host's. */
  assert_int_equal (NBD_EPERM, 1);
  assert_int_equal (NBD_EIO, 5);
  assert_int_equal (NBD_ENOMEM, 12);
  assert_int_equal (NBD_EINVAL, 22);
  assert_int_equal (NBD_ENOSPC, 28);
  assert_int_equal (NBD_EOVERFLOW, 75);
  assert_int_equal (NBD_ENOTSUP, 95);
  assert_int_equal (NBD_ESHUTDOWN, 108);
}

static void
test_nbd_proto_names (void **state)
{
  assert_string_equal (nbd_opt_name (NBD_OPT_EXPORT_NAME), "NBD_OPT_EXPORT_NAME");
  assert_string_equal (nbd_opt_name (NBD_OPT_GO), "NBD_OPT_GO");
  assert_string_equal (nbd_opt_name (NBD_OPT_EXTENDED_HEADERS),
                       "NBD_OPT_EXTENDED_HEADERS");
  assert_string_equal (nbd_opt_name (12345), "unknown");

  assert_string_equal (nbd_rep_name (NBD_REP_ACK), "NBD_REP_ACK");
  assert_string_equal (nbd_rep_name (NBD_REP_META_CONTEXT), "NBD_REP_META_CONTEXT");
  assert_string_equal (nbd_rep_name (NBD_REP_ERR_UNSUP), "NBD_REP_ERR_UNSUP");
  assert_string_equal (nbd_rep_name (NBD_REP_ERR_EXT_HEADER_REQD),
                       "NBD_REP_ERR_EXT_HEADER_REQD");
  /* The error bit alone is not ERR_UNSUP. */
  assert_string_equal (nbd_rep_name (NBD_REP_ERR_BIT), "unknown");
  assert_string_equal (nbd_rep_name (0), "unknown");

  assert_string_equal (nbd_cmd_name (NBD_CMD_READ), "NBD_CMD_READ");
  assert_string_equal (nbd_cmd_name (NBD_CMD_WRITE_ZEROES), "NBD_CMD_WRITE_ZEROES");
  assert_string_equal (nbd_cmd_name (NBD_CMD_BLOCK_STATUS), "NBD_CMD_BLOCK_STATUS");
  assert_string_equal (nbd_cmd_name (0xffff), "unknown");

  assert_string_equal (nbd_err_name (NBD_SUCCESS), "NBD_SUCCESS");
  assert_string_equal (nbd_err_name (NBD_ENOSPC), "NBD_ENOSPC");
  assert_string_equal (nbd_err_name (NBD_ESHUTDOWN), "NBD_ESHUTDOWN");
  assert_string_equal (nbd_err_name (2), "unknown");
}

/* Every number in a name table has a name, and no two share one. */
static void
test_nbd_proto_names_complete (void **state)
{
  const char *seen[64];
  size_t n = 0, i, k;
  uint32_t v;

  for (v = 1; v <= NBD_OPT_EXTENDED_HEADERS; v++)
    seen[n++] = nbd_opt_name (v);
  for (v = 0; v <= NBD_CMD_RESIZE; v++)
    seen[n++] = nbd_cmd_name ((uint16_t) v);
  for (v = NBD_REP_ACK; v <= NBD_REP_META_CONTEXT; v++)
    seen[n++] = nbd_rep_name (v);
  for (v = NBD_REP_ERR_UNSUP; v <= NBD_REP_ERR_EXT_HEADER_REQD; v++)
    seen[n++] = nbd_rep_name (v);
  assert_true (n <= sizeof seen / sizeof seen[0]);
  for (i = 0; i < n; i++) {
    assert_non_null (seen[i]);
    assert_string_not_equal (seen[i], "unknown");
    for (k = 0; k < i; k++)
      assert_string_not_equal (seen[i], seen[k]);
  }
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_nbd_proto_compact_request_bytes),
    cmocka_unit_test (test_nbd_proto_extended_request_bytes),
    cmocka_unit_test (test_nbd_proto_request_round_trip),
    cmocka_unit_test (test_nbd_proto_bad_magic),
    cmocka_unit_test (test_nbd_proto_simple_reply_bytes),
    cmocka_unit_test (test_nbd_proto_structured_chunk_bytes),
    cmocka_unit_test (test_nbd_proto_extended_chunk_bytes),
    cmocka_unit_test (test_nbd_proto_option_reply_bytes),
    cmocka_unit_test (test_nbd_proto_errno_to_wire),
    cmocka_unit_test (test_nbd_proto_names),
    cmocka_unit_test (test_nbd_proto_names_complete),
  };

  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
