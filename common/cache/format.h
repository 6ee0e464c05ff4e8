/* SPDX-License-Identifier: BSD-3-Clause */
/* format.h — write a fresh, empty cache onto a device.
 *
 * Owns: nothing after it returns.
 * Threads: the caller has the device to itself (locked exclusively, or a
 * single-threaded tool).
 * On disk: both superblock copies, prio copy A with every gen 0, an empty
 * journal entry with seq 1, the journal ring zeroed (format.c says in
 * which order, and why a crash at any point is safe).
 * Not here: the superblock's rules (super.h), the geometry's arithmetic
 * (layout.h), the prio and journal formats (bucket.h, journal.h).
 */
#ifndef NBDCACHE_FORMAT_H
#define NBDCACHE_FORMAT_H

#include <stdbool.h>
#include <stdint.h>

struct cdev;

struct nc_format_options {
  uint32_t bucket_bytes;        /* 0 = default 1 MiB */
  uint64_t journal_bytes;       /* 0 = default: 1/32 of the device, at least
                                   4 buckets, at most 128 MiB */
  const uint8_t *uuid;          /* 16 bytes; NULL = random */
  bool quiet;                   /* no progress output */
  bool no_data_checksums;       /* tests: a cache as made before data
                                   checksums (no NC_FEATURE_DATA_CSUM) */
};

/* Format the whole device.  Refuses (-EINVAL, logged) a device too small
 * for NC_MIN_DATA_BUCKETS data buckets, or a bad bucket size.  Syncs
 * before returning.  Afterwards super_read succeeds and the journal replays
 * to an empty tree.  opts NULL = all defaults.
 */
int nc_format (struct cdev *cd, const struct nc_format_options *opts);

#endif /* NBDCACHE_FORMAT_H */
