/* SPDX-License-Identifier: BSD-3-Clause */
/* test-fileio.c — unit tests for fileio.c.
 *
 * WHAT: creating a sparse file (and refusing to clobber one), sizing and
 * rejecting files by kind, the full-transfer loops at end of file and on
 * a bad fd, durable writes with and without RWF_DSYNC, hole punching and
 * the "not supported" classification of what a regular file answers to
 * a block-device ioctl.
 * WHY: both file-backed drivers (backing store and cache device) rest on
 * these; their own tests cover the policy above, these the kernel calls.
 * INVARIANTS: every test works in its own mkdtemp directory under $TMPDIR
 * (or /tmp), removed by teardown; log messages go to a capturing sink so
 * the logging helpers' prefix and step can be checked.
 * THREADS AND LOCKS: single-threaded.
 * FAILURE: assertion failures are reported by cmocka.
 * NOT HERE: real block devices (BLKGETSIZE64, BLKDISCARD on a device)
 * and EINTR, which a unit test cannot provoke without root or signals.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "testkit.h"

#ifdef HAVE_LINUX_FS_H
#include <linux/fs.h>
#endif

#include "fileio.h"
#include "log.h"

static char tmpdir[256];
static char path[320];
static int
setup (void **state)
{
  const char *base = getenv ("TMPDIR");

  if (base == NULL || *base == '\0')
    base = "/tmp";
  snprintf (tmpdir, sizeof tmpdir, "%s/test-fileio-XXXXXX", base);
  if (mkdtemp (tmpdir) == NULL) {
    perror ("mkdtemp");
    return -1;
  }
  snprintf (path, sizeof path, "%s/f", tmpdir);
  test_log_capture ();
  return 0;
}

static int
teardown (void **state)
{
  log_set_sink (NULL);
  unlink (path);
  return rmdir (tmpdir);
}

/* A file of size_bytes holding the byte pattern i & 0xff; an O_RDWR fd. */
static int
make_file (size_t size_bytes)
{
  unsigned char *buf = malloc (size_bytes);
  int fd;
  size_t i;

  assert_non_null (buf);
  for (i = 0; i < size_bytes; ++i)
    buf[i] = (unsigned char) (i & 0xff);
  fd = open (path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  assert_true (fd >= 0);
  assert_int_equal (pwrite (fd, buf, size_bytes, 0), (ssize_t) size_bytes);
  free (buf);
  return fd;
}

static bool
all_zero (const unsigned char *p, size_t n)
{
  size_t i;

  for (i = 0; i < n; ++i)
    if (p[i] != 0)
      return false;
  return true;
}

static void
test_fileio_create_sparse (void **state)
{
  struct stat st;
  unsigned char buf[4096];
  size_t done;
  int fd;

  assert_int_equal (fileio_create_sparse ("pfx ", path, 1 << 20, 0600), 0);
  assert_int_equal (stat (path, &st), 0);
  assert_true (S_ISREG (st.st_mode));
  assert_int_equal (st.st_size, 1 << 20);
  assert_int_equal (st.st_mode & 0077, 0);

  fd = open (path, O_RDONLY | O_CLOEXEC);
  assert_true (fd >= 0);
  memset (buf, 0xaa, sizeof buf);
  assert_int_equal (fileio_pread_full (fd, buf, sizeof buf, 12345, &done), 0);
  assert_int_equal (done, sizeof buf);
  assert_true (all_zero (buf, sizeof buf));
  close (fd);

  /* An existing file is never touched, and that is not an error. */
  assert_int_equal (fileio_create_sparse ("pfx ", path, 4096, 0600), -EEXIST);
  assert_int_equal (stat (path, &st), 0);
  assert_int_equal (st.st_size, 1 << 20);
  assert_int_equal (test_log_errors (), 0);
}

static void
test_fileio_create_sparse_errors (void **state)
{
  char expected[512];
  char missing[400];

  assert_int_equal (fileio_create_sparse ("pfx ", path, UINT64_MAX, 0600),
                    -EFBIG);
  assert_int_equal (access (path, F_OK), -1);
  snprintf (expected, sizeof expected,
            "pfx %s: cannot create: size %llu bytes is too large", path,
            (unsigned long long) UINT64_MAX);
  assert_string_equal (test_log_last_error (), expected);

  snprintf (missing, sizeof missing, "%s/no/such/dir", tmpdir);
  assert_int_equal (fileio_create_sparse ("pfx ", missing, 4096, 0600),
                    -ENOENT);
  snprintf (expected, sizeof expected, "pfx %s: create: %s", missing,
            strerror (ENOENT));
  assert_string_equal (test_log_last_error (), expected);
  assert_int_equal (test_log_errors (), 2);
}

static void
test_fileio_stat_size (void **state)
{
  struct stat st;
  uint64_t size = 7;
  char expected[512];
  int fd = make_file (5000);

  assert_int_equal (fileio_stat_size ("pfx ", path, fd, &st, &size), 0);
  assert_int_equal (size, 5000);
  assert_true (S_ISREG (st.st_mode));
  close (fd);

  /* A directory: -EISDIR, outputs untouched, one message. */
  fd = open (tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  assert_true (fd >= 0);
  size = 7;
  assert_int_equal (fileio_stat_size ("pfx ", tmpdir, fd, &st, &size),
                    -EISDIR);
  assert_int_equal (size, 7);
  snprintf (expected, sizeof expected,
            "pfx %s: not a regular file or a block device", tmpdir);
  assert_string_equal (test_log_last_error (), expected);
  close (fd);

  /* Any other kind (a character device): -EINVAL. */
  fd = open ("/dev/null", O_RDONLY | O_CLOEXEC);
  assert_true (fd >= 0);
  assert_int_equal (fileio_stat_size ("pfx ", "/dev/null", fd, &st, &size),
                    -EINVAL);
  assert_int_equal (size, 7);
  close (fd);

  /* fstat itself failing. */
  assert_int_equal (fileio_stat_size ("pfx ", path, -1, &st, &size), -EBADF);
  snprintf (expected, sizeof expected, "pfx %s: fstat: %s", path,
            strerror (EBADF));
  assert_string_equal (test_log_last_error (), expected);
  assert_int_equal (test_log_errors (), 3);
}

static void
test_fileio_pread_full_eof (void **state)
{
  unsigned char buf[4096];
  size_t done = 99;
  int fd = make_file (100);

  assert_int_equal (fileio_pread_full (fd, buf, sizeof buf, 50, &done), 0);
  assert_int_equal (done, 50);
  assert_int_equal (buf[0], 50);
  assert_int_equal (buf[49], 99);

  assert_int_equal (fileio_pread_full (fd, buf, sizeof buf, 200, &done), 0);
  assert_int_equal (done, 0);

  assert_int_equal (fileio_pread_full (fd, buf, 0, 0, &done), 0);
  assert_int_equal (done, 0);
  close (fd);

  assert_int_equal (fileio_pread_full (-1, buf, sizeof buf, 0, &done),
                    -EBADF);
  assert_int_equal (done, 0);
}

static void
test_fileio_pwrite_full (void **state)
{
  unsigned char in[8192], out[8192];
  bool cap_dsync = true, no_dsync = false;
  size_t done = 99, i;
  int fd = make_file (100);

  for (i = 0; i < sizeof in; ++i)
    in[i] = (unsigned char) (i * 7);

  /* Durable, RWF_DSYNC while the kernel has it. */
  assert_int_equal (fileio_pwrite_full (fd, in, 4096, 4096, &cap_dsync,
                                        &done), 0);
  assert_int_equal (done, 4096);
  /* Durable through fdatasync; plain. */
  assert_int_equal (fileio_pwrite_full (fd, in + 4096, 4096, 8192,
                                        &no_dsync, &done), 0);
  assert_int_equal (done, 4096);
  assert_false (no_dsync);
  assert_int_equal (fileio_pwrite_full (fd, in, 100, 0, NULL, &done), 0);
  assert_int_equal (done, 100);

  assert_int_equal (fileio_pread_full (fd, out, 8192, 4096, &done), 0);
  assert_int_equal (done, 8192);
  assert_memory_equal (in, out, 8192);
  assert_int_equal (fileio_pread_full (fd, out, 100, 0, &done), 0);
  assert_memory_equal (in, out, 100);
  close (fd);

  /* A failing write reports how far it got (nothing). */
  fd = open (path, O_RDONLY | O_CLOEXEC);
  assert_true (fd >= 0);
  assert_int_equal (fileio_pwrite_full (fd, in, 4096, 0, NULL, &done),
                    -EBADF);
  assert_int_equal (done, 0);
  assert_int_equal (fileio_pwrite_full (fd, in, 4096, 0, &cap_dsync, &done),
                    -EBADF);
  assert_int_equal (done, 0);
  close (fd);
}

static void
test_fileio_punch_hole (void **state)
{
  unsigned char buf[3 * 4096];
  struct stat st;
  size_t done;
  int fd = make_file (sizeof buf);
  int r;

  r = fileio_punch_hole (fd, 4096, 4096);
  if (r < 0 && fileio_is_unsupported (-r)) {
    close (fd);
    skip ();
  }
  assert_int_equal (r, 0);
  assert_int_equal (fstat (fd, &st), 0);
  assert_int_equal (st.st_size, sizeof buf);
  assert_int_equal (fileio_pread_full (fd, buf, sizeof buf, 0, &done), 0);
  assert_int_equal (done, sizeof buf);
  assert_int_equal (buf[4095], 0xff);
  assert_true (all_zero (buf + 4096, 4096));
  assert_int_equal (buf[8192], 0);
  assert_int_equal (buf[8193], 1);
  close (fd);

  assert_int_equal (fileio_fallocate (-1, 0, 0, 4096), -EBADF);
}

static void
test_fileio_unsupported (void **state)
{
  bool cap = true;
  int fd = make_file (4096);

  /* What a regular file answers to a block-device ioctl must read as
   * "not supported", or the drivers would fail a trim instead of
   * learning to skip it.
   */
  assert_true (fileio_is_unsupported (-fileio_range_ioctl (fd, BLKDISCARD,
                                                           0, 4096)));
  assert_true (fileio_is_unsupported (EOPNOTSUPP));
  assert_true (fileio_is_unsupported (ENOSYS));
  assert_false (fileio_is_unsupported (EIO));
  assert_false (fileio_is_unsupported (EINVAL));
  assert_int_equal (fileio_datasync (fd), 0);
  close (fd);
  assert_int_equal (fileio_datasync (-1), -EBADF);

  assert_true (fileio_cap_get (&cap));
  fileio_cap_clear (&cap);
  assert_false (fileio_cap_get (&cap));
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown (test_fileio_create_sparse,
                                     setup, teardown),
    cmocka_unit_test_setup_teardown (test_fileio_create_sparse_errors,
                                     setup, teardown),
    cmocka_unit_test_setup_teardown (test_fileio_stat_size, setup, teardown),
    cmocka_unit_test_setup_teardown (test_fileio_pread_full_eof,
                                     setup, teardown),
    cmocka_unit_test_setup_teardown (test_fileio_pwrite_full,
                                     setup, teardown),
    cmocka_unit_test_setup_teardown (test_fileio_punch_hole,
                                     setup, teardown),
    cmocka_unit_test_setup_teardown (test_fileio_unsupported,
                                     setup, teardown),
  };

  return cmocka_run_group_tests (tests, NULL, NULL);
}
