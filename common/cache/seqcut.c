/* SPDX-License-Identifier: BSD-3-Clause */
/* seqcut.c — the sequential cutoff: recognising long sequential streams.
 *
 * WHAT: a fixed table of SEQCUT_STREAMS streams, each remembering where
 * its last request ended, how many bytes it has seen and when it was last
 * used.  The streams sit on an LRU list (most recent at the head) and, by
 * end offset, in a small chained hash table, so finding the stream a
 * request continues is O(1) on average.  A request that continues no
 * stream takes over the least recently used one.
 * WHY: a backup or a scan must not flush the hot working set out of the
 * cache (seqcut.h); bcache does the same with 128 streams per device.
 *
 * INVARIANTS:
 * - Every stream is on the LRU list exactly once; a stream is in the hash
 *   table (in_hash) once it has been used, under the bucket of its end
 *   offset.  Unused streams sit at the LRU tail and are taken first.
 * - length_bytes includes the current request; the request bypasses when
 *   length_bytes >= cutoff_bytes (">=", see seqcut.h).
 * - Lengths and ends saturate at UINT64_MAX instead of wrapping.
 *
 * THREADS AND LOCKS: s->lock guards everything and is held only for one
 * lookup and update (no I/O, no allocation, no callbacks).
 *
 * FAILURE: only create fails (-ENOMEM, or the mutex's error).
 *
 * NOT HERE: what a bypass means for reads and writes (request.c), the
 * per-export configuration.
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "clock.h"
#include "invariant.h"
#include "seqcut.h"

/* Hash buckets: a power of 2, twice the streams so chains stay short. */
#define HASH_BITS 8
#define HASH_SIZE (1u << HASH_BITS)
#define NONE (-1)

_Static_assert (SEQCUT_STREAMS < INT16_MAX, "stream indices fit int16_t");
_Static_assert (HASH_SIZE >= SEQCUT_STREAMS, "hash no smaller than table");

struct seqcut_stream {
  uint64_t end;                 /* byte offset where the last request ended */
  uint64_t length_bytes;        /* bytes of the stream so far */
  uint64_t last_ms;             /* when the stream was last used */
  int16_t lru_prev, lru_next;   /* towards the head (newer) / tail (older) */
  int16_t hash_next;            /* next stream in the same hash bucket */
  bool in_hash;                 /* used at least once */
};

struct seqcut {
  pthread_mutex_t lock;
  uint64_t cutoff_bytes;        /* 0: disabled, nothing tracked; atomic */
  int16_t lru_head, lru_tail;   /* most / least recently used */
  int16_t hash[HASH_SIZE];      /* first stream of each bucket, or NONE */
  struct seqcut_stream stream[SEQCUT_STREAMS];
};

static unsigned
hash_end (uint64_t end)
{
  /* Fibonacci hashing: requests are usually aligned, so the low bits of
   * an offset carry little; the top bits of the product mix them all.
   */
  return (unsigned) ((end * UINT64_C (0x9E3779B97F4A7C15)) >> (64 - HASH_BITS));
}

static uint64_t
add_saturating (uint64_t a, uint64_t b)
{
  return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

int
seqcut_create (uint64_t cutoff_bytes, struct seqcut **out)
{
  struct seqcut *s = calloc (1, sizeof *s);
  unsigned i;
  int r;

  if (s == NULL)
    return -ENOMEM;
  if ((r = pthread_mutex_init (&s->lock, NULL)) != 0) {
    free (s);
    return -r;
  }
  s->cutoff_bytes = cutoff_bytes;
  for (i = 0; i < HASH_SIZE; ++i)
    s->hash[i] = NONE;
  for (i = 0; i < SEQCUT_STREAMS; ++i) {
    s->stream[i].lru_prev = (int16_t) i - 1;
    s->stream[i].lru_next = i + 1 < SEQCUT_STREAMS ? (int16_t) (i + 1) : NONE;
    s->stream[i].hash_next = NONE;
  }
  s->lru_head = 0;
  s->lru_tail = SEQCUT_STREAMS - 1;
  *out = s;
  return 0;
}

void
seqcut_destroy (struct seqcut *s)
{
  if (s == NULL)
    return;
  pthread_mutex_destroy (&s->lock);
  free (s);
}

/* ---- caller holds s->lock below ---- */

static void
hash_remove_locked (struct seqcut *s, int16_t i)
{
  ASSERT_HELD (&s->lock);
  int16_t *p = &s->hash[hash_end (s->stream[i].end)];

  while (*p != NONE && *p != i)
    p = &s->stream[*p].hash_next;
  if (*p == i)
    *p = s->stream[i].hash_next;
  s->stream[i].hash_next = NONE;
  s->stream[i].in_hash = false;
}

static void
hash_insert_locked (struct seqcut *s, int16_t i)
{
  ASSERT_HELD (&s->lock);
  int16_t *head = &s->hash[hash_end (s->stream[i].end)];

  s->stream[i].hash_next = *head;
  *head = i;
  s->stream[i].in_hash = true;
}

static void
lru_touch_locked (struct seqcut *s, int16_t i)
{
  ASSERT_HELD (&s->lock);
  struct seqcut_stream *st = &s->stream[i];

  if (s->lru_head == i)
    return;
  /* Unlink (i is not the head, so it has a predecessor)… */
  s->stream[st->lru_prev].lru_next = st->lru_next;
  if (st->lru_next != NONE)
    s->stream[st->lru_next].lru_prev = st->lru_prev;
  else
    s->lru_tail = st->lru_prev;
  /* …and push at the head. */
  st->lru_prev = NONE;
  st->lru_next = s->lru_head;
  s->stream[s->lru_head].lru_prev = i;
  s->lru_head = i;
}

/* The live stream ending exactly at offset, or NONE.  Among several (two
 * streams may end at the same byte) the most recently inserted wins.
 */
static int16_t
find_locked (struct seqcut *s, uint64_t offset, uint64_t now_ms)
{
  ASSERT_HELD (&s->lock);
  int16_t i;

  for (i = s->hash[hash_end (offset)]; i != NONE; i = s->stream[i].hash_next) {
    const struct seqcut_stream *st = &s->stream[i];

    /* A clock that went backwards counts as no time passing. */
    if (st->end == offset &&
        (now_ms <= st->last_ms ||
         now_ms - st->last_ms <= SEQCUT_STREAM_TIMEOUT_MS))
      return i;
  }
  return NONE;
}

/* ---- end of lock banner ---- */

bool
seqcut_check_at (struct seqcut *s, uint64_t offset, uint64_t count,
                 uint64_t now_ms)
{
  struct seqcut_stream *st;
  uint64_t end = add_saturating (offset, count);
  uint64_t cutoff = __atomic_load_n (&s->cutoff_bytes, __ATOMIC_RELAXED);
  bool bypass;
  int16_t i;

  if (cutoff == 0 || count == 0)
    return false;

  pthread_mutex_lock (&s->lock);
  i = find_locked (s, offset, now_ms);
  if (i == NONE) {
    /* A new stream replaces the least recently used one. */
    i = s->lru_tail;
    st = &s->stream[i];
    st->length_bytes = 0;
  }
  else
    st = &s->stream[i];
  if (st->in_hash)
    hash_remove_locked (s, i);
  st->end = end;
  st->length_bytes = add_saturating (st->length_bytes, count);
  st->last_ms = now_ms;
  hash_insert_locked (s, i);
  lru_touch_locked (s, i);
  bypass = st->length_bytes >= cutoff;
  pthread_mutex_unlock (&s->lock);
  return bypass;
}

void
seqcut_set_cutoff (struct seqcut *s, uint64_t cutoff_bytes)
{
  __atomic_store_n (&s->cutoff_bytes, cutoff_bytes, __ATOMIC_RELAXED);
}

bool
seqcut_would_bypass_at (struct seqcut *s, uint64_t offset, uint64_t count,
                        uint64_t now_ms)
{
  uint64_t cutoff = __atomic_load_n (&s->cutoff_bytes, __ATOMIC_RELAXED);
  uint64_t length = 0;
  int16_t i;

  if (cutoff == 0 || count == 0)
    return false;
  pthread_mutex_lock (&s->lock);
  i = find_locked (s, offset, now_ms);
  if (i != NONE)
    length = s->stream[i].length_bytes;
  pthread_mutex_unlock (&s->lock);
  return add_saturating (length, count) >= cutoff;
}

bool
seqcut_would_bypass (struct seqcut *s, uint64_t offset, uint64_t count)
{
  return seqcut_would_bypass_at (s, offset, count, clock_now_ms ());
}

bool
seqcut_check (struct seqcut *s, uint64_t offset, uint64_t count)
{
  return seqcut_check_at (s, offset, count, clock_now_ms ());
}
