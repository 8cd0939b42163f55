/* prom.h: a small client for Prometheus' HTTP API (instant and range
 * queries), libcurl for HTTP and jansson for JSON. */
#ifndef ORFEAS_REPORT_PROM_H
#define ORFEAS_REPORT_PROM_H

#include <stdbool.h>
#include <stddef.h>

#define PROM_ERR 256

typedef struct prom prom;

/* One series of a result: its labels as "k=v,k=v" and its samples. An
 * instant query gives one sample per series. */
typedef struct prom_series {
  char labels[256];
  char *metric_json; /* the labels as JSON text, for lookups by name */
  size_t n;
  double *t, *v;
} prom_series;

typedef struct prom_result {
  size_t n;
  prom_series *s;
} prom_result;

/* base: e.g. "http://127.0.0.1:9090"; timeout_s: one request at most;
 * total_s: all requests together, from now (--timeout). Returns NULL when
 * out of memory. */
prom *prom_new(const char *base, double timeout_s, double total_s);
void prom_free(prom *p);

/* GET /-/ready: false (and err) when Prometheus cannot be reached. */
bool prom_ready(prom *p, char err[PROM_ERR]);

/* Instant query at time `at` (Unix seconds). false + err on any failure:
 * HTTP, JSON, or an error Prometheus reports. The caller frees res. */
bool prom_query(prom *p, const char *expr, double at, prom_result *res,
                char err[PROM_ERR]);
bool prom_query_range(prom *p, const char *expr, double start, double end,
                      double step, prom_result *res, char err[PROM_ERR]);
void prom_result_free(prom_result *res);

/* Value of label `name` in a series ("" when absent). */
const char *prom_label(const prom_series *s, const char *name, char *buf,
                       size_t len);

#endif
