/* SPDX-License-Identifier: BSD-3-Clause */
/* journal-write.c — one write of a journal commit, as journal.c planned
 * it: the fill, the entries built as stamped sectors, the pre-flush, the
 * pwrites, PIPELINE's pre-close and the final sync.
 *
 * WHAT / WHY: journal.c decides what goes where (placement, reclaim, the
 * live region, waiters); this file decides which entries carry their
 * data (journal.c REDO; their bytes from journal-stash.c's stash, else
 * read back) and turns a plan into bytes and device calls, so a commit's
 * I/O order is in one place: FILL (+ its own sync)
 * -> pre-flush unless presynced (PIPELINE) or its entries carry their
 * data (REDO, version 4) -> one pwrite per contiguous run (REDO: at once
 * with the data checksum pages, OVERLAP) -> pre-close -> final sync.
 *
 * OVERLAP: a small FLUSH/FUA commit (REDO) used to wait for its data
 * write, then its checksum page write, then its entry write, then the
 * sync, one after another (O_DIRECT cache: 0.65x of mode none on the
 * FUA row).  No order among the page and the entry is needed, only
 * "all written, then one sync": so when the device is O_DIRECT and
 * io_uring is there, the entry runs are queued on the journal's own ring
 * (j->ring, used by the commit token's holder only, empty between
 * writes) and submitted, hooks->write_unsynced writes the pages
 * meanwhile (blocking), and the write waits for every ring completion
 * (a failed one is written again the blocking way) before pre-close and
 * the final sync.  Without a ring (buffered device, no io_uring, the
 * simulated device of the tests) the same writes run one after another.
 * Measured (bench/fua-write 1k and fio randwrite 4k QD1 --fsync=1,
 * 22 interleaved pairs against mode none on the 2-core VM, shared and
 * noisy): FUA, O_DIRECT cache: new/old median 1.24x (0.49-1.89), 0.74x
 * -> 0.86x of none; FLUSH after 4k: 1.10x (0.59-1.83), 0.78x -> 0.87x.
 * The buffered column, whose path this does not change, moved 1.12x and
 * 1.00x: that is the noise floor.  What is left serial: the data write
 * (its key is added only once it completed), then page || entry, then
 * the sync.
 * CRASH POINTS of a REDO write (the data write D completed before its
 * key was added; the pages P and entries E are written, in any order or
 * at once, after the backing stores were made durable; then one sync S;
 * a crash before S completes may keep any subset of D, P and E, and any
 * sector of each):
 * - E torn or lost (whatever of D and P survived): replay drops a torn
 *   entry by its checksum, which covers the inline data; the write was
 *   never acknowledged (the ack waits for S).  Keys that are durable
 *   point only at blocks older writes wrote and S-synced: buckets are
 *   append-only within a gen, so D landed in blocks no durable key
 *   names, and a page P changes only the words of such blocks (every
 *   other word in it is the same in the old and new page: datacsum.c),
 *   so nothing durable reads differently or fails its checksum.
 * - E whole (whatever of D and P survived): this write is the newest, so
 *   recovery (journal_redo, assemble.c) writes the inline data back
 *   where the replayed index still maps each key and stores its words
 *   from that data (device.c hook_data_redone), then writes the pages
 *   and syncs, before the journal writes again or anything is read: a
 *   lost D or P (old words, or a torn page) is made good, and the
 *   device is never refused for it (replay never compares data).
 * - S done: everything is durable; the ack follows.  Every older write
 *   was followed by its own completed S, and the next journal write's
 *   pre_write writes any page still dirty, so only the newest write ever
 *   needs redo.
 * So only S's place matters: after every write of the commit completed
 * (a ring write still in flight at S would not be covered: the wait loop
 * never leaves with one in flight), and after the backing stores' sync
 * (pre_write_unsynced, before any entry is queued).  test-redo's
 * test_redo_crash_subsets keeps each of the 8 subsets of D, P, E.
 * INVARIANTS: those of journal.c's COMMIT and PIPELINE paragraphs; a
 * write lies between two syncs, so write_first is what replay expects.
 * THREADS AND LOCKS: the commit token's holder only; j->lock is taken
 * briefly to read the waiters.  The closed entries change only in that
 * thread, so they are read without the lock.  The ring likewise: the
 * token passes under j->lock, and no I/O is in flight on it between
 * writes.
 * FAILURE: -errno from the device or -ENOMEM; the caller fails the commit
 * and retries it from the same place (journal.c INVARIANTS).  No ring (it
 * cannot be made, or a submit fails): blocking writes from then on.
 * NOT HERE: placement and what happens after the write (journal.c); the
 * stamped sector format (journal-entry.c).
 */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cdev.h"
#include "compiler.h"
#include "invariant.h"
#include "csum.h"
#include "journal.h"
#include "journal-internal.h"
#include "log.h"
#include "ondisk.h"

#define FILL_CHUNK_BLOCKS 256u          /* 1 MiB per fill pwrite */
#define RUNS_MAX 8u                     /* entry runs written together */
#define OVERLAP_DEPTH RUNS_MAX          /* the journal's ring */

static int
wbuf_reserve (struct journal *j, size_t bytes)
{
  void *b;

  if (bytes <= j->wbuf_bytes)
    return 0;
  b = cdev_alloc_buffer (bytes);
  if (b == NULL)
    return -ENOMEM;
  free (j->wbuf);
  j->wbuf = b;
  j->wbuf_bytes = bytes;
  return 0;
}

/* PIPELINE: close the next entries now, between a write's pwrites and
 * its final sync, if someone waits for more than this write carries.
 * Returns the highest closed seq (every one closed before that sync).  A
 * failed close leaves the keys open for the next commit's own close.
 */
static uint64_t
preclose (struct journal *j, uint64_t last_planned)
{
  bool go;

  pthread_mutex_lock (&j->lock);
  go = !j->stopping && !j->aborting &&
    ((j->nwaiters > 0 && j->want_seq > last_planned) || j->throttlers > 0);
  pthread_mutex_unlock (&j->lock);
  if (go)
    (void) j->hooks.close_entry (j->hooks.opaque, j);
  return __atomic_load_n (&j->open_seq, __ATOMIC_ACQUIRE) - 1;
}

/* Write fill sectors over the plan's FILL blocks and sync, so they are
 * durable before any entry is written over them: its own sync, not the
 * write's pre-flush, which may be skipped when the keys' data is known
 * durable (it happens only in the first commits after a format, an
 * upgrade or damage to free ring space).
 */
static int
write_fill (struct journal *j, const struct plan *pl)
{
  uint32_t pos = pl->fill_lo, left = pl->fill_blocks, n;
  int r;

  if (left == 0)
    return 0;
  if (j->fill_buf == NULL) {
    j->fill_buf = cdev_alloc_buffer ((size_t) FILL_CHUNK_BLOCKS *
                                     NC_BLOCK_BYTES);
    if (j->fill_buf == NULL)
      return -ENOMEM;
    jentry_fill (j->fill_buf, FILL_CHUNK_BLOCKS, j->g.seed);
  }
  log_debug ("journal (%s): filling %" PRIu32 " ring blocks from block %"
             PRIu32, j->g.cd->path, left, pos);
  while (left > 0) {
    n = MIN (MIN (left, FILL_CHUNK_BLOCKS), j->g.blocks - pos);
    r = cdev_pwrite (j->g.cd, j->fill_buf, (size_t) n * NC_BLOCK_BYTES,
                     ring_byte (&j->g, pos), 0);
    if (r < 0)
      return r;
    pos = (pos + n) % j->g.blocks;
    left -= n;
  }
  return cdev_sync (j->g.cd);
}

/* c's keys; NULL for an entry of none (the vector may be unallocated:
 * no pointer arithmetic on it then).
 */
static const struct nc_key *
closed_keys_of (const struct journal *j, const struct closed_entry *c)
{
  return c->nkeys > 0 ? &j->closed_keys.v[c->first] : NULL;
}

/* Do the data keys of c lie inside the device (REDO reads them back)?
 * Index keys always do; the check keeps anything else on the old path.
 */
static bool
keys_inside (struct journal *j, const struct closed_entry *c)
{
  const struct nc_key *k = closed_keys_of (j, c);
  uint32_t i;

  for (i = 0; i < c->nkeys; i++)
    if (jkey_has_data (&k[i]) &&
        ((uint64_t) k[i].bucket * j->g.bucket_blocks + k[i].offset
         + k[i].size) * NC_BLOCK_BYTES > j->g.cd->size_bytes)
      return false;
  return true;
}

/* REDO: a waiter wants the closed entries and they point at little
 * data: make them carry it (version 4), so their write can skip the
 * pre-flush.  Only entries never planned before change size (a retry
 * rewrites an entry at its first place with its first length); entries a
 * finished sync already covers need nothing.  Marks as many leading
 * entries as fit JOURNAL_INLINE_MAX_BLOCKS in all, each within
 * entry_max_blocks; the write skips its pre-flush only if every planned
 * entry is covered or marked (jwrite_unflushed_locked).
 */
void
jwrite_mark_inline_locked (struct journal *j)
{
  ASSERT_HELD (&j->lock);
  uint64_t total = 0, bytes;
  uint32_t nb;
  size_t i;

  if (j->nwaiters == 0 || j->stopping || j->aborting)
    return;
  for (i = 0; i < j->nclosed; i++) {
    struct closed_entry *c = &j->closed[i];

    if (c->seq <= j->synced_through)
      continue;
    bytes = jentry_inline_bytes (closed_keys_of (j, c), c->nkeys);
    if (!c->inline_data) {
      if (c->tried)
        return;
      nb = jentry_blocks_for (c->nkeys, bytes);
      if (total + bytes > JOURNAL_INLINE_MAX_BLOCKS * NC_BLOCK_BYTES ||
          nb > j->entry_max_blocks || !keys_inside (j, c))
        return;
      c->inline_data = true;
      c->nblocks = nb;
    }
    total += bytes;
  }
}

/* May the planned write skip its pre-flush?  Every entry's keys then
 * either rely only on writes a finished sync covered, or carry their
 * data (REDO).
 */
bool
jwrite_unflushed_locked (struct journal *j, const struct plan *pl)
{
  ASSERT_HELD (&j->lock);
  size_t i;

  for (i = 0; i < pl->count; i++)
    if (j->closed[i].seq > j->synced_through && !j->closed[i].inline_data)
      return false;
  return true;
}

/* REDO: copy the data of e's data keys (as their blocks hold it now:
 * every write a key relies on completed before the key was added) after
 * its keys.  A key whose blocks the stash holds (journal-stash.c: the
 * bytes its write put there, the gen checked) is copied from memory;
 * the others are read back, keys whose blocks follow each other on the
 * device (a write point hands out blocks in order) with one pread: at
 * most JOURNAL_INLINE_MAX_BLOCKS in all (jwrite_mark_inline_locked).
 * The keys come from the index, so they lie inside the device (checked
 * when the entry was marked; cdev_pread checks anyway).
 */
static int
read_inline (struct journal *j, struct nc_jentry *e)
{
  unsigned char *dst = (unsigned char *) &e->keys[e->nkeys];
  unsigned char *run_dst = dst;
  uint64_t off = 0, run_off = 0, block = 0;
  size_t bytes = 0, run_bytes = 0;
  uint32_t k;
  bool stashed = false;
  int r;

  assert (jentry_inline_bytes (e->keys, e->nkeys)
          <= (uint64_t) JOURNAL_INLINE_MAX_BLOCKS * NC_BLOCK_BYTES);
  for (k = 0; k <= e->nkeys; k++) {
    const struct nc_key *key = k < e->nkeys ? &e->keys[k] : NULL;

    if (key != NULL) {
      if (!jkey_has_data (key))
        continue;
      bytes = (size_t) key->size * NC_BLOCK_BYTES;
      block = (uint64_t) key->bucket * j->g.bucket_blocks + key->offset;
      off = block * NC_BLOCK_BYTES;
      stashed = journal_stash_get (j, block, key->gen, key->size, dst);
    }
    if (run_bytes > 0 &&
        (key == NULL || stashed || off != run_off + run_bytes)) {
      if (j->ibuf == NULL) {
        j->ibuf = cdev_alloc_buffer ((size_t) JOURNAL_INLINE_MAX_BLOCKS *
                                     NC_BLOCK_BYTES);
        if (j->ibuf == NULL)
          return -ENOMEM;
      }
      if ((r = cdev_pread (j->g.cd, j->ibuf, run_bytes, run_off)) < 0)
        return r;
      memcpy (run_dst, j->ibuf, run_bytes);
      run_bytes = 0;
    }
    if (key == NULL)
      break;
    if (!stashed) {
      if (run_bytes == 0) {
        run_off = off;
        run_dst = dst;
      }
      run_bytes += bytes;
      j->stash_miss_blocks += key->size;
    }
    else
      j->stash_hit_blocks += key->size;
    dst += bytes;
  }
  return 0;
}

/* OVERLAP: one contiguous run of entry blocks to write. */
struct run {
  const unsigned char *buf;
  uint32_t pos, blocks;
  int result;                   /* ring: its completion; 1 = in flight */
};

static void
run_done (void *cookie, int result, void *opaque)
{
  struct run *rn = cookie;

  (void) opaque;
  rn->result = result;
}

/* The journal's ring, made at the first REDO write that can use one:
 * false (and never asked again) when the device is not O_DIRECT, has no
 * fd, or io_uring is not there.
 */
static bool
ring_ready (struct journal *j)
{
  int r;

  if (j->ring != NULL)
    return true;
  if (j->ring_off)
    return false;
  if (!j->g.cd->direct || j->g.cd->ops->ring_fd == NULL) {
    j->ring_off = true;
    return false;
  }
  if ((r = cdev_ring_create (OVERLAP_DEPTH, &j->ring)) < 0) {
    log_debug ("journal (%s): no ring for overlapped entry writes (%s): "
               "blocking writes", j->g.cd->path, strerror (-r));
    j->ring = NULL;
    j->ring_off = true;
    return false;
  }
  return true;
}

/* Write the runs; for a REDO write (unsynced), hooks->write_unsynced's
 * writes too.  OVERLAP: with a ring, the runs are queued and submitted
 * first, the hook writes while they are in flight, and every write has
 * completed when this returns, failed or not (the buffers stay ours).  A
 * run the ring failed is written again the blocking way (which logs).
 */
static int
write_runs (struct journal *j, struct run *runs, size_t n, bool unsynced,
            uint64_t *token)
{
  bool ring = false;
  size_t i, queued = 0;
  int r = 0, rh = 0;

  if (unsynced && ring_ready (j) && n <= cdev_ring_space (j->ring)) {
    for (i = 0; i < n; i++) {
      runs[i].result = 1;
      if (cdev_ring_write (j->ring, j->g.cd, runs[i].buf,
                           (size_t) runs[i].blocks * NC_BLOCK_BYTES,
                           ring_byte (&j->g, runs[i].pos), &runs[i]) < 0) {
        runs[i].result = -EAGAIN;
        continue;
      }
      queued++;
    }
    if (queued > 0 && (r = cdev_ring_submit (j->ring)) == 0)
      ring = true;
    else if (queued > 0) {
      /* Nothing was submitted (nothing else is ever in flight here):
       * drop the ring with what it queued; blocking writes from now on.
       */
      log_debug ("journal (%s): ring submit failed (%s): blocking writes",
                 j->g.cd->path, strerror (-r));
      cdev_ring_destroy (j->ring);
      j->ring = NULL;
      j->ring_off = true;
      r = 0;
    }
  }
  if (unsynced && j->hooks.write_unsynced != NULL)
    rh = j->hooks.write_unsynced (j->hooks.opaque, token);
  /* Every submitted write completes before we go on (its buffer is
   * j->wbuf; the final sync must come after it).  Waiting fails only on
   * a kernel that breaks io_uring's contract (EINTR is retried inside):
   * keep waiting, it is the only safe thing to do with writes in flight.
   */
  while (ring && cdev_ring_in_flight (j->ring) > 0) {
    if ((r = cdev_ring_wait (j->ring)) < 0) {
      log_error ("journal (%s): waiting for entry writes: %s",
                 j->g.cd->path, strerror (-r));
      nanosleep (&(struct timespec) { .tv_nsec = 1000000 }, NULL);
    }
    (void) cdev_ring_reap (j->ring, run_done, NULL);
  }
  r = 0;
  for (i = 0; i < n && r == 0; i++)
    if (!ring || runs[i].result != 0)
      r = cdev_pwrite (j->g.cd, runs[i].buf,
                       (size_t) runs[i].blocks * NC_BLOCK_BYTES,
                       ring_byte (&j->g, runs[i].pos), 0);
  return rh < 0 ? rh : r;
}

/* Build and write the planned entries: fill, pre-flush (unless PIPELINE
 * says they need none), pwrites (OVERLAP: with the REDO hook's), [preclose],
 * sync.  No lock: the closed entries only change in this thread.
 */
int
jwrite_plan (struct journal *j, const struct plan *pl, uint64_t *token)
{
  const uint64_t last_planned = j->closed[pl->count - 1].seq;
  uint64_t covered;
  const uint64_t s0 = j->closed[0].seq;
  unsigned char *p;
  size_t i, run_start = 0;
  uint32_t run_pos = 0, run_blocks = 0;
  struct run runs[RUNS_MAX];
  size_t nruns = 0;
  const bool unsynced = j->unflushed && j->hooks.pre_write_unsynced != NULL;
  int r;

  *token = 0;
  if ((r = wbuf_reserve (j, (size_t) pl->blocks * NC_BLOCK_BYTES)) < 0)
    return r;
  p = j->wbuf;
  for (i = 0; i < pl->count; i++) {
    struct closed_entry *c = &j->closed[i];
    struct nc_jentry *e = j->ebuf;
    uint64_t inline_bytes = 0;

    c->tried = true;
    memset (e, 0, jentry_payload_bytes (NC_JENTRY_VERSION, c->nblocks));
    e->magic = NC_JOURNAL_MAGIC;
    e->version = c->inline_data ? NC_JENTRY_VERSION_INLINE
      : NC_JENTRY_VERSION;
    e->flags = (pl->ring_filled ? NC_JENTRY_RING_FILLED : 0) |
      (c->inline_data ? NC_JENTRY_INLINE_DATA : 0);
    e->nblocks = c->nblocks;
    memcpy (e->uuid, j->g.uuid, sizeof e->uuid);
    e->seq = c->seq;
    e->last_seq = j->plan_last[i];
    e->root = pl->root;
    e->root_level = pl->root_level;
    e->nkeys = c->nkeys;
    JENTRY_WRITE_FIRST (e) = s0;
    if (c->nkeys > 0)
      memcpy (e->keys, &j->closed_keys.v[c->first],
              (size_t) c->nkeys * sizeof (struct nc_key));
    if (c->inline_data) {
      inline_bytes = jentry_inline_bytes (e->keys, e->nkeys);
      if ((r = read_inline (j, e)) < 0)
        return r;
    }
    e->csum = nc_csum (e, sizeof *e + (size_t) c->nkeys *
                       sizeof (struct nc_key) + inline_bytes);
    jentry_frame (e, j->g.seed, p);
    p += (size_t) c->nblocks * NC_BLOCK_BYTES;
  }

  j->filled = pl->fill_blocks > 0;
  if ((r = write_fill (j, pl)) < 0)
    return r;
  if (!j->presynced && !j->unflushed && (r = cdev_sync (j->g.cd)) < 0)
    return r;
  p = j->wbuf;
  for (i = 0; i <= pl->count; i++) {
    if (i == pl->count ||
        (i > run_start && j->plan_pos[i] != run_pos + run_blocks)) {
      if (nruns == RUNS_MAX) {
        /* More runs than the array (never in practice: a run breaks only
         * at the ring's end): write what we have now, no overlap.
         */
        if ((r = write_runs (j, runs, nruns, false, NULL)) < 0)
          return r;
        nruns = 0;
      }
      runs[nruns++] = (struct run) { .buf = p, .pos = run_pos,
                                     .blocks = run_blocks };
      p += (size_t) run_blocks * NC_BLOCK_BYTES;
      run_start = i;
      run_blocks = 0;
    }
    if (i < pl->count) {
      if (run_blocks == 0)
        run_pos = j->plan_pos[i];
      run_blocks += j->closed[i].nblocks;
    }
  }
  if ((r = write_runs (j, runs, nruns, unsynced, token)) < 0)
    return r;
  covered = preclose (j, last_planned);
  if ((r = cdev_sync (j->g.cd)) < 0)
    return r;
  j->synced_through = MAX (j->synced_through, covered);
  return 0;
}
