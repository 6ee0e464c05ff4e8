/* SPDX-License-Identifier: BSD-3-Clause */
/* cdev-sim.c — an in-memory cache device that can crash and fail (tests).
 *
 * WHAT: the "sim" ops (cdev.h) over two memory images of the device:
 * `current` (what reads see) and `durable` (what survives a crash), plus
 * the fault injection cdev.h documents: die at write N, or at the Nth
 * write-or-sync, fail one read or write of a range once, lose (or tear)
 * unsynced writes on a crash.
 * WHY: the engine's crash promise must be tested at every write it makes;
 * SQLite-style, the device itself is the simulator.  Crash tests call
 * crash thousands of times on devices of 4..64 MiB, so a crash and a sync
 * cost O(blocks written since the last sync), never O(device).
 *
 * MODEL:
 * - pwrite copies into current and marks each block unsynced.  A block
 *   becomes unsynced when its bit in `unsynced` goes 0 -> 1, and its
 *   number is then appended to `dirty`; so `dirty` lists each unsynced
 *   block exactly once, in the order they were first written.
 * - sync copies every unsynced block current -> durable and empties the
 *   list.  pwrite with CDEV_FUA also writes durable directly; its blocks
 *   may stay on the list (durable already equals current there, so a later
 *   sync or crash does nothing wrong with them).
 * - discard zeroes the range in current, like an unsynced write of zeros:
 *   after a crash it reads as zeros or as the old data, as cdev.h allows.
 * - crash: each listed block is copied durable -> current (lost) or, with
 *   a tear seed and a coin flip from a splitmix64 stream seeded by it,
 *   current -> durable (survived).  The list order is deterministic, so a
 *   seed reproduces the same tear.  crash_sectors tears inside blocks
 *   too: a listed block is lost or survives whole (a quarter each), or
 *   each of its 512-byte sectors is lost or survives on its own.
 *
 * FAULTS:
 * - fail_at_write (n): pwrite calls are numbered 1, 2, 3 … (every call
 *   that passes the argument checks is counted, failing ones included).
 *   The first pwrite whose number is >= n fails -EIO without being
 *   applied, and the device is dead: every pread, pwrite, sync and discard
 *   after it fails -EIO, until crash.
 * - fail_at_op (n): the same death, but pwrite and sync calls share one
 *   numbering (nr_ops), so a crash test can stop the device AT a sync:
 *   the first pwrite or sync whose op number is >= n fails -EIO.  A sync
 *   that dies settles nothing: every block it would have made durable
 *   stays unsynced, so the next crash loses or tears it (a kill keeps
 *   it).  Discards and reads are not numbered.  Both kinds of fail_at may
 *   be armed; the first reached kills.  `death` says which I/O killed.
 * - fail_read_once / fail_write_once: one pending range each (setting it
 *   again replaces it).  The next pread (pwrite) that overlaps it fails
 *   -EIO and clears it; the failed pwrite is not applied.
 * - crash clears the faults, the death, and every counter.
 *
 * INVARIANTS:
 * - size_bytes is a nonzero multiple of NC_BLOCK_BYTES.
 * - A block's bit in `unsynced` is set iff it is in dirty[0 .. nr_dirty).
 * - Outside an unsynced block, current and durable are equal.
 * - Every request is checked like the file driver checks it: block
 *   multiples, within the device, block-aligned buffer (-EINVAL, logged),
 *   so code tested here also works with O_DIRECT.
 *
 * THREADS AND LOCKS: one mutex, `lock`, guards everything, including the
 * memcpy of the data (tests only: simplicity over concurrency).
 *
 * FAILURE: arguments out of contract: -EINVAL, logged.  Injected faults:
 * -EIO; the fault that kills the device and each fail-once are logged at
 * error level, the -EIO of a dead device after that at debug level.
 * poke/peek outside the device log an error and do nothing.
 *
 * NOT HERE: torn writes inside a 512-byte sector, reordering among
 * unsynced writes other than "each block (sector) survives or not",
 * latency.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cdev.h"
#include "cleanup.h"
#include "compiler.h"
#include "invariant.h"
#include "log.h"
#include "ondisk.h"

struct sim_fault {
  bool armed;
  uint64_t offset;              /* bytes */
  uint64_t count;               /* bytes */
};

struct cdev_sim {
  struct cdev cd;               /* must be first */
  pthread_mutex_t lock;         /* everything below */
  uint64_t nblocks;
  unsigned char *current;       /* size_bytes */
  unsigned char *durable;       /* size_bytes */
  uint64_t *unsynced;           /* bitmap, one bit per block */
  uint64_t *dirty;              /* unsynced block numbers, nr_dirty of them */
  uint64_t nr_dirty;

  uint64_t nr_writes;           /* pwrite calls since create/crash */
  uint64_t nr_syncs;            /* sync calls since create/crash */
  uint64_t nr_ops;              /* both: nr_writes + nr_syncs */
  uint64_t fail_at;             /* a pwrite number; 0 = never */
  uint64_t fail_at_op;          /* an op number; 0 = never */
  const char *death;            /* NULL: alive; else "write" or "sync",
                                   the I/O that killed it: all I/O fails */
  struct sim_fault read_fault;
  struct sim_fault write_fault;
  unsigned refs;                /* cdev_close frees at the last (atomic) */
};

static struct cdev_sim *
to_sim (struct cdev *cd)
{
  return (struct cdev_sim *) cd;
}

/* splitmix64: small, fast, good enough for coin flips. */
static uint64_t
splitmix64 (uint64_t *state)
{
  uint64_t z = (*state += UINT64_C (0x9e3779b97f4a7c15));

  z = (z ^ (z >> 30)) * UINT64_C (0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C (0x94d049bb133111eb);
  return z ^ (z >> 31);
}

/* ---- caller holds s->lock below ---- */

static int
dead_locked (struct cdev_sim *s, const char *what, uint64_t offset,
             uint64_t count)
{
  ASSERT_HELD (&s->lock);
  log_debug ("cdev %s: %s at offset %" PRIu64 " count %" PRIu64 ": the "
             "simulated device is dead (injected)", s->cd.path, what,
             offset, count);
  return -EIO;
}

/* A pwrite (is_write) or a sync, its counters already bumped: if it is
 * the one a fail_at names, the device dies at it: log, -EIO.  Else 0.
 */
static int
die_here_locked (struct cdev_sim *s, bool is_write, uint64_t offset,
                 uint64_t count)
{
  ASSERT_HELD (&s->lock);

  if (!(is_write && s->fail_at != 0 && s->nr_writes >= s->fail_at) &&
      !(s->fail_at_op != 0 && s->nr_ops >= s->fail_at_op))
    return 0;
  s->death = is_write ? "write" : "sync";
  if (is_write)
    log_error ("cdev %s: write at offset %" PRIu64 " count %" PRIu64 ": "
               "input/output error (injected: the device died at write %"
               PRIu64 ", write-or-sync %" PRIu64 ")", s->cd.path, offset,
               count, s->nr_writes, s->nr_ops);
  else
    log_error ("cdev %s: sync: input/output error (injected: the device "
               "died at sync %" PRIu64 ", write-or-sync %" PRIu64 "; "
               "nothing was made durable)", s->cd.path, s->nr_syncs,
               s->nr_ops);
  return -EIO;
}

/* If the pending fault overlaps [offset, offset+count): clear it, log,
 * -EIO.  Else 0.
 */
static int
take_fault_locked (struct cdev_sim *s, struct sim_fault *fault,
                   const char *what, uint64_t offset, uint64_t count)
{
  ASSERT_HELD (&s->lock);
  if (!fault->armed || count == 0 || fault->count == 0 ||
      offset >= fault->offset + fault->count ||
      fault->offset >= offset + count)
    return 0;
  fault->armed = false;
  log_error ("cdev %s: %s at offset %" PRIu64 " count %" PRIu64 ": "
             "input/output error (injected bad range)", s->cd.path, what,
             offset, count);
  return -EIO;
}

static void
mark_unsynced_locked (struct cdev_sim *s, uint64_t offset, uint64_t count)
{
  ASSERT_HELD (&s->lock);
  uint64_t b;

  for (b = offset / NC_BLOCK_BYTES;
       b < (offset + count) / NC_BLOCK_BYTES; b++) {
    uint64_t bit = UINT64_C (1) << (b % 64);

    if (s->unsynced[b / 64] & bit)
      continue;
    s->unsynced[b / 64] |= bit;
    s->dirty[s->nr_dirty++] = b;
  }
}

enum settle {
  SETTLE_KEEP,                  /* sync: every unsynced block survives */
  SETTLE_LOSE,                  /* crash: none does */
  SETTLE_TEAR,                  /* crash: each does with p = 1/2 */
  SETTLE_TEAR_SECTORS,          /* crash: each does, does not, or keeps a
                                   random part of its 512-byte sectors */
};

#define SIM_SECTOR_BYTES 512u

/* Settle every unsynced block: copy it current -> durable if it survives,
 * else durable -> current; then empty the list.  tear_seed seeds the coin
 * flips of SETTLE_TEAR.
 */
static void
settle_locked (struct cdev_sim *s, enum settle how, uint64_t tear_seed)
{
  ASSERT_HELD (&s->lock);
  uint64_t prng = tear_seed;
  uint64_t i;

  for (i = 0; i < s->nr_dirty; i++) {
    uint64_t b = s->dirty[i];
    size_t off = (size_t) (b * NC_BLOCK_BYTES);
    bool survive = how == SETTLE_KEEP ||
      (how == SETTLE_TEAR && (splitmix64 (&prng) & 1) != 0);

    if (how == SETTLE_TEAR_SECTORS) {
      uint64_t r = splitmix64 (&prng);
      unsigned k;

      /* A quarter lost, a quarter kept, half torn inside the block. */
      for (k = 0; k < NC_BLOCK_BYTES / SIM_SECTOR_BYTES; k++) {
        size_t so = off + (size_t) k * SIM_SECTOR_BYTES;
        bool keep = (r & 3) == 1 || ((r & 2) != 0 && ((r >> (8 + k)) & 1));

        if (keep)
          memcpy (s->durable + so, s->current + so, SIM_SECTOR_BYTES);
        else
          memcpy (s->current + so, s->durable + so, SIM_SECTOR_BYTES);
      }
    }
    else if (survive)
      memcpy (s->durable + off, s->current + off, NC_BLOCK_BYTES);
    else
      memcpy (s->current + off, s->durable + off, NC_BLOCK_BYTES);
    s->unsynced[b / 64] &= ~(UINT64_C (1) << (b % 64));
  }
  s->nr_dirty = 0;
}

/* ---- the ops ---- */

static int
sim_pread (struct cdev *cd, void *buf, size_t count, uint64_t offset)
{
  struct cdev_sim *s = to_sim (cd);
  int r;

  SCOPED_LOCK (&s->lock);
  if (s->death != NULL)
    return dead_locked (s, "read", offset, count);
  if ((r = take_fault_locked (s, &s->read_fault, "read", offset, count)) < 0)
    return r;
  if (count == 0)
    return 0;
  memcpy (buf, s->current + offset, count);
  return 0;
}

static int
sim_pwrite (struct cdev *cd, const void *buf, size_t count, uint64_t offset,
            uint32_t flags)
{
  struct cdev_sim *s = to_sim (cd);
  int r;

  SCOPED_LOCK (&s->lock);
  s->nr_writes++;
  s->nr_ops++;
  if (s->death != NULL)
    return dead_locked (s, "write", offset, count);
  if ((r = die_here_locked (s, true, offset, count)) < 0)
    return r;
  if ((r = take_fault_locked (s, &s->write_fault, "write", offset,
                              count)) < 0)
    return r;
  if (count == 0)
    return 0;
  memcpy (s->current + offset, buf, count);
  if (flags & CDEV_FUA)
    memcpy (s->durable + offset, buf, count);
  else
    mark_unsynced_locked (s, offset, count);
  return 0;
}

static int
sim_sync (struct cdev *cd)
{
  struct cdev_sim *s = to_sim (cd);

  int r;

  SCOPED_LOCK (&s->lock);
  s->nr_syncs++;
  s->nr_ops++;
  if (s->death != NULL)
    return dead_locked (s, "sync", 0, 0);
  if ((r = die_here_locked (s, false, 0, 0)) < 0)
    return r;                   /* settles nothing */
  settle_locked (s, SETTLE_KEEP, 0);
  return 0;
}

static int
sim_discard (struct cdev *cd, uint64_t count, uint64_t offset)
{
  struct cdev_sim *s = to_sim (cd);

  SCOPED_LOCK (&s->lock);
  if (s->death != NULL)
    return dead_locked (s, "discard", offset, count);
  memset (s->current + offset, 0, count);
  mark_unsynced_locked (s, offset, count);
  return 0;
}

static void
sim_close (struct cdev *cd)
{
  struct cdev_sim *s = to_sim (cd);

  if (__atomic_sub_fetch (&s->refs, 1, __ATOMIC_ACQ_REL) > 0)
    return;
  pthread_mutex_destroy (&s->lock);
  free (s->current);
  free (s->durable);
  free (s->unsynced);
  free (s->dirty);
  free (cd->path);
  free (s);
}

static const struct cdev_ops sim_ops = {
  .name = "sim",
  .pread = sim_pread,
  .pwrite = sim_pwrite,
  .sync = sim_sync,
  .discard = sim_discard,
  .close = sim_close,
};

/* ---- create and the test controls ---- */

int
cdev_sim_create (uint64_t size_bytes, struct cdev **out)
{
  struct cdev_sim *s;
  uint64_t nblocks = size_bytes / NC_BLOCK_BYTES;

  if (size_bytes == 0 || size_bytes % NC_BLOCK_BYTES != 0 ||
      size_bytes > SIZE_MAX / 2) {
    log_error ("cdev sim: size %" PRIu64 " bytes is not a positive multiple "
               "of %u bytes", size_bytes, NC_BLOCK_BYTES);
    return -EINVAL;
  }
  s = calloc (1, sizeof *s);
  if (s == NULL)
    return -ENOMEM;
  s->cd.ops = &sim_ops;
  s->cd.size_bytes = size_bytes;
  s->nblocks = nblocks;
  /* calloc: large zeroed images come straight from mmap, untouched pages
   * cost nothing.
   */
  s->current = calloc (1, (size_t) size_bytes);
  s->durable = calloc (1, (size_t) size_bytes);
  s->unsynced = calloc ((size_t) (nblocks + 63) / 64, sizeof (uint64_t));
  s->dirty = calloc ((size_t) nblocks, sizeof (uint64_t));
  s->cd.path = strdup ("sim");
  if (s->current == NULL || s->durable == NULL || s->unsynced == NULL ||
      s->dirty == NULL || s->cd.path == NULL) {
    free (s->current);
    free (s->durable);
    free (s->unsynced);
    free (s->dirty);
    free (s->cd.path);
    free (s);
    return -ENOMEM;
  }
  pthread_mutex_init (&s->lock, NULL);
  s->refs = 1;
  *out = &s->cd;
  return 0;
}

void
cdev_sim_hold (struct cdev *cd)
{
  __atomic_add_fetch (&to_sim (cd)->refs, 1, __ATOMIC_ACQ_REL);
}

void
cdev_sim_fail_at_write (struct cdev *cd, uint64_t n)
{
  struct cdev_sim *s = to_sim (cd);

  SCOPED_LOCK (&s->lock);
  s->fail_at = n;
}

void
cdev_sim_fail_at_op (struct cdev *cd, uint64_t n)
{
  struct cdev_sim *s = to_sim (cd);

  SCOPED_LOCK (&s->lock);
  s->fail_at_op = n;
}

static void
arm_fault (struct cdev_sim *s, struct sim_fault *fault, uint64_t offset,
           uint64_t count)
{
  SCOPED_LOCK (&s->lock);
  fault->armed = true;
  fault->offset = offset;
  fault->count = count;
}

void
cdev_sim_fail_read_once (struct cdev *cd, uint64_t offset, uint64_t count)
{
  struct cdev_sim *s = to_sim (cd);

  arm_fault (s, &s->read_fault, offset, count);
}

void
cdev_sim_fail_write_once (struct cdev *cd, uint64_t offset, uint64_t count)
{
  struct cdev_sim *s = to_sim (cd);

  arm_fault (s, &s->write_fault, offset, count);
}

static void
reboot (struct cdev *cd, enum settle how, uint64_t tear_seed)
{
  struct cdev_sim *s = to_sim (cd);

  SCOPED_LOCK (&s->lock);
  settle_locked (s, how, tear_seed);
  s->nr_writes = 0;
  s->nr_syncs = 0;
  s->nr_ops = 0;
  s->fail_at = 0;
  s->fail_at_op = 0;
  s->death = NULL;
  s->read_fault.armed = false;
  s->write_fault.armed = false;
}

void
cdev_sim_crash (struct cdev *cd, uint64_t tear_seed)
{
  reboot (cd, tear_seed != 0 ? SETTLE_TEAR : SETTLE_LOSE, tear_seed);
}

void
cdev_sim_crash_sectors (struct cdev *cd, uint64_t tear_seed)
{
  reboot (cd, tear_seed != 0 ? SETTLE_TEAR_SECTORS : SETTLE_LOSE,
          tear_seed);
}

void
cdev_sim_kill (struct cdev *cd)
{
  reboot (cd, SETTLE_KEEP, 0);
}

uint64_t
cdev_sim_nr_writes (struct cdev *cd)
{
  struct cdev_sim *s = to_sim (cd);

  SCOPED_LOCK (&s->lock);
  return s->nr_writes;
}

uint64_t
cdev_sim_nr_syncs (struct cdev *cd)
{
  struct cdev_sim *s = to_sim (cd);

  SCOPED_LOCK (&s->lock);
  return s->nr_syncs;
}

uint64_t
cdev_sim_nr_ops (struct cdev *cd)
{
  struct cdev_sim *s = to_sim (cd);

  SCOPED_LOCK (&s->lock);
  return s->nr_ops;
}

const char *
cdev_sim_death (struct cdev *cd)
{
  struct cdev_sim *s = to_sim (cd);

  SCOPED_LOCK (&s->lock);
  return s->death;
}

void
cdev_sim_poke (struct cdev *cd, uint64_t offset, const void *buf,
               size_t count)
{
  struct cdev_sim *s = to_sim (cd);

  if (!range_within (offset, count, cd->size_bytes)) {
    log_error ("cdev %s: poke at offset %" PRIu64 " count %zu is beyond the "
               "end of the device", cd->path, offset, count);
    return;
  }
  if (count == 0)
    return;
  SCOPED_LOCK (&s->lock);
  memcpy (s->current + offset, buf, count);
  memcpy (s->durable + offset, buf, count);
}

void
cdev_sim_peek (struct cdev *cd, uint64_t offset, void *buf, size_t count)
{
  struct cdev_sim *s = to_sim (cd);

  if (!range_within (offset, count, cd->size_bytes)) {
    log_error ("cdev %s: peek at offset %" PRIu64 " count %zu is beyond the "
               "end of the device", cd->path, offset, count);
    return;
  }
  if (count == 0)
    return;
  SCOPED_LOCK (&s->lock);
  memcpy (buf, s->current + offset, count);
}
