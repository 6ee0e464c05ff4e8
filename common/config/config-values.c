/* SPDX-License-Identifier: BSD-3-Clause */
/* config-values.c — the values of the configuration keys.
 *
 * WHAT: the key table built from CONFIG_KEYS (config-internal.h) and, per
 * value type, the check of one value and its store into the section's
 * struct: numbers and their ranges, sizes, booleans, names, paths
 * (resolved against the directory of the file they are in), listen
 * addresses, log targets and levels, cache modes.  The TLS and
 * access-control values are config-tls.c's, the backing store's
 * config-backing.c's; config_set_value dispatches to them.
 * WHY: the file reader (config.c) and any other front end of the table
 * (the plugin's key=value parameters) must accept and refuse the same
 * values with the same words; one function per value type is that one
 * place.
 * INVARIANTS:
 * - Every key's field has the C type its value type writes (checked at
 *   compile time below: the field is reached through a void pointer).
 * - A bad value leaves the field as it was.
 * THREADS AND LOCKS: none; called with one parser on one thread.
 * FAILURE: each function returns 0, or -EINVAL after logging through
 * config_error (at p->lineno), or -ENOMEM (config_no_memory).
 * NOT HERE: reading lines and sections, duplicate and unknown keys, the
 * checks that need the whole file (config.c).
 */
#include <config.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "compiler.h"
#include "config-file.h"
#include "config-internal.h"
#include "log.h"
#include "parse.h"

#define CONFIG_MAX_WORKERS 1024

/* The C type of the field each value type writes; checked per key below,
 * because config_set_value() reaches the field through a void pointer.
 */
#define VALUE_CTYPE_LISTEN     char **
#define VALUE_CTYPE_WORKERS    unsigned
#define VALUE_CTYPE_COUNT      unsigned
#define VALUE_CTYPE_PATH       char *
#define VALUE_CTYPE_SOCKET     char *
#define VALUE_CTYPE_BACKING    char *
#define VALUE_CTYPE_CONNECTIONS unsigned
#define VALUE_CTYPE_TIMEOUT    unsigned
#define VALUE_CTYPE_NAME       char *
#define VALUE_CTYPE_TEXT       char *
#define VALUE_CTYPE_SIZE       uint64_t
#define VALUE_CTYPE_BUCKET_SIZE uint64_t
#define VALUE_CTYPE_NODE_CACHE uint64_t
#define VALUE_CTYPE_DELAY_MS   unsigned
#define VALUE_CTYPE_PERCENT    unsigned
#define VALUE_CTYPE_CUTOFF     uint64_t
#define VALUE_CTYPE_PROMOTE_MIN uint64_t
#define VALUE_CTYPE_BOOL       bool
#define VALUE_CTYPE_DISCARD    enum ncache_discard
#define VALUE_CTYPE_LOG_TARGET enum log_target
#define VALUE_CTYPE_LOG_LEVEL  enum log_level
#define VALUE_CTYPE_MODE       enum ncache_mode
#define VALUE_CTYPE_STRING     char *
#define VALUE_CTYPE_TLS        enum config_tls
#define VALUE_CTYPE_TLS_VERSION unsigned
#define VALUE_CTYPE_EXPORT_TLS bool
#define VALUE_CTYPE_CIDRS      struct config_cidr *
#define VALUE_CTYPE_SUBJECTS   char **

#define KEY_CHECK(kind, sec, key, type, field, rep)                     \
  _Static_assert (__builtin_types_compatible_p (                        \
                    __typeof__ (((struct config_##sec *) 0)->field),    \
                    VALUE_CTYPE_##type),                                \
                  #sec "." #key ": field type does not match " #type);
CONFIG_KEYS (KEY_CHECK)

#define KEY_NAME(kind, sec, key, type, field, rep) #sec "." #key,
const char *const config_known_keys[] = { CONFIG_KEYS (KEY_NAME) NULL };

#define KEY_DEF(kind, sec, key, type, field, rep)                       \
  [KEY_##sec##_##key] = { SECTION_##kind, #key, VALUE_##type,           \
                          offsetof (struct config_##sec, field), rep },
const struct key_def config_key_defs[NR_KEYS] = { CONFIG_KEYS (KEY_DEF) };

static const char *const mode_names[] = {
  [NCACHE_MODE_NONE] = "none",
  [NCACHE_MODE_WRITEBACK] = "writeback",
  [NCACHE_MODE_WRITETHROUGH] = "writethrough",
  [NCACHE_MODE_WRITEAROUND] = "writearound",
};

const char *
config_mode_name (enum ncache_mode mode)
{
  if ((size_t) mode < ARRAY_SIZE (mode_names) && mode_names[mode] != NULL)
    return mode_names[mode];
  return "?";
}

/* An absolute path: a copy of value, or value appended to the config
 * file's directory.  NULL on allocation failure.
 */
static char *
resolve_path (struct parser *p, const char *value)
{
  if (value[0] == '/')
    return strdup (value);
  return concat3 (p->dir, "/", value);
}

/* ---- values: 0, or -EINVAL after logging, or -ENOMEM ---- */

int
config_set_string (struct parser *p, char **field, const char *key,
                   const char *value)
{
  char *copy;

  if (*value == '\0') {
    config_error (p, p->lineno, "%s: empty value", key);
    return -EINVAL;
  }
  if (strlen (value) > CONFIG_MAX_NAME_BYTES) {
    config_error (p, p->lineno, "%s: longer than %d bytes",
                  key, CONFIG_MAX_NAME_BYTES);
    return -EINVAL;
  }
  if ((copy = strdup (value)) == NULL)
    return config_no_memory (p);
  free (*field);
  *field = copy;
  return 0;
}

int
config_set_path (struct parser *p, char **field, const char *key,
                 const char *value)
{
  char *path;

  if (*value == '\0') {
    config_error (p, p->lineno, "%s: empty path", key);
    return -EINVAL;
  }
  if ((path = resolve_path (p, value)) == NULL)
    return config_no_memory (p);
  if (strlen (path) >= PATH_MAX) {
    config_error (p, p->lineno, "%s: path longer than %d bytes",
                  key, PATH_MAX - 1);
    free (path);
    return -EINVAL;
  }
  free (*field);
  *field = path;
  return 0;
}

/* A Unix socket path: resolved like a PATH, and short enough to bind. */
static int
set_socket_path (struct parser *p, char **field, const char *key,
                 const char *value)
{
  const size_t max = sizeof ((struct sockaddr_un *) 0)->sun_path - 1;
  char *path;

  if (*value == '\0') {
    config_error (p, p->lineno, "%s: empty path", key);
    return -EINVAL;
  }
  if ((path = resolve_path (p, value)) == NULL)
    return config_no_memory (p);
  if (strlen (path) > max) {
    config_error (p, p->lineno,
                  "%s '%s': socket path '%s' is longer than %zu bytes",
                  key, value, path, max);
    free (path);
    return -EINVAL;
  }
  free (*field);
  *field = path;
  return 0;
}

static int
set_bool (struct parser *p, bool *field, const char *key, const char *value)
{
  if (parse_bool (value, field) < 0) {
    config_error (p, p->lineno,
                  "invalid %s '%s': expected yes/no, true/false, "
                  "on/off or 1/0", key, value);
    return -EINVAL;
  }
  return 0;
}

/* auto, or a bool (yes: discard on a regular file too). */
static int
set_discard (struct parser *p, enum ncache_discard *field, const char *key,
             const char *value)
{
  bool on;

  if (strcasecmp (value, "auto") == 0) {
    *field = NCACHE_DISCARD_AUTO;
    return 0;
  }
  if (parse_bool (value, &on) < 0) {
    config_error (p, p->lineno,
                  "invalid %s '%s': expected auto, or yes/no, true/false, "
                  "on/off or 1/0", key, value);
    return -EINVAL;
  }
  *field = on ? NCACHE_DISCARD_YES : NCACHE_DISCARD_NO;
  return 0;
}

static int
set_size (struct parser *p, uint64_t *field, const char *key,
          const char *value)
{
  uint64_t v;
  int r = parse_size_bytes (value, &v);

  if (r == -ERANGE || (r == 0 && v > INT64_MAX)) { /* more than off_t */
    config_error (p, p->lineno, "invalid %s '%s': too large", key, value);
    return -EINVAL;
  }
  if (r < 0 || v == 0) {
    config_error (p, p->lineno,
                  "invalid %s '%s': expected a size greater than 0 "
                  "such as 4096, 512K, 10G or 2T", key, value);
    return -EINVAL;
  }
  *field = v;
  return 0;
}

/* A size in [min, max], and a power of two if pow2; `expected` describes
 * the range in the message.
 */
static int
set_size_range (struct parser *p, uint64_t *field, const char *key,
                const char *value, uint64_t min, uint64_t max, bool pow2,
                const char *expected)
{
  uint64_t v;

  if (parse_size_bytes (value, &v) < 0 || v < min || v > max
      || (pow2 && (v & (v - 1)) != 0)) {
    config_error (p, p->lineno, "invalid %s '%s': expected %s",
                  key, value, expected);
    return -EINVAL;
  }
  *field = v;
  return 0;
}

static int
set_uint (struct parser *p, unsigned *field, const char *key,
          const char *value, unsigned min, unsigned max)
{
  uint64_t v;

  if (parse_uint64_range (value, min, max, &v) < 0) {
    config_error (p, p->lineno,
                  "invalid %s '%s': expected an integer from %u to %u",
                  key, value, min, max);
    return -EINVAL;
  }
  *field = (unsigned) v;
  return 0;
}

static int
set_log_target (struct parser *p, enum log_target *field, const char *key,
                const char *value)
{
  if (strcasecmp (value, "stderr") == 0)
    *field = LOG_TARGET_STDERR;
  else if (strcasecmp (value, "syslog") == 0)
    *field = LOG_TARGET_SYSLOG;
  else if (strcasecmp (value, "auto") == 0)
    *field = LOG_TARGET_AUTO;
  else {
    config_error (p, p->lineno,
                  "invalid %s '%s': expected auto, stderr or syslog", key,
                  value);
    return -EINVAL;
  }
  return 0;
}

/* unix:PATH (PATH resolved), HOST:PORT, [IPV6]:PORT or :PORT. */
static int
check_listen (struct parser *p, const char *key, const char *value,
              char **out)
{
  const char *host, *host_end, *colon;
  char addr6[INET6_ADDRSTRLEN + 1];
  uint64_t port;
  const char *s;
  size_t host_len;
  char *path;

  if (strncmp (value, "unix:", 5) == 0) {
    if (value[5] == '\0') {
      config_error (p, p->lineno, "%s '%s': empty socket path", key, value);
      return -EINVAL;
    }
    if ((path = resolve_path (p, value + 5)) == NULL)
      return config_no_memory (p);
    if (strlen (path) >= sizeof ((struct sockaddr_un *) 0)->sun_path) {
      config_error (p, p->lineno,
                    "%s '%s': socket path '%s' is longer than %zu bytes",
                    key, value, path,
                    sizeof ((struct sockaddr_un *) 0)->sun_path - 1);
      free (path);
      return -EINVAL;
    }
    *out = concat3 ("unix:", path, "");
    free (path);
    return *out ? 0 : config_no_memory (p);
  }

  if (value[0] == '[') {
    host = value + 1;
    host_end = strchr (host, ']');
    if (host_end == NULL || host_end[1] != ':') {
      config_error (p, p->lineno,
                    "%s '%s': expected [IPV6]:PORT", key, value);
      return -EINVAL;
    }
    colon = host_end + 1;
    host_len = (size_t) (host_end - host);
    if (host_len == 0 || host_len >= sizeof addr6) {
      config_error (p, p->lineno,
                    "%s '%s': not an IPv6 address", key, value);
      return -EINVAL;
    }
    memcpy (addr6, host, host_len);
    addr6[host_len] = '\0';
    {
      struct in6_addr a;

      if (inet_pton (AF_INET6, addr6, &a) != 1) {
        config_error (p, p->lineno,
                      "%s '%s': '%s' is not an IPv6 address",
                      key, value, addr6);
        return -EINVAL;
      }
    }
  }
  else {
    host = value;
    colon = strrchr (value, ':');
    if (colon == NULL) {
      config_error (p, p->lineno,
                    "%s '%s': expected unix:PATH, HOST:PORT, [IPV6]:PORT "
                    "or :PORT", key, value);
      return -EINVAL;
    }
    for (s = host; s < colon; s++) {
      if (*s == ':') {
        config_error (p, p->lineno,
                      "%s '%s': write an IPv6 address in brackets, "
                      "as [ADDRESS]:PORT", key, value);
        return -EINVAL;
      }
      if (!isalnum ((unsigned char) *s) && *s != '.' && *s != '-'
          && *s != '_') {
        config_error (p, p->lineno,
                      "%s '%s': invalid character in host name", key, value);
        return -EINVAL;
      }
    }
  }

  if (parse_uint64_range (colon + 1, 0, 65535, &port) < 0) {
    config_error (p, p->lineno,
                  "%s '%s': invalid port '%s': expected 0 to 65535",
                  key, value, colon + 1);
    return -EINVAL;
  }
  if ((*out = strdup (value)) == NULL)
    return config_no_memory (p);
  return 0;
}

static int
set_mode (struct parser *p, enum ncache_mode *field, const char *key,
          const char *value)
{
  size_t i;

  for (i = 0; i < ARRAY_SIZE (mode_names); i++) {
    if (strcasecmp (value, mode_names[i]) == 0) {
      *field = (enum ncache_mode) i;
      return 0;
    }
  }
  config_error (p, p->lineno,
                "invalid %s '%s': expected writeback, writethrough, "
                "writearound or none", key, value);
  return -EINVAL;
}

static int
append_listen (struct parser *p, struct config_server *srv, const char *key,
               const char *value)
{
  char **list;
  char *addr;
  int *lines, r;

  if ((r = check_listen (p, key, value, &addr)) < 0)
    return r;
  lines = realloc (p->listen_lines, (srv->nr_listen + 1) * sizeof *lines);
  if (lines == NULL) {
    free (addr);
    return config_no_memory (p);
  }
  p->listen_lines = lines;
  lines[srv->nr_listen] = p->lineno;
  list = realloc (srv->listen, (srv->nr_listen + 1) * sizeof *list);
  if (list == NULL) {
    free (addr);
    return config_no_memory (p);
  }
  srv->listen = list;
  srv->listen[srv->nr_listen++] = addr;
  return 0;
}

/* Check value and store it in obj, a struct config_server, _cache or
 * _export.  0, or -EINVAL after logging, or -ENOMEM.
 */
int
config_set_value (struct parser *p, const struct key_def *def, void *obj,
           const char *value)
{
  void *field = (char *) obj + def->offset;
  const char *key = p->key_spelling ? p->key_spelling : def->key;

  switch (def->type) {
  case VALUE_LISTEN:
    return append_listen (p, obj, key, value);
  case VALUE_WORKERS:
    return set_uint (p, field, key, value, 1, CONFIG_MAX_WORKERS);
  case VALUE_COUNT:
    return set_uint (p, field, key, value, 0, UINT_MAX);
  case VALUE_PATH:
    return config_set_path (p, field, key, value);
  case VALUE_SOCKET:
    return set_socket_path (p, field, key, value);
  case VALUE_BACKING:
    return config_set_backing (p, field, key, value);
  case VALUE_CONNECTIONS:
    return set_uint (p, field, key, value, 1, CONFIG_MAX_BACKING_CONNECTIONS);
  case VALUE_TIMEOUT:
    return config_set_timeout (p, field, key, value);
  case VALUE_NAME:
    return config_set_string (p, field, key, value);
  case VALUE_TEXT:
    if (*value == '\0') {      /* explicitly none */
      free (*(char **) field);
      *(char **) field = NULL;
      return 0;
    }
    return config_set_string (p, field, key, value);
  case VALUE_SIZE:
    return set_size (p, field, key, value);
  case VALUE_BUCKET_SIZE:
    return set_size_range (p, field, key, value, CONFIG_MIN_BUCKET_BYTES,
                           CONFIG_MAX_BUCKET_BYTES, true,
                           "a power of two from 64K to 64M, such as 1M");
  case VALUE_NODE_CACHE:
    return set_size_range (p, field, key, value, CONFIG_MIN_NODE_CACHE_BYTES,
                           UINT64_MAX, false,
                           "a size of at least 1M, such as 64M or 1G");
  case VALUE_DELAY_MS:
    return set_uint (p, field, key, value, 1, CONFIG_MAX_JOURNAL_DELAY_MS);
  case VALUE_PERCENT:
    return set_uint (p, field, key, value, 0, CONFIG_MAX_WRITEBACK_PERCENT);
  case VALUE_CUTOFF:
    return set_size_range (p, field, key, value, 0, UINT64_MAX, false,
                           "a size such as 4M or 512K, or 0 (off)");
  case VALUE_PROMOTE_MIN:
    if (strcmp (value, "0") == 0) {
      *(uint64_t *) field = 0;
      return 0;
    }
    return set_size_range (p, field, key, value, 4096,
                           CONFIG_MAX_PROMOTE_MIN_BYTES, true,
                           "0 (off) or a power of two from 4K to 1M, "
                           "such as 64K");
  case VALUE_BOOL:
    return set_bool (p, field, key, value);
  case VALUE_DISCARD:
    return set_discard (p, field, key, value);
  case VALUE_LOG_TARGET:
    return set_log_target (p, field, key, value);
  case VALUE_LOG_LEVEL:
    if (log_level_from_string (value, field) < 0) {
      config_error (p, p->lineno,
                    "invalid %s '%s': expected error, warning, info or debug",
                    key, value);
      return -EINVAL;
    }
    return 0;
  case VALUE_MODE:
    return set_mode (p, field, key, value);
  case VALUE_STRING:
    return config_set_string (p, field, key, value);
  case VALUE_TLS:
    return config_set_tls (p, field, key, value);
  case VALUE_TLS_VERSION:
    return config_set_tls_version (p, field, key, value);
  case VALUE_EXPORT_TLS:
    return config_set_export_tls (p, field, key, value);
  case VALUE_CIDRS:
    return config_append_cidrs (p, obj, key, value);
  case VALUE_SUBJECTS:
    return config_append_subjects (p, obj, key, value);
  }
  return -EINVAL;
}
