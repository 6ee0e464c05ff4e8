/* SPDX-License-Identifier: BSD-3-Clause */
/* test-config-tls.c — unit tests for the TLS and access-control keys of
 * the config file (config-tls.c).
 *
 * WHAT: good files (every tls* key, the tls words, tls_certificates
 * expansion and overrides, tls = off keeping unchecked settings, allow
 * lists of CIDRs and of certificate subjects) and bad files, one test per
 * kind of error: bad values and entries, missing, unreadable or wrong kinds
 * of files, settings that do not fit together.  Each bad file asserts
 * -EINVAL and the exact "file:line: message" logged.
 * TLS "certificates" are empty files: the parser checks only that they
 * exist and are readable.
 * WHY: a TLS or allow-list mistake otherwise shows only at a client's
 * handshake; the parser must name the line.
 * INVARIANTS: files live in the harness's private directory
 * (config-test.h), removed at the end; nothing reaches stderr unless a
 * test fails.
 * THREADS AND LOCKS: single-threaded.
 * FAILURE: cmocka assertions; main returns 0 or 1.
 * NOT HERE: the file reader and the other keys (test-config.c); loading
 * certificates and enforcing the policy (client-tests/test-tls-*).
 */
#include <config.h>

#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "config-file.h"
#include "config-test.h"

/* ---- good files ---- */

/* Asserts that field is tmpdir/name. */
static void
assert_in_tmpdir (const char *field, const char *name)
{
  char *want = join (tmpdir, name);

  assert_non_null (field);
  assert_string_equal (field, want);
  free (want);
}

static void
assert_cidr (const struct config_cidr *c, int family, const char *addr,
             unsigned prefix_len)
{
  unsigned char want[16] = { 0 };

  assert_int_equal (c->family, family);
  assert_int_equal (inet_pton (family, addr, want), 1);
  assert_memory_equal (c->addr, want, family == AF_INET ? 4 : 16);
  assert_int_equal (c->prefix_len, prefix_len);
}

static void
test_config_tls_all_keys (void **state)
{
  const struct config_server *s;
  const struct config_export *e;
  struct config *cfg;

  (void) state;
  cfg = load_good ("[server]\n"
                   "tls = require\n"
                   "tls_certificates = pki\n"
                   "tls_cert_file = cert.pem\n"
                   "tls_key_file = key.pem\n"
                   "tls_ca_file = ca.pem\n"
                   "tls_verify_peer = yes\n"
                   "tls_psk_file = keys.psk\n"
                   "tls_ciphers = HIGH:!aNULL:!MD5\n"
                   "tls_ciphersuites = TLS_AES_256_GCM_SHA384\n"
                   "tls_min_version = 1.3\n"
                   "[export secure]\n"
                   "backing = disk.img\n"
                   "tls = require\n"
                   "allow = 10.0.0.0/8\n"
                   "allow_unix = no\n"
                   "allow_subjects = CN=alice,O=Example\n");
  s = &cfg->server;
  assert_int_equal (s->tls, CONFIG_TLS_REQUIRE);
  assert_in_tmpdir (s->tls_certificates, "pki");
  /* The individual files win over the directory's. */
  assert_in_tmpdir (s->tls_cert_file, "cert.pem");
  assert_in_tmpdir (s->tls_key_file, "key.pem");
  assert_in_tmpdir (s->tls_ca_file, "ca.pem");
  assert_true (s->tls_verify_peer);
  assert_in_tmpdir (s->tls_psk_file, "keys.psk");
  assert_string_equal (s->tls_ciphers, "HIGH:!aNULL:!MD5");
  assert_string_equal (s->tls_ciphersuites, "TLS_AES_256_GCM_SHA384");
  assert_int_equal (s->tls_min_version, 13);

  e = &cfg->exports[0];
  assert_true (e->tls_required);
  assert_int_equal (e->nr_allow, 1);
  assert_cidr (&e->allow[0], AF_INET, "10.0.0.0", 8);
  assert_false (e->allow_unix);
  assert_int_equal (e->nr_allow_subjects, 1);
  assert_string_equal (e->allow_subjects[0], "CN=alice,O=Example");
  config_free (cfg);
}

static void
test_config_tls_values (void **state)
{
  struct config *cfg;

  (void) state;
  /* Case-insensitive words; 1.2 is 12; tls = on with only a PSK. */
  cfg = load_good ("[server]\n"
                   "tls = ON\n"
                   "tls_psk_file = /dev/null\n"
                   "tls_min_version = 1.2\n"
                   "[export a]\n"
                   "backing = disk.img\n"
                   "tls = Optional\n"
                   "[export b]\n"
                   "backing = disk2.img\n"
                   "tls = REQUIRE\n");
  assert_int_equal (cfg->server.tls, CONFIG_TLS_ON);
  assert_string_equal (cfg->server.tls_psk_file, "/dev/null");
  assert_null (cfg->server.tls_cert_file);
  assert_null (cfg->server.tls_key_file);
  assert_null (cfg->server.tls_ca_file);
  assert_int_equal (cfg->server.tls_min_version, 12);
  assert_false (cfg->exports[0].tls_required);
  assert_true (cfg->exports[1].tls_required);
  config_free (cfg);

  cfg = load_good ("[server]\ntls = off\n"
                   "[export a]\nbacking = disk.img\n");
  assert_int_equal (cfg->server.tls, CONFIG_TLS_OFF);
  config_free (cfg);
}

static void
test_config_tls_certificates_dir (void **state)
{
  struct config *cfg;

  (void) state;
  /* The three files of the directory, the CA used for tls_verify_peer. */
  cfg = load_good ("[server]\n"
                   "tls = on\n"
                   "tls_certificates = pki\n"
                   "tls_verify_peer = yes\n"
                   "[export e]\nbacking = disk.img\n"
                   "allow_subjects = CN=alice\n");
  assert_in_tmpdir (cfg->server.tls_certificates, "pki");
  assert_in_tmpdir (cfg->server.tls_cert_file, "pki/server-cert.pem");
  assert_in_tmpdir (cfg->server.tls_key_file, "pki/server-key.pem");
  assert_in_tmpdir (cfg->server.tls_ca_file, "pki/ca-cert.pem");
  assert_null (cfg->server.tls_psk_file);
  config_free (cfg);

  /* No ca-cert.pem: the CA stays unset (fine without tls_verify_peer). */
  cfg = load_good ("[server]\ntls = on\ntls_certificates = pki-noca\n"
                   "[export e]\nbacking = disk.img\n");
  assert_in_tmpdir (cfg->server.tls_cert_file, "pki-noca/server-cert.pem");
  assert_in_tmpdir (cfg->server.tls_key_file, "pki-noca/server-key.pem");
  assert_null (cfg->server.tls_ca_file);
  config_free (cfg);

  /* One file overridden, with or without its partner: the directory
   * supplies the rest, including the CA for tls_verify_peer.
   */
  cfg = load_good ("[server]\ntls = on\ntls_certificates = pki-nokey\n"
                   "tls_key_file = key.pem\n"
                   "tls_ca_file = ca.pem\n"
                   "tls_verify_peer = yes\n"
                   "[export e]\nbacking = disk.img\n");
  assert_in_tmpdir (cfg->server.tls_cert_file, "pki-nokey/server-cert.pem");
  assert_in_tmpdir (cfg->server.tls_key_file, "key.pem");
  assert_in_tmpdir (cfg->server.tls_ca_file, "ca.pem");
  config_free (cfg);

  /* Certificate, key and PSK together. */
  cfg = load_good ("[server]\ntls = require\ntls_cert_file = cert.pem\n"
                   "tls_key_file = key.pem\ntls_psk_file = keys.psk\n"
                   "[export e]\nbacking = disk.img\n");
  assert_null (cfg->server.tls_certificates);
  assert_in_tmpdir (cfg->server.tls_cert_file, "cert.pem");
  assert_in_tmpdir (cfg->server.tls_key_file, "key.pem");
  assert_null (cfg->server.tls_ca_file);
  assert_in_tmpdir (cfg->server.tls_psk_file, "keys.psk");
  config_free (cfg);
}

static void
test_config_tls_off_ignores_tls_keys (void **state)
{
  struct config *cfg;

  (void) state;
  /* Files that do not exist, a certificate without its key, and
   * tls_verify_peer without a CA: all fine while tls = off (explicit or
   * by default), so an admin can switch TLS off and keep the settings.
   */
  cfg = load_good ("[server]\n"
                   "tls = off\n"
                   "tls_cert_file = missing-cert.pem\n"
                   "tls_psk_file = missing.psk\n"
                   "tls_verify_peer = yes\n"
                   "[export e]\nbacking = disk.img\n");
  assert_int_equal (cfg->server.tls, CONFIG_TLS_OFF);
  assert_in_tmpdir (cfg->server.tls_cert_file, "missing-cert.pem");
  assert_null (cfg->server.tls_key_file);
  assert_in_tmpdir (cfg->server.tls_psk_file, "missing.psk");
  assert_true (cfg->server.tls_verify_peer);
  config_free (cfg);

  cfg = load_good ("[server]\n"
                   "tls_certificates = no-such-dir\n"
                   "tls_key_file = key.pem\n"
                   "[export e]\nbacking = disk.img\n");
  assert_int_equal (cfg->server.tls, CONFIG_TLS_OFF);
  assert_in_tmpdir (cfg->server.tls_cert_file, "no-such-dir/server-cert.pem");
  assert_in_tmpdir (cfg->server.tls_key_file, "key.pem");
  assert_null (cfg->server.tls_ca_file);
  config_free (cfg);
}

static void
test_config_allow_cidrs (void **state)
{
  const struct config_export *e;
  struct config *cfg;

  (void) state;
  /* Commas and/or spaces; bare addresses; the key accumulates. */
  cfg = load_good ("[export e]\n"
                   "backing = disk.img\n"
                   "allow = 10.0.0.0/8, 192.168.1.5 ::1/128,2001:db8::/32\n"
                   "allow_unix = yes\n"
                   "allow =   0.0.0.0/0 \t::/0 ,  fe80::1\n"
                   "allow = 172.16.0.0/12,::ffff:10.1.0.0/112\n"
                   "allow = 255.255.255.255/32, 10.128.0.0/9\n");
  e = &cfg->exports[0];
  assert_true (e->allow_unix);
  assert_int_equal (e->nr_allow, 11);
  assert_cidr (&e->allow[0], AF_INET, "10.0.0.0", 8);
  assert_cidr (&e->allow[1], AF_INET, "192.168.1.5", 32);
  assert_cidr (&e->allow[2], AF_INET6, "::1", 128);
  assert_cidr (&e->allow[3], AF_INET6, "2001:db8::", 32);
  assert_cidr (&e->allow[4], AF_INET, "0.0.0.0", 0);
  assert_cidr (&e->allow[5], AF_INET6, "::", 0);
  assert_cidr (&e->allow[6], AF_INET6, "fe80::1", 128);
  assert_cidr (&e->allow[7], AF_INET, "172.16.0.0", 12);
  assert_cidr (&e->allow[8], AF_INET6, "::ffff:10.1.0.0", 112);
  assert_cidr (&e->allow[9], AF_INET, "255.255.255.255", 32);
  assert_cidr (&e->allow[10], AF_INET, "10.128.0.0", 9);
  config_free (cfg);
}

static void
test_config_allow_subjects (void **state)
{
  const struct config_export *e;
  struct config *cfg;

  (void) state;
  /* ';' separates (a DN holds commas) unless escaped as RFC 2253 does,
   * "\\;"; entries are trimmed and kept as written; the key accumulates;
   * a '#' comment is still a comment.
   */
  cfg = load_good ("[server]\n"
                   "tls = require\n"
                   "tls_certificates = pki\n"
                   "tls_verify_peer = yes\n"
                   "[export e]\n"
                   "backing = disk.img\n"
                   "allow_subjects = CN=alice,O=Example;CN=bob, O=Example\n"
                   "allow_subjects =   client.example.com  \n"
                   "allow_subjects = a@example.com;  CN=c\\;d,O=X # who\n");
  e = &cfg->exports[0];
  assert_int_equal (e->nr_allow_subjects, 5);
  assert_string_equal (e->allow_subjects[0], "CN=alice,O=Example");
  assert_string_equal (e->allow_subjects[1], "CN=bob, O=Example");
  assert_string_equal (e->allow_subjects[2], "client.example.com");
  assert_string_equal (e->allow_subjects[3], "a@example.com");
  assert_string_equal (e->allow_subjects[4], "CN=c\\;d,O=X");
  config_free (cfg);
}

/* ---- bad files: one kind of error per test ---- */

#define TLS_CERT_KEY "tls_cert_file = cert.pem\ntls_key_file = key.pem\n"

static void
test_config_bad_tls_values (void **state)
{
  (void) state;
  load_bad ("[server]\ntls = yes\n" EXPORT_OK,
            "2: invalid tls 'yes': expected off, on or require");
  load_bad ("[server]\ntls_min_version = 1.1\n" EXPORT_OK,
            "2: invalid tls_min_version '1.1': expected 1.2 or 1.3");
  load_bad ("[server]\ntls_min_version = TLSv1.3\n" EXPORT_OK,
            "2: invalid tls_min_version 'TLSv1.3': expected 1.2 or 1.3");
  load_bad ("[server]\ntls_verify_peer = sometimes\n" EXPORT_OK,
            "2: invalid tls_verify_peer 'sometimes': expected yes/no, "
            "true/false, on/off or 1/0");
  load_bad ("[server]\ntls_ciphers =\n" EXPORT_OK,
            "2: tls_ciphers: empty value");
  load_bad ("[server]\ntls_cert_file =\n" EXPORT_OK,
            "2: tls_cert_file: empty path");
  load_bad (EXPORT_OK "tls = on\n",
            "3: invalid tls 'on': expected optional or require");
  load_bad (EXPORT_OK "allow_unix = unix\n",
            "3: invalid allow_unix 'unix': expected yes/no, true/false, "
            "on/off or 1/0");
}

static void
test_config_tls_needs_credentials (void **state)
{
  (void) state;
  load_bad ("[server]\nworkers = 2\ntls = on\n" EXPORT_OK,
            "3: tls = on needs a certificate and key (tls_certificates, "
            "or tls_cert_file and tls_key_file) or a PSK file "
            "(tls_psk_file)");
  load_bad ("[server]\ntls = require\ntls_ca_file = ca.pem\n" EXPORT_OK,
            "2: tls = require needs a certificate and key "
            "(tls_certificates, or tls_cert_file and tls_key_file) or a "
            "PSK file (tls_psk_file)");
}

static void
test_config_tls_cert_without_key (void **state)
{
  (void) state;
  load_bad ("[server]\ntls = on\n\ntls_cert_file = cert.pem\n" EXPORT_OK,
            "4: tls_cert_file without tls_key_file: set both, or use "
            "tls_certificates");
  /* Even with a PSK that would do on its own. */
  load_bad ("[server]\ntls = on\ntls_psk_file = keys.psk\n"
            "tls_cert_file = cert.pem\n" EXPORT_OK,
            "4: tls_cert_file without tls_key_file: set both, or use "
            "tls_certificates");
}

static void
test_config_tls_key_without_cert (void **state)
{
  (void) state;
  load_bad ("[server]\ntls = require\ntls_key_file = key.pem\n" EXPORT_OK,
            "3: tls_key_file without tls_cert_file: set both, or use "
            "tls_certificates");
}

static void
test_config_tls_missing_file (void **state)
{
  char want[PATH_MAX + 256];

  (void) state;
  snprintf (want, sizeof want, "4: tls_cert_file '%s/nocert.pem': %s",
            tmpdir, strerror (ENOENT));
  load_bad ("[server]\ntls = on\ntls_key_file = key.pem\n"
            "tls_cert_file = nocert.pem\n" EXPORT_OK, want);
  snprintf (want, sizeof want, "3: tls_key_file '%s/nokey.pem': %s",
            tmpdir, strerror (ENOENT));
  load_bad ("[server]\ntls = on\ntls_key_file = nokey.pem\n"
            "tls_cert_file = cert.pem\n" EXPORT_OK, want);
  snprintf (want, sizeof want, "3: tls_ca_file '%s/noca.pem': %s",
            tmpdir, strerror (ENOENT));
  load_bad ("[server]\ntls = on\ntls_ca_file = noca.pem\n"
            TLS_CERT_KEY EXPORT_OK, want);
  snprintf (want, sizeof want, "3: tls_psk_file '%s/no.psk': %s",
            tmpdir, strerror (ENOENT));
  load_bad ("[server]\ntls = on\ntls_psk_file = no.psk\n" EXPORT_OK, want);
  /* Through a regular file. */
  snprintf (want, sizeof want, "3: tls_psk_file '%s/keys.psk/x': %s",
            tmpdir, strerror (ENOTDIR));
  load_bad ("[server]\ntls = on\ntls_psk_file = keys.psk/x\n" EXPORT_OK,
            want);
}

static void
test_config_tls_wrong_kind_of_file (void **state)
{
  char want[PATH_MAX + 256];

  (void) state;
  snprintf (want, sizeof want, "3: tls_cert_file '%s/pki': %s",
            tmpdir, strerror (EISDIR));
  load_bad ("[server]\ntls = on\ntls_cert_file = pki\n"
            "tls_key_file = key.pem\n" EXPORT_OK, want);
  snprintf (want, sizeof want, "3: tls_certificates '%s/cert.pem': %s",
            tmpdir, strerror (ENOTDIR));
  load_bad ("[server]\ntls = on\ntls_certificates = cert.pem\n" EXPORT_OK,
            want);
}

static void
test_config_tls_missing_dir (void **state)
{
  char want[PATH_MAX + 256];

  (void) state;
  /* One message: not another for each file it should hold. */
  snprintf (want, sizeof want, "2: tls_certificates '%s/no-pki': %s",
            tmpdir, strerror (ENOENT));
  load_bad ("[server]\ntls_certificates = no-pki\ntls = on\n"
            "tls_verify_peer = yes\n" EXPORT_OK, want);
}

static void
test_config_tls_dir_missing_file (void **state)
{
  char want[PATH_MAX + 256], want2[PATH_MAX + 256];

  (void) state;
  snprintf (want, sizeof want,
            "3: tls_certificates '%s/pki-nokey': server-key.pem: %s",
            tmpdir, strerror (ENOENT));
  load_bad ("[server]\ntls = on\ntls_certificates = pki-nokey\n" EXPORT_OK,
            want);
  /* Neither file, and no CA needed. */
  snprintf (want, sizeof want,
            "3: tls_certificates '%s/sub': server-cert.pem: %s",
            tmpdir, strerror (ENOENT));
  snprintf (want2, sizeof want2,
            "3: tls_certificates '%s/sub': server-key.pem: %s",
            tmpdir, strerror (ENOENT));
  load_bad_n ("[server]\ntls = on\ntls_certificates = sub\n" EXPORT_OK, 2,
              (const char *const[]) { want, want2 });
}

static void
test_config_tls_unreadable (void **state)
{
  char want[PATH_MAX + 256];
  char *path;

  (void) state;
  if (geteuid () == 0) {
    /* root reads everything, so the check runs in a child that has become
     * nobody; the private directory is opened up for the duration.
     */
    char *conf;
    struct config *cfg = NULL;
    pid_t pid;
    int status;

    path = write_file ("secret.pem", "");
    assert_int_equal (chmod (path, 0), 0);
    conf = write_file ("bad.conf", "[server]\ntls = on\n"
                       "tls_key_file = secret.pem\n"
                       "tls_cert_file = cert.pem\n" EXPORT_OK);
    assert_int_equal (chmod (tmpdir, 0755), 0);
    snprintf (want, sizeof want, "%s:3: tls_key_file '%s/secret.pem': %s",
              conf, tmpdir, strerror (EACCES));
    pid = fork ();
    assert_true (pid >= 0);
    if (pid == 0) {
      int r;
      size_t i;
      bool found = false;

      if (setgid (65534) != 0 || setuid (65534) != 0)
        _exit (2);
      clear_messages ();
      r = config_load (conf, &cfg);
      for (i = 0; i < nr_messages; i++)
        found |= strcmp (messages[i], want) == 0;
      if (r != -EINVAL || !found) {
        print_messages ();
        _exit (1);
      }
      _exit (0);
    }
    assert_int_equal (waitpid (pid, &status, 0), pid);
    assert_int_equal (chmod (tmpdir, 0700), 0);
    assert_true (WIFEXITED (status));
    assert_int_equal (WEXITSTATUS (status), 0);
    assert_int_equal (unlink (conf), 0);
    assert_int_equal (unlink (path), 0);
    free (conf);
    free (path);
    return;
  }
  path = write_file ("secret.pem", "");
  assert_int_equal (chmod (path, 0), 0);
  snprintf (want, sizeof want, "3: tls_key_file '%s/secret.pem': %s",
            tmpdir, strerror (EACCES));
  load_bad ("[server]\ntls = on\ntls_key_file = secret.pem\n"
            "tls_cert_file = cert.pem\n" EXPORT_OK, want);
  assert_int_equal (unlink (path), 0);
  free (path);
}

static void
test_config_tls_verify_peer_without_ca (void **state)
{
  (void) state;
  load_bad ("[server]\ntls = on\n" TLS_CERT_KEY "tls_verify_peer = yes\n"
            EXPORT_OK,
            "5: tls_verify_peer = yes needs a CA certificate to verify "
            "clients against: set tls_ca_file, or put ca-cert.pem in the "
            "tls_certificates directory");
  load_bad ("[server]\ntls = on\ntls_verify_peer = true\n"
            "tls_certificates = pki-noca\n" EXPORT_OK,
            "3: tls_verify_peer = yes needs a CA certificate to verify "
            "clients against: set tls_ca_file, or put ca-cert.pem in the "
            "tls_certificates directory");
}

static void
test_config_tls_verify_peer_with_psk_only (void **state)
{
  (void) state;
  load_bad ("[server]\ntls = on\ntls_psk_file = keys.psk\n"
            "tls_ca_file = ca.pem\ntls_verify_peer = yes\n" EXPORT_OK,
            "5: tls_verify_peer = yes needs an X.509 certificate and key "
            "(tls_certificates, or tls_cert_file and tls_key_file): PSK "
            "clients have no certificate to verify");
}

static void
test_config_export_tls_require_with_tls_off (void **state)
{
  static const char *const msg =
    "4: tls = require, but [server] has tls = off: no client could use "
    "this export (set tls = on or require in [server])";

  (void) state;
  load_bad (EXPORT_OK "readonly = yes\ntls = require\n", msg);
  load_bad ("[server]\ntls = off\n[export ok]\ntls = require\n"
            "backing = disk.img\n", msg);
}

static void
test_config_allow_subjects_without_verify_peer (void **state)
{
  (void) state;
  load_bad ("[server]\ntls = on\n" TLS_CERT_KEY
            EXPORT_OK "allow_subjects = CN=a\nallow_subjects = CN=b\n",
            "7: allow_subjects needs verified client certificates: set "
            "tls_verify_peer = yes in [server]");
  /* tls_verify_peer means nothing while tls = off. */
  load_bad ("[server]\ntls_verify_peer = yes\n"
            EXPORT_OK "allow_subjects = CN=a\n",
            "5: allow_subjects needs verified client certificates, but "
            "[server] has tls = off");
}

static void
test_config_bad_allow (void **state)
{
  (void) state;
  load_bad (EXPORT_OK "allow = localhost\n",
            "3: allow: 'localhost' is not an IPv4 or IPv6 address, with an "
            "optional /PREFIX_LEN");
  load_bad (EXPORT_OK "allow = 10.1/16\n",
            "3: allow: '10.1/16' is not an IPv4 or IPv6 address, with an "
            "optional /PREFIX_LEN");
  load_bad (EXPORT_OK "allow = /8\n",
            "3: allow: '/8' is not an IPv4 or IPv6 address, with an "
            "optional /PREFIX_LEN");
  load_bad (EXPORT_OK "allow = fe80::1%eth0\n",
            "3: allow: 'fe80::1%eth0' is not an IPv4 or IPv6 address, with "
            "an optional /PREFIX_LEN");
  load_bad (EXPORT_OK "allow = 10.0.0.0/33\n",
            "3: allow: '10.0.0.0/33': the prefix length must be a number "
            "from 0 to 32");
  load_bad (EXPORT_OK "allow = ::/129\n",
            "3: allow: '::/129': the prefix length must be a number "
            "from 0 to 128");
  load_bad (EXPORT_OK "allow = 10.0.0.0/\n",
            "3: allow: '10.0.0.0/': the prefix length must be a number "
            "from 0 to 32");
  load_bad (EXPORT_OK "allow = 10.0.0.0/+8\n",
            "3: allow: '10.0.0.0/+8': the prefix length must be a number "
            "from 0 to 32");
  load_bad (EXPORT_OK "allow =\n", "3: allow: empty value");
  load_bad (EXPORT_OK "allow = 10.0.0.0/8,,::1\n",
            "3: allow: empty entry in '10.0.0.0/8,,::1'");
  load_bad (EXPORT_OK "allow = ::1,\n", "3: allow: empty entry in '::1,'");
}

static void
test_config_allow_host_bits (void **state)
{
  (void) state;
  load_bad (EXPORT_OK "allow = 10.0.0.1/8\n",
            "3: allow: '10.0.0.1/8' has bits set after the first 8: "
            "did you mean 10.0.0.0/8?");
  load_bad (EXPORT_OK "allow = 192.168.1.128/25, 192.168.1.129/25\n",
            "3: allow: '192.168.1.129/25' has bits set after the first 25: "
            "did you mean 192.168.1.128/25?");
  load_bad (EXPORT_OK "allow = 2001:db8::1/32\n",
            "3: allow: '2001:db8::1/32' has bits set after the first 32: "
            "did you mean 2001:db8::/32?");
  load_bad (EXPORT_OK "allow = 1.2.3.4/0\n",
            "3: allow: '1.2.3.4/0' has bits set after the first 0: "
            "did you mean 0.0.0.0/0?");
}

static void
test_config_allow_reports_every_entry (void **state)
{
  (void) state;
  load_bad_n (EXPORT_OK "allow = nope, 10.0.0.0/8 10.0.0.1/31,\n"
              "allow = ::1/200\n", 4, (const char *const[]) {
      "3: allow: 'nope' is not an IPv4 or IPv6 address, with an optional "
      "/PREFIX_LEN",
      "3: allow: '10.0.0.1/31' has bits set after the first 31: did you "
      "mean 10.0.0.0/31?",
      "3: allow: empty entry in 'nope, 10.0.0.0/8 10.0.0.1/31,'",
      "4: allow: '::1/200': the prefix length must be a number from 0 "
      "to 128" });
}

static void
test_config_bad_allow_subjects (void **state)
{
  (void) state;
  load_bad ("[server]\ntls = on\ntls_certificates = pki\n"
            "tls_verify_peer = yes\n" EXPORT_OK "allow_subjects =\n",
            "7: allow_subjects: empty value");
  load_bad ("[server]\ntls = on\ntls_certificates = pki\n"
            "tls_verify_peer = yes\n" EXPORT_OK
            "allow_subjects = CN=a;;CN=b\n",
            "7: allow_subjects: empty entry in 'CN=a;;CN=b'");
  load_bad ("[server]\ntls = on\ntls_certificates = pki\n"
            "tls_verify_peer = yes\n" EXPORT_OK
            "allow_subjects = CN=a;\n",
            "7: allow_subjects: empty entry in 'CN=a;'");
}

static void
test_config_allow_subjects_space_semicolon (void **state)
{
  static const char *const msg =
    "7: allow_subjects: ' ;' starts a comment, which would drop the rest "
    "of the line: separate subjects with ';' and no space before it "
    "(A;B), or repeat the key";

  (void) state;
  /* The inline-comment rule would silently cut "CN=b" off. */
  load_bad ("[server]\ntls = on\ntls_certificates = pki\n"
            "tls_verify_peer = yes\n" EXPORT_OK
            "allow_subjects = CN=a ; CN=b\n", msg);
  load_bad ("[server]\ntls = on\ntls_certificates = pki\n"
            "tls_verify_peer = yes\n" EXPORT_OK
            "allow_subjects = CN=a\t;\n", msg);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_config_tls_all_keys),
    cmocka_unit_test (test_config_tls_values),
    cmocka_unit_test (test_config_tls_certificates_dir),
    cmocka_unit_test (test_config_tls_off_ignores_tls_keys),
    cmocka_unit_test (test_config_allow_cidrs),
    cmocka_unit_test (test_config_allow_subjects),
    cmocka_unit_test (test_config_bad_tls_values),
    cmocka_unit_test (test_config_tls_needs_credentials),
    cmocka_unit_test (test_config_tls_cert_without_key),
    cmocka_unit_test (test_config_tls_key_without_cert),
    cmocka_unit_test (test_config_tls_missing_file),
    cmocka_unit_test (test_config_tls_wrong_kind_of_file),
    cmocka_unit_test (test_config_tls_missing_dir),
    cmocka_unit_test (test_config_tls_dir_missing_file),
    cmocka_unit_test (test_config_tls_unreadable),
    cmocka_unit_test (test_config_tls_verify_peer_without_ca),
    cmocka_unit_test (test_config_tls_verify_peer_with_psk_only),
    cmocka_unit_test (test_config_export_tls_require_with_tls_off),
    cmocka_unit_test (test_config_allow_subjects_without_verify_peer),
    cmocka_unit_test (test_config_bad_allow),
    cmocka_unit_test (test_config_allow_host_bits),
    cmocka_unit_test (test_config_allow_reports_every_entry),
    cmocka_unit_test (test_config_bad_allow_subjects),
    cmocka_unit_test (test_config_allow_subjects_space_semicolon),
  };

  return cmocka_run_group_tests (tests, group_setup, group_teardown) ? 1 : 0;
}
