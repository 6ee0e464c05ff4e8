/* SPDX-License-Identifier: BSD-3-Clause */
/* test-corrupt.c — metadata corruption of a real cache: refused or served
 * right, never served wrong.
 *
 * WHAT: builds a cache device (simulated, cdev-sim) through the engine's
 * API — writeback mode, writeback off, so everything written stays DIRTY
 * in the cache — in several open/write/close cycles, so btree nodes carry
 * chains of bsets whose journal entries were reclaimed long ago.  Three
 * base images: "clean" (the last close was clean), "unclean" (more
 * writes, a FLUSH, then the device dies and loses power: the last writes
 * exist only in pending journal entries; their one commit is too big to
 * carry its data, so the newest entry is version 2) and "inline" (from
 * the unclean one: four more writes and a FLUSH whose one-sync commit
 * carries their data, journal.c REDO, so the newest entry is version 4;
 * then the crash).  The unclean and inline writes run with a long
 * journal delay: only their FLUSH commits, so which version is newest
 * never depends on timing.  Each test restores a base
 * image, mutates metadata, reopens the device and the export and reads
 * every block back.  The outcome must be "refused" (the device or the
 * export does not open) or "correct" (every block reads what was last
 * written, or the backing's initial data where nothing was) — never
 * "wrong".
 * MUTANTS: a bset in the middle of a live node's chain whose header block
 * is zeroed; a block of the newest bset's keys zeroed; bset.seq = 0 and a
 * key count one short (both with a recomputed checksum); the newest
 * journal entry's seq set to 2^64 - 1 (recomputed checksum); the newest
 * journal entry rewritten as entry version 5 (refused as a newer
 * version's, by name); a prio gen
 * rolled back against the index's keys, against the journal's keys and
 * against the other prio copy; one byte of the version 4 entry's inline
 * data flipped (its sector's stamp left bad, or every stamp recomputed:
 * refused, never dropped as torn nor redone with the wrong bytes); the
 * data blocks that entry carries zeroed (never arrived: the next open
 * writes them back, every block reads right); the
 * newer superblock copy's export URI changed; a dirty key moved to an
 * export id the table does not have (all with recomputed checksums); a
 * bad checksum on a bset whose
 * journal entry is durable; a genuinely torn last bset (journal seq newer
 * than every durable entry, bad checksum: must open, read correctly, and
 * be zeroed); and a seeded random loop over the live nodes'
 * blocks (zero a block, flip a byte, write garbage).  The random loop
 * leaves out one case format v1 cannot detect: clobbering the first block
 * (magic, uuid, nonce) of a node's newest bset, which then looks like
 * blocks never written after the previous bset; it counts such mutants
 * separately and prints them.
 * HOW: the test parses the image itself (test-corrupt-image.c:
 * superblock, journal ring, bsets, prio copies) with ondisk.h and nc_csum,
 * independently of the engine's readers, to find the live nodes and
 * recompute checksums.
 * SEED: the random loop's seed is printed; NBDCACHE_SEED replays it;
 * NBDCACHE_CORRUPT_MUTANTS sets its count (default 100).
 * ENV: NBDCACHE_CORRUPT_IMAGES=DIR writes every image the test opens
 * there (DIR/<mutant>.img), to run nbdcache check on them.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "backing.h"
#include "cache.h"
#include "cache-internal.h"
#include "cdev.h"
#include "csum.h"
#include "journal-internal.h"
#include "ondisk.h"
#include "super.h"
#include "test-corrupt-image.h"
#include "test-helpers.h"

#define PROGRAM "test-corrupt"

#define DEVICE_BYTES (32u << 20)
#define BUCKET_BYTES (64u << 10)        /* small: nodes move, chains vary */
#define EXPORT_BYTES (16u << 20)
#define NR_BLOCKS (EXPORT_BYTES / NC_BLOCK_BYTES)
#define CYCLES 4
#define WRITES_PER_CYCLE 500
#define UNCLEAN_WRITES 300
#define INLINE_WRITES 4         /* <= JOURNAL_INLINE_MAX_BLOCKS */

/* ---- the data: every block of every version is distinct ---- */

static void
fill_block (unsigned char *buf, uint32_t block, uint32_t version)
{
  uint64_t w = UINT64_C (0x4e43434f52525054) ^ ((uint64_t) block << 24)
    ^ version;
  size_t i;

  for (i = 0; i < NC_BLOCK_BYTES; i += 8) {
    uint64_t v = w + i;
    memcpy (buf + i, &v, 8);
  }
}

/* ---- the world: the simulated device, the backing, the expectation ---- */

struct world {
  struct cdev *cd;
  struct test_store *store;
  uint32_t version[NR_BLOCKS];  /* 0 = the backing's initial data */
  unsigned char *clean, *unclean, *inl; /* base images */
  uint32_t inline_blocks[INLINE_WRITES]; /* what inl's newest write holds */
  uint64_t seed;
};

static struct world W;

/* Journal delays: the cycles of the clean image commit on their own too;
 * the unclean and inline images' writes commit only at their FLUSH, so
 * what kind of entry is newest never depends on timing.
 */
#define SHORT_DELAY_MS 5
#define LONG_DELAY_MS 600000

static int
open_all_delay (bool create, unsigned delay_ms, struct ncache_device **dev,
                struct ncache_export **nc)
{
  const struct ncache_device_tuning tuning = {
    .node_cache_bytes = 1u << 20,
    .journal_delay_ms = delay_ms,
    .format_bucket_bytes = BUCKET_BYTES,
    .gc_off = true,
  };
  struct ncache_export_tuning et;
  struct ncache_config cfg = {
    .name = "corrupt", .mode = NCACHE_MODE_WRITEBACK, .tuning = &et,
  };
  struct backing *b;
  int r;

  ncache_export_tuning_default (&et);
  et.writeback_off = true;
  et.sequential_cutoff_bytes = 0;
  cdev_sim_hold (W.cd);         /* the engine takes this reference */
  if ((r = ncache_device_open_cdev ("corrupt", W.cd, create, &tuning,
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

static int
open_all (bool create, struct ncache_device **dev, struct ncache_export **nc)
{
  return open_all_delay (create, SHORT_DELAY_MS, dev, nc);
}

static void
write_blocks (struct ncache_export *nc, struct test_rng *rng, unsigned n,
              uint32_t version)
{
  unsigned char buf[NC_BLOCK_BYTES];
  unsigned i;

  for (i = 0; i < n; i++) {
    /* Every other block, so keys stay separate extents. */
    uint32_t block = (uint32_t) test_rng_below (rng, NR_BLOCKS / 2) * 2;

    fill_block (buf, block, version);
    assert_int_equal (ncache_pwrite (nc, buf, sizeof buf,
                                     (uint64_t) block * NC_BLOCK_BYTES, 0),
                      0);
    W.version[block] = version;
  }
  assert_int_equal (ncache_flush (nc, 0), 0);
}

/* ---- outcomes ---- */

enum outcome { REFUSED, CORRECT, WRONG };

static const char *
outcome_name (enum outcome o)
{
  return o == REFUSED ? "refused" : o == CORRECT ? "correct" : "WRONG";
}

/* Open the device as it is and read every block.  *wrong: blocks that
 * read something else than expected.
 */
static enum outcome
reopen_and_read (uint64_t *wrong_out)
{
  struct ncache_device *dev;
  struct ncache_export *nc;
  unsigned char *buf, want[NC_BLOCK_BYTES];
  uint64_t wrong = 0;
  uint32_t b;

  *wrong_out = 0;
  if (open_all (false, &dev, &nc) < 0)
    return REFUSED;
  buf = malloc (EXPORT_BYTES);
  assert_non_null (buf);
  if (ncache_pread (nc, buf, EXPORT_BYTES, 0, 0) < 0) {
    ncache_close (nc);
    ncache_device_close (dev);
    free (buf);
    return REFUSED;             /* an error, not wrong data */
  }
  for (b = 0; b < NR_BLOCKS; b++) {
    fill_block (want, b, W.version[b]);
    if (memcmp (buf + (size_t) b * NC_BLOCK_BYTES, want, sizeof want) != 0)
      wrong++;
  }
  ncache_close (nc);
  ncache_device_close (dev);
  free (buf);
  *wrong_out = wrong;
  return wrong == 0 ? CORRECT : WRONG;
}

/* ---- parsing the image (independently of the engine) ---- */

/* ---- running a mutant ---- */

static void
restore (const unsigned char *base)
{
  cdev_sim_poke (W.cd, 0, base, DEVICE_BYTES);
}

/* Write the current device image to DIR/name.img, sparse
 * (NBDCACHE_CORRUPT_IMAGES).
 */
static void
save_image (const char *name)
{
  static const unsigned char zero[NC_BLOCK_BYTES];
  const char *dir = getenv ("NBDCACHE_CORRUPT_IMAGES");
  unsigned char *p;
  char path[4096];
  uint64_t off;
  int fd;

  if (dir == NULL || *dir == '\0')
    return;
  p = malloc (DEVICE_BYTES);
  assert_non_null (p);
  cdev_sim_peek (W.cd, 0, p, DEVICE_BYTES);
  snprintf (path, sizeof path, "%s/%s.img", dir, name);
  fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  assert_true (fd >= 0);
  assert_int_equal (ftruncate (fd, DEVICE_BYTES), 0);
  for (off = 0; off < DEVICE_BYTES; off += NC_BLOCK_BYTES)
    if (memcmp (p + off, zero, NC_BLOCK_BYTES) != 0)
      assert_int_equal (pwrite (fd, p + off, NC_BLOCK_BYTES, (off_t) off),
                        NC_BLOCK_BYTES);
  assert_int_equal (close (fd), 0);
  free (p);
}

/* Apply the mutated copy `mut` of a base image, save it if asked, reopen. */
static enum outcome
run_mutant (const char *name, const unsigned char *mut)
{
  enum outcome o;
  uint64_t wrong;

  restore (mut);
  save_image (name);
  test_log_clear ();
  o = reopen_and_read (&wrong);
  printf ("# %s: %s", name, outcome_name (o));
  if (o == WRONG)
    printf (" (%" PRIu64 " of %u blocks)", wrong, NR_BLOCKS);
  printf ("\n");
  if (o == WRONG)
    test_log_dump (name);
  return o;
}

static unsigned char *
copy_of (const unsigned char *base)
{
  unsigned char *p = malloc (DEVICE_BYTES);

  assert_non_null (p);
  memcpy (p, base, DEVICE_BYTES);
  return p;
}

/* Versions as of the clean image (the unclean writes undone), the
 * unclean one and the inline one.
 */
static uint32_t clean_version[NR_BLOCKS];
static uint32_t unclean_version[NR_BLOCKS];
static uint32_t inline_version[NR_BLOCKS];

static void
expect_clean (void)
{
  memcpy (W.version, clean_version, sizeof W.version);
}

static void
expect_unclean (void)
{
  memcpy (W.version, unclean_version, sizeof W.version);
}

static void
expect_inline (void)
{
  memcpy (W.version, inline_version, sizeof W.version);
}

/* Run mutant m of the clean (or unclean) image; it must be refused.
 * Frees m.
 */
static void
must_refuse (const char *name, unsigned char *m, bool unclean)
{
  if (unclean)
    expect_unclean ();
  else
    expect_clean ();
  assert_int_equal (run_mutant (name, m), REFUSED);
  free (m);
}

/* A copy of the clean image (*m_out, the caller's) and in it the newest
 * bset of a live leaf with at least min_bsets bsets, at byte *off_out.
 */
static struct nc_bset *
clean_newest_bset (unsigned min_bsets, unsigned char **m_out,
                   uint64_t *off_out)
{
  struct image im;
  struct node n;

  *m_out = copy_of (W.clean);
  image_load (&im, *m_out);
  n = pick_node (&im, min_bsets, 0);
  *off_out = bset_off (&im, &n, n.nr - 1);
  return (struct nc_bset *) (*m_out + *off_out);
}

/* ---- setup: the base images ---- */

/* The device dies at its next write and loses every unsynced one. */
static void
crash (struct ncache_export *nc, struct ncache_device *dev)
{
  cdev_sim_fail_at_write (W.cd, cdev_sim_nr_writes (W.cd) + 1);
  ncache_close (nc);
  ncache_device_close (dev);
  cdev_sim_crash (W.cd, 0);
}

static int
setup (void **state)
{
  struct ncache_device *dev;
  struct ncache_export *nc;
  struct test_rng rng;
  unsigned char *data;
  uint32_t b, c;
  (void) state;

  test_log_capture ();
  W.seed = test_seed_from_env (PROGRAM);
  /* The images come from a fixed seed; the random loop uses W.seed. */
  test_rng_seed (&rng, 12345);
  assert_int_equal (cdev_sim_create (DEVICE_BYTES, &W.cd), 0);
  assert_int_equal (test_store_create (EXPORT_BYTES, "test-store:corrupt",
                                       &W.store), 0);
  data = test_store_data (W.store);
  for (b = 0; b < NR_BLOCKS; b++)
    fill_block (data + (size_t) b * NC_BLOCK_BYTES, b, 0);

  for (c = 1; c <= CYCLES; c++) {
    assert_int_equal (open_all (c == 1, &dev, &nc), 0);
    write_blocks (nc, &rng, WRITES_PER_CYCLE, c);
    ncache_close (nc);
    ncache_device_close (dev);
  }
  W.clean = malloc (DEVICE_BYTES);
  assert_non_null (W.clean);
  cdev_sim_peek (W.cd, 0, W.clean, DEVICE_BYTES);

  /* Unclean: more writes, a FLUSH (journal durable, leaves not written),
   * then the device dies and loses its unsynced writes.
   */
  assert_int_equal (open_all_delay (false, LONG_DELAY_MS, &dev, &nc), 0);
  write_blocks (nc, &rng, UNCLEAN_WRITES, CYCLES + 1);
  crash (nc, dev);
  W.unclean = malloc (DEVICE_BYTES);
  assert_non_null (W.unclean);
  cdev_sim_peek (W.cd, 0, W.unclean, DEVICE_BYTES);
  memcpy (unclean_version, W.version, sizeof W.version);

  /* Inline: from the unclean image, a few more writes and a FLUSH, which
   * costs one sync (journal.c REDO: the entry, version 4, carries their
   * data), then the crash.
   */
  assert_int_equal (open_all_delay (false, LONG_DELAY_MS, &dev, &nc), 0);
  for (b = 0; b < INLINE_WRITES; b++) {
    unsigned char buf[NC_BLOCK_BYTES];
    uint32_t block = (uint32_t) test_rng_below (&rng, NR_BLOCKS / 2) * 2;

    fill_block (buf, block, CYCLES + 2);
    assert_int_equal (ncache_pwrite (nc, buf, sizeof buf,
                                     (uint64_t) block * NC_BLOCK_BYTES, 0),
                      0);
    W.version[block] = CYCLES + 2;
    W.inline_blocks[b] = block;
  }
  c = (uint32_t) cdev_sim_nr_syncs (W.cd);
  assert_int_equal (ncache_flush (nc, 0), 0);
  assert_int_equal (cdev_sim_nr_syncs (W.cd) - c, 1);
  crash (nc, dev);
  W.inl = malloc (DEVICE_BYTES);
  assert_non_null (W.inl);
  cdev_sim_peek (W.cd, 0, W.inl, DEVICE_BYTES);
  memcpy (inline_version, W.version, sizeof W.version);
  return 0;
}

static int
teardown (void **state)
{
  (void) state;
  free (W.clean);
  free (W.unclean);
  free (W.inl);
  cdev_close (W.cd);
  test_store_destroy (W.store);
  return 0;
}

/* ---- the tests ---- */

/* The unmutated images open and read right. */
static void
test_base_images (void **state)
{
  (void) state;
  expect_clean ();
  assert_int_equal (run_mutant ("clean", W.clean), CORRECT);
  expect_unclean ();
  assert_int_equal (run_mutant ("unclean", W.unclean), CORRECT);
  expect_inline ();
  assert_int_equal (run_mutant ("inline", W.inl), CORRECT);
}

/* The header block of a bset in the middle of a live leaf's chain,
 * zeroed: its journal entry is long reclaimed, the newer bsets after it
 * prove it was no torn last write.
 */
static void
test_zero_middle_bset (void **state)
{
  struct image im;
  unsigned char *m = copy_of (W.clean);
  struct node n;
  (void) state;

  image_load (&im, m);
  n = pick_node (&im, 3, 0);
  memset (m + bucket_byte (&im, n.bucket)
          + (uint64_t) n.chain[n.nr - 2].block * NC_BLOCK_BYTES, 0,
          NC_BLOCK_BYTES);
  must_refuse ("zero-middle-bset", m, false);
}

/* A key block of the newest bset of a live leaf, zeroed (its header
 * intact): the checksum fails on a bset older than the replay start.
 */
static void
test_zero_newest_bset_keys (void **state)
{
  struct image im;
  unsigned char *m = copy_of (W.clean);
  struct node n;
  struct bset_at *s;
  (void) state;

  image_load (&im, m);
  n = pick_node (&im, 2, 0);
  s = &n.chain[n.nr - 1];
  assert_true (s->nblocks >= 2);
  memset (m + bucket_byte (&im, n.bucket)
          + (uint64_t) (s->block + 1) * NC_BLOCK_BYTES, 0, NC_BLOCK_BYTES);
  must_refuse ("zero-newest-bset-keys", m, false);
}

/* bset.seq = 0 on the newest bset, checksum recomputed. */
static void
test_bset_seq_zero (void **state)
{
  unsigned char *m;
  uint64_t off;
  struct nc_bset *h = clean_newest_bset (2, &m, &off);
  (void) state;

  h->seq = 0;
  rechecksum_bset (m, off);
  must_refuse ("bset-seq-0", m, false);
}

/* The newest bset's key count one short, checksum recomputed: its last
 * key is left in what should be zero padding.
 */
static void
test_bset_nkeys_short (void **state)
{
  unsigned char *m;
  uint64_t off;
  struct nc_bset *h = clean_newest_bset (1, &m, &off);
  (void) state;

  h->nkeys--;
  rechecksum_bset (m, off);
  must_refuse ("bset-nkeys-short", m, false);
}

/* A copy of the unclean image whose newest journal entry (version 2, with
 * keys) gets seq `seq` (0: kept) and version `version`, and its last key
 * the extra flags `key_flags` (0: none), its checksum and stamps
 * recomputed: written whole, as no write of ours writes it.
 */
static unsigned char *
unclean_newest_rewritten_key (uint64_t seq, uint32_t version,
                              uint8_t key_flags)
{
  struct image im;
  unsigned char *m = copy_of (W.unclean);
  struct nc_jentry *e;
  uint64_t off;
  size_t bytes;

  image_load (&im, m);
  off = newest_jentry (&im);
  e = (void *) jentry_at (&im, off, JOURNAL_MAX_ENTRY_BLOCKS);
  assert_non_null (e);
  assert_true (e->nkeys > 0);
  assert_int_equal (e->version, NC_JENTRY_VERSION);
  bytes = jentry_payload_bytes (e->version, e->nblocks);
  e = memcpy (malloc (bytes), e, bytes);
  assert_non_null (e);
  if (seq != 0)
    e->seq = seq;
  e->version = version;
  /* Other flags are there for DELETE to clash with (a write: DIRTY). */
  assert_true (key_flags == 0 || e->keys[e->nkeys - 1].flags != 0);
  e->keys[e->nkeys - 1].flags |= key_flags;
  e->csum = nc_csum (e, (size_t) jentry_csum_bytes (e));
  jentry_frame (e, jstamp_seed (im.sb.uuid), m + off);  /* stamps too */
  free (e);
  return m;
}

static unsigned char *
unclean_newest_rewritten (uint64_t seq, uint32_t version)
{
  return unclean_newest_rewritten_key (seq, version, 0);
}

/* The newest journal entry of the unclean image (it holds FLUSHed writes
 * no leaf has) gets seq 2^64 - 1, checksum recomputed.
 */
static void
test_journal_seq_max (void **state)
{
  (void) state;
  must_refuse ("journal-seq-max",
               unclean_newest_rewritten (UINT64_MAX, NC_JENTRY_VERSION),
               true);
}

/* The newest journal entry's last key (a write: DIRTY) also gets the
 * DELETE flag, checksum and stamps recomputed: a DELETE may carry no
 * other flag, recovery refuses it, and nbdcache check must call it
 * DAMAGED by the same rule (bkey_invalid_insert); check once called it
 * clean (a random metadata mutant found it).
 */
static void
test_journal_delete_flags (void **state)
{
  (void) state;
  must_refuse ("journal-delete-flags",
               unclean_newest_rewritten_key (0, NC_JENTRY_VERSION,
                                             NC_KEY_DELETE), true);
}

/* The newest journal entry of the unclean image rewritten whole as entry
 * version 5 (checksum and stamps recomputed), as a newer build would
 * write it: refused as coming from a newer version, not as damage.
 */
static void
test_journal_newer_version (void **state)
{
  unsigned char *m = unclean_newest_rewritten (0, 5);
  (void) state;

  expect_unclean ();
  assert_int_equal (run_mutant ("journal-newer-version", m), REFUSED);
  if (strstr (test_log_last_error (), "written by a newer version of "
              "nbdcache") == NULL)
    fail_msg ("not refused as a newer version's: %s",
              test_log_last_error ());
  free (m);
}

/* A prio gen rolled back by one (checksum recomputed): the bucket's keys
 * hold a gen newer than the bucket's.
 */
static void
test_prio_gen_rollback (void **state)
{
  struct image im;
  unsigned char *m = copy_of (W.clean);
  struct nc_prio *p;
  uint32_t bucket;
  uint8_t gen = 0;
  (void) state;

  image_load (&im, m);
  bucket = live_data_bucket (&im, &gen);
  p = prio_in_use (&im, m);
  assert_int_equal (p->entries[bucket].gen, gen);
  p->entries[bucket].gen = (uint8_t) (gen - 1);
  rechecksum_prio (&im, p);
  must_refuse ("prio-gen-rollback", m, false);
}

/* In the unclean image, a prio gen rolled back for a bucket that only
 * keys of the journal's replay range point into (checksum recomputed):
 * those keys hold a gen newer than the bucket's.
 */
static void
test_prio_gen_rollback_journal (void **state)
{
  struct image im;
  unsigned char *m = copy_of (W.unclean);
  const struct nc_jentry *e;
  struct nc_prio *p;
  uint32_t k;
  (void) state;

  image_load (&im, m);
  e = jentry_at (&im, newest_jentry (&im), JOURNAL_MAX_ENTRY_BLOCKS);
  for (k = 0; k < e->nkeys; k++)
    if (!(e->keys[k].flags & (NC_KEY_ZERO | NC_KEY_DELETE)) &&
        !leaf_uses_bucket (&im, e->keys[k].bucket))
      break;
  if (k == e->nkeys)
    skip ();
  p = prio_in_use (&im, m);
  assert_int_equal (p->entries[e->keys[k].bucket].gen, e->keys[k].gen);
  p->entries[e->keys[k].bucket].gen--;
  rechecksum_prio (&im, p);
  must_refuse ("prio-gen-rollback-journal", m, true);
}

/* The newer prio copy rolls back a data bucket's gen that the older copy
 * also has (checksum recomputed): the two copies disagree, which prio_read
 * sees before any key is read.
 */
static void
test_prio_copies_gen_backwards (void **state)
{
  struct image im;
  unsigned char *m = copy_of (W.clean);
  struct nc_prio *newer, *older;
  uint32_t b;
  (void) state;

  image_load (&im, m);
  newer = prio_in_use (&im, m);
  older = (void *) (m + bucket_byte (&im, im.sb.prio_first
                                     + (newer == (void *) (m + bucket_byte
                                                           (&im, im.sb.prio_first))
                                        ? im.sb.prio_buckets : 0)));
  if (older->magic != NC_PRIO_MAGIC || older->seq + 1 != newer->seq)
    skip ();
  for (b = im.sb.data_first; b < im.sb.nbuckets; b++)
    if (newer->entries[b].gen >= 1 &&
        newer->entries[b].gen == older->entries[b].gen)
      break;
  if (b == im.sb.nbuckets)
    skip ();
  newer->entries[b].gen--;
  rechecksum_prio (&im, newer);
  must_refuse ("prio-copies-gen-backwards", m, false);
}

/* The newer superblock copy's export slot gets another backing URI (one
 * byte changed, checksum recomputed): the copies disagree on the slot's
 * identity.  Else the export would be bound as a new id and its dirty
 * data orphaned.  The image's older copy predates the export (one
 * superblock write added it), so first make it what any later update
 * (a mode change) leaves: the same table, seq - 1.  With the slot only
 * in the newer copy, format v1 has nothing to compare it with.
 */
static void
test_sb_export_uri_flip (void **state)
{
  struct image im;
  unsigned char *m = copy_of (W.clean);
  struct nc_sb *a = img_sb_get (m, 0), *b = img_sb_get (m, 1);
  struct nc_sb *newer = b->seq > a->seq ? b : a;
  struct nc_sb *older = newer == a ? b : a;
  unsigned i;
  (void) state;

  image_load (&im, m);
  for (i = 0; i < NC_MAX_EXPORTS && newer->exports[i].id == 0; i++)
    ;
  assert_true (i < NC_MAX_EXPORTS);
  memcpy (older, newer, sizeof *older);
  older->seq = newer->seq - 1;
  super_set_csum (older);
  newer->exports[i].uri[0] ^= 0x20;
  super_set_csum (newer);
  img_sb_put (m, (int) (older->seq % 2), older);
  img_sb_put (m, (int) (newer->seq % 2), newer);
  free (a);
  free (b);
  must_refuse ("sb-export-uri-flip", m, false);
}

/* The last key of the rightmost leaf is moved to an export id the table
 * does not have (checksum recomputed; order and bounds still hold): its
 * dirty data could never be written back.
 */
static void
test_dirty_key_foreign_export (void **state)
{
  struct image im;
  unsigned char *m = copy_of (W.clean);
  const struct nc_jentry *e;
  struct node n;
  struct nc_bset *h;
  uint64_t off;
  (void) state;

  image_load (&im, m);
  e = (const void *) (m + newest_jentry (&im));
  n = (struct node) { .bucket = e->root.bucket, .nonce = e->root.nonce };
  for (;;) {                    /* down the rightmost pointers */
    const struct nc_bset *p;

    read_chain (&im, &n);
    p = bset_hdr (&im, &n, n.nr - 1);
    if (p->level == 0)
      break;
    n = (struct node) { .bucket = p->keys[p->nkeys - 1].bucket,
                        .nonce = p->keys[p->nkeys - 1].nonce };
  }
  off = bset_off (&im, &n, n.nr - 1);
  h = (void *) (m + off);
  assert_true (h->nkeys > 0);
  assert_true (h->keys[h->nkeys - 1].flags & NC_KEY_DIRTY);
  h->keys[h->nkeys - 1].export_id = NC_MAX_EXPORTS;
  rechecksum_bset (m, off);
  must_refuse ("dirty-key-foreign-export", m, false);
}

/* The newest journal entry of the unclean image holds FLUSHed writes no
 * leaf has.  One bit flipped, or one 512-byte sector zeroed, inside it:
 * before entry stamps recovery dropped it as a torn commit and served the
 * old data (WRONG); now it is refused.
 */
static void
test_journal_newest_damaged (void **state)
{
  struct image im;
  unsigned how;
  (void) state;

  for (how = 0; how < 2; how++) {
    unsigned char *m = copy_of (W.unclean);
    uint64_t off;
    const struct nc_jentry *e;

    image_load (&im, m);
    off = newest_jentry (&im);
    e = (const void *) (m + off);
    assert_true (e->nblocks >= 1);
    assert_int_equal (e->version, NC_JENTRY_VERSION);
    if (how == 0)
      m[off + 2 * NC_JSECTOR_BYTES + 40] ^= 0x08;
    else
      memset (m + off + NC_JSECTOR_BYTES, 0, NC_JSECTOR_BYTES);
    must_refuse (how == 0 ? "journal-newest-bit" : "journal-newest-sector",
                 m, true);
  }
}

/* ---- the inline image: its newest entry is version 4 ---- */

/* A copy of the inline image (*m_out, the caller's), its newest entry's
 * ring byte offset (*off) and that entry's payload (valid until the next
 * image parse).
 */
static const struct nc_jentry *
inline_newest (unsigned char **m_out, struct image *im, uint64_t *off)
{
  const struct nc_jentry *e;

  *m_out = copy_of (W.inl);
  image_load (im, *m_out);
  *off = newest_jentry (im);
  e = jentry_at (im, *off, JOURNAL_MAX_ENTRY_BLOCKS);
  assert_non_null (e);
  assert_int_equal (e->version, NC_JENTRY_VERSION_INLINE);
  assert_true (e->flags & NC_JENTRY_INLINE_DATA);
  assert_true (jentry_inline_bytes (e->keys, e->nkeys) >=
               (uint64_t) INLINE_WRITES * NC_BLOCK_BYTES);
  return e;
}

/* One byte of the inline data of the inline image's newest entry (the
 * FLUSHed writes, on the device nowhere else for sure) flipped: as is
 * (that sector's stamp fails) or re-framed (every stamp good, the
 * entry's checksum fails).  Written whole, then damaged: refused, never
 * dropped as a torn write (which would lose the FLUSHed writes) nor
 * replayed with the wrong bytes redone.
 */
static void
test_journal_inline_data_flip (void **state)
{
  static unsigned char p[JOURNAL_MAX_ENTRY_BLOCKS * NC_BLOCK_BYTES];
  unsigned how;
  (void) state;

  for (how = 0; how < 2; how++) {
    struct image im;
    unsigned char *m;
    uint64_t off, poff;
    const struct nc_jentry *e = inline_newest (&m, &im, &off);
    size_t bytes = jentry_payload_bytes (e->version, e->nblocks);

    /* A byte in the middle of the second carried block. */
    poff = sizeof *e + (uint64_t) e->nkeys * sizeof (struct nc_key)
      + NC_BLOCK_BYTES + NC_BLOCK_BYTES / 2 + 3;
    if (how == 0)
      m[off + poff / NC_JSECTOR_PAYLOAD_BYTES * NC_JSECTOR_BYTES
        + poff % NC_JSECTOR_PAYLOAD_BYTES] ^= 0x40;
    else {
      memcpy (p, e, bytes);
      p[poff] ^= 0x40;
      jentry_frame ((const struct nc_jentry *) p, jstamp_seed (im.sb.uuid),
                    m + off);
    }
    expect_inline ();
    assert_int_equal (run_mutant (how == 0 ? "inline-data-flip"
                                  : "inline-data-flip-stamped", m), REFUSED);
    free (m);
  }
}

/* The data blocks the inline image's newest write carries, zeroed on the
 * device (its data writes never arrived: the one sync covered the entry
 * only): the next open writes them back from the entry and every block
 * reads what was FLUSHed.
 */
static void
test_journal_inline_data_lost (void **state)
{
  struct image im;
  unsigned char *m;
  uint64_t off;
  const struct nc_jentry *e = inline_newest (&m, &im, &off);
  uint32_t k, zeroed = 0;
  (void) state;

  for (k = 0; k < e->nkeys; k++) {
    const struct nc_key *key = &e->keys[k];

    if (key->flags & (NC_KEY_ZERO | NC_KEY_DELETE))
      continue;
    memset (m + bucket_byte (&im, key->bucket)
            + (uint64_t) key->offset * NC_BLOCK_BYTES, 0,
            (size_t) key->size * NC_BLOCK_BYTES);
    zeroed += key->size;
  }
  assert_true (zeroed >= INLINE_WRITES);
  expect_inline ();
  assert_int_equal (run_mutant ("inline-data-lost", m), CORRECT);
  free (m);
}

/* The unclean image as the version 1 writer would have left it: every
 * valid journal entry in the plain layout, the rest of the ring zeros.
 * It opens and reads right (the dirty journal replayed), and the entries
 * written since are stamped.
 */
static void
test_journal_plain_upgrade (void **state)
{
  static unsigned char payload[JOURNAL_MAX_ENTRY_BLOCKS * NC_BLOCK_BYTES];
  struct image im;
  unsigned char *m = copy_of (W.unclean);
  unsigned char *ring;
  uint64_t first, blocks, b, plain = 0;
  const struct nc_jentry *e;
  (void) state;

  image_load (&im, m);
  first = bucket_byte (&im, im.sb.journal_first);
  blocks = (uint64_t) im.sb.journal_buckets * im.sb.bucket_blocks;
  ring = calloc (blocks, NC_BLOCK_BYTES);
  assert_non_null (ring);
  for (b = 0; b < blocks; b++) {
    e = jentry_at (&im, first + b * NC_BLOCK_BYTES, blocks - b);
    if (e == NULL)
      continue;
    memset (payload, 0, sizeof payload);
    memcpy (payload, e, jentry_payload_bytes (e->version, e->nblocks));
    e = (const void *) payload;
    ((struct nc_jentry *) payload)->version = NC_JENTRY_VERSION_PLAIN;
    ((struct nc_jentry *) payload)->flags = 0;
    ((struct nc_jentry *) payload)->csum =
      nc_csum (e, sizeof *e + (size_t) e->nkeys * sizeof (struct nc_key));
    /* A stamped entry's keys fit in a plain entry of its length. */
    memcpy (ring + b * NC_BLOCK_BYTES, payload,
            (size_t) e->nblocks * NC_BLOCK_BYTES);
    b += e->nblocks - 1;
    plain++;
  }
  assert_true (plain >= 2);
  memcpy (m + first, ring, blocks * NC_BLOCK_BYTES);
  free (ring);
  expect_unclean ();
  assert_int_equal (run_mutant ("journal-plain", m), CORRECT);

  /* The device now: the newest entry is stamped. */
  cdev_sim_peek (W.cd, 0, m, DEVICE_BYTES);
  image_load (&im, m);
  e = (const void *) (m + newest_jentry (&im));
  assert_true (e->version == NC_JENTRY_VERSION ||
               e->version == NC_JENTRY_VERSION_INLINE);
  free (m);
}

/* A genuinely torn last bset: after the newest bset of a live leaf of the
 * unclean image, a bset seq + 1 whose journal seq is one past the newest
 * durable entry's (the entry open when the crash came) and whose checksum
 * does not match.  The device must open and read correctly, and the torn
 * bset must be gone afterwards (zeroed, or overwritten by a good one).
 */
static void
test_torn_bset_recovered (void **state)
{
  struct image im;
  unsigned char *m = copy_of (W.unclean);
  struct node n;
  const struct nc_jentry *e;
  struct nc_bset *h;
  const struct bset_at *s;
  uint64_t off;
  uint32_t nkeys;
  (void) state;

  image_load (&im, m);
  e = (const void *) (m + newest_jentry (&im));
  n = pick_node (&im, 1, 0);
  s = &n.chain[n.nr - 1];
  nkeys = s->nkeys;
  if (s->block + s->nblocks + 1 > span_blocks (&im))
    skip ();
  off = bucket_byte (&im, n.bucket)
    + (uint64_t) (s->block + s->nblocks) * NC_BLOCK_BYTES;
  h = (void *) (m + off);
  memcpy (h, bset_hdr (&im, &n, n.nr - 1), NC_BLOCK_BYTES);
  h->seq = s->seq + 1;
  h->journal_seq = e->seq + 1;
  h->nkeys = nkeys > 100 ? 100 : nkeys;
  h->csum ^= 1;                 /* torn: the checksum does not match */
  expect_unclean ();
  assert_int_equal (run_mutant ("torn-bset", m), CORRECT);
  /* Recovery zeroed its first block, or the node was written there
   * since: either way no bset with a bad checksum is left there.
   */
  {
    unsigned char *now = malloc ((size_t) span_blocks (&im)
                                 * NC_BLOCK_BYTES);
    const struct nc_bset *nh = (const void *) now;

    assert_non_null (now);
    cdev_sim_peek (W.cd, off, now, NC_BLOCK_BYTES);
    if (nh->magic == NC_BSET_MAGIC && nh->nonce == n.nonce &&
        nh->nkeys <= 4 * NC_BLOCK_BYTES / sizeof (struct nc_key)) {
      cdev_sim_peek (W.cd, off, now, sizeof *nh + (size_t) nh->nkeys
                     * sizeof (struct nc_key));
      assert_true (nh->csum == nc_csum (nh, sizeof *nh + (size_t) nh->nkeys
                                        * sizeof (struct nc_key)));
    }
    free (now);
  }
  /* And the device opens again, as it is now, with the same data. */
  {
    uint64_t wrong;

    assert_int_equal (reopen_and_read (&wrong), CORRECT);
  }
  free (m);
}

/* A bad checksum on the newest bset of a live leaf of the clean image:
 * its journal seq is not newer than the newest durable entry, so it was
 * durable and cannot be torn.
 */
static void
test_old_bad_bset_refused (void **state)
{
  unsigned char *m;
  uint64_t off;
  struct nc_bset *h = clean_newest_bset (1, &m, &off);
  (void) state;

  h->csum ^= 1;
  must_refuse ("old-bad-bset", m, false);
}

/* ---- the random loop ---- */

/* Does [off, off + len) touch the first block of a live node's newest
 * bset (other than its first)?  That is the one mutation v1 cannot tell
 * from blocks never written (see the top comment).
 */
static bool
hits_newest_header (const struct node *nodes, unsigned nr,
                    const struct image *im, uint64_t off, uint64_t len)
{
  unsigned i;

  for (i = 0; i < nr; i++) {
    const struct bset_at *s = &nodes[i].chain[nodes[i].nr - 1];
    uint64_t h = bucket_byte (im, nodes[i].bucket)
      + (uint64_t) s->block * NC_BLOCK_BYTES;

    if (nodes[i].nr < 2)
      continue;
    if ((off < h + 16 && off + len > h + 8) ||     /* magic */
        (off < h + 48 && off + len > h + 24))      /* uuid, nonce */
      return true;
  }
  return false;
}

static void
test_random_btree_mutants (void **state)
{
  static struct node nodes[MAX_NODES];
  const unsigned nr_mutants =
    (unsigned) test_env_u64 ("NBDCACHE_CORRUPT_MUTANTS", 100);
  unsigned counts[3] = { 0, 0, 0 }, undetectable[3] = { 0, 0, 0 }, nr, i;
  struct test_rng rng;
  struct image im;
  (void) state;

  test_rng_seed (&rng, W.seed);
  printf ("# random btree mutants: seed %" PRIu64 " (NBDCACHE_SEED=%" PRIu64
          " to replay), %u mutants\n", W.seed, W.seed, nr_mutants);
  for (i = 0; i < nr_mutants; i++) {
    bool unclean = test_rng_chance (&rng, 30);
    unsigned char *m = copy_of (unclean ? W.unclean : W.clean);
    const struct node *n;
    const struct bset_at *s;
    uint64_t off, len;
    unsigned kind = (unsigned) test_rng_below (&rng, 3);
    uint32_t block;
    char name[96];
    enum outcome o;

    image_load (&im, m);
    nr = live_nodes (&im, nodes, MAX_NODES);
    assert_true (nr > 0);
    n = &nodes[test_rng_below (&rng, nr)];
    s = &n->chain[n->nr - 1];
    /* A block of the node's chain, bsets old and new. */
    block = (uint32_t) test_rng_below (&rng, s->block + s->nblocks);
    off = bucket_byte (&im, n->bucket) + (uint64_t) block * NC_BLOCK_BYTES;
    len = NC_BLOCK_BYTES;
    switch (kind) {
    case 0:                     /* zero a block */
      memset (m + off, 0, len);
      break;
    case 1:                     /* flip a byte */
      off += test_rng_below (&rng, NC_BLOCK_BYTES);
      len = 1;
      m[off] ^= (unsigned char) (1u << test_rng_below (&rng, 8));
      break;
    default: {                  /* garbage block */
      uint64_t j;

      for (j = 0; j < len; j += 8) {
        uint64_t v = test_rng_next (&rng);
        memcpy (m + off + j, &v, 8);
      }
    }
    }
    snprintf (name, sizeof name, "random-%u-%s-%s-bucket-%" PRIu32
              "-block-%" PRIu32, i, unclean ? "unclean" : "clean",
              kind == 0 ? "zero" : kind == 1 ? "flip" : "garbage",
              n->bucket, block);
    if (unclean)
      expect_unclean ();
    else
      expect_clean ();
    if (hits_newest_header (nodes, nr, &im, off, len)) {
      uint64_t wrong;

      restore (m);
      o = reopen_and_read (&wrong);
      undetectable[o]++;
      printf ("# %s: %s, not counted (clobbers a newest bset's identity, "
              "undetectable in format v1)\n", name, outcome_name (o));
      free (m);
      continue;
    }
    o = run_mutant (name, m);
    counts[o]++;
    free (m);
  }
  printf ("# random btree mutants: %u refused, %u correct, %u wrong; not "
          "counted (newest bset's identity clobbered): %u refused, %u "
          "correct, %u wrong (seed %" PRIu64 ")\n", counts[REFUSED],
          counts[CORRECT], counts[WRONG], undetectable[REFUSED],
          undetectable[CORRECT], undetectable[WRONG], W.seed);
  assert_int_equal (counts[WRONG], 0);
}

/* Record the expected versions of each base image (setup fills
 * W.version up to the unclean writes; replay the generator to split).
 */
static int
setup_all (void **state)
{
  struct test_rng rng;
  uint32_t c, i;

  /* The clean expectation: the first CYCLES cycles of the generator. */
  memset (W.version, 0, sizeof W.version);
  test_rng_seed (&rng, 12345);
  for (c = 1; c <= CYCLES; c++)
    for (i = 0; i < WRITES_PER_CYCLE; i++)
      clean_version[test_rng_below (&rng, NR_BLOCKS / 2) * 2] = c;
  return setup (state);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_base_images),
    cmocka_unit_test (test_zero_middle_bset),
    cmocka_unit_test (test_zero_newest_bset_keys),
    cmocka_unit_test (test_bset_seq_zero),
    cmocka_unit_test (test_bset_nkeys_short),
    cmocka_unit_test (test_old_bad_bset_refused),
    cmocka_unit_test (test_journal_seq_max),
    cmocka_unit_test (test_journal_delete_flags),
    cmocka_unit_test (test_journal_newest_damaged),
    cmocka_unit_test (test_journal_newer_version),
    cmocka_unit_test (test_journal_inline_data_flip),
    cmocka_unit_test (test_journal_inline_data_lost),
    cmocka_unit_test (test_journal_plain_upgrade),
    cmocka_unit_test (test_prio_gen_rollback),
    cmocka_unit_test (test_prio_gen_rollback_journal),
    cmocka_unit_test (test_prio_copies_gen_backwards),
    cmocka_unit_test (test_sb_export_uri_flip),
    cmocka_unit_test (test_dirty_key_foreign_export),
    cmocka_unit_test (test_torn_bset_recovered),
    cmocka_unit_test (test_random_btree_mutants),
  };

  return cmocka_run_group_tests (tests, setup_all, teardown);
}
