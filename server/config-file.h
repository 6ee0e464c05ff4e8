/* config-file.h — the nbdcached configuration file: INI, parsed by libinih.
 *
 * WHAT: loads and validates a config file into plain structs: one [server]
 * section, any number of [cache NAME] and [export NAME] sections.  Used by
 * nbdcached and by the nbdkit plugin (config=FILE export=NAME).
 * WHY: strictness in one place: an unknown section or key, a bad value, a
 * reference to an unknown cache, a missing backing file — each is an error
 * naming file:line, so an admin never runs a half-understood config.
 * INVARIANTS: after config_load succeeds every string field that the
 * comment says is non-NULL is non-NULL, every export's backing exists or
 * will be created (size set), every export's cache names a [cache] section,
 * and mode is NONE exactly when cache is NULL.
 * THREADS: not thread-safe; load on one thread, then read-only.
 * FAILURE: config_load logs every error it finds (file:line: message) at
 * error level and returns -EINVAL; nothing is half-loaded.
 * NOT HERE: opening backing stores or cache devices, sockets.
 */
#ifndef NBDCACHE_CONFIG_FILE_H
#define NBDCACHE_CONFIG_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache.h"
#include "log.h"

#define CONFIG_DEFAULT_WORKERS 8

struct config_server {
  char **listen;                /* listen addresses; NULL when none */
  size_t nr_listen;
  unsigned workers;             /* worker threads, default CONFIG_DEFAULT_WORKERS */
  char *pidfile;                /* NULL = none */
  enum log_target log_target;   /* log = stderr|syslog */
  enum log_level log_level;     /* log_level = error|warning|info|debug */
  char *default_export;         /* served for the empty name; NULL = the
                                   only export if there is exactly one */
};

struct config_cache {
  char *name;                   /* non-NULL */
  char *path;                   /* non-NULL */
  uint64_t size_bytes;          /* 0 = use the existing file/device size */
  bool create;                  /* format it if unformatted */
  bool direct;                  /* O_DIRECT, default yes */
  int line;                     /* where the section starts */
};

struct config_export {
  char *name;                   /* non-NULL, may be "" only via default */
  char *backing;                /* non-NULL: a path or URI */
  uint64_t size_bytes;          /* create a sparse backing file this big if
                                   absent; 0 = it must exist */
  char *cache;                  /* NULL = uncached */
  enum ncache_mode mode;
  bool readonly;
  char *description;            /* NULL = none */
  bool rotational;
  unsigned max_connections;     /* 0 = unlimited */
  int line;                     /* where the section starts */
};

struct config {
  char *path;                   /* the file it was loaded from */
  struct config_server server;
  struct config_cache *caches;
  size_t nr_caches;
  struct config_export *exports;
  size_t nr_exports;
};

/* 0 and *out set, or -EINVAL / -ENOENT / -ENOMEM with every problem logged
 * as "file:line: message".
 */
int config_load (const char *path, struct config **out);
/* NULL is a no-op. */
void config_free (struct config *cfg);

/* NULL if absent.  The empty name resolves to the default export. */
const struct config_export *config_find_export (const struct config *cfg,
                                                const char *name);
const struct config_cache *config_find_cache (const struct config *cfg,
                                              const char *name);

/* Every key the parser accepts, as "section.key" (section is "server",
 * "cache" or "export"), NULL-terminated.  Tests check that each one is
 * documented in the example config and the man page.
 */
extern const char *const config_known_keys[];

#endif /* NBDCACHE_CONFIG_FILE_H */
