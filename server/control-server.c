/* SPDX-License-Identifier: BSD-3-Clause */
/* control-server.c — the control socket: statistics, flushes and
 * reloads for the admin.
 *
 * WHAT: when [server] control_socket = PATH is set, nbdcached listens on
 * that Unix socket (mode 0600: the socket is the only access control) and
 * answers one command per connection, then closes it.  The client sends
 * ONE line (at most CONTROL_MAX_LINE_BYTES, ending in "\n"):
 *   "stats"        one JSON document, then "\n":
 *                  {"version":1,
 *                   "exports":[{"name":…,"mode":"writeback","readonly":…,
 *                               "cache":"NAME" or null,"size_bytes":N,
 *                               then every field of struct ncache_stats
 *                               by its C name, then "backing":{"uri":…,
 *                               "driver":"file"|"nbd"|…, and for a
 *                               remote backing "connections",
 *                               "connected", "down_since" (unix time,
 *                               0 = all up), "reconnect_attempts",
 *                               "retried_requests",
 *                               "timed_out_requests"}}, …],
 *                   "caches":[{"name":…,"path":…, then every field of
 *                              struct ncache_device_stats by its C name},
 *                             …]}
 *   "stats NAME"   the same with only that export and its cache (if any).
 *   "reload"       re-reads the config file (reload.c): {"result":"ok",
 *                  "report":"<one line per change>\n…"}, or
 *                  {"error":"<the reasons, FILE:LINE for a bad config>"}
 *                  with the old configuration still serving.
 *                  "mode" is the mode the export serves in now (a live
 *                  change, "none" when detached), "configured_mode" the
 *                  config's, "detached" true after a detach.
 *   "flush NAME"   writes back every dirty block of the export (the
 *                  engine's drain): a JSON line
 *                  {"event":"progress","remaining_bytes":R,"total_bytes":T}
 *                  about every 250 ms, then
 *                  {"event":"done","result":"ok"} or
 *                  {"event":"done","result":"error","error":"<strerror>"}.
 *                  Read-only exports: done ok at once; mode none: done ok
 *                  after a backing flush.
 *   "set KEY=VALUE[ KEY=VALUE…] -- NAME", "detach NAME",
 *   "attach[ mode=MODE] -- NAME"
 *                  change the running export: control-live.c has their
 *                  answers.
 * Errors are one JSON line {"error":"…"}: "no export 'NAME'", "unknown
 * command", "command too long".  NAME is the
 * rest of the line after the first space ("" = the default export); a
 * trailing "\r" is ignored.  Admin tool: `nbdcache stats|flush|set|detach|attach`.
 * WHY: admins need to see the cache (hits, dirty data, writeback, GC) and
 * to empty it of dirty data before maintenance, without stopping the
 * server; a Unix socket with file permissions needs no new auth scheme.
 * INVARIANTS:
 * - Every live control connection is on ctl->conns (counted by nr_conns)
 *   from accept until just before its fd is closed, so shutdown() in
 *   control_server_close never touches a closed or reused fd.
 * - A control thread uses exports and cache devices; they stay open while
 *   nr_conns > 0: control_server_close (before export_table_close) waits
 *   for it to reach 0.  That count is the export's reference.
 * - A reload may change the export table: threads read it under the
 *   server's table_lock taken for reading, never across I/O or a flush;
 *   a flush holds a reference to its export instead (export->refs), so
 *   a removed export stays open until the flush ends (never
 *   nr_connections, which the loop owns).
 * THREADS AND LOCKS: accept, control_server_open and control_server_stop
 * run on the loop thread.  Each connection is served by a detached thread doing
 * blocking I/O (control connections are rare; the loop never blocks) with
 * every signal blocked (libev's signal watchers get them).  ctl->lock
 * protects conns, nr_conns and stopping; it is never held across I/O or
 * an engine call.
 * FAILURE: a client that sends nothing, or stops reading, times out after
 * CONTROL_IO_TIMEOUT_S; a flush whose client goes away is cancelled (the
 * next progress line fails to send, or the socket reports a hang-up).  At
 * shutdown running flushes are cancelled (done error "Operation
 * canceled").  A failed accept or thread start is logged and the socket
 * lives on; out of fds or memory, accepting pauses for
 * CONTROL_ACCEPT_RETRY_S (the pending connection keeps the socket
 * readable, so retrying at once would spin).  Nothing a control client does can stop the server.
 * NOT HERE: what the numbers mean (cache.h), the admin tool (admin/).
 */
#include <config.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <json.h>

#include "backing.h"
#include "compiler.h"
#include "invariant.h"
#include "log.h"
#include "server.h"

#define CONTROL_MAX_LINE_BYTES 1024
#define CONTROL_IO_TIMEOUT_S   10    /* s a client may stall a read/write */
#define CONTROL_BACKLOG        16
#define CONTROL_MAX_DRAIN_BYTES (1024 * 1024) /* discarded after an error */
#define CONTROL_GRACE_MS       2000  /* ms threads get to finish at close */
#define CONTROL_WAIT_LOG_S     10    /* s between "still waiting" logs */

struct control_conn {
  struct control_conn *next, *prev;
  struct control *ctl;
  int fd;
};

struct control {
  struct server *srv;
  int fd;                       /* listening socket; -1 once stopped */
  char *path;
  dev_t dev;                    /* the socket we created at path, so we */
  ino_t ino;                    /*   never remove another server's */
  ev_io io;
  ev_timer retry;               /* out of fds: accept again after this */
  pthread_mutex_t lock;         /* protects the fields below */
  pthread_cond_t idle;          /* signalled when nr_conns drops */
  struct control_conn *conns;
  unsigned nr_conns;
  bool stopping;
};

/* ---- statistics as JSON ---- */

/* NCACHE_STATS_FIELDS and NCACHE_DEVICE_STATS_FIELDS (cache.h) list every
 * field; the admin tool and its users rely on "every field".
 */

static void
add_u64 (struct json_object *o, const char *key, uint64_t v)
{
  json_object_object_add (o, key, json_object_new_uint64 (v));
}

static void
add_str (struct json_object *o, const char *key, const char *s)
{
  json_object_object_add (o, key, s ? json_object_new_string (s) : NULL);
}

/* The backing store: its identity and driver, and for a remote one its
 * connection state.  NULL on ENOMEM.
 */
static struct json_object *
backing_json (struct backing *b)
{
  struct json_object *o = json_object_new_object ();
  struct backing_remote_state rs;

  if (o == NULL)
    return NULL;
  add_str (o, "uri", b->uri);
  add_str (o, "driver", b->ops->name);
  if (backing_remote_get_state (b, &rs) == 0) {
    add_u64 (o, "connections", rs.connections);
    add_u64 (o, "connected", rs.connected);
    add_u64 (o, "down_since", (uint64_t) rs.down_since_s);
    add_u64 (o, "reconnect_attempts", rs.reconnect_attempts);
    add_u64 (o, "retried_requests", rs.retried_requests);
    add_u64 (o, "timed_out_requests", rs.timed_out_requests);
  }
  return o;
}

static struct json_object *
export_json (const struct export *exp)
{
  struct json_object *o = json_object_new_object ();
  struct ncache_export_params p;
  struct ncache_stats st;

  if (o == NULL)
    return NULL;
  ncache_get_stats (exp->nc, &st);
  add_str (o, "name", exp->name);
  ncache_export_get_params (exp->nc, &p);
  add_str (o, "mode", ncache_mode_name (p.mode));
  add_str (o, "configured_mode", ncache_mode_name (exp->open_cfg->mode));
  json_object_object_add (o, "detached", json_object_new_boolean (p.detached));
  json_object_object_add (o, "readonly",
                          json_object_new_boolean (exp->caps.readonly));
  add_str (o, "cache", exp->open_cfg->cache);
  add_u64 (o, "size_bytes", exp->caps.size_bytes);
#define ADD_FIELD(f, log) add_u64 (o, #f, st.f);
  NCACHE_STATS_FIELDS (ADD_FIELD)
#undef ADD_FIELD
  if (exp->backing != NULL)
    json_object_object_add (o, "backing", backing_json (exp->backing));
  return o;
}

static struct json_object *
cache_json (struct ncache_device *dev, const struct config_cache *cc)
{
  struct json_object *o = json_object_new_object ();
  struct ncache_device_stats st;

  if (o == NULL)
    return NULL;
  ncache_device_get_stats (dev, &st);
  add_str (o, "name", ncache_device_name (dev));
  add_str (o, "path", cc->path);
#define ADD_FIELD(f, log) add_u64 (o, #f, st.f);
  NCACHE_DEVICE_STATS_FIELDS (ADD_FIELD)
#undef ADD_FIELD
  return o;
}

/* The whole document, or only `only` and its cache (server.h). */
struct json_object *
control_stats_json (struct server *srv, const struct export *only)
{
  const struct config *cfg = srv->cfg;
  struct json_object *doc = json_object_new_object ();
  struct json_object *exports = json_object_new_array ();
  struct json_object *caches = json_object_new_array ();
  size_t i;

  if (doc == NULL || exports == NULL || caches == NULL) {
    json_object_put (doc);
    json_object_put (exports);
    json_object_put (caches);
    return NULL;
  }
  json_object_object_add (doc, "version", json_object_new_int (1));
  json_object_object_add (doc, "exports", exports);
  json_object_object_add (doc, "caches", caches);
  for (i = 0; i < srv->nr_exports; i++)
    if (only == NULL || only == srv->exports[i])
      json_object_array_add (exports, export_json (srv->exports[i]));
  for (i = 0; i < cfg->nr_caches; i++) {
    if (srv->devices == NULL || srv->devices[i] == NULL)
      continue;                 /* no export uses it: not open */
    if (only && only->device != srv->devices[i])
      continue;
    json_object_array_add (caches, cache_json (srv->devices[i],
                                               &cfg->caches[i]));
  }
  return doc;
}

/* ---- blocking I/O on a control connection ---- */

/* 0, or -errno (-EPIPE: the client went away; -EAGAIN: it stalled). */
static int
send_all (int fd, const char *buf, size_t len)
{
  while (len > 0) {
    ssize_t n = send (fd, buf, len, MSG_NOSIGNAL);

    if (n < 0) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    buf += n;
    len -= n;
  }
  return 0;
}

/* Serialize o as one line and drop it.  0 or -errno. */
static int
send_json (int fd, struct json_object *o)
{
  const char *s;
  char *line;
  int r;

  if (o == NULL)
    return -ENOMEM;
  s = json_object_to_json_string_ext (o, JSON_C_TO_STRING_PLAIN |
                                         JSON_C_TO_STRING_NOSLASHESCAPE);
  if (s == NULL || asprintf (&line, "%s\n", s) == -1) {
    json_object_put (o);
    return -ENOMEM;
  }
  r = send_all (fd, line, strlen (line));
  free (line);
  json_object_put (o);
  return r;
}

/* {"error": "<what><arg><end>"}; NULL on ENOMEM. */
static struct json_object *
error_json (const char *what, const char *arg, const char *end)
{
  struct json_object *o = json_object_new_object ();
  char *msg;

  if (o == NULL)
    return NULL;
  if (asprintf (&msg, "%s%s%s", what, arg, end) == -1) {
    json_object_put (o);
    return NULL;
  }
  add_str (o, "error", msg);
  free (msg);
  return o;
}

/* {"error": "…"}; the message is formatted. */
static int ATTRIBUTE_FORMAT_PRINTF (2, 3)
send_error (int fd, const char *fmt, ...)
{
  struct json_object *o = json_object_new_object ();
  va_list ap;
  char *msg;
  int r;

  va_start (ap, fmt);
  r = vasprintf (&msg, fmt, ap);
  va_end (ap);
  if (r == -1 || o == NULL) {
    if (r != -1)
      free (msg);
    json_object_put (o);
    return -ENOMEM;
  }
  add_str (o, "error", msg);
  free (msg);
  return send_json (fd, o);
}

/* Read the command line into buf (NUL-terminated, without "\n" / "\r\n").
 * 0, -EMSGSIZE if longer than CONTROL_MAX_LINE_BYTES, -ENODATA if the
 * client closed without sending anything, or -errno.
 */
static int
read_line (int fd, char *buf)
{
  size_t len = 0;

  for (;;) {
    ssize_t n = recv (fd, buf + len, CONTROL_MAX_LINE_BYTES + 1 - len, 0);
    char *nl;

    if (n < 0) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    if (n == 0) {               /* EOF: accept an unterminated line */
      if (len == 0)
        return -ENODATA;
      buf[len] = '\0';
      break;
    }
    nl = memchr (buf + len, '\n', n);
    len += n;
    if (nl != NULL) {
      *nl = '\0';
      len = nl - buf;
      break;
    }
    if (len > CONTROL_MAX_LINE_BYTES)
      return -EMSGSIZE;
  }
  if (len > CONTROL_MAX_LINE_BYTES)
    return -EMSGSIZE;
  if (len > 0 && buf[len - 1] == '\r')
    buf[len - 1] = '\0';
  return 0;
}

/* After an error reply to input we did not read: tell the client we are
 * done (EOF), and read what it sent until it closes (or the receive
 * timeout), so closing does not reset the connection under the reply.
 */
static void
drain_input (int fd)
{
  char buf[4096];
  size_t total = 0;
  ssize_t n;

  shutdown (fd, SHUT_WR);
  while (total < CONTROL_MAX_DRAIN_BYTES &&
         ((n = recv (fd, buf, sizeof buf, 0)) > 0 ||
          (n < 0 && errno == EINTR)))
    total += n > 0 ? n : 0;
}

/* ---- commands ---- */

static bool
is_stopping (struct control *ctl)
{
  bool s;

  pthread_mutex_lock (&ctl->lock);
  s = ctl->stopping;
  pthread_mutex_unlock (&ctl->lock);
  return s;
}

/* A long engine call's progress function that only cancels: at
 * shutdown, or when the client hung up (non-zero then).
 */
static int
cancel_check (void *opaque, uint64_t remaining_bytes, uint64_t total_bytes)
{
  struct control_conn *cc = opaque;
  struct pollfd pfd = { .fd = cc->fd, .events = POLLRDHUP };

  (void) remaining_bytes;
  (void) total_bytes;
  if (is_stopping (cc->ctl))
    return 1;
  /* A client that hung up is gone even if a send would still fit in the
   * socket buffer.
   */
  return poll (&pfd, 1, 0) == 1 &&
    (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)) ? 1 : 0;
}

static int
flush_progress (void *opaque, uint64_t remaining_bytes, uint64_t total_bytes)
{
  struct control_conn *cc = opaque;
  struct json_object *o;
  int r;

  if (cancel_check (opaque, remaining_bytes, total_bytes))
    return 1;
  if ((o = json_object_new_object ()) == NULL)
    return 0;                   /* a missed progress line is harmless */
  add_str (o, "event", "progress");
  add_u64 (o, "remaining_bytes", remaining_bytes);
  add_u64 (o, "total_bytes", total_bytes);
  r = send_json (cc->fd, o);
  return r == 0 || r == -ENOMEM ? 0 : 1;  /* EPIPE, a stall: cancel */
}

static void
do_flush (struct control_conn *cc, struct export *exp)
{
  struct json_object *o;
  int r;

  if (exp->caps.readonly)
    r = 0;                      /* nothing can be dirty */
  else if (is_stopping (cc->ctl))
    r = -ECANCELED;
  else {
    log_info ("control: flush of export '%s' started", exp->name);
    r = ncache_drain (exp->nc, flush_progress, cc);
    if (r < 0)
      log_info ("control: flush of export '%s': %s", exp->name,
                strerror (-r));
    else
      log_info ("control: flush of export '%s' done", exp->name);
  }
  if ((o = json_object_new_object ()) == NULL)
    return;
  add_str (o, "event", "done");
  add_str (o, "result", r == 0 ? "ok" : "error");
  if (r < 0)
    add_str (o, "error", strerror (-r));
  send_json (cc->fd, o);        /* the client may be gone: nothing to do */
}

/* "stats" and "flush" (caller holds table_lock for reading; no I/O
 * here): the stats document or an error in *reply (NULL on ENOMEM), or
 * a flush's export in *flush_exp.
 */
static void
serve_table (struct control_conn *cc, const char *line,
             struct json_object **reply, struct export **flush_exp)
{
  struct server *srv = cc->ctl->srv;
  const char *arg = NULL;
  struct export *exp = NULL;
  bool is_stats, is_flush;
  size_t cmdlen;

  cmdlen = strcspn (line, " ");
  if (line[cmdlen] == ' ')
    arg = line + cmdlen + 1;
  is_stats = cmdlen == 5 && memcmp (line, "stats", 5) == 0;
  is_flush = cmdlen == 5 && memcmp (line, "flush", 5) == 0;
  log_debug ("control: command '%s'", line);
  if (!is_stats && !is_flush) {
    *reply = error_json ("unknown command", "", "");
    return;
  }
  /* "stats" alone means every export; "flush" alone the default export,
   * like NBD's empty export name.
   */
  if (arg != NULL || is_flush) {
    const char *name = arg ? arg : "";

    if ((exp = export_find (srv, name, strlen (name))) == NULL) {
      *reply = error_json ("no export '", name, "'");
      return;
    }
  }
  if (is_stats)
    *reply = control_stats_json (srv, exp);
  else
    *flush_exp = exp;
}

/* "reload": re-read the config file (reload.c) and answer with what it
 * logged: {"result":"ok","report":TEXT} or {"error":TEXT}.
 */
static void
do_reload (struct control_conn *cc)
{
  struct json_object *o;
  char *report = NULL;
  int r;

  log_info ("control: reload requested");
  r = reload_run (cc->ctl->srv, &report);
  if (r < 0) {
    send_error (cc->fd, "%s", report && *report ? report : strerror (-r));
    free (report);
    return;
  }
  if ((o = json_object_new_object ()) != NULL) {
    add_str (o, "result", "ok");
    add_str (o, "report", report ? report : "");
  }
  send_json (cc->fd, o);
  free (report);
}

/* "set", "detach", "attach" (control-live.c): 0, or -ENOENT if cmd is
 * none of them.
 */
static int
do_live (struct control_conn *cc, const char *cmd, size_t cmdlen, char *arg)
{
  struct server *srv = cc->ctl->srv;
  struct export *exp;
  const char *name;
  char *pairs;

  if (!(cmdlen == 3 && memcmp (cmd, "set", 3) == 0) &&
      !(cmdlen == 6 && memcmp (cmd, "detach", 6) == 0) &&
      !(cmdlen == 6 && memcmp (cmd, "attach", 6) == 0))
    return -ENOENT;
  control_live_split (arg, &pairs, &name);
  /* Found under table_lock and held by a reference, as a flush is: a
   * reload never waits for a detach's write-back.
   */
  pthread_rwlock_rdlock (&srv->table_lock);
  if ((exp = export_find (srv, name, strlen (name))) != NULL)
    __atomic_add_fetch (&exp->refs, 1, __ATOMIC_ACQ_REL);
  pthread_rwlock_unlock (&srv->table_lock);
  if (exp == NULL) {
    send_error (cc->fd, "no export '%s'", name);
    return 0;
  }
  if (cmd[0] == 's')
    send_json (cc->fd, control_live_set (exp, pairs, cancel_check, cc));
  else if (cmd[0] == 'a')
    send_json (cc->fd, control_live_attach (exp, pairs));
  else if (is_stopping (cc->ctl))
    send_error (cc->fd, "the server is stopping");
  else
    send_json (cc->fd, control_live_detach (exp, flush_progress, cc));
  export_unref (srv, exp);
  return 0;
}

/* One command; the export table is read under table_lock (a reload may
 * change it), and a flush holds a reference to its export instead, so a
 * reload never waits for a flush.
 */
static void
serve (struct control_conn *cc)
{
  struct server *srv = cc->ctl->srv;
  char line[CONTROL_MAX_LINE_BYTES + 2];
  struct json_object *reply = NULL;
  char *arg = NULL;
  size_t cmdlen;
  struct export *exp = NULL;
  int r;

  if ((r = read_line (cc->fd, line)) < 0) {
    if (r == -EMSGSIZE) {
      send_error (cc->fd, "command too long");
      drain_input (cc->fd);
    }
    else if (r != -ENODATA)
      log_debug ("control: reading a command: %s", strerror (-r));
    return;
  }
  if (strcmp (line, "reload") == 0) {
    do_reload (cc);
    return;
  }
  cmdlen = strcspn (line, " ");
  if (line[cmdlen] == ' ')
    arg = line + cmdlen + 1;
  if (do_live (cc, line, cmdlen, arg) == 0)
    return;
  pthread_rwlock_rdlock (&srv->table_lock);
  serve_table (cc, line, &reply, &exp);
  if (exp != NULL)
    __atomic_add_fetch (&exp->refs, 1, __ATOMIC_ACQ_REL);
  pthread_rwlock_unlock (&srv->table_lock);
  if (reply != NULL)
    send_json (cc->fd, reply);
  if (exp != NULL) {
    do_flush (cc, exp);
    export_unref (srv, exp);
  }
}

static void *
conn_thread (void *opaque)
{
  struct control_conn *cc = opaque;
  struct control *ctl = cc->ctl;

  serve (cc);
  pthread_mutex_lock (&ctl->lock);
  if (cc->prev)
    cc->prev->next = cc->next;
  else
    ctl->conns = cc->next;
  if (cc->next)
    cc->next->prev = cc->prev;
  ctl->nr_conns--;
  pthread_cond_broadcast (&ctl->idle);
  pthread_mutex_unlock (&ctl->lock);
  /* Off the list: control_server_close will not shut this fd down any more. */
  close (cc->fd);
  free (cc);
  return NULL;
}

/* ---- the listening socket (loop thread) ---- */

#define CONTROL_ACCEPT_RETRY_S 1.0

static void
retry_cb (struct ev_loop *loop, ev_timer *w, int revents)
{
  struct control *ctl = w->data;

  if (ctl->fd != -1)
    ev_io_start (loop, &ctl->io);
}

static void
accept_cb (struct ev_loop *loop, ev_io *w, int revents)
{
  struct control *ctl = w->data;
  struct timeval tv = { .tv_sec = CONTROL_IO_TIMEOUT_S };
  struct control_conn *cc;
  pthread_attr_t attr;
  sigset_t all, old;
  pthread_t th;
  int fd, r;

  fd = accept4 (ctl->fd, NULL, NULL, SOCK_CLOEXEC);   /* blocking fd */
  if (fd == -1) {
    int e = errno;

    if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
      /* The connection stays pending, the socket readable: without a
       * pause the watcher would fire again at once, forever.
       */
      ev_io_stop (loop, &ctl->io);
      ev_timer_set (&ctl->retry, CONTROL_ACCEPT_RETRY_S, 0);
      ev_timer_start (loop, &ctl->retry);
    }
    if (e != EAGAIN && e != EWOULDBLOCK && e != EINTR && e != ECONNABORTED)
      log_error_ratelimited ("control socket %s: accept: %s", ctl->path,
                             strerror (e));
    return;
  }
  setsockopt (fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt (fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if ((cc = calloc (1, sizeof *cc)) == NULL) {
    log_error ("control socket %s: out of memory", ctl->path);
    close (fd);
    return;
  }
  cc->ctl = ctl;
  cc->fd = fd;

  pthread_mutex_lock (&ctl->lock);
  cc->next = ctl->conns;
  if (ctl->conns)
    ctl->conns->prev = cc;
  ctl->conns = cc;
  ctl->nr_conns++;
  pthread_mutex_unlock (&ctl->lock);

  /* The thread starts with every signal blocked: they are the loop's. */
  sigfillset (&all);
  pthread_sigmask (SIG_SETMASK, &all, &old);
  pthread_attr_init (&attr);
  pthread_attr_setdetachstate (&attr, PTHREAD_CREATE_DETACHED);
  r = pthread_create (&th, &attr, conn_thread, cc);
  pthread_attr_destroy (&attr);
  pthread_sigmask (SIG_SETMASK, &old, NULL);
  if (r != 0) {
    log_error ("control socket %s: cannot start a thread: %s", ctl->path,
               strerror (r));
    pthread_mutex_lock (&ctl->lock);
    if (cc->prev)
      cc->prev->next = cc->next;
    else
      ctl->conns = cc->next;
    if (cc->next)
      cc->next->prev = cc->prev;
    ctl->nr_conns--;
    pthread_mutex_unlock (&ctl->lock);
    close (fd);
    free (cc);
  }
}

/* Bind a temporary name in the same directory, make it 0600, listen,
 * then rename it into place: the path appears only when it is ready and
 * never with looser permissions.  0 or -errno (logged).
 */
static int
bind_socket (struct control *ctl)
{
  struct sockaddr_un sun = { .sun_family = AF_UNIX };
  char tmp[sizeof sun.sun_path + 32];
  struct stat st;
  int fd, r;

  if (strlen (ctl->path) >= sizeof sun.sun_path) {
    log_error ("control socket %s: path too long", ctl->path);
    return -ENAMETOOLONG;
  }
  if (snprintf (tmp, sizeof tmp, "%s.%ld.tmp", ctl->path, (long) getpid ())
      >= (int) sizeof sun.sun_path)
    snprintf (tmp, sizeof tmp, "%s", ctl->path);
  strcpy (sun.sun_path, tmp);
  /* A stale socket from an earlier run would make bind or rename fail. */
  if (lstat (tmp, &st) == 0 && S_ISSOCK (st.st_mode))
    unlink (tmp);

  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd == -1) {
    r = -errno;
    log_error ("control socket %s: socket: %m", ctl->path);
    return r;
  }
  if (bind (fd, (struct sockaddr *) &sun, sizeof sun) == -1 ||
      chmod (tmp, 0600) == -1 || listen (fd, CONTROL_BACKLOG) == -1) {
    r = -errno;
    log_error ("control socket %s: %s: %m", ctl->path, tmp);
    goto err;
  }
  if (strcmp (tmp, ctl->path) != 0) {
    if (lstat (ctl->path, &st) == 0 && !S_ISSOCK (st.st_mode)) {
      r = -EEXIST;
      log_error ("control socket %s: exists and is not a socket",
                 ctl->path);
      goto err;
    }
    if (rename (tmp, ctl->path) == -1) {
      r = -errno;
      log_error ("control socket %s: rename from %s: %m", ctl->path, tmp);
      goto err;
    }
  }
  if (stat (ctl->path, &st) == -1) {
    r = -errno;
    log_error ("control socket %s: %m", ctl->path);
    unlink (ctl->path);
    close (fd);
    return r;
  }
  ctl->dev = st.st_dev;
  ctl->ino = st.st_ino;
  ctl->fd = fd;
  return 0;

 err:
  unlink (tmp);
  close (fd);
  return r;
}

int
control_server_open (struct server *srv)
{
  const char *path = srv->cfg->server.control_socket;
  struct control *ctl;
  int r;

  if (path == NULL)
    return 0;
  if ((ctl = calloc (1, sizeof *ctl)) == NULL ||
      (ctl->path = strdup (path)) == NULL) {
    free (ctl);
    return -ENOMEM;
  }
  ctl->srv = srv;
  ctl->fd = -1;
  if ((r = bind_socket (ctl)) < 0) {
    free (ctl->path);
    free (ctl);
    return r;
  }
  pthread_mutex_init (&ctl->lock, NULL);
  pthread_cond_init (&ctl->idle, NULL);
  ev_io_init (&ctl->io, accept_cb, ctl->fd, EV_READ);
  ctl->io.data = ctl;
  ev_timer_init (&ctl->retry, retry_cb, CONTROL_ACCEPT_RETRY_S, 0);
  ctl->retry.data = ctl;
  ev_io_start (srv->loop, &ctl->io);
  srv->control = ctl;
  log_info ("control socket on %s", ctl->path);
  return 0;
}

void
control_server_stop (struct server *srv)
{
  struct control *ctl = srv->control;
  struct stat st;

  if (ctl == NULL || ctl->fd == -1)
    return;
  ev_io_stop (srv->loop, &ctl->io);
  ev_timer_stop (srv->loop, &ctl->retry);
  close (ctl->fd);
  ctl->fd = -1;
  /* Remove the path only if it is still our socket. */
  if (stat (ctl->path, &st) == 0 && st.st_dev == ctl->dev &&
      st.st_ino == ctl->ino)
    unlink (ctl->path);
  pthread_mutex_lock (&ctl->lock);
  ctl->stopping = true;         /* flushes cancel at their next progress */
  pthread_mutex_unlock (&ctl->lock);
}

/* Wait until no control thread is left, or until deadline (NULL = for
 * ever).  Caller holds ctl->lock.  true if none is left.
 */
static bool
wait_idle_locked (struct control *ctl, const struct timespec *deadline)
{
  ASSERT_HELD (&ctl->lock);
  while (ctl->nr_conns > 0)
    if (pthread_cond_timedwait (&ctl->idle, &ctl->lock, deadline)
        == ETIMEDOUT)
      return ctl->nr_conns == 0;
  return true;
}

static struct timespec
deadline_in_ms (long ms)
{
  struct timespec ts;

  clock_gettime (CLOCK_REALTIME, &ts);
  ts.tv_sec += ms / 1000;
  ts.tv_nsec += (ms % 1000) * 1000000L;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  return ts;
}

void
control_server_close (struct server *srv)
{
  struct control *ctl = srv->control;
  struct control_conn *cc;
  struct timespec deadline;

  if (ctl == NULL)
    return;
  control_server_stop (srv);
  pthread_mutex_lock (&ctl->lock);
  /* Let running commands finish and say so (a cancelled flush reports
   * within about one progress period)…
   */
  deadline = deadline_in_ms (CONTROL_GRACE_MS);
  if (!wait_idle_locked (ctl, &deadline)) {
    /* …then cut the connections: a thread blocked on a client returns. */
    for (cc = ctl->conns; cc; cc = cc->next)
      shutdown (cc->fd, SHUT_RDWR);
    for (;;) {
      deadline = deadline_in_ms (CONTROL_WAIT_LOG_S * 1000L);
      if (wait_idle_locked (ctl, &deadline))
        break;
      log_warning ("control socket: waiting for %u command(s) to finish",
                   ctl->nr_conns);
    }
  }
  pthread_mutex_unlock (&ctl->lock);
  pthread_cond_destroy (&ctl->idle);
  pthread_mutex_destroy (&ctl->lock);
  free (ctl->path);
  free (ctl);
  srv->control = NULL;
}
