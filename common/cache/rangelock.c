/* SPDX-License-Identifier: BSD-3-Clause */
/* rangelock.c — the range lock of an export (struct range_lock in
 * cache-internal.h).
 *
 * WHAT: writes, zeroes, trims and writeback hold the blocks they touch;
 * a holder waits while another one overlaps its range.  Reads take no
 * range lock; a promotion only asks whether one is held (range_lock_busy,
 * request.c's ORDERING rule 3).
 * WHY: a read-modify-write of a partial block, write-around and
 * writeback must never interleave with another write of the same blocks.
 * THREADS AND LOCKS: one mutex and condvar inside; a leaf (the btree lock
 * may be taken while holding a range, never the other way).
 * FAILURE: none.
 */
#include <config.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "cache-internal.h"

void
range_lock_init (struct range_lock *rl)
{
  pthread_mutex_init (&rl->lock, NULL);
  pthread_cond_init (&rl->cond, NULL);
  rl->active = NULL;
}

void
range_lock_destroy (struct range_lock *rl)
{
  pthread_cond_destroy (&rl->cond);
  pthread_mutex_destroy (&rl->lock);
}

/* Does an entry of rl->active overlap [start, end)?  Under rl->lock. */
static bool
held_locked (const struct range_lock *rl, uint64_t start, uint64_t end)
{
  const struct range_lock_entry *a;

  for (a = rl->active; a != NULL; a = a->next)
    if (a->start < end && start < a->end)
      return true;
  return false;
}

/* Make e an active entry for [start, end).  Under rl->lock. */
static void
add_locked (struct range_lock *rl, struct range_lock_entry *e,
            uint64_t start, uint64_t end)
{
  e->start = start;
  e->end = end;
  e->next = rl->active;
  rl->active = e;
}

void
range_lock_take (struct range_lock *rl, struct range_lock_entry *e,
                 uint64_t start, uint64_t end)
{
  pthread_mutex_lock (&rl->lock);
  while (held_locked (rl, start, end))
    pthread_cond_wait (&rl->cond, &rl->lock);
  add_locked (rl, e, start, end);
  pthread_mutex_unlock (&rl->lock);
}

/* Does a write, zero, trim or writeback hold blocks overlapping
 * [start, end) right now?
 */
bool
range_lock_busy (struct range_lock *rl, uint64_t start, uint64_t end)
{
  bool busy;

  pthread_mutex_lock (&rl->lock);
  busy = held_locked (rl, start, end);
  pthread_mutex_unlock (&rl->lock);
  return busy;
}

bool
range_lock_try (struct range_lock *rl, struct range_lock_entry *e,
                uint64_t start, uint64_t end)
{
  bool taken;

  pthread_mutex_lock (&rl->lock);
  taken = !held_locked (rl, start, end);
  if (taken)
    add_locked (rl, e, start, end);
  pthread_mutex_unlock (&rl->lock);
  return taken;
}

void
range_lock_release (struct range_lock *rl, struct range_lock_entry *e)
{
  struct range_lock_entry **pp;

  pthread_mutex_lock (&rl->lock);
  for (pp = &rl->active; *pp != NULL; pp = &(*pp)->next)
    if (*pp == e) {
      *pp = e->next;
      break;
    }
  pthread_cond_broadcast (&rl->cond);
  pthread_mutex_unlock (&rl->lock);
}
