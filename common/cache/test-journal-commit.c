/* SPDX-License-Identifier: BSD-3-Clause */
/* test-journal-commit.c — the journal writing and committing.
 *
 * WHAT: format and replay of an empty journal; keys replayed in order
 * across many entries and writes; group commit; concurrent waiters; the
 * delay commit without a waiter; a caller committing itself (INLINE
 * COMMIT); a write closed before the previous
 * write's sync skips its pre-flush (PIPELINE), and under crashes every
 * replayed key still finds its data durable; stop commits what is open;
 * throttle; many wraps of a small ring with reclaim, crashes and replays.
 * HOW: the fixture of test-journal-fx.h.
 * SEED: randomised tests print their seed; NBDCACHE_SEED overrides it.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
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
#include "journal.h"
#include "log.h"
#include "testkit.h"
#include "ondisk.h"
#include "super.h"
#include "test-journal-fx.h"

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
    test_log_clear ();
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
  bool inline_commit;
  int failures;
};

static void *
stress_worker (void *arg)
{
  struct stress_arg *a = arg;
  int i;

  for (i = 0; i < 40; i++) {
    uint64_t s = fake_add (&a->e->f, 1 + i % 3);

    /* Half the threads may commit themselves (INLINE COMMIT). */
    if ((a->inline_commit ? journal_wait_or_commit (a->e->j, s)
                          : journal_wait (a->e->j, s)) != 0 ||
        journal_durable_seq (a->e->j) < s)
      a->failures++;
    if (i % 10 == 0 &&
        (a->inline_commit ? journal_flush_or_commit (a->e->j)
                          : journal_flush (a->e->j)) != 0)
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
    a[i] = (struct stress_arg) { .e = &e, .inline_commit = i % 2 };
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
pre_gate_hit (struct fake *f, void *arg)
{
  return f->pre_gate_hits >= 1;
}

/* PIPELINE (journal.c): a caller waits for keys added while a write is in
 * flight.  The write closes their entry before its final sync, so their
 * own write needs no pre-flush: two writes, three syncs (four without
 * the pipeline).  Every key survives a crash after it.
 */
static void
test_journal_pipelined_presync (void **state)
{
  struct env e;
  struct group_arg a[2];
  pthread_t t[2];
  struct journal_stats st;
  uint64_t syncs, deadline;
  unsigned added = 0;
  int i;

  env_init (&e, 4, LONG_DELAY_MS);
  syncs = cdev_sim_nr_syncs (e.sim);
  pthread_mutex_lock (&e.f.lock);
  e.f.pre_gate_armed = true;
  pthread_mutex_unlock (&e.f.lock);

  /* The first write stops in its pre_write hook, before its pwrites. */
  a[0] = (struct group_arg) { .e = &e, .added = &added };
  a[0].seq = fake_add (&e.f, 3);
  assert_int_equal (pthread_create (&t[0], NULL, group_first, &a[0]), 0);
  pthread_mutex_lock (&e.f.lock);
  wait_fake (&e.f, pre_gate_hit, NULL);
  pthread_mutex_unlock (&e.f.lock);

  /* Meanwhile a second caller adds keys and waits for them. */
  a[1] = (struct group_arg) { .e = &e, .added = &added };
  assert_int_equal (pthread_create (&t[1], NULL, group_worker, &a[1]), 0);
  deadline = now_ns () + BOUND_NS;
  do {
    assert_true (now_ns () < deadline);
    journal_get_stats (e.j, &st);
    if (st.waiting < 2)
      sched_yield ();
  } while (st.waiting < 2);

  pthread_mutex_lock (&e.f.lock);
  e.f.pre_gate_armed = false;
  pthread_cond_broadcast (&e.f.cond);
  pthread_mutex_unlock (&e.f.lock);
  for (i = 0; i < 2; i++) {
    pthread_join (t[i], NULL);
    assert_int_equal (a[i].result, 0);
    assert_true (journal_durable_seq (e.j) >= a[i].seq);
  }
  assert_true (a[1].seq > a[0].seq);
  journal_get_stats (e.j, &st);
  assert_int_equal (st.commits, 2);
  assert_int_equal (st.presynced, 1);
  assert_int_equal (st.errors, 0);
  /* Ring fill after a format syncs on its own (journal.c FILL): not ours. */
  assert_int_equal (cdev_sim_nr_syncs (e.sim) - syncs - st.fill_syncs, 3);

  /* Without waiters, a commit pre-flushes again. */
  syncs = cdev_sim_nr_syncs (e.sim) - st.fill_syncs;
  fake_add (&e.f, 2);
  assert_int_equal (journal_flush (e.j), 0);
  journal_get_stats (e.j, &st);
  assert_int_equal (cdev_sim_nr_syncs (e.sim) - st.fill_syncs - syncs, 2);

  env_crash (&e, seed | 1);
  assert_int_equal (e.f.nrecs, 3 + 1 + 2);
  env_free (&e);
}

/* PIPELINE under crashes: writers each write a data block, journal a key
 * for it and wait, as the engine's FLUSH and FUA do; the device dies at a
 * random sync and loses a random half of what was not synced.  Every key
 * replayed must find its data block durable: the pre-flush a pipelined
 * write skips was really done by the sync before it; and a write that
 * skipped it because its entries carry their data (journal.c REDO) gets
 * its data back from them, as the assembly writes it (journal_redo).
 */
#define PIPE_THREADS 4u
#define PIPE_SLOTS 12u          /* data blocks per thread */

struct pipe_arg {
  struct env *e;
  unsigned id;
  uint64_t seq[PIPE_SLOTS];     /* seq of slot i's key; 0 = none */
};

/* A data block in the two buckets after the ring, or bucket 0. */
static uint64_t
pipe_slot_offset (const struct env *e, unsigned id, unsigned i)
{
  unsigned n = id * PIPE_SLOTS + i;
  uint64_t data = e->ring_offset + (uint64_t) e->ring_blocks * NC_BLOCK_BYTES;

  return n < 2 * BUCKET_BLOCKS ? data + (uint64_t) n * NC_BLOCK_BYTES
    : (uint64_t) (n - 2 * BUCKET_BLOCKS) * NC_BLOCK_BYTES;
}

/* Journal a DIRTY key of one block naming the data block at byte off, so
 * a waited write of it may carry the data (REDO).
 */
static uint64_t
pipe_add (struct env *e, uint64_t off)
{
  struct nc_key k;
  uint64_t seq, block = off / NC_BLOCK_BYTES;

  pthread_mutex_lock (&e->f.lock);
  fake_make_keys (&e->f, &k, 1);
  k.size = 1;
  k.flags = NC_KEY_DIRTY;
  k.bucket = block / BUCKET_BLOCKS;
  k.offset = block % BUCKET_BLOCKS;
  k.gen = 0;
  seq = journal_add (e->j, &k, 1);
  fake_record (&e->f, &k, seq);
  pthread_mutex_unlock (&e->f.lock);
  return seq;
}

/* What the assembly does with the newest write's inline data: every slot
 * is written once, so each key is still live where it points.
 */
static int
pipe_redo (void *opaque, const struct nc_key *k, const void *data)
{
  struct env *e = opaque;

  cdev_sim_poke (e->sim, ((uint64_t) k->bucket * BUCKET_BLOCKS + k->offset)
                 * NC_BLOCK_BYTES, data, (size_t) k->size * NC_BLOCK_BYTES);
  return 0;
}

static void *
pipe_writer (void *arg)
{
  struct pipe_arg *a = arg;
  unsigned i;
  void *buf = cdev_alloc_buffer (NC_BLOCK_BYTES);

  assert_non_null (buf);
  for (i = 0; i < PIPE_SLOTS; i++) {
    memset (buf, 1 + a->id * PIPE_SLOTS + i, NC_BLOCK_BYTES);
    if (cdev_pwrite (&a->e->fy->head, buf, NC_BLOCK_BYTES,
                     pipe_slot_offset (a->e, a->id, i), 0) < 0)
      break;
    a->seq[i] = pipe_add (a->e, pipe_slot_offset (a->e, a->id, i));
    if (journal_wait (a->e->j, a->seq[i]) != 0)
      break;
  }
  free (buf);
  return NULL;
}

static void
test_journal_pipeline_crash (void **state)
{
  unsigned char *buf = cdev_alloc_buffer (NC_BLOCK_BYTES);
  uint64_t rng = seed ^ 0x9e3779b97f4a7c15u, presynced = 0, inlined = 0;
  unsigned round, t, i;

  assert_non_null (buf);
  for (round = 0; round < 40; round++) {
    struct env e;
    struct pipe_arg a[PIPE_THREADS];
    pthread_t th[PIPE_THREADS];
    struct journal_stats st;
    uint64_t durable;

    env_init (&e, 2, LONG_DELAY_MS);
    /* Most rounds die somewhere in the run; some never do. */
    faulty_fail_sync (e.fy, 2 + test_splitmix_next (&rng) % 40);
    for (t = 0; t < PIPE_THREADS; t++) {
      a[t] = (struct pipe_arg) { .e = &e, .id = t };
      assert_int_equal (pthread_create (&th[t], NULL, pipe_writer, &a[t]), 0);
    }
    for (t = 0; t < PIPE_THREADS; t++)
      pthread_join (th[t], NULL);
    journal_get_stats (e.j, &st);
    presynced += st.presynced;
    inlined += st.inlined;

    env_crash (&e, test_splitmix_next (&rng) | 1);
    durable = journal_durable_seq (e.j);
    assert_int_equal (journal_redo (e.j, pipe_redo, &e), 0);
    for (t = 0; t < PIPE_THREADS; t++)
      for (i = 0; i < PIPE_SLOTS; i++) {
        if (a[t].seq[i] == 0 || a[t].seq[i] > durable)
          continue;
        cdev_sim_peek (e.sim, pipe_slot_offset (&e, t, i), buf,
                       NC_BLOCK_BYTES);
        if (buf[0] != (unsigned char) (1 + t * PIPE_SLOTS + i) ||
            memcmp (buf, buf + 1, NC_BLOCK_BYTES - 1) != 0)
          fail_msg ("seed %" PRIu64 " round %u: the key of seq %" PRIu64
                    " was replayed but its data block (writer %u slot %u) "
                    "is not durable", seed, round, a[t].seq[i], t, i);
      }
    env_free (&e);
  }
  /* The runs took the pipelined path, and the one-sync one, at all. */
  assert_true (presynced > 0);
  assert_true (inlined > 0);
  free (buf);
}

static bool
committed_upto (struct fake *f, void *arg)
{
  return f->committed_seq >= *(uint64_t *) arg;
}

/* INLINE COMMIT (journal.c): with no commit running, a caller of
 * journal_wait_or_commit runs the commit in its own thread (the hooks
 * run there) and returns with its keys durable; journal_wait leaves it to
 * the commit thread.  Both survive a crash.
 */
static void
test_journal_inline_commit (void **state)
{
  struct env e;
  struct journal_stats st;
  uint64_t s;

  env_init (&e, 2, LONG_DELAY_MS);
  s = fake_add (&e.f, 2);
  assert_int_equal (journal_wait_or_commit (e.j, s), 0);
  assert_true (journal_durable_seq (e.j) >= s);
  pthread_mutex_lock (&e.f.lock);
  assert_true (pthread_equal (e.f.pre_write_thread, pthread_self ()));
  pthread_mutex_unlock (&e.f.lock);

  fake_add (&e.f, 1);
  assert_int_equal (journal_flush_or_commit (e.j), 0);
  pthread_mutex_lock (&e.f.lock);
  assert_true (pthread_equal (e.f.pre_write_thread, pthread_self ()));
  pthread_mutex_unlock (&e.f.lock);
  /* Nothing open: at once, no commit. */
  assert_int_equal (journal_flush_or_commit (e.j), 0);

  s = fake_add (&e.f, 1);
  assert_int_equal (journal_wait (e.j, s), 0);
  pthread_mutex_lock (&e.f.lock);
  assert_false (pthread_equal (e.f.pre_write_thread, pthread_self ()));
  pthread_mutex_unlock (&e.f.lock);

  journal_get_stats (e.j, &st);
  assert_int_equal (st.commits, 3);
  assert_int_equal (st.errors, 0);
  env_crash (&e, 0);
  assert_int_equal (e.f.nrecs, 4);
  env_free (&e);
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

/* Commits failing for long (a backing store away: the pre_write hook
 * fails) while keys keep coming: open_seq stays within a ring's worth of
 * seqs of the durable entry, so a btree node written meanwhile has a
 * journal seq the next open still accepts as a torn write (device.c
 * torn_jseq_max).  Nothing is lost: the held keys commit afterwards.
 */
static void
test_journal_seq_bound (void **state)
{
  struct env e;
  uint64_t s = 0;
  size_t added = 0;
  unsigned i;

  env_init (&e, 2, 5);
  fake_add (&e.f, 1);
  added++;
  assert_int_equal (journal_flush (e.j), 0);
  pthread_mutex_lock (&e.f.lock);
  e.f.pre_write_result = -EIO;
  pthread_mutex_unlock (&e.f.lock);

  /* Past the bound, each wait waits for the back-off: few of those. */
  for (i = 0; i < e.ring_blocks + 2; i++) {
    s = fake_add (&e.f, 3);
    added += 3;
    assert_int_equal (journal_wait (e.j, s), -EIO);
    assert_true (journal_open_seq (e.j) - journal_durable_seq (e.j) <=
                 e.ring_blocks);
  }

  pthread_mutex_lock (&e.f.lock);
  e.f.pre_write_result = 0;
  pthread_mutex_unlock (&e.f.lock);
  assert_int_equal (journal_wait (e.j, s), 0);
  assert_int_equal (journal_flush (e.j), 0);
  env_crash (&e, 0);
  assert_int_equal (e.f.nrecs, added);
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
    uint64_t r = test_splitmix_next (&rng);
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
        env_crash (&e, test_splitmix_next (&rng) | 1);
        continue;
      }
    }
    if (r / 4096 % 16 == 0) {
      journal_get_stats (e.j, &st);
      written_entries += st.entries;
      crashes++;
      env_crash (&e, r / 65536 % 2 ? test_splitmix_next (&rng) : 0);
    }
    else if (r / 4096 % 16 == 1) {
      /* Die in the middle of a commit, then lose power. */
      faulty_fail_sync (e.fy, 1 + r / 65536 % 3);
      s = fake_add (&e.f, 1 + r / 65536 % (2 * kpe));
      ok = journal_wait (e.j, s) == 0;
      journal_get_stats (e.j, &st);
      written_entries += st.entries;
      crashes++;
      env_crash (&e, test_splitmix_next (&rng));
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
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_journal_format_replay_empty),
    cmocka_unit_test (test_journal_keys_in_order),
    cmocka_unit_test (test_journal_group_commit),
    cmocka_unit_test (test_journal_concurrent_waiters),
    cmocka_unit_test (test_journal_pipelined_presync),
    cmocka_unit_test (test_journal_pipeline_crash),
    cmocka_unit_test (test_journal_inline_commit),
    cmocka_unit_test (test_journal_delay_commit),
    cmocka_unit_test (test_journal_seq_bound),
    cmocka_unit_test (test_journal_stop),
    cmocka_unit_test (test_journal_throttle),
    cmocka_unit_test (test_journal_ring_wrap),
  };

  seed = test_seed_from_env ("test-journal-commit");
  test_log_capture ();
  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
