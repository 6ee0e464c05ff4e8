/* SPDX-License-Identifier: BSD-3-Clause */
/* raw-client.c — a hand-rolled NBD client for protocol tests.
 *
 * WHAT: socket I/O with timeouts, option haggling and transmission
 * messages built and parsed byte by byte (see raw-client.h).
 * WHY: test-raw.c sends what libnbd never would (malformed options,
 * 64-bit extended requests, unknown commands, deep pipelines) and checks
 * every byte of the answers; keeping the codec here keeps the tests
 * readable.
 * INVARIANTS: requests are encoded with nbd_encode_request, so the test
 * client and the server share one definition of the header layout; replies
 * are decoded here independently (a shared decoder would hide its own
 * bugs).  A reply is read completely before the next one.
 * THREADS AND LOCKS: none.
 * FAILURE: cmocka failures on any protocol violation (see raw-client.h).
 * NOT HERE: what any test expects.
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
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "byteorder.h"
#include "nbd-proto.h"
#include "nbd-wire.h"
#include "raw-client.h"

#define KiB (UINT64_C (1024))
#define MiB (UINT64_C (1024) * 1024)
#define IO_TIMEOUT_S     60             /* per send/recv call */
#define MAX_CHUNK_BYTES  (NBD_MAX_PAYLOAD + 64 * KiB)

/* ---- socket I/O ---- */

int
raw_sock_open (const char *path)
{
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  struct timeval tv = { .tv_sec = IO_TIMEOUT_S };
  int fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

  if (fd == -1)
    fail_msg ("socket: %s", strerror (errno));
  if (strlen (path) >= sizeof addr.sun_path)
    fail_msg ("socket path too long: %s", path);
  strcpy (addr.sun_path, path);
  if (connect (fd, (struct sockaddr *) &addr, sizeof addr) == -1)
    fail_msg ("connect %s: %s", path, strerror (errno));
  if (setsockopt (fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == -1 ||
      setsockopt (fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) == -1)
    fail_msg ("setsockopt: %s", strerror (errno));
  return fd;
}

/* 0, or -errno (EPIPE/ECONNRESET when the server hung up). */
int
raw_send_all (int fd, const void *buf, size_t n)
{
  const char *p = buf;

  while (n > 0) {
    ssize_t r = send (fd, p, n, MSG_NOSIGNAL);

    if (r == -1) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    p += r;
    n -= (size_t) r;
  }
  return 0;
}

void
raw_xsend (int fd, const void *buf, size_t n)
{
  int r = raw_send_all (fd, buf, n);

  if (r < 0)
    fail_msg ("send: %s", strerror (-r));
}

/* Bytes read (< n only at EOF), or -errno. */
ssize_t
raw_recv_all (int fd, void *buf, size_t n)
{
  char *p = buf;
  size_t got = 0;

  while (got < n) {
    ssize_t r = recv (fd, p + got, n - got, 0);

    if (r == -1) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    if (r == 0)
      break;
    got += (size_t) r;
  }
  return (ssize_t) got;
}

void
raw_xrecv (int fd, void *buf, size_t n)
{
  ssize_t r = raw_recv_all (fd, buf, n);

  if (r < 0)
    fail_msg ("recv: %s", r == -EAGAIN ? "timed out" : strerror ((int) -r));
  if ((size_t) r != n)
    fail_msg ("recv: server closed the connection after %zd of %zu bytes",
              r, n);
}

/* True if the server closes the connection (EOF or reset), discarding up
 * to 1 MiB of whatever it sends first; false on a timeout.
 */
bool
raw_wait_closed (int fd)
{
  char buf[4096];

  for (size_t total = 0; total < 1 * MiB; ) {
    ssize_t r = recv (fd, buf, sizeof buf, 0);

    if (r == 0 || (r == -1 && (errno == ECONNRESET || errno == EPIPE)))
      return true;
    if (r == -1 && errno == EINTR)
      continue;
    if (r == -1)
      return false;
    total += (size_t) r;
  }
  return false;
}

/* ---- handshake ---- */

/* Connects and completes the greeting with the given client flags. */
void
raw_open (struct raw_conn *c, const char *path, uint32_t cflags)
{
  unsigned char g[18], f[4];
  uint16_t gflags;

  memset (c, 0, sizeof *c);
  c->cookie = 1;
  c->fd = raw_sock_open (path);
  raw_xrecv (c->fd, g, sizeof g);
  if (get_be64 (g) != NBD_MAGIC || get_be64 (g + 8) != NBD_IHAVEOPT)
    fail_msg ("bad greeting magic 0x%016" PRIx64 " 0x%016" PRIx64,
              get_be64 (g), get_be64 (g + 8));
  gflags = get_be16 (g + 16);
  assert_int_equal (gflags & NBD_FLAG_FIXED_NEWSTYLE, NBD_FLAG_FIXED_NEWSTYLE);
  assert_int_equal (gflags & NBD_FLAG_NO_ZEROES, NBD_FLAG_NO_ZEROES);
  put_be32 (f, cflags);
  raw_xsend (c->fd, f, sizeof f);
}

void
raw_close (struct raw_conn *c)
{
  if (c->fd >= 0)
    close (c->fd);
  c->fd = -1;
}

void
raw_send_option (int fd, uint32_t opt, const void *data, uint32_t len)
{
  unsigned char h[16];

  put_be64 (h, NBD_IHAVEOPT);
  put_be32 (h + 8, opt);
  put_be32 (h + 12, len);
  raw_xsend (fd, h, sizeof h);
  if (len > 0)
    raw_xsend (fd, data, len);
}

void
raw_recv_option_reply (int fd, uint32_t opt, struct raw_opt_reply *r)
{
  unsigned char h[20];

  raw_xrecv (fd, h, sizeof h);
  if (get_be64 (h) != NBD_REP_MAGIC)
    fail_msg ("option reply magic 0x%016" PRIx64, get_be64 (h));
  if (get_be32 (h + 8) != opt)
    fail_msg ("reply for option %" PRIu32 " (%s) while waiting for %" PRIu32
              " (%s)", get_be32 (h + 8), nbd_opt_name (get_be32 (h + 8)),
              opt, nbd_opt_name (opt));
  r->type = get_be32 (h + 12);
  r->len = get_be32 (h + 16);
  r->data = NULL;
  if (r->len > 64 * KiB)
    fail_msg ("option reply of %" PRIu32 " bytes", r->len);
  r->data = calloc (1, r->len + 1);
  assert_non_null (r->data);
  if (r->len > 0)
    raw_xrecv (fd, r->data, r->len);
}

/* For options answered by one reply: the reply type. */
uint32_t
raw_option (int fd, uint32_t opt, const void *data, uint32_t len)
{
  struct raw_opt_reply r;

  raw_send_option (fd, opt, data, len);
  raw_recv_option_reply (fd, opt, &r);
  if (r.type & NBD_REP_ERR_BIT)
    printf ("  %s -> %s%s%s\n", nbd_opt_name (opt), nbd_rep_name (r.type),
            r.len ? ": " : "", r.len ? (char *) r.data : "");
  free (r.data);
  return r.type;
}

void
raw_assert_rep (uint32_t got, uint32_t want)
{
  if (got != want)
    fail_msg ("option reply %s (0x%" PRIx32 "), expected %s",
              nbd_rep_name (got), got, nbd_rep_name (want));
}

/* NBD_OPT_INFO or NBD_OPT_GO on `name`, asking for block sizes.  Returns
 * NBD_REP_ACK or the error reply; fills c->size/eflags/block_* from the
 * NBD_INFO replies.
 */
uint32_t
raw_info_go (struct raw_conn *c, uint32_t opt, const char *name)
{
  size_t nlen = strlen (name);
  unsigned char *p = malloc (4 + nlen + 4);
  bool got_export = false;

  assert_non_null (p);
  put_be32 (p, (uint32_t) nlen);
  memcpy (p + 4, name, nlen);
  put_be16 (p + 4 + nlen, 1);
  put_be16 (p + 6 + nlen, NBD_INFO_BLOCK_SIZE);
  raw_send_option (c->fd, opt, p, (uint32_t) (nlen + 8));
  free (p);

  for (;;) {
    struct raw_opt_reply r;

    raw_recv_option_reply (c->fd, opt, &r);
    if (r.type == NBD_REP_ACK) {
      assert_int_equal (r.len, 0);
      free (r.data);
      assert_true (got_export);
      return NBD_REP_ACK;
    }
    if (r.type & NBD_REP_ERR_BIT) {
      free (r.data);
      return r.type;
    }
    assert_int_equal (r.type, NBD_REP_INFO);
    assert_true (r.len >= 2);
    switch (get_be16 (r.data)) {
    case NBD_INFO_EXPORT:
      assert_int_equal (r.len, 12);
      c->size = get_be64 (r.data + 2);
      c->eflags = get_be16 (r.data + 10);
      got_export = true;
      break;
    case NBD_INFO_BLOCK_SIZE:
      assert_int_equal (r.len, 14);
      c->block_min = get_be32 (r.data + 2);
      c->block_pref = get_be32 (r.data + 6);
      c->block_max = get_be32 (r.data + 10);
      break;
    default:
      break;                    /* NAME, DESCRIPTION: allowed, unchecked */
    }
    free (r.data);
  }
}

void
raw_go (struct raw_conn *c, const char *name)
{
  raw_assert_rep (raw_info_go (c, NBD_OPT_GO, name), NBD_REP_ACK);
  assert_true (c->eflags & NBD_FLAG_HAS_FLAGS);
}

void
raw_structured (struct raw_conn *c)
{
  raw_assert_rep (raw_option (c->fd, NBD_OPT_STRUCTURED_REPLY, NULL, 0),
                  NBD_REP_ACK);
  c->structured = true;
}

/* NBD_OPT_SET_META_CONTEXT base:allocation on `name`. */
void
raw_set_meta_base (struct raw_conn *c, const char *name)
{
  static const char query[] = "base:allocation";
  size_t nlen = strlen (name), qlen = strlen (query);
  size_t len = 4 + nlen + 4 + 4 + qlen;
  unsigned char *p = malloc (len);
  struct raw_opt_reply r;

  assert_non_null (p);
  put_be32 (p, (uint32_t) nlen);
  memcpy (p + 4, name, nlen);
  put_be32 (p + 4 + nlen, 1);
  put_be32 (p + 8 + nlen, (uint32_t) qlen);
  memcpy (p + 12 + nlen, query, qlen);
  raw_send_option (c->fd, NBD_OPT_SET_META_CONTEXT, p, (uint32_t) len);
  free (p);

  raw_recv_option_reply (c->fd, NBD_OPT_SET_META_CONTEXT, &r);
  raw_assert_rep (r.type, NBD_REP_META_CONTEXT);
  assert_int_equal (r.len, 4 + qlen);
  assert_memory_equal (r.data + 4, query, qlen);
  c->base_ctx_id = get_be32 (r.data);
  c->have_base_ctx = true;
  free (r.data);
  raw_recv_option_reply (c->fd, NBD_OPT_SET_META_CONTEXT, &r);
  raw_assert_rep (r.type, NBD_REP_ACK);
  free (r.data);
}

/* NBD_OPT_EXPORT_NAME: no reply header, just size, flags and (without
 * NO_ZEROES) 124 zero bytes.
 */
void
raw_export_name (struct raw_conn *c, const char *name, bool no_zeroes)
{
  unsigned char r[10 + 124];

  raw_send_option (c->fd, NBD_OPT_EXPORT_NAME, name, (uint32_t) strlen (name));
  raw_xrecv (c->fd, r, no_zeroes ? 10 : sizeof r);
  c->size = get_be64 (r);
  c->eflags = get_be16 (r + 8);
  assert_true (c->eflags & NBD_FLAG_HAS_FLAGS);
  if (!no_zeroes)
    for (size_t i = 10; i < sizeof r; i++)
      if (r[i] != 0)
        fail_msg ("reserved byte %zu after EXPORT_NAME is 0x%02x", i - 10,
                  r[i]);
}

/* ---- transmission ---- */

uint64_t
raw_send_request (struct raw_conn *c, uint16_t flags, uint16_t type,
                  uint64_t offset, uint64_t count, const void *payload,
                  size_t payload_len)
{
  unsigned char h[NBD_MAX_HEADER_BYTES];
  struct nbd_req req = {
    .flags = flags, .type = type, .cookie = c->cookie++,
    .offset = offset, .count = count,
  };
  size_t n = nbd_encode_request (h, c->extended, &req);

  raw_xsend (c->fd, h, n);
  if (payload_len > 0)
    raw_xsend (c->fd, payload, payload_len);
  return req.cookie;
}

static uint8_t *
read_payload (int fd, uint64_t len)
{
  uint8_t *p;

  if (len > MAX_CHUNK_BYTES)
    fail_msg ("reply chunk of %" PRIu64 " bytes", len);
  p = malloc (len + 1);
  assert_non_null (p);
  if (len > 0)
    raw_xrecv (fd, p, len);
  return p;
}

/* Reads the complete reply to the request (cookie, type, offset, count),
 * which must be the next thing on the wire.  READ data goes to buf.
 */
void
raw_recv_reply (struct raw_conn *c, uint64_t cookie, uint16_t type,
                uint64_t offset, uint64_t count, uint8_t *buf,
                struct raw_reply *rep)
{
  bool done = false;

  if (rep->bs)
    memset (rep->bs, 0, sizeof *rep->bs);
  rep->error = 0;
  rep->chunks = 0;
  rep->data_bytes = 0;
  while (!done) {
    unsigned char h[32];
    uint32_t magic;
    uint16_t cflags, ctype;
    uint64_t ccookie, coffset = 0, clen = 0;
    uint8_t *p;

    raw_xrecv (c->fd, h, 4);
    magic = get_be32 (h);
    if (magic == NBD_SIMPLE_REPLY_MAGIC) {
      if (c->extended)
        fail_msg ("simple reply after extended headers were negotiated");
      if (c->structured && type == NBD_CMD_READ)
        fail_msg ("simple reply to READ with structured replies on");
      raw_xrecv (c->fd, h + 4, 12);
      assert_int_equal (get_be64 (h + 8), cookie);
      rep->error = get_be32 (h + 4);
      rep->chunks++;
      if (type == NBD_CMD_READ && rep->error == 0) {
        raw_xrecv (c->fd, buf, count);
        rep->data_bytes = count;
      }
      return;
    }
    if (magic == NBD_STRUCTURED_REPLY_MAGIC) {
      if (!c->structured || c->extended)
        fail_msg ("structured reply chunk not allowed here");
      raw_xrecv (c->fd, h + 4, 16);
      clen = get_be32 (h + 16);
    }
    else if (magic == NBD_EXTENDED_REPLY_MAGIC) {
      if (!c->extended)
        fail_msg ("extended reply without extended headers");
      raw_xrecv (c->fd, h + 4, 28);
      coffset = get_be64 (h + 16);
      clen = get_be64 (h + 24);
    }
    else
      fail_msg ("bad reply magic 0x%08" PRIx32, magic);
    cflags = get_be16 (h + 4);
    ctype = get_be16 (h + 6);
    ccookie = get_be64 (h + 8);
    if (ccookie != cookie)
      fail_msg ("reply cookie %" PRIu64 ", expected %" PRIu64, ccookie,
                cookie);
    if (c->extended && coffset != offset)
      fail_msg ("extended reply offset %" PRIu64 ", request offset %" PRIu64,
                coffset, offset);
    rep->chunks++;
    done = cflags & NBD_REPLY_FLAG_DONE;
    p = read_payload (c->fd, clen);

    switch (ctype) {
    case NBD_REPLY_TYPE_NONE:
      assert_int_equal (clen, 0);
      assert_true (done);
      break;
    case NBD_REPLY_TYPE_OFFSET_DATA: {
      uint64_t doff;

      assert_int_equal (type, NBD_CMD_READ);
      assert_true (clen > 8);
      doff = get_be64 (p);
      if (doff < offset || doff - offset + (clen - 8) > count)
        fail_msg ("data chunk [%" PRIu64 ", +%" PRIu64 ") outside the "
                  "request", doff, clen - 8);
      memcpy (buf + (doff - offset), p + 8, clen - 8);
      rep->data_bytes += clen - 8;
      break;
    }
    case NBD_REPLY_TYPE_OFFSET_HOLE: {
      uint64_t hoff;
      uint32_t hlen;

      assert_int_equal (type, NBD_CMD_READ);
      assert_int_equal (clen, 12);
      hoff = get_be64 (p);
      hlen = get_be32 (p + 8);
      if (hlen == 0 || hoff < offset || hoff - offset + hlen > count)
        fail_msg ("hole chunk [%" PRIu64 ", +%" PRIu32 ") outside the "
                  "request", hoff, hlen);
      memset (buf + (hoff - offset), 0, hlen);
      rep->data_bytes += hlen;
      break;
    }
    case NBD_REPLY_TYPE_BLOCK_STATUS:
    case NBD_REPLY_TYPE_BLOCK_STATUS_EXT: {
      bool ext = ctype == NBD_REPLY_TYPE_BLOCK_STATUS_EXT;
      size_t hdr = ext ? 8 : 4, desc = ext ? 16 : 8, n;

      assert_int_equal (type, NBD_CMD_BLOCK_STATUS);
      if (ext != c->extended)
        fail_msg ("%s block status chunk with extended headers %s",
                  ext ? "64-bit" : "32-bit", c->extended ? "on" : "off");
      assert_true (clen >= hdr + desc);
      assert_int_equal ((clen - hdr) % desc, 0);
      n = (clen - hdr) / desc;
      if (ext)
        assert_int_equal (get_be32 (p + 4), n);
      if (rep->bs) {
        rep->bs->ext = ext;
        rep->bs->ctx_id = get_be32 (p);
        for (size_t i = 0; i < n && rep->bs->n < 512; i++) {
          const uint8_t *d = p + hdr + i * desc;

          rep->bs->len[rep->bs->n] = ext ? get_be64 (d) : get_be32 (d);
          rep->bs->flags[rep->bs->n] = ext ? get_be64 (d + 8)
                                           : get_be32 (d + 4);
          rep->bs->n++;
        }
      }
      break;
    }
    case NBD_REPLY_TYPE_ERROR:
    case NBD_REPLY_TYPE_ERROR_OFFSET: {
      uint16_t msglen;

      assert_true (clen >= 6);
      msglen = get_be16 (p + 4);
      assert_true ((uint64_t) msglen + 6 <= clen);
      if (rep->error == 0)
        rep->error = get_be32 (p);
      assert_int_not_equal (get_be32 (p), 0);
      break;
    }
    default:
      fail_msg ("unknown reply chunk type %u", ctype);
    }
    free (p);
  }
}

/* Sends one request and waits for its whole reply; returns the NBD error. */
uint32_t
raw_command (struct raw_conn *c, uint16_t flags, uint16_t type,
             uint64_t offset, uint64_t count, const void *payload,
             uint8_t *buf, struct raw_reply *rep)
{
  struct raw_reply local = { 0 };
  uint64_t cookie;

  if (rep == NULL)
    rep = &local;
  cookie = raw_send_request (c, flags, type, offset, count, payload,
                             type == NBD_CMD_WRITE ? count : 0);
  raw_recv_reply (c, cookie, type, offset, count, buf, rep);
  return rep->error;
}

void
raw_assert_error (uint32_t got, uint32_t want)
{
  if (got != want)
    fail_msg ("NBD error %s (%" PRIu32 "), expected %s", nbd_err_name (got),
              got, nbd_err_name (want));
}

/* ---- liveness ---- */

void
raw_check_server_alive (const char *path, const char *name)
{
  struct raw_conn c;
  uint8_t w[4096], r[4096];

  raw_open (&c, path, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
  raw_structured (&c);
  raw_go (&c, name);
  assert_true (c.size >= 1 * MiB + sizeof w);
  for (size_t i = 0; i < sizeof w; i++)
    w[i] = (uint8_t) (i * 7 + 99);
  raw_assert_error (raw_command (&c, 0, NBD_CMD_WRITE, 1 * MiB, sizeof w, w,
                                 NULL, NULL), NBD_SUCCESS);
  memset (r, 0, sizeof r);
  raw_assert_error (raw_command (&c, 0, NBD_CMD_READ, 1 * MiB, sizeof r, NULL,
                                 r, NULL), NBD_SUCCESS);
  assert_memory_equal (w, r, sizeof r);
  raw_send_request (&c, 0, NBD_CMD_DISC, 0, 0, NULL, 0);
  raw_close (&c);
}
