/* SPDX-License-Identifier: BSD-3-Clause */
/* assemble.h — put a cache device's metadata together: the recovery order.
 *
 * Owns: nothing of its own.  It creates the modules (bucket set, journal,
 * btree) into the caller's fields (struct assemble_slots), which the
 * caller then owns; assemble_release frees them after a failure.  The
 * cdev stays the caller's.  The modules call each other back through the
 * struct assembly and those fields (the journal asks the btree to close an
 * entry, the allocator asks the journal for its seq, the caller's
 * pre_write hook may read its own fields): the struct assembly must stay
 * where it is, alive, as long as the modules do.
 * Threads: one; nothing is served while a device is assembled.
 * On disk: read-write assembly writes (replayed leaves, one journal entry
 * recording the root); read-only assembly never writes a byte.
 * Not here: opening the file, create = yes and formatting (device.c,
 * format.h); what an inspection reports (admin/inspect.c); serving.
 *
 * THE ORDER (cache-internal.h, OPEN), written once here:
 *   1. assemble_super:   the newest valid superblock copy.
 *   2. assemble_prios:   the bucket table, gens and priorities (prio copy).
 *   3. assemble_journal: the journal ring; replay into memory (the root,
 *                        and every live key, each checked or visited).
 *   4. assemble_index:   the btree at that root, then
 *      read-write: mark what the tree and the journal point at (walk #1),
 *        replay the journal keys into the tree, write every changed node,
 *        start the journal and commit an entry recording the root, then
 *        count live and dirty blocks exactly (walk #2);
 *      read-only: no journal behind the tree, the keys are not replayed
 *        (replay may split nodes, which writes); one walk marks buckets
 *        and shows every node and key to the caller's visitor.
 * A step needs the ones before it; each returns 0 or -errno (logged by the
 * modules, with the device named here where it adds something).
 */
#ifndef NBDCACHE_ASSEMBLE_H
#define NBDCACHE_ASSEMBLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ondisk.h"

struct btree;
struct bucket_set;
struct cdev;
struct crosscheck;
struct journal;

struct assemble_options {
  bool readonly;                /* inspect: nothing is written */
  uint64_t node_cache_bytes;    /* 0 = default */
  unsigned journal_delay_ms;    /* read-write: group commit delay; 0 =
                                   the default, 100 ms */
  /* Read-write, each optional: the allocator wants background work
   * (bucket lock held: only signal); make the backing stores durable
   * before a leaf or journal write (btree.h, journal.h).
   */
  void (*kick) (void *opaque, bool need_gc);
  int (*pre_write) (void *opaque);
  /* Read-write, optional, all three or none (journal.h): pre_write for
   * a journal write that skips its pre-flush, in its two halves, and its
   * final sync's news.
   */
  int (*pre_write_unsynced) (void *opaque);
  int (*write_unsynced) (void *opaque, uint64_t *token);
  void (*synced) (void *opaque, uint64_t token);
  /* Read-write, optional: replay wrote back `blocks` blocks of data at
   * device block `block` from a journal entry (journal.c REDO): their
   * data checksum words must say so.  Then redo_flush (optional) makes
   * those words durable; the data itself is synced here.
   */
  int (*data_redone) (void *opaque, uint64_t block, uint32_t blocks,
                      const void *data);
  int (*redo_flush) (void *opaque);
  /* Read-only visitors (each optional): a live journal key, in order (it
   * is not replayed), with why it is invalid (NULL: valid; replay would
   * refuse it, or it points at a gen newer than its bucket's); a node and
   * a leaf key met by the walk (current: its gen is the bucket's, so it
   * was counted).  A negative return stops the assembly with that error.
   */
  int (*journal_key) (void *opaque, const struct nc_key *k, uint64_t seq,
                      const char *why);
  int (*node) (void *opaque, uint32_t bucket, uint16_t level,
               uint32_t nkeys);
  int (*key) (void *opaque, const struct nc_key *k, bool current);
  void *opaque;
};

/* Where the parts go: the caller's fields, set as each step creates its
 * part (so a hook of the caller's already sees it), NULL again after
 * assemble_release.  sb must outlive the modules (they keep a pointer).
 */
struct assemble_slots {
  struct nc_sb *sb;             /* read in step 1 */
  struct bucket_set **bs;       /* step 2 */
  struct journal **journal;     /* step 3 */
  struct btree **bt;            /* step 4 */
};

struct assembly {
  struct cdev *cd;              /* the caller's */
  const char *name;             /* the cache's name in messages, or "" */
  struct assemble_options opts; /* as given to the latest step */
  struct nc_sb *sb;             /* the slots */
  struct bucket_set **bs;
  struct journal **journal;
  struct btree **bt;
  int slot;                     /* after step 1: which copy sb came from */
  uint32_t sb_version;          /* after step 1: its format version on the
                                   device (1: converted in memory only) */
  struct nc_key root;           /* after step 3: the journal's root */
  uint16_t root_level;
  uint64_t journal_keys;        /* after step 3: live keys in the journal */
  struct nc_key *jkeys;         /* read-write, steps 3-4: the keys to
                                   replay; freed by step 4 */
  size_t jkeys_len, jkeys_cap;
  struct crosscheck *cx;        /* steps 3-4: the cross-checks
                                   (crosscheck.h); freed by step 4 */
};

/* Zero *a and remember cd, name and the slots (all borrowed; name NULL
 * = "").
 */
void assemble_init (struct assembly *a, struct cdev *cd, const char *name,
                    const struct assemble_slots *slots);

int assemble_super (struct assembly *a);
int assemble_prios (struct assembly *a, const struct assemble_options *o);
int assemble_journal (struct assembly *a, const struct assemble_options *o);
int assemble_index (struct assembly *a, const struct assemble_options *o);

/* Steps 1-4. */
int assemble_device (struct assembly *a, const struct assemble_options *o);

/* After a failure: free the parts in the slots (journal, btree, bucket
 * set) and set them NULL; never the cdev.  Writes nothing: a device that
 * should keep its work is closed by its owner (device.c).
 */
void assemble_release (struct assembly *a);

#endif /* NBDCACHE_ASSEMBLE_H */
