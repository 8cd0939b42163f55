/* Where a request's body ends, and control bytes in its path
 * (src/framing.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "orfeasd.h"

/* The verdict on a list of (name, value) headers, NULL-terminated. */
static const char *verdict(const char *const *h) {
  od_framing f;
  memset(&f, 0, sizeof f);
  for (; h[0] != NULL; h += 2)
    od_framing_header(&f, h[0], h[1]);
  return od_framing_verdict(&f);
}

static void sound_framing(void **state) {
  (void)state;
  const char *none[] = {"Host", "x", NULL};
  const char *len[] = {"content-length", "12", NULL};
  const char *same[] = {"Content-Length", "12", "Content-Length", " 12 ", NULL};
  const char *merged[] = {"Content-Length", "12, 12", NULL};
  const char *chunked[] = {"Transfer-Encoding", " Chunked", NULL};
  assert_null(verdict(none));
  assert_null(verdict(len));
  assert_null(verdict(same));
  assert_null(verdict(merged));
  assert_null(verdict(chunked));
}

static void ambiguous_framing(void **state) {
  (void)state;
  const char *both[] = {"Content-Length", "5", "Transfer-Encoding", "chunked",
                        NULL};
  const char *differ[] = {"Content-Length", "5", "Content-Length", "50", NULL};
  const char *list[] = {"Content-Length", "5, 50", NULL};
  const char *sign[] = {"Content-Length", "+5", NULL};
  const char *huge[] = {"Content-Length", "99999999999999999999999", NULL};
  const char *empty[] = {"Content-Length", "", NULL};
  const char *gzip[] = {"Transfer-Encoding", "gzip, chunked", NULL};
  const char *two[] = {"Transfer-Encoding", "chunked", "Transfer-Encoding",
                       "chunked", NULL};
  const char *ident[] = {"Transfer-Encoding", "identity", NULL};
  assert_non_null(strstr(verdict(both), "both"));
  assert_non_null(strstr(verdict(differ), "differ"));
  assert_non_null(verdict(list));
  assert_non_null(verdict(sign));
  assert_non_null(verdict(huge));
  assert_non_null(verdict(empty));
  assert_non_null(strstr(verdict(gzip), "chunked"));
  assert_non_null(verdict(two));
  assert_non_null(verdict(ident));
}

static void control_bytes_in_paths(void **state) {
  (void)state;
  const char *bad[] = {
      "/health%00.png", "/a%0A", "/a%0d%0aSet-Cookie:", "/%7F", "/%7f", "/a\tb",
      "/a%1fb",         "/\x01"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_equal(od_path_has_control(bad[i]), 1);
  const char *good[] = {"/health",  "/api/job-status/%41bc",
                        "/a%20b",   "/a%",
                        "/a%0",     "/a%zz",
                        "/a?x=%00", "/%C3%A9",
                        "/%80"};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
    assert_int_equal(od_path_has_control(good[i]), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(sound_framing),
      cmocka_unit_test(ambiguous_framing),
      cmocka_unit_test(control_bytes_in_paths),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
