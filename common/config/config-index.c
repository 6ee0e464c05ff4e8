/* SPDX-License-Identifier: BSD-3-Clause */
/* config-index.c — a set of section names with constant-time lookup.
 *
 * WHAT: an open-addressing hash table (linear probing, FNV-1a) from a name
 * to the index of its section, used by the parser to refuse duplicate
 * [cache NAME] / [export NAME] headers.
 * WHY: a linear search per header made loading quadratic in the number of
 * sections (40,000 exports: over 20 s); with the table a config loads in
 * time linear in its size.
 * INVARIANTS: the table is at most half full; a slot holds index + 1 (0 =
 * empty); names are not copied — the caller keeps them alive (they are
 * the sections' own name strings) and never changes them.
 * THREADS: none (one load at a time).
 * FAILURE: name_index_add returns -ENOMEM and leaves the table as it was.
 */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "config-internal.h"

static uint64_t
hash_name (const char *s)
{
  uint64_t h = UINT64_C (0xcbf29ce484222325);

  for (; *s; s++) {
    h ^= (unsigned char) *s;
    h *= UINT64_C (0x100000001b3);
  }
  return h;
}

static size_t
probe (const struct name_index *ix, const char *name, uint64_t h)
{
  size_t mask = ix->cap - 1, i = h & mask;

  while (ix->slots[i].idx1 != 0 &&
         (ix->slots[i].hash != h ||
          strcmp (ix->slots[i].name, name) != 0))
    i = (i + 1) & mask;
  return i;
}

long
name_index_find (const struct name_index *ix, const char *name)
{
  size_t i;

  if (ix->cap == 0)
    return -1;
  i = probe (ix, name, hash_name (name));
  return ix->slots[i].idx1 == 0 ? -1 : (long) (ix->slots[i].idx1 - 1);
}

static int
grow (struct name_index *ix)
{
  size_t cap = ix->cap ? ix->cap * 2 : 64, i;
  struct name_index bigger = { .cap = cap, .len = ix->len };

  bigger.slots = calloc (cap, sizeof *bigger.slots);
  if (bigger.slots == NULL)
    return -ENOMEM;
  for (i = 0; i < ix->cap; i++)
    if (ix->slots[i].idx1 != 0)
      bigger.slots[probe (&bigger, ix->slots[i].name, ix->slots[i].hash)] =
        ix->slots[i];
  free (ix->slots);
  *ix = bigger;
  return 0;
}

int
name_index_add (struct name_index *ix, const char *name, size_t index)
{
  uint64_t h = hash_name (name);
  size_t i;

  if (2 * (ix->len + 1) > ix->cap && grow (ix) < 0)
    return -ENOMEM;
  i = probe (ix, name, h);
  if (ix->slots[i].idx1 == 0)
    ix->len++;
  ix->slots[i].hash = h;
  ix->slots[i].name = name;
  ix->slots[i].idx1 = index + 1;
  return 0;
}

void
name_index_free (struct name_index *ix)
{
  free (ix->slots);
  memset (ix, 0, sizeof *ix);
}
