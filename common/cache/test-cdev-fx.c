/* SPDX-License-Identifier: BSD-3-Clause */
/* test-cdev-fx.c — shared helpers of the cdev tests (test-cdev-fx.h).
 *
 * WHAT: the seed, a private scratch directory under $TMPDIR (or /tmp),
 * files in it, and checks that exactly one error naming the right things
 * was logged.
 * WHY: both cdev programs need them.
 * INVARIANTS: every file created is removed with the directory.
 * THREADS AND LOCKS: the test's thread only.
 * FAILURE: setup failures fail the test.
 * NOT HERE: the tests (test-cdev-file.c, test-cdev-sim.c).
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
#include <sys/stat.h>
#include <sys/types.h>

#ifdef HAVE_LINUX_FS_H
#include <linux/fs.h>
#endif

#include <cmocka.h>

#include "cdev.h"
#include "log.h"
#include "testkit.h"
#include "ondisk.h"
#include "test-cdev-fx.h"

/* ---- captured log messages ---- */

/* Exactly one error since test_log_clear, and it contains both strings. */
void
assert_one_error (const char *s1, const char *s2)
{
  if (test_log_errors () != 1 || strstr (test_log_last_error (), s1) == NULL ||
      (s2 && strstr (test_log_last_error (), s2) == NULL))
    fprintf (stderr, "expected one error with '%s' '%s'; got %u, last '%s'\n",
             s1, s2 ? s2 : "", test_log_errors (), test_log_last_error ());
  assert_int_equal (test_log_errors (), 1);
  assert_non_null (strstr (test_log_last_error (), s1));
  if (s2)
    assert_non_null (strstr (test_log_last_error (), s2));
  test_log_clear ();
}

/* ---- helpers ---- */

uint64_t
test_seed (void)
{
  return test_seed_from_env ("test-cdev");
}

/* Fill a block-multiple buffer so every block carries (tag, block). */
void
fill (void *buf, size_t count, uint64_t offset, uint64_t tag)
{
  unsigned char *p = buf;
  size_t i;

  for (i = 0; i < count; i += 8) {
    uint64_t v = tag * UINT64_C (0x100000001b3) ^ ((offset + i) / 8);

    memcpy (p + i, &v, 8);
  }
}

bool
check_fill (const void *buf, size_t count, uint64_t offset, uint64_t tag)
{
  void *want = malloc (count);
  bool ok;

  assert_non_null (want);
  fill (want, count, offset, tag);
  ok = memcmp (want, buf, count) == 0;
  free (want);
  return ok;
}

bool
all_zero (const void *buf, size_t count)
{
  const unsigned char *p = buf;
  size_t i;

  for (i = 0; i < count; i++)
    if (p[i])
      return false;
  return true;
}

const char *
tmp_base (void)
{
  const char *t = getenv ("TMPDIR");

  return t && *t ? t : "/tmp";
}
static char *tmpdirs[MAX_TMPDIRS];

/* A private directory for one test; free with rm_tmpdir. */
char *
make_tmpdir (const char *base)
{
  char *dir;
  unsigned i;

  assert_true (asprintf (&dir, "%s/test-cdev.XXXXXX", base) > 0);
  if (mkdtemp (dir) == NULL) {
    free (dir);
    return NULL;
  }
  for (i = 0; i < MAX_TMPDIRS && tmpdirs[i] != NULL; i++)
    ;
  assert_true (i < MAX_TMPDIRS);
  tmpdirs[i] = dir;
  return dir;
}

char *
path_in (const char *dir, const char *name)
{
  char *p;

  assert_true (asprintf (&p, "%s/%s", dir, name) > 0);
  return p;
}

/* Remove dir and the files in it (it has no subdirectories). */
static void
remove_dir (const char *dir)
{
  DIR *d = opendir (dir);
  struct dirent *e;

  if (d != NULL) {
    while ((e = readdir (d)) != NULL) {
      char *p;

      if (strcmp (e->d_name, ".") == 0 || strcmp (e->d_name, "..") == 0)
        continue;
      p = path_in (dir, e->d_name);
      unlink (p);
      free (p);
    }
    closedir (d);
  }
  rmdir (dir);
}

void
rm_tmpdir (char *dir, char *path)
{
  unsigned i;

  free (path);
  remove_dir (dir);
  for (i = 0; i < MAX_TMPDIRS; i++)
    if (tmpdirs[i] == dir)
      tmpdirs[i] = NULL;
  free (dir);
}

int
teardown_tmpdirs (void **state)
{
  unsigned i;

  for (i = 0; i < MAX_TMPDIRS; i++)
    if (tmpdirs[i] != NULL)
      rm_tmpdir (tmpdirs[i], NULL);
  return 0;
}

/* A temporary file of size bytes (mkstemp); returns its path. */
char *
make_file (const char *dir, uint64_t size)
{
  char *p = path_in (dir, "file.XXXXXX");
  int fd = mkstemp (p);

  assert_true (fd >= 0);
  assert_int_equal (ftruncate (fd, (off_t) size), 0);
  close (fd);
  return p;
}

struct cdev *
open_ok (const char *path, bool direct, bool readonly, uint64_t create)
{
  struct cdev_file_options o = {
    .direct = direct, .readonly = readonly, .create_size_bytes = create,
  };
  struct cdev *cd = NULL;

  assert_int_equal (cdev_file_open (path, &o, &cd), 0);
  assert_non_null (cd);
  return cd;
}

uint64_t
allocated_bytes (const char *path)
{
  struct stat st;

  assert_int_equal (stat (path, &st), 0);
  return (uint64_t) st.st_blocks * 512;
}
