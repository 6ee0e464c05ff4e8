/* SPDX-License-Identifier: BSD-3-Clause */
/* memory.c — a sparse in-memory backing store, for tests.
 *
 * WHAT: the backing ops (backing.h) over a two-level page table of 4 KiB
 * pages.  A page exists only while it holds a non-zero byte: writes of
 * zeros to a missing page allocate nothing, and trim, zero and writes
 * that leave a page all zero free it.  Extents therefore report exactly
 * the non-zero pages as data and everything else as HOLE|ZERO.
 * WHY: engine and server tests need a fast, deterministic store with real
 * hole reporting and no files to clean up; it is also the reference the
 * fault-injecting driver wraps.
 *
 * INVARIANTS:
 * - page_bytes = 4096; a second-level table covers PAGES_PER_TABLE pages
 *   and exists only while at least one of its pages does (n_pages counts
 *   them).
 * - A present page is never all zero after an op returns.
 * - Bytes past size_bytes in the last page are always zero.
 * - trim behaves like zero with MAY_TRIM (always deallocates); zero with
 *   BACKING_FAST always succeeds; flush and FUA are no-ops (memory is as
 *   durable as it gets).
 *
 * THREADS AND LOCKS: one rwlock per store.  Reads and extents take it
 * shared, writes, trim and zero exclusive.  The extents callback is
 * called with the lock dropped (it may call back into the store); each
 * reported extent is consistent on its own, the sequence is not a
 * snapshot of the whole range.
 *
 * FAILURE: out-of-range requests -EINVAL, writes to a read-only store
 * -EROFS, page allocation failures -ENOMEM (the part before the failing
 * page is written); each logged once.
 *
 * NOT HERE: persistence, fault injection (faulty.c), size changes.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backing.h"
#include "compiler.h"
#include "invariant.h"
#include "log.h"

#define PAGE_BYTES      4096
#define PAGES_PER_TABLE 1024    /* a table covers 4 MiB */

struct page_table {
  uint32_t n_pages;             /* present pages in this table */
  unsigned char *page[PAGES_PER_TABLE];   /* NULL = all zeros */
};

struct backing_memory {
  struct backing b;             /* must be first */
  pthread_rwlock_t lock;
  uint64_t n_tables;
  struct page_table **table;    /* [n_tables]; NULL = all zeros */
};

static struct backing_memory *
to_memory (struct backing *b)
{
  return (struct backing_memory *) b;
}

static bool
is_zero (const void *buf, size_t len)
{
  const unsigned char *p = buf;

  /* Compare the buffer with itself shifted by one byte. */
  return len == 0 || (p[0] == 0 && memcmp (p, p + 1, len - 1) == 0);
}

static unsigned char *
lookup_page (struct backing_memory *m, uint64_t pgno)
{
  struct page_table *t = m->table[pgno / PAGES_PER_TABLE];

  return t ? t->page[pgno % PAGES_PER_TABLE] : NULL;
}

/* ---- caller holds m->lock exclusively below ---- */

/* The page, allocated (zeroed) if missing; NULL on allocation failure. */
static unsigned char *
get_page_locked (struct backing_memory *m, uint64_t pgno)
{
  ASSERT_WRLOCKED (&m->lock);
  struct page_table **tp = &m->table[pgno / PAGES_PER_TABLE];
  unsigned char **pp;

  if (*tp == NULL) {
    *tp = calloc (1, sizeof **tp);
    if (*tp == NULL)
      return NULL;
  }
  pp = &(*tp)->page[pgno % PAGES_PER_TABLE];
  if (*pp == NULL) {
    *pp = calloc (1, PAGE_BYTES);
    if (*pp == NULL) {
      if ((*tp)->n_pages == 0) {
        free (*tp);
        *tp = NULL;
      }
      return NULL;
    }
    (*tp)->n_pages++;
  }
  return *pp;
}

static void
free_page_locked (struct backing_memory *m, uint64_t pgno)
{
  ASSERT_WRLOCKED (&m->lock);
  struct page_table **tp = &m->table[pgno / PAGES_PER_TABLE];
  unsigned char **pp;

  if (*tp == NULL)
    return;
  pp = &(*tp)->page[pgno % PAGES_PER_TABLE];
  if (*pp == NULL)
    return;
  free (*pp);
  *pp = NULL;
  if (--(*tp)->n_pages == 0) {
    free (*tp);
    *tp = NULL;
  }
}

/* ---- end of lock banner ---- */

static int
check_range (struct backing_memory *m, const char *what,
             uint64_t offset, uint64_t count)
{
  if (range_within (offset, count, m->b.size_bytes))
    return 0;
  log_error ("memory: %s at offset %" PRIu64 " count %" PRIu64
             " is beyond the size %" PRIu64 " bytes",
             what, offset, count, m->b.size_bytes);
  return -EINVAL;
}

static int
check_writable (struct backing_memory *m, const char *what,
                uint64_t offset, uint64_t count)
{
  if (!m->b.readonly)
    return 0;
  log_error ("memory: %s at offset %" PRIu64 " count %" PRIu64
             ": the store is read-only", what, offset, count);
  return -EROFS;
}

static int
memory_pread (struct backing *b, void *buf, size_t count, uint64_t offset)
{
  struct backing_memory *m = to_memory (b);
  unsigned char *p = buf;
  int r;

  if ((r = check_range (m, "read", offset, count)) < 0)
    return r;

  pthread_rwlock_rdlock (&m->lock);
  while (count > 0) {
    uint64_t pgno = offset / PAGE_BYTES;
    size_t in_page = offset % PAGE_BYTES;
    size_t n = MIN (count, (size_t) (PAGE_BYTES - in_page));
    const unsigned char *page = lookup_page (m, pgno);

    if (page)
      memcpy (p, page + in_page, n);
    else
      memset (p, 0, n);
    p += n;
    offset += n;
    count -= n;
  }
  pthread_rwlock_unlock (&m->lock);
  return 0;
}

static int
memory_pwrite (struct backing *b, const void *buf, size_t count,
               uint64_t offset, uint32_t flags)
{
  struct backing_memory *m = to_memory (b);
  const unsigned char *p = buf;
  int r = 0;

  if ((r = check_writable (m, "write", offset, count)) < 0 ||
      (r = check_range (m, "write", offset, count)) < 0)
    return r;

  pthread_rwlock_wrlock (&m->lock);
  while (count > 0) {
    uint64_t pgno = offset / PAGE_BYTES;
    size_t in_page = offset % PAGE_BYTES;
    size_t n = MIN (count, (size_t) (PAGE_BYTES - in_page));
    unsigned char *page = lookup_page (m, pgno);

    if (is_zero (p, n)) {
      /* Nothing to store; the page may have become all zero. */
      if (page) {
        memset (page + in_page, 0, n);
        if (is_zero (page, PAGE_BYTES))
          free_page_locked (m, pgno);
      }
    }
    else {
      if (page == NULL && (page = get_page_locked (m, pgno)) == NULL) {
        log_error ("memory: write at offset %" PRIu64 ": out of memory",
                   offset);
        r = -ENOMEM;
        break;
      }
      memcpy (page + in_page, p, n);
    }
    p += n;
    offset += n;
    count -= n;
  }
  pthread_rwlock_unlock (&m->lock);
  return r;
}

static int
memory_flush (struct backing *b)
{
  return 0;
}

/* Zero [offset, offset+count): free whole pages, clear partial ones and
 * free them too if that leaves them all zero.
 */
static void
zero_range (struct backing_memory *m, uint64_t offset, uint64_t count)
{
  pthread_rwlock_wrlock (&m->lock);
  while (count > 0) {
    uint64_t pgno = offset / PAGE_BYTES;
    size_t in_page = offset % PAGE_BYTES;
    uint64_t n = MIN (count, (uint64_t) (PAGE_BYTES - in_page));
    unsigned char *page;

    /* Skip a missing table at once: a huge zero of a sparse store must
     * not walk every page.
     */
    if (in_page == 0 && m->table[pgno / PAGES_PER_TABLE] == NULL) {
      uint64_t table_end = (pgno / PAGES_PER_TABLE + 1) * PAGES_PER_TABLE;

      n = MIN (count, (table_end - pgno) * PAGE_BYTES);
    }
    else if ((page = lookup_page (m, pgno)) != NULL) {
      if (n == PAGE_BYTES)
        free_page_locked (m, pgno);
      else {
        memset (page + in_page, 0, n);
        if (is_zero (page, PAGE_BYTES))
          free_page_locked (m, pgno);
      }
    }
    offset += n;
    count -= n;
  }
  pthread_rwlock_unlock (&m->lock);
}

static int
memory_trim (struct backing *b, uint64_t count, uint64_t offset,
             uint32_t flags)
{
  struct backing_memory *m = to_memory (b);
  int r;

  if ((r = check_writable (m, "trim", offset, count)) < 0 ||
      (r = check_range (m, "trim", offset, count)) < 0)
    return r;
  zero_range (m, offset, count);
  return 0;
}

static int
memory_zero (struct backing *b, uint64_t count, uint64_t offset,
             uint32_t flags)
{
  struct backing_memory *m = to_memory (b);
  int r;

  if ((r = check_writable (m, "zero", offset, count)) < 0 ||
      (r = check_range (m, "zero", offset, count)) < 0)
    return r;
  zero_range (m, offset, count);
  return 0;
}

/* The run of pages starting at pos with the same presence, clipped to
 * end: its length in bytes and whether it is data.
 */
static uint64_t
next_run (struct backing_memory *m, uint64_t pos, uint64_t end, bool *data)
{
  uint64_t start = pos;
  bool present;

  pthread_rwlock_rdlock (&m->lock);
  present = lookup_page (m, pos / PAGE_BYTES) != NULL;
  while (pos < end) {
    uint64_t pgno = pos / PAGE_BYTES;
    uint64_t step;

    if (m->table[pgno / PAGES_PER_TABLE] == NULL) {
      if (present)
        break;
      step = ((pgno / PAGES_PER_TABLE + 1) * PAGES_PER_TABLE) * PAGE_BYTES
        - pos;
    }
    else {
      if ((lookup_page (m, pgno) != NULL) != present)
        break;
      step = PAGE_BYTES - pos % PAGE_BYTES;
    }
    pos += MIN (step, end - pos);
  }
  pthread_rwlock_unlock (&m->lock);
  *data = present;
  return pos - start;
}

static int
memory_extents (struct backing *b, uint64_t count, uint64_t offset,
                backing_extent_fn fn, void *opaque)
{
  struct backing_memory *m = to_memory (b);
  uint64_t pos = offset, end = offset + count;
  int r;

  if ((r = check_range (m, "extents", offset, count)) < 0)
    return r;

  while (pos < end) {
    bool data;
    uint64_t len = next_run (m, pos, end, &data);

    r = fn (opaque, pos, len,
            data ? 0 : BACKING_EXTENT_HOLE | BACKING_EXTENT_ZERO);
    if (r < 0)
      return r;
    if (r > 0)
      return 0;
    pos += len;
  }
  return 0;
}

static void
memory_close (struct backing *b)
{
  struct backing_memory *m = to_memory (b);
  uint64_t i;
  size_t j;

  if (m->table) {
    for (i = 0; i < m->n_tables; ++i) {
      if (m->table[i] == NULL)
        continue;
      for (j = 0; j < PAGES_PER_TABLE; ++j)
        free (m->table[i]->page[j]);
      free (m->table[i]);
    }
    free (m->table);
  }
  pthread_rwlock_destroy (&m->lock);
  free (m->b.uri);
  free (m);
}

static const struct backing_ops memory_ops = {
  .name = "memory",
  .pread = memory_pread,
  .pwrite = memory_pwrite,
  .flush = memory_flush,
  .trim = memory_trim,
  .zero = memory_zero,
  .extents = memory_extents,
  .close = memory_close,
};

int
backing_memory_create (uint64_t size_bytes, struct backing **out)
{
  const uint64_t table_bytes = (uint64_t) PAGE_BYTES * PAGES_PER_TABLE;
  struct backing_memory *m;
  int r;

  if (size_bytes > INT64_MAX) {
    log_error ("memory: size %" PRIu64 " bytes is too large", size_bytes);
    return -EFBIG;
  }

  m = calloc (1, sizeof *m);
  if (m == NULL)
    return -ENOMEM;
  if ((r = pthread_rwlock_init (&m->lock, NULL)) != 0) {
    free (m);
    return -r;
  }
  m->b.ops = &memory_ops;
  m->b.size_bytes = size_bytes;
  m->b.can_trim = m->b.can_zero = m->b.can_fast_zero = true;
  m->b.can_extents = true;
  /* One more table than needed, so a lookup at size_bytes stays inside. */
  m->n_tables = size_bytes / table_bytes + 1;
  if (m->n_tables > SIZE_MAX / sizeof *m->table ||
      (m->table = calloc (m->n_tables, sizeof *m->table)) == NULL ||
      asprintf (&m->b.uri, "memory:%" PRIu64, size_bytes) < 0) {
    m->b.uri = NULL;
    log_error ("memory: cannot allocate a store of %" PRIu64 " bytes",
               size_bytes);
    memory_close (&m->b);
    return -ENOMEM;
  }

  *out = &m->b;
  return 0;
}
