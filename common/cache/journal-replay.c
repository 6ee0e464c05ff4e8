/* SPDX-License-Identifier: BSD-3-Clause */
/* journal-replay.c — reading the journal ring: scan, entry validation,
 * choice of the chain, replay at open, nbdcache check, and the first
 * entry written by format.
 *
 * WHAT: replay scans the ring and picks the newest complete chain, hands
 * its keys to the caller in order and gives the journal its durable state
 * (live region, write position, root, seqs) for the commit thread to
 * continue from.  check scans and chooses the chain on a bare device and
 * reports it; format writes the entry a new device starts from.
 * WHY: the ring is self-describing, so recovery needs nothing but the
 * journal buckets.
 *
 * REPLAY: read the ring in chunks; an entry may start at any block; keep
 * every valid entry (magic, version, uuid — a foreign uuid is silently
 * ignored — length inside the ring and within JOURNAL_MAX_ENTRY_BLOCKS,
 * nkeys fits, csum, 1 <= last_seq <= seq < 2^64 - 1, write_first <= seq,
 * seq - last_seq and seq - write_first below the ring's blocks).  An
 * entry with a good checksum that breaks those field rules is corruption
 * (no write, torn or not, makes one): -EBADMSG.  Two
 * different valid entries with one seq: -EBADMSG.  Let M be the valid entry
 * with the highest seq and B its write_first.  The chain of a candidate
 * (start with M) is last_seq .. seq; if an entry m of it is missing and
 * m >= B, the last write was torn (never acknowledged): the candidate
 * becomes the newest entry below m, which must not be older than B - 1
 * (the entry that was durable before that write).  If m < B, an entry that
 * was durable is gone: corruption, -EBADMSG.  The chosen E's chain must
 * also be laid out in ring order.  Valid entries above E (the torn write's
 * survivors) get their first block zeroed and synced before anything new
 * is written, so their seqs can be reused.  Writing continues at the end
 * of E with seq E + 1.
 *
 * INVARIANTS:
 * - Nothing from the scan is trusted on its own: every entry of the chain
 *   is validated again when its keys are read.
 * - The journal is changed only after the chain is chosen, read and its
 *   survivors dropped; it then holds exactly the state journal.c's
 *   INVARIANTS describe (live[] = the chain, open seq = E + 1).
 *
 * THREADS AND LOCKS: replay runs once, before the commit thread starts,
 * on the opening thread; it takes j->lock only to publish its result.
 * check and format have no journal and take no lock.
 *
 * FAILURE: a block that is not a valid entry is skipped (logged at debug
 * level).  Corruption — two different entries with one seq, a durable
 * entry missing, a chain out of ring order, an entry changed since the
 * scan, no complete chain — is logged once and returns -EBADMSG; I/O
 * errors and -ENOMEM are returned as they come; a non-zero return from
 * the replay callback stops replay and is returned.  A failed replay
 * leaves the journal unreplayed, so it cannot be started.
 *
 * NOT HERE: writing entries, the live region's upkeep (journal.c); what
 * the replayed keys mean (btree).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cdev.h"
#include "cleanup.h"
#include "compiler.h"
#include "csum.h"
#include "journal.h"
#include "journal-internal.h"
#include "log.h"
#include "ondisk.h"
#include "super.h"

#define SCAN_CHUNK_BLOCKS 256u          /* 1 MiB read per step of a scan */

/* ---- entry validation (replay, check) ---- */

/* NULL if the entry at ring block pos is valid, else why not.  buf holds
 * at least min(JOURNAL_MAX_ENTRY_BLOCKS, ring - pos) blocks from pos.
 * *corrupt (if not NULL) is set when the entry has our magic, version,
 * uuid, a sane length and a good checksum but fields the format forbids:
 * no write produces that (a torn or stale block fails the checksum), so
 * it is corruption, never an entry to skip.
 */
static const char *
entry_invalid (const struct ring_geom *g, const struct nc_jentry *e,
               uint32_t pos, bool *corrupt)
{
  uint64_t wf;

  if (corrupt != NULL)
    *corrupt = false;
  if (e->magic != NC_JOURNAL_MAGIC)
    return "bad magic";
  if (e->version != NC_META_VERSION)
    return "bad version";
  if (memcmp (e->uuid, g->uuid, sizeof g->uuid) != 0)
    return "foreign uuid";
  if (e->nblocks == 0 || e->nblocks > JOURNAL_MAX_ENTRY_BLOCKS ||
      e->nblocks > g->blocks - pos)
    return "bad length";
  if (e->nkeys > keys_in_blocks (e->nblocks))
    return "too many keys for its length";
  if (e->csum != nc_csum (e, sizeof *e + (size_t) e->nkeys *
                          sizeof (struct nc_key)))
    return "bad checksum";
  if (corrupt != NULL)
    *corrupt = true;
  if (e->seq == 0 || e->last_seq == 0 || e->last_seq > e->seq)
    return "bad last_seq";
  /* Every entry of last_seq .. seq is in the ring at once, one block at
   * least each; so are the entries of one write (write_first .. seq).
   */
  if (e->seq == UINT64_MAX)
    return "seq at its limit";
  if (e->seq - e->last_seq >= g->blocks)
    return "last_seq further back than the ring holds entries";
  wf = JENTRY_WRITE_FIRST (e);
  if (wf > e->seq)
    return "bad write_first";
  if (wf != 0 && e->seq - wf >= g->blocks)
    return "write_first further back than the ring holds entries";
  if (corrupt != NULL)
    *corrupt = false;
  return NULL;
}

/* ---- scanning the ring ---- */

/* A valid entry found by the scan. */
struct found {
  uint64_t seq, last_seq, write_first, csum;
  uint32_t pos, nblocks, nkeys;
  uint16_t root_level;
  struct nc_key root;
};

struct found_vec {
  struct found *v;
  size_t len, cap;
};

static int
found_push (struct found_vec *fv, const struct nc_jentry *e, uint32_t pos)
{
  struct found *f;

  if (fv->len == fv->cap) {
    size_t cap = fv->cap ? fv->cap * 2 : 256;

    f = realloc (fv->v, cap * sizeof *f);
    if (f == NULL)
      return -ENOMEM;
    fv->v = f;
    fv->cap = cap;
  }
  f = &fv->v[fv->len++];
  f->seq = e->seq;
  f->last_seq = e->last_seq;
  f->write_first = JENTRY_WRITE_FIRST (e) ? JENTRY_WRITE_FIRST (e) : e->seq;
  f->csum = e->csum;
  f->pos = pos;
  f->nblocks = e->nblocks;
  f->nkeys = e->nkeys;
  f->root = e->root;
  f->root_level = e->root_level;
  return 0;
}

static int
found_cmp (const void *pa, const void *pb)
{
  const struct found *a = pa, *b = pb;

  if (a->seq != b->seq)
    return a->seq < b->seq ? -1 : 1;
  return a->pos < b->pos ? -1 : a->pos > b->pos;
}

/* Every valid entry of the ring, sorted by seq, one per seq.  Two
 * different entries with one seq: -EBADMSG (logged).
 */
static int
scan_ring (const struct ring_geom *g, struct found_vec *fv)
{
  const uint32_t span = SCAN_CHUNK_BLOCKS + JOURNAL_MAX_ENTRY_BLOCKS - 1;
  AUTOFREE unsigned char *buf = cdev_alloc_buffer ((size_t) span *
                                                   NC_BLOCK_BYTES);
  uint32_t chunk, b, next = 0, n;
  size_t i, out;
  int r;

  if (buf == NULL)
    return -ENOMEM;
  for (chunk = 0; chunk < g->blocks; chunk += SCAN_CHUNK_BLOCKS) {
    n = MIN (span, g->blocks - chunk);
    r = cdev_pread (g->cd, buf, (size_t) n * NC_BLOCK_BYTES,
                    ring_byte (g, chunk));
    if (r < 0)
      return r;
    for (b = MAX (chunk, next);
         b < chunk + SCAN_CHUNK_BLOCKS && b < g->blocks; b++) {
      const struct nc_jentry *e =
        (const void *) (buf + (size_t) (b - chunk) * NC_BLOCK_BYTES);
      const char *why;
      bool corrupt;

      if (e->magic != NC_JOURNAL_MAGIC)
        continue;
      why = entry_invalid (g, e, b, &corrupt);
      if (why != NULL && corrupt) {
        log_error ("journal (%s): entry at ring block %" PRIu32 " (seq %"
                   PRIu64 ", last_seq %" PRIu64 ") has a valid checksum but "
                   "%s: the journal is corrupt", g->cd->path, b, e->seq,
                   e->last_seq, why);
        return -EBADMSG;
      }
      if (why != NULL) {
        log_debug ("journal (%s): ring block %" PRIu32 ": not an entry: %s",
                   g->cd->path, b, why);
        continue;
      }
      if ((r = found_push (fv, e, b)) < 0)
        return r;
      /* No valid entry can start inside a valid one. */
      next = b + e->nblocks;
      b = next - 1;
    }
  }

  if (fv->len > 1)
    qsort (fv->v, fv->len, sizeof *fv->v, found_cmp);
  for (i = 1, out = 1; i < fv->len; i++) {
    const struct found *prev = &fv->v[out - 1], *cur = &fv->v[i];

    if (cur->seq == prev->seq) {
      if (cur->csum == prev->csum && cur->nblocks == prev->nblocks &&
          cur->nkeys == prev->nkeys)
        continue;
      log_error ("journal (%s): two different entries with seq %" PRIu64
                 " (ring blocks %" PRIu32 " and %" PRIu32 ")",
                 g->cd->path, cur->seq, prev->pos, cur->pos);
      return -EBADMSG;
    }
    fv->v[out++] = *cur;
  }
  if (fv->len > 0)
    fv->len = out;
  return 0;
}

/* Index of seq in the sorted vector, or SIZE_MAX. */
static size_t
found_index (const struct found_vec *fv, uint64_t seq)
{
  size_t lo = 0, hi = fv->len;

  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;

    if (fv->v[mid].seq < seq)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < fv->len && fv->v[lo].seq == seq ? lo : SIZE_MAX;
}

/* Index of the newest entry older than seq, or SIZE_MAX. */
static size_t
found_below (const struct found_vec *fv, uint64_t seq)
{
  size_t lo = 0, hi = fv->len;

  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;

    if (fv->v[mid].seq < seq)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo == 0 ? SIZE_MAX : lo - 1;
}

/* Choose E (see REPLAY): fv->v[*first .. *last] is its chain. */
static int
choose_chain (const struct ring_geom *g, const struct found_vec *fv,
              size_t *first, size_t *last)
{
  const char *path = g->cd->path;
  uint64_t wf, m, len;
  size_t c, i;

  if (fv->len == 0)
    goto no_chain;
  c = fv->len - 1;
  wf = fv->v[c].write_first;
  for (;;) {
    i = found_index (fv, fv->v[c].last_seq);
    if (i == SIZE_MAX)
      m = fv->v[c].last_seq;
    else {
      while (i < c && fv->v[i + 1].seq == fv->v[i].seq + 1)
        i++;
      if (i == c)
        break;                  /* complete */
      m = fv->v[i].seq + 1;
    }
    if (m < wf) {
      log_error ("journal (%s): entry %" PRIu64 " is missing or corrupt, "
                 "but entry %" PRIu64 " needs it", path, m, fv->v[c].seq);
      return -EBADMSG;
    }
    /* The last write was torn: fall back to the entry before the gap. */
    c = found_below (fv, m);
    if (c == SIZE_MAX || fv->v[c].seq + 1 < wf)
      goto no_chain;
  }
  *first = found_index (fv, fv->v[c].last_seq);
  *last = c;

  /* The chain must be laid out in ring order, or space accounting (and
   * so the next writes) could overwrite part of it.
   */
  len = fv->v[*first].nblocks;
  for (i = *first + 1; i <= *last; i++) {
    const struct found *p = &fv->v[i - 1], *f = &fv->v[i];

    if (f->pos == p->pos + p->nblocks)
      len += f->nblocks;
    else if (f->pos == 0)
      len += g->blocks - (p->pos + p->nblocks) + f->nblocks;
    else
      len = UINT64_MAX;
    if (len > g->blocks) {
      log_error ("journal (%s): entries %" PRIu64 "..%" PRIu64 " are not "
                 "laid out in ring order (entry %" PRIu64 " at ring block %"
                 PRIu32 ")", path, fv->v[*first].seq, fv->v[*last].seq,
                 f->seq, f->pos);
      return -EBADMSG;
    }
  }
  return 0;

 no_chain:
  log_error ("journal (%s): no complete journal chain (%zu valid entries "
             "in the ring)", path, fv->len);
  return -EBADMSG;
}

/* ---- format, check ---- */

int
journal_format (struct cdev *cd, const struct nc_sb *sb)
{
  AUTOFREE struct nc_jentry *e = NULL;
  struct ring_geom g;
  int r;

  if ((r = journal_geom_from_sb (cd, sb, &g)) < 0)
    return r;
  e = cdev_alloc_buffer (NC_BLOCK_BYTES);
  if (e == NULL)
    return -ENOMEM;
  e->magic = NC_JOURNAL_MAGIC;
  e->version = NC_META_VERSION;
  e->nblocks = 1;
  memcpy (e->uuid, sb->uuid, sizeof e->uuid);
  e->seq = 1;
  e->last_seq = 1;
  JENTRY_WRITE_FIRST (e) = 1;
  e->csum = nc_csum (e, sizeof *e);
  return cdev_pwrite (cd, e, NC_BLOCK_BYTES, ring_byte (&g, 0), 0);
}

int
journal_check (struct cdev *cd, const struct nc_sb *sb,
               struct journal_check_info *info)
{
  struct found_vec fv = { 0 };
  struct ring_geom g;
  size_t first, last, i;
  int r;

  if ((r = journal_geom_from_sb (cd, sb, &g)) < 0)
    return r;
  if ((r = scan_ring (&g, &fv)) < 0 ||
      (r = choose_chain (&g, &fv, &first, &last)) < 0)
    goto out;
  memset (info, 0, sizeof *info);
  info->first_seq = fv.v[first].seq;
  info->last_seq = fv.v[last].seq;
  for (i = first; i <= last; i++)
    info->nkeys += fv.v[i].nkeys;
  info->valid_entries_seen = fv.len;
 out:
  free (fv.v);
  return r;
}

/* ---- replay ---- */

/* Zero the first block of every valid entry newer than E (the survivors
 * of a torn write), then sync, so their seqs can be written again.
 */
static int
drop_newer (struct journal *j, const struct found_vec *fv, size_t last)
{
  AUTOFREE void *zero = NULL;
  size_t i;
  int r;

  if (last + 1 == fv->len)
    return 0;
  if (j->g.cd->readonly) {
    /* nbdcache check / show: inspect, never repair.  The chain chosen is
     * the one recovery would replay; the survivors stay on the device.
     */
    log_warning ("journal (%s): entries %" PRIu64 "..%" PRIu64 " of an "
                 "interrupted commit would be dropped by recovery",
                 j->g.cd->path, fv->v[last + 1].seq, fv->v[fv->len - 1].seq);
    return 0;
  }
  log_info ("journal (%s): dropping entries %" PRIu64 "..%" PRIu64
            " of an interrupted commit (never acknowledged)",
            j->g.cd->path, fv->v[last + 1].seq, fv->v[fv->len - 1].seq);
  zero = cdev_alloc_buffer (NC_BLOCK_BYTES);
  if (zero == NULL)
    return -ENOMEM;
  for (i = last + 1; i < fv->len; i++)
    if ((r = cdev_pwrite (j->g.cd, zero, NC_BLOCK_BYTES,
                          ring_byte (&j->g, fv->v[i].pos), 0)) < 0)
      return r;
  return cdev_sync (j->g.cd);
}

/* Read the chain's entries again (in chunks) and hand every key to fn. */
static int
replay_keys (struct journal *j, const struct found_vec *fv, size_t first,
             size_t last, journal_replay_fn fn, void *opaque,
             uint64_t *nkeys)
{
  const uint32_t span = SCAN_CHUNK_BLOCKS + JOURNAL_MAX_ENTRY_BLOCKS - 1;
  AUTOFREE unsigned char *buf = cdev_alloc_buffer ((size_t) span *
                                                   NC_BLOCK_BYTES);
  uint32_t wstart = 0, wend = 0;
  size_t i;
  uint32_t k;
  int r;

  if (buf == NULL)
    return -ENOMEM;
  for (i = first; i <= last; i++) {
    const struct found *f = &fv->v[i];
    const struct nc_jentry *e;
    const char *why;

    if (f->pos < wstart || f->pos + f->nblocks > wend) {
      wstart = f->pos;
      wend = f->pos + MIN (span, j->g.blocks - f->pos);
      r = cdev_pread (j->g.cd, buf, (size_t) (wend - wstart) * NC_BLOCK_BYTES,
                      ring_byte (&j->g, wstart));
      if (r < 0)
        return r;
    }
    e = (const void *) (buf + (size_t) (f->pos - wstart) * NC_BLOCK_BYTES);
    why = entry_invalid (&j->g, e, f->pos, NULL);
    if (why == NULL && (e->seq != f->seq || e->csum != f->csum))
      why = "changed since the scan";
    if (why != NULL) {
      log_error ("journal (%s): entry %" PRIu64 " at ring block %" PRIu32
                 ": %s", j->g.cd->path, f->seq, f->pos, why);
      return -EBADMSG;
    }
    if (fn != NULL)
      for (k = 0; k < e->nkeys; k++)
        if ((r = fn (opaque, &e->keys[k], e->seq)) != 0)
          return r;
    *nkeys += e->nkeys;
  }
  return 0;
}

int
journal_replay (struct journal *j, journal_replay_fn fn, void *opaque,
                struct nc_key *root, uint16_t *root_level)
{
  struct found_vec fv = { 0 };
  size_t first, last, i;
  uint64_t nkeys = 0;
  const struct found *e;
  int r;

  if (j->replayed) {
    log_error ("journal (%s): replayed twice", j->g.cd->path);
    return -EINVAL;
  }
  if ((r = scan_ring (&j->g, &fv)) < 0 ||
      (r = choose_chain (&j->g, &fv, &first, &last)) < 0 ||
      (r = replay_keys (j, &fv, first, last, fn, opaque, &nkeys)) != 0 ||
      (r = drop_newer (j, &fv, last)) < 0)
    goto out;

  e = &fv.v[last];
  pthread_mutex_lock (&j->lock);
  j->live_head = 0;
  j->nlive = 0;
  for (i = first; i <= last; i++) {
    j->live[j->nlive].seq = fv.v[i].seq;
    j->live[j->nlive].pos = fv.v[i].pos;
    j->live[j->nlive].nblocks = fv.v[i].nblocks;
    j->nlive++;
  }
  j->write_pos = e->pos + e->nblocks;
  j->root = e->root;
  j->root_level = e->root_level;
  __atomic_store_n (&j->durable_seq, e->seq, __ATOMIC_RELEASE);
  __atomic_store_n (&j->open_seq, e->seq + 1, __ATOMIC_RELEASE);
  j->replayed = true;
  pthread_mutex_unlock (&j->lock);

  *root = e->root;
  *root_level = e->root_level;
  log_info ("journal (%s): replayed entries %" PRIu64 "..%" PRIu64
            " (%" PRIu64 " keys); %zu valid entries in the ring",
            j->g.cd->path, fv.v[first].seq, e->seq, nkeys, fv.len);
  r = 0;
 out:
  free (fv.v);
  return r;
}
