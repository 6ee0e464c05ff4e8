/* SPDX-License-Identifier: BSD-3-Clause */
/* test-journal-stamps.c — the newest journal entry is protected: a torn
 * write is told from damage (entry version 2, stamped sectors), and
 * version 1 rings still replay.
 *
 * WHAT: the newest entry, written whole and acknowledged, then damaged —
 * one bit flipped, one 512-byte sector zeroed, with and without the
 * entry's checksum (or the sector's stamp) recomputed, a sector's stamp
 * naming a newer seq (its checksum recomputed: a torn write never leaves
 * one), its header sector zeroed, its whole block zeroed — is refused by
 * check and by replay, naming the entry; so is an older entry forged into
 * the newest (seq raised, checksums recomputed).  An entry of a version
 * newer than this build reads (5), newest or inside the chain, is refused
 * as coming from that version, not as damage.  The same entry torn (a
 * prefix of its sectors written, the rest still old; or a random subset)
 * is dropped silently and the journal carries on.  A ring written by the
 * version 1 writer, with live entries, replays; new entries are stamped,
 * the ring is filled as it frees, a mixed chain replays, and torn writes
 * over it stay torn.
 * HOW: the fixture of test-journal-fx.h: the simulated device, the fake
 * btree's model of every key journaled.
 * SEED: printed; NBDCACHE_SEED overrides it.
 */
#include <config.h>

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
#include <time.h>

#include <cmocka.h>
#include <xxhash.h>

#include "cdev.h"
#include "csum.h"
#include "journal.h"
#include "journal-internal.h"
#include "log.h"
#include "testkit.h"
#include "ondisk.h"
#include "super.h"
#include "test-journal-fx.h"

/* Byte offset on the device of sector sec of ring block pos. */
static uint64_t
sector_byte (const struct env *e, uint32_t pos, uint32_t sec)
{
  return e->ring_offset + (uint64_t) pos * NC_BLOCK_BYTES
    + (uint64_t) sec * NC_JSECTOR_BYTES;
}

/* The entry's sectors at pos, nb blocks, joined without looking at the
 * stamps (what a careless repair tool would do).
 */
static void
raw_payload (struct env *e, uint32_t pos, uint32_t nb, unsigned char *out)
{
  unsigned char sec[NC_JSECTOR_BYTES];
  uint32_t i;

  for (i = 0; i < nb * NC_JSECTORS_PER_BLOCK; i++) {
    cdev_sim_peek (e->sim, sector_byte (e, pos, i), sec, sizeof sec);
    memcpy (out + (size_t) i * NC_JSECTOR_PAYLOAD_BYTES, sec,
            NC_JSECTOR_PAYLOAD_BYTES);
  }
}

/* Write the entry's checksum again over its (changed) payload. */
static void
recompute_entry_csum (struct env *e, uint32_t pos, uint32_t nb)
{
  static unsigned char p[JOURNAL_MAX_ENTRY_BLOCKS * NC_BLOCK_BYTES];
  const struct nc_jentry *je = (const void *) p;
  uint64_t c;

  raw_payload (e, pos, nb, p);
  c = nc_csum (je, sizeof *je + (size_t) je->nkeys * sizeof (struct nc_key));
  cdev_sim_poke (e->sim, sector_byte (e, pos, 0), &c, sizeof c);
}

/* Write sector sec's stamp checksum again over its (changed) bytes. */
static void
recompute_stamp (struct env *e, uint32_t pos, uint32_t sec)
{
  unsigned char b[NC_JSECTOR_BYTES];
  uint64_t c;

  cdev_sim_peek (e->sim, sector_byte (e, pos, sec), b, sizeof b);
  c = XXH3_64bits_withSeed (b, NC_JSECTOR_BYTES - 8,
                            jstamp_seed (e->sb.uuid));
  memcpy (b + NC_JSECTOR_BYTES - 8, &c, sizeof c);
  cdev_sim_poke (e->sim, sector_byte (e, pos, sec), b, sizeof b);
}

static void
zero_sector (struct env *e, uint32_t pos, uint32_t sec)
{
  static const unsigned char z[NC_JSECTOR_BYTES];

  cdev_sim_poke (e->sim, sector_byte (e, pos, sec), z, sizeof z);
}

static void
flip_bit (struct env *e, uint64_t offset, unsigned bit)
{
  unsigned char c;

  cdev_sim_peek (e->sim, offset, &c, 1);
  c ^= (unsigned char) (1u << bit);
  cdev_sim_poke (e->sim, offset, &c, 1);
}

/* check and replay both refuse (with error `err`), and the log names
 * entry seq.
 */
static void
must_refuse_with (struct env *e, uint64_t seq, const char *what, int err)
{
  struct journal_check_info info;
  struct journal *j2;
  struct nc_key root;
  uint16_t level;
  char needle[64];

  snprintf (needle, sizeof needle, "entry %" PRIu64 " ", seq);
  test_log_clear ();
  if (journal_check (e->sim, &e->sb, &info) != err)
    fail_msg ("%s: check did not refuse (seed %" PRIu64 ")", what, seed);
  if (!error_logged (needle))
    fail_msg ("%s: the error does not name entry %" PRIu64 ": %s", what, seq,
              test_log_last_error ());
  assert_int_equal (journal_create (e->sim, &e->sb, &j2), 0);
  if (journal_replay (j2, collect, NULL, &root, &level) != err)
    fail_msg ("%s: replay did not refuse", what);
  journal_destroy (j2);
}

static void
must_refuse (struct env *e, uint64_t seq, const char *what)
{
  must_refuse_with (e, seq, what, -EBADMSG);
}

/* A commit of three entries, then one of about 1.5 blocks: the newest
 * entry (its seq returned) is written whole and acknowledged.
 */
static uint64_t
setup_newest (struct env *e, uint32_t *pos, uint32_t *nb)
{
  uint32_t kpe;
  uint64_t s;

  env_init (e, 4, LONG_DELAY_MS);
  kpe = kpe_for (e->ring_blocks);
  s = fake_add_bulk (&e->f, 2 * kpe + 3, kpe);
  assert_int_equal (journal_wait (e->j, s), 0);
  s = fake_add (&e->f, 150);
  assert_int_equal (journal_wait (e->j, s), 0);
  assert_int_equal (journal_durable_seq (e->j), s);
  assert_true (find_entry (e, s, pos, nb));
  assert_true (*nb >= 2);
  return s;
}

enum damage {
  FLIP_KEY, FLIP_KEY_ENTRY_CSUM, FLIP_KEY_STAMP_CSUM, FLIP_STAMP,
  ZERO_SECTOR, ZERO_SECTOR_ENTRY_CSUM, ZERO_HEADER_SECTOR, ZERO_LAST_SECTOR,
  STAMP_NEWER_SEQ, NR_DAMAGE,
};
static const char *const damage_name[NR_DAMAGE] = {
  "one bit of a key", "one bit of a key, entry csum recomputed",
  "one bit of a key, sector stamp recomputed", "one bit of a stamp",
  "a zeroed sector", "a zeroed sector, entry csum recomputed",
  "a zeroed header sector", "a zeroed last sector",
  "a stamp naming a newer seq, stamp csum recomputed",
};

/* Every kind of damage to the newest, acknowledged entry is refused; the
 * same device undamaged opens with that entry.
 */
static void
test_journal_newest_damaged (void **state)
{
  unsigned d;

  for (d = 0; d < NR_DAMAGE; d++) {
    struct env e;
    struct journal_check_info info;
    uint32_t pos, nb, sec;
    uint64_t s = setup_newest (&e, &pos, &nb);
    uint64_t rng = seed ^ d;
    unsigned char save[2 * NC_BLOCK_BYTES];

    /* A sector past the header, inside the keys. */
    sec = 1 + test_splitmix_next (&rng) % 4;
    cdev_sim_peek (e.sim, sector_byte (&e, pos, 0), save, sizeof save);
    switch (d) {
    case FLIP_KEY:
      flip_bit (&e, sector_byte (&e, pos, sec) + 100, rng % 8);
      break;
    case FLIP_KEY_ENTRY_CSUM:
      flip_bit (&e, sector_byte (&e, pos, sec) + 100, rng % 8);
      recompute_entry_csum (&e, pos, nb);
      break;
    case FLIP_KEY_STAMP_CSUM:
      flip_bit (&e, sector_byte (&e, pos, sec) + 100, rng % 8);
      recompute_stamp (&e, pos, sec);
      break;
    case FLIP_STAMP:
      flip_bit (&e, sector_byte (&e, pos, sec) + NC_JSECTOR_PAYLOAD_BYTES
                + 9, rng % 8);
      break;
    case ZERO_SECTOR:
      zero_sector (&e, pos, sec);
      break;
    case ZERO_SECTOR_ENTRY_CSUM:
      zero_sector (&e, pos, sec);
      recompute_entry_csum (&e, pos, nb);
      break;
    case ZERO_HEADER_SECTOR:
      zero_sector (&e, pos, 0);
      break;
    case ZERO_LAST_SECTOR:
      zero_sector (&e, pos, nb * NC_JSECTORS_PER_BLOCK - 1);
      break;
    case STAMP_NEWER_SEQ: {
      /* What test-mutants found: the stamp's seq raised (a valid stamp
       * of an entry that was never written) read as "a sector this
       * write never replaced", so the entry was dropped as torn.
       */
      uint64_t newer = s + 1 + test_splitmix_next (&rng) % 100000;

      cdev_sim_poke (e.sim, sector_byte (&e, pos, sec)
                     + NC_JSECTOR_PAYLOAD_BYTES
                     + offsetof (struct nc_jstamp, seq), &newer,
                     sizeof newer);
      recompute_stamp (&e, pos, sec);
      break;
    }
    }
    must_refuse (&e, s, damage_name[d]);

    /* Undamaged, it opens with s, keys and all. */
    if (d != ZERO_LAST_SECTOR)
      cdev_sim_poke (e.sim, sector_byte (&e, pos, 0), save, sizeof save);
    else {
      env_free (&e);
      continue;
    }
    assert_int_equal (journal_check (e.sim, &e.sb, &info), 0);
    assert_int_equal (info.last_seq, s);
    env_crash (&e, 0);
    assert_int_equal (journal_durable_seq (e.j), s);
    env_free (&e);
  }
}

/* The newest entry is one block and every byte of it is zeroed: no stamp
 * is left to name it, but the ring was filled, so the block where it
 * would start must hold a stamp.  Refused.
 */
static void
test_journal_newest_block_zeroed (void **state)
{
  static const unsigned char z[NC_BLOCK_BYTES];
  unsigned char hdr[NC_BLOCK_BYTES];
  struct env e;
  uint32_t pos, nb;
  uint64_t s = 0;
  int i;

  env_init (&e, 4, LONG_DELAY_MS);
  for (i = 0; i < 3; i++) {
    s = fake_add (&e.f, 5);
    assert_int_equal (journal_wait (e.j, s), 0);
  }
  assert_true (find_entry (&e, s, &pos, &nb));
  assert_int_equal (nb, 1);
  /* The entry says the ring was filled (the format's zeros are gone). */
  cdev_sim_peek (e.sim, sector_byte (&e, pos, 0), hdr, sizeof hdr);
  assert_true (((struct nc_jentry *) hdr)->flags & NC_JENTRY_RING_FILLED);
  cdev_sim_poke (e.sim, sector_byte (&e, pos, 0), z, sizeof z);
  must_refuse (&e, s - 1, "the newest entry's block zeroed");
  assert_true (error_logged ("would start, is damaged"));
  env_free (&e);
}

/* An older entry, alone in its write, forged into the newest: its seq
 * raised past every other, its checksum and stamps recomputed (what
 * test-mutants found).  It claims the write that carried it began at its
 * old seq, so the entries after that looked like the rest of a torn write
 * and were dropped with it, silently.  But they say they began writes of
 * their own: refused, naming the forged entry.
 */
static void
test_journal_forged_newest (void **state)
{
  static unsigned char p[JOURNAL_MAX_ENTRY_BLOCKS * NC_BLOCK_BYTES];
  static unsigned char raw[JOURNAL_MAX_ENTRY_BLOCKS * NC_BLOCK_BYTES];
  struct nc_jentry *je = (void *) p;
  struct env e;
  uint64_t s[4], forged;
  uint32_t pos, nb;
  int i;

  env_init (&e, 4, LONG_DELAY_MS);
  for (i = 0; i < 4; i++) {
    s[i] = fake_add (&e.f, 5);
    assert_int_equal (journal_wait (e.j, s[i]), 0);
  }
  assert_true (find_entry (&e, s[1], &pos, &nb));
  raw_payload (&e, pos, nb, p);
  assert_int_equal (je->write_first, s[1]);
  forged = s[3] + 1 + test_splitmix_next (&(uint64_t) { seed }) % 8;
  je->seq = forged;
  je->csum = nc_csum (je, sizeof *je + (size_t) je->nkeys
                      * sizeof (struct nc_key));
  jentry_frame (je, jstamp_seed (e.sb.uuid), raw);
  cdev_sim_poke (e.sim, sector_byte (&e, pos, 0), raw,
                 (size_t) nb * NC_BLOCK_BYTES);
  must_refuse (&e, forged, "an older entry forged into the newest");
  assert_true (error_logged ("says its write began"));
  env_free (&e);
}

/* Entry seq rewritten whole as entry version `version` (its checksum and
 * stamps recomputed): what a newer build would have written there.
 */
static void
rewrite_as_version (struct env *e, uint64_t seq, uint32_t version)
{
  static unsigned char p[JOURNAL_MAX_ENTRY_BLOCKS * NC_BLOCK_BYTES];
  static unsigned char raw[JOURNAL_MAX_ENTRY_BLOCKS * NC_BLOCK_BYTES];
  struct nc_jentry *je = (void *) p;
  uint32_t pos, nb;

  assert_true (find_entry (e, seq, &pos, &nb));
  raw_payload (e, pos, nb, p);
  je->version = version;
  je->csum = nc_csum (je, sizeof *je + (size_t) je->nkeys
                      * sizeof (struct nc_key));
  jentry_frame (je, jstamp_seed (e->sb.uuid), raw);
  cdev_sim_poke (e->sim, sector_byte (e, pos, 0), raw,
                 (size_t) nb * NC_BLOCK_BYTES);
}

/* An entry of a version this build does not know (5), written whole:
 * check and replay refuse it as coming from a newer version, naming that
 * version, not as damage — when it is the newest entry, and when it is a
 * link in the middle of the chain.
 */
static void
test_journal_newer_version (void **state)
{
  struct env e;
  uint64_t s[4];
  int i, where;

  for (where = 0; where < 2; where++) {
    env_init (&e, 4, LONG_DELAY_MS);
    for (i = 0; i < 4; i++) {
      s[i] = fake_add (&e.f, 5);
      assert_int_equal (journal_wait (e.j, s[i]), 0);
    }
    rewrite_as_version (&e, where == 0 ? s[3] : s[1], 5);
    must_refuse_with (&e, where == 0 ? s[3] : s[1],
                      where == 0 ? "the newest entry of version 5"
                      : "a version 5 entry inside the chain",
                      -EPROTONOSUPPORT);
    if (!error_logged ("is from a newer version of nbdcache (journal entry "
                       "version 5;"))
      fail_msg ("the refusal does not name the newer version: %s",
                test_log_last_error ());
    assert_false (error_logged ("damaged"));
    assert_false (error_logged ("missing or corrupt"));
    env_free (&e);
  }
}

/* The newest write torn: the first k sectors of its entry written, the
 * rest still old (for several k), or a random subset.  Opens at the entry
 * before, clean; the journal goes on over the leftovers, and a crash
 * after that replays everything acknowledged.
 */
static void
test_journal_newest_torn (void **state)
{
  const size_t ring_bytes = (size_t) 4 * BUCKET_BLOCKS * NC_BLOCK_BYTES;
  unsigned char *old = malloc (ring_bytes);
  uint64_t rng = seed;
  unsigned iter;

  assert_non_null (old);
  for (iter = 0; iter < 12; iter++) {
    struct env e;
    struct journal_check_info info;
    uint64_t d, s;
    uint32_t pos, nb, n, k, i;

    env_init (&e, 4, LONG_DELAY_MS);
    s = fake_add (&e.f, 40);
    assert_int_equal (journal_wait (e.j, s), 0);
    d = s;
    cdev_sim_peek (e.sim, e.ring_offset, old, ring_bytes);
    s = fake_add (&e.f, 150);
    assert_int_equal (journal_wait (e.j, s), 0);
    assert_true (find_entry (&e, s, &pos, &nb));
    n = nb * NC_JSECTORS_PER_BLOCK;
    /* Prefixes 1 .. n - 1 of the sectors, then random subsets. */
    k = iter < 6 ? (uint32_t) (1 + (iter * (n - 2)) / 5)
      : (uint32_t) (test_splitmix_next (&rng) % n);
    for (i = 0; i < n; i++) {
      bool written = iter < 6 ? i < k
        : (test_splitmix_next (&rng) & 1) != 0;

      if (i == k && iter >= 6)
        written = false;        /* at least one sector unwritten */
      if (!written)
        tear_sector (&e, old, pos, i);
    }
    test_log_clear ();
    if (journal_check (&e.fy->head, &e.sb, &info) != 0)
      fail_msg ("torn entry (iteration %u, seed %" PRIu64 ") refused: %s",
                iter, seed, test_log_last_error ());
    assert_int_equal (info.last_seq, d);
    env_crash (&e, 0);
    assert_int_equal (journal_durable_seq (e.j), d);
    s = fake_add (&e.f, 30);
    assert_int_equal (journal_wait (e.j, s), 0);
    s = fake_add (&e.f, 200);
    assert_int_equal (journal_wait (e.j, s), 0);
    env_crash (&e, 0);
    assert_int_equal (journal_durable_seq (e.j), s);
    env_free (&e);
  }
  free (old);
}

/* A version 1 entry at ring block pos: header and keys in plain blocks,
 * as the version 1 writer made it.  Its keys join the model.
 */
static uint32_t
poke_plain_entry (struct env *e, uint32_t pos, uint64_t seq,
                  uint64_t last_seq, size_t nkeys)
{
  const uint32_t nb = (sizeof (struct nc_jentry) + nkeys * 32 +
                       NC_BLOCK_BYTES - 1) / NC_BLOCK_BYTES;
  struct nc_jentry *je = calloc (nb, NC_BLOCK_BYTES);
  size_t i;

  assert_non_null (je);
  je->magic = NC_JOURNAL_MAGIC;
  je->version = NC_JENTRY_VERSION_PLAIN;
  je->nblocks = nb;
  memcpy (je->uuid, e->sb.uuid, sizeof je->uuid);
  je->seq = seq;
  je->last_seq = last_seq;
  je->write_first = seq;
  if (nkeys > 0) {
    je->root = e->f.root;
    je->root_level = e->f.level;
  }
  je->nkeys = nkeys;
  pthread_mutex_lock (&e->f.lock);
  fake_make_keys (&e->f, je->keys, nkeys);
  for (i = 0; i < nkeys; i++)
    fake_record (&e->f, &je->keys[i], seq);
  pthread_mutex_unlock (&e->f.lock);
  je->csum = nc_csum (je, sizeof *je + nkeys * 32);
  cdev_sim_poke (e->sim, e->ring_offset + (uint64_t) pos * NC_BLOCK_BYTES,
                 je, (size_t) nb * NC_BLOCK_BYTES);
  free (je);
  return nb;
}

static uint32_t
entry_version (struct env *e, uint64_t seq)
{
  unsigned char hdr[NC_BLOCK_BYTES];
  uint32_t pos, nb;

  assert_true (find_entry (e, seq, &pos, &nb));
  cdev_sim_peek (e->sim, e->ring_offset + (uint64_t) pos * NC_BLOCK_BYTES,
                 hdr, sizeof hdr);
  return ((struct nc_jentry *) hdr)->version;
}

/* A ring of the version 1 writer with live entries (a cache that went
 * down with a dirty journal) replays; new entries are stamped; the old
 * ones are filled over once free; crashes, torn or not, replay the mixed
 * chain and later ones.
 */
static void
test_journal_plain_upgrade (void **state)
{
  const size_t ring_bytes = (size_t) 4 * BUCKET_BLOCKS * NC_BLOCK_BYTES;
  unsigned char *zero = calloc (1, ring_bytes);
  uint64_t tear = seed, s, d;
  struct journal_check_info info;
  struct nc_jstamp st;
  unsigned char blk[NC_BLOCK_BYTES];
  struct env e;
  uint32_t pos = 0;
  unsigned iter;

  assert_non_null (zero);
  env_init (&e, 4, LONG_DELAY_MS);
  journal_destroy (e.j);
  e.j = NULL;
  cdev_sim_poke (e.sim, e.ring_offset, zero, ring_bytes);
  pos += poke_plain_entry (&e, pos, 1, 1, 0);
  pos += poke_plain_entry (&e, pos, 2, 2, 10);
  pos += poke_plain_entry (&e, pos, 3, 2, 7);
  pos += poke_plain_entry (&e, pos, 4, 2, 300);
  free (zero);
  assert_int_equal (journal_check (e.sim, &e.sb, &info), 0);
  assert_int_equal (info.first_seq, 2);
  assert_int_equal (info.last_seq, 4);
  assert_int_equal (info.nkeys, 317);

  env_crash (&e, 0);            /* replays 2..4 against the model */
  assert_int_equal (e.f.nrecs, 317);
  s = fake_add (&e.f, 20);
  assert_int_equal (journal_wait (e.j, s), 0);
  assert_int_equal (entry_version (&e, s), NC_JENTRY_VERSION);
  assert_int_equal (entry_version (&e, 4), NC_JENTRY_VERSION_PLAIN);
  /* The free part of the ring was filled before the first new entry. */
  cdev_sim_peek (e.sim, e.ring_offset + ring_bytes - NC_BLOCK_BYTES, blk,
                 sizeof blk);
  assert_true (jsector_stamp (blk, jstamp_seed (e.sb.uuid), &st));
  assert_int_equal (st.seq, 0);

  env_crash (&e, 0);            /* the mixed chain 2..s */
  assert_int_equal (e.f.nrecs, 337);
  assert_int_equal (journal_durable_seq (e.j), s);

  /* Torn writes over the upgraded ring are torn, never damage. */
  for (iter = 0; iter < 16; iter++) {
    d = journal_durable_seq (e.j);
    faulty_fail_sync (e.fy, 2);
    s = fake_add (&e.f, 300 + iter * 50);
    assert_int_equal (journal_wait (e.j, s), -EIO);
    test_log_clear ();
    if (journal_check (e.sim, &e.sb, &info) != 0)
      fail_msg ("torn write %u refused (seed %" PRIu64 "): %s", iter, seed,
                test_log_last_error ());
    env_crash (&e, test_splitmix_next (&tear) | 1);
    assert_true (journal_durable_seq (e.j) >= d);
    s = fake_add (&e.f, 5);
    assert_int_equal (journal_wait (e.j, s), 0);
  }
  env_crash (&e, 0);
  assert_int_equal (journal_durable_seq (e.j), s);
  env_free (&e);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_journal_newest_damaged),
    cmocka_unit_test (test_journal_newest_block_zeroed),
    cmocka_unit_test (test_journal_newest_torn),
    cmocka_unit_test (test_journal_forged_newest),
    cmocka_unit_test (test_journal_newer_version),
    cmocka_unit_test (test_journal_plain_upgrade),
  };

  seed = test_seed_from_env ("test-journal-stamps");
  test_log_capture ();
  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
