/* SPDX-License-Identifier: BSD-3-Clause */
/* test-wbrate.c — unit tests for writeback's PI rate controller (wbrate.c).
 *
 * WHAT: the control law exactly (proportional term, integral accumulation,
 * clamps, the minimum at and below the target, defaults), anti-windup, the
 * decay of the integral below the target, and closed-loop convergence in a
 * simulated plant (dirty += incoming * dt - rate * dt) for several random
 * workloads.
 * HOW: pure arithmetic, no threads or clocks.
 * SEED: the plant runs are randomised; NBDCACHE_SEED overrides the seed,
 * which is always printed.
 */
#include <config.h>

#include <inttypes.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "testkit.h"

#include "wbrate.h"

static uint64_t seed;

static void
test_wbrate_defaults (void **state)
{
  struct wbrate r;

  wbrate_init (&r, 0, 0);
  assert_int_equal (r.min_rate, WBRATE_MIN_RATE);
  assert_int_equal (r.max_rate, WBRATE_MAX_RATE);
  assert_int_equal (r.rate, WBRATE_MIN_RATE);
  assert_true (r.integral == 0);

  wbrate_init (&r, 1000, 5000);
  assert_int_equal (r.min_rate, 1000);
  assert_int_equal (r.max_rate, 5000);
  assert_int_equal (r.rate, 1000);
}

/* At and below the target: the minimum, whatever the history. */
static void
test_wbrate_min_at_or_below_target (void **state)
{
  struct wbrate r;

  wbrate_init (&r, 0, 0);
  assert_int_equal (wbrate_update (&r, GIB, GIB, 1), WBRATE_MIN_RATE);
  assert_int_equal (wbrate_update (&r, 0, GIB, 1), WBRATE_MIN_RATE);
  assert_int_equal (wbrate_update (&r, 0, 0, 1), WBRATE_MIN_RATE);
  assert_true (r.integral == 0);  /* no negative integral */

  /* Built-up integral: still the minimum below the target. */
  for (int i = 0; i < 100; i++)
    wbrate_update (&r, 2 * GIB, GIB, 1);
  assert_true (r.integral > 0);
  assert_int_equal (wbrate_update (&r, GIB / 2, GIB, 1), WBRATE_MIN_RATE);
  assert_int_equal (r.rate, WBRATE_MIN_RATE);
}

/* The exact law: P = error / P_INVERSE, I += error * dt / I_INVERSE. */
static void
test_wbrate_exact_law (void **state)
{
  struct wbrate r;
  uint64_t error = 400 * MIB, rate;
  double i1, i2;

  wbrate_init (&r, 1, 0);
  rate = wbrate_update (&r, GIB + error, GIB, 2.0);
  i1 = (double) error * 2.0 / WBRATE_I_INVERSE;
  assert_true (fabs (r.integral - i1) < 1e-6);
  assert_int_equal (rate, (uint64_t) ((double) error / WBRATE_P_INVERSE + i1));
  assert_int_equal (r.rate, rate);

  rate = wbrate_update (&r, GIB + error, GIB, 0.5);
  i2 = i1 + (double) error * 0.5 / WBRATE_I_INVERSE;
  assert_true (fabs (r.integral - i2) < 1e-6);
  assert_int_equal (rate, (uint64_t) ((double) error / WBRATE_P_INVERSE + i2));

  /* Below the target the integral decays by the same law, toward 0. */
  wbrate_update (&r, GIB - 100 * MIB, GIB, 1.0);
  assert_true (fabs (r.integral
                     - (i2 - (double) (100 * MIB) / WBRATE_I_INVERSE)) < 1e-6);
  wbrate_update (&r, 0, GIB, 1000.0);
  assert_true (r.integral == 0);
}

/* Above the target, a fresh controller's rate rises with the error. */
static void
test_wbrate_rises_with_error (void **state)
{
  uint64_t prev = 0;

  for (uint64_t err = 64 * MIB; err <= 64 * GIB; err *= 2) {
    struct wbrate r;
    uint64_t rate;

    wbrate_init (&r, 0, 0);
    rate = wbrate_update (&r, GIB + err, GIB, 1);
    assert_true (rate > prev);
    assert_true (rate >= WBRATE_MIN_RATE);
    prev = rate;
  }
  /* Small errors clamp to the minimum, huge ones to the maximum. */
  {
    struct wbrate r;

    wbrate_init (&r, 0, 10 * MIB);
    assert_int_equal (wbrate_update (&r, GIB + 4096, GIB, 1), WBRATE_MIN_RATE);
    assert_int_equal (wbrate_update (&r, 1000 * GIB, GIB, 1), 10 * MIB);
  }
  /* With the error held, the integral makes the rate keep rising. */
  {
    struct wbrate r;
    uint64_t a, b;

    wbrate_init (&r, 0, 0);
    a = wbrate_update (&r, 2 * GIB, GIB, 1);
    for (int i = 0; i < 10; i++)
      b = wbrate_update (&r, 2 * GIB, GIB, 1);
    assert_true (b > a);
  }
}

/* Anti-windup: at the maximum clamp the integral does not grow, so the
 * rate falls as soon as the error does.
 */
static void
test_wbrate_no_windup (void **state)
{
  const uint64_t max = 8 * MIB;
  struct wbrate r;
  uint64_t err = 10 * GIB, rate;
  double held;

  wbrate_init (&r, 0, max);
  /* P alone (10 GIB / 40 = 256 MIB/s) is far above the maximum. */
  for (int i = 0; i < 1000; i++)
    assert_int_equal (wbrate_update (&r, GIB + err, GIB, 1), max);
  assert_true (r.integral >= 0 && r.integral <= (double) max);
  held = r.integral;
  for (int i = 0; i < 1000; i++)
    wbrate_update (&r, GIB + err, GIB, 1);
  assert_true (r.integral == held);

  /* The error drops to where P is a quarter of the maximum: the rate
   * leaves the clamp at once (a wound-up integral would hold it there
   * for a long time).
   */
  rate = wbrate_update (&r, GIB + max / 4 * WBRATE_P_INVERSE, GIB, 1);
  assert_true (rate < max);

  /* Not at the clamp: it does accumulate, but never past the clamp. */
  wbrate_init (&r, 0, max);
  for (int i = 0; i < 100000; i++)
    wbrate_update (&r, GIB + 64 * MIB, GIB, 10);
  assert_int_equal (r.rate, max);
  assert_true (r.integral + (double) (64 * MIB) / WBRATE_P_INVERSE
               <= (double) max + 1);
  rate = wbrate_update (&r, GIB, GIB, 1);
  assert_int_equal (rate, WBRATE_MIN_RATE);
}

/* Closed loop: a constant incoming write rate; the controller must bring
 * the dirty amount to the target and hold it there.
 */
static void
test_wbrate_converges (void **state)
{
  uint64_t x = seed;

  for (int run = 0; run < 8; run++) {
    uint64_t target = (256 + test_splitmix_next (&x) % 4096) * MIB;
    double incoming = (double) (1 + test_splitmix_next (&x) % 64) * MIB;
    double dirty = (double) (test_splitmix_next (&x) % (3 * target));
    const double dt = 1.0;
    struct wbrate r;
    double worst = 0, sum_rate = 0, tolerance;

    wbrate_init (&r, 0, 0);
    for (int t = 0; t < 6000; t++) {
      uint64_t rate = wbrate_update (&r, (uint64_t) dirty, target, dt);

      dirty += incoming * dt - (double) rate * dt;
      if (dirty < 0)
        dirty = 0;
      if (t >= 5000) {
        worst = fmax (worst, fabs (dirty - (double) target));
        sum_rate += (double) rate;
      }
    }
    /* Tolerance: 2% of the target, plus what one update period brings
     * in (at the target the output switches to the minimum for a period,
     * a small limit cycle of that amplitude).
     */
    tolerance = 0.02 * (double) target + 2 * incoming * dt;
    if (worst > tolerance)
      print_error ("run %d: target %" PRIu64 " incoming %.0f: off by %.0f\n",
                   run, target, incoming, worst);
    assert_true (worst <= tolerance);
    /* On average the rate matches what comes in.  (Right at the target
     * it may alternate between the minimum and a bit above the incoming
     * rate: at or below the target the output is the minimum.)
     */
    assert_true (fabs (sum_rate / 1000 - incoming) <= 0.05 * incoming);
  }
}

/* Bad dt (0, negative, NaN) changes nothing but the proportional output. */
static void
test_wbrate_bad_dt (void **state)
{
  struct wbrate r;

  wbrate_init (&r, 1, 0);
  wbrate_update (&r, 2 * GIB, GIB, 0);
  assert_true (r.integral == 0);
  wbrate_update (&r, 2 * GIB, GIB, -5);
  assert_true (r.integral == 0);
  wbrate_update (&r, 2 * GIB, GIB, NAN);
  assert_true (r.integral == 0);
  assert_int_equal (r.rate, GIB / WBRATE_P_INVERSE);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_wbrate_defaults),
    cmocka_unit_test (test_wbrate_min_at_or_below_target),
    cmocka_unit_test (test_wbrate_exact_law),
    cmocka_unit_test (test_wbrate_rises_with_error),
    cmocka_unit_test (test_wbrate_no_windup),
    cmocka_unit_test (test_wbrate_converges),
    cmocka_unit_test (test_wbrate_bad_dt),
  };

  seed = test_seed_from_env ("test-wbrate");
  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
