/* SPDX-License-Identifier: BSD-3-Clause */
/* flush.c — nbdcache flush: write an export's dirty data back, now (and
 * nbdcache detach, which does that first).
 *
 * WHAT: `nbdcache flush (--socket PATH | -c CONFIG) EXPORT` sends
 * "flush EXPORT" to nbdcached's control socket, which drains the export
 * (ncache_drain: every dirty block written back at full speed, the backing
 * store flushed).  The server reports JSON lines:
 *   {"event":"progress","remaining_bytes":R,"total_bytes":T}  (~250 ms)
 *   {"event":"done","result":"ok"}
 *   {"event":"done","result":"error","error":"..."}
 * and closes.  On a terminal, a progress bar with the rate and an ETA is
 * drawn on stderr; a final line says how it ended.  `nbdcache detach`
 * sends "detach EXPORT" and reads the same answer: the engine writes the
 * dirty data back, then takes the cache away (ncache_export_detach).
 * WHY: before detaching a cache device, backing up the backing store, or
 * maintenance, an admin needs the backing store complete and a clear
 * "done" (or a clear failure), without stopping the server.
 * INVARIANTS:
 * - Exit 0 only after {"event":"done","result":"ok"}: the server says the
 *   export was clean and the backing store flushed.  A connection that
 *   ends without a "done" event is never success.
 * - The progress bar never goes to a pipe (progress.c) and is erased
 *   before any other line.
 * - An event this tool does not know is ignored (newer servers may add
 *   some); a line that is not a JSON object is a protocol error.
 * THREADS AND LOCKS: one thread.
 * FAILURE: exit 0 clean; 1 the server reported an error (a backing write
 * or flush failed: the data stays dirty and is retried; no such export;
 * a read-only export); 2 usage error, no server at the socket, a garbled
 * answer, or the connection closed before the end.
 * NOT HERE: the draining (ncache_drain), the socket (control-client.c).
 */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json.h>

#include "admin.h"
#include "log.h"
#include "progress.h"

enum { OPT_SOCKET = 256 };

static const struct option flush_options[] = {
  { "socket", required_argument, NULL, OPT_SOCKET },
  { "config", required_argument, NULL, 'c' },
  { "verbose", no_argument, NULL, 'v' },
  { "help", no_argument, NULL, 'h' },
  { NULL, 0, NULL, 0 },
};

#define FLUSH_USAGE \
  "Usage: nbdcache %s (--socket PATH | -c CONFIG) EXPORT\n"

struct flush_state {
  const char *verb;             /* "flush" or "detach" */
  const char *export;
  struct progress progress;
  char label[128];
  bool started;                 /* a progress event arrived */
  double t0;                    /* seconds, when the request was sent */
  double t_first;               /* the first progress event */
  uint64_t first_remaining;     /* remaining_bytes then */
  uint64_t total;               /* the largest total_bytes seen */
};

static double
now_s (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static bool
u64_field (struct json_object *o, const char *key, uint64_t *v)
{
  struct json_object *f;

  if (!json_object_object_get_ex (o, key, &f) ||
      !json_object_is_type (f, json_type_int) ||
      json_object_get_int64 (f) < 0)
    return false;
  *v = json_object_get_uint64 (f);
  return true;
}

/* The string field with control characters replaced, or dflt. */
static const char *
str_field (struct json_object *o, const char *key, const char *dflt,
           char *buf, size_t size)
{
  struct json_object *f;
  size_t i;

  if (!json_object_object_get_ex (o, key, &f) ||
      !json_object_is_type (f, json_type_string))
    return dflt;
  snprintf (buf, size, "%s", json_object_get_string (f));
  for (i = 0; buf[i] != '\0'; i++)
    if ((unsigned char) buf[i] < 0x20 || buf[i] == 0x7f)
      buf[i] = '?';
  return buf;
}

static void
fmt_duration (double s, char *buf, size_t size)
{
  uint64_t t = s < 0 ? 0 : (uint64_t) (s + 0.5);

  if (t >= 3600)
    snprintf (buf, size, "%" PRIu64 ":%02u:%02u", t / 3600,
              (unsigned) (t / 60 % 60), (unsigned) (t % 60));
  else
    snprintf (buf, size, "%u:%02u", (unsigned) (t / 60), (unsigned) (t % 60));
}

static void
on_progress (struct flush_state *st, uint64_t remaining, uint64_t total)
{
  char left[32], all[32], rate_s[32], eta[32];
  double now = now_s (), elapsed, rate = 0;

  if (!st->started) {
    st->started = true;
    st->t_first = now;
    st->first_remaining = remaining;
    progress_start (&st->progress, st->label, total);
    admin_set_progress (&st->progress);
  }
  if (total > st->total)
    st->total = total;
  /* The bar counts from the total at the start; writes during the flush
   * can make remaining grow past it.
   */
  st->progress.total = st->total > 0 ? st->total : 1;

  elapsed = now - st->t_first;
  if (elapsed > 0.5 && st->first_remaining > remaining)
    rate = (double) (st->first_remaining - remaining) / elapsed;
  fmt_bytes (remaining, left, sizeof left);
  fmt_bytes (st->total, all, sizeof all);
  if (rate > 0) {
    fmt_bytes ((uint64_t) rate, rate_s, sizeof rate_s);
    fmt_duration ((double) remaining / rate, eta, sizeof eta);
  }
  else {
    snprintf (rate_s, sizeof rate_s, "-");
    snprintf (eta, sizeof eta, "--:--");
  }
  progress_draw (&st->progress,
                 st->total > remaining ? st->total - remaining : 0,
                 "%s of %s left, %s/s, ETA %s", left, all, rate_s, eta);
  log_debug ("flush %s: %" PRIu64 " of %" PRIu64 " bytes left", st->export,
             remaining, total);
}

#define FLUSH_READ_ON (-1)

/* Handle one line of the answer: FLUSH_READ_ON, or the exit status. */
static int
on_line (struct flush_state *st, const char *sock, const char *line)
{
  struct json_object *o, *ev;
  char buf[1024], res[64], took[32], was[32];
  const char *event, *result;
  uint64_t remaining, total;
  int status = FLUSH_READ_ON;

  o = json_tokener_parse (line);
  if (o == NULL || !json_object_is_type (o, json_type_object)) {
    log_error ("control socket %s: the answer is not JSON: %.80s", sock,
               line);
    json_object_put (o);
    return EXIT_TROUBLE;
  }
  if (!json_object_object_get_ex (o, "event", &ev)) {
    if (json_object_object_get_ex (o, "error", NULL)) {
      progress_end (&st->progress);
      fprintf (stderr, "nbdcache %s: export '%s': nbdcached: %s\n",
               st->verb, st->export,
               str_field (o, "error", "(no message)", buf, sizeof buf));
      status = EXIT_DAMAGED;
    }
    else {
      log_error ("control socket %s: an answer line without \"event\": "
                 "%.80s", sock, line);
      status = EXIT_TROUBLE;
    }
    goto out;
  }
  event = str_field (o, "event", "", buf, sizeof buf);

  if (strcmp (event, "progress") == 0) {
    if (!u64_field (o, "remaining_bytes", &remaining) ||
        !u64_field (o, "total_bytes", &total)) {
      log_error ("control socket %s: a progress event without its "
                 "numbers: %.80s", sock, line);
      status = EXIT_TROUBLE;
      goto out;
    }
    on_progress (st, remaining, total);
  }
  else if (strcmp (event, "done") == 0) {
    progress_end (&st->progress);
    admin_set_progress (NULL);
    fmt_duration (now_s () - st->t0, took, sizeof took);
    result = str_field (o, "result", "", res, sizeof res);
    if (strcmp (result, "ok") == 0) {
      fmt_bytes (st->total, was, sizeof was);
      printf ("export '%s': %s (%s dirty at the start, flushed in %s)\n",
              st->export, strcmp (st->verb, "detach") == 0
              ? "detached from its cache, clean" : "clean",
              st->started ? was : "nothing", took);
      status = EXIT_OK;
    }
    else if (strcmp (result, "error") == 0) {
      fprintf (stderr, "nbdcache %s: export '%s': %s after %s: "
               "%s\n", st->verb, st->export,
               strcmp (st->verb, "detach") == 0 ? "not detached"
               : "not clean", took,
               str_field (o, "error", "(no message)", buf, sizeof buf));
      status = EXIT_DAMAGED;
    }
    else {
      log_error ("control socket %s: a done event with result '%s'", sock,
                 result);
      status = EXIT_TROUBLE;
    }
  }
  else
    log_debug ("flush %s: ignoring event '%s'", st->export, event);

 out:
  json_object_put (o);
  return status;
}

/* flush and detach: the same answer, another verb. */
static int
run (int argc, char **argv, const char *verb)
{
  const char *sock = NULL, *config = NULL;
  struct flush_state st = { 0 };
  struct control *ctl = NULL;
  char *request = NULL, *line;
  int c, r, status = EXIT_TROUBLE;

  while ((c = getopt_long (argc, argv, "c:vh", flush_options, NULL)) != -1) {
    switch (c) {
    case OPT_SOCKET: sock = optarg; break;
    case 'c': config = optarg; break;
    case 'v': log_set_level (LOG_LEVEL_DEBUG); break;
    case 'h': printf (FLUSH_USAGE, verb); return EXIT_OK;
    default:
      fprintf (stderr, FLUSH_USAGE, verb);
      return EXIT_TROUBLE;
    }
  }
  if (optind + 1 != argc) {
    fprintf (stderr, "nbdcache %s: %s\n" FLUSH_USAGE, verb,
             optind == argc ? "which export? (EXPORT is missing)"
             : "too many arguments (one EXPORT)", verb);
    return EXIT_TROUBLE;
  }
  if (sock != NULL && config != NULL) {
    fprintf (stderr, "nbdcache %s: give --socket or -c, not both\n"
             FLUSH_USAGE, verb, verb);
    return EXIT_TROUBLE;
  }
  st.verb = verb;
  st.export = argv[optind];
  if (*st.export == '\0' || !control_name_ok (st.export)) {
    fprintf (stderr, "nbdcache %s: '%s' is not an export name\n", verb,
             st.export);
    return EXIT_TROUBLE;
  }
  snprintf (st.label, sizeof st.label, "%s %.100s",
            strcmp (verb, "detach") == 0 ? "detaching" : "flushing",
            st.export);

  /* "detach -- NAME": a name may hold " -- " (control-live.c). */
  if (asprintf (&request, "%s %s%s\n", verb,
                strcmp (verb, "detach") == 0 ? "-- " : "", st.export) < 0) {
    log_error ("out of memory");
    return EXIT_TROUBLE;
  }
  st.t0 = now_s ();
  if (control_connect_args (sock, config, request, &ctl) < 0)
    goto out;

  /* No timeout: a flush takes as long as the backing store needs, and
   * progress events come only while it moves.  ^C stops waiting.
   */
  while ((r = control_read_line (ctl, -1, &line)) > 0) {
    status = on_line (&st, control_path (ctl), line);
    if (status != FLUSH_READ_ON)
      goto out;
  }
  status = EXIT_TROUBLE;
  if (r == 0) {
    progress_end (&st.progress);
    log_error ("control socket %s: the server closed the connection before "
               "the %s of '%s' finished; it may not be clean",
               control_path (ctl), verb, st.export);
  }

 out:
  progress_end (&st.progress);
  admin_set_progress (NULL);
  if (fflush (stdout) != 0 && status == EXIT_OK)
    status = EXIT_TROUBLE;
  control_client_close (ctl);
  free (request);
  return status;
}

int
cmd_flush (int argc, char **argv)
{
  return run (argc, argv, "flush");
}

int
cmd_detach (int argc, char **argv)
{
  return run (argc, argv, "detach");
}
