/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdcache.c — the nbdkit plugin: nbdkit callbacks onto cache.h.
 *
 * WHAT: nbdkit-nbdcache-plugin.so.  Serves one export, given either as
 * parameters (backing=FILE|URI [size=] [cache=PATH [create=] [cache-size=]
 * [discard=] [writeback-percent=] [sequential-cutoff=] [flush-on-stop=]]
 * [mode=] [description=] [readonly=] [rotational=], and for a remote
 * backing=nbd://… [backing-connections=] [backing-timeout=]
 * [backing-tls-certificates=] [backing-tls-verify=] [backing-tls-psk-file=]
 * [backing-tls-username=], and for an RBD image backing=rbd:POOL/IMAGE
 * [backing-timeout=] [ceph-conf=] [ceph-id=] [ceph-keyring=] [ceph-key=])
 * or as an [export NAME]
 * section of an nbdcached config file (config=FILE export=NAME), whose
 * [cache] section then describes the cache device.  Every callback is a
 * line or two that translates nbdkit's arguments and flags onto the
 * engine's API.
 * WHY: people who already run nbdkit get the same engine, the same config
 * file and the same refusals as nbdcached.
 * INVARIANTS:
 * - Exactly one cache device (or none) and one ncache on it, shared by
 *   every connection (multi-conn: a flush on one connection covers writes
 *   from all).  The export is closed before the device.
 * - WHEN THINGS OPEN: the engine starts threads when a cache device opens,
 *   and nbdkit forks after get_ready (into the background, and for --run,
 *   whose command runs in the parent), which would leave those threads
 *   behind.  So the device and the export are opened for serving in
 *   after_fork.  Errors there are easy to miss (the server may already
 *   be in the background, the --run command already started), so
 *   get_ready first opens and closes them once as a check: a missing or
 *   foreign cache device, a backing store that does not match it or a mode
 *   the engine refuses stops nbdkit there, visibly, before it serves or
 *   runs anything.  The price is a second open (a second recovery) at
 *   start-up.
 *   The check open starts no writeback thread and never flushes on stop
 *   (it would write back a previous run's dirty data before serving).
 * - Closed in cleanup (after logging the export's statistics), or in
 *   unload if nbdkit never reached cleanup.  With flush_on_stop the
 *   close (ncache_close) writes back every dirty block first, so nbdkit's
 *   shutdown waits for it.
 * - Engine errors (-errno) reach nbdkit through one function, set_error.
 * - The engine's log lines go to nbdkit_error / nbdkit_debug (log_set_sink).
 * THREADS AND LOCKS: NBDKIT_THREAD_MODEL_PARALLEL.  Parameters and the
 * loaded config are written only while nbdkit is single-threaded (config,
 * config_complete, get_ready, after_fork) and read-only afterwards; the
 * engine is thread-safe.  No lock here.
 * FAILURE: bad parameters and a config file error fail config_complete with
 * an nbdkit_error; an export the engine cannot serve (a device it refuses,
 * a mode it cannot serve) fails get_ready, so nbdkit exits at startup
 * instead of serving it uncached.
 * NOT HERE: range checks (nbdkit and the engine do them), caching policy.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>
/* nbdkit's headers define this too (sometimes empty); ours wins below. */
#undef ATTRIBUTE_FORMAT_PRINTF

#include "backing.h"
#include "cache.h"
#include "config-file.h"
#include "log.h"
#include "parse.h"

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

#define PLUGIN_MIN_BLOCK_BYTES       1
#define PLUGIN_PREFERRED_BLOCK_BYTES 4096
#define PLUGIN_MAX_BLOCK_BYTES       (64 * 1024 * 1024)

/* nbdkit loads a plugin once per process; this is that one instance. */
static struct {
  /* Parameters as given (NULL / unset when absent). */
  char *backing;                /* path (made absolute) or URI */
  uint64_t size_bytes;          /* size=; 0 (or absent) = must exist */
  bool size_set;
  enum ncache_mode mode;
  bool mode_set;
  char *description;
  bool readonly, readonly_set;
  bool rotational, rotational_set;
  char *config_path;            /* config=, made absolute */
  char *export_name;            /* export= */
  char *cache_path;             /* cache=, made absolute; NULL = uncached */
  bool create, create_set;      /* create=: format an unformatted device */
  uint64_t cache_size_bytes;    /* cache-size=: create the file this big */
  bool cache_size_set;
  bool discard, discard_set;    /* discard=: default yes */
  bool allow_shrink, allow_shrink_set; /* allow-shrink=: serve a cached
                                   backing that shrank (cache.h) */
  /* The [export] background-work keys, as parameters (need cache=). */
  uint64_t writeback_percent;   /* writeback-percent=: 0..100 */
  bool writeback_percent_set;
  uint64_t sequential_cutoff_bytes; /* sequential-cutoff=: 0 = off */
  bool sequential_cutoff_set;
  bool flush_on_stop, flush_on_stop_set; /* flush-on-stop= */
  /* The [export] remote-backing keys, as parameters (need backing=URI). */
  uint64_t backing_connections; /* backing-connections=: 0 = default */
  bool backing_connections_set;
  uint64_t backing_timeout_ms;  /* backing-timeout=: 0 = default */
  bool backing_timeout_set;
  char *backing_tls_certificates; /* backing-tls-certificates=, absolute */
  bool backing_tls_verify, backing_tls_verify_set; /* default yes */
  char *backing_tls_psk_file;   /* backing-tls-psk-file=, absolute */
  char *backing_tls_username;   /* backing-tls-username= */
  /* The [export] ceph_* keys, as parameters (need backing=rbd:…). */
  char *ceph_conf;              /* ceph-conf=, absolute */
  char *ceph_id;                /* ceph-id= */
  char *ceph_keyring;           /* ceph-keyring=, absolute */
  char *ceph_key;               /* ceph-key=: a secret */

  /* After config_complete. */
  struct config *cfg;           /* NULL with backing= */
  const struct config_export *exp; /* in cfg; NULL with backing= */

  /* After after_fork. */
  struct ncache_device *dev;    /* NULL: uncached */
  struct ncache *nc;
} p;

/* ---- errors and logging ---- */

/* THE map from the engine's -errno to nbdkit: the errno itself, which
 * nbdkit turns into the NBD error.  Returns -1 for the callback to return.
 */
static int
set_error (int r)
{
  nbdkit_set_error (r < 0 ? -r : EIO);
  return -1;
}

static void
log_to_nbdkit (enum log_level level, const char *msg)
{
  switch (level) {
  case LOG_LEVEL_ERROR:
    nbdkit_error ("%s", msg);
    break;
  case LOG_LEVEL_WARNING:
    nbdkit_error ("warning: %s", msg);
    break;
  case LOG_LEVEL_INFO:
  case LOG_LEVEL_DEBUG:
    nbdkit_debug ("%s", msg);
    break;
  }
}

/* ---- lifecycle ---- */

static void
nbdcache_load (void)
{
  log_set_sink (log_to_nbdkit);
}

/* The export's name in logs and statistics. */
static const char *
log_name (void)
{
  return p.exp ? p.exp->name : p.backing ? p.backing : "";
}

/* The lines nbdcached logs at shutdown (visible with nbdkit -v): the
 * export's, then its cache device's.
 */
static void
log_stats (struct ncache *nc, struct ncache_device *dev)
{
  ncache_log_stats (nc, log_name ());
  if (dev != NULL)
    ncache_device_log_stats (dev);
}

/* The export first, then the device it borrows.  NULLs are no-ops. */
static void
close_pair (struct ncache *nc, struct ncache_device *dev)
{
  ncache_close (nc);
  ncache_device_close (dev);
}

static void
close_export (void)
{
  if (p.nc != NULL)
    log_stats (p.nc, p.dev);
  close_pair (p.nc, p.dev);
  p.nc = NULL;
  p.dev = NULL;
}

static void
nbdcache_cleanup (void)
{
  close_export ();
}

static void
nbdcache_unload (void)
{
  close_export ();
  config_free (p.cfg);
  free (p.backing);
  free (p.description);
  free (p.config_path);
  free (p.export_name);
  free (p.cache_path);
  free (p.backing_tls_certificates);
  free (p.backing_tls_psk_file);
  free (p.backing_tls_username);
  free (p.ceph_conf);
  free (p.ceph_id);
  free (p.ceph_keyring);
  free (p.ceph_key);
  memset (&p, 0, sizeof p);
  log_set_sink (NULL);
}

/* ---- configuration ---- */

/* A path becomes absolute (nbdkit may change directory); a URI is kept. */
static char *
backing_location (const char *value)
{
  if (strncmp (value, "memory:", 7) == 0 || strstr (value, "://") != NULL ||
      backing_is_rbd_uri (value))
    return strdup (value);
  return nbdkit_absolute_path (value);
}

static int
set_string (char **field, const char *key, const char *value, bool path)
{
  if (*field != NULL) {
    nbdkit_error ("%s= given twice", key);
    return -1;
  }
  *field = path ? nbdkit_absolute_path (value) : strdup (value);
  if (*field == NULL) {
    if (!path)
      nbdkit_error ("strdup: %m");
    return -1;
  }
  return 0;
}

static int
set_bool (bool *field, bool *set, const char *key, const char *value)
{
  if (*set) {
    nbdkit_error ("%s= given twice", key);
    return -1;
  }
  if (parse_bool (value, field) < 0) {
    nbdkit_error ("%s=%s: expected yes/no, true/false, on/off or 1/0",
                  key, value);
    return -1;
  }
  *set = true;
  return 0;
}

static int
nbdcache_config (const char *key, const char *value)
{
  if (strcmp (key, "backing") == 0) {
    if (p.backing != NULL) {
      nbdkit_error ("backing= given twice");
      return -1;
    }
    if ((p.backing = backing_location (value)) == NULL) {
      nbdkit_error ("backing=%s: %m", value);
      return -1;
    }
    return 0;
  }
  if (strcmp (key, "size") == 0) {
    if (p.size_set) {
      nbdkit_error ("size= given twice");
      return -1;
    }
    if (parse_size_bytes (value, &p.size_bytes) < 0 ||
        p.size_bytes > INT64_MAX) {
      nbdkit_error ("size=%s: expected a size in bytes such as 1G or 512M",
                    value);
      return -1;
    }
    p.size_set = true;
    return 0;
  }
  if (strcmp (key, "mode") == 0) {
    if (p.mode_set) {
      nbdkit_error ("mode= given twice");
      return -1;
    }
    if (ncache_mode_from_string (value, &p.mode) < 0) {
      nbdkit_error ("mode=%s: expected none, writeback, writethrough or "
                    "writearound", value);
      return -1;
    }
    p.mode_set = true;
    return 0;
  }
  if (strcmp (key, "description") == 0)
    return set_string (&p.description, key, value, false);
  if (strcmp (key, "readonly") == 0)
    return set_bool (&p.readonly, &p.readonly_set, key, value);
  if (strcmp (key, "rotational") == 0)
    return set_bool (&p.rotational, &p.rotational_set, key, value);
  if (strcmp (key, "config") == 0)
    return set_string (&p.config_path, key, value, true);
  if (strcmp (key, "export") == 0)
    return set_string (&p.export_name, key, value, false);
  if (strcmp (key, "cache") == 0)
    return set_string (&p.cache_path, key, value, true);
  if (strcmp (key, "create") == 0)
    return set_bool (&p.create, &p.create_set, key, value);
  if (strcmp (key, "allow-shrink") == 0)
    return set_bool (&p.allow_shrink, &p.allow_shrink_set, key, value);
  if (strcmp (key, "cache-size") == 0) {
    if (p.cache_size_set) {
      nbdkit_error ("cache-size= given twice");
      return -1;
    }
    if (parse_size_bytes (value, &p.cache_size_bytes) < 0 ||
        p.cache_size_bytes == 0 || p.cache_size_bytes > INT64_MAX) {
      nbdkit_error ("cache-size=%s: expected a size in bytes such as 10G",
                    value);
      return -1;
    }
    p.cache_size_set = true;
    return 0;
  }
  if (strcmp (key, "discard") == 0)
    return set_bool (&p.discard, &p.discard_set, key, value);
  if (strcmp (key, "flush-on-stop") == 0)
    return set_bool (&p.flush_on_stop, &p.flush_on_stop_set, key, value);
  if (strcmp (key, "writeback-percent") == 0) {
    if (p.writeback_percent_set) {
      nbdkit_error ("writeback-percent= given twice");
      return -1;
    }
    if (parse_uint64_range (value, 0, CONFIG_MAX_WRITEBACK_PERCENT,
                            &p.writeback_percent) < 0) {
      nbdkit_error ("writeback-percent=%s: expected an integer from 0 to %u",
                    value, CONFIG_MAX_WRITEBACK_PERCENT);
      return -1;
    }
    p.writeback_percent_set = true;
    return 0;
  }
  if (strcmp (key, "sequential-cutoff") == 0) {
    if (p.sequential_cutoff_set) {
      nbdkit_error ("sequential-cutoff= given twice");
      return -1;
    }
    if (parse_size_bytes (value, &p.sequential_cutoff_bytes) < 0) {
      nbdkit_error ("sequential-cutoff=%s: expected a size such as 4M or "
                    "512K, or 0 (off)", value);
      return -1;
    }
    p.sequential_cutoff_set = true;
    return 0;
  }

  if (strcmp (key, "backing-connections") == 0) {
    if (p.backing_connections_set) {
      nbdkit_error ("backing-connections= given twice");
      return -1;
    }
    if (parse_uint64_range (value, 1, CONFIG_MAX_BACKING_CONNECTIONS,
                            &p.backing_connections) < 0) {
      nbdkit_error ("backing-connections=%s: expected an integer from 1 "
                    "to %u", value, CONFIG_MAX_BACKING_CONNECTIONS);
      return -1;
    }
    p.backing_connections_set = true;
    return 0;
  }
  if (strcmp (key, "backing-timeout") == 0) {
    if (p.backing_timeout_set) {
      nbdkit_error ("backing-timeout= given twice");
      return -1;
    }
    if (parse_duration_ms (value, 1, CONFIG_MAX_BACKING_TIMEOUT_MS,
                           &p.backing_timeout_ms) < 0) {
      nbdkit_error ("backing-timeout=%s: expected seconds (30, 30s) or "
                    "milliseconds (500ms)", value);
      return -1;
    }
    p.backing_timeout_set = true;
    return 0;
  }
  if (strcmp (key, "backing-tls-certificates") == 0)
    return set_string (&p.backing_tls_certificates, key, value, true);
  if (strcmp (key, "backing-tls-verify") == 0)
    return set_bool (&p.backing_tls_verify, &p.backing_tls_verify_set, key,
                     value);
  if (strcmp (key, "backing-tls-psk-file") == 0)
    return set_string (&p.backing_tls_psk_file, key, value, true);
  if (strcmp (key, "backing-tls-username") == 0)
    return set_string (&p.backing_tls_username, key, value, false);
  if (strcmp (key, "ceph-conf") == 0)
    return set_string (&p.ceph_conf, key, value, true);
  if (strcmp (key, "ceph-id") == 0)
    return set_string (&p.ceph_id, key, value, false);
  if (strcmp (key, "ceph-keyring") == 0)
    return set_string (&p.ceph_keyring, key, value, true);
  if (strcmp (key, "ceph-key") == 0)
    return set_string (&p.ceph_key, key, value, false);

  nbdkit_error ("unknown parameter '%s' (see nbdkit nbdcache --help)", key);
  return -1;
}

/* The config file's key for a parameter (cache= is the [cache] section's
 * path, cache-size= its size; the file spells the others with '_').
 */
static const char *
file_key (const char *param)
{
  static const char *const keys[][2] = {
    { "cache", "path" },
    { "cache-size", "size" },
    { "writeback-percent", "writeback_percent" },
    { "sequential-cutoff", "sequential_cutoff" },
    { "flush-on-stop", "flush_on_stop" },
    { "backing-connections", "backing_connections" },
    { "backing-timeout", "backing_timeout" },
    { "backing-tls-certificates", "backing_tls_certificates" },
    { "backing-tls-verify", "backing_tls_verify" },
    { "backing-tls-psk-file", "backing_tls_psk_file" },
    { "backing-tls-username", "backing_tls_username" },
    { "ceph-conf", "ceph_conf" },
    { "ceph-id", "ceph_id" },
    { "ceph-keyring", "ceph_keyring" },
    { "ceph-key", "ceph_key" },
  };
  size_t i;

  for (i = 0; i < sizeof keys / sizeof keys[0]; i++)
    if (strcmp (param, keys[i][0]) == 0)
      return keys[i][1];
  return param;
}

/* The first remote-backing parameter given, or NULL. */
static const char *
remote_param (void)
{
  return p.backing_connections_set ? "backing-connections"
    : p.backing_timeout_set ? "backing-timeout"
    : p.backing_tls_certificates ? "backing-tls-certificates"
    : p.backing_tls_verify_set ? "backing-tls-verify"
    : p.backing_tls_psk_file ? "backing-tls-psk-file"
    : p.backing_tls_username ? "backing-tls-username" : NULL;
}

/* The first ceph-*= parameter given, or NULL. */
static const char *
ceph_param (void)
{
  return p.ceph_conf ? "ceph-conf" : p.ceph_id ? "ceph-id"
    : p.ceph_keyring ? "ceph-keyring" : p.ceph_key ? "ceph-key" : NULL;
}

/* backing=rbd:… form: the parameters fit an RBD backing as the [export]
 * keys must (nbdcached.conf(5)).  1 if the backing is not rbd:.
 */
static int
check_rbd_params (void)
{
  if (!backing_is_rbd_uri (p.backing)) {
    if (ceph_param () != NULL) {
      nbdkit_error ("%s= is used only with a Ceph RBD backing "
                    "(backing=rbd:POOL/IMAGE)", ceph_param ());
      return -1;
    }
    return 1;
  }
  if (!backing_rbd_uri_valid (p.backing)) {
    nbdkit_error ("backing=%s: expected rbd:POOL/IMAGE", p.backing);
    return -1;
  }
  if (p.size_set) {
    nbdkit_error ("size= creates a local backing file; an RBD backing's "
                  "size is the image's");
    return -1;
  }
  if (p.backing_connections_set || p.backing_tls_certificates ||
      p.backing_tls_verify_set || p.backing_tls_psk_file ||
      p.backing_tls_username) {
    nbdkit_error ("only backing-timeout= of the backing-*= parameters "
                  "applies to an RBD backing");
    return -1;
  }
  if (p.ceph_key && p.ceph_keyring) {
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
check_remote_params (void)
{
  const char *param = remote_param ();
  bool tls_param = p.backing_tls_certificates || p.backing_tls_verify_set
    || p.backing_tls_psk_file || p.backing_tls_username;

  if (!backing_is_remote_uri (p.backing)) {
    if (param != NULL) {
      nbdkit_error ("%s= is used only with a remote backing "
                    "(backing=nbd://…)", param);
      return -1;
    }
    return 0;
  }
  if (p.size_set) {
    nbdkit_error ("size= creates a local backing file; a remote backing's "
                  "size is the remote's");
    return -1;
  }
  if (tls_param && !backing_is_tls_uri (p.backing)) {
    nbdkit_error ("backing-tls-*= are used only with TLS to the remote: "
                  "write the backing URI as nbds:// or nbds+unix://");
    return -1;
  }
  if (p.backing_tls_username && !p.backing_tls_psk_file) {
    nbdkit_error ("backing-tls-username= is the PSK identity: it needs "
                  "backing-tls-psk-file=");
    return -1;
  }
  if (p.backing_tls_psk_file && p.backing_tls_certificates) {
    nbdkit_error ("backing-tls-psk-file= and backing-tls-certificates=: "
                  "choose PSK or X.509");
    return -1;
  }
  return 0;
}

/* config=FILE export=NAME: every export setting comes from the file. */
static int
config_from_file (void)
{
  const char *name = p.export_name ? p.export_name : "";
  const char *extra_export = p.size_set ? "size" : p.mode_set ? "mode"
    : p.description ? "description" : p.readonly_set ? "readonly"
    : p.rotational_set ? "rotational"
    : p.writeback_percent_set ? "writeback-percent"
    : p.sequential_cutoff_set ? "sequential-cutoff"
    : p.flush_on_stop_set ? "flush-on-stop"
    : remote_param () ? remote_param () : ceph_param ();
  const char *extra_cache = p.cache_path ? "cache" : p.create_set ? "create"
    : p.cache_size_set ? "cache-size" : p.discard_set ? "discard" : NULL;

  if (extra_export != NULL || extra_cache != NULL) {
    const char *param = extra_export ? extra_export : extra_cache;

    nbdkit_error ("%s= cannot be combined with config=: set %s in the "
                  "[%s] section of %s", param, file_key (param),
                  extra_export ? "export" : "cache", p.config_path);
    return -1;
  }
  if (config_load (p.config_path, &p.cfg) < 0) {
    nbdkit_error ("config=%s: the config file is not valid (see the errors "
                  "above)", p.config_path);
    return -1;
  }
  p.exp = config_find_export (p.cfg, name);
  if (p.exp == NULL) {
    if (*name)
      nbdkit_error ("config=%s: no [export %s] section", p.config_path, name);
    else
      nbdkit_error ("config=%s: no default export (set export=NAME, or "
                    "default_export in [server])", p.config_path);
    return -1;
  }
  /* Fail closed: a rule the plugin cannot enforce must not be ignored. */
  if (p.exp->nr_allow_subjects > 0) {
    nbdkit_error ("config=%s: export '%s' has allow_subjects, but nbdkit "
                  "does not show plugins the client certificate; serve it "
                  "with nbdcached", p.config_path, p.exp->name);
    return -1;
  }
  return 0;
}

/* backing= form: the cache parameters fit together as the [cache] and
 * [export] keys must (nbdcached.conf(5)).
 */
static int
check_cache_params (void)
{
  const char *cache_only = p.create_set ? "create"
    : p.cache_size_set ? "cache-size" : p.discard_set ? "discard"
    : p.writeback_percent_set ? "writeback-percent"
    : p.sequential_cutoff_set ? "sequential-cutoff"
    : p.flush_on_stop_set ? "flush-on-stop" : NULL;

  if (p.cache_path == NULL) {
    if (cache_only != NULL) {
      nbdkit_error ("%s= needs cache=PATH (it tunes the cache device)",
                    cache_only);
      return -1;
    }
    if (p.mode_set && p.mode != NCACHE_MODE_NONE) {
      nbdkit_error ("mode=%s needs a cache device: add cache=PATH or use "
                    "mode=none", ncache_mode_name (p.mode));
      return -1;
    }
    return 0;
  }
  if (p.mode_set && p.mode == NCACHE_MODE_NONE) {
    nbdkit_error ("mode=none with cache=%s: use writeback, writethrough or "
                  "writearound, or remove cache=", p.cache_path);
    return -1;
  }
  if (p.cache_size_set && !p.create) {
    nbdkit_error ("cache-size= is used only when create=yes creates a new "
                  "cache file: add create=yes or remove cache-size=");
    return -1;
  }
  return 0;
}

static int
nbdcache_config_complete (void)
{
  if (p.config_path != NULL && p.backing != NULL) {
    nbdkit_error ("backing= and config= are mutually exclusive: give "
                  "backing=FILE, or config=FILE export=NAME");
    return -1;
  }
  if (p.config_path != NULL)
    return config_from_file ();
  if (p.export_name != NULL) {
    nbdkit_error ("export= needs config=FILE (it names an [export] section)");
    return -1;
  }
  if (p.backing == NULL) {
    nbdkit_error ("backing=FILE or config=FILE export=NAME is required");
    return -1;
  }
  switch (check_rbd_params ()) {
  case 0:
    break;                      /* rbd: checked */
  case 1:
    if (check_remote_params () < 0)
      return -1;
    break;
  default:
    return -1;
  }
  return check_cache_params ();
}

/* Opens the cache device (if the export has one), the backing store and
 * the export on them.  0 with *nc_out and *dev_out (NULL when uncached)
 * set, or -1 with everything closed and the reason given to nbdkit_error.
 * check: the get_ready check open (no writeback thread, no flush on stop).
 */
static int
open_export (struct ncache **nc_out, struct ncache_device **dev_out,
             bool check)
{
  struct backing_open_options opts = { 0 };
  struct ncache_export_tuning tuning;
  struct ncache_config ncfg = { .tuning = &tuning };
  struct ncache_device_config dcfg = { 0 };
  struct ncache_device *dev = NULL;
  const struct config_cache *cc = NULL;
  const char *location;
  struct backing *b;
  bool cached;

  ncfg.allow_shrink = p.allow_shrink;
  if (p.exp != NULL) {
    location = p.exp->backing;
    opts.readonly = p.exp->readonly;
    opts.share = p.exp->share_backing;
    opts.create_size_bytes = p.exp->size_bytes;
    ncfg.name = p.exp->name;
    ncfg.mode = p.exp->mode;
    ncfg.readonly = p.exp->readonly;
    /* config_load checked that cache names a section. */
    if (p.exp->cache != NULL)
      cc = config_find_cache (p.cfg, p.exp->cache);
    if (cc != NULL)
      config_cache_device_config (cc, &dcfg);
    cached = cc != NULL;
    ncache_export_tuning_default (&tuning);
    config_export_tuning (p.exp, &tuning);
    config_export_backing_options (p.exp, &opts.remote);
    config_export_ceph_options (p.exp, &opts.ceph);
  }
  else {
    location = p.backing;
    opts.readonly = p.readonly;
    opts.create_size_bytes = p.size_bytes;
    ncfg.name = p.backing;
    ncfg.readonly = p.readonly;
    cached = p.cache_path != NULL;
    if (p.mode_set)
      ncfg.mode = p.mode;
    else
      ncfg.mode = cached ? NCACHE_MODE_WRITETHROUGH : NCACHE_MODE_NONE;
    /* The other device settings: the engine's defaults, as a [cache]
     * section without them.
     */
    dcfg.name = p.cache_path;
    dcfg.path = p.cache_path;
    dcfg.size_bytes = p.cache_size_bytes;
    dcfg.create = p.create;
    dcfg.direct = true;
    dcfg.discard = p.discard_set ? p.discard : true;
    ncache_export_tuning_default (&tuning);
    if (p.writeback_percent_set)
      tuning.writeback_percent = (unsigned) p.writeback_percent;
    if (p.sequential_cutoff_set)
      tuning.sequential_cutoff_bytes = p.sequential_cutoff_bytes;
    if (p.flush_on_stop_set)
      tuning.flush_on_stop = p.flush_on_stop;
    opts.remote = (struct backing_remote_options) {
      .connections = (unsigned) p.backing_connections,
      .timeout_ms = (uint32_t) p.backing_timeout_ms,
      .tls_certificates = p.backing_tls_certificates,
      .tls_no_verify = p.backing_tls_verify_set && !p.backing_tls_verify,
      .tls_psk_file = p.backing_tls_psk_file,
      .tls_username = p.backing_tls_username,
    };
    opts.ceph = (struct backing_ceph_options) {
      .conf = p.ceph_conf,
      .id = p.ceph_id,
      .keyring = p.ceph_keyring,
      .key = p.ceph_key,
    };
  }
  if (check) {
    tuning.flush_on_stop = false;
    tuning.writeback_off = true;
  }

  /* The engine logged the reason; this names the config.  No strerror or
   * %m here: with the ASan runtime preloaded into nbdkit (a sanitizer
   * build of the plugin, see functions.sh) an error-message lookup leaves
   * glibc's locale lock so that nbdkit hangs at exit.
   */
  if (cached && ncache_device_open (&dcfg, &dev) < 0) {
    if (cc != NULL)
      nbdkit_error ("%s:%d: [cache %s]: cannot open cache device '%s' "
                    "(the reason is above)",
                    p.cfg->path, cc->line, cc->name, cc->path);
    else
      nbdkit_error ("cache=%s: cannot open the cache device (the reason is "
                    "above)", p.cache_path);
    return -1;
  }
  ncfg.device = dev;
  if (ncache_backing_open (dev, ncfg.name, location, &opts, &b) < 0) {
    ncache_device_close (dev);
    return -1;                  /* the driver logged why */
  }
  if (ncache_open (&ncfg, b, nc_out) < 0) {
    ncache_device_close (dev);
    return -1;                  /* ncache_open logged why (and closed b) */
  }
  *dev_out = dev;
  return 0;
}

/* The check open: see WHEN THINGS OPEN in the file comment. */
static int
nbdcache_get_ready (void)
{
  struct ncache_device *dev;
  struct ncache *nc;

  if (open_export (&nc, &dev, true) < 0)
    return -1;
  close_pair (nc, dev);
  return 0;
}

/* The open that serves, in the process that serves. */
static int
nbdcache_after_fork (void)
{
  return open_export (&p.nc, &p.dev, false);
}

/* Open connections, counted only when max_connections is set. */
static unsigned nr_connections;

/* ---- export names: with config=, exactly one named export ---- */

static const char *
served_name (void)
{
  return p.exp ? p.exp->name : "";
}

static int
nbdcache_list_exports (int readonly, int is_tls, struct nbdkit_exports *exports)
{
  if (p.exp && p.exp->tls_required && !is_tls)
    return 0;                   /* TLS-only: invisible before TLS */
  return nbdkit_add_export (exports, served_name (),
                            p.exp ? p.exp->description : p.description);
}

static const char *
nbdcache_default_export (int readonly, int is_tls)
{
  return served_name ();
}

/* ---- per connection: all share the one export ---- */

/* The export's allow / allow_unix rules, as nbdcached applies them. */
static int
nbdcache_preconnect (int readonly)
{
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;

  if (p.exp == NULL || (p.exp->nr_allow == 0 && p.exp->allow_unix))
    return 0;
  if (nbdkit_peer_name ((struct sockaddr *) &ss, &len) == -1)
    return -1;                  /* nbdkit said why */
  if (!config_export_allows_peer (p.exp, (struct sockaddr *) &ss)) {
    nbdkit_error ("export '%s': %s", p.exp->name,
                  ss.ss_family == AF_UNIX
                  ? "Unix-socket clients are not allowed (allow_unix = no)"
                  : "this client address is not allowed (allow)");
    return -1;
  }
  return 0;
}

static void *
nbdcache_open (int readonly)
{
  const char *name = nbdkit_export_name ();

  if (p.nc == NULL) {
    nbdkit_error ("the export is not open");
    return NULL;
  }
  /* backing= serves any name, like nbdkit's file plugin; config= serves
   * the one [export] section it was given, as nbdcached would.
   */
  if (p.exp && name && *name && strcmp (name, p.exp->name) != 0) {
    nbdkit_error ("no export '%s': this nbdkit serves '%s' from %s",
                  name, p.exp->name, p.config_path);
    return NULL;
  }
  /* tls = require: with nbdkit --tls=on, plaintext clients are refused. */
  if (p.exp && p.exp->tls_required && !nbdkit_is_tls ()) {
    nbdkit_error ("export '%s' requires TLS (tls = require): run nbdkit "
                  "with --tls and connect with TLS", p.exp->name);
    return NULL;
  }
  /* max_connections from the [export] section, as nbdcached enforces it. */
  if (p.exp && p.exp->max_connections != 0 &&
      __atomic_add_fetch (&nr_connections, 1, __ATOMIC_SEQ_CST)
        > p.exp->max_connections) {
    __atomic_sub_fetch (&nr_connections, 1, __ATOMIC_SEQ_CST);
    nbdkit_error ("export '%s': too many connections (max_connections = %u)",
                  p.exp->name, p.exp->max_connections);
    return NULL;
  }
  return p.nc;
}

static void
nbdcache_close (void *handle)
{
  if (p.exp && p.exp->max_connections != 0)
    __atomic_sub_fetch (&nr_connections, 1, __ATOMIC_SEQ_CST);
}

/* Size and every can_* answer come from the engine's caps. */
static struct ncache_caps
caps_of (void *handle)
{
  struct ncache_caps caps;

  ncache_get_caps (handle, &caps);
  return caps;
}

static int64_t
nbdcache_get_size (void *handle)
{
  return (int64_t) caps_of (handle).size_bytes;
}

static int
nbdcache_block_size (void *handle, uint32_t *minimum, uint32_t *preferred,
                     uint32_t *maximum)
{
  *minimum = PLUGIN_MIN_BLOCK_BYTES;
  *preferred = PLUGIN_PREFERRED_BLOCK_BYTES;
  *maximum = PLUGIN_MAX_BLOCK_BYTES;
  return 0;
}

static int
nbdcache_can_write (void *handle)
{
  return !caps_of (handle).readonly;
}

static int
nbdcache_can_flush (void *handle)
{
  return caps_of (handle).can_flush;
}

static int
nbdcache_can_fua (void *handle)
{
  return caps_of (handle).can_fua ? NBDKIT_FUA_NATIVE : NBDKIT_FUA_NONE;
}

static int
nbdcache_can_trim (void *handle)
{
  return caps_of (handle).can_trim;
}

static int
nbdcache_can_zero (void *handle)
{
  return caps_of (handle).can_zero;
}

static int
nbdcache_can_fast_zero (void *handle)
{
  return caps_of (handle).can_fast_zero;
}

static int
nbdcache_can_extents (void *handle)
{
  return caps_of (handle).can_extents;
}

static int
nbdcache_can_cache (void *handle)
{
  return caps_of (handle).can_cache ? NBDKIT_CACHE_NATIVE : NBDKIT_CACHE_NONE;
}

static int
nbdcache_can_multi_conn (void *handle)
{
  return caps_of (handle).can_multi_conn;
}

static int
nbdcache_is_rotational (void *handle)
{
  return p.exp ? p.exp->rotational : p.rotational;
}

static const char *
nbdcache_export_description (void *handle)
{
  return p.exp ? p.exp->description : p.description;
}

/* ---- requests ---- */

static uint32_t
engine_flags (uint32_t flags)
{
  uint32_t f = 0;

  if (flags & NBDKIT_FLAG_FUA)
    f |= NCACHE_FUA;
  if (flags & NBDKIT_FLAG_MAY_TRIM)
    f |= NCACHE_MAY_TRIM;
  if (flags & NBDKIT_FLAG_FAST_ZERO)
    f |= NCACHE_FAST_ZERO;
  if (flags & NBDKIT_FLAG_REQ_ONE)
    f |= NCACHE_REQ_ONE;
  return f;
}

static int
nbdcache_pread (void *handle, void *buf, uint32_t count, uint64_t offset,
                uint32_t flags)
{
  int r = ncache_pread (handle, buf, count, offset, engine_flags (flags));

  return r < 0 ? set_error (r) : 0;
}

static int
nbdcache_pwrite (void *handle, const void *buf, uint32_t count,
                 uint64_t offset, uint32_t flags)
{
  int r = ncache_pwrite (handle, buf, count, offset, engine_flags (flags));

  return r < 0 ? set_error (r) : 0;
}

static int
nbdcache_flush (void *handle, uint32_t flags)
{
  int r = ncache_flush (handle, engine_flags (flags));

  return r < 0 ? set_error (r) : 0;
}

static int
nbdcache_trim (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  int r = ncache_trim (handle, count, offset, engine_flags (flags));

  return r < 0 ? set_error (r) : 0;
}

static int
nbdcache_zero (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  int r = ncache_zero (handle, count, offset, engine_flags (flags));

  return r < 0 ? set_error (r) : 0;
}

static int
nbdcache_cache (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  int r = ncache_cache (handle, count, offset, engine_flags (flags));

  return r < 0 ? set_error (r) : 0;
}

static int
add_extent (void *opaque, uint64_t offset, uint64_t length, uint32_t flags)
{
  uint32_t type = 0;

  if (flags & NCACHE_EXTENT_HOLE)
    type |= NBDKIT_EXTENT_HOLE;
  if (flags & NCACHE_EXTENT_ZERO)
    type |= NBDKIT_EXTENT_ZERO;
  errno = 0;
  if (nbdkit_add_extent (opaque, offset, length, type) == -1)
    return errno ? -errno : -EIO;
  return 0;
}

static int
nbdcache_extents (void *handle, uint32_t count, uint64_t offset,
                  uint32_t flags, struct nbdkit_extents *extents)
{
  int r = ncache_extents (handle, count, offset, engine_flags (flags),
                          add_extent, extents);

  return r < 0 ? set_error (r) : 0;
}

/* ---- help ---- */

static void
nbdcache_dump_plugin (void)
{
  printf ("nbdcache_version=%s\n", PACKAGE_VERSION);
  printf ("nbdcache_modes=none,writeback,writethrough,writearound\n");
  printf ("nbdcache_cache_devices=yes\n");
  printf ("nbdcache_max_block_bytes=%d\n", PLUGIN_MAX_BLOCK_BYTES);
}

#define nbdcache_config_help \
  "backing=FILE|URI    The backing store (a path, file:///path,\n" \
  "                    memory:SIZE, or a remote NBD server: nbd://HOST/NAME,\n" \
  "                    nbd+unix:///NAME?socket=PATH, nbds://…, nbds+unix://…).\n" \
  "                    Or use config= and export=.\n" \
  "backing-connections=N  Connections to a remote backing (default 4 if\n" \
  "                    it offers multi-conn, else 1).\n" \
  "backing-timeout=SECS  Per-request timeout to a remote (default 30s).\n" \
  "backing-tls-certificates=DIR  CA (and client certificate) for nbds://.\n" \
  "backing-tls-verify=BOOL  Verify the remote's certificate (default yes).\n" \
  "backing-tls-psk-file=FILE  PSK keys for nbds:// (username:hexkey).\n" \
  "backing-tls-username=NAME  The PSK identity (default: login name).\n" \
  "                    Or a Ceph RBD image: backing=rbd:POOL/IMAGE, with\n" \
  "ceph-conf=FILE      ceph.conf (default: $CEPH_CONF, /etc/ceph/ceph.conf).\n" \
  "ceph-id=NAME        Ceph client id without client. (default: admin).\n" \
  "ceph-keyring=FILE   The client's keyring (default: ceph.conf's).\n" \
  "ceph-key=KEY        Or the client's key itself (a secret).\n" \
  "size=SIZE           Create a sparse backing file this big if absent.\n" \
  "cache=PATH          The cache device (an SSD, a partition or a file).\n" \
  "create=BOOL         Format the cache device if it holds no nbdcache\n" \
  "                    cache (never reformats one).  Default: no.\n" \
  "allow-shrink=BOOL   Serve a cached backing that shrank, dropping the\n" \
  "                    cached data (dirty too) past its new end.\n" \
  "cache-size=SIZE     With create=yes: create the cache file this big.\n" \
  "mode=MODE           writeback, writethrough (the default with cache=),\n" \
  "                    writearound, or none (the only mode without one).\n" \
  "discard=BOOL        Discard freed cache space in batches (default yes).\n" \
  "writeback-percent=N Writeback's dirty target, percent of the cache\n" \
  "                    (0 to 100, default 10).\n" \
  "sequential-cutoff=SIZE  Sequential streams longer than this bypass the\n" \
  "                    cache (default 4M; 0 = off).\n" \
  "flush-on-stop=BOOL  Write back all dirty data at shutdown (default no).\n" \
  "description=TEXT    Export description shown to clients.\n" \
  "readonly=BOOL       Serve read-only (also nbdkit -r).\n" \
  "rotational=BOOL     Advertise a rotational device.\n" \
  "config=FILE         An nbdcached config file ...\n" \
  "export=NAME         ... and the [export NAME] section to serve\n" \
  "                    (default: the file's default export)."

static struct nbdkit_plugin plugin = {
  .name = "nbdcache",
  .longname = "nbdcache NBD server with an SSD cache",
  .version = PACKAGE_VERSION,
  .description = "Serve a backing store through the nbdcache engine.",
  .load = nbdcache_load,
  .unload = nbdcache_unload,
  .config = nbdcache_config,
  .config_complete = nbdcache_config_complete,
  .config_help = nbdcache_config_help,
  .magic_config_key = "backing",
  .dump_plugin = nbdcache_dump_plugin,
  .get_ready = nbdcache_get_ready,
  .after_fork = nbdcache_after_fork,
  .cleanup = nbdcache_cleanup,
  .preconnect = nbdcache_preconnect,
  .list_exports = nbdcache_list_exports,
  .default_export = nbdcache_default_export,
  .open = nbdcache_open,
  .close = nbdcache_close,
  .get_size = nbdcache_get_size,
  .block_size = nbdcache_block_size,
  .can_write = nbdcache_can_write,
  .can_flush = nbdcache_can_flush,
  .can_fua = nbdcache_can_fua,
  .can_trim = nbdcache_can_trim,
  .can_zero = nbdcache_can_zero,
  .can_fast_zero = nbdcache_can_fast_zero,
  .can_extents = nbdcache_can_extents,
  .can_cache = nbdcache_can_cache,
  .can_multi_conn = nbdcache_can_multi_conn,
  .is_rotational = nbdcache_is_rotational,
  .export_description = nbdcache_export_description,
  .pread = nbdcache_pread,
  .pwrite = nbdcache_pwrite,
  .flush = nbdcache_flush,
  .trim = nbdcache_trim,
  .zero = nbdcache_zero,
  .cache = nbdcache_cache,
  .extents = nbdcache_extents,
  .errno_is_preserved = 0,
};

NBDKIT_REGISTER_PLUGIN (plugin)
