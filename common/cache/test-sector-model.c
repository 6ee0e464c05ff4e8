/* SPDX-License-Identifier: BSD-3-Clause */
/* test-sector-model.c — the per-sector crash model for engine tests.
 *
 * WHAT: part 3 of test-helpers.h: sector patterns and the model of what
 * each sector may read, live and after a crash, and its self-test.
 * WHY: the model test and the crash sweep need one precise statement of
 * what a sector may read after a crash.
 *
 * THE CRASH MODEL (the rules; test-crash.h applies them to a workload):
 * Per 512-byte sector, three sets of value ids and three flags:
 *   cur     what a read may return now (no crash);
 *   durable what survives a crash for sure — the sector reads one of these
 *           or one of `maybe`;
 *   maybe   values that may have reached stable storage since the last
 *           durability point (acknowledged but not yet durable writes, and
 *           every failed op's value);
 *   ctrim / dtrim / mtrim  a trim is in cur / durable / maybe: the sector
 *           may then also read any value ever written to it, zeros, or
 *           the initial content ("trimmed data is old data or zeros").
 * Start: cur = durable = {INIT}, maybe = {}, no trims.
 * Rules, op by op, in the order the ops returned (single-threaded):
 *   R1 write/zero acked, no FUA:  cur := {v}, ctrim := no; maybe += v.
 *   R2 write/zero acked with FUA: cur := durable := {v}; maybe := {};
 *      all trim flags off.  (Its own value is durable; every earlier
 *      value of those sectors, durable or not, is superseded: an engine
 *      that lets an older write reappear after an acknowledged FUA write
 *      is broken.)
 *   R3 write/zero failed (FUA or not): cur += v; maybe += v.  A failed op
 *      may have happened in full, in part (per sector) or not at all.
 *   R4 trim acked or failed: ctrim := mtrim := yes; with FUA and acked
 *      also dtrim := yes.
 *   R5 flush acked: for every sector durable := cur, dtrim := ctrim,
 *      maybe := {}, mtrim := no.  Whatever a failed op before the flush
 *      did is now durable, so its value stays possible through cur.
 *   R6 flush failed: nothing changes (what it made durable was already
 *      possible).
 *   R7 reads change nothing; nor do drains and GC passes (workload-only
 *      kinds: they promise no durability of their own to the model).
 *   A clean close that returned (device never died) counts as R5.
 * After a crash a sector must read v with: v in durable or maybe, or (any
 * trim flag among dtrim, mtrim) v is INIT, ZERO or a value written to
 * this sector.  Live (no crash) reads must be in cur, or ctrim and the
 * same wildcard.  A pattern whose sector number is not the sector read
 * is never allowed (misplaced data), nor garbage.
 * R5 is applied lazily: a flush bumps an epoch, and a sector catches up
 * (durable := cur …) the next time it is touched or read from the model.
 *
 * INVARIANTS: a set never holds the same id twice; cur is never empty.
 * THREADS AND LOCKS: a model is single-threaded.
 * FAILURE: -ENOMEM from allocations.
 * NOT HERE: the store (test-store.c), workloads, byte-exact comparison,
 * reporting.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backing.h"
#include "cache.h"
#include "compiler.h"
#include "log.h"
#include "test-helpers.h"
#include "testkit.h"
/* ---- 3. sector patterns ---- */

#define VALUE_TAG  UINT64_C (0x4e43560000000000) /* "NCV" in the top bytes */
#define SECTOR_TAG UINT64_C (0x5345430000000000) /* "SEC" */
#define TAG_MASK   UINT64_C (0xffffff0000000000)
#define PAIRS_PER_SECTOR (TEST_SECTOR_BYTES / 16)

static inline void
put_le64 (unsigned char *p, uint64_t v)
{
  int i;

  for (i = 0; i < 8; i++)
    p[i] = (unsigned char) (v >> (8 * i));
}

static inline uint64_t
get_le64 (const unsigned char *p)
{
  uint64_t v = 0;
  int i;

  for (i = 7; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

void
test_sector_fill (void *buf, uint32_t value, uint64_t sector)
{
  unsigned char *p = buf;
  unsigned i;

  put_le64 (p, VALUE_TAG | value);
  put_le64 (p + 8, SECTOR_TAG | (sector & ~TAG_MASK));
  for (i = 1; i < PAIRS_PER_SECTOR; i++)
    memcpy (p + 16 * i, p, 16);
}

uint32_t
test_sector_decode (const void *buf, uint64_t *sector_out)
{
  const unsigned char *p = buf;
  uint64_t w0 = get_le64 (p), w1 = get_le64 (p + 8), a, b;
  unsigned i;

  if (w0 == 0 && w1 == 0) {
    for (i = 16; i < TEST_SECTOR_BYTES; i += 8) {
      memcpy (&a, p + i, 8);
      if (a != 0)
        return TEST_VALUE_GARBAGE;
    }
    return TEST_VALUE_ZERO;
  }
  memcpy (&a, p, 8);
  memcpy (&b, p + 8, 8);
  for (i = 16; i < TEST_SECTOR_BYTES; i += 16) {
    uint64_t x, y;

    memcpy (&x, p + i, 8);
    memcpy (&y, p + i + 8, 8);
    if (x != a || y != b)
      return TEST_VALUE_GARBAGE;
  }
  if ((w0 & TAG_MASK) != VALUE_TAG || (w1 & TAG_MASK) != SECTOR_TAG ||
      (w0 & ~TAG_MASK) > UINT32_MAX - 1 || (w0 & ~TAG_MASK) == TEST_VALUE_ZERO)
    return TEST_VALUE_GARBAGE;
  *sector_out = w1 & ~TAG_MASK;
  return (uint32_t) (w0 & ~TAG_MASK);
}

/* ---- 3. the model ---- */

#define INLINE_IDS 2

/* A small set of value ids: inline up to INLINE_IDS, then on the heap. */
struct idset {
  uint32_t n;
  uint32_t cap;                 /* 0: inline */
  uint32_t *heap;
  uint32_t inl[INLINE_IDS];
};

struct sector_state {
  struct idset cur, durable, maybe;
  uint32_t epoch;               /* flush epoch this sector has caught up with */
  bool ctrim, dtrim, mtrim;
};

struct test_model {
  uint64_t nr_sectors;
  uint32_t epoch;               /* successful flushes so far */
  struct sector_state *s;
};

static const uint32_t *
ids (const struct idset *set)
{
  return set->cap ? set->heap : set->inl;
}

static bool
idset_has (const struct idset *set, uint32_t v)
{
  const uint32_t *p = ids (set);
  uint32_t i;

  for (i = 0; i < set->n; i++)
    if (p[i] == v)
      return true;
  return false;
}

static int
idset_add (struct idset *set, uint32_t v)
{
  uint32_t *p;

  if (idset_has (set, v))
    return 0;
  if (set->cap == 0 && set->n < INLINE_IDS) {
    set->inl[set->n++] = v;
    return 0;
  }
  if (set->cap == 0 || set->n == set->cap) {
    uint32_t ncap = set->cap ? set->cap * 2 : INLINE_IDS * 4;

    p = realloc (set->heap, ncap * sizeof *p);
    if (p == NULL)
      return -ENOMEM;
    if (set->cap == 0)
      memcpy (p, set->inl, set->n * sizeof *p);
    set->heap = p;
    set->cap = ncap;
  }
  set->heap[set->n++] = v;
  return 0;
}

static void
idset_clear (struct idset *set)
{
  set->n = 0;
}

static int
idset_set1 (struct idset *set, uint32_t v)
{
  set->n = 0;
  return idset_add (set, v);
}

static int
idset_copy (struct idset *dst, const struct idset *src)
{
  const uint32_t *p = ids (src);
  uint32_t i;
  int r;

  dst->n = 0;
  for (i = 0; i < src->n; i++)
    if ((r = idset_add (dst, p[i])) < 0)
      return r;
  return 0;
}

static void
idset_free (struct idset *set)
{
  free (set->heap);
  memset (set, 0, sizeof *set);
}

static void
sector_init (struct sector_state *ss)
{
  idset_free (&ss->cur);
  idset_free (&ss->durable);
  idset_free (&ss->maybe);
  memset (ss, 0, sizeof *ss);
  ss->cur.n = ss->durable.n = 1;
  ss->cur.inl[0] = ss->durable.inl[0] = TEST_VALUE_INIT;
}

int
test_model_create (uint64_t nr_sectors, struct test_model **out)
{
  struct test_model *m = calloc (1, sizeof *m);

  if (m == NULL)
    return -ENOMEM;
  m->nr_sectors = nr_sectors;
  if (nr_sectors > SIZE_MAX / sizeof *m->s ||
      (m->s = calloc (nr_sectors ? nr_sectors : 1, sizeof *m->s)) == NULL) {
    free (m);
    return -ENOMEM;
  }
  test_model_reset (m);
  *out = m;
  return 0;
}

void
test_model_destroy (struct test_model *m)
{
  uint64_t i;

  if (m == NULL)
    return;
  for (i = 0; i < m->nr_sectors; i++) {
    free (m->s[i].cur.heap);
    free (m->s[i].durable.heap);
    free (m->s[i].maybe.heap);
  }
  free (m->s);
  free (m);
}

void
test_model_reset (struct test_model *m)
{
  uint64_t i;

  m->epoch = 0;
  for (i = 0; i < m->nr_sectors; i++)
    sector_init (&m->s[i]);
}

uint64_t
test_model_nr_sectors (const struct test_model *m)
{
  return m->nr_sectors;
}

/* Apply the flushes this sector has not seen yet (R5, lazily). */
static int
catch_up (struct test_model *m, struct sector_state *ss)
{
  int r;

  if (ss->epoch == m->epoch)
    return 0;
  if ((r = idset_copy (&ss->durable, &ss->cur)) < 0)
    return r;
  ss->dtrim = ss->ctrim;
  idset_clear (&ss->maybe);
  ss->mtrim = false;
  ss->epoch = m->epoch;
  return 0;
}

static int
apply_sector (struct test_model *m, struct sector_state *ss,
              enum test_op_kind kind, uint32_t value, bool acked, bool fua)
{
  int r;

  if ((r = catch_up (m, ss)) < 0)
    return r;
  switch (kind) {
  case TEST_OP_WRITE:
  case TEST_OP_ZERO:
    if (!acked) {                               /* R3 */
      if ((r = idset_add (&ss->cur, value)) < 0 ||
          (r = idset_add (&ss->maybe, value)) < 0)
        return r;
    }
    else if (!fua) {                            /* R1 */
      if ((r = idset_set1 (&ss->cur, value)) < 0 ||
          (r = idset_add (&ss->maybe, value)) < 0)
        return r;
      ss->ctrim = false;
    }
    else {                                      /* R2 */
      if ((r = idset_set1 (&ss->cur, value)) < 0 ||
          (r = idset_set1 (&ss->durable, value)) < 0)
        return r;
      idset_clear (&ss->maybe);
      ss->ctrim = ss->dtrim = ss->mtrim = false;
    }
    return 0;
  case TEST_OP_TRIM:                            /* R4 */
    ss->ctrim = ss->mtrim = true;
    if (acked && fua)
      ss->dtrim = true;
    return 0;
  case TEST_OP_FLUSH:
  case TEST_OP_READ:
  case TEST_OP_DRAIN:
  case TEST_OP_GC:
    return 0;
  }
  return 0;
}

int
test_model_apply (struct test_model *m, enum test_op_kind kind,
                  uint32_t value, uint64_t first, uint64_t n,
                  bool acked, bool fua)
{
  uint64_t i;
  int r;

  if (kind == TEST_OP_FLUSH) {                  /* R5 / R6 */
    if (acked)
      m->epoch++;
    return 0;
  }
  if (kind == TEST_OP_READ || kind == TEST_OP_DRAIN ||
      kind == TEST_OP_GC)                       /* R7 */
    return 0;
  if (kind == TEST_OP_ZERO)
    value = TEST_VALUE_ZERO;
  if (first > m->nr_sectors || n > m->nr_sectors - first)
    return -EINVAL;
  for (i = first; i < first + n; i++)
    if ((r = apply_sector (m, &m->s[i], kind, value, acked, fua)) < 0)
      return r;
  return 0;
}

bool
test_model_allows (struct test_model *m, uint64_t sector, uint32_t value,
                   uint64_t from_sector, bool live,
                   test_written_fn written_here, void *opaque)
{
  struct sector_state *ss;
  bool trimmed;

  if (sector >= m->nr_sectors || value == TEST_VALUE_GARBAGE)
    return false;
  if (value != TEST_VALUE_ZERO && from_sector != sector)
    return false;
  ss = &m->s[sector];
  if (catch_up (m, ss) < 0)
    return false;
  if (live) {
    if (idset_has (&ss->cur, value))
      return true;
    trimmed = ss->ctrim;
  }
  else {
    if (idset_has (&ss->durable, value) || idset_has (&ss->maybe, value))
      return true;
    trimmed = ss->dtrim || ss->mtrim;
  }
  if (!trimmed)
    return false;
  return value == TEST_VALUE_INIT || value == TEST_VALUE_ZERO ||
    (written_here != NULL && written_here (opaque, value, sector));
}

void
test_model_view (struct test_model *m, uint64_t sector, bool live,
                 struct test_sector_view *view)
{
  struct sector_state *ss;

  memset (view, 0, sizeof *view);
  if (sector >= m->nr_sectors)
    return;
  ss = &m->s[sector];
  (void) catch_up (m, ss);
  if (live) {
    view->durable = ids (&ss->cur);
    view->nr_durable = ss->cur.n;
    view->trimmed = ss->ctrim;
  }
  else {
    view->durable = ids (&ss->durable);
    view->nr_durable = ss->durable.n;
    view->maybe = ids (&ss->maybe);
    view->nr_maybe = ss->maybe.n;
    view->trimmed = ss->dtrim || ss->mtrim;
  }
}

/* ---- the model's self-test ---- */

/* In the self-test, op value v "wrote" sectors [0, 4). */
static bool
self_written (void *opaque, uint32_t value, uint64_t sector)
{
  return value >= TEST_VALUE_FIRST_OP && sector < 4;
}

struct expect {
  uint64_t sector;
  uint32_t value;
  bool live;
  bool allowed;
};

static int
self_check (struct test_model *m, const char *name,
            const struct expect *e, size_t n)
{
  size_t i;
  int bad = 0;

  for (i = 0; i < n; i++) {
    bool got = test_model_allows (m, e[i].sector, e[i].value, e[i].sector,
                                  e[i].live, self_written, NULL);
    if (got != e[i].allowed) {
      fprintf (stderr, "model self-test '%s': sector %" PRIu64 " value %"
               PRIu32 " %s: allowed=%d, expected %d\n", name, e[i].sector,
               e[i].value, e[i].live ? "live" : "after crash", got,
               e[i].allowed);
      bad = -1;
    }
  }
  return bad;
}

#define V(k) test_value_of_op (k)
#define CHECK(name, ...)                                                \
  do {                                                                  \
    const struct expect e_[] = { __VA_ARGS__ };                         \
    if (self_check (m, name, e_, ARRAY_SIZE (e_)) < 0)                  \
      bad = -1;                                                         \
  } while (0)

int
test_model_self_test (void)
{
  struct test_model *m;
  int bad = 0;

  if (test_model_create (16, &m) < 0)
    return -1;

  /* Unflushed acked write: old or new after a crash, new live. */
  test_model_apply (m, TEST_OP_WRITE, V (1), 0, 2, true, false);
  CHECK ("unflushed write",
         { 0, TEST_VALUE_INIT, false, true }, { 0, V (1), false, true },
         { 0, TEST_VALUE_INIT, true, false }, { 0, V (1), true, true },
         { 0, TEST_VALUE_ZERO, false, false }, { 2, V (1), false, false },
         { 0, TEST_VALUE_GARBAGE, false, false });
  /* A flush makes it the only answer. */
  test_model_apply (m, TEST_OP_FLUSH, 0, 0, 0, true, false);
  CHECK ("flushed write",
         { 0, TEST_VALUE_INIT, false, false }, { 1, V (1), false, true },
         { 2, TEST_VALUE_INIT, false, true });
  /* A failed flush changes nothing. */
  test_model_apply (m, TEST_OP_WRITE, V (2), 0, 1, true, false);
  test_model_apply (m, TEST_OP_FLUSH, 0, 0, 0, false, false);
  CHECK ("failed flush",
         { 0, V (1), false, true }, { 0, V (2), false, true },
         { 0, V (1), true, false }, { 0, TEST_VALUE_INIT, false, false });
  /* A failed write is possible live and after a crash; a flush after it
   * keeps both possible.
   */
  test_model_apply (m, TEST_OP_WRITE, V (3), 0, 1, false, false);
  CHECK ("failed write",
         { 0, V (2), true, true }, { 0, V (3), true, true },
         { 0, V (1), true, false }, { 0, V (3), false, true });
  test_model_apply (m, TEST_OP_FLUSH, 0, 0, 0, true, false);
  CHECK ("failed write, flushed",
         { 0, V (2), false, true }, { 0, V (3), false, true },
         { 0, V (1), false, false });
  /* An acked FUA write supersedes everything before it. */
  test_model_apply (m, TEST_OP_WRITE, V (4), 0, 1, true, true);
  CHECK ("fua write",
         { 0, V (4), false, true }, { 0, V (2), false, false },
         { 0, V (3), false, false }, { 0, V (3), true, false });
  /* Zeros: a value like any other. */
  test_model_apply (m, TEST_OP_ZERO, 0, 1, 1, true, false);
  CHECK ("unflushed zero",
         { 1, TEST_VALUE_ZERO, false, true }, { 1, V (1), false, true },
         { 1, V (1), true, false }, { 1, TEST_VALUE_ZERO, true, true });
  /* Trim: any value ever written there, zeros or the initial content;
   * never a value that was never written to the sector.
   */
  test_model_apply (m, TEST_OP_TRIM, 0, 2, 3, true, false);
  CHECK ("trim",
         { 2, TEST_VALUE_INIT, false, true }, { 2, V (7), false, true },
         { 2, TEST_VALUE_ZERO, true, true }, { 4, V (7), false, false },
         { 4, TEST_VALUE_ZERO, false, true });
  /* A flushed write after a trim ends the wildcard. */
  test_model_apply (m, TEST_OP_WRITE, V (8), 2, 1, true, false);
  CHECK ("write after trim, unflushed",
         { 2, V (7), false, true }, { 2, V (7), true, false });
  test_model_apply (m, TEST_OP_FLUSH, 0, 0, 0, true, false);
  CHECK ("write after trim, flushed",
         { 2, V (8), false, true }, { 2, V (7), false, false },
         { 2, TEST_VALUE_INIT, false, false },
         { 3, TEST_VALUE_ZERO, false, true });
  /* Misplaced data is never allowed, even in a trimmed sector. */
  if (test_model_allows (m, 3, V (8), 2, false, self_written, NULL)) {
    fprintf (stderr, "model self-test: misplaced sector allowed\n");
    bad = -1;
  }
  /* Reset really resets. */
  test_model_reset (m);
  CHECK ("reset", { 0, TEST_VALUE_INIT, false, true },
         { 0, V (4), false, false }, { 2, TEST_VALUE_ZERO, false, false });

  test_model_destroy (m);
  return bad;
}
