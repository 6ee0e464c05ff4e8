/* SPDX-License-Identifier: BSD-3-Clause */
/* test-buffer-bound.c — clients that never read their replies do not make
 * the server hold unbounded memory.
 *
 * WHAT: NR_CONNS raw connections (simple replies, so every READ's data is
 * really read into a server buffer) each send READS_PER_CONN reads of
 * READ_BYTES (1 GiB in all), then read nothing for STALL_MS: the
 * observation window in which an unbounded server reads all of it into
 * memory.  Then the clients read all replies, check their cookies and data
 * (zeroes), write and read back on each connection, and the test reads
 * the server's peak resident size (VmHWM of the pid in argv[2]).  The peak must stay under the configured bound
 * ([server] max_buffer = BOUND_MIB, from the wrapper) plus SLACK_MIB for
 * the process itself (sanitizer builds included).
 * WHY: each outstanding READ pins its whole buffer until its reply is
 * written; without a bound 32 such reads pin 1 GiB.
 * INVARIANTS: the export (test-libnbd-buffer-bound.sh) is sparse and
 * READS_PER_CONN * READ_BYTES long; nothing writes to it but this test, at
 * WRITE_OFFSET.  One thread per connection sends, waits at a barrier
 * through the stall, then reads its own replies.
 * THREADS AND LOCKS: one thread per connection, each with its own socket;
 * results checked by the main thread after joining.
 * FAILURE: prints the peak and the bound.  A server that hangs fails the
 * 60 s socket timeouts.
 * NOT HERE: the in-flight request count bound (test-raw.c, pipeline).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "byteorder.h"
#include "libnbd-test.h"
#include "nbd-proto.h"
#include "nbd-wire.h"
#include "raw-client.h"

#define MiB (UINT64_C (1024) * 1024)
#define NR_CONNS        4
#define READS_PER_CONN  8
#define READ_BYTES      (32 * MiB)
#define SLACK_MIB       96      /* the process itself, ASan included */
#define WRITE_OFFSET    (1 * MiB)
#define STALL_MS        1500    /* ms the clients read nothing */

static const char *sock_path;
static long server_pid;
static uint64_t bound_mib;
static pthread_barrier_t sent, go;

struct sender {
  pthread_t thread;
  struct raw_conn c;
  uint64_t cookies[READS_PER_CONN];
  char failure[256];            /* empty = fine */
};

/* Sender thread: all reads out first, then all replies in.  No cmocka
 * calls here (not thread-safe): failures go to s->failure.
 */
static void *
sender_main (void *arg)
{
  struct sender *s = arg;
  uint8_t *buf = malloc (READ_BYTES);
  bool seen[READS_PER_CONN] = { false };

  if (buf == NULL)
    snprintf (s->failure, sizeof s->failure, "out of memory");
  for (unsigned i = 0; i < READS_PER_CONN && buf; i++) {
    unsigned char h[NBD_MAX_HEADER_BYTES];
    struct nbd_req req = {
      .type = NBD_CMD_READ, .cookie = s->c.cookie++,
      .offset = (uint64_t) i * READ_BYTES, .count = READ_BYTES,
    };
    size_t n = nbd_encode_request (h, false, &req);
    int r = raw_send_all (s->c.fd, h, n);

    if (r < 0) {
      snprintf (s->failure, sizeof s->failure, "send read %u: %s", i,
                strerror (-r));
      break;
    }
    s->cookies[i] = req.cookie;
  }
  /* Every thread passes both barriers, failed or not. */
  pthread_barrier_wait (&sent);
  pthread_barrier_wait (&go);
  for (unsigned n = 0; n < READS_PER_CONN && !s->failure[0]; n++) {
    unsigned char h[16];
    unsigned i;
    ssize_t r = raw_recv_all (s->c.fd, h, sizeof h);

    if (r != (ssize_t) sizeof h) {
      snprintf (s->failure, sizeof s->failure, "reply %u: %s", n,
                r < 0 ? strerror ((int) -r) : "server hung up");
      goto out;
    }
    if (get_be32 (h) != NBD_SIMPLE_REPLY_MAGIC || get_be32 (h + 4) != 0) {
      snprintf (s->failure, sizeof s->failure,
                "reply %u: magic 0x%08x error %u", n, get_be32 (h),
                get_be32 (h + 4));
      goto out;
    }
    for (i = 0; i < READS_PER_CONN && s->cookies[i] != get_be64 (h + 8); i++)
      ;
    if (i == READS_PER_CONN || seen[i]) {
      snprintf (s->failure, sizeof s->failure, "reply %u: bad cookie", n);
      goto out;
    }
    seen[i] = true;
    if (raw_recv_all (s->c.fd, buf, READ_BYTES) != (ssize_t) READ_BYTES) {
      snprintf (s->failure, sizeof s->failure, "reply %u: short data", n);
      goto out;
    }
    /* Offsets past WRITE_OFFSET + 4 KiB were never written: zeroes. */
    for (uint64_t b = i == 0 ? 2 * MiB : 0; b < READ_BYTES; b += 4093)
      if (buf[b] != 0) {
        snprintf (s->failure, sizeof s->failure,
                  "read %u: byte %" PRIu64 " is 0x%02x", i, b, buf[b]);
        goto out;
      }
  }
 out:
  free (buf);
  return NULL;
}

/* The server's peak resident set, in MiB, or -1. */
static long
server_peak_mib (void)
{
  char path[64], line[256];
  long kib = -1;
  FILE *fp;

  snprintf (path, sizeof path, "/proc/%ld/status", server_pid);
  if ((fp = fopen (path, "r")) == NULL)
    return -1;
  while (fgets (line, sizeof line, fp))
    if (sscanf (line, "VmHWM: %ld kB", &kib) == 1)
      break;
  fclose (fp);
  return kib < 0 ? -1 : kib / 1024;
}

static void
test_buffer_bound_stalled_readers (void **state)
{
  static struct sender s[NR_CONNS];
  long peak;

  for (int i = 0; i < NR_CONNS; i++) {
    raw_open (&s[i].c, sock_path,
              NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    raw_go (&s[i].c, "disk");      /* simple replies: data, never holes */
    assert_true (s[i].c.size >= READS_PER_CONN * READ_BYTES);
    s[i].failure[0] = '\0';
  }
  printf ("  peak before: %ld MiB\n", server_peak_mib ());
  assert_int_equal (pthread_barrier_init (&sent, NULL, NR_CONNS + 1), 0);
  assert_int_equal (pthread_barrier_init (&go, NULL, NR_CONNS + 1), 0);
  for (int i = 0; i < NR_CONNS; i++)
    assert_int_equal (pthread_create (&s[i].thread, NULL, sender_main, &s[i]),
                      0);
  pthread_barrier_wait (&sent);
  /* The observation window: nobody reads a reply. */
  usleep (STALL_MS * 1000);
  printf ("  peak after %d ms of stalled readers: %ld MiB\n", STALL_MS,
          server_peak_mib ());
  pthread_barrier_wait (&go);
  for (int i = 0; i < NR_CONNS; i++)
    pthread_join (s[i].thread, NULL);
  pthread_barrier_destroy (&sent);
  pthread_barrier_destroy (&go);
  for (int i = 0; i < NR_CONNS; i++)
    if (s[i].failure[0])
      fail_msg ("connection %d: %s", i, s[i].failure);

  /* Every connection still works. */
  for (int i = 0; i < NR_CONNS; i++) {
    uint8_t w[4096], r[4096];

    memset (w, 0x40 + i, sizeof w);
    raw_assert_error (raw_command (&s[i].c, 0, NBD_CMD_WRITE, WRITE_OFFSET,
                                   sizeof w, w, NULL, NULL), NBD_SUCCESS);
    raw_assert_error (raw_command (&s[i].c, 0, NBD_CMD_READ, WRITE_OFFSET,
                                   sizeof r, NULL, r, NULL), NBD_SUCCESS);
    assert_memory_equal (w, r, sizeof r);
    raw_close (&s[i].c);
  }

  peak = server_peak_mib ();
  printf ("  server peak resident size %ld MiB; bound %" PRIu64
          " MiB + %d MiB slack; %d MiB of reads were outstanding\n",
          peak, bound_mib, SLACK_MIB,
          (int) (NR_CONNS * READS_PER_CONN * READ_BYTES / MiB));
  assert_true (peak > 0);
  if ((uint64_t) peak > bound_mib + SLACK_MIB)
    fail_msg ("the server's peak resident size %ld MiB is over the bound "
              "%" PRIu64 " MiB + %d MiB", peak, bound_mib, SLACK_MIB);
}

int
main (int argc, char *argv[])
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_buffer_bound_stalled_readers),
  };
  const char *b = getenv ("BOUND_MIB");

  if (argc < 3 || b == NULL) {
    fprintf (stderr, "test-buffer-bound: usage: BOUND_MIB=N "
             "test-buffer-bound SOCKET SERVER-PID\n");
    return 1;
  }
  sock_path = argv[1];
  server_pid = atol (argv[2]);
  bound_mib = strtoull (b, NULL, 10);
  printf ("test-buffer-bound: socket %s, server pid %ld, bound %" PRIu64
          " MiB\n", sock_path, server_pid, bound_mib);
  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
