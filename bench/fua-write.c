/* SPDX-License-Identifier: BSD-3-Clause */
/* fua-write.c — sequential writes with the FUA flag at queue depth 1, for
 * run-bench's FUA row.
 *
 * WHAT: connects to an NBD URI (libnbd), writes BS-byte blocks one after
 * another from offset 0 (wrapping at the export's end), each with
 * LIBNBD_CMD_FLAG_FUA, one at a time, for RAMP unmeasured then RUNTIME
 * measured seconds, and prints the measured writes per second.
 * WHY: fio's nbd engine never sets FUA (it maps --fsync to NBD_CMD_FLUSH
 * and sends every write with flags 0), and a FUA write is what a guest's
 * O_DSYNC / journal write becomes; nbdsh would measure Python.
 * FAILURE: any libnbd error is printed and the exit status is 1.
 *
 * Usage: fua-write URI BS RUNTIME_S RAMP_S
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libnbd.h>

static double
now_s (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

int
main (int argc, char **argv)
{
  struct nbd_handle *nbd;
  uint64_t bs, off = 0, n = 0;
  int64_t size;
  double runtime, ramp, t0, start, t;
  char *buf;

  if (argc != 5) {
    fprintf (stderr, "usage: %s URI BS RUNTIME_S RAMP_S\n", argv[0]);
    return 1;
  }
  bs = strtoull (argv[2], NULL, 10);
  runtime = atof (argv[3]);
  ramp = atof (argv[4]);
  if (bs == 0 || bs > 64 * 1024 * 1024 || runtime <= 0 || ramp < 0) {
    fprintf (stderr, "%s: bad BS, RUNTIME_S or RAMP_S\n", argv[0]);
    return 1;
  }
  buf = malloc (bs);
  if (buf == NULL) {
    perror ("malloc");
    return 1;
  }
  for (uint64_t i = 0; i < bs; i++)
    buf[i] = (char) (i * 7 + 1);

  nbd = nbd_create ();
  if (nbd == NULL || nbd_connect_uri (nbd, argv[1]) == -1)
    goto fail;
  if ((size = nbd_get_size (nbd)) == -1)
    goto fail;
  if ((uint64_t) size < bs) {
    fprintf (stderr, "%s: the export is smaller than one write\n", argv[0]);
    return 1;
  }
  if (nbd_can_fua (nbd) != 1) {
    fprintf (stderr, "%s: the server does not offer FUA\n", argv[0]);
    return 1;
  }

  /* Unmeasured ramp, then count the writes completed in RUNTIME_S. */
  t0 = now_s ();
  start = 0;
  for (;;) {
    if (nbd_pwrite (nbd, buf, bs, off, LIBNBD_CMD_FLAG_FUA) == -1)
      goto fail;
    off += bs;
    if (off + bs > (uint64_t) size)
      off = 0;
    t = now_s ();
    if (start == 0) {
      if (t - t0 >= ramp)
        start = t;
      continue;
    }
    n++;
    if (t - start >= runtime)
      break;
  }
  printf ("%.1f\n", n / (t - start));
  nbd_shutdown (nbd, 0);
  nbd_close (nbd);
  free (buf);
  return 0;

 fail:
  fprintf (stderr, "%s: %s\n", argv[0], nbd_get_error ());
  return 1;
}
