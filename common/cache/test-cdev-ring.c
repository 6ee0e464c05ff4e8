/* SPDX-License-Identifier: BSD-3-Clause */
/* test-cdev-ring.c — unit tests for the io_uring read ring (cdev-ring.c).
 *
 * WHAT: reads queued on a ring come back once each with their cookie and
 * the file's data (O_DIRECT where the scratch filesystem takes it); the
 * ring's space runs out at its depth (-EAGAIN) and comes back as reads
 * are reaped; a request breaking the cdev contract is refused at once
 * (-EINVAL, logged once), a driver without an fd (the simulated device)
 * with -EOPNOTSUPP; a read past the end of a file that shrank completes
 * with -EIO.  Where io_uring is unavailable (built without liburing, or
 * refused by the kernel or a container's seccomp) cdev_ring_create says
 * -ENOSYS and every test is skipped.
 * HOW: files in a private directory (test-cdev-fx.h).
 */
#include <config.h>

#include "test-cdev-fx.h"

#define DEPTH 8u

static struct cdev_ring *
ring_or_skip (void)
{
  struct cdev_ring *rg = NULL;
  int r = cdev_ring_create (DEPTH, &rg);

  if (r == -ENOSYS) {
    printf ("io_uring is not available here: skipped\n");
    skip ();
  }
  assert_int_equal (r, 0);
  assert_non_null (rg);
  assert_true (cdev_ring_eventfd (rg) >= 0);
  return rg;
}

struct seen {
  unsigned n;
  int result[DEPTH + 1];
  unsigned hits[DEPTH + 1];     /* completions per cookie */
};

static void
note (void *cookie, int result, void *opaque)
{
  struct seen *s = opaque;
  uintptr_t i = (uintptr_t) cookie;

  assert_true (i <= DEPTH);
  s->hits[i]++;
  s->result[i] = result;
  s->n++;
}

/* Reap until `want` completions were seen in all. */
static void
reap_all (struct cdev_ring *rg, struct seen *s, unsigned want)
{
  while (s->n < want) {
    assert_int_equal (cdev_ring_wait (rg), 0);
    cdev_ring_reap (rg, note, s);
  }
  assert_int_equal (cdev_ring_in_flight (rg), 0);
}

static void
test_cdev_ring_read (void **state)
{
  struct cdev_ring *rg = ring_or_skip ();
  char *dir = make_tmpdir (tmp_base ());
  char *path = path_in (dir, "cache.img");
  struct cdev *cd = open_ok (path, true, false, 64 * BLK);
  unsigned char *buf = cdev_alloc_buffer (64 * BLK);
  unsigned char *out = cdev_alloc_buffer (DEPTH * 2 * BLK);
  struct seen s = { 0 };
  uintptr_t i;

  fill (buf, 64 * BLK, 0, 7);
  assert_int_equal (cdev_pwrite (cd, buf, 64 * BLK, 0, 0), 0);
  /* DEPTH reads of 2 blocks at scattered offsets, cookies 1..DEPTH. */
  for (i = 1; i <= DEPTH; i++) {
    assert_int_equal (cdev_ring_space (rg), DEPTH - (i - 1));
    assert_int_equal (cdev_ring_read (rg, cd, out + (i - 1) * 2 * BLK,
                                      2 * BLK, (i * 7 % 62) * BLK,
                                      (void *) i), 0);
  }
  assert_int_equal (cdev_ring_space (rg), 0);
  assert_int_equal (cdev_ring_read (rg, cd, out, BLK, 0, (void *) 0),
                    -EAGAIN);
  assert_int_equal (cdev_ring_in_flight (rg), DEPTH);
  assert_int_equal (cdev_ring_submit (rg), 0);
  reap_all (rg, &s, DEPTH);
  assert_int_equal (s.n, DEPTH);
  assert_int_equal (s.hits[0], 0);
  for (i = 1; i <= DEPTH; i++) {
    assert_int_equal (s.hits[i], 1);
    assert_int_equal (s.result[i], 0);
    assert_true (check_fill (out + (i - 1) * 2 * BLK, 2 * BLK,
                             (i * 7 % 62) * BLK, 7));
  }
  /* The slots came back: the ring takes DEPTH reads again. */
  assert_int_equal (cdev_ring_space (rg), DEPTH);
  assert_int_equal (cdev_ring_read (rg, cd, out, BLK, 63 * BLK, (void *) 1),
                    0);
  memset (&s, 0, sizeof s);
  reap_all (rg, &s, 1);
  assert_true (check_fill (out, BLK, 63 * BLK, 7));
  assert_int_equal (test_log_errors (), 0);

  cdev_ring_destroy (rg);
  cdev_ring_destroy (NULL);
  free (out);
  free (buf);
  cdev_close (cd);
  rm_tmpdir (dir, path);
}

static void
test_cdev_ring_refuses (void **state)
{
  struct cdev_ring *rg = ring_or_skip ();
  char *dir = make_tmpdir (tmp_base ());
  char *path = path_in (dir, "cache.img");
  struct cdev *cd = open_ok (path, true, false, 16 * BLK);
  struct cdev *sim = NULL;
  unsigned char *buf = cdev_alloc_buffer (2 * BLK);

  assert_int_equal (cdev_ring_read (rg, cd, buf, BLK, 16 * BLK, NULL),
                    -EINVAL);
  assert_one_error (path, "beyond the end");
  assert_int_equal (cdev_ring_read (rg, cd, buf, BLK, 100, NULL), -EINVAL);
  assert_one_error (path, "not block-aligned");
  assert_int_equal (cdev_ring_read (rg, cd, buf + 1, BLK, 0, NULL), -EINVAL);
  assert_one_error (path, "buffer that is not block-aligned");
  assert_int_equal (cdev_sim_create (16 * BLK, &sim), 0);
  assert_int_equal (cdev_ring_read (rg, sim, buf, BLK, 0, NULL),
                    -EOPNOTSUPP);
  assert_int_equal (cdev_ring_in_flight (rg), 0);
  assert_int_equal (cdev_ring_space (rg), DEPTH);
  assert_int_equal (cdev_ring_wait (rg), 0);      /* nothing in flight */
  assert_int_equal (test_log_errors (), 0);

  cdev_close (sim);
  cdev_ring_destroy (rg);
  free (buf);
  cdev_close (cd);
  rm_tmpdir (dir, path);
}

/* The driver's size is fixed at open: a file cut short under it reads
 * short, which the ring reports as -EIO (the caller redoes the read the
 * blocking way, which logs it).
 */
static void
test_cdev_ring_short_read (void **state)
{
  struct cdev_ring *rg = ring_or_skip ();
  char *dir = make_tmpdir (tmp_base ());
  char *path = path_in (dir, "cache.img");
  struct cdev *cd = open_ok (path, false, false, 16 * BLK);
  unsigned char *buf = cdev_alloc_buffer (4 * BLK);
  struct seen s = { 0 };

  assert_int_equal (truncate (path, 9 * BLK), 0);
  assert_int_equal (cdev_ring_read (rg, cd, buf, 4 * BLK, 8 * BLK,
                                    (void *) 3), 0);
  assert_int_equal (cdev_ring_submit (rg), 0);
  reap_all (rg, &s, 1);
  assert_int_equal (s.hits[3], 1);
  assert_int_equal (s.result[3], -EIO);
  assert_int_equal (test_log_errors (), 0);

  cdev_ring_destroy (rg);
  free (buf);
  cdev_close (cd);
  rm_tmpdir (dir, path);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_teardown (test_cdev_ring_read, teardown_tmpdirs),
    cmocka_unit_test_teardown (test_cdev_ring_refuses, teardown_tmpdirs),
    cmocka_unit_test_teardown (test_cdev_ring_short_read, teardown_tmpdirs),
  };

  test_log_capture ();
  log_set_ratelimit (false);
  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
