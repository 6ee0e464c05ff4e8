/* device.c — cache devices (the SSD an export's hot data lives on).
 *
 * WHAT: ncache_device_open / ncache_device_close.  For now opening always
 * fails with -ENOTSUP and a message saying why.
 * WHY: the issue that builds the front ends comes before the engine core.
 * A config that names a cache device must be refused at startup — serving
 * that export silently uncached would hide a misconfiguration and break
 * the admin's expectations about durability and speed.
 * INVARIANTS: no struct ncache_device is ever created yet, so close only
 * ever sees NULL.
 * THREADS AND LOCKS: none.
 * FAILURE: -ENOTSUP, logged with the device's name and path; -EINVAL for
 * a missing configuration.
 * NOT HERE: the on-disk format, superblocks, buckets (engine core).
 */
#include <config.h>

#include <errno.h>
#include <stddef.h>

#include "cache.h"
#include "log.h"

int
ncache_device_open (const struct ncache_device_config *cfg,
                    struct ncache_device **out)
{
  if (cfg == NULL) {
    log_error ("cache device: no configuration");
    return -EINVAL;
  }
  log_error ("cache '%s' (%s): cache devices arrive with the engine core, "
             "which is not built yet; remove 'cache = %s' from the exports "
             "that use it and serve them with mode = none",
             cfg->name ? cfg->name : "", cfg->path ? cfg->path : "?",
             cfg->name ? cfg->name : "");
  return -ENOTSUP;
}

void
ncache_device_close (struct ncache_device *dev)
{
  /* Nothing can be open yet (see INVARIANTS). */
  (void) dev;
}
