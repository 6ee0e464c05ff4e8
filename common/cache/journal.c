/* SPDX-License-Identifier: BSD-3-Clause */
/* journal.c — the running journal: open entry, group commit, placement
 * in the ring, reclaim, stats.
 *
 * WHAT: journal.h's contract, except reading the ring (journal-replay.c).
 * Keys go to the *open entry* (a growable vector); a commit thread closes
 * it (through hooks->close_entry, under the btree lock), places the closed
 * entries in the ring, and writes them with pre-flush -> pwrite -> sync.
 * WHY: one sequential write and one sync make any number of index updates
 * durable (group commit).
 *
 * ENTRIES AND SEQS: the open entry is really a run of future entries of at
 * most entry_max_keys keys each: key number i of the open entry will be in
 * entry open_seq + i / entry_max_keys, and journal_add returns the seq of
 * the entry holding the last key it added, so a caller that waits for that
 * seq waits for its own keys and no others.  Closing turns the open entry
 * into those entries (at least one, empty if the entry was "needed" or a
 * waiter wants it) and opens the next seq.  While the journal runs, seqs
 * are never reused and never move: a closed entry keeps its seq and its
 * keys until it is durable, even across failed writes (the btree pins
 * leaves with these seqs, so a key may not move to an older entry; and
 * moving it to a newer one would leave a hole in the chain that a later
 * last_seq could still name).  Only replay reuses the seqs of a torn
 * write, after dropping its survivors.
 * last_seq of entry s = max(min(oldest pin at the latest close, s),
 * last_seq of the newest durable entry); it never decreases.
 * Entry size: entry_max_blocks = min(JOURNAL_MAX_ENTRY_BLOCKS, ring / 8),
 * so a small ring (tests) still holds many entries.
 *
 * RING AND SPACE: blocks [journal_first, +journal_buckets) * bucket_blocks.
 * Entries are written in seq order one after another; an entry that does
 * not fit before the end of the ring goes to block 0.  The *live region*
 * runs from the start of entry L (last_seq of the newest durable entry) to
 * the end of the newest durable entry (write_pos); it is never
 * overwritten.  A write places as many closed entries as fit in the free
 * region such that, counting the live region it will create, at least
 * reserve = 2 * entry_max_blocks blocks stay free.  If not every closed
 * entry fits and the first one's last_seq is older than itself, the commit
 * calls hooks->reclaim(S) (S = first closed seq: every leaf pinned before
 * S gets written) and re-closes (the re-close brings the newer oldest pin,
 * so last_seq becomes S, plus any keys added meanwhile), then places again.
 * If still nothing fits, the first entry alone is written using the
 * reserve: once it is durable with last_seq = S the live region is that
 * one entry, and the rest follows in further writes of the same commit.
 * The reserve guarantees that the first entry always fits (free >= 2 * max
 * entry size after every write, so one side of the wrap has room for an
 * entry).  A batch larger than the ring is written the same way, a prefix
 * per write, with a reclaim between.
 *
 * FILL: entries are written as stamped sectors (entry version 2,
 * ondisk.h), so replay can tell a torn write from a damaged one; that
 * needs every ring block an entry is written over to hold stamped
 * sectors already (an older entry or fill), never the zeros format leaves
 * or a version 1 entry.  Replay marks the ring unfilled (unfilled_lo /
 * unfilled_len, from the write position round the whole ring) if it saw
 * any sector without a stamp; every commit first writes fill over the
 * unfilled blocks that are free by then (from unfilled_lo up to the start
 * of the live region) and syncs it, before its entries, so the writer
 * never lands on unfilled blocks.  Entries written once nothing is
 * unfilled carry NC_JENTRY_RING_FILLED.  After a format or an upgrade the
 * first commit fills the free ring and later ones the old live region as
 * it frees; then fill costs nothing.
 *
 * COMMIT: close -> [mark REDO entries] -> [place, reclaim, re-close] ->
 * hooks->pre_write (the backing stores' completed writes are durable;
 * pre_write_unsynced for REDO) -> [FILL, cdev_sync] -> cdev_sync
 * (pre-flush, unless PIPELINE or REDO: data and btree nodes the keys need
 * are durable)
 * -> one pwrite per
 * contiguous run -> cdev_sync -> durable_seq advances, live region and
 * write position move -> hooks->committed -> every waiter whose seq is now
 * durable wakes.  Waiters that arrive during a commit are served by the
 * next one, whatever their number (group commit).
 *
 * PIPELINE: the pre-flush exists only for the writes the keys rely on,
 * and every such write completed before its key was added, so before the
 * entry was closed.  When someone waits for more than a write carries (a
 * waiter's seq beyond it, or a throttled writer), the commit closes the
 * next entries after its pwrites and *before* its final sync: that sync
 * then covers their data too (synced_through), and the next write of the
 * same commit skips its pre-flush.  Under a stream of FLUSHes (every
 * connection's, and writers that queue up) a write thus costs one
 * cdev_sync instead of two.  A write still lies between two syncs
 * (write_first stays what replay expects), and an entry closed after the
 * final sync began (a commit's first close, the re-close after reclaim or
 * at the seq bound) is not covered: its write pre-flushes as before.
 * Nothing is pre-closed for the delay commit alone (that would turn the
 * delay into back-to-back commits) nor while stopping.
 *
 * REDO: a write that a waiter (FLUSH, FUA) wants and whose entries point
 * at little data (<= JOURNAL_INLINE_MAX_BLOCKS in all, each entry within
 * entry_max_blocks) skips its pre-flush: its entries are version 4 and
 * carry the bytes of every data key they hold, copied when the entry is
 * built from the stash of blocks just written (journal-stash.c: tagged
 * with block and gen, so what it gives is what the key's write put on
 * the device) or else read back from the keys' blocks (ondisk.h
 * NC_JENTRY_INLINE_DATA), and
 * hooks->pre_write_unsynced (the backing stores) and write_unsynced (the
 * data checksum pages, written while the entries' writes are in flight:
 * journal-write.c OVERLAP) leave the pages' sync to the final sync.
 * Data, pages, entry: ONE sync.  A crash before it either
 * tears the entry (its checksum covers the data: the write was never
 * acknowledged and is dropped like any torn write) or leaves it whole,
 * and then recovery writes the data back where the index still points at
 * it (journal_redo, assemble.c) before the journal writes again.  Only
 * the newest write needs that: every older write was followed by a sync
 * that completed.  Nothing but data keys needs the pre-flush: btree
 * nodes are synced by their own writes (bnode.c) before anything can
 * point at them, prio copies (gens) likewise (prio.c), fill has its own
 * sync, and discards concern buckets no durable key points into.  So the
 * rule is: every planned entry carries its data, or is covered by a
 * completed sync (PIPELINE); else the old pre-flush.  An entry is sized
 * for its data once, before its first write, and keeps that size (and
 * its data) across retries; a key whose blocks lie outside the device is
 * never carried (index keys never do).  Replay never looks at the data
 * itself: nothing is dropped because a data block differs.
 *
 * INLINE COMMIT: a commit runs in whichever thread holds the commit token
 * (j->committing): the commit thread, or a caller of
 * journal_wait_or_commit (a FLUSH, a FUA write) that finds no commit
 * running and runs the commit itself instead of kicking the thread and
 * sleeping until it is done.  At queue depth 1 that saves two thread
 * hand-offs (a futex wake-up each way) per FLUSH or FUA write; a caller
 * that finds a commit running waits for it as before, so concurrent
 * flushes still share commits (group commit).  The token makes "the
 * commit thread's own" state below the token holder's: commit() never
 * runs twice at once.  A caller tries once, not while commits fail (the
 * thread's back-off stays in charge of retries) nor while stopping; the
 * commit thread waits while someone else holds the token, and the holder
 * kicks it when it puts the token back with work left or a stop pending.
 *
 * INVARIANTS:
 * - seqs durable_seq + 1 .. open_seq - 1 are exactly the closed entries,
 *   in order; closed[i].seq == durable_seq + 1 + i.
 * - live[] holds the durable entries L .. durable_seq with their
 *   positions, contiguous in seq and laid out in ring order.
 * - A failed write is retried from the same write position with the same
 *   seqs and keys, so an entry's seq is only ever written at one place.
 * - open_seq - durable_seq <= g.blocks (ring blocks), however long commits
 *   fail: closing stops at the bound (SEQ BOUND in
 *   journal_close_entry_locked), so a btree node written meanwhile has a
 *   journal_seq the next open accepts as torn (device.c torn_jseq_max).
 *   Keys past it stay open (in memory, as closed entries would) until a
 *   commit succeeds.
 *
 * THREADS AND LOCKS: j->lock guards everything below it in struct journal
 * (journal-internal.h).
 * journal_add and journal_close_entry_locked are called with the btree
 * lock held and take j->lock (btree -> journal).  The commit thread (or
 * the commit token's holder, INLINE COMMIT; "the commit thread" below)
 * calls the hooks and does I/O without j->lock.  The closed entries and
 * their keys change only in the commit thread (closing runs there, inside
 * hooks->close_entry), so the commit thread reads them without the lock
 * while it builds the write.  open_seq and durable_seq are also readable
 * lock-free (atomic).
 *
 * FAILURE: a failed write or sync (or reclaim, or no room) fails the
 * waiters of the closed entries with -EIO, is logged once (until a commit
 * succeeds again) and counted; the entries stay closed and are retried by
 * the next commit: at once if someone waits, else after a back-off
 * starting at delay_ms.  journal_add cannot fail: if memory for the open
 * entry runs out the keys are lost, so the journal is marked broken and
 * every later wait or flush returns -EIO.  After journal_stop, waits for
 * seqs not yet durable return -ESHUTDOWN (journal_add still appends, in
 * memory only: it has no way to report an error).
 *
 * NOT HERE: reading the ring — scan, replay, check, format
 * (journal-replay.c); turning a plan into device I/O — fill, entries,
 * pre-flush, pwrites, pre-close, sync (journal-write.c); REDO's stash
 * of blocks just written (journal-stash.c); an entry's
 * stamped sectors (journal-entry.c); the
 * ring's on-disk fields (journal-internal.h);
 * what keys mean (btree), pins (btree), buckets freed at a seq (bucket,
 * through hooks->committed).
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
#include "cleanup.h"
#include "clock.h"
#include "compiler.h"
#include "csum.h"
#include "invariant.h"
#include "journal.h"
#include "journal-internal.h"
#include "log.h"
#include "ondisk.h"
#include "super.h"

#define WRITE_MAX_BLOCKS 2048u          /* 8 MiB: most blocks in one write */
#define RETRY_MIN_MS 10u
#define RETRY_MAX_MS 5000u
#define MIN_RING_BLOCKS 8u

/* A journal_wait caller, on its own stack. */
struct waiter {
  struct waiter *next;
  uint64_t seq;
  int result;
  bool done;
};

/* ---- small helpers ---- */


static uint32_t
blocks_for_keys (uint64_t nkeys)
{
  return jentry_blocks_for (nkeys, 0);
}

static int
key_vec_reserve (struct key_vec *kv, size_t extra)
{
  size_t cap;
  struct nc_key *v;

  if (kv->len + extra <= kv->cap)
    return 0;
  if (extra > SIZE_MAX / sizeof (struct nc_key) / 2 - kv->len)
    return -ENOMEM;
  cap = kv->cap ? kv->cap : 64;
  while (cap < kv->len + extra)
    cap *= 2;
  v = realloc (kv->v, cap * sizeof *v);
  if (v == NULL)
    return -ENOMEM;
  kv->v = v;
  kv->cap = cap;
  return 0;
}

/* Read the ring geometry from a superblock; -EINVAL (logged) if unusable. */
int
journal_geom_from_sb (struct cdev *cd, const struct nc_sb *sb,
                      struct ring_geom *g)
{
  uint64_t first, blocks;

  first = (uint64_t) sb->journal_first * sb->bucket_blocks;
  blocks = (uint64_t) sb->journal_buckets * sb->bucket_blocks;
  if (sb->journal_first == 0 || blocks < MIN_RING_BLOCKS ||
      blocks > UINT32_MAX / 2 ||
      !range_within (first * NC_BLOCK_BYTES, blocks * NC_BLOCK_BYTES,
                     cd->size_bytes)) {
    log_error ("journal (%s): unusable journal region: buckets %" PRIu32
               " + %" PRIu32 " of %" PRIu32 " blocks", cd->path,
               sb->journal_first, sb->journal_buckets, sb->bucket_blocks);
    return -EINVAL;
  }
  g->cd = cd;
  memcpy (g->uuid, sb->uuid, sizeof g->uuid);
  g->offset = first * NC_BLOCK_BYTES;
  g->blocks = blocks;
  g->seed = jstamp_seed (sb->uuid);
  g->bucket_blocks = sb->bucket_blocks;
  return 0;
}

/* Free blocks from w (normalised) forward to a; a == w means full (the
 * live region is never empty).
 */
static uint32_t
free_blocks (uint32_t ring, uint32_t a, uint32_t w)
{
  w %= ring;
  if (a == w)
    return 0;
  return a > w ? a - w : ring - w + a;
}

/* Place n blocks in the free part of the ring, from *w forward to a.  An
 * entry never straddles the end: it goes to block 0 instead.
 */
static bool
place (uint32_t ring, uint32_t a, uint32_t *w, uint32_t n, uint32_t *pos)
{
  uint32_t wp = *w % ring;

  if (a == wp)
    return false;
  if (a > wp) {
    if (n > a - wp)
      return false;
    *pos = wp;
  }
  else if (n <= ring - wp)
    *pos = wp;
  else if (n <= a)
    *pos = 0;
  else
    return false;
  *w = *pos + n;
  return true;
}
/* ---- create, destroy ---- */

int
journal_create (struct cdev *cd, const struct nc_sb *sb,
                struct journal **out)
{
  struct journal *j;
  pthread_condattr_t ca;
  int r;

  j = calloc (1, sizeof *j);
  if (j == NULL)
    return -ENOMEM;
  if ((r = journal_geom_from_sb (cd, sb, &j->g)) < 0)
    goto err_free;
  j->entry_max_blocks = MIN (JOURNAL_MAX_ENTRY_BLOCKS, j->g.blocks / 8);
  j->entry_max_keys = keys_in_blocks (NC_JENTRY_VERSION,
                                      j->entry_max_blocks);
  j->reserve_blocks = 2 * j->entry_max_blocks;
  j->live = calloc (j->g.blocks, sizeof *j->live);
  j->ebuf = malloc (jentry_payload_bytes (NC_JENTRY_VERSION,
                                          j->entry_max_blocks));
  if (j->live == NULL || j->ebuf == NULL) {
    r = -ENOMEM;
    goto err_free;
  }
  /* No stash, no harm: every inline copy is read back. */
  (void) jstash_create (&j->stash);
  j->pin = UINT64_MAX;
  j->retry_ms = RETRY_MIN_MS;
  pthread_mutex_init (&j->lock, NULL);
  pthread_condattr_init (&ca);
  pthread_condattr_setclock (&ca, CLOCK_MONOTONIC);
  pthread_cond_init (&j->kick, &ca);
  pthread_cond_init (&j->done, NULL);
  pthread_condattr_destroy (&ca);
  j->st.ring_blocks = j->g.blocks;
  *out = j;
  return 0;

 err_free:
  free (j->live);
  free (j->ebuf);
  free (j);
  return r;
}

void
journal_destroy (struct journal *j)
{
  if (j == NULL)
    return;
  if (j->thread_joinable) {
    pthread_mutex_lock (&j->lock);
    j->aborting = true;
    pthread_cond_signal (&j->kick);
    pthread_mutex_unlock (&j->lock);
    pthread_join (j->thread, NULL);
  }
  pthread_cond_destroy (&j->kick);
  pthread_cond_destroy (&j->done);
  pthread_mutex_destroy (&j->lock);
  free (j->open.v);
  free (j->closed_keys.v);
  free (j->closed);
  free (j->live);
  free (j->wbuf);
  free (j->ebuf);
  free (j->fill_buf);
  free (j->plan_pos);
  free (j->plan_last);
  free (j->ibuf);
  cdev_ring_destroy (j->ring);
  jstash_destroy (j->stash);
  free (j->redo_keys.v);
  free (j->redo_data);
  free (j);
}

/* ---- the open entry (btree lock held by the callers) ---- */

/* Seq of the entry that will hold the last key of the open entry. */
static uint64_t
open_last_seq_locked (struct journal *j)
{
  ASSERT_HELD (&j->lock);
  if (j->open.len == 0)
    return j->open_seq;
  return j->open_seq + (j->open.len - 1) / j->entry_max_keys;
}

uint64_t
journal_add (struct journal *j, const struct nc_key *keys, size_t n)
{
  SCOPED_LOCK (&j->lock);

  if (n == 0)
    return open_last_seq_locked (j);
  if (key_vec_reserve (&j->open, n) < 0) {
    if (j->broken == 0)
      log_error ("journal (%s): out of memory for the open entry: %zu keys "
                 "are lost; every later flush fails", j->g.cd->path, n);
    j->broken = -ENOMEM;
    return open_last_seq_locked (j);
  }
  memcpy (&j->open.v[j->open.len], keys, n * sizeof *keys);
  j->open.len += n;
  if (j->open_since_ns == 0) {
    j->open_since_ns = clock_now_ns ();
    pthread_cond_signal (&j->kick);
  }
  return open_last_seq_locked (j);
}

void
journal_mark_needed (struct journal *j)
{
  SCOPED_LOCK (&j->lock);

  j->needed = true;
  if (j->open_since_ns == 0) {
    j->open_since_ns = clock_now_ns ();
    pthread_cond_signal (&j->kick);
  }
}

int
journal_close_entry_locked (struct journal *j, pthread_mutex_t *btree_lock,
                            const struct nc_key *root, uint16_t root_level,
                            uint64_t oldest_pin)
{
  ASSERT_HELD (btree_lock);
  SCOPED_LOCK (&j->lock);
  size_t n, nentries, i, base, keep = 0;
  uint64_t room;
  uint32_t kpe = j->entry_max_keys;

  j->root = *root;
  j->root_level = root_level;
  /* A pin older than the live region names entries that may already be
   * overwritten: a btree bug; last_seq is clamped (last_seq_for_locked)
   * in a release build, a debug or test build aborts.
   */
  if (j->nlive > 0 && oldest_pin < j->live[j->live_head].seq &&
      !j->pin_warned) {
    log_error ("BUG: journal (%s): oldest pin %" PRIu64 " is older than the "
               "oldest live entry %" PRIu64, j->g.cd->path, oldest_pin,
               j->live[j->live_head].seq);
    j->pin_warned = true;
    INVARIANT_ABORT ();
  }
  j->pin = oldest_pin;

  n = j->open.len;
  if (n == 0 && !j->needed &&
      !(j->nwaiters > 0 && j->want_seq >= j->open_seq))
    return 0;
  nentries = n == 0 ? 1 : (n + kpe - 1) / kpe;
  /* SEQ BOUND: while commits fail, at most a ring's worth of seqs past
   * the durable entry (a node write's journal_seq is below that, so a torn
   * one still reads as torn, not corrupt: device.c, bset.c).  Beyond, the
   * keys stay open; the commit fails their waiters too (close_held).
   */
  room = j->open_seq - j->durable_seq < j->g.blocks
    ? j->g.blocks - (j->open_seq - j->durable_seq) : 0;
  j->close_held = nentries > room;
  if (room == 0) {
    if (!j->bound_logged)
      log_warning ("journal (%s): %" PRIu64 " entries wait for a commit; "
                   "no more are closed until one succeeds",
                   j->g.cd->path, j->open_seq - 1 - j->durable_seq);
    j->bound_logged = true;
    return 0;
  }
  j->bound_logged = false;
  if (nentries > room) {
    nentries = room;
    keep = n - nentries * kpe;    /* > 0: n > room * kpe */
    n -= keep;
  }

  if (j->nclosed + nentries > j->closed_cap) {
    size_t cap = MAX (j->closed_cap * 2, j->nclosed + nentries);
    struct closed_entry *c = realloc (j->closed, MAX (cap, 16) * sizeof *c);

    if (c == NULL)
      return -ENOMEM;
    j->closed = c;
    j->closed_cap = MAX (cap, 16);
  }
  base = j->closed_keys.len;
  if (base == 0 && keep == 0) {
    struct key_vec t = j->closed_keys;

    j->closed_keys = j->open;
    j->open = t;
  }
  else if (n > 0) {
    if (key_vec_reserve (&j->closed_keys, n) < 0)
      return -ENOMEM;
    memcpy (&j->closed_keys.v[base], j->open.v, n * sizeof *j->open.v);
    j->closed_keys.len += n;
  }
  /* Keys past the bound stay open, first in the next entry: key i of
   * the open entry still lands in entry open_seq + i / kpe.
   */
  if (keep > 0)
    memmove (j->open.v, j->open.v + n, keep * sizeof *j->open.v);
  j->open.len = keep;

  for (i = 0; i < nentries; i++) {
    struct closed_entry *c = &j->closed[j->nclosed++];

    c->seq = j->open_seq + i;
    c->first = base + i * kpe;
    c->nkeys = MIN ((size_t) kpe, n - i * kpe);
    if (n == 0)
      c->nkeys = 0;
    c->nblocks = blocks_for_keys (c->nkeys);
    c->inline_data = c->tried = false;
  }
  __atomic_store_n (&j->open_seq, j->open_seq + nentries, __ATOMIC_RELEASE);
  j->needed = false;
  j->open_since_ns = keep > 0 ? clock_now_ns () : 0;
  pthread_cond_broadcast (&j->done);    /* throttlers */
  return 0;
}

/* ---- the commit ---- */

/* last_seq of closed entry seq s (see ENTRIES AND SEQS). */
static uint64_t
last_seq_for_locked (struct journal *j, uint64_t s)
{
  ASSERT_HELD (&j->lock);
  return MAX (MIN (j->pin, s), j->live[j->live_head].seq);
}

static const struct live_entry *
live_of_locked (struct journal *j, uint64_t seq)
{
  ASSERT_HELD (&j->lock);
  size_t i = seq - j->live[j->live_head].seq;

  return &j->live[(j->live_head + i) % j->g.blocks];
}

static int
plan_reserve (struct journal *j)
{
  uint32_t *p;
  uint64_t *l;
  size_t cap;

  if (j->nclosed <= j->plan_cap)
    return 0;
  cap = MAX (j->nclosed, j->plan_cap * 2);
  p = realloc (j->plan_pos, cap * sizeof *p);
  if (p == NULL)
    return -ENOMEM;
  j->plan_pos = p;
  l = realloc (j->plan_last, cap * sizeof *l);
  if (l == NULL)
    return -ENOMEM;
  j->plan_last = l;
  j->plan_cap = cap;
  return 0;
}

/* Place as many closed entries as fit.  With use_reserve false, only the
 * first entry, ignoring the reserve.
 */
static void
plan_locked (struct journal *j, bool use_reserve, struct plan *pl)
{
  ASSERT_HELD (&j->lock);
  const uint32_t ring = j->g.blocks;
  const uint32_t a = j->live[j->live_head].pos;
  const uint64_t s0 = j->closed[0].seq;
  uint32_t w = j->write_pos, pos, n, a_new;
  uint64_t l;
  size_t i;

  memset (pl, 0, sizeof *pl);
  pl->root = j->root;
  pl->root_level = j->root_level;
  for (i = 0; i < j->nclosed; i++) {
    n = j->closed[i].nblocks;
    if (pl->blocks + n > WRITE_MAX_BLOCKS)
      break;
    if (!place (ring, a, &w, n, &pos)) {
      pl->no_room = true;
      break;
    }
    l = last_seq_for_locked (j, j->closed[i].seq);
    j->plan_pos[i] = pos;
    j->plan_last[i] = l;
    if (use_reserve) {
      a_new = l >= s0 ? j->plan_pos[l - s0] : live_of_locked (j, l)->pos;
      if (free_blocks (ring, a_new, w) < j->reserve_blocks) {
        pl->no_room = true;
        break;
      }
    }
    pl->count = i + 1;
    pl->blocks += n;
    pl->end = w;
    if (!use_reserve)
      break;
  }

  /* FILL: the unfilled blocks that are free now, from unfilled_lo up to
   * the start of the live region.
   */
  pl->fill_lo = j->unfilled_lo;
  pl->fill_blocks = 0;
  if (j->unfilled_len > 0)
    pl->fill_blocks = MIN ((a + ring - j->unfilled_lo) % ring,
                           j->unfilled_len);
  pl->ring_filled = pl->fill_blocks == j->unfilled_len;
}

/* The planned entries are durable: move the live region, drop them from
 * the closed list.  Returns the new durable seq.
 */
static uint64_t
apply_plan_locked (struct journal *j, const struct plan *pl)
{
  ASSERT_HELD (&j->lock);
  const uint64_t last = j->closed[pl->count - 1].seq;
  const uint64_t l_new = j->plan_last[pl->count - 1];
  uint64_t nkeys = 0;
  size_t i, kept_keys;

  while (j->nlive > 0 && j->live[j->live_head].seq < l_new) {
    j->live_head = (j->live_head + 1) % j->g.blocks;
    j->nlive--;
  }
  for (i = 0; i < pl->count; i++) {
    const struct closed_entry *c = &j->closed[i];

    nkeys += c->nkeys;
    if (c->seq < l_new)
      continue;
    j->live[(j->live_head + j->nlive) % j->g.blocks] = (struct live_entry) {
      .seq = c->seq, .pos = j->plan_pos[i], .nblocks = c->nblocks,
    };
    j->nlive++;
  }
  j->write_pos = pl->end;
  j->unfilled_lo = (pl->fill_lo + pl->fill_blocks) % j->g.blocks;
  j->unfilled_len -= pl->fill_blocks;
  if (j->unfilled_len == 0 && j->fill_buf != NULL) {
    free (j->fill_buf);
    j->fill_buf = NULL;
  }

  /* Drop the written entries and their keys. */
  if (pl->count == j->nclosed) {
    j->nclosed = 0;
    j->closed_keys.len = 0;
  }
  else {
    size_t first_kept = j->closed[pl->count].first;

    kept_keys = j->closed_keys.len - first_kept;
    if (kept_keys > 0)
      memmove (j->closed_keys.v, &j->closed_keys.v[first_kept],
               kept_keys * sizeof *j->closed_keys.v);
    j->closed_keys.len = kept_keys;
    memmove (j->closed, &j->closed[pl->count],
             (j->nclosed - pl->count) * sizeof *j->closed);
    j->nclosed -= pl->count;
    for (i = 0; i < j->nclosed; i++)
      j->closed[i].first -= first_kept;
  }

  __atomic_store_n (&j->durable_seq, last, __ATOMIC_RELEASE);
  j->st.commits++;
  j->st.presynced += j->presynced;
  j->st.inlined += j->unflushed;
  j->st.inline_stashed_blocks += j->stash_hit_blocks;
  j->st.inline_read_blocks += j->stash_miss_blocks;
  j->stash_hit_blocks = j->stash_miss_blocks = 0;
  j->st.fill_syncs += j->filled;
  j->st.entries += pl->count;
  j->st.keys += nkeys;
  if (j->failing) {
    log_info ("journal (%s): commits succeed again (durable seq %" PRIu64
              ")", j->g.cd->path, last);
    j->failing = false;
  }
  j->retry_ms = RETRY_MIN_MS;
  return last;
}

/* Wake every waiter whose seq is durable. */
static void
serve_waiters_locked (struct journal *j)
{
  ASSERT_HELD (&j->lock);
  const uint64_t durable = j->durable_seq;
  struct waiter **pw = &j->waiters, *w;
  uint64_t served = 0;

  while ((w = *pw) != NULL) {
    if (w->seq <= durable) {
      *pw = w->next;
      w->result = 0;
      w->done = true;
      j->nwaiters--;
      served++;
    }
    else
      pw = &w->next;
  }
  j->st.waiters += served;
  j->st.max_batch_waiters = MAX (j->st.max_batch_waiters, served);
  pthread_cond_broadcast (&j->done);
}

/* A commit failed: fail its waiters (every waiter if all is true, else
 * those whose seq is closed), back off, log once.
 */
static void
commit_failed (struct journal *j, int r, const char *what, bool all)
{
  SCOPED_LOCK (&j->lock);
  /* Waiters for keys held open by the seq bound fail too: they wait for
   * this commit as much as the closed ones do.
   */
  const uint64_t covered = all || j->close_held ? UINT64_MAX
    : j->open_seq - 1;
  struct waiter **pw = &j->waiters, *w;

  j->st.errors++;
  j->last_result = -EIO;
  if (!j->failing) {
    log_error ("journal (%s): commit of entries %" PRIu64 "..%" PRIu64
               " failed (%s: %s); they stay in memory and are retried",
               j->g.cd->path, j->durable_seq + 1, j->open_seq - 1, what,
               strerror (-r));
    j->failing = true;
  }
  else
    log_debug ("journal (%s): commit failed again (%s: %s)",
               j->g.cd->path, what, strerror (-r));
  while ((w = *pw) != NULL) {
    if (w->seq <= covered) {
      *pw = w->next;
      w->result = -EIO;
      w->done = true;
      j->nwaiters--;
      j->st.waiters++;
    }
    else
      pw = &w->next;
  }
  j->retry_at_ns = clock_now_ns () + (uint64_t) j->retry_ms * 1000000u;
  j->retry_ms = MIN (j->retry_ms * 2, RETRY_MAX_MS);
  pthread_cond_broadcast (&j->done);
}

/* Close the open entry and write every closed entry (see COMMIT and RING
 * AND SPACE).  Called by the commit thread without the lock.
 */
static int
commit (struct journal *j)
{
  struct plan pl;
  bool reclaimed = false, need_reclaim;
  uint64_t s0, durable, token;
  int r;

  if ((r = j->hooks.close_entry (j->hooks.opaque, j)) < 0) {
    commit_failed (j, r, "closing the entry", true);
    return r;
  }
  for (;;) {
    pthread_mutex_lock (&j->lock);
    if (j->nclosed == 0) {
      serve_waiters_locked (j);
      j->last_result = 0;
      pthread_mutex_unlock (&j->lock);
      return 0;
    }
    if ((r = plan_reserve (j)) < 0) {
      pthread_mutex_unlock (&j->lock);
      commit_failed (j, r, "planning", false);
      return r;
    }
    s0 = j->closed[0].seq;
    jwrite_mark_inline_locked (j);
    plan_locked (j, true, &pl);
    need_reclaim = pl.no_room && !reclaimed &&
      last_seq_for_locked (j, s0) < s0;
    if (need_reclaim)
      j->st.reclaims++;
    else if (pl.count == 0)
      plan_locked (j, false, &pl);
    pthread_mutex_unlock (&j->lock);

    if (need_reclaim) {
      reclaimed = true;
      r = j->hooks.reclaim ? j->hooks.reclaim (j->hooks.opaque, s0)
        : -ENOSPC;
      if (r < 0) {
        commit_failed (j, r, "reclaiming journal space", false);
        return r;
      }
      if ((r = j->hooks.close_entry (j->hooks.opaque, j)) < 0) {
        commit_failed (j, r, "closing the entry", true);
        return r;
      }
      continue;
    }
    if (pl.count == 0) {
      r = -ENOSPC;
      commit_failed (j, r, "no room in the ring even after reclaim", false);
      return r;
    }

    pthread_mutex_lock (&j->lock);
    j->presynced = j->closed[pl.count - 1].seq <= j->synced_through;
    j->unflushed = !j->presynced && jwrite_unflushed_locked (j, &pl);
    pthread_mutex_unlock (&j->lock);
    token = 0;
    r = 0;
    if (j->unflushed && j->hooks.pre_write_unsynced != NULL)
      r = j->hooks.pre_write_unsynced (j->hooks.opaque);
    else if (j->hooks.pre_write != NULL)
      r = j->hooks.pre_write (j->hooks.opaque);
    if (r < 0) {
      commit_failed (j, r, "flushing the backing stores first", false);
      return r;
    }
    if ((r = jwrite_plan (j, &pl, &token)) < 0) {
      commit_failed (j, r, "writing the entries", false);
      return r;
    }
    if (token != 0 && j->hooks.synced != NULL)
      j->hooks.synced (j->hooks.opaque, token);
    pthread_mutex_lock (&j->lock);
    durable = apply_plan_locked (j, &pl);
    pthread_mutex_unlock (&j->lock);
    if (j->hooks.committed)
      j->hooks.committed (j->hooks.opaque, durable);
    pthread_mutex_lock (&j->lock);
    serve_waiters_locked (j);
    pthread_mutex_unlock (&j->lock);
    reclaimed = false;
    /* Keys the seq bound held open: room now (close_held is the commit
     * thread's own).
     */
    if (j->close_held &&
        (r = j->hooks.close_entry (j->hooks.opaque, j)) < 0) {
      commit_failed (j, r, "closing the entry", true);
      return r;
    }
  }
}

/* ---- the commit thread ---- */

static bool
has_work_locked (struct journal *j)
{
  ASSERT_HELD (&j->lock);
  return j->open.len > 0 || j->needed || j->nclosed > 0 || j->nwaiters > 0;
}

/* Should a commit start now?  Else *deadline_ns = when (UINT64_MAX:
 * until kicked).
 */
static bool
commit_due_locked (struct journal *j, uint64_t now, uint64_t *deadline_ns)
{
  ASSERT_HELD (&j->lock);
  uint64_t t;

  *deadline_ns = UINT64_MAX;
  if (j->nwaiters > 0 ||
      (j->throttlers > 0 && j->open.len > JOURNAL_THROTTLE_KEYS))
    return true;
  if (j->nclosed > 0) {
    if (now >= j->retry_at_ns)
      return true;
    *deadline_ns = j->retry_at_ns;
  }
  if (j->open_since_ns != 0) {
    t = j->open_since_ns + j->delay_ns;
    if (now >= t)
      return true;
    *deadline_ns = MIN (*deadline_ns, t);
  }
  return false;
}

/* Run one commit holding the commit token (INLINE COMMIT); called and
 * returns with the lock held, drops it around the commit.
 */
static void
commit_with_token_locked (struct journal *j)
{
  ASSERT_HELD (&j->lock);
  assert (!j->committing);
  j->committing = true;
  j->committer = pthread_self ();
  pthread_mutex_unlock (&j->lock);
  commit (j);
  pthread_mutex_lock (&j->lock);
  j->committing = false;
  /* Waiters may take the token now; the thread waits for it (work left:
   * keys added meanwhile, throttlers, a stop).
   */
  pthread_cond_broadcast (&j->done);
  if (has_work_locked (j) || j->stopping || j->throttlers > 0)
    pthread_cond_signal (&j->kick);
}

/* Does this thread run commits (the hooks call in from there)? */
static bool
in_commit_locked (struct journal *j)
{
  ASSERT_HELD (&j->lock);
  return pthread_equal (pthread_self (), j->thread) ||
    (j->committing && pthread_equal (pthread_self (), j->committer));
}

static void *
commit_thread (void *arg)
{
  struct journal *j = arg;
  struct waiter *w;
  uint64_t deadline;
  struct timespec ts;
  int r;

  pthread_mutex_lock (&j->lock);
  for (;;) {
    if (j->aborting)
      break;
    if (j->committing) {        /* an inline commit: it kicks us after */
      pthread_cond_wait (&j->kick, &j->lock);
      continue;
    }
    if (j->stopping) {
      if (has_work_locked (j))
        commit_with_token_locked (j);
      break;
    }
    if (commit_due_locked (j, clock_now_ns (), &deadline)) {
      commit_with_token_locked (j);
      continue;
    }
    if (deadline == UINT64_MAX)
      pthread_cond_wait (&j->kick, &j->lock);
    else {
      ts.tv_sec = deadline / 1000000000u;
      ts.tv_nsec = deadline % 1000000000u;
      r = pthread_cond_timedwait (&j->kick, &j->lock, &ts);
      (void) r;
    }
  }
  j->running = false;
  while ((w = j->waiters) != NULL) {
    j->waiters = w->next;
    w->result = w->seq <= j->durable_seq ? 0 : -ESHUTDOWN;
    w->done = true;
  }
  j->nwaiters = 0;
  pthread_cond_broadcast (&j->done);
  pthread_mutex_unlock (&j->lock);
  return NULL;
}

int
journal_start (struct journal *j, unsigned delay_ms,
               const struct journal_hooks *hooks)
{
  int r;

  if (!j->replayed || j->thread_joinable || hooks == NULL ||
      hooks->close_entry == NULL) {
    log_error ("journal (%s): cannot start: %s", j->g.cd->path,
               !j->replayed ? "not replayed" :
               j->thread_joinable ? "already started" : "no close hook");
    return -EINVAL;
  }
  pthread_mutex_lock (&j->lock);
  j->hooks = *hooks;
  j->delay_ns = (uint64_t) delay_ms * 1000000u;
  j->retry_ms = MAX (delay_ms, RETRY_MIN_MS);
  j->running = true;
  j->stopping = false;
  pthread_mutex_unlock (&j->lock);
  r = pthread_create (&j->thread, NULL, commit_thread, j);
  if (r != 0) {
    log_error ("journal (%s): cannot start the commit thread: %s",
               j->g.cd->path, strerror (r));
    j->running = false;
    return -r;
  }
  j->thread_joinable = true;
  return 0;
}

int
journal_stop (struct journal *j)
{
  int r;

  if (!j->thread_joinable)
    return 0;
  pthread_mutex_lock (&j->lock);
  j->stopping = true;
  pthread_cond_signal (&j->kick);
  pthread_mutex_unlock (&j->lock);
  pthread_join (j->thread, NULL);
  j->thread_joinable = false;
  pthread_mutex_lock (&j->lock);
  r = j->last_result;
  pthread_mutex_unlock (&j->lock);
  return r;
}

/* ---- any thread, no btree lock ---- */

uint64_t
journal_open_seq (struct journal *j)
{
  return __atomic_load_n (&j->open_seq, __ATOMIC_ACQUIRE);
}

uint64_t
journal_durable_seq (struct journal *j)
{
  return __atomic_load_n (&j->durable_seq, __ATOMIC_ACQUIRE);
}

/* journal_wait, and with may_commit, INLINE COMMIT. */
static int
wait_seq (struct journal *j, uint64_t seq, bool may_commit)
{
  SCOPED_LOCK (&j->lock);
  struct waiter w = { .seq = seq };

  if (seq <= j->durable_seq) {
    j->st.waiters++;
    return 0;
  }
  if (j->broken)
    return -EIO;
  if (!j->running || j->stopping)
    return -ESHUTDOWN;
  if (in_commit_locked (j)) {
    log_error ("journal (%s): wait for seq %" PRIu64 " from the commit "
               "thread itself (a hook flushed the journal)",
               j->g.cd->path, seq);
    return -EDEADLK;
  }
  w.seq = MIN (seq, open_last_seq_locked (j));
  w.next = j->waiters;
  j->waiters = &w;
  j->nwaiters++;
  j->want_seq = MAX (j->want_seq, w.seq);
  if (may_commit && !j->committing && !j->failing && j->broken == 0)
    commit_with_token_locked (j);
  if (!w.done)
    pthread_cond_signal (&j->kick);
  while (!w.done)
    pthread_cond_wait (&j->done, &j->lock);
  if (w.result == 0 && j->broken)
    return -EIO;
  return w.result;
}

int
journal_wait (struct journal *j, uint64_t seq)
{
  return wait_seq (j, seq, false);
}

int
journal_wait_or_commit (struct journal *j, uint64_t seq)
{
  return wait_seq (j, seq, true);
}

/* The seq journal_flush waits for. */
static uint64_t
flush_target (struct journal *j)
{
  uint64_t target;

  pthread_mutex_lock (&j->lock);
  if (j->open_seq == 0)
    target = 0;
  else if (j->open.len > 0 || j->needed)
    target = open_last_seq_locked (j);
  else
    target = j->open_seq - 1;
  pthread_mutex_unlock (&j->lock);
  return target;
}

int
journal_flush (struct journal *j)
{
  return wait_seq (j, flush_target (j), false);
}

int
journal_flush_or_commit (struct journal *j)
{
  return wait_seq (j, flush_target (j), true);
}

void
journal_throttle (struct journal *j)
{
  SCOPED_LOCK (&j->lock);

  /* Not while failing at the seq bound: no commit can take the keys
   * before one succeeds, and the writers' FLUSH and FUA fail meanwhile.
   */
  while (j->open.len > JOURNAL_THROTTLE_KEYS && j->running &&
         !j->stopping && !(j->close_held && j->failing)) {
    j->throttlers++;
    pthread_cond_signal (&j->kick);
    pthread_cond_wait (&j->done, &j->lock);
    j->throttlers--;
  }
}

bool
journal_would_throttle (struct journal *j)
{
  bool busy;

  if (pthread_mutex_trylock (&j->lock) != 0)
    return true;
  busy = j->open.len > JOURNAL_THROTTLE_KEYS;
  pthread_mutex_unlock (&j->lock);
  return busy;
}

void
journal_get_stats (struct journal *j, struct journal_stats *st)
{
  SCOPED_LOCK (&j->lock);
  uint32_t used = 0;

  *st = j->st;
  st->durable_seq = j->durable_seq;
  if (j->nlive > 0) {
    st->last_seq = j->live[j->live_head].seq;
    used = j->g.blocks -
      free_blocks (j->g.blocks, j->live[j->live_head].pos, j->write_pos);
  }
  st->waiting = j->nwaiters;
  st->ring_blocks = j->g.blocks;
  st->ring_used_blocks = used;
}
