/* test_od_range.c: the Range parser of src/range.c (RFC 9110 14) and
 * If-Range. One range is honoured; unsatisfiable ones are 416; anything
 * else, hostile input included (numbers past 64 bits, spaces, bytes=5-3,
 * thousands of commas, an empty file), is ignored: the whole file, never a
 * wrapped number or a slice past the end. Also under ASan. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* After the four above, which it needs. */
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orfeasd.h"

static od_range_kind parse(const char *v, uint64_t size, uint64_t *f,
                           uint64_t *l) {
  *f = *l = 0xdeadbeef;
  return od_range_parse(v, size, f, l);
}

static void expect_partial(const char *v, uint64_t size, uint64_t first,
                           uint64_t last) {
  uint64_t f, l;
  od_range_kind k = parse(v, size, &f, &l);
  if (k != OD_RANGE_PARTIAL || f != first || l != last)
    fail_msg("%s of %llu: kind %d [%llu, %llu], want 206 [%llu, %llu]", v,
             (unsigned long long)size, (int)k, (unsigned long long)f,
             (unsigned long long)l, (unsigned long long)first,
             (unsigned long long)last);
}

static void expect_kind(const char *v, uint64_t size, od_range_kind want) {
  uint64_t f, l;
  od_range_kind k = parse(v, size, &f, &l);
  if (k != want)
    fail_msg("%s of %llu: kind %d, want %d", v, (unsigned long long)size,
             (int)k, (int)want);
}

static void test_one_range(void **s) {
  (void)s;
  static const struct {
    const char *v;
    uint64_t size, first, last;
  } ok[] = {
      {"bytes=0-99", 1000, 0, 99},
      {"bytes=100-", 1000, 100, 999},
      {"bytes=-100", 1000, 900, 999},
      {"bytes=999-999", 1000, 999, 999},
      {"bytes=0-0", 1, 0, 0},
      /* A last byte past the end ends at the file's last; a suffix longer
       * than the file is the whole file. */
      {"bytes=500-5000", 1000, 500, 999},
      {"bytes=-5000", 1000, 0, 999},
      /* The unit in any case; empty list elements and whitespace around
       * the commas (the list rule); leading zeros. */
      {"Bytes=1-2", 10, 1, 2},
      {"BYTES=1-2", 10, 1, 2},
      {"bytes= 1-2 ,", 10, 1, 2},
      {"bytes=,,\t3-4, ,", 10, 3, 4},
      {"bytes=0007-0008", 10, 7, 8},
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
    expect_partial(ok[i].v, ok[i].size, ok[i].first, ok[i].last);
  expect_kind(NULL, 10, OD_RANGE_NONE);
}

static void test_unsatisfiable(void **s) {
  (void)s;
  expect_kind("bytes=1000-", 1000, OD_RANGE_UNSATISFIABLE);
  expect_kind("bytes=1000-2000", 1000, OD_RANGE_UNSATISFIABLE);
  expect_kind("bytes=-0", 1000, OD_RANGE_UNSATISFIABLE);
  expect_kind("bytes=-000", 1000, OD_RANGE_UNSATISFIABLE);
  /* An empty file: no first byte to start at. */
  expect_kind("bytes=0-", 0, OD_RANGE_UNSATISFIABLE);
  expect_kind("bytes=0-0", 0, OD_RANGE_UNSATISFIABLE);
  expect_kind("bytes=-0", 0, OD_RANGE_UNSATISFIABLE);
}

static void test_ignored(void **s) {
  (void)s;
  static const char *const bad[] = {
      "",
      "bytes",
      "bytes=",
      "bytes=,",
      "bytes=-",
      "bytes=--5",
      "bytes=5",
      "bytes=a-b",
      "bytes=5-3", /* last before first: invalid, not empty */
      "bytes=+1-2",
      "bytes=1-+2",
      "bytes=0x10-20",
      "bytes=1 -2", /* whitespace inside a range */
      "bytes=1- 2",
      "bytes =1-2",
      "bytes=1-2;x",
      "bytes=1.5-2",
      "items=0-5", /* another unit */
      "none",
      "bytes=0-1,2-3", /* more than one range: no multipart */
      "bytes=0-1, 5-",
      "bytes=0-1,-1",
      "bytes=900-,0-0",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    expect_kind(bad[i], 1000, OD_RANGE_IGNORED);
  /* A suffix of an empty file is satisfiable (a non-zero length) but has
   * no byte to name in Content-Range: the whole (empty) file. */
  expect_kind("bytes=-5", 0, OD_RANGE_IGNORED);
  /* Several ranges are ignored even when one of them is unsatisfiable. */
  expect_kind("bytes=5000-,0-1", 1000, OD_RANGE_IGNORED);
}

static void test_past_64_bits(void **s) {
  (void)s;
  /* 2^64 and beyond never wrap to a small number. */
  expect_kind("bytes=18446744073709551616-", 1000, OD_RANGE_UNSATISFIABLE);
  expect_kind("bytes=99999999999999999999999999999999-", 1000,
              OD_RANGE_UNSATISFIABLE);
  expect_kind("bytes=18446744073709551615-18446744073709551615", 1000,
              OD_RANGE_UNSATISFIABLE);
  expect_partial("bytes=10-99999999999999999999999999999999", 1000, 10, 999);
  expect_partial("bytes=-99999999999999999999999999999999", 1000, 0, 999);
  expect_partial("bytes=0-18446744073709551616", 1000, 0, 999);
  /* Both past 64 bits: compared exactly, not as two saturated values. */
  expect_kind("bytes=18446744073709551617-18446744073709551616", 1000,
              OD_RANGE_IGNORED);
  expect_kind("bytes=28446744073709551616-18446744073709551616", 1000,
              OD_RANGE_IGNORED);
  expect_kind("bytes=18446744073709551616-18446744073709551617", 1000,
              OD_RANGE_UNSATISFIABLE);
  expect_kind("bytes=0000000000000000000000000000000000000007-3", 1000,
              OD_RANGE_IGNORED);
  /* The largest file size there is. */
  expect_partial("bytes=-1", UINT64_MAX, UINT64_MAX - 1, UINT64_MAX - 1);
  expect_partial("bytes=18446744073709551613-", UINT64_MAX,
                 18446744073709551613ull, UINT64_MAX - 1);
}

static void test_many_commas(void **s) {
  (void)s;
  /* 100 000 commas around one range: one range, honoured; with a second
   * range at the far end: ignored. One pass either way. */
  size_t n = 100000;
  char *v = malloc(n + 64);
  assert_non_null(v);
  memcpy(v, "bytes=", 6);
  memset(v + 6, ',', n);
  snprintf(v + 6 + n, 58, "1-2");
  expect_partial(v, 10, 1, 2);
  snprintf(v + 6 + n, 58, "1-2,3-4");
  expect_kind(v, 10, OD_RANGE_IGNORED);
  /* 50 000 ranges: ignored at the second. */
  char *w = malloc(4 * 50000 + 16);
  assert_non_null(w);
  size_t len = (size_t)snprintf(w, 16, "bytes=");
  for (int i = 0; i < 50000; i++) {
    memcpy(w + len, "0-0,", 4);
    len += 4;
  }
  w[len] = '\0';
  expect_kind(w, 10, OD_RANGE_IGNORED);
  free(v);
  free(w);
}

static void test_if_range(void **s) {
  (void)s;
  const char *tag = "\"1a-2b-3c\"";
  assert_true(od_if_range_holds(NULL, tag));
  assert_true(od_if_range_holds("\"1a-2b-3c\"", tag));
  assert_true(od_if_range_holds(" \"1a-2b-3c\" ", tag));
  assert_false(od_if_range_holds("\"1a-2b-3d\"", tag));
  assert_false(od_if_range_holds("W/\"1a-2b-3c\"", tag)); /* weak: never */
  assert_false(od_if_range_holds("1a-2b-3c", tag));
  assert_false(od_if_range_holds("\"1a-2b-3c\", \"x\"", tag));
  assert_false(od_if_range_holds("Thu, 03 Dec 2026 12:00:00 GMT", tag));
  assert_false(od_if_range_holds("", tag));
  assert_false(od_if_range_holds("*", tag));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_one_range),   cmocka_unit_test(test_unsatisfiable),
      cmocka_unit_test(test_ignored),     cmocka_unit_test(test_past_64_bits),
      cmocka_unit_test(test_many_commas), cmocka_unit_test(test_if_range),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
