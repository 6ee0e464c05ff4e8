/* SPDX-License-Identifier: BSD-3-Clause */
/* forget.c — the cache forgets before the backing store changes.
 *
 * WHAT: request.c's ORDERING rule 1 as code: before any backing write,
 * zero or trim (from any mode, and writeback's own writes) no clean key
 * that a crash could bring back may cover the blocks.  forget_before_
 * backing DELETEs every piece that is not DIRTY and waits until every cut
 * of the export is durable (group commit shares the wait; nothing cached
 * and nothing pending costs no I/O); forget_after_backing is the final
 * DELETE (rule 2's bracket when it drops dirty data the backing now
 * holds).  The export's cut_seq records the newest journal entry holding
 * a cut of its keys; forget_settle_cuts waits for it.
 * WHY: the foreground paths (request.c) and writeback (writeback.c) both
 * need the cut bookkeeping; it is neither's noun.
 * INVARIANTS: nc->cut_seq only grows; a failed insert counts as a cut in
 * the open journal entry (part of it may be applied).
 * THREADS AND LOCKS: any thread; the caller holds the range lock over
 * the blocks; the btree and journal lock inside their calls.
 * FAILURE: -errno from the btree or the journal (a dead cache device
 * fails the wait, so the backing is never changed under a key that could
 * revive).
 * NOT HERE: the backing change (export-io.c), backing durability
 * (backsync.c), the mode table (request.c).
 */
#include <config.h>

#include <stdbool.h>
#include <stdint.h>

#include "bkey.h"
#include "btree.h"
#include "cache-internal.h"
#include "compiler.h"
#include "forget.h"
#include "journal.h"

#define FORGET_LOOKUP_PIECES 32

void
forget_note_cut (struct ncache_export *nc, uint64_t seq)
{
  uint64_t cur = __atomic_load_n (&nc->cut_seq, __ATOMIC_RELAXED);

  while (cur < seq &&
         !__atomic_compare_exchange_n (&nc->cut_seq, &cur, seq, false,
                                       __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
    ;
}

int
forget_settle_cuts (struct ncache_export *nc)
{
  uint64_t need = __atomic_load_n (&nc->cut_seq, __ATOMIC_ACQUIRE);

  if (need > journal_durable_seq (nc->dev->journal))
    return journal_wait (nc->dev->journal, need);
  return 0;
}

/* Drop whatever the cache holds for blocks [start, end) (journaled).
 * *seq / *cut as btree_insert.
 */
int
forget_range (struct ncache_export *nc, uint64_t start, uint64_t end,
              uint64_t *seq,
              bool *cut)
{
  struct nc_key k;

  *cut = false;
  if (start >= end)
    return 0;
  /* A DELETE key may be as long as the export; its size field is 32-bit. */
  while (start < end) {
    uint64_t e = MIN (end, start + BKEY_MAX_BLOCKS);
    bool c = false;
    int r;

    bkey_init (&k, nc->export_id, start, e, NC_KEY_DELETE);
    r = btree_insert (nc->dev->bt, &k, 1, seq, &c);
    if (r < 0) {
      /* Part of it may be applied: treat it as a cut not yet durable. */
      forget_note_cut (nc, journal_open_seq (nc->dev->journal));
      return r;
    }
    if (c)
      forget_note_cut (nc, *seq);
    *cut |= c;
    start = e;
  }
  return 0;
}

/* After the backing change: the final DELETE over [b0, b1) (it also kills
 * placeholders registered since forget).  When it drops DIRTY data the
 * backing now holds, it relies on that backing data (rule 2).
 */
int
forget_after_backing (struct ncache_export *nc, uint64_t b0, uint64_t b1,
                      bool dirty)
{
  uint64_t seq = 0;
  bool cut;
  int r;

  if (dirty)
    request_backsync_begin (nc);
  r = forget_range (nc, b0, b1, &seq, &cut);
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
int
forget_before_backing (struct ncache_export *nc, uint64_t b0, uint64_t b1,
                       bool *dirty)
{
  struct ncache_device *dev = nc->dev;
  struct btree_piece pieces[FORGET_LOOKUP_PIECES];
  uint64_t pos = b0, run_lo = b0, seq = 0;
  bool cut;
  int n, i, r;

  while (pos < b1) {
    n = btree_lookup (dev->bt, nc->export_id, pos, b1, pieces,
                      FORGET_LOOKUP_PIECES, NULL);
    if (n < 0)
      return n;
    for (i = 0; i < n; i++) {
      const struct btree_piece *p = &pieces[i];
      uint64_t lo = MAX (pos, p->start), hi = MIN (b1, p->end);

      if (lo >= hi)
        continue;
      if (p->found && (p->key.flags & NC_KEY_DIRTY)) {
        if ((r = forget_range (nc, run_lo, lo, &seq, &cut)) < 0)
          return r;
        run_lo = hi;
        *dirty = true;
      }
      pos = hi;
    }
  }
  if ((r = forget_range (nc, run_lo, b1, &seq, &cut)) < 0)
    return r;
  return forget_settle_cuts (nc);
}
