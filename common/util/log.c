/* SPDX-License-Identifier: BSD-3-Clause */
/* log.c — the process-wide logger (see log.h).
 *
 * WHAT: formats a message once and hands it to one destination: a sink
 * installed by the nbdkit plugin, syslog(3), or stderr as
 * "program: level: message\n".
 * WHY: modules log once where the context is and must not care where the
 * line ends up; the destination is chosen once by main() or the plugin.
 *
 * INVARIANTS:
 * - A stderr line is written with a single write(2) call (looping only on
 *   EINTR or a short write), so lines from threads never interleave.
 * - One trailing newline in the caller's message is dropped; the newline
 *   on stderr is ours.
 * - errno is the same after log_msg() as before it, and the message is
 *   formatted with the caller's errno, so "%m" works.
 * - Messages above the current level are dropped before formatting.
 *
 * - Rate limits (log.h): a call site's struct log_ratelimit changes only
 *   under ratelimit_lock; a line is logged when none was yet or the last
 *   was at least the interval ago, else the repeat is counted.
 *
 * THREADS AND LOCKS: the level is read with atomic loads, so log_enabled()
 * on the hot path takes no lock.  config_lock guards the program name,
 * target and sink; log_msg() copies them under the lock, then formats and
 * writes outside it, so a sink may itself take locks (or even log).
 * ratelimit_lock guards every struct log_ratelimit; it is a leaf (held
 * only for the decision, never while formatting or writing).
 *
 * FAILURE: never visible.  A message too long for the stack buffer is
 * formatted into a heap buffer; if that allocation fails it is truncated.
 * A failed write(2) loses the message.
 *
 * NOT HERE: log rotation, timestamps (stderr is usually captured by
 * something that adds them; syslog adds its own), per-module levels.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <unistd.h>
#include <pthread.h>

#include "clock.h"
#include "log.h"

#define PROGRAM_NAME_MAX 64     /* bytes, including the terminating NUL */
#define STACK_MSG_BYTES  1024   /* most messages fit; longer ones use malloc */

static pthread_mutex_t config_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t ratelimit_lock = PTHREAD_MUTEX_INITIALIZER;
static char program_name[PROGRAM_NAME_MAX] = "nbdcache";
static enum log_target target = LOG_TARGET_STDERR;
static log_sink_fn sink;
static bool syslog_open;

/* Read and written with __atomic builtins only. */
static int max_level = LOG_LEVEL_INFO;
static bool ratelimit_on = true;

static const char *const level_names[] = {
  [LOG_LEVEL_ERROR] = "error",
  [LOG_LEVEL_WARNING] = "warning",
  [LOG_LEVEL_INFO] = "info",
  [LOG_LEVEL_DEBUG] = "debug",
};

static enum log_level
clamp_level (enum log_level level)
{
  if ((int) level < LOG_LEVEL_ERROR)
    return LOG_LEVEL_ERROR;
  if ((int) level > LOG_LEVEL_DEBUG)
    return LOG_LEVEL_DEBUG;
  return level;
}

void
log_init (const char *program, enum log_target new_target,
          enum log_level new_max_level)
{
  const char *base;

  if (program == NULL || *program == '\0')
    program = "nbdcache";
  base = strrchr (program, '/');
  if (base != NULL && base[1] != '\0')
    program = base + 1;

  pthread_mutex_lock (&config_lock);
  snprintf (program_name, sizeof program_name, "%s", program);
  if (new_target == LOG_TARGET_SYSLOG) {
    /* openlog keeps the pointer: program_name is static and only
     * rewritten here, under the lock.
     */
    if (syslog_open)
      closelog ();
    openlog (program_name, LOG_PID | LOG_NDELAY, LOG_DAEMON);
    syslog_open = true;
    target = LOG_TARGET_SYSLOG;
  }
  else {
    if (syslog_open) {
      closelog ();
      syslog_open = false;
    }
    target = LOG_TARGET_STDERR;
  }
  pthread_mutex_unlock (&config_lock);

  log_set_level (new_max_level);
}

void
log_set_level (enum log_level new_max_level)
{
  __atomic_store_n (&max_level, (int) clamp_level (new_max_level),
                    __ATOMIC_RELAXED);
}

void
log_set_sink (log_sink_fn new_sink)
{
  pthread_mutex_lock (&config_lock);
  sink = new_sink;
  pthread_mutex_unlock (&config_lock);
}

bool
log_enabled (enum log_level level)
{
  return (int) level <= __atomic_load_n (&max_level, __ATOMIC_RELAXED);
}

int
log_level_from_string (const char *s, enum log_level *out)
{
  size_t i;

  if (s == NULL)
    return -EINVAL;
  for (i = 0; i < ARRAY_SIZE (level_names); ++i) {
    if (strcasecmp (s, level_names[i]) == 0) {
      *out = (enum log_level) i;
      return 0;
    }
  }
  return -EINVAL;
}

static int
syslog_priority (enum log_level level)
{
  switch (level) {
  case LOG_LEVEL_ERROR: return LOG_ERR;
  case LOG_LEVEL_WARNING: return LOG_WARNING;
  case LOG_LEVEL_INFO: return LOG_INFO;
  case LOG_LEVEL_DEBUG: return LOG_DEBUG;
  }
  return LOG_ERR;
}

/* Write all of buf, retrying on EINTR and short writes. */
static void
write_all (int fd, const char *buf, size_t len)
{
  while (len > 0) {
    ssize_t r = write (fd, buf, len);

    if (r < 0) {
      if (errno == EINTR)
        continue;
      return;
    }
    if (r == 0)
      return;
    buf += r;
    len -= (size_t) r;
  }
}

/* Format "prefix" + fmt into stack_buf if it fits, else into a heap buffer
 * returned through *heap (caller frees).  Returns the formatted string and
 * its length (without the NUL) in *len_out.
 */
static char *format_message (char *stack_buf, size_t stack_bytes,
                             char **heap, size_t prefix_len, int saved_errno,
                             const char *fmt, va_list ap, size_t *len_out)
  ATTRIBUTE_FORMAT_PRINTF (6, 0);

static char *
format_message (char *stack_buf, size_t stack_bytes, char **heap,
                size_t prefix_len, int saved_errno,
                const char *fmt, va_list ap, size_t *len_out)
{
  va_list ap2;
  int n;
  char *p;

  *heap = NULL;
  va_copy (ap2, ap);
  errno = saved_errno;
  n = vsnprintf (stack_buf + prefix_len, stack_bytes - prefix_len, fmt, ap);
  if (n < 0) {
    va_end (ap2);
    stack_buf[prefix_len] = '\0';
    *len_out = prefix_len;
    return stack_buf;
  }
  if ((size_t) n < stack_bytes - prefix_len) {
    va_end (ap2);
    *len_out = prefix_len + (size_t) n;
    return stack_buf;
  }

  /* Too long for the stack: +2 leaves room for our newline and the NUL. */
  p = malloc (prefix_len + (size_t) n + 2);
  if (p == NULL) {
    va_end (ap2);
    *len_out = stack_bytes - 1;
    return stack_buf;               /* truncated, still terminated */
  }
  memcpy (p, stack_buf, prefix_len);
  errno = saved_errno;
  vsnprintf (p + prefix_len, (size_t) n + 1, fmt, ap2);
  va_end (ap2);
  *heap = p;
  *len_out = prefix_len + (size_t) n;
  return p;
}

/* ---- capture (see log.h) ---- */

struct log_capture {
  enum log_level max_level;
  char *text;                   /* NULL until the first line; NUL-ended */
  size_t len;                   /* bytes in text */
  bool failed;                  /* a line was lost (ENOMEM) */
};

static __thread struct log_capture *capture;

static void
capture_append (enum log_level level, const char *msg, size_t len)
{
  const char *lvl = level == LOG_LEVEL_ERROR ? "error: "
    : level == LOG_LEVEL_WARNING ? "warning: " : "";
  size_t lvl_len = strlen (lvl);
  char *t = realloc (capture->text, capture->len + lvl_len + len + 2);

  if (t == NULL) {
    capture->failed = true;
    return;
  }
  memcpy (t + capture->len, lvl, lvl_len);
  memcpy (t + capture->len + lvl_len, msg, len);
  capture->len += lvl_len + len;
  t[capture->len++] = '\n';
  t[capture->len] = '\0';
  capture->text = t;
}

int
log_capture_begin (enum log_level max_level)
{
  if (capture != NULL)
    return -EBUSY;
  capture = calloc (1, sizeof *capture);
  if (capture == NULL)
    return -ENOMEM;
  capture->max_level = max_level;
  return 0;
}

char *
log_capture_end (void)
{
  struct log_capture *cap = capture;
  char *text;

  if (cap == NULL)
    return NULL;
  capture = NULL;
  text = cap->text ? cap->text : strdup ("");
  if (text != NULL && cap->failed) {
    char *t;
    if (asprintf (&t, "%s(some messages were lost: out of memory)\n",
                  text) != -1) {
      free (text);
      text = t;
    }
  }
  free (cap);
  return text;
}

void
log_vmsg (enum log_level level, const char *fmt, va_list ap)
{
  int saved_errno = errno;
  char buf[STACK_MSG_BYTES + 2];  /* +2: our newline and the NUL */
  char name[PROGRAM_NAME_MAX];
  enum log_target cur_target;
  log_sink_fn cur_sink;
  char *heap, *msg;
  size_t prefix_len, len;

  bool to_log = log_enabled (level);
  bool to_capture = capture != NULL && level <= capture->max_level;

  if (!to_log && !to_capture)
    return;
  level = clamp_level (level);

  pthread_mutex_lock (&config_lock);
  memcpy (name, program_name, sizeof name);
  cur_target = target;
  cur_sink = sink;
  pthread_mutex_unlock (&config_lock);

  /* Only stderr carries the "program: level: " prefix in the text. */
  if (cur_sink == NULL && cur_target == LOG_TARGET_STDERR)
    prefix_len = (size_t) snprintf (buf, STACK_MSG_BYTES, "%s: %s: ",
                                    name, level_names[level]);
  else
    prefix_len = 0;

  msg = format_message (buf, STACK_MSG_BYTES, &heap, prefix_len,
                        saved_errno, fmt, ap, &len);
  if (len > prefix_len && msg[len - 1] == '\n')
    msg[--len] = '\0';

  if (to_capture)
    capture_append (level, msg + prefix_len, len - prefix_len);
  if (!to_log)
    ;
  else if (cur_sink != NULL)
    cur_sink (level, msg);
  else if (cur_target == LOG_TARGET_SYSLOG)
    syslog (syslog_priority (level), "%s", msg);
  else {
    msg[len] = '\n';
    write_all (STDERR_FILENO, msg, len + 1);
  }

  free (heap);
  errno = saved_errno;
}

void
log_msg (enum log_level level, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  log_vmsg (level, fmt, ap);
  va_end (ap);
}

/* ---- rate limits ---- */

void
log_set_ratelimit (bool on)
{
  __atomic_store_n (&ratelimit_on, on, __ATOMIC_RELAXED);
}

bool
log_ratelimit_check (struct log_ratelimit *rl, uint64_t now_ms,
                     uint64_t *suppressed)
{
  uint64_t interval;
  bool say;

  pthread_mutex_lock (&ratelimit_lock);
  interval = rl->interval_ms != 0 ? rl->interval_ms
    : LOG_RATELIMIT_INTERVAL_MS;
  say = rl->last_ms == 0 || now_ms < rl->last_ms ||
    now_ms - rl->last_ms >= interval;
  if (say) {
    *suppressed = rl->suppressed;
    rl->suppressed = 0;
    rl->last_ms = now_ms != 0 ? now_ms : 1;
  }
  else
    rl->suppressed++;
  pthread_mutex_unlock (&ratelimit_lock);
  return say;
}

void
log_ratelimited_msg (struct log_ratelimit *rl, enum log_level level,
                     const char *fmt, ...)
{
  int saved_errno = errno;
  uint64_t suppressed;
  char *msg;
  va_list ap;
  int n;

  if (!__atomic_load_n (&ratelimit_on, __ATOMIC_RELAXED))
    suppressed = 0;
  else if (!log_ratelimit_check (rl, clock_now_ms (), &suppressed))
    return;
  if (!log_enabled (level))
    return;
  va_start (ap, fmt);
  if (suppressed == 0) {
    log_vmsg (level, fmt, ap);
    va_end (ap);
    errno = saved_errno;
    return;
  }
  errno = saved_errno;          /* for %m */
  n = vasprintf (&msg, fmt, ap);
  va_end (ap);
  if (n < 0)
    log_msg (level, "(%" PRIu64 " similar messages suppressed; another "
             "could not be formatted)", suppressed);
  else {
    if (n > 0 && msg[n - 1] == '\n')
      msg[n - 1] = '\0';
    log_msg (level, "%s (%" PRIu64 " similar messages suppressed)", msg,
             suppressed);
    free (msg);
  }
  errno = saved_errno;
}
