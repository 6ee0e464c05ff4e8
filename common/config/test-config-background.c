/* SPDX-License-Identifier: BSD-3-Clause */
/* test-config-background.c — unit tests for the background-work config keys.
 *
 * WHAT: [server] control_socket, [cache] discard, [export]
 * writeback_percent, sequential_cutoff and flush_on_stop: each parses,
 * its default, its range, the exact "file:line: message" of a bad value,
 * the rule that the export keys need a cache, and that they reach the
 * engine's structs (config_cache_device_config, config_export_tuning).
 * WHY: test-config.c is already at its size limit; these keys belong to
 * one feature (the background work) and are tested together.
 * INVARIANTS: files live in the harness's private directory
 * (config-test.h), removed at the end; nothing reaches stderr unless a
 * test fails.
 * THREADS AND LOCKS: single-threaded.
 * FAILURE: cmocka assertions; main returns 0 or 1.
 * NOT HERE: the other keys (test-config.c, test-config-tls.c), the
 * example config and the man page (conf/test-example-config).
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
#include <sys/un.h>

#include <cmocka.h>

#include "config-file.h"
#include "log.h"
#include "config-test.h"

/* The config's default is the engine's (ncache_export_tuning_default,
 * 4 MiB); the front ends may include only cache.h, so it is spelled out.
 */
_Static_assert (CONFIG_DEFAULT_SEQUENTIAL_CUTOFF == (UINT64_C (4) << 20),
                "sequential_cutoff default differs from the engine's");

#define CACHE_OK "[cache c]\npath = ssd.img\n"

/* ---- good files ---- */

static void
test_bg_defaults (void **state)
{
  struct config *cfg;
  const struct config_export *e;

  (void) state;
  cfg = load_good (CACHE_OK
                   "[export cached]\nbacking = disk.img\ncache = c\n"
                   "[export plain]\nbacking = disk2.img\n");
  assert_null (cfg->server.control_socket);
  assert_int_equal (cfg->caches[0].discard, NCACHE_DISCARD_AUTO);
  e = config_find_export (cfg, "cached");
  assert_int_equal (e->writeback_percent, 10);
  assert_int_equal (e->writeback_percent, CONFIG_DEFAULT_WRITEBACK_PERCENT);
  assert_true (e->sequential_cutoff_bytes == 4ull << 20);
  assert_false (e->flush_on_stop);
  /* An uncached export carries the defaults too (they are unused). */
  e = config_find_export (cfg, "plain");
  assert_int_equal (e->writeback_percent, 10);
  assert_true (e->sequential_cutoff_bytes == CONFIG_DEFAULT_SEQUENTIAL_CUTOFF);
  assert_false (e->flush_on_stop);
  config_free (cfg);
}

static void
test_bg_all_keys (void **state)
{
  struct config *cfg;
  const struct config_export *e;

  (void) state;
  cfg = load_good ("[server]\n"
                   "control_socket = /run/nbdcached.ctl\n"
                   "[cache c]\n"
                   "path = ssd.img\n"
                   "discard = no\n"
                   "[export a]\n"
                   "backing = disk.img\n"
                   "cache = c\n"
                   "mode = writeback\n"
                   "writeback_percent = 40\n"
                   "sequential_cutoff = 512K\n"
                   "flush_on_stop = yes\n"
                   "[export b]\n"
                   "backing = disk2.img\n"
                   "cache = c\n"
                   "writeback_percent = 0\n"
                   "sequential_cutoff = 0\n"
                   "flush_on_stop = off\n"
                   "[export d]\n"
                   "backing = disk3.img\n"
                   "cache = c\n"
                   "mode = writearound\n"
                   "writeback_percent = 100\n"
                   "sequential_cutoff = 1T\n");
  assert_string_equal (cfg->server.control_socket, "/run/nbdcached.ctl");
  assert_int_equal (cfg->caches[0].discard, NCACHE_DISCARD_NO);

  e = config_find_export (cfg, "a");
  assert_int_equal (e->writeback_percent, 40);
  assert_true (e->sequential_cutoff_bytes == 512 * 1024);
  assert_true (e->flush_on_stop);

  /* 0 is a value, not "unset": write back everything; cutoff off. */
  e = config_find_export (cfg, "b");
  assert_int_equal (e->writeback_percent, 0);
  assert_true (e->sequential_cutoff_bytes == 0);
  assert_false (e->flush_on_stop);

  /* Accepted in every cached mode: an export once in writeback may hold
   * dirty data that writeback drains in any mode.
   */
  e = config_find_export (cfg, "d");
  assert_int_equal (e->writeback_percent, 100);
  assert_true (e->sequential_cutoff_bytes == 1ull << 40);
  config_free (cfg);
}

static void
test_bg_control_socket_relative (void **state)
{
  struct config *cfg;
  char *want;

  (void) state;
  /* Resolved against the config file's directory, like pidfile. */
  cfg = load_good ("[server]\ncontrol_socket = sub/ctl.sock\n" EXPORT_OK);
  want = join (tmpdir, "sub/ctl.sock");
  assert_string_equal (cfg->server.control_socket, want);
  free (want);
  config_free (cfg);
}

static void
test_bg_control_socket_longest (void **state)
{
  const size_t max = sizeof ((struct sockaddr_un *) 0)->sun_path - 1;
  struct config *cfg;
  char *text, *path;

  (void) state;
  /* An absolute path of exactly sun_path - 1 bytes fits. */
  path = xmalloc (max + 1);
  memset (path, 'a', max);
  path[0] = '/';
  path[max] = '\0';
  text = xmalloc (max + 128);
  sprintf (text, "[server]\ncontrol_socket = %s\n" EXPORT_OK, path);
  cfg = load_good (text);
  assert_string_equal (cfg->server.control_socket, path);
  config_free (cfg);
  free (text);
  free (path);
}

static void
test_bg_device_config_discard (void **state)
{
  struct config *cfg;
  struct ncache_device_config d;

  (void) state;
  cfg = load_good (CACHE_OK "[cache d]\npath = ssd2.img\ndiscard = no\n"
                   "[cache e]\npath = ssd3.img\ndiscard = yes\n"
                   "[cache f]\npath = ssd4.img\ndiscard = AUTO\n"
                   EXPORT_OK);
  memset (&d, 0xa5, sizeof d);
  config_cache_device_config (&cfg->caches[0], &d);
  assert_int_equal (d.discard, NCACHE_DISCARD_AUTO);      /* the default */
  memset (&d, 0xa5, sizeof d);
  config_cache_device_config (&cfg->caches[1], &d);
  assert_int_equal (d.discard, NCACHE_DISCARD_NO);
  config_cache_device_config (&cfg->caches[2], &d);
  assert_int_equal (d.discard, NCACHE_DISCARD_YES);
  config_cache_device_config (&cfg->caches[3], &d);
  assert_int_equal (d.discard, NCACHE_DISCARD_AUTO);
  config_free (cfg);
}

static void
test_bg_export_tuning (void **state)
{
  struct config *cfg;
  struct ncache_export_tuning t;

  (void) state;
  cfg = load_good (CACHE_OK
                   "[export a]\nbacking = disk.img\ncache = c\n"
                   "writeback_percent = 25\nsequential_cutoff = 8M\n"
                   "flush_on_stop = yes\n"
                   "[export b]\nbacking = disk2.img\ncache = c\n");
  /* The three keys are written; the test-only fields are left alone. */
  memset (&t, 0, sizeof t);
  t.writeback_off = true;
  t.writeback_update_ms = 1234;
  config_export_tuning (config_find_export (cfg, "a"), &t);
  assert_int_equal (t.writeback_percent, 25);
  assert_true (t.sequential_cutoff_bytes == 8ull << 20);
  assert_true (t.flush_on_stop);
  assert_true (t.writeback_off);
  assert_int_equal (t.writeback_update_ms, 1234);

  memset (&t, 0xa5, sizeof t);
  t.flush_on_stop = true;
  config_export_tuning (config_find_export (cfg, "b"), &t);
  assert_int_equal (t.writeback_percent, 10);
  assert_true (t.sequential_cutoff_bytes == 4ull << 20);
  assert_false (t.flush_on_stop);
  config_free (cfg);
}

/* ---- bad files ---- */

static void
test_bg_bad_writeback_percent (void **state)
{
  static const char *const bad[] = { "101", "-1", "10%", "ten", "4294967306",
                                     "" };
  char text[256], want[256];
  size_t i;

  (void) state;
  for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    snprintf (text, sizeof text, CACHE_OK
              "[export x]\nbacking = disk.img\ncache = c\n"
              "writeback_percent = %s\n", bad[i]);
    snprintf (want, sizeof want, "6: invalid writeback_percent '%s': "
              "expected an integer from 0 to 100", bad[i]);
    load_bad (text, want);
  }
}

static void
test_bg_bad_sequential_cutoff (void **state)
{
  static const char *const bad[] = { "-1", "4X", "1.5M", "99999999999999T",
                                     "" };
  char text[256], want[256];
  size_t i;

  (void) state;
  for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    snprintf (text, sizeof text, CACHE_OK
              "[export x]\nbacking = disk.img\ncache = c\n"
              "sequential_cutoff = %s\n", bad[i]);
    snprintf (want, sizeof want, "6: invalid sequential_cutoff '%s': "
              "expected a size such as 4M or 512K, or 0 (off)", bad[i]);
    load_bad (text, want);
  }
}

static void
test_bg_bad_bools (void **state)
{
  (void) state;
  load_bad (CACHE_OK "discard = maybe\n" EXPORT_OK,
            "3: invalid discard 'maybe': expected auto, or yes/no, "
            "true/false, on/off or 1/0");
  load_bad (CACHE_OK "[export x]\nbacking = disk.img\ncache = c\n"
            "flush_on_stop = 2\n",
            "6: invalid flush_on_stop '2': expected yes/no, true/false, "
            "on/off or 1/0");
}

static void
test_bg_bad_control_socket (void **state)
{
  const size_t max = sizeof ((struct sockaddr_un *) 0)->sun_path - 1;
  char *text, *want, *path;

  (void) state;
  load_bad ("[server]\ncontrol_socket =\n" EXPORT_OK,
            "2: control_socket: empty path");

  /* One byte too long for sun_path. */
  path = xmalloc (max + 2);
  memset (path, 'a', max + 1);
  path[0] = '/';
  path[max + 1] = '\0';
  text = xmalloc (max + 128);
  sprintf (text, "[server]\ncontrol_socket = %s\n" EXPORT_OK, path);
  want = xmalloc (3 * max + 128);
  sprintf (want, "2: control_socket '%s': socket path '%s' is longer than "
           "%zu bytes", path, path, max);
  load_bad (text, want);
  free (want);
  free (text);
  free (path);

  load_bad ("[server]\ncontrol_socket = /a\ncontrol_socket = /b\n" EXPORT_OK,
            "3: duplicate key 'control_socket' (first set at line 2)");
}

static void
test_bg_keys_in_wrong_section (void **state)
{
  static const char *const expected[] = {
    "2: unknown key 'control_socket' in [export x]",
    "3: unknown key 'discard' in [export x]",
    "7: unknown key 'writeback_percent' in [cache c]",
    "8: unknown key 'flush_on_stop' in [cache c]",
    "10: unknown key 'flush_on_stop' in [server]",
  };

  (void) state;
  load_bad_n ("[export x]\n"
              "control_socket = /run/c\n"
              "discard = no\n"
              "backing = disk.img\n"
              CACHE_OK
              "writeback_percent = 5\n"
              "flush_on_stop = yes\n"
              "[server]\n"
              "flush_on_stop = yes\n",
              5, expected);
}

static void
test_bg_export_keys_need_cache (void **state)
{
  static const char *const expected[] = {
    "3: writeback_percent is used only with a cache device: add cache = "
      "NAME to [export x] or remove writeback_percent",
    "4: sequential_cutoff is used only with a cache device: add cache = "
      "NAME to [export x] or remove sequential_cutoff",
    "5: flush_on_stop is used only with a cache device: add cache = "
      "NAME to [export x] or remove flush_on_stop",
  };

  (void) state;
  /* Even when set to the default values: they would be ignored. */
  load_bad_n ("[export x]\n"
              "backing = disk.img\n"
              "writeback_percent = 10\n"
              "sequential_cutoff = 0\n"
              "flush_on_stop = no\n",
              3, expected);
  load_bad ("[export x]\nbacking = disk.img\nmode = none\n"
            "flush_on_stop = yes\n",
            "4: flush_on_stop is used only with a cache device: add cache = "
            "NAME to [export x] or remove flush_on_stop");
}

static void
test_bg_collects_all_errors (void **state)
{
  static const char *const expected[] = {
    "2: invalid discard 'x': expected auto, or yes/no, true/false, on/off "
    "or 1/0",
    "5: invalid writeback_percent '200': expected an integer from 0 to 100",
    "6: invalid sequential_cutoff 'big': expected a size such as 4M or "
      "512K, or 0 (off)",
    "10: flush_on_stop is used only with a cache device: add cache = NAME "
      "to [export y] or remove flush_on_stop",
  };

  (void) state;
  load_bad_n ("[cache c]\n"
              "discard = x\n"
              "path = ssd.img\n"
              "[export x]\n"
              "writeback_percent = 200\n"
              "sequential_cutoff = big\n"
              "backing = disk.img\ncache = c\n"
              "[export y]\n"
              "flush_on_stop = yes\n"
              "backing = disk2.img\n",
              4, expected);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_bg_defaults),
    cmocka_unit_test (test_bg_all_keys),
    cmocka_unit_test (test_bg_control_socket_relative),
    cmocka_unit_test (test_bg_control_socket_longest),
    cmocka_unit_test (test_bg_device_config_discard),
    cmocka_unit_test (test_bg_export_tuning),
    cmocka_unit_test (test_bg_bad_writeback_percent),
    cmocka_unit_test (test_bg_bad_sequential_cutoff),
    cmocka_unit_test (test_bg_bad_bools),
    cmocka_unit_test (test_bg_bad_control_socket),
    cmocka_unit_test (test_bg_keys_in_wrong_section),
    cmocka_unit_test (test_bg_export_keys_need_cache),
    cmocka_unit_test (test_bg_collects_all_errors),
  };

  return cmocka_run_group_tests (tests, group_setup, group_teardown) ? 1 : 0;
}
