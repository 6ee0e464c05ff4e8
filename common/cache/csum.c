/* SPDX-License-Identifier: BSD-3-Clause */
/* csum.c — the metadata checksum (csum.h).
 *
 * WHAT: nc_csum, XXH3-64 of a block after its own csum field.
 * WHY: one definition for every metadata block; a leaf that any module
 * (and any test) links without pulling in the rest of the engine.
 * INVARIANTS: the first 8 bytes of a block are its csum and never covered.
 * THREADS AND LOCKS: none; pure.
 * FAILURE: none.
 * NOT HERE: verifying a block (each module compares and names what failed).
 */
#include <config.h>

#include <stddef.h>
#include <stdint.h>

#include <xxhash.h>

#include "csum.h"

uint64_t
nc_csum (const void *buf, size_t len)
{
  return XXH3_64bits ((const char *) buf + 8, len - 8);
}

uint64_t
nc_csum_whole (const void *buf, size_t len)
{
  return XXH3_64bits (buf, len);
}
