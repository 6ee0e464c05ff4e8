/* SPDX-License-Identifier: BSD-3-Clause */
/* raw-tls.c — TLS under the raw-socket test client (see raw-tls.h).
 *
 * WHAT: OpenSSL client handshake on a raw NBD connection, then a pump
 * thread between a socketpair and the TLS session.
 * WHY: raw-client.c reads and writes a plain fd; a socketpair lets it talk
 * TLS without knowing, and keeps OpenSSL out of every other raw test.
 * INVARIANTS: only the pump touches the SSL object after the handshake
 * (OpenSSL objects must not be used from two threads at once).  Both of
 * the pump's fds are non-blocking; it polls only after a full pass that
 * moved no byte, so data OpenSSL has already decrypted is never left
 * waiting for the socket to become readable.  A partially written record
 * is retried with the same buffer and length, as SSL_write requires.
 * THREADS AND LOCKS: the test thread and one pump thread; the pump's
 * error text is read only after pthread_join; its record and byte
 * counters are atomics the test thread may read at any time.
 * FAILURE: handshake problems fail the test from the test thread; the pump
 * records the first error and stops.
 * NOT HERE: NBD messages.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "raw-client.h"
#include "raw-tls.h"

#define IO_TIMEOUT_S   60       /* the test side's socket timeouts */
#define PUMP_BUF_BYTES (64 * 1024)

struct raw_tls {
  SSL_CTX *ctx;
  SSL *ssl;
  int net_fd;                   /* the TCP/Unix socket to the server */
  int app_fd;                   /* the pump's end of the socketpair */
  pthread_t thread;
  bool thread_started;
  char error[512];              /* first pump error; "" = none */
  atomic_ulong records_in;      /* application-data records received */
  atomic_ulong bytes_in;        /* their plaintext bytes */
  unsigned char to_app[PUMP_BUF_BYTES]; /* decrypted, not yet passed on */
  unsigned char to_net[PUMP_BUF_BYTES]; /* from the test, not yet sent */
};

/* OpenSSL's queued errors as one line (clears the queue). */
static void
ssl_errors (char *buf, size_t n)
{
  unsigned long e;
  size_t used = 0;

  buf[0] = '\0';
  while ((e = ERR_get_error ()) != 0 && used + 2 < n) {
    char one[256];

    ERR_error_string_n (e, one, sizeof one);
    used += (size_t) snprintf (buf + used, n - used, "%s%s",
                               used ? "; " : "", one);
  }
  if (buf[0] == '\0')
    snprintf (buf, n, "no OpenSSL error queued (errno: %s)",
              strerror (errno));
}

static int
set_nonblocking (int fd)
{
  int flags = fcntl (fd, F_GETFL);

  if (flags == -1 || fcntl (fd, F_SETFL, flags | O_NONBLOCK) == -1)
    return -errno;
  return 0;
}

/* The pump: app_fd <-> SSL.  Ends when either side closes or fails, then
 * shuts app_fd down so that the test side sees EOF (raw_tls_close closes
 * it).
 */
static void *
pump (void *arg)
{
  struct raw_tls *t = arg;
  unsigned char *to_app = t->to_app, *to_net = t->to_net;
  size_t to_app_off = 0, to_app_len = 0, to_net_off = 0, to_net_len = 0;
  bool net_eof = false, app_eof = false;

  for (;;) {
    bool progress = false;
    bool net_in = false, net_out = false, app_in = false, app_out = false;
    ssize_t r;
    int n, e;

    /* server -> test */
    if (!net_eof && to_app_off == to_app_len) {
      n = SSL_read (t->ssl, to_app, PUMP_BUF_BYTES);
      if (n > 0) {
        to_app_off = 0;
        to_app_len = (size_t) n;
        atomic_fetch_add (&t->bytes_in, (unsigned long) n);
        progress = true;
      }
      else {
        e = SSL_get_error (t->ssl, n);
        if (e == SSL_ERROR_WANT_READ)
          net_in = true;
        else if (e == SSL_ERROR_WANT_WRITE)
          net_out = true;
        else {
          /* ZERO_RETURN: a clean close_notify.  A reset or EOF without
           * close_notify is also how servers hang up after an error: not
           * a pump failure, the test decides what it means.
           */
          ERR_clear_error ();
          net_eof = true;
          progress = true;
        }
      }
    }
    if (to_app_off < to_app_len) {
      r = send (t->app_fd, to_app + to_app_off, to_app_len - to_app_off,
                MSG_NOSIGNAL | MSG_DONTWAIT);
      if (r > 0) {
        to_app_off += (size_t) r;
        progress = true;
      }
      else if (r == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
        app_out = true;
      else if (r == -1 && errno != EINTR)
        break;                  /* the test closed its side */
    }
    if (net_eof && to_app_off == to_app_len)
      break;

    /* test -> server */
    if (!app_eof && to_net_off == to_net_len) {
      r = recv (t->app_fd, to_net, PUMP_BUF_BYTES, MSG_DONTWAIT);
      if (r > 0) {
        to_net_off = 0;
        to_net_len = (size_t) r;
        progress = true;
      }
      else if (r == 0) {
        app_eof = true;
        progress = true;
      }
      else if (errno == EAGAIN || errno == EWOULDBLOCK)
        app_in = true;
      else if (errno != EINTR)
        break;
    }
    if (to_net_off < to_net_len) {
      n = SSL_write (t->ssl, to_net + to_net_off,
                     (int) (to_net_len - to_net_off));
      if (n > 0) {
        to_net_off += (size_t) n;
        progress = true;
      }
      else {
        e = SSL_get_error (t->ssl, n);
        if (e == SSL_ERROR_WANT_READ)
          net_in = true;
        else if (e == SSL_ERROR_WANT_WRITE)
          net_out = true;
        else {
          /* The server hung up while we still had bytes for it. */
          ERR_clear_error ();
          net_eof = true;
          to_net_off = to_net_len;
          progress = true;
        }
      }
    }
    if (app_eof && to_net_off == to_net_len) {
      SSL_shutdown (t->ssl);    /* best effort close_notify */
      break;
    }

    if (!progress) {
      /* An fd with nothing to wait for is left out (-1): a peer's hang-up
       * would otherwise wake poll again and again.
       */
      struct pollfd fds[2] = {
        { .fd = net_in || net_out ? t->net_fd : -1,
          .events = (short) ((net_in ? POLLIN : 0) | (net_out ? POLLOUT : 0)) },
        { .fd = app_in || app_out ? t->app_fd : -1,
          .events = (short) ((app_in ? POLLIN : 0) | (app_out ? POLLOUT : 0)) },
      };

      if (poll (fds, 2, -1) == -1 && errno != EINTR) {
        snprintf (t->error, sizeof t->error, "poll: %s", strerror (errno));
        break;
      }
    }
  }
  shutdown (t->app_fd, SHUT_RDWR);
  return NULL;
}

/* OpenSSL's message callback: counts the application-data records read.
 * TLS 1.3 hides the real type inside the encrypted record (the outer
 * header always says application data), so count its inner type there.
 */
static void
count_record (int write_p, int version, int content_type, const void *buf,
              size_t len, SSL *ssl, void *arg)
{
  struct raw_tls *t = arg;
  const unsigned char *p = buf;
  int want = SSL_version (ssl) == TLS1_3_VERSION ? SSL3_RT_INNER_CONTENT_TYPE
                                                 : SSL3_RT_HEADER;

  (void) version;
  if (!write_p && content_type == want && len >= 1 &&
      p[0] == SSL3_RT_APPLICATION_DATA)
    atomic_fetch_add (&t->records_in, 1);
}

static void
raw_tls_free (struct raw_tls *t)
{
  if (t->ssl)
    SSL_free (t->ssl);
  if (t->ctx)
    SSL_CTX_free (t->ctx);
  if (t->net_fd >= 0)
    close (t->net_fd);
  if (t->app_fd >= 0)
    close (t->app_fd);
  free (t);
}

struct raw_tls *
raw_tls_start (struct raw_conn *c, const struct raw_tls_opts *opts)
{
  struct raw_tls *t = calloc (1, sizeof *t);
  struct timeval tv = { .tv_sec = IO_TIMEOUT_S };
  char why[512];
  int sv[2], r;
  long vr;

  assert_non_null (t);
  assert_non_null (opts->ca_file);
  t->net_fd = t->app_fd = -1;

  t->ctx = SSL_CTX_new (TLS_client_method ());
  if (t->ctx == NULL)
    goto ssl_fail;
  if (SSL_CTX_set_min_proto_version (t->ctx, TLS1_2_VERSION) != 1)
    goto ssl_fail;
  if (SSL_CTX_load_verify_locations (t->ctx, opts->ca_file, NULL) != 1)
    goto ssl_fail;
  SSL_CTX_set_verify (t->ctx, SSL_VERIFY_PEER, NULL);
  if (opts->cert_file &&
      SSL_CTX_use_certificate_chain_file (t->ctx, opts->cert_file) != 1)
    goto ssl_fail;
  if (opts->key_file &&
      SSL_CTX_use_PrivateKey_file (t->ctx, opts->key_file,
                                   SSL_FILETYPE_PEM) != 1)
    goto ssl_fail;
  t->ssl = SSL_new (t->ctx);
  if (t->ssl == NULL)
    goto ssl_fail;
  SSL_set_mode (t->ssl, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_set_msg_callback (t->ssl, count_record);
  SSL_set_msg_callback_arg (t->ssl, t);
  if (opts->hostname) {
    if (SSL_set1_host (t->ssl, opts->hostname) != 1 ||
        SSL_set_tlsext_host_name (t->ssl, opts->hostname) != 1)
      goto ssl_fail;
  }
  if (SSL_set_fd (t->ssl, c->fd) != 1)
    goto ssl_fail;

  /* Blocking handshake; the socket's timeouts bound it. */
  r = SSL_connect (t->ssl);
  if (r != 1) {
    int e = SSL_get_error (t->ssl, r);

    vr = SSL_get_verify_result (t->ssl);
    ssl_errors (why, sizeof why);
    fail_msg ("TLS handshake failed (SSL_get_error %d, verify: %s): %s", e,
              X509_verify_cert_error_string (vr), why);
  }
  vr = SSL_get_verify_result (t->ssl);
  if (vr != X509_V_OK)
    fail_msg ("server certificate not verified: %s",
              X509_verify_cert_error_string (vr));

  /* Swap the connection's fd for the socketpair. */
  if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1)
    fail_msg ("socketpair: %s", strerror (errno));
  if (setsockopt (sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == -1 ||
      setsockopt (sv[0], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) == -1)
    fail_msg ("setsockopt: %s", strerror (errno));
  t->net_fd = c->fd;
  t->app_fd = sv[1];
  c->fd = sv[0];
  if ((r = set_nonblocking (t->net_fd)) < 0 ||
      (r = set_nonblocking (t->app_fd)) < 0)
    fail_msg ("fcntl O_NONBLOCK: %s", strerror (-r));
  r = pthread_create (&t->thread, NULL, pump, t);
  if (r != 0)
    fail_msg ("pthread_create: %s", strerror (r));
  t->thread_started = true;
  return t;

 ssl_fail:
  ssl_errors (why, sizeof why);
  fail_msg ("OpenSSL client setup failed: %s", why);
  return NULL;                  /* not reached */
}

const char *
raw_tls_version (const struct raw_tls *t)
{
  return SSL_get_version (t->ssl);
}

unsigned long
raw_tls_records_in (const struct raw_tls *t)
{
  return atomic_load (&t->records_in);
}

unsigned long
raw_tls_bytes_in (const struct raw_tls *t)
{
  return atomic_load (&t->bytes_in);
}

bool
raw_tls_close (struct raw_tls *t, struct raw_conn *c)
{
  bool ok;

  if (t == NULL)
    return true;
  raw_close (c);
  if (t->thread_started)
    pthread_join (t->thread, NULL);
  ok = t->error[0] == '\0';
  if (!ok)
    fprintf (stderr, "raw-tls: %s\n", t->error);
  raw_tls_free (t);
  return ok;
}
