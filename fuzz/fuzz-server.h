/* SPDX-License-Identifier: BSD-3-Clause */
/* fuzz-server.h — an in-process nbdcached for the protocol harnesses.
 *
 * WHAT: fuzz_server_session feeds bytes to a real server connection (the
 * server's own conn/handshake/request/reply/worker code, one export with a
 * file cache in writeback mode) over a socketpair, reads and discards what
 * the server answers, and returns once the server has closed the
 * connection.  When the server has consumed every byte and nothing is in
 * flight, the harness half-closes its end so the server sees EOF.
 * WHY: handshake_parse and nbd_request_parse take a struct conn and answer
 * through the event loop; driving them through a socket with the real
 * loop is the narrowest entry point that needs no edit to server/.
 * INVARIANTS: single-threaded use by libFuzzer; the server is created once
 * (first call) in a temporary directory and lives for the process.
 */
#ifndef NBDCACHE_FUZZ_SERVER_H
#define NBDCACHE_FUZZ_SERVER_H

#include <stddef.h>
#include <stdint.h>

/* prefix (may be NULL) is sent before data. */
void fuzz_server_session (const void *prefix, size_t plen,
                          const uint8_t *data, size_t size);

#endif /* NBDCACHE_FUZZ_SERVER_H */
