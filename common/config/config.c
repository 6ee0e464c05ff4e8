/* SPDX-License-Identifier: BSD-3-Clause */
/* config.c — the nbdcached configuration file (see config-file.h).
 *
 * WHAT: reads an INI file into struct config and validates it: every
 * section and key (each value is checked and stored by config-values.c),
 * cross-references (cache = NAME, default_export, the background-work keys
 * that need a cache) and the backing files.  The main file is followed by
 * the *.conf files of FILE.d/ (config-source.c), read as one stream of
 * lines.  The checks of the TLS and access-control keys are
 * config-tls.c's; this file calls them.
 *
 * WHY: an admin must never run a half-understood config, and must see every
 * mistake at once with the line it is on, not one per restart.
 *
 * THE LINES (nbdcached.conf(5)): a line is blank, a comment ('#' or ';'
 * first), a section header "[word name]" (an optional comment after it),
 * or "key = value"; anything else is an error at its line.  Leading
 * whitespace, a UTF-8 byte-order mark at the start of a file and the line
 * ending are dropped.  The key ends at the first '=' (a ':' or a comment
 * before it is an error); in the value, a '#' or ';' that follows
 * whitespace starts a comment; key and value are trimmed of whitespace.
 * There are no continuation lines, and a line holds at most
 * CONFIG_MAX_LINE_BYTES.
 *
 * WHY NOT LIBINIH: it did this until its limits cost more than the lines
 * it saved: its handler is not told the line number, it never reports a
 * section without keys, truncates section names at 50 bytes and reports
 * only the first syntax error, so every line already passed through our
 * own reader (read_line) for headers, comments, separators and errors;
 * what was left to it was splitting "key = value" and the inline comment
 * (split_key_line, 25 lines).  In return it forced process-global options
 * (Debian's build makes its compile-time options runtime variables), so
 * two loads could not run at once.  The format above is libinih's, as the
 * file was configured, unchanged.

 * INVARIANTS:
 * - Keys are known by exactly one list, CONFIG_KEYS (config-internal.h),
 *   which also produces config_known_keys[], so the documentation test
 *   sees what the parser sees.
 * - A key's line is recorded even when its value is bad, so a bad value is
 *   reported once (not again as a missing key).
 * - Keys of a section whose header was bad are skipped silently: the header
 *   error is the one message.
 * - A repeatable key (listen, allow, allow_subjects) accumulates; its
 *   recorded line is the first one, which errors about the key point to.
 * - On failure nothing is returned: the half-built config is freed.
 *
 * THREADS AND LOCKS: none; each load has its own state (struct parser),
 * so loads on different threads do not interfere.
 *
 * FAILURE: every problem is logged at error level as "FILE:LINE: message"
 * and parsing continues; config_load then returns -EINVAL.  An unreadable
 * file is "FILE: message" and -errno; allocation failure is -ENOMEM.
 *
 * NOT HERE: the values of the keys and the key table (config-values.c),
 * the TLS and access-control keys (config-tls.c), opening or creating
 * backing files and cache devices, binding sockets (the listen syntax is
 * checked by config-values.c, addresses are resolved by the server), the
 * command line.
 */
#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cleanup.h"
#include "compiler.h"
#include "config-file.h"
#include "config-internal.h"
#include "log.h"
#include "parse.h"

/* Longest accepted line, without its line ending. */
#define CONFIG_MAX_LINE_BYTES 16384

/* ---- messages ---- */

void
config_error (struct parser *p, int line, const char *fmt, ...)
{
  char msg[1024];
  const char *file;
  int file_line;
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (msg, sizeof msg, fmt, ap);
  va_end (ap);
  if (p->params)                /* the message names the parameter */
    log_error ("%s", msg);
  else {
    file = config_where (p, line, &file_line);
    log_error ("%s:%d: %s", file, file_line, msg);
  }
  p->nr_errors++;
}

int
config_no_memory (struct parser *p)
{
  p->oom = true;
  return -ENOMEM;
}

/* ---- small helpers ---- */

/* The first of '=', ':' or a comment character that follows whitespace
 * (libinih's rule, which the file format kept).  Returns a pointer to it
 * or to the final NUL.
 */
static const char *
find_separator (const char *s)
{
  bool was_space = false;

  for (; *s; s++) {
    if (*s == '=' || *s == ':')
      return s;
    if (was_space && is_comment_char (*s))
      return s;
    was_space = isspace ((unsigned char) *s);
  }
  return s;
}

static const char *
section_word (enum section_kind kind)
{
  switch (kind) {
  case SECTION_SERVER: return "server";
  case SECTION_CACHE: return "cache";
  case SECTION_EXPORT: return "export";
  case SECTION_NONE:
  case SECTION_SKIP:
    break;
  }
  return "?";
}

static const char *
current_section_name (struct parser *p)
{
  switch (p->cur) {
  case SECTION_CACHE: return p->cfg->caches[p->cur_index].name;
  case SECTION_EXPORT: return p->cfg->exports[p->cur_index].name;
  default: return NULL;
  }
}

/* ---- sections ---- */

int
config_add_cache (struct parser *p, char *name, int line)
{
  struct config *cfg = p->cfg;
  struct config_cache *caches;
  struct key_lines *keys;
  size_t n = cfg->nr_caches;

  if (n == p->caches_cap) {
    /* Geometric growth: a realloc per section is quadratic copying. */
    size_t cap = n ? 2 * n : 16;

    caches = realloc (cfg->caches, cap * sizeof *caches);
    if (caches == NULL)
      return config_no_memory (p);
    cfg->caches = caches;
    keys = realloc (p->cache_keys, cap * sizeof *keys);
    if (keys == NULL)
      return config_no_memory (p);
    p->cache_keys = keys;
    p->caches_cap = cap;
  }
  caches = cfg->caches;
  keys = p->cache_keys;

  memset (&caches[n], 0, sizeof caches[n]);
  memset (&keys[n], 0, sizeof keys[n]);
  caches[n].name = name;
  caches[n].direct = true;
  caches[n].node_cache_bytes = CONFIG_DEFAULT_NODE_CACHE_BYTES;
  caches[n].journal_delay_ms = CONFIG_DEFAULT_JOURNAL_DELAY_MS;
  caches[n].discard = NCACHE_DISCARD_AUTO;
  caches[n].line = line;
  cfg->nr_caches = n + 1;
  p->cur = SECTION_CACHE;
  p->cur_index = n;
  return 0;
}

int
config_add_export (struct parser *p, char *name, int line)
{
  struct config *cfg = p->cfg;
  struct config_export *exports;
  struct key_lines *keys;
  size_t n = cfg->nr_exports;

  if (n == p->exports_cap) {
    /* Geometric growth: a realloc per section is quadratic copying. */
    size_t cap = n ? 2 * n : 16;

    exports = realloc (cfg->exports, cap * sizeof *exports);
    if (exports == NULL)
      return config_no_memory (p);
    cfg->exports = exports;
    keys = realloc (p->export_keys, cap * sizeof *keys);
    if (keys == NULL)
      return config_no_memory (p);
    p->export_keys = keys;
    p->exports_cap = cap;
  }
  exports = cfg->exports;
  keys = p->export_keys;

  memset (&exports[n], 0, sizeof exports[n]);
  memset (&keys[n], 0, sizeof keys[n]);
  exports[n].name = name;
  exports[n].mode = NCACHE_MODE_NONE;
  exports[n].allow_unix = true;
  exports[n].backing_tls_verify = true;
  exports[n].writeback_percent = CONFIG_DEFAULT_WRITEBACK_PERCENT;
  exports[n].sequential_cutoff_bytes = CONFIG_DEFAULT_SEQUENTIAL_CUTOFF;
  exports[n].line = line;
  cfg->nr_exports = n + 1;
  p->cur = SECTION_EXPORT;
  p->cur_index = n;
  return 0;
}

/* s points at '['.  Sets p->cur (SECTION_SKIP after any error). */
static void
parse_header (struct parser *p, char *s)
{
  struct config *cfg = p->cfg;
  char *end, *rest, *word, *name;
  char ref[PATH_MAX + 32];
  long first;

  p->cur = SECTION_SKIP;
  end = strchr (s, ']');
  if (end == NULL) {
    config_error (p, p->lineno, "section header without ']'");
    return;
  }
  rest = skip_space (end + 1);
  if (*rest != '\0' && !is_comment_char (*rest)) {
    config_error (p, p->lineno, "unexpected text after section header: '%s'",
                  rest);
    return;
  }
  *end = '\0';
  word = skip_space (s + 1);
  trim_right (word);
  name = word;
  while (*name && !isspace ((unsigned char) *name))
    name++;
  if (*name) {
    *name = '\0';
    name = skip_space (name + 1);
  }

  if (strcmp (word, "server") == 0) {
    if (*name != '\0') {
      config_error (p, p->lineno, "[server] takes no name (found '%s')", name);
      return;
    }
    if (p->server_line != 0) {
      config_line_ref (p, p->server_line, p->lineno, ref, sizeof ref);
      config_error (p, p->lineno,
                    "duplicate section [server] (first at %s)", ref);
      return;
    }
    p->server_line = p->lineno;
    p->cur = SECTION_SERVER;
    return;
  }

  if (strcmp (word, "cache") != 0 && strcmp (word, "export") != 0) {
    config_error (p, p->lineno,
                  "unknown section [%s%s%s]: expected [server], "
                  "[cache NAME] or [export NAME]",
                  word, *name ? " " : "", name);
    return;
  }
  if (*name == '\0') {
    config_error (p, p->lineno, "[%s] needs a name: [%s NAME]", word, word);
    return;
  }
  if (strlen (name) > CONFIG_MAX_NAME_BYTES) {
    config_error (p, p->lineno, "%s name longer than %d bytes",
                  word, CONFIG_MAX_NAME_BYTES);
    return;
  }

  if (word[0] == 'c') {
    if ((first = name_index_find (&p->cache_names, name)) >= 0) {
      config_line_ref (p, cfg->caches[first].line, p->lineno, ref,
                       sizeof ref);
      config_error (p, p->lineno,
                    "duplicate section [cache %s] (first at %s)",
                    name, ref);
      return;
    }
  }
  else {
    if ((first = name_index_find (&p->export_names, name)) >= 0) {
      config_line_ref (p, cfg->exports[first].line, p->lineno, ref,
                       sizeof ref);
      config_error (p, p->lineno,
                    "duplicate section [export %s] (first at %s)",
                    name, ref);
      return;
    }
  }

  if ((name = strdup (name)) == NULL) {
    config_no_memory (p);
    return;
  }
  if ((word[0] == 'c' ? config_add_cache : config_add_export) (p, name,
                                                    p->lineno) < 0)
    free (name);
  else if (name_index_add (word[0] == 'c' ? &p->cache_names
                           : &p->export_names, name,
                           word[0] == 'c' ? cfg->nr_caches - 1
                           : cfg->nr_exports - 1) < 0)
    config_no_memory (p);
}

/* ---- reading lines ---- */

/* The next line of the configuration (every source in turn, see the file
 * comment), or NULL at the end or after a read error (p->read_errno).
 * Section headers and malformed lines are handled here; a
 * "key = value" line is left in p->line_text for split_key_line.
 */
static const char *
read_line (struct parser *p)
{
  const char *sep;
  ssize_t len;
  char *s;

  for (;;) {
    if (p->fp == NULL)
      return NULL;
    errno = 0;
    len = getline (&p->buf, &p->buf_bytes, p->fp);
    if (len >= 0)
      break;
    if (ferror (p->fp)) {
      p->read_errno = errno ? errno : EIO;
      return NULL;
    }
    if (!config_sources_next (p))  /* the end of a file: the next one */
      return NULL;
  }
  p->lineno++;
  p->line_text = NULL;
  s = p->buf;
  if (strlen (s) != (size_t) len) {
    config_error (p, p->lineno, "NUL byte in line");
    return "";
  }
  while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r'))
    s[--len] = '\0';
  if (p->lineno == p->sources[p->cur_source].first_line + 1
      && strncmp (s, "\xef\xbb\xbf", 3) == 0)
    s += 3;
  s = skip_space (s);

  if (strlen (s) > CONFIG_MAX_LINE_BYTES) {
    config_error (p, p->lineno, "line longer than %d bytes",
                  CONFIG_MAX_LINE_BYTES);
    s = (char *) "";
  }
  else if (*s == '[') {
    parse_header (p, s);
    if (p->cur == SECTION_SKIP)
      p->nr_bad_headers++;
    s = (char *) "";
  }
  else if (*s != '\0' && !is_comment_char (*s)) {
    sep = find_separator (s);
    if (*sep != '=') {
      config_error (p, p->lineno, "expected 'key = value' or '[section]'");
      s = (char *) "";
    }
    else
      p->line_text = s;         /* p->buf is untouched until the next line */
  }
  return s;
}

/* A "key = value" line, split as the file comment says, handed on. */
static void
split_key_line (struct parser *p, const char *line)
{
  AUTOFREE char *copy = strdup (line);
  bool was_space = false;
  char *key, *value, *s;

  if (copy == NULL) {
    config_no_memory (p);
    return;
  }
  /* read_line checked that the first separator is '='. */
  s = strchr (copy, '=');
  *s = '\0';
  key = copy;
  trim_right (key);
  value = s + 1;
  for (s = value; *s; s++) {
    if (was_space && is_comment_char (*s)) {
      *s = '\0';
      break;
    }
    was_space = isspace ((unsigned char) *s);
  }
  value = skip_space (value);
  trim_right (value);
  config_handle_key (p, key, value);
}

void
config_handle_key (struct parser *p, const char *key, const char *value)
{
  struct key_lines *lines;
  const char *name;
  void *obj;
  size_t i;

  switch (p->cur) {
  case SECTION_SKIP:
    return;
  case SECTION_NONE:
    config_error (p, p->lineno,
                  "'%s' outside any section: put it under [server], "
                  "[cache NAME] or [export NAME]", key);
    return;
  case SECTION_SERVER:
    obj = &p->cfg->server;
    lines = &p->server_keys;
    break;
  case SECTION_CACHE:
    obj = &p->cfg->caches[p->cur_index];
    lines = &p->cache_keys[p->cur_index];
    break;
  case SECTION_EXPORT:
    obj = &p->cfg->exports[p->cur_index];
    lines = &p->export_keys[p->cur_index];
    break;
  default:
    return;
  }

  for (i = 0; i < NR_KEYS; i++)
    if (config_key_defs[i].kind == p->cur
        && strcmp (config_key_defs[i].key, key) == 0)
      break;
  name = current_section_name (p);
  if (i == NR_KEYS) {
    config_error (p, p->lineno, "unknown key '%s' in [%s%s%s]",
                  key, section_word (p->cur), name ? " " : "",
                  name ? name : "");
    return;
  }
  if (!config_key_defs[i].repeatable && lines->line[i] != 0) {
    char ref[PATH_MAX + 32];

    config_line_ref (p, lines->line[i], p->lineno, ref, sizeof ref);
    config_error (p, p->lineno, "duplicate key '%s' (first set at %s)",
                  p->key_spelling ? p->key_spelling : key, ref);
    return;
  }
  if (lines->line[i] == 0)      /* a repeatable key keeps its first line */
    lines->line[i] = p->lineno;
  config_set_value (p, &config_key_defs[i], obj, value);
}


/* ---- checks that need the whole file ---- */

/* size, bucket_size and journal_size only matter when the device is
 * created or formatted: without create = yes they would be silently
 * ignored, so they are errors (at the key's line).
 */
static void
check_format_keys (struct parser *p, const struct config_cache *c,
                   const int *line)
{
  const struct {
    enum key_id id;
    const char *key;
    const char *what;           /* what create = yes does with it */
    uint64_t value;             /* 0 after a bad value (reported already) */
  } keys[] = {
    { KEY_cache_size, "size", "creates a new cache file", c->size_bytes },
    { KEY_cache_bucket_size, "bucket_size", "formats a new cache",
      c->bucket_bytes },
    { KEY_cache_journal_size, "journal_size", "formats a new cache",
      c->journal_bytes },
  };
  size_t i;

  if (c->create)
    return;
  for (i = 0; i < ARRAY_SIZE (keys); i++)
    if (line[keys[i].id] != 0 && keys[i].value != 0)
      config_error (p, line[keys[i].id],
                    "%s is used only when create = yes %s: set create = yes "
                    "in [cache %s] or remove %s",
                    keys[i].key, keys[i].what, c->name, keys[i].key);
}

/* writeback_percent, sequential_cutoff and flush_on_stop tune the cache
 * engine's background work; on an export without a cache they would be
 * silently ignored, so they are errors (at the key's line).
 */
static void
check_cache_only_keys (struct parser *p, const struct config_export *e,
                       const int *line)
{
  static const struct {
    enum key_id id;
    const char *key;
  } keys[] = {
    { KEY_export_writeback_percent, "writeback_percent" },
    { KEY_export_sequential_cutoff, "sequential_cutoff" },
    { KEY_export_promote_min, "promote_min" },
    { KEY_export_flush_on_stop, "flush_on_stop" },
  };
  size_t i;

  if (line[KEY_export_cache] != 0)
    return;
  for (i = 0; i < ARRAY_SIZE (keys); i++)
    if (line[keys[i].id] != 0)
      config_error (p, line[keys[i].id],
                    "%s is used only with a cache device: add cache = NAME "
                    "to [export %s] or remove %s",
                    keys[i].key, e->name, keys[i].key);
}

static void
check_config (struct parser *p)
{
  struct config *cfg = p->cfg;
  size_t i;

  for (i = 0; i < cfg->nr_caches; i++) {
    struct config_cache *c = &cfg->caches[i];
    const int *line = p->cache_keys[i].line;

    if (line[KEY_cache_path] == 0)
      config_error (p, c->line, "[cache %s] has no path = (required)",
                    c->name);
    check_format_keys (p, c, line);
    config_check_cache_size (p, c, line);
  }

  for (i = 0; i < cfg->nr_exports; i++) {
    struct config_export *e = &cfg->exports[i];
    const int *line = p->export_keys[i].line;

    if (line[KEY_export_backing] == 0)
      config_error (p, e->line, "[export %s] has no backing = (required)",
                    e->name);
    else if (e->backing != NULL)
      config_check_backing (p, e, line);

    if (e->cache != NULL && config_find_cache (cfg, e->cache) == NULL)
      config_error (p, line[KEY_export_cache],
                    "cache '%s': there is no [cache %s] section",
                    e->cache, e->cache);

    if (line[KEY_export_mode] == 0)
      e->mode = e->cache ? NCACHE_MODE_WRITETHROUGH : NCACHE_MODE_NONE;
    else if (line[KEY_export_cache] == 0 && e->mode != NCACHE_MODE_NONE)
      config_error (p, line[KEY_export_mode],
                    "mode = %s needs a cache device: add cache = NAME "
                    "or use mode = none", config_mode_name (e->mode));
    else if (e->cache != NULL && e->mode == NCACHE_MODE_NONE)
      config_error (p, line[KEY_export_mode],
                    "mode = none with cache = %s: use writeback, "
                    "writethrough or writearound, or remove cache",
                    e->cache);

    check_cache_only_keys (p, e, line);
  }

  config_check_identity (p);
  config_check_tls (p);
  if (p->server_checks)
    config_check_server_paths (p);

  if (cfg->server.default_export != NULL
      && config_find_export (cfg, cfg->server.default_export) == NULL)
    config_error (p, p->server_keys.line[KEY_server_default_export],
                  "default_export '%s': there is no [export %s] section",
                  cfg->server.default_export, cfg->server.default_export);

  /* After a bad header the export may be there, just misspelt. */
  if (cfg->nr_exports == 0 && p->nr_bad_headers == 0)
    config_error (p, 1, "no [export NAME] section: nothing to serve");
}

struct config *
config_new (void)
{
  struct config *cfg = calloc (1, sizeof *cfg);

  if (cfg == NULL)
    return NULL;
  cfg->server.workers = CONFIG_DEFAULT_WORKERS;
  cfg->server.log_target = LOG_TARGET_AUTO;
  cfg->server.log_level = LOG_LEVEL_INFO;
  cfg->server.tls = CONFIG_TLS_OFF;
  cfg->server.tls_min_version = 12;
  cfg->server.max_buffer_bytes = CONFIG_DEFAULT_MAX_BUFFER_BYTES;
  cfg->server.handshake_timeout_ms = CONFIG_DEFAULT_HANDSHAKE_TIMEOUT_MS;
  cfg->server.request_timeout_ms = CONFIG_DEFAULT_REQUEST_TIMEOUT_MS;
  cfg->server.drain_timeout_ms = CONFIG_DEFAULT_DRAIN_TIMEOUT_MS;
  return cfg;
}

static int
load (const char *path, bool server_checks, struct config **out)
{
  struct parser p = { .path = path, .server_checks = server_checks };
  struct config *cfg;
  int r;

  if ((cfg = config_new ()) == NULL)
    return -ENOMEM;
  p.cfg = cfg;
  if ((cfg->path = strdup (path)) == NULL) {
    r = -ENOMEM;
    goto out;
  }

  if ((r = config_sources_open (&p, path)) < 0)
    goto out;

  while (read_line (&p) != NULL)
    if (p.line_text != NULL)
      split_key_line (&p, p.line_text);
  if (p.read_errno != 0) {
    r = -p.read_errno;
    log_error ("%s:%d: read error: %s", p.path,
               p.lineno + 1 - p.sources[p.cur_source].first_line,
               strerror (-r));
    goto out;
  }
  if (!p.oom)
    check_config (&p);
  if (p.oom) {
    log_error ("%s: out of memory", path);
    r = -ENOMEM;
  }
  else if (p.nr_errors > 0)
    r = -EINVAL;
  else
    r = 0;

 out:
  config_sources_free (&p);
  free (p.buf);
  free (p.cache_keys);
  free (p.export_keys);
  name_index_free (&p.cache_names);
  name_index_free (&p.export_names);
  free (p.listen_lines);
  if (r < 0) {
    config_free (cfg);
    return r;
  }
  *out = cfg;
  return 0;
}

int
config_load (const char *path, struct config **out)
{
  return load (path, false, out);
}

int
config_load_server (const char *path, struct config **out)
{
  return load (path, true, out);
}

void
config_free (struct config *cfg)
{
  size_t i, j;

  if (cfg == NULL)
    return;
  for (i = 0; i < cfg->server.nr_listen; i++)
    free (cfg->server.listen[i]);
  free (cfg->server.listen);
  free (cfg->server.pidfile);
  free (cfg->server.user);
  free (cfg->server.group);
  free (cfg->server.control_socket);
  free (cfg->server.metrics_listen);
  free (cfg->server.default_export);
  free (cfg->server.tls_certificates);
  free (cfg->server.tls_cert_file);
  free (cfg->server.tls_key_file);
  free (cfg->server.tls_ca_file);
  free (cfg->server.tls_psk_file);
  free (cfg->server.tls_ciphers);
  free (cfg->server.tls_ciphersuites);
  for (i = 0; i < cfg->nr_caches; i++) {
    free (cfg->caches[i].name);
    free (cfg->caches[i].path);
  }
  free (cfg->caches);
  for (i = 0; i < cfg->nr_exports; i++) {
    free (cfg->exports[i].name);
    free (cfg->exports[i].backing);
    free (cfg->exports[i].backing_tls_certificates);
    free (cfg->exports[i].backing_tls_psk_file);
    free (cfg->exports[i].backing_tls_username);
    free (cfg->exports[i].ceph_conf);
    free (cfg->exports[i].ceph_id);
    free (cfg->exports[i].ceph_keyring);
    free (cfg->exports[i].ceph_key);
    free (cfg->exports[i].cache);
    free (cfg->exports[i].description);
    free (cfg->exports[i].allow);
    for (j = 0; j < cfg->exports[i].nr_allow_subjects; j++)
      free (cfg->exports[i].allow_subjects[j]);
    free (cfg->exports[i].allow_subjects);
  }
  free (cfg->exports);
  free (cfg->path);
  free (cfg);
}

const struct config_export *
config_find_export (const struct config *cfg, const char *name)
{
  size_t i;

  if (cfg == NULL || name == NULL)
    return NULL;
  if (*name == '\0') {
    if (cfg->server.default_export != NULL)
      name = cfg->server.default_export;
    else
      return cfg->nr_exports == 1 ? &cfg->exports[0] : NULL;
  }
  for (i = 0; i < cfg->nr_exports; i++)
    if (strcmp (cfg->exports[i].name, name) == 0)
      return &cfg->exports[i];
  return NULL;
}

/* The engine takes the bucket size as a uint32_t. */
_Static_assert (CONFIG_MAX_BUCKET_BYTES <= UINT32_MAX,
                "bucket_size must fit ncache_device_config.bucket_bytes");

void
config_cache_device_config (const struct config_cache *cc,
                            struct ncache_device_config *out)
{
  memset (out, 0, sizeof *out);
  out->name = cc->name;
  out->path = cc->path;
  out->size_bytes = cc->size_bytes;
  out->create = cc->create;
  out->direct = cc->direct;
  out->bucket_bytes = (uint32_t) cc->bucket_bytes;
  out->journal_bytes = cc->journal_bytes;
  out->node_cache_bytes = cc->node_cache_bytes;
  out->journal_delay_ms = cc->journal_delay_ms;
  out->discard = cc->discard;
}

void
config_export_tuning (const struct config_export *ce,
                      struct ncache_export_tuning *t)
{
  t->writeback_percent = ce->writeback_percent;
  t->sequential_cutoff_bytes = ce->sequential_cutoff_bytes;
  t->promote_min_bytes = ce->promote_min_bytes;
  t->flush_on_stop = ce->flush_on_stop;
}

const struct config_cache *
config_find_cache (const struct config *cfg, const char *name)
{
  size_t i;

  if (cfg == NULL || name == NULL)
    return NULL;
  for (i = 0; i < cfg->nr_caches; i++)
    if (strcmp (cfg->caches[i].name, name) == 0)
      return &cfg->caches[i];
  return NULL;
}
