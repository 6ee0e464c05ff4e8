/* SPDX-License-Identifier: BSD-3-Clause */
/* test-tls-reset.c — NBD_OPT_STARTTLS: what a server forgets, and what a
 * TLS-only server refuses before it.
 *
 * WHAT:
 *  (a) libnbd (nbd_set_tls LIBNBD_TLS_REQUIRE, a certificates directory,
 *      option mode): TLS is negotiated, then LIST, INFO, GO, structured
 *      replies, base:allocation and a READ all work inside TLS;
 *  (b) raw client: STRUCTURED_REPLY and SET_META_CONTEXT in plain text
 *      (both ACKed), STARTTLS, the TLS handshake (OpenSSL, server verified
 *      against ca-cert.pem and "localhost"), then GO directly: structured
 *      replies are NOT in effect (no DF flag, READ gets a simple reply) and
 *      BLOCK_STATUS fails with EINVAL (no meta context any more); and
 *      with only structured replies asked for again inside TLS (ACKed,
 *      not "already negotiated"), BLOCK_STATUS still fails with EINVAL;
 *  (c) the same, but renegotiated inside TLS: structured READ replies,
 *      BLOCK_STATUS with the new context id;
 *  (d) STARTTLS with a payload is invalid (and changes nothing), STARTTLS
 *      inside TLS is invalid, the session carries on after both;
 *  (e) TLS_MODE=require: before STARTTLS every option other than STARTTLS
 *      and ABORT gets NBD_REP_ERR_TLS_REQD (LIST, INFO, GO, STRUCTURED_REPLY,
 *      LIST/SET_META_CONTEXT), EXPORT_NAME makes the server hang up, ABORT
 *      is ACKed; STARTTLS then opens the same options.  TLS_MODE=on: plain
 *      INFO and GO work without TLS.
 * WHY: the spec requires the server to forget everything negotiated before
 * STARTTLS (a man in the middle could have injected it); forgetting too
 * little is a security bug no library client can show, because libnbd
 * 1.14 never sends options before STARTTLS.
 * INVARIANTS: the wrapper (test-libnbd-tls-reset.sh) serves EXPORT
 * ($export, 16 MiB, random contents) on $unixsocket with X.509 server
 * certificates from $TLS_CERTS (made by make_x509_certs: ca-cert.pem, and
 * a client-alice/ directory), TLS mode $TLS_MODE (on|require), against
 * nbdcached or nbdkit + the plugin ($SERVER_KIND; both reset the same).
 * THREADS AND LOCKS: the test thread, plus raw-tls.c's pump thread while a
 * TLS session is open.
 * FAILURE: any unexpected reply fails that test; exit status 1 if any did.
 * NOT HERE: certificate verification policy, PSK, per-export TLS and
 * access control (the shell tests test-tls-*.sh).
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

#include <cmocka.h>

#include "byteorder.h"
#include "libnbd-test.h"
#include "nbd-proto.h"
#include "raw-client.h"
#include "raw-tls.h"

#define EXPORT_SIZE  (UINT64_C (16) * 1024 * 1024)      /* bytes */
#define IO_BYTES     4096

static const char *sock_path;
static const char *export_name;
static const char *certs_dir;
static bool tls_required;       /* TLS_MODE=require */
static char ca_file[4096];
static char alice_dir[4096];

/* ---- helpers ---- */

/* NBD_OPT_{LIST,SET}_META_CONTEXT payload for base:allocation. */
static size_t
meta_payload (unsigned char *p, const char *name)
{
  static const char query[] = "base:allocation";
  size_t nlen = strlen (name), qlen = strlen (query);

  put_be32 (p, (uint32_t) nlen);
  memcpy (p + 4, name, nlen);
  put_be32 (p + 4 + nlen, 1);
  put_be32 (p + 8 + nlen, (uint32_t) qlen);
  memcpy (p + 12 + nlen, query, qlen);
  return 12 + nlen + qlen;
}

/* NBD_OPT_INFO/GO payload: the name and no information requests. */
static size_t
info_payload (unsigned char *p, const char *name)
{
  size_t nlen = strlen (name);

  put_be32 (p, (uint32_t) nlen);
  memcpy (p + 4, name, nlen);
  put_be16 (p + 4 + nlen, 0);
  return 6 + nlen;
}

/* NBD_OPT_LIST: the number of exports listed (fails on an error reply). */
static unsigned
raw_list (struct raw_conn *c)
{
  unsigned n = 0;

  raw_send_option (c->fd, NBD_OPT_LIST, NULL, 0);
  for (;;) {
    struct raw_opt_reply r;

    raw_recv_option_reply (c->fd, NBD_OPT_LIST, &r);
    if (r.type == NBD_REP_ACK) {
      free (r.data);
      return n;
    }
    if (r.type != NBD_REP_SERVER)
      fail_msg ("NBD_OPT_LIST answered %s%s%s", nbd_rep_name (r.type),
                r.len ? ": " : "", r.len ? (char *) r.data : "");
    n++;
    free (r.data);
  }
}

/* STARTTLS (must be ACKed) and the TLS handshake as alice. */
static struct raw_tls *
starttls (struct raw_conn *c)
{
  char cert[4200], key[4200];
  struct raw_tls_opts o = {
    .ca_file = ca_file, .hostname = "localhost",
    .cert_file = cert, .key_file = key,
  };
  struct raw_tls *t;

  snprintf (cert, sizeof cert, "%s/client-cert.pem", alice_dir);
  snprintf (key, sizeof key, "%s/client-key.pem", alice_dir);
  raw_assert_rep (raw_option (c->fd, NBD_OPT_STARTTLS, NULL, 0), NBD_REP_ACK);
  t = raw_tls_start (c, &o);
  printf ("  TLS session: %s\n", raw_tls_version (t));
  return t;
}

/* Plain-text options that a tls = on server accepts (and that STARTTLS
 * must then forget).  Under TLS_MODE=require they are refused instead,
 * which test (e) checks; here they are skipped.
 */
static void
plaintext_negotiation (struct raw_conn *c)
{
  if (tls_required)
    return;
  raw_structured (c);
  raw_set_meta_base (c, export_name);
}

static void
disconnect (struct raw_conn *c, struct raw_tls *t)
{
  raw_send_request (c, 0, NBD_CMD_DISC, 0, 0, NULL, 0);
  assert_true (raw_tls_close (t, c));
}

/* ---- (a) libnbd ---- */

static int
count_export (void *opaque, const char *name, const char *desc)
{
  return 0;
}

static void
test_tls_reset_libnbd (void **state)
{
  struct nbd_handle *h = test_handle_create ();
  char buf[IO_BYTES];
  int r;

  if (nbd_supports_tls (h) != 1)
    skip ();
  NBD_OK (nbd_set_tls (h, LIBNBD_TLS_REQUIRE));
  NBD_OK (nbd_set_tls_certificates (h, alice_dir));
  NBD_OK (nbd_set_opt_mode (h, true));
  NBD_OK (nbd_add_meta_context (h, LIBNBD_CONTEXT_BASE_ALLOCATION));
  NBD_OK (nbd_set_export_name (h, export_name));
  NBD_OK (nbd_connect_unix (h, sock_path));
  assert_int_equal (nbd_aio_is_negotiating (h), 1);
  assert_int_equal (nbd_get_tls_negotiated (h), 1);
  assert_int_equal (nbd_get_structured_replies_negotiated (h), 1);

  r = nbd_opt_list (h, (nbd_list_callback) { .callback = count_export });
  NBD_OK (r);
  assert_true (r >= 1);
  NBD_OK (nbd_opt_info (h));
  assert_int_equal (nbd_get_size (h), (int64_t) EXPORT_SIZE);
  NBD_OK (nbd_opt_go (h));
  assert_int_equal (nbd_aio_is_ready (h), 1);
  assert_int_equal (nbd_can_meta_context (h, LIBNBD_CONTEXT_BASE_ALLOCATION),
                    1);
  NBD_OK (nbd_pread (h, buf, sizeof buf, 0, 0));
  test_disconnect (h);
}

/* ---- (b) forgotten at STARTTLS ---- */

static void
test_tls_reset_forgets_negotiation (void **state)
{
  struct raw_conn c;
  struct raw_tls *t;
  uint8_t buf[IO_BYTES];
  struct raw_reply rep = { 0 };

  raw_open (&c, sock_path, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
  plaintext_negotiation (&c);
  t = starttls (&c);
  /* What the client may assume now: nothing. */
  c.structured = false;
  c.have_base_ctx = false;
  raw_go (&c, export_name);
  assert_int_equal (c.size, EXPORT_SIZE);
  if (c.eflags & NBD_FLAG_SEND_DF)
    fail_msg ("DF advertised after STARTTLS: structured replies carried "
              "over from plain text");
  /* raw_recv_reply fails on a structured chunk when c.structured is off. */
  raw_assert_error (raw_command (&c, 0, NBD_CMD_READ, 0, sizeof buf, NULL,
                                 buf, &rep), NBD_SUCCESS);
  assert_int_equal (rep.chunks, 1);
  assert_int_equal (rep.data_bytes, sizeof buf);
  /* No meta context is selected: BLOCK_STATUS is invalid. */
  raw_assert_error (raw_command (&c, 0, NBD_CMD_BLOCK_STATUS, 0, IO_BYTES,
                                 NULL, NULL, NULL), NBD_EINVAL);
  /* Still in step. */
  raw_assert_error (raw_command (&c, 0, NBD_CMD_READ, IO_BYTES, sizeof buf,
                                 NULL, buf, NULL), NBD_SUCCESS);
  disconnect (&c, t);
}

/* Structured replies alone are negotiated again inside TLS: the meta
 * context from plain text must still be gone.  (Asking for structured
 * replies again is ACKed only because STARTTLS forgot the first time.)
 */
static void
test_tls_reset_forgets_meta_context (void **state)
{
  struct raw_conn c;
  struct raw_tls *t;
  uint8_t buf[IO_BYTES];

  raw_open (&c, sock_path, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
  plaintext_negotiation (&c);
  t = starttls (&c);
  c.structured = false;
  c.have_base_ctx = false;
  raw_structured (&c);
  raw_go (&c, export_name);
  assert_true (c.eflags & NBD_FLAG_SEND_DF);
  raw_assert_error (raw_command (&c, 0, NBD_CMD_BLOCK_STATUS, 0, IO_BYTES,
                                 NULL, NULL, NULL), NBD_EINVAL);
  raw_assert_error (raw_command (&c, 0, NBD_CMD_READ, 0, sizeof buf, NULL,
                                 buf, NULL), NBD_SUCCESS);
  disconnect (&c, t);
}

/* ---- (c) renegotiated inside TLS ---- */

static void
test_tls_reset_renegotiate (void **state)
{
  struct raw_conn c;
  struct raw_tls *t;
  uint8_t buf[IO_BYTES];
  struct raw_extents *bs = calloc (1, sizeof *bs);
  struct raw_reply rep = { .bs = bs };
  uint64_t covered = 0;

  assert_non_null (bs);
  raw_open (&c, sock_path, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
  plaintext_negotiation (&c);
  t = starttls (&c);
  c.structured = false;
  c.have_base_ctx = false;
  raw_structured (&c);
  raw_set_meta_base (&c, export_name);
  raw_go (&c, export_name);
  assert_true (c.eflags & NBD_FLAG_SEND_DF);
  /* raw_recv_reply fails on a simple reply to READ when structured. */
  raw_assert_error (raw_command (&c, 0, NBD_CMD_READ, 0, sizeof buf, NULL,
                                 buf, &rep), NBD_SUCCESS);
  assert_int_equal (rep.data_bytes, sizeof buf);
  raw_assert_error (raw_command (&c, 0, NBD_CMD_BLOCK_STATUS, 0, 1024 * 1024,
                                 NULL, NULL, &rep), NBD_SUCCESS);
  assert_true (bs->n >= 1);
  assert_int_equal (bs->ctx_id, c.base_ctx_id);
  for (size_t i = 0; i < bs->n; i++)
    covered += bs->len[i];
  assert_true (covered > 0);
  disconnect (&c, t);
  free (bs);
}

/* ---- (d) STARTTLS misuse ---- */

static void
test_tls_reset_starttls_invalid (void **state)
{
  struct raw_conn c;
  struct raw_tls *t;
  uint8_t buf[IO_BYTES];

  raw_open (&c, sock_path, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
  /* STARTTLS carries no data: invalid, and the session stays plain text
   * (the next options are read as plain text, so a server that started
   * TLS here would desynchronise).
   */
  raw_assert_rep (raw_option (c.fd, NBD_OPT_STARTTLS, "x", 1),
                  NBD_REP_ERR_INVALID);
  t = starttls (&c);
  /* A second STARTTLS inside TLS is invalid too. */
  raw_assert_rep (raw_option (c.fd, NBD_OPT_STARTTLS, NULL, 0),
                  NBD_REP_ERR_INVALID);
  raw_go (&c, export_name);
  raw_assert_error (raw_command (&c, 0, NBD_CMD_READ, 0, sizeof buf, NULL,
                                 buf, NULL), NBD_SUCCESS);
  disconnect (&c, t);
}

/* ---- (e) before STARTTLS ---- */

static void
test_tls_reset_before_starttls (void **state)
{
  static const uint32_t refused[] = {
    NBD_OPT_LIST, NBD_OPT_INFO, NBD_OPT_GO, NBD_OPT_STRUCTURED_REPLY,
    NBD_OPT_LIST_META_CONTEXT, NBD_OPT_SET_META_CONTEXT,
  };
  unsigned char p[512];
  struct raw_conn c;
  struct raw_tls *t;
  uint8_t buf[IO_BYTES];

  raw_open (&c, sock_path, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
  if (!tls_required) {
    /* tls = on: plain text clients are served. */
    raw_assert_rep (raw_info_go (&c, NBD_OPT_INFO, export_name), NBD_REP_ACK);
    raw_go (&c, export_name);
    raw_assert_error (raw_command (&c, 0, NBD_CMD_READ, 0, sizeof buf, NULL,
                                   buf, NULL), NBD_SUCCESS);
    raw_send_request (&c, 0, NBD_CMD_DISC, 0, 0, NULL, 0);
    raw_close (&c);
    return;
  }

  for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
    uint32_t opt = refused[i];
    size_t len = 0;

    switch (opt) {
    case NBD_OPT_INFO: case NBD_OPT_GO:
      len = info_payload (p, export_name);
      break;
    case NBD_OPT_LIST_META_CONTEXT: case NBD_OPT_SET_META_CONTEXT:
      len = meta_payload (p, export_name);
      break;
    default:
      break;
    }
    printf ("  plain-text %s:\n", nbd_opt_name (opt));
    raw_assert_rep (raw_option (c.fd, opt, p, (uint32_t) len),
                    NBD_REP_ERR_TLS_REQD);
  }
  /* Then TLS opens them all. */
  t = starttls (&c);
  assert_true (raw_list (&c) >= 1);
  raw_structured (&c);
  raw_set_meta_base (&c, export_name);
  raw_go (&c, export_name);
  raw_assert_error (raw_command (&c, 0, NBD_CMD_READ, 0, sizeof buf, NULL,
                                 buf, NULL), NBD_SUCCESS);
  disconnect (&c, t);

  /* ABORT needs no TLS. */
  raw_open (&c, sock_path, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
  raw_assert_rep (raw_option (c.fd, NBD_OPT_ABORT, NULL, 0), NBD_REP_ACK);
  assert_true (raw_wait_closed (c.fd));
  raw_close (&c);

  /* EXPORT_NAME cannot be refused with a reply: the server hangs up
   * without sending the export's size and flags.
   */
  raw_open (&c, sock_path, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
  {
    size_t nlen = strlen (export_name);
    unsigned char r[10];
    ssize_t n;

    /* One send: a server may hang up as soon as it has read the header
     * (nbdkit does), so a second send could fail with EPIPE.
     */
    assert_true (16 + nlen <= sizeof p);
    put_be64 (p, NBD_IHAVEOPT);
    put_be32 (p + 8, NBD_OPT_EXPORT_NAME);
    put_be32 (p + 12, (uint32_t) nlen);
    memcpy (p + 16, export_name, nlen);
    (void) raw_send_all (c.fd, p, 16 + nlen);
    n = raw_recv_all (c.fd, r, sizeof r);
    if (n == (ssize_t) sizeof r)
      fail_msg ("plain-text EXPORT_NAME answered with export information "
                "by a TLS-only server");
  }
  raw_close (&c);
}

int
main (int argc, char *argv[])
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_tls_reset_libnbd),
    cmocka_unit_test (test_tls_reset_forgets_negotiation),
    cmocka_unit_test (test_tls_reset_forgets_meta_context),
    cmocka_unit_test (test_tls_reset_renegotiate),
    cmocka_unit_test (test_tls_reset_starttls_invalid),
    cmocka_unit_test (test_tls_reset_before_starttls),
  };
  const char *mode = getenv ("TLS_MODE");

  sock_path = argc > 1 ? argv[1] : getenv ("unixsocket");
  certs_dir = getenv ("TLS_CERTS");
  export_name = getenv ("export");
  if (export_name == NULL)
    export_name = "disk";
  if (sock_path == NULL || *sock_path == '\0' ||
      certs_dir == NULL || *certs_dir == '\0') {
    fprintf (stderr, "test-tls-reset: usage: TLS_CERTS=DIR [TLS_MODE=on|"
             "require] test-tls-reset SOCKET (or set $unixsocket)\n");
    return 1;
  }
  if (mode == NULL || strcmp (mode, "on") == 0)
    tls_required = false;
  else if (strcmp (mode, "require") == 0)
    tls_required = true;
  else {
    fprintf (stderr, "test-tls-reset: TLS_MODE must be on or require, not "
             "\"%s\"\n", mode);
    return 1;
  }
  snprintf (ca_file, sizeof ca_file, "%s/ca-cert.pem", certs_dir);
  snprintf (alice_dir, sizeof alice_dir, "%s/client-alice", certs_dir);
  printf ("test-tls-reset: server kind %s, socket %s, export \"%s\", "
          "TLS %s, certificates %s\n", test_server_kind (), sock_path,
          export_name, tls_required ? "required" : "on", certs_dir);
  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
