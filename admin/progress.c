/* SPDX-License-Identifier: BSD-3-Clause */
/* progress.c — a one-line progress indicator on standard error.
 *
 * WHAT: see progress.h.  The line is "\r" + label + bar or spinner +
 * detail + "erase to end of line", written with one write(2) so it never
 * interleaves with a log line (which the tool's log sink precedes with
 * progress_clear).
 * WHY: feedback on long walks without polluting pipes: nothing is drawn
 * unless stderr is a terminal.
 * INVARIANTS: drawn is true exactly while a line is on the screen; a
 * redraw happens at most every PROGRESS_INTERVAL_NS.
 * THREADS AND LOCKS: single-threaded (the caller's struct).
 * FAILURE: a failed write loses a frame; nothing else can fail.
 * NOT HERE: what is counted, and the log sink (cli.c).
 */
#include <config.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "progress.h"

#define PROGRESS_INTERVAL_NS UINT64_C (100000000)  /* 100 ms */
#define PROGRESS_TICKS 256u                        /* calls per clock read */
#define PROGRESS_BAR_WIDTH 30


static void
put (const char *s, size_t len)
{
  while (len > 0) {
    ssize_t n = write (STDERR_FILENO, s, len);

    if (n <= 0)
      return;
    s += n;
    len -= (size_t) n;
  }
}

void
progress_start (struct progress *p, const char *label, uint64_t total)
{
  memset (p, 0, sizeof *p);
  p->enabled = isatty (STDERR_FILENO) == 1;
  p->label = label;
  p->total = total;
}

bool
progress_due (struct progress *p)
{
  uint64_t t;

  if (!p->enabled || ++p->ticks < PROGRESS_TICKS)
    return false;
  p->ticks = 0;
  t = clock_now_ns ();
  return t - p->last_draw_ns >= PROGRESS_INTERVAL_NS;
}

static void
redraw (struct progress *p)
{
  static const char spinner[] = "|/-\\";
  char line[256];
  int n;

  if (p->total > 0) {
    uint64_t done = p->done < p->total ? p->done : p->total;
    unsigned fill = (unsigned) (done * PROGRESS_BAR_WIDTH / p->total);
    unsigned pct = (unsigned) (done * 100 / p->total);
    char bar[PROGRESS_BAR_WIDTH + 1];

    memset (bar, '#', fill);
    memset (bar + fill, '.', PROGRESS_BAR_WIDTH - fill);
    bar[PROGRESS_BAR_WIDTH] = '\0';
    n = snprintf (line, sizeof line, "\r%s [%s] %3u%% %s\033[K", p->label,
                  bar, pct, p->detail);
  }
  else
    n = snprintf (line, sizeof line, "\r%s %c %s\033[K", p->label,
                  spinner[p->spin++ % 4], p->detail);
  if (n < 0)
    return;
  if ((size_t) n >= sizeof line)
    n = sizeof line - 1;
  put (line, (size_t) n);
  p->drawn = true;
  p->last_draw_ns = clock_now_ns ();
}

void
progress_draw (struct progress *p, uint64_t done, const char *fmt, ...)
{
  va_list ap;

  if (!p->enabled)
    return;
  p->done = done;
  va_start (ap, fmt);
  vsnprintf (p->detail, sizeof p->detail, fmt, ap);
  va_end (ap);
  redraw (p);
}

void
progress_clear (struct progress *p)
{
  static const char erase[] = "\r\033[K";

  if (p == NULL || !p->drawn)
    return;
  put (erase, sizeof erase - 1);
  p->drawn = false;
}

void
progress_end (struct progress *p)
{
  progress_clear (p);
  p->enabled = false;
}
