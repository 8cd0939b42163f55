/* bench.h: the tiny harness behind `make bench`.
 *
 * Each suite (metrics, pipeline, ...) is a function that runs its cases and
 * records figures with bench_set(). The driver prints every case as a table
 * row and, with --json FILE, writes one JSON object keyed by case name whose
 * values are objects of figures: {"counter_inc_1t": {"ours_ns": 1.9, ...}}.
 *
 * Not thread-safe: suites call these from the driver's thread only.
 */
#ifndef ORFEAS_BENCH_H
#define ORFEAS_BENCH_H

typedef struct bench_report bench_report;

/* Sets figure `key` of case `case_name` (created on first use). */
void bench_set(bench_report *r, const char *case_name, const char *key,
               double value);

/* Nonzero when the case was selected (--filter SUBSTRING, default: all). */
int bench_wanted(const bench_report *r, const char *case_name);

/* Monotonic clock in nanoseconds. */
double bench_now_ns(void);

/* Median of n values (sorts the array in place). */
double bench_median(double *v, int n);

/* The suites. Each runs the cases bench_wanted() selects. */
void bench_metrics_suite(bench_report *r);
void bench_pipeline_suite(bench_report *r);
void bench_gpu_suite(bench_report *r);
void bench_service_suite(bench_report *r);

#endif
