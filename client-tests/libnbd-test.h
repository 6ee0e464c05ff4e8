/* SPDX-License-Identifier: BSD-3-Clause */
/* libnbd-test.h — helpers shared by the libnbd client test programs.
 *
 * WHAT: how a client test finds its server (URI from argv[1] or $uri, the
 * server kind from $SERVER_KIND), checked wrappers around libnbd calls
 * that fail the current cmocka test with libnbd's own error message, and
 * connect/disconnect helpers.
 * WHY: every test-*.c in client-tests/ runs once against nbdcached and once
 * against nbdkit + the nbdcache plugin (see functions.sh, for_each_server);
 * the few places where nbdkit 1.32 legitimately behaves differently ask
 * test_is_plugin ().
 * INVARIANTS: include after <setjmp.h>, <stdarg.h>, <stddef.h> and
 * <cmocka.h>; the macros may only be used inside a cmocka test (they
 * longjmp out on failure).
 * THREADS AND LOCKS: the helpers are not for use from worker threads
 * (cmocka assertions are not thread-safe); threads record failures and the
 * main thread asserts.
 * NOT HERE: starting servers (the shell wrappers do that).
 */
#ifndef NBDCACHE_LIBNBD_TEST_H
#define NBDCACHE_LIBNBD_TEST_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libnbd.h>

/* "nbdcached" (the default) or "plugin". */
static inline const char *
test_server_kind (void)
{
  const char *kind = getenv ("SERVER_KIND");

  return kind && *kind ? kind : "nbdcached";
}

static inline bool
test_is_plugin (void)
{
  return strcmp (test_server_kind (), "plugin") == 0;
}

/* The server URI: argv[1] if given, else $uri; NULL (after a message) if
 * neither is set.
 */
static inline const char *
test_get_uri (const char *prog, int argc, char **argv)
{
  const char *uri = argc > 1 ? argv[1] : getenv ("uri");

  if (uri == NULL || *uri == '\0') {
    fprintf (stderr, "%s: usage: %s URI (or set $uri)\n", prog, prog);
    return NULL;
  }
  return uri;
}

/* Fail the test unless the libnbd call succeeded (did not return -1). */
#define NBD_OK(expr)                                                    \
  do {                                                                  \
    if ((expr) == -1)                                                   \
      fail_msg ("%s:%d: %s failed: %s (errno %d)", __FILE__, __LINE__,  \
                #expr, nbd_get_error (), nbd_get_errno ());             \
  } while (0)

/* Fail the test unless the libnbd call failed with errno `errnum`. */
#define NBD_FAILS(expr, errnum)                                         \
  do {                                                                  \
    if ((expr) != -1)                                                   \
      fail_msg ("%s:%d: %s succeeded, expected %s", __FILE__, __LINE__, \
                #expr, strerror (errnum));                              \
    if (nbd_get_errno () != (errnum))                                   \
      fail_msg ("%s:%d: %s: errno %d (%s), expected %d (%s): %s",       \
                __FILE__, __LINE__, #expr, nbd_get_errno (),            \
                strerror (nbd_get_errno ()), (errnum),                  \
                strerror (errnum), nbd_get_error ());                   \
  } while (0)

/* A new handle, not yet connected; fails the test on error. */
static inline struct nbd_handle *
test_handle_create (void)
{
  struct nbd_handle *h = nbd_create ();

  if (h == NULL)
    fail_msg ("nbd_create: %s", nbd_get_error ());
  if (getenv ("LIBNBD_DEBUG") == NULL)
    nbd_set_debug (h, false);
  return h;
}

/* Connect to `uri`, asking for base:allocation when `meta` is true. */
static inline struct nbd_handle *
test_connect (const char *uri, bool meta)
{
  struct nbd_handle *h = test_handle_create ();

  if (meta)
    NBD_OK (nbd_add_meta_context (h, LIBNBD_CONTEXT_BASE_ALLOCATION));
  NBD_OK (nbd_connect_uri (h, uri));
  return h;
}

/* Clean disconnect (NBD_CMD_DISC) then free; NULL is a no-op. */
static inline void
test_disconnect (struct nbd_handle *h)
{
  if (h == NULL)
    return;
  if (nbd_aio_is_ready (h) == 1 || nbd_aio_is_negotiating (h) == 1)
    NBD_OK (nbd_shutdown (h, 0));
  nbd_close (h);
}

#endif /* NBDCACHE_LIBNBD_TEST_H */
