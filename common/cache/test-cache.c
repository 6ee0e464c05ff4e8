/* SPDX-License-Identifier: BSD-3-Clause */
/* test-cache.c — unit tests for the export handle (cache.c, device.c, mode.c).
 *
 * WHAT: every request path in mode none over the memory backing store;
 * range and read-only errors; NCACHE_* -> BACKING_* flag translation and
 * FUA; statistics; refusal of cache modes and devices; the mode names;
 * concurrent pwrite/pread from threads; NCACHE_NOWAIT reads (the spy
 * refuses them; a real file serves them).  Flag and backing errors and
 * extents: test-cache-extents.c.
 * HOW: over the spy backing store (test-cache-spy.h).
 * SEED: the concurrency test is randomised; NBDCACHE_SEED overrides the
 * seed, which is always printed.
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
#include <unistd.h>

#include <cmocka.h>

#include "backing.h"
#include "cache.h"
#include "cache-internal.h"
#include "cdev.h"
#include "log.h"
#include "test-cache-spy.h"
#include "testkit.h"

/* ---- open, close, caps ---- */

static void
test_cache_open_over_memory (void **state)
{
  struct ncache_config cfg = { .name = "mem", .mode = NCACHE_MODE_NONE };
  struct backing *b;
  struct ncache_export *nc = NULL;
  struct ncache_caps caps;

  assert_int_equal (backing_memory_create (EXPORT_BYTES, &b), 0);
  assert_int_equal (ncache_open (&cfg, b, &nc), 0);
  ncache_get_caps (nc, &caps);
  assert_true (caps.size_bytes == EXPORT_BYTES);
  assert_false (caps.readonly);
  assert_true (caps.can_flush);
  assert_true (caps.can_fua);
  assert_true (caps.can_cache);
  assert_true (caps.can_multi_conn);
  ncache_close (nc);
  ncache_close (NULL);
}

static void
test_cache_caps_follow_backing (void **state)
{
  static const struct spy_caps variants[] = {
    { .can_trim = true },
    { .can_zero = true },
    { .can_zero = true, .can_fast_zero = true },
    { .can_extents = true },
    { .readonly = true, .can_trim = true, .can_zero = true },
    { 0 },
  };
  size_t i;

  for (i = 0; i < sizeof variants / sizeof variants[0]; i++) {
    for (int ro = 0; ro <= 1; ro++) {
      struct spy_record rec;
      struct ncache_export *nc = open_spy (&variants[i], ro, &rec);
      struct ncache_caps caps;

      ncache_get_caps (nc, &caps);
      assert_int_equal (caps.can_trim, variants[i].can_trim);
      assert_int_equal (caps.can_zero, variants[i].can_zero);
      assert_int_equal (caps.can_fast_zero, variants[i].can_fast_zero);
      assert_int_equal (caps.can_extents, variants[i].can_extents);
      assert_int_equal (caps.readonly, ro || variants[i].readonly);
      assert_true (caps.can_flush && caps.can_fua && caps.can_cache &&
                   caps.can_multi_conn);
      ncache_close (nc);
      assert_int_equal (rec.nr_close, 1);
    }
  }
}

/* Each non-none mode is refused, the message says why and what to do, and
 * the backing store is closed (ownership is taken on every path).
 */
static void
test_cache_open_refuses_modes (void **state)
{
  static const enum ncache_mode modes[] = {
    NCACHE_MODE_WRITEBACK, NCACHE_MODE_WRITETHROUGH, NCACHE_MODE_WRITEAROUND,
  };
  size_t i;

  for (i = 0; i < sizeof modes / sizeof modes[0]; i++) {
    struct ncache_config cfg = { .name = "disk1", .mode = modes[i] };
    /* must stay untouched */
    struct ncache_export *nc = (struct ncache_export *) &cfg;
    struct spy_record rec;
    char expected[256];

    test_log_clear ();
    assert_int_equal (ncache_open (&cfg, spy_create (4096, &all_caps, &rec),
                                   &nc), -EINVAL);
    assert_ptr_equal (nc, (struct ncache_export *) &cfg);
    assert_int_equal (rec.nr_close, 1);
    snprintf (expected, sizeof expected,
              "export 'disk1': cache mode '%s' needs a cache device",
              ncache_mode_name (modes[i]));
    assert_string_equal (test_log_last_error (), expected);
  }
}

static void
test_cache_open_refuses_device (void **state)
{
  /* Mode none with a device is refused before the device is touched, so
   * a fake handle will do.
   */
  char fake_device;
  struct ncache_config cfg = {
    .name = "disk2", .mode = NCACHE_MODE_NONE,
    .device = (struct ncache_device *) &fake_device,
  };
  struct ncache_export *nc = NULL;
  struct spy_record rec;

  test_log_clear ();
  assert_int_equal (ncache_open (&cfg, spy_create (4096, &all_caps, &rec),
                                 &nc), -EINVAL);
  assert_null (nc);
  assert_int_equal (rec.nr_close, 1);
  assert_non_null (strstr (test_log_last_error (), "export 'disk2'"));
  assert_non_null (strstr (test_log_last_error (), "mode none with a cache device"));
}

static void
test_cache_open_bad_arguments (void **state)
{
  struct ncache_config cfg = { .name = "bad", .mode = (enum ncache_mode) 42 };
  struct ncache_export *nc = NULL;
  struct spy_record rec;

  test_log_clear ();
  assert_int_equal (ncache_open (&cfg, spy_create (4096, &all_caps, &rec),
                                 &nc), -EINVAL);
  assert_int_equal (rec.nr_close, 1);
  assert_int_equal (test_log_errors (), 1);

  assert_int_equal (ncache_open (NULL, spy_create (4096, &all_caps, &rec),
                                 &nc), -EINVAL);
  assert_int_equal (rec.nr_close, 1);

  cfg.mode = NCACHE_MODE_NONE;
  assert_int_equal (ncache_open (&cfg, NULL, &nc), -EINVAL);
  assert_null (nc);
}

static void
test_cache_device_refused (void **state)
{
  struct ncache_device_config dcfg = {
    .name = "ssd", .path = "/nonexistent/ssd.img", .size_bytes = 1 << 30,
    .create = true, .direct = true,
  };
  struct ncache_device *dev = (struct ncache_device *) &dcfg;

  test_log_clear ();
  assert_int_equal (ncache_device_open (&dcfg, &dev), -ENOENT);
  assert_ptr_equal (dev, (struct ncache_device *) &dcfg);
  assert_non_null (strstr (test_log_last_error (), "/nonexistent/ssd.img"));
  assert_int_equal (ncache_device_open (NULL, &dev), -EINVAL);
  ncache_device_close (NULL);
}

/* discard = auto on a regular file is off (a punched hole makes the next
 * O_DIRECT write allocate again, cdev-file.c), yes is on, no is off; the
 * created file is preallocated (test-cdev-file.c checks the blocks).
 */
static void
test_cache_device_discard_auto_on_file (void **state)
{
  static const struct {
    enum ncache_discard discard;
    bool want;
  } cases[] = {
    { NCACHE_DISCARD_AUTO, false },
    { NCACHE_DISCARD_YES, true },
    { NCACHE_DISCARD_NO, false },
  };
  char dir[] = "/tmp/test-cache.XXXXXX";
  char path[sizeof dir + 16];
  size_t i;

  (void) state;
  assert_non_null (mkdtemp (dir));
  snprintf (path, sizeof path, "%s/ssd.img", dir);
  for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct ncache_device_config dcfg = {
      .name = "ssd", .path = path, .size_bytes = 64 << 20,
      .create = true, .discard = cases[i].discard,
    };
    struct ncache_device *dev = NULL;
    struct ncache_device_stats st;

    test_log_clear ();
    assert_int_equal (ncache_device_open (&dcfg, &dev), 0);
    assert_false (dev->cd->is_block_device);
    assert_int_equal (dev->discard, cases[i].want);
    /* Off: no bucket is ever handed to the discard thread (on: the
     * fresh EMPTY buckets are, at a time the thread chooses). */
    ncache_device_get_stats (dev, &st);
    if (!cases[i].want)
      assert_int_equal (st.discard_pending_buckets, 0);
    ncache_device_close (dev);
    assert_int_equal (test_log_errors (), 0);
  }
  assert_int_equal (unlink (path), 0);
  assert_int_equal (rmdir (dir), 0);
}

static void
test_cache_mode_names (void **state)
{
  static const char *const names[] = {
    "none", "writeback", "writethrough", "writearound",
  };
  enum ncache_mode m;
  size_t i;

  for (i = 0; i < sizeof names / sizeof names[0]; i++) {
    assert_int_equal (ncache_mode_from_string (names[i], &m), 0);
    assert_int_equal (m, (enum ncache_mode) i);
    assert_string_equal (ncache_mode_name (m), names[i]);
  }
  assert_int_equal (NCACHE_MODE_NONE, 0);
  assert_int_equal (ncache_mode_from_string ("WriteBack", &m), 0);
  assert_int_equal (m, NCACHE_MODE_WRITEBACK);

  m = NCACHE_MODE_WRITEAROUND;
  assert_int_equal (ncache_mode_from_string ("", &m), -EINVAL);
  assert_int_equal (ncache_mode_from_string ("write-back", &m), -EINVAL);
  assert_int_equal (ncache_mode_from_string ("none ", &m), -EINVAL);
  assert_int_equal (ncache_mode_from_string (NULL, &m), -EINVAL);
  assert_int_equal (m, NCACHE_MODE_WRITEAROUND);
  assert_string_equal (ncache_mode_name ((enum ncache_mode) 17), "invalid");
}

/* ---- data paths ---- */

static void
test_cache_pwrite_pread (void **state)
{
  struct spy_record rec;
  struct ncache_export *nc = open_spy (&all_caps, false, &rec);
  unsigned char *w = malloc (EXPORT_BYTES), *r = malloc (EXPORT_BYTES);

  assert_non_null (w);
  assert_non_null (r);
  /* A fresh export reads as zeros. */
  assert_int_equal (ncache_pread (nc, r, EXPORT_BYTES, 0, 0), 0);
  assert_true (is_zero (r, EXPORT_BYTES));

  /* Unaligned writes, including the last byte. */
  fill_pattern (w, EXPORT_BYTES, 0, 1);
  assert_int_equal (ncache_pwrite (nc, w, 4096, 0, 0), 0);
  assert_int_equal (ncache_pwrite (nc, w + 4096, 12345, 4096, 0), 0);
  assert_int_equal (ncache_pwrite (nc, w + 4096 + 12345, 1, 4096 + 12345, 0), 0);
  assert_int_equal (ncache_pwrite (nc, w + EXPORT_BYTES - 1, 1,
                                   EXPORT_BYTES - 1, 0), 0);
  assert_int_equal (ncache_pread (nc, r, 4096 + 12346, 0, 0), 0);
  assert_memory_equal (r, w, 4096 + 12346);
  assert_int_equal (ncache_pread (nc, r, 1, EXPORT_BYTES - 1, 0), 0);
  assert_int_equal (r[0], w[EXPORT_BYTES - 1]);
  assert_int_equal (ncache_pread (nc, r, 100, 4096 + 12346, 0), 0);
  assert_true (is_zero (r, 100));

  /* Whole export. */
  assert_int_equal (ncache_pwrite (nc, w, EXPORT_BYTES, 0, 0), 0);
  memset (r, 0, EXPORT_BYTES);
  assert_int_equal (ncache_pread (nc, r, EXPORT_BYTES, 0, 0), 0);
  assert_memory_equal (r, w, EXPORT_BYTES);
  /* A plain write asks the backing for nothing more. */
  assert_int_equal (rec.last_flags, 0);

  /* Zero-length requests at the very end are in range and touch nothing. */
  rec.nr_pread = rec.nr_pwrite = 0;
  assert_int_equal (ncache_pread (nc, r, 0, EXPORT_BYTES, 0), 0);
  assert_int_equal (ncache_pwrite (nc, w, 0, EXPORT_BYTES, 0), 0);
  assert_int_equal (rec.nr_pread, 0);
  assert_int_equal (rec.nr_pwrite, 0);

  free (w);
  free (r);
  ncache_close (nc);
}

static void
test_cache_zero_and_trim (void **state)
{
  struct spy_record rec;
  struct ncache_export *nc = open_spy (&all_caps, false, &rec);
  unsigned char w[65536], r[65536];

  fill_pattern (w, sizeof w, 0, 2);
  assert_int_equal (ncache_pwrite (nc, w, sizeof w, 0, 0), 0);

  /* Zero the middle (unaligned), keep the edges. */
  assert_int_equal (ncache_zero (nc, 10000, 1000, 0), 0);
  assert_int_equal (rec.nr_zero, 1);
  assert_int_equal (rec.last_flags, 0);
  assert_int_equal (ncache_pread (nc, r, sizeof r, 0, 0), 0);
  assert_memory_equal (r, w, 1000);
  assert_true (is_zero (r + 1000, 10000));
  assert_memory_equal (r + 11000, w + 11000, sizeof w - 11000);

  assert_int_equal (ncache_zero (nc, 4096, 16384, NCACHE_MAY_TRIM), 0);
  assert_int_equal (rec.last_flags, BACKING_MAY_TRIM);
  assert_int_equal (ncache_pread (nc, r, 4096, 16384, 0), 0);
  assert_true (is_zero (r, 4096));

  /* Trim: afterwards the range reads as its old data or as zeros. */
  assert_int_equal (ncache_trim (nc, 8192, 32768, 0), 0);
  assert_int_equal (rec.nr_trim, 1);
  assert_int_equal (rec.last_flags, 0);
  assert_int_equal (ncache_pread (nc, r, 8192, 32768, 0), 0);
  assert_true (is_zero (r, 8192) || memcmp (r, w + 32768, 8192) == 0);
  assert_int_equal (ncache_pread (nc, r, 4096, 40960, 0), 0);
  assert_memory_equal (r, w + 40960, 4096);

  ncache_close (nc);
}

/* NCACHE_* flags reach the backing as the matching BACKING_* flags. */
static void
test_cache_flag_translation (void **state)
{
  struct spy_record rec;
  struct ncache_export *nc = open_spy (&all_caps, false, &rec);
  unsigned char buf[4096] = { 1 };

  assert_int_equal (ncache_pwrite (nc, buf, sizeof buf, 0, NCACHE_FUA), 0);
  assert_int_equal (rec.last_flags, BACKING_FUA);
  assert_int_equal (ncache_pwrite (nc, buf, sizeof buf, 0, 0), 0);
  assert_int_equal (rec.last_flags, 0);

  assert_int_equal (ncache_trim (nc, 4096, 0, NCACHE_FUA), 0);
  assert_int_equal (rec.last_flags, BACKING_FUA);

  assert_int_equal (ncache_zero (nc, 4096, 0, NCACHE_FUA), 0);
  assert_int_equal (rec.last_flags, BACKING_FUA);
  assert_int_equal (ncache_zero (nc, 4096, 0, NCACHE_MAY_TRIM), 0);
  assert_int_equal (rec.last_flags, BACKING_MAY_TRIM);
  assert_int_equal (ncache_zero (nc, 4096, 0, NCACHE_FAST_ZERO), 0);
  assert_int_equal (rec.last_flags, BACKING_FAST);
  assert_int_equal (ncache_zero (nc, 4096, 0, NCACHE_FUA | NCACHE_MAY_TRIM |
                                 NCACHE_FAST_ZERO), 0);
  assert_int_equal (rec.last_flags, BACKING_FUA | BACKING_MAY_TRIM | BACKING_FAST);
  ncache_close (nc);
}

/* FUA on a zero-length write still makes earlier writes durable; a flush
 * reaches the backing every time.
 */
static void
test_cache_fua_and_flush (void **state)
{
  struct spy_record rec;
  struct ncache_export *nc = open_spy (&all_caps, false, &rec);
  unsigned char buf[1] = { 0 };

  assert_int_equal (ncache_flush (nc, 0), 0);
  assert_int_equal (ncache_flush (nc, 0), 0);
  assert_int_equal (rec.nr_flush, 2);
  assert_int_equal (ncache_pwrite (nc, buf, 0, 0, NCACHE_FUA), 0);
  assert_int_equal (rec.nr_flush, 3);
  assert_int_equal (ncache_zero (nc, 0, 0, NCACHE_FUA), 0);
  assert_int_equal (ncache_trim (nc, 0, 0, NCACHE_FUA), 0);
  assert_int_equal (rec.nr_flush, 5);
  assert_int_equal (rec.nr_pwrite + rec.nr_zero + rec.nr_trim, 0);
  ncache_close (nc);
}

static void
test_cache_fast_zero (void **state)
{
  struct spy_caps slow = all_caps;
  struct spy_record rec;
  struct ncache_export *nc;
  unsigned char w[8192], r[8192];

  slow.can_fast_zero = false;
  nc = open_spy (&slow, false, &rec);
  fill_pattern (w, sizeof w, 0, 3);
  assert_int_equal (ncache_pwrite (nc, w, sizeof w, 0, 0), 0);
  /* Refused at once: the backing is not asked and nothing changes. */
  assert_int_equal (ncache_zero (nc, 8192, 0, NCACHE_FAST_ZERO), -ENOTSUP);
  assert_int_equal (ncache_zero (nc, 8192, 0, NCACHE_FAST_ZERO | NCACHE_MAY_TRIM),
                    -ENOTSUP);
  assert_int_equal (rec.nr_zero, 0);
  assert_int_equal (ncache_pread (nc, r, sizeof r, 0, 0), 0);
  assert_memory_equal (r, w, sizeof w);
  /* Without FAST_ZERO it still zeroes. */
  assert_int_equal (ncache_zero (nc, 8192, 0, 0), 0);
  assert_int_equal (ncache_pread (nc, r, sizeof r, 0, 0), 0);
  assert_true (is_zero (r, sizeof r));
  ncache_close (nc);

  /* A backing that can zero fast gets the request. */
  nc = open_spy (&all_caps, false, &rec);
  assert_int_equal (ncache_zero (nc, 8192, 0, NCACHE_FAST_ZERO), 0);
  assert_int_equal (rec.nr_zero, 1);
  /* And its own -ENOTSUP is passed back. */
  rec.fail_next = -ENOTSUP;
  assert_int_equal (ncache_zero (nc, 8192, 0, NCACHE_FAST_ZERO), -ENOTSUP);
  ncache_close (nc);
}

static void
test_cache_cache_is_noop (void **state)
{
  struct spy_record rec;
  struct ncache_export *nc = open_spy (&all_caps, false, &rec);

  assert_int_equal (ncache_cache (nc, EXPORT_BYTES, 0, 0), 0);
  assert_int_equal (ncache_cache (nc, 1, EXPORT_BYTES - 1, 0), 0);
  assert_int_equal (rec.nr_pread + rec.nr_pwrite + rec.nr_flush, 0);
  ncache_close (nc);
}

/* ---- errors ---- */

static void
test_cache_range_errors (void **state)
{
  struct spy_record rec;
  struct ncache_export *nc = open_spy (&all_caps, false, &rec);
  unsigned char buf[8192] = { 0 };
  const uint64_t size = EXPORT_BYTES;
  static const uint64_t bad[][2] = {  /* { offset, count } */
    { EXPORT_BYTES, 1 },
    { EXPORT_BYTES - 1, 2 },
    { EXPORT_BYTES + 1, 0 },
    { 0, EXPORT_BYTES + 1 },
    { UINT64_MAX, 1 },
    { UINT64_MAX - 10, 4096 },          /* offset + count wraps */
    { 4096, UINT64_MAX - 100 },         /* offset + count wraps */
  };
  size_t i;

  for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    uint64_t off = bad[i][0], cnt = bad[i][1];
    size_t io = cnt > sizeof buf ? sizeof buf : cnt;

    /* pread/pwrite take a buffer: only the ranges a small one can reach. */
    if (cnt <= sizeof buf) {
      assert_int_equal (ncache_pread (nc, buf, io, off, 0), -EINVAL);
      assert_int_equal (ncache_pwrite (nc, buf, io, off, 0), -ENOSPC);
    }
    assert_int_equal (ncache_zero (nc, cnt, off, 0), -ENOSPC);
    assert_int_equal (ncache_trim (nc, cnt, off, 0), -EINVAL);
    assert_int_equal (ncache_cache (nc, cnt, off, 0), -EINVAL);
    assert_int_equal (ncache_extents (nc, cnt, off, 0, NULL, NULL), -EINVAL);
  }
  /* A huge size_t count. */
  assert_int_equal (ncache_pread (nc, buf, SIZE_MAX, 0, 0), -EINVAL);
  assert_int_equal (ncache_pwrite (nc, buf, SIZE_MAX, 4096, 0), -ENOSPC);
  /* Nothing reached the backing. */
  assert_int_equal (rec.nr_pread + rec.nr_pwrite + rec.nr_trim + rec.nr_zero +
                    rec.nr_extents, 0);
  /* The last valid byte is fine. */
  assert_int_equal (ncache_pwrite (nc, buf, 1, size - 1, 0), 0);
  assert_int_equal (ncache_pread (nc, buf, 1, size - 1, 0), 0);
  ncache_close (nc);
}

static void
test_cache_readonly_errors (void **state)
{
  struct spy_caps ro_backing = all_caps;
  unsigned char buf[4096] = { 0 };

  ro_backing.readonly = true;
  for (int how = 0; how <= 1; how++) {
    struct spy_record rec;
    struct ncache_export *nc = how == 0 ? open_spy (&all_caps, true, &rec)
                                 : open_spy (&ro_backing, false, &rec);
    struct ncache_stats st;

    assert_int_equal (ncache_pwrite (nc, buf, sizeof buf, 0, 0), -EPERM);
    assert_int_equal (ncache_pwrite (nc, buf, sizeof buf, 0, NCACHE_FUA), -EPERM);
    assert_int_equal (ncache_trim (nc, 4096, 0, 0), -EPERM);
    assert_int_equal (ncache_zero (nc, 4096, 0, 0), -EPERM);
    assert_int_equal (ncache_zero (nc, 4096, 0, NCACHE_FAST_ZERO), -EPERM);
    /* Read-only wins over range: a write there is refused as such. */
    assert_int_equal (ncache_pwrite (nc, buf, 1, EXPORT_BYTES, 0), -EPERM);
    assert_int_equal (rec.nr_pwrite + rec.nr_trim + rec.nr_zero, 0);
    /* Reads, flush, cache and extents still work. */
    assert_int_equal (ncache_pread (nc, buf, sizeof buf, 0, 0), 0);
    assert_int_equal (ncache_flush (nc, 0), 0);
    assert_int_equal (ncache_cache (nc, 4096, 0, 0), 0);
    ncache_get_stats (nc, &st);
    assert_true (st.errors == 6);
    assert_true (st.writes == 0);
    ncache_close (nc);
    /* Nothing was written, so close does not flush. */
    assert_int_equal (rec.nr_flush, 1);
  }
}

/* ---- statistics ---- */

/* NCACHE_NOWAIT: a store that cannot serve without waiting (the memory
 * store has no such read) is -EAGAIN with nothing done or counted; a file
 * whose pages are in memory (just written) is served and counted once.
 */
static void
test_cache_pread_nowait (void **state)
{
  struct spy_record rec;
  struct ncache_export *nc = open_spy (&all_caps, false, &rec);
  struct ncache_config cfg = { .name = "file", .mode = NCACHE_MODE_NONE };
  const char *dir = getenv ("TMPDIR") ? getenv ("TMPDIR") : "/tmp";
  char path[4096];
  unsigned char w[8192], r[8192];
  struct backing_open_options opts = { .create_size_bytes = EXPORT_BYTES };
  struct ncache_stats st;
  struct backing *b;
  int fd;

  fill_pattern (w, sizeof w, 4096, 3);
  assert_int_equal (ncache_pwrite (nc, w, sizeof w, 4096, 0), 0);
  rec.nr_pread = 0;
  assert_int_equal (ncache_pread (nc, r, sizeof r, 4096, NCACHE_NOWAIT),
                    -EAGAIN);
  assert_int_equal (ncache_pread (nc, r, 0, 0, NCACHE_NOWAIT), -EAGAIN);
  ncache_get_stats (nc, &st);
  assert_true (st.reads == 0 && st.errors == 0 && st.bytes_read == 0);
  assert_int_equal (rec.nr_pread, 0);
  ncache_close (nc);

  snprintf (path, sizeof path, "%s/test-cache-nowait.XXXXXX", dir);
  fd = mkstemp (path);
  assert_true (fd >= 0);
  close (fd);
  assert_int_equal (unlink (path), 0);
  assert_int_equal (backing_file_open (path, &opts, &b), 0);
  nc = NULL;
  assert_int_equal (ncache_open (&cfg, b, &nc), 0);
  assert_int_equal (ncache_pwrite (nc, w, sizeof w, 4096, 0), 0);
  memset (r, 0, sizeof r);
  assert_int_equal (ncache_pread (nc, r, sizeof r, 4096, NCACHE_NOWAIT), 0);
  assert_memory_equal (r, w, sizeof w);
  ncache_get_stats (nc, &st);
  assert_true (st.reads == 1 && st.bytes_read == sizeof r && st.errors == 0);
  ncache_close (nc);
  unlink (path);
}

static void
test_cache_stats (void **state)
{
  struct spy_record rec;
  struct ncache_export *nc = open_spy (&all_caps, false, &rec);
  unsigned char buf[8192] = { 0 };
  struct ncache_stats st;
  unsigned n = 0;

  ncache_get_stats (nc, &st);
  assert_true (st.reads == 0 && st.writes == 0 && st.errors == 0);

  assert_int_equal (ncache_pwrite (nc, buf, 8192, 0, 0), 0);
  assert_int_equal (ncache_pwrite (nc, buf, 100, 0, NCACHE_FUA), 0);
  assert_int_equal (ncache_pread (nc, buf, 4096, 0, 0), 0);
  assert_int_equal (ncache_pread (nc, buf, 10, 7, 0), 0);
  assert_int_equal (ncache_pread (nc, buf, 1, 0, 0), 0);
  assert_int_equal (ncache_flush (nc, 0), 0);
  assert_int_equal (ncache_trim (nc, 4096, 0, 0), 0);
  assert_int_equal (ncache_zero (nc, 4096, 0, 0), 0);
  assert_int_equal (ncache_zero (nc, 4096, 0, NCACHE_MAY_TRIM), 0);
  assert_int_equal (ncache_cache (nc, 4096, 0, 0), 0);
  assert_int_equal (ncache_extents (nc, 4096, 0, 0, count_extent, &n), 0);
  assert_int_equal (ncache_pread (nc, buf, 10, EXPORT_BYTES, 0), -EINVAL);
  assert_int_equal (ncache_pwrite (nc, buf, 10, EXPORT_BYTES, 0), -ENOSPC);

  ncache_get_stats (nc, &st);
  assert_true (st.reads == 3);
  assert_true (st.bytes_read == 4096 + 10 + 1);
  assert_true (st.writes == 2);
  assert_true (st.bytes_written == 8192 + 100);
  assert_true (st.flushes == 1);
  assert_true (st.trims == 1);
  assert_true (st.zeroes == 2);
  assert_true (st.caches == 1);
  assert_true (st.extents == 1);
  assert_true (st.errors == 2);
  /* No cache device in mode none. */
  assert_true (st.hits == 0 && st.misses == 0 && st.bypasses == 0 &&
               st.promotions == 0 && st.dirty_bytes == 0);
  ncache_close (nc);
}

/* Closing after writes flushes the backing once; without writes it does
 * not.
 */
static void
test_cache_close_flushes (void **state)
{
  struct spy_record rec;
  struct ncache_export *nc = open_spy (&all_caps, false, &rec);
  unsigned char buf[512] = { 0 };

  ncache_close (nc);
  assert_int_equal (rec.nr_flush, 0);
  assert_int_equal (rec.nr_close, 1);

  nc = open_spy (&all_caps, false, &rec);
  assert_int_equal (ncache_pwrite (nc, buf, sizeof buf, 0, 0), 0);
  ncache_close (nc);
  assert_int_equal (rec.nr_flush, 1);
  assert_int_equal (rec.nr_close, 1);
}

/* ---- threads ---- */

#define NR_THREADS 8
#define SLICE_BYTES (EXPORT_BYTES / NR_THREADS)
#define ROUNDS 200

struct worker {
  pthread_t thread;
  struct ncache_export *nc;
  unsigned id;
  struct test_rng rng;          /* this thread's stream of the seed */
  unsigned failures;            /* checked by the main thread */
  uint64_t bytes_written;
  unsigned writes;
};

/* Each thread owns one slice: random writes into it, each checked by a
 * read of the whole slice against the thread's own model.  Reads of the
 * other slices run at the same time, so the backing sees a real mix.
 */
static void *
worker_run (void *arg)
{
  struct worker *w = arg;
  unsigned char *model = calloc (1, SLICE_BYTES);
  unsigned char *buf = malloc (SLICE_BYTES);
  uint64_t base = (uint64_t) w->id * SLICE_BYTES;
  unsigned i;

  if (model == NULL || buf == NULL) {
    w->failures++;
    goto out;
  }
  for (i = 0; i < ROUNDS; i++) {
    size_t off = (size_t) test_rng_below (&w->rng, SLICE_BYTES);
    size_t len = 1 + (size_t) test_rng_below (&w->rng, SLICE_BYTES - off);
    uint32_t flags = test_rng_chance (&w->rng, 25) ? NCACHE_FUA : 0;
    uint64_t other = test_rng_below (&w->rng, NR_THREADS) * SLICE_BYTES;

    if (len > 16384)
      len = 1 + len % 16384;
    fill_pattern (model + off, len, base + off, w->id * 1000 + i);
    if (ncache_pwrite (w->nc, model + off, len, base + off, flags) != 0)
      w->failures++;
    w->bytes_written += len;
    w->writes++;
    if (ncache_pread (w->nc, buf, SLICE_BYTES, other, 0) != 0)
      w->failures++;
    if (i % 20 == 19 || i == ROUNDS - 1) {
      if (ncache_pread (w->nc, buf, SLICE_BYTES, base, 0) != 0 ||
          memcmp (buf, model, SLICE_BYTES) != 0)
        w->failures++;
    }
  }
 out:
  free (model);
  free (buf);
  return NULL;
}

static void
test_cache_concurrent_io (void **state)
{
  struct ncache_config cfg = { .name = "threads", .mode = NCACHE_MODE_NONE };
  struct worker workers[NR_THREADS];
  struct ncache_stats st;
  struct backing *b;
  struct ncache_export *nc;
  uint64_t seed = test_seed_from_env ("test-cache");
  uint64_t total_bytes = 0;
  unsigned total_writes = 0;
  unsigned i;

  assert_int_equal (backing_memory_create (EXPORT_BYTES, &b), 0);
  assert_int_equal (ncache_open (&cfg, b, &nc), 0);
  for (i = 0; i < NR_THREADS; i++) {
    memset (&workers[i], 0, sizeof workers[i]);
    workers[i].nc = nc;
    workers[i].id = i;
    test_rng_seed (&workers[i].rng, test_mix64 (seed ^ i));
    assert_int_equal (pthread_create (&workers[i].thread, NULL, worker_run,
                                      &workers[i]), 0);
  }
  for (i = 0; i < NR_THREADS; i++) {
    assert_int_equal (pthread_join (workers[i].thread, NULL), 0);
    if (workers[i].failures)
      fprintf (stderr, "thread %u: %u failures (seed %" PRIu64 ")\n", i,
               workers[i].failures, seed);
    assert_int_equal (workers[i].failures, 0);
    total_bytes += workers[i].bytes_written;
    total_writes += workers[i].writes;
  }
  ncache_get_stats (nc, &st);
  assert_true (st.writes == total_writes);
  assert_true (st.bytes_written == total_bytes);
  assert_true (st.reads >= (uint64_t) NR_THREADS * ROUNDS);
  assert_true (st.errors == 0);
  ncache_close (nc);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_cache_open_over_memory),
    cmocka_unit_test (test_cache_caps_follow_backing),
    cmocka_unit_test (test_cache_open_refuses_modes),
    cmocka_unit_test (test_cache_open_refuses_device),
    cmocka_unit_test (test_cache_open_bad_arguments),
    cmocka_unit_test (test_cache_device_discard_auto_on_file),
    cmocka_unit_test (test_cache_device_refused),
    cmocka_unit_test (test_cache_mode_names),
    cmocka_unit_test (test_cache_pwrite_pread),
    cmocka_unit_test (test_cache_pread_nowait),
    cmocka_unit_test (test_cache_zero_and_trim),
    cmocka_unit_test (test_cache_flag_translation),
    cmocka_unit_test (test_cache_fua_and_flush),
    cmocka_unit_test (test_cache_fast_zero),
    cmocka_unit_test (test_cache_cache_is_noop),
    cmocka_unit_test (test_cache_range_errors),
    cmocka_unit_test (test_cache_readonly_errors),
    cmocka_unit_test (test_cache_stats),
    cmocka_unit_test (test_cache_close_flushes),
    cmocka_unit_test (test_cache_concurrent_io),
  };

  test_log_capture ();
  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
