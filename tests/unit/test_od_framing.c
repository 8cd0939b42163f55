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

/* The verdict on one header line as received (lengths given: a NUL
 * inside is part of it). */
static const char *field(const char *name, size_t nl, const char *value,
                         size_t vl) {
  od_framing f;
  memset(&f, 0, sizeof f);
  od_framing_field(&f, name, nl, value, vl);
  return od_framing_verdict(&f);
}

#define FIELD(n, v) field(n, sizeof n - 1, v, sizeof v - 1)

static void header_bytes(void **state) {
  (void)state;
  assert_null(FIELD("Content-Length", "5"));
  assert_null(FIELD("X-Odd_Name!#$%&'*+.^`|~", "a\tb \x80\xff"));
  assert_null(FIELD("Transfer-Encoding", "chunked"));
  /* RFC 9112 5.1: whitespace between the name and its colon. */
  assert_non_null(FIELD("Transfer-Encoding ", "chunked"));
  assert_non_null(FIELD("Content-Length\t", "5"));
  assert_non_null(FIELD("X A", "1"));
  assert_non_null(FIELD("X\x00A", "1"));
  assert_non_null(FIELD("", "1"));
  /* RFC 9110 5.5: NUL, CR, LF in a value. */
  assert_non_null(FIELD("X-A", "a\rTransfer-Encoding: chunked"));
  assert_non_null(FIELD("Content-Length", "5\x00, 40"));
  assert_non_null(FIELD("X-A", "a\nb"));
  /* obs-fold as libmicrohttpd 0.9.75 hands it over: the continuation
   * appended to the name. */
  assert_non_null(FIELD("Transfer-Encodingchunked", ""));
  assert_non_null(FIELD("content-length5", "x"));
  assert_null(FIELD("Content-Location", "/a"));
  /* Two Host headers (RFC 9112 3.2): which site is asked for? */
  od_framing f;
  memset(&f, 0, sizeof f);
  od_framing_field(&f, "Host", 4, "localhost", 9);
  assert_null(od_framing_verdict(&f));
  od_framing_field(&f, "host", 4, "evil.example", 12);
  assert_non_null(strstr(od_framing_verdict(&f), "Host"));
  /* None: refused when the caller says one is due (HTTP/1.1), not for
   * HTTP/1.0; an empty one is a Host (RFC 9112 3.2 allows it). */
  memset(&f, 0, sizeof f);
  assert_null(od_framing_verdict(&f));
  f.need_host = 1;
  assert_non_null(strstr(od_framing_verdict(&f), "Host"));
  od_framing_field(&f, "Host", 4, "", 0);
  assert_null(od_framing_verdict(&f));
}

/* RFC 6455 4.1: a WebSocket upgrade is a GET without a body; one with a
 * body is refused. An empty one, or another protocol's upgrade, is not. */
static void upgrade_with_a_body(void **state) {
  (void)state;
  const char *len[] = {"Upgrade", "websocket", "Content-Length", "6", NULL};
  const char *chunked[] = {"upgrade", "WebSocket", "Transfer-Encoding",
                           "chunked", NULL};
  const char *listed[] = {"Upgrade", "h2c,\twebsocket", "Content-Length", "1",
                          NULL};
  const char *empty[] = {"Upgrade", "websocket", "Content-Length", "0", NULL};
  const char *none[] = {"Upgrade", "websocket", NULL};
  const char *h2c[] = {"Upgrade", "h2c", "Content-Length", "6", NULL};
  const char *lookalike[] = {"Upgrade", "websockets", "Content-Length", "6",
                             NULL};
  assert_non_null(strstr(verdict(len), "WebSocket upgrade"));
  assert_non_null(strstr(verdict(chunked), "WebSocket upgrade"));
  assert_non_null(verdict(listed));
  assert_null(verdict(empty));
  assert_null(verdict(none));
  assert_null(verdict(h2c));
  assert_null(verdict(lookalike));
  assert_int_equal(od_header_has_token("keep-alive, Upgrade", "upgrade"), 1);
  assert_int_equal(od_header_has_token("Upgraded", "upgrade"), 0);
  assert_int_equal(od_header_has_token(NULL, "upgrade"), 0);
}

/* Query arguments: past 64, 414; past what MHD's connection memory may
 * hold (the target's length + 128 bytes per argument over 28 KiB), cut. */
static void query_arguments(void **state) {
  (void)state;
  char uri[40000];
  int n = -1;
  assert_int_equal(od_query_check("/health", &n), OD_QUERY_OK);
  assert_int_equal(n, 0);
  assert_int_equal(od_query_check("/health?", &n), OD_QUERY_OK);
  assert_int_equal(n, 0);
  assert_int_equal(od_query_check("/s?EIO=4&transport=websocket", &n),
                   OD_QUERY_OK);
  assert_int_equal(n, 2);
  assert_int_equal(od_query_check("/a?&&", &n), OD_QUERY_OK);
  assert_int_equal(n, 3);
  /* 64 arguments pass, 65 are too many, 500 may not fit. */
  for (int args = 64; args <= 65; args++) {
    size_t o = (size_t)snprintf(uri, sizeof uri, "/h?a=1");
    for (int i = 1; i < args; i++)
      o += (size_t)snprintf(uri + o, sizeof uri - o, "&a=1");
    assert_int_equal(od_query_check(uri, &n),
                     args == 64 ? OD_QUERY_OK : OD_QUERY_TOO_MANY);
    assert_int_equal(n, args);
  }
  size_t o = (size_t)snprintf(uri, sizeof uri, "/h?a");
  for (int i = 1; i < 500; i++)
    o += (size_t)snprintf(uri + o, sizeof uri - o, "&a");
  assert_int_equal(od_query_check(uri, &n), OD_QUERY_PAST_MEMORY);
  /* A long target: with a query, past the budget; without one, MHD's. */
  memset(uri, 'x', 30000);
  uri[30000] = '\0';
  uri[0] = '/';
  assert_int_equal(od_query_check(uri, &n), OD_QUERY_OK);
  uri[10] = '?';
  assert_int_equal(od_query_check(uri, &n), OD_QUERY_PAST_MEMORY);
  assert_int_equal(n, 1);
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
      cmocka_unit_test(header_bytes),
      cmocka_unit_test(upgrade_with_a_body),
      cmocka_unit_test(query_arguments),
      cmocka_unit_test(control_bytes_in_paths),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
