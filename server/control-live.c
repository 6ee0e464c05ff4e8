/* SPDX-License-Identifier: BSD-3-Clause */
/* control-live.c — the control socket's live changes of a running
 * export: set, detach, attach.
 *
 * WHAT: the answers to three commands of the control socket
 * (control-server.c reads the line, finds the export, sends what these
 * functions build):
 *   "set KEY=VALUE[ KEY=VALUE…] -- NAME"
 *        each pair through the engine's one door (ncache_export_set), in
 *        order, stopping at the first that fails.  Answer, one line:
 *        {"result":"ok","applied":["mode=writethrough",…],
 *         "mode":"writethrough","detached":false}
 *        or {"error":"…","applied":[… the pairs set before it]}.
 *   "detach NAME"
 *        progress lines as "flush" ({"event":"progress",…}), then
 *        {"event":"done","result":"ok"} or {"event":"done",
 *        "result":"error","error":"export 'NAME' not detached: …"}.
 *   "attach[ mode=MODE] -- NAME"  (or "attach NAME")
 *        the configured mode, or MODE.  {"result":"ok","mode":"…"} or
 *        {"error":"…"}.
 * NAME is the rest of the line after "-- " ("" = the default export).
 * WHY: like bcache's sysfs cache_mode and detach: an admin changes a
 * running export without a restart that drops every client.  The config
 * file is not rewritten: a restart (or a reload) applies the config's
 * values again.
 * INVARIANTS: an answer always says which pairs were applied; nothing is
 * applied after a failed pair.
 * THREADS AND LOCKS: a control connection's thread; the engine
 * serialises changes of one export (live.c).
 * FAILURE: the engine's message, as the answer's error.
 * NOT HERE: the socket, the line, the other commands (control-server.c);
 * what a change does (common/cache/live.c).
 */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json.h>

#include "cache.h"
#include "log.h"
#include "server.h"

void
control_live_split (char *arg, char **pairs, const char **name)
{
  size_t len;
  char *sep;

  if (arg == NULL) {
    *pairs = NULL;
    *name = "";
    return;
  }
  if (strncmp (arg, "-- ", 3) == 0 || strcmp (arg, "--") == 0) {
    *pairs = NULL;
    *name = arg[2] ? arg + 3 : "";
    return;
  }
  len = strlen (arg);
  sep = strstr (arg, " -- ");
  if (sep != NULL) {
    *sep = '\0';
    *name = sep + 4;
  }
  else if (len >= 3 && strcmp (arg + len - 3, " --") == 0) {
    arg[len - 3] = '\0';       /* the default export */
    *name = "";
  }
  else {
    *pairs = NULL;              /* "attach NAME", "detach NAME" */
    *name = arg;
    return;
  }
  *pairs = arg;
}

static struct json_object *
error_reply (const char *msg, struct json_object *applied)
{
  struct json_object *o = json_object_new_object ();

  if (o == NULL) {
    json_object_put (applied);
    return NULL;
  }
  json_object_object_add (o, "error", json_object_new_string (msg));
  if (applied != NULL)
    json_object_object_add (o, "applied", applied);
  return o;
}

static void
add_state (struct json_object *o, struct export *exp)
{
  struct ncache_export_params p;

  ncache_export_get_params (exp->nc, &p);
  json_object_object_add (o, "mode",
                          json_object_new_string (ncache_mode_name (p.mode)));
  json_object_object_add (o, "detached", json_object_new_boolean (p.detached));
}

struct json_object *
control_live_set (struct export *exp, char *pairs, ncache_progress_fn cancel,
                  void *opaque)
{
  enum ncache_mode mode;
  struct json_object *applied = json_object_new_array (), *o;
  char msg[512], *save = NULL, *tok;
  int r;

  if (applied == NULL)
    return NULL;
  if (pairs == NULL || pairs[0] == '\0')
    return error_reply ("nothing to set: give KEY=VALUE (live keys: "
                        NCACHE_LIVE_KEYS ")", applied);
  for (tok = strtok_r (pairs, " ", &save); tok != NULL;
       tok = strtok_r (NULL, " ", &save)) {
    char *eq = strchr (tok, '=');

    if (eq == NULL || eq == tok) {
      snprintf (msg, sizeof msg, "'%s' is not KEY=VALUE", tok);
      return error_reply (msg, applied);
    }
    *eq = '\0';
    log_info ("control: set %s=%s on export '%s'", tok, eq + 1, exp->name);
    /* mode=none is a detach: cancelled at shutdown or by a hang-up. */
    if (strcmp (tok, "mode") == 0 &&
        ncache_mode_from_string (eq + 1, &mode) == 0 &&
        mode == NCACHE_MODE_NONE && exp->open_cfg->cache != NULL) {
      msg[0] = '\0';
      r = ncache_export_detach (exp->nc, cancel, opaque, msg, sizeof msg);
    }
    else
      r = ncache_export_set (exp->nc, tok, eq + 1, msg, sizeof msg);
    *eq = '=';
    if (r < 0) {
      if (msg[0] == '\0')
        snprintf (msg, sizeof msg, "%s: %s", tok, strerror (-r));
      return error_reply (msg, applied);
    }
    json_object_array_add (applied, json_object_new_string (tok));
  }
  if ((o = json_object_new_object ()) == NULL) {
    json_object_put (applied);
    return NULL;
  }
  json_object_object_add (o, "result", json_object_new_string ("ok"));
  json_object_object_add (o, "applied", applied);
  add_state (o, exp);
  return o;
}

struct json_object *
control_live_detach (struct export *exp, ncache_progress_fn fn, void *opaque)
{
  struct json_object *o;
  char msg[512];
  int r;

  log_info ("control: detach of export '%s' started", exp->name);
  r = ncache_export_detach (exp->nc, fn, opaque, msg, sizeof msg);
  if ((o = json_object_new_object ()) == NULL)
    return NULL;
  json_object_object_add (o, "event", json_object_new_string ("done"));
  json_object_object_add (o, "result",
                          json_object_new_string (r == 0 ? "ok" : "error"));
  if (r < 0)
    json_object_object_add (o, "error", json_object_new_string (
                              msg[0] ? msg : strerror (-r)));
  else if (msg[0])
    json_object_object_add (o, "note", json_object_new_string (msg));
  return o;
}

struct json_object *
control_live_attach (struct export *exp, char *pairs)
{
  enum ncache_mode mode = exp->open_cfg->mode;
  struct json_object *o;
  char msg[512];
  int r;

  if (pairs != NULL && pairs[0] != '\0') {
    if (strncmp (pairs, "mode=", 5) != 0 || strchr (pairs, ' ') != NULL ||
        ncache_mode_from_string (pairs + 5, &mode) < 0 ||
        mode == NCACHE_MODE_NONE)
      return error_reply ("attach takes mode=writeback, mode=writethrough "
                          "or mode=writearound", NULL);
  }
  r = ncache_export_attach (exp->nc, mode, msg, sizeof msg);
  if (r < 0)
    return error_reply (msg[0] ? msg : strerror (-r), NULL);
  if ((o = json_object_new_object ()) == NULL)
    return NULL;
  json_object_object_add (o, "result", json_object_new_string ("ok"));
  add_state (o, exp);
  return o;
}
