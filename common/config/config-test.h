/* SPDX-License-Identifier: BSD-3-Clause */
/* config-test.h — the harness shared by the config parser tests.
 *
 * WHAT: a private directory with the fixture files the tests name (an
 * empty disk.img, TLS "certificates" that are empty files, a directory),
 * log capture, and loaders that assert a good file loads silently or a bad
 * file fails with exactly the expected "file:line: message" lines.
 * WHY: every test-config* program (good files, invalid files, backing,
 * TLS and access-control keys, background-work keys, ...) checks the same
 * way; one harness keeps their notion of "the exact message" identical.
 * INVARIANTS: include after <setjmp.h>, <stdarg.h>, <stddef.h> and
 * <cmocka.h>; group_setup and group_teardown are the cmocka group fixtures
 * and everything else may only be used between them.  Files are written
 * under a private mkdtemp directory ($TMPDIR or /tmp), removed at the end.
 * THREADS AND LOCKS: single-threaded.
 * FAILURE: cmocka assertions (the loaders print what was logged first);
 * allocation failure aborts.
 * NOT HERE: the tests themselves (test-config*.c).
 */
#ifndef NBDCACHE_CONFIG_TEST_H
#define NBDCACHE_CONFIG_TEST_H

#include <stddef.h>

#include "config-file.h"

#define MAX_MESSAGES 64

/* A valid export, so that a bad file has only the error under test. */
#define EXPORT_OK "[export ok]\nbacking = disk.img\n"

extern char *tmpdir;            /* realpath of the private directory */
extern char *messages[MAX_MESSAGES]; /* logged since clear_messages */
extern size_t nr_messages;

void clear_messages (void);
void print_messages (void);

/* Tests may abort on allocation failure; never returns NULL. */
void *xmalloc (size_t n) __attribute__ ((__returns_nonnull__));
/* a/b in a new string. */
char *join (const char *a, const char *b);
/* Writes text to tmpdir/name; returns the path (caller frees). */
char *write_file (const char *name, const char *text);

/* Loads text from tmpdir/name (tmpdir/good.conf) and asserts success with
 * nothing logged.  The caller frees the config.
 */
struct config *load_good_named (const char *name, const char *text);
struct config *load_good (const char *text);
/* Loads text, expects -EINVAL and exactly the given messages, each
 * "LINE: message" (the file name is prepended).
 */
void load_bad_n (const char *text, size_t n, const char *const *expected);
void load_bad (const char *text, const char *expected);

/* cmocka group fixtures: the directory, its files, log capture. */
int group_setup (void **state);
int group_teardown (void **state);

#endif /* NBDCACHE_CONFIG_TEST_H */
