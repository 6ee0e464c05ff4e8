/* SPDX-License-Identifier: BSD-3-Clause */
/* request-hit.c — the cached-mode read paths that serve hits only,
 * without a thread that may wait: NCACHE_NOWAIT (the page cache) and a
 * ring's reads (O_DIRECT: ncache_pread_async).
 *
 * WHAT: request_pread_nowait, request_pread_async and its _done: each
 * looks the range up without waiting (btree_lookup_nowait: the index lock
 * free, every node in memory), requires every piece to be a hit, and only
 * once the data is read and its buckets' gens rechecked does what a read
 * served by the walk does (the sequential stream, writeback's idle clock,
 * bucket priorities, the hit count).
 * WHY: an event loop may call these; anything that could wait is -EAGAIN
 * before any side effect, and the caller falls back to request_pread on a
 * worker (request.c), which handles misses, promotion and errors.
 * INVARIANTS: the data returned was the key's (the gen did not move until
 * after the read completed) and verified against its data checksums (a
 * cache that has them), as in cache-data.c.
 * THREADS AND LOCKS: any thread; the index lock only tried, never held
 * across I/O.
 * FAILURE: -EAGAIN, never logged: the blocking path logs.
 * NOT HERE: misses, writes, the ring itself (cdev-ring.c).
 */
#include <config.h>

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "bkey.h"
#include "btree.h"
#include "bucket.h"
#include "cache-data.h"
#include "cache-internal.h"
#include "cdev.h"
#include "compiler.h"
#include "datacsum.h"
#include "ondisk.h"
#include "seqcut.h"
#include "writeback.h"

#define BLK ((uint64_t) NC_BLOCK_BYTES)

/* What a read served from hits alone does, as the walk would do it:
 * the stream goes on, writeback sees the I/O, the bucket clock ticks.
 * The caller has marked each bucket hit.
 */
static void
hits_served (struct ncache_export *nc, uint64_t offset, size_t count)
{
  if (nc->seq != NULL)
    (void) seqcut_check (nc->seq, offset, count);  /* the stream goes on */
  writeback_note_io (nc->wb);
  bucket_io (nc->dev->bs);
  STAT_ADD (nc, nr_hits, 1);
}

/* NCACHE_NOWAIT: at most this many pieces (keys or holes), else -EAGAIN. */
#define NOWAIT_PIECES 8

/* request_pread for a range of hits only, served without waiting: the
 * lookup must get the index lock at once and find every node in memory,
 * every piece must be a key, and every key's data must come from the
 * page cache.  Anything else is -EAGAIN before any side effect (the
 * stream detection, writeback's idle clock, priorities, statistics),
 * which happen only once the read is served, as the walk would do them.
 */
int
request_pread_nowait (struct ncache_export *nc, void *buf, size_t count,
                      uint64_t offset)
{
  struct ncache_device *dev = nc->dev;
  struct btree_piece pieces[NOWAIT_PIECES];
  uint64_t end = offset + count;
  int n, i;

  n = btree_lookup_nowait (dev->bt, nc->export_id, offset / BLK,
                           (end + BLK - 1) / BLK, pieces, NOWAIT_PIECES);
  if (n <= 0 || pieces[n - 1].end * BLK < end)
    return -EAGAIN;
  for (i = 0; i < n; i++) {
    const struct btree_piece *p = &pieces[i];
    uint64_t lo = MAX (offset, p->start * BLK), hi = MIN (end, p->end * BLK);
    uint8_t *dst = (uint8_t *) buf + (lo - offset);

    if (!p->found)
      return -EAGAIN;
    if (bkey_is_zero (&p->key))
      memset (dst, 0, hi - lo);
    else if (cache_data_read_nowait (dev, &p->key, lo - p->start * BLK, dst,
                                     hi - lo) < 0)
      return -EAGAIN;
  }
  for (i = 0; i < n; i++)
    if (!bkey_is_zero (&pieces[i].key))
      bucket_hit (dev->bs, pieces[i].key.bucket);
  hits_served (nc, offset, count);
  return 0;
}

/* Like request_pread_nowait, but the data of O_DIRECT hits is read
 * through the caller's ring: every piece a data key (zero keys and
 * misses take the blocking path), buf and the range whole blocks.
 */
int
request_pread_async (struct ncache_export *nc, struct cdev_ring *ring,
                     void *buf, size_t count, uint64_t offset,
                     struct ncache_aread *a, void *cookie)
{
  struct ncache_device *dev = nc->dev;
  struct btree_piece pieces[NCACHE_AREAD_MAX];
  uint64_t end = offset + count;
  int n, i;

  if (!dev->cd->direct || dev->cd->ops->ring_fd == NULL ||
      offset % BLK != 0 || count % BLK != 0 ||
      (uintptr_t) buf % BLK != 0)
    return -EAGAIN;
  n = btree_lookup_nowait (dev->bt, nc->export_id, offset / BLK, end / BLK,
                           pieces, NCACHE_AREAD_MAX);
  if (n <= 0 || pieces[n - 1].end * BLK < end ||
      cdev_ring_space (ring) < (unsigned) n)
    return -EAGAIN;
  for (i = 0; i < n; i++)
    if (!pieces[i].found || bkey_is_zero (&pieces[i].key))
      return -EAGAIN;
  a->nr = n;
  a->pending = 0;
  a->err = 0;
  for (i = 0; i < n; i++) {
    const struct btree_piece *p = &pieces[i];
    uint64_t lo = MAX (offset, p->start * BLK), hi = MIN (end, p->end * BLK);
    uint64_t dev_off = cache_data_offset (dev, p->key.bucket, p->key.offset)
                       + (lo - p->start * BLK);

    a->bucket[i] = p->key.bucket;
    a->gen[i] = p->key.gen;
    a->dst[i] = (uint8_t *) buf + (lo - offset);
    a->dev_block[i] = dev_off / BLK;
    a->blocks[i] = (uint32_t) ((hi - lo) / BLK);
    /* The space was checked and the request is whole blocks: only a
     * broken contract fails here, after earlier pieces were queued.
     */
    if (cdev_ring_read (ring, dev->cd, (uint8_t *) buf + (lo - offset),
                        hi - lo, dev_off, cookie) < 0) {
      a->err = -EIO;
      break;
    }
    a->pending++;
  }
  return 0;
}

int
request_pread_async_done (struct ncache_export *nc, size_t count,
                          uint64_t offset, const struct ncache_aread *a)
{
  struct ncache_device *dev = nc->dev;
  unsigned i;

  if (a->err < 0)
    return -EAGAIN;
  /* A block that does not verify: the blocking way decides (a clean one
   * is read from the backing store, a dirty one is EIO) and counts.
   */
  if (dev->dc != NULL)
    for (i = 0; i < a->nr; i++)
      if (datacsum_verify (dev->dc, a->dev_block[i], a->blocks[i],
                           a->dst[i], NULL) > 0)
        return -EAGAIN;
  for (i = 0; i < a->nr; i++)
    if (bucket_gen (dev->bs, a->bucket[i]) != a->gen[i])
      return -EAGAIN;
  for (i = 0; i < a->nr; i++)
    bucket_hit (dev->bs, a->bucket[i]);
  hits_served (nc, offset, count);
  return 0;
}

