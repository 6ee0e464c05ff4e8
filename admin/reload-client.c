/* SPDX-License-Identifier: BSD-3-Clause */
/* reload-client.c — nbdcache reload: make nbdcached re-read its config.
 *
 * WHAT: `nbdcache reload (--socket PATH | -c CONFIG)` sends "reload" to
 * nbdcached's control socket.  The server re-reads the config file it was
 * started with, applies what it can (server/reload.c) and answers one
 * JSON line: {"result":"ok","report":"…"} (the lines it logged: each
 * export added, removed or changed, keys that take effect at restart), or
 * {"error":"…"} (why nothing changed: FILE:LINE of a bad config, a cache
 * in use that was removed; or a reopen that failed).  The report goes to
 * stdout, an error to stderr.
 * WHY: the same as SIGHUP, but the admin sees the outcome and gets an
 * exit status, without reading the server's log.
 * INVARIANTS: exit 0 only after {"result":"ok"}.
 * THREADS AND LOCKS: one thread.
 * FAILURE: 1 the server refused the new config (the old one keeps
 * running) or a part of it failed; 2 usage error, no server at the
 * socket, a garbled answer.
 * NOT HERE: the reload itself (server/reload.c), the socket
 * (control-client.c).
 */
#include <config.h>

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json.h>

#include "admin.h"
#include "log.h"

enum { OPT_SOCKET = 256 };

static const struct option reload_options[] = {
  { "socket", required_argument, NULL, OPT_SOCKET },
  { "config", required_argument, NULL, 'c' },
  { "verbose", no_argument, NULL, 'v' },
  { "help", no_argument, NULL, 'h' },
  { NULL, 0, NULL, 0 },
};

#define RELOAD_USAGE \
  "Usage: nbdcache reload (--socket PATH | -c CONFIG)\n"

/* The string field s of o, or NULL. */
static const char *
string_of (struct json_object *o, const char *key)
{
  struct json_object *f;

  if (!json_object_object_get_ex (o, key, &f) ||
      !json_object_is_type (f, json_type_string))
    return NULL;
  return json_object_get_string (f);
}

/* Print text with control characters other than newlines replaced, and
 * a final newline if it lacks one.
 */
static void
print_text (FILE *fp, const char *prefix, const char *text)
{
  const char *p;

  for (p = text; *p; ) {
    size_t n = strcspn (p, "\n");
    size_t i;

    fputs (prefix, fp);
    for (i = 0; i < n; i++)
      fputc ((unsigned char) p[i] < 0x20 || p[i] == 0x7f ? '?' : p[i], fp);
    fputc ('\n', fp);
    p += n;
    if (*p == '\n')
      p++;
  }
}

int
cmd_reload (int argc, char **argv)
{
  const char *sock = NULL, *config = NULL, *text;
  struct json_object *o = NULL;
  struct control *ctl = NULL;
  char *line;
  int c, r, status = EXIT_TROUBLE;

  while ((c = getopt_long (argc, argv, "c:vh", reload_options, NULL)) != -1) {
    switch (c) {
    case OPT_SOCKET: sock = optarg; break;
    case 'c': config = optarg; break;
    case 'v': log_set_level (LOG_LEVEL_DEBUG); break;
    case 'h': printf (RELOAD_USAGE); return EXIT_OK;
    default:
      fprintf (stderr, RELOAD_USAGE);
      return EXIT_TROUBLE;
    }
  }
  if (optind != argc) {
    fprintf (stderr, "nbdcache reload: unexpected argument '%s'\n"
             RELOAD_USAGE, argv[optind]);
    return EXIT_TROUBLE;
  }
  if (sock != NULL && config != NULL) {
    fprintf (stderr, "nbdcache reload: give --socket or -c, not both\n"
             RELOAD_USAGE);
    return EXIT_TROUBLE;
  }
  if (control_connect_args (sock, config, "reload\n", &ctl) < 0)
    goto out;
  /* No timeout: opening a new cache device replays its journal. */
  r = control_read_line (ctl, -1, &line);
  if (r <= 0) {
    if (r == 0)
      log_error ("control socket %s: the server closed the connection "
                 "without an answer; the reload may or may not have "
                 "happened (see its log)", control_path (ctl));
    goto out;
  }
  o = json_tokener_parse (line);
  if (o == NULL || !json_object_is_type (o, json_type_object)) {
    log_error ("control socket %s: the answer is not JSON: %.80s",
               control_path (ctl), line);
    goto out;
  }
  if ((text = string_of (o, "error")) != NULL) {
    fprintf (stderr, "nbdcache reload: nbdcached refused or failed:\n");
    print_text (stderr, "  ", text);
    status = EXIT_DAMAGED;
  }
  else if ((text = string_of (o, "result")) != NULL &&
           strcmp (text, "ok") == 0) {
    text = string_of (o, "report");
    print_text (stdout, "", text ? text : "");
    status = EXIT_OK;
  }
  else
    log_error ("control socket %s: an answer without result or error: "
               "%.80s", control_path (ctl), line);

 out:
  json_object_put (o);
  if (fflush (stdout) != 0 && status == EXIT_OK)
    status = EXIT_TROUBLE;
  control_client_close (ctl);
  return status;
}
