/* SPDX-License-Identifier: BSD-3-Clause */
/* ownlock.c — whole-file OFD locks and naming their holder.
 *
 * WHAT: ownlock_take (F_OFD_SETLK, F_WRLCK or F_RDLCK, the whole file)
 * and ownlock_holder (who has it).
 * WHY: a cache device or a backing file written by two openers at once
 * loses acknowledged writes without a trace: two allocators hand out the
 * same buckets, or one export's writeback overwrites the other's data.
 * OFD locks (not POSIX record locks) because they belong to the open file
 * description: two opens in one process conflict (two [cache] sections on
 * one file), closing an unrelated fd on the same file does not drop the
 * lock, and a fork into the background keeps it.
 *
 * INVARIANTS: the lock always covers [0, EOF-and-beyond) (l_len 0), so a
 * file that grows stays covered.
 * THREADS AND LOCKS: none of our own.
 * FAILURE: -errno; the holder search never fails (it falls back to
 * "another process").  It reads /proc only after a conflict, so its cost
 * (one small read per open fd on the machine we may see) is paid only
 * on the refusing path.
 * NOT HERE: waiting for a lock (openers refuse, they never queue), O_EXCL.
 */
#include <config.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>

#include "ownlock.h"

int
ownlock_take (int fd, bool exclusive, char *holder, size_t holder_len)
{
  struct flock fl = {
    .l_type = exclusive ? F_WRLCK : F_RDLCK,
    .l_whence = SEEK_SET,
    .l_start = 0,
    .l_len = 0,
  };
  int r;

  if (fcntl (fd, F_OFD_SETLK, &fl) == 0)
    return 0;
  r = -errno;
  if (r == -EAGAIN || r == -EACCES)
    r = -EBUSY;
  if (r == -EBUSY && holder != NULL && holder_len > 0)
    ownlock_holder (fd, holder, holder_len);
  return r;
}

/* True if the fdinfo text has an OFD lock line on inode `id`
 * ("MAJ:MIN:INO" as the kernel prints it).
 */
static bool
fdinfo_has_lock (const char *path, const char *id)
{
  char buf[4096];
  ssize_t n;
  int fd;
  const char *p;

  fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd == -1)
    return false;
  n = read (fd, buf, sizeof buf - 1);
  close (fd);
  if (n <= 0)
    return false;
  buf[n] = '\0';
  for (p = strstr (buf, "lock:"); p != NULL; p = strstr (p + 1, "lock:")) {
    const char *eol = strchr (p, '\n');
    const char *hit = strstr (p, id);

    if (hit != NULL && (eol == NULL || hit < eol)) {
      const char *ofd = strstr (p, "OFDLCK");
      if (ofd != NULL && ofd < hit)
        return true;
    }
  }
  return false;
}

/* Does process `pid` hold an OFD lock on inode `id`? */
static bool
pid_holds (long pid, const char *id)
{
  char dir[64], path[96];
  struct dirent *d;
  DIR *dp;
  bool found = false;

  snprintf (dir, sizeof dir, "/proc/%ld/fdinfo", pid);
  dp = opendir (dir);
  if (dp == NULL)
    return false;
  while (!found && (d = readdir (dp)) != NULL) {
    if (!isdigit ((unsigned char) d->d_name[0]))
      continue;
    snprintf (path, sizeof path, "%s/%ld", dir, strtol (d->d_name, NULL, 10));
    found = fdinfo_has_lock (path, id);
  }
  closedir (dp);
  return found;
}

static void
name_pid (long pid, char *holder, size_t holder_len)
{
  char path[64], comm[64] = "";
  FILE *fp;

  snprintf (path, sizeof path, "/proc/%ld/comm", pid);
  fp = fopen (path, "re");
  if (fp != NULL) {
    if (fgets (comm, sizeof comm, fp) == NULL)
      comm[0] = '\0';
    fclose (fp);
  }
  comm[strcspn (comm, "\n")] = '\0';
  snprintf (holder, holder_len, "%s (pid %ld)",
            comm[0] ? comm : "a process", pid);
}

void
ownlock_holder (int fd, char *holder, size_t holder_len)
{
  struct stat st;
  char id[64];
  struct dirent *d;
  DIR *dp;

  if (holder == NULL || holder_len == 0)
    return;
  snprintf (holder, holder_len, "another process");
  if (fstat (fd, &st) == -1)
    return;
  /* As fs/locks.c prints it: "%02x:%02x:%lu" with spaces around. */
  snprintf (id, sizeof id, " %02x:%02x:%" PRIuMAX " ",
            major (st.st_dev), minor (st.st_dev), (uintmax_t) st.st_ino);
  dp = opendir ("/proc");
  if (dp == NULL)
    return;
  while ((d = readdir (dp)) != NULL) {
    long pid;

    if (!isdigit ((unsigned char) d->d_name[0]))
      continue;
    pid = strtol (d->d_name, NULL, 10);

    if (pid_holds (pid, id)) {
      name_pid (pid, holder, holder_len);
      break;
    }
  }
  closedir (dp);
}
