/* SPDX-License-Identifier: BSD-3-Clause */
/* compiler.h — attribute and helper macros used across nbdcache.
 *
 * WHAT: thin wrappers over GCC/clang attributes and a few arithmetic helpers.
 * WHY: one place to spell portability and intent (unlikely branches, printf
 * checking, overflow-safe range checks).
 * NOT HERE: anything that allocates or does I/O.
 */
#ifndef NBDCACHE_COMPILER_H
#define NBDCACHE_COMPILER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define likely(x)   __builtin_expect (!!(x), 1)
#define unlikely(x) __builtin_expect (!!(x), 0)

#ifndef ATTRIBUTE_FORMAT_PRINTF /* nbdkit-common.h defines it too */
#define ATTRIBUTE_FORMAT_PRINTF(fmtpos, argpos) \
  __attribute__ ((__format__ (__printf__, fmtpos, argpos)))
#endif
#define ATTRIBUTE_UNUSED __attribute__ ((__unused__))
#define ATTRIBUTE_NONNULL(...) __attribute__ ((__nonnull__ (__VA_ARGS__)))
#define EXPORTED __attribute__ ((__visibility__ ("default")))

#define ARRAY_SIZE(a) (sizeof (a) / sizeof ((a)[0]))

#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* True if [offset, offset+count) lies within [0, size).  Safe against
 * overflow of offset+count.  count == 0 is in range iff offset <= size.
 */
static inline bool
range_within (uint64_t offset, uint64_t count, uint64_t size)
{
  return offset <= size && count <= size - offset;
}

static inline bool
is_power_of_2 (uint64_t v)
{
  return v != 0 && (v & (v - 1)) == 0;
}

#define ROUND_UP(n, align)   (((n) + (align) - 1) / (align) * (align))
#define ROUND_DOWN(n, align) ((n) / (align) * (align))

#endif /* NBDCACHE_COMPILER_H */
