/* SPDX-License-Identifier: BSD-3-Clause */
/* reload-diff.c — what changed between two configs, key by key: see
 * reload-diff.h.
 */
#include <config.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reload-diff.h"

const char *const reload_live_key_names[RELOAD_LIVE_NR] = {
  [RELOAD_LIVE_MODE] = "mode",
  [RELOAD_LIVE_SEQUENTIAL_CUTOFF] = "sequential_cutoff",
  [RELOAD_LIVE_WRITEBACK_PERCENT] = "writeback_percent",
  [RELOAD_LIVE_PROMOTE_MIN] = "promote_min",
  [RELOAD_LIVE_FLUSH_ON_STOP] = "flush_on_stop",
};

bool
reload_str_eq (const char *a, const char *b)
{
  return a == b || (a && b && strcmp (a, b) == 0);
}

static bool
strv_eq (char **a, size_t na, char **b, size_t nb)
{
  size_t i;

  if (na != nb)
    return false;
  for (i = 0; i < na; i++)
    if (!reload_str_eq (a[i], b[i]))
      return false;
  return true;
}

/* Append ", key" (or "key") to *list; on ENOMEM the list stays short. */
void
reload_add_key (char **list, const char *key)
{
  char *s;

  if (asprintf (&s, "%s%s%s", *list ? *list : "", *list ? ", " : "",
                key) == -1)
    return;
  free (*list);
  *list = s;
}

bool
reload_cache_eq (const struct config_cache *a,
                 const struct config_cache *b)
{
  return reload_str_eq (a->path, b->path) && a->size_bytes == b->size_bytes &&
         a->create == b->create && a->direct == b->direct &&
         a->bucket_bytes == b->bucket_bytes &&
         a->journal_bytes == b->journal_bytes &&
         a->node_cache_bytes == b->node_cache_bytes &&
         a->journal_delay_ms == b->journal_delay_ms &&
         a->discard == b->discard;
}

/* The engine's keys: what the export was opened with against the new
 * section.  readonly only one way: yes -> no needs a writable engine;
 * no -> yes is told to new connections.
 */
void
reload_engine_diff (const struct config_export *o,
                    const struct config_export *n, bool skip_live,
                    char **keys)
{
#define CMP(cond, key) \
  do { if (!(cond)) reload_add_key (keys, key); } while (0)
  CMP (reload_str_eq (o->backing, n->backing), "backing");
  CMP (o->size_bytes == n->size_bytes, "size");
  CMP (o->backing_connections == n->backing_connections,
       "backing_connections");
  CMP (o->backing_timeout_ms == n->backing_timeout_ms, "backing_timeout");
  CMP (reload_str_eq (o->backing_tls_certificates, n->backing_tls_certificates),
       "backing_tls_certificates");
  CMP (o->backing_tls_verify == n->backing_tls_verify, "backing_tls_verify");
  CMP (reload_str_eq (o->backing_tls_psk_file, n->backing_tls_psk_file),
       "backing_tls_psk_file");
  CMP (reload_str_eq (o->backing_tls_username, n->backing_tls_username),
       "backing_tls_username");
  CMP (reload_str_eq (o->ceph_conf, n->ceph_conf), "ceph_conf");
  CMP (reload_str_eq (o->ceph_id, n->ceph_id), "ceph_id");
  CMP (reload_str_eq (o->ceph_keyring, n->ceph_keyring), "ceph_keyring");
  CMP (reload_str_eq (o->ceph_key, n->ceph_key), "ceph_key");
  CMP (reload_str_eq (o->cache, n->cache), "cache");
  CMP (!(o->readonly && !n->readonly), "readonly");
  CMP (o->share_backing == n->share_backing, "share_backing");
  if (!skip_live) {
    CMP (o->mode == n->mode, "mode");
    CMP (o->writeback_percent == n->writeback_percent, "writeback_percent");
    CMP (o->sequential_cutoff_bytes == n->sequential_cutoff_bytes,
         "sequential_cutoff");
    CMP (o->promote_min_bytes == n->promote_min_bytes, "promote_min");
    CMP (o->flush_on_stop == n->flush_on_stop, "flush_on_stop");
  }
#undef CMP
}

/* Can the engine's live setter (common/cache/live.c) apply the live keys
 * of n to the running export?  It has a cache device, and n keeps it.
 */
bool
reload_live_eligible (const struct export *old,
                      const struct config_export *n)
{
  return old->nc != NULL && old->open_cfg->cache != NULL &&
    reload_str_eq (old->open_cfg->cache, n->cache);
}

/* The live keys (NCACHE_LIVE_KEYS) whose value in n differs from what
 * the engine runs now: compared with the engine, not the section it was
 * opened with, since `nbdcache set` may have changed it (a reload serves
 * the config's values again, nbdcache(8) set).
 */
unsigned
reload_live_diff (struct export *old, const struct config_export *n,
                  char **keys)
{
  struct ncache_export_params p;
  bool differs[RELOAD_LIVE_NR];
  unsigned mask = 0, i;

  ncache_export_get_params (old->nc, &p);
  differs[RELOAD_LIVE_MODE] = p.mode != n->mode;
  differs[RELOAD_LIVE_SEQUENTIAL_CUTOFF] =
    p.sequential_cutoff_bytes != n->sequential_cutoff_bytes;
  differs[RELOAD_LIVE_WRITEBACK_PERCENT] =
    p.writeback_percent != n->writeback_percent;
  differs[RELOAD_LIVE_PROMOTE_MIN] =
    p.promote_min_bytes != n->promote_min_bytes;
  differs[RELOAD_LIVE_FLUSH_ON_STOP] = p.flush_on_stop != n->flush_on_stop;
  for (i = 0; i < RELOAD_LIVE_NR; i++)
    if (differs[i]) {
      mask |= 1u << i;
      reload_add_key (keys, reload_live_key_names[i]);
    }
  return mask;
}

/* The keys a new connection is told or checked against. */
void
reload_conn_diff (const struct config_export *o,
                  const struct config_export *n, char **keys)
{
#define CMP(cond, key) \
  do { if (!(cond)) reload_add_key (keys, key); } while (0)
  CMP (reload_str_eq (o->description, n->description), "description");
  CMP (o->readonly == n->readonly, "readonly");
  CMP (o->rotational == n->rotational, "rotational");
  CMP (o->max_connections == n->max_connections, "max_connections");
  CMP (o->tls_required == n->tls_required, "tls");
  CMP (o->nr_allow == n->nr_allow &&
       (n->nr_allow == 0 ||
        memcmp (o->allow, n->allow, n->nr_allow * sizeof *n->allow) == 0),
       "allow");
  CMP (o->allow_unix == n->allow_unix, "allow_unix");
  CMP (strv_eq (o->allow_subjects, o->nr_allow_subjects,
                n->allow_subjects, n->nr_allow_subjects), "allow_subjects");
#undef CMP
}

/* [server] keys read only at start: reported, not applied. */
void
reload_server_restart_keys (const struct config_server *o,
                            const struct config_server *n, char **keys)
{
#define CMP(cond, key) \
  do { if (!(cond)) reload_add_key (keys, key); } while (0)
  CMP (strv_eq (o->listen, o->nr_listen, n->listen, n->nr_listen),
       "listen");
  CMP (o->workers == n->workers, "workers");
  CMP (reload_str_eq (o->pidfile, n->pidfile), "pidfile");
  CMP (reload_str_eq (o->control_socket, n->control_socket), "control_socket");
  CMP (reload_str_eq (o->metrics_listen, n->metrics_listen), "metrics_listen");
  CMP (reload_str_eq (o->user, n->user), "user");
  CMP (reload_str_eq (o->group, n->group), "group");
  CMP (o->log_target == n->log_target, "log");
  CMP (o->log_level == n->log_level, "log_level");
#undef CMP
}
