/* jobs.c: the job table, the worker pool, progress and ETA.
 *
 * A job is born at upload (state uploaded, its image stored as
 * DATA/uploads/<id>.<ext>) and lives in a fixed-size table; when the table
 * is full the oldest job that is not queued or processing is forgotten
 * (files included). generate-3d moves it to queued (or straight to completed
 * on a cache hit), a worker to processing, and the worker always ends it
 * completed or failed with a reason: the pipeline's own message, or "service
 * shutting down" for jobs still queued at SIGTERM (od_jobs_drain).
 *
 * The table lock guards every job field. Lock order: table, then queue; the
 * hub and the metrics are called with no lock held.
 *
 * ETA: every stage keeps its last 100 durations. A running job's ETA is what
 * its current stage still needs by that mean (never below 0) plus the means
 * of the stages after it; a queued job's is the mean job time scaled by its
 * place in line over the number of workers. The same window picks the
 * bottleneck stage (orfeas_pipeline_bottleneck_stage).
 */
#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "orfeasd.h"

#define ETA_WINDOW 100

typedef struct od_job {
  char id[37];
  od_job_state state;
  char ext[8];              /* of the stored upload */
  EVP_MD_CTX *hash;         /* SHA-256 state after the image bytes; owned */
  od_generate_req req;
  uint8_t key[32];
  char stage[32];
  double progress, stage_progress;
  int stage_idx;
  double stage_t0;
  int cached;
  double score;
  char grade[3];
  int printable;
  char error[256];
  int http_status;
  size_t upload_bytes, output_bytes; /* counted in od_jobs.store_bytes */
  double t_queued, t_started;
  char output_name[96];
  uint64_t seq;
} od_job;

struct od_jobs {
  od_service *svc;
  pthread_mutex_t mu;
  od_job **table;           /* max_jobs slots; owns the jobs */
  size_t cap;
  uint64_t seq;
  od_queue *q;
  pthread_t *threads;       /* owned */
  /* Atomic: /ready and ETAs read it on HTTP and worker threads while
   * start-up and the drain change it on the main thread. */
  _Atomic int nthreads;
  _Atomic int busy;
  /* ETA and bottleneck window, under mu. */
  double win[ORFEAS_PL_STAGE_COUNT][ETA_WINDOW];
  int win_n[ORFEAS_PL_STAGE_COUNT], win_pos[ORFEAS_PL_STAGE_COUNT];
  double total_win[ETA_WINDOW];
  int total_n, total_pos;
  char dir_uploads[PATH_MAX], dir_outputs[PATH_MAX];
  size_t store_bytes, store_cap; /* uploads + models on disk, under mu */
};

const char *od_job_state_name(od_job_state s) {
  static const char *const n[OD_JOB_STATE_COUNT] = {"uploaded", "queued", "processing",
                                                    "completed", "failed"};
  return (unsigned)s < OD_JOB_STATE_COUNT ? n[s] : "failed";
}

static double stage_mean(const od_jobs *j, int s) {
  if (j->win_n[s] == 0)
    return 0.05; /* a first guess: the stages are tens of ms (bench) */
  double sum = 0;
  for (int i = 0; i < j->win_n[s]; i++)
    sum += j->win[s][i];
  return sum / j->win_n[s];
}

static double total_mean(const od_jobs *j) {
  if (j->total_n == 0)
    return 0.05 * ORFEAS_PL_STAGE_COUNT;
  double sum = 0;
  for (int i = 0; i < j->total_n; i++)
    sum += j->total_win[i];
  return sum / j->total_n;
}

/* Called with mu held. */
static double eta_of(const od_jobs *j, const od_job *job, int pos) {
  if (job->state == OD_JOB_QUEUED)
    return total_mean(j) * (1.0 + (double)pos / (j->nthreads > 0 ? j->nthreads : 1));
  if (job->state != OD_JOB_PROCESSING)
    return 0;
  int s = job->stage_idx;
  double rem = 0;
  if (s >= 0 && s < ORFEAS_PL_STAGE_COUNT) {
    if (job->stage_progress < 1) {
      double left = stage_mean(j, s) - (od_now() - job->stage_t0);
      rem += left > 0 ? left : 0;
    }
    for (int k = s + 1; k < ORFEAS_PL_STAGE_COUNT; k++)
      rem += stage_mean(j, k);
  } else {
    rem = total_mean(j);
  }
  return rem;
}

static od_job *find(od_jobs *j, const char *id) {
  for (size_t i = 0; i < j->cap; i++)
    if (j->table[i] && strcmp(j->table[i]->id, id) == 0)
      return j->table[i];
  return NULL;
}

static void job_files(od_jobs *j, const od_job *job, char *up, size_t up_len,
                      char *out, size_t out_len) {
  if (up)
    snprintf(up, up_len, "%s/%s.%s", j->dir_uploads, job->id, job->ext);
  if (out)
    snprintf(out, out_len, "%s/%s", j->dir_outputs, job->output_name);
}

static void job_free(od_job *job) {
  if (job == NULL)
    return;
  EVP_MD_CTX_free(job->hash);
  free(job);
}

/* ---- publishing ----------------------------------------------------------- */

static void publish(od_jobs *j, const char *id, od_ws_event ev, json_t *data) {
  json_object_set_new(data, "timestamp", json_real(od_wall()));
  char *text = od_ws_event_json(ev, data);
  if (text != NULL) {
    od_hub_publish(j->svc->hub, id, ev, text);
    free(text);
  }
}

/* The terminal event of a finished job. */
static void publish_end(od_jobs *j, const od_job_view *v) {
  od_ws_event ev;
  json_t *data = od_job_event_json(v, &ev);
  if (data != NULL)
    publish(j, v->id, ev, data);
}

/* ---- views ---------------------------------------------------------------- */

static void fill_view(od_jobs *j, const od_job *job, od_job_view *v) {
  memset(v, 0, sizeof *v);
  snprintf(v->id, sizeof v->id, "%s", job->id);
  v->state = job->state;
  v->progress = job->progress;
  snprintf(v->stage, sizeof v->stage, "%s", job->stage);
  v->stage_progress = job->stage_progress;
  v->position = job->state == OD_JOB_QUEUED ? od_queue_position(j->q, job->id) : -1;
  v->eta_seconds = eta_of(j, job, v->position < 0 ? 0 : v->position);
  v->cached = job->cached;
  v->format = job->req.format;
  snprintf(v->output_name, sizeof v->output_name, "%s", job->output_name);
  v->score = job->score;
  snprintf(v->grade, sizeof v->grade, "%s", job->grade);
  v->printable = job->printable;
  snprintf(v->error, sizeof v->error, "%s", job->error);
  v->http_status = job->http_status;
}

int od_jobs_view(od_jobs *j, const char *id, od_job_view *v) {
  pthread_mutex_lock(&j->mu);
  od_job *job = find(j, id);
  if (job)
    fill_view(j, job, v);
  pthread_mutex_unlock(&j->mu);
  return job != NULL;
}

/* ---- upload --------------------------------------------------------------- */

/* Forgets the oldest job that is neither queued nor processing, files
 * included. Called with mu held; returns its slot or -1 when every job is
 * active. */
static long evict_oldest(od_jobs *j) {
  long oldest = -1;
  for (size_t i = 0; i < j->cap; i++) {
    od_job *job = j->table[i];
    if (job == NULL || job->state == OD_JOB_QUEUED || job->state == OD_JOB_PROCESSING)
      continue;
    if (oldest < 0 || job->seq < j->table[oldest]->seq)
      oldest = (long)i;
  }
  if (oldest >= 0) {
    od_job *job = j->table[oldest];
    char up[PATH_MAX + 64], out[PATH_MAX + 128];
    job_files(j, job, up, sizeof up, out, sizeof out);
    unlink(up);
    if (job->output_name[0])
      unlink(out);
    j->store_bytes -= job->upload_bytes + job->output_bytes;
    job_free(job);
    j->table[oldest] = NULL;
  }
  return oldest;
}

/* A free slot, evicting when the table is full; -1 when all are active. */
static long take_slot(od_jobs *j) {
  for (size_t i = 0; i < j->cap; i++)
    if (j->table[i] == NULL)
      return (long)i;
  return evict_oldest(j);
}

int od_jobs_add_upload(od_jobs *j, const uint8_t *img, size_t len,
                       const char *ext, char id_out[37], char *err,
                       size_t err_len) {
  od_job *job = calloc(1, sizeof *job);
  if (job == NULL || od_uuid_new(job->id) != 0) {
    snprintf(err, err_len, "out of memory or no randomness for a job id");
    free(job);
    return -1;
  }
  snprintf(job->ext, sizeof job->ext, "%s", ext);
  job->hash = EVP_MD_CTX_new();
  if (job->hash == NULL || EVP_DigestInit_ex(job->hash, EVP_sha256(), NULL) != 1 ||
      EVP_DigestUpdate(job->hash, img, len) != 1) {
    snprintf(err, err_len, "SHA-256 unavailable (OpenSSL)");
    job_free(job);
    return -1;
  }
  char path[PATH_MAX + 64];
  job_files(j, job, path, sizeof path, NULL, 0);
  if (od_file_write(path, img, len) != 0) {
    snprintf(err, err_len, "cannot store the upload in %s: %s", j->dir_uploads,
             strerror(errno));
    job_free(job);
    return -1;
  }
  pthread_mutex_lock(&j->mu);
  /* The data dir is bounded too (--max-store-mb): uploads and models of
   * finished jobs go, oldest first, to make room. */
  while (j->store_bytes + len > j->store_cap && evict_oldest(j) >= 0)
    ;
  long slot = j->store_bytes + len > j->store_cap ? -1 : take_slot(j);
  if (slot >= 0) {
    job->seq = ++j->seq;
    job->upload_bytes = len;
    j->store_bytes += len;
    j->table[slot] = job;
  }
  pthread_mutex_unlock(&j->mu);
  if (slot < 0) {
    unlink(path);
    job_free(job);
    snprintf(err, err_len, "every job slot or the whole --max-store-mb holds queued or "
             "running jobs; retry later");
    return -2;
  }
  snprintf(id_out, 37, "%s", job->id);
  od_log("job %s uploaded bytes=%zu type=%s", id_out, len, ext);
  return 0;
}

/* ---- generate ------------------------------------------------------------- */

/* SHA-256(image bytes || parameters): every parameter that changes the
 * model is in the key, dimensions included. */
static int cache_key(const od_job *job, const od_generate_req *r,
                     uint8_t key[32]) {
  char params[256];
  int n = snprintf(params, sizeof params,
                   "|format=%s|mode=%s|quality=%d|w=%.17g|h=%.17g|d=%.17g",
                   orfeas_pl_format_name(r->format), orfeas_pl_mode_name(r->mode),
                   r->quality, r->width, r->height, r->depth);
  EVP_MD_CTX *c = EVP_MD_CTX_new();
  unsigned int out_len = 0;
  int ok = c != NULL && EVP_MD_CTX_copy_ex(c, job->hash) == 1 &&
           EVP_DigestUpdate(c, params, (size_t)n) == 1 &&
           EVP_DigestFinal_ex(c, key, &out_len) == 1 && out_len == 32;
  EVP_MD_CTX_free(c);
  return ok ? 0 : -1;
}

static void count_gen(od_jobs *j, orfeas_pl_format f, const char *status) {
  om_counter_inc(om_family_counter(j->svc->m.gen_total,
                                   OM_LABELS(orfeas_pl_format_name(f), status)));
}

static void set_output_name(od_job *job) {
  snprintf(job->output_name, sizeof job->output_name, "model_%s.%s", job->id,
           orfeas_pl_format_name(job->req.format));
}

/* A cache value is a 32-byte header with the quality report, then the
 * model, so a hit reports the same score as the run that made it. */
#define CACHE_HDR 32

static uint8_t *cache_value(const orfeas_pl_result *res, size_t *len) {
  uint8_t *v = malloc(CACHE_HDR + res->file.size);
  if (v == NULL)
    return NULL;
  memset(v, 0, CACHE_HDR);
  memcpy(v, "OQ1", 4);
  memcpy(v + 8, &res->quality.score, sizeof(double));
  v[16] = (uint8_t)(res->quality.printable != 0);
  memcpy(v + 20, res->quality.grade, 3);
  memcpy(v + CACHE_HDR, res->file.data, res->file.size);
  *len = CACHE_HDR + res->file.size;
  return v;
}

static int cache_header(const uint8_t *v, size_t len, od_job *job) {
  if (len < CACHE_HDR || memcmp(v, "OQ1", 4) != 0)
    return -1;
  memcpy(&job->score, v + 8, sizeof(double));
  job->printable = v[16];
  memcpy(job->grade, v + 20, 2);
  job->grade[2] = '\0';
  return 0;
}

static void update_cache_gauges(od_jobs *j) {
  for (int t = 0; t < OD_CACHE_TIERS; t++)
    om_gauge_set(j->svc->m.cache_size[t],
                 (double)od_cache_bytes(j->svc->cache, (od_cache_tier)t));
}

od_gen_result od_jobs_generate(od_jobs *j, const od_generate_req *req,
                               int *position) {
  od_metrics *m = &j->svc->m;
  *position = 0;
  pthread_mutex_lock(&j->mu);
  od_job *job = find(j, req->job_id);
  if (job == NULL) {
    pthread_mutex_unlock(&j->mu);
    return OD_GEN_NOT_FOUND;
  }
  if (job->state == OD_JOB_QUEUED || job->state == OD_JOB_PROCESSING) {
    pthread_mutex_unlock(&j->mu);
    return OD_GEN_CONFLICT;
  }
  if (j->svc->draining) {
    pthread_mutex_unlock(&j->mu);
    count_gen(j, req->format, "rejected");
    return OD_GEN_DRAINING;
  }
  od_job_state prev = job->state;
  /* A new run replaces the previous model: remove its file (an open
   * download keeps reading the unlinked file). */
  if (job->output_name[0]) {
    char old[PATH_MAX + 128];
    job_files(j, job, NULL, 0, old, sizeof old);
    unlink(old);
    j->store_bytes -= job->output_bytes;
    job->output_bytes = 0;
  }
  /* Claim the job now (queued), so a second request gets 409 while the
   * cache is searched outside the lock. */
  job->state = OD_JOB_QUEUED;
  job->req = *req;
  job->cached = 0;
  job->error[0] = '\0';
  job->output_name[0] = '\0';
  job->progress = 0;
  job->stage_progress = 0;
  job->stage_idx = -1;
  snprintf(job->stage, sizeof job->stage, "queued");
  int key_ok = cache_key(job, req, job->key) == 0;
  uint8_t key[32];
  memcpy(key, job->key, 32);
  pthread_mutex_unlock(&j->mu);

  uint8_t *data = NULL;
  size_t len = 0;
  od_cache_tier tier = OD_CACHE_MEMORY;
  unsigned missed = 0;
  int hit = key_ok && od_cache_get(j->svc->cache, key, &data, &len, &tier, &missed);
  for (int t = 0; t < OD_CACHE_TIERS; t++)
    if (missed & (1u << t))
      om_counter_inc(m->cache_misses[t]);
  if (hit) {
    om_counter_inc(m->cache_hits[tier]);
    char out[PATH_MAX + 128];
    pthread_mutex_lock(&j->mu);
    set_output_name(job);
    job_files(j, job, NULL, 0, out, sizeof out);
    int hdr_ok = cache_header(data, len, job);
    pthread_mutex_unlock(&j->mu);
    int wrote = hdr_ok == 0 ? od_file_write(out, data + CACHE_HDR, len - CACHE_HDR) : -1;
    free(data);
    if (wrote == 0) {
      od_job_view v;
      pthread_mutex_lock(&j->mu);
      job->state = OD_JOB_COMPLETED;
      job->cached = 1;
      job->output_bytes = len - CACHE_HDR;
      j->store_bytes += job->output_bytes;
      job->progress = 100;
      job->stage_progress = 1;
      snprintf(job->stage, sizeof job->stage, "completed");
      fill_view(j, job, &v);
      pthread_mutex_unlock(&j->mu);
      update_cache_gauges(j);
      count_gen(j, req->format, "cached");
      od_log("job %s completed from the %s cache format=%s bytes=%zu", req->job_id,
             tier == OD_CACHE_MEMORY ? "memory" : "disk",
             orfeas_pl_format_name(req->format), len - CACHE_HDR);
      publish_end(j, &v);
      return OD_GEN_CACHED;
    }
    pthread_mutex_lock(&j->mu);
    job->output_name[0] = '\0';
    pthread_mutex_unlock(&j->mu);
  }

  pthread_mutex_lock(&j->mu);
  job->t_queued = od_now();
  int pos = od_queue_push(j->q, job->id);
  if (pos < 0) {
    job->state = prev;
    snprintf(job->stage, sizeof job->stage, "%s", od_job_state_name(prev));
    pthread_mutex_unlock(&j->mu);
    count_gen(j, req->format, "rejected");
    od_log("job %s rejected: the queue is full (%d)", req->job_id,
           j->svc->cfg.queue_size);
    return j->svc->draining ? OD_GEN_DRAINING : OD_GEN_QUEUE_FULL;
  }
  om_gauge_inc(m->active_jobs);
  om_gauge_set(m->queue_depth, (double)od_queue_depth(j->q));
  pthread_mutex_unlock(&j->mu);
  *position = pos;
  od_log("job %s queued position=%d format=%s quality=%d", req->job_id, pos,
         orfeas_pl_format_name(req->format), req->quality);
  return OD_GEN_QUEUED;
}

/* ---- workers -------------------------------------------------------------- */

typedef struct {
  od_jobs *j;
  od_job *job;
  char id[37];
} run_ctx;

static int paused(const od_jobs *j) {
  const char *pf = j->svc->cfg.pause_file;
  return pf[0] != '\0' && access(pf, F_OK) == 0 && !j->svc->draining;
}

static int on_progress(void *user, const orfeas_pl_progress *p) {
  run_ctx *rc = user;
  od_jobs *j = rc->j;
  od_metrics *m = &j->svc->m;
  /* Test and drill hook: hold the job at its first stage while the pause
   * file exists (never during a drain, so SIGTERM still finishes). */
  if (p->stage == 0 && p->event == ORFEAS_PL_EVENT_BEGIN)
    while (paused(j)) {
      struct timespec ts = {0, 20 * 1000000};
      nanosleep(&ts, NULL);
    }
  double eta;
  pthread_mutex_lock(&j->mu);
  od_job *job = rc->job;
  job->stage_idx = (int)p->stage;
  snprintf(job->stage, sizeof job->stage, "%s", p->stage_name);
  job->stage_progress = p->progress;
  job->progress = p->overall * 100.0;
  if (p->event == ORFEAS_PL_EVENT_BEGIN) {
    job->stage_t0 = od_now();
  } else {
    double d = (double)p->duration_ns * 1e-9;
    int s = (int)p->stage;
    j->win[s][j->win_pos[s]] = d;
    j->win_pos[s] = (j->win_pos[s] + 1) % ETA_WINDOW;
    if (j->win_n[s] < ETA_WINDOW)
      j->win_n[s]++;
  }
  eta = eta_of(j, job, 0);
  pthread_mutex_unlock(&j->mu);

  od_job_view v;
  memset(&v, 0, sizeof v);
  snprintf(v.id, sizeof v.id, "%s", rc->id);
  snprintf(v.stage, sizeof v.stage, "%s", p->stage_name);
  v.stage_progress = p->progress;
  v.progress = p->overall * 100.0;
  v.eta_seconds = eta;
  if (p->event == ORFEAS_PL_EVENT_END)
    om_histogram_observe(om_family_histogram(m->stage_duration,
                                             OM_LABELS(p->stage_name)),
                         (double)p->duration_ns * 1e-9);
  else
    publish(j, rc->id, OD_WS_STAGE_CHANGE, od_job_stage_json(&v));
  om_counter_inc(m->ws_progress);
  publish(j, rc->id, OD_WS_PROGRESS, od_job_progress_json(&v));
  return 0;
}

/* Marks the bottleneck stage: the largest mean over the window. */
static void update_bottleneck(od_jobs *j) {
  double means[ORFEAS_PL_STAGE_COUNT];
  int best = 0;
  pthread_mutex_lock(&j->mu);
  for (int s = 0; s < ORFEAS_PL_STAGE_COUNT; s++) {
    means[s] = stage_mean(j, s);
    if (means[s] > means[best])
      best = s;
  }
  pthread_mutex_unlock(&j->mu);
  for (int s = 0; s < ORFEAS_PL_STAGE_COUNT; s++)
    om_gauge_set(om_family_gauge(j->svc->m.bottleneck,
                                 OM_LABELS(orfeas_pl_stage_name((orfeas_pl_stage)s))),
                 s == best ? 1 : 0);
}

/* Ends a job: state, metrics, log and the terminal event. */
static void finish(od_jobs *j, od_job *job, int ok, const char *error,
                   int http_status) {
  od_job_view v;
  pthread_mutex_lock(&j->mu);
  job->state = ok ? OD_JOB_COMPLETED : OD_JOB_FAILED;
  if (ok) {
    job->progress = 100;
    snprintf(job->stage, sizeof job->stage, "completed");
  } else {
    snprintf(job->error, sizeof job->error, "%s", error);
    job->http_status = http_status;
    job->output_name[0] = '\0';
  }
  fill_view(j, job, &v);
  orfeas_pl_format f = job->req.format;
  pthread_mutex_unlock(&j->mu);
  om_gauge_dec(j->svc->m.active_jobs);
  count_gen(j, f, ok ? "success" : "failed");
  if (ok)
    od_log("job %s completed format=%s score=%.3f grade=%s", v.id,
           orfeas_pl_format_name(f), v.score, v.grade);
  else
    od_log("job %s failed: %s", v.id, v.error);
  publish_end(j, &v);
}

static void run_job(od_jobs *j, od_job *job) {
  od_metrics *m = &j->svc->m;
  run_ctx rc = {.j = j, .job = job};
  char up[PATH_MAX + 64];
  od_generate_req req;
  pthread_mutex_lock(&j->mu);
  job->state = OD_JOB_PROCESSING;
  job->t_started = od_now();
  snprintf(job->stage, sizeof job->stage, "starting");
  snprintf(rc.id, sizeof rc.id, "%s", job->id);
  req = job->req;
  double waited = job->t_started - job->t_queued;
  job_files(j, job, up, sizeof up, NULL, 0);
  pthread_mutex_unlock(&j->mu);
  om_histogram_observe(m->queue_wait, waited);
  om_gauge_set(m->queue_depth, (double)od_queue_depth(j->q));
  od_log("job %s started waited=%.3fs", rc.id, waited);

  size_t len = 0;
  uint8_t *img = od_file_read(up, &len);
  if (img == NULL) {
    finish(j, job, 0, "the uploaded image is gone from the data dir", 500);
    return;
  }
  orfeas_pl_options opt;
  orfeas_pl_options_init(&opt);
  opt.format = req.format;
  opt.mode = req.mode;
  opt.quality = req.quality;
  opt.width_mm = req.width;
  opt.height_mm = req.height;
  opt.depth_mm = req.depth;
  opt.progress = on_progress;
  opt.progress_user = &rc;
  orfeas_pl_result res;
  char msg[256];
  double t0 = od_now();
  orfeas_pl_code code = orfeas_pl_run(img, len, &opt, &res, msg, sizeof msg);
  free(img);
  if (code != ORFEAS_PL_OK) {
    orfeas_pl_result_free(&res);
    finish(j, job, 0, msg, orfeas_pl_is_client_error(code) ? 400 : 500);
    update_bottleneck(j);
    return;
  }
  char out[PATH_MAX + 128];
  pthread_mutex_lock(&j->mu);
  set_output_name(job);
  job_files(j, job, NULL, 0, out, sizeof out);
  job->score = res.quality.score;
  snprintf(job->grade, sizeof job->grade, "%s", res.quality.grade);
  job->printable = res.quality.printable;
  uint8_t key[32];
  memcpy(key, job->key, 32);
  pthread_mutex_unlock(&j->mu);
  if (od_file_write(out, res.file.data, res.file.size) != 0) {
    char e[PATH_MAX + 80];
    snprintf(e, sizeof e, "cannot write the model in %s: %s", j->dir_outputs,
             strerror(errno));
    orfeas_pl_result_free(&res);
    finish(j, job, 0, e, 500);
    return;
  }
  size_t vlen = 0;
  uint8_t *val = cache_value(&res, &vlen);
  if (val != NULL)
    od_cache_put(j->svc->cache, key, val, vlen);
  pthread_mutex_lock(&j->mu);
  job->output_bytes = res.file.size;
  j->store_bytes += res.file.size;
  pthread_mutex_unlock(&j->mu);
  free(val);
  update_cache_gauges(j);
  double total = od_now() - t0;
  pthread_mutex_lock(&j->mu);
  j->total_win[j->total_pos] = total;
  j->total_pos = (j->total_pos + 1) % ETA_WINDOW;
  if (j->total_n < ETA_WINDOW)
    j->total_n++;
  pthread_mutex_unlock(&j->mu);
  om_histogram_observe(om_family_histogram(m->gen_duration,
                                           OM_LABELS(orfeas_pl_format_name(req.format))),
                       total);
  om_histogram_observe(m->quality_score, res.quality.score);
  if (res.quality.printable)
    om_counter_inc(m->printable);
  orfeas_pl_result_free(&res);
  update_bottleneck(j);
  finish(j, job, 1, NULL, 200);
}

static void *worker_main(void *arg) {
  od_jobs *j = arg;
  char id[37];
  /* Workers run at a lower priority (Linux nice is per thread): when the
   * pipeline saturates the cores, the HTTP threads and the WebSocket hub
   * still get a core at once, so health checks, scrapes and progress
   * events stay fast; the jobs lose only the time those take. */
  if (j->svc->cfg.worker_nice != 0 &&
      setpriority(PRIO_PROCESS, (id_t)gettid(), j->svc->cfg.worker_nice) != 0)
    od_log("worker: cannot set nice %d: %s", j->svc->cfg.worker_nice, strerror(errno));
  while (od_queue_pop(j->q, id, -1) == 0) {
    /* A queued job is never evicted, so the pointer stays valid. */
    pthread_mutex_lock(&j->mu);
    od_job *job = find(j, id);
    pthread_mutex_unlock(&j->mu);
    if (job == NULL)
      continue;
    om_gauge_inc(j->svc->m.workers_busy);
    j->busy++;
    run_job(j, job);
    j->busy--;
    om_gauge_dec(j->svc->m.workers_busy);
  }
  return NULL;
}

/* ---- life cycle ----------------------------------------------------------- */

static int make_dir(const char *path, char *err, size_t err_len) {
  if (mkdir(path, 0700) != 0 && errno != EEXIST) {
    snprintf(err, err_len, "cannot create %s: %s", path, strerror(errno));
    return -1;
  }
  return 0;
}

od_jobs *od_jobs_new(od_service *svc, char *err, size_t err_len) {
  od_jobs *j = calloc(1, sizeof *j);
  if (j == NULL) {
    snprintf(err, err_len, "out of memory");
    return NULL;
  }
  j->svc = svc;
  pthread_mutex_init(&j->mu, NULL);
  j->cap = (size_t)svc->cfg.max_jobs;
  j->store_cap = (size_t)svc->cfg.max_store_mb << 20;
  j->table = calloc(j->cap, sizeof *j->table);
  j->q = od_queue_new((size_t)svc->cfg.queue_size);
  snprintf(j->dir_uploads, sizeof j->dir_uploads, "%.*s/uploads", PATH_MAX - 16,
           svc->cfg.data_dir);
  snprintf(j->dir_outputs, sizeof j->dir_outputs, "%.*s/outputs", PATH_MAX - 16,
           svc->cfg.data_dir);
  if (j->table == NULL || j->q == NULL) {
    snprintf(err, err_len, "out of memory for %zu jobs", j->cap);
    od_jobs_free(j);
    return NULL;
  }
  if (make_dir(svc->cfg.data_dir, err, err_len) != 0 ||
      make_dir(j->dir_uploads, err, err_len) != 0 ||
      make_dir(j->dir_outputs, err, err_len) != 0) {
    od_jobs_free(j);
    return NULL;
  }
  return j;
}

int od_jobs_start(od_jobs *j, char *err, size_t err_len) {
  int n = j->svc->cfg.workers;
  j->threads = calloc((size_t)n, sizeof *j->threads);
  if (j->threads == NULL) {
    snprintf(err, err_len, "out of memory for %d workers", n);
    return -1;
  }
  for (int i = 0; i < n; i++) {
    int rc = pthread_create(&j->threads[i], NULL, worker_main, j);
    if (rc != 0) {
      snprintf(err, err_len, "cannot start worker %d: %s", i, strerror(rc));
      return -1;
    }
    j->nthreads++;
  }
  return 0;
}

static void drop_queued(const char *id, void *user) {
  od_jobs *j = user;
  pthread_mutex_lock(&j->mu);
  od_job *job = find(j, id);
  pthread_mutex_unlock(&j->mu);
  if (job == NULL)
    return;
  finish(j, job, 0,
         "service shutting down: the job was still queued and was not started; "
         "submit it again", 503);
}

void od_jobs_drain(od_jobs *j) {
  od_queue_close(j->q, drop_queued, j);
  om_gauge_set(j->svc->m.queue_depth, 0);
  for (int i = 0; i < j->nthreads; i++)
    pthread_join(j->threads[i], NULL);
  j->nthreads = 0;
}

void od_jobs_free(od_jobs *j) {
  if (j == NULL)
    return;
  for (size_t i = 0; j->table && i < j->cap; i++)
    job_free(j->table[i]);
  free(j->table);
  free(j->threads);
  od_queue_free(j->q);
  pthread_mutex_destroy(&j->mu);
  free(j);
}

int od_jobs_retry_after(od_jobs *j) {
  pthread_mutex_lock(&j->mu);
  double t = total_mean(j) * (double)(od_queue_depth(j->q) + 1) /
             (j->nthreads > 0 ? j->nthreads : 1);
  pthread_mutex_unlock(&j->mu);
  return t < 1 ? 1 : t > 3600 ? 3600 : (int)ceil(t);
}

int od_jobs_workers_running(od_jobs *j) { return j->nthreads; }
int od_jobs_busy(od_jobs *j) { return j->busy; }
size_t od_jobs_queue_depth(od_jobs *j) { return od_queue_depth(j->q); }

void od_jobs_counts(od_jobs *j, int counts[OD_JOB_STATE_COUNT]) {
  memset(counts, 0, OD_JOB_STATE_COUNT * sizeof *counts);
  pthread_mutex_lock(&j->mu);
  for (size_t i = 0; i < j->cap; i++)
    if (j->table[i])
      counts[j->table[i]->state]++;
  pthread_mutex_unlock(&j->mu);
}

int od_jobs_open_output(od_jobs *j, const char *id, const char *name,
                        uint64_t *size, orfeas_pl_format *fmt) {
  char out[PATH_MAX + 128];
  pthread_mutex_lock(&j->mu);
  od_job *job = find(j, id);
  /* The name must be the job's own output name: a client string never
   * becomes part of a path. */
  int ok = job && job->state == OD_JOB_COMPLETED && job->output_name[0] &&
           strcmp(job->output_name, name) == 0;
  if (ok) {
    job_files(j, job, NULL, 0, out, sizeof out);
    *fmt = job->req.format;
  }
  pthread_mutex_unlock(&j->mu);
  if (!ok)
    return -1;
  int fd = open(out, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) {
    if (fd >= 0)
      close(fd);
    return -1;
  }
  *size = (uint64_t)st.st_size;
  return fd;
}
