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

/* Parses head + n x e acute + tail, a message refused: err says why; its
 * code is returned. */
static od_ws_err bad_accents(const char *head, int n, const char *tail,
                             char *err, size_t err_len) {
  char msg[512], id[37];
  od_ws_err code;
  size_t len = strlen(head);
  memcpy(msg, head, len);
  for (int i = 0; i < n; i++, len += 2)
    memcpy(msg + len, "\xc3\xa9", 2);
  memcpy(msg + len, tail, strlen(tail));
  len += strlen(tail);
  assert_int_equal(
      od_wsmsg_parse((const uint8_t *)msg, len, id, err, err_len, &code),
      OD_WSMSG_BAD);
  return code;
}

static void test_ws_messages(void **state) {
  (void)state;
  char id[37], err[160];
  od_ws_err code;
  const char *sub = "{\"event\":\"subscribe\",\"data\":{\"job_id\":\"123e4567-"
                    "e89b-42d3-a456-426614174000\"}}";
  assert_int_equal(od_wsmsg_parse((const uint8_t *)sub, strlen(sub), id, err,
                                  sizeof err, &code),
                   OD_WSMSG_SUBSCRIBE);
  assert_string_equal(id, "123e4567-e89b-42d3-a456-426614174000");
  const char *top = "{\"event\":\"unsubscribe\",\"job_id\":\"123E4567-E89B-"
                    "42d3-a456-42661417400A\"}";
  assert_int_equal(od_wsmsg_parse((const uint8_t *)top, strlen(top), id, err,
                                  sizeof err, &code),
                   OD_WSMSG_UNSUBSCRIBE);
  /* The id as the service stores it: lower case. */
  assert_string_equal(id, "123e4567-e89b-42d3-a456-42661417400a");
  assert_int_equal(od_wsmsg_parse((const uint8_t *)"{\"event\":\"ping\"}", 16,
                                  id, err, sizeof err, &code),
                   OD_WSMSG_PING);
  /* Each refusal with the code the error event carries (docs/api.md). */
  static const struct {
    const char *msg;
    od_ws_err code;
  } bad[] = {{"", OD_WSE_BAD_JSON},
             {"{\"event\"", OD_WSE_BAD_JSON},
             {"[]", OD_WSE_BAD_MESSAGE},
             {"{\"event\":1}", OD_WSE_BAD_MESSAGE},
             {"{\"event\":\"subscribe\"}", OD_WSE_BAD_JOB_ID},
             {"{\"event\":\"subscribe\",\"data\":{\"job_id\":\"../x\"}}",
              OD_WSE_BAD_JOB_ID},
             {"{\"event\":\"x\"}", OD_WSE_UNKNOWN_EVENT}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    code = OD_WSE_COUNT;
    assert_int_equal(od_wsmsg_parse((const uint8_t *)bad[i].msg,
                                    strlen(bad[i].msg), id, err, sizeof err,
                                    &code),
                     OD_WSMSG_BAD);
    if (code != bad[i].code)
      fail_msg("%s: code %s, wanted %s", bad[i].msg, od_ws_err_name(code),
               od_ws_err_name(bad[i].code));
  }
  /* An unknown event's name is quoted cut at 40 bytes, at a character's
   * edge: the error event must still carry its message. */
  code = bad_accents("{\"event\":\"a", 30, "\"}", err, sizeof err);
  char *ev = od_ws_event_json(OD_WS_ERROR, od_ws_error_data(code, err, NULL));
  json_t *back = json_loads(ev, 0, NULL);
  free(ev);
  const char *said = json_string_value(
      json_object_get(json_object_get(back, "data"), "message"));
  assert_non_null(said);
  assert_non_null(strstr(said, "unknown event \"a\xc3\xa9"));
  assert_non_null(strstr(said, "(subscribe, unsubscribe, ping)"));
  assert_string_equal(
      json_string_value(json_object_get(json_object_get(back, "data"), "code")),
      "unknown_event");
  json_decref(back);
  /* A JSON error that quotes the client's bytes: jansson's own text can
   * end inside a character ("invalid escape near '\"\\u\xc3'"); err is
   * cut before it, so the error event still carries a message. */
  assert_int_equal(bad_accents("{\"event\":\"\\u", 1, "\"}", err, sizeof err),
                   OD_WSE_BAD_JSON);
  assert_non_null(strstr(err, "invalid JSON"));
  assert_int_equal(od_utf8_prefix(err, sizeof err), strlen(err));
  char *s = od_ws_event_json(OD_WS_PONG, json_object());
  assert_string_equal(s, "{\"event\":\"pong\",\"data\":{}}");
  free(s);
}

/* The one builder of every error event's data: the message and job_id as
 * clients had them, the code after them; a name for every code, and none
 * for a value past the list. */
static void test_error_data(void **state) {
  (void)state;
  json_t *d = od_ws_error_data(OD_WSE_RESUBSCRIBE, "m; subscribe again later",
                               "123e4567-e89b-42d3-a456-426614174000");
  char *s = json_dumps(d, JSON_COMPACT);
  assert_string_equal(s, "{\"message\":\"m; subscribe again later\",\"job_id\":"
                         "\"123e4567-e89b-42d3-a456-426614174000\",\"code\":"
                         "\"resubscribe\"}");
  free(s);
  json_decref(d);
  d = od_ws_error_data(OD_WSE_BINARY_FRAME, "send JSON text", NULL);
  s = json_dumps(d, JSON_COMPACT);
  assert_string_equal(
      s, "{\"message\":\"send JSON text\",\"code\":\"binary_frame\"}");
  free(s);
  json_decref(d);
  for (int e = 0; e < OD_WSE_COUNT; e++)
    for (int f = 0; f < e; f++)
      assert_string_not_equal(od_ws_err_name((od_ws_err)e),
                              od_ws_err_name((od_ws_err)f));
  assert_string_equal(od_ws_err_name(OD_WSE_TOO_MANY_SUBSCRIPTIONS),
                      "too_many_subscriptions");
  assert_string_equal(od_ws_err_name(OD_WSE_COUNT), "bad_message");
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
      cmocka_unit_test(test_error_data),
      cmocka_unit_test(accept_key_of_the_rfc_example),
      cmocka_unit_test(accept_key_refuses_what_is_not_a_key),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
