/* SPDX-License-Identifier: BSD-3-Clause */
/* cdev-signature.c — what else a would-be cache device holds, by libblkid.
 *
 * WHAT: cdev_foreign_signature asks libblkid whether a file or device
 * carries a signature it knows (a filesystem, a partition table, an LVM
 * physical volume, RAID or crypto metadata, swap) and says which, in
 * words ("an ext4 filesystem", "a gpt partition table").
 * WHY: `nbdcache format` on the wrong path destroys whatever is there.  It
 * already refuses an nbdcache cache without --force; this makes it refuse
 * everything else libblkid recognises too, lets show and check say what
 * a foreign device is instead of suggesting to format it, and keeps
 * create = yes (which formats a device with no nbdcache superblock) off
 * a disk that holds a filesystem.
 *
 * INVARIANTS: read-only: the probe opens the path O_RDONLY on its own
 * (the caller's lock is advisory and does not stop reads), and wipes
 * nothing.  nbdcache's own superblock is not a libblkid type: callers
 * test for it first.
 * THREADS AND LOCKS: one thread (the tool's).
 * FAILURE: 1 and `what` set when something was found, 0 when nothing was,
 * -errno when the probe could not run (logged as a warning: the caller
 * decides whether that is fatal).
 * NOT HERE: nbdcache's superblock (super.c), wiping.
 */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <blkid.h>

#include "cdev.h"
#include "log.h"

static const char *
usage_words (const char *usage)
{
  if (usage == NULL)
    return "signature";
  if (strcmp (usage, "filesystem") == 0)
    return "filesystem";
  if (strcmp (usage, "raid") == 0)
    return "RAID or volume manager member";
  if (strcmp (usage, "crypto") == 0)
    return "encrypted volume";
  return "signature";
}

static const char *
article (const char *word)
{
  return strchr ("aeiouAEIOU", word[0]) != NULL ? "an" : "a";
}

int
cdev_foreign_signature (const char *path, char *what, size_t what_len)
{
  const char *type = NULL, *usage = NULL, *pttype = NULL;
  blkid_probe pr;
  int r;

  pr = blkid_new_probe_from_filename (path);
  if (pr == NULL) {
    r = errno ? -errno : -EIO;
    log_warning ("%s: cannot probe for other signatures (libblkid): %s",
                 path, strerror (-r));
    return r;
  }
  blkid_probe_enable_superblocks (pr, 1);
  blkid_probe_set_superblocks_flags (pr, BLKID_SUBLKS_TYPE |
                                     BLKID_SUBLKS_USAGE);
  blkid_probe_enable_partitions (pr, 1);
  blkid_probe_set_partitions_flags (pr, 0);

  r = blkid_do_safeprobe (pr);
  if (r == 0) {
    blkid_probe_lookup_value (pr, "TYPE", &type, NULL);
    blkid_probe_lookup_value (pr, "USAGE", &usage, NULL);
    blkid_probe_lookup_value (pr, "PTTYPE", &pttype, NULL);
    if (type != NULL)
      snprintf (what, what_len, "%s %s %s", article (type), type,
                usage_words (usage));
    else if (pttype != NULL)
      snprintf (what, what_len, "%s %s partition table", article (pttype),
                pttype);
    else
      snprintf (what, what_len, "a signature libblkid recognises");
    r = 1;
  }
  else if (r == -2) {
    /* Ambivalent: more than one signature, which is itself a warning. */
    snprintf (what, what_len, "several conflicting signatures "
              "(see wipefs -n %s)", path);
    r = 1;
  }
  else if (r == 1)
    r = 0;
  else {
    log_warning ("%s: cannot probe for other signatures (libblkid)", path);
    r = -EIO;
  }
  blkid_free_probe (pr);
  return r;
}
