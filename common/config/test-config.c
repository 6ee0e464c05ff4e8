/* SPDX-License-Identifier: BSD-3-Clause */
/* test-config.c — unit tests for the config file reader (config.c): good
 * files.
 *
 * WHAT: every general key, defaults, relative paths, repeated listen, the
 * default export, syntax (BOM, CRLF, comments, indentation), file: URIs,
 * the server's sizes and timeouts, and the table of known keys: its
 * count, asserted in test_config_known_keys and nowhere else, is the one
 * number a new key changes.
 * WHY: a good file must load silently with every value where the rest of
 * the program reads it; the bad files are tested apart
 * (test-config-invalid.c), one kind of error per test.
 * INVARIANTS: files live in the harness's private directory
 * (config-test.h), removed at the end; nothing reaches stderr unless a
 * test fails.
 * THREADS AND LOCKS: single-threaded.
 * FAILURE: cmocka assertions; main returns 0 or 1.
 * NOT HERE: bad files (test-config-invalid.c), backing URIs and the remote
 * and rbd backing keys (test-config-backing.c), the TLS and
 * access-control keys (test-config-tls.c), the background-work keys
 * (test-config-background.c), the example config and the man page
 * (conf/test-example-config).
 */
#include <config.h>

#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config-file.h"
#include "log.h"
#include "config-test.h"

/* ---- good files ---- */

static void
test_config_all_keys (void **state)
{
  struct config *cfg;
  const struct config_export *e;
  const struct config_cache *c;
  char *want;

  (void) state;
  cfg = load_good (
    "# every key\n"
    "[server]\n"
    "listen = unix:/run/test.sock\n"
    "listen = 127.0.0.1:10809\n"
    "workers = 16\n"
    "pidfile = /run/test.pid\n"
    "log = syslog\n"
    "log_level = debug\n"
    "default_export = b\n"
    "\n"
    "[cache ssd]\n"
    "path = /var/cache/ssd.img\n"
    "size = 10G\n"
    "create = yes\n"
    "direct = no\n"
    "bucket_size = 4M\n"
    "journal_size = 256M\n"
    "node_cache_size = 1G\n"
    "journal_delay_ms = 250\n"
    "\n"
    "[export a]\n"
    "backing = disk.img\n"
    "size = 1G\n"
    "cache = ssd\n"
    "mode = writeback\n"
    "readonly = yes\n"
    "description = the a export\n"
    "rotational = true\n"
    "max_connections = 4\n"
    "[export b]\n"
    "backing = /dev/null-not-here\n"
    "size = 512K\n");

  assert_int_equal (cfg->server.nr_listen, 2);
  assert_string_equal (cfg->server.listen[0], "unix:/run/test.sock");
  assert_string_equal (cfg->server.listen[1], "127.0.0.1:10809");
  assert_int_equal (cfg->server.workers, 16);
  assert_string_equal (cfg->server.pidfile, "/run/test.pid");
  assert_int_equal (cfg->server.log_target, LOG_TARGET_SYSLOG);
  assert_int_equal (cfg->server.log_level, LOG_LEVEL_DEBUG);
  assert_string_equal (cfg->server.default_export, "b");

  assert_int_equal (cfg->nr_caches, 1);
  c = config_find_cache (cfg, "ssd");
  assert_ptr_equal (c, &cfg->caches[0]);
  assert_string_equal (c->name, "ssd");
  assert_string_equal (c->path, "/var/cache/ssd.img");
  assert_true (c->size_bytes == 10ull << 30);
  assert_true (c->create);
  assert_false (c->direct);
  assert_true (c->bucket_bytes == 4ull << 20);
  assert_true (c->journal_bytes == 256ull << 20);
  assert_true (c->node_cache_bytes == 1ull << 30);
  assert_int_equal (c->journal_delay_ms, 250);
  assert_int_equal (c->line, 11);
  assert_null (config_find_cache (cfg, "nope"));

  assert_int_equal (cfg->nr_exports, 2);
  e = config_find_export (cfg, "a");
  assert_ptr_equal (e, &cfg->exports[0]);
  assert_string_equal (e->name, "a");
  want = join (tmpdir, "disk.img");
  assert_string_equal (e->backing, want);
  free (want);
  assert_true (e->size_bytes == 1ull << 30);
  assert_string_equal (e->cache, "ssd");
  assert_int_equal (e->mode, NCACHE_MODE_WRITEBACK);
  assert_true (e->readonly);
  assert_string_equal (e->description, "the a export");
  assert_true (e->rotational);
  assert_int_equal (e->max_connections, 4);
  assert_int_equal (e->line, 21);

  e = config_find_export (cfg, "b");
  assert_ptr_equal (e, &cfg->exports[1]);
  assert_string_equal (e->backing, "/dev/null-not-here");
  assert_true (e->size_bytes == 512 * 1024);
  assert_null (e->cache);
  assert_int_equal (e->mode, NCACHE_MODE_NONE);
  assert_ptr_equal (config_find_export (cfg, ""), e);
  config_free (cfg);
}

static void
test_config_defaults (void **state)
{
  struct config *cfg;
  const struct config_export *e;
  const struct config_cache *c;

  (void) state;
  cfg = load_good ("[export only]\n"
                   "backing = disk.img\n"
                   "[cache c]\n"
                   "path = ssd.img\n");
  assert_int_equal (cfg->server.nr_listen, 0);
  assert_null (cfg->server.listen);
  assert_int_equal (cfg->server.workers, CONFIG_DEFAULT_WORKERS);
  assert_int_equal (cfg->server.max_buffer_bytes,
                    CONFIG_DEFAULT_MAX_BUFFER_BYTES);
  assert_int_equal (cfg->server.handshake_timeout_ms, 10000);
  assert_int_equal (cfg->server.request_timeout_ms, 60000);
  assert_int_equal (cfg->server.drain_timeout_ms, 10000);
  assert_null (cfg->server.pidfile);
  assert_int_equal (cfg->server.log_target, LOG_TARGET_AUTO);
  assert_int_equal (cfg->server.log_level, LOG_LEVEL_INFO);
  assert_null (cfg->server.default_export);
  assert_int_equal (cfg->server.tls, CONFIG_TLS_OFF);
  assert_null (cfg->server.tls_certificates);
  assert_null (cfg->server.tls_cert_file);
  assert_null (cfg->server.tls_key_file);
  assert_null (cfg->server.tls_ca_file);
  assert_false (cfg->server.tls_verify_peer);
  assert_null (cfg->server.tls_psk_file);
  assert_null (cfg->server.tls_ciphers);
  assert_null (cfg->server.tls_ciphersuites);
  assert_int_equal (cfg->server.tls_min_version, 12);

  c = &cfg->caches[0];
  assert_true (c->size_bytes == 0);
  assert_false (c->create);
  assert_true (c->direct);
  assert_true (c->bucket_bytes == 0);
  assert_true (c->journal_bytes == 0);
  assert_true (c->node_cache_bytes == 64ull << 20);
  assert_true (c->node_cache_bytes == CONFIG_DEFAULT_NODE_CACHE_BYTES);
  assert_int_equal (c->journal_delay_ms, 100);
  assert_int_equal (c->journal_delay_ms, CONFIG_DEFAULT_JOURNAL_DELAY_MS);

  e = &cfg->exports[0];
  assert_true (e->size_bytes == 0);
  assert_null (e->cache);
  assert_int_equal (e->mode, NCACHE_MODE_NONE);
  assert_false (e->readonly);
  assert_null (e->description);
  assert_false (e->rotational);
  assert_int_equal (e->max_connections, 0);
  assert_false (e->tls_required);
  assert_null (e->allow);
  assert_int_equal (e->nr_allow, 0);
  assert_true (e->allow_unix);
  assert_null (e->allow_subjects);
  assert_int_equal (e->nr_allow_subjects, 0);
  assert_int_equal (e->line, 1);
  config_free (cfg);
}

static void
test_config_default_mode_with_cache (void **state)
{
  struct config *cfg;

  (void) state;
  cfg = load_good ("[cache c]\n"
                   "path = ssd.img\n"
                   "[export x]\n"
                   "backing = disk.img\n"
                   "cache = c\n"
                   "[export y]\n"
                   "backing = disk2.img\n"
                   "cache = c\n"
                   "mode = writearound\n");
  assert_int_equal (cfg->exports[0].mode, NCACHE_MODE_WRITETHROUGH);
  assert_int_equal (cfg->exports[1].mode, NCACHE_MODE_WRITEAROUND);
  config_free (cfg);
}

static void
test_config_cache_limits (void **state)
{
  struct config *cfg;
  const struct config_cache *c;

  (void) state;
  /* The edges of every range are accepted. */
  cfg = load_good ("[cache lo]\n"
                   "path = lo.img\n"
                   "create = yes\n"
                   "bucket_size = 64K\n"
                   "journal_size = 4096\n"
                   "node_cache_size = 1M\n"
                   "journal_delay_ms = 1\n"
                   "[cache hi]\n"
                   "path = hi.img\n"
                   "create = yes\n"
                   "bucket_size = 64MiB\n"
                   "journal_size = 1T\n"
                   "node_cache_size = 16G\n"
                   "journal_delay_ms = 10000\n"
                   EXPORT_OK);
  c = config_find_cache (cfg, "lo");
  assert_true (c->bucket_bytes == 64 * 1024);
  assert_true (c->journal_bytes == 4096);
  assert_true (c->node_cache_bytes == 1024 * 1024);
  assert_int_equal (c->journal_delay_ms, 1);
  c = config_find_cache (cfg, "hi");
  assert_true (c->bucket_bytes == 64ull << 20);
  assert_true (c->journal_bytes == 1ull << 40);
  assert_true (c->node_cache_bytes == 16ull << 30);
  assert_int_equal (c->journal_delay_ms, 10000);
  config_free (cfg);
}

static void
test_config_cache_device_config (void **state)
{
  struct config *cfg;
  struct ncache_device_config d;
  const struct config_cache *c;

  (void) state;
  /* Every field reaches the engine's struct; strings are borrowed. */
  cfg = load_good ("[cache ssd]\n"
                   "path = /dev/fast\n"
                   "size = 2G\n"
                   "create = yes\n"
                   "direct = no\n"
                   "bucket_size = 2M\n"
                   "journal_size = 64M\n"
                   "node_cache_size = 8M\n"
                   "journal_delay_ms = 7\n"
                   EXPORT_OK);
  c = &cfg->caches[0];
  memset (&d, 0xa5, sizeof d);
  config_cache_device_config (c, &d);
  assert_ptr_equal (d.name, c->name);
  assert_ptr_equal (d.path, c->path);
  assert_string_equal (d.path, "/dev/fast");
  assert_true (d.size_bytes == 2ull << 30);
  assert_true (d.create);
  assert_false (d.direct);
  assert_int_equal (d.bucket_bytes, 2 * 1024 * 1024);
  assert_true (d.journal_bytes == 64ull << 20);
  assert_true (d.node_cache_bytes == 8ull << 20);
  assert_int_equal (d.journal_delay_ms, 7);
  config_free (cfg);

  /* Defaults: the engine chooses the format, the config the rest. */
  cfg = load_good ("[cache ssd]\npath = /dev/fast\n" EXPORT_OK);
  memset (&d, 0xa5, sizeof d);
  config_cache_device_config (&cfg->caches[0], &d);
  assert_true (d.size_bytes == 0);
  assert_false (d.create);
  assert_true (d.direct);
  assert_int_equal (d.bucket_bytes, 0);
  assert_true (d.journal_bytes == 0);
  assert_true (d.node_cache_bytes == 64ull << 20);
  assert_int_equal (d.journal_delay_ms, 100);
  config_free (cfg);
}

static void
test_config_relative_paths (void **state)
{
  struct config *cfg;
  char want[PATH_MAX + 64];
  char *cwd;

  (void) state;
  /* Relative to the file's directory, not to the current directory. */
  cwd = getcwd (NULL, 0);
  assert_non_null (cwd);
  assert_int_equal (chdir ("/"), 0);
  cfg = load_good_named ("sub/nested.conf",
                         "[server]\n"
                         "listen = unix:s.sock\n"
                         "pidfile = run/x.pid\n"
                         "[cache c]\n"
                         "path = ../ssd.img\n"
                         "[export e]\n"
                         "backing = ../disk.img\n"
                         "cache = c\n");
  assert_int_equal (chdir (cwd), 0);
  free (cwd);

  snprintf (want, sizeof want, "unix:%s/sub/s.sock", tmpdir);
  assert_string_equal (cfg->server.listen[0], want);
  snprintf (want, sizeof want, "%s/sub/run/x.pid", tmpdir);
  assert_string_equal (cfg->server.pidfile, want);
  snprintf (want, sizeof want, "%s/sub/../ssd.img", tmpdir);
  assert_string_equal (cfg->caches[0].path, want);
  snprintf (want, sizeof want, "%s/sub/../disk.img", tmpdir);
  assert_string_equal (cfg->exports[0].backing, want);
  config_free (cfg);
}

static void
test_config_relative_config_path (void **state)
{
  struct config *cfg;
  char *cwd, *want;
  int r;

  (void) state;
  /* A config named relative to the current directory. */
  cwd = getcwd (NULL, 0);
  assert_non_null (cwd);
  free (write_file ("good.conf", "[export e]\nbacking = disk.img\n"));
  assert_int_equal (chdir (tmpdir), 0);
  clear_messages ();
  r = config_load ("good.conf", &cfg);
  assert_int_equal (chdir (cwd), 0);
  free (cwd);
  assert_int_equal (r, 0);
  assert_string_equal (cfg->path, "good.conf");
  want = join (tmpdir, "disk.img");
  assert_string_equal (cfg->exports[0].backing, want);
  free (want);
  config_free (cfg);
}

static void
test_config_repeated_listen (void **state)
{
  static const char *const want[] = {
    "127.0.0.1:10809", "[::1]:0", ":10809", "localhost:1", "[::]:10809",
  };
  struct config *cfg;
  size_t i;

  (void) state;
  cfg = load_good ("[server]\n"
                   "listen = 127.0.0.1:10809\n"
                   "listen = [::1]:0\n"
                   "listen = :10809\n"
                   "listen = localhost:1\n"
                   "listen = [::]:10809\n"
                   "[export e]\n"
                   "backing = disk.img\n");
  assert_int_equal (cfg->server.nr_listen, 5);
  for (i = 0; i < 5; i++)
    assert_string_equal (cfg->server.listen[i], want[i]);
  config_free (cfg);
}

static void
test_config_default_export (void **state)
{
  struct config *cfg;

  (void) state;
  /* Named default, declared before the export it names. */
  cfg = load_good ("[server]\n"
                   "default_export = two\n"
                   "[export one]\n"
                   "backing = disk.img\n"
                   "[export two]\n"
                   "backing = disk2.img\n");
  assert_ptr_equal (config_find_export (cfg, ""), &cfg->exports[1]);
  assert_ptr_equal (config_find_export (cfg, "one"), &cfg->exports[0]);
  assert_null (config_find_export (cfg, "three"));
  assert_null (config_find_export (cfg, NULL));
  assert_null (config_find_export (NULL, "one"));
  config_free (cfg);
}

static void
test_config_find_export_empty (void **state)
{
  struct config *cfg;

  (void) state;
  /* Exactly one export: it is the default. */
  cfg = load_good ("[export only]\nbacking = disk.img\n");
  assert_ptr_equal (config_find_export (cfg, ""), &cfg->exports[0]);
  config_free (cfg);

  /* Two exports and no default_export: the empty name finds nothing. */
  cfg = load_good ("[export one]\nbacking = disk.img\n"
                   "[export two]\nbacking = disk2.img\n");
  assert_null (config_find_export (cfg, ""));
  config_free (cfg);
}

static void
test_config_syntax (void **state)
{
  struct config *cfg;
  char *long_name, *text;

  (void) state;
  /* BOM, CRLF, comments of both kinds, inline comments, indentation,
   * spaces inside a section header and in an export name.
   */
  cfg = load_good ("\xef\xbb\xbf; leading comment\r\n"
                   "#another\r\n"
                   "  [ server ]   # comment after a header\r\n"
                   "\tworkers=2 ; inline\r\n"
                   "  log_level   =   warning   # inline\r\n"
                   "[export   my disk  ]\n"
                   "backing = disk.img\n"
                   "description = a#b c;d   # gone\n"
                   "    readonly = on\n");
  assert_int_equal (cfg->server.workers, 2);
  assert_int_equal (cfg->server.log_level, LOG_LEVEL_WARNING);
  assert_string_equal (cfg->exports[0].name, "my disk");
  assert_string_equal (cfg->exports[0].description, "a#b c;d");
  assert_true (cfg->exports[0].readonly);
  config_free (cfg);

  /* An export name of exactly 4096 bytes is accepted. */
  long_name = xmalloc (4097);
  assert_non_null (long_name);
  memset (long_name, 'n', 4096);
  long_name[4096] = '\0';
  text = xmalloc (4200);
  assert_non_null (text);
  sprintf (text, "[export %s]\nbacking = disk.img\n", long_name);
  cfg = load_good (text);
  assert_string_equal (cfg->exports[0].name, long_name);
  assert_ptr_equal (config_find_export (cfg, long_name), &cfg->exports[0]);
  config_free (cfg);
  free (text);
  free (long_name);
}

static void
test_config_file_uri (void **state)
{
  struct config *cfg;
  char *text, *want;

  (void) state;
  text = xmalloc (strlen (tmpdir) + 128);
  assert_non_null (text);
  sprintf (text, "[export u]\nbacking = file://%s/dis%%6b.img\n", tmpdir);
  cfg = load_good (text);
  want = join (tmpdir, "disk.img");
  assert_string_equal (cfg->exports[0].backing, want);
  free (want);
  free (text);
  config_free (cfg);
}

static void
test_config_size_creates_nothing (void **state)
{
  struct config *cfg;
  struct stat st;
  char *p;

  (void) state;
  /* A missing backing with a size is valid; parsing creates no file. */
  cfg = load_good ("[export n]\nbacking = new.img\nsize = 1M\n");
  p = join (tmpdir, "new.img");
  assert_string_equal (cfg->exports[0].backing, p);
  assert_int_equal (stat (p, &st), -1);
  assert_int_equal (errno, ENOENT);
  free (p);
  config_free (cfg);
}

static void
test_config_max_buffer (void **state)
{
  struct config *cfg;

  (void) state;
  cfg = load_good ("[server]\nmax_buffer = 64M\n" EXPORT_OK);
  assert_int_equal (cfg->server.max_buffer_bytes, UINT64_C (64) << 20);
  config_free (cfg);
  load_bad ("[server]\nmax_buffer = 0\n" EXPORT_OK,
            "2: invalid max_buffer '0': expected a size greater than 0 "
            "such as 4096, 512K, 10G or 2T");
}

static void
test_config_server_timeouts (void **state)
{
  struct config *cfg;

  (void) state;
  cfg = load_good ("[server]\nhandshake_timeout = 5s\n"
                   "request_timeout = 500ms\ndrain_timeout = 30\n" EXPORT_OK);
  assert_int_equal (cfg->server.handshake_timeout_ms, 5000);
  assert_int_equal (cfg->server.request_timeout_ms, 500);
  assert_int_equal (cfg->server.drain_timeout_ms, 30000);
  config_free (cfg);
  load_bad ("[server]\nrequest_timeout = 0\n" EXPORT_OK,
            "2: invalid request_timeout '0': expected seconds (30, 30s) or "
            "milliseconds (500ms), from 1ms to 86400s");
}

static void
test_config_free_null (void **state)
{
  (void) state;
  config_free (NULL);
}

/* ---- the table of known keys ---- */

static void
test_config_known_keys (void **state)
{
  size_t i, j;

  (void) state;
  for (i = 0; config_known_keys[i] != NULL; i++) {
    const char *k = config_known_keys[i];

    assert_true (strncmp (k, "server.", 7) == 0
                 || strncmp (k, "cache.", 6) == 0
                 || strncmp (k, "export.", 7) == 0);
    for (j = 0; j < i; j++)
      assert_string_not_equal (k, config_known_keys[j]);
  }
  assert_int_equal (i, 60);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_config_all_keys),
    cmocka_unit_test (test_config_defaults),
    cmocka_unit_test (test_config_default_mode_with_cache),
    cmocka_unit_test (test_config_cache_limits),
    cmocka_unit_test (test_config_cache_device_config),
    cmocka_unit_test (test_config_relative_paths),
    cmocka_unit_test (test_config_relative_config_path),
    cmocka_unit_test (test_config_repeated_listen),
    cmocka_unit_test (test_config_default_export),
    cmocka_unit_test (test_config_find_export_empty),
    cmocka_unit_test (test_config_syntax),
    cmocka_unit_test (test_config_file_uri),
    cmocka_unit_test (test_config_size_creates_nothing),
    cmocka_unit_test (test_config_known_keys),
    cmocka_unit_test (test_config_max_buffer),
    cmocka_unit_test (test_config_server_timeouts),
    cmocka_unit_test (test_config_free_null),
  };

  return cmocka_run_group_tests (tests, group_setup, group_teardown) ? 1 : 0;
}
