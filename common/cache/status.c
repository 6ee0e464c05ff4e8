/* SPDX-License-Identifier: BSD-3-Clause */
/* status.c — BLOCK_STATUS of an export with a cache device: the base
 * allocation context and nbdcache:state.
 *
 * WHAT: request_extents describes a range from the index (ZERO keys are
 * zero; other keys are data) and, for misses, the backing store's own
 * status; request_state_extents reports cached / dirty / zero per extent
 * from the index alone (no backing call).
 * THREADS AND LOCKS: any number of threads; no lock of its own (btree
 * lookups take the btree lock inside).
 * FAILURE: a lookup's -errno; -EIO when a backing driver breaks its
 * extents contract (a gap, or nothing reported).
 */
#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include "backing.h"
#include "bkey.h"
#include "btree.h"
#include "cache-internal.h"
#include "compiler.h"
#include "ondisk.h"

#define BLK ((uint64_t) NC_BLOCK_BYTES)
#define LOOKUP_PIECES 32

static inline uint64_t div_round_up (uint64_t a, uint64_t b)
{ return (a + b - 1) / b; }

struct extents_clip {
  uint64_t next, end;
  bool req_one;                 /* stop after the first extent */
  ncache_extent_fn fn;
  void *opaque;
  int result;                   /* > 0 stop, < 0 error */
};

static int
emit (struct extents_clip *c, uint64_t lo, uint64_t hi, uint32_t flags)
{
  int r;

  if (lo >= hi || c->result)
    return c->result;
  r = c->fn (c->opaque, lo, hi - lo, flags);
  c->next = hi;
  if (r == 0 && c->req_one)
    r = 1;
  if (r != 0)
    c->result = r;
  return r;
}

static int
backing_extent_cb (void *opaque, uint64_t offset, uint64_t length,
                   uint32_t flags)
{
  struct extents_clip *c = opaque;
  uint64_t lo = MAX (offset, c->next), hi = MIN (offset + length, c->end);

  if (offset > c->next) {
    c->result = -EIO;           /* a gap: the driver broke its contract */
    return -EIO;
  }
  if (lo < hi && emit (c, lo, hi, flags & (NCACHE_EXTENT_HOLE |
                                           NCACHE_EXTENT_ZERO)) != 0)
    return 1;
  return c->next >= c->end ? 1 : 0;
}

int
request_extents (struct ncache *nc, uint64_t count, uint64_t offset,
                 bool req_one, ncache_extent_fn fn, void *opaque)
{
  struct ncache_device *dev = nc->dev;
  struct btree_piece pieces[LOOKUP_PIECES];
  uint64_t pos = offset, end = offset + count;
  struct extents_clip c = { .req_one = req_one, .fn = fn, .opaque = opaque };
  int n, i, r;

  while (pos < end && c.result == 0) {
    n = btree_lookup (dev->bt, nc->export_id, pos / BLK,
                      div_round_up (end, BLK), pieces, LOOKUP_PIECES, NULL);
    if (n < 0)
      return n;
    for (i = 0; i < n && c.result == 0; i++) {
      const struct btree_piece *p = &pieces[i];
      uint64_t lo = MAX (pos, p->start * BLK);
      uint64_t hi = MIN (end, p->end * BLK);

      if (lo >= hi)
        continue;
      c.next = lo;
      c.end = hi;
      if (p->found)
        emit (&c, lo, hi, bkey_is_zero (&p->key) ? NCACHE_EXTENT_ZERO : 0);
      else {
        /* A driver may describe less than asked: ask again from there. */
        while (c.result == 0 && c.next < hi) {
          uint64_t from = c.next;

          r = backing_extents (nc->backing, hi - from, from,
                               backing_extent_cb, &c);
          if (r < 0 && c.result == 0)
            c.result = r;
          if (c.result == 0 && c.next == from)
            c.result = -EIO;    /* nothing reported: broken driver */
        }
      }
      pos = hi;
    }
  }
  return c.result < 0 ? c.result : 0;
}

/* nbdcache:state: what the index holds, per extent (no backing call). */
int
request_state_extents (struct ncache *nc, uint64_t count, uint64_t offset,
                       bool req_one, ncache_extent_fn fn, void *opaque)
{
  struct ncache_device *dev = nc->dev;
  struct btree_piece pieces[LOOKUP_PIECES];
  uint64_t pos = offset, end = offset + count;
  uint64_t run_lo = offset, run_hi = offset;
  uint32_t run_flags = 0;
  int n, i, r;

  /* Neighbouring pieces with the same state are reported as one extent. */
  while (pos < end) {
    n = btree_lookup (dev->bt, nc->export_id, pos / BLK,
                      div_round_up (end, BLK), pieces, LOOKUP_PIECES, NULL);
    if (n < 0)
      return n;
    for (i = 0; i < n; i++) {
      const struct btree_piece *p = &pieces[i];
      uint64_t lo = MAX (pos, p->start * BLK);
      uint64_t hi = MIN (end, p->end * BLK);
      uint32_t f = 0;

      if (lo >= hi)
        continue;
      if (p->found) {
        f = NCACHE_STATE_CACHED;
        if (p->key.flags & NC_KEY_DIRTY)
          f |= NCACHE_STATE_DIRTY;
        if (bkey_is_zero (&p->key))
          f |= NCACHE_STATE_ZERO;
      }
      if (run_hi > run_lo && f != run_flags) {
        r = fn (opaque, run_lo, run_hi - run_lo, run_flags);
        if (r != 0 || req_one)
          return r < 0 ? r : 0;
        run_lo = lo;
      }
      else if (run_hi == run_lo)
        run_lo = lo;
      run_flags = f;
      run_hi = hi;
      pos = hi;
    }
  }
  if (run_hi > run_lo) {
    r = fn (opaque, run_lo, run_hi - run_lo, run_flags);
    if (r < 0)
      return r;
  }
  return 0;
}
