/* SPDX-License-Identifier: BSD-3-Clause */
/* cleanup.h — scope-bound cleanup attributes for function-local resources.
 *
 * WHAT: AUTOFREE (free on scope exit), AUTOCLOSE (close an fd >= 0),
 * SCOPED_LOCK (lock a pthread mutex until the end of the scope).
 * WHY: constructors that unwind step by step are clearer with them, and
 * early returns cannot leak.
 * INVARIANTS: only for function-local resources; never for values that are
 * returned or stored elsewhere (hand them off by setting the variable to
 * NULL / -1 first).
 */
#ifndef NBDCACHE_CLEANUP_H
#define NBDCACHE_CLEANUP_H

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

static inline void
cleanup_free_ptr (void *ptr)
{
  free (*(void **) ptr);
}
#define AUTOFREE __attribute__ ((__cleanup__ (cleanup_free_ptr)))

static inline void
cleanup_close_fd (int *fd)
{
  if (*fd >= 0)
    close (*fd);
}
#define AUTOCLOSE __attribute__ ((__cleanup__ (cleanup_close_fd)))

static inline void
cleanup_unlock_mutex (pthread_mutex_t **m)
{
  pthread_mutex_unlock (*m);
}
#define SCOPED_LOCK_CONCAT2(a, b) a##b
#define SCOPED_LOCK_CONCAT(a, b) SCOPED_LOCK_CONCAT2 (a, b)
#define SCOPED_LOCK(mutex)                                              \
  __attribute__ ((__cleanup__ (cleanup_unlock_mutex), __unused__))      \
  pthread_mutex_t *SCOPED_LOCK_CONCAT (scoped_lock_, __LINE__) =        \
    (pthread_mutex_lock (mutex), (mutex))

#endif /* NBDCACHE_CLEANUP_H */
