/* SPDX-License-Identifier: BSD-3-Clause */
/* test-config.c — unit tests for the config file reader (config.c).
 *
 * WHAT: good files (every general key, defaults, relative paths, repeated
 * listen, the default export, syntax: BOM, CRLF, comments, indentation)
 * and bad files, one test per kind of error; each bad file asserts -EINVAL
 * and the exact "file:line: message" logged.
 * WHY: the line number is the whole point of a strict config parser; a test
 * that only checks the return code would pass with a wrong line.
 * INVARIANTS: files live in the harness's private directory
 * (config-test.h), removed at the end; nothing reaches stderr unless a
 * test fails.
 * THREADS AND LOCKS: single-threaded.
 * FAILURE: cmocka assertions; main returns 0 or 1.
 * NOT HERE: the TLS and access-control keys (test-config-tls.c), the
 * background-work keys (test-config-bg.c), the example config and the man
 * page (conf/test-example-config).
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

static void
test_config_free_null (void **state)
{
  (void) state;
  config_free (NULL);
}

/* ---- bad files: one kind of error per test ---- */

static void
test_config_missing_file (void **state)
{
  struct config *cfg = NULL;
  char *path = join (tmpdir, "no-such.conf");
  char *want = xmalloc (strlen (path) + 64);

  (void) state;
  assert_non_null (want);
  clear_messages ();
  assert_int_equal (config_load (path, &cfg), -ENOENT);
  assert_null (cfg);
  assert_int_equal (nr_messages, 1);
  sprintf (want, "%s: cannot open config file: %s", path, strerror (ENOENT));
  assert_string_equal (messages[0], want);
  free (want);
  free (path);
}

static void
test_config_unknown_section (void **state)
{
  (void) state;
  load_bad (EXPORT_OK "\n[frobnicate]\nkey = ignored\n",
            "4: unknown section [frobnicate]: expected [server], "
            "[cache NAME] or [export NAME]");
  load_bad (EXPORT_OK "[Server]\n",
            "3: unknown section [Server]: expected [server], "
            "[cache NAME] or [export NAME]");
}

static void
test_config_bad_header (void **state)
{
  (void) state;
  load_bad (EXPORT_OK "[server\n", "3: section header without ']'");
  load_bad (EXPORT_OK "[server] x\n",
            "3: unexpected text after section header: 'x'");
  load_bad (EXPORT_OK "[server foo]\n",
            "3: [server] takes no name (found 'foo')");
  load_bad (EXPORT_OK "[export]\nbacking = disk.img\n",
            "3: [export] needs a name: [export NAME]");
  load_bad (EXPORT_OK "[cache   ]\npath = x\n",
            "3: [cache] needs a name: [cache NAME]");
}

static void
test_config_long_export_name (void **state)
{
  char *text = xmalloc (4200);
  size_t n;

  (void) state;
  assert_non_null (text);
  n = (size_t) sprintf (text, EXPORT_OK "[export ");
  memset (text + n, 'x', 4097);
  strcpy (text + n + 4097, "]\nbacking = disk.img\n");
  load_bad (text, "3: export name longer than 4096 bytes");
  free (text);
}

static void
test_config_long_line (void **state)
{
  char *text = xmalloc (20000);
  size_t n;

  (void) state;
  assert_non_null (text);
  n = (size_t) sprintf (text, EXPORT_OK "description = ");
  memset (text + n, 'd', 17000);
  strcpy (text + n + 17000, "\nreadonly = maybe\n");
  load_bad_n (text, 2, (const char *const[]) {
      "3: line longer than 16384 bytes",
      "4: invalid readonly 'maybe': expected yes/no, true/false, "
      "on/off or 1/0" });
  free (text);
}

static void
test_config_nul_byte (void **state)
{
  char text[] = EXPORT_OK "readonly = n@\n";
  char *path;
  struct config *cfg = NULL;
  FILE *fp;
  char *want;

  (void) state;
  *strchr (text, '@') = '\0';
  path = join (tmpdir, "bad.conf");
  fp = fopen (path, "w");
  assert_non_null (fp);
  assert_int_equal (fwrite (text, 1, sizeof text - 1, fp), sizeof text - 1);
  assert_int_equal (fclose (fp), 0);
  clear_messages ();
  assert_int_equal (config_load (path, &cfg), -EINVAL);
  assert_int_equal (nr_messages, 1);
  want = xmalloc (strlen (path) + 64);
  assert_non_null (want);
  sprintf (want, "%s:3: NUL byte in line", path);
  assert_string_equal (messages[0], want);
  free (want);
  free (path);
}

static void
test_config_not_key_value (void **state)
{
  (void) state;
  load_bad (EXPORT_OK "readonly\n",
            "3: expected 'key = value' or '[section]'");
  load_bad (EXPORT_OK "readonly: yes\n",
            "3: expected 'key = value' or '[section]'");
  load_bad (EXPORT_OK "readonly ; = yes\n",
            "3: expected 'key = value' or '[section]'");
}

static void
test_config_key_outside_section (void **state)
{
  (void) state;
  load_bad ("workers = 4\n" EXPORT_OK,
            "1: 'workers' outside any section: put it under [server], "
            "[cache NAME] or [export NAME]");
}

static void
test_config_unknown_key (void **state)
{
  (void) state;
  load_bad ("[server]\nworker = 4\n" EXPORT_OK,
            "2: unknown key 'worker' in [server]");
  load_bad (EXPORT_OK "Backing = x\n",
            "3: unknown key 'Backing' in [export ok]");
  /* A key of another section is unknown here. */
  load_bad ("[cache c]\npath = x\nbacking = y\n" EXPORT_OK,
            "3: unknown key 'backing' in [cache c]");
  load_bad (EXPORT_OK "= value\n", "3: unknown key '' in [export ok]");
}

static void
test_config_bad_size (void **state)
{
  (void) state;
  load_bad (EXPORT_OK "size = 10X\n",
            "3: invalid size '10X': expected a size greater than 0 "
            "such as 4096, 512K, 10G or 2T");
  load_bad (EXPORT_OK "size = 0\n",
            "3: invalid size '0': expected a size greater than 0 "
            "such as 4096, 512K, 10G or 2T");
  load_bad ("[cache c]\npath = x\nsize = 99999999999T\n" EXPORT_OK,
            "3: invalid size '99999999999T': too large");
  load_bad (EXPORT_OK "size =\n",
            "3: invalid size '': expected a size greater than 0 "
            "such as 4096, 512K, 10G or 2T");
}

static void
test_config_bad_bool (void **state)
{
  (void) state;
  load_bad (EXPORT_OK "readonly = yep\n",
            "3: invalid readonly 'yep': expected yes/no, true/false, "
            "on/off or 1/0");
  load_bad ("[cache c]\npath = x\ndirect = 2\n" EXPORT_OK,
            "3: invalid direct '2': expected yes/no, true/false, "
            "on/off or 1/0");
}

static void
test_config_bad_bucket_size (void **state)
{
  static const char *const bad[] = {
    "3M", "32K", "65535", "128M", "1G", "0", "abc", "", "-1M", "99999999999T",
  };
  char text[256], want[256];
  size_t i;

  (void) state;
  for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    snprintf (text, sizeof text,
              "[cache c]\npath = x\ncreate = yes\nbucket_size = %s\n"
              EXPORT_OK, bad[i]);
    snprintf (want, sizeof want,
              "4: invalid bucket_size '%s': expected a power of two from "
              "64K to 64M, such as 1M", bad[i]);
    load_bad (text, want);
  }
  /* Without create: the bad value is the one message. */
  load_bad ("[cache c]\npath = x\nbucket_size = 3M\n" EXPORT_OK,
            "3: invalid bucket_size '3M': expected a power of two from "
            "64K to 64M, such as 1M");
}

static void
test_config_bad_journal_size (void **state)
{
  (void) state;
  load_bad ("[cache c]\npath = x\ncreate = yes\njournal_size = 0\n"
            EXPORT_OK,
            "4: invalid journal_size '0': expected a size greater than 0 "
            "such as 4096, 512K, 10G or 2T");
  load_bad ("[cache c]\npath = x\ncreate = yes\njournal_size = big\n"
            EXPORT_OK,
            "4: invalid journal_size 'big': expected a size greater than 0 "
            "such as 4096, 512K, 10G or 2T");
}

static void
test_config_bad_node_cache_size (void **state)
{
  (void) state;
  load_bad ("[cache c]\npath = x\nnode_cache_size = 1023K\n" EXPORT_OK,
            "3: invalid node_cache_size '1023K': expected a size of at "
            "least 1M, such as 64M or 1G");
  load_bad ("[cache c]\npath = x\nnode_cache_size = 0\n" EXPORT_OK,
            "3: invalid node_cache_size '0': expected a size of at "
            "least 1M, such as 64M or 1G");
  load_bad ("[cache c]\npath = x\nnode_cache_size = lots\n" EXPORT_OK,
            "3: invalid node_cache_size 'lots': expected a size of at "
            "least 1M, such as 64M or 1G");
  load_bad ("[cache c]\npath = x\nnode_cache_size = 99999999999T\n"
            EXPORT_OK,
            "3: invalid node_cache_size '99999999999T': expected a size "
            "of at least 1M, such as 64M or 1G");
}

static void
test_config_bad_journal_delay (void **state)
{
  static const char *const bad[] = { "0", "10001", "-1", "1.5", "100ms", "" };
  char text[256], want[256];
  size_t i;

  (void) state;
  for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    snprintf (text, sizeof text,
              "[cache c]\npath = x\njournal_delay_ms = %s\n" EXPORT_OK,
              bad[i]);
    snprintf (want, sizeof want,
              "3: invalid journal_delay_ms '%s': expected an integer from "
              "1 to 10000", bad[i]);
    load_bad (text, want);
  }
}

static void
test_config_format_keys_need_create (void **state)
{
  (void) state;
  /* Each at its own line, create absent or no. */
  load_bad ("[cache c]\npath = x\nsize = 1G\n" EXPORT_OK,
            "3: size is used only when create = yes creates a new cache "
            "file: set create = yes in [cache c] or remove size");
  load_bad ("[cache c]\npath = x\ncreate = no\nbucket_size = 1M\n"
            EXPORT_OK,
            "4: bucket_size is used only when create = yes formats a new "
            "cache: set create = yes in [cache c] or remove bucket_size");
  load_bad ("[cache c]\njournal_size = 1G\npath = x\n" EXPORT_OK,
            "2: journal_size is used only when create = yes formats a new "
            "cache: set create = yes in [cache c] or remove journal_size");
  load_bad_n ("[cache c]\n"                /* 1 */
              "path = x\n"                 /* 2 */
              "journal_size = 1G\n"        /* 3 */
              "bucket_size = 2M\n"         /* 4 */
              "size = 9G\n"                /* 5 */
              "create = off\n"             /* 6 */
              EXPORT_OK, 3, (const char *const[]) {
      "5: size is used only when create = yes creates a new cache file: "
      "set create = yes in [cache c] or remove size",
      "4: bucket_size is used only when create = yes formats a new cache: "
      "set create = yes in [cache c] or remove bucket_size",
      "3: journal_size is used only when create = yes formats a new cache: "
      "set create = yes in [cache c] or remove journal_size" });
  /* node_cache_size and journal_delay_ms apply at every open. */
  config_free (load_good ("[cache c]\npath = x\nnode_cache_size = 2M\n"
                          "journal_delay_ms = 5\n" EXPORT_OK));
}

static void
test_config_bad_mode (void **state)
{
  (void) state;
  load_bad (EXPORT_OK "mode = write-back\n",
            "3: invalid mode 'write-back': expected writeback, "
            "writethrough, writearound or none");
}

static void
test_config_bad_log (void **state)
{
  (void) state;
  load_bad ("[server]\nlog = journal\n" EXPORT_OK,
            "2: invalid log 'journal': expected auto, stderr or syslog");
}

static void
test_config_bad_log_level (void **state)
{
  (void) state;
  load_bad ("[server]\nlog_level = verbose\n" EXPORT_OK,
            "2: invalid log_level 'verbose': expected error, warning, "
            "info or debug");
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
test_config_bad_workers (void **state)
{
  (void) state;
  load_bad ("[server]\nworkers = 0\n" EXPORT_OK,
            "2: invalid workers '0': expected an integer from 1 to 1024");
  load_bad ("[server]\nworkers = 1025\n" EXPORT_OK,
            "2: invalid workers '1025': expected an integer from 1 to 1024");
  load_bad ("[server]\nworkers = eight\n" EXPORT_OK,
            "2: invalid workers 'eight': expected an integer from 1 to 1024");
}

static void
test_config_bad_max_connections (void **state)
{
  (void) state;
  load_bad (EXPORT_OK "max_connections = -1\n",
            "3: invalid max_connections '-1': expected an integer "
            "from 0 to 4294967295");
  load_bad (EXPORT_OK "max_connections = 4294967296\n",
            "3: invalid max_connections '4294967296': expected an integer "
            "from 0 to 4294967295");
}

static void
test_config_bad_listen (void **state)
{
  char *text, *want;
  size_t n;

  (void) state;
  load_bad ("[server]\nlisten = localhost\n" EXPORT_OK,
            "2: listen 'localhost': expected unix:PATH, HOST:PORT, "
            "[IPV6]:PORT or :PORT");
  load_bad ("[server]\nlisten = ::1:10809\n" EXPORT_OK,
            "2: listen '::1:10809': write an IPv6 address in brackets, "
            "as [ADDRESS]:PORT");
  load_bad ("[server]\nlisten = [::1]\n" EXPORT_OK,
            "2: listen '[::1]': expected [IPV6]:PORT");
  load_bad ("[server]\nlisten = [nope]:1\n" EXPORT_OK,
            "2: listen '[nope]:1': 'nope' is not an IPv6 address");
  load_bad ("[server]\nlisten = :65536\n" EXPORT_OK,
            "2: listen ':65536': invalid port '65536': expected 0 to 65535");
  load_bad ("[server]\nlisten = host:\n" EXPORT_OK,
            "2: listen 'host:': invalid port '': expected 0 to 65535");
  load_bad ("[server]\nlisten = ho/st:1\n" EXPORT_OK,
            "2: listen 'ho/st:1': invalid character in host name");
  load_bad ("[server]\nlisten = unix:\n" EXPORT_OK,
            "2: listen 'unix:': empty socket path");

  /* A Unix socket path must fit in sun_path (108 bytes with the NUL). */
  text = xmalloc (512);
  want = xmalloc (1024);
  assert_non_null (text);
  assert_non_null (want);
  n = (size_t) sprintf (text, "[server]\nlisten = unix:/");
  memset (text + n, 's', 107);
  strcpy (text + n + 107, "\n" EXPORT_OK);
  sprintf (want, "2: listen 'unix:/%.107s': socket path '/%.107s' is "
           "longer than 107 bytes", text + n, text + n);
  load_bad (text, want);
  free (text);
  free (want);
}

static void
test_config_bad_backing_uri (void **state)
{
  (void) state;
  load_bad ("[export u]\nbacking = ceph://pool/image\n",
            "2: backing 'ceph://pool/image': unsupported URI scheme 'ceph' "
            "(use a path, a file:/// URI, nbd://, nbds://, nbd+unix://, "
            "nbds+unix://, or rbd:POOL/IMAGE)");
  load_bad ("[export u]\nbacking = rbd://pool/image\n",
            "2: backing 'rbd://pool/image': expected rbd:POOL/IMAGE");
  load_bad ("[export u]\nbacking = rbd:pool\n",
            "2: backing 'rbd:pool': expected rbd:POOL/IMAGE");
  load_bad ("[export u]\nbacking = rbd:pool/img@snap\n",
            "2: backing 'rbd:pool/img@snap': expected rbd:POOL/IMAGE");
  load_bad ("[export u]\nbacking = file://host/x\n",
            "2: backing 'file://host/x': a file URI must be "
            "file:///ABSOLUTE/PATH");
  load_bad ("[export u]\nbacking = file:///x%zz\n",
            "2: backing 'file:///x%zz': bad %-escape in URI");
}

static void
test_config_remote_backing (void **state)
{
  struct backing_remote_options o;
  struct config *cfg;
  char *pki = join (tmpdir, "pki"), *psk = join (tmpdir, "keys.psk");

  (void) state;
  /* A remote URI is kept as written; the defaults. */
  cfg = load_good ("[export r]\nbacking = nbd+unix:///disk?socket=/run/s\n");
  assert_string_equal (cfg->exports[0].backing,
                       "nbd+unix:///disk?socket=/run/s");
  config_export_backing_options (&cfg->exports[0], &o);
  assert_int_equal (o.connections, 0);
  assert_int_equal (o.timeout_ms, 0);
  assert_null (o.tls_certificates);
  assert_false (o.tls_no_verify);
  assert_null (o.tls_psk_file);
  config_free (cfg);

  /* Every key; paths resolved against the file's directory. */
  cfg = load_good ("[export x]\nbacking = nbds://remote:10809/disk\n"
                   "backing_connections = 8\nbacking_timeout = 1500ms\n"
                   "backing_tls_certificates = pki\n"
                   "backing_tls_verify = no\n"
                   "[export p]\nbacking = nbds+unix:///d?socket=/s\n"
                   "backing_timeout = 5\nbacking_tls_psk_file = keys.psk\n"
                   "backing_tls_username = alice\n");
  config_export_backing_options (&cfg->exports[0], &o);
  assert_int_equal (o.connections, 8);
  assert_int_equal (o.timeout_ms, 1500);
  assert_string_equal (o.tls_certificates, pki);
  assert_true (o.tls_no_verify);
  config_export_backing_options (&cfg->exports[1], &o);
  assert_int_equal (o.timeout_ms, 5000);
  assert_string_equal (o.tls_psk_file, psk);
  assert_string_equal (o.tls_username, "alice");
  assert_null (o.tls_certificates);
  config_free (cfg);
  free (pki);
  free (psk);
}

static void
test_config_rbd_backing (void **state)
{
  struct backing_ceph_options co;
  struct backing_remote_options o;
  struct config *cfg;
  char *conf = join (tmpdir, "disk.img");

  (void) state;
  /* Kept as written, librados' defaults. */
  cfg = load_good ("[export r]\nbacking = rbd:pool/image\n");
  assert_string_equal (cfg->exports[0].backing, "rbd:pool/image");
  config_export_ceph_options (&cfg->exports[0], &co);
  assert_null (co.conf);
  assert_null (co.id);
  assert_null (co.keyring);
  assert_null (co.key);
  config_free (cfg);

  /* Every key; paths resolved against the file's directory;
   * backing_timeout applies to rbd: too.
   */
  cfg = load_good ("[export r]\nbacking = rbd:pool/image\n"
                   "ceph_conf = disk.img\nceph_id = nbdcache\n"
                   "ceph_keyring = disk.img\nbacking_timeout = 7\n"
                   "[export k]\nbacking = rbd:p/i\n"
                   "ceph_key = AQBzZ2ZlAAAAABAAdGVzdGtleXRlc3RrZXk=\n");
  config_export_ceph_options (&cfg->exports[0], &co);
  assert_string_equal (co.conf, conf);
  assert_string_equal (co.id, "nbdcache");
  assert_string_equal (co.keyring, conf);
  assert_null (co.key);
  config_export_backing_options (&cfg->exports[0], &o);
  assert_int_equal (o.timeout_ms, 7000);
  config_export_ceph_options (&cfg->exports[1], &co);
  assert_string_equal (co.key, "AQBzZ2ZlAAAAABAAdGVzdGtleXRlc3RrZXk=");
  config_free (cfg);
  free (conf);
}

static void
test_config_rbd_backing_bad (void **state)
{
  (void) state;
  load_bad (EXPORT_OK "ceph_id = admin\n",
            "3: ceph_id is used only with a Ceph RBD backing "
            "(backing = rbd:POOL/IMAGE)");
  load_bad ("[export r]\nbacking = nbd://h/d\nceph_conf = disk.img\n",
            "3: ceph_conf is used only with a Ceph RBD backing "
            "(backing = rbd:POOL/IMAGE)");
  load_bad ("[export r]\nbacking = rbd:p/i\nsize = 1G\n",
            "3: size = creates a local backing file; [export r] has an "
            "RBD backing, whose size is the image's");
  load_bad ("[export r]\nbacking = rbd:p/i\nbacking_connections = 2\n",
            "3: backing_connections is used only with a remote NBD backing "
            "(nbd://…), not with rbd:");
  load_bad ("[export r]\nbacking = rbd:p/i\nceph_keyring = disk.img\n"
            "ceph_key = AQB=\n",
            "4: ceph_key and ceph_keyring: give the key or the keyring "
            "file, not both");
}

static void
test_config_remote_backing_bad (void **state)
{
  char msg[8192];

  (void) state;
  load_bad ("[export r]\nbacking = nbd://h/d\nsize = 1G\n",
            "3: size = creates a local backing file; [export r] has a "
            "remote backing, whose size is the remote's");
  load_bad (EXPORT_OK "backing_timeout = 30\n",
            "3: backing_timeout is used only with a remote backing "
            "(backing = nbd://…): [export ok] has a local one");
  load_bad ("[export r]\nbacking = nbd://h/d\nbacking_tls_verify = no\n",
            "3: backing_tls_verify is used only with TLS to the remote: "
            "write the backing URI as nbds:// or nbds+unix://");
  load_bad ("[export r]\nbacking = nbds://h/d\n"
            "backing_tls_username = alice\n",
            "3: backing_tls_username is the PSK identity: it needs "
            "backing_tls_psk_file");
  load_bad ("[export r]\nbacking = nbds://h/d\n"
            "backing_tls_psk_file = keys.psk\n"
            "backing_tls_certificates = pki\n",
            "3: backing_tls_psk_file and backing_tls_certificates: "
            "choose PSK or X.509");
  snprintf (msg, sizeof msg, "3: backing_tls_certificates '%s/disk.img' "
            "is not a directory", tmpdir);
  load_bad ("[export r]\nbacking = nbds://h/d\n"
            "backing_tls_certificates = disk.img\n", msg);
  load_bad ("[export r]\nbacking = nbd://h/d\nbacking_connections = 0\n",
            "3: invalid backing_connections '0': expected an integer from "
            "1 to 64");
  load_bad ("[export r]\nbacking = nbd://h/d\nbacking_timeout = 5m\n",
            "3: invalid backing_timeout '5m': expected seconds (30, 30s) or "
            "milliseconds (500ms), from 1ms to 86400s");
}

static void
test_config_empty_value (void **state)
{
  (void) state;
  load_bad (EXPORT_OK "cache =\n", "3: cache: empty value");
  load_bad ("[server]\npidfile =\n" EXPORT_OK, "2: pidfile: empty path");
}

static void
test_config_duplicate_section (void **state)
{
  (void) state;
  load_bad ("[server]\nworkers = 1\n" EXPORT_OK "[server]\nworkers = 2\n",
            "5: duplicate section [server] (first at line 1)");
  load_bad (EXPORT_OK "[export ok]\nbacking = x\n",
            "3: duplicate section [export ok] (first at line 1)");
  load_bad ("[cache c]\npath = x\n[cache c]\npath = y\n" EXPORT_OK,
            "3: duplicate section [cache c] (first at line 1)");
}

static void
test_config_duplicate_key (void **state)
{
  (void) state;
  load_bad (EXPORT_OK "\nreadonly = yes\nreadonly = no\n",
            "5: duplicate key 'readonly' (first set at line 4)");
  load_bad ("[server]\nworkers = 2\nworkers = 2\n" EXPORT_OK,
            "3: duplicate key 'workers' (first set at line 2)");
  load_bad (EXPORT_OK "backing = x\n",
            "3: duplicate key 'backing' (first set at line 2)");
  /* A bad value still counts as set: no "missing backing" as well. */
  load_bad ("[export e]\nbacking =\n", "2: backing: empty path");
}

static void
test_config_missing_backing (void **state)
{
  (void) state;
  load_bad ("[server]\n\n[export nob]\nreadonly = yes\n",
            "3: [export nob] has no backing = (required)");
  /* A section with no keys at all is still seen. */
  load_bad (EXPORT_OK "[export empty]\n",
            "3: [export empty] has no backing = (required)");
}

static void
test_config_missing_cache_path (void **state)
{
  (void) state;
  load_bad (EXPORT_OK "[cache c]\ndirect = no\n",
            "3: [cache c] has no path = (required)");
}

static void
test_config_unknown_cache (void **state)
{
  (void) state;
  load_bad ("[cache ssd]\npath = x\n[export e]\nbacking = disk.img\n"
            "cache = sdd\n",
            "5: cache 'sdd': there is no [cache sdd] section");
}

static void
test_config_mode_without_cache (void **state)
{
  (void) state;
  load_bad (EXPORT_OK "mode = writeback\n",
            "3: mode = writeback needs a cache device: add cache = NAME "
            "or use mode = none");
}

static void
test_config_mode_none_with_cache (void **state)
{
  (void) state;
  load_bad ("[cache c]\npath = x\n" EXPORT_OK "mode = none\ncache = c\n",
            "5: mode = none with cache = c: use writeback, writethrough "
            "or writearound, or remove cache");
}

static void
test_config_backing_absent (void **state)
{
  char want[PATH_MAX + 128];

  (void) state;
  snprintf (want, sizeof want,
            "3: backing '%s/absent.img' does not exist "
            "(set size = to create it)", tmpdir);
  load_bad ("[export e]\nreadonly = yes\nbacking = absent.img\n", want);
}

static void
test_config_backing_not_file (void **state)
{
  char want[PATH_MAX + 128];

  (void) state;
  snprintf (want, sizeof want,
            "2: backing '%s/sub' is not a regular file or block device",
            tmpdir);
  load_bad ("[export e]\nbacking = sub\n", want);
  /* Even with a size: it exists and is the wrong kind. */
  load_bad ("[export e]\nbacking = sub\nsize = 1G\n", want);
  load_bad ("[export e]\nbacking = /dev/null\n",
            "2: backing '/dev/null' is not a regular file or block device");
}

static void
test_config_backing_unreachable (void **state)
{
  char want[PATH_MAX + 128];

  (void) state;
  /* A path through a regular file. */
  snprintf (want, sizeof want, "2: backing '%s/disk.img/x': %s",
            tmpdir, strerror (ENOTDIR));
  load_bad ("[export e]\nbacking = disk.img/x\nsize = 1G\n", want);
}

static void
test_config_unknown_default_export (void **state)
{
  (void) state;
  load_bad ("[server]\nworkers = 1\ndefault_export = nope\n" EXPORT_OK,
            "3: default_export 'nope': there is no [export nope] section");
}

static void
test_config_no_exports (void **state)
{
  (void) state;
  load_bad ("[server]\nworkers = 1\n",
            "1: no [export NAME] section: nothing to serve");
  load_bad ("", "1: no [export NAME] section: nothing to serve");
  /* Reported with other errors too... */
  load_bad_n ("[server]\nworkers = 0\n", 2, (const char *const[]) {
      "2: invalid workers '0': expected an integer from 1 to 1024",
      "1: no [export NAME] section: nothing to serve" });
  /* ...but not after a bad header, which may be the export. */
  load_bad ("[exprot e]\nbacking = disk.img\n",
            "1: unknown section [exprot e]: expected [server], "
            "[cache NAME] or [export NAME]");
}

static void
test_config_collects_all_errors (void **state)
{
  (void) state;
  load_bad_n ("[server]\n"                     /* 1 */
              "workers = 0\n"                  /* 2 */
              "bogus = 1\n"                    /* 3 */
              "[export a]\n"                   /* 4 */
              "readonly = perhaps\n"           /* 5 */
              "mode = writeback\n"             /* 6 */
              "[nonsense]\n"                   /* 7 */
              "anything = goes\n"              /* 8 */
              "[export b]\n"                   /* 9 */
              "backing = disk.img\n"           /* 10 */
              "cache = missing\n",             /* 11 */
              7, (const char *const[]) {
      "2: invalid workers '0': expected an integer from 1 to 1024",
      "3: unknown key 'bogus' in [server]",
      "5: invalid readonly 'perhaps': expected yes/no, true/false, "
      "on/off or 1/0",
      "7: unknown section [nonsense]: expected [server], [cache NAME] "
      "or [export NAME]",
      "4: [export a] has no backing = (required)",
      "6: mode = writeback needs a cache device: add cache = NAME "
      "or use mode = none",
      "11: cache 'missing': there is no [cache missing] section",
    });
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
    cmocka_unit_test (test_config_missing_file),
    cmocka_unit_test (test_config_unknown_section),
    cmocka_unit_test (test_config_bad_header),
    cmocka_unit_test (test_config_long_export_name),
    cmocka_unit_test (test_config_long_line),
    cmocka_unit_test (test_config_nul_byte),
    cmocka_unit_test (test_config_not_key_value),
    cmocka_unit_test (test_config_key_outside_section),
    cmocka_unit_test (test_config_unknown_key),
    cmocka_unit_test (test_config_bad_size),
    cmocka_unit_test (test_config_bad_bool),
    cmocka_unit_test (test_config_bad_bucket_size),
    cmocka_unit_test (test_config_bad_journal_size),
    cmocka_unit_test (test_config_bad_node_cache_size),
    cmocka_unit_test (test_config_bad_journal_delay),
    cmocka_unit_test (test_config_format_keys_need_create),
    cmocka_unit_test (test_config_bad_mode),
    cmocka_unit_test (test_config_bad_log),
    cmocka_unit_test (test_config_bad_log_level),
    cmocka_unit_test (test_config_bad_workers),
    cmocka_unit_test (test_config_bad_max_connections),
    cmocka_unit_test (test_config_bad_listen),
    cmocka_unit_test (test_config_bad_backing_uri),
    cmocka_unit_test (test_config_remote_backing),
    cmocka_unit_test (test_config_remote_backing_bad),
    cmocka_unit_test (test_config_empty_value),
    cmocka_unit_test (test_config_duplicate_section),
    cmocka_unit_test (test_config_duplicate_key),
    cmocka_unit_test (test_config_missing_backing),
    cmocka_unit_test (test_config_missing_cache_path),
    cmocka_unit_test (test_config_unknown_cache),
    cmocka_unit_test (test_config_mode_without_cache),
    cmocka_unit_test (test_config_mode_none_with_cache),
    cmocka_unit_test (test_config_backing_absent),
    cmocka_unit_test (test_config_rbd_backing),
    cmocka_unit_test (test_config_rbd_backing_bad),
    cmocka_unit_test (test_config_backing_not_file),
    cmocka_unit_test (test_config_backing_unreachable),
    cmocka_unit_test (test_config_unknown_default_export),
    cmocka_unit_test (test_config_no_exports),
    cmocka_unit_test (test_config_collects_all_errors),
  };

  return cmocka_run_group_tests (tests, group_setup, group_teardown) ? 1 : 0;
}
