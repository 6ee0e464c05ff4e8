/* SPDX-License-Identifier: BSD-3-Clause */
/* test-btree-fx.h — the btree tests' fixture: fakes of the bucket set and
 * the journal, the test context, the per-block model and walk helpers.
 *
 * Owns: the fakes' state (one per context) and the seed of the program.
 * The fakes replace the bucket set and the journal at link time (only
 * what btree.c calls), built against bucket.h and journal.h: the fake
 * bucket set counts live blocks per bucket from bucket_account and flags
 * misuse (freeing a bucket that holds no node, live counts below zero);
 * the fake journal keeps its entries (keys, root, last_seq) so a test can
 * replay them like journal.c would.
 * Threads: the fakes are called under the btree's lock.
 * Why not one fake with test-btree-walk-fx.h: the two sets fake the same
 * calls (bucket.h, journal.h) for different questions.  This one asks
 * "does the index keep its keys, nodes and journal right": a geometry
 * per context (ctx_init's max_keys and cache size), a growable list of
 * freed node buckets, allocation failure on demand (fail_alloc), a
 * journal that marks itself needed, counts adds and can drop its entries
 * after a crash point (fj_free_entries_after); the GC calls are only
 * counted (gc_begins/notes/ends).  The walk fake asks "does a GC pass
 * count exactly": fixed geometry (NBUCKETS), dirty counts and a second
 * set of GC counts checked against bucket.h's contract (cursor order,
 * double notes, the counts at a complete end), pass counters bumped
 * atomically for its threaded tests.  The helpers on top differ in
 * signature (ctx_init, dkey), and both programs' fixtures define seed,
 * rng_below and struct ctx, so neither can be linked with the other.
 * One fake module would be one bucket_set with the union of the fields
 * and the stricter GC checks always on; not merged yet because the index
 * tests have never run under those checks (a follow-up of issue 9 item 7).
 * Not here: the tests (test-btree-index.c, test-btree-persist.c).
 */
#ifndef NBDCACHE_TEST_BTREE_FX_H
#define NBDCACHE_TEST_BTREE_FX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bkey.h"
#include "btree.h"
#include "bucket.h"
#include "journal.h"
#include "ondisk.h"

/* ---- logging ---- */

/* ---- seed ---- */

extern uint64_t seed;

/* ---- a fake bucket set ---- */

#define FAKE_MAX_BUCKETS 8192u

struct fake_freed {
  uint32_t bucket;
  uint64_t seq;
};

struct bucket_set {
  uint32_t nbuckets, data_first, data_buckets; /* data keys: [first, +n) */
  uint8_t gen[FAKE_MAX_BUCKETS];
  bool node[FAKE_MAX_BUCKETS];  /* holds a node */
  int64_t live[FAKE_MAX_BUCKETS];
  uint32_t next_node;           /* next never-used node bucket */
  struct fake_freed *freed;
  size_t nr_freed, cap_freed;
  uint64_t durable_seq;         /* freed buckets come back after this */
  bool fail_alloc;
  unsigned errors;              /* misuse seen */
  uint64_t nr_alloc, nr_free, gc_begins, gc_notes, gc_ends;
};

/* ---- a fake journal ---- */

struct fj_entry {
  uint64_t seq, last_seq;
  struct nc_key root;
  uint16_t level;
  struct nc_key *keys;
  size_t nkeys;
};

struct journal {
  uint64_t open_seq;
  struct nc_key *open_keys;
  size_t nr_open, cap_open;
  struct fj_entry *e;           /* closed entries, by seq */
  size_t nr, cap;
  uint64_t durable_seq;
  bool needed;
  uint64_t adds;
};

/* ---- the test context ---- */

#define BUCKET_BLOCKS 16u
#define NBUCKETS 4096u
#define DATA_FIRST 8u
#define DATA_BUCKETS 256u

struct ctx {
  struct nc_sb sb;
  struct cdev *cd;
  struct bucket_set *bs;
  struct journal *j;
  struct btree *bt;
  uint32_t max_keys;
  uint64_t cache_bytes;
};

/* ---- the model: one value per block ---- */

#define NEXP 3                  /* exports 1 .. 3; 3 stays empty */
#define NBLK 8192u

#define MV_NONE 0u
#define MV_ZERO 1u

struct model {
  uint64_t v[NEXP + 1][NBLK];
};

/* Dense: short data keys and short deletes only, so that keys pile up
 * (enough to split real-sized nodes).
 */
extern bool dense;

/* Keys inserted (or attempted) since the last durable commit. */
struct post {
  struct nc_key *k;
  size_t n, cap;
};

/* ---- walk helpers ---- */

struct walk_count {
  uint64_t nodes, leaves, keys;
  uint16_t max_level;
  uint32_t leaf_buckets[64];
  size_t nr_leaf_buckets;
  uint32_t all_buckets[4096];
  size_t nr_all;
};

/* ---- test-btree-fx.c ---- */

uint64_t rng_below (uint64_t *s, uint64_t n);
void fj_free_entries_after (struct journal *j, uint64_t seq);
void ctx_make_btree (struct ctx *c);
void ctx_init (struct ctx *c, uint32_t max_keys, uint64_t cache_bytes);
void ctx_free (struct ctx *c);
int ctx_commit (struct ctx *c);
int ctx_reopen (struct ctx *c);
struct nc_key dkey (uint16_t x, uint64_t start, uint64_t end, uint32_t bucket,
      uint32_t offset, struct bucket_set *bs);
struct nc_key fkey (uint16_t x, uint64_t start, uint64_t end, uint8_t flags);
void insert1 (struct ctx *c, struct nc_key k);
void model_apply (struct model *m, const struct nc_key *k);
void check_all (struct ctx *c, const struct model *m);
void check_accounting (struct ctx *c, const struct model *m);
struct nc_key random_key (struct ctx *c, uint64_t *rs, uint16_t x);
int random_insert_post (struct ctx *c, struct model *m, uint64_t *rs,
                    struct post *post);
int random_insert (struct ctx *c, struct model *m, uint64_t *rs);
void model_from_btree (struct ctx *c, struct model *m);
void check_after_crash (const struct model *got, const struct model *durable,
                   const struct post *post);
int walk_count (struct ctx *c, struct walk_count *w);

#endif /* NBDCACHE_TEST_BTREE_FX_H */
