/* SPDX-License-Identifier: BSD-3-Clause */
/* ownlock.h — "one opener at a time": whole-file OFD locks on the cache
 * device and the backing files, and who holds one when we cannot have it.
 *
 * Owns: nothing.  The lock belongs to the caller's open file description:
 * it lasts until the last fd sharing that description is closed (so it
 * survives a fork into the background), and it is not inherited across
 * exec (callers open with O_CLOEXEC).
 * Threads: any thread; no state of our own.
 * On disk: nothing.  Locks are advisory: they keep nbdcached, the nbdkit
 * plugin and the nbdcache tool from each other, not dd.
 * Not here: O_EXCL on block devices (the opener adds it to open(2)).
 */
#ifndef NBDCACHE_OWNLOCK_H
#define NBDCACHE_OWNLOCK_H

#include <stdbool.h>
#include <stddef.h>

/* Lock the whole file behind fd without waiting: exclusive (a writer)
 * or shared (readers, which exclude writers only).  0, -EBUSY when
 * another open file description holds a conflicting lock (then `holder`,
 * if not NULL, gets "PROGRAM (pid N)" or "another process", always
 * NUL-terminated), or -errno from fcntl.  Not logged: the caller names
 * the file and says what it is for.
 */
int ownlock_take (int fd, bool exclusive, char *holder, size_t holder_len);

/* Find a process holding an OFD lock on the file behind fd, by its
 * /proc/PID/fdinfo "lock:" lines (OFD locks report no pid through
 * F_OFD_GETLK).  Writes "PROGRAM (pid N)", or "another process" when no
 * such process is visible to us (other users' fds are not).
 */
void ownlock_holder (int fd, char *holder, size_t holder_len);

#endif /* NBDCACHE_OWNLOCK_H */
