/* SPDX-License-Identifier: BSD-3-Clause */
/* metrics.c — GET /metrics: the stats in the Prometheus text format.
 *
 * WHAT: when [server] metrics_listen = ADDR is set ("HOST:PORT",
 * "[V6]:PORT", "unix:PATH" or an absolute PATH), nbdcached answers plain
 * HTTP/1.x there: GET or HEAD /metrics (any query string ignored) gets
 * 200 and the text of common/metrics/prom.c, the same the admin's
 * `nbdcache stats --prometheus` prints; any other path 404, any other
 * method 405, a request line that is not HTTP 400, a request whose
 * headers do not fit in METRICS_MAX_REQUEST_BYTES 431.  One request per
 * connection: the answer says "Connection: close" and the connection is
 * closed once it is sent (after an error answer, once the client closes
 * its side too, so unread input cannot reset the answer away).
 * WHY: Prometheus scrapes HTTP; an admin should not need a cron job
 * around the CLI to be scraped.
 * INVARIANTS:
 * - It is an attack surface: a request is at most
 *   METRICS_MAX_REQUEST_BYTES, a connection lives at most
 *   METRICS_TIMEOUT_S from accept whatever it does (slow readers and
 *   writers included), and at most METRICS_MAX_CONNS are open at once
 *   (more are accepted and closed at once, so the backlog cannot fill).
 *   Nothing a client sends is echoed back or logged beyond debug level.
 * - Every live connection is on m->conns; closing one stops its watchers
 *   before its fd is closed.
 * THREADS AND LOCKS: everything on the loop thread, non-blocking; the
 * counters are read with the same engine calls as the control socket
 * (short locks, no I/O), so no lock is ours.
 * FAILURE: a bad address or a failed bind is a start-up error; a failed
 * accept is logged at debug and the listener lives on; out of fds or
 * memory accepting pauses for METRICS_ACCEPT_RETRY_S; a failed stats
 * collection answers 500.  Nothing a client does can stop the server.
 * NOT HERE: the text format (common/metrics/prom.c), binding the
 * address (listen.c), the counters (control.c builds the document).
 */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <json.h>

#include "log.h"
#include "prom.h"
#include "server.h"

#define METRICS_MAX_REQUEST_BYTES 4096 /* request line and headers */
#define METRICS_TIMEOUT_S         10.0 /* s a connection may live */
#define METRICS_MAX_CONNS         16
#define METRICS_ACCEPT_RETRY_S    1.0
#define METRICS_MAX_DRAIN_BYTES   (64 * 1024) /* read after an error */

struct metrics_listener {
  struct metrics_listener *next;
  struct metrics *m;
  int fd;
  char *display;
  char *unix_path;              /* unlinked at close; NULL for TCP */
  ev_io io;
};

struct metrics_conn {
  struct metrics_conn *next, *prev;
  struct metrics *m;
  int fd;
  ev_io io;                     /* EV_READ until the request is in, then
                                   EV_WRITE until the answer is out */
  ev_timer deadline;
  char req[METRICS_MAX_REQUEST_BYTES];
  size_t req_len;
  char *resp;                   /* malloc'd; NULL while reading */
  size_t resp_len, resp_off;
  bool linger;                  /* an error answer: the client may still be
                                   sending; read what it sends after the
                                   answer (closing on unread data would
                                   reset the connection, losing the
                                   answer) */
  bool draining;                /* answered; discarding input until EOF */
  size_t drained_bytes;
};

struct metrics {
  struct server *srv;
  struct metrics_listener *listeners;
  struct metrics_conn *conns;
  unsigned nr_conns;
  ev_timer retry;               /* accept paused: resume after this */
};

/* ---- connections ---- */

static void
conn_free (struct metrics_conn *c)
{
  struct metrics *m = c->m;

  ev_io_stop (m->srv->loop, &c->io);
  ev_timer_stop (m->srv->loop, &c->deadline);
  if (c->prev)
    c->prev->next = c->next;
  else
    m->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  m->nr_conns--;
  close (c->fd);
  free (c->resp);
  free (c);
}

static void
deadline_cb (struct ev_loop *loop, ev_timer *w, int revents)
{
  (void) loop; (void) revents;
  log_debug ("metrics: a connection timed out");
  conn_free (w->data);
}

/* The answer: status line, headers, and body unless head. */
static int
set_response (struct metrics_conn *c, const char *status,
              const char *content_type, const char *extra_headers,
              const char *body, size_t body_len, bool head)
{
  int n;

  n = asprintf (&c->resp, "HTTP/1.1 %s\r\n"
                "Content-Type: %s\r\n"
                "Content-Length: %zu\r\n"
                "%s"
                "Connection: close\r\n"
                "\r\n"
                "%.*s", status, content_type, body_len, extra_headers,
                head ? 0 : (int) body_len, body);
  if (n < 0) {
    c->resp = NULL;
    return -ENOMEM;
  }
  c->resp_len = (size_t) n;
  c->resp_off = 0;
  return 0;
}

static int
set_error (struct metrics_conn *c, const char *status, const char *extra)
{
  char body[128];
  int n = snprintf (body, sizeof body, "%s\n", status);

  c->linger = true;
  return set_response (c, status, "text/plain; charset=utf-8", extra, body,
                       (size_t) n, false);
}

/* 200 and the text, or 500. */
static int
set_metrics (struct metrics_conn *c, bool head)
{
  struct json_object *doc = control_stats_json (c->m->srv, NULL);
  char *text = NULL;
  size_t len = 0;
  int r;

  if (doc == NULL)
    return set_error (c, "500 Internal Server Error", "");
  r = prom_format (doc, &text, &len);
  json_object_put (doc);
  if (r < 0) {
    log_warning ("metrics: formatting the stats: %s", strerror (-r));
    return set_error (c, "500 Internal Server Error", "");
  }
  if (len > (size_t) INT32_MAX) {
    free (text);
    return set_error (c, "500 Internal Server Error", "");
  }
  r = set_response (c, "200 OK", PROM_CONTENT_TYPE, "", text, len, head);
  free (text);
  return r;
}

/* The request (NUL-terminated in c->req, headers complete): choose the
 * answer.  Only the request line matters; headers are ignored.
 */
static int
answer (struct metrics_conn *c)
{
  char *line = c->req, *sp1, *sp2, *end, *q;
  const char *target, *version;
  bool head;

  end = strpbrk (line, "\r\n");
  if (end != NULL)
    *end = '\0';
  sp1 = strchr (line, ' ');
  if (sp1 == NULL)
    return set_error (c, "400 Bad Request", "");
  *sp1 = '\0';
  target = sp1 + 1;
  sp2 = strchr (target, ' ');
  if (sp2 == NULL)
    return set_error (c, "400 Bad Request", "");
  *sp2 = '\0';
  version = sp2 + 1;
  if (strncmp (version, "HTTP/1.", 7) != 0 || strchr (version, ' ') != NULL)
    return set_error (c, "400 Bad Request", "");
  if (strcmp (line, "GET") == 0)
    head = false;
  else if (strcmp (line, "HEAD") == 0)
    head = true;
  else
    return set_error (c, "405 Method Not Allowed", "Allow: GET, HEAD\r\n");
  if ((q = strchr (sp1 + 1, '?')) != NULL)
    *q = '\0';
  if (strcmp (target, "/metrics") != 0)
    return set_error (c, "404 Not Found", "");
  return set_metrics (c, head);
}

/* Have the headers ended (an empty line)? */
static bool
request_complete (const struct metrics_conn *c)
{
  return strstr (c->req, "\r\n\r\n") != NULL ||
    strstr (c->req, "\n\n") != NULL;
}

static void
conn_write (struct metrics_conn *c)
{
  while (c->resp_off < c->resp_len) {
    ssize_t n = send (c->fd, c->resp + c->resp_off,
                      c->resp_len - c->resp_off, MSG_NOSIGNAL);

    if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return;                   /* the watcher calls again */
    if (n == -1 && errno == EINTR)
      continue;
    if (n <= 0) {
      conn_free (c);            /* the client went away */
      return;
    }
    c->resp_off += (size_t) n;
  }
  shutdown (c->fd, SHUT_WR);
  if (!c->linger) {
    conn_free (c);
    return;
  }
  c->draining = true;
  ev_io_stop (c->m->srv->loop, &c->io);
  ev_io_set (&c->io, c->fd, EV_READ);
  ev_io_start (c->m->srv->loop, &c->io);
}

/* After an error answer: discard input until the client closes, at most
 * METRICS_MAX_DRAIN_BYTES (the deadline bounds the time).
 */
static void
conn_drain (struct metrics_conn *c)
{
  char buf[4096];
  ssize_t n;

  for (;;) {
    n = recv (c->fd, buf, sizeof buf, 0);
    if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return;
    if (n == -1 && errno == EINTR)
      continue;
    if (n <= 0 || (c->drained_bytes += (size_t) n) > METRICS_MAX_DRAIN_BYTES) {
      conn_free (c);
      return;
    }
  }
}

static void
conn_read (struct metrics_conn *c)
{
  struct ev_loop *loop = c->m->srv->loop;
  size_t room;
  ssize_t n;

  for (;;) {
    room = sizeof c->req - 1 - c->req_len;
    if (room == 0) {
      if (set_error (c, "431 Request Header Fields Too Large", "") < 0) {
        conn_free (c);
        return;
      }
      break;
    }
    n = recv (c->fd, c->req + c->req_len, room, 0);
    if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return;
    if (n == -1 && errno == EINTR)
      continue;
    if (n <= 0) {
      conn_free (c);            /* closed before a whole request */
      return;
    }
    c->req_len += (size_t) n;
    c->req[c->req_len] = '\0';
    if (memchr (c->req, '\0', c->req_len) != NULL) {
      if (set_error (c, "400 Bad Request", "") < 0) {
        conn_free (c);
        return;
      }
      break;
    }
    if (request_complete (c)) {
      if (answer (c) < 0) {
        conn_free (c);
        return;
      }
      break;
    }
  }
  ev_io_stop (loop, &c->io);
  ev_io_set (&c->io, c->fd, EV_WRITE);
  ev_io_start (loop, &c->io);
  conn_write (c);
}

static void
conn_cb (struct ev_loop *loop, ev_io *w, int revents)
{
  struct metrics_conn *c = w->data;

  (void) loop; (void) revents;
  if (c->draining)
    conn_drain (c);
  else if (c->resp == NULL)
    conn_read (c);
  else
    conn_write (c);
}

/* ---- accepting ---- */

static void
listeners_watch (struct metrics *m, bool on)
{
  struct metrics_listener *l;

  for (l = m->listeners; l; l = l->next) {
    if (on)
      ev_io_start (m->srv->loop, &l->io);
    else
      ev_io_stop (m->srv->loop, &l->io);
  }
}

static void
retry_cb (struct ev_loop *loop, ev_timer *w, int revents)
{
  (void) loop; (void) revents;
  listeners_watch (w->data, true);
}

static void
accept_cb (struct ev_loop *loop, ev_io *w, int revents)
{
  struct metrics_listener *l = w->data;
  struct metrics *m = l->m;
  struct metrics_conn *c;
  int fd;

  (void) revents;
  for (;;) {
    fd = accept4 (l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd == -1) {
      int e = errno;

      if (e == EAGAIN || e == EWOULDBLOCK)
        return;
      if (e == EINTR || e == ECONNABORTED)
        continue;
      log_debug ("metrics: %s: accept: %s", l->display, strerror (e));
      if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
        /* The connection stays pending: do not spin on it. */
        listeners_watch (m, false);
        ev_timer_stop (loop, &m->retry);
        ev_timer_set (&m->retry, METRICS_ACCEPT_RETRY_S, 0);
        ev_timer_start (loop, &m->retry);
      }
      return;
    }
    if (m->nr_conns >= METRICS_MAX_CONNS ||
        (c = calloc (1, sizeof *c)) == NULL) {
      log_debug ("metrics: %s: too many connections, one refused",
                 l->display);
      close (fd);
      continue;
    }
    c->m = m;
    c->fd = fd;
    c->next = m->conns;
    if (m->conns)
      m->conns->prev = c;
    m->conns = c;
    m->nr_conns++;
    ev_io_init (&c->io, conn_cb, fd, EV_READ);
    c->io.data = c;
    ev_timer_init (&c->deadline, deadline_cb, METRICS_TIMEOUT_S, 0);
    c->deadline.data = c;
    ev_io_start (loop, &c->io);
    ev_timer_start (loop, &c->deadline);
  }
}

/* listen_add_fn: opaque is the metrics. */
static int
add_listener (void *opaque, int fd, int family, const char *display,
              const char *unix_path)
{
  struct metrics *m = opaque;
  struct metrics_listener *l = calloc (1, sizeof *l);

  (void) family;
  if (l == NULL || (l->display = strdup (display)) == NULL ||
      (unix_path && (l->unix_path = strdup (unix_path)) == NULL)) {
    if (l)
      free (l->display);
    free (l);
    close (fd);
    return -ENOMEM;
  }
  l->m = m;
  l->fd = fd;
  ev_io_init (&l->io, accept_cb, fd, EV_READ);
  l->io.data = l;
  l->next = m->listeners;
  m->listeners = l;
  return 0;
}

int
metrics_open (struct server *srv)
{
  const char *addr = srv->cfg->server.metrics_listen;
  struct metrics_listener *l;
  struct metrics *m;
  char *unix_addr = NULL;
  int r;

  if (addr == NULL)
    return 0;
  if ((m = calloc (1, sizeof *m)) == NULL) {
    log_error ("metrics_listen: out of memory");
    return -ENOMEM;
  }
  m->srv = srv;
  ev_timer_init (&m->retry, retry_cb, METRICS_ACCEPT_RETRY_S, 0);
  m->retry.data = m;
  srv->metrics = m;
  if (addr[0] == '/') {         /* a bare path: a Unix socket */
    if (asprintf (&unix_addr, "unix:%s", addr) < 0) {
      log_error ("metrics_listen: out of memory");
      return -ENOMEM;
    }
    addr = unix_addr;
  }
  r = listen_bind_address (addr, add_listener, m);
  free (unix_addr);
  if (r < 0) {
    log_error ("metrics_listen = %s: cannot listen there",
               srv->cfg->server.metrics_listen);
    return r;
  }
  for (l = m->listeners; l; l = l->next) {
    ev_io_start (srv->loop, &l->io);
    log_info ("metrics: serving GET /metrics on %s", l->display);
  }
  return 0;
}

void
metrics_close (struct server *srv)
{
  struct metrics *m = srv->metrics;

  if (m == NULL)
    return;
  if (srv->loop)
    ev_timer_stop (srv->loop, &m->retry);
  while (m->conns)
    conn_free (m->conns);
  while (m->listeners) {
    struct metrics_listener *l = m->listeners;

    m->listeners = l->next;
    if (srv->loop)
      ev_io_stop (srv->loop, &l->io);
    close (l->fd);
    if (l->unix_path)
      unlink (l->unix_path);
    free (l->unix_path);
    free (l->display);
    free (l);
  }
  free (m);
  srv->metrics = NULL;
}
