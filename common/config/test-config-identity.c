/* SPDX-License-Identifier: BSD-3-Clause */
/* test-config-identity.c — unit tests for config-identity.c.
 *
 * WHAT: one cache device under two names ("ssd.img" and "./ssd.img"
 * before it exists; a path through "sub/.." once it does) is refused at
 * the second path's line naming the first's; a cache that is also a
 * backing is refused; two exports on one backing are refused unless both
 * are read-only, or the read-only one has share_backing = yes;
 * share_backing needs readonly = yes and no cache.
 * WHY: these configs lost data before (two allocators on one device, one
 * export's writeback overwriting the other's writes) and --check-config
 * said OK.
 * INVARIANTS: the fixtures of config-test.c (disk.img, disk2.img, sub/).
 * THREADS AND LOCKS: single-threaded.
 * FAILURE: cmocka assertions; the loaders print what was logged.
 * NOT HERE: the runtime locks (common/util/test-ownlock.c,
 * common/cache/test-cdev-file.c, client-tests/test-exclusive-*.sh).
 */
#include <config.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "config-file.h"
#include "config-test.h"

static const char two_exports_why[] =
  "two exports on one backing lose writes (each overwrites the other's, "
  "and a cache serves stale data): use one export, make both readonly = "
  "yes, or give a read-only, uncached one share_backing = yes";

/* load_bad with one message: "LINE: [WHAT2] KEY2 'DIR/P2' is the same
 * KIND as [WHAT1] KEY1 'DIR/P1' (DIR/bad.conf:LINE1): WHY".
 */
static void
bad_same (const char *text, int line, const char *second, const char *p2,
          const char *kind, const char *first, const char *p1, int line1,
          const char *why)
{
  char *want;

  assert_true (asprintf (&want, "%d: %s '%s/%s' is the same %s as %s "
                         "'%s/%s' (%s/bad.conf:%d): %s", line, second,
                         tmpdir, p2, kind, first, tmpdir, p1, tmpdir, line1,
                         why) > 0);
  load_bad (text, want);
  free (want);
}

static void
test_config_identity_two_cache_names (void **state)
{
  const char *why = "one cache device cannot be two caches: both would hand "
    "out the same buckets and lose data; keep one [cache] section and "
    "point the exports at it";

  (void) state;
  /* Not created yet: the directory and the name meet. */
  bad_same ("[cache a]\npath = ssd.img\nsize = 64M\ncreate = yes\n"
            "[cache b]\npath = ./ssd.img\nsize = 64M\ncreate = yes\n"
            EXPORT_OK,
            6, "[cache b] path", "./ssd.img", "file", "[cache a] path",
            "ssd.img", 2, why);
  /* Existing: the inode meets. */
  bad_same ("[cache a]\npath = disk2.img\n"
            "[cache b]\npath = sub/../disk2.img\n"
            EXPORT_OK,
            4, "[cache b] path", "sub/../disk2.img", "file",
            "[cache a] path", "disk2.img", 2, why);
}

static void
test_config_identity_cache_is_backing (void **state)
{
  (void) state;
  bad_same ("[cache a]\npath = disk.img\n" EXPORT_OK,
            4, "[export ok] backing", "disk.img", "file", "[cache a] path",
            "disk.img", 2, "a cache device cannot also be a backing");
}

static void
test_config_identity_two_exports (void **state)
{
  struct config *cfg;

  (void) state;
  /* Cached and uncached on one file: the writeback of one overwrites
   * the other's writes.
   */
  bad_same ("[cache c]\npath = ssd.img\nsize = 64M\ncreate = yes\n"
            "[export cached]\nbacking = disk.img\ncache = c\n"
            "mode = writeback\n"
            "[export plain]\nbacking = ./disk.img\n",
            10, "[export plain] backing", "./disk.img", "file",
            "[export cached] backing", "disk.img", 6, two_exports_why);
  /* A reader next to a writer. */
  bad_same ("[export w]\nbacking = disk.img\n"
            "[export r]\nbacking = disk.img\nreadonly = yes\n",
            4, "[export r] backing", "disk.img", "file",
            "[export w] backing", "disk.img", 2, two_exports_why);

  /* Readers share; a reader with share_backing may sit next to a writer. */
  cfg = load_good ("[export r1]\nbacking = disk.img\nreadonly = yes\n"
                   "[export r2]\nbacking = disk.img\nreadonly = yes\n");
  config_free (cfg);
  cfg = load_good ("[export w]\nbacking = disk.img\n"
                   "[export r]\nbacking = disk.img\nreadonly = yes\n"
                   "share_backing = yes\n");
  assert_false (cfg->exports[0].share_backing);
  assert_true (cfg->exports[1].share_backing);
  config_free (cfg);
}

static void
test_config_identity_share_backing_rules (void **state)
{
  (void) state;
  load_bad ("[export x]\nbacking = disk.img\nshare_backing = yes\n",
            "3: share_backing = yes needs readonly = yes: a writer that "
            "shares its backing file loses writes");
  load_bad ("[cache c]\npath = ssd.img\nsize = 64M\ncreate = yes\n"
            "[export x]\nbacking = disk.img\nreadonly = yes\ncache = c\n"
            "share_backing = yes\n",
            "9: share_backing = yes with cache = c: the cache would keep "
            "serving data that the other opener has since changed; remove "
            "cache or share_backing");
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_config_identity_two_cache_names),
    cmocka_unit_test (test_config_identity_cache_is_backing),
    cmocka_unit_test (test_config_identity_two_exports),
    cmocka_unit_test (test_config_identity_share_backing_rules),
  };

  return cmocka_run_group_tests (tests, group_setup, group_teardown);
}
