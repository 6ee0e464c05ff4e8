/* SPDX-License-Identifier: BSD-3-Clause */
/* scrub.c — nbdcache check --data: every cached block read and verified.
 *
 * WHAT: reads, read-only, the data of every current data key the index
 * walk and the journal met (inspect.c kept them) and verifies each block
 * against the cache's data checksum region (datacsum.h), counting the
 * blocks that fail per export, clean and dirty.  A progress bar on a
 * terminal (progress.c), as nbdcache flush draws one.
 * WHY: a block that fails its checksum is found by the server only when
 * a client reads it or writeback reaches it; an admin wants to know
 * before: a damaged dirty block is data the backing store never got.
 * A block of a key the newest journal write carries inline (journal.c
 * REDO) is not verified but counted apart: the next open writes it back
 * from the entry with a fresh checksum word, so what it holds now (after
 * a crash, perhaps a data or region write that never arrived) is not
 * what will be read.
 * INVARIANTS: never writes (the region is opened read-only); a key whose
 * bucket gen moved on is not the data's owner any more and is skipped; a
 * block under two keys (a journal key over a node's) is read twice and
 * counted twice, which only happens for blocks the journal rewrote.
 * THREADS AND LOCKS: one thread.
 * FAILURE: a read error stops the scrub (-errno, logged by the cdev).
 * NOT HERE: the report (check.c).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "bkey.h"
#include "bucket.h"
#include "cdev.h"
#include "compiler.h"
#include "datacsum.h"
#include "journal.h"
#include "log.h"
#include "progress.h"
#include "super.h"

#define BLK ((uint64_t) NC_BLOCK_BYTES)

/* The keys whose data the newest journal write carries. */
struct redo_set {
  struct nc_key *k;
  size_t n, cap;
};

static int
redo_add (void *opaque, const struct nc_key *k, const void *data)
{
  struct redo_set *rs = opaque;
  struct nc_key *v;

  (void) data;
  if (rs->n == rs->cap) {
    rs->cap = rs->cap ? rs->cap * 2 : 16;
    v = realloc (rs->k, rs->cap * sizeof *v);
    if (v == NULL)
      return -ENOMEM;
    rs->k = v;
  }
  rs->k[rs->n++] = *k;
  return 0;
}

/* Is device block `block` of bucket, gen one the next open rewrites? */
static bool
redone (const struct redo_set *rs, uint32_t bucket, uint8_t gen,
        uint32_t offset)
{
  size_t i;

  for (i = 0; i < rs->n; i++)
    if (rs->k[i].bucket == bucket && rs->k[i].gen == gen &&
        offset >= rs->k[i].offset &&
        offset - rs->k[i].offset < rs->k[i].size)
      return true;
  return false;
}

int
inspect_scrub (struct inspect *in, struct scrub_result *res)
{
  const struct nc_sb *sb = &in->sb;
  struct datacsum *dc;
  struct redo_set rs = { 0 };
  uint64_t total = 0, done = 0;
  uint8_t *buf = NULL;
  size_t i;
  int r;

  memset (res, 0, sizeof *res);
  if ((r = datacsum_open (in->cd, sb, true, &dc)) < 0)
    return r;
  if (dc == NULL)
    return 0;
  res->has_checksums = true;
  buf = cdev_alloc_buffer ((size_t) sb->bucket_blocks * BLK);
  if (buf == NULL ||
      (in->journal != NULL &&
       (r = journal_redo (in->journal, redo_add, &rs)) < 0)) {
    free (buf);
    free (rs.k);
    datacsum_close (dc);
    return buf == NULL ? -ENOMEM : r;
  }
  for (i = 0; i < in->nr_data_keys; i++)
    total += in->data_keys[i].size;
  progress_start (&in->progress, "verifying data", total);
  admin_set_progress (&in->progress);

  for (i = 0; i < in->nr_data_keys && r == 0; i++) {
    const struct nc_key *k = &in->data_keys[i];
    uint64_t block = (uint64_t) k->bucket * sb->bucket_blocks + k->offset;
    struct scrub_export *x = &res->x[MIN (k->export_id, NC_MAX_EXPORTS)];
    uint64_t bad;

    done += k->size;
    if (k->bucket < sb->data_first || k->bucket >= sb->nbuckets ||
        k->offset + (uint64_t) k->size > sb->bucket_blocks ||
        bucket_gen (in->bs, k->bucket) != k->gen)
      continue;                 /* not current: not this key's data */
    r = cdev_pread (in->cd, buf, (size_t) k->size * BLK, block * BLK);
    if (r < 0)
      break;
    if (rs.n == 0)
      bad = datacsum_verify (dc, block, k->size, buf, NULL);
    else {
      uint32_t b, skipped = 0;

      for (bad = 0, b = 0; b < k->size; b++) {
        if (redone (&rs, k->bucket, k->gen, k->offset + b))
          skipped++;
        else
          bad += datacsum_verify (dc, block + b, 1, buf + b * BLK, NULL);
      }
      res->redone += skipped;
    }
    x->blocks += k->size;
    res->blocks += k->size;
    if (bkey_is_dirty (k)) {
      x->bad_dirty += bad;
      res->bad_dirty += bad;
    }
    else {
      x->bad_clean += bad;
      res->bad_clean += bad;
    }
    if (progress_due (&in->progress))
      progress_draw (&in->progress, done, "%" PRIu64 " corrupt",
                     res->bad_clean + res->bad_dirty);
  }
  progress_end (&in->progress);
  admin_set_progress (NULL);
  free (rs.k);
  free (buf);
  datacsum_close (dc);
  return r;
}
