/* SPDX-License-Identifier: BSD-3-Clause */
/* test-mutants-image.c — test-mutants' reading of the base image and its
 * making of mutants (see test-mutants.c for the test).
 *
 * WHAT: parse_base finds every live structure of the base image — both
 * superblock copies (head and export table), both prio copies, the valid
 * journal entries, every bset of every live btree node, the data extents
 * the current keys point at — as targets; make_mutant damages one of
 * them, seeded by the mutant's index, and recomputes what a writer would
 * when asked to.
 * HOW: independently of the engine's readers (ondisk.h, nc_csum); only a
 * journal entry's stamped sectors are read and written with
 * journal-entry.c's jentry_payload / jentry_frame.
 * FAILURE: a base image the parser cannot read fails the test (cmocka
 * asserts): it is the engine's own fresh output.
 */
#include <config.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <inttypes.h>

#include <cmocka.h>
#include <xxhash.h>

#include "csum.h"
#include "journal-internal.h"
#include "ondisk.h"
#include "super.h"
#include "test-helpers.h"
#include "test-mutants.h"

#define MAX_CHAIN 64

/* ---- parsing the base image (independently of the engine) ---- */

static uint64_t
bucket_byte (uint32_t bucket)
{
  return (uint64_t) bucket * W.sb.bucket_blocks * NC_BLOCK_BYTES;
}

/* Superblock copy `slot` of img: its head (one block, and the only part
 * of struct nc_sb read through this pointer), and its export table.
 */
static const struct nc_sb *
sb_head (const unsigned char *img, int slot)
{
  return (const void *) (img + (size_t) slot * NC_BLOCK_BYTES);
}

static bool
sb_table_fits (const struct nc_sb *head, int slot)
{
  return head->table_blocks >= 1 && head->table_blocks <= NC_TABLE_BLOCKS_MAX
    && super_table_offset (head, slot) + (uint64_t) head->table_blocks
    * NC_BLOCK_BYTES <= DEVICE_BYTES;
}

/* Copy `slot`'s table checksum, as super.c computes it (table_csum). */
static uint64_t
sb_table_csum (const unsigned char *img, const struct nc_sb *h, int slot)
{
  const unsigned char *t = img + super_table_offset (h, slot);
  size_t bytes = (size_t) h->table_blocks * NC_BLOCK_BYTES;

  return h->features & NC_FEATURE_TABLE_CSUM ? nc_csum_whole (t, bytes)
    : nc_csum (t, bytes);
}

/* Copy `slot` as super.c reads it: head checksum, magic, format version 2
 * (a fresh format writes nothing else), its table's checksum.
 */
static bool
sb_valid (const unsigned char *img, int slot)
{
  const struct nc_sb *h = sb_head (img, slot);

  return h->magic == NC_SB_MAGIC && h->csum == nc_csum (h, NC_BLOCK_BYTES)
    && h->version == NC_FORMAT_VERSION && sb_table_fits (h, slot) &&
    h->table_csum == sb_table_csum (img, h, slot);
}

/* Recompute copy `slot`'s table_csum and csum in img (super_set_csum's
 * formulas, on the head as it now is).
 */
static void
sb_recompute (unsigned char *img, int slot)
{
  unsigned char *h = img + (size_t) slot * NC_BLOCK_BYTES;
  const struct nc_sb *head = sb_head (img, slot);
  uint64_t c;

  if (sb_table_fits (head, slot)) {
    c = sb_table_csum (img, head, slot);
    memcpy (h + offsetof (struct nc_sb, table_csum), &c, sizeof c);
  }
  c = nc_csum (h, NC_BLOCK_BYTES);
  memcpy (h, &c, sizeof c);
}

static uint32_t
prio_csum_len (void)
{
  return (uint32_t) (sizeof (struct nc_prio)
                     + (size_t) W.sb.nbuckets * sizeof (struct nc_prio_entry));
}

static bool
prio_valid (const struct nc_prio *p)
{
  return p->magic == NC_PRIO_MAGIC && p->nbuckets == W.sb.nbuckets &&
    p->csum == nc_csum (p, prio_csum_len ());
}

static uint32_t
blocks_of (uint64_t bytes)
{
  return (uint32_t) ((bytes + NC_BLOCK_BYTES - 1) / NC_BLOCK_BYTES);
}

static struct target *
add_target (enum region region, uint64_t off, uint32_t span,
            uint32_t csum_len, uint32_t hdr, bool preferred)
{
  struct target *t;

  assert_true (W.nr_targets < MAX_TARGETS);
  t = &W.targets[W.nr_targets++];
  *t = (struct target) {
    .region = region, .off = off, .span = span, .csum_len = csum_len,
    .hdr = hdr, .body_lo = hdr, .body_hi = csum_len ? csum_len : span,
    .preferred = preferred,
  };
  W.nr_of[region]++;
  return t;
}

static void
note_used_bucket (uint32_t bucket)
{
  unsigned i;

  for (i = 0; i < W.nr_used_buckets; i++)
    if (W.used_buckets[i] == bucket)
      return;
  W.used_buckets[W.nr_used_buckets++] = bucket;
}

static const struct nc_prio *prio_use;  /* the copy in use, in W.base */

/* A current data key: its blocks are a data target. */
static void
add_data_key (const struct nc_key *k)
{
  if (k->flags & (NC_KEY_ZERO | NC_KEY_DELETE) || k->size == 0 ||
      k->bucket < W.sb.data_first || k->bucket >= W.sb.nbuckets ||
      prio_use->entries[k->bucket].gen != k->gen)
    return;
  note_used_bucket (k->bucket);
  if (W.nr_of[R_DATA] < MAX_TARGETS / 4)
    add_target (R_DATA, bucket_byte (k->bucket)
                + (uint64_t) k->offset * NC_BLOCK_BYTES,
                k->size * NC_BLOCK_BYTES, 0, 0, true);
  /* Its words in the checksum region (at least 8 bytes: the widest
   * mutation; a word past the key's is another key's or unused).
   */
  if ((W.sb.features & NC_FEATURE_DATA_CSUM) &&
      W.nr_of[R_CSUM] < MAX_TARGETS / 4)
    add_target (R_CSUM, bucket_byte (W.sb.csum_first)
                + 4 * ((uint64_t) k->bucket * W.sb.bucket_blocks + k->offset),
                MAX (8u, k->size * 4u), 0, 0, true);
}

static void
parse_super_and_prios (void)
{
  const struct nc_prio *c[2];
  int i, use;
  uint32_t s, used = 0;

  assert_true (sb_valid (W.base, 0) || sb_valid (W.base, 1));
  use = !sb_valid (W.base, 0) || (sb_valid (W.base, 1) &&
                                  sb_head (W.base, 1)->seq
                                  > sb_head (W.base, 0)->seq) ? 1 : 0;
  memcpy (&W.sb, sb_head (W.base, use), NC_BLOCK_BYTES);
  memset (W.sb.exports, 0, sizeof W.sb.exports);
  memcpy (W.sb.exports, W.base + super_table_offset (&W.sb, use),
          (size_t) W.sb.table_blocks * NC_BLOCK_BYTES);
  W.jseed = jstamp_seed (W.sb.uuid);
  for (s = 0; s < super_table_slots (&W.sb); s++)
    if (W.sb.exports[s].id != 0)
      used = s + 1;
  for (i = 0; i < NC_SB_SLOTS; i++) {
    const struct nc_sb *h = sb_head (W.base, i);
    struct target *t;

    if (!sb_valid (W.base, i))
      continue;
    t = add_target (R_SUPER, (uint64_t) i * NC_BLOCK_BYTES, NC_BLOCK_BYTES,
                    NC_BLOCK_BYTES, offsetof (struct nc_sb, pad), i == use);
    t->sb_slot = i;
    /* The table: checksum in the head (table_csum), no header; the body
     * worth hitting is the slots in use.
     */
    t = add_target (R_SUPER, super_table_offset (h, i),
                    h->table_blocks * NC_BLOCK_BYTES,
                    h->table_blocks * NC_BLOCK_BYTES, 0, i == use);
    t->sb_slot = i;
    t->sb_table = true;
    t->body_hi = used * (uint32_t) sizeof (struct nc_sb_export);
  }
  for (i = 0; i < 2; i++)
    c[i] = (const void *) (W.base + bucket_byte (W.sb.prio_first
                                                 + (uint32_t) i
                                                 * W.sb.prio_buckets));
  assert_true (prio_valid (c[0]) || prio_valid (c[1]));
  prio_use = !prio_valid (c[0]) || (prio_valid (c[1]) && c[1]->seq
                                    > c[0]->seq) ? c[1] : c[0];
  for (i = 0; i < 2; i++)
    if (prio_valid (c[i]))
      add_target (R_PRIO, (uint64_t) ((const unsigned char *) c[i] - W.base),
                  blocks_of (prio_csum_len ()) * NC_BLOCK_BYTES,
                  prio_csum_len (), sizeof (struct nc_prio),
                  c[i] == prio_use);
}

static uint32_t
jentry_len (const struct nc_jentry *e)
{
  return (uint32_t) (sizeof *e + (size_t) e->nkeys * sizeof (struct nc_key)
                     + (e->version == NC_JENTRY_VERSION_INLINE
                        ? jentry_inline_bytes (e->keys, e->nkeys) : 0));
}

/* The payload of the entry at ring block i of img, as replay reads it
 * (journal-replay.c entry_invalid: magic, version, uuid, length, keys,
 * every sector's stamp, checksum), in a new buffer (*len bytes), or
 * NULL.  A version 1 entry (none after a fresh format, but still read)
 * is its own payload.
 */
static unsigned char *
read_jentry (const unsigned char *img, uint64_t i, uint32_t *len)
{
  uint64_t blocks = (uint64_t) W.sb.journal_buckets * W.sb.bucket_blocks;
  const struct nc_jentry *e = (const void *) (img
                                              + bucket_byte (W.sb.journal_first)
                                              + i * NC_BLOCK_BYTES);
  unsigned char *p;
  uint32_t bad;

  if (e->magic != NC_JOURNAL_MAGIC || (e->version != NC_JENTRY_VERSION &&
                                       e->version != NC_JENTRY_VERSION_PLAIN &&
                                       e->version != NC_JENTRY_VERSION_INLINE)
      || memcmp (e->uuid, W.sb.uuid, sizeof e->uuid) != 0 ||
      e->nblocks == 0 || e->nblocks > JOURNAL_MAX_ENTRY_BLOCKS ||
      e->nblocks > blocks - i ||
      e->nkeys > keys_in_blocks (e->version, e->nblocks))
    return NULL;
  *len = (uint32_t) jentry_payload_bytes (e->version, e->nblocks);
  p = malloc (*len);
  assert_non_null (p);
  if (!jentry_payload (e, e->nblocks, W.jseed, p, &bad) ||
      jentry_len ((const void *) p) > *len ||
      ((const struct nc_jentry *) p)->csum
      != nc_csum (p, jentry_len ((const void *) p))) {
    free (p);
    return NULL;
  }
  return p;
}

/* Every valid journal entry is a target (those to replay preferred);
 * the keys to replay name data targets.  The newest entry's payload.
 */
static const struct nc_jentry *
parse_journal (void)
{
  uint64_t first = bucket_byte (W.sb.journal_first);
  uint64_t blocks = (uint64_t) W.sb.journal_buckets * W.sb.bucket_blocks;
  const struct nc_jentry *newest = NULL;
  uint64_t i;
  unsigned t0 = W.nr_targets, t1, t;

  for (i = 0; i < blocks; i++) {
    uint32_t plen;
    unsigned char *p = read_jentry (W.base, i, &plen);
    const struct nc_jentry *e = (const void *) p;
    struct target *tg;

    if (p == NULL)
      continue;
    if (e->version == NC_JENTRY_VERSION_PLAIN) {
      free (p);                 /* its payload is its device bytes */
      p = NULL;
      e = (const void *) (W.base + first + i * NC_BLOCK_BYTES);
    }
    if (newest == NULL || e->seq > newest->seq)
      newest = e;
    tg = add_target (R_JOURNAL, first + i * NC_BLOCK_BYTES,
                     e->nblocks * NC_BLOCK_BYTES, jentry_len (e), sizeof *e,
                     false);
    tg->payload = p;
    tg->payload_len = plen;
    i += e->nblocks - 1;
  }
  assert_non_null (newest);
  W.jnewest_write = newest->write_first ? newest->write_first : newest->seq;
  /* Only the journal's targets: add_data_key appends data and checksum
   * targets behind them as it goes.
   */
  t1 = W.nr_targets;
  for (t = t0; t < t1; t++) {
    const struct nc_jentry *e = W.targets[t].payload != NULL
      ? (const void *) W.targets[t].payload
      : (const void *) (W.base + W.targets[t].off);
    uint32_t k;

    if (e->seq < newest->last_seq || e->seq > newest->seq)
      continue;
    W.targets[t].preferred = true;
    for (k = 0; k < e->nkeys; k++)
      add_data_key (&e->keys[k]);
  }
  return newest;
}

/* The bset chain of the node (bucket, nonce), as bset.c reads it: each
 * bset at the next block after the previous one, seq 1, 2, 3 ….  Adds
 * every bset as a target; returns the newest one.
 */
static const struct nc_bset *
parse_node (uint32_t bucket, uint64_t nonce)
{
  uint64_t base = bucket_byte (bucket);
  uint32_t span = (1u << 20) / NC_BLOCK_BYTES, b = 0, nr = 0;
  const struct nc_bset *newest = NULL;
  unsigned first = W.nr_targets, t;

  if (span > W.sb.bucket_blocks)
    span = W.sb.bucket_blocks;
  note_used_bucket (bucket);
  W.nr_nodes++;
  while (b < span && nr < MAX_CHAIN) {
    const struct nc_bset *h = (const void *) (W.base + base
                                              + (uint64_t) b * NC_BLOCK_BYTES);
    uint32_t len = (uint32_t) (sizeof *h + (uint64_t) h->nkeys
                               * sizeof (struct nc_key));
    uint32_t nb = blocks_of (len);

    if (h->magic != NC_BSET_MAGIC || h->nonce != nonce || h->seq != nr + 1
        || nb > span - b || h->csum != nc_csum (h, len))
      break;
    add_target (R_BTREE, base + (uint64_t) b * NC_BLOCK_BYTES,
                nb * NC_BLOCK_BYTES, len, sizeof *h, false)->leaf_bset =
      h->level == 0;
    newest = h;
    nr++;
    b += nb;
  }
  assert_non_null (newest);
  t = W.nr_targets - 1;
  W.targets[t].preferred = true;
  W.targets[t].newest_bset_not_first = t > first;
  return newest;
}

static void
parse_tree (const struct nc_key *root)
{
  struct nc_key *queue = malloc (MAX_TARGETS * sizeof *queue);
  unsigned head = 0, tail = 0;

  assert_non_null (queue);
  if (root->size != 0)
    queue[tail++] = *root;
  while (head < tail) {
    struct nc_key ptr = queue[head++];
    const struct nc_bset *h = parse_node (ptr.bucket, ptr.nonce);
    uint32_t k;

    for (k = 0; k < h->nkeys; k++) {
      if (h->level > 0) {
        assert_true (tail < MAX_TARGETS);
        queue[tail++] = h->keys[k];
      }
      else
        add_data_key (&h->keys[k]);
    }
  }
  free (queue);
}

void
parse_base (void)
{
  const struct nc_jentry *newest;

  W.nr_targets = 0;
  memset (W.nr_of, 0, sizeof W.nr_of);
  parse_super_and_prios ();
  W.used_buckets = calloc (W.sb.nbuckets, sizeof *W.used_buckets);
  assert_non_null (W.used_buckets);
  W.nr_used_buckets = 0;
  newest = parse_journal ();
  parse_tree (&newest->root);
}
/* ---- a mutant ---- */


static void
recompute_csum (unsigned char *img, const struct target *t)
{
  uint64_t c = nc_csum (img + t->off, t->csum_len);

  memcpy (img + t->off, &c, sizeof c);
}

/* A target of region r, the preferred ones (in use, to replay, newest)
 * three times in four.
 */
static const struct target *
pick_target (struct test_rng *rng, enum region r)
{
  bool preferred = test_rng_chance (rng, 75);
  unsigned n = 0, i, pick;

  for (i = 0; i < W.nr_targets; i++)
    if (W.targets[i].region == r && W.targets[i].preferred == preferred)
      n++;
  if (n == 0) {
    preferred = !preferred;
    for (i = 0; i < W.nr_targets; i++)
      if (W.targets[i].region == r && W.targets[i].preferred == preferred)
        n++;
  }
  assert_true (n > 0);
  pick = (unsigned) test_rng_below (rng, n);
  for (i = 0; i < W.nr_targets; i++)
    if (W.targets[i].region == r && W.targets[i].preferred == preferred &&
        pick-- == 0)
      return &W.targets[i];
  return NULL;
}

/* A byte offset within t worth changing: the header, the body (keys,
 * entries, export slots in use), a gen of a bucket in use (prio), a
 * character of a backing URI or a byte of a used slot's identity
 * (export table), or anywhere it spans.  A stamped journal entry: a byte
 * of its payload.
 */
static uint32_t
pick_offset (struct test_rng *rng, const struct target *t, bool recompute)
{
  uint32_t lo = recompute && !t->sb_table ? 8 : 0;
  uint32_t hi = t->csum_len ? t->csum_len : t->span;
  uint32_t all = t->payload != NULL ? t->payload_len : t->span;
  unsigned dice = (unsigned) test_rng_below (rng, 100);

  if (t->region == R_PRIO && dice < 40 && W.nr_used_buckets > 0) {
    uint32_t b = W.used_buckets[test_rng_below (rng, W.nr_used_buckets)];

    return (uint32_t) (sizeof (struct nc_prio) + b * sizeof
                       (struct nc_prio_entry)
                       + offsetof (struct nc_prio_entry, gen));
  }
  if (t->sb_table && dice < 35 && t->body_hi > t->body_lo) {
    /* A used slot's backing identity: a character of its URI, or its
     * id, kind, flags, dev, ino, birth time, uuid.
     */
    const struct nc_sb_export *x = (const void *) (W.base + t->off);
    uint32_t slot = (uint32_t) test_rng_below (rng, (t->body_hi - t->body_lo)
                                               / sizeof (struct nc_sb_export));
    size_t len = strnlen (x[slot].uri, NC_URI_MAX);
    uint32_t base = slot * (uint32_t) sizeof (struct nc_sb_export);

    if (dice < 20 && x[slot].id != 0 && len > 0)
      return (uint32_t) (base + offsetof (struct nc_sb_export, uri)
                         + test_rng_below (rng, len));
    if (x[slot].id != 0)
      return (uint32_t) (base + test_rng_below
                         (rng, offsetof (struct nc_sb_export, devid)));
  }
  if (t->hdr > lo && dice < 60)
    return (uint32_t) test_rng_range (rng, lo, t->hdr - 1);
  if (t->body_hi > t->body_lo && dice < 90)
    return (uint32_t) test_rng_range (rng, t->body_lo, t->body_hi - 1);
  if (!recompute && all > hi && dice < 95)
    hi = all;                   /* the tail after the scope, too */
  return (uint32_t) test_rng_range (rng, lo, hi - 1);
}

/* Apply a mutation of `kind` at s[*o] in a structure of lim bytes (8
 * random bytes end by lim; a zeroed block is the 4 KiB block of s that
 * holds *o): *o and *len become the bytes changed.
 */
static void
mutate (struct test_rng *rng, unsigned kind, unsigned char *s, uint32_t *o,
        uint32_t lim, uint32_t *len, char *what, size_t what_size)
{
  *len = 1;
  switch (kind) {
  case 0: default: {            /* flip a bit */
    unsigned bit = (unsigned) test_rng_below (rng, 8);

    s[*o] ^= (unsigned char) (1u << bit);
    snprintf (what, what_size, "bit %u of byte %" PRIu32, bit, *o);
    break;
  }
  case 1:                       /* a random byte */
    s[*o] ^= (unsigned char) test_rng_range (rng, 1, 255);
    snprintf (what, what_size, "byte %" PRIu32 " changed", *o);
    break;
  case 2: {                     /* 8 random bytes */
    uint64_t v = test_rng_next (rng);

    *len = 8;
    if (*o + *len > lim)
      *o = lim - *len;
    memcpy (s + *o, &v, *len);
    snprintf (what, what_size, "bytes %" PRIu32 "-%" PRIu32 " random", *o,
              *o + 7);
    break;
  }
  case 3: {                     /* zero a block (checksum kept) */
    uint32_t blk = *o / NC_BLOCK_BYTES;

    *o = blk * NC_BLOCK_BYTES;
    *len = NC_BLOCK_BYTES;
    memset (s + *o, 0, NC_BLOCK_BYTES);
    snprintf (what, what_size, "block %" PRIu32 " zeroed", blk);
    break;
  }
  }
}

/* Byte (from the entry's first) of payload byte p of a stamped entry. */
static uint32_t
jraw (uint32_t p)
{
  return p / NC_JSECTOR_PAYLOAD_BYTES * NC_JSECTOR_BYTES
    + p % NC_JSECTOR_PAYLOAD_BYTES;
}

/* Recompute the stamp checksum of a 512-byte sector (journal-entry.c's
 * formula).
 */
static void
restamp (unsigned char *sector)
{
  uint64_t c = XXH3_64bits_withSeed (sector, NC_JSECTOR_BYTES - sizeof c,
                                     W.jseed);

  memcpy (sector + NC_JSECTOR_BYTES - sizeof c, &c, sizeof c);
}

/* Write the (mutated) payload p of stamped target t back, as a writer
 * would: its checksum recomputed, framed by jentry_frame.  If its nblocks
 * now claims more blocks than t spans (or none), t's blocks are framed
 * and sector 0 then carries the claim, its stamp recomputed: the blocks
 * after t are another structure's.
 */
static void
reframe (unsigned char *img, const struct target *t, unsigned char *p)
{
  struct nc_jentry *e = (void *) p;
  unsigned char *raw = img + t->off;
  uint32_t nb = t->span / NC_BLOCK_BYTES, claim = e->nblocks;
  uint64_t len = sizeof *e + (uint64_t) e->nkeys * sizeof (struct nc_key);

  /* More keys than the entry holds: refused for that before its
   * checksum is read.
   */
  e->csum = nc_csum (p, len <= t->payload_len ? len : t->csum_len);
  if (claim >= 1 && claim <= nb) {
    jentry_frame (e, W.jseed, raw);
    return;
  }
  e->nblocks = nb;
  jentry_frame (e, W.jseed, raw);
  e->nblocks = claim;
  memcpy (raw + offsetof (struct nc_jentry, nblocks), &claim, sizeof claim);
  restamp (raw);
}

/* A mutant of a stamped journal entry: its device bytes (a byte of a
 * sector's payload piece or stamp), or, recomputed, its payload framed
 * again or a stamp with its checksum recomputed.
 */
static void
make_jmutant (struct mutant *m, unsigned char *img, struct test_rng *rng,
              unsigned kind)
{
  const struct target *t = m->t;
  const uint32_t nsec = t->span / NC_JSECTOR_BYTES;
  char what[128];
  uint32_t o;

  m->chg_lo = t->off;
  m->chg_hi = t->off + t->span;
  if (test_rng_chance (rng, 20)) {
    uint32_t sec = (uint32_t) test_rng_below (rng, nsec);
    uint32_t base = sec * NC_JSECTOR_BYTES + NC_JSECTOR_PAYLOAD_BYTES;
    uint32_t fields = m->recompute ? offsetof (struct nc_jstamp, csum)
      : sizeof (struct nc_jstamp);

    m->in_stamp = true;
    o = base + (uint32_t) test_rng_below (rng, fields);
    mutate (rng, kind, img + t->off, &o, base + fields, &m->len, what,
            sizeof what);
    if (m->recompute) {
      const struct nc_jentry *e = (const void *) t->payload;
      uint64_t seq;

      restamp (img + t->off + sec * NC_JSECTOR_BYTES);
      memcpy (&seq, img + t->off + base + offsetof (struct nc_jstamp, seq),
              sizeof seq);
      m->stamp_unwritten = e->seq >= W.jnewest_write && seq <= e->seq;
    }
    m->soff = 0;
    m->off = t->off + o;
    snprintf (m->what, sizeof m->what, "stamp of sector %" PRIu32 ": %s",
              sec, what);
    return;
  }
  o = pick_offset (rng, t, m->recompute);
  if (m->recompute) {
    unsigned char *p = malloc (t->payload_len);

    assert_non_null (p);
    memcpy (p, t->payload, t->payload_len);
    mutate (rng, kind, p, &o, t->csum_len, &m->len, what, sizeof what);
    reframe (img, t, p);
    free (p);
    m->soff = o;
    m->off = t->off + jraw (o);
    snprintf (m->what, sizeof m->what, "payload %s, reframed", what);
    return;
  }
  m->soff = o;
  o = jraw (o);
  mutate (rng, kind, img + t->off, &o, t->span, &m->len, what, sizeof what);
  m->off = t->off + o;
  snprintf (m->what, sizeof m->what, "device %s (payload byte %" PRIu32
            ")", what, m->soff);
}

void
make_mutant (struct mutant *m, unsigned char *img)
{
  struct test_rng rng;
  const struct target *t;
  uint32_t o;
  unsigned kind;

  test_rng_seed (&rng, test_mix64 (W.seed ^ m->index));
  t = m->t = pick_target (&rng, m->region);
  kind = (unsigned) test_rng_below (&rng, m->recompute || t->csum_len == 0
                                    ? 3 : 4);
  if (t->payload != NULL) {
    make_jmutant (m, img, &rng, kind);
    return;
  }
  o = pick_offset (&rng, t, m->recompute);
  mutate (&rng, kind, img + t->off, &o, t->csum_len && m->recompute
          ? t->csum_len : t->span, &m->len, m->what, sizeof m->what);
  m->soff = o;
  m->off = t->off + o;
  m->chg_lo = MIN (m->off, t->off);
  m->chg_hi = m->off + m->len;
  if (!m->recompute || t->csum_len == 0)
    return;
  if (t->region == R_SUPER) {
    /* The head of the copy: table_csum and csum. */
    sb_recompute (img, t->sb_slot);
    m->chg_lo = 0;
    if (m->chg_hi < (uint64_t) NC_SB_SLOTS * NC_BLOCK_BYTES)
      m->chg_hi = (uint64_t) NC_SB_SLOTS * NC_BLOCK_BYTES;
  }
  else
    recompute_csum (img, t);
}
