/* SPDX-License-Identifier: BSD-3-Clause */
/* wbrate.c — writeback's rate controller (a PI controller, bcache's
 * __update_writeback_rate).
 *
 * WHAT: turns (dirty bytes, target bytes, seconds since the last update)
 * into a writeback rate in bytes per second.  See wbrate.h for the law.
 * WHY: writeback should trickle while the export is near its target and
 * push harder the further above it the export gets, without oscillating
 * (the integral removes the steady-state error a pure P term leaves when
 * data keeps arriving).
 * INVARIANTS:
 * - min_rate <= rate <= max_rate after every update;
 * - 0 <= integral <= max_rate: it never goes negative (below the target
 *   the rate is the minimum anyway, so a negative integral could only
 *   delay the response to the next burst) and never grows while the
 *   output sits at the maximum (anti-windup).
 * THREADS AND LOCKS: none; the caller serialises.
 * FAILURE: none.
 * NOT HERE: "full speed when idle / draining / above the dirty limit"
 * (writeback.c decides that and ignores the rate).
 */
#include <config.h>

#include <stdint.h>

#include "wbrate.h"

void
wbrate_init (struct wbrate *r, uint64_t min_rate, uint64_t max_rate)
{
  r->min_rate = min_rate ? min_rate : WBRATE_MIN_RATE;
  r->max_rate = max_rate ? max_rate : WBRATE_MAX_RATE;
  if (r->max_rate < r->min_rate)
    r->max_rate = r->min_rate;
  r->integral = 0;
  r->rate = r->min_rate;
}

uint64_t
wbrate_update (struct wbrate *r, uint64_t dirty_bytes, uint64_t target_bytes,
               double dt_seconds)
{
  double error = (double) dirty_bytes - (double) target_bytes;
  double max = (double) r->max_rate;
  double proportional, room, out;

  if (!(dt_seconds > 0))        /* also catches NaN */
    dt_seconds = 0;

  if (error <= 0) {
    /* At or below the target: trickle, and let the integral decay so a
     * later burst does not meet a stale push.
     */
    r->integral += error * dt_seconds / WBRATE_I_INVERSE;
    if (r->integral < 0)
      r->integral = 0;
    r->rate = r->min_rate;
    return r->rate;
  }

  proportional = error / WBRATE_P_INVERSE;
  /* Anti-windup: the integral grows only while the output is below the
   * maximum, and never past the point where the output clamps, so it
   * never holds the rate at the maximum once the error falls.  (At the
   * minimum clamp a positive error pushes the output toward the range,
   * so it accumulates.)
   */
  room = max - proportional;
  if (r->integral < room) {
    r->integral += error * dt_seconds / WBRATE_I_INVERSE;
    if (r->integral > room)
      r->integral = room;
  }

  out = proportional + r->integral;
  if (out >= max)
    r->rate = r->max_rate;
  else if (out <= (double) r->min_rate)
    r->rate = r->min_rate;
  else
    r->rate = (uint64_t) out;
  return r->rate;
}
