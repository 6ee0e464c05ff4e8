/* SPDX-License-Identifier: BSD-3-Clause */
/* test-backing-memory.c — unit tests for the in-memory backing driver.
 *
 * WHAT: creation (directly and as "memory:SIZE"), round trips against a
 * flat model (random, seeded), trim and zero (exact edges, holes),
 * FAST zero, extents (layout, sub-ranges, early stop, errors, huge sparse
 * stores), read-only handles, range errors, and a concurrency smoke test.
 * WHY: engine and server tests trust this store as their ground truth.
 *
 * INVARIANTS: random tests print their seed; NBDCACHE_SEED overrides
 * it.  Each concurrent thread owns a disjoint region and its own model, so
 * the final contents are deterministic for a seed.
 * THREADS AND LOCKS: the smoke test runs writer threads plus one thread
 * that walks extents over the whole store at the same time.
 * FAILURE: cmocka assertions (threads report through a failure counter,
 * since cmocka's assertions are not thread-safe).
 * NOT HERE: the file driver (test-backing-file.c).
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

#include "testkit.h"

#include "backing.h"
#include "compiler.h"
#include "log.h"

#define HOLE_ZERO (BACKING_EXTENT_HOLE | BACKING_EXTENT_ZERO)

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

/* ---- helpers ---- */

static uint64_t
seed_from_env (const char *test)
{
  uint64_t seed = test_seed_from_env (test);

  return seed ? seed : 1;
}

static void
fill_pattern (void *buf, size_t n, unsigned seed)
{
  unsigned char *p = buf;
  size_t i;

  for (i = 0; i < n; ++i)
    p[i] = (unsigned char) (i * 31 + seed * 7 + 1);
}

static bool
all_zero (const void *buf, size_t n)
{
  const unsigned char *p = buf;
  size_t i;

  for (i = 0; i < n; ++i)
    if (p[i] != 0)
      return false;
  return true;
}

static void
assert_reads_zero (struct backing *b, uint64_t offset, size_t count)
{
  unsigned char *buf = malloc (count);

  assert_non_null (buf);
  memset (buf, 0xaa, count);
  assert_int_equal (backing_pread (b, buf, count, offset), 0);
  assert_true (all_zero (buf, count));
  free (buf);
}

struct extent {
  uint64_t offset, length;
  uint32_t flags;
};

struct extent_list {
  struct extent e[64];
  size_t n;
  int stop_after;
  int fail_with;
};

static int
collect_extent (void *opaque, uint64_t offset, uint64_t length,
                uint32_t flags)
{
  struct extent_list *l = opaque;

  if (l->fail_with < 0)
    return l->fail_with;
  assert_true (l->n < ARRAY_SIZE (l->e));
  l->e[l->n].offset = offset;
  l->e[l->n].length = length;
  l->e[l->n].flags = flags;
  l->n++;
  if (l->stop_after > 0 && l->n == (size_t) l->stop_after)
    return 1;
  return 0;
}

static void
get_extents (struct backing *b, uint64_t offset, uint64_t count,
             struct extent_list *l)
{
  uint64_t pos = offset;
  size_t i;

  memset (l, 0, sizeof *l);
  assert_int_equal (backing_extents (b, count, offset, collect_extent, l), 0);
  for (i = 0; i < l->n; ++i) {
    assert_int_equal (l->e[i].offset, pos);
    assert_true (l->e[i].length > 0);
    pos += l->e[i].length;
    if (i > 0)
      assert_int_not_equal (l->e[i].flags, l->e[i - 1].flags);
  }
  assert_int_equal (pos, offset + count);
}

static struct backing *
create (uint64_t size)
{
  struct backing *b = NULL;

  assert_int_equal (backing_memory_create (size, &b), 0);
  assert_non_null (b);
  return b;
}

/* ---- tests ---- */

static void
test_backing_memory_create (void **state)
{
  struct backing *b;
  struct extent_list l;

  b = create (3 * MIB + 5);
  assert_string_equal (b->ops->name, "memory");
  assert_int_equal (b->size_bytes, 3 * MIB + 5);
  assert_string_equal (b->uri, "memory:3145733");
  assert_true (b->can_trim && b->can_zero && b->can_fast_zero);
  assert_true (b->can_extents);
  assert_false (b->readonly);
  assert_false (b->is_block_device);
  assert_reads_zero (b, 0, 3 * MIB + 5);
  get_extents (b, 0, 3 * MIB + 5, &l);
  assert_int_equal (l.n, 1);
  assert_int_equal (l.e[0].flags, HOLE_ZERO);
  backing_close (b);

  assert_int_equal (backing_open ("memory:64M", NULL, &b), 0);
  assert_int_equal (b->size_bytes, 64 * MIB);
  assert_string_equal (b->uri, "memory:67108864");
  backing_close (b);

  /* An empty store is valid; only empty requests fit. */
  b = create (0);
  assert_int_equal (backing_pread (b, NULL, 0, 0), 0);
  assert_int_equal (backing_pwrite (b, "x", 1, 0, 0), -EINVAL);
  backing_close (b);
}

static void
test_backing_memory_bad_uri (void **state)
{
  struct backing *b = NULL;

  assert_int_equal (backing_open ("memory:", NULL, &b), -EINVAL);
  assert_int_equal (backing_open ("memory:12Q", NULL, &b), -EINVAL);
  assert_int_equal (backing_open ("memory:-1", NULL, &b), -EINVAL);
  assert_int_equal (backing_open ("memory:99999999999999999999", NULL, &b),
                    -ERANGE);
  assert_int_equal (backing_open ("memory:9223372036854775808", NULL, &b),
                    -EFBIG);
  assert_null (b);
  assert_int_equal (test_log_errors (), 5);
}

static void
test_backing_memory_round_trip_random (void **state)
{
  const size_t size = 4 * MIB + 1234;
  struct backing *b = create (size);
  unsigned char *model = calloc (1, size), *buf = malloc (size);
  uint64_t s = seed_from_env ("test_backing_memory_round_trip_random");
  int i;

  assert_non_null (model);
  assert_non_null (buf);
  for (i = 0; i < 2000; ++i) {
    uint64_t off = test_splitmix_next (&s) % size;
    size_t len = (size_t) (test_splitmix_next (&s) % MIN ((uint64_t) (size - off),
                                                 40 * KIB));
    size_t j;

    switch (test_splitmix_next (&s) % 5) {
    case 0: case 1:                     /* write random or zero data */
      for (j = 0; j < len; ++j)
        model[off + j] = (i % 7 == 0) ? 0 : (unsigned char) test_splitmix_next (&s);
      assert_int_equal (backing_pwrite (b, model + off, len, off,
                                        i & 1 ? BACKING_FUA : 0), 0);
      break;
    case 2:                             /* zero */
      memset (model + off, 0, len);
      assert_int_equal (backing_zero (b, len, off,
                                      test_splitmix_next (&s) & 1 ? BACKING_MAY_TRIM
                                      : BACKING_FAST), 0);
      break;
    case 3:                             /* trim: the memory store zeroes */
      memset (model + off, 0, len);
      assert_int_equal (backing_trim (b, len, off, 0), 0);
      break;
    case 4:
      assert_int_equal (backing_pread (b, buf, len, off), 0);
      assert_memory_equal (buf, model + off, len);
      break;
    }
  }
  assert_int_equal (backing_flush (b), 0);
  assert_int_equal (backing_pread (b, buf, size, 0), 0);
  assert_memory_equal (buf, model, size);

  /* Extents agree with the model: data extents hold a non-zero byte in
   * every 4 KIB page, holes are all zero.
   */
  {
    struct extent_list l;
    uint64_t pos = 0;

    while (pos < size) {
      uint64_t chunk = MIN ((uint64_t) size - pos, 256 * KIB);
      size_t k;

      get_extents (b, pos, chunk, &l);
      for (k = 0; k < l.n; ++k) {
        if (l.e[k].flags == HOLE_ZERO)
          assert_true (all_zero (model + l.e[k].offset, l.e[k].length));
        else
          assert_int_equal (l.e[k].flags, 0);
      }
      pos += chunk;
    }
  }
  free (model);
  free (buf);
  backing_close (b);
}

static void
test_backing_memory_out_of_range (void **state)
{
  struct backing *b = create (1 * MIB);
  unsigned char buf[2];

  assert_int_equal (backing_pread (b, buf, 2, 1 * MIB - 1), -EINVAL);
  assert_int_equal (backing_pwrite (b, buf, 2, 1 * MIB - 1, 0), -EINVAL);
  assert_int_equal (backing_pwrite (b, buf, 1, UINT64_MAX, 0), -EINVAL);
  assert_int_equal (backing_trim (b, 2, 1 * MIB - 1, 0), -EINVAL);
  assert_int_equal (backing_zero (b, UINT64_MAX, 1, 0), -EINVAL);
  assert_int_equal (backing_extents (b, 1, 1 * MIB, collect_extent, NULL),
                    -EINVAL);
  assert_int_equal (test_log_errors (), 6);
  backing_close (b);
}

static void
test_backing_memory_trim_and_zero (void **state)
{
  struct backing *b = create (1 * MIB);
  unsigned char *w = malloc (1 * MIB), r[1];
  struct extent_list l;

  assert_non_null (w);
  fill_pattern (w, 1 * MIB, 2);
  assert_int_equal (backing_pwrite (b, w, 1 * MIB, 0, 0), 0);
  get_extents (b, 0, 1 * MIB, &l);
  assert_int_equal (l.n, 1);
  assert_int_equal (l.e[0].flags, 0);

  /* Aligned trim: a hole. */
  assert_int_equal (backing_trim (b, 64 * KIB, 64 * KIB, 0), 0);
  assert_reads_zero (b, 64 * KIB, 64 * KIB);
  get_extents (b, 0, 1 * MIB, &l);
  assert_int_equal (l.n, 3);
  assert_int_equal (l.e[1].offset, 64 * KIB);
  assert_int_equal (l.e[1].length, 64 * KIB);
  assert_int_equal (l.e[1].flags, HOLE_ZERO);

  /* Unaligned zero, either way: exact edges; partial pages stay data. */
  assert_int_equal (backing_zero (b, 10000, 200 * KIB + 5, 0), 0);
  assert_reads_zero (b, 200 * KIB + 5, 10000);
  assert_int_equal (backing_pread (b, r, 1, 200 * KIB + 4), 0);
  assert_int_equal (r[0], w[200 * KIB + 4]);
  assert_int_equal (backing_pread (b, r, 1, 200 * KIB + 10005), 0);
  assert_int_equal (r[0], w[200 * KIB + 10005]);
  get_extents (b, 200 * KIB, 16 * KIB, &l);
  assert_int_equal (l.n, 3);            /* data, hole (one page), data */
  assert_int_equal (l.e[1].offset, 204 * KIB);
  assert_int_equal (l.e[1].length, 4 * KIB);

  assert_int_equal (backing_zero (b, 300 * KIB, 400 * KIB,
                                  BACKING_MAY_TRIM | BACKING_FUA), 0);
  assert_reads_zero (b, 400 * KIB, 300 * KIB);

  /* FAST always succeeds here. */
  assert_int_equal (backing_zero (b, 4 * KIB + 3, 800 * KIB - 1,
                                  BACKING_FAST), 0);
  assert_reads_zero (b, 800 * KIB - 1, 4 * KIB + 3);

  /* Zeroing the rest of a partly-zeroed page frees it: the pages at
   * 200 KIB and 208 KIB kept data only outside the zeroed range.
   */
  assert_int_equal (backing_zero (b, 5, 200 * KIB, 0), 0);
  assert_int_equal (backing_zero (b, 212 * KIB - (200 * KIB + 10005),
                                  200 * KIB + 10005, 0), 0);
  get_extents (b, 200 * KIB, 12 * KIB, &l);
  assert_int_equal (l.n, 1);
  assert_int_equal (l.e[0].flags, HOLE_ZERO);

  /* Writing zeros allocates nothing. */
  memset (w, 0, 64 * KIB);
  assert_int_equal (backing_pwrite (b, w, 64 * KIB, 900 * KIB, 0), 0);
  get_extents (b, 900 * KIB, 64 * KIB, &l);
  assert_int_equal (l.n, 1);
  assert_int_equal (l.e[0].flags, HOLE_ZERO);
  assert_int_equal (test_log_errors (), 0);
  free (w);
  backing_close (b);
}

static void
test_backing_memory_extents (void **state)
{
  /* A large sparse store: tables exist only where data is. */
  const uint64_t size = UINT64_C (1) << 40;    /* 1 TiB */
  struct backing *b;
  struct extent_list l;
  unsigned char buf[8192];

  assert_int_equal (backing_open ("memory:1T", NULL, &b), 0);
  fill_pattern (buf, sizeof buf, 3);
  assert_int_equal (backing_pwrite (b, buf, 100, 0, 0), 0);
  assert_int_equal (backing_pwrite (b, buf, 8192, 512 * MIB + 4096, 0), 0);
  assert_int_equal (backing_pwrite (b, buf, 1, size - 1, 0), 0);

  get_extents (b, 0, size, &l);
  assert_int_equal (l.n, 5);
  assert_int_equal (l.e[0].length, 4096);
  assert_int_equal (l.e[0].flags, 0);
  assert_int_equal (l.e[1].flags, HOLE_ZERO);
  assert_int_equal (l.e[2].offset, 512 * MIB + 4096);
  assert_int_equal (l.e[2].length, 8192);
  assert_int_equal (l.e[3].flags, HOLE_ZERO);
  assert_int_equal (l.e[4].offset, size - 4096);
  assert_int_equal (l.e[4].flags, 0);

  /* Sub-range inside the first page, and across a data/hole edge. */
  get_extents (b, 10, 20, &l);
  assert_int_equal (l.n, 1);
  assert_int_equal (l.e[0].flags, 0);
  get_extents (b, 512 * MIB, 4097, &l);
  assert_int_equal (l.n, 2);
  assert_int_equal (l.e[0].flags, HOLE_ZERO);
  assert_int_equal (l.e[1].length, 1);

  /* Early stop and errors from the callback. */
  memset (&l, 0, sizeof l);
  l.stop_after = 2;
  assert_int_equal (backing_extents (b, size, 0, collect_extent, &l), 0);
  assert_int_equal (l.n, 2);
  memset (&l, 0, sizeof l);
  l.fail_with = -ENOMEM;
  assert_int_equal (backing_extents (b, size, 0, collect_extent, &l),
                    -ENOMEM);

  /* Trimming everything leaves one hole. */
  assert_int_equal (backing_trim (b, size, 0, 0), 0);
  get_extents (b, 0, size, &l);
  assert_int_equal (l.n, 1);
  assert_int_equal (l.e[0].flags, HOLE_ZERO);
  backing_close (b);
}

static void
test_backing_memory_readonly (void **state)
{
  struct backing_open_options ro = { .readonly = true };
  struct backing *b;
  unsigned char buf[16];

  assert_int_equal (backing_open ("memory:1M", &ro, &b), 0);
  assert_true (b->readonly);
  assert_false (b->can_trim || b->can_zero || b->can_fast_zero);
  assert_int_equal (backing_pwrite (b, buf, sizeof buf, 0, 0), -EROFS);
  assert_int_equal (backing_trim (b, 4096, 0, 0), -EROFS);
  assert_int_equal (backing_zero (b, 4096, 0, BACKING_FAST), -EROFS);
  assert_int_equal (test_log_errors (), 3);
  assert_int_equal (backing_flush (b), 0);
  assert_reads_zero (b, 0, 1 * MIB);
  backing_close (b);
}

/* ---- concurrency smoke test ---- */

#define N_WRITERS 4
#define REGION_BYTES (256 * 1024)

struct writer {
  struct backing *b;
  uint64_t base, seed;
  unsigned char model[REGION_BYTES];
  unsigned char buf[REGION_BYTES];
  int failures;
};

static void *
writer_thread (void *arg)
{
  struct writer *w = arg;
  uint64_t s = w->seed;
  int i;

  for (i = 0; i < 3000; ++i) {
    uint64_t off = test_splitmix_next (&s) % REGION_BYTES;
    size_t len = (size_t) (test_splitmix_next (&s) % MIN ((uint64_t) REGION_BYTES - off,
                                                 16 * KIB));
    size_t j;

    switch (test_splitmix_next (&s) % 4) {
    case 0: case 1:
      for (j = 0; j < len; ++j)
        w->model[off + j] = (unsigned char) test_splitmix_next (&s);
      if (backing_pwrite (w->b, w->model + off, len, w->base + off, 0) != 0)
        w->failures++;
      break;
    case 2:
      memset (w->model + off, 0, len);
      if (backing_zero (w->b, len, w->base + off, BACKING_MAY_TRIM) != 0)
        w->failures++;
      break;
    case 3:
      if (backing_pread (w->b, w->buf, len, w->base + off) != 0 ||
          memcmp (w->buf, w->model + off, len) != 0)
        w->failures++;
      break;
    }
  }
  return NULL;
}

struct walker {
  struct backing *b;
  bool stop;
  unsigned walks;
  int failures;
  uint64_t pos;
};

static int
check_contiguous (void *opaque, uint64_t offset, uint64_t length,
                  uint32_t flags)
{
  struct walker *k = opaque;

  if (offset != k->pos || length == 0 ||
      (flags != 0 && flags != HOLE_ZERO))
    k->failures++;
  k->pos = offset + length;
  return 0;
}

static void *
walker_thread (void *arg)
{
  struct walker *k = arg;

  while (!__atomic_load_n (&k->stop, __ATOMIC_ACQUIRE)) {
    k->pos = 0;
    if (backing_extents (k->b, k->b->size_bytes, 0, check_contiguous, k) != 0
        || k->pos != k->b->size_bytes)
      k->failures++;
    k->walks++;
  }
  return NULL;
}

static void
test_backing_memory_concurrent (void **state)
{
  struct backing *b = create (N_WRITERS * REGION_BYTES);
  struct writer *w = calloc (N_WRITERS, sizeof *w);
  struct walker k = { .b = b };
  uint64_t seed = seed_from_env ("test_backing_memory_concurrent");
  pthread_t th[N_WRITERS], walker;
  unsigned char *buf = malloc (REGION_BYTES);
  int i;

  assert_non_null (w);
  assert_non_null (buf);
  assert_int_equal (pthread_create (&walker, NULL, walker_thread, &k), 0);
  for (i = 0; i < N_WRITERS; ++i) {
    w[i].b = b;
    w[i].base = (uint64_t) i * REGION_BYTES;
    w[i].seed = seed + (uint64_t) i * 7919;
    assert_int_equal (pthread_create (&th[i], NULL, writer_thread, &w[i]), 0);
  }
  for (i = 0; i < N_WRITERS; ++i)
    assert_int_equal (pthread_join (th[i], NULL), 0);
  __atomic_store_n (&k.stop, true, __ATOMIC_RELEASE);
  assert_int_equal (pthread_join (walker, NULL), 0);

  assert_int_equal (k.failures, 0);
  assert_true (k.walks > 0);
  for (i = 0; i < N_WRITERS; ++i) {
    assert_int_equal (w[i].failures, 0);
    assert_int_equal (backing_pread (b, buf, REGION_BYTES, w[i].base), 0);
    assert_memory_equal (buf, w[i].model, REGION_BYTES);
  }
  assert_int_equal (test_log_errors (), 0);
  free (buf);
  free (w);
  backing_close (b);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown (fn, setup, teardown)
    T (test_backing_memory_create),
    T (test_backing_memory_bad_uri),
    T (test_backing_memory_round_trip_random),
    T (test_backing_memory_out_of_range),
    T (test_backing_memory_trim_and_zero),
    T (test_backing_memory_extents),
    T (test_backing_memory_readonly),
    T (test_backing_memory_concurrent),
#undef T
  };

  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
