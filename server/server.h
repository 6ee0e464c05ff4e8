/* SPDX-License-Identifier: BSD-3-Clause */
/* server.h — nbdcached's internal contract: the server, its exports,
 * connections, requests and the worker pool.
 *
 * OWNS: struct server owns the config, the cache devices, the export
 * table, the listeners, the connections and the worker pool.  A cache
 * device is shared by the exports that name it: the exports borrow it, so
 * every export is closed before any device (export_table_close).  A
 * connection owns its requests; a request owns its data buffer.
 *
 * THREADS AND LOCKS:
 * - The loop thread (libev) runs accept, the handshake, request parsing,
 *   validation, every socket write, and the engine calls that cannot
 *   wait (a lone small READ with NCACHE_NOWAIT, nbd-request.c).  Everything in struct conn is
 *   touched only by the loop thread, except what a worker reads from a
 *   request it was handed (conn->exp, conn->structured/extended and the
 *   meta context selection, which do not change from the start of
 *   transmission until the connection is freed) and conn->dead (atomic).
 * - Worker threads (worker.c) run engine calls and encode replies into the
 *   request.  A request is owned by exactly one thread at a time: the loop
 *   until it is queued, then a worker, then the loop again after it comes
 *   back through the completion list + ev_async.
 * - pool->lock protects the work queue; pool->done_lock the completion list.
 *   Neither is ever held across an engine call or a socket operation.
 *
 * INVARIANTS:
 * - conn->in_flight counts requests parsed and not yet fully replied; the
 *   socket is not read while it is >= CONN_MAX_IN_FLIGHT and is read again
 *   once it drops to CONN_RESUME_IN_FLIGHT.  Independently, the request
 *   data held (READ replies not yet written, WRITE payloads) is bounded per
 *   connection and per server (buffer.c, [server] max_buffer).
 * - A connection is freed only when in_flight == 0 (no worker holds one of
 *   its requests) and its output queue is empty or abandoned.  Closing it
 *   does not clear conn->exp: exports outlive every connection.
 * - A closed connection submits no more requests; workers skip the engine
 *   call of queued requests whose connection is dead, and the loop drops
 *   their replies.
 * - No connection waits on its client forever: handshake_timeout bounds
 *   the negotiation, request_timeout a partly received request or an
 *   untaken reply, drain_timeout a stop (conn.c, main.c).  Out of fds,
 *   accepting pauses instead of spinning (listen.c).
 *
 * FAILURE: a client's protocol violation closes that connection only; an
 * engine error becomes an NBD error reply; nothing a client sends can stop
 * the server.
 */
#ifndef NBDCACHE_SERVER_H
#define NBDCACHE_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <pthread.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <ev.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include "cache.h"
#include "config-file.h"
#include "nbd-wire.h"

#define CONN_MAX_IN_FLIGHT    128     /* requests; stop reading here */
#define CONN_RESUME_IN_FLIGHT 64      /* requests; resume reading here */
#define CONN_RBUF_BYTES       (256 * 1024)
#define CONN_FREE_BUF_BYTES   (32 * 1024 * 1024) /* most a connection keeps
                                                    in recycled buffers */
#define CONN_READ_CHUNK_BYTES (64 * 1024) /* most one read puts in rbuf */
#define CONN_SHUTDOWN_LINGER_S 1.0  /* s of quiet before a stop closes */
#define CONN_SOCKBUF_BYTES    (4 * 1024 * 1024) /* SO_SNDBUF / SO_RCVBUF */
#define MAX_OPTION_BYTES      (64 * 1024)  /* larger: ERR_TOO_BIG */
#define MAX_DISCARD_BYTES     (UINT64_C (1) << 30) /* larger: close */
#define MAX_OPTIONS           64      /* per connection, then close */
#define READ_HOLE_MIN_BYTES   (64 * 1024) /* reads this big look for holes */
#define INLINE_READ_MAX_BYTES (32 * 1024) /* a lone read up to this size may
                                             be answered by the loop thread
                                             (nbd-request.c) */
#define MAX_READ_CHUNKS       16
#define MAX_EXTENTS_PER_REPLY 1024
#define META_CONTEXT_BASE_ALLOCATION_ID 1
#define META_CONTEXT_NBDCACHE_STATE_ID  2 /* NCACHE_STATE_* flags */
#define OUT_MAX_IOV           (MAX_READ_CHUNKS * 2 + 4)

struct server;
struct conn;

/* ---- export.c: the exports, shared by every connection ---- */
struct export {
  char *name;                   /* non-NULL */
  char *description;            /* NULL = none */
  struct ncache_export *nc; /* the engine handle, shared (multi-conn) */
  struct backing *backing;      /* borrowed: nc owns it; for stats */
  struct ncache_caps caps;
  bool rotational;
  unsigned max_connections;     /* 0 = unlimited */
  unsigned nr_connections;      /* loop thread only */
  const struct config_export *cfg; /* the current section: tls, access
                                   rules, description (reload.c moves it
                                   to the reloaded config); in srv->cfg */
  const struct config_export *open_cfg; /* the section it was opened with:
                                   mode, cache, backing, tuning (what a
                                   reload cannot change on a live engine);
                                   in srv->cfg or a retired config */
  struct ncache_device *device; /* borrowed; NULL = uncached */
  bool readonly;                /* told to new connections: the engine is
                                   read-only or the current section says
                                   readonly = yes */
  /* Reload (reload.c). */
  bool removed;                 /* loop thread: out of the table; its
                                   connections finish in-flight requests,
                                   then get ESHUTDOWN and close */
  unsigned nr_conn_refs;        /* loop thread: connections (open or
                                   closed with requests still in workers)
                                   that point at it */
  unsigned refs;                /* control threads using it (__atomic) */
  struct export *retired_next;  /* reload.c's list of removed exports */
};

/* Opens every [cache] that an export uses (once each, into srv->devices),
 * then every export.  0, or -errno after logging FILE:LINE and the section;
 * on failure nothing stays open.
 */
int export_table_open (struct server *srv);
/* Flushes every export, logs its statistics (info) when log_stats (at a
 * real shutdown, not after a failed start), closes it, then closes the
 * cache devices.  Safe on a partly opened table.
 */
void export_table_close (struct server *srv, bool log_stats);
/* Opens one export of srv->cfg on its device in devices (parallel to
 * cfg->caches), into *exp (zeroed by the caller).  0 or -errno (logged
 * with FILE:LINE).  Engine calls: never on the loop thread while serving.
 */
int export_open (struct server *srv, const struct config *cfg,
                 struct ncache_device **devices,
                 const struct config_export *ce, struct export *exp);
/* Flushes and closes one export's engine handle; its name stays. */
void export_close (struct export *exp, bool log_stats);
/* Frees a closed export (its strings and exp).  NULL is a no-op. */
void export_free (struct export *exp);
/* "" resolves to the default export.  NULL if none. */
struct export *export_find (struct server *srv, const char *name, size_t len);
/* Transmission flags for a connection with the given negotiation. */
uint16_t export_eflags (const struct export *exp, bool structured);

/* ---- output messages: one reply or handshake message, written with writev ---- */
struct outmsg {
  struct outmsg *next;
  struct iovec iov[OUT_MAX_IOV];
  int iovcnt;
  int iov_done;                 /* iovecs fully written */
  size_t iov_off;               /* bytes written of iov[iov_done] */
  void (*release) (struct conn *c, struct outmsg *m); /* after send/abandon */
};

/* ---- requests (nbd-request.c parses/validates, reply.c encodes) ---- */
struct read_chunk {
  uint64_t offset;              /* bytes, absolute */
  uint64_t length;              /* bytes */
  bool hole;
};

struct request {
  struct outmsg out;            /* the reply; first member */
  struct request *next;         /* work queue / completion list / freelist */
  struct conn *conn;
  struct nbd_req h;
  void *buf;                    /* READ data / WRITE payload; NULL otherwise */
  size_t buf_cap;               /* bytes allocated at buf */
  uint64_t buffer_bytes;        /* charged to the memory budget (buffer.c);
                                   0 = none */
  int error;                    /* -errno; 0 = success */
  const char *errmsg;           /* static text for structured error chunks */
  bool synchronous;             /* answered by the loop, never a worker */
  struct ncache_aread aread;    /* READ queued on the loop's ring */
  struct ncache_awrite awrite;  /* WRITE queued on the loop's ring */
  /* READ: how the reply is cut into chunks. */
  unsigned nr_chunks;
  struct read_chunk chunks[MAX_READ_CHUNKS];
  /* BLOCK_STATUS: encoded descriptors (malloc'd): nr_extents for
   * base:allocation, then nr_state_extents for nbdcache:state.
   */
  unsigned char *extents;
  size_t extents_bytes;
  unsigned nr_extents;
  unsigned nr_state_extents;
  /* Header bytes for every chunk of the reply. */
  unsigned char hdr[MAX_READ_CHUNKS * (NBD_MAX_HEADER_BYTES + 16) + 64];
};

/* ---- connections (conn.c) ---- */
enum conn_phase {
  PHASE_CLIENT_FLAGS,           /* waiting for the 32-bit client flags */
  PHASE_OPTIONS,                /* option haggling */
  PHASE_TRANSMISSION,
  PHASE_CLOSING,                /* no more input; close when drained */
};

struct conn {
  struct conn *next, *prev;     /* server's list */
  struct server *srv;
  int rfd, wfd;                 /* equal except in -s mode */
  bool is_tcp;
  bool is_unix;                 /* a Unix-socket client (allow_unix) */
  struct sockaddr_storage peer_addr; /* TCP peers only (allow = CIDR) */
  char peer[128];               /* for logs */
  ev_io rio, wio;
  ev_timer linger;              /* stopping: close after a quiet moment */
  ev_tstamp accepted_at;        /* ev_now at accept (handshake_timeout) */
  ev_tstamp last_progress;      /* ev_now of the last byte read or written
                                   (request_timeout) */
  enum conn_phase phase;
  bool reading;                 /* rio started */
  bool destroyed;               /* closed: no more I/O (loop thread) */
  bool dead;                    /* = destroyed, for workers: __atomic only */

  /* Input. */
  unsigned char *rbuf;          /* CONN_RBUF_BYTES */
  size_t rstart, rend;          /* unconsumed bytes are rbuf[rstart..rend) */
  struct request *payload_req;  /* WRITE waiting for its payload */
  uint64_t payload_got;         /* bytes of it received */
  uint64_t discard_left;        /* bytes of input to drop (bad payloads) */
  struct request *after_discard; /* error reply queued once discarding ends */
  uint32_t discard_option;      /* option whose oversized data is dropped */

  /* Output. */
  struct outmsg *out_head, *out_tail;
  bool writing;                 /* wio started */
  bool close_after_output;      /* ABORT, DISC, fatal handshake errors */

  /* Negotiation. */
  uint32_t cflags;
  unsigned nr_options;
  bool structured;
  bool extended;
  bool meta_base_allocation;
  bool meta_nbdcache_state;     /* our own context (NCACHE_STATE_* flags) */
  char *meta_export;            /* export named by SET_META_CONTEXT */
  struct export *exp;           /* set on entering transmission; valid
                                   until the connection is freed */
  uint16_t eflags;

  /* TLS (tls.c).  ssl is set once STARTTLS was acknowledged. */
  SSL *ssl;
  bool tls_start_pending;       /* STARTTLS acked: begin once output drains */
  bool tls_handshaking;
  bool tls_active;              /* handshake done: all I/O through ssl */
  bool tls_want_write;          /* the last SSL call waits for writability */
  char *tls_subject;            /* verified client cert subject (RFC 2253) */
  char **tls_sans;              /* its DNS / email SANs */
  size_t nr_tls_sans;
  char *tls_username;           /* PSK identity */

  /* Requests. */
  unsigned in_flight;
  struct request *batch_head, *batch_tail; /* parsed, not yet submitted */
  unsigned batch_n;
  bool flush_marked;            /* on the loop's to-flush list */
  struct conn *flush_next;
  bool resume_marked;           /* on the server's resume list */
  struct conn *resume_next;
  struct request *free_reqs;    /* recycled requests (loop thread) */
  unsigned nr_free_reqs;
  size_t free_buf_bytes;        /* buffer capacity kept in free_reqs */

  /* Memory budget (buffer.c). */
  uint64_t buffer_bytes;        /* request data held by in-flight requests */
  bool buffer_waiting;          /* on srv->buffer_waiters */
  struct conn *buffer_next;
};

void conn_accept (struct server *srv, int rfd, int wfd, bool is_tcp,
                  const char *peer, const struct sockaddr *addr,
                  socklen_t addrlen);
void conn_queue (struct conn *c, struct outmsg *m);
/* Start or stop reading the socket (TLS-buffered input is not lost). */
void conn_set_reading (struct conn *c, bool on);
void conn_flush_output (struct conn *c);
void conn_close (struct conn *c);
/* "no TLS", or the TLS version with the client's certificate subject or
 * PSK user, for log lines; in buf (CONN_TLS_STATE_BYTES) or static.
 */
#define CONN_TLS_STATE_BYTES 600
const char *conn_tls_state (const struct conn *c, char *buf, size_t size);
/* Any thread: has the connection been closed?  (Workers skip its work.) */
bool conn_is_dead (const struct conn *c);
void conn_process_input (struct conn *c);
/* The server is stopping: finish what is in flight, then close. */
void conn_begin_shutdown (struct conn *c);
void conn_run_resumes (struct server *srv);
/* Start reading again and parse what is buffered (from the loop's
 * prepare watcher, not from the caller's stack).  No-op once closed.
 */
void conn_resume (struct conn *c);
/* Free closed connections that no worker references any more. */
void conn_sweep (struct server *srv);
/* A reply left the queue (or was abandoned): may resume reading/close. */
void conn_reply_sent (struct conn *c);
/* Start the periodic sweep that closes connections past
 * handshake_timeout or request_timeout (loop thread, once the loop exists).
 */
void conn_timeouts_start (struct server *srv);
void conn_timeouts_stop (struct server *srv);

/* handshake.c */
void handshake_start (struct conn *c);
/* Consume complete client flags / options from the input buffer.
 * Returns false if the connection was closed or must stop parsing.
 */
bool handshake_parse (struct conn *c);
/* Queue an option reply with a payload (copied). */
void handshake_reply (struct conn *c, uint32_t option, uint32_t reply,
                      const void *data, size_t len);

/* nbd-request.c */
bool nbd_request_parse (struct conn *c);
struct request *nbd_request_alloc (struct conn *c, size_t bufsize);
void nbd_request_release (struct conn *c, struct outmsg *m);
/* Worker side: run the engine call. */
void nbd_request_execute (struct request *r);

/* ---- buffer.c: the bound on request data held ([server] max_buffer) ---- */
/* May a request needing `need` bytes of buffer start now?  If not, the
 * connection has stopped reading and is resumed when memory is returned.
 */
bool buffer_admit (struct conn *c, uint64_t need);
void buffer_charge (struct conn *c, struct request *r, uint64_t bytes);
/* The request's buffer is no longer needed (reply sent or abandoned). */
void buffer_uncharge (struct conn *c, struct request *r);
/* The connection stops waiting for memory (it is closing). */
void buffer_forget (struct conn *c);

/* reply.c: encodes r->out from r->error and the results. */
void reply_prepare (struct request *r);

/* ---- tls.c ---- */
struct tls_server;
int tls_server_create (const struct config *cfg, struct tls_server **out);
void tls_server_destroy (struct tls_server *t);
/* A reload replaced t: destroyed now, or when the last connection that
 * began TLS with it is freed (loop thread).  NULL is a no-op.
 */
void tls_server_retire (struct tls_server *t);
int tls_conn_begin (struct conn *c);
int tls_conn_handshake (struct conn *c);
ssize_t tls_conn_read (struct conn *c, void *buf, size_t len);
/* writev(2) through TLS, in as few records as the record size allows. */
ssize_t tls_conn_writev (struct conn *c, const struct iovec *iov, int iovcnt);
bool tls_conn_has_pending (struct conn *c);
void tls_conn_free (struct conn *c);

/* ---- devring.c: the loop's io_uring for O_DIRECT cache hits ---- */
void devring_open (struct server *srv);   /* none available: srv->ring NULL */
/* Queue a READ on the ring (true), or leave it to the workers (false). */
bool devring_read (struct conn *c, struct request *r);
bool devring_write (struct conn *c, struct request *r); /* payload in */
void devring_submit (struct server *srv);  /* after a parse batch */
void devring_close (struct server *srv);   /* at stop: complete every read */
void devring_destroy (struct server *srv);

/* ---- worker.c: the pool that runs engine calls ---- */
struct worker_pool;
int worker_pool_create (struct server *srv, unsigned nr_threads,
                        struct worker_pool **out);
/* Queue a batch of requests (linked through ->next). */
void worker_pool_submit (struct worker_pool *p, struct request *first,
                         struct request *last, unsigned n);
void worker_pool_destroy (struct worker_pool *p);
/* Loop thread: queue every completed request's reply and write them. */
void worker_pool_reap (struct server *srv);

/* ---- listen.c ---- */
struct listener {
  struct listener *next;
  int fd;
  bool is_unix;
  char *unix_path;              /* unlinked at close if we created it */
  char *display;                /* "unix:/path", "127.0.0.1:10809" */
  int family;
  int port;                     /* bound TCP port */
  ev_io io;
  struct server *srv;
};

int listen_open_address (struct server *srv, const char *addr);
/* Bind and listen on addr (the syntax above, no socket activation),
 * non-blocking and close-on-exec, handing each socket to add, which owns
 * the fd from then on (closes it when it fails).  unix_path is the path
 * to unlink at close, NULL for TCP.  0 or -errno (logged).  The NBD
 * listeners and the metrics responder both bind through it.
 */
typedef int listen_add_fn (void *opaque, int fd, int family,
                           const char *display, const char *unix_path);
int listen_bind_address (const char *addr, listen_add_fn *add, void *opaque);
int listen_socket_activation (struct server *srv, bool *activated);
void listen_start (struct server *srv);
/* Out of fds or memory: accepting is paused (listen.c); a connection that
 * closed may let it resume.  No-op unless paused.
 */
void listen_resume (struct server *srv);
void listen_close_all (struct server *srv);

/* ---- uri.c: --print-uri ---- */
/* Prints one NBD URI per export (through the first listener) to fp and
 * flushes it.  0, or -errno (logged).
 */
int uri_print_all (const struct server *srv, FILE *fp);

/* ---- control-server.c: the admin's Unix socket ([server]
 * control_socket) ----
 * One line in ("stats", "stats NAME", "flush NAME", "reload"), JSON out; see
 * control-server.c for the protocol.  Accepted on the loop thread, served by a
 * detached thread per connection (blocking I/O, engine calls).  Those
 * threads use exports and cache devices, so control_server_close runs before
 * export_table_close.
 */
struct control;
/* Listen on cfg->server.control_socket (a no-op when unset); loop thread,
 * after the exports are open and the loop exists.  0 or -errno (logged).
 */
int control_server_open (struct server *srv);
/* The server is stopping: stop accepting, remove the socket, cancel
 * running flushes.  Idempotent; NULL control is a no-op.
 */
void control_server_stop (struct server *srv);
/* After the loop: control_server_stop, wait for every control thread, free. */
void control_server_close (struct server *srv);

/* ---- control-live.c: the control socket's set, detach, attach ----
 * Each builds the answer (NULL on ENOMEM); control-server.c sends it.
 */
/* Split "KEY=VALUE … -- NAME" (or "NAME") in place: *pairs NULL when
 * there are none; arg NULL: no pairs, the default export.
 */
void control_live_split (char *arg, char **pairs, const char **name);
/* cancel: as ncache_drain's progress function, for mode=none (a detach,
 * without progress lines: it only says whether to give up).
 */
struct json_object *control_live_set (struct export *exp, char *pairs,
                                      ncache_progress_fn cancel,
                                      void *opaque);
/* Progress as ncache_drain's, then the "done" event. */
struct json_object *control_live_detach (struct export *exp,
                                         ncache_progress_fn fn,
                                         void *opaque);
struct json_object *control_live_attach (struct export *exp, char *pairs);

/* ---- metrics.c: GET /metrics over HTTP ([server] metrics_listen) ----
 * The stats in the Prometheus text format; everything on the loop
 * thread, non-blocking; see metrics.c for the limits.
 */
struct metrics;
/* Listen on cfg->server.metrics_listen (a no-op when unset); after the
 * exports are open and the loop exists.  0 or -errno (logged).
 */
int metrics_open (struct server *srv);
/* Close the listener and every connection, free.  Idempotent; loop
 * thread (or after the loop).
 */
void metrics_close (struct server *srv);

/* control-server.c: the stats document ("stats" answer) of every export and
 * open cache device, or of only `only` and its cache.  NULL on ENOMEM.
 */
struct json_object *control_stats_json (struct server *srv,
                                        const struct export *only);

/* ---- the server ---- */
struct server {
  struct config *cfg;
  bool allow_shrink;            /* --allow-shrink: a cached backing that
                                   shrank is served, its cache's keys past
                                   the new end dropped (cache.h) */
  struct ev_loop *loop;
  struct ncache_device **devices; /* parallel to cfg->caches: the open
                                   device of each [cache] section, NULL
                                   when no export uses it; owned, closed
                                   after every export */
  struct export **exports;      /* each malloc'd: a connection's pointer
                                   stays valid across a reload */
  size_t nr_exports;
  /* Reload (reload.c).  The loop thread reads the table (exports,
   * default_export, devices, cfg) without a lock and is the only thread
   * that changes it, under table_lock taken for writing; control threads
   * read it under table_lock taken for reading.
   */
  pthread_rwlock_t table_lock;
  char *config_path;            /* absolute; NULL in the ad-hoc mode */
  struct reload *reload;        /* NULL until reload_init */
  struct export *default_export; /* NULL = none */
  struct worker_pool *pool;
  struct cdev_ring *ring;       /* NULL = none: hits go to workers */
  ev_io ring_io;                /* its completions' eventfd */
  bool ring_queued;             /* reads queued since the last submit */
  uint64_t ring_served, ring_redone; /* reads; logged at stop (debug) */
  uint64_t ring_written, ring_rewritten; /* writes; the same */
  struct tls_server *tls;       /* NULL when [server] tls = off */
  struct listener *listeners;
  struct control *control;      /* NULL = no control socket */
  struct metrics *metrics;      /* NULL = no metrics_listen */
  struct conn *conns;
  unsigned nr_conns;
  struct conn *zombies;         /* closed, freed by conn_sweep */
  struct conn *resumes;         /* reading resumed, input to parse */
  uint64_t buffer_bytes;        /* request data held, all connections */
  struct conn *buffer_waiters;  /* stopped until buffer_bytes drops */
  ev_prepare prepare;           /* runs resumes and the sweep */
  ev_async done_async;          /* workers -> loop */
  pthread_mutex_t done_lock;
  struct request *done_head, *done_tail;
  /* accept paused for lack of fds or memory (listen.c). */
  bool accept_paused;           /* every listener's watcher stopped */
  bool accept_episode;          /* failing since the last good accept:
                                   logged once */
  double accept_backoff_s;      /* next retry delay: 0.1 s doubling to 1 s */
  uint64_t accept_failures;     /* in this episode */
  ev_timer accept_timer;        /* retry while paused */
  ev_timer timeout_timer;       /* conn.c's periodic timeout sweep */
  struct log_ratelimit handshake_rl, request_rl; /* its log lines */
  bool stopping;
  bool single;                  /* -s: exit when the connection ends */
  int exit_status;
  ev_timer stop_timer;
};

/* ---- reload.c: SIGHUP and `nbdcache reload` (see its file comment) ---- */
struct reload;
/* Loop thread, once the loop exists.  0 or -errno. */
int reload_init (struct server *srv);
/* SIGHUP (loop thread): reload in a background thread; the outcome is
 * logged.
 */
void reload_start (struct server *srv);
/* Any thread but the loop's: reload now and wait.  0 with *report the
 * lines logged (added/removed/changed exports), or -errno with *report the
 * errors (FILE:LINE for a bad config); the old configuration keeps
 * running then.  *report is malloc'd (NULL on ENOMEM).
 */
int reload_run (struct server *srv, char **report);
/* Loop thread: close the removed exports that nothing uses any more. */
void reload_reap (struct server *srv);
/* The loop is stopping: pending reloads give up (loop thread). */
void reload_stop (struct server *srv);
/* After the loop and after control_server_close: wait for reload threads,
 * close every removed export.  NULL reload is a no-op.
 */
void reload_close (struct server *srv);
/* After export_table_close: free the replaced configs and the rest. */
void reload_free (struct server *srv);
/* A control thread is done with exp (taken under table_lock). */
void export_unref (struct server *srv, struct export *exp);
/* Is this connection's export removed or the server stopping?  Then its
 * new requests get ESHUTDOWN and it closes once drained.
 */
static inline bool
conn_shutting_down (const struct conn *c)
{
  return c->srv->stopping || (c->exp != NULL && c->exp->removed);
}

/* main.c: begin a graceful stop (signal, --run child exit, -s end). */
void server_stop (struct server *srv);
/* main.c: called whenever a connection goes away. */
void server_conn_gone (struct server *srv);

/* ---- privdrop.c: user = / group = (see its file comment) ---- */
struct privdrop {
  bool set_user, set_group;     /* what was asked */
  uid_t uid;
  gid_t gid;                    /* group =, else the user's primary group */
  char user_name[256];          /* for initgroups; "" for a bare uid */
};
/* Looks USER and GROUP (names or numbers; NULL = not asked) up. */
int privdrop_resolve (const char *user, const char *group,
                      struct privdrop *out);
/* Switches; 0 or -errno after logging.  Nothing asked: 0. */
int privdrop_apply (const struct privdrop *pd);

/* ---- notify.c: the service manager (sd_notify; no-op without one) ---- */
void notify_ready (const struct server *srv);
void notify_stopping (void);

#endif /* NBDCACHE_SERVER_H */
