/* test_metrics_concurrency.c: N threads x M updates give exact totals, and
 * scrapes running beside updates see consistent histograms and monotonic
 * counters. Also run under ThreadSanitizer (tsan.metrics_concurrency). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orfeas/metrics.h"

/* More threads than OM_SHARDS, so the shared shard is exercised too. */
#define THREADS (OM_SHARDS + 8)
#define ITERS 20000

typedef struct {
  om_counter *c;
  om_counter *frac;
  om_gauge *g;
  om_histogram *h;
  om_family *fam;
  pthread_barrier_t *start;
} shared;

static void *hammer(void *arg) {
  shared *s = arg;
  pthread_barrier_wait(s->start);
  for (int i = 0; i < ITERS; i++) {
    om_counter_inc(s->c);
    om_counter_add(s->frac, 0.5);
    om_gauge_add(s->g, 1);
    om_histogram_observe(s->h, (double)(i % 4)); /* buckets 0,1,2,3 */
  }
  return NULL;
}

static void run_wave(shared *s) {
  pthread_t t[THREADS];
  pthread_barrier_t b;
  pthread_barrier_init(&b, NULL, THREADS);
  s->start = &b;
  for (int i = 0; i < THREADS; i++)
    assert_int_equal(pthread_create(&t[i], NULL, hammer, s), 0);
  for (int i = 0; i < THREADS; i++)
    pthread_join(t[i], NULL);
  pthread_barrier_destroy(&b);
}

static void exact_totals(void **state) {
  (void)state;
  om_registry *reg = om_registry_new(NULL);
  const double bounds[] = {0, 1, 2};
  shared s = {
      .c = om_counter_new(reg, "c_total", "h", NULL),
      .frac = om_counter_new(reg, "f_total", "h", NULL),
      .g = om_gauge_new(reg, "g", "h", NULL),
      .h = om_histogram_new(reg, "h", "h", bounds, 3, NULL),
  };
  /* Two waves: the second wave's threads take over the shards that the
   * first wave's threads gave back when they exited. */
  run_wave(&s);
  run_wave(&s);
  const double n = 2.0 * THREADS * ITERS;
  assert_true(om_counter_value(s.c) == n);
  assert_true(om_counter_value(s.frac) == n / 2);
  assert_true(om_gauge_value(s.g) == n);
  uint64_t cum[4], count;
  double sum;
  om_histogram_snapshot(s.h, cum, 4, &count, &sum);
  assert_int_equal(count, (uint64_t)n);
  assert_int_equal(cum[0], (uint64_t)n / 4);
  assert_int_equal(cum[1], (uint64_t)n / 2);
  assert_int_equal(cum[2], (uint64_t)n * 3 / 4);
  assert_true(sum == n / 4 * (0 + 1 + 2 + 3));
  om_registry_free(reg);
}

/* Many threads create the same children at once: one child per label set,
 * and no increment lost. */
#define KEYS 200
static void *create_same(void *arg) {
  shared *s = arg;
  char v[16];
  pthread_barrier_wait(s->start);
  for (int k = 0; k < KEYS; k++) {
    snprintf(v, sizeof v, "k%d", k);
    om_counter_inc(om_family_counter(s->fam, OM_LABELS(v, "x")));
  }
  return NULL;
}

static void concurrent_creation(void **state) {
  (void)state;
  om_registry *reg = om_registry_new(NULL);
  shared s = {
      .fam = om_family_new(reg, OM_COUNTER,
                           &(om_family_opts){.name = "k_total",
                                             .help = "h",
                                             .label_names = OM_LABELS("k", "x"),
                                             .label_count = 2},
                           NULL)};
  pthread_t t[8];
  pthread_barrier_t b;
  pthread_barrier_init(&b, NULL, 8);
  s.start = &b;
  for (int i = 0; i < 8; i++)
    pthread_create(&t[i], NULL, create_same, &s);
  for (int i = 0; i < 8; i++)
    pthread_join(t[i], NULL);
  pthread_barrier_destroy(&b);
  assert_int_equal(om_family_series(s.fam), KEYS);
  char v[16];
  for (int k = 0; k < KEYS; k++) {
    snprintf(v, sizeof v, "k%d", k);
    assert_true(om_counter_value(om_family_counter(s.fam, OM_LABELS(v, "x"))) ==
                8);
  }
  om_registry_free(reg);
}

/* Scrapes while 4 threads observe and create series: in every scrape the
 * +Inf bucket equals _count, and a counter never goes down. */
static _Atomic int stop;
static void *observe_loop(void *arg) {
  shared *s = arg;
  char v[16];
  for (int i = 0; !atomic_load(&stop); i++) {
    om_histogram_observe(s->h, (double)(i % 7));
    om_counter_inc(s->c);
    if (i % 64 == 0) {
      snprintf(v, sizeof v, "%d", i % 5000);
      om_counter_inc(om_family_counter(s->fam, OM_LABELS(v)));
    }
  }
  return NULL;
}

static uint64_t value_after(const char *buf, const char *key) {
  const char *p = strstr(buf, key);
  assert_non_null(p);
  return strtoull(p + strlen(key), NULL, 10);
}

static void scrape_during_updates(void **state) {
  (void)state;
  om_registry *reg = om_registry_new(NULL);
  const double bounds[] = {1, 3, 5};
  shared s = {
      .c = om_counter_new(reg, "c_total", "h", NULL),
      .h = om_histogram_new(reg, "h", "h", bounds, 3, NULL),
      .fam = om_family_new(reg, OM_COUNTER,
                           &(om_family_opts){.name = "s_total",
                                             .help = "h",
                                             .label_names = OM_LABELS("n"),
                                             .label_count = 1},
                           NULL),
  };
  atomic_store(&stop, 0);
  pthread_t t[4];
  for (int i = 0; i < 4; i++)
    pthread_create(&t[i], NULL, observe_loop, &s);
  om_buf buf = {0};
  uint64_t last_c = 0;
  for (int i = 0; i < 300; i++) {
    assert_int_equal(om_registry_render(reg, OM_FORMAT_TEXT, &buf), OM_OK);
    uint64_t inf = value_after(buf.data, "h_bucket{le=\"+Inf\"} ");
    uint64_t count = value_after(buf.data, "\nh_count ");
    assert_int_equal(inf, count);
    assert_true(value_after(buf.data, "h_bucket{le=\"1\"} ") <=
                value_after(buf.data, "h_bucket{le=\"3\"} "));
    uint64_t c = value_after(buf.data, "\nc_total ");
    assert_true(c >= last_c);
    last_c = c;
  }
  atomic_store(&stop, 1);
  for (int i = 0; i < 4; i++)
    pthread_join(t[i], NULL);
  om_buf_free(&buf);
  om_registry_free(reg);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(exact_totals),
      cmocka_unit_test(concurrent_creation),
      cmocka_unit_test(scrape_during_updates),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
