/* worker.c: the worker pool (--workers threads).
 *
 * Each thread claims the oldest waiting job from the store (queued ->
 * processing, attempt + 1), runs the pipeline on its upload and hands the
 * run's end (the model, or the failure) to the committer (commit.c), which
 * makes the model durable, fills the result cache and records the end,
 * fenced by the claim's attempt; the worker claims its next job at once,
 * until the store's dispatch queue is closed (od_jobs_drain). A claim the
 * store cannot record (it is down) is logged and tried again every 200 ms.
 *
 * Progress: the pipeline reports each stage twice (begin, end). Where a
 * running job stands is kept here, one slot per worker, never written to
 * the store: a durable store would otherwise be written 14 times per job.
 * job-status reads it through od_workers_live.
 *
 * Test and drill hook: while --pause-file exists (and no drain runs), a
 * worker holds its job before the first stage; a pause file that holds the
 * word "drain" holds it through a drain too (a job that will not finish
 * in time, for the --drain-timeout tests and drills); one that holds
 * "enqueue" also holds generate-3d between its two store writes (jobs.c).
 *
 * Shutdown (od_jobs_drain): the dispatch queue closes, and running jobs get
 * until a deadline to finish; past it od_workers_cancel makes the pipeline
 * stop at its next stage boundary (the progress callback answers "stop")
 * and the job ends failed with the reason. od_workers_wait waits for the
 * threads with a deadline, so a stage that never returns cannot hold the
 * process past --drain-timeout.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "jobs_internal.h"

typedef struct {
  od_workers *w;
  int k; /* index: its live slot, its owner name */
} worker;

struct od_workers {
  od_jobs *j;
  int n;
  pthread_t *threads; /* owned, n */
  worker *args;       /* owned, n */
  /* Atomic: /ready and ETAs read them on HTTP and worker threads while
   * start-up and the drain change them on the main thread. */
  _Atomic int nthreads;
  _Atomic int busy;
  _Atomic int cancel;       /* od_workers_cancel: running jobs stop */
  pthread_mutex_t alive_mu; /* guards alive */
  pthread_cond_t alive_cv;  /* on CLOCK_MONOTONIC: a thread ended */
  int alive;                /* threads started and not yet returned */
  pthread_mutex_t live_mu;  /* guards live */
  od_live *live;            /* owned, n; id "" when idle */
};

/* A running job, as on_progress sees it. */
typedef struct {
  od_workers *w;
  int k;
  const od_job_rec *r;
} run_ctx;

int od_pause_file_says(const char *pf, const char *word) {
  char buf[64];
  FILE *f = pf[0] ? fopen(pf, "r") : NULL;
  if (f == NULL)
    return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  return strstr(buf, word) != NULL;
}

static int paused(const od_jobs *j, const od_workers *w) {
  const char *pf = j->svc->cfg.pause_file;
  if (pf[0] == '\0' || w->cancel || access(pf, F_OK) != 0)
    return 0;
  /* "commit" holds the committer instead (commit.c). "drain": the hold
   * outlasts a drain. */
  if (od_pause_file_says(pf, "commit"))
    return 0;
  return !j->svc->draining || od_pause_file_says(pf, "drain");
}

static int on_progress(void *user, const orfeas_pl_progress *p) {
  run_ctx *rc = user;
  od_jobs *j = rc->w->j;
  od_metrics *m = &j->svc->m;
  /* Hold the job at its first stage while the pause file exists (never
   * during a drain, so SIGTERM still finishes). */
  if (p->stage == 0 && p->event == ORFEAS_PL_EVENT_BEGIN)
    while (paused(j, rc->w)) {
      struct timespec ts = {0, 20 * 1000000};
      nanosleep(&ts, NULL);
    }
  if (rc->w->cancel)
    return 1; /* the drain's deadline passed: the pipeline stops here */
  if (p->event == ORFEAS_PL_EVENT_END)
    od_eta_add_stage(j->eta, (int)p->stage, (double)p->duration_ns * 1e-9);
  double now = od_now();
  pthread_mutex_lock(&rc->w->live_mu);
  od_live *l = &rc->w->live[rc->k];
  l->stage_idx = (int)p->stage;
  snprintf(l->stage, sizeof l->stage, "%s", p->stage_name);
  l->stage_progress = p->progress;
  l->progress = p->overall * 100.0;
  if (p->event == ORFEAS_PL_EVENT_BEGIN)
    l->stage_t0 = now;
  double in_stage = now - l->stage_t0;
  pthread_mutex_unlock(&rc->w->live_mu);

  od_job_view v;
  memset(&v, 0, sizeof v);
  snprintf(v.id, sizeof v.id, "%s", rc->r->id);
  snprintf(v.stage, sizeof v.stage, "%s", p->stage_name);
  v.stage_progress = p->progress;
  v.progress = p->overall * 100.0;
  v.eta_seconds = od_eta_running(j->eta, (int)p->stage, p->progress, in_stage);
  if (p->event == ORFEAS_PL_EVENT_END)
    om_histogram_observe(
        om_family_histogram(m->stage_duration, OM_LABELS(p->stage_name)),
        (double)p->duration_ns * 1e-9);
  else
    od_jobs_publish(j, v.id, OD_WS_STAGE_CHANGE, od_job_stage_json(&v));
  om_counter_inc(m->ws_progress);
  od_jobs_publish(j, v.id, OD_WS_PROGRESS, od_job_progress_json(&v));
  return 0;
}

/* Marks the bottleneck stage: the largest mean over the window. */
static void update_bottleneck(od_jobs *j) {
  int best = od_eta_bottleneck(j->eta);
  for (int s = 0; s < ORFEAS_PL_STAGE_COUNT; s++)
    om_gauge_set(
        om_family_gauge(j->svc->m.bottleneck,
                        OM_LABELS(orfeas_pl_stage_name((orfeas_pl_stage)s))),
        s == best ? 1 : 0);
}

/* Copies where the job stands into its record, for the end transition. */
static void take_live(od_workers *w, int k, od_job_rec *r) {
  pthread_mutex_lock(&w->live_mu);
  const od_live *l = &w->live[k];
  snprintf(r->stage, sizeof r->stage, "%s", l->stage);
  r->progress = l->progress;
  r->stage_progress = l->stage_progress;
  pthread_mutex_unlock(&w->live_mu);
}

static void set_live(od_workers *w, int k, const char *id) {
  pthread_mutex_lock(&w->live_mu);
  od_live *l = &w->live[k];
  memset(l, 0, sizeof *l);
  snprintf(l->id, sizeof l->id, "%s", id);
  l->stage_idx = -1;
  snprintf(l->stage, sizeof l->stage, "%s", id[0] ? "starting" : "");
  l->stage_t0 = od_now();
  pthread_mutex_unlock(&w->live_mu);
}

/* Hands the end of run r to the committer: completed with model (taken),
 * or failed (model NULL). */
static void hand_over(od_workers *w, int k, od_job_rec *r, uint8_t *model,
                      size_t len, od_fail_reason why) {
  take_live(w, k, r);
  if (r->state == OD_JOB_COMPLETED) {
    r->progress = 100;
    snprintf(r->stage, sizeof r->stage, "completed");
  }
  od_end e = {.r = *r, .model = model, .model_len = len, .why = why};
  od_committer_push(w->j->committer, &e);
}

/* Ends the claimed job r as failed (the committer removes a previous
 * run's model of the same name once the failure is recorded). */
static void fail(od_workers *w, int k, od_job_rec *r, const char *msg,
                 int http_status, od_fail_reason why) {
  r->state = OD_JOB_FAILED;
  snprintf(r->error, sizeof r->error, "%s", msg);
  r->http_status = http_status;
  r->output_name[0] = '\0';
  r->output_bytes = 0;
  hand_over(w, k, r, NULL, 0, why);
}

static void run_job(od_workers *w, int k, od_job_rec *r) {
  od_jobs *j = w->j;
  od_metrics *m = &j->svc->m;
  double waited = r->t_started - r->t_queued;
  if (waited < 0)
    waited = 0; /* the wall clock stepped back */
  om_histogram_observe(m->queue_wait, waited);
  od_jobs_gauge_depth(j);
  od_log("job %s started waited=%.3fs", r->id, waited);
  set_live(w, k, r->id);

  /* The upload check's pixels, or the grid generate-3d made of them, when
   * the memo kept them (imgmemo.c): the image is then decoded once per
   * job; else the upload is read back. The job's input stays its stored
   * upload: the pixels are used only while that file is there (a job whose
   * upload is gone fails as it always did). */
  orfeas_pl_image px;
  orfeas_pl_prepared *prep;
  uint8_t *img = NULL;
  size_t len = 0;
  char up[PATH_MAX + 64];
  od_jobs_upload_path(j, r, up, sizeof up);
  int have_px = od_imgmemo_take(j->svc->imgmemo, r->image_sha256,
                                r->req.quality, &px, &prep);
  if (have_px) {
    om_gauge_set(m->image_memo_bytes,
                 (double)od_imgmemo_bytes(j->svc->imgmemo));
    struct stat st;
    if (stat(up, &st) != 0) {
      orfeas_pl_image_free(&px);
      orfeas_pl_prepared_free(prep);
      prep = NULL;
      have_px = 0;
    }
  }
  om_counter_inc(
      m->image_memo[have_px ? OD_MEMO_PIXELS_USED : OD_MEMO_PIXELS_DECODED]);
  if (!have_px && (img = od_file_read(up, &len)) == NULL) {
    int e = errno;
    if (od_errno_is_fd_exhaustion(e)) {
      od_metric_fd_exhausted(j->svc, OD_FD_JOB);
      fail(w, k, r,
           "the server is out of file descriptors (EMFILE/ENFILE); the "
           "image is kept: submit the generation again",
           503, OD_FAIL_INTERNAL);
    } else if (e == ENOENT) {
      fail(w, k, r, "the uploaded image is gone from the data dir", 500,
           OD_FAIL_INTERNAL);
    } else {
      char msg[160];
      snprintf(msg, sizeof msg, "the uploaded image cannot be read: %s",
               strerror(e));
      fail(w, k, r, msg, 500, OD_FAIL_STORAGE);
    }
    return;
  }
  orfeas_pl_options opt;
  orfeas_pl_options_init(&opt);
  opt.format = r->req.format;
  opt.mode = r->req.mode;
  opt.quality = r->req.quality;
  opt.width_mm = r->req.width;
  opt.height_mm = r->req.height;
  opt.depth_mm = r->req.depth;
  run_ctx rc = {.w = w, .k = k, .r = r};
  opt.progress = on_progress;
  opt.progress_user = &rc;
  orfeas_pl_result res;
  char msg[256];
  double t0 = od_now();
  orfeas_pl_code code =
      prep      ? orfeas_pl_run_prepared(&prep, &opt, &res, msg, sizeof msg)
      : have_px ? orfeas_pl_run_decoded(&px, &opt, &res, msg, sizeof msg)
                : orfeas_pl_run(img, len, &opt, &res, msg, sizeof msg);
  free(img);
  if (code == ORFEAS_PL_ECANCELLED && j->durable) {
    /* A durable store keeps the job: the worker hands its claim back
     * (PROCESSING -> QUEUED, fenced as the run's end would be: store.h),
     * and the job runs again ahead of the jobs queued after it: at the next
     * start (recover.c queues it in t_queued order), or in a cluster on the
     * next node that claims (its stream entry is taken first). A planned
     * stop does not lose accepted work, nor ask the client to submit it
     * again, nor count against the job's --max-attempts (the claim counted
     * this run, so the count goes back; otherwise a job longer than
     * --drain-timeout failed after that many rolling restarts), nor count
     * as a reclaimed run (orfeas_jobs_reclaimed_total: OrfeasJobsReclaimed
     * is for crashes and lost nodes, not for planned restarts). If the
     * write fails, the job stays processing, as a crash leaves it: the next
     * start or a lapsed lease runs it again, counted as a try. */
    orfeas_pl_result_free(&res);
    od_job_rec back = *r;
    back.state = OD_JOB_QUEUED;
    back.tries = r->tries > 0 ? r->tries - 1 : 0;
    snprintf(back.stage, sizeof back.stage, "queued");
    back.progress = back.stage_progress = 0;
    back.t_started = 0;
    od_store_rc brc = od_store_transition(
        j->store, &back, OD_STATE_BIT(OD_JOB_PROCESSING), r->attempt, NULL);
    od_log("job %s: still running at --drain-timeout (%gs): stopped; %s", r->id,
           j->svc->cfg.drain_timeout_s,
           brc == OD_STORE_OK
               ? "queued again, ahead of the jobs queued after it (not "
                 "counted as a try)"
               : "its claim could not be handed back: it runs again after "
                 "the restart or once its lease lapses, counted as a try");
    return;
  }
  if (code == ORFEAS_PL_ECANCELLED) {
    orfeas_pl_result_free(&res);
    snprintf(msg, sizeof msg,
             "service shutting down: the job was still running at "
             "--drain-timeout (%gs) and was cancelled; submit it again",
             j->svc->cfg.drain_timeout_s);
    fail(w, k, r, msg, 503, OD_FAIL_SHUTDOWN);
    return;
  }
  if (code != ORFEAS_PL_OK) {
    orfeas_pl_result_free(&res);
    int client = orfeas_pl_is_client_error(code);
    fail(w, k, r, msg, client ? 400 : 500,
         client ? OD_FAIL_DECODE : OD_FAIL_PIPELINE);
    update_bottleneck(j);
    return;
  }
  double total = od_now() - t0;
  od_eta_add_job(j->eta, total);
  om_histogram_observe(
      om_family_histogram(m->gen_duration,
                          OM_LABELS(orfeas_pl_format_name(r->req.format))),
      total);
  om_histogram_observe(m->quality_score, res.quality.score);
  if (res.quality.printable)
    om_counter_inc(m->printable);
  update_bottleneck(j);
  r->state = OD_JOB_COMPLETED;
  od_jobs_output_name(r, r->output_name, sizeof r->output_name);
  r->output_bytes = res.file.size;
  r->score = res.quality.score;
  snprintf(r->grade, sizeof r->grade, "%s", res.quality.grade);
  r->printable = res.quality.printable;
  /* The model's bytes go to the committer as they are (no copy). */
  uint8_t *model = res.file.data;
  size_t model_len = res.file.size;
  res.file.data = NULL;
  res.file.size = res.file.cap = 0;
  orfeas_pl_result_free(&res);
  hand_over(w, k, r, model, model_len, OD_FAIL_INTERNAL);
}

static void *worker_main(void *arg) {
  worker *me = arg;
  od_workers *w = me->w;
  od_jobs *j = w->j;
  /* Workers run at a lower priority (Linux nice is per thread): when the
   * pipeline saturates the cores, the HTTP threads and the WebSocket hub
   * still get a core at once, so health checks, scrapes and progress
   * events stay fast; the jobs lose only the time those take. */
  if (j->svc->cfg.worker_nice != 0 &&
      setpriority(PRIO_PROCESS, (id_t)gettid(), j->svc->cfg.worker_nice) != 0)
    od_logl(OD_LOG_WARN, "worker: cannot set nice %d: %s",
            j->svc->cfg.worker_nice, strerror(errno));
  char owner[16];
  snprintf(owner, sizeof owner, "w%d", me->k);
  char name[16]; /* top and perf show it */
  snprintf(name, sizeof name, "od-worker-%d", me->k);
  pthread_setname_np(pthread_self(), name);
  for (;;) {
    od_job_rec r;
    od_store_rc rc = od_store_claim(j->store, owner, -1, &r);
    if (rc == OD_STORE_CLOSED)
      break;
    if (rc != OD_STORE_OK) {
      /* A store that is down comes back: wait a little, then claim again. */
      om_counter_inc(j->claim_errors);
      od_logl(OD_LOG_WARN, "worker %s: claim: %s", owner,
              od_store_rc_message(rc));
      struct timespec ts = {0, 200 * 1000000};
      nanosleep(&ts, NULL);
      continue;
    }
    om_gauge_inc(j->svc->m.workers_busy);
    w->busy++;
    run_job(w, me->k, &r);
    set_live(w, me->k, "");
    w->busy--;
    om_gauge_dec(j->svc->m.workers_busy);
  }
  pthread_mutex_lock(&w->alive_mu);
  w->alive--;
  pthread_cond_broadcast(&w->alive_cv);
  pthread_mutex_unlock(&w->alive_mu);
  return NULL;
}

od_workers *od_workers_new(od_jobs *j, int n, char *err, size_t err_len) {
  od_workers *w = calloc(1, sizeof *w);
  if (w != NULL) {
    pthread_mutex_init(&w->live_mu, NULL);
    pthread_mutex_init(&w->alive_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->alive_cv, &ca);
    pthread_condattr_destroy(&ca);
    w->threads = calloc((size_t)n, sizeof *w->threads);
    w->args = calloc((size_t)n, sizeof *w->args);
    w->live = calloc((size_t)n, sizeof *w->live);
  }
  if (w == NULL || w->threads == NULL || w->args == NULL || w->live == NULL) {
    snprintf(err, err_len, "out of memory for %d workers", n);
    od_workers_free(w);
    return NULL;
  }
  w->j = j;
  w->n = n;
  return w;
}

int od_workers_start(od_workers *w, char *err, size_t err_len) {
  for (int i = 0; i < w->n; i++) {
    w->args[i] = (worker){.w = w, .k = i};
    pthread_mutex_lock(&w->alive_mu);
    w->alive++;
    pthread_mutex_unlock(&w->alive_mu);
    int rc = pthread_create(&w->threads[i], NULL, worker_main, &w->args[i]);
    if (rc != 0) {
      pthread_mutex_lock(&w->alive_mu);
      w->alive--;
      pthread_mutex_unlock(&w->alive_mu);
      snprintf(err, err_len, "cannot start worker %d: %s", i, strerror(rc));
      return -1;
    }
    w->nthreads++;
  }
  return 0;
}

int od_workers_wait(od_workers *w, double deadline) {
  struct timespec until;
  until.tv_sec = (time_t)deadline;
  until.tv_nsec = (long)((deadline - (double)until.tv_sec) * 1e9);
  pthread_mutex_lock(&w->alive_mu);
  while (w->alive > 0 && pthread_cond_timedwait(&w->alive_cv, &w->alive_mu,
                                                &until) != ETIMEDOUT)
    ;
  int left = w->alive;
  pthread_mutex_unlock(&w->alive_mu);
  if (left > 0)
    return left;
  od_workers_join(w); /* every thread has returned: no wait */
  return 0;
}

void od_workers_cancel(od_workers *w) { w->cancel = 1; }

void od_workers_join(od_workers *w) {
  for (int i = 0; i < w->nthreads; i++)
    pthread_join(w->threads[i], NULL);
  w->nthreads = 0;
}

void od_workers_free(od_workers *w) {
  if (w == NULL)
    return;
  pthread_mutex_destroy(&w->live_mu);
  pthread_mutex_destroy(&w->alive_mu);
  pthread_cond_destroy(&w->alive_cv);
  free(w->threads);
  free(w->args);
  free(w->live);
  free(w);
}

int od_workers_running(od_workers *w) { return w->nthreads; }
int od_workers_busy(od_workers *w) { return w->busy; }

int od_workers_live(od_workers *w, const char *id, od_live *out) {
  int found = 0;
  pthread_mutex_lock(&w->live_mu);
  for (int i = 0; i < w->n && !found; i++)
    if (strcmp(w->live[i].id, id) == 0) {
      *out = w->live[i];
      found = 1;
    }
  pthread_mutex_unlock(&w->live_mu);
  return found;
}
