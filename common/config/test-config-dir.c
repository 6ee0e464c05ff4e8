/* SPDX-License-Identifier: BSD-3-Clause */
/* test-config-dir.c — unit tests for FILE.d/: the *.conf fragments read
 * after the main configuration file (config-source.c).
 *
 * WHAT: fragments are read in name order after the main file and only
 * "*.conf" regular files count; sections may be split across files
 * (exports only in fragments is the packaged default); relative paths are
 * relative to the fragment's directory; errors name the fragment and its
 * own line ("FRAGMENT:LINE: message"), a duplicate names where the first
 * was ("first at line N of FILE"); a fragment starts outside any section.
 * WHY: /etc/nbdcached.conf.d/ is how packages and tools add exports; an
 * error pointing at the wrong file would send an admin to the wrong place.
 * INVARIANTS: every file and directory is made under the harness's
 * private directory and removed by the test that made it.
 * THREADS AND LOCKS: single-threaded.
 * FAILURE: cmocka assertions; main returns 0 or 1.
 * NOT HERE: the keys themselves (test-config*.c).
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

/* What a test made under tmpdir, removed in reverse order. */
static char *made[32];
static size_t nr_made;

static char *
make_dir (const char *name)
{
  char *path = join (tmpdir, name);

  assert_int_equal (mkdir (path, 0700), 0);
  assert_true (nr_made < 32);
  made[nr_made++] = path;
  return path;
}

static char *
make_file (const char *name, const char *text)
{
  char *path = write_file (name, text);

  assert_true (nr_made < 32);
  made[nr_made++] = path;
  return path;
}

static void
remove_made (void)
{
  while (nr_made > 0) {
    char *path = made[--nr_made];

    if (rmdir (path) == -1)
      assert_int_equal (unlink (path), 0);
    free (path);
  }
}

/* "PATH:REST" must be messages[i]. */
static void
assert_message (size_t i, const char *path, const char *rest)
{
  char *want = xmalloc (strlen (path) + strlen (rest) + 2);

  sprintf (want, "%s:%s", path, rest);
  assert_true (i < nr_messages);
  assert_string_equal (messages[i], want);
  free (want);
}

static void
test_dir_order_and_names (void **state)
{
  struct config *cfg;
  char *main_path, *disk;
  size_t i;

  (void) state;
  main_path = make_file ("o.conf", "[server]\nlisten = :0\n"
                         "[export m]\nbacking = disk.img\nreadonly = yes\n");
  make_dir ("o.conf.d");
  make_file ("o.conf.d/20-b.conf", "[export b]\nbacking = ../disk.img\n"
             "readonly = yes\n");
  make_file ("o.conf.d/10-a.conf", "[export a]\nbacking = ../disk.img\n"
             "readonly = yes\n");
  /* Not fragments: hidden, another suffix, a directory. */
  make_file ("o.conf.d/.00-hidden.conf", "garbage\n");
  make_file ("o.conf.d/30-c.conf.dpkg-old", "garbage\n");
  make_dir ("o.conf.d/40-d.conf");

  clear_messages ();
  assert_int_equal (config_load (main_path, &cfg), 0);
  if (nr_messages)
    print_messages ();
  assert_int_equal (nr_messages, 0);
  assert_int_equal (cfg->nr_exports, 3);
  assert_string_equal (cfg->exports[0].name, "m");
  assert_string_equal (cfg->exports[1].name, "a");
  assert_string_equal (cfg->exports[2].name, "b");
  /* Relative to the file each is written in: all three are disk.img
   * (read-only, so that one file may back the three).
   */
  disk = join (tmpdir, "disk.img");
  for (i = 0; i < 3; i++) {
    char *real = realpath (cfg->exports[i].backing, NULL);

    assert_non_null (real);
    assert_string_equal (real, disk);
    free (real);
  }
  free (disk);
  config_free (cfg);
  remove_made ();
}

/* The packaged default: the main file has [server] only. */
static void
test_dir_exports_only_in_fragments (void **state)
{
  struct config *cfg;
  char *main_path, *frag;

  (void) state;
  main_path = make_file ("p.conf", "# nothing to serve\n[server]\n"
                         "listen = :0\n");
  make_dir ("p.conf.d");

  /* An empty conf.d: nothing to serve, said about the main file. */
  clear_messages ();
  assert_int_equal (config_load (main_path, &cfg), -EINVAL);
  assert_int_equal (nr_messages, 1);
  assert_message (0, main_path,
                  "1: no [export NAME] section: nothing to serve");

  frag = make_file ("p.conf.d/disk.conf",
                    "[export disk]\nbacking = ../disk.img\n");
  (void) frag;
  clear_messages ();
  assert_int_equal (config_load (main_path, &cfg), 0);
  assert_int_equal (nr_messages, 0);
  assert_int_equal (cfg->nr_exports, 1);
  assert_int_equal (cfg->server.nr_listen, 1);
  config_free (cfg);
  remove_made ();
}

static void
test_dir_errors_name_the_fragment (void **state)
{
  struct config *cfg = NULL;
  char *main_path, *a, *b;
  char ref[PATH_MAX + 128];

  (void) state;
  main_path = make_file ("e.conf", "[server]\nlisten = :0\n"
                         "[export m]\nbacking = disk.img\n");
  make_dir ("e.conf.d");
  /* A key before the fragment's first header belongs to no section, not
   * to the main file's [export m].
   */
  a = make_file ("e.conf.d/a.conf", "readonly = yes\n"
                 "[export a]\nbacking = ../disk2.img\nbogus = 1\n");
  b = make_file ("e.conf.d/b.conf", "\n[server]\n[export m]\n"
                 "[export b]\nbacking = ../disk3.img\nreadonly = yes\n"
                 "readonly = no\n");

  clear_messages ();
  assert_int_equal (config_load (main_path, &cfg), -EINVAL);
  assert_null (cfg);
  if (nr_messages != 5)
    print_messages ();
  assert_int_equal (nr_messages, 5);
  assert_message (0, a, "1: 'readonly' outside any section: put it under "
                  "[server], [cache NAME] or [export NAME]");
  assert_message (1, a, "4: unknown key 'bogus' in [export a]");
  snprintf (ref, sizeof ref,
            "2: duplicate section [server] (first at line 1 of %s)",
            main_path);
  assert_message (2, b, ref);
  snprintf (ref, sizeof ref,
            "3: duplicate section [export m] (first at line 3 of %s)",
            main_path);
  assert_message (3, b, ref);
  assert_message (4, b, "7: duplicate key 'readonly' (first set at line 6)");
  remove_made ();
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_dir_order_and_names),
    cmocka_unit_test (test_dir_exports_only_in_fragments),
    cmocka_unit_test (test_dir_errors_name_the_fragment),
  };

  return cmocka_run_group_tests (tests, group_setup, group_teardown) ? 1 : 0;
}
