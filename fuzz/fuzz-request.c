/* SPDX-License-Identifier: BSD-3-Clause */
/* fuzz-request.c — libFuzzer harness: the transmission request parser
 * (server/nbd-request.c nbd_request_parse, validate; common/protocol
 * nbd_decode_request) and the reply path.
 *
 * WHAT: the first input byte picks a canned, valid handshake (plain; with
 * structured replies; with extended headers; structured + meta contexts;
 * each to the cached export "one" or the uncached "two"), which the
 * harness sends first; the rest of the input is the transmission phase:
 * request headers, payloads, lying lengths, disconnects.  It runs through
 * a real connection of an in-process server (fuzz-server.c).
 * WHY: without the prefix, nearly every mutation would die in the
 * handshake and never reach the request parser.
 */
#include <config.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "byteorder.h"
#include "nbd-proto.h"
#include "fuzz-server.h"

static size_t
put_option (unsigned char *p, uint32_t option, const void *data,
            uint32_t len)
{
  put_be64 (p, NBD_IHAVEOPT);
  put_be32 (p + 8, option);
  put_be32 (p + 12, len);
  if (len)
    memcpy (p + 16, data, len);
  return 16 + len;
}

static size_t
make_prefix (unsigned char *p, unsigned mode)
{
  static const char base_alloc[] = "base:allocation";
  static const char state[] = "nbdcache:state";
  const char *name = mode & 1 ? "two" : "one";
  uint32_t nlen = strlen (name);
  unsigned char buf[128];
  size_t n = 0, b;

  put_be32 (p, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
  n += 4;
  switch ((mode >> 1) % 4) {
  case 0:
    break;
  case 1:
    n += put_option (p + n, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    break;
  case 2:
    n += put_option (p + n, NBD_OPT_EXTENDED_HEADERS, NULL, 0);
    break;
  case 3:
    n += put_option (p + n, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    /* SET_META_CONTEXT: name, 2 queries. */
    b = 0;
    put_be32 (buf, nlen); b += 4;
    memcpy (buf + b, name, nlen); b += nlen;
    put_be32 (buf + b, 2); b += 4;
    put_be32 (buf + b, strlen (base_alloc)); b += 4;
    memcpy (buf + b, base_alloc, strlen (base_alloc));
    b += strlen (base_alloc);
    put_be32 (buf + b, strlen (state)); b += 4;
    memcpy (buf + b, state, strlen (state)); b += strlen (state);
    n += put_option (p + n, NBD_OPT_SET_META_CONTEXT, buf, b);
    break;
  }
  /* GO: name, no info requests. */
  put_be32 (buf, nlen);
  memcpy (buf + 4, name, nlen);
  put_be16 (buf + 4 + nlen, 0);
  n += put_option (p + n, NBD_OPT_GO, buf, 4 + nlen + 2);
  return n;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  unsigned char prefix[512];
  size_t plen;

  if (size < 1)
    return 0;
  plen = make_prefix (prefix, data[0]);
  fuzz_server_session (prefix, plen, data + 1, size - 1);
  return 0;
}
