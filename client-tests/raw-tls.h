/* SPDX-License-Identifier: BSD-3-Clause */
/* raw-tls.h — TLS under the raw-socket test client (raw-client.h).
 *
 * WHAT: after the server has ACKed NBD_OPT_STARTTLS on a raw connection,
 * raw_tls_start runs the TLS client handshake with OpenSSL on the
 * connection's socket, verifying the server against a CA file and a host
 * name, and then swaps the connection's fd for one end of a socketpair.  A
 * pump thread moves bytes between the other end and the TLS session, so
 * every raw-client.h function keeps working, unchanged, over TLS.
 * WHY: libnbd 1.14 cannot send options before STARTTLS, so the tests that
 * check what a server forgets at STARTTLS need their own TLS client; the
 * pump keeps the NBD codec in one place (raw-client.c).
 * INVARIANTS: the TLS session is used only by the pump thread.  The fd the
 * test sees has the same 60 s send/receive timeouts as a raw socket.  When
 * the server closes the TLS session, the test side reads EOF.  The record
 * and byte counters are updated by the pump before it passes the bytes
 * on, so once the test has read a reply they include all of it.
 * THREADS AND LOCKS: one pump thread per session; it shares nothing with
 * the test thread but the socketpair and, after it exits, the error text.
 * FAILURE: a failed handshake or verification fails the current cmocka
 * test (from the test thread) with OpenSSL's reason.  Errors in the pump
 * are recorded and returned by raw_tls_close, never asserted in the pump.
 * NOT HERE: NBD messages (raw-client.c), what a test expects.
 */
#ifndef NBDCACHE_RAW_TLS_H
#define NBDCACHE_RAW_TLS_H

#include <stdbool.h>

struct raw_conn;
struct raw_tls;

struct raw_tls_opts {
  const char *ca_file;          /* trusted CA (PEM); required */
  const char *hostname;         /* must match the server certificate's
                                   SAN; NULL = do not check the name */
  const char *cert_file;        /* client certificate; NULL = none */
  const char *key_file;         /* its key; NULL = none */
};

/* The TLS handshake on c->fd (just after STARTTLS was ACKed), then c->fd
 * becomes the plaintext side of the pump.  Fails the test on error.
 */
struct raw_tls *raw_tls_start (struct raw_conn *c,
                               const struct raw_tls_opts *opts);
/* "TLSv1.3" etc. */
const char *raw_tls_version (const struct raw_tls *t);
/* Application-data records and their plaintext bytes received from the
 * server so far (counted by the pump as it decrypts them; take the
 * difference around a request to count one reply's records).
 */
unsigned long raw_tls_records_in (const struct raw_tls *t);
unsigned long raw_tls_bytes_in (const struct raw_tls *t);
/* Closes c's fd (if still open), stops the pump, frees the session.
 * Returns false (after printing it) if the pump saw an error other than
 * the server closing the connection.  NULL is a no-op returning true.
 */
bool raw_tls_close (struct raw_tls *t, struct raw_conn *c);

#endif /* NBDCACHE_RAW_TLS_H */
