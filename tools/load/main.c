/* orfeas-load: drives an orfeasd with real jobs and says what happened.
 *
 *   orfeas-load --target http://127.0.0.1:5000 --synthetic --jobs 40
 *               --concurrency 4 --formats stl,glb --ws-clients 2 --duration 120
 *
 * Each job: upload an image, ask for a model, follow it to completed or
 * failed (polling job-status, the source of truth), while WebSocket clients
 * subscribed to every job record the stage events. Loops are bounded by
 * --jobs and --duration, and only --target is contacted. Exit status: 0 no
 * accepted job was lost; 1 some were (never completed nor failed before the
 * deadline); 2 bad usage or the target cannot be reached.
 */
#include "synth_png.h"
#include "ws_client.h"

#include <curl/curl.h>
#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
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

static const char *const STAGES[NSTAGES] = {
    "image_loading",   "image_preprocessing", "shape_generation",
    "texture_synthesis", "mesh_optimization", "mesh_export",
    "quality_validation"};

typedef enum { J_TODO, J_UPLOAD_ERR, J_SUBMIT_ERR, J_REJECTED, J_ACCEPTED,
               J_COMPLETED, J_FAILED, J_LOST } jstate;

typedef struct {
  _Atomic int st;
  char id[64];
  char format[8];
  double t0, t1;
  bool cached;
  _Atomic int sub_ack; /* WebSocket client 0 confirmed the subscription */
  double stage_t[NSTAGES + 1]; /* first time each stage was seen; [7] end */
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
} O = {.target = "http://127.0.0.1:5000", .jobs = 20, .concurrency = 2,
       .ws_clients = 1, .quality = 3, .duration = 120};

static job jobs[MAX_JOBS];
static _Atomic int next_job, watch_n;
static char watch_ids[MAX_JOBS][64]; /* jobs the WebSocket clients follow */
static _Atomic int done_flag, workers_running;
static double t_start;
static struct { unsigned char *data; size_t len; } images[MAX_IMAGES];
static int nimages;
static _Atomic long ws_messages;
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
static long perform(CURL *c, const char *url, json_t **json) {
  buf b = {0};
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  long status = 0;
  if (curl_easy_perform(c) == CURLE_OK)
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  *json = b.data ? json_loads(b.data, 0, NULL) : NULL;
  free(b.data);
  return status;
}

/* One job as a client runs it: upload, (subscribe,) generate, poll to the
 * end, download. Over 80 lines because the steps share the handle, the
 * job record and its early exits; each step is a few lines. */
static void run_job(CURL *c, int i) {
  job *j = &jobs[i];
  char url[512];
  json_t *r;
  j->t0 = now_s();
  snprintf(j->format, sizeof j->format, "%s", O.formats[i % O.nformats]);

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
    atomic_store(&j->st, J_UPLOAD_ERR);
    return;
  }
  pthread_mutex_lock(&stage_mu); /* the WebSocket reader compares ids */
  snprintf(j->id, sizeof j->id, "%s", id);
  pthread_mutex_unlock(&stage_mu);
  json_decref(r);

  /* Subscribe before generating, so no stage event is missed; wait for the
   * "subscribed" answer, but at most 1 s (the job-status poll below is the
   * source of truth either way). */
  if (O.ws_clients > 0) {
    int k = atomic_fetch_add(&watch_n, 1);
    memcpy(watch_ids[k], j->id, sizeof j->id);
    for (double until = now_s() + 1; !atomic_load(&j->sub_ack) &&
                                     now_s() < until;)
      sleep_s(0.002);
  }

  curl_easy_reset(c);
  char body[256];
  snprintf(body, sizeof body,
           "{\"job_id\":\"%s\",\"format\":\"%s\",\"quality\":%d}", j->id,
           j->format, O.quality);
  struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
  snprintf(url, sizeof url, "%s/api/generate-3d", O.target);
  st = perform(c, url, &r);
  curl_slist_free_all(h);
  json_decref(r);
  if (st == 429) {
    atomic_store(&j->st, J_REJECTED);
    return;
  }
  if (st != 202) {
    atomic_store(&j->st, J_SUBMIT_ERR);
    return;
  }
  atomic_store(&j->st, J_ACCEPTED);

  /* Follow to the end; the deadline bounds the loop. */
  double deadline = t_start + O.duration + GRACE_S;
  snprintf(url, sizeof url, "%s/api/job-status/%s", O.target, j->id);
  while (now_s() < deadline) {
    curl_easy_reset(c);
    st = perform(c, url, &r);
    const char *s = json_string_value(json_object_get(r, "status"));
    if (st == 200 && s && (!strcmp(s, "completed") || !strcmp(s, "failed"))) {
      j->t1 = now_s();
      j->cached = json_is_true(json_object_get(r, "cached"));
      atomic_store(&j->st, !strcmp(s, "completed") ? J_COMPLETED : J_FAILED);
      json_decref(r);
      return;
    }
    json_decref(r);
    sleep_s(0.1);
  }
  atomic_store(&j->st, J_LOST);
}

static void *worker(void *arg) {
  (void)arg;
  CURL *c = curl_easy_init();
  for (;;) {
    int i = atomic_fetch_add(&next_job, 1);
    if (i >= O.jobs)
      break;
    if (O.rate > 0) /* the schedule: job i starts at t_start + i / rate */
      sleep_s(t_start + i / O.rate - now_s());
    if (now_s() > t_start + O.duration)
      break; /* out of time: the job is not started at all */
    run_job(c, i);
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

static void *ws_thread(void *arg) {
  int index = (int)(intptr_t)arg;
  ws_client c;
  char err[160], msg[8192];
  if (!ws_connect(&c, O.host, O.port, "/ws", err, sizeof err)) {
    fprintf(stderr, "orfeas-load: WebSocket client %d: %s\n", index, err);
    return NULL;
  }
  int subscribed = 0;
  while (!atomic_load(&done_flag)) {
    int n = atomic_load(&watch_n);
    for (; subscribed < n; subscribed++) {
      char sub[160];
      int len = snprintf(sub, sizeof sub,
                         "{\"event\":\"subscribe\",\"data\":{\"job_id\":\"%s\"}}",
                         watch_ids[subscribed]);
      ws_send_text(&c, sub, (size_t)len);
    }
    int r = ws_recv_text(&c, msg, sizeof msg, 100);
    if (r < 0)
      break;
    if (r == 0)
      continue;
    atomic_fetch_add(&ws_messages, 1);
    if (index != 0)
      continue; /* one client keeps the stage timings */
    json_t *m = json_loads(msg, 0, NULL);
    const char *ev = json_string_value(json_object_get(m, "event"));
    json_t *d = json_object_get(m, "data");
    const char *id = json_string_value(json_object_get(d, "job_id"));
    const char *stage = json_string_value(json_object_get(d, "stage"));
    if (ev && id) {
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

/* ---- summary -------------------------------------------------------------- */

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double pct(const double *v, int n, double p) {
  if (n == 0)
    return NAN;
  int k = (int)ceil(p / 100.0 * n) - 1;
  return v[k < 0 ? 0 : k];
}

typedef struct {
  int started, done, accepted, completed, failed, rejected, upload_err,
      submit_err, lost, cached, in_flight;
} counts;

static counts count_jobs(void) {
  counts c = {0};
  for (int i = 0; i < O.jobs; i++) {
    int st = atomic_load(&jobs[i].st);
    if (jobs[i].t0 > 0)
      c.started++;
    switch (st) {
    case J_ACCEPTED: c.accepted++; c.in_flight++; break;
    case J_COMPLETED: c.accepted++; c.completed++; c.done++;
      c.cached += jobs[i].cached; break;
    case J_FAILED: c.accepted++; c.failed++; c.done++; break;
    case J_LOST: c.accepted++; c.lost++; c.done++; break;
    case J_REJECTED: c.rejected++; c.done++; break;
    case J_UPLOAD_ERR: c.upload_err++; c.done++; break;
    case J_SUBMIT_ERR: c.submit_err++; c.done++; break;
    default: break;
    }
  }
  return c;
}

static void progress(bool tty) {
  counts c = count_jobs();
  if (tty) {
    int w = 30, fill = O.jobs ? c.done * w / O.jobs : w;
    fprintf(stderr, "\r[%.*s%*s] %d/%d done, %d in flight, %d failed, "
                    "%d rejected ",
            fill, "##############################", w - fill, "", c.done,
            O.jobs, c.in_flight, c.failed, c.rejected);
  } else {
    fprintf(stderr, "orfeas-load: %d/%d done, %d in flight, %d failed, %d "
                    "rejected\n",
            c.done, O.jobs, c.in_flight, c.failed, c.rejected);
  }
}

static int summary(double elapsed) {
  counts c = count_jobs();
  static double e2e[MAX_JOBS];
  int n = 0;
  double stage_sum[NSTAGES] = {0};
  int stage_n[NSTAGES] = {0};
  for (int i = 0; i < O.jobs; i++) {
    job *j = &jobs[i];
    if (atomic_load(&j->st) == J_COMPLETED)
      e2e[n++] = j->t1 - j->t0;
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
  qsort(e2e, (size_t)n, sizeof e2e[0], cmp_d);
  printf("orfeas-load: %d jobs against %s in %.1f s\n", O.jobs, O.target,
         elapsed);
  printf("  started %d, accepted %d, completed %d, failed %d, rejected (429) "
         "%d, upload errors %d, submit errors %d, lost %d\n",
         c.started, c.accepted, c.completed, c.failed, c.rejected,
         c.upload_err, c.submit_err, c.lost + c.in_flight);
  printf("  cache hits %d\n", c.cached);
  printf("  end-to-end (completed): p50 %.3f s, p95 %.3f s, p99 %.3f s\n",
         pct(e2e, n, 50), pct(e2e, n, 95), pct(e2e, n, 99));
  printf("  stage means:");
  for (int s = 0; s < NSTAGES; s++)
    if (stage_n[s])
      printf(" %s %.3f s", STAGES[s], stage_sum[s] / stage_n[s]);
  printf("\n  websocket: %d clients, %ld messages\n", O.ws_clients,
         atomic_load(&ws_messages));
  return c.lost + c.in_flight > 0 ? 1 : 0;
}

/* ---- options ---------------------------------------------------------------- */

static void usage(FILE *f) {
  fprintf(f,
          "usage: orfeas-load [--target URL] (--synthetic | --images DIR)\n"
          "                   [--jobs N] [--rate R | --concurrency C]\n"
          "                   [--formats stl,obj,ply,glb] [--ws-clients W]\n"
          "                   [--duration SECONDS] [--quality Q] [--distinct K]\n\n"
          "  --target URL      orfeasd, http://HOST:PORT (default "
          "http://127.0.0.1:5000)\n"
          "  --synthetic       generated PNG shapes (default when no --images)\n"
          "  --images DIR      the .png/.jpg files of DIR\n"
          "  --jobs N          jobs to run (default 20, at most %d)\n"
          "  --rate R          start R jobs per second (with --concurrency "
          "workers)\n"
          "  --concurrency C   jobs in flight (default 2)\n"
          "  --formats LIST    formats, used in turn (default stl)\n"
          "  --ws-clients W    WebSocket clients subscribed to every job "
          "(default 1)\n"
          "  --duration S      stop starting jobs after S s; accepted jobs get "
          "%d s more\n"
          "  --quality Q       1-10 (default 3)\n"
          "  --distinct K      K different images, repeated (cache hits)\n\n"
          "Exit: 0 no job lost, 1 an accepted job never ended, 2 usage or "
          "target unreachable.\n",
          MAX_JOBS, GRACE_S);
}

static int parse_target(void) {
  const char *p = O.target;
  if (strncmp(p, "http://", 7) != 0)
    return -1;
  p += 7;
  const char *colon = strchr(p, ':'), *slash = strchr(p, '/');
  size_t hl = colon ? (size_t)(colon - p) : slash ? (size_t)(slash - p)
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
      images[nimages].data = synth_png(256, (unsigned)nimages,
                                       &images[nimages].len);
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
    if (!dot || (strcmp(dot, ".png") && strcmp(dot, ".jpg") &&
                 strcmp(dot, ".jpeg")))
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

/* The flags into O: -1 to go on, else the exit status (0 after --help). */
static int parse_args(int argc, char **argv) {
  snprintf(O.formats[0], sizeof O.formats[0], "stl");
  O.nformats = 1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    }
    if (!strcmp(a, "--synthetic")) {
      O.images_dir = NULL;
      continue;
    }
    if (v == NULL) {
      fprintf(stderr, "orfeas-load: %s needs a value\n", a);
      return 2;
    }
    i++;
    if (!strcmp(a, "--target")) O.target = v;
    else if (!strcmp(a, "--images")) O.images_dir = v;
    else if (!strcmp(a, "--jobs")) O.jobs = (int)strtol(v, NULL, 10);
    else if (!strcmp(a, "--rate")) O.rate = strtod(v, NULL);
    else if (!strcmp(a, "--concurrency")) O.concurrency = (int)strtol(v, NULL, 10);
    else if (!strcmp(a, "--ws-clients")) O.ws_clients = (int)strtol(v, NULL, 10);
    else if (!strcmp(a, "--duration")) O.duration = strtod(v, NULL);
    else if (!strcmp(a, "--quality")) O.quality = (int)strtol(v, NULL, 10);
    else if (!strcmp(a, "--distinct")) O.distinct = (int)strtol(v, NULL, 10);
    else if (!strcmp(a, "--formats")) {
      O.nformats = 0;
      char tmp[64];
      snprintf(tmp, sizeof tmp, "%s", v);
      for (char *save, *t = strtok_r(tmp, ",", &save); t && O.nformats < 4;
           t = strtok_r(NULL, ",", &save))
        snprintf(O.formats[O.nformats++], sizeof O.formats[0], "%s", t);
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
  return -1;
}

int main(int argc, char **argv) {
  int rc = parse_args(argc, argv);
  if (rc >= 0)
    return rc;
  if (parse_target() != 0) {
    fprintf(stderr, "orfeas-load: --target must be http://HOST:PORT\n");
    return 2;
  }
  if (load_images() != 0) {
    fprintf(stderr, "orfeas-load: no images (%s)\n",
            O.images_dir ? O.images_dir : "synthetic");
    return 2;
  }
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
    fprintf(stderr, "orfeas-load: %s does not answer /health (HTTP %ld)\n",
            O.target, st);
    return 2;
  }
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
  rc = summary(now_s() - t_start);
  for (int i = 0; i < nimages; i++)
    free(images[i].data);
  curl_global_cleanup();
  return rc;
}
