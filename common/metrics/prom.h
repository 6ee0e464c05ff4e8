/* SPDX-License-Identifier: BSD-3-Clause */
/* prom.h — the stats document in the Prometheus text exposition format.
 *
 * Owns: nothing; one pure function from the control socket's stats JSON
 * (server/control.c describes it) to text.
 * Threads: any; no state.
 * Used by: `nbdcache stats --prometheus` (admin/) and nbdcached's
 * metrics_listen responder (server/metrics.c), so the two print the same
 * text for the same counters.
 * Not here: collecting the counters, sockets, HTTP.
 */
#ifndef NBDCACHE_PROM_H
#define NBDCACHE_PROM_H

#include <stddef.h>

#include <json.h>

/* The Content-Type of the text (version 0.0.4 of the format). */
#define PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Format doc as Prometheus text: one family per counter, each with
 * "# HELP" and "# TYPE", samples labelled export="NAME",cache="NAME" (per
 * export) or cache="NAME" (per cache device).  A field the document lacks
 * is left out, never printed as 0; an integer field this code does not
 * know is printed as an untyped family.
 * 0 and *out (malloc'd, NUL-terminated) and *len set; -EPROTO when doc
 * is not a stats document; -ENOMEM.
 */
int prom_format (struct json_object *doc, char **out, size_t *len);

#endif /* NBDCACHE_PROM_H */
