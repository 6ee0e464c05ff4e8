/* SPDX-License-Identifier: BSD-3-Clause */
/* test-commands.c — every NBD command and flag, through libnbd.
 *
 * WHAT: READ (plain, structured with and without DF, across data and
 * holes), WRITE with and without FUA (aligned and not), FLUSH, TRIM (+FUA),
 * WRITE_ZEROES (plain, NO_HOLE, FUA, FAST_ZERO), CACHE, BLOCK_STATUS
 * (base:allocation, with and without REQ_ONE) against a known sparse
 * layout; and the server's own validation with libnbd's strict mode off:
 * out-of-range requests, an unknown flag, zero-length requests, block
 * status without a negotiated context, writes to a read-only export.
 * After every refused request the connection must still be in step, so a
 * good read follows each one.
 * WHY: libnbd is what nbdcopy, nbdinfo and nbdfuse use; the error numbers
 * are what every client turns into EIO/ENOSPC/EPERM for its user.
 * INVARIANTS: the export is DISK_SIZE bytes laid out by `--prepare`
 * (see prepare_layout) before the server starts; the tests only modify
 * [SCRATCH_START, DISK_SIZE) and check every byte they touched and its
 * neighbours.  Usage:
 *   test-commands --prepare FILE   write the layout to FILE
 *   test-commands URI              read-write tests on that layout
 *   test-commands -r URI           read-only export tests (same layout)
 * THREADS AND LOCKS: single-threaded; one handle per test.
 * FAILURE: exit 1 if any test failed.
 * NOT HERE: option haggling (test-options.c), raw protocol framing and
 * 64-bit requests (test-raw.c), concurrency (test-integrity.c).
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "compiler.h"
#include "libnbd-test.h"

#define KiB (UINT64_C (1024))
#define MiB (UINT64_C (1024) * 1024)

/* The layout, all offsets in bytes. */
#define DISK_SIZE      (16 * MiB)
#define DATA1_START    0
#define DATA1_END      (1 * MiB)
#define DATA2_START    (4 * MiB)
#define DATA2_END      (4 * MiB + 64 * KiB)
#define SCRATCH_START  (8 * MiB)
#define BLOCK          (4 * KiB)       /* block status granularity checked */

/* NBD base:allocation flags as libnbd reports them. */
#define STATE_HOLE 1
#define STATE_ZERO 2

static const char *uri;

/* The byte the layout has at `offset` (0 in the holes). */
static uint8_t
layout_byte (uint64_t offset)
{
  /* DATA1_START is 0. */
  bool data = offset < DATA1_END ||
              (offset >= DATA2_START && offset < DATA2_END);

  if (!data)
    return 0;
  /* Never 0, so a zeroed data byte is always noticed. */
  return (uint8_t) (((offset * 2654435761u) >> 11) % 255 + 1);
}

static bool
layout_is_data (uint64_t offset)
{
  return layout_byte (offset) != 0;
}

static int
prepare_layout (const char *path)
{
  static uint8_t buf[64 * 1024];
  const uint64_t ranges[][2] = {
    { DATA1_START, DATA1_END }, { DATA2_START, DATA2_END },
  };
  int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

  if (fd == -1) {
    perror (path);
    return 1;
  }
  if (ftruncate (fd, DISK_SIZE) == -1) {
    perror ("ftruncate");
    close (fd);
    return 1;
  }
  for (size_t r = 0; r < 2; r++) {
    for (uint64_t off = ranges[r][0]; off < ranges[r][1]; off += sizeof buf) {
      for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = layout_byte (off + i);
      if (pwrite (fd, buf, sizeof buf, (off_t) off) != (ssize_t) sizeof buf) {
        perror ("pwrite");
        close (fd);
        return 1;
      }
    }
  }
  if (fsync (fd) == -1 || close (fd) == -1) {
    perror (path);
    return 1;
  }
  return 0;
}

/* Fails the test unless buf == the layout over [offset, offset+count). */
static void
check_layout (const uint8_t *buf, uint64_t offset, size_t count)
{
  for (size_t i = 0; i < count; i++)
    if (buf[i] != layout_byte (offset + i))
      fail_msg ("byte at %" PRIu64 " is 0x%02x, layout says 0x%02x",
                offset + i, buf[i], layout_byte (offset + i));
}

static void
check_zero (const uint8_t *buf, uint64_t offset, size_t count)
{
  for (size_t i = 0; i < count; i++)
    if (buf[i] != 0)
      fail_msg ("byte at %" PRIu64 " is 0x%02x, expected 0", offset + i,
                buf[i]);
}

/* The connection is alive and in step: a read returns the right bytes. */
static void
check_alive (struct nbd_handle *h)
{
  uint8_t buf[4096];

  memset (buf, 0xee, sizeof buf);
  NBD_OK (nbd_pread (h, buf, sizeof buf, DATA2_START - 1000, 0));
  check_layout (buf, DATA2_START - 1000, sizeof buf);
}

static void
fill_random (uint8_t *buf, size_t n, unsigned seed)
{
  uint32_t x = seed * 2654435761u + 1;

  for (size_t i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    buf[i] = (uint8_t) x;
  }
}

static struct nbd_handle *
connect_rw (void)
{
  struct nbd_handle *h = test_connect (uri, true);

  assert_int_equal (nbd_get_size (h), (int64_t) DISK_SIZE);
  return h;
}

/* ---- read-write export ---- */

static void
test_commands_flags (void **state)
{
  struct nbd_handle *h = connect_rw ();

  assert_int_equal (nbd_is_read_only (h), 0);
  assert_int_equal (nbd_can_flush (h), 1);
  assert_int_equal (nbd_can_fua (h), 1);
  assert_int_equal (nbd_can_trim (h), 1);
  assert_int_equal (nbd_can_zero (h), 1);
  assert_int_equal (nbd_can_df (h), 1);
  assert_int_equal (nbd_can_multi_conn (h), 1);
  assert_int_equal (nbd_can_meta_context (h, LIBNBD_CONTEXT_BASE_ALLOCATION),
                    1);
  assert_int_equal (nbd_can_cache (h), 1);
  assert_int_equal (nbd_get_structured_replies_negotiated (h), 1);
  test_disconnect (h);
}

static void
test_commands_read_layout (void **state)
{
  struct nbd_handle *h = connect_rw ();
  uint8_t *buf = malloc (DISK_SIZE);

  assert_non_null (buf);
  /* One 16 MiB request: bigger than any socket buffer, mostly holes. */
  memset (buf, 0xee, DISK_SIZE);
  NBD_OK (nbd_pread (h, buf, DISK_SIZE, 0, 0));
  check_layout (buf, 0, SCRATCH_START);
  check_zero (buf + SCRATCH_START, SCRATCH_START, DISK_SIZE - SCRATCH_START);

  /* Small unaligned reads, including the last byte. */
  memset (buf, 0xee, 4096);
  NBD_OK (nbd_pread (h, buf, 1, DATA1_END - 1, 0));
  check_layout (buf, DATA1_END - 1, 1);
  NBD_OK (nbd_pread (h, buf, 333, DATA2_END - 100, 0));
  check_layout (buf, DATA2_END - 100, 333);
  NBD_OK (nbd_pread (h, buf, 1, DISK_SIZE - 1, 0));
  check_zero (buf, DISK_SIZE - 1, 1);

  /* FUA is a valid flag on any command once the server advertises it. */
  NBD_OK (nbd_set_strict_mode (h, 0));
  NBD_OK (nbd_pread (h, buf, 4096, 0, LIBNBD_CMD_FLAG_FUA));
  check_layout (buf, 0, 4096);
  free (buf);
  test_disconnect (h);
}

struct chunks {
  uint64_t start, count;        /* the request, bytes */
  unsigned n, n_data, n_hole;
  uint64_t covered_bytes;
  uint8_t *seen;                /* 1 per byte of the request already sent */
  const char *bad;              /* first problem found, or NULL */
  uint64_t bad_offset;
};

static int
chunk_cb (void *opaque, const void *subbuf, size_t count, uint64_t offset,
          unsigned status, int *error)
{
  struct chunks *c = opaque;
  const uint8_t *p = subbuf;

  c->n++;
  if (offset < c->start || count > c->count ||
      offset - c->start > c->count - count) {
    c->bad = c->bad ? c->bad : "chunk outside the request";
    return 0;
  }
  for (size_t i = 0; i < count; i++) {
    uint64_t rel = offset - c->start + i;

    if (c->seen[rel] && c->bad == NULL) {
      c->bad = "byte sent twice";
      c->bad_offset = offset + i;
    }
    c->seen[rel] = 1;
  }
  c->covered_bytes += count;
  switch (status) {
  case LIBNBD_READ_DATA:
    c->n_data++;
    for (size_t i = 0; i < count; i++)
      if (p[i] != layout_byte (offset + i) && c->bad == NULL) {
        c->bad = "wrong data in a data chunk";
        c->bad_offset = offset + i;
      }
    break;
  case LIBNBD_READ_HOLE:
    c->n_hole++;
    for (size_t i = 0; i < count; i++)
      if (layout_byte (offset + i) != 0 && c->bad == NULL) {
        c->bad = "hole chunk over data";
        c->bad_offset = offset + i;
      }
    break;
  default:
    c->bad = c->bad ? c->bad : "error chunk";
  }
  return 0;
}

static void
read_chunks (struct nbd_handle *h, uint64_t offset, size_t count,
             uint32_t flags, struct chunks *c)
{
  uint8_t *buf = malloc (count);
  nbd_chunk_callback cb = { .callback = chunk_cb, .user_data = c };

  assert_non_null (buf);
  memset (c, 0, sizeof *c);
  c->start = offset;
  c->count = count;
  c->seen = calloc (count, 1);
  assert_non_null (c->seen);
  memset (buf, 0xee, count);
  NBD_OK (nbd_pread_structured (h, buf, count, offset, cb, flags));
  if (c->bad)
    fail_msg ("structured read [%" PRIu64 ", +%zu): %s at %" PRIu64,
              offset, count, c->bad, c->bad_offset);
  /* Every byte exactly once, and libnbd filled the buffer accordingly. */
  assert_int_equal (c->covered_bytes, count);
  check_layout (buf, offset, count);
  free (c->seen);
  free (buf);
}

static void
test_commands_read_structured (void **state)
{
  struct nbd_handle *h = connect_rw ();
  struct chunks c;

  /* Data then hole, no DF: any chunking, but it adds up. */
  read_chunks (h, DATA1_END - 8 * KiB, 64 * KiB, 0, &c);
  assert_true (c.n >= 1);

  /* A read entirely within a hole. */
  read_chunks (h, 2 * MiB + 512, 256 * KiB, 0, &c);

  /* Hole, data, hole with DF: exactly one content chunk, and it is data. */
  read_chunks (h, DATA2_START - 4 * KiB, 72 * KiB, LIBNBD_CMD_FLAG_DF, &c);
  assert_int_equal (c.n, 1);
  assert_int_equal (c.n_data, 1);

  /* DF on a pure hole: still one chunk (data or hole). */
  read_chunks (h, 2 * MiB, 128 * KiB, LIBNBD_CMD_FLAG_DF, &c);
  assert_int_equal (c.n, 1);
  test_disconnect (h);
}

/* Per-BLOCK flags over the whole disk, from as many BLOCK_STATUS replies
 * as it takes.
 */
struct extent_map {
  uint32_t flags[DISK_SIZE / BLOCK];
  uint64_t next;                /* first byte not yet described */
  unsigned calls, extents;
  const char *bad;
};

static int
extent_cb (void *opaque, const char *ctx, uint64_t offset, uint32_t *entries,
           size_t nr, int *error)
{
  struct extent_map *m = opaque;
  uint64_t pos = offset;

  if (strcmp (ctx, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0) {
    m->bad = "unexpected context";
    return 0;
  }
  if (nr == 0 || nr % 2 != 0) {
    m->bad = "empty or odd extent list";
    return 0;
  }
  m->calls++;
  for (size_t i = 0; i < nr; i += 2) {
    uint64_t len = entries[i];

    if (len == 0) {
      m->bad = "zero-length extent";
      return 0;
    }
    if (pos + len > DISK_SIZE) {
      m->bad = "extent past the end of the export";
      return 0;
    }
    /* Layout boundaries are BLOCK aligned; so must the answers be. */
    if (pos % BLOCK != 0 || len % BLOCK != 0) {
      m->bad = "extent not 4 KiB aligned on an aligned layout";
      return 0;
    }
    for (uint64_t b = pos / BLOCK; b < (pos + len) / BLOCK; b++)
      m->flags[b] = entries[i + 1];
    pos += len;
    m->extents++;
  }
  m->next = pos;
  return 0;
}

static void
check_extents (const struct extent_map *m, uint64_t start, uint64_t end)
{
  for (uint64_t b = start / BLOCK; b < end / BLOCK; b++) {
    uint64_t off = b * BLOCK;
    uint32_t f = m->flags[b];

    if (layout_is_data (off)) {
      if (f & (STATE_HOLE | STATE_ZERO))
        fail_msg ("block at %" PRIu64 " holds data but reads flags 0x%x",
                  off, f);
    }
    else if ((f & (STATE_HOLE | STATE_ZERO)) != (STATE_HOLE | STATE_ZERO))
      fail_msg ("block at %" PRIu64 " is a hole but reads flags 0x%x",
                off, f);
  }
}

static void
test_commands_block_status (void **state)
{
  struct nbd_handle *h = connect_rw ();
  struct extent_map *m = calloc (1, sizeof *m);
  nbd_extent_callback cb = { .callback = extent_cb, .user_data = m };

  assert_non_null (m);
  while (m->next < DISK_SIZE) {
    uint64_t before = m->next;

    NBD_OK (nbd_block_status (h, DISK_SIZE - m->next, m->next, cb, 0));
    if (m->bad)
      fail_msg ("block status at %" PRIu64 ": %s", before, m->bad);
    assert_true (m->next > before);
  }
  check_extents (m, 0, DISK_SIZE);
  /* The layout has 2 data runs and 2 holes; allow splitting, not noise. */
  assert_true (m->extents >= 4);

  /* A request starting mid-extent reports from its own offset. */
  memset (m, 0, sizeof *m);
  m->next = DATA1_END - 8 * KiB;
  NBD_OK (nbd_block_status (h, 64 * KiB, m->next, cb, 0));
  assert_null (m->bad);
  assert_true (m->next > DATA1_END);
  check_extents (m, DATA1_END - 8 * KiB, DATA1_END + 4 * KiB);
  free (m);
  test_disconnect (h);
}

struct one_extent {
  unsigned calls;
  size_t nr;
  uint32_t len, flags;
};

static int
one_extent_cb (void *opaque, const char *ctx, uint64_t offset,
               uint32_t *entries, size_t nr, int *error)
{
  struct one_extent *e = opaque;

  e->calls++;
  e->nr = nr;
  if (nr >= 2) {
    e->len = entries[0];
    e->flags = entries[1];
  }
  return 0;
}

static void
block_status_one (struct nbd_handle *h, uint64_t offset, uint64_t count,
                  struct one_extent *e)
{
  nbd_extent_callback cb = { .callback = one_extent_cb, .user_data = e };

  memset (e, 0, sizeof *e);
  NBD_OK (nbd_block_status (h, count, offset, cb,
                            LIBNBD_CMD_FLAG_REQ_ONE));
  assert_int_equal (e->calls, 1);
  assert_int_equal (e->nr, 2);          /* exactly one (length, flags) */
  assert_true (e->len > 0);
  assert_true (e->len <= count);
}

static void
test_commands_block_status_req_one (void **state)
{
  struct nbd_handle *h = connect_rw ();
  struct one_extent e;

  /* Inside data1: one data extent, ending at or before the hole. */
  block_status_one (h, 512 * KiB, 8 * MiB, &e);
  assert_true (e.len <= DATA1_END - 512 * KiB);
  assert_int_equal (e.flags & (STATE_HOLE | STATE_ZERO), 0);

  /* At the first hole: a hole extent, ending at or before data2. */
  block_status_one (h, DATA1_END, 8 * MiB, &e);
  assert_true (e.len <= DATA2_START - DATA1_END);
  assert_int_equal (e.flags & (STATE_HOLE | STATE_ZERO),
                    STATE_HOLE | STATE_ZERO);

  /* A short request within a long extent is capped by its length. */
  block_status_one (h, 2 * MiB, 4096, &e);
  assert_int_equal (e.len, 4096);
  assert_int_equal (e.flags & STATE_ZERO, STATE_ZERO);
  block_status_one (h, DATA2_START, 4096, &e);
  assert_int_equal (e.len, 4096);
  assert_int_equal (e.flags & (STATE_HOLE | STATE_ZERO), 0);
  test_disconnect (h);
}

static void
test_commands_write (void **state)
{
  struct nbd_handle *h = connect_rw ();
  const size_t n = 1 * MiB + 4567;
  uint8_t *w = malloc (n), *r = malloc (n + 2);
  const uint64_t off = SCRATCH_START + 12345;

  assert_non_null (w);
  assert_non_null (r);
  fill_random (w, n, 1);
  NBD_OK (nbd_pwrite (h, w, n, off, 0));
  memset (r, 0xee, n + 2);
  /* One byte either side: untouched zeros. */
  NBD_OK (nbd_pread (h, r, n + 2, off - 1, 0));
  assert_int_equal (r[0], 0);
  assert_memory_equal (r + 1, w, n);
  assert_int_equal (r[n + 1], 0);

  /* FUA write over part of it, then a single byte, then a 1-byte FUA. */
  fill_random (w, 64 * KiB, 2);
  NBD_OK (nbd_pwrite (h, w, 64 * KiB, off + 100, LIBNBD_CMD_FLAG_FUA));
  NBD_OK (nbd_pwrite (h, "x", 1, off + 99, 0));
  NBD_OK (nbd_pwrite (h, "y", 1, off + 100 + 64 * KiB, LIBNBD_CMD_FLAG_FUA));
  NBD_OK (nbd_pread (h, r, 64 * KiB + 2, off + 99, 0));
  assert_int_equal (r[0], 'x');
  assert_memory_equal (r + 1, w, 64 * KiB);
  assert_int_equal (r[64 * KiB + 1], 'y');

  /* A write that ends exactly at the last byte of the export. */
  fill_random (w, n, 3);
  NBD_OK (nbd_pwrite (h, w, n, DISK_SIZE - n, 0));
  NBD_OK (nbd_pread (h, r, n, DISK_SIZE - n, 0));
  assert_memory_equal (r, w, n);

  NBD_OK (nbd_flush (h, 0));
  free (w);
  free (r);
  test_disconnect (h);
}

static void
test_commands_flush (void **state)
{
  struct nbd_handle *h = connect_rw ();

  NBD_OK (nbd_flush (h, 0));
  NBD_OK (nbd_pwrite (h, "flush", 5, SCRATCH_START + 3 * MiB, 0));
  NBD_OK (nbd_flush (h, 0));
  /* FLUSH with FUA is allowed too (FUA is valid on every command). */
  NBD_OK (nbd_set_strict_mode (h, 0));
  NBD_OK (nbd_flush (h, LIBNBD_CMD_FLAG_FUA));
  check_alive (h);
  test_disconnect (h);
}

/* Fills [off, off+n) with known data, returns it (caller frees). */
static uint8_t *
write_known (struct nbd_handle *h, uint64_t off, size_t n, unsigned seed)
{
  uint8_t *w = malloc (n);

  assert_non_null (w);
  fill_random (w, n, seed);
  NBD_OK (nbd_pwrite (h, w, n, off, 0));
  return w;
}

static void
test_commands_trim (void **state)
{
  struct nbd_handle *h = connect_rw ();
  const uint64_t base = SCRATCH_START + 4 * MiB;
  const size_t n = 2 * MiB;
  uint8_t *w = write_known (h, base, n, 4);
  uint8_t *r = malloc (n);
  struct {
    uint64_t off, len;
    uint32_t flags;
  } trims[] = {
    { base + 64 * KiB, 256 * KiB, 0 },                 /* aligned */
    { base + 512 * KiB + 100, 100 * KiB + 7, 0 },      /* unaligned */
    { base + 1 * MiB, 128 * KiB, LIBNBD_CMD_FLAG_FUA },
    { base + 1536 * KiB + 1, 1, LIBNBD_CMD_FLAG_FUA }, /* one byte */
  };

  assert_non_null (r);
  for (size_t t = 0; t < ARRAY_SIZE (trims); t++)
    NBD_OK (nbd_trim (h, trims[t].len, trims[t].off, trims[t].flags));
  NBD_OK (nbd_flush (h, 0));

  /* Outside the trims: unchanged.  Inside: the spec leaves the contents
   * unspecified, but a byte may only read as its old value or zero (never
   * anything else, and never a neighbour's data).
   */
  NBD_OK (nbd_pread (h, r, n, base, 0));
  for (size_t i = 0; i < n; i++) {
    uint64_t off = base + i;
    bool trimmed = false;

    for (size_t t = 0; t < ARRAY_SIZE (trims); t++)
      if (off >= trims[t].off && off < trims[t].off + trims[t].len)
        trimmed = true;
    if (trimmed ? (r[i] != w[i] && r[i] != 0) : r[i] != w[i])
      fail_msg ("after trim, byte at %" PRIu64 " (%s) is 0x%02x, was 0x%02x",
                off, trimmed ? "trimmed" : "untouched", r[i], w[i]);
  }
  free (w);
  free (r);
  check_alive (h);
  test_disconnect (h);
}

static void
check_zeroed (struct nbd_handle *h, uint64_t base, const uint8_t *w, size_t n,
              uint64_t zoff, uint64_t zlen)
{
  uint8_t *r = malloc (n);

  assert_non_null (r);
  NBD_OK (nbd_pread (h, r, n, base, 0));
  for (size_t i = 0; i < n; i++) {
    uint64_t off = base + i;
    bool zeroed = off >= zoff && off < zoff + zlen;

    if (r[i] != (zeroed ? 0 : w[i]))
      fail_msg ("after zero [%" PRIu64 ", +%" PRIu64 "), byte at %" PRIu64
                " is 0x%02x, expected 0x%02x", zoff, zlen, off, r[i],
                zeroed ? 0 : w[i]);
  }
  free (r);
}

static void
test_commands_zero (void **state)
{
  struct nbd_handle *h = connect_rw ();
  const uint64_t base = SCRATCH_START + 1 * MiB;
  const size_t n = 1 * MiB;
  struct {
    uint64_t off, len;
    uint32_t flags;
  } zeroes[] = {
    { base + 64 * KiB, 128 * KiB, 0 },
    { base + 300 * KiB + 1, 50 * KiB + 3, 0 },
    { base + 400 * KiB, 64 * KiB, LIBNBD_CMD_FLAG_NO_HOLE },
    { base + 500 * KiB + 17, 4096, LIBNBD_CMD_FLAG_NO_HOLE },
    { base + 600 * KiB, 100 * KiB, LIBNBD_CMD_FLAG_FUA },
    { base + 800 * KiB + 5, 1, LIBNBD_CMD_FLAG_FUA | LIBNBD_CMD_FLAG_NO_HOLE },
  };

  for (size_t z = 0; z < ARRAY_SIZE (zeroes); z++) {
    uint8_t *w = write_known (h, base, n, 10 + (unsigned) z);

    NBD_OK (nbd_zero (h, zeroes[z].len, zeroes[z].off, zeroes[z].flags));
    check_zeroed (h, base, w, n, zeroes[z].off, zeroes[z].len);
    free (w);
  }

  /* A zeroed, aligned, flushed range is reported as reading zero. */
  {
    struct one_extent e;

    NBD_OK (nbd_zero (h, 256 * KiB, base, 0));
    NBD_OK (nbd_flush (h, 0));
    block_status_one (h, base, 256 * KiB, &e);
    assert_int_equal (e.flags & STATE_ZERO, STATE_ZERO);
  }
  check_alive (h);
  test_disconnect (h);
}

static void
test_commands_fast_zero (void **state)
{
  struct nbd_handle *h = connect_rw ();
  const uint64_t base = SCRATCH_START + 6 * MiB;
  const size_t n = 512 * KiB;
  uint8_t *w = write_known (h, base, n, 20);
  int r;

  if (nbd_can_fast_zero (h) != 1) {
    /* The server does not offer it; nothing else to check. */
    free (w);
    test_disconnect (h);
    return;
  }
  r = nbd_zero (h, 128 * KiB, base + 64 * KiB, LIBNBD_CMD_FLAG_FAST_ZERO);
  if (r == -1) {
    if (nbd_get_errno () != ENOTSUP)
      fail_msg ("FAST_ZERO failed with errno %d (%s), only ENOTSUP is "
                "allowed: %s", nbd_get_errno (), strerror (nbd_get_errno ()),
                nbd_get_error ());
    printf ("FAST_ZERO: server answered ENOTSUP\n");
  }
  else
    check_zeroed (h, base, w, n, base + 64 * KiB, 128 * KiB);

  /* FAST_ZERO together with NO_HOLE: same rule. */
  r = nbd_zero (h, 4096, base, LIBNBD_CMD_FLAG_FAST_ZERO |
                LIBNBD_CMD_FLAG_NO_HOLE);
  if (r == -1 && nbd_get_errno () != ENOTSUP)
    fail_msg ("FAST_ZERO|NO_HOLE failed with errno %d: %s",
              nbd_get_errno (), nbd_get_error ());
  free (w);
  check_alive (h);
  test_disconnect (h);
}

static void
test_commands_cache (void **state)
{
  struct nbd_handle *h = connect_rw ();

  assert_int_equal (nbd_can_cache (h), 1);
  NBD_OK (nbd_cache (h, 1 * MiB, 0, 0));
  NBD_OK (nbd_cache (h, 4097, DATA2_START - 1, 0));
  NBD_OK (nbd_cache (h, DISK_SIZE, 0, 0));
  check_alive (h);
  NBD_OK (nbd_set_strict_mode (h, 0));
  NBD_FAILS (nbd_cache (h, 8192, DISK_SIZE - 4096, 0), EINVAL);
  check_alive (h);
  test_disconnect (h);
}

static int
ignore_extents (void *opaque, const char *ctx, uint64_t offset,
                uint32_t *entries, size_t nr, int *error)
{
  return 0;
}

static void
test_commands_errors (void **state)
{
  struct nbd_handle *h = connect_rw ();
  nbd_extent_callback cb = { .callback = ignore_extents };
  uint8_t buf[8192], tail_before[2048], tail_after[2048];

  NBD_OK (nbd_set_strict_mode (h, 0));
  memset (buf, 0x55, sizeof buf);
  NBD_OK (nbd_pread (h, tail_before, sizeof tail_before,
                     DISK_SIZE - sizeof tail_before, 0));

  /* Reads past the end: EINVAL (including offset == size and overflow). */
  NBD_FAILS (nbd_pread (h, buf, 4096, DISK_SIZE - 2048, 0), EINVAL);
  check_alive (h);
  NBD_FAILS (nbd_pread (h, buf, 512, DISK_SIZE, 0), EINVAL);
  check_alive (h);
  NBD_FAILS (nbd_pread (h, buf, 4096, UINT64_MAX - 1000, 0), EINVAL);
  check_alive (h);

  /* Writes past the end: ENOSPC, and the part that was inside the export
   * was not written either.
   */
  NBD_FAILS (nbd_pwrite (h, buf, 4096, DISK_SIZE - 2048, 0), ENOSPC);
  check_alive (h);
  NBD_FAILS (nbd_pwrite (h, buf, 4096, DISK_SIZE + 4096, 0), ENOSPC);
  check_alive (h);
  NBD_FAILS (nbd_pwrite (h, buf, 4096, UINT64_MAX - 1000,
                         LIBNBD_CMD_FLAG_FUA), ENOSPC);
  check_alive (h);

  /* Zeroes past the end: ENOSPC; trims: EINVAL. */
  NBD_FAILS (nbd_zero (h, 4096, DISK_SIZE - 2048, 0), ENOSPC);
  check_alive (h);
  NBD_FAILS (nbd_zero (h, 1, DISK_SIZE, LIBNBD_CMD_FLAG_NO_HOLE), ENOSPC);
  check_alive (h);
  NBD_FAILS (nbd_trim (h, 4096, DISK_SIZE - 2048, 0), EINVAL);
  check_alive (h);
  NBD_FAILS (nbd_trim (h, UINT32_MAX, DISK_SIZE - 1, 0), EINVAL);
  check_alive (h);

  /* Block status past the end: EINVAL. */
  NBD_FAILS (nbd_block_status (h, 4096, DISK_SIZE, cb, 0), EINVAL);
  check_alive (h);

  /* None of that touched the last bytes of the export. */
  NBD_OK (nbd_pread (h, tail_after, sizeof tail_after,
                     DISK_SIZE - sizeof tail_after, 0));
  assert_memory_equal (tail_before, tail_after, sizeof tail_after);

  /* An unknown command flag: EINVAL, for a read and for a write (which
   * must then not have written).
   */
  NBD_FAILS (nbd_pread (h, buf, 4096, 0, 1u << 10), EINVAL);
  check_alive (h);
  NBD_FAILS (nbd_pwrite (h, buf, 4096, DATA2_START, 1u << 10), EINVAL);
  check_alive (h);
  NBD_OK (nbd_pread (h, buf, 4096, DATA2_START, 0));
  check_layout (buf, DATA2_START, 4096);
  test_disconnect (h);
}

/* The spec leaves a zero-length request (other than FLUSH) unspecified:
 * libnbd refuses to send one unless STRICT_ZERO_SIZE is cleared.  A server
 * may treat it as a no-op or refuse it with an error; it must not hang up,
 * change any data, or answer out of step.
 */
static void
test_commands_zero_length (void **state)
{
  struct nbd_handle *h = connect_rw ();
  nbd_extent_callback cb = { .callback = ignore_extents };
  uint8_t buf[16];
  struct {
    const char *what;
    int r;
  } res[5];
  size_t n = 0;

  NBD_OK (nbd_set_strict_mode (h, 0));
#define ZL(what_, call)                                               \
  do {                                                                \
    res[n].what = what_;                                              \
    res[n].r = (call);                                                \
    if (res[n].r == -1 && nbd_get_errno () != EINVAL &&               \
        nbd_get_errno () != ENOSPC)                                   \
      fail_msg ("zero-length %s: unexpected errno %d: %s", what_,     \
                nbd_get_errno (), nbd_get_error ());                  \
    n++;                                                              \
    check_alive (h);                                                  \
  } while (0)

  ZL ("read", nbd_pread (h, buf, 0, DATA2_START, 0));
  ZL ("write", nbd_pwrite (h, buf, 0, DATA2_START, 0));
  ZL ("trim", nbd_trim (h, 0, DATA2_START, 0));
  ZL ("zero", nbd_zero (h, 0, DATA2_START, 0));
  ZL ("block status", nbd_block_status (h, 0, DATA2_START, cb, 0));
#undef ZL
  for (size_t i = 0; i < n; i++)
    printf ("zero-length %s: %s\n", res[i].what,
            res[i].r == 0 ? "no-op success" : "refused");
  /* The data at that offset is untouched. */
  NBD_OK (nbd_pread (h, buf, sizeof buf, DATA2_START, 0));
  check_layout (buf, DATA2_START, sizeof buf);
  test_disconnect (h);
}

static void
test_commands_block_status_no_context (void **state)
{
  struct nbd_handle *h = test_connect (uri, false);
  nbd_extent_callback cb = { .callback = ignore_extents };

  assert_int_equal (nbd_can_meta_context (h, LIBNBD_CONTEXT_BASE_ALLOCATION),
                    0);
  NBD_OK (nbd_set_strict_mode (h, 0));
  NBD_FAILS (nbd_block_status (h, 4096, 0, cb, 0), EINVAL);
  check_alive (h);
  test_disconnect (h);
}

/* ---- read-only export (-r) ---- */

static void
test_commands_readonly (void **state)
{
  struct nbd_handle *h = connect_rw ();
  uint8_t buf[4096];

  assert_int_equal (nbd_is_read_only (h), 1);
  NBD_OK (nbd_set_strict_mode (h, 0));
  memset (buf, 0x77, sizeof buf);

  NBD_FAILS (nbd_pwrite (h, buf, sizeof buf, DATA2_START, 0), EPERM);
  check_alive (h);
  NBD_FAILS (nbd_pwrite (h, buf, sizeof buf, 2 * MiB, LIBNBD_CMD_FLAG_FUA),
             EPERM);
  check_alive (h);
  NBD_FAILS (nbd_zero (h, sizeof buf, DATA2_START, 0), EPERM);
  check_alive (h);
  NBD_FAILS (nbd_trim (h, sizeof buf, DATA2_START, 0), EPERM);
  check_alive (h);

  /* Nothing changed, and reads still work everywhere. */
  NBD_OK (nbd_pread (h, buf, sizeof buf, DATA2_START, 0));
  check_layout (buf, DATA2_START, sizeof buf);
  NBD_OK (nbd_pread (h, buf, sizeof buf, 2 * MiB, 0));
  check_zero (buf, 2 * MiB, sizeof buf);
  test_disconnect (h);
}

int
main (int argc, char *argv[])
{
  const struct CMUnitTest rw_tests[] = {
    cmocka_unit_test (test_commands_flags),
    cmocka_unit_test (test_commands_read_layout),
    cmocka_unit_test (test_commands_read_structured),
    cmocka_unit_test (test_commands_block_status),
    cmocka_unit_test (test_commands_block_status_req_one),
    cmocka_unit_test (test_commands_write),
    cmocka_unit_test (test_commands_flush),
    cmocka_unit_test (test_commands_trim),
    cmocka_unit_test (test_commands_zero),
    cmocka_unit_test (test_commands_fast_zero),
    cmocka_unit_test (test_commands_cache),
    cmocka_unit_test (test_commands_errors),
    cmocka_unit_test (test_commands_zero_length),
    cmocka_unit_test (test_commands_block_status_no_context),
  };
  const struct CMUnitTest ro_tests[] = {
    cmocka_unit_test (test_commands_readonly),
  };
  bool readonly = false;

  if (argc == 3 && strcmp (argv[1], "--prepare") == 0)
    return prepare_layout (argv[2]);
  if (argc > 1 && strcmp (argv[1], "-r") == 0) {
    readonly = true;
    argc--;
    argv++;
  }
  uri = test_get_uri ("test-commands", argc, argv);
  if (uri == NULL)
    return 1;
  printf ("test-commands: server kind %s, uri %s%s\n", test_server_kind (),
          uri, readonly ? " (read-only)" : "");
  if (readonly)
    return cmocka_run_group_tests (ro_tests, NULL, NULL) ? 1 : 0;
  return cmocka_run_group_tests (rw_tests, NULL, NULL) ? 1 : 0;
}
