/* SPDX-License-Identifier: BSD-3-Clause */
/* test-dev-fx.h — the fixture of the tests that run a real cache device
 * with one writeback export and look at its blocks.
 *
 * PROGRAMS: test-datacsum (data checksums: damaged blocks, writeback,
 * moving GC, reopen), test-redo (one-sync FLUSH/FUA commits and what
 * recovery rewrites from the journal) and test-gc (the device's
 * background thread: moving GC, discards, GC passes).  This fixture
 * (test-dev-fx.c) holds the context, the data model and the helpers they
 * share.
 * WHAT: a cache device opened through the engine's own door
 * (ncache_device_open_cdev) on a simulated cdev with 64 KiB buckets, one
 * writeback export "over" a memory backing store, writeback and the
 * sequential cutoff off (so written data stays dirty in the cache and
 * the backing store never sees it; a test may pick another mode); a
 * crash (power loss of the device) and reopen; a byte model of what the export
 * holds; writes of a seeded pattern; reads checked against the model; the
 * device byte where an export block is cached; the device's counters.
 * WHY: the three programs need exactly this world; one copy keeps them
 * alike.
 * The journal delay differs per program (a short one for test-datacsum
 * and test-gc, a long one for test-redo, where only FLUSH and FUA may
 * commit), so it is a parameter, and so are data checksums and discards.
 * SEED: the patterns derive from `seed`, which each program sets from
 * NBDCACHE_SEED (printed).
 * NOT HERE: damage (cdev_sim_poke: the programs' own).
 */
#ifndef NBDCACHE_TEST_DEV_FX_H
#define NBDCACHE_TEST_DEV_FX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backing.h"
#include "cache.h"
#include "cdev.h"
#include "ondisk.h"
#include "testkit.h"

#define DEVICE_BYTES (16 * MIB)
#define BUCKET_BYTES (64 * KIB)
#define BUCKET_BLOCKS (BUCKET_BYTES / NC_BLOCK_BYTES)
#define EXPORT_BYTES (4 * MIB)
#define BLK NC_BLOCK_BYTES

extern uint64_t seed;

/* ctx_open's flags. */
#define CTX_NO_CHECKSUMS 0x1    /* formatted without data checksums */
#define CTX_DISCARD 0x2         /* discard = yes (freed buckets punched) */

struct ctx {
  const char *name;             /* of the device and the export */
  unsigned flags;               /* CTX_* */
  enum ncache_mode mode;        /* of the export: writeback unless a
                                   test sets another before an attach */
  unsigned journal_delay_ms;
  struct cdev *cd;              /* held: outlives the device */
  struct ncache_device *dev;
  struct ncache_export *nc;
  struct backing *b;            /* the export's (borrowed); NULL: the next
                                   attach makes a new one of zeros */
  unsigned char *model;         /* EXPORT_BYTES: what the export holds */
  unsigned char *buf;
};

/* A new simulated device, formatted by the engine (or, with
 * CTX_NO_CHECKSUMS, by nc_format with no data checksums), opened with its
 * export.
 */
void ctx_open (struct ctx *c, const char *name, unsigned journal_delay_ms,
               unsigned flags);
/* Open the device (format it if create) and the export over c->b. */
void ctx_attach (struct ctx *c, bool create);
/* Close the export and the device; the simulated device stays, and a
 * copy of the backing store's bytes waits for the next attach.  With
 * crash, the device dies at its next write first and loses every write
 * not synced (cdev_sim_crash).
 */
void ctx_detach (struct ctx *c);
void ctx_crash (struct ctx *c);
void ctx_close (struct ctx *c);

/* The model's bytes [offset, offset + len) get pattern `tag`; then they
 * are written to the export with NCACHE_* flags.
 */
void fill (struct ctx *c, uint64_t offset, size_t len, unsigned tag);
void write_pattern (struct ctx *c, uint64_t offset, size_t len, unsigned tag,
                    uint32_t flags);
/* The device byte where export block `block` is cached (it must be);
 * *key (if not NULL) the index's key there.
 */
uint64_t where (struct ctx *c, uint64_t block, struct nc_key *key);
/* Read [lo, hi) of the export: it must equal the model. */
void check_range (struct ctx *c, uint64_t lo, uint64_t hi);
struct ncache_device_stats dstats (struct ctx *c);

#endif /* NBDCACHE_TEST_DEV_FX_H */
