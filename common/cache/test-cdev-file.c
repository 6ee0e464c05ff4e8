/* SPDX-License-Identifier: BSD-3-Clause */
/* test-cdev-file.c — unit tests for the file driver (cdev-file.c) and the
 * shared buffer allocator.
 *
 * WHAT: creation (preallocated where the filesystem can fallocate and is
 * not in memory; never resizing an existing file), size
 * rounding, refusing what is not a file, O_DIRECT on the scratch
 * filesystem and on /dev/shm (either O_DIRECT or the logged fallback),
 * read/write/FUA/sync, every alignment and range error (one logged
 * message naming path and offset), read-only handles, discard punching
 * holes, large writes of a buffered cache bypassing the page cache (and
 * staying coherent with it), an I/O error from a file that shrank; a real block device only
 * if NBDCACHE_TEST_BLOCKDEV names a scratch device (its contents are
 * destroyed), else that test is skipped.
 * HOW: files in a private directory (test-cdev-fx.h).
 */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>

#ifdef HAVE_LINUX_FS_H
#include <linux/fs.h>
#endif

#include <cmocka.h>

#include "cdev.h"
#include "fileio.h"
#include "log.h"
#include "testkit.h"
#include "ondisk.h"
#include "test-cdev-fx.h"

/* ---- the buffer allocator ---- */

static void
test_cdev_alloc_buffer (void **state)
{
  static const size_t sizes[] = { 0, 1, BLK - 1, BLK, BLK + 1, 3 * BLK + 5 };
  size_t i;

  for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t rounded = sizes[i] == 0 ? BLK : (sizes[i] + BLK - 1) / BLK * BLK;
    unsigned char *p = cdev_alloc_buffer (sizes[i]);

    assert_non_null (p);
    assert_int_equal ((uintptr_t) p % BLK, 0);
    assert_true (all_zero (p, rounded));
    memset (p, 0xab, rounded);   /* ASan checks the whole block is ours */
    free (p);
  }
  assert_null (cdev_alloc_buffer (SIZE_MAX));
  assert_null (cdev_alloc_buffer (SIZE_MAX - BLK + 1));
  cdev_close (NULL);
}

/* ---- the file driver ---- */

/* Can the filesystem of dir allocate blocks with fallocate mode 0? */
static bool
can_fallocate (const char *dir)
{
  char *p = make_file (dir, 0);
  int fd = open (p, O_RDWR);
  bool ok;

  assert_true (fd >= 0);
  ok = fallocate (fd, 0, 0, 64 * 1024) == 0;
  close (fd);
  assert_int_equal (unlink (p), 0);
  free (p);
  return ok;
}

/* A created cache file has its blocks (fallocate: O_DIRECT writes into a
 * hole allocate, which ext4 serializes), except in memory, where it stays
 * sparse.
 */
static void
created_allocation_on (const char *base, bool in_memory)
{
  char *dir = make_tmpdir (base);
  char *path;
  struct cdev *cd;
  uint64_t allocated;

  if (dir == NULL) {
    print_message ("no usable directory %s: part skipped\n", base);
    return;
  }
  path = path_in (dir, "cache.img");
  test_log_clear ();
  cd = open_ok (path, false, false, 4 * MIB);
  assert_true (cd->created);
  cdev_close (cd);
  allocated = allocated_bytes (path);
  print_message ("%s: created 4 MiB, %" PRIu64 " bytes allocated\n", base,
                 allocated);
  if (in_memory)
    assert_true (allocated < 4 * MIB / 2);
  else if (can_fallocate (dir))
    assert_true (allocated >= 4 * MIB);
  else
    print_message ("%s cannot fallocate: stays sparse, not checked\n", base);
  assert_int_equal (test_log_errors (), 0);
  assert_int_equal (test_log_warnings (), 0);
  rm_tmpdir (dir, path);
}

static void
test_cdev_file_create_preallocated (void **state)
{
  struct stat st;

  created_allocation_on (tmp_base (), false);
  if (stat ("/dev/shm", &st) == 0 && S_ISDIR (st.st_mode))
    created_allocation_on ("/dev/shm", true);
  else
    print_message ("/dev/shm missing: tmpfs part skipped\n");
}

static void
test_cdev_file_create (void **state)
{
  char *dir = make_tmpdir (tmp_base ());
  char *path = path_in (dir, "cache.img");
  struct cdev_file_options o = { 0 };
  struct cdev *cd = NULL;
  struct stat st;

  test_log_clear ();
  /* absent and no size: refused, named */
  assert_int_equal (cdev_file_open (path, &o, &cd), -ENOENT);
  assert_null (cd);
  assert_one_error (path, "does not exist");
  /* read-only never creates */
  o.readonly = true;
  o.create_size_bytes = 4 * MIB;
  assert_int_equal (cdev_file_open (path, &o, &cd), -ENOENT);
  assert_one_error (path, NULL);

  cd = open_ok (path, false, false, 4 * MIB);
  assert_string_equal (cd->ops->name, "file");
  assert_string_equal (cd->path, path);
  assert_int_equal (cd->size_bytes, 4 * MIB);
  assert_false (cd->is_block_device);
  assert_false (cd->direct);
  assert_int_equal (stat (path, &st), 0);
  assert_int_equal (st.st_size, 4 * MIB);
  cdev_close (cd);

  /* an existing file is never resized, bigger or smaller */
  cd = open_ok (path, false, false, 8 * MIB);
  assert_int_equal (cd->size_bytes, 4 * MIB);
  cdev_close (cd);
  cd = open_ok (path, false, false, 1 * MIB);
  assert_int_equal (cd->size_bytes, 4 * MIB);
  cdev_close (cd);
  assert_int_equal (stat (path, &st), 0);
  assert_int_equal (st.st_size, 4 * MIB);
  assert_int_equal (test_log_errors (), 0);

  rm_tmpdir (dir, path);
}

static void
test_cdev_file_bad_targets (void **state)
{
  char *dir = make_tmpdir (tmp_base ());
  char *path = make_file (dir, 10000);
  struct cdev *cd = NULL;

  test_log_clear ();
  /* sizes round down to whole blocks */
  cd = open_ok (path, false, false, 0);
  assert_int_equal (cd->size_bytes, 8192);
  cdev_close (cd);
  cd = NULL;

  /* less than a block */
  assert_int_equal (truncate (path, 100), 0);
  assert_int_equal (cdev_file_open (path, NULL, &cd), -EINVAL);
  assert_one_error (path, "smaller than one block");

  /* a directory */
  assert_int_equal (cdev_file_open (dir, NULL, &cd), -EISDIR);
  assert_one_error (dir, NULL);

  /* no path */
  assert_int_equal (cdev_file_open ("", NULL, &cd), -EINVAL);
  assert_one_error ("empty", NULL);
  assert_null (cd);

  /* a character device */
  assert_int_equal (cdev_file_open ("/dev/null", NULL, &cd), -EINVAL);
  assert_one_error ("/dev/null", "not a regular file");

  rm_tmpdir (dir, path);
}

/* Write (plain, FUA, the last block), sync, and check with verify_rw. */
static void
write_rw (struct cdev *cd)
{
  unsigned char *buf = cdev_alloc_buffer (3 * BLK);

  assert_non_null (buf);
  fill (buf, 3 * BLK, 2 * BLK, 1);
  assert_int_equal (cdev_pwrite (cd, buf, 3 * BLK, 2 * BLK, 0), 0);
  fill (buf, BLK, 5 * BLK, 2);
  assert_int_equal (cdev_pwrite (cd, buf, BLK, 5 * BLK, CDEV_FUA), 0);
  fill (buf, BLK, cd->size_bytes - BLK, 3);
  assert_int_equal (cdev_pwrite (cd, buf, BLK, cd->size_bytes - BLK, 0), 0);
  /* zero-length I/O at the end is fine */
  assert_int_equal (cdev_pwrite (cd, buf, 0, cd->size_bytes, 0), 0);
  assert_int_equal (cdev_sync (cd), 0);
  free (buf);
}

/* Read write_rw's data back through the cdev and (if path) through an
 * independent fd.
 */
static void
verify_rw (struct cdev *cd, const char *path)
{
  unsigned char *buf = cdev_alloc_buffer (4 * BLK);
  unsigned char *raw = malloc (4 * BLK);
  int fd;

  assert_non_null (buf);
  assert_non_null (raw);
  assert_int_equal (cdev_pread (cd, buf, 4 * BLK, 2 * BLK), 0);
  assert_true (check_fill (buf, 3 * BLK, 2 * BLK, 1));
  assert_true (check_fill (buf + 3 * BLK, BLK, 5 * BLK, 2));
  assert_int_equal (cdev_pread (cd, buf, BLK, cd->size_bytes - BLK), 0);
  assert_true (check_fill (buf, BLK, cd->size_bytes - BLK, 3));
  assert_int_equal (cdev_pread (cd, buf, 0, cd->size_bytes), 0);

  if (path) {
    fd = open (path, O_RDONLY);
    assert_true (fd >= 0);
    assert_int_equal (pread (fd, raw, 4 * BLK, 2 * BLK), 4 * BLK);
    assert_true (check_fill (raw, 3 * BLK, 2 * BLK, 1));
    assert_true (check_fill (raw + 3 * BLK, BLK, 5 * BLK, 2));
    close (fd);
  }
  free (raw);
  free (buf);
}

static void
test_cdev_file_rw (void **state)
{
  char *dir = make_tmpdir (tmp_base ());
  char *path = path_in (dir, "cache.img");
  struct cdev *cd = open_ok (path, false, false, 1 * MIB);

  test_log_clear ();
  write_rw (cd);
  verify_rw (cd, path);
  cdev_close (cd);
  /* the data outlives the handle */
  cd = open_ok (path, false, true, 0);
  verify_rw (cd, NULL);
  cdev_close (cd);
  assert_int_equal (test_log_errors (), 0);
  rm_tmpdir (dir, path);
}

/* O_DIRECT where the filesystem allows it, else the logged fallback. */
static void
direct_on (const char *base, bool must_have_direct)
{
  char *dir = make_tmpdir (base);
  char *path;
  struct cdev *cd;

  if (dir == NULL) {
    print_message ("no usable directory %s: part skipped\n", base);
    return;
  }
  path = path_in (dir, "cache.img");
  test_log_clear ();
  cd = open_ok (path, true, false, 2 * MIB);
  print_message ("%s: O_DIRECT %s\n", base, cd->direct ? "used" :
                 "refused, buffered fallback");
  if (cd->direct)
    assert_int_equal (test_log_warnings (), 0);
  else {
    /* one warning that names the path */
    assert_int_equal (test_log_warnings (), 1);
    assert_non_null (strstr (test_log_last_warning (), path));
    assert_non_null (strstr (test_log_last_warning (), "O_DIRECT"));
    assert_false (must_have_direct);
  }
  write_rw (cd);
  verify_rw (cd, path);
  cdev_close (cd);

  /* read-only + direct on the existing file */
  cd = open_ok (path, true, true, 0);
  verify_rw (cd, NULL);
  cdev_close (cd);
  assert_int_equal (test_log_errors (), 0);
  rm_tmpdir (dir, path);
}

static void
test_cdev_file_direct (void **state)
{
  struct stat st;
  bool ext_like = false;
  char *probe = make_tmpdir (tmp_base ());
  char *p = path_in (probe, "probe");
  int fd = open (p, O_RDWR | O_CREAT | O_DIRECT, 0600);

  /* Require O_DIRECT only where the filesystem demonstrably has it. */
  if (fd >= 0) {
    ext_like = true;
    close (fd);
  }
  rm_tmpdir (probe, p);
  direct_on (tmp_base (), ext_like);
  if (stat ("/dev/shm", &st) == 0 && S_ISDIR (st.st_mode))
    direct_on ("/dev/shm", false);
  else
    print_message ("/dev/shm missing: tmpfs part skipped\n");
}

static void
test_cdev_file_range_errors (void **state)
{
  char *dir = make_tmpdir (tmp_base ());
  const uint64_t size = 64 * BLK;
  char *path = make_file (dir, size);   /* sparse: see what reaches it */
  struct cdev *cd = open_ok (path, false, false, 0);
  unsigned char *buf = cdev_alloc_buffer (4 * BLK);

  test_log_clear ();
  assert_int_equal (cdev_pread (cd, buf, BLK, 512), -EINVAL);
  assert_one_error (path, "offset 512");
  assert_int_equal (cdev_pwrite (cd, buf, BLK, 4097, 0), -EINVAL);
  assert_one_error (path, "offset 4097");
  assert_int_equal (cdev_pread (cd, buf, 100, BLK), -EINVAL);
  assert_one_error (path, "count 100");
  assert_int_equal (cdev_pwrite (cd, buf, 2 * BLK, size - BLK, 0), -EINVAL);
  assert_one_error (path, "beyond the end");
  assert_int_equal (cdev_pread (cd, buf, BLK, size), -EINVAL);
  assert_one_error (path, "beyond the end");
  /* offset + count overflows 64 bits */
  assert_int_equal (cdev_pread (cd, buf, 2 * BLK, UINT64_MAX - BLK + 1),
                    -EINVAL);
  assert_one_error (path, NULL);
  assert_int_equal (cdev_discard (cd, BLK, UINT64_MAX - BLK + 1), -EINVAL);
  assert_one_error (path, "discard");
  assert_int_equal (cdev_discard (cd, 2 * BLK, size - BLK), -EINVAL);
  assert_one_error (path, "discard");
  assert_int_equal (cdev_discard (cd, 512, 0), -EINVAL);
  assert_one_error (path, "discard");
  /* unaligned buffers, even without O_DIRECT */
  assert_int_equal (cdev_pread (cd, buf + 512, BLK, 0), -EINVAL);
  assert_one_error (path, "buffer");
  assert_int_equal (cdev_pwrite (cd, buf + 8, BLK, 0, CDEV_FUA), -EINVAL);
  assert_one_error (path, "buffer");
  /* nothing reached the file */
  assert_int_equal (allocated_bytes (path), 0);

  free (buf);
  cdev_close (cd);
  rm_tmpdir (dir, path);
}

/* One opener at a time: a second open of the same file (a second open
 * file description, as a second process or a second [cache] section
 * makes) is refused while the first lives; readers share and exclude a
 * writer.
 */
static void
test_cdev_file_exclusive (void **state)
{
  struct cdev_file_options rw = { 0 }, ro = { .readonly = true };
  char *dir = make_tmpdir (tmp_base ());
  char *path = make_file (dir, 64 * BLK);
  struct cdev *a, *b = NULL, *c;

  (void) state;
  a = open_ok (path, false, false, 0);
  test_log_clear ();
  assert_int_equal (cdev_file_open (path, &rw, &b), -EBUSY);
  assert_null (b);
  assert_one_error (path, "in use by test-cdev-file (pid");
  assert_int_equal (cdev_file_open (path, &ro, &b), -EBUSY);
  assert_one_error (path, "cannot be inspected");
  cdev_close (a);

  /* Two readers, and no writer while they look. */
  a = open_ok (path, false, true, 0);
  c = open_ok (path, false, true, 0);
  assert_int_equal (cdev_file_open (path, &rw, &b), -EBUSY);
  assert_one_error (path, "in use by");
  cdev_close (a);
  cdev_close (c);
  a = open_ok (path, true, false, 0);   /* O_DIRECT, maybe falling back */
  assert_int_equal (cdev_file_open (path, &rw, &b), -EBUSY);
  assert_one_error (path, "in use by");
  cdev_close (a);
  rm_tmpdir (dir, path);
}

static void
test_cdev_file_readonly (void **state)
{
  char *dir = make_tmpdir (tmp_base ());
  char *path = path_in (dir, "cache.img");
  struct cdev *cd = open_ok (path, false, false, 16 * BLK);
  unsigned char *buf = cdev_alloc_buffer (BLK);

  fill (buf, BLK, 0, 7);
  assert_int_equal (cdev_pwrite (cd, buf, BLK, 0, 0), 0);
  cdev_close (cd);

  test_log_clear ();
  cd = open_ok (path, false, true, 0);
  assert_int_equal (cd->size_bytes, 16 * BLK);
  memset (buf, 0, BLK);
  assert_int_equal (cdev_pread (cd, buf, BLK, 0), 0);
  assert_true (check_fill (buf, BLK, 0, 7));
  memset (buf, 0, BLK);
  assert_int_equal (cdev_pwrite (cd, buf, BLK, 0, 0), -EROFS);
  assert_one_error (path, "offset 0");
  assert_int_equal (cdev_pwrite (cd, buf, BLK, BLK, CDEV_FUA), -EROFS);
  assert_one_error (path, "offset 4096");
  assert_int_equal (cdev_discard (cd, BLK, 0), -EROFS);
  assert_one_error (path, "discard");
  assert_int_equal (cdev_sync (cd), 0);
  assert_int_equal (cdev_pread (cd, buf, BLK, 0), 0);
  assert_true (check_fill (buf, BLK, 0, 7));
  assert_int_equal (test_log_errors (), 0);
  cdev_close (cd);
  free (buf);
  rm_tmpdir (dir, path);
}

static void
discard_on (const char *base)
{
  char *dir = make_tmpdir (base);
  char *path;
  struct cdev *cd;
  unsigned char *buf;
  uint64_t before, after;

  if (dir == NULL) {
    print_message ("no usable directory %s: part skipped\n", base);
    return;
  }
  path = path_in (dir, "cache.img");
  cd = open_ok (path, false, false, 1 * MIB);
  buf = cdev_alloc_buffer (1 * MIB);
  fill (buf, 1 * MIB, 0, 9);
  assert_int_equal (cdev_pwrite (cd, buf, 1 * MIB, 0, 0), 0);
  assert_int_equal (cdev_sync (cd), 0);
  before = allocated_bytes (path);
  assert_true (before >= 1 * MIB);

  test_log_clear ();
  assert_int_equal (cdev_discard (cd, 512 * 1024, 256 * 1024), 0);
  assert_int_equal (cdev_discard (cd, 0, 0), 0);
  assert_int_equal (test_log_errors (), 0);
  after = allocated_bytes (path);
  print_message ("%s: discard: %" PRIu64 " -> %" PRIu64 " bytes allocated\n",
                 base, before, after);
  assert_true (after <= before - 512 * 1024);

  memset (buf, 0xff, 1 * MIB);
  assert_int_equal (cdev_pread (cd, buf, 1 * MIB, 0), 0);
  assert_true (check_fill (buf, 256 * 1024, 0, 9));
  assert_true (all_zero (buf + 256 * 1024, 512 * 1024));
  assert_true (check_fill (buf + 768 * 1024, 256 * 1024, 768 * 1024, 9));
  /* the size is kept */
  assert_int_equal (cd->size_bytes, 1 * MIB);
  cdev_close (cd);
  cd = open_ok (path, false, false, 0);
  assert_int_equal (cd->size_bytes, 1 * MIB);
  cdev_close (cd);
  free (buf);
  rm_tmpdir (dir, path);
}

static void
test_cdev_file_discard (void **state)
{
  struct stat st;

  discard_on (tmp_base ());
  if (stat ("/dev/shm", &st) == 0 && S_ISDIR (st.st_mode))
    discard_on ("/dev/shm");
  else
    print_message ("/dev/shm missing: tmpfs part skipped\n");
}

/* ---- large writes of a buffered cache (LARGE WRITES in cdev-file.c) ---- */

#define LARGE (512 * 1024)      /* >= DIRECT_WRITE_MIN_BYTES */

/* How many of the pages of [offset, offset+count) of path are in the page
 * cache (mincore on a shared read-only mapping).
 */
static size_t
resident_pages (const char *path, uint64_t offset, size_t count)
{
  long page = sysconf (_SC_PAGESIZE);
  size_t n = count / page, i, in = 0;
  unsigned char *vec = malloc (n);
  int fd = open (path, O_RDONLY);
  void *map;

  assert_non_null (vec);
  assert_true (fd >= 0);
  map = mmap (NULL, count, PROT_READ, MAP_SHARED, fd, offset);
  assert_true (map != MAP_FAILED);
  assert_int_equal (mincore (map, count, vec), 0);
  for (i = 0; i < n; i++)
    in += vec[i] & 1;
  munmap (map, count);
  close (fd);
  free (vec);
  return in;
}

/* Does an O_DIRECT LARGE write work on a scratch file in dir, outside
 * memory?  Then the driver must use it.
 */
static bool
large_direct_works (const char *dir)
{
  char *p = path_in (dir, "probe");
  void *buf = cdev_alloc_buffer (LARGE);
  int fd = open (p, O_RDWR | O_CREAT | O_DIRECT, 0600);
  bool ok = false;

  assert_non_null (buf);
  if (fd >= 0) {
    ok = !fileio_in_memory (fd) && pwrite (fd, buf, LARGE, 0) == LARGE;
    close (fd);
  }
  unlink (p);
  free (p);
  free (buf);
  return ok;
}

static void
test_cdev_file_large_writes (void **state)
{
  char *dir = make_tmpdir (tmp_base ());
  char *path = path_in (dir, "cache.img");
  bool direct = large_direct_works (dir);
  unsigned char *buf = cdev_alloc_buffer (LARGE);
  struct cdev *cd;
  uint64_t off;

  assert_non_null (buf);
  test_log_clear ();
  cd = open_ok (path, false, false, 4 * MIB);
  assert_false (cd->direct);
  print_message ("%s: large writes of a buffered cache %s\n", tmp_base (),
                 direct ? "must bypass the page cache" :
                 "stay buffered (no O_DIRECT here): residency part skipped");

  /* Cached pages of a range, then a large write over it: the cdev reads
   * the new data (the kernel dropped the stale pages), as does another fd.
   */
  for (off = 0; off < LARGE; off += BLK) {
    fill (buf, BLK, off, 1);
    assert_int_equal (cdev_pwrite (cd, buf, BLK, off, 0), 0);
  }
  if (direct)
    assert_int_equal (resident_pages (path, 0, LARGE), LARGE / BLK);
  fill (buf, LARGE, 0, 2);
  assert_int_equal (cdev_pwrite (cd, buf, LARGE, 0, CDEV_STREAM), 0);
  memset (buf, 0, LARGE);
  assert_int_equal (cdev_pread (cd, buf, LARGE, 0), 0);
  assert_true (check_fill (buf, LARGE, 0, 2));

  /* A large CDEV_STREAM write to a fresh range leaves it out of the page
   * cache, with FUA too; a small one, or one without the hint, goes
   * through it.
   */
  fill (buf, LARGE, MIB, 3);
  assert_int_equal (cdev_pwrite (cd, buf, LARGE, MIB, CDEV_STREAM), 0);
  fill (buf, LARGE, 2 * MIB, 4);
  assert_int_equal (cdev_pwrite (cd, buf, LARGE, 2 * MIB,
                                 CDEV_STREAM | CDEV_FUA), 0);
  fill (buf, BLK, 3 * MIB, 5);
  assert_int_equal (cdev_pwrite (cd, buf, BLK, 3 * MIB, CDEV_STREAM), 0);
  fill (buf, LARGE, 3 * MIB + LARGE, 6);
  assert_int_equal (cdev_pwrite (cd, buf, LARGE, 3 * MIB + LARGE, 0), 0);
  if (direct) {
    assert_int_equal (resident_pages (path, MIB, LARGE), 0);
    assert_int_equal (resident_pages (path, 2 * MIB, LARGE), 0);
    assert_int_equal (resident_pages (path, 3 * MIB, BLK), 1);
    assert_int_equal (resident_pages (path, 3 * MIB + LARGE, LARGE),
                      LARGE / BLK);
  }
  assert_int_equal (cdev_sync (cd), 0);
  cdev_close (cd);

  /* Everything reads back through a new handle. */
  cd = open_ok (path, false, true, 0);
  assert_int_equal (cdev_pread (cd, buf, LARGE, 0), 0);
  assert_true (check_fill (buf, LARGE, 0, 2));
  assert_int_equal (cdev_pread (cd, buf, LARGE, MIB), 0);
  assert_true (check_fill (buf, LARGE, MIB, 3));
  assert_int_equal (cdev_pread (cd, buf, LARGE, 2 * MIB), 0);
  assert_true (check_fill (buf, LARGE, 2 * MIB, 4));
  assert_int_equal (cdev_pread (cd, buf, BLK, 3 * MIB), 0);
  assert_true (check_fill (buf, BLK, 3 * MIB, 5));
  assert_int_equal (cdev_pread (cd, buf, LARGE, 3 * MIB + LARGE), 0);
  assert_true (check_fill (buf, LARGE, 3 * MIB + LARGE, 6));
  cdev_close (cd);
  assert_int_equal (test_log_errors (), 0);
  free (buf);
  rm_tmpdir (dir, path);
}

/* The file shrinks under the cdev: a read past the new end is -EIO, logged
 * once with the path and the offset.
 */
static void
test_cdev_file_io_error (void **state)
{
  char *dir = make_tmpdir (tmp_base ());
  char *path = path_in (dir, "cache.img");
  struct cdev *cd = open_ok (path, false, false, 16 * BLK);
  unsigned char *buf = cdev_alloc_buffer (2 * BLK);

  assert_int_equal (truncate (path, 8 * BLK), 0);
  test_log_clear ();
  assert_int_equal (cdev_pread (cd, buf, BLK, 12 * BLK), -EIO);
  assert_one_error (path, "offset 49152");
  /* a read that starts inside and ends outside: the offset of the part
   * that failed is named
   */
  assert_int_equal (cdev_pread (cd, buf, 2 * BLK, 7 * BLK), -EIO);
  assert_one_error (path, "offset 32768");
  free (buf);
  cdev_close (cd);
  rm_tmpdir (dir, path);
}

/* Destroys the contents of $NBDCACHE_TEST_BLOCKDEV. */
static void
test_cdev_file_block_device (void **state)
{
  const char *dev = getenv ("NBDCACHE_TEST_BLOCKDEV");
  struct cdev *cd;
  uint64_t size = 0;
  unsigned char *buf;
  int fd;

  if (dev == NULL || *dev == '\0') {
    print_message ("NBDCACHE_TEST_BLOCKDEV not set: skipped\n");
    skip ();
  }
  fd = open (dev, O_RDONLY);
  assert_true (fd >= 0);
  assert_int_equal (ioctl (fd, BLKGETSIZE64, &size), 0);
  close (fd);

  test_log_clear ();
  cd = open_ok (dev, true, false, 0);
  assert_true (cd->is_block_device);
  assert_int_equal (cd->size_bytes, size / BLK * BLK);
  print_message ("%s: %" PRIu64 " bytes, O_DIRECT %d\n", dev, cd->size_bytes,
                 cd->direct);
  write_rw (cd);
  verify_rw (cd, dev);
  buf = cdev_alloc_buffer (BLK);
  fill (buf, BLK, 0, 5);
  assert_int_equal (cdev_pwrite (cd, buf, BLK, 0, CDEV_FUA), 0);
  assert_int_equal (cdev_discard (cd, 16 * BLK, 16 * BLK), 0);
  assert_int_equal (cdev_pread (cd, buf, BLK, 0), 0);
  assert_true (check_fill (buf, BLK, 0, 5));
  assert_int_equal (test_log_errors (), 0);
  free (buf);
  cdev_close (cd);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_cdev_alloc_buffer),
    cmocka_unit_test_teardown (test_cdev_file_create,
                               teardown_tmpdirs),
    cmocka_unit_test_teardown (test_cdev_file_create_preallocated,
                               teardown_tmpdirs),
    cmocka_unit_test_teardown (test_cdev_file_bad_targets,
                               teardown_tmpdirs),
    cmocka_unit_test_teardown (test_cdev_file_rw,
                               teardown_tmpdirs),
    cmocka_unit_test_teardown (test_cdev_file_direct,
                               teardown_tmpdirs),
    cmocka_unit_test_teardown (test_cdev_file_range_errors,
                               teardown_tmpdirs),
    cmocka_unit_test_teardown (test_cdev_file_exclusive,
                               teardown_tmpdirs),
    cmocka_unit_test_teardown (test_cdev_file_readonly,
                               teardown_tmpdirs),
    cmocka_unit_test_teardown (test_cdev_file_discard,
                               teardown_tmpdirs),
    cmocka_unit_test_teardown (test_cdev_file_large_writes,
                               teardown_tmpdirs),
    cmocka_unit_test_teardown (test_cdev_file_io_error,
                               teardown_tmpdirs),
    cmocka_unit_test (test_cdev_file_block_device),
  };

  test_log_capture ();
  log_set_ratelimit (false);    /* the tests expect one error per failure */
  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
