/* SPDX-License-Identifier: BSD-3-Clause */
/* adhoc.h — the ad-hoc mode's contract (adhoc.c): one export described on
 * the command line, loaded through the config file loader.
 *
 * Owns: nothing; every string is borrowed from argv.
 * Threads: main thread, at start-up.
 * Not here: option parsing (main.c).
 */
#ifndef NBDCACHE_ADHOC_H
#define NBDCACHE_ADHOC_H

#include <stdbool.h>

#include "config-file.h"

/* The export's name without -e/--export-name. */
#define ADHOC_EXPORT_NAME "default"
/* Where it listens without -l/-U/-p: this machine only, nbdkit's port. */
#define ADHOC_LISTEN "127.0.0.1:10809"

struct adhoc {
  const char *backing;          /* non-NULL: BACKING, a path or a URI */
  const char *export_name;      /* NULL = ADHOC_EXPORT_NAME */
  const char *cache_path;       /* NULL = uncached */
  const char *cache_size;       /* NULL = the cache must exist; else
                                   create = yes, size = this */
  const char *mode;             /* NULL = the config's default */
  bool readonly;
  const char *tls;              /* NULL = off; else [server] tls = */
  const char *tls_certificates; /* NULL = none */
  const char *tls_psk_file;     /* NULL = none */
  bool tls_verify_peer;
};

/* 0 and *out (config_free it), -EINVAL after the loader's messages and the
 * generated text, or -errno (logged).
 */
int adhoc_config_load (const struct adhoc *a, struct config **out);

#endif /* NBDCACHE_ADHOC_H */
