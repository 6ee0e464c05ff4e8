/* SPDX-License-Identifier: BSD-3-Clause */
/* test-prom.c — prom_format: the stats document as Prometheus text.
 *
 * WHAT: families with HELP and TYPE, counters with _total, labels and
 * their escaping, missing fields left out, unknown integer fields kept as
 * untyped, every family printed once, and -EPROTO for what is not a
 * stats document.
 */
#include <config.h>

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "prom.h"

static const char doc_text[] =
  "{\"version\":1,\"exports\":["
  "{\"name\":\"disk\",\"mode\":\"writeback\",\"readonly\":false,"
  "\"cache\":\"ssd\",\"size_bytes\":1048576,\"reads\":7,\"hits\":5,"
  "\"misses\":2,\"dirty_bytes\":4096,\"writeback_rate\":1024,"
  "\"new_counter\":9,\"bad-name\":3,"
  "\"backing\":{\"uri\":\"nbd://h\",\"driver\":\"nbd\",\"connections\":2,"
  "\"connected\":1,\"down_since\":1700000000,\"reconnect_attempts\":4}},"
  "{\"name\":\"we\\\"ird\\\\x\\ny\",\"mode\":\"none\",\"readonly\":true,"
  "\"cache\":null,\"reads\":1,"
  "\"backing\":{\"uri\":\"/f\",\"driver\":\"file\"}}],"
  "\"caches\":[{\"name\":\"ssd\",\"path\":\"/c\",\"free_buckets\":10,"
  "\"node_reads\":3}]}";

static char *
format (const char *text)
{
  struct json_object *doc = json_tokener_parse (text);
  char *out = NULL;
  size_t len = 0;

  assert_non_null (doc);
  assert_int_equal (prom_format (doc, &out, &len), 0);
  assert_int_equal (strlen (out), len);
  json_object_put (doc);
  return out;
}

/* How often needle occurs in hay. */
static int
count (const char *hay, const char *needle)
{
  int n = 0;

  while ((hay = strstr (hay, needle)) != NULL) {
    n++;
    hay += strlen (needle);
  }
  return n;
}

static void
test_prom_counters_and_gauges (void **state)
{
  char *out = format (doc_text);

  (void) state;
  assert_non_null (strstr (out, "# TYPE nbdcache_export_reads_total "
                           "counter\n"));
  assert_non_null (strstr (out, "# HELP nbdcache_export_reads_total "));
  assert_non_null (strstr (out, "nbdcache_export_reads_total{export=\"disk\","
                           "cache=\"ssd\"} 7\n"));
  assert_non_null (strstr (out, "nbdcache_export_hits_total{export=\"disk\","
                           "cache=\"ssd\"} 5\n"));
  assert_non_null (strstr (out, "# TYPE nbdcache_export_dirty_bytes gauge\n"));
  assert_non_null (strstr (out, "nbdcache_export_writeback_rate_bytes_per_"
                           "second{export=\"disk\",cache=\"ssd\"} 1024\n"));
  assert_non_null (strstr (out, "nbdcache_export_backing_connected{export="
                           "\"disk\",cache=\"ssd\"} 1\n"));
  assert_non_null (strstr (out, "nbdcache_export_backing_reconnect_attempts"
                           "_total{export=\"disk\",cache=\"ssd\"} 4\n"));
  assert_non_null (strstr (out, "nbdcache_cache_free_buckets{cache=\"ssd\"} "
                           "10\n"));
  assert_non_null (strstr (out, "nbdcache_cache_node_reads_total{cache="
                           "\"ssd\"} 3\n"));
  assert_non_null (strstr (out, "nbdcache_export_info{export=\"disk\",cache="
                           "\"ssd\",mode=\"writeback\",readonly=\"false\","
                           "backing_driver=\"nbd\"} 1\n"));
  free (out);
}

static void
test_prom_missing_fields_left_out (void **state)
{
  char *out = format (doc_text);

  (void) state;
  /* No export sent writes: no family at all, not a 0. */
  assert_null (strstr (out, "nbdcache_export_writes_total"));
  /* The mode none export has no hits. */
  assert_int_equal (count (out, "nbdcache_export_hits_total{"), 1);
  /* A local backing has no connection counters. */
  assert_int_equal (count (out, "nbdcache_export_backing_connected{"), 1);
  free (out);
}

static void
test_prom_each_family_once (void **state)
{
  char *out = format (doc_text);

  (void) state;
  assert_int_equal (count (out, "# TYPE nbdcache_export_reads_total "), 1);
  assert_int_equal (count (out, "nbdcache_export_reads_total{"), 2);
  assert_int_equal (count (out, "# TYPE nbdcache_export_info "), 1);
  free (out);
}

static void
test_prom_unknown_fields (void **state)
{
  char *out = format (doc_text);

  (void) state;
  assert_non_null (strstr (out, "# TYPE nbdcache_export_new_counter "
                           "untyped\n"));
  assert_non_null (strstr (out, "nbdcache_export_new_counter{export="
                           "\"disk\",cache=\"ssd\"} 9\n"));
  assert_null (strstr (out, "bad-name"));
  free (out);
}

static void
test_prom_label_escaping (void **state)
{
  char *out = format (doc_text);

  (void) state;
  assert_non_null (strstr (out, "nbdcache_export_reads_total{export="
                           "\"we\\\"ird\\\\x\\ny\",cache=\"\"} 1\n"));
  free (out);
}

static void
test_prom_not_stats (void **state)
{
  struct json_object *doc;
  char *out = NULL;
  size_t len = 0;

  (void) state;
  doc = json_tokener_parse ("{\"error\":\"no export 'x'\"}");
  assert_int_equal (prom_format (doc, &out, &len), -EPROTO);
  assert_null (out);
  json_object_put (doc);
  doc = json_tokener_parse ("{\"version\":1,\"exports\":{}}");
  assert_int_equal (prom_format (doc, &out, &len), -EPROTO);
  json_object_put (doc);
  assert_int_equal (prom_format (NULL, &out, &len), -EPROTO);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_prom_counters_and_gauges),
    cmocka_unit_test (test_prom_missing_fields_left_out),
    cmocka_unit_test (test_prom_each_family_once),
    cmocka_unit_test (test_prom_unknown_fields),
    cmocka_unit_test (test_prom_label_escaping),
    cmocka_unit_test (test_prom_not_stats),
  };

  return cmocka_run_group_tests (tests, NULL, NULL);
}
