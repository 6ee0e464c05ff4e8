/* SPDX-License-Identifier: BSD-3-Clause */
/* stats.c — nbdcache stats: a running nbdcached's counters.
 *
 * WHAT: `nbdcache stats (--socket PATH | -c CONFIG) [--json | --prometheus
 * | --watch [-n SECONDS] [--count N]] [EXPORT]` asks the control socket
 * for "stats" (or "stats EXPORT") and prints the answer as a table: per
 * export the mode, cache, backing store (for a remote one: connected, or
 * disconnected since when, and its reconnect counters), requests, hits
 * and misses with the hit ratio, bypasses, promotions, dirty data,
 * writeback and backing trims; per cache device the buckets, evictions,
 * GC, discards, journal group commits and the btree.  With --json the
 * server's JSON document is printed as it came (one line); with
 * --prometheus the same counters in the Prometheus text format (the
 * formatter nbdcached's metrics_listen uses, common/metrics/prom.c);
 * --watch is watch.c.
 * WHY: the admin's view of what the cache is doing, without a debugger
 * or a log level change.
 * INVARIANTS:
 * - Only what the server sent is printed; a field it did not send shows
 *   as "?" (an older or newer server), never as a made-up 0.
 * - In --json mode stdout gets exactly the server's document (valid JSON,
 *   checked before printing) and nothing else; in --prometheus mode
 *   only the exposition text.
 * - Strings from the server have control characters replaced before they
 *   reach a terminal.
 * THREADS AND LOCKS: one thread.
 * FAILURE: exit 0 printed; 1 the server answered {"error": ...} (for
 * example no such export); 2 usage error, no server at the socket, no
 * answer in STATS_TIMEOUT_MS, or an answer that is not the stats JSON.
 * NOT HERE: the socket (control-client.c); the counters (the engine,
 * server); the refreshing view (watch.c).
 */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json.h>

#include "admin.h"
#include "compiler.h"
#include "log.h"
#include "prom.h"

#define STATS_TIMEOUT_MS 30000
#define STATS_VERSION 1

enum { OPT_SOCKET = 256, OPT_JSON, OPT_PROMETHEUS, OPT_WATCH, OPT_COUNT };

static const struct option stats_options[] = {
  { "socket", required_argument, NULL, OPT_SOCKET },
  { "config", required_argument, NULL, 'c' },
  { "json", no_argument, NULL, OPT_JSON },
  { "prometheus", no_argument, NULL, OPT_PROMETHEUS },
  { "watch", no_argument, NULL, OPT_WATCH },
  { "interval", required_argument, NULL, 'n' },
  { "count", required_argument, NULL, OPT_COUNT },
  { "verbose", no_argument, NULL, 'v' },
  { "help", no_argument, NULL, 'h' },
  { NULL, 0, NULL, 0 },
};

#define STATS_USAGE \
  "Usage: nbdcache stats (--socket PATH | -c CONFIG)\n" \
  "         [--json | --prometheus | --watch [-n SECONDS] [--count N]] " \
  "[EXPORT]\n"

/* ---- reading fields ---- */

/* A non-negative integer field (admin.h). */
bool
stats_u64 (struct json_object *o, const char *key, uint64_t *v)
{
  struct json_object *f;

  if (!json_object_object_get_ex (o, key, &f) ||
      !json_object_is_type (f, json_type_int))
    return false;
  if (json_object_get_int64 (f) < 0)
    return false;               /* negative: not a counter */
  *v = json_object_get_uint64 (f);
  return true;
}

/* A string field with control characters replaced by '?'; NULL if absent
 * or not a string (admin.h).
 */
const char *
stats_str (struct json_object *o, const char *key, char *buf, size_t size)
{
  struct json_object *f;
  const char *s;
  size_t i;

  if (!json_object_object_get_ex (o, key, &f) ||
      !json_object_is_type (f, json_type_string))
    return NULL;
  s = json_object_get_string (f);
  snprintf (buf, size, "%s", s);
  for (i = 0; buf[i] != '\0'; i++)
    if ((unsigned char) buf[i] < 0x20 || buf[i] == 0x7f)
      buf[i] = '?';
  return buf;
}

/* The counter as a decimal, or "?". */
static const char *
num (struct json_object *o, const char *key, char buf[32])
{
  uint64_t v;

  if (!stats_u64 (o, key, &v))
    return "?";
  snprintf (buf, 32, "%" PRIu64, v);
  return buf;
}

/* The counter as a size ("12 MiB"), or "?". */
static const char *
size_of (struct json_object *o, const char *key, char buf[32])
{
  uint64_t v;

  if (!stats_u64 (o, key, &v))
    return "?";
  fmt_bytes (v, buf, 32);
  return buf;
}

/* part / whole as "N.N" (or "-" when whole is 0 or a field is absent). */
static const char *
ratio (struct json_object *o, const char *part, const char *whole,
       char buf[32])
{
  uint64_t p, w;

  if (!stats_u64 (o, part, &p) || !stats_u64 (o, whole, &w) || w == 0)
    return "-";
  snprintf (buf, 32, "%.1f", (double) p / (double) w);
  return buf;
}

/* ---- the table ---- */

/* The backing store line: its URI, and for a remote one whether it is
 * connected (or since when it is not) and the reconnect counters.
 */
static void
print_backing (struct json_object *bo)
{
  char uri[4096], since[64], a[32], b[32], c[32];
  uint64_t down, connected, connections;
  time_t t;
  struct tm tm;

  printf ("  backing       %s",
          stats_str (bo, "uri", uri, sizeof uri) ? uri : "?");
  if (!stats_u64 (bo, "connections", &connections)) {
    printf ("\n");             /* a local store: nothing more */
    return;
  }
  if (stats_u64 (bo, "down_since", &down) && down != 0) {
    t = (time_t) down;
    if (localtime_r (&t, &tm) != NULL &&
        strftime (since, sizeof since, "%Y-%m-%d %H:%M:%S %Z", &tm) > 0)
      printf (": disconnected since %s", since);
    else
      printf (": disconnected since %" PRIu64, down);
  }
  else
    printf (": connected");
  if (stats_u64 (bo, "connected", &connected))
    printf (" (%" PRIu64 " of %" PRIu64 " connections up)", connected,
            connections);
  printf ("\n");
  printf ("  remote        %s reconnect attempts, %s requests resent, "
          "%s timed out\n",
          num (bo, "reconnect_attempts", a), num (bo, "retried_requests", b),
          num (bo, "timed_out_requests", c));
}

static void
print_export (struct json_object *e)
{
  char name[256], mode[64], cache[256], a[32], b[32], c[32], d[32], f[32],
    g[32], h[32];
  struct json_object *ro, *bo, *det;
  const char *m, *cn;
  uint64_t hits, misses;
  bool detached;

  if (stats_str (e, "name", name, sizeof name) == NULL)
    snprintf (name, sizeof name, "?");
  m = stats_str (e, "mode", mode, sizeof mode);
  cn = stats_str (e, "cache", cache, sizeof cache);
  detached = json_object_object_get_ex (e, "detached", &det) &&
    json_object_get_boolean (det);
  printf ("export '%s': %s", name, m != NULL ? m : "?");
  if (cn != NULL)
    printf (detached ? " (detached from cache '%s')" : " on cache '%s'", cn);
  printf (", %s%s\n", size_of (e, "size_bytes", a),
          json_object_object_get_ex (e, "readonly", &ro) &&
          json_object_get_boolean (ro) ? ", read-only" : "");

  if (json_object_object_get_ex (e, "backing", &bo) &&
      json_object_is_type (bo, json_type_object))
    print_backing (bo);
  printf ("  requests      reads %s, writes %s, flushes %s, trims %s, "
          "zeroes %s, cache %s, extents %s\n",
          num (e, "reads", a), num (e, "writes", b), num (e, "flushes", c),
          num (e, "trims", d), num (e, "zeroes", f), num (e, "caches", g),
          num (e, "extents", h));
  printf ("  data          read %s, written %s, errors %s\n",
          size_of (e, "bytes_read", a), size_of (e, "bytes_written", b),
          num (e, "errors", c));
  if (cn == NULL)               /* mode none: the cache counters are 0 */
    return;

  if (stats_u64 (e, "hits", &hits) && stats_u64 (e, "misses", &misses) &&
      hits + misses > 0)
    snprintf (d, sizeof d, "%.1f%%",
              (double) hits * 100.0 / (double) (hits + misses));
  else
    snprintf (d, sizeof d, "-");
  printf ("  cache         hits %s, misses %s, hit ratio %s, "
          "promotions %s\n",
          num (e, "hits", a), num (e, "misses", b), d,
          num (e, "promotions", c));
  printf ("  bypasses      %s, sequential cutoff %s\n",
          num (e, "bypasses", a), num (e, "sequential_bypasses", b));
  printf ("  dirty         %s (zero extents %s), throttled writes %s\n",
          size_of (e, "dirty_bytes", a), size_of (e, "dirty_zero_bytes", b),
          num (e, "throttled_writes", c));
  printf ("  writeback     rate %s/s, target %s; %s written back in %s "
          "batches, errors %s\n",
          size_of (e, "writeback_rate", a),
          size_of (e, "writeback_target_bytes", b),
          size_of (e, "writeback_bytes", c), num (e, "writeback_batches", d),
          num (e, "writeback_errors", f));
  printf ("  backing trims queued %s, batched into %s, extents issued %s\n",
          num (e, "backing_trims_queued", a),
          num (e, "backing_trim_batches", b),
          num (e, "backing_trim_extents", c));
}

static void
print_cache (struct json_object *cd)
{
  char name[256], path[4096], a[32], b[32], c[32], d[32], f[32];
  const char *p;
  uint64_t v;

  if (stats_str (cd, "name", name, sizeof name) == NULL)
    snprintf (name, sizeof name, "?");
  p = stats_str (cd, "path", path, sizeof path);
  printf ("cache '%s' (%s): %s in %s buckets of %s\n", name,
          p != NULL ? p : "?", size_of (cd, "size_bytes", a),
          num (cd, "buckets", b), size_of (cd, "bucket_bytes", c));
  printf ("  buckets       free %s, data %s, btree %s, dirty %s, "
          "discard pending %s\n",
          num (cd, "free_buckets", a), num (cd, "data_buckets", b),
          num (cd, "btree_buckets", c), num (cd, "dirty_buckets", d),
          num (cd, "discard_pending_buckets", f));
  printf ("  data          live %s, dirty %s\n",
          size_of (cd, "live_bytes", a), size_of (cd, "dirty_bytes", b));
  printf ("  evictions     %s buckets\n", num (cd, "evictions", a));
  printf ("  gc            %s runs, freed %s buckets, dropped %s stale keys, "
          "fixed %s buckets\n",
          num (cd, "gc_runs", a), num (cd, "gc_freed_buckets", b),
          num (cd, "gc_stale_keys", c), num (cd, "gc_fixed_buckets", d));
  printf ("  moving gc     %s runs, moved %s\n",
          num (cd, "moving_gc_runs", a), size_of (cd, "moving_gc_bytes", b));
  printf ("  discards      %s buckets in %s batches (%s per batch), "
          "errors %s\n",
          num (cd, "discards", a), num (cd, "discard_batches", b),
          ratio (cd, "discards", "discard_batches", c),
          num (cd, "discard_errors", d));
  printf ("  journal       %s commits, %s entries, %s keys",
          num (cd, "journal_commits", a), num (cd, "journal_entries", b),
          num (cd, "journal_keys", c));
  /* REDO (nbdcache-format(5)): absent from a server from before it. */
  if (stats_u64 (cd, "journal_inlined", &v))
    printf (", %" PRIu64 " write%s carried %s data (one sync each)", v,
            v == 1 ? "" : "s", v == 1 ? "its" : "their");
  printf ("\n");
  printf ("  group commit  %s waiters per commit on average, at most %s\n",
          ratio (cd, "journal_waiters", "journal_commits", d),
          num (cd, "journal_max_batch_waiters", f));
  printf ("  btree         depth %s, %s nodes in memory (%s), node reads "
          "%s, node writes %s\n",
          num (cd, "btree_depth", a), num (cd, "btree_nodes_in_memory", b),
          size_of (cd, "btree_node_bytes_in_memory", c),
          num (cd, "node_reads", d), num (cd, "node_writes", f));
  if (!stats_u64 (cd, "data_checksums", &v))
    return;                     /* a server from before them */
  if (v == 1)
    printf ("  checksums     corrupt blocks found: clean %s, dirty %s; %s "
            "checksum pages written\n",
            num (cd, "corrupt_clean_blocks", a),
            num (cd, "corrupt_dirty_blocks", b),
            num (cd, "checksum_page_writes", c));
  else
    printf ("  checksums     none (a cache made before data checksums)\n");
}

/* Print the document as a table. */
static void
print_table (struct json_object *doc)
{
  struct json_object *exports, *caches;
  uint64_t version;
  size_t i, n;

  if (stats_u64 (doc, "version", &version) && version != STATS_VERSION)
    log_warning ("the server's stats are version %" PRIu64 ", this nbdcache "
                 "knows version %d: some fields may show as '?'", version,
                 STATS_VERSION);

  json_object_object_get_ex (doc, "exports", &exports);
  n = json_object_array_length (exports);
  if (n == 0)
    printf ("no exports\n");
  for (i = 0; i < n; i++)
    print_export (json_object_array_get_idx (exports, i));
  if (json_object_object_get_ex (doc, "caches", &caches) &&
      json_object_is_type (caches, json_type_array)) {
    n = json_object_array_length (caches);
    for (i = 0; i < n; i++)
      print_cache (json_object_array_get_idx (caches, i));
  }
}

/* See admin.h. */
int
stats_fetch (const char *sock, const char *config, const char *export,
             struct json_object **docp, char **linep)
{
  struct json_object *doc = NULL, *err, *exports;
  enum json_tokener_error jerr;
  struct control *ctl = NULL;
  char *request = NULL, *line, msg[1024];
  uint64_t version;
  int r, status = EXIT_TROUBLE;

  if (export != NULL)
    r = asprintf (&request, "stats %s\n", export);
  else
    r = asprintf (&request, "stats\n");
  if (r < 0) {
    log_error ("out of memory");
    return EXIT_TROUBLE;
  }
  if (control_connect_args (sock, config, request, &ctl) < 0)
    goto out;

  r = control_read_line (ctl, STATS_TIMEOUT_MS, &line);
  if (r == 0) {
    log_error ("control socket %s: the server closed the connection "
               "without an answer", control_path (ctl));
    goto out;
  }
  if (r < 0)
    goto out;

  doc = json_tokener_parse_verbose (line, &jerr);
  if (doc == NULL || !json_object_is_type (doc, json_type_object)) {
    log_error ("control socket %s: the answer is not JSON (%s)",
               control_path (ctl),
               doc == NULL ? json_tokener_error_desc (jerr)
               : "not an object");
    goto out;
  }

  if (json_object_object_get_ex (doc, "error", &err)) {
    if (stats_str (doc, "error", msg, sizeof msg) == NULL)
      snprintf (msg, sizeof msg, "(no message)");
    fprintf (stderr, "nbdcache stats: nbdcached: %s\n", msg);
    status = EXIT_DAMAGED;
  }
  else if (!stats_u64 (doc, "version", &version) ||
           !json_object_object_get_ex (doc, "exports", &exports) ||
           !json_object_is_type (exports, json_type_array)) {
    log_error ("control socket %s: the answer is not a stats document",
               control_path (ctl));
    goto out;
  }
  else
    status = EXIT_OK;
  if (linep != NULL && (*linep = strdup (line)) == NULL) {
    log_error ("out of memory");
    status = EXIT_TROUBLE;
    goto out;
  }
  *docp = doc;
  doc = NULL;

 out:
  json_object_put (doc);
  control_client_close (ctl);
  free (request);
  return status;
}

/* The document in the Prometheus text format.  0 or -errno (logged). */
static int
print_prometheus (struct json_object *doc)
{
  char *text;
  size_t len;
  int r;

  if ((r = prom_format (doc, &text, &len)) < 0) {
    log_error ("formatting the stats for Prometheus: %s", strerror (-r));
    return r;
  }
  fwrite (text, 1, len, stdout);
  free (text);
  return 0;
}

/* "-n SECONDS": a decimal from 0.1 to one day.  false if not. */
static bool
parse_interval (const char *s, double *out)
{
  char *end;
  double v;

  errno = 0;
  v = strtod (s, &end);
  if (errno != 0 || end == s || *end != '\0' || !(v >= 0.1 && v <= 86400))
    return false;
  *out = v;
  return true;
}

static bool
parse_count (const char *s, unsigned *out)
{
  char *end;
  unsigned long v;

  if (*s < '0' || *s > '9')
    return false;
  errno = 0;
  v = strtoul (s, &end, 10);
  if (errno != 0 || *end != '\0' || v > 1000000000ul)
    return false;
  *out = (unsigned) v;
  return true;
}

/* A usage error: the message, the usage, exit 2. */
static int ATTRIBUTE_FORMAT_PRINTF (1, 2)
usage_error (const char *fmt, ...)
{
  va_list ap;

  fprintf (stderr, "nbdcache stats: ");
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fprintf (stderr, "\n" STATS_USAGE);
  return EXIT_TROUBLE;
}

int
cmd_stats (int argc, char **argv)
{
  const char *sock = NULL, *config = NULL, *export = NULL;
  struct json_object *doc = NULL;
  bool json = false, prometheus = false, watch = false, interval_set = false,
    count_set = false;
  double interval_s = 1.0;
  unsigned count = 0;
  char *line = NULL;
  int c, status;

  while ((c = getopt_long (argc, argv, "c:n:vh", stats_options, NULL))
         != -1) {
    switch (c) {
    case OPT_SOCKET: sock = optarg; break;
    case 'c': config = optarg; break;
    case OPT_JSON: json = true; break;
    case OPT_PROMETHEUS: prometheus = true; break;
    case OPT_WATCH: watch = true; break;
    case 'n':
      if (!parse_interval (optarg, &interval_s))
        return usage_error ("-n '%s': expected seconds from 0.1 to 86400",
                            optarg);
      interval_set = true;
      break;
    case OPT_COUNT:
      if (!parse_count (optarg, &count))
        return usage_error ("--count '%s': expected a number of refreshes "
                            "(0: until interrupted)", optarg);
      count_set = true;
      break;
    case 'v': log_set_level (LOG_LEVEL_DEBUG); break;
    case 'h': printf (STATS_USAGE); return EXIT_OK;
    default:
      fprintf (stderr, STATS_USAGE);
      return EXIT_TROUBLE;
    }
  }
  if (optind + 1 < argc)
    return usage_error ("%s", "too many arguments (one EXPORT at most)");
  if (sock != NULL && config != NULL)
    return usage_error ("%s", "give --socket or -c, not both");
  if (json + prometheus + watch > 1)
    return usage_error ("%s", "--json, --prometheus and --watch exclude "
                        "each other");
  if ((interval_set || count_set) && !watch)
    return usage_error ("%s", "-n and --count go with --watch");
  if (optind < argc) {
    export = argv[optind];
    if (*export == '\0' || !control_name_ok (export)) {
      fprintf (stderr, "nbdcache stats: '%s' is not an export name\n",
               export);
      return EXIT_TROUBLE;
    }
  }

  if (watch)
    return stats_watch (sock, config, export, interval_s, count);

  status = stats_fetch (sock, config, export, &doc, json ? &line : NULL);
  if (status == EXIT_TROUBLE)
    return status;
  if (json)
    printf ("%s\n", line);
  else if (status == EXIT_OK && prometheus) {
    if (print_prometheus (doc) < 0)
      status = EXIT_TROUBLE;
  }
  else if (status == EXIT_OK)
    print_table (doc);
  if (fflush (stdout) != 0 || ferror (stdout)) {
    log_error ("writing to standard output: %s", strerror (errno));
    status = EXIT_TROUBLE;
  }
  json_object_put (doc);
  free (line);
  return status;
}
