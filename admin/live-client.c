/* SPDX-License-Identifier: BSD-3-Clause */
/* live-client.c — nbdcache set and attach: change a running export.
 *
 * WHAT: `nbdcache set (--socket PATH | -c CONFIG) EXPORT KEY=VALUE…`
 * sends "set KEY=VALUE … -- EXPORT" to nbdcached's control socket;
 * `nbdcache attach (--socket PATH | -c CONFIG) EXPORT [MODE]` sends
 * "attach[ mode=MODE] -- EXPORT".  The server answers one JSON line
 * (server/control-live.c): {"result":"ok","applied":[…],"mode":…,
 * "detached":…} or {"error":"…","applied":[…]}.  (nbdcache detach,
 * which streams progress like flush, is in flush.c.)
 * WHY: like bcache's sysfs cache_mode: switch a running export's mode or
 * tuning, or give a detached export its cache back, without a restart.
 * The config file is not rewritten: a restart serves its values again.
 * INVARIANTS: exit 0 only after {"result":"ok"}; on an error the pairs the
 * server applied before it are printed.
 * THREADS AND LOCKS: one thread.
 * FAILURE: exit 0 applied; 1 the server refused (the message on stderr);
 * 2 usage error, no server at the socket, a garbled answer.
 * NOT HERE: what a change does (common/cache/live.c).
 */
#include <config.h>

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json.h>

#include "admin.h"
#include "cache.h"
#include "log.h"

enum { OPT_SOCKET = 256 };

static const struct option live_options[] = {
  { "socket", required_argument, NULL, OPT_SOCKET },
  { "config", required_argument, NULL, 'c' },
  { "verbose", no_argument, NULL, 'v' },
  { "help", no_argument, NULL, 'h' },
  { NULL, 0, NULL, 0 },
};

#define SET_USAGE \
  "Usage: nbdcache set (--socket PATH | -c CONFIG) EXPORT KEY=VALUE...\n" \
  "  live keys: " NCACHE_LIVE_KEYS "\n"
#define ATTACH_USAGE \
  "Usage: nbdcache attach (--socket PATH | -c CONFIG) EXPORT [MODE]\n"

/* The "applied" array of an answer, as "a=1, b=2" in buf. */
static const char *
applied_list (struct json_object *o, char *buf, size_t size)
{
  struct json_object *a;
  size_t i, n, len = 0;

  buf[0] = '\0';
  if (!json_object_object_get_ex (o, "applied", &a) ||
      !json_object_is_type (a, json_type_array))
    return buf;
  n = json_object_array_length (a);
  for (i = 0; i < n && len < size; i++) {
    const char *s = json_object_get_string (json_object_array_get_idx (a, i));
    int k = snprintf (buf + len, size - len, "%s%s", i ? ", " : "",
                      s ? s : "?");

    if (k > 0)
      len += (size_t) k;
  }
  return buf;
}

/* Send request, read the one answer line; print what happened.  The exit
 * status.
 */
static int
ask (const char *cmd, const char *sock, const char *config,
     const char *export, const char *request)
{
  struct control *ctl = NULL;
  struct json_object *o = NULL;
  char msg[1024], mode[64], list[1024], *line;
  int r, status = EXIT_TROUBLE;

  if (control_connect_args (sock, config, request, &ctl) < 0)
    return EXIT_TROUBLE;
  /* No timeout: mode=none writes the dirty data back first. */
  r = control_read_line (ctl, -1, &line);
  if (r <= 0) {
    if (r == 0)
      log_error ("control socket %s: the server closed the connection "
                 "without an answer", control_path (ctl));
    goto out;
  }
  o = json_tokener_parse (line);
  if (o == NULL || !json_object_is_type (o, json_type_object)) {
    log_error ("control socket %s: the answer is not JSON: %.80s",
               control_path (ctl), line);
    goto out;
  }
  applied_list (o, list, sizeof list);
  if (stats_str (o, "error", msg, sizeof msg) != NULL) {
    fprintf (stderr, "nbdcache %s: export '%s': %s\n", cmd, export, msg);
    if (list[0])
      fprintf (stderr, "nbdcache %s: export '%s': applied before the "
               "error: %s\n", cmd, export, list);
    status = EXIT_DAMAGED;
    goto out;
  }
  if (stats_str (o, "mode", mode, sizeof mode) == NULL) {
    log_error ("control socket %s: an answer without a result: %.80s",
               control_path (ctl), line);
    goto out;
  }
  if (list[0])
    printf ("export '%s': %s; mode %s\n", export, list, mode);
  else
    printf ("export '%s': attached, mode %s (cold)\n", export, mode);
  status = EXIT_OK;

 out:
  json_object_put (o);
  if (fflush (stdout) != 0 && status == EXIT_OK)
    status = EXIT_TROUBLE;
  control_client_close (ctl);
  return status;
}

/* Options of set / attach: sock and config; the index of the first
 * argument, or -1 with the status in *status.
 */
static int
parse_options (int argc, char **argv, const char *usage, const char **sock,
               const char **config, int *status)
{
  int c;

  *sock = *config = NULL;
  while ((c = getopt_long (argc, argv, "+c:vh", live_options, NULL)) != -1) {
    switch (c) {
    case OPT_SOCKET: *sock = optarg; break;
    case 'c': *config = optarg; break;
    case 'v': log_set_level (LOG_LEVEL_DEBUG); break;
    case 'h':
      printf ("%s", usage);
      *status = EXIT_OK;
      return -1;
    default:
      fprintf (stderr, "%s", usage);
      *status = EXIT_TROUBLE;
      return -1;
    }
  }
  if (*sock != NULL && *config != NULL) {
    fprintf (stderr, "nbdcache %s: give --socket or -c, not both\n%s",
             argv[0], usage);
    *status = EXIT_TROUBLE;
    return -1;
  }
  if (optind >= argc || *argv[optind] == '\0' ||
      !control_name_ok (argv[optind])) {
    fprintf (stderr, "nbdcache %s: %s\n%s", argv[0],
             optind >= argc ? "which export? (EXPORT is missing)"
             : "that is not an export name", usage);
    *status = EXIT_TROUBLE;
    return -1;
  }
  return optind;
}

int
cmd_set (int argc, char **argv)
{
  const char *sock, *config, *export;
  char request[1100];
  size_t len;
  int i, status;

  if ((i = parse_options (argc, argv, SET_USAGE, &sock, &config,
                          &status)) < 0)
    return status;
  export = argv[i++];
  if (i >= argc) {
    fprintf (stderr, "nbdcache set: what to set? (KEY=VALUE is missing)\n"
             SET_USAGE);
    return EXIT_TROUBLE;
  }
  len = (size_t) snprintf (request, sizeof request, "set");
  for (; i < argc; i++) {
    const char *eq = strchr (argv[i], '=');

    if (eq == NULL || eq == argv[i] || strchr (argv[i], ' ') != NULL ||
        !control_name_ok (argv[i])) {
      fprintf (stderr, "nbdcache set: '%s' is not KEY=VALUE\n" SET_USAGE,
               argv[i]);
      return EXIT_TROUBLE;
    }
    len += (size_t) snprintf (request + len, sizeof request - len, " %s",
                              argv[i]);
  }
  len += (size_t) snprintf (request + len, sizeof request - len,
                            " -- %s\n", export);
  if (len >= sizeof request) {
    fprintf (stderr, "nbdcache set: the command is too long\n");
    return EXIT_TROUBLE;
  }
  return ask ("set", sock, config, export, request);
}

int
cmd_attach (int argc, char **argv)
{
  const char *sock, *config, *export, *mode = NULL;
  enum ncache_mode m;
  char request[1100];
  int i, status;

  if ((i = parse_options (argc, argv, ATTACH_USAGE, &sock, &config,
                          &status)) < 0)
    return status;
  export = argv[i++];
  if (i < argc)
    mode = argv[i++];
  if (i < argc || (mode != NULL &&
                   (ncache_mode_from_string (mode, &m) < 0 ||
                    m == NCACHE_MODE_NONE))) {
    fprintf (stderr, "nbdcache attach: %s\n" ATTACH_USAGE,
             i < argc ? "too many arguments"
             : "MODE is writeback, writethrough or writearound");
    return EXIT_TROUBLE;
  }
  if ((size_t) snprintf (request, sizeof request, "attach%s%s -- %s\n",
                         mode ? " mode=" : "", mode ? mode : "", export)
      >= sizeof request) {
    fprintf (stderr, "nbdcache attach: the command is too long\n");
    return EXIT_TROUBLE;
  }
  return ask ("attach", sock, config, export, request);
}
