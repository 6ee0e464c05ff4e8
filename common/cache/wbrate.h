/* SPDX-License-Identifier: BSD-3-Clause */
/* wbrate.h — the writeback rate controller (a PI controller).
 *
 * WHAT: given how much dirty data an export has and its target, the rate
 * (bytes per second) at which writeback should write to the backing
 * store, like bcache's writeback_rate: proportional to the error
 * (dirty - target) plus an integral of it, clamped to [min, max].
 * - proportional = error / WBRATE_P_INVERSE per second
 *   (the whole excess in P_INVERSE seconds);
 * - the integral accumulates error * dt / WBRATE_I_INVERSE, but only while
 *   that moves the rate toward the target (anti-windup: no accumulation
 *   while the output sits at a clamp and the error pushes further out);
 *   below the target the integral decays toward 0;
 * - below the target the rate is the minimum (writeback trickles);
 * - "full speed when idle" is the caller's decision (writeback.c), not the
 *   controller's.
 * WHY separate: pure arithmetic, tested exactly (test-wbrate.c) without
 * threads or clocks.
 * THREADS: none; the caller serialises (one controller per export).
 * FAILURE: none.
 */
#ifndef NBDCACHE_WBRATE_H
#define NBDCACHE_WBRATE_H

#include <stdint.h>

#define WBRATE_P_INVERSE 40     /* seconds to write back the excess */
#define WBRATE_I_INVERSE 10000
#define WBRATE_MIN_RATE (UINT64_C (64) << 10)     /* 64 KiB/s */
#define WBRATE_MAX_RATE (UINT64_C (1) << 40)      /* effectively unlimited */

struct wbrate {
  double integral;              /* bytes/s contributed by the I term */
  uint64_t rate;                /* the last output, bytes/s */
  uint64_t min_rate, max_rate;
};

/* min_rate / max_rate 0 = the defaults above. */
void wbrate_init (struct wbrate *r, uint64_t min_rate, uint64_t max_rate);
/* A new measurement: dirty and target bytes, dt seconds since the last
 * update (> 0).  Returns (and stores in r->rate) the new rate.
 */
uint64_t wbrate_update (struct wbrate *r, uint64_t dirty_bytes,
                        uint64_t target_bytes, double dt_seconds);

#endif /* NBDCACHE_WBRATE_H */
