/* SPDX-License-Identifier: BSD-3-Clause */
/* test-model-fx.h — the model test's fixture: the engine against a flat
 * byte array, random operations in every mode, compared byte for byte.
 *
 * PROGRAMS: test-model-sequential (one thread, every mode, with clean and
 * crash reopens; the checkers' own self-test) and test-model-concurrent
 * (threads on disjoint regions and striped by sector).  This fixture
 * (test-model-fx.c) holds the per-test state, the engine's life cycle,
 * setup and teardown, and the operations with their checks.
 *
 * WHAT: for each mode (none as the baseline, writeback, writethrough,
 * writearound) thousands of random operations on one export — reads,
 * writes of 1 B .. 256 KiB at any alignment (sub-block, unaligned,
 * block-aligned), writes with FUA, zeroes (with and without MAY_TRIM,
 * sometimes FAST_ZERO), trims, flushes, CACHE, extents, the odd long
 * sequential stream (past the sequential cutoff), ncache_drain, GC
 * rounds (gc_run_once, sometimes forcing moving GC) — interleaved with
 * clean reopens (ncache_close + ncache_device_close, then reopen the same
 * simulated device with create = no over the same backing bytes) and, in the cached modes, CRASH reopens: every other reopen
 * stops the cache device and the backing store at once while the
 * background work runs (every later I/O fails), closes, then either keeps
 * everything written (a process kill: cdev_sim_kill) or loses what was not
 * synced and flushed (a power loss, torn or not), and reopens.  The
 * background work runs all the time: writeback with writeback_percent 0
 * and a 10 ms controller period (dirty data and zero extents go back to
 * the backing store while the ops run), the GC thread, discards.  Per
 * test the seed picks a sequential cutoff (256 KiB, the default 4 MiB,
 * or off) and whether close writes everything back (flush_on_stop).  The
 * backing store is volatile (test-helpers.h) and loses what it was not
 * told to flush at every reopen, so a close that forgets the backing's
 * last flush is caught.  The
 * model is a flat array of the export's bytes plus a "trimmed" bit per
 * byte.  Then concurrent variants: 4 threads on disjoint regions, and
 * 4 threads striped by 512-byte sector so that every 4 KiB block is
 * written by all of them at once (partial-block read-modify-write must
 * not lose a neighbour's write).
 * WHY: doc/design.md's model test: the engine must behave exactly like a
 * disk, whatever the cache does underneath (fills, evicts, writes back,
 * goes around).
 *
 * RULES (the expected results):
 * - A read returns exactly the model's bytes, except bytes trimmed since
 *   they were last written, which read as their old value or zero, and
 *   in the cached modes also as any older data once written there, which
 *   NBD allows: the cache drops its keys at once but the backing trim is
 *   queued (trimq.h), so the backing's older copy (written back earlier)
 *   shows through until it is issued.  NBDCACHE_MODEL_TRIM_STALE=0 or 1
 *   forces the strict or the lenient rule in every mode.
 * - After a clean reopen every byte equals the model exactly (trimmed
 *   bytes: old value or zero).  Regions touched since the previous reopen
 *   are compared after each reopen, the whole export after the last.
 * - Zero (with or without MAY_TRIM) reads as zeros.  FAST_ZERO may fail
 *   with -ENOTSUP and then changes nothing.
 * - Extents start at the request offset, are contiguous, non-empty,
 *   never past the request's end, cover the whole request (one extent is
 *   enough with REQ_ONE), use only HOLE|ZERO, stop when the callback
 *   says so; a ZERO extent's bytes are zero in the model (or trimmed)
 *   and really read back as zeros.
 * - Every other request returns 0.
 * - A drain that returned 0 leaves the export clean (stats: no dirty
 *   bytes, no dirty zero bytes); with flush_on_stop, a reopened export
 *   has nothing dirty.
 * - After a crash reopen (test-stable.h): with nobody writing, the whole
 *   export read at once, read again after a drain, and the backing store
 *   after the drain (what reads return once everything is evicted) are
 *   the same bytes.  What the crash kept of the unflushed ops is the
 *   crash test's subject (test-crash.h): the model takes the first read
 *   as the export's content from then on.
 *
 * SIZES: a 64 MiB export, a 16 MiB simulated cache device with 64 KiB
 * buckets and a small btree node cache, so the cache fills and eviction,
 * write-around and node reads all happen.
 * ENV: NBDCACHE_SEED (the seed, always printed), NBDCACHE_MODEL_OPS (ops
 * per mode, default 4000; per thread the concurrent tests use a quarter
 * of it, the striped ones half), NBDCACHE_MODEL_FILTER (a cmocka
 * test-name pattern), NBDCACHE_TEST_VERBOSE=1 (the engine's log on
 * stderr), NBDCACHE_MODEL_TRIM_STALE=0|1 (see RULES).
 * FAILURE OUTPUT: seed, mode, op index, offset, expected vs got (hex and
 * decoded: which op wrote the bytes that came back, and for which
 * offset), the ops that changed that byte, the last 20 ops, the engine's
 * last log lines, the command that replays it.
 *
 * THREADS AND LOCKS: the concurrent tests' threads own disjoint parts of
 * the model arrays (the trimmed bitmap is not used there); failures are
 * recorded per thread and reported by the main thread (cmocka asserts
 * only there).
 * NOT HERE: what a crash may lose (test-crash.h).
 */
#ifndef NBDCACHE_TEST_MODEL_FX_H
#define NBDCACHE_TEST_MODEL_FX_H

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

#include <cmocka.h>

#include "backing.h"
#include "cache.h"
#include "cache-internal.h"
#include "cdev.h"
#include "compiler.h"
#include "gc.h"
#include "test-helpers.h"
#include "test-stable.h"

#define EXPORT_BYTES (64 * (uint64_t) MIB)
#define DEVICE_BYTES (16 * (uint64_t) MIB)
#define BUCKET_BYTES (64 * KIB)
#define NODE_CACHE_BYTES (1 * (uint64_t) MIB) /* 16 nodes of 64 KiB */
#define JOURNAL_DELAY_MS 20
#define HOT_BYTES (6 * (uint64_t) MIB)        /* about the cache's size */
#define MAX_IO_BYTES (256 * KIB)
#define STREAM_BYTES (6 * (uint64_t) MIB)     /* > the 4 MiB cutoff */
#define CHUNK_BYTES (64 * KIB)                /* touched-region unit */
#define NR_CHUNKS (EXPORT_BYTES / CHUNK_BYTES)
#define RING 20                               /* ops in a failure report */
#define NR_THREADS 4
#define STRIPE_BYTES (256 * (uint64_t) KIB)   /* striped test: small, for
                                                 contention on each block */
#define MAX_EXTENTS 4096
#define WB_UPDATE_MS 10                       /* writeback's controller */
#define SHORT_CUTOFF_BYTES (256 * (uint64_t) KIB)

/* ---- data patterns ----
 * Byte o of op k's data is byte (o % 8) of the little-endian word
 *   0xA << 60 | (k mod 2^20) << 40 | (o / 8 mod 2^40),
 * so 8 aligned bytes read back name the op that wrote them and the
 * offset they were written for.  k = 0 is the initial backing content.
 */
#define PATTERN_MARK UINT64_C (0xa)

/* ---- the per-test state ---- */

struct rec {                    /* one op, for the failure report */
  unsigned idx;
  const char *what;
  uint64_t offset, count;
  uint32_t flags;
  int result;
  bool changes;                 /* a write, zero or trim: changes the bytes */
};

struct ctx {
  enum ncache_mode mode;
  uint64_t seed;
  unsigned nr_ops;
  struct test_rng rng;
  struct test_store *store;
  unsigned char *model;         /* EXPORT_BYTES */
  unsigned char *trimmed;       /* bitmap, one bit per byte */
  unsigned char *touched;       /* one flag per CHUNK_BYTES */
  unsigned char *buf, *buf2;    /* MAX_IO_BYTES each */
  struct cdev *cd;              /* our reference; NULL in mode none */
  struct ncache_device *dev;
  struct ncache_export *nc;
  struct ncache_export_tuning tuning; /* every open of the test */
  uint64_t last_seq_bypasses;   /* stats of the export before the last */
  uint64_t last_wb_bytes;       /* reopen (printed at the end) */
  unsigned op;                  /* index of the op in progress */
  unsigned nr_reopens;
  unsigned nr_crashes;
  bool powered;                 /* the store's power (crash reopens); atomic */
  struct rec *log;              /* every op, in order (not verify reads) */
  size_t nr_log, log_cap;
  bool verifying;               /* reads are verification: not logged */
  bool trim_stale_ok;           /* see RULES and NBDCACHE_MODEL_TRIM_STALE */
  FILE *out;                    /* failure reports: stderr (or /dev/null
                                   in the checkers' self-test) */
  /* Extents being collected. */
  struct { uint64_t offset, length; uint32_t flags; } ext[MAX_EXTENTS];
  unsigned nr_ext;
  unsigned stop_after;          /* callback returns 1 after this many */
  bool called_after_stop;
};

/* ---- setup / teardown ---- */

/* What main hands every test through cmocka's initial state. */
struct params {
  uint64_t seed;
  unsigned nr_ops;
  int trim_stale;               /* NBDCACHE_MODEL_TRIM_STALE: 0, 1; -1 unset */
};

/* ---- test-model-fx.c ---- */

void fill_pattern (unsigned char *buf, uint64_t offset, uint64_t count, uint32_t k);
void record (struct ctx *c, const char *what, uint64_t offset, uint64_t count, uint32_t flags, int result);
const struct rec *last_rec (const struct ctx *c);
void fail_footer (struct ctx *c);
void set_trimmed (struct ctx *c, uint64_t offset, uint64_t count, bool on);
void describe_word (const unsigned char *p, uint64_t at, char *s, size_t len);
bool check_bytes (struct ctx *c, const char *what, const unsigned char *got, uint64_t offset, uint64_t count);
int open_export (struct ctx *c, bool create);
int teardown (void **state);
uint64_t pick_count (struct test_rng *rng);
uint64_t pick_offset (struct test_rng *rng, uint64_t count);
bool do_read (struct ctx *c, uint64_t off, uint64_t count, const char *what);
bool do_write (struct ctx *c, uint64_t off, uint64_t count, uint32_t flags);
bool do_zero (struct ctx *c, uint64_t off, uint64_t count, uint32_t flags);
bool do_trim (struct ctx *c, uint64_t off, uint64_t count, uint32_t flags);
bool do_simple (struct ctx *c, const char *what, int r, uint64_t off, uint64_t count);
bool check_extents (struct ctx *c, uint64_t off, uint64_t count, uint32_t flags);
bool do_extents (struct ctx *c, uint64_t off, uint64_t count);
bool do_drain (struct ctx *c);
bool do_gc (struct ctx *c);
bool do_stream (struct ctx *c);
bool reopen (struct ctx *c, bool verify_all);
bool crash_reopen (struct ctx *c, bool kill);
/* Setups per mode (the parameters come in *state). */
int setup_none (void **state);
int setup_writeback (void **state);
int setup_writethrough (void **state);
int setup_writearound (void **state);

#endif /* NBDCACHE_TEST_MODEL_FX_H */
