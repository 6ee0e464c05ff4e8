/* SPDX-License-Identifier: BSD-3-Clause */
/* test-cache-spy.c — the spy backing store of the export-handle tests:
 * see test-cache-spy.h.
 */
#include <config.h>

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "test-cache-spy.h"

struct spy {
  struct backing b;             /* first */
  struct backing *inner;
  struct spy_record *rec;
};

static int
take_failure (struct spy_record *rec)
{
  int r = rec->fail_next;

  rec->fail_next = 0;
  return r;
}

static int
spy_pread (struct backing *b, void *buf, size_t count, uint64_t offset)
{
  struct spy *s = (struct spy *) b;
  int r;

  __atomic_fetch_add (&s->rec->nr_pread, 1, __ATOMIC_RELAXED);
  if ((r = take_failure (s->rec)) < 0)
    return r;
  return backing_pread (s->inner, buf, count, offset);
}

static int
spy_pwrite (struct backing *b, const void *buf, size_t count,
            uint64_t offset, uint32_t flags)
{
  struct spy *s = (struct spy *) b;
  int r;

  __atomic_fetch_add (&s->rec->nr_pwrite, 1, __ATOMIC_RELAXED);
  s->rec->last_flags = flags;
  if ((r = take_failure (s->rec)) < 0)
    return r;
  return backing_pwrite (s->inner, buf, count, offset, flags);
}

static int
spy_flush (struct backing *b)
{
  struct spy *s = (struct spy *) b;
  int r;

  s->rec->nr_flush++;
  if ((r = take_failure (s->rec)) < 0)
    return r;
  return backing_flush (s->inner);
}

static int
spy_trim (struct backing *b, uint64_t count, uint64_t offset, uint32_t flags)
{
  struct spy *s = (struct spy *) b;
  int r;

  s->rec->nr_trim++;
  s->rec->last_flags = flags;
  if ((r = take_failure (s->rec)) < 0)
    return r;
  return backing_trim (s->inner, count, offset, flags);
}

static int
spy_zero (struct backing *b, uint64_t count, uint64_t offset, uint32_t flags)
{
  struct spy *s = (struct spy *) b;
  int r;

  s->rec->nr_zero++;
  s->rec->last_flags = flags;
  if ((r = take_failure (s->rec)) < 0)
    return r;
  /* The spy claims whatever speed the test chose; the memory store below
   * must not second-guess it.
   */
  return backing_zero (s->inner, count, offset, flags & ~BACKING_FAST);
}

/* Scripted: report whole script extents (deliberately not clipped to the
 * request, so the engine's clipping is what is tested) from the one that
 * holds `offset` until the request is covered or the callback says stop.
 */
static int
spy_extents (struct backing *b, uint64_t count, uint64_t offset,
             backing_extent_fn fn, void *opaque)
{
  struct spy *s = (struct spy *) b;
  uint64_t start = 0, pos = offset, end = offset + count;
  size_t i;
  int r;

  s->rec->nr_extents++;
  if ((r = take_failure (s->rec)) < 0)
    return r;
  if (s->rec->script == NULL)
    return backing_extents (s->inner, count, offset, fn, opaque);

  for (i = 0; i < s->rec->nr_script && pos < end; i++) {
    uint64_t e_end = start + s->rec->script[i].length;

    if (pos < e_end) {
      r = fn (opaque, pos + s->rec->script_skew, e_end - pos,
              s->rec->script[i].flags);
      if (r != 0)
        return r < 0 ? r : 0;
      pos = e_end;
    }
    start = e_end;
  }
  return 0;
}

static void
spy_close (struct backing *b)
{
  struct spy *s = (struct spy *) b;

  s->rec->nr_close++;
  backing_close (s->inner);
  free (s);
}

static const struct backing_ops spy_ops = {
  .name = "spy",
  .pread = spy_pread,
  .pwrite = spy_pwrite,
  .flush = spy_flush,
  .trim = spy_trim,
  .zero = spy_zero,
  .extents = spy_extents,
  .close = spy_close,
};

const struct spy_caps all_caps = {
  .can_trim = true, .can_zero = true, .can_fast_zero = true,
  .can_extents = true,
};

struct backing *
spy_create (uint64_t size_bytes, const struct spy_caps *caps,
            struct spy_record *rec)
{
  struct spy *s = calloc (1, sizeof *s);

  assert_non_null (s);
  memset (rec, 0, sizeof *rec);
  assert_int_equal (backing_memory_create (size_bytes, &s->inner), 0);
  s->b.ops = &spy_ops;
  s->b.uri = s->inner->uri;
  s->b.size_bytes = size_bytes;
  s->b.readonly = caps->readonly;
  s->b.can_trim = caps->can_trim;
  s->b.can_zero = caps->can_zero;
  s->b.can_fast_zero = caps->can_fast_zero;
  s->b.can_extents = caps->can_extents;
  s->rec = rec;
  return &s->b;
}

struct ncache_export *
open_spy (const struct spy_caps *caps, bool readonly, struct spy_record *rec)
{
  struct ncache_config cfg = {
    .name = "test", .mode = NCACHE_MODE_NONE, .readonly = readonly,
  };
  struct ncache_export *nc = NULL;

  assert_int_equal (ncache_open (&cfg, spy_create (EXPORT_BYTES, caps, rec),
                                 &nc), 0);
  assert_non_null (nc);
  return nc;
}

void
fill_pattern (unsigned char *buf, size_t count, uint64_t offset, unsigned seed)
{
  size_t i;

  for (i = 0; i < count; i++)
    buf[i] = (unsigned char) ((offset + i) * 31 + seed * 7 + ((offset + i) >> 9));
}

bool
is_zero (const unsigned char *buf, size_t count)
{
  size_t i;

  for (i = 0; i < count; i++)
    if (buf[i] != 0)
      return false;
  return true;
}

int
count_extent (void *opaque, uint64_t offset, uint64_t length, uint32_t flags)
{
  (void) offset, (void) length, (void) flags;
  (*(unsigned *) opaque)++;
  return 0;
}
