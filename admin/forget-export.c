/* SPDX-License-Identifier: BSD-3-Clause */
/* forget-export.c — "nbdcache forget CACHE EXPORT": free an export's slot in a
 * cache's export table, and the cached data with it.
 *
 * WHAT: opens the cache device through the engine (which locks it: a
 * running nbdcached or nbdkit has it, and the command is refused), names
 * the slot (id, export name, backing URI or path), refuses while the slot
 * holds dirty data unless --discard-dirty, which asks for confirmation on
 * a terminal (--yes answers for scripts, and is required without one),
 * then ncache_device_forget_export.
 * WHY: the slot of a backing store that is gone for good (or replaced:
 * "a different backing at the same path" is refused at bind) would keep
 * its data and its place in the table forever.
 * THREADS AND LOCKS: single-threaded; the engine's threads while open.
 * FAILURE: exit 0 forgotten; 1 refused (dirty data, not confirmed); 2
 * usage, no such export, a device in use (as every command), not a cache,
 * I/O.
 * NOT HERE: what forgetting does to the device (common/cache/
 * export-table.c).
 */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin.h"
#include "cache.h"
#include "log.h"

enum { OPT_DISCARD_DIRTY = 256, OPT_YES };

static const struct option forget_options[] = {
  { "discard-dirty", no_argument, NULL, OPT_DISCARD_DIRTY },
  { "yes", no_argument, NULL, OPT_YES },
  { "verbose", no_argument, NULL, 'v' },
  { "help", no_argument, NULL, 'h' },
  { NULL, 0, NULL, 0 },
};

static void
forget_usage (FILE *fp)
{
  fprintf (fp,
"Usage: nbdcache forget [--discard-dirty [--yes]] CACHE EXPORT\n"
"Free EXPORT's slot in CACHE's export table and drop its cached data.\n"
"EXPORT is an export id, a backing path or URI, or an export name, as\n"
"'nbdcache show CACHE' lists them.  Refused while the export has dirty\n"
"data, unless --discard-dirty (asks for confirmation on a terminal;\n"
"--yes answers it).  The cache must not be in use.\n");
}

/* True if the user typed "yes". */
static bool
confirm (const struct ncache_slot_info *s)
{
  char line[16];

  fprintf (stderr, "Export id %u ('%s', %s) has %" PRIu64 " bytes of dirty "
           "data that its backing store does not have.  Discard it for "
           "good? Type 'yes': ", s->id, s->name, s->uri, s->dirty_bytes);
  fflush (stderr);
  if (fgets (line, sizeof line, stdin) == NULL)
    return false;
  return strcmp (line, "yes\n") == 0 || strcmp (line, "yes") == 0;
}

int
cmd_forget (int argc, char **argv)
{
  struct ncache_device_config cfg = { .name = "forget" };
  struct ncache_device *dev = NULL;
  struct ncache_slot_info s;
  bool discard = false, yes = false;
  int c, r, rc = EXIT_TROUBLE;

  while ((c = getopt_long (argc, argv, "vh", forget_options, NULL)) != -1) {
    switch (c) {
    case OPT_DISCARD_DIRTY: discard = true; break;
    case OPT_YES: yes = true; break;
    case 'v': log_set_level (LOG_LEVEL_DEBUG); break;
    case 'h': forget_usage (stdout); return EXIT_OK;
    default: forget_usage (stderr); return EXIT_TROUBLE;
    }
  }
  if (argc - optind != 2) {
    forget_usage (stderr);
    return EXIT_TROUBLE;
  }
  cfg.path = argv[optind];
  if ((r = ncache_device_open (&cfg, &dev)) < 0) {
    if (r == -EBUSY || r == -EAGAIN)
      fprintf (stderr, "nbdcache: forget: %s is in use; stop the server "
               "that has it first\n", cfg.path);
    return EXIT_TROUBLE;
  }
  if (ncache_device_find_export (dev, argv[optind + 1], &s) < 0)
    goto out;
  if (s.dirty_bytes > 0 && discard && !yes) {
    if (!isatty (STDIN_FILENO)) {
      fprintf (stderr, "nbdcache: forget: export id %u has %" PRIu64
               " bytes of dirty data; --discard-dirty without a terminal "
               "to confirm on needs --yes\n", s.id, s.dirty_bytes);
      rc = EXIT_DAMAGED;
      goto out;
    }
    if (!confirm (&s)) {
      fprintf (stderr, "nbdcache: forget: not confirmed; nothing changed\n");
      rc = EXIT_DAMAGED;
      goto out;
    }
  }
  r = ncache_device_forget_export (dev, s.id, discard);
  if (r == -ENOTEMPTY)
    rc = EXIT_DAMAGED;
  else if (r == 0) {
    printf ("forgot export id %u ('%s', %s)%s\n", s.id, s.name, s.uri,
            s.dirty_bytes > 0 ? "; its dirty data was discarded" : "");
    rc = EXIT_OK;
  }
 out:
  ncache_device_close (dev);
  return rc;
}
