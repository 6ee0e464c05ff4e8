/* SPDX-License-Identifier: BSD-3-Clause */
/* test-cdev-fx.h — shared helpers of the raw cache-device I/O tests
 * (cdev-file.c, cdev-sim.c).
 *
 * PROGRAMS: test-cdev-file (the file driver and the buffer allocator) and
 * test-cdev-sim (the simulated device).  This file (test-cdev-fx.c) holds
 * the seed, the private scratch directory and the logged-error checks.
 *
 * WHAT: the file driver: sparse creation (and never resizing an existing
 * file), size rounding, refusing what is not a file, O_DIRECT on the
 * scratch filesystem and on /dev/shm (either O_DIRECT or the logged
 * fallback), read/write/FUA/sync, every alignment and range error (one
 * logged message naming path and offset), read-only handles, discard
 * punching holes, an I/O error from a file that shrank; the shared buffer
 * allocator.  The simulated device: the durability model (unsynced writes
 * lost, synced and FUA writes kept, discard), fail_at_write and
 * fail_at_op (a death at a write or at a sync), the fail-once
 * faults, tearing with a seed, counters, poke/peek, many cheap crashes,
 * threads, and a randomised model check.
 * HOW: files live in a private directory under $TMPDIR (or /tmp); tmpfs
 * cases use /dev/shm when it exists and are otherwise reported as skipped
 * parts.  Log messages are captured through a sink.  A real block device
 * is tested only if NBDCACHE_TEST_BLOCKDEV names a scratch device (its
 * contents are destroyed); otherwise that test is skipped.
 * SEED: the tear and model tests are randomised; NBDCACHE_SEED overrides
 * the seed, which is always printed.
 */
#ifndef NBDCACHE_TEST_CDEV_FX_H
#define NBDCACHE_TEST_CDEV_FX_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/types.h>

#ifdef HAVE_LINUX_FS_H
#include <linux/fs.h>
#endif

#include <cmocka.h>

#include "cdev.h"
#include "log.h"
#include "testkit.h"
#include "ondisk.h"

#define BLK NC_BLOCK_BYTES

/* Directories made by the running test: a failing test longjmps out of
 * its body, so the teardown removes whatever is left.
 */
#define MAX_TMPDIRS 8

/* ---- test-cdev-fx.c ---- */

void assert_one_error (const char *s1, const char *s2);
uint64_t test_seed (void);
void fill (void *buf, size_t count, uint64_t offset, uint64_t tag);
bool check_fill (const void *buf, size_t count, uint64_t offset, uint64_t tag);
bool all_zero (const void *buf, size_t count);
const char *tmp_base (void);
char *make_tmpdir (const char *base);
char *path_in (const char *dir, const char *name);
void rm_tmpdir (char *dir, char *path);
int teardown_tmpdirs (void **state);
char *make_file (const char *dir, uint64_t size);
struct cdev *open_ok (const char *path, bool direct, bool readonly, uint64_t create);
uint64_t allocated_bytes (const char *path);

#endif /* NBDCACHE_TEST_CDEV_FX_H */
