/* SPDX-License-Identifier: BSD-3-Clause */
/* test-journal-fx.h — the journal tests' fixture (journal.h, journal.c,
 * journal-replay.c).
 *
 * PROGRAMS: test-journal-commit (writing and committing entries: format,
 * keys in order, group and delay commits, stop, throttle, ring wraps with
 * crashes) and test-journal-replay (what recovery finds after a torn,
 * corrupt, foreign or failed write).  This fixture (test-journal-fx.c)
 * holds the faulty wrapper, the fake btree and the environment.
 *
 * WHAT: format and replay of an empty journal; keys replayed in order
 * across many entries and writes; group commit; the delay commit without
 * a waiter; a torn last write (crash between the entry pwrite and its
 * sync, random tears) falls back to the previous chain; a batch whose
 * first entry is torn falls back and the ring is reused correctly
 * afterwards; a corrupt entry in the middle of the chain is -EBADMSG; a
 * foreign uuid is ignored; an I/O error fails the waiter with -EIO and the
 * keys are committed by the next commit; stop commits what is open;
 * throttle; many wraps of a small ring with reclaim, crashes and replays.
 * HOW: the simulated cache device (cdev_sim_*), under a thin "faulty"
 * wrapper that can fail the n-th sync and then every I/O (a device that
 * dies between the entry pwrite and its sync).  A fake btree stands for
 * the hooks: it records every key it journals with the seq journal_add
 * returned (the model), computes the oldest pin as the seq of the oldest
 * key not yet "written to a node", and reclaim marks keys written.  After
 * a crash, replay must return exactly the model's keys of the chosen
 * chain, in order, and every older key must have been written.
 * SEED: randomised tests print their seed; NBDCACHE_SEED overrides it.
 */
#ifndef NBDCACHE_TEST_JOURNAL_FX_H
#define NBDCACHE_TEST_JOURNAL_FX_H

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

#include "cdev.h"
#include "journal.h"
#include "log.h"
#include "testkit.h"
#include "ondisk.h"
#include "super.h"

#define BUCKET_BLOCKS 16u
#define LONG_DELAY_MS 100000u   /* only explicit waits commit */
#define BOUND_NS (UINT64_C (20) * 1000000000u) /* no test waits longer */

/* ---- seed and PRNG ---- */

extern uint64_t seed;

/* ---- a faulty wrapper over the sim: fail the n-th sync, then die ---- */

struct faulty {
  struct cdev head;             /* first */
  struct cdev *inner;
  pthread_mutex_t lock;
  uint64_t nsyncs;
  uint64_t fail_sync_at;        /* 0 = never */
  bool dead;
};

extern const struct cdev_ops faulty_ops;

/* ---- the fake btree behind the hooks ---- */

struct rec {
  struct nc_key k;
  uint64_t seq;                 /* what journal_add returned */
};

struct fake {
  pthread_mutex_t lock;         /* "the btree lock" */
  pthread_cond_t cond;          /* committed, gate */
  struct journal *j;
  struct nc_key root;
  uint16_t level;
  struct rec *recs;
  size_t nrecs, cap;
  size_t written;               /* recs[0 .. written) are in nodes */
  uint64_t next_end;
  unsigned nreclaims;
  uint64_t last_reclaim;
  int reclaim_result;
  uint64_t committed_seq;
  unsigned ncommitted;
  unsigned bad_committed;       /* durable seq went backwards */
  bool gate_armed;              /* the committed hook blocks while set */
  unsigned gate_hits;
  int pre_write_result;         /* what the pre_write hook returns */
  bool pre_gate_armed;          /* the pre_write hook blocks while set */
  unsigned pre_gate_hits;
  pthread_t pre_write_thread;   /* the thread of the latest pre_write */
  struct faulty *fy;            /* the device, for arm_on_reclaim */
  bool arm_on_reclaim;          /* next reclaim: the write after it dies */
  unsigned armed_fired;
};

/* ---- an environment: sim + wrapper + journal + fake ---- */

struct env {
  struct nc_sb sb;
  struct cdev *sim;
  struct faulty *fy;
  struct journal *j;
  struct fake f;
  unsigned delay_ms;
  uint32_t ring_blocks;
  uint64_t ring_offset;
  uint64_t rng;
};

struct got {
  struct nc_key *k;
  uint64_t *seq;
  size_t len, cap;
};

/* ---- test-journal-fx.c ---- */

uint32_t kpe_for (uint32_t ring_blocks);
uint64_t now_ns (void);
bool error_logged (const char *needle);
bool faulty_dead (struct faulty *f);
void faulty_fail_sync (struct faulty *f, uint64_t n);
void fake_make_keys (struct fake *f, struct nc_key *keys, size_t n);
void fake_record (struct fake *f, const struct nc_key *k, uint64_t seq);
uint64_t fake_add (struct fake *f, size_t n);
uint64_t fake_add_bulk (struct fake *f, size_t n, uint32_t kpe);
int collect (void *opaque, const struct nc_key *k, uint64_t seq);
void env_init (struct env *e, uint32_t journal_buckets, unsigned delay_ms);
void env_crash (struct env *e, uint64_t tear_seed);
void env_free (struct env *e);
bool find_entry (struct env *e, uint64_t seq, uint32_t *pos, uint32_t *nblocks);
void flip_byte (struct env *e, uint64_t offset);
void tear_sector (struct env *e, const unsigned char *old, uint32_t pos,
                  uint32_t sec);

#endif /* NBDCACHE_TEST_JOURNAL_FX_H */
