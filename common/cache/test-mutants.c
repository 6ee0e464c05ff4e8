/* SPDX-License-Identifier: BSD-3-Clause */
/* test-mutants.c — the metadata-mutation tally: seeded mutants of every
 * region of a cache device, each refused, served right, or answered with
 * EIO — never wrong data, and never "clean" from nbdcache check while
 * wrong data would be served.
 *
 * WHAT: builds one cache device (simulated, cdev-sim) over a known
 * backing through the engine's API, in writeback mode with writeback off:
 * several open/write/close cycles (so btree nodes carry chains of bsets),
 * multi-block writes, zeroes, a drain (dirty data written back: clean
 * keys) and prefetches (promotions: clean keys), then more writes, a
 * FLUSH, and a power loss before any leaf is written: the base image has
 * dirty data, clean data, ZERO keys and pending (unreplayed) journal
 * entries.  Every write is FLUSHed, so every block must read what was
 * last written.  Then, per region — superblock, prio, journal, btree,
 * data, data checksums — N seeded mutants with the damaged structure's
 * checksum left as it is and N with it recomputed (data and the data
 * checksum words have no checksum of their own: N mutants).  Each mutant is a bit flip, a random byte or 8 bytes, or a
 * zeroed block (kept checksums only) in a live structure: either
 * superblock copy's head or export table, either prio copy, a valid
 * journal entry (those to replay most often), a bset of a live node (the
 * newest most often), a block of current cached data, the checksum words
 * of current cached data.  A journal entry
 * (version 2, stamped) is mutated in its device bytes: a byte of its
 * payload or of a sector's stamp; "recomputed" there means what an
 * attacker who knows the format does: the entry's payload changed, its
 * checksum recomputed and the entry framed again (jentry_frame: every
 * stamp consistent), or a stamp's fields changed and the sector's stamp
 * checksum recomputed.  A superblock copy's "recomputed" is the head's
 * table_csum and csum, as super.c computes them.  A mutant is opened (recovery, read-write)
 * and every block read back:
 *   refused  the device or the export does not open;
 *   correct  every block reads what was last written;
 *   EIO      some blocks fail with an error, the others read right;
 *   wrong    some block reads something else.
 * With NBDCACHE set to the nbdcache binary, every mutant is first checked
 * with `nbdcache check --data` (which must not change the image): clean,
 * damaged or other (exit 2).
 * The test prints the seed, and a tally per region and checksum mode, of
 * the outcomes and of check's verdicts.  It fails on any wrong mutant of
 * any region (data included: the data checksums answer a damaged dirty
 * block with EIO and read a damaged clean one from the backing store), on
 * "check clean" for a mutant that serves wrong data or (data, checksums)
 * fails reads, and on a check that changed the image or died.
 * KNOWN HOLES, counted apart and printed, not failed (enum hole): a
 * newest bset's identity clobbered (the format cannot tell it from blocks
 * never written; test-corrupt.c has the same exception); a leaf key's
 * extent changed with its checksum recomputed (the data checksums name
 * the device block, not the export block: a key moved over other data
 * that verifies reads it); a sector stamp of the newest
 * journal write forged, checksum recomputed, to look never written
 * (what a torn write leaves: dropped as torn); a journal entry's key
 * count changed, checksum recomputed (a shorter entry is well-formed); a
 * journal entry's last_seq changed, checksum recomputed (raised, it
 * says older entries are in the index: nothing in the format says
 * otherwise).
 * HOW: the test parses the base image itself (ondisk.h, nc_csum),
 * independently of the engine's readers, to find the live structures and
 * to recompute checksums; only the stamped sectors of a journal entry are
 * read and written with journal-entry.c's jentry_payload / jentry_frame
 * (the format's one framing, tested by test-journal-stamps.c).  That
 * part, parsing and making mutants, is test-mutants-image.c; this file
 * builds the base image, runs each mutant and keeps the tally.
 * SEED: NBDCACHE_SEED replays a run (mutant i uses test_mix64 (seed ^ i),
 * so NBDCACHE_MUTANT=i reruns mutant i alone, printing its log);
 * NBDCACHE_MUTANTS sets N (default 20).
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <xxhash.h>

#include "backing.h"
#include "cache.h"
#include "cache-internal.h"
#include "cdev.h"
#include "csum.h"
#include "journal-internal.h"
#include "ondisk.h"
#include "super.h"
#include "test-helpers.h"
#include "test-mutants.h"

#define PROGRAM "test-mutants"

#define CYCLES 6
#define ZEROED UINT32_MAX       /* version of a block written with zeroes */
#define READ_CHUNK_BLOCKS 256u

extern char **environ;

/* ---- the data: every block of every version is distinct ---- */

static void
fill_block (unsigned char *buf, uint32_t block, uint32_t version)
{
  uint64_t w = UINT64_C (0x4d5554414e545321) ^ ((uint64_t) block << 24)
    ^ version;
  size_t i;

  if (version == ZEROED) {
    memset (buf, 0, NC_BLOCK_BYTES);
    return;
  }
  for (i = 0; i < NC_BLOCK_BYTES; i += 8) {
    uint64_t v = w + i;
    memcpy (buf + i, &v, 8);
  }
}

/* ---- regions, outcomes, verdicts ---- */

static const char *const region_names[NR_REGIONS] = {
  "superblock", "prio", "journal", "btree", "data", "checksums",
};

enum outcome { O_REFUSED, O_CORRECT, O_EIO, O_WRONG, NR_OUTCOMES };
static const char *const outcome_names[NR_OUTCOMES] = {
  "refused", "correct", "EIO", "WRONG",
};

enum verdict { V_NONE, V_CLEAN, V_DAMAGED, V_OTHER, NR_VERDICTS };
static const char *const verdict_names[NR_VERDICTS] = {
  "-", "clean", "damaged", "other",
};

struct world W;                 /* test-mutants.h */

static int
open_all (bool create, struct ncache_device **dev, struct ncache_export **nc)
{
  const struct ncache_device_tuning tuning = {
    .node_cache_bytes = 1u << 20,
    .journal_delay_ms = 60000,  /* commits only when asked: a
                                   deterministic base image */
    .format_bucket_bytes = BUCKET_BYTES,
    .gc_off = true,
  };
  struct ncache_export_tuning et;
  struct ncache_config cfg = {
    .name = "mutants", .mode = NCACHE_MODE_WRITEBACK, .tuning = &et,
  };
  struct backing *b;
  int r;

  ncache_export_tuning_default (&et);
  et.writeback_off = true;
  et.sequential_cutoff_bytes = 0;
  cdev_sim_hold (W.cd);         /* the engine takes this reference */
  if ((r = ncache_device_open_cdev ("mutants", W.cd, create, &tuning,
                                    dev)) < 0)
    return r;
  if ((r = test_store_open (W.store, &b)) < 0) {
    ncache_device_close (*dev);
    return r;
  }
  cfg.device = *dev;
  if ((r = ncache_open (&cfg, b, nc)) < 0) {
    ncache_device_close (*dev);
    return r;
  }
  return 0;
}

/* n writes of 1 to 4 blocks, each zeroes with probability zero_pct, a
 * FLUSH after every flush_every of them and at the end.
 */
static void
write_some (struct ncache_export *nc, struct test_rng *rng, unsigned n,
            uint32_t version, unsigned zero_pct, unsigned flush_every)
{
  static unsigned char buf[8 * NC_BLOCK_BYTES];
  unsigned i;

  for (i = 0; i < n; i++) {
    uint32_t len = (uint32_t) test_rng_range (rng, 1, 4);
    uint32_t block = (uint32_t) test_rng_below (rng, NR_BLOCKS - len + 1);
    uint64_t off = (uint64_t) block * NC_BLOCK_BYTES;
    uint32_t j;
    bool zero = test_rng_chance (rng, zero_pct);

    for (j = 0; j < len; j++) {
      W.version[block + j] = zero ? ZEROED : version;
      fill_block (buf + (size_t) j * NC_BLOCK_BYTES, block + j,
                  W.version[block + j]);
    }
    if (zero)
      assert_int_equal (ncache_zero (nc, (uint64_t) len * NC_BLOCK_BYTES,
                                     off, 0), 0);
    else
      assert_int_equal (ncache_pwrite (nc, buf, (size_t) len
                                       * NC_BLOCK_BYTES, off, 0), 0);
    if ((i + 1) % flush_every == 0)
      assert_int_equal (ncache_flush (nc, 0), 0);
  }
  assert_int_equal (ncache_flush (nc, 0), 0);
}

/* Prefetch n ranges of 1 to 16 blocks: clean keys (promotions). */
static void
prefetch_some (struct ncache_export *nc, struct test_rng *rng, unsigned n)
{
  unsigned i;

  for (i = 0; i < n; i++) {
    uint32_t len = (uint32_t) test_rng_range (rng, 1, 16);
    uint32_t block = (uint32_t) test_rng_below (rng, NR_BLOCKS - len + 1);

    assert_int_equal (ncache_cache (nc, (uint64_t) len * NC_BLOCK_BYTES,
                                    (uint64_t) block * NC_BLOCK_BYTES, 0),
                      0);
  }
}

/* ---- the known holes: counted apart, printed, not failed ---- */

enum hole {
  HOLE_NONE,
  /* The identity (magic, uuid, nonce) in the first block of a newest
   * bset that has an older one before it, clobbered, checksum kept:
   * format v1 cannot tell it from blocks never written after the older
   * bset (nothing outside the bucket records a node's seq).
   */
  HOLE_BSET_IDENTITY,
  /* A leaf key's extent or pointer (end, size, bucket, offset) changed,
   * checksum recomputed: the key is well-formed and names other blocks;
   * only a checksum of the data, bound to its address, can tell (data
   * checksums, issue 14 item 7).
   */
  HOLE_KEY_ADDRESS,
  /* A stamp of an entry of the newest write changed so that it names no
   * newer seq (another write of the entry's seq, an older entry, fill),
   * its checksum recomputed: exactly what a torn write leaves, so the
   * write is dropped as never acknowledged (journal-replay.c TORN OR
   * DAMAGED: the format cannot tell; a retried write may carry another
   * csum for the same seq).
   */
  HOLE_STAMP_UNWRITTEN,
  /* A journal entry's key count (nkeys) changed, checksum recomputed and
   * sectors stamped again: with fewer keys it is a well-formed entry
   * that never carried the ones cut off (their data is in the buckets,
   * but nothing points back from data to keys), so replay serves what
   * the older keys say.  Only an adversary who can recompute checksums
   * makes one.
   */
  HOLE_JENTRY_NKEYS,
  /* A journal entry's last_seq (the oldest entry still needed) changed,
   * checksum recomputed and sectors stamped again: raised, it says the
   * entries below it are in the index already, and a well-formed entry
   * cannot be told from one written after the index was (replay skips
   * them, their keys are lost); lowered, replay only redoes older keys
   * first.  Only an adversary who can recompute checksums makes one.
   */
  HOLE_JENTRY_LAST_SEQ,
  NR_HOLES
};
static const char *const hole_names[NR_HOLES] = {
  "",
  "a newest bset's identity clobbered (the format cannot tell)",
  "a leaf key's extent or pointer changed (checksums name device blocks)",
  "a stamp of the newest write forged as never written (reads as torn)",
  "a journal entry's key count changed (a well-formed shorter entry)",
  "a journal entry's last_seq changed (entries taken as in the index)",
};

/* Does [lo, hi) (bytes of the structure) touch [a, b)? */
static bool
touches (uint64_t lo, uint64_t hi, uint64_t a, uint64_t b)
{
  return lo < b && hi > a;
}

static enum hole
hole_of (const struct mutant *m)
{
  const struct target *t = m->t;
  uint64_t lo = m->soff, hi = lo + m->len;

  if (m->region == R_BTREE && !m->recompute && t->newest_bset_not_first &&
      (touches (lo, hi, offsetof (struct nc_bset, magic),
                offsetof (struct nc_bset, version)) ||
       touches (lo, hi, offsetof (struct nc_bset, uuid),
                offsetof (struct nc_bset, seq))))
    return HOLE_BSET_IDENTITY;
  if (m->stamp_unwritten)
    return HOLE_STAMP_UNWRITTEN;
  if (m->region == R_JOURNAL && m->recompute && !m->in_stamp &&
      touches (lo, hi, offsetof (struct nc_jentry, nkeys),
               offsetof (struct nc_jentry, nkeys) + sizeof (uint32_t)))
    return HOLE_JENTRY_NKEYS;
  if (m->region == R_JOURNAL && m->recompute && !m->in_stamp &&
      touches (lo, hi, offsetof (struct nc_jentry, last_seq),
               offsetof (struct nc_jentry, last_seq) + sizeof (uint64_t)))
    return HOLE_JENTRY_LAST_SEQ;
  /* A stamped entry: lo is in its payload, where its keys are. */
  if (m->recompute && m->len < sizeof (struct nc_key) && hi > t->hdr &&
      ((m->region == R_JOURNAL && !m->in_stamp) ||
       (m->region == R_BTREE && t->leaf_bset))) {
    /* The keys it touches (8 bytes may start in the header): end, size,
     * bucket, offset come first in each.
     */
    uint64_t k = (lo > t->hdr ? lo - t->hdr : 0) / sizeof (struct nc_key);
    uint64_t k_end = (hi - 1 - t->hdr) / sizeof (struct nc_key);

    for (; k <= k_end; k++)
      if (touches (lo, hi, t->hdr + k * sizeof (struct nc_key),
                   t->hdr + k * sizeof (struct nc_key)
                   + offsetof (struct nc_key, export_id)))
        return HOLE_KEY_ADDRESS;
  }
  return HOLE_NONE;
}

/* ---- running a mutant ---- */

/* Open the device as it is and read every block.  *eio / *wrong: blocks
 * that failed / read something else than expected.
 */
static enum outcome
open_and_read (uint64_t *eio, uint64_t *wrong)
{
  struct ncache_device *dev;
  struct ncache_export *nc;
  unsigned char *buf, want[NC_BLOCK_BYTES];
  uint32_t b, c;

  *eio = *wrong = 0;
  if (open_all (false, &dev, &nc) < 0)
    return O_REFUSED;
  buf = malloc ((size_t) READ_CHUNK_BLOCKS * NC_BLOCK_BYTES);
  assert_non_null (buf);
  for (c = 0; c < NR_BLOCKS; c += READ_CHUNK_BLOCKS) {
    bool chunk_ok = ncache_pread (nc, buf, (size_t) READ_CHUNK_BLOCKS
                                  * NC_BLOCK_BYTES,
                                  (uint64_t) c * NC_BLOCK_BYTES, 0) == 0;

    for (b = c; b < c + READ_CHUNK_BLOCKS; b++) {
      unsigned char *p = buf + (size_t) (b - c) * NC_BLOCK_BYTES;

      /* After an error, each block on its own. */
      if (!chunk_ok && ncache_pread (nc, p, NC_BLOCK_BYTES,
                                     (uint64_t) b * NC_BLOCK_BYTES, 0) < 0) {
        (*eio)++;
        continue;
      }
      fill_block (want, b, W.version[b]);
      if (memcmp (p, want, sizeof want) != 0)
        (*wrong)++;
    }
  }
  ncache_close (nc);
  ncache_device_close (dev);
  free (buf);
  return *wrong > 0 ? O_WRONG : *eio > 0 ? O_EIO : O_CORRECT;
}

static void
print_check_log (void)
{
  char line[1024];
  FILE *f;

  if (W.nbdcache == NULL || (f = fopen (W.check_log, "r")) == NULL)
    return;
  while (fgets (line, sizeof line, f) != NULL)
    printf ("#     check: %s", line);
  fclose (f);
}

/* Write bytes [off, off + len) of img to W.image_path, sparse (all of it
 * for len = DEVICE_BYTES).
 */
static void
write_image (const unsigned char *img, uint64_t off, uint64_t len)
{
  static const unsigned char zero[NC_BLOCK_BYTES];
  uint64_t b, end = off + len;
  int fd = open (W.image_path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);

  assert_true (fd >= 0);
  if (len == DEVICE_BYTES)
    assert_int_equal (ftruncate (fd, 0), 0);
  assert_int_equal (ftruncate (fd, DEVICE_BYTES), 0);
  for (b = off / NC_BLOCK_BYTES * NC_BLOCK_BYTES; b < end;
       b += NC_BLOCK_BYTES)
    if (len != DEVICE_BYTES || memcmp (img + b, zero, NC_BLOCK_BYTES) != 0)
      assert_int_equal (pwrite (fd, img + b, NC_BLOCK_BYTES, (off_t) b),
                        NC_BLOCK_BYTES);
  assert_int_equal (close (fd), 0);
}

static struct timespec
image_mtime (void)
{
  struct stat st;

  assert_int_equal (stat (W.image_path, &st), 0);
  return st.st_mtim;
}

/* nbdcache check on the image file, which holds the base image but for
 * the blocks [off, off + len) of img (its verdict, V_NONE without
 * NBDCACHE).  *modified: check wrote to the file.  The file holds the
 * base image again afterwards.
 */
static enum verdict
run_check (const unsigned char *img, uint64_t off, uint64_t len,
           bool *modified)
{
  posix_spawn_file_actions_t fa;
  char *argv[] = { (char *) W.nbdcache, (char *) "check", (char *) "--data",
                   W.image_path, NULL };
  struct timespec before, after;
  pid_t pid;
  int status;

  *modified = false;
  if (W.nbdcache == NULL)
    return V_NONE;
  write_image (img, off, len);
  before = image_mtime ();
  assert_int_equal (posix_spawn_file_actions_init (&fa), 0);
  assert_int_equal (posix_spawn_file_actions_addopen (&fa, 1, W.check_log,
                                                      O_WRONLY | O_CREAT
                                                      | O_TRUNC, 0600), 0);
  assert_int_equal (posix_spawn_file_actions_adddup2 (&fa, 1, 2), 0);
  assert_int_equal (posix_spawn (&pid, W.nbdcache, &fa, NULL, argv,
                                 environ), 0);
  posix_spawn_file_actions_destroy (&fa);
  assert_int_equal (waitpid (pid, &status, 0), pid);
  after = image_mtime ();
  *modified = before.tv_sec != after.tv_sec ||
    before.tv_nsec != after.tv_nsec;
  write_image (W.base, off, len);
  if (!WIFEXITED (status)) {
    printf ("# FAIL: nbdcache check died (status 0x%x)\n", status);
    print_check_log ();
    W.check_died++;
    return V_OTHER;
  }
  return WEXITSTATUS (status) == 0 ? V_CLEAN
    : WEXITSTATUS (status) == 1 ? V_DAMAGED : V_OTHER;
}

/* ---- the tally ---- */

struct tally {
  unsigned n[NR_REGIONS][2][NR_OUTCOMES];       /* [region][recompute] */
  unsigned v[NR_REGIONS][2][NR_VERDICTS];
  unsigned hole[NR_HOLES][NR_OUTCOMES];         /* counted apart */
  unsigned check_clean_wrong[NR_REGIONS];       /* clean, serves wrong */
  unsigned check_clean_refused[NR_REGIONS];     /* clean, recovery says no */
  unsigned check_clean_eio[NR_REGIONS];         /* clean, reads fail (data
                                                   and checksums: --data
                                                   must find them) */
  unsigned check_modified;
  unsigned check_other;
};

static void
print_tally (const struct tally *t, unsigned per_mode)
{
  int r, c, h;

  printf ("# metadata mutants: seed %" PRIu64 " (NBDCACHE_SEED=%" PRIu64
          " to replay), %u per region and checksum mode\n", W.seed, W.seed,
          per_mode);
  printf ("# %-10s %-10s %8s %8s %8s %8s   check: %6s %8s %6s\n", "region",
          "checksum", "refused", "correct", "EIO", "wrong", "clean",
          "damaged", "other");
  for (r = 0; r < NR_REGIONS; r++)
    for (c = 0; c < 2; c++) {
      if (REGION_UNCHECKED (r) && c == 1)
        continue;
      printf ("# %-10s %-10s %8u %8u %8u %8u", region_names[r],
              REGION_UNCHECKED (r) ? "none" : c ? "recomputed" : "kept",
              t->n[r][c][O_REFUSED], t->n[r][c][O_CORRECT],
              t->n[r][c][O_EIO], t->n[r][c][O_WRONG]);
      if (W.nbdcache != NULL)
        printf ("          %6u %8u %6u", t->v[r][c][V_CLEAN],
                t->v[r][c][V_DAMAGED], t->v[r][c][V_OTHER]);
      printf ("\n");
    }
  for (h = HOLE_NONE + 1; h < NR_HOLES; h++)
    printf ("# not counted, %s: %u refused, %u correct, %u EIO, %u wrong\n",
            hole_names[h], t->hole[h][O_REFUSED], t->hole[h][O_CORRECT],
            t->hole[h][O_EIO], t->hole[h][O_WRONG]);
  if (W.nbdcache != NULL)
    for (r = 0; r < NR_REGIONS; r++)
      if (t->check_clean_wrong[r] || t->check_clean_refused[r] ||
          t->check_clean_eio[r])
        printf ("# check said clean: %s: %u serving wrong data, %u that "
                "recovery refuses, %u whose reads fail\n", region_names[r],
                t->check_clean_wrong[r], t->check_clean_refused[r],
                t->check_clean_eio[r]);
}

static void
run_one (struct tally *t, unsigned index, enum region r, bool recompute,
         bool verbose)
{
  struct mutant m = { .index = index, .region = r, .recompute = recompute };
  unsigned char *img = malloc (DEVICE_BYTES);
  enum outcome o;
  enum verdict v;
  uint64_t eio, wrong;
  enum hole hole;
  bool modified;

  assert_non_null (img);
  memcpy (img, W.base, DEVICE_BYTES);
  make_mutant (&m, img);
  hole = hole_of (&m);
  /* The blocks changed: the mutation and the checksums. */
  v = run_check (img, m.chg_lo, m.chg_hi - m.chg_lo, &modified);
  cdev_sim_poke (W.cd, 0, img, DEVICE_BYTES);
  test_log_clear ();
  o = open_and_read (&eio, &wrong);

  if (hole != HOLE_NONE)
    t->hole[hole][o]++;
  else
    t->n[r][recompute][o]++;
  t->v[r][recompute][v]++;
  if (v == V_CLEAN && o == O_WRONG && hole == HOLE_NONE)
    t->check_clean_wrong[r]++;
  if (v == V_CLEAN && o == O_REFUSED)
    t->check_clean_refused[r]++;
  if (v == V_CLEAN && o == O_EIO && REGION_UNCHECKED (r))
    t->check_clean_eio[r]++;
  if (modified)
    t->check_modified++;
  if (v == V_OTHER)
    t->check_other++;

  if (verbose || o == O_WRONG || o == O_EIO || modified || v == V_OTHER ||
      (v == V_CLEAN && o == O_REFUSED)) {
    printf ("# mutant %u (NBDCACHE_MUTANT=%u): %s, checksum %s, %s at "
            "image byte %" PRIu64 " (structure at %" PRIu64 "%s): %s",
            index, index, region_names[r], recompute ? "recomputed" : "kept",
            m.what, m.off, m.t->off, m.t->preferred ? ", in use" : "",
            outcome_names[o]);
    if (o == O_WRONG || o == O_EIO)
      printf (" (%" PRIu64 " wrong, %" PRIu64 " EIO of %u blocks)", wrong,
              eio, NR_BLOCKS);
    if (W.nbdcache != NULL)
      printf (", check %s%s", verdict_names[v],
              modified ? ", CHECK MODIFIED THE IMAGE" : "");
    if (hole != HOLE_NONE)
      printf (" [not counted: %s]", hole_names[hole]);
    printf ("\n");
    if (verbose || (o == O_WRONG && hole == HOLE_NONE)) {
      fflush (stdout);
      test_log_dump ("the engine's log");
      print_check_log ();
    }
  }
  free (img);
}

static void
test_mutants (void **state)
{
  const unsigned per_mode = (unsigned) test_env_u64 ("NBDCACHE_MUTANTS", 20);
  const uint64_t only = test_env_u64 ("NBDCACHE_MUTANT", UINT64_MAX);
  struct tally t;
  unsigned index = 0, i, fails = 0;
  int r, c;
  (void) state;

  memset (&t, 0, sizeof t);
  for (r = 0; r < NR_REGIONS; r++)
    for (c = 0; c < 2; c++) {
      if (REGION_UNCHECKED (r) && c == 1)
        continue;
      for (i = 0; i < per_mode; i++, index++)
        if (only == UINT64_MAX || only == index)
          run_one (&t, index, (enum region) r, c == 1, only == index);
    }
  print_tally (&t, per_mode);
  for (r = 0; r < NR_REGIONS; r++)
    for (c = 0; c < 2; c++)
      fails += t.n[r][c][O_WRONG];
  for (r = 0; r < NR_REGIONS; r++)
    fails += t.check_clean_wrong[r] + t.check_clean_eio[r];
  if (t.check_modified > 0)
    printf ("# FAIL: nbdcache check modified %u images\n", t.check_modified);
  if (fails > 0)
    printf ("# FAIL: %u mutants served wrong data, or were called clean "
            "while doing so or (data) while reads fail\n", fails);
  assert_int_equal (fails + t.check_modified + W.check_died, 0);
}

/* ---- setup: the base image ---- */

static int
setup (void **state)
{
  struct ncache_device *dev;
  struct ncache_export *nc;
  struct test_rng rng;
  unsigned char *data;
  uint32_t b, c;
  const char *tmp = getenv ("TMPDIR");
  int fd;
  (void) state;

  test_log_capture ();
  W.seed = test_seed_from_env (PROGRAM);
  W.nbdcache = getenv ("NBDCACHE");
  if (W.nbdcache != NULL && *W.nbdcache == '\0')
    W.nbdcache = NULL;
  if (W.nbdcache != NULL) {
    snprintf (W.image_path, sizeof W.image_path, "%s/test-mutants.XXXXXX",
              tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
    fd = mkstemp (W.image_path);
    assert_true (fd >= 0);
    close (fd);
    snprintf (W.check_log, sizeof W.check_log, "%s.log", W.image_path);
  }
  /* The base image comes from a fixed seed: the mutants from W.seed. */
  test_rng_seed (&rng, 20261207);
  assert_int_equal (cdev_sim_create (DEVICE_BYTES, &W.cd), 0);
  assert_int_equal (test_store_create (EXPORT_BYTES, "test-store:mutants",
                                       &W.store), 0);
  data = test_store_data (W.store);
  for (b = 0; b < NR_BLOCKS; b++)
    fill_block (data + (size_t) b * NC_BLOCK_BYTES, b, 0);

  /* Cycles of writes (dirty data, zeroes over some of it) and
   * prefetches (clean keys), each closed cleanly, so nodes carry chains
   * of bsets; in the second, everything written back (clean keys).
   */
  for (c = 1; c <= CYCLES; c++) {
    assert_int_equal (open_all (c == 1, &dev, &nc), 0);
    write_some (nc, &rng, 250, c, c == 1 ? 0 : 10, 250);
    if (c == 2)
      assert_int_equal (ncache_drain (nc, NULL, NULL), 0);
    prefetch_some (nc, &rng, 30);
    ncache_close (nc);
    ncache_device_close (dev);
  }

  /* The base: more writes, FLUSHed in batches (journal entries durable,
   * leaves not written), then the device dies and loses its unsynced
   * writes.
   */
  assert_int_equal (open_all (false, &dev, &nc), 0);
  write_some (nc, &rng, 150, CYCLES + 1, 10, 25);
  cdev_sim_fail_at_write (W.cd, cdev_sim_nr_writes (W.cd) + 1);
  ncache_close (nc);
  ncache_device_close (dev);
  cdev_sim_crash (W.cd, 0);
  W.base = malloc (DEVICE_BYTES);
  assert_non_null (W.base);
  cdev_sim_peek (W.cd, 0, W.base, DEVICE_BYTES);
  parse_base ();
  printf ("# base image: %u superblock heads and tables, %u prio copies, %u journal "
          "entries, %u bsets of %u nodes, %u data extents, %u checksum "
          "runs\n", W.nr_of[R_SUPER], W.nr_of[R_PRIO], W.nr_of[R_JOURNAL],
          W.nr_of[R_BTREE], W.nr_nodes, W.nr_of[R_DATA], W.nr_of[R_CSUM]);
  return 0;
}

static int
teardown (void **state)
{
  unsigned i;
  (void) state;
  if (W.nbdcache != NULL) {
    unlink (W.image_path);
    unlink (W.check_log);
  }
  for (i = 0; i < W.nr_targets; i++)
    free (W.targets[i].payload);
  free (W.base);
  free (W.used_buckets);
  cdev_close (W.cd);
  test_store_destroy (W.store);
  return 0;
}

/* The base image opens and reads right, and check calls it clean. */
static void
test_base_image (void **state)
{
  uint64_t eio, wrong;
  bool modified;
  (void) state;

  if (W.nbdcache != NULL) {
    write_image (W.base, 0, DEVICE_BYTES);
    assert_int_equal (run_check (W.base, 0, NC_BLOCK_BYTES, &modified),
                      V_CLEAN);
    assert_false (modified);
  }
  cdev_sim_poke (W.cd, 0, W.base, DEVICE_BYTES);
  assert_int_equal (open_and_read (&eio, &wrong), O_CORRECT);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_base_image),
    cmocka_unit_test (test_mutants),
  };

  return cmocka_run_group_tests (tests, setup, teardown);
}
