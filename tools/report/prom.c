/* prom.c: Prometheus HTTP API client. Values come back as strings ("NaN",
 * "+Inf" included) and are parsed with strtod; every failure is reported
 * with the query it belongs to, never turned into a zero. */
#include "prom.h"

#include <curl/curl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct prom {
  char base[512];
  double timeout_s; /* one request at most */
  double total_s;   /* all requests together (--timeout) */
  double deadline;  /* CLOCK_MONOTONIC seconds: total_s from prom_new */
  CURL *curl;
};

typedef struct {
  char *data;
  size_t len, cap;
} body;

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *user) {
  body *b = user;
  size_t n = size * nmemb;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 16384;
    while (cap < b->len + n + 1)
      cap *= 2;
    if (cap > (64u << 20)) /* a report query never needs more */
      return 0;
    char *d = realloc(b->data, cap);
    if (d == NULL)
      return 0;
    b->data = d;
    b->cap = cap;
  }
  memcpy(b->data + b->len, ptr, n);
  b->len += n;
  b->data[b->len] = '\0';
  return n;
}

static double mono_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

prom *prom_new(const char *base, double timeout_s, double total_s) {
  static bool global_done;
  if (!global_done) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    global_done = true;
  }
  prom *p = calloc(1, sizeof *p);
  if (p == NULL)
    return NULL;
  snprintf(p->base, sizeof p->base, "%s", base);
  size_t n = strlen(p->base);
  while (n > 0 && p->base[n - 1] == '/')
    p->base[--n] = '\0';
  p->timeout_s = timeout_s;
  p->total_s = total_s;
  p->deadline = mono_s() + total_s;
  p->curl = curl_easy_init();
  if (p->curl == NULL) {
    free(p);
    return NULL;
  }
  return p;
}

void prom_free(prom *p) {
  if (p == NULL)
    return;
  curl_easy_cleanup(p->curl);
  free(p);
}

/* GET url into b; false + err when there is no answer, or no time left of
 * the run's deadline. Any status comes back: the caller reads a 4xx/5xx
 * body (Prometheus' JSON error, or a proxy's text). Each request gets at
 * most timeout_s, and never more than what is left of total_s, so a slow
 * Prometheus costs --timeout, not 30 s for each of some 50 queries. */
static bool get(prom *p, const char *url, body *b, long *status,
                char err[PROM_ERR]) {
  double left = p->deadline - mono_s();
  if (left <= 0) {
    snprintf(err, PROM_ERR,
             "not asked: the --timeout of %.0f s for all queries had "
             "passed (Prometheus at %.120s is slow; raise --timeout)",
             p->total_s, p->base);
    return false;
  }
  curl_easy_reset(p->curl);
  curl_easy_setopt(p->curl, CURLOPT_URL, url);
  curl_easy_setopt(p->curl, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(p->curl, CURLOPT_WRITEDATA, b);
  curl_easy_setopt(p->curl, CURLOPT_TIMEOUT_MS,
                   (long)(fmin(p->timeout_s, left) * 1000) + 1);
  curl_easy_setopt(p->curl, CURLOPT_NOSIGNAL, 1L);
  CURLcode rc = curl_easy_perform(p->curl);
  if (rc == CURLE_OPERATION_TIMEDOUT && p->deadline - mono_s() <= 0) {
    snprintf(err, PROM_ERR,
             "no answer from Prometheus at %.120s within the --timeout of "
             "%.0f s for all queries (raise --timeout)",
             p->base, p->total_s);
    return false;
  }
  if (rc != CURLE_OK) {
    snprintf(err, PROM_ERR,
             "cannot reach Prometheus at %.100s: %.60s (is it running? "
             "give its URL with --prometheus)",
             p->base, curl_easy_strerror(rc));
    return false;
  }
  curl_easy_getinfo(p->curl, CURLINFO_RESPONSE_CODE, status);
  return true;
}

bool prom_ready(prom *p, char err[PROM_ERR]) {
  char url[600];
  snprintf(url, sizeof url, "%s/-/ready", p->base);
  body b = {0};
  long status = 0;
  bool ok = get(p, url, &b, &status, err);
  free(b.data);
  if (ok && status != 200) {
    snprintf(err, PROM_ERR, "Prometheus at %.120s is not ready (HTTP %ld)",
             p->base, status);
    return false;
  }
  return ok;
}

void prom_result_free(prom_result *res) {
  for (size_t i = 0; i < res->n; i++) {
    free(res->s[i].t);
    free(res->s[i].v);
    free(res->s[i].metric_json);
  }
  free(res->s);
  res->s = NULL;
  res->n = 0;
}

static double parse_value(json_t *pair, double *t) {
  *t = json_number_value(json_array_get(pair, 0));
  const char *v = json_string_value(json_array_get(pair, 1));
  return v ? strtod(v, NULL) : 0.0 / 0.0;
}

static bool parse(const char *text, prom_result *res, const char *expr,
                  char err[PROM_ERR]) {
  json_error_t je;
  json_t *root = json_loads(text, 0, &je);
  if (root == NULL) {
    snprintf(err, PROM_ERR, "query %.80s: bad JSON from Prometheus: %.100s",
             expr, je.text);
    return false;
  }
  const char *status = json_string_value(json_object_get(root, "status"));
  if (status == NULL || strcmp(status, "success") != 0) {
    const char *e = json_string_value(json_object_get(root, "error"));
    snprintf(err, PROM_ERR, "query %.80s failed: %s", expr,
             e ? e : "no error text");
    json_decref(root);
    return false;
  }
  json_t *data = json_object_get(root, "data");
  const char *type = json_string_value(json_object_get(data, "resultType"));
  json_t *result = json_object_get(data, "result");
  res->n = 0;
  res->s = NULL;
  if (type != NULL && strcmp(type, "scalar") == 0) {
    res->s = calloc(1, sizeof *res->s);
    res->s[0].t = malloc(sizeof(double));
    res->s[0].v = malloc(sizeof(double));
    res->s[0].metric_json = strdup("{}");
    res->s[0].n = 1;
    res->s[0].v[0] = parse_value(result, &res->s[0].t[0]);
    res->n = 1;
    json_decref(root);
    return true;
  }
  size_t n = json_array_size(result);
  res->s = calloc(n ? n : 1, sizeof *res->s);
  for (size_t i = 0; i < n; i++) {
    json_t *item = json_array_get(result, i);
    prom_series *s = &res->s[i];
    json_t *metric = json_object_get(item, "metric");
    const char *k;
    json_t *v;
    size_t off = 0;
    json_object_foreach(metric, k, v) {
      if (off < sizeof s->labels)
        off +=
            (size_t)snprintf(s->labels + off, sizeof s->labels - off, "%s%s=%s",
                             off ? "," : "", k, json_string_value(v));
    }
    s->metric_json = json_dumps(metric, JSON_COMPACT | JSON_SORT_KEYS);
    json_t *values = json_object_get(item, "values");
    json_t *value = json_object_get(item, "value");
    size_t m = values ? json_array_size(values) : 1;
    s->t = calloc(m ? m : 1, sizeof *s->t);
    s->v = calloc(m ? m : 1, sizeof *s->v);
    for (size_t j = 0; j < m; j++)
      s->v[j] =
          parse_value(values ? json_array_get(values, j) : value, &s->t[j]);
    s->n = m;
    res->n++;
  }
  json_decref(root);
  return true;
}

static bool run(prom *p, const char *path, const char *expr, const char *params,
                prom_result *res, char err[PROM_ERR]) {
  char *q = curl_easy_escape(p->curl, expr, 0);
  size_t len = strlen(p->base) + strlen(path) + strlen(q) + strlen(params) + 16;
  char *url = malloc(len);
  snprintf(url, len, "%s%s?query=%s%s", p->base, path, q, params);
  curl_free(q);
  body b = {0};
  long status = 0;
  bool ok = get(p, url, &b, &status, err);
  free(url);
  if (ok && b.data == NULL) {
    snprintf(err, PROM_ERR, "query %.80s: empty answer (HTTP %ld)", expr,
             status);
    ok = false;
  }
  if (ok && (status < 200 || status > 299) && b.data[0] != '{') {
    /* Not Prometheus' JSON: a proxy's or a broken server's page. Its first
     * line says more than "bad JSON". */
    size_t n = strcspn(b.data, "\r\n");
    snprintf(err, PROM_ERR, "query %.80s: HTTP %ld from %.100s: %.*s", expr,
             status, p->base, (int)(n < 80 ? n : 80), b.data);
    ok = false;
  }
  if (ok)
    ok = parse(b.data, res, expr, err);
  free(b.data);
  return ok;
}

bool prom_query(prom *p, const char *expr, double at, prom_result *res,
                char err[PROM_ERR]) {
  char params[64];
  snprintf(params, sizeof params, "&time=%.3f", at);
  return run(p, "/api/v1/query", expr, params, res, err);
}

bool prom_query_range(prom *p, const char *expr, double start, double end,
                      double step, prom_result *res, char err[PROM_ERR]) {
  char params[128];
  snprintf(params, sizeof params, "&start=%.3f&end=%.3f&step=%.3f", start, end,
           step);
  return run(p, "/api/v1/query_range", expr, params, res, err);
}

const char *prom_label(const prom_series *s, const char *name, char *buf,
                       size_t len) {
  buf[0] = '\0';
  json_t *m = json_loads(s->metric_json ? s->metric_json : "{}", 0, NULL);
  const char *v = json_string_value(json_object_get(m, name));
  if (v)
    snprintf(buf, len, "%s", v);
  json_decref(m);
  return buf;
}
