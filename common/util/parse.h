/* SPDX-License-Identifier: BSD-3-Clause */
/* parse.h — strict parsers for human-written values (config, URIs, CLI).
 *
 * WHAT: sizes with K/M/G/T/P suffixes (powers of 1024), booleans, bounded
 * unsigned integers, durations.
 * WHY: one strict definition so a config value, a plugin parameter and a
 * command-line option accept exactly the same spellings.
 * FAILURE: -EINVAL for anything malformed (trailing junk, empty, negative),
 * -ERANGE for overflow; *out untouched on failure.
 */
#ifndef NBDCACHE_PARSE_H
#define NBDCACHE_PARSE_H

#include <stdbool.h>
#include <stdint.h>

/* "4096", "4k", "1M", "1G", "2T" (case-insensitive, optional "iB"/"B"). */
int parse_size_bytes (const char *s, uint64_t *out);

/* yes/no, true/false, on/off, 1/0 (case-insensitive). */
int parse_bool (const char *s, bool *out);

/* Decimal unsigned integer in [min, max]. */
int parse_uint64_range (const char *s, uint64_t min, uint64_t max,
                        uint64_t *out);

/* A duration in milliseconds, in [min_ms, max_ms]: "30" and "30s" are
 * seconds, "500ms" milliseconds.
 */
int parse_duration_ms (const char *s, uint64_t min_ms, uint64_t max_ms,
                       uint64_t *out);

#endif /* NBDCACHE_PARSE_H */
