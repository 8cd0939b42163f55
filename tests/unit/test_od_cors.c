/* test_od_cors.c: --cors-origins (src/cors.c): what parses, what is
 * refused with a sentence, which Origin gets which
 * Access-Control-Allow-Origin, and the WebSocket rule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* After the four above, which it needs. */
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "orfeasd.h"

static od_cors cors; /* large: not on the stack */

static void test_parse(void **s) {
  (void)s;
  char err[200];
  assert_int_equal(od_cors_parse(&cors, "", err, sizeof err), 0);
  assert_int_equal(cors.n, 0);
  assert_false(cors.any);
  assert_int_equal(
      od_cors_parse(&cors,
                    " http://localhost:8000, https://a.example.org ,"
                    "http://[::1]:3000,,",
                    err, sizeof err),
      0);
  assert_int_equal(cors.n, 3);
  assert_string_equal(cors.origins[1], "https://a.example.org");
  assert_int_equal(od_cors_parse(&cors, "*", err, sizeof err), 0);
  assert_true(cors.any);
  static const char *const bad[] = {
      "localhost:8000",       "http://",      "http://a/b", "ftp://x",
      "http://a b",           "null",         "http://a?x", "https://a,foo",
      "http://ok.example,**", "javascript:1",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    err[0] = '\0';
    if (od_cors_parse(&cors, bad[i], err, sizeof err) != -1)
      fail_msg("accepted %s", bad[i]);
    assert_non_null(strstr(err, "--cors-origins"));
  }
  char many[4096];
  size_t used = 0;
  for (int i = 0; i <= OD_CORS_MAX; i++)
    used += (size_t)snprintf(many + used, sizeof many - used,
                             "http://h%d.example,", i);
  assert_int_equal(od_cors_parse(&cors, many, err, sizeof err), -1);
  assert_non_null(strstr(err, "at most"));
}

static void test_allow(void **s) {
  (void)s;
  char err[200];
  assert_int_equal(
      od_cors_parse(&cors, "http://localhost:8000", err, sizeof err), 0);
  assert_string_equal(od_cors_allow(&cors, "http://localhost:8000"),
                      "http://localhost:8000");
  assert_non_null(od_cors_allow(&cors, "HTTP://LOCALHOST:8000"));
  assert_null(od_cors_allow(&cors, "http://localhost:8001"));
  assert_null(od_cors_allow(&cors, "http://localhost:8000.evil.example"));
  assert_null(od_cors_allow(&cors, "null"));
  assert_null(od_cors_allow(&cors, NULL));
  assert_null(od_cors_allow(&cors, ""));
  assert_int_equal(od_cors_parse(&cors, "*", err, sizeof err), 0);
  assert_string_equal(od_cors_allow(&cors, "https://anything.example"), "*");
  assert_null(od_cors_allow(&cors, NULL));
}

static void test_websocket_rule(void **s) {
  (void)s;
  char err[200];
  assert_int_equal(
      od_cors_parse(&cors, "http://localhost:8000", err, sizeof err), 0);
  assert_true(od_cors_same_origin("http://127.0.0.1:5000", "127.0.0.1:5000"));
  assert_true(od_cors_same_origin("https://studio.example", "studio.example"));
  assert_false(od_cors_same_origin("http://127.0.0.1:5001", "127.0.0.1:5000"));
  assert_false(od_cors_same_origin("null", "127.0.0.1:5000"));
  assert_true(od_cors_page_allowed(&cors, NULL, "127.0.0.1:5000"));
  assert_true(
      od_cors_page_allowed(&cors, "http://127.0.0.1:5000", "127.0.0.1:5000"));
  assert_true(
      od_cors_page_allowed(&cors, "http://localhost:8000", "127.0.0.1:5000"));
  assert_false(
      od_cors_page_allowed(&cors, "http://evil.example", "127.0.0.1:5000"));
  assert_false(od_cors_page_allowed(&cors, "http://evil.example", NULL));
  /* "null" is a sandboxed frame or a file:// page, allowed only by "*". */
  assert_false(od_cors_page_allowed(&cors, "null", "127.0.0.1:5000"));
  assert_false(od_cors_page_allowed(&cors, "", "127.0.0.1:5000"));
  assert_int_equal(od_cors_parse(&cors, "*", err, sizeof err), 0);
  assert_true(od_cors_page_allowed(&cors, "null", "127.0.0.1:5000"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse),
      cmocka_unit_test(test_allow),
      cmocka_unit_test(test_websocket_rule),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
