/* SPDX-License-Identifier: BSD-3-Clause */
/* watch.c — nbdcache stats --watch: a refreshing view of every export.
 *
 * WHAT: every interval asks the control socket for the stats and shows,
 * per export, the hit ratio (over the last interval and overall), IOPS
 * and throughput per second computed from the counter deltas between two
 * answers, dirty bytes with a bar toward the writeback target, the
 * writeback rate (measured and the controller's), and the backing state
 * (connected, or disconnected since when, for a remote store).  On a
 * terminal the screen is redrawn top-like; otherwise each refresh prints
 * one line per export of key=value fields (for logs, awk, grep).
 * WHY: `nbdcache stats` is a snapshot of totals; what an admin wants to
 * see while something runs is rates.
 * INVARIANTS:
 * - A rate needs two answers: the first refresh shows "-" for it, as
 *   does a counter that went backwards (the server restarted) or an
 *   export absent from the previous answer.
 * - Strings from the server are sanitised (stats_str) before printing.
 * THREADS AND LOCKS: one thread; SIGINT and SIGTERM set a flag that ends
 * the loop at the next wait (the cursor is shown again on a terminal).
 * FAILURE: exit 2 when the first answer cannot be had (logged), 1 when
 * the server answers an error (the export is gone); a later refresh
 * without an answer is logged and retried at the next interval (the
 * server may be restarting).
 * NOT HERE: the socket and the request (stats.c, control.c).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json.h>

#include "admin.h"
#include "log.h"

#define WATCH_BAR_CELLS 20

static volatile sig_atomic_t stop_requested;

static void
on_stop (int sig)
{
  (void) sig;
  stop_requested = 1;
}

static double
now_s (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/* The export of prev named name, or NULL. */
static struct json_object *
find_export (struct json_object *prev, const char *name)
{
  struct json_object *exports, *e, *n;
  size_t i, nr;

  if (prev == NULL || !json_object_object_get_ex (prev, "exports", &exports))
    return NULL;
  nr = json_object_array_length (exports);
  for (i = 0; i < nr; i++) {
    e = json_object_array_get_idx (exports, i);
    if (json_object_object_get_ex (e, "name", &n) &&
        json_object_is_type (n, json_type_string) &&
        strcmp (json_object_get_string (n), name) == 0)
      return e;
  }
  return NULL;
}

/* The growth of counter key per second between p and e; false when it
 * cannot be known (no previous answer, a field missing, a counter that
 * went backwards).
 */
static bool
rate (struct json_object *e, struct json_object *p, const char *key,
      double dt_s, double *out)
{
  uint64_t a, b;

  if (p == NULL || dt_s <= 0 || !stats_u64 (e, key, &b) ||
      !stats_u64 (p, key, &a) || b < a)
    return false;
  *out = (double) (b - a) / dt_s;
  return true;
}

/* The sum of the rates of keys (NULL-terminated). */
static bool
rate_sum (struct json_object *e, struct json_object *p, const char *const *keys,
          double dt_s, double *out)
{
  double sum = 0, r;

  for (; *keys != NULL; keys++) {
    if (!rate (e, p, *keys, dt_s, &r))
      return false;
    sum += r;
  }
  *out = sum;
  return true;
}

/* Hits over hits + misses as a percentage: overall, or over the interval
 * (p != NULL).  false when there were no reads to count.
 */
static bool
hit_ratio (struct json_object *e, struct json_object *p, double *out)
{
  uint64_t h, m, ph = 0, pm = 0;

  if (!stats_u64 (e, "hits", &h) || !stats_u64 (e, "misses", &m))
    return false;
  if (p != NULL && (!stats_u64 (p, "hits", &ph) ||
                    !stats_u64 (p, "misses", &pm) || h < ph || m < pm))
    return false;
  if ((h - ph) + (m - pm) == 0)
    return false;
  *out = (double) (h - ph) * 100.0 / (double) ((h - ph) + (m - pm));
  return true;
}

static const char *
fmt_pct (bool ok, double v, char buf[32])
{
  if (!ok)
    return "-";
  snprintf (buf, 32, "%.1f%%", v);
  return buf;
}

static const char *
fmt_rate (bool ok, double v, char buf[32])
{
  if (!ok)
    return "-";
  snprintf (buf, 32, "%.0f", v);
  return buf;
}

static const char *
fmt_bytes_rate (bool ok, double v, char buf[32])
{
  char b[24];

  if (!ok)
    return "-";
  fmt_bytes ((uint64_t) (v + 0.5), b, sizeof b);
  snprintf (buf, 32, "%s/s", b);
  return buf;
}

/* "connected", "disconnected since TIME", or the driver for a local
 * store; "?" when the server sent nothing.
 */
static const char *
backing_state (struct json_object *e, char *buf, size_t size)
{
  struct json_object *b;
  uint64_t down, connected, connections;
  char since[64];
  struct tm tm;
  time_t t;

  if (!json_object_object_get_ex (e, "backing", &b) ||
      !json_object_is_type (b, json_type_object))
    return "?";
  if (!stats_u64 (b, "connections", &connections)) {
    if (stats_str (b, "driver", since, sizeof since) == NULL)
      return "local";
    snprintf (buf, size, "local (%s)", since);
    return buf;
  }
  if (stats_u64 (b, "down_since", &down) && down != 0) {
    t = (time_t) down;
    if (localtime_r (&t, &tm) != NULL &&
        strftime (since, sizeof since, "%Y-%m-%d %H:%M:%S", &tm) > 0)
      snprintf (buf, size, "disconnected since %s", since);
    else
      snprintf (buf, size, "disconnected since %" PRIu64, down);
    return buf;
  }
  if (stats_u64 (b, "connected", &connected))
    snprintf (buf, size, "connected (%" PRIu64 "/%" PRIu64 ")", connected,
              connections);
  else
    snprintf (buf, size, "connected");
  return buf;
}

/* What one refresh shows of one export. */
struct watch_row {
  char name[256], mode[64], cache[256], backing[128];
  bool has_cache;
  bool hit_now_ok, hit_all_ok;
  double hit_now, hit_all;
  bool reads_ok, writes_ok, other_ok, rbytes_ok, wbytes_ok, wb_ok;
  double reads, writes, other, rbytes, wbytes, wb;
  bool dirty_ok, target_ok, wb_rate_ok;
  uint64_t dirty, target, wb_rate;
};

/* Export e of this answer against the same export in prev, the answer
 * dt_s seconds before (NULL: none).
 */
static void
row_of (struct json_object *e, struct json_object *prev, double dt_s,
        struct watch_row *r)
{
  struct json_object *p;
  char state[128];

  static const char *const other[] = { "flushes", "trims", "zeroes",
    "caches", "extents", NULL };

  memset (r, 0, sizeof *r);
  if (stats_str (e, "name", r->name, sizeof r->name) == NULL)
    snprintf (r->name, sizeof r->name, "?");
  if (stats_str (e, "mode", r->mode, sizeof r->mode) == NULL)
    snprintf (r->mode, sizeof r->mode, "?");
  r->has_cache = stats_str (e, "cache", r->cache, sizeof r->cache) != NULL;
  p = find_export (prev, r->name);
  snprintf (r->backing, sizeof r->backing, "%s",
            backing_state (e, state, sizeof state));
  r->hit_all_ok = hit_ratio (e, NULL, &r->hit_all);
  r->hit_now_ok = p != NULL && hit_ratio (e, p, &r->hit_now);
  r->reads_ok = rate (e, p, "reads", dt_s, &r->reads);
  r->writes_ok = rate (e, p, "writes", dt_s, &r->writes);
  r->other_ok = rate_sum (e, p, other, dt_s, &r->other);
  r->rbytes_ok = rate (e, p, "bytes_read", dt_s, &r->rbytes);
  r->wbytes_ok = rate (e, p, "bytes_written", dt_s, &r->wbytes);
  r->wb_ok = rate (e, p, "writeback_bytes", dt_s, &r->wb);
  r->dirty_ok = stats_u64 (e, "dirty_bytes", &r->dirty);
  r->target_ok = stats_u64 (e, "writeback_target_bytes", &r->target);
  r->wb_rate_ok = stats_u64 (e, "writeback_rate", &r->wb_rate);
}

/* "[#####-----] 25% of 1 GiB", or "" without a target. */
static void
dirty_bar (const struct watch_row *r, char *buf, size_t size)
{
  char bar[WATCH_BAR_CELLS + 1], t[32];
  double frac;
  int i, full;

  if (!r->dirty_ok || !r->target_ok || r->target == 0) {
    snprintf (buf, size, "(no writeback target)");
    return;
  }
  frac = (double) r->dirty / (double) r->target;
  full = (int) (MIN (frac, 1.0) * WATCH_BAR_CELLS + 0.5);
  for (i = 0; i < WATCH_BAR_CELLS; i++)
    bar[i] = i < full ? '#' : '-';
  bar[WATCH_BAR_CELLS] = '\0';
  fmt_bytes (r->target, t, sizeof t);
  snprintf (buf, size, "[%s] %.0f%% of target %s", bar, frac * 100.0, t);
}

/* The top-like screen: home, clear, a header, four lines per export. */
static void
draw_screen (struct json_object *doc, struct json_object *prev, double dt_s,
             double interval_s)
{
  struct json_object *exports;
  struct watch_row r;
  char a[32], b[32], c[32], d[32], f[32], bar[128], stamp[64];
  time_t t = time (NULL);
  struct tm tm;
  size_t i, n;

  if (localtime_r (&t, &tm) == NULL ||
      strftime (stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm) == 0)
    snprintf (stamp, sizeof stamp, "?");
  printf ("\033[H\033[2J");
  printf ("nbdcache stats --watch: every %.1f s, %s (Ctrl-C to quit)\n\n",
          interval_s, stamp);
  json_object_object_get_ex (doc, "exports", &exports);
  n = json_object_array_length (exports);
  if (n == 0)
    printf ("no exports\n");
  for (i = 0; i < n; i++) {
    struct json_object *e = json_object_array_get_idx (exports, i);

    row_of (e, prev, dt_s, &r);
    printf ("export '%s'  %s", r.name, r.mode);
    if (r.has_cache)
      printf (" on cache '%s'", r.cache);
    printf ("  backing: %s\n", r.backing);
    printf ("  hit ratio %s now, %s overall\n",
            fmt_pct (r.hit_now_ok, r.hit_now, a),
            fmt_pct (r.hit_all_ok, r.hit_all, b));
    printf ("  IOPS read %s write %s other %s   throughput read %s "
            "write %s\n",
            fmt_rate (r.reads_ok, r.reads, c),
            fmt_rate (r.writes_ok, r.writes, d),
            fmt_rate (r.other_ok, r.other, f),
            fmt_bytes_rate (r.rbytes_ok, r.rbytes, bar),
            fmt_bytes_rate (r.wbytes_ok, r.wbytes, stamp));
    if (r.has_cache) {
      if (r.dirty_ok)
        fmt_bytes (r.dirty, a, sizeof a);
      dirty_bar (&r, bar, sizeof bar);
      if (r.wb_rate_ok)
        fmt_bytes (r.wb_rate, c, sizeof c);
      printf ("  dirty %s %s   writeback %s (limit %s/s)\n",
              r.dirty_ok ? a : "?", bar,
              fmt_bytes_rate (r.wb_ok, r.wb, b), r.wb_rate_ok ? c : "?");
    }
    printf ("\n");
  }
}

/* One key=value line per export. */
static void
print_lines (struct json_object *doc, struct json_object *prev, double dt_s)
{
  struct json_object *exports;
  struct watch_row r;
  char a[32], b[32], c[32], d[32], f[32], g[32], h[32], stamp[64];
  time_t t = time (NULL);
  struct tm tm;
  size_t i, n;

  if (gmtime_r (&t, &tm) == NULL ||
      strftime (stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
    snprintf (stamp, sizeof stamp, "?");
  json_object_object_get_ex (doc, "exports", &exports);
  n = json_object_array_length (exports);
  for (i = 0; i < n; i++) {
    struct json_object *e = json_object_array_get_idx (exports, i);

    row_of (e, prev, dt_s, &r);
    printf ("%s export=%s mode=%s hit_ratio=%s hit_ratio_now=%s "
            "reads/s=%s writes/s=%s other/s=%s read_bytes/s=%s "
            "written_bytes/s=%s", stamp, r.name, r.mode,
            fmt_pct (r.hit_all_ok, r.hit_all, a),
            fmt_pct (r.hit_now_ok, r.hit_now, b),
            fmt_rate (r.reads_ok, r.reads, c),
            fmt_rate (r.writes_ok, r.writes, d),
            fmt_rate (r.other_ok, r.other, f),
            fmt_rate (r.rbytes_ok, r.rbytes, g),
            fmt_rate (r.wbytes_ok, r.wbytes, h));
    if (r.has_cache)
      printf (" dirty_bytes=%s target_bytes=%s writeback_bytes/s=%s",
              r.dirty_ok ? (snprintf (a, sizeof a, "%" PRIu64, r.dirty), a)
              : "?",
              r.target_ok ? (snprintf (b, sizeof b, "%" PRIu64, r.target), b)
              : "?", fmt_rate (r.wb_ok, r.wb, c));
    /* The backing state has spaces: last, so a reader can take the rest
     * of the line.
     */
    printf (" backing=%s\n", r.backing);
  }
}

/* Wait interval_s seconds, or until a stop signal.  false when stopped. */
static bool
wait_interval (double interval_s)
{
  double end = now_s () + interval_s, left;

  while (!stop_requested && (left = end - now_s ()) > 0)
    poll (NULL, 0, (int) (left * 1000.0) + 1);
  return !stop_requested;
}

int
stats_watch (const char *sock, const char *config, const char *export,
             double interval_s, unsigned count)
{
  struct json_object *doc = NULL, *prev = NULL;
  struct sigaction sa, old_int, old_term;
  bool tty = isatty (STDOUT_FILENO);
  double t_prev = 0, t;
  unsigned done = 0;
  int status = EXIT_OK, r;

  memset (&sa, 0, sizeof sa);
  sa.sa_handler = on_stop;      /* no SA_RESTART: poll returns at once */
  sigemptyset (&sa.sa_mask);
  sigaction (SIGINT, &sa, &old_int);
  sigaction (SIGTERM, &sa, &old_term);
  if (tty)
    printf ("\033[?25l");       /* hide the cursor while redrawing */

  while (!stop_requested) {
    doc = NULL;
    r = stats_fetch (sock, config, export, &doc, NULL);
    t = now_s ();
    if (r == EXIT_DAMAGED) {
      json_object_put (doc);
      status = r;
      break;
    }
    if (r != EXIT_OK) {
      if (prev == NULL) {       /* never had an answer: give up */
        status = r;
        break;
      }
      /* Logged; try again at the next interval. */
    }
    else {
      if (tty)
        draw_screen (doc, prev, t - t_prev, interval_s);
      else
        print_lines (doc, prev, t - t_prev);
      if (fflush (stdout) != 0 || ferror (stdout)) {
        json_object_put (doc);
        status = EXIT_TROUBLE;  /* the reader went away */
        break;
      }
      json_object_put (prev);
      prev = doc;
      t_prev = t;
    }
    if (count != 0 && ++done >= count)
      break;
    if (!wait_interval (interval_s))
      break;
  }

  json_object_put (prev);
  if (tty) {
    printf ("\033[?25h");
    fflush (stdout);
  }
  sigaction (SIGINT, &old_int, NULL);
  sigaction (SIGTERM, &old_term, NULL);
  return status;
}
