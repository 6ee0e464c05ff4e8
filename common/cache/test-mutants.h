/* SPDX-License-Identifier: BSD-3-Clause */
/* test-mutants.h — what test-mutants.c (building the base image, running
 * the mutants, the tally) and test-mutants-image.c (parsing the base
 * image, making a mutant) share: the geometry, the regions, the targets,
 * the world, a mutant.
 * Single-threaded test code: W is the one world, set up once.
 */
#ifndef NBDCACHE_TEST_MUTANTS_H
#define NBDCACHE_TEST_MUTANTS_H

#include <stdbool.h>
#include <stdint.h>

#include "ondisk.h"

#define DEVICE_BYTES (32u << 20)
#define BUCKET_BYTES (64u << 10)
#define EXPORT_BYTES (16u << 20)
#define NR_BLOCKS (EXPORT_BYTES / NC_BLOCK_BYTES)
#define MAX_TARGETS 4096

struct cdev;
struct test_store;

/* R_CSUM: the words of the data checksum region that cover current
 * data (no checksum of their own: like data, one mode).
 */
enum region { R_SUPER, R_PRIO, R_JOURNAL, R_BTREE, R_DATA, R_CSUM,
              NR_REGIONS };
/* Regions with no checksum of their own: mutated in one mode. */
#define REGION_UNCHECKED(r) ((r) >= R_DATA)

/* One structure a mutant may damage. */
struct target {
  enum region region;
  uint64_t off;                 /* byte offset in the image */
  uint32_t span;                /* bytes it occupies (whole blocks) */
  uint32_t csum_len;            /* bytes [0, csum_len) hold csum + scope
                                   (an export table: the scope only, its
                                   csum is in the head); 0: no checksum
                                   (data).  A stamped journal entry: in
                                   payload bytes */
  uint32_t hdr;                 /* header bytes; after: keys, entries,
                                   export slots */
  uint32_t body_lo, body_hi;    /* the part after the header worth
                                   hitting (export slots in use …) */
  bool preferred;               /* the copy in use, an entry to replay, a
                                   node's newest bset */
  bool newest_bset_not_first;   /* its first block is the hole */
  bool leaf_bset;               /* a bset of level 0 */
  int sb_slot;                  /* superblock: the copy (0, 1) */
  bool sb_table;                /* superblock: the copy's export table */
  unsigned char *payload;       /* a stamped journal entry: its payload
                                   (header, keys, zeros; payload_len) */
  uint32_t payload_len;
};
struct world {
  struct cdev *cd;
  struct test_store *store;
  unsigned char *base;          /* the base image */
  unsigned char *backing0;      /* the backing store as of the base image */
  uint32_t version[NR_BLOCKS];  /* what each block must read */
  struct nc_sb sb;              /* the base image's superblock in use
                                   (head and table) */
  uint64_t jseed;               /* of the journal's sector stamps */
  uint64_t jnewest_write;       /* the first seq of the newest write */
  struct target targets[MAX_TARGETS];
  unsigned nr_targets;
  unsigned nr_of[NR_REGIONS];
  uint32_t *used_buckets;       /* buckets live keys and nodes are in */
  unsigned nr_used_buckets;
  unsigned nr_nodes;
  uint64_t seed;
  const char *nbdcache;         /* NBDCACHE: the binary, or NULL */
  char image_path[4096];        /* where check reads the mutant */
  char check_log[4100];
  unsigned check_died;          /* nbdcache check killed by a signal */
};

extern struct world W;

/* ---- a mutant ---- */

struct mutant {
  unsigned index;
  enum region region;
  bool recompute;               /* the checksum recomputed after */
  const struct target *t;
  uint64_t off;                 /* first byte changed (device) */
  uint32_t len;                 /* bytes changed */
  uint32_t soff;                /* first byte changed in the structure's
                                   checksummed bytes (a stamped entry:
                                   its payload) */
  bool in_stamp;                /* a journal sector's stamp */
  bool stamp_unwritten;         /* … of the newest write, recomputed, now
                                   naming no newer seq (HOLE_STAMP_…) */
  uint64_t chg_lo, chg_hi;      /* device bytes the mutant changed */
  char what[160];
};

/* test-mutants-image.c: find every target in W.base (W.targets, W.sb,
 * W.used_buckets …).
 */
void parse_base (void);
/* Make mutant m->index of region m->region in img (a copy of W.base):
 * fills in the rest of *m.
 */
void make_mutant (struct mutant *m, unsigned char *img);

#endif /* NBDCACHE_TEST_MUTANTS_H */
