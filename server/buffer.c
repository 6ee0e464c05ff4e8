/* SPDX-License-Identifier: BSD-3-Clause */
/* buffer.c — the budget for request data held in memory.
 *
 * WHAT: every READ holds a buffer of its length until its reply has been
 * written, every WRITE one of its length from its header until its reply;
 * this file counts those bytes per connection and for the whole server
 * and decides whether the next request may be admitted.  Bounds: the
 * server holds at most [server] max_buffer, one connection at most a
 * quarter of it (BUFFER_CONN_SHARE).  A request that does not fit leaves
 * its header unread and the connection stops reading the socket (so the
 * client blocks in its own send); it resumes when one of its replies has
 * gone (its own share), or when anyone's has (the server's bound: the
 * connection waits on srv->buffer_waiters).
 * WHY: a client that never reads replies would otherwise pin up to 128
 * (CONN_MAX_IN_FLIGHT) x 64 MiB per connection, and nothing capped the sum
 * over connections.
 * INVARIANTS: c->buffer_bytes is the sum of r->buffer_bytes over the
 * connection's requests in flight, srv->buffer_bytes the sum over all
 * connections (closed ones included until their requests come back).  A
 * request is always admitted when its connection and the server hold
 * nothing, so a request larger than the bounds is served alone and
 * nothing waits forever on memory that nobody holds.  A connection is on
 * srv->buffer_waiters at most once, and never after it was closed.
 * Requests refused during validation or while the server stops allocate
 * no buffer and are not charged.
 * THREADS: loop thread only.
 * FAILURE: none; over the bound means "wait", never an error.
 * NOT HERE: the request free list's recycled buffers (nbd-request.c, bounded
 * separately); the in-flight request count (conn.c).
 */
#include <config.h>

#include "server.h"

#define BUFFER_CONN_SHARE 4     /* a connection may hold 1/4 of the bound */

/* Does a request needing `need` bytes fit now?  If not, the connection
 * stops reading and is resumed when memory comes back.
 */
bool
buffer_admit (struct conn *c, uint64_t need)
{
  struct server *srv = c->srv;
  uint64_t max = srv->cfg->server.max_buffer_bytes;
  uint64_t conn_max = max / BUFFER_CONN_SHARE;

  if (need == 0 || conn_shutting_down (c))
    return true;                /* no buffer, or ESHUTDOWN without one */
  if (c->buffer_bytes > 0 && c->buffer_bytes + need > conn_max) {
    /* Its own replies bring it back (conn_reply_sent). */
    conn_set_reading (c, false);
    return false;
  }
  if (srv->buffer_bytes > 0 && srv->buffer_bytes + need > max) {
    if (!c->buffer_waiting) {
      c->buffer_waiting = true;
      c->buffer_next = srv->buffer_waiters;
      srv->buffer_waiters = c;
    }
    conn_set_reading (c, false);
    return false;
  }
  return true;
}

void
buffer_charge (struct conn *c, struct request *r, uint64_t bytes)
{
  r->buffer_bytes = bytes;
  c->buffer_bytes += bytes;
  c->srv->buffer_bytes += bytes;
}

/* Resume every connection waiting on the server's bound: each re-checks
 * its own next request.
 */
static void
wake_waiters (struct server *srv)
{
  while (srv->buffer_waiters) {
    struct conn *c = srv->buffer_waiters;

    srv->buffer_waiters = c->buffer_next;
    c->buffer_waiting = false;
    conn_resume (c);
  }
}

void
buffer_uncharge (struct conn *c, struct request *r)
{
  struct server *srv = c->srv;

  if (r->buffer_bytes == 0)
    return;
  c->buffer_bytes -= r->buffer_bytes;
  srv->buffer_bytes -= r->buffer_bytes;
  r->buffer_bytes = 0;
  if (srv->buffer_waiters &&
      srv->buffer_bytes < srv->cfg->server.max_buffer_bytes)
    wake_waiters (srv);
}

/* The connection is closing (or the server stopping): off the wait list. */
void
buffer_forget (struct conn *c)
{
  struct conn **pp = &c->srv->buffer_waiters;

  if (!c->buffer_waiting)
    return;
  while (*pp != c)
    pp = &(*pp)->buffer_next;
  *pp = c->buffer_next;
  c->buffer_waiting = false;
}
