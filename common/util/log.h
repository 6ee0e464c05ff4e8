/* SPDX-License-Identifier: BSD-3-Clause */
/* log.h — the process-wide logger.
 *
 * WHAT: levelled messages to stderr (default) or syslog.
 * WHY: every module logs once where the context is; the destination and the
 * verbosity are chosen once by main() (nbdcached) or by the plugin (which
 * routes to nbdkit's own logging through log_set_sink).
 * RATE LIMITS: an error that repeats per I/O (a full or failing device)
 * is logged through log_*_ratelimited: per call site, the first
 * occurrence is logged; repeats within LOG_RATELIMIT_INTERVAL_MS of the
 * last logged line are only counted, and the next line logged after the
 * interval ends in "(N similar messages suppressed)".  Repeats that never
 * recur after the interval are not reported (the first line said it).
 * THREADS: all functions are thread-safe; a message is written with one
 * write(2)/syslog(3) call so lines from threads never interleave.
 * FAILURE: logging never fails visibly; a lost message is lost.
 */
#ifndef NBDCACHE_LOG_H
#define NBDCACHE_LOG_H

#include <stdbool.h>
#include <stdarg.h>
#include <stdint.h>

#include "compiler.h"

enum log_level {
  LOG_LEVEL_ERROR = 0,
  LOG_LEVEL_WARNING,
  LOG_LEVEL_INFO,
  LOG_LEVEL_DEBUG,
};

enum log_target {
  LOG_TARGET_STDERR = 0,
  LOG_TARGET_SYSLOG,
  LOG_TARGET_AUTO,              /* a program's choice (nbdcached: stderr
                                   in the foreground, syslog as a daemon
                                   or under systemd); log_init treats it
                                   as stderr */
};

/* A sink replaces the built-in targets (used by the nbdkit plugin). */
typedef void (*log_sink_fn) (enum log_level level, const char *msg);

void log_init (const char *program, enum log_target target,
               enum log_level max_level);
void log_set_level (enum log_level max_level);
void log_set_sink (log_sink_fn sink);
bool log_enabled (enum log_level level);

/* Parse "error|warning|info|debug"; returns 0 or -EINVAL. */
int log_level_from_string (const char *s, enum log_level *out);

void log_msg (enum log_level level, const char *fmt, ...)
  ATTRIBUTE_FORMAT_PRINTF (2, 3);
void log_vmsg (enum log_level level, const char *fmt, va_list ap)
  ATTRIBUTE_FORMAT_PRINTF (2, 0);

/* Capture: every message this thread logs from log_capture_begin to
 * log_capture_end at max_level or more severe is also collected (even
 * when the log level filters it out), one line each, errors and warnings
 * prefixed "error: " / "warning: ".  For a command that must answer its
 * caller with what it logged (nbdcached's reload over the control
 * socket).  Not nested: 0, -EBUSY if this thread captures already, or
 * -ENOMEM.  log_capture_end returns the text (malloc'd, "" when nothing
 * was logged; NULL on ENOMEM or without a capture) and stops capturing.
 */
int log_capture_begin (enum log_level max_level);
char *log_capture_end (void);

/* One call site's rate limit: static, zero-initialised (LOG_RATELIMIT_INIT).
 * Guarded by a lock inside log.c.
 */
struct log_ratelimit {
  uint64_t last_ms;             /* clock_now_ms of the last logged line;
                                   0: none yet */
  uint64_t suppressed;          /* repeats counted since then */
  uint32_t interval_ms;         /* 0: LOG_RATELIMIT_INTERVAL_MS */
};
#define LOG_RATELIMIT_INIT { 0, 0, 0 }
#define LOG_RATELIMIT_INTERVAL_MS 10000

/* Should a message at now_ms be logged?  true: yes, and *suppressed is
 * how many were counted instead since the last logged one (then reset);
 * false: it is counted.  Thread-safe.
 */
bool log_ratelimit_check (struct log_ratelimit *rl, uint64_t now_ms,
                          uint64_t *suppressed);
/* Rate limiting on (the default) or off: off, every rate-limited message
 * is logged (for tests that expect one line per failure).
 */
void log_set_ratelimit (bool on);
/* log_msg through rl: "(N similar messages suppressed)" is appended to a
 * line logged after repeats were counted.  errno is preserved.
 */
void log_ratelimited_msg (struct log_ratelimit *rl, enum log_level level,
                          const char *fmt, ...)
  ATTRIBUTE_FORMAT_PRINTF (3, 4);

#define LOG_RATELIMITED(level, ...)                             \
  do {                                                          \
    static struct log_ratelimit log_rl_ = LOG_RATELIMIT_INIT;   \
    log_ratelimited_msg (&log_rl_, (level), __VA_ARGS__);       \
  } while (0)
#define log_error_ratelimited(...)                      \
  LOG_RATELIMITED (LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warning_ratelimited(...)                    \
  LOG_RATELIMITED (LOG_LEVEL_WARNING, __VA_ARGS__)

#define log_error(...)   log_msg (LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warning(...) log_msg (LOG_LEVEL_WARNING, __VA_ARGS__)
#define log_info(...)    log_msg (LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...)                                  \
  do {                                                  \
    if (unlikely (log_enabled (LOG_LEVEL_DEBUG)))       \
      log_msg (LOG_LEVEL_DEBUG, __VA_ARGS__);           \
  } while (0)

#endif /* NBDCACHE_LOG_H */
