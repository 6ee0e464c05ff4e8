/* SPDX-License-Identifier: BSD-3-Clause */
/* export.c — the export table: config sections turned into engine handles.
 *
 * WHAT: at start-up opens every [cache] section that at least one export
 * uses (once: its exports share the device), then every [export] (backing
 * store, then the engine handle in the configured mode, on its device,
 * with the [export]'s background-work tuning and the [cache]'s discard);
 * finds exports by name; computes the transmission flags a connection is
 * told; at shutdown logs each export's and each device's statistics and
 * closes exports (each writes back its dirty data first if it has
 * flush_on_stop), then devices.
 * WHY: all connections to an export share one engine handle, so a FLUSH on
 * one covers writes made on every other (the multi-conn promise); all
 * exports on a cache device share one device handle, because the device
 * (its journal, index and allocator) can be open only once.
 * INVARIANTS: after export_table_open succeeds every export has an open
 * engine handle and its caps, and srv->devices[i] is open exactly when
 * some export names cfg->caches[i] (after a reload: or some removed export
 * still draining uses it, or it stayed open unused); while serving only
 * reload.c changes the table (server.h: table_lock).  Each export is its
 * own allocation, so a connection's pointer survives a reload.  Exports
 * borrow devices: a device is closed only after every
 * export (the engine requires it).
 * THREADS: opened and closed on the main thread before/after the loop runs
 * (nbdcached has already daemonized, so the engine's threads live in the
 * serving process), and while serving by reload.c's threads (never the
 * loop: these are engine calls); lookups and nr_connections on the loop
 * thread only.
 * FAILURE: a cache device or export that cannot be opened (a missing or
 * foreign device, missing backing, a mode the engine refuses) fails
 * start-up with a message naming the config file, the section's line and
 * the section; whatever was opened is closed; nothing is served
 * half-configured.
 * NOT HERE: parsing the config (config.c), per-connection negotiation,
 * the device format and recovery (the engine).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "backing.h"
#include "log.h"
#include "server.h"

/* The first export that names cc, or NULL if none does. */
static const struct config_export *
first_user (const struct config *cfg, const struct config_cache *cc)
{
  size_t i;

  for (i = 0; i < cfg->nr_exports; i++)
    if (cfg->exports[i].cache != NULL &&
        strcmp (cfg->exports[i].cache, cc->name) == 0)
      return &cfg->exports[i];
  return NULL;
}

static void
close_devices (struct server *srv)
{
  size_t i;

  if (srv->devices == NULL)
    return;
  for (i = 0; i < srv->cfg->nr_caches; i++)
    ncache_device_close (srv->devices[i]);
  free (srv->devices);
  srv->devices = NULL;
}

static int
open_devices (struct server *srv)
{
  const struct config *cfg = srv->cfg;
  size_t i;
  int r;

  srv->devices = calloc (cfg->nr_caches ? cfg->nr_caches : 1,
                         sizeof *srv->devices);
  if (srv->devices == NULL)
    return -ENOMEM;
  for (i = 0; i < cfg->nr_caches; i++) {
    const struct config_cache *cc = &cfg->caches[i];
    const struct config_export *user = first_user (cfg, cc);
    struct ncache_device_config dcfg;

    if (user == NULL) {
      log_info ("%s:%d: [cache %s]: no export uses it; not opened",
                cfg->path, cc->line, cc->name);
      continue;
    }
    config_cache_device_config (cc, &dcfg);
    r = ncache_device_open (&dcfg, &srv->devices[i]);
    if (r < 0) {
      log_error ("%s:%d: [cache %s]: cannot open cache device '%s' "
                 "(used by export '%s'): %s",
                 cfg->path, cc->line, cc->name, cc->path, user->name,
                 strerror (-r));
      close_devices (srv);
      return r;
    }
    log_debug ("cache '%s': %s open", cc->name, cc->path);
  }
  return 0;
}

/* The open device of the export's [cache], or NULL when uncached. */
static struct ncache_device *
device_of (const struct config *cfg, struct ncache_device **devices,
           const struct config_export *ce)
{
  const struct config_cache *cc = config_find_cache (cfg, ce->cache);

  /* config_load checked that cache names a section. */
  return cc ? devices[cc - cfg->caches] : NULL;
}

int
export_open (struct server *srv, const struct config *cfg,
             struct ncache_device **devices,
             const struct config_export *ce, struct export *exp)
{
  struct backing_open_options bopts = {
    .readonly = ce->readonly,
    .share = ce->share_backing,
    .create_size_bytes = ce->size_bytes,
  };
  struct ncache_export_tuning tuning;
  struct ncache_config ncfg = {
    .name = ce->name,
    .device = ce->cache ? device_of (cfg, devices, ce) : NULL,
    .mode = ce->mode,
    .readonly = ce->readonly,
    .tuning = &tuning,
    .allow_shrink = srv->allow_shrink,
  };
  struct backing *b;
  int r;

  ncache_export_tuning_default (&tuning);
  config_export_tuning (ce, &tuning);
  config_export_backing_options (ce, &bopts.remote);
  config_export_ceph_options (ce, &bopts.ceph);

  if (ce->cache != NULL && ncfg.device == NULL) {
    /* open_devices opened every device an export names. */
    log_error ("%s:%d: export '%s': cache '%s' is not open",
               cfg->path, ce->line, ce->name, ce->cache);
    return -EINVAL;
  }

  r = ncache_backing_open (ncfg.device, ce->name, ce->backing, &bopts, &b);
  if (r < 0) {
    log_error ("%s:%d: export '%s': cannot open backing '%s': %s",
               cfg->path, ce->line, ce->name, ce->backing, strerror (-r));
    return r;
  }
  r = ncache_open (&ncfg, b, &exp->nc);       /* takes ownership of b */
  if (r == 0)
    exp->backing = b;
  if (r < 0) {
    log_error ("%s:%d: export '%s': cannot serve in mode '%s'%s%s%s: %s",
               cfg->path, ce->line, ce->name,
               ncache_mode_name (ce->mode),
               ce->cache ? " on cache '" : "", ce->cache ? ce->cache : "",
               ce->cache ? "'" : "", strerror (-r));
    return r;
  }
  ncache_get_caps (exp->nc, &exp->caps);
  exp->name = strdup (ce->name);
  exp->description = ce->description ? strdup (ce->description) : NULL;
  if (exp->name == NULL || (ce->description && exp->description == NULL)) {
    ncache_close (exp->nc);
    free (exp->name);
    free (exp->description);
    return -ENOMEM;
  }
  exp->rotational = ce->rotational;
  exp->cfg = ce;
  exp->open_cfg = ce;
  exp->device = ncfg.device;
  exp->readonly = exp->caps.readonly || ce->readonly;
  exp->max_connections = ce->max_connections;
  log_debug ("export '%s': %s, %" PRIu64 " bytes, mode %s%s%s%s",
             exp->name, ce->backing, exp->caps.size_bytes,
             ncache_mode_name (ce->mode),
             ce->cache ? ", cache " : "", ce->cache ? ce->cache : "",
             exp->caps.readonly ? ", read-only" : "");
  if (ce->cache != NULL)
    log_debug ("export '%s': writeback_percent %u, sequential_cutoff %"
               PRIu64 ", flush_on_stop %s", exp->name,
               tuning.writeback_percent, tuning.sequential_cutoff_bytes,
               tuning.flush_on_stop ? "yes" : "no");
  return 0;
}

void
export_close (struct export *exp, bool log_stats)
{
  int r;

  if (!exp->caps.readonly && (r = ncache_flush (exp->nc, 0)) < 0)
    log_error ("export '%s': final flush failed: %s",
               exp->name, strerror (-r));
  if (log_stats)
    ncache_log_stats (exp->nc, exp->name);   /* tests read hits */
  ncache_close (exp->nc);
  exp->nc = NULL;
}

void
export_free (struct export *exp)
{
  if (exp == NULL)
    return;
  free (exp->name);
  free (exp->description);
  free (exp);
}

void
export_table_close (struct server *srv, bool log_stats)
{
  size_t i;

  for (i = 0; i < srv->nr_exports; i++) {
    export_close (srv->exports[i], log_stats);
    export_free (srv->exports[i]);
  }
  free (srv->exports);
  srv->exports = NULL;
  srv->nr_exports = 0;
  srv->default_export = NULL;
  if (log_stats && srv->devices != NULL)
    for (i = 0; i < srv->cfg->nr_caches; i++)
      if (srv->devices[i] != NULL)
        ncache_device_log_stats (srv->devices[i]);
  close_devices (srv);
}

int
export_table_open (struct server *srv)
{
  const struct config *cfg = srv->cfg;
  const struct config_export *def;
  size_t i;
  int r;

  if ((r = open_devices (srv)) < 0)
    return r;
  srv->exports = calloc (cfg->nr_exports ? cfg->nr_exports : 1,
                         sizeof *srv->exports);
  if (srv->exports == NULL) {
    close_devices (srv);
    return -ENOMEM;
  }
  for (i = 0; i < cfg->nr_exports; i++) {
    struct export *exp = calloc (1, sizeof *exp);

    r = exp ? export_open (srv, cfg, srv->devices, &cfg->exports[i], exp)
            : -ENOMEM;
    if (r < 0) {
      free (exp);
      export_table_close (srv, false);
      return r;
    }
    srv->exports[srv->nr_exports++] = exp;
  }
  def = config_find_export (cfg, "");
  srv->default_export = NULL;
  if (def != NULL)
    for (i = 0; i < srv->nr_exports; i++)
      if (strcmp (srv->exports[i]->name, def->name) == 0)
        srv->default_export = srv->exports[i];
  return 0;
}

struct export *
export_find (struct server *srv, const char *name, size_t len)
{
  size_t i;

  if (len == 0)
    return srv->default_export;
  for (i = 0; i < srv->nr_exports; i++)
    if (strlen (srv->exports[i]->name) == len &&
        memcmp (srv->exports[i]->name, name, len) == 0)
      return srv->exports[i];
  return NULL;
}

uint16_t
export_eflags (const struct export *exp, bool structured)
{
  uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
               NBD_FLAG_CAN_MULTI_CONN | NBD_FLAG_SEND_CACHE;

  if (exp->readonly)
    f |= NBD_FLAG_READ_ONLY;
  else
    f |= NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES |
         NBD_FLAG_SEND_FAST_ZERO;
  if (exp->rotational)
    f |= NBD_FLAG_ROTATIONAL;
  if (structured)
    f |= NBD_FLAG_SEND_DF;
  return f;
}
