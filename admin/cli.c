/* SPDX-License-Identifier: BSD-3-Clause */
/* cli.c — nbdcache, the cache device administration tool: the
 * command line, logging, and the format command.
 *
 * WHAT: `nbdcache format|show|check PATH [OPTIONS]`, `nbdcache
 * stats|flush|reload|set|detach|attach (--socket PATH | -c CONFIG) ...`,
 * --help, --version.
 * format writes a new, empty cache (nc_format) after refusing to destroy
 * an existing one without --force; show and check live in show.c and
 * check.c; stats, flush and reload (stats.c, flush.c, reload-client.c)
 * talk to a running nbdcached through its control socket.
 * WHY: an admin prepares an SSD (or a file) before pointing nbdcached at
 * it, and needs to see what is on a cache device and whether it is
 * intact, without starting a server; and, with a server running, what its
 * caches do and a way to write dirty data back now.
 * INVARIANTS:
 * - Only this file exits the process (main returns the command's status).
 * - show and check never write to the device (read-only open).
 * - format never touches a device that holds an nbdcache superblock (valid
 *   or damaged), or anything else libblkid recognises (a filesystem, a
 *   partition table, LVM…: cdev_foreign_signature), unless --force; nor
 *   one that another process has open (the cache device lock, cdev.h),
 *   even with --force.
 * - Log messages go to stderr as "nbdcache: LEVEL: message" through a sink
 *   that first erases any progress line.
 * THREADS AND LOCKS: one thread.  The log sink reaches the current
 *   progress line through one file-static pointer: log_sink_fn carries no
 *   context, and a process has one terminal.
 * FAILURE: exit 0 success; 1 refused (format), damaged (show, check), or
 *   the server answered an error (stats, flush, reload); 2 usage error, I/O
 *   error, not an nbdcache cache device, or no server at the control
 *   socket.  A garbage
 *   device is reported, never trusted.
 * NOT HERE: the format itself (common/cache/super.c).
 */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "admin.h"
#include "cdev.h"
#include "format.h"
#include "log.h"
#include "parse.h"
#include "progress.h"
#include "super.h"

static struct progress *current_progress;

void
admin_set_progress (struct progress *p)
{
  current_progress = p;
}

void
admin_log_sink (enum log_level level, const char *msg)
{
  static const char *const names[] = {
    [LOG_LEVEL_ERROR] = "error", [LOG_LEVEL_WARNING] = "warning",
    [LOG_LEVEL_INFO] = "info", [LOG_LEVEL_DEBUG] = "debug",
  };

  progress_clear (current_progress);
  fflush (stdout);
  fprintf (stderr, "nbdcache: %s: %s\n",
           (unsigned) level < 4 ? names[level] : "?", msg);
}

static void
usage (FILE *fp)
{
  fprintf (fp,
"Usage: nbdcache COMMAND PATH [OPTIONS]\n"
"       nbdcache stats|flush (--socket PATH | -c CONFIG) [EXPORT]\n"
"       nbdcache reload (--socket PATH | -c CONFIG)\n"
"       nbdcache set (--socket PATH | -c CONFIG) EXPORT KEY=VALUE...\n"
"       nbdcache detach (--socket PATH | -c CONFIG) EXPORT\n"
"       nbdcache attach (--socket PATH | -c CONFIG) EXPORT [MODE]\n"
"Administer an nbdcache cache device (an SSD, a partition or a file), or\n"
"a running nbdcached through its control socket.\n"
"\n"
"Commands:\n"
"  format PATH   write a new, empty cache\n"
"      --bucket-size SIZE   bucket size, a power of two, 64K..64M (1M)\n"
"      --journal-size SIZE  journal size (1/32 of the device, 4 buckets\n"
"                           to 128M)\n"
"      --size SIZE          create PATH as a sparse file of SIZE if absent\n"
"      --force              destroy an existing cache\n"
"  show PATH     print the superblock, the exports and the space in use\n"
"      --json               as JSON\n"
"  check PATH    verify every superblock, prio copy, journal entry, btree\n"
"                node and key (read-only); exit 0 clean, 1 damaged\n"
"      --data               also read every cached block and verify its\n"
"                           checksum (dirty blocks that fail: damaged)\n"
"      --json               the result as one JSON document\n"
"  forget PATH EXPORT  free EXPORT's slot in the cache's export table and\n"
"                drop its cached data (id, backing path, URI or name)\n"
"      --discard-dirty      even if it holds dirty data (asks on a tty)\n"
"      --yes                confirm --discard-dirty without asking\n"
"  stats [EXPORT]  a running nbdcached's counters, per export and cache\n"
"      --json               the server's JSON document\n"
"      --prometheus         in the Prometheus text format\n"
"      --watch              refresh: rates, hit ratio, dirty data\n"
"      -n, --interval SECONDS  with --watch: how often (1)\n"
"      --count N            with --watch: stop after N refreshes\n"
"  flush EXPORT  write the export's dirty data back now, with progress;\n"
"                exit 0 clean, 1 the server failed\n"
"  reload        make nbdcached re-read its config file (as SIGHUP) and\n"
"                print what changed; exit 1 if it refused (the old\n"
"                configuration keeps running) or a part failed\n"
"  set EXPORT KEY=VALUE...  change a running export (until a restart):\n"
"                mode, sequential_cutoff, writeback_percent,\n"
"                promote_min, flush_on_stop\n"
"  detach EXPORT  write its dirty data back, then serve it without the\n"
"                cache (refused if the write-back fails)\n"
"  attach EXPORT [MODE]  give a detached export its cache back, cold, in\n"
"                its configured mode or MODE\n"
"      --socket PATH        nbdcached's control socket\n"
"      -c, --config CONFIG  its config file (control_socket in [server];\n"
"                           default " CONTROL_DEFAULT_CONFIG ")\n"
"\n"
"  -v, --verbose            debug messages\n"
"  -V, --version            print the version and exit\n"
"  -h, --help               print this help and exit\n"
"SIZE takes K, M, G, T suffixes (powers of 1024).  See nbdcache(8).\n");
}

enum { OPT_BUCKET_SIZE = 256, OPT_JOURNAL_SIZE, OPT_SIZE, OPT_FORCE,
       OPT_JSON };

static const struct option format_options[] = {
  { "bucket-size", required_argument, NULL, OPT_BUCKET_SIZE },
  { "journal-size", required_argument, NULL, OPT_JOURNAL_SIZE },
  { "size", required_argument, NULL, OPT_SIZE },
  { "force", no_argument, NULL, OPT_FORCE },
  { "verbose", no_argument, NULL, 'v' },
  { "help", no_argument, NULL, 'h' },
  { NULL, 0, NULL, 0 },
};

static int
size_arg (const char *opt, const char *arg, uint64_t *out)
{
  int r = parse_size_bytes (arg, out);

  if (r < 0) {
    fprintf (stderr, "nbdcache: %s: '%s' is not a size (examples: 4096, "
             "64K, 1M, 10G)\n", opt, arg);
    return -1;
  }
  return 0;
}

/* Why the device must not be formatted without --force, or NULL. */
static const char *
existing_cache (struct cdev *cd, char *msg, size_t size)
{
  struct nc_sb *sb = calloc (NC_SB_SLOTS, sizeof *sb);
  struct super_copy c[NC_SB_SLOTS];
  char uuid[40];
  int i, best = -1;

  if (sb == NULL || cd->size_bytes < 2 * NC_BLOCK_BYTES) {
    free (sb);
    return NULL;                /* too small: format decides */
  }
  for (i = 0; i < NC_SB_SLOTS; i++) {
    super_read_copy (cd, i, &sb[i], &c[i]);
    if (c[i].state == SUPER_COPY_VALID &&
        (best < 0 || sb[i].seq > sb[best].seq))
      best = i;
  }
  if (best >= 0) {
    fmt_uuid (sb[best].uuid, uuid, sizeof uuid);
    snprintf (msg, size, "it already holds an nbdcache cache (uuid %s, %"
              PRIu32 " export%s)", uuid, sb[best].nr_exports,
              sb[best].nr_exports == 1 ? "" : "s");
  }
  else if (c[0].has_magic || c[1].has_magic)
    snprintf (msg, size, "it holds a damaged nbdcache cache (superblock "
              "copy 0: %s; copy 1: %s)", c[0].why, c[1].why);
  free (sb);
  return best >= 0 || c[0].has_magic || c[1].has_magic ? msg : NULL;
}

/* Why a device without an nbdcache superblock must not be formatted
 * without --force (another program's signature, or we cannot tell), or
 * NULL.
 */
static const char *
foreign_data (const char *path, char *msg, size_t size)
{
  char what[256];
  int r = cdev_foreign_signature (path, what, sizeof what);

  if (r == 0)
    return NULL;
  if (r > 0)
    snprintf (msg, size, "it holds %s", what);
  else
    snprintf (msg, size, "libblkid cannot tell what it holds");
  return msg;
}

int
cmd_format (int argc, char **argv)
{
  struct nc_format_options fo = { .quiet = true };
  struct cdev_file_options co = { 0 };
  uint64_t bucket_bytes = 0, journal_bytes = 0, size = 0;
  bool force = false, have_size = false;
  const char *path, *refuse;
  struct cdev *cd = NULL;
  struct nc_sb sb;
  struct stat st;
  char msg[512], uuid[40], s1[32], s2[32], s3[32];
  int c, r;

  while ((c = getopt_long (argc, argv, "vh", format_options, NULL)) != -1) {
    switch (c) {
    case OPT_BUCKET_SIZE:
      if (size_arg ("--bucket-size", optarg, &bucket_bytes) < 0)
        return EXIT_TROUBLE;
      if (bucket_bytes > UINT32_MAX) {
        fprintf (stderr, "nbdcache: --bucket-size: at most 64M\n");
        return EXIT_TROUBLE;
      }
      break;
    case OPT_JOURNAL_SIZE:
      if (size_arg ("--journal-size", optarg, &journal_bytes) < 0)
        return EXIT_TROUBLE;
      if (journal_bytes == 0) {
        fprintf (stderr, "nbdcache: --journal-size: must not be 0\n");
        return EXIT_TROUBLE;
      }
      break;
    case OPT_SIZE:
      if (size_arg ("--size", optarg, &size) < 0)
        return EXIT_TROUBLE;
      if (size < NC_BLOCK_BYTES) {
        fprintf (stderr, "nbdcache: --size: at least 4K\n");
        return EXIT_TROUBLE;
      }
      have_size = true;
      break;
    case OPT_FORCE: force = true; break;
    case 'v': log_set_level (LOG_LEVEL_DEBUG); break;
    case 'h': usage (stdout); return EXIT_OK;
    default:
      fprintf (stderr, "Try 'nbdcache --help'.\n");
      return EXIT_TROUBLE;
    }
  }
  if (optind + 1 != argc) {
    fprintf (stderr, "nbdcache format: %s\nUsage: nbdcache format PATH "
             "[--bucket-size SIZE] [--journal-size SIZE] [--size SIZE] "
             "[--force]\n",
             optind == argc ? "which device? (PATH is missing)"
             : "too many arguments");
    return EXIT_TROUBLE;
  }
  path = argv[optind];

  if (stat (path, &st) == 0) {
    if (have_size && S_ISREG (st.st_mode) && (uint64_t) st.st_size != size)
      fprintf (stderr, "nbdcache: warning: %s exists (%" PRIu64 " bytes); "
               "--size only creates a missing file and is ignored\n", path,
               (uint64_t) st.st_size);
  }
  else if (errno == ENOENT && !have_size) {
    fprintf (stderr, "nbdcache: %s does not exist; give --size SIZE to "
             "create it as a sparse file\n", path);
    return EXIT_TROUBLE;
  }
  co.create_size_bytes = have_size ? size : 0;
  if (cdev_file_open (path, &co, &cd) < 0)
    return EXIT_TROUBLE;

  refuse = existing_cache (cd, msg, sizeof msg);
  if (refuse != NULL && !force) {
    fprintf (stderr, "nbdcache: not formatting %s: %s; formatting destroys "
             "it and all cached data, including dirty data not yet written "
             "back.  Use --force to format anyway.\n", path, refuse);
    cdev_close (cd);
    return EXIT_DAMAGED;
  }
  if (refuse != NULL)
    fprintf (stderr, "nbdcache: --force: destroying the cache on %s (%s)\n",
             path, refuse);
  else if ((refuse = foreign_data (path, msg, sizeof msg)) != NULL) {
    if (!force) {
      fprintf (stderr, "nbdcache: not formatting %s: %s; formatting "
               "destroys it.  Use --force to format anyway.\n", path,
               refuse);
      cdev_close (cd);
      return EXIT_DAMAGED;
    }
    fprintf (stderr, "nbdcache: --force: overwriting %s (%s)\n", path,
             refuse);
  }

  fo.bucket_bytes = (uint32_t) bucket_bytes;
  fo.journal_bytes = journal_bytes;
  r = nc_format (cd, &fo);
  if (r == 0)
    r = super_read (cd, &sb, NULL);
  cdev_close (cd);
  if (r < 0)
    return r == -EINVAL ? EXIT_DAMAGED : EXIT_TROUBLE;

  fmt_uuid (sb.uuid, uuid, sizeof uuid);
  fmt_bytes (super_bucket_bytes (&sb), s1, sizeof s1);
  fmt_bytes ((uint64_t) sb.journal_buckets * super_bucket_bytes (&sb), s2,
             sizeof s2);
  fmt_bytes ((uint64_t) (sb.nbuckets - sb.data_first) *
             super_bucket_bytes (&sb), s3, sizeof s3);
  printf ("%s: formatted an nbdcache cache\n"
          "  uuid:    %s\n"
          "  buckets: %" PRIu32 " of %s\n"
          "  journal: %s (%" PRIu32 " buckets)\n"
          "  data:    %s (%" PRIu32 " buckets)\n",
          path, uuid, sb.nbuckets, s1, s2, sb.journal_buckets, s3,
          sb.nbuckets - sb.data_first);
  return EXIT_OK;
}

int
main (int argc, char **argv)
{
  static const struct option top_options[] = {
    { "version", no_argument, NULL, 'V' },
    { "help", no_argument, NULL, 'h' },
    { "verbose", no_argument, NULL, 'v' },
    { NULL, 0, NULL, 0 },
  };
  const char *cmd;
  int c;

  log_init ("nbdcache", LOG_TARGET_STDERR, LOG_LEVEL_WARNING);
  log_set_sink (admin_log_sink);

  /* Options before the command ("+": stop at the first non-option). */
  while ((c = getopt_long (argc, argv, "+Vhv", top_options, NULL)) != -1) {
    switch (c) {
    case 'V':
      printf ("nbdcache %s (on-disk format version %u)\n", PACKAGE_VERSION,
              NC_FORMAT_VERSION);
      return EXIT_OK;
    case 'h':
      usage (stdout);
      return EXIT_OK;
    case 'v':
      log_set_level (LOG_LEVEL_DEBUG);
      break;
    default:
      usage (stderr);
      return EXIT_TROUBLE;
    }
  }
  if (optind >= argc) {
    usage (stderr);
    return EXIT_TROUBLE;
  }
  cmd = argv[optind];
  argc -= optind;
  argv += optind;
  optind = 0;                   /* glibc: 0 fully restarts getopt */

  if (strcmp (cmd, "format") == 0)
    return cmd_format (argc, argv);
  if (strcmp (cmd, "show") == 0)
    return cmd_show (argc, argv);
  if (strcmp (cmd, "check") == 0)
    return cmd_check (argc, argv);
  if (strcmp (cmd, "stats") == 0)
    return cmd_stats (argc, argv);
  if (strcmp (cmd, "flush") == 0)
    return cmd_flush (argc, argv);
  if (strcmp (cmd, "reload") == 0)
    return cmd_reload (argc, argv);
  if (strcmp (cmd, "set") == 0)
    return cmd_set (argc, argv);
  if (strcmp (cmd, "detach") == 0)
    return cmd_detach (argc, argv);
  if (strcmp (cmd, "attach") == 0)
    return cmd_attach (argc, argv);
  if (strcmp (cmd, "forget") == 0)
    return cmd_forget (argc, argv);
  if (strcmp (cmd, "help") == 0) {
    usage (stdout);
    return EXIT_OK;
  }
  fprintf (stderr, "nbdcache: unknown command '%s' (expected format, show, "
           "check, forget, stats, flush, reload, set, detach or attach)\n",
           cmd);
  usage (stderr);
  return EXIT_TROUBLE;
}
