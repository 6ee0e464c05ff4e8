/* SPDX-License-Identifier: BSD-3-Clause */
/* inspect.c — a cache device opened read-only, for nbdcache show/check.
 *
 * WHAT: opens the device read-only, reads both superblock copies (each
 * judged on its own), then assembles the device read-only, step by step,
 * through the engine's assembly (assemble.h: the recovery order the server
 * runs): the superblock in use, the prios, the journal replayed into
 * memory only (the root and a count of the keys still pending, each key
 * checked), and one walk of the whole index through a read-only btree (no
 * journal), marking buckets the way recovery does so bucket_get_usage can
 * report free/data/dirty/btree buckets.  The walk
 * also checks two things no single node can: that no bucket is both a
 * btree node and data (or two nodes), and that no data block is claimed
 * by two current keys.
 * WHY: show and check must see exactly what the server would see at open,
 * through the same code, yet never write: the device is opened O_RDONLY,
 * the btree has no journal, and the journal keys are counted rather than
 * replayed (replaying could split nodes, which writes).
 * INVARIANTS: nothing here writes to the device (a write would fail with
 * -EROFS anyway).  in->walk is meaningful only when walk_done.  The view
 * is consistent: the read-only open takes the device's lock shared
 * (cdev.h), so it is refused while a server or nbdcache format has the
 * device, and no writer can start while we look.  A device with no
 * nbdcache superblock is described (libblkid: "it holds an ext4
 * filesystem"), never offered for formatting.
 * THREADS AND LOCKS: one thread.
 * FAILURE: 0 or -errno.  The engine modules log what is wrong (bucket,
 * reason); messages here add what was being inspected.  Double
 * references are printed on stdout as problems (they are not errors of
 * any one module) and counted in walk.double_refs.
 * NOT HERE: presenting the results (show.c, check.c).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "assemble.h"
#include "bkey.h"
#include "bucket.h"
#include "cdev.h"
#include "compiler.h"
#include "journal.h"
#include "log.h"
#include "super.h"

/* The block bitmap for the double-reference check is skipped above this
 * (a 32 TiB device at 4 KiB blocks).
 */
#define BLOCK_MAP_MAX_BYTES (UINT64_C (1) << 30)
/* Print at most this many problems of one kind, then a count. */
#define MAX_PRINTED 20u

enum role { ROLE_NONE = 0, ROLE_NODE, ROLE_DATA };

static void
read_copies (struct inspect *in)
{
  struct nc_sb *buf = calloc (1, sizeof *buf);
  struct super_copy sc;
  int i;

  for (i = 0; i < NC_SB_SLOTS; i++) {
    struct inspect_sb_copy *c = &in->copies[i];

    memset (c, 0, sizeof *c);
    if (buf == NULL) {
      c->why = "out of memory";
      continue;
    }
    super_read_copy (in->cd, i, buf, &sc);
    c->readable = sc.state != SUPER_COPY_IO_ERROR &&
      in->cd->size_bytes >= NC_SB_SLOTS * NC_BLOCK_BYTES;
    c->has_magic = sc.has_magic;
    c->seq = sc.seq;
    c->version = sc.version;
    c->why = sc.why;
  }
  free (buf);
}

/* No nbdcache superblock at all.  Say what the device holds if libblkid
 * knows, and never suggest formatting it: it may be someone's data.
 * -ENOTSUP (logged).
 */
static int
not_a_cache (struct inspect *in)
{
  char what[256];

  if (cdev_foreign_signature (in->path, what, sizeof what) > 0)
    log_error ("%s: not an nbdcache cache device: it holds %s", in->path,
               what);
  else
    log_error ("%s: not an nbdcache cache device (no nbdcache superblock)",
               in->path);
  return -ENOTSUP;
}

int
inspect_open (const char *path, struct inspect **out)
{
  const struct cdev_file_options opts = { .readonly = true };
  struct inspect *in = calloc (1, sizeof *in);
  int r;

  if (in == NULL)
    return -ENOMEM;
  in->path = path;
  in->slot = -1;
  in->report = stdout;
  if ((r = cdev_file_open (path, &opts, &in->cd)) < 0) {
    free (in);
    return r;
  }
  {
    const struct assemble_slots slots = {
      .sb = &in->sb, .bs = &in->bs, .journal = &in->journal, .bt = &in->bt,
    };

    assemble_init (&in->assembly, in->cd, path, &slots);
  }
  read_copies (in);
  *out = in;
  if (!in->copies[0].has_magic && !in->copies[1].has_magic &&
      (in->cd->size_bytes < NC_SB_SLOTS * NC_BLOCK_BYTES ||
       (in->copies[0].readable && in->copies[1].readable)))
    return not_a_cache (in);
  r = assemble_super (&in->assembly);
  in->slot = in->assembly.slot;
  return r;
}

void
inspect_close (struct inspect *in)
{
  if (in == NULL)
    return;
  progress_end (&in->progress);
  admin_set_progress (NULL);
  assemble_release (&in->assembly);     /* read-only: frees, never writes */
  cdev_close (in->cd);
  free (in->data_keys);
  free (in);
}

int
inspect_prios (struct inspect *in)
{
  const struct assemble_options o = { .readonly = true };

  return assemble_prios (&in->assembly, &o);
}

int
inspect_keep_data_key (struct inspect *in, const struct nc_key *k)
{
  if (!in->collect_data)
    return 0;
  if (in->nr_data_keys == in->data_keys_cap) {
    size_t cap = in->data_keys_cap ? 2 * in->data_keys_cap : 1024;
    struct nc_key *n = realloc (in->data_keys, cap * sizeof *n);

    if (n == NULL) {
      log_error ("%s: out of memory keeping the data keys", in->path);
      return -ENOMEM;
    }
    in->data_keys = n;
    in->data_keys_cap = cap;
  }
  in->data_keys[in->nr_data_keys++] = *k;
  return 0;
}

/* ---- the journal ---- */

static int
count_journal_key (void *opaque, const struct nc_key *k, uint64_t seq,
                   const char *why)
{
  struct inspect *in = opaque;

  in->journal_keys++;
  if (why == NULL && !(k->flags & NC_KEY_DELETE) && bkey_has_data (k) &&
      inspect_keep_data_key (in, k) < 0)
    return -ENOMEM;
  if (why != NULL) {
    in->journal_bad_keys++;
    if (in->journal_bad_keys <= MAX_PRINTED) {
      progress_clear (&in->progress);
      fprintf (in->report, "  PROBLEM: journal entry %" PRIu64 ": key "
               "(export %u, blocks %" PRIu64 "+%" PRIu32 ", flags 0x%02x, "
               "bucket %" PRIu32 "): %s\n", seq, k->export_id,
               k->end - k->size, k->size, k->flags, k->bucket, why);
    }
  }
  return 0;
}

int
inspect_journal (struct inspect *in)
{
  const struct assemble_options o = {
    .readonly = true, .journal_key = count_journal_key, .opaque = in,
  };
  int r;

  if ((r = journal_check (in->cd, &in->sb, &in->jinfo)) < 0)
    return r;
  in->journal_keys = in->journal_bad_keys = 0;
  if ((r = assemble_journal (&in->assembly, &o)) < 0)
    return r;
  in->journal_done = true;
  if (in->journal_bad_keys > MAX_PRINTED)
    fprintf (in->report, "  PROBLEM: ... and %" PRIu64 " more invalid "
             "journal keys\n", in->journal_bad_keys - MAX_PRINTED);
  return 0;
}

/* ---- the walk ---- */

struct walk {
  struct inspect *in;
  uint8_t *role;                /* per bucket: enum role */
  uint64_t *block_map;          /* data blocks claimed by current keys;
                                   NULL if too big to keep */
  uint64_t printed;
  /* Progress: each export's blocks laid end to end in id order. */
  uint64_t base[NC_MAX_EXPORTS + 1], blocks[NC_MAX_EXPORTS + 1];
  uint64_t total;
  bool known[NC_MAX_EXPORTS + 1]; /* ids in the export table */
};

static void
problem (struct walk *w, const char *fmt, ...)
  ATTRIBUTE_FORMAT_PRINTF (2, 3);

static void
problem (struct walk *w, const char *fmt, ...)
{
  va_list ap;

  w->in->walk.double_refs++;
  if (++w->printed > MAX_PRINTED)
    return;
  progress_clear (&w->in->progress);
  fputs ("  PROBLEM: ", w->in->report);
  va_start (ap, fmt);
  vfprintf (w->in->report, fmt, ap);
  va_end (ap);
  fputc ('\n', w->in->report);
}

static void
set_role (struct walk *w, uint32_t bucket, enum role role)
{
  uint8_t old;

  if (w->role == NULL || bucket >= w->in->sb.nbuckets)
    return;
  old = w->role[bucket];
  if (old == ROLE_NODE && role == ROLE_NODE)
    problem (w, "bucket %" PRIu32 " holds two btree nodes", bucket);
  else if (old != ROLE_NONE && old != role)
    problem (w, "bucket %" PRIu32 " is used both by a btree node and by "
             "data", bucket);
  if (old != ROLE_NODE)
    w->role[bucket] = (uint8_t) role;
}

static void
claim_blocks (struct walk *w, const struct nc_key *k)
{
  uint64_t first, i;
  bool reported = false;

  if (w->block_map == NULL)
    return;
  first = (uint64_t) k->bucket * w->in->sb.bucket_blocks + k->offset;
  if (first + k->size >
      (uint64_t) w->in->sb.nbuckets * w->in->sb.bucket_blocks)
    return;                     /* the walk reports invalid keys itself */
  for (i = first; i < first + k->size; i++) {
    uint64_t bit = UINT64_C (1) << (i % 64);

    if ((w->block_map[i / 64] & bit) && !reported) {
      problem (w, "export %u blocks %" PRIu64 "+%" PRIu32 ": cache block %"
               PRIu64 " (bucket %" PRIu32 ") is also used by another key",
               k->export_id, k->end - k->size, k->size, i, k->bucket);
      reported = true;
    }
    w->block_map[i / 64] |= bit;
  }
}

static void
draw (struct walk *w, uint64_t pos)
{
  const struct inspect_walk *s = &w->in->walk;

  progress_draw (&w->in->progress, pos, "%" PRIu64 " nodes, %" PRIu64
                 " keys", s->nodes, s->keys);
}

static int
walk_node (void *opaque, uint32_t bucket, uint16_t level, uint32_t nkeys)
{
  struct walk *w = opaque;
  struct inspect_walk *s = &w->in->walk;

  s->nodes++;
  if (level == 0)
    s->leaves++;
  if (level + 1u > s->depth)
    s->depth = (uint16_t) (level + 1u);
  set_role (w, bucket, ROLE_NODE);
  if (progress_due (&w->in->progress))
    draw (w, w->in->progress.done);
  return 0;
}

static int
walk_key (void *opaque, const struct nc_key *k, bool current)
{
  struct walk *w = opaque;
  struct inspect_walk *s = &w->in->walk;

  s->keys++;
  if (k->export_id > NC_MAX_EXPORTS || !w->known[k->export_id]) {
    s->foreign_keys++;
    if (bkey_is_dirty (k))
      s->foreign_dirty_keys++;
  }

  if (bkey_is_zero (k)) {
    s->zero_keys++;
    if (bkey_is_dirty (k))
      s->dirty_keys++;
  }
  else if (current) {
    s->live_blocks += k->size;
    if (bkey_is_dirty (k)) {
      s->dirty_keys++;
      s->dirty_blocks += k->size;
    }
    set_role (w, k->bucket, ROLE_DATA);
    claim_blocks (w, k);
    if (inspect_keep_data_key (w->in, k) < 0)
      return -ENOMEM;
  }
  else
    s->stale_keys++;

  if (progress_due (&w->in->progress)) {
    uint64_t pos = 0;

    if (k->export_id <= NC_MAX_EXPORTS)
      pos = w->base[k->export_id] + MIN (k->end, w->blocks[k->export_id]);
    draw (w, pos);
  }
  return 0;
}

static void
plan_progress (struct walk *w)
{
  const struct nc_sb *sb = &w->in->sb;
  uint64_t base = 0;
  unsigned id;
  size_t i;

  for (id = 1; id <= NC_MAX_EXPORTS; id++) {
    w->base[id] = base;
    for (i = 0; i < NC_MAX_EXPORTS; i++)
      if (sb->exports[i].id == id) {
        w->known[id] = true;
        w->blocks[id] = (sb->exports[i].backing_bytes + NC_BLOCK_BYTES - 1)
          / NC_BLOCK_BYTES;
      }
    base += w->blocks[id];
  }
  w->total = base;
}

int
inspect_walk (struct inspect *in)
{
  struct walk w = { .in = in };
  const struct assemble_options o = {
    .readonly = true, .node = walk_node, .key = walk_key, .opaque = &w,
  };
  uint64_t map_bytes;
  int r;

  memset (&in->walk, 0, sizeof in->walk);
  in->walk_done = false;

  w.role = calloc (in->sb.nbuckets, 1);
  map_bytes = ((uint64_t) in->sb.nbuckets * in->sb.bucket_blocks + 63) / 64
    * sizeof (uint64_t);
  if (map_bytes <= BLOCK_MAP_MAX_BYTES)
    w.block_map = calloc (1, map_bytes);
  if (w.role == NULL || w.block_map == NULL)
    log_warning ("%s: not enough memory to check for doubly used buckets "
                 "and blocks; skipping that check", in->path);

  plan_progress (&w);
  progress_start (&in->progress, "walking the index", w.total);
  admin_set_progress (&in->progress);

  if ((r = assemble_index (&in->assembly, &o)) < 0)
    goto out;
  bucket_get_usage (in->bs, &in->usage);
  in->walk_done = true;
  if (w.printed > MAX_PRINTED)
    fprintf (in->report, "  PROBLEM: ... and %" PRIu64 " more doubly used "
             "buckets or blocks\n", w.printed - MAX_PRINTED);
  r = 0;

 out:
  progress_end (&in->progress);
  admin_set_progress (NULL);
  free (w.role);
  free (w.block_map);
  return r;
}
