/* SPDX-License-Identifier: BSD-3-Clause */
/* parse.c — strict parsers for human-written values (see parse.h).
 *
 * WHAT: sizes ("4096", "4k", "1M", "10GiB", "2TB"), booleans and bounded
 * decimal integers.
 * WHY: a config value, a plugin parameter and a command-line option must
 * accept exactly the same spellings, and nothing else: strtoull alone
 * accepts leading spaces, signs, "0x" and silently wraps "-1".
 *
 * INVARIANTS:
 * - Only ASCII decimal digits are numbers: no sign, no whitespace, no
 *   hexadecimal or octal, no fractions.
 * - Size suffixes are K, M, G, T, P (either case) meaning powers of 1024,
 *   optionally followed by "B" or "iB" (either case); a bare "B" after the
 *   digits means bytes.
 * - Malformed input is -EINVAL even when its digits would also overflow;
 *   well-formed input whose value does not fit is -ERANGE.
 * - *out is written only on success.
 *
 * THREADS AND LOCKS: pure functions, no state.
 * FAILURE: -EINVAL or -ERANGE as above; nothing is logged (the caller
 * knows the file and line).
 * NOT HERE: decimal (1000-based) units, negative numbers, durations.
 */
#include <config.h>

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "parse.h"

static bool
is_digit (char c)
{
  return c >= '0' && c <= '9';
}

/* Parse the leading run of decimal digits of s.  Returns the number of
 * digits consumed (0 if none); *overflow is set if the value does not
 * fit in 64 bits.
 */
static size_t
parse_digits (const char *s, uint64_t *value, bool *overflow)
{
  uint64_t v = 0;
  size_t i;

  *overflow = false;
  for (i = 0; is_digit (s[i]); ++i) {
    unsigned d = (unsigned) (s[i] - '0');

    if (v > (UINT64_MAX - d) / 10)
      *overflow = true;
    else
      v = v * 10 + d;
  }
  *value = v;
  return i;
}

/* 0 and the shift for a K/M/G/T/P letter, or -EINVAL. */
static int
suffix_shift (char c, unsigned *shift)
{
  switch (c) {
  case 'k': case 'K': *shift = 10; return 0;
  case 'm': case 'M': *shift = 20; return 0;
  case 'g': case 'G': *shift = 30; return 0;
  case 't': case 'T': *shift = 40; return 0;
  case 'p': case 'P': *shift = 50; return 0;
  default: return -EINVAL;
  }
}

int
parse_size_bytes (const char *s, uint64_t *out)
{
  uint64_t v;
  bool overflow;
  unsigned shift = 0;
  size_t n;
  const char *p;

  if (s == NULL)
    return -EINVAL;
  n = parse_digits (s, &v, &overflow);
  if (n == 0)
    return -EINVAL;
  p = s + n;

  if (*p != '\0') {
    if (suffix_shift (*p, &shift) == 0) {
      /* Optional "B" or "iB" after a multiplier; "Ki" alone is junk. */
      ++p;
      if (*p == 'i' || *p == 'I') {
        ++p;
        if (*p != 'b' && *p != 'B')
          return -EINVAL;
      }
      if (*p == 'b' || *p == 'B')
        ++p;
    }
    else if (*p == 'b' || *p == 'B')
      ++p;                      /* "512B": plain bytes */
    if (*p != '\0')
      return -EINVAL;
  }

  if (overflow)
    return -ERANGE;
  if (shift > 0 && v > (UINT64_MAX >> shift))
    return -ERANGE;
  *out = v << shift;
  return 0;
}

int
parse_bool (const char *s, bool *out)
{
  static const char *const yes[] = { "yes", "true", "on", "1" };
  static const char *const no[] = { "no", "false", "off", "0" };
  size_t i;

  if (s == NULL)
    return -EINVAL;
  for (i = 0; i < sizeof yes / sizeof yes[0]; ++i) {
    if (strcasecmp (s, yes[i]) == 0) {
      *out = true;
      return 0;
    }
    if (strcasecmp (s, no[i]) == 0) {
      *out = false;
      return 0;
    }
  }
  return -EINVAL;
}

int
parse_uint64_range (const char *s, uint64_t min, uint64_t max,
                    uint64_t *out)
{
  uint64_t v;
  bool overflow;
  size_t n;

  if (s == NULL || min > max)
    return -EINVAL;
  n = parse_digits (s, &v, &overflow);
  if (n == 0 || s[n] != '\0')
    return -EINVAL;
  if (overflow || v < min || v > max)
    return -ERANGE;
  *out = v;
  return 0;
}

int
parse_duration_ms (const char *s, uint64_t min_ms, uint64_t max_ms,
                   uint64_t *out)
{
  uint64_t v, unit_ms = 1000;
  bool overflow;
  size_t n;

  if (s == NULL || min_ms > max_ms)
    return -EINVAL;
  n = parse_digits (s, &v, &overflow);
  if (n == 0)
    return -EINVAL;
  if (strcmp (s + n, "ms") == 0)
    unit_ms = 1;
  else if (strcmp (s + n, "s") != 0 && s[n] != '\0')
    return -EINVAL;
  if (overflow || v > max_ms / unit_ms || v * unit_ms < min_ms ||
      v * unit_ms > max_ms)
    return -ERANGE;
  *out = v * unit_ms;
  return 0;
}
