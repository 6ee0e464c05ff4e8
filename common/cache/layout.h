/* SPDX-License-Identifier: BSD-3-Clause */
/* layout.h — where format puts things: the geometry of a new cache.
 *
 * WHAT: nc_layout_plan computes, from a device size and the format
 * options (bucket size, journal size), the regions nc_format writes
 * (superblock bucket, journal, two prio copies, the data checksum
 * region, data) — or says why they
 * do not fit and how large the device would have to be.
 * WHY: the server's config check (nbdcached --check-config, the plugin)
 * must refuse `size =` too small for a cache *before* a file is created,
 * with the same numbers format would use; a header of pure arithmetic is
 * the one place both can share without the config linking the engine.
 * INVARIANTS: a layout that nc_layout_plan accepts passes super_validate
 * (format.c checks that at every format); min_device_bytes is the smallest
 * device (whole buckets) on which the same options fit.
 * THREADS: pure functions.  FAILURE: a negative errno and l->why.
 * NOT HERE: writing anything (format.c: nc_format).
 */
#ifndef NBDCACHE_LAYOUT_H
#define NBDCACHE_LAYOUT_H

#include <errno.h>
#include <stdint.h>

#include "ondisk.h"

#define NC_LAYOUT_JOURNAL_BUCKETS_MIN 4u
#define NC_LAYOUT_JOURNAL_BYTES_MAX (UINT64_C (128) << 20)
/* Data buckets a cache must have at least (super_validate). */
#define NC_LAYOUT_MIN_DATA_BUCKETS 8u
_Static_assert (NC_LAYOUT_MIN_DATA_BUCKETS == 8, "the message says 8");

struct nc_layout {
  uint64_t bucket_bytes, nbuckets, journal_buckets, prio_buckets;
  uint64_t csum_buckets;        /* the data checksum region (ondisk.h) */
  uint64_t data_first;
  uint64_t min_device_bytes;    /* -EFBIG: the smallest device that fits */
  const char *why;              /* on failure: what does not fit */
};

static inline uint64_t
nc_layout_div_round_up (uint64_t n, uint64_t d)
{
  return n / d + (n % d != 0);
}

/* Buckets one prio copy needs for nbuckets buckets. */
static inline uint64_t
nc_layout_prio_buckets (uint64_t nbuckets, uint64_t bucket_bytes)
{
  return nc_layout_div_round_up (sizeof (struct nc_prio) +
                                 nbuckets * sizeof (struct nc_prio_entry),
                                 bucket_bytes);
}

/* Buckets the data checksum region needs for nbuckets buckets: a 32-bit
 * word per 4 KiB block, so 1/1024 of the device, at least one bucket.
 */
static inline uint64_t
nc_layout_csum_buckets (uint64_t nbuckets)
{
  return nc_layout_div_round_up (nbuckets, NC_DCSUM_PER_BLOCK);
}

/* Metadata buckets before the data area for nbuckets buckets. */
static inline uint64_t
nc_layout_meta_buckets (uint64_t nbuckets, uint64_t bucket_bytes,
                        uint64_t journal_buckets)
{
  return 1 + journal_buckets
    + 2 * nc_layout_prio_buckets (nbuckets, bucket_bytes)
    + nc_layout_csum_buckets (nbuckets);
}

/* The layout of a device of device_bytes formatted with bucket_bytes and
 * journal_bytes (0 = the defaults: 1 MiB buckets; a journal of 1/32 of
 * the device, at least NC_LAYOUT_JOURNAL_BUCKETS_MIN buckets and at most
 * NC_LAYOUT_JOURNAL_BYTES_MAX).  0, or -EINVAL (bucket size not a power
 * of two in 64 KiB .. 64 MiB), -ERANGE (journal_bytes below
 * NC_LAYOUT_JOURNAL_BUCKETS_MIN buckets), -EFBIG (the device is too
 * small: l->min_device_bytes says how large it must be).
 */
static inline int
nc_layout_plan (uint64_t device_bytes, uint64_t bucket_bytes,
                uint64_t journal_bytes, struct nc_layout *l)
{
  uint64_t need;

  l->why = NULL;
  l->min_device_bytes = 0;
  if (bucket_bytes == 0)
    bucket_bytes = (uint64_t) NC_BUCKET_BLOCKS_DEFAULT * NC_BLOCK_BYTES;
  l->bucket_bytes = bucket_bytes;
  if ((bucket_bytes & (bucket_bytes - 1)) != 0 ||
      bucket_bytes < (uint64_t) NC_BUCKET_BLOCKS_MIN * NC_BLOCK_BYTES ||
      bucket_bytes > (uint64_t) NC_BUCKET_BLOCKS_MAX * NC_BLOCK_BYTES) {
    l->why = "the bucket size must be a power of two from 64 KiB to 64 MiB";
    return -EINVAL;
  }
  l->nbuckets = device_bytes / bucket_bytes;
  if (l->nbuckets > UINT32_MAX)
    l->nbuckets = UINT32_MAX;
  if (journal_bytes != 0) {
    if (journal_bytes < NC_LAYOUT_JOURNAL_BUCKETS_MIN * bucket_bytes) {
      l->why = "the journal needs at least 4 buckets";
      return -ERANGE;
    }
  }
  else {
    journal_bytes = device_bytes / 32;
    if (journal_bytes > NC_LAYOUT_JOURNAL_BYTES_MAX)
      journal_bytes = NC_LAYOUT_JOURNAL_BYTES_MAX;
    if (journal_bytes < NC_LAYOUT_JOURNAL_BUCKETS_MIN * bucket_bytes)
      journal_bytes = NC_LAYOUT_JOURNAL_BUCKETS_MIN * bucket_bytes;
  }
  l->journal_buckets = nc_layout_div_round_up (journal_bytes, bucket_bytes);
  l->prio_buckets = nc_layout_prio_buckets (l->nbuckets, bucket_bytes);
  l->csum_buckets = nc_layout_csum_buckets (l->nbuckets);
  l->data_first = nc_layout_meta_buckets (l->nbuckets, bucket_bytes,
                                          l->journal_buckets);
  if (l->data_first <= l->nbuckets &&
      l->nbuckets - l->data_first >= NC_LAYOUT_MIN_DATA_BUCKETS)
    return 0;
  /* The smallest bucket count that fits this journal; the prio copies
   * and the checksum region grow with it, so settle that by iterating.
   */
  need = 1 + l->journal_buckets + 3 + NC_LAYOUT_MIN_DATA_BUCKETS;
  while (nc_layout_meta_buckets (need, bucket_bytes, l->journal_buckets)
         + NC_LAYOUT_MIN_DATA_BUCKETS > need)
    need = nc_layout_meta_buckets (need, bucket_bytes, l->journal_buckets)
      + NC_LAYOUT_MIN_DATA_BUCKETS;
  l->min_device_bytes = need * bucket_bytes;
  l->why = "the device is too small for the superblock bucket, the "
    "journal, two prio copies, the data checksum region and 8 data "
    "buckets";
  return -EFBIG;
}

#endif /* NBDCACHE_LAYOUT_H */
