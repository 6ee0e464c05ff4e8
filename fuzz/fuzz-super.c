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

static struct nc_sb template[NC_SB_SLOTS];

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
  static struct nc_sb slots[NC_SB_SLOTS];
  struct nc_sb sb;
  unsigned char *p = (unsigned char *) slots;
  struct cdev *cd;
  int i, slot;
  size_t j;

  if (size < 1)
    return 0;
  memcpy (slots, template, sizeof slots);
  for (j = 1; j < size && j - 1 < sizeof slots; j++)
    p[j - 1] ^= data[j];
  for (i = 0; i < NC_SB_SLOTS; i++) {
    if (data[0] & 1)
      super_set_csum (&slots[i]);
    (void) super_validate (&slots[i], DEVICE_BYTES);
  }
  if (cdev_sim_create (DEVICE_BYTES, &cd) < 0)
    abort ();
  cdev_sim_poke (cd, 0, slots, sizeof slots);
  (void) super_probe (cd);
  if (super_read (cd, &sb, &slot) == 0) {
    for (i = 0; i < (int) sb.nr_exports && i < NC_MAX_EXPORTS; i++)
      (void) super_find_export (&sb, sb.exports[i].uri);
    (void) super_find_export (&sb, "file:///nonexistent");
  }
  cdev_close (cd);
  return 0;
}
