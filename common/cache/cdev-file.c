/* SPDX-License-Identifier: BSD-3-Clause */
/* cdev-file.c — the cache device as a regular file or a block device.
 *
 * WHAT: cdev_file_open and the "file" ops (cdev.h) over one file
 * descriptor, used with positioned I/O only; plus the two helpers every
 * implementation shares, cdev_check_request (the contract every request
 * is checked against once, in cdev.h's dispatchers), cdev_close and
 * cdev_alloc_buffer.
 * WHY: this is how the engine drives a real SSD (O_DIRECT, so the cache
 * device does not also fill the page cache) or a file standing in for one.
 *
 * HOW EACH OP MAPS TO THE KERNEL:
 * - pread_nowait: one preadv2 with RWF_NOWAIT, buffered files only (an
 *   O_DIRECT read always waits for the device); on tmpfs (no RWF_NOWAIT
 *   there, and nothing to wait for) a plain pread.
 * - pread/pwrite loop over short transfers and EINTR.  CDEV_FUA is
 *   pwritev2 with RWF_DSYNC, or pwrite + fdatasync where the kernel or
 *   filesystem refuses the flag.
 * - sync is fdatasync.
 * - LARGE WRITES of a buffered cache (direct = no): a CDEV_STREAM write
 *   (a client's data) of at least DIRECT_WRITE_MIN_BYTES goes through
 *   direct_fd, a second open file description of the same file with
 *   O_DIRECT; smaller writes, promotions, moving GC, index nodes, journal
 *   entries, prios, and every read stay buffered (a promotion's data
 *   was just read and is likely read again: the page cache keeps it).  WHY, measured (issue 11 item 2, 1M sequential writes at
 *   QD8, buffered cache on ext4): through the page cache every 1 MiB
 *   data write is a copy into page-cache pages the file has never had
 *   (a new bucket, and a freed bucket's pages are dropped by its hole
 *   punch), ext4 serializes buffered writers on the inode lock around
 *   that copy, and each journal commit's fdatasync then writes the lot
 *   (~100 ms of data) while the next writes pile up behind the inode
 *   lock.  On the 2-core VM that runs the bench, copying into fresh
 *   pages ran at 70-100 MB/s (a page the guest has given back to the
 *   host costs a host fault when touched again) against 2.5-4.5 GB/s
 *   into resident pages: 0.03-0.2x nbdkit-file, which only ever
 *   overwrites the resident pages of its file.  With O_DIRECT the data
 *   goes to the device without the copy, the fdatasync finds only
 *   metadata dirty, and the rate is the O_DIRECT cache's.  The price: a
 *   large run written this way is not in the page cache until read.
 *   Coherence is the kernel's: an O_DIRECT write writes back and drops
 *   the overlapping cached pages before and after it, and the engine
 *   never reads or writes a range while another write to it is in
 *   flight.  DURABILITY is unchanged: a write through direct_fd is
 *   promised nothing until the next sync or CDEV_FUA, as for a buffered
 *   one; fdatasync (on either fd: same inode) then commits the metadata
 *   a write into a hole of the sparse file needed and flushes the
 *   device cache, exactly as for an O_DIRECT cache.  No direct_fd (the
 *   filesystem refuses O_DIRECT, tmpfs, read-only) or EINVAL on the
 *   first O_DIRECT write: every write buffered, as before.
 * - ring_fd: the fd itself, for reads (and, O_DIRECT only, writes) queued
 *   on a ring (cdev-ring.c).
 * - discard: regular file: fallocate PUNCH_HOLE|KEEP_SIZE; block device:
 *   BLKDISCARD.  "Not supported" makes it a no-op returning 0 from then on.
 *   The engine asks for discards on a regular file only with an explicit
 *   `discard = yes` (the default, auto, is off for files: PREALLOCATION).
 * - size: fstat for regular files, BLKGETSIZE64 for block devices, rounded
 *   down to a block.
 *
 * PREALLOCATION: a cache file we create gets all its blocks at once
 * (fallocate mode 0: unwritten extents, nothing written, quick), and the
 * engine does not punch holes in it (config discard = auto).  Why: an
 * O_DIRECT write into a hole must allocate blocks, and ext4 serializes
 * O_DIRECT writes that allocate (the inode lock is taken exclusively for
 * them).  fio, io_uring, O_DIRECT, 4k random writes, QD32, on a 1 GiB
 * file on this 2-core VM's ext4 disk (loaded, so ranges): 1 job 11-24k/s
 * into a sparse file, 14-30k/s preallocated, 14-18k/s fully written;
 * 4 jobs 16-19k/s sparse, 29-59k/s preallocated, 37-57k/s written.
 * Writes into unwritten extents (converted at completion) are as fast as
 * into written ones, so preallocating is enough; writing zeros would
 * only cost time at creation.  nbdcached writeback on a fresh O_DIRECT
 * file cache (bench/run-bench, 4 interleaved pairs, load 20-78, medians):
 * 4k random writes QD32 1 conn 4.1k -> 8.1k/s (vs the device row 0.10x
 * -> 0.35x), 4 conns 5.0k -> 10.2k/s (0.08x -> 0.20x), 1M sequential
 * writes 425 -> 630 MB/s (0.30x -> 0.42x); per 4k write the server spends
 * 77 us of CPU and 3.3 context switches instead of 153 us and 6.9.
 * A block device has no holes: nothing to do.
 * Not preallocated: a file in memory (tmpfs would pin RAM for nothing),
 * or when the filesystem cannot (no fallocate, no space: logged, the
 * file stays sparse), or a file that existed before (never resized,
 * never rewritten: `fallocate -l SIZE PATH` does it offline).
 *
 * INVARIANTS:
 * - size_bytes is fixed at open and a multiple of NC_BLOCK_BYTES (> 0).
 * - Every op checks that offset and count are block multiples, that the
 *   range lies within the device and that the buffer is block-aligned,
 *   before touching the fd (-EINVAL otherwise), with or without O_DIRECT,
 *   so a caller bug shows up in tests on tmpfs as well as on an SSD.
 * - A read-only cdev refuses pwrite and discard with -EROFS.
 * - O_DIRECT is asked for only when opts->direct; a filesystem that
 *   refuses it (tmpfs, some FUSE) is used buffered after one warning, and
 *   cd->direct says which one we got.
 * - An existing file is never resized; a missing one is created (then
 *   preallocated) only when the caller gave a size.
 * - ONE OPENER AT A TIME: before anything is read or written, the open
 *   file description takes a whole-file OFD lock (ownlock.h), exclusive
 *   for a writer and shared for a read-only opener (nbdcache show and
 *   check), and a writable block device is also opened O_EXCL.  The lock
 *   lives as long as the cdev; a second opener (another nbdcached, the
 *   plugin, nbdcache format, or a second [cache] section naming the same
 *   file) gets -EBUSY and a message naming the holder.  Falling back from
 *   O_DIRECT clears the flag with F_SETFL rather than reopening, so the
 *   lock is never dropped.
 *
 * THREADS AND LOCKS: no locks.  The fd has no file-position state that
 * matters (positioned calls only).  The runtime capability flags ("the
 * kernel said not supported once: stop trying") are bools read and
 * cleared with __atomic builtins.  direct_fd, like fd, is set at open
 * and closed at close only.
 *
 * FAILURE: every failing call is logged once as "cdev PATH: op at offset
 * O count N: strerror" and returned as -errno.  A read that hits end of
 * file inside size_bytes (the file shrank under us) is -EIO.
 *
 * NOT HERE: what the bytes mean, the durability model used by tests
 * (cdev-sim.c), queueing or async I/O.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/types.h>

#ifdef HAVE_LINUX_FS_H
#include <linux/fs.h>
#endif

#include "cdev.h"
#include "compiler.h"
#include "fileio.h"
#include "log.h"
#include "ondisk.h"
#include "ownlock.h"

struct cdev_file {
  struct cdev cd;               /* must be first */
  int fd;                       /* -1 until opened */
  bool readonly;
  bool in_memory;               /* tmpfs / ramfs: reads never wait */

  /* Runtime capabilities: true until the kernel says "not supported".
   * Only accessed through fileio_cap_get/fileio_cap_clear.
   */
  bool cap_dsync;               /* pwritev2 RWF_DSYNC */
  bool cap_discard;             /* PUNCH_HOLE or BLKDISCARD */
  bool cap_direct_write;        /* large writes through direct_fd */

  /* Buffered caches only (LARGE WRITES below): a second open file
   * description of the same file with O_DIRECT, for large writes; -1 when
   * the cache is O_DIRECT itself, read-only, in memory, or the filesystem
   * refuses O_DIRECT.
   */
  int direct_fd;
};

/* A buffered cache writes runs of at least this many bytes with O_DIRECT
 * (LARGE WRITES above).
 */
#define DIRECT_WRITE_MIN_BYTES (256u * 1024)

static struct cdev_file *
to_file (struct cdev *cd)
{
  return (struct cdev_file *) cd;
}

/* Log "cdev PATH: what at offset O count N: strerror (err)", rate-limited
 * per call site of log_io_error (a full or dying device fails every I/O:
 * one line, then a count; log.h).
 */
static void
io_error (struct log_ratelimit *rl, struct cdev_file *f, const char *what,
          uint64_t offset, uint64_t count, int err)
{
  errno = err;
  log_ratelimited_msg (rl, LOG_LEVEL_ERROR, "cdev %s: %s at offset %"
                       PRIu64 " count %" PRIu64 ": %m", f->cd.path, what,
                       offset, count);
}
#define log_io_error(f, what, offset, count, err)                       \
  do {                                                                  \
    static struct log_ratelimit rl_ = LOG_RATELIMIT_INIT;               \
    io_error (&rl_, (f), (what), (offset), (count), (err));             \
  } while (0)

static int
check_writable (struct cdev_file *f, const char *what, uint64_t offset,
                uint64_t count)
{
  if (!f->readonly)
    return 0;
  log_io_error (f, what, offset, count, EROFS);
  return -EROFS;
}

/* ---- read and write ---- */

static int
file_pread (struct cdev *cd, void *buf, size_t count, uint64_t offset)
{
  struct cdev_file *f = to_file (cd);
  size_t done;
  int r;

  r = fileio_pread_full (f->fd, buf, count, offset, &done);
  if (r == 0 && done < count) {
    log_io_error (f, "read (unexpected end of file: did the file shrink?)",
                  offset + done, count - done, EIO);
    return -EIO;
  }
  if (r < 0)
    log_io_error (f, "read", offset + done, count - done, -r);
  return r;
}

/* O_DIRECT reads wait for the device whatever RWF_NOWAIT says (except
 * in memory, where O_DIRECT is a copy).
 */
static int
file_pread_nowait (struct cdev *cd, void *buf, size_t count, uint64_t offset)
{
  struct cdev_file *f = to_file (cd);

  if (cd->direct && !f->in_memory)
    return -EAGAIN;
  return fileio_pread_nowait (f->fd, buf, count, offset, f->in_memory);
}

/* LARGE WRITES above: -ENOTSUP when this write goes through the page cache
 * (small, or no direct_fd), else the write's result.
 */
static int
write_large (struct cdev_file *f, const void *buf, size_t count,
             uint64_t offset, uint32_t flags)
{
  bool fua = (flags & CDEV_FUA) != 0;
  size_t done;
  int r;

  if (f->direct_fd < 0 || !(flags & CDEV_STREAM) ||
      count < DIRECT_WRITE_MIN_BYTES ||
      !fileio_cap_get (&f->cap_direct_write))
    return -ENOTSUP;
  r = fileio_pwrite_full (f->direct_fd, buf, count, offset,
                          fua ? &f->cap_dsync : NULL, &done);
  if (r == -EINVAL && done == 0) {
    /* Accepted at open, refused for I/O (alignment the device wants):
     * buffered from now on.
     */
    log_debug ("cdev %s: O_DIRECT writes refused; large writes go "
               "through the page cache", f->cd.path);
    fileio_cap_clear (&f->cap_direct_write);
    return -ENOTSUP;
  }
  if (r < 0 && done == count)
    log_io_error (f, "write (O_DIRECT, FUA fdatasync)", offset, count, -r);
  else if (r < 0)
    log_io_error (f, "write (O_DIRECT)", offset + done, count - done, -r);
  return r;
}

static int
file_pwrite (struct cdev *cd, const void *buf, size_t count, uint64_t offset,
             uint32_t flags)
{
  struct cdev_file *f = to_file (cd);
  bool fua = (flags & CDEV_FUA) != 0;
  bool had_dsync;
  size_t done;
  int r;

  if ((r = check_writable (f, "write", offset, count)) < 0)
    return r;
  if ((r = write_large (f, buf, count, offset, flags)) != -ENOTSUP)
    return r;
  had_dsync = fua && fileio_cap_get (&f->cap_dsync);
  r = fileio_pwrite_full (f->fd, buf, count, offset,
                          fua ? &f->cap_dsync : NULL, &done);
  if (had_dsync && !fileio_cap_get (&f->cap_dsync))
    log_debug ("cdev %s: RWF_DSYNC is not supported, using fdatasync",
               cd->path);
  if (r < 0 && done == count)
    log_io_error (f, "write (FUA fdatasync)", offset, count, -r);
  else if (r < 0)
    log_io_error (f, "write", offset + done, count - done, -r);
  return r;
}

static int
file_sync (struct cdev *cd)
{
  struct cdev_file *f = to_file (cd);
  int r = fileio_datasync (f->fd);

  if (r < 0) {
    errno = -r;
    log_error_ratelimited ("cdev %s: sync (fdatasync): %m", cd->path);
  }
  return r;
}

/* ---- discard ---- */

static int
file_discard (struct cdev *cd, uint64_t count, uint64_t offset)
{
  struct cdev_file *f = to_file (cd);
  const char *what;
  int r = 0;

  if ((r = check_writable (f, "discard", offset, count)) < 0)
    return r;
  if (count == 0 || !fileio_cap_get (&f->cap_discard))
    return 0;

  if (cd->is_block_device) {
    what = "discard (BLKDISCARD)";
    r = fileio_range_ioctl (f->fd, BLKDISCARD, offset, count);
  }
  else {
    what = "discard (punch hole)";
    r = fileio_punch_hole (f->fd, offset, count);
  }

  if (r < 0 && fileio_is_unsupported (-r)) {
    log_debug ("cdev %s: %s is not supported; discard is a no-op",
               cd->path, what);
    fileio_cap_clear (&f->cap_discard);
    return 0;
  }
  if (r < 0)
    log_io_error (f, what, offset, count, -r);
  return r;
}

/* The ring reads the same open file description (cdev-ring.c). */
static int
file_ring_fd (struct cdev *cd)
{
  return to_file (cd)->fd;
}

/* ---- close ---- */

static void
file_close (struct cdev *cd)
{
  struct cdev_file *f = to_file (cd);

  if (f->fd >= 0 && close (f->fd) == -1)
    log_warning ("cdev %s: close: %m", cd->path);
  if (f->direct_fd >= 0 && close (f->direct_fd) == -1)
    log_warning ("cdev %s: close (O_DIRECT writer): %m", cd->path);
  free (cd->path);
  free (f);
}

static const struct cdev_ops file_ops = {
  .name = "file",
  .pread = file_pread,
  .pread_nowait = file_pread_nowait,
  .pwrite = file_pwrite,
  .sync = file_sync,
  .discard = file_discard,
  .close = file_close,
  .ring_fd = file_ring_fd,
};

/* ---- open ---- */

/* open(2), retried without O_DIRECT if the filesystem refuses it (EINVAL).
 * The fd or -errno (not logged).
 */
static int
open_fd (struct cdev_file *f, const char *path, int flags)
{
  int fd;

  if (f->cd.direct) {
    fd = open (path, flags | O_DIRECT);
    if (fd >= 0 || errno != EINVAL)
      return fd >= 0 ? fd : -errno;
    log_warning ("cdev %s: the filesystem refuses O_DIRECT; using buffered "
                 "I/O (the cache device will also fill the page cache)",
                 path);
    f->cd.direct = false;
  }
  fd = open (path, flags);
  return fd >= 0 ? fd : -errno;
}

/* One opener at a time (ownlock.h): exclusive for a writer, shared for
 * read-only inspection, taken before anything is read or written.
 */
static int
lock_device (struct cdev_file *f, const char *path, bool readonly)
{
  char holder[256];
  int r = ownlock_take (f->fd, !readonly, holder, sizeof holder);

  if (r == -EBUSY && readonly)
    log_error ("cdev %s: in use by %s; a cache device in use cannot be "
               "inspected consistently: stop that process first (a running "
               "server reports its caches with 'nbdcache stats')",
               path, holder);
  else if (r == -EBUSY)
    log_error ("cdev %s: in use by %s; a cache device is opened by one "
               "process at a time (nbdcached, the nbdkit plugin, nbdcache "
               "format, show and check): stop it first", path, holder);
  else if (r < 0) {
    errno = -r;
    log_error ("cdev %s: cannot lock the device (F_OFD_SETLK): %m", path);
  }
  return r;
}

/* A cache file this open created gets its blocks now (fallocate mode 0:
 * unwritten extents, no data written, quick), so that later O_DIRECT
 * writes into it do not allocate (see PREALLOCATION above).  Advice
 * only: a filesystem without fallocate, or without the space, leaves the
 * file sparse (logged); in memory (tmpfs) it would only pin RAM.
 */
static void
preallocate (struct cdev_file *f, const char *path, uint64_t size_bytes)
{
  struct statfs sfs;
  int r;

  if (f->in_memory)
    return;
  /* ext4 fallocates what it can before ENOSPC and keeps it: a file larger
   * than the free space would take all of it.  Do not try.
   */
  if (fstatfs (f->fd, &sfs) == 0 &&
      (uint64_t) sfs.f_bavail * (uint64_t) sfs.f_bsize < size_bytes) {
    log_warning ("cdev %s: the filesystem has %" PRIu64 " bytes free, less "
                 "than the %" PRIu64 " bytes of the cache file: it stays "
                 "sparse (writes that need space the filesystem no longer "
                 "has will fail)", path,
                 (uint64_t) sfs.f_bavail * (uint64_t) sfs.f_bsize,
                 size_bytes);
    return;
  }
  r = fileio_fallocate (f->fd, 0, 0, size_bytes);
  if (r == 0)
    log_info ("cdev %s: preallocated %" PRIu64 " bytes", path, size_bytes);
  else if (fileio_is_unsupported (-r))
    log_info ("cdev %s: the filesystem cannot preallocate (fallocate): "
              "the cache file stays sparse", path);
  else {
    errno = -r;
    log_warning ("cdev %s: preallocating %" PRIu64 " bytes: %m; the cache "
                 "file stays sparse (writes that need space the filesystem "
                 "no longer has will fail)", path, size_bytes);
  }
}

static int
open_or_create (struct cdev_file *f, const char *path,
                const struct cdev_file_options *opts)
{
  int flags = (opts->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOCTTY;
  struct stat st;
  int r;

  /* O_EXCL on a block device: the kernel refuses it while the device is
   * mounted or opened O_EXCL elsewhere (EBUSY), and keeps others out.
   */
  if (!opts->readonly && stat (path, &st) == 0 && S_ISBLK (st.st_mode))
    flags |= O_EXCL;
  r = open_fd (f, path, flags);
  if (r == -ENOENT && opts->create_size_bytes > 0 && !opts->readonly) {
    r = fileio_create_sparse ("cdev ", path, opts->create_size_bytes, 0600);
    if (r == 0) {
      log_info ("cdev %s: created a cache file of %" PRIu64 " bytes",
                path, opts->create_size_bytes);
      f->cd.created = true;
    }
    else if (r != -EEXIST)
      return r;
    r = open_fd (f, path, flags);
  }
  if (r < 0) {
    errno = -r;
    if (r == -ENOENT)
      log_error ("cdev %s: does not exist (give a size to create it)", path);
    else if (r == -EBUSY && (flags & O_EXCL))
      log_error ("cdev %s: the block device is in use (mounted, or opened "
                 "exclusively by another process); a cache device is used "
                 "by one process at a time", path);
    else
      log_error ("cdev %s: open%s%s: %m", path,
                 opts->readonly ? " (read-only)" : "",
                 f->cd.direct ? " (O_DIRECT)" : "");
    return r;
  }
  f->fd = r;
  f->in_memory = fileio_in_memory (r);
  if ((r = lock_device (f, path, opts->readonly)) < 0)
    return r;
  if (f->cd.created)
    preallocate (f, path, opts->create_size_bytes);
  return 0;
}

/* Some filesystems accept O_DIRECT at open and refuse the I/O instead.
 * Read the first block once; on EINVAL turn O_DIRECT off (F_SETFL).
 */
static int
probe_direct (struct cdev_file *f, const char *path)
{
  void *buf;
  ssize_t n;
  int fl;

  if (!f->cd.direct || f->cd.size_bytes == 0)
    return 0;
  buf = cdev_alloc_buffer (NC_BLOCK_BYTES);
  if (buf == NULL)
    return -ENOMEM;
  do
    n = pread (f->fd, buf, NC_BLOCK_BYTES, 0);
  while (n < 0 && errno == EINTR);
  free (buf);
  if (n >= 0 || errno != EINVAL)
    return 0;                   /* real errors show up on the first I/O */

  log_warning ("cdev %s: the filesystem refuses O_DIRECT reads; using "
               "buffered I/O (the cache device will also fill the page "
               "cache)", path);
  /* Clear O_DIRECT on the same open file description, which holds the
   * lock: a reopen would drop it.
   */
  fl = fcntl (f->fd, F_GETFL);
  if (fl == -1 || fcntl (f->fd, F_SETFL, fl & ~O_DIRECT) == -1) {
    int r = -errno;

    log_error ("cdev %s: turning O_DIRECT off: %m", path);
    return r;
  }
  f->cd.direct = false;
  return 0;
}

static int
probe_size (struct cdev_file *f, const char *path)
{
  struct stat st;
  uint64_t size_bytes;
  int r;

  if ((r = fileio_stat_size ("cdev ", path, f->fd, &st, &size_bytes)) < 0)
    return r;
  f->cd.is_block_device = S_ISBLK (st.st_mode);

  f->cd.size_bytes = ROUND_DOWN (size_bytes, (uint64_t) NC_BLOCK_BYTES);
  if (f->cd.size_bytes == 0) {
    log_error ("cdev %s: %" PRIu64 " bytes is smaller than one block "
               "(%u bytes)", path, size_bytes, NC_BLOCK_BYTES);
    return -EINVAL;
  }
  if (f->cd.size_bytes != size_bytes)
    log_info ("cdev %s: using %" PRIu64 " of %" PRIu64 " bytes (whole "
              "blocks only)", path, f->cd.size_bytes, size_bytes);
  return 0;
}

/* LARGE WRITES above: open the O_DIRECT writer of a buffered cache, a new
 * open file description of the same inode (through /proc/self/fd, so a
 * renamed path does not matter; no O_EXCL, no lock of its own: the first
 * fd's lock covers the process).  Best effort: without it every write is
 * buffered, as before.
 */
static void
open_direct_writer (struct cdev_file *f)
{
  char proc[64];

  if (f->cd.direct || f->readonly || f->in_memory)
    return;
  snprintf (proc, sizeof proc, "/proc/self/fd/%d", f->fd);
  f->direct_fd = open (proc, O_WRONLY | O_CLOEXEC | O_NOCTTY | O_DIRECT);
  if (f->direct_fd == -1)
    log_debug ("cdev %s: no O_DIRECT writer (%m): large writes go through "
               "the page cache", f->cd.path);
}

int
cdev_file_open (const char *path, const struct cdev_file_options *opts,
                struct cdev **out)
{
  static const struct cdev_file_options defaults;
  struct cdev_file *f;
  int r;

  if (opts == NULL)
    opts = &defaults;
  if (path == NULL || *path == '\0') {
    log_error ("cdev: the cache device path is empty");
    return -EINVAL;
  }

  f = calloc (1, sizeof *f);
  if (f == NULL)
    return -ENOMEM;
  f->fd = f->direct_fd = -1;
  f->cd.ops = &file_ops;
  f->cd.direct = opts->direct;
  f->readonly = opts->readonly;
  f->cd.readonly = opts->readonly;
  f->cap_dsync = f->cap_discard = f->cap_direct_write = true;
  f->cd.path = strdup (path);
  if (f->cd.path == NULL) {
    r = -ENOMEM;
    goto err;
  }

  if ((r = open_or_create (f, path, opts)) < 0 ||
      (r = probe_size (f, path)) < 0 ||
      (r = probe_direct (f, path)) < 0)
    goto err;
  open_direct_writer (f);

  log_debug ("cdev %s: opened %s, %" PRIu64 " bytes%s%s", path,
             f->cd.is_block_device ? "block device" : "file",
             f->cd.size_bytes, f->cd.direct ? ", O_DIRECT" : "",
             f->readonly ? ", read-only" : "");
  *out = &f->cd;
  return 0;

 err:
  file_close (&f->cd);
  return r;
}

/* ---- shared by every implementation ---- */

int
cdev_check_request (const struct cdev *cd, const char *what, const void *buf,
                    uint64_t offset, uint64_t count)
{
  const char *why;

  if (offset % NC_BLOCK_BYTES != 0 || count % NC_BLOCK_BYTES != 0)
    why = "is not block-aligned";
  else if (!range_within (offset, count, cd->size_bytes))
    why = "is beyond the end of the device";
  else if (buf != NULL && (uintptr_t) buf % NC_BLOCK_BYTES != 0)
    why = "uses a buffer that is not block-aligned";
  else
    return 0;
  log_error ("cdev %s: %s at offset %" PRIu64 " count %" PRIu64 " %s "
             "(device %" PRIu64 " bytes)", cd->path, what, offset, count,
             why, cd->size_bytes);
  return -EINVAL;
}

void
cdev_close (struct cdev *cd)
{
  if (cd != NULL)
    cd->ops->close (cd);
}

void *
cdev_alloc_buffer (size_t bytes)
{
  void *p;

  if (bytes > SIZE_MAX - NC_BLOCK_BYTES)
    return NULL;
  bytes = bytes == 0 ? NC_BLOCK_BYTES : ROUND_UP (bytes, NC_BLOCK_BYTES);
  if (posix_memalign (&p, NC_BLOCK_BYTES, bytes) != 0)
    return NULL;
  memset (p, 0, bytes);
  return p;
}
