/* test_metrics_render.c: the exposition, byte for byte, and negotiation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <locale.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "metrics_fixture.h"

static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  assert_non_null(s);
  assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
  s[n] = '\0';
  fclose(f);
  *len = (size_t)n;
  return s;
}

/* Compares with a golden file and, on a difference, prints the first
 * differing line of each so the failure says what changed. */
static void assert_golden(const om_buf *buf, const char *path) {
  size_t n;
  char *want = read_file(path, &n);
  if (buf->len != n || memcmp(buf->data, want, n) != 0) {
    size_t i = 0, line = 1, start = 0;
    while (i < n && i < buf->len && buf->data[i] == want[i]) {
      if (want[i] == '\n') {
        line++;
        start = i + 1;
      }
      i++;
    }
    fprintf(stderr, "%s differs at line %zu:\n  want: %.*s\n  got:  %.*s\n",
            path, line, (int)strcspn(want + start, "\n"), want + start,
            (int)strcspn(buf->data + start, "\n"), buf->data + start);
    fail();
  }
  free(want);
}

static void golden_text(void **state) {
  (void)state;
  om_registry *reg = metrics_fixture_new();
  assert_non_null(reg);
  om_buf buf = {0};
  assert_int_equal(om_registry_render(reg, OM_FORMAT_TEXT, &buf), OM_OK);
  assert_golden(&buf, "golden/metrics.prom");
  assert_int_equal(strlen(buf.data), buf.len); /* NUL-terminated */
  om_buf_free(&buf);
  om_registry_free(reg);
}

static void golden_openmetrics(void **state) {
  (void)state;
  om_registry *reg = metrics_fixture_new();
  assert_non_null(reg);
  om_buf buf = {0};
  assert_int_equal(om_registry_render(reg, OM_FORMAT_OPENMETRICS, &buf), OM_OK);
  assert_golden(&buf, "golden/metrics.om");
  om_buf_free(&buf);
  om_registry_free(reg);
}

/* A reused buffer: the second scrape allocates nothing new (same memory,
 * same capacity) and gives the same bytes. */
static void buffer_reuse(void **state) {
  (void)state;
  om_registry *reg = metrics_fixture_new();
  om_buf buf = {0};
  assert_int_equal(om_registry_render(reg, OM_FORMAT_TEXT, &buf), OM_OK);
  char *first = strdup(buf.data);
  char *data = buf.data;
  size_t cap = buf.cap;
  assert_int_equal(om_registry_render(reg, OM_FORMAT_TEXT, &buf), OM_OK);
  assert_ptr_equal(buf.data, data);
  assert_int_equal(buf.cap, cap);
  assert_string_equal(buf.data, first);
  free(first);
  om_buf_free(&buf);
  om_registry_free(reg);
}

/* Switches LC_NUMERIC to a decimal-comma locale (de_DE.UTF-8), built with
 * localedef into a temporary LOCPATH when the system has none (Debian's
 * images carry only C and C.UTF-8, whose decimal point is a dot and would
 * prove nothing). Returns false, and leaves the locale alone, when no such
 * locale can be had. */
static char locale_dir[] = "/tmp/om-locale-XXXXXX";
static void remove_locale_dir(void) {
  char cmd[64];
  snprintf(cmd, sizeof cmd, "rm -rf %s", locale_dir);
  if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", locale_dir);
}

static bool decimal_comma_locale(void) {
  if (setlocale(LC_NUMERIC, "de_DE.UTF-8") == NULL) {
    static bool tried;
    if (tried)
      return false;
    tried = true;
    const char *dir = mkdtemp(locale_dir);
    if (dir == NULL)
      return false;
    atexit(remove_locale_dir);
    char cmd[256];
    snprintf(cmd, sizeof cmd,
             "localedef -i de_DE -f UTF-8 %s/de_DE.UTF-8 >/dev/null 2>&1", dir);
    if (system(cmd) != 0)
      return false;
    setenv("LOCPATH", dir, 1);
    if (setlocale(LC_NUMERIC, "de_DE.UTF-8") == NULL)
      return false;
  }
  if (strtod("1,5", NULL) != 1.5) { /* not a decimal comma after all */
    setlocale(LC_NUMERIC, "C");
    return false;
  }
  return true;
}

/* A decimal-comma locale in the process must not leak into the output. */
static void locale_independent(void **state) {
  (void)state;
  if (!decimal_comma_locale())
    skip();
  om_registry *reg = metrics_fixture_new();
  om_buf buf = {0};
  assert_int_equal(om_registry_render(reg, OM_FORMAT_TEXT, &buf), OM_OK);
  setlocale(LC_NUMERIC, "C");
  assert_golden(&buf, "golden/metrics.prom");
  om_buf_free(&buf);
  om_registry_free(reg);
}

/* Nor into negotiation: q=0.9 is 0.9, not 0 (strtod in de_DE stops at the
 * dot), so OpenMetrics at 0.9 still beats text at 0.5. */
static void negotiate_locale_independent(void **state) {
  (void)state;
  if (!decimal_comma_locale())
    skip();
  om_format a = om_format_negotiate(
      "application/openmetrics-text;q=0.9,text/plain;q=0.5");
  om_format b = om_format_negotiate(
      "text/plain;q=0.25,application/openmetrics-text;q=0.5");
  om_format c =
      om_format_negotiate("application/openmetrics-text;q=0.5,text/plain");
  setlocale(LC_NUMERIC, "C");
  assert_int_equal(a, OM_FORMAT_OPENMETRICS);
  assert_int_equal(b, OM_FORMAT_OPENMETRICS);
  assert_int_equal(c, OM_FORMAT_TEXT);
}

/* Every double we print parses back to the same bits. */
static void float_round_trip(void **state) {
  (void)state;
  om_registry *reg = om_registry_new(NULL);
  om_gauge *g = om_gauge_new(reg, "g", "h", NULL);
  om_buf buf = {0};
  uint64_t x = 0x9e3779b97f4a7c15ull;
  for (int i = 0; i < 20000; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    double v;
    switch (i % 3) {
    case 0: /* any bit pattern: subnormals, huge exponents */
      memcpy(&v, &x, sizeof v);
      break;
    case 1: /* decimal-looking values, the fixed-point path */
      v = (double)(x % 100000000) / pow(10, (double)(x >> 60));
      break;
    default: /* arbitrary values in the fixed-point range */
      v = (double)(x >> 11) / 9007199254740992.0 *
          pow(10, (double)(x % 19) - 4);
      break;
    }
    if (isnan(v))
      continue;
    om_gauge_set(g, v);
    assert_int_equal(om_registry_render(reg, OM_FORMAT_TEXT, &buf), OM_OK);
    const char *line = strstr(buf.data, "\ng ");
    assert_non_null(line);
    char *end;
    double back = strtod(line + 3, &end);
    assert_int_equal(*end, '\n');
    if (memcmp(&back, &v, sizeof v) != 0)
      fail_msg("%.17g printed as %.40s", v, line + 3);
  }
  om_buf_free(&buf);
  om_registry_free(reg);
}

/* Bucket bounds are label values, so one number must always be the same
 * text: the OpenMetrics "canonical numbers" (Go's shortest %g, and ".0" on
 * an integer in OpenMetrics), which client_golang and client_python write
 * and Prometheus 3 normalizes to. The spec's own examples, plus the bounds
 * orfeasd uses for store calls (1e-06 once came out 9.9999999999999995e-07)
 * and sizes (1e+06, not 1000000). */
static void le_canonical(void **state) {
  (void)state;
  static const double b[] = {-2.5,    0,       1e-10,  1e-09,  1e-06,  5e-06,
                             1e-05,   2.5e-05, 0.0001, 0.001,  0.1,    0.95,
                             1,       1.7,     10,     100000, 123456, 1e+06,
                             1234567, 5e+07,   1e+23,  1.1e+23};
  static const char *const text[] = {
      "-2.5",    "0",      "1e-10",  "1e-09", "1e-06",        "5e-06", "1e-05",
      "2.5e-05", "0.0001", "0.001",  "0.1",   "0.95",         "1",     "1.7",
      "10",      "100000", "123456", "1e+06", "1.234567e+06", "5e+07", "1e+23",
      "1.1e+23"};
  static const char *const om[] = {
      "-2.5",         "0.0",     "1e-10",  "1e-09",    "1e-06",    "5e-06",
      "1e-05",        "2.5e-05", "0.0001", "0.001",    "0.1",      "0.95",
      "1.0",          "1.7",     "10.0",   "100000.0", "123456.0", "1e+06",
      "1.234567e+06", "5e+07",   "1e+23",  "1.1e+23"};
  const size_t n = sizeof b / sizeof b[0];
  om_registry *reg = om_registry_new(NULL);
  assert_non_null(om_histogram_new(reg, "h", "h", b, n, NULL));
  om_buf buf = {0};
  for (int f = 0; f < 2; f++) {
    om_format fmt = f ? OM_FORMAT_OPENMETRICS : OM_FORMAT_TEXT;
    assert_int_equal(om_registry_render(reg, fmt, &buf), OM_OK);
    const char *p = buf.data;
    for (size_t i = 0; i < n; i++) {
      char want[64];
      snprintf(want, sizeof want, "h_bucket{le=\"%s\"} 0\n",
               f ? om[i] : text[i]);
      const char *hit = strstr(p, "h_bucket{le=");
      assert_non_null(hit);
      if (strncmp(hit, want, strlen(want)) != 0)
        fail_msg("bound %.17g: want %s got %.*s", b[i], want,
                 (int)strcspn(hit, "\n"), hit);
      p = hit + 1;
    }
  }
  om_buf_free(&buf);
  om_registry_free(reg);
}

/* An unset gauge's series is left out of both formats (its family's HELP
 * and TYPE stay, and the other gauges' series too) until it is set again. */
static void unset_gauge_is_left_out(void **state) {
  (void)state;
  om_registry *reg = om_registry_new(NULL);
  om_gauge *depth = om_gauge_new(reg, "depth", "Depth.", NULL),
           *other = om_gauge_new(reg, "other", "Other.", NULL);
  om_gauge_set(depth, 2);
  om_gauge_set(other, 3);
  om_gauge_unset(depth);
  om_buf buf = {0};
  const om_format formats[] = {OM_FORMAT_TEXT, OM_FORMAT_OPENMETRICS};
  for (size_t i = 0; i < 2; i++) {
    assert_int_equal(om_registry_render(reg, formats[i], &buf), OM_OK);
    assert_null(strstr(buf.data, "\ndepth "));
    assert_non_null(strstr(buf.data, "# TYPE depth gauge\n"));
    assert_non_null(strstr(buf.data, "\nother 3\n"));
  }
  om_gauge_set(depth, 0);
  assert_int_equal(om_registry_render(reg, OM_FORMAT_TEXT, &buf), OM_OK);
  assert_non_null(strstr(buf.data, "\ndepth 0\n"));
  om_buf_free(&buf);
  om_registry_free(reg);
}

/* OpenMetrics: a histogram with a negative bound MUST NOT expose a sum
 * (it is no longer a counter), and _count appears if and only if _sum
 * does. Text 0.0.4 has no such rule and keeps both. */
static void negative_bounds_no_sum_in_openmetrics(void **state) {
  (void)state;
  om_registry *reg = om_registry_new(NULL);
  const double b[] = {-1, 0, 1};
  om_histogram *h = om_histogram_new(reg, "skew_seconds", "h", b, 3, NULL);
  om_histogram_observe(h, -0.5);
  om_buf buf = {0};
  assert_int_equal(om_registry_render(reg, OM_FORMAT_OPENMETRICS, &buf), OM_OK);
  assert_non_null(strstr(buf.data, "skew_seconds_bucket{le=\"+Inf\"} 1\n"));
  assert_null(strstr(buf.data, "skew_seconds_sum"));
  assert_null(strstr(buf.data, "skew_seconds_count"));
  assert_int_equal(om_registry_render(reg, OM_FORMAT_TEXT, &buf), OM_OK);
  assert_non_null(strstr(buf.data, "\nskew_seconds_sum -0.5\n"));
  assert_non_null(strstr(buf.data, "\nskew_seconds_count 1\n"));
  om_buf_free(&buf);
  om_registry_free(reg);
}

static void negotiate(void **state) {
  (void)state;
  assert_int_equal(om_format_negotiate(NULL), OM_FORMAT_TEXT);
  assert_int_equal(om_format_negotiate(""), OM_FORMAT_TEXT);
  assert_int_equal(om_format_negotiate("*/*"), OM_FORMAT_TEXT);
  assert_int_equal(om_format_negotiate("text/plain;version=0.0.4"),
                   OM_FORMAT_TEXT);
  /* What Prometheus 2.x sends. */
  assert_int_equal(
      om_format_negotiate("application/openmetrics-text;version=1.0.0,"
                          "application/openmetrics-text;version=0.0.1;q=0.75,"
                          "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
      OM_FORMAT_OPENMETRICS);
  assert_int_equal(om_format_negotiate("application/openmetrics-text"),
                   OM_FORMAT_OPENMETRICS);
  assert_int_equal(
      om_format_negotiate("application/openmetrics-text;q=0.3, text/plain"),
      OM_FORMAT_TEXT);
  assert_int_equal(om_format_negotiate("application/openmetrics-text;q=0"),
                   OM_FORMAT_TEXT);
  assert_int_equal(om_format_negotiate("application/openmetrics-textual"),
                   OM_FORMAT_TEXT);
  assert_string_equal(om_format_content_type(OM_FORMAT_TEXT),
                      "text/plain; version=0.0.4; charset=utf-8");
  assert_string_equal(
      om_format_content_type(OM_FORMAT_OPENMETRICS),
      "application/openmetrics-text; version=1.0.0; charset=utf-8");
}

/* process_* values are real: this process has a start time within the
 * last hour, some CPU time, resident memory and open fds (stdin/out/err). */
static void process_collector(void **state) {
  (void)state;
  om_registry *reg = om_registry_new(NULL);
  om_error err;
  assert_int_equal(om_process_collector_register(reg, &err), OM_OK);
  /* Burn 50 ms of CPU (clock() measures it), so the tick-granular CPU
   * counter has something to show. */
  volatile double spin = 0;
  for (clock_t t0 = clock(); clock() - t0 < CLOCKS_PER_SEC / 20;)
    spin += 1;
  om_buf buf = {0};
  assert_int_equal(om_registry_render(reg, OM_FORMAT_TEXT, &buf), OM_OK);
  const char *names[] = {"process_cpu_seconds_total ",
                         "process_resident_memory_bytes ",
                         "process_virtual_memory_bytes ",
                         "process_open_fds ",
                         "process_max_fds ",
                         "process_start_time_seconds "};
  double v[6];
  for (int i = 0; i < 6; i++) {
    char key[64];
    snprintf(key, sizeof key, "\n%s", names[i]);
    const char *p = strstr(buf.data, key);
    assert_non_null(p);
    v[i] = strtod(p + strlen(key), NULL);
  }
  assert_true(v[0] >= 0.04 && v[0] < 3600);
  assert_true(v[1] > 1 << 20);
  assert_true(v[2] >= v[1]);
  assert_true(v[3] >= 3 && v[3] <= v[4]);
  double now = (double)time(NULL);
  assert_true(v[5] > now - 3600 && v[5] <= now + 1);
  /* One more fd open shows up in the next scrape. */
  FILE *f = fopen("/dev/null", "r");
  assert_int_equal(om_registry_render(reg, OM_FORMAT_TEXT, &buf), OM_OK);
  const char *p = strstr(buf.data, "\nprocess_open_fds ");
  assert_int_equal(strtod(p + 18, NULL), v[3] + 1);
  fclose(f);
  om_buf_free(&buf);
  om_registry_free(reg);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(golden_text),
      cmocka_unit_test(golden_openmetrics),
      cmocka_unit_test(buffer_reuse),
      cmocka_unit_test(locale_independent),
      cmocka_unit_test(float_round_trip),
      cmocka_unit_test(negotiate),
      cmocka_unit_test(process_collector),
      cmocka_unit_test(le_canonical),
      cmocka_unit_test(negotiate_locale_independent),
      cmocka_unit_test(negative_bounds_no_sum_in_openmetrics),
      cmocka_unit_test(unset_gauge_is_left_out),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
