/* SPDX-License-Identifier: BSD-3-Clause */
/* fuzz-server.c — an in-process nbdcached for the protocol harnesses (see
 * fuzz-server.h).  Also defines server_stop / server_conn_gone, which
 * server/main.c defines in the real server, so every harness links.
 * FAILURE: setup failures abort (a broken harness, not a finding).
 */
#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "server.h"
#include "fuzz-server.h"

static struct server srv;
static bool srv_ready;

void
server_stop (struct server *s)
{
  s->stopping = true;
}

void
server_conn_gone (struct server *s)
{
  (void) s;
}

static void
quiet (enum log_level level, const char *msg)
{
  (void) level; (void) msg;
}

static void
done_async_cb (struct ev_loop *loop, ev_async *w, int revents)
{
  (void) loop; (void) revents;
  worker_pool_reap (w->data);
}

static void
prepare_cb (struct ev_loop *loop, ev_prepare *w, int revents)
{
  (void) loop; (void) revents;
  conn_run_resumes (w->data);
  conn_sweep (w->data);
}

static void
setup (void)
{
  char dir[] = "/tmp/nbdcache-fuzz-XXXXXX";
  char path[256];
  FILE *fp;

  log_set_sink (quiet);
  log_set_level (LOG_LEVEL_ERROR);
  if (mkdtemp (dir) == NULL)
    abort ();
  snprintf (path, sizeof path, "%s/nbdcached.conf", dir);
  fp = fopen (path, "w");
  if (fp == NULL)
    abort ();
  fprintf (fp,
           "[server]\nworkers = 2\ndefault_export = one\n"
           "[cache c]\npath = %s/cache.img\nsize = 8M\ncreate = yes\n"
           "bucket_size = 64K\ndirect = no\n"
           "[export one]\nbacking = %s/one.img\nsize = 2M\ncache = c\n"
           "mode = writeback\ndescription = fuzz\n"
           "[export two]\nbacking = %s/two.img\nsize = 1M\n",
           dir, dir, dir);
  fclose (fp);
  if (config_load (path, &srv.cfg) < 0 || export_table_open (&srv) < 0)
    abort ();
  srv.loop = ev_default_loop (EVFLAG_AUTO);
  pthread_mutex_init (&srv.done_lock, NULL);
  ev_async_init (&srv.done_async, done_async_cb);
  srv.done_async.data = &srv;
  ev_async_start (srv.loop, &srv.done_async);
  ev_prepare_init (&srv.prepare, prepare_cb);
  srv.prepare.data = &srv;
  ev_prepare_start (srv.loop, &srv.prepare);
  if (worker_pool_create (&srv, 2, &srv.pool) < 0)
    abort ();
  srv_ready = true;
}

/* The client side of one session. */
struct client {
  ev_io io;
  ev_prepare idle;
  int fd;
  const unsigned char *prefix, *data;
  size_t plen, size, sent;      /* sent counts prefix then data */
  bool eof_sent;
};

static void
client_update (struct client *cl)
{
  int events = EV_READ;

  if (cl->sent < cl->plen + cl->size)
    events |= EV_WRITE;
  if ((cl->io.events & (EV_READ | EV_WRITE)) != events) {
    ev_io_stop (srv.loop, &cl->io);
    ev_io_set (&cl->io, cl->fd, events);
    ev_io_start (srv.loop, &cl->io);
  }
}

static void
client_cb (struct ev_loop *loop, ev_io *w, int revents)
{
  struct client *cl = w->data;
  static char sink[65536];
  (void) loop;

  if (revents & EV_READ)
    while (read (cl->fd, sink, sizeof sink) > 0)
      ;
  if (revents & EV_WRITE) {
    while (cl->sent < cl->plen + cl->size) {
      const unsigned char *p;
      size_t n;
      ssize_t w2;

      if (cl->sent < cl->plen) {
        p = cl->prefix + cl->sent;
        n = cl->plen - cl->sent;
      }
      else {
        p = cl->data + (cl->sent - cl->plen);
        n = cl->plen + cl->size - cl->sent;
      }
      w2 = send (cl->fd, p, n, MSG_NOSIGNAL);
      if (w2 <= 0)
        break;
      cl->sent += w2;
    }
  }
  client_update (cl);
}

/* Before the loop would block: is the server idle with all input read? */
static void
idle_cb (struct ev_loop *loop, ev_prepare *w, int revents)
{
  struct client *cl = w->data;
  struct conn *c = srv.conns;
  unsigned owed;
  int inq = 0;
  (void) loop; (void) revents;

  if (c == NULL || cl->sent < cl->plen + cl->size)
    return;
  if (ioctl (c->rfd, FIONREAD, &inq) < 0 || inq > 0 || srv.resumes ||
      c->out_head)
    return;
  owed = (c->payload_req != NULL) + (c->after_discard != NULL);
  if (c->in_flight != owed)
    return;
  if (owed > 0 && c->phase >= PHASE_TRANSMISSION) {
    /* The input ended inside a WRITE payload (or bytes to discard): the
     * connection would wait forever for bytes that never come, even after
     * EOF (issue 14, item 2).  Cut it, as a stalled-request timeout would;
     * no worker holds any of its requests.
     */
    conn_close (c);
    return;
  }
  if (cl->eof_sent || !c->reading)
    return;
  shutdown (cl->fd, SHUT_WR);
  cl->eof_sent = true;
}

void
fuzz_server_session (const void *prefix, size_t plen,
                     const uint8_t *data, size_t size)
{
  struct client cl = { .prefix = prefix, .plen = plen,
                       .data = data, .size = size };
  int sv[2];

  if (!srv_ready)
    setup ();
  if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
                  sv) < 0)
    abort ();
  cl.fd = sv[1];
  ev_io_init (&cl.io, client_cb, sv[1], EV_READ | EV_WRITE);
  cl.io.data = &cl;
  ev_io_start (srv.loop, &cl.io);
  ev_prepare_init (&cl.idle, idle_cb);
  ev_set_priority (&cl.idle, EV_MINPRI);  /* after the server's prepare */
  cl.idle.data = &cl;
  ev_prepare_start (srv.loop, &cl.idle);

  conn_accept (&srv, sv[0], sv[0], false, "fuzz", NULL, 0);
  while (srv.conns || srv.zombies)
    ev_run (srv.loop, EVRUN_ONCE);

  ev_io_stop (srv.loop, &cl.io);
  ev_prepare_stop (srv.loop, &cl.idle);
  close (sv[1]);
}
