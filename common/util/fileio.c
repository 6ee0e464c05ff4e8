/* SPDX-License-Identifier: BSD-3-Clause */
/* fileio.c — positioned I/O on one file descriptor, made whole.
 *
 * WHAT: full-transfer pread/pwrite loops, fdatasync, fallocate and the
 * block-device range ioctls, each retried on EINTR; creating a sparse
 * file; finding the size of a regular file or a block device.
 * WHY: the backing-store driver and the cache-device driver make the same
 * kernel calls on the same kinds of file; the short-transfer, EINTR and
 * RWF_DSYNC-fallback rules are written once, here.
 *
 * INVARIANTS:
 * - A transfer loop reports how far it got (*done) however it ends, so
 *   that the caller can name the failing offset.
 * - A durable write is durable on success whichever way the kernel let
 *   us get there (RWF_DSYNC, or plain writes then fdatasync).
 * - Nothing here uses or moves the file position.
 *
 * THREADS AND LOCKS: no locks and no state of our own; the one shared
 * thing, a caller's capability flag, is read and cleared atomically.
 *
 * FAILURE: the data-path functions return -errno, errno captured right
 * after the failing call, and log nothing: the caller knows the device,
 * the offset and the operation.  The two open-time functions fail at one
 * of several steps, so they log that step once with the caller's prefix.
 *
 * NOT HERE: range and alignment checks, the choice of fallbacks for trim
 * and zero, O_DIRECT, anything that keeps state between calls.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef HAVE_LINUX_FS_H
#include <linux/fs.h>
#include <linux/magic.h>
#endif

#include "fileio.h"
#include "log.h"

bool
fileio_is_unsupported (int err)
{
  return err == EOPNOTSUPP || err == ENOTSUP || err == ENOSYS ||
    err == ENOTTY;
}

/* ---- opening ---- */

int
fileio_create_sparse (const char *log_prefix, const char *path,
                      uint64_t size_bytes, mode_t mode)
{
  int fd, r;

  if (size_bytes > INT64_MAX) {
    log_error ("%s%s: cannot create: size %" PRIu64 " bytes is too large",
               log_prefix, path, size_bytes);
    return -EFBIG;
  }
  fd = open (path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, mode);
  if (fd == -1) {
    r = -errno;
    if (r != -EEXIST)
      log_error ("%s%s: create: %m", log_prefix, path);
    return r;
  }
  if (ftruncate (fd, (off_t) size_bytes) == -1 || fsync (fd) == -1) {
    r = -errno;
    log_error ("%s%s: create: setting the size to %" PRIu64 " bytes: %m",
               log_prefix, path, size_bytes);
    close (fd);
    unlink (path);
    return r;
  }
  if (close (fd) == -1) {
    r = -errno;
    log_error ("%s%s: create: close: %m", log_prefix, path);
    unlink (path);
    return r;
  }
  return 0;
}

int
fileio_stat_size (const char *log_prefix, const char *path, int fd,
                  struct stat *st, uint64_t *size_bytes)
{
  struct stat s;
  uint64_t size;

  if (fstat (fd, &s) == -1) {
    int r = -errno;

    log_error ("%s%s: fstat: %m", log_prefix, path);
    return r;
  }
  if (S_ISBLK (s.st_mode)) {
    if (ioctl (fd, BLKGETSIZE64, &size) == -1) {
      int r = -errno;

      log_error ("%s%s: BLKGETSIZE64: %m", log_prefix, path);
      return r;
    }
  }
  else if (S_ISREG (s.st_mode))
    size = (uint64_t) s.st_size;
  else {
    log_error ("%s%s: not a regular file or a block device",
               log_prefix, path);
    return S_ISDIR (s.st_mode) ? -EISDIR : -EINVAL;
  }
  *st = s;
  *size_bytes = size;
  return 0;
}

/* ---- data path ---- */

int
fileio_pread_full (int fd, void *buf, size_t count, uint64_t offset,
                   size_t *done)
{
  char *p = buf;

  *done = 0;
  while (*done < count) {
    ssize_t n = pread (fd, p + *done, count - *done,
                       (off_t) (offset + *done));

    if (n < 0) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    if (n == 0)
      return 0;                 /* end of file: *done < count says so */
    *done += (size_t) n;
  }
  return 0;
}

bool
fileio_in_memory (int fd)
{
  struct statfs sfs;

  if (fstatfs (fd, &sfs) == -1)
    return false;
  return sfs.f_type == TMPFS_MAGIC || sfs.f_type == RAMFS_MAGIC;
}

int
fileio_pread_nowait (int fd, void *buf, size_t count, uint64_t offset,
                     bool in_memory)
{
  ssize_t n;

  if (in_memory)
    n = pread (fd, buf, count, (off_t) offset);
  else {
#ifdef RWF_NOWAIT
    struct iovec iov = { .iov_base = buf, .iov_len = count };

    n = preadv2 (fd, &iov, 1, (off_t) offset, RWF_NOWAIT);
#else
    n = -1;
#endif
  }
  return n >= 0 && (size_t) n == count ? 0 : -EAGAIN;
}

int
fileio_pwrite_full (int fd, const void *buf, size_t count, uint64_t offset,
                    bool *cap_dsync, size_t *done)
{
  const char *p = buf;
  bool need_datasync = false;

  *done = 0;
  while (*done < count) {
    size_t left = count - *done;
    off_t pos = (off_t) (offset + *done);
    ssize_t n;

    if (cap_dsync != NULL && fileio_cap_get (cap_dsync)) {
      struct iovec iov = { .iov_base = (void *) (p + *done),
                           .iov_len = left };

      n = pwritev2 (fd, &iov, 1, pos, RWF_DSYNC);
      if (n < 0 && fileio_is_unsupported (errno)) {
        fileio_cap_clear (cap_dsync);
        continue;
      }
    }
    else {
      if (cap_dsync != NULL)
        need_datasync = true;
      n = pwrite (fd, p + *done, left, pos);
    }
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    if (n == 0)
      return -EIO;              /* no progress: never loop forever */
    *done += (size_t) n;
  }
  return need_datasync ? fileio_datasync (fd) : 0;
}

int
fileio_datasync (int fd)
{
  while (fdatasync (fd) == -1) {
    if (errno != EINTR)
      return -errno;
  }
  return 0;
}

int
fileio_fallocate (int fd, int mode, uint64_t offset, uint64_t count)
{
  while (fallocate (fd, mode, (off_t) offset, (off_t) count) == -1) {
    if (errno != EINTR)
      return -errno;
  }
  return 0;
}

int
fileio_punch_hole (int fd, uint64_t offset, uint64_t count)
{
  return fileio_fallocate (fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                           offset, count);
}

int
fileio_range_ioctl (int fd, unsigned long request, uint64_t offset,
                    uint64_t count)
{
  uint64_t range[2] = { offset, count };

  while (ioctl (fd, request, range) == -1) {
    if (errno != EINTR)
      return -errno;
  }
  return 0;
}
