/* SPDX-License-Identifier: BSD-3-Clause */
/* request.c — the request paths of an export with a cache device.
 *
 * WHAT: READ, WRITE, FLUSH, TRIM, WRITE_ZEROES, CACHE and BLOCK_STATUS for
 * the modes writeback, writethrough and writearound.  cache.c has already
 * checked ranges, flags and read-only.  Work is in blocks of 4 KiB (the
 * cache's unit); "forget" is ORDERING rule 1 below.
 *
 * THE MODE TABLE — every command on every path, FUA included, with the
 * order of the steps.  The path is decided once per request (write_path):
 * the mode the request read when it started (cache.c, through live.c's
 * gate: a live change applies to later requests only), except that a
 * WRITE of a stream past the sequential cutoff (seqcut.c) goes as
 * writearound ("bypass"), and a READ of one is not promoted; a READ or
 * CACHE while a detach runs promotes nothing (live.c).  Then one write
 * path (write_blocks) runs it.  Mode none (no cache device, or
 * detached) never gets here: cache.c sends each request straight through the
 * backing store's door (export-io.c), FUA as the backing's FUA.
 *
 * | cmd        | writeback           | writethrough        | writearound,   |
 * |            |                     |                     | bypass         |
 * |------------|---------------------|---------------------|----------------|
 * | READ hit   | cache data; gen rechecked after the read (moved: look      |
 * |            | again)                                                     |
 * | READ miss  | backing; promoted (not on bypass): placeholder before the  |
 * |            | backing read, key only if it survived and no writer holds  |
 * |            | the range (rule 3)                                         |
 * | WRITE      | data to DIRTY space,| forget; backing;    | forget;        |
 * |            | DIRTY keys (no room:| data to clean space,| backing;       |
 * |            | as writearound)     | clean keys (no room:| DELETE         |
 * |            |                     | DELETE)             |                |
 * | WRITE FUA  | wait for the keys'  | backing FUA; wait   | backing FUA;   |
 * |            | journal entry       | for the keys' entry | journal flush  |
 * | ZEROES     | edges as WRITE; the | edges as WRITE;     | edges as       |
 * |            | whole blocks DIRTY  | forget; backing     | WRITE; forget; |
 * |            | ZERO keys (NOHOLE   | zero; clean ZERO    | backing zero;  |
 * |            | unless MAY_TRIM)    | keys                | DELETE         |
 * | ZEROES FUA | the whole blocks as WRITE FUA (a backing zero with FUA);   |
 * |            | edges without FUA, then a FLUSH if there were any          |
 * | FAST_ZERO  | always fast         | only if the backing zeroes fast and  |
 * |            |                     | no edge needs data, else ENOTSUP     |
 * | TRIM       | whole blocks only: DELETE, wait if a cut is not durable,   |
 * |            | then queue the backing trim of the same blocks             |
 * | TRIM FUA   | the backing trim issued at once with FUA; journal flush    |
 * | FLUSH      | queued trims out; backing flush if it changed since the    |
 * |            | last one; journal flush (group commit)                     |
 * | FUA, empty | a WRITE, ZEROES or TRIM of no (whole) block: as FLUSH      |
 * | CACHE      | read with promotion, nothing returned                      |
 * | STATUS     | ZERO keys: zero; misses: the backing's own status          |
 *
 * WRITE and WRITE_ZEROES both note the I/O (writeback's idle detection)
 * and, on the writeback path, pass writeback's throttle before the range
 * lock that writeback itself needs.  Only a WRITE takes the sequential-
 * cutoff decision: the cutoff keeps a stream from evicting the working
 * set, and a zero's whole blocks become ZERO keys that hold no data
 * (its edges are at most two blocks), so a zero neither bypasses nor
 * lengthens a stream.
 *
 * Partial first / last blocks of a WRITE are read (cache or backing) and
 * patched: whole blocks go everywhere.  Every backing read, write, zero,
 * trim and flush goes through the export's door to its backing store
 * (export-io.c: clipping, flags, the trim queue's barrier, the backsync
 * count); trims are queued there.  Cached data is read and written
 * through cache-data.c (the gen recheck, the key's location).
 * nbdcache:state reports cached / dirty / zero per extent from the index
 * alone.  Beside this file: export-io.c, cache-data.c, forget.c (rule 1
 * below), rangelock.c (the range lock), backsync.c (the backing stores'
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
 *    (forget.c; group commit shares the wait).  Nothing cached
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
 *    flushes the backing store of each export of the device with
 *    such keys pending that completed a change since its last flush (backsync.c: generation
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

#include <assert.h>
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
#include "forget.h"
#include "journal.h"
#include "log.h"
#include "missflight.h"
#include "ondisk.h"
#include "seqcut.h"
#include "trimq.h"
#include "writeback.h"

#define BLK ((uint64_t) NC_BLOCK_BYTES)

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
key_list_release (struct ncache_export *nc, struct key_list *kl)
{
  size_t i;

  for (i = 0; i < kl->len; i++)
    if (bkey_has_data (&kl->keys[i]))
      bucket_put_open (nc->dev->bs, kl->keys[i].bucket);
  if (kl->keys != kl->inline_keys)
    free (kl->keys);
  key_list_init (kl);
}

/* Allocate space from write point wp for blocks [start, start + nblocks)
 * of the export, write src there, and add the keys to kl.  -ENOSPC /
 * -EAGAIN from the allocator are returned as they are (the caller goes
 * around the cache); the keys already added stay in kl.
 */
static int
cache_write_blocks (struct ncache_export *nc, enum bucket_wp wp, uint8_t flags,
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
    bkey_init (&k, nc->export_id, start, start + ext.nblocks, flags);
    r = cache_data_write (dev, &ext, src, CDEV_STREAM, &k);
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

/* Insert kl's keys; wait for their journal entry if fua.  backsync: they
 * rely on backing data (clean keys after a backing write: rule 2).
 * Releases kl either way.
 */
static int
insert_keys (struct ncache_export *nc, struct key_list *kl, bool fua,
             bool backsync)
{
  uint64_t seq = 0;
  bool cut = false;
  int r;

  if (backsync)
    request_backsync_begin (nc);
  r = btree_insert (nc->dev->bt, kl->keys, kl->len, &seq, &cut);
  key_list_release (nc, kl);
  if (r < 0) {
    forget_note_cut (nc, journal_open_seq (nc->dev->journal));
    if (backsync)
      request_backsync_end (nc, journal_open_seq (nc->dev->journal));
    return r;
  }
  if (backsync)
    request_backsync_end (nc, seq);
  if (cut)
    forget_note_cut (nc, seq);
  journal_throttle (nc->dev->journal);
  /* The range lock is all we hold: the commit may run here. */
  if (fua)
    r = journal_wait_or_commit (nc->dev->journal, seq);
  return r;
}

/* ---- reads ---- */

static bool
may_promote (struct ncache_export *nc)
{
  struct bucket_usage u;

  bucket_get_usage (nc->dev->bs, &u);
  /* Above ~95% of the cache pinned by dirty data and nodes there is
   * nothing left to evict for clean data: stop promoting.
   */
  return (uint64_t) (u.dirty_buckets + u.btree) * 100 < (uint64_t) u.nbuckets * 95;
}

/* read_miss waited for an overlapping miss instead of reading. */
#define MISS_LOOK_AGAIN 1

/* What one client READ met, for its statistics (cache.h, "STATISTICS"):
 * counted once per request, after it succeeded.  NULL for reads that are
 * not counted (CACHE, read-modify-write).
 */
struct read_tally {
  bool missed;                  /* some piece came from the backing store */
  bool promoted;                /* a missed block went into the cache */
  bool bypassed;                /* a missed piece was not promoted on
                                   purpose: cutoff, cache full, no room */
};

/* A miss over blocks [ps, pe): serve bytes [lo, hi) into dst, promoting
 * the blocks into the cache on the way when possible.  0, -errno, or
 * MISS_LOOK_AGAIN (nothing served: look the range up again).
 */
static int
read_miss (struct ncache_export *nc, uint64_t ps, uint64_t pe, uint8_t *dst,
           uint64_t lo, uint64_t hi, bool promote, struct read_tally *t)
{
  struct ncache_device *dev = nc->dev;
  struct missflight_entry flight;
  uint8_t *bounce = NULL;
  int r = 0;

  if (!promote || !may_promote (nc)) {
    if (t)
      t->bypassed = true;
    return export_io_read (nc, dst, lo, hi);
  }
  /* Single-flight (missflight.h): a miss overlapping one in flight waits
   * for it, then the caller looks again and finds it cached.
   */
  if (!missflight_begin (nc->mf, &flight, ps, pe))
    return MISS_LOOK_AGAIN;

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
      if (blo < bhi)            /* (promote_min: may be all read-ahead) */
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
      if (blo < bhi)
        r = export_io_read (nc, dst + (blo - lo), blo, bhi);
      if (t)
        t->bypassed = true;
      ps = ce;
      continue;
    }
    nb = ext.nblocks;
    /* Sized for the largest piece this miss promotes, not a bucket: a
     * 4k miss zeroing a 1 MiB buffer was most of its CPU time.
     */
    if (bounce == NULL)
      bounce = cdev_alloc_buffer (MIN (pe - cs, dev->sb.bucket_blocks) * BLK);
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
      bkey_init (&k, nc->export_id, cs, cs + nb, 0);
      /* A writer holding the range may be about to change the backing
       * under what we read (ORDERING rule 3): do not promote then.
       */
      if (!range_lock_busy (&nc->rl, cs, cs + nb) &&
          cache_data_write (dev, &ext, bounce, 0, &k) == 0) {
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
        if (inserted && t)
          t->promoted = true;
      }
    }
    if (ph != 0)
      btree_placeholder_drop (dev->bt, ph);
    bucket_put_open (dev->bs, ext.bucket);
    ps = cs + nb;
  }
  missflight_end (nc->mf, &flight);
  free (bounce);
  return r;
}

/* promote_min: widen the miss over blocks [*ps, *pe) to the aligned
 * promote_min block(s) around it, as far as they are uncached (a gap of
 * the index) and inside the export.  Unchanged when off, or when the
 * index cannot say cheaply.  Only the requested bytes are served; the
 * rest is read-ahead promoted with them by read_miss.
 */
#define WIDEN_LOOKUP_PIECES 32

static void
widen_miss (struct ncache_export *nc, uint64_t *ps, uint64_t *pe)
{
  struct ncache_device *dev = nc->dev;
  struct btree_piece pieces[WIDEN_LOOKUP_PIECES];
  uint64_t m = __atomic_load_n (&nc->tuning.promote_min_bytes,
                               __ATOMIC_RELAXED) / BLK;
  uint64_t end = div_round_up (nc->caps.size_bytes, BLK);
  uint64_t ws, we;
  int n, i;

  if (m <= 1)
    return;
  ws = *ps - *ps % m;
  we = MIN (div_round_up (*pe, m) * m, end);
  if (ws == *ps && we <= *pe)
    return;
  n = btree_lookup (dev->bt, nc->export_id, ws, we, pieces,
                    WIDEN_LOOKUP_PIECES, NULL);
  for (i = 0; i < n; i++) {
    const struct btree_piece *p = &pieces[i];

    if (!p->found && p->start <= *ps && *pe <= p->end) {
      *ps = MAX (p->start, ws);
      *pe = MIN (p->end, we);
      return;
    }
  }
}

/* A hit whose data failed its checksum (counted and logged by the cache
 * data door).  Dirty: the only copy is bad: EIO, never served.  Clean:
 * the backing store has it: drop the key (replace-if-unchanged, so a
 * write that replaced it meanwhile wins) and serve from the backing
 * store; a later read misses and promotes afresh.
 */
static int
corrupt_hit (struct ncache_export *nc, const struct btree_piece *p,
             uint8_t *dst, uint64_t lo, uint64_t hi)
{
  struct ncache_device *dev = nc->dev;
  struct nc_key del;

  if (bkey_is_dirty (&p->key))
    return -EIO;
  bkey_init (&del, p->key.export_id, p->start, p->end, NC_KEY_DELETE);
  (void) btree_replace (dev->bt, &p->key, &del, 1, NULL, NULL);
  return export_io_read (nc, dst, lo, hi);
}

/* A hit: serve bytes [lo, hi) of piece p into dst.  -ESTALE if the bucket
 * was reused during the read (look the range up again); -EIO if its
 * dirty data failed its checksum.  rmw: the read of a read-modify-write,
 * which takes blocks just written from REDO's stash (cache-data.h).
 */
static int
read_hit (struct ncache_export *nc, const struct btree_piece *p, uint8_t *dst,
          uint64_t lo, uint64_t hi, bool rmw)
{
  struct ncache_device *dev = nc->dev;
  int r;

  if (bkey_is_zero (&p->key)) {
    memset (dst, 0, hi - lo);
    return 0;
  }
  if (rmw)
    r = cache_data_read_stashed (dev, &p->key, lo - p->start * BLK, dst,
                                 hi - lo);
  else
    r = cache_data_read (dev, &p->key, lo - p->start * BLK, dst, hi - lo);
  if (r == -EBADMSG)
    return corrupt_hit (nc, p, dst, lo, hi);
  if (r < 0)
    return r;
  bucket_hit (dev->bs, p->key.bucket);
  return 0;
}

/* read_range's walk: where the bytes go and what a miss does. */
struct read_walk {
  struct ncache_export *nc;
  uint8_t *buf;                 /* byte `offset` of the export */
  uint64_t offset;
  bool promote;
  struct read_tally *t;         /* NULL: not counted */
  /* ncache_pread_extents: each piece is reported once served, in order;
   * a ZERO key's bytes are reported as zero and not written to buf until
   * the caller asks for everything (fill).  NULL: plain read.
   */
  ncache_extent_fn report;
  void *report_opaque;
  bool fill;
  bool rmw;                     /* read_hit's rmw: patch_block's read */
};

/* A piece [lo, hi) was served (or, flags ZERO, may stay unwritten unless
 * the report sets fill: then the caller writes it too).
 */
static int
report_piece (struct read_walk *w, uint64_t lo, uint64_t hi, uint32_t flags)
{
  int r;

  if (w->report == NULL || w->fill)
    return 0;
  r = w->report (w->report_opaque, lo, hi - lo, flags);
  if (r > 0)
    w->fill = true;
  return r < 0 ? r : 0;
}

static int
read_piece (void *opaque, const struct btree_piece *p, uint64_t lo,
            uint64_t hi)
{
  struct read_walk *w = opaque;
  uint8_t *dst = w->buf + (lo - w->offset);
  int r;

  if (p->found) {
    if (w->report != NULL && !w->fill && bkey_is_zero (&p->key)) {
      r = report_piece (w, lo, hi, NCACHE_EXTENT_ZERO);
      if (r == 0 && w->fill)
        memset (dst, 0, hi - lo);   /* the caller wants it all written */
      return r;
    }
    r = read_hit (w->nc, p, dst, lo, hi, w->rmw);
    if (r == -ESTALE)
      return PIECE_WALK_AGAIN;  /* replaced under us: look again */
  }
  else {
    uint64_t ps = p->start, pe = p->end;

    if (w->promote)
      widen_miss (w->nc, &ps, &pe);
    r = read_miss (w->nc, ps, pe, dst, lo, hi, w->promote, w->t);
    if (r == MISS_LOOK_AGAIN)
      return PIECE_WALK_AGAIN;  /* waited for another's miss: a later */
                                /* look decides hit or miss */
    if (w->t)
      w->t->missed = true;
  }
  if (r == 0)
    r = report_piece (w, lo, hi, 0);
  return r;
}

static void
read_batch_done (void *opaque)
{
  struct read_walk *w = opaque;

  bucket_io (w->nc->dev->bs);
}

/* Read bytes [offset, offset + count) into buf.  promote: misses go into
 * the cache (client reads and CACHE); false for read-modify-write (and a
 * read-modify-write is the only caller with t NULL and no report).
 * report (may be NULL): see struct read_walk.
 */
static int
read_range (struct ncache_export *nc, uint8_t *buf, uint64_t count,
            uint64_t offset, bool promote, struct read_tally *t,
            ncache_extent_fn report, void *report_opaque)
{
  struct read_walk w = {
    .nc = nc, .buf = buf, .offset = offset,
    .promote = promote, .t = t,
    .report = report, .report_opaque = report_opaque,
    .rmw = !promote && t == NULL && report == NULL,
  };

  return piece_walk (nc, offset, count, read_piece, read_batch_done, &w);
}

/* A request of a stream past the sequential cutoff bypasses the cache
 * (not counted here: the caller counts what the cutoff changed).
 */
static bool
sequential_bypass (struct ncache_export *nc, uint64_t offset, uint64_t count)
{
  return nc->seq != NULL && seqcut_check (nc->seq, offset, count);
}

/* Count one successful read request: exactly one of hit or miss; a miss
 * is a bypass, a promotion or neither (cache.h, "STATISTICS").
 */
static void
count_read (struct ncache_export *nc, const struct read_tally *t, bool seq)
{
  if (!t->missed) {
    STAT_ADD (nc, nr_hits, 1);
    return;
  }
  STAT_ADD (nc, nr_misses, 1);
  if (t->bypassed) {
    STAT_ADD (nc, nr_bypasses, 1);
    if (seq)
      STAT_ADD (nc, nr_seq_bypasses, 1);
  }
  else if (t->promoted)
    STAT_ADD (nc, nr_promotions, 1);
}

int
request_pread (struct ncache_export *nc, void *buf, size_t count,
               uint64_t offset, ncache_extent_fn fn, void *opaque)
{
  bool seq = sequential_bypass (nc, offset, count);
  struct read_tally t = { .missed = false };
  int r;

  writeback_note_io (nc->wb);
  r = read_range (nc, buf, count, offset, !seq && !live_detaching (nc), &t,
                  fn, opaque);
  if (r == 0)
    count_read (nc, &t, seq);
  return r;
}

int
request_cache (struct ncache_export *nc, uint64_t count, uint64_t offset)
{
  uint64_t chunk = MIN (count, (uint64_t) 4 << 20);
  uint8_t *buf;
  int r = 0;

  if (count == 0)
    return 0;
  if (live_detaching (nc))
    return 0;                   /* nothing goes into the cache now */
  buf = cdev_alloc_buffer (chunk);
  if (buf == NULL)
    return -ENOMEM;
  while (count > 0 && r == 0) {
    uint64_t n = MIN (count, chunk);

    r = read_range (nc, buf, n, offset, true, NULL, NULL, NULL);
    offset += n;
    count -= n;
  }
  free (buf);
  return r;
}

/* ---- writes ---- */

/* How a WRITE or WRITE_ZEROES goes, decided once per request. */
enum write_path {
  PATH_WRITEBACK,               /* into the cache, DIRTY */
  PATH_WRITETHROUGH,            /* backing, then the cache (clean) */
  PATH_WRITEAROUND,             /* backing; the cache forgets */
};

/* A write prepared as whole blocks [b0, b1): the partial first and last
 * blocks patched in bounce buffers, the middle straight from the caller.
 */
struct block_write {
  uint64_t b0, b1;              /* blocks */
  uint8_t *head, *tail;         /* patched edge blocks, or NULL */
  const uint8_t *mid;           /* blocks [m0, m1) */
  uint64_t m0, m1;
  /* Whole blocks [b0, b1) of zeroes (no data, no edges): ZERO keys and a
   * backing zero with these NCACHE_* flags (MAY_TRIM, FAST_ZERO).
   */
  bool zero;
  uint32_t zero_flags;
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
patch_block (struct ncache_export *nc, uint64_t blk, const uint8_t *src,
             uint64_t lo,
             uint64_t hi, uint8_t **out)
{
  uint8_t *b = cdev_alloc_buffer (BLK);
  int r;

  if (b == NULL)
    return -ENOMEM;
  r = read_range (nc, b, BLK, blk * BLK, false, NULL, NULL, NULL);
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
block_write_prepare (struct ncache_export *nc, const uint8_t *src,
                     uint64_t count,
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

/* Blocks [b0, b1) as ZERO keys with flags, added to kl. */
static int
zero_keys (struct ncache_export *nc, uint64_t b0, uint64_t b1, uint8_t flags,
           struct key_list *kl)
{
  int r = 0;

  while (b0 < b1 && r == 0) {
    struct nc_key k;
    uint64_t e = MIN (b1, b0 + BKEY_MAX_BLOCKS);

    bkey_init (&k, nc->export_id, b0, e, (uint8_t) (flags | NC_KEY_ZERO));
    /* A ZERO key has no data; its bucket field carries an id that tells
     * this zero from a later identical one (btree_replace compares it).
     */
    k.bucket = __atomic_add_fetch (&nc->dev->zero_id, 1, __ATOMIC_RELAXED);
    r = key_list_add (kl, &k);
    b0 = e;
  }
  return r;
}

/* The cache half of a write: the prepared blocks as keys in kl, DIRTY (in
 * dirty space) or clean.  A dirty zero is written back later as a backing
 * zero: punched unless NO_HOLE.  -ENOSPC: no room (keys in kl abandoned
 * by the caller).
 */
static int
block_write_cache (struct ncache_export *nc, const struct block_write *w,
                   bool dirty, struct key_list *kl)
{
  enum bucket_wp wp = dirty ? WP_DIRTY : WP_CLEAN;
  uint8_t flags = dirty ? NC_KEY_DIRTY : 0;
  int r = 0;

  if (w->zero) {
    if (dirty && !(w->zero_flags & NCACHE_MAY_TRIM))
      flags |= NC_KEY_NOHOLE;
    return zero_keys (nc, w->b0, w->b1, flags, kl);
  }
  if (w->head)
    r = cache_write_blocks (nc, wp, flags, w->b0, w->head, 1, kl);
  if (r == 0 && w->m1 > w->m0 && w->mid)
    r = cache_write_blocks (nc, wp, flags, w->m0, w->mid, w->m1 - w->m0, kl);
  if (r == 0 && w->tail)
    r = cache_write_blocks (nc, wp, flags, w->b1 - 1, w->tail, 1, kl);
  return r;
}

/* The backing half: the prepared blocks to the backing store (whole
 * blocks, so what the cache held around a partial write goes along,
 * newest first).
 */
static int
block_write_backing (struct ncache_export *nc, const struct block_write *w,
                     bool fua)
{
  uint32_t flags = fua ? NCACHE_FUA : 0;
  int r = 0;

  if (w->zero)
    return export_io_zero (nc, w->b0 * BLK, w->b1 * BLK,
                           flags | w->zero_flags);
  if (w->head)
    r = export_io_write (nc, w->head, w->b0 * BLK, (w->b0 + 1) * BLK, flags);
  if (r == 0 && w->m1 > w->m0 && w->mid)
    r = export_io_write (nc, w->mid, w->m0 * BLK, w->m1 * BLK, flags);
  if (r == 0 && w->tail)
    r = export_io_write (nc, w->tail, (w->b1 - 1) * BLK, w->b1 * BLK, flags);
  return r;
}

/* The cache half into the index: the keys of kl (dirty, or clean relying
 * on the backing write: backsync), or -ENOSPC with nothing inserted.
 */
static int
cache_insert (struct ncache_export *nc, const struct block_write *w, bool dirty,
              bool fua)
{
  struct key_list kl;
  int r;

  key_list_init (&kl);
  r = block_write_cache (nc, w, dirty, &kl);
  if (r < 0) {
    key_list_release (nc, &kl);
    return r;
  }
  return insert_keys (nc, &kl, fua, !dirty);
}

/* THE write path (bcache's cached_dev_write): the path was decided once
 * (write_path); writeback and writethrough fall to writearound's end when
 * the cache has no room.  Writearound's FUA: the final DELETE is durable
 * before we return — and so is every earlier forgetting still in the open
 * journal entry: an older write's invalidation may be what keeps a stale
 * cached copy from shadowing this data after a crash, even when this one
 * cut nothing.
 */
static int
write_blocks (struct ncache_export *nc, const struct block_write *w,
              enum write_path path, bool fua, bool *nospc)
{
  bool dirty = false;
  int r;

  if (path == PATH_WRITEBACK) {
    r = cache_insert (nc, w, true, fua);
    if (r != -ENOSPC)
      return r;
    *nospc = true;
  }
  /* ORDERING rule 1, then the backing store. */
  r = forget_before_backing (nc, w->b0, w->b1, &dirty);
  if (r == 0)
    r = block_write_backing (nc, w, fua);
  if (r < 0)
    return r;
  if (path == PATH_WRITETHROUGH) {
    r = cache_insert (nc, w, false, fua);
    if (r != -ENOSPC)
      return r;
    *nospc = true;
  }
  r = forget_after_backing (nc, w->b0, w->b1, dirty);
  if (r == 0 && fua)
    r = journal_flush (nc->dev->journal);
  return r;
}

/* Decide the path of a WRITE or WRITE_ZEROES once, with what goes along
 * the decision: the I/O is noted (writeback's idle detection), a WRITE
 * takes the sequential-cutoff decision, and the writeback path passes
 * writeback's throttle (before the range lock: writeback needs range
 * locks to make progress) — and goes around the cache when the device is
 * still above its dirty limit after it (writeback.h, BACKPRESSURE).
 */
static enum write_path
write_path (struct ncache_export *nc, enum ncache_mode mode, bool seqcut,
            uint64_t offset, uint64_t count,
            bool *seq, bool *over_limit)
{
  enum write_path path;

  writeback_note_io (nc->wb);
  switch (mode) {
  case NCACHE_MODE_WRITEBACK:
    path = PATH_WRITEBACK;
    break;
  case NCACHE_MODE_WRITETHROUGH:
    path = PATH_WRITETHROUGH;
    break;
  case NCACHE_MODE_WRITEAROUND:
  default:
    assert (mode == NCACHE_MODE_WRITEAROUND); /* none: no request.c */
    path = PATH_WRITEAROUND;
    break;
  }
  /* The stream is tracked in every mode; *seq only when the cutoff
   * changed the path.
   */
  *seq = false;
  if (seqcut && sequential_bypass (nc, offset, count) &&
      path != PATH_WRITEAROUND) {
    path = PATH_WRITEAROUND;
    *seq = true;
  }
  if (path == PATH_WRITEBACK && writeback_throttle (nc->wb)) {
    path = PATH_WRITEAROUND;
    *over_limit = true;         /* counted as a write bypass: no room */
  }
  return path;
}

/* Prepare bytes [offset, offset + count) (src NULL: zeros) and write
 * them on path.
 */
static int
write_bytes (struct ncache_export *nc, const uint8_t *src, uint64_t count,
             uint64_t offset, enum write_path path, bool fua, bool *nospc)
{
  struct block_write w;
  int r;

  r = block_write_prepare (nc, src, count, offset, &w);
  if (r == 0) {
    r = write_blocks (nc, &w, path, fua, nospc);
    block_write_free (&w);
  }
  return r;
}

/* Count one successful WRITE or WRITE_ZEROES that went around a cache
 * its mode would have written: the cutoff (seq) or no room (nospc: no
 * clean space, or the device still above its dirty limit after the
 * throttle's wait).
 */
static void
count_write (struct ncache_export *nc, bool seq, bool nospc)
{
  if (!seq && !nospc)
    return;
  STAT_ADD (nc, nr_bypasses, 1);
  STAT_ADD (nc, nr_write_bypasses, 1);
  if (seq)
    STAT_ADD (nc, nr_seq_bypasses, 1);
}

int
request_pwrite (struct ncache_export *nc, enum ncache_mode mode,
                const void *buf, size_t count, uint64_t offset, uint32_t flags)
{
  struct range_lock_entry rle;
  bool fua = (flags & NCACHE_FUA) != 0;
  bool seq, nospc = false;
  enum write_path path;
  int r;

  if (count == 0)
    return fua ? request_flush (nc) : 0;
  path = write_path (nc, mode, true, offset, count, &seq, &nospc);
  range_lock_take (&nc->rl, &rle, offset / BLK,
                   div_round_up (offset + count, BLK));
  r = write_bytes (nc, buf, count, offset, path, fua, &nospc);
  range_lock_release (&nc->rl, &rle);
  if (r == 0)
    count_write (nc, seq, nospc);
  return r;
}

int
request_flush (struct ncache_export *nc)
{
  int r;

  /* Queued trims and the backing store first (the journal commit would
   * flush the backing anyway when there is something to commit; not when
   * there is nothing).
   */
  if ((r = export_io_flush_client (nc)) < 0)
    return r;
  return journal_flush_or_commit (nc->dev->journal);   /* no lock held */
}

/* ---- trim and zero ---- */

int
request_trim (struct ncache_export *nc, uint64_t count, uint64_t offset,
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
  r = forget_range (nc, b0, b1, &seq, &cut);
  if (r == 0)
    r = forget_settle_cuts (nc);
  /* The backing trim is queued (merged, batched by the export's
   * background thread, issued before any flush); FUA issues it now.
   */
  if (r == 0)
    r = export_io_trim (nc, b0 * BLK, b1 * BLK, flags);
  /* The final DELETE, as after a backing write: it kills the placeholder
   * of a read that missed after our forget and read the backing before
   * the trim was queued (it checks range_lock_busy only after we release
   * the lock, so it would promote data the trim then drops: a clean key
   * over trimmed blocks).  A read after this sees the queued trim.
   */
  if (r == 0)
    r = forget_after_backing (nc, b0, b1, false);
  if (r == 0 && (flags & NCACHE_FUA))
    r = journal_flush (nc->dev->journal);
  range_lock_release (&nc->rl, &rle);
  return r;
}

int
request_zero (struct ncache_export *nc, enum ncache_mode mode, uint64_t count,
              uint64_t offset, uint32_t flags)
{
  struct range_lock_entry rle;
  bool fua = (flags & NCACHE_FUA) != 0;
  uint64_t end = offset + count;
  struct block_write mid = {
    .zero = true,
    .zero_flags = flags & (NCACHE_MAY_TRIM | NCACHE_FAST_ZERO),
  };
  enum write_path path;
  bool seq, nospc = false;
  int r = 0;

  if (count == 0)
    return fua ? request_flush (nc) : 0;
  mid.b0 = div_round_up (offset, BLK);
  mid.b1 = end == nc->caps.size_bytes ? div_round_up (end, BLK) : end / BLK;

  if (mode != NCACHE_MODE_WRITEBACK && (flags & NCACHE_FAST_ZERO)) {
    /* Only fast if the backing store zeroes fast and no edge block needs
     * data written.
     */
    if (!nc->backing->can_fast_zero || mid.b0 * BLK != offset ||
        (mid.b1 * BLK != end && end != nc->caps.size_bytes))
      return -ENOTSUP;
  }
  path = write_path (nc, mode, false, offset, count, &seq, &nospc);

  range_lock_take (&nc->rl, &rle, offset / BLK, div_round_up (end, BLK));
  /* Edges first: partial blocks are written as data (zeros patched in). */
  if (mid.b0 >= mid.b1) {
    r = write_bytes (nc, NULL, count, offset, path, fua, &nospc);
    goto out;
  }
  if (offset < mid.b0 * BLK)
    r = write_bytes (nc, NULL, mid.b0 * BLK - offset, offset, path, false,
                     &nospc);
  if (r == 0 && mid.b1 * BLK < end)
    r = write_bytes (nc, NULL, end - mid.b1 * BLK, mid.b1 * BLK, path, false,
                     &nospc);
  /* The whole blocks. */
  if (r == 0)
    r = write_blocks (nc, &mid, path, fua, &nospc);
  /* FUA on the edges: the middle's wait covered the same journal or
   * later; the backing writes of the edges were not FUA, so flush them.
   */
  if (r == 0 && fua && (offset < mid.b0 * BLK || mid.b1 * BLK < end))
    r = request_flush (nc);
 out:
  range_lock_release (&nc->rl, &rle);
  if (r == 0)
    count_write (nc, seq, nospc);
  return r;
}
