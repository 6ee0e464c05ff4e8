/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-internal.h — what the remote NBD driver's two files share.
 *
 * WHAT: the driver handle (struct backing_nbd), one connection to the
 * remote (struct nbd_conn) with its I/O thread, and one request on the
 * wire (struct nbd_req) with the waiter its caller sleeps on.
 * WHY: the driver is two nouns: the ops (nbd.c: splitting, alignment,
 * read-modify-write, flag translation) and the connection (nbd-conn.c:
 * libnbd's asynchronous API, timeouts, reconnection).
 *
 * LOCKS: nbd_conn.lock protects a connection's request lists and its
 * state fields; nbd_wait.lock protects a waiter.  Order: conn lock, then
 * wait lock.  backing_nbd.range_lock (read-modify-write serialisation)
 * is never held together with either.  The libnbd handle of a running
 * connection is touched only by its I/O thread, never under a lock.
 *
 * NOT HERE: the public entry points (backing.h).
 */
#ifndef NBDCACHE_BACKING_NBD_INTERNAL_H
#define NBDCACHE_BACKING_NBD_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libnbd.h>

#include "backing.h"

enum nbd_op {
  NBD_OP_READ,
  NBD_OP_WRITE,
  NBD_OP_FLUSH,
  NBD_OP_TRIM,
  NBD_OP_ZERO,
  NBD_OP_BLOCK_STATUS,
};

/* One caller's batch of requests; lives on the caller's stack. */
struct nbd_wait {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  size_t remaining;             /* requests not finished yet */
  int err;                      /* first failure, 0 = none */
};

/* One NBD command.  Lives in the caller's memory until finished; the I/O
 * thread guarantees libnbd holds no reference to it (or to buf) once it
 * is finished.
 */
struct nbd_req {
  struct nbd_req *prev, *next;  /* in conn->pending or conn->inflight */
  struct nbd_wait *wait;
  struct nbd_conn *conn;        /* NULL = any (chosen at submission) */
  enum nbd_op op;
  void *buf;                    /* READ/WRITE data, count bytes */
  uint64_t count;
  uint64_t offset;
  uint32_t flags;               /* LIBNBD_CMD_FLAG_* */
  uint64_t deadline_ms;         /* monotonic; set by nbd_run */
  bool in_flight;               /* handed to libnbd (conn->lock) */
  /* BLOCK_STATUS: a copy of base:allocation's (length, flags) pairs. */
  uint32_t *entries;
  size_t nr_entries;            /* pairs × 2 */
};

struct nbd_req_list {
  struct nbd_req *head, *tail;
};

struct backing_nbd;

struct nbd_conn {
  struct backing_nbd *n;
  unsigned index;
  pthread_t thread;
  bool thread_started;
  int wake_fd;                  /* eventfd: new work or stop */

  pthread_mutex_t lock;
  /* ---- protected by lock ---- */
  struct nbd_req_list pending;  /* waiting for (re)submission */
  struct nbd_req_list inflight; /* handed to libnbd */
  bool up;                      /* handshake done, handle usable; also
                                   read without the lock (atomically) to
                                   pick a connection */
  bool stopping;
  bool tearing_down;            /* closing the handle: ignore callbacks */
  int64_t down_since_s;         /* wall clock; 0 while up */
  uint64_t reconnect_attempts;
  uint64_t retried;
  uint64_t timed_out;

  /* ---- I/O thread only ---- */
  struct nbd_handle *h;         /* NULL while waiting to reconnect */
  bool connecting;              /* h is in an asynchronous connect */
  uint64_t connect_deadline_ms;
  uint64_t next_attempt_ms;
  uint32_t backoff_ms;
};

/* A byte range being rewritten; on a writer's stack. */
struct nbd_range {
  struct nbd_range *next;
  uint64_t start, end;
};

struct backing_nbd {
  struct backing b;             /* must be first */
  char *connect_uri;            /* as given: may carry secrets */
  char *tls_certificates;       /* NULL = libnbd's default */
  char *tls_psk_file;
  char *tls_username;
  bool tls_no_verify;
  uint32_t timeout_ms;

  /* The remote's properties, from the first connection. */
  uint64_t min_bytes;           /* block size minimum; 1 = none */
  uint64_t max_bytes;           /* READ/WRITE payload maximum */
  uint64_t max_bulk_bytes;      /* TRIM/ZERO/BLOCK_STATUS length maximum */
  bool can_flush, can_fua, can_multi_conn, can_cache;

  unsigned nr_conns;
  struct nbd_conn *conns;       /* [nr_conns] */
  unsigned next_conn;           /* round robin (atomic) */

  pthread_mutex_t range_lock;
  pthread_cond_t range_cond;
  struct nbd_range *ranges;     /* being rewritten (range_lock) */

  /* Durability across lost connections (nbd.c, do_flush).  A remote that
   * drops a connection may have lost power, and with it every write it
   * completed but had not flushed; a flush on the new connection would
   * vouch only for what the restarted remote holds.  So the driver counts
   * completed writes and remembers, per lost connection, how far they
   * went; the first flush whose window (completed writes since the last
   * flush that returned) holds such a write fails with -EIO instead of
   * vouching for it.
   */
  uint64_t writes_done;         /* non-FUA write, trim, zero completed
                                   (atomic; bumped by the I/O threads) */
  pthread_mutex_t flush_lock;
  /* ---- protected by flush_lock ---- */
  uint64_t settled;             /* writes_done at the start of the last
                                   flush that returned: the writes up to
                                   it were vouched for or reported lost */
  uint64_t at_risk;             /* writes_done when a connection was
                                   lost with writes not settled: the
                                   writes in (settled, at_risk] may be
                                   gone; at_risk <= settled = none */
};

/* ---- nbd-conn.c ---- */

/* A new handle with the driver's TLS settings and base:allocation
 * requested, not connected.  0 or -errno (logged).
 */
int nbd_conn_new_handle (struct backing_nbd *n, struct nbd_handle **out);
/* Starts connection c (zeroed) over the connected handle h: 0 and c owns
 * h, or -errno (logged) with c still zeroed and h the caller's.
 */
int nbd_conn_start (struct backing_nbd *n, struct nbd_conn *c, unsigned index,
                    struct nbd_handle *h);
/* Stops the I/O thread and closes the connection.  Every request must be
 * finished.  Safe on a connection that never started.
 */
void nbd_conn_stop (struct nbd_conn *c);
/* Notes that a connection was lost: the writes completed so far that no
 * flush settled may be lost with it.  Any thread; takes flush_lock.
 */
void nbd_note_lost (struct backing_nbd *n);
/* Submits nr requests and waits for all of them: 0 or the first -errno.
 * Requests fail with -EIO once n->timeout_ms has passed.
 */
int nbd_run (struct backing_nbd *n, struct nbd_req *reqs, size_t nr);

#endif /* NBDCACHE_BACKING_NBD_INTERNAL_H */
