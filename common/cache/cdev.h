/* SPDX-License-Identifier: BSD-3-Clause */
/* cdev.h — raw I/O on a cache device: a file, a block device, or (tests) a
 * simulated device that can fail I/Os and lose unsynced writes.
 *
 * WHAT: an ops table (pread, pwrite, sync, discard, close) over the bytes
 * of the cache device, and two implementations:
 *   cdev-file.c  a regular file or block device, optionally O_DIRECT;
 *                (cdev-signature.c: what else such a device holds);
 *   cdev-sim.c   an in-memory device with a durability model, for tests;
 * and cdev-ring.c, an io_uring one event loop queues reads on (a driver
 * with an fd only).
 * WHY: the engine must be testable against crashes at every write, and
 * must drive a real SSD with O_DIRECT; both sit behind one table.
 *
 * CONTRACT (every implementation):
 * - Offsets and lengths are multiples of NC_BLOCK_BYTES (4096) and lie
 *   within [0, size_bytes); buffers are NC_BLOCK_BYTES-aligned (callers
 *   allocate with cdev_alloc_buffer), so O_DIRECT always works.
 * - pread / pwrite transfer everything or fail with a negative errno
 *   (short transfers are looped).  They are thread-safe (positional I/O).
 * - pwrite makes nothing durable by itself.  sync (fdatasync) makes every
 *   pwrite that *completed before sync was called* durable.  pwrite with
 *   CDEV_FUA is durable when it returns (RWF_DSYNC).  CDEV_STREAM changes
 *   none of this (a hint on how to write, not on what is durable).
 * - discard is advisory (FALLOC_FL_PUNCH_HOLE on a file, BLKDISCARD on a
 *   block device); afterwards the range reads as old data or zeros.  It
 *   returns 0 when the device cannot discard.
 * - Errors are logged once by the implementation with the path and offset.
 *
 * THREADS: every call may block; any thread.
 * NOT HERE: what the bytes mean (ondisk.h and the modules).
 */
#ifndef NBDCACHE_CDEV_H
#define NBDCACHE_CDEV_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CDEV_FUA (1u << 0)
/* A hint, no promise: a large write of client data that need not stay in
 * memory (a buffered "file" device writes it with O_DIRECT: cdev-file.c,
 * LARGE WRITES); every implementation may ignore it.
 */
#define CDEV_STREAM (1u << 1)

struct cdev;

struct cdev_ops {
  const char *name;             /* "file", "sim" */
  int (*pread) (struct cdev *cd, void *buf, size_t count, uint64_t offset);
  /* Optional (NULL: never possible): the read only if it needs no wait
   * (buffered data in the page cache), else -EAGAIN, logging nothing.
   */
  int (*pread_nowait) (struct cdev *cd, void *buf, size_t count,
                       uint64_t offset);
  int (*pwrite) (struct cdev *cd, const void *buf, size_t count,
                 uint64_t offset, uint32_t flags);
  int (*sync) (struct cdev *cd);
  int (*discard) (struct cdev *cd, uint64_t count, uint64_t offset);
  void (*close) (struct cdev *cd);
  /* Optional (NULL: no fd, cdev_ring_read refuses): the fd a ring reads
   * from, with the same O_DIRECT setting as pread.
   */
  int (*ring_fd) (struct cdev *cd);
};

/* The common head of every implementation; embedded first. */
struct cdev {
  const struct cdev_ops *ops;
  char *path;                   /* for messages; never NULL */
  uint64_t size_bytes;          /* multiple of NC_BLOCK_BYTES */
  bool direct;                  /* opened O_DIRECT */
  bool is_block_device;
  bool readonly;                /* opened read-only (nbdcache show/check):
                                   writes fail with -EROFS, so code that
                                   would repair (recovery) only inspects */
  bool created;                 /* this open created the file (a failed
                                   start removes it again: device.c) */
};

struct cdev_file_options {
  bool direct;                  /* O_DIRECT; falls back with a warning to
                                   buffered I/O if the fs refuses it */
  bool readonly;                /* nbdcache show / check */
  /* If the file does not exist, create it (sparse) with this size; 0 means
   * it must exist.  An existing file is never resized.
   */
  uint64_t create_size_bytes;
};

/* 0 and *out set, or -errno (logged).  The size is the file's size (or the
 * block device's) rounded down to a block.  The device is locked for the
 * life of the cdev (exclusive, or shared when readonly; a writable block
 * device is also opened O_EXCL): -EBUSY when another opener has it.
 */
int cdev_file_open (const char *path, const struct cdev_file_options *opts,
                    struct cdev **out);

/* Another program's data on path, by libblkid (cdev-signature.c): 1 and
 * `what` set ("an ext4 filesystem", "a gpt partition table") when a
 * filesystem, partition table, LVM/RAID member, crypto or swap signature
 * is there, 0 when none is, -errno when the probe cannot run (logged as a
 * warning).  Read-only; nbdcache's own superblock is not one of them.
 */
int cdev_foreign_signature (const char *path, char *what, size_t what_len);

/* NULL is a no-op. */
void cdev_close (struct cdev *cd);

/* An NC_BLOCK_BYTES-aligned buffer of `bytes` (rounded up to a block),
 * zeroed; NULL on ENOMEM.  Free with free().
 */
void *cdev_alloc_buffer (size_t bytes);

/* The contract of every request, checked here once for every driver:
 * offset and count block multiples, inside the device, and (if buf) a
 * block-aligned buffer.  0 or -EINVAL (logged with `what`).
 */
int cdev_check_request (const struct cdev *cd, const char *what,
                        const void *buf, uint64_t offset, uint64_t count);

static inline int
cdev_pread (struct cdev *cd, void *buf, size_t count, uint64_t offset)
{
  int r = cdev_check_request (cd, "read", buf, offset, count);
  return r < 0 ? r : cd->ops->pread (cd, buf, count, offset);
}
/* 0, or -EAGAIN when the read would wait (or breaks the contract: the
 * blocking read reports that).
 */
static inline int
cdev_pread_nowait (struct cdev *cd, void *buf, size_t count, uint64_t offset)
{
  if (cd->ops->pread_nowait == NULL ||
      offset % 4096 || count % 4096 || (uintptr_t) buf % 4096 ||
      offset > cd->size_bytes || count > cd->size_bytes - offset)
    return -EAGAIN;
  return cd->ops->pread_nowait (cd, buf, count, offset);
}
static inline int
cdev_pwrite (struct cdev *cd, const void *buf, size_t count, uint64_t offset,
             uint32_t flags)
{
  int r = cdev_check_request (cd, "write", buf, offset, count);
  return r < 0 ? r : cd->ops->pwrite (cd, buf, count, offset, flags);
}
static inline int
cdev_sync (struct cdev *cd)
{ return cd->ops->sync (cd); }
static inline int
cdev_discard (struct cdev *cd, uint64_t count, uint64_t offset)
{
  int r = cdev_check_request (cd, "discard", NULL, offset, count);
  return r < 0 ? r : cd->ops->discard (cd, count, offset);
}

/* ---- a ring: reads and writes without a thread each (cdev-ring.c) ----
 *
 * One thread owns a ring (no locks).  cdev_ring_read queues a read of a
 * cdev with an fd, cdev_ring_write a write of an O_DIRECT one (no
 * CDEV_FUA: durability stays with cdev_sync), under the contract above,
 * checked at once; it starts
 * at cdev_ring_submit (one system call for everything queued); its
 * completion comes back from cdev_ring_reap as fn (cookie, 0 or -errno,
 * opaque), a short transfer being -EIO.  The eventfd becomes readable
 * when completions wait.  Nothing is logged: a caller redoes a failed
 * I/O with the blocking op, which logs.  Every I/O queued must be reaped
 * before
 * cdev_ring_destroy, and its cdev kept open until then.
 */
struct cdev_ring;
typedef void (*cdev_ring_done_fn) (void *cookie, int result, void *opaque);

/* 0 and *out, or -ENOSYS (built without liburing, or the kernel refuses
 * io_uring: callers use the blocking ops), or another -errno.
 */
int cdev_ring_create (unsigned depth, struct cdev_ring **out);
int cdev_ring_eventfd (const struct cdev_ring *rg);
unsigned cdev_ring_space (const struct cdev_ring *rg);     /* I/Os */
unsigned cdev_ring_in_flight (const struct cdev_ring *rg); /* I/Os */
/* 0, -EAGAIN (the ring is full), -EOPNOTSUPP (the driver has no fd), or
 * -EINVAL (the contract).
 */
int cdev_ring_read (struct cdev_ring *rg, struct cdev *cd, void *buf,
                    size_t count, uint64_t offset, void *cookie);
/* The same for a write; -EOPNOTSUPP too when the cdev is not O_DIRECT. */
int cdev_ring_write (struct cdev_ring *rg, struct cdev *cd, const void *buf,
                     size_t count, uint64_t offset, void *cookie);
int cdev_ring_submit (struct cdev_ring *rg);
/* Completions ready now; how many. */
unsigned cdev_ring_reap (struct cdev_ring *rg, cdev_ring_done_fn fn,
                         void *opaque);
/* Submit, then block until a completion is ready (0 at once if none is
 * in flight); reap it after.  0 or -errno.
 */
int cdev_ring_wait (struct cdev_ring *rg);
/* NULL is a no-op. */
void cdev_ring_destroy (struct cdev_ring *rg);

/* ---- the simulated device (tests) ----
 *
 * Memory holds two images: `current` (what reads see) and `durable` (what
 * survives a crash).  pwrite updates current and remembers the written
 * blocks as unsynced; sync copies every unsynced block to durable.  The
 * device counts pwrite calls (1, 2, 3 …), sync calls, and both together
 * in one sequence ("ops": the Nth write-or-sync).
 *
 * Faults:
 * - cdev_sim_fail_at_write (n): pwrite number n and every I/O after it fail
 *   with -EIO ("the device died"); pwrite n is not applied at all.
 *   0 = never.
 * - cdev_sim_fail_at_op (n): the same death at op number n, counting
 *   pwrite and sync calls together, so a test can kill the device AT a
 *   sync (between a journal entry's pwrite and its sync).  A sync that
 *   dies fails -EIO and makes nothing durable: what it would have synced
 *   stays unsynced, for the crash to lose or tear (a kill keeps it).  A
 *   pwrite that dies is not applied.  Reads and discards are not
 *   numbered.  0 = never; with both fail_at armed, the first reached kills.
 *   cdev_sim_death says which kind of I/O killed the device.
 * - cdev_sim_fail_read_once / fail_write_once: the next pread / pwrite
 *   touching [offset, offset+count) fails with -EIO once (a bad sector).
 * - cdev_sim_crash (tear_seed): power loss: current := durable, except that
 *   with tear_seed != 0 each unsynced block independently survives with
 *   probability 1/2 (a torn write), drawn from a PRNG seeded by tear_seed.
 *   Clears faults and counters.  The device stays usable (it is "rebooted").
 * - cdev_sim_crash_sectors (tear_seed): cdev_sim_crash, but a device that
 *   tears inside a block (512-byte sectors): each unsynced block is lost
 *   or survives whole (p = 1/4 each), else each of its sectors
 *   independently survives with p = 1/2.
 * - cdev_sim_kill: the process using the device was killed, the machine
 *   lives on: every write that was made survives (as a sync would), and
 *   faults and counters are cleared like cdev_sim_crash.
 * All of this is thread-safe (one mutex).
 */
int cdev_sim_create (uint64_t size_bytes, struct cdev **out);
void cdev_sim_fail_at_write (struct cdev *cd, uint64_t n);
void cdev_sim_fail_at_op (struct cdev *cd, uint64_t n);
void cdev_sim_fail_read_once (struct cdev *cd, uint64_t offset, uint64_t count);
void cdev_sim_fail_write_once (struct cdev *cd, uint64_t offset, uint64_t count);
void cdev_sim_crash (struct cdev *cd, uint64_t tear_seed);
void cdev_sim_crash_sectors (struct cdev *cd, uint64_t tear_seed);
void cdev_sim_kill (struct cdev *cd);
/* Take another reference: cdev_close drops one and the device is freed at
 * the last.  A test holds one so the simulated device outlives an engine
 * "crash" (fail_at_write, close the engine, cdev_sim_crash, reopen).
 */
void cdev_sim_hold (struct cdev *cd);
/* Counts since create or the last crash/kill; every pwrite that passes
 * the argument checks and every sync is counted, dead or not, so the
 * device is dead exactly when a count reached its fail_at.
 */
uint64_t cdev_sim_nr_writes (struct cdev *cd);
uint64_t cdev_sim_nr_syncs (struct cdev *cd);
uint64_t cdev_sim_nr_ops (struct cdev *cd);     /* writes + syncs */
/* NULL while the device lives (or after a crash/kill); else "write" or
 * "sync": the kind of I/O a fail_at killed it at.  A static string.
 */
const char *cdev_sim_death (struct cdev *cd);
/* Direct access to the current image, for corruption tests (flip a byte in
 * a metadata block).  Writes here are durable at once.
 */
void cdev_sim_poke (struct cdev *cd, uint64_t offset, const void *buf,
                    size_t count);
void cdev_sim_peek (struct cdev *cd, uint64_t offset, void *buf, size_t count);

#endif /* NBDCACHE_CDEV_H */
