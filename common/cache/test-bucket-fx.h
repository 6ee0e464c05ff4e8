/* SPDX-License-Identifier: BSD-3-Clause */
/* test-bucket-fx.h — the fixture of the bucket set's unit tests: a sim
 * device, a superblock, a fake journal.
 *
 * PROGRAMS: test-bucket (the set's states: prio copies, gens, accounting,
 * the gen distance, recovery marks, hits and decay; bucket.c, prio.c)
 * and test-bucket-alloc (the allocator: write points, node buckets,
 * PENDING, eviction, -ENOSPC and the reserve, a randomised model and a
 * threaded run; bucket-alloc.c).
 *
 * WHAT: prio copies (round trip, A/B alternation, one or both corrupt, a
 * foreign uuid, an unformatted device); gens made durable before a bucket
 * is handed out (crash after allocation, a failing prio write); write
 * points; accounting, PENDING -> EMPTY on commit, stale and ZERO keys,
 * underflow; node buckets; PENDING buckets freed through a journal flush
 * taken without the bucket lock; eviction (lowest prio, clean only),
 * -ENOSPC, the node reserve; the gen distance limit (-EAGAIN, sweep);
 * recovery marks; hits and decay; a randomised model run and a threaded
 * run.
 * HOW: a simulated cache device (cdev-sim.c) with a hand-built superblock
 * (16-block buckets, 64 of them, data from bucket 5) and a fake journal:
 * an open seq that a flush commits (calling bucket_journal_committed, as
 * the real journal does before waking waiters).  The test sees the bucket
 * internals (BUCKET_INTERNALS) to set gens and prios directly.
 * SEED: the model and threaded runs are randomised; NBDCACHE_SEED
 * overrides the seed, which is always printed.
 */
#ifndef NBDCACHE_TEST_BUCKET_FX_H
#define NBDCACHE_TEST_BUCKET_FX_H

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#define BUCKET_INTERNALS
#include "bucket.h"
#include "cdev.h"
#include "compiler.h"
#include "log.h"
#include "testkit.h"
#include "ondisk.h"
#include "super.h"

#define BUCKET_BLOCKS 16u
#define NBUCKETS 64u
#define DATA_FIRST 5u
#define NDATA (NBUCKETS - DATA_FIRST)
#define PRIO_FIRST 3u

extern uint64_t seed;

/* ---- captured log messages ---- */

/* ---- fixture: a sim device, a superblock, a fake journal ---- */

struct fx {
  struct cdev *cd;
  struct nc_sb sb;
  struct bucket_set *bs;
  uint64_t open_seq;            /* atomic: the journal's open entry */
  unsigned flushes;
  bool flush_saw_lock_held;
  int flush_error;              /* returned by the next flush, once */
};

/* ---- test-bucket-fx.c ---- */

void make_sb (struct nc_sb *sb, uint32_t nbuckets, uint64_t uuid_seed);
const struct bucket_hooks *fx_hooks (struct fx *fx);
void fx_attach (struct fx *fx);
void fx_open (struct fx *fx);
void fx_detach (struct fx *fx);
void fx_close (struct fx *fx);
uint64_t copy_offset (int copy);
void flip_byte (struct cdev *cd, uint64_t offset);
struct nc_key key_for (const struct bucket_extent *e, uint64_t end, uint8_t flags);
struct bucket_usage usage (struct bucket_set *bs);
void check_state_counts (struct bucket_set *bs);
struct bucket_extent fill_bucket (struct fx *fx, enum bucket_wp wp, uint8_t flags, uint64_t end);

#endif /* NBDCACHE_TEST_BUCKET_FX_H */
