/* test_od_socketio.c: the Engine.IO v4 / Socket.IO v5 framing
 * (src/socketio.c): the handshake's query checks, the open packet, CONNECT
 * to "/" and to other namespaces, subscribe_job with and without an ack,
 * pings and pongs, and a clear refusal (with an error event once connected)
 * for everything else; the hub's events as job_update. Also under ASan. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* After the four above, which it needs. */
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "orfeasd.h"

#define UUID "123e4567-e89b-42d3-a456-426614174000"

static void test_query(void **s) {
  (void)s;
  char m[200];
  int code = 99;
  assert_int_equal(
      od_sio_query_check("4", "websocket", NULL, &code, m, sizeof m), 0);
  assert_int_equal(code, 99); /* untouched when accepted */
  struct {
    const char *eio, *transport, *sid, *says;
    int code;
  } bad[] = {
      {"3", "websocket", NULL, "EIO=4", OD_SIO_ERR_VERSION},
      {NULL, "websocket", NULL, "EIO=4", OD_SIO_ERR_VERSION},
      {"4", "polling", NULL, "websocket", OD_SIO_ERR_TRANSPORT},
      {"4", NULL, NULL, "websocket", OD_SIO_ERR_TRANSPORT},
      {"4", "websocket", "abc", "Session ID", OD_SIO_ERR_SID},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    code = 99;
    m[0] = '\0';
    assert_int_equal(od_sio_query_check(bad[i].eio, bad[i].transport,
                                        bad[i].sid, &code, m, sizeof m),
                     -1);
    assert_int_equal(code, bad[i].code);
    assert_non_null(strstr(m, bad[i].says));
  }
}

static void test_open_packet(void **s) {
  (void)s;
  char *o = od_sio_open(UUID, 25, 20.5);
  assert_non_null(o);
  assert_int_equal(o[0], '0');
  json_t *j = json_loads(o + 1, 0, NULL);
  assert_non_null(j);
  assert_string_equal(json_string_value(json_object_get(j, "sid")), UUID);
  assert_true(json_is_array(json_object_get(j, "upgrades")));
  assert_int_equal(json_array_size(json_object_get(j, "upgrades")), 0);
  assert_int_equal(json_integer_value(json_object_get(j, "pingInterval")),
                   25000);
  assert_int_equal(json_integer_value(json_object_get(j, "pingTimeout")),
                   20500);
  assert_int_equal(json_integer_value(json_object_get(j, "maxPayload")),
                   OD_SIO_MAX_PAYLOAD);
  json_decref(j);
  free(o);
}

/* Runs one frame; returns the kind, the reply in *reply (caller frees). */
static od_sio_kind run(od_sio_conn *c, const char *frame, char **reply,
                       char id[37], char *err) {
  size_t reply_len;
  return od_sio_handle(c, (const uint8_t *)frame, strlen(frame), id, reply,
                       &reply_len, err, 160);
}

static void expect(od_sio_conn *c, const char *frame, od_sio_kind want,
                   const char *reply_prefix) {
  char *reply, id[37], err[160];
  od_sio_kind k = run(c, frame, &reply, id, err);
  if (k != want)
    fail_msg("%s: kind %d, wanted %d (%s)", frame, k, want, err);
  if (want == OD_SIO_BAD)
    assert_true(strlen(err) > 5);
  if (reply_prefix == NULL) {
    if (reply != NULL)
      fail_msg("%s: unexpected reply %s", frame, reply);
  } else {
    assert_non_null(reply);
    if (strncmp(reply, reply_prefix, strlen(reply_prefix)) != 0)
      fail_msg("%s: reply %s, wanted %s...", frame, reply, reply_prefix);
  }
  free(reply);
}

/* A refusal told as an error event whose data ends with its code. */
static void expect_code(od_sio_conn *c, const char *frame, const char *code) {
  char *reply, id[37], err[160], tail[64];
  assert_int_equal(run(c, frame, &reply, id, err), OD_SIO_BAD);
  snprintf(tail, sizeof tail, ",\"code\":\"%s\"}]", code);
  static const char head[] = "42[\"error\",{\"message\":";
  if (reply == NULL || strncmp(reply, head, sizeof head - 1) != 0 ||
      strlen(reply) < strlen(tail) ||
      strcmp(reply + strlen(reply) - strlen(tail), tail) != 0)
    fail_msg("%s: reply %s, wanted an error event with code %s", frame,
             reply ? reply : "(none)", code);
  free(reply);
}

static void test_connect_and_subscribe(void **s) {
  (void)s;
  od_sio_conn c = {UUID, 0};
  /* Nothing of Socket.IO works before CONNECT to "/", and the client is
   * told so (docs/api.md). */
  expect(&c, "42[\"subscribe_job\",{\"job_id\":\"" UUID "\"}]", OD_SIO_BAD,
         "42[\"error\",{\"message\":\"an EVENT before CONNECT");
  expect(&c, "x", OD_SIO_BAD, "42[\"error\",{\"message\":\"not an Engine.IO");
  expect_code(&c, "42[\"subscribe_job\",\"" UUID "\"]", "not_connected");
  /* CONNECT_ERROR as the official server writes it ({"message", "data"}),
   * the code in data, where socket.io-client hands it over (err.data). */
  expect(&c, "40/admin,", OD_SIO_BAD,
         "44/admin,{\"message\":\"Invalid namespace\",\"data\":{\"message\":"
         "\"namespace /admin does not exist (only \\\"/\\\")\",\"code\":"
         "\"unknown_namespace\"}}");
  assert_false(c.connected);
  /* A namespace's name is bytes: one with a NUL in it is not "/" (it was
   * read as a C string, and a CONNECT or an EVENT to it acted on "/").
   * Its CONNECT_ERROR names it byte for byte, and says why. */
  static const char nul_nsp[] = "40/\0admin,";
  static const char nul_err[] = "44/\0admin,{\"message\":\"Invalid namespace\"";
  char *r, rid[37], rerr[160];
  size_t rlen = 0;
  assert_int_equal(od_sio_handle(&c, (const uint8_t *)nul_nsp,
                                 sizeof nul_nsp - 1, rid, &r, &rlen, rerr,
                                 sizeof rerr),
                   OD_SIO_BAD);
  assert_false(c.connected);
  assert_non_null(r);
  assert_true(rlen > sizeof nul_err - 1 && rlen == 10 + strlen(r + 10));
  assert_memory_equal(r, nul_err, sizeof nul_err - 1);
  assert_non_null(strstr(r + 10, "\"code\":\"unknown_namespace\""));
  assert_non_null(strstr(rerr, "control character"));
  free(r);
  static const char nul_ev[] = "42/\0,7[\"subscribe_job\",\"" UUID "\"]";
  od_sio_conn joined = {UUID, 1};
  assert_int_equal(od_sio_handle(&joined, (const uint8_t *)nul_ev,
                                 sizeof nul_ev - 1, rid, &r, &rlen, rerr,
                                 sizeof rerr),
                   OD_SIO_BAD);
  assert_int_equal(rlen, strlen(r));
  assert_non_null(strstr(r, "\"code\":\"not_connected\""));
  free(r);
  static const char nul_bye[] = "41/\0";
  assert_int_equal(od_sio_handle(&joined, (const uint8_t *)nul_bye,
                                 sizeof nul_bye - 1, rid, &r, &rlen, rerr,
                                 sizeof rerr),
                   OD_SIO_NOTHING);
  assert_null(r);
  assert_true(joined.connected);
  /* The pid turns socket.io-client's connection state recovery on. */
  expect(&c, "40", OD_SIO_CONNECTED,
         "40{\"sid\":\"" UUID "\",\"pid\":\"" UUID "\"}");
  assert_true(c.connected);
  /* With an auth payload (ignored), again. */
  expect(&c, "40{\"token\":\"x\"}", OD_SIO_CONNECTED, "40{");

  char *reply, id[37], err[160];
  /* A reconnect: the offset (the last job_update's job id) names the job
   * to follow again; anything else names none. */
  od_sio_kind k = run(&c, "40{\"pid\":\"old-session\",\"offset\":\"" UUID "\"}",
                      &reply, id, err);
  assert_int_equal(k, OD_SIO_CONNECTED);
  assert_string_equal(id, UUID);
  free(reply);
  static const char *const no_job[] = {
      "40",
      "40{\"offset\":\"" UUID "\"}",
      "40{\"pid\":\"p\",\"offset\":\"../" UUID "\"}",
      "40{\"pid\":\"p\",\"offset\":7}",
      "40{\"pid\":\"p\"}",
      "40[\"" UUID "\"]",
      "40{\"pid\":",
  };
  for (size_t i = 0; i < sizeof no_job / sizeof *no_job; i++) {
    k = run(&c, no_job[i], &reply, id, err);
    if (k != OD_SIO_CONNECTED || id[0] != '\0')
      fail_msg("%s: kind %d, job \"%s\"", no_job[i], k, id);
    free(reply);
  }

  k = run(&c, "42[\"subscribe_job\",{\"job_id\":\"" UUID "\"}]", &reply, id,
          err);
  assert_int_equal(k, OD_SIO_SUBSCRIBE);
  assert_string_equal(id, UUID);
  assert_null(reply);
  /* An ack id is answered with the same id. */
  k = run(&c, "4217[\"subscribe_job\",{\"job_id\":\"" UUID "\"}]", &reply, id,
          err);
  assert_int_equal(k, OD_SIO_SUBSCRIBE);
  assert_string_equal(
      reply, "4317[{\"status\":\"subscribed\",\"job_id\":\"" UUID "\"}]");
  free(reply);
  k = run(&c,
          "42[\"unsubscribe_job\",\"123E4567-E89B-42D3-A456-426614174000\"]",
          &reply, id, err);
  assert_int_equal(k, OD_SIO_UNSUBSCRIBE);
  assert_string_equal(id, UUID); /* as stored: lower case */
  assert_null(reply);

  /* Refusals, each told to the (connected) client as an error event. */
  static const char *const bad[][2] = {
      {"42[\"subscribe_job\",{\"job_id\":\"../../etc\"}]", "bad_job_id"},
      {"42[\"subscribe_job\"]", "bad_job_id"},
      {"42[\"launch\",{}]", "unknown_event"},
      {"42{\"not\":\"an array\"}", "bad_message"},
      {"42[1,2]", "bad_message"},
      {"42[\"subscribe_job\",{\"job_id\":\"" UUID "\"}", "bad_json"},
      {"451-[\"subscribe_job\",{\"_placeholder\":true,\"num\":0}]",
       "binary_packet"},
      {"4", "bad_packet"},
      {"49", "bad_packet"},
      {"44{\"message\":\"x\"}", "bad_packet"},
      {"421234567890[\"subscribe_job\",\"" UUID "\"]", "bad_packet"},
      {"0{\"sid\":\"x\"}", "bad_packet"},
      {"x", "bad_packet"},
      {"b4AAAA", "bad_packet"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    expect_code(&c, bad[i][0], bad[i][1]);
  /* Client text quoted in a message is cut at a character's edge, so the
   * error event still says something: an unknown event and an unknown
   * namespace, each 61 bytes of "a" + 30 x e acute. */
  char name[200], nsp[200], e30[61];
  for (int i = 0; i < 30; i++)
    memcpy(e30 + 2 * i, "\xc3\xa9", 2);
  e30[60] = '\0';
  snprintf(name, sizeof name, "42[\"a%s\",{}]", e30);
  snprintf(nsp, sizeof nsp, "40/a%s", e30);
  expect(&c, name, OD_SIO_BAD, "42[\"error\",{\"message\":\"unknown event");
  od_sio_conn c2 = {UUID, 1};
  expect(&c2, nsp, OD_SIO_BAD, "44/a");
  assert_int_equal(run(&c2, nsp, &reply, id, err), OD_SIO_BAD);
  free(reply);
  assert_non_null(strstr(err, "does not exist"));
  assert_int_equal(od_utf8_prefix(err, 160), strlen(err));
  /* jansson's own error text can end inside a character. */
  expect(&c, "42[\"\\u\xc3\xa9\"]", OD_SIO_BAD,
         "42[\"error\",{\"message\":\"invalid JSON in an EVENT");
  char longns[200] = "40/";
  memset(longns + 3, 'a', 150);
  longns[153] = '\0';
  expect(&c, longns, OD_SIO_BAD, "42[\"error\"");
  assert_int_equal(run(&c, "", &reply, id, err), OD_SIO_BAD);
  free(reply);

  /* Engine.IO's own packets. */
  expect(&c, "3", OD_SIO_PONG, NULL);
  expect(&c, "2probe", OD_SIO_NOTHING, "3probe");
  expect(&c, "2", OD_SIO_NOTHING, "3");
  /* Only the probe's payload is echoed: any other ping gets a bare "3", so
   * a client that never reads cannot park its own 4 KB in each reply. */
  char big[4002] = "2";
  memset(big + 1, 'x', 4000);
  big[4001] = '\0';
  assert_int_equal(run(&c, big, &reply, id, err), OD_SIO_NOTHING);
  assert_string_equal(reply, "3");
  free(reply);
  assert_int_equal(run(&c, "2probe", &reply, id, err), OD_SIO_NOTHING);
  assert_string_equal(reply, "3probe");
  free(reply);
  assert_int_equal(run(&c, "2probes", &reply, id, err), OD_SIO_NOTHING);
  assert_string_equal(reply, "3");
  free(reply);
  expect(&c, "6", OD_SIO_NOTHING, NULL);
  expect(&c, "5", OD_SIO_NOTHING, NULL);
  expect(&c, "43[]", OD_SIO_NOTHING, NULL);
  /* Leaving another namespace changes nothing; leaving "/" closes. */
  expect(&c, "41/admin,", OD_SIO_NOTHING, NULL);
  assert_true(c.connected);
  expect(&c, "41", OD_SIO_CLOSE, NULL);
  assert_false(c.connected);
  expect(&c, "1", OD_SIO_CLOSE, NULL);
}

static void test_event_text(void **s) {
  (void)s;
  char *t =
      od_sio_event_text("connected", json_pack("{s:s}", "status", "connected"));
  assert_string_equal(t, "42[\"connected\",{\"status\":\"connected\"}]");
  free(t);
  t = od_sio_event_text("ping", NULL);
  assert_string_equal(t, "42[\"ping\",{}]");
  free(t);
}

/* The hub's event (as od_ws_event_json makes it) as job_update. */
static json_t *update_of(od_ws_event ev, json_t *data) {
  char *hub = od_ws_event_json(ev, data);
  char *t = od_sio_job_update(hub, strlen(hub));
  free(hub);
  if (t == NULL)
    return NULL;
  assert_memory_equal(t, "42[\"job_update\",", 16);
  json_t *arr = json_loads(t + 2, 0, NULL);
  free(t);
  assert_non_null(arr);
  /* The offset a reconnecting client sends back: the job id. */
  assert_int_equal(json_array_size(arr), 3);
  assert_string_equal(json_string_value(json_array_get(arr, 2)), UUID);
  json_t *u = json_incref(json_array_get(arr, 1));
  json_decref(arr);
  assert_string_equal(json_string_value(json_object_get(u, "job_id")), UUID);
  return u;
}

static const char *str(json_t *o, const char *k) {
  return json_string_value(json_object_get(o, k));
}

static void test_job_update(void **s) {
  (void)s;
  json_t *u = update_of(OD_WS_PROGRESS,
                        json_pack("{s:s, s:f, s:s, s:f, s:f}", "job_id", UUID,
                                  "progress", 42.5, "stage", "shape_generation",
                                  "stage_progress", 0.0, "eta_seconds", 1.5));
  assert_string_equal(str(u, "status"), "processing");
  assert_string_equal(str(u, "step"), "shape_generation");
  assert_true(json_real_value(json_object_get(u, "progress")) == 42.5);
  assert_true(json_real_value(json_object_get(u, "eta_seconds")) == 1.5);
  json_decref(u);
  u = update_of(OD_WS_PROGRESS, json_pack("{s:s, s:f, s:s}", "job_id", UUID,
                                          "progress", 0.0, "stage", "queued"));
  assert_string_equal(str(u, "status"), "queued");
  json_decref(u);
  u = update_of(
      OD_WS_COMPLETE,
      json_pack("{s:s, s:s, s:b, s:{s:f}, s:b}", "job_id", UUID, "download_url",
                "/api/download/" UUID "/model_" UUID ".glb", "success", 1,
                "quality_metrics", "overall_score", 0.9, "cached", 1));
  assert_string_equal(str(u, "status"), "completed");
  assert_string_equal(str(u, "output_file"), "model_" UUID ".glb");
  assert_string_equal(str(u, "download_url"),
                      "/api/download/" UUID "/model_" UUID ".glb");
  assert_true(json_is_true(json_object_get(u, "cached")));
  assert_true(json_real_value(json_object_get(u, "progress")) == 100);
  assert_non_null(json_object_get(u, "quality_metrics"));
  json_decref(u);
  u = update_of(OD_WS_ERROR_EVENT,
                json_pack("{s:s, s:s, s:b}", "job_id", UUID, "error",
                          "image is 1x1 px", "recoverable", 0));
  assert_string_equal(str(u, "status"), "failed");
  assert_string_equal(str(u, "error"), "image is 1x1 px");
  json_decref(u);
  /* Not job events, or not the hub's shape: nothing. */
  assert_null(update_of(OD_WS_SUBSCRIBED, json_pack("{s:s}", "job_id", UUID)));
  assert_null(update_of(OD_WS_STAGE_CHANGE,
                        json_pack("{s:s, s:s}", "job_id", UUID, "stage", "x")));
  assert_null(od_sio_job_update("{", 1));
  assert_null(od_sio_job_update("[]", 2));
  const char *noid = "{\"event\":\"generation_progress\",\"data\":{}}";
  assert_null(od_sio_job_update(noid, strlen(noid)));
}

/* A hub "error" naming a job (cluster mode: its state could not be read,
 * fanout.c) as the Socket.IO error event ws.c sends for a refused read:
 * {message, job_id, code}, no offset, no timestamp. One without a job:
 * nothing. */
static void test_job_error(void **s) {
  (void)s;
  json_t *d = od_ws_error_data(OD_WSE_RESUBSCRIBE,
                               "no current state; subscribe again later", UUID);
  json_object_set_new(d, "timestamp", json_real(1.5));
  char *hub = od_ws_event_json(OD_WS_ERROR, d);
  char *t = od_sio_job_update(hub, strlen(hub));
  free(hub);
  assert_non_null(t);
  assert_string_equal(t, "42[\"error\",{\"message\":\"no current state; "
                         "subscribe again later\",\"job_id\":\"" UUID
                         "\",\"code\":\"resubscribe\"}]");
  free(t);
  hub = od_ws_event_json(OD_WS_ERROR, json_pack("{s:s}", "message", "bad"));
  assert_null(od_sio_job_update(hub, strlen(hub)));
  free(hub);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_query),
      cmocka_unit_test(test_open_packet),
      cmocka_unit_test(test_connect_and_subscribe),
      cmocka_unit_test(test_event_text),
      cmocka_unit_test(test_job_update),
      cmocka_unit_test(test_job_error),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
