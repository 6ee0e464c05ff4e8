/* SPDX-License-Identifier: BSD-3-Clause */
/* prom.c — the stats document in the Prometheus text exposition format.
 *
 * WHAT: prom_format turns the control socket's stats JSON into families
 * nbdcache_export_* (labels export, cache), nbdcache_export_backing_*
 * (the same labels) and nbdcache_cache_* (label cache), each with # HELP
 * and # TYPE, plus nbdcache_export_info (value 1, the mode, read-only
 * flag and backing driver as labels).  Counters end in _total.
 * WHY: Prometheus and the node-exporter textfile collector are what
 * operators already scrape; the admin tool and the server's HTTP
 * responder print it from this one place so they cannot drift apart.
 * INVARIANTS:
 * - Every sample of a family follows its # HELP and # TYPE lines, and a
 *   family appears once (the format forbids splitting one).
 * - Only what the document holds is printed: a missing field is no
 *   sample, not a 0.  Unknown non-negative integer fields (a newer
 *   server) are printed as untyped families when their name is a valid
 *   metric name, so nothing the server counts is dropped.
 * - Label values are escaped (backslash, double quote, newline).
 * THREADS AND LOCKS: none; the document is only read.
 * FAILURE: -EPROTO for a document without version and exports; -ENOMEM.
 * NOT HERE: where the numbers come from (server/control.c, cache.h).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prom.h"

enum prom_type { COUNTER, GAUGE };

struct prom_field {
  const char *key;              /* the JSON field */
  const char *name;             /* the metric after the prefix; NULL = key
                                   (a counter gets "_total" appended) */
  enum prom_type type;
  const char *help;
};

static const struct prom_field export_fields[] = {
  { "size_bytes", NULL, GAUGE, "Size of the export in bytes." },
  { "reads", NULL, COUNTER, "Read requests." },
  { "writes", NULL, COUNTER, "Write requests." },
  { "flushes", NULL, COUNTER, "Flush requests." },
  { "trims", NULL, COUNTER, "Trim requests." },
  { "zeroes", NULL, COUNTER, "Write-zeroes requests." },
  { "caches", NULL, COUNTER, "Cache (prefetch) requests." },
  { "extents", NULL, COUNTER, "Block status requests." },
  { "bytes_read", "read_bytes", COUNTER, "Bytes read by clients." },
  { "bytes_written", "written_bytes", COUNTER, "Bytes written by clients." },
  { "errors", NULL, COUNTER, "Requests that failed." },
  { "hits", NULL, COUNTER, "Reads served wholly from the cache device." },
  { "misses", NULL, COUNTER,
    "Reads that went at least partly to the backing store." },
  { "bypasses", NULL, COUNTER, "Read misses and writes kept out of the "
    "cache on purpose (cutoff, no room)." },
  { "promotions", NULL, COUNTER,
    "Read misses (not bypasses) copied into the cache." },
  { "dirty_bytes", NULL, GAUGE,
    "Dirty data of the export not yet written back, in bytes." },
  { "dirty_zero_bytes", NULL, GAUGE,
    "Dirty zero extents not yet written back, in bytes." },
  { "sequential_bypasses", NULL, COUNTER,
    "Bypasses the sequential cutoff caused." },
  { "writeback_bytes", NULL, COUNTER, "Bytes written back to the backing "
    "store (data and zero extents)." },
  { "writeback_batches", NULL, COUNTER, "Writeback batches." },
  { "writeback_errors", NULL, COUNTER,
    "Failed backing writes or flushes during writeback (retried)." },
  { "writeback_rate", "writeback_rate_bytes_per_second", GAUGE,
    "The writeback controller's current rate in bytes per second." },
  { "writeback_target_bytes", NULL, GAUGE,
    "The writeback controller's dirty target in bytes." },
  { "throttled_writes", NULL, COUNTER,
    "Writes that waited at the dirty limit." },
  { "backing_trims_queued", NULL, COUNTER, "Backing trims queued." },
  { "backing_trim_batches", NULL, COUNTER, "Backing trim batches." },
  { "backing_trim_extents", NULL, COUNTER, "Backing trim extents issued." },
  { "write_bypasses", NULL, COUNTER, "Writes and write zeroes among the "
    "bypasses: their mode would have cached them." },
};

static const struct prom_field backing_fields[] = {
  { "connections", NULL, GAUGE,
    "Connections to the remote backing store configured." },
  { "connected", NULL, GAUGE,
    "Connections to the remote backing store that are up." },
  { "down_since", "down_since_seconds", GAUGE, "Unix time since when a "
    "backing connection has been down; 0 when all are up." },
  { "reconnect_attempts", NULL, COUNTER, "Reconnect attempts." },
  { "retried_requests", NULL, COUNTER,
    "Backing requests resent after a reconnect." },
  { "timed_out_requests", NULL, COUNTER, "Backing requests that timed out." },
};

static const struct prom_field cache_fields[] = {
  { "size_bytes", NULL, GAUGE, "Size of the cache device in bytes." },
  { "bucket_bytes", NULL, GAUGE, "Bucket size in bytes." },
  { "buckets", NULL, GAUGE, "Buckets on the device." },
  { "free_buckets", NULL, GAUGE, "Free buckets." },
  { "data_buckets", NULL, GAUGE, "Buckets holding data." },
  { "btree_buckets", NULL, GAUGE, "Buckets holding index nodes." },
  { "dirty_buckets", NULL, GAUGE, "Buckets holding dirty data." },
  { "discard_pending_buckets", NULL, GAUGE,
    "Buckets waiting to be discarded." },
  { "live_bytes", NULL, GAUGE, "Live data in bytes." },
  { "dirty_bytes", NULL, GAUGE, "Dirty data on the device in bytes." },
  { "evictions", NULL, COUNTER,
    "Clean buckets invalidated to make space." },
  { "gc_runs", NULL, COUNTER, "Garbage collection runs." },
  { "gc_freed_buckets", NULL, COUNTER, "Buckets freed by garbage collection." },
  { "gc_stale_keys", NULL, COUNTER, "Stale keys dropped by garbage "
    "collection." },
  { "gc_fixed_buckets", NULL, COUNTER, "Bucket marks fixed by garbage "
    "collection." },
  { "moving_gc_runs", NULL, COUNTER, "Moving garbage collection runs." },
  { "moving_gc_bytes", NULL, COUNTER, "Bytes moved by moving garbage "
    "collection." },
  { "moving_gc_nospc", NULL, COUNTER, "Moving garbage collection passes "
    "cut short because writes took the space." },
  { "discards", NULL, COUNTER, "Buckets discarded." },
  { "discard_batches", NULL, COUNTER, "Discard batches." },
  { "discard_errors", NULL, COUNTER, "Failed discards." },
  { "journal_commits", NULL, COUNTER, "Journal commits." },
  { "journal_entries", NULL, COUNTER, "Journal entries written." },
  { "journal_keys", NULL, COUNTER, "Keys written to the journal." },
  { "journal_waiters", NULL, COUNTER,
    "Requests that waited for a journal commit (group commit)." },
  { "journal_max_batch_waiters", NULL, GAUGE,
    "Most waiters one journal commit has served." },
  { "journal_inlined", NULL, COUNTER, "Journal writes whose entries "
    "carried their data (one cache-device sync per small FLUSH or FUA)." },
  { "btree_depth", NULL, GAUGE, "Depth of the index." },
  { "btree_nodes_in_memory", NULL, GAUGE, "Index nodes in memory." },
  { "btree_node_bytes_in_memory", NULL, GAUGE,
    "Memory held by index nodes in bytes." },
  { "node_reads", NULL, COUNTER, "Index node reads." },
  { "node_writes", NULL, COUNTER, "Index node writes." },
  { "data_checksums", NULL, GAUGE, "1 if the cache has data checksums." },
  { "corrupt_clean_blocks", NULL, COUNTER, "Clean blocks found failing "
    "their data checksum (read from the backing store instead)." },
  { "corrupt_dirty_blocks", NULL, COUNTER, "Dirty blocks found failing "
    "their data checksum (reads fail with EIO)." },
  { "checksum_page_writes", NULL, COUNTER,
    "Data checksum region pages written." },
};

#define NELEMS(a) (sizeof (a) / sizeof ((a)[0]))

/* A non-negative integer field of o (NULL o: none). */
static bool
field_u64 (struct json_object *o, const char *key, uint64_t *v)
{
  struct json_object *f;

  if (o == NULL || !json_object_object_get_ex (o, key, &f) ||
      !json_object_is_type (f, json_type_int) ||
      json_object_get_int64 (f) < 0)
    return false;
  *v = json_object_get_uint64 (f);
  return true;
}

static const char *
field_str (struct json_object *o, const char *key)
{
  struct json_object *f;

  if (o == NULL || !json_object_object_get_ex (o, key, &f) ||
      !json_object_is_type (f, json_type_string))
    return NULL;
  return json_object_get_string (f);
}

/* A label value, escaped as the format asks. */
static void
put_label (FILE *fp, const char *label, const char *value, bool first)
{
  const char *p;

  fprintf (fp, "%s%s=\"", first ? "" : ",", label);
  for (p = value ? value : ""; *p; p++) {
    if (*p == '\\')
      fputs ("\\\\", fp);
    else if (*p == '"')
      fputs ("\\\"", fp);
    else if (*p == '\n')
      fputs ("\\n", fp);
    else
      fputc (*p, fp);
  }
  fputc ('"', fp);
}

/* The labels of one sample: export and cache for an export (and its
 * backing), cache alone for a cache device.
 */
static void
put_labels (FILE *fp, struct json_object *o, bool is_export)
{
  fputc ('{', fp);
  if (is_export) {
    put_label (fp, "export", field_str (o, "name"), true);
    put_label (fp, "cache", field_str (o, "cache"), false);
  }
  else
    put_label (fp, "cache", field_str (o, "name"), true);
  fputc ('}', fp);
}

/* The object of array item i whose fields are printed: the item itself,
 * or its "backing" object.  NULL if it has none.
 */
static struct json_object *
item_source (struct json_object *arr, size_t i, bool backing)
{
  struct json_object *o = json_object_array_get_idx (arr, i), *b;

  if (o == NULL || !json_object_is_type (o, json_type_object))
    return NULL;
  if (!backing)
    return o;
  if (!json_object_object_get_ex (o, "backing", &b) ||
      !json_object_is_type (b, json_type_object))
    return NULL;
  return b;
}

/* One family: name, help, type, then a sample for every item that has
 * the field.  Nothing at all when none has it.
 */
static void
put_family (FILE *fp, struct json_object *arr, bool is_export, bool backing,
            const char *key, const char *name, const char *type,
            const char *help)
{
  size_t i, n = json_object_array_length (arr);
  bool started = false;
  uint64_t v;

  for (i = 0; i < n; i++) {
    if (!field_u64 (item_source (arr, i, backing), key, &v))
      continue;
    if (!started) {
      fprintf (fp, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
      started = true;
    }
    fputs (name, fp);
    put_labels (fp, json_object_array_get_idx (arr, i), is_export);
    fprintf (fp, " %" PRIu64 "\n", v);
  }
}

static void
put_fields (FILE *fp, struct json_object *arr, bool is_export, bool backing,
            const char *prefix, const struct prom_field *fields, size_t nr)
{
  char name[256];
  size_t i;

  for (i = 0; i < nr; i++) {
    const struct prom_field *f = &fields[i];

    snprintf (name, sizeof name, "%s%s%s", prefix,
              f->name ? f->name : f->key, f->type == COUNTER ? "_total" : "");
    put_family (fp, arr, is_export, backing, f->key, name,
                f->type == COUNTER ? "counter" : "gauge", f->help);
  }
}

static bool
known (const struct prom_field *fields, size_t nr, const char *key)
{
  size_t i;

  for (i = 0; i < nr; i++)
    if (strcmp (fields[i].key, key) == 0)
      return true;
  return false;
}

/* Can key follow a prefix in a metric name ([a-zA-Z0-9_:]+)? */
static bool
name_ok (const char *key)
{
  const char *p;

  if (*key == '\0' || strlen (key) > 128)
    return false;
  for (p = key; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
          (*p >= '0' && *p <= '9') || *p == '_' || *p == ':'))
      return false;
  return true;
}

/* Did an item before i already have an integer field key? */
static bool
seen_before (struct json_object *arr, size_t i, bool backing,
             const char *key)
{
  size_t j;
  uint64_t v;

  for (j = 0; j < i; j++)
    if (field_u64 (item_source (arr, j, backing), key, &v))
      return true;
  return false;
}

/* Integer fields of a newer server that the tables do not name. */
static void
put_unknown (FILE *fp, struct json_object *arr, bool is_export, bool backing,
             const char *prefix, const struct prom_field *fields, size_t nr)
{
  size_t i, n = json_object_array_length (arr);
  char name[256];
  uint64_t v;

  for (i = 0; i < n; i++) {
    struct json_object *o = item_source (arr, i, backing);

    if (o == NULL)
      continue;
    json_object_object_foreach (o, key, val) {
      (void) val;
      if (known (fields, nr, key) || !name_ok (key) ||
          !field_u64 (o, key, &v) || seen_before (arr, i, backing, key))
        continue;
      snprintf (name, sizeof name, "%s%s", prefix, key);
      put_family (fp, arr, is_export, backing, key, name, "untyped",
                  "A counter this nbdcache does not know.");
    }
  }
}

/* nbdcache_export_info: 1 per export, its settings as labels. */
static void
put_info (FILE *fp, struct json_object *exports)
{
  size_t i, n = json_object_array_length (exports);
  struct json_object *o, *ro;

  if (n == 0)
    return;
  fputs ("# HELP nbdcache_export_info The export's settings as labels "
         "(always 1).\n# TYPE nbdcache_export_info gauge\n", fp);
  for (i = 0; i < n; i++) {
    o = json_object_array_get_idx (exports, i);
    if (o == NULL || !json_object_is_type (o, json_type_object))
      continue;
    fputs ("nbdcache_export_info{", fp);
    put_label (fp, "export", field_str (o, "name"), true);
    put_label (fp, "cache", field_str (o, "cache"), false);
    put_label (fp, "mode", field_str (o, "mode"), false);
    put_label (fp, "readonly",
               json_object_object_get_ex (o, "readonly", &ro) &&
               json_object_get_boolean (ro) ? "true" : "false", false);
    put_label (fp, "backing_driver",
               field_str (item_source (exports, i, true), "driver"), false);
    fputs ("} 1\n", fp);
  }
}

int
prom_format (struct json_object *doc, char **out, size_t *len)
{
  struct json_object *exports, *caches = NULL;
  char *buf = NULL;
  size_t size = 0;
  uint64_t version;
  FILE *fp;

  if (doc == NULL || !field_u64 (doc, "version", &version) ||
      !json_object_object_get_ex (doc, "exports", &exports) ||
      !json_object_is_type (exports, json_type_array))
    return -EPROTO;
  if (json_object_object_get_ex (doc, "caches", &caches) &&
      !json_object_is_type (caches, json_type_array))
    caches = NULL;

  fp = open_memstream (&buf, &size);
  if (fp == NULL)
    return -ENOMEM;
  put_info (fp, exports);
  put_fields (fp, exports, true, false, "nbdcache_export_", export_fields,
              NELEMS (export_fields));
  put_unknown (fp, exports, true, false, "nbdcache_export_", export_fields,
               NELEMS (export_fields));
  put_fields (fp, exports, true, true, "nbdcache_export_backing_",
              backing_fields, NELEMS (backing_fields));
  if (caches != NULL) {
    put_fields (fp, caches, false, false, "nbdcache_cache_", cache_fields,
                NELEMS (cache_fields));
    put_unknown (fp, caches, false, false, "nbdcache_cache_", cache_fields,
                 NELEMS (cache_fields));
  }
  if (ferror (fp)) {
    fclose (fp);
    free (buf);
    return -ENOMEM;
  }
  if (fclose (fp) != 0) {
    free (buf);
    return -ENOMEM;
  }
  *out = buf;
  *len = size;
  return 0;
}
