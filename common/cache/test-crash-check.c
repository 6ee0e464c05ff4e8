/* SPDX-License-Identifier: BSD-3-Clause */
/* test-crash-check.c — the crash sweep's checks and failure report.
 *
 * WHAT: what a read may return against the per-sector model, before and
 * after the crash; that nothing dirty is left where a drain said so; the
 * stability check; that the reopened device still works; and the failure
 * report (seed, point, tear, ops, sector history, replay line).
 * WHY: a failure must say everything needed to replay and understand it.
 * INVARIANTS: a failing point is reported once, with its replay line.
 * THREADS AND LOCKS: the test's thread only.
 * FAILURE: -1 (reported) or 0.
 * NOT HERE: the promise itself (test-crash.h, test-sector-model.c rules).
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
#include "test-crash.h"
#include "test-helpers.h"
#include "test-stable.h"

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
void
fail_header (struct run *run, const char *fmt, ...)
{
  va_list ap;
  char d[200];

  run->failed = true;
  fprintf (stderr, "\nFAIL: mode %s, seed %" PRIu64 ", crash point %" PRIu64
           " (%s), tear seed %" PRIu64 "\n  ",
           ncache_mode_name (run->mode), run->cfg->seed, run->point,
           point_kind (run), run->tear);
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  if (run->cd != NULL && run->total_ops == 0)
    fprintf (stderr, "\n  device writes and syncs attempted: %" PRIu64
             " before the workload, %" PRIu64 " since (still running); the "
             "device %s\n", run->base_ops,
             cdev_sim_nr_ops (run->cd) - run->base_ops,
             device_dead (run, run->cd) ? "is dead" : "is alive");
  else
    fprintf (stderr, "\n  device writes and syncs attempted: %" PRIu64
             " before the workload, %" PRIu64 " by the workload, %" PRIu64
             " with close (%" PRIu64 " of them syncs); the device %s\n",
             run->base_ops, run->workload_ops, run->total_ops,
             run->total_syncs,
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
void
format_replay (const struct run *run, char *s, size_t len)
{
  const struct config *cfg = run->cfg;
  char tail[64] = "";

  if (cfg->tail)
    snprintf (tail, sizeof tail, " --tail %u", cfg->tail);
  if (cfg->drainer_ms != DRAINER_MS)
    snprintf (tail + strlen (tail), sizeof tail - strlen (tail),
              " --drainer-ms %u", cfg->drainer_ms);
  if (cfg->fua_heavy)
    snprintf (tail + strlen (tail), sizeof tail - strlen (tail),
              " --fua-heavy");
  if (cfg->no_data_csum)
    snprintf (tail + strlen (tail), sizeof tail - strlen (tail),
              " --no-data-csum");
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

void
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
unsigned
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

/* Read the whole export and check every sector after the crash. */
void
verify_after_crash (struct run *run, struct ncache_export *nc)
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
void
verify_clean_in_backing (struct run *run, struct ncache_export *nc)
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
void
verify_stable (struct run *run, struct ncache_export *nc)
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
void
prove_usable (struct run *run, struct ncache_export *nc)
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
