/* SPDX-License-Identifier: BSD-3-Clause */
/* missflight.h — single-flight for an export's read misses.
 *
 * Owns: the set of block ranges whose backing read (and promotion) is in
 * flight, per export.  Threads: any; one mutex inside, never held across
 * I/O or while taking another lock.  On disk: nothing.  Not here: the
 * miss itself (request.c), the placeholders that keep a promotion from
 * inserting stale data (btree.c).
 */
#ifndef NBDCACHE_MISSFLIGHT_H
#define NBDCACHE_MISSFLIGHT_H

#include <stdbool.h>
#include <stdint.h>

struct missflight;

/* A flight: one caller's claim on blocks [start, end), on its stack. */
struct missflight_entry {
  struct missflight_entry *next;
  uint64_t start, end;          /* blocks */
  uint64_t id;
};

/* 0 and *out set, or -ENOMEM. */
int missflight_create (struct missflight **out);
/* No flight may be in progress.  NULL is a no-op. */
void missflight_destroy (struct missflight *mf);

/* Before a miss over blocks [start, end) reads the backing store: true
 * and e registered (the caller reads, promotes, then calls
 * missflight_end), or false after waiting for an overlapping flight to
 * end (nothing registered: the caller looks the blocks up again, and
 * finds them cached if that flight promoted them).
 */
bool missflight_begin (struct missflight *mf, struct missflight_entry *e,
                       uint64_t start, uint64_t end);
/* The flight is over (promoted or not): wakes its waiters. */
void missflight_end (struct missflight *mf, struct missflight_entry *e);

/* Misses that waited for another's flight instead of reading (tests). */
uint64_t missflight_nr_joined (struct missflight *mf);
/* Tests: fn (opaque) runs, with no lock held, each time a miss is about
 * to wait for another's flight.  Set before the export serves I/O.
 */
typedef void (*missflight_hook_fn) (void *opaque);
void missflight_set_join_hook (struct missflight *mf, missflight_hook_fn fn,
                               void *opaque);

#endif /* NBDCACHE_MISSFLIGHT_H */
