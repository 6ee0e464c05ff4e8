/* SPDX-License-Identifier: BSD-3-Clause */
/* progress.h — a one-line progress indicator on standard error.
 *
 * WHAT: a bar with a percentage when the total is known, otherwise a
 * spinner, followed by a short detail text ("1234 nodes, 56789 keys"),
 * redrawn in place with a carriage return at most every 100 ms.
 * WHY: nbdcache check and show walk an index that may hold 100 M extents;
 * an admin watching a terminal should see that it moves.
 * INVARIANTS: nothing is ever written unless standard error is a terminal
 * (decided at progress_start), so scripts and logs never see it.  Before
 * any other output to stderr, call progress_clear so the line is erased.
 * THREADS: one thread; the state is the caller's struct.
 * NOT HERE: what is being counted.
 */
#ifndef NBDCACHE_ADMIN_PROGRESS_H
#define NBDCACHE_ADMIN_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

#include "compiler.h"

struct progress {
  bool enabled;                 /* stderr is a terminal */
  bool drawn;                   /* a line is on screen now */
  const char *label;            /* "checking the index" */
  uint64_t total;               /* 0 = unknown: spinner */
  uint64_t done;                /* in units of total */
  unsigned ticks;               /* calls since the last clock read */
  unsigned spin;                /* spinner phase */
  uint64_t last_draw_ns;        /* CLOCK_MONOTONIC */
  char detail[96];
};

/* Start a line; total 0 = unknown.  Draws nothing yet. */
void progress_start (struct progress *p, const char *label, uint64_t total);

/* Cheap: true when it is time to redraw (checks the clock once every few
 * hundred calls).  Then call progress_draw.
 */
bool progress_due (struct progress *p);

/* Set the position and detail text and redraw now. */
void progress_draw (struct progress *p, uint64_t done, const char *fmt, ...)
  ATTRIBUTE_FORMAT_PRINTF (3, 4);

/* Erase the line (it is redrawn by the next progress_draw). */
void progress_clear (struct progress *p);

/* Erase the line and stop. */
void progress_end (struct progress *p);

#endif /* NBDCACHE_ADMIN_PROGRESS_H */
