/* SPDX-License-Identifier: BSD-3-Clause */
/* params.c — the plugin's key=value parameters.
 *
 * WHAT: the parameters nbdkit passes (backing=, cache=, mode= …, or
 * config=FILE export=NAME), checked and turned into the export the
 * plugin serves (params.h).  Each backing= parameter is a key of the
 * config file's [export] or [cache] section, spelt with '-' for '_' (cache=
 * is [cache] path, cache-size= its size): its value goes through the
 * config library's key table (config_params_set), so a value nbdcached
 * refuses in its config file the plugin refuses with the same words.
 * Three parameters are the plugin's own: config=, export= and
 * allow-shrink=.
 * WHY: one set of rules for both front ends; the plugin only says how
 * its parameters fit together, in its own words (cache=PATH, not
 * [cache NAME]).
 * INVARIANTS: after params_config_complete, plugin_export.exp is set and,
 * for backing=, the rules of nbdcached.conf(5) that tie keys together
 * hold (the same as config_load's checks, worded for parameters).
 * THREADS AND LOCKS: nbdkit calls these while single-threaded; no lock.
 * FAILURE: every refusal is one nbdkit_error (or the library's log line,
 * which the plugin's log sink turns into one) and -1.
 * NOT HERE: opening the export, the callbacks (nbdcache.c); the values'
 * rules (common/config/config-values.c).
 */
#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>
#undef ATTRIBUTE_FORMAT_PRINTF

#include "backing.h"
#include "cache.h"
#include "compiler.h"
#include "config-file.h"
#include "params.h"
#include "parse.h"

struct plugin_export plugin_export;

/* A parameter: a key of the config file (section, key), or the plugin's
 * own (section NULL).
 */
struct param {
  const char *name;
  const char *section;
  const char *key;
};

static const struct param params[] = {
  { "backing", "export", "backing" },
  { "size", "export", "size" },
  { "mode", "export", "mode" },
  { "description", "export", "description" },
  { "readonly", "export", "readonly" },
  { "rotational", "export", "rotational" },
  { "writeback-percent", "export", "writeback_percent" },
  { "sequential-cutoff", "export", "sequential_cutoff" },
  { "promote-min", "export", "promote_min" },
  { "flush-on-stop", "export", "flush_on_stop" },
  { "backing-connections", "export", "backing_connections" },
  { "backing-timeout", "export", "backing_timeout" },
  { "backing-tls-certificates", "export", "backing_tls_certificates" },
  { "backing-tls-verify", "export", "backing_tls_verify" },
  { "backing-tls-psk-file", "export", "backing_tls_psk_file" },
  { "backing-tls-username", "export", "backing_tls_username" },
  { "ceph-conf", "export", "ceph_conf" },
  { "ceph-id", "export", "ceph_id" },
  { "ceph-keyring", "export", "ceph_keyring" },
  { "ceph-key", "export", "ceph_key" },
  { "cache", "cache", "path" },
  { "create", "cache", "create" },
  { "cache-size", "cache", "size" },
  { "discard", "cache", "discard" },
  { "config", NULL, NULL },
  { "export", NULL, NULL },
  { "allow-shrink", NULL, NULL },
};
#define NR_PARAMS ARRAY_SIZE (params)

static struct {
  bool given[NR_PARAMS];
  struct config_params *cp;     /* the backing= parameters */
  struct config *file;          /* config=FILE, loaded */
  char *config_path;
  char *export_name;
} s;

static const struct param *
find_param (const char *name)
{
  size_t i;

  for (i = 0; i < NR_PARAMS; i++)
    if (strcmp (params[i].name, name) == 0)
      return &params[i];
  return NULL;
}

static bool
given (const char *name)
{
  const struct param *prm = find_param (name);

  return prm != NULL && s.given[prm - params];
}

/* The first of names (NULL-terminated) that was given, or NULL. */
static const char *
first_given (const char *const *names)
{
  for (; *names; names++)
    if (given (*names))
      return *names;
  return NULL;
}

static const char *const remote_params[] = {
  "backing-connections", "backing-timeout", "backing-tls-certificates",
  "backing-tls-verify", "backing-tls-psk-file", "backing-tls-username",
  NULL
};
static const char *const remote_tls_params[] = {
  "backing-tls-certificates", "backing-tls-verify", "backing-tls-psk-file",
  "backing-tls-username", NULL
};
static const char *const ceph_params[] = {
  "ceph-conf", "ceph-id", "ceph-keyring", "ceph-key", NULL
};

/* The plugin's own parameters. */
static int
own_param (const struct param *prm, const char *value)
{
  const char *name = prm->name;

  if (strcmp (name, "allow-shrink") == 0) {
    if (parse_bool (value, &plugin_export.allow_shrink) < 0) {
      nbdkit_error ("invalid %s '%s': expected yes/no, true/false, on/off "
                    "or 1/0", name, value);
      return -1;
    }
    return 0;
  }
  if (strcmp (name, "config") == 0)
    return (s.config_path = nbdkit_absolute_path (value)) ? 0 : -1;
  if ((s.export_name = strdup (value)) == NULL) {
    nbdkit_error ("strdup: %m");
    return -1;
  }
  return 0;
}

int
params_config (const char *key, const char *value)
{
  const struct param *prm = find_param (key);

  if (prm == NULL) {
    nbdkit_error ("unknown parameter '%s' (see nbdkit nbdcache --help)", key);
    return -1;
  }
  if (prm->section == NULL) {
    if (s.given[prm - params]) {
      nbdkit_error ("duplicate key '%s' (first set at an earlier parameter)",
                    key);
      return -1;
    }
    if (own_param (prm, value) < 0)
      return -1;
  }
  else {
    if (s.cp == NULL && config_params_create (&s.cp) < 0)
      return -1;                /* logged */
    if (config_params_set (s.cp, prm->section, prm->key, prm->name,
                           value) < 0)
      return -1;                /* logged, with the file's words */
  }
  s.given[prm - params] = true;
  return 0;
}

/* backing=rbd:… : the parameters fit an RBD backing as the [export] keys
 * must (nbdcached.conf(5)).  1 if the backing is not rbd:.
 */
static int
check_rbd_params (const struct config_export *e)
{
  if (!backing_is_rbd_uri (e->backing)) {
    if (first_given (ceph_params) != NULL) {
      nbdkit_error ("%s= is used only with a Ceph RBD backing "
                    "(backing=rbd:POOL/IMAGE)", first_given (ceph_params));
      return -1;
    }
    return 1;
  }
  if (given ("size")) {
    nbdkit_error ("size= creates a local backing file; an RBD backing's "
                  "size is the image's");
    return -1;
  }
  if (given ("backing-connections") || first_given (remote_tls_params)) {
    nbdkit_error ("only backing-timeout= of the backing-*= parameters "
                  "applies to an RBD backing");
    return -1;
  }
  if (e->ceph_key && e->ceph_keyring) {
    nbdkit_error ("ceph-key= and ceph-keyring=: give the key or the "
                  "keyring file, not both");
    return -1;
  }
  return 0;
}

/* backing= form: the remote parameters fit the backing as the [export]
 * keys must (nbdcached.conf(5)).
 */
static int
check_remote_params (const struct config_export *e)
{
  if (!backing_is_remote_uri (e->backing)) {
    if (first_given (remote_params) != NULL) {
      nbdkit_error ("%s= is used only with a remote backing "
                    "(backing=nbd://…)", first_given (remote_params));
      return -1;
    }
    return 0;
  }
  if (given ("size")) {
    nbdkit_error ("size= creates a local backing file; a remote backing's "
                  "size is the remote's");
    return -1;
  }
  if (first_given (remote_tls_params) && !backing_is_tls_uri (e->backing)) {
    nbdkit_error ("backing-tls-*= are used only with TLS to the remote: "
                  "write the backing URI as nbds:// or nbds+unix://");
    return -1;
  }
  if (e->backing_tls_username && !e->backing_tls_psk_file) {
    nbdkit_error ("backing-tls-username= is the PSK identity: it needs "
                  "backing-tls-psk-file=");
    return -1;
  }
  if (e->backing_tls_psk_file && e->backing_tls_certificates) {
    nbdkit_error ("backing-tls-psk-file= and backing-tls-certificates=: "
                  "choose PSK or X.509");
    return -1;
  }
  return 0;
}

/* backing= form: the cache parameters fit together as the [cache] and
 * [export] keys must (nbdcached.conf(5)).
 */
static int
check_cache_params (const struct config_export *e,
                    const struct config_cache *cc)
{
  static const char *const cache_only[] = {
    "create", "cache-size", "discard", "writeback-percent",
    "sequential-cutoff", "flush-on-stop", NULL
  };

  if (!given ("cache")) {
    if (first_given (cache_only) != NULL) {
      nbdkit_error ("%s= needs cache=PATH (it tunes the cache device)",
                    first_given (cache_only));
      return -1;
    }
    if (e->mode != NCACHE_MODE_NONE) {
      nbdkit_error ("mode=%s needs a cache device: add cache=PATH or use "
                    "mode=none", ncache_mode_name (e->mode));
      return -1;
    }
    return 0;
  }
  if (e->mode == NCACHE_MODE_NONE) {
    nbdkit_error ("mode=none with cache=%s: use writeback, writethrough or "
                  "writearound, or remove cache=", cc->path);
    return -1;
  }
  if (given ("cache-size") && !cc->create) {
    nbdkit_error ("cache-size= is used only when create=yes creates a new "
                  "cache file: add create=yes or remove cache-size=");
    return -1;
  }
  return 0;
}

/* config=FILE export=NAME: every export setting comes from the file. */
static int
config_from_file (void)
{
  const char *name = s.export_name ? s.export_name : "";
  const struct config_export *e;
  size_t i;

  for (i = 0; i < NR_PARAMS; i++) {
    if (s.given[i] && params[i].section != NULL) {
      nbdkit_error ("%s= cannot be combined with config=: set %s in the "
                    "[%s] section of %s", params[i].name, params[i].key,
                    params[i].section, s.config_path);
      return -1;
    }
  }
  if (config_load (s.config_path, &s.file) < 0) {
    nbdkit_error ("config=%s: the config file is not valid (see the errors "
                  "above)", s.config_path);
    return -1;
  }
  if ((e = config_find_export (s.file, name)) == NULL) {
    if (*name)
      nbdkit_error ("config=%s: no [export %s] section", s.config_path, name);
    else
      nbdkit_error ("config=%s: no default export (set export=NAME, or "
                    "default_export in [server])", s.config_path);
    return -1;
  }
  /* Fail closed: a rule the plugin cannot enforce must not be ignored. */
  if (e->nr_allow_subjects > 0) {
    nbdkit_error ("config=%s: export '%s' has allow_subjects, but nbdkit "
                  "does not show plugins the client certificate; serve it "
                  "with nbdcached", s.config_path, e->name);
    return -1;
  }
  plugin_export.cfg = s.file;
  plugin_export.exp = e;
  /* config_load checked that cache names a section. */
  plugin_export.cc = e->cache ? config_find_cache (s.file, e->cache) : NULL;
  plugin_export.config_path = s.config_path;
  return 0;
}

/* backing= form. */
static int
config_from_params (void)
{
  const struct config *cfg;
  const struct config_export *e;
  const struct config_cache *cc;

  if (config_params_finish (s.cp, &cfg) < 0) {
    nbdkit_error ("out of memory");
    return -1;
  }
  e = &cfg->exports[0];
  cc = e->cache ? &cfg->caches[0] : NULL;
  switch (check_rbd_params (e)) {
  case 0:
    break;                      /* rbd: checked */
  case 1:
    if (check_remote_params (e) < 0)
      return -1;
    break;
  default:
    return -1;
  }
  if (check_cache_params (e, cc) < 0)
    return -1;
  plugin_export.cfg = cfg;
  plugin_export.exp = e;
  plugin_export.cc = cc;
  return 0;
}

int
params_config_complete (void)
{
  if (s.config_path != NULL && given ("backing")) {
    nbdkit_error ("backing= and config= are mutually exclusive: give "
                  "backing=FILE, or config=FILE export=NAME");
    return -1;
  }
  if (s.config_path != NULL)
    return config_from_file ();
  if (s.export_name != NULL) {
    nbdkit_error ("export= needs config=FILE (it names an [export] section)");
    return -1;
  }
  if (!given ("backing")) {
    nbdkit_error ("backing=FILE or config=FILE export=NAME is required");
    return -1;
  }
  return config_from_params ();
}

void
params_free (void)
{
  config_params_free (s.cp);
  config_free (s.file);
  free (s.config_path);
  free (s.export_name);
  memset (&s, 0, sizeof s);
  memset (&plugin_export, 0, sizeof plugin_export);
}
