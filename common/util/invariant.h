/* SPDX-License-Identifier: BSD-3-Clause */
/* invariant.h — checks of our own invariants, on in debug and test builds.
 *
 * Owns: nothing.
 * Threads: any.
 * WHAT:
 *   ASSERT_HELD (m)   a `_locked` function's first line: the mutex m is
 *                     held.  pthread_mutex_trylock succeeding means nobody
 *                     held it: the caller forgot the lock.  (It cannot
 *                     tell this thread from another one holding it; the
 *                     common bug, calling without the lock, is caught.)
 *   ASSERT_WRLOCKED (rw)  the same for a pthread_rwlock_t the function
 *                     needs exclusively: pthread_rwlock_tryrdlock
 *                     succeeding proves no writer holds it (a caller
 *                     holding it only shared is caught too).  It fails
 *                     with EBUSY while a writer, this thread or another,
 *                     holds it, and may fail spuriously when a writer
 *                     waits: it never aborts a correct caller, it can
 *                     miss a wrong one.
 *   BUG_ONCE (cond, fmt, ...)  a "should never happen" path: when cond is
 *                     true, log an error once per call site and, in debug
 *                     and test builds, abort.  It evaluates to cond, so a
 *                     release build can still clamp or refuse after it:
 *                       if (BUG_ONCE (n > live, "..."))  n = live;
 * Both compile to nothing (BUG_ONCE to its condition and the one message)
 * with NDEBUG.
 * NDEBUG: nothing in the tree defines it, so these checks are live in the
 * tests, CI and the packages alike: a lock not held or a count gone wrong
 * is our bug, and aborting (the journal replays; nothing acknowledged is
 * lost) is safer than carrying on with a wrong index (HACKING.md,
 * "Invariants").  NBDCACHE_BUG_NONFATAL=1 in the environment makes a BUG
 * log without aborting: for the unit tests that check the clamp after a
 * BUG they provoke, nothing else.
 * Not here: anything a client, a device or a remote can cause: those are
 * errors returned, never asserted (STYLE).
 */
#ifndef NBDCACHE_INVARIANT_H
#define NBDCACHE_INVARIANT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "log.h"

#ifdef NDEBUG
#define ASSERT_HELD(m) ((void) 0)
#define ASSERT_WRLOCKED(rw) ((void) 0)
#define INVARIANT_ABORT() ((void) 0)
#else
static inline void
assert_held_at (pthread_mutex_t *m, const char *func, const char *file,
                int line)
{
  if (pthread_mutex_trylock (m) == 0) {
    pthread_mutex_unlock (m);
    log_error ("BUG: %s (%s:%d) called without its lock held", func, file,
               line);
    abort ();
  }
}
#define ASSERT_HELD(m) assert_held_at ((m), __func__, __FILE__, __LINE__)

/* A BUG aborts, unless NBDCACHE_BUG_NONFATAL is set non-empty: only for
 * the unit tests that check what a release build does after the BUG (the
 * clamp).  ASSERT_HELD has no such escape.
 */
static inline void
invariant_abort (void)
{
  const char *e = getenv ("NBDCACHE_BUG_NONFATAL");

  if (e == NULL || *e == '\0')
    abort ();
}

static inline void
assert_wrlocked_at (pthread_rwlock_t *rw, const char *func, const char *file,
                    int line)
{
  if (pthread_rwlock_tryrdlock (rw) == 0) {
    pthread_rwlock_unlock (rw);
    log_error ("BUG: %s (%s:%d) called without its write lock held", func,
               file, line);
    abort ();
  }
}
#define ASSERT_WRLOCKED(rw) \
  assert_wrlocked_at ((rw), __func__, __FILE__, __LINE__)
#define INVARIANT_ABORT() invariant_abort ()
#endif

#define BUG_ONCE(cond, ...)                                             \
  __extension__ ({                                                      \
    static bool bug_once_logged_;                                       \
    bool bug_once_c_ = (cond);                                          \
    if (bug_once_c_ &&                                                  \
        !__atomic_exchange_n (&bug_once_logged_, true, __ATOMIC_RELAXED)) { \
      log_error ("BUG: " __VA_ARGS__);                                  \
      INVARIANT_ABORT ();                                               \
    }                                                                   \
    bug_once_c_;                                                        \
  })

#endif /* NBDCACHE_INVARIANT_H */
