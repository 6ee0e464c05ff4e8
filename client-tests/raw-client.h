/* SPDX-License-Identifier: BSD-3-Clause */
/* raw-client.h — a hand-rolled NBD client for protocol tests.
 *
 * Owns: one Unix-socket connection per struct raw_conn, and the byte-level
 * encoding of options and requests and the decoding and checking of
 * option replies and transmission replies (simple, structured and
 * extended), using common/protocol's nbd-wire.h and nbd-proto.h.
 * Threads: none; a connection is used by one thread.
 * Failure: these are cmocka helpers: anything the spec forbids (a bad
 * magic, a wrong cookie, an extended reply whose offset is not the
 * request's, a chunk outside the request, a reply type that cannot appear
 * here) fails the current test.  Functions named *_all / raw_wait_closed
 * report a hang-up to the caller instead, for tests that provoke one.
 * Every socket has send and receive timeouts (60 s per call), so a server
 * that stops answering fails a test instead of hanging it.
 * Not here: what a test expects (test-raw.c).
 */
#ifndef NBDCACHE_RAW_CLIENT_H
#define NBDCACHE_RAW_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct raw_conn {
  int fd;                       /* -1 once closed */
  bool structured;              /* structured replies negotiated */
  bool extended;                /* extended headers negotiated */
  uint64_t size;                /* bytes, from EXPORT_NAME / INFO / GO */
  uint16_t eflags;              /* transmission flags */
  uint32_t block_min, block_pref, block_max; /* bytes, 0 = not sent */
  bool have_base_ctx;           /* base:allocation was selected */
  uint32_t base_ctx_id;
  uint64_t cookie;              /* next cookie to use */
};

struct raw_opt_reply {
  uint32_t type;                /* NBD_REP_* */
  uint32_t len;                 /* bytes of data */
  unsigned char *data;          /* malloc'd, NUL-terminated; caller frees */
};

struct raw_extents {
  bool ext;                     /* came as BLOCK_STATUS_EXT */
  uint32_t ctx_id;
  size_t n;
  uint64_t len[512];            /* bytes */
  uint64_t flags[512];          /* NBD_STATE_* */
};

struct raw_reply {
  uint32_t error;               /* NBD_E*: the simple reply's, or the first
                                   error chunk's */
  unsigned chunks;              /* reply messages received */
  uint64_t data_bytes;          /* bytes of data + hole chunks */
  struct raw_extents *bs;       /* filled for BLOCK_STATUS if non-NULL */
};

/* ---- sockets ---- */
int raw_sock_open (const char *path);
/* 0 or -errno (-EPIPE / -ECONNRESET when the server hung up). */
int raw_send_all (int fd, const void *buf, size_t n);
/* Bytes read (< n only at EOF), or -errno (-EAGAIN on timeout). */
ssize_t raw_recv_all (int fd, void *buf, size_t n);
void raw_xsend (int fd, const void *buf, size_t n);
void raw_xrecv (int fd, void *buf, size_t n);
/* True if the server closes the connection (after up to 1 MiB of data). */
bool raw_wait_closed (int fd);

/* ---- handshake ---- */
/* Connect, check the greeting (fixed newstyle, NO_ZEROES offered), send
 * the client flags `cflags`.
 */
void raw_open (struct raw_conn *c, const char *path, uint32_t cflags);
void raw_close (struct raw_conn *c);
void raw_send_option (int fd, uint32_t opt, const void *data, uint32_t len);
void raw_recv_option_reply (int fd, uint32_t opt, struct raw_opt_reply *r);
/* For options answered by one reply: sends, returns the reply type. */
uint32_t raw_option (int fd, uint32_t opt, const void *data, uint32_t len);
void raw_assert_rep (uint32_t got, uint32_t want);
/* NBD_OPT_INFO or NBD_OPT_GO asking for block sizes: NBD_REP_ACK (with
 * c->size, eflags, block_* set) or the error reply type.
 */
uint32_t raw_info_go (struct raw_conn *c, uint32_t opt, const char *name);
void raw_go (struct raw_conn *c, const char *name);
void raw_structured (struct raw_conn *c);
void raw_set_meta_base (struct raw_conn *c, const char *name);
/* NBD_OPT_EXPORT_NAME; checks the 124 zero bytes unless no_zeroes. */
void raw_export_name (struct raw_conn *c, const char *name, bool no_zeroes);

/* ---- transmission (compact or extended headers per c->extended) ---- */
uint64_t raw_send_request (struct raw_conn *c, uint16_t flags, uint16_t type,
                           uint64_t offset, uint64_t count,
                           const void *payload, size_t payload_len);
/* The whole reply to that request, which must be next on the wire.  READ
 * data (and holes, as zeroes) go to buf.
 */
void raw_recv_reply (struct raw_conn *c, uint64_t cookie, uint16_t type,
                     uint64_t offset, uint64_t count, uint8_t *buf,
                     struct raw_reply *rep);
/* raw_send_request + raw_recv_reply (WRITE sends `count` bytes of
 * payload); returns the NBD error.  rep may be NULL.
 */
uint32_t raw_command (struct raw_conn *c, uint16_t flags, uint16_t type,
                      uint64_t offset, uint64_t count, const void *payload,
                      uint8_t *buf, struct raw_reply *rep);
void raw_assert_error (uint32_t got, uint32_t want);

/* ---- liveness ---- */
/* A fresh connection to export `name` (at least 1 MiB + 4 KiB) writes 4 KiB
 * at 1 MiB and reads it back: the server survived what a test did to it.
 */
void raw_check_server_alive (const char *path, const char *name);

#endif /* NBDCACHE_RAW_CLIENT_H */
