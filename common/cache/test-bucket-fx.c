/* SPDX-License-Identifier: BSD-3-Clause */
/* test-bucket-fx.c — the bucket tests' fixture (test-bucket-fx.h).
 *
 * WHAT: a simulated device with a hand-built superblock, a fake journal
 * whose flush commits (calling bucket_journal_committed), and checks of
 * the set's state counts.
 * WHY: both bucket test programs start from the same device.
 * INVARIANTS: the fake journal's committed seq only grows.
 * THREADS AND LOCKS: the fake journal's flush may run in any thread.
 * FAILURE: setup failures fail the test.
 * NOT HERE: the tests (test-bucket.c, test-bucket-alloc.c).
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

#define BUCKET_INTERNALS
#include "csum.h"
#include "bucket.h"
#include "cdev.h"
#include "compiler.h"
#include "log.h"
#include "testkit.h"
#include "ondisk.h"
#include "super.h"

#include "test-bucket-fx.h"

uint64_t seed;

static uint64_t
fake_open_seq (void *opaque)
{
  struct fx *fx = opaque;

  return __atomic_load_n (&fx->open_seq, __ATOMIC_RELAXED);
}

static int
fake_flush (void *opaque)
{
  struct fx *fx = opaque;
  uint64_t durable;
  int r;

  if (pthread_mutex_trylock (&fx->bs->lock) != 0)
    fx->flush_saw_lock_held = true;
  else
    pthread_mutex_unlock (&fx->bs->lock);
  fx->flushes++;
  if ((r = fx->flush_error) != 0) {
    fx->flush_error = 0;
    return r;
  }
  durable = __atomic_fetch_add (&fx->open_seq, 1, __ATOMIC_RELAXED);
  bucket_journal_committed (fx->bs, durable);
  return 0;
}

void
make_sb (struct nc_sb *sb, uint32_t nbuckets, uint64_t uuid_seed)
{
  unsigned i;

  memset (sb, 0, sizeof *sb);
  sb->magic = NC_SB_MAGIC;
  sb->version = NC_FORMAT_VERSION;
  sb->block_bytes = NC_BLOCK_BYTES;
  sb->seq = 1;
  for (i = 0; i < sizeof sb->uuid; i++)
    sb->uuid[i] = (uint8_t) ((uuid_seed >> (8 * (i % 8))) + i * 31);
  sb->bucket_blocks = BUCKET_BLOCKS;
  sb->nbuckets = nbuckets;
  sb->device_bytes = (uint64_t) nbuckets * BUCKET_BLOCKS * NC_BLOCK_BYTES;
  sb->journal_first = 1;
  sb->journal_buckets = 2;
  sb->prio_first = PRIO_FIRST;
  sb->prio_buckets = 1;
  sb->data_first = DATA_FIRST;
  sb->csum = nc_csum (sb, sizeof *sb);
}

const struct bucket_hooks *
fx_hooks (struct fx *fx)
{
  static __thread struct bucket_hooks h;

  h.opaque = fx;
  h.journal_open_seq = fake_open_seq;
  h.journal_flush = fake_flush;
  return &h;
}

/* A bucket set over the device as recovery leaves it: prios read, marks
 * done (nothing reachable: every data bucket EMPTY).
 */
void
fx_attach (struct fx *fx)
{
  assert_int_equal (bucket_set_create (fx->cd, &fx->sb, fx_hooks (fx),
                                       &fx->bs), 0);
  assert_int_equal (prio_read (fx->bs), 0);
  bucket_mark_begin (fx->bs);
  bucket_mark_done (fx->bs);
}

void
fx_open (struct fx *fx)
{
  memset (fx, 0, sizeof *fx);
  fx->open_seq = 1;
  make_sb (&fx->sb, NBUCKETS, seed);
  assert_int_equal (cdev_sim_create ((uint64_t) NBUCKETS * BUCKET_BLOCKS *
                                     NC_BLOCK_BYTES, &fx->cd), 0);
  assert_int_equal (prio_format (fx->cd, &fx->sb), 0);
  assert_int_equal (cdev_sync (fx->cd), 0);
  fx_attach (fx);
  test_log_clear ();
}

void
fx_detach (struct fx *fx)
{
  bucket_set_destroy (fx->bs);
  fx->bs = NULL;
}

void
fx_close (struct fx *fx)
{
  fx_detach (fx);
  cdev_close (fx->cd);
}

uint64_t
copy_offset (int copy)
{
  return (uint64_t) (PRIO_FIRST + copy) * BUCKET_BLOCKS * NC_BLOCK_BYTES;
}

void
flip_byte (struct cdev *cd, uint64_t offset)
{
  uint8_t c;

  cdev_sim_peek (cd, offset, &c, 1);
  c ^= 0x40;
  cdev_sim_poke (cd, offset, &c, 1);
}

struct nc_key
key_for (const struct bucket_extent *e, uint64_t end, uint8_t flags)
{
  struct nc_key k = {
    .end = end, .size = e->nblocks, .bucket = e->bucket, .offset = e->offset,
    .export_id = 1, .flags = flags, .gen = e->gen,
  };
  return k;
}

struct bucket_usage
usage (struct bucket_set *bs)
{
  struct bucket_usage u;

  bucket_get_usage (bs, &u);
  return u;
}

void
check_state_counts (struct bucket_set *bs)
{
  struct bucket_usage u = usage (bs);
  uint32_t n[BUCKET_BTREE + 1] = { 0 }, i;

  assert_int_equal (u.free + u.empty + u.pending + u.open + u.data + u.btree,
                    NDATA);
  for (i = DATA_FIRST; i < NBUCKETS; i++)
    n[bucket_state_of (bs, i)]++;
  assert_int_equal (n[BUCKET_META], 0);
  assert_int_equal (n[BUCKET_FREE], u.free);
  assert_int_equal (n[BUCKET_EMPTY], u.empty);
  assert_int_equal (n[BUCKET_PENDING], u.pending);
  assert_int_equal (n[BUCKET_OPEN], u.open);
  assert_int_equal (n[BUCKET_DATA], u.data);
  assert_int_equal (n[BUCKET_BTREE], u.btree);
  for (i = 0; i < DATA_FIRST; i++)
    assert_int_equal (bucket_state_of (bs, i), BUCKET_META);
}

/* Allocate a whole bucket from wp and store one key over it. */
struct bucket_extent
fill_bucket (struct fx *fx, enum bucket_wp wp, uint8_t flags, uint64_t end)
{
  struct bucket_extent e;
  struct nc_key k;

  assert_int_equal (bucket_alloc_data (fx->bs, wp, BUCKET_BLOCKS, &e), 0);
  assert_int_equal (e.offset, 0);
  assert_int_equal (e.nblocks, BUCKET_BLOCKS);
  k = key_for (&e, end, flags);
  bucket_account (fx->bs, &k, +1);
  bucket_put_open (fx->bs, e.bucket);
  assert_int_equal (bucket_state_of (fx->bs, e.bucket), BUCKET_DATA);
  return e;
}
