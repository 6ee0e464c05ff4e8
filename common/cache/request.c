/* request.c — the request paths of an export with a cache device.
 *
 * WHAT: READ, WRITE, FLUSH, TRIM, WRITE_ZEROES, CACHE and BLOCK_STATUS for
 * the modes writeback, writethrough and writearound — the request table
 * in doc/design.md.  cache.c has already checked ranges, flags and read-only.
 *
 * HOW, in blocks of 4 KiB (the cache's unit):
 * - READ looks the range up in the btree and serves each piece: hits from
 *   the cache device (the bucket gen is rechecked after the read; a moved
 *   gen means the data was replaced, so the piece is looked up again),
 *   ZERO keys as zeros, misses from the backing store.  A miss is promoted:
 *   a placeholder is registered by a second lookup *before* the backing
 *   read, the data is written to clean cache space, and the key is
 *   inserted only if no write, trim or zero touched the range meanwhile.
 * - WRITE works on whole blocks: a partial first or last block is read
 *   (cache or backing) and patched.  writeback: data to dirty cache space,
 *   then DIRTY keys.  writethrough: the backing store first, then clean
 *   cache space and clean keys.  writearound: the backing store, then a
 *   DELETE key over the blocks.  When the cache has no room for a
 *   writeback write (full of dirty data), the write goes around instead:
 *   never ENOSPC because the cache is full.
 * - FUA waits for the journal entry holding the keys (and the backing
 *   write is FUA where the backing got data).  FLUSH flushes the backing
 *   store if anything went to it since its last flush, then the journal
 *   (group commit): one flush covers every connection of the export.
 * - WRITE_ZEROES: partial edge blocks are written as data first; the
 *   whole blocks become a ZERO key (DIRTY in writeback: instant; clean after
 *   a backing zero in writethrough; a DELETE after a backing zero in
 *   writearound; a writeback ZERO key carries NOHOLE unless the client
 *   allowed a hole, so writeback zeroes without punching).  TRIM drops the
 *   keys of the whole blocks and queues a backing trim (trimq.c: merged,
 *   issued in batches by the export's background thread and before any
 *   flush; FUA trims go out at once).  Every backing write and zero first
 *   passes the trim queue's barrier, so an earlier trim never lands after
 *   it.
 * - A request of a stream past the sequential cutoff (seqcut.c) bypasses
 *   the cache: a read is not promoted, a write goes around.
 * - Writeback-mode writes first pass writeback's throttle (backpressure
 *   above the dirty limit), before they take the range lock that
 *   writeback itself needs.
 * - nbdcache:state reports, per extent, cached / dirty / zero from the
 *   index alone.
 *
 * INVARIANTS:
 * - Data reaches the cache device before the key that points at it is
 *   inserted; an open reference keeps the bucket from being reused until
 *   then.
 * - Writes, zeroes and trims of an export hold a range lock over their
 *   blocks, so a read-modify-write never interleaves with another write
 *   to the same block.  Reads take no range lock.
 * - A clean key is never inserted for data the backing store has not
 *   been sent (writethrough writes the backing first).
 * THREADS AND LOCKS: any number of threads; the range lock, then the btree
 * lock (inside btree_*), never the other way.  Data I/O with no lock held
 * except the range lock.
 * FAILURE: -EIO from either device (already logged by the driver);
 * -ENOTSUP for a FAST_ZERO that would not be fast.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backing.h"
#include "bkey.h"
#include "btree.h"
#include "bucket.h"
#include "cache-internal.h"
#include "cdev.h"
#include "clock.h"
#include "compiler.h"
#include "journal.h"
#include "log.h"
#include "ondisk.h"
#include "seqcut.h"
#include "trimq.h"
#include "writeback.h"

#define BLK ((uint64_t) NC_BLOCK_BYTES)
#define LOOKUP_PIECES 32
/* Unaligned buffers go through bounce buffers of at most this size. */
#define BOUNCE_BYTES (256u * 1024)
/* A ZERO key is at most this many blocks (the size field is 32 bits). */
#define MAX_ZERO_KEY_BLOCKS (UINT32_C (1) << 30)

static inline uint64_t div_round_up (uint64_t a, uint64_t b)
{ return (a + b - 1) / b; }


/* ---- the range lock ---- */

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

void
range_lock_take (struct range_lock *rl, struct range_lock_entry *e,
                 uint64_t start, uint64_t end)
{
  struct range_lock_entry *a;

  pthread_mutex_lock (&rl->lock);
 again:
  for (a = rl->active; a != NULL; a = a->next)
    if (a->start < end && start < a->end) {
      pthread_cond_wait (&rl->cond, &rl->lock);
      goto again;
    }
  e->start = start;
  e->end = end;
  e->next = rl->active;
  rl->active = e;
  pthread_mutex_unlock (&rl->lock);
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

/* ---- cache device data I/O ---- */

static uint64_t
data_offset (const struct ncache_device *dev, uint32_t bucket,
             uint32_t offset_blocks)
{
  return ((uint64_t) bucket * dev->sb.bucket_blocks + offset_blocks) * BLK;
}

/* The cdev contract wants block-aligned buffers (O_DIRECT or not);
 * nbdcached's request buffers are, nbdkit's may not be.
 */
static bool
io_aligned (const struct cdev *cd, const void *buf)
{
  (void) cd;
  return ((uintptr_t) buf % NC_BLOCK_BYTES) == 0;
}

/* Read `len` bytes starting `skip` bytes into the cache-device blocks that
 * begin at byte dev_off.  Bounces what O_DIRECT cannot take directly.
 */
static int
dev_read (struct ncache_device *dev, uint64_t dev_off, uint64_t skip,
          uint8_t *dst, uint64_t len)
{
  struct cdev *cd = dev->cd;
  uint8_t *bounce = NULL;
  int r = 0;

  dev_off += skip / BLK * BLK;
  skip %= BLK;
  if (skip == 0 && len % BLK == 0 && io_aligned (cd, dst))
    return cdev_pread (cd, dst, len, dev_off);

  bounce = cdev_alloc_buffer (BOUNCE_BYTES);
  if (bounce == NULL)
    return -ENOMEM;
  while (len > 0) {
    uint64_t blocks = MIN (div_round_up (skip + len, BLK), BOUNCE_BYTES / BLK);
    uint64_t n = MIN (len, blocks * BLK - skip);

    r = cdev_pread (cd, bounce, blocks * BLK, dev_off);
    if (r < 0)
      break;
    memcpy (dst, bounce + skip, n);
    dst += n;
    len -= n;
    dev_off += blocks * BLK;
    skip = 0;
  }
  free (bounce);
  return r;
}

/* Write whole blocks from src to byte dev_off. */
static int
dev_write (struct ncache_device *dev, uint64_t dev_off, const uint8_t *src,
           uint64_t nblocks)
{
  struct cdev *cd = dev->cd;
  uint8_t *bounce;
  int r = 0;

  if (io_aligned (cd, src))
    return cdev_pwrite (cd, src, nblocks * BLK, dev_off, 0);
  bounce = cdev_alloc_buffer (BOUNCE_BYTES);
  if (bounce == NULL)
    return -ENOMEM;
  while (nblocks > 0 && r == 0) {
    uint64_t n = MIN (nblocks, BOUNCE_BYTES / BLK);

    memcpy (bounce, src, n * BLK);
    r = cdev_pwrite (cd, bounce, n * BLK, dev_off, 0);
    src += n * BLK;
    dev_off += n * BLK;
    nblocks -= n;
  }
  free (bounce);
  return r;
}

/* ---- keys collected by a write ---- */

struct key_list {
  struct nc_key inline_keys[8];
  struct nc_key *keys;
  size_t len, cap;
};

static void
key_list_init (struct key_list *kl)
{
  kl->keys = kl->inline_keys;
  kl->len = 0;
  kl->cap = ARRAY_SIZE (kl->inline_keys);
}

static int
key_list_add (struct key_list *kl, const struct nc_key *k)
{
  if (kl->len == kl->cap) {
    size_t cap = kl->cap * 2;
    struct nc_key *keys = malloc (cap * sizeof *keys);

    if (keys == NULL)
      return -ENOMEM;
    memcpy (keys, kl->keys, kl->len * sizeof *keys);
    if (kl->keys != kl->inline_keys)
      free (kl->keys);
    kl->keys = keys;
    kl->cap = cap;
  }
  kl->keys[kl->len++] = *k;
  return 0;
}

/* Release the open references of the data keys in kl (after they were
 * inserted, or when they are abandoned), and free the list.
 */
static void
key_list_release (struct ncache *nc, struct key_list *kl)
{
  size_t i;

  for (i = 0; i < kl->len; i++)
    if (bkey_has_data (&kl->keys[i]))
      bucket_put_open (nc->dev->bs, kl->keys[i].bucket);
  if (kl->keys != kl->inline_keys)
    free (kl->keys);
  key_list_init (kl);
}

static void
make_key (struct ncache *nc, struct nc_key *k, uint64_t start, uint64_t end,
          uint8_t flags)
{
  memset (k, 0, sizeof *k);
  k->export_id = nc->export_id;
  k->end = end;
  k->size = (uint32_t) (end - start);
  k->flags = flags;
}

/* Allocate space from write point wp for blocks [start, start + nblocks)
 * of the export, write src there, and add the keys to kl.  -ENOSPC /
 * -EAGAIN from the allocator are returned as they are (the caller goes
 * around the cache); the keys already added stay in kl.
 */
static int
cache_write_blocks (struct ncache *nc, enum bucket_wp wp, uint8_t flags,
                    uint64_t start, const uint8_t *src, uint64_t nblocks,
                    struct key_list *kl)
{
  struct ncache_device *dev = nc->dev;

  while (nblocks > 0) {
    struct bucket_extent ext;
    struct nc_key k;
    uint32_t want = (uint32_t) MIN (nblocks, dev->sb.bucket_blocks);
    int r;

    r = bucket_alloc_data (dev->bs, wp, want, &ext);
    if (r == -EAGAIN) {
      r = btree_sweep (dev->bt);
      if (r == 0)
        r = bucket_alloc_data (dev->bs, wp, want, &ext);
      if (r == -EAGAIN)
        r = -ENOSPC;
    }
    if (r < 0)
      return r;
    make_key (nc, &k, start, start + ext.nblocks, flags);
    k.bucket = ext.bucket;
    k.offset = ext.offset;
    k.gen = ext.gen;
    r = key_list_add (kl, &k);
    if (r < 0) {
      bucket_put_open (dev->bs, ext.bucket);
      return r;
    }
    r = dev_write (dev, data_offset (dev, ext.bucket, ext.offset), src,
                   ext.nblocks);
    if (r < 0)
      return r;
    start += ext.nblocks;
    src += ext.nblocks * BLK;
    nblocks -= ext.nblocks;
  }
  return 0;
}

/* Insert kl's keys; wait for their journal entry if fua (or if wait_cut
 * and an existing key was cut).  Releases kl either way.
 */
static int
insert_keys (struct ncache *nc, struct key_list *kl, bool fua)
{
  uint64_t seq = 0;
  bool cut = false;
  int r;

  r = btree_insert (nc->dev->bt, kl->keys, kl->len, &seq, &cut);
  key_list_release (nc, kl);
  if (r < 0)
    return r;
  journal_throttle (nc->dev->journal);
  if (fua)
    r = journal_wait (nc->dev->journal, seq);
  return r;
}

/* Drop whatever the cache holds for blocks [start, end) (journaled).
 * *seq / *cut as btree_insert.
 */
static int
invalidate (struct ncache *nc, uint64_t start, uint64_t end, uint64_t *seq,
            bool *cut)
{
  struct nc_key k;

  *cut = false;
  if (start >= end)
    return 0;
  /* A DELETE key may be as long as the export; its size field is 32-bit. */
  while (start < end) {
    uint64_t e = MIN (end, start + MAX_ZERO_KEY_BLOCKS);
    bool c = false;
    int r;

    make_key (nc, &k, start, e, NC_KEY_DELETE);
    r = btree_insert (nc->dev->bt, &k, 1, seq, &c);
    if (r < 0)
      return r;
    *cut |= c;
    start = e;
  }
  return 0;
}

/* ---- reads ---- */

static bool
may_promote (struct ncache *nc)
{
  struct bucket_usage u;

  bucket_get_usage (nc->dev->bs, &u);
  /* Above ~95% of the cache pinned by dirty data and nodes there is
   * nothing left to evict for clean data: stop promoting.
   */
  return (uint64_t) (u.dirty_buckets + u.btree) * 100 < (uint64_t) u.nbuckets * 95;
}

/* Read bytes [lo, hi) of the export from the backing store into dst,
 * clipped to the store (blocks past its end read as zeros).
 */
static int
backing_read_bytes (struct ncache *nc, uint8_t *dst, uint64_t lo, uint64_t hi)
{
  uint64_t size = nc->caps.size_bytes;
  uint64_t n = hi <= size ? hi - lo : (lo < size ? size - lo : 0);
  int r = 0;

  /* A queued trim over the range goes out first (see trimq.h). */
  if (n > 0 && trimq_overlaps (nc->tq, lo, n)) {
    r = trimq_issue (nc->tq, true, request_issue_trim, nc);
    if (r < 0)
      log_debug ("export '%s': a queued trim failed: %s (trims are "
                 "advisory)", nc->name, strerror (-r));
    r = 0;
  }
  if (n > 0)
    r = backing_pread (nc->backing, dst, n, lo);
  if (r == 0 && n < hi - lo)
    memset (dst + n, 0, hi - lo - n);
  return r;
}

/* A miss over blocks [ps, pe): serve bytes [lo, hi) into dst, promoting
 * the blocks into the cache on the way when possible.
 */
static int
read_miss (struct ncache *nc, uint64_t ps, uint64_t pe, uint8_t *dst,
           uint64_t lo, uint64_t hi, bool promote)
{
  struct ncache_device *dev = nc->dev;
  uint8_t *bounce = NULL;
  int r = 0;

  if (!promote || !may_promote (nc)) {
    STAT_ADD (nc, nr_bypasses, 1);
    return backing_read_bytes (nc, dst, lo, hi);
  }

  while (ps < pe && r == 0) {
    struct btree_piece piece;
    struct bucket_extent ext;
    uint64_t ph = 0, cs = ps;
    uint64_t ce = MIN (pe, ps + dev->sb.bucket_blocks);
    uint64_t blo, bhi, nb;
    struct nc_key k;
    bool inserted = false;

    /* The placeholder goes in before the backing read: a write that lands
     * after this point kills it, so stale data is never inserted.
     */
    r = btree_lookup (dev->bt, nc->export_id, cs, ce, &piece, 1, &ph);
    if (r < 0)
      break;
    if (piece.found || piece.end != ce) {
      /* Someone wrote part of it since our lookup: just read through. */
      btree_placeholder_drop (dev->bt, ph);
      blo = MAX (lo, cs * BLK);
      bhi = MIN (hi, ce * BLK);
      r = backing_read_bytes (nc, dst + (blo - lo), blo, bhi);
      ps = ce;
      continue;
    }
    r = bucket_alloc_data (dev->bs, WP_CLEAN, (uint32_t) (ce - cs), &ext);
    if (r < 0) {
      /* No room for clean data: serve without promoting. */
      btree_placeholder_drop (dev->bt, ph);
      blo = MAX (lo, cs * BLK);
      bhi = MIN (hi, ce * BLK);
      r = backing_read_bytes (nc, dst + (blo - lo), blo, bhi);
      STAT_ADD (nc, nr_bypasses, 1);
      ps = ce;
      continue;
    }
    nb = ext.nblocks;
    if (bounce == NULL)
      bounce = cdev_alloc_buffer (dev->sb.bucket_blocks * BLK);
    if (bounce == NULL) {
      btree_placeholder_drop (dev->bt, ph);
      bucket_put_open (dev->bs, ext.bucket);
      r = -ENOMEM;
      break;
    }
    r = backing_read_bytes (nc, bounce, cs * BLK, (cs + nb) * BLK);
    if (r == 0) {
      blo = MAX (lo, cs * BLK);
      bhi = MIN (hi, (cs + nb) * BLK);
      if (blo < bhi)
        memcpy (dst + (blo - lo), bounce + (blo - cs * BLK), bhi - blo);
      if (cdev_pwrite (dev->cd, bounce, nb * BLK,
                       data_offset (dev, ext.bucket, ext.offset), 0) == 0) {
        make_key (nc, &k, cs, cs + nb, 0);
        k.bucket = ext.bucket;
        k.offset = ext.offset;
        k.gen = ext.gen;
        r = btree_insert_promoted (dev->bt, ph, &k, &inserted, NULL);
        ph = 0;
        if (inserted)
          STAT_ADD (nc, nr_promotions, 1);
      }
    }
    if (ph != 0)
      btree_placeholder_drop (dev->bt, ph);
    bucket_put_open (dev->bs, ext.bucket);
    ps = cs + nb;
  }
  free (bounce);
  return r;
}

/* A hit: serve bytes [lo, hi) of piece p into dst.  -ESTALE if the bucket
 * was reused during the read (look the range up again).
 */
static int
read_hit (struct ncache *nc, const struct btree_piece *p, uint8_t *dst,
          uint64_t lo, uint64_t hi)
{
  struct ncache_device *dev = nc->dev;
  int r;

  if (bkey_is_zero (&p->key)) {
    memset (dst, 0, hi - lo);
    return 0;
  }
  r = dev_read (dev, data_offset (dev, p->key.bucket, p->key.offset),
                lo - p->start * BLK, dst, hi - lo);
  if (r < 0)
    return r;
  if (bucket_gen (dev->bs, p->key.bucket) != p->key.gen)
    return -ESTALE;
  bucket_hit (dev->bs, p->key.bucket);
  return 0;
}

/* Read bytes [offset, offset + count) into buf.  promote: misses go into
 * the cache (client reads and CACHE); false for read-modify-write.
 */
static int
read_range (struct ncache *nc, uint8_t *buf, uint64_t count, uint64_t offset,
            bool promote, bool count_stats)
{
  struct ncache_device *dev = nc->dev;
  uint64_t pos = offset, end = offset + count;
  struct btree_piece pieces[LOOKUP_PIECES];

  while (pos < end) {
    int n, i, r;

    n = btree_lookup (dev->bt, nc->export_id, pos / BLK,
                      div_round_up (end, BLK), pieces, LOOKUP_PIECES, NULL);
    if (n < 0)
      return n;
    for (i = 0; i < n; i++) {
      const struct btree_piece *p = &pieces[i];
      uint64_t lo = MAX (pos, p->start * BLK);
      uint64_t hi = MIN (end, p->end * BLK);

      if (lo >= hi)
        continue;
      if (p->found) {
        r = read_hit (nc, p, buf + (lo - offset), lo, hi);
        if (r == -ESTALE) {
          pos = lo;             /* replaced under us: look again */
          break;
        }
        if (count_stats)
          STAT_ADD (nc, nr_hits, 1);
      }
      else {
        r = read_miss (nc, p->start, p->end, buf + (lo - offset), lo, hi,
                       promote);
        if (count_stats)
          STAT_ADD (nc, nr_misses, 1);
      }
      if (r < 0)
        return r;
      pos = hi;
    }
    bucket_io (dev->bs);
  }
  return 0;
}

/* A request of a stream past the sequential cutoff bypasses the cache. */
static bool
sequential_bypass (struct ncache *nc, uint64_t offset, uint64_t count)
{
  if (nc->seq == NULL || !seqcut_check (nc->seq, offset, count))
    return false;
  STAT_ADD (nc, nr_seq_bypasses, 1);
  return true;
}

int
request_pread (struct ncache *nc, void *buf, size_t count, uint64_t offset)
{
  bool promote = !sequential_bypass (nc, offset, count);

  writeback_note_io (nc->wb);
  return read_range (nc, buf, count, offset, promote, true);
}

int
request_cache (struct ncache *nc, uint64_t count, uint64_t offset)
{
  uint64_t chunk = MIN (count, (uint64_t) 4 << 20);
  uint8_t *buf;
  int r = 0;

  if (count == 0)
    return 0;
  buf = cdev_alloc_buffer (chunk);
  if (buf == NULL)
    return -ENOMEM;
  while (count > 0 && r == 0) {
    uint64_t n = MIN (count, chunk);

    r = read_range (nc, buf, n, offset, true, false);
    offset += n;
    count -= n;
  }
  free (buf);
  return r;
}

/* ---- writes ---- */

/* A write prepared as whole blocks [b0, b1): the partial first and last
 * blocks patched in bounce buffers, the middle straight from the caller.
 */
struct block_write {
  uint64_t b0, b1;              /* blocks */
  uint8_t *head, *tail;         /* patched edge blocks, or NULL */
  const uint8_t *mid;           /* blocks [m0, m1) */
  uint64_t m0, m1;
};

static void
block_write_free (struct block_write *w)
{
  free (w->head);
  free (w->tail);
}

/* Read block blk and patch bytes [lo, hi) of the export into it from src
 * (or zeros when src is NULL).
 */
static int
patch_block (struct ncache *nc, uint64_t blk, const uint8_t *src, uint64_t lo,
             uint64_t hi, uint8_t **out)
{
  uint8_t *b = cdev_alloc_buffer (BLK);
  int r;

  if (b == NULL)
    return -ENOMEM;
  r = read_range (nc, b, BLK, blk * BLK, false, false);
  if (r < 0) {
    free (b);
    return r;
  }
  if (src)
    memcpy (b + (lo - blk * BLK), src, hi - lo);
  else
    memset (b + (lo - blk * BLK), 0, hi - lo);
  *out = b;
  return 0;
}

/* src NULL = zeros (only for the edges of WRITE_ZEROES: then the middle
 * is not used).  Blocks past the end of the export are zero-padded by the
 * read.  For reads, [offset, offset+count) lies within the export.
 */
static int
block_write_prepare (struct ncache *nc, const uint8_t *src, uint64_t count,
                     uint64_t offset, struct block_write *w)
{
  uint64_t end = offset + count;
  int r;

  memset (w, 0, sizeof *w);
  w->b0 = offset / BLK;
  w->b1 = div_round_up (end, BLK);
  w->m0 = w->b0;
  w->m1 = w->b1;
  if (offset % BLK != 0 || end < (w->b0 + 1) * BLK) {
    uint64_t hi = MIN (end, (w->b0 + 1) * BLK);
    r = patch_block (nc, w->b0, src, offset, hi, &w->head);
    if (r < 0)
      return r;
    w->m0 = w->b0 + 1;
  }
  if (w->b1 - 1 >= w->m0 && end % BLK != 0) {
    uint64_t lo = (w->b1 - 1) * BLK;
    r = patch_block (nc, w->b1 - 1, src ? src + (lo - offset) : NULL, lo, end,
                     &w->tail);
    if (r < 0) {
      block_write_free (w);
      return r;
    }
    w->m1 = w->b1 - 1;
  }
  if (src)
    w->mid = src + (w->m0 * BLK - offset);
  return 0;
}

/* Write the prepared blocks into the cache (data keys with flags). */
static int
block_write_cache (struct ncache *nc, const struct block_write *w,
                   enum bucket_wp wp, uint8_t flags, struct key_list *kl)
{
  int r = 0;

  if (w->head)
    r = cache_write_blocks (nc, wp, flags, w->b0, w->head, 1, kl);
  if (r == 0 && w->m1 > w->m0 && w->mid)
    r = cache_write_blocks (nc, wp, flags, w->m0, w->mid, w->m1 - w->m0, kl);
  if (r == 0 && w->tail)
    r = cache_write_blocks (nc, wp, flags, w->b1 - 1, w->tail, 1, kl);
  return r;
}

/* Write bytes [lo, hi) to the backing store, clipped to its size. */
static int
backing_write_bytes (struct ncache *nc, const uint8_t *src, uint64_t lo,
                     uint64_t hi, uint32_t bflags)
{
  uint64_t size = nc->caps.size_bytes;

  if (lo >= size)
    return 0;
  hi = MIN (hi, size);
  /* An earlier queued trim must not land after this write. */
  trimq_write_barrier (nc->tq, lo, hi - lo);
  __atomic_store_n (&nc->backing_unflushed, true, __ATOMIC_RELAXED);
  return backing_pwrite (nc->backing, src, hi - lo, lo, bflags);
}

/* Write the prepared blocks to the backing store (whole blocks, so what
 * the cache held around a partial write goes along, newest first).
 */
static int
block_write_backing (struct ncache *nc, const struct block_write *w,
                     uint32_t bflags)
{
  int r = 0;

  if (w->head)
    r = backing_write_bytes (nc, w->head, w->b0 * BLK, (w->b0 + 1) * BLK,
                             bflags);
  if (r == 0 && w->m1 > w->m0 && w->mid)
    r = backing_write_bytes (nc, w->mid, w->m0 * BLK, w->m1 * BLK, bflags);
  if (r == 0 && w->tail)
    r = backing_write_bytes (nc, w->tail, (w->b1 - 1) * BLK, w->b1 * BLK,
                             bflags);
  return r;
}

/* Around the cache: the backing store gets the blocks, the cache forgets
 * them.  With FUA the forgetting is durable before we return — and so is
 * every earlier forgetting still in the open journal entry: an older
 * write's invalidation may be what keeps a stale cached copy from
 * shadowing this data after a crash, even when this one cut nothing.
 */
static int
write_around (struct ncache *nc, const struct block_write *w, bool fua)
{
  uint64_t seq = 0;
  bool cut;
  int r;

  r = block_write_backing (nc, w, fua ? BACKING_FUA : 0);
  if (r < 0)
    return r;
  r = invalidate (nc, w->b0, w->b1, &seq, &cut);
  if (r == 0 && fua)
    r = journal_flush (nc->dev->journal);
  return r;
}

/* The mode's write of prepared blocks (around the cache if bypass). */
static int
write_blocks (struct ncache *nc, const struct block_write *w, bool fua,
              bool bypass)
{
  struct key_list kl;
  int r;

  key_list_init (&kl);
  if (bypass)
    return write_around (nc, w, fua);
  switch (nc->mode) {
  case NCACHE_MODE_WRITEBACK:
    r = block_write_cache (nc, w, WP_DIRTY, NC_KEY_DIRTY, &kl);
    if (r == -ENOSPC) {
      key_list_release (nc, &kl);
      STAT_ADD (nc, nr_bypasses, 1);
      return write_around (nc, w, fua);
    }
    if (r < 0) {
      key_list_release (nc, &kl);
      return r;
    }
    return insert_keys (nc, &kl, fua);

  case NCACHE_MODE_WRITETHROUGH:
    r = block_write_backing (nc, w, fua ? BACKING_FUA : 0);
    if (r < 0)
      return r;
    r = block_write_cache (nc, w, WP_CLEAN, 0, &kl);
    if (r == -ENOSPC) {
      uint64_t seq = 0;
      bool cut;

      key_list_release (nc, &kl);
      STAT_ADD (nc, nr_bypasses, 1);
      r = invalidate (nc, w->b0, w->b1, &seq, &cut);
      if (r == 0 && fua)
        r = journal_flush (nc->dev->journal);
      return r;
    }
    if (r < 0) {
      key_list_release (nc, &kl);
      return r;
    }
    return insert_keys (nc, &kl, fua);

  case NCACHE_MODE_WRITEAROUND:
  case NCACHE_MODE_NONE:
  default:
    return write_around (nc, w, fua);
  }
}

int
request_pwrite (struct ncache *nc, const void *buf, size_t count,
                uint64_t offset, uint32_t flags)
{
  struct range_lock_entry rle;
  struct block_write w;
  bool fua = (flags & NCACHE_FUA) != 0;
  bool bypass;
  int r;

  if (count == 0)
    return fua ? request_flush (nc) : 0;
  writeback_note_io (nc->wb);
  bypass = sequential_bypass (nc, offset, count);
  /* Backpressure before the range lock: writeback needs range locks to
   * make progress.
   */
  if (nc->mode == NCACHE_MODE_WRITEBACK && !bypass)
    writeback_throttle (nc->wb);
  range_lock_take (&nc->rl, &rle, offset / BLK,
                   div_round_up (offset + count, BLK));
  r = block_write_prepare (nc, buf, count, offset, &w);
  if (r == 0) {
    r = write_blocks (nc, &w, fua, bypass);
    block_write_free (&w);
  }
  range_lock_release (&nc->rl, &rle);
  return r;
}

int
request_flush (struct ncache *nc)
{
  int r;

  /* Queued trims go out first, so the flush covers them too. */
  if (trimq_len (nc->tq) > 0) {
    r = trimq_issue (nc->tq, true, request_issue_trim, nc);
    if (r < 0)
      log_debug ("export '%s': a queued trim failed: %s (trims are "
                 "advisory)", nc->name, strerror (-r));
  }
  /* The backing store first: a clean key must never be durable for data
   * the backing store could still lose.
   */
  if (__atomic_exchange_n (&nc->backing_unflushed, false, __ATOMIC_ACQ_REL)) {
    r = backing_flush (nc->backing);
    if (r < 0) {
      __atomic_store_n (&nc->backing_unflushed, true, __ATOMIC_RELAXED);
      return r;
    }
  }
  return journal_flush (nc->dev->journal);
}

/* ---- trim and zero ---- */

int
request_trim (struct ncache *nc, uint64_t count, uint64_t offset,
              uint32_t flags)
{
  struct range_lock_entry rle;
  uint64_t b0 = div_round_up (offset, BLK);
  uint64_t b1 = (offset + count) / BLK;
  uint64_t seq = 0;
  bool cut = false;
  int r;

  /* The last block of an export whose size is not a multiple of 4 KiB is
   * whole for the cache when the trim reaches the end.
   */
  if (offset + count == nc->caps.size_bytes)
    b1 = div_round_up (offset + count, BLK);
  if (count == 0)
    return (flags & NCACHE_FUA) ? request_flush (nc) : 0;

  range_lock_take (&nc->rl, &rle, offset / BLK,
                   div_round_up (offset + count, BLK));
  /* The cache forgets whole blocks; partial edge blocks keep their data
   * (a trim is advisory).
   */
  r = invalidate (nc, b0, b1 > b0 ? b1 : b0, &seq, &cut);
  /* The backing trim is queued (merged, batched by the export's
   * background thread, issued before any flush); FUA issues it now.
   */
  if (r == 0 && ((flags & NCACHE_FUA) ||
                 trimq_add (nc->tq, offset, count, clock_now_ms ()) < 0)) {
    trimq_write_barrier (nc->tq, offset, count);
    __atomic_store_n (&nc->backing_unflushed, true, __ATOMIC_RELAXED);
    r = backing_trim (nc->backing, count, offset,
                      (flags & NCACHE_FUA) ? BACKING_FUA : 0);
  }
  if (r == 0 && (flags & NCACHE_FUA))
    r = journal_flush (nc->dev->journal);
  range_lock_release (&nc->rl, &rle);
  return r;
}

int
request_issue_trim (void *opaque, uint64_t offset, uint64_t count)
{
  struct ncache *nc = opaque;

  __atomic_store_n (&nc->backing_unflushed, true, __ATOMIC_RELAXED);
  return backing_trim (nc->backing, count, offset, 0);
}

/* Whole blocks [b0, b1) become ZERO keys with flags. */
static int
insert_zero_keys (struct ncache *nc, uint64_t b0, uint64_t b1, uint8_t flags,
                  bool fua)
{
  struct key_list kl;
  int r = 0;

  key_list_init (&kl);
  while (b0 < b1 && r == 0) {
    struct nc_key k;
    uint64_t e = MIN (b1, b0 + MAX_ZERO_KEY_BLOCKS);

    make_key (nc, &k, b0, e, (uint8_t) (flags | NC_KEY_ZERO));
    /* A ZERO key has no data; its bucket field carries an id that tells
     * this zero from a later identical one (btree_replace compares it).
     */
    k.bucket = __atomic_add_fetch (&nc->dev->zero_id, 1, __ATOMIC_RELAXED);
    r = key_list_add (&kl, &k);
    b0 = e;
  }
  if (r < 0) {
    key_list_release (nc, &kl);
    return r;
  }
  return insert_keys (nc, &kl, fua);
}

int
request_zero (struct ncache *nc, uint64_t count, uint64_t offset,
              uint32_t flags)
{
  struct range_lock_entry rle;
  struct block_write w;
  bool fua = (flags & NCACHE_FUA) != 0;
  uint64_t end = offset + count;
  uint64_t mb0, mb1;            /* whole blocks in the middle */
  int r;

  if (count == 0)
    return fua ? request_flush (nc) : 0;
  mb0 = div_round_up (offset, BLK);
  mb1 = end == nc->caps.size_bytes ? div_round_up (end, BLK) : end / BLK;

  if (nc->mode != NCACHE_MODE_WRITEBACK && (flags & NCACHE_FAST_ZERO)) {
    /* Only fast if the backing store zeroes fast and no edge block needs
     * data written.
     */
    if (!nc->backing->can_fast_zero || mb0 * BLK != offset ||
        (mb1 * BLK != end && end != nc->caps.size_bytes))
      return -ENOTSUP;
  }

  range_lock_take (&nc->rl, &rle, offset / BLK, div_round_up (end, BLK));
  /* Edges first: partial blocks are written as data (zeros patched in). */
  r = 0;
  if (mb0 >= mb1) {
    r = block_write_prepare (nc, NULL, count, offset, &w);
    if (r == 0) {
      r = write_blocks (nc, &w, fua, false);
      block_write_free (&w);
    }
    goto out;
  }
  if (offset < mb0 * BLK) {
    r = block_write_prepare (nc, NULL, mb0 * BLK - offset, offset, &w);
    if (r == 0) {
      r = write_blocks (nc, &w, false, false);
      block_write_free (&w);
    }
  }
  if (r == 0 && mb1 * BLK < end) {
    r = block_write_prepare (nc, NULL, end - mb1 * BLK, mb1 * BLK, &w);
    if (r == 0) {
      r = write_blocks (nc, &w, false, false);
      block_write_free (&w);
    }
  }
  if (r < 0)
    goto out;

  /* The whole blocks. */
  switch (nc->mode) {
  case NCACHE_MODE_WRITEBACK:
    /* Written back later as a backing zero: punched unless NO_HOLE. */
    r = insert_zero_keys (nc, mb0, mb1,
                          (uint8_t) (NC_KEY_DIRTY |
                                     ((flags & NCACHE_MAY_TRIM)
                                      ? 0 : NC_KEY_NOHOLE)), fua);
    break;
  case NCACHE_MODE_WRITETHROUGH:
  case NCACHE_MODE_WRITEAROUND:
  case NCACHE_MODE_NONE:
  default: {
    uint64_t lo = mb0 * BLK, hi = MIN (mb1 * BLK, nc->caps.size_bytes);
    uint32_t bflags = 0;

    if (flags & NCACHE_FUA) bflags |= BACKING_FUA;
    if (flags & NCACHE_MAY_TRIM) bflags |= BACKING_MAY_TRIM;
    if (flags & NCACHE_FAST_ZERO) bflags |= BACKING_FAST;
    trimq_write_barrier (nc->tq, lo, hi - lo);
    __atomic_store_n (&nc->backing_unflushed, true, __ATOMIC_RELAXED);
    r = backing_zero (nc->backing, hi - lo, lo, bflags);
    if (r < 0)
      break;
    if (nc->mode == NCACHE_MODE_WRITETHROUGH)
      r = insert_zero_keys (nc, mb0, mb1, 0, fua);
    else {
      uint64_t seq = 0;
      bool cut;

      r = invalidate (nc, mb0, mb1, &seq, &cut);
      if (r == 0 && fua)
        r = journal_flush (nc->dev->journal);
    }
    break;
  }
  }
  /* FUA on the edges: the middle's wait covered the same journal or
   * later; the backing writes of the edges were not FUA, so flush them.
   */
  if (r == 0 && fua && (offset < mb0 * BLK || mb1 * BLK < end))
    r = request_flush (nc);
 out:
  range_lock_release (&nc->rl, &rle);
  return r;
}

/* ---- block status ---- */

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
