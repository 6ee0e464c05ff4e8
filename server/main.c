/* SPDX-License-Identifier: BSD-3-Clause */
/* main.c — nbdcached: command line, start-up, the event loop, shutdown.
 *
 * WHAT: parses options, loads the config (a file, or the ad-hoc mode's
 * one export built from the options, adhoc.c), opens listeners and exports,
 * optionally daemonizes, runs the libev loop until a stop is requested,
 * then drains and exits.
 * WHY: this is the only file that may exit the process.
 * ORDER AT START: config -> listeners -> (fork if daemon) -> cache
 * devices and exports -> worker pool -> pidfile -> control socket ->
 * privilege drop (user =, group =) -> --exit-with-parent armed (the drop
 * clears it) -> --print-uri -> --run -> readiness (parent exits 0;
 * sd_notify READY=1) -> loop.  The daemon forks before any thread exists
 * (the engine starts its own when a cache device opens); the parent
 * learns the outcome
 * through a pipe, so `nbdcached && nbdinfo …` never races.
 * ORDER AT STOP (SIGTERM/SIGINT — also the parent's death with
 * --exit-with-parent —, --run command exit, end of -s): stop
 * accepting; every connection finishes its in-flight requests (new ones
 * get ESHUTDOWN) and closes, the control socket is removed and its
 * running flushes cancelled; connections still open after [server]
 * drain_timeout (a client stalled in the middle of a request, one that
 * does not read its replies) are cut — what they had not received a reply
 * for was never acknowledged; then the workers are joined, the control
 * threads waited for, every export is flushed, its statistics logged
 * (info) and closed, the cache devices are closed, and the process exits
 * 0 (or the --run status).
 * THREADS: main thread = loop thread.
 * FAILURE: usage errors exit 2 (EXIT_USAGE, as every program: HACKING.md),
 * configuration and start-up errors exit 1, with a message; nothing after
 * start-up exits except the orderly stop.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "adhoc.h"
#include "log.h"
#include "parse.h"
#include "server.h"

/* Exit statuses, the same in every program (HACKING.md, "Exit status"). */
#define EXIT_USAGE 2            /* a bad option, value or argument */

struct options {
  const char *config_path;
  const char *check_config;
  bool allow_shrink;
  bool foreground;
  bool single;
  char **listen;
  size_t nr_listen;
  const char *pidfile;
  unsigned workers;
  const char *export_name;
  const char *run;
  bool verbose;
  const char *log_target;
  const char *user;
  const char *group;
  bool print_uri;
  bool exit_with_parent;
  struct adhoc adhoc;           /* adhoc.backing set: the ad-hoc mode */
  const char *adhoc_option;     /* the first ad-hoc-only option given */
};

static void
usage (FILE *fp)
{
  fprintf (fp,
"Usage: nbdcached [-c FILE] [OPTIONS]\n"
"       nbdcached [OPTIONS] [-r] [--cache PATH [--cache-size SIZE]]\n"
"                 [--mode MODE] BACKING\n"
"Serve block devices over NBD from a backing store, cached on a local SSD.\n"
"The second form serves one export, BACKING, without a config file.\n"
"\n"
"  -c, --config FILE       config file (default %s/nbdcached.conf)\n"
"      --check-config FILE validate FILE and exit (0 valid, 1 invalid)\n"
"  -f, --foreground        do not daemonize\n"
"  -s, --single            serve one connection on stdin/stdout\n"
"  -l, --listen ADDR       listen on ADDR instead of the config's addresses:\n"
"                          unix:PATH, HOST:PORT, [IPV6]:PORT, :PORT (repeatable)\n"
"  -U, --unix PATH         same as --listen unix:PATH; -U - a private socket\n"
"                          (a new temporary directory), for --run\n"
"  -p, --port PORT         same as --listen :PORT (every interface)\n"
"  -P, --pidfile FILE      write the pid here once listening\n"
"  -w, --workers N         worker threads\n"
"  -u, --user USER         serve as USER once the devices and sockets are open\n"
"  -g, --group GROUP       ... and as GROUP (default: USER's group)\n"
"  -e, --export-name NAME  the export $uri names with --run; in the ad-hoc\n"
"                          mode, the export's name (default \"%s\")\n"
"      --run CMD           run CMD once listening, stop when it exits\n"
"      --print-uri         print each export's NBD URI once listening\n"
"      --exit-with-parent  stop (as at SIGTERM) when the parent process exits\n"
"  -v, --verbose           debug logging\n"
"      --log auto|stderr|syslog  where log messages go (auto: stderr in\n"
"                          the foreground, syslog as a daemon or under systemd)\n"
"      --allow-shrink      serve cached backings that shrank, dropping the\n"
"                          cached data (dirty too) past their new end\n"
"  -V, --version           print the version and exit\n"
"  -h, --help              print this help and exit\n"
"Ad-hoc mode (with BACKING, a path or an NBD URI; not with -c):\n"
"  -r, --readonly          serve BACKING read-only\n"
"      --cache PATH        cache it on PATH (an nbdcache cache device)\n"
"      --cache-size SIZE   create/format PATH as a cache of SIZE if needed\n"
"      --mode MODE         writeback|writethrough|writearound|none\n"
"      --tls off|on|require, --tls-certificates DIR, --tls-psk FILE,\n"
"      --tls-verify-peer   as the [server] keys tls, tls_certificates,\n"
"                          tls_psk_file, tls_verify_peer\n"
"With no -l/-U/-p the ad-hoc mode listens on 127.0.0.1:10809.\n"
"Exit status: 0 ok, 1 error (configuration, start-up), 2 usage error.\n"
"See nbdcached(8) and nbdcached.conf(5).\n", SYSCONFDIR, ADHOC_EXPORT_NAME);
}

enum {
  OPT_CHECK_CONFIG = 256, OPT_RUN, OPT_LOG, OPT_ALLOW_SHRINK, OPT_PRINT_URI,
  OPT_EXIT_WITH_PARENT, OPT_CACHE, OPT_CACHE_SIZE, OPT_MODE, OPT_TLS,
  OPT_TLS_CERTIFICATES, OPT_TLS_PSK, OPT_TLS_VERIFY_PEER,
};

static const struct option long_options[] = {
  { "config", required_argument, NULL, 'c' },
  { "check-config", required_argument, NULL, OPT_CHECK_CONFIG },
  { "foreground", no_argument, NULL, 'f' },
  { "single", no_argument, NULL, 's' },
  { "listen", required_argument, NULL, 'l' },
  { "unix", required_argument, NULL, 'U' },
  { "pidfile", required_argument, NULL, 'P' },
  { "workers", required_argument, NULL, 'w' },
  { "user", required_argument, NULL, 'u' },
  { "group", required_argument, NULL, 'g' },
  { "export", required_argument, NULL, 'e' },
  { "export-name", required_argument, NULL, 'e' },
  { "port", required_argument, NULL, 'p' },
  { "print-uri", no_argument, NULL, OPT_PRINT_URI },
  { "exit-with-parent", no_argument, NULL, OPT_EXIT_WITH_PARENT },
  { "readonly", no_argument, NULL, 'r' },
  { "read-only", no_argument, NULL, 'r' },
  { "cache", required_argument, NULL, OPT_CACHE },
  { "cache-size", required_argument, NULL, OPT_CACHE_SIZE },
  { "mode", required_argument, NULL, OPT_MODE },
  { "tls", required_argument, NULL, OPT_TLS },
  { "tls-certificates", required_argument, NULL, OPT_TLS_CERTIFICATES },
  { "tls-psk", required_argument, NULL, OPT_TLS_PSK },
  { "tls-verify-peer", no_argument, NULL, OPT_TLS_VERIFY_PEER },
  { "run", required_argument, NULL, OPT_RUN },
  { "verbose", no_argument, NULL, 'v' },
  { "log", required_argument, NULL, OPT_LOG },
  { "version", no_argument, NULL, 'V' },
  { "help", no_argument, NULL, 'h' },
  { "allow-shrink", no_argument, NULL, OPT_ALLOW_SHRINK },
  { NULL, 0, NULL, 0 },
};

static int
add_listen (struct options *o, const char *addr)
{
  char **l = realloc (o->listen, (o->nr_listen + 1) * sizeof *l);

  if (l == NULL)
    return -ENOMEM;
  o->listen = l;
  if (strncmp (addr, "unix:", 5) != 0 || addr[5] == '/')
    l[o->nr_listen] = strdup (addr);
  else {
    /* A relative unix: path on the command line is relative to the cwd. */
    char cwd[PATH_MAX];
    if (getcwd (cwd, sizeof cwd) == NULL ||
        asprintf (&l[o->nr_listen], "unix:%s/%s", cwd, addr + 5) == -1)
      l[o->nr_listen] = NULL;
  }
  if (l[o->nr_listen] == NULL)
    return -ENOMEM;
  o->nr_listen++;
  return 0;
}

/* -U -: a socket in a private directory, both removed at exit (atexit:
 * every exit of this process, daemon or not, after the listeners are
 * closed; a --run child execs or _exits, a daemon's parent _exits).
 */
static char private_dir[64];

static void
remove_private_socket (void)
{
  char path[sizeof private_dir + 16];

  snprintf (path, sizeof path, "%s/socket", private_dir);
  unlink (path);
  rmdir (private_dir);
}

static int
private_socket (char **addr)
{
  const char *tmpdir = getenv ("TMPDIR");

  if (private_dir[0]) {
    fprintf (stderr, "nbdcached: -U - given twice\n");
    return -1;
  }
  /* Short: a Unix socket path has at most 107 bytes. */
  if (tmpdir == NULL || tmpdir[0] != '/' || strlen (tmpdir) > 40)
    tmpdir = "/tmp";
  snprintf (private_dir, sizeof private_dir, "%s/nbdcached.XXXXXX", tmpdir);
  if (mkdtemp (private_dir) == NULL) {
    fprintf (stderr, "nbdcached: -U -: %s: %s\n", private_dir,
             strerror (errno));
    private_dir[0] = '\0';
    return -1;
  }
  atexit (remove_private_socket);
  if (asprintf (addr, "unix:%s/socket", private_dir) == -1)
    return -1;
  return 0;
}

/* An option of the ad-hoc mode: remembered, checked against the mode. */
static void
adhoc_option (struct options *o, const char *name)
{
  if (o->adhoc_option == NULL)
    o->adhoc_option = name;
}

static int
parse_args (int argc, char **argv, struct options *o)
{
  int c;
  uint64_t n;

  while ((c = getopt_long (argc, argv, "c:fsl:U:p:P:w:u:g:e:rvVh",
                           long_options, NULL)) != -1) {
    switch (c) {
    case 'c': o->config_path = optarg; break;
    case OPT_CHECK_CONFIG: o->check_config = optarg; break;
    case OPT_ALLOW_SHRINK: o->allow_shrink = true; break;
    case 'f': o->foreground = true; break;
    case 's': o->single = true; break;
    case 'l':
      if (add_listen (o, optarg) < 0)
        return -1;
      break;
    case 'U': {
      char *a;
      if (strcmp (optarg, "-") == 0) {
        if (private_socket (&a) < 0)
          return -1;
      }
      else if (asprintf (&a, "unix:%s", optarg) == -1)
        return -1;
      if (add_listen (o, a) < 0)
        return -1;
      free (a);
      break;
    }
    case 'p': {
      char *a;
      if (parse_uint64_range (optarg, 0, 65535, &n) < 0) {
        fprintf (stderr, "nbdcached: --port: expected 0..65535\n");
        return -1;
      }
      if (asprintf (&a, ":%u", (unsigned) n) == -1 || add_listen (o, a) < 0)
        return -1;
      free (a);
      break;
    }
    case OPT_PRINT_URI: o->print_uri = true; break;
    case OPT_EXIT_WITH_PARENT: o->exit_with_parent = true; break;
    case 'r':
      o->adhoc.readonly = true;
      adhoc_option (o, "--readonly");
      break;
    case OPT_CACHE:
      o->adhoc.cache_path = optarg;
      adhoc_option (o, "--cache");
      break;
    case OPT_CACHE_SIZE:
      o->adhoc.cache_size = optarg;
      adhoc_option (o, "--cache-size");
      break;
    case OPT_MODE:
      o->adhoc.mode = optarg;
      adhoc_option (o, "--mode");
      break;
    case OPT_TLS:
      o->adhoc.tls = optarg;
      adhoc_option (o, "--tls");
      break;
    case OPT_TLS_CERTIFICATES:
      o->adhoc.tls_certificates = optarg;
      adhoc_option (o, "--tls-certificates");
      break;
    case OPT_TLS_PSK:
      o->adhoc.tls_psk_file = optarg;
      adhoc_option (o, "--tls-psk");
      break;
    case OPT_TLS_VERIFY_PEER:
      o->adhoc.tls_verify_peer = true;
      adhoc_option (o, "--tls-verify-peer");
      break;
    case 'P': o->pidfile = optarg; break;
    case 'u': o->user = optarg; break;
    case 'g': o->group = optarg; break;
    case 'w':
      if (parse_uint64_range (optarg, 1, 1024, &n) < 0) {
        fprintf (stderr, "nbdcached: --workers: expected 1..1024\n");
        return -1;
      }
      o->workers = n;
      break;
    case 'e': o->export_name = optarg; break;
    case OPT_RUN: o->run = optarg; break;
    case 'v': o->verbose = true; break;
    case OPT_LOG:
      if (strcmp (optarg, "stderr") != 0 && strcmp (optarg, "syslog") != 0
          && strcmp (optarg, "auto") != 0) {
        fprintf (stderr, "nbdcached: --log: expected auto, stderr or syslog\n");
        return -1;
      }
      o->log_target = optarg;
      break;
    case 'V':
      printf ("nbdcached %s\n", PACKAGE_VERSION);
      exit (EXIT_SUCCESS);
    case 'h':
      usage (stdout);
      exit (EXIT_SUCCESS);
    default:
      usage (stderr);
      return -1;
    }
  }
  if (optind < argc)
    o->adhoc.backing = argv[optind++];
  if (optind != argc) {
    fprintf (stderr, "nbdcached: unexpected argument '%s' (the ad-hoc mode "
             "serves one BACKING)\n", argv[optind]);
    return -1;
  }
  if (o->adhoc.backing && (o->config_path || o->check_config)) {
    fprintf (stderr, "nbdcached: BACKING '%s' (the ad-hoc mode) and %s: "
             "use one or the other\n", o->adhoc.backing,
             o->config_path ? "-c/--config" : "--check-config");
    return -1;
  }
  if (o->adhoc.backing == NULL && o->adhoc_option) {
    fprintf (stderr, "nbdcached: %s is an option of the ad-hoc mode: give "
             "BACKING, or set it in the config file\n", o->adhoc_option);
    return -1;
  }
  if (o->adhoc.cache_size && o->adhoc.cache_path == NULL) {
    fprintf (stderr, "nbdcached: --cache-size needs --cache PATH\n");
    return -1;
  }
  o->adhoc.export_name = o->export_name;
  if (o->print_uri && o->single) {
    fprintf (stderr, "nbdcached: --print-uri: -s serves stdin, there is no "
             "URI\n");
    return -1;
  }
  return 0;
}

/* --exit-with-parent: SIGTERM (the orderly stop) when the parent exits.
 * Armed after the privilege drop, which clears the setting (prctl(2)),
 * and after the daemon fork (so it is never armed: -f is implied).  A
 * parent already gone is caught by comparing with the pid seen at start.
 */
static int
exit_with_parent_arm (pid_t parent)
{
  if (prctl (PR_SET_PDEATHSIG, SIGTERM) == -1) {
    log_error ("--exit-with-parent: prctl: %m");
    return -1;
  }
  if (getppid () != parent) {
    log_info ("--exit-with-parent: the parent (pid %d) has exited already",
              (int) parent);
    raise (SIGTERM);
  }
  return 0;
}

/* ---- stopping ---- */

static void
stop_timeout_cb (struct ev_loop *loop, ev_timer *w, int revents)
{
  struct server *srv = w->data;

  log_warning ("%u connection(s) did not finish within drain_timeout "
               "(%.3g s); closing them", srv->nr_conns,
               srv->cfg->server.drain_timeout_ms / 1000.0);
  while (srv->conns)
    conn_close (srv->conns);
}

void
server_stop (struct server *srv)
{
  struct conn *c, *next;

  if (srv->stopping)
    return;
  srv->stopping = true;
  log_info ("stopping: %u connection(s) to drain", srv->nr_conns);
  notify_stopping ();
  listen_close_all (srv);
  control_server_stop (srv);
  reload_stop (srv);
  metrics_close (srv);
  for (c = srv->conns; c; c = next) {
    next = c->next;
    conn_begin_shutdown (c);
  }
  if (srv->nr_conns == 0)
    ev_break (srv->loop, EVBREAK_ALL);
  else {
    ev_timer_init (&srv->stop_timer, stop_timeout_cb,
                   srv->cfg->server.drain_timeout_ms / 1000.0, 0);
    srv->stop_timer.data = srv;
    ev_timer_start (srv->loop, &srv->stop_timer);
  }
}

void
server_conn_gone (struct server *srv)
{
  /* Its fd is closed: accepting may resume if it ran out of fds. */
  listen_resume (srv);
  if (srv->single && srv->nr_conns == 0)
    server_stop (srv);
  if (srv->stopping && srv->nr_conns == 0)
    ev_break (srv->loop, EVBREAK_ALL);
}

static void
signal_cb (struct ev_loop *loop, ev_signal *w, int revents)
{
  log_info ("signal %d received", w->signum);
  server_stop (w->data);
}

static void
sighup_cb (struct ev_loop *loop, ev_signal *w, int revents)
{
  struct server *srv = w->data;

  if (srv->stopping)
    return;
  reload_start (srv);           /* reload.c; the outcome is logged */
}

static void
done_async_cb (struct ev_loop *loop, ev_async *w, int revents)
{
  worker_pool_reap (w->data);
}

static void
prepare_cb (struct ev_loop *loop, ev_prepare *w, int revents)
{
  struct server *srv = w->data;

  conn_run_resumes (srv);
  conn_sweep (srv);
  reload_reap (srv);            /* removed exports nothing uses any more */
}

/* ---- --run captive mode ---- */

static void
run_child_cb (struct ev_loop *loop, ev_child *w, int revents)
{
  struct server *srv = w->data;

  ev_child_stop (loop, w);
  if (WIFEXITED (w->rstatus))
    srv->exit_status = WEXITSTATUS (w->rstatus);
  else if (WIFSIGNALED (w->rstatus))
    srv->exit_status = 128 + WTERMSIG (w->rstatus);
  else
    srv->exit_status = 1;
  log_debug ("--run command exited with status %d", srv->exit_status);
  server_stop (srv);
}

static int
start_run_command (struct server *srv, const char *cmd, const char *export_name,
                   ev_child *child_watcher)
{
  struct listener *l = srv->listeners;
  char *uri = NULL, port[16] = "";
  const char *unixsocket = "";
  pid_t pid;

  if (export_name == NULL)
    export_name = srv->default_export ? srv->default_export->name : "";
  if (l == NULL) {
    log_error ("--run needs a listening socket");
    return -1;
  }
  if (l->is_unix) {
    unixsocket = l->unix_path;
    if (asprintf (&uri, "nbd+unix:///%s?socket=%s", export_name,
                  unixsocket) == -1)
      return -1;
  }
  else {
    snprintf (port, sizeof port, "%d", l->port);
    if (asprintf (&uri, l->family == AF_INET6 ? "nbd://[::1]:%d/%s"
                                              : "nbd://127.0.0.1:%d/%s",
                  l->port, export_name) == -1)
      return -1;
  }

  fflush (NULL);
  pid = fork ();
  if (pid == -1) {
    log_error ("--run: fork: %m");
    free (uri);
    return -1;
  }
  if (pid == 0) {
    setenv ("uri", uri, 1);
    setenv ("unixsocket", unixsocket, 1);
    setenv ("port", port, 1);
    setenv ("export", export_name, 1);
    signal (SIGPIPE, SIG_DFL);
    execl ("/bin/sh", "sh", "-c", cmd, (char *) NULL);
    _exit (127);
  }
  free (uri);
  ev_child_init (child_watcher, run_child_cb, pid, 0);
  child_watcher->data = srv;
  ev_child_start (srv->loop, child_watcher);
  return 0;
}

/* ---- start-up helpers ---- */

static int
write_pidfile (const char *path)
{
  char buf[32];
  int fd, len;

  fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd == -1) {
    log_error ("pidfile %s: %m", path);
    return -1;
  }
  len = snprintf (buf, sizeof buf, "%d\n", (int) getpid ());
  if (write (fd, buf, len) != len) {
    log_error ("pidfile %s: %m", path);
    close (fd);
    return -1;
  }
  close (fd);
  return 0;
}

/* Fork into the background.  The parent waits on a pipe for the child's
 * verdict and exits with it; returns the write end in the child.
 */
static int
daemonize (void)
{
  int p[2];
  pid_t pid;
  char status;

  if (pipe2 (p, O_CLOEXEC) == -1) {
    log_error ("pipe: %m");
    return -1;
  }
  fflush (NULL);
  pid = fork ();
  if (pid == -1) {
    log_error ("fork: %m");
    return -1;
  }
  if (pid > 0) {
    close (p[1]);
    if (read (p[0], &status, 1) != 1)
      _exit (EXIT_FAILURE);     /* the daemon died before it was ready */
    _exit (status == 0 ? EXIT_SUCCESS : EXIT_FAILURE);
  }
  close (p[0]);
  setsid ();
  if (chdir ("/") == -1)
    log_warning ("chdir /: %m");
  return p[1];
}

/* log = auto before any fork: syslog when stderr is systemd's journal
 * stream (syslog keeps the levels; stderr there would lose them), else
 * stderr, also for a daemon until it is ready (so start-up errors reach
 * the terminal): then log_to_syslog_detached.  JOURNAL_STREAM is
 * "DEV:INODE" of the stream systemd connected; it is inherited by
 * children whose stderr is elsewhere, so it counts only if it is still
 * our stderr (systemd.exec(5)).
 */
static enum log_target
log_auto_target (void)
{
  const char *js = getenv ("JOURNAL_STREAM");
  unsigned long long dev, ino;
  struct stat st;

  if (js && sscanf (js, "%llu:%llu", &dev, &ino) == 2
      && fstat (STDERR_FILENO, &st) == 0
      && (unsigned long long) st.st_dev == dev
      && (unsigned long long) st.st_ino == ino)
    return LOG_TARGET_SYSLOG;
  return LOG_TARGET_STDERR;
}

/* log = auto, a daemon that is ready: syslog from now on, and stderr to
 * /dev/null (never the terminal nbdcached was started from).
 */
static void
log_to_syslog_detached (enum log_level level)
{
  int fd;

  log_init ("nbdcached", LOG_TARGET_SYSLOG, level);
  if ((fd = open ("/dev/null", O_WRONLY)) >= 0) {
    dup2 (fd, STDERR_FILENO);
    if (fd > STDERR_FILENO)
      close (fd);
  }
}

static void
daemon_ready (int ready_fd, char status)
{
  int fd;

  if (ready_fd < 0)
    return;
  if (status == 0 && (fd = open ("/dev/null", O_RDWR)) >= 0) {
    dup2 (fd, STDIN_FILENO);
    dup2 (fd, STDOUT_FILENO);
    if (fd > STDERR_FILENO)
      close (fd);
  }
  if (write (ready_fd, &status, 1) != 1)
    log_warning ("cannot tell the parent we are ready: %m");
  close (ready_fd);
}

/* A start-up step after the exports failed (it logged why): close the
 * exports and cache devices cleanly, so the next start needs no recovery,
 * remove what this start made (sockets, the pidfile if written — NULL if
 * not), tell a waiting parent, exit.
 */
static void
start_failed (struct server *srv, int ready_fd, const char *pidfile)
{
  daemon_ready (ready_fd, 1);
  control_server_close (srv);
  metrics_close (srv);
  listen_close_all (srv);
  export_table_close (srv, false);
  if (pidfile)
    unlink (pidfile);
  exit (EXIT_FAILURE);
}

int
main (int argc, char **argv)
{
  struct options opts = { 0 };
  struct server srv = { .exit_status = EXIT_SUCCESS,
                        .table_lock = PTHREAD_RWLOCK_INITIALIZER };
  struct privdrop privdrop;
  enum log_target target;
  bool log_auto;
  ev_signal sigterm, sigint, sighup;
  ev_child run_child;
  enum log_level level;
  const char *pidfile;
  bool activated = false;
  char *config_abs = NULL;
  int ready_fd = -1;
  pid_t parent;
  unsigned workers;
  size_t i;
  int r;

  signal (SIGPIPE, SIG_IGN);
  parent = getppid ();
  log_init ("nbdcached", LOG_TARGET_STDERR, LOG_LEVEL_INFO);
  if (parse_args (argc, argv, &opts) < 0)
    exit (EXIT_USAGE);
  if (opts.verbose)
    log_set_level (LOG_LEVEL_DEBUG);

  if (opts.check_config) {
    struct config *cfg;
    if (config_load_server (opts.check_config, &cfg) < 0)
      exit (EXIT_FAILURE);
    printf ("%s: OK (%zu export(s), %zu cache device(s))\n",
            opts.check_config, cfg->nr_exports, cfg->nr_caches);
    config_free (cfg);
    exit (EXIT_SUCCESS);
  }

  if (opts.adhoc.backing) {
    if (adhoc_config_load (&opts.adhoc, &srv.cfg) < 0)
      exit (EXIT_FAILURE);
    if (opts.nr_listen == 0 && add_listen (&opts, ADHOC_LISTEN) < 0)
      exit (EXIT_FAILURE);
  }
  else {
    if (opts.config_path == NULL)
      opts.config_path = SYSCONFDIR "/nbdcached.conf";
    config_abs = realpath (opts.config_path, NULL);
    if (config_abs == NULL) {
      log_error ("%s: %m", opts.config_path);
      exit (EXIT_FAILURE);
    }
    if (config_load_server (config_abs, &srv.cfg) < 0)
      exit (EXIT_FAILURE);
  }

  level = opts.verbose ? LOG_LEVEL_DEBUG : srv.cfg->server.log_level;
  if (opts.run || opts.single || opts.exit_with_parent)
    opts.foreground = true;
  target = srv.cfg->server.log_target;
  if (opts.log_target)
    target = strcmp (opts.log_target, "syslog") == 0 ? LOG_TARGET_SYSLOG
      : strcmp (opts.log_target, "auto") == 0 ? LOG_TARGET_AUTO
      : LOG_TARGET_STDERR;
  log_auto = target == LOG_TARGET_AUTO;
  if (log_auto)
    target = log_auto_target ();
  log_init ("nbdcached", target, level);

  /* Who to serve as: looked up now, switched to once all is open. */
  if (privdrop_resolve (opts.user ? opts.user : srv.cfg->server.user,
                        opts.group ? opts.group : srv.cfg->server.group,
                        &privdrop) < 0)
    exit (EXIT_FAILURE);

  /* Listeners. */
  srv.allow_shrink = opts.allow_shrink;
  if (opts.single)
    srv.single = true;
  else {
    if ((r = listen_socket_activation (&srv, &activated)) < 0)
      exit (EXIT_FAILURE);
    if (activated)
      opts.foreground = true;
    else if (opts.nr_listen > 0) {
      for (i = 0; i < opts.nr_listen; i++)
        if (listen_open_address (&srv, opts.listen[i]) < 0) {
          listen_close_all (&srv);      /* the sockets bound so far */
          exit (EXIT_FAILURE);
        }
    }
    else if (srv.cfg->server.nr_listen > 0) {
      for (i = 0; i < srv.cfg->server.nr_listen; i++)
        if (listen_open_address (&srv, srv.cfg->server.listen[i]) < 0) {
          listen_close_all (&srv);
          exit (EXIT_FAILURE);
        }
    }
    else {
      log_error ("%s: no listen address: add 'listen = …' to [server] or "
                 "use --listen", srv.cfg->path);
      exit (EXIT_FAILURE);
    }
  }

  if (!opts.foreground && (ready_fd = daemonize ()) < 0) {
    listen_close_all (&srv);
    exit (EXIT_FAILURE);
  }

  /* Exports, workers, the loop. */
  if (export_table_open (&srv) < 0) {
    daemon_ready (ready_fd, 1);
    listen_close_all (&srv);
    exit (EXIT_FAILURE);
  }
  srv.loop = ev_default_loop (EVFLAG_AUTO);
  pthread_mutex_init (&srv.done_lock, NULL);
  ev_async_init (&srv.done_async, done_async_cb);
  srv.done_async.data = &srv;
  ev_async_start (srv.loop, &srv.done_async);
  ev_prepare_init (&srv.prepare, prepare_cb);
  srv.prepare.data = &srv;
  ev_prepare_start (srv.loop, &srv.prepare);
  ev_signal_init (&sigterm, signal_cb, SIGTERM);
  ev_signal_init (&sigint, signal_cb, SIGINT);
  sigterm.data = sigint.data = &srv;
  ev_signal_start (srv.loop, &sigterm);
  ev_signal_start (srv.loop, &sigint);
  ev_signal_init (&sighup, sighup_cb, SIGHUP);
  sighup.data = &srv;
  ev_signal_start (srv.loop, &sighup);
  srv.config_path = config_abs;   /* NULL in the ad-hoc mode: no reload */
  if (reload_init (&srv) < 0) {
    log_error ("out of memory");
    start_failed (&srv, ready_fd, NULL);
  }

  if (srv.cfg->server.tls != CONFIG_TLS_OFF &&
      tls_server_create (srv.cfg, &srv.tls) < 0) {
    start_failed (&srv, ready_fd, NULL);
  }

  workers = opts.workers ? opts.workers : srv.cfg->server.workers;
  if (worker_pool_create (&srv, workers, &srv.pool) < 0) {
    start_failed (&srv, ready_fd, NULL);
  }
  devring_open (&srv);

  pidfile = opts.pidfile ? opts.pidfile : srv.cfg->server.pidfile;
  if (pidfile && write_pidfile (pidfile) < 0) {
    start_failed (&srv, ready_fd, NULL);
  }
  if (control_server_open (&srv) < 0 || metrics_open (&srv) < 0) {
    start_failed (&srv, ready_fd, pidfile);
  }
  if (privdrop_apply (&privdrop) < 0) {
    start_failed (&srv, ready_fd, pidfile);
  }
  if (opts.exit_with_parent && exit_with_parent_arm (parent) < 0) {
    start_failed (&srv, ready_fd, pidfile);
  }
  listen_start (&srv);
  conn_timeouts_start (&srv);
  if (opts.single)
    conn_accept (&srv, STDIN_FILENO, STDOUT_FILENO, false, "stdin",
                 NULL, 0);
  if (opts.print_uri && uri_print_all (&srv, stdout) < 0) {
    start_failed (&srv, ready_fd, pidfile);
  }
  if (opts.run &&
      start_run_command (&srv, opts.run, opts.export_name, &run_child) < 0) {
    start_failed (&srv, ready_fd, pidfile);
  }
  daemon_ready (ready_fd, 0);
  if (log_auto && ready_fd >= 0)
    log_to_syslog_detached (level);
  notify_ready (&srv);

  ev_run (srv.loop, 0);
  conn_timeouts_stop (&srv);

  /* Drain: the ring's reads complete (a stale one goes to a worker),
   * workers finish what they hold, then replies are dropped.
   */
  devring_close (&srv);
  worker_pool_destroy (srv.pool);
  worker_pool_reap (&srv);
  devring_destroy (&srv);
  while (srv.conns)
    conn_close (srv.conns);
  conn_sweep (&srv);
  listen_close_all (&srv);
  control_server_close (&srv);  /* its threads use the exports */
  reload_close (&srv);          /* removed exports, before the devices */
  metrics_close (&srv);
  export_table_close (&srv, true);
  reload_free (&srv);
  tls_server_destroy (srv.tls);
  if (pidfile)
    unlink (pidfile);
  config_free (srv.cfg);
  for (i = 0; i < opts.nr_listen; i++)
    free (opts.listen[i]);
  free (opts.listen);
  free (config_abs);
  ev_loop_destroy (srv.loop);
  log_info ("stopped");
  return srv.exit_status;
}
