/* SPDX-License-Identifier: BSD-3-Clause */
/* test-stable.c — the stability check after a crash (see test-stable.h). */
#include <config.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backing.h"
#include "cache.h"
#include "compiler.h"
#include "test-helpers.h"
#include "test-stable.h"

#define SECTOR TEST_SECTOR_BYTES
#define CHUNK_BYTES (1024u * 1024u)

/* The whole export through the engine into buf. */
static int
read_export (struct ncache_export *nc, unsigned char *buf, uint64_t bytes)
{
  uint64_t off;
  int r;

  for (off = 0; off < bytes; off += CHUNK_BYTES) {
    uint64_t n = MIN ((uint64_t) CHUNK_BYTES, bytes - off);

    if ((r = ncache_pread (nc, buf + off, n, off, 0)) < 0)
      return r;
  }
  return 0;
}

/* The whole backing store, through a handle of its own, into buf. */
static int
read_backing (struct test_store *st, unsigned char *buf, uint64_t bytes)
{
  struct backing *b;
  uint64_t off;
  int r;

  if ((r = test_store_open (st, &b)) < 0)
    return r;
  for (off = 0; off < bytes; off += CHUNK_BYTES) {
    uint64_t n = MIN ((uint64_t) CHUNK_BYTES, bytes - off);

    if ((r = backing_pread (b, buf + off, n, off)) < 0)
      break;
  }
  backing_close (b);
  return r < 0 ? r : 0;
}

static void
compare (const unsigned char *a, const unsigned char *b, uint64_t bytes,
         const char *what, test_stable_bad_fn bad, void *opaque,
         unsigned max_reported, struct test_stable_report *rep)
{
  uint64_t s, nr = bytes / SECTOR;

  for (s = 0; s < nr; s++) {
    if (memcmp (a + s * SECTOR, b + s * SECTOR, SECTOR) == 0)
      continue;
    if (rep->nr_bad_sectors == 0) {
      rep->what = what;
      rep->first_bad_sector = s;
    }
    if (bad != NULL && rep->nr_bad_sectors < max_reported)
      bad (opaque, what, s, a + s * SECTOR, b + s * SECTOR);
    rep->nr_bad_sectors++;
  }
}

int
test_check_stable (struct ncache_export *nc, struct test_store *st,
                   uint64_t export_bytes, const unsigned char *served,
                   bool reread, test_stable_bad_fn bad, void *opaque,
                   unsigned max_reported, struct test_stable_report *rep)
{
  unsigned char *a = NULL, *other = malloc (export_bytes);
  int r;

  memset (rep, 0, sizeof *rep);
  if (other == NULL)
    return -ENOMEM;
  if (served == NULL) {
    if ((a = malloc (export_bytes)) == NULL) {
      r = -ENOMEM;
      goto out;
    }
    rep->what = "reading the export after the reopen";
    if ((r = read_export (nc, a, export_bytes)) < 0)
      goto fail;
    served = a;
  }
  rep->what = "ncache_drain";
  if ((r = ncache_drain (nc, NULL, NULL)) < 0)
    goto fail;
  if (reread) {
    rep->what = "reading the export again after the drain";
    if ((r = read_export (nc, other, export_bytes)) < 0)
      goto fail;
    compare (served, other, export_bytes, "a read repeated after the drain",
             bad, opaque, max_reported, rep);
  }
  rep->what = "reading the backing store after the drain";
  if ((r = read_backing (st, other, export_bytes)) < 0)
    goto fail;
  compare (served, other, export_bytes,
           "the backing store after the drain (= a read after evicting "
           "everything)", bad, opaque, max_reported, rep);
  r = rep->nr_bad_sectors > 0 ? 1 : 0;
  if (r == 0)
    rep->what = NULL;
  goto out;

 fail:
  rep->err = r;
 out:
  free (a);
  free (other);
  return r;
}
