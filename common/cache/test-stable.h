/* SPDX-License-Identifier: BSD-3-Clause */
/* test-stable.h — the stability check after a crash, shared by the crash
 * sweep (test-crash.h) and the model test (test-model-*.c).
 *
 * THE PROMISE (doc/design.md, "the crash promise"): after any crash (a killed process or
 * a power loss) what a block reads is stable until someone writes it,
 * whatever the cache evicts; and after a drain the backing store equals
 * what was served.
 *
 * HOW, on an export just reopened after the crash, with nobody writing:
 *   A  read the whole export (or take the caller's reading of it);
 *   -  ncache_drain: every dirty block goes back, every cached block is
 *      now clean;
 *   B  (optional: reread) read the whole export again: A == B (the drain
 *      changed no answer);
 *   C  read the backing store directly, through a handle of its own:
 *      C == A.  A clean block may be evicted at any moment, and a read
 *      then comes from the backing store, so C is exactly what a forced
 *      eviction of every block would serve: "read, evict everything, read
 *      again" must agree, and C == A is also "after a drain the backing
 *      equals what was served".
 * Both comparisons are byte-exact, by 512-byte sector.
 *
 * THREADS: one caller; the engine's threads run underneath (writeback may
 * run: after the drain nothing is dirty, so it writes nothing).
 * FAILURE: see test_check_stable.
 */
#ifndef NBDCACHE_TEST_STABLE_H
#define NBDCACHE_TEST_STABLE_H

#include <stdbool.h>
#include <stdint.h>

struct ncache_export;
struct test_store;

/* Called for the first few sectors that differ: `sector` (512-byte
 * number), what was served first (A) and what the other reading gave.
 */
typedef void (*test_stable_bad_fn) (void *opaque, const char *what,
                                    uint64_t sector, const void *served,
                                    const void *other);

struct test_stable_report {
  const char *what;             /* the failing comparison or step */
  uint64_t first_bad_sector;
  uint64_t nr_bad_sectors;      /* over both comparisons */
  int err;                      /* -errno of a failed step, else 0 */
};

/* served: NULL, or the caller's reading A of the whole export (then A is
 * not read again).  reread: do step B too (a full read through the
 * engine: it promotes, so it costs as much as A).  bad (may be NULL) is called for at most max_reported
 * sectors.  0: stable; 1: not (rep says where); -errno: a step failed
 * (rep->what names it) or out of memory.
 */
int test_check_stable (struct ncache_export *nc, struct test_store *st,
                       uint64_t export_bytes, const unsigned char *served,
                       bool reread, test_stable_bad_fn bad, void *opaque,
                       unsigned max_reported,
                       struct test_stable_report *rep);

#endif /* NBDCACHE_TEST_STABLE_H */
