/* SPDX-License-Identifier: BSD-3-Clause */
/* test-integrity.c — random concurrent I/O over 4 connections vs a model.
 *
 * WHAT: opens 4 connections to one export (multi-conn), then runs rounds
 * until the time budget is spent.  A round is a batch of random writes,
 * zeroes, trims and reads (1 B .. 1 MiB, aligned and unaligned, some with
 * FUA or NO_HOLE) on ranges that do not overlap each other, spread over
 * the connections and issued asynchronously with up to 16 in flight per
 * connection; then FLUSH on every connection.  Reads in a round and full
 * read-backs between rounds (through a different connection than the one
 * that wrote) are compared with an in-memory model of the export.
 * WHY: the server's request pipeline (parse, queue, worker, reply) is
 * where misdirected, torn or lost writes come from; only many requests in
 * flight on several connections exercise it.
 * INVARIANTS: within a round no two requests overlap, so their order does
 * not matter; every request completes before the round's FLUSH.  The
 * model starts as a read of the whole export, so the export may hold
 * anything when the test begins.  After a TRIM the spec leaves the
 * contents unspecified: a trimmed byte may read as its old value or as
 * zero (and nothing else) until it is written or zeroed again.
 * THREADS AND LOCKS: one thread per connection per round, each with its
 * own handle; they only touch their own ops; the main thread checks
 * results after joining (cmocka assertions are not thread-safe).
 * FAILURE: prints the seed (NBDCACHE_SEED=… repeats a run), the round, the
 * failing request and the first wrong byte.
 * Environment: NBDCACHE_SEED (default: time and pid), TEST_DURATION_S
 * (default 10), uri (or argv[1]).
 * NOT HERE: per-command error semantics (test-commands.c).
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

#include "libnbd-test.h"

#define NR_CONNS          4
#define MAX_IN_FLIGHT     16            /* per connection */
#define MAX_OPS_PER_ROUND 96
#define MAX_OP_BYTES      (1024 * 1024)
#define ALIGN_BYTES       4096
#define VERIFY_CHUNK      (4 * 1024 * 1024) /* bytes per full-verify read */
#define FULL_VERIFY_EVERY 8             /* rounds */

enum op_type { OP_WRITE, OP_ZERO, OP_TRIM, OP_READ };
static const char *const op_names[] = { "write", "zero", "trim", "read" };

struct op {
  enum op_type type;
  uint64_t offset, len;         /* bytes */
  uint32_t flags;               /* LIBNBD_CMD_FLAG_* */
  uint8_t *buf;                 /* write payload / read result; NULL else */
  int conn;
  bool done;
  int err;                      /* errno from the server, 0 = success */
};

struct conn_work {
  struct nbd_handle *h;
  struct op *ops[MAX_OPS_PER_ROUND];
  size_t n;
  const char *failure;          /* a libnbd call failed locally */
  char failure_msg[256];
};

static const char *uri;
static uint64_t seed;
static uint64_t rng_state;
static uint64_t export_size;
static uint8_t *model;          /* expected contents */
static uint8_t *maybe_zero;     /* bit per byte: trimmed, may read as 0 */

/* splitmix64: the same sequence for the same seed on every libc. */
static uint64_t
rnd (void)
{
  uint64_t z = (rng_state += UINT64_C (0x9e3779b97f4a7c15));

  z = (z ^ (z >> 30)) * UINT64_C (0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C (0x94d049bb133111eb);
  return z ^ (z >> 31);
}

static uint64_t
rnd_below (uint64_t n)
{
  return rnd () % n;
}

static bool
mz_get (uint64_t i)
{
  return (maybe_zero[i / 8] >> (i % 8)) & 1;
}

static void
mz_set_range (uint64_t off, uint64_t len, bool v)
{
  for (uint64_t i = off; i < off + len; i++) {
    if (v)
      maybe_zero[i / 8] |= (uint8_t) (1u << (i % 8));
    else
      maybe_zero[i / 8] &= (uint8_t) ~(1u << (i % 8));
  }
}

/* Index of the first byte of buf that the model does not allow, or -1. */
static int64_t
model_mismatch (const uint8_t *buf, uint64_t off, uint64_t len)
{
  for (uint64_t i = 0; i < len; i++) {
    uint8_t want = model[off + i];

    if (buf[i] != want && !(buf[i] == 0 && mz_get (off + i)))
      return (int64_t) i;
  }
  return -1;
}

static void
report_mismatch (const char *what, uint64_t round, uint64_t off,
                 const uint8_t *buf, int64_t i)
{
  uint64_t at = off + (uint64_t) i;

  fail_msg ("seed %" PRIu64 ": round %" PRIu64 ": %s: byte at %" PRIu64
            " is 0x%02x, model says 0x%02x%s", seed, round, what, at,
            buf[i], model[at], mz_get (at) ? " (or 0 after a trim)" : "");
}

static int
op_complete (void *opaque, int *error)
{
  struct op *op = opaque;

  op->err = *error;
  op->done = true;
  return 1;                     /* retire the command */
}

static int
issue (struct nbd_handle *h, struct op *op)
{
  nbd_completion_callback cb = { .callback = op_complete, .user_data = op };

  switch (op->type) {
  case OP_WRITE:
    return nbd_aio_pwrite (h, op->buf, op->len, op->offset, cb, op->flags)
      == -1 ? -1 : 0;
  case OP_ZERO:
    return nbd_aio_zero (h, op->len, op->offset, cb, op->flags)
      == -1 ? -1 : 0;
  case OP_TRIM:
    return nbd_aio_trim (h, op->len, op->offset, cb, op->flags)
      == -1 ? -1 : 0;
  case OP_READ:
    return nbd_aio_pread (h, op->buf, op->len, op->offset, cb, op->flags)
      == -1 ? -1 : 0;
  }
  return -1;
}

/* One connection's share of a round: at most MAX_IN_FLIGHT at a time. */
static void *
conn_thread (void *opaque)
{
  struct conn_work *w = opaque;
  size_t next = 0;

  while (next < w->n || nbd_aio_in_flight (w->h) > 0) {
    while (next < w->n && nbd_aio_in_flight (w->h) < MAX_IN_FLIGHT) {
      if (issue (w->h, w->ops[next]) == -1) {
        w->failure = "issue";
        snprintf (w->failure_msg, sizeof w->failure_msg, "%s", nbd_get_error ());
        return NULL;
      }
      next++;
    }
    if (nbd_aio_in_flight (w->h) > MAX_IN_FLIGHT) {
      w->failure = "in flight";
      snprintf (w->failure_msg, sizeof w->failure_msg,
                "%d requests in flight", nbd_aio_in_flight (w->h));
      return NULL;
    }
    if (nbd_poll (w->h, -1) == -1) {
      w->failure = "poll";
      snprintf (w->failure_msg, sizeof w->failure_msg, "%s", nbd_get_error ());
      return NULL;
    }
  }
  return NULL;
}

static bool
overlaps (const struct op *ops, size_t n, uint64_t off, uint64_t len)
{
  for (size_t i = 0; i < n; i++)
    if (off < ops[i].offset + ops[i].len && ops[i].offset < off + len)
      return true;
  return false;
}

/* Fill ops[] with a random, non-overlapping batch; returns how many. */
static size_t
make_round (struct op *ops)
{
  size_t n = 0;

  for (int attempt = 0; attempt < 4 * MAX_OPS_PER_ROUND &&
         n < MAX_OPS_PER_ROUND; attempt++) {
    struct op op = { 0 };
    uint64_t r = rnd_below (100);
    unsigned bits = (unsigned) rnd_below (21);  /* 1 B .. 1 MiB */
    uint64_t len = (UINT64_C (1) << bits) + rnd_below (UINT64_C (1) << bits);

    op.type = r < 45 ? OP_WRITE : r < 60 ? OP_ZERO : r < 70 ? OP_TRIM : OP_READ;
    if (len > MAX_OP_BYTES)
      len = MAX_OP_BYTES;
    if (len > export_size)
      len = export_size;
    op.offset = rnd_below (export_size - len + 1);
    if (rnd_below (2) == 0) {
      /* Aligned: offset and length in whole 4 KiB blocks. */
      op.offset -= op.offset % ALIGN_BYTES;
      len = len < ALIGN_BYTES ? ALIGN_BYTES : len - len % ALIGN_BYTES;
      if (op.offset + len > export_size)
        continue;
    }
    op.len = len;
    if (overlaps (ops, n, op.offset, op.len))
      continue;
    if (op.type != OP_READ && rnd_below (4) == 0)
      op.flags |= LIBNBD_CMD_FLAG_FUA;
    if (op.type == OP_ZERO && rnd_below (2) == 0)
      op.flags |= LIBNBD_CMD_FLAG_NO_HOLE;
    if (op.type == OP_WRITE || op.type == OP_READ) {
      op.buf = malloc (op.len);
      assert_non_null (op.buf);
      if (op.type == OP_WRITE)
        for (uint64_t i = 0; i < op.len; i += 8) {
          uint64_t v = rnd ();

          memcpy (op.buf + i, &v, op.len - i < 8 ? op.len - i : 8);
        }
    }
    op.conn = (int) (n % NR_CONNS);
    ops[n++] = op;
  }
  return n;
}

/* Read the whole export through connection `c` and compare. */
static void
full_verify (struct nbd_handle *h, uint64_t round)
{
  uint8_t *buf = malloc (VERIFY_CHUNK);

  assert_non_null (buf);
  for (uint64_t off = 0; off < export_size; off += VERIFY_CHUNK) {
    uint64_t len = export_size - off < VERIFY_CHUNK ? export_size - off
                                                    : VERIFY_CHUNK;
    int64_t bad;

    NBD_OK (nbd_pread (h, buf, len, off, 0));
    if ((bad = model_mismatch (buf, off, len)) >= 0)
      report_mismatch ("full read-back", round, off, buf, bad);
  }
  free (buf);
}

static void
test_integrity_random_rounds (void **state)
{
  struct nbd_handle *h[NR_CONNS];
  static struct op ops[MAX_OPS_PER_ROUND];
  const char *dur_env = getenv ("TEST_DURATION_S");
  double duration_s = dur_env ? atof (dur_env) : 10.0;
  struct timespec t0, now;
  uint64_t round = 0, counts[4] = { 0 }, bytes = 0;

  for (int c = 0; c < NR_CONNS; c++) {
    h[c] = test_connect (uri, false);
    assert_int_equal (nbd_can_multi_conn (h[c]), 1);
  }
  export_size = (uint64_t) nbd_get_size (h[0]);
  assert_true (export_size > 0);
  for (int c = 1; c < NR_CONNS; c++)
    assert_int_equal ((uint64_t) nbd_get_size (h[c]), export_size);

  model = malloc (export_size);
  maybe_zero = calloc (export_size / 8 + 1, 1);
  assert_non_null (model);
  assert_non_null (maybe_zero);
  for (uint64_t off = 0; off < export_size; off += VERIFY_CHUNK) {
    uint64_t len = export_size - off < VERIFY_CHUNK ? export_size - off
                                                    : VERIFY_CHUNK;

    NBD_OK (nbd_pread (h[0], model + off, len, off, 0));
  }

  clock_gettime (CLOCK_MONOTONIC, &t0);
  do {
    struct conn_work work[NR_CONNS];
    pthread_t tid[NR_CONNS];
    size_t n;

    round++;
    n = make_round (ops);
    memset (work, 0, sizeof work);
    for (int c = 0; c < NR_CONNS; c++)
      work[c].h = h[c];
    for (size_t i = 0; i < n; i++) {
      struct conn_work *w = &work[ops[i].conn];

      w->ops[w->n++] = &ops[i];
    }
    for (int c = 0; c < NR_CONNS; c++)
      assert_int_equal (pthread_create (&tid[c], NULL, conn_thread, &work[c]),
                        0);
    for (int c = 0; c < NR_CONNS; c++)
      pthread_join (tid[c], NULL);
    for (int c = 0; c < NR_CONNS; c++)
      if (work[c].failure)
        fail_msg ("seed %" PRIu64 ": round %" PRIu64 ": connection %d: %s: %s",
                  seed, round, c, work[c].failure, work[c].failure_msg);

    /* Check every result, then apply the round to the model. */
    for (size_t i = 0; i < n; i++) {
      struct op *op = &ops[i];
      char what[128];

      snprintf (what, sizeof what, "%s [%" PRIu64 ", +%" PRIu64
                ") flags 0x%x on connection %d", op_names[op->type],
                op->offset, op->len, op->flags, op->conn);
      if (!op->done)
        fail_msg ("seed %" PRIu64 ": round %" PRIu64 ": %s never completed",
                  seed, round, what);
      if (op->err != 0)
        fail_msg ("seed %" PRIu64 ": round %" PRIu64 ": %s failed: %s",
                  seed, round, what, strerror (op->err));
      if (op->type == OP_READ) {
        int64_t bad = model_mismatch (op->buf, op->offset, op->len);

        if (bad >= 0)
          report_mismatch (what, round, op->offset, op->buf, bad);
      }
    }
    for (size_t i = 0; i < n; i++) {
      struct op *op = &ops[i];

      counts[op->type]++;
      bytes += op->len;
      switch (op->type) {
      case OP_WRITE:
        memcpy (model + op->offset, op->buf, op->len);
        mz_set_range (op->offset, op->len, false);
        break;
      case OP_ZERO:
        memset (model + op->offset, 0, op->len);
        mz_set_range (op->offset, op->len, false);
        break;
      case OP_TRIM:
        mz_set_range (op->offset, op->len, true);
        break;
      case OP_READ:
        break;
      }
      free (op->buf);
      op->buf = NULL;
    }

    /* Every write of the round has been answered: now FLUSH all. */
    for (int c = 0; c < NR_CONNS; c++)
      NBD_OK (nbd_flush (h[c], 0));
    if (round % FULL_VERIFY_EVERY == 0)
      full_verify (h[round / FULL_VERIFY_EVERY % NR_CONNS], round);
    clock_gettime (CLOCK_MONOTONIC, &now);
  } while ((double) (now.tv_sec - t0.tv_sec) +
           (double) (now.tv_nsec - t0.tv_nsec) / 1e9 < duration_s);

  for (int c = 0; c < NR_CONNS; c++)
    full_verify (h[c], round);
  printf ("test-integrity: seed %" PRIu64 ": %" PRIu64 " rounds, %" PRIu64
          " writes, %" PRIu64 " zeroes, %" PRIu64 " trims, %" PRIu64
          " reads, %" PRIu64 " MiB\n", seed, round, counts[OP_WRITE],
          counts[OP_ZERO], counts[OP_TRIM], counts[OP_READ], bytes >> 20);
  for (int c = 0; c < NR_CONNS; c++)
    test_disconnect (h[c]);
  free (model);
  free (maybe_zero);
}

int
main (int argc, char *argv[])
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_integrity_random_rounds),
  };
  const char *seed_env = getenv ("NBDCACHE_SEED");
  int r;

  uri = test_get_uri ("test-integrity", argc, argv);
  if (uri == NULL)
    return 1;
  if (seed_env && *seed_env)
    seed = strtoull (seed_env, NULL, 0);
  else
    seed = (uint64_t) time (NULL) ^ ((uint64_t) getpid () << 32);
  rng_state = seed;
  printf ("test-integrity: server kind %s, uri %s, seed %" PRIu64
          " (NBDCACHE_SEED=%" PRIu64 " repeats it)\n", test_server_kind (), uri,
          seed, seed);
  fflush (stdout);
  r = cmocka_run_group_tests (tests, NULL, NULL);
  if (r)
    printf ("test-integrity: FAILED with seed %" PRIu64 "\n", seed);
  return r ? 1 : 0;
}
