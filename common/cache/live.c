/* SPDX-License-Identifier: BSD-3-Clause */
/* live.c — an export's settings changed while it serves: set, detach,
 * attach, and the request gate they wait on.
 *
 * WHAT: ncache_export_set / _detach / _attach / _get_params (cache.h,
 * "live settings"), and the gate every request of an export with a cache
 * device passes (live_begin / live_end): the request reads the mode once,
 * inside the gate, and runs its whole path under it (request.c's mode
 * table decides the path once per request).
 * WHY: switching modes (bcache's sysfs cache_mode), tuning the cutoff or
 * the writeback target, and detaching a cache for maintenance must not
 * need a restart that drops every client; a config reload uses the same
 * door.
 * INVARIANTS:
 * - The cached modes switch among themselves with one atomic store: each
 *   mode's path is correct on its own against whatever the others left
 *   (dirty keys are written back in every mode, rule 1 forgets before any
 *   backing change in every mode), so requests of two modes may overlap.
 * - Detach never reaches mode none while the export has a dirty key, nor
 *   before every key of the export is dropped durably: a request in mode
 *   none changes the backing store under no key, so no crash can revive
 *   a stale one.  Its steps: writearound without promotion (gate
 *   waited: no request of the old mode runs, no new dirty data, no new
 *   clean key), write back everything (ncache_drain), drop the keys,
 *   record none in the export table, mode none.  A failure before the
 *   last step restores the old mode; the dirty data is still in the cache.
 * - Attach goes through writearound without promotion and waits for the
 *   gate: a request of mode none (which holds no range lock) has ended
 *   before any read may promote (request.c rule 3).
 * - The gate: a request counts itself in inflight[gen & 1] and re-reads
 *   gen (retrying if it moved), then reads the mode.  A change stores the
 *   mode, bumps gen and waits for the old slot to empty; every request
 *   that may have read the old mode is counted there.  All seq_cst.
 * THREADS AND LOCKS: live.lock serialises changes (held across a drain and
 * a gate wait: changes are rare; requests never take it).  gate_lock only
 * pairs with gate_cond.  dev->lock inside device_set_export_mode.
 * FAILURE: 0 or -errno with a message for the admin in msg (and the log).
 * NOT HERE: what each mode does (request.c); the control socket and the
 * CLI (server/, admin/); the config (common/config).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "bucket.h"
#include "cache-internal.h"
#include "cache.h"
#include "compiler.h"
#include "invariant.h"
#include "log.h"
#include "parse.h"
#include "seqcut.h"
#include "writeback.h"

#define SC __ATOMIC_SEQ_CST

void
live_init (struct ncache_export *nc)
{
  pthread_mutex_init (&nc->live.lock, NULL);
  pthread_mutex_init (&nc->live.gate_lock, NULL);
  pthread_cond_init (&nc->live.gate_cond, NULL);
  nc->live.attach_mode = nc->mode;
}

void
live_destroy (struct ncache_export *nc)
{
  pthread_cond_destroy (&nc->live.gate_cond);
  pthread_mutex_destroy (&nc->live.gate_lock);
  pthread_mutex_destroy (&nc->live.lock);
}

enum ncache_mode
live_mode (struct ncache_export *nc)
{
  return __atomic_load_n (&nc->mode, SC);
}

bool
live_detaching (struct ncache_export *nc)
{
  return __atomic_load_n (&nc->live.detaching, SC);
}

static void
slot_leave (struct ncache_export *nc, unsigned slot)
{
  if (__atomic_sub_fetch (&nc->live.inflight[slot], 1, SC) == 0 &&
      __atomic_load_n (&nc->live.waiting, SC) > 0) {
    pthread_mutex_lock (&nc->live.gate_lock);
    pthread_cond_broadcast (&nc->live.gate_cond);
    pthread_mutex_unlock (&nc->live.gate_lock);
  }
}

enum ncache_mode
live_begin (struct ncache_export *nc, struct live_ticket *t)
{
  unsigned g;

  t->counted = nc->dev != NULL;
  if (!t->counted)
    return NCACHE_MODE_NONE;    /* no device: never changes */
  for (;;) {
    g = __atomic_load_n (&nc->live.gen, SC);
    t->slot = g & 1;
    __atomic_add_fetch (&nc->live.inflight[t->slot], 1, SC);
    if (likely (__atomic_load_n (&nc->live.gen, SC) == g))
      break;
    slot_leave (nc, t->slot);   /* a change began: count in the new slot */
  }
  return __atomic_load_n (&nc->mode, SC);
}

void
live_end (struct ncache_export *nc, const struct live_ticket *t)
{
  if (t->counted)
    slot_leave (nc, t->slot);
}

/* New requests run under mode (with detaching as given); returns when
 * no request that started before is still running.  Caller holds
 * live.lock.
 */
static void
gate_switch_locked (struct ncache_export *nc, enum ncache_mode mode,
                    bool detaching)
{
  ASSERT_HELD (&nc->live.lock);
  unsigned old;

  __atomic_store_n (&nc->live.detaching, detaching, SC);
  __atomic_store_n (&nc->mode, mode, SC);
  old = __atomic_fetch_add (&nc->live.gen, 1, SC) & 1;
  pthread_mutex_lock (&nc->live.gate_lock);
  __atomic_add_fetch (&nc->live.waiting, 1, SC);
  while (__atomic_load_n (&nc->live.inflight[old], SC) != 0)
    pthread_cond_wait (&nc->live.gate_cond, &nc->live.gate_lock);
  __atomic_sub_fetch (&nc->live.waiting, 1, SC);
  pthread_mutex_unlock (&nc->live.gate_lock);
}

/* msg is never NULL here (the public functions lend a buffer). */
static void ATTRIBUTE_FORMAT_PRINTF (3, 4)
say (char *msg, size_t size, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (msg, size, fmt, ap);
  va_end (ap);
}

void
ncache_export_get_params (struct ncache_export *nc,
                          struct ncache_export_params *p)
{
  memset (p, 0, sizeof *p);
  p->mode = live_mode (nc);
  p->detached = nc->dev != NULL && p->mode == NCACHE_MODE_NONE;
  pthread_mutex_lock (&nc->live.lock);
  p->attach_mode = p->detached ? nc->live.attach_mode : p->mode;
  pthread_mutex_unlock (&nc->live.lock);
  p->writeback_percent =
    __atomic_load_n (&nc->tuning.writeback_percent, __ATOMIC_RELAXED);
  p->sequential_cutoff_bytes =
    __atomic_load_n (&nc->tuning.sequential_cutoff_bytes, __ATOMIC_RELAXED);
  p->promote_min_bytes =
    __atomic_load_n (&nc->tuning.promote_min_bytes, __ATOMIC_RELAXED);
  p->flush_on_stop =
    __atomic_load_n (&nc->tuning.flush_on_stop, __ATOMIC_RELAXED);
}

/* ---- detach and attach ---- */

static uint64_t
export_blocks (struct ncache_export *nc)
{
  return (nc->caps.size_bytes + NC_BLOCK_BYTES - 1) / NC_BLOCK_BYTES;
}

static uint64_t
dirty_blocks (struct ncache_export *nc)
{
  return bucket_export_dirty_blocks (nc->dev->bs, nc->export_id) +
    bucket_export_dirty_zero_blocks (nc->dev->bs, nc->export_id);
}

static int
detach_locked (struct ncache_export *nc, ncache_progress_fn fn, void *opaque,
               char *msg, size_t size)
{
  ASSERT_HELD (&nc->live.lock);
  enum ncache_mode old = live_mode (nc);
  uint64_t dirty;
  int r;

  if (nc->dev == NULL) {
    say (msg, size, "export '%s' has no cache device", nc->name);
    return -EINVAL;
  }
  if (old == NCACHE_MODE_NONE) {
    say (msg, size, "export '%s' is already detached", nc->name);
    return 0;
  }
  log_info ("export '%s': detaching from cache '%s': writing back its "
            "dirty data", nc->name, nc->dev->name);
  /* No new dirty data and no new clean key from here on. */
  gate_switch_locked (nc, NCACHE_MODE_WRITEAROUND, true);
  if (nc->caps.readonly)
    r = dirty_blocks (nc) > 0 ? -EROFS : 0;
  else
    r = writeback_drain (nc->wb, fn, opaque);
  if (r == 0 && (dirty = dirty_blocks (nc)) > 0) {
    log_error ("export '%s': %" PRIu64 " dirty blocks left after the "
               "write-back", nc->name, dirty);
    r = -EBUSY;
  }
  if (r < 0) {
    say (msg, size, "export '%s' not detached: its dirty data could not be "
         "written back (%s); it stays attached in mode %s with its dirty "
         "data in the cache", nc->name,
         r == -EROFS ? "the export is read-only" : strerror (-r),
         ncache_mode_name (old));
    goto undo;
  }
  r = device_drop_keys (nc->dev, nc->name, "the export's cached data",
                        nc->export_id, 0, export_blocks (nc));
  if (r == 0)
    r = device_set_export_mode (nc->dev, nc->name, nc->export_id,
                                NCACHE_MODE_NONE);
  if (r < 0) {
    say (msg, size, "export '%s' not detached: cache '%s' failed (%s); it "
         "stays attached in mode %s", nc->name, nc->dev->name,
         strerror (-r), ncache_mode_name (old));
    goto undo;
  }
  nc->live.attach_mode = old;
  gate_switch_locked (nc, NCACHE_MODE_NONE, false);
  log_info ("export '%s': detached from cache '%s' (was mode %s): serving "
            "straight from the backing store", nc->name, nc->dev->name,
            ncache_mode_name (old));
  return 0;

 undo:
  log_error ("%s", msg);
  __atomic_store_n (&nc->mode, old, SC);
  __atomic_store_n (&nc->live.detaching, false, SC);
  return r;
}

static bool
is_cached_mode (enum ncache_mode mode)
{
  return mode == NCACHE_MODE_WRITEBACK || mode == NCACHE_MODE_WRITETHROUGH ||
    mode == NCACHE_MODE_WRITEAROUND;
}

static int
attach_locked (struct ncache_export *nc, enum ncache_mode mode, char *msg,
               size_t size)
{
  ASSERT_HELD (&nc->live.lock);
  enum ncache_mode now = live_mode (nc);
  int r;

  if (nc->dev == NULL) {
    say (msg, size, "export '%s' has no cache device", nc->name);
    return -EINVAL;
  }
  if (now != NCACHE_MODE_NONE) {
    say (msg, size, "export '%s' is attached (mode %s); to change its mode: "
         "set %s mode=MODE", nc->name, ncache_mode_name (now), nc->name);
    return -EALREADY;
  }
  if (mode == NCACHE_MODE_NONE)
    mode = nc->live.attach_mode;
  if (!is_cached_mode (mode)) {
    say (msg, size, "attach needs a cache mode (writeback, writethrough or "
         "writearound)");
    return -EINVAL;
  }
  /* Nothing of the export may be in the index (detach dropped it; again
   * in case anything slipped in), then the table says the mode.
   */
  r = device_drop_keys (nc->dev, nc->name, "the export's cached data",
                        nc->export_id, 0, export_blocks (nc));
  if (r == 0)
    r = device_set_export_mode (nc->dev, nc->name, nc->export_id, mode);
  if (r < 0) {
    say (msg, size, "export '%s' not attached: cache '%s' failed (%s); it "
         "stays detached", nc->name, nc->dev->name, strerror (-r));
    log_error ("%s", msg);
    return r;
  }
  /* Requests of mode none hold no range lock: let them end before a read
   * may promote (ORDERING rule 3).
   */
  gate_switch_locked (nc, NCACHE_MODE_WRITEAROUND, true);
  __atomic_store_n (&nc->live.detaching, false, SC);
  __atomic_store_n (&nc->mode, mode, SC);
  log_info ("export '%s': attached to cache '%s' in mode %s (cold)",
            nc->name, nc->dev->name, ncache_mode_name (mode));
  return 0;
}

/* The public functions: a message buffer when the caller gave none (the
 * log gets the message either way), the change under live.lock.
 */
#define LIVE_CALL(nc, msg, msg_size, call)                      \
  do {                                                          \
    char buf_[256];                                             \
    int r_;                                                     \
                                                                \
    if ((msg) == NULL || (msg_size) == 0) {                     \
      (msg) = buf_;                                             \
      (msg_size) = sizeof buf_;                                 \
    }                                                           \
    (msg)[0] = '\0';                                            \
    pthread_mutex_lock (&(nc)->live.lock);                      \
    r_ = (call);                                                \
    pthread_mutex_unlock (&(nc)->live.lock);                    \
    return r_;                                                  \
  } while (0)

int
ncache_export_detach (struct ncache_export *nc, ncache_progress_fn fn,
                      void *opaque, char *msg, size_t msg_size)
{
  LIVE_CALL (nc, msg, msg_size,
             detach_locked (nc, fn, opaque, msg, msg_size));
}

int
ncache_export_attach (struct ncache_export *nc, enum ncache_mode mode,
                      char *msg, size_t msg_size)
{
  LIVE_CALL (nc, msg, msg_size, attach_locked (nc, mode, msg, msg_size));
}

/* ---- set ---- */

/* A cached mode to another, live (INVARIANTS: one store).  The table
 * first: a failed write leaves everything as it was.
 */
static int
set_mode_locked (struct ncache_export *nc, enum ncache_mode mode, char *msg,
                 size_t size)
{
  ASSERT_HELD (&nc->live.lock);
  enum ncache_mode old = live_mode (nc);
  int r;

  if (nc->dev == NULL) {
    if (mode == NCACHE_MODE_NONE)
      return 0;
    say (msg, size, "export '%s' has no cache device: mode %s needs one "
         "(cache = NAME in its config section, and a restart)", nc->name,
         ncache_mode_name (mode));
    return -EINVAL;
  }
  if (mode == NCACHE_MODE_NONE)
    return detach_locked (nc, NULL, NULL, msg, size);
  if (old == NCACHE_MODE_NONE)
    return attach_locked (nc, mode, msg, size);
  if (old == mode)
    return 0;
  r = device_set_export_mode (nc->dev, nc->name, nc->export_id, mode);
  if (r < 0) {
    say (msg, size, "export '%s': cannot record mode %s in cache '%s' (%s); "
         "the mode stays %s", nc->name, ncache_mode_name (mode),
         nc->dev->name, strerror (-r), ncache_mode_name (old));
    return r;
  }
  __atomic_store_n (&nc->mode, mode, SC);
  /* Leaving writeback: what is dirty is written back by the thread (at
   * its rate, full speed when idle); start now.
   */
  if (old == NCACHE_MODE_WRITEBACK)
    writeback_kick (nc->wb);
  log_info ("export '%s': mode %s -> %s", nc->name, ncache_mode_name (old),
            ncache_mode_name (mode));
  return 0;
}

/* Config keys of an export that the engine knows but cannot change while
 * the export serves (nbdcached.conf(5); the other keys of [export] are
 * the server's: access, TLS, description, connections).
 */
static const char *const fixed_keys[] = {
  "backing", "size", "cache", "readonly", "share_backing", "allow_shrink",
  "backing_connections", "backing_timeout", "backing_tls_certificates",
  "backing_tls_verify", "backing_tls_psk_file", "backing_tls_username",
  "ceph_conf", "ceph_id", "ceph_keyring", "ceph_key",
};

static int
bad_value (char *msg, size_t size, const char *key, const char *value,
           const char *want)
{
  say (msg, size, "%s = '%s': expected %s", key, value, want);
  return -EINVAL;
}

static int
set_locked (struct ncache_export *nc, const char *key, const char *value,
            char *msg, size_t size)
{
  ASSERT_HELD (&nc->live.lock);
  enum ncache_mode mode;
  uint64_t v;
  bool b;
  size_t i;

  if (strcmp (key, "mode") == 0) {
    if (ncache_mode_from_string (value, &mode) < 0)
      return bad_value (msg, size, key, value,
                        "writeback, writethrough, writearound or none");
    return set_mode_locked (nc, mode, msg, size);
  }
  for (i = 0; i < ARRAY_SIZE (fixed_keys); i++)
    if (strcmp (key, fixed_keys[i]) == 0) {
      say (msg, size, "%s cannot change while export '%s' serves: edit the "
           "config and restart nbdcached (live keys: " NCACHE_LIVE_KEYS ")",
           key, nc->name);
      return -ENOTSUP;
    }
  if (strcmp (key, "writeback_percent") != 0 &&
      strcmp (key, "sequential_cutoff") != 0 &&
      strcmp (key, "promote_min") != 0 &&
      strcmp (key, "flush_on_stop") != 0) {
    say (msg, size, "unknown key '%s' (live keys: " NCACHE_LIVE_KEYS ")",
         key);
    return -ENOENT;
  }
  if (nc->dev == NULL) {
    say (msg, size, "%s is used only with a cache device, and export '%s' "
         "has none", key, nc->name);
    return -EINVAL;
  }
  if (strcmp (key, "writeback_percent") == 0) {
    if (parse_uint64_range (value, 0, 100, &v) < 0)
      return bad_value (msg, size, key, value, "a percentage, 0 to 100");
    __atomic_store_n (&nc->tuning.writeback_percent, (unsigned) v,
                      __ATOMIC_RELAXED);
    writeback_set_percent (nc->wb, (unsigned) v);
  }
  else if (strcmp (key, "sequential_cutoff") == 0) {
    if (parse_size_bytes (value, &v) < 0)
      return bad_value (msg, size, key, value,
                        "a size such as 4M or 512K, or 0 (off)");
    __atomic_store_n (&nc->tuning.sequential_cutoff_bytes, v,
                      __ATOMIC_RELAXED);
    seqcut_set_cutoff (nc->seq, v);
  }
  else if (strcmp (key, "promote_min") == 0) {
    uint64_t bucket = (uint64_t) nc->dev->sb.bucket_blocks * NC_BLOCK_BYTES;

    if (parse_size_bytes (value, &v) < 0 ||
        (v != 0 && (v < NC_BLOCK_BYTES || v > bucket || (v & (v - 1)) != 0)))
      return bad_value (msg, size, key, value,
                        "0 (off) or a power of two from 4K to the bucket "
                        "size");
    __atomic_store_n (&nc->tuning.promote_min_bytes, v, __ATOMIC_RELAXED);
  }
  else {
    if (parse_bool (value, &b) < 0)
      return bad_value (msg, size, key, value, "yes or no");
    __atomic_store_n (&nc->tuning.flush_on_stop, b, __ATOMIC_RELAXED);
  }
  log_info ("export '%s': %s = %s", nc->name, key, value);
  return 0;
}

int
ncache_export_set (struct ncache_export *nc, const char *key,
                   const char *value, char *msg, size_t msg_size)
{
  LIVE_CALL (nc, msg, msg_size, set_locked (nc, key, value, msg, msg_size));
}
