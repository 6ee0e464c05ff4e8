/* SPDX-License-Identifier: BSD-3-Clause */
/* test-backing-file.c — unit tests for the file backing driver.
 *
 * WHAT: creation of sparse files, round trips (aligned, unaligned,
 * random, large), FUA and flush, trim and zero (with and without
 * MAY_TRIM, FAST), SEEK_DATA/SEEK_HOLE extents, read-only handles, error
 * cases, the uri, and the block-device paths through a loop device.
 * WHY: the file driver is what every export without a remote backing
 * uses; its holes and zeroes are what the server reports to clients.
 *
 * INVARIANTS:
 * - Every test works in its own mkdtemp directory under $TMPDIR (or
 *   /tmp), removed by the teardown.
 * - Random tests print their seed; NBDCACHE_SEED overrides it.
 * - The driver's log goes through a capturing sink, so tests can check
 *   that a failure was logged once with its path.
 * - Allocation is checked with st_blocks and SEEK_DATA on the file itself,
 *   not only through the driver.
 *
 * THREADS AND LOCKS: single-threaded (the memory driver's test has the
 * concurrency smoke test; the file driver holds no locks).
 *
 * FAILURE: cmocka assertions.  The block-device test is skipped only when
 * a loop device cannot be attached (not root, no /dev/loop-control).
 *
 * NOT HERE: the memory driver (test-backing-memory.c).
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
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
#include <linux/loop.h>
#include <cmocka.h>

#include "testkit.h"

#include "backing.h"
#include "compiler.h"
#include "log.h"

/* ---- per-test temporary directory ---- */

static char tmpdir[PATH_MAX];

static int
remove_entry (const char *path, const struct stat *st, int type,
              struct FTW *ftw)
{
  return remove (path);
}

static char *
tmp_path (const char *name)
{
  char *p;

  assert_true (asprintf (&p, "%s/%s", tmpdir, name) > 0);
  return p;
}

/* ---- log capture ---- */

static int
setup (void **state)
{
  const char *base = getenv ("TMPDIR");

  if (base == NULL || *base == '\0')
    base = "/tmp";
  snprintf (tmpdir, sizeof tmpdir, "%s/test-backing-file-XXXXXX", base);
  if (mkdtemp (tmpdir) == NULL) {
    perror ("mkdtemp");
    return -1;
  }
  test_log_capture ();
  return 0;
}

static int
teardown (void **state)
{
  log_set_sink (NULL);
  return nftw (tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- helpers ---- */

static uint64_t rng_state;

static uint64_t
rng_next (void)
{
  return test_splitmix_next (&rng_state);
}

static void
rng_seed (const char *test)
{
  uint64_t seed = test_seed_from_env (test);

  rng_state = seed ? seed : 1;
}

static void
fill_random (void *buf, size_t n)
{
  unsigned char *p = buf;
  size_t i;

  for (i = 0; i < n; ++i)
    p[i] = (unsigned char) (rng_next () >> 56);
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

static struct backing *
open_new (const char *name, uint64_t size_bytes)
{
  struct backing_open_options opts = { .create_size_bytes = size_bytes };
  struct backing *b = NULL;
  char *path = tmp_path (name);

  assert_int_equal (backing_file_open (path, &opts, &b), 0);
  assert_non_null (b);
  free (path);
  return b;
}

static uint64_t
blocks_of (const char *name)
{
  char *path = tmp_path (name);
  struct stat st;

  assert_int_equal (stat (path, &st), 0);
  free (path);
  return (uint64_t) st.st_blocks;
}

/* True if the file itself has a hole covering [offset, offset+count). */
static bool
file_has_hole (const char *name, uint64_t offset, uint64_t count)
{
  char *path = tmp_path (name);
  int fd = open (path, O_RDONLY);
  off_t data;

  assert_true (fd >= 0);
  free (path);
  data = lseek (fd, (off_t) offset, SEEK_DATA);
  close (fd);
  return (data == -1 && errno == ENXIO) ||
    (data >= 0 && (uint64_t) data >= offset + count);
}

/* What the filesystem under tmpdir can do, found out with the syscalls
 * directly, so the tests check the driver against the truth on whatever
 * filesystem $TMPDIR is (ext4 and tmpfs can do everything; ext2 nothing).
 */
struct fs_caps {
  bool punch;                   /* fallocate PUNCH_HOLE */
  bool zero_range;              /* fallocate ZERO_RANGE */
  bool holes;                   /* SEEK_HOLE finds a hole in a sparse file */
};

static struct fs_caps
probe_fs (void)
{
  char *path = tmp_path ("probe");
  unsigned char buf[64 * 1024];
  struct fs_caps caps;
  int fd;

  fd = open (path, O_RDWR | O_CREAT | O_EXCL, 0600);
  assert_true (fd >= 0);
  memset (buf, 0xff, sizeof buf);
  assert_int_equal (pwrite (fd, buf, sizeof buf, 0), (ssize_t) sizeof buf);
  assert_int_equal (ftruncate (fd, (off_t) (2 * MIB)), 0);
  assert_int_equal (fsync (fd), 0);
  caps.holes = lseek (fd, 0, SEEK_HOLE) < (off_t) (2 * MIB);
  caps.punch = fallocate (fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                          0, 4096) == 0;
  caps.zero_range = fallocate (fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
                               4096, 4096) == 0;
  close (fd);
  unlink (path);
  free (path);
  return caps;
}

/* Collected extents. */
struct extent {
  uint64_t offset, length;
  uint32_t flags;
};

struct extent_list {
  struct extent e[64];
  size_t n;
  int stop_after;               /* >0: return 1 after this many */
  int fail_with;                /* <0: return it on the first call */
};

static int
collect_extent (void *opaque, uint64_t offset, uint64_t length,
                uint32_t flags)
{
  struct extent_list *l = opaque;

  if (l->fail_with < 0)
    return l->fail_with;
  assert_true (l->n < ARRAY_SIZE (l->e));
  assert_true (length > 0);
  l->e[l->n].offset = offset;
  l->e[l->n].length = length;
  l->e[l->n].flags = flags;
  l->n++;
  if (l->stop_after > 0 && l->n == (size_t) l->stop_after)
    return 1;
  return 0;
}

/* Extents of [offset, offset+count), checked to be contiguous, in order,
 * covering exactly the range, with adjacent extents of differing type.
 */
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
    pos += l->e[i].length;
    if (i > 0)
      assert_int_not_equal (l->e[i].flags, l->e[i - 1].flags);
  }
  assert_int_equal (pos, offset + count);
}

/* The flags of the extent covering offset. */
static uint32_t
flags_at (const struct extent_list *l, uint64_t offset)
{
  size_t i;

  for (i = 0; i < l->n; ++i)
    if (offset >= l->e[i].offset && offset < l->e[i].offset + l->e[i].length)
      return l->e[i].flags;
  fail_msg ("no extent covers offset %" PRIu64, offset);
  return 0;
}

#define HOLE_ZERO (BACKING_EXTENT_HOLE | BACKING_EXTENT_ZERO)

/* ---- tests ---- */

static void
test_backing_file_create_sparse (void **state)
{
  struct backing *b = open_new ("disk.img", 8 * MIB);
  char *path = tmp_path ("disk.img");
  struct extent_list l;
  struct stat st;

  assert_int_equal (stat (path, &st), 0);
  assert_true (S_ISREG (st.st_mode));
  assert_int_equal (st.st_size, 8 * MIB);
  assert_int_equal (st.st_blocks, 0);
  assert_int_equal (b->size_bytes, 8 * MIB);
  assert_false (b->readonly);
  assert_false (b->is_block_device);
  assert_string_equal (b->ops->name, "file");

  assert_reads_zero (b, 0, 64 * KIB);
  assert_reads_zero (b, 8 * MIB - 4096, 4096);
  get_extents (b, 0, 8 * MIB, &l);
  assert_int_equal (l.n, 1);
  assert_int_equal (l.e[0].flags, probe_fs ().holes ? HOLE_ZERO : 0);
  backing_close (b);
  free (path);
}

static void
test_backing_file_existing_not_resized (void **state)
{
  struct backing *b = open_new ("disk.img", 1 * MIB);
  unsigned char buf[4096];

  fill_pattern (buf, sizeof buf, 1);
  assert_int_equal (backing_pwrite (b, buf, sizeof buf, 0, 0), 0);
  backing_close (b);

  /* A different create size must not touch an existing file. */
  b = open_new ("disk.img", 2 * MIB);
  assert_int_equal (b->size_bytes, 1 * MIB);
  memset (buf, 0, sizeof buf);
  assert_int_equal (backing_pread (b, buf, sizeof buf, 0), 0);
  {
    unsigned char expect[4096];

    fill_pattern (expect, sizeof expect, 1);
    assert_memory_equal (buf, expect, sizeof buf);
  }
  backing_close (b);
}

static void
test_backing_file_missing_is_enoent (void **state)
{
  struct backing_open_options opts = { 0 };
  struct backing *b = (struct backing *) &opts; /* sentinel */
  char *path = tmp_path ("absent.img");

  assert_int_equal (backing_file_open (path, &opts, &b), -ENOENT);
  assert_ptr_equal (b, (struct backing *) &opts);
  assert_int_equal (test_log_errors (), 1);
  assert_non_null (strstr (test_log_last_error (), path));
  assert_int_equal (access (path, F_OK), -1);

  /* Through backing_open too, with NULL options. */
  assert_int_equal (backing_open (path, NULL, &b), -ENOENT);
  assert_ptr_equal (b, (struct backing *) &opts);

  /* A missing directory cannot be created into. */
  free (path);
  path = tmp_path ("no/such/dir.img");
  opts.create_size_bytes = MIB;
  assert_int_equal (backing_file_open (path, &opts, &b), -ENOENT);
  free (path);
}

static void
test_backing_file_not_a_file (void **state)
{
  struct backing *b = NULL;

  assert_int_equal (backing_file_open (tmpdir, NULL, &b), -EISDIR);
  assert_int_equal (backing_file_open ("/dev/null", NULL, &b), -EINVAL);
  assert_int_equal (backing_file_open ("", NULL, &b), -EINVAL);
  assert_null (b);
}

static void
test_backing_file_round_trip (void **state)
{
  struct backing *b = open_new ("disk.img", 4 * MIB);
  size_t n = 256 * KIB;
  unsigned char *w = malloc (n), *r = malloc (n);
  char *path = tmp_path ("disk.img");
  int fd;

  assert_non_null (w);
  assert_non_null (r);
  fill_pattern (w, n, 3);
  assert_int_equal (backing_pwrite (b, w, n, 1 * MIB, 0), 0);
  assert_int_equal (backing_flush (b), 0);
  assert_int_equal (backing_pread (b, r, n, 1 * MIB), 0);
  assert_memory_equal (w, r, n);

  /* The bytes are really in the file, at that offset. */
  fd = open (path, O_RDONLY);
  assert_true (fd >= 0);
  memset (r, 0, n);
  assert_int_equal (pread (fd, r, n, 1 * MIB), (ssize_t) n);
  assert_memory_equal (w, r, n);
  close (fd);

  /* The last byte of the store. */
  assert_int_equal (backing_pwrite (b, "\x5a", 1, 4 * MIB - 1, 0), 0);
  assert_int_equal (backing_pread (b, r, 1, 4 * MIB - 1), 0);
  assert_int_equal (r[0], 0x5a);

  free (path);
  free (w);
  free (r);
  backing_close (b);
}

static void
test_backing_file_out_of_range (void **state)
{
  struct backing *b = open_new ("disk.img", 1 * MIB);
  unsigned char buf[8192];

  memset (buf, 1, sizeof buf);
  assert_int_equal (backing_pread (b, buf, 4096, 1 * MIB - 4095), -EINVAL);
  assert_int_equal (test_log_errors (), 1);
  assert_non_null (strstr (test_log_last_error (), "disk.img"));
  assert_int_equal (backing_pwrite (b, buf, 2, 1 * MIB - 1, 0), -EINVAL);
  assert_int_equal (backing_pread (b, buf, 1, UINT64_MAX), -EINVAL);
  assert_int_equal (backing_zero (b, 2, 1 * MIB - 1, 0), -EINVAL);
  assert_int_equal (backing_trim (b, UINT64_MAX, 1, 0), -EINVAL);
  assert_int_equal (backing_extents (b, 1, 1 * MIB, collect_extent, NULL),
                    -EINVAL);
  /* Zero-length requests at the end are in range. */
  assert_int_equal (backing_pread (b, buf, 0, 1 * MIB), 0);
  /* Nothing was written past the end. */
  assert_int_equal (blocks_of ("disk.img"), 0);
  backing_close (b);
}

static void
test_backing_file_unaligned_random (void **state)
{
  const size_t size = 2 * MIB;
  struct backing *b = open_new ("disk.img", size);
  unsigned char *model = calloc (1, size);
  unsigned char *buf = malloc (size);
  int i;

  assert_non_null (model);
  assert_non_null (buf);
  rng_seed ("test_backing_file_unaligned_random");
  for (i = 0; i < 300; ++i) {
    uint64_t off = rng_next () % size;
    size_t len = (size_t) (rng_next () % MIN ((uint64_t) (size - off),
                                              64 * KIB)) + 0;
    unsigned op = (unsigned) (rng_next () % 4);

    switch (op) {
    case 0: case 1:                     /* write */
      fill_random (model + off, len);
      assert_int_equal (backing_pwrite (b, model + off, len, off,
                                        op == 1 ? BACKING_FUA : 0), 0);
      break;
    case 2:                             /* zero */
      memset (model + off, 0, len);
      assert_int_equal (backing_zero (b, len, off,
                                      rng_next () & 1 ? BACKING_MAY_TRIM : 0),
                        0);
      break;
    case 3:                             /* read and compare */
      assert_int_equal (backing_pread (b, buf, len, off), 0);
      assert_memory_equal (buf, model + off, len);
      break;
    }
  }
  assert_int_equal (backing_pread (b, buf, size, 0), 0);
  assert_memory_equal (buf, model, size);
  free (model);
  free (buf);
  backing_close (b);
}

static void
test_backing_file_large_io (void **state)
{
  const size_t n = 48 * MIB + 12345;    /* bytes, one call each way */
  struct backing *b = open_new ("disk.img", 64 * MIB);
  unsigned char *w = malloc (n), *r = malloc (n);

  assert_non_null (w);
  assert_non_null (r);
  fill_pattern (w, n, 9);
  assert_int_equal (backing_pwrite (b, w, n, 777, BACKING_FUA), 0);
  memset (r, 0, n);
  assert_int_equal (backing_pread (b, r, n, 777), 0);
  assert_memory_equal (w, r, n);
  free (w);
  free (r);
  backing_close (b);
}

static void
test_backing_file_fua_and_flush (void **state)
{
  struct backing *b = open_new ("disk.img", 1 * MIB);
  char *path = tmp_path ("disk.img");
  unsigned char w[10000], r[10000];
  int fd;

  fill_pattern (w, sizeof w, 4);
  assert_int_equal (backing_pwrite (b, w, sizeof w, 4097, BACKING_FUA), 0);
  assert_int_equal (backing_flush (b), 0);

  /* Another open file description sees the data. */
  fd = open (path, O_RDONLY);
  assert_true (fd >= 0);
  assert_int_equal (pread (fd, r, sizeof r, 4097), (ssize_t) sizeof r);
  assert_memory_equal (w, r, sizeof r);
  close (fd);

  assert_int_equal (backing_zero (b, 5000, 4097, BACKING_FUA), 0);
  assert_reads_zero (b, 4097, 5000);
  assert_int_equal (backing_trim (b, 64 * KIB, 0, BACKING_FUA), 0);
  free (path);
  backing_close (b);
}

static void
test_backing_file_trim_makes_hole (void **state)
{
  struct backing *b = open_new ("disk.img", 4 * MIB);
  size_t n = 2 * MIB;
  unsigned char *w = malloc (n);
  struct extent_list l;
  uint64_t blocks_before;

  struct fs_caps caps = probe_fs ();

  assert_non_null (w);
  assert_int_equal (b->can_trim, caps.punch);
  fill_pattern (w, n, 5);
  assert_int_equal (backing_pwrite (b, w, n, 0, 0), 0);
  assert_int_equal (backing_flush (b), 0);
  blocks_before = blocks_of ("disk.img");

  assert_int_equal (backing_trim (b, 512 * KIB, 512 * KIB, 0), 0);
  if (!caps.punch) {
    /* Trim is advisory: a no-op that succeeds, the data stays. */
    unsigned char *r = malloc (n);

    assert_non_null (r);
    assert_int_equal (backing_pread (b, r, n, 0), 0);
    assert_memory_equal (r, w, n);
    assert_int_equal (test_log_errors (), 0);
    free (r);
    free (w);
    backing_close (b);
    return;
  }
  assert_reads_zero (b, 512 * KIB, 512 * KIB);
  assert_true (blocks_of ("disk.img") < blocks_before);
  assert_true (!caps.holes || file_has_hole ("disk.img", 512 * KIB, 512 * KIB));

  get_extents (b, 0, 4 * MIB, &l);
  assert_int_equal (flags_at (&l, 0), 0);
  if (!caps.holes)
    assert_int_equal (l.n, 1);
  else {
  assert_int_equal (flags_at (&l, 512 * KIB), HOLE_ZERO);
  assert_int_equal (flags_at (&l, 1 * MIB - 1), HOLE_ZERO);
  assert_int_equal (flags_at (&l, 1 * MIB), 0);
  assert_int_equal (flags_at (&l, 3 * MIB), HOLE_ZERO);
  }

  /* Unaligned trim: the range reads as zeros (punch zeroes the edges),
   * the bytes around it keep their data.
   */
  {
    unsigned char r[16];

    assert_int_equal (backing_trim (b, 10000, 1 * MIB + 100, 0), 0);
    assert_reads_zero (b, 1 * MIB + 100, 10000);
    assert_int_equal (backing_pread (b, r, 1, 1 * MIB + 99), 0);
    assert_int_equal (r[0], w[1 * MIB + 99]);
    assert_int_equal (backing_pread (b, r, 1, 1 * MIB + 10100), 0);
    assert_int_equal (r[0], w[1 * MIB + 10100]);
  }
  free (w);
  backing_close (b);
}

static void
test_backing_file_zero (void **state)
{
  struct backing *b = open_new ("disk.img", 4 * MIB);
  size_t n = 4 * MIB;
  unsigned char *w = malloc (n);
  unsigned char r[1];
  uint64_t blocks_full;
  struct fs_caps caps = probe_fs ();

  assert_non_null (w);
  fill_pattern (w, n, 6);
  assert_int_equal (backing_pwrite (b, w, n, 0, 0), 0);
  assert_int_equal (backing_flush (b), 0);
  blocks_full = blocks_of ("disk.img");

  /* Without MAY_TRIM: zeros, and the space stays allocated. */
  assert_int_equal (backing_zero (b, 1 * MIB, 1 * MIB, 0), 0);
  assert_reads_zero (b, 1 * MIB, 1 * MIB);
  assert_int_equal (backing_flush (b), 0);
  assert_true (blocks_of ("disk.img") >= blocks_full);

  /* With MAY_TRIM: zeros, and the space is released. */
  assert_int_equal (backing_zero (b, 1 * MIB, 2 * MIB, BACKING_MAY_TRIM), 0);
  assert_reads_zero (b, 2 * MIB, 1 * MIB);
  if (caps.punch) {
    assert_true (blocks_of ("disk.img") < blocks_full);
    assert_true (!caps.holes || file_has_hole ("disk.img", 2 * MIB, 1 * MIB));
  }

  /* Unaligned, both ways: exact edges. */
  assert_int_equal (backing_zero (b, 3333, 3 * MIB + 17, 0), 0);
  assert_int_equal (backing_zero (b, 5555, 3 * MIB + 9000,
                                  BACKING_MAY_TRIM), 0);
  assert_reads_zero (b, 3 * MIB + 17, 3333);
  assert_reads_zero (b, 3 * MIB + 9000, 5555);
  assert_int_equal (backing_pread (b, r, 1, 3 * MIB + 16), 0);
  assert_int_equal (r[0], w[3 * MIB + 16]);
  assert_int_equal (backing_pread (b, r, 1, 3 * MIB + 17 + 3333), 0);
  assert_int_equal (r[0], w[3 * MIB + 17 + 3333]);
  assert_int_equal (backing_pread (b, r, 1, 3 * MIB + 9000 + 5555), 0);
  assert_int_equal (r[0], w[3 * MIB + 9000 + 5555]);
  assert_int_equal (backing_zero (b, 0, 0, 0), 0);
  free (w);
  backing_close (b);
}

static void
test_backing_file_fast_zero (void **state)
{
  struct backing *b = open_new ("disk.img", 2 * MIB);
  unsigned char w[64 * 1024], r[64 * 1024];
  struct fs_caps caps = probe_fs ();
  bool fast = caps.punch || caps.zero_range;
  int ret, i;

  assert_int_equal (b->can_fast_zero, caps.punch);
  fill_pattern (w, sizeof w, 7);

  /* Each way twice: the second call runs with whatever the driver
   * learned about the filesystem during the first.
   */
  for (i = 0; i < 4; ++i) {
    uint32_t flags = BACKING_FAST | (i >= 2 ? BACKING_MAY_TRIM : 0);

    assert_int_equal (backing_pwrite (b, w, sizeof w, 4096, 0), 0);
    ret = backing_zero (b, sizeof w - 1, 4097, flags);
    if (fast) {
      /* ext4 (ZERO_RANGE) and tmpfs (punch + allocate) zero fast. */
      assert_int_equal (ret, 0);
      assert_reads_zero (b, 4097, sizeof w - 1);
      assert_int_equal (backing_pread (b, r, 1, 4096), 0);
      assert_int_equal (r[0], w[0]);
    }
    else {
      /* Refused at once, nothing changed. */
      assert_int_equal (ret, -ENOTSUP);
      assert_int_equal (backing_pread (b, r, sizeof r, 4096), 0);
      assert_memory_equal (w, r, sizeof r);
    }
  }
  /* -ENOTSUP is not a failure worth a log line. */
  assert_int_equal (test_log_errors (), 0);
  backing_close (b);
}

static void
test_backing_file_extents (void **state)
{
  struct backing *b = open_new ("disk.img", 2 * MIB);
  unsigned char buf[64 * 1024];
  struct extent_list l;

  assert_true (b->can_extents);
  fill_pattern (buf, sizeof buf, 8);
  /* data [0, 64K), hole [64K, 1M), data [1M, 1M+4K), hole to 2M */
  assert_int_equal (backing_pwrite (b, buf, 64 * KIB, 0, 0), 0);
  assert_int_equal (backing_pwrite (b, buf, 4 * KIB, 1 * MIB, 0), 0);

  if (!probe_fs ().holes) {
    /* SEEK_DATA says "all data" here: one extent. */
    get_extents (b, 0, 2 * MIB, &l);
    assert_int_equal (l.n, 1);
    assert_int_equal (l.e[0].flags, 0);
    backing_close (b);
    return;
  }

  get_extents (b, 0, 2 * MIB, &l);
  assert_int_equal (l.n, 4);
  assert_int_equal (l.e[0].length, 64 * KIB);
  assert_int_equal (l.e[0].flags, 0);
  assert_int_equal (l.e[1].offset, 64 * KIB);
  assert_int_equal (l.e[1].flags, HOLE_ZERO);
  assert_int_equal (l.e[2].offset, 1 * MIB);
  assert_int_equal (l.e[2].length, 4 * KIB);
  assert_int_equal (l.e[2].flags, 0);
  assert_int_equal (l.e[3].offset, 1 * MIB + 4 * KIB);
  assert_int_equal (l.e[3].flags, HOLE_ZERO);

  /* A sub-range starting inside a hole and ending inside data. */
  get_extents (b, 100 * KIB, 1 * MIB - 100 * KIB + 1000, &l);
  assert_int_equal (l.n, 2);
  assert_int_equal (l.e[0].flags, HOLE_ZERO);
  assert_int_equal (l.e[0].length, 1 * MIB - 100 * KIB);
  assert_int_equal (l.e[1].flags, 0);
  assert_int_equal (l.e[1].length, 1000);

  /* Inside one data extent; inside the trailing hole. */
  get_extents (b, 10, 20, &l);
  assert_int_equal (l.n, 1);
  assert_int_equal (l.e[0].flags, 0);
  get_extents (b, 2 * MIB - 1, 1, &l);
  assert_int_equal (l.n, 1);
  assert_int_equal (l.e[0].flags, HOLE_ZERO);

  /* The callback stops early with > 0, fails with < 0. */
  memset (&l, 0, sizeof l);
  l.stop_after = 1;
  assert_int_equal (backing_extents (b, 2 * MIB, 0, collect_extent, &l), 0);
  assert_int_equal (l.n, 1);
  memset (&l, 0, sizeof l);
  l.fail_with = -EIO;
  assert_int_equal (backing_extents (b, 2 * MIB, 0, collect_extent, &l),
                    -EIO);

  /* Zero-length: no callback. */
  memset (&l, 0, sizeof l);
  assert_int_equal (backing_extents (b, 0, 0, collect_extent, &l), 0);
  assert_int_equal (l.n, 0);
  backing_close (b);
}

static void
test_backing_file_readonly (void **state)
{
  struct backing_open_options ro = { .readonly = true };
  struct backing *b = open_new ("disk.img", 1 * MIB);
  unsigned char w[4096], r[4096];
  char *path = tmp_path ("disk.img");
  struct extent_list l;

  fill_pattern (w, sizeof w, 10);
  assert_int_equal (backing_pwrite (b, w, sizeof w, 0, 0), 0);
  backing_close (b);

  assert_int_equal (backing_file_open (path, &ro, &b), 0);
  assert_true (b->readonly);
  assert_false (b->can_trim);
  assert_false (b->can_zero);
  assert_false (b->can_fast_zero);
  assert_int_equal (backing_pwrite (b, r, sizeof r, 0, 0), -EROFS);
  assert_int_equal (test_log_errors (), 1);
  assert_non_null (strstr (test_log_last_error (), path));
  assert_int_equal (backing_pwrite (b, r, sizeof r, 0, BACKING_FUA), -EROFS);
  assert_int_equal (backing_trim (b, 4096, 0, 0), -EROFS);
  assert_int_equal (backing_zero (b, 4096, 0, 0), -EROFS);
  assert_int_equal (backing_zero (b, 4096, 0, BACKING_FAST), -EROFS);
  assert_int_equal (backing_flush (b), 0);
  assert_int_equal (backing_pread (b, r, sizeof r, 0), 0);
  assert_memory_equal (w, r, sizeof r);
  get_extents (b, 0, 1 * MIB, &l);
  assert_int_equal (flags_at (&l, 0), 0);
  backing_close (b);

  /* A read-only file can be served read-only. */
  assert_int_equal (chmod (path, 0444), 0);
  assert_int_equal (backing_open (path, &ro, &b), 0);
  assert_int_equal (backing_pread (b, r, sizeof r, 0), 0);
  backing_close (b);

  /* Read-only with a create size still creates a missing file. */
  free (path);
  path = tmp_path ("new-ro.img");
  ro.create_size_bytes = 64 * KIB;
  assert_int_equal (backing_file_open (path, &ro, &b), 0);
  assert_int_equal (b->size_bytes, 64 * KIB);
  assert_true (b->readonly);
  assert_int_equal (backing_pwrite (b, w, 1, 0, 0), -EROFS);
  backing_close (b);
  free (path);
}

/* One writer per file: a second writable open (another open file
 * description: another export or server) is refused while the first
 * lives; readers share and exclude writers; share takes no lock, and only
 * read-only.
 */
static void
test_backing_file_one_writer (void **state)
{
  struct backing_open_options rw = { 0 }, ro = { .readonly = true };
  struct backing_open_options share = { .readonly = true, .share = true };
  struct backing_open_options share_rw = { .share = true };
  struct backing *a = open_new ("disk.img", 1 * MIB), *b = NULL, *c;
  char *path = tmp_path ("disk.img");

  (void) state;
  test_log_clear ();
  assert_int_equal (backing_file_open (path, &rw, &b), -EBUSY);
  assert_null (b);
  assert_int_equal (test_log_errors (), 1);
  assert_non_null (strstr (test_log_last_error (), path));
  assert_non_null (strstr (test_log_last_error (), "in use by test-backing-fi"));
  assert_int_equal (backing_file_open (path, &ro, &b), -EBUSY);
  /* share: next to the writer, read-only only. */
  assert_int_equal (backing_file_open (path, &share, &b), 0);
  backing_close (b);
  b = NULL;
  assert_int_equal (backing_file_open (path, &share_rw, &b), -EINVAL);
  assert_null (b);
  backing_close (a);

  /* Readers share; a writer waits for the last one. */
  assert_int_equal (backing_file_open (path, &ro, &a), 0);
  assert_int_equal (backing_file_open (path, &ro, &c), 0);
  assert_int_equal (backing_file_open (path, &rw, &b), -EBUSY);
  backing_close (a);
  assert_int_equal (backing_file_open (path, &rw, &b), -EBUSY);
  backing_close (c);
  assert_int_equal (backing_file_open (path, &rw, &b), 0);
  backing_close (b);
  free (path);
}

static void
test_backing_file_uri (void **state)
{
  struct backing_open_options opts = { .create_size_bytes = 4096 };
  char *path = tmp_path ("disk.img");
  char *expect, *cwd;
  struct backing *b;

  /* Absolute path. */
  assert_int_equal (backing_open (path, &opts, &b), 0);
  assert_true (asprintf (&expect, "file://%s", path) > 0);
  assert_string_equal (b->uri, expect);
  backing_close (b);

  /* The file:// form opens the same file and gives the same uri. */
  assert_int_equal (backing_open (expect, NULL, &b), 0);
  assert_string_equal (b->uri, expect);
  assert_int_equal (b->size_bytes, 4096);
  backing_close (b);

  /* A relative path, with "." and "//" in it, becomes absolute. */
  cwd = getcwd (NULL, 0);
  assert_non_null (cwd);
  assert_int_equal (chdir (tmpdir), 0);
  assert_int_equal (backing_open ("././/disk.img", NULL, &b), 0);
  assert_int_equal (chdir (cwd), 0);
  assert_string_equal (b->uri, expect);
  backing_close (b);
  free (cwd);

  /* Malformed and unsupported URIs. */
  assert_int_equal (backing_open ("file://host/x.img", NULL, &b), -EINVAL);
  assert_int_equal (backing_open ("file://", NULL, &b), -EINVAL);
  assert_int_equal (backing_open ("ceph://pool/x", NULL, &b), -ENOTSUP);
  /* rbd: is the RBD driver's, which wants rbd:POOL/IMAGE. */
  assert_int_equal (backing_open ("rbd://pool/x", NULL, &b), -EINVAL);
  assert_int_equal (backing_open ("", NULL, &b), -EINVAL);
  assert_int_equal (backing_open (NULL, NULL, &b), -EINVAL);

  backing_close (NULL);
  free (expect);
  free (path);
}

/* ---- block devices, through a loop device ---- */

/* Attach path to a free loop device that detaches itself on last close.
 * Returns the open loop fd (and its name), or -1 if that is impossible
 * here.
 */
static int
attach_loop (const char *path, char *name, size_t name_len)
{
  int ctl, backing_fd, loop_fd = -1, tries;

  ctl = open ("/dev/loop-control", O_RDWR | O_CLOEXEC);
  if (ctl < 0)
    return -1;
  backing_fd = open (path, O_RDWR | O_CLOEXEC);
  assert_true (backing_fd >= 0);
  for (tries = 0; tries < 16 && loop_fd < 0; ++tries) {
    struct loop_config cfg = {
      .fd = (uint32_t) backing_fd,
      .info.lo_flags = LO_FLAGS_AUTOCLEAR,
    };
    int n = ioctl (ctl, LOOP_CTL_GET_FREE);

    if (n < 0)
      break;
    snprintf (name, name_len, "/dev/loop%d", n);
    loop_fd = open (name, O_RDWR | O_CLOEXEC);
    if (loop_fd < 0)
      break;
    if (ioctl (loop_fd, LOOP_CONFIGURE, &cfg) < 0) {
      close (loop_fd);
      loop_fd = -1;
      if (errno != EBUSY)       /* raced with another user: retry */
        break;
    }
  }
  close (backing_fd);
  close (ctl);
  return loop_fd;
}

static void
test_backing_file_block_device (void **state)
{
  const uint64_t size = 8 * MIB;
  char *img = tmp_path ("loop.img");
  char dev[64], *expect;
  int loop_fd, fd, ret;
  struct backing *b;
  struct extent_list l;
  unsigned char *w = malloc (1 * MIB), r[8192];

  assert_non_null (w);
  fd = open (img, O_RDWR | O_CREAT | O_EXCL, 0644);
  assert_true (fd >= 0);
  assert_int_equal (ftruncate (fd, (off_t) size), 0);
  close (fd);
  loop_fd = attach_loop (img, dev, sizeof dev);
  if (loop_fd < 0) {
    free (img);
    free (w);
    print_message ("cannot attach a loop device here (need root)\n");
    skip ();
  }

  ret = backing_file_open (dev, NULL, &b);
  close (loop_fd);              /* the backing holds it open now */
  assert_int_equal (ret, 0);
  assert_true (b->is_block_device);
  assert_int_equal (b->size_bytes, size);
  assert_false (b->can_extents);
  assert_true (asprintf (&expect, "file://%s", dev) > 0);
  assert_string_equal (b->uri, expect);
  free (expect);

  /* Round trip, unaligned. */
  fill_pattern (w, 1 * MIB, 11);
  assert_int_equal (backing_pwrite (b, w, 1 * MIB, 1000, BACKING_FUA), 0);
  assert_int_equal (backing_pread (b, r, sizeof r, 1000 + 4096), 0);
  assert_memory_equal (r, w + 4096, sizeof r);
  assert_int_equal (backing_flush (b), 0);

  /* Zero with unaligned edges, each way. */
  assert_int_equal (backing_zero (b, 100000, 1100, 0), 0);
  assert_reads_zero (b, 1100, 100000);
  assert_int_equal (backing_pread (b, r, 1, 1099), 0);
  assert_int_equal (r[0], w[99]);
  assert_int_equal (backing_pread (b, r, 1, 101100), 0);
  assert_int_equal (r[0], w[100100]);
  assert_int_equal (backing_zero (b, 200000, 300001, BACKING_MAY_TRIM), 0);
  assert_reads_zero (b, 300001, 200000);
  assert_int_equal (backing_zero (b, 10, 600003, 0), 0);
  assert_reads_zero (b, 600003, 10);

  /* FAST: loop devices zero without writing data. */
  ret = backing_zero (b, 65536, 700 * KIB, BACKING_FAST);
  assert_int_equal (ret, b->can_fast_zero ? 0 : -ENOTSUP);
  if (ret == 0)
    assert_reads_zero (b, 700 * KIB, 65536);
  /* Less than one logical block cannot be fast. */
  assert_int_equal (backing_zero (b, 100, 900 * KIB + 1, BACKING_FAST),
                    -ENOTSUP);

  /* Trim: succeeds whether or not it deallocates; reads old data or 0. */
  assert_int_equal (backing_trim (b, 1 * MIB, 0, 0), 0);
  assert_int_equal (backing_trim (b, 100, 3, 0), 0);

  /* One allocated extent. */
  get_extents (b, 0, size, &l);
  assert_int_equal (l.n, 1);
  assert_int_equal (l.e[0].flags, 0);

  /* The loop file saw the writes (the loop device writes through). */
  assert_int_equal (backing_pwrite (b, "xyz", 3, size - 3, BACKING_FUA), 0);
  backing_close (b);
  fd = open (img, O_RDONLY);
  assert_true (fd >= 0);
  assert_int_equal (pread (fd, r, 3, (off_t) (size - 3)), 3);
  assert_memory_equal (r, "xyz", 3);
  close (fd);
  free (img);
  free (w);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown (fn, setup, teardown)
    T (test_backing_file_create_sparse),
    T (test_backing_file_existing_not_resized),
    T (test_backing_file_missing_is_enoent),
    T (test_backing_file_not_a_file),
    T (test_backing_file_round_trip),
    T (test_backing_file_out_of_range),
    T (test_backing_file_unaligned_random),
    T (test_backing_file_large_io),
    T (test_backing_file_fua_and_flush),
    T (test_backing_file_trim_makes_hole),
    T (test_backing_file_zero),
    T (test_backing_file_fast_zero),
    T (test_backing_file_extents),
    T (test_backing_file_readonly),
    T (test_backing_file_one_writer),
    T (test_backing_file_uri),
    T (test_backing_file_block_device),
#undef T
  };

  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
