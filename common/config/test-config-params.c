/* SPDX-License-Identifier: BSD-3-Clause */
/* test-config-params.c — key=value parameters through the file's key
 * table (config-params.c).
 *
 * WHAT: a bad parameter value is refused with the file's message, minus
 * FILE:LINE and with the key spelt as the parameter; a second value is a
 * duplicate key; the built config has one export, a cache only when a
 * cache key was set, and the file's default mode; relative paths resolve
 * against the working directory; memory: backings pass as parameters only.
 * WHY: the plugin relies on these to refuse what nbdcached's config file
 * refuses, in the same words.
 * THREADS AND LOCKS: single-threaded.
 * FAILURE: cmocka assertions; main returns 0 or 1.
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
#include <unistd.h>

#include <cmocka.h>

#include "config-file.h"
#include "config-test.h"

/* The one message logged: exactly `want`. */
static void
expect_message (const char *want)
{
  if (nr_messages != 1 || strcmp (messages[0], want) != 0)
    print_messages ();
  assert_int_equal (nr_messages, 1);
  assert_string_equal (messages[0], want);
  clear_messages ();
}

/* A cached export, so that a bad background-work key is the one error. */
#define CACHED "[cache c]\npath = c.img\n[export e]\nbacking = disk.img\n" \
  "cache = c\n"

static void
test_config_params_same_words (void **state)
{
  static const struct {
    const char *section, *key, *spelling, *value;
    const char *file_text;      /* with key = value */
    const char *file_message;   /* "LINE: words" */
  } cases[] = {
    { "export", "mode", "mode", "sideways",
      EXPORT_OK "mode = sideways\n",
      "3: invalid mode 'sideways': expected writeback, writethrough, "
      "writearound or none" },
    { "export", "writeback_percent", "writeback-percent", "200",
      CACHED "writeback_percent = 200\n",
      "6: invalid writeback_percent '200': expected an integer from 0 to "
      "100" },
    { "export", "size", "size", "0",
      EXPORT_OK "size = 0\n",
      "3: invalid size '0': expected a size greater than 0 such as 4096, "
      "512K, 10G or 2T" },
    { "export", "size", "size", "9223372036854775808",
      EXPORT_OK "size = 9223372036854775808\n",
      "3: invalid size '9223372036854775808': too large" },
    { "cache", "discard", "discard", "perhaps",
      "[cache c]\npath = c.img\ndiscard = perhaps\n" EXPORT_OK,
      "3: invalid discard 'perhaps': expected auto, or yes/no, true/false, "
      "on/off or 1/0" },
  };
  size_t i;

  for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct config_params *cp;
    const char *words = strchr (cases[i].file_message, ' ') + 1;
    const char *at = strstr (words, cases[i].key);
    char want[512];

    /* The file's message, from the file. */
    load_bad (cases[i].file_text, cases[i].file_message);
    clear_messages ();

    /* The same words from the parameter, its key spelt its way. */
    assert_non_null (at);
    snprintf (want, sizeof want, "%.*s%s%s", (int) (at - words), words,
              cases[i].spelling, at + strlen (cases[i].key));
    assert_int_equal (config_params_create (&cp), 0);
    assert_int_equal (config_params_set (cp, cases[i].section, cases[i].key,
                                         cases[i].spelling, cases[i].value),
                      -EINVAL);
    expect_message (want);
    config_params_free (cp);
  }
}

static void
test_config_params_duplicate (void **state)
{
  struct config_params *cp;

  clear_messages ();
  assert_int_equal (config_params_create (&cp), 0);
  assert_int_equal (config_params_set (cp, "export", "mode", "mode",
                                       "none"), 0);
  assert_int_equal (config_params_set (cp, "export", "mode", "mode",
                                       "writeback"), -EINVAL);
  expect_message ("duplicate key 'mode' (first set at an earlier "
                  "parameter)");
  config_params_free (cp);
}

static void
test_config_params_built (void **state)
{
  struct config_params *cp;
  const struct config *cfg;
  char *cwd = getcwd (NULL, 0), *want;

  assert_non_null (cwd);
  clear_messages ();
  /* Uncached: no [cache], mode none. */
  assert_int_equal (config_params_create (&cp), 0);
  assert_int_equal (config_params_set (cp, "export", "backing", "backing",
                                       "disk.img"), 0);
  assert_int_equal (config_params_finish (cp, &cfg), 0);
  assert_int_equal (cfg->nr_exports, 1);
  assert_int_equal (cfg->nr_caches, 0);
  assert_null (cfg->exports[0].cache);
  assert_int_equal (cfg->exports[0].mode, NCACHE_MODE_NONE);
  want = join (cwd, "disk.img");
  assert_string_equal (cfg->exports[0].backing, want);
  free (want);
  config_params_free (cp);

  /* Cached: the export names the [cache], writethrough by default, the
   * [cache] defaults of the file. */
  assert_int_equal (config_params_create (&cp), 0);
  assert_int_equal (config_params_set (cp, "export", "backing", "backing",
                                       "memory:1M"), 0);
  assert_int_equal (config_params_set (cp, "cache", "path", "cache",
                                       "/dev/null"), 0);
  assert_int_equal (config_params_finish (cp, &cfg), 0);
  assert_int_equal (cfg->nr_caches, 1);
  assert_string_equal (cfg->exports[0].backing, "memory:1M");
  assert_string_equal (cfg->exports[0].cache, cfg->caches[0].name);
  assert_int_equal (cfg->exports[0].mode, NCACHE_MODE_WRITETHROUGH);
  assert_true (cfg->caches[0].direct);
  assert_int_equal (cfg->caches[0].discard, NCACHE_DISCARD_AUTO);
  assert_int_equal (cfg->caches[0].node_cache_bytes,
                    CONFIG_DEFAULT_NODE_CACHE_BYTES);
  assert_int_equal (nr_messages, 0);
  config_params_free (cp);
  free (cwd);

  /* In a file, memory: is still a relative path. */
  {
    struct config *fcfg = load_good ("[export m]\nbacking = memory:1M\n"
                                     "size = 1M\n");

    want = join (tmpdir, "memory:1M");
    assert_string_equal (fcfg->exports[0].backing, want);
    free (want);
    config_free (fcfg);
  }
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_config_params_same_words),
    cmocka_unit_test (test_config_params_duplicate),
    cmocka_unit_test (test_config_params_built),
  };

  return cmocka_run_group_tests (tests, group_setup, group_teardown) ? 1 : 0;
}
