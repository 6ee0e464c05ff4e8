/* SPDX-License-Identifier: BSD-3-Clause */
/* test-cdev-sim.c — unit tests for the simulated cache device
 * (cdev-sim.c).
 *
 * WHAT: the durability model (unsynced writes lost, synced and FUA
 * writes kept, discard), fail_at_write, fail_at_op (writes and syncs in
 * one numbering; a sync that dies makes nothing durable), the fail-once
 * faults, tearing
 * with a seed, counters, poke/peek, range errors, many cheap crashes,
 * threads, and a randomised model check.
 * SEED: the tear, model and fail_at_op model tests are randomised; NBDCACHE_SEED overrides
 * the seed, which is always printed.
 */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/types.h>

#ifdef HAVE_LINUX_FS_H
#include <linux/fs.h>
#endif

#include <cmocka.h>

#include "cdev.h"
#include "log.h"
#include "testkit.h"
#include "ondisk.h"
#include "test-cdev-fx.h"

/* ---- the simulated device ---- */

static struct cdev *
sim_ok (uint64_t size)
{
  struct cdev *cd = NULL;

  assert_int_equal (cdev_sim_create (size, &cd), 0);
  assert_non_null (cd);
  return cd;
}

/* Write `nblocks` blocks tagged `tag` at block `b`. */
static int
sim_write (struct cdev *cd, uint64_t b, uint64_t nblocks, uint64_t tag,
           uint32_t flags)
{
  unsigned char *buf = cdev_alloc_buffer (nblocks * BLK);
  int r;

  fill (buf, nblocks * BLK, b * BLK, tag);
  r = cdev_pwrite (cd, buf, nblocks * BLK, b * BLK, flags);
  free (buf);
  return r;
}

/* Do blocks [b, b+n) read as tag (0 = zeros), via pread and via peek? */
static bool
sim_has (struct cdev *cd, uint64_t b, uint64_t nblocks, uint64_t tag)
{
  unsigned char *buf = cdev_alloc_buffer (nblocks * BLK);
  unsigned char *peek = malloc (nblocks * BLK);
  bool ok;

  assert_non_null (peek);
  assert_int_equal (cdev_pread (cd, buf, nblocks * BLK, b * BLK), 0);
  cdev_sim_peek (cd, b * BLK, peek, nblocks * BLK);
  assert_memory_equal (buf, peek, nblocks * BLK);
  ok = tag == 0 ? all_zero (buf, nblocks * BLK)
    : check_fill (buf, nblocks * BLK, b * BLK, tag);
  free (peek);
  free (buf);
  return ok;
}

static void
test_cdev_sim_create (void **state)
{
  struct cdev *cd = NULL;

  test_log_clear ();
  assert_int_equal (cdev_sim_create (0, &cd), -EINVAL);
  assert_one_error ("sim", NULL);
  assert_int_equal (cdev_sim_create (BLK + 512, &cd), -EINVAL);
  assert_one_error ("sim", NULL);
  assert_null (cd);

  cd = sim_ok (64 * MIB);
  assert_string_equal (cd->ops->name, "sim");
  assert_non_null (cd->path);
  assert_int_equal (cd->size_bytes, 64 * MIB);
  assert_false (cd->direct);
  assert_false (cd->is_block_device);
  assert_true (sim_has (cd, 0, 16, 0));
  assert_true (sim_has (cd, 64 * MIB / BLK - 1, 1, 0));
  assert_int_equal (cdev_sim_nr_writes (cd), 0);
  assert_int_equal (cdev_sim_nr_syncs (cd), 0);
  cdev_close (cd);
}

static void
test_cdev_sim_durability (void **state)
{
  struct cdev *cd = sim_ok (4 * MIB);

  /* synced writes survive, unsynced ones do not */
  assert_int_equal (sim_write (cd, 0, 4, 1, 0), 0);
  assert_int_equal (cdev_sync (cd), 0);
  assert_int_equal (sim_write (cd, 2, 4, 2, 0), 0);   /* over 2, 3; new 4, 5 */
  assert_int_equal (sim_write (cd, 10, 1, 3, 0), 0);
  assert_true (sim_has (cd, 2, 4, 2));
  cdev_sim_crash (cd, 0);
  assert_true (sim_has (cd, 0, 4, 1));
  assert_true (sim_has (cd, 4, 2, 0));
  assert_true (sim_has (cd, 10, 1, 0));

  /* FUA is durable at once, without a sync */
  assert_int_equal (sim_write (cd, 20, 2, 4, CDEV_FUA), 0);
  assert_int_equal (sim_write (cd, 22, 1, 5, 0), 0);
  cdev_sim_crash (cd, 0);
  assert_true (sim_has (cd, 20, 2, 4));
  assert_true (sim_has (cd, 22, 1, 0));

  /* an unsynced write over FUA data falls back to the FUA data; a FUA
   * write over unsynced data keeps the FUA data
   */
  assert_int_equal (sim_write (cd, 20, 1, 6, 0), 0);
  assert_int_equal (sim_write (cd, 30, 1, 7, 0), 0);
  assert_int_equal (sim_write (cd, 30, 1, 8, CDEV_FUA), 0);
  cdev_sim_crash (cd, 0);
  assert_true (sim_has (cd, 20, 1, 4));
  assert_true (sim_has (cd, 30, 1, 8));

  /* only writes completed before a sync are made durable by it */
  assert_int_equal (sim_write (cd, 40, 1, 9, 0), 0);
  assert_int_equal (cdev_sync (cd), 0);
  assert_int_equal (sim_write (cd, 40, 1, 10, 0), 0);
  assert_true (sim_has (cd, 40, 1, 10));
  cdev_sim_crash (cd, 0);
  assert_true (sim_has (cd, 40, 1, 9));
  /* a crash with nothing unsynced changes nothing */
  cdev_sim_crash (cd, 0);
  cdev_sim_crash (cd, 42);
  assert_true (sim_has (cd, 0, 4, 1));
  assert_true (sim_has (cd, 40, 1, 9));
  cdev_close (cd);
}

static void
test_cdev_sim_discard (void **state)
{
  struct cdev *cd = sim_ok (4 * MIB);

  assert_int_equal (sim_write (cd, 0, 8, 1, CDEV_FUA), 0);
  assert_int_equal (cdev_discard (cd, 2 * BLK, 2 * BLK), 0);
  assert_true (sim_has (cd, 2, 2, 0));
  assert_true (sim_has (cd, 0, 2, 1));
  assert_true (sim_has (cd, 4, 4, 1));
  /* an unsynced discard may be lost: old data is back */
  cdev_sim_crash (cd, 0);
  assert_true (sim_has (cd, 0, 8, 1));
  /* a synced one is durable */
  assert_int_equal (cdev_discard (cd, 2 * BLK, 2 * BLK), 0);
  assert_int_equal (cdev_discard (cd, 0, 0), 0);
  assert_int_equal (cdev_sync (cd), 0);
  cdev_sim_crash (cd, 0);
  assert_true (sim_has (cd, 2, 2, 0));
  assert_true (sim_has (cd, 4, 4, 1));
  cdev_close (cd);
}

static void
test_cdev_sim_fail_at_write (void **state)
{
  struct cdev *cd = sim_ok (4 * MIB);
  unsigned char *buf = cdev_alloc_buffer (BLK);

  test_log_clear ();
  cdev_sim_fail_at_write (cd, 3);
  assert_int_equal (sim_write (cd, 0, 1, 1, 0), 0);
  assert_int_equal (cdev_sync (cd), 0);
  assert_int_equal (sim_write (cd, 1, 1, 2, 0), 0);
  assert_int_equal (test_log_errors (), 0);
  /* write 3 dies and is not applied, even with FUA */
  assert_int_equal (sim_write (cd, 2, 1, 3, CDEV_FUA), -EIO);
  assert_one_error ("sim", "offset 8192");
  cdev_sim_peek (cd, 2 * BLK, buf, BLK);
  assert_true (all_zero (buf, BLK));
  /* and everything after it fails */
  assert_int_equal (sim_write (cd, 3, 1, 4, 0), -EIO);
  assert_int_equal (cdev_pread (cd, buf, BLK, 0), -EIO);
  assert_int_equal (cdev_sync (cd), -EIO);
  assert_int_equal (cdev_discard (cd, BLK, 0), -EIO);
  cdev_sim_peek (cd, 3 * BLK, buf, BLK);
  assert_true (all_zero (buf, BLK));
  assert_int_equal (cdev_sim_nr_writes (cd), 4);
  assert_int_equal (cdev_sim_nr_syncs (cd), 2);
  /* argument errors still say so, and are not counted as writes */
  assert_int_equal (cdev_pwrite (cd, buf, BLK, 1, 0), -EINVAL);
  assert_int_equal (cdev_sim_nr_writes (cd), 4);

  /* reboot: usable again, faults and counters cleared; the failed sync
   * did not make write 2 durable
   */
  cdev_sim_crash (cd, 0);
  assert_int_equal (cdev_sim_nr_writes (cd), 0);
  assert_int_equal (cdev_sim_nr_syncs (cd), 0);
  assert_true (sim_has (cd, 0, 1, 1));
  assert_true (sim_has (cd, 1, 3, 0));
  assert_int_equal (sim_write (cd, 2, 1, 3, 0), 0);
  assert_int_equal (sim_write (cd, 3, 1, 4, 0), 0);
  assert_int_equal (sim_write (cd, 4, 1, 5, 0), 0); /* old n = 3 is gone */
  assert_int_equal (cdev_sync (cd), 0);
  assert_true (sim_has (cd, 2, 1, 3));
  assert_true (sim_has (cd, 3, 1, 4));
  assert_true (sim_has (cd, 4, 1, 5));

  /* n at or below the count already reached: the next write dies */
  cdev_sim_fail_at_write (cd, 2);
  assert_int_equal (sim_write (cd, 5, 1, 6, 0), -EIO);
  cdev_sim_crash (cd, 0);
  /* 0 disarms */
  cdev_sim_fail_at_write (cd, 1);
  cdev_sim_fail_at_write (cd, 0);
  assert_int_equal (sim_write (cd, 5, 1, 6, 0), 0);
  free (buf);
  cdev_close (cd);
}

/* fail_at_op numbers pwrite and sync in one sequence, so the device can
 * die AT a sync.  That sync fails and settles nothing: a power loss
 * still loses what it would have synced, a kill keeps it.
 */
static void
test_cdev_sim_fail_at_op_sync (void **state)
{
  struct cdev *cd = sim_ok (4 * MIB);
  unsigned char *buf = cdev_alloc_buffer (BLK);

  test_log_clear ();
  cdev_sim_fail_at_op (cd, 4);
  assert_int_equal (sim_write (cd, 0, 1, 1, 0), 0);             /* op 1 */
  assert_int_equal (cdev_sync (cd), 0);                         /* op 2 */
  assert_int_equal (sim_write (cd, 1, 1, 2, 0), 0);             /* op 3 */
  assert_null (cdev_sim_death (cd));
  assert_int_equal (test_log_errors (), 0);
  assert_int_equal (cdev_sync (cd), -EIO);                      /* op 4 */
  assert_one_error ("sim", "died at sync 2, write-or-sync 4");
  assert_non_null (cdev_sim_death (cd));
  assert_string_equal (cdev_sim_death (cd), "sync");
  assert_int_equal (cdev_sim_nr_writes (cd), 2);
  assert_int_equal (cdev_sim_nr_syncs (cd), 2);
  assert_int_equal (cdev_sim_nr_ops (cd), 4);
  /* dead: everything fails (FUA is not applied), and writes and syncs
   * are still counted; only the death was logged as an error
   */
  assert_int_equal (sim_write (cd, 2, 1, 3, CDEV_FUA), -EIO);
  assert_int_equal (cdev_sync (cd), -EIO);
  assert_int_equal (cdev_pread (cd, buf, BLK, 0), -EIO);
  assert_int_equal (cdev_discard (cd, BLK, 0), -EIO);
  assert_int_equal (cdev_sim_nr_ops (cd), 6);
  assert_int_equal (test_log_errors (), 0);
  assert_string_equal (cdev_sim_death (cd), "sync");
  cdev_sim_peek (cd, 2 * BLK, buf, BLK);
  assert_true (all_zero (buf, BLK));

  /* power loss: the failed sync made write 3 nothing durable */
  cdev_sim_crash (cd, 0);
  assert_null (cdev_sim_death (cd));
  assert_int_equal (cdev_sim_nr_ops (cd), 0);
  assert_true (sim_has (cd, 0, 1, 1));
  assert_true (sim_has (cd, 1, 2, 0));

  /* a kill at a dying sync keeps what was written before it */
  cdev_sim_fail_at_op (cd, 2);
  assert_int_equal (sim_write (cd, 1, 1, 2, 0), 0);             /* op 1 */
  assert_int_equal (cdev_sync (cd), -EIO);                      /* op 2 */
  assert_one_error ("sim", "died at sync 1, write-or-sync 2");
  cdev_sim_kill (cd);
  assert_null (cdev_sim_death (cd));
  assert_true (sim_has (cd, 1, 1, 2));

  /* the kill cleared fail_at_op: nothing dies now */
  assert_int_equal (sim_write (cd, 2, 1, 3, 0), 0);
  assert_int_equal (cdev_sync (cd), 0);
  assert_int_equal (cdev_sync (cd), 0);
  assert_null (cdev_sim_death (cd));
  free (buf);
  cdev_close (cd);
}

/* A sync that dies with many blocks unsynced leaves them to the tear:
 * some survive and some do not (a sync that had settled them would make
 * all 64 survive).
 */
static void
test_cdev_sim_fail_at_op_tear (void **state)
{
  uint64_t seed = test_seed () | 1;
  struct cdev *cd = sim_ok (4 * MIB);
  unsigned i, kept = 0;

  print_message ("tear seed %" PRIu64 " (NBDCACHE_SEED)\n", seed);
  assert_int_equal (sim_write (cd, 0, 64, 1, 0), 0);
  assert_int_equal (cdev_sync (cd), 0);
  cdev_sim_fail_at_op (cd, cdev_sim_nr_ops (cd) + 65);
  for (i = 0; i < 64; i++)
    assert_int_equal (sim_write (cd, i, 1, 2, 0), 0);
  test_log_clear ();
  assert_int_equal (cdev_sync (cd), -EIO);
  assert_one_error ("sim", "sync");
  cdev_sim_crash (cd, seed);
  for (i = 0; i < 64; i++) {
    if (sim_has (cd, i, 1, 2))
      kept++;
    else
      assert_true (sim_has (cd, i, 1, 1));
  }
  if (kept == 0 || kept == 64)
    fprintf (stderr, "tear seed %" PRIu64 ": %u of 64 blocks kept\n", seed,
             kept);
  assert_true (kept > 0 && kept < 64);
  cdev_close (cd);
}

/* fail_at_op on a write: not applied, death "write"; and next to
 * fail_at_write, which still numbers writes only, the first reached
 * kills.
 */
static void
test_cdev_sim_fail_at_op_write (void **state)
{
  struct cdev *cd = sim_ok (4 * MIB);

  test_log_clear ();
  cdev_sim_fail_at_op (cd, 4);
  assert_int_equal (sim_write (cd, 0, 1, 1, 0), 0);             /* op 1 */
  assert_int_equal (cdev_sync (cd), 0);                         /* op 2 */
  assert_int_equal (cdev_sync (cd), 0);                         /* op 3 */
  assert_int_equal (sim_write (cd, 1, 1, 2, CDEV_FUA), -EIO);   /* op 4 */
  assert_one_error ("sim", "died at write 2, write-or-sync 4");
  assert_string_equal (cdev_sim_death (cd), "write");
  cdev_sim_crash (cd, 0);
  assert_true (sim_has (cd, 0, 1, 1));
  assert_true (sim_has (cd, 1, 1, 0));

  /* both armed: write 3 is op 5, before op 10 */
  cdev_sim_fail_at_write (cd, 3);
  cdev_sim_fail_at_op (cd, 10);
  assert_int_equal (sim_write (cd, 2, 1, 3, 0), 0);             /* w1 op 1 */
  assert_int_equal (cdev_sync (cd), 0);                         /* op 2 */
  assert_int_equal (sim_write (cd, 3, 1, 3, 0), 0);             /* w2 op 3 */
  assert_int_equal (cdev_sync (cd), 0);                         /* op 4 */
  assert_int_equal (sim_write (cd, 4, 1, 3, 0), -EIO);          /* w3 op 5 */
  assert_one_error ("sim", "died at write 3, write-or-sync 5");
  assert_string_equal (cdev_sim_death (cd), "write");
  cdev_sim_crash (cd, 0);

  /* both armed: op 3 (a sync) comes before write 5 */
  cdev_sim_fail_at_write (cd, 5);
  cdev_sim_fail_at_op (cd, 3);
  assert_int_equal (sim_write (cd, 2, 1, 4, 0), 0);             /* op 1 */
  assert_int_equal (sim_write (cd, 3, 1, 4, 0), 0);             /* op 2 */
  assert_int_equal (cdev_sync (cd), -EIO);                      /* op 3 */
  assert_one_error ("sim", "died at sync 1");
  assert_string_equal (cdev_sim_death (cd), "sync");
  cdev_sim_crash (cd, 0);
  assert_true (sim_has (cd, 2, 2, 3));

  /* n at or below the count already reached: the next write or sync
   * dies; 0 disarms
   */
  assert_int_equal (cdev_sync (cd), 0);
  cdev_sim_fail_at_op (cd, 1);
  assert_int_equal (cdev_sync (cd), -EIO);
  assert_one_error ("sim", "died at sync 2, write-or-sync 2");
  cdev_sim_crash (cd, 0);
  cdev_sim_fail_at_op (cd, 1);
  cdev_sim_fail_at_op (cd, 0);
  assert_int_equal (cdev_sync (cd), 0);
  assert_int_equal (sim_write (cd, 5, 1, 6, 0), 0);
  assert_null (cdev_sim_death (cd));
  cdev_close (cd);
}

/* Random runs of writes (some FUA) and syncs with a random death point
 * against a model of both images: the op that dies is exactly the nth,
 * of the kind recorded, and after the crash (or kill) the device holds
 * what the model says was durable (or written) before it.
 */
#define DEATH_BLOCKS 16
#define DEATH_OPS 24

static void
test_cdev_sim_fail_at_op_model (void **state)
{
  uint64_t seed = test_seed ();
  uint64_t rng = seed ^ 0xdea7;
  struct cdev *cd = sim_ok (DEATH_BLOCKS * BLK);
  unsigned trial, i, k;

  print_message ("fail_at_op model seed %" PRIu64 " (NBDCACHE_SEED)\n",
                 seed);
  for (trial = 0; trial < 500; trial++) {
    uint64_t cur[DEATH_BLOCKS], dur[DEATH_BLOCKS];
    uint64_t n = 1 + test_splitmix_next (&rng) % (DEATH_OPS + 2);
    bool kill = test_splitmix_next (&rng) % 2;
    const char *kind = NULL;

    /* a known durable start: every block tagged by the trial */
    for (i = 0; i < DEATH_BLOCKS; i++) {
      assert_int_equal (sim_write (cd, i, 1, trial * 100 + 1, 0), 0);
      cur[i] = dur[i] = trial * 100 + 1;
    }
    assert_int_equal (cdev_sync (cd), 0);
    cdev_sim_crash (cd, 0);
    cdev_sim_fail_at_op (cd, n);
    for (k = 1; k <= DEATH_OPS; k++) {
      bool sync = test_splitmix_next (&rng) % 3 == 0;
      bool fua = test_splitmix_next (&rng) % 4 == 0;
      uint64_t b = test_splitmix_next (&rng) % DEATH_BLOCKS;
      uint64_t tag = trial * 100 + 1 + k;
      int r = sync ? cdev_sync (cd)
        : sim_write (cd, b, 1, tag, fua ? CDEV_FUA : 0);

      if (k < n) {
        assert_int_equal (r, 0);
        if (sync)
          memcpy (dur, cur, sizeof dur);
        else {
          cur[b] = tag;
          if (fua)
            dur[b] = tag;
        }
        continue;
      }
      assert_int_equal (r, -EIO);
      if (k == n)
        kind = sync ? "sync" : "write";
    }
    assert_int_equal (cdev_sim_nr_ops (cd), DEATH_OPS);
    if (n <= DEATH_OPS) {
      assert_non_null (cdev_sim_death (cd));
      assert_string_equal (cdev_sim_death (cd), kind);
    }
    else
      assert_null (cdev_sim_death (cd));
    if (kill)
      cdev_sim_kill (cd);
    else
      cdev_sim_crash (cd, 0);
    for (i = 0; i < DEATH_BLOCKS; i++)
      if (!sim_has (cd, i, 1, kill ? cur[i] : dur[i])) {
        fprintf (stderr, "seed %" PRIu64 " trial %u (death at op %" PRIu64
                 ", %s): block %u is not tag %" PRIu64 "\n", seed, trial, n,
                 kill ? "kill" : "power loss", i, kill ? cur[i] : dur[i]);
        fail ();
      }
  }
  test_log_clear ();
  cdev_close (cd);
}

static void
test_cdev_sim_fail_once (void **state)
{
  struct cdev *cd = sim_ok (4 * MIB);
  unsigned char *buf = cdev_alloc_buffer (4 * BLK);

  assert_int_equal (sim_write (cd, 0, 16, 1, 0), 0);
  test_log_clear ();

  /* read fault on block 5 */
  cdev_sim_fail_read_once (cd, 5 * BLK, BLK);
  assert_int_equal (cdev_pread (cd, buf, 4 * BLK, BLK), 0);     /* 1..4 */
  assert_int_equal (cdev_pread (cd, buf, BLK, 6 * BLK), 0);     /* 6 */
  assert_int_equal (sim_write (cd, 5, 1, 2, 0), 0); /* writes unaffected */
  assert_int_equal (test_log_errors (), 0);
  assert_int_equal (cdev_pread (cd, buf, 4 * BLK, 4 * BLK), -EIO);
  assert_one_error ("sim", "offset 16384");
  assert_int_equal (cdev_pread (cd, buf, 4 * BLK, 4 * BLK), 0); /* once */
  assert_true (check_fill (buf + BLK, BLK, 5 * BLK, 2));

  /* write fault on bytes inside block 9: not applied */
  cdev_sim_fail_write_once (cd, 9 * BLK + 100, 1);
  assert_int_equal (cdev_pread (cd, buf, BLK, 9 * BLK), 0);     /* reads ok */
  assert_int_equal (sim_write (cd, 8, 1, 3, 0), 0);
  assert_int_equal (sim_write (cd, 10, 1, 3, 0), 0);
  assert_int_equal (sim_write (cd, 8, 2, 4, 0), -EIO);
  assert_one_error ("sim", "offset 32768");
  assert_true (sim_has (cd, 8, 1, 3));
  assert_true (sim_has (cd, 9, 1, 1));
  assert_int_equal (sim_write (cd, 8, 2, 4, 0), 0);
  assert_true (sim_has (cd, 8, 2, 4));
  /* the device is not dead */
  assert_int_equal (cdev_sync (cd), 0);

  /* a crash clears pending faults */
  cdev_sim_fail_read_once (cd, 0, BLK);
  cdev_sim_fail_write_once (cd, 0, BLK);
  cdev_sim_crash (cd, 0);
  assert_int_equal (cdev_pread (cd, buf, BLK, 0), 0);
  assert_int_equal (sim_write (cd, 0, 1, 5, 0), 0);
  free (buf);
  cdev_close (cd);
}

#define TEAR_BLOCKS 64

/* Which of TEAR_BLOCKS unsynced blocks survive a crash with seed. */
static uint64_t
tear_once (struct cdev *cd, uint64_t seed, unsigned *survived)
{
  uint64_t mask = 0;
  unsigned i;

  /* baseline tag 1 everywhere, durable; then tag 2 unsynced, in a
   * scattered order
   */
  assert_int_equal (sim_write (cd, 0, TEAR_BLOCKS, 1, 0), 0);
  assert_int_equal (cdev_sync (cd), 0);
  for (i = 0; i < TEAR_BLOCKS; i++)
    assert_int_equal (sim_write (cd, (i * 37) % TEAR_BLOCKS, 1, 2, 0), 0);
  cdev_sim_crash (cd, seed);
  *survived = 0;
  for (i = 0; i < TEAR_BLOCKS; i++) {
    if (sim_has (cd, i, 1, 2)) {
      mask |= UINT64_C (1) << i;
      ++*survived;
    }
    else
      assert_true (sim_has (cd, i, 1, 1));   /* whole old block */
  }
  /* what survived is durable now: another crash changes nothing */
  cdev_sim_crash (cd, 0);
  for (i = 0; i < TEAR_BLOCKS; i++)
    assert_true (sim_has (cd, i, 1, (mask >> i) & 1 ? 2 : 1));
  return mask;
}

static void
test_cdev_sim_tear (void **state)
{
  uint64_t seed = test_seed () | 1;
  struct cdev *cd = sim_ok (4 * MIB);
  struct cdev *cd2 = sim_ok (8 * MIB);
  unsigned n1, n2;
  uint64_t m1, m2;

  print_message ("tear seed %" PRIu64 " (NBDCACHE_SEED)\n", seed);
  m1 = tear_once (cd, seed, &n1);
  /* the same seed tears the same way on another device */
  m2 = tear_once (cd2, seed, &n2);
  if (m1 != m2 || n1 == 0 || n1 == TEAR_BLOCKS)
    fprintf (stderr, "seed %" PRIu64 ": masks %016" PRIx64 " %016" PRIx64
             ", %u survived\n", seed, m1, m2, n1);
  assert_true (m1 == m2);
  /* a mix (each block independently, p = 1/2: failing is a 2^-63 event) */
  assert_true (n1 > 0 && n1 < TEAR_BLOCKS);
  cdev_close (cd);
  cdev_close (cd2);
}

/* crash_sectors: every 512-byte sector of an unsynced block is either
 * all old or all new; some blocks mix both; what survived is durable;
 * the same seed tears the same way.
 */
static void
test_cdev_sim_tear_sectors (void **state)
{
  uint64_t seed = test_seed () | 1;
  unsigned char *buf = cdev_alloc_buffer (TEAR_BLOCKS * BLK);
  unsigned char *again = malloc (TEAR_BLOCKS * BLK);
  struct cdev *cd = sim_ok (4 * MIB);
  unsigned i, k, mixed = 0, pass;

  assert_non_null (again);
  print_message ("tear seed %" PRIu64 " (NBDCACHE_SEED)\n", seed);
  for (pass = 0; pass < 2; pass++) {
    assert_int_equal (sim_write (cd, 0, TEAR_BLOCKS, 1, 0), 0);
    assert_int_equal (cdev_sync (cd), 0);
    assert_int_equal (sim_write (cd, 0, TEAR_BLOCKS, 2, 0), 0);
    cdev_sim_crash_sectors (cd, seed);
    assert_int_equal (cdev_pread (cd, buf, TEAR_BLOCKS * BLK, 0), 0);
    if (pass == 1) {
      assert_memory_equal (buf, again, TEAR_BLOCKS * BLK);
      break;
    }
    memcpy (again, buf, TEAR_BLOCKS * BLK);
    for (i = 0; i < TEAR_BLOCKS; i++) {
      unsigned news = 0;

      for (k = 0; k < BLK / 512; k++) {
        size_t off = (size_t) i * BLK + k * 512;
        bool is_new = check_fill (buf + off, 512, off, 2);

        assert_true (is_new || check_fill (buf + off, 512, off, 1));
        news += is_new;
      }
      mixed += news > 0 && news < BLK / 512;
    }
    /* durable now */
    cdev_sim_crash (cd, 0);
    assert_int_equal (cdev_pread (cd, buf, TEAR_BLOCKS * BLK, 0), 0);
    assert_memory_equal (buf, again, TEAR_BLOCKS * BLK);
  }
  assert_true (mixed > 0);
  free (again);
  free (buf);
  cdev_close (cd);
}

static void
test_cdev_sim_counters (void **state)
{
  struct cdev *cd = sim_ok (4 * MIB);
  unsigned i;

  for (i = 0; i < 5; i++)
    assert_int_equal (sim_write (cd, i, 1, 1, i % 2 ? CDEV_FUA : 0), 0);
  assert_int_equal (cdev_sync (cd), 0);
  assert_int_equal (cdev_sync (cd), 0);
  assert_int_equal (cdev_discard (cd, BLK, 0), 0);      /* not a write */
  assert_int_equal (cdev_sim_nr_writes (cd), 5);
  assert_int_equal (cdev_sim_nr_syncs (cd), 2);
  assert_int_equal (cdev_sim_nr_ops (cd), 7);
  /* the write count is what fail_at_write numbers */
  cdev_sim_fail_at_write (cd, 7);
  assert_int_equal (sim_write (cd, 5, 1, 1, 0), 0);     /* 6 */
  assert_int_equal (sim_write (cd, 6, 1, 1, 0), -EIO);  /* 7 */
  assert_int_equal (cdev_sim_nr_writes (cd), 7);
  assert_int_equal (cdev_sim_nr_ops (cd), 9);
  cdev_sim_crash (cd, 0);
  assert_int_equal (cdev_sim_nr_writes (cd), 0);
  assert_int_equal (cdev_sim_nr_syncs (cd), 0);
  assert_int_equal (cdev_sim_nr_ops (cd), 0);
  cdev_close (cd);
}

static void
test_cdev_sim_poke_peek (void **state)
{
  struct cdev *cd = sim_ok (4 * MIB);
  unsigned char b = 0;
  unsigned char bytes[3] = { 0xde, 0xad, 0xbe };
  unsigned char got[3];

  assert_int_equal (sim_write (cd, 1, 1, 1, 0), 0);     /* unsynced */
  assert_int_equal (sim_write (cd, 2, 1, 1, CDEV_FUA), 0);
  /* flip a byte of a durable block: durable at once */
  cdev_sim_peek (cd, 2 * BLK + 17, &b, 1);
  b ^= 0xff;
  cdev_sim_poke (cd, 2 * BLK + 17, &b, 1);
  assert_false (sim_has (cd, 2, 1, 1));
  cdev_sim_crash (cd, 0);
  assert_false (sim_has (cd, 2, 1, 1));
  cdev_sim_peek (cd, 2 * BLK + 17, &got[0], 1);
  assert_int_equal (got[0], b);

  /* poke across a block boundary, unaligned */
  cdev_sim_poke (cd, 4 * BLK - 1, bytes, 3);
  cdev_sim_peek (cd, 4 * BLK - 1, got, 3);
  assert_memory_equal (got, bytes, 3);
  cdev_sim_crash (cd, 99);
  cdev_sim_peek (cd, 4 * BLK - 1, got, 3);
  assert_memory_equal (got, bytes, 3);
  assert_true (sim_has (cd, 1, 1, 0));  /* the unsynced write was lost */

  /* out of range: logged, no effect */
  test_log_clear ();
  cdev_sim_poke (cd, 4 * MIB - 1, bytes, 2);
  assert_one_error ("poke", NULL);
  cdev_sim_peek (cd, UINT64_MAX, got, 2);
  assert_one_error ("peek", NULL);
  cdev_close (cd);
}

static void
test_cdev_sim_range_errors (void **state)
{
  struct cdev *cd = sim_ok (16 * BLK);
  unsigned char *buf = cdev_alloc_buffer (2 * BLK);

  test_log_clear ();
  assert_int_equal (cdev_pread (cd, buf, BLK, 1), -EINVAL);
  assert_one_error ("sim", "offset 1");
  assert_int_equal (cdev_pwrite (cd, buf, 1, 0, 0), -EINVAL);
  assert_one_error ("sim", "count 1");
  assert_int_equal (cdev_pwrite (cd, buf, 2 * BLK, 15 * BLK, 0), -EINVAL);
  assert_one_error ("sim", "beyond the end");
  assert_int_equal (cdev_pread (cd, buf, BLK, UINT64_MAX - BLK + 1), -EINVAL);
  assert_one_error ("sim", NULL);
  assert_int_equal (cdev_discard (cd, BLK, 16 * BLK), -EINVAL);
  assert_one_error ("sim", "discard");
  assert_int_equal (cdev_pwrite (cd, buf + 16, BLK, 0, 0), -EINVAL);
  assert_one_error ("sim", "buffer");
  assert_int_equal (cdev_pread (cd, buf + 2048, BLK, 0), -EINVAL);
  assert_one_error ("sim", "buffer");
  assert_int_equal (cdev_sim_nr_writes (cd), 0);
  assert_int_equal (cdev_pread (cd, buf, 0, 16 * BLK), 0);
  free (buf);
  cdev_close (cd);
}

/* Crash tests call crash thousands of times on big devices: that must cost
 * only the blocks written since the last sync.
 */
static void
test_cdev_sim_many_crashes (void **state)
{
  struct cdev *cd = sim_ok (64 * MIB);
  unsigned i;

  for (i = 0; i < 5000; i++) {
    uint64_t b = (i * 7919) % (64 * MIB / BLK - 4);

    assert_int_equal (sim_write (cd, b, 4, i + 1, 0), 0);
    if (i % 3 == 0)
      assert_int_equal (cdev_sync (cd), 0);
    cdev_sim_crash (cd, i % 2 ? i : 0);
    if (i % 3 == 0)
      assert_true (sim_has (cd, b, 4, i + 1));
  }
  cdev_close (cd);
}

#define NR_THREADS 4
#define THREAD_BLOCKS 64

struct worker {
  pthread_t thread;
  struct cdev *cd;
  unsigned id;
  int failed;
};

static void *
worker_run (void *arg)
{
  struct worker *w = arg;
  unsigned char *buf = cdev_alloc_buffer (BLK);
  unsigned round, i;

  for (round = 1; round <= 20; round++) {
    for (i = 0; i < THREAD_BLOCKS; i++) {
      uint64_t off = ((uint64_t) i * NR_THREADS + w->id) * BLK;

      fill (buf, BLK, off, round);
      if (cdev_pwrite (w->cd, buf, BLK, off, 0) != 0 ||
          cdev_pread (w->cd, buf, BLK, off) != 0 ||
          !check_fill (buf, BLK, off, round))
        w->failed++;
    }
    if (cdev_sync (w->cd) != 0)
      w->failed++;
  }
  free (buf);
  return NULL;
}

static void
test_cdev_sim_threads (void **state)
{
  struct cdev *cd = sim_ok (NR_THREADS * THREAD_BLOCKS * BLK);
  struct worker w[NR_THREADS];
  unsigned i;

  for (i = 0; i < NR_THREADS; i++) {
    w[i] = (struct worker) { .cd = cd, .id = i };
    assert_int_equal (pthread_create (&w[i].thread, NULL, worker_run, &w[i]),
                      0);
  }
  for (i = 0; i < NR_THREADS; i++) {
    assert_int_equal (pthread_join (w[i].thread, NULL), 0);
    assert_int_equal (w[i].failed, 0);
  }
  assert_int_equal (cdev_sim_nr_writes (cd),
                    NR_THREADS * THREAD_BLOCKS * 20);
  assert_int_equal (cdev_sim_nr_syncs (cd), NR_THREADS * 20);
  assert_int_equal (cdev_sim_nr_ops (cd),
                    NR_THREADS * THREAD_BLOCKS * 20 + NR_THREADS * 20);
  /* every thread synced after its last round */
  cdev_sim_crash (cd, 0);
  assert_true (sim_has (cd, 0, NR_THREADS * THREAD_BLOCKS, 20));
  cdev_close (cd);
}

/* Random operations against a model of the two images (a tag per block). */
#define MODEL_BLOCKS 256

static void
test_cdev_sim_model (void **state)
{
  uint64_t seed = test_seed ();
  uint64_t rng = seed;
  uint64_t cur[MODEL_BLOCKS] = { 0 }, dur[MODEL_BLOCKS] = { 0 };
  struct cdev *cd = sim_ok (MODEL_BLOCKS * BLK);
  unsigned char *buf = cdev_alloc_buffer (8 * BLK);
  unsigned step, i;

  print_message ("model seed %" PRIu64 " (NBDCACHE_SEED)\n", seed);
  for (step = 0; step < 3000; step++) {
    unsigned op = test_splitmix_next (&rng) % 100;
    uint64_t n = 1 + test_splitmix_next (&rng) % 8;
    uint64_t b = test_splitmix_next (&rng) % (MODEL_BLOCKS - n + 1);

    if (op < 55) {
      bool fua = test_splitmix_next (&rng) % 4 == 0;
      uint64_t tag = step + 1;

      /* tag blocks independently so a block identifies its write */
      for (i = 0; i < n; i++)
        fill (buf + i * BLK, BLK, (b + i) * BLK, tag);
      assert_int_equal (cdev_pwrite (cd, buf, n * BLK, b * BLK,
                                     fua ? CDEV_FUA : 0), 0);
      for (i = 0; i < n; i++) {
        cur[b + i] = tag;
        if (fua)
          dur[b + i] = tag;
      }
    }
    else if (op < 70) {
      assert_int_equal (cdev_discard (cd, n * BLK, b * BLK), 0);
      for (i = 0; i < n; i++)
        cur[b + i] = 0;
    }
    else if (op < 85) {
      assert_int_equal (cdev_sync (cd), 0);
      memcpy (dur, cur, sizeof dur);
    }
    else if (op < 95) {
      assert_int_equal (cdev_pread (cd, buf, n * BLK, b * BLK), 0);
      for (i = 0; i < n; i++)
        if (!(cur[b + i] ? check_fill (buf + i * BLK, BLK, (b + i) * BLK,
                                       cur[b + i])
              : all_zero (buf + i * BLK, BLK))) {
          fprintf (stderr, "seed %" PRIu64 " step %u: block %" PRIu64
                   " is not tag %" PRIu64 "\n", seed, step, b + i,
                   cur[b + i]);
          fail ();
        }
    }
    else {
      cdev_sim_crash (cd, 0);
      memcpy (cur, dur, sizeof cur);
    }
  }
  for (i = 0; i < MODEL_BLOCKS; i++)
    if (!sim_has (cd, i, 1, cur[i])) {
      fprintf (stderr, "seed %" PRIu64 ": final block %u is not tag %"
               PRIu64 "\n", seed, i, cur[i]);
      fail ();
    }
  free (buf);
  cdev_close (cd);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_cdev_sim_create),
    cmocka_unit_test (test_cdev_sim_durability),
    cmocka_unit_test (test_cdev_sim_discard),
    cmocka_unit_test (test_cdev_sim_fail_at_write),
    cmocka_unit_test (test_cdev_sim_fail_at_op_sync),
    cmocka_unit_test (test_cdev_sim_fail_at_op_tear),
    cmocka_unit_test (test_cdev_sim_fail_at_op_write),
    cmocka_unit_test (test_cdev_sim_fail_at_op_model),
    cmocka_unit_test (test_cdev_sim_fail_once),
    cmocka_unit_test (test_cdev_sim_tear),
    cmocka_unit_test (test_cdev_sim_tear_sectors),
    cmocka_unit_test (test_cdev_sim_counters),
    cmocka_unit_test (test_cdev_sim_poke_peek),
    cmocka_unit_test (test_cdev_sim_range_errors),
    cmocka_unit_test (test_cdev_sim_many_crashes),
    cmocka_unit_test (test_cdev_sim_threads),
    cmocka_unit_test (test_cdev_sim_model),
  };

  test_log_capture ();
  log_set_ratelimit (false);    /* the tests expect one error per failure */
  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
