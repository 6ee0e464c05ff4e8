/* SPDX-License-Identifier: BSD-3-Clause */
/* privdrop.c — run as an unprivileged user once everything privileged is
 * open.
 *
 * WHAT: [server] user = / group = (and -u / -g) name the account nbdcached
 * serves as.  privdrop_resolve looks them up at start-up, before anything
 * is opened, so a typo stops the server at once; privdrop_apply switches
 * after the listeners, the backing stores, the cache devices, the pidfile
 * and the control socket are open and before the first client is served
 * (or the --run command started).
 * WHY: an NBD server parses what any network client sends; it should not
 * do so as root.  Opening block devices and binding low ports needs root
 * (or the capabilities nbdcached.service grants), serving does not: every
 * file descriptor opened before the switch keeps working.
 * HOW: supplementary groups (the user's, from initgroups; or just the group
 * when only group = is given) -> setgid -> setuid, each checked, and then
 * a check that setuid(0) fails: a half-done switch is refused.  glibc
 * applies set*id to every thread of the process (the engine's threads
 * exist already).
 * RULES: user = alone uses the user's primary group; group = alone changes
 * only the group.  Not running as root and asked to become someone else is
 * an error ("cannot switch … : not running as root"); asked to become who
 * it already is, nothing happens.
 * FAILURE: returns -errno after logging; main exits 1.  No half-dropped
 * state is ever served.
 * THREADS: main thread, at start-up only.
 */
#include <config.h>

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "server.h"

/* A decimal id, or -1. */
static long
parse_id (const char *s)
{
  char *end;
  long v;

  if (*s < '0' || *s > '9')
    return -1;
  errno = 0;
  v = strtol (s, &end, 10);
  if (errno || *end || v < 0 || v > INT_MAX)
    return -1;
  return v;
}

int
privdrop_resolve (const char *user, const char *group, struct privdrop *out)
{
  struct privdrop pd = { .uid = (uid_t) -1, .gid = (gid_t) -1 };
  struct passwd *pw;
  struct group *gr;
  long id;

  if (user) {
    errno = 0;
    pw = getpwnam (user);
    if (pw == NULL && (id = parse_id (user)) >= 0) {
      errno = 0;
      pw = getpwuid ((uid_t) id);
      if (pw == NULL) {         /* a bare uid without a passwd entry */
        pd.uid = (uid_t) id;
        pd.gid = (gid_t) id;
      }
    }
    if (pw) {
      pd.uid = pw->pw_uid;
      pd.gid = pw->pw_gid;
      if (strlen (pw->pw_name) >= sizeof pd.user_name)
        return -ENAMETOOLONG;
      strcpy (pd.user_name, pw->pw_name);
    }
    else if (pd.uid == (uid_t) -1) {
      log_error ("user '%s': no such user%s%s", user,
                 errno ? ": " : "", errno ? strerror (errno) : "");
      return -ENOENT;
    }
    pd.set_user = true;
  }
  if (group) {
    errno = 0;
    gr = getgrnam (group);
    if (gr)
      pd.gid = gr->gr_gid;
    else if ((id = parse_id (group)) >= 0)
      pd.gid = (gid_t) id;
    else {
      log_error ("group '%s': no such group%s%s", group,
                 errno ? ": " : "", errno ? strerror (errno) : "");
      return -ENOENT;
    }
    pd.set_group = true;
  }
  *out = pd;
  return 0;
}

int
privdrop_apply (const struct privdrop *pd)
{
  bool want_gid = pd->set_user || pd->set_group;
  int r;

  if (!want_gid)
    return 0;
  if (geteuid () != 0) {
    if ((pd->set_user && geteuid () != pd->uid) || getegid () != pd->gid) {
      log_error ("cannot switch to %s%s%u:%u: not running as root",
                 pd->user_name, pd->user_name[0] ? " " : "",
                 pd->set_user ? (unsigned) pd->uid : (unsigned) geteuid (),
                 (unsigned) pd->gid);
      return -EPERM;
    }
    return 0;                   /* already who we should be */
  }

  if (pd->set_user && pd->user_name[0] && !pd->set_group)
    r = initgroups (pd->user_name, pd->gid);
  else
    r = setgroups (1, &pd->gid);
  if (r == -1 || setgid (pd->gid) == -1)
    goto err;
  if (pd->set_user && setuid (pd->uid) == -1)
    goto err;
  if (pd->set_user && pd->uid != 0 && setuid (0) != -1) {
    log_error ("switched to uid %u but could get root back: refusing to serve",
               (unsigned) pd->uid);
    return -EPERM;
  }
  log_info ("serving as uid %u gid %u%s%s", (unsigned) getuid (),
            (unsigned) getgid (), pd->user_name[0] ? " " : "", pd->user_name);
  return 0;

 err:
  r = -errno;
  log_error ("cannot switch to uid %u gid %u: %s",
             (unsigned) (pd->set_user ? pd->uid : getuid ()),
             (unsigned) pd->gid, strerror (-r));
  return r;
}
