/* SPDX-License-Identifier: BSD-3-Clause */
/* check.c — nbdcache check: verify a cache device, read-only.
 *
 * WHAT: checks, in recovery order, and reports one line per structure:
 * both superblock copies; both prio copies (at least one must be valid);
 * the journal (a replayable chain of entries, every key in it
 * well-formed); the whole index (every node and key, through the btree's
 * own walk, which checks checksums, order, bounds, levels and gens), plus
 * the cross-checks of inspect.c (no bucket or block used twice).  With
 * --data, every cached block read and verified against the data
 * checksums (scrub.c): a dirty block that fails is a problem, a clean one
 * a note.
 * With --json the same report is one JSON document on stdout:
 *   {"version":1,"path":…,"size_bytes":N,
 *    "status":"clean"|"damaged"|"incomplete"|"not-a-cache"|"error",
 *    "exit_status":0|1|2,"counts":{"problems":N,"notes":N},
 *    "problems":[{"stage":…,"message":…}],   (lines that are damage)
 *    "notes":[{"stage":…,"message":…}],
 *    "lines":[{"stage":…,"kind":"info"|"note"|"problem"|"error",
 *              "message":…}],                (every "STAGE: MESSAGE"
 *                                             line of the text report)
 *    "details":[…],  (the indented PROBLEM lines of the text report)
 *    "messages":[{"level":"error"|"warning",…,"message":…}]}  (the log)
 * counts.problems is the text's "N problems" (one line may count up to
 * 1000: a bucket used twice each), so it can exceed len(problems).
 * WHY: an admin must be able to tell whether a cache is intact before
 * trusting it, and what exactly is wrong when it is not, without a server;
 * a monitoring job must be able to tell it without parsing English.
 * INVARIANTS: reads only (the device is opened read-only).  A later stage
 * runs only if what it depends on is sound: no valid superblock, nothing
 * else; no prios, no index walk; no journal (it holds the root), no walk.
 * Every report line goes through say(), so the text and JSON reports
 * hold the same lines.  With --json stdout holds the document and nothing
 * else (log messages still go to stderr too).
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
#include <stdarg.h>
#include <string.h>

#include <json.h>

#include "admin.h"
#include "cdev.h"
#include "compiler.h"
#include "log.h"
#include "super.h"

#define CHECK_JSON_VERSION 1

struct tally {
  unsigned problems;            /* damage: exit 1 */
  unsigned notes;               /* worth knowing, not damage */
  bool trouble;                 /* I/O error: exit 2 */
  bool newer;                   /* refused: a newer version wrote it */
  struct json_object *lines;    /* --json: the report lines; NULL: text */
};

enum kind { INFO, NOTE, PROBLEM, TROUBLE };

/* One report line, "STAGE: MESSAGE": printed, or kept for the JSON
 * document.  Counting is the caller's.
 */
static void ATTRIBUTE_FORMAT_PRINTF (4, 5)
say (struct tally *t, enum kind kind, const char *stage, const char *fmt,
     ...)
{
  static const char *const kinds[] = {
    [INFO] = "info", [NOTE] = "note", [PROBLEM] = "problem",
    [TROUBLE] = "error",
  };
  struct json_object *o;
  char msg[1024];
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (msg, sizeof msg, fmt, ap);
  va_end (ap);
  if (t->lines == NULL) {
    printf ("%s: %s\n", stage, msg);
    return;
  }
  if ((o = json_object_new_object ()) == NULL)
    return;                     /* out of memory: the line is lost */
  json_object_object_add (o, "stage", json_object_new_string (stage));
  json_object_object_add (o, "kind", json_object_new_string (kinds[kind]));
  json_object_object_add (o, "message", json_object_new_string (msg));
  json_object_array_add (t->lines, o);
}

/* Stage result r: 0 fine; -EBADMSG damage (the module logged why);
 * anything else an I/O (or memory) error that stops the check.
 */
static bool
stage_ok (struct tally *t, const char *what, int r)
{
  if (r == 0)
    return true;
  if (r == -EBADMSG) {
    say (t, PROBLEM, what, "DAMAGED (see the messages above)");
    t->problems++;
  }
  else if (r == -EPROTONOSUPPORT) {
    say (t, PROBLEM, what, "REFUSED: written by a newer version of "
         "nbdcache (see the messages above)");
    t->problems++;
    t->newer = true;
  }
  else {
    say (t, TROUBLE, what, "cannot check: %s", strerror (-r));
    t->trouble = true;
  }
  return false;
}

static void
check_sb_copies (struct inspect *in, struct tally *t)
{
  int i;

  char stage[32];

  for (i = 0; i < NC_SB_SLOTS; i++) {
    const struct inspect_sb_copy *c = &in->copies[i];

    snprintf (stage, sizeof stage, "superblock copy %d", i);
    if (c->why == NULL)
      say (t, INFO, stage, "ok, seq %" PRIu64 "%s", c->seq,
           i == in->slot ? " (in use)" : "");
    else if (!c->readable) {
      say (t, NOTE, stage, "UNREADABLE");
      t->notes++;
    }
    else {
      say (t, NOTE, stage, "%s (%s)", c->has_magic ? "DAMAGED" : "MISSING",
           c->why);
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
  char stage[32];

  for (c = 0; c < 2; c++) {
    why[c] = prio_check_copy (in->cd, &in->sb, c, &seq[c]);
    if (why[c] == NULL) {
      valid++;
      if (use < 0 || seq[c] > seq[use])
        use = c;
    }
  }
  for (c = 0; c < 2; c++) {
    snprintf (stage, sizeof stage, "prio copy %c", 'A' + c);
    if (why[c] == NULL)
      say (t, INFO, stage, "ok, seq %" PRIu64 "%s", seq[c],
           c == use ? " (in use)" : "");
    else if (valid > 0 && prio_never_written (in, c))
      say (t, INFO, stage, "not written yet");
    else if (valid > 0) {
      say (t, NOTE, stage, "not usable (%s); copy %c is used", why[c],
           'A' + use);
      t->notes++;
    }
    else                        /* counted once, as "prios" below */
      say (t, INFO, stage, "DAMAGED (%s)", why[c]);
  }
  if (valid == 0) {
    say (t, PROBLEM, "prios", "DAMAGED: no valid prio copy");
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
  say (t, INFO, "journal", "%s, entries %" PRIu64 "-%" PRIu64 " to "
       "replay, %" PRIu64 " key%s pending replay, %" PRIu64 " valid "
       "entr%s in the ring", in->journal_bad_keys ? "DAMAGED" : "ok",
       in->jinfo.first_seq, in->jinfo.last_seq, in->journal_keys,
       in->journal_keys == 1 ? "" : "s", in->jinfo.valid_entries_seen,
       in->jinfo.valid_entries_seen == 1 ? "y" : "ies");
  /* Entries of version 4 (nbdcache-format(5) Redo): not a problem. */
  if (journal_redo_count (in->journal) > 0)
    say (t, INFO, "journal", "the newest write carries the data of %zu "
         "key%s inline; the next open writes it back where the index "
         "still points at it", journal_redo_count (in->journal),
         journal_redo_count (in->journal) == 1 ? "" : "s");
  if (in->journal_bad_keys > 0) {
    say (t, PROBLEM, "journal", "%" PRIu64 " invalid key%s",
         in->journal_bad_keys, in->journal_bad_keys == 1 ? "" : "s");
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
  say (t, INFO, "index", "%s, depth %u, %" PRIu64 " node%s (%" PRIu64
       " lea%s), %" PRIu64 " key%s (%" PRIu64 " dirty, %" PRIu64 " zero, %"
       PRIu64 " stale)", w->double_refs || w->foreign_dirty_keys ? "DAMAGED"
       : "ok", w->depth, w->nodes,
       w->nodes == 1 ? "" : "s", w->leaves, w->leaves == 1 ? "f" : "ves",
       w->keys, w->keys == 1 ? "" : "s", w->dirty_keys, w->zero_keys,
       w->stale_keys);
  if (w->double_refs > 0) {
    say (t, PROBLEM, "index", "%" PRIu64 " bucket%s or block%s used twice",
         w->double_refs, w->double_refs == 1 ? "" : "s",
         w->double_refs == 1 ? "" : "s");
    t->problems += (unsigned) MIN (w->double_refs, 1000u);
  }
  if (w->foreign_dirty_keys > 0) {
    /* Slots are never freed: dirty data of an id not in the table can
     * never be written back.
     */
    say (t, PROBLEM, "index", "%" PRIu64 " DIRTY key%s of export ids that "
         "are not in the export table (their data can never be written "
         "back)", w->foreign_dirty_keys,
         w->foreign_dirty_keys == 1 ? "" : "s");
    t->problems += (unsigned) MIN (w->foreign_dirty_keys, 1000u);
  }
  if (w->foreign_keys > w->foreign_dirty_keys) {
    say (t, NOTE, "index", "note: %" PRIu64 " clean key%s of export ids "
         "that are not in the export table",
         w->foreign_keys - w->foreign_dirty_keys,
         w->foreign_keys - w->foreign_dirty_keys == 1 ? "" : "s");
    t->notes++;
  }
}

/* --data: every cached block against its checksum.  Dirty blocks that
 * fail are damage (the only copy is bad: the server answers them with
 * EIO); clean ones a note (the server reads them from the backing store).
 */
static void
check_data (struct inspect *in, struct tally *t)
{
  struct scrub_result *res = malloc (sizeof *res);
  char stage[300];
  unsigned id;
  size_t i;

  if (res == NULL) {
    stage_ok (t, "data", -ENOMEM);
    return;
  }
  if (!stage_ok (t, "data", inspect_scrub (in, res)))
    goto out;
  if (!res->has_checksums) {
    say (t, NOTE, "data", "not checked: the cache has no data checksums "
         "(made before them)");
    t->notes++;
    goto out;
  }
  say (t, INFO, "data", "%s, %" PRIu64 " block%s verified, %" PRIu64
       " corrupt (%" PRIu64 " dirty, %" PRIu64 " clean)",
       res->bad_dirty > 0 ? "DAMAGED" : "ok", res->blocks,
       res->blocks == 1 ? "" : "s", res->bad_dirty + res->bad_clean,
       res->bad_dirty, res->bad_clean);
  if (res->redone > 0)
    say (t, INFO, "data", "%" PRIu64 " of them not verified: the newest "
         "journal write carries them, the next open rewrites them",
         res->redone);
  for (id = 0; id <= NC_MAX_EXPORTS; id++) {
    const struct scrub_export *x = &res->x[id];
    const char *name = "?";

    if (x->bad_dirty + x->bad_clean == 0)
      continue;
    for (i = 0; i < NC_MAX_EXPORTS; i++)
      if (in->sb.exports[i].id == id)
        name = in->sb.exports[i].name;
    snprintf (stage, sizeof stage, "data of export %u (%s)", id, name);
    if (x->bad_dirty > 0) {
      say (t, PROBLEM, stage, "%" PRIu64 " DIRTY block%s %s "
           "checksum (reads fail with EIO; never written back)",
           x->bad_dirty, x->bad_dirty == 1 ? "" : "s",
           x->bad_dirty == 1 ? "fails its" : "fail their");
      t->problems += (unsigned) MIN (x->bad_dirty, 1000u);
    }
    if (x->bad_clean > 0) {
      say (t, NOTE, stage, "note: %" PRIu64 " clean block%s %s "
           "checksum (read from the backing store instead)", x->bad_clean,
           x->bad_clean == 1 ? "" : "s",
           x->bad_clean == 1 ? "fails its" : "fail their");
      t->notes++;
    }
  }
 out:
  free (res);
}

/* ---- --json ---- */

/* What --json collects besides the lines: the log and the indented
 * PROBLEM details (inspect.c prints them to in->report).  The log sink
 * has no opaque pointer, hence the one file-static.
 */
struct json_report {
  struct json_object *messages;
  char *details;                /* in->report's text (open_memstream) */
  size_t details_len;
  FILE *details_fp;
};
static struct json_object *captured_messages;

static void
capture_sink (enum log_level level, const char *msg)
{
  static const char *const names[] = {
    [LOG_LEVEL_ERROR] = "error", [LOG_LEVEL_WARNING] = "warning",
    [LOG_LEVEL_INFO] = "info", [LOG_LEVEL_DEBUG] = "debug",
  };
  struct json_object *o;

  admin_log_sink (level, msg);
  if (captured_messages == NULL || (o = json_object_new_object ()) == NULL)
    return;
  json_object_object_add (o, "level", json_object_new_string
                          ((unsigned) level < 4 ? names[level] : "?"));
  json_object_object_add (o, "message", json_object_new_string (msg));
  json_object_array_add (captured_messages, o);
}

/* Lines of kind of t->lines as [{"stage","message"}]. */
static struct json_object *
lines_of_kind (struct json_object *lines, const char *kind)
{
  struct json_object *arr = json_object_new_array (), *l, *k, *o, *f;
  size_t i, n = json_object_array_length (lines);

  for (i = 0; arr != NULL && i < n; i++) {
    l = json_object_array_get_idx (lines, i);
    if (!json_object_object_get_ex (l, "kind", &k) ||
        strcmp (json_object_get_string (k), kind) != 0 ||
        (o = json_object_new_object ()) == NULL)
      continue;
    if (json_object_object_get_ex (l, "stage", &f))
      json_object_object_add (o, "stage", json_object_get (f));
    if (json_object_object_get_ex (l, "message", &f))
      json_object_object_add (o, "message", json_object_get (f));
    json_object_array_add (arr, o);
  }
  return arr;
}

/* The indented "  PROBLEM: " lines as an array of their text. */
static struct json_object *
details_of (const char *text)
{
  struct json_object *arr = json_object_new_array ();
  const char *p = text, *nl;

  while (arr != NULL && p != NULL && *p != '\0') {
    nl = strchr (p, '\n');
    while (*p == ' ')
      p++;
    if (strncmp (p, "PROBLEM: ", 9) == 0)
      p += 9;
    json_object_array_add (arr, json_object_new_string_len
                           (p, nl ? (int) (nl - p) : (int) strlen (p)));
    p = nl ? nl + 1 : NULL;
  }
  return arr;
}

/* Print the document; returns status. */
static int
print_json (const char *path, const struct inspect *in, struct tally *t,
            struct json_report *jr, const char *result, int status)
{
  struct json_object *doc = json_object_new_object (), *counts;
  const char *s;

  if (jr->details_fp != NULL) {
    fclose (jr->details_fp);
    jr->details_fp = NULL;
  }
  counts = json_object_new_object ();
  if (doc == NULL || counts == NULL) {
    json_object_put (doc);
    json_object_put (counts);
    log_error ("out of memory");
    return EXIT_TROUBLE;
  }
  json_object_object_add (doc, "version",
                          json_object_new_int (CHECK_JSON_VERSION));
  json_object_object_add (doc, "path", json_object_new_string (path));
  if (in != NULL)
    json_object_object_add (doc, "size_bytes",
                            json_object_new_uint64 (in->cd->size_bytes));
  json_object_object_add (doc, "status", json_object_new_string (result));
  json_object_object_add (doc, "exit_status", json_object_new_int (status));
  json_object_object_add (counts, "problems",
                          json_object_new_int64 (t->problems));
  json_object_object_add (counts, "notes", json_object_new_int64 (t->notes));
  json_object_object_add (doc, "counts", counts);
  json_object_object_add (doc, "problems",
                          lines_of_kind (t->lines, "problem"));
  json_object_object_add (doc, "notes", lines_of_kind (t->lines, "note"));
  json_object_object_add (doc, "lines", json_object_get (t->lines));
  json_object_object_add (doc, "details",
                          details_of (jr->details ? jr->details : ""));
  json_object_object_add (doc, "messages",
                          json_object_get (jr->messages));
  s = json_object_to_json_string_ext (doc, JSON_C_TO_STRING_PLAIN |
                                      JSON_C_TO_STRING_NOSLASHESCAPE);
  if (s == NULL) {
    log_error ("out of memory");
    status = EXIT_TROUBLE;
  }
  else
    printf ("%s\n", s);
  json_object_put (doc);
  return status;
}

static void
json_report_end (struct json_report *jr)
{
  log_set_sink (admin_log_sink);
  captured_messages = NULL;
  if (jr->details_fp != NULL)
    fclose (jr->details_fp);
  free (jr->details);
  json_object_put (jr->messages);
}

static const struct option check_options[] = {
  { "data", no_argument, NULL, 'd' },
  { "json", no_argument, NULL, 'j' },
  { "verbose", no_argument, NULL, 'v' },
  { "help", no_argument, NULL, 'h' },
  { NULL, 0, NULL, 0 },
};

#define CHECK_USAGE "Usage: nbdcache check [--data] [--json] PATH\n"

int
cmd_check (int argc, char **argv)
{
  struct tally t = { 0, 0, false, false, NULL };
  struct json_report jr = { NULL, NULL, 0, NULL };
  struct inspect *in = NULL;
  const char *path, *result;
  bool json = false, data = false;
  int c, r, status;

  while ((c = getopt_long (argc, argv, "vh", check_options, NULL)) != -1) {
    switch (c) {
    case 'd': data = true; break;
    case 'j': json = true; break;
    case 'v': log_set_level (LOG_LEVEL_DEBUG); break;
    case 'h':
      printf (CHECK_USAGE);
      return EXIT_OK;
    default:
      fprintf (stderr, CHECK_USAGE);
      return EXIT_TROUBLE;
    }
  }
  if (optind + 1 != argc) {
    fprintf (stderr, "nbdcache check: %s\n" CHECK_USAGE,
             optind == argc ? "PATH is missing" : "too many arguments");
    return EXIT_TROUBLE;
  }
  path = argv[optind];
  if (json) {
    t.lines = json_object_new_array ();
    jr.messages = json_object_new_array ();
    jr.details_fp = open_memstream (&jr.details, &jr.details_len);
    if (t.lines == NULL || jr.messages == NULL || jr.details_fp == NULL) {
      json_object_put (t.lines);
      json_report_end (&jr);
      log_error ("out of memory");
      return EXIT_TROUBLE;
    }
    captured_messages = jr.messages;
    log_set_sink (capture_sink);
  }

  r = inspect_open (path, &in);
  if (in == NULL) {             /* cannot open: logged */
    status = EXIT_TROUBLE;
    if (json)
      status = print_json (path, NULL, &t, &jr, "error", status);
    goto out;
  }
  if (json)
    in->report = jr.details_fp;
  else
    printf ("checking %s (%" PRIu64 " bytes, read-only)\n", path,
            in->cd->size_bytes);
  if (r == -ENOTSUP) {
    status = EXIT_TROUBLE;
    if (json)
      status = print_json (path, in, &t, &jr, "not-a-cache", status);
    else
      printf ("result: not an nbdcache cache device\n");
    goto out;
  }
  in->collect_data = data;
  check_sb_copies (in, &t);
  if (stage_ok (&t, "superblock", r)) {
    /* The journal does not need the prios; the walk needs both. */
    bool prios = check_prio_copies (in, &t);
    bool journal = !t.trouble && check_journal (in, &t);

    if (prios && journal) {
      check_index (in, &t);
      if (data && in->walk_done)
        check_data (in, &t);
    }
    else if (!t.trouble)
      say (&t, INFO, "index", "not checked (it needs the prios and the "
           "journal)");
  }

  status = t.trouble ? EXIT_TROUBLE : t.problems > 0 ? EXIT_DAMAGED : EXIT_OK;
  result = t.trouble ? "incomplete" : t.newer ? "newer-version" :
    t.problems > 0 ? "damaged" : "clean";
  if (json)
    status = print_json (path, in, &t, &jr, result, status);
  else if (t.trouble)
    printf ("result: INCOMPLETE: I/O errors stopped the check\n");
  else if (t.newer)
    printf ("result: REFUSED: written by a newer version of nbdcache\n");
  else if (t.problems > 0)
    printf ("result: DAMAGED: %u problem%s\n", t.problems,
            t.problems == 1 ? "" : "s");
  else
    printf ("result: clean%s\n",
            t.notes > 0 ? " (see the notes above)" : "");

 out:
  inspect_close (in);
  if (json)
    json_report_end (&jr);
  json_object_put (t.lines);
  return status;
}
