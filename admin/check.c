/* SPDX-License-Identifier: BSD-3-Clause */
/* check.c — nbdcache check: verify a cache device, read-only.
 *
 * WHAT: checks, in recovery order, and reports one line per structure:
 * both superblock copies; both prio copies (at least one must be valid);
 * the journal (a replayable chain of entries, every key in it
 * well-formed); the whole index (every node and key, through the btree's
 * own walk, which checks checksums, order, bounds, levels and gens), plus
 * the cross-checks of inspect.c (no bucket or block used twice).
 * WHY: an admin must be able to tell whether a cache is intact before
 * trusting it, and what exactly is wrong when it is not, without a server.
 * INVARIANTS: reads only (the device is opened read-only).  A later stage
 * runs only if what it depends on is sound: no valid superblock, nothing
 * else; no prios, no index walk; no journal (it holds the root), no walk.
 * THREADS AND LOCKS: one thread.
 * FAILURE: exit 0 clean (a superblock or prio copy that is not the one in
 * use may be stale or damaged: reported as a note); 1 damaged (each
 * problem printed); 2 usage, I/O error, or not an nbdcache cache device.
 * NOT HERE: repairing anything.
 */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "cdev.h"
#include "log.h"
#include "super.h"

struct tally {
  unsigned problems;            /* damage: exit 1 */
  unsigned notes;               /* worth knowing, not damage */
  bool trouble;                 /* I/O error: exit 2 */
};

/* Stage result r: 0 fine; -EBADMSG damage (the module logged why);
 * anything else an I/O (or memory) error that stops the check.
 */
static bool
stage_ok (struct tally *t, const char *what, int r)
{
  if (r == 0)
    return true;
  if (r == -EBADMSG) {
    printf ("%s: DAMAGED (see the messages above)\n", what);
    t->problems++;
  }
  else {
    printf ("%s: cannot check: %s\n", what, strerror (-r));
    t->trouble = true;
  }
  return false;
}

static void
check_sb_copies (struct inspect *in, struct tally *t)
{
  int i;

  for (i = 0; i < NC_SB_SLOTS; i++) {
    const struct inspect_sb_copy *c = &in->copies[i];

    printf ("superblock copy %d: ", i);
    if (c->why == NULL)
      printf ("ok, seq %" PRIu64 "%s\n", c->seq,
              i == in->slot ? " (in use)" : "");
    else if (!c->readable) {
      printf ("UNREADABLE\n");
      t->notes++;
    }
    else {
      printf ("%s (%s)\n", c->has_magic ? "DAMAGED" : "MISSING", c->why);
      t->notes++;
    }
  }
}

/* Is the first block of prio copy `copy` all zeros (never written)? */
static bool
prio_never_written (struct inspect *in, int copy)
{
  uint8_t *buf = cdev_alloc_buffer (NC_BLOCK_BYTES);
  uint32_t bucket = in->sb.prio_first + (uint32_t) copy * in->sb.prio_buckets;
  bool zero = false;
  size_t i;

  if (buf != NULL &&
      cdev_pread (in->cd, buf, NC_BLOCK_BYTES,
                  super_bucket_offset (&in->sb, bucket)) == 0) {
    zero = true;
    for (i = 0; i < NC_BLOCK_BYTES && zero; i++)
      zero = buf[i] == 0;
  }
  free (buf);
  return zero;
}

static bool
check_prio_copies (struct inspect *in, struct tally *t)
{
  const char *why[2];
  uint64_t seq[2] = { 0, 0 };
  int c, valid = 0, use = -1;

  for (c = 0; c < 2; c++) {
    why[c] = prio_check_copy (in->cd, &in->sb, c, &seq[c]);
    if (why[c] == NULL) {
      valid++;
      if (use < 0 || seq[c] > seq[use])
        use = c;
    }
  }
  for (c = 0; c < 2; c++) {
    printf ("prio copy %c: ", 'A' + c);
    if (why[c] == NULL)
      printf ("ok, seq %" PRIu64 "%s\n", seq[c], c == use ? " (in use)" : "");
    else if (valid > 0 && prio_never_written (in, c))
      printf ("not written yet\n");
    else if (valid > 0) {
      printf ("not usable (%s); copy %c is used\n", why[c], 'A' + use);
      t->notes++;
    }
    else
      printf ("DAMAGED (%s)\n", why[c]);
  }
  if (valid == 0) {
    printf ("prios: DAMAGED: no valid prio copy\n");
    t->problems++;
    return false;
  }
  return stage_ok (t, "prios", inspect_prios (in));
}

static bool
check_journal (struct inspect *in, struct tally *t)
{
  if (!stage_ok (t, "journal", inspect_journal (in)))
    return false;
  printf ("journal: %s, entries %" PRIu64 "-%" PRIu64 " to replay, %" PRIu64
          " key%s pending replay, %" PRIu64 " valid entr%s in the ring\n",
          in->journal_bad_keys ? "DAMAGED" : "ok",
          in->jinfo.first_seq, in->jinfo.last_seq, in->journal_keys,
          in->journal_keys == 1 ? "" : "s", in->jinfo.valid_entries_seen,
          in->jinfo.valid_entries_seen == 1 ? "y" : "ies");
  if (in->journal_bad_keys > 0) {
    printf ("journal: %" PRIu64 " invalid key%s\n", in->journal_bad_keys,
            in->journal_bad_keys == 1 ? "" : "s");
    t->problems += (unsigned) MIN (in->journal_bad_keys, 1000u);
  }
  return true;
}

static void
check_index (struct inspect *in, struct tally *t)
{
  const struct inspect_walk *w = &in->walk;

  if (!stage_ok (t, "index", inspect_walk (in)))
    return;
  printf ("index: %s, depth %u, %" PRIu64 " node%s (%" PRIu64 " lea%s), %"
          PRIu64 " key%s (%" PRIu64 " dirty, %" PRIu64 " zero, %" PRIu64
          " stale)\n", w->double_refs || w->foreign_dirty_keys ? "DAMAGED"
          : "ok", w->depth, w->nodes,
          w->nodes == 1 ? "" : "s", w->leaves, w->leaves == 1 ? "f" : "ves",
          w->keys, w->keys == 1 ? "" : "s", w->dirty_keys, w->zero_keys,
          w->stale_keys);
  if (w->double_refs > 0) {
    printf ("index: %" PRIu64 " bucket%s or block%s used twice\n",
            w->double_refs, w->double_refs == 1 ? "" : "s",
            w->double_refs == 1 ? "" : "s");
    t->problems += (unsigned) MIN (w->double_refs, 1000u);
  }
  if (w->foreign_dirty_keys > 0) {
    /* Slots are never freed: dirty data of an id not in the table can
     * never be written back.
     */
    printf ("index: %" PRIu64 " DIRTY key%s of export ids that are not in "
            "the export table (their data can never be written back)\n",
            w->foreign_dirty_keys, w->foreign_dirty_keys == 1 ? "" : "s");
    t->problems += (unsigned) MIN (w->foreign_dirty_keys, 1000u);
  }
  if (w->foreign_keys > w->foreign_dirty_keys) {
    printf ("index: note: %" PRIu64 " clean key%s of export ids that are "
            "not in the export table\n",
            w->foreign_keys - w->foreign_dirty_keys,
            w->foreign_keys - w->foreign_dirty_keys == 1 ? "" : "s");
    t->notes++;
  }
}

static const struct option check_options[] = {
  { "verbose", no_argument, NULL, 'v' },
  { "help", no_argument, NULL, 'h' },
  { NULL, 0, NULL, 0 },
};

int
cmd_check (int argc, char **argv)
{
  struct tally t = { 0, 0, false };
  struct inspect *in = NULL;
  const char *path;
  int c, r;

  while ((c = getopt_long (argc, argv, "vh", check_options, NULL)) != -1) {
    switch (c) {
    case 'v': log_set_level (LOG_LEVEL_DEBUG); break;
    case 'h':
      printf ("Usage: nbdcache check PATH\n");
      return EXIT_OK;
    default:
      fprintf (stderr, "Usage: nbdcache check PATH\n");
      return EXIT_TROUBLE;
    }
  }
  if (optind + 1 != argc) {
    fprintf (stderr, "nbdcache check: %s\nUsage: nbdcache check PATH\n",
             optind == argc ? "PATH is missing" : "too many arguments");
    return EXIT_TROUBLE;
  }
  path = argv[optind];

  r = inspect_open (path, &in);
  if (in == NULL)
    return EXIT_TROUBLE;        /* cannot open: logged */
  printf ("checking %s (%" PRIu64 " bytes, read-only)\n", path,
          in->cd->size_bytes);
  if (r == -ENOTSUP) {
    printf ("result: not an nbdcache cache device\n");
    inspect_close (in);
    return EXIT_TROUBLE;
  }
  check_sb_copies (in, &t);
  if (stage_ok (&t, "superblock", r)) {
    /* The journal does not need the prios; the walk needs both. */
    bool prios = check_prio_copies (in, &t);
    bool journal = !t.trouble && check_journal (in, &t);

    if (prios && journal)
      check_index (in, &t);
    else if (!t.trouble)
      printf ("index: not checked (it needs the prios and the journal)\n");
  }

  if (t.trouble)
    printf ("result: INCOMPLETE: I/O errors stopped the check\n");
  else if (t.problems > 0)
    printf ("result: DAMAGED: %u problem%s\n", t.problems,
            t.problems == 1 ? "" : "s");
  else
    printf ("result: clean%s\n",
            t.notes > 0 ? " (see the notes above)" : "");
  inspect_close (in);
  return t.trouble ? EXIT_TROUBLE : t.problems > 0 ? EXIT_DAMAGED : EXIT_OK;
}
