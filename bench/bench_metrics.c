/* bench_metrics.c: metrics cases land with the metrics library. */
#include "bench.h"

void bench_metrics_suite(bench_report *r) { (void)r; }
