/* SPDX-License-Identifier: BSD-3-Clause */
/* request.c — the request paths of an export with a cache device.
 *
 * WHAT: READ, WRITE, FLUSH, TRIM, WRITE_ZEROES, CACHE and BLOCK_STATUS for
 * the modes writeback, writethrough and writearound.  cache.c has already
 * checked ranges, flags and read-only.  Work is in blocks of 4 KiB (the
 * cache's unit); "forget" is ORDERING rule 1 below.
 *
 * THE MODE TABLE (doc/design.md's, with the order of every step):
 *
 * | cmd      | writeback            | writethrough          | writearound    |
 * |----------|----------------------|-----------------------|----------------|
 * | READ hit | cache data; gen rechecked after the read (moved: look again)  |
 * | READ miss| backing; promoted: placeholder before the backing read, key   |
 * |          | only if it survived and no writer holds the range (rule 3)    |
 * | WRITE    | data to DIRTY space, | forget; backing;      | forget;        |
 * |          | DIRTY keys           | data to clean space,  | backing;       |
 * |          | (full of dirty: as   | clean keys            | DELETE         |
 * |          | writearound)         | (no room: DELETE)     |                |
 * | FUA      | wait for the keys'   | backing FUA; wait for | backing FUA;   |
 * |          | journal entry        | the keys' entry       | journal flush  |
 * | FLUSH    | queued trims out; backing flush if it changed since the last  |
 * |          | one; journal flush (group commit) — the same in every mode    |
 * | ZEROES   | edges as WRITE; the  | edges as WRITE;       | edges as       |
 * |          | whole blocks a DIRTY | forget; backing zero; | WRITE; forget; |
 * |          | ZERO key (NOHOLE     | a clean ZERO key      | backing zero;  |
 * |          | unless MAY_TRIM)     |                       | DELETE         |
 * | FAST_ZERO| always fast          | only if the backing zeroes fast and no |
 * |          |                      | edge needs data, else ENOTSUP at once  |
 * | TRIM     | whole blocks only: DELETE, wait if a cut is not durable, then |
 * |          | queue the backing trim of the same blocks (FUA: issue now)    |
 * | CACHE    | read with promotion, nothing returned                         |
 * | STATUS   | ZERO keys: zero; misses: the backing's own status             |
 *
 * Partial first / last blocks of a WRITE are read (cache or backing) and
 * patched: whole blocks go everywhere.  A request of a stream past the
 * sequential cutoff (seqcut.c) bypasses the cache: a read is not
 * promoted, a write goes as writearound.  Writeback-mode writes first pass
 * writeback's throttle, before the range lock writeback itself needs.
 * Every backing read, write, zero, trim and flush goes through the
 * export's door to its backing store (export-io.c: clipping, flags, the
 * trim queue's barrier, the backsync count); trims are queued there.
 * nbdcache:state reports cached / dirty / zero per extent from the index
 * alone.  Beside this file: export-io.c (the backing store's door),
 * rangelock.c (the range lock), backsync.c (the backing stores'
 * durability, rule 2 below), status.c (BLOCK_STATUS).
 *
 * ORDERING — the promise: after any crash (process or power), what a
 * block reads is stable until someone writes it, whatever is evicted, and
 * after a drain the backing store equals what was served.  A CLEAN key
 * says "the backing store has these bytes"; a crash brings back the last
 * durable index, so that must hold for every clean key in it:
 * 1. Before the backing store changes under a block (write, zero, trim,
 *    from any mode, and writeback's own writes) no clean key that a crash
 *    could bring back may cover it.  forget: DELETE keys over every piece
 *    that is not DIRTY (over a gap a DELETE cuts nothing but kills earlier
 *    read placeholders); if any cut of this export — a clean key, a stale
 *    one whose gen bump may not be durable, or a key a dirty insert
 *    replaced — sits in a journal entry not yet durable, wait for it
 *    (request_settle_cuts; group commit shares the wait).  Nothing cached
 *    and nothing pending: no wait, no I/O.  A dead cache device fails the
 *    wait, so the backing is never changed under a key that could revive.
 *    DIRTY pieces are left to the final DELETE: they are the newest data
 *    until the new data is durable in the backing store (rule 2).
 *    Writeback settles the cuts under the range lock before writing back
 *    (a dirty key that replaced a clean one must be durable first).
 * 2. A key must never be durable before the backing data it relies on: a
 *    clean key inserted after a backing write (writethrough), a promotion
 *    of data the backing may still lose, a DELETE that drops dirty data
 *    the backing now holds.  Their inserts are bracketed by
 *    request_backsync_begin / _end; while one is in progress or not yet
 *    durable, every journal commit and every btree node write first
 *    flushes the backing store of each export of the device that
 *    completed a change since its last flush (backsync.c: generation
 *    counters make it one flush for all callers, none when nothing
 *    changed).  Writeback flushes before marking clean (same counters).
 * 3. A promotion is not inserted while a writer holds the range: with
 *    rule 1's DELETE killing older placeholders, a promoted key never
 *    carries data older than a backing write in flight.
 * COST (fio 4k random writes, QD32, 256 MiB file backing, buffered 1 GiB
 * cache file, on a shared 2-core VM, so only the ratios mean much): a
 * write over cached blocks in writethrough / writearound now waits for
 * one group commit before its backing write, and writethrough commits
 * include a backing flush.  writethrough, warm cache: ~19,700 -> ~1,900
 * IOPS; cold: ~20,300 -> ~4,900; writearound, warm: ~46,700 -> ~5,600.
 * A write over nothing cached, writeback-mode writes and reads are
 * unchanged.  Possible next step: insert writethrough's clean keys after
 * a batched backing flush (like a promotion), taking the backing flush
 * out of the commit path.
 *
 * INVARIANTS:
 * - Data reaches the cache device before the key that points at it is
 *   inserted; an open reference keeps the bucket from being reused until
 *   then.
 * - Writes, zeroes and trims of an export hold a range lock over their
 *   blocks, so a read-modify-write never interleaves with another write
 *   to the same block.  Reads take no range lock (they only look at it).
 * - nc->cut_seq only grows; backing_flushed_gen <= backing_write_gen.
 * THREADS AND LOCKS: any number of threads; the range lock, then the btree
 * lock (inside btree_*), never the other way.  Data I/O with no lock held
 * except the range lock.  dev->exports_lock, then an export's
 * backing_flush_lock (held across a backing flush), both leaves
 * otherwise; the journal's commit thread takes them in its hook.
 * FAILURE: -EIO from either device (already logged by the driver); a
 * failed backing flush fails the journal commit (retried), so nothing is
 * made durable on top of it; -ENOTSUP for a FAST_ZERO that would not be
 * fast.
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
#include "cache-data.h"
#include "cache-internal.h"
#include "cdev.h"
#include "clock.h"
#include "compiler.h"
#include "export-io.h"
#include "journal.h"
#include "log.h"
#include "ondisk.h"
#include "seqcut.h"
#include "trimq.h"
#include "writeback.h"

#define BLK ((uint64_t) NC_BLOCK_BYTES)
#define LOOKUP_PIECES 32
/* A ZERO key is at most this many blocks (the size field is 32 bits). */
#define MAX_ZERO_KEY_BLOCKS (UINT32_C (1) << 30)

static inline uint64_t div_round_up (uint64_t a, uint64_t b)
{ return (a + b - 1) / b; }


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
    r = cache_data_write (dev, &ext, src, &k);
    if (r == 0)
      r = key_list_add (kl, &k);
    if (r < 0) {
      bucket_put_open (dev->bs, ext.bucket);
      return r;
    }
    start += ext.nblocks;
    src += ext.nblocks * BLK;
    nblocks -= ext.nblocks;
  }
  return 0;
}

/* A key of this export was cut by an insert in journal entry seq. */
static void
note_cut (struct ncache *nc, uint64_t seq)
{
  uint64_t cur = __atomic_load_n (&nc->cut_seq, __ATOMIC_RELAXED);

  while (cur < seq &&
         !__atomic_compare_exchange_n (&nc->cut_seq, &cur, seq, false,
                                       __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
    ;
}

/* Insert kl's keys; wait for their journal entry if fua.  backsync: they
 * rely on backing data (clean keys after a backing write: rule 2).
 * Releases kl either way.
 */
static int
insert_keys (struct ncache *nc, struct key_list *kl, bool fua, bool backsync)
{
  uint64_t seq = 0;
  bool cut = false;
  int r;

  if (backsync)
    request_backsync_begin (nc);
  r = btree_insert (nc->dev->bt, kl->keys, kl->len, &seq, &cut);
  key_list_release (nc, kl);
  if (r < 0) {
    note_cut (nc, journal_open_seq (nc->dev->journal));
    if (backsync)
      request_backsync_end (nc, journal_open_seq (nc->dev->journal));
    return r;
  }
  if (backsync)
    request_backsync_end (nc, seq);
  if (cut)
    note_cut (nc, seq);
  journal_throttle (nc->dev->journal);
  if (fua)
    r = journal_wait (nc->dev->journal, seq);
  return r;
}

int
request_settle_cuts (struct ncache *nc)
{
  uint64_t need = __atomic_load_n (&nc->cut_seq, __ATOMIC_ACQUIRE);

  if (need > journal_durable_seq (nc->dev->journal))
    return journal_wait (nc->dev->journal, need);
  return 0;
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
    if (r < 0) {
      /* Part of it may be applied: treat it as a cut not yet durable. */
      note_cut (nc, journal_open_seq (nc->dev->journal));
      return r;
    }
    if (c)
      note_cut (nc, *seq);
    *cut |= c;
    start = e;
  }
  return 0;
}

/* After the backing change: the final DELETE over [b0, b1) (it also kills
 * placeholders registered since forget).  When it drops DIRTY data the
 * backing now holds, it relies on that backing data (rule 2).
 */
static int
invalidate_after_backing (struct ncache *nc, uint64_t b0, uint64_t b1,
                          bool dirty)
{
  uint64_t seq = 0;
  bool cut;
  int r;

  if (dirty)
    request_backsync_begin (nc);
  r = invalidate (nc, b0, b1, &seq, &cut);
  if (dirty)
    request_backsync_end (nc, r < 0 ? journal_open_seq (nc->dev->journal)
                          : seq);
  return r;
}

/* ORDERING rule 1: the backing store is about to change under blocks
 * [b0, b1) (the caller holds their range lock): make sure no clean key
 * can show older data there after a crash.  Every piece that is not
 * DIRTY — cached clean, or a gap — gets a DELETE (over a gap it cuts
 * nothing, but kills a promotion placeholder registered before it); then,
 * if any cut of this export is not durable yet (ours, or an earlier one
 * whose commit failed), wait for it.  With nothing cached and nothing
 * pending this costs no I/O.  DIRTY pieces stay until the caller's final
 * DELETE or key: they are the newest data until the backing write is
 * durable, and the commit that makes their removal durable flushes the
 * backing store first (rule 2).  *dirty is set if a DIRTY piece was
 * left: the caller's final DELETE relies on its backing write then.
 */
static int
forget_before_backing (struct ncache *nc, uint64_t b0, uint64_t b1,
                       bool *dirty)
{
  struct ncache_device *dev = nc->dev;
  struct btree_piece pieces[LOOKUP_PIECES];
  uint64_t pos = b0, run_lo = b0, seq = 0;
  bool cut;
  int n, i, r;

  while (pos < b1) {
    n = btree_lookup (dev->bt, nc->export_id, pos, b1, pieces,
                      LOOKUP_PIECES, NULL);
    if (n < 0)
      return n;
    for (i = 0; i < n; i++) {
      const struct btree_piece *p = &pieces[i];
      uint64_t lo = MAX (pos, p->start), hi = MIN (b1, p->end);

      if (lo >= hi)
        continue;
      if (p->found && (p->key.flags & NC_KEY_DIRTY)) {
        if ((r = invalidate (nc, run_lo, lo, &seq, &cut)) < 0)
          return r;
        run_lo = hi;
        *dirty = true;
      }
      pos = hi;
    }
  }
  if ((r = invalidate (nc, run_lo, b1, &seq, &cut)) < 0)
    return r;
  return request_settle_cuts (nc);
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
    return export_io_read (nc, dst, lo, hi);
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
      r = export_io_read (nc, dst + (blo - lo), blo, bhi);
      ps = ce;
      continue;
    }
    r = bucket_alloc_data (dev->bs, WP_CLEAN, (uint32_t) (ce - cs), &ext);
    if (r < 0) {
      /* No room for clean data: serve without promoting. */
      btree_placeholder_drop (dev->bt, ph);
      blo = MAX (lo, cs * BLK);
      bhi = MIN (hi, ce * BLK);
      r = export_io_read (nc, dst + (blo - lo), blo, bhi);
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
    r = export_io_read (nc, bounce, cs * BLK, (cs + nb) * BLK);
    if (r == 0) {
      blo = MAX (lo, cs * BLK);
      bhi = MIN (hi, (cs + nb) * BLK);
      if (blo < bhi)
        memcpy (dst + (blo - lo), bounce + (blo - cs * BLK), bhi - blo);
      make_key (nc, &k, cs, cs + nb, 0);
      /* A writer holding the range may be about to change the backing
       * under what we read (ORDERING rule 3): do not promote then.
       */
      if (!range_lock_busy (&nc->rl, cs, cs + nb) &&
          cache_data_write (dev, &ext, bounce, &k) == 0) {
        /* Data the backing store may still lose: rule 2. */
        bool backsync = request_backing_unflushed (nc);
        uint64_t seq = 0;

        if (backsync)
          request_backsync_begin (nc);
        r = btree_insert_promoted (dev->bt, ph, &k, &inserted, &seq);
        if (backsync)
          request_backsync_end (nc, inserted ? seq
                                : journal_open_seq (dev->journal));
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
  r = cache_data_read (dev, &p->key, lo - p->start * BLK, dst, hi - lo);
  if (r < 0)
    return r;
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

/* Write the prepared blocks to the backing store (whole blocks, so what
 * the cache held around a partial write goes along, newest first).
 */
static int
block_write_backing (struct ncache *nc, const struct block_write *w,
                     uint32_t flags)
{
  int r = 0;

  if (w->head)
    r = export_io_write (nc, w->head, w->b0 * BLK, (w->b0 + 1) * BLK, flags);
  if (r == 0 && w->m1 > w->m0 && w->mid)
    r = export_io_write (nc, w->mid, w->m0 * BLK, w->m1 * BLK, flags);
  if (r == 0 && w->tail)
    r = export_io_write (nc, w->tail, (w->b1 - 1) * BLK, w->b1 * BLK, flags);
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
  bool dirty = false;
  int r;

  r = forget_before_backing (nc, w->b0, w->b1, &dirty);
  if (r == 0)
    r = block_write_backing (nc, w, fua ? NCACHE_FUA : 0);
  if (r < 0)
    return r;
  r = invalidate_after_backing (nc, w->b0, w->b1, dirty);
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
    return insert_keys (nc, &kl, fua, false);

  case NCACHE_MODE_WRITETHROUGH: {
    bool dirty = false;

    r = forget_before_backing (nc, w->b0, w->b1, &dirty);
    if (r == 0)
      r = block_write_backing (nc, w, fua ? NCACHE_FUA : 0);
    if (r < 0)
      return r;
    r = block_write_cache (nc, w, WP_CLEAN, 0, &kl);
    if (r == -ENOSPC) {
      key_list_release (nc, &kl);
      STAT_ADD (nc, nr_bypasses, 1);
      r = invalidate_after_backing (nc, w->b0, w->b1, dirty);
      if (r == 0 && fua)
        r = journal_flush (nc->dev->journal);
      return r;
    }
    if (r < 0) {
      key_list_release (nc, &kl);
      return r;
    }
    return insert_keys (nc, &kl, fua, true);
  }

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

  /* Queued trims and the backing store first (the journal commit would
   * flush the backing anyway when there is something to commit; not when
   * there is nothing).
   */
  if ((r = export_io_flush (nc)) < 0)
    return r;
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
  if (b1 <= b0)                 /* no whole block (or none at all) */
    return (flags & NCACHE_FUA) ? request_flush (nc) : 0;
  /* The backing trims the same whole blocks the cache forgets: partial
   * edge blocks keep their data in both (a trim is advisory), or a cached
   * block would differ from the backing's.
   */
  range_lock_take (&nc->rl, &rle, b0, b1);
  /* ORDERING rule 1: the cache forgets first, durably if it cut
   * anything, before the backing trim can be issued.
   */
  r = invalidate (nc, b0, b1, &seq, &cut);
  if (r == 0)
    r = request_settle_cuts (nc);
  /* The backing trim is queued (merged, batched by the export's
   * background thread, issued before any flush); FUA issues it now.
   */
  if (r == 0)
    r = export_io_trim (nc, b0 * BLK, b1 * BLK, flags);
  if (r == 0 && (flags & NCACHE_FUA))
    r = journal_flush (nc->dev->journal);
  range_lock_release (&nc->rl, &rle);
  return r;
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
  return insert_keys (nc, &kl, fua, !(flags & NC_KEY_DIRTY));
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
    bool dirty = false;

    r = forget_before_backing (nc, mb0, mb1, &dirty);
    if (r < 0)
      break;
    r = export_io_zero (nc, mb0 * BLK, mb1 * BLK, flags);
    if (r < 0)
      break;
    if (nc->mode == NCACHE_MODE_WRITETHROUGH)
      r = insert_zero_keys (nc, mb0, mb1, 0, fua);
    else {
      r = invalidate_after_backing (nc, mb0, mb1, dirty);
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
