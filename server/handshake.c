/* SPDX-License-Identifier: BSD-3-Clause */
/* handshake.c — fixed newstyle negotiation: greeting, client flags, options.
 *
 * WHAT: sends the greeting, checks the client flags, and answers every
 * option: EXPORT_NAME, ABORT, LIST, STARTTLS, INFO, GO, STRUCTURED_REPLY,
 * LIST_META_CONTEXT, SET_META_CONTEXT (base:allocation and nbdcached's
 * own nbdcache:state, NCACHE_STATE_* flags), EXTENDED_HEADERS;
 * anything else gets NBD_REP_ERR_UNSUP.  Ends by entering transmission.
 * WHY: parsing runs on the loop thread from the connection's input buffer,
 * so a slow or hostile client never ties up a thread.
 * INVARIANTS: an option is handled only once its header and all its data
 * are buffered; option data is bounded (MAX_OPTION_BYTES) so it always fits
 * the input buffer; larger data is drained and refused with ERR_TOO_BIG, or
 * the connection is closed when it is absurd (> MAX_DISCARD_BYTES).
 * THREADS: loop thread only.
 * FAILURE: malformed options get NBD_REP_ERR_INVALID and negotiation goes
 * on; a bad magic, unknown client flags, too many options or an unusable
 * NBD_OPT_EXPORT_NAME close the connection (the spec's hard disconnect).
 * POLICY: with [server] tls = require nothing but STARTTLS and ABORT is
 * answered before TLS (NBD_REP_ERR_TLS_REQD); a TLS-only export is hidden
 * from LIST and refused with ERR_TLS_REQD before TLS; allow / allow_unix /
 * allow_subjects refusals are ERR_POLICY.  INFO, GO and both
 * META_CONTEXT options check access the same way.
 * LOG: every refusal of an export (unknown, full, TLS required, policy)
 * and every entry into transmission is one info line with the client,
 * the export and the TLS state; the close is conn.c's line.
 * NOT HERE: the TLS handshake itself (tls.c, driven by conn.c).
 */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>

#include "byteorder.h"
#include "log.h"
#include "server.h"

/* A heap-allocated message: header and payload in one buffer. */
struct heapmsg {
  struct outmsg out;
  unsigned char data[];
};

static void
heapmsg_release (struct conn *c, struct outmsg *m)
{
  free (m);
}

static unsigned char *
queue_heapmsg (struct conn *c, size_t len)
{
  struct heapmsg *h = malloc (sizeof *h + len);

  if (h == NULL) {
    log_error ("%s: out of memory in handshake", c->peer);
    conn_close (c);
    return NULL;
  }
  h->out.iov[0].iov_base = h->data;
  h->out.iov[0].iov_len = len;
  h->out.iovcnt = 1;
  h->out.release = heapmsg_release;
  conn_queue (c, &h->out);
  return h->data;
}

void
handshake_start (struct conn *c)
{
  unsigned char *p = queue_heapmsg (c, sizeof (struct nbd_new_handshake));

  if (p == NULL)
    return;
  put_be64 (p, NBD_MAGIC);
  put_be64 (p + 8, NBD_IHAVEOPT);
  put_be16 (p + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
  c->phase = PHASE_CLIENT_FLAGS;
}

void
handshake_reply (struct conn *c, uint32_t option, uint32_t reply,
                 const void *data, size_t len)
{
  unsigned char *p = queue_heapmsg (c, sizeof (struct nbd_option_reply) + len);

  if (p == NULL)
    return;
  nbd_encode_option_reply (p, option, reply, len);
  if (len)
    memcpy (p + sizeof (struct nbd_option_reply), data, len);
}

/* An error reply with a human-readable message as its payload. */
static void
reply_error (struct conn *c, uint32_t option, uint32_t reply, const char *msg)
{
  log_debug ("%s: %s: %s: %s", c->peer, nbd_opt_name (option),
             nbd_rep_name (reply), msg);
  handshake_reply (c, option, reply, msg, strlen (msg));
}

static void
reply_ack (struct conn *c, uint32_t option)
{
  handshake_reply (c, option, NBD_REP_ACK, NULL, 0);
}

static void
enter_transmission (struct conn *c, struct export *exp)
{
  char tls[CONN_TLS_STATE_BYTES];

  c->exp = exp;
  exp->nr_connections++;
  exp->nr_conn_refs++;
  c->eflags = export_eflags (exp, c->structured);
  c->phase = PHASE_TRANSMISSION;
  /* Contexts selected for another export (or before STARTTLS, which
   * forgets the selection's export) do not apply.
   */
  if (c->meta_export == NULL || strcmp (c->meta_export, exp->name) != 0)
    c->meta_base_allocation = c->meta_nbdcache_state = false;
  log_info ("%s: opened export '%s' (%s%s%s)", c->peer, exp->name,
            conn_tls_state (c, tls, sizeof tls),
            c->structured ? ", structured replies" : "",
            c->extended ? ", extended headers" : "");
}

/* The one line of every refusal: who, which export, why, TLS state. */
static void
log_refusal (const struct conn *c, const char *name, size_t len,
             const char *why)
{
  char tls[CONN_TLS_STATE_BYTES];

  log_info ("%s: export '%.*s' refused: %s (%s)", c->peer,
            (int) (len > 256 ? 256 : len), name, why,
            conn_tls_state (c, tls, sizeof tls));
}

static bool
export_full (const struct export *exp)
{
  return exp->max_connections != 0 &&
         exp->nr_connections >= exp->max_connections;
}

static bool
peer_allowed (const struct conn *c, const struct config_export *ce)
{
  return config_export_allows_peer (ce, c->is_unix ? NULL
                                    : (const struct sockaddr *) &c->peer_addr);
}

static bool
subject_allowed (const struct conn *c, const struct config_export *ce)
{
  size_t i, j;

  if (ce->nr_allow_subjects == 0)
    return true;
  for (i = 0; i < ce->nr_allow_subjects; i++) {
    if (c->tls_subject && strcmp (c->tls_subject, ce->allow_subjects[i]) == 0)
      return true;
    for (j = 0; j < c->nr_tls_sans; j++)
      if (strcmp (c->tls_sans[j], ce->allow_subjects[i]) == 0)
        return true;
  }
  return false;
}

/* 0 if this client may use exp, else the option error to answer with
 * (*why set).
 */
static uint32_t
export_access_check (const struct conn *c, const struct export *exp,
                     const char **why)
{
  const struct config_export *ce = exp->cfg;

  if (ce->tls_required && !c->tls_active) {
    *why = "this export requires TLS: use NBD_OPT_STARTTLS first";
    return NBD_REP_ERR_TLS_REQD;
  }
  if (!peer_allowed (c, ce))
    *why = c->is_unix ? "Unix-socket clients are not allowed on this export"
                      : "your address is not allowed on this export";
  else if (!subject_allowed (c, ce))
    *why = c->tls_subject
           ? "your client certificate is not allowed on this export"
           : "this export needs a verified client certificate";
  else
    return 0;
  return NBD_REP_ERR_POLICY;
}

/* The same, logging refusals: admins need to see them. */
static uint32_t
export_access (struct conn *c, const struct export *exp, const char **why)
{
  uint32_t r = export_access_check (c, exp, why);

  if (r != 0)
    log_refusal (c, exp->name, strlen (exp->name), *why);
  return r;
}

static void
opt_export_name (struct conn *c, const unsigned char *data, uint32_t len)
{
  struct export *exp = export_find (c->srv, (const char *) data, len);
  unsigned char *p;
  size_t sz = (c->cflags & NBD_FLAG_C_NO_ZEROES) ? 10 : 134;

  const char *why = "no such export";

  /* export_access logs its own refusals. */
  if (exp == NULL || export_full (exp) || export_access (c, exp, &why) != 0) {
    /* The spec leaves no way to refuse EXPORT_NAME but to hang up. */
    if (exp == NULL || export_full (exp))
      log_refusal (c, (const char *) data, len,
                   exp ? "too many connections" : why);
    c->phase = PHASE_CLOSING;
    c->close_after_output = true;
    return;
  }
  enter_transmission (c, exp);
  if ((p = queue_heapmsg (c, sz)) == NULL)
    return;
  memset (p, 0, sz);
  put_be64 (p, exp->caps.size_bytes);
  put_be16 (p + 8, c->eflags);
}

static void
opt_list (struct conn *c, uint32_t len)
{
  size_t i;

  if (len != 0) {
    reply_error (c, NBD_OPT_LIST, NBD_REP_ERR_INVALID,
                 "NBD_OPT_LIST takes no data");
    return;
  }
  for (i = 0; i < c->srv->nr_exports; i++) {
    const struct export *exp = c->srv->exports[i];
    size_t nlen = strlen (exp->name);
    size_t dlen;
    unsigned char *p;

    const char *why;

    /* LIST shows only what this client may open: TLS-only exports are
     * invisible before TLS, and so are exports its address, socket or
     * certificate may not use.
     */
    if (export_access_check (c, exp, &why) != 0)
      continue;
    dlen = exp->description ? strlen (exp->description) : 0;
    p = queue_heapmsg (c, sizeof (struct nbd_option_reply) + 4 + nlen + dlen);

    if (p == NULL)
      return;
    nbd_encode_option_reply (p, NBD_OPT_LIST, NBD_REP_SERVER, 4 + nlen + dlen);
    p += sizeof (struct nbd_option_reply);
    put_be32 (p, nlen);
    memcpy (p + 4, exp->name, nlen);
    if (dlen)
      memcpy (p + 4 + nlen, exp->description, dlen);
  }
  reply_ack (c, NBD_OPT_LIST);
}

static void
opt_info_go (struct conn *c, uint32_t option,
             const unsigned char *data, uint32_t len)
{
  uint32_t namelen;
  uint16_t nrinfos, i;
  bool want_name = false, want_description = false;
  struct export *exp;
  unsigned char buf[sizeof (struct nbd_info_block_size)];
  uint32_t refusal;
  const char *why;

  if (len < 6 || (namelen = get_be32 (data)) > len - 6) {
    reply_error (c, option, NBD_REP_ERR_INVALID, "option data too short");
    return;
  }
  nrinfos = get_be16 (data + 4 + namelen);
  if (len != 4 + namelen + 2 + 2 * (uint32_t) nrinfos) {
    reply_error (c, option, NBD_REP_ERR_INVALID,
                 "option length does not match the number of info requests");
    return;
  }
  if (namelen > NBD_MAX_STRING) {
    reply_error (c, option, NBD_REP_ERR_INVALID, "export name too long");
    return;
  }
  for (i = 0; i < nrinfos; i++) {
    uint16_t info = get_be16 (data + 4 + namelen + 2 + 2 * i);
    if (info == NBD_INFO_NAME)
      want_name = true;
    else if (info == NBD_INFO_DESCRIPTION)
      want_description = true;
  }
  exp = export_find (c->srv, (const char *) data + 4, namelen);
  if (exp == NULL) {
    log_refusal (c, (const char *) data + 4, namelen, "no such export");
    reply_error (c, option, NBD_REP_ERR_UNKNOWN, "no such export");
    return;
  }
  if ((refusal = export_access (c, exp, &why)) != 0) {
    reply_error (c, option, refusal, why);
    return;
  }
  if (option == NBD_OPT_GO && export_full (exp)) {
    log_refusal (c, exp->name, strlen (exp->name),
                 "too many connections to this export");
    reply_error (c, option, NBD_REP_ERR_POLICY,
                 "too many connections to this export");
    return;
  }

  put_be16 (buf, NBD_INFO_EXPORT);
  put_be64 (buf + 2, exp->caps.size_bytes);
  put_be16 (buf + 10, export_eflags (exp, c->structured));
  handshake_reply (c, option, NBD_REP_INFO, buf, 12);

  if (want_name) {
    size_t nlen = strlen (exp->name);
    unsigned char *p = queue_heapmsg (c, sizeof (struct nbd_option_reply)
                                         + 2 + nlen);
    if (p == NULL)
      return;
    nbd_encode_option_reply (p, option, NBD_REP_INFO, 2 + nlen);
    put_be16 (p + sizeof (struct nbd_option_reply), NBD_INFO_NAME);
    memcpy (p + sizeof (struct nbd_option_reply) + 2, exp->name, nlen);
  }
  if (want_description && exp->description) {
    size_t dlen = strlen (exp->description);
    unsigned char *p = queue_heapmsg (c, sizeof (struct nbd_option_reply)
                                         + 2 + dlen);
    if (p == NULL)
      return;
    nbd_encode_option_reply (p, option, NBD_REP_INFO, 2 + dlen);
    put_be16 (p + sizeof (struct nbd_option_reply), NBD_INFO_DESCRIPTION);
    memcpy (p + sizeof (struct nbd_option_reply) + 2, exp->description, dlen);
  }

  put_be16 (buf, NBD_INFO_BLOCK_SIZE);
  put_be32 (buf + 2, NBD_MIN_BLOCK_SIZE);
  put_be32 (buf + 6, NBD_PREFERRED_BLOCK_SIZE);
  put_be32 (buf + 10, NBD_MAX_PAYLOAD);
  handshake_reply (c, option, NBD_REP_INFO, buf, sizeof buf);

  reply_ack (c, option);
  if (option == NBD_OPT_GO)
    enter_transmission (c, exp);
}

static void
opt_structured_reply (struct conn *c, uint32_t len)
{
  if (len != 0)
    reply_error (c, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ERR_INVALID,
                 "NBD_OPT_STRUCTURED_REPLY takes no data");
  else if (c->extended)
    reply_error (c, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ERR_EXT_HEADER_REQD,
                 "extended headers are already negotiated");
  else if (c->structured)
    reply_error (c, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ERR_INVALID,
                 "structured replies are already negotiated");
  else {
    c->structured = true;
    reply_ack (c, NBD_OPT_STRUCTURED_REPLY);
  }
}

static void
opt_extended_headers (struct conn *c, uint32_t len)
{
  if (len != 0)
    reply_error (c, NBD_OPT_EXTENDED_HEADERS, NBD_REP_ERR_INVALID,
                 "NBD_OPT_EXTENDED_HEADERS takes no data");
  else if (c->extended)
    reply_error (c, NBD_OPT_EXTENDED_HEADERS, NBD_REP_ERR_INVALID,
                 "extended headers are already negotiated");
  else {
    c->extended = true;
    c->structured = true;       /* implied by extended headers */
    reply_ack (c, NBD_OPT_EXTENDED_HEADERS);
  }
}

static void
reply_meta_context (struct conn *c, uint32_t option, uint32_t id,
                    const char *name)
{
  size_t nlen = strlen (name);
  unsigned char *p = queue_heapmsg (c, sizeof (struct nbd_option_reply)
                                       + 4 + nlen);
  if (p == NULL)
    return;
  nbd_encode_option_reply (p, option, NBD_REP_META_CONTEXT, 4 + nlen);
  put_be32 (p + sizeof (struct nbd_option_reply), id);
  memcpy (p + sizeof (struct nbd_option_reply) + 4, name, nlen);
}

/* The meta contexts nbdcached serves, by the bit that names them in a
 * query's result.
 */
#define CTX_BASE_ALLOCATION (1u << 0)
#define CTX_NBDCACHE_STATE  (1u << 1)

/* Which contexts a query names.  A bare namespace ("base:", "nbdcache:")
 * names every context in it, for LIST only: the specification leaves the
 * meaning of a wildcard SET to the namespace, and selecting by wildcard
 * would make a client's contexts change when the server grows new ones.
 */
static unsigned
query_contexts (const char *query, uint32_t qlen, bool is_set)
{
  if (qlen == 15 && memcmp (query, "base:allocation", 15) == 0)
    return CTX_BASE_ALLOCATION;
  if (qlen == 14 && memcmp (query, "nbdcache:state", 14) == 0)
    return CTX_NBDCACHE_STATE;
  if (is_set)
    return 0;
  if (qlen == 5 && memcmp (query, "base:", 5) == 0)
    return CTX_BASE_ALLOCATION;
  if (qlen == 9 && memcmp (query, "nbdcache:", 9) == 0)
    return CTX_NBDCACHE_STATE;
  return 0;                     /* unknown contexts are simply not returned */
}

/* Answer each context in `ctx` not yet in *done, once. */
static void
reply_contexts (struct conn *c, uint32_t option, unsigned ctx, unsigned *done)
{
  bool is_set = option == NBD_OPT_SET_META_CONTEXT;

  ctx &= ~*done;
  if (ctx & CTX_BASE_ALLOCATION)
    reply_meta_context (c, option,
                        is_set ? META_CONTEXT_BASE_ALLOCATION_ID : 0,
                        "base:allocation");
  if (ctx & CTX_NBDCACHE_STATE)
    reply_meta_context (c, option,
                        is_set ? META_CONTEXT_NBDCACHE_STATE_ID : 0,
                        "nbdcache:state");
  *done |= ctx;
}

static void
opt_meta_context (struct conn *c, uint32_t option,
                  const unsigned char *data, uint32_t len)
{
  bool is_set = option == NBD_OPT_SET_META_CONTEXT;
  uint32_t namelen, nr_queries, pos, q;
  unsigned done = 0;
  struct export *exp;
  uint32_t refusal;
  const char *why;

  if (!c->structured) {
    reply_error (c, option, NBD_REP_ERR_INVALID,
                 "structured replies must be negotiated first");
    return;
  }
  if (len < 8 || (namelen = get_be32 (data)) > len - 8) {
    reply_error (c, option, NBD_REP_ERR_INVALID, "option data too short");
    return;
  }
  exp = export_find (c->srv, (const char *) data + 4, namelen);
  pos = 4 + namelen;
  nr_queries = get_be32 (data + pos);
  pos += 4;
  /* Validate every query's framing before answering any of them. */
  for (q = 0; q < nr_queries; q++) {
    uint32_t qlen;
    if (len - pos < 4 || (qlen = get_be32 (data + pos)) > len - pos - 4) {
      reply_error (c, option, NBD_REP_ERR_INVALID, "truncated query");
      return;
    }
    pos += 4 + qlen;
  }
  if (pos != len) {
    reply_error (c, option, NBD_REP_ERR_INVALID, "trailing option data");
    return;
  }
  if (exp == NULL) {
    reply_error (c, option, NBD_REP_ERR_UNKNOWN, "no such export");
    return;
  }
  /* The contexts of an export are for those who may open it: the same
   * refusal as INFO / GO (TLS first, then allow / allow_unix /
   * allow_subjects), so a refused client learns nothing more here.
   */
  if ((refusal = export_access (c, exp, &why)) != 0) {
    reply_error (c, option, refusal, why);
    return;
  }

  /* LIST without queries: everything we serve.  SET without queries
   * selects nothing.
   */
  if (nr_queries == 0 && !is_set)
    reply_contexts (c, option, CTX_BASE_ALLOCATION | CTX_NBDCACHE_STATE,
                    &done);
  for (q = 0, pos = 8 + namelen; q < nr_queries; q++) {
    uint32_t qlen = get_be32 (data + pos);
    const char *query = (const char *) data + pos + 4;

    pos += 4 + qlen;
    reply_contexts (c, option, query_contexts (query, qlen, is_set), &done);
  }
  if (is_set) {
    c->meta_base_allocation = (done & CTX_BASE_ALLOCATION) != 0;
    c->meta_nbdcache_state = (done & CTX_NBDCACHE_STATE) != 0;
    free (c->meta_export);
    c->meta_export = strdup (exp->name);
    if (c->meta_export == NULL) {
      /* Without the name the selection cannot be checked at GO. */
      c->meta_base_allocation = c->meta_nbdcache_state = false;
      reply_error (c, option, NBD_REP_ERR_INVALID, "out of memory");
      return;
    }
  }
  reply_ack (c, option);
}

/* Handle one complete option. */
static void
handle_option (struct conn *c, uint32_t option, const unsigned char *data,
               uint32_t len)
{
  log_debug ("%s: option %s (%u bytes)", c->peer, nbd_opt_name (option), len);

  if (!(c->cflags & NBD_FLAG_C_FIXED_NEWSTYLE) &&
      option != NBD_OPT_EXPORT_NAME) {
    /* Plain newstyle knows no option replies. */
    c->phase = PHASE_CLOSING;
    c->close_after_output = true;
    return;
  }
  if (c->srv->stopping && option != NBD_OPT_ABORT) {
    reply_error (c, option, NBD_REP_ERR_SHUTDOWN, "server is shutting down");
    return;
  }
  if (c->srv->cfg->server.tls == CONFIG_TLS_REQUIRE && !c->tls_active &&
      option != NBD_OPT_STARTTLS && option != NBD_OPT_ABORT) {
    if (option == NBD_OPT_EXPORT_NAME) {
      log_refusal (c, (const char *) data, len,
                   "TLS is required (NBD_OPT_EXPORT_NAME without TLS), "
                   "closing");
      c->phase = PHASE_CLOSING;
      c->close_after_output = true;
      return;
    }
    /* An export asked for is a refusal to log; other options are not. */
    if ((option == NBD_OPT_GO || option == NBD_OPT_INFO) && len >= 4 &&
        get_be32 (data) <= len - 4)
      log_refusal (c, (const char *) data + 4, get_be32 (data),
                   "TLS is required");
    reply_error (c, option, NBD_REP_ERR_TLS_REQD,
                 "TLS is required: use NBD_OPT_STARTTLS first");
    return;
  }

  switch (option) {
  case NBD_OPT_EXPORT_NAME:
    opt_export_name (c, data, len);
    break;
  case NBD_OPT_ABORT:
    reply_ack (c, option);
    c->phase = PHASE_CLOSING;
    c->close_after_output = true;
    break;
  case NBD_OPT_LIST:
    opt_list (c, len);
    break;
  case NBD_OPT_STARTTLS:
    if (len != 0)
      reply_error (c, option, NBD_REP_ERR_INVALID,
                   "NBD_OPT_STARTTLS takes no data");
    else if (c->srv->tls == NULL)
      reply_error (c, option, NBD_REP_ERR_POLICY,
                   "TLS is not configured on this server");
    else if (c->tls_active)
      reply_error (c, option, NBD_REP_ERR_INVALID, "TLS is already active");
    else {
      reply_ack (c, option);
      c->tls_start_pending = true;     /* conn.c starts it once sent */
    }
    break;
  case NBD_OPT_INFO:
  case NBD_OPT_GO:
    opt_info_go (c, option, data, len);
    break;
  case NBD_OPT_STRUCTURED_REPLY:
    opt_structured_reply (c, len);
    break;
  case NBD_OPT_LIST_META_CONTEXT:
  case NBD_OPT_SET_META_CONTEXT:
    opt_meta_context (c, option, data, len);
    break;
  case NBD_OPT_EXTENDED_HEADERS:
    opt_extended_headers (c, len);
    break;
  default:
    reply_error (c, option, NBD_REP_ERR_UNSUP, "unknown option");
    break;
  }
}

bool
handshake_parse (struct conn *c)
{
  size_t avail = c->rend - c->rstart;
  const unsigned char *p = c->rbuf + c->rstart;
  uint32_t option, len;

  if (c->discard_left > 0) {
    size_t take = avail < c->discard_left ? avail : c->discard_left;

    c->rstart += take;
    c->discard_left -= take;
    if (c->discard_left > 0)
      return false;
    reply_error (c, c->discard_option, NBD_REP_ERR_TOO_BIG,
                 "option data too large");
    return true;
  }

  if (c->phase == PHASE_CLIENT_FLAGS) {
    if (avail < 4)
      return false;
    c->cflags = get_be32 (p);
    c->rstart += 4;
    if (c->cflags & ~(uint32_t) (NBD_FLAG_C_FIXED_NEWSTYLE |
                                 NBD_FLAG_C_NO_ZEROES)) {
      log_info ("%s: unknown client flags 0x%x, closing", c->peer, c->cflags);
      conn_close (c);
      return false;
    }
    c->phase = PHASE_OPTIONS;
    return true;
  }

  /* PHASE_OPTIONS */
  if (avail < sizeof (struct nbd_option_header))
    return false;
  if (get_be64 (p) != NBD_IHAVEOPT) {
    log_info ("%s: bad option magic, closing", c->peer);
    conn_close (c);
    return false;
  }
  option = get_be32 (p + 8);
  len = get_be32 (p + 12);
  if (++c->nr_options > MAX_OPTIONS) {
    log_info ("%s: more than %d options, closing", c->peer, MAX_OPTIONS);
    conn_close (c);
    return false;
  }
  if (len > MAX_OPTION_BYTES) {
    if (len > MAX_DISCARD_BYTES || option == NBD_OPT_EXPORT_NAME) {
      log_info ("%s: %s with %u bytes of data, closing", c->peer,
                nbd_opt_name (option), len);
      conn_close (c);
      return false;
    }
    c->rstart += sizeof (struct nbd_option_header);
    c->discard_left = len;
    c->discard_option = option;
    return true;
  }
  if (avail < sizeof (struct nbd_option_header) + len)
    return false;
  c->rstart += sizeof (struct nbd_option_header) + len;
  handle_option (c, option, p + sizeof (struct nbd_option_header), len);
  return !c->destroyed && c->phase != PHASE_CLOSING && !c->tls_start_pending;
}
