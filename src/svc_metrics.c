/* svc_metrics.c: every orfeas_* metric of the service, in one place.
 *
 * Names and labels are the monitoring plan's (docs/api.md lists them). The
 * label sets that alert rules and dashboards select on are created here at
 * start-up, at 0, so a rate() over them exists before the first event:
 * every format x status of generations, every stage, every WebSocket event,
 * both cache tiers, and {method, endpoint, 200|500} of every route.
 *
 * Buckets are chosen so the plan's P95 alerts can be evaluated near their
 * thresholds: generation reaches 600 s with bounds at 60, 90, 120, 180 s
 * around the 120 s alert; HTTP reaches 60 s with bounds at 10, 20, 30, 45 s
 * around the 30 s alert.
 */
#include <stdio.h>
#include <string.h>

#include "orfeasd.h"

static const char *const ROUTE_TPL[] = {
#define OD_ROUTE_STR(id, tpl) tpl,
  OD_ROUTE_LIST(OD_ROUTE_STR)
#undef OD_ROUTE_STR
};

const char *od_route_template(od_route r) {
  return (unsigned)r < OD_ROUTE_COUNT ? ROUTE_TPL[r] : "other";
}

static const double GEN_BUCKETS[] = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20,
                                     30, 60, 90, 120, 180, 300, 450, 600};
static const double STAGE_BUCKETS[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1,
                                       0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300};
static const double QUALITY_BUCKETS[] = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7,
                                         0.8, 0.85, 0.9, 0.95, 1.0};
static const double WAIT_BUCKETS[] = {0.001, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5,
                                      10, 30, 60, 120, 300, 600};
static const double HTTP_BUCKETS[] = {0.0005, 0.001, 0.0025, 0.005, 0.01,
                                      0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
                                      10, 20, 30, 45, 60};
static const double SIZE_BUCKETS[] = {100, 1000, 10000, 100000, 1e6, 1e7,
                                      5e7, 1e8};

/* One helper for every registration so each failure names the metric. */
static om_family *fam(od_metrics *m, om_type t, const char *name,
                      const char *help, const char *const *labels, size_t n,
                      const double *b, size_t nb, int *bad, char *err,
                      size_t err_len) {
  om_error e;
  om_family *f = om_family_new(m->reg, t, &(om_family_opts){
      .name = name, .help = help, .label_names = labels, .label_count = n,
      .buckets = b, .bucket_count = nb, .max_series = 2000}, &e);
  if (f == NULL && !*bad) {
    *bad = 1;
    snprintf(err, err_len, "metrics: %s: %s", name, e.text);
  }
  return f;
}

#define NB(a) (sizeof a / sizeof a[0])

int od_metrics_init(od_metrics *m, char *err, size_t err_len) {
  memset(m, 0, sizeof *m);
  m->start_time = od_now();
  od_reqstats_init(m);
  m->reg = om_registry_new(&(om_registry_opts){
      .overflow_name = "orfeas_metrics_series_overflow_total"});
  if (m->reg == NULL) {
    snprintf(err, err_len, "metrics: out of memory");
    return -1;
  }
  int bad = 0;
  om_family *f;
  m->gen_total = fam(m, OM_COUNTER, "orfeas_generation_3d_total",
                     "3D generations by output format and outcome (success, "
                     "failed, cached, rejected).",
                     OM_LABELS("format", "status"), 2, NULL, 0, &bad, err, err_len);
  m->gen_duration = fam(m, OM_HISTOGRAM, "orfeas_generation_3d_duration_seconds",
                        "Wall time of a 3D generation, from a worker taking "
                        "the job to the model being stored.",
                        OM_LABELS("format"), 1, GEN_BUCKETS, NB(GEN_BUCKETS),
                        &bad, err, err_len);
  f = fam(m, OM_HISTOGRAM, "orfeas_generation_3d_quality_score",
          "Quality score (0..1) of each generated model.", NULL, 0,
          QUALITY_BUCKETS, NB(QUALITY_BUCKETS), &bad, err, err_len);
  m->quality_score = f ? om_family_histogram(f, NULL) : NULL;
  /* "Printable" needs a closed mesh and a positive volume besides a score of
   * 0.80, so it cannot be read off the score histogram: its own counter
   * (the daily report's "share printable" = printable / generated). */
  f = fam(m, OM_COUNTER, "orfeas_generation_3d_printable_total",
          "Generated models that are printable (closed, positive volume, score >= 0.80).",
          NULL, 0, NULL, 0, &bad, err, err_len);
  m->printable = f ? om_family_counter(f, NULL) : NULL;
  m->stage_duration = fam(m, OM_HISTOGRAM, "orfeas_pipeline_stage_duration_seconds",
                          "Duration of each pipeline stage.", OM_LABELS("stage"),
                          1, STAGE_BUCKETS, NB(STAGE_BUCKETS), &bad, err, err_len);
  m->bottleneck = fam(m, OM_GAUGE, "orfeas_pipeline_bottleneck_stage",
                      "1 for the stage with the largest mean duration over the "
                      "last 100 jobs, 0 for the others.",
                      OM_LABELS("stage"), 1, NULL, 0, &bad, err, err_len);
  f = fam(m, OM_GAUGE, "orfeas_websocket_connections_active",
          "Open WebSocket connections.", NULL, 0, NULL, 0, &bad, err, err_len);
  m->ws_active = f ? om_family_gauge(f, NULL) : NULL;
  om_family *sent = fam(m, OM_COUNTER, "orfeas_websocket_messages_sent_total",
                        "WebSocket messages queued to clients, by event.",
                        OM_LABELS("event_type"), 1, NULL, 0, &bad, err, err_len);
  f = fam(m, OM_COUNTER, "orfeas_websocket_progress_updates_total",
          "Progress updates published by running jobs (one per stage start "
          "and end).", NULL, 0, NULL, 0, &bad, err, err_len);
  m->ws_progress = f ? om_family_counter(f, NULL) : NULL;
  f = fam(m, OM_COUNTER, "orfeas_websocket_messages_dropped_total",
          "WebSocket messages not queued because the client's queue was "
          "full (a slow client).", NULL, 0, NULL, 0, &bad, err, err_len);
  m->ws_dropped = f ? om_family_counter(f, NULL) : NULL;
  f = fam(m, OM_GAUGE, "orfeas_queue_depth", "Jobs waiting for a worker.",
          NULL, 0, NULL, 0, &bad, err, err_len);
  m->queue_depth = f ? om_family_gauge(f, NULL) : NULL;
  f = fam(m, OM_HISTOGRAM, "orfeas_queue_wait_time_seconds",
          "Time a job waited in the queue before a worker took it.", NULL, 0,
          WAIT_BUCKETS, NB(WAIT_BUCKETS), &bad, err, err_len);
  m->queue_wait = f ? om_family_histogram(f, NULL) : NULL;
  om_family *hits = fam(m, OM_COUNTER, "orfeas_cache_hits_total",
                        "Result-cache hits by tier (memory, disk).",
                        OM_LABELS("cache_type"), 1, NULL, 0, &bad, err, err_len);
  om_family *misses = fam(m, OM_COUNTER, "orfeas_cache_misses_total",
                          "Result-cache misses by tier (memory, disk).",
                          OM_LABELS("cache_type"), 1, NULL, 0, &bad, err, err_len);
  om_family *size = fam(m, OM_GAUGE, "orfeas_cache_size_bytes",
                        "Bytes held by each result-cache tier.",
                        OM_LABELS("cache_type"), 1, NULL, 0, &bad, err, err_len);
  m->http_requests = fam(m, OM_COUNTER, "orfeas_http_requests_total",
                         "HTTP requests by method, route template and status.",
                         OM_LABELS("method", "endpoint", "status"), 3, NULL, 0,
                         &bad, err, err_len);
  m->http_duration = fam(m, OM_HISTOGRAM, "orfeas_http_request_duration_seconds",
                         "HTTP request duration, first byte in to last byte "
                         "queued.", OM_LABELS("method", "endpoint"), 2,
                         HTTP_BUCKETS, NB(HTTP_BUCKETS), &bad, err, err_len);
  m->http_req_size = fam(m, OM_HISTOGRAM, "orfeas_http_request_size_bytes",
                         "HTTP request body sizes.", OM_LABELS("method", "endpoint"),
                         2, SIZE_BUCKETS, NB(SIZE_BUCKETS), &bad, err, err_len);
  m->http_resp_size = fam(m, OM_HISTOGRAM, "orfeas_http_response_size_bytes",
                          "HTTP response body sizes.", OM_LABELS("method", "endpoint"),
                          2, SIZE_BUCKETS, NB(SIZE_BUCKETS), &bad, err, err_len);
  m->errors = fam(m, OM_COUNTER, "orfeas_errors_total",
                  "Requests answered with an error, by kind and route template.",
                  OM_LABELS("type", "endpoint"), 2, NULL, 0, &bad, err, err_len);
  m->validation_errors = fam(m, OM_COUNTER, "orfeas_validation_errors_total",
                             "Rejected request fields, by field and problem.",
                             OM_LABELS("field", "error_type"), 2, NULL, 0, &bad,
                             err, err_len);
  m->rate_limited = fam(m, OM_COUNTER, "orfeas_rate_limit_rejections_total",
                        "Requests refused by the per-address rate limit.",
                        OM_LABELS("endpoint"), 1, NULL, 0, &bad, err, err_len);
  /* The original API ignored unknown generate-3d fields, and its clients
   * send some; we ignore them too, but count them so an operator sees a
   * client that believes it is setting something. */
  f = fam(m, OM_COUNTER, "orfeas_generate_unknown_fields_total",
          "Unknown fields in generate-3d bodies, ignored (not an error).",
          NULL, 0, NULL, 0, &bad, err, err_len);
  m->gen_unknown_fields = f ? om_family_counter(f, NULL) : NULL;
  f = fam(m, OM_GAUGE, "orfeas_active_jobs",
          "Jobs queued or processing.", NULL, 0, NULL, 0, &bad, err, err_len);
  m->active_jobs = f ? om_family_gauge(f, NULL) : NULL;
  f = fam(m, OM_GAUGE, "orfeas_workers_busy",
          "Workers running a job now.", NULL, 0, NULL, 0, &bad, err, err_len);
  m->workers_busy = f ? om_family_gauge(f, NULL) : NULL;
  f = fam(m, OM_GAUGE, "orfeas_uptime_seconds",
          "Seconds since the service started (updated at each scrape).", NULL,
          0, NULL, 0, &bad, err, err_len);
  m->uptime = f ? om_family_gauge(f, NULL) : NULL;
  if (bad)
    return -1;

  om_error e;
  if (om_process_collector_register(m->reg, &e) != OM_OK ||
      om_build_info_register(m->reg, "orfeas_build_info",
                             "orfeasd version; always 1.",
                             OM_LABELS("version", "service"),
                             OM_LABELS(ORFEASD_VERSION, "orfeasd"), 2, &e) != OM_OK) {
    snprintf(err, err_len, "metrics: %s", e.text);
    return -1;
  }

  /* The label sets alerts and dashboards need, at 0. */
  static const char *const statuses[] = {"success", "failed", "cached", "rejected"};
  for (int fm = 0; fm <= ORFEAS_PL_GLB; fm++) {
    const char *fn = orfeas_pl_format_name((orfeas_pl_format)fm);
    for (size_t s = 0; s < 4; s++)
      om_family_counter(m->gen_total, OM_LABELS(fn, statuses[s]));
    om_family_histogram(m->gen_duration, OM_LABELS(fn));
  }
  for (int s = 0; s < ORFEAS_PL_STAGE_COUNT; s++) {
    const char *sn = orfeas_pl_stage_name((orfeas_pl_stage)s);
    om_family_histogram(m->stage_duration, OM_LABELS(sn));
    om_family_gauge(m->bottleneck, OM_LABELS(sn));
  }
  for (int ev = 0; ev < OD_WS_EVENT_COUNT; ev++)
    m->ws_sent[ev] = om_family_counter(sent, OM_LABELS(od_ws_event_name((od_ws_event)ev)));
  static const char *const tiers[] = {"memory", "disk"};
  for (int t = 0; t < OD_CACHE_TIERS; t++) {
    m->cache_hits[t] = om_family_counter(hits, OM_LABELS(tiers[t]));
    m->cache_misses[t] = om_family_counter(misses, OM_LABELS(tiers[t]));
    m->cache_size[t] = om_family_gauge(size, OM_LABELS(tiers[t]));
  }
  for (int r = 0; r < OD_ROUTE_COUNT; r++) {
    const char *meth = r == OD_ROUTE_UPLOAD || r == OD_ROUTE_GENERATE ? "POST" : "GET";
    om_family_counter(m->http_requests, OM_LABELS(meth, ROUTE_TPL[r], "200"));
    om_family_counter(m->http_requests, OM_LABELS(meth, ROUTE_TPL[r], "500"));
    om_family_histogram(m->http_duration, OM_LABELS(meth, ROUTE_TPL[r]));
    om_family_counter(m->errors, OM_LABELS("internal", ROUTE_TPL[r]));
  }
  om_family_counter(m->rate_limited, OM_LABELS(ROUTE_TPL[OD_ROUTE_UPLOAD]));
  om_family_counter(m->rate_limited, OM_LABELS(ROUTE_TPL[OD_ROUTE_GENERATE]));
  om_family_counter(m->validation_errors, OM_LABELS("image", "not_image"));
  return 0;
}

void od_metrics_free(od_metrics *m) {
  od_reqstats_free(m);
  om_registry_free(m->reg);
  m->reg = NULL;
}

void od_metric_error(od_metrics *m, const char *type, od_route r) {
  om_counter_inc(om_family_counter(m->errors, OM_LABELS(type, od_route_template(r))));
}

void od_metric_validation(od_metrics *m, const char *field,
                          const char *error_type) {
  om_counter_inc(om_family_counter(m->validation_errors,
                                   OM_LABELS(field, error_type)));
}
