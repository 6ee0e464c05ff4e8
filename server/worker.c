/* SPDX-License-Identifier: BSD-3-Clause */
/* worker.c — the elastic pool of threads that runs engine calls.
 *
 * WHAT: threads take requests from one queue, run the engine call and
 * encode the reply (nbd_request_execute + reply_prepare), then hand the request
 * back to the loop thread through the server's completion list and one
 * ev_async wake-up.  `workers` threads (the configured minimum) always
 * run; when the loop queues more requests than there are idle threads, the
 * pool starts the difference at once, up to WORKER_MAX_THREADS (or
 * `workers` if larger), while engine calls are slow (WORKER_GROW_EXEC_US
 * on average: they sleep on I/O rather than use the CPU).  A thread
 * beyond the minimum exits when it finds no work for WORKER_IDLE_MS, or
 * at once when calls have become fast.
 * WHY: engine calls block (disk I/O, fdatasync, and above all a remote
 * backing's round trip); the event loop never does.  Over a slow backing
 * every request in flight is a thread asleep on the network, so the number
 * of engine calls in flight is the number of threads: with a fixed pool of
 * 8, QD32 on one connection kept 8 backing reads in flight and the cold
 * pass over a 2 ms remote ran at ~8 / 2 ms.  Measured (fio 4k random reads
 * QD32, 1 connection, every block once, 128 MiB, nbdkit file + delay 2 ms
 * remote, writeback, buffered cache, shared 2-core VM, ranges of repeated
 * runs):
 *     fixed 8 (before)                        2.1-2.7k misses/s
 *     fixed 64                                3.1-3.7k
 *     elastic 8..256                          3.6-4.6k
 *     elastic, and a miss no longer zeroing
 *       a bucket-sized bounce buffer          4.3-6.0k
 *     direct (fio at the remote, no cache)    5.9-6.3k
 * The rest is CPU: with no delay at the remote the miss path runs ~6.5k/s
 * on this machine.
 * An elastic pool gets the throughput of a large pool where latency is
 * the limit, and keeps only `workers` threads where it is not (an idle
 * server, or cache hits that never block): the choice over a larger fixed
 * pool, which costs threads and stacks on every idle server, and over an
 * asynchronous engine path, which would rewrite every request path.
 * Batching on both sides keeps the per-request cost low: the loop submits a
 * whole parse batch under one lock, and ev_async coalesces wake-ups while
 * the loop has not yet drained the completion list.
 * INVARIANTS: nr_live counts RUNNING slots and is >= min_threads once
 * started; a slot is EXITED only after its thread left the pool (it is
 * joined before the slot is reused, or at destroy).  While calls are
 * slow, a queued request is taken by an idle thread or by a thread
 * started for it (submit starts queued - idle - starting threads, below
 * the maximum); while they are fast it waits for a busy one.
 * THREADS AND LOCKS: pool->lock guards the queue, the slots and the
 * counters; srv->done_lock guards the completion list.  Neither is held
 * while a request executes.  Lock order: never both at once.  Threads are
 * started (and exited threads joined) under pool->lock, by submit (the
 * loop thread) or by a worker that just finished a call (requests queued
 * while calls were fast); an exiting thread needs nothing after it
 * unlocks.
 * FAILURE: thread creation failure at start-up is returned; after that, a
 * thread that cannot be started is logged (once) and the queue waits for
 * the threads there are.
 * NOT HERE: what a request does (nbd-request.c), how replies look (reply.c).
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "invariant.h"
#include "log.h"
#include "server.h"

/* The most threads the pool grows to (unless `workers` is larger): two
 * connections' worth of CONN_MAX_IN_FLIGHT.
 */
#define WORKER_MAX_THREADS 256u
/* A thread beyond the minimum that found no work this long exits. */
#define WORKER_IDLE_MS 5000u
/* The pool grows only while engine calls take this long on average (a
 * moving average over about 8 calls): they sleep on I/O, so another
 * thread adds a request in flight.  Cache hits take tens of microseconds
 * of CPU; more threads would only add context switches (measured: warm
 * pass ~17-21k -> ~14-16k reads/s when the pool grew on hits too).
 */
#define WORKER_GROW_EXEC_US 500u

enum slot_state { SLOT_EMPTY = 0, SLOT_RUNNING, SLOT_EXITED };

struct worker_slot {
  struct worker_pool *pool;
  pthread_t thread;
  enum slot_state state;        /* under pool->lock */
  bool extra;                   /* beyond the minimum: may exit when idle */
};

struct worker_pool {
  struct server *srv;
  pthread_mutex_t lock;
  pthread_cond_t cond;          /* monotonic clock (clock_cond_init) */
  /* ---- under lock ---- */
  struct request *head, *tail;  /* queued work */
  unsigned nr_queued;           /* requests in the queue */
  unsigned nr_idle;             /* threads waiting on cond */
  unsigned nr_live;             /* RUNNING slots */
  unsigned nr_starting;         /* started, not yet at the queue */
  unsigned peak_live;
  uint64_t avg_exec_us;         /* moving average of an engine call */
  bool stopping;
  bool start_failed_logged;
  unsigned min_threads, max_threads;
  struct worker_slot *slots;    /* [max_threads] */
};

static void grow_locked (struct worker_pool *p);

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

/* Wait for work; false when this thread should leave the pool (stopping
 * and drained, or an extra thread idle for WORKER_IDLE_MS).
 */
static bool
wait_work_locked (struct worker_pool *p, struct worker_slot *s)
{
  ASSERT_HELD (&p->lock);
  struct timespec deadline = clock_timespec_of_ms (clock_now_ms ()
                                                   + WORKER_IDLE_MS);

  while (p->head == NULL && !p->stopping) {
    int r;

    /* Calls became fast (hits): the extra threads only cost switches. */
    if (s->extra && p->avg_exec_us < WORKER_GROW_EXEC_US / 2 &&
        p->nr_live > p->min_threads)
      return false;

    p->nr_idle++;
    if (s->extra)
      r = pthread_cond_timedwait (&p->cond, &p->lock, &deadline);
    else
      r = pthread_cond_wait (&p->cond, &p->lock);
    p->nr_idle--;
    if (r == ETIMEDOUT && p->head == NULL && p->nr_live > p->min_threads)
      return false;
  }
  return p->head != NULL;
}

static void *
worker_main (void *arg)
{
  struct worker_slot *s = arg;
  struct worker_pool *p = s->pool;
  bool first = true;
  uint64_t exec_us = 0;

  for (;;) {
    struct request *r;
    uint64_t t0;

    pthread_mutex_lock (&p->lock);
    if (first)
      p->nr_starting--;
    else {
      p->avg_exec_us = (p->avg_exec_us * 7 + exec_us) / 8;
      grow_locked (p);
    }
    first = false;
    if (!wait_work_locked (p, s)) {
      s->state = SLOT_EXITED;
      p->nr_live--;
      pthread_mutex_unlock (&p->lock);
      return NULL;
    }
    r = p->head;
    p->head = r->next;
    if (p->head == NULL)
      p->tail = NULL;
    p->nr_queued--;
    pthread_mutex_unlock (&p->lock);

    /* Nobody will read the reply of a closed connection: do not spend a
     * disk read (or an unacknowledged write) on it.
     */
    t0 = clock_now_ns ();
    if (conn_is_dead (r->conn))
      r->error = -ESHUTDOWN;
    else {
      nbd_request_execute (r);
      reply_prepare (r);
    }
    exec_us = (clock_now_ns () - t0) / 1000;
    complete (p->srv, r);
  }
}

/* Start one thread in a free slot.  0 or -errno. */
static int
start_thread_locked (struct worker_pool *p, bool extra)
{
  ASSERT_HELD (&p->lock);
  struct worker_slot *s = NULL;
  unsigned i;
  int r;

  for (i = 0; i < p->max_threads; i++) {
    if (p->slots[i].state == SLOT_RUNNING)
      continue;
    s = &p->slots[i];
    break;
  }
  if (s == NULL)
    return -EAGAIN;
  if (s->state == SLOT_EXITED) {
    /* It left the pool already; this only reaps the thread. */
    pthread_join (s->thread, NULL);
    s->state = SLOT_EMPTY;
  }
  s->pool = p;
  s->extra = extra;
  r = pthread_create (&s->thread, NULL, worker_main, s);
  if (r != 0)
    return -r;
  s->state = SLOT_RUNNING;
  p->nr_live++;
  p->nr_starting++;
  if (p->nr_live > p->peak_live)
    p->peak_live = p->nr_live;
  return 0;
}

/* Every idle thread (woken or not yet running) takes one request; the
 * rest would wait for a busy thread, which over a slow backing means for
 * a round trip: start threads for them.  Runs at submit and whenever a
 * call finishes (a queue submitted while calls were fast grows once they
 * prove slow).
 */
static void
grow_locked (struct worker_pool *p)
{
  ASSERT_HELD (&p->lock);
  while (p->nr_queued > p->nr_idle + p->nr_starting &&
         p->avg_exec_us >= WORKER_GROW_EXEC_US &&
         p->nr_live < p->max_threads && !p->stopping) {
    int r = start_thread_locked (p, true);

    if (r < 0) {
      if (!p->start_failed_logged)
        log_error ("cannot start worker thread (%u running): %s",
                   p->nr_live, strerror (-r));
      p->start_failed_logged = true;
      break;
    }
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
  p->min_threads = nr_threads;
  p->max_threads = nr_threads > WORKER_MAX_THREADS ? nr_threads
                   : WORKER_MAX_THREADS;
  p->slots = calloc (p->max_threads, sizeof *p->slots);
  if (p->slots == NULL) {
    free (p);
    return -ENOMEM;
  }
  pthread_mutex_init (&p->lock, NULL);
  if ((r = clock_cond_init (&p->cond)) < 0) {
    pthread_mutex_destroy (&p->lock);
    free (p->slots);
    free (p);
    return r;
  }
  pthread_mutex_lock (&p->lock);
  for (i = 0, r = 0; i < nr_threads && r == 0; i++)
    r = start_thread_locked (p, false);
  pthread_mutex_unlock (&p->lock);
  if (r < 0) {
    log_error ("cannot start worker thread: %s", strerror (-r));
    worker_pool_destroy (p);
    return r;
  }
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
  p->nr_queued += n;
  wake = n < p->nr_idle ? n : p->nr_idle;
  if (wake >= p->nr_idle && wake > 1)
    pthread_cond_broadcast (&p->cond);
  else
    while (wake-- > 0)
      pthread_cond_signal (&p->cond);
  grow_locked (p);
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
  /* No thread starts once stopping is set (only submit starts them), so
   * a slot's thread, once seen, is joined exactly once.
   */
  for (i = 0; i < p->max_threads; i++) {
    enum slot_state st;

    pthread_mutex_lock (&p->lock);
    st = p->slots[i].state;
    pthread_mutex_unlock (&p->lock);
    if (st != SLOT_EMPTY)
      pthread_join (p->slots[i].thread, NULL);
  }
  log_debug ("worker pool: %u threads at most (minimum %u)", p->peak_live,
             p->min_threads);
  pthread_cond_destroy (&p->cond);
  pthread_mutex_destroy (&p->lock);
  free (p->slots);
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
