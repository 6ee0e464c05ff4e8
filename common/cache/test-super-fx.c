/* SPDX-License-Identifier: BSD-3-Clause */
/* test-super-fx.c — the fixtures of the superblock and format tests.
 *
 * WHAT: the stubs of prio_format and journal_format (linked before the
 * libraries, they replace prio.c's and journal.c's: each writes one
 * recognisable block and records whether the old superblocks were already
 * gone when it was called), a "big" device that keeps only blocks 0-1 and
 * drops every other write (geometry on terabyte devices), a gate that
 * kills a simulated device at a chosen sync, and small helpers (a
 * simulated device, a formatted one, peek a superblock slot, flip a byte).
 * WHY: test-super, test-super-write and test-format share them; one copy.
 * INVARIANTS: see test-super-fx.h.
 * THREADS AND LOCKS: single-threaded tests.
 * FAILURE: cmocka assertions; allocation failure fails the test.
 * NOT HERE: the tests (test-super.c, test-super-write.c, test-format.c).
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

#include "bucket.h"
#include "cdev.h"
#include "compiler.h"
#include "format.h"
#include "journal.h"
#include "ondisk.h"
#include "super.h"
#include "test-super-fx.h"
#include "testkit.h"

/* ---- stubs for prio.c and journal.c ---- */

struct stub_calls stubs;

static bool
blocks01_zero (struct cdev *cd)
{
  uint8_t *buf = cdev_alloc_buffer (2 * NC_BLOCK_BYTES);
  bool zero = buf != NULL;
  size_t i;

  if (zero && cdev_pread (cd, buf, 2 * NC_BLOCK_BYTES, 0) < 0)
    zero = false;
  for (i = 0; zero && i < 2 * NC_BLOCK_BYTES; i++)
    if (buf[i] != 0)
      zero = false;
  free (buf);
  return zero;
}

/* One block at the start of `bucket`: a mark and the uuid. */
static int
write_mark (struct cdev *cd, const struct nc_sb *sb, uint32_t bucket,
            const char *mark)
{
  uint8_t *buf = cdev_alloc_buffer (NC_BLOCK_BYTES);
  int r;

  if (buf == NULL)
    return -ENOMEM;
  memcpy (buf, mark, 8);
  memcpy (buf + 8, sb->uuid, sizeof sb->uuid);
  r = cdev_pwrite (cd, buf, NC_BLOCK_BYTES, super_bucket_offset (sb, bucket),
                   0);
  free (buf);
  return r;
}

bool
has_mark (struct cdev *cd, const struct nc_sb *sb, uint32_t bucket,
          const char *mark)
{
  uint8_t *buf = cdev_alloc_buffer (NC_BLOCK_BYTES);
  bool ok;

  assert_non_null (buf);
  assert_int_equal (cdev_pread (cd, buf, NC_BLOCK_BYTES,
                                super_bucket_offset (sb, bucket)), 0);
  ok = memcmp (buf, mark, 8) == 0 &&
    memcmp (buf + 8, sb->uuid, sizeof sb->uuid) == 0;
  free (buf);
  return ok;
}

int
prio_format (struct cdev *cd, const struct nc_sb *sb)
{
  stubs.prio++;
  stubs.sb_gone_at_prio = blocks01_zero (cd);
  assert_null (super_validate (sb, cd->size_bytes));
  return write_mark (cd, sb, sb->prio_first, PRIO_MARK);
}

int
journal_format (struct cdev *cd, const struct nc_sb *sb)
{
  stubs.journal++;
  stubs.sb_gone_at_journal = blocks01_zero (cd);
  assert_null (super_validate (sb, cd->size_bytes));
  return write_mark (cd, sb, sb->journal_first, JOURNAL_MARK);
}

/* ---- a big device: keeps the superblock area, drops the rest ---- */

struct big_dev {
  struct cdev cd;               /* first */
  uint8_t head[(NC_TABLE_FIRST_BLOCK + 2 * NC_TABLE_BLOCKS_MAX)
               * NC_BLOCK_BYTES];
  uint64_t nr_writes;
};

static int
big_pread (struct cdev *cd, void *buf, size_t count, uint64_t offset)
{
  struct big_dev *b = (struct big_dev *) cd;

  memset (buf, 0, count);
  if (offset < sizeof b->head)
    memcpy (buf, b->head + offset, MIN (count, sizeof b->head - offset));
  return 0;
}

static int
big_pwrite (struct cdev *cd, const void *buf, size_t count, uint64_t offset,
            uint32_t flags)
{
  struct big_dev *b = (struct big_dev *) cd;

  assert_true (offset % NC_BLOCK_BYTES == 0 && count % NC_BLOCK_BYTES == 0);
  assert_true (offset + count <= cd->size_bytes);
  b->nr_writes++;
  if (offset < sizeof b->head)
    memcpy (b->head + offset, buf, MIN (count, sizeof b->head - offset));
  return 0;
}

static int big_sync (struct cdev *cd) { return 0; }
static int big_discard (struct cdev *cd, uint64_t c, uint64_t o) { return 0; }
static void big_close (struct cdev *cd) { free (cd); }

static const struct cdev_ops big_ops = {
  .name = "big", .pread = big_pread, .pwrite = big_pwrite,
  .sync = big_sync, .discard = big_discard, .close = big_close,
};

struct cdev *
big_create (uint64_t size_bytes)
{
  struct big_dev *b = calloc (1, sizeof *b);

  assert_non_null (b);
  b->cd.ops = &big_ops;
  b->cd.path = (char *) "big";
  b->cd.size_bytes = size_bytes;
  return &b->cd;
}

/* ---- a gate in front of a simulated device: dies at sync number N ----
 *
 * cdev-sim can kill the device at a chosen write; this kills it at a
 * chosen sync instead (the sync does not happen), to crash between a
 * write and the sync that was meant to make it durable.
 */

struct gate_dev {
  struct cdev cd;               /* first */
  struct cdev *inner;           /* a cdev-sim */
  uint64_t nr_syncs, fail_sync_at;
  bool dead;
};

static int
gate_pread (struct cdev *cd, void *buf, size_t count, uint64_t offset)
{
  struct gate_dev *g = (struct gate_dev *) cd;
  return g->dead ? -EIO : cdev_pread (g->inner, buf, count, offset);
}

static int
gate_pwrite (struct cdev *cd, const void *buf, size_t count, uint64_t offset,
             uint32_t flags)
{
  struct gate_dev *g = (struct gate_dev *) cd;
  return g->dead ? -EIO : cdev_pwrite (g->inner, buf, count, offset, flags);
}

static int
gate_sync (struct cdev *cd)
{
  struct gate_dev *g = (struct gate_dev *) cd;

  if (++g->nr_syncs == g->fail_sync_at)
    g->dead = true;
  return g->dead ? -EIO : cdev_sync (g->inner);
}

static int gate_discard (struct cdev *cd, uint64_t c, uint64_t o) { return 0; }
static void gate_close (struct cdev *cd) { free (cd); }

static const struct cdev_ops gate_ops = {
  .name = "gate", .pread = gate_pread, .pwrite = gate_pwrite,
  .sync = gate_sync, .discard = gate_discard, .close = gate_close,
};

struct cdev *
gate_create (struct cdev *inner, uint64_t fail_sync_at)
{
  struct gate_dev *g = calloc (1, sizeof *g);

  assert_non_null (g);
  g->cd.ops = &gate_ops;
  g->cd.path = (char *) "gate";
  g->cd.size_bytes = inner->size_bytes;
  g->inner = inner;
  g->fail_sync_at = fail_sync_at;
  return &g->cd;
}

/* ---- helpers ---- */

struct cdev *
sim (uint64_t bytes)
{
  struct cdev *cd;

  assert_int_equal (cdev_sim_create (bytes, &cd), 0);
  return cd;
}

const uint8_t uuid_a[16] = "uuid-A-uuid-A-uu";
const uint8_t uuid_b[16] = "uuid-B-uuid-B-uu";

struct cdev *
formatted (uint64_t bytes, uint32_t bucket_bytes)
{
  struct cdev *cd = sim (bytes);
  struct nc_format_options o = { .bucket_bytes = bucket_bytes,
                                 .uuid = uuid_a, .quiet = true };

  assert_int_equal (nc_format (cd, &o), 0);
  return cd;
}

void
read_slot (struct cdev *cd, int slot, struct nc_sb *sb)
{
  memset (sb, 0, sizeof *sb);
  cdev_sim_peek (cd, (uint64_t) slot * NC_BLOCK_BYTES, sb, NC_BLOCK_BYTES);
  if (sb->version == NC_FORMAT_VERSION && sb->table_blocks >= 1 &&
      sb->table_blocks <= NC_TABLE_BLOCKS_MAX)
    cdev_sim_peek (cd, super_table_offset (sb, slot), sb->exports,
                   (size_t) sb->table_blocks * NC_BLOCK_BYTES);
}

void
write_slot (struct cdev *cd, int slot, const struct nc_sb *sb)
{
  cdev_sim_poke (cd, (uint64_t) slot * NC_BLOCK_BYTES, sb, NC_BLOCK_BYTES);
  if (sb->table_blocks >= 1 && sb->table_blocks <= NC_TABLE_BLOCKS_MAX)
    cdev_sim_poke (cd, super_table_offset (sb, slot), sb->exports,
                   (size_t) sb->table_blocks * NC_BLOCK_BYTES);
}

void
poke_byte (struct cdev *cd, uint64_t offset, uint8_t xor)
{
  uint8_t b;

  cdev_sim_peek (cd, offset, &b, 1);
  b ^= xor;
  cdev_sim_poke (cd, offset, &b, 1);
}
