/* SPDX-License-Identifier: BSD-3-Clause */
/* test-gate.h — a gate on the backing store, for tests of concurrent misses.
 *
 * WHAT: hooked into the test store's power callback (test-store.h), an
 * armed gate holds every backing request until it is opened, counting the
 * requests that reached it; gate_joined counts misses that waited for
 * another's flight (missflight's test hook).  Tests wait for a count with
 * a deadline, so a broken engine fails the test instead of hanging it.
 * WHY: test-missflight and test-stats both race two readers of one block;
 * the gate was written twice.
 * THREADS AND LOCKS: g->lock guards every field; any thread.
 */
#ifndef NBDCACHE_TEST_GATE_H
#define NBDCACHE_TEST_GATE_H

#include <pthread.h>
#include <stdbool.h>

/* How long a test waits for a gate count before it fails. */
#define GATE_DEADLINE_S 30

struct gate {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  bool armed;                   /* requests stop at the gate */
  bool open;                    /* the gate lets them through */
  bool fail_first;              /* the first request through fails */
  unsigned entries;             /* requests that reached the gate */
  unsigned joined;              /* misses that waited for a flight */
};

void gate_init (struct gate *g);
void gate_destroy (struct gate *g);
/* The test store's power hook: false makes the request fail. */
bool gate_power (void *opaque);
/* missflight's "a miss joined a flight" hook. */
void gate_joined (void *opaque);
/* Wait until entries >= e or joined >= j (either may be 0: ignored);
 * fails the test after GATE_DEADLINE_S.
 */
void gate_wait (struct gate *g, unsigned e, unsigned j);
/* Set armed and open at once (waking waiters). */
void gate_set (struct gate *g, bool armed, bool open);
/* Let every held request through. */
void gate_open (struct gate *g);

#endif /* NBDCACHE_TEST_GATE_H */
