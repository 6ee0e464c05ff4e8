/* SPDX-License-Identifier: BSD-3-Clause */
/* piece-walk.c — one walk over an export's index, piece by piece.
 *
 * WHAT: piece_walk looks bytes [offset, offset + count) of an export up in
 * the btree, a batch of pieces at a time, and hands each piece (a key, or
 * a hole in the index) to a callback clipped to the range as bytes
 * [lo, hi).  The callback may ask to look the range up again from a piece
 * (the index changed under it: a key replaced while it was read, a miss
 * another reader was promoting) or to stop.
 * WHY: a READ (request.c), BLOCK_STATUS and nbdcache:state (status.c) all
 * walk the same way; the clipping, the batching and the "look again from
 * here" rule are written once.
 * INVARIANTS: the callback sees the pieces in order, each non-empty and
 * inside the range; after PIECE_WALK_AGAIN the walk resumes at that
 * piece's lo, so no byte is skipped and none is passed twice unless asked.
 * THREADS AND LOCKS: any number of threads; no lock of its own (the btree
 * lookup takes the btree lock inside, and none is held while the callback
 * runs).
 * FAILURE: a lookup's -errno, or the first negative return of the
 * callback; PIECE_WALK_STOP ends the walk with 0.
 * NOT HERE: what a piece means to a read or a status query (the callers).
 */
#include <config.h>

#include <stdint.h>

#include "btree.h"
#include "cache-internal.h"
#include "compiler.h"
#include "ondisk.h"

#define BLK ((uint64_t) NC_BLOCK_BYTES)
#define PIECES_PER_LOOKUP 32

int
piece_walk (struct ncache_export *nc, uint64_t offset, uint64_t count,
            piece_walk_fn fn, void (*batch_done) (void *opaque),
            void *opaque)
{
  struct btree *bt = nc->dev->bt;
  struct btree_piece pieces[PIECES_PER_LOOKUP];
  uint64_t pos = offset, end = offset + count;

  while (pos < end) {
    int n, i, r;

    n = btree_lookup (bt, nc->export_id, pos / BLK, (end + BLK - 1) / BLK,
                      pieces, PIECES_PER_LOOKUP, NULL);
    if (n < 0)
      return n;
    for (i = 0; i < n; i++) {
      const struct btree_piece *p = &pieces[i];
      uint64_t lo = MAX (pos, p->start * BLK);
      uint64_t hi = MIN (end, p->end * BLK);

      if (lo >= hi)
        continue;
      r = fn (opaque, p, lo, hi);
      if (r < 0)
        return r;
      if (r == PIECE_WALK_STOP)
        return 0;
      if (r == PIECE_WALK_AGAIN) {
        pos = lo;
        break;
      }
      pos = hi;
    }
    if (batch_done != NULL)
      batch_done (opaque);
  }
  return 0;
}
