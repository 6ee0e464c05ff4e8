/* SPDX-License-Identifier: BSD-3-Clause */
/* cdev-ring.c — an io_uring that one event loop drives: cache-device
 * reads queued without a thread each, completions polled through an
 * eventfd.
 *
 * WHAT: cdev_ring_create / read / submit / reap / wait / destroy (cdev.h)
 * over liburing.  A read names a cdev whose driver has an fd (the "file"
 * driver); each queued read takes a slot that remembers the caller's
 * cookie and the length expected, so a completion comes back as
 * (cookie, 0 or -errno), a short transfer being -EIO.
 * WHY: an O_DIRECT cache hit is a wait on the SSD.  Through the worker
 * pool every hit costs two thread hand-offs (loop -> worker -> loop) and
 * one synchronous pread with its own doorbell; at queue depth 32 on this
 * project's 2-core VM those context switches, not the device, were the
 * limit (perf: finish_task_switch and the virtio doorbell on top, the
 * device seeing 1-4 reads in flight of the 32 asked).  A deeper or
 * elastic pool only adds threads to switch between.  One ring lets the
 * loop thread queue every hit of a parse batch and submit them with one
 * system call: no thread hand-off, one doorbell per batch.  Measurements:
 * server/devring.c.
 * INVARIANTS: queued + in_flight <= depth (cdev_ring_space says what is
 * left); a slot is busy from its read's queueing to its completion's
 * reap, and the cookie is handed back exactly once.
 * THREADS AND LOCKS: none: a ring belongs to one thread.
 * FAILURE: cdev_ring_create returns -ENOSYS when built without liburing
 * or when the kernel refuses io_uring (disabled by sysctl, seccomp in a
 * container: EPERM, ENOSYS); callers then use the blocking cdev ops.
 * Read errors are returned per completion, not logged (the caller
 * retries the blocking way, which logs).
 * Writes (O_DIRECT cdevs only, never FUA): the same slots and reaping.
 * NOT HERE: syncs and FUA (durability stays with the blocking ops),
 * what is read (the engine's async hit path, request.c).
 */
#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "cdev.h"

#ifdef HAVE_LIBURING

#include <sys/eventfd.h>
#include <liburing.h>

struct ring_slot {
  void *cookie;
  uint32_t len;                 /* bytes expected */
  uint32_t next_free;           /* index + 1 of the next free slot; 0 = none */
};

struct cdev_ring {
  struct io_uring ring;
  int efd;                      /* eventfd signalled on completions */
  unsigned depth;
  unsigned queued;              /* SQEs not yet submitted */
  unsigned in_flight;           /* submitted, not reaped */
  uint32_t free_head;           /* index + 1 of the first free slot */
  struct ring_slot *slots;      /* [depth] */
};

int
cdev_ring_create (unsigned depth, struct cdev_ring **out)
{
  struct cdev_ring *rg;
  unsigned i;
  int r;

  if (depth == 0)
    return -EINVAL;
  rg = calloc (1, sizeof *rg);
  if (rg == NULL)
    return -ENOMEM;
  rg->slots = calloc (depth, sizeof *rg->slots);
  if (rg->slots == NULL) {
    free (rg);
    return -ENOMEM;
  }
  rg->depth = depth;
  for (i = 0; i < depth; i++)
    rg->slots[i].next_free = i + 1 < depth ? i + 2 : 0;
  rg->free_head = 1;
  r = io_uring_queue_init (depth, &rg->ring, 0);
  if (r < 0)
    goto err_free;
  rg->efd = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (rg->efd == -1) {
    r = -errno;
    goto err_ring;
  }
  if ((r = io_uring_register_eventfd (&rg->ring, rg->efd)) < 0)
    goto err_efd;
  *out = rg;
  return 0;

 err_efd:
  close (rg->efd);
 err_ring:
  io_uring_queue_exit (&rg->ring);
 err_free:
  free (rg->slots);
  free (rg);
  /* EPERM (io_uring_disabled, seccomp), ENOSYS: no ring here. */
  return r == -EPERM || r == -EACCES ? -ENOSYS : r;
}

int
cdev_ring_eventfd (const struct cdev_ring *rg)
{
  return rg->efd;
}

unsigned
cdev_ring_space (const struct cdev_ring *rg)
{
  return rg->depth - rg->queued - rg->in_flight;
}

unsigned
cdev_ring_in_flight (const struct cdev_ring *rg)
{
  return rg->queued + rg->in_flight;
}

static int
queue (struct cdev_ring *rg, struct cdev *cd, bool write, void *buf,
       size_t count, uint64_t offset, void *cookie)
{
  struct io_uring_sqe *sqe;
  struct ring_slot *s;
  uint32_t slot;
  int fd = cd->ops->ring_fd ? cd->ops->ring_fd (cd) : -1;

  if (fd < 0 || (write && !cd->direct))
    return -EOPNOTSUPP;
  if (count > UINT32_MAX ||
      cdev_check_request (cd, write ? "write" : "read", buf, offset,
                          count) < 0)
    return -EINVAL;
  if (rg->free_head == 0 || (sqe = io_uring_get_sqe (&rg->ring)) == NULL)
    return -EAGAIN;
  slot = rg->free_head - 1;
  s = &rg->slots[slot];
  rg->free_head = s->next_free;
  s->cookie = cookie;
  s->len = count;
  if (write)
    io_uring_prep_write (sqe, fd, buf, count, offset);
  else
    io_uring_prep_read (sqe, fd, buf, count, offset);
  io_uring_sqe_set_data64 (sqe, slot);
  rg->queued++;
  return 0;
}

int
cdev_ring_read (struct cdev_ring *rg, struct cdev *cd, void *buf,
                size_t count, uint64_t offset, void *cookie)
{
  return queue (rg, cd, false, buf, count, offset, cookie);
}

int
cdev_ring_write (struct cdev_ring *rg, struct cdev *cd, const void *buf,
                 size_t count, uint64_t offset, void *cookie)
{
  return queue (rg, cd, true, (void *) buf, count, offset, cookie);
}

int
cdev_ring_submit (struct cdev_ring *rg)
{
  int r;

  if (rg->queued == 0)
    return 0;
  r = io_uring_submit (&rg->ring);
  if (r < 0)
    return r;
  rg->queued -= (unsigned) r < rg->queued ? (unsigned) r : rg->queued;
  rg->in_flight += r;
  return 0;
}

unsigned
cdev_ring_reap (struct cdev_ring *rg, cdev_ring_done_fn fn, void *opaque)
{
  struct io_uring_cqe *cqe;
  unsigned n = 0;
  uint64_t v;

  /* Clear the eventfd before looking, so a completion after the look
   * signals it again.
   */
  if (read (rg->efd, &v, sizeof v) < 0) {
    /* EAGAIN: nothing signalled since the last reap. */
  }
  while (io_uring_peek_cqe (&rg->ring, &cqe) == 0) {
    uint32_t slot = (uint32_t) io_uring_cqe_get_data64 (cqe);
    struct ring_slot *s = &rg->slots[slot];
    int res = cqe->res;
    void *cookie = s->cookie;

    if (res >= 0)
      res = (uint32_t) res == s->len ? 0 : -EIO;
    io_uring_cqe_seen (&rg->ring, cqe);
    s->cookie = NULL;
    s->next_free = rg->free_head;
    rg->free_head = slot + 1;
    rg->in_flight--;
    n++;
    fn (cookie, res, opaque);
  }
  return n;
}

int
cdev_ring_wait (struct cdev_ring *rg)
{
  struct io_uring_cqe *cqe;
  int r;

  if ((r = cdev_ring_submit (rg)) < 0)
    return r;
  if (rg->in_flight == 0)
    return 0;
  do
    r = io_uring_wait_cqe (&rg->ring, &cqe);
  while (r == -EINTR);
  return r;
}

void
cdev_ring_destroy (struct cdev_ring *rg)
{
  if (rg == NULL)
    return;
  io_uring_queue_exit (&rg->ring);
  close (rg->efd);
  free (rg->slots);
  free (rg);
}

#else /* !HAVE_LIBURING */

int
cdev_ring_create (unsigned depth, struct cdev_ring **out)
{
  (void) depth;
  (void) out;
  return -ENOSYS;
}

/* Never called without a ring. */
int cdev_ring_eventfd (const struct cdev_ring *rg) { (void) rg; return -1; }
unsigned cdev_ring_space (const struct cdev_ring *rg) { (void) rg; return 0; }
unsigned cdev_ring_in_flight (const struct cdev_ring *rg)
{ (void) rg; return 0; }
int
cdev_ring_read (struct cdev_ring *rg, struct cdev *cd, void *buf,
                size_t count, uint64_t offset, void *cookie)
{
  (void) rg; (void) cd; (void) buf; (void) count; (void) offset;
  (void) cookie;
  return -EOPNOTSUPP;
}
int
cdev_ring_write (struct cdev_ring *rg, struct cdev *cd, const void *buf,
                 size_t count, uint64_t offset, void *cookie)
{
  (void) rg; (void) cd; (void) buf; (void) count; (void) offset;
  (void) cookie;
  return -EOPNOTSUPP;
}
int cdev_ring_submit (struct cdev_ring *rg) { (void) rg; return 0; }
unsigned
cdev_ring_reap (struct cdev_ring *rg, cdev_ring_done_fn fn, void *opaque)
{ (void) rg; (void) fn; (void) opaque; return 0; }
int cdev_ring_wait (struct cdev_ring *rg) { (void) rg; return 0; }
void cdev_ring_destroy (struct cdev_ring *rg) { (void) rg; }

#endif /* HAVE_LIBURING */
