/* SPDX-License-Identifier: BSD-3-Clause */
/* test-request-async-write.c — unit tests for writeback WRITEs through a
 * ring (ncache_pwrite_async, request-async-write.c).
 *
 * WHAT: a whole-block write on an O_DIRECT writeback cache is queued and,
 * once its device writes completed, lands in the index as DIRTY data
 * that reads back (and is counted once); a write the easy case does not
 * cover (FUA, unaligned offset, length or buffer, past the end, over
 * 256 KiB, another mode, a range another write holds) is refused with -EAGAIN and leaves nothing behind
 * (nothing queued or counted, the range lock and the gate free, the
 * blocking write works at once); a failed device write makes _done undo
 * everything (-EAGAIN: the old data still reads, nothing dirty, the
 * range free for the blocking redo).  Where io_uring is unavailable, or
 * the scratch filesystem refuses O_DIRECT, the tests are skipped.
 * Small FUA writes there go through the journal's overlapped entry and
 * checksum page writes (journal-write.c OVERLAP).
 * HOW: a real cache file in a private directory (test-cdev-fx.h) over a
 * memory backing store; writeback's thread off, so dirty data stays.
 */
#include <config.h>

#include "test-cdev-fx.h"

#include "backing.h"
#include "cache.h"
#include "cache-internal.h"
#include "journal-internal.h"

#define EXPORT_BYTES (8u << 20)
#define DEPTH 16u

struct fx {
  char *dir, *path;
  struct ncache_device *dev;
  struct ncache_export *nc;
  struct cdev_ring *ring;
};

static void
fx_open (struct fx *f)
{
  struct ncache_export_tuning tuning;
  struct backing *b = NULL;
  struct ncache_config cfg = { .name = "aw", .mode = NCACHE_MODE_WRITEBACK };
  struct ncache_device_config dcfg = {
    .name = "ssd", .size_bytes = 64u << 20, .create = true, .direct = true,
    .journal_delay_ms = 5,
  };
  int r;

  memset (f, 0, sizeof *f);
  r = ncache_ring_create (DEPTH, &f->ring);
  if (r == -ENOSYS) {
    printf ("io_uring is not available here: skipped\n");
    skip ();
  }
  assert_int_equal (r, 0);
  f->dir = make_tmpdir (tmp_base ());
  f->path = path_in (f->dir, "cache.img");
  dcfg.path = f->path;
  assert_int_equal (ncache_device_open (&dcfg, &f->dev), 0);
  ncache_export_tuning_default (&tuning);
  tuning.writeback_off = true;
  cfg.device = f->dev;
  cfg.tuning = &tuning;
  assert_int_equal (backing_memory_create (EXPORT_BYTES, &b), 0);
  assert_int_equal (ncache_open (&cfg, b, &f->nc), 0);
}

static void
fx_close (struct fx *f)
{
  assert_int_equal (ncache_ring_in_flight (f->ring), 0);
  ncache_close (f->nc);
  ncache_device_close (f->dev);
  ncache_ring_destroy (f->ring);
  rm_tmpdir (f->dir, f->path);
}

static void
on_done (void *cookie, int result, void *opaque)
{
  struct ncache_awrite *w = cookie;

  (void) opaque;
  if (result < 0 && w->err == 0)
    w->err = result;
  w->pending--;
}

/* Submit and reap until w's writes all completed. */
static void
complete (struct fx *f, struct ncache_awrite *w)
{
  assert_int_equal (ncache_ring_submit (f->ring), 0);
  while (w->pending > 0) {
    assert_int_equal (ncache_ring_wait (f->ring), 0);
    ncache_ring_reap (f->ring, on_done, NULL);
  }
}

static uint64_t
dirty_bytes (struct fx *f)
{
  struct ncache_stats st;

  ncache_get_stats (f->nc, &st);
  return st.dirty_bytes;
}

static uint64_t
writes (struct fx *f)
{
  struct ncache_stats st;

  ncache_get_stats (f->nc, &st);
  return st.writes;
}

/* O_DIRECT refused by the scratch filesystem: nothing to test. */
static void
skip_unless_direct (struct fx *f, unsigned char *buf)
{
  struct ncache_awrite w;

  /* A fresh cache has no FREE bucket yet (the async path takes space
   * from memory only): the blocking write makes some.
   */
  assert_int_equal (ncache_pwrite (f->nc, buf, BLK, 0, 0), 0);
  if (ncache_pwrite_async (f->nc, f->ring, buf, BLK, 0, 0, &w, &w) == 0) {
    complete (f, &w);
    assert_int_equal (ncache_pwrite_async_done (f->nc, buf, BLK, 0, &w), 0);
    return;
  }
  printf ("no O_DIRECT cache file under %s: skipped\n", tmp_base ());
  fx_close (f);
  skip ();
}

static void
test_async_write_completes (void **state)
{
  struct fx f;
  unsigned char *buf = cdev_alloc_buffer (64 * BLK);
  unsigned char *out = cdev_alloc_buffer (64 * BLK);
  struct ncache_awrite w[3];
  uint64_t w0;
  unsigned i;

  (void) state;
  fx_open (&f);
  skip_unless_direct (&f, buf);
  w0 = writes (&f);
  /* Three writes in one batch: 1 block, 16 blocks, 64 blocks. */
  fill (buf, 64 * BLK, 0, 11);
  assert_int_equal (ncache_pwrite_async (f.nc, f.ring, buf, BLK, 8 * BLK, 0,
                                         &w[0], &w[0]), 0);
  assert_int_equal (ncache_pwrite_async (f.nc, f.ring, buf, 16 * BLK,
                                         100 * BLK, 0, &w[1], &w[1]), 0);
  assert_int_equal (ncache_pwrite_async (f.nc, f.ring, buf, 64 * BLK,
                                         1000 * BLK, 0, &w[2], &w[2]), 0);
  for (i = 0; i < 3; i++)
    assert_true (w[i].pending >= 1);
  /* Not done yet: nothing counted. */
  assert_int_equal (writes (&f), w0);
  for (i = 0; i < 3; i++)
    complete (&f, &w[i]);
  assert_int_equal (ncache_pwrite_async_done (f.nc, buf, BLK, 8 * BLK, &w[0]),
                    0);
  assert_int_equal (ncache_pwrite_async_done (f.nc, buf, 16 * BLK, 100 * BLK,
                                              &w[1]), 0);
  assert_int_equal (ncache_pwrite_async_done (f.nc, buf, 64 * BLK, 1000 * BLK,
                                              &w[2]), 0);
  assert_int_equal (writes (&f), w0 + 3);
  assert_int_equal (dirty_bytes (&f), (1 + 1 + 16 + 64) * BLK);
  assert_int_equal (ncache_pread (f.nc, out, 64 * BLK, 1000 * BLK, 0), 0);
  assert_memory_equal (out, buf, 64 * BLK);
  assert_int_equal (ncache_pread (f.nc, out, 16 * BLK, 100 * BLK, 0), 0);
  assert_memory_equal (out, buf, 16 * BLK);
  assert_int_equal (ncache_pread (f.nc, out, BLK, 8 * BLK, 0), 0);
  assert_memory_equal (out, buf, BLK);
  /* The blocking path overwrites it, the range is free. */
  fill (buf, BLK, 0, 12);
  assert_int_equal (ncache_pwrite (f.nc, buf, BLK, 8 * BLK, 0), 0);
  assert_int_equal (ncache_pread (f.nc, out, BLK, 8 * BLK, 0), 0);
  assert_memory_equal (out, buf, BLK);
  assert_int_equal (test_log_errors (), 0);

  fx_close (&f);
  free (out);
  free (buf);
}

/* -EAGAIN and nothing behind: no I/O queued, nothing counted. */
static void
refused (struct fx *f, const void *buf, size_t count, uint64_t offset,
         uint32_t flags)
{
  struct ncache_awrite w;
  uint64_t n = writes (f), d = dirty_bytes (f);

  assert_int_equal (ncache_pwrite_async (f->nc, f->ring, buf, count, offset,
                                         flags, &w, &w), -EAGAIN);
  assert_int_equal (ncache_ring_in_flight (f->ring), 0);
  assert_int_equal (writes (f), n);
  assert_int_equal (dirty_bytes (f), d);
}

static void
test_async_write_refuses (void **state)
{
  struct fx f;
  unsigned char *buf = cdev_alloc_buffer (8 * BLK);
  unsigned char *out = cdev_alloc_buffer (8 * BLK);
  struct ncache_awrite w;
  char msg[256];

  (void) state;
  fx_open (&f);
  skip_unless_direct (&f, buf);
  fill (buf, 8 * BLK, 0, 21);
  refused (&f, buf, BLK, 0, NCACHE_FUA);
  refused (&f, buf, BLK, 512, 0);
  refused (&f, buf, BLK + 512, 0, 0);
  refused (&f, buf + 512, BLK, 0, 0);
  refused (&f, buf, BLK, EXPORT_BYTES, 0);      /* past the end */
  {
    unsigned char *big = cdev_alloc_buffer (65 * BLK);

    fill (big, 65 * BLK, 0, 22);
    refused (&f, big, 65 * BLK, 0, 0);          /* large: the workers' */
    free (big);
  }
  /* A range another write holds: tried, not waited for. */
  assert_int_equal (ncache_pwrite_async (f.nc, f.ring, buf, 4 * BLK, 16 * BLK,
                                         0, &w, &w), 0);
  {
    struct ncache_awrite w2;

    assert_int_equal (ncache_pwrite_async (f.nc, f.ring, buf, 2 * BLK,
                                           18 * BLK, 0, &w2, &w2), -EAGAIN);
  }
  complete (&f, &w);
  assert_int_equal (ncache_pwrite_async_done (f.nc, buf, 4 * BLK, 16 * BLK,
                                              &w), 0);
  /* Each refusal left the gate free: a mode change goes through. */
  assert_int_equal (ncache_export_set (f.nc, "mode", "writethrough", msg,
                                       sizeof msg), 0);
  refused (&f, buf, BLK, 0, 0);
  assert_int_equal (ncache_export_set (f.nc, "mode", "writeback", msg,
                                       sizeof msg), 0);
  /* ... and every range lock: the blocking write takes them at once. */
  assert_int_equal (ncache_pwrite (f.nc, buf, 8 * BLK, 0, 0), 0);
  assert_int_equal (ncache_pread (f.nc, out, 8 * BLK, 0, 0), 0);
  assert_memory_equal (out, buf, 8 * BLK);
  assert_int_equal (test_log_errors (), 0);

  fx_close (&f);
  free (out);
  free (buf);
}

static void
test_async_write_error_falls_back (void **state)
{
  struct fx f;
  unsigned char *buf = cdev_alloc_buffer (4 * BLK);
  unsigned char *old = cdev_alloc_buffer (4 * BLK);
  unsigned char *out = cdev_alloc_buffer (4 * BLK);
  struct ncache_awrite w;
  uint64_t n, d;

  (void) state;
  fx_open (&f);
  skip_unless_direct (&f, buf);
  fill (old, 4 * BLK, 32 * BLK, 31);
  assert_int_equal (ncache_pwrite (f.nc, old, 4 * BLK, 32 * BLK, 0), 0);
  n = writes (&f);
  d = dirty_bytes (&f);
  fill (buf, 4 * BLK, 32 * BLK, 32);
  assert_int_equal (ncache_pwrite_async (f.nc, f.ring, buf, 4 * BLK,
                                         32 * BLK, 0, &w, &w), 0);
  complete (&f, &w);
  /* The device said no (what the reap records for a failed write). */
  w.err = -EIO;
  assert_int_equal (ncache_pwrite_async_done (f.nc, buf, 4 * BLK, 32 * BLK,
                                              &w), -EAGAIN);
  assert_int_equal (writes (&f), n);
  assert_int_equal (dirty_bytes (&f), d);
  assert_int_equal (ncache_pread (f.nc, out, 4 * BLK, 32 * BLK, 0), 0);
  assert_memory_equal (out, old, 4 * BLK);
  /* The blocking redo: the range lock and the gate are free. */
  assert_int_equal (ncache_pwrite (f.nc, buf, 4 * BLK, 32 * BLK, 0), 0);
  assert_int_equal (ncache_pread (f.nc, out, 4 * BLK, 32 * BLK, 0), 0);
  assert_memory_equal (out, buf, 4 * BLK);
  assert_int_equal (dirty_bytes (&f), d);
  assert_int_equal (test_log_errors (), 0);

  fx_close (&f);
  free (out);
  free (old);
  free (buf);
}

/* Small FUA writes on an O_DIRECT cache: each is a REDO commit whose
 * entry goes through the journal's ring while its checksum page is
 * written (journal-write.c OVERLAP); each commits, reads back, and
 * nothing is logged.  (Its crash points: test-redo, on the simulated
 * device.)
 */
static void
test_fua_overlap (void **state)
{
  struct fx f;
  struct ncache_device_stats d0, d1;
  unsigned char *buf = cdev_alloc_buffer (BLK);
  unsigned char *out = cdev_alloc_buffer (BLK);
  unsigned i;

  (void) state;
  fx_open (&f);
  skip_unless_direct (&f, buf);
  assert_int_equal (ncache_flush (f.nc, 0), 0);
  ncache_device_get_stats (f.dev, &d0);
  for (i = 0; i < 16; i++) {
    fill (buf, BLK, 0, 20 + i);
    assert_int_equal (ncache_pwrite (f.nc, buf, BLK, (64 + 3 * i) * BLK,
                                     NCACHE_FUA), 0);
  }
  ncache_device_get_stats (f.dev, &d1);
  assert_true (d1.journal_inlined - d0.journal_inlined >= 16);
  /* They went through the ring, not the blocking fallback. */
  assert_non_null (f.dev->journal->ring);
  assert_false (f.dev->journal->ring_off);
  for (i = 0; i < 16; i++) {
    fill (buf, BLK, 0, 20 + i);
    assert_int_equal (ncache_pread (f.nc, out, BLK, (64 + 3 * i) * BLK, 0),
                      0);
    assert_memory_equal (out, buf, BLK);
  }
  assert_int_equal (test_log_errors (), 0);
  fx_close (&f);
  free (out);
  free (buf);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_teardown (test_async_write_completes, teardown_tmpdirs),
    cmocka_unit_test_teardown (test_async_write_refuses, teardown_tmpdirs),
    cmocka_unit_test_teardown (test_async_write_error_falls_back,
                               teardown_tmpdirs),
    cmocka_unit_test_teardown (test_fua_overlap, teardown_tmpdirs),
  };

  test_log_capture ();
  log_set_ratelimit (false);
  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
