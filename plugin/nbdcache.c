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
 * [cache] section then describes the cache device; either way params.c
 * turns them into the config library's struct config_export (and
 * config_cache), and the export opens from those.  Every callback is a
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
 * loaded config (params.c) and the open export are written only while
 * nbdkit is single-threaded (config, config_complete, get_ready,
 * after_fork) and read-only afterwards; the engine is thread-safe.  No
 * lock here.
 * FAILURE: bad parameters and a config file error fail config_complete with
 * an nbdkit_error; an export the engine cannot serve (a device it refuses,
 * a mode it cannot serve) fails get_ready, so nbdkit exits at startup
 * instead of serving it uncached.
 * NOT HERE: the parameters and how they fit together (params.c), range
 * checks (nbdkit and the engine do them), caching policy.
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
#include "params.h"

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL
/* How many engine calls are in flight is nbdkit's choice, not ours: its
 * --threads (default 16) threads per connection, each blocked in one
 * call, so over a 2 ms remote one connection's misses are bounded by
 * 16 / 2 ms = 8k/s.  Measured (fio 4k random reads QD32, 1 connection,
 * cold, nbdkit file + delay 2 ms remote, shared 2-core VM): 4.0-5.0k/s
 * with the default 16 and 4.0-5.0k/s with --threads 64: the CPU, not the
 * thread count, is the limit here, as for nbdcached's elastic pool
 * (server/worker.c).  With a slower remote or a faster machine, raise
 * --threads to the clients' queue depth (nbdkit-nbdcache-plugin(1)).
 */

#define PLUGIN_MIN_BLOCK_BYTES       1
#define PLUGIN_PREFERRED_BLOCK_BYTES 4096
#define PLUGIN_MAX_BLOCK_BYTES       (64 * 1024 * 1024)

/* The open export; its settings are params.c's (plugin_export). */
static struct {
  /* After after_fork. */
  struct ncache_device *dev;    /* NULL: uncached */
  struct ncache_export *nc;
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
  const struct config_export *e = plugin_export.exp;

  return e == NULL ? "" : plugin_export.config_path ? e->name : e->backing;
}

/* The lines nbdcached logs at shutdown (visible with nbdkit -v): the
 * export's, then its cache device's.
 */
static void
log_stats (struct ncache_export *nc, struct ncache_device *dev)
{
  ncache_log_stats (nc, log_name ());
  if (dev != NULL)
    ncache_device_log_stats (dev);
}

/* The export first, then the device it borrows.  NULLs are no-ops. */
static void
close_pair (struct ncache_export *nc, struct ncache_device *dev)
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
  params_free ();
  log_set_sink (NULL);
}

/* Opens the cache device (if the export has one), the backing store and
 * the export on them.  0 with *nc_out and *dev_out (NULL when uncached)
 * set, or -1 with everything closed and the reason given to nbdkit_error.
 * check: the get_ready check open (no writeback thread, no flush on stop).
 */
static int
open_export (struct ncache_export **nc_out, struct ncache_device **dev_out,
             bool check)
{
  const struct config_export *e = plugin_export.exp;
  const struct config_cache *cc = plugin_export.cc;
  struct backing_open_options opts = {
    .readonly = e->readonly,
    .share = e->share_backing,
    .create_size_bytes = e->size_bytes,
  };
  struct ncache_export_tuning tuning;
  struct ncache_config ncfg = {
    .tuning = &tuning,
    .allow_shrink = plugin_export.allow_shrink,
    .mode = e->mode,
    .readonly = e->readonly,
    .name = log_name (),
  };
  struct ncache_device_config dcfg = { 0 };
  struct ncache_device *dev = NULL;
  struct backing *b;

  if (cc != NULL) {
    config_cache_device_config (cc, &dcfg);
    if (plugin_export.config_path == NULL)
      dcfg.name = cc->path;     /* backing= names the device by its path */
  }
  ncache_export_tuning_default (&tuning);
  config_export_tuning (e, &tuning);
  config_export_backing_options (e, &opts.remote);
  config_export_ceph_options (e, &opts.ceph);
  if (check) {
    tuning.flush_on_stop = false;
    tuning.writeback_off = true;
  }

  /* The engine logged the reason; this names the config.  No strerror or
   * %m here: with the ASan runtime preloaded into nbdkit (a sanitizer
   * build of the plugin, see functions.sh) an error-message lookup leaves
   * glibc's locale lock so that nbdkit hangs at exit.
   */
  if (cc != NULL && ncache_device_open (&dcfg, &dev) < 0) {
    if (plugin_export.config_path != NULL)
      nbdkit_error ("%s:%d: [cache %s]: cannot open cache device '%s' "
                    "(the reason is above)",
                    plugin_export.cfg->path, cc->line, cc->name, cc->path);
    else
      nbdkit_error ("cache=%s: cannot open the cache device (the reason is "
                    "above)", cc->path);
    return -1;
  }
  ncfg.device = dev;
  if (ncache_backing_open (dev, ncfg.name, e->backing, &opts, &b) < 0) {
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
  struct ncache_export *nc;

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
  return plugin_export.config_path ? plugin_export.exp->name : "";
}

static int
nbdcache_list_exports (int readonly, int is_tls, struct nbdkit_exports *exports)
{
  if (plugin_export.exp->tls_required && !is_tls)
    return 0;                   /* TLS-only: invisible before TLS */
  return nbdkit_add_export (exports, served_name (),
                            plugin_export.exp->description);
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
  const struct config_export *e = plugin_export.exp;
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;

  if (e->nr_allow == 0 && e->allow_unix)
    return 0;
  if (nbdkit_peer_name ((struct sockaddr *) &ss, &len) == -1)
    return -1;                  /* nbdkit said why */
  if (!config_export_allows_peer (e, (struct sockaddr *) &ss)) {
    nbdkit_error ("export '%s': %s", e->name,
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
  const struct config_export *e = plugin_export.exp;
  const char *name = nbdkit_export_name ();

  if (p.nc == NULL) {
    nbdkit_error ("the export is not open");
    return NULL;
  }
  /* backing= serves any name, like nbdkit's file plugin; config= serves
   * the one [export] section it was given, as nbdcached would.
   */
  if (plugin_export.config_path && name && *name
      && strcmp (name, e->name) != 0) {
    nbdkit_error ("no export '%s': this nbdkit serves '%s' from %s",
                  name, e->name, plugin_export.config_path);
    return NULL;
  }
  /* tls = require: with nbdkit --tls=on, plaintext clients are refused. */
  if (e->tls_required && !nbdkit_is_tls ()) {
    nbdkit_error ("export '%s' requires TLS (tls = require): run nbdkit "
                  "with --tls and connect with TLS", e->name);
    return NULL;
  }
  /* max_connections from the [export] section, as nbdcached enforces it. */
  if (e->max_connections != 0 &&
      __atomic_add_fetch (&nr_connections, 1, __ATOMIC_SEQ_CST)
        > e->max_connections) {
    __atomic_sub_fetch (&nr_connections, 1, __ATOMIC_SEQ_CST);
    nbdkit_error ("export '%s': too many connections (max_connections = %u)",
                  e->name, e->max_connections);
    return NULL;
  }
  return p.nc;
}

static void
nbdcache_close (void *handle)
{
  if (plugin_export.exp->max_connections != 0)
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
  return plugin_export.exp->rotational;
}

static const char *
nbdcache_export_description (void *handle)
{
  return plugin_export.exp->description;
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
  "discard=auto|BOOL   Discard freed cache space in batches (default auto:\n" \
  "                    yes on a block device, no on a regular file).\n" \
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
  .config = params_config,
  .config_complete = params_config_complete,
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
