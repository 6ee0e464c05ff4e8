/* SPDX-License-Identifier: BSD-3-Clause */
/* fuzz-image.c — libFuzzer harness: every on-disk metadata parser, through
 * the engine's real open path, on a simulated cache device.
 *
 * WHAT: at start-up, formats a small simulated cache device (cdev-sim),
 * writes dirty data through an export so the image holds a superblock with
 * an export slot, both prio copies, journal entries and btree nodes, and
 * keeps that image as a template.  Each input is a list of patches applied
 * to a fresh copy of the template, aimed at one region each (superblock,
 * prio, journal ring, btree/data buckets, anywhere).  When the input's
 * first byte asks for it, the harness then recomputes every checksum it
 * can find (superblock copies, prio copies, journal entries, bsets), so
 * the mutations reach the semantic checks behind the checksums.  Then it
 * runs what `check` runs (super_read, prio_check_copy, journal_check) and
 * what the server runs (ncache_device_open_cdev: recovery, journal replay,
 * btree reads; then an export over the same backing, read whole).
 * WHY: the parsers of superblock, export table, prio, journal entry and
 * bset/node are buried in functions that do I/O; a fake device reaches
 * all of them through their real callers, with no edit to the engine.
 * INVARIANTS: a crash, a sanitizer report or a hang is a finding; an
 * error return is the expected answer to most inputs.
 * Input: [flags u8] then records [region u8][offset u24 le][len u8][len bytes].
 */
#include <config.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backing.h"
#include "cache.h"
#include "cache-internal.h"
#include "cdev.h"
#include "csum.h"
#include "log.h"
#include "ondisk.h"
#include "super.h"
#include "bucket.h"
#include "journal.h"
#include "journal-internal.h"

#define DEVICE_BYTES   (UINT64_C (4) << 20)
#define BUCKET_BYTES   (64 * 1024)
#define EXPORT_BYTES   (UINT64_C (1) << 20)

static unsigned char *template_image;
static struct nc_sb template_sb;

static void
quiet (enum log_level level, const char *msg)
{
  (void) level; (void) msg;
}

static const struct ncache_device_tuning tuning = {
  .journal_delay_ms = 1, .format_bucket_bytes = BUCKET_BYTES, .gc_off = true,
};

static int
open_export (struct ncache_device *dev, enum ncache_mode mode,
             struct ncache_export **nc)
{
  struct ncache_config cfg = { .name = "fuzz", .device = dev, .mode = mode };
  struct backing *b;

  if (backing_memory_create (EXPORT_BYTES, &b) < 0)
    return -1;
  return ncache_open (&cfg, b, nc);
}

/* The template: formatted, one export, dirty blocks in the journal and
 * (after enough of them) in btree nodes.
 */
static void
make_template (void)
{
  struct cdev *cd;
  struct ncache_device *dev;
  struct ncache_export *nc;
  unsigned char *buf = malloc (65536);
  unsigned i;

  if (buf == NULL || cdev_sim_create (DEVICE_BYTES, &cd) < 0)
    abort ();
  cdev_sim_hold (cd);
  if (ncache_device_open_cdev ("fuzz", cd, true, &tuning, &dev) < 0 ||
      open_export (dev, NCACHE_MODE_WRITEBACK, &nc) < 0)
    abort ();
  for (i = 0; i < 64; i++) {
    memset (buf, i + 1, 65536);
    /* Scattered small writes make many keys. */
    if (ncache_pwrite (nc, buf, 4096 * (1 + i % 3),
                       (uint64_t) (i * 7 % 200) * 4096, 0) < 0)
      abort ();
    if (i % 16 == 15 && ncache_flush (nc, 0) < 0)
      abort ();
  }
  ncache_close (nc);
  ncache_device_close (dev);
  template_image = malloc (DEVICE_BYTES);
  if (template_image == NULL)
    abort ();
  cdev_sim_peek (cd, 0, template_image, DEVICE_BYTES);
  cdev_close (cd);
  /* The head only: the geometry (the export table is not used here). */
  memcpy (&template_sb, template_image, NC_BLOCK_BYTES);
  if (template_sb.magic != NC_SB_MAGIC)
    memcpy (&template_sb, template_image + NC_BLOCK_BYTES, NC_BLOCK_BYTES);
  free (buf);
}

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  (void) argc; (void) argv;
  log_set_sink (quiet);
  log_set_level (LOG_LEVEL_ERROR);
  make_template ();
  return 0;
}

static uint64_t
region_base (unsigned region, uint64_t *len)
{
  const struct nc_sb *sb = &template_sb;
  uint64_t bb = (uint64_t) sb->bucket_blocks * NC_BLOCK_BYTES;

  switch (region % 5) {
  case 0: *len = NC_SB_SLOTS * NC_BLOCK_BYTES; return 0;
  case 1: *len = 2 * sb->prio_buckets * bb; return sb->prio_first * bb;
  case 2: *len = sb->journal_buckets * bb; return sb->journal_first * bb;
  case 3: *len = DEVICE_BYTES - sb->data_first * bb;
          return sb->data_first * bb;
  default: *len = DEVICE_BYTES; return 0;
  }
}

/* Recompute the checksum of every structure whose magic is in place. */
static void
fix_checksums (unsigned char *img)
{
  const struct nc_sb *sb = &template_sb;
  uint64_t bb = (uint64_t) sb->bucket_blocks * NC_BLOCK_BYTES;
  uint64_t off;
  int i;

  for (i = 0; i < NC_SB_SLOTS; i++) {
    struct nc_sb *s = (struct nc_sb *) (img + i * NC_BLOCK_BYTES);
    uint64_t toff = super_table_offset (s, i);

    /* The table checksum over this copy's table, then the head's (the
     * head is a block: compute both by hand, not through the in-memory
     * struct, whose table follows the head).
     */
    if (s->magic != NC_SB_MAGIC)
      continue;
    if (s->table_blocks >= 1 && s->table_blocks <= NC_TABLE_BLOCKS_MAX &&
        toff + (uint64_t) s->table_blocks * NC_BLOCK_BYTES <= DEVICE_BYTES)
      s->table_csum = nc_csum (img + toff,
                               (size_t) s->table_blocks * NC_BLOCK_BYTES);
    s->csum = nc_csum (s, NC_BLOCK_BYTES);
  }
  for (i = 0; i < 2; i++) {
    struct nc_prio *p = (struct nc_prio *)
      (img + (sb->prio_first + i * sb->prio_buckets) * bb);
    size_t n = sizeof *p + (size_t) sb->nbuckets * sizeof p->entries[0];
    if (p->magic == NC_PRIO_MAGIC && n <= sb->prio_buckets * bb)
      p->csum = nc_csum (p, n);
  }
  for (off = sb->journal_first * bb; off < DEVICE_BYTES;
       off += NC_BLOCK_BYTES) {
    struct nc_jentry *e = (struct nc_jentry *) (img + off);
    struct nc_bset *h = (struct nc_bset *) (img + off);
    size_t n;

    if (e->magic == NC_JOURNAL_MAGIC && e->version == NC_JENTRY_VERSION) {
      /* Stamped sectors: join the pieces whatever their stamps say, set
       * the checksum, stamp every sector again.
       */
      static unsigned char pl[JOURNAL_MAX_ENTRY_BLOCKS * NC_BLOCK_BYTES];
      struct nc_jentry *pe = (struct nc_jentry *) pl;
      uint32_t k, nb = e->nblocks;

      if (nb == 0 || nb > JOURNAL_MAX_ENTRY_BLOCKS ||
          (uint64_t) nb * NC_BLOCK_BYTES > DEVICE_BYTES - off)
        continue;
      for (k = 0; k < nb * NC_JSECTORS_PER_BLOCK; k++)
        memcpy (pl + (size_t) k * NC_JSECTOR_PAYLOAD_BYTES,
                img + off + (size_t) k * NC_JSECTOR_BYTES,
                NC_JSECTOR_PAYLOAD_BYTES);
      n = sizeof *pe + (size_t) pe->nkeys * sizeof (struct nc_key);
      if (n <= jentry_payload_bytes (NC_JENTRY_VERSION, nb))
        pe->csum = nc_csum (pe, n);
      jentry_frame (pe, jstamp_seed (sb->uuid), img + off);
    }
    else if (e->magic == NC_JOURNAL_MAGIC) {
      n = sizeof *e + (size_t) e->nkeys * sizeof (struct nc_key);
      if (n <= DEVICE_BYTES - off)
        e->csum = nc_csum (e, n);
    }
    else if (h->magic == NC_BSET_MAGIC) {
      n = sizeof *h + (size_t) h->nkeys * sizeof (struct nc_key);
      if (n <= DEVICE_BYTES - off)
        h->csum = nc_csum (h, n);
    }
  }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  unsigned char *img;
  struct cdev *cd;
  struct ncache_device *dev;
  struct ncache_export *nc;
  static struct nc_sb sb;       /* big: the head and the whole table */
  struct journal_check_info ji;
  uint64_t seq;
  size_t i = 1;
  bool fix;

  if (size < 1)
    return 0;
  fix = data[0] & 1;
  if (cdev_sim_create (DEVICE_BYTES, &cd) < 0)
    return 0;
  img = malloc (DEVICE_BYTES);
  if (img == NULL)
    abort ();
  memcpy (img, template_image, DEVICE_BYTES);
  while (i + 5 <= size) {
    uint64_t rlen, base = region_base (data[i], &rlen);
    uint64_t off = data[i + 1] | data[i + 2] << 8 | (uint64_t) data[i + 3] << 16;
    size_t len = data[i + 4];

    i += 5;
    if (len > size - i)
      len = size - i;
    off = (off * 8) % rlen;     /* 8-byte granularity reaches every field */
    if (len > rlen - off)
      len = rlen - off;
    memcpy (img + base + off, data + i, len);
    i += len;
  }
  if (fix)
    fix_checksums (img);
  cdev_sim_poke (cd, 0, img, DEVICE_BYTES);
  free (img);

  /* What `nbdcache check` reads. */
  if (super_read (cd, &sb, NULL) == 0) {
    (void) prio_check_copy (cd, &sb, 0, &seq);
    (void) prio_check_copy (cd, &sb, 1, &seq);
    (void) journal_check (cd, &sb, &ji);
  }

  /* What the server does: recovery, then an export read whole. */
  cdev_sim_hold (cd);
  if (ncache_device_open_cdev ("fuzz", cd, false, &tuning, &dev) == 0) {
    if (open_export (dev, NCACHE_MODE_WRITEBACK, &nc) == 0) {
      unsigned char *buf = malloc (EXPORT_BYTES);
      if (buf) {
        (void) ncache_pread (nc, buf, EXPORT_BYTES, 0, 0);
        free (buf);
      }
      ncache_close (nc);
    }
    ncache_device_close (dev);
  }
  cdev_close (cd);
  return 0;
}
