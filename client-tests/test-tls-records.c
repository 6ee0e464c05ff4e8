/* SPDX-License-Identifier: BSD-3-Clause */
/* test-tls-records.c — a reply under TLS travels in as few TLS records as
 * the record size allows.
 *
 * WHAT: a raw client (raw-client.c over raw-tls.c, OpenSSL, the server
 * verified against ca-cert.pem and "localhost") counts the application-
 * data records each reply arrives in and checks that a reply of B bytes
 * (header, chunk headers and data together) took ceil(B / 16384) records
 * — 16 KiB being TLS's largest record — for (nbdkit + the plugin: only
 * the replies that fit one record; its TLS is not ours):
 *  (a) structured READs of 4 KiB, 20 KiB, 68 KiB and 1 MiB (one
 *      OFFSET_DATA chunk: its headers ride in the same record as the
 *      first data bytes);
 *  (b) simple-reply READs of 4 KiB and 20 KiB (no structured replies);
 *  (c) an error chunk with its message (a READ past the end).
 * WHY: a server that writes a reply's header and its payload with separate
 * TLS writes sends two records (two encryptions, two tags, usually two
 * system calls) where one would do: a 4 KiB read then costs two records
 * instead of one.  Counting the records as the client decrypts them shows
 * this without any timing.
 * INVARIANTS: the wrapper (test-libnbd-tls-records.sh) serves EXPORT
 * ($export, 16 MiB of random data, so no read is a hole) on $unixsocket
 * with tls = require and X.509 server certificates from $TLS_CERTS (made
 * by make_x509_certs).  One request at a time: nothing else shares a
 * record with the reply under test.
 * THREADS AND LOCKS: the test thread, plus raw-tls.c's pump thread.
 * FAILURE: a reply in more records than it needs fails that test, naming
 * the sizes; exit status 1 if any test failed.
 * NOT HERE: what STARTTLS resets (test-tls-reset.c), TLS policy
 * (test-tls-*.sh), speed (bench/run-bench's tls rows).
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

#include "libnbd-test.h"
#include "nbd-proto.h"
#include "raw-client.h"
#include "raw-tls.h"

#define EXPORT_SIZE   (UINT64_C (16) * 1024 * 1024) /* bytes */
#define RECORD_BYTES  16384     /* TLS's largest record plaintext */

static const char *sock_path;
static const char *export_name;
static char ca_file[4096];
/* nbdkit + the plugin: nbdkit's own TLS (GnuTLS, which corks a reply but
 * splits one larger than a record less tightly) is held only to replies
 * that fit one record.  nbdcached is held to every reply.
 */
static bool nbdkit_tls;

/* STARTTLS, the handshake, structured replies if asked, GO. */
static struct raw_tls *
open_tls (struct raw_conn *c, bool structured)
{
  struct raw_tls_opts o = { .ca_file = ca_file, .hostname = "localhost" };
  struct raw_tls *t;

  raw_open (c, sock_path, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
  raw_assert_rep (raw_option (c->fd, NBD_OPT_STARTTLS, NULL, 0), NBD_REP_ACK);
  t = raw_tls_start (c, &o);
  if (structured)
    raw_structured (c);
  raw_go (c, export_name);
  assert_int_equal (c->size, EXPORT_SIZE);
  return t;
}

static void
close_tls (struct raw_conn *c, struct raw_tls *t)
{
  raw_send_request (c, 0, NBD_CMD_DISC, 0, 0, NULL, 0);
  assert_true (raw_tls_close (t, c));
}

/* One READ of `count` bytes at `offset`; checks the NBD error and that its
 * reply came in the fewest records.
 */
static void
read_and_count (struct raw_conn *c, struct raw_tls *t, uint64_t offset,
                uint32_t count, uint32_t want_error)
{
  uint8_t *buf = malloc (count);
  unsigned long rec0 = raw_tls_records_in (t), bytes0 = raw_tls_bytes_in (t);
  unsigned long records, bytes, fewest;
  struct raw_reply rep = { 0 };

  assert_non_null (buf);
  raw_assert_error (raw_command (c, 0, NBD_CMD_READ, offset, count, NULL,
                                 buf, &rep), want_error);
  records = raw_tls_records_in (t) - rec0;
  bytes = raw_tls_bytes_in (t) - bytes0;
  fewest = (bytes + RECORD_BYTES - 1) / RECORD_BYTES;
  printf ("  READ %" PRIu32 " bytes (%s): a %lu-byte reply in %u chunk(s), "
          "%lu record(s), fewest %lu\n", count,
          c->structured ? "structured" : "simple", bytes, rep.chunks,
          records, fewest);
  if (nbdkit_tls && fewest > 1) {
    printf ("  (nbdkit's TLS: a reply of more than one record is not "
            "checked)\n");
    free (buf);
    return;
  }
  if (records != fewest)
    fail_msg ("a %lu-byte reply to a %" PRIu32 "-byte READ came in %lu TLS "
              "records; %lu would do (are its header and payload written "
              "separately?)", bytes, count, records, fewest);
  free (buf);
}

/* ---- (a) structured replies ---- */

static void
test_tls_records_structured_read (void **state)
{
  static const uint32_t sizes[] = { 4096, 20480, 69632, 1024 * 1024 };
  struct raw_conn c;
  struct raw_tls *t = open_tls (&c, true);

  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
    read_and_count (&c, t, i * 2 * 1024 * 1024, sizes[i], NBD_SUCCESS);
  close_tls (&c, t);
}

/* ---- (b) simple replies ---- */

static void
test_tls_records_simple_read (void **state)
{
  struct raw_conn c;
  struct raw_tls *t = open_tls (&c, false);

  read_and_count (&c, t, 0, 4096, NBD_SUCCESS);
  read_and_count (&c, t, 1024 * 1024, 20480, NBD_SUCCESS);
  close_tls (&c, t);
}

/* ---- (c) an error chunk and its message ---- */

static void
test_tls_records_error (void **state)
{
  struct raw_conn c;
  struct raw_tls *t = open_tls (&c, true);

  read_and_count (&c, t, EXPORT_SIZE - 4096, 8192, NBD_EINVAL);
  close_tls (&c, t);
}

int
main (int argc, char *argv[])
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_tls_records_structured_read),
    cmocka_unit_test (test_tls_records_simple_read),
    cmocka_unit_test (test_tls_records_error),
  };
  const char *certs_dir = getenv ("TLS_CERTS");

  sock_path = argc > 1 ? argv[1] : getenv ("unixsocket");
  export_name = getenv ("export");
  if (export_name == NULL)
    export_name = "disk";
  if (sock_path == NULL || *sock_path == '\0' ||
      certs_dir == NULL || *certs_dir == '\0') {
    fprintf (stderr, "test-tls-records: usage: TLS_CERTS=DIR "
             "test-tls-records SOCKET (or set $unixsocket)\n");
    return 1;
  }
  snprintf (ca_file, sizeof ca_file, "%s/ca-cert.pem", certs_dir);
  nbdkit_tls = strcmp (test_server_kind (), "plugin") == 0;
  printf ("test-tls-records: server kind %s, socket %s, export \"%s\", "
          "certificates %s\n", test_server_kind (), sock_path, export_name,
          certs_dir);
  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
