/* SPDX-License-Identifier: BSD-3-Clause */
/* fanout.c — run n independent jobs on up to L threads and wait for all.
 *
 * WHAT: fanout_run (fanout.h): the caller and up to L - 1 threads started
 * for the call take item numbers from one counter until none is left (or
 * a job failed), then the threads are joined.
 * WHY: a caller with many blocking, independent I/Os (writeback's runs of
 * one batch to a slow remote) must keep many in flight, then wait for all
 * of them (submit the batch, then wait).  Threads are started per call:
 * their cost (tens of microseconds each) is small beside the I/O they
 * overlap, and nothing lives on between calls.
 * INVARIANTS: every item below n is started at most once and, unless a
 * job failed, exactly once; fanout_run returns only after every job it
 * started has finished.
 * THREADS AND LOCKS: f.lock guards the counter and the first error; it is
 * never held while a job runs.
 * FAILURE: a failing job stops new items; its -errno is returned.  A
 * thread that cannot be started leaves its items to the other lanes.
 * NOT HERE: what a job does; per-lane state (the caller's, by lane index).
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "fanout.h"

struct fanout {
  fanout_fn fn;
  void *opaque;
  unsigned n;
  pthread_mutex_t lock;
  /* ---- under lock ---- */
  unsigned next;                /* next item to start */
  int err;                      /* first failure, or 0 */
};

struct lane {
  struct fanout *f;
  unsigned index;
  pthread_t thread;
};

static void *
lane_main (void *arg)
{
  struct lane *l = arg;
  struct fanout *f = l->f;

  for (;;) {
    unsigned item;
    int r;

    pthread_mutex_lock (&f->lock);
    if (f->err < 0 || f->next >= f->n) {
      pthread_mutex_unlock (&f->lock);
      return NULL;
    }
    item = f->next++;
    pthread_mutex_unlock (&f->lock);
    r = f->fn (f->opaque, l->index, item);
    if (r < 0) {
      pthread_mutex_lock (&f->lock);
      if (f->err == 0)
        f->err = r;
      pthread_mutex_unlock (&f->lock);
    }
  }
}

int
fanout_run (unsigned n, unsigned lanes, fanout_fn fn, void *opaque)
{
  struct fanout f = { .fn = fn, .opaque = opaque, .n = n };
  struct lane *ls;
  unsigned i, started = 0;

  if (n == 0)
    return 0;
  if (lanes == 0)
    lanes = 1;
  if (lanes > n)
    lanes = n;
  ls = calloc (lanes, sizeof *ls);
  if (ls == NULL)
    lanes = 1;
  pthread_mutex_init (&f.lock, NULL);
  /* Lane 0 is the caller itself. */
  for (i = 1; ls != NULL && i < lanes; i++) {
    ls[i].f = &f;
    ls[i].index = i;
    if (pthread_create (&ls[i].thread, NULL, lane_main, &ls[i]) != 0)
      break;
    started = i;
  }
  {
    struct lane self = { .f = &f, .index = 0 };

    lane_main (&self);
  }
  for (i = 1; i <= started; i++)
    pthread_join (ls[i].thread, NULL);
  pthread_mutex_destroy (&f.lock);
  free (ls);
  return f.err;
}
