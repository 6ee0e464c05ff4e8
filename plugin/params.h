/* SPDX-License-Identifier: BSD-3-Clause */
/* params.h — the plugin's parameters and the one export they describe.
 *
 * Owns: the export's settings, from config=FILE export=NAME or from the
 * backing= parameters; both end as a struct config of the config library
 * (common/config), read by its key table and value checks.
 * Threads: written only while nbdkit is single-threaded (config,
 * config_complete), read-only afterwards.
 * Not here: opening the export (nbdcache.c).
 */
#ifndef NBDCACHE_PLUGIN_PARAMS_H
#define NBDCACHE_PLUGIN_PARAMS_H

#include <stdbool.h>

#include "config-file.h"

struct plugin_export {
  const struct config *cfg;     /* the file's or the parameters'; NULL
                                   before config_complete */
  const struct config_export *exp; /* in cfg */
  const struct config_cache *cc;   /* in cfg; NULL = uncached */
  const char *config_path;      /* config=, absolute; NULL = backing= */
  bool allow_shrink;            /* allow-shrink= (cache.h) */
};

/* The one export of this plugin instance (nbdkit loads a plugin once). */
extern struct plugin_export plugin_export;

/* nbdkit's .config: one key=value parameter.  0, or -1 after
 * nbdkit_error.
 */
int params_config (const char *key, const char *value);
/* nbdkit's .config_complete: the parameters fit together, or config=
 * loads; plugin_export is filled in.  0, or -1 after nbdkit_error.
 */
int params_config_complete (void);
/* Frees everything; plugin_export is zeroed. */
void params_free (void);

#endif /* NBDCACHE_PLUGIN_PARAMS_H */
