/* test_metrics_types.c: counters, gauges and histograms, one behaviour per
 * test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "orfeas/metrics.h"

static void counter_inc_and_add(void **state) {
  (void)state;
  om_registry *reg = om_registry_new(NULL);
  om_counter *c = om_counter_new(reg, "c_total", "h", NULL);
  assert_non_null(c);
  assert_true(om_counter_value(c) == 0);
  om_counter_inc(c);
  om_counter_add_u64(c, 41);
  assert_int_equal(om_counter_add(c, 8), OM_OK);
  assert_true(om_counter_value(c) == 50);
  om_registry_free(reg);
}

static void counter_fractional_exact(void **state) {
  (void)state;
  om_registry *reg = om_registry_new(NULL);
  om_counter *c = om_counter_new(reg, "c_total", "h", NULL);
  for (int i = 0; i < 4; i++)
    assert_int_equal(om_counter_add(c, 0.25), OM_OK);
  assert_true(om_counter_value(c) == 1.0);
  om_counter_inc(c);
  assert_true(om_counter_value(c) == 2.0);
  om_buf buf = {0};
  om_registry_render(reg, OM_FORMAT_TEXT, &buf);
  assert_non_null(strstr(buf.data, "\nc_total 2\n"));
  om_buf_free(&buf);
  om_registry_free(reg);
}

static void counter_refuses_negative_and_nan(void **state) {
  (void)state;
  om_registry *reg = om_registry_new(NULL);
  om_counter *c = om_counter_new(reg, "c_total", "h", NULL);
  om_counter_inc(c);
  assert_int_equal(om_counter_add(c, -1), OM_EINVAL);
  assert_int_equal(om_counter_add(c, NAN), OM_EINVAL);
  assert_int_equal(om_counter_add(c, INFINITY), OM_EINVAL);
  assert_true(om_counter_value(c) == 1);
  om_registry_free(reg);
}

/* Integers stay exact past 2^53, where a double counter loses units. */
static void counter_large_integers_exact(void **state) {
  (void)state;
  om_registry *reg = om_registry_new(NULL);
  om_counter *c = om_counter_new(reg, "c_total", "h", NULL);
  om_counter_add_u64(c, (1ull << 53));
  om_counter_inc(c);
  om_buf buf = {0};
  om_registry_render(reg, OM_FORMAT_TEXT, &buf);
  assert_non_null(strstr(buf.data, "\nc_total 9007199254740993\n"));
  om_buf_free(&buf);
  om_registry_free(reg);
}

static void gauge_ops(void **state) {
  (void)state;
  om_registry *reg = om_registry_new(NULL);
  om_gauge *g = om_gauge_new(reg, "g", "h", NULL);
  assert_true(om_gauge_value(g) == 0);
  om_gauge_set(g, 10);
  om_gauge_inc(g);
  om_gauge_dec(g);
  om_gauge_dec(g);
  om_gauge_add(g, -0.5);
  assert_true(om_gauge_value(g) == 8.5);
  om_gauge_set(g, NAN);
  assert_true(isnan(om_gauge_value(g)));
  om_gauge_set(g, -INFINITY);
  assert_true(isinf(om_gauge_value(g)) && om_gauge_value(g) < 0);
  om_registry_free(reg);
}

/* An unset gauge reads NaN and stays unset through add, inc and dec (an
 * unknown value changed is still unknown) until it is set again; a NaN set
 * is a value, not an unset gauge. */
static void gauge_unset_until_set(void **state) {
  (void)state;
  om_registry *reg = om_registry_new(NULL);
  om_gauge *g = om_gauge_new(reg, "g", "h", NULL);
  om_gauge_set(g, 3);
  om_gauge_unset(g);
  assert_true(isnan(om_gauge_value(g)));
  om_gauge_inc(g);
  om_gauge_add(g, 2);
  om_gauge_dec(g);
  assert_true(isnan(om_gauge_value(g)));
  om_gauge_set(g, 5);
  assert_true(om_gauge_value(g) == 5);
  om_gauge_inc(g);
  assert_true(om_gauge_value(g) == 6);
  om_buf buf = {0};
  om_gauge_set(g, NAN);
  assert_int_equal(om_registry_render(reg, OM_FORMAT_TEXT, &buf), OM_OK);
  assert_non_null(strstr(buf.data, "\ng NaN\n"));
  om_buf_free(&buf);
  om_registry_free(reg);
}

static void histogram_buckets(void **state) {
  (void)state;
  om_registry *reg = om_registry_new(NULL);
  const double b[] = {1, 2, 4};
  om_histogram *h = om_histogram_new(reg, "h_seconds", "h", b, 3, NULL);
  assert_non_null(h);
  /* Bounds are inclusive (le); beyond the last goes to +Inf; NaN too. */
  const double obs[] = {0.5, 1, 1.5, 2, 3, 4, 5, NAN, -7};
  for (size_t i = 0; i < sizeof obs / sizeof obs[0]; i++)
    om_histogram_observe(h, obs[i]);
  uint64_t cum[4], count;
  double sum;
  assert_int_equal(om_histogram_snapshot(h, cum, 4, &count, &sum), OM_OK);
  assert_int_equal(cum[0], 3); /* 0.5 1 -7 */
  assert_int_equal(cum[1], 5); /* + 1.5 2 */
  assert_int_equal(cum[2], 7); /* + 3 4 */
  assert_int_equal(cum[3], 9); /* + 5 NaN */
  assert_int_equal(count, 9);
  assert_true(sum == 10); /* the NaN is counted, not summed */
  assert_int_equal(om_histogram_snapshot(h, cum, 3, &count, &sum), OM_EINVAL);
  om_registry_free(reg);
}

/* NaN and the infinities are counted in their bucket (NaN and +Inf in
 * +Inf, -Inf in the first) but kept out of _sum: one of them would make
 * _sum NaN or infinite for the rest of the process, and rate(_sum) NaN with
 * it, while OpenMetrics says a histogram's sum MUST NOT be NaN. */
static void histogram_nonfinite_not_summed(void **state) {
  (void)state;
  om_registry *reg = om_registry_new(NULL);
  const double b[] = {1, 2, 4};
  om_histogram *h = om_histogram_new(reg, "h_seconds", "h", b, 3, NULL);
  const double obs[] = {1, NAN, INFINITY, -INFINITY, 2, -NAN};
  for (size_t i = 0; i < sizeof obs / sizeof obs[0]; i++)
    om_histogram_observe(h, obs[i]);
  uint64_t cum[4], count;
  double sum;
  assert_int_equal(om_histogram_snapshot(h, cum, 4, &count, &sum), OM_OK);
  assert_int_equal(cum[0], 2); /* 1, -Inf */
  assert_int_equal(cum[1], 3); /* + 2 */
  assert_int_equal(cum[3], 6); /* + NaN, +Inf, -NaN */
  assert_int_equal(count, 6);
  if (sum != 3)
    fail_msg("sum %g, want 3", sum);
  om_buf buf = {0};
  assert_int_equal(om_registry_render(reg, OM_FORMAT_OPENMETRICS, &buf), OM_OK);
  assert_non_null(strstr(buf.data, "\nh_seconds_sum 3\n"));
  om_buf_free(&buf);
  om_registry_free(reg);
}

static void histogram_default_and_long_buckets(void **state) {
  (void)state;
  om_registry *reg = om_registry_new(NULL);
  om_histogram *d = om_histogram_new(reg, "d", "h", NULL, 0, NULL);
  om_histogram_observe(d, 0.3); /* le=0.5 is the 7th bound */
  uint64_t cum[12], count;
  double sum;
  om_histogram_snapshot(d, cum, 12, &count, &sum);
  assert_int_equal(cum[5], 0);
  assert_int_equal(cum[6], 1);
  assert_true(sum == 0.3);
  /* 40 bounds: the binary search path. */
  double b[40];
  for (int i = 0; i < 40; i++)
    b[i] = i + 1;
  om_histogram *l = om_histogram_new(reg, "l", "h", b, 40, NULL);
  om_histogram_observe(l, 17);   /* bucket le=17: index 16 */
  om_histogram_observe(l, 16.5); /* le=17 too */
  om_histogram_observe(l, 100);
  uint64_t c2[41];
  om_histogram_snapshot(l, c2, 41, &count, &sum);
  assert_int_equal(c2[15], 0);
  assert_int_equal(c2[16], 2);
  assert_int_equal(c2[39], 2);
  assert_int_equal(c2[40], 3);
  om_registry_free(reg);
}

/* Every bucket count either side of the padded, branch-free path's limit
 * (OM__HIST_PAD, 32) and of its 4-bound steps: each value lands in the
 * bucket of the first bound >= it. */
static void histogram_bucket_counts_around_padding(void **state) {
  (void)state;
  static const size_t sizes[] = {1,  3,  4,  5,  16, 17, 18,
                                 20, 23, 31, 32, 33, 40};
  for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
    size_t nb = sizes[s];
    om_registry *reg = om_registry_new(NULL);
    double b[40];
    for (size_t i = 0; i < nb; i++)
      b[i] = (double)(i + 1);
    om_histogram *h = om_histogram_new(reg, "p", "h", b, nb, NULL);
    assert_non_null(h);
    /* k exactly (le is inclusive) and k + 0.5 (the next bound). */
    for (size_t k = 1; k <= nb; k++) {
      om_histogram_observe(h, (double)k);
      om_histogram_observe(h, (double)k + 0.5);
    }
    uint64_t cum[41], count;
    double sum;
    assert_int_equal(om_histogram_snapshot(h, cum, nb + 1, &count, &sum),
                     OM_OK);
    for (size_t i = 0; i < nb; i++) /* le=i+1: k <= i+1 and k+0.5 <= i+1 */
      assert_int_equal(cum[i], 2 * (i + 1) - 1);
    assert_int_equal(cum[nb], 2 * nb); /* nb + 0.5 only in +Inf */
    om_registry_free(reg);
  }
}

/* Labelled children: resolved once, the same handle every time, and a
 * wrong-type lookup is refused. */
static void labelled_children(void **state) {
  (void)state;
  om_registry *reg = om_registry_new(NULL);
  om_family *f = om_family_new(
      reg, OM_COUNTER,
      &(om_family_opts){.name = "r_total",
                        .help = "h",
                        .label_names = OM_LABELS("method", "code"),
                        .label_count = 2},
      NULL);
  assert_non_null(f);
  om_counter *a = om_family_counter(f, OM_LABELS("GET", "200"));
  om_counter *b = om_family_counter(f, OM_LABELS("GET", "500"));
  assert_non_null(a);
  assert_ptr_not_equal(a, b);
  assert_ptr_equal(a, om_family_counter(f, OM_LABELS("GET", "200")));
  /* Values that only differ in where one ends and the next starts. */
  assert_ptr_not_equal(om_family_counter(f, OM_LABELS("ab", "c")),
                       om_family_counter(f, OM_LABELS("a", "bc")));
  assert_int_equal(om_family_series(f), 4);
  assert_null(om_family_gauge(f, OM_LABELS("GET", "200")));
  assert_null(om_family_counter(f, NULL));
  assert_null(om_family_counter(f, OM_LABELS("GET", NULL)));
  /* Many children: the table grows and every handle stays valid. */
  om_counter *hs[3000];
  char v[16];
  for (int i = 0; i < 3000; i++) {
    snprintf(v, sizeof v, "%d", i);
    hs[i] = om_family_counter(f, OM_LABELS("PUT", v));
    om_counter_add_u64(hs[i], (uint64_t)i);
  }
  for (int i = 0; i < 3000; i++) {
    snprintf(v, sizeof v, "%d", i);
    assert_ptr_equal(hs[i], om_family_counter(f, OM_LABELS("PUT", v)));
    assert_true(om_counter_value(hs[i]) == i);
  }
  om_registry_free(reg);
}

/* The hot paths allocate nothing: after the children exist and the buffer
 * has grown once, lookups, updates and scrapes leave the heap as it was.
 * (glibc's mallinfo2; under ASan its allocator replaces glibc's and the
 * check is vacuous, the plain run is the one that counts.) */
static void hot_paths_do_not_allocate(void **state) {
  (void)state;
  om_registry *reg = om_registry_new(NULL);
  om_family *f = om_family_new(
      reg, OM_COUNTER,
      &(om_family_opts){.name = "r_total",
                        .help = "h",
                        .label_names = OM_LABELS("method", "code"),
                        .label_count = 2},
      NULL);
  om_histogram *h = om_histogram_new(reg, "h", "h", NULL, 0, NULL);
  const char *codes[] = {"200", "404", "500"};
  for (int i = 0; i < 3; i++)
    om_family_counter(f, OM_LABELS("GET", codes[i]));
  om_buf buf = {0};
  om_registry_render(reg, OM_FORMAT_OPENMETRICS, &buf);
  om_registry_render(reg, OM_FORMAT_TEXT, &buf);
  struct mallinfo2 before = mallinfo2();
  for (int i = 0; i < 10000; i++) {
    om_counter_inc(om_family_counter(f, OM_LABELS("GET", codes[i % 3])));
    om_histogram_observe(h, i * 0.001);
    if (i % 1000 == 0)
      om_registry_render(reg, OM_FORMAT_TEXT, &buf);
  }
  struct mallinfo2 after = mallinfo2();
  assert_int_equal(after.uordblks, before.uordblks);
  assert_int_equal(om_family_series(f), 3);
  om_buf_free(&buf);
  om_registry_free(reg);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(counter_inc_and_add),
      cmocka_unit_test(counter_fractional_exact),
      cmocka_unit_test(counter_refuses_negative_and_nan),
      cmocka_unit_test(counter_large_integers_exact),
      cmocka_unit_test(gauge_ops),
      cmocka_unit_test(gauge_unset_until_set),
      cmocka_unit_test(histogram_buckets),
      cmocka_unit_test(histogram_nonfinite_not_summed),
      cmocka_unit_test(histogram_default_and_long_buckets),
      cmocka_unit_test(histogram_bucket_counts_around_padding),
      cmocka_unit_test(labelled_children),
      cmocka_unit_test(hot_paths_do_not_allocate),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
