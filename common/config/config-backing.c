/* SPDX-License-Identifier: BSD-3-Clause */
/* config-backing.c — the backing-store keys of an [export] section.
 *
 * WHAT: checks and stores backing = (a path, file:///PATH, or a remote
 * NBD URI: nbd://, nbds://, nbd+unix://, nbds+unix://, nbd+vsock://,
 * nbds+vsock://, or a Ceph RBD image rbd:POOL/IMAGE) and backing_timeout;
 * once the whole file is read, checks that a local backing exists (or
 * size = creates it), that the remote keys (backing_connections,
 * backing_timeout, backing_tls_*) are used only with a remote backing
 * (of them only backing_timeout with rbd:), TLS ones only with a TLS URI,
 * and the ceph_* keys only with rbd:.  Turns an export's keys into the
 * backing driver's options.
 * WHY: a remote backing fails late (at the first connection, in the log of
 * a daemon); the mistakes that can be seen in the file fail at load time
 * with the line to fix.
 *
 * INVARIANTS: a local backing is stored as an absolute path; a remote URI
 * (at most CONFIG_MAX_NAME_BYTES) is stored exactly as written (libnbd parses it; its query may name
 * files, resolved by libnbd against nbdcached's working directory, which
 * is why the man page asks for the backing_tls_* keys instead).
 *
 * THREADS AND LOCKS: none; called only from config_load (see config.c).
 *
 * FAILURE: as config.c: each problem is logged as "FILE:LINE: message"
 * through config_error and counted.
 *
 * NOT HERE: connecting to the remote (common/backing/nbd.c, at startup),
 * the other keys (config.c, config-tls.c).
 */
#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backing.h"
#include "cleanup.h"
#include "config-file.h"
#include "config-internal.h"
#include "parse.h"

/* Decode the %XX escapes of a file:// URI path in place. */
static int
uri_unescape (char *s)
{
  char *out = s;

  for (; *s; s++) {
    if (*s == '%') {
      unsigned v;

      if (!isxdigit ((unsigned char) s[1]) || !isxdigit ((unsigned char) s[2])
          || sscanf (s + 1, "%2x", &v) != 1 || v == 0)
        return -EINVAL;
      *out++ = (char) v;
      s += 2;
    }
    else
      *out++ = *s;
  }
  *out = '\0';
  return 0;
}

int
config_set_backing (struct parser *p, char **field, const char *key,
                    const char *value)
{
  const char *s = value;
  AUTOFREE char *path = NULL;

  if (backing_is_remote_uri (value))
    return config_set_string (p, field, key, value);
  /* The in-memory driver is for tests, given as a parameter only; in a
   * file "memory:x" stays the relative path it always was.
   */
  if (p->params && strncmp (value, "memory:", 7) == 0)
    return config_set_string (p, field, key, value);
  if (backing_is_rbd_uri (value)) {
    if (!backing_rbd_uri_valid (value)) {
      config_error (p, p->lineno, "%s '%s': expected rbd:POOL/IMAGE", key,
                    value);
      return -EINVAL;
    }
    return config_set_string (p, field, key, value);
  }
  if (isalpha ((unsigned char) *s)) {
    while (isalnum ((unsigned char) *s) || *s == '+' || *s == '-'
           || *s == '.')
      s++;
    if (strncmp (s, "://", 3) == 0) {
      if ((size_t) (s - value) != 4 || strncasecmp (value, "file", 4) != 0) {
        config_error (p, p->lineno,
                      "%s '%s': unsupported URI scheme '%.*s' (use a path, "
                      "a file:/// URI, nbd://, nbds://, nbd+unix://, "
                      "nbds+unix://, or rbd:POOL/IMAGE)",
                      key, value, (int) (s - value), value);
        return -EINVAL;
      }
      if (s[3] != '/') {
        config_error (p, p->lineno,
                      "%s '%s': a file URI must be file:///ABSOLUTE/PATH",
                      key, value);
        return -EINVAL;
      }
      if ((path = strdup (s + 3)) == NULL)
        return config_no_memory (p);
      if (uri_unescape (path) < 0) {
        config_error (p, p->lineno, "%s '%s': bad %%-escape in URI",
                      key, value);
        return -EINVAL;
      }
      return config_set_path (p, field, key, path);
    }
  }
  return config_set_path (p, field, key, value);
}

int
config_set_timeout (struct parser *p, unsigned *field, const char *key,
                    const char *value)
{
  uint64_t ms;

  if (parse_duration_ms (value, 1, CONFIG_MAX_BACKING_TIMEOUT_MS, &ms) < 0) {
    config_error (p, p->lineno,
                  "invalid %s '%s': expected seconds (30, 30s) or "
                  "milliseconds (500ms), from 1ms to %us",
                  key, value, CONFIG_MAX_BACKING_TIMEOUT_MS / 1000);
    return -EINVAL;
  }
  *field = (unsigned) ms;
  return 0;
}

static void
check_local (struct parser *p, struct config_export *e, int line)
{
  struct stat st;

  if (stat (e->backing, &st) == 0) {
    if (!S_ISREG (st.st_mode) && !S_ISBLK (st.st_mode))
      config_error (p, line,
                    "backing '%s' is not a regular file or block device",
                    e->backing);
    return;
  }
  if (errno == ENOENT) {
    if (e->size_bytes == 0)
      config_error (p, line,
                    "backing '%s' does not exist (set size = to create it)",
                    e->backing);
    return;
  }
  config_error (p, line, "backing '%s': %s", e->backing, strerror (errno));
}

/* The ceph_* keys: only with rbd:, key or keyring not both, files
 * readable; no size = with rbd:.
 */
static void
check_ceph (struct parser *p, struct config_export *e, const int *line,
            bool rbd)
{
  static const struct {
    enum key_id id;
    const char *key;
  } ceph_keys[] = {
    { KEY_export_ceph_conf, "ceph_conf" },
    { KEY_export_ceph_id, "ceph_id" },
    { KEY_export_ceph_keyring, "ceph_keyring" },
    { KEY_export_ceph_key, "ceph_key" },
  };
  size_t i;

  if (!rbd) {
    for (i = 0; i < ARRAY_SIZE (ceph_keys); i++)
      if (line[ceph_keys[i].id] != 0)
        config_error (p, line[ceph_keys[i].id], "%s is used only with a "
                      "Ceph RBD backing (backing = rbd:POOL/IMAGE)",
                      ceph_keys[i].key);
    return;
  }
  if (line[KEY_export_size] != 0)
    config_error (p, line[KEY_export_size],
                  "size = creates a local backing file; [export %s] has an "
                  "RBD backing, whose size is the image's", e->name);
  if (e->ceph_key != NULL && e->ceph_keyring != NULL)
    config_error (p, line[KEY_export_ceph_key],
                  "ceph_key and ceph_keyring: give the key or the keyring "
                  "file, not both");
  if (e->ceph_conf != NULL && access (e->ceph_conf, R_OK) != 0)
    config_error (p, line[KEY_export_ceph_conf], "ceph_conf '%s': %s",
                  e->ceph_conf, strerror (errno));
  if (e->ceph_keyring != NULL && access (e->ceph_keyring, R_OK) != 0)
    config_error (p, line[KEY_export_ceph_keyring], "ceph_keyring '%s': %s",
                  e->ceph_keyring, strerror (errno));
}

void
config_check_backing (struct parser *p, struct config_export *e,
                      const int *line)
{
  static const struct {
    enum key_id id;
    const char *key;
    bool tls;
    bool rbd;                   /* also used with rbd: */
  } remote_keys[] = {
    { KEY_export_backing_connections, "backing_connections", false, false },
    { KEY_export_backing_timeout, "backing_timeout", false, true },
    { KEY_export_backing_tls_certificates, "backing_tls_certificates", true,
      false },
    { KEY_export_backing_tls_verify, "backing_tls_verify", true, false },
    { KEY_export_backing_tls_psk_file, "backing_tls_psk_file", true, false },
    { KEY_export_backing_tls_username, "backing_tls_username", true, false },
  };
  bool remote = backing_is_remote_uri (e->backing);
  bool tls = remote && backing_is_tls_uri (e->backing);
  bool rbd = backing_is_rbd_uri (e->backing);
  size_t i;

  check_ceph (p, e, line, rbd);
  for (i = 0; i < ARRAY_SIZE (remote_keys); i++) {
    int at = line[remote_keys[i].id];

    if (at == 0 || (rbd && remote_keys[i].rbd))
      continue;
    if (rbd)
      config_error (p, at, "%s is used only with a remote NBD backing "
                    "(nbd://…), not with rbd:", remote_keys[i].key);
    else if (!remote)
      config_error (p, at, "%s is used only with a remote backing "
                    "(backing = nbd://…): [export %s] has a local one",
                    remote_keys[i].key, e->name);
    else if (remote_keys[i].tls && !tls)
      config_error (p, at, "%s is used only with TLS to the remote: "
                    "write the backing URI as nbds:// or nbds+unix://",
                    remote_keys[i].key);
  }
  if (rbd)
    return;
  if (!remote) {
    check_local (p, e, line[KEY_export_backing]);
    return;
  }
  if (line[KEY_export_size] != 0)
    config_error (p, line[KEY_export_size],
                  "size = creates a local backing file; [export %s] has a "
                  "remote backing, whose size is the remote's", e->name);
  if (line[KEY_export_backing_tls_username] != 0 &&
      e->backing_tls_psk_file == NULL)
    config_error (p, line[KEY_export_backing_tls_username],
                  "backing_tls_username is the PSK identity: it needs "
                  "backing_tls_psk_file");
  if (e->backing_tls_psk_file != NULL && e->backing_tls_certificates != NULL)
    config_error (p, line[KEY_export_backing_tls_psk_file],
                  "backing_tls_psk_file and backing_tls_certificates: "
                  "choose PSK or X.509");
  if (e->backing_tls_psk_file != NULL &&
      access (e->backing_tls_psk_file, R_OK) != 0)
    config_error (p, line[KEY_export_backing_tls_psk_file],
                  "backing_tls_psk_file '%s': %s", e->backing_tls_psk_file,
                  strerror (errno));
  if (e->backing_tls_certificates != NULL) {
    struct stat st;

    if (stat (e->backing_tls_certificates, &st) != 0 ||
        !S_ISDIR (st.st_mode))
      config_error (p, line[KEY_export_backing_tls_certificates],
                    "backing_tls_certificates '%s' is not a directory",
                    e->backing_tls_certificates);
  }
}

void
config_export_backing_options (const struct config_export *ce,
                               struct backing_remote_options *out)
{
  *out = (struct backing_remote_options) {
    .connections = ce->backing_connections,
    .timeout_ms = ce->backing_timeout_ms,
    .tls_certificates = ce->backing_tls_certificates,
    .tls_no_verify = !ce->backing_tls_verify,
    .tls_psk_file = ce->backing_tls_psk_file,
    .tls_username = ce->backing_tls_username,
  };
}

void
config_export_ceph_options (const struct config_export *ce,
                            struct backing_ceph_options *out)
{
  *out = (struct backing_ceph_options) {
    .conf = ce->ceph_conf,
    .id = ce->ceph_id,
    .keyring = ce->ceph_keyring,
    .key = ce->ceph_key,
  };
}
