/* orfeasd's WebSocket protocol apart from the sockets (wsproto.c): client
 * messages, server events and the handshake's accept key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "orfeasd.h"

/* Parses head + n x e acute + tail, a message refused: err says why. */
static void bad_accents(const char *head, int n, const char *tail, char *err,
                        size_t err_len) {
  char msg[512], id[37];
  size_t len = strlen(head);
  memcpy(msg, head, len);
  for (int i = 0; i < n; i++, len += 2)
    memcpy(msg + len, "\xc3\xa9", 2);
  memcpy(msg + len, tail, strlen(tail));
  len += strlen(tail);
  assert_int_equal(od_wsmsg_parse((const uint8_t *)msg, len, id, err, err_len),
                   OD_WSMSG_BAD);
}

static void test_ws_messages(void **state) {
  (void)state;
  char id[37], err[160];
  const char *sub = "{\"event\":\"subscribe\",\"data\":{\"job_id\":\"123e4567-"
                    "e89b-42d3-a456-426614174000\"}}";
  assert_int_equal(
      od_wsmsg_parse((const uint8_t *)sub, strlen(sub), id, err, sizeof err),
      OD_WSMSG_SUBSCRIBE);
  assert_string_equal(id, "123e4567-e89b-42d3-a456-426614174000");
  const char *top = "{\"event\":\"unsubscribe\",\"job_id\":\"123E4567-E89B-"
                    "42d3-a456-42661417400A\"}";
  assert_int_equal(
      od_wsmsg_parse((const uint8_t *)top, strlen(top), id, err, sizeof err),
      OD_WSMSG_UNSUBSCRIBE);
  /* The id as the service stores it: lower case. */
  assert_string_equal(id, "123e4567-e89b-42d3-a456-42661417400a");
  assert_int_equal(od_wsmsg_parse((const uint8_t *)"{\"event\":\"ping\"}", 16,
                                  id, err, sizeof err),
                   OD_WSMSG_PING);
  const char *bad[] = {
      "",
      "[]",
      "{\"event\":1}",
      "{\"event\":\"subscribe\"}",
      "{\"event\":\"subscribe\",\"data\":{\"job_id\":\"../x\"}}",
      "{\"event\":\"x\"}"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_equal(od_wsmsg_parse((const uint8_t *)bad[i], strlen(bad[i]), id,
                                    err, sizeof err),
                     OD_WSMSG_BAD);
  /* An unknown event's name is quoted cut at 40 bytes, at a character's
   * edge: the error event must still carry its message. */
  bad_accents("{\"event\":\"a", 30, "\"}", err, sizeof err);
  char *ev = od_ws_event_json(OD_WS_ERROR, json_pack("{s:s}", "message", err));
  json_t *back = json_loads(ev, 0, NULL);
  free(ev);
  const char *said = json_string_value(
      json_object_get(json_object_get(back, "data"), "message"));
  assert_non_null(said);
  assert_non_null(strstr(said, "unknown event \"a\xc3\xa9"));
  assert_non_null(strstr(said, "(subscribe, unsubscribe, ping)"));
  json_decref(back);
  /* A JSON error that quotes the client's bytes: jansson's own text can
   * end inside a character ("invalid escape near '\"\\u\xc3'"); err is
   * cut before it, so the error event still carries a message. */
  bad_accents("{\"event\":\"\\u", 1, "\"}", err, sizeof err);
  assert_non_null(strstr(err, "invalid JSON"));
  assert_int_equal(od_utf8_prefix(err, sizeof err), strlen(err));
  char *s = od_ws_event_json(OD_WS_PONG, json_object());
  assert_string_equal(s, "{\"event\":\"pong\",\"data\":{}}");
  free(s);
}

/* RFC 6455 section 1.3's own example. */
static void accept_key_of_the_rfc_example(void **state) {
  (void)state;
  char out[29];
  assert_int_equal(od_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out), 0);
  assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

/* A key must be 16 bytes in base64: 22 characters of the alphabet and
 * "==". Anything else is refused, with an empty answer. */
static void accept_key_refuses_what_is_not_a_key(void **state) {
  (void)state;
  char out[29] = "x";
  const char *bad[] = {"",
                       "dGhlIHNhbXBsZSBub25jZQ=",   /* 23 */
                       "dGhlIHNhbXBsZSBub25jZQ===", /* 25 */
                       "dGhlIHNhbXBsZSBub25jZQxx",  /* no padding */
                       "dGhlIHNhbXBsZSBub25jZ!==",  /* not base64 */
                       "dGhlIHNhbXBsZSBub25j ZQ=",  /* a space */
                       NULL};
  for (int i = 0; bad[i]; i++) {
    assert_int_equal(od_ws_accept_key(bad[i], out), -1);
    assert_string_equal(out, "");
  }
  assert_int_equal(od_ws_accept_key(NULL, out), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ws_messages),
      cmocka_unit_test(accept_key_of_the_rfc_example),
      cmocka_unit_test(accept_key_refuses_what_is_not_a_key),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
