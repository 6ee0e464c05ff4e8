/* SPDX-License-Identifier: BSD-3-Clause */
/* conn.c — one client connection: socket I/O, buffers, backpressure, close.
 *
 * WHAT: reads the socket into a fixed input buffer and hands complete
 * messages to the handshake or request parser; keeps the queue of outgoing
 * messages and writes as many as it can with one writev; pauses reading at
 * CONN_MAX_IN_FLIGHT requests and resumes at CONN_RESUME_IN_FLIGHT, or
 * while the next request's buffer does not fit the memory bound (buffer.c);
 * closes the connection once nothing is in flight.
 * WHY: the loop thread must never block, so every socket is non-blocking and
 * every partial read or write is resumed from an ev_io callback.
 * INVARIANTS: rbuf[rstart..rend) holds unparsed input; a WRITE payload may
 * bypass rbuf and be received straight into the request's buffer (no copy).
 * A closed (destroyed) connection submits nothing more to the workers, but
 * its struct and its export reference stay valid until in_flight == 0,
 * when the sweeper frees it: requests still queued or running on workers
 * read c->exp and the negotiated flags, and come back to the loop, which
 * drops their replies.
 * THREADS: loop thread only, except `dead`, which the loop sets at close
 * and workers read (atomically) to skip requests nobody will read.
 * FAILURE: EOF, a socket error or a protocol violation closes this
 * connection (the cause logged at debug or error level, the close itself
 * once at info with export and TLS state); the server lives on.  EOF
 * in the middle of a WRITE payload (or of a refused payload being
 * discarded) releases that request at once: its payload can never come.
 * TIMEOUTS: a connection still negotiating [server] handshake_timeout
 * after accept is closed; so is one that made no progress for
 * request_timeout while the server waits on the client — a partly
 * received request (header or payload) while reading, or a reply the
 * client does not take while writing.  An idle connection (nothing
 * partial) is never timed out, nor one paused by the server itself
 * (in-flight limit, memory bound) or waiting on its workers.  One
 * periodic timer sweeps the connection list, every quarter of the
 * shorter timeout (at least CONN_SWEEP_MIN_S, at most CONN_SWEEP_MAX_S),
 * rather than one timer per connection re-armed on every read and write:
 * the hot path only stores ev_now in last_progress, and a timeout fires
 * at most a quarter late.
 * NOT HERE: what the messages mean (handshake.c, nbd-request.c).
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "compiler.h"
#include "log.h"
#include "server.h"

static void conn_read_cb (struct ev_loop *loop, ev_io *w, int revents);
static void conn_write_cb (struct ev_loop *loop, ev_io *w, int revents);
static void conn_free (struct conn *c);
static void close_if_drained (struct conn *c);
static void linger_cb (struct ev_loop *loop, ev_timer *w, int revents);
static void drop_partial_request (struct conn *c);

#define CONN_SWEEP_MIN_S 0.05
#define CONN_SWEEP_MAX_S 1.0

void
conn_set_reading (struct conn *c, bool on)
{
  if (on == c->reading || c->destroyed)
    return;
  c->reading = on;
  if (on) {
    ev_io_start (c->srv->loop, &c->rio);
    /* Data OpenSSL already decrypted will not make the socket readable. */
    if (tls_conn_has_pending (c))
      ev_feed_event (c->srv->loop, &c->rio, EV_READ);
  }
  else
    ev_io_stop (c->srv->loop, &c->rio);
}

static void
want_write (struct conn *c, bool on)
{
  if (on == c->writing)
    return;
  c->writing = on;
  if (on)
    ev_io_start (c->srv->loop, &c->wio);
  else
    ev_io_stop (c->srv->loop, &c->wio);
}

/* Advance the TLS handshake; on success forget the plaintext negotiation,
 * as the spec requires, and read again.
 */
static void
drive_tls_handshake (struct conn *c)
{
  int r = tls_conn_handshake (c);

  if (r < 0) {
    conn_close (c);
    return;
  }
  if (r == 0) {
    want_write (c, c->tls_want_write);
    return;
  }
  want_write (c, c->out_head != NULL);
  c->structured = false;
  c->extended = false;
  c->meta_base_allocation = false;
  free (c->meta_export);
  c->meta_export = NULL;
  conn_set_reading (c, true);
  /* Read-ahead may have taken the client's first option in with its
   * Finished message: the socket will not say so.
   */
  if (c->reading && tls_conn_has_pending (c))
    ev_feed_event (c->srv->loop, &c->rio, EV_READ);
}

/* STARTTLS was acknowledged and the acknowledgement has been written. */
static void
start_tls (struct conn *c)
{
  c->tls_start_pending = false;
  if (c->rstart != c->rend) {
    /* The client must wait for our reply before its TLS hello. */
    log_info ("%s: data after NBD_OPT_STARTTLS before the reply, closing",
              c->peer);
    conn_close (c);
    return;
  }
  if (tls_conn_begin (c) < 0) {
    conn_close (c);
    return;
  }
  conn_set_reading (c, true);
  drive_tls_handshake (c);
}

/* writev in plaintext; under TLS, the iovecs packed into as few records
 * as possible.  Returns bytes written or -1 with errno.
 */
static ssize_t
send_iov (struct conn *c, const struct iovec *iov, int n)
{
  ssize_t w;

  if (c->tls_active)
    return tls_conn_writev (c, iov, n);
  do
    w = writev (c->wfd, iov, n);
  while (w == -1 && errno == EINTR);
  return w;
}

void
conn_accept (struct server *srv, int rfd, int wfd, bool is_tcp,
             const char *peer, const struct sockaddr *addr,
             socklen_t addrlen)
{
  struct conn *c = calloc (1, sizeof *c);

  if (c == NULL || (c->rbuf = malloc (CONN_RBUF_BYTES)) == NULL) {
    log_error ("%s: out of memory accepting a connection", peer);
    free (c);
    close (rfd);
    if (wfd != rfd)
      close (wfd);
    return;
  }
  c->srv = srv;
  c->rfd = rfd;
  c->wfd = wfd;
  c->is_tcp = is_tcp;
  /* stdin/stdout (-s) counts as local, like a Unix-socket client. */
  c->is_unix = addr == NULL || addr->sa_family == AF_UNIX;
  if (addr && is_tcp && addrlen <= sizeof c->peer_addr)
    memcpy (&c->peer_addr, addr, addrlen);
  snprintf (c->peer, sizeof c->peer, "%s", peer);
  fcntl (rfd, F_SETFL, fcntl (rfd, F_GETFL) | O_NONBLOCK);
  /* Big socket buffers let one writev/read move a whole large request, so
   * the loop thread is not woken for every ~200 KiB of a 1 MiB transfer.
   * Best effort: the kernel caps these at net.core.[rw]mem_max.
   */
  setsockopt (rfd, SOL_SOCKET, SO_RCVBUF, &(int) { CONN_SOCKBUF_BYTES },
              sizeof (int));
  setsockopt (wfd, SOL_SOCKET, SO_SNDBUF, &(int) { CONN_SOCKBUF_BYTES },
              sizeof (int));
  if (wfd != rfd)
    fcntl (wfd, F_SETFL, fcntl (wfd, F_GETFL) | O_NONBLOCK);
  ev_io_init (&c->rio, conn_read_cb, rfd, EV_READ);
  ev_io_init (&c->wio, conn_write_cb, wfd, EV_WRITE);
  ev_timer_init (&c->linger, linger_cb, CONN_SHUTDOWN_LINGER_S, 0);
  c->rio.data = c->wio.data = c->linger.data = c;
  c->accepted_at = c->last_progress = ev_now (srv->loop);

  c->next = srv->conns;
  if (srv->conns)
    srv->conns->prev = c;
  srv->conns = c;
  srv->nr_conns++;
  log_debug ("%s: connected", c->peer);

  handshake_start (c);
  conn_set_reading (c, true);
  conn_flush_output (c);
}

void
conn_queue (struct conn *c, struct outmsg *m)
{
  m->next = NULL;
  m->iov_done = 0;
  m->iov_off = 0;
  if (c->out_tail)
    c->out_tail->next = m;
  else
    c->out_head = m;
  c->out_tail = m;
}

/* Release every queued message without sending it (connection is gone). */
static void
abandon_output (struct conn *c)
{
  while (c->out_head) {
    struct outmsg *m = c->out_head;

    c->out_head = m->next;
    if (m->release)
      m->release (c, m);
  }
  c->out_tail = NULL;
}

/* Write as much of the output queue as the socket takes, in one or more
 * writev calls gathering many messages each.
 */
void
conn_flush_output (struct conn *c)
{
  while (c->out_head && !c->destroyed) {
    struct iovec iov[IOV_MAX > 256 ? 256 : IOV_MAX];
    int n = 0;
    struct outmsg *m;
    ssize_t w;

    for (m = c->out_head; m && n < (int) ARRAY_SIZE (iov); m = m->next) {
      int i;
      for (i = m->iov_done; i < m->iovcnt && n < (int) ARRAY_SIZE (iov); i++) {
        iov[n] = m->iov[i];
        if (i == m->iov_done) {
          iov[n].iov_base = (char *) iov[n].iov_base + m->iov_off;
          iov[n].iov_len -= m->iov_off;
        }
        n++;
      }
      if (i < m->iovcnt)
        break;
    }

    w = send_iov (c, iov, n);
    if (w == -1) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        want_write (c, true);
        return;
      }
      log_debug ("%s: write: %m", c->peer);
      conn_close (c);
      return;
    }
    if (w > 0)
      c->last_progress = ev_now (c->srv->loop);

    /* Retire what was written. */
    while (w > 0 || (c->out_head &&
                     c->out_head->iov_done == c->out_head->iovcnt)) {
      m = c->out_head;
      if (m == NULL)
        break;
      while (m->iov_done < m->iovcnt && w > 0) {
        size_t left = m->iov[m->iov_done].iov_len - m->iov_off;
        if ((size_t) w >= left) {
          w -= left;
          m->iov_done++;
          m->iov_off = 0;
        }
        else {
          m->iov_off += w;
          w = 0;
        }
      }
      /* Skip zero-length iovecs. */
      while (m->iov_done < m->iovcnt && m->iov[m->iov_done].iov_len == 0)
        m->iov_done++;
      if (m->iov_done < m->iovcnt)
        break;
      c->out_head = m->next;
      if (c->out_head == NULL)
        c->out_tail = NULL;
      if (m->release)
        m->release (c, m);
      if (c->destroyed)
        return;
    }
  }

  if (c->out_head == NULL && !c->tls_handshaking && !c->tls_want_write)
    want_write (c, false);
  if (c->out_head == NULL && c->tls_start_pending) {
    start_tls (c);
    return;
  }
  if (c->out_head == NULL && c->close_after_output && c->in_flight == 0)
    close_if_drained (c);
}

static void
conn_write_cb (struct ev_loop *loop, ev_io *w, int revents)
{
  struct conn *c = w->data;

  if (c->tls_handshaking) {
    drive_tls_handshake (c);
    return;
  }
  if (c->tls_want_write) {
    /* An SSL_read was waiting for the socket to take data. */
    c->tls_want_write = false;
    conn_read_cb (loop, &c->rio, EV_READ);
    if (c->destroyed)
      return;
  }
  conn_flush_output (c);
}

/* Parse whatever is buffered.  Called after every read and on resume. */
void
conn_process_input (struct conn *c)
{
  bool more = true;

  while (more && !c->destroyed && c->phase != PHASE_CLOSING) {
    if (c->phase == PHASE_TRANSMISSION)
      more = nbd_request_parse (c);
    else
      more = handshake_parse (c);
  }
  if (c->tls_start_pending)
    conn_set_reading (c, false);     /* until the TLS handshake owns the socket */
  /* Hand the whole parse batch to the workers under one lock (a closed
   * connection has dropped its batch already: conn_close).
   */
  if (c->batch_n > 0) {
    worker_pool_submit (c->srv->pool, c->batch_head, c->batch_tail,
                        c->batch_n);
    c->batch_head = c->batch_tail = NULL;
    c->batch_n = 0;
  }
  devring_submit (c->srv);      /* the batch's ring reads: one syscall */
  if (c->destroyed)
    return;
  /* Compact the buffer so the free space is contiguous. */
  if (c->rstart == c->rend)
    c->rstart = c->rend = 0;
  else if (c->rstart > CONN_RBUF_BYTES / 2) {
    memmove (c->rbuf, c->rbuf + c->rstart, c->rend - c->rstart);
    c->rend -= c->rstart;
    c->rstart = 0;
  }
  conn_flush_output (c);
}

static void
conn_read_cb (struct ev_loop *loop, ev_io *w, int revents)
{
  struct conn *c = w->data;
  struct iovec iov[2];
  int iovcnt = 0;
  size_t room, payload_want = 0;
  ssize_t n;

  if (c->tls_handshaking) {
    drive_tls_handshake (c);
    return;
  }

  if (c->rend == CONN_RBUF_BYTES) {
    if (c->rstart == 0) {
      /* Full of unparsed input: a parser stopped on backpressure. */
      conn_set_reading (c, false);
      return;
    }
    memmove (c->rbuf, c->rbuf + c->rstart, c->rend - c->rstart);
    c->rend -= c->rstart;
    c->rstart = 0;
  }
  /* A WRITE payload that is still owed lands straight in the request's
   * buffer, and whatever follows it (the next headers) in rbuf, with one
   * readv.  Reads into rbuf are capped at CONN_READ_CHUNK_BYTES so a large
   * payload is mostly received directly rather than copied out of rbuf.
   */
  if (c->payload_req && c->rstart == c->rend) {
    struct request *r = c->payload_req;

    payload_want = r->h.count - c->payload_got;
    iov[iovcnt].iov_base = (char *) r->buf + c->payload_got;
    iov[iovcnt++].iov_len = payload_want;
  }
  room = CONN_RBUF_BYTES - c->rend;
  if (room > CONN_READ_CHUNK_BYTES)
    room = CONN_READ_CHUNK_BYTES;
  iov[iovcnt].iov_base = c->rbuf + c->rend;
  iov[iovcnt++].iov_len = room;
  if (c->tls_active) {
    /* One buffer per SSL_read: the payload first if one is owed. */
    n = tls_conn_read (c, iov[0].iov_base, iov[0].iov_len);
    if (n == -1 && errno == EAGAIN && c->tls_want_write)
      want_write (c, true);
  }
  else
    n = readv (c->rfd, iov, iovcnt);
  if (n == -1) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
      return;
    log_debug ("%s: read: %m", c->peer);
    conn_close (c);
    return;
  }
  if (n == 0) {
    log_debug ("%s: client closed the connection", c->peer);
    /* A payload still owed can never come: its request goes now, or it
     * would hold in_flight (and this connection) forever.
     */
    drop_partial_request (c);
    if (c->phase == PHASE_TRANSMISSION && c->in_flight > 0) {
      /* Finish what is in flight (replies may fail to send), then close. */
      c->phase = PHASE_CLOSING;
      c->close_after_output = true;
      conn_set_reading (c, false);
      conn_flush_output (c);
    }
    else
      conn_close (c);
    return;
  }
  c->last_progress = ev_now (c->srv->loop);
  if (c->tls_want_write)
    want_write (c, true);       /* OpenSSL must write before reading on */
  if ((size_t) n <= payload_want)
    c->payload_got += n;
  else {
    c->payload_got += payload_want;
    c->rend += n - payload_want;
  }
  conn_process_input (c);
  /* More decrypted data may wait inside OpenSSL: come back for it. */
  if (!c->destroyed && c->reading && tls_conn_has_pending (c))
    ev_feed_event (c->srv->loop, &c->rio, EV_READ);
}

void
conn_resume (struct conn *c)
{
  if (c->destroyed || c->phase != PHASE_TRANSMISSION || c->resume_marked)
    return;
  /* Parse what is already buffered, but not from inside the output path
   * that called us: the loop's prepare watcher does it.
   */
  conn_set_reading (c, true);
  c->resume_marked = true;
  c->resume_next = c->srv->resumes;
  c->srv->resumes = c;
}

/* Called by nbd_request_release once a reply has left (or been abandoned). */
void
conn_reply_sent (struct conn *c)
{
  if (c->destroyed)
    return;
  if (!c->reading && c->in_flight <= CONN_RESUME_IN_FLIGHT)
    conn_resume (c);
  if (!c->destroyed && c->in_flight == 0 && c->close_after_output &&
      c->out_head == NULL)
    close_if_drained (c);
}

/* Close a connection that has nothing in flight and nothing to send —
 * unless the server is stopping and the client has already sent more
 * requests: those are read and answered ESHUTDOWN first, as the spec asks,
 * so a client learns why instead of seeing the connection drop.
 */
static void
linger_cb (struct ev_loop *loop, ev_timer *w, int revents)
{
  struct conn *c = w->data;

  if (c->in_flight == 0 && c->out_head == NULL && c->rstart == c->rend)
    conn_close (c);
}

static void
close_if_drained (struct conn *c)
{
  if (conn_shutting_down (c) && c->phase == PHASE_TRANSMISSION) {
    /* Requests the client sent around the stop (and those it sends in the
     * next moment) are answered ESHUTDOWN rather than lost with the
     * connection: close only after CONN_SHUTDOWN_LINGER_S of quiet.
     */
    if (c->rstart < c->rend)
      return;
    ev_timer_stop (c->srv->loop, &c->linger);
    ev_timer_set (&c->linger, CONN_SHUTDOWN_LINGER_S, 0);
    ev_timer_start (c->srv->loop, &c->linger);
    return;
  }
  conn_close (c);
}

void
conn_begin_shutdown (struct conn *c)
{
  if (c->phase == PHASE_CLIENT_FLAGS || c->phase == PHASE_OPTIONS) {
    conn_close (c);             /* nothing in flight during negotiation */
    return;
  }
  c->close_after_output = true;
  if (c->buffer_waiting) {
    /* Its waiting request is answered ESHUTDOWN, without a buffer. */
    buffer_forget (c);
    conn_resume (c);
  }
  if (c->in_flight == 0 && c->out_head == NULL)
    close_if_drained (c);
}

/* Requests parsed but not yet handed to the workers are answered by
 * nobody: release them here, so a closed connection submits nothing.
 */
static void
drop_batch (struct conn *c)
{
  while (c->batch_head) {
    struct request *r = c->batch_head;

    c->batch_head = r->next;
    nbd_request_release (c, &r->out);
  }
  c->batch_tail = NULL;
  c->batch_n = 0;
}

/* The request whose payload is being received (or discarded) will never
 * be complete: release it without a reply.
 */
static void
drop_partial_request (struct conn *c)
{
  struct request *r;

  c->discard_left = 0;
  if ((r = c->payload_req) != NULL) {
    c->payload_req = NULL;
    nbd_request_release (c, &r->out);
  }
  if ((r = c->after_discard) != NULL) {
    c->after_discard = NULL;
    nbd_request_release (c, &r->out);
  }
}

bool
conn_is_dead (const struct conn *c)
{
  return __atomic_load_n (&c->dead, __ATOMIC_ACQUIRE);
}

const char *
conn_tls_state (const struct conn *c, char *buf, size_t size)
{
  if (!c->tls_active)
    return "no TLS";
  snprintf (buf, size, "%s%s%s%s%s", c->ssl ? SSL_get_version (c->ssl) : "TLS",
            c->tls_subject ? ", client certificate " : "",
            c->tls_subject ? c->tls_subject : "",
            c->tls_username ? ", PSK user " : "",
            c->tls_username ? c->tls_username : "");
  return buf;
}

void
conn_close (struct conn *c)
{
  struct server *srv = c->srv;
  char tls[CONN_TLS_STATE_BYTES];

  if (c->destroyed)
    return;
  c->destroyed = true;
  /* The one "closed" line of every connection (its "opened" line, when it
   * got as far as an export, is in the handshake).
   */
  if (c->exp)
    log_info ("%s: closed export '%s' (%s; %u requests in flight, %.1f s)",
              c->peer, c->exp->name, conn_tls_state (c, tls, sizeof tls),
              c->in_flight, ev_now (srv->loop) - c->accepted_at);
  else
    log_info ("%s: closed during negotiation, no export (%s)", c->peer,
              conn_tls_state (c, tls, sizeof tls));
  ev_io_stop (srv->loop, &c->rio);
  ev_io_stop (srv->loop, &c->wio);
  ev_timer_stop (srv->loop, &c->linger);
  c->reading = c->writing = false;
  /* Workers may still run requests of this connection: they stop starting
   * new ones (conn_is_dead), but c->exp stays valid until conn_free.
   */
  __atomic_store_n (&c->dead, true, __ATOMIC_RELEASE);
  if (c->exp)
    c->exp->nr_connections--;
  drop_batch (c);
  buffer_forget (c);
  if (c->resume_marked) {
    struct conn **pp = &srv->resumes;
    while (*pp != c)
      pp = &(*pp)->resume_next;
    *pp = c->resume_next;
    c->resume_marked = false;
  }
  /* Unlink now so shutdown logic sees it gone; free when idle. */
  if (c->prev)
    c->prev->next = c->next;
  else
    srv->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  c->next = c->prev = NULL;
  srv->nr_conns--;
  tls_conn_free (c);
  if (c->wfd != c->rfd)
    close (c->wfd);
  close (c->rfd);
  c->rfd = c->wfd = -1;
  drop_partial_request (c);
  abandon_output (c);
  /* Freed by the sweeper once no worker holds one of its requests: callers
   * up the stack may still look at c->destroyed.
   */
  c->next = srv->zombies;
  srv->zombies = c;
  server_conn_gone (srv);
}

/* Parse input of connections whose reading resumed.  Runs from an
 * ev_prepare watcher; loops until no connection is left to resume, so the
 * loop never blocks with parsable input buffered.
 */
void
conn_run_resumes (struct server *srv)
{
  while (srv->resumes) {
    struct conn *c = srv->resumes;

    srv->resumes = c->resume_next;
    c->resume_marked = false;
    if (!c->destroyed)
      conn_process_input (c);
  }
}

/* Free destroyed connections with nothing in flight.  Runs from an ev_check
 * watcher, after all callbacks of a loop iteration.
 */
void
conn_sweep (struct server *srv)
{
  struct conn **pp = &srv->zombies;

  while (*pp) {
    struct conn *c = *pp;

    if (c->in_flight > 0) {
      pp = &c->next;
      continue;
    }
    *pp = c->next;
    conn_free (c);
  }
}

static void
conn_free (struct conn *c)
{
  abandon_output (c);
  if (c->exp)
    c->exp->nr_conn_refs--;     /* a removed export may close now */
  while (c->free_reqs) {
    struct request *r = c->free_reqs;
    c->free_reqs = r->next;
    free (r->buf);
    free (r->extents);
    free (r);
  }
  c->free_buf_bytes = 0;
  free (c->meta_export);
  free (c->rbuf);
  free (c);
}

/* ---- timeouts ---- */

/* Is the server waiting on this client for something it has begun?  (Not
 * when the client is idle between requests, nor when the server paused it.)
 */
static bool
stalled_on_client (const struct conn *c)
{
  if (c->writing && c->out_head != NULL)
    return true;                /* a reply the client does not take */
  return c->reading && c->phase == PHASE_TRANSMISSION &&
         (c->payload_req != NULL || c->discard_left > 0 ||
          c->rstart < c->rend);
}

static void
timeout_sweep_cb (struct ev_loop *loop, ev_timer *w, int revents)
{
  struct server *srv = w->data;
  double handshake_s = srv->cfg->server.handshake_timeout_ms / 1000.0;
  double request_s = srv->cfg->server.request_timeout_ms / 1000.0;
  ev_tstamp now = ev_now (loop);
  struct conn *c, *next;

  for (c = srv->conns; c; c = next) {
    next = c->next;             /* conn_close unlinks c */
    if (c->phase == PHASE_CLIENT_FLAGS || c->phase == PHASE_OPTIONS) {
      if (now - c->accepted_at >= handshake_s) {
        log_ratelimited_msg (&srv->handshake_rl, LOG_LEVEL_INFO,
                             "%s: handshake not finished within "
                             "handshake_timeout (%.3g s), closing",
                             c->peer, handshake_s);
        conn_close (c);
      }
    }
    else if (now - c->last_progress >= request_s && stalled_on_client (c)) {
      log_ratelimited_msg (&srv->request_rl, LOG_LEVEL_WARNING,
                           "%s: no progress on a request for "
                           "request_timeout (%.3g s), closing (%u in flight)",
                           c->peer, request_s, c->in_flight);
      conn_close (c);
    }
  }
}

void
conn_timeouts_start (struct server *srv)
{
  unsigned shorter_ms = srv->cfg->server.handshake_timeout_ms;
  double every_s;

  if (srv->cfg->server.request_timeout_ms < shorter_ms)
    shorter_ms = srv->cfg->server.request_timeout_ms;
  every_s = shorter_ms / 4000.0;
  if (every_s < CONN_SWEEP_MIN_S)
    every_s = CONN_SWEEP_MIN_S;
  if (every_s > CONN_SWEEP_MAX_S)
    every_s = CONN_SWEEP_MAX_S;
  ev_timer_init (&srv->timeout_timer, timeout_sweep_cb, every_s, every_s);
  srv->timeout_timer.data = srv;
  ev_timer_start (srv->loop, &srv->timeout_timer);
}

void
conn_timeouts_stop (struct server *srv)
{
  ev_timer_stop (srv->loop, &srv->timeout_timer);
}
