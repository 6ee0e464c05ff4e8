/* SPDX-License-Identifier: BSD-3-Clause */
/* test-crash-workload.c — the crash sweep's workload and its data.
 *
 * WHAT: the seeded op list (sizes, offsets, kinds, FUA, big trims, drains,
 * GC rounds), the data each write op puts in each sector, and the initial
 * backing content; names and coverage of ops for the report.
 * WHY: the same workload for every crash point, so one seed replays it.
 * INVARIANTS: ops are 512-byte aligned and inside the export.
 * THREADS AND LOCKS: none.  FAILURE: -ENOMEM / NULL.
 * NOT HERE: running it (test-crash-run.c); see test-crash.h.
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

uint64_t
pick_offset (struct test_rng *rng, uint64_t count, uint64_t export_bytes)
{
  uint64_t span = test_rng_chance (rng, 60) ? MIN (HOT_BYTES, export_bytes)
    : export_bytes;
  uint64_t off = test_rng_below (rng, (span - count) / SECTOR + 1) * SECTOR;

  if (test_rng_chance (rng, 40))
    off = ROUND_DOWN (off, NC_BLOCK_BYTES);
  return off;
}

int
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
    /* --fua-heavy: small writes, nearly all FUA, so most commits are the
     * ones a waiter wants with little data: those that skip their
     * pre-flush and carry their data (journal.c REDO), redone at recovery.
     */
    if (cfg->fua_heavy && op->kind == TEST_OP_WRITE) {
      op->count = MIN (op->count, (uint64_t) NC_BLOCK_BYTES);
      if (test_rng_chance (&rng, 85))
        op->flags |= NCACHE_FUA;
    }
  }
  return 0;
}

const char *
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

bool
op_covers (const struct op *op, uint64_t sector)
{
  uint64_t pos = sector * SECTOR;

  return op->count > 0 && pos >= op->offset && pos < op->offset + op->count;
}

void
fill_op (const struct run *run, unsigned i, unsigned char *buf)
{
  const struct op *op = &run->w->ops[i];
  uint64_t s;

  for (s = 0; s < op->count / SECTOR; s++)
    test_sector_fill (buf + s * SECTOR, test_value_of_op (i),
                      op->offset / SECTOR + s);
}

/* The initial backing content: every sector holds op 0's pattern. */
unsigned char *
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
