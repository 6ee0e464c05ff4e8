/* SPDX-License-Identifier: BSD-3-Clause */
/* status.c — BLOCK_STATUS of an export with a cache device: the base
 * allocation context and nbdcache:state.
 *
 * WHAT: request_extents describes a range from the index (ZERO keys are
 * zero; other keys are data) and, for misses, the backing store's own
 * status; request_state_extents reports cached / dirty / zero per extent
 * from the index alone (no backing call).  Both walk the index through
 * piece_walk (piece-walk.c).
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
#include "export-io.h"
#include "ondisk.h"


struct extents_clip {
  struct ncache_export *nc;
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

/* request_extents' walk: a key is described by the index, a hole in it by
 * the backing store.
 */
static int
extents_piece (void *opaque, const struct btree_piece *p, uint64_t lo,
               uint64_t hi)
{
  struct extents_clip *c = opaque;
  struct ncache_export *nc = c->nc;
  int r;

  c->next = lo;
  c->end = hi;
  if (p->found)
    emit (c, lo, hi, bkey_is_zero (&p->key) ? NCACHE_EXTENT_ZERO : 0);
  else {
    /* A driver may describe less than asked: ask again from there. */
    while (c->result == 0 && c->next < hi) {
      uint64_t from = c->next;

      r = export_io_extents (nc, from, hi, backing_extent_cb, c);
      if (r < 0 && c->result == 0)
        c->result = r;
      if (c->result == 0 && c->next == from)
        c->result = -EIO;    /* nothing reported: broken driver */
    }
  }
  if (c->result < 0)
    return c->result;
  return c->result > 0 ? PIECE_WALK_STOP : 0;
}

int
request_extents (struct ncache_export *nc, uint64_t count, uint64_t offset,
                 bool req_one, ncache_extent_fn fn, void *opaque)
{
  struct extents_clip c = {
    .nc = nc, .req_one = req_one, .fn = fn, .opaque = opaque,
  };
  int r;

  r = piece_walk (nc, offset, count, extents_piece, NULL, &c);
  if (r < 0)
    return r;
  return c.result < 0 ? c.result : 0;
}

/* request_state_extents' walk: neighbouring pieces with the same state
 * are reported as one extent.
 */
struct state_run {
  uint64_t lo, hi;
  uint32_t flags;
  bool req_one;
  ncache_extent_fn fn;
  void *opaque;
  int result;                   /* fn's first non-zero, or req_one's stop */
  bool stopped;
};

static int
state_piece (void *opaque, const struct btree_piece *p, uint64_t lo,
             uint64_t hi)
{
  struct state_run *run = opaque;
  uint32_t f = 0;

  if (p->found) {
    f = NCACHE_STATE_CACHED;
    if (p->key.flags & NC_KEY_DIRTY)
      f |= NCACHE_STATE_DIRTY;
    if (bkey_is_zero (&p->key))
      f |= NCACHE_STATE_ZERO;
  }
  if (run->hi > run->lo && f != run->flags) {
    int r = run->fn (run->opaque, run->lo, run->hi - run->lo, run->flags);

    if (r != 0 || run->req_one) {
      run->result = r;
      run->stopped = true;
      return r < 0 ? r : PIECE_WALK_STOP;
    }
    run->lo = lo;
  }
  else if (run->hi == run->lo)
    run->lo = lo;
  run->flags = f;
  run->hi = hi;
  return 0;
}

/* nbdcache:state: what the index holds, per extent (no backing call). */
int
request_state_extents (struct ncache_export *nc, uint64_t count,
                       uint64_t offset,
                       bool req_one, ncache_extent_fn fn, void *opaque)
{
  struct state_run run = {
    .lo = offset, .hi = offset, .req_one = req_one,
    .fn = fn, .opaque = opaque,
  };
  int r;

  r = piece_walk (nc, offset, count, state_piece, NULL, &run);
  if (r < 0)
    return r;
  if (run.stopped)
    return 0;
  if (run.hi > run.lo) {
    r = fn (opaque, run.lo, run.hi - run.lo, run.flags);
    if (r < 0)
      return r;
  }
  return 0;
}
