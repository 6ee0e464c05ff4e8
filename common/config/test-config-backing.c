/* SPDX-License-Identifier: BSD-3-Clause */
/* test-config-backing.c — unit tests for an export's backing store in the
 * config file (config-backing.c).
 *
 * WHAT: backing URIs (path, file:///, nbd[s][+unix]://, rbd:POOL/IMAGE)
 * and the bad ones; the remote keys (backing_connections, backing_timeout,
 * backing_tls_*) and the rbd keys reaching backing_remote_options and
 * backing_ceph_options, and their errors; a missing, absent, non-file or
 * unreachable backing.  Each bad file asserts -EINVAL and the exact
 * "file:line: message" logged.
 * WHY: the backing is the one value of an export that names something
 * outside the file; its checks are a subject of their own.
 * INVARIANTS: files live in the harness's private directory
 * (config-test.h), removed at the end; nothing reaches stderr unless a
 * test fails.
 * THREADS AND LOCKS: single-threaded.
 * FAILURE: cmocka assertions; main returns 0 or 1.
 * NOT HERE: the other keys (test-config.c, test-config-errors.c,
 * test-config-tls.c, test-config-background.c).
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
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config-file.h"
#include "log.h"
#include "config-test.h"

/* ---- backing URIs and keys ---- */

static void
test_config_bad_backing_uri (void **state)
{
  (void) state;
  load_bad ("[export u]\nbacking = ceph://pool/image\n",
            "2: backing 'ceph://pool/image': unsupported URI scheme 'ceph' "
            "(use a path, a file:/// URI, nbd://, nbds://, nbd+unix://, "
            "nbds+unix://, or rbd:POOL/IMAGE)");
  load_bad ("[export u]\nbacking = rbd://pool/image\n",
            "2: backing 'rbd://pool/image': expected rbd:POOL/IMAGE");
  load_bad ("[export u]\nbacking = rbd:pool\n",
            "2: backing 'rbd:pool': expected rbd:POOL/IMAGE");
  load_bad ("[export u]\nbacking = rbd:pool/img@snap\n",
            "2: backing 'rbd:pool/img@snap': expected rbd:POOL/IMAGE");
  load_bad ("[export u]\nbacking = file://host/x\n",
            "2: backing 'file://host/x': a file URI must be "
            "file:///ABSOLUTE/PATH");
  load_bad ("[export u]\nbacking = file:///x%zz\n",
            "2: backing 'file:///x%zz': bad %-escape in URI");
}

static void
test_config_remote_backing (void **state)
{
  struct backing_remote_options o;
  struct config *cfg;
  char *pki = join (tmpdir, "pki"), *psk = join (tmpdir, "keys.psk");

  (void) state;
  /* A remote URI is kept as written; the defaults. */
  cfg = load_good ("[export r]\nbacking = nbd+unix:///disk?socket=/run/s\n");
  assert_string_equal (cfg->exports[0].backing,
                       "nbd+unix:///disk?socket=/run/s");
  config_export_backing_options (&cfg->exports[0], &o);
  assert_int_equal (o.connections, 0);
  assert_int_equal (o.timeout_ms, 0);
  assert_null (o.tls_certificates);
  assert_false (o.tls_no_verify);
  assert_null (o.tls_psk_file);
  config_free (cfg);

  /* Every key; paths resolved against the file's directory. */
  cfg = load_good ("[export x]\nbacking = nbds://remote:10809/disk\n"
                   "backing_connections = 8\nbacking_timeout = 1500ms\n"
                   "backing_tls_certificates = pki\n"
                   "backing_tls_verify = no\n"
                   "[export p]\nbacking = nbds+unix:///d?socket=/s\n"
                   "backing_timeout = 5\nbacking_tls_psk_file = keys.psk\n"
                   "backing_tls_username = alice\n");
  config_export_backing_options (&cfg->exports[0], &o);
  assert_int_equal (o.connections, 8);
  assert_int_equal (o.timeout_ms, 1500);
  assert_string_equal (o.tls_certificates, pki);
  assert_true (o.tls_no_verify);
  config_export_backing_options (&cfg->exports[1], &o);
  assert_int_equal (o.timeout_ms, 5000);
  assert_string_equal (o.tls_psk_file, psk);
  assert_string_equal (o.tls_username, "alice");
  assert_null (o.tls_certificates);
  config_free (cfg);
  free (pki);
  free (psk);
}

static void
test_config_rbd_backing (void **state)
{
  struct backing_ceph_options co;
  struct backing_remote_options o;
  struct config *cfg;
  char *conf = join (tmpdir, "disk.img");

  (void) state;
  /* Kept as written, librados' defaults. */
  cfg = load_good ("[export r]\nbacking = rbd:pool/image\n");
  assert_string_equal (cfg->exports[0].backing, "rbd:pool/image");
  config_export_ceph_options (&cfg->exports[0], &co);
  assert_null (co.conf);
  assert_null (co.id);
  assert_null (co.keyring);
  assert_null (co.key);
  config_free (cfg);

  /* Every key; paths resolved against the file's directory;
   * backing_timeout applies to rbd: too.
   */
  cfg = load_good ("[export r]\nbacking = rbd:pool/image\n"
                   "ceph_conf = disk.img\nceph_id = nbdcache\n"
                   "ceph_keyring = disk.img\nbacking_timeout = 7\n"
                   "[export k]\nbacking = rbd:p/i\n"
                   "ceph_key = AQBzZ2ZlAAAAABAAdGVzdGtleXRlc3RrZXk=\n");
  config_export_ceph_options (&cfg->exports[0], &co);
  assert_string_equal (co.conf, conf);
  assert_string_equal (co.id, "nbdcache");
  assert_string_equal (co.keyring, conf);
  assert_null (co.key);
  config_export_backing_options (&cfg->exports[0], &o);
  assert_int_equal (o.timeout_ms, 7000);
  config_export_ceph_options (&cfg->exports[1], &co);
  assert_string_equal (co.key, "AQBzZ2ZlAAAAABAAdGVzdGtleXRlc3RrZXk=");
  config_free (cfg);
  free (conf);
}

static void
test_config_rbd_backing_bad (void **state)
{
  (void) state;
  load_bad (EXPORT_OK "ceph_id = admin\n",
            "3: ceph_id is used only with a Ceph RBD backing "
            "(backing = rbd:POOL/IMAGE)");
  load_bad ("[export r]\nbacking = nbd://h/d\nceph_conf = disk.img\n",
            "3: ceph_conf is used only with a Ceph RBD backing "
            "(backing = rbd:POOL/IMAGE)");
  load_bad ("[export r]\nbacking = rbd:p/i\nsize = 1G\n",
            "3: size = creates a local backing file; [export r] has an "
            "RBD backing, whose size is the image's");
  load_bad ("[export r]\nbacking = rbd:p/i\nbacking_connections = 2\n",
            "3: backing_connections is used only with a remote NBD backing "
            "(nbd://…), not with rbd:");
  load_bad ("[export r]\nbacking = rbd:p/i\nceph_keyring = disk.img\n"
            "ceph_key = AQB=\n",
            "4: ceph_key and ceph_keyring: give the key or the keyring "
            "file, not both");
}

static void
test_config_remote_backing_bad (void **state)
{
  char msg[8192];

  (void) state;
  load_bad ("[export r]\nbacking = nbd://h/d\nsize = 1G\n",
            "3: size = creates a local backing file; [export r] has a "
            "remote backing, whose size is the remote's");
  load_bad (EXPORT_OK "backing_timeout = 30\n",
            "3: backing_timeout is used only with a remote backing "
            "(backing = nbd://…): [export ok] has a local one");
  load_bad ("[export r]\nbacking = nbd://h/d\nbacking_tls_verify = no\n",
            "3: backing_tls_verify is used only with TLS to the remote: "
            "write the backing URI as nbds:// or nbds+unix://");
  load_bad ("[export r]\nbacking = nbds://h/d\n"
            "backing_tls_username = alice\n",
            "3: backing_tls_username is the PSK identity: it needs "
            "backing_tls_psk_file");
  load_bad ("[export r]\nbacking = nbds://h/d\n"
            "backing_tls_psk_file = keys.psk\n"
            "backing_tls_certificates = pki\n",
            "3: backing_tls_psk_file and backing_tls_certificates: "
            "choose PSK or X.509");
  snprintf (msg, sizeof msg, "3: backing_tls_certificates '%s/disk.img' "
            "is not a directory", tmpdir);
  load_bad ("[export r]\nbacking = nbds://h/d\n"
            "backing_tls_certificates = disk.img\n", msg);
  load_bad ("[export r]\nbacking = nbd://h/d\nbacking_connections = 0\n",
            "3: invalid backing_connections '0': expected an integer from "
            "1 to 64");
  load_bad ("[export r]\nbacking = nbd://h/d\nbacking_timeout = 5m\n",
            "3: invalid backing_timeout '5m': expected seconds (30, 30s) or "
            "milliseconds (500ms), from 1ms to 86400s");
}

static void
test_config_missing_backing (void **state)
{
  (void) state;
  load_bad ("[server]\n\n[export nob]\nreadonly = yes\n",
            "3: [export nob] has no backing = (required)");
  /* A section with no keys at all is still seen. */
  load_bad (EXPORT_OK "[export empty]\n",
            "3: [export empty] has no backing = (required)");
}

static void
test_config_backing_absent (void **state)
{
  char want[PATH_MAX + 128];

  (void) state;
  snprintf (want, sizeof want,
            "3: backing '%s/absent.img' does not exist "
            "(set size = to create it)", tmpdir);
  load_bad ("[export e]\nreadonly = yes\nbacking = absent.img\n", want);
}

static void
test_config_backing_not_file (void **state)
{
  char want[PATH_MAX + 128];

  (void) state;
  snprintf (want, sizeof want,
            "2: backing '%s/sub' is not a regular file or block device",
            tmpdir);
  load_bad ("[export e]\nbacking = sub\n", want);
  /* Even with a size: it exists and is the wrong kind. */
  load_bad ("[export e]\nbacking = sub\nsize = 1G\n", want);
  load_bad ("[export e]\nbacking = /dev/null\n",
            "2: backing '/dev/null' is not a regular file or block device");
}

static void
test_config_backing_unreachable (void **state)
{
  char want[PATH_MAX + 128];

  (void) state;
  /* A path through a regular file. */
  snprintf (want, sizeof want, "2: backing '%s/disk.img/x': %s",
            tmpdir, strerror (ENOTDIR));
  load_bad ("[export e]\nbacking = disk.img/x\nsize = 1G\n", want);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_config_bad_backing_uri),
    cmocka_unit_test (test_config_remote_backing),
    cmocka_unit_test (test_config_remote_backing_bad),
    cmocka_unit_test (test_config_missing_backing),
    cmocka_unit_test (test_config_backing_absent),
    cmocka_unit_test (test_config_rbd_backing),
    cmocka_unit_test (test_config_rbd_backing_bad),
    cmocka_unit_test (test_config_backing_not_file),
    cmocka_unit_test (test_config_backing_unreachable),
  };

  return cmocka_run_group_tests (tests, group_setup, group_teardown) ? 1 : 0;
}
