/* SPDX-License-Identifier: BSD-3-Clause */
/* config-identity.c — one file under two names in one config.
 *
 * WHAT: config_check_identity, run once the whole file is read: every
 * cache device path and every file backing is reduced to the identity of
 * what it names, and two sections naming the same thing are refused
 * (both FILE:LINEs in the message) where that would lose data:
 *   - two [cache] sections on one device ("c.cache" and "./c.cache", a
 *     symlink, a hard link, /dev/sdb and /dev/disk/by-id/…): two
 *     allocators would hand out the same buckets;
 *   - a cache device that is also a backing;
 *   - two exports on one backing, unless both are read-only (a writer
 *     next to another opener has its writes overwritten by the other's
 *     writeback, or serves stale data).  share_backing = yes on a
 *     read-only, uncached export lets it sit next to a writer: it takes
 *     no lock, and reads whatever the file holds.
 * share_backing's own rules (read-only and uncached only) are here too.
 * WHY: the runtime locks (common/util/ownlock.h) refuse the second open
 * anyway, but at --check-config the admin learns both lines at once,
 * before anything starts.
 *
 * INVARIANTS: the identity of an existing path is (st_dev, st_ino), and
 * of a block device its st_rdev (two device nodes for one disk); a path
 * that does not exist yet (create = yes, size =) is identified by its
 * parent directory's identity and its last component, so "./x" and "x"
 * still meet.  Paths that cannot be stat'ed for another reason are
 * skipped: check_backing and the opener report those.  Backings that are
 * not absolute paths (URIs of other drivers) are skipped.
 * THREADS AND LOCKS: none (config_load runs one at a time).
 * FAILURE: config_error at the later section's line; parsing goes on.
 * NOT HERE: the runtime locks (the cache device and backing drivers).
 */
#include <config.h>

#include <errno.h>
#include <libgen.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "cleanup.h"
#include "config-file.h"
#include "config-internal.h"

struct ident {
  bool known;
  bool block;                   /* rdev is the identity */
  dev_t dev;                    /* st_dev (of the parent if !exists) */
  ino_t ino;                    /* st_ino (of the parent if !exists) */
  dev_t rdev;
  char *last;                   /* last component if !exists, else NULL */
};

/* One thing a section names: its identity and where it was set. */
struct named {
  struct ident id;
  const char *what;             /* "cache" or "export" */
  const char *name;
  const char *path;
  int line;
  bool writable;                /* exports: takes an exclusive lock */
  bool shared;                  /* exports: share_backing = yes */
};

static void
identify (const char *path, struct ident *id)
{
  struct stat st;
  AUTOFREE char *copy = NULL;
  AUTOFREE char *copy2 = NULL;

  memset (id, 0, sizeof *id);
  if (path == NULL || path[0] != '/')
    return;
  if (stat (path, &st) == 0) {
    id->known = true;
    id->block = S_ISBLK (st.st_mode);
    id->dev = st.st_dev;
    id->ino = st.st_ino;
    id->rdev = st.st_rdev;
    return;
  }
  if (errno != ENOENT)
    return;
  /* Not there yet: its directory and its name. */
  if ((copy = strdup (path)) == NULL || (copy2 = strdup (path)) == NULL)
    return;
  if (stat (dirname (copy), &st) != 0 || !S_ISDIR (st.st_mode))
    return;
  if ((id->last = strdup (basename (copy2))) == NULL)
    return;
  id->known = true;
  id->dev = st.st_dev;
  id->ino = st.st_ino;
}

static bool
same (const struct ident *a, const struct ident *b)
{
  if (!a->known || !b->known)
    return false;
  if (a->block || b->block)
    return a->block && b->block && a->rdev == b->rdev;
  if ((a->last == NULL) != (b->last == NULL))
    return false;
  return a->dev == b->dev && a->ino == b->ino &&
    (a->last == NULL || strcmp (a->last, b->last) == 0);
}

/* Do these two sections conflict?  Caches conflict with anything;
 * exports only when one writes and the other did not opt out of locking.
 */
static bool
conflict (const struct named *a, const struct named *b)
{
  if (!same (&a->id, &b->id))
    return false;
  if (strcmp (a->what, "cache") == 0 || strcmp (b->what, "cache") == 0)
    return true;
  if (!a->writable && !b->writable)
    return false;               /* readers share */
  return !a->shared && !b->shared;
}

static void
report (struct parser *p, const struct named *first,
        const struct named *second)
{
  const char *why, *first_file;
  int first_file_line;

  if (strcmp (first->what, "cache") == 0 &&
      strcmp (second->what, "cache") == 0)
    why = "one cache device cannot be two caches: both would hand out the "
      "same buckets and lose data; keep one [cache] section and point the "
      "exports at it";
  else if (strcmp (first->what, "cache") == 0 ||
           strcmp (second->what, "cache") == 0)
    why = "a cache device cannot also be a backing";
  else
    why = "two exports on one backing lose writes (each overwrites the "
      "other's, and a cache serves stale data): use one export, make both "
      "readonly = yes, or give a read-only, uncached one share_backing = "
      "yes";
  first_file = config_where (p, first->line, &first_file_line);
  config_error (p, second->line,
                "[%s %s] %s '%s' is the same %s as [%s %s] %s '%s' "
                "(%s:%d): %s",
                second->what, second->name,
                strcmp (second->what, "cache") == 0 ? "path" : "backing",
                second->path, second->id.block ? "device" : "file",
                first->what, first->name,
                strcmp (first->what, "cache") == 0 ? "path" : "backing",
                first->path, first_file, first_file_line, why);
}

/* share_backing is safe only where this export never writes and never
 * caches: then reading next to a writer can only see newer data.
 */
static void
check_share_backing (struct parser *p, const struct config_export *e,
                     const int *line)
{
  if (!e->share_backing)
    return;
  if (!e->readonly)
    config_error (p, line[KEY_export_share_backing],
                  "share_backing = yes needs readonly = yes: a writer that "
                  "shares its backing file loses writes");
  else if (e->cache != NULL)
    config_error (p, line[KEY_export_share_backing],
                  "share_backing = yes with cache = %s: the cache would keep "
                  "serving data that the other opener has since changed; "
                  "remove cache or share_backing", e->cache);
}

/* A total order on identities that keeps the ones same() matches
 * adjacent: unknown last, then block devices by rdev, then files by
 * (dev, ino, has last, last); ties in file order.
 */
static int
cmp_ident (const void *pa, const void *pb)
{
  const struct named *a = *(const struct named *const *) pa;
  const struct named *b = *(const struct named *const *) pb;
  const struct ident *x = &a->id, *y = &b->id;
  int r;

  if (x->known != y->known)
    return x->known ? -1 : 1;
  if (x->known) {
    if (x->block != y->block)
      return x->block ? -1 : 1;
    if (x->block) {
      if (x->rdev != y->rdev)
        return x->rdev < y->rdev ? -1 : 1;
    }
    else {
      if (x->dev != y->dev)
        return x->dev < y->dev ? -1 : 1;
      if (x->ino != y->ino)
        return x->ino < y->ino ? -1 : 1;
      if ((x->last == NULL) != (y->last == NULL))
        return x->last == NULL ? -1 : 1;
      if (x->last && (r = strcmp (x->last, y->last)) != 0)
        return r;
    }
  }
  return a < b ? -1 : a > b;    /* v[] is in file order */
}

/* For each section, the first earlier one it conflicts with, reported in
 * file order.  Sorting by identity makes this O(n log n) instead of
 * comparing every pair (quadratic: 40,000 exports took over 20 s); only
 * sections with the same identity are compared pairwise.
 */
static void
report_conflicts (struct parser *p, struct named *v, size_t nr)
{
  struct named **order = malloc (nr * sizeof *order);
  size_t *first = malloc (nr * sizeof *first);
  size_t lo, hi, i, j;

  if (order == NULL || first == NULL) {
    free (order);
    free (first);
    config_no_memory (p);
    return;
  }
  for (i = 0; i < nr; i++) {
    order[i] = &v[i];
    first[i] = SIZE_MAX;
  }
  qsort (order, nr, sizeof *order, cmp_ident);
  for (lo = 0; lo < nr && order[lo]->id.known; lo = hi) {
    for (hi = lo + 1; hi < nr && same (&order[lo]->id, &order[hi]->id); hi++)
      ;
    for (j = lo + 1; j < hi; j++)
      for (i = lo; i < j; i++)
        if (conflict (order[i], order[j])) {
          first[order[j] - v] = order[i] - v;
          break;                /* one message per section */
        }
  }
  for (j = 0; j < nr; j++)
    if (first[j] != SIZE_MAX)
      report (p, &v[first[j]], &v[j]);
  free (order);
  free (first);
}

void
config_check_identity (struct parser *p)
{
  struct config *cfg = p->cfg;
  size_t n = cfg->nr_caches + cfg->nr_exports, nr = 0, i;
  struct named *v;

  for (i = 0; i < cfg->nr_exports; i++)
    check_share_backing (p, &cfg->exports[i], p->export_keys[i].line);
  if (n < 2)
    return;
  v = calloc (n, sizeof *v);
  if (v == NULL) {
    config_no_memory (p);
    return;
  }
  for (i = 0; i < cfg->nr_caches; i++) {
    const struct config_cache *c = &cfg->caches[i];
    struct named *x = &v[nr++];

    identify (c->path, &x->id);
    x->what = "cache";
    x->name = c->name;
    x->path = c->path;
    x->line = p->cache_keys[i].line[KEY_cache_path];
  }
  for (i = 0; i < cfg->nr_exports; i++) {
    const struct config_export *e = &cfg->exports[i];
    struct named *x = &v[nr++];

    identify (e->backing, &x->id);
    x->what = "export";
    x->name = e->name;
    x->path = e->backing;
    x->line = p->export_keys[i].line[KEY_export_backing];
    x->writable = !e->readonly;
    x->shared = e->share_backing;
  }
  report_conflicts (p, v, nr);
  for (i = 0; i < nr; i++)
    free (v[i].id.last);
  free (v);
}
