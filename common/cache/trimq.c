/* SPDX-License-Identifier: BSD-3-Clause */
/* trimq.c — the backing store's trim queue: merged, batched trims.
 *
 * WHAT: a sorted array of disjoint, non-adjacent extents waiting to be
 * trimmed on the backing store, each with the time its oldest part was
 * queued; and at most one batch in flight, copied out of the queue.  A
 * batch takes up to TRIMQ_BATCH extents starting at a cursor that moves
 * round the offset space, so a steady stream of trims in low offsets
 * cannot starve the high ones.  Draining (all = true) walks the queue
 * once in offset order, batch by batch, up to where it ended when the
 * drain began.
 * WHY: see trimq.h; a trim per NBD TRIM request would be one backing
 * round trip each, and trims of neighbouring ranges merge well.
 *
 * INVARIANTS:
 * - ext[0..n) is sorted by offset; ext[i].end < ext[i + 1].offset (no
 *   overlap, no adjacency: adding merges both); every extent is non-empty.
 * - Nothing in the queue overlaps the batch in flight for a range a write
 *   barrier has passed; the barrier removed it and new adds come after.
 * - issuing is true exactly while a batch is in flight (inflight[0..
 *   n_inflight) with bounds [inflight_lo, inflight_hi)).
 * - Ends saturate at UINT64_MAX.
 *
 * THREADS AND LOCKS: q->lock guards everything.  The issue callback runs
 * with the lock dropped; q->cond is broadcast when a batch finishes, for
 * write barriers and other issuers waiting on it.
 *
 * FAILURE: add -ENOMEM when the array cannot grow (nothing queued).  A
 * write barrier that must split an extent and cannot grow the array drops
 * the whole extent instead (a trim is advisory; dropping is always safe).
 * Issue errors are counted, the first is returned, the extents are
 * dropped.
 *
 * NOT HERE: the clock and the decision when to call trimq_issue (the
 * export's background thread), logging of failed trims (the driver).
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "compiler.h"
#include "invariant.h"
#include "trimq.h"

#define INITIAL_CAPACITY 64

struct trimq_extent {
  uint64_t offset;
  uint64_t end;                 /* exclusive, > offset */
  uint64_t added_ms;            /* when the oldest part was queued */
};

struct trimq {
  pthread_mutex_t lock;
  pthread_cond_t cond;          /* a batch finished */
  struct trimq_extent *ext;     /* [capacity], sorted, n in use */
  size_t n, capacity;
  uint64_t cursor;              /* the next batch starts at end > cursor */
  bool issuing;
  size_t n_inflight;
  uint64_t inflight_lo, inflight_hi;
  struct trimq_extent inflight[TRIMQ_BATCH];
  struct trimq_stats stats;
};

int
trimq_create (struct trimq **out)
{
  struct trimq *q = calloc (1, sizeof *q);
  int r;

  if (q == NULL)
    return -ENOMEM;
  q->capacity = INITIAL_CAPACITY;
  q->ext = calloc (q->capacity, sizeof *q->ext);
  if (q->ext == NULL) {
    r = -ENOMEM;
    goto err_free;
  }
  if ((r = -pthread_mutex_init (&q->lock, NULL)) < 0)
    goto err_ext;
  if ((r = -pthread_cond_init (&q->cond, NULL)) < 0)
    goto err_lock;
  *out = q;
  return 0;

 err_lock:
  pthread_mutex_destroy (&q->lock);
 err_ext:
  free (q->ext);
 err_free:
  free (q);
  return r;
}

void
trimq_destroy (struct trimq *q)
{
  if (q == NULL)
    return;
  pthread_cond_destroy (&q->cond);
  pthread_mutex_destroy (&q->lock);
  free (q->ext);
  free (q);
}

static uint64_t
end_of (uint64_t offset, uint64_t count)
{
  return offset > UINT64_MAX - count ? UINT64_MAX : offset + count;
}

/* ---- caller holds q->lock below ---- */

/* The index of the first extent with end > pos (n if none).  Ends are
 * increasing, so this is a binary search.
 */
static size_t
first_ending_after_locked (struct trimq *q, uint64_t pos)
{
  ASSERT_HELD (&q->lock);
  size_t lo = 0, hi = q->n;

  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;

    if (q->ext[mid].end > pos)
      hi = mid;
    else
      lo = mid + 1;
  }
  return lo;
}

static int
reserve_locked (struct trimq *q, size_t want)
{
  ASSERT_HELD (&q->lock);
  struct trimq_extent *e;
  size_t cap = q->capacity;

  if (want <= cap)
    return 0;
  while (cap < want) {
    if (cap > SIZE_MAX / 2 / sizeof *e)
      return -ENOMEM;
    cap *= 2;
  }
  e = realloc (q->ext, cap * sizeof *e);
  if (e == NULL)
    return -ENOMEM;
  q->ext = e;
  q->capacity = cap;
  return 0;
}

/* Remove ext[i..j). */
static void
remove_range_locked (struct trimq *q, size_t i, size_t j)
{
  ASSERT_HELD (&q->lock);
  memmove (&q->ext[i], &q->ext[j], (q->n - j) * sizeof *q->ext);
  q->n -= j - i;
}

/* Copy the extents a batch takes into inflight and remove them.  Without
 * limit: up to TRIMQ_BATCH from the cursor, wrapping to the start.  With
 * limit (draining): up to TRIMQ_BATCH with end > *pos and offset < limit,
 * no wrap; *pos moves past them.
 */
static void
take_batch_locked (struct trimq *q, bool drain, uint64_t *pos,
                   uint64_t limit)
{
  ASSERT_HELD (&q->lock);
  size_t i, j, k = 0;

  if (drain) {
    i = first_ending_after_locked (q, *pos);
    for (j = i; j < q->n && k < TRIMQ_BATCH && q->ext[j].offset < limit; ++j)
      q->inflight[k++] = q->ext[j];
    remove_range_locked (q, i, j);
    if (k > 0)
      *pos = q->inflight[k - 1].end;
  }
  else {
    i = first_ending_after_locked (q, q->cursor);
    for (j = i; j < q->n && k < TRIMQ_BATCH; ++j)
      q->inflight[k++] = q->ext[j];
    remove_range_locked (q, i, j);
    /* Wrap: the extents before the cursor, in offset order. */
    for (j = 0; j < q->n && k < TRIMQ_BATCH; ++j)
      q->inflight[k++] = q->ext[j];
    remove_range_locked (q, 0, j);
    if (k > 0)
      q->cursor = q->inflight[k - 1].end;
  }

  q->n_inflight = k;
  q->inflight_lo = UINT64_MAX;
  q->inflight_hi = 0;
  for (i = 0; i < k; ++i) {
    q->inflight_lo = MIN (q->inflight_lo, q->inflight[i].offset);
    q->inflight_hi = MAX (q->inflight_hi, q->inflight[i].end);
  }
}

static bool
inflight_overlaps_locked (struct trimq *q, uint64_t offset,
                          uint64_t end)
{
  ASSERT_HELD (&q->lock);
  size_t i;

  if (!q->issuing || end <= q->inflight_lo || offset >= q->inflight_hi)
    return false;
  for (i = 0; i < q->n_inflight; ++i)
    if (offset < q->inflight[i].end && q->inflight[i].offset < end)
      return true;
  return false;
}

/* ---- end of lock banner ---- */

int
trimq_add (struct trimq *q, uint64_t offset, uint64_t count,
           uint64_t now_ms)
{
  uint64_t end = end_of (offset, count);
  uint64_t added_ms = now_ms;
  size_t i, j;

  if (count == 0)
    return 0;

  pthread_mutex_lock (&q->lock);
  /* Extents that overlap or touch [offset, end) are ext[i..j). */
  i = offset > 0 ? first_ending_after_locked (q, offset - 1) : 0;
  for (j = i; j < q->n && q->ext[j].offset <= end; ++j) {
    offset = MIN (offset, q->ext[j].offset);
    end = MAX (end, q->ext[j].end);
    added_ms = MIN (added_ms, q->ext[j].added_ms);
  }
  if (i == j) {
    /* Nothing to merge with: insert at i. */
    if (reserve_locked (q, q->n + 1) < 0) {
      pthread_mutex_unlock (&q->lock);
      return -ENOMEM;
    }
    memmove (&q->ext[i + 1], &q->ext[i], (q->n - i) * sizeof *q->ext);
    q->n++;
  }
  else
    remove_range_locked (q, i + 1, j);
  q->ext[i] = (struct trimq_extent) {
    .offset = offset, .end = end, .added_ms = added_ms,
  };
  q->stats.queued++;
  pthread_mutex_unlock (&q->lock);
  return 0;
}

void
trimq_write_barrier (struct trimq *q, uint64_t offset, uint64_t count)
{
  uint64_t end = end_of (offset, count);
  size_t i;

  if (count == 0)
    return;

  pthread_mutex_lock (&q->lock);
  i = first_ending_after_locked (q, offset);
  while (i < q->n && q->ext[i].offset < end) {
    struct trimq_extent *e = &q->ext[i];

    q->stats.superseded++;
    if (e->offset < offset && e->end > end) {
      /* The write is inside: keep both sides. */
      if (reserve_locked (q, q->n + 1) < 0) {
        remove_range_locked (q, i, i + 1);
        break;
      }
      memmove (&q->ext[i + 1], &q->ext[i], (q->n - i) * sizeof *q->ext);
      q->n++;
      q->ext[i].end = offset;
      q->ext[i + 1].offset = end;
      break;
    }
    if (e->offset < offset) {
      e->end = offset;          /* keep the left part */
      ++i;
    }
    else if (e->end > end) {
      e->offset = end;          /* keep the right part */
      break;
    }
    else
      remove_range_locked (q, i, i + 1);
  }

  /* A batch already issued must finish before the write may go out. */
  while (inflight_overlaps_locked (q, offset, end))
    pthread_cond_wait (&q->cond, &q->lock);
  pthread_mutex_unlock (&q->lock);
}

bool
trimq_due (struct trimq *q, uint64_t now_ms)
{
  bool due = false;
  size_t i;

  pthread_mutex_lock (&q->lock);
  if (q->n >= TRIMQ_BATCH)
    due = true;
  else
    for (i = 0; i < q->n && !due; ++i)
      due = now_ms >= q->ext[i].added_ms &&
        now_ms - q->ext[i].added_ms >= TRIMQ_MAX_AGE_MS;
  pthread_mutex_unlock (&q->lock);
  return due;
}

int
trimq_issue (struct trimq *q, bool all, trimq_issue_fn fn, void *opaque)
{
  uint64_t pos = 0, limit = 0;
  int first_error = 0;
  size_t i;

  pthread_mutex_lock (&q->lock);
  if (all && q->n > 0)
    limit = q->ext[q->n - 1].end;
  for (;;) {
    size_t k;
    int errors = 0;

    while (q->issuing)
      pthread_cond_wait (&q->cond, &q->lock);
    take_batch_locked (q, all, &pos, limit);
    k = q->n_inflight;
    if (k == 0)
      break;
    q->issuing = true;
    pthread_mutex_unlock (&q->lock);

    for (i = 0; i < k; ++i) {
      int r = fn (opaque, q->inflight[i].offset,
                  q->inflight[i].end - q->inflight[i].offset);

      if (r < 0) {
        errors++;
        if (first_error == 0)
          first_error = r;
      }
    }

    pthread_mutex_lock (&q->lock);
    q->issuing = false;
    q->n_inflight = 0;
    q->stats.batches++;
    q->stats.extents += k;
    q->stats.errors += errors;
    pthread_cond_broadcast (&q->cond);
    if (!all)
      break;
  }
  pthread_mutex_unlock (&q->lock);
  return first_error;
}

size_t
trimq_len (struct trimq *q)
{
  size_t n;

  pthread_mutex_lock (&q->lock);
  n = q->n;
  pthread_mutex_unlock (&q->lock);
  return n;
}

void
trimq_get_stats (struct trimq *q, struct trimq_stats *st)
{
  pthread_mutex_lock (&q->lock);
  *st = q->stats;
  pthread_mutex_unlock (&q->lock);
}

bool
trimq_overlaps (struct trimq *q, uint64_t offset, uint64_t count)
{
  uint64_t end = end_of (offset, count);
  size_t i;
  bool r;

  if (q == NULL || count == 0)
    return false;
  pthread_mutex_lock (&q->lock);
  i = first_ending_after_locked (q, offset);
  r = (i < q->n && q->ext[i].offset < end) ||
    inflight_overlaps_locked (q, offset, end);
  pthread_mutex_unlock (&q->lock);
  return r;
}
