/* SPDX-License-Identifier: BSD-3-Clause */
/* crosscheck.c — recovery's checks across structures (crosscheck.h).
 *
 * WHAT: collects the journal's live keys and the tree's suspect keys
 * (stale DIRTY data keys, keys past their export's end) while the
 * assembly reads them, then checks that every suspect key is covered by
 * later journal keys: such a key was cut legitimately and replay drops
 * it; any other is metadata that checksums but breaks a promise of the
 * format, and the device is refused.
 * WHY: a bit flip whose checksum was recomputed (or a corrupted prio copy
 * written whole) passes every structure's own checks.  Without this, a
 * DIRTY key whose bucket's gen was bumped by the corruption reads as a
 * stale key: the server serves the backing's old data instead of the
 * dirty data, and `nbdcache check` says clean.
 * INVARIANTS: reads only; the gens it judges by are those read from the
 * prio copy (crosscheck_finish runs before replay changes anything).
 * "Covered" is computed once for all suspects: the journal keys' end
 * points cut the block space into segments; each segment gets the
 * position of the newest journal key over it (painted newest first, each
 * segment once, with a next-unpainted forest); a suspect at journal
 * position q (the tree's: -1) is covered when every segment it spans was
 * painted by a position > q.  O(J log J) for J journal keys, plus the
 * segments each suspect spans.
 * THREADS AND LOCKS: one thread; bucket_gen is lock-free.
 * FAILURE: -EBADMSG with one error naming the cache, the first violating
 * key, what it breaks, and how many keys do; -ENOMEM.
 * NOT HERE: when the assembly calls it (assemble.c); the checks of one
 * structure on its own.
 */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bkey.h"
#include "bucket.h"
#include "crosscheck.h"
#include "log.h"

struct suspect {
  struct nc_key k;
  int64_t pos;                  /* journal position; -1: the tree */
};

struct crosscheck {
  const struct nc_sb *sb;
  const char *name, *path;
  bool known[NC_MAX_EXPORTS + 1];       /* ids in the export table */
  uint64_t end_blocks[NC_MAX_EXPORTS + 1]; /* their recorded size */
  struct nc_key *jkeys;         /* the journal's live keys, in order:
                                   collected, or borrowed */
  size_t nj, capj;
  bool borrowed;
  struct suspect *sus;          /* the tree's suspects, then the
                                   journal's */
  size_t ns, caps;
};

/* A point of the key space. */
struct xpos {
  uint64_t block;
  uint16_t export_id;
};

static int
xpos_cmp (const void *pa, const void *pb)
{
  const struct xpos *a = pa, *b = pb;

  if (a->export_id != b->export_id)
    return a->export_id < b->export_id ? -1 : 1;
  return a->block < b->block ? -1 : a->block > b->block;
}

int
crosscheck_create (const struct nc_sb *sb, const char *name,
                   const char *path, struct crosscheck **out)
{
  struct crosscheck *cx = calloc (1, sizeof *cx);
  int i;

  if (cx == NULL)
    return -ENOMEM;
  cx->sb = sb;
  cx->name = name;
  cx->path = path;
  for (i = 0; i < (int) NC_MAX_EXPORTS; i++) {
    const struct nc_sb_export *e = &sb->exports[i];

    if (e->id == 0 || e->id > NC_MAX_EXPORTS)
      continue;
    cx->known[e->id] = true;
    cx->end_blocks[e->id] = (e->backing_bytes + NC_BLOCK_BYTES - 1)
      / NC_BLOCK_BYTES;
  }
  *out = cx;
  return 0;
}

void
crosscheck_destroy (struct crosscheck *cx)
{
  if (cx == NULL)
    return;
  if (!cx->borrowed)
    free (cx->jkeys);
  free (cx->sus);
  free (cx);
}

static int
grow (void **arr, size_t *cap, size_t len, size_t elem)
{
  size_t ncap;
  void *p;

  if (len < *cap)
    return 0;
  ncap = *cap ? *cap * 2 : 256;
  if ((p = realloc (*arr, ncap * elem)) == NULL)
    return -ENOMEM;
  *arr = p;
  *cap = ncap;
  return 0;
}

/* Would the replay refuse k (malformed)?  A DELETE key has no pointer:
 * valid as a ZERO key of that range.
 */
static bool
journal_key_malformed (const struct crosscheck *cx, const struct nc_key *k)
{
  struct nc_key tmp = *k;

  if (k->flags & NC_KEY_DELETE) {
    tmp.flags = (uint8_t) ((k->flags & ~NC_KEY_DELETE) | NC_KEY_ZERO);
    tmp.offset = 0;             /* unused, as assemble.c says */
    tmp.gen = 0;
  }
  return bkey_invalid_leaf (&tmp, cx->sb->bucket_blocks, cx->sb->data_first,
                            cx->sb->nbuckets) != NULL;
}

int
crosscheck_journal_key (struct crosscheck *cx, const struct nc_key *k)
{
  int r;

  assert (!cx->borrowed);
  if ((r = grow ((void **) &cx->jkeys, &cx->capj, cx->nj, sizeof *k)) < 0)
    return r;
  cx->jkeys[cx->nj++] = *k;
  return 0;
}

void
crosscheck_borrow_journal (struct crosscheck *cx, const struct nc_key *keys,
                           size_t n)
{
  assert (cx->nj == 0);
  free (cx->jkeys);
  cx->jkeys = (struct nc_key *) keys;
  cx->nj = n;
  cx->borrowed = true;
}

static bool
past_end (const struct crosscheck *cx, const struct nc_key *k)
{
  return !(k->flags & NC_KEY_DELETE) && k->export_id <= NC_MAX_EXPORTS &&
    cx->known[k->export_id] && k->end > cx->end_blocks[k->export_id];
}

static int
add_suspect (struct crosscheck *cx, const struct nc_key *k, int64_t pos)
{
  int r = grow ((void **) &cx->sus, &cx->caps, cx->ns, sizeof *cx->sus);

  if (r < 0)
    return r;
  cx->sus[cx->ns++] = (struct suspect) { .k = *k, .pos = pos };
  return 0;
}

int
crosscheck_tree_key (struct crosscheck *cx, const struct nc_key *k,
                     bool current)
{
  if ((bkey_has_data (k) && bkey_is_dirty (k) && !current) ||
      past_end (cx, k))
    return add_suspect (cx, k, -1);
  return 0;
}

/* Is k's pointer stale by the gens read from disk?  (A pointer outside
 * the data area is the journal's own check to refuse, not ours.)
 */
static bool
stale (const struct crosscheck *cx, struct bucket_set *bs,
       const struct nc_key *k)
{
  return bkey_has_data (k) && k->bucket >= cx->sb->data_first &&
    k->bucket < cx->sb->nbuckets && bucket_gen (bs, k->bucket) != k->gen;
}

/* ---- coverage ---- */

struct cover {
  struct xpos *pts;             /* sorted, unique end points */
  size_t npts;
  int64_t *paint;               /* per segment [pts[i], pts[i+1]) */
  size_t *next;                 /* next-unpainted forest */
};

static size_t
find_next (size_t *next, size_t i)
{
  size_t root = i, t;

  while (next[root] != root)
    root = next[root];
  while (next[i] != root) {     /* path compression */
    t = next[i];
    next[i] = root;
    i = t;
  }
  return root;
}

/* The index of the last point <= p, or SIZE_MAX if none. */
static size_t
point_at_or_before (const struct cover *cv, struct xpos p)
{
  size_t lo = 0, hi = cv->npts;

  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;

    if (xpos_cmp (&cv->pts[mid], &p) <= 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo == 0 ? SIZE_MAX : lo - 1;
}

static int
cover_build (struct cover *cv, const struct nc_key *keys, size_t n)
{
  size_t i, j, nseg;
  int64_t p;

  memset (cv, 0, sizeof *cv);
  if (n == 0)
    return 0;
  cv->pts = malloc (2 * n * sizeof *cv->pts);
  if (cv->pts == NULL)
    return -ENOMEM;
  for (i = 0; i < n; i++) {
    cv->pts[2 * i] = (struct xpos) { bkey_start (&keys[i]),
                                     keys[i].export_id };
    cv->pts[2 * i + 1] = (struct xpos) { keys[i].end, keys[i].export_id };
  }
  qsort (cv->pts, 2 * n, sizeof *cv->pts, xpos_cmp);
  for (i = 1, j = 1; i < 2 * n; i++)
    if (xpos_cmp (&cv->pts[i], &cv->pts[j - 1]) != 0)
      cv->pts[j++] = cv->pts[i];
  cv->npts = j;
  nseg = cv->npts - 1;
  cv->paint = malloc ((nseg + 1) * sizeof *cv->paint);
  cv->next = malloc ((nseg + 1) * sizeof *cv->next);
  if (cv->paint == NULL || cv->next == NULL)
    return -ENOMEM;
  for (i = 0; i <= nseg; i++) {
    cv->paint[i] = -1;
    cv->next[i] = i;
  }
  /* Newest first: each segment keeps the newest key over it. */
  for (p = (int64_t) n - 1; p >= 0; p--) {
    const struct nc_key *k = &keys[p];
    size_t lo = point_at_or_before (cv, (struct xpos) { bkey_start (k),
                                                        k->export_id });
    size_t hi = point_at_or_before (cv, (struct xpos) { k->end,
                                                        k->export_id });

    for (i = find_next (cv->next, lo); i < hi;
         i = find_next (cv->next, i + 1)) {
      cv->paint[i] = p;
      cv->next[i] = i + 1;
    }
  }
  return 0;
}

static void
cover_free (struct cover *cv)
{
  free (cv->pts);
  free (cv->paint);
  free (cv->next);
}

/* Is every block of k covered by journal keys at positions > pos? */
static bool
covered (const struct cover *cv, const struct nc_key *k, int64_t pos)
{
  struct xpos at = { bkey_start (k), k->export_id };
  size_t i;

  if (k->size == 0)
    return true;
  i = point_at_or_before (cv, at);
  if (i == SIZE_MAX)
    return false;
  /* A painted segment lies within one export (a key's two points are of
   * its export), so k's.
   */
  for (; i + 1 < cv->npts; i++) {
    if (cv->paint[i] <= pos)
      return false;             /* a gap, or only older keys */
    if (cv->pts[i + 1].block >= k->end)
      return true;
  }
  return false;                 /* past the last point */
}

static const char *
violation (const struct crosscheck *cx, const struct suspect *s)
{
  if (past_end (cx, &s->k))
    return "it lies past the end of its export (the export table's size)";
  return "it is DIRTY but its gen is not its bucket's: its data would "
    "read as stale";
}

int
crosscheck_finish (struct crosscheck *cx, struct bucket_set *bs)
{
  struct cover cv;
  const struct suspect *first = NULL;
  size_t i, bad = 0;
  int r;

  /* A malformed journal key: the replay refuses it (the read-only check
   * counts it), with a better message than a coverage question would.
   */
  for (i = 0; i < cx->nj; i++)
    if (journal_key_malformed (cx, &cx->jkeys[i]))
      return 0;
  /* The journal's suspects, judged by the gens as read. */
  for (i = 0; i < cx->nj; i++) {
    const struct nc_key *k = &cx->jkeys[i];

    if ((bkey_is_dirty (k) && stale (cx, bs, k)) || past_end (cx, k))
      if ((r = add_suspect (cx, k, (int64_t) i)) < 0)
        return r;
  }
  if (cx->ns == 0)
    return 0;
  if ((r = cover_build (&cv, cx->jkeys, cx->nj)) < 0) {
    cover_free (&cv);
    return r;
  }
  for (i = 0; i < cx->ns; i++)
    if (!covered (&cv, &cx->sus[i].k, cx->sus[i].pos)) {
      if (first == NULL)
        first = &cx->sus[i];
      bad++;
    }
  cover_free (&cv);
  if (bad == 0)
    return 0;
  {
    const struct nc_key *k = &first->k;
    char where[64];
    uint8_t gen = k->bucket < cx->sb->nbuckets ? bucket_gen (bs, k->bucket)
      : 0;

    if (first->pos < 0)
      snprintf (where, sizeof where, "index");
    else
      snprintf (where, sizeof where, "journal (live key %" PRId64 ")",
                first->pos);
    log_error ("cache '%s' (%s): the metadata is inconsistent: %s key of "
               "export %u blocks %" PRIu64 "+%" PRIu32 " (%s, bucket %"
               PRIu32 " gen %u, bucket at gen %u): %s, and no later "
               "journal key replaces it; %zu key%s like it; refusing the "
               "device", cx->name, cx->path, where, k->export_id,
               bkey_start (k), k->size,
               bkey_is_zero (k) ? "ZERO" : bkey_is_dirty (k) ? "DIRTY"
               : "clean", k->bucket, k->gen, gen,
               violation (cx, first), bad, bad == 1 ? "" : "s");
  }
  return -EBADMSG;
}
