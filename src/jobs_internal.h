/* jobs_internal.h: what the jobs module's files share, and nothing else
 * includes. The module is three files around the job store (store.h):
 *
 *   jobs.c    the public od_jobs_* API (orfeasd.h): upload, generate, view,
 *             download, counts, drain; the job files; every state change's
 *             metrics, log line and WebSocket event (od_jobs_end)
 *   worker.c  the worker pool: claim, run the pipeline, live progress
 *   eta.c     stage and job durations: ETAs, Retry-After, the bottleneck
 *
 * Locks: the store has its own; eta.c and worker.c's live-progress table
 * have one each, held only to copy numbers. None of them is held while the
 * store, the hub, the cache or the metrics are called.
 */
#ifndef ORFEAS_JOBS_INTERNAL_H
#define ORFEAS_JOBS_INTERNAL_H

#include "store.h"

/* ---- eta.c --------------------------------------------------------------- */

typedef struct od_eta od_eta;

od_eta *od_eta_new(void);
void od_eta_free(od_eta *e);
/* A finished stage's and a finished job's duration. */
void od_eta_add_stage(od_eta *e, int stage, double seconds);
void od_eta_add_job(od_eta *e, double seconds);
/* Seconds a running job still needs: in stage (-1 before the first), its
 * progress there (0..1), and the seconds spent there so far. */
double od_eta_running(od_eta *e, int stage, double stage_progress,
                      double in_stage_s);
/* Seconds until a job at `position` in line is done, with `workers`. */
double od_eta_queued(od_eta *e, int position, int workers);
/* Seconds until a queue of `depth` has likely drained by one. */
double od_eta_drain_one(od_eta *e, size_t depth, int workers);
/* The stage with the largest mean duration. */
int od_eta_bottleneck(od_eta *e);

/* ---- worker.c ------------------------------------------------------------ */

typedef struct od_workers od_workers;

/* Where a running job is, between two store writes (never stored). */
typedef struct {
  char id[37];
  int stage_idx; /* -1 before the first stage */
  char stage[32];
  double progress;       /* 0..100 */
  double stage_progress; /* 0..1 */
  double stage_t0;       /* od_now() when the stage began */
} od_live;

od_workers *od_workers_new(od_jobs *j, int n, char *err, size_t err_len);
/* Starts the threads; each claims from the store until its queue closes. */
int od_workers_start(od_workers *w, char *err, size_t err_len);
/* Waits for every thread (after od_store_close_queue). */
void od_workers_join(od_workers *w);
void od_workers_free(od_workers *w);
int od_workers_running(od_workers *w);
int od_workers_busy(od_workers *w);
/* 1 and *out filled when job id is running on a worker. */
int od_workers_live(od_workers *w, const char *id, od_live *out);

/* ---- jobs.c: shared with worker.c ---------------------------------------- */

struct od_jobs {
  od_service *svc;
  od_store *store;     /* owned */
  od_eta *eta;         /* owned */
  od_workers *workers; /* owned */
  /* Held by an upload while it makes room (evicts) and inserts, so two
   * uploads do not evict for the same room. */
  pthread_mutex_t admit_mu;
  uint64_t store_cap; /* --max-store-mb in bytes */
  char dir_uploads[PATH_MAX], dir_outputs[PATH_MAX];
};

/* DATA/uploads/<id>.<ext> and DATA/outputs/<name>. */
void od_jobs_upload_path(const od_jobs *j, const od_job_rec *r, char *out,
                         size_t len);
void od_jobs_output_path(const od_jobs *j, const char *name, char *out,
                         size_t len);
/* model_<id>.<format> of the record's parameters. */
void od_jobs_output_name(const od_job_rec *r, char *out, size_t len);
/* Ends a job: writes r (state COMPLETED or FAILED) if the stored state is
 * in `from` and, with fence > 0, the stored attempt is fence; then, only
 * when written, the metrics, the log line and the terminal event. Returns
 * the store's rc (FENCED: a newer attempt owns the job; nothing is sent). */
od_store_rc od_jobs_end(od_jobs *j, od_job_rec *r, unsigned from, int fence);
/* Queues an event for the job's subscribers (adds the timestamp; steals
 * data). */
void od_jobs_publish(od_jobs *j, const char *id, od_ws_event ev, json_t *data);
void od_jobs_update_cache_gauges(od_jobs *j);

#endif
