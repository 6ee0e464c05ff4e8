/* SPDX-License-Identifier: BSD-3-Clause */
/* test-bkey.c — unit tests for extent keys (bkey.h, bkey.c).
 *
 * WHAT: ordering (bkey_cmp, bkey_cmp_pos), overlap at the edges, cutting
 * the front and back of data and ZERO keys (a data key's offset moves with
 * its start, a ZERO key's does not), the flag predicates, and every rule
 * of bkey_invalid_leaf / bkey_invalid_ptr, including overflow corners.
 * HOW: plain keys on the stack; no device.
 */
#include <config.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "bkey.h"
#include "ondisk.h"

#define BUCKET_BLOCKS 256u
#define DATA_FIRST 5u
#define NBUCKETS 100u

static struct nc_key
data_key (uint16_t export_id, uint64_t end, uint32_t size, uint32_t bucket,
          uint32_t offset)
{
  struct nc_key k = {
    .end = end, .size = size, .bucket = bucket, .offset = offset,
    .export_id = export_id, .gen = 3,
  };
  return k;
}

static void
test_bkey_cmp (void **state)
{
  struct nc_key a = data_key (1, 100, 10, 5, 0);
  struct nc_key b = data_key (1, 200, 10, 5, 0);
  struct nc_key c = data_key (2, 50, 10, 5, 0);
  struct nc_key a2 = data_key (1, 100, 99, 7, 3);

  assert_true (bkey_cmp (&a, &b) < 0);
  assert_true (bkey_cmp (&b, &a) > 0);
  /* export id dominates the end */
  assert_true (bkey_cmp (&b, &c) < 0);
  assert_true (bkey_cmp (&c, &a) > 0);
  /* only (export_id, end) matter */
  assert_int_equal (bkey_cmp (&a, &a2), 0);
  assert_int_equal (bkey_cmp (&a, &a), 0);

  assert_int_equal (bkey_cmp_pos (&a, 1, 100), 0);
  assert_true (bkey_cmp_pos (&a, 1, 101) < 0);
  assert_true (bkey_cmp_pos (&a, 1, 99) > 0);
  assert_true (bkey_cmp_pos (&a, 2, 0) < 0);
  assert_true (bkey_cmp_pos (&c, 1, UINT64_MAX) > 0);
  assert_true (bkey_cmp_pos (&c, NC_EXPORT_ID_MAX, UINT64_MAX) < 0);

  /* large values do not wrap as a subtraction would */
  a.end = UINT64_MAX;
  b.end = 0;
  assert_true (bkey_cmp (&a, &b) > 0);
  assert_true (bkey_cmp (&b, &a) < 0);
}

static void
test_bkey_overlaps (void **state)
{
  struct nc_key k = data_key (3, 100, 10, 5, 0); /* [90, 100) */

  assert_int_equal (bkey_start (&k), 90);
  assert_true (bkey_overlaps (&k, 3, 90, 100));
  assert_true (bkey_overlaps (&k, 3, 0, 91));
  assert_true (bkey_overlaps (&k, 3, 99, 200));
  assert_true (bkey_overlaps (&k, 3, 95, 96));
  assert_true (bkey_overlaps (&k, 3, 0, UINT64_MAX));
  /* half-open edges */
  assert_false (bkey_overlaps (&k, 3, 0, 90));
  assert_false (bkey_overlaps (&k, 3, 100, 110));
  /* another export */
  assert_false (bkey_overlaps (&k, 2, 90, 100));
  assert_false (bkey_overlaps (&k, 4, 90, 100));
}

static void
test_bkey_cut_front_data (void **state)
{
  struct nc_key k = data_key (1, 100, 10, 7, 20); /* [90,100) at 20 */

  bkey_cut_front (&k, 93);
  assert_int_equal (bkey_start (&k), 93);
  assert_int_equal (k.end, 100);
  assert_int_equal (k.size, 7);
  assert_int_equal (k.offset, 23);     /* moved with the start */
  assert_int_equal (k.bucket, 7);
  assert_int_equal (k.gen, 3);

  bkey_cut_front (&k, 99);
  assert_int_equal (k.size, 1);
  assert_int_equal (k.offset, 29);
  assert_int_equal (bkey_start (&k), 99);
}

static void
test_bkey_cut_front_zero (void **state)
{
  struct nc_key k = data_key (1, 100, 10, 0, 0);

  k.flags = NC_KEY_ZERO | NC_KEY_DIRTY;
  bkey_cut_front (&k, 95);
  assert_int_equal (bkey_start (&k), 95);
  assert_int_equal (k.size, 5);
  assert_int_equal (k.offset, 0);      /* ZERO keys point nowhere */
  assert_int_equal (k.flags, NC_KEY_ZERO | NC_KEY_DIRTY);
}

static void
test_bkey_cut_back (void **state)
{
  struct nc_key k = data_key (1, 100, 10, 7, 20);
  struct nc_key z = data_key (1, 100, 10, 0, 0);

  bkey_cut_back (&k, 94);
  assert_int_equal (k.end, 94);
  assert_int_equal (k.size, 4);
  assert_int_equal (bkey_start (&k), 90);
  assert_int_equal (k.offset, 20);     /* the start did not move */

  z.flags = NC_KEY_ZERO;
  bkey_cut_back (&z, 91);
  assert_int_equal (z.end, 91);
  assert_int_equal (z.size, 1);
  assert_int_equal (z.offset, 0);

  /* cutting both ends of a data key keeps block i at offset + (i - start) */
  k = data_key (1, 1000, 100, 9, 50);  /* [900, 1000) at 50 */
  bkey_cut_front (&k, 950);
  bkey_cut_back (&k, 960);
  assert_int_equal (bkey_start (&k), 950);
  assert_int_equal (k.end, 960);
  assert_int_equal (k.offset, 100);
  assert_int_equal (k.size, 10);
}

static void
test_bkey_predicates (void **state)
{
  struct nc_key k = data_key (1, 10, 1, 5, 0);

  assert_false (bkey_is_zero (&k));
  assert_false (bkey_is_dirty (&k));
  assert_true (bkey_has_data (&k));
  k.flags = NC_KEY_DIRTY;
  assert_true (bkey_is_dirty (&k));
  assert_true (bkey_has_data (&k));
  k.flags = NC_KEY_ZERO;
  assert_true (bkey_is_zero (&k));
  assert_false (bkey_has_data (&k));
  k.flags = NC_KEY_DELETE;
  assert_false (bkey_has_data (&k));
}

static const char *
leaf (const struct nc_key *k)
{
  return bkey_invalid_leaf (k, BUCKET_BLOCKS, DATA_FIRST, NBUCKETS);
}

static void
test_bkey_invalid_leaf (void **state)
{
  struct nc_key good = data_key (1, 100, 10, DATA_FIRST, 0);
  struct nc_key k;

  assert_null (leaf (&good));
  k = good;
  k.flags = NC_KEY_DIRTY;
  assert_null (leaf (&k));
  k = data_key (NC_MAX_EXPORTS, 10, 10, NBUCKETS - 1,
                BUCKET_BLOCKS - 10);   /* every edge at once */
  assert_null (leaf (&k));

  k = good; k.size = 0;
  assert_non_null (leaf (&k));
  k = good; k.end = 9;                 /* start would be negative */
  assert_non_null (leaf (&k));
  k = good; k.end = 10;                /* [0, 10) is fine */
  assert_null (leaf (&k));
  k = good; k.flags = NC_KEY_DELETE;
  assert_non_null (leaf (&k));
  k = good; k.flags = 0x04;
  assert_non_null (leaf (&k));
  k = good; k.export_id = 0;
  assert_non_null (leaf (&k));
  k = good; k.export_id = NC_MAX_EXPORTS + 1;
  assert_non_null (leaf (&k));
  k = good; k.export_id = NC_EXPORT_ID_MAX;
  assert_non_null (leaf (&k));
  k = good; k.nonce = 1;
  assert_non_null (leaf (&k));
  k = good; k.bucket = DATA_FIRST - 1;
  assert_non_null (leaf (&k));
  k = good; k.bucket = 0;
  assert_non_null (leaf (&k));
  k = good; k.bucket = NBUCKETS;
  assert_non_null (leaf (&k));
  k = good; k.offset = BUCKET_BLOCKS - 9;
  assert_non_null (leaf (&k));
  k = good; k.offset = BUCKET_BLOCKS;
  assert_non_null (leaf (&k));
  k = good; k.size = BUCKET_BLOCKS + 1; k.end = 1000;
  assert_non_null (leaf (&k));
  /* offset + size must not wrap around 32 bits */
  k = good; k.offset = UINT32_MAX - 5; k.size = 10;
  assert_non_null (leaf (&k));
  k = good; k.offset = 5; k.size = UINT32_MAX - 2; k.end = UINT64_MAX;
  assert_non_null (leaf (&k));
}

static void
test_bkey_invalid_leaf_zero (void **state)
{
  struct nc_key k = data_key (2, 1ull << 40, 1u << 30, 0, 0);

  /* ZERO keys may be long and point nowhere (the bucket field is an
   * id)
   */
  k.gen = 0;
  k.flags = NC_KEY_ZERO;
  assert_null (leaf (&k));
  k.bucket = UINT32_MAX;
  assert_null (leaf (&k));
  k.flags = NC_KEY_ZERO | NC_KEY_DIRTY;
  assert_null (leaf (&k));
  /* and nowhere means offset and gen 0: a data key whose ZERO flag
   * flipped has a pointer
   */
  k.offset = 3;
  assert_non_null (leaf (&k));
  k.offset = 0;
  k.gen = 1;
  assert_non_null (leaf (&k));
  k.gen = 0;
  /* but the generic rules still apply */
  k.flags = NC_KEY_ZERO | NC_KEY_DELETE;
  assert_non_null (leaf (&k));
  k.flags = NC_KEY_ZERO;
  k.size = 0;
  assert_non_null (leaf (&k));
  k.size = 1;
  k.nonce = 7;
  assert_non_null (leaf (&k));
  k.nonce = 0;
  k.export_id = 0;
  assert_non_null (leaf (&k));
}

static void
test_bkey_invalid_ptr (void **state)
{
  struct nc_key p = {
    .end = UINT64_MAX, .size = 0, .bucket = DATA_FIRST,
    .export_id = NC_EXPORT_ID_MAX, .gen = 1, .nonce = 0x1234,
  };
  struct nc_key k;

  /* the rightmost-child sentinel is a valid pointer */
  assert_null (bkey_invalid_ptr (&p, DATA_FIRST, NBUCKETS));
  k = p; k.bucket = NBUCKETS - 1; k.export_id = 3; k.end = 77;
  assert_null (bkey_invalid_ptr (&k, DATA_FIRST, NBUCKETS));

  k = p; k.bucket = DATA_FIRST - 1;
  assert_non_null (bkey_invalid_ptr (&k, DATA_FIRST, NBUCKETS));
  k = p; k.bucket = NBUCKETS;
  assert_non_null (bkey_invalid_ptr (&k, DATA_FIRST, NBUCKETS));
  k = p; k.flags = NC_KEY_DIRTY;
  assert_non_null (bkey_invalid_ptr (&k, DATA_FIRST, NBUCKETS));
  k = p; k.flags = NC_KEY_ZERO;
  assert_non_null (bkey_invalid_ptr (&k, DATA_FIRST, NBUCKETS));
  k = p; k.flags = NC_KEY_DELETE;
  assert_non_null (bkey_invalid_ptr (&k, DATA_FIRST, NBUCKETS));
  k = p; k.nonce = 0;
  assert_non_null (bkey_invalid_ptr (&k, DATA_FIRST, NBUCKETS));
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_bkey_cmp),
    cmocka_unit_test (test_bkey_overlaps),
    cmocka_unit_test (test_bkey_cut_front_data),
    cmocka_unit_test (test_bkey_cut_front_zero),
    cmocka_unit_test (test_bkey_cut_back),
    cmocka_unit_test (test_bkey_predicates),
    cmocka_unit_test (test_bkey_invalid_leaf),
    cmocka_unit_test (test_bkey_invalid_leaf_zero),
    cmocka_unit_test (test_bkey_invalid_ptr),
  };

  return cmocka_run_group_tests (tests, NULL, NULL) ? 1 : 0;
}
