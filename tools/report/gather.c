/* gather.c: the PromQL behind every figure, table and chart. Each query
 * stands alone, so one failing query marks its own section missing and the
 * rest of the report still comes out. */
#include "report.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Writes expr with every "$R" replaced by the range (e.g. "86400s") and
 * every "$J" by the job name. */
static void expand(char *out, size_t len, const char *expr, const report *r) {
  size_t o = 0;
  for (const char *p = expr; *p && o + 1 < len; p++) {
    if (p[0] == '$' && (p[1] == 'R' || p[1] == 'J' || p[1] == 'W')) {
      char tmp[128];
      if (p[1] == 'R')
        snprintf(tmp, sizeof tmp, "%.0fs", r->o.range_s);
      else if (p[1] == 'W') /* rate window of a chart point */
        snprintf(tmp, sizeof tmp, "%.0fs", fmax(2 * r->step, 60));
      else
        snprintf(tmp, sizeof tmp, "%s", r->o.job);
      size_t n = strlen(tmp);
      if (o + n >= len)
        break;
      memcpy(out + o, tmp, n);
      o += n;
      p++;
    } else {
      out[o++] = *p;
    }
  }
  out[o] = '\0';
}

/* One scalar at time `at`: the first series' value. */
static fig_state scalar(report *r, prom *p, const char *expr, double at,
                        double *v, char *note, size_t note_len,
                        const char *note_label, char err[PROM_ERR]) {
  char q[1024];
  expand(q, sizeof q, expr, r);
  prom_result res;
  if (!prom_query(p, q, at, &res, err)) {
    r->failures++;
    return FIG_MISSING;
  }
  fig_state st = FIG_NO_DATA;
  if (res.n > 0 && res.s[0].n > 0 && !isnan(res.s[0].v[0])) {
    *v = res.s[0].v[0];
    st = FIG_VALUE;
    if (note_label)
      prom_label(&res.s[0], note_label, note, note_len);
  }
  prom_result_free(&res);
  return st;
}

static const struct {
  const char *key, *title, *unit, *expr, *note_label;
} FIGS[] = {
    {"generations", "Generation requests (all outcomes)", "count",
     "sum(increase(orfeas_generation_3d_total[$R]))", NULL},
    {"generations_success", "Successful generations", "count",
     "sum(increase(orfeas_generation_3d_total{status=\"success\"}[$R]))", NULL},
    {"success_rate", "Success rate (success / (success + failed))", "%",
     "100 * sum(increase(orfeas_generation_3d_total{status=\"success\"}[$R]))"
     " / sum(increase(orfeas_generation_3d_total{status=~\"success|failed\"}"
     "[$R]))",
     NULL},
    {"generation_p50", "Generation time p50", "s",
     "histogram_quantile(0.5, sum by (le) (increase("
     "orfeas_generation_3d_duration_seconds_bucket[$R])))",
     NULL},
    {"generation_p95", "Generation time p95", "s",
     "histogram_quantile(0.95, sum by (le) (increase("
     "orfeas_generation_3d_duration_seconds_bucket[$R])))",
     NULL},
    {"generation_p99", "Generation time p99", "s",
     "histogram_quantile(0.99, sum by (le) (increase("
     "orfeas_generation_3d_duration_seconds_bucket[$R])))",
     NULL},
    {"slowest_stage", "Slowest stage (mean time)", "s",
     "topk(1, sum by (stage) (increase("
     "orfeas_pipeline_stage_duration_seconds_sum[$R])) / sum by (stage) ("
     "increase(orfeas_pipeline_stage_duration_seconds_count[$R])))",
     "stage"},
    {"quality_mean", "Mean quality score", "",
     "sum(increase(orfeas_generation_3d_quality_score_sum[$R])) / sum("
     "increase(orfeas_generation_3d_quality_score_count[$R]))",
     NULL},
    {"printable_share", "Share printable (of generated models)", "%",
     "100 * sum(increase(orfeas_generation_3d_printable_total[$R])) / sum("
     "increase(orfeas_generation_3d_quality_score_count[$R]))",
     NULL},
    /* Per lookup: a lookup that misses the memory tier goes on to the disk
     * tier, which counts it again (a hit or a miss), so the lookups are the
     * hits of both tiers plus the disk tier's misses, not all misses. */
    {"cache_hit_rate", "Cache hit rate", "%",
     "100 * sum(increase(orfeas_cache_hits_total[$R])) / (sum(increase("
     "orfeas_cache_hits_total[$R])) + sum(increase("
     "orfeas_cache_misses_total{cache_type=\"disk\"}[$R])))",
     NULL},
    {"queue_depth_peak", "Peak queue depth", "",
     "max(max_over_time(orfeas_queue_depth[$R]))", NULL},
    {"queue_wait_p95", "Queue wait p95", "s",
     "histogram_quantile(0.95, sum by (le) (increase("
     "orfeas_queue_wait_time_seconds_bucket[$R])))",
     NULL},
    {"gpu_util_mean", "GPU utilisation, mean", "%",
     "avg(avg_over_time(orfeas_gpu_utilization_percent[$R]))", NULL},
    {"gpu_util_max", "GPU utilisation, max", "%",
     "max(max_over_time(orfeas_gpu_utilization_percent[$R]))", NULL},
    {"gpu_temp_max", "GPU temperature, max", "°C",
     "max(max_over_time(orfeas_gpu_temperature_celsius[$R]))", NULL},
    {"vram_peak", "VRAM used, peak", "MiB",
     "max(max_over_time(orfeas_gpu_memory_used_mb[$R]))", NULL},
    {"uptime", "Uptime at the end of the period", "duration",
     "max(time() - process_start_time_seconds{job=\"$J\"})", NULL},
    {"restarts", "Restarts", "count",
     "sum(changes(process_start_time_seconds{job=\"$J\"}[$R]))", NULL},
};

static void gather_figures(report *r, prom *p) {
  for (size_t i = 0; i < sizeof FIGS / sizeof FIGS[0]; i++) {
    figure *f = &r->figs[r->nfigs++];
    f->key = FIGS[i].key;
    f->title = FIGS[i].title;
    f->unit = FIGS[i].unit;
    f->state = scalar(r, p, FIGS[i].expr, r->o.end, &f->value, f->note,
                      sizeof f->note, FIGS[i].note_label, f->err);
    if (!r->o.no_compare) {
      char note[96], err[PROM_ERR];
      f->prev_state = scalar(r, p, FIGS[i].expr, r->o.end - r->o.range_s,
                             &f->prev, note, sizeof note, NULL, err);
    }
  }
}

/* A table from one query: a column per label, then the value. */
static void table_query(report *r, prom *p, table *t, const char *expr,
                        const char *const *labels, int nlabels,
                        const char *unit) {
  char q[1024];
  expand(q, sizeof q, expr, r);
  prom_result res;
  if (!prom_query(p, q, r->o.end, &res, t->err)) {
    t->missing = true;
    r->failures++;
    return;
  }
  for (size_t i = 0; i < res.n && t->nrows < MAX_ROWS; i++) {
    int row = t->nrows++;
    for (int c = 0; c < nlabels; c++)
      prom_label(&res.s[i], labels[c], t->cells[row][c], sizeof t->cells[0][0]);
    report_fmt_value(unit, res.s[i].v[0], t->cells[row][nlabels],
                     sizeof t->cells[0][0]);
  }
  prom_result_free(&res);
}

/* A table of several queries that share key labels (the first nkeys
 * columns): one row per key, one column per query (its value in UNITS[i];
 * "-" where a query has no series for that key). */
static void table_merged(report *r, prom *p, table *t, int nkeys,
                         const char *const *exprs, const char *const *units,
                         int nexprs) {
  for (int c = 0; c < nexprs && !t->missing; c++) {
    char q[1024];
    expand(q, sizeof q, exprs[c], r);
    prom_result res;
    if (!prom_query(p, q, r->o.end, &res, t->err)) {
      t->missing = true;
      r->failures++;
      break;
    }
    for (size_t i = 0; i < res.n; i++) {
      char key[MAX_COLS][96];
      for (int k = 0; k < nkeys; k++)
        prom_label(&res.s[i], t->cols[k], key[k], sizeof key[k]);
      int row = 0;
      for (; row < t->nrows; row++) {
        int k = 0;
        while (k < nkeys && strcmp(t->cells[row][k], key[k]) == 0)
          k++;
        if (k == nkeys)
          break;
      }
      if (row == t->nrows) {
        if (t->nrows == MAX_ROWS)
          continue;
        t->nrows++;
        for (int k = 0; k < nkeys; k++)
          memcpy(t->cells[row][k], key[k], sizeof key[k]);
        for (int k = nkeys; k < t->ncols; k++)
          snprintf(t->cells[row][k], sizeof t->cells[0][0], "-");
      }
      report_fmt_value(units[c], res.s[i].v[0], t->cells[row][nkeys + c],
                       sizeof t->cells[0][0]);
    }
    prom_result_free(&res);
  }
}

/* Alerts that fired: ALERTS{alertstate="firing"} has a sample at every rule
 * evaluation while an alert fires. Its raw samples over the period give
 * when each alert (one label set) first fired, for how long in total
 * (episodes: runs of samples without a gap of more than 2.5 evaluation
 * intervals; each lasts from its first sample to its last plus one
 * interval) and how many times. Exact whatever the period: no step. */
static void alert_row(report *r, const prom_series *s) {
  double spacing = 0;
  for (size_t j = 1; j < s->n; j++) {
    double d = s->t[j] - s->t[j - 1];
    if (d > 0 && (spacing == 0 || d < spacing))
      spacing = d; /* the evaluation interval */
  }
  double total = 0, begin = s->t[0];
  int episodes = 1;
  for (size_t j = 1; j <= s->n; j++) {
    if (j == s->n || s->t[j] - s->t[j - 1] > 2.5 * spacing) {
      total += s->t[j - 1] - begin + spacing;
      if (j < s->n) {
        begin = s->t[j];
        episodes++;
      }
    }
  }
  alert_fired *a = &r->alerts[r->nalerts++];
  prom_label(s, "alertname", a->name, sizeof a->name);
  prom_label(s, "severity", a->severity, sizeof a->severity);
  /* Where: the labels that tell one instance of the alert from another. */
  static const char *const where[] = {"instance", "gpu_id", "source",
                                      "mountpoint"};
  a->where[0] = '\0';
  for (size_t k = 0; k < sizeof where / sizeof where[0]; k++) {
    char v[64];
    if (prom_label(s, where[k], v, sizeof v)[0] == '\0')
      continue;
    size_t off = strlen(a->where);
    snprintf(a->where + off, sizeof a->where - off, "%s%s=%s", off ? " " : "",
             where[k], v);
  }
  a->first = s->t[0];
  a->seconds = total;
  a->episodes = episodes;
}

static int cmp_alert(const void *x, const void *y) {
  const alert_fired *a = x, *b = y;
  return (a->first > b->first) - (a->first < b->first);
}

static void gather_alerts(report *r, prom *p) {
  char q[128];
  prom_result res;
  snprintf(q, sizeof q, "ALERTS{alertstate=\"firing\"}[%.0fs]", r->o.range_s);
  if (!prom_query(p, q, r->o.end, &res, r->alerts_err)) {
    r->alerts_missing = true;
    r->failures++;
    return;
  }
  for (size_t i = 0; i < res.n && r->nalerts < MAX_ALERTS; i++)
    if (res.s[i].n > 0)
      alert_row(r, &res.s[i]);
  prom_result_free(&res);
  qsort(r->alerts, (size_t)r->nalerts, sizeof r->alerts[0], cmp_alert);
}

static void gather_tables(report *r, prom *p) {
  table *t = &r->tables[r->ntables++];
  *t = (table){.title = "Generations by format and status",
               .ncols = 3,
               .cols = {"format", "status", "count"}};
  table_query(r, p, t,
              "sort_desc(sum by (format, status) (increase("
              "orfeas_generation_3d_total[$R])) > 0)",
              ((const char *const[]){"format", "status"}), 2, "count");

  /* Per node: every orfeasd the job scrapes (one row each). */
  t = &r->tables[r->ntables++];
  *t = (table){.title = "Nodes",
               .ncols = 6,
               .cols = {"instance", "generations", "success rate",
                        "generation p95", "uptime at the end", "restarts"}};
  static const char *const node_exprs[] = {
      "sum by (instance) (increase(orfeas_generation_3d_total[$R]))",
      "100 * sum by (instance) (increase(orfeas_generation_3d_total"
      "{status=\"success\"}[$R])) / sum by (instance) (increase("
      "orfeas_generation_3d_total{status=~\"success|failed\"}[$R]))",
      "histogram_quantile(0.95, sum by (instance, le) (increase("
      "orfeas_generation_3d_duration_seconds_bucket[$R])))",
      "max by (instance) (time() - process_start_time_seconds{job=\"$J\"})",
      "sum by (instance) (changes(process_start_time_seconds{job=\"$J\"}"
      "[$R]))"};
  static const char *const node_units[] = {"count", "%", "s", "duration",
                                           "count"};
  table_merged(r, p, t, 1, node_exprs, node_units, 5);

  /* Per GPU (a GPU is its node and its id). */
  t = &r->tables[r->ntables++];
  *t = (table){.title = "GPUs",
               .ncols = 6,
               .cols = {"instance", "gpu_id", "utilisation mean",
                        "utilisation max", "temperature max", "VRAM peak"}};
  static const char *const gpu_exprs[] = {
      "avg_over_time(orfeas_gpu_utilization_percent[$R])",
      "max_over_time(orfeas_gpu_utilization_percent[$R])",
      "max_over_time(orfeas_gpu_temperature_celsius[$R])",
      "max_over_time(orfeas_gpu_memory_used_mb[$R])"};
  static const char *const gpu_units[] = {"%", "%", "°C", "MiB"};
  table_merged(r, p, t, 2, gpu_exprs, gpu_units, 4);
}

static void chart_query(report *r, prom *p, const char *title, const char *unit,
                        const char *expr, const char *name_label,
                        const char *name_prefix) {
  chart *c = &r->charts[r->ncharts++];
  c->title = title;
  c->unit = unit;
  char q[1024];
  expand(q, sizeof q, expr, r);
  if (!prom_query_range(p, q, r->start, r->o.end, r->step, &c->data, c->err)) {
    c->missing = true;
    r->failures++;
    return;
  }
  for (size_t i = 0; i < c->data.n && i < 16; i++) {
    char v[48];
    prom_label(&c->data.s[i], name_label, v, sizeof v);
    snprintf(c->names[i], sizeof c->names[i], "%s%s", name_prefix,
             v[0] ? v : "all");
  }
}

static void gather_charts(report *r, prom *p) {
  chart_query(r, p, "Generations per hour, by status", "generations/h",
              "sum by (status) (rate(orfeas_generation_3d_total[$W])) * 3600",
              "status", "");
  chart_query(r, p, "Generation time p50 / p95", "s",
              "label_replace(histogram_quantile(0.5, sum by (le) (rate("
              "orfeas_generation_3d_duration_seconds_bucket[$W]))), \"q\", "
              "\"p50\", \"\", \"\") or label_replace(histogram_quantile(0.95, "
              "sum by (le) (rate(orfeas_generation_3d_duration_seconds_bucket"
              "[$W]))), \"q\", \"p95\", \"\", \"\")",
              "q", "");
  chart_query(r, p, "GPU utilisation", "%", "orfeas_gpu_utilization_percent",
              "gpu_id", "GPU ");
  chart_query(r, p, "GPU temperature", "°C", "orfeas_gpu_temperature_celsius",
              "gpu_id", "GPU ");
  /* max, not sum: on the Redis store every node reports the cluster's
   * backlog (issue #15), so a sum would count it once per node. */
  chart_query(r, p, "Queue depth", "jobs", "max(orfeas_queue_depth)", "", "");
}

void report_gather(report *r, prom *p) {
  r->start = r->o.end - r->o.range_s;
  /* About 120 points per chart (a 24 h report: one every 12 min). */
  r->step = fmax(r->o.range_s / 120, 1);
  gather_figures(r, p);
  gather_alerts(r, p);
  gather_tables(r, p);
  gather_charts(r, p);
}

void report_free(report *r) {
  for (int i = 0; i < r->ncharts; i++)
    prom_result_free(&r->charts[i].data);
}
