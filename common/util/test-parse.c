/* SPDX-License-Identifier: BSD-3-Clause */
/* test-parse.c — unit tests for parse.c.
 *
 * WHAT: every accepted spelling of sizes, booleans and bounded integers,
 * and the rejection (with the right errno) of junk and overflow.
 * WHY: the same parsers read the config file, plugin parameters and the
 * command line; a spelling accepted by mistake becomes a compatibility
 * promise.
 * INVARIANTS: on failure the output variable must be left untouched; each
 * table case checks that with a sentinel.
 * THREADS AND LOCKS: single-threaded.
 * FAILURE: a failing case prints the input string through cmocka.
 * NOT HERE: config-file semantics (server/ tests those).
 */
#include <config.h>

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include "compiler.h"
#include "parse.h"

#define SENTINEL UINT64_C (0xdeadbeefcafef00d)

struct size_case {
  const char *s;
  int r;
  uint64_t v;
};

static void
check_size (const struct size_case *c)
{
  uint64_t v = SENTINEL;
  int r = parse_size_bytes (c->s, &v);

  if (r != c->r || (r == 0 && v != c->v) || (r != 0 && v != SENTINEL)) {
    print_error ("parse_size_bytes (\"%s\") = %d, %llu; expected %d, %llu\n",
                 c->s ? c->s : "(null)", r, (unsigned long long) v,
                 c->r, (unsigned long long) c->v);
    fail ();
  }
}

static void
test_parse_size_good (void **state)
{
  static const struct size_case cases[] = {
    { "0", 0, 0 },
    { "1", 0, 1 },
    { "4096", 0, 4096 },
    { "000512", 0, 512 },
    { "512B", 0, 512 },
    { "512b", 0, 512 },
    { "4k", 0, 4096 },
    { "4K", 0, 4096 },
    { "4KB", 0, 4096 },
    { "4KiB", 0, 4096 },
    { "4kib", 0, 4096 },
    { "1M", 0, UINT64_C (1) << 20 },
    { "1m", 0, UINT64_C (1) << 20 },
    { "3MiB", 0, UINT64_C (3) << 20 },
    { "1G", 0, UINT64_C (1) << 30 },
    { "10GB", 0, UINT64_C (10) << 30 },
    { "2T", 0, UINT64_C (2) << 40 },
    { "2TiB", 0, UINT64_C (2) << 40 },
    { "1P", 0, UINT64_C (1) << 50 },
    { "0G", 0, 0 },
    { "18446744073709551615", 0, UINT64_MAX },
    { "16383P", 0, UINT64_C (16383) << 50 },
  };
  size_t i;

  for (i = 0; i < ARRAY_SIZE (cases); ++i)
    check_size (&cases[i]);
}

static void
test_parse_size_bad (void **state)
{
  static const struct size_case cases[] = {
    { NULL, -EINVAL, 0 },
    { "", -EINVAL, 0 },
    { " 1", -EINVAL, 0 },
    { "1 ", -EINVAL, 0 },
    { "1 K", -EINVAL, 0 },
    { "-1", -EINVAL, 0 },
    { "+1", -EINVAL, 0 },
    { "0x10", -EINVAL, 0 },
    { "1.5G", -EINVAL, 0 },
    { "K", -EINVAL, 0 },
    { "KiB", -EINVAL, 0 },
    { "B", -EINVAL, 0 },
    { "1Ki", -EINVAL, 0 },
    { "1iB", -EINVAL, 0 },
    { "1KK", -EINVAL, 0 },
    { "1KBB", -EINVAL, 0 },
    { "1E", -EINVAL, 0 },
    { "1X", -EINVAL, 0 },
    { "1Kx", -EINVAL, 0 },
    { "1BK", -EINVAL, 0 },
    /* Junk wins over overflow. */
    { "99999999999999999999999x", -EINVAL, 0 },
    /* Overflow. */
    { "18446744073709551616", -ERANGE, 0 },
    { "99999999999999999999999", -ERANGE, 0 },
    { "16384P", -ERANGE, 0 },
    { "17179869184G", -ERANGE, 0 },
    { "18014398509481984K", -ERANGE, 0 },
  };
  size_t i;

  for (i = 0; i < ARRAY_SIZE (cases); ++i)
    check_size (&cases[i]);
}

static void
test_parse_bool (void **state)
{
  static const struct {
    const char *s;
    int r;
    bool v;
  } cases[] = {
    { "yes", 0, true }, { "YES", 0, true }, { "Yes", 0, true },
    { "true", 0, true }, { "TRUE", 0, true },
    { "on", 0, true }, { "On", 0, true }, { "1", 0, true },
    { "no", 0, false }, { "NO", 0, false },
    { "false", 0, false }, { "False", 0, false },
    { "off", 0, false }, { "OFF", 0, false }, { "0", 0, false },
    { NULL, -EINVAL, false }, { "", -EINVAL, false },
    { "y", -EINVAL, false }, { "n", -EINVAL, false },
    { "2", -EINVAL, false }, { "01", -EINVAL, false },
    { " yes", -EINVAL, false }, { "yes ", -EINVAL, false },
    { "yess", -EINVAL, false }, { "enable", -EINVAL, false },
  };
  size_t i;

  for (i = 0; i < ARRAY_SIZE (cases); ++i) {
    /* Two sentinels so "untouched" is checked for both values. */
    bool a = true, b = false;
    int ra = parse_bool (cases[i].s, &a);
    int rb = parse_bool (cases[i].s, &b);

    if (ra != cases[i].r || rb != cases[i].r ||
        (ra == 0 && (a != cases[i].v || b != cases[i].v)) ||
        (ra != 0 && (a != true || b != false))) {
      print_error ("parse_bool (\"%s\") = %d/%d, %d/%d\n",
                   cases[i].s ? cases[i].s : "(null)", ra, rb, a, b);
      fail ();
    }
  }
}

static void
test_parse_uint64_range (void **state)
{
  static const struct {
    const char *s;
    uint64_t min, max;
    int r;
    uint64_t v;
  } cases[] = {
    { "0", 0, 10, 0, 0 },
    { "10", 0, 10, 0, 10 },
    { "5", 5, 5, 0, 5 },
    { "007", 0, 10, 0, 7 },
    { "18446744073709551615", 0, UINT64_MAX, 0, UINT64_MAX },
    { "11", 0, 10, -ERANGE, 0 },
    { "4", 5, 10, -ERANGE, 0 },
    { "18446744073709551616", 0, UINT64_MAX, -ERANGE, 0 },
    { "5", 10, 0, -EINVAL, 0 },  /* min > max */
    { NULL, 0, 10, -EINVAL, 0 },
    { "", 0, 10, -EINVAL, 0 },
    { "-1", 0, 10, -EINVAL, 0 },
    { "+1", 0, 10, -EINVAL, 0 },
    { " 1", 0, 10, -EINVAL, 0 },
    { "1 ", 0, 10, -EINVAL, 0 },
    { "1k", 0, 10000, -EINVAL, 0 },
    { "0x1", 0, 10, -EINVAL, 0 },
    { "1e3", 0, 10000, -EINVAL, 0 },
  };
  size_t i;

  for (i = 0; i < ARRAY_SIZE (cases); ++i) {
    uint64_t v = SENTINEL;
    int r = parse_uint64_range (cases[i].s, cases[i].min, cases[i].max, &v);

    if (r != cases[i].r || (r == 0 && v != cases[i].v) ||
        (r != 0 && v != SENTINEL)) {
      print_error ("parse_uint64_range (\"%s\", %llu, %llu) = %d, %llu\n",
                   cases[i].s ? cases[i].s : "(null)",
                   (unsigned long long) cases[i].min,
                   (unsigned long long) cases[i].max,
                   r, (unsigned long long) v);
      fail ();
    }
  }
}

static void
test_parse_duration_ms (void **state)
{
  static const struct {
    const char *s;
    int r;
    uint64_t v;
  } cases[] = {
    { "30", 0, 30000 },
    { "30s", 0, 30000 },
    { "500ms", 0, 500 },
    { "1ms", 0, 1 },
    { "3600s", 0, 3600000 },
    { "0", -ERANGE, 0 },         /* below min 1 ms */
    { "3601", -ERANGE, 0 },      /* above max 3600 s */
    { "3600001ms", -ERANGE, 0 },
    { "99999999999999999999s", -ERANGE, 0 },
    { "", -EINVAL, 0 },
    { "s", -EINVAL, 0 },
    { "ms", -EINVAL, 0 },
    { "5m", -EINVAL, 0 },
    { "5 s", -EINVAL, 0 },
    { "-5", -EINVAL, 0 },
    { "1.5s", -EINVAL, 0 },
    { NULL, -EINVAL, 0 },
  };
  size_t i;

  (void) state;
  for (i = 0; i < ARRAY_SIZE (cases); ++i) {
    uint64_t v = SENTINEL;
    int r = parse_duration_ms (cases[i].s, 1, 3600000, &v);

    if (r != cases[i].r || (r == 0 && v != cases[i].v) ||
        (r != 0 && v != SENTINEL)) {
      print_error ("parse_duration_ms (\"%s\") = %d, %llu\n",
                   cases[i].s ? cases[i].s : "(null)", r,
                   (unsigned long long) v);
      fail ();
    }
  }
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_parse_size_good),
    cmocka_unit_test (test_parse_size_bad),
    cmocka_unit_test (test_parse_bool),
    cmocka_unit_test (test_parse_uint64_range),
    cmocka_unit_test (test_parse_duration_ms),
  };

  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
