/* SPDX-License-Identifier: BSD-3-Clause */
/* bucket-discard.c — the bucket set's side of discards.
 *
 * WHAT: hands EMPTY buckets to the discard thread in batches (gens bumped
 * and made durable first, state DISCARD) and takes them back FREE; turns
 * discards on and off.  A take that finds no fresh bucket bumps every
 * bumpable EMPTY bucket with one prio write and marks them fresh.
 * WHY: a discarded bucket must be unreachable (its gen durable) before the
 * device forgets its blocks; batching makes a pass over N empty buckets
 * cost one prio write, not N / batch.
 *
 * INVARIANTS: those of bucket.c's head ("Discard on", "fresh"); a bucket
 * in DISCARD belongs to the discard thread until bucket_discard_done;
 * every finished batch (and every mode change) bumps discard_done_gen and
 * wakes the allocations waiting on discard_cond, and ends a stall.
 *
 * THREADS AND LOCKS: everything under bs->lock; the discard I/O itself
 * happens in gc.c with the lock dropped.
 *
 * FAILURE: -EIO from the prio write (nothing taken; the buckets stay
 * EMPTY); a done for a bucket that is not in DISCARD: logged once, ignored.
 *
 * NOT HERE: issuing the discards (gc.c); the allocator's wait for a batch
 * (bucket-alloc.c).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>

#include "bucket-internal.h"

/* ---- discards ---- */

void
bucket_set_discard (struct bucket_set *bs, bool on)
{
  pthread_mutex_lock (&bs->lock);
  bs->discard = on;
  bs->discard_stalled = false;
  bs->discard_done_gen++;       /* waiters re-examine */
  pthread_cond_broadcast (&bs->discard_cond);
  pthread_mutex_unlock (&bs->lock);
}

/* Bump every EMPTY bucket that is not fresh and may be bumped, with one
 * prio write; they become fresh.  How many, or -errno (then none is
 * fresh: nr_fresh was 0 on entry).  *gen_limited as refill.
 */
static int
bump_all_empty_locked (struct bucket_set *bs, bool *gen_limited)
{
  ASSERT_HELD (&bs->lock);
  uint32_t n = 0, i;
  int r;

  for (i = bs->data_first; i < bs->nbuckets; i++) {
    struct bucket *b = &bs->b[i];

    if (b->state != BUCKET_EMPTY || b->fresh)
      continue;
    if (!can_bump (b)) {
      *gen_limited = true;
      continue;
    }
    bump_gen_locked (bs, b);
    b->fresh = true;            /* undone below if the write fails */
    bs->nr_fresh++;
    n++;
  }
  if (n == 0)
    return 0;
  /* Once this is durable no key into the old data can come back, so
   * discarding and reusing the buckets is safe.  On failure they stay
   * EMPTY, not fresh, their bumps undone (as in refill: retries must not
   * take the gens ever further past the durable copy); the fresh ones
   * are exactly those bumped here (nr_fresh was 0).
   */
  if ((r = prio_write_locked (bs)) < 0) {
    for (i = bs->data_first; i < bs->nbuckets; i++) {
      struct bucket *b = &bs->b[i];

      if (b->fresh)
        __atomic_store_n (&b->gen, (uint8_t) (b->gen - 1), __ATOMIC_RELEASE);
      unfresh_locked (bs, b);
    }
    return r;
  }
  return (int) n;
}

/* Up to max fresh buckets in ascending order from discard_cursor (from
 * data_first again if none lies after it), made BUCKET_DISCARD.
 */
static uint32_t
take_fresh_locked (struct bucket_set *bs, uint32_t *out, uint32_t max)
{
  ASSERT_HELD (&bs->lock);
  uint32_t n = 0, i, pass;

  for (pass = 0; pass < 2 && n == 0 && bs->nr_fresh > 0; pass++) {
    if (pass == 1)
      bs->discard_cursor = bs->data_first;
    for (i = MAX (bs->discard_cursor, bs->data_first);
         i < bs->nbuckets && n < max && bs->nr_fresh > 0; i++)
      if (bs->b[i].fresh) {
        set_state_locked (bs, i, BUCKET_DISCARD);
        out[n++] = i;
      }
    bs->discard_cursor = i;
  }
  return n;
}

int
bucket_discard_take (struct bucket_set *bs, uint32_t *out, uint32_t max)
{
  bool gen_limited = false;
  int r;

  pthread_mutex_lock (&bs->lock);
  if (bs->nr_fresh == 0 && bs->nr_state[BUCKET_EMPTY] > 0 &&
      (r = bump_all_empty_locked (bs, &gen_limited)) < 0) {
    /* No batch is coming: waiting allocations refill by themselves (and
     * meet the device error there) until a batch succeeds.
     */
    bs->discard_stalled = true;
    bs->discard_done_gen++;
    pthread_cond_broadcast (&bs->discard_cond);
    pthread_mutex_unlock (&bs->lock);
    return r;
  }
  r = (int) take_fresh_locked (bs, out, max);
  pthread_mutex_unlock (&bs->lock);
  return r == 0 && gen_limited ? -EAGAIN : r;
}

void
bucket_discard_done (struct bucket_set *bs, const uint32_t *b, uint32_t n,
                     uint32_t failed)
{
  uint32_t i;

  pthread_mutex_lock (&bs->lock);
  for (i = 0; i < n; i++) {
    if (!is_data_bucket (bs, b[i]) || bs->b[b[i]].state != BUCKET_DISCARD) {
      complain_locked (bs, COMPLAIN_DISCARD_DONE,
                       "discard done for a bucket that is not busy", b[i]);
      continue;
    }
    push_free_locked (bs, b[i]);
    bs->discards++;
  }
  bs->discard_batches++;
  bs->discard_errors += failed;
  bs->discard_stalled = false;
  bs->discard_done_gen++;
  pthread_cond_broadcast (&bs->discard_cond);
  pthread_mutex_unlock (&bs->lock);
}

uint32_t
bucket_discard_waiting (struct bucket_set *bs)
{
  uint32_t n;

  pthread_mutex_lock (&bs->lock);
  n = bs->discard ? bs->nr_state[BUCKET_EMPTY] : 0;
  pthread_mutex_unlock (&bs->lock);
  return n;
}
