/* jobs_internal.h: what the jobs module's files share, and nothing else
 * includes. The module is six files around the job store (store.h):
 *
 *   jobs.c     the public od_jobs_* API (orfeasd.h): upload, generate, view,
 *              download, counts, drain; the job files; every state
 *              change's metrics, log line and WebSocket event (od_jobs_end)
 *   recover.c  start-up: the jobs the store kept, files no job owns
 *   worker.c   the worker pool: claim, run the pipeline, live progress
 *   commit.c   the committer: a finished job's model made durable, cached,
 *              and its end recorded, off the worker thread
 *   janitor.c  once a second: store and data-dir health, byte gauges, and
 *              the removal of jobs past --result-ttl
 *   eta.c      stage and job durations: ETAs, Retry-After, the bottleneck
 *
 * Locks: the store has its own; eta.c, worker.c's live-progress table and
 * commit.c's queue have one each, held only to copy. None of them is held
 * while the store, the hub, the cache or the metrics are called (commit.c
 * holds the cache's only inside od_cache_put).
 */
#ifndef ORFEAS_JOBS_INTERNAL_H
#define ORFEAS_JOBS_INTERNAL_H

#include <dirent.h>
#include <sys/stat.h>

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
/* The test and drill hook (--pause-file, worker.c): 1 when the file pf
 * exists and its first bytes hold word ("drain", "enqueue"). */
int od_pause_file_says(const char *pf, const char *word);
/* Waits for every thread (after od_store_close_queue). */
void od_workers_join(od_workers *w);
/* Waits for every thread until `deadline` (od_now() seconds): 0 when all
 * ended (and are joined), else how many still run. */
int od_workers_wait(od_workers *w, double deadline);
/* Running jobs stop at their next stage boundary and end failed. */
void od_workers_cancel(od_workers *w);
void od_workers_free(od_workers *w);
int od_workers_running(od_workers *w);
int od_workers_busy(od_workers *w);
/* 1 and *out filled when job id is running on a worker. */
int od_workers_live(od_workers *w, const char *id, od_live *out);

/* ---- commit.c ------------------------------------------------------------ */

typedef struct od_committer od_committer;

/* A finished run, as a worker hands it over. */
typedef struct {
  od_job_rec r;   /* the end to record: COMPLETED (output_name set) or
                     FAILED, fenced by r.attempt */
  uint8_t *model; /* owned: a completed run's model, NULL otherwise */
  size_t model_len;
  od_fail_reason why; /* a failed run's reason (the metric's label) */
} od_end;

/* bound: ends waiting at most (a worker handing over one more waits). */
od_committer *od_committer_new(od_jobs *j, int bound, char *err,
                               size_t err_len);
int od_committer_start(od_committer *c, char *err, size_t err_len);
/* Takes e (and e->model); waits while `bound` ends wait. Any thread. */
void od_committer_push(od_committer *c, od_end *e);
/* 1 and *out (the stage and progress the run ended with) when the end of
 * job id is waiting or being recorded. */
int od_committer_holds(od_committer *c, const char *id, od_live *out);
size_t od_committer_depth(od_committer *c);
/* Records every end handed over, then stops the thread (the drain). */
void od_committer_stop(od_committer *c);
/* The same, giving up retrying ends the store refuses at `deadline`
 * (od_now() seconds; --drain-timeout): they run again at the next start. */
void od_committer_stop_by(od_committer *c, double deadline);
void od_committer_free(od_committer *c);

/* ---- janitor.c ----------------------------------------------------------- */

typedef struct od_janitor od_janitor;

od_janitor *od_janitor_new(od_jobs *j);
int od_janitor_start(od_janitor *k, char *err, size_t err_len);
void od_janitor_stop(od_janitor *k);
void od_janitor_free(od_janitor *k);
/* One pass (the thread runs it every second; start-up once): store ping,
 * data-dir probe, byte gauges, removal of expired jobs; with a shared
 * store, now and then the orphan sweep. */
void od_jobs_housekeep(od_jobs *j);
/* orfeas_queue_depth from one read of the store's figures; left out of
 * /metrics (unset) when the store cannot answer, never a stale or made-up
 * 0 (janitor.c). */
void od_jobs_gauge_depth(od_jobs *j);

/* Both in one read of the store (the cluster's refresher, fanout.c):
 * OD_STORE_OK (*v the job) or OD_STORE_GONE (*v its removal, as
 * od_jobs_gone), else OD_STORE_NOT_FOUND or OD_STORE_DOWN (the read
 * failed: Redis slow past its command timeout, or answering an error). */
od_store_rc od_jobs_current(od_jobs *j, const char *id, od_job_view *v);

/* ---- orphans.c ----------------------------------------------------------- */

/* A sweep of the shared data dir in progress (the janitor's). */
typedef struct {
  int running;
  DIR *dir;       /* owned: the folder being read, NULL between folders */
  int which;      /* 0 uploads/, 1 outputs/ */
  int budget;     /* removals left */
  uint64_t bytes; /* removed */
  double older;   /* od_wall() cut-off */
} od_orphan_sweep;
/* Removes the files of the shared data dir that no job owns, older than
 * --orphan-age (at most 1000 a sweep), reading a slice of names a call: 1
 * while the sweep is not through (call again), 0 when it is. */
int od_jobs_sweep_orphans(od_jobs *j);
/* Ends a sweep in progress (closes its folder). */
void od_jobs_sweep_orphans_stop(od_jobs *j);
/* When a file of the data dir was last written or given a name (the later
 * of its mtime and its ctime): what the sweep ages it from. */
double od_orphan_time(const struct stat *st);

/* ---- fanout.c (issue #15) ------------------------------------------------ */

typedef struct od_fanout od_fanout;

od_fanout *od_fanout_new(od_jobs *j);
/* Starts the refresher and the store's listener. */
int od_fanout_start(od_fanout *f, char *err, size_t err_len);
/* From now on nothing reaches the hub (idempotent). */
void od_fanout_quiet(od_fanout *f);
/* After the store is closed (its listener calls into f). */
void od_fanout_free(od_fanout *f);
/* 1 and *out (stage, progress, stage_progress, stage_t0; stage_idx -1)
 * when a job running on another node sent progress; f may be NULL. */
int od_fanout_live(od_fanout *f, const char *id, od_live *out);

/* ---- jobs.c: shared with worker.c, commit.c, janitor.c ------------------- */

#define OD_GEN_STRIPES 16

struct od_jobs {
  od_service *svc;
  od_store *store;         /* owned */
  od_eta *eta;             /* owned */
  od_workers *workers;     /* owned */
  od_committer *committer; /* owned */
  od_janitor *janitor;     /* owned */
  od_fanout *fanout;       /* owned; NULL without an event bus */
  /* Held by an upload while it makes room (evicts) and inserts, so two
   * uploads do not evict for the same room. */
  pthread_mutex_t admit_mu;
  /* generate-3d of one job id at a time in this process (jobs.c: a cache
   * hit is decided and recorded without a queued commit first). */
  pthread_mutex_t gen_mu[OD_GEN_STRIPES];
  uint64_t store_cap; /* --max-store-mb in bytes */
  /* Room made for models not yet recorded (od_jobs_fit_budget): a model
   * counts in the store's bytes only once its record commits, so without
   * this an upload admitted meanwhile would take the same room. Under
   * admit_mu. */
  uint64_t reserved;
  /* Files are synced only for a store that survives the process: with
   * memory: nothing points at them after a restart (recover.c removes
   * them), so their syncs would buy nothing. */
  int durable;
  char dir_uploads[PATH_MAX], dir_outputs[PATH_MAX];
  /* The store's call metrics, by od_store_op (on_store_op). */
  om_histogram *op_duration[OD_STORE_OP_COUNT];
  om_counter *op_errors[OD_STORE_OP_COUNT];
  om_counter *claim_errors;
  int64_t seen_reclaimed, seen_fenced; /* janitor: store counts added */
  double t_orphans;        /* janitor: the last sweep's start (od_now) */
  od_orphan_sweep orphans; /* janitor: the sweep in progress */
  double t_stranded;       /* janitor: the last requeue_stranded (od_now) */
  om_counter *orphans_removed[2]; /* {dir}: uploads, outputs */
  /* Health, refreshed by the janitor (and a failed write). */
  _Atomic int store_up;
  _Atomic int dir_writable;
  _Atomic uint64_t dir_free;
};

/* recover.c: settles what the store kept from a previous run (metrics,
 * completed jobs whose model is missing), then removes the files in
 * uploads/ and outputs/ that no job owns. 0, or -1 with err filled. */
int od_jobs_recover(od_jobs *j, char *err, size_t err_len);

/* Why a job is removed (its tombstone, the 410's message) and the label
 * of orfeas_jobs_removed_total. */
typedef enum { OD_RM_EXPIRED, OD_RM_SPACE, OD_RM_COUNT } od_rm;
/* Removes a job chosen by sel with the reason of `why` (its tombstone),
 * then its files; counts it. The store's rc. */
od_store_rc od_jobs_remove(od_jobs *j, od_evict_sel *sel, od_rm why);
/* Removes finished jobs (changed longest ago first) until uploads +
 * models + extra bytes fit in --max-store-mb, and holds the extra bytes
 * for a model about to be stored until od_jobs_budget_release (after its
 * record's commit). When only active or held jobs are left it leaves it
 * at that (a model is never refused for space it already holds in
 * memory). extra 0: brings the data dir back within the budget (start-up
 * after a lowered --max-store-mb, the janitor's tick). */
void od_jobs_fit_budget(od_jobs *j, uint64_t extra);
void od_jobs_budget_release(od_jobs *j, uint64_t extra);
/* Notes that a write in the data dir failed with errno e: the data dir is
 * not writable (/ready 503) until the janitor's probe succeeds again. */
void od_jobs_dir_failed(od_jobs *j, int e);

/* DATA/uploads/<id>.<ext> and DATA/outputs/<name>. */
void od_jobs_upload_path(const od_jobs *j, const od_job_rec *r, char *out,
                         size_t len);
void od_jobs_output_path(const od_jobs *j, const char *name, char *out,
                         size_t len);
/* model_<id>.<format> of the record's parameters. */
void od_jobs_output_name(const od_job_rec *r, char *out, size_t len);
/* Ends a job: writes r (state COMPLETED or FAILED) if the stored state is
 * in `from` and, with fence > 0, the stored attempt is fence; then, only
 * when written, the metrics (a failure counted with `why`), the log line
 * and the terminal event. Returns
 * the store's rc (FENCED: a newer attempt owns the job; nothing is sent). */
od_store_rc od_jobs_end(od_jobs *j, od_job_rec *r, unsigned from, int fence,
                        od_fail_reason why);
/* What od_jobs_end does once its write is in: the metrics, the log line
 * and the terminal event of r, an ended record as stored (the committer
 * calls it when a write whose reply was lost turns out to have been made). */
void od_jobs_ended(od_jobs *j, const od_job_rec *r, od_fail_reason why);
/* Queues an event for the job's subscribers (adds the timestamp; steals
 * data). */
void od_jobs_publish(od_jobs *j, const char *id, od_ws_event ev, json_t *data);
void od_jobs_update_cache_gauges(od_jobs *j);

#endif
