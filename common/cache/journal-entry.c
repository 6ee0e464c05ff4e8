/* SPDX-License-Identifier: BSD-3-Clause */
/* journal-entry.c — one journal entry on the device: its stamped sectors
 * (entry version 2), fill sectors, and the bytes of an entry of either
 * version.
 *
 * WHAT: an entry is a header and keys (its *payload*, struct nc_jentry).
 * Version 2 cuts the payload into pieces of NC_JSECTOR_PAYLOAD_BYTES and
 * writes piece i in sector i of the entry, followed by a stamp (struct
 * nc_jstamp: the entry's seq and csum, i, the entry's length, and the
 * sector's own checksum).  Ring blocks that hold no entry hold fill
 * sectors: stamps with seq 0.  This file frames a payload into sectors,
 * reads a stamp, fills blocks, and gives back the payload of an entry
 * read from the ring (version 1 entries are their own payload).
 * WHY: recovery must tell a torn write — never acknowledged: some sector
 * of the entry still holds what was there before, an older entry's sector
 * or fill — from damage to an entry that was written whole: then every
 * sector holds either this entry's stamp or no valid stamp at all.  The
 * entry checksum alone cannot say which (journal-replay.c decides).
 *
 * TEAR GRANULARITY: a 512-byte sector is written whole or not at all (the
 * smallest unit any block device writes; a device with 4 KiB sectors
 * tears more coarsely, which is the same case).  Any subset of the sectors
 * of an unsynced write may reach the medium.  A stamp is never half old.
 *
 * INVARIANTS: a framed entry's sectors all carry (seq, csum, nsectors) of
 * the entry and their own index; a fill sector has seq, entry_csum,
 * sector and nsectors 0.  The seed of the sector checksum is the set's
 * uuid, so a sector of another cache set never reads as ours.
 * THREADS AND LOCKS: none; pure functions of their buffers.
 * FAILURE: none here: the callers judge what a missing stamp means.
 * NOT HERE: what an entry's fields mean, scanning the ring (journal-
 * replay.c), placing and writing entries (journal.c).
 */
#include <config.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <xxhash.h>

#include "journal-internal.h"
#include "ondisk.h"

#define STAMP_CSUM_BYTES (NC_JSECTOR_BYTES - sizeof (uint64_t))

uint64_t
jstamp_seed (const uint8_t uuid[16])
{
  uint64_t s;

  memcpy (&s, uuid, sizeof s);
  return s;
}

static void
stamp (unsigned char *sector, uint64_t seed, uint64_t entry_csum,
       uint64_t seq, uint16_t index, uint16_t nsectors)
{
  struct nc_jstamp st = {
    .entry_csum = entry_csum, .seq = seq, .sector = index,
    .nsectors = nsectors, .magic = NC_JSTAMP_MAGIC,
  };

  memcpy (sector + NC_JSECTOR_PAYLOAD_BYTES, &st, sizeof st);
  st.csum = XXH3_64bits_withSeed (sector, STAMP_CSUM_BYTES, seed);
  memcpy (sector + NC_JSECTOR_PAYLOAD_BYTES + offsetof (struct nc_jstamp,
                                                        csum),
          &st.csum, sizeof st.csum);
}

void
jentry_frame (const struct nc_jentry *e, uint64_t seed, void *out)
{
  const unsigned char *in = (const unsigned char *) e;
  unsigned char *sec = out;
  const uint32_t n = e->nblocks * NC_JSECTORS_PER_BLOCK;
  uint32_t i;

  for (i = 0; i < n; i++, sec += NC_JSECTOR_BYTES) {
    memcpy (sec, in + (size_t) i * NC_JSECTOR_PAYLOAD_BYTES,
            NC_JSECTOR_PAYLOAD_BYTES);
    stamp (sec, seed, e->csum, e->seq, (uint16_t) i, (uint16_t) n);
  }
}

void
jentry_fill (void *out, uint32_t nblocks, uint64_t seed)
{
  unsigned char *sec = out;
  uint64_t i, n = (uint64_t) nblocks * NC_JSECTORS_PER_BLOCK;

  /* Every fill sector is the same: make one, copy it. */
  if (n == 0)
    return;
  memset (sec, 0, NC_JSECTOR_PAYLOAD_BYTES);
  stamp (sec, seed, 0, 0, 0, 0);
  for (i = 1; i < n; i++)
    memcpy (sec + i * NC_JSECTOR_BYTES, sec, NC_JSECTOR_BYTES);
}

bool
jsector_stamp (const void *sector, uint64_t seed, struct nc_jstamp *st)
{
  memcpy (st, (const unsigned char *) sector + NC_JSECTOR_PAYLOAD_BYTES,
          sizeof *st);
  return st->magic == NC_JSTAMP_MAGIC &&
    st->csum == XXH3_64bits_withSeed (sector, STAMP_CSUM_BYTES, seed);
}

const char *
jstamp_invalid (const struct nc_jstamp *st, uint64_t sector_no,
                uint32_t ring_blocks)
{
  uint64_t start;

  if (st->seq == 0)
    return st->entry_csum != 0 || st->sector != 0 || st->nsectors != 0
      ? "a fill sector with entry fields" : NULL;
  if (st->nsectors == 0 || st->nsectors % NC_JSECTORS_PER_BLOCK != 0 ||
      st->nsectors > JOURNAL_MAX_ENTRY_BLOCKS * NC_JSECTORS_PER_BLOCK)
    return "a stamp with a bad entry length";
  if (st->sector >= st->nsectors || st->sector > sector_no)
    return "a stamp with a bad sector index";
  start = sector_no - st->sector;
  if (start % NC_JSECTORS_PER_BLOCK != 0 ||
      start / NC_JSECTORS_PER_BLOCK + st->nsectors / NC_JSECTORS_PER_BLOCK
      > ring_blocks)
    return "a stamp that places its entry outside the ring";
  return NULL;
}

bool
jentry_payload (const void *raw, uint32_t nblocks, uint64_t seed,
                void *payload, uint32_t *bad_sector)
{
  const struct nc_jentry *h = raw;
  const unsigned char *sec = raw;
  unsigned char *out = payload;
  const uint32_t n = nblocks * NC_JSECTORS_PER_BLOCK;
  struct nc_jstamp st;
  uint32_t i;

  if (h->version == NC_JENTRY_VERSION_PLAIN) {
    memcpy (payload, raw, (size_t) nblocks * NC_BLOCK_BYTES);
    return true;
  }
  for (i = 0; i < n; i++, sec += NC_JSECTOR_BYTES) {
    if (!jsector_stamp (sec, seed, &st) || st.seq != h->seq ||
        st.entry_csum != h->csum || st.sector != i || st.nsectors != n) {
      *bad_sector = i;
      return false;
    }
    memcpy (out + (size_t) i * NC_JSECTOR_PAYLOAD_BYTES, sec,
            NC_JSECTOR_PAYLOAD_BYTES);
  }
  return true;
}
