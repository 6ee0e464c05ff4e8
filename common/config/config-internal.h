/* SPDX-License-Identifier: BSD-3-Clause */
/* config-internal.h — what the files of the config library share.
 *
 * WHAT: the state of one config_load (struct parser), the one list of keys
 * (CONFIG_KEYS), the enum of its entries and the key table built from it,
 * the error and out-of-memory reporters, a few string helpers, and the
 * calls from the file reader (config.c) into the values (config-values.c),
 * the TLS and access-control rules (config-tls.c) and the other checks.
 * WHY: the config library is several nouns in several files, and they need
 * the same view of the parser's state and of the key lines.
 * INVARIANTS: private to the config parser: included only by config*.c;
 * the public API is config-file.h.
 * THREADS AND LOCKS: none: each load has its own struct parser.
 * FAILURE: the value functions return 0, or -EINVAL after logging, or
 * -ENOMEM; problems are counted in the parser (nr_errors, oom).
 * NOT HERE: reading lines (config.c); the value checks
 * (config-values.c); the TLS and access-control rules (config-tls.c).
 */
#ifndef NBDCACHE_CONFIG_INTERNAL_H
#define NBDCACHE_CONFIG_INTERNAL_H

#include <ctype.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compiler.h"
#include "config-file.h"

/* NBD strings (export names, descriptions) are at most 4096 bytes. */
#define CONFIG_MAX_NAME_BYTES 4096

enum section_kind {
  SECTION_NONE = 0,             /* before the first header */
  SECTION_SKIP,                 /* after a bad header: keys are ignored */
  SECTION_SERVER,
  SECTION_CACHE,
  SECTION_EXPORT,
};

/* The one list of keys: (section kind, section word = struct config_<word>,
 * key, value type, field, repeatable).  The value types are enum value_type
 * below; config-values.c builds the key table from this list.
 */
#define CONFIG_KEYS(K)                                                      \
  K (SERVER, server, listen,           LISTEN,      listen,           true)  \
  K (SERVER, server, workers,          WORKERS,     workers,          false) \
  K (SERVER, server, pidfile,          PATH,        pidfile,          false) \
  K (SERVER, server, control_socket,   SOCKET,      control_socket,   false) \
  K (SERVER, server, metrics_listen,   STRING,      metrics_listen,   false) \
  K (SERVER, server, user,             STRING,      user,             false) \
  K (SERVER, server, group,            STRING,      group,            false) \
  K (SERVER, server, log,              LOG_TARGET,  log_target,       false) \
  K (SERVER, server, log_level,        LOG_LEVEL,   log_level,        false) \
  K (SERVER, server, default_export,   NAME,        default_export,   false) \
  K (SERVER, server, tls,              TLS,         tls,              false) \
  K (SERVER, server, tls_certificates, PATH,        tls_certificates, false) \
  K (SERVER, server, tls_cert_file,    PATH,        tls_cert_file,    false) \
  K (SERVER, server, tls_key_file,     PATH,        tls_key_file,     false) \
  K (SERVER, server, tls_ca_file,      PATH,        tls_ca_file,      false) \
  K (SERVER, server, tls_verify_peer,  BOOL,        tls_verify_peer,  false) \
  K (SERVER, server, tls_psk_file,     PATH,        tls_psk_file,     false) \
  K (SERVER, server, tls_ciphers,      STRING,      tls_ciphers,      false) \
  K (SERVER, server, tls_ciphersuites, STRING,      tls_ciphersuites, false) \
  K (SERVER, server, tls_min_version,  TLS_VERSION, tls_min_version,  false) \
  K (SERVER, server, max_buffer,       SIZE,        max_buffer_bytes, false) \
  K (SERVER, server, handshake_timeout, TIMEOUT,    handshake_timeout_ms, \
     false)                                                                 \
  K (SERVER, server, request_timeout,  TIMEOUT,     request_timeout_ms, false) \
  K (SERVER, server, drain_timeout,    TIMEOUT,     drain_timeout_ms, false) \
  K (CACHE,  cache,  path,             PATH,        path,             false) \
  K (CACHE,  cache,  size,             SIZE,        size_bytes,       false) \
  K (CACHE,  cache,  create,           BOOL,        create,           false) \
  K (CACHE,  cache,  direct,           BOOL,        direct,           false) \
  K (CACHE,  cache,  bucket_size,      BUCKET_SIZE, bucket_bytes,     false) \
  K (CACHE,  cache,  journal_size,     SIZE,        journal_bytes,    false) \
  K (CACHE,  cache,  node_cache_size,  NODE_CACHE,  node_cache_bytes, false) \
  K (CACHE,  cache,  journal_delay_ms, DELAY_MS,    journal_delay_ms, false) \
  K (CACHE,  cache,  discard,          DISCARD,     discard,          false) \
  K (EXPORT, export, backing,          BACKING,     backing,          false) \
  K (EXPORT, export, size,             SIZE,        size_bytes,       false) \
  K (EXPORT, export, cache,            NAME,        cache,            false) \
  K (EXPORT, export, mode,             MODE,        mode,             false) \
  K (EXPORT, export, readonly,         BOOL,        readonly,         false) \
  K (EXPORT, export, description,      TEXT,        description,      false) \
  K (EXPORT, export, rotational,       BOOL,        rotational,       false) \
  K (EXPORT, export, max_connections,  COUNT,       max_connections,  false) \
  K (EXPORT, export, tls,              EXPORT_TLS,  tls_required,     false) \
  K (EXPORT, export, allow,            CIDRS,       allow,            true)  \
  K (EXPORT, export, allow_unix,       BOOL,        allow_unix,       false) \
  K (EXPORT, export, allow_subjects,   SUBJECTS,    allow_subjects,   true)  \
  K (EXPORT, export, writeback_percent, PERCENT,    writeback_percent, false) \
  K (EXPORT, export, sequential_cutoff, CUTOFF,     sequential_cutoff_bytes, \
     false)                                                                 \
  K (EXPORT, export, promote_min,      PROMOTE_MIN, promote_min_bytes, false) \
  K (EXPORT, export, flush_on_stop,    BOOL,        flush_on_stop,    false) \
  K (EXPORT, export, share_backing,    BOOL,        share_backing,    false) \
  K (EXPORT, export, backing_connections, CONNECTIONS, backing_connections, \
     false)                                                                 \
  K (EXPORT, export, backing_timeout,  TIMEOUT,     backing_timeout_ms, false) \
  K (EXPORT, export, backing_tls_certificates, PATH, backing_tls_certificates, \
     false)                                                                 \
  K (EXPORT, export, backing_tls_verify, BOOL,      backing_tls_verify, false) \
  K (EXPORT, export, backing_tls_psk_file, PATH,    backing_tls_psk_file, false) \
  K (EXPORT, export, backing_tls_username, NAME,    backing_tls_username, false) \
  K (EXPORT, export, ceph_conf,        PATH,        ceph_conf,        false) \
  K (EXPORT, export, ceph_id,          NAME,        ceph_id,          false) \
  K (EXPORT, export, ceph_keyring,     PATH,        ceph_keyring,     false) \
  K (EXPORT, export, ceph_key,         NAME,        ceph_key,         false)

#define KEY_ENUM(kind, sec, key, type, field, rep) KEY_##sec##_##key,
enum key_id { CONFIG_KEYS (KEY_ENUM) NR_KEYS };

/* How a value is checked and stored. */
enum value_type {
  VALUE_LISTEN,                 /* char **, appended: see check_listen */
  VALUE_WORKERS,                /* unsigned, 1 to CONFIG_MAX_WORKERS */
  VALUE_COUNT,                  /* unsigned, 0 to UINT_MAX */
  VALUE_PATH,                   /* char *, resolved against the file's dir */
  VALUE_SOCKET,                 /* char *, a PATH that fits sun_path */
  VALUE_BACKING,                /* char *, a path, file:///PATH or a remote
                                   URI (config-backing.c) */
  VALUE_CONNECTIONS,            /* unsigned, 1 to
                                   CONFIG_MAX_BACKING_CONNECTIONS */
  VALUE_TIMEOUT,                /* unsigned ms: 30, 30s or 500ms */
  VALUE_NAME,                   /* char *, non-empty, <= 4096 bytes */
  VALUE_TEXT,                   /* char *, "" = NULL, <= 4096 bytes */
  VALUE_SIZE,                   /* uint64_t, > 0 */
  VALUE_BUCKET_SIZE,            /* uint64_t, a power of two from
                                   CONFIG_MIN_ to CONFIG_MAX_BUCKET_BYTES */
  VALUE_NODE_CACHE,             /* uint64_t, >= CONFIG_MIN_NODE_CACHE_BYTES */
  VALUE_DELAY_MS,               /* unsigned, 1 to CONFIG_MAX_JOURNAL_DELAY_MS */
  VALUE_PERCENT,                /* unsigned, 0 to CONFIG_MAX_WRITEBACK_PERCENT */
  VALUE_CUTOFF,                 /* uint64_t, a size; 0 = off */
  VALUE_PROMOTE_MIN,            /* uint64_t, 0 (off) or a power of two from
                                   4K to CONFIG_MAX_PROMOTE_MIN_BYTES */
  VALUE_BOOL,                   /* bool */
  VALUE_DISCARD,                /* enum ncache_discard: auto or a bool */
  VALUE_LOG_TARGET,             /* enum log_target */
  VALUE_LOG_LEVEL,              /* enum log_level */
  VALUE_MODE,                   /* enum ncache_mode */
  VALUE_STRING,                 /* char *, non-empty, <= 4096 bytes */
  VALUE_TLS,                    /* enum config_tls: off|on|require */
  VALUE_TLS_VERSION,            /* unsigned: 1.2 -> 12, 1.3 -> 13 */
  VALUE_EXPORT_TLS,             /* bool: optional -> false, require -> true */
  VALUE_CIDRS,                  /* struct config_cidr *, appended */
  VALUE_SUBJECTS,               /* char **, appended, ';'-separated */
};

/* One entry of the key table (config-values.c), indexed by enum key_id. */
struct key_def {
  enum section_kind kind;
  const char *key;
  enum value_type type;
  size_t offset;                /* of the field in struct config_<kind> */
  bool repeatable;
};
extern const struct key_def config_key_defs[NR_KEYS];

/* Where each key of one section was set; 0 = not set. */
struct key_lines {
  int line[NR_KEYS];
};

/* config-index.c: section name -> index (duplicate headers in O(1)). */
struct name_slot {
  uint64_t hash;
  const char *name;             /* the section's own string, not a copy */
  size_t idx1;                  /* index + 1; 0 = empty slot */
};
struct name_index {
  struct name_slot *slots;      /* cap entries, at most half used */
  size_t cap, len;
};
/* The index added under name, or -1. */
long name_index_find (const struct name_index *ix, const char *name);
/* 0, or -ENOMEM (the table unchanged). */
int name_index_add (struct name_index *ix, const char *name, size_t index);
void name_index_free (struct name_index *ix);

/* One file of the configuration (config-source.c). */
struct config_source {
  char *path;                   /* as given / dir + name, for messages */
  char *dir;                    /* absolute directory of the file */
  int first_line;               /* parser lineno before its first line */
};

struct parser {
  const char *path;             /* the current file (a source's path) */
  const char *dir;              /* its absolute directory (a source's) */
  FILE *fp;                     /* the current file; NULL after the last */
  struct config_source *sources; /* the main file, then FILE.d/ *.conf */
  size_t nr_sources;
  size_t cur_source;            /* the one being read */
  char *buf;                    /* getline buffer */
  size_t buf_bytes;
  int lineno;                   /* line last read, counted
                                   across every source */
  int read_errno;               /* a read error ended the file */
  const char *line_text;        /* the "key = value" line being handled,
                                   as read (comments included); NULL for
                                   other lines */
  unsigned nr_errors;
  unsigned nr_bad_headers;      /* headers whose section is skipped */
  bool oom;

  struct config *cfg;
  int server_line;              /* 0 = no [server] header yet */
  struct key_lines server_keys;
  struct key_lines *cache_keys;  /* parallel to cfg->caches */
  struct key_lines *export_keys; /* parallel to cfg->exports */
  struct name_index cache_names;  /* name -> index into cfg->caches */
  struct name_index export_names; /* name -> index into cfg->exports */
  size_t caches_cap, exports_cap; /* allocated entries (geometric growth) */
  int *listen_lines;            /* parallel to cfg->server.listen */
  bool server_checks;           /* config_load_server: check nbdcached's
                                   own paths too (config-paths.c) */

  enum section_kind cur;        /* section the next key belongs to */
  size_t cur_index;             /* into caches/exports */

  /* Parameters (config-params.c) instead of a file: messages carry no
   * FILE:LINE, lineno counts parameters, and keys are named in messages
   * as the front end spells them (key_spelling; NULL = the file's key).
   */
  bool params;
  const char *key_spelling;
};

/* ---- messages (config.c) ---- */

/* Logs "FILE:LINE: message" at error level and counts the error. */
void config_error (struct parser *p, int line, const char *fmt, ...)
  ATTRIBUTE_FORMAT_PRINTF (3, 4);
/* Marks the load as out of memory; returns -ENOMEM. */
int config_no_memory (struct parser *p);

/* ---- reading keys (config.c) ---- */

/* A config with every [server] default; NULL on allocation failure. */
struct config *config_new (void);
/* Appends a [cache NAME] / [export NAME] section with its defaults and
 * makes it the current one; takes ownership of name on success.  0, or
 * -ENOMEM.
 */
int config_add_cache (struct parser *p, char *name, int line);
int config_add_export (struct parser *p, char *name, int line);
/* One "key = value" of the current section at line p->lineno: unknown
 * and duplicate keys are errors, else the value is checked and stored.
 * Problems are logged and counted in p.
 */
void config_handle_key (struct parser *p, const char *key, const char *value);

/* ---- the files of a configuration (config-source.c) ---- */

/* Lists PATH and its PATH.d/ *.conf fragments and opens PATH.  0, or
 * -errno after logging.  config_sources_free frees what it made, also on
 * failure.
 */
int config_sources_open (struct parser *p, const char *path);
/* At the end of the current file: opens the next source (true), or there
 * is none (false).  A fragment that cannot be opened is logged, counted as
 * an error and skipped.
 */
bool config_sources_next (struct parser *p);
void config_sources_free (struct parser *p);
/* The file and its line number of stream line LINE. */
const char *config_where (const struct parser *p, int line, int *file_line);
/* "line N" when LINE is in the same file as line CURRENT, else
 * "line N of FILE": for messages like "(first at line N)".
 */
void config_line_ref (const struct parser *p, int line, int current,
                      char *buf, size_t len);

/* ---- small string helpers ---- */

static inline char *
skip_space (char *s)
{
  while (isspace ((unsigned char) *s))
    s++;
  return s;
}

static inline void
trim_right (char *s)
{
  size_t n = strlen (s);

  while (n > 0 && isspace ((unsigned char) s[n - 1]))
    s[--n] = '\0';
}

/* True if c starts a comment when it begins a line or follows whitespace. */
static inline bool
is_comment_char (char c)
{
  return c == '#' || c == ';';
}

/* a + b + c in a new string; NULL on allocation failure. */
static inline char *
concat3 (const char *a, const char *b, const char *c)
{
  size_t la = strlen (a), lb = strlen (b), lc = strlen (c);
  char *out = malloc (la + lb + lc + 1);

  if (out == NULL)
    return NULL;
  memcpy (out, a, la);
  memcpy (out + la, b, lb);
  memcpy (out + la + lb, c, lc + 1);
  return out;
}

/* ---- TLS and access control (config-tls.c) ---- */

/* Values of one key, checked and stored: 0, or -EINVAL after logging, or
 * -ENOMEM.  The append functions add to the export's list.
 */
int config_set_tls (struct parser *p, enum config_tls *field,
                    const char *key, const char *value);
int config_set_tls_version (struct parser *p, unsigned *field,
                            const char *key, const char *value);
int config_set_export_tls (struct parser *p, bool *field, const char *key,
                           const char *value);
int config_append_cidrs (struct parser *p, struct config_export *e,
                         const char *key, const char *value);
int config_append_subjects (struct parser *p, struct config_export *e,
                            const char *key, const char *value);

/* Once the whole file is read: expands tls_certificates, checks the TLS
 * files and that the [server] and [export] TLS settings fit together.
 */
void config_check_tls (struct parser *p);

/* Once the whole file is read: one cache device or backing file under
 * two names (config-identity.c), and share_backing's rules.
 */
void config_check_identity (struct parser *p);

/* ---- the backing store (config-backing.c) ---- */

/* backing = a path, file:///PATH, a remote URI (nbd://, nbds+unix:// …)
 * or rbd:POOL/IMAGE;
 * backing_timeout = 30, 30s or 500ms.  0, or -EINVAL after logging, or
 * -ENOMEM.
 */
int config_set_backing (struct parser *p, char **field, const char *key,
                        const char *value);
int config_set_timeout (struct parser *p, unsigned *field, const char *key,
                        const char *value);

/* Once the whole file is read, for one export with a backing: a local one
 * exists (or size = creates it) and has no remote keys; a remote one has
 * no size and TLS keys only with a TLS URI; ceph_* keys only with rbd:.
 */
void config_check_backing (struct parser *p, struct config_export *e,
                           const int *line);

/* ---- checks without starting (config-paths.c) ---- */

/* create = yes with size =: a cache of that size fits its bucket_size
 * and journal_size (else an error at size or journal_size).
 */
void config_check_cache_size (struct parser *p, const struct config_cache *c,
                              const int *line);
/* For nbdcached only: the pidfile, control socket, unix: listen sockets
 * and cache files to create go into existing directories this user may
 * create entries in; existing cache files are readable and writable.
 */
void config_check_server_paths (struct parser *p);

/* ---- values (config-values.c) ---- */

/* Checks value and stores it in obj, a struct config_server, _cache or
 * _export, as def's value type says.  0, or -EINVAL after logging, or
 * -ENOMEM.
 */
int config_set_value (struct parser *p, const struct key_def *def, void *obj,
                      const char *value);
/* "writeback", "none" …, as the mode key spells them. */
const char *config_mode_name (enum ncache_mode mode);

/* A non-empty string of at most CONFIG_MAX_NAME_BYTES. */
int config_set_string (struct parser *p, char **field, const char *key,
                       const char *value);
/* A path resolved against the config file's directory. */
int config_set_path (struct parser *p, char **field, const char *key,
                     const char *value);

#endif /* NBDCACHE_CONFIG_INTERNAL_H */
