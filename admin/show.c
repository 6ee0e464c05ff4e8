/* SPDX-License-Identifier: BSD-3-Clause */
/* show.c — nbdcache show: what is on a cache device.
 *
 * WHAT: prints the superblock (uuid, version, sizes, layout, seq, both
 * copies), the export table, the journal (entries and keys pending
 * replay) and the space in use (buckets free / data / dirty / btree, live
 * and dirty bytes, from a read-only walk of the index), as text or JSON.
 * Also the small formatting helpers the other commands share.
 * WHY: the admin's view of a cache without starting a server.
 * INVARIANTS: reads only.  JSON goes to stdout and nothing else does in
 * --json mode (problems found on the way go to stderr), so the output
 * always parses.  Strings from the device are escaped (JSON) or have
 * control characters replaced (text).
 * THREADS AND LOCKS: one thread.
 * FAILURE: exit 0 shown; 1 the metadata is damaged (what could be read is
 * still shown, with "damaged": true) or its journal was written by a
 * newer version of nbdcache (shown as far as the superblock and the
 * export table, with "newer_version": true; as check says, REFUSED);
 * 2 usage, I/O, not a cache device.
 * NOT HERE: verifying every structure (check.c).
 */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin.h"
#include "cache.h"
#include "cdev.h"
#include "log.h"
#include "super.h"

/* ---- helpers shared by the commands ---- */

void
fmt_bytes (uint64_t bytes, char *buf, size_t size)
{
  static const char *const units[] = { "KiB", "MiB", "GiB", "TiB", "PiB" };
  double v = (double) bytes;
  int u = -1;

  if (bytes < 1024) {
    snprintf (buf, size, "%" PRIu64 " bytes", bytes);
    return;
  }
  while (v >= 1024 && u < 4) {
    v /= 1024;
    u++;
  }
  if (v == (double) (uint64_t) v)
    snprintf (buf, size, "%.0f %s", v, units[u]);
  else
    snprintf (buf, size, "%.1f %s", v, units[u]);
}

void
fmt_uuid (const uint8_t uuid[16], char *buf, size_t size)
{
  snprintf (buf, size,
            "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
            "%02x%02x%02x%02x%02x%02x",
            uuid[0], uuid[1], uuid[2], uuid[3], uuid[4], uuid[5], uuid[6],
            uuid[7], uuid[8], uuid[9], uuid[10], uuid[11], uuid[12],
            uuid[13], uuid[14], uuid[15]);
}

const char *
fmt_mode (uint8_t mode)
{
  return ncache_mode_name ((enum ncache_mode) mode);
}

static void
fmt_time (uint64_t unix_seconds, char *buf, size_t size)
{
  time_t t = (time_t) unix_seconds;
  struct tm tm;

  if (gmtime_r (&t, &tm) == NULL ||
      strftime (buf, size, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
    snprintf (buf, size, "%" PRIu64, unix_seconds);
}

/* A device string for a terminal: control characters become '?'. */
static void
print_text (const char *s)
{
  for (; *s; s++)
    putchar ((unsigned char) *s < 0x20 || *s == 0x7f ? '?' : *s);
}

static void
print_json_string (const char *s)
{
  putchar ('"');
  for (; *s; s++) {
    unsigned char ch = (unsigned char) *s;

    if (ch == '"' || ch == '\\')
      printf ("\\%c", ch);
    else if (ch < 0x20 || ch == 0x7f)
      printf ("\\u%04x", ch);
    else
      putchar (ch);
  }
  putchar ('"');
}

/* ---- text ---- */

static const char *
copy_state (const struct inspect_sb_copy *c, char *buf, size_t size)
{
  if (c->why == NULL)
    snprintf (buf, size, "valid, seq %" PRIu64, c->seq);
  else
    snprintf (buf, size, "INVALID (%s)", c->why);
  return buf;
}

static void
print_region (const struct nc_sb *sb, const char *name, uint32_t first,
              uint32_t count)
{
  char size[40];

  fmt_bytes ((uint64_t) count * super_bucket_bytes (sb), size, sizeof size);
  if (count == 1)
    printf ("  %-12s bucket %" PRIu32 " (%s)\n", name, first, size);
  else
    printf ("  %-12s buckets %" PRIu32 "-%" PRIu32 " (%" PRIu32 " buckets, "
            "%s)\n", name, first, first + count - 1, count, size);
}

/* How the slot knows its backing store (nbdcache-format(5)). */
static const char *
fmt_identity (const struct nc_sb_export *e)
{
  switch (e->kind) {
  case NC_BACKING_FILE:
    return e->flags & NC_ID_UUID ? "file-id" : "file-inode";
  case NC_BACKING_BLOCK: return "block-device";
  case NC_BACKING_LEGACY: return "path";
  default: return "uri";
  }
}

/* What the slot recorded of its backing store, as text: the block
 * device's name, the file's id (hex) or "DEV:INO[:BTIME]" (DEV in hex)
 * for a file without one; "" for a URI or path slot.
 */
static void
fmt_backing_id (const struct nc_sb_export *e, char *buf, size_t size)
{
  size_t i;

  buf[0] = '\0';
  switch (e->kind) {
  case NC_BACKING_FILE:
    if (e->flags & NC_ID_UUID)
      for (i = 0; i < sizeof e->uuid && 2 * i + 2 < size; i++)
        snprintf (buf + 2 * i, 3, "%02x", e->uuid[i]);
    else if (e->flags & NC_ID_BTIME)
      snprintf (buf, size, "%" PRIx64 ":%" PRIu64 ":%" PRId64 ".%09" PRIu32,
                e->dev, e->ino, (int64_t) e->btime_sec, e->btime_nsec);
    else
      snprintf (buf, size, "%" PRIx64 ":%" PRIu64, e->dev, e->ino);
    break;
  case NC_BACKING_BLOCK:
    snprintf (buf, size, "%.*s", (int) sizeof e->devid, e->devid);
    break;
  default:
    break;
  }
}

static void
show_text (struct inspect *in, int journal_r, int walk_r)
{
  const struct nc_sb *sb = &in->sb;
  uint64_t bb = super_bucket_bytes (sb);
  char s1[40], s2[40], s3[300];
  size_t i;

  printf ("cache device:  %s (%" PRIu64 " bytes)\n", in->path,
          in->cd->size_bytes);
  fmt_uuid (sb->uuid, s1, sizeof s1);
  printf ("uuid:          %s\n", s1);
  printf ("format:        version %" PRIu32 "%s, block size %" PRIu32 "\n",
          in->copies[in->slot].version,
          in->copies[in->slot].version == NC_FORMAT_VERSION_V1
          ? " (converted to version 2 at the next writable open)" : "",
          sb->block_bytes);
  fmt_time (sb->created_unix, s1, sizeof s1);
  fmt_bytes (sb->device_bytes, s2, sizeof s2);
  printf ("created:       %s, on a device of %s\n", s1, s2);
  printf ("superblock:    seq %" PRIu64 " from copy %d; copy %d: %s\n",
          sb->seq, in->slot, 1 - in->slot,
          copy_state (&in->copies[1 - in->slot], s3, sizeof s3));
  fmt_bytes (bb, s1, sizeof s1);
  fmt_bytes ((uint64_t) sb->nbuckets * bb, s2, sizeof s2);
  printf ("buckets:       %" PRIu32 " of %s (%s)\n", sb->nbuckets, s1, s2);
  printf ("  superblocks  bucket 0\n");
  print_region (sb, "journal", sb->journal_first, sb->journal_buckets);
  print_region (sb, "prio copy A", sb->prio_first, sb->prio_buckets);
  print_region (sb, "prio copy B", sb->prio_first + sb->prio_buckets,
                sb->prio_buckets);
  if (sb->features & NC_FEATURE_DATA_CSUM)
    print_region (sb, "checksums", sb->csum_first, sb->csum_buckets);
  print_region (sb, "data", sb->data_first, sb->nbuckets - sb->data_first);
  printf ("data checksums: %s\n", (sb->features & NC_FEATURE_DATA_CSUM)
          ? "yes (a 32-bit checksum per 4 KiB block)"
          : "no (made before data checksums; format again to get them)");

  printf ("exports:       %" PRIu32 " of %" PRIu32 " slots\n", sb->nr_exports,
          super_table_slots (sb));
  if (sb->nr_exports > 0)
    printf ("  %-3s %-12s %-12s %-16s %s\n", "ID", "MODE", "SIZE", "NAME",
            "URI");
  for (i = 0; i < NC_MAX_EXPORTS; i++) {
    const struct nc_sb_export *e = &sb->exports[i];

    if (e->id == 0)
      continue;
    fmt_bytes (e->backing_bytes, s1, sizeof s1);
    printf ("  %-3u %-12s %-12s ", e->id, fmt_mode (e->mode), s1);
    print_text (e->name);
    printf ("%*s ", (int) (strlen (e->name) < 16 ? 16 - strlen (e->name)
                           : 0), "");
    print_text (e->uri);
    putchar ('\n');
    fmt_backing_id (e, s3, sizeof s3);
    printf ("      identity: %s%s", fmt_identity (e), s3[0] ? " " : "");
    print_text (s3);
    if (e->flags & NC_SLOT_FORGETTING)
      printf (" (being forgotten: the next writable open finishes it)");
    putchar ('\n');
  }

  if (journal_r == -ENODATA)
    printf ("journal:       not read (the prio copies are unusable)\n");
  else if (journal_r == -EPROTONOSUPPORT)
    printf ("journal:       REFUSED: written by a newer version of nbdcache "
            "(see the messages above)\n");
  else if (journal_r < 0)
    printf ("journal:       DAMAGED (see the messages above)\n");
  else
    printf ("journal:       entries %" PRIu64 "-%" PRIu64 ", %" PRIu64
            " key%s pending replay%s\n", in->jinfo.first_seq,
            in->jinfo.last_seq, in->journal_keys,
            in->journal_keys == 1 ? "" : "s",
            in->journal_keys ? " (not counted in the usage below)" : "");

  if (!in->walk_done) {
    printf ("usage:         unknown: the index %s\n",
            walk_r == -ENODATA ? "was not read (it needs the prios and the "
            "journal)" : "could not be read");
    return;
  }
  printf ("usage:         %" PRIu32 " data-area buckets: %" PRIu32 " free, %"
          PRIu32 " data (%" PRIu32 " dirty), %" PRIu32 " btree\n",
          in->usage.nbuckets,
          in->usage.free + in->usage.empty + in->usage.pending,
          in->usage.data + in->usage.open, in->usage.dirty_buckets,
          in->usage.btree);
  fmt_bytes (in->walk.live_blocks * NC_BLOCK_BYTES, s1, sizeof s1);
  fmt_bytes (in->walk.dirty_blocks * NC_BLOCK_BYTES, s2, sizeof s2);
  printf ("               live %s, dirty %s\n", s1, s2);
  printf ("index:         depth %u, %" PRIu64 " node%s (%" PRIu64
          " lea%s), %" PRIu64 " keys (%" PRIu64 " dirty, %" PRIu64
          " zero, %" PRIu64 " stale)\n", in->walk.depth, in->walk.nodes,
          in->walk.nodes == 1 ? "" : "s", in->walk.leaves,
          in->walk.leaves == 1 ? "f" : "ves", in->walk.keys,
          in->walk.dirty_keys, in->walk.zero_keys, in->walk.stale_keys);
}

/* ---- JSON ---- */

static void
json_copy (const struct inspect_sb_copy *c, int slot, bool last)
{
  printf ("    { \"slot\": %d, \"valid\": %s", slot,
          c->why == NULL ? "true" : "false");
  if (c->has_magic)
    printf (", \"seq\": %" PRIu64, c->seq);
  if (c->why != NULL) {
    printf (", \"problem\": ");
    print_json_string (c->why);
  }
  printf (" }%s\n", last ? "" : ",");
}

/* The members every JSON answer has: path, size, both copies. */
static void
json_head (const struct inspect *in)
{
  printf ("{\n  \"path\": ");
  print_json_string (in->path);
  printf (",\n  \"device_bytes\": %" PRIu64 ",\n", in->cd->size_bytes);
  printf ("  \"superblock_copies\": [\n");
  json_copy (&in->copies[0], 0, false);
  json_copy (&in->copies[1], 1, true);
  printf ("  ],\n");
}

static void
show_json (struct inspect *in, int journal_r, bool damaged, bool newer)
{
  const struct nc_sb *sb = &in->sb;
  char uuid[40];
  size_t i;
  bool first = true;

  fmt_uuid (sb->uuid, uuid, sizeof uuid);
  json_head (in);
  printf ("  \"superblock\": {\n");
  printf ("    \"uuid\": \"%s\",\n", uuid);
  printf ("    \"version\": %" PRIu32 ",\n", in->copies[in->slot].version);
  printf ("    \"export_slots\": %" PRIu32 ",\n", super_table_slots (sb));
  printf ("    \"block_bytes\": %" PRIu32 ",\n", sb->block_bytes);
  printf ("    \"seq\": %" PRIu64 ",\n", sb->seq);
  printf ("    \"slot\": %d,\n", in->slot);
  printf ("    \"created_unix\": %" PRIu64 ",\n", sb->created_unix);
  printf ("    \"formatted_device_bytes\": %" PRIu64 ",\n", sb->device_bytes);
  printf ("    \"bucket_bytes\": %" PRIu64 ",\n", super_bucket_bytes (sb));
  printf ("    \"nbuckets\": %" PRIu32 ",\n", sb->nbuckets);
  printf ("    \"journal_first\": %" PRIu32 ",\n", sb->journal_first);
  printf ("    \"journal_buckets\": %" PRIu32 ",\n", sb->journal_buckets);
  printf ("    \"prio_first\": %" PRIu32 ",\n", sb->prio_first);
  printf ("    \"prio_buckets\": %" PRIu32 ",\n", sb->prio_buckets);
  printf ("    \"data_checksums\": %s,\n",
          (sb->features & NC_FEATURE_DATA_CSUM) ? "true" : "false");
  printf ("    \"csum_first\": %" PRIu32 ",\n", sb->csum_first);
  printf ("    \"csum_buckets\": %" PRIu32 ",\n", sb->csum_buckets);
  printf ("    \"data_first\": %" PRIu32 "\n  },\n", sb->data_first);

  printf ("  \"exports\": [");
  for (i = 0; i < NC_MAX_EXPORTS; i++) {
    const struct nc_sb_export *e = &sb->exports[i];
    char idbuf[80];

    if (e->id == 0)
      continue;
    fmt_backing_id (e, idbuf, sizeof idbuf);
    printf ("%s\n    { \"id\": %u, \"name\": ", first ? "" : ",", e->id);
    print_json_string (e->name);
    printf (", \"uri\": ");
    print_json_string (e->uri);
    printf (", \"backing_bytes\": %" PRIu64 ", \"mode\": \"%s\", "
            "\"identity\": \"%s\", \"backing_id\": ", e->backing_bytes,
            fmt_mode (e->mode), fmt_identity (e));
    print_json_string (idbuf);
    printf (", \"forgetting\": %s }",
            e->flags & NC_SLOT_FORGETTING ? "true" : "false");
    first = false;
  }
  printf ("%s],\n", first ? "" : "\n  ");

  if (journal_r < 0)
    printf ("  \"journal\": null,\n");
  else
    printf ("  \"journal\": { \"first_seq\": %" PRIu64 ", \"last_seq\": %"
            PRIu64 ", \"pending_keys\": %" PRIu64 " },\n",
            in->jinfo.first_seq, in->jinfo.last_seq, in->journal_keys);

  if (!in->walk_done)
    printf ("  \"buckets\": null,\n  \"index\": null,\n");
  else {
    printf ("  \"buckets\": { \"data_area\": %" PRIu32 ", \"free\": %" PRIu32
            ", \"data\": %" PRIu32 ", \"dirty\": %" PRIu32 ", \"btree\": %"
            PRIu32 ", \"live_bytes\": %" PRIu64 ", \"dirty_bytes\": %" PRIu64
            " },\n", in->usage.nbuckets,
            in->usage.free + in->usage.empty + in->usage.pending,
            in->usage.data + in->usage.open, in->usage.dirty_buckets,
            in->usage.btree, in->walk.live_blocks * NC_BLOCK_BYTES,
            in->walk.dirty_blocks * NC_BLOCK_BYTES);
    printf ("  \"index\": { \"depth\": %u, \"nodes\": %" PRIu64
            ", \"leaves\": %" PRIu64 ", \"keys\": %" PRIu64
            ", \"dirty_keys\": %" PRIu64 ", \"zero_keys\": %" PRIu64
            ", \"stale_keys\": %" PRIu64 " },\n",
            in->walk.depth, in->walk.nodes, in->walk.leaves, in->walk.keys,
            in->walk.dirty_keys, in->walk.zero_keys, in->walk.stale_keys);
  }
  printf ("  \"damaged\": %s,\n  \"newer_version\": %s\n}\n",
          damaged ? "true" : "false", newer ? "true" : "false");
}

/* ---- the command ---- */

static const struct option show_options[] = {
  { "json", no_argument, NULL, 'j' },
  { "verbose", no_argument, NULL, 'v' },
  { "help", no_argument, NULL, 'h' },
  { NULL, 0, NULL, 0 },
};

int
cmd_show (int argc, char **argv)
{
  struct inspect *in = NULL;
  bool json = false, damaged = false, newer = false;
  int c, r, journal_r = -ENODATA, walk_r = -ENODATA;

  while ((c = getopt_long (argc, argv, "vh", show_options, NULL)) != -1) {
    switch (c) {
    case 'j': json = true; break;
    case 'v': log_set_level (LOG_LEVEL_DEBUG); break;
    case 'h':
      printf ("Usage: nbdcache show PATH [--json]\n");
      return EXIT_OK;
    default:
      fprintf (stderr, "Usage: nbdcache show PATH [--json]\n");
      return EXIT_TROUBLE;
    }
  }
  if (optind + 1 != argc) {
    fprintf (stderr, "nbdcache show: %s\nUsage: nbdcache show PATH "
             "[--json]\n", optind == argc ? "PATH is missing"
             : "too many arguments");
    return EXIT_TROUBLE;
  }

  r = inspect_open (argv[optind], &in);
  if (r == -EBADMSG && json) {
    /* Still a valid answer: what each copy is, and "damaged". */
    json_head (in);
    printf ("  \"superblock\": null,\n  \"damaged\": true,\n"
            "  \"newer_version\": false\n}\n");
  }
  if (r < 0) {
    inspect_close (in);
    return r == -EBADMSG ? EXIT_DAMAGED : EXIT_TROUBLE;
  }
  in->report = stderr;

  r = inspect_prios (in);
  if (r == 0) {
    journal_r = inspect_journal (in);
    if (journal_r == 0) {
      if (in->journal_bad_keys > 0)
        damaged = true;
      walk_r = inspect_walk (in);
      if (walk_r == 0 && in->walk.double_refs > 0)
        damaged = true;
    }
  }
  if (r < 0 || journal_r < 0 || walk_r < 0) {
    int bad = r < 0 ? r : journal_r < 0 ? journal_r : walk_r;

    if (bad == -EPROTONOSUPPORT)
      newer = true;             /* refused, as check says; not damage */
    else if (bad != -EBADMSG) {
      inspect_close (in);
      return EXIT_TROUBLE;
    }
    else
      damaged = true;
  }

  if (json)
    show_json (in, journal_r, damaged, newer);
  else {
    show_text (in, journal_r, walk_r);
    if (damaged)
      printf ("DAMAGED: run 'nbdcache check %s' for details\n", in->path);
    else if (newer)
      printf ("REFUSED: written by a newer version of nbdcache; this "
              "version does not use it\n");
  }
  inspect_close (in);
  return damaged || newer ? EXIT_DAMAGED : EXIT_OK;
}
