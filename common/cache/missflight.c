/* SPDX-License-Identifier: BSD-3-Clause */
/* missflight.c — single-flight for an export's read misses.
 *
 * WHAT: a list of the block ranges whose miss is in flight (backing read,
 * cache write, promotion).  A miss that overlaps one waits for it to end
 * and then looks its blocks up again, instead of reading the same blocks
 * from the backing store a second time.
 * WHY: over a slow remote, clients re-read what they just asked for
 * (readahead, two connections on one image): without this, concurrent
 * misses of one block each paid a round trip and each promoted a copy (the
 * second replacing the first in the index).  Issue 10 §3: concurrent
 * misses of the same block issue one backing read.
 * INVARIANTS: the ranges in the list are pairwise disjoint (begin only
 * registers a range that overlaps none); ids only grow, so a waiter
 * recognises its flight by id even after the entry's memory is reused.
 * THREADS AND LOCKS: mf->lock guards the list, the ids and the counter;
 * it is a leaf, never held across I/O.  A waiter holds no other lock and
 * no flight of its own (request.c begins a flight only with none open),
 * so waits never form a cycle.  Reads of a read-modify-write (under a
 * range lock, never promoted) do not use flights.
 * FAILURE: none; a flight whose read failed or did not promote just ends,
 * and its waiters then miss again and read for themselves.
 * NOT HERE: what a miss does (request.c).
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "invariant.h"
#include "missflight.h"

struct missflight {
  pthread_mutex_t lock;
  pthread_cond_t cond;          /* a flight ended */
  /* ---- under lock ---- */
  struct missflight_entry *head;
  uint64_t next_id;
  uint64_t nr_joined;
  unsigned nr_waiting;
  /* ---- set before use ---- */
  missflight_hook_fn hook;
  void *hook_opaque;
};

int
missflight_create (struct missflight **out)
{
  struct missflight *mf = calloc (1, sizeof *mf);

  if (mf == NULL)
    return -ENOMEM;
  pthread_mutex_init (&mf->lock, NULL);
  pthread_cond_init (&mf->cond, NULL);
  mf->next_id = 1;
  *out = mf;
  return 0;
}

void
missflight_destroy (struct missflight *mf)
{
  if (mf == NULL)
    return;
  pthread_cond_destroy (&mf->cond);
  pthread_mutex_destroy (&mf->lock);
  free (mf);
}

static struct missflight_entry *
find_overlap_locked (struct missflight *mf, uint64_t start, uint64_t end)
{
  ASSERT_HELD (&mf->lock);
  struct missflight_entry *e;

  for (e = mf->head; e; e = e->next)
    if (e->start < end && start < e->end)
      return e;
  return NULL;
}

static bool
in_flight_locked (struct missflight *mf, uint64_t id)
{
  ASSERT_HELD (&mf->lock);
  struct missflight_entry *e;

  for (e = mf->head; e; e = e->next)
    if (e->id == id)
      return true;
  return false;
}

bool
missflight_begin (struct missflight *mf, struct missflight_entry *e,
                  uint64_t start, uint64_t end)
{
  struct missflight_entry *other;
  uint64_t id;

  pthread_mutex_lock (&mf->lock);
  other = find_overlap_locked (mf, start, end);
  if (other == NULL) {
    e->start = start;
    e->end = end;
    e->id = mf->next_id++;
    e->next = mf->head;
    mf->head = e;
    pthread_mutex_unlock (&mf->lock);
    return true;
  }
  id = other->id;
  mf->nr_joined++;
  pthread_mutex_unlock (&mf->lock);
  if (mf->hook)
    mf->hook (mf->hook_opaque);
  pthread_mutex_lock (&mf->lock);
  mf->nr_waiting++;
  while (in_flight_locked (mf, id))
    pthread_cond_wait (&mf->cond, &mf->lock);
  mf->nr_waiting--;
  pthread_mutex_unlock (&mf->lock);
  return false;
}

void
missflight_end (struct missflight *mf, struct missflight_entry *e)
{
  struct missflight_entry **pp;

  pthread_mutex_lock (&mf->lock);
  for (pp = &mf->head; *pp; pp = &(*pp)->next)
    if (*pp == e) {
      *pp = e->next;
      break;
    }
  if (mf->nr_waiting > 0)
    pthread_cond_broadcast (&mf->cond);
  pthread_mutex_unlock (&mf->lock);
}

uint64_t
missflight_nr_joined (struct missflight *mf)
{
  uint64_t n;

  pthread_mutex_lock (&mf->lock);
  n = mf->nr_joined;
  pthread_mutex_unlock (&mf->lock);
  return n;
}

void
missflight_set_join_hook (struct missflight *mf, missflight_hook_fn fn,
                          void *opaque)
{
  mf->hook = fn;
  mf->hook_opaque = opaque;
}
