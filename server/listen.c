/* SPDX-License-Identifier: BSD-3-Clause */
/* listen.c — listening sockets: TCP (IPv4/IPv6), Unix, socket activation.
 *
 * WHAT: turns listen addresses ("unix:PATH", "HOST:PORT", "[V6]:PORT",
 * ":PORT"; port 0 = ephemeral) or systemd-style inherited sockets
 * (LISTEN_PID / LISTEN_FDS, fds from 3) into non-blocking listeners, and
 * accepts connections on the loop thread.
 * WHY: nbd-client, qemu and libnbd reach servers every one of these ways.
 * INVARIANTS: every listener fd is non-blocking and close-on-exec; a Unix
 * socket path we bound is unlinked when the listener closes.
 * THREADS: open before the loop runs; accept on the loop thread.
 * FAILURE: a bad address or a failed bind is a start-up error (logged with
 * the address); a failed accept is logged and the listener lives on.
 * Running out of fds (EMFILE, ENFILE) or kernel memory (ENOBUFS, ENOMEM)
 * leaves the pending connection in the backlog, so the listener stays
 * readable and a level-triggered watcher would call accept again at once,
 * forever: instead every listener is paused, the episode is logged once
 * (and its end once, with the number of failures), and accepting resumes
 * when a connection closes (listen_resume, from server_conn_gone) or after
 * a backoff timer (ACCEPT_BACKOFF_MIN_S doubling to ACCEPT_BACKOFF_MAX_S),
 * whichever comes first — fds also free up outside this server.
 * NOT HERE: what happens on a connection (conn.c).
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "log.h"
#include "server.h"

#define ACCEPT_BACKOFF_MIN_S 0.1
#define ACCEPT_BACKOFF_MAX_S 1.0

static void
start_watchers (struct server *srv, bool on)
{
  struct listener *l;

  for (l = srv->listeners; l; l = l->next) {
    if (on)
      ev_io_start (srv->loop, &l->io);
    else
      ev_io_stop (srv->loop, &l->io);
  }
}

/* accept failed for lack of a resource: stop accepting for a while. */
static void
pause_accepting (struct listener *l, int e)
{
  struct server *srv = l->srv;

  srv->accept_failures++;
  if (!srv->accept_episode) {
    srv->accept_episode = true;
    srv->accept_backoff_s = ACCEPT_BACKOFF_MIN_S;
    log_error ("%s: accept: %s; not accepting until a connection closes "
               "(retrying every %.1f to %.1f s)", l->display, strerror (e),
               ACCEPT_BACKOFF_MIN_S, ACCEPT_BACKOFF_MAX_S);
  }
  srv->accept_paused = true;
  start_watchers (srv, false);
  ev_timer_stop (srv->loop, &srv->accept_timer);
  ev_timer_set (&srv->accept_timer, srv->accept_backoff_s, 0);
  ev_timer_start (srv->loop, &srv->accept_timer);
  srv->accept_backoff_s *= 2;
  if (srv->accept_backoff_s > ACCEPT_BACKOFF_MAX_S)
    srv->accept_backoff_s = ACCEPT_BACKOFF_MAX_S;
}

void
listen_resume (struct server *srv)
{
  if (!srv->accept_paused || srv->stopping)
    return;
  srv->accept_paused = false;
  ev_timer_stop (srv->loop, &srv->accept_timer);
  start_watchers (srv, true);
}

static void
accept_timer_cb (struct ev_loop *loop, ev_timer *w, int revents)
{
  listen_resume (w->data);
}

static void
accept_cb (struct ev_loop *loop, ev_io *w, int revents)
{
  struct listener *l = w->data;
  struct sockaddr_storage ss;
  socklen_t sslen = sizeof ss;
  char peer[128];
  int fd;

  fd = accept4 (l->fd, (struct sockaddr *) &ss, &sslen,
                SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd == -1) {
    int e = errno;

    if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM)
      pause_accepting (l, e);
    else if (e != EAGAIN && e != EWOULDBLOCK && e != EINTR &&
             e != ECONNABORTED)
      log_error_ratelimited ("%s: accept: %s", l->display, strerror (e));
    return;
  }
  if (l->srv->accept_episode) {
    log_info ("%s: accepting connections again (%" PRIu64 " failed "
              "accept calls while out of resources)", l->display,
              l->srv->accept_failures);
    l->srv->accept_episode = false;
    l->srv->accept_failures = 0;
  }
  if (l->srv->stopping) {
    close (fd);
    return;
  }
  if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) {
    char host[NI_MAXHOST], serv[NI_MAXSERV];
    int one = 1;

    setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (getnameinfo ((struct sockaddr *) &ss, sslen, host, sizeof host,
                     serv, sizeof serv, NI_NUMERICHOST | NI_NUMERICSERV) == 0)
      snprintf (peer, sizeof peer, ss.ss_family == AF_INET6 ? "[%s]:%s"
                                                            : "%s:%s",
                host, serv);
    else
      snprintf (peer, sizeof peer, "tcp client");
  }
  else
    snprintf (peer, sizeof peer, "%s client", l->display);
  conn_accept (l->srv, fd, fd, ss.ss_family != AF_UNIX, peer,
               (struct sockaddr *) &ss, sslen);
}

/* listen_add_fn for the NBD listeners: opaque is the server. */
static int
add_listener (void *opaque, int fd, int family, const char *display,
              const char *unix_path)
{
  struct server *srv = opaque;
  struct listener *l = calloc (1, sizeof *l);
  struct sockaddr_storage ss;
  socklen_t sslen = sizeof ss;

  if (l == NULL || (l->display = strdup (display)) == NULL ||
      (unix_path && (l->unix_path = strdup (unix_path)) == NULL)) {
    if (l)
      free (l->display);
    free (l);
    close (fd);
    return -ENOMEM;
  }
  l->fd = fd;
  l->family = family;
  l->is_unix = family == AF_UNIX;
  l->srv = srv;
  if (!l->is_unix &&
      getsockname (fd, (struct sockaddr *) &ss, &sslen) == 0)
    l->port = ntohs (ss.ss_family == AF_INET6
                     ? ((struct sockaddr_in6 *) &ss)->sin6_port
                     : ((struct sockaddr_in *) &ss)->sin_port);
  ev_io_init (&l->io, accept_cb, fd, EV_READ);
  l->io.data = l;
  /* Keep the configured order: append. */
  if (srv->listeners == NULL)
    srv->listeners = l;
  else {
    struct listener *t = srv->listeners;
    while (t->next)
      t = t->next;
    t->next = l;
  }
  return 0;
}

static int
open_unix (listen_add_fn *add, void *opaque, const char *path)
{
  struct sockaddr_un sun = { .sun_family = AF_UNIX };
  struct stat st;
  char display[sizeof sun.sun_path + 8];
  char tmp[sizeof sun.sun_path + 32];
  int fd;

  if (strlen (path) >= sizeof sun.sun_path) {
    log_error ("unix:%s: socket path too long", path);
    return -ENAMETOOLONG;
  }
  /* The socket appears under its name only once it listens: bind a
   * temporary name in the same directory, listen, then rename.  A client
   * that waits for the path to exist (as scripts and tests do) can never
   * connect in the window between bind and listen and be refused.  If the
   * temporary name does not fit, bind the name itself. */
  if (snprintf (tmp, sizeof tmp, "%s.%ld.tmp", path, (long) getpid ())
      >= (int) sizeof sun.sun_path)
    snprintf (tmp, sizeof tmp, "%s", path);
  strcpy (sun.sun_path, tmp);
  /* A stale socket from an earlier run would make bind fail. */
  if (lstat (path, &st) == 0 && S_ISSOCK (st.st_mode))
    unlink (path);
  if (strcmp (tmp, path) != 0 && lstat (tmp, &st) == 0 &&
      S_ISSOCK (st.st_mode))
    unlink (tmp);
  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd == -1 ||
      bind (fd, (struct sockaddr *) &sun, sizeof sun) == -1) {
    int e = errno;
    log_error ("unix:%s: %s", path, strerror (e));
    if (fd >= 0)
      close (fd);
    return -e;
  }
  if (listen (fd, SOMAXCONN) == -1 ||
      (strcmp (tmp, path) != 0 && rename (tmp, path) == -1)) {
    int e = errno;
    log_error ("unix:%s: %s", path, strerror (e));
    close (fd);
    unlink (tmp);               /* ours: we bound it */
    return -e;
  }
  snprintf (display, sizeof display, "unix:%s", path);
  return add (opaque, fd, AF_UNIX, display, path);
}

static int
open_tcp (listen_add_fn *add, void *opaque, const char *addr)
{
  char host[256], port[32];
  const char *colon;
  struct addrinfo hints = {
    .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
    .ai_flags = AI_PASSIVE | AI_NUMERICSERV,
  }, *res, *ai;
  int r, nr_bound = 0, last_err = 0, bound_port = 0;

  if (addr[0] == '[') {
    const char *close_br = strchr (addr, ']');
    if (close_br == NULL || close_br[1] != ':') {
      log_error ("listen address '%s': expected [IPV6]:PORT", addr);
      return -EINVAL;
    }
    snprintf (host, sizeof host, "%.*s", (int) (close_br - addr - 1), addr + 1);
    colon = close_br + 1;
  }
  else {
    colon = strrchr (addr, ':');
    if (colon == NULL) {
      log_error ("listen address '%s': expected HOST:PORT or unix:PATH", addr);
      return -EINVAL;
    }
    snprintf (host, sizeof host, "%.*s", (int) (colon - addr), addr);
  }
  snprintf (port, sizeof port, "%s", colon + 1);
  if (port[0] == '\0' || strspn (port, "0123456789") != strlen (port)) {
    log_error ("listen address '%s': bad port", addr);
    return -EINVAL;
  }

  r = getaddrinfo (host[0] ? host : NULL, port, &hints, &res);
  if (r != 0) {
    log_error ("listen address '%s': %s", addr, gai_strerror (r));
    return -EINVAL;
  }
  for (ai = res; ai; ai = ai->ai_next) {
    int fd = socket (ai->ai_family,
                     ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                     ai->ai_protocol);
    int one = 1;
    struct sockaddr_storage bound;
    socklen_t boundlen = sizeof bound;
    char display[300], h[NI_MAXHOST], p[NI_MAXSERV];

    if (fd == -1) {
      last_err = errno;
      continue;
    }
    /* Port 0: the first family picks a port, the others reuse it, so
     * ":0" means one port on both IPv4 and IPv6.
     */
    if (bound_port != 0) {
      if (ai->ai_family == AF_INET6)
        ((struct sockaddr_in6 *) ai->ai_addr)->sin6_port = htons (bound_port);
      else if (ai->ai_family == AF_INET)
        ((struct sockaddr_in *) ai->ai_addr)->sin_port = htons (bound_port);
    }
    setsockopt (fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ai->ai_family == AF_INET6)
      setsockopt (fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind (fd, ai->ai_addr, ai->ai_addrlen) == -1 ||
        listen (fd, SOMAXCONN) == -1 ||
        getsockname (fd, (struct sockaddr *) &bound, &boundlen) == -1) {
      last_err = errno;
      log_debug ("listen address '%s': %m", addr);
      close (fd);
      continue;
    }
    if (getnameinfo ((struct sockaddr *) &bound, boundlen, h, sizeof h,
                     p, sizeof p, NI_NUMERICHOST | NI_NUMERICSERV) != 0)
      snprintf (h, sizeof h, "?");
    snprintf (display, sizeof display,
              ai->ai_family == AF_INET6 ? "[%s]:%s" : "%s:%s", h, p);
    if ((r = add (opaque, fd, ai->ai_family, display, NULL)) < 0) {
      freeaddrinfo (res);
      return r;
    }
    if (strcmp (port, "0") == 0 && bound_port == 0)
      bound_port = atoi (p);
    nr_bound++;
  }
  freeaddrinfo (res);
  if (nr_bound == 0) {
    log_error ("listen address '%s': %s", addr,
               strerror (last_err ? last_err : EADDRNOTAVAIL));
    return -(last_err ? last_err : EADDRNOTAVAIL);
  }
  return 0;
}

int
listen_bind_address (const char *addr, listen_add_fn *add, void *opaque)
{
  if (strncmp (addr, "unix:", 5) == 0)
    return open_unix (add, opaque, addr + 5);
  return open_tcp (add, opaque, addr);
}

int
listen_open_address (struct server *srv, const char *addr)
{
  return listen_bind_address (addr, add_listener, srv);
}

/* systemd socket activation: LISTEN_PID must be us; fds 3..3+N-1. */
int
listen_socket_activation (struct server *srv, bool *activated)
{
  const char *pid_s = getenv ("LISTEN_PID");
  const char *fds_s = getenv ("LISTEN_FDS");
  char *end;
  long pid, nfds, i;
  int r;

  *activated = false;
  if (pid_s == NULL || fds_s == NULL)
    return 0;
  pid = strtol (pid_s, &end, 10);
  if (*end != '\0' || pid != (long) getpid ())
    return 0;
  nfds = strtol (fds_s, &end, 10);
  if (*end != '\0' || nfds < 1 || nfds > 64) {
    log_error ("LISTEN_FDS=%s: expected a number from 1 to 64", fds_s);
    return -EINVAL;
  }
  unsetenv ("LISTEN_PID");
  unsetenv ("LISTEN_FDS");
  unsetenv ("LISTEN_FDNAMES");
  for (i = 0; i < nfds; i++) {
    int fd = 3 + i;
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof ss;
    char display[64];

    if (getsockname (fd, (struct sockaddr *) &ss, &sslen) == -1) {
      log_error ("socket activation: fd %d: %m", fd);
      return -EBADF;
    }
    fcntl (fd, F_SETFL, fcntl (fd, F_GETFL) | O_NONBLOCK);
    fcntl (fd, F_SETFD, FD_CLOEXEC);
    snprintf (display, sizeof display, "activated fd %d", fd);
    if ((r = add_listener (srv, fd, ss.ss_family, display, NULL)) < 0)
      return r;
  }
  *activated = true;
  return 0;
}

void
listen_start (struct server *srv)
{
  struct listener *l;

  ev_timer_init (&srv->accept_timer, accept_timer_cb, ACCEPT_BACKOFF_MIN_S, 0);
  srv->accept_timer.data = srv;
  for (l = srv->listeners; l; l = l->next) {
    ev_io_start (srv->loop, &l->io);
    log_info ("listening on %s", l->display);
  }
}

void
listen_close_all (struct server *srv)
{
  if (srv->loop)
    ev_timer_stop (srv->loop, &srv->accept_timer);
  srv->accept_paused = false;
  while (srv->listeners) {
    struct listener *l = srv->listeners;

    srv->listeners = l->next;
    if (srv->loop)
      ev_io_stop (srv->loop, &l->io);
    close (l->fd);
    if (l->unix_path)
      unlink (l->unix_path);
    free (l->unix_path);
    free (l->display);
    free (l);
  }
}
