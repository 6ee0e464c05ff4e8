/* SPDX-License-Identifier: BSD-3-Clause */
/* test-backing-faulty.c — unit tests for the fault-injecting backing store.
 *
 * WHAT: pass-through of the head (uri copied, size, capabilities) and of
 * every op with its arguments and flags; write faults (pwrite, zero,
 * trim) and read faults at the exact edges of the overlap rule, arming
 * and disarming, data untouched by a failed write; flush faults (flush
 * and FUA writes); the failure count; close freeing the inner store; and
 * a concurrency test re-arming faults while I/O runs.
 * WHY: engine tests trust this store to fail exactly where told.
 * INVARIANTS: the concurrency test prints its seed; NBDCACHE_SEED
 * repeats it.
 * THREADS AND LOCKS: the concurrency test reports through counters.
 * FAILURE: cmocka assertions.
 * NOT HERE: the memory driver itself (test-backing-memory.c).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "testkit.h"

#include "backing.h"
#include "compiler.h"
#include "faulty.h"
#include "log.h"

static int
setup (void **state)
{
  test_log_capture ();
  return 0;
}

static int
teardown (void **state)
{
  log_set_sink (NULL);
  return 0;
}

static uint64_t
seed_from_env (const char *test)
{
  uint64_t seed = test_seed_from_env (test);

  return seed ? seed : 1;
}

/* A faulty store over a fresh memory store of size bytes. */
static struct backing *
create (uint64_t size)
{
  struct backing *inner, *b = NULL;

  assert_int_equal (backing_memory_create (size, &inner), 0);
  assert_int_equal (backing_faulty_wrap (inner, &b), 0);
  assert_non_null (b);
  return b;
}

/* ---- a recording inner store ---- */

struct call {
  char op;                      /* r w f t z e */
  uint64_t count, offset;
  uint32_t flags;
};

struct fake {
  struct backing b;             /* must be first */
  struct call last;
  int n_calls;
  bool *closed;                 /* set by close */
};

static int
fake_record (struct backing *b, char op, uint64_t count, uint64_t offset,
             uint32_t flags)
{
  struct fake *k = (struct fake *) b;

  k->last = (struct call) { op, count, offset, flags };
  k->n_calls++;
  return 0;
}

static int
fake_pread (struct backing *b, void *buf, size_t count, uint64_t offset)
{
  return fake_record (b, 'r', count, offset, 0);
}

static int
fake_pwrite (struct backing *b, const void *buf, size_t count,
             uint64_t offset, uint32_t flags)
{
  return fake_record (b, 'w', count, offset, flags);
}

static int
fake_flush (struct backing *b)
{
  return fake_record (b, 'f', 0, 0, 0);
}

static int
fake_trim (struct backing *b, uint64_t count, uint64_t offset,
           uint32_t flags)
{
  return fake_record (b, 't', count, offset, flags);
}

static int
fake_zero (struct backing *b, uint64_t count, uint64_t offset,
           uint32_t flags)
{
  return fake_record (b, 'z', count, offset, flags);
}

static int
fake_extents (struct backing *b, uint64_t count, uint64_t offset,
              backing_extent_fn fn, void *opaque)
{
  fake_record (b, 'e', count, offset, 0);
  return fn (opaque, offset, count, BACKING_EXTENT_HOLE);
}

static void
fake_close (struct backing *b)
{
  struct fake *k = (struct fake *) b;

  *k->closed = true;
  free (k->b.uri);
  free (k);
}

static const struct backing_ops fake_ops = {
  .name = "fake", .pread = fake_pread, .pwrite = fake_pwrite,
  .flush = fake_flush, .trim = fake_trim, .zero = fake_zero,
  .extents = fake_extents, .close = fake_close,
};

static struct fake *
fake_create (const char *uri, bool *closed)
{
  struct fake *k = calloc (1, sizeof *k);

  assert_non_null (k);
  k->b.ops = &fake_ops;
  k->b.uri = uri ? strdup (uri) : NULL;
  k->b.size_bytes = 12345 * KIB;
  k->b.readonly = true;
  k->b.can_trim = false;
  k->b.can_zero = true;
  k->b.can_fast_zero = false;
  k->b.can_extents = true;
  k->b.is_block_device = true;
  k->closed = closed;
  *closed = false;
  return k;
}

static int
count_extent (void *opaque, uint64_t offset, uint64_t length, uint32_t flags)
{
  ++*(int *) opaque;
  return 0;
}

static void
assert_call (struct fake *k, char op, uint64_t count, uint64_t offset,
             uint32_t flags)
{
  assert_int_equal (k->last.op, op);
  assert_int_equal (k->last.count, count);
  assert_int_equal (k->last.offset, offset);
  assert_int_equal (k->last.flags, flags);
}

/* ---- tests ---- */

static void
test_backing_faulty_pass_through (void **state)
{
  bool closed;
  struct fake *k = fake_create ("nbd://example/disk", &closed);
  struct backing *b;
  char buf[16];
  int n = 0;

  assert_int_equal (backing_faulty_wrap (&k->b, &b), 0);
  assert_string_equal (b->ops->name, "faulty");
  /* The same identity (a copy, not the inner pointer), size and caps. */
  assert_string_equal (b->uri, "nbd://example/disk");
  assert_ptr_not_equal (b->uri, k->b.uri);
  assert_int_equal (b->size_bytes, 12345 * KIB);
  assert_true (b->readonly && !b->can_trim && b->can_zero &&
               !b->can_fast_zero && b->can_extents && b->is_block_device);

  /* Every op reaches the inner store with its arguments in place. */
  assert_int_equal (backing_pread (b, buf, 7, 100), 0);
  assert_call (k, 'r', 7, 100, 0);
  assert_int_equal (backing_pwrite (b, buf, 9, 200, BACKING_FUA), 0);
  assert_call (k, 'w', 9, 200, BACKING_FUA);
  assert_int_equal (backing_trim (b, 11, 300, 0), 0);
  assert_call (k, 't', 11, 300, 0);
  assert_int_equal (backing_zero (b, 13, 400,
                                  BACKING_MAY_TRIM | BACKING_FAST), 0);
  assert_call (k, 'z', 13, 400, BACKING_MAY_TRIM | BACKING_FAST);
  assert_int_equal (backing_flush (b), 0);
  assert_call (k, 'f', 0, 0, 0);
  assert_int_equal (backing_extents (b, 17, 500, count_extent, &n), 0);
  assert_call (k, 'e', 17, 500, 0);
  assert_int_equal (n, 1);
  assert_int_equal (k->n_calls, 6);
  assert_int_equal (backing_faulty_nr_failed (b), 0);

  /* Closing closes the inner store. */
  assert_false (closed);
  backing_close (b);
  assert_true (closed);

  /* An inner store without a uri is fine too. */
  k = fake_create (NULL, &closed);
  assert_int_equal (backing_faulty_wrap (&k->b, &b), 0);
  assert_null (b->uri);
  backing_close (b);
  assert_true (closed);
  assert_int_equal (test_log_errors (), 0);
}

static void
test_backing_faulty_memory_identity (void **state)
{
  struct backing *inner, *b;
  char *uri;

  assert_int_equal (backing_memory_create (3 * MIB, &inner), 0);
  uri = strdup (inner->uri);
  assert_non_null (uri);
  assert_int_equal (backing_faulty_wrap (inner, &b), 0);
  assert_string_equal (b->uri, uri);
  assert_int_equal (b->size_bytes, 3 * MIB);
  assert_true (b->can_trim && b->can_zero && b->can_fast_zero &&
               b->can_extents && !b->readonly);
  free (uri);
  backing_close (b);
  backing_close (NULL);
}

static void
test_backing_faulty_write_faults (void **state)
{
  struct backing *b = create (1 * MIB);
  unsigned char w[8192], r[8192];
  uint64_t failed = 0;

  memset (w, 0x5a, sizeof w);
  memset (r, 0, sizeof r);
  assert_int_equal (backing_pwrite (b, w, 8192, 0, 0), 0);
  backing_faulty_fail_writes (b, 4096, 4096);        /* [4096, 8192) */

  /* Just outside on either side: fine.  One byte in: fails. */
  assert_int_equal (backing_pwrite (b, r, 4096, 0, 0), 0);
  assert_int_equal (backing_pwrite (b, r, 1, 8192, 0), 0);
  assert_int_equal (backing_pwrite (b, r, 1, 4095, 0), 0);
  assert_int_equal (backing_pwrite (b, r, 2, 4095, 0), -EIO); failed++;
  assert_int_equal (backing_pwrite (b, r, 1, 8191, 0), -EIO); failed++;
  assert_int_equal (backing_pwrite (b, r, 8192, 2048, 0), -EIO); failed++;
  assert_int_equal (backing_zero (b, 1, 5000, 0), -EIO); failed++;
  assert_int_equal (backing_zero (b, 4096, 0, 0), 0);
  assert_int_equal (backing_trim (b, 100 * KIB, 0, 0), -EIO); failed++;
  assert_int_equal (backing_trim (b, 10, 8192, 0), 0);
  assert_int_equal (backing_faulty_nr_failed (b), failed);

  /* Reads and extents are unaffected, and the failed writes wrote
   * nothing: [4096, 8192) still holds the pattern.
   */
  assert_int_equal (backing_pread (b, r, 4096, 4096), 0);
  assert_memory_equal (r, w, 4096);
  assert_int_equal (backing_faulty_nr_failed (b), failed);

  /* Re-arming moves the fault; disarming clears it. */
  backing_faulty_fail_writes (b, 0, 1);
  assert_int_equal (backing_pwrite (b, w, 1, 5000, 0), 0);
  assert_int_equal (backing_zero (b, 1, 0, BACKING_MAY_TRIM), -EIO); failed++;
  backing_faulty_fail_writes (b, 0, 0);
  assert_int_equal (backing_zero (b, 1 * MIB, 0, 0), 0);
  assert_int_equal (backing_pwrite (b, w, 8192, 4096, 0), 0);
  assert_int_equal (backing_faulty_nr_failed (b), failed);

  /* A fault reaching past the end of the offset space saturates. */
  backing_faulty_fail_writes (b, 1 * MIB - 1, UINT64_MAX);
  assert_int_equal (backing_pwrite (b, w, 1, 1 * MIB - 1, 0), -EIO); failed++;
  assert_int_equal (backing_pwrite (b, w, 1, 1 * MIB - 2, 0), 0);
  /* Zero-length I/O touches nothing. */
  assert_int_equal (backing_trim (b, 0, 1 * MIB - 1, 0), 0);
  assert_int_equal (backing_faulty_nr_failed (b), failed);
  assert_int_equal (test_log_errors (), 0);
  backing_close (b);
}

static void
test_backing_faulty_read_faults (void **state)
{
  struct backing *b = create (1 * MIB);
  unsigned char buf[4096];
  int n = 0;

  backing_faulty_fail_reads (b, 10000, 10);          /* [10000, 10010) */
  assert_int_equal (backing_pread (b, buf, 1, 9999), 0);
  assert_int_equal (backing_pread (b, buf, 1, 10010), 0);
  assert_int_equal (backing_pread (b, buf, 2, 9999), -EIO);
  assert_int_equal (backing_pread (b, buf, 1, 10009), -EIO);
  assert_int_equal (backing_pread (b, buf, 4096, 8192), -EIO);
  /* Writes and extents pass. */
  memset (buf, 7, sizeof buf);
  assert_int_equal (backing_pwrite (b, buf, 4096, 8192, 0), 0);
  assert_int_equal (backing_zero (b, 10, 10000, 0), 0);
  assert_int_equal (backing_extents (b, 1 * MIB, 0, count_extent, &n), 0);
  assert_int_equal (n, 3);      /* hole, the data page, hole */
  assert_int_equal (backing_faulty_nr_failed (b), 3);

  backing_faulty_fail_reads (b, 0, 0);
  assert_int_equal (backing_pread (b, buf, 4096, 8192), 0);
  assert_int_equal (buf[0], 7);
  assert_int_equal (buf[10000 - 8192], 0);
  assert_int_equal (backing_faulty_nr_failed (b), 3);
  assert_int_equal (test_log_errors (), 0);
  backing_close (b);
}

static void
test_backing_faulty_flush_faults (void **state)
{
  struct backing *b = create (1 * MIB);
  unsigned char buf[512] = { 1 };

  backing_faulty_fail_flush (b, true);
  assert_int_equal (backing_flush (b), -EIO);
  assert_int_equal (backing_pwrite (b, buf, 512, 0, BACKING_FUA), -EIO);
  assert_int_equal (backing_zero (b, 512, 0, BACKING_FUA), -EIO);
  assert_int_equal (backing_trim (b, 512, 0, BACKING_FUA), -EIO);
  /* Without FUA, writes go through. */
  assert_int_equal (backing_pwrite (b, buf, 512, 0, 0), 0);
  assert_int_equal (backing_zero (b, 512, 512, BACKING_MAY_TRIM), 0);
  assert_int_equal (backing_pread (b, buf, 1, 0), 0);
  assert_int_equal (backing_faulty_nr_failed (b), 4);

  backing_faulty_fail_flush (b, false);
  assert_int_equal (backing_flush (b), 0);
  assert_int_equal (backing_pwrite (b, buf, 512, 0, BACKING_FUA), 0);
  assert_int_equal (backing_faulty_nr_failed (b), 4);
  assert_int_equal (test_log_errors (), 0);
  backing_close (b);
}

static void
test_backing_faulty_wrong_handle (void **state)
{
  struct backing *m;

  /* The fault controls refuse (and log) another driver's handle. */
  assert_int_equal (backing_memory_create (1 * MIB, &m), 0);
  backing_faulty_fail_writes (m, 0, 10);
  backing_faulty_fail_flush (m, true);
  assert_int_equal (backing_faulty_nr_failed (m), 0);
  assert_int_equal (backing_flush (m), 0);
  assert_int_equal (test_log_errors (), 3);
  backing_close (m);
  assert_int_equal (backing_faulty_wrap (NULL, &m), -EINVAL);
}

/* ---- re-arming while I/O runs ---- */

#define N_IO_THREADS 2
#define SAFE_OFFSET (512 * KIB)

struct io_thread {
  struct backing *b;
  uint64_t seed;
  bool stop;                    /* atomic */
  int wrong;                    /* safe I/O that failed */
  int ios;                      /* atomic */
};

static void *
io_thread (void *arg)
{
  struct io_thread *t = arg;
  unsigned char buf[512];

  memset (buf, 3, sizeof buf);
  while (!__atomic_load_n (&t->stop, __ATOMIC_ACQUIRE)) {
    uint64_t off = SAFE_OFFSET + test_splitmix_next (&t->seed) % 1024 * 512;

    if (backing_pwrite (t->b, buf, sizeof buf, off, 0) != 0 ||
        backing_pread (t->b, buf, sizeof buf, off) != 0)
      t->wrong++;
    __atomic_add_fetch (&t->ios, 1, __ATOMIC_RELAXED);
  }
  return NULL;
}

static void
test_backing_faulty_concurrent_arming (void **state)
{
  /* The I/O threads stay in [512 KIB, 1 MIB).  The faults alternate
   * between [0, 4 KIB) and [1 MIB, 1 MIB + 1 TiB), never touching them;
   * a torn setting (the first offset with the second count) would.
   */
  struct backing *b = create (2 * MIB);
  struct io_thread t[N_IO_THREADS];
  uint64_t seed = seed_from_env ("test_backing_faulty_concurrent_arming");
  pthread_t th[N_IO_THREADS];
  int i, round;

  for (i = 0; i < N_IO_THREADS; ++i) {
    t[i] = (struct io_thread) { .b = b, .seed = seed + (uint64_t) i * 31 };
    assert_int_equal (pthread_create (&th[i], NULL, io_thread, &t[i]), 0);
  }
  /* Until each thread has done its share of I/O under the re-arming (a
   * bound on the rounds keeps a stuck thread from hanging the test).
   */
  for (round = 0; round < 50000000; ++round) {
    if (round % 1024 == 0) {
      for (i = 0; i < N_IO_THREADS; ++i)
        if (__atomic_load_n (&t[i].ios, __ATOMIC_RELAXED) < 20000)
          break;
      /* round > 0: the threads may finish their share before the
       * first round (a descheduled main thread on a busy machine), and
       * the check below needs one odd round to have armed [0, 4 KIB).
       */
      if (i == N_IO_THREADS && round % 2 == 0 && round > 0)
        break;
    }
    if (round % 2) {
      backing_faulty_fail_writes (b, 0, 4 * KIB);
      backing_faulty_fail_reads (b, 0, 4 * KIB);
    }
    else {
      backing_faulty_fail_writes (b, 1 * MIB, 1 * MIB * MIB);
      backing_faulty_fail_reads (b, 1 * MIB, 1 * MIB * MIB);
    }
  }
  for (i = 0; i < N_IO_THREADS; ++i) {
    __atomic_store_n (&t[i].stop, true, __ATOMIC_RELEASE);
    assert_int_equal (pthread_join (th[i], NULL), 0);
    assert_int_equal (t[i].wrong, 0);
  }
  assert_int_equal (backing_faulty_nr_failed (b), 0);
  /* And the faults really are armed (the last round armed [0, 4 KIB)). */
  assert_int_equal (backing_pwrite (b, (char[1]) { 0 }, 1, 4095, 0), -EIO);
  assert_int_equal (backing_faulty_nr_failed (b), 1);
  assert_int_equal (test_log_errors (), 0);
  backing_close (b);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown (fn, setup, teardown)
    T (test_backing_faulty_pass_through),
    T (test_backing_faulty_memory_identity),
    T (test_backing_faulty_write_faults),
    T (test_backing_faulty_read_faults),
    T (test_backing_faulty_flush_faults),
    T (test_backing_faulty_wrong_handle),
    T (test_backing_faulty_concurrent_arming),
#undef T
  };

  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
