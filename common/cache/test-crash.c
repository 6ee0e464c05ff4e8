/* SPDX-License-Identifier: BSD-3-Clause */
/* test-crash.c — the crash sweep: kill the cache device at write N, for
 * many N, reopen, and check the crash-consistency promise sector by sector.
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
 * For a crash point N the device's write number N after the workload
 * starts, and every I/O after it, fails ("the device died"); on 3 points
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
 * blocks and unflushed backing sectors, half lose them all).  A reopen
 * of the same device (create = no) and the same backing bytes, and a
 * full read of the export checked against the model.  Then a few
 * writes, a flush and reads prove the reopened cache still works.
 *
 * THE PROMISE CHECKED (doc/design.md "The crash promise"), per
 * 512-byte sector, with the rules R1..R7 in test-helpers.c:
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
 * HOW N COUNTS: from the first device write after the export is open
 * (format and open are not swept).  The total comes from a clean run:
 * the writes of the workload plus those of ncache_close and
 * ncache_device_close.  By default 400 distinct N per mode (every N if
 * there are fewer): the first 50, the last 50 and the rest stratified at
 * random in between; --all sweeps every N (make check-crash).
 * Background writers (journal timer, writeback, GC) make the exact
 * write numbering timing-dependent, so a point is reproducible only
 * approximately (and the total differs from run to run); the replay
 * line printed on failure runs that one point.  Whether a point cuts the
 * backing's power follows from the seed and the point.
 *
 * OPTIONS: --mode writeback|writethrough|writearound (default: all three),
 * --points K, --all, --seed S (or NBDCACHE_SEED), --ops N (default 2000),
 * --point N [--tear T] (one point only), --tail K (stop the workload K
 * ops after the device died; default 0 = run it to the end), --keep-going,
 * --journal-delay-ms MS (default 10), --quiet.
 * ENV: NBDCACHE_SEED; NBDCACHE_CRASH_POINTS (the default of --points,
 * 400: the sanitizer run of `quickstart check` samples fewer, since each
 * point costs several times more there); NBDCACHE_CRASH_HANG_SECONDS (default 300, 0 = off):
 * a point that takes longer is reported as a hang; NBDCACHE_TEST_VERBOSE=1
 * shows the engine's log.
 * OUTPUT: TAP-like lines, one per mode, with points checked and elapsed
 * time.  Exit 0 = pass, 1 = a failure (or a usage error).
 *
 * THREADS AND LOCKS: single-threaded test; the engine's own threads run
 * underneath.  FAILURE: everything is reported with the seed, mode, point,
 * tear seed, the op that saw the death, the sector, expected vs got, the
 * ops that touched the sector, the last 20 ops and the engine's last log
 * lines.
 * NOT HERE: byte-exact random testing without crashes (test-model.c).
 */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backing.h"
#include "cache.h"
#include "cache-internal.h"
#include "cdev.h"
#include "compiler.h"
#include "gc.h"
#include "test-helpers.h"
#include "test-stable.h"

#define PROGRAM "test-crash"
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

static uint64_t
pick_count (struct test_rng *rng)
{
  unsigned c = (unsigned) test_rng_below (rng, 100);
  uint64_t sectors;

  if (c < 50)
    sectors = test_rng_range (rng, 1, 8);        /* up to 4 KiB */
  else if (c < 80)
    sectors = test_rng_range (rng, 9, 64);       /* up to 32 KiB */
  else
    sectors = test_rng_range (rng, 65, MAX_OP_BYTES / SECTOR);
  if (test_rng_chance (rng, 40))                 /* whole blocks */
    sectors = ROUND_UP (sectors, NC_BLOCK_BYTES / SECTOR);
  return MIN (sectors * SECTOR, (uint64_t) MAX_OP_BYTES);
}

static uint64_t
pick_offset (struct test_rng *rng, uint64_t count, uint64_t export_bytes)
{
  uint64_t span = test_rng_chance (rng, 60) ? MIN (HOT_BYTES, export_bytes)
    : export_bytes;
  uint64_t off = test_rng_below (rng, (span - count) / SECTOR + 1) * SECTOR;

  if (test_rng_chance (rng, 40))
    off = ROUND_DOWN (off, NC_BLOCK_BYTES);
  return off;
}

static int
make_workload (const struct config *cfg, struct workload *w)
{
  struct test_rng rng;
  unsigned i;

  test_rng_seed (&rng, test_mix64 (cfg->seed ^ UINT64_C (0xc7a5)));
  w->nr_ops = cfg->nr_ops;
  w->ops = calloc (cfg->nr_ops, sizeof *w->ops);
  if (w->ops == NULL)
    return -ENOMEM;
  for (i = 0; i < cfg->nr_ops; i++) {
    struct op *op = &w->ops[i];
    unsigned c = (unsigned) test_rng_below (&rng, 100);

    op->count = pick_count (&rng);
    op->offset = pick_offset (&rng, op->count, cfg->export_bytes);
    if (c < 53) {
      op->kind = TEST_OP_WRITE;
      if (test_rng_chance (&rng, 12))
        op->flags = NCACHE_FUA;
    }
    else if (c < 62) {
      op->kind = TEST_OP_ZERO;
      if (test_rng_chance (&rng, 50))
        op->flags |= NCACHE_MAY_TRIM;
      if (test_rng_chance (&rng, 15))
        op->flags |= NCACHE_FUA;
    }
    else if (c < 68) {
      op->kind = TEST_OP_TRIM;
      if (test_rng_chance (&rng, 10))
        op->flags = NCACHE_FUA;
      if (test_rng_chance (&rng, 35)) {
        /* Whole buckets' worth of the hot region: the cache drops many
         * keys at once, buckets empty, GC frees them and discard
         * batches run.
         */
        op->count = test_rng_range (&rng, 4, BIG_TRIM_BYTES /
                                    cfg->bucket_bytes) * cfg->bucket_bytes;
        op->offset = ROUND_DOWN (test_rng_below (&rng, MIN (HOT_BYTES,
                                                            cfg->export_bytes)
                                                 - op->count + 1),
                                 cfg->bucket_bytes);
      }
    }
    else if (c < 75) {
      op->kind = TEST_OP_FLUSH;
      op->offset = op->count = 0;
    }
    else if (c < 77) {
      op->kind = TEST_OP_DRAIN;
      op->offset = op->count = 0;
    }
    else if (c < 79) {
      op->kind = TEST_OP_GC;
      op->offset = op->count = 0;
      if (test_rng_chance (&rng, 50))
        op->flags = 1;          /* force_moving */
    }
    else {
      op->kind = TEST_OP_READ;
      /* Often re-read what a recent write wrote. */
      if (i > 0 && test_rng_chance (&rng, 50)) {
        unsigned back = (unsigned) test_rng_range (&rng, 1, MIN (i, 10u));
        const struct op *prev = &w->ops[i - back];

        if (prev->count > 0 && prev->count <= MAX_OP_BYTES) {
          op->offset = prev->offset;
          op->count = prev->count;
        }
      }
    }
  }
  return 0;
}

static const char *
kind_name (enum test_op_kind k)
{
  switch (k) {
  case TEST_OP_WRITE: return "WRITE";
  case TEST_OP_ZERO: return "ZERO";
  case TEST_OP_TRIM: return "TRIM";
  case TEST_OP_FLUSH: return "FLUSH";
  case TEST_OP_READ: return "READ";
  case TEST_OP_DRAIN: return "DRAIN";
  case TEST_OP_GC: return "GC";
  }
  return "?";
}

static bool
op_covers (const struct op *op, uint64_t sector)
{
  uint64_t pos = sector * SECTOR;

  return op->count > 0 && pos >= op->offset && pos < op->offset + op->count;
}

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
  uint64_t base_writes;         /* device writes before the workload */
  uint64_t workload_writes;     /* device writes by the workload */
  uint64_t total_writes;        /* … plus close */
  bool failed;
};

static bool
device_dead (struct run *run, struct cdev *cd)
{
  return run->point != 0 &&
    cdev_sim_nr_writes (cd) >= run->base_writes + run->point;
}

/* The store's power hook (engine threads): off once the device died, on
 * the points that cut the power.  run->point, base_writes and cd do not
 * change while it is armed.
 */
static bool
store_powered (void *opaque)
{
  struct run *run = opaque;

  return !__atomic_load_n (&run->armed, __ATOMIC_ACQUIRE) ||
    !device_dead (run, run->cd);
}

/* Derived from the seed and the point, so --point replays it: 3 in 4. */
static bool
power_cut_for (const struct config *cfg, uint64_t point)
{
  return point != 0 &&
    (test_mix64 (cfg->seed ^ (point * 0x5bd1e995) ^ 0xc07) & 3) != 0;
}

/* Of those, one in three is a process kill rather than a power loss. */
static bool
killed_for (const struct config *cfg, uint64_t point)
{
  return power_cut_for (cfg, point) &&
    test_mix64 (cfg->seed ^ (point * 0x9e3779b9) ^ 0x4b111) % 3 == 0;
}

static void
describe_op (const struct run *run, unsigned i, char *s, size_t len)
{
  const struct op *op = &run->w->ops[i];
  const char *res;
  char rbuf[32];

  if (i >= run->executed)
    res = "not run";
  else if (run->result[i] == 0)
    res = "ok";
  else {
    snprintf (rbuf, sizeof rbuf, "%s", strerror (-run->result[i]));
    res = rbuf;
  }
  if (op->kind == TEST_OP_FLUSH || op->kind == TEST_OP_DRAIN)
    snprintf (s, len, "#%u %s -> %s", i, kind_name (op->kind), res);
  else if (op->kind == TEST_OP_GC)
    snprintf (s, len, "#%u GC (gc_run_once%s) -> %s", i,
              op->flags ? ", force_moving" : "", res);
  else
    snprintf (s, len, "#%u %s [%" PRIu64 ", +%" PRIu64 ") sectors %" PRIu64
              "..%" PRIu64 "%s%s -> %s", i, kind_name (op->kind), op->offset,
              op->count, op->offset / SECTOR,
              (op->offset + op->count) / SECTOR - 1,
              op->flags & NCACHE_FUA ? " FUA" : "",
              op->flags & NCACHE_MAY_TRIM ? " MAY_TRIM" : "", res);
}

static void
describe_value (const struct run *run, uint32_t value, uint64_t from,
                uint64_t sector, char *s, size_t len)
{
  char opdesc[200];

  if (value == TEST_VALUE_GARBAGE)
    snprintf (s, len, "garbage (no pattern we ever wrote: torn, "
              "uninitialised or foreign bytes)");
  else if (value == TEST_VALUE_ZERO)
    snprintf (s, len, "zeros");
  else if (value == TEST_VALUE_INIT)
    snprintf (s, len, "the initial content of sector %" PRIu64 "%s", from,
              from != sector ? " (MISPLACED)" : "");
  else if (value - TEST_VALUE_FIRST_OP < run->w->nr_ops) {
    describe_op (run, value - TEST_VALUE_FIRST_OP, opdesc, sizeof opdesc);
    snprintf (s, len, "op %s, its data for sector %" PRIu64 "%s", opdesc,
              from, from != sector ? " (MISPLACED)" : "");
  }
  else
    snprintf (s, len, "value %" PRIu32 " (a post-reopen write) for sector %"
              PRIu64, value, from);
}

static void
describe_ids (const struct run *run, const uint32_t *v, size_t n, char *s,
              size_t len)
{
  size_t i, used = 0;

  s[0] = '\0';
  for (i = 0; i < n && used + 16 < len; i++) {
    int k;

    if (v[i] == TEST_VALUE_INIT)
      k = snprintf (s + used, len - used, "%sinit", i ? ", " : "");
    else if (v[i] == TEST_VALUE_ZERO)
      k = snprintf (s + used, len - used, "%szeros", i ? ", " : "");
    else
      k = snprintf (s + used, len - used, "%s#%u", i ? ", " : "",
                    v[i] - TEST_VALUE_FIRST_OP);
    if (k < 0)
      break;
    used += (size_t) k;
  }
}

/* Header of a failure: everything needed to replay it. */
static void
fail_header (struct run *run, const char *fmt, ...)
  ATTRIBUTE_FORMAT_PRINTF (2, 3);

static void
fail_header (struct run *run, const char *fmt, ...)
{
  va_list ap;
  char d[200];

  run->failed = true;
  fprintf (stderr, "\nFAIL: mode %s, seed %" PRIu64 ", crash point %" PRIu64
           ", tear seed %" PRIu64 "\n  ", ncache_mode_name (run->mode),
           run->cfg->seed, run->point, run->tear);
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  if (run->cd != NULL && run->total_writes == 0)
    fprintf (stderr, "\n  device writes attempted: %" PRIu64 " before the "
             "workload, %" PRIu64 " since (still running); the device %s\n",
             run->base_writes, cdev_sim_nr_writes (run->cd) - run->base_writes,
             device_dead (run, run->cd) ? "is dead" : "is alive");
  else
    fprintf (stderr, "\n  device writes attempted: %" PRIu64 " before the "
             "workload, %" PRIu64 " by the workload, %" PRIu64 " with close; "
             "the device %s\n", run->base_writes, run->workload_writes,
             run->total_writes,
             run->died ? "died" : "never died (clean close expected)");
  fprintf (stderr, "  backing store: volatile; %s; store tear seed %"
           PRIu64 "; %" PRIu64 " unflushed sector(s) at the %s\n",
           run->point == 0 ? "the clean run (power loss after the close)"
           : run->killed ? "a PROCESS KILL: both stopped when the device "
           "died, nothing written was lost"
           : run->power_cut ? "its power was cut when the device died"
           : "it lived on after the device died (power loss after close)",
           run->store_tear, run->store_unflushed,
           run->killed ? "kill" : "power loss");
  if (run->death_op >= 0) {
    describe_op (run, (unsigned) run->death_op, d, sizeof d);
    fprintf (stderr, "  the death was first seen by op %s\n", d);
  }
  if (run->first_failed >= 0) {
    describe_op (run, (unsigned) run->first_failed, d, sizeof d);
    fprintf (stderr, "  first failed op: %s\n", d);
  }
  fprintf (stderr, "  ops run: %u of %u\n", run->executed, run->w->nr_ops);
}

/* The command line that runs this point again. */
static void
format_replay (const struct run *run, char *s, size_t len)
{
  const struct config *cfg = run->cfg;
  char tail[64] = "";

  if (cfg->tail)
    snprintf (tail, sizeof tail, " --tail %u", cfg->tail);
  if (cfg->drainer_ms != DRAINER_MS)
    snprintf (tail + strlen (tail), sizeof tail - strlen (tail),
              " --drainer-ms %u", cfg->drainer_ms);
  if (run->point == 0)
    snprintf (s, len, "NBDCACHE_SEED=%" PRIu64 " ./" PROGRAM " --mode %s "
              "--ops %u --journal-delay-ms %u --points 1%s (the clean run "
              "comes first)", cfg->seed, ncache_mode_name (run->mode),
              cfg->nr_ops, cfg->journal_delay_ms, tail);
  else
    snprintf (s, len, "NBDCACHE_SEED=%" PRIu64 " ./" PROGRAM " --mode %s "
              "--ops %u --journal-delay-ms %u --point %" PRIu64 " --tear %"
              PRIu64 "%s", cfg->seed, ncache_mode_name (run->mode),
              cfg->nr_ops, cfg->journal_delay_ms, run->point, run->tear,
              tail);
}

static void
fail_footer (struct run *run)
{
  unsigned i, from, around;
  char d[200], replay[300];

  around = run->death_op >= 0 ? (unsigned) run->death_op + 1 : run->executed;
  from = around > HISTORY ? around - HISTORY : 0;
  fprintf (stderr, "  the last %u ops%s:\n", around - from,
           run->death_op >= 0 ? " up to the one that saw the death" : "");
  for (i = from; i < around; i++) {
    describe_op (run, i, d, sizeof d);
    fprintf (stderr, "    %s\n", d);
  }
  if (around != run->executed) {
    from = run->executed > HISTORY ? run->executed - HISTORY : 0;
    from = MAX (from, around);
    fprintf (stderr, "  the last %u ops of the workload:\n",
             run->executed - from);
    for (i = from; i < run->executed; i++) {
      describe_op (run, i, d, sizeof d);
      fprintf (stderr, "    %s\n", d);
    }
  }
  test_log_dump ("  engine log");
  format_replay (run, replay, sizeof replay);
  fprintf (stderr, "  replay: %s\n\n", replay);
}

/* The ops that touched a sector (last HISTORY), each with the first
 * acknowledged flush after it.
 */
static void
sector_history (struct run *run, uint64_t sector)
{
  unsigned idx[HISTORY];
  unsigned n = 0, i, k;
  char d[200];

  for (i = 0; i < run->executed; i++)
    if (run->w->ops[i].kind != TEST_OP_FLUSH &&
        op_covers (&run->w->ops[i], sector))
      idx[n++ % HISTORY] = i;
  fprintf (stderr, "    ops that touched sector %" PRIu64 " (last %u of %u):\n",
           sector, MIN (n, (unsigned) HISTORY), n);
  for (k = n > HISTORY ? n - HISTORY : 0; k < n; k++) {
    unsigned j = idx[k % HISTORY], f;

    describe_op (run, j, d, sizeof d);
    for (f = j + 1; f < run->executed; f++)
      if (run->w->ops[f].kind == TEST_OP_FLUSH && run->result[f] == 0)
        break;
    if (f < run->executed)
      fprintf (stderr, "      %s   (next ok flush #%u)\n", d, f);
    else
      fprintf (stderr, "      %s   (no ok flush after it)\n", d);
  }
}

static void
explain_sector (struct run *run, uint64_t sector, const unsigned char *data,
                bool live)
{
  struct test_sector_view v;
  uint64_t from = sector;
  uint32_t value = test_sector_decode (data, &from);
  char got[300], dl[300], ml[300];

  describe_value (run, value, from, sector, got, sizeof got);
  test_model_view (run->model, sector, live, &v);
  describe_ids (run, v.durable, v.nr_durable, dl, sizeof dl);
  describe_ids (run, v.maybe, v.nr_maybe, ml, sizeof ml);
  fprintf (stderr, "  sector %" PRIu64 " (byte %" PRIu64 "): got %s\n",
           sector, sector * SECTOR, got);
  if (live)
    fprintf (stderr, "    expected (now) one of {%s}%s\n", dl,
             v.trimmed ? ", or (trimmed) any value written here, zeros, "
             "the initial content" : "");
  else
    fprintf (stderr, "    expected after the crash: durable {%s}, or maybe "
             "{%s}%s\n", dl, ml,
             v.trimmed ? ", or (trimmed) any value written here, zeros, "
             "the initial content" : "");
  fprintf (stderr, "    first bytes: ");
  for (int i = 0; i < 16; i++)
    fprintf (stderr, "%02x", data[i]);
  fprintf (stderr, "\n");
  sector_history (run, sector);
}

static bool
written_here (void *opaque, uint32_t value, uint64_t sector)
{
  const struct run *run = opaque;
  uint32_t i = value - TEST_VALUE_FIRST_OP;

  return value >= TEST_VALUE_FIRST_OP && i < run->executed &&
    run->w->ops[i].kind == TEST_OP_WRITE && op_covers (&run->w->ops[i], sector);
}

/* Check `count` bytes at `offset` just read; live or after the crash.
 * Returns the number of bad sectors.  Unless *reported is already
 * MAX_BAD_SECTORS, explains the first sector of each run of consecutive
 * bad sectors (up to MAX_BAD_SECTORS runs) and sums up the rest of the run.
 */
static unsigned
check_read (struct run *run, const unsigned char *data, uint64_t offset,
            uint64_t count, bool live, unsigned *reported)
{
  uint64_t s, first = offset / SECTOR, n = count / SECTOR;
  uint64_t run_start = 0, run_len = 0;
  unsigned bad = 0;
  bool quiet = *reported >= MAX_BAD_SECTORS;

  for (s = 0; s <= n; s++) {
    const unsigned char *p = data + s * SECTOR;
    uint64_t from = first + s;
    uint32_t value = s < n ? test_sector_decode (p, &from) : 0;

    if (s < n && !test_model_allows (run->model, first + s, value, from,
                                     live, written_here, run)) {
      bad++;
      if (run_len++ == 0) {
        run_start = first + s;
        if (*reported < MAX_BAD_SECTORS) {
          explain_sector (run, first + s, p, live);
          ++*reported;
        }
      }
      continue;
    }
    if (run_len > 1 && !quiet)
      fprintf (stderr, "  ... and the next %" PRIu64 " sector(s) through %"
               PRIu64 " are bad too\n", run_len - 1,
               run_start + run_len - 1);
    run_len = 0;
  }
  return bad;
}

static void
fill_op (const struct run *run, unsigned i, unsigned char *buf)
{
  const struct op *op = &run->w->ops[i];
  uint64_t s;

  for (s = 0; s < op->count / SECTOR; s++)
    test_sector_fill (buf + s * SECTOR, test_value_of_op (i),
                      op->offset / SECTOR + s);
}

static int
open_all (struct run *run, struct cdev *cd, bool create,
          struct ncache_device **dev_out, struct ncache **nc_out)
{
  const struct ncache_device_tuning tuning = {
    .node_cache_bytes = NODE_CACHE_BYTES,
    .journal_delay_ms = run->cfg->journal_delay_ms,
    .format_bucket_bytes = run->cfg->bucket_bytes,
    .discard = true,
  };
  struct ncache_export_tuning et;
  struct ncache_config ncfg = {
    .name = "crash", .mode = run->mode, .readonly = false, .tuning = &et,
  };
  struct backing *b;
  int r;

  /* The background writer works all the time. */
  ncache_export_tuning_default (&et);
  et.writeback_percent = 0;
  et.writeback_update_ms = WB_UPDATE_MS;

  cdev_sim_hold (cd);           /* the engine takes this reference */
  r = ncache_device_open_cdev ("crash-cache", cd, create, &tuning, dev_out);
  if (r < 0)
    return r;
  if ((r = test_store_open (run->store, &b)) < 0)
    goto err_dev;
  ncfg.device = *dev_out;
  if ((r = ncache_open (&ncfg, b, nc_out)) < 0)  /* owns b on every path */
    goto err_dev;
  return 0;

 err_dev:
  ncache_device_close (*dev_out);
  *dev_out = NULL;
  return r;
}

static int
run_op (struct run *run, struct ncache *nc, unsigned i)
{
  const struct op *op = &run->w->ops[i];
  struct ncache_device *dev = run->dev;

  switch (op->kind) {
  case TEST_OP_WRITE:
    fill_op (run, i, run->buf);
    return ncache_pwrite (nc, run->buf, op->count, op->offset, op->flags);
  case TEST_OP_ZERO:
    return ncache_zero (nc, op->count, op->offset, op->flags);
  case TEST_OP_TRIM:
    return ncache_trim (nc, op->count, op->offset, op->flags);
  case TEST_OP_FLUSH:
    return ncache_flush (nc, 0);
  case TEST_OP_READ:
    return ncache_pread (nc, run->buf, op->count, op->offset, 0);
  case TEST_OP_DRAIN:
    return ncache_drain (nc, NULL, NULL);
  case TEST_OP_GC:
    /* NULL until the GC thread is started at device open. */
    return dev->gc != NULL ? gc_run_once (dev->gc, op->flags != 0) : 0;
  }
  return -EINVAL;
}

/* A drain that returned 0 left the export clean, by the stats and by
 * nbdcache:state (only this thread writes).  false after a report.
 */
static bool
drain_left_clean (struct run *run, struct ncache *nc, unsigned i)
{
  struct ncache_stats st;
  struct test_dirty d;
  int r;

  ncache_get_stats (nc, &st);
  if ((r = test_scan_dirty (nc, run->cfg->export_bytes, &d)) < 0) {
    if (device_dead (run, run->cd))
      return true;              /* state reads the index: may fail now */
    fail_header (run, "nbdcache:state after drain op #%u failed: %s", i,
                 strerror (-r));
    return false;
  }
  if (st.dirty_bytes == 0 && st.dirty_zero_bytes == 0 && d.bytes == 0 &&
      d.zero_bytes == 0)
    return true;
  fail_header (run, "drain op #%u returned 0 but the export is not clean: "
               "the stats say %" PRIu64 " dirty byte(s) and %" PRIu64
               " dirty zero byte(s), nbdcache:state %" PRIu64 " and %"
               PRIu64 " (first dirty extent [%" PRIu64 ", +%" PRIu64 "))",
               i, st.dirty_bytes, st.dirty_zero_bytes, d.bytes, d.zero_bytes,
               d.first, d.first_len);
  return false;
}

/* ---- the drainer ----
 * The controller alone writes back slowly (its minimum rate, 64 KiB/s,
 * is a few blocks during a whole workload), so in writeback mode a
 * second thread keeps the background writer at full speed: ncache_drain
 * in a loop, a pause of cfg->drainer_ms between drains (a timed wait on
 * the stop condition, not a sleep), results ignored (they fail once the
 * device died).  Writeback batches then run concurrently with the
 * foreground ops, and crash points land inside them.
 */
struct drainer {
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  bool stop;                    /* under lock */
  bool running;
  struct ncache *nc;
  unsigned pause_ms;
  uint64_t drains, failed;      /* for the summary */
};

static void *
drainer_run (void *arg)
{
  struct drainer *d = arg;
  struct timespec until;

  pthread_mutex_lock (&d->lock);
  while (!d->stop) {
    pthread_mutex_unlock (&d->lock);
    if (ncache_drain (d->nc, NULL, NULL) < 0)
      d->failed++;
    d->drains++;
    clock_gettime (CLOCK_MONOTONIC, &until);
    until.tv_nsec += (long) d->pause_ms * 1000000;
    until.tv_sec += until.tv_nsec / 1000000000;
    until.tv_nsec %= 1000000000;
    pthread_mutex_lock (&d->lock);
    while (!d->stop &&
           pthread_cond_timedwait (&d->cond, &d->lock, &until) == 0)
      ;
  }
  pthread_mutex_unlock (&d->lock);
  return NULL;
}

static void
drainer_start (struct drainer *d, struct ncache *nc, unsigned pause_ms)
{
  pthread_condattr_t ca;

  memset (d, 0, sizeof *d);
  if (pause_ms == 0)
    return;
  d->nc = nc;
  d->pause_ms = pause_ms;
  pthread_mutex_init (&d->lock, NULL);
  pthread_condattr_init (&ca);
  pthread_condattr_setclock (&ca, CLOCK_MONOTONIC);
  pthread_cond_init (&d->cond, &ca);
  pthread_condattr_destroy (&ca);
  d->running = pthread_create (&d->thread, NULL, drainer_run, d) == 0;
  if (!d->running) {
    pthread_cond_destroy (&d->cond);
    pthread_mutex_destroy (&d->lock);
  }
}

static void
drainer_stop (struct drainer *d)
{
  if (!d->running)
    return;
  pthread_mutex_lock (&d->lock);
  d->stop = true;
  pthread_cond_signal (&d->cond);
  pthread_mutex_unlock (&d->lock);
  pthread_join (d->thread, NULL);
  pthread_cond_destroy (&d->cond);
  pthread_mutex_destroy (&d->lock);
  d->running = false;
}

/* Run the workload on an open export; the model follows each result. */
static void
run_workload (struct run *run, struct cdev *cd, struct ncache *nc)
{
  unsigned i, reported = 0, dead_since = 0;
  struct drainer drainer;

  drainer_start (&drainer, nc, run->mode == NCACHE_MODE_WRITEBACK ?
                 run->cfg->drainer_ms : 0);

  for (i = 0; i < run->w->nr_ops && !run->failed; i++) {
    const struct op *op = &run->w->ops[i];
    bool dead_before = device_dead (run, cd);
    int r = run_op (run, nc, i);
    bool dead_after = device_dead (run, cd);

    run->result[i] = r;
    run->executed = i + 1;
    if (dead_after && run->death_op < 0) {
      run->death_op = (int) i;
      dead_since = i;
    }
    if (r < 0 && run->first_failed < 0)
      run->first_failed = (int) i;
    if (r < 0 && !dead_after) {
      fail_header (run, "op #%u failed with %s while the cache device was "
                   "healthy", i, strerror (-r));
      break;
    }
    if (test_model_apply (run->model, op->kind,
                          test_value_of_op (i), op->offset / SECTOR,
                          op->count / SECTOR, r == 0,
                          (op->flags & NCACHE_FUA) != 0) < 0) {
      fail_header (run, "out of memory in the model");
      break;
    }
    if (op->kind == TEST_OP_READ && r == 0) {
      /* Quietly count first, so the header comes before the details. */
      unsigned quiet = MAX_BAD_SECTORS, bad;

      bad = check_read (run, run->buf, op->offset, op->count, true, &quiet);
      if (bad > 0) {
        fail_header (run, "read op #%u returned %u wrong sector(s) %s "
                     "(no crash yet: a live read)", i, bad,
                     dead_before ? "after the device died"
                     : "while the device was healthy");
        check_read (run, run->buf, op->offset, op->count, true, &reported);
        break;
      }
    }
    if (op->kind == TEST_OP_DRAIN && r == 0 && !drain_left_clean (run, nc, i))
      break;
    if (run->cfg->tail && run->death_op >= 0 &&
        i - dead_since >= run->cfg->tail)
      break;
  }
  drainer_stop (&drainer);
}

/* Read the whole export and check every sector after the crash. */
static void
verify_after_crash (struct run *run, struct ncache *nc)
{
  uint64_t off, bad = 0;
  unsigned reported = 0;
  int r;

  for (off = 0; off < run->cfg->export_bytes && !run->failed;
       off += IO_CHUNK_BYTES) {
    uint64_t n = MIN ((uint64_t) IO_CHUNK_BYTES, run->cfg->export_bytes - off);
    unsigned q = MAX_BAD_SECTORS, b;

    if ((r = ncache_pread (nc, run->served + off, n, off, 0)) < 0) {
      fail_header (run, "after the crash and reopen, reading [%" PRIu64
                   ", +%" PRIu64 ") failed: %s", off, n, strerror (-r));
      return;
    }
    b = check_read (run, run->served + off, off, n, false, &q);
    if (b > 0) {
      if (bad == 0)
        fail_header (run, "after the crash and reopen, the promise is "
                     "broken (first bad chunk at byte %" PRIu64 ")", off);
      check_read (run, run->served + off, off, n, false, &reported);
      bad += b;
    }
  }
  if (bad > 0)
    fprintf (stderr, "  %" PRIu64 " bad sector(s) in total\n", bad);
}

/* Extents of nbdcache:state, collected per chunk. */
#define MAX_STATE_EXTENTS (IO_CHUNK_BYTES / NC_BLOCK_BYTES + 2)
struct state_list {
  unsigned n;
  struct { uint64_t off, len; uint32_t flags; } e[MAX_STATE_EXTENTS];
};

static int
state_cb (void *opaque, uint64_t offset, uint64_t length, uint32_t flags)
{
  struct state_list *l = opaque;

  if (l->n == MAX_STATE_EXTENTS)
    return -ERANGE;
  l->e[l->n].off = offset;
  l->e[l->n].len = length;
  l->e[l->n].flags = flags;
  l->n++;
  return 0;
}

/* "Clean" means the backing store has the data: the engine may drop a
 * clean block from the cache at any time (eviction, GC) and serve the
 * backing's bytes instead.  So after the crash, for every sector the
 * cache holds clean, the backing store's own content must also be an
 * acceptable answer.  This is what catches writeback marking keys clean
 * before flushing the backing store (promise 3): the cache still serves
 * the data, the backing lost it in the power cut.  A separate handle
 * reads the store (the export's writeback may be running: it only
 * touches dirty blocks, never the clean ones checked here).
 */
static void
verify_clean_in_backing (struct run *run, struct ncache *nc)
{
  struct state_list *l = malloc (sizeof *l);
  struct backing *b = NULL;
  unsigned char *data = malloc (IO_CHUNK_BYTES);
  uint64_t off, bad = 0;
  unsigned k, reported = 0;
  int r;

  if (l == NULL || data == NULL ||
      (r = test_store_open (run->store, &b)) < 0) {
    fail_header (run, "out of memory checking clean blocks");
    goto out;
  }
  for (off = 0; off < run->cfg->export_bytes && !run->failed;
       off += IO_CHUNK_BYTES) {
    uint64_t n = MIN ((uint64_t) IO_CHUNK_BYTES, run->cfg->export_bytes - off);

    l->n = 0;
    if ((r = ncache_state_extents (nc, n, off, 0, state_cb, l)) < 0) {
      fail_header (run, "after the reopen, nbdcache:state of [%" PRIu64
                   ", +%" PRIu64 ") failed: %s", off, n, strerror (-r));
      break;
    }
    if ((r = backing_pread (b, data, n, off)) < 0) {
      fail_header (run, "reading the backing store directly failed: %s",
                   strerror (-r));
      break;
    }
    for (k = 0; k < l->n; k++) {
      uint64_t s0, s1;
      unsigned q = MAX_BAD_SECTORS, nb;

      if (!(l->e[k].flags & NCACHE_STATE_CACHED) ||
          (l->e[k].flags & NCACHE_STATE_DIRTY))
        continue;
      s0 = MAX (l->e[k].off, off) / SECTOR;
      s1 = MIN (l->e[k].off + l->e[k].len, off + n) / SECTOR;
      if (s1 <= s0)
        continue;
      nb = check_read (run, data + (s0 * SECTOR - off), s0 * SECTOR,
                       (s1 - s0) * SECTOR, false, &q);
      if (nb == 0)
        continue;
      if (bad == 0)
        fail_header (run, "after the crash, the cache holds [%" PRIu64
                     ", +%" PRIu64 ") CLEAN (state 0x%x) but the backing "
                     "store's content there is not an acceptable answer: "
                     "dropping the clean copy would lose data (a key "
                     "marked clean before the backing store made it "
                     "durable?).  The sectors below are the BACKING's",
                     l->e[k].off, l->e[k].len, l->e[k].flags);
      check_read (run, data + (s0 * SECTOR - off), s0 * SECTOR,
                  (s1 - s0) * SECTOR, false, &reported);
      bad += nb;
    }
  }
  if (bad > 0)
    fprintf (stderr, "  %" PRIu64 " bad backing sector(s) under clean "
             "cache blocks in total\n", bad);
 out:
  backing_close (b);
  free (data);
  free (l);
}

/* test_check_stable's report of one differing sector. */
static void
unstable_sector (void *opaque, const char *what, uint64_t sector,
                 const void *served, const void *other)
{
  struct run *run = opaque;
  uint64_t from_a = 0, from_b = 0;
  uint32_t a = test_sector_decode (served, &from_a);
  uint32_t b = test_sector_decode (other, &from_b);
  char da[300], db[300];

  if (!run->failed)
    fail_header (run, "after the reopen, data served with nobody writing "
                 "CHANGED (promise 6): a read after a drain, or the backing "
                 "store that an eviction would serve, differs from the "
                 "first read");
  describe_value (run, a, from_a, sector, da, sizeof da);
  describe_value (run, b, from_b, sector, db, sizeof db);
  fprintf (stderr, "  sector %" PRIu64 ": first served %s\n    but %s: %s\n",
           sector, da, what, db);
  sector_history (run, sector);
}

/* Promise 6: nothing writes, so reads must not change across a drain and
 * an eviction of everything (the backing store after the drain).
 */
static void
verify_stable (struct run *run, struct ncache *nc)
{
  struct test_stable_report rep;
  int r;

  r = test_check_stable (nc, run->store, run->cfg->export_bytes,
                         run->served, false, unstable_sector, run, 4, &rep);
  if (r < 0) {
    fail_header (run, "stability check: %s failed: %s", rep.what,
                 strerror (-r));
    return;
  }
  if (r > 0)
    fprintf (stderr, "  (mode %s, seed %" PRIu64 ", point %" PRIu64
             "): %" PRIu64 " sector(s) CHANGED with nobody writing; first "
             "at sector %" PRIu64 ", in %s\n", ncache_mode_name (run->mode),
             run->cfg->seed, run->point, rep.nr_bad_sectors,
             rep.first_bad_sector, rep.what);
}

/* The reopened cache must work: writes, a flush, reads back. */
static void
prove_usable (struct run *run, struct ncache *nc)
{
  struct test_rng rng;
  unsigned j;
  int r;

  test_rng_seed (&rng, test_mix64 (run->cfg->seed ^ run->point ^ 0x05ab1e));
  for (j = 0; j < 4 && !run->failed; j++) {
    uint64_t count = ROUND_UP (test_rng_range (&rng, SECTOR, 64 * KIB),
                               SECTOR);
    uint64_t off = pick_offset (&rng, count, run->cfg->export_bytes);
    uint32_t value = test_value_of_op (run->w->nr_ops + j);
    uint64_t s;

    for (s = 0; s < count / SECTOR; s++)
      test_sector_fill (run->buf + s * SECTOR, value, off / SECTOR + s);
    if ((r = ncache_pwrite (nc, run->buf, count, off,
                            j == 3 ? NCACHE_FUA : 0)) < 0 ||
        (r = ncache_flush (nc, 0)) < 0) {
      fail_header (run, "after reopen, write %u [%" PRIu64 ", +%" PRIu64
                   ") or flush failed: %s", j, off, count, strerror (-r));
      return;
    }
    memset (run->buf, 0, count);
    if ((r = ncache_pread (nc, run->buf, count, off, 0)) < 0) {
      fail_header (run, "after reopen, reading back [%" PRIu64 ", +%" PRIu64
                   ") failed: %s", off, count, strerror (-r));
      return;
    }
    for (s = 0; s < count / SECTOR; s++) {
      uint64_t from = 0;
      uint32_t v = test_sector_decode (run->buf + s * SECTOR, &from);

      if (v != value || from != off / SECTOR + s) {
        char got[300];

        describe_value (run, v, from, off / SECTOR + s, got, sizeof got);
        fail_header (run, "after reopen, write [%" PRIu64 ", +%" PRIu64
                     ") read back wrong at sector %" PRIu64 ": got %s",
                     off, count, off / SECTOR + s, got);
        return;
      }
    }
  }
}

/* ---- the hang watchdog ----
 * An engine that never returns (a close waiting forever on a dead
 * device, a lost wake-up) would hang the sweep with no clue; SIGALRM
 * prints which point hung and exits.  The message is formatted before
 * the alarm is armed, so the handler only calls write and _exit.  The
 * one static in this file: a signal handler has no other way in.
 */
static char hang_msg[512];

static void
on_alarm (int sig)
{
  ssize_t ignored = write (STDERR_FILENO, hang_msg, strlen (hang_msg));

  (void) ignored;
  _exit (1);
}

static void
arm_watchdog (const struct run *run)
{
  unsigned secs = (unsigned) test_env_u64 ("NBDCACHE_CRASH_HANG_SECONDS",
                                           HANG_SECONDS);
  char replay[300];

  if (secs == 0)
    return;
  format_replay (run, replay, sizeof replay);
  snprintf (hang_msg, sizeof hang_msg,
            "\nFAIL: HANG: mode %s, seed %" PRIu64 ", crash point %" PRIu64
            ", tear seed %" PRIu64 ": no result after %u s\n  replay: %s\n",
            ncache_mode_name (run->mode), run->cfg->seed, run->point,
            run->tear, secs, replay);
  signal (SIGALRM, on_alarm);
  alarm (secs);
}

/* One point (or the clean run when run->point == 0).  0 = pass. */
static int
run_point (struct run *run)
{
  struct cdev *cd = NULL;
  struct ncache_device *dev = NULL;
  struct ncache *nc = NULL;
  uint64_t end_writes;
  int r;

  arm_watchdog (run);
  run->failed = false;
  run->executed = 0;
  run->death_op = run->first_failed = -1;
  run->died = false;
  run->base_writes = run->workload_writes = run->total_writes = 0;
  run->power_cut = power_cut_for (run->cfg, run->point);
  run->killed = killed_for (run->cfg, run->point);
  run->store_tear = run->tear ? test_mix64 (run->tear ^ 0x570e) | 1 : 0;
  run->store_unflushed = 0;
  __atomic_store_n (&run->armed, false, __ATOMIC_RELEASE);
  test_model_reset (run->model);
  memcpy (test_store_data (run->store), run->initial, run->cfg->export_bytes);
  if ((r = test_store_set_volatile (run->store, true)) < 0) {
    fail_header (run, "test_store_set_volatile: %s", strerror (-r));
    goto out;
  }
  test_store_set_power_fn (run->store, run->power_cut ? store_powered : NULL,
                           run);
  test_log_clear ();

  run->cd = NULL;
  if ((r = cdev_sim_create (run->cfg->device_bytes, &cd)) < 0) {
    fail_header (run, "cdev_sim_create: %s", strerror (-r));
    goto out;
  }
  run->cd = cd;
  if ((r = open_all (run, cd, true, &dev, &nc)) < 0) {
    fail_header (run, "formatting and opening the fresh device failed: %s",
                 strerror (-r));
    goto out;
  }
  run->dev = dev;
  run->base_writes = cdev_sim_nr_writes (cd);
  if (run->point)
    cdev_sim_fail_at_write (cd, run->base_writes + run->point);
  __atomic_store_n (&run->armed, true, __ATOMIC_RELEASE);

  run_workload (run, cd, nc);
  end_writes = cdev_sim_nr_writes (cd);
  run->workload_writes = end_writes - run->base_writes;
  ncache_close (nc);
  nc = NULL;
  run->dev = NULL;
  ncache_device_close (dev);
  dev = NULL;
  run->total_writes = cdev_sim_nr_writes (cd) - run->base_writes;
  run->died = device_dead (run, cd);
  /* No handle is open now: the hook is off, before the counters reset. */
  __atomic_store_n (&run->armed, false, __ATOMIC_RELEASE);
  test_store_set_power_fn (run->store, NULL, NULL);
  if (run->failed)
    goto out;
  if (test_store_nr_open (run->store) != 0) {
    fail_header (run, "ncache_close did not close the backing handle");
    goto out;
  }
  if (!run->died && test_model_clean_close (run->model) < 0) {
    fail_header (run, "out of memory in the model");
    goto out;
  }

  /* One power loss for both: the cache device and the backing store; or
   * a process kill: both keep everything they were given.
   */
  run->store_unflushed = test_store_nr_unflushed (run->store);
  if (run->killed) {
    cdev_sim_kill (cd);
    if ((r = test_store_set_volatile (run->store, true)) < 0) {
      fail_header (run, "test_store_set_volatile: %s", strerror (-r));
      goto out;
    }
  }
  else {
    cdev_sim_crash (cd, run->tear);
    test_store_crash (run->store, run->store_tear);
  }
  if ((r = open_all (run, cd, false, &dev, &nc)) < 0) {
    fail_header (run, "reopening the crashed device failed: %s "
                 "(a crash must never leave the cache unopenable)",
                 strerror (-r));
    goto out;
  }
  verify_after_crash (run, nc);
  if (!run->failed)
    verify_clean_in_backing (run, nc);
  if (!run->failed)
    verify_stable (run, nc);
  if (!run->failed)
    prove_usable (run, nc);

 out:
  if (run->failed)
    fail_footer (run);
  __atomic_store_n (&run->armed, false, __ATOMIC_RELEASE);
  run->dev = NULL;
  ncache_close (nc);
  ncache_device_close (dev);
  test_store_set_power_fn (run->store, NULL, NULL);
  cdev_close (cd);              /* our reference */
  run->cd = NULL;
  alarm (0);
  return run->failed ? -1 : 0;
}

/* ---- the sweep ---- */

static int
cmp_u64 (const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

  return x < y ? -1 : x > y;
}

/* The crash points for a run with `total` device writes: all of them if
 * want == 0 or want >= total; else the first and last ALWAYS_FIRST (a
 * quarter of want each, if fewer) and the rest stratified at random in
 * between, one per stratum.  Sorted, distinct.
 */
static uint64_t *
choose_points (const struct config *cfg, enum ncache_mode mode,
               uint64_t total, size_t *n_out)
{
  struct test_rng rng;
  uint64_t *p, i, mid_lo, mid_hi, mid;
  size_t n = 0, k, want, ends;

  if (total == 0) {
    *n_out = 0;
    return calloc (1, sizeof (uint64_t));
  }
  want = cfg->points == 0 || cfg->points >= total ? total : cfg->points;
  p = calloc (want, sizeof *p);
  if (p == NULL)
    return NULL;
  if (want == total) {
    for (i = 0; i < total; i++)
      p[i] = i + 1;
    *n_out = total;
    return p;
  }
  /* want < total here, so total > 2 * ends and the middle is not empty. */
  ends = MIN ((size_t) ALWAYS_FIRST, want / 4);
  for (i = 1; i <= ends; i++)
    p[n++] = i;
  for (i = total - ends + 1; i <= total; i++)
    p[n++] = i;
  test_rng_seed (&rng, test_mix64 (cfg->seed ^ ((uint64_t) mode << 40)));
  mid_lo = ends + 1;
  mid_hi = total - ends;                  /* inclusive */
  mid = mid_hi - mid_lo + 1;
  for (k = 0; n < want; k++) {
    uint64_t strata = want - 2 * ends;
    uint64_t j = k % strata;
    uint64_t lo = mid_lo + j * mid / strata;
    uint64_t hi = mid_lo + (j + 1) * mid / strata - 1;

    p[n++] = test_rng_range (&rng, lo, MAX (lo, hi));
  }
  qsort (p, n, sizeof *p, cmp_u64);
  for (i = 0, k = 0; i < n; i++)
    if (k == 0 || p[i] != p[k - 1])
      p[k++] = p[i];
  *n_out = k;
  return p;
}

static uint64_t
tear_for (const struct config *cfg, uint64_t point, size_t index)
{
  return index % 2 ? test_mix64 (cfg->seed ^ (point * 0x9e37)) | 1 : 0;
}

/* 0 = pass. */
static int
sweep_mode (const struct config *cfg, const struct workload *w,
            enum ncache_mode mode, struct run *run, unsigned tap)
{
  uint64_t t0 = test_now_ms (), t_clean, total, *points;
  size_t n, i, checked = 0, torn = 0, failures = 0;

  run->mode = mode;

  if (cfg->one_point) {
    run->point = cfg->one_point;
    run->tear = cfg->one_tear_set ? cfg->one_tear : 0;
    if (run_point (run) < 0) {
      printf ("not ok %u - crash %s: point %" PRIu64 " tear %" PRIu64 "\n",
              tap, ncache_mode_name (mode), run->point, run->tear);
      return -1;
    }
    printf ("ok %u - crash %s: point %" PRIu64 " tear %" PRIu64 ", %" PRIu64
            " ms\n", tap, ncache_mode_name (mode), run->point, run->tear,
            test_now_ms () - t0);
    return 0;
  }

  /* The clean run: no fault, clean close, then a torn power loss: must
   * lose nothing.  It also gives the number of device writes.
   */
  run->point = 0;
  run->tear = test_mix64 (cfg->seed) | 1;
  if (run_point (run) < 0) {
    printf ("not ok %u - crash %s: the clean run failed\n", tap,
            ncache_mode_name (mode));
    return -1;
  }
  total = run->total_writes;
  t_clean = test_now_ms () - t0;
  if (!cfg->quiet)
    printf ("# %s: clean run: %u ops, %" PRIu64 " device writes (%" PRIu64
            " by the workload, %" PRIu64 " by close), %" PRIu64 " ms\n",
            ncache_mode_name (mode), w->nr_ops, total, run->workload_writes,
            total - run->workload_writes, t_clean);

  points = choose_points (cfg, mode, total, &n);
  if (points == NULL) {
    printf ("not ok %u - crash %s: out of memory\n", tap,
            ncache_mode_name (mode));
    return -1;
  }
  for (i = 0; i < n; i++) {
    run->point = points[i];
    run->tear = tear_for (cfg, points[i], i);
    checked++;
    torn += run->tear != 0;
    if (run_point (run) < 0) {
      failures++;
      if (!cfg->keep_going)
        break;
    }
    if (!cfg->quiet && (i + 1) % 100 == 0)
      printf ("# %s: %zu/%zu points, %" PRIu64 " ms\n",
              ncache_mode_name (mode), i + 1, n, test_now_ms () - t0);
    fflush (stdout);
  }
  printf ("%s %u - crash %s: %zu point(s) checked (%zu torn) of %" PRIu64
          " device writes, %u ops, %zu failure(s), %" PRIu64 " ms\n",
          failures ? "not ok" : "ok", tap, ncache_mode_name (mode), checked,
          torn, total, w->nr_ops, failures, test_now_ms () - t0);
  free (points);
  return failures ? -1 : 0;
}

/* The initial backing content: every sector holds op 0's pattern. */
static unsigned char *
make_initial (uint64_t bytes)
{
  unsigned char *p = malloc (bytes);
  uint64_t s;

  if (p == NULL)
    return NULL;
  for (s = 0; s < bytes / SECTOR; s++)
    test_sector_fill (p + s * SECTOR, TEST_VALUE_INIT, s);
  return p;
}

static void
usage (FILE *f)
{
  fprintf (f,
           "usage: " PROGRAM " [--mode writeback|writethrough|writearound]\n"
           "         [--points K | --all] [--seed S] [--ops N] [--tail K]\n"
           "         [--point N [--tear T]] [--keep-going]\n"
           "         [--journal-delay-ms MS] [--drainer-ms MS] [--quiet]\n"
           "  NBDCACHE_SEED sets the seed too; the seed is always printed.\n");
}

static bool
parse_num (const char *s, uint64_t *out)
{
  char *end;

  if (s == NULL || *s == '\0' || *s == '-')
    return false;
  errno = 0;
  *out = strtoull (s, &end, 0);
  return errno == 0 && *end == '\0';
}

int
main (int argc, char *argv[])
{
  enum { OPT_JDELAY = 256, OPT_KEEP, OPT_TEAR, OPT_DRAINER };
  static const struct option longopts[] = {
    { "mode", required_argument, NULL, 'm' },
    { "points", required_argument, NULL, 'k' },
    { "all", no_argument, NULL, 'a' },
    { "seed", required_argument, NULL, 's' },
    { "ops", required_argument, NULL, 'o' },
    { "tail", required_argument, NULL, 't' },
    { "point", required_argument, NULL, 'p' },
    { "tear", required_argument, NULL, OPT_TEAR },
    { "keep-going", no_argument, NULL, OPT_KEEP },
    { "journal-delay-ms", required_argument, NULL, OPT_JDELAY },
    { "drainer-ms", required_argument, NULL, OPT_DRAINER },
    { "quiet", no_argument, NULL, 'q' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  struct config cfg = {
    .nr_ops = 2000,
    .export_bytes = 32 * (uint64_t) MIB,
    .device_bytes = 8 * (uint64_t) MIB,
    .bucket_bytes = 64 * KIB,
    .journal_delay_ms = 10,
    .drainer_ms = DRAINER_MS,
    .points = 400,
  };
  enum ncache_mode modes[3] = {
    NCACHE_MODE_WRITEBACK, NCACHE_MODE_WRITETHROUGH, NCACHE_MODE_WRITEAROUND,
  };
  unsigned nr_modes = 3, i, tap = 1;
  bool seed_set = false;
  struct workload w = { 0 };
  struct run run = { 0 };
  struct test_store *store = NULL;
  unsigned char *initial = NULL;
  uint64_t v;
  int c, status = 0;

  if (getenv ("NBDCACHE_CRASH_POINTS") != NULL) {
    if (!parse_num (getenv ("NBDCACHE_CRASH_POINTS"), &v) || v == 0 ||
        v > UINT32_MAX) {
      fprintf (stderr, PROGRAM ": NBDCACHE_CRASH_POINTS: not a number of "
               "points\n");
      return 1;
    }
    cfg.points = (unsigned) v;
  }
  while ((c = getopt_long (argc, argv, "h", longopts, NULL)) != -1) {
    switch (c) {
    case 'm':
      if (ncache_mode_from_string (optarg, &modes[0]) < 0 ||
          modes[0] == NCACHE_MODE_NONE) {
        fprintf (stderr, PROGRAM ": --mode %s: not a cache mode\n", optarg);
        return 1;
      }
      nr_modes = 1;
      break;
    case 'k':
      if (!parse_num (optarg, &v) || v == 0 || v > UINT32_MAX)
        goto bad_number;
      cfg.points = (unsigned) v;
      break;
    case 'a':
      cfg.points = 0;
      break;
    case 's':
      if (!parse_num (optarg, &cfg.seed))
        goto bad_number;
      seed_set = true;
      break;
    case 'o':
      if (!parse_num (optarg, &v) || v == 0 || v > 1000000)
        goto bad_number;
      cfg.nr_ops = (unsigned) v;
      break;
    case 't':
      if (!parse_num (optarg, &v) || v > UINT32_MAX)
        goto bad_number;
      cfg.tail = (unsigned) v;
      break;
    case 'p':
      if (!parse_num (optarg, &cfg.one_point) || cfg.one_point == 0)
        goto bad_number;
      break;
    case OPT_TEAR:
      if (!parse_num (optarg, &cfg.one_tear))
        goto bad_number;
      cfg.one_tear_set = true;
      break;
    case OPT_KEEP:
      cfg.keep_going = true;
      break;
    case OPT_DRAINER:
      if (!parse_num (optarg, &v) || v > 10000)
        goto bad_number;
      cfg.drainer_ms = (unsigned) v;
      break;
    case OPT_JDELAY:
      if (!parse_num (optarg, &v) || v == 0 || v > 3600000)
        goto bad_number;
      cfg.journal_delay_ms = (unsigned) v;
      break;
    case 'q':
      cfg.quiet = true;
      break;
    case 'h':
      usage (stdout);
      return 0;
    default:
      usage (stderr);
      return 1;
    }
  }
  if (optind != argc) {
    usage (stderr);
    return 1;
  }
  if (seed_set)
    printf (PROGRAM ": seed %" PRIu64 " (from --seed)\n", cfg.seed);
  else
    cfg.seed = test_seed_from_env (PROGRAM);
  test_log_capture ();

  printf ("1..%u\n", nr_modes + 2);
  if (test_model_self_test () < 0) {
    printf ("not ok %u - model self-test\n", tap);
    return 1;
  }
  printf ("ok %u - model self-test\n", tap++);
  if (test_store_self_test () < 0) {
    printf ("not ok %u - volatile store self-test\n", tap);
    return 1;
  }
  printf ("ok %u - volatile store self-test\n", tap++);

  if (make_workload (&cfg, &w) < 0 ||
      (initial = make_initial (cfg.export_bytes)) == NULL ||
      test_store_create (cfg.export_bytes, "test-store:crash", &store) < 0 ||
      test_model_create (cfg.export_bytes / SECTOR, &run.model) < 0 ||
      (run.buf = malloc (IO_CHUNK_BYTES)) == NULL ||
      (run.served = malloc (cfg.export_bytes)) == NULL ||
      (run.result = calloc (cfg.nr_ops, sizeof *run.result)) == NULL) {
    fprintf (stderr, PROGRAM ": out of memory\n");
    status = 1;
    goto out;
  }
  run.cfg = &cfg;
  run.w = &w;
  run.store = store;
  run.initial = initial;

  for (i = 0; i < nr_modes; i++)
    if (sweep_mode (&cfg, &w, modes[i], &run, tap++) < 0)
      status = 1;

 out:
  free (run.buf);
  free (run.served);
  free (run.result);
  test_model_destroy (run.model);
  test_store_destroy (store);
  free (initial);
  free (w.ops);
  return status;

 bad_number:
  fprintf (stderr, PROGRAM ": bad number '%s'\n", optarg);
  return 1;
}
