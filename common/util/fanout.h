/* SPDX-License-Identifier: BSD-3-Clause */
/* fanout.h — run n independent jobs on up to L threads and wait for all.
 *
 * Owns: nothing beyond one call.  Threads: fanout_run's caller is one of
 * the L lanes; the other lanes are threads started for the call and
 * joined before it returns.  Not here: a persistent pool (server/worker.c
 * is the server's), ordering between jobs (there is none).
 */
#ifndef NBDCACHE_FANOUT_H
#define NBDCACHE_FANOUT_H

/* One job: item in [0, n), on lane in [0, lanes).  Jobs of one lane run
 * one at a time, so per-lane state needs no lock.  0 or -errno.
 */
typedef int (*fanout_fn) (void *opaque, unsigned lane, unsigned item);

/* Runs fn for items 0 .. n - 1, each once, on up to `lanes` lanes (at
 * least 1, never more than n).  After the first failure no further item
 * starts; the jobs already running finish.  Returns 0, or the first
 * failure's -errno.  A lane that cannot be started only means fewer lanes.
 */
int fanout_run (unsigned n, unsigned lanes, fanout_fn fn, void *opaque);

#endif /* NBDCACHE_FANOUT_H */
