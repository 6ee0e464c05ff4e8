/* SPDX-License-Identifier: BSD-3-Clause */
/* reload-diff.h — what changed between two configs, key by key.
 *
 * WHAT: compares a running export's section (and the engine's live
 * settings) with the same section in a re-read config, and the [server]
 * and [cache] sections, naming the keys that differ in one line
 * ("backing, size") for the reload's log and answer; the live keys also
 * come back as a bit set (RELOAD_LIVE_*) so the reload applies them
 * without parsing its own message.
 * WHY: reload.c decides what to do with an export from which keys
 * changed; the comparisons are long lists that read best on their own.
 * INVARIANTS: every key of struct config_export that the engine, a
 * connection or the live setter reads is compared by exactly one of
 * reload_engine_diff / reload_conn_diff / reload_live_diff.
 * THREADS: pure functions of their arguments (reload_live_diff reads the
 * engine's settings, which the engine locks).  FAILURE: on ENOMEM a key
 * list stays short; nothing else fails.
 * NOT HERE: deciding and applying (reload.c).
 */
#ifndef NBDCACHE_RELOAD_DIFF_H
#define NBDCACHE_RELOAD_DIFF_H

#include <stdbool.h>

#include "server.h"

/* The live keys, in the order ncache_export_set is given them
 * (NCACHE_LIVE_KEYS): mode first, so that mode = none writes back before
 * the rest.
 */
enum reload_live_key {
  RELOAD_LIVE_MODE,
  RELOAD_LIVE_SEQUENTIAL_CUTOFF,
  RELOAD_LIVE_WRITEBACK_PERCENT,
  RELOAD_LIVE_PROMOTE_MIN,
  RELOAD_LIVE_FLUSH_ON_STOP,
  RELOAD_LIVE_NR,
};
extern const char *const reload_live_key_names[RELOAD_LIVE_NR];

bool reload_str_eq (const char *a, const char *b);

/* Append ", key" (or "key") to *list; on ENOMEM the list stays short. */
void reload_add_key (char **list, const char *key);

bool reload_cache_eq (const struct config_cache *a,
                      const struct config_cache *b);

/* The engine's keys the export was opened with (o) against n; the live
 * keys too unless skip_live.
 */
void reload_engine_diff (const struct config_export *o,
                         const struct config_export *n, bool skip_live,
                         char **keys);

/* Can the engine's live setter apply n's live keys to old?  It has a
 * cache device, and n keeps it.
 */
bool reload_live_eligible (const struct export *old,
                           const struct config_export *n);

/* The live keys whose value in n differs from what old's engine runs
 * now, as a bit set (1u << RELOAD_LIVE_*), also appended to *keys.
 */
unsigned reload_live_diff (struct export *old, const struct config_export *n,
                           char **keys);

/* The keys a new connection is told or checked against. */
void reload_conn_diff (const struct config_export *o,
                       const struct config_export *n, char **keys);

/* [server] keys read only at start: reported, not applied. */
void reload_server_restart_keys (const struct config_server *o,
                                 const struct config_server *n, char **keys);

#endif /* NBDCACHE_RELOAD_DIFF_H */
