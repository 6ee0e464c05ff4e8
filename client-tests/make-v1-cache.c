/* SPDX-License-Identifier: BSD-3-Clause */
/* make-v1-cache.c — turn a (stopped) version 2 cache into the version 1
 * cache that nbdcache 0.1 of format version 1 would have written, for the
 * upgrade test (test-format-upgrade.sh).
 *
 * WHAT: reads the superblock, writes its version 1 form (super_to_v1:
 * the export table in the head, 15 slots, ids and URIs as they are) to
 * both copies (seq s in slot s % 2, s - 1 in the other), zeroes the
 * version 2 export tables, syncs.  Bsets, prio copies and journal entries
 * are the same in both versions, so the result is byte for byte a
 * version 1 cache except for the unused rest of bucket 0.
 * WHY: the test needs a version 1 cache with data in it, without a
 * binary fixture or a build of the old code.
 * FAILURE: exit 1 with a message (not a version 2 cache, more than 15
 * exports, I/O).  A fixture for tests only: never installed.
 */
#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdev.h"
#include "csum.h"
#include "ondisk.h"
#include "super.h"

int
main (int argc, char **argv)
{
  struct cdev_file_options o = { 0 };
  struct nc_sb *sb = calloc (1, sizeof *sb);
  struct nc_sb_v1 *v1 = cdev_alloc_buffer (NC_BLOCK_BYTES);
  uint8_t *zero;
  struct cdev *cd;
  uint32_t version;
  size_t tbytes;
  int slot, r;

  if (argc != 2 || sb == NULL || v1 == NULL) {
    fprintf (stderr, "usage: make-v1-cache CACHE\n");
    return 1;
  }
  if (cdev_file_open (argv[1], &o, &cd) < 0 ||
      super_read_version (cd, sb, NULL, &version) < 0)
    return 1;
  if (version != NC_FORMAT_VERSION) {
    fprintf (stderr, "make-v1-cache: %s is not a version %u cache\n",
             argv[1], NC_FORMAT_VERSION);
    return 1;
  }
  tbytes = (size_t) sb->table_blocks * NC_BLOCK_BYTES * 2;
  zero = cdev_alloc_buffer (tbytes);
  if (zero == NULL)
    return 1;
  memset (zero, 0, tbytes);
  r = cdev_pwrite (cd, zero, tbytes, super_table_offset (sb, 0), 0);
  for (slot = 0; slot < NC_SB_SLOTS && r == 0; slot++) {
    uint64_t seq = sb->seq % 2 == (uint64_t) slot ? sb->seq : sb->seq - 1;
    uint64_t keep = sb->seq;

    sb->seq = seq;
    if (super_to_v1 (sb, v1) < 0) {
      fprintf (stderr, "make-v1-cache: the export table does not fit "
               "version 1\n");
      return 1;
    }
    sb->seq = keep;
    r = cdev_pwrite (cd, v1, NC_BLOCK_BYTES,
                     (uint64_t) slot * NC_BLOCK_BYTES, 0);
  }
  if (r == 0)
    r = cdev_sync (cd);
  cdev_close (cd);
  free (zero);
  free (v1);
  free (sb);
  if (r < 0) {
    fprintf (stderr, "make-v1-cache: writing %s failed\n", argv[1]);
    return 1;
  }
  return 0;
}
