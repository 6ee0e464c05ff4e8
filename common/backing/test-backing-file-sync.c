/* SPDX-License-Identifier: BSD-3-Clause */
/* test-backing-file-sync.c — the file driver's flush after a failed sync.
 *
 * WHAT: fdatasync and pwritev2 are wrapped at link time (-Wl,--wrap) so
 * the test can make the kernel's sync fail once, as after a writeback
 * error on the backing disk.  The kernel reports such an error once, to
 * the call that sees it, and may drop the dirty pages ("fsyncgate"): a
 * FUA write that got the error must make the next flush fail, though
 * that flush's own fdatasync succeeds; the one after it succeeds.  A
 * failed flush is reported by itself and does not fail the next one.
 * WHY: a flush that vouches for dropped pages lets writeback mark data
 * clean that the backing store no longer has.
 * THREADS AND LOCKS: single-threaded.  FAILURE: cmocka assertions.
 * NOT HERE: the other ops (test-backing-file.c).
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
#include <sys/uio.h>
#include <cmocka.h>

#include "backing.h"
#include "log.h"

int __real_fdatasync (int fd);
int __wrap_fdatasync (int fd);
ssize_t __real_pwritev2 (int fd, const struct iovec *iov, int iovcnt,
                         off_t offset, int flags);
ssize_t __wrap_pwritev2 (int fd, const struct iovec *iov, int iovcnt,
                         off_t offset, int flags);

static unsigned fail_syncs;     /* fail this many syncs next */

int
__wrap_fdatasync (int fd)
{
  if (fail_syncs > 0) {
    fail_syncs--;
    errno = EIO;
    return -1;
  }
  return __real_fdatasync (fd);
}

/* A RWF_DSYNC write whose sync fails: the data is written, the call
 * fails.
 */
ssize_t
__wrap_pwritev2 (int fd, const struct iovec *iov, int iovcnt, off_t offset,
                 int flags)
{
  ssize_t n = __real_pwritev2 (fd, iov, iovcnt, offset, flags & ~RWF_DSYNC);

  if (n >= 0 && (flags & RWF_DSYNC)) {
    if (fail_syncs > 0) {
      fail_syncs--;
      errno = EIO;
      return -1;
    }
    if (__real_fdatasync (fd) == -1)
      return -1;
  }
  return n;
}

static void
quiet_sink (enum log_level level, const char *msg)
{
  (void) level;
  (void) msg;
}

static char path[256];

static int
setup (void **state)
{
  const char *base = getenv ("TMPDIR");
  int fd;

  (void) state;
  snprintf (path, sizeof path, "%s/test-backing-file-sync-XXXXXX",
            base && *base ? base : "/tmp");
  fd = mkstemp (path);
  if (fd == -1 || ftruncate (fd, 1 << 20) == -1)
    return -1;
  close (fd);
  log_set_sink (quiet_sink);
  fail_syncs = 0;
  return 0;
}

static int
teardown (void **state)
{
  (void) state;
  log_set_sink (NULL);
  return unlink (path);
}

static struct backing *
open_file (void)
{
  struct backing *b = NULL;

  assert_int_equal (backing_file_open (path, NULL, &b), 0);
  return b;
}

static void
test_flush_after_failed_fua_sync (void **state)
{
  char buf[4096];
  struct backing *b = open_file ();

  (void) state;
  memset (buf, 0x5a, sizeof buf);
  assert_int_equal (backing_pwrite (b, buf, sizeof buf, 0, 0), 0);
  /* The FUA write gets the error of the page written before it. */
  fail_syncs = 1;
  assert_int_equal (backing_pwrite (b, buf, sizeof buf, 8192, BACKING_FUA),
                    -EIO);
  assert_int_equal (fail_syncs, 0);
  /* fdatasync succeeds now, but must not vouch for the first write. */
  assert_int_equal (backing_flush (b), -EIO);
  /* Reported once: written again, flushed. */
  assert_int_equal (backing_pwrite (b, buf, sizeof buf, 0, 0), 0);
  assert_int_equal (backing_flush (b), 0);
  assert_int_equal (backing_flush (b), 0);

  /* Likewise a FUA zero's sync. */
  fail_syncs = 1;
  assert_int_equal (backing_zero (b, sizeof buf, 0, BACKING_FUA), -EIO);
  assert_int_equal (backing_flush (b), -EIO);
  assert_int_equal (backing_flush (b), 0);
  backing_close (b);
}

static void
test_failed_flush_reported_once (void **state)
{
  char buf[4096];
  struct backing *b = open_file ();

  (void) state;
  memset (buf, 0xa5, sizeof buf);
  assert_int_equal (backing_pwrite (b, buf, sizeof buf, 0, 0), 0);
  fail_syncs = 1;
  assert_int_equal (backing_flush (b), -EIO);
  assert_int_equal (backing_flush (b), 0);
  assert_int_equal (backing_pwrite (b, buf, sizeof buf, 0, BACKING_FUA), 0);
  assert_int_equal (backing_flush (b), 0);
  backing_close (b);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown (test_flush_after_failed_fua_sync, setup,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_failed_flush_reported_once, setup,
                                     teardown),
  };

  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
