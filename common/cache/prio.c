/* SPDX-License-Identifier: BSD-3-Clause */
/* prio.c — the prio copies: every bucket's gen and priority on disk.
 *
 * WHAT: reads, writes, formats and checks the two prio copies of ondisk.h
 * (struct nc_prio + one nc_prio_entry per bucket; copy A at bucket
 * prio_first, copy B prio_buckets later).  Only the used part of a copy is
 * written: the header and entries rounded up to a block.
 * WHY: a bucket's gen must be durable before the bucket is reused, so that
 * after a crash every pointer into its previous life is stale; the prios
 * let a warm cache keep its LRU order across restarts.
 *
 * INVARIANTS:
 * - A valid copy has the magic, the format version, the superblock's
 *   uuid and nbuckets, seq >= 1, and csum = nc_csum over
 *   [8, 64 + nbuckets * 4).  The valid copy with the higher seq wins.
 * - A write goes to the copy that is not the newest valid one, with the
 *   newest seq + 1, then syncs; so a torn write leaves the other copy
 *   intact, and gens in the newest copy are never older than in memory
 *   at the time of the previous successful write.
 * - So with both copies valid, no gen in the newer one is behind the
 *   older one's (modulo 256, within BUCKET_GEN_MAX_DISTANCE): prio_read
 *   refuses (-EBADMSG) a pair where one moved backwards.
 *
 * THREADS AND LOCKS: prio_read and prio_write take bs->lock (and hold it
 * across their I/O: a prio write freezes the gens it writes and
 * serialises the allocators); prio_write_locked expects it held.
 * prio_format and prio_check_copy touch only the device.
 *
 * FAILURE: a copy that fails a check is never used.  One bad copy: a
 * warning naming it and why, the other is used.  Both bad: -EBADMSG with
 * one error naming the device, both copies and why (or the read error).
 * Both valid but a gen moved backwards: -EBADMSG naming the bucket.
 * Write errors: -errno, logged with the copy.
 *
 * NOT HERE: what gens mean for the allocator (bucket.c).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define BUCKET_INTERNALS
#include "bucket.h"
#include "cdev.h"
#include "csum.h"
#include "invariant.h"
#include "log.h"
#include "super.h"

#define NEVER_WRITTEN "never written"

static inline char
copy_name (int copy)
{
  return copy == 0 ? 'A' : 'B';
}

static uint64_t
copy_offset (const struct nc_sb *sb, int copy)
{
  return super_bucket_offset (sb, sb->prio_first +
                              (copy == 0 ? 0 : sb->prio_buckets));
}

/* Bytes covered by the checksum. */
static size_t
csum_bytes (const struct nc_sb *sb)
{
  return sizeof (struct nc_prio) +
    (size_t) sb->nbuckets * sizeof (struct nc_prio_entry);
}

static bool
all_zero (const void *buf, size_t len)
{
  const unsigned char *p = buf;
  size_t i;

  for (i = 0; i < len; i++)
    if (p[i] != 0)
      return false;
  return true;
}

/* NULL if the copy in p is valid for sb, else why not. */
static const char *
validate (const struct nc_prio *p, const struct nc_sb *sb)
{
  const char *why;

  why = NEVER_WRITTEN;
  if (all_zero (p, sizeof *p))
    goto bad;
  why = "bad magic";
  if (p->magic != NC_PRIO_MAGIC)
    goto bad;
  if (p->csum != nc_csum (p, csum_bytes (sb))) {
    why = p->nbuckets != sb->nbuckets ?
      "bucket count differs from the superblock" : "bad checksum";
    goto bad;
  }
  why = "unsupported format version";
  if (p->version != NC_META_VERSION)
    goto bad;
  why = "bucket count differs from the superblock";
  if (p->nbuckets != sb->nbuckets)
    goto bad;
  why = "uuid differs from the superblock";
  if (memcmp (p->uuid, sb->uuid, sizeof p->uuid) != 0)
    goto bad;
  why = "seq is 0";
  if (p->seq == 0)
    goto bad;
  return NULL;

 bad:
  return why;
}

/* Fill buf (prio_copy_bytes) with a copy: header, entries, csum. */
static void
fill_header (struct nc_prio *p, const struct nc_sb *sb, uint64_t seq)
{
  memset (p, 0, sizeof *p);
  p->magic = NC_PRIO_MAGIC;
  p->version = NC_META_VERSION;
  p->nbuckets = sb->nbuckets;
  memcpy (p->uuid, sb->uuid, sizeof p->uuid);
  p->seq = seq;
}

/* Gens only move forward: a bucket's gen in the newer copy is never
 * behind its gen in the older one (within the gen-distance limit, modulo
 * 256).  A gen that moved backwards would bring stale keys back to life.
 * 0, or -EBADMSG logged naming the bucket and both copies.
 */
static int
check_gens_forward (const struct bucket_set *bs, const struct nc_prio *newer,
                    const struct nc_prio *older, int newer_copy)
{
  uint32_t i;

  for (i = 0; i < bs->nbuckets; i++) {
    uint8_t n = newer->entries[i].gen, o = older->entries[i].gen;

    if ((uint8_t) (n - o) > BUCKET_GEN_MAX_DISTANCE) {
      log_error ("cache device %s: bucket %" PRIu32 " is at gen %u in prio "
                 "copy %c (seq %" PRIu64 ") but at gen %u in the older copy "
                 "%c (seq %" PRIu64 "): a gen moved backwards; the prios are "
                 "corrupt", bs->cd->path, i, n, copy_name (newer_copy),
                 newer->seq, o, copy_name (1 - newer_copy), older->seq);
      return -EBADMSG;
    }
  }
  return 0;
}

int
prio_read (struct bucket_set *bs)
{
  const struct nc_sb *sb = &bs->sb;
  size_t bytes = prio_copy_bytes (sb);
  struct nc_prio *bufs[2] = { bs->prio_buf, NULL };
  const char *why[2];
  int io_err = 0, use, r, c;
  uint32_t i;

  bufs[1] = cdev_alloc_buffer (bytes);
  if (bufs[1] == NULL)
    return -ENOMEM;

  pthread_mutex_lock (&bs->lock);
  for (c = 0; c < 2; c++) {
    r = cdev_pread (bs->cd, bufs[c], bytes, copy_offset (sb, c));
    if (r < 0) {
      why[c] = "read error";
      io_err = r;
    }
    else
      why[c] = validate (bufs[c], sb);
  }

  if (why[0] != NULL && why[1] != NULL) {
    r = io_err != 0 ? io_err : -EBADMSG;
    log_error ("cache device %s: no valid prio copy: copy A: %s; copy B: %s",
               bs->cd->path, why[0], why[1]);
    goto out;
  }
  if (why[0] == NULL && why[1] == NULL) {
    use = bufs[1]->seq > bufs[0]->seq ? 1 : 0;
    if ((r = check_gens_forward (bs, bufs[use], bufs[1 - use], use)) < 0)
      goto out;
  }
  else {
    use = why[0] == NULL ? 0 : 1;
    if (strcmp (why[1 - use], NEVER_WRITTEN) == 0)
      log_debug ("cache device %s: prio copy %c never written; using copy "
                 "%c", bs->cd->path, copy_name (1 - use), copy_name (use));
    else
      log_warning ("cache device %s: prio copy %c is invalid (%s); using "
                   "copy %c (seq %" PRIu64 ")", bs->cd->path,
                   copy_name (1 - use), why[1 - use], copy_name (use),
                   bufs[use]->seq);
  }

  for (i = 0; i < bs->nbuckets; i++) {
    __atomic_store_n (&bs->b[i].gen, bufs[use]->entries[i].gen,
                      __ATOMIC_RELEASE);
    __atomic_store_n (&bs->b[i].disk_gen, bufs[use]->entries[i].gen,
                      __ATOMIC_RELEASE);
    __atomic_store_n (&bs->b[i].prio, bufs[use]->entries[i].prio,
                      __ATOMIC_RELAXED);
  }
  bucket_reset_locked (bs);
  bs->prio_seq = bufs[use]->seq;
  bs->prio_copy = use;
  r = 0;

 out:
  pthread_mutex_unlock (&bs->lock);
  free (bufs[1]);
  return r;
}

int
prio_write_locked (struct bucket_set *bs)
{
  ASSERT_HELD (&bs->lock);
  const struct nc_sb *sb = &bs->sb;
  struct nc_prio *p = bs->prio_buf;
  size_t bytes = prio_copy_bytes (sb);
  uint64_t seq = bs->prio_seq + 1;
  int copy = 1 - bs->prio_copy;
  uint32_t i;
  int r;

  memset (p, 0, bytes);
  fill_header (p, sb, seq);
  for (i = 0; i < bs->nbuckets; i++) {
    p->entries[i].gen = __atomic_load_n (&bs->b[i].gen, __ATOMIC_ACQUIRE);
    p->entries[i].prio = __atomic_load_n (&bs->b[i].prio, __ATOMIC_RELAXED);
  }
  p->csum = nc_csum (p, csum_bytes (sb));

  if ((r = cdev_pwrite (bs->cd, p, bytes, copy_offset (sb, copy), 0)) < 0 ||
      (r = cdev_sync (bs->cd)) < 0) {
    log_error ("cache device %s: writing prio copy %c (seq %" PRIu64
               ") failed: %s", bs->cd->path, copy_name (copy), seq,
               strerror (-r));
    return r;
  }
  /* Durable now: keys stale against these gens stay stale after a crash
   * (bnode_drop_stale may drop them unjournaled).
   */
  for (i = 0; i < bs->nbuckets; i++)
    __atomic_store_n (&bs->b[i].disk_gen, p->entries[i].gen,
                      __ATOMIC_RELEASE);
  bs->prio_seq = seq;
  bs->prio_copy = copy;
  bs->prio_writes++;
  return 0;
}

int
prio_write (struct bucket_set *bs)
{
  int r;

  pthread_mutex_lock (&bs->lock);
  r = prio_write_locked (bs);
  pthread_mutex_unlock (&bs->lock);
  return r;
}

/* Copy A with seq 1 and every gen and prio 0.  The first block of copy B
 * is zeroed too, so a copy left by an earlier format of the device can
 * never win over the fresh one.
 */
int
prio_format (struct cdev *cd, const struct nc_sb *sb)
{
  size_t bytes = prio_copy_bytes (sb);
  struct nc_prio *p;
  int r;

  p = cdev_alloc_buffer (bytes);
  if (p == NULL)
    return -ENOMEM;
  fill_header (p, sb, 1);
  p->csum = nc_csum (p, csum_bytes (sb));
  r = cdev_pwrite (cd, p, bytes, copy_offset (sb, 0), 0);
  if (r == 0) {
    memset (p, 0, NC_BLOCK_BYTES);
    r = cdev_pwrite (cd, p, NC_BLOCK_BYTES, copy_offset (sb, 1), 0);
  }
  if (r < 0)
    log_error ("cache device %s: writing the prio copies failed: %s",
               cd->path, strerror (-r));
  free (p);
  return r;
}

const char *
prio_check_copy (struct cdev *cd, const struct nc_sb *sb, int copy,
                 uint64_t *seq)
{
  size_t bytes = prio_copy_bytes (sb);
  struct nc_prio *p;
  const char *why;

  if (copy != 0 && copy != 1)
    return "no such copy";
  p = cdev_alloc_buffer (bytes);
  if (p == NULL)
    return "out of memory";
  if (cdev_pread (cd, p, bytes, copy_offset (sb, copy)) < 0)
    why = "read error";
  else
    why = validate (p, sb);
  if (why == NULL)
    *seq = p->seq;
  free (p);
  return why;
}
