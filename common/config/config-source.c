/* SPDX-License-Identifier: BSD-3-Clause */
/* config-source.c — the files one configuration is read from.
 *
 * WHAT: a configuration is the main file FILE, then every "*.conf" file of
 * the directory FILE.d/ (for /etc/nbdcached.conf, /etc/nbdcached.conf.d/),
 * in byte order of their names (strcmp: "10-a.conf" before "20-b.conf"
 * before "a.conf").  The parser reads them as one stream of lines: its
 * lineno runs on across files, and this file maps a line number back to
 * "FILE:LINE" for messages.
 * WHY: packages and configuration tools drop one export per file into a
 * conf.d directory instead of editing one shared file.
 * RULES (documented in nbdcached.conf(5)):
 * - The directory is optional: none (ENOENT, or FILE.d is not a directory)
 *   means the main file alone.  An unreadable directory is an error.
 * - Names starting with "." and names not ending in ".conf" are skipped
 *   (editor backups, dpkg's .dpkg-old/.dpkg-dist); so is anything that is
 *   not a regular file (or a symbolic link to one).
 * - A fragment continues the main file: every section may appear in any
 *   file, once in all of them together (a second [server] in a fragment
 *   is a duplicate).  A fragment starts outside any section: its keys
 *   before its first header are errors, never added to the previous
 *   file's last section.
 * - Relative paths are relative to the directory of the file they are
 *   written in.
 * THREADS AND LOCKS: none; one parser, one thread.
 * FAILURE: returns -errno after logging "FILE: message"; an unopenable
 * fragment is a config error (FILE: message) and reading continues with
 * the next one.
 */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cleanup.h"
#include "config-internal.h"
#include "log.h"

static int
dir_of (const char *path, char **out)
{
  AUTOFREE char *copy = strdup (path);

  if (copy == NULL)
    return -ENOMEM;
  *out = realpath (dirname (copy), NULL);
  return *out ? 0 : -errno;
}

static int
add_source (struct parser *p, char *path)
{
  struct config_source *s;
  int r;

  s = realloc (p->sources, (p->nr_sources + 1) * sizeof *s);
  if (s == NULL) {
    free (path);
    return -ENOMEM;
  }
  p->sources = s;
  s = &p->sources[p->nr_sources];
  s->path = path;
  s->first_line = 0;
  if ((r = dir_of (path, &s->dir)) < 0) {
    log_error ("%s: cannot resolve the config file's directory: %s",
               path, strerror (-r));
    free (path);
    return r;
  }
  p->nr_sources++;
  return 0;
}

static int
is_fragment (const struct dirent *d)
{
  size_t len = strlen (d->d_name);

  return d->d_name[0] != '.' && len > 5
    && strcmp (d->d_name + len - 5, ".conf") == 0;
}

static int
by_name (const struct dirent **a, const struct dirent **b)
{
  return strcmp ((*a)->d_name, (*b)->d_name);
}

/* Adds the fragments of DIR (the main file's FILE.d) to p->sources. */
static int
add_fragments (struct parser *p, const char *dir)
{
  struct dirent **names = NULL;
  struct stat st;
  int n, i, r = 0;

  if (stat (dir, &st) == -1 || !S_ISDIR (st.st_mode))
    return 0;                   /* no conf.d: the main file alone */
  n = scandir (dir, &names, is_fragment, by_name);
  if (n < 0) {
    r = -errno;
    log_error ("%s: cannot read the directory: %s", dir, strerror (-r));
    return r;
  }
  for (i = 0; i < n; i++) {
    char *path = NULL;

    if (r == 0) {
      path = concat3 (dir, "/", names[i]->d_name);
      if (path == NULL)
        r = -ENOMEM;
      else if (stat (path, &st) == -1 || !S_ISREG (st.st_mode))
        free (path);            /* a dangling link or a directory */
      else
        r = add_source (p, path);
    }
    free (names[i]);
  }
  free (names);
  return r;
}

/* Opens source i as the current file.  0, or -errno (logged as an error
 * of the config).
 */
static int
open_source (struct parser *p, size_t i)
{
  struct config_source *s = &p->sources[i];
  int r;

  p->cur_source = i;
  p->path = s->path;
  p->dir = s->dir;
  s->first_line = p->lineno;
  p->fp = fopen (s->path, "re");
  if (p->fp == NULL) {
    r = -errno;
    log_error ("%s: cannot open config file: %s", s->path, strerror (-r));
    return r;
  }
  return 0;
}

int
config_sources_open (struct parser *p, const char *path)
{
  AUTOFREE char *fragments = NULL;
  char *copy = strdup (path);
  int r;

  if (copy == NULL)
    return -ENOMEM;
  if ((r = add_source (p, copy)) < 0)
    return r;
  if ((r = open_source (p, 0)) < 0)
    return r;
  if ((fragments = concat3 (path, ".d", "")) == NULL)
    return -ENOMEM;
  return add_fragments (p, fragments);
}

bool
config_sources_next (struct parser *p)
{
  if (p->fp) {
    fclose (p->fp);
    p->fp = NULL;
  }
  while (p->cur_source + 1 < p->nr_sources) {
    if (open_source (p, p->cur_source + 1) == 0) {
      p->cur = SECTION_NONE;    /* a fragment starts outside any section */
      return true;
    }
    p->nr_errors++;
  }
  return false;
}

void
config_sources_free (struct parser *p)
{
  size_t i;

  if (p->fp) {
    fclose (p->fp);
    p->fp = NULL;
  }
  for (i = 0; i < p->nr_sources; i++) {
    free (p->sources[i].path);
    free (p->sources[i].dir);
  }
  free (p->sources);
  p->sources = NULL;
  p->nr_sources = 0;
}

/* The source holding stream line LINE (1-based); the last source for a
 * line past the end.
 */
static const struct config_source *
source_of (const struct parser *p, int line)
{
  size_t i = p->nr_sources ? p->cur_source + 1 : 0; /* opened so far */

  while (i > 1 && p->sources[i - 1].first_line >= line)
    i--;
  return i > 0 ? &p->sources[i - 1] : NULL;
}

const char *
config_where (const struct parser *p, int line, int *file_line)
{
  const struct config_source *s = source_of (p, line);

  if (s == NULL) {
    *file_line = line;
    return p->path;
  }
  *file_line = line - s->first_line;
  return s->path;
}

void
config_line_ref (const struct parser *p, int line, int current,
                 char *buf, size_t len)
{
  int fl, cur_fl;
  const char *file = config_where (p, line, &fl);
  const char *cur_file = config_where (p, current, &cur_fl);

  if (p->params)                /* a front end's key=value parameters */
    snprintf (buf, len, "an earlier parameter");
  else if (strcmp (file, cur_file) == 0)
    snprintf (buf, len, "line %d", fl);
  else
    snprintf (buf, len, "line %d of %s", fl, file);
}
