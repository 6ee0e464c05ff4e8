/* SPDX-License-Identifier: BSD-3-Clause */
/* btree-scale.c — the index at scale: N extents in a bounded node cache.
 *
 * WHAT: formats a sparse cache file (or a simulated device), assembles the
 * engine's bucket set, journal and btree on it as the server does, then
 * inserts N one-block dirty extents of export 1 (at blocks 0, 2, 4, …:
 * every extent its own key), through the real allocator and journal, in
 * sequential or shuffled order; looks up random extents; walks the tree;
 * and prints extents, nodes, depth, elapsed times, rates and the
 * process's max RSS, so that "10 M extents fit in node_cache_size" is a
 * measurement, not a claim.
 * WHY: unit tests use thousands of keys; the node cache bound only
 * matters at millions.
 * USAGE: btree-scale [-n EXTENTS] [-c CACHE_MIB] [-l LOOKUPS] [-r] [-s]
 *                    [-d DIR] [-k]
 *   -n  extents to insert (default 10000000)
 *   -c  node_cache_size in MiB (default 64)
 *   -l  random lookups (default 1000000)
 *   -r  insert in shuffled order (default: ascending; shuffled order with
 *       a cache much smaller than the tree is disk-bound: every insert
 *       reads a leaf and writes back dirty ones)
 *   -s  use the in-memory simulated device (small N only: it holds the
 *       whole device in memory, which shows up in the RSS)
 *   -d  directory for the sparse file (default $TMPDIR or /tmp)
 *   -k  keep the file
 * Exit status 0, or 1 on any error (a lookup that misses counts).
 * NOT a test: nothing runs it automatically.
 */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>

#include "assemble.h"
#include "bkey.h"
#include "btree.h"
#include "bucket.h"
#include "cdev.h"
#include "format.h"
#include "journal.h"
#include "log.h"
#include "ondisk.h"
#include "super.h"

#define EXPORT_ID 1
#define MIB (UINT64_C (1) << 20)

struct scale {
  struct cdev *cd;
  struct nc_sb sb;
  struct bucket_set *bs;
  struct journal *j;
  struct btree *bt;
  struct assembly assembly;     /* the modules call back through it */
};

static double
now_s (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static long
max_rss_kib (void)
{
  struct rusage ru;

  getrusage (RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

struct counts {
  uint64_t nodes, leaves, keys;
};

static int
count_node (void *opaque, uint32_t bucket, uint16_t level, uint32_t nkeys)
{
  struct counts *c = opaque;

  c->nodes++;
  if (level == 0)
    c->leaves++;
  return 0;
}

static int
count_key (void *opaque, const struct nc_key *k)
{
  struct counts *c = opaque;

  c->keys++;
  return 0;
}

static int
walk (struct scale *s, struct counts *c)
{
  const struct btree_walk_ops ops = {
    .opaque = c, .node = count_node, .key = count_key,
  };

  memset (c, 0, sizeof *c);
  return btree_walk (s->bt, &ops);
}

/* cache-internal.h's OPEN on a freshly formatted device, the way the
 * server assembles one (assemble.h).
 */
static int
open_engine (struct scale *s, uint64_t cache_bytes)
{
  const struct assemble_slots slots = {
    .sb = &s->sb, .bs = &s->bs, .journal = &s->j, .bt = &s->bt,
  };
  const struct assemble_options o = { .node_cache_bytes = cache_bytes };
  int r;

  assemble_init (&s->assembly, s->cd, "btree-scale", &slots);
  if ((r = assemble_device (&s->assembly, &o)) < 0) {
    assemble_release (&s->assembly);
    return r;
  }
  if (s->assembly.journal_keys != 0) {
    fprintf (stderr, "btree-scale: a fresh journal replayed %" PRIu64
             " key(s)\n", s->assembly.journal_keys);
    return -EINVAL;
  }
  return 0;
}

static void
close_engine (struct scale *s)
{
  int r;

  if (s->bt != NULL && (r = btree_write_all (s->bt)) < 0)
    fprintf (stderr, "btree-scale: write_all: %s\n", strerror (-r));
  if (s->j != NULL) {
    journal_mark_needed (s->j);
    journal_stop (s->j);
    journal_destroy (s->j);
  }
  btree_destroy (s->bt);
  bucket_set_destroy (s->bs);
  cdev_close (s->cd);
}

/* The i-th extent's index in insertion order: ascending, or a bijection
 * of [0, n) (i * a + b mod n with a prime a that does not divide n).
 */
static uint64_t
order (uint64_t i, uint64_t n, bool shuffled)
{
  static const uint64_t a = UINT64_C (2654435761);

  if (!shuffled)
    return i;
  return (uint64_t) (((unsigned __int128) i * a + 12345) % n);
}

static void
print_stats (struct scale *s, const char *when, uint64_t done, double t)
{
  struct btree_stats st;

  btree_get_stats (s->bt, &st);
  printf ("  %-10s %10" PRIu64 " extents %8.1f s %9.0f /s  depth %u  "
          "in memory %" PRIu64 " nodes %.1f MiB  reads %" PRIu64 "  writes %"
          PRIu64 "  evictions %" PRIu64 "  rss %.1f MiB\n",
          when, done, t, t > 0 ? (double) done / t : 0.0, st.depth,
          st.nodes_in_memory, (double) st.node_bytes_in_memory / MIB,
          st.node_reads, st.node_writes, st.node_evictions,
          (double) max_rss_kib () / 1024);
  fflush (stdout);
}

static int
insert_all (struct scale *s, uint64_t n, bool shuffled)
{
  double t0 = now_s ();
  uint64_t i, step = n >= 10 ? n / 10 : 1;
  int r;

  for (i = 0; i < n; i++) {
    uint64_t p = order (i, n, shuffled);
    struct bucket_extent ext;
    struct nc_key k;

    r = bucket_alloc_data (s->bs, WP_DIRTY, 1, &ext);
    if (r == -EAGAIN) {
      if ((r = btree_sweep (s->bt)) == 0)
        r = bucket_alloc_data (s->bs, WP_DIRTY, 1, &ext);
    }
    if (r < 0) {
      fprintf (stderr, "btree-scale: allocating extent %" PRIu64 ": %s\n",
               i, strerror (-r));
      return r;
    }
    memset (&k, 0, sizeof k);
    k.export_id = EXPORT_ID;
    k.end = 2 * p + 1;
    k.size = 1;
    k.flags = NC_KEY_DIRTY;
    k.bucket = ext.bucket;
    k.offset = ext.offset;
    k.gen = ext.gen;
    r = btree_insert (s->bt, &k, 1, NULL, NULL);
    bucket_put_open (s->bs, ext.bucket);
    if (r < 0) {
      fprintf (stderr, "btree-scale: inserting extent %" PRIu64 ": %s\n",
               i, strerror (-r));
      return r;
    }
    if ((i & 63) == 63)
      journal_throttle (s->j);
    if ((i + 1) % step == 0)
      print_stats (s, "insert", i + 1, now_s () - t0);
  }
  return journal_flush (s->j);
}

static int
lookup_random (struct scale *s, uint64_t n, uint64_t lookups,
               uint64_t *misses)
{
  uint64_t rng = 88172645463325252u, i;

  *misses = 0;
  for (i = 0; i < lookups; i++) {
    struct btree_piece pc[2];
    uint64_t p;
    int r;

    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    p = rng % n;
    r = btree_lookup (s->bt, EXPORT_ID, 2 * p, 2 * p + 2, pc, 2, NULL);
    if (r < 0) {
      fprintf (stderr, "btree-scale: lookup: %s\n", strerror (-r));
      return r;
    }
    if (r != 2 || !pc[0].found || pc[0].end != 2 * p + 1 || pc[1].found)
      ++*misses;
  }
  return 0;
}

int
main (int argc, char *argv[])
{
  uint64_t n = 10000000, cache_mib = 64, lookups = 1000000, misses = 0;
  bool shuffled = false, sim = false, keep = false;
  const char *dir = getenv ("TMPDIR");
  char path[4096] = "";
  struct scale s = { 0 };
  struct nc_format_options fo = { .quiet = true };
  struct counts c;
  uint64_t buckets, bytes;
  double t0, t_ins, t_look, t_walk;
  int opt, r;

  while ((opt = getopt (argc, argv, "n:c:l:rsd:k")) != -1) {
    switch (opt) {
    case 'n': n = strtoull (optarg, NULL, 0); break;
    case 'c': cache_mib = strtoull (optarg, NULL, 0); break;
    case 'l': lookups = strtoull (optarg, NULL, 0); break;
    case 'r': shuffled = true; break;
    case 's': sim = true; break;
    case 'd': dir = optarg; break;
    case 'k': keep = true; break;
    default:
      fprintf (stderr, "usage: %s [-n EXTENTS] [-c CACHE_MIB] [-l LOOKUPS] "
               "[-r] [-s] [-d DIR] [-k]\n", argv[0]);
      return 1;
    }
  }
  if (n == 0 || cache_mib == 0) {
    fprintf (stderr, "btree-scale: -n and -c must be positive\n");
    return 1;
  }
  log_init ("btree-scale", LOG_TARGET_STDERR, LOG_LEVEL_WARNING);

  /* 1 MiB buckets: the data (one block per extent), nodes (at least
   * 2048 keys a leaf, twice over for moves and splits), the journal
   * (at most 128 MiB) and slack.
   */
  buckets = n / 256 + 2 * (n / 2048) + 128 + 512;
  bytes = buckets * MIB;
  if (sim)
    r = cdev_sim_create (bytes, &s.cd);
  else {
    struct cdev_file_options fopts = { .create_size_bytes = bytes };

    snprintf (path, sizeof path, "%s/btree-scale-%ld.img",
              dir != NULL && *dir ? dir : "/tmp", (long) getpid ());
    r = cdev_file_open (path, &fopts, &s.cd);
  }
  if (r < 0) {
    fprintf (stderr, "btree-scale: cannot create the device: %s\n",
             strerror (-r));
    return 1;
  }
  printf ("btree-scale: %" PRIu64 " extents, %s order, node cache %" PRIu64
          " MiB, device %s (%.1f GiB sparse, 1 MiB buckets)\n", n,
          shuffled ? "shuffled" : "ascending", cache_mib,
          sim ? "sim" : path, (double) bytes / (1024.0 * MIB));
  if ((r = nc_format (s.cd, &fo)) < 0 ||
      (r = open_engine (&s, cache_mib * MIB)) < 0) {
    fprintf (stderr, "btree-scale: cannot open the engine: %s\n",
             strerror (-r));
    goto out;
  }

  t0 = now_s ();
  if ((r = insert_all (&s, n, shuffled)) < 0)
    goto out;
  t_ins = now_s () - t0;

  t0 = now_s ();
  if ((r = lookup_random (&s, n, lookups, &misses)) < 0)
    goto out;
  t_look = now_s () - t0;
  print_stats (&s, "lookup", lookups, t_look);

  t0 = now_s ();
  if ((r = walk (&s, &c)) < 0) {
    fprintf (stderr, "btree-scale: walk: %s\n", strerror (-r));
    goto out;
  }
  t_walk = now_s () - t0;

  {
    struct btree_stats st;

    btree_get_stats (s.bt, &st);
    printf ("extents     %" PRIu64 " (walk found %" PRIu64 " keys)\n", n,
            c.keys);
    printf ("nodes       %" PRIu64 " (%" PRIu64 " leaves), depth %u, %"
            PRIu64 " splits\n", c.nodes, c.leaves, st.depth, st.splits);
    printf ("insert      %.2f s, %.0f extents/s\n", t_ins,
            (double) n / t_ins);
    printf ("lookup      %.2f s, %.0f lookups/s, %" PRIu64 " wrong\n",
            t_look, (double) lookups / t_look, misses);
    printf ("walk        %.2f s\n", t_walk);
    printf ("node cache  %" PRIu64 " MiB bound; now %.1f MiB in %" PRIu64
            " nodes; %" PRIu64 " reads, %" PRIu64 " writes, %" PRIu64
            " evictions\n", cache_mib,
            (double) st.node_bytes_in_memory / MIB, st.nodes_in_memory,
            st.node_reads, st.node_writes, st.node_evictions);
    printf ("max RSS     %.1f MiB\n", (double) max_rss_kib () / 1024);
    if (c.keys != n || misses != 0)
      r = -EIO;
  }

 out:
  close_engine (&s);
  if (path[0] != '\0' && !keep)
    unlink (path);
  return r < 0 ? 1 : 0;
}
