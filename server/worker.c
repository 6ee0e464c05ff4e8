/* SPDX-License-Identifier: BSD-3-Clause */
/* worker.c — the fixed pool of threads that runs engine calls.
 *
 * WHAT: N threads take requests from one queue, run the engine call and
 * encode the reply (nbd_request_execute + reply_prepare), then hand the
 * request back to the loop thread through the server's completion list and one
 * ev_async wake-up.
 * WHY: engine calls block (disk I/O, fdatasync); the event loop never does.
 * Batching on both sides keeps the per-request cost low: the loop submits a
 * whole parse batch under one lock, and ev_async coalesces wake-ups while
 * the loop has not yet drained the completion list.
 * THREADS AND LOCKS: pool->lock guards the queue and `stopping`;
 * srv->done_lock guards the completion list.  Neither is held while a
 * request executes.  Lock order: never both at once.
 * FAILURE: thread creation failure at start-up is returned; nothing fails
 * after that.
 * NOT HERE: what a request does (nbd-request.c), how replies look (reply.c).
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "server.h"

struct worker_pool {
  struct server *srv;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  struct request *head, *tail;  /* queued work */
  unsigned nr_idle;             /* threads waiting on cond */
  bool stopping;
  unsigned nr_threads;
  pthread_t *threads;
};

static void
complete (struct server *srv, struct request *r)
{
  bool was_empty;

  r->next = NULL;
  pthread_mutex_lock (&srv->done_lock);
  was_empty = srv->done_head == NULL;
  if (srv->done_tail)
    srv->done_tail->next = r;
  else
    srv->done_head = r;
  srv->done_tail = r;
  pthread_mutex_unlock (&srv->done_lock);
  if (was_empty)
    ev_async_send (srv->loop, &srv->done_async);
}

static void *
worker_main (void *arg)
{
  struct worker_pool *p = arg;

  for (;;) {
    struct request *r;

    pthread_mutex_lock (&p->lock);
    while (p->head == NULL && !p->stopping) {
      p->nr_idle++;
      pthread_cond_wait (&p->cond, &p->lock);
      p->nr_idle--;
    }
    if (p->head == NULL) {      /* stopping and drained */
      pthread_mutex_unlock (&p->lock);
      return NULL;
    }
    r = p->head;
    p->head = r->next;
    if (p->head == NULL)
      p->tail = NULL;
    pthread_mutex_unlock (&p->lock);

    /* Nobody will read the reply of a closed connection: do not spend a
     * disk read (or an unacknowledged write) on it.
     */
    if (conn_is_dead (r->conn))
      r->error = -ESHUTDOWN;
    else {
      nbd_request_execute (r);
      reply_prepare (r);
    }
    complete (p->srv, r);
  }
}

int
worker_pool_create (struct server *srv, unsigned nr_threads,
                    struct worker_pool **out)
{
  struct worker_pool *p = calloc (1, sizeof *p);
  unsigned i;
  int r;

  if (p == NULL)
    return -ENOMEM;
  p->srv = srv;
  p->threads = calloc (nr_threads, sizeof *p->threads);
  if (p->threads == NULL) {
    free (p);
    return -ENOMEM;
  }
  pthread_mutex_init (&p->lock, NULL);
  pthread_cond_init (&p->cond, NULL);
  for (i = 0; i < nr_threads; i++) {
    r = pthread_create (&p->threads[i], NULL, worker_main, p);
    if (r != 0) {
      log_error ("cannot start worker thread: %s", strerror (r));
      p->nr_threads = i;
      worker_pool_destroy (p);
      return -r;
    }
  }
  p->nr_threads = nr_threads;
  *out = p;
  return 0;
}

void
worker_pool_submit (struct worker_pool *p, struct request *first,
                    struct request *last, unsigned n)
{
  unsigned wake;

  last->next = NULL;
  pthread_mutex_lock (&p->lock);
  if (p->tail)
    p->tail->next = first;
  else
    p->head = first;
  p->tail = last;
  wake = n < p->nr_idle ? n : p->nr_idle;
  if (wake >= p->nr_idle && wake > 1)
    pthread_cond_broadcast (&p->cond);
  else
    while (wake-- > 0)
      pthread_cond_signal (&p->cond);
  pthread_mutex_unlock (&p->lock);
}

/* Waits for queued work to finish, then joins every thread.  NULL no-op. */
void
worker_pool_destroy (struct worker_pool *p)
{
  unsigned i;

  if (p == NULL)
    return;
  pthread_mutex_lock (&p->lock);
  p->stopping = true;
  pthread_cond_broadcast (&p->cond);
  pthread_mutex_unlock (&p->lock);
  for (i = 0; i < p->nr_threads; i++)
    pthread_join (p->threads[i], NULL);
  pthread_cond_destroy (&p->cond);
  pthread_mutex_destroy (&p->lock);
  free (p->threads);
  free (p);
}

void
worker_pool_reap (struct server *srv)
{
  struct request *r, *next;
  struct conn *to_flush = NULL;

  pthread_mutex_lock (&srv->done_lock);
  r = srv->done_head;
  srv->done_head = srv->done_tail = NULL;
  pthread_mutex_unlock (&srv->done_lock);

  for (; r; r = next) {
    struct conn *c = r->conn;

    next = r->next;
    if (c->destroyed) {
      nbd_request_release (c, &r->out);
      continue;
    }
    conn_queue (c, &r->out);
    if (!c->flush_marked) {
      c->flush_marked = true;
      c->flush_next = to_flush;
      to_flush = c;
    }
  }
  /* One writev per connection for the whole batch of replies. */
  while (to_flush) {
    struct conn *c = to_flush;

    to_flush = c->flush_next;
    c->flush_marked = false;
    conn_flush_output (c);
  }
}
