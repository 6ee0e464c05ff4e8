/* SPDX-License-Identifier: BSD-3-Clause */
/* test-btree-walk-fx.h — the fixture of the tests of the index's walks
 * (btree-walk.c): btree_scan, btree_replace and the incremental btree_gc.
 *
 * PROGRAMS: test-btree-scan (scans and replace-if-unchanged) and
 * test-btree-gc (the GC pass, with hooks, threads and a crash).  This
 * fixture (test-btree-walk-fx.c) holds the fakes, the context, key walks
 * and the block snapshots.
 *
 * WHAT: scan order, filters, stale keys skipped, whole keys, the cursor
 * resumed across many leaves and exports, the per-hold leaf bound and the
 * done flag; replace-if-unchanged: unchanged keys, a rewrite / trim /
 * zero in the middle of old between scan and replace (kept), the parts of
 * old cut off by a later write (replaced), a piece of old split across
 * leaves, moves, ZERO keys, stale old or new, malformed pairs, the
 * journal (replaying it reproduces the result) and the accounting; GC:
 * stale keys dropped (and durable), the recount equals the live counts
 * while inserts, trims and replaces run between holds (driven by the test
 * hook btree_set_gc_hook, deterministic) and while a thread inserts
 * during passes of another, concurrent passes serialised, and GC with a
 * device that dies at a random write, a crash, and recovery that finds
 * no live key lost.
 * HOW: the real cdev simulator; fakes of the bucket set and the journal
 * (what btree.c and bnode.c call), built against bucket.h and journal.h,
 * as in test-btree-fx.h.  The fake bucket set keeps live and dirty counts
 * from bucket_account, and GC counts exactly as bucket.h's contract says
 * (begin, note, cursor, end); it flags a note at or before the cursor
 * (double count), a cursor that goes back, a pass that begins inside
 * another, and any GC count that differs from the live count at a
 * complete end.
 * WHY NOT ONE FAKE WITH test-btree-fx.h: both fake the same calls of
 * bucket.h and journal.h, for different questions.  This one checks the
 * GC contract exactly (dirty counts, a second set of GC counts, a note at
 * or before the cursor, a cursor going back, a mismatch at a complete
 * end, pass counters bumped atomically for the threaded tests) on a fixed
 * geometry (NBUCKETS); test-btree-fx.h checks the index itself (a
 * geometry per context, allocation failure, a journal that can drop its
 * entries after a crash point) and only counts GC calls.  The helpers
 * (ctx_init, dkey) differ in signature and both fixtures define seed,
 * rng_below and struct ctx.  See test-btree-fx.h for what a merge takes.
 * SEED: randomised tests take NBDCACHE_SEED (printed always).
 */
#ifndef NBDCACHE_TEST_BTREE_WALK_FX_H
#define NBDCACHE_TEST_BTREE_WALK_FX_H

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "testkit.h"
#include <xxhash.h>

#include "bkey.h"
#include "btree.h"
#include "bucket.h"
#include "cdev.h"
#include "compiler.h"
#include "journal.h"
#include "log.h"
#include "ondisk.h"
#include "super.h"

extern uint64_t seed;

/* ---- a fake bucket set ---- */

#define BUCKET_BLOCKS 64u
#define NBUCKETS 2048u
#define DATA_FIRST 8u
#define DATA_BUCKETS 256u

struct bucket_set {
  uint8_t gen[NBUCKETS];
  bool node[NBUCKETS];
  int64_t live[NBUCKETS], dirty[NBUCKETS];
  int64_t gc_live[NBUCKETS], gc_dirty[NBUCKETS];
  uint32_t next_node;
  uint32_t freed[NBUCKETS];
  uint64_t freed_seq[NBUCKETS];
  size_t nr_freed;
  uint64_t durable_seq;
  bool gc_on, have_cursor;
  uint16_t cur_x;
  uint64_t cur_end;
  unsigned errors;
  uint64_t gc_begins, gc_complete, gc_aborted, gc_cursors, gc_mismatch;
};

/* ---- a fake journal (keeps closed entries for replay) ---- */

struct fj_entry {
  uint64_t seq, last_seq;
  struct nc_key root;
  uint16_t level;
  struct nc_key *keys;
  size_t nkeys;
};

struct journal {
  uint64_t open_seq, durable_seq;
  struct nc_key *open_keys;
  size_t nr_open, cap_open;
  struct fj_entry *e;
  size_t nr, cap;
};

/* ---- the context ---- */

struct ctx {
  struct nc_sb sb;
  struct cdev *cd;
  struct bucket_set *bs;
  struct journal *j;
  struct btree *bt;
  uint32_t max_keys;
  uint64_t cache_bytes;         /* 0: small (leaves come and go) */
};

struct walk_keys {
  struct nc_key *k;
  size_t n;
  uint64_t stale, leaves;
  struct bucket_set *bs;
};

/* ---- block values (for snapshots and crash checks) ---- */

#define NEXP 3
#define NBLK 4096u

/* ---- replace ---- */

#define B1 (DATA_FIRST + 1)
#define B2 (DATA_FIRST + 2)
#define B3 (DATA_FIRST + 3)
#define B4 (DATA_FIRST + 4)
#define B5 (DATA_FIRST + 5)

/* Every block's value, per export. */
typedef uint64_t snap_t[NEXP + 1][NBLK];

/* ---- test-btree-walk-fx.c ---- */

uint64_t rng_below (uint64_t *s, uint64_t n);
void ctx_make_btree (struct ctx *c);
void ctx_init (struct ctx *c, uint32_t max_keys);
void ctx_free (struct ctx *c);
int ctx_commit (struct ctx *c);
struct nc_key dkey (struct ctx *c, uint16_t x, uint64_t s, uint64_t e, uint32_t bucket, uint32_t off, uint8_t flags);
void insert1 (struct ctx *c, struct nc_key k);
struct btree_piece at (struct ctx *c, uint16_t x, uint64_t b);
void expect_data (struct ctx *c, uint16_t x, uint64_t b, uint32_t bucket, uint32_t off, uint8_t flags);
void expect_flags (struct ctx *c, uint16_t x, uint64_t b, bool found, uint8_t flags);
bool want_dirty (void *opaque, const struct nc_key *k);
bool want_none (void *opaque, const struct nc_key *k);
void walk_keys (struct ctx *c, struct walk_keys *w);
uint64_t code_of (const struct nc_key *k, uint64_t b);
void snapshot (struct ctx *c, snap_t *v);
void check_counts (struct ctx *c);
int recover (struct ctx *c);
struct nc_key clean (struct nc_key k);

#endif /* NBDCACHE_TEST_BTREE_WALK_FX_H */
