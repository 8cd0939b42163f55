/* bench_metrics.c: the metrics cases of `make bench`.
 *
 * Every case runs ours, prometheus-cpp (peer_promcpp.cpp) and a relaxed
 * atomic_fetch_add in the same process, one after the other, so a noisy
 * machine moves all three together; the ratios are what we report. Each
 * figure is the median of 5 runs of about 100 ms. Render cases report the
 * time of one scrape.
 */
#include "bench.h"
#include "peer_promcpp.h"

#include "orfeas/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RUNS 5
#define RUN_NS 100e6

/* ---- shared inputs (the peer reads them too) ---------------------------- */

static double values[4096];
static const double bounds[11] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                  0.1,   0.25,   0.5,   1,    2.5};
static const char *const methods[10] = {"GET", "GET",  "GET", "POST", "POST",
                                        "PUT", "HEAD", "GET", "POST", "GET"};
static const char *const codes[10] = {"200", "404", "500", "200", "400",
                                      "201", "200", "304", "500", "429"};

const double *bench_values(void);
const double *bench_bounds(void);
const char *const *bench_methods(void);
const char *const *bench_codes(void);
const double *bench_values(void) { return values; }
const double *bench_bounds(void) { return bounds; }
const char *const *bench_methods(void) { return methods; }
const char *const *bench_codes(void) { return codes; }

/* Log-uniform over [0.001, 20] from a fixed seed: every bucket gets hits. */
static void init_values(void) {
  uint64_t x = 88172645463325252ull;
  for (int i = 0; i < 4096; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    double u = (double)(x >> 11) / 9007199254740992.0;
    values[i] = 0.001 * pow(20000.0, u);
  }
}

/* ---- timing ------------------------------------------------------------- */

typedef void (*loop_fn)(void *ctx, long n);

typedef struct {
  loop_fn fn;
  void *ctx;
  long n;
  pthread_barrier_t *go;
  double start, end;
} worker;

static void *run_worker(void *arg) {
  worker *w = arg;
  pthread_barrier_wait(w->go);
  w->start = bench_now_ns();
  w->fn(w->ctx, w->n);
  w->end = bench_now_ns();
  return NULL;
}

/* Aggregate ns per op of `threads` threads each running fn(ctx, n): wall
 * time from the first start to the last end, over threads * n ops. */
static double run_once(loop_fn fn, void *ctx, int threads, long n) {
  worker w[8];
  pthread_t t[8];
  pthread_barrier_t go;
  pthread_barrier_init(&go, NULL, (unsigned)threads);
  for (int i = 0; i < threads; i++) {
    w[i] = (worker){fn, ctx, n, &go, 0, 0};
    pthread_create(&t[i], NULL, run_worker, &w[i]);
  }
  double first = 0, last = 0;
  for (int i = 0; i < threads; i++) {
    pthread_join(t[i], NULL);
    if (i == 0 || w[i].start < first)
      first = w[i].start;
    if (w[i].end > last)
      last = w[i].end;
  }
  pthread_barrier_destroy(&go);
  return (last - first) / ((double)n * threads);
}

static double time_op(loop_fn fn, void *ctx, int threads) {
  long n = 1;
  double ns;
  while ((ns = run_once(fn, ctx, threads, n)) * (double)n * threads < 20e6)
    n *= 2;
  n = (long)(RUN_NS / threads / ns) + 1;
  double r[RUNS];
  for (int i = 0; i < RUNS; i++)
    r[i] = run_once(fn, ctx, threads, n);
  return bench_median(r, RUNS);
}

/* ---- the loops ---------------------------------------------------------- */

static _Atomic uint64_t ref_word;
static void atomic_loop(void *ctx, long n) {
  (void)ctx;
  for (long i = 0; i < n; i++)
    atomic_fetch_add_explicit(&ref_word, 1, memory_order_relaxed);
}

static void ours_counter_loop(void *ctx, long n) {
  om_counter *c = ctx;
  for (long i = 0; i < n; i++)
    om_counter_inc(c);
}

static void ours_histogram_loop(void *ctx, long n) {
  om_histogram *h = ctx;
  for (long i = 0; i < n; i++)
    om_histogram_observe(h, values[i & 4095]);
}

static void ours_lookup_loop(void *ctx, long n) {
  om_family *f = ctx;
  for (long i = 0; i < n; i++) {
    int k = (int)(i % 10);
    om_counter_inc(om_family_counter(f, OM_LABELS(methods[k], codes[k])));
  }
}

/* ---- cases -------------------------------------------------------------- */

static void record(bench_report *r, const char *name, double ours,
                   double peer_ns, double atomic) {
  bench_set(r, name, "ours_ns", ours);
  bench_set(r, name, "peer_ns", peer_ns);
  bench_set(r, name, "atomic_ns", atomic);
  bench_set(r, name, "ours_vs_atomic", ours / atomic);
  bench_set(r, name, "peer_vs_ours", peer_ns / ours);
}

static void op_case(bench_report *r, const char *name, loop_fn ours,
                    void *ours_ctx, loop_fn peer_fn, void *peer_ctx,
                    int threads) {
  if (!bench_wanted(r, name))
    return;
  double a = time_op(atomic_loop, NULL, threads);
  double o = time_op(ours, ours_ctx, threads);
  double p = time_op(peer_fn, peer_ctx, threads);
  record(r, name, o, p, a);
}

typedef struct {
  om_registry *reg;
  om_buf buf;
} render_ctx;

static void ours_render_loop(void *ctx, long n) {
  render_ctx *c = ctx;
  for (long i = 0; i < n; i++)
    om_registry_render(c->reg, OM_FORMAT_TEXT, &c->buf);
}

static void peer_render_loop(void *ctx, long n) {
  for (long i = 0; i < n; i++)
    peer_render(ctx);
}

static void render_case(bench_report *r, const char *name, peer *p,
                        bool histograms, int series) {
  if (!bench_wanted(r, name))
    return;
  render_ctx c = {om_registry_new(NULL), {0}};
  om_family_opts o = {.name = histograms ? "bench_render_seconds"
                                         : "bench_render_total",
                      .help = "Render benchmark.",
                      .label_names = OM_LABELS("id"),
                      .label_count = 1,
                      .buckets = bounds,
                      .bucket_count = 11,
                      .max_series = (size_t)series};
  om_family *f =
      om_family_new(c.reg, histograms ? OM_HISTOGRAM : OM_COUNTER, &o, NULL);
  char id[16];
  for (int i = 0; i < series; i++) {
    snprintf(id, sizeof id, "%d", i);
    if (histograms) {
      om_histogram *h = om_family_histogram(f, OM_LABELS(id));
      for (int k = 0; k < 16; k++)
        om_histogram_observe(h, values[(i * 16 + k) & 4095]);
    } else {
      om_counter_add_u64(om_family_counter(f, OM_LABELS(id)), (uint64_t)i);
    }
  }
  if (histograms)
    peer_setup_render_histograms(p, series);
  else
    peer_setup_render_counters(p, series);
  double a = time_op(atomic_loop, NULL, 1);
  double ours = time_op(ours_render_loop, &c, 1);
  double peer_ns = time_op(peer_render_loop, p, 1);
  record(r, name, ours, peer_ns, a);
  bench_set(r, name, "ours_bytes", (double)c.buf.len);
  bench_set(r, name, "peer_bytes", (double)peer_render(p));
  om_buf_free(&c.buf);
  om_registry_free(c.reg);
}

void bench_metrics_suite(bench_report *r) {
  init_values();
  om_registry *reg = om_registry_new(NULL);
  om_counter *c = om_counter_new(reg, "bench_counter_total", "h", NULL);
  om_histogram *h =
      om_histogram_new(reg, "bench_histogram", "h", bounds, 11, NULL);
  om_family *lf = om_family_new(
      reg, OM_COUNTER,
      &(om_family_opts){.name = "bench_lookup_total",
                        .help = "h",
                        .label_names = OM_LABELS("method", "code"),
                        .label_count = 2},
      NULL);
  for (int i = 0; i < 10; i++)
    om_family_counter(lf, OM_LABELS(methods[i], codes[i]));
  peer *p = peer_new();

  op_case(r, "counter_inc_1t", ours_counter_loop, c, peer_counter_loop, p, 1);
  op_case(r, "counter_inc_2t", ours_counter_loop, c, peer_counter_loop, p, 2);
  op_case(r, "histogram_observe_1t", ours_histogram_loop, h,
          peer_histogram_loop, p, 1);
  op_case(r, "labeled_lookup_inc_1t", ours_lookup_loop, lf, peer_lookup_loop, p,
          1);
  render_case(r, "render_10k_counters", p, false, 10000);
  render_case(r, "render_1k_histograms", p, true, 1000);

  peer_free(p);
  om_registry_free(reg);
}
