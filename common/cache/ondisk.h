/* SPDX-License-Identifier: BSD-3-Clause */
/* ondisk.h — the cache device format, version 2 (and version 1's
 * superblock, which version 2 reads and converts).
 *
 * WHAT: every structure nbdcache writes to a cache device, byte for byte.
 * All integers are little-endian; each struct's size is pinned with
 * _Static_assert; every metadata block starts with a 64-bit checksum
 * (XXH3-64 from libxxhash, seed 0) of the bytes that follow it, then a
 * magic and the format version.  nbdcache-format(5) is the prose version.
 *
 * UNITS: a *block* is 4096 bytes (NC_BLOCK_BYTES).  Offsets and sizes in
 * keys are in blocks.  A *bucket* is bucket_blocks blocks (16 .. 16384,
 * a power of two: 64 KiB .. 64 MiB) and starts at block
 * bucket * bucket_blocks.
 *
 * LAYOUT (bucket numbers):
 *   bucket 0                 superblock copies at blocks 0 and 1; the rest
 *                            of bucket 0 is unused
 *   [journal_first, +journal_buckets)       the journal ring
 *   [prio_first, +prio_buckets)             prio copy A
 *   [prio_first + prio_buckets, +prio_buckets) prio copy B
 *   [data_first, nbuckets)                  data and btree-node buckets
 *
 *   bucket 0, version 2      superblock heads at blocks 0 and 1; export
 *                            table copy n at blocks
 *                            [2 + n * table_blocks, 2 + (n+1) * table_blocks)
 *
 * SUPERBLOCK: two copies; the valid one with the higher seq wins.  An
 * update writes seq+1 to slot (seq+1) % 2 and syncs, so a torn write
 * leaves the other copy.  A copy is its head (one block) and, since
 * version 2, its export table (table_blocks blocks in bucket 0, named by
 * the head's table_csum): a copy is valid only if both are.  The table
 * holds each export that uses the device, by id, with what identifies its
 * backing store (for a file: a random id kept in the file's extended
 * attribute user.nbdcache.id, and its device, inode and birth time; for
 * a block device: its WWN / serial; else its URI), so a cache is never
 * attached to the wrong backing store and a renamed one finds its slot.
 * A slot is freed only by "nbdcache forget", after its keys are gone.
 *
 * VERSIONS: NC_FORMAT_VERSION is the superblock's.  Bsets, prios and
 * journal entries carry NC_META_VERSION, unchanged since version 1, so a
 * version 1 cache becomes a version 2 one by rewriting only its
 * superblock copies (super.c: the older copy first, a crash in between
 * leaves one of each, and the newer valid one wins).
 *
 * KEYS (struct nc_key, 32 bytes): an extent of one export,
 * [end - size, end) in blocks, sorted by (export_id, end).  A data key
 * points at (bucket, offset, gen): the data lives at block
 * bucket * bucket_blocks + offset and is valid only while the bucket's
 * gen equals key.gen.  ZERO keys read as zeros and point nowhere.  DIRTY
 * keys are newer than the backing store.  In an interior btree node a key
 * is a child pointer: (export_id, end) is the greatest key the child may
 * hold, and (bucket, gen, nonce) name the child node.
 *
 * BTREE NODES: a node owns one bucket.  Each node write appends a *bset*
 * (a header and the node's complete, sorted key set) at the next 4 KiB
 * boundary after the previous one, so a write never overwrites a valid
 * older copy.  Reading a node takes the last bset in the bucket whose
 * checksum, magic, uuid and node nonce are right and whose seq is one more
 * than the previous one.  When the bucket has no room, the node moves to a
 * new bucket (and its parent is rewritten).
 *
 * JOURNAL: entries of whole blocks written one after another through the
 * journal buckets, wrapping to the start when the next entry does not fit
 * before the end.  An entry has seq, last_seq (the oldest entry still
 * needed: entries older than it are in durable btree nodes), the btree
 * root, and the keys inserted since the previous entry, in order.  Replay:
 * scan the ring, take the valid entry with the highest seq, replay its
 * last_seq .. seq in order (all must be present) onto its root.
 * Entry version 2 (NC_JENTRY_VERSION, what is written) is *stamped*: every
 * 512-byte sector ends in a struct nc_jstamp naming the entry (seq, its
 * csum) and the sector's place in it, with the sector's own checksum; the
 * entry's bytes (header, keys) fill the first 480 bytes of each sector in
 * turn.  So recovery tells a torn write (a sector of the entry still holds
 * something else) from a damaged one (every sector was written, one is
 * bad).  Ring blocks that hold no entry hold *fill* sectors (stamps with
 * seq 0).  Version 1 entries (no stamps: header and keys in plain blocks)
 * are still read.  The entry version is the journal's own; it does not
 * follow the superblock's format version.
 *
 * PRIOS: per bucket a gen and an LRU priority, in two copies (A and B)
 * written alternately with a seq; the valid copy with the higher seq wins.
 *
 * CHECKSUM SCOPE: `csum` covers bytes [8, length) where length is stated
 * per struct below.
 */
#ifndef NBDCACHE_ONDISK_H
#define NBDCACHE_ONDISK_H

#include <stdint.h>

/* The structs below are read and written in place, so the host must be
 * little-endian like the format.  A big-endian port converts at the
 * read/write boundary (super.c, bset/btree.c, journal.c, prio.c) first.
 */
_Static_assert (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
                "the cache format is little-endian; this host is not");

#define NC_BLOCK_BYTES 4096u
#define NC_BLOCK_SHIFT 12
#define NC_FORMAT_VERSION 2u    /* the superblock's */
#define NC_FORMAT_VERSION_V1 1u /* read and converted */
#define NC_META_VERSION 1u      /* bsets, prios (and journal entries) */

/* Magics: ASCII, read as little-endian u64. */
#define NC_SB_MAGIC      UINT64_C (0x31425343444e4e4e) /* "NNNDCSB1" */
#define NC_BSET_MAGIC    UINT64_C (0x31544553424e434e) /* "NCNBSET1" */
#define NC_JOURNAL_MAGIC UINT64_C (0x314c524e4a4e434e) /* "NCNJNRL1" */
#define NC_PRIO_MAGIC    UINT64_C (0x314f495250434e4e) /* "NNCPRIO1" */

/* Bucket sizes, in blocks. */
#define NC_BUCKET_BLOCKS_MIN     16u     /* 64 KiB */
#define NC_BUCKET_BLOCKS_MAX     16384u  /* 64 MiB */
#define NC_BUCKET_BLOCKS_DEFAULT 256u    /* 1 MiB */

#define NC_SB_SLOTS 2
/* Version 2: export table blocks per copy: (bucket_blocks - 2) / 2, at
 * most NC_TABLE_BLOCKS_MAX; NC_TABLE_SLOTS_PER_BLOCK slots a block.  64
 * KiB buckets give 56 slots, 128 KiB 120, 1 MiB and up 512.
 */
#define NC_TABLE_FIRST_BLOCK 2u
#define NC_TABLE_BLOCKS_MAX 64u
#define NC_TABLE_SLOTS_PER_BLOCK 8u
#define NC_MAX_EXPORTS (NC_TABLE_BLOCKS_MAX * NC_TABLE_SLOTS_PER_BLOCK)
#define NC_URI_MAX 256          /* bytes incl. the NUL */
#define NC_NAME_MAX 64          /* bytes incl. the NUL */
#define NC_DEVID_MAX 64         /* bytes incl. the NUL */

/* ---- keys ---- */

#define NC_KEY_DIRTY 0x01       /* newer than the backing store */
#define NC_KEY_ZERO  0x02       /* reads as zeros; bucket/offset/gen unused */
#define NC_KEY_NOHOLE 0x04      /* ZERO only: write back without punching
                                   (the client sent NO_HOLE) */
#define NC_KEY_ALL_FLAGS (NC_KEY_DIRTY | NC_KEY_ZERO | NC_KEY_NOHOLE)

/* Interior-node child pointers use NC_EXPORT_ID_MAX / UINT64_MAX as the
 * key of the rightmost child ("everything above").
 */
#define NC_EXPORT_ID_MAX 0xffffu
_Static_assert (NC_MAX_EXPORTS < NC_EXPORT_ID_MAX, "export ids fit keys");

struct nc_key {
  uint64_t end;                 /* exclusive end, blocks */
  uint32_t size;                /* blocks; 1 .. ; start = end - size */
  uint32_t bucket;              /* data or child bucket */
  uint32_t offset;              /* blocks within the bucket */
  uint16_t export_id;
  uint8_t flags;                /* NC_KEY_* */
  uint8_t gen;                  /* bucket gen the pointer is valid for */
  uint64_t nonce;               /* interior keys: child node nonce; else 0 */
};
_Static_assert (sizeof (struct nc_key) == 32, "nc_key is 32 bytes");

/* ---- superblock, version 2 (heads in blocks 0 and 1, tables after) ---- */

/* nc_sb.features: optional parts of version 2.  A cache without a bit
 * (formatted before it existed, or converted from version 1) works
 * without that part.
 */
#define NC_FEATURE_DATA_CSUM 0x1u   /* the data checksum region below */
/* table_csum covers every byte of the table copy.  Without it (a cache
 * written before the bit existed) the first 8 bytes were skipped, as for
 * structures whose checksum is their first field, which left slot 0's id,
 * mode, kind and flags unprotected; every superblock write sets it.
 */
#define NC_FEATURE_TABLE_CSUM 0x2u
#define NC_FEATURE_ALL (NC_FEATURE_DATA_CSUM | NC_FEATURE_TABLE_CSUM)

/* DATA CHECKSUMS (NC_FEATURE_DATA_CSUM): one 32-bit little-endian word
 * per 4 KiB block of the whole device (block b at byte 4 * b of the
 * region), csum_buckets buckets right after prio copy B.  The word of a
 * block holding a key's data is NC_DCSUM (data, b): the low 32 bits of
 * XXH3-64 (seed 0) of the block's 4096 bytes, XORed with nc_dcsum_mix
 * (b), so data written to the wrong block does not verify either, and a
 * checksum can move with its data (GC) without reading the data:
 * word' = word ^ mix (b) ^ mix (b').  The words of blocks that hold no
 * key's data mean nothing.  A region block is written (whole, from
 * memory) and synced after the data it covers and before any key
 * pointing at that data can be durable (a journal entry or a leaf), so a
 * durable key's data always has its word.
 */
#define NC_DCSUM_PER_BLOCK (NC_BLOCK_BYTES / 4u)   /* 1024 words a block */

/* What identifies a slot's backing store (nc_sb_export.kind). */
#define NC_BACKING_URI   0u     /* remote (nbd://, rbd:) or memory: the
                                   URI (without secrets) */
#define NC_BACKING_FILE  1u     /* a regular file: uuid (if NC_ID_UUID),
                                   else dev + ino + btime */
#define NC_BACKING_BLOCK 2u     /* a block device: devid */
#define NC_BACKING_LEGACY 3u    /* converted from version 1: only the URI
                                   is known; the first bind records the
                                   file's identity */

#define NC_ID_UUID  0x01u       /* uuid[] is the file's user.nbdcache.id */
#define NC_ID_BTIME 0x02u       /* btime_* is the file's birth time */
#define NC_SLOT_FORGETTING 0x04u /* "nbdcache forget" began: the slot is
                                   never bound again; its keys may be gone;
                                   the next writable open finishes it */

struct nc_sb_export {
  uint16_t id;                  /* 1 .. table slots; 0 = slot unused */
  uint8_t mode;                 /* enum ncache_mode when last opened */
  uint8_t kind;                 /* NC_BACKING_* */
  uint32_t flags;               /* NC_ID_*, NC_SLOT_FORGETTING */
  uint64_t backing_bytes;       /* backing store size, bytes */
  uint64_t dev;                 /* FILE: st_dev when last bound */
  uint64_t ino;                 /* FILE: st_ino when last bound */
  int64_t btime_sec;            /* FILE: birth time (NC_ID_BTIME) */
  uint32_t btime_nsec;
  uint32_t pad0;
  uint8_t uuid[16];             /* FILE: user.nbdcache.id (NC_ID_UUID) */
  char devid[NC_DEVID_MAX];     /* BLOCK: "wwid:…", "serial:…" or
                                   "devt:MAJ:MIN"; NUL-terminated */
  char name[NC_NAME_MAX];       /* export name (informational), NUL-term. */
  char uri[NC_URI_MAX];         /* where it was last found (a file:
                                   informational, and "a different
                                   backing at the same path" is refused);
                                   URI and LEGACY: the identity */
  uint8_t pad1[64];             /* zero */
};
_Static_assert (sizeof (struct nc_sb_export) == 512, "nc_sb_export size");
_Static_assert (sizeof (struct nc_sb_export) * NC_TABLE_SLOTS_PER_BLOCK
                == NC_BLOCK_BYTES, "nc_sb_export slots fill a block");

/* In memory, the head followed by the whole table; on disk the first
 * NC_BLOCK_BYTES (the head) are block n and exports[] (its first
 * table_blocks * 8 slots) are table copy n.
 */
struct nc_sb {
  uint64_t csum;                /* XXH3-64 of head bytes [8, 4096) */
  uint64_t magic;               /* NC_SB_MAGIC */
  uint32_t version;             /* NC_FORMAT_VERSION */
  uint32_t block_bytes;         /* NC_BLOCK_BYTES */
  uint64_t seq;                 /* newer copy wins */
  uint8_t uuid[16];             /* set identity; in every metadata block */
  uint64_t device_bytes;        /* size at format time */
  uint64_t created_unix;        /* seconds since the epoch, informational */
  uint32_t bucket_blocks;       /* blocks per bucket, power of two */
  uint32_t nbuckets;            /* total, including bucket 0 */
  uint32_t journal_first;       /* bucket */
  uint32_t journal_buckets;
  uint32_t prio_first;          /* bucket; copy B follows copy A */
  uint32_t prio_buckets;        /* per copy */
  uint32_t data_first;          /* first data/btree bucket */
  uint32_t nr_exports;          /* used slots in exports[] */
  uint32_t table_blocks;        /* export table blocks per copy */
  uint32_t pad0;
  uint64_t table_csum;          /* XXH3-64 (seed 0) of the table copy's
                                   bytes [0, table_blocks * 4096); without
                                   NC_FEATURE_TABLE_CSUM its first 8
                                   bytes skipped (nc_csum) */
  uint64_t upgraded_unix;       /* when converted from version 1; 0 =
                                   formatted as version 2 */
  uint32_t features;            /* NC_FEATURE_*; an unknown bit refuses */
  uint32_t csum_first;          /* DATA_CSUM: first bucket of the data
                                   checksum region (= the end of prio
                                   copy B); else 0 */
  uint32_t csum_buckets;        /* DATA_CSUM: its length, buckets (the
                                   data area follows it); else 0 */
  uint32_t pad1;
  uint8_t pad[3960];            /* zero */
  struct nc_sb_export exports[NC_MAX_EXPORTS];
};
_Static_assert (__builtin_offsetof (struct nc_sb, exports) == NC_BLOCK_BYTES,
                "the nc_sb head is a block");

/* ---- superblock, version 1 (read only: converted at the first open) ---- */

#define NC_V1_MAX_EXPORTS 15
#define NC_V1_URI_MAX 176
#define NC_V1_NAME_MAX 48

struct nc_sb_v1_export {
  uint16_t id;                  /* 1 .. 15; 0 = slot unused */
  uint8_t mode;
  uint8_t pad0[5];
  uint64_t backing_bytes;
  char name[NC_V1_NAME_MAX];
  char uri[NC_V1_URI_MAX];      /* backing identity, NUL-terminated */
};
_Static_assert (sizeof (struct nc_sb_v1_export) == 240, "v1 export size");

struct nc_sb_v1 {
  uint64_t csum;                /* XXH3-64 of bytes [8, 4096) */
  uint64_t magic;
  uint32_t version;             /* 1 */
  uint32_t block_bytes;
  uint64_t seq;
  uint8_t uuid[16];
  uint64_t device_bytes;
  uint64_t created_unix;
  uint32_t bucket_blocks;
  uint32_t nbuckets;
  uint32_t journal_first;
  uint32_t journal_buckets;
  uint32_t prio_first;
  uint32_t prio_buckets;
  uint32_t data_first;
  uint32_t nr_exports;
  uint8_t pad[400];
  struct nc_sb_v1_export exports[NC_V1_MAX_EXPORTS];
};
_Static_assert (sizeof (struct nc_sb_v1) == NC_BLOCK_BYTES, "v1 sb size");

/* ---- btree node bset ---- */

struct nc_bset {
  uint64_t csum;                /* XXH3-64 of [8, sizeof hdr + nkeys*32) */
  uint64_t magic;               /* NC_BSET_MAGIC */
  uint32_t version;
  uint16_t level;               /* 0 = leaf */
  uint16_t pad0;
  uint8_t uuid[16];
  uint64_t nonce;               /* node incarnation; equals the parent's
                                   pointer nonce */
  uint64_t seq;                 /* 1 for the first bset in the bucket,
                                   then +1 per append */
  uint64_t journal_seq;         /* newest journal seq whose keys it has */
  uint32_t nkeys;
  uint32_t pad1;
  uint64_t pad2[3];
  struct nc_key keys[];         /* sorted by (export_id, end), disjoint */
};
_Static_assert (sizeof (struct nc_bset) == 96, "nc_bset header size");

/* ---- journal entry ---- */

/* Entry layouts (nc_jentry.version). */
#define NC_JENTRY_VERSION_PLAIN 1u  /* header and keys in plain blocks */
#define NC_JENTRY_VERSION 2u        /* stamped sectors (below): written */
/* Version 3 was a withdrawn build's (per-key data hashes in the nonces,
 * replay dropping writes whose data differed): refused, never read.
 */
#define NC_JENTRY_VERSION_INLINE 4u /* version 2 + NC_JENTRY_INLINE_DATA */

/* Version 2: the entry's bytes — this header, then the keys — are cut in
 * pieces of NC_JSECTOR_PAYLOAD_BYTES; sector i of the entry holds piece i
 * and then a stamp.  csum and nkeys below count in those bytes (the
 * "payload"), not in device bytes; the payload after the keys is zero.
 */
#define NC_JSECTOR_BYTES 512u
#define NC_JSECTORS_PER_BLOCK (NC_BLOCK_BYTES / NC_JSECTOR_BYTES)
#define NC_JSTAMP_MAGIC 0x544d534au   /* "JSMT" */

struct nc_jstamp {              /* the last 32 bytes of every sector */
  uint64_t entry_csum;          /* the csum of the entry (its header's):
                                   which write of seq this sector is from */
  uint64_t seq;                 /* the entry's seq; 0 = a fill sector */
  uint16_t sector;              /* this sector's index in the entry */
  uint16_t nsectors;            /* the entry's length in sectors (8 per
                                   block); fill: 0 */
  uint32_t magic;               /* NC_JSTAMP_MAGIC */
  uint64_t csum;                /* XXH3-64, seeded with the set's uuid
                                   (its first 8 bytes, little-endian), of
                                   the sector's bytes [0, 504) */
};
_Static_assert (sizeof (struct nc_jstamp) == 32, "nc_jstamp is 32 bytes");
#define NC_JSECTOR_PAYLOAD_BYTES \
  (NC_JSECTOR_BYTES - (unsigned) sizeof (struct nc_jstamp))   /* 480 */

/* nc_jentry.flags (versions 2 and 4). */
#define NC_JENTRY_RING_FILLED 0x1   /* when it was written, every ring
                                       block outside the live region held
                                       stamped sectors (entries or fill) */
/* Version 4 only, always set there: the payload carries, right after the
 * keys, the data of every data key (neither NC_KEY_ZERO nor
 * NC_KEY_DELETE) in key order, size * 4096 bytes each, as the key's
 * blocks held it when the entry was written; csum covers it too.  Its
 * write skipped the pre-flush (data, entry, ONE sync), so the data may
 * not have reached its blocks: replay writes it back (REDO in
 * nbdcache-format(5)).
 */
#define NC_JENTRY_INLINE_DATA 0x2
#define NC_JENTRY_ALL_FLAGS (NC_JENTRY_RING_FILLED | NC_JENTRY_INLINE_DATA)

struct nc_jentry {
  uint64_t csum;                /* XXH3-64 of [8, sizeof hdr + nkeys*32
                                   + inline data bytes (version 4)) */
  uint64_t magic;               /* NC_JOURNAL_MAGIC */
  uint32_t version;             /* NC_JENTRY_VERSION, _INLINE or _PLAIN */
  uint32_t nblocks;             /* entry length in blocks (>= 1) */
  uint8_t uuid[16];
  uint64_t seq;                 /* 1, 2, 3 … */
  uint64_t last_seq;            /* oldest entry still needed; <= seq */
  struct nc_key root;           /* btree root pointer; size 0 = empty tree */
  uint16_t root_level;          /* 0 = the root is a leaf */
  uint16_t pad0;
  uint32_t nkeys;
  uint64_t write_first;         /* first seq of the write (one commit) that
                                   carried this entry; 0 = this entry alone.
                                   Tells a torn multi-entry write (a gap at
                                   or after write_first) from a lost durable
                                   entry (a gap before it) */
  uint64_t flags;               /* NC_JENTRY_*; version 1: 0 */
  struct nc_key keys[];         /* in insertion order */
};
_Static_assert (sizeof (struct nc_jentry) == 112, "nc_jentry header size");

/* Journal-only key flag: delete [end - size, end) (trim, invalidate).  Never
 * stored in a btree node.
 */
#define NC_KEY_DELETE 0x80

/* ---- prios ---- */

struct nc_prio_entry {
  uint8_t gen;
  uint8_t pad;
  uint16_t prio;
};
_Static_assert (sizeof (struct nc_prio_entry) == 4, "nc_prio_entry size");

struct nc_prio {
  uint64_t csum;                /* XXH3-64 of [8, 64 + nbuckets*4) */
  uint64_t magic;               /* NC_PRIO_MAGIC */
  uint32_t version;
  uint32_t nbuckets;            /* equals the superblock's */
  uint8_t uuid[16];
  uint64_t seq;                 /* newer copy wins */
  uint64_t pad[2];
  struct nc_prio_entry entries[]; /* one per bucket, bucket 0 first */
};
_Static_assert (sizeof (struct nc_prio) == 64, "nc_prio header size");

#endif /* NBDCACHE_ONDISK_H */
