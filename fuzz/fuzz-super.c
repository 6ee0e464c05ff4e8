/* SPDX-License-Identifier: BSD-3-Clause */
/* fuzz-super.c — libFuzzer harness: the superblock and its export table
 * (common/cache/super.c: super_validate, super_read, super_find_export).
 *
 * WHAT: at start-up the harness formats a simulated device and keeps its
 * two superblock slots as a template.  The input (after its first byte)
 * is XORed onto the template — so an empty input is a valid superblock
 * and every mutation is a difference from one; if the first byte is odd
 * the harness recomputes both checksums, so the mutations reach the
 * field checks behind them.
 * Then it validates directly, reads through super_read (both copies, the
 * newest valid wins), and looks an export up in the table it read.
 * WHY: the superblock is the root of trust of the cache device; its
 * export slots carry client-visible identities (URIs).
 */
#include <config.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cdev.h"
#include "format.h"
#include "log.h"
#include "ondisk.h"
#include "super.h"

#define DEVICE_BYTES (UINT64_C (4) << 20)

static void
quiet (enum log_level level, const char *msg)
{
  (void) level; (void) msg;
}

/* The superblock area: bucket 0 of a 64 KiB-bucket cache (both heads
 * and both export tables).
 */
#define AREA_BYTES (16 * NC_BLOCK_BYTES)
static unsigned char template[AREA_BYTES];

/* Copy `slot` of the raw area, as super_read assembles it. */
static void
decode (const unsigned char *area, int slot, struct nc_sb *sb)
{
  memset (sb, 0, sizeof *sb);
  memcpy (sb, area + (size_t) slot * NC_BLOCK_BYTES, NC_BLOCK_BYTES);
  if (sb->table_blocks >= 1 && sb->table_blocks <= NC_TABLE_BLOCKS_MAX &&
      super_table_offset (sb, slot) + (uint64_t) sb->table_blocks
      * NC_BLOCK_BYTES <= AREA_BYTES)
    memcpy (sb->exports, area + super_table_offset (sb, slot),
            (size_t) sb->table_blocks * NC_BLOCK_BYTES);
  else
    sb->table_blocks = 0;
}

static void
encode (unsigned char *area, int slot, const struct nc_sb *sb)
{
  memcpy (area + (size_t) slot * NC_BLOCK_BYTES, sb, NC_BLOCK_BYTES);
  if (sb->table_blocks >= 1)
    memcpy (area + super_table_offset (sb, slot), sb->exports,
            (size_t) sb->table_blocks * NC_BLOCK_BYTES);
}

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  const struct nc_format_options opts = { .bucket_bytes = 64 * 1024,
                                          .quiet = true };
  struct cdev *cd;

  (void) argc; (void) argv;
  log_set_sink (quiet);
  log_set_level (LOG_LEVEL_ERROR);
  if (cdev_sim_create (DEVICE_BYTES, &cd) < 0 || nc_format (cd, &opts) < 0)
    abort ();
  cdev_sim_peek (cd, 0, template, sizeof template);
  cdev_close (cd);
  return 0;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static unsigned char area[AREA_BYTES];
  static struct nc_sb sb;
  struct cdev *cd;
  int i, slot;
  size_t j;

  if (size < 1)
    return 0;
  memcpy (area, template, sizeof area);
  for (j = 1; j < size && j - 1 < sizeof area; j++)
    area[j - 1] ^= data[j];
  for (i = 0; i < NC_SB_SLOTS; i++) {
    decode (area, i, &sb);
    if (data[0] & 1) {
      super_set_csum (&sb);
      encode (area, i, &sb);
    }
    (void) super_validate (&sb, DEVICE_BYTES);
  }
  if (cdev_sim_create (DEVICE_BYTES, &cd) < 0)
    abort ();
  cdev_sim_poke (cd, 0, area, sizeof area);
  (void) super_probe (cd);
  if (super_read (cd, &sb, &slot) == 0) {
    for (i = 0; i < (int) super_table_slots (&sb); i++)
      if (sb.exports[i].id != 0)
        (void) super_find_export (&sb, sb.exports[i].uri);
    (void) super_find_export (&sb, "file:///nonexistent");
  }
  cdev_close (cd);
  return 0;
}
