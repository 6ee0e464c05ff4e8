/* SPDX-License-Identifier: BSD-3-Clause */
/* test-config-invalid.c — unit tests for the config file reader
 * (config.c): bad files, one kind of error per test.
 *
 * WHAT: a missing file, bad sections and headers, long lines and names,
 * NUL bytes, lines that are not key = value, unknown keys, bad sizes,
 * booleans, modes, log settings, workers, connections and listen
 * addresses, empty values, duplicates, references to missing sections,
 * and that every error of a file is reported, not only the first.  Each
 * bad file asserts -EINVAL and the exact "file:line: message" logged.
 * WHY: the line number is the whole point of a strict config parser; a
 * test that only checks the return code would pass with a wrong line.
 * INVARIANTS: files live in the harness's private directory
 * (config-test.h), removed at the end; nothing reaches stderr unless a
 * test fails.
 * THREADS AND LOCKS: single-threaded.
 * FAILURE: cmocka assertions; main returns 0 or 1.
 * NOT HERE: good files and the known keys (test-config.c), bad backing
 * URIs and backing keys (test-config-backing.c), TLS keys
 * (test-config-tls.c), background-work keys (test-config-background.c).
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
    cmocka_unit_test (test_config_empty_value),
    cmocka_unit_test (test_config_duplicate_section),
    cmocka_unit_test (test_config_duplicate_key),
    cmocka_unit_test (test_config_missing_cache_path),
    cmocka_unit_test (test_config_unknown_cache),
    cmocka_unit_test (test_config_mode_without_cache),
    cmocka_unit_test (test_config_mode_none_with_cache),
    cmocka_unit_test (test_config_unknown_default_export),
    cmocka_unit_test (test_config_no_exports),
    cmocka_unit_test (test_config_collects_all_errors),
  };

  return cmocka_run_group_tests (tests, group_setup, group_teardown) ? 1 : 0;
}
