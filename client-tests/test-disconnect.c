/* SPDX-License-Identifier: BSD-3-Clause */
/* test-disconnect.c — a connection that dies with requests in flight.
 *
 * WHAT: from a raw-socket client (raw-client.c), ends connections while
 * the server still holds requests of theirs, the three ways a client can:
 *  (a) valid requests followed, in the same send, by a bad request magic:
 *      the server parses the requests, then closes on the garbage while
 *      they are still batched or queued for its workers;
 *  (b) valid requests followed by a WRITE announcing a payload over
 *      1 GiB, which the server refuses by closing;
 *  (c) a reset (SO_LINGER 0) or a half-close right after a burst of
 *      reads and writes, with nothing read back.
 * Each case runs many rounds with different numbers of requests in
 * flight, then a fresh connection must still write and read back.
 * WHY: the requests of a dead connection still run on worker threads;
 * everything they use (the connection, its export) must outlive them.  A
 * server that frees or clears that state at close crashes here, often on
 * the first round of (a).
 * INVARIANTS: the wrapper (test-libnbd-disconnect.sh) serves $export
 * (default "disk", 64 MiB).  The client never reads replies before the
 * connection dies, except what raw_wait_closed discards.
 * THREADS AND LOCKS: single-threaded, blocking sockets.
 * FAILURE: a server that crashed fails the next connect; one that hangs
 * fails raw_wait_closed's timeout.  Environment: DISCONNECT_ROUNDS
 * (default 40) per case; DISCONNECT_TESTS, a cmocka name pattern
 * ("*huge*"), runs only the matching cases.
 * NOT HERE: real clients killed mid-transfer (test-kill-clients.sh).
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
#include "nbd-wire.h"
#include "raw-client.h"

#define KiB (UINT64_C (1024))
#define MiB (UINT64_C (1024) * 1024)
#define GiB (UINT64_C (1024) * 1024 * 1024)

#define EXPORT_SIZE     (64 * MiB)
#define MAX_BURST       48              /* requests before the garbage */
#define BURST_READ_BYTES (16 * KiB)     /* keeps replies under 1 MiB */
#define GARBAGE_BYTES   28

static const char *sock_path;
static const char *export_name;
static unsigned rounds = 40;

static void
open_export (struct raw_conn *c, bool structured)
{
  raw_open (c, sock_path, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
  if (structured)
    raw_structured (c);
  raw_go (c, export_name);
  assert_int_equal (c->size, EXPORT_SIZE);
}


/* Appends `n` requests (reads, flushes, block-free writes of 4 KiB) to
 * buf; returns the bytes added.  buf must hold n * (32 + 4 KiB).
 */
static size_t
encode_burst (struct raw_conn *c, unsigned char *buf, unsigned n)
{
  size_t len = 0;

  for (unsigned i = 0; i < n; i++) {
    struct nbd_req req = {
      .cookie = c->cookie++,
      .offset = (uint64_t) (i % 64) * MiB,
    };

    switch (i % 4) {
    case 0: case 1:
      req.type = NBD_CMD_READ;
      req.count = BURST_READ_BYTES;
      break;
    case 2:
      req.type = NBD_CMD_WRITE;
      req.count = 4 * KiB;
      break;
    default:
      req.type = NBD_CMD_FLUSH;
      req.offset = 0;
      break;
    }
    len += nbd_encode_request (buf + len, c->extended, &req);
    if (req.type == NBD_CMD_WRITE) {
      memset (buf + len, (int) i, req.count);
      len += req.count;
    }
  }
  return len;
}

static unsigned char *
burst_buffer (void)
{
  unsigned char *buf = malloc (MAX_BURST * (NBD_MAX_HEADER_BYTES + 4 * KiB)
                               + NBD_MAX_HEADER_BYTES + GARBAGE_BYTES);

  assert_non_null (buf);
  return buf;
}

/* (a) Requests then a bad magic, in one send. */
static void
test_disconnect_bad_magic (void **state)
{
  unsigned char *buf = burst_buffer ();

  for (unsigned round = 0; round < rounds; round++) {
    struct raw_conn c;
    unsigned n = 1 + round % MAX_BURST;
    size_t len;

    open_export (&c, round % 2 == 0);
    len = encode_burst (&c, buf, n);
    memset (buf + len, 0xa5, GARBAGE_BYTES);
    len += GARBAGE_BYTES;
    raw_xsend (c.fd, buf, len);
    if (!raw_wait_closed (c.fd))
      fail_msg ("round %u: the server did not hang up on a bad magic", round);
    raw_close (&c);
  }
  free (buf);
  raw_check_server_alive (sock_path, export_name);
}

/* (b) Requests then a WRITE whose payload is over 1 GiB. */
static void
test_disconnect_huge_payload (void **state)
{
  unsigned char *buf = burst_buffer ();

  for (unsigned round = 0; round < rounds; round++) {
    struct raw_conn c;
    unsigned n = 1 + (round * 7) % MAX_BURST;
    struct nbd_req huge = {
      .type = NBD_CMD_WRITE, .offset = 0,
      .count = 2 * GiB - 4 * KiB,       /* fits the 32-bit length field */
    };
    size_t len;

    open_export (&c, round % 2 == 1);
    len = encode_burst (&c, buf, n);
    huge.cookie = c.cookie++;
    len += nbd_encode_request (buf + len, c.extended, &huge);
    raw_xsend (c.fd, buf, len);
    /* No payload follows: a server that waits for it instead of closing
     * times out here.
     */
    if (!raw_wait_closed (c.fd))
      fail_msg ("round %u: the server did not hang up on a 2 GiB payload",
                round);
    raw_close (&c);
  }
  free (buf);
  raw_check_server_alive (sock_path, export_name);
}

/* (c) A burst of requests, then the client vanishes without reading. */
static void
test_disconnect_reset (void **state)
{
  unsigned char *buf = burst_buffer ();

  for (unsigned round = 0; round < rounds; round++) {
    struct raw_conn c;
    unsigned n = MAX_BURST - round % 16;
    size_t len;

    open_export (&c, round % 3 != 0);
    len = encode_burst (&c, buf, n);
    raw_xsend (c.fd, buf, len);
    if (round % 2 == 0) {
      /* RST: the server's next read or write fails. */
      struct linger lg = { .l_onoff = 1, .l_linger = 0 };
      assert_int_equal (setsockopt (c.fd, SOL_SOCKET, SO_LINGER, &lg,
                                    sizeof lg), 0);
    }
    else
      shutdown (c.fd, SHUT_RDWR);   /* EOF with requests in flight */
    raw_close (&c);
  }
  free (buf);
  raw_check_server_alive (sock_path, export_name);
}

int
main (int argc, char *argv[])
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_disconnect_bad_magic),
    cmocka_unit_test (test_disconnect_huge_payload),
    cmocka_unit_test (test_disconnect_reset),
  };
  const char *s;

  sock_path = argc > 1 ? argv[1] : getenv ("unixsocket");
  if (sock_path == NULL || *sock_path == '\0') {
    fprintf (stderr, "test-disconnect: usage: test-disconnect SOCKET "
             "(or set $unixsocket)\n");
    return 1;
  }
  export_name = getenv ("export");
  if (export_name == NULL)
    export_name = "disk";
  if ((s = getenv ("DISCONNECT_ROUNDS")) != NULL && atoi (s) > 0)
    rounds = (unsigned) atoi (s);
  if ((s = getenv ("DISCONNECT_TESTS")) != NULL && *s)
    cmocka_set_test_filter (s);
  printf ("test-disconnect: server kind %s, socket %s, export \"%s\", "
          "%u rounds per case\n", test_server_kind (), sock_path,
          export_name, rounds);
  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
