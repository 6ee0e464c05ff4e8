/* SPDX-License-Identifier: BSD-3-Clause */
/* file.c — the backing-store driver for local files and block devices.
 *
 * WHAT: the backing ops (backing.h) over one file descriptor: a regular
 * file or a block device, opened once, used with positioned I/O only.
 * WHY: the common case of the product, and the store the other drivers
 * are compared against.
 *
 * HOW EACH OP MAPS TO THE KERNEL:
 * - pread/pwrite loop over short transfers and EINTR.  FUA is pwritev2
 *   with RWF_DSYNC, or pwrite + fdatasync where the kernel lacks it.
 *   pread_nowait is one preadv2 with RWF_NOWAIT (page-cache hits only),
 *   or on tmpfs (which lacks the flag) a plain pread.
 * - flush is fdatasync; it fails (-EIO) if a FUA write's sync failed since
 *   the last flush: the kernel reports a writeback error once and may
 *   drop the pages with it ("fsyncgate"), so the fdatasync alone would
 *   vouch for writes that are gone.
 * - trim: regular file: fallocate PUNCH_HOLE|KEEP_SIZE.  Block device:
 *   BLKDISCARD on the logical-block-aligned interior (the edges are left
 *   alone: trim is advisory).
 * - zero: regular file, in order of preference: PUNCH_HOLE if MAY_TRIM;
 *   ZERO_RANGE; PUNCH_HOLE then plain fallocate (keeps the range
 *   allocated where ZERO_RANGE is missing, e.g. tmpfs); writing zeros.
 *   Block device: the unaligned edges are written as zeros, the aligned
 *   middle is fallocate PUNCH_HOLE (which the kernel does only if the
 *   device zeroes without writing data) if MAY_TRIM, else BLKZEROOUT,
 *   else zeros are written.  BACKING_FAST refuses with -ENOTSUP, having
 *   changed nothing, whenever only the data-writing fallback is left.
 * - extents: SEEK_DATA / SEEK_HOLE on regular files; holes are reported
 *   HOLE|ZERO.  Block devices report one allocated extent.
 * - size: fstat for regular files, BLKGETSIZE64 for block devices.
 *
 * INVARIANTS:
 * - size_bytes is fixed at open; every op checks its range against it.
 * - The uri is "file://" + the absolute path, made absolute lexically
 *   (symlinks are not resolved: /dev/disk/by-id/… names stay stable,
 *   /dev/sdX names do not) and without percent-encoding.
 * - A path given through file:// is used verbatim (no percent-decoding).
 * - A read-only handle refuses pwrite/trim/zero with -EROFS without
 *   touching the file.
 * - ONE WRITER: right after open, before any I/O, the open file
 *   description takes a whole-file OFD lock (common/util/ownlock.h):
 *   exclusive when writable, shared when read-only, none with opts->share
 *   (read-only only).  So two exports, or two servers, writing one file
 *   are refused (-EBUSY, naming the holder) instead of overwriting each
 *   other's data.
 *
 * THREADS AND LOCKS: no locks.  The fd has no file-position state that
 * matters (only pread/pwrite-style calls; the position moved by the
 * SEEK_DATA/SEEK_HOLE lseeks is never used).  The runtime capability
 * flags (the kernel said "not supported" once: stop trying) are bools
 * read and cleared with __atomic builtins; the public can_* fields in
 * struct backing are written only during open.
 *
 * FAILURE: every failing call is logged once as "file: PATH: op at
 * offset O count N: strerror" and returned as -errno.  A read that hits
 * end of file inside size_bytes (the file shrank under us) is -EIO.
 *
 * NOT HERE: O_DIRECT (the backing store uses the page cache; the cache
 * device is the one that bypasses it), range policy (ENOSPC vs EINVAL is
 * the server's), caching of any kind.
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
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>

#ifdef HAVE_LINUX_FS_H
#include <linux/fs.h>
#endif

#include "backing.h"
#include "compiler.h"
#include "fileio.h"
#include "log.h"
#include "ownlock.h"

/* Zeros for the data-writing fallback of zero (bytes). */
#define ZERO_BUF_BYTES (128 * 1024)
static const char zero_buf[ZERO_BUF_BYTES];

struct backing_file {
  struct backing b;             /* must be first */
  int fd;
  char *path;                   /* as given by the caller, for messages */
  uint32_t logical_block_bytes; /* block devices: BLKSSZGET; else 1 */
  bool in_memory;               /* tmpfs / ramfs: reads never wait */

  /* Runtime capabilities: true until the kernel says "not supported".
   * Only accessed through fileio_cap_get/fileio_cap_clear.
   */
  bool cap_dsync;               /* pwritev2 RWF_DSYNC */
  bool cap_punch;               /* fallocate PUNCH_HOLE|KEEP_SIZE */
  bool cap_zero_range;          /* fallocate ZERO_RANGE */
  bool cap_allocate;            /* fallocate mode 0 (KEEP_SIZE) */
  bool cap_blkdiscard;
  bool cap_blkzeroout;
  bool cap_seek_data;           /* SEEK_DATA / SEEK_HOLE */
  bool write_zeroes_fast;       /* block device zeroes without data writes */

  /* fsyncgate: after a failed fdatasync (or RWF_DSYNC write) the kernel
   * may have dropped dirty pages, and it reports the error once, to
   * that call: the next fdatasync succeeds without them.  A failure on a
   * FUA write's sync is counted here, and the next flush fails for it
   * (file_flush).  Atomics.
   */
  uint64_t sync_failures;       /* failed FUA syncs since open */
  uint64_t sync_reported;       /* sync_failures a flush has reported */
};

static struct backing_file *
to_file (struct backing *b)
{
  return (struct backing_file *) b;
}

/* Log "file: PATH: what at offset O count N: strerror (err)", rate-limited
 * per call site of log_io_error (a full or failing disk fails every I/O:
 * one line, then a count; log.h).
 */
static void
io_error (struct log_ratelimit *rl, struct backing_file *f, const char *what,
          uint64_t offset, uint64_t count, int err)
{
  errno = err;
  log_ratelimited_msg (rl, LOG_LEVEL_ERROR, "file: %s: %s at offset %"
                       PRIu64 " count %" PRIu64 ": %m", f->path, what,
                       offset, count);
}
#define log_io_error(f, what, offset, count, err)                       \
  do {                                                                  \
    static struct log_ratelimit rl_ = LOG_RATELIMIT_INIT;               \
    io_error (&rl_, (f), (what), (offset), (count), (err));             \
  } while (0)

static int
check_range (struct backing_file *f, const char *what,
             uint64_t offset, uint64_t count)
{
  if (range_within (offset, count, f->b.size_bytes))
    return 0;
  log_error ("file: %s: %s at offset %" PRIu64 " count %" PRIu64
             " is beyond the size %" PRIu64 " bytes",
             f->path, what, offset, count, f->b.size_bytes);
  return -EINVAL;
}

static int
check_writable (struct backing_file *f, const char *what, uint64_t offset,
                uint64_t count)
{
  if (!f->b.readonly)
    return 0;
  log_io_error (f, what, offset, count, EROFS);
  return -EROFS;
}

/* ---- read and write ---- */

static int
file_pread (struct backing *b, void *buf, size_t count, uint64_t offset)
{
  struct backing_file *f = to_file (b);
  size_t done;
  int r;

  if ((r = check_range (f, "read", offset, count)) < 0)
    return r;
  r = fileio_pread_full (f->fd, buf, count, offset, &done);
  if (r < 0) {
    log_io_error (f, "read", offset + done, count - done, -r);
    return r;
  }
  if (done < count) {
    log_error_ratelimited ("file: %s: read at offset %" PRIu64 " count %zu: "
                           "unexpected end of file (did the file shrink?)",
                           f->path, offset + done, count - done);
    return -EIO;
  }
  return 0;
}

static void
note_sync_failure (struct backing_file *f)
{
  __atomic_add_fetch (&f->sync_failures, 1, __ATOMIC_ACQ_REL);
}

/* Write all of buf; with fua, durably.  0 or -errno (logged). */
static int
write_all (struct backing_file *f, const void *buf, size_t count,
           uint64_t offset, bool fua)
{
  size_t done;
  int r = fileio_pwrite_full (f->fd, buf, count, offset,
                              fua ? &f->cap_dsync : NULL, &done);

  /* With RWF_DSYNC a failed write may be a failed sync: count it. */
  if (r < 0 && fua)
    note_sync_failure (f);
  if (r < 0 && done == count)
    log_io_error (f, "write (FUA fdatasync)", offset, count, -r);
  else if (r < 0)
    log_io_error (f, "write", offset + done, count - done, -r);
  return r;
}

static int
sync_after (struct backing_file *f, const char *what, uint64_t offset,
            uint64_t count)
{
  int r = fileio_datasync (f->fd);

  if (r < 0) {
    note_sync_failure (f);
    log_io_error (f, what, offset, count, -r);
  }
  return r;
}

static int
file_pread_nowait (struct backing *b, void *buf, size_t count,
                   uint64_t offset)
{
  struct backing_file *f = to_file (b);

  if (!range_within (offset, count, f->b.size_bytes))
    return -EAGAIN;             /* pread says why */
  return fileio_pread_nowait (f->fd, buf, count, offset, f->in_memory);
}

static int
file_pwrite (struct backing *b, const void *buf, size_t count,
             uint64_t offset, uint32_t flags)
{
  struct backing_file *f = to_file (b);
  int r;

  if ((r = check_writable (f, "write", offset, count)) < 0 ||
      (r = check_range (f, "write", offset, count)) < 0)
    return r;
  return write_all (f, buf, count, offset, (flags & BACKING_FUA) != 0);
}

/* fdatasync, and -EIO if a FUA sync failed since the last flush (its
 * error, reported to that write, may have cost pages written before it
 * that this fdatasync will not see).  A failure during the flush fails
 * it and the next one.
 */
static int
file_flush (struct backing *b)
{
  struct backing_file *f = to_file (b);
  uint64_t start = __atomic_load_n (&f->sync_failures, __ATOMIC_ACQUIRE);
  uint64_t seen;
  int r = fileio_datasync (f->fd);

  if (r < 0) {
    errno = -r;
    log_error_ratelimited ("file: %s: flush: %m", f->path);
  }
  seen = __atomic_load_n (&f->sync_reported, __ATOMIC_ACQUIRE);
  if (r == 0 &&
      (seen < start ||
       __atomic_load_n (&f->sync_failures, __ATOMIC_ACQUIRE) != start)) {
    log_error_ratelimited ("file: %s: flush: an earlier sync failed; data "
                           "written before it may be lost", f->path);
    r = -EIO;
  }
  while (seen < start &&
         !__atomic_compare_exchange_n (&f->sync_reported, &seen, start, false,
                                       __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
    ;
  return r;
}

/* ---- trim ---- */

/* The logical-block-aligned interior of [offset, offset+count). */
static bool
aligned_interior (struct backing_file *f, uint64_t offset, uint64_t count,
                  uint64_t *start, uint64_t *end)
{
  uint64_t lbs = f->logical_block_bytes;

  *start = ROUND_UP (offset, lbs);
  *end = ROUND_DOWN (offset + count, lbs);
  return *start < *end;
}

static int
file_trim (struct backing *b, uint64_t count, uint64_t offset,
           uint32_t flags)
{
  struct backing_file *f = to_file (b);
  uint64_t start, end;
  int r;

  if ((r = check_writable (f, "trim", offset, count)) < 0 ||
      (r = check_range (f, "trim", offset, count)) < 0)
    return r;
  if (count == 0)
    return 0;

  if (b->is_block_device) {
    if (!fileio_cap_get (&f->cap_blkdiscard) ||
        !aligned_interior (f, offset, count, &start, &end))
      return 0;
    r = fileio_range_ioctl (f->fd, BLKDISCARD, start, end - start);
    if (r < 0 && fileio_is_unsupported (-r)) {
      fileio_cap_clear (&f->cap_blkdiscard);
      return 0;
    }
    if (r < 0) {
      log_io_error (f, "trim (BLKDISCARD)", start, end - start, -r);
      return r;
    }
  }
  else {
    if (!fileio_cap_get (&f->cap_punch))
      return 0;
    r = fileio_punch_hole (f->fd, offset, count);
    if (r < 0 && fileio_is_unsupported (-r)) {
      fileio_cap_clear (&f->cap_punch);
      return 0;
    }
    if (r < 0) {
      log_io_error (f, "trim (punch hole)", offset, count, -r);
      return r;
    }
  }

  if (flags & BACKING_FUA)
    return sync_after (f, "trim (FUA fdatasync)", offset, count);
  return 0;
}

/* ---- zero ---- */

/* Write zeros from the static buffer. */
static int
write_zeros (struct backing_file *f, uint64_t offset, uint64_t count)
{
  while (count > 0) {
    size_t n = (size_t) MIN (count, (uint64_t) ZERO_BUF_BYTES);
    int r = write_all (f, zero_buf, n, offset, false);

    if (r < 0)
      return r;
    offset += n;
    count -= n;
  }
  return 0;
}

/* Try one fallocate mode.  1 = done, 0 = not supported (capability
 * cleared, nothing changed), -errno = failed (logged).
 */
static int
try_fallocate (struct backing_file *f, bool *cap, int mode, const char *what,
               uint64_t offset, uint64_t count)
{
  int r;

  if (!fileio_cap_get (cap))
    return 0;
  r = fileio_fallocate (f->fd, mode, offset, count);
  if (r == 0)
    return 1;
  if (fileio_is_unsupported (-r)) {
    fileio_cap_clear (cap);
    return 0;
  }
  log_io_error (f, what, offset, count, -r);
  return r;
}

static int
zero_regular (struct backing_file *f, uint64_t count, uint64_t offset,
              uint32_t flags)
{
  const int punch = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
  int r;

  if (flags & BACKING_MAY_TRIM) {
    r = try_fallocate (f, &f->cap_punch, punch, "zero (punch hole)",
                       offset, count);
    if (r != 0)
      return r < 0 ? r : 0;
  }

  r = try_fallocate (f, &f->cap_zero_range,
                     FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
                     "zero (zero range)", offset, count);
  if (r != 0)
    return r < 0 ? r : 0;

  /* Punch, then allocate again so that the range stays allocated.  Where
   * allocation turns out to be unsupported, a FAST zero keeps the hole
   * (keeping the allocation is a wish, not a promise; writing data is
   * what FAST forbids) and a normal one writes zeros instead.
   */
  if (fileio_cap_get (&f->cap_punch) &&
      (fileio_cap_get (&f->cap_allocate) || (flags & BACKING_FAST))) {
    r = try_fallocate (f, &f->cap_punch, punch, "zero (punch hole)",
                       offset, count);
    if (r < 0)
      return r;
    if (r == 1) {
      r = try_fallocate (f, &f->cap_allocate, FALLOC_FL_KEEP_SIZE,
                         "zero (allocate)", offset, count);
      if (r != 0)
        return r < 0 ? r : 0;
      if (flags & BACKING_FAST)
        return 0;
      return write_zeros (f, offset, count);
    }
  }

  if (flags & BACKING_FAST)
    return -ENOTSUP;
  return write_zeros (f, offset, count);
}

static int
zero_block_device (struct backing_file *f, uint64_t count, uint64_t offset,
                   uint32_t flags)
{
  uint64_t start, end;
  bool punch, zeroout;
  int r;

  if (!aligned_interior (f, offset, count, &start, &end)) {
    /* Less than one logical block: only a data write can do it. */
    if (flags & BACKING_FAST)
      return -ENOTSUP;
    return write_zeros (f, offset, count);
  }

  /* Choose the method for the middle before writing the edges, so that
   * BACKING_FAST can still refuse having changed nothing.  The choice
   * can only be undone by a capability disappearing under us, in which
   * case the slow path below is taken even for FAST.
   */
  punch = (flags & BACKING_MAY_TRIM) && fileio_cap_get (&f->cap_punch);
  zeroout = fileio_cap_get (&f->cap_blkzeroout) &&
    (!(flags & BACKING_FAST) || f->write_zeroes_fast);
  if ((flags & BACKING_FAST) && !punch && !zeroout)
    return -ENOTSUP;

  if (start > offset && (r = write_zeros (f, offset, start - offset)) < 0)
    return r;
  if (offset + count > end &&
      (r = write_zeros (f, end, offset + count - end)) < 0)
    return r;

  if (punch) {
    /* On a block device the kernel does this only if it is cheap. */
    r = try_fallocate (f, &f->cap_punch,
                       FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                       "zero (punch hole)", start, end - start);
    if (r != 0)
      return r < 0 ? r : 0;
  }
  if (zeroout) {
    r = fileio_range_ioctl (f->fd, BLKZEROOUT, start, end - start);
    if (r == 0)
      return 0;
    if (!fileio_is_unsupported (-r)) {
      log_io_error (f, "zero (BLKZEROOUT)", start, end - start, -r);
      return r;
    }
    fileio_cap_clear (&f->cap_blkzeroout);
  }
  return write_zeros (f, start, end - start);
}

static int
file_zero (struct backing *b, uint64_t count, uint64_t offset,
           uint32_t flags)
{
  struct backing_file *f = to_file (b);
  int r;

  if ((r = check_writable (f, "zero", offset, count)) < 0 ||
      (r = check_range (f, "zero", offset, count)) < 0)
    return r;
  if (count == 0)
    return 0;

  if (b->is_block_device)
    r = zero_block_device (f, count, offset, flags);
  else
    r = zero_regular (f, count, offset, flags);
  if (r < 0)
    return r;

  if (flags & BACKING_FUA)
    return sync_after (f, "zero (FUA fdatasync)", offset, count);
  return 0;
}

/* ---- extents ---- */

/* lseek SEEK_DATA/SEEK_HOLE: 0 and *out, or -errno (ENXIO = past the last
 * data, or past end of file).
 */
static int
seek (int fd, uint64_t pos, int whence, uint64_t *out)
{
  off_t r = lseek (fd, (off_t) pos, whence);

  if (r == -1)
    return -errno;
  *out = (uint64_t) r;
  return 0;
}

static int
file_extents (struct backing *b, uint64_t count, uint64_t offset,
              backing_extent_fn fn, void *opaque)
{
  struct backing_file *f = to_file (b);
  uint64_t pos = offset, end = offset + count, next = 0;
  int r;

  if ((r = check_range (f, "extents", offset, count)) < 0)
    return r;
  if (count == 0)
    return 0;

  if (!fileio_cap_get (&f->cap_seek_data)) {
    r = fn (opaque, offset, count, 0);
    return r < 0 ? r : 0;
  }

  while (pos < end) {
    uint64_t len;
    uint32_t type;

    r = seek (f->fd, pos, SEEK_DATA, &next);
    if (r == -ENXIO)
      next = end;               /* only a hole from here on */
    else if (r < 0)
      goto seek_failed;

    if (next > pos) {
      len = MIN (next, end) - pos;
      type = BACKING_EXTENT_HOLE | BACKING_EXTENT_ZERO;
    }
    else {
      r = seek (f->fd, pos, SEEK_HOLE, &next);
      if (r == -ENXIO)
        next = end;             /* the file shrank: call the rest data */
      else if (r < 0)
        goto seek_failed;
      if (next <= pos)          /* cannot happen; never loop forever */
        next = end;
      len = MIN (next, end) - pos;
      type = 0;
    }

    r = fn (opaque, pos, len, type);
    if (r < 0)
      return r;
    if (r > 0)
      return 0;
    pos += len;
  }
  return 0;

 seek_failed:
  log_io_error (f, "extents (lseek)", pos, end - pos, -r);
  return r;
}

/* ---- close ---- */

static void
file_close (struct backing *b)
{
  struct backing_file *f = to_file (b);

  if (f->fd >= 0 && close (f->fd) == -1)
    log_warning ("file: %s: close: %m", f->path);
  free (f->path);
  free (f->b.uri);
  free (f);
}

static int
file_identify (struct backing *b, bool tag, struct backing_identity *out)
{
  struct backing_file *f = (struct backing_file *) b;

  return backing_fd_identify (f->fd, tag, out);
}

static const struct backing_ops file_ops = {
  .name = "file",
  .identify = file_identify,
  .pread = file_pread,
  .pread_nowait = file_pread_nowait,
  .pwrite = file_pwrite,
  .flush = file_flush,
  .trim = file_trim,
  .zero = file_zero,
  .extents = file_extents,
  .close = file_close,
};

/* ---- open ---- */

/* "file://" + the absolute form of path, with "." components and
 * repeated slashes removed; "..", symlinks and percent signs are left
 * as they are.  NULL on allocation failure.
 */
char *
backing_file_uri (const char *path)
{
  char *cwd = NULL, *abs, *uri, *out;
  const char *in;
  size_t n;

  if (path[0] != '/') {
    cwd = getcwd (NULL, 0);
    if (cwd == NULL)
      return NULL;
  }
  if (asprintf (&abs, "%s/%s", cwd ? cwd : "", path) < 0) {
    free (cwd);
    return NULL;
  }
  free (cwd);

  n = strlen (abs);
  uri = malloc (strlen ("file://") + n + 1);
  if (uri == NULL) {
    free (abs);
    return NULL;
  }
  out = stpcpy (uri, "file://");
  for (in = abs; *in != '\0';) {
    size_t len;

    while (*in == '/')
      ++in;
    len = strcspn (in, "/");
    if (len == 0)
      break;
    if (!(len == 1 && in[0] == '.')) {
      *out++ = '/';
      memcpy (out, in, len);
      out += len;
    }
    in += len;
  }
  if (out == uri + strlen ("file://"))
    *out++ = '/';               /* the root itself */
  *out = '\0';
  free (abs);
  return uri;
}

/* Read a decimal number from /sys/dev/block/MAJ:MIN[/..]/queue/NAME (a
 * partition keeps its queue in its parent).  -errno if unreadable.
 */
static int
read_queue_attr (dev_t rdev, const char *name, uint64_t *out)
{
  static const char *const parent[] = { "", "/.." };
  size_t i;

  for (i = 0; i < ARRAY_SIZE (parent); ++i) {
    char path[256];
    unsigned long long v;
    FILE *fp;
    int ok;

    snprintf (path, sizeof path, "/sys/dev/block/%u:%u%s/queue/%s",
              major (rdev), minor (rdev), parent[i], name);
    fp = fopen (path, "re");
    if (fp == NULL)
      continue;
    ok = fscanf (fp, "%llu", &v) == 1;
    fclose (fp);
    if (ok) {
      *out = v;
      return 0;
    }
  }
  return -ENOENT;
}

static void
probe_block_device (struct backing_file *f, const struct stat *st)
{
  uint64_t v;
  int lbs;

  if (ioctl (f->fd, BLKSSZGET, &lbs) == -1 || lbs <= 0)
    lbs = 512;

  f->b.is_block_device = true;
  f->logical_block_bytes = (uint32_t) lbs;
  f->cap_seek_data = false;
  f->cap_zero_range = false;    /* on a block device it may write data */
  f->cap_allocate = false;

  /* Unknown attributes: try discard and learn; never promise fast zero. */
  f->cap_blkdiscard = read_queue_attr (st->st_rdev, "discard_max_bytes",
                                       &v) < 0 || v > 0;
  f->write_zeroes_fast = read_queue_attr (st->st_rdev,
                                          "write_zeroes_max_bytes",
                                          &v) == 0 && v > 0;
  if (!f->write_zeroes_fast)
    f->cap_punch = false;       /* the kernel would refuse it anyway */

  f->b.can_trim = f->cap_blkdiscard;
  f->b.can_zero = f->write_zeroes_fast;
  f->b.can_fast_zero = f->write_zeroes_fast;
  f->b.can_extents = false;
}

static void
probe_regular_file (struct backing_file *f)
{
  uint64_t pos;
  int r;

  f->logical_block_bytes = 1;
  f->cap_blkdiscard = false;
  f->cap_blkzeroout = false;

  /* Punching a hole past end of file with KEEP_SIZE changes nothing, but
   * tells whether the filesystem can punch at all.
   */
  if (!f->b.readonly) {
    r = fileio_punch_hole (f->fd, f->b.size_bytes, 4096);
    if (r < 0 && fileio_is_unsupported (-r))
      f->cap_punch = false;
  }

  r = seek (f->fd, 0, SEEK_HOLE, &pos);
  if (r == -EINVAL || (r < 0 && fileio_is_unsupported (-r)))
    f->cap_seek_data = false;

  /* ZERO_RANGE is not probed (it would allocate past end of file); every
   * Linux filesystem that has it can also punch, and punching (then
   * allocating) zeroes fast on its own.
   */
  f->b.can_trim = f->cap_punch;
  f->b.can_zero = f->cap_punch;
  f->b.can_fast_zero = f->cap_punch;
  f->b.can_extents = f->cap_seek_data;
}

/* See ONE WRITER in the file comment.  0 or -errno (logged). */
static int
lock_backing (struct backing_file *f, bool readonly)
{
  char holder[256];
  int r = ownlock_take (f->fd, !readonly, holder, sizeof holder);

  if (r == -EBUSY)
    log_error ("file: %s: in use by %s; a backing file is written by one "
               "export of one server at a time (read-only exports may "
               "share it)", f->path, holder);
  else if (r < 0) {
    errno = -r;
    log_error ("file: %s: cannot lock the file (F_OFD_SETLK): %m", f->path);
  }
  return r;
}

static int
open_or_create (const char *path, const struct backing_open_options *opts)
{
  int flags = (opts->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOCTTY;
  int fd, r;

  fd = open (path, flags);
  if (fd == -1 && errno == ENOENT && opts->create_size_bytes > 0) {
    r = fileio_create_sparse ("file: ", path, opts->create_size_bytes, 0644);
    if (r == 0)
      log_info ("file: %s: created a sparse backing file of %" PRIu64
                " bytes", path, opts->create_size_bytes);
    else if (r != -EEXIST)
      return r;
    fd = open (path, flags);
  }
  if (fd == -1) {
    r = -errno;
    if (r == -ENOENT)
      log_error ("file: %s: does not exist (give a size to create it)", path);
    else
      log_error ("file: %s: open%s: %m", path,
                 opts->readonly ? " (read-only)" : "");
    return r;
  }
  return fd;
}

int
backing_file_open (const char *path, const struct backing_open_options *opts,
                   struct backing **out)
{
  static const struct backing_open_options defaults;
  struct backing_file *f;
  struct stat st;
  int r;

  if (opts == NULL)
    opts = &defaults;
  if (path == NULL || *path == '\0') {
    log_error ("file: the backing path is empty");
    return -EINVAL;
  }

  f = calloc (1, sizeof *f);
  if (f == NULL)
    return -ENOMEM;
  f->fd = -1;
  f->b.ops = &file_ops;
  f->b.readonly = opts->readonly;
  f->cap_dsync = f->cap_punch = f->cap_zero_range = f->cap_allocate = true;
  f->cap_blkdiscard = f->cap_blkzeroout = f->cap_seek_data = true;
  f->path = strdup (path);
  f->b.uri = backing_file_uri (path);
  if (f->path == NULL || f->b.uri == NULL) {
    r = -ENOMEM;
    goto err;
  }

  if (opts->share && !opts->readonly) {
    log_error ("file: %s: a shared (unlocked) backing must be read-only",
               path);
    r = -EINVAL;
    goto err;
  }
  if ((r = open_or_create (path, opts)) < 0)
    goto err;
  f->fd = r;
  f->in_memory = fileio_in_memory (r);
  if (!opts->share && (r = lock_backing (f, opts->readonly)) < 0)
    goto err;

  if ((r = fileio_stat_size ("file: ", path, f->fd, &st,
                              &f->b.size_bytes)) < 0)
    goto err;
  if (S_ISBLK (st.st_mode))
    probe_block_device (f, &st);
  else
    probe_regular_file (f);

  if (f->b.readonly)
    f->b.can_trim = f->b.can_zero = f->b.can_fast_zero = false;

  log_debug ("file: %s: opened %s, %" PRIu64 " bytes%s, trim %d, zero %d, "
             "extents %d", path, f->b.is_block_device ? "block device" : "file",
             f->b.size_bytes, f->b.readonly ? ", read-only" : "",
             f->b.can_trim, f->b.can_zero, f->b.can_extents);
  *out = &f->b;
  return 0;

 err:
  file_close (&f->b);
  return r;
}
