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
 * was durable is gone: corruption, -EBADMSG.  Every valid entry of B .. M
 * belongs to M's write, so its write_first is B too, or M (or that
 * entry) is corrupt: -EBADMSG.  The chosen E's chain must
 * also be laid out in ring order.
 *
 * TORN OR DAMAGED: entries newer than E are a torn write, or damage.  A
 * version 2 entry is valid only if every 512-byte sector carries its
 * stamp (journal-entry.c), and the scan records every stamp it sees.  For
 * each entry newer than E named by a stamp but not valid: if a sector of
 * its extent carries a valid stamp of anything older (an older entry,
 * fill, another write of that seq), that sector was never written: torn,
 * never acknowledged, dropped.  If every sector carries its stamp or no
 * valid stamp at all, the whole entry was written and then damaged:
 * -EBADMSG, naming it.  So is a sector of its extent stamped with a newer
 * seq: that is not what the entry's write failed to replace, for when
 * seq s is written no sector of the ring carries a seq above s - 1
 * (replay fills every newer sector before anything is written, seqs are
 * written in order, and a failed write is retried at the same place with
 * the same entries: journal.c INVARIANTS).  And when E says the ring was
 * filled (NC_JENTRY_RING_FILLED), the first sector where E + 1 would
 * start (after E, or ring block 0) must carry a stamp, or a newer entry
 * was destroyed whole: -EBADMSG.  This holds because the writer only
 * ever writes over stamped sectors (journal.c FILL) and a sector is
 * written whole or not at all.  Nothing newer than E may lie inside E's
 * chain (a write after E went to the space the chain left free):
 * -EBADMSG, never filled over.
 * Version 1 entries have no stamps: a damaged newest one still reads as
 * torn.
 *
 * NEWER VERSIONS: an entry with our magic and uuid, a version above the
 * highest this build reads (NC_JENTRY_VERSION_INLINE) and a valid stamp
 * on its first sector was written whole by a newer build.  If it is
 * newer than every valid entry, a missing link of the chain, or an entry
 * newer than E, the device is refused with a message that names the
 * entry's version (never "damaged"): -EPROTONOSUPPORT, nothing is
 * replayed or written.  One older than the chain is not needed and is
 * ignored like any stale block.
 *
 * REDO: a version 4 entry (journal.c REDO) carries its data keys' data
 * after its keys, covered by its checksum; nothing else about it differs.
 * Replay keeps that data for the entries of E's write (seq >= E's
 * write_first) only, for journal_redo; it never compares it with the
 * data blocks and never drops anything because of them.
 *
 * Then everything newer than E — valid survivors, and every sector
 * stamped with a newer seq — is overwritten with fill and synced before
 * anything new is written, so those seqs can be reused and no piece of an
 * old write is taken for a piece of a new one.  Writing continues at the
 * end of E with seq E + 1.
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
 * entry missing, a newer entry written whole but damaged, a chain out of
 * ring order, an entry changed since the scan, no complete chain, a
 * stamp no write makes — is logged once and returns -EBADMSG; a needed
 * entry of a newer version is logged once and returns -EPROTONOSUPPORT;
 * I/O errors and -ENOMEM are returned as they come; a non-zero return
 * from the replay callback stops replay and is returned.  A failed replay
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
/* The payload of the longest entry of either version. */
#define PAYLOAD_MAX ((size_t) JOURNAL_MAX_ENTRY_BLOCKS * NC_BLOCK_BYTES)

/* ---- entry validation (replay, check) ---- */

/* NULL if the entry at ring block pos is valid, else why not.  raw holds
 * at least min(JOURNAL_MAX_ENTRY_BLOCKS, ring - pos) blocks from pos.
 * On success *out is the entry's payload (header and keys): raw itself
 * for a version 1 entry, else the stamped sectors joined in payload
 * (PAYLOAD_MAX bytes).  A version 2 entry is valid only if every one of
 * its sectors carries its stamp.
 * *corrupt (if not NULL) is set when the entry has our magic, version,
 * uuid, a sane length and a good checksum but fields the format forbids:
 * no write produces that (a torn or stale block fails the checksum), so
 * it is corruption, never an entry to skip.
 */
static const char *
entry_invalid (const struct ring_geom *g, const void *raw, uint32_t pos,
               void *payload, const struct nc_jentry **out, bool *corrupt)
{
  const struct nc_jentry *e = raw;
  uint32_t bad_sector;
  uint64_t wf, inline_bytes = 0;

  if (corrupt != NULL)
    *corrupt = false;
  if (e->magic != NC_JOURNAL_MAGIC)
    return "bad magic";
  if (e->version != NC_JENTRY_VERSION && e->version != NC_JENTRY_VERSION_PLAIN
      && e->version != NC_JENTRY_VERSION_INLINE)
    return "bad version";
  if (memcmp (e->uuid, g->uuid, sizeof g->uuid) != 0)
    return "foreign uuid";
  if (e->nblocks == 0 || e->nblocks > JOURNAL_MAX_ENTRY_BLOCKS ||
      e->nblocks > g->blocks - pos)
    return "bad length";
  if (e->nkeys > keys_in_blocks (e->version, e->nblocks))
    return "too many keys for its length";
  if (e->version != NC_JENTRY_VERSION_PLAIN) {
    if (!jentry_payload (raw, e->nblocks, g->seed, payload, &bad_sector))
      return "a sector without the entry's stamp (torn or damaged)";
    e = payload;
  }
  /* Version 4: the inline data follows the keys (not yet trusted: a
   * length past the payload is a bad entry, not a read past it).
   */
  if (e->version == NC_JENTRY_VERSION_INLINE) {
    inline_bytes = jentry_inline_bytes (e->keys, e->nkeys);
    if (sizeof *e + (uint64_t) e->nkeys * sizeof (struct nc_key)
        + inline_bytes > jentry_payload_bytes (e->version, e->nblocks))
      return "inline data longer than the entry";
  }
  if (e->csum != nc_csum (e, sizeof *e + (size_t) e->nkeys *
                          sizeof (struct nc_key) + inline_bytes))
    return "bad checksum";
  *out = e;
  if (corrupt != NULL)
    *corrupt = true;
  if (e->version == NC_JENTRY_VERSION_INLINE &&
      (e->flags & ~(uint64_t) NC_JENTRY_ALL_FLAGS ||
       !(e->flags & NC_JENTRY_INLINE_DATA)))
    return "bad flags for an entry with inline data";
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
  uint32_t version;
  uint64_t flags;
  uint16_t root_level;
  struct nc_key root;
};

struct found_vec {
  struct found *v;
  size_t len, cap;
};

/* The vector v (*cap elements of `size` bytes, `len` of them used) with
 * room for one more: v itself or its moved copy (*cap updated), or NULL
 * (out of memory: v unchanged).
 */
static void *
vec_room (void *v, size_t *cap, size_t len, size_t size)
{
  void *nv;
  size_t n;

  if (len < *cap)
    return v;
  n = *cap ? *cap * 2 : 256;
  nv = realloc (v, n * size);
  if (nv != NULL)
    *cap = n;
  return nv;
}

static int
found_push (struct found_vec *fv, const struct nc_jentry *e, uint32_t pos)
{
  struct found *f;

  if ((f = vec_room (fv->v, &fv->cap, fv->len, sizeof *f)) == NULL)
    return -ENOMEM;
  fv->v = f;
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
  f->version = e->version;
  f->flags = e->version != NC_JENTRY_VERSION_PLAIN ? e->flags : 0;
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

/* The stamps of one write of an entry, seen somewhere in the ring. */
struct stamped {
  uint64_t seq, entry_csum;
  uint32_t start;               /* ring block of the entry */
  uint32_t nsectors;
};

struct stamped_vec {
  struct stamped *v;
  size_t len, cap;
};

/* An entry of a newer version than this build reads (NEWER VERSIONS). */
struct newer_entry {
  uint64_t seq;
  uint32_t pos, version;
};

struct newer_vec {
  struct newer_entry *v;
  size_t len, cap;
};

/* What a scan found. */
struct scan {
  struct found_vec fv;          /* valid entries, sorted by seq */
  struct stamped_vec sv;        /* entries seen by their stamps, sorted */
  struct newer_vec nv;          /* entries of a newer version, unsorted */
  bool unstamped;               /* a sector without a valid stamp */
};

static void
scan_free (struct scan *sc)
{
  free (sc->fv.v);
  free (sc->sv.v);
  free (sc->nv.v);
}

/* NEWER VERSIONS: is the block at ring block pos, not a valid entry, the
 * start of an entry that a newer build wrote whole: our magic and uuid, a
 * version above every one this build reads, and its first sector stamped
 * as sector 0 of that entry (so the header is as written: a flipped bit
 * in a version 2 entry's version field breaks that stamp)?  Such an entry
 * is recorded, and refused by name wherever recovery needs it, instead of
 * being reported as damage.  A newer layout without our stamps reads as
 * before (torn or damaged).
 */
static int
note_newer (const struct ring_geom *g, const void *raw, uint32_t pos,
            struct newer_vec *nv)
{
  const struct nc_jentry *e = raw;
  struct nc_jstamp st;
  struct newer_entry *v;

  if (e->magic != NC_JOURNAL_MAGIC || e->version <= NC_JENTRY_VERSION_INLINE
      || memcmp (e->uuid, g->uuid, sizeof g->uuid) != 0 ||
      !jsector_stamp (raw, g->seed, &st) || st.seq != e->seq ||
      st.seq == 0 || st.sector != 0 || st.entry_csum != e->csum)
    return 0;
  if ((v = vec_room (nv->v, &nv->cap, nv->len, sizeof *v)) == NULL)
    return -ENOMEM;
  nv->v = v;
  nv->v[nv->len++] = (struct newer_entry) {
    .seq = e->seq, .pos = pos, .version = e->version,
  };
  return 0;
}

/* If entry seq (at ring block pos, or anywhere if pos is UINT32_MAX) is
 * of a newer version: say so, -EPROTONOSUPPORT.  Else 0.
 */
static int
refuse_newer (const struct ring_geom *g, const struct newer_vec *nv,
              uint64_t seq, uint32_t pos)
{
  size_t i;

  for (i = 0; i < nv->len; i++)
    if (nv->v[i].seq == seq && (pos == UINT32_MAX || nv->v[i].pos == pos)) {
      log_error ("journal (%s): entry %" PRIu64 " at ring block %" PRIu32
                 " is from a newer version of nbdcache (journal entry "
                 "version %" PRIu32 "; this version reads entry versions "
                 "up to %u): refusing the cache; open it with the version "
                 "that wrote it", g->cd->path, seq, nv->v[i].pos,
                 nv->v[i].version, NC_JENTRY_VERSION_INLINE);
      return -EPROTONOSUPPORT;
    }
  return 0;
}

static int
stamped_push (struct stamped_vec *sv, uint64_t seq, uint64_t entry_csum,
              uint32_t start, uint32_t nsectors)
{
  struct stamped *t;

  if (sv->len > 0) {
    t = &sv->v[sv->len - 1];
    if (t->seq == seq && t->entry_csum == entry_csum && t->start == start &&
        t->nsectors == nsectors)
      return 0;
  }
  if ((t = vec_room (sv->v, &sv->cap, sv->len, sizeof *t)) == NULL)
    return -ENOMEM;
  sv->v = t;
  sv->v[sv->len++] = (struct stamped) {
    .seq = seq, .entry_csum = entry_csum, .start = start,
    .nsectors = nsectors,
  };
  return 0;
}

static int
stamped_cmp (const void *pa, const void *pb)
{
  const struct stamped *a = pa, *b = pb;

  if (a->seq != b->seq)
    return a->seq < b->seq ? -1 : 1;
  if (a->start != b->start)
    return a->start < b->start ? -1 : 1;
  if (a->entry_csum != b->entry_csum)
    return a->entry_csum < b->entry_csum ? -1 : 1;
  return a->nsectors < b->nsectors ? -1 : a->nsectors > b->nsectors;
}

/* The stamps of ring block b (not the start of a valid entry).  A valid
 * stamp that no write makes: -EBADMSG (logged).
 */
static int
scan_stamps (const struct ring_geom *g, const unsigned char *blk, uint32_t b,
             struct scan *sc)
{
  struct nc_jstamp st;
  const char *why;
  uint64_t sno;
  unsigned i;
  int r;

  for (i = 0; i < NC_JSECTORS_PER_BLOCK; i++) {
    if (!jsector_stamp (blk + i * NC_JSECTOR_BYTES, g->seed, &st)) {
      sc->unstamped = true;
      continue;
    }
    sno = (uint64_t) b * NC_JSECTORS_PER_BLOCK + i;
    if ((why = jstamp_invalid (&st, sno, g->blocks)) != NULL) {
      log_error ("journal (%s): ring block %" PRIu32 " sector %u has a "
                 "valid checksum but %s: the journal is corrupt",
                 g->cd->path, b, i, why);
      return -EBADMSG;
    }
    if (st.seq == 0)
      continue;
    r = stamped_push (&sc->sv, st.seq, st.entry_csum,
                      (uint32_t) ((sno - st.sector) / NC_JSECTORS_PER_BLOCK),
                      st.nsectors);
    if (r < 0)
      return r;
  }
  return 0;
}

/* Every valid entry of the ring, sorted by seq, one per seq, and every
 * entry's stamps.  Two different entries with one seq: -EBADMSG (logged).
 */
static int
scan_ring (const struct ring_geom *g, struct scan *sc)
{
  const uint32_t span = SCAN_CHUNK_BLOCKS + JOURNAL_MAX_ENTRY_BLOCKS - 1;
  AUTOFREE unsigned char *buf = cdev_alloc_buffer ((size_t) span *
                                                   NC_BLOCK_BYTES);
  AUTOFREE void *payload = malloc (PAYLOAD_MAX);
  struct found_vec *fv = &sc->fv;
  struct stamped_vec *sv = &sc->sv;
  uint32_t chunk, b, next = 0, n;
  size_t i, out;
  int r;

  if (buf == NULL || payload == NULL)
    return -ENOMEM;
  for (chunk = 0; chunk < g->blocks; chunk += SCAN_CHUNK_BLOCKS) {
    n = MIN (span, g->blocks - chunk);
    r = cdev_pread (g->cd, buf, (size_t) n * NC_BLOCK_BYTES,
                    ring_byte (g, chunk));
    if (r < 0)
      return r;
    for (b = MAX (chunk, next);
         b < chunk + SCAN_CHUNK_BLOCKS && b < g->blocks; b++) {
      const unsigned char *raw = buf + (size_t) (b - chunk) * NC_BLOCK_BYTES;
      const struct nc_jentry *e = (const void *) raw, *le;
      const char *why;
      bool corrupt;

      if (e->magic == NC_JOURNAL_MAGIC) {
        why = entry_invalid (g, raw, b, payload, &le, &corrupt);
        if (why != NULL && corrupt) {
          log_error ("journal (%s): entry at ring block %" PRIu32 " (seq %"
                     PRIu64 ", last_seq %" PRIu64 ") has a valid checksum "
                     "but %s: the journal is corrupt", g->cd->path, b,
                     le->seq, le->last_seq, why);
          return -EBADMSG;
        }
        if (why == NULL) {
          if ((r = found_push (fv, le, b)) < 0)
            return r;
          if (le->version == NC_JENTRY_VERSION_PLAIN)
            sc->unstamped = true;
          else if ((r = stamped_push (sv, le->seq, le->csum, b,
                                      le->nblocks *
                                      NC_JSECTORS_PER_BLOCK)) < 0)
            return r;
          /* No valid entry can start inside a valid one. */
          next = b + le->nblocks;
          b = next - 1;
          continue;
        }
        log_debug ("journal (%s): ring block %" PRIu32 ": not an entry: %s",
                   g->cd->path, b, why);
        if ((r = note_newer (g, raw, b, &sc->nv)) < 0)
          return r;
      }
      if ((r = scan_stamps (g, raw, b, sc)) < 0)
        return r;
    }
  }

  if (sv->len > 1) {
    qsort (sv->v, sv->len, sizeof *sv->v, stamped_cmp);
    for (i = 1, out = 1; i < sv->len; i++)
      if (stamped_cmp (&sv->v[i], &sv->v[out - 1]) != 0)
        sv->v[out++] = sv->v[i];
    sv->len = out;
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
              const struct newer_vec *nv, size_t *first, size_t *last)
{
  const char *path = g->cd->path;
  uint64_t wf, m, len;
  size_t c, i;

  if (fv->len == 0)
    goto no_chain;
  c = fv->len - 1;
  wf = fv->v[c].write_first;
  /* Every entry of M's write carries that write's first seq: a valid one
   * that says otherwise (it began a write of its own) means M is not what
   * it claims, and dropping the entries after the gap as a torn write
   * would lose durable ones.
   */
  for (i = c; i-- > 0 && fv->v[i].seq >= wf;)
    if (fv->v[i].write_first != wf) {
      log_error ("journal (%s): entry %" PRIu64 " says its write began "
                 "at entry %" PRIu64 ", but entry %" PRIu64 " of that "
                 "write says it began at %" PRIu64 ": the journal is "
                 "corrupt", path, fv->v[c].seq, wf, fv->v[i].seq,
                 fv->v[i].write_first);
      return -EBADMSG;
    }
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
      int r = refuse_newer (g, nv, m, UINT32_MAX);

      if (r < 0)
        return r;
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

/* ---- torn or damaged: what lies beyond the chain ---- */

/* Does ring blocks [x, x + n) meet an entry of the chain fv->v[first ..
 * last]?
 */
static bool
in_chain (const struct found_vec *fv, size_t first, size_t last, uint32_t x,
          uint32_t n)
{
  size_t i;

  for (i = first; i <= last; i++)
    if (x < fv->v[i].pos + fv->v[i].nblocks && fv->v[i].pos < x + n)
      return true;
  return false;
}

/* A write after E went to space E's chain left free, so nothing newer than
 * E lies inside the chain — unless an entry that moved the live region on
 * was lost, which check_newer has not otherwise caught.  Never fill over
 * the chain: -EBADMSG (logged).
 */
static int
newer_overlaps (const struct ring_geom *g, const struct found_vec *fv,
                size_t first, size_t last, uint64_t seq, uint32_t start,
                uint32_t nblocks)
{
  if (!in_chain (fv, first, last, start, nblocks))
    return 0;
  log_error ("journal (%s): entry %" PRIu64 " (ring blocks %" PRIu32 "+%"
             PRIu32 "), newer than the chain %" PRIu64 "..%" PRIu64 ", lies "
             "inside it: an entry that was durable is lost", g->cd->path,
             seq, start, nblocks, fv->v[first].seq, fv->v[last].seq);
  return -EBADMSG;
}

/* The chain ends at E = fv->v[last].  Every write after E was either
 * torn (never acknowledged: dropping it is right) or is damage (see
 * TORN OR DAMAGED).  -EBADMSG (logged) for damage, else 0.
 */
static int
check_newer (const struct ring_geom *g, const struct scan *sc, size_t first,
             size_t last)
{
  const struct found_vec *fv = &sc->fv;
  const struct found *e = &fv->v[last];
  AUTOFREE unsigned char *buf =
    cdev_alloc_buffer ((size_t) JOURNAL_MAX_ENTRY_BLOCKS * NC_BLOCK_BYTES);
  struct nc_jstamp st;
  uint32_t x[2], k, nx;
  size_t i, f;
  int r;

  if (buf == NULL)
    return -ENOMEM;
  for (i = 0; i < sc->sv.len; i++) {
    const struct stamped *t = &sc->sv.v[i];
    uint32_t sec, mine = 0, foreign = 0, bad = 0, first_bad = 0;
    uint32_t newer = 0;
    uint64_t newer_seq = 0;

    if (t->seq <= e->seq)
      continue;
    if ((r = newer_overlaps (g, fv, first, last, t->seq, t->start,
                             t->nsectors / NC_JSECTORS_PER_BLOCK)) < 0)
      return r;
    f = found_index (fv, t->seq);
    if (f != SIZE_MAX && fv->v[f].csum == t->entry_csum &&
        fv->v[f].pos == t->start)
      continue;                 /* valid: a later entry of a torn write */
    if ((r = refuse_newer (g, &sc->nv, t->seq, t->start)) < 0)
      return r;
    r = cdev_pread (g->cd, buf, (size_t) t->nsectors * NC_JSECTOR_BYTES,
                    ring_byte (g, t->start));
    if (r < 0)
      return r;
    for (sec = 0; sec < t->nsectors; sec++) {
      if (!jsector_stamp (buf + (size_t) sec * NC_JSECTOR_BYTES, g->seed,
                          &st)) {
        if (bad++ == 0)
          first_bad = sec;
      }
      else if (st.seq == t->seq && st.entry_csum == t->entry_csum &&
               st.sector == sec && st.nsectors == t->nsectors)
        mine++;
      else if (st.seq > t->seq) {
        /* No write leaves it in this entry's extent (TORN OR DAMAGED). */
        if (newer++ == 0)
          newer_seq = st.seq;
      }
      else
        foreign++;
    }
    if (newer > 0) {
      log_error ("journal (%s): entry %" PRIu64 " at ring block %" PRIu32
                 " is damaged: %" PRIu32 " of its %" PRIu32 " sectors carry "
                 "the stamp of a newer entry (seq %" PRIu64 "), which no "
                 "write leaves there; it may hold acknowledged writes",
                 g->cd->path, t->seq, t->start, newer, t->nsectors,
                 newer_seq);
      return -EBADMSG;
    }
    if (foreign > 0)
      continue;                 /* torn: a sector was never written */
    if (bad > 0)
      log_error ("journal (%s): entry %" PRIu64 " at ring block %" PRIu32
                 " was written whole but is damaged: %" PRIu32 " of its %"
                 PRIu32 " sectors are bad (the first: sector %" PRIu32 "); "
                 "it may hold acknowledged writes", g->cd->path, t->seq,
                 t->start, bad, t->nsectors, first_bad);
    else
      log_error ("journal (%s): entry %" PRIu64 " at ring block %" PRIu32
                 " was written whole but its contents are damaged (bad "
                 "checksum); it may hold acknowledged writes",
                 g->cd->path, t->seq, t->start);
    return -EBADMSG;
  }

  /* An entry newer than E whose every sector is destroyed leaves no
   * stamp; where it would start, a ring that E says was filled holds a
   * stamped sector unless something damaged it.
   */
  for (f = last + 1; f < fv->len; f++)
    if ((r = newer_overlaps (g, fv, first, last, fv->v[f].seq, fv->v[f].pos,
                             fv->v[f].nblocks)) < 0)
      return r;
  if (e->version == NC_JENTRY_VERSION_PLAIN ||
      !(e->flags & NC_JENTRY_RING_FILLED))
    return 0;
  nx = 0;
  if (e->pos + e->nblocks < g->blocks)
    x[nx++] = e->pos + e->nblocks;
  x[nx++] = 0;
  for (k = 0; k < nx; k++) {
    if (in_chain (fv, first, last, x[k], 1))
      continue;
    r = cdev_pread (g->cd, buf, NC_BLOCK_BYTES, ring_byte (g, x[k]));
    if (r < 0)
      return r;
    if (!jsector_stamp (buf, g->seed, &st)) {
      log_error ("journal (%s): ring block %" PRIu32 ", where the entry "
                 "after entry %" PRIu64 " would start, is damaged (no "
                 "valid stamp in a ring that was filled): an entry with "
                 "acknowledged writes may be lost", g->cd->path, x[k],
                 e->seq);
      return -EBADMSG;
    }
  }
  return 0;
}

/* Scan, choose the chain, judge what lies beyond it (replay, check). */
static int
read_ring (const struct ring_geom *g, struct scan *sc, size_t *first,
           size_t *last)
{
  const struct newer_entry *n = NULL;
  size_t i;
  int r;

  if ((r = scan_ring (g, sc)) < 0)
    return r;
  /* Entries a newer version wrote after everything this one reads: the
   * newest of them is what recovery would need (NEWER VERSIONS).
   */
  for (i = 0; i < sc->nv.len; i++)
    if (n == NULL || sc->nv.v[i].seq > n->seq)
      n = &sc->nv.v[i];
  if (n != NULL && (sc->fv.len == 0 ||
                    n->seq > sc->fv.v[sc->fv.len - 1].seq))
    return refuse_newer (g, &sc->nv, n->seq, n->pos);
  if ((r = choose_chain (g, &sc->fv, &sc->nv, first, last)) < 0 ||
      (r = check_newer (g, sc, *first, *last)) < 0)
    return r;
  return 0;
}

/* ---- format, check ---- */

int
journal_format (struct cdev *cd, const struct nc_sb *sb)
{
  AUTOFREE struct nc_jentry *e = NULL;
  AUTOFREE void *blk = NULL;
  struct ring_geom g;
  int r;

  if ((r = journal_geom_from_sb (cd, sb, &g)) < 0)
    return r;
  e = calloc (1, jentry_payload_bytes (NC_JENTRY_VERSION, 1));
  blk = cdev_alloc_buffer (NC_BLOCK_BYTES);
  if (e == NULL || blk == NULL)
    return -ENOMEM;
  e->magic = NC_JOURNAL_MAGIC;
  e->version = NC_JENTRY_VERSION;
  e->nblocks = 1;
  memcpy (e->uuid, sb->uuid, sizeof e->uuid);
  e->seq = 1;
  e->last_seq = 1;
  JENTRY_WRITE_FIRST (e) = 1;
  e->csum = nc_csum (e, sizeof *e);
  jentry_frame (e, g.seed, blk);
  return cdev_pwrite (cd, blk, NC_BLOCK_BYTES, ring_byte (&g, 0), 0);
}

int
journal_check (struct cdev *cd, const struct nc_sb *sb,
               struct journal_check_info *info)
{
  struct scan sc = { 0 };
  struct ring_geom g;
  size_t first, last, i;
  int r;

  if ((r = journal_geom_from_sb (cd, sb, &g)) < 0)
    return r;
  if ((r = read_ring (&g, &sc, &first, &last)) < 0)
    goto out;
  memset (info, 0, sizeof *info);
  info->first_seq = sc.fv.v[first].seq;
  info->last_seq = sc.fv.v[last].seq;
  for (i = first; i <= last; i++)
    info->nkeys += sc.fv.v[i].nkeys;
  info->valid_entries_seen = sc.fv.len;
 out:
  scan_free (&sc);
  return r;
}

/* ---- replay ---- */

/* Write fill over every entry newer than E — the valid survivors of a
 * torn write and every sector stamped with a newer seq — then sync, so
 * their seqs can be written again and no old piece of them can be taken
 * for a piece of the new ones.
 */
static int
drop_newer (struct journal *j, const struct scan *sc, size_t last)
{
  const struct found_vec *fv = &sc->fv;
  const uint64_t e = fv->v[last].seq;
  AUTOFREE void *fill = NULL;
  bool any = false;
  size_t i;
  int r;

  for (i = 0; i < sc->sv.len; i++)
    any |= sc->sv.v[i].seq > e;
  if (!any && last + 1 == fv->len)
    return 0;
  if (j->g.cd->readonly) {
    /* nbdcache check / show: inspect, never repair.  The chain chosen is
     * the one recovery would replay; the survivors stay on the device.
     */
    if (last + 1 < fv->len)
      log_warning ("journal (%s): entries %" PRIu64 "..%" PRIu64 " of an "
                   "interrupted commit would be dropped by recovery",
                   j->g.cd->path, fv->v[last + 1].seq,
                   fv->v[fv->len - 1].seq);
    return 0;
  }
  if (last + 1 < fv->len)
    log_info ("journal (%s): dropping entries %" PRIu64 "..%" PRIu64
              " of an interrupted commit (never acknowledged)",
              j->g.cd->path, fv->v[last + 1].seq, fv->v[fv->len - 1].seq);
  fill = cdev_alloc_buffer ((size_t) JOURNAL_MAX_ENTRY_BLOCKS *
                            NC_BLOCK_BYTES);
  if (fill == NULL)
    return -ENOMEM;
  jentry_fill (fill, JOURNAL_MAX_ENTRY_BLOCKS, j->g.seed);
  for (i = 0; i < sc->sv.len; i++) {
    const struct stamped *t = &sc->sv.v[i];

    if (t->seq > e &&
        (r = cdev_pwrite (j->g.cd, fill, (size_t) t->nsectors *
                          NC_JSECTOR_BYTES, ring_byte (&j->g, t->start),
                          0)) < 0)
      return r;
  }
  for (i = last + 1; i < fv->len; i++)
    if ((r = cdev_pwrite (j->g.cd, fill, (size_t) fv->v[i].nblocks *
                          NC_BLOCK_BYTES, ring_byte (&j->g, fv->v[i].pos),
                          0)) < 0)
      return r;
  return cdev_sync (j->g.cd);
}

/* REDO: keep the data keys and inline data of e, an entry of the
 * newest write, for journal_redo.
 */
static int
keep_redo (struct journal *j, const struct nc_jentry *e)
{
  const unsigned char *src = (const unsigned char *) &e->keys[e->nkeys];
  const uint64_t bytes = jentry_inline_bytes (e->keys, e->nkeys);
  struct nc_key *kv;
  unsigned char *d;
  size_t n = 0;
  uint32_t k;

  for (k = 0; k < e->nkeys; k++)
    n += jkey_has_data (&e->keys[k]);
  if (n == 0)
    return 0;
  kv = realloc (j->redo_keys.v, (j->redo_keys.len + n) * sizeof *kv);
  if (kv == NULL)
    return -ENOMEM;
  j->redo_keys.v = kv;
  j->redo_keys.cap = j->redo_keys.len + n;
  d = realloc (j->redo_data, j->redo_bytes + bytes);
  if (d == NULL)
    return -ENOMEM;
  j->redo_data = d;
  memcpy (d + j->redo_bytes, src, bytes);
  j->redo_bytes += bytes;
  for (k = 0; k < e->nkeys; k++)
    if (jkey_has_data (&e->keys[k]))
      kv[j->redo_keys.len++] = e->keys[k];
  return 0;
}

/* Read the chain's entries again (in chunks) and hand every key to fn;
 * keep the newest write's inline data (REDO).
 */
static int
replay_keys (struct journal *j, const struct found_vec *fv, size_t first,
             size_t last, journal_replay_fn fn, void *opaque,
             uint64_t *nkeys)
{
  const uint32_t span = SCAN_CHUNK_BLOCKS + JOURNAL_MAX_ENTRY_BLOCKS - 1;
  AUTOFREE unsigned char *buf = cdev_alloc_buffer ((size_t) span *
                                                   NC_BLOCK_BYTES);
  AUTOFREE void *payload = malloc (PAYLOAD_MAX);
  uint32_t wstart = 0, wend = 0;
  size_t i;
  uint32_t k;
  int r;

  if (buf == NULL || payload == NULL)
    return -ENOMEM;
  for (i = first; i <= last; i++) {
    const struct found *f = &fv->v[i];
    const struct nc_jentry *e = NULL;
    const char *why;

    if (f->pos < wstart || f->pos + f->nblocks > wend) {
      wstart = f->pos;
      wend = f->pos + MIN (span, j->g.blocks - f->pos);
      r = cdev_pread (j->g.cd, buf, (size_t) (wend - wstart) * NC_BLOCK_BYTES,
                      ring_byte (&j->g, wstart));
      if (r < 0)
        return r;
    }
    why = entry_invalid (&j->g, buf + (size_t) (f->pos - wstart) *
                         NC_BLOCK_BYTES, f->pos, payload, &e, NULL);
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
    if (e->version == NC_JENTRY_VERSION_INLINE &&
        f->seq >= fv->v[last].write_first && (r = keep_redo (j, e)) < 0)
      return r;
    *nkeys += e->nkeys;
  }
  return 0;
}

int
journal_redo (struct journal *j, journal_redo_fn fn, void *opaque)
{
  const unsigned char *d = j->redo_data;
  size_t i;
  int r = 0;

  for (i = 0; i < j->redo_keys.len && r == 0; i++) {
    r = fn (opaque, &j->redo_keys.v[i], d);
    d += (size_t) j->redo_keys.v[i].size * NC_BLOCK_BYTES;
  }
  free (j->redo_keys.v);
  free (j->redo_data);
  j->redo_keys = (struct key_vec) { 0 };
  j->redo_data = NULL;
  j->redo_bytes = 0;
  return r;
}

size_t
journal_redo_count (const struct journal *j)
{
  return j->redo_keys.len;
}

int
journal_replay (struct journal *j, journal_replay_fn fn, void *opaque,
                struct nc_key *root, uint16_t *root_level)
{
  struct scan sc = { 0 };
  const struct found_vec *fv = &sc.fv;
  size_t first, last, i;
  uint64_t nkeys = 0;
  const struct found *e;
  int r;

  if (j->replayed) {
    log_error ("journal (%s): replayed twice", j->g.cd->path);
    return -EINVAL;
  }
  if ((r = read_ring (&j->g, &sc, &first, &last)) < 0 ||
      (r = replay_keys (j, fv, first, last, fn, opaque, &nkeys)) != 0 ||
      (r = drop_newer (j, &sc, last)) < 0)
    goto out;

  e = &fv->v[last];
  pthread_mutex_lock (&j->lock);
  j->live_head = 0;
  j->nlive = 0;
  for (i = first; i <= last; i++) {
    j->live[j->nlive].seq = fv->v[i].seq;
    j->live[j->nlive].pos = fv->v[i].pos;
    j->live[j->nlive].nblocks = fv->v[i].nblocks;
    j->nlive++;
  }
  j->write_pos = e->pos + e->nblocks;
  /* Sectors without a stamp (zeros from format, version 1 entries):
   * the whole ring is filled as it becomes free, from the write position
   * on (journal.c FILL).
   */
  j->unfilled_lo = j->write_pos % j->g.blocks;
  j->unfilled_len = sc.unstamped ? j->g.blocks : 0;
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
            j->g.cd->path, fv->v[first].seq, e->seq, nkeys, fv->len);
  r = 0;
 out:
  scan_free (&sc);
  return r;
}
