/* SPDX-License-Identifier: BSD-3-Clause */
/* uri.c — the NBD URIs (RFC: the NBD URI specification) that clients use
 * to reach this server's exports, for --print-uri.
 *
 * WHAT: one URI per export, built from the first listener:
 *   nbd://HOST:PORT/EXPORT              a TCP listener
 *   nbd+unix:///EXPORT?socket=PATH      a Unix-socket listener
 * and the "s" forms (nbds://, nbds+unix://) when the export can only be
 * used over TLS ([server] tls = require, or the export's tls = require).
 * HOST is the address the socket is bound to, or "localhost" for the
 * wildcard addresses (0.0.0.0, ::), as nbdkit prints it.
 * WHY: nbdkit --print-uri users script "start the server, read the URI,
 * hand it to the client"; with several exports each needs its own URI.
 * INVARIANTS: reads the bound address with getsockname, so activated
 * sockets (systemd) and ":0" ports print what clients really reach; a Unix
 * socket nbdcached created is named by its final path (listen.c binds a
 * temporary name and renames it).
 * Characters outside RFC 3986's unreserved set (and "/" in the socket
 * path) are percent-encoded.
 * THREADS AND LOCKS: loop thread, at start-up.
 * FAILURE: -errno (no listener, out of memory); nothing is printed then.
 * NOT HERE: the --run $uri (main.c), which always names the plain form.
 */
#include <config.h>

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>

#include "log.h"
#include "server.h"

/* Append s to fp, percent-encoding all but unreserved chars (and keep). */
static void
put_encoded (FILE *fp, const char *s, const char *keep)
{
  for (; *s; s++) {
    unsigned char ch = *s;

    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
        (ch >= '0' && ch <= '9') || strchr ("-._~", ch) ||
        (keep && strchr (keep, ch)))
      fputc (ch, fp);
    else
      fprintf (fp, "%%%02X", ch);
  }
}

static bool
export_needs_tls (const struct server *srv, const struct export *exp)
{
  return srv->cfg->server.tls == CONFIG_TLS_REQUIRE ||
         (exp->cfg && exp->cfg->tls_required);
}

/* The URI of exp through listener l: 0 and *out (malloc'd), or -errno. */
static int
uri_of (const struct server *srv, const struct listener *l,
        const struct export *exp, char **out)
{
  struct sockaddr_storage ss;
  socklen_t sslen = sizeof ss;
  const char *s = export_needs_tls (srv, exp) ? "s" : "";
  char *buf = NULL;
  size_t len = 0;
  FILE *fp;

  if (getsockname (l->fd, (struct sockaddr *) &ss, &sslen) == -1)
    return -errno;
  if ((fp = open_memstream (&buf, &len)) == NULL)
    return -errno;
  if (ss.ss_family == AF_UNIX) {
    const struct sockaddr_un *sun = (const struct sockaddr_un *) &ss;
    fprintf (fp, "nbd%s+unix:///", s);
    put_encoded (fp, exp->name, NULL);
    fputs ("?socket=", fp);
    /* Bound under a temporary name and renamed (listen.c): the final
     * name is the listener's.
     */
    put_encoded (fp, l->unix_path ? l->unix_path : sun->sun_path, "/");
  }
  else {
    char host[NI_MAXHOST], port[NI_MAXSERV];
    bool any;

    if (getnameinfo ((struct sockaddr *) &ss, sslen, host, sizeof host,
                     port, sizeof port, NI_NUMERICHOST | NI_NUMERICSERV)) {
      fclose (fp);
      free (buf);
      return -EINVAL;
    }
    any = ss.ss_family == AF_INET6
      ? memcmp (&((struct sockaddr_in6 *) &ss)->sin6_addr, &in6addr_any,
                sizeof in6addr_any) == 0
      : ((struct sockaddr_in *) &ss)->sin_addr.s_addr == htonl (INADDR_ANY);
    fprintf (fp, any || ss.ss_family != AF_INET6 ? "nbd%s://%s:%s/"
                                                 : "nbd%s://[%s]:%s/",
             s, any ? "localhost" : host, port);
    put_encoded (fp, exp->name, NULL);
  }
  if (fclose (fp) == EOF) {
    free (buf);
    return -ENOMEM;
  }
  *out = buf;
  return 0;
}

int
uri_print_all (const struct server *srv, FILE *fp)
{
  size_t i;
  int r;

  if (srv->listeners == NULL) {
    log_error ("--print-uri: no listening socket");
    return -ENOTSOCK;
  }
  for (i = 0; i < srv->nr_exports; i++) {
    char *uri;

    if ((r = uri_of (srv, srv->listeners, srv->exports[i], &uri)) < 0) {
      log_error ("--print-uri: %s", strerror (-r));
      return r;
    }
    fprintf (fp, "%s\n", uri);
    free (uri);
  }
  return fflush (fp) == EOF ? -errno : 0;
}
