/* SPDX-License-Identifier: BSD-3-Clause */
/* mode.c — cache mode names.
 *
 * WHAT: "none|writeback|writethrough|writearound" <-> enum ncache_mode.
 * WHY: the config parser, the plugin's mode= parameter and the logs must
 * spell the modes the same way; one table does it.
 * INVARIANTS: the table has one row per enum value, in enum order.
 * THREADS AND LOCKS: constant data; any thread.
 * FAILURE: an unknown spelling is -EINVAL with *out untouched; an invalid
 * enum value is named "invalid" (never NULL).
 * NOT HERE: what a mode means (cache.c, and the engine core).
 */
#include <config.h>

#include <errno.h>
#include <strings.h>

#include "cache.h"
#include "compiler.h"

static const char *const mode_names[] = {
  [NCACHE_MODE_NONE] = "none",
  [NCACHE_MODE_WRITEBACK] = "writeback",
  [NCACHE_MODE_WRITETHROUGH] = "writethrough",
  [NCACHE_MODE_WRITEAROUND] = "writearound",
};

int
ncache_mode_from_string (const char *s, enum ncache_mode *out)
{
  size_t i;

  if (s == NULL)
    return -EINVAL;
  for (i = 0; i < ARRAY_SIZE (mode_names); i++)
    if (strcasecmp (s, mode_names[i]) == 0) {
      *out = (enum ncache_mode) i;
      return 0;
    }
  return -EINVAL;
}

const char *
ncache_mode_name (enum ncache_mode mode)
{
  if ((unsigned) mode >= ARRAY_SIZE (mode_names))
    return "invalid";
  return mode_names[mode];
}
