/* commit.c: the committer, threads that record the end of every run.
 *
 * Why a thread: a finished run's model must be durable before the record
 * that points at it commits (fileio.c: write, fdatasync, rename, fsync of
 * the folder), and that commit is itself a synchronous one (store.h). Both
 * are waits on the disk, not work: a few ms per job on a virtual disk (a 2
 * MB model, docs/performance.md). Done on the worker they would idle a core
 * for each job; handed over, the worker claims its next job at once and
 * this thread waits for the disk meanwhile.
 *
 * For each end, in the order handed over:
 *   completed: room is made for the model in --max-store-mb (finished
 *              jobs changed longest ago are removed) and held until its
 *              end is recorded (an upload meanwhile cannot take the same
 *              room: the store counts the model only then), then it is
 *              written
 *              as DATA/outputs/<output_name>; on failure (a full disk) the
 *              run ends failed with the reason.
 *              Then the result cache takes the model (memory: the bytes,
 *              disk: a link to the file, no copy).
 *   the end is recorded (od_jobs_end: a fenced transition from processing,
 *              then metrics, log line, WebSocket event). If the store is
 *              down, a completion is turned into a failure ("the job store
 *              could not record its result": the client is told, and may
 *              submit it again) and the failure is retried every 200 ms
 *              until the store takes it. A drain waits 5 s for that at
 *              most: a job whose end could not be recorded stays
 *              processing in the store, and the next start runs it again.
 *              A DOWN may hide a write the store made (Redis ran it and
 *              the reply was lost): a retry refused after a DOWN looks the
 *              job up, and if it ended with this attempt, that end's
 *              metrics, log line and event are sent from the record.
 *
 * As many committer threads as workers: their syncs overlap (the model
 * files' own, and the store's group commit shares the WAL's between them),
 * so a slow disk costs latency, not throughput, up to --workers ends at
 * once. Ends of different jobs are independent; one job's end is recorded
 * by one thread.
 *
 * Bound: --workers ends wait at most (a worker with one more waits: a
 * stalled disk slows the workers down instead of filling memory with
 * models). orfeas_job_commit_queue_depth shows them, waiting and being
 * recorded.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "jobs_internal.h"

#define RETRY_MS 200
#define DRAIN_GIVE_UP_S 5.0

/* One committer thread: what it records now. */
typedef struct {
  od_committer *c;
  od_end cur;
  int busy;
} committer_thread;

struct od_committer {
  od_jobs *j;
  pthread_mutex_t mu;
  pthread_cond_t nonempty, nonfull;
  od_end *ring; /* owned; cap entries, len waiting from head */
  int cap, head, len;
  int nbusy; /* threads recording an end */
  int stopping;
  double give_up_by;       /* od_now(): ends not recorded by then are left */
  int n, started;          /* threads, threads running */
  pthread_t *th;           /* owned, n */
  committer_thread *slots; /* owned, n */
};

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static void set_depth(od_committer *c) {
  om_gauge_set(c->j->svc->m.commit_queue, (double)(c->len + c->nbusy));
}

/* Crash-drill hook: while --pause-file holds the word "commit", a
 * completed run waits here, room made for its model (and held) but the
 * model not yet written (durable_test.py's budget case uploads then). */
static void hold_before_write(od_jobs *j) {
  while (!j->svc->draining &&
         od_pause_file_says(j->svc->cfg.pause_file, "commit")) {
    struct timespec ts = {0, 20 * 1000000};
    nanosleep(&ts, NULL);
  }
}

/* A completed run: its model made durable, then cached. On failure the
 * run ends failed with the reason. */
static void store_model(od_committer *c, od_end *e) {
  od_jobs *j = c->j;
  char path[PATH_MAX + 128];
  od_jobs_output_path(j, e->r.output_name, path, sizeof path);
  /* Room first: the data dir never holds more than --max-store-mb. */
  od_jobs_fit_budget(j, e->model_len);
  hold_before_write(j);
  if (od_file_write_opt(path, e->model, e->model_len, j->durable) != 0) {
    int err = errno;
    od_jobs_dir_failed(j, err);
    e->why = od_fail_reason_of_errno(err);
    e->r.state = OD_JOB_FAILED;
    snprintf(e->r.error, sizeof e->r.error,
             "cannot store the model in the data dir: %s; submit it again",
             strerror(err));
    e->r.http_status = 500;
    e->r.output_name[0] = '\0';
    e->r.output_bytes = 0;
    free(e->model);
    e->model = NULL;
    return;
  }
  od_cache_meta meta = {.score = e->r.score, .printable = e->r.printable};
  snprintf(meta.grade, sizeof meta.grade, "%s", e->r.grade);
  od_cache_put(j->svc->cache, e->r.cache_key, &meta, e->model, e->model_len,
               path);
  e->model = NULL; /* the cache's now */
  od_jobs_update_cache_gauges(j);
}

/* After a write that got DOWN, the refusal of the next one (CONFLICT: the
 * job has ended; FENCED) may mean that the earlier write was made all the
 * same: the store ran it and its reply was lost (a Redis stalled past the
 * reply timeout). Nothing was sent for it then, so the job's subscribers
 * would wait for an end forever. 1 when the job has ended with e's attempt
 * (that write is in: its metrics, log line and terminal event are sent
 * now, from the stored record); 0 when not; -1 when the store cannot say
 * now. */
static int landed(od_jobs *j, const od_end *e, od_job_state *state) {
  od_job_rec got;
  od_store_rc rc = od_store_get(j->store, e->r.id, &got);
  if (rc == OD_STORE_DOWN)
    return -1;
  if (rc != OD_STORE_OK || got.attempt != e->r.attempt ||
      (got.state != OD_JOB_COMPLETED && got.state != OD_JOB_FAILED))
    return 0;
  od_log("job %s: its end was recorded by an earlier write whose answer the "
         "store lost: %s",
         e->r.id, od_job_state_name(got.state));
  od_jobs_ended(j, &got, e->why);
  *state = got.state;
  return 1;
}

/* Records e's end (see the top for the retries). */
static void record(od_committer *c, od_end *e) {
  od_jobs *j = c->j;
  char name[96], path[PATH_MAX + 128];
  od_jobs_output_name(&e->r, name, sizeof name);
  od_jobs_output_path(j, name, path, sizeof path);
  double give_up_at = 0;
  int was_down = 0;
  for (;;) {
    od_store_rc rc = od_jobs_end(j, &e->r, OD_STATE_BIT(OD_JOB_PROCESSING),
                                 e->r.attempt, e->why);
    od_job_state ended = e->r.state;
    if (was_down && (rc == OD_STORE_CONFLICT || rc == OD_STORE_FENCED)) {
      int in = landed(j, e, &ended);
      if (in > 0)
        rc = OD_STORE_OK;
      else if (in < 0)
        rc = OD_STORE_DOWN; /* ask again */
    }
    if (rc == OD_STORE_OK && ended == OD_JOB_FAILED)
      unlink(path); /* a previous run's model of the same name */
    if (rc != OD_STORE_DOWN)
      return;
    was_down = 1;
    if (e->r.state == OD_JOB_COMPLETED) {
      e->why = OD_FAIL_STORAGE;
      e->r.state = OD_JOB_FAILED;
      snprintf(e->r.error, sizeof e->r.error,
               "the job store could not record its result (is the disk "
               "full?); submit it again");
      e->r.http_status = 500;
      e->r.output_name[0] = '\0';
      e->r.output_bytes = 0;
    }
    pthread_mutex_lock(&c->mu);
    int stopping = c->stopping;
    pthread_mutex_unlock(&c->mu);
    if (stopping && give_up_at == 0) {
      pthread_mutex_lock(&c->mu);
      give_up_at = c->give_up_by;
      pthread_mutex_unlock(&c->mu);
    }
    if (stopping && od_now() >= give_up_at) {
      od_log("job %s: its end could not be recorded before the drain ended; "
             "it runs again at the next start",
             e->r.id);
      return;
    }
    sleep_ms(RETRY_MS);
  }
}

static void *committer_main(void *arg) {
  committer_thread *me = arg;
  od_committer *c = me->c;
  pthread_setname_np(pthread_self(), "od-commit");
  pthread_mutex_lock(&c->mu);
  for (;;) {
    while (c->len == 0 && !c->stopping)
      pthread_cond_wait(&c->nonempty, &c->mu);
    if (c->len == 0)
      break;
    me->cur = c->ring[c->head];
    c->head = (c->head + 1) % c->cap;
    c->len--;
    me->busy = 1;
    c->nbusy++;
    pthread_cond_signal(&c->nonfull);
    pthread_mutex_unlock(&c->mu);
    /* The room made for the model is held until its record commits. */
    uint64_t room = me->cur.r.state == OD_JOB_COMPLETED ? me->cur.model_len : 0;
    if (room > 0)
      store_model(c, &me->cur);
    record(c, &me->cur);
    od_jobs_budget_release(c->j, room);
    free(me->cur.model);
    pthread_mutex_lock(&c->mu);
    me->busy = 0;
    c->nbusy--;
    set_depth(c);
  }
  pthread_mutex_unlock(&c->mu);
  return NULL;
}

od_committer *od_committer_new(od_jobs *j, int bound, char *err,
                               size_t err_len) {
  od_committer *c = calloc(1, sizeof *c);
  if (c != NULL) {
    c->ring = calloc((size_t)bound, sizeof *c->ring);
    c->th = calloc((size_t)bound, sizeof *c->th);
    c->slots = calloc((size_t)bound, sizeof *c->slots);
  }
  if (c == NULL || c->ring == NULL || c->th == NULL || c->slots == NULL) {
    if (c != NULL) {
      free(c->ring);
      free(c->th);
      free(c->slots);
    }
    free(c);
    snprintf(err, err_len, "out of memory for the committer");
    return NULL;
  }
  c->j = j;
  c->cap = c->n = bound;
  pthread_mutex_init(&c->mu, NULL);
  pthread_cond_init(&c->nonempty, NULL);
  pthread_cond_init(&c->nonfull, NULL);
  return c;
}

int od_committer_start(od_committer *c, char *err, size_t err_len) {
  for (int i = 0; i < c->n; i++) {
    c->slots[i].c = c;
    int rc = pthread_create(&c->th[i], NULL, committer_main, &c->slots[i]);
    if (rc != 0) {
      snprintf(err, err_len, "cannot start committer %d: %s", i, strerror(rc));
      return -1;
    }
    c->started++;
  }
  return 0;
}

void od_committer_push(od_committer *c, od_end *e) {
  pthread_mutex_lock(&c->mu);
  while (c->len == c->cap)
    pthread_cond_wait(&c->nonfull, &c->mu);
  c->ring[(c->head + c->len) % c->cap] = *e;
  c->len++;
  e->model = NULL;
  set_depth(c);
  pthread_cond_signal(&c->nonempty);
  pthread_mutex_unlock(&c->mu);
}

static void live_of(const od_end *e, od_live *out) {
  memset(out, 0, sizeof *out);
  snprintf(out->id, sizeof out->id, "%s", e->r.id);
  out->stage_idx = ORFEAS_PL_STAGE_COUNT - 1;
  snprintf(out->stage, sizeof out->stage, "%s", e->r.stage);
  out->progress = e->r.progress;
  out->stage_progress = e->r.stage_progress;
  out->stage_t0 = od_now();
}

int od_committer_holds(od_committer *c, const char *id, od_live *out) {
  int found = 0;
  pthread_mutex_lock(&c->mu);
  for (int i = 0; i < c->n && !found; i++)
    if (c->slots[i].busy && strcmp(c->slots[i].cur.r.id, id) == 0) {
      live_of(&c->slots[i].cur, out);
      found = 1;
    }
  for (int i = 0; i < c->len && !found; i++) {
    const od_end *e = &c->ring[(c->head + i) % c->cap];
    if (strcmp(e->r.id, id) == 0) {
      live_of(e, out);
      found = 1;
    }
  }
  pthread_mutex_unlock(&c->mu);
  return found;
}

size_t od_committer_depth(od_committer *c) {
  pthread_mutex_lock(&c->mu);
  size_t n = (size_t)(c->len + c->nbusy);
  pthread_mutex_unlock(&c->mu);
  return n;
}

void od_committer_stop(od_committer *c) {
  od_committer_stop_by(c, od_now() + DRAIN_GIVE_UP_S);
}

void od_committer_stop_by(od_committer *c, double deadline) {
  if (c == NULL || !c->started)
    return;
  pthread_mutex_lock(&c->mu);
  c->stopping = 1;
  c->give_up_by = deadline;
  pthread_cond_broadcast(&c->nonempty);
  pthread_mutex_unlock(&c->mu);
  for (int i = 0; i < c->started; i++)
    pthread_join(c->th[i], NULL);
  c->started = 0;
}

void od_committer_free(od_committer *c) {
  if (c == NULL)
    return;
  od_committer_stop(c);
  for (int i = 0; i < c->len; i++)
    free(c->ring[(c->head + i) % c->cap].model);
  pthread_cond_destroy(&c->nonempty);
  pthread_cond_destroy(&c->nonfull);
  pthread_mutex_destroy(&c->mu);
  free(c->ring);
  free(c->th);
  free(c->slots);
  free(c);
}
