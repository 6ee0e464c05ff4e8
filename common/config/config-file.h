/* SPDX-License-Identifier: BSD-3-Clause */
/* config-file.h — the nbdcached configuration file: INI (config.c).
 *
 * WHAT: loads and validates a config file into plain structs: one [server]
 * section, any number of [cache NAME] and [export NAME] sections.  Used by
 * nbdcached, by the admin tool and by the nbdkit plugin (config=FILE
 * export=NAME; its backing= parameters go through the same key table).
 * WHY: strictness in one place: an unknown section or key, a bad value, a
 * reference to an unknown cache, a missing backing file — each is an error
 * naming file:line, so an admin never runs a half-understood config.
 * INVARIANTS: after config_load succeeds every string field that the
 * comment says is non-NULL is non-NULL, every export's backing exists or
 * will be created (size set), every export's cache names a [cache] section,
 * mode is NONE exactly when cache is NULL, and a cache's size, bucket_size
 * and journal_size are set only together with create = yes, and the
 * background-work keys of an [export] (writeback_percent,
 * sequential_cutoff, flush_on_stop) are set only on an export with a cache.
 * THREADS: not thread-safe; load on one thread, then read-only.
 * FAILURE: config_load logs every error it finds (file:line: message) at
 * error level and returns -EINVAL; nothing is half-loaded.
 * NOT HERE: opening backing stores or cache devices, sockets.
 */
#ifndef NBDCACHE_CONFIG_FILE_H
#define NBDCACHE_CONFIG_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backing.h"
#include "cache.h"
#include "log.h"

#define CONFIG_DEFAULT_WORKERS 8
/* [server] max_buffer: request data (READ replies not yet sent, WRITE
 * payloads) held in memory across all connections; one connection may hold
 * a quarter of it (server/buffer.c).
 */
#define CONFIG_DEFAULT_MAX_BUFFER_BYTES (UINT64_C (512) << 20) /* 512 MiB */
/* [server] timeouts (server/conn.c, server/main.c); each from 1 ms to
 * CONFIG_MAX_BACKING_TIMEOUT_MS (1 day).
 */
#define CONFIG_DEFAULT_HANDSHAKE_TIMEOUT_MS 10000u /* accept to transmission */
#define CONFIG_DEFAULT_REQUEST_TIMEOUT_MS   60000u /* no progress on a
                                                     partial request/reply */
#define CONFIG_DEFAULT_DRAIN_TIMEOUT_MS     10000u /* SIGTERM to cut */

/* [cache NAME] limits and defaults (nbdcached.conf(5)). */
#define CONFIG_MIN_BUCKET_BYTES          (UINT64_C (64) << 10) /* 64 KiB */
#define CONFIG_MAX_BUCKET_BYTES          (UINT64_C (64) << 20) /* 64 MiB */
#define CONFIG_DEFAULT_NODE_CACHE_BYTES  (UINT64_C (64) << 20) /* 64 MiB */
#define CONFIG_MIN_NODE_CACHE_BYTES      (UINT64_C (1) << 20)  /* 1 MiB */
#define CONFIG_DEFAULT_JOURNAL_DELAY_MS  100u
#define CONFIG_MAX_JOURNAL_DELAY_MS      10000u

/* [export NAME] background-work defaults (the engine's too:
 * ncache_export_tuning_default; test-config-background checks they agree).
 */
#define CONFIG_DEFAULT_WRITEBACK_PERCENT 10u
#define CONFIG_MAX_WRITEBACK_PERCENT     100u
#define CONFIG_MAX_BACKING_CONNECTIONS   64u     /* backing_connections */
#define CONFIG_MAX_BACKING_TIMEOUT_MS    86400000u /* backing_timeout: 1 d */
#define CONFIG_DEFAULT_SEQUENTIAL_CUTOFF (UINT64_C (4) << 20) /* 4 MiB */
#define CONFIG_MAX_PROMOTE_MIN_BYTES (UINT64_C (1) << 20)     /* 1 MiB */

enum config_tls {
  CONFIG_TLS_OFF = 0,           /* STARTTLS refused (ERR_POLICY) */
  CONFIG_TLS_ON,                /* offered; plaintext clients still served */
  CONFIG_TLS_REQUIRE,           /* nothing but STARTTLS/ABORT before TLS */
};

/* An allowed client network: addr/prefix_len, e.g. 10.0.0.0/8, ::1/128. */
struct config_cidr {
  int family;                   /* AF_INET or AF_INET6 */
  unsigned char addr[16];       /* network byte order; 4 bytes for v4 */
  unsigned prefix_len;          /* bits */
};

struct config_server {
  char **listen;                /* listen addresses; NULL when none */
  size_t nr_listen;
  unsigned workers;             /* worker threads, default CONFIG_DEFAULT_WORKERS */
  char *pidfile;                /* NULL = none */
  char *control_socket;         /* control_socket = PATH: the Unix socket
                                   answering stats / flush (absolute,
                                   resolved like pidfile, fits sun_path);
                                   NULL = none */
  char *metrics_listen;         /* metrics_listen = ADDR: GET /metrics
                                   over HTTP (server/metrics.c); NULL =
                                   none */
  char *user;                   /* user = NAME|UID to serve as; NULL = stay */
  char *group;                  /* group = NAME|GID; NULL = user's group */
  enum log_target log_target;   /* log = auto|stderr|syslog */
  enum log_level log_level;     /* log_level = error|warning|info|debug */
  char *default_export;         /* served for the empty name; NULL = the
                                   only export if there is exactly one */

  /* TLS (OpenSSL).  With tls != OFF there is a certificate + key (from
   * tls_certificates or the individual files) and/or a PSK file.
   */
  enum config_tls tls;          /* tls = off|on|require, default off */
  char *tls_certificates;       /* DIR with ca-cert.pem, server-cert.pem,
                                   server-key.pem (nbdkit/qemu layout);
                                   NULL = none */
  char *tls_cert_file;          /* override DIR/server-cert.pem; NULL */
  char *tls_key_file;           /* override DIR/server-key.pem; NULL */
  char *tls_ca_file;            /* override DIR/ca-cert.pem; NULL */
  bool tls_verify_peer;         /* require and verify client certificates */
  char *tls_psk_file;           /* "username:hexkey" lines; NULL = no PSK */
  char *tls_ciphers;            /* TLS <= 1.2 list (OpenSSL syntax); NULL =
                                   a safe built-in default */
  char *tls_ciphersuites;       /* TLS 1.3 suites; NULL = OpenSSL default */
  unsigned tls_min_version;     /* 12 (TLS 1.2, default) or 13 */
  uint64_t max_buffer_bytes;    /* max_buffer: bound on request data held
                                   (bytes), default
                                   CONFIG_DEFAULT_MAX_BUFFER_BYTES */
  unsigned handshake_timeout_ms; /* handshake_timeout: a connection still
                                   negotiating this long after accept is
                                   closed */
  unsigned request_timeout_ms;  /* request_timeout: a connection that makes
                                   no progress this long on a partly
                                   received request (header, payload) or a
                                   partly sent reply is closed */
  unsigned drain_timeout_ms;    /* drain_timeout: at a stop, connections
                                   still open after this long are cut */
};

struct config_cache {
  char *name;                   /* non-NULL */
  char *path;                   /* non-NULL */
  uint64_t size_bytes;          /* create path as a file this big if it is
                                   absent (needs create); 0 = path must
                                   exist and keeps its own size */
  bool create;                  /* format it if it has no nbdcache
                                   superblock; never reformats a cache */
  bool direct;                  /* O_DIRECT, default yes */
  /* Used only when the device is formatted (they need create): */
  uint64_t bucket_bytes;        /* bucket_size: a power of two from
                                   CONFIG_MIN_ to CONFIG_MAX_BUCKET_BYTES;
                                   0 = the engine's default (1 MiB) */
  uint64_t journal_bytes;       /* journal_size; 0 = the engine's default */
  /* Used at every open: */
  uint64_t node_cache_bytes;    /* node_cache_size: bound on the btree node
                                   cache, >= CONFIG_MIN_NODE_CACHE_BYTES,
                                   default CONFIG_DEFAULT_NODE_CACHE_BYTES */
  unsigned journal_delay_ms;    /* journal_delay_ms: 1 to
                                   CONFIG_MAX_JOURNAL_DELAY_MS, default
                                   CONFIG_DEFAULT_JOURNAL_DELAY_MS */
  enum ncache_discard discard;  /* discard = auto (default: on for a block
                                   device, off for a regular file), yes or
                                   no: freed buckets are discarded in
                                   batches before reuse */
  int line;                     /* where the section starts */
};

struct config_export {
  char *name;                   /* non-NULL, may be "" only via default */
  char *backing;                /* non-NULL: a path (made absolute), or a
                                   remote URI (nbd://, nbds+unix:// …) or
                                   rbd:POOL/IMAGE as written */
  uint64_t size_bytes;          /* create a sparse backing file this big if
                                   absent; 0 = it must exist.  Local only */
  /* A remote backing (an error with a local one): */
  unsigned backing_connections; /* 1 to CONFIG_MAX_BACKING_CONNECTIONS;
                                   0 = 4 with multi-conn, else 1 */
  unsigned backing_timeout_ms;  /* backing_timeout; 0 = 30 s */
  char *backing_tls_certificates; /* DIR with ca-cert.pem (and optional
                                   client-cert.pem, client-key.pem); NULL =
                                   libnbd's default */
  bool backing_tls_verify;      /* verify the remote (default yes) */
  char *backing_tls_psk_file;   /* "username:hexkey" lines; NULL = X.509 */
  char *backing_tls_username;   /* PSK user; NULL = the URI's, or the login
                                   name */
  /* A Ceph RBD backing (rbd:POOL/IMAGE; an error with any other).  NULL =
   * librados' default.  backing_timeout applies too. */
  char *ceph_conf;              /* ceph.conf (absolute) */
  char *ceph_id;                /* client id, without "client." */
  char *ceph_keyring;           /* keyring file (absolute) */
  char *ceph_key;               /* the key itself (base64): a secret */
  char *cache;                  /* NULL = uncached */
  enum ncache_mode mode;
  bool readonly;
  char *description;            /* NULL = none */
  bool rotational;
  unsigned max_connections;     /* 0 = unlimited */
  bool tls_required;            /* tls = require: TLS-only, hidden from
                                   plaintext LIST (default: tls = optional) */
  struct config_cidr *allow;    /* allow = CIDR, CIDR…; NULL = any TCP peer */
  size_t nr_allow;
  bool allow_unix;              /* allow_unix = yes (default): Unix-socket
                                   clients pass the allow list */
  char **allow_subjects;        /* allow_subjects = S, S…: a verified client
                                   certificate's subject DN (RFC 2253, e.g.
                                   "CN=alice,O=Example") or one of its DNS /
                                   email SANs must equal one; NULL = any */
  size_t nr_allow_subjects;
  /* Background work; only with a cache (an error without one): */
  unsigned writeback_percent;   /* 0 to CONFIG_MAX_WRITEBACK_PERCENT,
                                   default CONFIG_DEFAULT_WRITEBACK_PERCENT */
  uint64_t sequential_cutoff_bytes; /* sequential_cutoff: 0 = off, default
                                   CONFIG_DEFAULT_SEQUENTIAL_CUTOFF */
  uint64_t promote_min_bytes;   /* promote_min: 0 = off (the default) */
  bool flush_on_stop;           /* default no */
  bool share_backing;           /* share_backing = yes: take no lock on the
                                   backing file (read-only, uncached only) */
  int line;                     /* where the section starts */
};

struct config {
  char *path;                   /* the file it was loaded from */
  struct config_server server;
  struct config_cache *caches;
  size_t nr_caches;
  struct config_export *exports;
  size_t nr_exports;
};

/* 0 and *out set, or -EINVAL / -ENOENT / -ENOMEM with every problem logged
 * as "file:line: message".
 */
int config_load (const char *path, struct config **out);
/* The same for nbdcached, which also checks what it will create: the
 * pidfile, control socket, unix: listen sockets and cache files go into
 * existing directories this user may write (config-paths.c).  The plugin
 * uses config_load: it creates none of those but cache files, and a
 * config written for a root daemon must still load there.
 */
int config_load_server (const char *path, struct config **out);
/* NULL is a no-op. */
void config_free (struct config *cfg);

/* NULL if absent.  The empty name resolves to the default export. */
const struct config_export *config_find_export (const struct config *cfg,
                                                const char *name);
const struct config_cache *config_find_cache (const struct config *cfg,
                                              const char *name);

/* The engine's view of a [cache] section: fills *out with every field of
 * cc.  The strings in *out point into cc (borrowed: cc must outlive the
 * ncache_device_open call).  Shared by nbdcached and the plugin so both
 * open a device with exactly the same settings.
 */
void config_cache_device_config (const struct config_cache *cc,
                                 struct ncache_device_config *out);

/* The export's background-work keys (writeback_percent,
 * sequential_cutoff, flush_on_stop) written into *t.  Only those fields
 * are touched: the caller fills *t with ncache_export_tuning_default
 * first (so test-only fields keep the engine's defaults).  Shared by
 * nbdcached and the plugin.
 */
void config_export_tuning (const struct config_export *ce,
                           struct ncache_export_tuning *t);

/* The export's remote-backing keys (backing_connections, backing_timeout,
 * backing_tls_*) as the backing driver's options.  The strings in *out
 * point into ce (borrowed: ce must outlive the backing_open call).  Shared
 * by nbdcached and the plugin.
 */
void config_export_backing_options (const struct config_export *ce,
                                    struct backing_remote_options *out);

/* The export's ceph_* keys as the RBD driver's options, borrowed from ce
 * as above.  Shared by nbdcached and the plugin.
 */
void config_export_ceph_options (const struct config_export *ce,
                                 struct backing_ceph_options *out);

/* May a client at `peer` (from accept/getpeername; NULL or AF_UNIX for a
 * local client) use this export under its allow / allow_unix rules?
 * IPv4-mapped IPv6 peers are matched as IPv4.  Shared by nbdcached and the
 * plugin so both enforce exactly the same rule.
 */
struct sockaddr;
bool config_export_allows_peer (const struct config_export *ce,
                                const struct sockaddr *peer);

/* ---- key=value parameters (config-params.c) ---- */

/* A front end's parameters (the plugin's backing= form) read into a
 * config of one [export] (and one [cache] once a cache key is set) by the
 * file's key table and value checks, so both refuse the same values with
 * the same words.
 */
struct config_params;
/* 0 and *out set, or -errno after logging. */
int config_params_create (struct config_params **out);
/* Key `key` of the [export] or [cache] section (section "export" or
 * "cache"), given as the parameter `spelling` (named so in messages):
 * 0, or -EINVAL after logging why (a bad value, a second value), or
 * -ENOMEM.
 */
int config_params_set (struct config_params *cp, const char *section,
                       const char *key, const char *spelling,
                       const char *value);
/* After the last parameter: *out is the config (owned by cp, valid until
 * config_params_free): its one export is exports[0], whose cache names
 * caches[0] when a cache key was set, and whose mode, when not given, is
 * the file's default.  0, or -ENOMEM.
 */
int config_params_finish (struct config_params *cp,
                          const struct config **out);
/* NULL is a no-op. */
void config_params_free (struct config_params *cp);

/* Every key the parser accepts, as "section.key" (section is "server",
 * "cache" or "export"), NULL-terminated.  Tests check that each one is
 * documented in the example config and the man page.
 */
extern const char *const config_known_keys[];

#endif /* NBDCACHE_CONFIG_FILE_H */
