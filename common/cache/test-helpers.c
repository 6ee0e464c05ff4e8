/* SPDX-License-Identifier: BSD-3-Clause */
/* test-helpers.c — surviving store and crash model for engine tests.
 *
 * WHAT: the two pieces test-helpers.h declares (the PRNG, the seed and
 * the log capture are the test kit's, common/testkit).
 * WHY: the model test and the crash sweep need the same backing store
 * (one that outlives the export, like a disk outlives the server), the
 * same reproducible randomness, and one precise statement of what a
 * sector may read after a crash.
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
 * THREADS AND LOCKS: the store has one rwlock over its bytes and atomic
 * counters; models are single-threaded.
 * FAILURE: -ENOMEM from allocations; a store request out of range is
 * -EINVAL (the engine must never send one; it is logged).
 * NOT HERE: workloads, byte-exact comparison, reporting.
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

/* ---- 2. the surviving memory store ---- */

/* Volatile mode (test_store_set_volatile): `data` is what reads see,
 * `durable` what survives test_store_crash.  A sector that differs (or
 * may differ) is listed once in unflushed[0 .. nr_unflushed) and has its
 * byte in `listed` set; outside the list data and durable are equal.
 * The power hook (test_store_set_power_fn) makes every request fail
 * while it returns false: the machine lost power, nothing changes.
 */
struct test_store {
  pthread_rwlock_t lock;        /* data, durable, the list */
  unsigned char *data;          /* size_bytes */
  uint64_t size_bytes;
  uint64_t nr_sectors;          /* size_bytes / 512, rounded up */
  char *uri;
  unsigned nr_open;             /* handles; atomic */
  struct test_store_counts counts; /* atomic, relaxed */
  bool is_volatile;             /* under lock */
  unsigned char *durable;       /* size_bytes; volatile mode only */
  unsigned char *listed;        /* per sector: in unflushed[] */
  uint64_t *unflushed;          /* sector numbers; nr_sectors slots */
  uint64_t nr_unflushed;
  test_store_power_fn power;    /* NULL: always on */
  void *power_opaque;
};

struct test_backing {
  struct backing b;             /* first */
  struct test_store *st;
};

#define COUNT(st, field) \
  __atomic_fetch_add (&(st)->counts.field, 1, __ATOMIC_RELAXED)

static struct test_store *
store_of (struct backing *b)
{
  return ((struct test_backing *) b)->st;
}

static int
store_check (struct test_store *st, const char *what, uint64_t offset,
             uint64_t count)
{
  if (range_within (offset, count, st->size_bytes))
    return 0;
  log_error ("test store %s: %s at offset %" PRIu64 " count %" PRIu64
             " is beyond the size %" PRIu64, st->uri, what, offset, count,
             st->size_bytes);
  return -EINVAL;
}

/* False while the power hook says the power is out. */
static bool
powered (struct test_store *st)
{
  test_store_power_fn fn = __atomic_load_n (&st->power, __ATOMIC_ACQUIRE);

  return fn == NULL || fn (st->power_opaque);
}

/* Bytes [offset, offset + count) of data changed (write, zero, trim).
 * Volatile mode: with fua their sectors are durable now, else they are
 * listed as unflushed.  Called with the write lock.
 */
static void
note_change_locked (struct test_store *st, uint64_t offset, uint64_t count,
                    bool fua)
{
  uint64_t s, first, end;

  if (!st->is_volatile || count == 0)
    return;
  first = offset / TEST_SECTOR_BYTES;
  end = (offset + count + TEST_SECTOR_BYTES - 1) / TEST_SECTOR_BYTES;
  if (fua) {
    /* Whole sectors: a sector holds only what data holds now, and a
     * sector surviving whole is one of the outcomes a crash allows.
     */
    uint64_t lo = first * TEST_SECTOR_BYTES;
    uint64_t hi = MIN (end * TEST_SECTOR_BYTES, st->size_bytes);

    memcpy (st->durable + lo, st->data + lo, hi - lo);
    return;                     /* listed ones stay listed: now equal */
  }
  for (s = first; s < end; s++)
    if (!st->listed[s]) {
      st->listed[s] = 1;
      st->unflushed[st->nr_unflushed++] = s;
    }
}

static void
sector_span (const struct test_store *st, uint64_t s, uint64_t *lo,
             uint64_t *len)
{
  *lo = s * TEST_SECTOR_BYTES;
  *len = MIN ((uint64_t) TEST_SECTOR_BYTES, st->size_bytes - *lo);
}

/* A flush: every completed change is durable.  Write lock held. */
static void
make_durable_locked (struct test_store *st)
{
  uint64_t i, lo, len;

  if (!st->is_volatile)
    return;
  for (i = 0; i < st->nr_unflushed; i++) {
    uint64_t s = st->unflushed[i];

    sector_span (st, s, &lo, &len);
    memcpy (st->durable + lo, st->data + lo, len);
    st->listed[s] = 0;
  }
  st->nr_unflushed = 0;
}

static int
store_pread (struct backing *b, void *buf, size_t count, uint64_t offset)
{
  struct test_store *st = store_of (b);
  int r;

  COUNT (st, preads);
  if ((r = store_check (st, "read", offset, count)) < 0)
    return r;
  if (!powered (st))
    return -EIO;
  pthread_rwlock_rdlock (&st->lock);
  memcpy (buf, st->data + offset, count);
  pthread_rwlock_unlock (&st->lock);
  return 0;
}

static int
store_pwrite (struct backing *b, const void *buf, size_t count,
              uint64_t offset, uint32_t flags)
{
  struct test_store *st = store_of (b);
  int r;

  COUNT (st, pwrites);
  if (flags & BACKING_FUA)
    COUNT (st, fua_writes);
  if ((r = store_check (st, "write", offset, count)) < 0)
    return r;
  if (!powered (st))
    return -EIO;
  pthread_rwlock_wrlock (&st->lock);
  memcpy (st->data + offset, buf, count);
  note_change_locked (st, offset, count, flags & BACKING_FUA);
  pthread_rwlock_unlock (&st->lock);
  return 0;
}

static int
store_flush (struct backing *b)
{
  struct test_store *st = store_of (b);

  COUNT (st, flushes);
  if (!powered (st))
    return -EIO;
  pthread_rwlock_wrlock (&st->lock);
  make_durable_locked (st);
  pthread_rwlock_unlock (&st->lock);
  return 0;
}

static void
store_clear (struct test_store *st, uint64_t count, uint64_t offset,
             uint32_t flags)
{
  pthread_rwlock_wrlock (&st->lock);
  memset (st->data + offset, 0, count);
  note_change_locked (st, offset, count, flags & BACKING_FUA);
  pthread_rwlock_unlock (&st->lock);
}

static int
store_trim (struct backing *b, uint64_t count, uint64_t offset,
            uint32_t flags)
{
  struct test_store *st = store_of (b);
  int r;

  COUNT (st, trims);
  if ((r = store_check (st, "trim", offset, count)) < 0)
    return r;
  if (!powered (st))
    return -EIO;
  store_clear (st, count, offset, flags);
  return 0;
}

static int
store_zero (struct backing *b, uint64_t count, uint64_t offset,
            uint32_t flags)
{
  struct test_store *st = store_of (b);
  int r;

  COUNT (st, zeroes);
  if ((r = store_check (st, "zero", offset, count)) < 0)
    return r;
  if (!powered (st))
    return -EIO;
  store_clear (st, count, offset, flags);
  return 0;
}

static int
store_extents (struct backing *b, uint64_t count, uint64_t offset,
               backing_extent_fn fn, void *opaque)
{
  struct test_store *st = store_of (b);
  int r;

  COUNT (st, extents);
  if ((r = store_check (st, "extents", offset, count)) < 0)
    return r;
  if (!powered (st))
    return -EIO;
  if (count == 0)
    return 0;
  r = fn (opaque, offset, count, 0);
  return r < 0 ? r : 0;
}

static void
store_close (struct backing *b)
{
  struct test_backing *tb = (struct test_backing *) b;

  __atomic_fetch_sub (&tb->st->nr_open, 1, __ATOMIC_RELAXED);
  free (tb->b.uri);
  free (tb);
}

static const struct backing_ops store_ops = {
  .name = "test-store",
  .pread = store_pread,
  .pwrite = store_pwrite,
  .flush = store_flush,
  .trim = store_trim,
  .zero = store_zero,
  .extents = store_extents,
  .close = store_close,
};

int
test_store_create (uint64_t size_bytes, const char *uri,
                   struct test_store **out)
{
  struct test_store *st;
  int r;

  if (size_bytes == 0 || size_bytes > SIZE_MAX / 2 || uri == NULL)
    return -EINVAL;
  st = calloc (1, sizeof *st);
  if (st == NULL)
    return -ENOMEM;
  if ((r = pthread_rwlock_init (&st->lock, NULL)) != 0) {
    free (st);
    return -r;
  }
  st->size_bytes = size_bytes;
  st->nr_sectors = (size_bytes + TEST_SECTOR_BYTES - 1) / TEST_SECTOR_BYTES;
  st->data = calloc (1, size_bytes);
  st->uri = strdup (uri);
  if (st->data == NULL || st->uri == NULL) {
    test_store_destroy (st);
    return -ENOMEM;
  }
  *out = st;
  return 0;
}

void
test_store_destroy (struct test_store *st)
{
  if (st == NULL)
    return;
  pthread_rwlock_destroy (&st->lock);
  free (st->data);
  free (st->durable);
  free (st->listed);
  free (st->unflushed);
  free (st->uri);
  free (st);
}

int
test_store_open (struct test_store *st, struct backing **out)
{
  struct test_backing *tb = calloc (1, sizeof *tb);

  if (tb == NULL)
    return -ENOMEM;
  tb->b.uri = strdup (st->uri);
  if (tb->b.uri == NULL) {
    free (tb);
    return -ENOMEM;
  }
  tb->b.ops = &store_ops;
  tb->b.size_bytes = st->size_bytes;
  tb->b.readonly = false;
  tb->b.can_trim = true;
  tb->b.can_zero = true;
  tb->b.can_fast_zero = true;
  tb->b.can_extents = false;    /* one data extent: no real information */
  tb->b.is_block_device = false;
  tb->st = st;
  __atomic_fetch_add (&st->nr_open, 1, __ATOMIC_RELAXED);
  *out = &tb->b;
  return 0;
}

unsigned char *
test_store_data (struct test_store *st)
{
  return st->data;
}

uint64_t
test_store_size (const struct test_store *st)
{
  return st->size_bytes;
}

unsigned
test_store_nr_open (struct test_store *st)
{
  return __atomic_load_n (&st->nr_open, __ATOMIC_RELAXED);
}

int
test_store_set_volatile (struct test_store *st, bool on)
{
  int r = 0;

  pthread_rwlock_wrlock (&st->lock);
  if (on && st->durable == NULL) {
    st->durable = malloc (st->size_bytes);
    st->listed = calloc (st->nr_sectors, 1);
    st->unflushed = calloc (st->nr_sectors, sizeof *st->unflushed);
    if (st->durable == NULL || st->listed == NULL || st->unflushed == NULL) {
      free (st->durable);
      free (st->listed);
      free (st->unflushed);
      st->durable = st->listed = NULL;
      st->unflushed = NULL;
      r = -ENOMEM;
      goto out;
    }
  }
  if (st->durable != NULL) {
    /* Whatever the bytes are now is durable (set-up writes included). */
    memcpy (st->durable, st->data, st->size_bytes);
    memset (st->listed, 0, st->nr_sectors);
    st->nr_unflushed = 0;
  }
  st->is_volatile = on;
 out:
  pthread_rwlock_unlock (&st->lock);
  return r;
}

void
test_store_crash (struct test_store *st, uint64_t tear_seed)
{
  uint64_t i, lo, len;

  pthread_rwlock_wrlock (&st->lock);
  for (i = 0; st->is_volatile && i < st->nr_unflushed; i++) {
    uint64_t s = st->unflushed[i];
    /* Per sector, not per list position: the list order depends on
     * thread timing, the outcome of a sector must not.
     */
    bool survives = tear_seed != 0 &&
      (test_mix64 (tear_seed ^ (s * UINT64_C (0x9e3779b97f4a7c15))) & 1);

    sector_span (st, s, &lo, &len);
    if (survives)
      memcpy (st->durable + lo, st->data + lo, len);
    else
      memcpy (st->data + lo, st->durable + lo, len);
    st->listed[s] = 0;
  }
  st->nr_unflushed = 0;
  pthread_rwlock_unlock (&st->lock);
}

uint64_t
test_store_nr_unflushed (struct test_store *st)
{
  uint64_t n;

  pthread_rwlock_rdlock (&st->lock);
  n = st->nr_unflushed;
  pthread_rwlock_unlock (&st->lock);
  return n;
}

void
test_store_set_power_fn (struct test_store *st, test_store_power_fn fn,
                         void *opaque)
{
  /* Opaque first, so a reader that sees fn sees its opaque. */
  __atomic_store_n (&st->power, NULL, __ATOMIC_RELEASE);
  st->power_opaque = opaque;
  __atomic_store_n (&st->power, fn, __ATOMIC_RELEASE);
}

void
test_store_get_counts (struct test_store *st, struct test_store_counts *c)
{
  c->preads = __atomic_load_n (&st->counts.preads, __ATOMIC_RELAXED);
  c->pwrites = __atomic_load_n (&st->counts.pwrites, __ATOMIC_RELAXED);
  c->fua_writes = __atomic_load_n (&st->counts.fua_writes, __ATOMIC_RELAXED);
  c->flushes = __atomic_load_n (&st->counts.flushes, __ATOMIC_RELAXED);
  c->trims = __atomic_load_n (&st->counts.trims, __ATOMIC_RELAXED);
  c->zeroes = __atomic_load_n (&st->counts.zeroes, __ATOMIC_RELAXED);
  c->extents = __atomic_load_n (&st->counts.extents, __ATOMIC_RELAXED);
}

/* ---- nbdcache:state scan ---- */

static int
dirty_cb (void *opaque, uint64_t offset, uint64_t length, uint32_t flags)
{
  struct test_dirty *d = opaque;

  if (!(flags & NCACHE_STATE_DIRTY))
    return 0;
  if (d->bytes + d->zero_bytes == 0) {
    d->first = offset;
    d->first_len = length;
    d->first_flags = flags;
  }
  if (flags & NCACHE_STATE_ZERO)
    d->zero_bytes += length;
  else
    d->bytes += length;
  return 0;
}

int
test_scan_dirty (struct ncache *nc, uint64_t size_bytes,
                 struct test_dirty *out)
{
  memset (out, 0, sizeof *out);
  return ncache_state_extents (nc, size_bytes, 0, 0, dirty_cb, out);
}

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

/* ---- the store's self-test ---- */

#define ST_SECTORS 32                           /* plus a 100-byte tail */
#define ST_BYTES (ST_SECTORS * TEST_SECTOR_BYTES + 100)

/* Every byte of sector s (the tail: its 100 bytes) is `byte`. */
static bool
st_sector_is (struct test_store *st, uint64_t s, unsigned char byte)
{
  const unsigned char *p = test_store_data (st) + s * TEST_SECTOR_BYTES;
  uint64_t i, len = MIN ((uint64_t) TEST_SECTOR_BYTES,
                         test_store_size (st) - s * TEST_SECTOR_BYTES);

  for (i = 0; i < len; i++)
    if (p[i] != byte)
      return false;
  return true;
}

static int
st_expect (struct test_store *st, const char *step, uint64_t s,
           unsigned char byte)
{
  if (st_sector_is (st, s, byte))
    return 0;
  fprintf (stderr, "store self-test '%s': sector %" PRIu64 " is not all "
           "0x%02x (first byte 0x%02x)\n", step, s, byte,
           test_store_data (st)[s * TEST_SECTOR_BYTES]);
  return -1;
}

static int
st_write (struct backing *b, unsigned char byte, uint64_t offset,
          uint64_t count, uint32_t flags)
{
  unsigned char buf[ST_BYTES];

  memset (buf, byte, count);
  return backing_pwrite (b, buf, count, offset, flags);
}

static bool
st_power (void *opaque)
{
  return *(const bool *) opaque;
}

/* The sectors of [6, ST_SECTORS) that a torn crash kept (bit per sector). */
static uint64_t
st_torn_outcome (struct test_store *st, struct backing *b, bool reverse,
                 uint64_t seed)
{
  uint64_t s, kept = 0;

  memset (test_store_data (st) + 6 * TEST_SECTOR_BYTES, 0x11,
          (ST_SECTORS - 6) * TEST_SECTOR_BYTES);
  test_store_set_volatile (st, true);
  for (s = 6; s < ST_SECTORS; s++) {
    uint64_t x = reverse ? ST_SECTORS - 1 - (s - 6) : s;

    st_write (b, 0x88, x * TEST_SECTOR_BYTES, TEST_SECTOR_BYTES, 0);
  }
  test_store_crash (st, seed);
  for (s = 6; s < ST_SECTORS; s++) {
    if (st_sector_is (st, s, 0x88))
      kept |= UINT64_C (1) << s;
    else if (!st_sector_is (st, s, 0x11))
      return UINT64_MAX;                        /* neither: a torn sector */
  }
  return kept;
}

int
test_store_self_test (void)
{
  struct test_store *st = NULL;
  struct backing *b = NULL;
  unsigned char buf[TEST_SECTOR_BYTES];
  bool power = true;
  uint64_t k1, k2, k3;
  int bad = 0, r;

  if (test_store_create (ST_BYTES, "test-store:self-test", &st) < 0 ||
      test_store_open (st, &b) < 0) {
    test_store_destroy (st);
    return -1;
  }
  memset (test_store_data (st), 0x11, ST_BYTES);
  if (test_store_set_volatile (st, true) < 0)
    goto fail;

  /* Changes are visible at once; only FUA ones are durable. */
  st_write (b, 0x22, 0, 2 * TEST_SECTOR_BYTES, 0);
  st_write (b, 0x33, 2 * TEST_SECTOR_BYTES, TEST_SECTOR_BYTES, BACKING_FUA);
  backing_zero (b, TEST_SECTOR_BYTES, 3 * TEST_SECTOR_BYTES, 0);
  backing_trim (b, TEST_SECTOR_BYTES, 4 * TEST_SECTOR_BYTES, BACKING_FUA);
  st_write (b, 0x44, 5 * TEST_SECTOR_BYTES + 10, 20, 0);
  st_write (b, 0x55, ST_SECTORS * TEST_SECTOR_BYTES, 100, 0);
  backing_pread (b, buf, TEST_SECTOR_BYTES, 0);
  if (buf[0] != 0x22 || buf[TEST_SECTOR_BYTES - 1] != 0x22 ||
      !st_sector_is (st, 3, 0) || test_store_data (st)[5 * 512 + 10] != 0x44 ||
      !st_sector_is (st, ST_SECTORS, 0x55)) {
    fprintf (stderr, "store self-test: completed changes are not visible\n");
    bad = -1;
  }
  if (test_store_nr_unflushed (st) != 5) {
    fprintf (stderr, "store self-test: %" PRIu64 " unflushed sectors, "
             "expected 5 (0, 1, 3, 5 and the tail)\n",
             test_store_nr_unflushed (st));
    bad = -1;
  }
  /* A crash that tears nothing loses every unflushed change, whole. */
  test_store_crash (st, 0);
  bad |= st_expect (st, "lost write", 0, 0x11);
  bad |= st_expect (st, "lost write", 1, 0x11);
  bad |= st_expect (st, "fua write", 2, 0x33);
  bad |= st_expect (st, "lost zero", 3, 0x11);
  bad |= st_expect (st, "fua trim", 4, 0);
  bad |= st_expect (st, "lost partial write", 5, 0x11);
  bad |= st_expect (st, "lost tail write", ST_SECTORS, 0x11);
  if (test_store_nr_unflushed (st) != 0) {
    fprintf (stderr, "store self-test: unflushed sectors after a crash\n");
    bad = -1;
  }

  /* A flush makes what completed before it durable, not what follows. */
  st_write (b, 0x66, 0, TEST_SECTOR_BYTES, 0);
  backing_flush (b);
  st_write (b, 0x77, TEST_SECTOR_BYTES, TEST_SECTOR_BYTES, 0);
  test_store_crash (st, 0);
  bad |= st_expect (st, "flushed write", 0, 0x66);
  bad |= st_expect (st, "write after the flush", 1, 0x11);

  /* A torn crash: each sector old or new, whole; both happen; the same
   * seed gives the same outcome whatever the order of the writes.
   */
  k1 = st_torn_outcome (st, b, false, 12345);
  k2 = st_torn_outcome (st, b, true, 12345);
  k3 = st_torn_outcome (st, b, false, 999);
  if (k1 == UINT64_MAX || k1 == 0 ||
      k1 == (((UINT64_C (1) << ST_SECTORS) - 1) & ~UINT64_C (0x3f))) {
    fprintf (stderr, "store self-test: a torn crash kept 0x%" PRIx64
             " (wanted some sectors old and some new, each whole)\n", k1);
    bad = -1;
  }
  if (k1 != k2) {
    fprintf (stderr, "store self-test: the tear depends on the write order "
             "(0x%" PRIx64 " vs 0x%" PRIx64 ")\n", k1, k2);
    bad = -1;
  }
  if (k1 == k3) {
    fprintf (stderr, "store self-test: two tear seeds gave the same tear\n");
    bad = -1;
  }

  /* Power off: every request fails and changes nothing. */
  test_store_set_volatile (st, true);
  backing_close (b);            /* the hook is set with no handle open */
  test_store_set_power_fn (st, st_power, &power);
  b = NULL;
  if (test_store_open (st, &b) < 0)
    goto fail;
  power = false;
  if ((r = st_write (b, 0x99, 0, TEST_SECTOR_BYTES, BACKING_FUA)) != -EIO ||
      backing_flush (b) != -EIO ||
      backing_pread (b, buf, TEST_SECTOR_BYTES, 0) != -EIO ||
      backing_zero (b, TEST_SECTOR_BYTES, 0, 0) != -EIO ||
      !st_sector_is (st, 0, 0x66)) {
    fprintf (stderr, "store self-test: a request without power did not "
             "fail with -EIO, or changed the bytes\n");
    bad = -1;
  }
  power = true;
  if (st_write (b, 0x99, 0, TEST_SECTOR_BYTES, 0) != 0) {
    fprintf (stderr, "store self-test: power back, a write failed\n");
    bad = -1;
  }

  /* Volatile off: everything is durable. */
  test_store_set_volatile (st, false);
  st_write (b, 0xaa, TEST_SECTOR_BYTES, TEST_SECTOR_BYTES, 0);
  test_store_crash (st, 0);
  bad |= st_expect (st, "volatile off, before", 0, 0x99);
  bad |= st_expect (st, "volatile off, after", 1, 0xaa);

  backing_close (b);
  test_store_destroy (st);
  return bad;

 fail:
  backing_close (b);
  test_store_destroy (st);
  fprintf (stderr, "store self-test: out of memory\n");
  return -1;
}
