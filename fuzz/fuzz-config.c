/* SPDX-License-Identifier: BSD-3-Clause */
/* fuzz-config.c — libFuzzer harness: the configuration file parser
 * (common/config/: config.c, config-identity.c, config-tls.c: config_load).
 *
 * WHAT: writes the input to nbdcached.conf in a private temporary
 * directory (holding an existing backing file `b.img`, a cache image path
 * and a TLS directory name, so seeds can name them) and loads it; on
 * success, looks every export up again and frees.
 * WHY: config_load takes a path (it reads the file itself): a temp file is
 * the narrowest entry point without changing the parser.
 */
#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config-file.h"
#include "log.h"

static char path[256];

static void
quiet (enum log_level level, const char *msg)
{
  (void) level; (void) msg;
}

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  static char dir[] = "/tmp/nbdcache-fuzz-config-XXXXXX";
  char f[300];
  FILE *fp;

  (void) argc; (void) argv;
  log_set_sink (quiet);
  log_set_level (LOG_LEVEL_ERROR);
  if (mkdtemp (dir) == NULL || chdir (dir) < 0)
    abort ();
  snprintf (f, sizeof f, "%s/b.img", dir);
  if ((fp = fopen (f, "w")) == NULL || ftruncate (fileno (fp), 1 << 20) < 0)
    abort ();
  fclose (fp);
  snprintf (path, sizeof path, "%s/nbdcached.conf", dir);
  return 0;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  struct config *cfg;
  FILE *fp = fopen (path, "w");
  size_t i;

  if (fp == NULL || fwrite (data, 1, size, fp) != size)
    abort ();
  fclose (fp);
  if (config_load (path, &cfg) == 0) {
    for (i = 0; i < cfg->nr_exports; i++)
      if (config_find_export (cfg, cfg->exports[i].name) == NULL)
        abort ();               /* a loaded export must be found */
    (void) config_find_export (cfg, "");
    config_free (cfg);
  }
  return 0;
}
