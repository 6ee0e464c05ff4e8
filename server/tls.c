/* SPDX-License-Identifier: BSD-3-Clause */
/* tls.c — TLS for nbdcached with OpenSSL: the server context, PSK keys,
 * and each connection's non-blocking handshake, reads and writes.
 *
 * WHAT: builds one SSL_CTX from [server] (X.509 certificate + key, an
 * optional CA for client certificates, a PSK file in the nbdkit/libnbd
 * "username:hexkey" format, cipher settings, TLS 1.2 minimum); upgrades a
 * connection after NBD_OPT_STARTTLS; moves bytes through SSL_read /
 * SSL_write, packing the output queue into as few records as the record
 * size allows (a reply's header shares a record with its payload);
 * extracts the verified peer identity (subject DN in RFC 2253
 * form, DNS and email SANs, PSK username) for access control.
 * WHY: the NBD spec's STARTTLS upgrade happens in the middle of a
 * connection, on the loop thread, so everything here is non-blocking and
 * reports "would block" so conn.c can wait for the right event.
 * INVARIANTS: a connection has c->ssl only after STARTTLS was acknowledged
 * and the plaintext output queue was drained; c->tls_active only after the
 * handshake completed.  PSK keys live in the context for its life: a
 * reload makes a new context for new handshakes (tls_server_retire), and
 * the old one is freed when the last connection that uses it ends.
 * THREADS: loop thread only (workers never touch c->ssl).
 * FAILURE: a bad certificate, key or PSK file fails start-up with a
 * message naming the file; a failed handshake closes that connection with
 * OpenSSL's reason logged; nothing here exits.
 * NOT HERE: policy (which options need TLS, who may use which export):
 * handshake.c decides that from the identity recorded here.
 */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "log.h"
#include "server.h"

#define TLS_DEFAULT_CIPHERS "HIGH:!aNULL:!eNULL:!MD5:!RC4:!3DES:!DSS"
#define PSK_MAX_KEY_BYTES   64
#define TLS13_PSK_CIPHERSUITES "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256"
/* The largest record's plaintext (TLS 1.2 and 1.3), in bytes. */
#define TLS_RECORD_BYTES    SSL3_RT_MAX_PLAIN_LENGTH

struct psk_key {
  char *username;
  unsigned char key[PSK_MAX_KEY_BYTES];
  size_t key_len;               /* bytes */
};

struct tls_server {
  SSL_CTX *ctx;
  struct psk_key *psk;
  size_t nr_psk;
  unsigned refs;                /* connections with an SSL of ctx */
  bool retired;                 /* replaced by a reload: freed at refs 0 */
};

/* The last OpenSSL error, for one log line. */
static const char *
ssl_reason (char *buf, size_t len)
{
  unsigned long e = ERR_get_error ();

  if (e == 0)
    return "unknown error";
  ERR_error_string_n (e, buf, len);
  ERR_clear_error ();
  return buf;
}

static int
hexval (int ch)
{
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

/* "username:hexkey" lines; blank lines and #comments are skipped. */
static int
load_psk_file (struct tls_server *t, const char *path)
{
  FILE *fp = fopen (path, "r");
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  int lineno = 0;

  if (fp == NULL) {
    log_error ("tls_psk_file %s: %m", path);
    return -errno;
  }
  while ((len = getline (&line, &cap, fp)) != -1) {
    char *colon, *hex;
    struct psk_key *k, *p;
    size_t hexlen, i;

    lineno++;
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
      line[--len] = '\0';
    if (len == 0 || line[0] == '#')
      continue;
    colon = strchr (line, ':');
    hex = colon ? colon + 1 : NULL;
    hexlen = hex ? strlen (hex) : 0;
    if (colon == NULL || colon == line || hexlen == 0 || hexlen % 2 != 0 ||
        hexlen / 2 > PSK_MAX_KEY_BYTES) {
      log_error ("%s:%d: expected username:hexkey (an even number of hex "
                 "digits, at most %d bytes)", path, lineno, PSK_MAX_KEY_BYTES);
      goto bad;
    }
    p = realloc (t->psk, (t->nr_psk + 1) * sizeof *t->psk);
    if (p == NULL)
      goto bad;
    t->psk = p;
    k = &t->psk[t->nr_psk];
    memset (k, 0, sizeof *k);
    for (i = 0; i < hexlen / 2; i++) {
      int hi = hexval (hex[2 * i]), lo = hexval (hex[2 * i + 1]);
      if (hi < 0 || lo < 0) {
        log_error ("%s:%d: the key is not hexadecimal", path, lineno);
        goto bad;
      }
      k->key[i] = hi << 4 | lo;
    }
    k->key_len = hexlen / 2;
    *colon = '\0';
    if ((k->username = strdup (line)) == NULL)
      goto bad;
    t->nr_psk++;
  }
  free (line);
  fclose (fp);
  if (t->nr_psk == 0) {
    log_error ("tls_psk_file %s: no keys", path);
    return -EINVAL;
  }
  return 0;

 bad:
  free (line);
  fclose (fp);
  return -EINVAL;
}

static const struct psk_key *
find_psk (const struct tls_server *t, const char *identity, size_t len)
{
  size_t i;

  for (i = 0; i < t->nr_psk; i++)
    if (strlen (t->psk[i].username) == len &&
        memcmp (t->psk[i].username, identity, len) == 0)
      return &t->psk[i];
  return NULL;
}

static void
remember_username (SSL *ssl, const char *identity, size_t len)
{
  struct conn *c = SSL_get_app_data (ssl);

  if (c && c->tls_username == NULL)
    c->tls_username = strndup (identity, len);
}

/* TLS 1.2 PSK. */
static unsigned int
psk_server_cb (SSL *ssl, const char *identity, unsigned char *psk,
               unsigned int max_psk_len)
{
  struct tls_server *t = SSL_CTX_get_app_data (SSL_get_SSL_CTX (ssl));
  const struct psk_key *k = identity ? find_psk (t, identity,
                                                 strlen (identity)) : NULL;

  if (k == NULL || k->key_len > max_psk_len) {
    struct conn *c = SSL_get_app_data (ssl);
    log_info ("%s: TLS: unknown PSK identity '%s'", c ? c->peer : "client",
              identity ? identity : "");
    return 0;                   /* unknown user: the handshake fails */
  }
  memcpy (psk, k->key, k->key_len);
  remember_username (ssl, identity, strlen (identity));
  return k->key_len;
}

/* TLS 1.3 external PSK, as GnuTLS clients (libnbd, qemu) send it. */
static int
psk_find_session_cb (SSL *ssl, const unsigned char *identity,
                     size_t identity_len, SSL_SESSION **sess)
{
  static const unsigned char tls13_aes128gcmsha256_id[] = { 0x13, 0x01 };
  struct tls_server *t = SSL_CTX_get_app_data (SSL_get_SSL_CTX (ssl));
  const struct psk_key *k = find_psk (t, (const char *) identity,
                                      identity_len);
  const SSL_CIPHER *cipher;
  SSL_SESSION *s;

  *sess = NULL;
  if (k == NULL) {
    /* Not a PSK handshake; without a certificate it will fail, and
     * OpenSSL's own reason ("no suitable signature algorithm") would hide
     * the real one.
     */
    struct conn *c = SSL_get_app_data (ssl);
    log_info ("%s: TLS: unknown PSK identity '%.*s'", c ? c->peer : "client",
              (int) (identity_len > 256 ? 256 : identity_len), identity);
    return 1;
  }
  cipher = SSL_CIPHER_find (ssl, tls13_aes128gcmsha256_id);
  if (cipher == NULL || (s = SSL_SESSION_new ()) == NULL)
    return 0;
  if (!SSL_SESSION_set1_master_key (s, k->key, k->key_len) ||
      !SSL_SESSION_set_cipher (s, cipher) ||
      !SSL_SESSION_set_protocol_version (s, TLS1_3_VERSION)) {
    SSL_SESSION_free (s);
    return 0;
  }
  remember_username (ssl, (const char *) identity, identity_len);
  *sess = s;
  return 1;
}

/* A client offering a TLS 1.3 PSK (GnuTLS: libnbd, qemu) computed its
 * binder with SHA-256, and OpenSSL drops a PSK whose hash differs from the
 * negotiated suite's.  So for such clients only, offer the SHA-256 suites;
 * certificate clients keep the full list.
 */
static int
client_hello_cb (SSL *ssl, int *alert, void *arg)
{
  const unsigned char *ext;
  size_t len;

  if (SSL_client_hello_get0_ext (ssl, TLSEXT_TYPE_psk, &ext, &len) == 1 &&
      !SSL_set_ciphersuites (ssl, TLS13_PSK_CIPHERSUITES)) {
    *alert = SSL_AD_INTERNAL_ERROR;
    return SSL_CLIENT_HELLO_ERROR;
  }
  return SSL_CLIENT_HELLO_SUCCESS;
}

int
tls_server_create (const struct config *cfg, struct tls_server **out)
{
  static const unsigned char sid_ctx[] = { 'n', 'b', 'd', 'c', 'a', 'c',
                                           'h', 'e', 'd' };
  const struct config_server *cs = &cfg->server;
  struct tls_server *t = calloc (1, sizeof *t);
  char why[256];
  int r = -EINVAL;

  if (t == NULL)
    return -ENOMEM;
  t->ctx = SSL_CTX_new (TLS_server_method ());
  if (t->ctx == NULL) {
    log_error ("TLS: cannot create a context: %s", ssl_reason (why, sizeof why));
    goto err;
  }
  SSL_CTX_set_app_data (t->ctx, t);
  SSL_CTX_set_min_proto_version (t->ctx, cs->tls_min_version == 13
                                         ? TLS1_3_VERSION : TLS1_2_VERSION);
  SSL_CTX_set_options (t->ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                               SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_mode (t->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_session_cache_mode (t->ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets (t->ctx, 0);
  /* A TLS 1.3 PSK handshake is a resumption to OpenSSL, and with
   * SSL_VERIFY_PEER it refuses to resume without a session id context
   * ("session id context uninitialized"): PSK clients would always fail
   * under tls_verify_peer = yes.  No session is ever cached or resumed.
   */
  if (!SSL_CTX_set_session_id_context (t->ctx, sid_ctx, sizeof sid_ctx)) {
    log_error ("TLS: cannot set the session id context: %s",
               ssl_reason (why, sizeof why));
    goto err;
  }

  if (!SSL_CTX_set_cipher_list (t->ctx, cs->tls_ciphers ? cs->tls_ciphers
                                                       : TLS_DEFAULT_CIPHERS)) {
    log_error ("%s: tls_ciphers: %s", cfg->path, ssl_reason (why, sizeof why));
    goto err;
  }
  if (cs->tls_ciphersuites &&
      !SSL_CTX_set_ciphersuites (t->ctx, cs->tls_ciphersuites)) {
    log_error ("%s: tls_ciphersuites: %s", cfg->path,
               ssl_reason (why, sizeof why));
    goto err;
  }
  if (cs->tls_cert_file) {
    if (SSL_CTX_use_certificate_chain_file (t->ctx, cs->tls_cert_file) != 1) {
      log_error ("TLS certificate %s: %s", cs->tls_cert_file,
                 ssl_reason (why, sizeof why));
      goto err;
    }
    if (SSL_CTX_use_PrivateKey_file (t->ctx, cs->tls_key_file,
                                     SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key (t->ctx) != 1) {
      log_error ("TLS key %s: %s", cs->tls_key_file,
                 ssl_reason (why, sizeof why));
      goto err;
    }
  }
  if (cs->tls_ca_file &&
      SSL_CTX_load_verify_locations (t->ctx, cs->tls_ca_file, NULL) != 1) {
    log_error ("TLS CA %s: %s", cs->tls_ca_file, ssl_reason (why, sizeof why));
    goto err;
  }
  if (cs->tls_verify_peer)
    SSL_CTX_set_verify (t->ctx,
                        SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                        NULL);
  if (cs->tls_psk_file) {
    if ((r = load_psk_file (t, cs->tls_psk_file)) < 0)
      goto err;
    SSL_CTX_set_psk_server_callback (t->ctx, psk_server_cb);
    SSL_CTX_set_psk_find_session_callback (t->ctx, psk_find_session_cb);
    if (cs->tls_ciphersuites == NULL)   /* an admin's choice stands */
      SSL_CTX_set_client_hello_cb (t->ctx, client_hello_cb, NULL);
    r = -EINVAL;
  }
  *out = t;
  return 0;

 err:
  tls_server_destroy (t);
  return r;
}

void
tls_server_destroy (struct tls_server *t)
{
  size_t i;

  if (t == NULL)
    return;
  for (i = 0; i < t->nr_psk; i++) {
    OPENSSL_cleanse (t->psk[i].key, sizeof t->psk[i].key);
    free (t->psk[i].username);
  }
  free (t->psk);
  SSL_CTX_free (t->ctx);
  free (t);
}

void
tls_server_retire (struct tls_server *t)
{
  if (t == NULL)
    return;
  if (t->refs == 0)
    tls_server_destroy (t);
  else
    t->retired = true;
}

/* ---- per connection ---- */

int
tls_conn_begin (struct conn *c)
{
  char why[256];

  c->ssl = SSL_new (c->srv->tls->ctx);
  if (c->ssl != NULL)
    c->srv->tls->refs++;        /* tls_conn_free drops it */
  if (c->ssl == NULL ||
      !SSL_set_rfd (c->ssl, c->rfd) || !SSL_set_wfd (c->ssl, c->wfd)) {
    log_error ("%s: TLS: %s", c->peer, ssl_reason (why, sizeof why));
    return -EIO;
  }
  SSL_set_app_data (c->ssl, c);
  /* Read-ahead: one read(2) brings in every record the socket holds (up
   * to the read buffer), not a 5-byte header and then its record.
   */
  SSL_set_read_ahead (c->ssl, 1);
  SSL_set_accept_state (c->ssl);
  c->tls_handshaking = true;
  return 0;
}

/* Record the verified client certificate's subject and SANs. */
static void
record_peer_certificate (struct conn *c)
{
  X509 *cert = SSL_get1_peer_certificate (c->ssl);
  GENERAL_NAMES *sans;
  BIO *bio;
  int i;

  if (cert == NULL || SSL_get_verify_result (c->ssl) != X509_V_OK) {
    X509_free (cert);
    return;
  }
  if ((bio = BIO_new (BIO_s_mem ())) != NULL) {
    char *p;
    long n;
    X509_NAME_print_ex (bio, X509_get_subject_name (cert), 0,
                        XN_FLAG_RFC2253);
    n = BIO_get_mem_data (bio, &p);
    c->tls_subject = strndup (p, n);
    BIO_free (bio);
  }
  sans = X509_get_ext_d2i (cert, NID_subject_alt_name, NULL, NULL);
  for (i = 0; sans && i < sk_GENERAL_NAME_num (sans); i++) {
    const GENERAL_NAME *gn = sk_GENERAL_NAME_value (sans, i);
    const ASN1_IA5STRING *s;
    char **v;

    if (gn->type == GEN_DNS)
      s = gn->d.dNSName;
    else if (gn->type == GEN_EMAIL)
      s = gn->d.rfc822Name;
    else
      continue;
    v = realloc (c->tls_sans, (c->nr_tls_sans + 1) * sizeof *v);
    if (v == NULL)
      break;
    c->tls_sans = v;
    v[c->nr_tls_sans] = strndup ((const char *) ASN1_STRING_get0_data (s),
                                 ASN1_STRING_length (s));
    if (v[c->nr_tls_sans])
      c->nr_tls_sans++;
  }
  GENERAL_NAMES_free (sans);
  X509_free (cert);
}

/* Drive the handshake: 1 done, 0 waiting (c->tls_want_write says for
 * what), -1 failed (logged).
 */
int
tls_conn_handshake (struct conn *c)
{
  int r, e;
  char why[256];

  ERR_clear_error ();
  r = SSL_do_handshake (c->ssl);
  if (r == 1) {
    c->tls_handshaking = false;
    c->tls_active = true;
    c->tls_want_write = false;
    record_peer_certificate (c);
    log_info ("%s: TLS %s with %s%s%s%s%s", c->peer,
              SSL_get_version (c->ssl), SSL_get_cipher_name (c->ssl),
              c->tls_subject ? ", client " : "",
              c->tls_subject ? c->tls_subject : "",
              c->tls_username ? ", PSK user " : "",
              c->tls_username ? c->tls_username : "");
    return 1;
  }
  e = SSL_get_error (c->ssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    c->tls_want_write = e == SSL_ERROR_WANT_WRITE;
    return 0;
  }
  log_info ("%s: TLS handshake failed: %s", c->peer,
            e == SSL_ERROR_SSL ? ssl_reason (why, sizeof why)
            : e == SSL_ERROR_SYSCALL ? "connection closed" : "protocol error");
  return -1;
}

/* Like read(2): >0 bytes, 0 at EOF, -1 with errno (EAGAIN: wait; then
 * c->tls_want_write says whether for writability).  SSL_read gives one
 * record at a time; read-ahead has usually brought many (a client's
 * pipelined requests), so keep going while OpenSSL holds more bytes, as
 * one read(2) would: one event-loop pass per batch, not per request.  A
 * stop after some bytes is reported by the next call (OpenSSL's errors
 * persist); c->tls_want_write may be set with bytes returned.
 */
ssize_t
tls_conn_read (struct conn *c, void *buf, size_t len)
{
  size_t n = 0, got = 0;
  int e;

  ERR_clear_error ();
  c->tls_want_write = false;
  while (got < len &&
         SSL_read_ex (c->ssl, (char *) buf + got, len - got, &n) == 1) {
    got += n;
    if (!SSL_has_pending (c->ssl))
      return got;
  }
  if (got == len)
    return got;
  e = SSL_get_error (c->ssl, 0);
  if (got > 0) {
    c->tls_want_write = e == SSL_ERROR_WANT_WRITE;
    ERR_clear_error ();
    return got;
  }
  switch (e) {
  case SSL_ERROR_WANT_READ:
    errno = EAGAIN;
    return -1;
  case SSL_ERROR_WANT_WRITE:
    c->tls_want_write = true;
    errno = EAGAIN;
    return -1;
  case SSL_ERROR_ZERO_RETURN:
    return 0;                   /* close_notify */
  default:
    errno = ECONNRESET;
    return -1;
  }
}

/* One SSL_write: bytes written (with partial writes on, at most one
 * record's worth, unless a record left pending by the last call completes
 * first) or -1 with errno (EAGAIN: wait for the socket).
 */
static ssize_t
write_records (struct conn *c, const void *buf, size_t len)
{
  size_t n = 0;
  int e;

  ERR_clear_error ();
  if (SSL_write_ex (c->ssl, buf, len, &n) == 1)
    return n;
  e = SSL_get_error (c->ssl, 0);
  if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
    errno = EAGAIN;
    return -1;
  }
  errno = EPIPE;
  return -1;
}

/* Like writev(2), through TLS, in as few records as TLS_RECORD_BYTES
 * allows.  Pieces smaller than a record (reply headers, 4 KiB payloads,
 * the tail of a large one) are gathered into one record-sized staging
 * buffer, so a header goes out in the same record as the start of its
 * payload and several small replies share one; whole records of a large
 * payload go straight from the caller's buffer (no copy).
 * A retry after EAGAIN must present the same bytes again (SSL_write's
 * rule): it does, because the caller resumes at the first unwritten byte
 * of a queue that only grows at its tail, and the staging and direct
 * choices depend only on the bytes from there on.  A retry may stage more
 * bytes than the call that failed, never fewer, as SSL_write allows.
 */
ssize_t
tls_conn_writev (struct conn *c, const struct iovec *iov, int iovcnt)
{
  unsigned char stage[TLS_RECORD_BYTES];
  size_t staged = 0, total = 0, off = 0;  /* off: into iov[i] */
  int i = 0;

  for (;;) {
    const unsigned char *buf;
    size_t len, left;
    ssize_t w;

    while (i < iovcnt && off == iov[i].iov_len) {
      i++;
      off = 0;
    }
    left = i < iovcnt ? iov[i].iov_len - off : 0;
    if (left > 0 && staged == 0 && left >= TLS_RECORD_BYTES) {
      /* Whole records straight from the payload. */
      buf = (const unsigned char *) iov[i].iov_base + off;
      len = left - left % TLS_RECORD_BYTES;
    }
    else if (left > 0 && staged < sizeof stage) {
      size_t k = left < sizeof stage - staged ? left : sizeof stage - staged;

      memcpy (stage + staged, (const char *) iov[i].iov_base + off, k);
      staged += k;
      off += k;
      continue;
    }
    else if (staged > 0) {
      buf = stage;
      len = staged;
    }
    else
      return total;             /* everything written */

    w = write_records (c, buf, len);
    if (w == -1)
      return total > 0 ? (ssize_t) total : -1;
    total += w;
    if (buf != stage)
      off += w;
    else if ((size_t) w < staged)
      return total;             /* a smaller record size was negotiated */
    else
      staged = 0;
  }
}

bool
tls_conn_has_pending (struct conn *c)
{
  return c->ssl && c->tls_active && SSL_has_pending (c->ssl);
}

void
tls_conn_free (struct conn *c)
{
  size_t i;

  if (c->ssl) {
    struct tls_server *t = SSL_CTX_get_app_data (SSL_get_SSL_CTX (c->ssl));

    if (c->tls_active)
      SSL_shutdown (c->ssl);    /* best effort close_notify */
    SSL_free (c->ssl);
    c->ssl = NULL;
    /* The context a reload replaced lives until its last session ends. */
    if (t != NULL && --t->refs == 0 && t->retired)
      tls_server_destroy (t);
  }
  free (c->tls_subject);
  c->tls_subject = NULL;
  free (c->tls_username);
  c->tls_username = NULL;
  for (i = 0; i < c->nr_tls_sans; i++)
    free (c->tls_sans[i]);
  free (c->tls_sans);
  c->tls_sans = NULL;
  c->nr_tls_sans = 0;
}
