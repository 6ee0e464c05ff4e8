/* SPDX-License-Identifier: BSD-3-Clause */
/* config-test.c — the harness shared by the config parser tests.
 *
 * WHAT: see config-test.h: the private directory and its fixtures,
 * log capture, and the good-file / bad-file loaders.
 * WHY: one harness for every test-config* program; compiled into each
 * of them, never into libconfig.
 * INVARIANTS: the fixtures are created in list order and removed in
 * reverse; log messages are captured with log_set_sink, so nothing reaches
 * stderr unless a test fails.
 * THREADS AND LOCKS: single-threaded.
 * FAILURE: cmocka assertions; a setup failure fails the whole group.
 * NOT HERE: the tests themselves (test-config*.c).
 */
#include <config.h>

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
#include "config-test.h"

#define ARRAY_LEN(a) (sizeof (a) / sizeof (a)[0])

char *tmpdir;
char *messages[MAX_MESSAGES];
size_t nr_messages;

static void
capture (enum log_level level, const char *msg)
{
  size_t n;

  (void) level;
  if (nr_messages == MAX_MESSAGES)
    return;
  messages[nr_messages] = strdup (msg);
  assert_non_null (messages[nr_messages]);
  n = strlen (messages[nr_messages]);
  if (n > 0 && messages[nr_messages][n - 1] == '\n')
    messages[nr_messages][n - 1] = '\0';
  nr_messages++;
}

void
clear_messages (void)
{
  size_t i;

  for (i = 0; i < nr_messages; i++)
    free (messages[i]);
  nr_messages = 0;
}

void
print_messages (void)
{
  size_t i;

  for (i = 0; i < nr_messages; i++)
    print_message ("logged: %s\n", messages[i]);
}

void *
xmalloc (size_t n)
{
  void *p = malloc (n);

  if (p == NULL)
    abort ();
  return p;
}

char *
join (const char *a, const char *b)
{
  char *s = xmalloc (strlen (a) + strlen (b) + 2);

  assert_non_null (s);
  sprintf (s, "%s/%s", a, b);
  return s;
}

char *
write_file (const char *name, const char *text)
{
  char *path = join (tmpdir, name);
  FILE *fp = fopen (path, "w");

  assert_non_null (fp);
  assert_int_equal (fwrite (text, 1, strlen (text), fp), strlen (text));
  assert_int_equal (fclose (fp), 0);
  return path;
}

struct config *
load_good_named (const char *name, const char *text)
{
  char *path = write_file (name, text);
  struct config *cfg = NULL;
  int r;

  clear_messages ();
  r = config_load (path, &cfg);
  if (r != 0)
    print_messages ();
  assert_int_equal (r, 0);
  assert_int_equal (nr_messages, 0);
  assert_non_null (cfg);
  assert_string_equal (cfg->path, path);
  free (path);
  return cfg;
}

struct config *
load_good (const char *text)
{
  return load_good_named ("good.conf", text);
}

void
load_bad_n (const char *text, size_t n, const char *const *expected)
{
  char *path = write_file ("bad.conf", text);
  struct config *cfg = NULL;
  size_t i;
  int r;

  clear_messages ();
  r = config_load (path, &cfg);
  if (r != -EINVAL || nr_messages != n)
    print_messages ();
  assert_int_equal (r, -EINVAL);
  assert_null (cfg);
  assert_int_equal (nr_messages, n);
  for (i = 0; i < n; i++) {
    char *want = xmalloc (strlen (path) + strlen (expected[i]) + 2);

    assert_non_null (want);
    sprintf (want, "%s:%s", path, expected[i]);
    assert_string_equal (messages[i], want);
    free (want);
  }
  free (path);
}

void
load_bad (const char *text, const char *expected)
{
  load_bad_n (text, 1, &expected);
}

/* Empty files and directories that group_setup creates under tmpdir, in
 * creation order (teardown removes them in reverse).  A name ending in
 * '/' is a directory.
 */
static const char *const fixtures[] = {
  "disk.img", "disk2.img", "disk3.img", "disk4.img", "disk5.img", "sub/",
  "pki/", "pki/ca-cert.pem", "pki/server-cert.pem", "pki/server-key.pem",
  "pki-noca/", "pki-noca/server-cert.pem", "pki-noca/server-key.pem",
  "pki-nokey/", "pki-nokey/server-cert.pem",
  "cert.pem", "key.pem", "ca.pem", "keys.psk",
  NULL
};

static int
make_fixture (const char *name)
{
  char *p = join (tmpdir, name);
  size_t n = strlen (p);
  int r = 0;

  if (p[n - 1] == '/') {
    p[n - 1] = '\0';
    r = mkdir (p, 0700);
  }
  else {
    FILE *fp = fopen (p, "w");

    if (fp == NULL || fclose (fp) != 0)
      r = -1;
  }
  free (p);
  return r;
}

int
group_setup (void **state)
{
  const char *base = getenv ("TMPDIR");
  char *tmpl, *real;
  size_t i;

  (void) state;
  if (base == NULL || *base == '\0')
    base = "/tmp";
  tmpl = join (base, "test-config.XXXXXX");
  if (mkdtemp (tmpl) == NULL)
    return -1;
  real = realpath (tmpl, NULL);
  free (tmpl);
  if (real == NULL)
    return -1;
  tmpdir = real;

  for (i = 0; fixtures[i] != NULL; i++)
    if (make_fixture (fixtures[i]) != 0)
      return -1;

  log_set_sink (capture);
  return 0;
}

int
group_teardown (void **state)
{
  static const char *const names[] = {
    "good.conf", "bad.conf", "sub/nested.conf", NULL
  };
  size_t i;

  (void) state;
  clear_messages ();
  log_set_sink (NULL);
  for (i = 0; names[i]; i++) {
    char *p = join (tmpdir, names[i]);

    if (remove (p) != 0 && errno != ENOENT)
      print_message ("cannot remove %s\n", p);
    free (p);
  }
  for (i = ARRAY_LEN (fixtures) - 1; i-- > 0;) {
    char *p = join (tmpdir, fixtures[i]);

    if (remove (p) != 0 && errno != ENOENT)
      print_message ("cannot remove %s\n", p);
    free (p);
  }
  if (rmdir (tmpdir) != 0)
    print_message ("cannot remove %s (files left?)\n", tmpdir);
  free (tmpdir);
  return 0;
}
