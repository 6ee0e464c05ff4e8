/* SPDX-License-Identifier: BSD-3-Clause */
/* test-store.c — the surviving memory store for engine tests.
 *
 * WHAT: part 2 of test-helpers.h: a memory backing store that outlives
 * the export (like a disk outlives the server), its volatile mode (a disk
 * with a write cache: test_store_crash settles unflushed sectors), the
 * power hook, the nbdcache:state scan, and the store's self-test.
 * WHY: the model test and the crash sweep reopen exports on the same
 * bytes after a crash.
 * INVARIANTS: outside the unflushed list, data and durable are equal.
 * THREADS AND LOCKS: one rwlock over the bytes and the list; atomic
 * counters.
 * FAILURE: -ENOMEM from allocations; a request out of range is -EINVAL
 * (the engine must never send one; it is logged).
 * NOT HERE: the crash model (test-sector-model.c).
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
#include "invariant.h"
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
  ASSERT_WRLOCKED (&st->lock);
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
  ASSERT_WRLOCKED (&st->lock);
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
test_scan_dirty (struct ncache_export *nc, uint64_t size_bytes,
                 struct test_dirty *out)
{
  memset (out, 0, sizeof *out);
  return ncache_state_extents (nc, size_bytes, 0, 0, dirty_cb, out);
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
