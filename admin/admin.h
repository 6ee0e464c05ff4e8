/* SPDX-License-Identifier: BSD-3-Clause */
/* admin.h — nbdcache, the cache device administration tool: what its
 * commands share.
 *
 * Owns: nothing global.  Each command opens the cache device itself.
 * Commands: format (cli.c), show (show.c), check (check.c); they
 * inspect a device through inspect.c, which assembles it read-only through
 * the engine's one recovery order (assemble.h) and reports what it finds.  stats (stats.c)
 * and flush (flush.c) talk to a running nbdcached through its control
 * socket (control-client.c).
 * Exit status (nbdcache(8)): 0 fine; 1 damaged (show, check), refused
 * (format), or the server answered an error (stats, flush); 2 usage
 * error, I/O error, not an nbdcache cache device, or no server to talk to.
 * Threads: one.
 * Not here: the on-disk format (common/cache/ondisk.h).
 */
#ifndef NBDCACHE_ADMIN_H
#define NBDCACHE_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "assemble.h"
#include "bucket.h"
#include "log.h"
#include "journal.h"
#include "ondisk.h"
#include "progress.h"

#define EXIT_OK 0
#define EXIT_DAMAGED 1          /* also: format refused */
#define EXIT_TROUBLE 2          /* usage, I/O, not a cache device */

/* ---- commands (argv[0] is the command name) ---- */
int cmd_format (int argc, char **argv);
int cmd_show (int argc, char **argv);
int cmd_check (int argc, char **argv);
int cmd_stats (int argc, char **argv);
int cmd_flush (int argc, char **argv);
int cmd_reload (int argc, char **argv);
int cmd_detach (int argc, char **argv);     /* flush.c */
int cmd_set (int argc, char **argv);        /* live-client.c */
int cmd_attach (int argc, char **argv);     /* live-client.c */
int cmd_forget (int argc, char **argv);

/* The progress line the log sink erases before a message (NULL: none). */
void admin_set_progress (struct progress *p);
/* The log sink (nbdcache.c): "nbdcache: LEVEL: MSG" on stderr. */
void admin_log_sink (enum log_level level, const char *msg);

/* ---- stats.c, watch.c: a running server's counters ---- */

struct json_object;

/* Ask the control socket (--socket sock, or the config file's) for the
 * stats of every export, or of export if not NULL.  EXIT_OK: *doc is the
 * stats document (version and exports checked); EXIT_DAMAGED: the server
 * answered {"error": ...} (printed to stderr), *doc is that answer;
 * EXIT_TROUBLE: no answer or not a stats document (logged), nothing set.
 * With linep, *linep (malloc'd) is the answer as it came, when *doc is set.
 */
int stats_fetch (const char *sock, const char *config, const char *export,
                 struct json_object **doc, char **linep);

/* A non-negative integer field of o into *v; false if absent. */
bool stats_u64 (struct json_object *o, const char *key, uint64_t *v);
/* A string field of o copied to buf with control characters replaced by
 * '?'; buf, or NULL if absent or not a string.
 */
const char *stats_str (struct json_object *o, const char *key, char *buf,
                       size_t size);

/* nbdcache stats --watch: refresh every interval_s seconds, count times
 * (0: until SIGINT/SIGTERM); a top-like screen on a terminal, one line
 * per export per refresh otherwise.  Returns the exit status.
 */
int stats_watch (const char *sock, const char *config, const char *export,
                 double interval_s, unsigned count);

/* ---- inspect.c: a cache device opened read-only ---- */

struct inspect_sb_copy {
  bool readable;                /* the read succeeded */
  bool has_magic;
  const char *why;              /* NULL if valid */
  uint64_t seq;                 /* if has_magic */
  uint32_t version;             /* if has_magic: format version on disk */
};

/* What one walk of the index counted. */
struct inspect_walk {
  uint64_t nodes, leaves;
  uint16_t depth;               /* 0 = empty tree */
  uint64_t keys;                /* leaf keys */
  uint64_t dirty_keys, zero_keys, stale_keys;
  uint64_t live_blocks, dirty_blocks; /* current data keys */
  uint64_t double_refs;         /* buckets or blocks claimed twice */
  uint64_t foreign_keys;        /* export id not in the export table */
  uint64_t foreign_dirty_keys;  /* of those, DIRTY: data that can never be
                                   written back (damage) */
};

struct inspect {
  const char *path;
  struct cdev *cd;
  struct nc_sb sb;              /* the copy in use */
  int slot;
  struct inspect_sb_copy copies[NC_SB_SLOTS];
  struct assembly assembly;     /* read-only (assemble.h) */
  struct bucket_set *bs;        /* after inspect_prios */
  struct journal *journal;      /* after inspect_journal */
  struct btree *bt;             /* after inspect_walk */
  struct journal_check_info jinfo;
  uint64_t journal_keys;        /* keys pending replay */
  uint64_t journal_bad_keys;    /* invalid keys in the journal */
  bool journal_done;
  struct inspect_walk walk;
  bool walk_done;
  struct bucket_usage usage;    /* after a walk */
  FILE *report;                 /* where problems found on the way are
                                   printed (stdout; stderr for show) */
  struct progress progress;
  /* check --data: the current data keys met by the walk and the journal
   * (collect_data set before them), verified by inspect_scrub.
   */
  bool collect_data;
  struct nc_key *data_keys;
  size_t nr_data_keys, data_keys_cap;
};

/* What inspect_scrub found, per export id. */
struct scrub_export {
  uint64_t blocks;              /* verified */
  uint64_t bad_clean, bad_dirty;  /* failed their checksum */
};
struct scrub_result {
  bool has_checksums;           /* false: the cache has none, nothing read */
  uint64_t blocks, bad_clean, bad_dirty;      /* totals */
  uint64_t redone;              /* blocks not verified: the newest journal
                                   write carries them and the next open
                                   rewrites them (nbdcache-format(5) Redo) */
  struct scrub_export x[NC_MAX_EXPORTS + 1];  /* by export id */
};

/* Open path read-only and read its superblock (both copies are recorded
 * in copies[]).  0, or -ENOTSUP (not an nbdcache device), -EBADMSG (no
 * valid copy), -errno; logged.  *out is set on every path except -ENOMEM
 * and a failed open, so the caller can report the copies.
 */
int inspect_open (const char *path, struct inspect **out);
void inspect_close (struct inspect *in);

/* Load the gens and prios (prio_read).  0 or -errno (logged). */
int inspect_prios (struct inspect *in);

/* Replay the journal without writing: the root, the pending keys (each
 * checked; bad ones counted and printed to in->report).
 * 0 or -errno (logged).
 */
int inspect_journal (struct inspect *in);

/* Walk the whole index read-only, marking buckets; fills walk and usage.
 * Needs inspect_prios and inspect_journal.  0 or -errno (logged).
 */
int inspect_walk (struct inspect *in);

/* Keep k (a data key) for inspect_scrub when in->collect_data.  0 or
 * -ENOMEM.
 */
int inspect_keep_data_key (struct inspect *in, const struct nc_key *k);
/* Read and verify against the data checksums every block of the kept keys
 * that is still current (its bucket's gen), with a progress bar on a
 * terminal (scrub.c).  0 and *res, or -errno (an I/O error; logged).
 */
int inspect_scrub (struct inspect *in, struct scrub_result *res);

/* ---- formatting helpers (show.c) ---- */
void fmt_bytes (uint64_t bytes, char *buf, size_t size);
void fmt_uuid (const uint8_t uuid[16], char *buf, size_t size);
const char *fmt_mode (uint8_t mode);

/* ---- control-client.c: a request to nbdcached's control socket ---- */

/* Used by -c when neither --socket nor -c is given. */
#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif
#define CONTROL_DEFAULT_CONFIG SYSCONFDIR "/nbdcached.conf"

struct control;

/* The control socket's path: socket_path if not NULL, else the
 * control_socket key of the config file config_path (NULL: the default
 * config).  0 and *out (malloc'd) set, or -errno with the reason logged.
 */
int control_socket_path (const char *socket_path, const char *config_path,
                         char **out);

/* Connect to the socket at path and send request (one line ending in
 * "\n").  0 and *out set, or -errno with a message naming the path logged
 * (-ENOENT: no socket there, -ECONNREFUSED: nobody listens).
 */
int control_client_open (const char *path, const char *request,
                  struct control **out);

/* control_socket_path + control_client_open. */
int control_connect_args (const char *socket_path, const char *config_path,
                          const char *request, struct control **out);

/* The next line of the answer, without its "\n", valid until the next
 * call: 1 and *line set; 0 when the server closed the connection; -errno
 * (logged): -ETIMEDOUT after timeout_ms (-1: wait forever), -EPROTO for
 * something that is not lines of text.
 */
int control_read_line (struct control *c, int timeout_ms, char **line);

/* The socket's path, for messages. */
const char *control_path (const struct control *c);

/* NULL is a no-op. */
void control_client_close (struct control *c);

/* May name go into a request line (no control characters)? */
bool control_name_ok (const char *name);

#endif /* NBDCACHE_ADMIN_H */
