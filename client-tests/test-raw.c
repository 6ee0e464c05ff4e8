/* SPDX-License-Identifier: BSD-3-Clause */
/* test-raw.c — the NBD protocol byte by byte, from a raw-socket client.
 *
 * WHAT: drives the server over its Unix socket ($unixsocket) with
 * hand-built messages (raw-client.c), covering
 * what libnbd 1.14 cannot send or hides:
 *  (a) fixed newstyle with and without NO_ZEROES, NBD_OPT_EXPORT_NAME;
 *  (b) NBD_OPT_EXTENDED_HEADERS then 64-bit requests: extended request and
 *      reply headers, BLOCK_STATUS_EXT, zero and trim over more than 4 GiB
 *      on an 8 GiB sparse export, STRUCTURED_REPLY refused afterwards;
 *  (c) STARTTLS without TLS configured, an unknown option, ABORT;
 *  (d) malformed options: truncated INFO, a 100 MiB option, bad magic,
 *      unknown client flags;
 *  (e) malformed requests: a WRITE over the 64 MiB payload limit, an
 *      unknown command type;
 *  (f) 200 requests pipelined without reading replies (the server stops
 *      reading at 128 in flight and must not lose or deadlock on any);
 *  (g) NBD_CMD_DISC after an outstanding request.
 * After each abuse the server must still serve a fresh connection.
 * WHY: these are the paths where a server desynchronises, leaks a
 * connection or dies; a library client never takes them.
 * INVARIANTS: the wrapper (test-libnbd-raw.sh) serves EXPORT (from
 * $export, default "disk", 128 MiB: bigger than the largest request sent,
 * so only the payload limit refuses it) and, for nbdcached, BIG_EXPORT
 * ("big", 8 GiB, created sparse).  nbdkit 1.32 has no extended headers:
 * for the plugin (SERVER_KIND=plugin) (b) asserts NBD_REP_ERR_UNSUP
 * instead.
 * THREADS AND LOCKS: single-threaded, blocking sockets.
 * FAILURE: any unexpected byte fails the test with what was expected.
 * NOT HERE: the libnbd-visible semantics (test-options.c, test-commands.c).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "byteorder.h"
#include "libnbd-test.h"
#include "nbd-proto.h"
#include "raw-client.h"

#define KiB (UINT64_C (1024))
#define MiB (UINT64_C (1024) * 1024)
#define GiB (UINT64_C (1024) * 1024 * 1024)

#define EXPORT_SIZE      (128 * MiB)
#define BIG_EXPORT       "big"
#define BIG_EXPORT_SIZE  (8 * GiB)
#define PIPELINE_DEPTH   200            /* requests sent before any reply */
#define PIPELINE_BYTES   (64 * KiB)     /* per request */

static const char *sock_path;
static const char *export_name;

/* raw_command, failing the test unless the reply carries NBD error
 * `want`.
 */
static void
expect (uint32_t want, struct raw_conn *c, uint16_t flags, uint16_t type,
        uint64_t offset, uint64_t count, const void *payload, uint8_t *buf,
        struct raw_reply *rep)
{
  raw_assert_error (raw_command (c, flags, type, offset, count, payload, buf,
                                 rep), want);
}

static void
fill_pattern (uint8_t *buf, size_t n, uint64_t tag)
{
  for (size_t i = 0; i < n; i++)
    buf[i] = (uint8_t) ((tag * 131 + i * 7 + (i >> 9)) & 0xff);
}

/* A plain GO session on the normal export, structured replies on. */
static void
open_export (struct raw_conn *c)
{
  raw_open (c, sock_path, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
  raw_structured (c);
  raw_go (c, export_name);
  assert_int_equal (c->size, EXPORT_SIZE);
}

/* The server is alive: a new connection can write and read back. */
static void
check_server_alive (void)
{
  raw_check_server_alive (sock_path, export_name);
}

/* ---- (a) fixed newstyle, EXPORT_NAME ---- */

static void
test_raw_export_name (void **state)
{
  struct raw_conn c;
  uint8_t buf[4096];

  /* NO_ZEROES: the reply is exactly 10 bytes, then a simple reply (a stray
   * zero byte would break its magic).
   */
  raw_open (&c, sock_path, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
  raw_export_name (&c, export_name, true);
  assert_int_equal (c.size, EXPORT_SIZE);
  assert_int_equal (c.eflags & NBD_FLAG_READ_ONLY, 0);
  assert_true (c.eflags & NBD_FLAG_SEND_FLUSH);
  /* Not negotiated: DF must not be advertised. */
  assert_int_equal (c.eflags & NBD_FLAG_SEND_DF, 0);
  expect (NBD_SUCCESS, &c, 0, NBD_CMD_READ, 0, sizeof buf, NULL, buf, NULL);
  raw_send_request (&c, 0, NBD_CMD_DISC, 0, 0, NULL, 0);
  assert_true (raw_wait_closed (c.fd));
  raw_close (&c);

  /* Without NO_ZEROES: 124 zero bytes follow. */
  raw_open (&c, sock_path, NBD_FLAG_C_FIXED_NEWSTYLE);
  raw_export_name (&c, export_name, false);
  assert_int_equal (c.size, EXPORT_SIZE);
  expect (NBD_SUCCESS, &c, 0, NBD_CMD_READ, 4096, sizeof buf, NULL, buf, NULL);
  raw_close (&c);

  /* Options before EXPORT_NAME (structured replies) carry over. */
  raw_open (&c, sock_path, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
  raw_structured (&c);
  raw_export_name (&c, "", true);           /* the default export */
  assert_int_equal (c.size, EXPORT_SIZE);
  assert_true (c.eflags & NBD_FLAG_SEND_DF);
  expect (NBD_SUCCESS, &c, 0, NBD_CMD_READ, 0, sizeof buf, NULL, buf, NULL);
  raw_close (&c);
}

/* ---- (b) extended headers ---- */

static void
test_raw_extended_headers (void **state)
{
  struct raw_conn c;
  const uint64_t woff = 5 * GiB + 12345;
  const size_t wlen = 64 * KiB;
  uint8_t *w = malloc (wlen), *r = malloc (wlen + 100);
  struct raw_extents *bs = calloc (1, sizeof *bs);
  struct raw_reply rep = { .bs = bs };
  uint64_t covered;

  assert_non_null (w);
  assert_non_null (r);
  assert_non_null (bs);
  raw_open (&c, sock_path, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
  if (test_is_plugin ()) {
    /* nbdkit 1.32 predates the extension: it must refuse it cleanly and
     * carry on with structured replies.
     */
    raw_assert_rep (raw_option (c.fd, NBD_OPT_EXTENDED_HEADERS, NULL, 0),
                    NBD_REP_ERR_UNSUP);
    raw_structured (&c);
    raw_assert_rep (raw_option (c.fd, NBD_OPT_ABORT, NULL, 0), NBD_REP_ACK);
    raw_close (&c);
    goto out;
  }

  /* The option carries no data; with data it is invalid. */
  raw_assert_rep (raw_option (c.fd, NBD_OPT_EXTENDED_HEADERS, "x", 1),
                  NBD_REP_ERR_INVALID);
  raw_assert_rep (raw_option (c.fd, NBD_OPT_EXTENDED_HEADERS, NULL, 0),
                  NBD_REP_ACK);
  c.extended = c.structured = true;
  /* Structured replies are implied; asking again is an error, not ACK. */
  {
    uint32_t t = raw_option (c.fd, NBD_OPT_STRUCTURED_REPLY, NULL, 0);

    if (!(t & NBD_REP_ERR_BIT))
      fail_msg ("STRUCTURED_REPLY after EXTENDED_HEADERS answered %s",
                nbd_rep_name (t));
  }
  raw_set_meta_base (&c, BIG_EXPORT);
  raw_go (&c, BIG_EXPORT);
  assert_int_equal (c.size, BIG_EXPORT_SIZE);
  assert_true (c.eflags & NBD_FLAG_SEND_WRITE_ZEROES);
  assert_true (c.eflags & NBD_FLAG_SEND_TRIM);

  /* Start from a known state around the write. */
  expect (NBD_SUCCESS, &c, 0, NBD_CMD_WRITE_ZEROES, 5 * GiB, 1 * MiB, NULL,
          NULL, NULL);
  /* WRITE: the 64-bit count is the payload length. */
  fill_pattern (w, wlen, 5);
  expect (NBD_SUCCESS, &c, NBD_CMD_FLAG_FUA, NBD_CMD_WRITE, woff, wlen, w,
          NULL, &rep);
  /* READ back with 50 bytes either side. */
  memset (r, 0xee, wlen + 100);
  expect (NBD_SUCCESS, &c, 0, NBD_CMD_READ, woff - 50, wlen + 100, NULL, r,
          &rep);
  assert_int_equal (rep.data_bytes, wlen + 100);
  for (size_t i = 0; i < 50; i++)
    assert_int_equal (r[i], 0);
  assert_memory_equal (r + 50, w, wlen);
  for (size_t i = 0; i < 50; i++)
    assert_int_equal (r[50 + wlen + i], 0);
  /* A read in the untouched sparse part reads zeroes (data or hole). */
  memset (r, 0xee, wlen);
  expect (NBD_SUCCESS, &c, 0, NBD_CMD_READ, 7 * GiB, wlen, NULL, r, &rep);
  assert_int_equal (rep.data_bytes, wlen);
  for (size_t i = 0; i < wlen; i++)
    assert_int_equal (r[i], 0);
  expect (NBD_SUCCESS, &c, 0, NBD_CMD_FLUSH, 0, 0, NULL, NULL, &rep);

  /* BLOCK_STATUS over the whole 8 GiB (a 64-bit length): 64-bit
   * descriptors, our context id, a hole before the data.
   */
  rep.bs = bs;
  expect (NBD_SUCCESS, &c, 0, NBD_CMD_BLOCK_STATUS, 0, BIG_EXPORT_SIZE, NULL,
          NULL, &rep);
  assert_true (bs->ext);
  assert_int_equal (bs->ctx_id, c.base_ctx_id);
  assert_true (bs->n >= 1);
  covered = 0;
  for (size_t i = 0; i < bs->n; i++) {
    assert_true (bs->len[i] > 0);
    covered += bs->len[i];
  }
  assert_true (covered <= BIG_EXPORT_SIZE);
  assert_int_equal (bs->flags[0] & (NBD_STATE_HOLE | NBD_STATE_ZERO),
                    NBD_STATE_HOLE | NBD_STATE_ZERO);
  /* One reply may describe more than 32 bits of length: that is the
   * point of the 64-bit form, and this file has a 5 GiB leading hole.
   */
  if (covered <= 4 * GiB)
    fail_msg ("64-bit block status covered only %" PRIu64 " bytes of a "
              "5 GiB hole", covered);
  /* The data written at woff is reported as data. */
  expect (NBD_SUCCESS, &c, 0, NBD_CMD_BLOCK_STATUS, woff + 8192, 4096, NULL,
          NULL, &rep);
  assert_int_equal (bs->flags[0] & (NBD_STATE_HOLE | NBD_STATE_ZERO), 0);

  /* WRITE_ZEROES of 6 GiB (over the data), then TRIM of 5 GiB. */
  expect (NBD_SUCCESS, &c, 0, NBD_CMD_WRITE_ZEROES, 1 * GiB, 6 * GiB, NULL,
          NULL, &rep);
  memset (r, 0xee, wlen);
  expect (NBD_SUCCESS, &c, 0, NBD_CMD_READ, woff, wlen, NULL, r, &rep);
  for (size_t i = 0; i < wlen; i++)
    assert_int_equal (r[i], 0);
  expect (NBD_SUCCESS, &c, 0, NBD_CMD_BLOCK_STATUS, woff, 4096, NULL, NULL,
          &rep);
  assert_int_equal (bs->flags[0] & NBD_STATE_ZERO, NBD_STATE_ZERO);
  expect (NBD_SUCCESS, &c, NBD_CMD_FLAG_FUA, NBD_CMD_TRIM, 512 * MiB, 5 * GiB,
          NULL, NULL, &rep);
  /* Past the end with 64-bit lengths: still refused. */
  expect (NBD_ENOSPC, &c, 0, NBD_CMD_WRITE_ZEROES, 4 * GiB, 5 * GiB, NULL,
          NULL, &rep);
  expect (NBD_EINVAL, &c, 0, NBD_CMD_TRIM, 1, UINT64_MAX, NULL, NULL, &rep);
  /* An unknown command: an error chunk in the extended form. */
  expect (NBD_EINVAL, &c, 0, 99, 0, 4096, NULL, NULL, &rep);
  expect (NBD_SUCCESS, &c, 0, NBD_CMD_READ, woff, 4096, NULL, r, &rep);
  raw_send_request (&c, 0, NBD_CMD_DISC, 0, 0, NULL, 0);
  assert_true (raw_wait_closed (c.fd));
  raw_close (&c);

 out:
  free (w);
  free (r);
  free (bs);
}

/* ---- (c) STARTTLS, unknown option, ABORT ---- */

static void
test_raw_options_misc (void **state)
{
  struct raw_conn c;
  uint32_t t;

  raw_open (&c, sock_path, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
  /* No TLS configured: both nbdcached and nbdkit without --tls answer
   * ERR_POLICY (the spec's NOTLS mode; ERR_UNSUP would be allowed too,
   * but is not what either server does).
   */
  t = raw_option (c.fd, NBD_OPT_STARTTLS, NULL, 0);
  raw_assert_rep (t, NBD_REP_ERR_POLICY);
  /* An unknown option, with data the server has to skip. */
  raw_assert_rep (raw_option (c.fd, 1000, "skip me", 7), NBD_REP_ERR_UNSUP);
  raw_assert_rep (raw_option (c.fd, 1000, NULL, 0), NBD_REP_ERR_UNSUP);
  /* The withdrawn PEEK_EXPORT is just unknown. */
  raw_assert_rep (raw_option (c.fd, NBD_OPT_PEEK_EXPORT, NULL, 0),
                  NBD_REP_ERR_UNSUP);
  /* Still in step: INFO works. */
  raw_assert_rep (raw_info_go (&c, NBD_OPT_INFO, export_name), NBD_REP_ACK);
  assert_int_equal (c.size, EXPORT_SIZE);
  /* The block sizes we asked for (both kinds send them). */
  assert_int_equal (c.block_min, 1);
  assert_int_equal (c.block_pref, 4096);
  assert_int_equal (c.block_max, 64 * MiB);
  /* ABORT: ACK, then the server hangs up. */
  raw_assert_rep (raw_option (c.fd, NBD_OPT_ABORT, NULL, 0), NBD_REP_ACK);
  assert_true (raw_wait_closed (c.fd));
  raw_close (&c);
  check_server_alive ();
}

/* ---- (d) malformed options ---- */

static void
test_raw_info_truncated (void **state)
{
  struct raw_conn c;
  unsigned char p[64];

  raw_open (&c, sock_path, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
  /* Shorter than the name length field. */
  raw_assert_rep (raw_option (c.fd, NBD_OPT_INFO, "\0\0\0", 3),
                  NBD_REP_ERR_INVALID);
  /* A name length past the end of the option. */
  put_be32 (p, 100);
  memcpy (p + 4, "disk", 4);
  raw_assert_rep (raw_option (c.fd, NBD_OPT_INFO, p, 8), NBD_REP_ERR_INVALID);
  /* The name fits but the request count is missing. */
  put_be32 (p, 4);
  raw_assert_rep (raw_option (c.fd, NBD_OPT_INFO, p, 8), NBD_REP_ERR_INVALID);
  /* Five info requests announced, one present. */
  put_be16 (p + 8, 5);
  put_be16 (p + 10, NBD_INFO_BLOCK_SIZE);
  raw_assert_rep (raw_option (c.fd, NBD_OPT_GO, p, 12), NBD_REP_ERR_INVALID);
  /* The session is still usable. */
  raw_structured (&c);
  raw_go (&c, export_name);
  expect (NBD_SUCCESS, &c, 0, NBD_CMD_READ, 0, sizeof p, NULL, p, NULL);
  raw_close (&c);
}

/* Sends `len` bytes of zeroes, tolerating the server hanging up. */
static int
send_zeroes (int fd, uint64_t len)
{
  static uint8_t zero[1024 * 1024];

  while (len > 0) {
    size_t n = len < sizeof zero ? (size_t) len : sizeof zero;
    int r = raw_send_all (fd, zero, n);

    if (r < 0)
      return r;
    len -= n;
  }
  return 0;
}

static void
test_raw_option_too_long (void **state)
{
  struct raw_conn c;
  unsigned char h[16];
  int r;

  raw_open (&c, sock_path, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
  put_be64 (h, NBD_IHAVEOPT);
  put_be32 (h + 8, NBD_OPT_INFO);
  put_be32 (h + 12, 100 * MiB);
  raw_xsend (c.fd, h, sizeof h);
  r = send_zeroes (c.fd, 100 * MiB);
  if (r == 0) {
    /* The server read (or skipped) it all: it must answer with an error
     * and stay in step, or hang up now.
     */
    unsigned char rh[20];
    ssize_t n = raw_recv_all (c.fd, rh, sizeof rh);

    if (n == (ssize_t) sizeof rh) {
      assert_true (get_be64 (rh) == NBD_REP_MAGIC);
      assert_int_equal (get_be32 (rh + 8), NBD_OPT_INFO);
      assert_true (get_be32 (rh + 12) & NBD_REP_ERR_BIT);
      printf ("  100 MiB option -> %s\n", nbd_rep_name (get_be32 (rh + 12)));
    }
    else if (n != 0 && n != -ECONNRESET)
      fail_msg ("after a 100 MiB option: %zd bytes then %s", n,
                n < 0 ? strerror ((int) -n) : "EOF");
    else
      printf ("  100 MiB option -> connection closed after the payload\n");
  }
  else if (r == -EPIPE || r == -ECONNRESET)
    printf ("  100 MiB option -> connection closed\n");
  else
    fail_msg ("sending a 100 MiB option: %s", strerror (-r));
  raw_close (&c);
  check_server_alive ();
}

static void
test_raw_bad_magic (void **state)
{
  struct raw_conn c;
  unsigned char h[16];

  /* Garbage instead of IHAVEOPT: the server hangs up. */
  raw_open (&c, sock_path, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
  put_be64 (h, UINT64_C (0x1122334455667788));
  put_be32 (h + 8, NBD_OPT_GO);
  put_be32 (h + 12, 0);
  raw_xsend (c.fd, h, sizeof h);
  assert_true (raw_wait_closed (c.fd));
  raw_close (&c);
  check_server_alive ();

  /* Client flags the server did not offer: it MUST hang up. */
  raw_open (&c, sock_path, NBD_FLAG_C_FIXED_NEWSTYLE | 0x80000000u);
  assert_true (raw_wait_closed (c.fd));
  raw_close (&c);
  check_server_alive ();

  /* Garbage request magic in transmission: the server hangs up. */
  open_export (&c);
  memset (h, 0xa5, sizeof h);
  raw_xsend (c.fd, h, sizeof h);
  raw_xsend (c.fd, h, 12);                  /* 28 bytes of garbage */
  assert_true (raw_wait_closed (c.fd));
  raw_close (&c);
  check_server_alive ();
}

/* ---- (e) malformed requests ---- */

static void
test_raw_write_too_big (void **state)
{
  struct raw_conn c;
  uint64_t cookie;
  struct raw_reply rep = { 0 };
  uint8_t buf[4096];
  int r;

  open_export (&c);
  cookie = raw_send_request (&c, 0, NBD_CMD_WRITE, 0, 65 * MiB, NULL, 0);
  r = send_zeroes (c.fd, 65 * MiB);
  if (r == 0) {
    /* Either EINVAL after skipping the payload (and still in step), or a
     * hang-up.
     */
    unsigned char peek[4];
    ssize_t n = recv (c.fd, peek, sizeof peek, MSG_PEEK | MSG_WAITALL);

    if (n == (ssize_t) sizeof peek) {
      raw_recv_reply (&c, cookie, NBD_CMD_WRITE, 0, 65 * MiB, NULL, &rep);
      /* The spec says SHOULD be EINVAL; nbdkit 1.32 answers ENOMEM. */
      if (!(test_is_plugin () && rep.error == NBD_ENOMEM))
        raw_assert_error (rep.error, NBD_EINVAL);
      expect (NBD_SUCCESS, &c, 0, NBD_CMD_READ, 0, sizeof buf, NULL, buf,
              NULL);
      printf ("  65 MiB WRITE -> %s, payload skipped\n",
              nbd_err_name (rep.error));
    }
    else {
      assert_true (n == 0 || (n == -1 && errno == ECONNRESET));
      printf ("  65 MiB WRITE -> connection closed after the payload\n");
    }
  }
  else {
    assert_true (r == -EPIPE || r == -ECONNRESET);
    printf ("  65 MiB WRITE -> connection closed\n");
  }
  raw_close (&c);
  check_server_alive ();

  /* A READ longer than the maximum payload: EINVAL (nbdcached) or a
   * hang-up (the spec allows either for a length that sizes the reply).
   */
  open_export (&c);
  cookie = raw_send_request (&c, 0, NBD_CMD_READ, 0, 65 * MiB, NULL, 0);
  {
    unsigned char peek[4];
    ssize_t n = recv (c.fd, peek, sizeof peek, MSG_PEEK | MSG_WAITALL);

    if (n == (ssize_t) sizeof peek) {
      uint8_t *big = malloc (65 * MiB);

      assert_non_null (big);
      raw_recv_reply (&c, cookie, NBD_CMD_READ, 0, 65 * MiB, big, &rep);
      free (big);
      if (!(test_is_plugin () && rep.error == NBD_ENOMEM))
        raw_assert_error (rep.error, NBD_EINVAL);
      expect (NBD_SUCCESS, &c, 0, NBD_CMD_READ, 0, sizeof buf, NULL, buf,
              NULL);
    }
    else if (!test_is_plugin ())
      fail_msg ("nbdcached hung up on a 65 MiB READ instead of EINVAL");
  }
  raw_close (&c);
  check_server_alive ();
}

static void
test_raw_unknown_command (void **state)
{
  struct raw_conn c;
  uint8_t w[4096], r[4096];

  open_export (&c);
  fill_pattern (w, sizeof w, 7);
  expect (NBD_SUCCESS, &c, 0, NBD_CMD_WRITE, 2 * MiB, sizeof w, w, NULL, NULL);
  expect (NBD_EINVAL, &c, 0, 99, 0, 4096, NULL, NULL, NULL);
  /* RESIZE is not advertised: refused the same way. */
  expect (NBD_EINVAL, &c, 0, NBD_CMD_RESIZE, 0, 0, NULL, NULL, NULL);
  memset (r, 0, sizeof r);
  expect (NBD_SUCCESS, &c, 0, NBD_CMD_READ, 2 * MiB, sizeof r, NULL, r, NULL);
  assert_memory_equal (w, r, sizeof r);

  /* The same with simple replies. */
  raw_close (&c);
  raw_open (&c, sock_path, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
  raw_go (&c, export_name);
  expect (NBD_EINVAL, &c, 0, 99, 0, 4096, NULL, NULL, NULL);
  memset (r, 0, sizeof r);
  expect (NBD_SUCCESS, &c, 0, NBD_CMD_READ, 2 * MiB, sizeof r, NULL, r, NULL);
  assert_memory_equal (w, r, sizeof r);
  raw_close (&c);
}

/* ---- (f) pipelining past the in-flight bound ---- */

/* Reads PIPELINE_DEPTH simple replies in any order.  For reads, checks
 * each one's data against the pattern of its request.
 */
static void
drain_pipeline (struct raw_conn *c, const uint64_t *cookies, bool reads)
{
  bool seen[PIPELINE_DEPTH] = { false };
  uint8_t *buf = malloc (PIPELINE_BYTES), *want = malloc (PIPELINE_BYTES);

  assert_non_null (buf);
  assert_non_null (want);
  for (size_t n = 0; n < PIPELINE_DEPTH; n++) {
    unsigned char h[16];
    uint64_t cookie;
    size_t i;

    raw_xrecv (c->fd, h, sizeof h);
    assert_int_equal (get_be32 (h), NBD_SIMPLE_REPLY_MAGIC);
    raw_assert_error (get_be32 (h + 4), NBD_SUCCESS);
    cookie = get_be64 (h + 8);
    for (i = 0; i < PIPELINE_DEPTH && cookies[i] != cookie; i++)
      ;
    if (i == PIPELINE_DEPTH)
      fail_msg ("reply %zu has unknown cookie %" PRIu64, n, cookie);
    if (seen[i])
      fail_msg ("two replies for request %zu", i);
    seen[i] = true;
    if (reads) {
      raw_xrecv (c->fd, buf, PIPELINE_BYTES);
      fill_pattern (want, PIPELINE_BYTES, i);
      if (memcmp (buf, want, PIPELINE_BYTES) != 0)
        fail_msg ("pipelined read %zu returned the wrong data", i);
    }
  }
  free (buf);
  free (want);
}

static void
test_raw_pipeline (void **state)
{
  struct raw_conn c;
  uint64_t cookies[PIPELINE_DEPTH];
  uint8_t *w = malloc (PIPELINE_BYTES);

  assert_non_null (w);
  raw_open (&c, sock_path, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
  raw_go (&c, export_name);

  /* 200 writes of 64 KiB (12.5 MiB) sent before reading any reply: the
   * server must stop reading at its bound, reply, and resume.
   */
  for (size_t i = 0; i < PIPELINE_DEPTH; i++) {
    fill_pattern (w, PIPELINE_BYTES, i);
    cookies[i] = raw_send_request (&c, 0, NBD_CMD_WRITE, i * PIPELINE_BYTES,
                                   PIPELINE_BYTES, w, PIPELINE_BYTES);
  }
  drain_pipeline (&c, cookies, false);

  /* 200 reads sent at once: 12.5 MiB of replies that cannot all fit in
   * the socket, so the server blocks writing replies with its in-flight
   * bound reached, then must finish all of them once we read.
   */
  for (size_t i = 0; i < PIPELINE_DEPTH; i++)
    cookies[i] = raw_send_request (&c, 0, NBD_CMD_READ, i * PIPELINE_BYTES,
                                   PIPELINE_BYTES, NULL, 0);
  drain_pipeline (&c, cookies, true);
  raw_close (&c);
  free (w);
  check_server_alive ();
}

/* ---- (g) NBD_CMD_DISC ---- */

static void
test_raw_disc (void **state)
{
  struct raw_conn c;
  uint64_t cookie;
  uint8_t buf[4096];
  struct raw_reply rep = { 0 };

  /* A request outstanding when DISC arrives is still answered, then the
   * server closes without a reply to DISC itself.  nbdcached completes
   * it; nbdkit may answer a request its worker threads had not started
   * yet with ESHUTDOWN (its connection is already shutting down), which
   * is still an answer — seen under load in CI.
   */
  open_export (&c);
  cookie = raw_send_request (&c, 0, NBD_CMD_READ, 0, sizeof buf, NULL, 0);
  raw_send_request (&c, 0, NBD_CMD_DISC, 0, 0, NULL, 0);
  raw_recv_reply (&c, cookie, NBD_CMD_READ, 0, sizeof buf, buf, &rep);
  if (test_is_plugin () && rep.error == NBD_ESHUTDOWN)
    printf ("  nbdkit answered the outstanding READ with ESHUTDOWN\n");
  else
    raw_assert_error (rep.error, NBD_SUCCESS);
  assert_true (raw_wait_closed (c.fd));
  raw_close (&c);

  /* DISC as the first request. */
  open_export (&c);
  raw_send_request (&c, 0, NBD_CMD_DISC, 0, 0, NULL, 0);
  {
    ssize_t n = raw_recv_all (c.fd, buf, 1);

    assert_true (n == 0 || n == -ECONNRESET);
  }
  raw_close (&c);
  check_server_alive ();
}

int
main (int argc, char *argv[])
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_raw_export_name),
    cmocka_unit_test (test_raw_extended_headers),
    cmocka_unit_test (test_raw_options_misc),
    cmocka_unit_test (test_raw_info_truncated),
    cmocka_unit_test (test_raw_option_too_long),
    cmocka_unit_test (test_raw_bad_magic),
    cmocka_unit_test (test_raw_write_too_big),
    cmocka_unit_test (test_raw_unknown_command),
    cmocka_unit_test (test_raw_pipeline),
    cmocka_unit_test (test_raw_disc),
  };

  sock_path = argc > 1 ? argv[1] : getenv ("unixsocket");
  if (sock_path == NULL || *sock_path == '\0') {
    fprintf (stderr,
             "test-raw: usage: test-raw SOCKET (or set $unixsocket)\n");
    return 1;
  }
  export_name = getenv ("export");
  if (export_name == NULL)
    export_name = "disk";
  printf ("test-raw: server kind %s, socket %s, export \"%s\"\n",
          test_server_kind (), sock_path, export_name);
  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
