/* SPDX-License-Identifier: BSD-3-Clause */
/* test-dev-fx.c — a real cache device with one writeback export, for
 * test-datacsum and test-redo (see test-dev-fx.h).
 */
#include <config.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "btree.h"
#include "cache-data.h"
#include "cache-internal.h"
#include "format.h"
#include "test-dev-fx.h"

void
ctx_attach (struct ctx *c, bool create)
{
  struct ncache_device_tuning dt = {
    .journal_delay_ms = c->journal_delay_ms,
    .format_bucket_bytes = BUCKET_BYTES,
    .discard = (c->flags & CTX_DISCARD) != 0,
  };
  struct ncache_export_tuning et;
  struct ncache_config cfg = {
    .name = c->name, .mode = c->mode, .tuning = &et,
  };

  ncache_export_tuning_default (&et);
  et.writeback_off = true;
  et.sequential_cutoff_bytes = 0;
  cdev_sim_hold (c->cd);
  assert_int_equal (ncache_device_open_cdev (c->name, c->cd, create, &dt,
                                             &c->dev), 0);
  if (c->b == NULL)
    assert_int_equal (backing_memory_create (EXPORT_BYTES, &c->b), 0);
  cfg.device = c->dev;
  assert_int_equal (ncache_open (&cfg, c->b, &c->nc), 0);
}

/* The export owns its backing store: keep a copy of its bytes in a new
 * memory store for the next attach.
 */
static void
detach (struct ctx *c, bool crash)
{
  unsigned char *copy = malloc (EXPORT_BYTES);

  assert_non_null (copy);
  assert_int_equal (backing_pread (c->b, copy, EXPORT_BYTES, 0), 0);
  if (crash)
    cdev_sim_fail_at_write (c->cd, cdev_sim_nr_writes (c->cd) + 1);
  ncache_close (c->nc);
  ncache_device_close (c->dev);
  if (crash) {
    cdev_sim_crash (c->cd, 0);
    test_log_clear ();
  }
  assert_int_equal (backing_memory_create (EXPORT_BYTES, &c->b), 0);
  assert_int_equal (backing_pwrite (c->b, copy, EXPORT_BYTES, 0, 0), 0);
  free (copy);
}

void
ctx_detach (struct ctx *c)
{
  detach (c, false);
}

void
ctx_crash (struct ctx *c)
{
  detach (c, true);
}

void
ctx_open (struct ctx *c, const char *name, unsigned journal_delay_ms,
          unsigned flags)
{
  const bool checksums = !(flags & CTX_NO_CHECKSUMS);

  memset (c, 0, sizeof *c);
  c->name = name;
  c->flags = flags;
  c->mode = NCACHE_MODE_WRITEBACK;
  c->journal_delay_ms = journal_delay_ms;
  test_log_clear ();
  assert_int_equal (cdev_sim_create (DEVICE_BYTES, &c->cd), 0);
  if (!checksums) {
    const struct nc_format_options o = {
      .bucket_bytes = BUCKET_BYTES, .quiet = true, .no_data_checksums = true,
    };

    assert_int_equal (nc_format (c->cd, &o), 0);
  }
  ctx_attach (c, true);
  assert_int_equal (c->dev->dc != NULL, checksums);
  assert_int_equal (c->dev->sb.bucket_blocks, BUCKET_BLOCKS);
  c->model = calloc (1, EXPORT_BYTES);
  c->buf = malloc (EXPORT_BYTES);
  assert_non_null (c->model);
  assert_non_null (c->buf);
}

void
ctx_close (struct ctx *c)
{
  ncache_close (c->nc);
  ncache_device_close (c->dev);
  cdev_close (c->cd);
  free (c->model);
  free (c->buf);
}

void
fill (struct ctx *c, uint64_t offset, size_t len, unsigned tag)
{
  size_t i;

  for (i = 0; i < len; i++)
    c->model[offset + i] = (unsigned char) (seed * 31 + tag * 131 +
                                            (offset + i) * 7 +
                                            ((offset + i) >> 12));
}

void
write_pattern (struct ctx *c, uint64_t offset, size_t len, unsigned tag,
               uint32_t flags)
{
  fill (c, offset, len, tag);
  assert_int_equal (ncache_pwrite (c->nc, c->model + offset, len, offset,
                                   flags), 0);
}

uint64_t
where (struct ctx *c, uint64_t block, struct nc_key *key)
{
  struct btree_piece p;

  assert_int_equal (btree_lookup (c->dev->bt, c->nc->export_id, block,
                                  block + 1, &p, 1, NULL), 1);
  assert_true (p.found);
  if (key != NULL)
    *key = p.key;
  return cache_data_offset (c->dev, p.key.bucket, p.key.offset);
}

void
check_range (struct ctx *c, uint64_t lo, uint64_t hi)
{
  assert_int_equal (ncache_pread (c->nc, c->buf, hi - lo, lo, 0), 0);
  assert_memory_equal (c->buf, c->model + lo, hi - lo);
}

struct ncache_device_stats
dstats (struct ctx *c)
{
  struct ncache_device_stats st;

  ncache_device_get_stats (c->dev, &st);
  return st;
}
