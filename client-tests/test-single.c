/* SPDX-License-Identifier: BSD-3-Clause */
/* test-single.c — one connection over the server's stdin/stdout.
 *
 * WHAT: nbd_connect_command runs the server command given on our command
 * line with a socketpair as its stdin and stdout (nbdcached -s, nbdkit -s)
 * and does a write/flush/read round trip, a block status query and a clean
 * NBD_CMD_DISC; then a second command-started server shows the first one
 * left nothing behind that breaks a restart on the same config.
 * WHY: inetd-style serving and libnbd's nbd_connect_command (used by
 * nbdcopy/nbdinfo `-- CMD` and by qemu's `nbd+unix` helpers) depend on the
 * server speaking NBD on stdio with nothing else written to stdout.
 * INVARIANTS: argv[1..] is the server command, e.g.
 *   test-single nbdcached -s -c c.conf
 *   test-single nbdkit -s PLUGIN config=c.conf export=disk
 * The export served is at least 1 MiB and writable.
 * THREADS AND LOCKS: single-threaded.
 * FAILURE: exit 1 if any check failed.
 * NOT HERE: listening sockets (test-socket-activation.c, shell tests).
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

static int
count_extents (void *opaque, const char *ctx, uint64_t offset,
               uint32_t *entries, size_t nr, int *error)
{
  size_t *n = opaque;

  *n += nr / 2;
  return 0;
}

static void
test_single_round_trip (void **state)
{
  struct nbd_handle *h = test_handle_create ();
  char w[4096], r[4096];
  size_t extents = 0;
  nbd_extent_callback cb = { .callback = count_extents, .user_data = &extents };

  NBD_OK (nbd_add_meta_context (h, LIBNBD_CONTEXT_BASE_ALLOCATION));
  NBD_OK (nbd_connect_command (h, server_argv));
  assert_int_equal (nbd_aio_is_ready (h), 1);
  assert_true (nbd_get_size (h) >= 1024 * 1024);
  assert_int_equal (nbd_get_structured_replies_negotiated (h), 1);

  for (size_t i = 0; i < sizeof w; i++)
    w[i] = (char) (i * 31 + 1);
  NBD_OK (nbd_pwrite (h, w, sizeof w, 65536 + 3, 0));
  NBD_OK (nbd_flush (h, 0));
  memset (r, 0, sizeof r);
  NBD_OK (nbd_pread (h, r, sizeof r, 65536 + 3, 0));
  assert_memory_equal (w, r, sizeof r);
  NBD_OK (nbd_block_status (h, 1024 * 1024, 0, cb, 0));
  assert_true (extents >= 1);
  test_disconnect (h);
}

static void
test_single_restart (void **state)
{
  /* The data written by the first server is on the backing store. */
  struct nbd_handle *h = test_handle_create ();
  char r[4096];

  NBD_OK (nbd_connect_command (h, server_argv));
  NBD_OK (nbd_pread (h, r, sizeof r, 65536 + 3, 0));
  for (size_t i = 0; i < sizeof r; i++)
    if (r[i] != (char) (i * 31 + 1))
      fail_msg ("byte %zu written through the first server reads 0x%02x",
                i, (unsigned char) r[i]);
  test_disconnect (h);
}

int
main (int argc, char *argv[])
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_single_round_trip),
    cmocka_unit_test (test_single_restart),
  };

  if (argc < 2) {
    fprintf (stderr, "usage: test-single SERVER [ARG…]\n");
    return 1;
  }
  server_argv = &argv[1];
  printf ("test-single: server kind %s, command %s\n", test_server_kind (),
          argv[1]);
  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
