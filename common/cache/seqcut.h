/* SPDX-License-Identifier: BSD-3-Clause */
/* seqcut.h — the sequential cutoff: recognising long sequential streams.
 *
 * WHAT: per export, the most recent SEQCUT_STREAMS streams (bcache tracks
 * 128).  A request continues a stream when it starts exactly where the
 * stream's last request ended (and the stream was used within
 * SEQCUT_STREAM_TIMEOUT_MS); its bytes add to the stream's length.
 * Otherwise it starts a new stream, replacing the least recently used one.
 * Once a stream's length passes the cutoff, it and every later request of
 * it bypass the cache: reads are not promoted, writes go around.
 * "Passes" means length >= cutoff (as bcache compares), where the length
 * includes the current request: with a 4 MiB cutoff the fourth 1 MiB
 * request of a stream is the first to bypass, and a single request of
 * 4 MiB or more bypasses on its own.  "Within the timeout" means
 * now - last use <= SEQCUT_STREAM_TIMEOUT_MS.  A zero-length request
 * neither bypasses nor touches any stream.
 * WHY: a backup, a copy or a scan reads or writes far more than the cache
 * holds once; caching it would evict the hot working set for nothing.
 * INVARIANTS: lookups are O(1) on average (a hash of stream end offsets);
 * at most SEQCUT_STREAMS streams, a fixed allocation made at create.
 * THREADS AND LOCKS: thread-safe, one mutex held only for the lookup.
 * Reads and writes share the streams (as bcache does per device).
 * FAILURE: create can fail with -ENOMEM; nothing else fails.
 */
#ifndef NBDCACHE_SEQCUT_H
#define NBDCACHE_SEQCUT_H

#include <stdbool.h>
#include <stdint.h>

#define SEQCUT_STREAMS 128
#define SEQCUT_STREAM_TIMEOUT_MS 5000
#define SEQCUT_DEFAULT_BYTES (UINT64_C (4) << 20)

struct seqcut;

/* cutoff_bytes 0: never bypass (seqcut_check is false, nothing tracked). */
int seqcut_create (uint64_t cutoff_bytes, struct seqcut **out);
void seqcut_destroy (struct seqcut *s);     /* NULL: no-op */
/* Change the cutoff (0: off) for the checks that start after this
 * (a live change; the streams tracked so far are kept).
 */
void seqcut_set_cutoff (struct seqcut *s, uint64_t cutoff_bytes);

/* Account a request of count bytes at offset; true if its stream has now
 * passed the cutoff (this request bypasses the cache).  now_ms is a
 * monotonic clock in milliseconds (seqcut_check uses CLOCK_MONOTONIC).
 */
bool seqcut_check_at (struct seqcut *s, uint64_t offset, uint64_t count,
                      uint64_t now_ms);
bool seqcut_check (struct seqcut *s, uint64_t offset, uint64_t count);
/* Would seqcut_check_at say so (at now_ms)?  Changes nothing. */
bool seqcut_would_bypass_at (struct seqcut *s, uint64_t offset,
                             uint64_t count, uint64_t now_ms);
bool seqcut_would_bypass (struct seqcut *s, uint64_t offset, uint64_t count);

#endif /* NBDCACHE_SEQCUT_H */
