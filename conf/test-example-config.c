/* SPDX-License-Identifier: BSD-3-Clause */
/* test-example-config.c — keeps the example config and the man page honest.
 *
 * WHAT: (1) the example config parses with config_load, as shipped and with
 * every commented-out setting uncommented (TLS switched on, so that every
 * TLS key is checked, and create = yes, which the format keys need); (2) every key the parser knows (config_known_keys)
 * appears in the example under the right section, and as an
 * "=item B<key>" under the right "=head2 [section]" of nbdcached.conf(5);
 * and nothing else does (no stale documentation); (3) the quickstart demo
 * config (demo.conf.in, substituted) parses; (4) the TLS example
 * (nbdcached-tls.conf.example) parses, as shipped and uncommented, with
 * its /etc/pki/nbdcached and /srv/nbd paths moved into the temporary
 * directory, where empty certificate files stand in for real ones (the
 * parser checks only that they are there).
 * WHY: documentation that drifts from the parser is worse than none; this
 * test fails as soon as a key is added, renamed or removed on one side only.
 * INVARIANTS: the example's commented-out settings are written "#key = value"
 * and commented-out headers "#[section NAME]" (no space after '#'); prose
 * comments start with "# ".  Files are copied into a private mkdtemp
 * directory first, because relative paths resolve against the config
 * file's directory; nothing is written anywhere else.
 * THREADS AND LOCKS: single-threaded.
 * FAILURE: cmocka assertions naming the missing key; main returns 0 or 1.
 * NOT HERE: the parser's own error handling (common/config/test-config*.c).
 */
#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config-file.h"
#include "log.h"

#define MAX_KEYS 256

static char *tmpdir;
static const char *srcdir;
static const char *top_srcdir;

/* "section.key" strings found in a document. */
struct key_set {
  char *keys[MAX_KEYS];
  size_t nr;
};

static void *xmalloc (size_t n) __attribute__ ((__returns_nonnull__));

static void *
xmalloc (size_t n)
{
  void *p = malloc (n);

  if (p == NULL)
    abort ();
  return p;
}

static char *
join (const char *a, const char *b)
{
  char *s = xmalloc (strlen (a) + strlen (b) + 2);

  sprintf (s, "%s/%s", a, b);
  return s;
}

static void
log_to_cmocka (enum log_level level, const char *msg)
{
  (void) level;
  print_message ("config: %s\n", msg);
}

/* The whole file, NUL-terminated (caller frees). */
static char *
read_file (const char *path)
{
  FILE *fp = fopen (path, "r");
  char *buf;
  long n;

  if (fp == NULL)
    fail_msg ("cannot open %s: %s", path, strerror (errno));
  assert_int_equal (fseek (fp, 0, SEEK_END), 0);
  n = ftell (fp);
  assert_true (n >= 0);
  rewind (fp);
  buf = xmalloc ((size_t) n + 1);
  assert_int_equal (fread (buf, 1, (size_t) n, fp), (size_t) n);
  buf[n] = '\0';
  fclose (fp);
  return buf;
}

static char *
write_file (const char *name, const char *text)
{
  char *path = join (tmpdir, name);
  FILE *fp = fopen (path, "w");

  assert_non_null (fp);
  assert_int_equal (fwrite (text, 1, strlen (text), fp), strlen (text));
  assert_int_equal (fclose (fp), 0);
  return path;
}

static char *
src_path (const char *dir, const char *name)
{
  return join (dir, name);
}

/* text with every occurrence of from replaced by to (caller frees). */
static char *
replace_all (const char *text, const char *from, const char *to)
{
  size_t n = 0, lf = strlen (from), lt = strlen (to);
  const char *s;
  char *out, *o;

  for (s = strstr (text, from); s; s = strstr (s + lf, from))
    n++;
  out = o = xmalloc (strlen (text) + n * lt + 1);
  while ((s = strstr (text, from)) != NULL) {
    memcpy (o, text, (size_t) (s - text));
    o += s - text;
    memcpy (o, to, lt);
    o += lt;
    text = s + lf;
  }
  strcpy (o, text);
  return out;
}

/* A lower-case identifier at s followed by " = ": its length, else 0. */
static size_t
setting_key_len (const char *s)
{
  size_t n = 0;

  while (islower ((unsigned char) s[n]) || s[n] == '_')
    n++;
  if (n > 0 && strncmp (s + n, " = ", 3) == 0)
    return n;
  return 0;
}

/* "[word ...]" at s: the section word ("server", "cache", "export"),
 * copied into word; false if s is not a header.
 */
static bool
header_word (const char *s, char *word, size_t word_size)
{
  size_t n = 0;
  const char *end;

  if (*s != '[')
    return false;
  end = strchr (s, ']');
  if (end == NULL)
    return false;
  for (s++; s < end && islower ((unsigned char) *s) && n + 1 < word_size; s++)
    word[n++] = *s;
  word[n] = '\0';
  return n > 0;
}

static void
key_set_add (struct key_set *set, const char *section, const char *key,
             size_t key_len)
{
  char *k = xmalloc (strlen (section) + key_len + 2);

  sprintf (k, "%s.%.*s", section, (int) key_len, key);
  assert_true (set->nr < MAX_KEYS);
  set->keys[set->nr++] = k;
}

static bool
key_set_has (const struct key_set *set, const char *key)
{
  size_t i;

  for (i = 0; i < set->nr; i++)
    if (strcmp (set->keys[i], key) == 0)
      return true;
  return false;
}

static void
key_set_free (struct key_set *set)
{
  size_t i;

  for (i = 0; i < set->nr; i++)
    free (set->keys[i]);
  set->nr = 0;
}

static bool
is_known_key (const char *key)
{
  size_t i;

  for (i = 0; config_known_keys[i] != NULL; i++)
    if (strcmp (config_known_keys[i], key) == 0)
      return true;
  return false;
}

/* Settings of the example, active or commented out ("#key = value"). */
static void
scan_example (const char *text, struct key_set *set)
{
  char section[32] = "";
  const char *line, *next;

  for (line = text; *line; line = next) {
    const char *s = line;
    size_t n;

    next = strchr (line, '\n');
    next = next ? next + 1 : line + strlen (line);
    if (*s == '#')
      s++;
    if (header_word (s, section, sizeof section))
      continue;
    if ((n = setting_key_len (s)) > 0) {
      if (section[0] == '\0')
        fail_msg ("example: setting outside a section: %.*s",
                  (int) (next - line), line);
      key_set_add (set, section, s, n);
    }
  }
}

/* "=item B<key>" entries of the outermost list under "=head2 [section ...]"
 * headings (items of nested lists, such as the modes, are not keys).
 */
static void
scan_pod (const char *text, struct key_set *set)
{
  char section[32] = "";
  const char *line, *next;
  int depth = 0;

  for (line = text; *line; line = next) {
    next = strchr (line, '\n');
    next = next ? next + 1 : line + strlen (line);
    if (strncmp (line, "=head", 5) == 0) {
      section[0] = '\0';
      depth = 0;
      if (strncmp (line, "=head2 ", 7) == 0)
        header_word (line + 7, section, sizeof section);
    }
    else if (strncmp (line, "=over", 5) == 0)
      depth++;
    else if (strncmp (line, "=back", 5) == 0)
      depth--;
    else if (strncmp (line, "=item B<", 8) == 0 && section[0] != '\0'
             && depth == 1) {
      const char *k = line + 8;
      size_t n = 0;

      while (islower ((unsigned char) k[n]) || k[n] == '_')
        n++;
      if (n > 0 && k[n] == '>')
        key_set_add (set, section, k, n);
    }
  }
}

/* Every commented-out setting and header uncommented. */
static char *
uncomment (const char *text)
{
  char *out = xmalloc (strlen (text) + 1);
  const char *line, *next;
  char *o = out;
  char word[32];

  for (line = text; *line; line = next) {
    next = strchr (line, '\n');
    next = next ? next + 1 : line + strlen (line);
    if (line[0] == '#'
        && (setting_key_len (line + 1) > 0
            || header_word (line + 1, word, sizeof word)))
      line++;
    memcpy (o, line, (size_t) (next - line));
    o += next - line;
  }
  *o = '\0';
  return out;
}

static struct config *
load_text (const char *name, const char *text)
{
  char *path = write_file (name, text);
  struct config *cfg = NULL;
  int r;

  r = config_load (path, &cfg);
  assert_int_equal (unlink (path), 0);
  free (path);
  assert_int_equal (r, 0);
  assert_non_null (cfg);
  return cfg;
}

/* The files an example names under /etc/pki/nbdcached, made (empty) in
 * tmpdir/pki, and other files the examples need in tmpdir.
 */
static const char *const pki_files[] = {
  "pki/ca-cert.pem", "pki/server-cert.pem", "pki/server-key.pem",
  "pki/keys.psk", NULL
};

/* The files the RBD exports name under /etc/ceph, made (empty) in tmpdir. */
static const char *const ceph_files[] = {
  "ceph.conf", "ceph.client.nbdcache.keyring", NULL
};

static void
make_fixtures (const char *const *extra)
{
  char *dir = join (tmpdir, "pki");
  size_t i;

  assert_int_equal (mkdir (dir, 0700), 0);
  free (dir);
  for (i = 0; pki_files[i] != NULL; i++)
    free (write_file (pki_files[i], ""));
  for (i = 0; extra && extra[i] != NULL; i++)
    free (write_file (extra[i], ""));
}

static void
remove_fixtures (const char *const *extra)
{
  char *path;
  size_t i;

  for (i = 0; pki_files[i] != NULL; i++) {
    path = join (tmpdir, pki_files[i]);
    assert_int_equal (unlink (path), 0);
    free (path);
  }
  for (i = 0; extra && extra[i] != NULL; i++) {
    path = join (tmpdir, extra[i]);
    assert_int_equal (unlink (path), 0);
    free (path);
  }
  path = join (tmpdir, "pki");
  assert_int_equal (rmdir (path), 0);
  free (path);
}

/* text with /etc/pki/nbdcached, /etc/ceph and /srv/nbd moved into tmpdir,
 * and with
 * every "from" replaced by "to" (caller frees).
 */
static char *
relocate (const char *text, const char *from, const char *to)
{
  char *pki = join (tmpdir, "pki");
  char *t1 = replace_all (text, "/etc/pki/nbdcached", pki);
  char *t2 = replace_all (t1, "/srv/nbd", tmpdir);
  char *t2b = replace_all (t2, "/etc/ceph", tmpdir);
  char *t3 = from ? replace_all (t2b, from, to) : strdup (t2b);

  assert_non_null (t3);
  free (pki);
  free (t1);
  free (t2);
  free (t2b);
  return t3;
}

/* Asserts that field is tmpdir/name. */
static void
assert_in_tmpdir (const char *field, const char *name)
{
  char *want = join (tmpdir, name);

  assert_non_null (field);
  assert_string_equal (field, want);
  free (want);
}

/* ---- tests ---- */

static void
test_example_config_parses (void **state)
{
  char *path = src_path (srcdir, "nbdcached.conf.example");
  char *text = read_file (path);
  struct config *cfg;
  char *want;

  (void) state;
  cfg = load_text ("nbdcached.conf", text);
  assert_int_equal (cfg->nr_exports, 1);
  assert_string_equal (cfg->exports[0].name, "demo");
  want = join (tmpdir, "demo.img");
  assert_string_equal (cfg->exports[0].backing, want);
  free (want);
  assert_ptr_equal (config_find_export (cfg, ""), &cfg->exports[0]);
  config_free (cfg);
  /* Parsing created nothing next to the copy. */
  want = join (tmpdir, "demo.img");
  assert_int_equal (access (want, F_OK), -1);
  free (want);
  free (text);
  free (path);
}

static void
test_example_config_uncommented_parses (void **state)
{
  char *path = src_path (srcdir, "nbdcached.conf.example");
  char *text = read_file (path);
  char *all = uncomment (text);
  char *t1, *t2, *t3;
  struct config *cfg;

  (void) state;
  /* Uncommenting must have changed something, or the convention broke. */
  assert_string_not_equal (all, text);
  /* allow_subjects needs verified client certificates: switch TLS on, as
   * the example's header says, which also makes the parser check every
   * TLS key.  size, bucket_size and journal_size need create = yes.
   */
  assert_non_null (strstr (all, "\ntls = off\n"));
  assert_non_null (strstr (all, "\ntls_verify_peer = no\n"));
  assert_non_null (strstr (all, "\ncreate = no\n"));
  t1 = relocate (all, "\ntls = off\n", "\ntls = on\n");
  t2 = replace_all (t1, "\ntls_verify_peer = no\n", "\ntls_verify_peer = yes\n");
  t3 = replace_all (t2, "\ncreate = no\n", "\ncreate = yes\n");
  make_fixtures (ceph_files);
  cfg = load_text ("uncommented.conf", t3);
  remove_fixtures (ceph_files);
  assert_int_equal (cfg->nr_caches, 1);
  assert_true (cfg->caches[0].create);
  assert_true (cfg->caches[0].size_bytes > 0);
  assert_true (cfg->caches[0].bucket_bytes > 0);
  assert_true (cfg->caches[0].journal_bytes > 0);
  assert_int_equal (cfg->nr_exports, 5);
  assert_non_null (cfg->exports[0].cache);
  /* The RBD exports: a keyring, and a key. */
  assert_string_equal (cfg->exports[3].backing, "rbd:rbd/disk");
  assert_in_tmpdir (cfg->exports[3].ceph_conf, "ceph.conf");
  assert_string_equal (cfg->exports[3].ceph_id, "nbdcache");
  assert_in_tmpdir (cfg->exports[3].ceph_keyring,
                    "ceph.client.nbdcache.keyring");
  assert_non_null (cfg->exports[4].ceph_key);
  /* The remote exports: X.509 and PSK. */
  assert_string_equal (cfg->exports[1].name, "remote");
  assert_int_equal (cfg->exports[1].backing_connections, 4);
  assert_int_equal (cfg->exports[1].backing_timeout_ms, 30000);
  assert_in_tmpdir (cfg->exports[1].backing_tls_certificates, "pki");
  assert_true (cfg->exports[1].backing_tls_verify);
  assert_in_tmpdir (cfg->exports[2].backing_tls_psk_file, "pki/keys.psk");
  assert_string_equal (cfg->exports[2].backing_tls_username, "nbdcache");
  assert_true (cfg->server.nr_listen >= 2);
  assert_non_null (cfg->server.default_export);
  assert_int_equal (cfg->server.tls, CONFIG_TLS_ON);
  assert_true (cfg->server.tls_verify_peer);
  assert_in_tmpdir (cfg->server.tls_certificates, "pki");
  assert_in_tmpdir (cfg->server.tls_cert_file, "pki/server-cert.pem");
  assert_in_tmpdir (cfg->server.tls_key_file, "pki/server-key.pem");
  assert_in_tmpdir (cfg->server.tls_ca_file, "pki/ca-cert.pem");
  assert_in_tmpdir (cfg->server.tls_psk_file, "pki/keys.psk");
  assert_non_null (cfg->server.tls_ciphers);
  assert_non_null (cfg->server.tls_ciphersuites);
  assert_int_equal (cfg->server.tls_min_version, 12);
  assert_false (cfg->exports[0].tls_required);
  assert_true (cfg->exports[0].nr_allow > 0);
  assert_true (cfg->exports[0].allow_unix);
  assert_true (cfg->exports[0].nr_allow_subjects > 0);
  config_free (cfg);
  free (t3);
  free (t2);
  free (t1);
  free (all);
  free (text);
  free (path);
}

static void
check_documents_every_key (const char *what, struct key_set *found)
{
  size_t i;
  bool ok = true;

  for (i = 0; config_known_keys[i] != NULL; i++) {
    if (!key_set_has (found, config_known_keys[i])) {
      print_error ("%s does not document the key %s\n",
                   what, config_known_keys[i]);
      ok = false;
    }
  }
  for (i = 0; i < found->nr; i++) {
    if (!is_known_key (found->keys[i])) {
      print_error ("%s documents %s, which the parser does not know\n",
                   what, found->keys[i]);
      ok = false;
    }
  }
  assert_true (ok);
  assert_true (found->nr > 0);
}

static void
test_example_config_documents_every_key (void **state)
{
  char *path = src_path (srcdir, "nbdcached.conf.example");
  char *text = read_file (path);
  struct key_set found = { .nr = 0 };

  (void) state;
  scan_example (text, &found);
  check_documents_every_key (path, &found);
  key_set_free (&found);
  free (text);
  free (path);
}

static void
test_example_config_man_documents_every_key (void **state)
{
  char *path = src_path (top_srcdir, "man/nbdcached.conf.5.pod");
  char *text = read_file (path);
  struct key_set found = { .nr = 0 };

  (void) state;
  scan_pod (text, &found);
  check_documents_every_key (path, &found);
  key_set_free (&found);
  free (text);
  free (path);
}

static void
test_example_config_demo_parses (void **state)
{
  char *path = src_path (srcdir, "demo.conf.in");
  char *text = read_file (path);
  char *t1 = replace_all (text, "@STATEDIR@", tmpdir);
  char *t2 = replace_all (t1, "@PORT@", "10809");
  struct config *cfg;

  (void) state;
  assert_null (strchr (t2, '@'));
  cfg = load_text ("demo.conf", t2);
  assert_non_null (config_find_export (cfg, ""));
  config_free (cfg);
  free (t2);
  free (t1);
  free (text);
  free (path);
}

static void
test_example_config_tls_parses (void **state)
{
  static const char *const images[] = { "public.img", NULL };
  char *path = src_path (srcdir, "nbdcached-tls.conf.example");
  char *text = read_file (path);
  char *moved = relocate (text, NULL, NULL);
  char *all = uncomment (moved);
  const struct config_export *secure, *pub;
  struct config *cfg;

  (void) state;
  make_fixtures (images);
  cfg = load_text ("nbdcached-tls.conf", moved);
  assert_int_equal (cfg->server.tls, CONFIG_TLS_ON);
  assert_in_tmpdir (cfg->server.tls_cert_file, "pki/server-cert.pem");
  assert_in_tmpdir (cfg->server.tls_key_file, "pki/server-key.pem");
  assert_in_tmpdir (cfg->server.tls_ca_file, "pki/ca-cert.pem");
  assert_in_tmpdir (cfg->server.tls_psk_file, "pki/keys.psk");
  assert_true (cfg->server.tls_verify_peer);
  assert_int_equal (cfg->server.tls_min_version, 12);
  assert_int_equal (cfg->nr_exports, 2);
  secure = config_find_export (cfg, "secure");
  pub = config_find_export (cfg, "public");
  assert_non_null (secure);
  assert_non_null (pub);
  assert_true (secure->tls_required);
  assert_int_equal (secure->nr_allow, 0);
  assert_int_equal (secure->nr_allow_subjects, 0);
  assert_false (pub->tls_required);
  assert_true (pub->readonly);
  assert_int_equal (pub->nr_allow, 4);
  assert_true (pub->allow_unix);
  config_free (cfg);

  /* Its commented-out settings are valid too. */
  assert_string_not_equal (all, moved);
  cfg = load_text ("nbdcached-tls-uncommented.conf", all);
  assert_int_equal (cfg->server.tls_min_version, 13);
  secure = config_find_export (cfg, "secure");
  assert_non_null (secure);
  assert_int_equal (secure->nr_allow_subjects, 2);
  config_free (cfg);
  remove_fixtures (images);
  free (all);
  free (moved);
  free (text);
  free (path);
}

/* The scanners themselves must be able to miss a key. */
static void
test_example_config_scanners_see_omissions (void **state)
{
  struct key_set found = { .nr = 0 };

  (void) state;
  scan_example ("[server]\n#workers = 8\n# listen = x\n"
                "#[export e]\nbacking = b\n", &found);
  assert_int_equal (found.nr, 2);
  assert_true (key_set_has (&found, "server.workers"));
  assert_false (key_set_has (&found, "server.listen"));
  assert_true (key_set_has (&found, "export.backing"));
  key_set_free (&found);

  scan_pod ("=head2 [server]\n\n=over 4\n\n=item B<workers> = N\n\n"
            "=over 4\n\n=item B<nested>\n\n=back\n\n=back\n\n"
            "=head1 OTHER\n\n=over 4\n\n=item B<listen>\n\n=back\n\n"
            "=head2 [cache NAME]\n\n=over 4\n\n=item B<path> = PATH\n\n"
            "=back\n", &found);
  assert_int_equal (found.nr, 2);
  assert_true (key_set_has (&found, "server.workers"));
  assert_true (key_set_has (&found, "cache.path"));
  key_set_free (&found);
}

static int
group_setup (void **state)
{
  const char *base = getenv ("TMPDIR");
  char *tmpl;

  (void) state;
  srcdir = getenv ("srcdir");
  top_srcdir = getenv ("top_srcdir");
  if (srcdir == NULL)
    srcdir = ".";
  if (top_srcdir == NULL)
    top_srcdir = "..";
  if (base == NULL || *base == '\0')
    base = "/tmp";
  tmpl = join (base, "test-example-config.XXXXXX");
  if (mkdtemp (tmpl) == NULL)
    return -1;
  tmpdir = realpath (tmpl, NULL);
  free (tmpl);
  if (tmpdir == NULL)
    return -1;
  log_set_sink (log_to_cmocka);
  return 0;
}

static int
group_teardown (void **state)
{
  (void) state;
  log_set_sink (NULL);
  if (rmdir (tmpdir) != 0)
    print_message ("cannot remove %s: %s\n", tmpdir, strerror (errno));
  free (tmpdir);
  return 0;
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_example_config_scanners_see_omissions),
    cmocka_unit_test (test_example_config_parses),
    cmocka_unit_test (test_example_config_uncommented_parses),
    cmocka_unit_test (test_example_config_documents_every_key),
    cmocka_unit_test (test_example_config_man_documents_every_key),
    cmocka_unit_test (test_example_config_demo_parses),
    cmocka_unit_test (test_example_config_tls_parses),
  };

  return cmocka_run_group_tests (tests, group_setup, group_teardown) ? 1 : 0;
}
