/* orfeasd's route table: which route a path is, the pieces a prefix route
 * gets, which methods each route answers and its Allow header. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "orfeasd.h"

static od_route route_of(const char *path, od_req *req) {
  memset(req, 0, sizeof *req);
  od_route_match(path, req);
  return req->route;
}

static void every_exact_path_is_its_route(void **state) {
  (void)state;
  od_req q;
  static const struct {
    const char *path;
    od_route r;
  } cases[] = {
      {"/api/upload-image", OD_ROUTE_UPLOAD},
      {"/api/generate-3d", OD_ROUTE_GENERATE},
      {"/health", OD_ROUTE_HEALTH},
      {"/ready", OD_ROUTE_READY},
      {"/api/health", OD_ROUTE_API_HEALTH},
      {"/metrics", OD_ROUTE_METRICS},
      {"/ws", OD_ROUTE_WS},
      {"/socket.io/", OD_ROUTE_SOCKETIO},
      {"/api/models-info", OD_ROUTE_MODELS_INFO},
      {"/", OD_ROUTE_PAGE},
      {"/studio", OD_ROUTE_STUDIO},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    assert_int_equal(route_of(cases[i].path, &q), cases[i].r);
    assert_string_equal(q.rest, "");
  }
}

static void near_misses_are_other(void **state) {
  (void)state;
  od_req q;
  const char *paths[] = {"",
                         "//",
                         "/studio/",
                         "/static",
                         "/socket.io",
                         "/metrics/",
                         "/metricsX",
                         "/HEALTH",
                         "/api/upload-image/",
                         "/api/job-status",
                         "/api/download",
                         "/ws/x",
                         NULL};
  for (int i = 0; paths[i]; i++)
    assert_int_equal(route_of(paths[i], &q), OD_ROUTE_OTHER);
}

static void prefix_routes_split_their_rest(void **state) {
  (void)state;
  od_req q;
  assert_int_equal(route_of("/api/download/ID/model_ID.stl", &q),
                   OD_ROUTE_DOWNLOAD);
  assert_string_equal(q.rest, "ID/model_ID.stl");
  assert_string_equal(q.arg1, "ID");
  assert_string_equal(q.arg2, "model_ID.stl");
  /* Only the first '/' splits: the second piece keeps the rest. */
  route_of("/api/download/../../etc/passwd", &q);
  assert_string_equal(q.arg1, "..");
  assert_string_equal(q.arg2, "../etc/passwd");
  /* A job id with a tail is not an id: the whole rest is what is checked. */
  assert_int_equal(route_of("/api/job-status/abc/def", &q), OD_ROUTE_STATUS);
  assert_string_equal(q.rest, "abc/def");
  assert_int_equal(route_of("/api/job-status/", &q), OD_ROUTE_STATUS);
  assert_string_equal(q.rest, "");
  assert_string_equal(q.arg2, "");
  /* download-base64 is not download's prefix ("-" is not "/"). */
  assert_int_equal(route_of("/api/download-base64/ID/model_ID.glb", &q),
                   OD_ROUTE_DOWNLOAD_B64);
  assert_string_equal(q.arg1, "ID");
  assert_string_equal(q.arg2, "model_ID.glb");
  assert_int_equal(route_of("/api/preview/ID/x", &q), OD_ROUTE_PREVIEW);
  assert_string_equal(q.rest, "ID/x"); /* the handler checks all of it */
  assert_int_equal(route_of("/static/vendor/three.js", &q), OD_ROUTE_STATIC);
  assert_string_equal(q.rest, "vendor/three.js");
}

static void a_piece_too_long_is_marked_not_cut(void **state) {
  (void)state;
  od_req q;
  char a[101] = {0}, b[301] = {0}, path[600];
  memset(a, 'a', 100); /* arg1 holds 63 */
  memset(b, 'b', 300); /* arg2 159, rest 255 */
  snprintf(path, sizeof path, "/api/download/%s/%s", a, b);
  route_of(path, &q);
  assert_int_equal(q.route, OD_ROUTE_DOWNLOAD);
  assert_int_equal(q.arg1[0], '!');
  assert_int_equal(strlen(q.arg1), sizeof q.arg1 - 1);
  assert_int_equal(q.arg2[0], '!');
  assert_int_equal(q.rest[0], '!');
  assert_false(od_uuid_valid(q.arg1));
  assert_false(od_filename_plain(q.arg2));
  /* A piece that just fits is kept as it is. */
  char c[64] = {0}, fit[128];
  memset(c, 'c', 63);
  snprintf(fit, sizeof fit, "/api/job-status/%s", c);
  route_of(fit, &q);
  assert_int_equal(strlen(q.arg1), 63);
  assert_int_equal(q.arg1[0], 'c');
}

static void methods_head_and_options(void **state) {
  (void)state;
  assert_true(od_route_allows(OD_ROUTE_UPLOAD, OD_METHOD_POST));
  assert_true(od_route_allows(OD_ROUTE_UPLOAD, OD_METHOD_OPTIONS));
  assert_false(od_route_allows(OD_ROUTE_UPLOAD, OD_METHOD_GET));
  assert_false(od_route_allows(OD_ROUTE_UPLOAD, OD_METHOD_HEAD));
  assert_true(od_route_allows(OD_ROUTE_METRICS, OD_METHOD_GET));
  assert_true(od_route_allows(OD_ROUTE_METRICS, OD_METHOD_HEAD));
  assert_false(od_route_allows(OD_ROUTE_METRICS, OD_METHOD_POST));
  assert_false(od_route_allows(OD_ROUTE_METRICS, OD_METHOD_OTHER));
  for (int m = 0; m < OD_METHODS; m++)
    assert_false(od_route_allows(OD_ROUTE_OTHER, (od_method)m));
  assert_string_equal(od_route_allow_header(OD_ROUTE_UPLOAD), "POST, OPTIONS");
  assert_string_equal(od_route_allow_header(OD_ROUTE_STATUS),
                      "GET, HEAD, OPTIONS");
  assert_string_equal(od_route_allow_header(OD_ROUTE_OTHER), "");
}

static void method_names_are_a_fixed_list(void **state) {
  (void)state;
  assert_int_equal(od_method_index("GET"), OD_METHOD_GET);
  assert_int_equal(od_method_index("OPTIONS"), OD_METHOD_OPTIONS);
  assert_int_equal(od_method_index("get"), OD_METHOD_OTHER);
  assert_int_equal(od_method_index("BREW"), OD_METHOD_OTHER);
  assert_int_equal(od_method_index("OTHER"), OD_METHOD_OTHER);
  for (int m = 0; m < OD_METHODS; m++)
    assert_int_equal(od_method_index(od_method_name((od_method)m)), m);
}

static void endpoints_and_flags(void **state) {
  (void)state;
  assert_string_equal(od_route_template(OD_ROUTE_STATUS),
                      "/api/job-status/{job_id}");
  assert_string_equal(od_route_template(OD_ROUTE_OTHER), "other");
  assert_string_equal(od_route_template(OD_ROUTE_COUNT), "other");
  /* Monitoring is never rate limited and answers past the connection
   * limit; the API is rate limited. */
  assert_false(od_route_flags(OD_ROUTE_METRICS) & OD_RF_RATE_LIMIT);
  assert_true(od_route_flags(OD_ROUTE_METRICS) & OD_RF_PAST_CONN_LIMIT);
  assert_true(od_route_flags(OD_ROUTE_HEALTH) & OD_RF_PAST_CONN_LIMIT);
  assert_true(od_route_flags(OD_ROUTE_UPLOAD) & OD_RF_RATE_LIMIT);
  assert_false(od_route_flags(OD_ROUTE_UPLOAD) & OD_RF_PAST_CONN_LIMIT);
  /* Every endpoint label is distinct (they are series of one family). */
  for (int a = 0; a < OD_ROUTE_COUNT; a++)
    for (int b = a + 1; b < OD_ROUTE_COUNT; b++)
      assert_string_not_equal(od_route_template((od_route)a),
                              od_route_template((od_route)b));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(every_exact_path_is_its_route),
      cmocka_unit_test(near_misses_are_other),
      cmocka_unit_test(prefix_routes_split_their_rest),
      cmocka_unit_test(a_piece_too_long_is_marked_not_cut),
      cmocka_unit_test(methods_head_and_options),
      cmocka_unit_test(method_names_are_a_fixed_list),
      cmocka_unit_test(endpoints_and_flags),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
