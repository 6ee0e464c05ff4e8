/* SPDX-License-Identifier: BSD-3-Clause */
/* test-invariant.c — unit tests for invariant.h.
 *
 * WHAT: ASSERT_HELD passes with the mutex held and aborts without it;
 * ASSERT_WRLOCKED the same for a write-held rwlock (and aborts when it is
 * only read-held); BUG_ONCE is its condition when false, and aborts when
 * true (this is a debug/test build: NDEBUG is not defined) unless
 * NBDCACHE_BUG_NONFATAL is set.  The aborting cases run in a
 * child process, which must die of SIGABRT.
 * THREADS AND LOCKS: one thread per process.
 * FAILURE: assertion failures are reported by cmocka.
 */
#include <config.h>

#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "invariant.h"
#include "log.h"

#ifdef NDEBUG
#error "test-invariant checks the debug build's behaviour"
#endif

static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;

static void
quiet (enum log_level level, const char *msg)
{
  (void) level;
  (void) msg;
}

/* Run fn in a child; true if it died of SIGABRT. */
static bool
aborts (void (*fn) (void))
{
  pid_t pid = fork ();
  int status;

  assert_true (pid >= 0);
  if (pid == 0) {
    log_set_sink (quiet);
    fn ();
    _exit (0);
  }
  assert_int_equal (waitpid (pid, &status, 0), pid);
  return WIFSIGNALED (status) && WTERMSIG (status) == SIGABRT;
}

static void
call_unlocked (void)
{
  ASSERT_HELD (&m);
}

static void
call_unwrlocked (void)
{
  ASSERT_WRLOCKED (&rw);
}

static void
call_rdlocked (void)
{
  pthread_rwlock_rdlock (&rw);
  ASSERT_WRLOCKED (&rw);        /* shared is not enough */
}

static void
bug_true (void)
{
  (void) BUG_ONCE (1 + 1 == 2, "planted %d", 1);
}

/* The release build's path: logged, cond returned, no abort. */
static void
bug_true_nonfatal (void)
{
  setenv ("NBDCACHE_BUG_NONFATAL", "1", 1);
  if (!BUG_ONCE (1 + 1 == 2, "planted %d", 2))
    abort ();
}

static void
test_invariant_assert_held (void **state)
{
  (void) state;
  pthread_mutex_lock (&m);
  ASSERT_HELD (&m);             /* held: returns, and leaves it held */
  assert_int_not_equal (pthread_mutex_trylock (&m), 0);
  pthread_mutex_unlock (&m);
  assert_true (aborts (call_unlocked));
}

static void
test_invariant_assert_wrlocked (void **state)
{
  (void) state;
  pthread_rwlock_wrlock (&rw);
  ASSERT_WRLOCKED (&rw);        /* held: returns, and leaves it held */
  assert_int_not_equal (pthread_rwlock_tryrdlock (&rw), 0);
  pthread_rwlock_unlock (&rw);
  assert_true (aborts (call_unwrlocked));
  assert_true (aborts (call_rdlocked));
}

static void
test_invariant_bug_once (void **state)
{
  (void) state;
  assert_false (BUG_ONCE (false, "never"));
  assert_true (aborts (bug_true));
  assert_false (aborts (bug_true_nonfatal));
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_invariant_assert_held),
    cmocka_unit_test (test_invariant_assert_wrlocked),
    cmocka_unit_test (test_invariant_bug_once),
  };

  return cmocka_run_group_tests (tests, NULL, NULL);
}
