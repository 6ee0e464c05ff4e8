/* export.c — the export table: config sections turned into engine handles.
 *
 * WHAT: opens every [export] of the config at start-up (backing store, then
 * the engine handle in the configured mode), finds exports by name, and
 * computes the transmission flags a connection is told.
 * WHY: all connections to an export share one engine handle, so a FLUSH on
 * one covers writes made on every other (the multi-conn promise).
 * INVARIANTS: after export_table_open succeeds every export has an open
 * engine handle and its caps; the table does not change while serving.
 * THREADS: opened and closed on the main thread before/after the loop runs;
 * lookups and nr_connections on the loop thread only.
 * FAILURE: any export that cannot be opened (missing backing, a cache mode
 * the engine cannot serve yet) fails start-up with a message naming the
 * export and the config line; nothing is served half-configured.
 * NOT HERE: parsing the config (config.c), per-connection negotiation.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "backing.h"
#include "log.h"
#include "server.h"

static int
export_open_one (struct server *srv, const struct config_export *ce,
                 struct export *exp)
{
  struct backing_open_options bopts = {
    .readonly = ce->readonly,
    .create_size_bytes = ce->size_bytes,
  };
  struct ncache_config ncfg = {
    .name = ce->name,
    .device = NULL,
    .mode = ce->mode,
    .readonly = ce->readonly,
  };
  struct backing *b;
  int r;

  if (ce->cache != NULL) {
    log_error ("%s:%d: export '%s': cache '%s': cache devices are not "
               "supported by this build yet (the cache engine lands in a "
               "later release); remove 'cache' and use mode = none",
               srv->cfg->path, ce->line, ce->name, ce->cache);
    return -ENOTSUP;
  }

  r = backing_open (ce->backing, &bopts, &b);
  if (r < 0) {
    log_error ("%s:%d: export '%s': cannot open backing '%s': %s",
               srv->cfg->path, ce->line, ce->name, ce->backing, strerror (-r));
    return r;
  }
  r = ncache_open (&ncfg, b, &exp->nc);       /* takes ownership of b */
  if (r < 0) {
    log_error ("%s:%d: export '%s': cannot serve in mode '%s': %s",
               srv->cfg->path, ce->line, ce->name,
               ncache_mode_name (ce->mode), strerror (-r));
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
  exp->max_connections = ce->max_connections;
  log_debug ("export '%s': %s, %" PRIu64 " bytes, mode %s%s",
             exp->name, ce->backing, exp->caps.size_bytes,
             ncache_mode_name (ce->mode), exp->caps.readonly ? ", read-only" : "");
  return 0;
}

int
export_table_open (struct server *srv)
{
  const struct config *cfg = srv->cfg;
  const struct config_export *def;
  size_t i;
  int r;

  srv->exports = calloc (cfg->nr_exports ? cfg->nr_exports : 1,
                         sizeof *srv->exports);
  if (srv->exports == NULL)
    return -ENOMEM;
  for (i = 0; i < cfg->nr_exports; i++) {
    r = export_open_one (srv, &cfg->exports[i], &srv->exports[i]);
    if (r < 0) {
      export_table_close (srv);
      return r;
    }
    srv->nr_exports++;
  }
  def = config_find_export (cfg, "");
  srv->default_export = NULL;
  if (def != NULL)
    for (i = 0; i < srv->nr_exports; i++)
      if (strcmp (srv->exports[i].name, def->name) == 0)
        srv->default_export = &srv->exports[i];
  return 0;
}

/* Flushes and closes every export.  Safe on a partly opened table. */
void
export_table_close (struct server *srv)
{
  size_t i;

  for (i = 0; i < srv->nr_exports; i++) {
    struct export *exp = &srv->exports[i];
    int r;

    if (!exp->caps.readonly && (r = ncache_flush (exp->nc, 0)) < 0)
      log_error ("export '%s': final flush failed: %s",
                 exp->name, strerror (-r));
    ncache_close (exp->nc);
    free (exp->name);
    free (exp->description);
  }
  free (srv->exports);
  srv->exports = NULL;
  srv->nr_exports = 0;
  srv->default_export = NULL;
}

struct export *
export_find (struct server *srv, const char *name, size_t len)
{
  size_t i;

  if (len == 0)
    return srv->default_export;
  for (i = 0; i < srv->nr_exports; i++)
    if (strlen (srv->exports[i].name) == len &&
        memcmp (srv->exports[i].name, name, len) == 0)
      return &srv->exports[i];
  return NULL;
}

uint16_t
export_eflags (const struct export *exp, bool structured)
{
  uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
               NBD_FLAG_CAN_MULTI_CONN | NBD_FLAG_SEND_CACHE;

  if (exp->caps.readonly)
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
