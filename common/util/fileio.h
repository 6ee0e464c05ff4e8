/* SPDX-License-Identifier: BSD-3-Clause */
/* fileio.h — positioned I/O on one file descriptor: the kernel calls
 * every file-backed driver makes, made whole.
 *
 * Owns: nothing.  The caller owns the fd, the buffers and the capability
 * flags (bools, true until the kernel says "not supported").
 * Threads: every function may be called from any thread on a shared fd;
 * capability flags are read and cleared only with __atomic builtins.
 * On disk: nothing of ours; a sparse file created here is all zeros.
 * Not here: range or alignment policy, O_DIRECT, which fallback to try
 * next — those are the drivers' (common/backing/file.c and
 * common/cache/cdev-file.c).
 */
#ifndef NBDCACHE_FILEIO_H
#define NBDCACHE_FILEIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

/* ---- capability flags ---- */

static inline bool
fileio_cap_get (const bool *cap)
{
  return __atomic_load_n (cap, __ATOMIC_RELAXED);
}

static inline void
fileio_cap_clear (bool *cap)
{
  __atomic_store_n (cap, false, __ATOMIC_RELAXED);
}

/* The errno values by which the kernel or a filesystem says "this
 * operation does not exist here" (as opposed to "it failed").
 */
bool fileio_is_unsupported (int err);

/* ---- opening: these two log, once, as "PREFIX PATH: …" ---- */

/* Create path (O_EXCL) as a sparse file of size_bytes with the given
 * mode, fsync'd.  0, -EEXIST if it appeared meanwhile (not logged: the
 * caller then just opens it), or -errno (logged; no file is left).
 * Success is not logged: the caller says what the file is for.
 */
int fileio_create_sparse (const char *log_prefix, const char *path,
                          uint64_t size_bytes, mode_t mode);

/* fstat fd, insist on a regular file or a block device, and find its
 * size in bytes (st_size or BLKGETSIZE64).  0 with *st and *size_bytes
 * set, or -errno (logged; -EISDIR for a directory, -EINVAL for any other
 * kind of file) with both untouched.
 */
int fileio_stat_size (const char *log_prefix, const char *path, int fd,
                      struct stat *st, uint64_t *size_bytes);

/* ---- data path: 0 or -errno, never logged ---- */

/* pread until count bytes are read, end of file, or an error; retried on
 * EINTR.  *done is set to the bytes read in every case.  0 with
 * *done < count means end of file at offset + *done; -errno means the
 * read at offset + *done failed.
 */
int fileio_pread_full (int fd, void *buf, size_t count, uint64_t offset,
                       size_t *done);

/* Does fd's file live in memory (tmpfs, ramfs)?  Reading it never waits
 * for a device (swap aside).
 */
bool fileio_in_memory (int fd);

/* A read that does not wait for a device: one pread when in_memory (as
 * fileio_in_memory said: tmpfs has no RWF_NOWAIT), else one preadv2 with
 * RWF_NOWAIT (page-cache hits only).  0 when all count bytes were read,
 * else -EAGAIN (not cached, a short read, a kernel without RWF_NOWAIT, or
 * any error: the caller falls back to a blocking read, which reports real
 * errors).  buf may have been written either way.
 */
int fileio_pread_nowait (int fd, void *buf, size_t count, uint64_t offset,
                         bool in_memory);

/* pwrite all of buf, retried on EINTR; a call that writes nothing is
 * -EIO.  cap_dsync NULL: plain writes.  Otherwise the data must be
 * durable on return: each chunk is written with RWF_DSYNC while
 * *cap_dsync, which is cleared the first time the kernel refuses the
 * flag, and if any chunk went without it the whole is fdatasync'd.
 * *done is the bytes written: on -errno, *done < count means the write
 * at offset + *done failed, *done == count that the final fdatasync did.
 */
int fileio_pwrite_full (int fd, const void *buf, size_t count,
                        uint64_t offset, bool *cap_dsync, size_t *done);

/* fdatasync, retried on EINTR. */
int fileio_datasync (int fd);

/* fallocate (mode as for fallocate(2)), retried on EINTR. */
int fileio_fallocate (int fd, int mode, uint64_t offset, uint64_t count);

/* fallocate PUNCH_HOLE|KEEP_SIZE: the range reads as zeros, the file
 * keeps its size.
 */
int fileio_punch_hole (int fd, uint64_t offset, uint64_t count);

/* A block-device ioctl taking a { start, length } range in bytes
 * (BLKDISCARD, BLKZEROOUT), retried on EINTR.
 */
int fileio_range_ioctl (int fd, unsigned long request, uint64_t offset,
                        uint64_t count);

#endif /* NBDCACHE_FILEIO_H */
