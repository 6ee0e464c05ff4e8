/* SPDX-License-Identifier: BSD-3-Clause */
/* test-model-fx.c — the model test's fixture (test-model-fx.h).
 *
 * WHAT: data patterns, the per-test state, opening and reopening the
 * engine (clean and crash reopens), setup / teardown per mode, and each
 * operation with its byte-exact check against the model.
 * WHY: the sequential and the concurrent programs drive the same engine
 * the same way.
 * INVARIANTS: the model holds every byte the engine must return.
 * THREADS AND LOCKS: a context belongs to one test; workers only use
 * their own regions.
 * FAILURE: a mismatch fails the test with the seed, op and history.
 * NOT HERE: the runs (test-model-sequential.c, test-model-concurrent.c).
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

#include <cmocka.h>

#include "backing.h"
#include "cache.h"
#include "cache-internal.h"
#include "cdev.h"
#include "compiler.h"
#include "test-model-fx.h"

static inline uint64_t
pattern_word (uint32_t k, uint64_t w)
{
  return PATTERN_MARK << 60 | ((uint64_t) k & 0xfffff) << 40 |
    (w & UINT64_C (0xffffffffff));
}

void
fill_pattern (unsigned char *buf, uint64_t offset, uint64_t count, uint32_t k)
{
  uint64_t pos = offset, end = offset + count;

  while (pos < end) {
    uint64_t w = pos / 8, word = pattern_word (k, w);
    unsigned char b[8];
    unsigned i, from = pos % 8;
    uint64_t n = MIN ((uint64_t) (8 - from), end - pos);

    for (i = 0; i < 8; i++)
      b[i] = (unsigned char) (word >> (8 * i));
    memcpy (buf + (pos - offset), b + from, n);
    pos += n;
  }
}

static uint64_t
le64_at (const unsigned char *p)
{
  uint64_t v = 0;
  int i;

  for (i = 7; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

void
record (struct ctx *c, const char *what, uint64_t offset, uint64_t count,
        uint32_t flags, int result)
{
  struct rec *r;

  if (c->verifying)
    return;
  if (c->nr_log == c->log_cap) {
    size_t ncap = c->log_cap ? c->log_cap * 2 : 1024;
    struct rec *p = realloc (c->log, ncap * sizeof *p);

    if (p == NULL)
      return;                   /* a shorter history; not a test failure */
    c->log = p;
    c->log_cap = ncap;
  }
  r = &c->log[c->nr_log++];
  r->idx = c->op;
  r->what = what;
  r->offset = offset;
  r->count = count;
  r->flags = flags;
  r->result = result;
  r->changes = strcmp (what, "WRITE") == 0 || strcmp (what, "ZERO") == 0 ||
    strcmp (what, "TRIM") == 0;
}

/* The most recent logged op, or NULL. */
const struct rec *
last_rec (const struct ctx *c)
{
  return c->nr_log ? &c->log[c->nr_log - 1] : NULL;
}

static void
print_rec (FILE *out, const struct rec *r)
{
  fprintf (out, "    #%u %s [%" PRIu64 ", +%" PRIu64 ")%s%s%s%s -> %s\n",
           r->idx, r->what, r->offset, r->count,
           r->flags & NCACHE_FUA ? " FUA" : "",
           r->flags & NCACHE_MAY_TRIM ? " MAY_TRIM" : "",
           r->flags & NCACHE_FAST_ZERO ? " FAST_ZERO" : "",
           r->flags & NCACHE_REQ_ONE ? " REQ_ONE" : "",
           r->result == 0 ? "ok" : strerror (-r->result));
}

static void
print_ring (const struct ctx *c)
{
  size_t i, from = c->nr_log > RING ? c->nr_log - RING : 0;

  fprintf (c->out, "  the last %zu ops:\n", c->nr_log - from);
  for (i = from; i < c->nr_log; i++)
    print_rec (c->out, &c->log[i]);
}

/* The ops that changed byte `at` (writes, zeroes, trims). */
static bool
changed (const struct rec *r, uint64_t at)
{
  return r->changes && at >= r->offset && at - r->offset < r->count;
}

static void
print_history (const struct ctx *c, uint64_t at)
{
  size_t i, n = 0, seen = 0;

  for (i = 0; i < c->nr_log; i++)
    n += changed (&c->log[i], at);
  fprintf (c->out, "  ops that changed byte %" PRIu64 " (last %zu of %zu):\n",
           at, MIN (n, (size_t) RING), n);
  for (i = 0; i < c->nr_log; i++)
    if (changed (&c->log[i], at) && seen++ + RING >= n)
      print_rec (c->out, &c->log[i]);
}

/* The start of a failure report; details follow, then fail_footer. */
static void
fail_report (struct ctx *c, const char *fmt, ...)
  ATTRIBUTE_FORMAT_PRINTF (2, 3);

static void
fail_report (struct ctx *c, const char *fmt, ...)
{
  va_list ap;

  fprintf (c->out, "\nFAIL: mode %s, seed %" PRIu64 ", op #%u (reopens so "
           "far: %u)\n  ", ncache_mode_name (c->mode), c->seed, c->op,
           c->nr_reopens);
  va_start (ap, fmt);
  vfprintf (c->out, fmt, ap);
  va_end (ap);
  fprintf (c->out, "\n");
}

/* The end of a failure report: history, log, how to replay. */
void
fail_footer (struct ctx *c)
{
  print_ring (c);
  test_log_dump ("  engine log");
  fprintf (c->out, "  replay: NBDCACHE_SEED=%" PRIu64 " NBDCACHE_MODEL_OPS=%u"
           " NBDCACHE_MODEL_FILTER=test_model_%s ./test-model\n\n", c->seed,
           c->nr_ops, ncache_mode_name (c->mode));
}

static bool
is_trimmed (const struct ctx *c, uint64_t i)
{
  return c->trimmed[i / 8] & (1u << (i % 8));
}

static void
set_trimmed_bit (struct ctx *c, uint64_t i, bool on)
{
  if (on)
    c->trimmed[i / 8] |= (unsigned char) (1u << (i % 8));
  else
    c->trimmed[i / 8] &= (unsigned char) ~(1u << (i % 8));
}

void
set_trimmed (struct ctx *c, uint64_t offset, uint64_t count, bool on)
{
  uint64_t i = offset, end = offset + count;

  for (; i < end && i % 8; i++)
    set_trimmed_bit (c, i, on);
  if (end - i >= 8) {
    memset (c->trimmed + i / 8, on ? 0xff : 0, (end - i) / 8);
    i += (end - i) / 8 * 8;
  }
  for (; i < end; i++)
    set_trimmed_bit (c, i, on);
}

static void
touch (struct ctx *c, uint64_t offset, uint64_t count)
{
  uint64_t i;

  if (count == 0)
    return;
  for (i = offset / CHUNK_BYTES; i <= (offset + count - 1) / CHUNK_BYTES; i++)
    c->touched[i] = 1;
}

/* What 8 aligned bytes are, in words.  (A word that straddles the edge
 * of a write mixes two ops; its top bytes then name the later one.)
 */
void
describe_word (const unsigned char *p, uint64_t at, char *s, size_t len)
{
  uint64_t v = le64_at (p);
  uint64_t k = (v >> 40) & 0xfffff, w = v & UINT64_C (0xffffffffff);

  if (v == 0)
    snprintf (s, len, "zeros");
  else if (v >> 60 != PATTERN_MARK || w * 8 >= EXPORT_BYTES)
    snprintf (s, len, "0x%016" PRIx64 " (not a pattern of ours: foreign or "
              "mixed bytes)", v);
  else if (w * 8 == at && k == 0)
    snprintf (s, len, "the initial content, for this offset");
  else if (w * 8 == at)
    snprintf (s, len, "data of op #%" PRIu64 ", for this offset", k);
  else if (k == 0)
    snprintf (s, len, "the initial content of byte %" PRIu64
              " (MISPLACED by %" PRId64 " bytes)", w * 8,
              (int64_t) (at - w * 8));
  else
    snprintf (s, len, "data op #%" PRIu64 " wrote for byte %" PRIu64
              " (MISPLACED by %" PRId64 " bytes)", k, w * 8,
              (int64_t) (at - w * 8));
}

static void
hexdump (FILE *out, const char *label, const unsigned char *p, size_t n,
         uint64_t at)
{
  size_t i;

  fprintf (out, "    %-8s @%-10" PRIu64, label, at);
  for (i = 0; i < n; i++)
    fprintf (out, "%s%02x", i % 8 ? "" : " ", p[i]);
  fprintf (out, "\n");
}

/* The lenient trim rule: may byte `got` at `at`, trimmed, be older
 * data?  Yes if it is the initial content's byte there or the byte of a
 * write op that covered `at` (NBD lets trimmed data read as anything once
 * written there).  Bytes come in runs from one op, so the op that matched
 * last (*hint, an index in the log) is tried first.
 */
static bool
written_before (const struct ctx *c, unsigned char got, uint64_t at,
                size_t *hint)
{
  size_t j;

  if (got == (unsigned char) (pattern_word (0, at / 8) >> (8 * (at % 8))))
    return true;
  for (j = 0; j <= c->nr_log; j++) {
    size_t x = j == 0 ? *hint : j - 1;
    const struct rec *r;

    if (x >= c->nr_log)
      continue;
    r = &c->log[x];
    if (r->changes && strcmp (r->what, "WRITE") == 0 &&
        at >= r->offset && at - r->offset < r->count &&
        got == (unsigned char) (pattern_word (r->idx, at / 8)
                                >> (8 * (at % 8)))) {
      *hint = x;
      return true;
    }
  }
  return false;
}

/* Compare what a read returned with the model.  true = all good; false
 * after a full report.
 */
bool
check_bytes (struct ctx *c, const char *what, const unsigned char *got,
             uint64_t offset, uint64_t count)
{
  const unsigned char *want = c->model + offset;
  uint64_t i, first = UINT64_MAX, nbad = 0, ntrim = 0;
  size_t hint = 0;

  if (memcmp (got, want, count) == 0)
    return true;
  for (i = 0; i < count; i++) {
    if (got[i] == want[i])
      continue;
    if (is_trimmed (c, offset + i) &&
        (got[i] == 0 ||
         (c->trim_stale_ok &&
          written_before (c, got[i], offset + i, &hint)))) {
      ntrim++;
      continue;
    }
    if (first == UINT64_MAX)
      first = i;
    nbad++;
  }
  if (nbad == 0)
    return true;

  {
    uint64_t at = offset + first, w0 = at & ~UINT64_C (7);
    uint64_t from = w0 >= offset + 16 ? w0 - 16 : offset;
    uint64_t to = MIN (offset + count, w0 + 24);
    char gd[160], wd[160];

    fail_report (c, "%s [%" PRIu64 ", +%" PRIu64 "): %" PRIu64
                 " byte(s) differ from the model, the first at byte %" PRIu64
                 " (%" PRIu64 " trimmed byte(s) read as zero%s, which is "
                 "fine)",
                 what, offset, count, nbad, at, ntrim,
                 c->trim_stale_ok ? " or older data" : "");
    hexdump (c->out, "expected", want + (from - offset), to - from, from);
    hexdump (c->out, "got", got + (from - offset), to - from, from);
    if (w0 >= offset && w0 + 8 <= offset + count) {
      describe_word (got + (w0 - offset), w0, gd, sizeof gd);
      describe_word (want + (w0 - offset), w0, wd, sizeof wd);
      fprintf (c->out, "    the word at %" PRIu64 ": expected %s%s; got %s\n",
               w0, wd, is_trimmed (c, at) ? " (trimmed: or zeros)" : "", gd);
    }
    print_history (c, at);
  }
  return false;
}

/* ---- engine lifecycle ---- */

/* The store's power hook: off from a crash to the reopen. */
static bool
store_powered (void *opaque)
{
  struct ctx *c = opaque;

  return __atomic_load_n (&c->powered, __ATOMIC_ACQUIRE);
}

int
open_export (struct ctx *c, bool create)
{
  const struct ncache_device_tuning tuning = {
    .node_cache_bytes = NODE_CACHE_BYTES,
    .journal_delay_ms = JOURNAL_DELAY_MS,
    .format_bucket_bytes = BUCKET_BYTES,
    .discard = true,
  };
  struct ncache_config cfg = {
    .name = "model", .mode = c->mode, .readonly = false,
    .tuning = &c->tuning,
  };
  struct backing *b;
  int r;

  if (c->mode != NCACHE_MODE_NONE) {
    if (create && (r = cdev_sim_create (DEVICE_BYTES, &c->cd)) < 0)
      return r;
    cdev_sim_hold (c->cd);
    if ((r = ncache_device_open_cdev ("model-cache", c->cd, create, &tuning,
                                      &c->dev)) < 0) {
      c->dev = NULL;
      return r;
    }
    cfg.device = c->dev;
  }
  if ((r = test_store_open (c->store, &b)) < 0)
    return r;
  if ((r = ncache_open (&cfg, b, &c->nc)) < 0) {
    c->nc = NULL;
    return r;
  }
  return 0;
}

static void
close_export (struct ctx *c)
{
  ncache_close (c->nc);
  c->nc = NULL;
  ncache_device_close (c->dev);
  c->dev = NULL;
}

static int
setup_mode (void **state, enum ncache_mode mode)
{
  const struct params *p = *state;
  struct ctx *c = calloc (1, sizeof *c);
  uint64_t k;

  if (c == NULL)
    return -1;
  c->mode = mode;
  c->out = stderr;
  c->seed = p->seed;
  /* Cached modes queue backing trims (trimq.h): until one is issued, a
   * read of the range may return older data from the backing store.
   */
  c->trim_stale_ok = p->trim_stale < 0 ? mode != NCACHE_MODE_NONE
    : p->trim_stale != 0;
  c->nr_ops = p->nr_ops;
  test_rng_seed (&c->rng, test_mix64 (c->seed ^ ((uint64_t) mode << 32)));
  c->model = malloc (EXPORT_BYTES);
  c->trimmed = calloc (1, EXPORT_BYTES / 8);
  c->touched = calloc (1, NR_CHUNKS);
  c->buf = malloc (MAX_IO_BYTES);
  c->buf2 = malloc (MAX_IO_BYTES);
  if (c->model == NULL || c->trimmed == NULL || c->touched == NULL ||
      c->buf == NULL || c->buf2 == NULL ||
      test_store_create (EXPORT_BYTES, "test-store:model", &c->store) < 0)
    goto err;
  /* The initial content is op 0's pattern, in the model and the store. */
  for (k = 0; k < EXPORT_BYTES; k += MAX_IO_BYTES)
    fill_pattern (c->model + k, k, MAX_IO_BYTES, 0);
  memcpy (test_store_data (c->store), c->model, EXPORT_BYTES);
  if (test_store_set_volatile (c->store, true) < 0)
    goto err;
  c->powered = true;
  test_store_set_power_fn (c->store, store_powered, c);
  /* Background work all the time; the cutoff and flush_on_stop vary. */
  ncache_export_tuning_default (&c->tuning);
  c->tuning.writeback_percent = 0;
  c->tuning.writeback_update_ms = WB_UPDATE_MS;
  k = test_rng_below (&c->rng, 5);
  if (k < 2)
    c->tuning.sequential_cutoff_bytes = SHORT_CUTOFF_BYTES;
  else if (k == 4)
    c->tuning.sequential_cutoff_bytes = 0;
  c->tuning.flush_on_stop = test_rng_chance (&c->rng, 30);
  test_log_clear ();
  *state = c;
  return 0;

 err:
  test_store_destroy (c->store);
  free (c->model);
  free (c->trimmed);
  free (c->touched);
  free (c->buf);
  free (c->buf2);
  free (c);
  return -1;
}

int
teardown (void **state)
{
  struct ctx *c = *state;

  if (c == NULL)
    return 0;
  close_export (c);
  cdev_close (c->cd);
  test_store_destroy (c->store);
  free (c->model);
  free (c->trimmed);
  free (c->touched);
  free (c->buf);
  free (c->buf2);
  free (c->log);
  free (c);
  return 0;
}

#define SETUP(name, m)                                  \
  int name (void **state) { return setup_mode (state, m); }
SETUP (setup_none, NCACHE_MODE_NONE)
SETUP (setup_writeback, NCACHE_MODE_WRITEBACK)
SETUP (setup_writethrough, NCACHE_MODE_WRITETHROUGH)
SETUP (setup_writearound, NCACHE_MODE_WRITEAROUND)

/* ---- the single-threaded model run ---- */

uint64_t
pick_count (struct test_rng *rng)
{
  unsigned c = (unsigned) test_rng_below (rng, 100);

  if (c < 30)
    return test_rng_range (rng, 1, 4096);
  if (c < 55)
    return test_rng_range (rng, 1, 128) * 512;
  if (c < 80)
    return test_rng_range (rng, 1, MAX_IO_BYTES / 4096) * 4096;
  return test_rng_range (rng, 1, MAX_IO_BYTES);
}

uint64_t
pick_offset (struct test_rng *rng, uint64_t count)
{
  uint64_t span = test_rng_chance (rng, 50) ? HOT_BYTES : EXPORT_BYTES;
  uint64_t off = test_rng_below (rng, span - count + 1);
  unsigned a = (unsigned) test_rng_below (rng, 4);

  if (a == 0)
    off = ROUND_DOWN (off, 4096);
  else if (a == 1)
    off = ROUND_DOWN (off, 512);
  return off;                   /* else any byte */
}

bool
do_read (struct ctx *c, uint64_t off, uint64_t count, const char *what)
{
  int r = ncache_pread (c->nc, c->buf, count, off, 0);

  record (c, what, off, count, 0, r);
  if (r < 0) {
    fail_report (c, "%s [%" PRIu64 ", +%" PRIu64 ") failed: %s", what, off,
                 count, strerror (-r));
    return false;
  }
  return check_bytes (c, what, c->buf, off, count);
}

bool
do_write (struct ctx *c, uint64_t off, uint64_t count, uint32_t flags)
{
  int r;

  fill_pattern (c->buf, off, count, c->op);
  r = ncache_pwrite (c->nc, c->buf, count, off, flags);
  record (c, "WRITE", off, count, flags, r);
  if (r < 0) {
    fail_report (c, "WRITE [%" PRIu64 ", +%" PRIu64 ") failed: %s", off,
                 count, strerror (-r));
    return false;
  }
  memcpy (c->model + off, c->buf, count);
  set_trimmed (c, off, count, false);
  touch (c, off, count);
  return true;
}

bool
do_zero (struct ctx *c, uint64_t off, uint64_t count, uint32_t flags)
{
  int r = ncache_zero (c->nc, count, off, flags);

  record (c, "ZERO", off, count, flags, r);
  if (r == -ENOTSUP && (flags & NCACHE_FAST_ZERO))
    return true;                /* allowed; nothing changed */
  if (r < 0) {
    fail_report (c, "ZERO [%" PRIu64 ", +%" PRIu64 ") failed: %s", off,
                 count, strerror (-r));
    return false;
  }
  memset (c->model + off, 0, count);
  set_trimmed (c, off, count, false);
  touch (c, off, count);
  return true;
}

bool
do_trim (struct ctx *c, uint64_t off, uint64_t count, uint32_t flags)
{
  int r = ncache_trim (c->nc, count, off, flags);

  record (c, "TRIM", off, count, flags, r);
  if (r < 0) {
    fail_report (c, "TRIM [%" PRIu64 ", +%" PRIu64 ") failed: %s", off,
                 count, strerror (-r));
    return false;
  }
  set_trimmed (c, off, count, true);
  touch (c, off, count);
  return true;
}

bool
do_simple (struct ctx *c, const char *what, int r, uint64_t off,
           uint64_t count)
{
  record (c, what, off, count, 0, r);
  if (r < 0) {
    fail_report (c, "%s [%" PRIu64 ", +%" PRIu64 ") failed: %s", what, off,
                 count, strerror (-r));
    return false;
  }
  return true;
}

static int
extent_cb (void *opaque, uint64_t offset, uint64_t length, uint32_t flags)
{
  struct ctx *c = opaque;

  if (c->stop_after && c->nr_ext >= c->stop_after) {
    c->called_after_stop = true;
    return 1;
  }
  if (c->nr_ext < MAX_EXTENTS) {
    c->ext[c->nr_ext].offset = offset;
    c->ext[c->nr_ext].length = length;
    c->ext[c->nr_ext].flags = flags;
  }
  c->nr_ext++;
  return c->stop_after && c->nr_ext >= c->stop_after ? 1 : 0;
}

/* Check the extents collected for [off, off+count).  true = good. */
bool
check_extents (struct ctx *c, uint64_t off, uint64_t count, uint32_t flags)
{
  uint64_t next = off, end = off + count, i, b;
  unsigned k;
  const char *why = NULL;

  if (c->called_after_stop)
    why = "the callback was called again after it returned 1 (stop)";
  else if (c->nr_ext == 0)
    why = "no extent reported";
  else if (c->nr_ext > MAX_EXTENTS)
    why = "more extents than the test can hold";
  for (k = 0; why == NULL && k < c->nr_ext; k++) {
    if (c->ext[k].offset != next)
      why = "an extent does not start where the previous one ended "
        "(or the first is not at the request offset)";
    else if (c->ext[k].length == 0)
      why = "an empty extent";
    else if (c->ext[k].length > end - next)
      why = "an extent runs past the end of the request";
    else if (c->ext[k].flags & ~(NCACHE_EXTENT_HOLE | NCACHE_EXTENT_ZERO))
      why = "unknown extent flags";
    else
      next += c->ext[k].length;
  }
  if (why == NULL && next != end && !(flags & NCACHE_REQ_ONE) &&
      !(c->stop_after && c->nr_ext >= c->stop_after))
    why = "the extents do not cover the whole request";
  /* ZERO extents must be zeros in the model (or trimmed). */
  for (k = 0; why == NULL && k < c->nr_ext; k++) {
    if (!(c->ext[k].flags & NCACHE_EXTENT_ZERO))
      continue;
    for (i = c->ext[k].offset; i < c->ext[k].offset + c->ext[k].length; i++)
      if (c->model[i] != 0 && !is_trimmed (c, i)) {
        b = i;
        fail_report (c, "EXTENTS [%" PRIu64 ", +%" PRIu64 "): extent #%u "
                     "[%" PRIu64 ", +%" PRIu64 ") says ZERO but byte %"
                     PRIu64 " is 0x%02x in the model", off, count, k,
                     c->ext[k].offset, c->ext[k].length, b, c->model[b]);
        return false;
      }
  }
  if (why == NULL)
    return true;
  fail_report (c, "EXTENTS [%" PRIu64 ", +%" PRIu64 ")%s: %s", off, count,
               flags & NCACHE_REQ_ONE ? " REQ_ONE" : "", why);
  for (k = 0; k < MIN (c->nr_ext, 16u); k++)
    fprintf (c->out, "    extent #%u [%" PRIu64 ", +%" PRIu64 ") flags 0x%x\n",
             k, c->ext[k].offset, c->ext[k].length, c->ext[k].flags);
  return false;
}

/* A ZERO extent "will read back as zeros" (NBD): read them and see. */
static bool
read_zero_extents (struct ctx *c)
{
  unsigned k;
  uint64_t pos, n, i;
  int r;

  for (k = 0; k < MIN (c->nr_ext, (unsigned) MAX_EXTENTS); k++) {
    if (!(c->ext[k].flags & NCACHE_EXTENT_ZERO))
      continue;
    for (pos = c->ext[k].offset; pos < c->ext[k].offset + c->ext[k].length;
         pos += n) {
      n = MIN ((uint64_t) MAX_IO_BYTES,
               c->ext[k].offset + c->ext[k].length - pos);
      if ((r = ncache_pread (c->nc, c->buf2, n, pos, 0)) < 0) {
        fail_report (c, "reading ZERO extent [%" PRIu64 ", +%" PRIu64
                     ") failed: %s", c->ext[k].offset, c->ext[k].length,
                     strerror (-r));
        return false;
      }
      for (i = 0; i < n; i++)
        if (c->buf2[i] != 0) {
          fail_report (c, "extent [%" PRIu64 ", +%" PRIu64 ") was reported "
                       "ZERO but byte %" PRIu64 " reads as 0x%02x",
                       c->ext[k].offset, c->ext[k].length, pos + i,
                       c->buf2[i]);
          print_history (c, pos + i);
          return false;
        }
    }
  }
  return true;
}

bool
do_extents (struct ctx *c, uint64_t off, uint64_t count)
{
  uint32_t flags = test_rng_chance (&c->rng, 20) ? NCACHE_REQ_ONE : 0;
  int r;

  c->nr_ext = 0;
  c->called_after_stop = false;
  c->stop_after = test_rng_chance (&c->rng, 10) ? 1 : 0;
  r = ncache_extents (c->nc, count, off, flags, extent_cb, c);
  record (c, "EXTENTS", off, count, flags, r);
  if (r < 0) {
    fail_report (c, "EXTENTS [%" PRIu64 ", +%" PRIu64 ") failed: %s", off,
                 count, strerror (-r));
    return false;
  }
  return check_extents (c, off, count, flags) && read_zero_extents (c);
}

/* Everything back to the backing store; then nothing may be dirty
 * (this thread is the only writer), by the stats and by nbdcache:state.
 */
bool
do_drain (struct ctx *c)
{
  struct ncache_stats st;
  struct test_dirty d;
  int r;

  if (!do_simple (c, "DRAIN", ncache_drain (c->nc, NULL, NULL), 0, 0))
    return false;
  ncache_get_stats (c->nc, &st);
  r = test_scan_dirty (c->nc, EXPORT_BYTES, &d);
  if (r < 0) {
    fail_report (c, "nbdcache:state of the whole export failed: %s",
                 strerror (-r));
    return false;
  }
  if (st.dirty_bytes != 0 || st.dirty_zero_bytes != 0 || d.bytes != 0 ||
      d.zero_bytes != 0) {
    fail_report (c, "DRAIN returned 0 but the export is not clean: the "
                 "stats say %" PRIu64 " dirty byte(s) and %" PRIu64 " dirty "
                 "zero byte(s); nbdcache:state says %" PRIu64 " and %"
                 PRIu64 "%s", st.dirty_bytes, st.dirty_zero_bytes, d.bytes,
                 d.zero_bytes, d.bytes + d.zero_bytes ? "" :
                 " (so the stats' counters are off)");
    if (d.bytes + d.zero_bytes)
      fprintf (c->out, "  the first dirty extent: [%" PRIu64 ", +%" PRIu64
               ") state 0x%x\n", d.first, d.first_len, d.first_flags);
    return false;
  }
  return true;
}

/* One GC round now: discards, GC, moving GC (sometimes forced).  The
 * bytes must not change; the reads that follow check them.
 */
bool
do_gc (struct ctx *c)
{
  bool force = test_rng_chance (&c->rng, 50);

  /* No device in mode none; no GC thread until device open starts it. */
  if (c->dev == NULL || c->dev->gc == NULL)
    return true;
  return do_simple (c, force ? "GC(force_moving)" : "GC",
                    gc_run_once (c->dev->gc, force), 0, 0);
}

/* A long sequential stream, past the sequential cutoff. */
bool
do_stream (struct ctx *c)
{
  uint64_t start = ROUND_DOWN (test_rng_below (&c->rng,
                                               EXPORT_BYTES - STREAM_BYTES),
                               4096);
  bool write = test_rng_chance (&c->rng, 50);
  uint64_t pos;

  for (pos = start; pos < start + STREAM_BYTES; pos += MAX_IO_BYTES) {
    if (write ? !do_write (c, pos, MAX_IO_BYTES, 0)
        : !do_read (c, pos, MAX_IO_BYTES, "READ(stream)"))
      return false;
  }
  return true;
}

/* Compare [off, off+count) through the engine, in MAX_IO_BYTES reads. */
static bool
verify_range (struct ctx *c, uint64_t off, uint64_t count, const char *what)
{
  uint64_t pos;
  bool ok = true;

  c->verifying = true;
  for (pos = off; ok && pos < off + count; pos += MAX_IO_BYTES)
    ok = do_read (c, pos, MIN ((uint64_t) MAX_IO_BYTES, off + count - pos),
                  what);
  c->verifying = false;
  return ok;
}

bool
reopen (struct ctx *c, bool verify_all)
{
  uint64_t i, unflushed;
  int r;

  if (c->nc != NULL) {
    struct ncache_stats st;

    ncache_get_stats (c->nc, &st);
    c->last_seq_bypasses = st.sequential_bypasses;
    c->last_wb_bytes = st.writeback_bytes;
  }
  close_export (c);
  if (c->store != NULL && test_store_nr_open (c->store) != 0) {
    fail_report (c, "ncache_close did not close the backing handle");
    return false;
  }
  c->nr_reopens++;
  record (c, "REOPEN", 0, 0, 0, 0);
  /* A clean close flushed the backing store: a power loss now must not
   * lose anything (torn or not, every other time).
   */
  unflushed = test_store_nr_unflushed (c->store);
  test_store_crash (c->store, c->nr_reopens % 2 ? 0
                    : test_mix64 (c->seed ^ c->nr_reopens) | 1);
  if ((r = open_export (c, false)) < 0) {
    fail_report (c, "clean reopen failed: %s", strerror (-r));
    return false;
  }
  if (unflushed != 0) {
    fail_report (c, "after a clean close the backing store still had %"
                 PRIu64 " unflushed sector(s): ncache_close must flush it",
                 unflushed);
    return false;
  }
  if (c->tuning.flush_on_stop && c->mode != NCACHE_MODE_NONE) {
    struct ncache_stats st;

    ncache_get_stats (c->nc, &st);
    if (st.dirty_bytes != 0 || st.dirty_zero_bytes != 0) {
      fail_report (c, "flush_on_stop: reopened with %" PRIu64 " dirty "
                   "byte(s) and %" PRIu64 " dirty zero byte(s)",
                   st.dirty_bytes, st.dirty_zero_bytes);
      return false;
    }
  }
  if (verify_all)
    return verify_range (c, 0, EXPORT_BYTES, "READ(after reopen, full)");
  for (i = 0; i < NR_CHUNKS; i++) {
    if (!c->touched[i])
      continue;
    if (!verify_range (c, i * CHUNK_BYTES, CHUNK_BYTES,
                       "READ(after reopen)"))
      return false;
    c->touched[i] = 0;
  }
  return true;
}

/* test_check_stable's report of one differing sector. */
static void
unstable_sector (void *opaque, const char *what, uint64_t sector,
                 const void *served, const void *other)
{
  struct ctx *c = opaque;
  uint64_t at = sector * TEST_SECTOR_BYTES;
  char a[200], b[200];

  describe_word (served, at, a, sizeof a);
  describe_word (other, at, b, sizeof b);
  fprintf (c->out, "    sector %" PRIu64 " (byte %" PRIu64 "): first "
           "served %s;\n      but %s: %s\n", sector, at, a, what, b);
  print_history (c, at);
}

/* Stop both devices at once in the middle of the background work, then
 * a process kill (kill) or a power loss; reopen and check stability.
 */
bool
crash_reopen (struct ctx *c, bool kill)
{
  struct test_stable_report rep;
  uint64_t tear = c->nr_crashes % 2 ? test_mix64 (c->seed ^ c->nr_reopens)
    | 1 : 0;
  int r;

  c->nr_reopens++;
  c->nr_crashes++;
  record (c, kill ? "CRASH(process kill)" : "CRASH(power loss)", 0, 0, 0,
          0);
  cdev_sim_fail_at_write (c->cd, cdev_sim_nr_writes (c->cd) + 1);
  __atomic_store_n (&c->powered, false, __ATOMIC_RELEASE);
  close_export (c);             /* every write fails: nothing more lands */
  __atomic_store_n (&c->powered, true, __ATOMIC_RELEASE);
  if (kill) {
    cdev_sim_kill (c->cd);
    if ((r = test_store_set_volatile (c->store, true)) < 0) {
      fail_report (c, "test_store_set_volatile: %s", strerror (-r));
      return false;
    }
  }
  else {
    cdev_sim_crash (c->cd, tear);
    test_store_crash (c->store, tear ? test_mix64 (tear) | 1 : 0);
  }
  test_log_clear ();
  if ((r = open_export (c, false)) < 0) {
    fail_report (c, "reopen after the %s failed: %s",
                 kill ? "process kill" : "power loss", strerror (-r));
    return false;
  }
  /* The model becomes what is served now (see RULES). */
  c->verifying = true;
  for (uint64_t pos = 0; pos < EXPORT_BYTES; pos += MAX_IO_BYTES)
    if ((r = ncache_pread (c->nc, c->model + pos, MAX_IO_BYTES, pos, 0)) < 0) {
      c->verifying = false;
      fail_report (c, "reading the export after the %s failed: %s",
                   kill ? "process kill" : "power loss", strerror (-r));
      return false;
    }
  c->verifying = false;
  memset (c->trimmed, 0, EXPORT_BYTES / 8);
  memset (c->touched, 0, NR_CHUNKS);
  r = test_check_stable (c->nc, c->store, EXPORT_BYTES, c->model, true,
                         NULL, NULL, 0, &rep);
  if (r < 0) {
    fail_report (c, "after the %s: %s failed: %s",
                 kill ? "process kill" : "power loss", rep.what,
                 strerror (-r));
    return false;
  }
  if (r > 0) {
    fail_report (c, "after the %s (tear %" PRIu64 "), data served with "
                 "nobody writing CHANGED: %" PRIu64 " sector(s) differ "
                 "between the first read and %s (first: sector %" PRIu64 ")",
                 kill ? "process kill" : "power loss", tear,
                 rep.nr_bad_sectors, rep.what, rep.first_bad_sector);
    test_check_stable (c->nc, c->store, EXPORT_BYTES, c->model, true,
                       unstable_sector, c, 4, &rep);
    return false;
  }
  return true;
}
