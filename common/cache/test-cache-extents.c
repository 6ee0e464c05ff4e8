/* SPDX-License-Identifier: BSD-3-Clause */
/* test-cache-extents.c — unit tests for the export handle's errors and
 * extents (cache.c, status.c) in mode none.
 *
 * WHAT: flag errors and backing-store errors on every request; extents
 * with holes (clipping, REQ_ONE, early stop, errors, a misbehaving
 * driver), the one-walk read of holes and data (ncache_pread_extents),
 * and the memory store's own extents.
 * HOW: the spy backing store (test-cache-spy.h) scripts the extents.
 */
#include <config.h>

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backing.h"
#include "cache.h"
#include "log.h"
#include "test-cache-spy.h"
#include "testkit.h"

static void
test_cache_flag_errors (void **state)
{
  struct spy_record rec;
  struct ncache_export *nc = open_spy (&all_caps, false, &rec);
  unsigned char buf[512] = { 0 };
  const uint32_t unknown = 1u << 20;
  unsigned n = 0;

  assert_int_equal (ncache_pread (nc, buf, 512, 0, NCACHE_FUA), -EINVAL);
  assert_int_equal (ncache_pread (nc, buf, 512, 0, unknown), -EINVAL);
  assert_int_equal (ncache_pwrite (nc, buf, 512, 0, NCACHE_MAY_TRIM), -EINVAL);
  assert_int_equal (ncache_pwrite (nc, buf, 512, 0, NCACHE_FAST_ZERO), -EINVAL);
  assert_int_equal (ncache_pwrite (nc, buf, 512, 0, NCACHE_REQ_ONE), -EINVAL);
  assert_int_equal (ncache_flush (nc, NCACHE_FUA), -EINVAL);
  assert_int_equal (ncache_trim (nc, 512, 0, NCACHE_MAY_TRIM), -EINVAL);
  assert_int_equal (ncache_trim (nc, 512, 0, NCACHE_FAST_ZERO), -EINVAL);
  assert_int_equal (ncache_zero (nc, 512, 0, NCACHE_REQ_ONE), -EINVAL);
  assert_int_equal (ncache_zero (nc, 512, 0, unknown), -EINVAL);
  assert_int_equal (ncache_cache (nc, 512, 0, NCACHE_FUA), -EINVAL);
  assert_int_equal (ncache_extents (nc, 512, 0, NCACHE_FUA, count_extent, &n),
                    -EINVAL);
  assert_int_equal (n, 0);
  assert_int_equal (rec.nr_pread + rec.nr_pwrite + rec.nr_flush + rec.nr_trim +
                    rec.nr_zero + rec.nr_extents, 0);
  ncache_close (nc);
}

static void
test_cache_backing_errors (void **state)
{
  struct spy_record rec;
  struct ncache_export *nc = open_spy (&all_caps, false, &rec);
  unsigned char buf[512] = { 0 };
  struct ncache_stats st;
  unsigned n = 0;

  rec.fail_next = -EIO;
  assert_int_equal (ncache_pread (nc, buf, 512, 0, 0), -EIO);
  rec.fail_next = -ENOSPC;
  assert_int_equal (ncache_pwrite (nc, buf, 512, 0, 0), -ENOSPC);
  rec.fail_next = -EIO;
  assert_int_equal (ncache_flush (nc, 0), -EIO);
  rec.fail_next = -EIO;
  assert_int_equal (ncache_trim (nc, 512, 0, 0), -EIO);
  rec.fail_next = -EIO;
  assert_int_equal (ncache_zero (nc, 512, 0, 0), -EIO);
  rec.fail_next = -EIO;
  assert_int_equal (ncache_extents (nc, 512, 0, 0, count_extent, &n), -EIO);
  ncache_get_stats (nc, &st);
  assert_true (st.errors == 6);
  assert_true (st.reads == 0 && st.writes == 0 && st.flushes == 0 &&
               st.trims == 0 && st.zeroes == 0 && st.extents == 0);
  /* The handle still works afterwards. */
  assert_int_equal (ncache_pread (nc, buf, 512, 0, 0), 0);
  ncache_close (nc);
}

/* ---- extents ---- */

struct got_extent {
  uint64_t offset, length;
  uint32_t flags;
};

struct extent_list {
  struct got_extent e[16];
  size_t n;
  int stop_after;               /* return this after stop_at extents */
  size_t stop_at;
};

static int
collect_extent (void *opaque, uint64_t offset, uint64_t length, uint32_t flags)
{
  struct extent_list *l = opaque;

  assert_true (l->n < 16);
  l->e[l->n].offset = offset;
  l->e[l->n].length = length;
  l->e[l->n].flags = flags;
  l->n++;
  if (l->stop_at && l->n == l->stop_at)
    return l->stop_after;
  return 0;
}

static void
assert_extent (const struct extent_list *l, size_t i, uint64_t offset,
               uint64_t length, uint32_t flags)
{
  assert_true (i < l->n);
  assert_true (l->e[i].offset == offset);
  assert_true (l->e[i].length == length);
  assert_int_equal (l->e[i].flags, flags);
}

/* data [0,4k) | hole+zero [4k,12k) | zero [12k,16k) | data to the end */
static const struct script_extent script[] = {
  { 4096, 0 },
  { 8192, NCACHE_EXTENT_HOLE | NCACHE_EXTENT_ZERO },
  { 4096, NCACHE_EXTENT_ZERO },
  { EXPORT_BYTES - 16384, 0 },
};

static struct ncache_export *
open_scripted (struct spy_record *rec)
{
  struct ncache_export *nc = open_spy (&all_caps, false, rec);

  rec->script = script;
  rec->nr_script = sizeof script / sizeof script[0];
  return nc;
}

static void
test_cache_extents_holes (void **state)
{
  struct spy_record rec;
  struct ncache_export *nc = open_scripted (&rec);
  struct extent_list l;

  /* Whole export. */
  memset (&l, 0, sizeof l);
  assert_int_equal (ncache_extents (nc, EXPORT_BYTES, 0, 0, collect_extent, &l), 0);
  assert_int_equal (l.n, 4);
  assert_extent (&l, 0, 0, 4096, 0);
  assert_extent (&l, 1, 4096, 8192, NCACHE_EXTENT_HOLE | NCACHE_EXTENT_ZERO);
  assert_extent (&l, 2, 12288, 4096, NCACHE_EXTENT_ZERO);
  assert_extent (&l, 3, 16384, EXPORT_BYTES - 16384, 0);

  /* Starting inside an extent, ending inside another: both ends clipped. */
  memset (&l, 0, sizeof l);
  assert_int_equal (ncache_extents (nc, 8192, 2048, 0, collect_extent, &l), 0);
  assert_int_equal (l.n, 2);
  assert_extent (&l, 0, 2048, 2048, 0);
  assert_extent (&l, 1, 4096, 6144, NCACHE_EXTENT_HOLE | NCACHE_EXTENT_ZERO);

  /* Entirely inside one extent. */
  memset (&l, 0, sizeof l);
  assert_int_equal (ncache_extents (nc, 100, 5000, 0, collect_extent, &l), 0);
  assert_int_equal (l.n, 1);
  assert_extent (&l, 0, 5000, 100, NCACHE_EXTENT_HOLE | NCACHE_EXTENT_ZERO);

  /* The last byte. */
  memset (&l, 0, sizeof l);
  assert_int_equal (ncache_extents (nc, 1, EXPORT_BYTES - 1, 0,
                                    collect_extent, &l), 0);
  assert_int_equal (l.n, 1);
  assert_extent (&l, 0, EXPORT_BYTES - 1, 1, 0);

  /* Zero length: nothing reported, backing not asked. */
  memset (&l, 0, sizeof l);
  rec.nr_extents = 0;
  assert_int_equal (ncache_extents (nc, 0, 4096, 0, collect_extent, &l), 0);
  assert_int_equal (l.n, 0);
  assert_int_equal (rec.nr_extents, 0);
  ncache_close (nc);
}

/* ncache_pread_extents in mode none: the backing's extents in order, the
 * data parts read, the zero parts left unwritten; a callback that stops
 * gets every later byte written (zeros included).
 */
static void
test_cache_pread_extents (void **state)
{
  struct spy_record rec;
  struct ncache_export *nc = open_scripted (&rec);
  unsigned char *buf = malloc (EXPORT_BYTES);
  struct extent_list l;
  uint64_t i;

  assert_non_null (buf);
  memset (buf, 0xee, EXPORT_BYTES);
  memset (&l, 0, sizeof l);
  rec.nr_pread = 0;
  assert_int_equal (ncache_pread_extents (nc, buf, 20480, 0, 0,
                                          collect_extent, &l), 0);
  assert_int_equal (l.n, 3);
  assert_extent (&l, 0, 0, 4096, 0);
  assert_extent (&l, 1, 4096, 12288, NCACHE_EXTENT_ZERO);
  assert_extent (&l, 2, 16384, 4096, 0);
  for (i = 4096; i < 16384; i++)
    assert_int_equal (buf[i], 0xee);    /* a hole is not read */
  assert_int_equal (rec.nr_pread, 2);

  /* Stop after the first extent: the rest is read, the hole zeroed. */
  memset (buf, 0xee, EXPORT_BYTES);
  memset (&l, 0, sizeof l);
  l.stop_at = 1;
  l.stop_after = 1;
  assert_int_equal (ncache_pread_extents (nc, buf, 20480, 0, 0,
                                          collect_extent, &l), 0);
  assert_int_equal (l.n, 1);
  assert_true (is_zero (buf + 4096, 12288));

  /* Stop at the hole itself: it is written too (the caller sends it as
   * data from there on).
   */
  memset (buf, 0xee, EXPORT_BYTES);
  memset (&l, 0, sizeof l);
  l.stop_at = 2;
  l.stop_after = 1;
  assert_int_equal (ncache_pread_extents (nc, buf, 20480, 0, 0,
                                          collect_extent, &l), 0);
  assert_int_equal (l.n, 2);
  assert_true (is_zero (buf + 4096, 12288));
  free (buf);
  ncache_close (nc);
}

static void
test_cache_extents_req_one_and_stop (void **state)
{
  struct spy_record rec;
  struct ncache_export *nc = open_scripted (&rec);
  struct extent_list l;
  struct ncache_stats st;

  /* REQ_ONE: one extent, clipped. */
  memset (&l, 0, sizeof l);
  assert_int_equal (ncache_extents (nc, EXPORT_BYTES, 0, NCACHE_REQ_ONE,
                                    collect_extent, &l), 0);
  assert_int_equal (l.n, 1);
  assert_extent (&l, 0, 0, 4096, 0);
  memset (&l, 0, sizeof l);
  assert_int_equal (ncache_extents (nc, 1000, 6000, NCACHE_REQ_ONE,
                                    collect_extent, &l), 0);
  assert_int_equal (l.n, 1);
  assert_extent (&l, 0, 6000, 1000, NCACHE_EXTENT_HOLE | NCACHE_EXTENT_ZERO);

  /* The callback says "enough" after two. */
  memset (&l, 0, sizeof l);
  l.stop_at = 2;
  l.stop_after = 1;
  assert_int_equal (ncache_extents (nc, EXPORT_BYTES, 0, 0, collect_extent, &l), 0);
  assert_int_equal (l.n, 2);

  /* The callback fails after two: its error comes back. */
  memset (&l, 0, sizeof l);
  l.stop_at = 2;
  l.stop_after = -ENOMEM;
  assert_int_equal (ncache_extents (nc, EXPORT_BYTES, 0, 0, collect_extent, &l),
                    -ENOMEM);
  assert_int_equal (l.n, 2);

  ncache_get_stats (nc, &st);
  assert_true (st.extents == 3);
  assert_true (st.errors == 1);
  ncache_close (nc);
}

/* A driver that reports an extent somewhere other than where the previous
 * one ended is an I/O error, not a wrong answer to the client.
 */
static void
test_cache_extents_bad_driver (void **state)
{
  struct spy_record rec;
  struct ncache_export *nc = open_scripted (&rec);
  struct extent_list l;

  memset (&l, 0, sizeof l);
  rec.script_skew = 512;
  test_log_clear ();
  assert_int_equal (ncache_extents (nc, 8192, 0, 0, collect_extent, &l), -EIO);
  assert_int_equal (l.n, 0);
  assert_non_null (strstr (test_log_last_error (), "spy"));

  /* A driver that reports nothing at all. */
  rec.script_skew = 0;
  rec.nr_script = 0;
  memset (&l, 0, sizeof l);
  assert_int_equal (ncache_extents (nc, 8192, 0, 0, collect_extent, &l), -EIO);
  ncache_close (nc);
}

/* Over the memory store itself: contiguous, in range, and the written range
 * is reported as data.
 */
static void
test_cache_extents_memory (void **state)
{
  struct spy_record rec;
  struct ncache_export *nc = open_spy (&all_caps, false, &rec);
  unsigned char buf[65536];
  struct extent_list l;
  uint64_t pos;
  size_t i;

  fill_pattern (buf, sizeof buf, 0, 4);
  assert_int_equal (ncache_pwrite (nc, buf, sizeof buf, 131072, 0), 0);
  memset (&l, 0, sizeof l);
  assert_int_equal (ncache_extents (nc, 65536, 131072, 0, collect_extent, &l), 0);
  assert_true (l.n >= 1);
  pos = 131072;
  for (i = 0; i < l.n; i++) {
    assert_true (l.e[i].offset == pos);
    assert_true (l.e[i].length > 0);
    assert_int_equal (l.e[i].flags & NCACHE_EXTENT_ZERO, 0);
    pos += l.e[i].length;
  }
  assert_true (pos <= 131072 + 65536);
  ncache_close (nc);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_cache_flag_errors),
    cmocka_unit_test (test_cache_backing_errors),
    cmocka_unit_test (test_cache_pread_extents),
    cmocka_unit_test (test_cache_extents_holes),
    cmocka_unit_test (test_cache_extents_req_one_and_stop),
    cmocka_unit_test (test_cache_extents_bad_driver),
    cmocka_unit_test (test_cache_extents_memory),
  };

  test_log_capture ();
  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
