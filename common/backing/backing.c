/* SPDX-License-Identifier: BSD-3-Clause */
/* backing.c — opening a backing store by URI, and closing any of them.
 *
 * WHAT: backing_open() picks the driver from the URI's form:
 *   file:///ABS/PATH  the file driver, PATH used verbatim (no host part,
 *                     no percent-decoding, no query);
 *   memory:SIZE       the in-memory driver, SIZE as parse_size_bytes()
 *                     reads it ("64M", "1G", "4096");
 *   nbd://, nbds://, nbd+unix://, nbds+unix://, nbd+vsock://, nbds+vsock://
 *                     the remote NBD driver (nbd.c), the URI handed to
 *                     libnbd as it is;
 *   rbd:POOL/IMAGE    the Ceph RBD driver (rbd.c);
 *   SCHEME://…        any other scheme is refused (not supported yet);
 *   anything else     a path for the file driver (a file literally named
 *                     "memory:x" or "rbd:x" is reachable as "./memory:x").
 * WHY: the config file, the plugin's backing= parameter and tests all name
 * a backing store with one string.
 *
 * INVARIANTS: *out is set only on success; every failure is logged once
 * (by the driver, or here for a malformed URI).
 * THREADS AND LOCKS: none here; the drivers document theirs.
 * FAILURE: -EINVAL for a malformed URI, -ENOTSUP for an unknown scheme,
 * otherwise the driver's -errno.
 * NOT HERE: the drivers themselves (file.c, memory.c, …).
 */
#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "backing.h"
#include "log.h"
#include "parse.h"

#define FILE_PREFIX   "file://"
#define MEMORY_PREFIX "memory:"

static bool
has_prefix (const char *s, const char *prefix)
{
  return strncmp (s, prefix, strlen (prefix)) == 0;
}

/* RFC 3986 "scheme://": ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ). */
static bool
has_scheme (const char *s)
{
  size_t n = strspn (s, "abcdefghijklmnopqrstuvwxyz"
                     "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.");

  return n > 0 && strchr ("0123456789+-.", s[0]) == NULL &&
    strncmp (s + n, "://", 3) == 0;
}

static int
open_memory (const char *uri, const struct backing_open_options *opts,
             struct backing **out)
{
  uint64_t size_bytes;
  struct backing *b;
  int r;

  r = parse_size_bytes (uri + strlen (MEMORY_PREFIX), &size_bytes);
  if (r < 0) {
    log_error ("backing: %s: %s (expected memory:SIZE, e.g. memory:64M)",
               uri, r == -ERANGE ? "size too large" : "bad size");
    return r;
  }
  if ((r = backing_memory_create (size_bytes, &b)) < 0)
    return r;
  if (opts->readonly) {
    b->readonly = true;
    b->can_trim = b->can_zero = b->can_fast_zero = false;
  }
  *out = b;
  return 0;
}

int
backing_location_uri (const char *location, char **out)
{
  const char *path = location;

  *out = NULL;
  if (location == NULL)
    return 0;
  if (has_prefix (location, FILE_PREFIX))
    path = location + strlen (FILE_PREFIX);
  else if (has_prefix (location, MEMORY_PREFIX) || has_scheme (location))
    return 0;
  if (*path == '\0')
    return 0;
  *out = backing_file_uri (path);
  return *out != NULL ? 0 : -ENOMEM;
}

int
backing_open (const char *uri, const struct backing_open_options *opts,
              struct backing **out)
{
  static const struct backing_open_options defaults;

  if (opts == NULL)
    opts = &defaults;
  if (uri == NULL || *uri == '\0') {
    log_error ("backing: the backing store name is empty");
    return -EINVAL;
  }

  if (has_prefix (uri, FILE_PREFIX)) {
    const char *path = uri + strlen (FILE_PREFIX);

    if (path[0] != '/') {
      log_error ("backing: %s: expected file:///absolute/path "
                 "(no host part)", uri);
      return -EINVAL;
    }
    return backing_file_open (path, opts, out);
  }
  if (has_prefix (uri, MEMORY_PREFIX))
    return open_memory (uri, opts, out);
  if (backing_is_remote_uri (uri))
    return backing_nbd_open (uri, opts, out);
  if (backing_is_rbd_uri (uri))
    return backing_rbd_open (uri, opts, out);
  if (has_scheme (uri)) {
    log_error ("backing: %s: unsupported URI scheme (supported: file://, "
               "memory:, nbd[s][+unix|+vsock]://, rbd:POOL/IMAGE, or a "
               "plain path)", uri);
    return -ENOTSUP;
  }
  return backing_file_open (uri, opts, out);
}

int
backing_remote_get_state (struct backing *b,
                          struct backing_remote_state *out)
{
  if (b->ops->remote_state == NULL)
    return -ENOTSUP;
  return b->ops->remote_state (b, out);
}

void
backing_close (struct backing *b)
{
  if (b != NULL)
    b->ops->close (b);
}

int
backing_identify (struct backing *b, bool tag, struct backing_identity *out)
{
  memset (out, 0, sizeof *out);
  if (b->ops->identify == NULL) {
    out->kind = BACKING_ID_URI;
    return 0;
  }
  return b->ops->identify (b, tag, out);
}
