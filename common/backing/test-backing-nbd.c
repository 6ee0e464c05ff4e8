/* SPDX-License-Identifier: BSD-3-Clause */
/* test-backing-nbd.c — unit tests for the remote NBD backing driver.
 *
 * WHAT: every op and flag against a real nbdkit remote (memory or file
 * plugin, with filters): round trips, FUA (native and emulated with a
 * flush), flush, trim, zero (NO_HOLE, MAY_TRIM, FAST, emulated), extents
 * over a sparse remote, block-size splitting and read-modify-write
 * against a remote demanding 64 KIB minimum / 1 MIB maximum that refuses
 * anything else, overlapping requests from many threads over a slow
 * remote, a read-only remote, injected errors, the remote killed and
 * restarted (reconnect and retry), timeouts (remote gone, remote
 * stalled), TLS with X.509 and with PSK, and the URI without secrets.
 * WHY: the driver is what stands between the cache and a remote disk; its
 * failure modes only show against a real server.
 *
 * INVARIANTS:
 * - Each test has its own temporary directory, removed by the teardown,
 *   and its own nbdkit, started by socket activation on a listening Unix
 *   socket this process created (so the remote is reachable before the
 *   test connects: no waiting, no fixed ports), killed by the teardown.
 * - Random data uses a seed printed at start; NBDCACHE_SEED
 *   overrides it.
 * - Waits for the driver's state are bounded polls of its state function.
 *
 * THREADS AND LOCKS: the concurrency tests start their own threads and
 * join them before asserting.
 *
 * FAILURE: cmocka assertions; the whole program is skipped (77) when
 * nbdkit or openssl is absent.
 *
 * NOT HERE: the engine over a remote (client-tests/test-remote-nbd.sh).
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "testkit.h"

#include "backing.h"
#include "clock.h"
#include "log.h"

/* ---- per-test state: a temporary directory and one remote ---- */

struct remote {
  pid_t pid;                    /* 0 = not running */
  char sock[600];
  char uri[700];
  bool tcp;                     /* 127.0.0.1:port instead of sock */
  int port;                     /* chosen by the kernel at first start */
  char *argv[32];               /* nbdkit's arguments, owned */
};

static char tmpdir[512];
static struct remote remote;
static struct test_rng rng;      /* seeded from the printed seed */

static int
remove_entry (const char *path, const struct stat *st, int type,
              struct FTW *ftw)
{
  (void) st; (void) type; (void) ftw;
  return remove (path);
}

static int
setup (void **state)
{
  const char *t = getenv ("TMPDIR");

  (void) state;
  snprintf (tmpdir, sizeof tmpdir, "%s/test-backing-nbd.XXXXXX",
            t ? t : "/tmp");
  if (mkdtemp (tmpdir) == NULL)
    return -1;
  memset (&remote, 0, sizeof remote);
  snprintf (remote.sock, sizeof remote.sock, "%s/remote.sock", tmpdir);
  snprintf (remote.uri, sizeof remote.uri, "nbd+unix:///?socket=%s",
            remote.sock);
  return 0;
}

static void
remote_kill (void)
{
  if (remote.pid > 0) {
    kill (remote.pid, SIGKILL);
    waitpid (remote.pid, NULL, 0);
    remote.pid = 0;
  }
}

static int
teardown (void **state)
{
  size_t i;

  (void) state;
  remote_kill ();
  for (i = 0; remote.argv[i] != NULL; i++)
    free (remote.argv[i]);
  nftw (tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
  return 0;
}

/* (Re)starts nbdkit with the arguments of the last remote_start_args. */
static void
remote_restart (void)
{
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  char logpath[700];
  int fd;
  pid_t pid;

  assert_int_equal (remote.pid, 0);
  if (remote.tcp) {
    struct sockaddr_in sin = {
      .sin_family = AF_INET, .sin_port = htons (remote.port),
      .sin_addr.s_addr = htonl (INADDR_LOOPBACK),
    };
    socklen_t sl = sizeof sin;
    int one = 1;

    fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true (fd >= 0);
    setsockopt (fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    assert_int_equal (bind (fd, (struct sockaddr *) &sin, sizeof sin), 0);
    assert_int_equal (getsockname (fd, (struct sockaddr *) &sin, &sl), 0);
    remote.port = ntohs (sin.sin_port);
  }
  else {
    unlink (remote.sock);
    fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true (fd >= 0);
    assert_true (strlen (remote.sock) < sizeof sa.sun_path);
    strcpy (sa.sun_path, remote.sock);
    assert_int_equal (bind (fd, (struct sockaddr *) &sa, sizeof sa), 0);
  }
  assert_int_equal (listen (fd, 64), 0);
  snprintf (logpath, sizeof logpath, "%s/nbdkit.log", tmpdir);

  pid = fork ();
  assert_true (pid >= 0);
  if (pid == 0) {
    char pidstr[32];
    int logfd = open (logpath, O_WRONLY | O_CREAT | O_APPEND, 0600);

    if (logfd >= 0)
      dup2 (logfd, 2);
    if (fd != 3) {
      dup2 (fd, 3);             /* clears FD_CLOEXEC on fd 3 */
    }
    else
      fcntl (3, F_SETFD, 0);
    snprintf (pidstr, sizeof pidstr, "%d", (int) getpid ());
    setenv ("LISTEN_PID", pidstr, 1);
    setenv ("LISTEN_FDS", "1", 1);
    execvp ("nbdkit", remote.argv);
    _exit (127);
  }
  /* nbdkit holds the listening socket now; when it dies, connecting is
   * refused, like a remote host that went away.
   */
  close (fd);
  remote.pid = pid;
}

/* Starts nbdkit -f ARGS… (NULL-terminated) on the test's socket. */
static void
remote_start (const char *arg, ...)
{
  va_list ap;
  size_t n = 0;

  remote.argv[n++] = strdup ("nbdkit");
  remote.argv[n++] = strdup ("-f");
  va_start (ap, arg);
  for (; arg != NULL; arg = va_arg (ap, const char *)) {
    assert_true (n + 1 < sizeof remote.argv / sizeof remote.argv[0]);
    remote.argv[n++] = strdup (arg);
  }
  va_end (ap);
  remote.argv[n] = NULL;
  remote_restart ();
}

static struct backing *
open_remote (const struct backing_open_options *opts)
{
  struct backing *b = NULL;

  assert_int_equal (backing_open (remote.uri, opts, &b), 0);
  assert_non_null (b);
  assert_string_equal (b->ops->name, "nbd");
  return b;
}

static void
fill_random (void *buf, size_t len)
{
  unsigned char *p = buf;
  size_t i;

  for (i = 0; i < len; i++)
    p[i] = (unsigned char) (test_rng_next (&rng) | 1);   /* never zero */
}

static bool
all_zero (const void *buf, size_t len)
{
  const unsigned char *p = buf;

  return len == 0 || (p[0] == 0 && memcmp (p, p + 1, len - 1) == 0);
}

/* Polls the driver's state until pred holds, for at most 20 s. */
static void
wait_state (struct backing *b, bool (*pred) (const struct backing_remote_state *))
{
  struct backing_remote_state st;
  uint64_t deadline = clock_now_ms () + 20000;
  struct timespec ts = { .tv_nsec = 2000000 };

  for (;;) {
    assert_int_equal (backing_remote_get_state (b, &st), 0);
    if (pred (&st))
      return;
    assert_true (clock_now_ms () < deadline);
    nanosleep (&ts, NULL);
  }
}

static bool
all_down (const struct backing_remote_state *st)
{
  return st->connected == 0 && st->down_since_s != 0;
}

static bool
all_up (const struct backing_remote_state *st)
{
  return st->connected == st->connections;
}

/* ---- extents collection ---- */

struct ext {
  uint64_t offset, length;
  uint32_t flags;
};

struct ext_list {
  struct ext e[64];
  size_t n;
};

static int
collect (void *opaque, uint64_t offset, uint64_t length, uint32_t flags)
{
  struct ext_list *l = opaque;

  if (l->n > 0)
    assert_int_equal (l->e[l->n - 1].offset + l->e[l->n - 1].length, offset);
  assert_true (l->n < 64);
  l->e[l->n++] = (struct ext) { offset, length, flags };
  return 0;
}

/* The flags of the byte at offset, through the driver. */
static uint32_t
flags_at (struct backing *b, uint64_t offset)
{
  struct ext_list l = { .n = 0 };

  assert_int_equal (backing_extents (b, 1, offset, collect, &l), 0);
  assert_true (l.n >= 1);
  assert_int_equal (l.e[0].offset, offset);
  return l.e[0].flags;
}

/* ---- basic ops ---- */

static void
test_nbd_ops (void **state)
{
  struct backing_remote_state st;
  struct backing *b;
  char *buf = malloc (2 * MIB), *rd = malloc (2 * MIB);
  struct ext_list l = { .n = 0 };

  (void) state;
  remote_start ("memory", "64M", NULL);
  b = open_remote (NULL);
  assert_int_equal (b->size_bytes, 64 * MIB);
  assert_false (b->readonly);
  assert_true (b->can_trim && b->can_zero && b->can_extents);
  assert_string_equal (b->uri, remote.uri);
  assert_int_equal (backing_remote_get_state (b, &st), 0);
  assert_int_equal (st.connections, 4);       /* memory offers multi-conn */
  assert_int_equal (st.connected, 4);

  /* Round trips: aligned, unaligned, FUA. */
  fill_random (buf, 2 * MIB);
  assert_int_equal (backing_pwrite (b, buf, 2 * MIB, 4 * MIB, 0), 0);
  assert_int_equal (backing_pread (b, rd, 2 * MIB, 4 * MIB), 0);
  assert_memory_equal (buf, rd, 2 * MIB);
  assert_int_equal (backing_pwrite (b, buf, 12345, 777, BACKING_FUA), 0);
  assert_int_equal (backing_pread (b, rd, 12345, 777), 0);
  assert_memory_equal (buf, rd, 12345);
  assert_int_equal (backing_flush (b), 0);

  /* Extents over the sparse remote: hole, data, hole. */
  assert_int_equal (backing_extents (b, 16 * MIB, 2 * MIB, collect, &l), 0);
  assert_true (l.n >= 3);
  assert_int_equal (l.e[0].offset, 2 * MIB);
  assert_int_equal (l.e[0].length, 2 * MIB);
  assert_int_equal (l.e[0].flags, BACKING_EXTENT_HOLE | BACKING_EXTENT_ZERO);
  assert_int_equal (l.e[1].offset, 4 * MIB);
  assert_int_equal (l.e[1].length, 2 * MIB);
  assert_int_equal (l.e[1].flags, 0);
  assert_int_equal (l.e[2].offset, 6 * MIB);
  assert_int_equal (l.e[2].flags & BACKING_EXTENT_HOLE, BACKING_EXTENT_HOLE);

  /* Zero: plain, MAY_TRIM (becomes a hole), FAST, FUA. */
  assert_int_equal (backing_zero (b, 64 * KIB, 4 * MIB, 0), 0);
  assert_int_equal (backing_pread (b, rd, 128 * KIB, 4 * MIB), 0);
  assert_true (all_zero (rd, 64 * KIB));
  assert_memory_equal (rd + 64 * KIB, buf + 64 * KIB, 64 * KIB);
  assert_int_equal (backing_zero (b, 1 * MIB, 5 * MIB, BACKING_MAY_TRIM), 0);
  assert_int_equal (flags_at (b, 5 * MIB) & BACKING_EXTENT_ZERO,
                    BACKING_EXTENT_ZERO);
  if (b->can_fast_zero)
    assert_int_equal (backing_zero (b, 4 * KIB, 4 * MIB + 512 * KIB,
                                    BACKING_FAST | BACKING_FUA), 0);
  else
    assert_int_equal (backing_zero (b, 4 * KIB, 4 * MIB + 512 * KIB,
                                    BACKING_FAST), -ENOTSUP);
  assert_int_equal (backing_pread (b, rd, 4 * KIB, 4 * MIB + 512 * KIB), 0);
  assert_true (all_zero (rd, 4 * KIB));

  /* Trim: afterwards old data or zeros; the memory plugin frees it. */
  assert_int_equal (backing_trim (b, 1 * MIB, 4 * MIB + 1 * MIB / 2,
                                  BACKING_FUA), 0);
  assert_int_equal (backing_pread (b, rd, 1 * MIB, 4 * MIB + MIB / 2), 0);
  assert_true (all_zero (rd, 1 * MIB));

  /* The last byte. */
  assert_int_equal (backing_pwrite (b, "x", 1, 64 * MIB - 1, 0), 0);
  assert_int_equal (backing_pread (b, rd, 1, 64 * MIB - 1), 0);
  assert_int_equal (rd[0], 'x');

  backing_close (b);
  free (buf);
  free (rd);
}

/* A remote with none of FUA, zero, extents and multi-conn: nbdkit's eval
 * plugin over a file (nbdkit 1.32's fua filter cannot hide FUA; it always
 * offers base:allocation, so the driver's path for a remote without it
 * is not covered here).
 */
static void
test_nbd_emulated (void **state)
{
  struct backing_remote_state st;
  struct backing *b;
  char buf[8192], log[800], img[700], rd_arg[1000], wr_arg[1000];
  struct ext_list l = { .n = 0 };
  char *text;
  FILE *fp;
  long len;
  int fd;

  (void) state;
  snprintf (log, sizeof log, "logfile=%s/cmds.log", tmpdir);
  snprintf (img, sizeof img, "%s/remote.img", tmpdir);
  fd = open (img, O_RDWR | O_CREAT, 0600);
  assert_true (fd >= 0);
  assert_int_equal (ftruncate (fd, 8 * MIB), 0);
  close (fd);
  snprintf (rd_arg, sizeof rd_arg, "pread=dd if=%s skip=$4 count=$3 "
            "iflag=skip_bytes,count_bytes status=none", img);
  snprintf (wr_arg, sizeof wr_arg, "pwrite=dd of=%s seek=$4 "
            "oflag=seek_bytes conv=notrunc status=none", img);
  remote_start ("--filter=log", "--filter=nozero", "--filter=noextents",
                "eval", log,
                "zeromode=none", "get_size=echo 8M", rd_arg, wr_arg,
                "can_write=exit 0", "can_flush=exit 0", "flush=exit 0",
                "can_fua=echo none", "can_extents=exit 3",
                "can_multi_conn=exit 3", NULL);
  b = open_remote (NULL);
  assert_false (b->can_zero);
  assert_false (b->can_fast_zero);
  assert_int_equal (backing_remote_get_state (b, &st), 0);
  assert_int_equal (st.connections, 1);

  fill_random (buf, sizeof buf);
  assert_int_equal (backing_pwrite (b, buf, sizeof buf, 0, 0), 0);
  /* FUA without FUA: a write then a flush. */
  assert_int_equal (backing_pwrite (b, buf, 4096, 1 * MIB, BACKING_FUA), 0);
  /* Zero without zero: zeros written; FAST refused at once. */
  assert_int_equal (backing_zero (b, 4096, 0, BACKING_FAST), -ENOTSUP);
  assert_int_equal (backing_pread (b, buf, 4096, 0), 0);
  assert_false (all_zero (buf, 4096));
  assert_int_equal (backing_zero (b, 4096, 0, 0), 0);
  assert_int_equal (backing_pread (b, buf, 8192, 0), 0);
  assert_true (all_zero (buf, 4096));
  assert_false (all_zero (buf + 4096, 4096));
  /* No extents (nbdkit still offers base:allocation, all data). */
  assert_int_equal (backing_extents (b, 1 * MIB, 0, collect, &l), 0);
  assert_int_equal (l.n, 1);
  assert_int_equal (l.e[0].length, 1 * MIB);
  assert_int_equal (l.e[0].flags, 0);
  backing_close (b);

  /* The remote saw a Write without fua followed by a Flush. */
  fp = fopen (log + strlen ("logfile="), "r");
  assert_non_null (fp);
  fseek (fp, 0, SEEK_END);
  len = ftell (fp);
  rewind (fp);
  text = calloc (1, len + 1);
  assert_int_equal (fread (text, 1, len, fp), (size_t) len);
  fclose (fp);
  assert_non_null (strstr (text, "offset=0x100000 count=0x1000 fua=0"));
  assert_non_null (strstr (strstr (text, "offset=0x100000 count=0x1000"),
                           "Flush"));
  assert_null (strstr (text, "Zero"));
  free (text);
}

/* ---- block-size constraints ---- */

struct rmw_arg {
  struct backing *b;
  unsigned idx;
  pthread_barrier_t *bar;
  int result;
};

/* Thread idx writes its own 4 KIB slice of every 64 KIB block, filled
 * with its index: concurrent read-modify-writes of the same blocks.
 */
static void *
rmw_writer (void *p)
{
  struct rmw_arg *a = p;
  char buf[4096];
  uint64_t blk;

  memset (buf, 'A' + a->idx, sizeof buf);
  pthread_barrier_wait (a->bar);
  for (blk = 0; blk < 8; blk++) {
    int r = backing_pwrite (a->b, buf, sizeof buf,
                            blk * 64 * KIB + a->idx * 4 * KIB, 0);
    if (r < 0) {
      a->result = r;
      break;
    }
  }
  return NULL;
}

static void
test_nbd_block_size (void **state)
{
  struct backing *b;
  char *buf = malloc (4 * MIB), *rd = malloc (4 * MIB);
  struct ext_list l = { .n = 0 };
  struct rmw_arg args[16];
  pthread_t th[16];
  pthread_barrier_t bar;
  unsigned i, blk;

  (void) state;
  /* Anything unaligned to 64 KIB or over 1 MIB is refused (EINVAL). */
  remote_start ("--filter=blocksize-policy", "memory", "16M",
                "blocksize-minimum=64K", "blocksize-preferred=64K",
                "blocksize-maximum=1M", "blocksize-error-policy=error",
                NULL);
  b = open_remote (NULL);

  /* Over the maximum: split. */
  fill_random (buf, 4 * MIB);
  assert_int_equal (backing_pwrite (b, buf, 4 * MIB, 0, BACKING_FUA), 0);
  assert_int_equal (backing_pread (b, rd, 4 * MIB, 0), 0);
  assert_memory_equal (buf, rd, 4 * MIB);

  /* Under the minimum and unaligned: read-modify-write. */
  fill_random (buf, 4 * MIB);
  assert_int_equal (backing_pwrite (b, buf, 4096, 4096, 0), 0);
  assert_int_equal (backing_pwrite (b, buf + 4096, 100000, 70000, 0), 0);
  assert_int_equal (backing_pwrite (b, buf + 200000, 3 * MIB + 5, 300001, 0), 0);
  assert_int_equal (backing_pread (b, rd, 4096, 4096), 0);
  assert_memory_equal (rd, buf, 4096);
  assert_int_equal (backing_pread (b, rd, 100000, 70000), 0);
  assert_memory_equal (rd, buf + 4096, 100000);
  assert_int_equal (backing_pread (b, rd, 3 * MIB + 5, 300001), 0);
  assert_memory_equal (rd, buf + 200000, 3 * MIB + 5);
  assert_int_equal (backing_pread (b, rd, 13, 65535), 0);

  /* Zero and trim, unaligned, over the maximum. */
  assert_int_equal (backing_zero (b, 3 * MIB + 4096, 8192, 0), 0);
  assert_int_equal (backing_pread (b, rd, 3 * MIB + 4096, 8192), 0);
  assert_true (all_zero (rd, 3 * MIB + 4096));
  assert_int_equal (backing_zero (b, 4096, 8192, BACKING_FAST), -ENOTSUP);
  assert_int_equal (backing_trim (b, 3 * MIB + 4096, 4096, 0), 0);
  assert_int_equal (backing_trim (b, 4096, 4096, 0), 0);
  assert_int_equal (backing_extents (b, 5 * MIB + 3, 4097, collect, &l), 0);
  assert_int_equal (l.e[0].offset, 4097);

  /* Many threads rewriting slices of the same blocks: nothing lost. */
  pthread_barrier_init (&bar, NULL, 16);
  for (i = 0; i < 16; i++) {
    args[i] = (struct rmw_arg) { .b = b, .idx = i, .bar = &bar };
    assert_int_equal (pthread_create (&th[i], NULL, rmw_writer, &args[i]), 0);
  }
  for (i = 0; i < 16; i++) {
    pthread_join (th[i], NULL);
    assert_int_equal (args[i].result, 0);
  }
  pthread_barrier_destroy (&bar);
  assert_int_equal (backing_pread (b, rd, 8 * 64 * KIB, 0), 0);
  for (blk = 0; blk < 8; blk++)
    for (i = 0; i < 16; i++) {
      char want[4096];

      memset (want, 'A' + i, sizeof want);
      assert_memory_equal (rd + blk * 64 * KIB + i * 4 * KIB, want, 4096);
    }

  backing_close (b);
  free (buf);
  free (rd);
}

/* ---- concurrency ---- */

struct reader_arg {
  struct backing *b;
  unsigned idx;
  pthread_barrier_t *bar;
  int result;
};

static void *
reader (void *p)
{
  struct reader_arg *a = p;
  char buf[4096];

  pthread_barrier_wait (a->bar);
  a->result = backing_pread (a->b, buf, sizeof buf, a->idx * 1 * MIB);
  return NULL;
}

/* 32 concurrent 4 KIB reads, each taking 20 ms at the remote. */
static uint64_t
time_32_reads (struct backing *b)
{
  struct reader_arg args[32];
  pthread_t th[32];
  pthread_barrier_t bar;
  uint64_t t0, elapsed;
  unsigned i;

  pthread_barrier_init (&bar, NULL, 33);
  for (i = 0; i < 32; i++) {
    args[i] = (struct reader_arg) { .b = b, .idx = i, .bar = &bar };
    assert_int_equal (pthread_create (&th[i], NULL, reader, &args[i]), 0);
  }
  pthread_barrier_wait (&bar);
  t0 = clock_now_ms ();
  for (i = 0; i < 32; i++) {
    pthread_join (th[i], NULL);
    assert_int_equal (args[i].result, 0);
  }
  elapsed = clock_now_ms () - t0;
  pthread_barrier_destroy (&bar);
  return elapsed;
}

static void
test_nbd_concurrency (void **state)
{
  struct backing_open_options one = { .remote.connections = 1 };
  struct backing *b;
  uint64_t ms;

  (void) state;
  remote_start ("--filter=delay", "memory", "64M", "rdelay=20ms", NULL);
  /* Serialised, 32 reads would take 640 ms: allow 8 round trips. */
  b = open_remote (NULL);
  ms = time_32_reads (b);
  printf ("32 concurrent 4k reads, 20 ms each, 4 connections: %" PRIu64
          " ms\n", ms);
  assert_true (ms < 8 * 20);
  backing_close (b);

  b = open_remote (&one);
  ms = time_32_reads (b);
  printf ("32 concurrent 4k reads, 20 ms each, 1 connection: %" PRIu64
          " ms\n", ms);
  assert_true (ms < 8 * 20);
  backing_close (b);
}

/* ---- read-only, errors ---- */

static void
test_nbd_readonly (void **state)
{
  struct backing_open_options ro = { .readonly = true };
  struct backing *b;
  char buf[4096] = { 0 };

  (void) state;
  remote_start ("-r", "memory", "1M", NULL);
  b = open_remote (NULL);
  assert_true (b->readonly);
  assert_false (b->can_trim || b->can_zero);
  assert_int_equal (backing_pread (b, buf, sizeof buf, 0), 0);
  assert_int_equal (backing_pwrite (b, buf, sizeof buf, 0, 0), -EROFS);
  assert_int_equal (backing_zero (b, 4096, 0, 0), -EROFS);
  assert_int_equal (backing_trim (b, 4096, 0, 0), -EROFS);
  assert_int_equal (backing_flush (b), 0);
  backing_close (b);

  remote_kill ();
  free (remote.argv[2]);
  remote.argv[2] = strdup ("--filter=nofilter");    /* writable now */
  remote_restart ();
  b = open_remote (&ro);
  assert_true (b->readonly);
  assert_int_equal (backing_pwrite (b, buf, sizeof buf, 0, 0), -EROFS);
  backing_close (b);
}

static void
test_nbd_error (void **state)
{
  struct backing_open_options opts = { .remote.timeout_ms = 10000 };
  struct backing *b;
  char buf[4096] = { 0 };
  uint64_t t0;

  (void) state;
  remote_start ("--filter=error", "memory", "1M", "error-pread=EIO",
                "error-pread-rate=100%", "error-pwrite=ENOSPC",
                "error-pwrite-rate=100%", NULL);
  b = open_remote (&opts);
  t0 = clock_now_ms ();
  /* The remote's errors are final: no retry until the timeout. */
  assert_int_equal (backing_pread (b, buf, sizeof buf, 0), -EIO);
  assert_int_equal (backing_pwrite (b, buf, sizeof buf, 0, 0), -ENOSPC);
  assert_true (clock_now_ms () - t0 < 5000);
  assert_int_equal (backing_trim (b, 4096, 0, 0), 0);
  backing_close (b);
}

/* ---- losing the remote ---- */

struct io_arg {
  struct backing *b;
  char *buf;
  size_t count;
  uint64_t offset;
  bool write;
  int result;
};

static void *
io_thread (void *p)
{
  struct io_arg *a = p;

  a->result = a->write
    ? backing_pwrite (a->b, a->buf, a->count, a->offset, BACKING_FUA)
    : backing_pread (a->b, a->buf, a->count, a->offset);
  return NULL;
}

static void
test_nbd_reconnect (void **state)
{
  struct backing_open_options opts = { .remote.timeout_ms = 20000 };
  char img[700], file_arg[800];
  struct backing_remote_state st;
  struct io_arg w, r1, r2;
  pthread_t tw, t1, t2;
  char *buf = malloc (MIB), *buf2 = malloc (MIB), *rd = malloc (MIB);
  struct backing *b;
  int fd;

  (void) state;
  /* A file keeps its data across the remote's restarts. */
  snprintf (img, sizeof img, "%s/remote.img", tmpdir);
  fd = open (img, O_RDWR | O_CREAT, 0600);
  assert_true (fd >= 0);
  assert_int_equal (ftruncate (fd, 16 * MIB), 0);
  close (fd);
  snprintf (file_arg, sizeof file_arg, "file=%s", img);
  remote_start ("--filter=delay", "file", file_arg, "rdelay=50ms", NULL);
  b = open_remote (&opts);
  fill_random (buf, MIB);
  fill_random (buf2, MIB);
  assert_int_equal (backing_pwrite (b, buf, MIB, 0, BACKING_FUA), 0);

  /* Killed with a read on the wire (or about to be): it is resent. */
  r1 = (struct io_arg) { .b = b, .buf = rd, .count = MIB, .offset = 0 };
  assert_int_equal (pthread_create (&t1, NULL, io_thread, &r1), 0);
  remote_kill ();
  wait_state (b, all_down);

  /* Requests made while it is down wait for it. */
  w = (struct io_arg) { .b = b, .buf = buf2, .count = MIB,
                        .offset = 2 * MIB, .write = true };
  assert_int_equal (pthread_create (&tw, NULL, io_thread, &w), 0);
  remote_restart ();
  pthread_join (t1, NULL);
  pthread_join (tw, NULL);
  assert_int_equal (r1.result, 0);
  assert_memory_equal (rd, buf, MIB);
  assert_int_equal (w.result, 0);
  wait_state (b, all_up);

  r2 = (struct io_arg) { .b = b, .buf = rd, .count = MIB, .offset = 2 * MIB };
  assert_int_equal (pthread_create (&t2, NULL, io_thread, &r2), 0);
  pthread_join (t2, NULL);
  assert_int_equal (r2.result, 0);
  assert_memory_equal (rd, buf2, MIB);

  assert_int_equal (backing_remote_get_state (b, &st), 0);
  printf ("reconnect: %" PRIu64 " attempts, %" PRIu64 " requests resent\n",
          st.reconnect_attempts, st.retried_requests);
  assert_true (st.reconnect_attempts >= 1);
  assert_int_equal (st.down_since_s, 0);
  backing_close (b);
  free (buf);
  free (buf2);
  free (rd);
}

/* A write completed, then the connection lost (the remote may have lost
 * power): the next flush must not vouch for it.  It fails with EIO once;
 * a write and flush afterwards succeed.  A FUA write is durable by itself
 * and a loss after it is no reason to fail.
 */
static void
test_nbd_flush_after_loss (void **state)
{
  struct backing_open_options opts = { .remote.timeout_ms = 20000,
                                       .remote.connections = 2 };
  char buf[4096];
  struct backing *b;

  (void) state;
  fill_random (buf, sizeof buf);
  remote_start ("memory", "1M", NULL);
  b = open_remote (&opts);
  assert_int_equal (backing_pwrite (b, buf, sizeof buf, 0, 0), 0);
  remote_kill ();
  wait_state (b, all_down);
  remote_restart ();
  wait_state (b, all_up);
  assert_int_equal (backing_flush (b), -EIO);
  assert_int_equal (backing_pwrite (b, buf, sizeof buf, 0, 0), 0);
  assert_int_equal (backing_flush (b), 0);
  assert_int_equal (backing_flush (b), 0);

  /* Nothing unflushed at the loss: nothing to report. */
  remote_kill ();
  wait_state (b, all_down);
  remote_restart ();
  wait_state (b, all_up);
  assert_int_equal (backing_flush (b), 0);

  /* A FUA write needs no flush; the zero after it does. */
  assert_int_equal (backing_pwrite (b, buf, sizeof buf, 0, BACKING_FUA), 0);
  remote_kill ();
  wait_state (b, all_down);
  remote_restart ();
  wait_state (b, all_up);
  assert_int_equal (backing_flush (b), 0);
  assert_int_equal (backing_zero (b, sizeof buf, 0, 0), 0);
  remote_kill ();
  wait_state (b, all_down);
  remote_restart ();
  wait_state (b, all_up);
  assert_int_equal (backing_flush (b), -EIO);
  assert_int_equal (backing_flush (b), 0);
  backing_close (b);
}

static void
test_nbd_timeout (void **state)
{
  struct backing_open_options opts = { .remote.timeout_ms = 300,
                                       .remote.connections = 1 };
  struct backing_remote_state st;
  char buf[4096] = { 0 };
  struct backing *b;
  uint64_t t0, ms;

  (void) state;
  /* A stalled remote: the read on the wire times out, the connection is
   * dropped and re-made, and writes (not delayed) work again.
   */
  remote_start ("--filter=delay", "memory", "1M", "rdelay=20", NULL);
  b = open_remote (&opts);
  t0 = clock_now_ms ();
  assert_int_equal (backing_pread (b, buf, sizeof buf, 0), -EIO);
  ms = clock_now_ms () - t0;
  printf ("stalled remote: EIO after %" PRIu64 " ms\n", ms);
  assert_true (ms >= 250 && ms < 5000);
  assert_int_equal (backing_pwrite (b, buf, sizeof buf, 0, 0), 0);

  /* A remote gone: EIO after the timeout. */
  remote_kill ();
  wait_state (b, all_down);
  t0 = clock_now_ms ();
  assert_int_equal (backing_pwrite (b, buf, sizeof buf, 0, 0), -EIO);
  ms = clock_now_ms () - t0;
  printf ("remote gone: EIO after %" PRIu64 " ms\n", ms);
  assert_true (ms >= 250 && ms < 5000);
  assert_int_equal (backing_remote_get_state (b, &st), 0);
  assert_true (st.timed_out_requests >= 2);
  assert_true (st.down_since_s > 0);
  backing_close (b);
}

/* ---- TLS ---- */

static void
run_shell (const char *fmt, ...)
{
  char cmd[4 * PATH_MAX];
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (cmd, sizeof cmd, fmt, ap);
  va_end (ap);
  assert_int_equal (system (cmd), 0);
}

static void
test_nbd_tls_x509 (void **state)
{
  struct backing_open_options opts = { 0 };
  char dir[700], arg[800], uri[2048];
  char buf[4096], rd[4096];
  struct backing *b;

  (void) state;
  snprintf (dir, sizeof dir, "%s/pki", tmpdir);
  run_shell ("set -e; mkdir %s; cd %s; "
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
             "-nodes -keyout ca-key.pem -out ca-cert.pem -days 2 "
             "-subj '/CN=test CA' 2>/dev/null; "
             "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
             "-nodes -keyout server-key.pem -out server.csr "
             "-subj '/CN=localhost' 2>/dev/null; "
             "printf 'subjectAltName=DNS:localhost\\n"
             "extendedKeyUsage=serverAuth\\n' > ext; "
             "openssl x509 -req -in server.csr -CA ca-cert.pem "
             "-CAkey ca-key.pem -CAcreateserial -out server-cert.pem "
             "-days 2 -extfile ext 2>/dev/null; "
             "mkdir client; cp ca-cert.pem client/", dir, dir);
  snprintf (arg, sizeof arg, "--tls-certificates=%s", dir);
  /* TCP: libnbd 1.14 verifies the host name, which a Unix socket lacks. */
  remote.tcp = true;
  remote_start ("--tls=require", arg, "memory", "1M", NULL);

  /* Plain NBD is refused by the remote. */
  snprintf (remote.uri, sizeof remote.uri, "nbd://localhost:%d/",
            remote.port);
  assert_true (backing_open (remote.uri, NULL, &b) < 0);

  /* Verified X.509. */
  snprintf (remote.uri, sizeof remote.uri, "nbds://localhost:%d/",
            remote.port);
  snprintf (arg, sizeof arg, "%s/client", dir);
  opts.remote.tls_certificates = arg;
  b = open_remote (&opts);
  fill_random (buf, sizeof buf);
  assert_int_equal (backing_pwrite (b, buf, sizeof buf, 0, 0), 0);
  assert_int_equal (backing_pread (b, rd, sizeof rd, 0), 0);
  assert_memory_equal (buf, rd, sizeof buf);
  backing_close (b);

  /* A client that does not trust the remote's CA is refused. */
  snprintf (arg, sizeof arg, "%s/untrusting", dir);
  run_shell ("set -e; mkdir %s; cd %s; openssl req -x509 -newkey ec "
             "-pkeyopt ec_paramgen_curve:P-256 -nodes -keyout k.pem "
             "-out ca-cert.pem -days 2 -subj '/CN=other CA' 2>/dev/null",
             arg, arg);
  assert_true (backing_open (remote.uri, &opts, &b) < 0);
  opts.remote.tls_no_verify = true;
  b = open_remote (&opts);
  backing_close (b);

  /* Certificates in the URI: not in the identity. */
  snprintf (uri, sizeof uri, "nbds://localhost:%d/?tls-certificates=%s/client",
            remote.port, dir);
  assert_int_equal (backing_open (uri, NULL, &b), 0);
  assert_string_equal (b->uri, remote.uri);
  backing_close (b);

  /* TLS settings on a non-TLS URI are a mistake. */
  snprintf (uri, sizeof uri, "nbd://localhost:%d/", remote.port);
  assert_int_equal (backing_open (uri, &opts, &b), -EINVAL);
}

static void
test_nbd_tls_psk (void **state)
{
  struct backing_open_options opts = { 0 };
  char psk[700], arg[800], uri[2048];
  char buf[4096], rd[4096];
  struct backing *b;
  FILE *fp;

  (void) state;
  snprintf (psk, sizeof psk, "%s/keys.psk", tmpdir);
  fp = fopen (psk, "w");
  assert_non_null (fp);
  fprintf (fp, "alice:0123456789abcdef0123456789abcdef"
           "0123456789abcdef0123456789abcdef\n");
  fclose (fp);
  snprintf (arg, sizeof arg, "--tls-psk=%s", psk);
  remote_start ("--tls=require", arg, "memory", "1M", NULL);
  snprintf (remote.uri, sizeof remote.uri, "nbds+unix:///?socket=%s",
            remote.sock);

  opts.remote.tls_psk_file = psk;
  opts.remote.tls_username = "alice";
  b = open_remote (&opts);
  fill_random (buf, sizeof buf);
  assert_int_equal (backing_pwrite (b, buf, sizeof buf, 4096, 0), 0);
  assert_int_equal (backing_pread (b, rd, sizeof rd, 4096), 0);
  assert_memory_equal (buf, rd, sizeof buf);
  backing_close (b);

  /* The right user with the wrong key: the handshake fails. */
  snprintf (psk, sizeof psk, "%s/wrong.psk", tmpdir);
  fp = fopen (psk, "w");
  assert_non_null (fp);
  fprintf (fp, "alice:fedcba9876543210fedcba9876543210"
           "fedcba9876543210fedcba9876543210\n");
  fclose (fp);
  assert_true (backing_open (remote.uri, &opts, &b) < 0);
  snprintf (psk, sizeof psk, "%s/keys.psk", tmpdir);

  /* The user from the URI, the key file in the URI (not in identity). */
  snprintf (uri, sizeof uri, "nbds+unix://alice@/?socket=%s&tls-psk-file=%s",
            remote.sock, psk);
  assert_int_equal (backing_open (uri, NULL, &b), 0);
  snprintf (uri, sizeof uri, "nbds+unix://alice@/?socket=%s", remote.sock);
  assert_string_equal (b->uri, uri);
  backing_close (b);
}

/* ---- URIs ---- */

/* A remote that accepts the connection but never answers the handshake
 * (a wedged server, a listening socket nobody serves): open fails with
 * -ETIMEDOUT at the timeout instead of hanging.
 */
static void
test_nbd_silent_remote (void **state)
{
  struct backing_open_options opts = { .remote.timeout_ms = 700 };
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  struct backing *b = NULL;
  uint64_t t0;
  int fd;

  (void) state;
  fd = socket (AF_UNIX, SOCK_STREAM, 0);
  assert_true (fd >= 0);
  assert_true (strlen (remote.sock) < sizeof sa.sun_path);
  strcpy (sa.sun_path, remote.sock);
  assert_int_equal (bind (fd, (struct sockaddr *) &sa, sizeof sa), 0);
  assert_int_equal (listen (fd, 16), 0);
  t0 = clock_now_ms ();
  assert_int_equal (backing_open (remote.uri, &opts, &b), -ETIMEDOUT);
  assert_true (clock_now_ms () - t0 >= 600);
  assert_true (clock_now_ms () - t0 < 5000);
  assert_null (b);
  close (fd);
}

static void
test_nbd_bad_uri (void **state)
{
  struct backing *b = NULL;

  struct backing_open_options opts = { .remote.timeout_ms = 700 };
  uint64_t t0;

  (void) state;
  /* Nothing listening: open retries (a remote may be starting with us)
   * until the timeout, then fails, logged, nothing leaks.
   */
  t0 = clock_now_ms ();
  assert_true (backing_open (remote.uri, &opts, &b) < 0);
  assert_true (clock_now_ms () - t0 >= 200);
  assert_true (clock_now_ms () - t0 < 5000);
  assert_null (b);
  assert_true (backing_is_remote_uri ("nbd://example.com/disk"));
  assert_true (backing_is_remote_uri ("nbds+unix:///x?socket=/s"));
  assert_false (backing_is_remote_uri ("file:///disk"));
  assert_false (backing_is_remote_uri ("/nbd://x"));
}

static bool
have_tool (const char *cmd)
{
  char buf[256];

  snprintf (buf, sizeof buf, "%s >/dev/null 2>&1", cmd);
  return system (buf) == 0;
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown (test_nbd_ops, setup, teardown),
    cmocka_unit_test_setup_teardown (test_nbd_emulated, setup, teardown),
    cmocka_unit_test_setup_teardown (test_nbd_block_size, setup, teardown),
    cmocka_unit_test_setup_teardown (test_nbd_concurrency, setup, teardown),
    cmocka_unit_test_setup_teardown (test_nbd_readonly, setup, teardown),
    cmocka_unit_test_setup_teardown (test_nbd_error, setup, teardown),
    cmocka_unit_test_setup_teardown (test_nbd_reconnect, setup, teardown),
    cmocka_unit_test_setup_teardown (test_nbd_flush_after_loss, setup,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_nbd_timeout, setup, teardown),
    cmocka_unit_test_setup_teardown (test_nbd_tls_x509, setup, teardown),
    cmocka_unit_test_setup_teardown (test_nbd_tls_psk, setup, teardown),
    cmocka_unit_test_setup_teardown (test_nbd_bad_uri, setup, teardown),
    cmocka_unit_test_setup_teardown (test_nbd_silent_remote, setup,
                                     teardown),
  };
  if (!have_tool ("nbdkit --version") || !have_tool ("openssl version")) {
    fprintf (stderr, "test-backing-nbd: SKIP: nbdkit or openssl missing\n");
    return 77;
  }
  test_rng_seed (&rng, test_seed_from_env ("test-backing-nbd"));
  signal (SIGPIPE, SIG_IGN);
  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
