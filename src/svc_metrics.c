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
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "orfeas_build.h" /* generated: version, git revision, build type */
#include "store.h"

static const double GEN_BUCKETS[] = {0.05, 0.1, 0.25, 0.5, 1,  2.5,
                                     5,    10,  20,   30,  60, 90,
                                     120,  180, 300,  450, 600};
static const double STAGE_BUCKETS[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1,
                                       0.25,  0.5,   1,    2.5,   5,    10,
                                       30,    60,    120,  300};
static const double QUALITY_BUCKETS[] = {0.1, 0.2, 0.3,  0.4, 0.5,  0.6,
                                         0.7, 0.8, 0.85, 0.9, 0.95, 1.0};
static const double WAIT_BUCKETS[] = {0.001, 0.01, 0.05, 0.1, 0.5, 1,   2.5,
                                      5,     10,   30,   60,  120, 300, 600};
static const double HTTP_BUCKETS[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                      0.05,   0.1,   0.25,   0.5,   1,    2.5,
                                      5,      10,    20,     30,    45,   60};
static const double SIZE_BUCKETS[] = {100, 1000, 10000, 100000,
                                      1e6, 1e7,  5e7,   1e8};
/* A store call: 1 us (a memory read) to 10 s (a stalled disk); a synced
 * commit is 0.1-50 ms on a virtual disk (docs/performance.md). */
static const double STORE_BUCKETS[] = {
    1e-6,  5e-6, 2.5e-5, 1e-4, 2.5e-4, 5e-4, 0.001, 0.0025,
    0.005, 0.01, 0.025,  0.05, 0.1,    0.25, 1,     10};

/* ---- the metrics, as data ------------------------------------------------ */

/* What a definition's od_metrics field holds: the family (labelled metrics)
 * or the one child of an unlabelled family, of the field's own type. */
typedef enum { HOLD_FAMILY, HOLD_COUNTER, HOLD_GAUGE, HOLD_HISTOGRAM } hold;

typedef struct {
  size_t offset; /* of the field in od_metrics */
  hold holds;
  om_type type;
  const char *name, *help;
  const char *const *labels;
  size_t nlabels;
  const double *buckets;
  size_t nbuckets;
} metric_def;

/* FIELD(f): where the handle goes, and what it is, read off the field's
 * declared type (so a table line cannot store a gauge in a counter). */
#define FIELD(f)                                                               \
  offsetof(od_metrics, f), _Generic(((od_metrics *)0)->f, om_family *          \
                                    : HOLD_FAMILY, om_counter *                \
                                    : HOLD_COUNTER, om_gauge *                 \
                                    : HOLD_GAUGE, om_histogram *               \
                                    : HOLD_HISTOGRAM)
#define LABELS(...) OM_LABELS(__VA_ARGS__), NB(OM_LABELS(__VA_ARGS__))
#define NO_LABELS NULL, 0
#define BUCKETS(b) b, NB(b)
#define NO_BUCKETS NULL, 0
#define NB(a) (sizeof a / sizeof a[0])

/* Every orfeas_* family, in exposition order. To add a metric: a field in
 * od_metrics (orfeasd.h), a line here, a row in docs/metrics.md. */
static const metric_def METRICS[] = {
    {FIELD(gen_total), OM_COUNTER, "orfeas_generation_3d_total",
     "3D generations by output format and outcome (success, failed, cached, "
     "rejected).",
     LABELS("format", "status"), NO_BUCKETS},
    {FIELD(gen_duration), OM_HISTOGRAM, "orfeas_generation_3d_duration_seconds",
     "Wall time of a 3D generation, from a worker taking the job to the "
     "model being stored.",
     LABELS("format"), BUCKETS(GEN_BUCKETS)},
    {FIELD(quality_score), OM_HISTOGRAM, "orfeas_generation_3d_quality_score",
     "Quality score (0..1) of each generated model.", NO_LABELS,
     BUCKETS(QUALITY_BUCKETS)},
    /* "Printable" needs a closed mesh and a positive volume besides a score
     * of 0.80, so it cannot be read off the score histogram: its own
     * counter (the daily report's "share printable" = printable /
     * generated). */
    {FIELD(printable), OM_COUNTER, "orfeas_generation_3d_printable_total",
     "Generated models that are printable (closed, positive volume, score "
     ">= 0.80).",
     NO_LABELS, NO_BUCKETS},
    {FIELD(stage_duration), OM_HISTOGRAM,
     "orfeas_pipeline_stage_duration_seconds",
     "Duration of each pipeline stage.", LABELS("stage"),
     BUCKETS(STAGE_BUCKETS)},
    {FIELD(bottleneck), OM_GAUGE, "orfeas_pipeline_bottleneck_stage",
     "1 for the stage with the largest mean duration over the last 100 jobs, "
     "0 for the others.",
     LABELS("stage"), NO_BUCKETS},
    {FIELD(ws_active), OM_GAUGE, "orfeas_websocket_connections_active",
     "Open WebSocket connections.", NO_LABELS, NO_BUCKETS},
    {FIELD(ws_sent_family), OM_COUNTER, "orfeas_websocket_messages_sent_total",
     "WebSocket messages queued to clients, by event.", LABELS("event_type"),
     NO_BUCKETS},
    {FIELD(ws_progress), OM_COUNTER, "orfeas_websocket_progress_updates_total",
     "Progress updates published by running jobs (one per stage start and "
     "end).",
     NO_LABELS, NO_BUCKETS},
    {FIELD(ws_dropped), OM_COUNTER, "orfeas_websocket_messages_dropped_total",
     "WebSocket messages not queued because the client's queue was full (a "
     "slow client).",
     NO_LABELS, NO_BUCKETS},
    {FIELD(queue_depth), OM_GAUGE, "orfeas_queue_depth",
     "Jobs waiting for a worker.", NO_LABELS, NO_BUCKETS},
    {FIELD(queue_wait), OM_HISTOGRAM, "orfeas_queue_wait_time_seconds",
     "Time a job waited in the queue before a worker took it.", NO_LABELS,
     BUCKETS(WAIT_BUCKETS)},
    {FIELD(cache_hits_family), OM_COUNTER, "orfeas_cache_hits_total",
     "Result-cache hits by tier (memory, disk).", LABELS("cache_type"),
     NO_BUCKETS},
    {FIELD(cache_misses_family), OM_COUNTER, "orfeas_cache_misses_total",
     "Result-cache misses by tier (memory, disk).", LABELS("cache_type"),
     NO_BUCKETS},
    {FIELD(cache_size_family), OM_GAUGE, "orfeas_cache_size_bytes",
     "Bytes held by each result-cache tier.", LABELS("cache_type"), NO_BUCKETS},
    {FIELD(http_requests), OM_COUNTER, "orfeas_http_requests_total",
     "HTTP requests by method, route template and status.",
     LABELS("method", "endpoint", "status"), NO_BUCKETS},
    {FIELD(http_duration), OM_HISTOGRAM, "orfeas_http_request_duration_seconds",
     "HTTP request duration, first byte in to last byte queued.",
     LABELS("method", "endpoint"), BUCKETS(HTTP_BUCKETS)},
    {FIELD(http_req_size), OM_HISTOGRAM, "orfeas_http_request_size_bytes",
     "HTTP request body sizes.", LABELS("method", "endpoint"),
     BUCKETS(SIZE_BUCKETS)},
    {FIELD(http_resp_size), OM_HISTOGRAM, "orfeas_http_response_size_bytes",
     "HTTP response body sizes.", LABELS("method", "endpoint"),
     BUCKETS(SIZE_BUCKETS)},
    {FIELD(errors), OM_COUNTER, "orfeas_errors_total",
     "Requests answered with an error, by kind and route template.",
     LABELS("type", "endpoint"), NO_BUCKETS},
    {FIELD(validation_errors), OM_COUNTER, "orfeas_validation_errors_total",
     "Rejected request fields, by field and problem.",
     LABELS("field", "error_type"), NO_BUCKETS},
    {FIELD(rate_limited), OM_COUNTER, "orfeas_rate_limit_rejections_total",
     "Requests refused by the per-address rate limit.", LABELS("endpoint"),
     NO_BUCKETS},
    /* The original API ignored unknown generate-3d fields, and its clients
     * send some; ignored here too, but counted, so an operator sees a
     * client that believes it is setting something. */
    {FIELD(gen_unknown_fields), OM_COUNTER,
     "orfeas_generate_unknown_fields_total",
     "Unknown fields in generate-3d bodies, ignored (not an error).", NO_LABELS,
     NO_BUCKETS},
    {FIELD(active_jobs), OM_GAUGE, "orfeas_active_jobs",
     "Jobs queued or processing.", NO_LABELS, NO_BUCKETS},
    {FIELD(workers_busy), OM_GAUGE, "orfeas_workers_busy",
     "Workers running a job now.", NO_LABELS, NO_BUCKETS},
    /* The HTTP edge (issue #13; docs/api.md "Limits"). */
    {FIELD(conns_closed_family), OM_COUNTER,
     "orfeas_http_connections_closed_total",
     "Connections the server closed or refused because of a limit, by "
     "reason (header_timeout, body_too_slow, per_address_limit, "
     "bad_framing, body_cut, draining).",
     LABELS("reason"), NO_BUCKETS},
    {FIELD(conns_open_family), OM_GAUGE, "orfeas_http_connections_open",
     "Open HTTP connections (WebSocket ones included) by listener (public, "
     "admin).",
     LABELS("listener"), NO_BUCKETS},
    {FIELD(body_inflight), OM_GAUGE, "orfeas_http_request_body_inflight_bytes",
     "Request-body bytes reserved by requests being received "
     "(--max-body-inflight-mb).",
     NO_LABELS, NO_BUCKETS},
    {FIELD(body_memory), OM_GAUGE, "orfeas_http_request_body_memory_bytes",
     "Upload-body bytes held in memory by requests being received "
     "(--body-memory-mb; declared lengths).",
     NO_LABELS, NO_BUCKETS},
    {FIELD(bodies_family), OM_COUNTER, "orfeas_http_request_bodies_total",
     "Upload bodies by where they waited while they arrived (memory: "
     "within --body-memory-mb; file: DATA/tmp).",
     LABELS("kept"), NO_BUCKETS},
    {FIELD(body_rejected), OM_COUNTER,
     "orfeas_http_request_body_rejections_total",
     "Requests answered 503 because their body did not fit in "
     "--max-body-inflight-mb, or in its client address's share of it "
     "(--max-body-inflight-per-address-mb).",
     NO_LABELS, NO_BUCKETS},
    {FIELD(fd_exhausted_family), OM_COUNTER, "orfeas_fd_exhausted_total",
     "Operations that failed because the process or the system was out of "
     "file descriptors (EMFILE, ENFILE), by operation.",
     LABELS("op"), NO_BUCKETS},
    {FIELD(xff_family), OM_COUNTER, "orfeas_http_forwarded_for_total",
     "Requests with X-Forwarded-For, by what was done with it (used: a "
     "trusted proxy named the client; ignored: the peer is not a trusted "
     "proxy; malformed: a trusted proxy's header held a non-address).",
     LABELS("result"), NO_BUCKETS},
    {FIELD(range_family), OM_COUNTER, "orfeas_http_range_requests_total",
     "Model downloads with a Range header, by what it came to (partial: "
     "206 of one range; unsatisfiable: 416; ignored: the whole file, for "
     "an invalid Range, another unit, several ranges or an If-Range that "
     "does not hold). A 304 or 412 decided first is not counted.",
     LABELS("outcome"), NO_BUCKETS},
    {FIELD(uptime), OM_GAUGE, "orfeas_uptime_seconds",
     "Seconds since the service started (updated at each scrape).", NO_LABELS,
     NO_BUCKETS},
    /* The job store and the data dir (issue #11). */
    {FIELD(store_up), OM_GAUGE, "orfeas_store_up",
     "1 while the job store answers and writes (--store), else 0.", NO_LABELS,
     NO_BUCKETS},
    {FIELD(store_op_duration), OM_HISTOGRAM, "orfeas_store_op_duration_seconds",
     "Duration of each job-store call (a synced commit included), by call.",
     LABELS("op"), BUCKETS(STORE_BUCKETS)},
    {FIELD(store_errors), OM_COUNTER, "orfeas_store_errors_total",
     "Job-store calls that failed (the store was down or a write failed), "
     "by call.",
     LABELS("op"), NO_BUCKETS},
    {FIELD(jobs_recovered), OM_COUNTER, "orfeas_jobs_recovered_total",
     "Jobs found in the store at start-up, by the state they had.",
     LABELS("previous_state"), NO_BUCKETS},
    {FIELD(jobs_reclaimed), OM_COUNTER, "orfeas_jobs_reclaimed_total",
     "Runs taken back from a worker that is gone (restart: running when the "
     "previous process died; lease_expired: a cluster node stopped "
     "renewing its claim, counted by the node that took it), run again or "
     "failed past --max-attempts. A run a drain stopped is handed back as "
     "queued, not counted.",
     LABELS("reason"), NO_BUCKETS},
    {FIELD(orphans_removed), OM_COUNTER, "orfeas_orphan_files_removed_total",
     "Files of a shared data dir that no job owned, removed by the sweep "
     "once older than --orphan-age (redis store), by folder.",
     LABELS("dir"), NO_BUCKETS},
    {FIELD(jobs_removed), OM_COUNTER, "orfeas_jobs_removed_total",
     "Finished jobs and unused uploads removed, by why (expired, space); "
     "each answers 410 after.",
     LABELS("reason"), NO_BUCKETS},
    /* Cluster mode (issue #15; both stores report the first). */
    {FIELD(store_oldest_queued), OM_GAUGE, "orfeas_store_oldest_queued_seconds",
     "How long the job at the head of the queue has waited (redis: the "
     "cluster's queue, the same on every node; aggregate with max).",
     NO_LABELS, NO_BUCKETS},
    {FIELD(store_nodes), OM_GAUGE, "orfeas_store_nodes",
     "Cluster mode: node ids the shared store keeps a lease for (nodes that "
     "claimed or renewed work within 10 of their leases, and dead ones "
     "whose claims are not yet taken over); the same on every node, "
     "aggregate with max. 0 with a local store.",
     NO_LABELS, NO_BUCKETS},
    {FIELD(jobs_requeued), OM_COUNTER, "orfeas_jobs_requeued_total",
     "Queued jobs found in no dispatch queue a minute after they were "
     "queued (the generate-3d request that queued one died or lost the "
     "store between its two writes), queued again by the janitor.",
     NO_LABELS, NO_BUCKETS},
    {FIELD(jobs_fenced), OM_COUNTER, "orfeas_jobs_fenced_total",
     "Writes of a run refused because another node took the job over "
     "after this node's lease lapsed (its end, or a lease renewal): the "
     "run's result is dropped.",
     NO_LABELS, NO_BUCKETS},
    {FIELD(tombstones), OM_GAUGE, "orfeas_job_tombstones",
     "Removed jobs remembered (so they answer 410), at most --max-jobs.",
     NO_LABELS, NO_BUCKETS},
    {FIELD(commit_queue), OM_GAUGE, "orfeas_job_commit_queue_depth",
     "Finished runs waiting for their model and end to be recorded (at most "
     "--workers).",
     NO_LABELS, NO_BUCKETS},
    {FIELD(store_bytes), OM_GAUGE, "orfeas_store_bytes",
     "Bytes the job store holds, by kind (uploads, outputs: counted against "
     "--max-store-mb; database: the store's own files).",
     LABELS("kind"), NO_BUCKETS},
    {FIELD(data_dir_free), OM_GAUGE, "orfeas_data_dir_free_bytes",
     "Bytes free for orfeasd on the data dir's file system.", NO_LABELS,
     NO_BUCKETS},
    {FIELD(data_dir_writable), OM_GAUGE, "orfeas_data_dir_writable",
     "1 while a file can be written in the data dir, else 0.", NO_LABELS,
     NO_BUCKETS},
    /* The process (issue #13). */
    {FIELD(log_dropped), OM_COUNTER, "orfeas_log_lines_dropped_total",
     "Log lines dropped because stderr was not read fast enough (the "
     "--log-buffer-kb ring was full).",
     NO_LABELS, NO_BUCKETS},
    {FIELD(ws_closed_family), OM_COUNTER,
     "orfeas_websocket_disconnections_total",
     "WebSocket clients gone, by reason (client, idle, flood, protocol, "
     "shutdown, error).",
     LABELS("reason"), NO_BUCKETS},
    /* Cluster mode (fanout.c): subscribes answered without the job's
     * current state, the client told to subscribe again. */
    {FIELD(ws_refused_family), OM_COUNTER,
     "orfeas_websocket_refreshes_refused_total",
     "Cluster mode: a subscribe's read of its job's current state refused, "
     "by reason (client: the connection already had --ws-max-subscriptions "
     "waiting; full: the node's queue of them was full; store: the read "
     "failed, the job store slow past its command timeout or answering an "
     "error).",
     LABELS("reason"), NO_BUCKETS},
    {FIELD(gen_failures_family), OM_COUNTER, "orfeas_generation_failures_total",
     "Generations that ended failed, by reason (decode, pipeline, disk_full, "
     "storage, shutdown, internal).",
     LABELS("reason"), NO_BUCKETS},
    {FIELD(data_dir_min_free), OM_GAUGE, "orfeas_data_dir_min_free_bytes",
     "--min-free-mb in bytes: below it on the data dir's file system /ready "
     "answers 503 and uploads 503 (0: off).",
     NO_LABELS, NO_BUCKETS},
    {FIELD(image_memo_bytes), OM_GAUGE, "orfeas_image_memo_bytes",
     "Bytes the image memo holds (uploads' decoded pixels, or the grid "
     "generate-3d made of them, waiting for their run; 16 KiB per "
     "remembered image); bound --image-memo-mb.",
     NO_LABELS, NO_BUCKETS},
    {FIELD(http_offloaded), OM_GAUGE, "orfeas_http_offloaded_requests",
     "Requests (upload-image, generate-3d) waiting for or running on a "
     "request thread (--request-threads), their connections suspended; at "
     "most one per connection (--max-connections).",
     NO_LABELS, NO_BUCKETS},
    {FIELD(http_request_threads), OM_GAUGE, "orfeas_http_request_threads",
     "Request threads (--request-threads; 0: upload-image and generate-3d "
     "are answered on the HTTP threads). orfeas_http_offloaded_requests "
     "above it means requests wait for one.",
     NO_LABELS, NO_BUCKETS},
    {FIELD(image_memo_family), OM_COUNTER, "orfeas_image_memo_events_total",
     "Image memo: uploads whose check was skipped (the same bytes passed "
     "before), runs on the check's pixels, runs that decoded the upload "
     "again.",
     LABELS("event"), NO_BUCKETS},
};

const char *const OD_MEMO_EVENT_NAMES[OD_MEMO_EVENTS] = {
    "check_skipped", "pixels_used", "pixels_decoded"};

/* Registers one definition and stores its handle in its field (of the
 * type FIELD read). 0, or -1 with err naming the metric. */
static int define(od_metrics *m, const metric_def *d, char *err,
                  size_t err_len) {
  om_error e = {0};
  om_family *f = om_family_new(m->reg, d->type,
                               &(om_family_opts){.name = d->name,
                                                 .help = d->help,
                                                 .label_names = d->labels,
                                                 .label_count = d->nlabels,
                                                 .buckets = d->buckets,
                                                 .bucket_count = d->nbuckets,
                                                 .max_series = 2000},
                               &e);
  if (f == NULL) {
    snprintf(err, err_len, "metrics: %s: %s", d->name, e.text);
    return -1;
  }
  void *field = (char *)m + d->offset;
  void *handle = NULL;
  switch (d->holds) {
  case HOLD_FAMILY:
    handle = *(om_family **)field = d->nlabels > 0 ? f : NULL;
    break;
  case HOLD_COUNTER:
    handle = *(om_counter **)field = om_family_counter(f, NULL);
    break;
  case HOLD_GAUGE:
    handle = *(om_gauge **)field = om_family_gauge(f, NULL);
    break;
  case HOLD_HISTOGRAM:
    handle = *(om_histogram **)field = om_family_histogram(f, NULL);
    break;
  }
  if (handle == NULL) { /* a table line that does not fit its field */
    snprintf(err, err_len, "metrics: %s: its od_metrics field holds %s",
             d->name,
             d->holds == HOLD_FAMILY ? "a family, but it has no labels"
                                     : "a child of another type, or it has "
                                       "labels");
    return -1;
  }
  return 0;
}

/* One counter per value of a one-label family, kept in out[]. */
static void counters_of(om_family *f, const char *const *values, int n,
                        om_counter **out) {
  for (int i = 0; i < n; i++)
    if (values[i] != NULL)
      out[i] = om_family_counter(f, OM_LABELS(values[i]));
}

/* The HTTP edge's series (issue #13), every label value at 0. */
static void precreate_edge(od_metrics *m) {
  static const char *const reasons[OD_CLOSE_REASONS] = {
#define OD_CLOSE_NAME(id, name) name,
      OD_CLOSE_REASON_LIST(OD_CLOSE_NAME)
#undef OD_CLOSE_NAME
  };
  static const char *const ops[OD_FD_OPS] = {
#define OD_FD_OP_NAME(id, name) name,
      OD_FD_OP_LIST(OD_FD_OP_NAME)
#undef OD_FD_OP_NAME
  };
  /* "none" (no header) is not counted. */
  static const char *const xff[OD_XFF_RESULTS] = {[OD_XFF_USED] = "used",
                                                  [OD_XFF_IGNORED] = "ignored",
                                                  [OD_XFF_MALFORMED] =
                                                      "malformed"};
  counters_of(m->conns_closed_family, reasons, OD_CLOSE_REASONS,
              m->conns_closed);
  counters_of(m->fd_exhausted_family, ops, OD_FD_OPS, m->fd_exhausted);
  counters_of(m->xff_family, xff, OD_XFF_RESULTS, m->xff);
  static const char *const outcomes[OD_RANGE_KINDS] = {
      [OD_RANGE_PARTIAL] = "partial",
      [OD_RANGE_UNSATISFIABLE] = "unsatisfiable",
      [OD_RANGE_IGNORED] = "ignored"};
  counters_of(m->range_family, outcomes, OD_RANGE_KINDS, m->range);
  static const char *const kept[2] = {"memory", "file"};
  counters_of(m->bodies_family, kept, 2, m->bodies);
  m->conns_open[0] = om_family_gauge(m->conns_open_family, OM_LABELS("public"));
  m->conns_open[1] = om_family_gauge(m->conns_open_family, OM_LABELS("admin"));
}

/* The label sets alerts and dashboards select on, created at 0 so a rate()
 * over them exists before the first event. */
static void precreate(od_metrics *m) {
  static const char *const statuses[] = {"success", "failed", "cached",
                                         "rejected"};
  for (int fm = 0; fm <= ORFEAS_PL_GLB; fm++) {
    const char *fn = orfeas_pl_format_name((orfeas_pl_format)fm);
    for (size_t s = 0; s < NB(statuses); s++)
      om_family_counter(m->gen_total, OM_LABELS(fn, statuses[s]));
    om_family_histogram(m->gen_duration, OM_LABELS(fn));
  }
  for (int s = 0; s < ORFEAS_PL_STAGE_COUNT; s++) {
    const char *sn = orfeas_pl_stage_name((orfeas_pl_stage)s);
    om_family_histogram(m->stage_duration, OM_LABELS(sn));
    om_family_gauge(m->bottleneck, OM_LABELS(sn));
  }
  for (int ev = 0; ev < OD_WS_EVENT_COUNT; ev++)
    m->ws_sent[ev] = om_family_counter(
        m->ws_sent_family, OM_LABELS(od_ws_event_name((od_ws_event)ev)));
  static const char *const tiers[OD_CACHE_TIERS] = {"memory", "disk"};
  for (int t = 0; t < OD_CACHE_TIERS; t++) {
    m->cache_hits[t] =
        om_family_counter(m->cache_hits_family, OM_LABELS(tiers[t]));
    m->cache_misses[t] =
        om_family_counter(m->cache_misses_family, OM_LABELS(tiers[t]));
    m->cache_size[t] =
        om_family_gauge(m->cache_size_family, OM_LABELS(tiers[t]));
  }
  /* Per route (router.c's table): each of its methods' 200 and 500, its
   * duration, its internal errors, and its rate-limit refusals if it has
   * any. */
  for (int r = 0; r < OD_ROUTE_COUNT; r++) {
    const char *ep = od_route_template((od_route)r);
    unsigned methods = od_route_methods((od_route)r);
    for (int mi = 0; mi < OD_METHODS; mi++) {
      if (!(methods >> mi & 1u))
        continue;
      const char *meth = od_method_name((od_method)mi);
      om_family_counter(m->http_requests, OM_LABELS(meth, ep, "200"));
      om_family_counter(m->http_requests, OM_LABELS(meth, ep, "500"));
      om_family_histogram(m->http_duration, OM_LABELS(meth, ep));
    }
    om_family_counter(m->errors, OM_LABELS("internal", ep));
    if (od_route_flags((od_route)r) & OD_RF_RATE_LIMIT)
      om_family_counter(m->rate_limited, OM_LABELS(ep));
  }
  om_family_counter(m->validation_errors, OM_LABELS("image", "not_image"));
  /* The job store: every call, every state, every reason, every kind. */
  for (int op = 0; op < OD_STORE_OP_COUNT; op++) {
    const char *n = od_store_op_name((od_store_op)op);
    om_family_histogram(m->store_op_duration, OM_LABELS(n));
    om_family_counter(m->store_errors, OM_LABELS(n));
  }
  om_family_counter(m->store_errors, OM_LABELS("claim"));
  for (int st = 0; st < OD_JOB_STATE_COUNT; st++)
    om_family_counter(m->jobs_recovered,
                      OM_LABELS(od_job_state_name((od_job_state)st)));
  om_family_counter(m->jobs_reclaimed, OM_LABELS("restart"));
  om_family_counter(m->jobs_reclaimed, OM_LABELS("lease_expired"));
  static const char *const removed[] = {"expired", "space"};
  for (size_t i = 0; i < NB(removed); i++)
    om_family_counter(m->jobs_removed, OM_LABELS(removed[i]));
  for (int k = 0; k < OD_BYTES_KINDS; k++)
    om_family_gauge(m->store_bytes, OM_LABELS(od_store_bytes_kind(k)));
  precreate_edge(m);
  for (int r = 0; r < OD_WS_CLOSE_REASONS_N; r++)
    m->ws_closed[r] = om_family_counter(m->ws_closed_family,
                                        OM_LABELS(OD_WS_CLOSE_REASONS[r]));
  for (int r = OD_REFRESH_CLIENT; r < OD_REFRESH_N; r++)
    m->ws_refused[r] =
        om_family_counter(m->ws_refused_family, OM_LABELS(OD_REFRESH_NAMES[r]));
  for (int r = 0; r < OD_FAIL_REASONS; r++)
    m->gen_failures[r] = om_family_counter(m->gen_failures_family,
                                           OM_LABELS(OD_FAIL_REASON_NAMES[r]));
  for (int e = 0; e < OD_MEMO_EVENTS; e++)
    m->image_memo[e] = om_family_counter(m->image_memo_family,
                                         OM_LABELS(OD_MEMO_EVENT_NAMES[e]));
}

/* Registers every family, the process collector and the build info, then
 * the series at 0. */
int od_metrics_init(od_metrics *m, const char *node_id, char *err,
                    size_t err_len) {
  memset(m, 0, sizeof *m);
  m->start_time = od_now();
  od_reqstats_init(m);
  m->reg = om_registry_new(&(om_registry_opts){
      .overflow_name = "orfeas_metrics_series_overflow_total",
      .duplicate_name = "orfeas_metrics_collector_duplicates_total"});
  if (m->reg == NULL) {
    snprintf(err, err_len, "metrics: out of memory");
    return -1;
  }
  for (size_t i = 0; i < NB(METRICS); i++)
    if (define(m, &METRICS[i], err, err_len) != 0)
      return -1;
  om_error e;
  if (om_process_collector_register(m->reg, &e) != OM_OK ||
      om_build_info_register(
          m->reg, "orfeas_build_info",
          "orfeasd's version, git revision and build type "
          "(as --version prints them); always 1.",
          OM_LABELS("version", "revision", "build_type", "service", "node"),
          OM_LABELS(ORFEAS_VERSION, orfeas_revision, ORFEAS_BUILD_TYPE,
                    "orfeasd", node_id ? node_id : ""),
          5, &e) != OM_OK) {
    snprintf(err, err_len, "metrics: %s", e.text);
    return -1;
  }
  precreate(m);
  return 0;
}

void od_metrics_free(od_metrics *m) {
  od_reqstats_free(m);
  om_registry_free(m->reg);
  m->reg = NULL;
}

void od_metric_error(od_metrics *m, const char *type, od_route r) {
  om_counter_inc(
      om_family_counter(m->errors, OM_LABELS(type, od_route_template(r))));
}

void od_metric_validation(od_metrics *m, const char *field,
                          const char *error_type) {
  om_counter_inc(
      om_family_counter(m->validation_errors, OM_LABELS(field, error_type)));
}

const char *od_store_bytes_kind(int kind) {
  static const char *const n[OD_BYTES_KINDS] = {"uploads", "outputs",
                                                "database"};
  return kind >= 0 && kind < OD_BYTES_KINDS ? n[kind] : "other";
}

void od_metric_range(od_service *svc, od_range_kind kind) {
  if (kind > OD_RANGE_NONE && kind < OD_RANGE_KINDS)
    om_counter_inc(svc->m.range[kind]);
}

void od_metric_fd_exhausted(od_service *svc, od_fd_op op) {
  if ((unsigned)op < OD_FD_OPS)
    om_counter_inc(svc->m.fd_exhausted[op]);
}
