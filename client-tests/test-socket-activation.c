/* SPDX-License-Identifier: BSD-3-Clause */
/* test-socket-activation.c — the server started by libnbd, systemd-style.
 *
 * WHAT: nbd_connect_systemd_socket_activation runs the server command
 * given on our command line with LISTEN_PID/LISTEN_FDS=1 and a listening
 * Unix socket on fd 3, connects, and does a FUA write / flush / read round
 * trip; then two servers started that way run side by side, each on its
 * own inherited socket (the second with its own command, when one is
 * given after "--": two writers of one backing file are refused, so the
 * wrapper gives the second server a config with its own backing).  nbd_close stops each server (libnbd signals and
 * reaps the process it started).
 * WHY: this is how systemd (and libnbd's own users) start nbdcached: the
 * server must serve the inherited fd and not open its configured listen
 * addresses.  It is also a race-free start with no readiness wait.
 * INVARIANTS: argv[1..] is the server command, optionally followed by
 * "--" and the second server's command, e.g.
 *   test-socket-activation nbdcached -c c.conf -- nbdcached -c c2.conf
 *   test-socket-activation nbdkit PLUGIN config=c.conf export=disk
 * The export served is at least 1 MiB and writable.
 * THREADS AND LOCKS: single-threaded.
 * FAILURE: exit 1 if any check failed.
 * NOT HERE: the server's own socket handling (functions.sh tests).
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

static char **server_argv;
static char **second_argv;      /* = server_argv without "--" */

static void
round_trip (struct nbd_handle *h, unsigned seed)
{
  char w[65536], r[65536];
  int64_t size = nbd_get_size (h);

  assert_true (size >= 1024 * 1024);
  assert_int_equal (nbd_is_read_only (h), 0);
  for (size_t i = 0; i < sizeof w; i++)
    w[i] = (char) (i * seed + (i >> 8));
  NBD_OK (nbd_pwrite (h, w, sizeof w, (uint64_t) size - sizeof w - 7,
                      LIBNBD_CMD_FLAG_FUA));
  NBD_OK (nbd_flush (h, 0));
  memset (r, 0, sizeof r);
  NBD_OK (nbd_pread (h, r, sizeof r, (uint64_t) size - sizeof r - 7, 0));
  assert_memory_equal (w, r, sizeof r);
}

static void
test_socket_activation_round_trip (void **state)
{
  struct nbd_handle *h = test_handle_create ();

  NBD_OK (nbd_connect_systemd_socket_activation (h, server_argv));
  assert_int_equal (nbd_aio_is_ready (h), 1);
  round_trip (h, 3);
  test_disconnect (h);
}

static void
test_socket_activation_two_servers (void **state)
{
  /* Two servers at once, each on its own inherited socket. */
  struct nbd_handle *a = test_handle_create ();
  struct nbd_handle *b = test_handle_create ();

  NBD_OK (nbd_connect_systemd_socket_activation (a, server_argv));
  NBD_OK (nbd_connect_systemd_socket_activation (b, second_argv));
  round_trip (a, 5);
  round_trip (b, 7);
  test_disconnect (a);
  test_disconnect (b);
}

int
main (int argc, char *argv[])
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_socket_activation_round_trip),
    cmocka_unit_test (test_socket_activation_two_servers),
  };

  if (argc < 2) {
    fprintf (stderr, "usage: test-socket-activation SERVER [ARG…]\n");
    return 1;
  }
  server_argv = second_argv = &argv[1];
  for (int i = 1; i < argc; i++)
    if (strcmp (argv[i], "--") == 0) {
      argv[i] = NULL;
      second_argv = &argv[i + 1];
      break;
    }
  if (server_argv[0] == NULL || second_argv[0] == NULL) {
    fprintf (stderr, "usage: test-socket-activation SERVER [ARG…] "
             "[-- SERVER2 [ARG…]]\n");
    return 1;
  }
  printf ("test-socket-activation: server kind %s, command %s\n",
          test_server_kind (), argv[1]);
  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
