/* test_metrics_registry.c: registration rules, errors, and the cardinality
 * guard against hostile label values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orfeas/metrics.h"

static int reg_fails(om_type type, om_family_opts o, int want) {
  om_registry *reg = om_registry_new(NULL);
  om_error err = {0};
  om_family *f = om_family_new(reg, type, &o, &err);
  int ok = f == NULL && err.code == want && strlen(err.text) > 10;
  if (!ok)
    print_error("%s: got %p code %d (%s)\n", o.name ? o.name : "(null)",
                (void *)f, err.code, err.text);
  om_registry_free(reg);
  return ok;
}

static void bad_names_refused(void **state) {
  (void)state;
  const char *bad[] = {"", "1abc", "a-b", "a b", "é", "a\n"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_true(reg_fails(OM_COUNTER,
                          (om_family_opts){.name = bad[i], .help = "h"},
                          OM_EBADNAME));
  assert_true(reg_fails(OM_COUNTER, (om_family_opts){.help = "h"}, OM_EINVAL));
  assert_true(reg_fails(OM_COUNTER, (om_family_opts){.name = "ok"},
                        OM_EINVAL)); /* no help */
  const char *bad_help[] = {"\xff", "caf\xc3", "\xed\xa0\x80 surrogate",
                            "\xc0\xaf overlong"};
  for (size_t i = 0; i < sizeof bad_help / sizeof bad_help[0]; i++)
    assert_true(reg_fails(OM_COUNTER,
                          (om_family_opts){.name = "ok", .help = bad_help[i]},
                          OM_EINVAL));
  om_registry *reg = om_registry_new(NULL);
  assert_non_null(om_counter_new(reg, "ns:sub_total", "h", NULL));
  assert_non_null(om_counter_new(reg, "_x", "h", NULL));
  om_registry_free(reg);
}

static void bad_labels_refused(void **state) {
  (void)state;
  const char *bad[] = {"__reserved", "1a", "a-b", ""};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_true(reg_fails(
        OM_GAUGE,
        (om_family_opts){
            .name = "g", .help = "h", .label_names = &bad[i], .label_count = 1},
        OM_EBADLABEL));
  assert_true(reg_fails(OM_GAUGE,
                        (om_family_opts){.name = "g",
                                         .help = "h",
                                         .label_names = OM_LABELS("a", "a"),
                                         .label_count = 2},
                        OM_EBADLABEL));
  assert_true(reg_fails(OM_HISTOGRAM,
                        (om_family_opts){.name = "h",
                                         .help = "h",
                                         .label_names = OM_LABELS("le"),
                                         .label_count = 1},
                        OM_EBADLABEL));
}

static void bad_buckets_refused(void **state) {
  (void)state;
  const double dec[] = {1, 0.5};
  const double dup[] = {1, 1};
  const double inf[] = {1, INFINITY};
  const double nan[] = {NAN};
  const double *all[] = {dec, dup, inf, nan};
  size_t n[] = {2, 2, 2, 1};
  for (int i = 0; i < 4; i++)
    assert_true(reg_fails(
        OM_HISTOGRAM,
        (om_family_opts){
            .name = "h", .help = "h", .buckets = all[i], .bucket_count = n[i]},
        OM_EBUCKETS));
}

static void units(void **state) {
  (void)state;
  assert_true(reg_fails(
      OM_GAUGE,
      (om_family_opts){.name = "temp", .help = "h", .unit = "celsius"},
      OM_EUNIT));
  assert_true(reg_fails(
      OM_GAUGE,
      (om_family_opts){.name = "x_Celsius", .help = "h", .unit = "Cel-sius"},
      OM_EUNIT));
  om_registry *reg = om_registry_new(NULL);
  assert_non_null(om_family_new(
      reg, OM_COUNTER,
      &(om_family_opts){.name = "io_bytes_total", .help = "h", .unit = "bytes"},
      NULL));
  om_registry_free(reg);
}

static void duplicates_refused(void **state) {
  (void)state;
  om_registry *reg = om_registry_new(NULL);
  om_error err;
  assert_non_null(om_counter_new(reg, "jobs_total", "h", &err));
  assert_null(om_counter_new(reg, "jobs_total", "h", &err));
  assert_int_equal(err.code, OM_EEXISTS);
  /* Same OpenMetrics family name ("jobs") as the counter above. */
  assert_null(om_gauge_new(reg, "jobs", "h", &err));
  assert_int_equal(err.code, OM_EEXISTS);
  assert_string_equal(om_strerror(OM_EEXISTS), "metric already registered");
  assert_string_equal(om_strerror(12345), "unknown error");
  om_registry_free(reg);
}

/* Past the cap, new label values get the sink: updates vanish, memory does
 * not grow, the overflow counter counts each refusal, and existing children
 * keep working. */
static void cardinality_cap(void **state) {
  (void)state;
  om_registry *reg = om_registry_new(NULL);
  om_family *f =
      om_family_new(reg, OM_COUNTER,
                    &(om_family_opts){.name = "u_total",
                                      .help = "h",
                                      .label_names = OM_LABELS("user"),
                                      .label_count = 1,
                                      .max_series = 100},
                    NULL);
  char v[32];
  om_counter *first = NULL;
  for (int i = 0; i < 10000; i++) {
    snprintf(v, sizeof v, "user-%d", i);
    om_counter *c = om_family_counter(f, OM_LABELS(v));
    assert_non_null(c);
    om_counter_inc(c);
    if (i == 0)
      first = c;
  }
  assert_int_equal(om_family_series(f), 100);
  assert_ptr_equal(first, om_family_counter(f, OM_LABELS("user-0")));
  assert_true(om_counter_value(first) == 1);
  om_buf buf = {0};
  om_registry_render(reg, OM_FORMAT_TEXT, &buf);
  assert_non_null(strstr(buf.data, "u_total{user=\"user-99\"} 1\n"));
  assert_null(strstr(buf.data, "user-100\""));
  assert_non_null(strstr(
      buf.data, "\nmetrics_series_overflow_total{family=\"u_total\"} 9900\n"));
  om_buf_free(&buf);
  om_registry_free(reg);
}

/* Hostile values: huge, invalid UTF-8, quotes and newlines. Stored cut to
 * OM_MAX_LABEL_VALUE bytes, sanitized, and escaped on output. */
static void hostile_label_values(void **state) {
  (void)state;
  om_registry *reg = om_registry_new(NULL);
  om_family *f = om_family_new(reg, OM_GAUGE,
                               &(om_family_opts){.name = "g",
                                                 .help = "h",
                                                 .label_names = OM_LABELS("v"),
                                                 .label_count = 1},
                               NULL);
  size_t big = 1 << 20;
  char *huge = malloc(big + 1);
  memset(huge, 'a', big);
  huge[big] = '\0';
  om_gauge *h1 = om_family_gauge(f, OM_LABELS(huge));
  huge[big - 1] = 'b'; /* differs only past the cut: same series */
  assert_ptr_equal(h1, om_family_gauge(f, OM_LABELS(huge)));
  free(huge);
  /* A multi-byte character straddling the cut is dropped whole. */
  char straddle[OM_MAX_LABEL_VALUE + 8];
  memset(straddle, 'x', sizeof straddle);
  memcpy(straddle + OM_MAX_LABEL_VALUE - 1, "\xc3\xa9", 2);
  straddle[sizeof straddle - 1] = '\0';
  om_gauge_set(om_family_gauge(f, OM_LABELS(straddle)), 2);
  om_gauge *bad1 = om_family_gauge(f, OM_LABELS("\xff\xfe"));
  om_gauge *bad2 = om_family_gauge(f, OM_LABELS("\xef\xbf\xbd\xef\xbf\xbd"));
  assert_ptr_equal(bad1, bad2); /* same text on the wire: same series */
  om_gauge_set(om_family_gauge(f, OM_LABELS("a\"b\\c\nd")), 3);
  om_gauge_set(om_family_gauge(f, OM_LABELS("\xc0\xaf")), 4); /* overlong */
  om_buf buf = {0};
  om_registry_render(reg, OM_FORMAT_TEXT, &buf);
  char want[OM_MAX_LABEL_VALUE + 32];
  snprintf(want, sizeof want, "g{v=\"%.*s\"} 2\n", OM_MAX_LABEL_VALUE - 1,
           straddle);
  assert_non_null(strstr(buf.data, want));
  assert_non_null(strstr(buf.data, "g{v=\"a\\\"b\\\\c\\nd\"} 3\n"));
  assert_non_null(strstr(buf.data, "g{v=\"\xef\xbf\xbd\xef\xbf\xbd\"} 4\n"));
  size_t maxline = 0;
  for (char *p = buf.data, *nl; (nl = strchr(p, '\n')); p = nl + 1)
    if ((size_t)(nl - p) > maxline)
      maxline = (size_t)(nl - p);
  assert_true(maxline < 3 * OM_MAX_LABEL_VALUE + 32);
  om_buf_free(&buf);
  om_registry_free(reg);
}

/* A collector's series appear at scrape time; past its cap they are
 * dropped and counted; bad counter values are refused. */
static int collected_rc[3];
static void collect3(om_collect *out, void *user) {
  (void)user;
  collected_rc[0] = om_collect_value(out, OM_LABELS("0"), 5);
  collected_rc[1] = om_collect_value(out, OM_LABELS("1"), 6);
  collected_rc[2] = om_collect_value(out, OM_LABELS("2"), -1);
}

static void collector_cap(void **state) {
  (void)state;
  om_registry *reg = om_registry_new(NULL);
  om_error err;
  assert_int_equal(
      om_collector_new(reg, OM_COUNTER,
                       &(om_family_opts){.name = "gpu_events_total",
                                         .help = "h",
                                         .label_names = OM_LABELS("gpu"),
                                         .label_count = 1,
                                         .max_series = 1},
                       collect3, NULL, &err),
      OM_OK);
  assert_int_equal(om_collector_new(reg, OM_HISTOGRAM,
                                    &(om_family_opts){.name = "x", .help = "h"},
                                    collect3, NULL, &err),
                   OM_ETYPE);
  om_buf buf = {0};
  om_registry_render(reg, OM_FORMAT_TEXT, &buf);
  assert_int_equal(collected_rc[0], OM_OK);
  assert_int_equal(collected_rc[1], OM_EOVERFLOW);
  assert_int_equal(collected_rc[2], OM_EINVAL);
  assert_non_null(strstr(buf.data, "gpu_events_total{gpu=\"0\"} 5\n"));
  assert_null(strstr(buf.data, "gpu_events_total{gpu=\"1\"}"));
  assert_non_null(strstr(buf.data, "{family=\"gpu_events_total\"} 1\n"));
  om_buf_free(&buf);
  om_registry_free(reg);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(bad_names_refused),
      cmocka_unit_test(bad_labels_refused),
      cmocka_unit_test(bad_buckets_refused),
      cmocka_unit_test(units),
      cmocka_unit_test(duplicates_refused),
      cmocka_unit_test(cardinality_cap),
      cmocka_unit_test(hostile_label_values),
      cmocka_unit_test(collector_cap),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
