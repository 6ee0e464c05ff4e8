/* SPDX-License-Identifier: BSD-3-Clause */
/* request-async-write.c — writeback WRITEs whose cache-device writes go
 * through an event loop's ring (ncache_pwrite_async, cache.h).
 *
 * WHAT: request_pwrite_async decides without waiting whether a WRITE can
 * take the easy, common writeback case, and if so allocates its space,
 * takes its range lock and queues its data writes on the ring;
 * request_pwrite_async_done, once they all completed, does the rest of
 * request.c's writeback path (data checksums, DIRTY keys into the index,
 * the open references and the range lock released, writeback's idle
 * clock and the sequential stream told).
 * WHY: through the worker pool each 4 KiB write cost three context
 * switches (loop -> worker, the worker's sleep in its synchronous
 * O_DIRECT pwrite, worker -> loop) and the device saw few writes at a
 * time; the ring queues a parse batch's writes with one system call and
 * no thread (the same disease and cure as the hits: server/devring.c,
 * where the measurements are).
 * THE EASY CASE, checked before anything changes (else -EAGAIN and the
 * caller runs request_pwrite on a worker, unchanged): the mode writeback
 * (the gate's, read by cache.c), no FUA (its journal wait would block
 * the loop), an O_DIRECT cache device, whole 4 KiB blocks from an
 * aligned buffer, at most RING_WRITE_MAX_BYTES, room on the ring, a stream that would not pass the
 * sequential cutoff, writeback not over its dirty limit (its throttle
 * would wait), the journal's open entry not over its throttle, the range
 * lock free (tried), and space from memory alone
 * (bucket_alloc_data_quick: an open write point or a FREE bucket; no
 * eviction, flush or sweep).  The last two are the only side effects
 * before the ring, and a refusal after them undoes both (the open
 * references put, as request.c does when a write fails).
 * THE COMPLETION does what request.c's insert_keys does for DIRTY keys
 * (no backsync: dirty keys rely on nothing in the backing store; a cut
 * is noted for ORDERING rule 1), with the index tried, not waited for
 * (btree_insert_nowait: no node read, no split, no node write).  A
 * failed write, or an index that would wait, abandons the space (puts
 * the references, releases the range lock) and returns -EAGAIN: the
 * caller redoes the whole WRITE the blocking way, which writes it again
 * elsewhere, and reports and logs a real error.  The journal's throttle
 * is not waited for after the insert: it was checked when queued, so
 * the open entry overshoots its throttle by at most the ring's depth.
 * The sequential stream is told at completion: a stream that passes the
 * cutoff while this write is on the ring makes this one write cached
 * dirty rather than bypassed (a policy, not a promise).
 * LARGE WRITES stay with the workers.  Measured (1M sequential writes
 * QD8, O_DIRECT cache file on ext4 on virtio, 2-core VM at load 10-17,
 * alternating runs): whole 1 MiB writes on the ring 730/949/783 MB/s
 * against 954/932/875 through the pool.  A 1 MiB buffer is 256 pages,
 * more than virtio-blk's 254 segments: the block layer must split it,
 * which a non-blocking submission refuses, so io_uring handed every such
 * write to its one worker thread per file, one write after the other
 * (one iou-wrk thread busy, 0.45x of the device row against 0.60x);
 * split into 512 KiB pieces they were issued inline but the loop thread
 * then did all the submission work (pinning, ext4's direct I/O path) on
 * one CPU where several pool workers share two; in 3 pairs no better
 * than the pool.  A large write's two hand-offs cost little per byte, so
 * the pool keeps them; the cut is at cdev-file.c's "large" (256 KiB).
 * INVARIANTS: between the two calls the WRITE holds its range lock, the
 * live gate's ticket (cache.c) and an open reference on each bucket it
 * writes, exactly as request_pwrite holds them across its pwrite; its
 * keys are inserted only after every data write completed.
 * THREADS AND LOCKS: the caller's thread (one event loop); locks only
 * tried or held briefly (range lock, bucket, seqcut, journal, btree
 * mutexes), never across I/O.
 * FAILURE: -EAGAIN, never logged (the blocking path logs); an insert
 * that fails part way returns its error as insert_keys does.
 * NOT HERE: the ring (cdev-ring.c), the gate and the statistics
 * (cache.c), partial blocks, FUA, other modes (request.c).
 */
#include <config.h>

#include <errno.h>
#include <stdint.h>

#include "bkey.h"
#include "btree.h"
#include "bucket.h"
#include "cache-data.h"
#include "cache-internal.h"
#include "cdev.h"
#include "compiler.h"
#include "datacsum.h"
#include "forget.h"
#include "journal.h"
#include "ondisk.h"
#include "seqcut.h"
#include "writeback.h"

#define BLK ((uint64_t) NC_BLOCK_BYTES)
/* The largest WRITE the ring takes (LARGE WRITES above). */
#define RING_WRITE_MAX_BYTES (256u * 1024)

_Static_assert (sizeof (struct range_lock_entry) <=
                sizeof (((struct ncache_awrite *) 0)->rl_words),
                "ncache_awrite holds a range lock entry");
_Static_assert (sizeof (struct nc_key) * NCACHE_AWRITE_MAX <=
                sizeof (((struct ncache_awrite *) 0)->key_words),
                "ncache_awrite holds its keys");

static struct range_lock_entry *
aw_rle (struct ncache_awrite *w)
{
  return (struct range_lock_entry *) w->rl_words;
}

static struct nc_key *
aw_keys (struct ncache_awrite *w)
{
  return (struct nc_key *) w->key_words;
}

/* Put the open references of the keys and release the range lock. */
static void
abandon (struct ncache_export *nc, struct ncache_awrite *w)
{
  unsigned i;

  for (i = 0; i < w->nr; i++)
    bucket_put_open (nc->dev->bs, aw_keys (w)[i].bucket);
  w->nr = 0;
  range_lock_release (&nc->rl, aw_rle (w));
}

/* The checks that change nothing (THE EASY CASE above). */
static bool
easy (struct ncache_export *nc, struct cdev_ring *ring, const void *buf,
      size_t count, uint64_t offset, unsigned *max_ext)
{
  struct ncache_device *dev = nc->dev;
  uint64_t nblocks = count / BLK;

  if (!dev->cd->direct || dev->cd->ops->ring_fd == NULL || count == 0 ||
      count > RING_WRITE_MAX_BYTES || offset % BLK != 0 || count % BLK != 0 || (uintptr_t) buf % BLK != 0)
    return false;
  /* A run starts anywhere in a bucket: one extent more than it fills. */
  if (nblocks / dev->sb.bucket_blocks + 2 > NCACHE_AWRITE_MAX)
    return false;
  *max_ext = (unsigned) (nblocks / dev->sb.bucket_blocks + 2);
  if (cdev_ring_space (ring) < *max_ext)
    return false;
  if (nc->seq != NULL && seqcut_would_bypass (nc->seq, offset, count))
    return false;
  return !writeback_would_throttle (nc->wb) &&
    !journal_would_throttle (dev->journal);
}

int
request_pwrite_async (struct ncache_export *nc, struct cdev_ring *ring,
                      const void *buf, size_t count, uint64_t offset,
                      struct ncache_awrite *w, void *cookie)
{
  struct ncache_device *dev = nc->dev;
  const uint8_t *src = buf;
  uint64_t start = offset / BLK, nblocks = count / BLK;
  unsigned max_ext, i;

  if (!easy (nc, ring, buf, count, offset, &max_ext))
    return -EAGAIN;
  if (!range_lock_try (&nc->rl, aw_rle (w), start, start + nblocks))
    return -EAGAIN;
  w->nr = 0;
  w->pending = 0;
  w->err = 0;
  while (nblocks > 0) {
    struct bucket_extent ext;
    struct nc_key *k = &aw_keys (w)[w->nr];
    uint32_t want = (uint32_t) MIN (nblocks, dev->sb.bucket_blocks);

    if (w->nr == max_ext ||
        bucket_alloc_data_quick (dev->bs, WP_DIRTY, want, &ext) < 0) {
      abandon (nc, w);
      return -EAGAIN;
    }
    bkey_init (k, nc->export_id, start, start + ext.nblocks, NC_KEY_DIRTY);
    k->bucket = ext.bucket;
    k->offset = ext.offset;
    k->gen = ext.gen;
    w->nr++;
    start += ext.nblocks;
    nblocks -= ext.nblocks;
  }
  for (i = 0; i < w->nr; i++) {
    const struct nc_key *k = &aw_keys (w)[i];
    uint64_t lo = (bkey_start (k) - offset / BLK) * BLK;
    int r = cdev_ring_write (ring, dev->cd, src + lo, (uint64_t) k->size * BLK,
                             cache_data_offset (dev, k->bucket, k->offset),
                             cookie);

    if (r < 0 && i == 0) {
      abandon (nc, w);
      return -EAGAIN;
    }
    /* The space was checked and the request is whole blocks: only a
     * broken contract fails here, after earlier writes were queued.
     */
    if (r < 0) {
      w->err = -EIO;
      break;
    }
    w->pending++;
  }
  return 0;
}

int
request_pwrite_async_done (struct ncache_export *nc, const void *buf,
                           size_t count, uint64_t offset,
                           struct ncache_awrite *w)
{
  struct ncache_device *dev = nc->dev;
  const uint8_t *src = buf;
  uint64_t seq = 0;
  bool cut = false;
  unsigned i;
  int r;

  for (i = 0; i < w->nr; i++) {
    const struct nc_key *k = &aw_keys (w)[i];

    /* Before the keys can reach the journal (journal-stash.c). */
    journal_stash_put (dev->journal,
                       cache_data_offset (dev, k->bucket, k->offset) / BLK,
                       k->gen, k->size, w->err < 0 ? NULL
                       : src + (bkey_start (k) - offset / BLK) * BLK);
  }
  if (w->err < 0)
    goto redo;
  if (dev->dc != NULL)
    for (i = 0; i < w->nr; i++) {
      const struct nc_key *k = &aw_keys (w)[i];
      uint64_t lo = (bkey_start (k) - offset / BLK) * BLK;

      if (datacsum_store (dev->dc,
                          cache_data_offset (dev, k->bucket, k->offset) / BLK,
                          k->size, src + lo, NULL) < 0)
        goto redo;
    }
  r = btree_insert_nowait (dev->bt, aw_keys (w), w->nr, &seq, &cut);
  if (r == -EAGAIN)
    goto redo;
  abandon (nc, w);              /* inserted: the references go */
  if (r < 0) {
    forget_note_cut (nc, journal_open_seq (dev->journal));
    return r;
  }
  if (cut)
    forget_note_cut (nc, seq);
  writeback_note_io (nc->wb);
  if (nc->seq != NULL)
    (void) seqcut_check (nc->seq, offset, count);   /* the stream goes on */
  return 0;

 redo:
  abandon (nc, w);
  return -EAGAIN;
}
