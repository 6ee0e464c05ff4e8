/* SPDX-License-Identifier: BSD-3-Clause */
/* test-journal.c — unit tests for the journal (journal.h, journal.c).
 *
 * WHAT: format and replay of an empty journal; keys replayed in order
 * across many entries and writes; group commit; the delay commit without
 * a waiter; a torn last write (crash between the entry pwrite and its
 * sync, random tears) falls back to the previous chain; a batch whose
 * first entry is torn falls back and the ring is reused correctly
 * afterwards; a corrupt entry in the middle of the chain is -EBADMSG; a
 * foreign uuid is ignored; an I/O error fails the waiter with -EIO and the
 * keys are committed by the next commit; stop commits what is open;
 * throttle; many wraps of a small ring with reclaim, crashes and replays.
 * HOW: the simulated cache device (cdev_sim_*), under a thin "faulty"
 * wrapper that can fail the n-th sync and then every I/O (a device that
 * dies between the entry pwrite and its sync).  A fake btree stands for
 * the hooks: it records every key it journals with the seq journal_add
 * returned (the model), computes the oldest pin as the seq of the oldest
 * key not yet "written to a node", and reclaim marks keys written.  After
 * a crash, replay must return exactly the model's keys of the chosen
 * chain, in order, and every older key must have been written.
 * SEED: randomised tests print their seed; NBDCACHE_SEED overrides it.
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

#include "cdev.h"
#include "csum.h"
#include "journal.h"
#include "log.h"
#include "ondisk.h"
#include "super.h"

#define BUCKET_BLOCKS 16u
#define LONG_DELAY_MS 100000u   /* only explicit waits commit */
#define BOUND_NS (UINT64_C (20) * 1000000000u) /* no test waits longer */

/* Keys per entry for a ring (journal.c: min(64, ring / 8) blocks). */
static uint32_t
kpe_for (uint32_t ring_blocks)
{
  uint32_t b = ring_blocks / 8 < JOURNAL_MAX_ENTRY_BLOCKS
    ? ring_blocks / 8 : JOURNAL_MAX_ENTRY_BLOCKS;

  return (b * NC_BLOCK_BYTES - sizeof (struct nc_jentry))
    / sizeof (struct nc_key);
}

/* ---- seed and PRNG ---- */

static uint64_t seed;

static uint64_t
splitmix (uint64_t *s)
{
  uint64_t z = (*s += UINT64_C (0x9e3779b97f4a7c15));

  z = (z ^ (z >> 30)) * UINT64_C (0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C (0x94d049bb133111eb);
  return z ^ (z >> 31);
}

static uint64_t
now_ns (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

/* ---- captured log messages ---- */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char last_error[1024];
static unsigned nr_log_errors;

static void
capture_log (enum log_level level, const char *msg)
{
  pthread_mutex_lock (&log_lock);
  if (level == LOG_LEVEL_ERROR) {
    snprintf (last_error, sizeof last_error, "%s", msg);
    nr_log_errors++;
  }
  if (getenv ("NBDCACHE_TEST_VERBOSE"))
    fprintf (stderr, "log: %s\n", msg);
  pthread_mutex_unlock (&log_lock);
}

static void
reset_log (void)
{
  pthread_mutex_lock (&log_lock);
  last_error[0] = '\0';
  nr_log_errors = 0;
  pthread_mutex_unlock (&log_lock);
}

static bool
error_logged (const char *needle)
{
  bool r;

  pthread_mutex_lock (&log_lock);
  r = strstr (last_error, needle) != NULL;
  pthread_mutex_unlock (&log_lock);
  return r;
}

/* ---- a faulty wrapper over the sim: fail the n-th sync, then die ---- */

struct faulty {
  struct cdev head;             /* first */
  struct cdev *inner;
  pthread_mutex_t lock;
  uint64_t nsyncs;
  uint64_t fail_sync_at;        /* 0 = never */
  bool dead;
};

static bool
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

static const struct cdev_ops faulty_ops = {
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
static void
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

/* ---- the fake btree behind the hooks ---- */

struct rec {
  struct nc_key k;
  uint64_t seq;                 /* what journal_add returned */
};

struct fake {
  pthread_mutex_t lock;         /* "the btree lock" */
  pthread_cond_t cond;          /* committed, gate */
  struct journal *j;
  struct nc_key root;
  uint16_t level;
  struct rec *recs;
  size_t nrecs, cap;
  size_t written;               /* recs[0 .. written) are in nodes */
  uint64_t next_end;
  unsigned nreclaims;
  uint64_t last_reclaim;
  int reclaim_result;
  uint64_t committed_seq;
  unsigned ncommitted;
  unsigned bad_committed;       /* durable seq went backwards */
  bool gate_armed;              /* the committed hook blocks while set */
  unsigned gate_hits;
  struct faulty *fy;            /* the device, for arm_on_reclaim */
  bool arm_on_reclaim;          /* next reclaim: the write after it dies */
  unsigned armed_fired;
};

static int
fake_close (void *opaque, struct journal *j)
{
  struct fake *f = opaque;
  uint64_t pin;
  int r;

  pthread_mutex_lock (&f->lock);
  pin = f->written < f->nrecs ? f->recs[f->written].seq : UINT64_MAX;
  r = journal_close_entry_locked (j, &f->root, f->level, pin);
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

static void
make_keys (struct fake *f, struct nc_key *keys, size_t n)
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

static void
record (struct fake *f, const struct nc_key *k, uint64_t seq)
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
static uint64_t
fake_add (struct fake *f, size_t n)
{
  struct nc_key k;
  uint64_t seq = 0;
  size_t i;

  pthread_mutex_lock (&f->lock);
  for (i = 0; i < n; i++) {
    make_keys (f, &k, 1);
    seq = journal_add (f->j, &k, 1);
    assert_true (seq >= journal_open_seq (f->j));
    record (f, &k, seq);
  }
  pthread_mutex_unlock (&f->lock);
  return seq;
}

/* Journal n keys with one journal_add.  The open entry must be empty (the
 * caller flushed and nobody else adds): key i then lands in entry
 * open_seq + i / kpe, and the returned seq is the last key's.
 */
static uint64_t
fake_add_bulk (struct fake *f, size_t n, uint32_t kpe)
{
  struct nc_key *keys = calloc (n, sizeof *keys);
  uint64_t seq, open;
  size_t i;

  assert_non_null (keys);
  pthread_mutex_lock (&f->lock);
  make_keys (f, keys, n);
  open = journal_open_seq (f->j);
  seq = journal_add (f->j, keys, n);
  assert_int_equal (seq, open + (n - 1) / kpe);
  for (i = 0; i < n; i++)
    record (f, &keys[i], open + i / kpe);
  pthread_mutex_unlock (&f->lock);
  free (keys);
  return seq;
}

/* ---- an environment: sim + wrapper + journal + fake ---- */

struct env {
  struct nc_sb sb;
  struct cdev *sim;
  struct faulty *fy;
  struct journal *j;
  struct fake f;
  unsigned delay_ms;
  uint32_t ring_blocks;
  uint64_t ring_offset;
  uint64_t rng;
};

struct got {
  struct nc_key *k;
  uint64_t *seq;
  size_t len, cap;
};

static int
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

static void
env_init (struct env *e, uint32_t journal_buckets, unsigned delay_ms)
{
  uint64_t s;
  unsigned i;

  memset (e, 0, sizeof *e);
  e->rng = seed;
  s = splitmix (&e->rng);
  e->delay_ms = delay_ms;
  e->sb.magic = NC_SB_MAGIC;
  e->sb.version = NC_FORMAT_VERSION;
  e->sb.block_bytes = NC_BLOCK_BYTES;
  e->sb.bucket_blocks = BUCKET_BLOCKS;
  e->sb.journal_first = 1;
  e->sb.journal_buckets = journal_buckets;
  e->sb.nbuckets = 1 + journal_buckets + 2;
  for (i = 0; i < sizeof e->sb.uuid; i++)
    e->sb.uuid[i] = splitmix (&s);
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
  reset_log ();
}

/* Power loss: the journal goes away without a commit, unsynced writes are
 * lost (or torn with tear_seed), then a new journal replays and runs.
 */
static void
env_crash (struct env *e, uint64_t tear_seed)
{
  journal_destroy (e->j);
  e->j = NULL;
  cdev_sim_crash (e->sim, tear_seed);
  faulty_revive (e->fy);
  env_open_journal (e);
}

static void
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
static bool
find_entry (struct env *e, uint64_t seq, uint32_t *pos, uint32_t *nblocks)
{
  static unsigned char buf[JOURNAL_MAX_ENTRY_BLOCKS * NC_BLOCK_BYTES];
  const struct nc_jentry *je = (const void *) buf;
  uint32_t b;

  for (b = 0; b < e->ring_blocks; b++) {
    cdev_sim_peek (e->sim, e->ring_offset + (uint64_t) b * NC_BLOCK_BYTES,
                   buf, NC_BLOCK_BYTES);
    if (je->magic != NC_JOURNAL_MAGIC || je->seq != seq ||
        memcmp (je->uuid, e->sb.uuid, 16) != 0 || je->nblocks == 0 ||
        je->nblocks > e->ring_blocks - b)
      continue;
    cdev_sim_peek (e->sim, e->ring_offset + (uint64_t) b * NC_BLOCK_BYTES,
                   buf, (size_t) je->nblocks * NC_BLOCK_BYTES);
    if (je->csum != nc_csum (je, sizeof *je + (size_t) je->nkeys * 32))
      continue;
    *pos = b;
    *nblocks = je->nblocks;
    return true;
  }
  return false;
}

static void
flip_byte (struct env *e, uint64_t offset)
{
  unsigned char c;

  cdev_sim_peek (e->sim, offset, &c, 1);
  c ^= 0x5a;
  cdev_sim_poke (e->sim, offset, &c, 1);
}

/* ---- tests ---- */

static void
test_journal_format_replay_empty (void **state)
{
  struct env e;
  struct journal_check_info info;
  struct journal_stats st;

  env_init (&e, 2, LONG_DELAY_MS);
  assert_int_equal (journal_durable_seq (e.j), 1);
  assert_int_equal (journal_open_seq (e.j), 2);
  assert_int_equal (journal_check (e.sim, &e.sb, &info), 0);
  assert_int_equal (info.first_seq, 1);
  assert_int_equal (info.last_seq, 1);
  assert_int_equal (info.nkeys, 0);
  assert_int_equal (info.valid_entries_seen, 1);
  /* Nothing open: flush returns at once without a commit. */
  assert_int_equal (journal_flush (e.j), 0);
  journal_get_stats (e.j, &st);
  assert_int_equal (st.commits, 0);
  assert_int_equal (st.ring_blocks, 32);
  assert_int_equal (st.ring_used_blocks, 1);
  assert_int_equal (st.durable_seq, 1);
  assert_int_equal (st.last_seq, 1);
  /* A needed (empty) entry is written. */
  journal_mark_needed (e.j);
  assert_int_equal (journal_flush (e.j), 0);
  assert_int_equal (journal_durable_seq (e.j), 2);
  env_crash (&e, 0);
  assert_int_equal (journal_durable_seq (e.j), 2);

  /* Replaying twice is refused; an unformatted ring has no chain. */
  {
    struct nc_key root;
    uint16_t level;

    assert_int_equal (journal_replay (e.j, NULL, NULL, &root, &level),
                      -EINVAL);
  }
  env_free (&e);

  {
    struct cdev *cd;
    struct nc_sb sb = { .bucket_blocks = 16, .journal_first = 1,
                        .journal_buckets = 2 };
    struct journal *j;
    struct nc_key root;
    uint16_t level;

    assert_int_equal (cdev_sim_create (5 * 16 * 4096, &cd), 0);
    assert_int_equal (journal_create (cd, &sb, &j), 0);
    reset_log ();
    assert_int_equal (journal_replay (j, NULL, NULL, &root, &level),
                      -EBADMSG);
    assert_true (error_logged ("no complete journal chain"));
    assert_true (error_logged (cd->path));
    assert_int_equal (journal_check (cd, &sb, &info), -EBADMSG);
    journal_destroy (j);
    /* A ring too small is refused. */
    sb.journal_buckets = 0;
    assert_int_equal (journal_create (cd, &sb, &j), -EINVAL);
    cdev_close (cd);
  }
}

static void
test_journal_keys_in_order (void **state)
{
  struct env e;
  struct journal_stats st;
  struct journal_check_info info;
  const uint32_t kpe = kpe_for (64);
  uint64_t s, s1, syncs, writes;

  env_init (&e, 4, LONG_DELAY_MS);
  s = fake_add (&e.f, 1);
  assert_int_equal (s, 2);
  assert_int_equal (journal_wait (e.j, s), 0);
  assert_true (journal_durable_seq (e.j) >= s);
  fake_add (&e.f, 10);
  fake_add (&e.f, 20);
  assert_int_equal (journal_flush (e.j), 0);
  /* One add larger than an entry: several entries; the returned seq is
   * the one holding the last key.
   */
  s1 = journal_open_seq (e.j);
  s = fake_add_bulk (&e.f, 2 * kpe + 3, kpe);
  assert_int_equal (s, s1 + 2);
  assert_int_equal (journal_wait (e.j, s), 0);
  assert_int_equal (journal_durable_seq (e.j), s);
  /* One commit: pre-flush, one pwrite (contiguous), sync. */
  syncs = cdev_sim_nr_syncs (e.sim);
  writes = cdev_sim_nr_writes (e.sim);
  fake_add (&e.f, 5);
  assert_int_equal (journal_flush (e.j), 0);
  assert_int_equal (cdev_sim_nr_syncs (e.sim) - syncs, 2);
  assert_int_equal (cdev_sim_nr_writes (e.sim) - writes, 1);
  /* Waiting for a durable seq is immediate. */
  assert_int_equal (journal_wait (e.j, 2), 0);

  journal_get_stats (e.j, &st);
  assert_int_equal (st.keys, 1 + 10 + 20 + 2 * kpe + 3 + 5);
  assert_true (st.commits >= 4);
  assert_int_equal (st.errors, 0);
  assert_int_equal (st.reclaims, 0);
  assert_int_equal (st.durable_seq, journal_durable_seq (e.j));
  /* The fake never wrote a node: every entry since the first key's (2)
   * is live.
   */
  assert_int_equal (st.last_seq, 2);
  /* entries 2 .. 7: 1 + 1 + (8 + 8 + 1) + 1 blocks */
  assert_int_equal (st.ring_used_blocks, 20);

  assert_int_equal (journal_check (e.sim, &e.sb, &info), 0);
  assert_int_equal (info.first_seq, 2);
  assert_int_equal (info.last_seq, journal_durable_seq (e.j));
  assert_int_equal (info.nkeys, st.keys);
  env_crash (&e, 1);            /* nothing unsynced: tearing changes nothing */
  assert_int_equal (e.f.nrecs, st.keys);
  env_free (&e);
}

/* Group commit: while commit 1 is held in its committed hook, N - 1
 * threads add keys and wait; all of them are served by one more commit.
 */
#define GROUP_THREADS 16

struct group_arg {
  struct env *e;
  uint64_t seq;
  int result;
  unsigned *added;
};

static void *
group_first (void *arg)
{
  struct group_arg *a = arg;

  a->result = journal_wait (a->e->j, a->seq);
  return NULL;
}

static void *
group_worker (void *arg)
{
  struct group_arg *a = arg;
  struct fake *f = &a->e->f;

  a->seq = fake_add (f, 1);
  pthread_mutex_lock (&f->lock);
  (*a->added)++;
  pthread_cond_broadcast (&f->cond);
  pthread_mutex_unlock (&f->lock);
  a->result = journal_wait (a->e->j, a->seq);
  return NULL;
}

static void
wait_fake (struct fake *f, bool (*pred) (struct fake *, void *), void *arg)
{
  uint64_t deadline = now_ns () + BOUND_NS;
  struct timespec ts;

  while (!pred (f, arg)) {
    struct timespec now;

    clock_gettime (CLOCK_REALTIME, &now);
    ts.tv_sec = now.tv_sec + 1;
    ts.tv_nsec = now.tv_nsec;
    pthread_cond_timedwait (&f->cond, &f->lock, &ts);
    assert_true (now_ns () < deadline);
  }
}

static bool
gate_hit (struct fake *f, void *arg)
{
  return f->gate_hits >= 1;
}

static bool
all_added (struct fake *f, void *arg)
{
  return *(unsigned *) arg >= GROUP_THREADS - 1;
}

static void
test_journal_group_commit (void **state)
{
  struct env e;
  struct group_arg a[GROUP_THREADS];
  pthread_t t[GROUP_THREADS];
  struct journal_stats st;
  unsigned added = 0;
  int i;

  env_init (&e, 4, LONG_DELAY_MS);
  pthread_mutex_lock (&e.f.lock);
  e.f.gate_armed = true;
  pthread_mutex_unlock (&e.f.lock);

  a[0] = (struct group_arg) { .e = &e, .added = &added };
  a[0].seq = fake_add (&e.f, 1);
  assert_int_equal (pthread_create (&t[0], NULL, group_first, &a[0]), 0);
  pthread_mutex_lock (&e.f.lock);
  wait_fake (&e.f, gate_hit, NULL);
  pthread_mutex_unlock (&e.f.lock);

  for (i = 1; i < GROUP_THREADS; i++) {
    a[i] = (struct group_arg) { .e = &e, .added = &added };
    assert_int_equal (pthread_create (&t[i], NULL, group_worker, &a[i]), 0);
  }
  pthread_mutex_lock (&e.f.lock);
  wait_fake (&e.f, all_added, &added);
  e.f.gate_armed = false;
  pthread_cond_broadcast (&e.f.cond);
  pthread_mutex_unlock (&e.f.lock);

  for (i = 0; i < GROUP_THREADS; i++) {
    pthread_join (t[i], NULL);
    assert_int_equal (a[i].result, 0);
    assert_true (journal_durable_seq (e.j) >= a[i].seq);
  }
  journal_get_stats (e.j, &st);
  assert_int_equal (st.waiters, GROUP_THREADS);
  assert_true (st.commits < GROUP_THREADS);
  assert_true (st.commits <= 2);
  assert_true (st.max_batch_waiters >= 1);
  env_crash (&e, 0);
  assert_int_equal (e.f.nrecs, GROUP_THREADS);
  env_free (&e);
}

/* Free-running: many threads add and wait; every wait succeeds and every
 * key is replayed.
 */
struct stress_arg {
  struct env *e;
  int failures;
};

static void *
stress_worker (void *arg)
{
  struct stress_arg *a = arg;
  int i;

  for (i = 0; i < 40; i++) {
    uint64_t s = fake_add (&a->e->f, 1 + i % 3);

    if (journal_wait (a->e->j, s) != 0 ||
        journal_durable_seq (a->e->j) < s)
      a->failures++;
    if (i % 10 == 0 && journal_flush (a->e->j) != 0)
      a->failures++;
  }
  return NULL;
}

static void
test_journal_concurrent_waiters (void **state)
{
  struct env e;
  struct stress_arg a[8];
  pthread_t t[8];
  struct journal_stats st;
  int i;

  env_init (&e, 4, LONG_DELAY_MS);
  for (i = 0; i < 8; i++) {
    a[i] = (struct stress_arg) { .e = &e };
    assert_int_equal (pthread_create (&t[i], NULL, stress_worker, &a[i]), 0);
  }
  for (i = 0; i < 8; i++) {
    pthread_join (t[i], NULL);
    assert_int_equal (a[i].failures, 0);
  }
  journal_get_stats (e.j, &st);
  assert_int_equal (st.waiters, 8 * 44);
  assert_true (st.commits <= st.waiters);
  assert_int_equal (st.errors, 0);
  env_crash (&e, 0);
  /* per thread: 14 adds of 1 key, 13 of 2, 13 of 3 */
  assert_int_equal (e.f.nrecs, 8 * (14 + 26 + 39));
  env_free (&e);
}

static bool
committed_upto (struct fake *f, void *arg)
{
  return f->committed_seq >= *(uint64_t *) arg;
}

static void
test_journal_delay_commit (void **state)
{
  struct env e;
  uint64_t t0, s;
  struct journal_stats st;

  env_init (&e, 2, 20);
  t0 = now_ns ();
  s = fake_add (&e.f, 3);
  pthread_mutex_lock (&e.f.lock);
  wait_fake (&e.f, committed_upto, &s);
  pthread_mutex_unlock (&e.f.lock);
  assert_true (now_ns () - t0 >= UINT64_C (20) * 1000000);
  assert_true (journal_durable_seq (e.j) >= s);
  journal_get_stats (e.j, &st);
  assert_int_equal (st.waiters, 0);
  assert_true (st.commits >= 1);

  /* A needed entry (root changed) is written after the delay too. */
  s = journal_open_seq (e.j);
  journal_mark_needed (e.j);
  pthread_mutex_lock (&e.f.lock);
  wait_fake (&e.f, committed_upto, &s);
  pthread_mutex_unlock (&e.f.lock);
  env_crash (&e, 0);
  assert_int_equal (journal_durable_seq (e.j), s);
  assert_int_equal (e.f.nrecs, 3);
  env_free (&e);
}

/* The device dies between the entry pwrite and its sync; power loss tears
 * the unsynced blocks at random.  Replay gives the previous chain or a
 * prefix of the torn write that is complete, and writing continues
 * correctly over the leftovers.
 */
static void
test_journal_torn_tail (void **state)
{
  const uint32_t kpe = kpe_for (32);
  unsigned iter, fell_back = 0;
  uint64_t tear = seed;

  for (iter = 0; iter < 24; iter++) {
    struct env e;
    uint64_t d, s;
    uint64_t tear_seed = iter == 0 ? 0 : splitmix (&tear) | 1;

    env_init (&e, 2, LONG_DELAY_MS);
    fake_add (&e.f, 7);
    assert_int_equal (journal_flush (e.j), 0);
    d = journal_durable_seq (e.j);

    faulty_fail_sync (e.fy, 2);   /* pre-flush ok, post-write sync dies */
    s = fake_add (&e.f, 3 * kpe - 5);
    assert_int_equal (journal_wait (e.j, s), -EIO);
    assert_int_equal (journal_durable_seq (e.j), d);
    env_crash (&e, tear_seed);
    assert_true (journal_durable_seq (e.j) >= d);
    if (journal_durable_seq (e.j) == d)
      fell_back++;
    if (tear_seed == 0)
      assert_int_equal (journal_durable_seq (e.j), d);

    /* The seqs of the lost entries are written again, elsewhere or in
     * place; a second crash must still replay cleanly.
     */
    fake_add (&e.f, kpe + 1);
    assert_int_equal (journal_flush (e.j), 0);
    s = fake_add (&e.f, 2);
    assert_int_equal (journal_wait (e.j, s), 0);
    env_crash (&e, tear_seed);
    assert_int_equal (journal_durable_seq (e.j), s);
    env_free (&e);
  }
  assert_true (fell_back >= 12);
}

/* A write of three entries is durable, then its first entry turns bad: the
 * remaining two are a torn write, not corruption; the older chain is
 * used, the two are dropped, and their seqs are reused safely.
 */
static void
test_journal_first_entry_torn (void **state)
{
  const uint32_t kpe = kpe_for (32);
  struct env e;
  struct journal_check_info info;
  uint64_t d, s, first;
  uint32_t pos, nb, pos2, nb2;
  unsigned char hdr[NC_BLOCK_BYTES];

  env_init (&e, 2, LONG_DELAY_MS);
  fake_add (&e.f, 9);
  assert_int_equal (journal_flush (e.j), 0);
  d = journal_durable_seq (e.j);
  first = journal_open_seq (e.j);
  s = fake_add (&e.f, 2 * kpe + 1);
  assert_int_equal (s, first + 2);
  assert_int_equal (journal_wait (e.j, s), 0);

  assert_true (find_entry (&e, first, &pos, &nb));
  assert_true (find_entry (&e, first + 1, &pos2, &nb2));
  flip_byte (&e, e.ring_offset + (uint64_t) (pos + nb) * NC_BLOCK_BYTES
             - NC_BLOCK_BYTES + 100);
  assert_int_equal (journal_check (e.sim, &e.sb, &info), 0);
  assert_int_equal (info.last_seq, d);

  env_crash (&e, 0);
  assert_int_equal (journal_durable_seq (e.j), d);
  assert_int_equal (e.f.nrecs, 9);
  /* The survivors were dropped. */
  cdev_sim_peek (e.sim, e.ring_offset + (uint64_t) pos2 * NC_BLOCK_BYTES,
                 hdr, sizeof hdr);
  assert_int_not_equal (((struct nc_jentry *) hdr)->magic,
                        NC_JOURNAL_MAGIC);

  /* Reuse the seqs: a small entry `first` now, then first + 1 .. */
  s = fake_add (&e.f, 1);
  assert_int_equal (s, first);
  assert_int_equal (journal_wait (e.j, s), 0);
  s = fake_add (&e.f, kpe + 2);
  assert_int_equal (journal_wait (e.j, s), 0);
  env_crash (&e, 0);
  assert_int_equal (journal_durable_seq (e.j), s);
  assert_int_equal (e.f.nrecs, 9 + 1 + kpe + 2);
  env_free (&e);
}

/* An entry in the middle of the chain (an older, acknowledged write) is
 * corrupt: that is not a torn tail, the journal is refused.
 */
static void
test_journal_corrupt_middle (void **state)
{
  struct env e;
  struct journal_check_info info;
  struct journal *j2;
  struct nc_key root;
  uint16_t level;
  uint32_t pos, nb;
  int i;

  env_init (&e, 4, LONG_DELAY_MS);
  for (i = 0; i < 6; i++) {
    fake_add (&e.f, 10);
    assert_int_equal (journal_flush (e.j), 0);
  }
  assert_int_equal (journal_durable_seq (e.j), 7);
  assert_true (find_entry (&e, 4, &pos, &nb));
  flip_byte (&e, e.ring_offset + (uint64_t) pos * NC_BLOCK_BYTES + 112 + 5);
  reset_log ();
  assert_int_equal (journal_check (e.sim, &e.sb, &info), -EBADMSG);
  assert_true (error_logged ("missing or corrupt"));
  assert_int_equal (journal_create (e.sim, &e.sb, &j2), 0);
  assert_int_equal (journal_replay (j2, collect, NULL, &root, &level),
                    -EBADMSG);
  journal_destroy (j2);

  /* The newest entry alone cannot be told from a torn write: replay
   * falls back to 6.  (The middle one is repaired first.)
   */
  flip_byte (&e, e.ring_offset + (uint64_t) pos * NC_BLOCK_BYTES + 112 + 5);
  assert_int_equal (journal_check (e.sim, &e.sb, &info), 0);
  assert_int_equal (info.last_seq, 7);
  assert_true (find_entry (&e, 7, &pos, &nb));
  flip_byte (&e, e.ring_offset + (uint64_t) pos * NC_BLOCK_BYTES + 112 + 5);
  assert_int_equal (journal_check (e.sim, &e.sb, &info), 0);
  assert_int_equal (info.last_seq, 6);
  assert_int_equal (info.first_seq, 2);  /* the oldest pin: the first key */
  assert_int_equal (info.valid_entries_seen, 6);

  /* A bad magic in the middle is just as fatal. */
  assert_true (find_entry (&e, 3, &pos, &nb));
  flip_byte (&e, e.ring_offset + (uint64_t) pos * NC_BLOCK_BYTES + 8);
  assert_int_equal (journal_check (e.sim, &e.sb, &info), -EBADMSG);
  env_free (&e);
}

/* Entries of another cache set (another uuid) are invisible, even with a
 * higher seq or the seq of one of ours.
 */
static void
test_journal_foreign_uuid (void **state)
{
  struct env e;
  struct journal_check_info info;
  unsigned char buf[NC_BLOCK_BYTES];
  struct nc_jentry *je = (struct nc_jentry *) buf;
  uint64_t d;

  env_init (&e, 4, LONG_DELAY_MS);
  fake_add (&e.f, 4);
  assert_int_equal (journal_flush (e.j), 0);
  fake_add (&e.f, 4);
  assert_int_equal (journal_flush (e.j), 0);
  d = journal_durable_seq (e.j);

  memset (buf, 0, sizeof buf);
  je->magic = NC_JOURNAL_MAGIC;
  je->version = NC_FORMAT_VERSION;
  je->nblocks = 1;
  memcpy (je->uuid, e.sb.uuid, 16);
  je->uuid[3] ^= 1;
  je->seq = d + 100;
  je->last_seq = d + 100;
  je->csum = nc_csum (je, sizeof *je);
  cdev_sim_poke (e.sim, e.ring_offset + (uint64_t) (e.ring_blocks - 1) *
                 NC_BLOCK_BYTES, buf, sizeof buf);
  je->seq = d;
  je->last_seq = 1;
  je->csum = nc_csum (je, sizeof *je);
  cdev_sim_poke (e.sim, e.ring_offset + (uint64_t) (e.ring_blocks - 3) *
                 NC_BLOCK_BYTES, buf, sizeof buf);

  assert_int_equal (journal_check (e.sim, &e.sb, &info), 0);
  assert_int_equal (info.last_seq, d);
  assert_int_equal (info.valid_entries_seen, d);
  env_crash (&e, 0);
  assert_int_equal (journal_durable_seq (e.j), d);
  assert_int_equal (e.f.nrecs, 8);
  env_free (&e);
}

/* A write error fails the waiter with -EIO; the keys stay and the next
 * commit writes them.
 */
static void
test_journal_io_error (void **state)
{
  struct env e;
  struct journal_stats st;
  uint64_t s1, s2;

  env_init (&e, 2, LONG_DELAY_MS);
  fake_add (&e.f, 2);
  assert_int_equal (journal_flush (e.j), 0);

  reset_log ();
  cdev_sim_fail_write_once (e.sim, e.ring_offset,
                            (uint64_t) e.ring_blocks * NC_BLOCK_BYTES);
  s1 = fake_add (&e.f, 5);
  assert_int_equal (journal_wait (e.j, s1), -EIO);
  assert_true (nr_log_errors >= 1);
  assert_true (error_logged ("retried"));
  journal_get_stats (e.j, &st);
  assert_int_equal (st.errors, 1);
  assert_true (journal_durable_seq (e.j) < s1);

  s2 = fake_add (&e.f, 5);
  assert_true (s2 > s1);
  assert_int_equal (journal_wait (e.j, s2), 0);
  assert_int_equal (journal_wait (e.j, s1), 0);
  journal_get_stats (e.j, &st);
  assert_int_equal (st.errors, 1);
  assert_int_equal (st.keys, 12);

  env_crash (&e, 0);
  assert_int_equal (e.f.nrecs, 12);
  env_free (&e);
}

/* A failing reclaim fails the waiters; a working one lets the commit
 * through, and the failed keys are still committed.
 */
static void
test_journal_reclaim_error (void **state)
{
  const uint32_t kpe = kpe_for (32);
  struct env e;
  uint64_t s;
  int i, r = 0;

  env_init (&e, 2, LONG_DELAY_MS);
  pthread_mutex_lock (&e.f.lock);
  e.f.reclaim_result = -EIO;
  pthread_mutex_unlock (&e.f.lock);
  /* Fill the ring until a commit needs reclaim. */
  for (i = 0; i < 20 && r == 0; i++) {
    s = fake_add (&e.f, kpe);
    r = journal_wait (e.j, s);
  }
  assert_int_equal (r, -EIO);
  assert_true (e.f.nreclaims >= 1);
  pthread_mutex_lock (&e.f.lock);
  e.f.reclaim_result = 0;
  pthread_mutex_unlock (&e.f.lock);
  assert_int_equal (journal_wait (e.j, s), 0);
  assert_int_equal (journal_flush (e.j), 0);
  env_crash (&e, 0);
  assert_int_equal (e.f.nrecs, (size_t) i * kpe);
  env_free (&e);
}

static void
test_journal_stop (void **state)
{
  struct env e;
  uint64_t s;

  env_init (&e, 2, LONG_DELAY_MS);
  fake_add (&e.f, 3);
  assert_int_equal (journal_flush (e.j), 0);
  s = fake_add (&e.f, 4);
  assert_int_equal (journal_stop (e.j), 0);
  assert_true (journal_durable_seq (e.j) >= s);
  assert_int_equal (journal_wait (e.j, s), 0);
  assert_int_equal (journal_flush (e.j), 0);
  assert_int_equal (journal_stop (e.j), 0);

  /* After stop: keys can be appended but never become durable. */
  s = fake_add (&e.f, 1);
  assert_int_equal (journal_wait (e.j, s), -ESHUTDOWN);
  assert_int_equal (journal_flush (e.j), -ESHUTDOWN);
  journal_throttle (e.j);       /* returns at once */

  /* A needed entry with no keys is also committed by stop. */
  env_crash (&e, 0);
  assert_int_equal (e.f.nrecs, 7);
  s = journal_open_seq (e.j);
  journal_mark_needed (e.j);
  assert_int_equal (journal_stop (e.j), 0);
  assert_int_equal (journal_durable_seq (e.j), s);
  env_free (&e);
}

static void
test_journal_throttle (void **state)
{
  struct env e;
  struct journal_stats st;
  uint64_t before;

  env_init (&e, 4, LONG_DELAY_MS);
  /* Under the limit: returns at once, no commit. */
  fake_add (&e.f, 10);
  journal_throttle (e.j);
  journal_get_stats (e.j, &st);
  assert_int_equal (st.commits, 0);

  before = journal_open_seq (e.j);
  fake_add (&e.f, JOURNAL_THROTTLE_KEYS + 100);
  journal_throttle (e.j);
  assert_true (journal_open_seq (e.j) > before);
  assert_int_equal (journal_flush (e.j), 0);
  journal_get_stats (e.j, &st);
  assert_int_equal (st.keys, JOURNAL_THROTTLE_KEYS + 110);
  /* 8 k keys do not fit a 64-block ring at once: written in parts, with
   * reclaim between them.
   */
  assert_true (st.reclaims >= 1);
  env_crash (&e, 0);
  assert_int_equal (e.f.nrecs, JOURNAL_THROTTLE_KEYS + 110);
  env_free (&e);
}

/* A 32-block ring wraps many times: entries of all sizes, batches larger
 * than the ring, reclaim, crashes (some torn mid-commit, some right after
 * a reclaim, when the write may reach blocks the durable chain had) and
 * replays.
 */
static void
test_journal_ring_wrap (void **state)
{
  const uint32_t kpe = kpe_for (32);
  struct env e;
  struct journal_stats st;
  uint64_t rng = seed ^ 0x1234, written_entries = 0, s;
  unsigned round, crashes = 0, armed_crashes = 0;

  env_init (&e, 2, LONG_DELAY_MS);
  for (round = 0; round < 500; round++) {
    uint64_t r = splitmix (&rng);
    size_t n;
    bool ok;
    int rc;

    switch (r % 8) {
    case 0: n = 1 + r / 8 % (3 * kpe); break;
    case 1: n = 4 * kpe + r / 8 % kpe; break;  /* larger than the ring */
    case 2: n = 0; break;
    default: n = 1 + r / 8 % 40; break;
    }
    if (r / 32 % 8 == 0) {
      pthread_mutex_lock (&e.f.lock);
      e.f.arm_on_reclaim = true;
      pthread_mutex_unlock (&e.f.lock);
    }
    if (n > 0)
      s = fake_add (&e.f, n);
    else {
      journal_mark_needed (e.j);
      s = journal_open_seq (e.j);
    }
    if (r / 1024 % 4 != 0) {
      rc = journal_wait (e.j, s);
      if (rc != 0) {
        /* Only the fault armed by reclaim can fail a commit here. */
        assert_int_equal (rc, -EIO);
        assert_true (e.f.armed_fired > 0);
        assert_true (faulty_dead (e.fy));
        journal_get_stats (e.j, &st);
        written_entries += st.entries;
        crashes++;
        armed_crashes++;
        env_crash (&e, splitmix (&rng) | 1);
        continue;
      }
    }
    if (r / 4096 % 16 == 0) {
      journal_get_stats (e.j, &st);
      written_entries += st.entries;
      crashes++;
      env_crash (&e, r / 65536 % 2 ? splitmix (&rng) : 0);
    }
    else if (r / 4096 % 16 == 1) {
      /* Die in the middle of a commit, then lose power. */
      faulty_fail_sync (e.fy, 1 + r / 65536 % 3);
      s = fake_add (&e.f, 1 + r / 65536 % (2 * kpe));
      ok = journal_wait (e.j, s) == 0;
      journal_get_stats (e.j, &st);
      written_entries += st.entries;
      crashes++;
      env_crash (&e, splitmix (&rng));
      if (ok)
        assert_true (journal_durable_seq (e.j) >= s);
    }
  }
  pthread_mutex_lock (&e.f.lock);
  e.f.arm_on_reclaim = false;
  pthread_mutex_unlock (&e.f.lock);
  assert_int_equal (journal_flush (e.j), 0);
  journal_get_stats (e.j, &st);
  written_entries += st.entries;
  assert_true (st.ring_used_blocks <= e.ring_blocks);
  assert_true (st.ring_used_blocks >= 1);
  env_crash (&e, 0);
  assert_true (crashes >= 5);
  assert_true (armed_crashes >= 5);
  assert_true (e.f.nreclaims >= 20);
  /* entries >= 1 block each: the ring went round many times */
  assert_true (written_entries > 8 * e.ring_blocks);
  env_free (&e);
}

int
main (void)
{
  const char *s = getenv ("NBDCACHE_SEED");
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_journal_format_replay_empty),
    cmocka_unit_test (test_journal_keys_in_order),
    cmocka_unit_test (test_journal_group_commit),
    cmocka_unit_test (test_journal_concurrent_waiters),
    cmocka_unit_test (test_journal_delay_commit),
    cmocka_unit_test (test_journal_torn_tail),
    cmocka_unit_test (test_journal_first_entry_torn),
    cmocka_unit_test (test_journal_corrupt_middle),
    cmocka_unit_test (test_journal_foreign_uuid),
    cmocka_unit_test (test_journal_io_error),
    cmocka_unit_test (test_journal_reclaim_error),
    cmocka_unit_test (test_journal_stop),
    cmocka_unit_test (test_journal_throttle),
    cmocka_unit_test (test_journal_ring_wrap),
  };

  seed = s ? strtoull (s, NULL, 0)
    : (uint64_t) time (NULL) ^ (uint64_t) now_ns ();
  fprintf (stderr, "test-journal: NBDCACHE_SEED=%" PRIu64 "\n", seed);
  log_set_sink (capture_log);
  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
