/* SPDX-License-Identifier: BSD-3-Clause */
/* journal-internal.h — what journal.c and journal-replay.c share: struct
 * journal, the ring's geometry, and the on-disk entry's size arithmetic.
 *
 * Owns: nothing; journal.c creates and destroys struct journal and runs
 * it, journal-replay.c fills in its durable part once, at open.
 * Threads: j->lock guards every field below it in struct journal (see
 * THREADS AND LOCKS in journal.c).
 * On disk: nc_jentry.write_first holds the first seq of the write, the seq
 * of the first entry of the *write* that carried the entry (a write = the
 * pwrites between two syncs; 0 from an older writer means the entry
 * alone).  Replay uses it to tell a torn last write from corruption.
 * The entry layouts (plain, stamped) are ondisk.h's; journal-entry.c
 * frames and reads them.
 * Not here: the public API (journal.h).  Only the journal's files
 * (journal.c, journal-write.c, journal-replay.c, journal-entry.c) and
 * tests that read or forge entries include this.
 */
#ifndef NBDCACHE_JOURNAL_INTERNAL_H
#define NBDCACHE_JOURNAL_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "journal.h"
#include "ondisk.h"

/* See On disk above. */
#define JENTRY_WRITE_FIRST(e) ((e)->write_first)

struct key_vec {
  struct nc_key *v;
  size_t len, cap;
};

/* A closed entry, not yet durable. */
struct closed_entry {
  uint64_t seq;
  size_t first;                 /* its keys: closed_keys.v[first ..] */
  uint32_t nkeys;
  uint32_t nblocks;
  bool inline_data;             /* version 4: carries its keys' data
                                   (journal.c REDO); set once, before
                                   its first write, never cleared */
  bool tried;                   /* planned into a write at least once:
                                   its size may no longer change */
};

/* A durable entry still inside the live region. */
struct live_entry {
  uint64_t seq;
  uint32_t pos;                 /* ring block */
  uint32_t nblocks;
};

/* One write of a commit, as journal.c planned it: closed entries 0 ..
 * count - 1 at j->plan_pos[], the fill before them.
 */
struct plan {
  size_t count;                 /* closed entries 0 .. count-1 */
  uint32_t blocks;              /* their total length */
  uint32_t end;                 /* write_pos afterwards */
  bool no_room;                 /* stopped for space (not the size cap) */
  struct nc_key root;
  uint16_t root_level;
  uint32_t fill_lo, fill_blocks; /* FILL before the write (may wrap) */
  bool ring_filled;             /* the entries get NC_JENTRY_RING_FILLED */
};

/* A journal_wait caller (journal.c). */
struct waiter;

/* Where the ring is (journal_create, journal_check, journal_format). */
struct ring_geom {
  struct cdev *cd;
  uint8_t uuid[16];
  uint64_t offset;              /* bytes: ring block 0 */
  uint32_t blocks;
  uint64_t seed;                /* of the sector stamps (jstamp_seed) */
  uint32_t bucket_blocks;       /* where a key's data is (REDO) */
};

struct journal {
  /* Immutable after journal_create. */
  struct ring_geom g;
  uint32_t entry_max_blocks;
  uint32_t entry_max_keys;
  uint32_t reserve_blocks;

  pthread_mutex_t lock;
  pthread_cond_t kick;          /* the commit thread waits here */
  pthread_cond_t done;          /* waiters and throttlers wait here */

  /* The thread. */
  pthread_t thread;
  bool thread_joinable;
  bool running;                 /* started, not yet exited */
  bool stopping;                /* journal_stop: final commit, exit */
  bool aborting;                /* journal_destroy: exit now */
  /* The commit token: only its holder runs commit() (journal.c INLINE
   * COMMIT), the commit thread or a caller of journal_wait_or_commit.
   */
  bool committing;
  pthread_t committer;          /* valid while committing */
  struct journal_hooks hooks;
  uint64_t delay_ns;
  int last_result;              /* of the last commit */

  bool replayed;
  int broken;                   /* -ENOMEM lost keys: every wait fails */

  /* The open entry. */
  struct key_vec open;
  uint64_t open_seq;            /* atomic stores; 0 before replay */
  bool needed;
  uint64_t open_since_ns;       /* first key or mark; 0 = nothing open */

  /* Closed, not yet durable. */
  struct key_vec closed_keys;
  struct closed_entry *closed;
  size_t nclosed, closed_cap;
  uint64_t pin;                 /* oldest pin at the latest close */
  struct nc_key root;           /* at the latest close */
  uint16_t root_level;

  /* Durable. */
  uint64_t durable_seq;         /* atomic stores */
  struct live_entry *live;      /* circular, capacity g.blocks */
  size_t live_head, nlive;
  uint32_t write_pos;           /* ring block after the newest durable
                                   entry; may equal g.blocks */
  /* Ring blocks that may hold sectors without a valid stamp (zeros from
   * format, version 1 entries): unfilled_len blocks from unfilled_lo,
   * wrapping.  Set by replay; each commit fills the part that is free
   * before it writes (journal.c FILL).
   */
  uint32_t unfilled_lo, unfilled_len;

  /* Requests. */
  struct waiter *waiters;
  size_t nwaiters;
  uint64_t want_seq;            /* highest seq a waiter asked for */
  unsigned throttlers;

  /* Failure. */
  bool failing;                 /* logged; cleared by a success */
  bool close_held;              /* the last close stopped at the seq
                                   bound (journal.c INVARIANTS) */
  bool bound_logged;
  uint64_t retry_at_ns;
  unsigned retry_ms;
  bool pin_warned;

  /* The commit thread's own (no lock): every entry up to this seq was
   * closed before a cdev_sync that has since succeeded began, so the data
   * and nodes its keys point at are durable (journal.c PIPELINE).
   */
  uint64_t synced_through;
  bool presynced;               /* the current write skipped its pre-flush */
  bool unflushed;               /* ... because its entries carry their data
                                   (journal.c REDO) */
  bool filled;                  /* the current write filled (and synced) */

  /* The commit thread's write buffer and plan arrays. */
  void *wbuf;
  size_t wbuf_bytes;
  void *ebuf;                   /* one entry's payload, entry_max_blocks */
  void *fill_buf;               /* FILL_CHUNK_BLOCKS of fill; NULL until
                                   a commit fills */
  uint32_t *plan_pos;
  uint64_t *plan_last;
  size_t plan_cap;
  void *ibuf;                   /* REDO: a read-back buffer for inline
                                   data, JOURNAL_INLINE_MAX_BLOCKS */
  struct cdev_ring *ring;       /* OVERLAP (journal-write.c): the entry
                                   writes of a REDO write; NULL until one
                                   is made */
  bool ring_off;                /* ... none can be (no io_uring, not
                                   O_DIRECT): blocking writes */
  struct journal_stash *stash;  /* REDO: blocks just written
                                   (journal-stash.c); NULL: none */
  uint64_t stash_hit_blocks;    /* the current write's inline blocks from */
  uint64_t stash_miss_blocks;   /* the stash / read back (st at commit) */

  /* Replay's (journal-replay.c), until journal_redo: the inline data of
   * the newest replayed write, keys and bytes in entry order.
   */
  struct key_vec redo_keys;
  unsigned char *redo_data;
  size_t redo_bytes;

  struct journal_stats st;
};

/* Blocks of a version 2 or 4 entry with nkeys keys and inline_bytes of
 * data.
 */
static inline uint32_t
jentry_blocks_for (uint64_t nkeys, uint64_t inline_bytes)
{
  const uint64_t per_block = (uint64_t) NC_JSECTORS_PER_BLOCK
    * NC_JSECTOR_PAYLOAD_BYTES;

  return (sizeof (struct nc_jentry) + nkeys * sizeof (struct nc_key)
          + inline_bytes + per_block - 1) / per_block;
}

/* A key whose data a version 4 entry carries (NC_JENTRY_INLINE_DATA). */
static inline bool
jkey_has_data (const struct nc_key *k)
{
  return !(k->flags & (NC_KEY_ZERO | NC_KEY_DELETE));
}

/* Inline data bytes a version 4 entry with these keys carries; more
 * than any entry holds if a size is absurd (no overflow: nkeys is
 * bounded by the entry length, a size by 2^32 blocks).
 */
static inline uint64_t
jentry_inline_bytes (const struct nc_key *keys, uint32_t nkeys)
{
  uint64_t n = 0;
  uint32_t i;

  for (i = 0; i < nkeys; i++)
    if (jkey_has_data (&keys[i]))
      n += (uint64_t) keys[i].size * NC_BLOCK_BYTES;
  return n;
}

/* Payload bytes (header and keys) in an entry of nblocks blocks. */
static inline uint64_t
jentry_payload_bytes (uint32_t version, uint32_t nblocks)
{
  return version == NC_JENTRY_VERSION_PLAIN
    ? (uint64_t) nblocks * NC_BLOCK_BYTES
    : (uint64_t) nblocks * NC_JSECTORS_PER_BLOCK * NC_JSECTOR_PAYLOAD_BYTES;
}

/* Keys that fit in an entry of nblocks blocks. */
static inline uint64_t
keys_in_blocks (uint32_t version, uint32_t nblocks)
{
  return (jentry_payload_bytes (version, nblocks)
          - sizeof (struct nc_jentry)) / sizeof (struct nc_key);
}

/* ---- journal-write.c: building and writing one planned write ---- */

/* REDO (journal.c): with j->lock held, before placement, make the closed
 * entries carry their data if a waiter wants them and it is little.
 */
void jwrite_mark_inline_locked (struct journal *j);
/* May the planned write skip its pre-flush?  (j->lock held.) */
bool jwrite_unflushed_locked (struct journal *j, const struct plan *pl);

/* Build and write the planned entries: fill, pre-flush (unless
 * PIPELINE says they need none), pwrites (for REDO, with
 * hooks->write_unsynced overlapping them: *token set for hooks->synced),
 * pre-close, the final sync.  The commit token's holder only, no lock.
 * 0 or -errno.
 */
int jwrite_plan (struct journal *j, const struct plan *pl, uint64_t *token);

/* ---- journal-stash.c: REDO's stash of blocks just written ---- */

/* Blocks the stash holds (1 MiB): a few commits' worth of inline data. */
#define STASH_SLOTS 256u

struct journal_stash;
/* 0 and *out, or -ENOMEM. */
int jstash_create (struct journal_stash **out);
/* NULL is a no-op. */
void jstash_destroy (struct journal_stash *st);

/* ---- journal-entry.c: stamped sectors (ondisk.h, entry version 2) ---- */

/* The seed of every sector checksum of the set with this uuid. */
uint64_t jstamp_seed (const uint8_t uuid[16]);
/* Write the version 2 entry e (its payload: header with csum set, keys,
 * zeros up to jentry_payload_bytes) as e->nblocks stamped blocks at out.
 */
void jentry_frame (const struct nc_jentry *e, uint64_t seed, void *out);
/* nblocks blocks of fill sectors at out. */
void jentry_fill (void *out, uint32_t nblocks, uint64_t seed);
/* Does the 512-byte sector carry a valid stamp (magic, checksum)?  *st
 * gets the stamp either way.
 */
bool jsector_stamp (const void *sector, uint64_t seed, struct nc_jstamp *st);
/* NULL if the valid stamp st, read at ring sector sector_no, describes a
 * possible sector (fill, or a sector of an entry inside the ring), else
 * why not: no write makes such a stamp.
 */
const char *jstamp_invalid (const struct nc_jstamp *st, uint64_t sector_no,
                            uint32_t ring_blocks);
/* The payload of the entry whose nblocks blocks are at raw (version from
 * its header): a version 1 entry is copied, a version 2 one is checked
 * sector by sector and its pieces joined.  false, and *bad_sector, if a
 * sector does not carry this entry's stamp for its place.
 */
bool jentry_payload (const void *raw, uint32_t nblocks, uint64_t seed,
                     void *payload, uint32_t *bad_sector);

/* Byte offset on the device of ring block pos. */
static inline uint64_t
ring_byte (const struct ring_geom *g, uint32_t pos)
{
  return g->offset + (uint64_t) pos * NC_BLOCK_BYTES;
}

/* Read the ring geometry from a superblock; -EINVAL (logged) if unusable. */
int journal_geom_from_sb (struct cdev *cd, const struct nc_sb *sb,
                          struct ring_geom *g);

#endif /* NBDCACHE_JOURNAL_INTERNAL_H */
