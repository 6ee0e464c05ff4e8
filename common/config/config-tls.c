/* SPDX-License-Identifier: BSD-3-Clause */
/* config-tls.c — the TLS and access-control keys of the config file.
 *
 * WHAT: checks and stores the values of the [server] tls* keys and of the
 * [export] tls, allow, allow_unix and allow_subjects keys: the tls words,
 * allow lists of CIDRs (10.0.0.0/8, ::1) and of certificate subjects
 * (RFC 2253 names separated by ';').  Once the whole file is read it
 * expands tls_certificates = DIR into tls_cert_file, tls_key_file and
 * tls_ca_file (so the server reads only those three), checks that every
 * TLS file exists and is readable, and that the [server] and [export] TLS
 * settings fit together.  config.c reads the file and calls in here; the
 * state of one load is struct parser (config-internal.h).
 *
 * WHY: TLS settings fail late and obscurely (at the first handshake, or as
 * a client refused for no visible reason); here they fail at load time with
 * the line to fix.  Kept apart from the file reader because it is a
 * different subject: network policy, not INI syntax.
 *
 * INVARIANTS:
 * - With [server] tls = off the other tls_* keys of [server] are checked
 *   for syntax only: files are not looked at and the keys need not fit
 *   together, so an admin can switch TLS off without deleting them.
 * - An allow entry with bits set past its prefix length is an error, not
 *   silently masked; every bad entry of a line is reported.
 * - A file that a bad tls_certificates directory would supply is not
 *   reported again: the directory error is the one message.
 * - allow_subjects entries are stored as written (trimmed, escapes kept),
 *   to be compared with OpenSSL's RFC 2253 form.
 *
 * THREADS AND LOCKS: none; called only from config_load (see config.c).
 *
 * FAILURE: as config.c: each problem is logged as "FILE:LINE: message"
 * through config_error and counted; -EINVAL or -ENOMEM is returned for a
 * value, and the checks return nothing (the count decides).
 *
 * NOT HERE: reading certificates, keys and PSK files and checking cipher
 * lists (tls.c, at startup; here files must only exist and be readable),
 * matching clients against allow lists (handshake.c), the INI reader and
 * the other keys (config.c).
 */
#include <config.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "compiler.h"
#include "config-file.h"
#include "config-internal.h"
#include "parse.h"

static const char *const tls_names[] = {
  [CONFIG_TLS_OFF] = "off",
  [CONFIG_TLS_ON] = "on",
  [CONFIG_TLS_REQUIRE] = "require",
};

/* The files of a tls_certificates directory (nbdkit and qemu layout). */
#define TLS_DIR_CERT "server-cert.pem"
#define TLS_DIR_KEY "server-key.pem"
#define TLS_DIR_CA "ca-cert.pem"

/* ---- values: 0, or -EINVAL after logging, or -ENOMEM ---- */

/* The index of value in names (case-insensitive), or -1. */
static int
find_word (const char *value, const char *const *names, size_t nr_names)
{
  size_t i;

  for (i = 0; i < nr_names; i++)
    if (names[i] != NULL && strcasecmp (value, names[i]) == 0)
      return (int) i;
  return -1;
}

static int
bad_choice (struct parser *p, const char *key, const char *value,
            const char *expected)
{
  config_error (p, p->lineno, "invalid %s '%s': expected %s",
                key, value, expected);
  return -EINVAL;
}

int
config_set_tls (struct parser *p, enum config_tls *field, const char *key,
                const char *value)
{
  int i = find_word (value, tls_names, ARRAY_SIZE (tls_names));

  if (i < 0)
    return bad_choice (p, key, value, "off, on or require");
  *field = (enum config_tls) i;
  return 0;
}

int
config_set_tls_version (struct parser *p, unsigned *field, const char *key,
                        const char *value)
{
  if (strcmp (value, "1.2") == 0)
    *field = 12;
  else if (strcmp (value, "1.3") == 0)
    *field = 13;
  else
    return bad_choice (p, key, value, "1.2 or 1.3");
  return 0;
}

int
config_set_export_tls (struct parser *p, bool *field, const char *key,
                       const char *value)
{
  if (strcasecmp (value, "optional") == 0)
    *field = false;
  else if (strcasecmp (value, "require") == 0)
    *field = true;
  else
    return bad_choice (p, key, value, "optional or require");
  return 0;
}

/* ---- allow lists ---- */

/* One allow entry: ADDRESS or ADDRESS/PREFIX_LEN, IPv4 or IPv6.  A bare
 * address is a single host (/32, /128).  Bits past the prefix must be 0,
 * so that "10.0.0.1/8" (probably a typo) is not silently 10.0.0.0/8.
 */
static int
parse_cidr (struct parser *p, const char *key, const char *entry,
            struct config_cidr *out)
{
  char addr[INET6_ADDRSTRLEN + 1], net[INET6_ADDRSTRLEN + 1];
  const char *slash = strchr (entry, '/');
  size_t addr_len = slash ? (size_t) (slash - entry) : strlen (entry);
  unsigned max_bits, i;
  bool host_bits = false;
  uint64_t bits;

  memset (out, 0, sizeof *out);
  if (addr_len == 0 || addr_len >= sizeof addr)
    goto bad_address;
  memcpy (addr, entry, addr_len);
  addr[addr_len] = '\0';
  if (inet_pton (AF_INET, addr, out->addr) == 1) {
    out->family = AF_INET;
    max_bits = 32;
  }
  else if (inet_pton (AF_INET6, addr, out->addr) == 1) {
    out->family = AF_INET6;
    max_bits = 128;
  }
  else
    goto bad_address;

  if (slash == NULL)
    bits = max_bits;
  else if (parse_uint64_range (slash + 1, 0, max_bits, &bits) < 0) {
    config_error (p, p->lineno,
                  "%s: '%s': the prefix length must be a number from 0 to %u",
                  key, entry, max_bits);
    return -EINVAL;
  }
  out->prefix_len = (unsigned) bits;

  for (i = out->prefix_len; i < max_bits; i++) {
    unsigned char bit = (unsigned char) (0x80u >> (i % 8));

    if (out->addr[i / 8] & bit) {
      host_bits = true;
      out->addr[i / 8] &= (unsigned char) ~bit;
    }
  }
  if (host_bits) {
    if (inet_ntop (out->family, out->addr, net, sizeof net) == NULL)
      strcpy (net, "?");
    config_error (p, p->lineno,
                  "%s: '%s' has bits set after the first %u: "
                  "did you mean %s/%u?",
                  key, entry, out->prefix_len, net, out->prefix_len);
    return -EINVAL;
  }
  return 0;

 bad_address:
  config_error (p, p->lineno,
                "%s: '%s' is not an IPv4 or IPv6 address, with an optional "
                "/PREFIX_LEN", key, entry);
  return -EINVAL;
}

/* allow = CIDR, CIDR CIDR...: entries separated by commas and/or spaces,
 * appended to e->allow.  Every bad entry is reported.
 */
int
config_append_cidrs (struct parser *p, struct config_export *e,
                     const char *key, const char *value)
{
  AUTOFREE char *copy = NULL;
  char *piece, *next, *entry, *save;
  bool empty_entry = false;
  int r = 0;

  if (*value == '\0') {
    config_error (p, p->lineno, "%s: empty value", key);
    return -EINVAL;
  }
  if ((copy = strdup (value)) == NULL)
    return config_no_memory (p);

  for (piece = copy; piece != NULL; piece = next) {
    next = strchr (piece, ',');
    if (next != NULL)
      *next++ = '\0';
    if (*skip_space (piece) == '\0') {
      empty_entry = true;
      continue;
    }
    for (entry = strtok_r (piece, " \t", &save); entry != NULL;
         entry = strtok_r (NULL, " \t", &save)) {
      struct config_cidr cidr, *list;

      if (parse_cidr (p, key, entry, &cidr) < 0) {
        r = -EINVAL;
        continue;
      }
      list = realloc (e->allow, (e->nr_allow + 1) * sizeof *list);
      if (list == NULL)
        return config_no_memory (p);
      e->allow = list;
      e->allow[e->nr_allow++] = cidr;
    }
  }
  if (empty_entry) {
    config_error (p, p->lineno, "%s: empty entry in '%s'", key, value);
    r = -EINVAL;
  }
  return r;
}

/* True if the reader cut the value of line (a "key = value" line as read) at
 * a ';' comment: a ';' after whitespace, before any '#' comment.
 */
static bool
value_cut_at_semicolon (const char *line)
{
  const char *s = strchr (line, '=');
  bool was_space = false;

  if (s == NULL)
    return false;
  for (s++; *s; s++) {
    if (was_space && is_comment_char (*s))
      return *s == ';';
    was_space = isspace ((unsigned char) *s);
  }
  return false;
}

/* The next ';' of s that is not escaped by a backslash (RFC 2253 writes a
 * ';' inside a value as "\;"), or NULL.
 */
static char *
find_subject_end (char *s)
{
  for (; *s; s++) {
    if (*s == '\\' && s[1] != '\0')
      s++;
    else if (*s == ';')
      return s;
  }
  return NULL;
}

/* allow_subjects = S; S...: entries separated by ';' (a DN holds commas),
 * trimmed and otherwise kept as written (escapes included, as OpenSSL
 * prints RFC 2253 names), appended to e->allow_subjects.
 */
int
config_append_subjects (struct parser *p, struct config_export *e,
                        const char *key, const char *value)
{
  AUTOFREE char *copy = NULL;
  char *entry, *next, *dup, **list;
  bool empty_entry = false;
  int r = 0;

  if (p->line_text != NULL && value_cut_at_semicolon (p->line_text)) {
    config_error (p, p->lineno,
                  "%s: ' ;' starts a comment, which would drop the rest of "
                  "the line: separate subjects with ';' and no space before "
                  "it (A;B), or repeat the key", key);
    return -EINVAL;
  }
  if (*value == '\0') {
    config_error (p, p->lineno, "%s: empty value", key);
    return -EINVAL;
  }
  if ((copy = strdup (value)) == NULL)
    return config_no_memory (p);

  for (entry = copy; entry != NULL; entry = next) {
    next = find_subject_end (entry);
    if (next != NULL)
      *next++ = '\0';
    entry = skip_space (entry);
    trim_right (entry);
    if (*entry == '\0') {
      empty_entry = true;
      continue;
    }
    if (strlen (entry) > CONFIG_MAX_NAME_BYTES) {
      config_error (p, p->lineno, "%s: an entry is longer than %d bytes",
                    key, CONFIG_MAX_NAME_BYTES);
      r = -EINVAL;
      continue;
    }
    if ((dup = strdup (entry)) == NULL)
      return config_no_memory (p);
    list = realloc (e->allow_subjects,
                    (e->nr_allow_subjects + 1) * sizeof *list);
    if (list == NULL) {
      free (dup);
      return config_no_memory (p);
    }
    e->allow_subjects = list;
    e->allow_subjects[e->nr_allow_subjects++] = dup;
  }
  if (empty_entry) {
    config_error (p, p->lineno, "%s: empty entry in '%s'", key, value);
    r = -EINVAL;
  }
  return r;
}

/* ---- checks that need the whole file ---- */

/* A TLS file or directory that must be readable; errors at line as
 * "KEY 'PATH': why", or with dir_key "DIR_KEY 'DIR': NAME: why" for a file
 * found in a tls_certificates directory.  True if usable.
 */
static bool
check_tls_path (struct parser *p, int line, const char *key,
                const char *path, bool want_dir, const char *dir_key,
                const char *dir)
{
  const char *why = NULL;
  struct stat st;
  int mode = want_dir ? R_OK | X_OK : R_OK;

  if (stat (path, &st) != 0)
    why = strerror (errno);
  else if (want_dir && !S_ISDIR (st.st_mode))
    why = strerror (ENOTDIR);
  else if (!want_dir && S_ISDIR (st.st_mode))
    why = strerror (EISDIR);
  else if (access (path, mode) != 0)
    why = strerror (errno);
  if (why == NULL)
    return true;
  if (dir_key != NULL)
    config_error (p, line, "%s '%s': %s: %s",
                  dir_key, dir, path + strlen (dir) + 1, why);
  else
    config_error (p, line, "%s '%s': %s", key, path, why);
  return false;
}

/* Fill *field with DIR/name unless its own key was given.  With only_if_
 * exists, leave it NULL if there is no such file.
 */
static void
fill_from_tls_dir (struct parser *p, char **field, int own_line,
                   const char *name, bool only_if_exists)
{
  const char *dir = p->cfg->server.tls_certificates;
  char *path;

  if (dir == NULL || *field != NULL || own_line != 0)
    return;
  if ((path = concat3 (dir, "/", name)) == NULL) {
    config_no_memory (p);
    return;
  }
  if (only_if_exists && access (path, F_OK) != 0) {
    free (path);
    return;
  }
  *field = path;
}

/* [server]: fill the files from tls_certificates, then check them. */
static void
check_server_tls (struct parser *p)
{
  struct config_server *s = &p->cfg->server;
  const int *line = p->server_keys.line;
  const int dir_line = line[KEY_server_tls_certificates];
  const int cert_line = line[KEY_server_tls_cert_file];
  const int key_line = line[KEY_server_tls_key_file];
  const int ca_line = line[KEY_server_tls_ca_file];
  const int psk_line = line[KEY_server_tls_psk_file];
  const char *dir = s->tls_certificates;
  bool dir_ok = true, have_cert, have_ca, pair_error = false;

  fill_from_tls_dir (p, &s->tls_cert_file, cert_line, TLS_DIR_CERT, false);
  fill_from_tls_dir (p, &s->tls_key_file, key_line, TLS_DIR_KEY, false);
  fill_from_tls_dir (p, &s->tls_ca_file, ca_line, TLS_DIR_CA, true);
  if (s->tls == CONFIG_TLS_OFF || p->oom)
    return;

  /* Every file must be there.  A path that failed to parse is NULL. */
  if (dir != NULL)
    dir_ok = check_tls_path (p, dir_line, "tls_certificates", dir, true,
                             NULL, NULL);
  else
    dir_ok = dir_line == 0;     /* a bad value was reported already */
  if (s->tls_cert_file != NULL && (cert_line != 0 || dir_ok))
    check_tls_path (p, cert_line ? cert_line : dir_line, "tls_cert_file",
                    s->tls_cert_file, false,
                    cert_line ? NULL : "tls_certificates", dir);
  if (s->tls_key_file != NULL && (key_line != 0 || dir_ok))
    check_tls_path (p, key_line ? key_line : dir_line, "tls_key_file",
                    s->tls_key_file, false,
                    key_line ? NULL : "tls_certificates", dir);
  if (s->tls_ca_file != NULL && (ca_line != 0 || dir_ok))
    check_tls_path (p, ca_line ? ca_line : dir_line, "tls_ca_file",
                    s->tls_ca_file, false,
                    ca_line ? NULL : "tls_certificates", dir);
  if (s->tls_psk_file != NULL)
    check_tls_path (p, psk_line, "tls_psk_file", s->tls_psk_file, false,
                    NULL, NULL);

  /* Without a directory, a certificate and its key come together. */
  if (dir_line == 0 && cert_line != 0 && key_line == 0) {
    config_error (p, cert_line, "tls_cert_file without tls_key_file: "
                  "set both, or use tls_certificates");
    pair_error = true;
  }
  if (dir_line == 0 && key_line != 0 && cert_line == 0) {
    config_error (p, key_line, "tls_key_file without tls_cert_file: "
                  "set both, or use tls_certificates");
    pair_error = true;
  }
  have_cert = dir_line != 0 || (cert_line != 0 && key_line != 0);
  if (!have_cert && psk_line == 0 && !pair_error)
    config_error (p, line[KEY_server_tls],
                  "tls = %s needs a certificate and key (tls_certificates, "
                  "or tls_cert_file and tls_key_file) or a PSK file "
                  "(tls_psk_file)", tls_names[s->tls]);

  /* A bad directory was reported above; do not report its CA as well. */
  have_ca = ca_line != 0 || s->tls_ca_file != NULL
    || (dir_line != 0 && !dir_ok);
  if (s->tls_verify_peer && !have_cert && psk_line != 0 && !pair_error)
    config_error (p, line[KEY_server_tls_verify_peer],
                  "tls_verify_peer = yes needs an X.509 certificate and key "
                  "(tls_certificates, or tls_cert_file and tls_key_file): "
                  "PSK clients have no certificate to verify");
  else if (s->tls_verify_peer && have_cert && !have_ca)
    config_error (p, line[KEY_server_tls_verify_peer],
                  "tls_verify_peer = yes needs a CA certificate to verify "
                  "clients against: set tls_ca_file, or put " TLS_DIR_CA
                  " in the tls_certificates directory");
}

/* [export]: settings that [server] must make usable. */
static void
check_export_tls (struct parser *p)
{
  struct config *cfg = p->cfg;
  size_t i;

  for (i = 0; i < cfg->nr_exports; i++) {
    const struct config_export *e = &cfg->exports[i];
    const int *line = p->export_keys[i].line;

    if (e->tls_required && cfg->server.tls == CONFIG_TLS_OFF)
      config_error (p, line[KEY_export_tls],
                    "tls = require, but [server] has tls = off: no client "
                    "could use this export (set tls = on or require in "
                    "[server])");
    if (e->nr_allow_subjects == 0)
      continue;
    if (cfg->server.tls == CONFIG_TLS_OFF)
      config_error (p, line[KEY_export_allow_subjects],
                    "allow_subjects needs verified client certificates, "
                    "but [server] has tls = off");
    else if (!cfg->server.tls_verify_peer)
      config_error (p, line[KEY_export_allow_subjects],
                    "allow_subjects needs verified client certificates: "
                    "set tls_verify_peer = yes in [server]");
  }
}

void
config_check_tls (struct parser *p)
{
  check_server_tls (p);
  check_export_tls (p);
}

/* ---- enforcement shared by nbdcached and the plugin ---- */

static bool
cidr_match (const struct config_cidr *n, const unsigned char *addr, int family)
{
  unsigned bits = n->prefix_len, i;

  if (n->family != family)
    return false;
  for (i = 0; bits >= 8; i++, bits -= 8)
    if (addr[i] != n->addr[i])
      return false;
  return bits == 0 ||
         ((addr[i] ^ n->addr[i]) & (0xff << (8 - bits)) & 0xff) == 0;
}

bool
config_export_allows_peer (const struct config_export *ce,
                           const struct sockaddr *peer)
{
  const unsigned char *addr;
  int family;
  size_t i;

  if (peer == NULL || peer->sa_family == AF_UNIX)
    return ce->allow_unix;
  if (ce->nr_allow == 0)
    return true;
  if (peer->sa_family == AF_INET) {
    family = AF_INET;
    addr = (const unsigned char *) &((const struct sockaddr_in *) peer)->sin_addr;
  }
  else if (peer->sa_family == AF_INET6) {
    const struct in6_addr *a6 = &((const struct sockaddr_in6 *) peer)->sin6_addr;
    family = AF_INET6;
    addr = a6->s6_addr;
    if (IN6_IS_ADDR_V4MAPPED (a6)) {    /* ::ffff:a.b.c.d is an IPv4 peer */
      family = AF_INET;
      addr += 12;
    }
  }
  else
    return false;
  for (i = 0; i < ce->nr_allow; i++)
    if (cidr_match (&ce->allow[i], addr, family))
      return true;
  return false;
}
