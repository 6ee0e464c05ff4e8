/* SPDX-License-Identifier: BSD-3-Clause */
/* config-paths.c — what the config check can see without starting: the
 * size of a cache to be created, and the directories where nbdcached
 * will create files and sockets.
 *
 * WHAT: config_check_cache_size (every load: a [cache] with create = yes
 * and size = must fit a cache with its bucket_size and journal_size, by
 * the arithmetic format uses, layout.h); config_check_server_paths (only
 * for nbdcached, config_load_server: pidfile, control_socket, unix:
 * listen sockets and cache files to be created must go into a directory
 * that exists and that this user may create entries in; an existing
 * cache device must be readable and writable).
 * WHY: a non-root user running --check-config should see every problem in
 * one run, with the line to fix, instead of one error per failed start —
 * and a cache file created too small used to stay behind, so the fixed
 * config failed again with the same error.
 * INVARIANTS: only reads the filesystem (stat, access); never creates or
 * opens anything.  access() answers for the real uid, which is the uid
 * nbdcached runs as (it does not change ids).
 * THREADS AND LOCKS: none; called only from config_load (config.c).
 * FAILURE: each problem is one config_error at the key's line, counted;
 * every one is reported (nothing stops at the first).
 * NOT HERE: the backing store (config-backing.c), one device under two
 * names (config-identity.c), opening anything (nbdcached at start).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "config-file.h"
#include "config-internal.h"
#include "layout.h"

void
config_check_cache_size (struct parser *p, const struct config_cache *c,
                         const int *line)
{
  struct nc_layout l;
  int r;

  if (!c->create || c->size_bytes == 0 || line[KEY_cache_size] == 0)
    return;
  r = nc_layout_plan (c->size_bytes, c->bucket_bytes, c->journal_bytes, &l);
  if (r == -EFBIG)
    config_error (p, line[KEY_cache_size],
                  "size = %" PRIu64 " bytes is too small for [cache %s]: "
                  "with %" PRIu64 " KiB buckets and a %" PRIu64 "-bucket "
                  "journal a cache needs at least %" PRIu64 " bytes (%"
                  PRIu64 " MiB; the superblock bucket, the journal, two "
                  "prio copies, the data checksum region and %u data "
                  "buckets)", c->size_bytes,
                  c->name, l.bucket_bytes / 1024, l.journal_buckets,
                  l.min_device_bytes,
                  nc_layout_div_round_up (l.min_device_bytes, 1 << 20),
                  NC_LAYOUT_MIN_DATA_BUCKETS);
  else if (r == -ERANGE)
    config_error (p, line[KEY_cache_journal_size],
                  "journal_size = %" PRIu64 " bytes is too small for "
                  "[cache %s]: the journal needs at least %u buckets (%"
                  PRIu64 " bytes with this bucket size)", c->journal_bytes,
                  c->name, NC_LAYOUT_JOURNAL_BUCKETS_MIN,
                  NC_LAYOUT_JOURNAL_BUCKETS_MIN * l.bucket_bytes);
}

/* nbdcached will create `path` (key at line): its directory must exist
 * and let us create entries; an existing entry is replaced (sockets,
 * pidfile) so only the directory matters.
 */
static void
check_parent (struct parser *p, int line, const char *key, const char *path)
{
  AUTOFREE char *copy = strdup (path);
  const char *dir;
  struct stat st;

  if (copy == NULL) {
    config_no_memory (p);
    return;
  }
  dir = dirname (copy);
  if (stat (dir, &st) < 0)
    config_error (p, line, "%s '%s': directory %s: %s", key, path, dir,
                  strerror (errno));
  else if (!S_ISDIR (st.st_mode))
    config_error (p, line, "%s '%s': %s is not a directory", key, path, dir);
  else if (access (dir, W_OK | X_OK) < 0)
    config_error (p, line, "%s '%s': cannot create it in %s: %s", key, path,
                  dir, strerror (errno));
}

static void
check_cache_path (struct parser *p, const struct config_cache *c,
                  const int *line)
{
  int at = line[KEY_cache_path];

  if (c->path == NULL || at == 0)
    return;
  if (access (c->path, F_OK) == 0) {
    if (access (c->path, R_OK | W_OK) < 0)
      config_error (p, at, "path '%s' of [cache %s]: %s (nbdcached reads "
                    "and writes it)", c->path, c->name, strerror (errno));
  }
  else if (errno != ENOENT)
    config_error (p, at, "path '%s' of [cache %s]: %s", c->path, c->name,
                  strerror (errno));
  else if (c->create && c->size_bytes != 0)
    check_parent (p, at, "path", c->path);
}

void
config_check_server_paths (struct parser *p)
{
  const struct config_server *s = &p->cfg->server;
  const int *line = p->server_keys.line;
  size_t i;

  if (s->pidfile != NULL && line[KEY_server_pidfile] != 0)
    check_parent (p, line[KEY_server_pidfile], "pidfile", s->pidfile);
  if (s->control_socket != NULL && line[KEY_server_control_socket] != 0)
    check_parent (p, line[KEY_server_control_socket], "control_socket",
                  s->control_socket);
  for (i = 0; i < s->nr_listen; i++)
    if (strncmp (s->listen[i], "unix:", 5) == 0)
      check_parent (p, p->listen_lines[i], "listen", s->listen[i] + 5);
  for (i = 0; i < p->cfg->nr_caches; i++)
    check_cache_path (p, &p->cfg->caches[i], p->cache_keys[i].line);
}
