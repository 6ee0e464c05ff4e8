/* SPDX-License-Identifier: BSD-3-Clause */
/* assemble.c — the recovery order (assemble.h), read-write or read-only.
 *
 * WHAT: the four steps of assemble.h: superblock, prios, journal replay
 * into memory, then the index (read-write: mark, replay, redo the newest
 * journal write's inline data, write, start the journal, commit the root,
 * recount; read-only: one marking walk shown to a visitor), and the
 * wiring by which the modules call each other back.
 * WHY: this is the most safety-critical sequence in the engine: nothing
 * may serve from, or report on, a device whose metadata was not checked in
 * this order.  The server (device.c), the inspection (nbdcache show and
 * check) and the benchmark all assemble a device through here, so they
 * see the same device through the same code.
 * INVARIANTS:
 * - A step runs only after the ones before it succeeded.
 * - Nothing the tree or the journal points at is reused while the journal
 *   is replayed (walk #1 marks it first); replayed keys are not counted
 *   twice (accounting is off during replay; walk #2 counts exactly).
 * - Read-only: no journal behind the tree, no replay into it, no write of
 *   any kind; the torn-write window is the same as read-write's (the
 *   journal's open seq after replay), so both judge a bset alike.
 * - A DIRTY key whose export id is not in the table is corruption when
 *   the device is to serve (its data could never be written back); a
 *   read-only visitor sees it and decides.
 * - REDO (journal.c): the inline data of the newest journal write is
 *   written back, with its data checksum words, only where the replayed
 *   index still maps the key's blocks to the same bucket, offset and gen
 *   (buckets are append-only within a gen), and is synced before the
 *   journal writes again or anything is served.  Read-only: not written.
 * - The first walk (read-only: the only one) ends with the cross-checks
 *   of crosscheck.h, before anything is replayed or written, read-write
 *   and read-only alike: a violation refuses the device and fails
 *   nbdcache check.
 * THREADS AND LOCKS: one thread; the journal thread starts in step 4
 * (read-write) and calls back through the struct assembly.
 * FAILURE: 0 or -errno; the modules log what failed (bucket, entry,
 * node); the dirty-key check logs here.  On failure the caller calls
 * assemble_release, which frees without writing.
 * NOT HERE: opening the cache file, formatting (device.c, format.c);
 * starting GC; binding exports.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "assemble.h"
#include "bkey.h"
#include "btree.h"
#include "bucket.h"
#include "cdev.h"
#include "crosscheck.h"
#include "journal.h"
#include "log.h"
#include "super.h"

#define DEFAULT_JOURNAL_DELAY_MS 100u

/* ---- how the modules call each other back (opaque = the assembly) ---- */

static uint64_t
hook_journal_open_seq (void *opaque)
{
  struct assembly *a = opaque;
  return journal_open_seq (*a->journal);
}

static int
hook_journal_flush (void *opaque)
{
  struct assembly *a = opaque;
  return journal_flush (*a->journal);
}

static void
hook_kick (void *opaque, bool need_gc)
{
  struct assembly *a = opaque;

  if (a->opts.kick != NULL)
    a->opts.kick (a->opts.opaque, need_gc);
}

static int
hook_close_entry (void *opaque, struct journal *j)
{
  struct assembly *a = opaque;
  return btree_journal_close_entry (*a->bt, j);
}

static int
hook_reclaim (void *opaque, uint64_t seq)
{
  struct assembly *a = opaque;
  return btree_write_pinned (*a->bt, seq);
}

static int
hook_pre_write (void *opaque)
{
  struct assembly *a = opaque;

  return a->opts.pre_write != NULL ? a->opts.pre_write (a->opts.opaque) : 0;
}

static int
hook_pre_write_unsynced (void *opaque)
{
  struct assembly *a = opaque;

  if (a->opts.pre_write_unsynced != NULL)
    return a->opts.pre_write_unsynced (a->opts.opaque);
  return hook_pre_write (opaque);
}

static int
hook_write_unsynced (void *opaque, uint64_t *token)
{
  struct assembly *a = opaque;

  *token = 0;
  if (a->opts.pre_write_unsynced != NULL && a->opts.write_unsynced != NULL)
    return a->opts.write_unsynced (a->opts.opaque, token);
  return 0;
}

static void
hook_synced (void *opaque, uint64_t token)
{
  struct assembly *a = opaque;

  if (a->opts.synced != NULL)
    a->opts.synced (a->opts.opaque, token);
}

static void
hook_committed (void *opaque, uint64_t durable_seq)
{
  struct assembly *a = opaque;
  bucket_journal_committed (*a->bs, durable_seq);
}

/* ---- steps ---- */

void
assemble_init (struct assembly *a, struct cdev *cd, const char *name,
               const struct assemble_slots *slots)
{
  memset (a, 0, sizeof *a);
  a->cd = cd;
  a->sb = slots->sb;
  a->bs = slots->bs;
  a->journal = slots->journal;
  a->bt = slots->bt;
  a->name = name != NULL ? name : "";
  a->slot = -1;
}

int
assemble_super (struct assembly *a)
{
  return super_read_version (a->cd, a->sb, &a->slot, &a->sb_version);
}

int
assemble_prios (struct assembly *a, const struct assemble_options *o)
{
  const struct bucket_hooks bhooks = {
    .opaque = a,
    .journal_open_seq = hook_journal_open_seq,
    .journal_flush = hook_journal_flush,
    .kick = hook_kick,
  };
  int r;

  a->opts = *o;
  r = bucket_set_create (a->cd, a->sb, o->readonly ? NULL : &bhooks,
                         a->bs);
  if (r < 0) {
    log_error ("cache '%s' (%s): cannot set up the bucket table",
               a->name, a->cd->path);
    return r;
  }
  return prio_read (*a->bs);
}

static int
collect_key (void *opaque, const struct nc_key *k, uint64_t seq)
{
  struct assembly *a = opaque;
  (void) seq;

  if (a->jkeys_len == a->jkeys_cap) {
    size_t cap = a->jkeys_cap ? a->jkeys_cap * 2 : 1024;
    struct nc_key *keys = realloc (a->jkeys, cap * sizeof *keys);
    if (keys == NULL)
      return -ENOMEM;
    a->jkeys = keys;
    a->jkeys_cap = cap;
  }
  a->jkeys[a->jkeys_len++] = *k;
  a->journal_keys++;
  return 0;
}

/* Is id a used slot of the export table? */
static bool
export_in_table (const struct assembly *a, uint16_t id)
{
  return super_find_id (a->sb, id) != NULL;
}

/* A slot is freed only after its keys are gone (forget): a DIRTY key of
 * an id that is not in the table is data nobody can ever write back.  0 or -EBADMSG
 * (logged).
 */
static int
check_dirty_export (const struct assembly *a, const struct nc_key *k,
                    const char *where)
{
  if (!bkey_is_dirty (k) || export_in_table (a, k->export_id))
    return 0;
  log_error ("cache '%s' (%s): %s key of export id %u blocks %" PRIu64 "+%"
             PRIu32 " is DIRTY, but the export table has no export %u: its "
             "data could never be written back; the metadata is corrupt",
             a->name, a->cd->path, where, k->export_id,
             k->end - k->size, k->size, k->export_id);
  return -EBADMSG;
}

/* Why replay would refuse a journal key, or NULL. */
static const char *
journal_key_invalid (const struct assembly *a, const struct nc_key *k,
                     uint64_t seq)
{
  /* The rule the btree applies when replay inserts it. */
  const char *why = bkey_invalid_insert (k, a->sb->bucket_blocks,
                                         a->sb->data_first, a->sb->nbuckets);

  /* A gen newer than its bucket's: the prios lost a bump (GENS ON DISK in
   * btree.h); the message names the key.
   */
  if (why == NULL && bkey_has_data (k) &&
      btree_check_key_gen (*a->bs, k, 2 * BUCKET_GEN_MAX_DISTANCE,
                           "journal entry", seq) < 0)
    why = "gen newer than its bucket's";
  /* As the read-write assembly refuses it (check_dirty_export). */
  if (why == NULL && bkey_is_dirty (k) && !export_in_table (a, k->export_id))
    why = "DIRTY, of an export id that is not in the export table";
  return why;
}

static int
visit_journal_key (void *opaque, const struct nc_key *k, uint64_t seq)
{
  struct assembly *a = opaque;
  int r;

  if ((r = crosscheck_journal_key (a->cx, k)) < 0)
    return r;
  a->journal_keys++;
  return a->opts.journal_key != NULL
    ? a->opts.journal_key (a->opts.opaque, k, seq,
                           journal_key_invalid (a, k, seq)) : 0;
}

int
assemble_journal (struct assembly *a, const struct assemble_options *o)
{
  int r;

  a->opts = *o;
  if ((r = journal_create (a->cd, a->sb, a->journal)) < 0) {
    log_error ("cache '%s' (%s): cannot set up the journal", a->name,
               a->cd->path);
    return r;
  }
  a->journal_keys = 0;
  a->jkeys_len = 0;
  crosscheck_destroy (a->cx);
  if ((r = crosscheck_create (a->sb, a->name, a->cd->path, &a->cx)) < 0)
    return r;
  return journal_replay (*a->journal,
                         o->readonly ? visit_journal_key : collect_key, a,
                         &a->root, &a->root_level);
}

/* ---- step 4 ---- */

static int
mark_node (void *opaque, uint32_t bucket, uint16_t level, uint32_t nkeys)
{
  struct assembly *a = opaque;

  bucket_mark_btree (*a->bs, bucket);
  return a->opts.readonly && a->opts.node != NULL
    ? a->opts.node (a->opts.opaque, bucket, level, nkeys) : 0;
}

static int
mark_key (void *opaque, const struct nc_key *k)
{
  struct assembly *a = opaque;
  bool current;
  int r;

  if (a->opts.readonly) {
    /* ZERO keys point at no bucket: nothing to mark or count. */
    current = !bkey_is_zero (k) && bucket_mark_key (*a->bs, k);
    if (a->cx != NULL && (r = crosscheck_tree_key (a->cx, k, current)) < 0)
      return r;
    return a->opts.key != NULL ? a->opts.key (a->opts.opaque, k, current)
      : 0;
  }
  if ((r = check_dirty_export (a, k, "index")) < 0)
    return r;
  current = bucket_mark_key (*a->bs, k);
  if (a->cx != NULL && (r = crosscheck_tree_key (a->cx, k, current)) < 0)
    return r;
  return 0;
}

/* Mark every bucket the tree (and, with keys, the journal) points at. */
static int
mark_tree (struct assembly *a, bool with_journal_keys)
{
  const struct btree_walk_ops ops = {
    .opaque = a, .node = mark_node, .key = mark_key,
  };
  size_t i;
  int r;

  bucket_mark_begin (*a->bs);
  r = btree_walk (*a->bt, &ops);
  if (r < 0)
    return r;
  if (with_journal_keys)
    for (i = 0; i < a->jkeys_len; i++) {
      const struct nc_key *k = &a->jkeys[i];

      if ((r = check_dirty_export (a, k, "journal")) < 0)
        return r;
      if (!bkey_has_data (k) || k->bucket < a->sb->data_first ||
          k->bucket >= a->sb->nbuckets)
        continue;               /* replay refuses a bad pointer itself */
      /* A gen newer than the bucket's: the prios lost a bump (see GENS ON
       * DISK in btree.h).
       */
      if ((r = btree_check_key_gen (*a->bs, k, 2 * BUCKET_GEN_MAX_DISTANCE,
                                    "journal key", i)) < 0)
        return r;
      bucket_mark_key (*a->bs, k);
    }
  bucket_mark_done (*a->bs);
  /* The first walk (read-only: the only one), before anything is
   * replayed: what the tree and the journal promise together.
   */
  if (a->cx != NULL) {
    if (with_journal_keys)
      crosscheck_borrow_journal (a->cx, a->jkeys, a->jkeys_len);
    r = crosscheck_finish (a->cx, *a->bs);
    crosscheck_destroy (a->cx);
    a->cx = NULL;
  }
  return r;
}

/* ---- REDO (journal.c): the newest write's inline data ---- */

struct redo {
  struct assembly *a;
  void *buf;                    /* JOURNAL_MAX_ENTRY_BLOCKS, aligned: an
                                   entry holds no longer key with data */
  uint64_t blocks;              /* written back */
};

/* Write back the blocks of k (its inline data `data`) that the replayed
 * index still maps to k's place: same bucket, offset and gen, and the
 * bucket still at that gen.  A bucket is append-only within a gen
 * (bucket-alloc.c: data goes only into FREE buckets, whose gen bump is
 * durable first; write points restart in FREE buckets at every open), so
 * those blocks can hold nothing but k's data; anything else (a later
 * overwrite, a trim, a GC move, a reused bucket) is skipped.
 */
static int
redo_key (void *opaque, const struct nc_key *k, const void *data)
{
  struct redo *rd = opaque;
  struct assembly *a = rd->a;
  const uint64_t start = k->end - k->size;
  struct btree_piece pc[8];
  uint64_t pos = start, skip, block;
  uint32_t n;
  int np, i, r;

  if (bkey_invalid_leaf (k, a->sb->bucket_blocks, a->sb->data_first,
                         a->sb->nbuckets) != NULL ||
      bucket_gen (*a->bs, k->bucket) != k->gen)
    return 0;
  while (pos < k->end) {
    np = btree_lookup (*a->bt, k->export_id, pos, k->end, pc, 8, NULL);
    if (np < 0)
      return np;
    for (i = 0; i < np; i++) {
      const struct btree_piece *p = &pc[i];

      pos = p->end;
      skip = p->start - start;
      if (!p->found || (p->key.flags & NC_KEY_ZERO) ||
          p->key.bucket != k->bucket || p->key.gen != k->gen ||
          p->key.offset != k->offset + skip)
        continue;
      n = (uint32_t) (p->end - p->start);
      block = (uint64_t) k->bucket * a->sb->bucket_blocks + k->offset + skip;
      memcpy (rd->buf, (const unsigned char *) data + skip * NC_BLOCK_BYTES,
              (size_t) n * NC_BLOCK_BYTES);
      if ((r = cdev_pwrite (a->cd, rd->buf, (size_t) n * NC_BLOCK_BYTES,
                            block * NC_BLOCK_BYTES, 0)) < 0)
        return r;
      if (a->opts.data_redone != NULL &&
          (r = a->opts.data_redone (a->opts.opaque, block, n, rd->buf)) < 0)
        return r;
      rd->blocks += n;
    }
  }
  return 0;
}

/* After the replay into the index and before anything else is written:
 * write back the newest write's inline data, durable with its checksum
 * words before the journal writes again (its entries stop being the
 * newest write then).
 */
static int
redo_inline (struct assembly *a)
{
  struct redo rd = { .a = a };
  int r;

  if (journal_redo_count (*a->journal) == 0)
    return journal_redo (*a->journal, redo_key, &rd);
  rd.buf = cdev_alloc_buffer ((size_t) JOURNAL_MAX_ENTRY_BLOCKS *
                              NC_BLOCK_BYTES);
  if (rd.buf == NULL)
    return -ENOMEM;
  r = journal_redo (*a->journal, redo_key, &rd);
  free (rd.buf);
  if (r < 0 || rd.blocks == 0)
    return r;
  log_info ("cache '%s' (%s): %" PRIu64 " block(s) of the newest journal "
            "write rewritten from its entries", a->name, a->cd->path,
            rd.blocks);
  if (a->opts.redo_flush != NULL &&
      (r = a->opts.redo_flush (a->opts.opaque)) < 0)
    return r;
  return cdev_sync (a->cd);
}

/* Replay, make it durable, record the root, recount. */
static int
index_read_write (struct assembly *a)
{
  const struct journal_hooks jhooks = {
    .opaque = a,
    .close_entry = hook_close_entry,
    .reclaim = hook_reclaim,
    .pre_write = hook_pre_write,
    .pre_write_unsynced = hook_pre_write_unsynced,
    .write_unsynced = hook_write_unsynced,
    .synced = hook_synced,
    .committed = hook_committed,
  };
  size_t i;
  int r;

  /* Walk #1: nothing the tree or the journal points at may be reused
   * while the journal is replayed (replay may split nodes).
   */
  if ((r = mark_tree (a, true)) < 0)
    return r;
  btree_set_accounting (*a->bt, false);
  for (i = 0; i < a->jkeys_len; i++)
    if ((r = btree_replay_key (*a->bt, &a->jkeys[i])) < 0)
      return r;
  btree_set_accounting (*a->bt, true);
  if ((r = redo_inline (a)) < 0)
    return r;

  /* Make the replayed tree durable and record its root: from here on the
   * old entries are not needed.
   */
  if ((r = btree_write_all (*a->bt)) < 0 ||
      (r = journal_start (*a->journal,
                          a->opts.journal_delay_ms ? a->opts.journal_delay_ms
                          : DEFAULT_JOURNAL_DELAY_MS, &jhooks)) < 0)
    return r;
  journal_mark_needed (*a->journal);
  if ((r = journal_flush (*a->journal)) < 0)
    return r;

  /* Walk #2: exact live and dirty counts; the allocator is ready. */
  return mark_tree (a, false);
}

int
assemble_index (struct assembly *a, const struct assemble_options *o)
{
  struct btree_config bcfg = {
    .cd = a->cd, .sb = a->sb, .bs = *a->bs,
    .journal = o->readonly ? NULL : *a->journal,
    .node_cache_bytes = o->node_cache_bytes,
  };
  int r;

  a->opts = *o;
  if (!o->readonly) {
    bcfg.pre_write = hook_pre_write;
    bcfg.pre_write_opaque = a;
  }
  /* What a crash may have torn: bsets written since the newest durable
   * entry (bset.c, TORN OR CORRUPT).
   */
  bcfg.torn_jseq_min = journal_open_seq (*a->journal);
  /* The journal never runs more than its ring's blocks of seqs past the
   * durable entry, however long commits fail (journal.c, SEQ BOUND).
   */
  bcfg.torn_jseq_max = bcfg.torn_jseq_min
    + (uint64_t) a->sb->journal_buckets * a->sb->bucket_blocks;
  if ((r = btree_create (&bcfg, a->bt)) < 0) {
    log_error ("cache '%s' (%s): cannot set up the btree", a->name,
               a->cd->path);
    goto out;
  }
  if (o->readonly)
    btree_set_accounting (*a->bt, false);
  if ((r = btree_set_root (*a->bt, &a->root, a->root_level)) < 0)
    goto out;
  r = o->readonly ? mark_tree (a, false) : index_read_write (a);
 out:
  free (a->jkeys);
  a->jkeys = NULL;
  a->jkeys_len = a->jkeys_cap = 0;
  crosscheck_destroy (a->cx);
  a->cx = NULL;
  return r;
}

int
assemble_device (struct assembly *a, const struct assemble_options *o)
{
  int r;

  if ((r = assemble_super (a)) < 0 ||
      (r = assemble_prios (a, o)) < 0 ||
      (r = assemble_journal (a, o)) < 0 ||
      (r = assemble_index (a, o)) < 0)
    return r;
  return 0;
}

void
assemble_release (struct assembly *a)
{
  if (a == NULL)
    return;
  if (*a->journal != NULL)
    journal_destroy (*a->journal);
  *a->journal = NULL;
  btree_destroy (*a->bt);
  *a->bt = NULL;
  bucket_set_destroy (*a->bs);
  *a->bs = NULL;
  free (a->jkeys);
  a->jkeys = NULL;
  crosscheck_destroy (a->cx);
  a->cx = NULL;
}
