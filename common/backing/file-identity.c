/* SPDX-License-Identifier: BSD-3-Clause */
/* file-identity.c — what identifies a file or block device backing
 * store, whatever its path.
 *
 * WHAT: backing_fd_identify: for a regular file its device, inode, birth
 * time and the random 16-byte id in its extended attribute
 * user.nbdcache.id (set here, once, when the caller asks to tag it); for a
 * block device the best stable name the kernel gives in /sys (WWN, serial,
 * device-mapper or md uuid), for a loop device the file behind it (its
 * device, inode and birth time, from LOOP_GET_STATUS64), else its device
 * number.
 * WHY: the cache keys an export's data by its backing store; a path can be
 * renamed, moved with its directory, or reused by another file, and none
 * of that may attach the data to the wrong store (nbdcache-format(5)).
 * INVARIANTS: the xattr is only ever created (XATTR_CREATE), never
 * replaced: a file keeps the id it was first given.  A copy made with its
 * extended attributes (cp -a, rsync -X) has the same id: it is the same
 * store as far as the cache can tell (the cache refuses a second open of
 * one id at a time).
 * THREADS AND LOCKS: none; the fd is the caller's.
 * FAILURE: -errno from fstat only; an id that cannot be read or set is
 * reported in xattr_err (-ENOTSUP: the filesystem keeps no user xattrs;
 * tmpfs does since Linux 6.6), and the caller falls back to device, inode
 * and birth time.
 * NOT HERE: matching identities against the export table (the cache's
 * super.c), opening the file (file.c).
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "backing.h"

/* The first line of /sys/dev/block/M:m/<name> into buf (trimmed); true
 * if non-empty.
 */
static bool
sys_attr (unsigned maj, unsigned min, const char *name, char *buf,
          size_t size)
{
  char path[128];
  FILE *fp;
  size_t n;

  snprintf (path, sizeof path, "/sys/dev/block/%u:%u/%s", maj, min, name);
  fp = fopen (path, "re");
  if (fp == NULL)
    return false;
  if (fgets (buf, (int) size, fp) == NULL)
    buf[0] = '\0';
  fclose (fp);
  n = strlen (buf);
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
    buf[--n] = '\0';
  return n > 0;
}

/* A loop device is its backing file (plus the window into it): the
 * device number says nothing, since detaching /dev/loopN and attaching
 * another file gives another disk the same number.  "loop:DEV:INO:BTIME
 * [+OFFSET]" (DEV in hex as stat %D prints it; BTIME "SEC.NSEC" of the
 * file found at the loop's backing path if it is the same inode, else
 * "-").  False if fd is not a bound loop device.
 */
static bool
loop_devid (int fd, unsigned maj, unsigned min, bool part, char *out,
            size_t size)
{
  const char *dir = part ? "../loop" : "loop";
  struct loop_info64 li;
  struct statx stx;
  char path[4096], attr[32], btime[40] = "-", off[24] = "";

  /* Only a loop device gets the loop driver's ioctl. */
  snprintf (path, sizeof path, "/sys/dev/block/%u:%u/%s", maj, min, dir);
  if (access (path, F_OK) != 0 ||
      ioctl (fd, LOOP_GET_STATUS64, &li) == -1)
    return false;
  /* The full path (lo_file_name is cut at 64 bytes); statx checks that
   * it still names the same inode before its birth time is used.
   */
  snprintf (attr, sizeof attr, "%s/backing_file", dir);
  if (sys_attr (maj, min, attr, path, sizeof path) &&
      statx (AT_FDCWD, path, 0, STATX_INO | STATX_BTIME, &stx) == 0 &&
      (stx.stx_mask & STATX_BTIME) && stx.stx_ino == li.lo_inode &&
      makedev (stx.stx_dev_major, stx.stx_dev_minor) == li.lo_device)
    snprintf (btime, sizeof btime, "%" PRId64 ".%09" PRIu32,
              (int64_t) stx.stx_btime.tv_sec, stx.stx_btime.tv_nsec);
  if (li.lo_offset != 0)
    snprintf (off, sizeof off, "+%" PRIu64, (uint64_t) li.lo_offset);
  snprintf (out, size, "loop:%" PRIx64 ":%" PRIu64 ":%s%s",
            (uint64_t) li.lo_device, (uint64_t) li.lo_inode, btime, off);
  return true;
}

static void
block_devid (int fd, dev_t rdev, char *out, size_t size)
{
  static const struct { const char *attr, *prefix; } names[] = {
    { "wwid", "wwid" }, { "device/wwid", "wwid" },
    { "device/serial", "serial" }, { "dm/uuid", "dm" }, { "md/uuid", "md" },
  };
  unsigned maj = major (rdev), min = minor (rdev);
  char val[128], part[16] = "", pdir[160];
  size_t i;

  /* A partition: the whole disk's name plus the partition number. */
  if (sys_attr (maj, min, "partition", part, sizeof part)) {
    for (i = 0; i < sizeof names / sizeof names[0]; i++) {
      snprintf (pdir, sizeof pdir, "../%s", names[i].attr);
      if (sys_attr (maj, min, pdir, val, sizeof val)) {
        snprintf (out, size, "%s:%.40s:part%s", names[i].prefix, val, part);
        return;
      }
    }
    if (loop_devid (fd, maj, min, true, out, size)) {
      size_t n = strlen (out);

      snprintf (out + n, size - n, ":part%s", part);
      return;
    }
  }
  else {
    for (i = 0; i < sizeof names / sizeof names[0]; i++)
      if (sys_attr (maj, min, names[i].attr, val, sizeof val)) {
        snprintf (out, size, "%s:%.50s", names[i].prefix, val);
        return;
      }
    if (loop_devid (fd, maj, min, false, out, size))
      return;
  }
  snprintf (out, size, "devt:%u:%u", maj, min);
}

static int
xattr_error (int e)
{
  return e == EOPNOTSUPP || e == ENOTSUP ? -ENOTSUP : -e;
}

int
backing_fd_identify (int fd, bool tag, struct backing_identity *out)
{
  struct statx stx;
  struct stat st;
  ssize_t n;

  memset (out, 0, sizeof *out);
  if (fstat (fd, &st) == -1)
    return -errno;
  if (S_ISBLK (st.st_mode)) {
    out->kind = BACKING_ID_BLOCK;
    block_devid (fd, st.st_rdev, out->devid, sizeof out->devid);
    return 0;
  }
  out->kind = BACKING_ID_FILE;
  out->dev = (uint64_t) st.st_dev;
  out->ino = (uint64_t) st.st_ino;
  if (statx (fd, "", AT_EMPTY_PATH, STATX_BTIME, &stx) == 0 &&
      (stx.stx_mask & STATX_BTIME)) {
    out->has_btime = true;
    out->btime_sec = stx.stx_btime.tv_sec;
    out->btime_nsec = stx.stx_btime.tv_nsec;
  }
  n = fgetxattr (fd, BACKING_ID_XATTR, out->uuid, sizeof out->uuid);
  if (n == (ssize_t) sizeof out->uuid) {
    out->has_uuid = true;
    return 0;
  }
  if (n >= 0)
    out->xattr_err = -EBADMSG;  /* not ours: left alone */
  else if (errno != ENODATA)
    out->xattr_err = xattr_error (errno);
  if (!tag || out->xattr_err != 0)
    return 0;
  if (getrandom (out->uuid, sizeof out->uuid, 0) != (ssize_t) sizeof out->uuid) {
    out->xattr_err = -EIO;
    return 0;
  }
  if (fsetxattr (fd, BACKING_ID_XATTR, out->uuid, sizeof out->uuid,
                 XATTR_CREATE) == 0)
    out->has_uuid = true;
  else if (errno == EEXIST &&
           fgetxattr (fd, BACKING_ID_XATTR, out->uuid, sizeof out->uuid)
           == (ssize_t) sizeof out->uuid)
    out->has_uuid = true;       /* someone else tagged it just now */
  else
    out->xattr_err = xattr_error (errno);
  if (!out->has_uuid)
    memset (out->uuid, 0, sizeof out->uuid);
  return 0;
}
