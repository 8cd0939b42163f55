/* orfeas-load: drives an orfeasd with real jobs and says what happened.
 *
 *   orfeas-load --target http://127.0.0.1:5000 --synthetic --jobs 40
 *               --concurrency 4 --formats stl,glb --ws-clients 2 --duration 120
 *
 * Each job: upload an image, ask for a model, follow it to completed or
 * failed (polling job-status, the source of truth), while WebSocket clients
 * subscribed to every job record the stage events and unsubscribe when it
 * ends. Loops are bounded by --jobs and --duration, and only --target is
 * contacted. Counts are of what ran (a job --duration kept from starting is
 * not counted); latency runs from the generate request to the job's end,
 * without the tool's own upload and subscribe (docs/load.md says what each
 * figure means). Exit status: 0 no accepted job was lost; 1 some were (never
 * completed nor failed before the deadline); 2 bad usage or the target cannot
 * be reached; 3 no job was accepted at all (each one that started was
 * refused, or none started); 128 + the signal when SIGINT or SIGTERM stopped
 * the run (the summary is printed all the same).
 */
#include "orfeas_build.h"
#include "synth_png.h"
#include "ws_client.h"

#include <curl/curl.h>
#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_JOBS 10000
#define MAX_IMAGES 256
#define NSTAGES 7
#define GRACE_S 60 /* how long past --duration accepted jobs may finish */
#define MAX_DURATION_S 86400.0 /* --duration: a day bounds every loop */
#define DEFAULT_DURATION_S 120.0

/* SIGINT or SIGTERM: no job starts and no job is followed any more; the
 * summary is printed as usual and the exit status is 128 + the signal. */
static volatile sig_atomic_t interrupted;
static void on_signal(int sig) { interrupted = sig; }

static const char *const STAGES[NSTAGES] = {
    "image_loading",     "image_preprocessing", "shape_generation",
    "texture_synthesis", "mesh_optimization",   "mesh_export",
    "quality_validation"};

typedef enum {
  J_TODO,
  J_UPLOAD_ERR,
  J_SUBMIT_ERR,
  J_REJECTED,
  J_ACCEPTED,
  J_COMPLETED,
  J_FAILED,
  J_LOST
} jstate;

typedef struct {
  _Atomic int st;
  char id[64];
  char format[8];
  double t_start;  /* the upload began: the job ran (0: never started) */
  double t_submit; /* the generate request was sent */
  double t_end;    /* job-status (or the 202 of a cache hit) said it ended */
  bool cached;
  long http;           /* the failing request's HTTP status (0: no answer) */
  double retry_after;  /* the refusal's Retry-After, seconds (0: none) */
  char error[96];      /* job-status' error, or the refusal's reason */
  _Atomic int sub_ack; /* WebSocket client 0 confirmed the subscription */
  bool sub_late;       /* ... not within 1 s (counted as an error) */
  double stage_t[NSTAGES + 1]; /* client 0 saw each stage first; [7] the end */
} job;

static struct {
  const char *target;
  char host[256];
  int port;
  const char *images_dir;
  int jobs, concurrency, ws_clients, quality, distinct;
  double rate, duration;
  char formats[4][8];
  int nformats;
  bool json;
} O = {.target = "http://127.0.0.1:5000",
       .jobs = 20,
       .concurrency = 2,
       .ws_clients = 1,
       .quality = 3,
       .duration = DEFAULT_DURATION_S};

static job jobs[MAX_JOBS];
static _Atomic int next_job, watch_n, unwatch_n;
/* Jobs the WebSocket clients subscribe to, and (once each ended, whatever
 * the outcome) unsubscribe from: append-only, each client reads on. */
static char watch_ids[MAX_JOBS][64], unwatch_ids[MAX_JOBS][64];
static int watch_job[MAX_JOBS]; /* watch_ids[k] is jobs[watch_job[k]] */
static _Atomic int done_flag, workers_running;
static double t_start;
static struct {
  unsigned char *data;
  size_t len;
} images[MAX_IMAGES];
static int nimages;
static _Atomic long ws_messages, ws_errors, ws_reconnects;
static pthread_mutex_t stage_mu = PTHREAD_MUTEX_INITIALIZER;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_s(double s) {
  if (s <= 0)
    return;
  struct timespec ts = {(time_t)s, (long)((s - floor(s)) * 1e9)};
  nanosleep(&ts, NULL);
}

/* ---- HTTP ------------------------------------------------------------- */

typedef struct {
  char *data;
  size_t len;
} buf;

static size_t on_body(char *p, size_t sz, size_t n, void *u) {
  buf *b = u;
  size_t add = sz * n;
  if (b->len + add > (1u << 20))
    return 0;
  char *d = realloc(b->data, b->len + add + 1);
  if (d == NULL)
    return 0;
  memcpy(d + b->len, p, add);
  b->len += add;
  d[b->len] = '\0';
  b->data = d;
  return add;
}

/* Performs the request prepared on c; returns the HTTP status (0 when the
 * request failed) and the body as JSON (NULL when not JSON). */
/* Why the last perform() of this thread got no answer (curl's words). */
static _Thread_local char perform_err[CURL_ERROR_SIZE];
/* The last perform()'s Retry-After in seconds (0: none). */
static _Thread_local double perform_retry_after;
/* The last perform()'s answer in words: the JSON "error" of orfeasd's
 * refusals, else the body's first line, else why there was no answer. */
static _Thread_local char perform_reason[96];
/* Refusals that carried a Retry-After, and the seconds workers waited. */
static _Atomic long retry_after_n;
static _Atomic long retry_after_waited_ms;

static long perform(CURL *c, const char *url, json_t **json) {
  buf b = {0};
  perform_err[0] = '\0';
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, perform_err);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  long status = 0;
  CURLcode rc = curl_easy_perform(c);
  curl_off_t ra = 0;
  perform_retry_after = 0;
  if (rc == CURLE_OK) {
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (curl_easy_getinfo(c, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra > 0)
      perform_retry_after = (double)ra;
  } else if (perform_err[0] == '\0')
    snprintf(perform_err, sizeof perform_err, "%s", curl_easy_strerror(rc));
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, NULL);
  *json = b.data ? json_loads(b.data, 0, NULL) : NULL;
  const char *e = json_string_value(json_object_get(*json, "error"));
  if (status == 0)
    snprintf(perform_reason, sizeof perform_reason, "%s", perform_err);
  else if (e != NULL)
    snprintf(perform_reason, sizeof perform_reason, "%s", e);
  else
    snprintf(perform_reason, sizeof perform_reason, "%.*s",
             b.data ? (int)strcspn(b.data, "\r\n") : 0, b.data ? b.data : "");
  free(b.data);
  return status;
}

/* The job ended (any outcome): the WebSocket clients unsubscribe from it. */
static void unwatch(const job *j) {
  if (O.ws_clients == 0 || j->id[0] == '\0')
    return;
  pthread_mutex_lock(&stage_mu); /* the count moves after the id is there */
  int k = atomic_load(&unwatch_n);
  memcpy(unwatch_ids[k], j->id, sizeof j->id);
  atomic_fetch_add(&unwatch_n, 1);
  pthread_mutex_unlock(&stage_mu);
}

static void finish(job *j, jstate st) {
  if (j->t_end == 0)
    j->t_end = now_s();
  atomic_store(&j->st, st);
  unwatch(j);
}

/* Subscribes the WebSocket clients before generating, so no stage event is
 * missed; waits for client 0's "subscribed", at most 1 s (job-status is the
 * source of truth either way). Not part of the job's latency. */
static void watch(job *j) {
  if (O.ws_clients == 0)
    return;
  pthread_mutex_lock(&stage_mu);
  int k = atomic_load(&watch_n);
  memcpy(watch_ids[k], j->id, sizeof j->id);
  watch_job[k] = (int)(j - jobs);
  atomic_fetch_add(&watch_n, 1);
  pthread_mutex_unlock(&stage_mu);
  for (double until = now_s() + 1; !atomic_load(&j->sub_ack);) {
    if (now_s() >= until) {
      j->sub_late = true;
      break;
    }
    sleep_s(0.001);
  }
}

/* Uploads job i's image; on success its id is set. */
static bool upload(CURL *c, job *j, int i) {
  char url[512];
  json_t *r;
  curl_easy_reset(c);
  curl_mime *mime = curl_mime_init(c);
  curl_mimepart *part = curl_mime_addpart(mime);
  int img = O.distinct > 0 ? i % O.distinct % nimages : i % nimages;
  curl_mime_name(part, "image");
  curl_mime_data(part, (const char *)images[img].data, images[img].len);
  curl_mime_filename(part, "orfeas-load.png");
  curl_mime_type(part, "image/png");
  curl_easy_setopt(c, CURLOPT_MIMEPOST, mime);
  snprintf(url, sizeof url, "%s/api/upload-image", O.target);
  long st = perform(c, url, &r);
  curl_mime_free(mime);
  const char *id = json_string_value(json_object_get(r, "job_id"));
  if (st != 200 || id == NULL) {
    json_decref(r);
    j->http = st;
    j->retry_after = perform_retry_after;
    snprintf(j->error, sizeof j->error, "%s", perform_reason);
    return false;
  }
  pthread_mutex_lock(&stage_mu); /* the WebSocket reader compares ids */
  snprintf(j->id, sizeof j->id, "%s", id);
  pthread_mutex_unlock(&stage_mu);
  json_decref(r);
  return true;
}

static void run_job(CURL *c, int i) {
  job *j = &jobs[i];
  char url[512];
  json_t *r;
  j->t_start = now_s();
  snprintf(j->format, sizeof j->format, "%s", O.formats[i % O.nformats]);
  if (!upload(c, j, i)) {
    finish(j, J_UPLOAD_ERR);
    return;
  }
  watch(j);

  curl_easy_reset(c);
  char body[256];
  snprintf(body, sizeof body,
           "{\"job_id\":\"%s\",\"format\":\"%s\",\"quality\":%d}", j->id,
           j->format, O.quality);
  struct curl_slist *h =
      curl_slist_append(NULL, "Content-Type: application/json");
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
  snprintf(url, sizeof url, "%s/api/generate-3d", O.target);
  j->t_submit = now_s();
  long st = perform(c, url, &r);
  curl_slist_free_all(h);
  /* A cache hit is complete in the 202 itself. */
  bool done = st == 202 && json_is_true(json_object_get(r, "cached"));
  json_decref(r);
  if (st != 202) {
    j->http = st;
    j->retry_after = perform_retry_after;
    snprintf(j->error, sizeof j->error, "%s", perform_reason);
    finish(j, st == 429 ? J_REJECTED : J_SUBMIT_ERR);
    return;
  }
  if (done) {
    j->cached = true;
    finish(j, J_COMPLETED);
    return;
  }
  atomic_store(&j->st, J_ACCEPTED);

  /* Follow to the end, polling soon at first (5 ms, doubling up to 100 ms:
   * the poll interval bounds how late the end is seen); the deadline bounds
   * the loop. */
  double deadline = t_start + O.duration + GRACE_S, wait = 0.005;
  snprintf(url, sizeof url, "%s/api/job-status/%s", O.target, j->id);
  while (now_s() < deadline && !interrupted) {
    curl_easy_reset(c);
    st = perform(c, url, &r);
    double t = now_s();
    const char *s = json_string_value(json_object_get(r, "status"));
    int end = st != 200 || s == NULL    ? J_TODO
              : !strcmp(s, "completed") ? J_COMPLETED
              : !strcmp(s, "failed")    ? J_FAILED
                                        : J_TODO;
    if (end != J_TODO) {
      j->t_end = t;
      j->cached = json_is_true(json_object_get(r, "cached"));
      const char *e = json_string_value(json_object_get(r, "error"));
      snprintf(j->error, sizeof j->error, "%s", e ? e : "");
      json_decref(r);
      finish(j, (jstate)end);
      return;
    }
    json_decref(r);
    sleep_s(wait);
    wait = fmin(wait * 2, 0.1);
  }
  if (!interrupted) /* interrupted, it stays accepted: in flight */
    finish(j, J_LOST);
}

static void *worker(void *arg) {
  (void)arg;
  CURL *c = curl_easy_init();
  double free_at = t_start; /* when this worker can start its next job */
  for (;;) {
    int i = atomic_fetch_add(&next_job, 1);
    if (i >= O.jobs)
      break;
    /* The schedule: job i is due at t_start + i / rate, or once this worker
     * is free if that is later. A job due at or after --duration is not
     * started at all. The due time, not the clock after the thread got to
     * it, decides: job 0 is due at the start (so is each worker's first
     * without --rate), so a run always starts one, however short --duration
     * (it once raced the threads' start-up: 1 job or none for one command,
     * exit 0 or 3). */
    double at = t_start + (O.rate > 0 ? i / O.rate : 0);
    if (interrupted || fmax(at, free_at) >= t_start + O.duration)
      break;
    /* In steps of at most 0.1 s, so a signal is seen soon. */
    while (!interrupted && now_s() < at)
      sleep_s(fmin(at - now_s(), 0.1));
    if (interrupted)
      break;
    run_job(c, i);
    /* A refusal with Retry-After (429 queue full, 503 shutting down or no
     * room): this worker waits that long before its next job, as a client
     * should, instead of hammering a full queue. The wait ends with
     * --duration or a signal; it is counted for the summary. */
    double ra = jobs[i].retry_after;
    if (ra > 0) {
      atomic_fetch_add(&retry_after_n, 1);
      double t0 = now_s();
      double until = fmin(t0 + ra, t_start + O.duration);
      if (i + 1 < O.jobs)
        while (!interrupted && now_s() < until)
          sleep_s(fmin(until - now_s(), 0.1));
      atomic_fetch_add(&retry_after_waited_ms, (long)((now_s() - t0) * 1000));
    }
    free_at = now_s();
  }
  curl_easy_cleanup(c);
  atomic_fetch_sub(&workers_running, 1);
  return NULL;
}

/* ---- WebSocket clients -------------------------------------------------- */

/* stage NULL: the "subscribed" answer; "" the end of the job. */
static void record_stage(const char *id, const char *stage, bool end) {
  double t = now_s();
  pthread_mutex_lock(&stage_mu);
  for (int i = 0; i < O.jobs; i++) {
    if (strcmp(jobs[i].id, id) != 0)
      continue;
    if (stage == NULL) {
      atomic_store(&jobs[i].sub_ack, 1);
      break;
    }
    int s = NSTAGES;
    if (!end)
      for (s = 0; s < NSTAGES && strcmp(STAGES[s], stage) != 0; s++)
        ;
    if (s <= NSTAGES && jobs[i].stage_t[s] == 0)
      jobs[i].stage_t[s] = t;
    break;
  }
  pthread_mutex_unlock(&stage_mu);
}

/* Sends {"event": EVENT, "data": {"job_id": ID}}. */
static void ws_job_event(ws_client *c, const char *event, const char *id) {
  char m[160];
  int len =
      snprintf(m, sizeof m, "{\"event\":\"%s\",\"data\":{\"job_id\":\"%s\"}}",
               event, id);
  ws_send_text(c, m, (size_t)len);
}

/* After a reconnect: subscribes again to the first n jobs listed that have
 * not ended (the server answers each with where the job stands). */
static void resubscribe(ws_client *c, int n) {
  for (int k = 0; k < n; k++) {
    int st = atomic_load(&jobs[watch_job[k]].st);
    if (st != J_COMPLETED && st != J_FAILED && st != J_LOST)
      ws_job_event(c, "subscribe", watch_ids[k]);
  }
}

/* Connects again after orfeasd closed the socket (a restart, or 1008 when
 * this client fell too far behind: docs/api.md), 0.1 s doubling to 2 s
 * between tries, until the run is done; false then. */
static bool reconnect(ws_client *c, int index) {
  char err[160];
  ws_close(c);
  for (double wait = 0.1; !atomic_load(&done_flag); wait *= 2) {
    sleep_s(wait < 2 ? wait : 2);
    if (ws_connect(c, O.host, O.port, "/ws", err, sizeof err)) {
      atomic_fetch_add(&ws_reconnects, 1);
      return true;
    }
  }
  fprintf(stderr, "orfeas-load: WebSocket client %d: closed, not reconnected\n",
          index);
  return false;
}

/* One WebSocket client: subscribes to each job as the workers list it, and
 * unsubscribes once the job ended (orfeasd frees an ended job's
 * subscription too: docs/api.md), so it never holds more than the jobs in
 * flight. Closed by orfeasd, it reconnects and subscribes again to the jobs
 * still in flight (counted in the summary's reconnects). Client 0 keeps the
 * stage timings; every client counts messages and the error events orfeasd
 * sends. */
static void *ws_thread(void *arg) {
  int index = (int)(intptr_t)arg;
  ws_client c;
  char err[160], msg[8192];
  if (!ws_connect(&c, O.host, O.port, "/ws", err, sizeof err)) {
    fprintf(stderr, "orfeas-load: WebSocket client %d: %s\n", index, err);
    atomic_fetch_add(&ws_errors, 1);
    return NULL;
  }
  int subscribed = 0, unsubscribed = 0;
  while (!atomic_load(&done_flag)) {
    for (int n = atomic_load(&watch_n); subscribed < n; subscribed++)
      ws_job_event(&c, "subscribe", watch_ids[subscribed]);
    for (int n = atomic_load(&unwatch_n); unsubscribed < n; unsubscribed++)
      ws_job_event(&c, "unsubscribe", unwatch_ids[unsubscribed]);
    /* A short wait: a subscribe waits in the lists until the next round. */
    int r = ws_recv_text(&c, msg, sizeof msg, 10);
    if (r < 0) {
      if (!reconnect(&c, index))
        break;
      resubscribe(&c, subscribed);
      continue;
    }
    if (r == 0)
      continue;
    atomic_fetch_add(&ws_messages, 1);
    json_t *m = json_loads(msg, 0, NULL);
    const char *ev = json_string_value(json_object_get(m, "event"));
    json_t *d = json_object_get(m, "data");
    const char *id = json_string_value(json_object_get(d, "job_id"));
    const char *stage = json_string_value(json_object_get(d, "stage"));
    if (ev && !strcmp(ev, "error"))
      atomic_fetch_add(&ws_errors, 1);
    else if (ev && id && index == 0) {
      if (!strcmp(ev, "subscribed"))
        record_stage(id, NULL, false);
      else if (stage && (!strcmp(ev, "stage_change") ||
                         !strcmp(ev, "generation_progress")))
        record_stage(id, stage, false);
      else if (!strcmp(ev, "generation_complete") ||
               !strcmp(ev, "generation_error"))
        record_stage(id, "", true);
    }
    json_decref(m);
  }
  ws_close(&c);
  return NULL;
}

/* ---- summary ------------------------------------------------------------- */

typedef struct {
  int started, done, uploaded, accepted, completed, cached, failed, rejected,
      upload_err, submit_err, lost, in_flight, sub_late;
} counts;

static counts count_jobs(void) {
  counts c = {0};
  for (int i = 0; i < O.jobs; i++) {
    const job *j = &jobs[i];
    int st = atomic_load(&j->st);
    c.started += j->t_start > 0;
    c.uploaded += st != J_TODO && st != J_UPLOAD_ERR;
    c.sub_late += j->sub_late;
    switch (st) {
    case J_ACCEPTED:
      c.accepted++;
      c.in_flight++;
      break;
    case J_COMPLETED:
      c.accepted++;
      c.completed++;
      c.done++;
      c.cached += j->cached;
      break;
    case J_FAILED:
      c.accepted++;
      c.failed++;
      c.done++;
      break;
    case J_LOST:
      c.accepted++;
      c.lost++;
      c.done++;
      break;
    case J_REJECTED:
      c.rejected++;
      c.done++;
      break;
    case J_UPLOAD_ERR:
      c.upload_err++;
      c.done++;
      break;
    case J_SUBMIT_ERR:
      c.submit_err++;
      c.done++;
      break;
    default:
      break;
    }
  }
  return c;
}

static void progress(bool tty) {
  counts c = count_jobs();
  if (tty) {
    int w = 30, fill = O.jobs ? c.done * w / O.jobs : w;
    fprintf(stderr,
            "\r[%.*s%*s] %d/%d done, %d in flight, %d failed, "
            "%d rejected ",
            fill, "##############################", w - fill, "", c.done,
            O.jobs, c.in_flight, c.failed, c.rejected);
  } else {
    fprintf(stderr,
            "orfeas-load: %d/%d done, %d in flight, %d failed, %d "
            "rejected\n",
            c.done, O.jobs, c.in_flight, c.failed, c.rejected);
  }
}

/* A completed job's latency: from its generate request to its end, the
 * earlier of what job-status said and what WebSocket client 0 saw. The
 * upload and the wait for the subscription are the tool's set-up, not the
 * service's time. */
static double latency(const job *j) {
  double end = j->t_end, ws = j->stage_t[NSTAGES];
  if (ws > j->t_submit && ws < end)
    end = ws;
  return end - j->t_submit;
}

typedef struct {
  int n;
  double p50, p90, p99, max; /* NaN when n == 0 */
} dist;

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Nearest rank: the smallest value with at least p% of the values at or
 * below it. v is sorted in place. */
static dist distribution(double *v, int n) {
  qsort(v, (size_t)n, sizeof v[0], cmp_d);
  dist d = {n, NAN, NAN, NAN, NAN};
  if (n == 0)
    return d;
  double *p[] = {&d.p50, &d.p90, &d.p99};
  const double at[] = {50, 90, 99};
  for (int i = 0; i < 3; i++) {
    int k = (int)ceil(at[i] / 100.0 * n) - 1;
    *p[i] = v[k < 0 ? 0 : k];
  }
  d.max = v[n - 1];
  return d;
}

#define MAX_ERROR_KINDS 16

typedef struct {
  char kind[112];
  int n;
} error_kind;

typedef struct {
  counts c;
  double elapsed, active_s, throughput;
  dist all, generated, cached;
  double stage_mean[NSTAGES]; /* NaN when no job showed the stage */
  error_kind errors[MAX_ERROR_KINDS];
  int nerrors;
  long ws_messages, ws_errors, ws_reconnects;
} results;

/* Counts one error of KIND (the last slot takes every kind past the bound). */
static void add_error(results *r, int n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void add_error(results *r, int n, const char *fmt, ...) {
  if (n == 0)
    return;
  char kind[sizeof r->errors[0].kind];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(kind, sizeof kind, fmt, ap);
  va_end(ap);
  int i = 0;
  while (i < r->nerrors && strcmp(r->errors[i].kind, kind) != 0)
    i++;
  if (i == r->nerrors) {
    if (r->nerrors == MAX_ERROR_KINDS)
      i = MAX_ERROR_KINDS - 1;
    else
      r->nerrors++;
    snprintf(r->errors[i].kind, sizeof r->errors[i].kind, "%s",
             i == MAX_ERROR_KINDS - 1 ? "other errors" : kind);
  }
  r->errors[i].n += n;
}

static void job_error(results *r, const job *j, int st) {
  const char *req = st == J_UPLOAD_ERR ? "upload" : "generate-3d";
  if (st == J_UPLOAD_ERR || st == J_SUBMIT_ERR) {
    if (j->http)
      add_error(r, 1, "%s: HTTP %ld", req, j->http);
    else
      add_error(r, 1, "%s: no answer", req);
  } else if (st == J_REJECTED) {
    add_error(r, 1, "generate-3d: HTTP 429 (queue full or rate limited)");
  } else if (st == J_FAILED) {
    add_error(r, 1, "job failed: %.80s",
              j->error[0] ? j->error : "no reason given");
  } else if (st == J_LOST || st == J_ACCEPTED) {
    add_error(r, 1, "lost: no end before the deadline");
  }
}

static void collect(results *r, double elapsed) {
  static double all[MAX_JOBS], gen[MAX_JOBS], hit[MAX_JOBS];
  int na = 0, ng = 0, nh = 0;
  double first = INFINITY, last = 0, stage_sum[NSTAGES] = {0};
  int stage_n[NSTAGES] = {0};
  r->c = count_jobs();
  r->elapsed = elapsed;
  for (int i = 0; i < O.jobs; i++) {
    const job *j = &jobs[i];
    int st = atomic_load(&j->st);
    job_error(r, j, st);
    if (st == J_COMPLETED) {
      double l = latency(j);
      all[na++] = l;
      if (j->cached)
        hit[nh++] = l;
      else
        gen[ng++] = l;
      first = fmin(first, j->t_submit);
      last = fmax(last, j->t_submit + l);
    }
    /* A stage lasts from its first event to the next stage's (or the
     * end's); stages a cached job skipped have no events. */
    for (int s = 0; s < NSTAGES; s++) {
      if (j->stage_t[s] == 0)
        continue;
      for (int k = s + 1; k <= NSTAGES; k++)
        if (j->stage_t[k] > 0) {
          stage_sum[s] += j->stage_t[k] - j->stage_t[s];
          stage_n[s]++;
          break;
        }
    }
  }
  add_error(r, r->c.sub_late,
            "websocket: a subscription not confirmed within 1 s");
  r->ws_messages = atomic_load(&ws_messages);
  r->ws_errors = atomic_load(&ws_errors);
  r->ws_reconnects = atomic_load(&ws_reconnects);
  add_error(r, (int)r->ws_errors,
            "websocket: error events or failed connections");
  r->all = distribution(all, na);
  r->generated = distribution(gen, ng);
  r->cached = distribution(hit, nh);
  r->active_s = na ? last - first : 0;
  r->throughput = r->active_s > 0 ? na / r->active_s : NAN;
  for (int s = 0; s < NSTAGES; s++)
    r->stage_mean[s] = stage_n[s] ? stage_sum[s] / stage_n[s] : NAN;
}

static void print_dist(const char *what, const dist *d) {
  if (d->n == 0)
    printf("  %s: none\n", what);
  else
    printf("  %s: p50 %.3f s, p90 %.3f s, p99 %.3f s, max %.3f s (%d jobs)\n",
           what, d->p50, d->p90, d->p99, d->max, d->n);
}

static void print_text(const results *r) {
  const counts *c = &r->c;
  printf("orfeas-load: %d of %d planned jobs ran against %s in %.1f s%s\n",
         c->started, O.jobs, O.target, r->elapsed,
         interrupted ? " (interrupted by a signal: the jobs still in flight "
                       "are counted as lost)"
         : c->started < O.jobs ? " (--duration stopped the rest)"
                               : "");
  printf("  started %d, accepted %d, completed %d, failed %d, rejected (429) "
         "%d, upload errors %d, submit errors %d, lost %d\n",
         c->started, c->accepted, c->completed, c->failed, c->rejected,
         c->upload_err, c->submit_err, c->lost + c->in_flight);
  printf("  cache hits %d\n", c->cached);
  if (isnan(r->throughput))
    printf("  throughput: no job completed\n");
  else
    printf("  throughput: %.2f completed jobs/s (%d in %.1f s, first request "
           "to last end)\n",
           r->throughput, c->completed, r->active_s);
  print_dist("latency, generate request to end (completed)", &r->all);
  print_dist("  generated", &r->generated);
  print_dist("  cache hits", &r->cached);
  printf("  stage means:");
  for (int s = 0; s < NSTAGES; s++)
    if (!isnan(r->stage_mean[s]))
      printf(" %s %.3f s", STAGES[s], r->stage_mean[s]);
  printf("\n  errors:%s\n", r->nerrors ? "" : " none");
  for (int i = 0; i < r->nerrors; i++)
    printf("    %d %s\n", r->errors[i].n, r->errors[i].kind);
  if (atomic_load(&retry_after_n) > 0)
    printf("  Retry-After: %ld refusals, waited %.1f s before the next job "
           "(summed over the workers)\n",
           atomic_load(&retry_after_n),
           atomic_load(&retry_after_waited_ms) / 1000.0);
  printf("  websocket: %d clients, %ld messages, %ld error events, %ld "
         "reconnects\n",
         O.ws_clients, r->ws_messages, r->ws_errors, r->ws_reconnects);
}

static json_t *num(double v) { return isnan(v) ? json_null() : json_real(v); }

static json_t *dist_json(const dist *d) {
  return json_pack("{s:i, s:o, s:o, s:o, s:o}", "jobs", d->n, "p50",
                   num(d->p50), "p90", num(d->p90), "p99", num(d->p99), "max",
                   num(d->max));
}

static void print_json(const results *r) {
  const counts *c = &r->c;
  json_t *stages = json_object(), *errors = json_object();
  for (int s = 0; s < NSTAGES; s++)
    json_object_set_new(stages, STAGES[s], num(r->stage_mean[s]));
  for (int i = 0; i < r->nerrors; i++)
    json_object_set_new(errors, r->errors[i].kind,
                        json_integer(r->errors[i].n));
  /* Interrupted: the counts are of a cut run (in flight counted lost). */
  json_t *sig = interrupted == SIGINT    ? json_string("SIGINT")
                : interrupted == SIGTERM ? json_string("SIGTERM")
                                         : json_null();
  json_t *o = json_pack(
      "{s:s, s:i, s:f, s:b, s:o,"
      " s:{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i},"
      " s:o, s:f, s:{s:o, s:o, s:o}, s:o, s:o, s:{s:i, s:I, s:I, s:i, s:I}}",
      "target", O.target, "planned", O.jobs, "elapsed_s", r->elapsed,
      "interrupted", interrupted != 0, "signal", sig, "jobs", "started",
      c->started, "uploaded", c->uploaded, "accepted", c->accepted, "completed",
      c->completed, "generated", c->completed - c->cached, "cache_hits",
      c->cached, "failed", c->failed, "rejected", c->rejected, "upload_errors",
      c->upload_err, "submit_errors", c->submit_err, "lost",
      c->lost + c->in_flight, "throughput_per_s", num(r->throughput),
      "active_s", r->active_s, "latency_s", "completed", dist_json(&r->all),
      "generated", dist_json(&r->generated), "cache_hits",
      dist_json(&r->cached), "stage_mean_s", stages, "errors", errors,
      "websocket", "clients", O.ws_clients, "messages",
      (json_int_t)r->ws_messages, "error_events", (json_int_t)r->ws_errors,
      "unconfirmed_subscriptions", c->sub_late, "reconnects",
      (json_int_t)r->ws_reconnects);
  if (o != NULL)
    json_object_set_new(
        o, "retry_after",
        json_pack("{s:I, s:f}", "refusals",
                  (json_int_t)atomic_load(&retry_after_n), "waited_s",
                  atomic_load(&retry_after_waited_ms) / 1000.0));
  char *text =
      o ? json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(6)) : NULL;
  if (text)
    puts(text);
  else
    fprintf(stderr, "orfeas-load: cannot build the JSON summary\n");
  free(text);
  json_decref(o);
}

/* No job was accepted: says so on stderr, with the first refusal's request,
 * status and reason (every job that started was refused: uninterrupted, a
 * job ends accepted or refused; and job 0 always starts, see worker). */
static void say_nothing_accepted(const counts *c) {
  const job *first = NULL;
  for (int i = 0; i < O.jobs; i++)
    if (jobs[i].t_start > 0 &&
        (first == NULL || jobs[i].t_start < first->t_start))
      first = &jobs[i];
  if (first == NULL) { /* not reached: job 0 always starts */
    fprintf(stderr, "orfeas-load: nothing was accepted: no job started\n");
    return;
  }
  char status[32];
  if (first->http)
    snprintf(status, sizeof status, "HTTP %ld", first->http);
  else
    snprintf(status, sizeof status, "no answer");
  fprintf(stderr,
          "orfeas-load: nothing was accepted: %s %d job%s that started %s "
          "refused; the first by %s: %s: %s\n",
          c->started > 1 ? "all" : "the", c->started, c->started > 1 ? "s" : "",
          c->started > 1 ? "were" : "was",
          atomic_load(&first->st) == J_UPLOAD_ERR ? "upload" : "generate-3d",
          status, first->error[0] ? first->error : "no reason given");
}

static int summary(double elapsed) {
  static results r;
  collect(&r, elapsed);
  if (O.json)
    print_json(&r);
  else
    print_text(&r);
  if (interrupted)
    return 128 + interrupted;
  if (r.c.accepted == 0) {
    say_nothing_accepted(&r.c);
    return 3;
  }
  return r.c.lost + r.c.in_flight > 0 ? 1 : 0;
}

/* ---- options ------------------------------------------------------------- */

static void usage(FILE *f) {
  fprintf(
      f,
      "usage: orfeas-load [--target URL] (--synthetic | --images DIR)\n"
      "                   [--jobs N] [--rate R | --concurrency C]\n"
      "                   [--formats stl,obj,ply,glb] [--ws-clients W]\n"
      "                   [--duration SECONDS] [--quality Q] [--distinct K]\n"
      "                   [--json]\n\n"
      "  --target URL      orfeasd, http://HOST:PORT (default "
      "http://127.0.0.1:5000)\n"
      "  --synthetic       generated PNG shapes, the default without "
      "--images\n"
      "  --images DIR      the .png/.jpg/.jpeg files of DIR\n"
      "  --jobs N          jobs to run, 1 to %d (default 20)\n"
      "  --rate R          start R jobs per second (with --concurrency "
      "workers); 0 to\n"
      "                    10000, 0 = off (default 0)\n"
      "  --concurrency C   jobs in flight, 1 to 256 (default 2)\n"
      "  --formats LIST    up to 4 of stl,obj,ply,glb, used in turn (default "
      "stl)\n"
      "  --ws-clients W    WebSocket clients subscribed to every job, 0 to 64 "
      "(default 1)\n"
      "  --duration S      start no job due after S s (the first always "
      "starts);\n"
      "                    accepted jobs get %d s more; 0.001 to %.0f "
      "(default %.0f)\n"
      "  --quality Q       1 to 10 (default 3)\n"
      "  --distinct K      K different images, repeated (cache hits); 1 to "
      "%d\n"
      "  --json            the summary as JSON on stdout (docs/load.md)\n"
      "  --help            print this\n"
      "  --version         print the version, git revision and build type\n\n"
      "Exit: 0 jobs accepted, none lost; 1 an accepted job never ended;\n"
      "2 usage or target unreachable; 3 no job accepted (all refused: "
      "stderr says\nthe first refusal); 130 interrupted (Ctrl-C: the summary "
      "of what ran; 143\nfor SIGTERM).\n",
      MAX_JOBS, GRACE_S, MAX_DURATION_S, DEFAULT_DURATION_S, MAX_JOBS);
}

static int parse_target(void) {
  const char *p = O.target;
  if (strncmp(p, "http://", 7) != 0)
    return -1;
  p += 7;
  const char *colon = strchr(p, ':'), *slash = strchr(p, '/');
  size_t hl = colon   ? (size_t)(colon - p)
              : slash ? (size_t)(slash - p)
                      : strlen(p);
  if (hl == 0 || hl >= sizeof O.host)
    return -1;
  memcpy(O.host, p, hl);
  O.host[hl] = '\0';
  O.port = colon ? (int)strtol(colon + 1, NULL, 10) : 80;
  return O.port > 0 && O.port < 65536 ? 0 : -1;
}

static int load_images(void) {
  if (O.images_dir == NULL) {
    for (nimages = 0; nimages < 30; nimages++) {
      images[nimages].data =
          synth_png(256, (unsigned)nimages, &images[nimages].len);
      if (images[nimages].data == NULL)
        return -1;
    }
    return 0;
  }
  DIR *d = opendir(O.images_dir);
  if (d == NULL)
    return -1;
  struct dirent *e;
  while ((e = readdir(d)) && nimages < MAX_IMAGES) {
    const char *dot = strrchr(e->d_name, '.');
    if (!dot ||
        (strcmp(dot, ".png") && strcmp(dot, ".jpg") && strcmp(dot, ".jpeg")))
      continue;
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", O.images_dir, e->d_name);
    FILE *f = fopen(path, "rb");
    if (!f)
      continue;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *data = n > 0 ? malloc((size_t)n) : NULL;
    if (data && fread(data, 1, (size_t)n, f) == (size_t)n) {
      images[nimages].data = data;
      images[nimages].len = (size_t)n;
      nimages++;
    } else {
      free(data);
    }
    fclose(f);
  }
  closedir(d);
  return nimages > 0 ? 0 : -1;
}

/* A number for FLAG from LO to HI (a whole one when INTEGER), or false
 * after saying so. */
static bool num_arg(const char *flag, const char *v, double lo, double hi,
                    bool integer, double *out) {
  char *e;
  double x = strtod(v, &e);
  if (e == v || *e != '\0' || !isfinite(x) || x < lo || x > hi ||
      (integer && x != floor(x))) {
    fprintf(stderr, "orfeas-load: %s %s: give a %s from %g to %g (--help)\n",
            flag, v, integer ? "whole number" : "number", lo, hi);
    return false;
  }
  *out = x;
  return true;
}

/* Reads argv into O and checks it. Returns -1 to go on, or the exit status
 * (--help, --version: 0; bad usage: 2). */
static int parse_args(int argc, char **argv) {
  snprintf(O.formats[0], sizeof O.formats[0], "stl");
  O.nformats = 1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    }
    if (!strcmp(a, "--version")) {
      orfeas_print_version(stdout, "orfeas-load");
      return 0;
    }
    if (!strcmp(a, "--synthetic")) {
      O.images_dir = NULL;
      continue;
    }
    if (!strcmp(a, "--json")) {
      O.json = true;
      continue;
    }
    if (v == NULL) {
      fprintf(stderr, "orfeas-load: %s needs a value\n", a);
      return 2;
    }
    i++;
    double x = 0;
    bool ok = true;
    if (!strcmp(a, "--target"))
      O.target = v;
    else if (!strcmp(a, "--images"))
      O.images_dir = v;
    else if (!strcmp(a, "--jobs") &&
             (ok = num_arg(a, v, 1, MAX_JOBS, true, &x)))
      O.jobs = (int)x;
    else if (!strcmp(a, "--rate") && (ok = num_arg(a, v, 0, 1e4, false, &x)))
      O.rate = x;
    else if (!strcmp(a, "--concurrency") &&
             (ok = num_arg(a, v, 1, 256, true, &x)))
      O.concurrency = (int)x;
    else if (!strcmp(a, "--ws-clients") &&
             (ok = num_arg(a, v, 0, 64, true, &x)))
      O.ws_clients = (int)x;
    else if (!strcmp(a, "--duration") &&
             (ok = num_arg(a, v, 0.001, MAX_DURATION_S, false, &x)))
      O.duration = x;
    else if (!strcmp(a, "--quality") && (ok = num_arg(a, v, 1, 10, true, &x)))
      O.quality = (int)x;
    else if (!strcmp(a, "--distinct") &&
             (ok = num_arg(a, v, 1, MAX_JOBS, true, &x)))
      O.distinct = (int)x;
    else if (!ok)
      return 2;
    else if (!strcmp(a, "--formats")) {
      /* Checked here: orfeasd would refuse each job with a 400. */
      O.nformats = 0;
      const char *p = v;
      for (;;) {
        size_t n = strcspn(p, ",");
        if (O.nformats == 4 || n == 0 || n >= sizeof O.formats[0] ||
            !(!strncmp(p, "stl", n) || !strncmp(p, "obj", n) ||
              !strncmp(p, "ply", n) || !strncmp(p, "glb", n)) ||
            n != 3) {
          fprintf(stderr,
                  "orfeas-load: --formats %s: give up to 4 of stl, obj, "
                  "ply, glb, comma-separated\n",
                  v);
          return 2;
        }
        snprintf(O.formats[O.nformats++], sizeof O.formats[0], "%.*s", (int)n,
                 p);
        if (p[n] == '\0')
          break;
        p += n + 1;
      }
    } else {
      fprintf(stderr, "orfeas-load: unknown option %s\n", a);
      usage(stderr);
      return 2;
    }
  }
  if (O.jobs < 1 || O.jobs > MAX_JOBS || O.concurrency < 1 ||
      O.concurrency > 256 || O.ws_clients < 0 || O.ws_clients > 64 ||
      O.duration <= 0 || O.nformats == 0 || O.rate < 0) {
    fprintf(stderr, "orfeas-load: a value is out of range (see --help)\n");
    return 2;
  }
  if (parse_target() != 0) {
    fprintf(stderr, "orfeas-load: --target must be http://HOST:PORT\n");
    return 2;
  }
  if (load_images() != 0) {
    fprintf(stderr, "orfeas-load: no images (%s)\n",
            O.images_dir ? O.images_dir : "synthetic");
    return 2;
  }
  return -1;
}

int main(int argc, char **argv) {
  int prc = parse_args(argc, argv);
  if (prc >= 0)
    return prc;
  curl_global_init(CURL_GLOBAL_DEFAULT);
  /* Reachable at all? One GET /health before any load. */
  CURL *c = curl_easy_init();
  char url[512];
  snprintf(url, sizeof url, "%s/health", O.target);
  json_t *r;
  long st = perform(c, url, &r);
  json_decref(r);
  curl_easy_cleanup(c);
  if (st != 200) {
    if (st == 0)
      fprintf(stderr,
              "orfeas-load: %s/health: no answer (%s): is orfeasd running "
              "there? give its address with --target\n",
              O.target, perform_err);
    else
      fprintf(stderr, "orfeas-load: %s/health answered HTTP %ld, not 200\n",
              O.target, st);
    return 2;
  }
  /* Ctrl-C: stop and print what happened so far (a second one kills). */
  struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESETHAND};
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  t_start = now_s();
  pthread_t ws[64], w[256];
  for (int i = 0; i < O.ws_clients; i++)
    pthread_create(&ws[i], NULL, ws_thread, (void *)(intptr_t)i);
  atomic_store(&workers_running, O.concurrency);
  for (int i = 0; i < O.concurrency; i++)
    pthread_create(&w[i], NULL, worker, NULL);
  bool tty = isatty(2);
  /* Report until the workers are done: they bound themselves by --jobs and
   * by --duration (+ the grace for accepted jobs). */
  double last = 0;
  while (atomic_load(&workers_running) > 0) {
    sleep_s(0.2);
    if (tty || now_s() - last >= 5) {
      progress(tty);
      last = now_s();
    }
  }
  for (int i = 0; i < O.concurrency; i++)
    pthread_join(w[i], NULL);
  /* The WebSocket clients may still be reading the last completion events:
   * wait (up to 2 s) until client 0 has seen the end of every job that
   * completed, then close. */
  for (double until = now_s() + 2; O.ws_clients > 0 && now_s() < until;) {
    bool all = true;
    pthread_mutex_lock(&stage_mu);
    for (int i = 0; i < O.jobs && all; i++)
      if (atomic_load(&jobs[i].st) == J_COMPLETED && !jobs[i].cached &&
          jobs[i].stage_t[NSTAGES] == 0)
        all = false;
    pthread_mutex_unlock(&stage_mu);
    if (all)
      break;
    sleep_s(0.05);
  }
  atomic_store(&done_flag, 1);
  for (int i = 0; i < O.ws_clients; i++)
    pthread_join(ws[i], NULL);
  if (tty)
    fputc('\n', stderr);
  int rc = summary(now_s() - t_start);
  for (int i = 0; i < nimages; i++)
    free(images[i].data);
  curl_global_cleanup();
  return rc;
}
