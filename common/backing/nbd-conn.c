/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-conn.c — one connection to a remote NBD server, driven by its own
 * I/O thread through libnbd's asynchronous API.
 *
 * WHAT: callers (the engine's many blocking threads) queue requests on a
 * connection and sleep on their own waiter; the connection's I/O thread
 * hands them to libnbd (nbd_aio_*), polls the socket and an eventfd
 * (new work), and libnbd's completion callbacks wake each caller as its
 * own reply arrives.  Any number of requests are on the wire at once, so
 * one miss never waits for another miss's round trip.
 * WHY: libnbd's synchronous calls allow one request per handle at a time;
 * a remote's latency can only be hidden by overlapping requests.
 *
 * INVARIANTS:
 * - A live request is on exactly one list of exactly one connection:
 *   pending (not handed to libnbd) or inflight (handed to libnbd,
 *   in_flight set).  Finishing one removes it and wakes its waiter once.
 * - Only the I/O thread calls libnbd on a running connection's handle,
 *   and it never holds conn->lock while doing so (libnbd's callbacks take
 *   it).
 * - A request is finished only when libnbd holds no reference to it or to
 *   its buffer: on its completion callback, or after the handle it was
 *   issued on has been closed.
 *
 * THREADS AND LOCKS: see nbd-internal.h.  Callers block in nbd_run; the
 * I/O thread never blocks except in poll(2).
 *
 * FAILURE: every request the driver sends is idempotent (read, write of
 * the same data, flush, trim, zero, block status), so a request whose
 * connection is lost (ENOTCONN, or ESHUTDOWN from a stopping server) is
 * queued again and resent once the connection is re-established.  The
 * I/O thread reconnects in the background with exponential backoff
 * (RECONNECT_MIN_MS doubling to RECONNECT_MAX_MS, or to a quarter of the
 * request timeout if that is shorter), checking that the
 * export's size has not changed.  A request not finished within the
 * driver's timeout fails with -EIO; if it is on the wire the connection
 * is closed first (libnbd cannot cancel one command) and the others on
 * it are resent after reconnection.  Errors the remote returns (EIO,
 * ENOSPC, EPERM …) are final and returned as -errno.  A lost connection
 * is noted (nbd_note_lost), so the next flush does not vouch for writes
 * a restarted remote may have lost (nbd.c, do_flush).
 *
 * NOT HERE: splitting, alignment and flag translation (nbd.c).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <libnbd.h>

#include "backing.h"
#include "clock.h"
#include "log.h"
#include "nbd-internal.h"

#define RECONNECT_MIN_MS 50
#define RECONNECT_MAX_MS 5000
#define STOP_DRAIN_MS    1000   /* polite disconnect at close, at most */

/* ---- request lists (caller holds conn->lock) ---- */

static void
list_push (struct nbd_req_list *l, struct nbd_req *r)
{
  r->next = NULL;
  r->prev = l->tail;
  if (l->tail)
    l->tail->next = r;
  else
    l->head = r;
  l->tail = r;
}

static void
list_unlink (struct nbd_req_list *l, struct nbd_req *r)
{
  if (r->prev)
    r->prev->next = r->next;
  else
    l->head = r->next;
  if (r->next)
    r->next->prev = r->prev;
  else
    l->tail = r->prev;
  r->prev = r->next = NULL;
}

/* Wakes the caller when its batch is complete.  r must be off every list;
 * neither r nor its waiter may be touched afterwards.
 */
static void
finish (struct nbd_req *r, int err)
{
  struct nbd_wait *w = r->wait;

  pthread_mutex_lock (&w->lock);
  if (err < 0 && w->err == 0)
    w->err = err;
  if (--w->remaining == 0)
    pthread_cond_signal (&w->cond);
  pthread_mutex_unlock (&w->lock);
}

static void
drop_entries (struct nbd_req *r)
{
  free (r->entries);
  r->entries = NULL;
  r->nr_entries = 0;
}

static void
kick (struct nbd_conn *c)
{
  uint64_t one = 1;

  /* Can only fail with EAGAIN when the counter is saturated: it is then
   * readable anyway.
   */
  if (write (c->wake_fd, &one, sizeof one) < 0)
    return;
}

/* ---- libnbd callbacks (I/O thread, inside nbd_aio_notify_* etc.) ---- */

static int
on_extents (void *opaque, const char *metacontext, uint64_t offset,
            uint32_t *entries, size_t nr_entries, int *error)
{
  struct nbd_req *r = opaque;
  uint32_t *copy;

  (void) offset;
  if (strcmp (metacontext, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0)
    return 0;
  copy = malloc (nr_entries * sizeof *copy);
  if (copy == NULL && nr_entries > 0) {
    *error = ENOMEM;
    return -1;
  }
  if (nr_entries > 0)
    memcpy (copy, entries, nr_entries * sizeof *copy);
  drop_entries (r);
  r->entries = copy;
  r->nr_entries = nr_entries;
  return 0;
}

static int
on_complete (void *opaque, int *error)
{
  struct nbd_req *r = opaque;
  struct nbd_conn *c = r->conn;
  int err = *error;

  pthread_mutex_lock (&c->lock);
  if (c->tearing_down || !r->in_flight) {
    /* The teardown path requeues it. */
    pthread_mutex_unlock (&c->lock);
    return 1;
  }
  list_unlink (&c->inflight, r);
  r->in_flight = false;
  if (err == ENOTCONN || err == ESHUTDOWN) {
    drop_entries (r);
    list_push (&c->pending, r);
    c->retried++;
    pthread_mutex_unlock (&c->lock);
    return 1;
  }
  if (err == 0 && r->op == NBD_OP_BLOCK_STATUS && r->nr_entries < 2)
    err = EIO;                  /* the remote sent no base:allocation */
  /* Counted here, before this thread can see the connection drop, so a
   * write done on a connection is always counted before its loss.
   */
  if (err == 0 && !(r->flags & LIBNBD_CMD_FLAG_FUA) &&
      (r->op == NBD_OP_WRITE || r->op == NBD_OP_TRIM || r->op == NBD_OP_ZERO))
    __atomic_add_fetch (&c->n->writes_done, 1, __ATOMIC_ACQ_REL);
  finish (r, -err);
  pthread_mutex_unlock (&c->lock);
  return 1;                     /* retire the command */
}

/* ---- the handle ---- */

int
nbd_conn_new_handle (struct backing_nbd *n, struct nbd_handle **out)
{
  struct nbd_handle *h = nbd_create ();
  const char *what;

  if (h == NULL) {
    log_error ("backing %s: nbd_create: %s", n->b.uri, nbd_get_error ());
    return -ENOMEM;
  }
  what = "tls-certificates";
  if (n->tls_certificates &&
      nbd_set_tls_certificates (h, n->tls_certificates) == -1)
    goto err;
  what = "tls-verify-peer";
  if (n->tls_no_verify && nbd_set_tls_verify_peer (h, false) == -1)
    goto err;
  what = "tls-psk-file";
  if (n->tls_psk_file && nbd_set_tls_psk_file (h, n->tls_psk_file) == -1)
    goto err;
  what = "tls-username";
  if (n->tls_username && nbd_set_tls_username (h, n->tls_username) == -1)
    goto err;
  what = "uri-allow-local-file";
  if (nbd_set_uri_allow_local_file (h, true) == -1)
    goto err;
  what = "base:allocation";
  if (nbd_add_meta_context (h, LIBNBD_CONTEXT_BASE_ALLOCATION) == -1)
    goto err;
  *out = h;
  return 0;

 err:
  log_error ("backing %s: %s: %s", n->b.uri, what, nbd_get_error ());
  nbd_close (h);
  return -EINVAL;
}

/* ---- I/O thread ---- */

static void
set_down (struct nbd_conn *c)
{
  pthread_mutex_lock (&c->lock);
  __atomic_store_n (&c->up, false, __ATOMIC_RELAXED);  /* see pick_conn */
  if (c->down_since_s == 0)
    c->down_since_s = (int64_t) time (NULL);
  pthread_mutex_unlock (&c->lock);
}

/* The next attempt after the current delay, which then doubles up to
 * RECONNECT_MAX_MS, or a quarter of the request timeout if that is less:
 * a waiting request sees at least three attempts before it times out.
 */
static void
schedule_reconnect (struct nbd_conn *c, uint64_t now)
{
  uint32_t max_ms = c->n->timeout_ms / 4;

  if (max_ms > RECONNECT_MAX_MS)
    max_ms = RECONNECT_MAX_MS;
  if (max_ms < RECONNECT_MIN_MS)
    max_ms = RECONNECT_MIN_MS;
  c->next_attempt_ms = now + c->backoff_ms;
  c->backoff_ms = c->backoff_ms * 2 > max_ms ? max_ms : c->backoff_ms * 2;
}

/* Closes the handle; requests on the wire go back to pending. */
static void
teardown (struct nbd_conn *c, uint64_t now, const char *why)
{
  struct nbd_req *r;
  bool was_up;

  pthread_mutex_lock (&c->lock);
  was_up = c->up;
  c->tearing_down = true;
  pthread_mutex_unlock (&c->lock);
  if (was_up)
    log_warning ("backing %s: connection %u lost (%s); reconnecting",
                 c->n->b.uri, c->index, why);
  set_down (c);
  /* The remote may have restarted and lost what it had not flushed. */
  nbd_note_lost (c->n);

  nbd_close (c->h);
  c->h = NULL;
  c->connecting = false;

  pthread_mutex_lock (&c->lock);
  c->tearing_down = false;
  while ((r = c->inflight.tail) != NULL) {
    list_unlink (&c->inflight, r);
    r->in_flight = false;
    drop_entries (r);
    /* Keep submission order: push back in front of the pending list. */
    r->next = c->pending.head;
    r->prev = NULL;
    if (c->pending.head)
      c->pending.head->prev = r;
    else
      c->pending.tail = r;
    c->pending.head = r;
    c->retried++;
  }
  pthread_mutex_unlock (&c->lock);
  if (was_up)
    c->backoff_ms = RECONNECT_MIN_MS;
  schedule_reconnect (c, now);
}

static void
start_connect (struct nbd_conn *c, uint64_t now)
{
  struct nbd_handle *h;

  pthread_mutex_lock (&c->lock);
  c->reconnect_attempts++;
  pthread_mutex_unlock (&c->lock);
  if (nbd_conn_new_handle (c->n, &h) < 0) {
    schedule_reconnect (c, now);
    return;
  }
  if (nbd_aio_connect_uri (h, c->n->connect_uri) == -1) {
    log_debug ("backing %s: connection %u: %s",
               c->n->b.uri, c->index, nbd_get_error ());
    nbd_close (h);
    schedule_reconnect (c, now);
    return;
  }
  c->h = h;
  c->connecting = true;
  c->connect_deadline_ms = now + c->n->timeout_ms;
}

static void
fail_connect (struct nbd_conn *c, uint64_t now, const char *why)
{
  log_debug ("backing %s: connection %u: reconnect failed: %s",
             c->n->b.uri, c->index, why);
  nbd_close (c->h);
  c->h = NULL;
  c->connecting = false;
  schedule_reconnect (c, now);
}

static void
finish_connect (struct nbd_conn *c, uint64_t now)
{
  int64_t size = nbd_get_size (c->h);

  if (size < 0 || (uint64_t) size != c->n->b.size_bytes) {
    log_warning ("backing %s: connection %u: the remote's size changed "
                 "(%" PRIi64 " bytes, expected %" PRIu64 "); not using it",
                 c->n->b.uri, c->index, size, c->n->b.size_bytes);
    fail_connect (c, now, "size changed");
    return;
  }
  c->connecting = false;
  c->backoff_ms = RECONNECT_MIN_MS;
  pthread_mutex_lock (&c->lock);
  __atomic_store_n (&c->up, true, __ATOMIC_RELAXED);
  c->down_since_s = 0;
  pthread_mutex_unlock (&c->lock);
  log_info ("backing %s: connection %u re-established", c->n->b.uri,
            c->index);
}

static int64_t
issue (struct nbd_conn *c, struct nbd_req *r)
{
  nbd_completion_callback done = { .callback = on_complete, .user_data = r };
  nbd_extent_callback ext = { .callback = on_extents, .user_data = r };

  switch (r->op) {
  case NBD_OP_READ:
    return nbd_aio_pread (c->h, r->buf, r->count, r->offset, done, 0);
  case NBD_OP_WRITE:
    return nbd_aio_pwrite (c->h, r->buf, r->count, r->offset, done,
                           r->flags);
  case NBD_OP_FLUSH:
    return nbd_aio_flush (c->h, done, 0);
  case NBD_OP_TRIM:
    return nbd_aio_trim (c->h, r->count, r->offset, done, r->flags);
  case NBD_OP_ZERO:
    return nbd_aio_zero (c->h, r->count, r->offset, done, r->flags);
  case NBD_OP_BLOCK_STATUS:
    return nbd_aio_block_status (c->h, r->count, r->offset, ext, done, 0);
  }
  errno = EINVAL;
  return -1;
}

/* Hands the pending requests to libnbd, one at a time. */
static void
submit_pending (struct nbd_conn *c)
{
  for (;;) {
    struct nbd_req *r;
    int err;

    pthread_mutex_lock (&c->lock);
    r = c->pending.head;
    if (r != NULL) {
      list_unlink (&c->pending, r);
      r->in_flight = true;
      list_push (&c->inflight, r);
    }
    pthread_mutex_unlock (&c->lock);
    if (r == NULL)
      return;

    if (issue (c, r) != -1)
      continue;
    err = nbd_get_errno ();
    pthread_mutex_lock (&c->lock);
    if (r->in_flight) {
      list_unlink (&c->inflight, r);
      r->in_flight = false;
      if (!nbd_aio_is_ready (c->h) && !nbd_aio_is_processing (c->h)) {
        /* The connection died under us: resend later. */
        list_push (&c->pending, r);
        pthread_mutex_unlock (&c->lock);
        return;
      }
      log_debug ("backing %s: %s", c->n->b.uri, nbd_get_error ());
      finish (r, err > 0 ? -err : -EIO);
    }
    pthread_mutex_unlock (&c->lock);
  }
}

/* Fails pending requests past their deadline; true if one on the wire
 * is past it too.  The earliest deadline left goes to *next_ms.
 */
static bool
expire (struct nbd_conn *c, uint64_t now, uint64_t *next_ms)
{
  struct nbd_req *r, *next;
  bool late_in_flight = false;

  pthread_mutex_lock (&c->lock);
  for (r = c->pending.head; r != NULL; r = next) {
    next = r->next;
    if (r->deadline_ms <= now) {
      list_unlink (&c->pending, r);
      c->timed_out++;
      finish (r, -EIO);
    }
    else if (r->deadline_ms < *next_ms)
      *next_ms = r->deadline_ms;
  }
  for (r = c->inflight.head; r != NULL; r = r->next) {
    if (r->deadline_ms <= now)
      late_in_flight = true;
    else if (r->deadline_ms < *next_ms)
      *next_ms = r->deadline_ms;
  }
  pthread_mutex_unlock (&c->lock);
  return late_in_flight;
}

static bool
handle_gone (struct nbd_handle *h)
{
  return nbd_aio_is_dead (h) || nbd_aio_is_closed (h);
}

static void *
io_thread (void *arg)
{
  struct nbd_conn *c = arg;

  for (;;) {
    uint64_t now = clock_now_ms ();
    uint64_t next_ms = UINT64_MAX;
    struct pollfd fds[2] = { { .fd = c->wake_fd, .events = POLLIN } };
    nfds_t nfds = 1;
    unsigned dir = 0;
    int timeout_ms;
    bool stopping;

    pthread_mutex_lock (&c->lock);
    stopping = c->stopping;
    pthread_mutex_unlock (&c->lock);
    if (stopping)
      break;

    if (expire (c, now, &next_ms) && c->h != NULL) {
      log_warning ("backing %s: connection %u: a request timed out "
                   "after %" PRIu32 " ms", c->n->b.uri, c->index,
                   c->n->timeout_ms);
      teardown (c, now, "request timed out");
      /* The late request is pending now: fail it at once. */
      next_ms = UINT64_MAX;
      expire (c, now, &next_ms);
    }

    if (c->h == NULL && now >= c->next_attempt_ms)
      start_connect (c, now);
    if (c->h != NULL && c->connecting && now >= c->connect_deadline_ms)
      fail_connect (c, now, "timed out");

    if (c->h != NULL && !c->connecting) {
      submit_pending (c);
      if (handle_gone (c->h)) {
        teardown (c, now, "connection closed");
        continue;
      }
    }

    if (c->h != NULL) {
      int fd = nbd_aio_get_fd (c->h);

      if (fd == -1) {
        if (c->connecting)
          fail_connect (c, now, nbd_get_error ());
        else
          teardown (c, now, nbd_get_error ());
        continue;
      }
      dir = nbd_aio_get_direction (c->h);
      fds[1].fd = fd;
      fds[1].events = ((dir & LIBNBD_AIO_DIRECTION_READ) ? POLLIN : 0) |
        ((dir & LIBNBD_AIO_DIRECTION_WRITE) ? POLLOUT : 0);
      nfds = 2;
      if (c->connecting && c->connect_deadline_ms < next_ms)
        next_ms = c->connect_deadline_ms;
    }
    else if (c->next_attempt_ms < next_ms)
      next_ms = c->next_attempt_ms;

    if (next_ms == UINT64_MAX)
      timeout_ms = -1;
    else if (next_ms <= now)
      timeout_ms = 0;
    else
      timeout_ms = next_ms - now > 60000 ? 60000 : (int) (next_ms - now);

    if (poll (fds, nfds, timeout_ms) == -1) {
      if (errno != EINTR)
        log_error ("backing %s: poll: %m", c->n->b.uri);
      continue;
    }
    if (fds[0].revents & POLLIN) {
      uint64_t v;

      if (read (c->wake_fd, &v, sizeof v) < 0 && errno != EAGAIN)
        log_debug ("backing %s: eventfd: %m", c->n->b.uri);
    }
    if (nfds == 2 && fds[1].revents != 0) {
      now = clock_now_ms ();
      if ((fds[1].revents & (POLLIN | POLLHUP | POLLERR)) &&
          (dir & LIBNBD_AIO_DIRECTION_READ))
        nbd_aio_notify_read (c->h);
      else if (fds[1].revents & (POLLHUP | POLLERR) &&
               !(fds[1].revents & POLLOUT)) {
        if (c->connecting)
          fail_connect (c, now, "hang up");
        else
          teardown (c, now, "hang up");
        continue;
      }
      if ((fds[1].revents & POLLOUT) && (dir & LIBNBD_AIO_DIRECTION_WRITE) &&
          !handle_gone (c->h))
        nbd_aio_notify_write (c->h);
      if (c->connecting) {
        if (nbd_aio_is_ready (c->h))
          finish_connect (c, now);
        else if (handle_gone (c->h))
          fail_connect (c, now, nbd_get_error ());
      }
      else if (handle_gone (c->h))
        teardown (c, now, "connection closed");
    }
  }
  return NULL;
}

/* ---- lifecycle ---- */

int
nbd_conn_start (struct backing_nbd *n, struct nbd_conn *c, unsigned index,
                struct nbd_handle *h)
{
  int r;

  c->wake_fd = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (c->wake_fd == -1) {
    r = -errno;
    log_error ("backing %s: eventfd: %m", n->b.uri);
    return r;
  }
  if ((r = pthread_mutex_init (&c->lock, NULL)) != 0) {
    log_error ("backing %s: pthread_mutex_init: %s", n->b.uri, strerror (r));
    close (c->wake_fd);
    return -r;
  }
  c->n = n;
  c->index = index;
  c->h = h;
  c->up = true;
  c->backoff_ms = RECONNECT_MIN_MS;
  if ((r = pthread_create (&c->thread, NULL, io_thread, c)) != 0) {
    log_error ("backing %s: pthread_create: %s", n->b.uri, strerror (r));
    pthread_mutex_destroy (&c->lock);
    close (c->wake_fd);
    memset (c, 0, sizeof *c);
    return -r;
  }
  c->thread_started = true;
  return 0;
}

/* A polite NBD_CMD_DISC, waiting a little for the remote to see it. */
static void
disconnect (struct nbd_conn *c)
{
  uint64_t deadline = clock_now_ms () + STOP_DRAIN_MS;

  if (c->connecting || !nbd_aio_is_ready (c->h) ||
      nbd_aio_disconnect (c->h, 0) == -1)
    return;
  while (!handle_gone (c->h) && clock_now_ms () < deadline) {
    struct pollfd p = { .fd = nbd_aio_get_fd (c->h) };
    unsigned dir = nbd_aio_get_direction (c->h);

    if (p.fd == -1)
      return;
    p.events = ((dir & LIBNBD_AIO_DIRECTION_READ) ? POLLIN : 0) |
      ((dir & LIBNBD_AIO_DIRECTION_WRITE) ? POLLOUT : 0);
    if (poll (&p, 1, 100) <= 0)
      continue;
    if (p.revents & (POLLIN | POLLHUP | POLLERR))
      nbd_aio_notify_read (c->h);
    else if (p.revents & POLLOUT)
      nbd_aio_notify_write (c->h);
  }
}

void
nbd_conn_stop (struct nbd_conn *c)
{
  struct nbd_req *r;

  if (c->n == NULL)
    return;                     /* never started */
  if (c->thread_started) {
    pthread_mutex_lock (&c->lock);
    c->stopping = true;
    pthread_mutex_unlock (&c->lock);
    kick (c);
    pthread_join (c->thread, NULL);
    c->thread_started = false;
  }
  if (c->h != NULL) {
    disconnect (c);
    pthread_mutex_lock (&c->lock);
    c->tearing_down = true;
    pthread_mutex_unlock (&c->lock);
    nbd_close (c->h);
    c->h = NULL;
  }
  /* The contract says no calls are running at close; be safe anyway. */
  while ((r = c->inflight.head) != NULL || (r = c->pending.head) != NULL) {
    list_unlink (r->in_flight ? &c->inflight : &c->pending, r);
    finish (r, -EIO);
  }
  if (c->wake_fd >= 0)
    close (c->wake_fd);
  c->wake_fd = -1;
  pthread_mutex_destroy (&c->lock);
  c->n = NULL;
}

/* ---- callers ---- */

static struct nbd_conn *
pick_conn (struct backing_nbd *n)
{
  unsigned start = __atomic_fetch_add (&n->next_conn, 1, __ATOMIC_RELAXED);
  unsigned k;

  for (k = 0; k < n->nr_conns; k++) {
    struct nbd_conn *c = &n->conns[(start + k) % n->nr_conns];

    if (__atomic_load_n (&c->up, __ATOMIC_RELAXED))
      return c;
  }
  return &n->conns[start % n->nr_conns];
}

int
nbd_run (struct backing_nbd *n, struct nbd_req *reqs, size_t nr)
{
  struct nbd_wait w = { .remaining = nr };
  uint64_t deadline = clock_now_ms () + n->timeout_ms;
  size_t i;

  if (nr == 0)
    return 0;
  pthread_mutex_init (&w.lock, NULL);
  pthread_cond_init (&w.cond, NULL);
  for (i = 0; i < nr; i++) {
    struct nbd_req *r = &reqs[i];
    struct nbd_conn *c = r->conn ? r->conn : pick_conn (n);
    bool was_empty;

    r->conn = c;
    r->wait = &w;
    r->deadline_ms = deadline;
    r->in_flight = false;
    r->entries = NULL;
    r->nr_entries = 0;
    pthread_mutex_lock (&c->lock);
    was_empty = c->pending.head == NULL;
    list_push (&c->pending, r);
    pthread_mutex_unlock (&c->lock);
    if (was_empty)
      kick (c);
  }
  pthread_mutex_lock (&w.lock);
  while (w.remaining > 0)
    pthread_cond_wait (&w.cond, &w.lock);
  pthread_mutex_unlock (&w.lock);
  pthread_cond_destroy (&w.cond);
  pthread_mutex_destroy (&w.lock);
  return w.err;
}
