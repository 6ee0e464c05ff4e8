/* SPDX-License-Identifier: BSD-3-Clause */
/* test-trimq.c — unit tests for the backing store's trim queue.
 *
 * WHAT: merging (overlap, adjacency, containment, bridging, random adds
 * and write barriers against a block model, seeded), write barriers
 * (dropping and splitting queued extents; waiting for an overlapping
 * batch in flight, not for a disjoint one; a second issuer waiting),
 * trimq_due by count and by age at their exact edges, batch sizes, the
 * round-robin cursor, draining, errors and stats, and a concurrency test
 * that checks no trim queued before a write is issued after its barrier.
 * WHY: a trim that overtakes a later write destroys client data.
 * INVARIANTS: random tests print their seed; NBDCACHE_SEED repeats it.
 * Nothing sleeps: threads meet on condition variables; "still blocked" is checked with a bounded timed
 * wait, "not blocked" by a generous deadline.
 * THREADS AND LOCKS: helper threads report through fields read after
 * pthread_join (cmocka's assertions are not thread-safe).
 * FAILURE: cmocka assertions.
 * NOT HERE: the export's background thread that calls trimq_issue.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "testkit.h"

#include "compiler.h"
#include "trimq.h"

/* ---- helpers ---- */

static uint64_t
seed_from_env (const char *test)
{
  uint64_t seed = test_seed_from_env (test);

  return seed ? seed : 1;
}

static struct trimq *
create (void)
{
  struct trimq *q = NULL;

  assert_int_equal (trimq_create (&q), 0);
  assert_non_null (q);
  return q;
}

#define MAX_RECORDED 4096

/* Records every issued trim; can fail chosen ones. */
struct recorder {
  uint64_t offset[MAX_RECORDED], count[MAX_RECORDED];
  size_t n;
  uint64_t fail_below;          /* fail trims starting below this */
};

static int
record_trim (void *opaque, uint64_t offset, uint64_t count)
{
  struct recorder *rec = opaque;

  if (rec->n < MAX_RECORDED) {
    rec->offset[rec->n] = offset;
    rec->count[rec->n] = count;
  }
  rec->n++;
  return offset < rec->fail_below ? -EIO : 0;
}

/* Drain q and check it held exactly the extents given as (offset, count)
 * pairs, in offset order.
 */
static void
assert_queue (struct trimq *q, size_t n, const uint64_t *pairs)
{
  struct recorder *rec = calloc (1, sizeof *rec);
  size_t i;

  assert_non_null (rec);
  assert_int_equal (trimq_len (q), n);
  assert_int_equal (trimq_issue (q, true, record_trim, rec), 0);
  assert_int_equal (rec->n, n);
  for (i = 0; i < n; ++i) {
    assert_int_equal (rec->offset[i], pairs[2 * i]);
    assert_int_equal (rec->count[i], pairs[2 * i + 1]);
  }
  assert_int_equal (trimq_len (q), 0);
  free (rec);
}

/* ---- merging ---- */

static void
test_trimq_merge (void **state)
{
  struct trimq *q = create ();

  /* Adjacent both ways, then containment inside and around. */
  assert_int_equal (trimq_add (q, 10, 10, 0), 0);
  assert_int_equal (trimq_add (q, 20, 5, 0), 0);   /* after */
  assert_int_equal (trimq_add (q, 0, 10, 0), 0);   /* before */
  assert_int_equal (trimq_len (q), 1);
  assert_int_equal (trimq_add (q, 3, 4, 0), 0);    /* inside */
  assert_queue (q, 1, (uint64_t[]) { 0, 25 });

  /* Disjoint ones stay apart; an overlap joins; a bridge joins three. */
  assert_int_equal (trimq_add (q, 100, 10, 0), 0);
  assert_int_equal (trimq_add (q, 200, 10, 0), 0);
  assert_int_equal (trimq_add (q, 300, 10, 0), 0);
  assert_int_equal (trimq_len (q), 3);
  assert_int_equal (trimq_add (q, 205, 20, 0), 0); /* overlaps the end */
  assert_int_equal (trimq_add (q, 195, 6, 0), 0);  /* overlaps the start */
  assert_int_equal (trimq_len (q), 3);
  assert_queue (q, 3, (uint64_t[]) { 100, 10, 195, 30, 300, 10 });

  assert_int_equal (trimq_add (q, 100, 10, 0), 0);
  assert_int_equal (trimq_add (q, 200, 10, 0), 0);
  assert_int_equal (trimq_add (q, 300, 10, 0), 0);
  assert_int_equal (trimq_add (q, 110, 90, 0), 0); /* bridges two */
  assert_int_equal (trimq_len (q), 2);
  assert_int_equal (trimq_add (q, 50, 1000, 0), 0);        /* covers all */
  assert_queue (q, 1, (uint64_t[]) { 50, 1000 });

  /* Zero-length adds queue nothing; the very end of the space merges. */
  assert_int_equal (trimq_add (q, 7, 0, 0), 0);
  assert_int_equal (trimq_len (q), 0);
  assert_int_equal (trimq_add (q, UINT64_MAX - 10, 10, 0), 0);
  assert_int_equal (trimq_add (q, UINT64_MAX - 20, 10, 0), 0);
  assert_queue (q, 1, (uint64_t[]) { UINT64_MAX - 20, 20 });
  trimq_destroy (q);
}

#define MODEL_BLOCKS 2048

/* Random adds and barriers in random order against a block bitmap: the
 * queue must be exactly the maximal runs of set blocks.
 */
static void
test_trimq_random_model (void **state)
{
  uint64_t seed = seed_from_env ("test_trimq_random_model");
  struct recorder *rec = calloc (1, sizeof *rec);
  bool model[MODEL_BLOCKS];
  int round;

  assert_non_null (rec);
  for (round = 0; round < 20; ++round) {
    struct trimq *q = create ();
    size_t runs = 0, i, r;
    int op;

    memset (model, 0, sizeof model);
    for (op = 0; op < 400; ++op) {
      uint64_t off = test_splitmix_next (&seed) % MODEL_BLOCKS;
      uint64_t len = test_splitmix_next (&seed) % 40 + 1;
      bool add = test_splitmix_next (&seed) % 3 != 0;

      if (off + len > MODEL_BLOCKS)
        len = MODEL_BLOCKS - off;
      if (add)
        assert_int_equal (trimq_add (q, off, len, 0), 0);
      else
        trimq_write_barrier (q, off, len);
      memset (&model[off], add, len);
    }
    for (i = 0; i < MODEL_BLOCKS; ++i)
      if (model[i] && (i == 0 || !model[i - 1]))
        runs++;
    assert_int_equal (trimq_len (q), runs);

    rec->n = 0;
    assert_int_equal (trimq_issue (q, true, record_trim, rec), 0);
    assert_int_equal (rec->n, runs);
    for (r = 0, i = 0; r < rec->n; ++r) {
      uint64_t b;

      /* Blocks before the run are clear, the run is set, and it ends. */
      for (; i < rec->offset[r]; ++i)
        assert_false (model[i]);
      for (b = 0; b < rec->count[r]; ++b, ++i)
        assert_true (model[i]);
      assert_true (i == MODEL_BLOCKS || !model[i]);
    }
    for (; i < MODEL_BLOCKS; ++i)
      assert_false (model[i]);
    trimq_destroy (q);
  }
  free (rec);
}

/* ---- write barriers ---- */

static void
test_trimq_barrier_drops_and_splits (void **state)
{
  struct trimq *q = create ();
  struct trimq_stats st;

  assert_int_equal (trimq_add (q, 0, 100, 0), 0);
  assert_int_equal (trimq_add (q, 200, 100, 0), 0);
  trimq_write_barrier (q, 150, 10);                /* touches nothing */
  trimq_write_barrier (q, 40, 0);                  /* empty: nothing */
  trimq_get_stats (q, &st);
  assert_int_equal (st.superseded, 0);
  assert_int_equal (trimq_len (q), 2);

  trimq_write_barrier (q, 40, 20);                 /* the middle: split */
  assert_int_equal (trimq_len (q), 3);
  trimq_write_barrier (q, 90, 120);        /* right of one, left of next */
  trimq_write_barrier (q, 280, 20);        /* exactly the right end */
  trimq_get_stats (q, &st);
  assert_int_equal (st.superseded, 4);
  assert_queue (q, 3, (uint64_t[]) { 0, 40, 60, 30, 210, 70 });

  /* One write over several extents drops them all and trims the edges. */
  assert_int_equal (trimq_add (q, 0, 10, 0), 0);
  assert_int_equal (trimq_add (q, 20, 10, 0), 0);
  assert_int_equal (trimq_add (q, 40, 10, 0), 0);
  assert_int_equal (trimq_add (q, 60, 10, 0), 0);
  trimq_write_barrier (q, 5, 60);
  assert_queue (q, 2, (uint64_t[]) { 0, 5, 65, 5 });
  trimq_write_barrier (q, 0, 1000);        /* empty queue: nothing */
  trimq_get_stats (q, &st);
  assert_int_equal (st.superseded, 8);
  trimq_destroy (q);
}

/* A gate the issue callback blocks on until the test opens it. */
struct gate {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int entered;                  /* calls that reached the callback */
  int inside, max_inside;       /* concurrent callbacks */
  bool open;
};

static struct gate gate = {
  .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER,
};

static int
gated_trim (void *opaque, uint64_t offset, uint64_t count)
{
  pthread_mutex_lock (&gate.lock);
  gate.entered++;
  gate.inside++;
  if (gate.inside > gate.max_inside)
    gate.max_inside = gate.inside;
  pthread_cond_broadcast (&gate.cond);
  while (!gate.open)
    pthread_cond_wait (&gate.cond, &gate.lock);
  gate.inside--;
  pthread_mutex_unlock (&gate.lock);
  return 0;
}

/* Wait until pred holds or ms pass; returns whether it held. */
static bool
gate_wait (bool (*pred) (void *), void *arg, int ms)
{
  struct timespec deadline;
  bool ok;

  clock_gettime (CLOCK_REALTIME, &deadline);
  deadline.tv_sec += ms / 1000;
  deadline.tv_nsec += (long) (ms % 1000) * 1000000;
  if (deadline.tv_nsec >= 1000000000) {
    deadline.tv_sec++;
    deadline.tv_nsec -= 1000000000;
  }
  pthread_mutex_lock (&gate.lock);
  while (!(ok = pred (arg)) &&
         pthread_cond_timedwait (&gate.cond, &gate.lock, &deadline) == 0)
    ;
  ok = pred (arg);
  pthread_mutex_unlock (&gate.lock);
  return ok;
}

static bool
entered_at_least (void *arg)
{
  return gate.entered >= *(int *) arg;
}

struct job {
  struct trimq *q;
  uint64_t offset, count;
  bool all;
  bool done;                    /* under gate.lock */
  int r;
};

static bool
job_done (void *arg)
{
  return ((struct job *) arg)->done;
}

static void
finish_job (struct job *j)
{
  pthread_mutex_lock (&gate.lock);
  j->done = true;
  pthread_cond_broadcast (&gate.cond);
  pthread_mutex_unlock (&gate.lock);
}

static void *
issue_thread (void *arg)
{
  struct job *j = arg;

  j->r = trimq_issue (j->q, j->all, gated_trim, NULL);
  finish_job (j);
  return NULL;
}

static void *
barrier_thread (void *arg)
{
  struct job *j = arg;

  trimq_write_barrier (j->q, j->offset, j->count);
  finish_job (j);
  return NULL;
}

static void
test_trimq_barrier_waits_for_inflight (void **state)
{
  struct trimq *q = create ();
  struct job issuer = { .q = q }, second = { .q = q, .all = true };
  struct job blocked = { .q = q, .offset = 50, .count = 10 };
  struct job disjoint = { .q = q, .offset = 1000, .count = 10 };
  pthread_t th_issuer, th_second, th_blocked, th_disjoint;
  struct trimq_stats st;
  int one = 1;

  gate.entered = gate.inside = gate.max_inside = 0;
  gate.open = false;
  assert_int_equal (trimq_add (q, 0, 100, 0), 0);
  assert_int_equal (pthread_create (&th_issuer, NULL, issue_thread, &issuer),
                    0);
  assert_true (gate_wait (entered_at_least, &one, 10000));
  /* The batch is in flight: the queue is empty now. */
  assert_int_equal (trimq_len (q), 0);

  /* A write overlapping the batch in flight waits for it… */
  assert_int_equal (pthread_create (&th_blocked, NULL, barrier_thread,
                                    &blocked), 0);
  /* …a disjoint one does not… */
  assert_int_equal (pthread_create (&th_disjoint, NULL, barrier_thread,
                                    &disjoint), 0);
  assert_true (gate_wait (job_done, &disjoint, 10000));
  /* …and neither does a second issuer start a batch meanwhile. */
  assert_int_equal (trimq_add (q, 500, 10, 0), 0);
  assert_int_equal (pthread_create (&th_second, NULL, issue_thread, &second),
                    0);
  assert_false (gate_wait (job_done, &blocked, 200));
  assert_false (gate_wait (job_done, &second, 1));
  pthread_mutex_lock (&gate.lock);
  assert_int_equal (gate.entered, 1);
  gate.open = true;
  pthread_cond_broadcast (&gate.cond);
  pthread_mutex_unlock (&gate.lock);

  assert_int_equal (pthread_join (th_issuer, NULL), 0);
  assert_int_equal (pthread_join (th_blocked, NULL), 0);
  assert_int_equal (pthread_join (th_disjoint, NULL), 0);
  assert_int_equal (pthread_join (th_second, NULL), 0);
  assert_int_equal (issuer.r, 0);
  assert_int_equal (second.r, 0);
  assert_true (blocked.done);
  assert_int_equal (gate.entered, 2);
  assert_int_equal (gate.max_inside, 1);
  trimq_get_stats (q, &st);
  assert_int_equal (st.batches, 2);
  assert_int_equal (st.extents, 2);
  assert_int_equal (trimq_len (q), 0);
  trimq_destroy (q);
}

/* A read overlapping a batch in flight must see it (so it issues the queue
 * and is not promoted with pre-trim data); one beside it must not.  The
 * batch starts past 0, where an end passed as a count looked disjoint.
 */
static void
test_trimq_overlaps_sees_inflight (void **state)
{
  struct trimq *q = create ();
  struct job issuer = { .q = q };
  pthread_t th_issuer;
  int one = 1;

  gate.entered = gate.inside = gate.max_inside = 0;
  gate.open = false;
  assert_int_equal (trimq_add (q, 1000, 100, 0), 0);
  assert_int_equal (pthread_create (&th_issuer, NULL, issue_thread, &issuer),
                    0);
  assert_true (gate_wait (entered_at_least, &one, 10000));
  assert_int_equal (trimq_len (q), 0);
  assert_true (trimq_overlaps (q, 1050, 10));
  assert_true (trimq_overlaps (q, 990, 20));
  assert_false (trimq_overlaps (q, 1100, 10));
  assert_false (trimq_overlaps (q, 0, 1000));

  pthread_mutex_lock (&gate.lock);
  gate.open = true;
  pthread_cond_broadcast (&gate.cond);
  pthread_mutex_unlock (&gate.lock);
  assert_int_equal (pthread_join (th_issuer, NULL), 0);
  assert_int_equal (issuer.r, 0);
  assert_false (trimq_overlaps (q, 1050, 10));
  trimq_destroy (q);
}

/* ---- due, batches, errors ---- */

static void
test_trimq_due (void **state)
{
  struct trimq *q = create ();
  int i;

  assert_false (trimq_due (q, 0));
  assert_false (trimq_due (q, UINT64_MAX));

  /* By count: TRIMQ_BATCH extents (after merging) at once. */
  for (i = 0; i < TRIMQ_BATCH - 1; ++i)
    assert_int_equal (trimq_add (q, (uint64_t) i * 100, 10, 5000), 0);
  assert_false (trimq_due (q, 5000));
  assert_int_equal (trimq_add (q, 10, 10, 5000), 0);  /* merges: 99 */
  assert_false (trimq_due (q, 5000));
  assert_int_equal (trimq_add (q, 100000, 10, 5000), 0);
  assert_true (trimq_due (q, 5000));
  trimq_destroy (q);

  /* By age: the oldest waiting exactly TRIMQ_MAX_AGE_MS. */
  q = create ();
  assert_int_equal (trimq_add (q, 0, 10, 1000), 0);
  assert_int_equal (trimq_add (q, 100, 10, 1500), 0);
  assert_false (trimq_due (q, 1000 + TRIMQ_MAX_AGE_MS - 1));
  assert_true (trimq_due (q, 1000 + TRIMQ_MAX_AGE_MS));
  /* A clock before the add does not make it due. */
  assert_false (trimq_due (q, 500));

  /* Merging keeps the oldest time; issuing the old one resets it. */
  assert_int_equal (trimq_issue (q, true, record_trim,
                                 &(struct recorder) { .n = 0 }), 0);
  assert_int_equal (trimq_add (q, 0, 10, 10000), 0);
  assert_int_equal (trimq_add (q, 10, 10, 10900), 0);
  assert_false (trimq_due (q, 10000 + TRIMQ_MAX_AGE_MS - 1));
  assert_true (trimq_due (q, 10000 + TRIMQ_MAX_AGE_MS));
  trimq_destroy (q);
}

static void
test_trimq_batches_and_cursor (void **state)
{
  struct trimq *q = create ();
  struct recorder *rec = calloc (1, sizeof *rec);
  struct trimq_stats st;
  size_t i;

  assert_non_null (rec);
  /* 250 extents at 1000, 1100, …; each 10 bytes. */
  for (i = 0; i < 250; ++i)
    assert_int_equal (trimq_add (q, 1000 + i * 100, 10, 0), 0);

  assert_int_equal (trimq_issue (q, false, record_trim, rec), 0);
  assert_int_equal (rec->n, TRIMQ_BATCH);
  assert_int_equal (trimq_len (q), 150);
  for (i = 0; i < rec->n; ++i) {
    assert_int_equal (rec->offset[i], 1000 + i * 100);
    assert_int_equal (rec->count[i], 10);
  }

  /* A new extent below the cursor waits for the cursor to wrap. */
  assert_int_equal (trimq_add (q, 0, 10, 0), 0);
  rec->n = 0;
  assert_int_equal (trimq_issue (q, false, record_trim, rec), 0);
  assert_int_equal (rec->n, TRIMQ_BATCH);
  assert_int_equal (rec->offset[0], 1000 + 100 * 100);
  assert_int_equal (rec->offset[99], 1000 + 199 * 100);

  /* The last 50, then the wrap to the one at 0, in one batch. */
  rec->n = 0;
  assert_int_equal (trimq_issue (q, false, record_trim, rec), 0);
  assert_int_equal (rec->n, 51);
  assert_int_equal (rec->offset[0], 1000 + 200 * 100);
  assert_int_equal (rec->offset[49], 1000 + 249 * 100);
  assert_int_equal (rec->offset[50], 0);

  /* Nothing left: no batch. */
  rec->n = 0;
  assert_int_equal (trimq_issue (q, false, record_trim, rec), 0);
  assert_int_equal (trimq_issue (q, true, record_trim, rec), 0);
  assert_int_equal (rec->n, 0);
  trimq_get_stats (q, &st);
  assert_int_equal (st.queued, 251);
  assert_int_equal (st.batches, 3);
  assert_int_equal (st.extents, 251);
  assert_int_equal (st.errors, 0);

  /* Draining: everything, in offset order, in batches of TRIMQ_BATCH. */
  for (i = 0; i < 250; ++i)
    assert_int_equal (trimq_add (q, 1000 + ((i * 37) % 250) * 100, 10, 0),
                      0);
  rec->n = 0;
  assert_int_equal (trimq_issue (q, true, record_trim, rec), 0);
  assert_int_equal (rec->n, 250);
  for (i = 0; i < rec->n; ++i)
    assert_int_equal (rec->offset[i], 1000 + i * 100);
  trimq_get_stats (q, &st);
  assert_int_equal (st.batches, 6);
  assert_int_equal (st.extents, 501);
  assert_int_equal (trimq_len (q), 0);
  free (rec);
  trimq_destroy (q);
}

static void
test_trimq_errors_dropped (void **state)
{
  struct trimq *q = create ();
  struct recorder *rec = calloc (1, sizeof *rec);
  struct trimq_stats st;

  assert_non_null (rec);
  assert_int_equal (trimq_add (q, 0, 10, 0), 0);
  assert_int_equal (trimq_add (q, 100, 10, 0), 0);
  assert_int_equal (trimq_add (q, 200, 10, 0), 0);
  rec->fail_below = 150;
  /* The first error comes back; every extent was tried and dropped. */
  assert_int_equal (trimq_issue (q, false, record_trim, rec), -EIO);
  assert_int_equal (rec->n, 3);
  assert_int_equal (trimq_len (q), 0);
  trimq_get_stats (q, &st);
  assert_int_equal (st.errors, 2);
  assert_int_equal (st.batches, 1);
  assert_int_equal (st.extents, 3);
  assert_int_equal (st.queued, 3);

  /* Errors while draining too; queued trims die with the queue. */
  assert_int_equal (trimq_add (q, 0, 10, 0), 0);
  assert_int_equal (trimq_issue (q, true, record_trim, rec), -EIO);
  trimq_get_stats (q, &st);
  assert_int_equal (st.errors, 3);
  assert_int_equal (trimq_add (q, 0, 10, 0), 0);
  free (rec);
  trimq_destroy (q);
  trimq_destroy (NULL);
}

struct adder {
  struct trimq *q;
  uint64_t next;                /* where the next add goes */
  int calls;
};

/* Each issued trim queues another one above everything (up to a bound,
 * so an unbounded drain fails the test rather than hanging it).
 */
static int
add_while_issuing (void *opaque, uint64_t offset, uint64_t count)
{
  struct adder *a = opaque;

  if (++a->calls > 1000)
    return 0;
  a->next += 1000;
  return trimq_add (a->q, a->next, 10, 0);
}

static void
test_trimq_drain_is_bounded (void **state)
{
  struct trimq *q = create ();
  struct adder a = { .q = q, .next = 1000000 };
  int i;

  /* A drain issues what was queued when it began, not what is added
   * while it runs (else a steady writer could keep a FLUSH going).
   */
  for (i = 0; i < 150; ++i)
    assert_int_equal (trimq_add (q, (uint64_t) i * 100, 10, 0), 0);
  assert_int_equal (trimq_issue (q, true, add_while_issuing, &a), 0);
  assert_int_equal (a.calls, 150);
  assert_int_equal (trimq_len (q), 150);
  trimq_destroy (q);
}

/* ---- concurrency: no trim overtakes a later write ---- */

#define N_WRITERS 3
#define WRITER_BLOCKS 256
#define BLOCK 4096

enum { CLEAN = 0, PENDING, WRITTEN };

struct race {
  struct trimq *q;
  unsigned char state[N_WRITERS * WRITER_BLOCKS];   /* atomics */
  int violations;                                   /* atomic */
  bool stop;                                        /* atomic */
};

static int
checking_trim (void *opaque, uint64_t offset, uint64_t count)
{
  struct race *race = opaque;
  uint64_t b;

  /* Widen the window in which a barrier that does not wait would let
   * its write land while this trim is in flight.
   */
  sched_yield ();
  for (b = offset / BLOCK; b < (offset + count) / BLOCK; ++b)
    if (__atomic_load_n (&race->state[b], __ATOMIC_ACQUIRE) == WRITTEN)
      __atomic_add_fetch (&race->violations, 1, __ATOMIC_RELAXED);
  return 0;
}

struct writer {
  struct race *race;
  int id;
  uint64_t seed;
};

static void *
race_writer (void *arg)
{
  struct writer *w = arg;
  struct race *race = w->race;
  uint64_t now = 0;
  int i;

  for (i = 0; i < 4000; ++i) {
    uint64_t b = w->id * WRITER_BLOCKS + test_splitmix_next (&w->seed) % WRITER_BLOCKS;
    uint64_t n = test_splitmix_next (&w->seed) % 8 + 1;
    uint64_t k;

    n = MIN (n, (uint64_t) (w->id + 1) * WRITER_BLOCKS - b);

    if (test_splitmix_next (&w->seed) % 2) {
      for (k = b; k < b + n; ++k)
        __atomic_store_n (&race->state[k], PENDING, __ATOMIC_RELEASE);
      if (trimq_add (race->q, b * BLOCK, n * BLOCK, now++) < 0)
        __atomic_add_fetch (&race->violations, 1, __ATOMIC_RELAXED);
    }
    else {
      trimq_write_barrier (race->q, b * BLOCK, n * BLOCK);
      for (k = b; k < b + n; ++k)
        __atomic_store_n (&race->state[k], WRITTEN, __ATOMIC_RELEASE);
    }
  }
  return NULL;
}

static void *
race_issuer (void *arg)
{
  struct race *race = arg;

  while (!__atomic_load_n (&race->stop, __ATOMIC_ACQUIRE))
    trimq_issue (race->q, false, checking_trim, race);
  return NULL;
}

static void
test_trimq_concurrent_ordering (void **state)
{
  struct race *race = calloc (1, sizeof *race);
  struct writer w[N_WRITERS];
  pthread_t th[N_WRITERS], issuer;
  uint64_t seed = seed_from_env ("test_trimq_concurrent_ordering");
  struct trimq_stats st;
  int i;

  assert_non_null (race);
  race->q = create ();
  assert_int_equal (pthread_create (&issuer, NULL, race_issuer, race), 0);
  for (i = 0; i < N_WRITERS; ++i) {
    w[i] = (struct writer) { .race = race, .id = i,
                             .seed = seed + (uint64_t) i * 7919 };
    assert_int_equal (pthread_create (&th[i], NULL, race_writer, &w[i]), 0);
  }
  for (i = 0; i < N_WRITERS; ++i)
    assert_int_equal (pthread_join (th[i], NULL), 0);
  __atomic_store_n (&race->stop, true, __ATOMIC_RELEASE);
  assert_int_equal (pthread_join (issuer, NULL), 0);
  assert_int_equal (trimq_issue (race->q, true, checking_trim, race), 0);
  assert_int_equal (trimq_len (race->q), 0);
  assert_int_equal (race->violations, 0);
  trimq_get_stats (race->q, &st);
  assert_true (st.batches > 0);
  trimq_destroy (race->q);
  free (race);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_trimq_merge),
    cmocka_unit_test (test_trimq_random_model),
    cmocka_unit_test (test_trimq_barrier_drops_and_splits),
    cmocka_unit_test (test_trimq_barrier_waits_for_inflight),
    cmocka_unit_test (test_trimq_overlaps_sees_inflight),
    cmocka_unit_test (test_trimq_due),
    cmocka_unit_test (test_trimq_batches_and_cursor),
    cmocka_unit_test (test_trimq_errors_dropped),
    cmocka_unit_test (test_trimq_drain_is_bounded),
    cmocka_unit_test (test_trimq_concurrent_ordering),
  };

  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
