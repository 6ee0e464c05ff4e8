/* SPDX-License-Identifier: BSD-3-Clause */
/* devring.c — the loop thread's ring: O_DIRECT cache hits read, and
 * small writeback writes written, without a worker.
 *
 * WHAT: at start the server makes one io_uring (ncache_ring_*, cache.h) and
 * watches its eventfd.  A READ that ncache_pread_async can queue (every
 * block a hit of an O_DIRECT cache device, the index lock free) is queued
 * there by the loop thread as it parses; each parse batch is submitted
 * with one system call; on completion the loop rechecks (bucket gens, the
 * mode), encodes the reply and writes it, one writev per connection per
 * batch of completions.  Anything else — a miss, a busy index, a full
 * ring, a failed or stale read — goes to the worker pool as before, and
 * the worker's blocking read does, reports and logs it properly.
 * WHY: an O_DIRECT hit is a wait on the SSD, not CPU.  Through the pool
 * each hit cost a loop -> worker hand-off, a synchronous pread with its
 * own doorbell, and a worker -> loop hand-off; at QD32 on the 2-core VM
 * perf showed finish_task_switch (~38% of the server's samples) and the
 * virtio doorbell (~10%) on top, with 1-4 reads in flight at the disk
 * against fio's ~16.  A deeper pool was no better (measured: workers = 32
 * vs the elastic default, randread 4k QD32: 15.1/12.0/14.5k vs
 * 15.5/19.5/16.3k, load average ~30): more threads, more switches.  The
 * ring removes both hand-offs and batches the doorbells.  Measured
 * (bench/run-bench rows, 8 s, BENCH_SERVERS="device nbdcached-wb", cache
 * file on ext4 on virtio, shared 2-core VM at load 7-36, three
 * interleaved pairs; ratio to the device row of the same run, median and
 * range):
 *                               pool only           ring
 *     randread 4k QD32, 1 conn  0.28x (0.26-0.38)   0.53x (0.49-0.56)
 *     randread 4k QD32, 4 conns 0.37x (0.37-0.41)   0.64x (0.61-0.83)
 *     seqread 1M QD8            0.99x (0.83-1.07)   1.04x (0.94-1.17)
 * and the disk's queue (/sys/block/vda/inflight) went from 1-4 to 11-17
 * reads.  What remains of the loop's time is the kernel's own submission
 * inside io_uring_enter (~48% of the server's samples: the ext4 direct
 * I/O path and the virtio doorbell, which fio's device row pays too) and
 * the sockets (readv, writev, epoll ~40%); the engine's lookup, recheck
 * and reply encoding are ~10%.
 * WHY NOT 0.9x OF THE DEVICE (issue 11, measured 2026-12-07, load 12-50):
 * CPU per 4k read at QD32 (fio's rusage; the server's schedstat),
 * medians of three interleaved runs:
 *                       device fio   nbd client (fio+libnbd)   nbdcached
 *     1 conn            10.2 us      11.7 us                   11.5 us
 *     4 conns           10.6 us      12.5 us                   12.3 us
 * The client alone costs more than the device row: libnbd makes ~5.8
 * system calls per read (perf: a send per request, recvs of each
 * reply's header and payload, polls), the server ~0.5 (a readv, an
 * io_uring_enter, a writev and an eventfd read per batch of 8-48).  Of
 * the server's 11.5 us, ~4.5 us is the kernel's ext4 direct read and
 * doorbell that fio pays too, ~2 us sleeping and waking (epoll_wait,
 * finish_task_switch), ~2 us the Unix socket, ~2 us our own code
 * (btree lookup 3.5%, checksum verification with XXH3 ~6%, bucket gens
 * 2.3%).  So the row needs ~2.3x the device's CPU, and on this shared
 * 2-core VM CPU is what it waits for: over 3 s of the 1-conn row the
 * loop thread ran 0.61 s and waited runnable 0.75 s, the client 0.47 s;
 * each reply is a chain of three wake-ups (disk -> server -> client ->
 * server), each a wait in the run queue.  vs-dev ranged 0.42-0.81x
 * (1 conn) and 0.46-0.96x (4 conns) with load; in the same six runs
 * nbdkit-file, which serves the page cache and never waits on the disk,
 * made a median 0.90x (0.55-1.58x) of the device row at 1 conn: the
 * client and the socket alone take the row to about the device's
 * figure on this machine.  Tried without a gain
 * beyond noise (fio on both servers at once, 8+6 pairs, ratio 1.00):
 * IORING_SETUP_SINGLE_ISSUER | DEFER_TASKRUN (no epoll_wait EINTR per
 * completion batch; CPU per read unchanged).  Not tried: registered
 * buffers (pinning is ~3.5% of the server) and files (~0.4%).
 * QD1 p99: with perf sched at load ~12, 1.3% of QD1 reads saw a thread
 * (1.1% the loop thread, 0.3% the client) wait > 0.5 ms, up to 5 ms,
 * for a CPU: that, with the disk's own tail (fio QD1 p99 0.5 ms, p99.9
 * 3.7 ms), is enough to explain the row's ms-range p99 (2.3 ms; p50
 * 0.19 ms) without any cost in this code (one measurement, not quiet).
 * THE WRITE HALF: a WRITE whose payload is in is offered to
 * ncache_pwrite_async (common/cache/request-async-write.c says which
 * qualify: writeback, no FUA, whole blocks up to 256 KiB, nothing that
 * would wait) and queued with the batch's reads; when its last device
 * write completes the engine inserts its keys (ncache_pwrite_async_done)
 * and the loop replies, else a worker redoes it the blocking way.  WHY:
 * a 4k write through the pool cost three context switches (loop ->
 * worker, the worker's sleep in its O_DIRECT pwrite, worker -> loop);
 * perf sched_switch (8 workers): 34% idle, futex wake/wait ~17% of the CPU,
 * and more workers (-w 32) changed nothing.  Measured like the reads
 * (bench/run-bench, 5 s, BENCH_SERVERS="device nbdcached-wb
 * nbdcached-wb-buffered nbdkit-file", six interleaved pairs of main and
 * this, load 10-20; nbdcached-wb's kIOPS, and its ratio to the device
 * row of the same run, median and range):
 *                            pool only                 ring
 *     randwrite 4k QD32, 1   9.5k  0.20x (0.16-0.25)   17.2k 0.41x (0.29-0.68)
 *     randwrite 4k QD32, 4   14.4k 0.16x (0.13-0.22)   17.4k 0.24x (0.18-0.36)
 * Per write, over 5 s of that 1-conn row (alternating pairs, the
 * server's threads' /proc status and schedstat): 1.8 context switches
 * and 45 us of CPU through the pool, 0.2 and 25 us on the ring (about 1%
 * of the writes redone by a worker: a busy range or index, a bucket to
 * open).  The server then used ~0.5 CPU: perf shows the virtio doorbell
 * (iowrite16, 12% of its samples, which the device row pays too), a
 * memmove (11%: the leaf insert's key shift or the payload copy; no
 * frame pointers to tell), finish_task_switch (11%) and softirqs (7%).
 * WHERE THE WRITE ROW'S TIME GOES (issue 11 item 1, 2026-12-07; perf
 * --call-graph dwarf on the server during randwrite 4k QD32, 1 conn):
 * the memmove above was the leaf insert's key shift (leaf_apply: 5.7% of
 * the server's samples; the payload copy out of rbuf 1.2%);
 * btree_insert_nowait 16% in all (its no-I/O check descends the tree a
 * second time: lower_bound 2.1%); io_uring_enter's inline ext4 direct
 * write submission 36% (fio's device row pays it too); readv 13%.  The
 * server used 0.77 CPU at 27.5k writes/s (28 us a write) and fio 0.41
 * (1 conn; 4 conns: the server 0.86-0.98 CPU, its loop thread the
 * bottleneck), on a machine with 2 CPUs shared with other jobs.  Tried
 * and not merged: a leaf insert that shifts the shorter side
 * of its insertion point into headroom before the keys: btree-scale -r,
 * 400k shuffled inserts, 0.91/1.19/1.06 -> 0.81/0.97/0.92 s of CPU; the
 * server's share in leaf_apply's memmove 5.7% -> 4.8% (one profile
 * each); ~1% of the server for 6% more node memory and a second shape
 * of the node, and in the rows it is lost in the noise (load 10-28; the
 * device row itself ranged 10-87k; two runs of 4 interleaved pairs;
 * vs-dev medians (ranges), main -> that branch):
 *                               run 1                  run 2
 *     randwrite 4k QD32, 1 conn 0.58x -> 0.39x         0.35x -> 0.46x
 *                               (0.32-0.61, 0.32-0.70) (0.22-0.79, 0.28-0.92)
 *     randwrite 4k QD32, 4 conns 0.35x -> 0.43x        0.30x -> 0.29x
 *                               (0.17-1.03, 0.36-0.49) (0.21-0.33, 0.18-0.32)
 * Not done: receiving WRITE payloads straight into the request's aligned
 * buffer (the copy is 1.2%; the payloads arrive inside conn.c's 64 KiB
 * reads with the next headers between them, and reading each one apart
 * would cost a readv per request, more than the copy); one insert per
 * completion batch (a batch of 8-32 writes lands in ~100 leaves: few
 * share one, so no shift is saved).  A part of the gap that is not this
 * code: the cache file is preallocated (unwritten extents, which ext4
 * converts at each block's first write) where the device row writes a
 * file written in full; fio alone, 4k random writes QD32, 4 alternating
 * pairs: 30.8/22.7/27.6/14.8k into a fresh preallocated 1 GiB file
 * against 34.9/24.1/41.0/29.3k into a written one (medians 25.2k and
 * 32.1k: 0.78x); bench/run-bench now writes its cache files in full
 * (its CACHE FILE paragraph).  Tried once: IORING_SETUP_SQPOLL (its
 * bench run did not finish in 15 minutes, not investigated; on 2 CPUs a
 * polling kernel thread competes with the client anyway).
 * 1M sequential writes stay with the pool (measured no better on the
 * ring: request-async-write.c, LARGE WRITES).  Not tried: merging
 * adjacent 4k writes into one SQE (random writes are rarely adjacent,
 * and the keys would still be one per write) and a deeper ring (4
 * connections at QD32 keep at most 128 of its 256 slots busy).
 * INVARIANTS: a queued request is owned by the ring until its last I/O
 * completes (r->aread.pending or r->awrite.pending reaches 0), then by
 * the loop again; it counts in conn->in_flight throughout, so its
 * connection outlives it.  A queued WRITE holds the engine's range lock
 * and mode gate until its _done, which runs even when its connection was
 * closed meanwhile; a mode change or detach (control threads, never the
 * loop) waits for it, and the stop drains the ring before the workers.
 * THREADS AND LOCKS: loop thread only; the ring has no lock.
 * FAILURE: no ring (built without liburing, io_uring disabled, seccomp):
 * logged at debug level, every read goes to the workers.  A failed or
 * stale read, a failed write or one whose insert would wait, is redone by
 * a worker.
 * NOT HERE: which reads and writes qualify (ncache_pread_async,
 * ncache_pwrite_async), other commands (workers).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "log.h"
#include "server.h"

/* I/Os queued at most: two connections' CONN_MAX_IN_FLIGHT. */
#define DEVRING_DEPTH 256u

/* The reply of a request the ring served, written with the batch. */
static void
reply_now (struct request *r, struct conn **to_flush)
{
  struct conn *c = r->conn;

  r->synchronous = true;
  reply_prepare (r);
  conn_queue (c, &r->out);
  if (!c->flush_marked) {
    c->flush_marked = true;
    c->flush_next = *to_flush;
    *to_flush = c;
  }
}

static void
finish_read (struct server *srv, struct request *r, struct conn **to_flush)
{
  struct conn *c = r->conn;

  if (c->destroyed) {
    nbd_request_release (c, &r->out);
    return;
  }
  if (ncache_pread_async_done (c->exp->nc, r->h.count, r->h.offset,
                               &r->aread) < 0) {
    srv->ring_redone++;
    worker_pool_submit (srv->pool, r, r, 1);   /* the blocking way */
    return;
  }
  srv->ring_served++;
  r->chunks[0] = (struct read_chunk) {
    .offset = r->h.offset, .length = r->h.count, .hole = false,
  };
  r->nr_chunks = 1;
  r->error = 0;
  reply_now (r, to_flush);
}

/* A write's keys go in (and its locks go) even when its connection is
 * gone: the engine holds them until _done.
 */
static void
finish_write (struct server *srv, struct request *r, struct conn **to_flush)
{
  struct conn *c = r->conn;
  int err = ncache_pwrite_async_done (c->exp->nc, r->buf, r->h.count,
                                      r->h.offset, &r->awrite);

  if (c->destroyed) {
    nbd_request_release (c, &r->out);
    return;
  }
  if (err == -EAGAIN) {
    srv->ring_rewritten++;
    worker_pool_submit (srv->pool, r, r, 1);   /* the blocking way */
    return;
  }
  srv->ring_written++;
  r->error = err;
  r->errmsg = NULL;
  reply_now (r, to_flush);
}

struct reap_ctx {
  struct server *srv;
  struct conn *to_flush;
};

static void
io_done (void *cookie, int result, void *opaque)
{
  struct request *r = cookie;
  struct reap_ctx *x = opaque;

  if (r->h.type == NBD_CMD_WRITE) {
    if (result < 0 && r->awrite.err == 0)
      r->awrite.err = result;
    if (--r->awrite.pending == 0)
      finish_write (x->srv, r, &x->to_flush);
    return;
  }
  if (result < 0 && r->aread.err == 0)
    r->aread.err = result;
  if (--r->aread.pending == 0)
    finish_read (x->srv, r, &x->to_flush);
}

static void
reap (struct server *srv)
{
  struct reap_ctx x = { .srv = srv, .to_flush = NULL };

  ncache_ring_reap (srv->ring, io_done, &x);
  /* One writev per connection for the whole batch of replies. */
  while (x.to_flush) {
    struct conn *c = x.to_flush;

    x.to_flush = c->flush_next;
    c->flush_marked = false;
    conn_flush_output (c);
  }
}

static void
ring_cb (struct ev_loop *loop, ev_io *w, int revents)
{
  reap (w->data);
}

void
devring_open (struct server *srv)
{
  int r = ncache_ring_create (DEVRING_DEPTH, &srv->ring);

  if (r < 0) {
    srv->ring = NULL;
    errno = -r;
    log_debug ("no io_uring for cache hits (%m): every read goes to the "
               "worker threads");
    return;
  }
  ev_io_init (&srv->ring_io, ring_cb, ncache_ring_eventfd (srv->ring), EV_READ);
  srv->ring_io.data = srv;
  ev_io_start (srv->loop, &srv->ring_io);
}

bool
devring_read (struct conn *c, struct request *r)
{
  struct ncache_aread *a = &r->aread;

  if (c->srv->ring == NULL ||
      ncache_pread_async (c->exp->nc, c->srv->ring, r->buf, r->h.count,
                          r->h.offset, a, r) < 0)
    return false;
  if (a->pending == 0)
    return false;               /* nothing queued after all */
  c->srv->ring_queued = true;
  return true;
}

bool
devring_write (struct conn *c, struct request *r)
{
  struct ncache_awrite *w = &r->awrite;
  uint32_t flags = (r->h.flags & NBD_CMD_FLAG_FUA) ? NCACHE_FUA : 0;

  if (c->srv->ring == NULL ||
      ncache_pwrite_async (c->exp->nc, c->srv->ring, r->buf, r->h.count,
                           r->h.offset, flags, w, r) < 0)
    return false;
  c->srv->ring_queued = true;
  return true;
}

void
devring_submit (struct server *srv)
{
  int r;

  if (srv->ring == NULL || !srv->ring_queued)
    return;
  srv->ring_queued = false;
  if ((r = ncache_ring_submit (srv->ring)) < 0) {
    errno = -r;
    log_error_ratelimited ("io_uring submit: %m");
  }
}

void
devring_close (struct server *srv)
{
  if (srv->ring == NULL)
    return;
  ev_io_stop (srv->loop, &srv->ring_io);
  while (ncache_ring_in_flight (srv->ring) > 0) {
    int r = ncache_ring_wait (srv->ring);

    if (r < 0) {
      errno = -r;
      log_error ("io_uring wait at stop: %m");
      break;
    }
    reap (srv);
  }
  log_debug ("io_uring: %" PRIu64 " reads served, %" PRIu64 " redone by "
             "workers; %" PRIu64 " writes done, %" PRIu64 " redone",
             srv->ring_served, srv->ring_redone, srv->ring_written,
             srv->ring_rewritten);
}

void
devring_destroy (struct server *srv)
{
  ncache_ring_destroy (srv->ring);
  srv->ring = NULL;
}
