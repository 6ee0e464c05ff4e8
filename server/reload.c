/* SPDX-License-Identifier: BSD-3-Clause */
/* reload.c — live reconfiguration: SIGHUP and `nbdcache reload`.
 *
 * WHAT: re-reads the config file nbdcached was started with and applies
 * the difference to the running server:
 * - an [export] added is opened and served at once (LIST, new
 *   connections);
 * - an [export] removed leaves the table: new connections cannot open
 *   it, its connections finish their in-flight requests, then get
 *   ESHUTDOWN and are closed; once nothing uses it (no connection, no
 *   request in a worker, no control flush) it is closed like at a stop
 *   (flushed; its dirty data stays in the cache, or is written back
 *   first with flush_on_stop = yes);
 * - an [export] changed: the keys a connection is told or checked
 *   against (description, readonly = yes, rotational, max_connections,
 *   tls, allow, allow_unix, allow_subjects) apply to new connections;
 *   the live keys of an export with a cache (mode, sequential_cutoff,
 *   writeback_percent, promote_min, flush_on_stop) are compared with
 *   what the engine runs and applied at once through its live setter
 *   (ncache_export_set, as `nbdcache set`), busy or not; any other key
 *   of the engine (backing and its remote/ceph keys, size,
 *   readonly = no on a read-only export, share_backing, the cache of an
 *   uncached export, or a live key of an uncached export) reopens the
 *   export with the new
 *   section if it is idle at that moment (closing it and opening it again
 *   on the same, still open cache device keeps its dirty data); if it is
 *   busy, or if its cache changes from one [cache] to another or to none
 *   (its dirty data would no longer be read), the running export keeps
 *   its old engine settings and the reload says "KEY changed: takes
 *   effect at restart";
 * - a [cache] added is opened when an export uses it; a [cache] removed
 *   or changed while an export (or a removed one still draining) uses its
 *   device refuses the whole reload; an unused open device of a removed
 *   or changed section is closed;
 * - [server]: the TLS context is always rebuilt from the files (new
 *   handshakes use the new certificate, key, CA and PSK file; sessions
 *   already up keep theirs), tls, default_export, max_buffer and the
 *   timeouts apply at once; listen, workers, pidfile, control_socket,
 *   metrics_listen, user, group, log and log_level "take effect at
 *   restart".
 * One line is logged per export added, removed or changed; the same
 * lines are the answer to `nbdcache reload`.
 * WHY: adding or retiring an export, rotating a certificate or tightening
 * an allow list must not cut every client of every other export.
 * INVARIANTS:
 * - A config that does not load, a device or export that does not open,
 *   or a TLS file that does not load changes nothing: the old
 *   configuration keeps running and the errors (FILE:LINE from the config
 *   library) are the answer.
 * - The table (srv->exports, default_export, devices, cfg, tls) changes
 *   only on the loop thread, under srv->table_lock for writing, in one
 *   step (commit); a connection's export pointer stays valid (exports are
 *   separate allocations and a removed one is freed only when no
 *   connection points at it).
 * - Replaced configs are kept until exit: exports point into them
 *   (open_cfg), and so may the engine (names).  A few KiB per reload.
 * THREADS AND LOCKS: a reload runs on the caller's thread (a control
 * thread) or on the SIGHUP thread, never on the loop thread: it loads the
 * config and opens devices and exports (engine calls), then hands the
 * plan to the loop (ev_async) and waits for the commit.  run_lock makes
 * reloads one at a time; lock guards the hand-over, the SIGHUP thread's
 * state and the closer count.  Removed exports are closed by a closer
 * thread each (the engine may write back for a long time).  Lock order:
 * run_lock, then srv->table_lock, then lock.
 * FAILURE: everything is reported, nothing exits.  A reopen that fails
 * (the export's backing vanished, say) leaves that export unserved until
 * the next reload or restart, and the reload answers an error.  A stop
 * while a reload waits for the loop abandons it (what it opened is
 * closed).
 * NOT HERE: parsing (common/config), which keys changed (reload-diff.c),
 * the engine's live setter (common/cache/live.c).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "reload-diff.h"
#include "server.h"

enum verdict {
  KEEP,                         /* unchanged, or per-connection keys only */
  KEEP_RESTART,                 /* engine keys changed; busy or unsafe */
  REOPEN,                       /* engine keys changed: close, open again */
  ADD,
};

struct plan_export {
  const struct config_export *ce; /* in plan->cfg */
  struct export *old;           /* the running export; NULL for ADD */
  struct export *exp;           /* ADD: opened by the plan */
  enum verdict verdict;
  char *conn_keys;              /* per-connection keys changed, or NULL */
  char *engine_keys;            /* engine keys changed, or NULL */
  char *live_keys;              /* live keys that differ from what the
                                   engine runs (ncache_export_set), or NULL */
  unsigned live_mask;           /* the same: 1u << RELOAD_LIVE_* */
  bool reopen_safe;             /* same cache device (or none before) */
};

struct plan {
  struct config *cfg;
  struct ncache_device **devices; /* parallel to cfg->caches */
  bool *dev_opened;             /* by this plan (closed if it fails) */
  struct ncache_device **close_devs; /* unused old devices to close */
  size_t nr_close_devs;
  struct plan_export *pe;       /* parallel to cfg->exports */
  struct export **removed;      /* old exports not in cfg; after the
                                   commit a closer thread may free them */
  char **removed_lines;         /* the commit's log line for each */
  size_t nr_removed;
  struct tls_server *tls;       /* NULL when tls = off */
  struct export *insert;        /* set: only put this one in the table */
  int result;                   /* of the commit: 0 or -errno */
  bool done;
};

struct reload {
  struct server *srv;
  pthread_mutex_t run_lock;     /* one reload at a time */
  pthread_mutex_t lock;         /* the fields below */
  pthread_cond_t cond;
  ev_async async;               /* reload thread -> loop: commit */
  struct plan *pending;         /* waiting for the loop */
  bool stopped;                 /* the loop stops: no more commits */
  bool hup_running, hup_again, hup_joinable;
  pthread_t hup_thread;
  unsigned nr_closers;          /* closer threads running */
  /* Under srv->table_lock (the loop reads them without it): */
  struct export *retired;       /* removed, still used */
  struct export *closing;       /* a closer thread closes them */
  struct export *parked;        /* no closer thread: closed at exit */
  /* Loop thread (commit) and reload_free: */
  struct config **old_cfgs;
  size_t nr_old_cfgs;
};

/* Apply pe's live keys through the engine's one door, in the order of
 * NCACHE_LIVE_KEYS (reload thread: mode = none writes the dirty data
 * back first).  0, or the first error (logged; the keys before it are
 * applied).
 */
static int
apply_live (const struct config *cfg, struct plan_export *pe)
{
  const struct config_export *n = pe->ce;
  char value[32], msg[256];
  unsigned i;
  int r;

  for (i = 0; i < RELOAD_LIVE_NR; i++) {
    if (!(pe->live_mask & (1u << i)))
      continue;
    switch ((enum reload_live_key) i) {
    case RELOAD_LIVE_MODE:
      snprintf (value, sizeof value, "%s", ncache_mode_name (n->mode));
      break;
    case RELOAD_LIVE_SEQUENTIAL_CUTOFF:
      snprintf (value, sizeof value, "%" PRIu64, n->sequential_cutoff_bytes);
      break;
    case RELOAD_LIVE_WRITEBACK_PERCENT:
      snprintf (value, sizeof value, "%u", n->writeback_percent);
      break;
    case RELOAD_LIVE_PROMOTE_MIN:
      snprintf (value, sizeof value, "%" PRIu64, n->promote_min_bytes);
      break;
    case RELOAD_LIVE_FLUSH_ON_STOP:
    case RELOAD_LIVE_NR:
      snprintf (value, sizeof value, "%s", n->flush_on_stop ? "yes" : "no");
      break;
    }
    msg[0] = '\0';
    if ((r = ncache_export_set (pe->old->nc, reload_live_key_names[i], value,
                                msg, sizeof msg)) < 0) {
      log_error ("%s:%d: export '%s': %s = %s could not be applied live: "
                 "%s", cfg->path, n->line, n->name,
                 reload_live_key_names[i], value,
                 msg[0] ? msg : strerror (-r));
      return r;
    }
  }
  log_info ("%s:%d: export '%s': changed (%s): applied at once",
            cfg->path, n->line, n->name,
            pe->live_keys ? pe->live_keys : "live keys");
  return 0;
}

/* ---- the plan (reload thread) ---- */

static struct export *
live_export (struct server *srv, const char *name)
{
  size_t i;

  for (i = 0; i < srv->nr_exports; i++)
    if (strcmp (srv->exports[i]->name, name) == 0)
      return srv->exports[i];
  return NULL;
}

/* Which exports use dev (live ones, and removed ones not closed yet), as
 * "'a', 'b'"; NULL when none.  Caller holds table_lock.
 */
static char *
device_users (struct server *srv, struct ncache_device *dev)
{
  char *users = NULL, *q;
  struct export *e;
  size_t i;

  for (i = 0; i < srv->nr_exports; i++)
    if (srv->exports[i]->device == dev &&
        asprintf (&q, "'%s'", srv->exports[i]->name) != -1) {
      reload_add_key (&users, q);
      free (q);
    }
  for (e = srv->reload->retired; e; e = e->retired_next)
    if (e->device == dev &&
        asprintf (&q, "'%s' (removed, still draining)", e->name) != -1) {
      reload_add_key (&users, q);
      free (q);
    }
  for (e = srv->reload->closing; e; e = e->retired_next)
    if (e->device == dev &&
        asprintf (&q, "'%s' (removed, closing)", e->name) != -1) {
      reload_add_key (&users, q);
      free (q);
    }
  for (e = srv->reload->parked; e; e = e->retired_next)
    if (e->device == dev &&
        asprintf (&q, "'%s' (removed, closes at exit)", e->name) != -1) {
      reload_add_key (&users, q);
      free (q);
    }
  return users;
}

/* Is a removed export of that name not closed yet? */
static bool
still_draining (struct server *srv, const char *name)
{
  struct export *lists[3], *e;
  bool found = false;
  size_t i;

  pthread_rwlock_rdlock (&srv->table_lock);
  lists[0] = srv->reload->retired;
  lists[1] = srv->reload->closing;
  lists[2] = srv->reload->parked;
  for (i = 0; i < 3; i++)
    for (e = lists[i]; e; e = e->retired_next)
      if (strcmp (e->name, name) == 0)
        found = true;
  pthread_rwlock_unlock (&srv->table_lock);
  return found;
}

static void
plan_free (struct plan *p, bool failed)
{
  size_t i;

  if (p == NULL)
    return;
  if (p->cfg != NULL) {
    for (i = 0; i < p->cfg->nr_exports && p->pe; i++) {
      if (failed && p->pe[i].exp) {
        export_close (p->pe[i].exp, false);
        export_free (p->pe[i].exp);
      }
      free (p->pe[i].conn_keys);
      free (p->pe[i].engine_keys);
      free (p->pe[i].live_keys);
    }
    if (failed && p->devices)
      for (i = 0; i < p->cfg->nr_caches; i++)
        if (p->dev_opened[i])
          ncache_device_close (p->devices[i]);
  }
  if (failed) {
    tls_server_destroy (p->tls);
    config_free (p->cfg);
  }
  free (p->pe);
  free (p->devices);
  free (p->dev_opened);
  free (p->close_devs);
  for (i = 0; i < p->nr_removed && p->removed_lines; i++)
    free (p->removed_lines[i]);
  free (p->removed_lines);
  free (p->removed);
  free (p);
}

static void
log_cache_change (const struct config *ncfg, const struct config_cache *oc,
                  const struct config_cache *nc, const char *what)
{
  if (nc == NULL)
    log_info ("cache '%s': removed%s", oc->name, what);
  else
    log_info ("%s:%d: cache '%s': changed%s", ncfg->path, nc->line,
              oc->name, what);
}

/* Match the new [cache] sections with the open devices.  0, or -EBUSY
 * (logged) when a section in use was removed or changed.
 */
static int
plan_devices (struct server *srv, struct plan *p)
{
  const struct config *ocfg = srv->cfg, *ncfg = p->cfg;
  size_t i, j;
  int r = 0;

  for (j = 0; j < ocfg->nr_caches; j++) {
    const struct config_cache *oc = &ocfg->caches[j];
    const struct config_cache *nc = config_find_cache (ncfg, oc->name);
    struct ncache_device *dev = srv->devices[j];
    char *users;

    if (nc != NULL && reload_cache_eq (oc, nc)) {
      p->devices[nc - ncfg->caches] = dev;  /* carried over */
      continue;
    }
    if (dev == NULL) {          /* never opened: nothing to do */
      log_cache_change (ncfg, oc, nc, "");
      continue;
    }
    pthread_rwlock_rdlock (&srv->table_lock);
    users = device_users (srv, dev);
    pthread_rwlock_unlock (&srv->table_lock);
    if (users != NULL) {
      /* Removed: the line is where the running config has it. */
      log_error ("%s:%d: cache '%s' is %s while export(s) %s use it: "
                 "reload refused (a [cache] in use changes at restart; "
                 "or remove its exports in one reload, the section in a "
                 "later one)",
                 nc ? ncfg->path : ocfg->path, nc ? nc->line : oc->line,
                 oc->name, nc ? "changed" : "removed", users);
      free (users);
      r = -EBUSY;
      continue;
    }
    for (i = 0; nc && i < ncfg->nr_exports; i++)
      if (reload_str_eq (ncfg->exports[i].cache, nc->name)) {
        log_error ("%s:%d: cache '%s' changed while open (no export uses "
                   "it): reload once without export '%s', then with it",
                   ncfg->path, nc->line, nc->name, ncfg->exports[i].name);
        r = -EBUSY;
        break;
      }
    log_cache_change (ncfg, oc, nc, ": its device, unused, is closed");
    p->close_devs[p->nr_close_devs++] = dev;
  }
  return r;
}

/* Decide what happens to every export; log the changes found. */
static void
plan_exports (struct server *srv, struct plan *p)
{
  const struct config *ncfg = p->cfg;
  size_t i;

  for (i = 0; i < ncfg->nr_exports; i++) {
    struct plan_export *pe = &p->pe[i];
    const struct config_export *ce = &ncfg->exports[i];

    pe->ce = ce;
    pe->old = live_export (srv, ce->name);
    if (pe->old == NULL) {
      pe->verdict = ADD;
      continue;
    }
    reload_conn_diff (pe->old->cfg, ce, &pe->conn_keys);
    /* The live keys of an export with a cache go through the engine's
     * setter, at once, busy or not; any other engine key changed:
     * reopen (idle, same device) or wait for a restart.
     */
    if (reload_live_eligible (pe->old, ce)) {
      reload_engine_diff (pe->old->open_cfg, ce, true, &pe->engine_keys);
      pe->live_mask = reload_live_diff (pe->old, ce, &pe->live_keys);
    }
    else
      reload_engine_diff (pe->old->open_cfg, ce, false, &pe->engine_keys);
    pe->reopen_safe = pe->old->open_cfg->cache == NULL ||
                      reload_str_eq (pe->old->open_cfg->cache, ce->cache);
    pe->verdict = pe->engine_keys == NULL ? KEEP
      : pe->reopen_safe ? REOPEN : KEEP_RESTART;
  }
  for (i = 0; i < srv->nr_exports; i++)
    if (config_find_export (ncfg, srv->exports[i]->name) == NULL)
      p->removed[p->nr_removed++] = srv->exports[i];
}

/* Open the devices and exports the plan adds.  0 or -errno (logged). */
static int
plan_open (struct server *srv, struct plan *p)
{
  const struct config *ncfg = p->cfg;
  size_t i;
  int r;

  for (i = 0; i < ncfg->nr_caches; i++) {
    const struct config_cache *cc = &ncfg->caches[i];
    struct ncache_device_config dcfg;
    size_t k;
    bool needed = false;

    if (p->devices[i] != NULL)
      continue;
    for (k = 0; k < ncfg->nr_exports; k++)
      if (reload_str_eq (ncfg->exports[k].cache, cc->name) &&
          p->pe[k].verdict != KEEP && p->pe[k].verdict != KEEP_RESTART)
        needed = true;
    if (!needed)
      continue;
    config_cache_device_config (cc, &dcfg);
    if ((r = ncache_device_open (&dcfg, &p->devices[i])) < 0) {
      log_error ("%s:%d: [cache %s]: cannot open cache device '%s': %s",
                 ncfg->path, cc->line, cc->name, cc->path, strerror (-r));
      return r;
    }
    p->dev_opened[i] = true;
    log_info ("%s:%d: cache '%s': %s opened", ncfg->path, cc->line,
              cc->name, cc->path);
  }
  for (i = 0; i < ncfg->nr_exports; i++) {
    struct plan_export *pe = &p->pe[i];

    if (pe->verdict != ADD)
      continue;
    if ((pe->exp = calloc (1, sizeof *pe->exp)) == NULL)
      return -ENOMEM;
    if ((r = export_open (srv, ncfg, p->devices, pe->ce, pe->exp)) < 0) {
      free (pe->exp);
      pe->exp = NULL;
      if (still_draining (srv, pe->ce->name))
        log_error ("%s:%d: export '%s' was removed by an earlier reload "
                   "and is still open (its clients finish first): reload "
                   "again once it has closed", ncfg->path, pe->ce->line,
                   pe->ce->name);
      return r;
    }
  }
  if (ncfg->server.tls != CONFIG_TLS_OFF &&
      (r = tls_server_create (ncfg, &p->tls)) < 0)
    return r;
  return 0;
}

/* ---- the commit (loop thread) ---- */

static bool
export_idle (struct export *exp)
{
  return exp->nr_conn_refs == 0 &&
         __atomic_load_n (&exp->refs, __ATOMIC_ACQUIRE) == 0;
}

/* Apply the per-connection keys of the new section to a kept export. */
static void
export_update (struct export *exp, const struct config_export *ce)
{
  char *desc = ce->description ? strdup (ce->description) : NULL;

  if (ce->description == NULL || desc != NULL) {
    free (exp->description);
    exp->description = desc;
  }
  exp->cfg = ce;
  exp->rotational = ce->rotational;
  exp->max_connections = ce->max_connections;
  exp->readonly = exp->caps.readonly || ce->readonly;
}

static void
commit (struct server *srv, struct plan *p)
{
  struct reload *rl = srv->reload;
  const struct config *ncfg = p->cfg;
  const struct config_export *def;
  struct export **table;
  struct config **hist;
  struct conn *c, *next;
  size_t i, n = 0;

  table = calloc (ncfg->nr_exports ? ncfg->nr_exports : 1, sizeof *table);
  hist = realloc (rl->old_cfgs, (rl->nr_old_cfgs + 1) * sizeof *hist);
  if (hist != NULL)
    rl->old_cfgs = hist;
  if (table == NULL || hist == NULL) {
    free (table);
    p->result = -ENOMEM;
    return;
  }
  pthread_rwlock_wrlock (&srv->table_lock);
  for (i = 0; i < ncfg->nr_exports; i++) {
    struct plan_export *pe = &p->pe[i];

    switch (pe->verdict) {
    case ADD:
      table[n++] = pe->exp;
      break;
    case REOPEN:
      if (export_idle (pe->old)) {
        pe->old->removed = true;  /* the reload thread closes, reopens */
        break;
      }
      pe->verdict = KEEP_RESTART;
      /* fallthrough */
    case KEEP:
    case KEEP_RESTART:
      export_update (pe->old, pe->ce);
      table[n++] = pe->old;
      break;
    }
  }
  for (i = 0; i < p->nr_removed; i++) {
    struct export *e = p->removed[i];

    if (asprintf (&p->removed_lines[i], "export '%s': removed: %u "
                  "connection(s) finish their requests, then get ESHUTDOWN",
                  e->name, e->nr_connections) == -1)
      p->removed_lines[i] = NULL;
    e->removed = true;
    e->retired_next = rl->retired;
    rl->retired = e;
  }
  free (srv->exports);
  srv->exports = table;
  srv->nr_exports = n;
  srv->default_export = NULL;
  def = config_find_export (ncfg, "");
  for (i = 0; def && i < n; i++)
    if (strcmp (table[i]->name, def->name) == 0)
      srv->default_export = table[i];
  free (srv->devices);
  srv->devices = p->devices;
  p->devices = NULL;
  rl->old_cfgs[rl->nr_old_cfgs++] = srv->cfg;
  srv->cfg = p->cfg;
  tls_server_retire (srv->tls);
  srv->tls = p->tls;
  pthread_rwlock_unlock (&srv->table_lock);

  /* Clients of removed exports: in-flight requests finish, new ones get
   * ESHUTDOWN, then the connection closes (conn.c).
   */
  for (c = srv->conns; c; c = next) {
    next = c->next;
    if (c->exp != NULL && c->exp->removed)
      conn_begin_shutdown (c);
  }
  p->result = 0;
}

/* ---- a reopened export back into the table (loop thread) ---- */

static void
insert_commit (struct server *srv, struct plan *p)
{
  struct export **t;
  const struct config_export *def;

  t = calloc (srv->nr_exports + 1, sizeof *t);
  if (t == NULL) {
    p->result = -ENOMEM;
    return;
  }
  memcpy (t, srv->exports, srv->nr_exports * sizeof *t);
  t[srv->nr_exports] = p->insert;
  pthread_rwlock_wrlock (&srv->table_lock);
  free (srv->exports);
  srv->exports = t;
  srv->nr_exports++;
  def = config_find_export (srv->cfg, "");
  if (def && strcmp (def->name, p->insert->name) == 0)
    srv->default_export = p->insert;
  pthread_rwlock_unlock (&srv->table_lock);
  p->result = 0;
}

static void
async_cb (struct ev_loop *loop, ev_async *w, int revents)
{
  struct server *srv = w->data;
  struct reload *rl = srv->reload;
  struct plan *p;

  pthread_mutex_lock (&rl->lock);
  p = rl->pending;
  rl->pending = NULL;
  pthread_mutex_unlock (&rl->lock);
  if (p == NULL)
    return;
  if (p->insert != NULL)
    insert_commit (srv, p);
  else
    commit (srv, p);
  pthread_mutex_lock (&rl->lock);
  p->done = true;
  pthread_cond_broadcast (&rl->cond);
  pthread_mutex_unlock (&rl->lock);
  reload_reap (srv);
}

/* Hand p to the loop and wait.  0, or -ESHUTDOWN (the loop stops). */
static int
commit_on_loop (struct server *srv, struct plan *p)
{
  struct reload *rl = srv->reload;
  int r;

  pthread_mutex_lock (&rl->lock);
  if (rl->stopped) {
    pthread_mutex_unlock (&rl->lock);
    return -ESHUTDOWN;
  }
  rl->pending = p;
  ev_async_send (srv->loop, &rl->async);
  while (!p->done && !rl->stopped)
    pthread_cond_wait (&rl->cond, &rl->lock);
  if (!p->done) {
    rl->pending = NULL;         /* stopped before the loop took it */
    r = -ESHUTDOWN;
  }
  else
    r = p->result;
  pthread_mutex_unlock (&rl->lock);
  return r;
}

/* ---- running a reload ---- */

static void
log_verdicts (struct server *srv, struct plan *p)
{
  size_t i;

  for (i = 0; i < p->cfg->nr_exports; i++) {
    struct plan_export *pe = &p->pe[i];
    const char *path = p->cfg->path;
    int line = pe->ce->line;

    switch (pe->verdict) {
    case ADD:
      log_info ("%s:%d: export '%s': added", path, line, pe->ce->name);
      break;
    case KEEP:
      if (pe->conn_keys)
        log_info ("%s:%d: export '%s': changed (%s): applies to new "
                  "connections", path, line, pe->ce->name, pe->conn_keys);
      break;
    case KEEP_RESTART:
      if (pe->conn_keys)
        log_info ("%s:%d: export '%s': changed (%s): applies to new "
                  "connections", path, line, pe->ce->name, pe->conn_keys);
      log_warning ("%s:%d: export '%s': %s changed: takes effect at "
                   "restart (%s)", path, line, pe->ce->name, pe->engine_keys,
                   pe->reopen_safe
                   ? "the export is in use; a reload while it has no "
                     "client reopens it"
                   : "its dirty data is on the cache it was opened with");
      break;
    case REOPEN:
      break;                    /* logged when reopened */
    }
  }
  for (i = 0; i < p->nr_removed; i++)
    log_info ("%s", p->removed_lines[i] ? p->removed_lines[i]
                                        : "export removed");
}

/* The reopen half of REOPEN: the old export is out of the table and
 * idle.  0 or -errno (logged).
 */
static int
reopen (struct server *srv, struct plan_export *pe)
{
  struct export *exp = calloc (1, sizeof *exp);
  struct plan *ins;
  int r;

  export_close (pe->old, false);
  export_free (pe->old);
  pe->old = NULL;
  if (exp == NULL)
    return -ENOMEM;
  /* srv->cfg and srv->devices are the plan's now; only reloads change
   * them, and this is the reload.
   */
  r = export_open (srv, srv->cfg, srv->devices, pe->ce, exp);
  if (r < 0) {
    log_error ("%s:%d: export '%s': %s changed, and reopening it failed: "
               "not served until a reload or restart opens it",
               srv->cfg->path, pe->ce->line, pe->ce->name, pe->engine_keys);
    free (exp);
    return r;
  }
  if ((ins = calloc (1, sizeof *ins)) == NULL)
    r = -ENOMEM;
  else {
    ins->insert = exp;
    r = commit_on_loop (srv, ins);
    free (ins);
  }
  if (r < 0) {
    log_error ("export '%s': reopened, but not served: %s", pe->ce->name,
               strerror (-r));
    export_close (exp, false);
    export_free (exp);
    return r;
  }
  log_info ("%s:%d: export '%s': %s changed: reopened", srv->cfg->path,
            pe->ce->line, pe->ce->name, pe->engine_keys);
  return 0;
}

static int
reload_locked (struct server *srv)
{
  const struct config *ocfg = srv->cfg;
  struct plan *p = calloc (1, sizeof *p);
  char *keys = NULL;
  size_t i;
  int r, result = 0;

  if (srv->config_path == NULL) {
    log_error ("reload: the ad-hoc mode has no config file to re-read");
    free (p);
    return -EINVAL;
  }
  if (p == NULL)
    return -ENOMEM;
  log_info ("reload: re-reading %s", srv->config_path);
  if ((r = config_load_server (srv->config_path, &p->cfg)) < 0) {
    log_error ("reload: %s is not valid; the old configuration keeps "
               "running", srv->config_path);
    plan_free (p, true);
    return r;
  }
  p->devices = calloc (p->cfg->nr_caches + 1, sizeof *p->devices);
  p->dev_opened = calloc (p->cfg->nr_caches + 1, sizeof *p->dev_opened);
  p->close_devs = calloc (ocfg->nr_caches + 1, sizeof *p->close_devs);
  p->pe = calloc (p->cfg->nr_exports + 1, sizeof *p->pe);
  p->removed = calloc (srv->nr_exports + 1, sizeof *p->removed);
  p->removed_lines = calloc (srv->nr_exports + 1, sizeof *p->removed_lines);
  if (!p->devices || !p->dev_opened || !p->close_devs || !p->pe ||
      !p->removed || !p->removed_lines) {
    plan_free (p, true);
    return -ENOMEM;
  }
  if ((r = plan_devices (srv, p)) < 0)
    goto failed;
  plan_exports (srv, p);
  if ((r = plan_open (srv, p)) < 0)
    goto failed;
  if ((r = commit_on_loop (srv, p)) < 0) {
    log_error ("reload: %s", r == -ESHUTDOWN ? "the server is stopping"
               : strerror (-r));
    goto failed;
  }

  /* Committed: the new configuration is serving. */
  reload_server_restart_keys (&ocfg->server, &srv->cfg->server, &keys);
  if (keys) {
    log_warning ("%s: [server] %s changed: takes effect at restart",
                 srv->cfg->path, keys);
    free (keys);
  }
  log_verdicts (srv, p);
  for (i = 0; i < p->nr_close_devs; i++)
    ncache_device_close (p->close_devs[i]);
  for (i = 0; i < p->cfg->nr_exports; i++) {
    struct plan_export *pe = &p->pe[i];

    if (pe->verdict == REOPEN && (r = reopen (srv, pe)) < 0)
      result = r;
    else if ((pe->verdict == KEEP || pe->verdict == KEEP_RESTART) &&
             pe->live_mask != 0 && (r = apply_live (p->cfg, pe)) < 0)
      result = r;
  }
  if (srv->tls)
    log_info ("reload: TLS certificates, keys and PSK file re-read: new "
              "handshakes use them");
  log_info ("reload: %s: %zu export(s) served", srv->cfg->path,
            srv->nr_exports);
  for (i = 0; i < p->cfg->nr_exports; i++)
    p->pe[i].exp = NULL;        /* in the table now */
  plan_free (p, false);
  return result;

 failed:
  log_error ("reload: nothing changed; the old configuration keeps running");
  plan_free (p, true);
  return r;
}

int
reload_run (struct server *srv, char **report)
{
  int r, cr;

  cr = log_capture_begin (LOG_LEVEL_INFO);
  pthread_mutex_lock (&srv->reload->run_lock);
  r = reload_locked (srv);
  pthread_mutex_unlock (&srv->reload->run_lock);
  *report = cr == 0 ? log_capture_end () : NULL;
  return r;
}

/* ---- SIGHUP ---- */

static void *
hup_thread (void *opaque)
{
  struct server *srv = opaque;
  struct reload *rl = srv->reload;
  char *report;

  for (;;) {
    reload_run (srv, &report);  /* logged already */
    free (report);
    pthread_mutex_lock (&rl->lock);
    if (!rl->hup_again || rl->stopped) {
      rl->hup_running = false;
      pthread_mutex_unlock (&rl->lock);
      return NULL;
    }
    rl->hup_again = false;
    pthread_mutex_unlock (&rl->lock);
  }
}

void
reload_start (struct server *srv)
{
  struct reload *rl = srv->reload;
  sigset_t all, old;
  int r;

  log_info ("SIGHUP: reloading the configuration");
  pthread_mutex_lock (&rl->lock);
  if (rl->hup_running) {
    rl->hup_again = true;       /* the running one reloads once more */
    pthread_mutex_unlock (&rl->lock);
    return;
  }
  pthread_mutex_unlock (&rl->lock);
  if (rl->hup_joinable)
    pthread_join (rl->hup_thread, NULL);
  rl->hup_joinable = false;
  /* Signals belong to the loop thread. */
  sigfillset (&all);
  pthread_sigmask (SIG_SETMASK, &all, &old);
  pthread_mutex_lock (&rl->lock);
  rl->hup_running = true;
  pthread_mutex_unlock (&rl->lock);
  r = pthread_create (&rl->hup_thread, NULL, hup_thread, srv);
  pthread_sigmask (SIG_SETMASK, &old, NULL);
  if (r != 0) {
    log_error ("SIGHUP: cannot start the reload thread: %s", strerror (r));
    pthread_mutex_lock (&rl->lock);
    rl->hup_running = false;
    pthread_mutex_unlock (&rl->lock);
    return;
  }
  rl->hup_joinable = true;
}

/* ---- removed exports ---- */

struct closer {
  struct server *srv;
  struct export *exp;
};

static void
unlink_export (struct export **list, struct export *exp)
{
  while (*list != exp)
    list = &(*list)->retired_next;
  *list = exp->retired_next;
}

static void *
closer_thread (void *opaque)
{
  struct closer *cl = opaque;
  struct server *srv = cl->srv;
  struct reload *rl = srv->reload;
  struct export *exp = cl->exp;

  free (cl);
  log_info ("export '%s': removed by a reload: no client left, closing",
            exp->name);
  export_close (exp, true);     /* flush_on_stop writes back first */
  /* Its name is read under the lock until it is off the list. */
  pthread_rwlock_wrlock (&srv->table_lock);
  unlink_export (&rl->closing, exp);
  pthread_rwlock_unlock (&srv->table_lock);
  export_free (exp);
  pthread_mutex_lock (&rl->lock);
  rl->nr_closers--;
  pthread_cond_broadcast (&rl->cond);
  pthread_mutex_unlock (&rl->lock);
  return NULL;
}

void
reload_reap (struct server *srv)
{
  struct reload *rl = srv->reload;
  struct export **pp, *exp;

  if (rl == NULL || rl->retired == NULL)
    return;
  for (pp = &rl->retired; (exp = *pp) != NULL; ) {
    struct closer *cl;
    pthread_attr_t attr;
    sigset_t all, old;
    pthread_t th;
    int r;

    if (!export_idle (exp) || (cl = malloc (sizeof *cl)) == NULL) {
      pp = &exp->retired_next;
      continue;
    }
    cl->srv = srv;
    cl->exp = exp;
    pthread_rwlock_wrlock (&srv->table_lock);
    *pp = exp->retired_next;
    exp->retired_next = rl->closing;
    rl->closing = exp;
    pthread_rwlock_unlock (&srv->table_lock);
    pthread_mutex_lock (&rl->lock);
    rl->nr_closers++;
    pthread_mutex_unlock (&rl->lock);
    sigfillset (&all);
    pthread_sigmask (SIG_SETMASK, &all, &old);
    pthread_attr_init (&attr);
    pthread_attr_setdetachstate (&attr, PTHREAD_CREATE_DETACHED);
    r = pthread_create (&th, &attr, closer_thread, cl);
    pthread_attr_destroy (&attr);
    pthread_sigmask (SIG_SETMASK, &old, NULL);
    if (r != 0) {
      /* Closed at exit instead (reload_close). */
      log_warning ("export '%s': cannot start a thread to close it: %s; "
                   "it closes at exit", exp->name, strerror (r));
      free (cl);
      pthread_mutex_lock (&rl->lock);
      rl->nr_closers--;
      pthread_mutex_unlock (&rl->lock);
      pthread_rwlock_wrlock (&srv->table_lock);
      unlink_export (&rl->closing, exp);
      exp->retired_next = rl->parked;
      rl->parked = exp;
      pthread_rwlock_unlock (&srv->table_lock);
    }
  }
}

void
export_unref (struct server *srv, struct export *exp)
{
  if (__atomic_sub_fetch (&exp->refs, 1, __ATOMIC_ACQ_REL) == 0 &&
      srv->reload != NULL)
    ev_async_send (srv->loop, &srv->reload->async);  /* reap */
}

/* ---- life cycle ---- */

int
reload_init (struct server *srv)
{
  struct reload *rl = calloc (1, sizeof *rl);

  if (rl == NULL)
    return -ENOMEM;
  rl->srv = srv;
  pthread_mutex_init (&rl->run_lock, NULL);
  pthread_mutex_init (&rl->lock, NULL);
  pthread_cond_init (&rl->cond, NULL);
  ev_async_init (&rl->async, async_cb);
  rl->async.data = srv;
  ev_async_start (srv->loop, &rl->async);
  srv->reload = rl;
  return 0;
}

void
reload_stop (struct server *srv)
{
  struct reload *rl = srv->reload;

  if (rl == NULL)
    return;
  pthread_mutex_lock (&rl->lock);
  rl->stopped = true;
  pthread_cond_broadcast (&rl->cond);
  pthread_mutex_unlock (&rl->lock);
}

static void
close_list (struct export **list)
{
  while (*list) {
    struct export *exp = *list;

    *list = exp->retired_next;
    export_close (exp, true);
    export_free (exp);
  }
}

void
reload_close (struct server *srv)
{
  struct reload *rl = srv->reload;

  if (rl == NULL)
    return;
  reload_stop (srv);
  if (rl->hup_joinable)
    pthread_join (rl->hup_thread, NULL);
  rl->hup_joinable = false;
  pthread_mutex_lock (&rl->lock);
  while (rl->nr_closers > 0)
    pthread_cond_wait (&rl->cond, &rl->lock);
  pthread_mutex_unlock (&rl->lock);
  /* Every connection is gone and every control thread has ended. */
  close_list (&rl->retired);
  close_list (&rl->parked);
  ev_async_stop (srv->loop, &rl->async);
}

void
reload_free (struct server *srv)
{
  struct reload *rl = srv->reload;
  size_t i;

  if (rl == NULL)
    return;
  for (i = 0; i < rl->nr_old_cfgs; i++)
    config_free (rl->old_cfgs[i]);
  free (rl->old_cfgs);
  pthread_mutex_destroy (&rl->run_lock);
  pthread_mutex_destroy (&rl->lock);
  pthread_cond_destroy (&rl->cond);
  free (rl);
  srv->reload = NULL;
}
