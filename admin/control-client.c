/* SPDX-License-Identifier: BSD-3-Clause */
/* control-client.c — nbdcache's side of nbdcached's control socket.
 *
 * WHAT: finds the control socket (--socket PATH, or `control_socket` in
 * the [server] section of the nbdcached config file given with -c or the
 * default one), connects to it, sends the one request line, and hands the
 * answer back line by line.  The protocol (nbdcache(8),
 * server/control-server.c):
 * the client sends ONE line ("stats\n", "stats NAME\n", "flush NAME\n",
 * "reload\n");
 * the server answers JSON lines and closes the connection.
 * WHY: `nbdcache stats`, `flush` and `reload` share everything up to the
 * first byte of the answer, including the messages an admin needs when
 * the server is not there.
 * INVARIANTS:
 * - A line handed out is NUL-terminated, without its "\n", and no longer
 *   than CONTROL_MAX_LINE_BYTES (a longer one is an error, not a crash).
 * - A connection problem is logged once, naming the socket's path.
 * - Writes never raise SIGPIPE (MSG_NOSIGNAL).
 * THREADS AND LOCKS: one thread; the state is the caller's struct control.
 * FAILURE: 0 or -errno; -ETIMEDOUT when the server says nothing within the
 * caller's timeout, -EPROTO for an answer that is not lines of text.
 * NOT HERE: what the lines mean (stats.c, flush.c); the server side
 * (server/control-server.c).
 */
#include <config.h>

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "admin.h"
#include "clock.h"
#include "config-file.h"
#include "log.h"

#define CONTROL_MAX_LINE_BYTES (16u << 20) /* 16 MiB: thousands of exports */
#define CONTROL_READ_BYTES 65536u

struct control {
  int fd;
  char *path;                   /* for messages */
  char *buf;                    /* bytes received, not handed out yet */
  size_t start, len, cap;       /* buf[start, start + len) is pending */
  size_t consumed;              /* the last line handed out, to drop */
  bool eof;
};

int
control_socket_path (const char *socket_path, const char *config_path,
                     char **out)
{
  struct config *cfg = NULL;
  char *p;
  int r;

  if (socket_path != NULL) {
    if ((p = strdup (socket_path)) == NULL)
      return -ENOMEM;
    *out = p;
    return 0;
  }
  if (config_path == NULL)
    config_path = CONTROL_DEFAULT_CONFIG;
  if ((r = config_load (config_path, &cfg)) < 0) {
    if (r == -ENOENT)
      log_error ("cannot read the config file %s: %s; give the control "
                 "socket with --socket PATH or the config with -c CONFIG",
                 config_path, strerror (-r));
    else
      log_error ("the config file %s is not usable (see above)",
                 config_path);
    return r;
  }
  if (cfg->server.control_socket == NULL) {
    log_error ("%s has no control socket: add `control_socket = PATH` to "
               "its [server] section and restart nbdcached, or give "
               "--socket PATH", config_path);
    config_free (cfg);
    return -ENOENT;
  }
  p = strdup (cfg->server.control_socket);
  config_free (cfg);
  if (p == NULL)
    return -ENOMEM;
  *out = p;
  return 0;
}

static const char *
connect_hint (int e)
{
  switch (e) {
  case ENOENT:
    return " (is nbdcached running, with this control_socket in its "
      "config?)";
  case ECONNREFUSED:
    return " (nothing listens there: nbdcached is not running, or it "
      "was stopped without removing the socket)";
  case EACCES: case EPERM:
    return " (the socket's permissions: run as root or as the user "
      "nbdcached runs as)";
  case ENOTSOCK:
    return " (that file is not a socket)";
  default:
    return "";
  }
}

/* Send all of buf; 0 or -errno. */
static int
send_all (int fd, const char *buf, size_t len)
{
  while (len > 0) {
    ssize_t n = send (fd, buf, len, MSG_NOSIGNAL);

    if (n < 0) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    buf += n;
    len -= (size_t) n;
  }
  return 0;
}

int
control_client_open (const char *path, const char *request,
                     struct control **out)
{
  struct sockaddr_un sun = { .sun_family = AF_UNIX };
  struct control *c;
  int e, r;

  if (strlen (path) >= sizeof sun.sun_path) {
    log_error ("control socket %s: the path is longer than %zu bytes, the "
               "limit of a Unix socket address", path,
               sizeof sun.sun_path - 1);
    return -ENAMETOOLONG;
  }
  memcpy (sun.sun_path, path, strlen (path) + 1);

  c = calloc (1, sizeof *c);
  if (c == NULL || (c->path = strdup (path)) == NULL) {
    free (c);
    return -ENOMEM;
  }
  c->fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c->fd < 0) {
    e = errno;
    log_error ("socket: %s", strerror (e));
    r = -e;
    goto err;
  }
  if (connect (c->fd, (struct sockaddr *) &sun, sizeof sun) < 0) {
    e = errno;
    log_error ("cannot connect to the control socket %s: %s%s", path,
               strerror (e), connect_hint (e));
    r = -e;
    goto err;
  }
  if ((r = send_all (c->fd, request, strlen (request))) < 0) {
    log_error ("control socket %s: sending the request: %s", path,
               strerror (-r));
    goto err;
  }
  /* No shutdown (SHUT_WR) here: a server may take the end of our side
   * as the client going away (and cancel a flush).
   */
  *out = c;
  return 0;

 err:
  control_client_close (c);
  return r;
}

static int64_t
now_ms (void)
{
  return (int64_t) clock_now_ms ();
}

/* Read more bytes into c->buf, waiting until deadline_ms (-1: forever).
 * 0 (some bytes or EOF) or -errno.
 */
static int
fill (struct control *c, int64_t deadline_ms)
{
  struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
  ssize_t n;
  int timeout, e;

  if (c->start > 0) {           /* keep the pending bytes at the front */
    memmove (c->buf, c->buf + c->start, c->len);
    c->start = 0;
  }
  if (c->cap - c->len < CONTROL_READ_BYTES) {
    size_t cap = c->len + CONTROL_READ_BYTES + 1;
    char *b;

    if (cap > CONTROL_MAX_LINE_BYTES + CONTROL_READ_BYTES + 1) {
      log_error ("control socket %s: a line of the answer is longer than "
                 "%u bytes", c->path, CONTROL_MAX_LINE_BYTES);
      return -EPROTO;
    }
    if ((b = realloc (c->buf, cap)) == NULL)
      return -ENOMEM;
    c->buf = b;
    c->cap = cap;
  }
  for (;;) {
    timeout = -1;
    if (deadline_ms >= 0) {
      int64_t left = deadline_ms - now_ms ();

      if (left <= 0) {
        log_error ("control socket %s: no answer from nbdcached in time",
                   c->path);
        return -ETIMEDOUT;
      }
      timeout = left > 60000 ? 60000 : (int) left;
    }
    if (poll (&pfd, 1, timeout) < 0) {
      if (errno == EINTR)
        continue;
      e = errno;
      log_error ("control socket %s: poll: %s", c->path, strerror (e));
      return -e;
    }
    if (pfd.revents == 0)
      continue;                 /* the deadline is checked above */
    n = read (c->fd, c->buf + c->len, c->cap - c->len - 1);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN)
        continue;
      e = errno;
      log_error ("control socket %s: reading the answer: %s", c->path,
                 strerror (e));
      return -e;
    }
    if (n == 0)
      c->eof = true;
    c->len += (size_t) n;
    return 0;
  }
}

int
control_read_line (struct control *c, int timeout_ms, char **line)
{
  int64_t deadline = timeout_ms < 0 ? -1 : now_ms () + timeout_ms;
  size_t scanned = 0;
  char *nl;
  int r;

  c->start += c->consumed;
  c->len -= c->consumed;
  c->consumed = 0;
  for (;;) {
    nl = c->len > scanned
      ? memchr (c->buf + c->start + scanned, '\n', c->len - scanned) : NULL;
    if (nl != NULL)
      break;
    scanned = c->len;
    if (c->eof) {
      if (c->len == 0)
        return 0;
      /* A last line without "\n": take it (the protocol ends lines, but
       * a truncated answer is reported by its parser, not here).
       */
      c->buf[c->start + c->len] = '\0';
      if (memchr (c->buf + c->start, '\0', c->len) != NULL)
        goto binary;
      *line = c->buf + c->start;
      c->consumed = c->len;
      return 1;
    }
    if (c->len > CONTROL_MAX_LINE_BYTES) {
      log_error ("control socket %s: a line of the answer is longer than "
                 "%u bytes", c->path, CONTROL_MAX_LINE_BYTES);
      return -EPROTO;
    }
    if ((r = fill (c, deadline)) < 0)
      return r;
  }
  *nl = '\0';
  if (memchr (c->buf + c->start, '\0', (size_t) (nl - (c->buf + c->start)))
      != NULL)
    goto binary;
  *line = c->buf + c->start;
  c->consumed = (size_t) (nl - (c->buf + c->start)) + 1;
  return 1;

 binary:
  log_error ("control socket %s: the answer is not text (is this "
             "nbdcached's control socket?)", c->path);
  return -EPROTO;
}

const char *
control_path (const struct control *c)
{
  return c->path;
}

void
control_client_close (struct control *c)
{
  if (c == NULL)
    return;
  if (c->fd >= 0)
    close (c->fd);
  free (c->buf);
  free (c->path);
  free (c);
}

/* ---- the options both commands take ---- */

int
control_connect_args (const char *socket_path, const char *config_path,
                      const char *request, struct control **out)
{
  char *path;
  int r;

  if ((r = control_socket_path (socket_path, config_path, &path)) < 0)
    return r;
  r = control_client_open (path, request, out);
  free (path);
  return r;
}

bool
control_name_ok (const char *name)
{
  const unsigned char *p;

  for (p = (const unsigned char *) name; *p != '\0'; p++)
    if (*p < 0x20 || *p == 0x7f)
      return false;
  return true;
}
