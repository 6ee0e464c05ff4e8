/* SPDX-License-Identifier: BSD-3-Clause */
/* test-options.c — option haggling as libnbd sees it.
 *
 * WHAT: NBD_OPT_LIST (every export and its description), NBD_OPT_INFO for
 * an existing and a missing export and the contents of its reply (size,
 * transmission flags, block sizes min 1 / preferred 4096 / max 64 MiB,
 * description), NBD_OPT_LIST_META_CONTEXT (base:allocation offered),
 * NBD_OPT_GO with structured replies negotiated, NBD_OPT_ABORT, a client
 * that refuses structured replies (simple replies still carry data), the
 * empty export name resolving to the default export, and the
 * non-fixed-newstyle NBD_OPT_EXPORT_NAME path (a client sending no
 * handshake flags gets the 124 reserved zero bytes after the export
 * information).
 * WHY: these are the first bytes every client sends; libnbd is the
 * reference client, so a disagreement here breaks nbdinfo, nbdcopy, qemu.
 * INVARIANTS: the wrapper (test-libnbd-options.sh) serves the exports
 * below; the constants here must match it.
 *   disk:   64 MiB, description EXPECTED_DESC_DISK, the default export
 *   second: 1 MiB, read-only, description EXPECTED_DESC_SECOND
 * Against the plugin (SERVER_KIND=plugin) nbdkit serves one export per
 * process: listing and unknown names follow nbdkit's rules, see the
 * comments where the kinds differ.
 * THREADS AND LOCKS: single-threaded; one handle per test.
 * FAILURE: any mismatch fails that test; exit status 1 if any failed.
 * NOT HERE: STARTTLS, EXTENDED_HEADERS, malformed options (test-raw.c);
 * commands (test-commands.c).
 */
#include <config.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "libnbd-test.h"

#define EXPECTED_SIZE_DISK    (UINT64_C (64) * 1024 * 1024) /* bytes */
#define EXPECTED_SIZE_SECOND  (UINT64_C (1024) * 1024)      /* bytes */
#define EXPECTED_DESC_DISK    "nbdcache test disk"
#define EXPECTED_DESC_SECOND  "the second export"

static const char *uri;

/* A handle in option mode, connected to the server, with base:allocation
 * requested so that INFO/GO also negotiate it.
 */
static struct nbd_handle *
connect_opt_mode (void)
{
  struct nbd_handle *h = test_handle_create ();

  NBD_OK (nbd_set_opt_mode (h, true));
  NBD_OK (nbd_add_meta_context (h, LIBNBD_CONTEXT_BASE_ALLOCATION));
  NBD_OK (nbd_connect_uri (h, uri));
  assert_int_equal (nbd_aio_is_negotiating (h), 1);
  return h;
}

struct export_list {
  size_t n;
  char *names[16];
  char *descs[16];
};

static int
list_cb (void *opaque, const char *name, const char *desc)
{
  struct export_list *l = opaque;

  if (l->n < 16) {
    l->names[l->n] = strdup (name);
    l->descs[l->n] = strdup (desc);
    l->n++;
  }
  return 0;
}

static void
export_list_free (struct export_list *l)
{
  for (size_t i = 0; i < l->n; i++) {
    free (l->names[i]);
    free (l->descs[i]);
  }
}

static void
test_options_list (void **state)
{
  struct nbd_handle *h = connect_opt_mode ();
  struct export_list l = { 0 };
  nbd_list_callback cb = { .callback = list_cb, .user_data = &l };
  int r;

  r = nbd_opt_list (h, cb);
  NBD_OK (r);
  assert_int_equal ((size_t) r, l.n);
  if (!test_is_plugin ()) {
    bool seen_disk = false, seen_second = false;

    assert_int_equal (l.n, 2);
    for (size_t i = 0; i < l.n; i++) {
      if (strcmp (l.names[i], "disk") == 0) {
        seen_disk = true;
        assert_string_equal (l.descs[i], EXPECTED_DESC_DISK);
      }
      else if (strcmp (l.names[i], "second") == 0) {
        seen_second = true;
        assert_string_equal (l.descs[i], EXPECTED_DESC_SECOND);
      }
      else
        fail_msg ("unexpected export \"%s\" in NBD_OPT_LIST", l.names[i]);
    }
    assert_true (seen_disk && seen_second);
  }
  else {
    /* nbdkit serves one export per process: at least it is listed, and
     * if the plugin names it, with the configured description.
     */
    assert_true (l.n >= 1);
    for (size_t i = 0; i < l.n; i++)
      if (strcmp (l.names[i], "disk") == 0 && l.descs[i][0] != '\0')
        assert_string_equal (l.descs[i], EXPECTED_DESC_DISK);
  }
  export_list_free (&l);

  /* The handle is still negotiating.  nbdcached answers LIST again;
   * nbdkit 1.32 refuses a second LIST on one connection (allowed: the spec
   * does not promise a repeat), but the session must survive either way.
   */
  assert_int_equal (nbd_aio_is_negotiating (h), 1);
  memset (&l, 0, sizeof l);
  r = nbd_opt_list (h, cb);
  if (!test_is_plugin ()) {
    NBD_OK (r);
    assert_int_equal (l.n, 2);
  }
  export_list_free (&l);
  assert_int_equal (nbd_aio_is_negotiating (h), 1);
  NBD_OK (nbd_opt_abort (h));
  nbd_close (h);
}

/* Checks the reply to INFO or GO for export "disk". */
static void
check_disk_info (struct nbd_handle *h, bool after_go)
{
  char *desc;

  assert_int_equal (nbd_get_size (h), (int64_t) EXPECTED_SIZE_DISK);
  assert_int_equal (nbd_is_read_only (h), 0);
  assert_int_equal (nbd_can_flush (h), 1);
  assert_int_equal (nbd_can_fua (h), 1);
  assert_int_equal (nbd_can_trim (h), 1);
  assert_int_equal (nbd_can_zero (h), 1);
  assert_int_equal (nbd_can_multi_conn (h), 1);
  assert_int_equal (nbd_is_rotational (h), 0);
  /* DF is advertised exactly when structured replies are on. */
  assert_int_equal (nbd_can_df (h), 1);
  assert_int_equal (nbd_can_cache (h), 1);
  assert_true (nbd_can_fast_zero (h) >= 0);
  assert_int_equal (nbd_can_meta_context (h, LIBNBD_CONTEXT_BASE_ALLOCATION),
                    1);

  /* NBD_INFO_BLOCK_SIZE (nbdkit forwards the plugin's block_size). */
  assert_int_equal (nbd_get_block_size (h, LIBNBD_SIZE_MINIMUM), 1);
  assert_int_equal (nbd_get_block_size (h, LIBNBD_SIZE_PREFERRED), 4096);
  assert_int_equal (nbd_get_block_size (h, LIBNBD_SIZE_MAXIMUM),
                    64 * 1024 * 1024);

  desc = nbd_get_export_description (h);
  if (desc == NULL)
    fail_msg ("no export description%s: %s",
              after_go ? " after GO" : " after INFO", nbd_get_error ());
  assert_string_equal (desc, EXPECTED_DESC_DISK);
  free (desc);
}

static void
test_options_info_existing (void **state)
{
  struct nbd_handle *h = connect_opt_mode ();

  NBD_OK (nbd_set_full_info (h, true));
  NBD_OK (nbd_set_export_name (h, "disk"));
  NBD_OK (nbd_opt_info (h));
  assert_int_equal (nbd_aio_is_negotiating (h), 1);
  assert_int_equal (nbd_get_structured_replies_negotiated (h), 1);
  check_disk_info (h, false);

  if (!test_is_plugin ()) {
    /* The second export: smaller and read-only. */
    char *desc;

    NBD_OK (nbd_set_export_name (h, "second"));
    NBD_OK (nbd_opt_info (h));
    assert_int_equal (nbd_get_size (h), (int64_t) EXPECTED_SIZE_SECOND);
    assert_int_equal (nbd_is_read_only (h), 1);
    desc = nbd_get_export_description (h);
    assert_non_null (desc);
    assert_string_equal (desc, EXPECTED_DESC_SECOND);
    free (desc);
  }

  /* INFO does not end negotiation: GO still works after it. */
  NBD_OK (nbd_set_export_name (h, "disk"));
  NBD_OK (nbd_opt_go (h));
  assert_int_equal (nbd_aio_is_ready (h), 1);
  check_disk_info (h, true);
  test_disconnect (h);
}

static void
test_options_info_missing (void **state)
{
  struct nbd_handle *h = connect_opt_mode ();
  int r;

  NBD_OK (nbd_set_export_name (h, "no-such-export"));
  r = nbd_opt_info (h);
  if (!test_is_plugin ())
    assert_int_equal (r, -1);
  /* Whatever nbdkit decides about foreign names, a failed INFO must leave
   * the session negotiating, and GO on a missing name must fail too.
   */
  assert_int_equal (nbd_aio_is_negotiating (h), 1);
  if (!test_is_plugin ()) {
    assert_int_equal (nbd_opt_go (h), -1);
    assert_int_equal (nbd_aio_is_negotiating (h), 1);
  }

  NBD_OK (nbd_set_export_name (h, "disk"));
  NBD_OK (nbd_opt_info (h));
  assert_int_equal (nbd_get_size (h), (int64_t) EXPECTED_SIZE_DISK);
  NBD_OK (nbd_opt_abort (h));
  assert_int_equal (nbd_aio_is_closed (h), 1);
  nbd_close (h);
}

static int
context_cb (void *opaque, const char *name)
{
  int *seen_base = opaque;

  if (strcmp (name, LIBNBD_CONTEXT_BASE_ALLOCATION) == 0)
    (*seen_base)++;
  return 0;
}

static void
test_options_list_meta_context (void **state)
{
  struct nbd_handle *h = test_handle_create ();
  int seen_base = 0;
  nbd_context_callback cb = { .callback = context_cb,
                              .user_data = &seen_base };
  int r;

  NBD_OK (nbd_set_opt_mode (h, true));
  NBD_OK (nbd_connect_uri (h, uri));

  /* No query added: the server lists every context it has. */
  r = nbd_opt_list_meta_context (h, cb);
  NBD_OK (r);
  assert_true (r >= 1);
  assert_int_equal (seen_base, 1);

  /* The "base:" wildcard query must list base:allocation as well. */
  seen_base = 0;
  NBD_OK (nbd_add_meta_context (h, "base:"));
  r = nbd_opt_list_meta_context (h, cb);
  NBD_OK (r);
  assert_int_equal (seen_base, 1);

  /* An unknown context is ignored, not an error. */
  NBD_OK (nbd_clear_meta_contexts (h));
  NBD_OK (nbd_add_meta_context (h, "x-nosuch:context"));
  seen_base = 0;
  r = nbd_opt_list_meta_context (h, cb);
  NBD_OK (r);
  assert_int_equal (r, 0);
  assert_int_equal (seen_base, 0);

  NBD_OK (nbd_opt_abort (h));
  nbd_close (h);
}

static void
test_options_go (void **state)
{
  struct nbd_handle *h = connect_opt_mode ();
  char buf[512];

  NBD_OK (nbd_set_export_name (h, "disk"));
  NBD_OK (nbd_opt_go (h));
  assert_int_equal (nbd_aio_is_ready (h), 1);
  assert_int_equal (nbd_get_structured_replies_negotiated (h), 1);
  assert_string_equal (nbd_get_protocol (h), "newstyle-fixed");
  assert_int_equal (nbd_get_size (h), (int64_t) EXPECTED_SIZE_DISK);
  NBD_OK (nbd_pread (h, buf, sizeof buf, 0, 0));
  test_disconnect (h);
}

static void
test_options_abort (void **state)
{
  struct nbd_handle *h = connect_opt_mode ();

  /* libnbd waits for the server's ACK (or EOF) and closes. */
  NBD_OK (nbd_opt_abort (h));
  assert_int_equal (nbd_aio_is_closed (h), 1);
  nbd_close (h);

  /* The server lives on: a normal connection still works. */
  h = test_connect (uri, false);
  assert_int_equal (nbd_get_size (h), (int64_t) EXPECTED_SIZE_DISK);
  test_disconnect (h);
}

static void
test_options_simple_replies (void **state)
{
  struct nbd_handle *h = test_handle_create ();
  char wbuf[4096], rbuf[4096];

  NBD_OK (nbd_set_request_structured_replies (h, false));
  NBD_OK (nbd_connect_uri (h, uri));
  assert_int_equal (nbd_get_structured_replies_negotiated (h), 0);
  /* DF needs structured replies; the server must not advertise it. */
  assert_int_equal (nbd_can_df (h), 0);
  assert_int_equal (nbd_get_size (h), (int64_t) EXPECTED_SIZE_DISK);

  /* Data travels after the simple reply header. */
  for (size_t i = 0; i < sizeof wbuf; i++)
    wbuf[i] = (char) (i * 13 + 7);
  NBD_OK (nbd_pwrite (h, wbuf, sizeof wbuf, 3 * 1024 * 1024 + 5, 0));
  NBD_OK (nbd_flush (h, 0));
  memset (rbuf, 0, sizeof rbuf);
  NBD_OK (nbd_pread (h, rbuf, sizeof rbuf, 3 * 1024 * 1024 + 5, 0));
  assert_memory_equal (wbuf, rbuf, sizeof rbuf);

  /* An error on a simple reply carries no payload; the stream stays in
   * step (the next read still returns the right data).
   */
  NBD_OK (nbd_set_strict_mode (h, 0));
  NBD_FAILS (nbd_pread (h, rbuf, sizeof rbuf, EXPECTED_SIZE_DISK, 0),
             EINVAL);
  memset (rbuf, 0, sizeof rbuf);
  NBD_OK (nbd_pread (h, rbuf, sizeof rbuf, 3 * 1024 * 1024 + 5, 0));
  assert_memory_equal (wbuf, rbuf, sizeof rbuf);
  test_disconnect (h);
}

static void
test_options_default_export (void **state)
{
  struct nbd_handle *h = connect_opt_mode ();
  char *desc;

  NBD_OK (nbd_set_full_info (h, true));
  NBD_OK (nbd_set_export_name (h, ""));
  NBD_OK (nbd_opt_info (h));
  assert_int_equal (nbd_get_size (h), (int64_t) EXPECTED_SIZE_DISK);
  desc = nbd_get_export_description (h);
  assert_non_null (desc);
  assert_string_equal (desc, EXPECTED_DESC_DISK);
  free (desc);

  NBD_OK (nbd_opt_go (h));
  assert_int_equal (nbd_get_size (h), (int64_t) EXPECTED_SIZE_DISK);
  if (!test_is_plugin ()) {
    /* With full info the server names what "" resolved to. */
    char *name = nbd_get_canonical_export_name (h);

    assert_non_null (name);
    assert_string_equal (name, "disk");
    free (name);
  }
  test_disconnect (h);
}

/* With no handshake flags at all (neither FIXED_NEWSTYLE nor NO_ZEROES)
 * libnbd can only send NBD_OPT_EXPORT_NAME, and the server must answer
 * with size, flags and the 124 reserved zero bytes.  Any slip there
 * desynchronises the first request.
 */
static void
test_options_export_name (void **state)
{
  struct nbd_handle *h = test_handle_create ();
  char wbuf[1000], rbuf[1000];

  NBD_OK (nbd_set_handshake_flags (h, 0));
  NBD_OK (nbd_set_export_name (h, "disk"));
  NBD_OK (nbd_connect_uri (h, uri));
  assert_string_equal (nbd_get_protocol (h), "newstyle");
  assert_int_equal (nbd_get_structured_replies_negotiated (h), 0);
  assert_int_equal (nbd_get_size (h), (int64_t) EXPECTED_SIZE_DISK);
  assert_int_equal (nbd_is_read_only (h), 0);
  assert_int_equal (nbd_can_flush (h), 1);

  for (size_t i = 0; i < sizeof wbuf; i++)
    wbuf[i] = (char) (i ^ 0x5a);
  NBD_OK (nbd_pwrite (h, wbuf, sizeof wbuf, 12345, LIBNBD_CMD_FLAG_FUA));
  NBD_OK (nbd_pread (h, rbuf, sizeof rbuf, 12345, 0));
  assert_memory_equal (wbuf, rbuf, sizeof rbuf);
  test_disconnect (h);

  if (!test_is_plugin ()) {
    /* Other names need the socket itself: nbd_connect_uri would replace
     * the export name with the one in the URI.
     */
    const char *sock = getenv ("unixsocket");

    if (sock == NULL || *sock == '\0')
      fail_msg ("$unixsocket is not set");

    /* EXPORT_NAME of the second export (no GO, no INFO). */
    h = test_handle_create ();
    NBD_OK (nbd_set_handshake_flags (h, 0));
    NBD_OK (nbd_set_export_name (h, "second"));
    NBD_OK (nbd_connect_unix (h, sock));
    assert_int_equal (nbd_get_size (h), (int64_t) EXPECTED_SIZE_SECOND);
    assert_int_equal (nbd_is_read_only (h), 1);
    test_disconnect (h);

    /* EXPORT_NAME of a missing export: the server can only hang up. */
    h = test_handle_create ();
    NBD_OK (nbd_set_handshake_flags (h, 0));
    NBD_OK (nbd_set_export_name (h, "no-such-export"));
    assert_int_equal (nbd_connect_unix (h, sock), -1);
    nbd_close (h);
  }
}

int
main (int argc, char *argv[])
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_options_list),
    cmocka_unit_test (test_options_info_existing),
    cmocka_unit_test (test_options_info_missing),
    cmocka_unit_test (test_options_list_meta_context),
    cmocka_unit_test (test_options_go),
    cmocka_unit_test (test_options_abort),
    cmocka_unit_test (test_options_simple_replies),
    cmocka_unit_test (test_options_default_export),
    cmocka_unit_test (test_options_export_name),
  };

  uri = test_get_uri ("test-options", argc, argv);
  if (uri == NULL)
    return 1;
  printf ("test-options: server kind %s, uri %s\n", test_server_kind (), uri);
  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
