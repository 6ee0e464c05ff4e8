/* SPDX-License-Identifier: BSD-3-Clause */
/* test-crash.h — the crash sweep: kill the cache device at its Nth write
 * or sync, for many N, reopen, and check the crash-consistency promise
 * sector by sector.
 *
 * PROGRAMS: one per cache mode, so the three sweeps run in parallel:
 * test-crash-writeback, test-crash-writethrough, test-crash-writearound
 * (the same code, built with CRASH_MODE and CRASH_PROGRAM set).  The
 * parts: the workload (test-crash-workload.c), one run up to the crash
 * (test-crash-run.c), the checks and the failure report
 * (test-crash-check.c), the sweep over crash points and main
 * (test-crash-sweep.c).
 *
 * WHAT: a deterministic, seeded workload (writes of 512 B .. 128 KiB,
 * 512-byte aligned, some FUA; zeroes with and without MAY_TRIM; trims,
 * some of them 256 KiB .. 1 MiB so whole buckets empty; flushes; reads;
 * ncache_drain; GC rounds with gc_run_once) runs on an export over a
 * surviving memory store (the backing outlives the engine) and a
 * simulated cache device, with the background work on: writeback with
 * writeback_percent 0 and a 10 ms controller period (the writer works
 * all the time, writing back data and zero extents), the GC thread, and
 * discard of freed buckets.  The store is VOLATILE (test-helpers.h):
 * what the engine writes to it is durable only once it flushes it.
 * For a crash point N the device's Nth write-or-sync after the workload
 * starts (cdev_sim_fail_at_op: pwrite and sync calls numbered together),
 * and every I/O after it, fails ("the device died").  A point that lands
 * on a sync fails that sync and makes nothing durable, so it cuts between
 * a write and the sync meant to make it durable (a journal entry and its
 * commit's final sync, say): the engine must not acknowledge what that
 * sync covered, and the power loss below may keep or tear it.  On 3 points
 * in 4 the backing store loses its power at the same moment (every
 * request from then on fails: the whole machine stops, in the middle of
 * a writeback batch, a GC round or a discard batch), on the others it
 * lives on (only the cache device died).  The workload runs on (ops
 * fail: each failed op "maybe happened"); then ncache_close and
 * ncache_device_close (their writes fail too).  Then, on one in three of
 * the points where both stopped, a PROCESS KILL: every write either
 * device took survives (cdev_sim_kill, and the store keeps what it was
 * not told to flush); on the others a simulated POWER LOSS of both
 * (cdev_sim_crash and test_store_crash; half the points tear unsynced
 * blocks and unflushed backing sectors — half of those also tear inside
 * cache blocks, by 512-byte sectors, cdev_sim_crash_sectors — half lose
 * them all).  A reopen
 * of the same device (create = no) and the same backing bytes, and a
 * full read of the export checked against the model.  Then a few
 * writes, a flush and reads prove the reopened cache still works.
 *
 * THE PROMISE CHECKED (doc/design.md "The crash promise"), per
 * 512-byte sector, with the rules R1..R7 in test-sector-model.c:
 *   1. A value acknowledged with FUA, or acknowledged before a FLUSH that
 *      succeeded (zeroes likewise = zeros), reads back after the crash —
 *      unless a later op (acknowledged or failed) may have changed the
 *      sector, in which case it reads that value or one of the later ones.
 *   2. A sector never reads a value that was never written to it: every
 *      write op puts a unique (op id, sector number) pattern in each
 *      sector, and the initial backing content has a pattern of its own
 *      ("written at time 0"), so stale, misplaced and torn data are all
 *      caught.  A trimmed sector may read any value ever written to it,
 *      zeros or the initial content.
 *   3. Without a crash, reads during the workload return the current
 *      value (before the device dies: exactly the last acknowledged one).
 *   4. The device, once crashed, reopens (never "corrupt metadata") and
 *      serves writes and reads again.
 *   5. Writeback never marks a key clean before the backing store made
 *      its data durable (DESIGN promise 3): if it did, the power cut
 *      loses the backing copy while the cache says "clean", and the
 *      sector reads older data than a flush promised (or garbage).
 *      Likewise a discarded bucket or a dropped key must not bring back
 *      trimmed or overwritten data, and a drain that returned 0 left
 *      nothing dirty (checked through ncache_get_stats).
 *   When the device never died (N past the end), the clean close must
 *   have made everything durable: the check is then exact.
 *   A clean run (no fault) then a power loss is checked the same way.
 *   6. Stability (test-stable.h), in every mode, after kills and power
 *      losses alike: with nobody writing, the first full read after the
 *      reopen and the backing store after ncache_drain (what a read
 *      returns once everything is evicted) are the same bytes.  (The
 *      model test also rereads through the engine after the drain; here
 *      that would double the sweep's time.)  Served data must not change without a write, whatever is
 *      evicted, and a drain leaves the backing equal to what was served.
 *
 * HOW N COUNTS: pwrite and sync calls on the cache device, in one
 * sequence, from the first after the export is open (format and open are
 * not swept; discards and reads are not numbered).  The total comes from
 * a clean run: the writes and syncs of the workload plus those of
 * ncache_close and ncache_device_close.  By default 400 distinct N per
 * mode (every N if there are fewer): the first 50, the last 50 and the
 * rest stratified at random in between; --all sweeps every N (make
 * check-crash).  Syncs are a quarter to a half of the ops, so about as
 * many of the 400 points fall on a sync, for the same time as before
 * syncs were numbered; --all grows by the syncs.
 * Background writers (journal timer, writeback, GC) make the exact
 * numbering timing-dependent, so a point is reproducible only
 * approximately (and the total differs from run to run); the replay
 * line printed on failure runs that one point; the report says whether
 * the point fell on a write or a sync, and the sweep's summary how many
 * points fell on each.  Whether a point cuts the backing's power follows
 * from the seed and the point.
 *
 * OPTIONS: --mode writeback|writethrough|writearound (default: the
 * program's own mode),
 * --points K, --all, --seed S (or NBDCACHE_SEED), --ops N (default 2000),
 * --point N [--tear T] (one point only), --tail K (stop the workload K
 * ops after the device died; default 0 = run it to the end), --keep-going,
 * --journal-delay-ms MS (default 10), --fua-heavy (writes of at most
 * 4 KiB, 85% of them FUA: the commits that skip their pre-flush and
 * carry their data, redone at recovery (journal.c REDO).  Note: a crash
 * point is a pwrite
 * number, and a commit's final sync follows its entry pwrite at once, so
 * a point lands between them only when another thread writes there; the
 * journal's own crash test, which fails a random sync, covers that
 * window), --no-data-csum (format the device without data
 * checksums, as caches made before them: nothing but the journal's own
 * check stands between a torn data block and a reader), --quiet.
 * ENV: NBDCACHE_SEED; NBDCACHE_CRASH_POINTS (the default of --points,
 * 400: the sanitizer run of `quickstart check` samples fewer, since each
 * point costs several times more there); NBDCACHE_CRASH_HANG_SECONDS (default 300, 0 = off):
 * a point that takes longer is reported as a hang; NBDCACHE_TEST_VERBOSE=1
 * shows the engine's log.
 * OUTPUT: TAP-like lines, one per mode swept, with points checked and elapsed
 * time.  Exit 0 = pass, 1 = a failure (or a usage error).
 *
 * THREADS AND LOCKS: single-threaded test; the engine's own threads run
 * underneath.  FAILURE: everything is reported with the seed, mode, point
 * (and whether the device died at a write or a sync there), tear seed,
 * the op that saw the death, the sector, expected vs got, the
 * ops that touched the sector, the last 20 ops and the engine's last log
 * lines.
 * NOT HERE: byte-exact random testing without crashes (test-model-*.c).
 */
#ifndef NBDCACHE_TEST_CRASH_H
#define NBDCACHE_TEST_CRASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache.h"
#include "compiler.h"
#include "test-helpers.h"

/* Set per program by the Makefile: its name and the mode it sweeps. */
#ifndef CRASH_PROGRAM
#error "CRASH_PROGRAM (the program name) must be defined"
#endif
#ifndef CRASH_MODE
#error "CRASH_MODE (the mode swept) must be defined"
#endif
#define PROGRAM CRASH_PROGRAM

#define SECTOR TEST_SECTOR_BYTES

#define IO_CHUNK_BYTES (256 * KIB) /* verify reads */
#define MAX_OP_BYTES (128 * KIB)
#define BIG_TRIM_BYTES (1 * MIB)   /* trims of whole buckets: up to this */
#define WB_UPDATE_MS 10            /* writeback's controller period */
#define DRAINER_MS 2               /* default pause between drains */
#define HOT_BYTES (4 * MIB)        /* a region the cache can hold */
#define NODE_CACHE_BYTES (1 * (uint64_t) MIB) /* small: nodes get evicted */
#define ALWAYS_FIRST 50u           /* points always swept at each end */
#define MAX_BAD_SECTORS 8          /* reported per failing point */
#define HISTORY 20                 /* ops shown in a failure report */
#define HANG_SECONDS 300           /* default; NBDCACHE_CRASH_HANG_SECONDS */

/* ---- configuration ---- */

struct config {
  uint64_t seed;
  unsigned nr_ops;
  uint64_t export_bytes;
  uint64_t device_bytes;
  uint32_t bucket_bytes;
  unsigned journal_delay_ms;
  unsigned points;              /* per mode; 0 = all */
  uint64_t one_point;           /* --point; 0 = sweep */
  uint64_t one_tear;            /* --tear, with --point */
  bool one_tear_set;
  unsigned tail;                /* 0 = run the workload to the end */
  unsigned drainer_ms;          /* writeback mode: 0 = no drainer */
  bool keep_going;
  bool quiet;
  bool fua_heavy;               /* --fua-heavy: small FUA writes */
  bool no_data_csum;            /* --no-data-csum: formatted without */
};

/* ---- the workload ---- */

struct op {
  enum test_op_kind kind;
  uint32_t flags;               /* NCACHE_* */
  uint64_t offset;              /* bytes, 512-aligned */
  uint64_t count;               /* bytes, 512-aligned */
};

struct workload {
  struct op *ops;
  unsigned nr_ops;
};

/* ---- one run: a fresh device, the workload, a crash, the check ---- */

struct run {
  const struct config *cfg;
  const struct workload *w;
  enum ncache_mode mode;
  uint64_t point;               /* 0 = no fault */
  uint64_t tear;
  struct test_store *store;
  struct cdev *cd;              /* the device of the run in progress */
  struct ncache_device *dev;    /* open on cd, or NULL */
  bool power_cut;               /* the store loses power at the death */
  bool killed;                  /* a process kill: nothing written is lost */
  bool armed;                   /* the power hook may cut; atomic */
  uint64_t store_tear;          /* test_store_crash's seed */
  uint64_t store_unflushed;     /* its unflushed sectors at the crash */
  const unsigned char *initial; /* the store's content at the start */
  struct test_model *model;
  unsigned char *buf;           /* IO_CHUNK_BYTES */
  unsigned char *served;        /* export_bytes: the first read after the
                                   reopen */
  int *result;                  /* per op: 0 or -errno; valid < executed */
  unsigned executed;            /* ops run */
  int death_op;                 /* first op that ran after the death; -1 */
  int first_failed;             /* first op that failed; -1 */
  bool died;
  const char *death_kind;       /* "write" or "sync": the I/O the device
                                   died at; NULL = it never died (set at
                                   the close, before the crash) */
  /* Device "ops" are pwrite and sync calls, numbered together: what a
   * crash point counts.
   */
  uint64_t base_ops;            /* device ops before the workload */
  uint64_t base_syncs;          /* of which syncs */
  uint64_t workload_ops;        /* device ops by the workload */
  uint64_t total_ops;           /* … plus close */
  uint64_t total_syncs;         /* of which syncs */
  bool failed;
};

/* ---- the workload (test-crash-workload.c) ---- */

uint64_t pick_offset (struct test_rng *rng, uint64_t count,
                      uint64_t export_bytes);
int make_workload (const struct config *cfg, struct workload *w);
const char *kind_name (enum test_op_kind k);
bool op_covers (const struct op *op, uint64_t sector);
void fill_op (const struct run *run, unsigned i, unsigned char *buf);
unsigned char *make_initial (uint64_t bytes);

/* ---- checks and the failure report (test-crash-check.c) ---- */

void fail_header (struct run *run, const char *fmt, ...)
  ATTRIBUTE_FORMAT_PRINTF (2, 3);
void format_replay (const struct run *run, char *s, size_t len);
void fail_footer (struct run *run);
unsigned check_read (struct run *run, const unsigned char *data,
                     uint64_t offset, uint64_t count, bool live,
                     unsigned *reported);
void verify_after_crash (struct run *run, struct ncache_export *nc);
void verify_clean_in_backing (struct run *run, struct ncache_export *nc);
void verify_stable (struct run *run, struct ncache_export *nc);
void prove_usable (struct run *run, struct ncache_export *nc);

/* ---- one run (test-crash-run.c) ---- */

bool device_dead (struct run *run, struct cdev *cd);
const char *point_kind (const struct run *run);
int run_point (struct run *run);

#endif /* NBDCACHE_TEST_CRASH_H */
