/* SPDX-License-Identifier: BSD-3-Clause */
/* test-meta-access.c — LIST_META_CONTEXT and SET_META_CONTEXT obey the
 * export's access rules.
 *
 * WHAT: a plain-text raw client (raw-client.c) on the Unix socket asks for
 * the meta contexts of three exports (test-libnbd-meta-access.sh):
 *   "disk"    open to everyone: contexts are listed and selected;
 *   "secret"  tls = require: both options answer NBD_REP_ERR_TLS_REQD
 *             and name no context, like NBD_OPT_INFO;
 *   "nounix"  allow_unix = no: both answer NBD_REP_ERR_POLICY, no context.
 * Each query is sent with a named context and with none (LIST without
 * queries names everything the server has).
 * WHY: a refused client must learn nothing about an export beyond the
 * refusal; the META_CONTEXT options name an export just as INFO does.
 * INVARIANTS: the client never starts TLS.
 * THREADS AND LOCKS: single-threaded, blocking sockets.
 * FAILURE: a context reply or an ACK for a refused export fails the test.
 * NOT HERE: which contexts exist and what they report (test-options.c,
 * test-state-context.sh).
 */
#include <config.h>

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

static const char *sock_path;

/* Sends `opt` for export `name` with one query (or none if query is
 * NULL); returns the final reply (ACK or an error) and counts the
 * NBD_REP_META_CONTEXT replies before it.
 */
static uint32_t
meta_query (struct raw_conn *c, uint32_t opt, const char *name,
            const char *query, unsigned *nr_contexts)
{
  size_t nlen = strlen (name), qlen = query ? strlen (query) : 0;
  size_t len = 4 + nlen + 4 + (query ? 4 + qlen : 0);
  unsigned char *p = malloc (len);

  assert_non_null (p);
  put_be32 (p, (uint32_t) nlen);
  memcpy (p + 4, name, nlen);
  put_be32 (p + 4 + nlen, query ? 1 : 0);
  if (query) {
    put_be32 (p + 8 + nlen, (uint32_t) qlen);
    memcpy (p + 12 + nlen, query, qlen);
  }
  raw_send_option (c->fd, opt, p, (uint32_t) len);
  free (p);

  *nr_contexts = 0;
  for (;;) {
    struct raw_opt_reply r;
    uint32_t type;

    raw_recv_option_reply (c->fd, opt, &r);
    type = r.type;
    if (type == NBD_REP_META_CONTEXT)
      printf ("  %s '%s': context '%s'\n", nbd_opt_name (opt), name,
              r.len > 4 ? (char *) r.data + 4 : "");
    else if (type & NBD_REP_ERR_BIT)
      printf ("  %s '%s' -> %s%s%s\n", nbd_opt_name (opt), name,
              nbd_rep_name (type), r.len ? ": " : "",
              r.len ? (char *) r.data : "");
    free (r.data);
    if (type != NBD_REP_META_CONTEXT)
      return type;
    (*nr_contexts)++;
  }
}

/* Both options, with and without a query, on one connection. */
static void
expect_meta (const char *name, uint32_t want)
{
  static const uint32_t opts[] = {
    NBD_OPT_LIST_META_CONTEXT, NBD_OPT_SET_META_CONTEXT,
  };
  struct raw_conn c;

  raw_open (&c, sock_path, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
  raw_structured (&c);
  for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
    for (int with_query = 1; with_query >= 0; with_query--) {
      unsigned n;
      uint32_t got = meta_query (&c, opts[i], name,
                                 with_query ? "base:allocation" : NULL, &n);

      raw_assert_rep (got, want);
      if (want != NBD_REP_ACK && n != 0)
        fail_msg ("%s on '%s' named %u contexts before refusing",
                  nbd_opt_name (opts[i]), name, n);
      /* SET without queries selects nothing; everything else names
       * base:allocation at least.
       */
      if (want == NBD_REP_ACK &&
          !(opts[i] == NBD_OPT_SET_META_CONTEXT && !with_query) && n == 0)
        fail_msg ("%s on '%s' named no context", nbd_opt_name (opts[i]),
                  name);
    }
  }
  /* INFO refuses the same way: the two checks agree. */
  raw_assert_rep (raw_info_go (&c, NBD_OPT_INFO, name), want);
  raw_close (&c);
}

static void
test_meta_access_open_export (void **state)
{
  expect_meta ("disk", NBD_REP_ACK);
}

static void
test_meta_access_tls_only (void **state)
{
  expect_meta ("secret", NBD_REP_ERR_TLS_REQD);
}

static void
test_meta_access_policy (void **state)
{
  expect_meta ("nounix", NBD_REP_ERR_POLICY);
}

int
main (int argc, char *argv[])
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_meta_access_open_export),
    cmocka_unit_test (test_meta_access_tls_only),
    cmocka_unit_test (test_meta_access_policy),
  };

  sock_path = argc > 1 ? argv[1] : getenv ("unixsocket");
  if (sock_path == NULL || *sock_path == '\0') {
    fprintf (stderr, "test-meta-access: usage: test-meta-access SOCKET "
             "(or set $unixsocket)\n");
    return 1;
  }
  printf ("test-meta-access: server kind %s, socket %s\n",
          test_server_kind (), sock_path);
  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
