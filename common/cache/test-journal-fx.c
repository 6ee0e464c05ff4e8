/* SPDX-License-Identifier: BSD-3-Clause */
/* test-journal-fx.c — the journal tests' fixture (test-journal-fx.h).
 *
 * WHAT: a faulty wrapper over the sim device (fail the n-th sync, then
 * die), the fake btree behind the journal's hooks (the model of what was
 * journaled), and an environment that opens, crashes and replays them.
 * WHY: both journal programs check replay against the same model.
 * INVARIANTS: the fake's model holds every key journal_add accepted, with
 * its seq.
 * THREADS AND LOCKS: the fake has its own mutex; hooks run in the
 * journal's threads.
 * FAILURE: setup failures fail the test.
 * NOT HERE: the tests (test-journal-commit.c, test-journal-replay.c).
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

#include "csum.h"
#include "cdev.h"
#include "journal.h"
#include "journal-internal.h"
#include "log.h"
#include "testkit.h"
#include "ondisk.h"
#include "super.h"
#include "test-journal-fx.h"

/* Keys per entry for a ring (journal.c: min(64, ring / 8) blocks). */
uint32_t
kpe_for (uint32_t ring_blocks)
{
  uint32_t b = ring_blocks / 8 < JOURNAL_MAX_ENTRY_BLOCKS
    ? ring_blocks / 8 : JOURNAL_MAX_ENTRY_BLOCKS;

  return keys_in_blocks (NC_JENTRY_VERSION, b);
}
uint64_t seed;

uint64_t
now_ns (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

/* ---- captured log messages ---- */

bool
error_logged (const char *needle)
{
  bool r;

  r = strstr (test_log_last_error (), needle) != NULL;
  return r;
}

bool
faulty_dead (struct faulty *f)
{
  bool d;

  pthread_mutex_lock (&f->lock);
  d = f->dead;
  pthread_mutex_unlock (&f->lock);
  return d;
}

static int
faulty_pread (struct cdev *cd, void *buf, size_t count, uint64_t offset)
{
  struct faulty *f = (struct faulty *) cd;

  return faulty_dead (f) ? -EIO : cdev_pread (f->inner, buf, count, offset);
}

static int
faulty_pwrite (struct cdev *cd, const void *buf, size_t count,
               uint64_t offset, uint32_t flags)
{
  struct faulty *f = (struct faulty *) cd;

  return faulty_dead (f) ? -EIO
    : cdev_pwrite (f->inner, buf, count, offset, flags);
}

static int
faulty_sync (struct cdev *cd)
{
  struct faulty *f = (struct faulty *) cd;
  bool fail;

  pthread_mutex_lock (&f->lock);
  f->nsyncs++;
  if (f->fail_sync_at != 0 && f->nsyncs >= f->fail_sync_at)
    f->dead = true;
  fail = f->dead;
  pthread_mutex_unlock (&f->lock);
  return fail ? -EIO : cdev_sync (f->inner);
}

static int
faulty_discard (struct cdev *cd, uint64_t count, uint64_t offset)
{
  struct faulty *f = (struct faulty *) cd;

  return faulty_dead (f) ? -EIO : cdev_discard (f->inner, count, offset);
}

static void
faulty_close (struct cdev *cd)
{
  struct faulty *f = (struct faulty *) cd;

  pthread_mutex_destroy (&f->lock);
  free (f);
}
const struct cdev_ops faulty_ops = {
  .name = "faulty",
  .pread = faulty_pread,
  .pwrite = faulty_pwrite,
  .sync = faulty_sync,
  .discard = faulty_discard,
  .close = faulty_close,
};

static struct faulty *
faulty_create (struct cdev *inner)
{
  struct faulty *f = calloc (1, sizeof *f);

  assert_non_null (f);
  f->head.ops = &faulty_ops;
  f->head.path = inner->path;
  f->head.size_bytes = inner->size_bytes;
  f->inner = inner;
  pthread_mutex_init (&f->lock, NULL);
  return f;
}

/* Fail the n-th sync from now (1 = the next), and every I/O after it. */
void
faulty_fail_sync (struct faulty *f, uint64_t n)
{
  pthread_mutex_lock (&f->lock);
  f->fail_sync_at = f->nsyncs + n;
  pthread_mutex_unlock (&f->lock);
}

static void
faulty_revive (struct faulty *f)
{
  pthread_mutex_lock (&f->lock);
  f->fail_sync_at = 0;
  f->dead = false;
  pthread_mutex_unlock (&f->lock);
}

static int
fake_close (void *opaque, struct journal *j)
{
  struct fake *f = opaque;
  uint64_t pin;
  int r;

  pthread_mutex_lock (&f->lock);
  pin = f->written < f->nrecs ? f->recs[f->written].seq : UINT64_MAX;
  r = journal_close_entry_locked (j, &f->lock, &f->root, f->level, pin);
  pthread_mutex_unlock (&f->lock);
  return r;
}

static int
fake_reclaim (void *opaque, uint64_t seq)
{
  struct fake *f = opaque;
  int r;

  pthread_mutex_lock (&f->lock);
  f->nreclaims++;
  f->last_reclaim = seq;
  r = f->reclaim_result;
  if (r == 0)
    while (f->written < f->nrecs && f->recs[f->written].seq < seq)
      f->written++;
  if (f->arm_on_reclaim) {
    /* The write that follows: pre-flush ok, its sync dies. */
    faulty_fail_sync (f->fy, 2);
    f->arm_on_reclaim = false;
    f->armed_fired++;
  }
  pthread_mutex_unlock (&f->lock);
  return r;
}

static int
fake_pre_write (void *opaque)
{
  struct fake *f = opaque;
  int r;

  pthread_mutex_lock (&f->lock);
  r = f->pre_write_result;
  f->pre_write_thread = pthread_self ();
  if (f->pre_gate_armed) {
    f->pre_gate_hits++;
    pthread_cond_broadcast (&f->cond);
    while (f->pre_gate_armed)
      pthread_cond_wait (&f->cond, &f->lock);
  }
  pthread_mutex_unlock (&f->lock);
  return r;
}

static void
fake_committed (void *opaque, uint64_t durable_seq)
{
  struct fake *f = opaque;

  pthread_mutex_lock (&f->lock);
  if (durable_seq <= f->committed_seq)
    f->bad_committed++;
  f->committed_seq = durable_seq;
  f->ncommitted++;
  if (f->gate_armed) {
    f->gate_hits++;
    pthread_cond_broadcast (&f->cond);
    while (f->gate_armed)
      pthread_cond_wait (&f->cond, &f->lock);
  }
  pthread_cond_broadcast (&f->cond);
  pthread_mutex_unlock (&f->lock);
}

void
fake_make_keys (struct fake *f, struct nc_key *keys, size_t n)
{
  size_t i;

  for (i = 0; i < n; i++) {
    f->next_end++;
    memset (&keys[i], 0, sizeof keys[i]);
    keys[i].end = f->next_end * 8;
    keys[i].size = 1 + f->next_end % 7;
    keys[i].bucket = 10 + f->next_end % 1000;
    keys[i].export_id = 1 + f->next_end % 3;
    keys[i].flags = f->next_end % 5 == 0 ? NC_KEY_DELETE : NC_KEY_DIRTY;
    keys[i].gen = f->next_end;
  }
}

void
fake_record (struct fake *f, const struct nc_key *k, uint64_t seq)
{
  if (f->nrecs == f->cap) {
    f->cap = f->cap ? f->cap * 2 : 1024;
    f->recs = realloc (f->recs, f->cap * sizeof *f->recs);
    assert_non_null (f->recs);
  }
  assert_true (f->nrecs == 0 || seq >= f->recs[f->nrecs - 1].seq);
  f->recs[f->nrecs].k = *k;
  f->recs[f->nrecs].seq = seq;
  f->nrecs++;
}

/* Journal n new keys one journal_add each (as inserts would, under the
 * btree lock), so the model knows each key's entry; returns the last seq.
 */
uint64_t
fake_add (struct fake *f, size_t n)
{
  struct nc_key k;
  uint64_t seq = 0;
  size_t i;

  pthread_mutex_lock (&f->lock);
  for (i = 0; i < n; i++) {
    fake_make_keys (f, &k, 1);
    seq = journal_add (f->j, &k, 1);
    assert_true (seq >= journal_open_seq (f->j));
    fake_record (f, &k, seq);
  }
  pthread_mutex_unlock (&f->lock);
  return seq;
}

/* Journal n keys with one journal_add.  The open entry must be empty (the
 * caller flushed and nobody else adds): key i then lands in entry
 * open_seq + i / kpe, and the returned seq is the last key's.
 */
uint64_t
fake_add_bulk (struct fake *f, size_t n, uint32_t kpe)
{
  struct nc_key *keys = calloc (n, sizeof *keys);
  uint64_t seq, open;
  size_t i;

  assert_non_null (keys);
  pthread_mutex_lock (&f->lock);
  fake_make_keys (f, keys, n);
  open = journal_open_seq (f->j);
  seq = journal_add (f->j, keys, n);
  assert_int_equal (seq, open + (n - 1) / kpe);
  for (i = 0; i < n; i++)
    fake_record (f, &keys[i], open + i / kpe);
  pthread_mutex_unlock (&f->lock);
  free (keys);
  return seq;
}

int
collect (void *opaque, const struct nc_key *k, uint64_t seq)
{
  struct got *g = opaque;

  if (g->len == g->cap) {
    g->cap = g->cap ? g->cap * 2 : 1024;
    g->k = realloc (g->k, g->cap * sizeof *g->k);
    g->seq = realloc (g->seq, g->cap * sizeof *g->seq);
    assert_non_null (g->k);
    assert_non_null (g->seq);
  }
  g->k[g->len] = *k;
  g->seq[g->len] = seq;
  g->len++;
  return 0;
}

static void
got_free (struct got *g)
{
  free (g->k);
  free (g->seq);
  memset (g, 0, sizeof *g);
}

static void
start_journal (struct env *e)
{
  const struct journal_hooks hooks = {
    .opaque = &e->f,
    .close_entry = fake_close,
    .reclaim = fake_reclaim,
    .pre_write = fake_pre_write,
    .committed = fake_committed,
  };

  assert_int_equal (journal_start (e->j, e->delay_ms, &hooks), 0);
}

/* After a replay into g (chain first_seq .. last_seq from journal_check):
 * the replayed keys are exactly the model's keys of those entries, in
 * order, each with its entry's seq; every older key is in a node; keys of
 * later entries (never durable) leave the model.
 */
static void
model_check (struct env *e, const struct got *g,
             const struct journal_check_info *info)
{
  struct fake *f = &e->f;
  size_t i, k = 0;

  assert_int_equal (g->len, info->nkeys);
  for (i = 0; i < f->nrecs; i++) {
    if (f->recs[i].seq < info->first_seq) {
      assert_true (i < f->written);
      continue;
    }
    if (f->recs[i].seq > info->last_seq)
      break;
    assert_true (k < g->len);
    assert_memory_equal (&f->recs[i].k, &g->k[k], sizeof g->k[k]);
    assert_int_equal (f->recs[i].seq, g->seq[k]);
    k++;
  }
  assert_int_equal (k, g->len);
  f->nrecs = i;
  if (f->written > f->nrecs)
    f->written = f->nrecs;
}

static void
env_open_journal (struct env *e)
{
  struct nc_key root;
  uint16_t level;
  struct got g = { 0 };
  struct journal_check_info info;

  assert_int_equal (journal_create (&e->fy->head, &e->sb, &e->j), 0);
  assert_int_equal (journal_check (&e->fy->head, &e->sb, &info), 0);
  assert_int_equal (journal_replay (e->j, collect, &g, &root, &level), 0);
  assert_int_equal (journal_durable_seq (e->j), info.last_seq);
  assert_int_equal (journal_open_seq (e->j), info.last_seq + 1);
  if (info.last_seq == 1) {
    /* Only the format entry: the empty tree. */
    assert_int_equal (root.size, 0);
    assert_int_equal (level, 0);
  }
  else {
    assert_memory_equal (&root, &e->f.root, sizeof root);
    assert_int_equal (level, e->f.level);
  }
  model_check (e, &g, &info);
  got_free (&g);
  pthread_mutex_lock (&e->f.lock);
  e->f.j = e->j;
  e->f.committed_seq = info.last_seq;
  pthread_mutex_unlock (&e->f.lock);
  start_journal (e);
}

void
env_init (struct env *e, uint32_t journal_buckets, unsigned delay_ms)
{
  uint64_t s;
  unsigned i;

  memset (e, 0, sizeof *e);
  e->rng = seed;
  s = test_splitmix_next (&e->rng);
  e->delay_ms = delay_ms;
  e->sb.magic = NC_SB_MAGIC;
  e->sb.version = NC_FORMAT_VERSION;
  e->sb.block_bytes = NC_BLOCK_BYTES;
  e->sb.bucket_blocks = BUCKET_BLOCKS;
  e->sb.journal_first = 1;
  e->sb.journal_buckets = journal_buckets;
  e->sb.nbuckets = 1 + journal_buckets + 2;
  for (i = 0; i < sizeof e->sb.uuid; i++)
    e->sb.uuid[i] = test_splitmix_next (&s);
  e->ring_blocks = journal_buckets * BUCKET_BLOCKS;
  e->ring_offset = (uint64_t) BUCKET_BLOCKS * NC_BLOCK_BYTES;

  assert_int_equal (cdev_sim_create ((uint64_t) e->sb.nbuckets *
                                     BUCKET_BLOCKS * NC_BLOCK_BYTES,
                                     &e->sim), 0);
  e->fy = faulty_create (e->sim);
  assert_int_equal (journal_format (e->sim, &e->sb), 0);
  assert_int_equal (cdev_sync (e->sim), 0);

  pthread_mutex_init (&e->f.lock, NULL);
  pthread_cond_init (&e->f.cond, NULL);
  e->f.fy = e->fy;
  e->f.root.end = 77;
  e->f.root.size = 1;
  e->f.root.bucket = 5;
  e->f.level = 1;
  /* The format entry has an empty root. */
  {
    struct nc_key root;
    uint16_t level;
    struct got g = { 0 };

    assert_int_equal (journal_create (&e->fy->head, &e->sb, &e->j), 0);
    assert_int_equal (journal_replay (e->j, collect, &g, &root, &level), 0);
    assert_int_equal (g.len, 0);
    assert_int_equal (root.size, 0);
    e->f.j = e->j;
    e->f.committed_seq = 1;
    start_journal (e);
  }
  test_log_clear ();
}

/* Power loss: the journal goes away without a commit, unsynced writes are
 * lost (or torn with tear_seed: inside blocks, by 512-byte sectors, when
 * its bit 1 is set), then a new journal replays and runs.
 */
void
env_crash (struct env *e, uint64_t tear_seed)
{
  journal_destroy (e->j);
  e->j = NULL;
  if (tear_seed & 2)
    cdev_sim_crash_sectors (e->sim, tear_seed);
  else
    cdev_sim_crash (e->sim, tear_seed);
  faulty_revive (e->fy);
  env_open_journal (e);
}

void
env_free (struct env *e)
{
  assert_int_equal (e->f.bad_committed, 0);
  journal_destroy (e->j);
  cdev_close (&e->fy->head);
  cdev_close (e->sim);
  free (e->f.recs);
  pthread_cond_destroy (&e->f.cond);
  pthread_mutex_destroy (&e->f.lock);
}

/* Ring block of the valid entry with seq, and its length; false if none. */
bool
find_entry (struct env *e, uint64_t seq, uint32_t *pos, uint32_t *nblocks)
{
  static unsigned char buf[JOURNAL_MAX_ENTRY_BLOCKS * NC_BLOCK_BYTES];
  static unsigned char payload[JOURNAL_MAX_ENTRY_BLOCKS * NC_BLOCK_BYTES];
  const struct nc_jentry *je = (const void *) buf;
  const struct nc_jentry *pe = (const void *) payload;
  uint32_t b, bad;

  for (b = 0; b < e->ring_blocks; b++) {
    cdev_sim_peek (e->sim, e->ring_offset + (uint64_t) b * NC_BLOCK_BYTES,
                   buf, NC_BLOCK_BYTES);
    if (je->magic != NC_JOURNAL_MAGIC || je->seq != seq ||
        memcmp (je->uuid, e->sb.uuid, 16) != 0 || je->nblocks == 0 ||
        je->nblocks > e->ring_blocks - b)
      continue;
    cdev_sim_peek (e->sim, e->ring_offset + (uint64_t) b * NC_BLOCK_BYTES,
                   buf, (size_t) je->nblocks * NC_BLOCK_BYTES);
    if (!jentry_payload (buf, je->nblocks, jstamp_seed (e->sb.uuid),
                         payload, &bad) ||
        pe->csum != nc_csum (pe, sizeof *pe + (size_t) pe->nkeys * 32 +
                             (pe->version == NC_JENTRY_VERSION_INLINE
                              ? jentry_inline_bytes (pe->keys, pe->nkeys)
                              : 0)))
      continue;
    *pos = b;
    *nblocks = je->nblocks;
    return true;
  }
  return false;
}

void
flip_byte (struct env *e, uint64_t offset)
{
  unsigned char c;

  cdev_sim_peek (e->sim, offset, &c, 1);
  c ^= 0x5a;
  cdev_sim_poke (e->sim, offset, &c, 1);
}

/* Sector `sec` of the entry at ring block pos reads as it did in `old`
 * (a snapshot of the whole ring): that sector of the write never reached
 * the medium.
 */
void
tear_sector (struct env *e, const unsigned char *old, uint32_t pos,
             uint32_t sec)
{
  uint64_t off = (uint64_t) pos * NC_BLOCK_BYTES
    + (uint64_t) sec * NC_JSECTOR_BYTES;

  cdev_sim_poke (e->sim, e->ring_offset + off, old + off, NC_JSECTOR_BYTES);
}
