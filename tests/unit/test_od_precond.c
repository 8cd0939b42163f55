/* test_od_precond.c: the conditional requests of src/precond.c (RFC 9110
 * 13): a file's entity tag changes when the file is replaced, entity-tag
 * lists under strong and weak comparison, the three HTTP-date forms, and
 * 13.2.2's order (If-Match before If-Unmodified-Since, both before
 * If-None-Match / If-Modified-Since). Also under ASan. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* After the four above, which it needs. */
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "orfeasd.h"

static void test_etag(void **s) {
  (void)s;
  char dir[] = "/tmp/od_precond_XXXXXX";
  assert_non_null(mkdtemp(dir));
  char p[128], tmp[128];
  snprintf(p, sizeof p, "%s/model.stl", dir);
  snprintf(tmp, sizeof tmp, "%s/model.stl.tmp", dir);
  FILE *f = fopen(p, "w");
  assert_non_null(f);
  fputs("solid a", f);
  fclose(f);
  struct stat st;
  assert_int_equal(stat(p, &st), 0);
  char a[OD_ETAG_MAX], b[OD_ETAG_MAX];
  od_etag_of(&st, a);
  assert_true(a[0] == '"' && a[strlen(a) - 1] == '"' && strlen(a) > 6);
  od_etag_of(&st, b);
  assert_string_equal(a, b); /* the same file: the same tag */
  /* Not the numbers themselves: no inode number in a tag (a scanner's
   * finding), in hex or decimal. */
  char num[32];
  snprintf(num, sizeof num, "%llx", (unsigned long long)st.st_ino);
  assert_null(strstr(a, num));
  snprintf(num, sizeof num, "%llu", (unsigned long long)st.st_ino);
  assert_null(strstr(a, num));
  /* The same size, written again and renamed over it (as fileio.c
   * replaces a model): another tag. */
  f = fopen(tmp, "w");
  assert_non_null(f);
  fputs("solid b", f);
  fclose(f);
  assert_int_equal(rename(tmp, p), 0);
  assert_int_equal(stat(p, &st), 0);
  od_etag_of(&st, b);
  assert_string_not_equal(a, b);
  /* The tag is a valid entity-tag, and matches itself strongly. */
  assert_true(od_etag_list_has(b, b, 0));
  unlink(p);
  rmdir(dir);
}

static void test_lists(void **s) {
  (void)s;
  const char *t = "\"1-2-3\"";
  assert_true(od_etag_list_has("*", t, 0));
  assert_true(od_etag_list_has(" * ", t, 0));
  assert_true(od_etag_list_has("\"1-2-3\"", t, 0));
  assert_true(od_etag_list_has("\"x\", \"1-2-3\"", t, 0));
  assert_true(od_etag_list_has("\"x\",\"1-2-3\" , \"y\"", t, 0));
  assert_true(od_etag_list_has(",,, \"1-2-3\",,", t, 0));
  assert_false(od_etag_list_has("\"1-2-4\"", t, 0));
  assert_false(od_etag_list_has("\"1-2-3", t, 0)); /* unterminated */
  assert_false(od_etag_list_has("1-2-3", t, 0));   /* unquoted */
  assert_false(od_etag_list_has("\"1-2-3\"x", t, 0));
  assert_false(od_etag_list_has("", t, 0));
  assert_false(od_etag_list_has("**", t, 0));
  assert_false(od_etag_list_has(NULL, t, 0));
  /* Weak tags: only under weak comparison (If-None-Match). */
  assert_false(od_etag_list_has("W/\"1-2-3\"", t, 0));
  assert_true(od_etag_list_has("W/\"1-2-3\"", t, 1));
  assert_true(od_etag_list_has("\"a\", W/\"1-2-3\"", t, 1));
  /* Garbage between tags does not hide a later match. */
  assert_true(od_etag_list_has("junk, \"1\"x, \"1-2-3\"", t, 0));
  /* A long list: one pass. */
  size_t n = 200000;
  char *big = malloc(n + 16);
  assert_non_null(big);
  for (size_t i = 0; i < n; i += 4)
    memcpy(big + i, "\"x\",", 4);
  memcpy(big + n, "\"1-2-3\"", 8);
  assert_true(od_etag_list_has(big, t, 0));
  big[n] = '\0';
  assert_false(od_etag_list_has(big, t, 0));
  free(big);
}

static void test_dates(void **s) {
  (void)s;
  time_t t = 0;
  /* RFC 9110 5.6.7's example, in its three forms. */
  assert_int_equal(od_http_date("Sun, 06 Nov 1994 08:49:37 GMT", &t), 0);
  assert_int_equal((long long)t, 784111777LL);
  t = 0;
  assert_int_equal(od_http_date("Sunday, 06-Nov-94 08:49:37 GMT", &t), 0);
  assert_int_equal((long long)t, 784111777LL);
  t = 0;
  assert_int_equal(od_http_date("Sun Nov  6 08:49:37 1994", &t), 0);
  assert_int_equal((long long)t, 784111777LL);
  static const char *const bad[] = {
      "",
      "yesterday",
      "Sun, 06 Nov 1994 08:49:37",
      "Sun, 06 Nov 1994 08:49:37 GMT junk",
      "Sun, 06 Nov 1994 08:49:37 PST",
      "1994-11-06T08:49:37Z",
      "\"1-2-3\"",
      "Sun, 99 Nov 1994 08:49:37 GMT",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (od_http_date(bad[i], &t) == 0)
      fail_msg("took %s as a date", bad[i]);
  assert_int_equal(od_http_date(NULL, &t), -1);
}

static void test_order(void **s) {
  (void)s;
  const char *tag = "\"1-2-3\"";
  time_t lm = 784111777; /* Sun, 06 Nov 1994 08:49:37 GMT */
#define SAME "Sun, 06 Nov 1994 08:49:37 GMT"
#define BEFORE "Sun, 06 Nov 1994 08:49:36 GMT"
#define AFTER "Sun, 06 Nov 1994 08:49:38 GMT"
#define TAG "\"1-2-3\""
  static const struct {
    od_cond_headers h;
    int want;
  } cases[] = {
      {{0}, 0},
      /* If-Match (strong comparison). */
      {{.if_match = TAG}, 0},
      {{.if_match = "*"}, 0},
      {{.if_match = "\"old\""}, 412},
      {{.if_match = "W/" TAG}, 412},
      /* If-Unmodified-Since: 412 once the file is newer than the date; a
       * value that is no date is ignored. */
      {{.if_unmodified_since = SAME}, 0},
      {{.if_unmodified_since = AFTER}, 0},
      {{.if_unmodified_since = BEFORE}, 412},
      {{.if_unmodified_since = "not a date"}, 0},
      /* If-Match decides over If-Unmodified-Since (13.2.2 step 2 is
       * skipped when step 1 ran), both ways. */
      {{.if_match = TAG, .if_unmodified_since = BEFORE}, 0},
      {{.if_match = "\"old\"", .if_unmodified_since = AFTER}, 412},
      /* If-None-Match (weak comparison) and If-Modified-Since: 304. */
      {{.if_none_match = TAG}, 304},
      {{.if_none_match = "W/" TAG}, 304},
      {{.if_none_match = "*"}, 304},
      {{.if_none_match = "\"old\""}, 0},
      {{.if_modified_since = SAME}, 304},
      {{.if_modified_since = AFTER}, 304},
      {{.if_modified_since = BEFORE}, 0},
      {{.if_modified_since = "Sun, 06 Nov 1994"}, 0},
      /* If-None-Match present: If-Modified-Since is not looked at. */
      {{.if_none_match = "\"old\"", .if_modified_since = SAME}, 0},
      /* 412 comes before 304. */
      {{.if_match = "\"old\"", .if_none_match = TAG}, 412},
      {{.if_unmodified_since = BEFORE, .if_modified_since = SAME}, 412},
      {{.if_match = TAG, .if_none_match = TAG}, 304},
  };
#undef SAME
#undef BEFORE
#undef AFTER
#undef TAG
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int got = od_precond_eval(&cases[i].h, tag, lm);
    if (got != cases[i].want)
      fail_msg("case %zu: %d, want %d", i, got, cases[i].want);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_etag),
      cmocka_unit_test(test_lists),
      cmocka_unit_test(test_dates),
      cmocka_unit_test(test_order),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
