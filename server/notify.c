/* SPDX-License-Identifier: BSD-3-Clause */
/* notify.c — tell a service manager (systemd) how nbdcached is doing.
 *
 * WHAT: READY=1 once every listener listens and every export is open
 * (main.c calls notify_ready where a daemon's parent would be told it may
 * exit), STOPPING=1 when a stop begins (server_stop), each with a STATUS=
 * line for `systemctl status`.
 * WHY: nbdcached.service is Type=notify, so systemd starts the units
 * ordered after it (and a client connecting right after `systemctl start`)
 * only once the server accepts connections.
 * HOW: libsystemd's sd_notify, which does nothing when NOTIFY_SOCKET is not
 * set (not started by a service manager).  The variable is left in the
 * environment: STOPPING=1 needs it later.
 * FAILURE: a notification that cannot be sent is logged at debug level and
 * otherwise ignored: the service manager's own timeout reports it.
 * THREADS: loop thread only.
 */
#include <config.h>

#include <stdio.h>
#include <string.h>

#include <systemd/sd-daemon.h>

#include "log.h"
#include "server.h"

static void
notify (const char *state)
{
  int r = sd_notify (0, state);

  if (r < 0)
    log_debug ("sd_notify: %s", strerror (-r));
}

void
notify_ready (const struct server *srv)
{
  char state[128];

  snprintf (state, sizeof state, "READY=1\nSTATUS=serving %zu export(s)",
            srv->nr_exports);
  notify (state);
}

void
notify_stopping (void)
{
  notify ("STOPPING=1\nSTATUS=draining connections");
}
