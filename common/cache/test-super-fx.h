/* SPDX-License-Identifier: BSD-3-Clause */
/* test-super-fx.h — the fixtures of the superblock and format tests.
 *
 * WHAT: see test-super-fx.c: the prio_format / journal_format stubs and
 * what they recorded, the big and gate devices, small helpers.
 * WHY: test-super (read and validate), test-super-write (super_write and
 * the export table) and test-format (nc_format) share them.
 * INVARIANTS: include after <setjmp.h>, <stdarg.h>, <stddef.h> and
 * <cmocka.h>.  The stubs are real definitions of prio_format and
 * journal_format: test-super-fx.c must be linked before the libraries
 * (Makefile.am lists it in SUPER_FX_SOURCES) so that they replace prio.c's
 * and journal.c's.  Clear `stubs` before a format whose calls you count.
 * THREADS AND LOCKS: single-threaded tests.
 * FAILURE: cmocka assertions.
 * NOT HERE: the tests themselves.
 */
#ifndef NBDCACHE_TEST_SUPER_FX_H
#define NBDCACHE_TEST_SUPER_FX_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "cdev.h"
#include "ondisk.h"
#include "testkit.h"

#define DEV_BYTES (64 * MIB)

/* The last error logged (captured by test_log_capture) contains s. */
#define assert_error_contains(s) \
  do {                                                                  \
    if (strstr (test_log_last_error (), (s)) == NULL)                  \
      fail_msg ("expected an error containing \"%s\", got \"%s\"",      \
                (s), test_log_last_error ());                          \
  } while (0)

/* ---- the prio_format and journal_format stubs ---- */

struct stub_calls {
  unsigned prio, journal;
  bool sb_gone_at_prio, sb_gone_at_journal; /* blocks 0-1 zero then */
};
extern struct stub_calls stubs;

#define PRIO_MARK "STUBPRIO"
#define JOURNAL_MARK "STUBJRNL"

/* The stub's mark (and sb's uuid) is at the start of `bucket`. */
bool has_mark (struct cdev *cd, const struct nc_sb *sb, uint32_t bucket,
               const char *mark);

/* ---- devices ---- */

/* A device of size_bytes that keeps the superblock area (heads and
 * export tables) and drops the rest. */
struct cdev *big_create (uint64_t size_bytes);
/* In front of `inner` (a cdev-sim): sync number fail_sync_at does not
 * happen and the device is dead (-EIO) from then on.
 */
struct cdev *gate_create (struct cdev *inner, uint64_t fail_sync_at);

/* ---- helpers ---- */

/* A new simulated device of `bytes`. */
struct cdev *sim (uint64_t bytes);
extern const uint8_t uuid_a[16], uuid_b[16];
/* A simulated device of `bytes` formatted with uuid_a. */
struct cdev *formatted (uint64_t bytes, uint32_t bucket_bytes);
/* Superblock slot 0 or 1, as on the (simulated) device. */
void read_slot (struct cdev *cd, int slot, struct nc_sb *sb);
/* Superblock copy `slot` (head and table) poked onto the device as sb
 * is, checksums untouched.
 */
void write_slot (struct cdev *cd, int slot, const struct nc_sb *sb);
/* XOR one byte of the (simulated) device. */
void poke_byte (struct cdev *cd, uint64_t offset, uint8_t xor);

#endif /* NBDCACHE_TEST_SUPER_FX_H */
