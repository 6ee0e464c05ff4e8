/* SPDX-License-Identifier: BSD-3-Clause */
/* config-params.c — key=value parameters read with the config file's rules.
 *
 * WHAT: a front end that takes its settings as key=value parameters
 * instead of a file (the nbdkit plugin's backing= form) builds a struct
 * config with one [export] and, when it sets a cache key, one [cache]
 * section, through the same key table, duplicate-key rule and value
 * checks as the file reader.
 * WHY: one table, one set of refusals: a value that nbdcached refuses in
 * its config file the plugin refuses as a parameter, with the same words
 * (only the key is spelt as the front end spells it, and there is no
 * FILE:LINE).
 * INVARIANTS: the config holds exactly one export (named "export") and,
 * after config_params_finish, nr_caches is 1 (named "cache", referenced by
 * the export) exactly when a cache key was set; the config's mode follows
 * the file's default (writethrough with a cache, else none).
 * THREADS AND LOCKS: none; one front end's parameters on one thread.
 * FAILURE: config_params_set logs the problem (log_error) and returns
 * -EINVAL, or -ENOMEM; the parameters keep their earlier values.
 * NOT HERE: the checks that need the whole file (a backing that exists, a
 * cache big enough, keys that fit together): the front end words those
 * for its own parameters; which parameters exist and their spelling (the
 * front end's table).
 */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config-file.h"
#include "config-internal.h"
#include "log.h"

struct config_params {
  struct parser p;              /* cfg, key lines, params = true */
  char *cwd;                    /* relative paths resolve against it */
  bool cache_set;               /* a [cache] key was given */
};

int
config_params_create (struct config_params **out)
{
  struct config_params *cp = calloc (1, sizeof *cp);
  char *cache = strdup ("cache"), *export = strdup ("export");
  int r = -ENOMEM;

  if (cp == NULL || cache == NULL || export == NULL)
    goto err;
  cp->p.params = true;
  cp->p.path = "parameters";
  if ((cp->cwd = getcwd (NULL, 0)) == NULL) {
    r = -errno;
    log_error ("getcwd: %s", strerror (errno));
    goto err;
  }
  cp->p.dir = cp->cwd;
  if ((cp->p.cfg = config_new ()) == NULL)
    goto err;
  if (config_add_cache (&cp->p, cache, 0) < 0)
    goto err;
  cache = NULL;
  if (config_add_export (&cp->p, export, 0) < 0)
    goto err;
  *out = cp;
  return 0;

 err:
  free (cache);
  free (export);
  config_params_free (cp);
  return r;
}

int
config_params_set (struct config_params *cp, const char *section,
                   const char *key, const char *spelling, const char *value)
{
  struct parser *p = &cp->p;
  unsigned errors = p->nr_errors;

  if (p->oom)
    return -ENOMEM;
  p->cur = strcmp (section, "cache") == 0 ? SECTION_CACHE : SECTION_EXPORT;
  p->cur_index = 0;
  p->key_spelling = spelling;
  p->lineno++;
  config_handle_key (p, key, value);
  p->key_spelling = NULL;
  if (p->oom) {
    log_error ("%s: out of memory", spelling);
    return -ENOMEM;
  }
  if (p->nr_errors != errors)
    return -EINVAL;
  if (p->cur == SECTION_CACHE)
    cp->cache_set = true;
  return 0;
}

int
config_params_finish (struct config_params *cp, const struct config **out)
{
  struct config *cfg = cp->p.cfg;
  struct config_export *e = &cfg->exports[0];

  if (cp->cache_set && cfg->nr_caches == 1 && e->cache == NULL) {
    if ((e->cache = strdup (cfg->caches[0].name)) == NULL)
      return -ENOMEM;
  }
  else if (!cp->cache_set && cfg->nr_caches == 1) {
    free (cfg->caches[0].name);
    cfg->nr_caches = 0;
  }
  if (cp->p.export_keys[0].line[KEY_export_mode] == 0)
    e->mode = e->cache ? NCACHE_MODE_WRITETHROUGH : NCACHE_MODE_NONE;
  *out = cfg;
  return 0;
}

void
config_params_free (struct config_params *cp)
{
  if (cp == NULL)
    return;
  config_free (cp->p.cfg);
  free (cp->p.cache_keys);
  free (cp->p.export_keys);
  free (cp->cwd);
  free (cp);
}
