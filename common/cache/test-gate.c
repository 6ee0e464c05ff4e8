/* SPDX-License-Identifier: BSD-3-Clause */
/* test-gate.c — the backing-store gate of test-gate.h. */
#include <config.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <time.h>

#include <cmocka.h>

#include "test-gate.h"

void
gate_init (struct gate *g)
{
  *g = (struct gate) { .armed = false };
  pthread_mutex_init (&g->lock, NULL);
  pthread_cond_init (&g->cond, NULL);
}

void
gate_destroy (struct gate *g)
{
  pthread_cond_destroy (&g->cond);
  pthread_mutex_destroy (&g->lock);
}

bool
gate_power (void *opaque)
{
  struct gate *g = opaque;
  bool on = true;

  pthread_mutex_lock (&g->lock);
  if (g->armed) {
    unsigned me = g->entries++;

    pthread_cond_broadcast (&g->cond);
    while (!g->open)
      pthread_cond_wait (&g->cond, &g->lock);
    if (me == 0 && g->fail_first)
      on = false;
  }
  pthread_mutex_unlock (&g->lock);
  return on;
}

void
gate_joined (void *opaque)
{
  struct gate *g = opaque;

  pthread_mutex_lock (&g->lock);
  g->joined++;
  pthread_cond_broadcast (&g->cond);
  pthread_mutex_unlock (&g->lock);
}

void
gate_wait (struct gate *g, unsigned e, unsigned j)
{
  struct timespec deadline;
  int r = 0;

  clock_gettime (CLOCK_REALTIME, &deadline);
  deadline.tv_sec += GATE_DEADLINE_S;
  pthread_mutex_lock (&g->lock);
  while (!(e && g->entries >= e) && !(j && g->joined >= j) && r == 0)
    r = pthread_cond_timedwait (&g->cond, &g->lock, &deadline);
  pthread_mutex_unlock (&g->lock);
  assert_int_equal (r, 0);
}

void
gate_set (struct gate *g, bool armed, bool open)
{
  pthread_mutex_lock (&g->lock);
  g->armed = armed;
  g->open = open;
  pthread_cond_broadcast (&g->cond);
  pthread_mutex_unlock (&g->lock);
}

void
gate_open (struct gate *g)
{
  pthread_mutex_lock (&g->lock);
  g->open = true;
  pthread_cond_broadcast (&g->cond);
  pthread_mutex_unlock (&g->lock);
}
