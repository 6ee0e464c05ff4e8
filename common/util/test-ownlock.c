/* SPDX-License-Identifier: BSD-3-Clause */
/* test-ownlock.c — unit tests for ownlock.c.
 *
 * WHAT: two opens of one file in one process (two open file descriptions,
 * as two [cache] sections on one file would make) conflict; readers share
 * and exclude a writer; closing the holder frees the file; a dup of the
 * holder's fd shares its lock; the holder is named after this program.
 * WHY: the whole "one opener at a time" rule rests on these semantics
 * (OFD, not POSIX record locks, which a process never conflicts with
 * itself on).
 * INVARIANTS: every test works in its own mkdtemp directory.
 * THREADS AND LOCKS: single-threaded.
 * FAILURE: assertion failures are reported by cmocka.
 * NOT HERE: O_EXCL on block devices (needs root and a device).
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
#include <cmocka.h>

#include "ownlock.h"

static char tmpdir[256];
static char path[320];

static int
setup (void **state)
{
  const char *t = getenv ("TMPDIR");
  int fd;

  (void) state;
  snprintf (tmpdir, sizeof tmpdir, "%s/test-ownlock.XXXXXX",
            t ? t : "/tmp");
  if (mkdtemp (tmpdir) == NULL)
    return -1;
  snprintf (path, sizeof path, "%s/f", tmpdir);
  fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd == -1)
    return -1;
  close (fd);
  return 0;
}

static int
teardown (void **state)
{
  (void) state;
  unlink (path);
  rmdir (tmpdir);
  return 0;
}

static int
open_rw (void)
{
  int fd = open (path, O_RDWR | O_CLOEXEC);
  assert_true (fd >= 0);
  return fd;
}

static void
test_ownlock_two_opens_conflict (void **state)
{
  char holder[128];
  int a = open_rw (), b = open_rw ();

  (void) state;
  assert_int_equal (ownlock_take (a, true, NULL, 0), 0);
  /* Taking it again on the same description is not a conflict. */
  assert_int_equal (ownlock_take (a, true, NULL, 0), 0);
  assert_int_equal (ownlock_take (b, true, holder, sizeof holder), -EBUSY);
  assert_int_equal (ownlock_take (b, false, holder, sizeof holder), -EBUSY);
  close (a);
  assert_int_equal (ownlock_take (b, true, NULL, 0), 0);
  close (b);
}

static void
test_ownlock_readers_share (void **state)
{
  int a = open_rw (), b = open_rw (), c = open_rw ();

  (void) state;
  assert_int_equal (ownlock_take (a, false, NULL, 0), 0);
  assert_int_equal (ownlock_take (b, false, NULL, 0), 0);
  assert_int_equal (ownlock_take (c, true, NULL, 0), -EBUSY);
  close (a);
  assert_int_equal (ownlock_take (c, true, NULL, 0), -EBUSY);
  close (b);
  assert_int_equal (ownlock_take (c, true, NULL, 0), 0);
  close (c);
}

static void
test_ownlock_dup_keeps_lock (void **state)
{
  int a = open_rw (), a2, b = open_rw ();

  (void) state;
  assert_int_equal (ownlock_take (a, true, NULL, 0), 0);
  a2 = dup (a);
  assert_true (a2 >= 0);
  close (a);
  /* Unlike a POSIX lock, closing one fd of the description keeps it. */
  assert_int_equal (ownlock_take (b, true, NULL, 0), -EBUSY);
  close (a2);
  assert_int_equal (ownlock_take (b, true, NULL, 0), 0);
  close (b);
}

static void
test_ownlock_names_holder (void **state)
{
  char holder[128], want[64];
  int a = open_rw (), b = open_rw ();

  (void) state;
  assert_int_equal (ownlock_take (a, true, NULL, 0), 0);
  memset (holder, 'x', sizeof holder);
  assert_int_equal (ownlock_take (b, true, holder, sizeof holder), -EBUSY);
  snprintf (want, sizeof want, "(pid %ld)", (long) getpid ());
  assert_non_null (strstr (holder, want));
  assert_non_null (strstr (holder, "test-ownlock"));
  /* A tiny buffer is still a string. */
  ownlock_holder (b, holder, 4);
  assert_int_equal (strlen (holder), 3);
  close (a);
  close (b);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown (test_ownlock_two_opens_conflict,
                                     setup, teardown),
    cmocka_unit_test_setup_teardown (test_ownlock_readers_share,
                                     setup, teardown),
    cmocka_unit_test_setup_teardown (test_ownlock_dup_keeps_lock,
                                     setup, teardown),
    cmocka_unit_test_setup_teardown (test_ownlock_names_holder,
                                     setup, teardown),
  };

  return cmocka_run_group_tests (tests, NULL, NULL);
}
