/* jobjson.c: the JSON a client sees for a job (docs/api.md), per state. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "orfeasd.h"

#define ID "0b8e7c1e-4f3a-4c55-9d0e-1a2b3c4d5e6f"

static od_job_view completed(void) {
  od_job_view v;
  memset(&v, 0, sizeof v);
  snprintf(v.id, sizeof v.id, ID);
  v.state = OD_JOB_COMPLETED;
  v.progress = 100;
  snprintf(v.stage, sizeof v.stage, "completed");
  snprintf(v.output_name, sizeof v.output_name, "model_" ID ".stl");
  v.score = 0.875;
  snprintf(v.grade, sizeof v.grade, "B");
  v.printable = 1;
  v.position = -1;
  return v;
}

static const char *str(json_t *o, const char *k) {
  return json_string_value(json_object_get(o, k));
}

static void download_url_names_the_job_and_its_file(void **state) {
  (void)state;
  od_job_view v = completed();
  char url[200];
  od_job_download_url(&v, url, sizeof url);
  assert_string_equal(url, "/api/download/" ID "/model_" ID ".stl");
  v.output_name[0] = '\0';
  od_job_download_url(&v, url, sizeof url);
  assert_string_equal(url, ""); /* nothing to download yet */
}

static void
status_of_a_completed_job_has_its_download_and_quality(void **state) {
  (void)state;
  od_job_view v = completed();
  json_t *o = od_job_status_json(&v);
  assert_string_equal(str(o, "status"), "completed");
  assert_string_equal(str(o, "download_url"),
                      "/api/download/" ID "/model_" ID ".stl");
  assert_string_equal(str(o, "output_file"), "model_" ID ".stl");
  json_t *q = json_object_get(o, "quality_metrics");
  assert_true(json_real_value(json_object_get(q, "overall_score")) == 0.875);
  assert_string_equal(str(q, "grade"), "B");
  assert_string_equal(str(q, "quality_grade"), "B");
  assert_true(json_is_true(json_object_get(q, "printable")));
  assert_null(json_object_get(o, "position"));
  assert_null(json_object_get(o, "error"));
  json_decref(o);
}

static void status_of_a_queued_job_has_its_position_only(void **state) {
  (void)state;
  od_job_view v = completed();
  v.state = OD_JOB_QUEUED;
  v.position = 3;
  v.output_name[0] = '\0';
  json_t *o = od_job_status_json(&v);
  assert_string_equal(str(o, "status"), "queued");
  assert_int_equal(json_integer_value(json_object_get(o, "position")), 3);
  assert_null(json_object_get(o, "download_url"));
  assert_null(json_object_get(o, "quality_metrics"));
  json_decref(o);
}

static void status_of_a_failed_job_has_its_error(void **state) {
  (void)state;
  od_job_view v = completed();
  v.state = OD_JOB_FAILED;
  snprintf(v.error, sizeof v.error, "no foreground found");
  json_t *o = od_job_status_json(&v);
  assert_string_equal(str(o, "error"), "no foreground found");
  assert_null(json_object_get(o, "download_url"));
  json_decref(o);
}

/* The event a subscriber gets for where the job stands. */
static void event_follows_the_state(void **state) {
  (void)state;
  od_job_view v = completed();
  od_ws_event ev;
  json_t *o = od_job_event_json(&v, &ev);
  assert_int_equal(ev, OD_WS_COMPLETE);
  assert_string_equal(str(o, "job_id"), ID);
  assert_string_equal(str(o, "download_url"),
                      "/api/download/" ID "/model_" ID ".stl");
  assert_true(json_is_true(json_object_get(o, "success")));
  assert_null(
      json_object_get(json_object_get(o, "quality_metrics"), "quality_grade"));
  json_decref(o);

  v.state = OD_JOB_FAILED;
  v.http_status = 400;
  o = od_job_event_json(&v, &ev);
  assert_int_equal(ev, OD_WS_ERROR_EVENT);
  assert_true(json_is_false(
      json_object_get(o, "recoverable"))); /* the client's fault */
  json_decref(o);
  v.http_status = 503;
  o = od_job_event_json(&v, &ev);
  assert_true(json_is_true(json_object_get(o, "recoverable")));
  json_decref(o);

  v.state = OD_JOB_PROCESSING;
  v.progress = 40;
  o = od_job_event_json(&v, &ev);
  assert_int_equal(ev, OD_WS_PROGRESS);
  assert_true(json_real_value(json_object_get(o, "progress")) == 40);
  json_decref(o);

  v.state = OD_JOB_UPLOADED;
  assert_null(od_job_event_json(&v, &ev));
}

static void accepted_body_says_queued_or_cached(void **state) {
  (void)state;
  od_generate_req g = {.format = ORFEAS_PL_GLB,
                       .quality = 7,
                       .width = 10,
                       .height = 20,
                       .depth = 5};
  snprintf(g.job_id, sizeof g.job_id, ID);
  json_t *o = od_job_accepted_json(&g, 2, NULL);
  assert_string_equal(str(o, "status"), "queued");
  assert_int_equal(json_integer_value(json_object_get(o, "position")), 2);
  assert_string_equal(str(o, "format"), "glb");
  assert_true(json_real_value(json_object_get(json_object_get(o, "dimensions"),
                                              "height")) == 20);
  assert_non_null(str(o, "mode"));
  json_decref(o);
  od_job_view v = completed();
  o = od_job_accepted_json(&g, 0, &v);
  assert_string_equal(str(o, "status"), "completed");
  assert_true(json_is_true(json_object_get(o, "cached")));
  assert_string_equal(str(o, "download_url"),
                      "/api/download/" ID "/model_" ID ".stl");
  json_decref(o);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(download_url_names_the_job_and_its_file),
      cmocka_unit_test(status_of_a_completed_job_has_its_download_and_quality),
      cmocka_unit_test(status_of_a_queued_job_has_its_position_only),
      cmocka_unit_test(status_of_a_failed_job_has_its_error),
      cmocka_unit_test(event_follows_the_state),
      cmocka_unit_test(accepted_body_says_queued_or_cached),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
