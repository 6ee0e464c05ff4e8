/* SPDX-License-Identifier: BSD-3-Clause */
/* test-backing-rbd.c — unit tests for the Ceph RBD backing driver.
 *
 * WHAT: every op against a real Ceph cluster: round trips, writes with
 * FUA seen by a second client, flush, write-zeroes (plain, MAY_TRIM,
 * FAST), discard, extents over a sparse image, many threads with requests
 * in flight at once, a read-only open refusing writes, a missing image, a
 * missing pool and malformed names failing with a clear message, the
 * identity URI, and an outage (the OSD frozen with SIGSTOP, then thawed):
 * requests fail with -EIO at the timeout without touching the caller's
 * buffer afterwards, the remote state goes down and comes back by the
 * prober, a write that timed out never lands after a later one.
 * WHY: the driver is what stands between the cache and a Ceph image; its
 * behaviour only shows against real librbd and OSDs.
 *
 * INVARIANTS: run by test-backing-rbd.sh, which starts a throwaway
 * cluster (client-tests/ceph-cluster.sh), exports CEPH_CONF and creates
 * the empty images named by NBDCACHE_TEST_RBD_IMAGE (64 MIB, written by
 * the tests) and NBDCACHE_TEST_RBD_SPARSE (64 MIB, written only by the
 * extents test); NBDCACHE_TEST_RBD_OSD_PID is the OSD's pid (the outage
 * test is skipped without it).  Random data uses a seed printed at start;
 * NBDCACHE_SEED overrides it.
 *
 * THREADS AND LOCKS: the concurrency test starts its own threads and joins
 * them before asserting.
 *
 * FAILURE: cmocka assertions; skipped (77) without the environment.
 *
 * NOT HERE: the engine over RBD (client-tests/test-remote-rbd.sh).
 */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "testkit.h"

#include "backing.h"
#include "log.h"

#define IMAGE_BYTES (64 * MIB)

static const char *image_uri;   /* rbd:POOL/IMAGE, written freely */
static const char *sparse_uri;  /* rbd:POOL/IMAGE, only the extents test */
static uint64_t seed;
static char last_error[1024];

static void
capture (enum log_level level, const char *msg)
{
  fprintf (stderr, "%s\n", msg);
  if (level == LOG_LEVEL_ERROR)
    snprintf (last_error, sizeof last_error, "%s", msg);
}

static void
fill (unsigned char *buf, size_t n, struct test_rng *rng)
{
  size_t i;

  for (i = 0; i < n; i++)
    buf[i] = (unsigned char) test_rng_next (rng);
}

static bool
is_zero (const unsigned char *buf, size_t n)
{
  size_t i;

  for (i = 0; i < n; i++)
    if (buf[i] != 0)
      return false;
  return true;
}

static struct backing *
open_rw (const char *uri)
{
  struct backing *b = NULL;

  assert_int_equal (backing_open (uri, NULL, &b), 0);
  assert_non_null (b);
  return b;
}

static void
test_rbd_identity (void **state)
{
  struct backing *b = open_rw (image_uri);

  (void) state;
  assert_string_equal (b->ops->name, "rbd");
  assert_string_equal (b->uri, image_uri);
  assert_int_equal (b->size_bytes, IMAGE_BYTES);
  assert_false (b->readonly);
  assert_true (b->can_zero && b->can_fast_zero && b->can_trim &&
               b->can_extents);
  backing_close (b);
}

/* Writes (plain and FUA, aligned and not) read back through this handle
 * and through a second client; flush succeeds.
 */
static void
test_rbd_read_write (void **state)
{
  struct backing *b = open_rw (image_uri), *b2;
  size_t n = 300 * KIB + 17;
  unsigned char *w = malloc (n), *r = malloc (n);
  struct test_rng s;

  (void) state;
  test_rng_seed (&s, seed);
  assert_non_null (w);
  assert_non_null (r);
  fill (w, n, &s);
  assert_int_equal (backing_pwrite (b, w, n, 4 * MIB - 1000, BACKING_FUA), 0);
  assert_int_equal (backing_pread (b, r, n, 4 * MIB - 1000), 0);
  assert_memory_equal (w, r, n);

  fill (w, 4096, &s);
  assert_int_equal (backing_pwrite (b, w, 4096, IMAGE_BYTES - 4096, 0), 0);
  assert_int_equal (backing_flush (b), 0);

  b2 = open_rw (image_uri);
  assert_int_equal (backing_pread (b2, r, 4096, IMAGE_BYTES - 4096), 0);
  assert_memory_equal (w, r, 4096);
  backing_close (b2);

  /* Never written: zeros. */
  assert_int_equal (backing_pread (b, r, 64 * KIB, 40 * MIB), 0);
  assert_true (is_zero (r, 64 * KIB));
  /* Zero-length calls are no-ops. */
  assert_int_equal (backing_pread (b, r, 0, 0), 0);
  assert_int_equal (backing_pwrite (b, w, 0, 0, 0), 0);
  backing_close (b);
  free (w);
  free (r);
}

static void
test_rbd_zero_trim (void **state)
{
  static const uint32_t zero_flags[] = {
    0, BACKING_MAY_TRIM, BACKING_FAST, BACKING_FUA | BACKING_MAY_TRIM,
  };
  struct backing *b = open_rw (image_uri);
  size_t n = 8 * MIB;
  unsigned char *w = malloc (n), *r = malloc (n);
  struct test_rng s;
  size_t i;

  (void) state;
  test_rng_seed (&s, test_mix64 (seed ^ 1));
  assert_non_null (w);
  assert_non_null (r);
  for (i = 0; i < sizeof zero_flags / sizeof zero_flags[0]; i++) {
    fill (w, n, &s);
    assert_int_equal (backing_pwrite (b, w, n, 16 * MIB, 0), 0);
    /* Unaligned, across an object boundary (4 MIB objects). */
    assert_int_equal (backing_zero (b, 3 * MIB + 4097, 17 * MIB + 511,
                                    zero_flags[i]), 0);
    assert_int_equal (backing_pread (b, r, n, 16 * MIB), 0);
    assert_memory_equal (r, w, MIB + 511);
    assert_true (is_zero (r + MIB + 511, 3 * MIB + 4097));
    assert_memory_equal (r + 4 * MIB + 4608, w + 4 * MIB + 4608,
                         n - 4 * MIB - 4608);
  }

  /* Trim: each byte reads as its old data or zero; a whole object
   * (aligned 4 MIB) is really deallocated by librbd.
   */
  fill (w, n, &s);
  assert_int_equal (backing_pwrite (b, w, n, 16 * MIB, 0), 0);
  assert_int_equal (backing_trim (b, 4 * MIB, 20 * MIB, 0), 0);
  assert_int_equal (backing_trim (b, 1000, 16 * MIB + 3, BACKING_FUA), 0);
  assert_int_equal (backing_pread (b, r, n, 16 * MIB), 0);
  for (i = 0; i < n; i++)
    assert_true (r[i] == w[i] || r[i] == 0);
  assert_true (is_zero (r + 4 * MIB, 4 * MIB));
  backing_close (b);
  free (w);
  free (r);
}

struct ext {
  uint64_t offset, length;
  uint32_t flags;
};

struct ext_list {
  struct ext v[256];
  size_t n;
};

static int
collect (void *opaque, uint64_t offset, uint64_t length, uint32_t flags)
{
  struct ext_list *l = opaque;

  assert_true (l->n < 256);
  l->v[l->n++] = (struct ext) { offset, length, flags };
  return 0;
}

/* The flags of the byte at off, from a list that must cover it. */
static uint32_t
flags_at (const struct ext_list *l, uint64_t off)
{
  size_t i;

  for (i = 0; i < l->n; i++)
    if (l->v[i].offset <= off && off < l->v[i].offset + l->v[i].length)
      return l->v[i].flags;
  fail_msg ("offset %" PRIu64 " not covered", off);
  return 0;
}

static int
stop_after_one (void *opaque, uint64_t offset, uint64_t length,
                uint32_t flags)
{
  unsigned *calls = opaque;

  (void) offset; (void) length; (void) flags;
  ++*calls;
  return 1;
}

static void
test_rbd_extents (void **state)
{
  struct backing *b = open_rw (sparse_uri);
  unsigned char buf[4096];
  struct ext_list l = { .n = 0 };
  uint64_t pos;
  unsigned calls = 0;
  size_t i;

  (void) state;
  memset (buf, 0xa5, sizeof buf);
  assert_int_equal (backing_pwrite (b, buf, sizeof buf, 8 * MIB, 0), 0);
  assert_int_equal (backing_pwrite (b, buf, sizeof buf, 21 * MIB, 0), 0);

  assert_int_equal (backing_extents (b, 32 * MIB, 0, collect, &l), 0);
  /* In order, without gaps, from the offset asked, within the range. */
  assert_true (l.n >= 3);
  pos = 0;
  for (i = 0; i < l.n; i++) {
    assert_int_equal (l.v[i].offset, pos);
    assert_true (l.v[i].length > 0);
    pos += l.v[i].length;
  }
  assert_true (pos <= 32 * MIB);
  assert_int_equal (flags_at (&l, 0),
                    BACKING_EXTENT_HOLE | BACKING_EXTENT_ZERO);
  assert_int_equal (flags_at (&l, 4 * MIB),
                    BACKING_EXTENT_HOLE | BACKING_EXTENT_ZERO);
  assert_int_equal (flags_at (&l, 8 * MIB), 0);
  assert_int_equal (flags_at (&l, 8 * MIB + 4095), 0);
  assert_int_equal (flags_at (&l, 21 * MIB), 0);
  if (pos > 28 * MIB)
    assert_int_equal (flags_at (&l, 28 * MIB),
                      BACKING_EXTENT_HOLE | BACKING_EXTENT_ZERO);

  /* From an offset inside data; stopping early. */
  l.n = 0;
  assert_int_equal (backing_extents (b, 4096, 21 * MIB + 100, collect, &l),
                    0);
  assert_int_equal (l.v[0].offset, 21 * MIB + 100);
  assert_int_equal (l.v[0].flags, 0);
  assert_int_equal (backing_extents (b, 32 * MIB, 0, stop_after_one, &calls),
                    0);
  assert_int_equal (calls, 1);

  /* Zeroed with MAY_TRIM: the object becomes a hole again. */
  assert_int_equal (backing_zero (b, 4 * MIB, 8 * MIB, BACKING_MAY_TRIM), 0);
  l.n = 0;
  assert_int_equal (backing_extents (b, 4 * MIB, 8 * MIB, collect, &l), 0);
  assert_int_equal (flags_at (&l, 8 * MIB) & BACKING_EXTENT_ZERO,
                    BACKING_EXTENT_ZERO);
  backing_close (b);
}

/* ---- many threads, many requests in flight ---- */

#define THREADS 16
#define ROUNDS 64
#define STRIPE_BYTES (2 * MIB)  /* each thread's own region */

struct worker {
  struct backing *b;
  struct test_rng rng;
  unsigned index;
  int failures;
};

static void *
work (void *arg)
{
  struct worker *w = arg;
  unsigned char data[16 * KIB], back[16 * KIB];
  uint64_t base = 32 * MIB + (uint64_t) w->index * STRIPE_BYTES;
  unsigned i;

  for (i = 0; i < ROUNDS; i++) {
    uint64_t off = base + test_rng_below (&w->rng,
                                          STRIPE_BYTES / 4096 - 4) * 4096;
    size_t n = 4096 * (size_t) test_rng_range (&w->rng, 1, 4);

    fill (data, n, &w->rng);
    if (backing_pwrite (w->b, data, n, off, i % 8 == 0 ? BACKING_FUA : 0)
        < 0 || backing_pread (w->b, back, n, off) < 0 ||
        memcmp (data, back, n) != 0)
      w->failures++;
    if (i % 16 == 15 && backing_flush (w->b) < 0)
      w->failures++;
  }
  return NULL;
}

static void
test_rbd_concurrency (void **state)
{
  struct backing *b = open_rw (image_uri);
  struct worker w[THREADS];
  pthread_t t[THREADS];
  unsigned i;

  (void) state;
  for (i = 0; i < THREADS; i++) {
    w[i] = (struct worker) { .b = b, .index = i };
    test_rng_seed (&w[i].rng, test_mix64 (seed ^ (100 + i)));
    assert_int_equal (pthread_create (&t[i], NULL, work, &w[i]), 0);
  }
  for (i = 0; i < THREADS; i++) {
    pthread_join (t[i], NULL);
    assert_int_equal (w[i].failures, 0);
  }
  backing_close (b);
}

static void
test_rbd_readonly (void **state)
{
  struct backing_open_options o = { .readonly = true };
  struct backing *b = NULL;
  unsigned char buf[4096];

  (void) state;
  assert_int_equal (backing_open (image_uri, &o, &b), 0);
  assert_true (b->readonly);
  assert_false (b->can_zero || b->can_trim || b->can_fast_zero);
  assert_int_equal (backing_pread (b, buf, sizeof buf, 0), 0);
  assert_int_equal (backing_pwrite (b, buf, sizeof buf, 0, 0), -EROFS);
  assert_int_equal (backing_zero (b, 4096, 0, 0), -EROFS);
  assert_int_equal (backing_trim (b, 4096, 0, 0), -EROFS);
  assert_int_equal (backing_flush (b), 0);
  backing_close (b);
}

static void
test_rbd_missing (void **state)
{
  struct backing *b = NULL;
  char uri[512];
  const char *slash = strchr (image_uri, '/');

  (void) state;
  snprintf (uri, sizeof uri, "%.*s/no-such-image",
            (int) (slash - image_uri), image_uri);
  last_error[0] = '\0';
  assert_int_equal (backing_open (uri, NULL, &b), -ENOENT);
  assert_null (b);
  assert_non_null (strstr (last_error, "no such image"));
  assert_non_null (strstr (last_error, "no-such-image"));

  last_error[0] = '\0';
  assert_int_equal (backing_open ("rbd:no-such-pool/x", NULL, &b), -ENOENT);
  assert_null (b);
  assert_non_null (strstr (last_error, "no such pool"));

  last_error[0] = '\0';
  assert_int_equal (backing_open ("rbd:justapool", NULL, &b), -EINVAL);
  assert_non_null (strstr (last_error, "rbd:POOL/IMAGE"));
  assert_int_equal (backing_open ("rbd:/img", NULL, &b), -EINVAL);
  assert_int_equal (backing_open ("rbd:pool/", NULL, &b), -EINVAL);
  assert_int_equal (backing_open ("rbd:pool/a/b", NULL, &b), -EINVAL);
  assert_int_equal (backing_open ("rbd:pool/img@snap", NULL, &b), -EINVAL);
  assert_null (b);

  /* An explicit ceph.conf that does not exist is an error, not ignored. */
  {
    struct backing_open_options o = {
      .ceph = { .conf = "/nonexistent/ceph.conf" },
    };

    last_error[0] = '\0';
    assert_true (backing_open (image_uri, &o, &b) < 0);
    assert_null (b);
    assert_non_null (strstr (last_error, "/nonexistent/ceph.conf"));
  }
  assert_true (backing_is_rbd_uri ("rbd:p/i"));
  assert_false (backing_is_rbd_uri ("/rbd:p/i"));
  assert_false (backing_is_remote_uri ("rbd:p/i"));
}

static double
now_s (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static bool
state_up (struct backing *b, struct backing_remote_state *st)
{
  assert_int_equal (backing_remote_get_state (b, st), 0);
  assert_int_equal (st->connections, 1);
  return st->connected == 1 && st->down_since_s == 0;
}

/* The state letter of thread tid of pid (/proc/PID/task/TID/stat), or
 * '?'.
 */
static char
thread_state (pid_t pid, const char *tid)
{
  char path[384], line[512], *paren;
  FILE *f;

  snprintf (path, sizeof path, "/proc/%d/task/%s/stat", (int) pid, tid);
  if ((f = fopen (path, "r")) == NULL)
    return '?';
  paren = fgets (line, sizeof line, f) ? strrchr (line, ')') : NULL;
  fclose (f);
  return paren != NULL && paren[1] == ' ' ? paren[2] : '?';
}

/* kill(SIGSTOP) only queues the stop: wait (up to 10 s) until every
 * thread of pid is stopped ('T'), so that nothing the process does after
 * this can answer a request.  Prints the threads still running if not.
 */
static bool
wait_stopped (pid_t pid)
{
  char path[64];
  int tries;

  snprintf (path, sizeof path, "/proc/%d/task", (int) pid);
  for (tries = 0; tries < 1000; tries++) {
    DIR *d = opendir (path);
    struct dirent *de;
    unsigned running = 0;

    if (d == NULL)
      return false;
    while ((de = readdir (d)) != NULL) {
      char st;

      if (de->d_name[0] == '.')
        continue;
      st = thread_state (pid, de->d_name);
      if (st == 'T' || st == 't')
        continue;
      running++;
      if (tries == 999)
        fprintf (stderr, "OSD thread %s: state %c\n", de->d_name, st);
    }
    closedir (d);
    if (running == 0)
      return true;
    nanosleep (&(struct timespec) { 0, 10000000 }, NULL);
  }
  return false;
}

/* The OSD stays stopped after a failure in test_rbd_outage only until
 * this runs: later tests need it.
 */
static int
thaw_osd (void **state)
{
  const char *pid_s = getenv ("NBDCACHE_TEST_RBD_OSD_PID");

  (void) state;
  if (pid_s != NULL)
    kill ((pid_t) atoi (pid_s), SIGCONT);
  return 0;
}

/* The OSD frozen (SIGSTOP: the connection stays, nothing answers), then
 * thawed.  backing_timeout = 2 s.
 */
static void
test_rbd_outage (void **state)
{
  const char *pid_s = getenv ("NBDCACHE_TEST_RBD_OSD_PID");
  struct backing_open_options o = { .remote = { .timeout_ms = 2000 } };
  struct backing_remote_state st;
  struct backing *b = NULL;
  size_t n = 64 * KIB;
  uint64_t at = 48 * MIB;
  unsigned char *a = malloc (n), *w = malloc (n), *r = malloc (n);
  struct test_rng s;
  pid_t osd;
  double t0, took;
  int i;

  (void) state;
  if (pid_s == NULL)
    skip ();
  osd = (pid_t) atoi (pid_s);
  assert_non_null (a);
  assert_non_null (w);
  assert_non_null (r);
  test_rng_seed (&s, seed ^ 0x07a6e);
  fill (a, n, &s);
  fill (w, n, &s);
  assert_int_equal (backing_open (image_uri, &o, &b), 0);
  assert_int_equal (backing_pwrite (b, a, n, at, 0), 0);
  assert_true (state_up (b, &st));

  assert_int_equal (kill (osd, SIGSTOP), 0);
  if (!wait_stopped (osd))
    fail_msg ("the OSD (pid %d) did not stop within 10 s of SIGSTOP",
              (int) osd);
  /* A read times out; its buffer is never written, not even later. */
  memset (r, 0xa5, n);
  t0 = now_s ();
  assert_int_equal (backing_pread (b, r, n, at), -EIO);
  took = now_s () - t0;
  fprintf (stderr, "read failed after %.2f s\n", took);
  assert_true (took >= 1.5 && took <= 6);
  assert_non_null (strstr (last_error, "backing_timeout"));
  assert_false (state_up (b, &st));
  assert_true (st.down_since_s > 0);
  assert_true (st.timed_out_requests >= 1);
  /* A write times out too; it may land later, but before anything else. */
  assert_int_equal (backing_pwrite (b, w, n, at, 0), -EIO);

  assert_int_equal (kill (osd, SIGCONT), 0);
  for (i = 0; i < 300 && !state_up (b, &st); i++)
    nanosleep (&(struct timespec) { 0, 100000000 }, NULL);
  assert_true (state_up (b, &st));
  assert_true (st.reconnect_attempts >= 1);
  for (i = 0; i < (int) n; i++)
    assert_int_equal (r[i], 0xa5);

  /* After the barrier: the old or the timed-out write's data, then a
   * new write wins and is durable.
   */
  assert_int_equal (backing_pread (b, r, n, at), 0);
  assert_true (memcmp (r, a, n) == 0 || memcmp (r, w, n) == 0);
  fill (w, n, &s);
  assert_int_equal (backing_pwrite (b, w, n, at, 0), 0);
  assert_int_equal (backing_flush (b), 0);
  assert_int_equal (backing_pread (b, r, n, at), 0);
  assert_memory_equal (r, w, n);
  backing_close (b);
  free (a);
  free (w);
  free (r);
}

/* Ceph's little-endian encoding, for one cls_lock "lock" request. */
static void
put_u32 (char *buf, size_t *at, uint32_t v)
{
  unsigned i;

  for (i = 0; i < 4; i++)
    buf[(*at)++] = (char) (v >> (8 * i));
}

static void
put_str (char *buf, size_t *at, const char *s)
{
  put_u32 (buf, at, (uint32_t) strlen (s));
  memcpy (buf + *at, s, strlen (s));
  *at += strlen (s);
}

/* Take the image's exclusive lock ("rbd_lock", tag "internal", as librbd
 * takes it) as the backing's own client with cookie, behind librbd's
 * back: what an OSD that applied a lock request whose reply never came
 * leaves.  cls_lock_lock_op: ENCODE_START(1, 1), name, u8 type (1 =
 * exclusive), cookie, tag, description, utime_t duration (u32 s, u32
 * ns), u8 flags.
 */
static int
lock_behind_librbd (struct backing *b, const char *cookie)
{
  char op[512];
  size_t at = 6, len;

  put_str (op, &at, "rbd_lock");
  op[at++] = 1;
  put_str (op, &at, cookie);
  put_str (op, &at, "internal");
  put_str (op, &at, "");
  put_u32 (op, &at, 0);
  put_u32 (op, &at, 0);
  op[at++] = 0;
  len = at;
  op[0] = 1;                    /* struct_v */
  op[1] = 1;                    /* struct_compat */
  at = 2;
  put_u32 (op, &at, (uint32_t) (len - 6));
  return backing_rbd_test_exec_on_header (b, "lock", "lock", op, len);
}

/* The OSD holds the image's exclusive lock for this very client, under a
 * cookie librbd does not hold (a lock request applied, its reply lost
 * in an outage): librbd alone fails every write from then on (it will
 * not break its own lock).  The driver releases that stale lock of its
 * own and the write goes through; a lock of another client is not its
 * business (test-remote-rbd-outage.sh meets the real thing, by chance).
 */
static void
test_rbd_own_stale_lock (void **state)
{
  struct backing_open_options o = { .remote = { .timeout_ms = 10000 } };
  struct backing *b = NULL;
  unsigned char w[4096], r[4096];
  struct test_rng rng;

  (void) state;
  test_rng_seed (&rng, seed ^ 0x10c4);
  fill (w, sizeof w, &rng);
  assert_int_equal (backing_open (image_uri, &o, &b), 0);
  /* Before the first write: librbd has not taken the lock yet. */
  assert_int_equal (lock_behind_librbd (b, "auto 123456789"), 0);
  last_error[0] = '\0';
  assert_int_equal (backing_pwrite (b, w, sizeof w, 8 * MIB, 0), 0);
  assert_int_equal (backing_flush (b), 0);
  assert_int_equal (backing_pread (b, r, sizeof r, 8 * MIB), 0);
  assert_memory_equal (r, w, sizeof w);
  /* Once the lock is librbd's own, writes go on. */
  fill (w, sizeof w, &rng);
  assert_int_equal (backing_pwrite (b, w, sizeof w, 8 * MIB, BACKING_FUA),
                    0);
  assert_int_equal (backing_pread (b, r, sizeof r, 8 * MIB), 0);
  assert_memory_equal (r, w, sizeof w);
  backing_close (b);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_rbd_identity),
    cmocka_unit_test (test_rbd_read_write),
    cmocka_unit_test (test_rbd_zero_trim),
    cmocka_unit_test (test_rbd_extents),
    cmocka_unit_test (test_rbd_concurrency),
    cmocka_unit_test (test_rbd_readonly),
    cmocka_unit_test (test_rbd_missing),
    cmocka_unit_test_teardown (test_rbd_outage, thaw_osd),
    cmocka_unit_test (test_rbd_own_stale_lock),
  };
  image_uri = getenv ("NBDCACHE_TEST_RBD_IMAGE");
  sparse_uri = getenv ("NBDCACHE_TEST_RBD_SPARSE");
  if (image_uri == NULL || sparse_uri == NULL ||
      getenv ("CEPH_CONF") == NULL) {
    fprintf (stderr, "test-backing-rbd: SKIP: run by test-backing-rbd.sh "
             "(needs CEPH_CONF, NBDCACHE_TEST_RBD_IMAGE and _SPARSE)\n");
    return 77;
  }
  seed = test_seed_from_env ("test-backing-rbd");
  log_set_sink (capture);
  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
