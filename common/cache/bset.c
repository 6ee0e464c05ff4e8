/* SPDX-License-Identifier: BSD-3-Clause */
/* bset.c — a btree node's bucket on disk (see bset.h).
 *
 * WHAT: builds the bset a node write appends (header, sorted keys, zero
 * padding, checksum), reads a node bucket back by walking its chain of
 * bsets and keeping the newest valid one, and checks a node's keys
 * (order, disjointness, validity, parent bounds).
 * WHY: everything the btree trusts about a node it read comes through
 * here, so there is one place that decides "valid".
 * INVARIANTS:
 * - A bset starts at a block boundary; bset seq n + 1 follows seq n
 *   directly (at the next block after it), seq 1 at block 0.
 * - Walking stops at the first bset that is not a valid successor: a
 *   torn or lost last write (bad checksum), blocks from a previous node
 *   in the same bucket (other nonce) or never written.  The newest valid
 *   bset before it is the node; the next bset goes where it stopped.
 * - A bset's padding after its keys is zero, so its key count and its
 *   length agree (checked when the bset is known durable, see below: a
 *   torn write can leave old sectors in the padding of a bset whose
 *   keys and checksum landed).
 *
 * TORN OR CORRUPT: only a node's last write can be torn (a node write
 * syncs before the next).  A bset's journal_seq is the journal's open seq
 * X when its write began; the write (pwrite and sync) holds the btree
 * lock, and closing entry X needs that lock, so X is closed only after
 * the bset is durable.  Hence a bset whose journal_seq is at or below the
 * newest durable entry E was durable: if it is damaged now, that is
 * corruption, and its keys may exist nowhere else.  A torn bset has
 * journal_seq > E, and then falling back to the previous bset is safe:
 * the keys it adds came in entries from the node's pin on, which the
 * replay range (it starts at or before every pin) still holds.
 * So the walk's stop is accepted only if it looks like that:
 * - a block that is not ours (magic, uuid, nonce): the end of the chain,
 *   unless one of our newer bsets follows within the largest bset's
 *   length (a bset lost in the middle);
 * - one of ours with a bad checksum (or an impossible length) but a sane
 *   header (seq = previous + 1, level, version) and E < journal_seq <=
 *   torn_jseq_max (a ring's worth of seqs past E: the journal never
 *   opens more, even while its commits fail), with no newer bset after
 *   it: torn.  The caller zeroes
 *   its first block when it can write (bset_node_info.torn_block): once
 *   the journal has moved past its journal_seq it would read as
 *   corruption.
 * Everything else — ours with a valid checksum but a wrong seq, level,
 * version, key count or padding; ours with journal_seq <= E; a newer
 * bset after the stop — is corruption: -EBADMSG, one message naming the
 * bucket, block, device offset and reason.  With E unknown (0: tests of
 * the bare btree) only the journal_seq rule is off.
 * A node's newest bset whose first block lost its magic, uuid or nonce
 * cannot be told from blocks never written after the previous bset in
 * this format (nothing outside the bucket records a node's seq): that
 * one is still taken as the end of the chain.
 * THREADS AND LOCKS: none; the caller serialises.
 * FAILURE: -EBADMSG with one log line naming the bucket and the reason
 * when not even the first bset is valid or the keys are not a valid node;
 * the device read's -errno (logged by the cdev).
 * NOT HERE: when and where nodes are written, the cache (btree.c).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "bkey.h"
#include "bset.h"
#include "cdev.h"
#include "compiler.h"
#include "csum.h"
#include "log.h"
#include "ondisk.h"
#include "super.h"

void
bset_geom_init (struct bset_geom *g, const struct nc_sb *sb,
                uint32_t max_keys)
{
  /* A node bucket holds bsets in at most its first MiB (or two largest
   * bsets, if that is more).
   */
  const uint32_t span_min = (UINT32_C (1) << 20) / NC_BLOCK_BYTES;

  memcpy (g->uuid, sb->uuid, sizeof g->uuid);
  g->bucket_blocks = sb->bucket_blocks;
  g->data_first = sb->data_first;
  g->nbuckets = sb->nbuckets;
  g->max_keys = max_keys;
  g->cap_keys = max_keys + 2;
  g->max_bset_blocks = bset_blocks (g->cap_keys);
  g->span_blocks = MIN (sb->bucket_blocks,
                        MAX (span_min, 2 * g->max_bset_blocks));
  g->read_blocks = MIN (g->span_blocks, g->max_bset_blocks + 1);
  g->torn_jseq_min = 0;
  g->torn_jseq_max = 0;
}

void
bset_build (const struct bset_geom *g, void *buf, uint16_t level,
            uint64_t nonce, uint64_t seq, uint64_t journal_seq,
            const struct nc_key *keys, uint32_t nkeys)
{
  struct nc_bset *h = buf;
  size_t bytes = sizeof *h + (size_t) nkeys * sizeof (struct nc_key);
  size_t padded = (size_t) bset_blocks (nkeys) * NC_BLOCK_BYTES;

  memset (h, 0, sizeof *h);
  h->magic = NC_BSET_MAGIC;
  h->version = NC_META_VERSION;
  h->level = level;
  memcpy (h->uuid, g->uuid, sizeof h->uuid);
  h->nonce = nonce;
  h->seq = seq;
  h->journal_seq = journal_seq;
  h->nkeys = nkeys;
  if (nkeys > 0)
    memcpy (h->keys, keys, (size_t) nkeys * sizeof (struct nc_key));
  memset ((char *) buf + bytes, 0, padded - bytes);
  h->csum = nc_csum (buf, bytes);
}

const char *
bset_check_keys (const struct bset_geom *g, uint16_t level,
                 const struct nc_key *keys, uint32_t nkeys,
                 struct bpos lo, struct bpos hi, uint32_t *bad)
{
  const char *why = NULL;
  uint32_t i = 0;

  /* Sorted keys lie within (lo, hi] if the first and the last do, and a
   * leaf's keys start at or after lo.end if the first of lo's export
   * does (the rest are disjoint and after it).
   */
  if (nkeys > 0) {
    why = "key is not above the node's lower bound";
    if (bpos_cmp (bpos_of (&keys[0]), lo) <= 0)
      goto bad;
    i = nkeys - 1;
    why = "key is beyond the node's upper bound";
    if (bpos_cmp (bpos_of (&keys[i]), hi) > 0)
      goto bad;
    i = 0;
    why = "key starts below the node's lower bound";
    if (level == 0 && keys[0].export_id == lo.export_id &&
        bkey_start (&keys[0]) < lo.end)
      goto bad;
  }
  for (i = 0; i < nkeys; i++) {
    const struct nc_key *k = &keys[i];

    if (level == 0)
      why = bkey_invalid_leaf (k, g->bucket_blocks, g->data_first,
                               g->nbuckets);
    else
      why = bkey_invalid_ptr (k, g->data_first, g->nbuckets);
    if (unlikely (why != NULL))
      goto bad;
    if (i > 0) {
      const struct nc_key *prev = &keys[i - 1];

      if (prev->export_id == k->export_id) {
        /* Same export: a leaf's keys must not overlap (which also makes
         * them sorted, sizes being >= 1); pointers must increase.
         */
        why = level == 0 ? "keys overlap or are not sorted"
          : "keys are not sorted";
        if (unlikely (level == 0 ? prev->end > bkey_start (k)
                      : prev->end >= k->end))
          goto bad;
      }
      else if (unlikely (prev->export_id > k->export_id)) {
        why = "keys are not sorted";
        goto bad;
      }
    }
  }
  if (level > 0) {
    i = nkeys;
    why = "interior node has no children";
    if (nkeys == 0)
      goto bad;
    i = nkeys - 1;
    why = "last child does not reach the node's upper bound";
    if (bpos_cmp (bpos_of (&keys[i]), hi) != 0)
      goto bad;
  }
  return NULL;

 bad:
  if (bad != NULL)
    *bad = i;
  return why;
}

/* Is the header one of this node incarnation's bsets (magic, uuid,
 * nonce)?  The nonce is 64 random bits per incarnation, so a match is not
 * an accident: it is this node's, whatever else is wrong with it.
 */
static bool
is_ours (const struct bset_geom *g, const struct nc_bset *h, uint64_t nonce)
{
  return h->magic == NC_BSET_MAGIC && h->nonce == nonce &&
    memcmp (h->uuid, g->uuid, sizeof h->uuid) == 0;
}

/* NULL if the header (one of ours) is a valid successor of seq prev_seq
 * (its checksum is checked separately), else why not.
 */
static const char *
check_header (const struct bset_geom *g, const struct nc_bset *h,
              uint16_t level, uint64_t prev_seq)
{
  if (h->version != NC_META_VERSION)
    return "unsupported format version";
  if (h->seq != prev_seq + 1)
    return prev_seq == 0 ? "first bset's seq is not 1" : "seq out of order";
  if (h->level != level)
    return "wrong level";
  if (h->nkeys > g->cap_keys)
    return "too many keys";
  return NULL;
}

/* Are bytes [from, to) of p zero? */
static bool
zero_bytes (const void *p, size_t from, size_t to)
{
  const unsigned char *c = p;

  for (; from < to; from++)
    if (c[from] != 0)
      return false;
  return true;
}

/* Make blocks [b, b + len) of the node bucket available in buf (which
 * holds [*win_lo, *win_hi)), re-reading from b if they are not; len is
 * at most g->read_blocks and b + len at most span_blocks.
 */
static int
window_at (const struct bset_geom *g, struct cdev *cd, void *buf,
           uint64_t base, uint32_t b, uint32_t len, uint32_t *win_lo,
           uint32_t *win_hi)
{
  uint32_t n = MIN (g->read_blocks, g->span_blocks - b);
  int r;

  if (b >= *win_lo && b + len <= *win_hi)
    return 0;
  r = cdev_pread (cd, buf, (size_t) n * NC_BLOCK_BYTES,
                  base + (uint64_t) b * NC_BLOCK_BYTES);
  if (r < 0)
    return r;
  *win_lo = b;
  *win_hi = b + n;
  return 0;
}

static inline const struct nc_bset *
block_at (const void *buf, uint32_t win_lo, uint32_t b)
{
  return (const struct nc_bset *) ((const char *) buf
                                   + (size_t) (b - win_lo) * NC_BLOCK_BYTES);
}

/* The walk stopped at block b: is one of our bsets newer than seq
 * within the largest bset's length after it?  A lost or damaged bset's
 * successor starts there.  0 and *at = the block (0: none), or -errno.
 */
static int
find_successor (const struct bset_geom *g, struct cdev *cd, void *buf,
                uint64_t base, uint32_t b, uint64_t nonce, uint64_t seq,
                uint32_t *win_lo, uint32_t *win_hi, uint32_t *at)
{
  uint32_t end = MIN (g->span_blocks, b + 1 + g->max_bset_blocks);
  uint32_t i;
  int r;

  *at = 0;
  for (i = b + 1; i < end; i++) {
    const struct nc_bset *h;

    if (i >= *win_hi) {
      /* Read only the blocks left to look at (fewer than read_blocks):
       * typically the newest bset's length beyond the node's read.
       */
      r = cdev_pread (cd, buf, (size_t) (end - i) * NC_BLOCK_BYTES,
                      base + (uint64_t) i * NC_BLOCK_BYTES);
      if (r < 0)
        return r;
      *win_lo = i;
      *win_hi = end;
    }
    h = block_at (buf, *win_lo, i);
    if (is_ours (g, h, nonce) && h->seq > seq) {
      *at = i;
      return 0;
    }
  }
  return 0;
}

int
bset_read_node (const struct bset_geom *g, struct cdev *cd, void *buf,
                uint32_t bucket, uint16_t level, uint64_t nonce,
                struct bpos lo, struct bpos hi, struct nc_key *keys,
                struct bset_node_info *info)
{
  const uint64_t base = (uint64_t) bucket * g->bucket_blocks * NC_BLOCK_BYTES;
  uint32_t win_lo = 0, win_hi = 0;      /* blocks held in buf */
  uint32_t b = 0, bad_key = 0, succ;
  struct bset_node_info found = { 0 };
  const char *why = NULL;
  bool ours = false, csum_ok = false;
  const char *stop_why = NULL;
  uint64_t stop_seq = 0, stop_jseq = 0;
  int r;

  while (b < g->span_blocks) {
    const struct nc_bset *h;
    uint32_t nb;
    size_t bytes;

    if ((r = window_at (g, cd, buf, base, b, 1, &win_lo, &win_hi)) < 0)
      return r;
    h = block_at (buf, win_lo, b);
    ours = is_ours (g, h, nonce);
    csum_ok = false;
    why = "not a bset of this node";
    if (!ours)
      break;
    stop_seq = h->seq;
    stop_jseq = h->journal_seq;
    why = "too many keys";
    if (h->nkeys > g->cap_keys)
      break;
    nb = bset_blocks (h->nkeys);
    why = "bset runs past the node's blocks";
    if (nb > g->span_blocks - b)
      break;
    /* The window holds any whole bset read from its start. */
    if ((r = window_at (g, cd, buf, base, b, nb, &win_lo, &win_hi)) < 0)
      return r;
    h = block_at (buf, win_lo, b);
    bytes = sizeof *h + (size_t) h->nkeys * sizeof (struct nc_key);
    why = "bad checksum";
    if (h->csum != nc_csum (h, bytes))
      break;
    csum_ok = true;
    if ((why = check_header (g, h, level, found.seq)) != NULL)
      break;
    /* Zero padding: the key count and the length agree.  Only for a
     * bset known durable: a torn write may land the keys (and the
     * checksum) but not the last sectors of padding.
     */
    why = "key count disagrees with the bset's length (padding not zero)";
    if (h->journal_seq < g->torn_jseq_min &&
        !zero_bytes (h, bytes, (size_t) nb * NC_BLOCK_BYTES))
      break;
    why = NULL;
    memcpy (keys, h->keys, (size_t) h->nkeys * sizeof (struct nc_key));
    found.nkeys = h->nkeys;
    found.seq = h->seq;
    found.journal_seq = h->journal_seq;
    found.nr_bsets++;
    b += nb;
    found.next_block = b;
  }

  if (found.seq == 0) {
    if (why == NULL)
      why = "no bset";
    log_error ("btree node in bucket %" PRIu32 " (level %u): first bset: %s",
               bucket, level, why);
    return -EBADMSG;
  }
  if (why != NULL) {
    /* TORN OR CORRUPT: a crash can tear only the node's last write, and
     * only while its keys are still in the journal's replay range.
     */
    stop_why = why;
    if (ours && csum_ok) {
      why = "a bset with a valid checksum breaks the format";
      goto corrupt;
    }
    if (ours) {
      const struct nc_bset *h = block_at (buf, win_lo, b);

      if ((why = check_header (g, h, level, found.seq)) != NULL)
        goto corrupt;
      why = "its journal entry is durable, so the bset was durable before "
        "it: not a torn write";
      if (stop_jseq < g->torn_jseq_min)
        goto corrupt;
      why = "its journal seq is newer than any the journal could have "
        "opened: not a torn write";
      if (g->torn_jseq_max != 0 && stop_jseq > g->torn_jseq_max)
        goto corrupt;
    }
    /* Only a chain whose newest good bset is durable can hide a lost
     * durable bset behind the stop (journal_seq never decreases along
     * the chain); a newer one's successors are torn-eligible and their
     * keys still in the journal.  That spares the extra read for nodes
     * written since open.
     */
    succ = 0;
    if ((g->torn_jseq_min == 0 || found.journal_seq < g->torn_jseq_min) &&
        (r = find_successor (g, cd, buf, base, b, nonce, found.seq,
                             &win_lo, &win_hi, &succ)) < 0)
      return r;
    if (succ != 0) {
      const struct nc_bset *h = block_at (buf, win_lo, succ);

      log_error ("btree node in bucket %" PRIu32 " (level %u): bset after "
                 "seq %" PRIu64 " at block %" PRIu32 " (device offset %"
                 PRIu64 ") is unusable (%s) but bset seq %" PRIu64 " follows "
                 "at block %" PRIu32 ": not a torn last write; the node is "
                 "corrupt", bucket, level, found.seq, b,
                 base + (uint64_t) b * NC_BLOCK_BYTES, stop_why, h->seq,
                 succ);
      return -EBADMSG;
    }
    if (ours) {
      log_info ("btree node in bucket %" PRIu32 " (level %u): bset seq %"
                PRIu64 " at block %" PRIu32 " is a torn write (%s); using "
                "seq %" PRIu64, bucket, level, stop_seq, b, stop_why,
                found.seq);
      found.torn_block = b;
    }
    else
      log_debug ("btree node in bucket %" PRIu32 ": bset after seq %" PRIu64
                 " at block %" PRIu32 " not used: %s",
                 bucket, found.seq, b, why);
  }

  why = bset_check_keys (g, level, keys, found.nkeys, lo, hi, &bad_key);
  if (why != NULL) {
    log_error ("btree node in bucket %" PRIu32 " (level %u, bset seq %"
               PRIu64 "): key %" PRIu32 ": %s",
               bucket, level, found.seq, bad_key, why);
    return -EBADMSG;
  }
  *info = found;
  return 0;

 corrupt:
  log_error ("btree node in bucket %" PRIu32 " (level %u): bset seq %"
             PRIu64 " at block %" PRIu32 " (device offset %" PRIu64 ", "
             "journal seq %" PRIu64 ", newest durable entry %" PRIu64 "): "
             "%s; %s", bucket, level, stop_seq, b,
             base + (uint64_t) b * NC_BLOCK_BYTES, stop_jseq,
             g->torn_jseq_min ? g->torn_jseq_min - 1 : 0, stop_why, why);
  return -EBADMSG;
}
