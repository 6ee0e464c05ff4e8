/* SPDX-License-Identifier: BSD-3-Clause */
/* fuzz-handshake.c — libFuzzer harness: the option haggling parser
 * (server/handshake.c handshake_parse and every option handler).
 *
 * WHAT: the input is what a client sends after the server's greeting:
 * client flags, then options (and, if an option ends the handshake,
 * transmission requests).  It runs through a real connection of an
 * in-process server (fuzz-server.c).
 * WHY: the handshake is the first thing an unauthenticated peer reaches.
 */
#include <config.h>

#include <stddef.h>
#include <stdint.h>

#include "fuzz-server.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  fuzz_server_session (NULL, 0, data, size);
  return 0;
}
