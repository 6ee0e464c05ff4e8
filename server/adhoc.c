/* SPDX-License-Identifier: BSD-3-Clause */
/* adhoc.c — the ad-hoc mode: one export from the command line, no config
 * file (`nbdcached [-r] [--cache PATH [--cache-size SIZE]] [--mode MODE]
 * BACKING`), like `qemu-nbd FILE` and `nbdkit file FILE`.
 *
 * WHAT: writes the export the options describe as a configuration text
 * ([server] tls keys and default_export; [cache adhoc] when --cache;
 * [export NAME]) into a private temporary file, loads it with the same
 * loader as a config file (config_load_server), and removes it.
 * WHY: every rule a config file obeys (the CONFIG_KEYS table, the
 * cross-key checks, the paths check) applies unchanged; there is no
 * second validation to drift from the first.  When the loader refuses,
 * the generated text is printed with line numbers, so its "FILE:LINE"
 * messages point at something the user can see.
 * INVARIANTS: every path handed over is absolute (the loader resolves
 * relative paths against the file's directory, here a temporary one);
 * a backing that is a URI (contains "://") or rbd:POOL/IMAGE is passed as
 * written.  A value that a config line cannot carry (a newline, leading
 * or trailing blanks, a blank followed by # or ;) is refused: it would be
 * read back as something else.
 * THREADS AND LOCKS: main thread, before anything else runs.
 * FAILURE: -EINVAL after the loader's messages (a config error), -errno
 * for the temporary file (logged); *out untouched.
 * NOT HERE: option parsing (main.c), listening (-l/-U/-p go through
 * main.c's listen list, as with a config file).
 */
#include <config.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adhoc.h"
#include "log.h"

#define ADHOC_CACHE_NAME "adhoc"

/* Can `value` be written as "key = value" and read back unchanged? */
static bool
representable (const char *value)
{
  size_t n = strlen (value);
  const char *s;

  if (n == 0 || strchr (value, '\n') || strchr (value, '\r') ||
      value[0] == ' ' || value[0] == '\t' ||
      value[n - 1] == ' ' || value[n - 1] == '\t')
    return false;
  for (s = value + 1; *s; s++)
    if ((*s == '#' || *s == ';') && (s[-1] == ' ' || s[-1] == '\t'))
      return false;
  return true;
}

static int
check_value (const char *option, const char *value)
{
  if (representable (value))
    return 0;
  log_error ("%s '%s': empty, or a newline, leading or trailing blanks, or "
             "a blank before # or ; (which a configuration line cannot "
             "hold)", option, value);
  return -EINVAL;
}

/* An absolute form of a local path (malloc'd), or NULL (errno set). */
static char *
absolute (const char *path)
{
  char cwd[PATH_MAX], *out;

  if (path[0] == '/')
    return strdup (path);
  if (getcwd (cwd, sizeof cwd) == NULL)
    return NULL;
  if (asprintf (&out, "%s/%s", cwd, path) == -1)
    return NULL;
  return out;
}

/* A URI (file:///PATH, nbd://…) or rbd:POOL/IMAGE: passed as written. */
static bool
is_uri (const char *backing)
{
  return strstr (backing, "://") != NULL || strncmp (backing, "rbd:", 4) == 0;
}

/* "key = PATH" with PATH made absolute; 0 or -errno. */
static int
put_path (FILE *fp, const char *key, const char *path)
{
  char *abs = absolute (path);

  if (abs == NULL)
    return -errno;
  fprintf (fp, "%s = %s\n", key, abs);
  free (abs);
  return 0;
}

static int
write_text (const struct adhoc *a, FILE *fp)
{
  const char *name = a->export_name ? a->export_name : ADHOC_EXPORT_NAME;
  int r = 0;

  fprintf (fp, "[server]\ndefault_export = %s\n", name);
  if (a->tls)
    fprintf (fp, "tls = %s\n", a->tls);
  if (a->tls_certificates)
    r = r ? r : put_path (fp, "tls_certificates", a->tls_certificates);
  if (a->tls_psk_file)
    r = r ? r : put_path (fp, "tls_psk_file", a->tls_psk_file);
  if (a->tls_verify_peer)
    fprintf (fp, "tls_verify_peer = yes\n");
  if (a->cache_path) {
    fprintf (fp, "\n[cache " ADHOC_CACHE_NAME "]\n");
    r = r ? r : put_path (fp, "path", a->cache_path);
    if (a->cache_size)
      fprintf (fp, "create = yes\nsize = %s\n", a->cache_size);
  }
  fprintf (fp, "\n[export %s]\n", name);
  if (is_uri (a->backing))
    fprintf (fp, "backing = %s\n", a->backing);
  else
    r = r ? r : put_path (fp, "backing", a->backing);
  if (a->cache_path)
    fprintf (fp, "cache = " ADHOC_CACHE_NAME "\n");
  if (a->mode)
    fprintf (fp, "mode = %s\n", a->mode);
  if (a->readonly)
    fprintf (fp, "readonly = yes\n");
  return r;
}

/* The generated text, numbered, after the loader's FILE:LINE messages. */
static void
show_text (const char *path)
{
  FILE *fp = fopen (path, "r");
  char line[8192];
  int n = 0;

  if (fp == NULL)
    return;
  fprintf (stderr, "nbdcached: the configuration built from the command "
           "line (%s):\n", path);
  while (fgets (line, sizeof line, fp))
    fprintf (stderr, "%4d  %s", ++n, line);
  fclose (fp);
}

int
adhoc_config_load (const struct adhoc *a, struct config **out)
{
  const char *values[] = {
    a->backing, a->export_name, a->cache_path, a->cache_size, a->mode,
    a->tls, a->tls_certificates, a->tls_psk_file,
  };
  const char *names[] = {
    "BACKING", "--export-name", "--cache", "--cache-size", "--mode",
    "--tls", "--tls-certificates", "--tls-psk",
  };
  const char *tmpdir = getenv ("TMPDIR");
  char dir[PATH_MAX], path[PATH_MAX + 32];
  FILE *fp;
  size_t i;
  int r;

  for (i = 0; i < sizeof values / sizeof values[0]; i++)
    if (values[i] && check_value (names[i], values[i]) < 0)
      return -EINVAL;

  if (tmpdir == NULL || tmpdir[0] != '/')
    tmpdir = "/tmp";
  if ((size_t) snprintf (dir, sizeof dir, "%s/nbdcached-adhoc.XXXXXX",
                         tmpdir) >= sizeof dir || mkdtemp (dir) == NULL) {
    r = -errno;
    log_error ("ad-hoc mode: cannot create a temporary directory in %s: %m",
               tmpdir);
    return r ? r : -ENAMETOOLONG;
  }
  snprintf (path, sizeof path, "%s/command-line.conf", dir);
  if ((fp = fopen (path, "w")) == NULL) {
    r = -errno;
    log_error ("ad-hoc mode: %s: %m", path);
    rmdir (dir);
    return r;
  }
  r = write_text (a, fp);
  if (fclose (fp) == EOF && r == 0)
    r = -errno;
  if (r < 0)
    log_error ("ad-hoc mode: writing %s: %s", path, strerror (-r));
  else if ((r = config_load_server (path, out)) == -EINVAL)
    show_text (path);
  unlink (path);
  rmdir (dir);
  return r;
}
