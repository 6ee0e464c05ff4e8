/* SPDX-License-Identifier: BSD-3-Clause */
/* faulty.c — a fault-injecting backing store, for tests.
 *
 * WHAT: the backing ops (backing.h) over another handle, failing with
 * -EIO the I/O that an armed fault covers (faulty.h): pwrite, zero and
 * trim overlapping the write range; pread overlapping the read range;
 * flush, and pwrite/zero/trim with BACKING_FUA, while the flush fault is
 * on.  Everything else, extents included, goes to the inner store.
 * WHY: writeback and the request paths must survive a failing backing
 * store; tests need one that fails and recovers on command.
 *
 * INVARIANTS:
 * - The head (uri, size, capabilities) is a copy of the inner store's,
 *   taken at wrap time; the uri string is our own copy (freed by our
 *   close), the inner handle keeps and frees its own.
 * - A range fault is armed iff its count > 0.  I/O of count 0 never
 *   overlaps anything.  Overlap: [o, o + c) and [fo, fo + fc) share a
 *   byte (ends saturate at UINT64_MAX).
 *
 * THREADS AND LOCKS: the I/O paths take no lock.  A range fault is a
 * seqlock: a setter (serialised by set_lock) makes seq odd, stores the
 * offset and count, and makes seq even again; an I/O path rereads until
 * it saw an even, unchanged seq, so it never sees one setting's offset
 * with another's count.  The flush switch and the failure counter are
 * plain atomics.
 *
 * FAILURE: an injected failure is logged at debug level and returns -EIO;
 * the inner store's errors pass through unchanged (it logs them).
 *
 * NOT HERE: a URI for this driver (it is wrapped programmatically only),
 * lost writes on crash (the cache device simulator does that).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backing.h"
#include "faulty.h"
#include "log.h"

struct fault_range {
  unsigned seq;                 /* odd while a setter writes */
  uint64_t offset, count;       /* count 0: disarmed */
};

struct backing_faulty {
  struct backing b;             /* must be first */
  struct backing *inner;        /* owned */
  pthread_mutex_t set_lock;     /* serialises setters of the ranges */
  struct fault_range writes, reads;
  bool fail_flush;              /* atomic */
  uint64_t nr_failed;           /* atomic */
};

static const struct backing_ops faulty_ops;

static struct backing_faulty *
to_faulty (struct backing *b)
{
  return (struct backing_faulty *) b;
}

static uint64_t
end_of (uint64_t offset, uint64_t count)
{
  return offset > UINT64_MAX - count ? UINT64_MAX : offset + count;
}

static void
range_set (struct backing_faulty *f, struct fault_range *fr,
           uint64_t offset, uint64_t count)
{
  pthread_mutex_lock (&f->set_lock);
  /* Release stores keep the odd seq before the data, and the data before
   * the even seq (no fences: ThreadSanitizer does not model them).
   */
  __atomic_store_n (&fr->seq, fr->seq + 1, __ATOMIC_RELAXED);
  __atomic_store_n (&fr->offset, offset, __ATOMIC_RELEASE);
  __atomic_store_n (&fr->count, count, __ATOMIC_RELEASE);
  __atomic_store_n (&fr->seq, fr->seq + 1, __ATOMIC_RELEASE);
  pthread_mutex_unlock (&f->set_lock);
}

static bool
range_hits (struct fault_range *fr, uint64_t offset, uint64_t count)
{
  uint64_t fo, fc;
  unsigned seq;

  do {
    while ((seq = __atomic_load_n (&fr->seq, __ATOMIC_ACQUIRE)) & 1)
      ;
    /* Acquire loads keep the seq recheck after them, and seeing a new
     * value implies seeing the odd seq stored before it.
     */
    fo = __atomic_load_n (&fr->offset, __ATOMIC_ACQUIRE);
    fc = __atomic_load_n (&fr->count, __ATOMIC_ACQUIRE);
  } while (__atomic_load_n (&fr->seq, __ATOMIC_RELAXED) != seq);

  return fc > 0 && count > 0 &&
    offset < end_of (fo, fc) && fo < end_of (offset, count);
}

static int
injected (struct backing_faulty *f, const char *what,
          uint64_t offset, uint64_t count)
{
  __atomic_add_fetch (&f->nr_failed, 1, __ATOMIC_RELAXED);
  log_debug ("faulty: %s: injected failure of %s at offset %" PRIu64
             " count %" PRIu64, f->b.uri ? f->b.uri : "(no uri)",
             what, offset, count);
  return -EIO;
}

static bool
flush_fails (struct backing_faulty *f)
{
  return __atomic_load_n (&f->fail_flush, __ATOMIC_ACQUIRE);
}

/* Shared by pwrite, trim and zero: 0 to go ahead, or the injected -EIO. */
static int
check_write (struct backing_faulty *f, const char *what,
             uint64_t offset, uint64_t count, uint32_t flags)
{
  if (range_hits (&f->writes, offset, count) ||
      ((flags & BACKING_FUA) && flush_fails (f)))
    return injected (f, what, offset, count);
  return 0;
}

static int
faulty_pread (struct backing *b, void *buf, size_t count, uint64_t offset)
{
  struct backing_faulty *f = to_faulty (b);

  if (range_hits (&f->reads, offset, count))
    return injected (f, "read", offset, count);
  return backing_pread (f->inner, buf, count, offset);
}

static int
faulty_pwrite (struct backing *b, const void *buf, size_t count,
               uint64_t offset, uint32_t flags)
{
  struct backing_faulty *f = to_faulty (b);
  int r;

  if ((r = check_write (f, "write", offset, count, flags)) < 0)
    return r;
  return backing_pwrite (f->inner, buf, count, offset, flags);
}

static int
faulty_flush (struct backing *b)
{
  struct backing_faulty *f = to_faulty (b);

  if (flush_fails (f))
    return injected (f, "flush", 0, 0);
  return backing_flush (f->inner);
}

static int
faulty_trim (struct backing *b, uint64_t count, uint64_t offset,
             uint32_t flags)
{
  struct backing_faulty *f = to_faulty (b);
  int r;

  if ((r = check_write (f, "trim", offset, count, flags)) < 0)
    return r;
  return backing_trim (f->inner, count, offset, flags);
}

static int
faulty_zero (struct backing *b, uint64_t count, uint64_t offset,
             uint32_t flags)
{
  struct backing_faulty *f = to_faulty (b);
  int r;

  if ((r = check_write (f, "zero", offset, count, flags)) < 0)
    return r;
  return backing_zero (f->inner, count, offset, flags);
}

static int
faulty_extents (struct backing *b, uint64_t count, uint64_t offset,
                backing_extent_fn fn, void *opaque)
{
  return backing_extents (to_faulty (b)->inner, count, offset, fn, opaque);
}

static void
faulty_close (struct backing *b)
{
  struct backing_faulty *f = to_faulty (b);

  backing_close (f->inner);
  pthread_mutex_destroy (&f->set_lock);
  free (f->b.uri);
  free (f);
}

static const struct backing_ops faulty_ops = {
  .name = "faulty",
  .pread = faulty_pread,
  .pwrite = faulty_pwrite,
  .flush = faulty_flush,
  .trim = faulty_trim,
  .zero = faulty_zero,
  .extents = faulty_extents,
  .close = faulty_close,
};

int
backing_faulty_wrap (struct backing *inner, struct backing **out)
{
  struct backing_faulty *f;
  int r;

  if (inner == NULL)
    return -EINVAL;
  f = calloc (1, sizeof *f);
  if (f == NULL) {
    r = -ENOMEM;
    goto err;
  }
  if ((r = -pthread_mutex_init (&f->set_lock, NULL)) < 0)
    goto err_free;
  f->b = *inner;                /* uri, size, capabilities */
  f->b.ops = &faulty_ops;
  f->b.uri = NULL;
  if (inner->uri != NULL && (f->b.uri = strdup (inner->uri)) == NULL) {
    r = -ENOMEM;
    goto err_lock;
  }
  f->inner = inner;
  *out = &f->b;
  return 0;

 err_lock:
  pthread_mutex_destroy (&f->set_lock);
 err_free:
  free (f);
 err:
  log_error ("faulty: cannot wrap %s: %s",
             inner->uri ? inner->uri : "(no uri)", strerror (-r));
  backing_close (inner);
  return r;
}

/* The faulty handle, or NULL (logged) if b is some other driver's. */
static struct backing_faulty *
checked (struct backing *b, const char *what)
{
  if (b != NULL && b->ops == &faulty_ops)
    return to_faulty (b);
  log_error ("faulty: %s on a %s handle, not a faulty one", what,
             b != NULL ? b->ops->name : "NULL");
  return NULL;
}

void
backing_faulty_fail_writes (struct backing *b, uint64_t offset,
                            uint64_t count)
{
  struct backing_faulty *f = checked (b, "fail_writes");

  if (f != NULL)
    range_set (f, &f->writes, offset, count);
}

void
backing_faulty_fail_reads (struct backing *b, uint64_t offset,
                           uint64_t count)
{
  struct backing_faulty *f = checked (b, "fail_reads");

  if (f != NULL)
    range_set (f, &f->reads, offset, count);
}

void
backing_faulty_fail_flush (struct backing *b, bool on)
{
  struct backing_faulty *f = checked (b, "fail_flush");

  if (f != NULL)
    __atomic_store_n (&f->fail_flush, on, __ATOMIC_RELEASE);
}

uint64_t
backing_faulty_nr_failed (struct backing *b)
{
  struct backing_faulty *f = checked (b, "nr_failed");

  return f != NULL ? __atomic_load_n (&f->nr_failed, __ATOMIC_RELAXED) : 0;
}
