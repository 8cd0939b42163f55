/* fanout.c: a cluster's job events on this node (issue #15).
 *
 * With a store that has an event bus (redis), a job's events do not go to
 * this node's WebSocket hub directly: od_jobs_publish hands them to the
 * bus, and every node, this one included, gets them back through the
 * store's listener thread, which forwards each into its own hub
 * (od_hub_publish: a copy into the hub's outbox, no I/O). A client
 * connected to node A so sees every event of a job that runs on node B.
 *
 * The bus delivers at most once, so the job's record is the truth, sent
 * again when it matters, by the refresher thread here (the hub never reads
 * the store: a Redis round trip would stall every client):
 *  - a subscribe (ws.c asks od_jobs_refresh for the job): its current
 *    state, whatever happened before;
 *  - after the listener (re)connected (messages may have been lost): the
 *    current state of every job this node's clients follow (the hub walks
 *    its subscriptions at od_hub_resync and asks for each);
 *  - a job the store changed without an event (failed after being lost
 *    --max-attempts times): the store publishes "look it up".
 * The listener also keeps the last stage and progress of each running job
 * (LIVE_SLOTS, direct-mapped: a collision forgets the older job, which then
 * shows "starting"), so a job-status on this node of a job running on
 * another shows where it stands (od_fanout_live, jobs.c's view).
 * The refresher's queue is bounded (REFRESH_MAX). A job already waiting in
 * it is not queued again: its refresh, sent to every subscriber of the
 * job, reads the record when it runs, after the new subscribe. Else one
 * client looping subscribe and unsubscribe on one job filled the queue,
 * and other clients' late subscribes were dropped: they never heard their
 * job's end. Each entry also names the connection that asked (its owner),
 * and one connection may have at most --ws-max-subscriptions refreshes
 * waiting: a client that follows its jobs never needs more (each of its
 * subscriptions waits at most once, a resync included), while one looping
 * subscribe and unsubscribe over distinct ids (any random UUID does) could
 * otherwise fill the queue faster than the refresher drains it, one Redis
 * round trip per id. The count is taken in the scan for a duplicate the
 * queue already made, under the lock, so the hub learns the answer at once
 * and never reads the store. A refresh refused, past the connection's share
 * or for a full queue, is not silent: the caller (ws.c) answers the client
 * with an error naming the job (subscribe again), and it is counted in
 * orfeas_websocket_refreshes_refused_total{reason}. Nor is a read that
 * fails (Redis slower than its command timeout, or answering an error):
 * the refresher sends the same error to every subscriber of the job on
 * this node, through the hub, and counts it once (reason "store"); else a
 * subscriber to a job that had already ended would wait for its end for
 * ever.
 *
 * Shutdown: od_fanout_quiet (the drain, or before the hub is freed) stops
 * both threads' forwarding under the lock they forward under, so neither
 * touches the hub after; the listener itself ends with the store.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs_internal.h"

#define REFRESH_MAX 1024
#define LIVE_SLOTS 1024 /* jobs running elsewhere whose progress is kept */

/* Where a job running on another node stands, from its events. */
typedef struct {
  char id[37]; /* "" when free */
  od_live l;
} remote;

/* A refresh waiting: the job, and the connection that asked (0: none). */
typedef struct {
  char id[37];
  uint64_t owner;
} waiting;

struct od_fanout {
  od_jobs *j;
  pthread_mutex_t mu; /* the queue, quiet; held while forwarding */
  pthread_cond_t cv;
  waiting q[REFRESH_MAX];
  int head, n;
  int quiet, started;
  pthread_t th;
  remote live[LIVE_SLOTS]; /* direct-mapped by the id's hash */
};

static remote *slot_of(od_fanout *f, const char *id) {
  uint32_t h = 2166136261u; /* FNV-1a */
  for (const char *p = id; *p; p++)
    h = (h ^ (uint8_t)*p) * 16777619u;
  return &f->live[h & (LIVE_SLOTS - 1)];
}

/* Under f->mu: a progress or stage event kept as the job's live state (a
 * job-status on this node shows it), an end forgets it. */
static void note_live(od_fanout *f, const char *id, od_ws_event ev,
                      const char *text) {
  remote *s = slot_of(f, id);
  if (ev == OD_WS_COMPLETE || ev == OD_WS_ERROR_EVENT) {
    if (strcmp(s->id, id) == 0)
      s->id[0] = '\0';
    return;
  }
  if (ev != OD_WS_PROGRESS && ev != OD_WS_STAGE_CHANGE)
    return;
  json_t *root = json_loads(text, 0, NULL);
  json_t *data = json_object_get(root, "data");
  const char *stage = json_string_value(json_object_get(data, "stage"));
  if (stage != NULL) {
    if (strcmp(s->id, id) != 0) {
      memset(s, 0, sizeof *s);
      snprintf(s->id, sizeof s->id, "%s", id);
      s->l.stage_idx = -1;
      s->l.stage_t0 = od_now();
    }
    if (strcmp(s->l.stage, stage) != 0)
      s->l.stage_t0 = od_now();
    snprintf(s->l.stage, sizeof s->l.stage, "%s", stage);
    s->l.stage_progress =
        json_number_value(json_object_get(data, "stage_progress"));
    json_t *p = json_object_get(data, "progress");
    if (p != NULL)
      s->l.progress = json_number_value(p);
  }
  json_decref(root);
}

int od_fanout_live(od_fanout *f, const char *id, od_live *out) {
  if (f == NULL)
    return 0;
  pthread_mutex_lock(&f->mu);
  remote *s = slot_of(f, id);
  int found = strcmp(s->id, id) == 0;
  if (found) {
    *out = s->l;
    snprintf(out->id, sizeof out->id, "%s", id);
  }
  pthread_mutex_unlock(&f->mu);
  return found;
}

/* Under f->mu: into this node's hub, unless quiet. */
static void forward(od_fanout *f, const char *id, od_ws_event ev,
                    const char *text) {
  if (!f->quiet)
    od_hub_publish(f->j->svc->hub, id, ev, text);
}

static void on_event(void *u, const char *id, int ev, const char *text) {
  od_fanout *f = u;
  if (ev == -1) {
    od_jobs_refresh(f->j, id, 0, 0);
    return;
  }
  if (ev < 0 || ev >= OD_WS_EVENT_COUNT)
    return;
  pthread_mutex_lock(&f->mu);
  note_live(f, id, (od_ws_event)ev, text);
  forward(f, id, (od_ws_event)ev, text);
  pthread_mutex_unlock(&f->mu);
}

static void on_resync(void *u) {
  od_fanout *f = u;
  pthread_mutex_lock(&f->mu);
  if (!f->quiet)
    od_hub_resync(f->j->svc->hub);
  pthread_mutex_unlock(&f->mu);
}

const char *const OD_REFRESH_NAMES[OD_REFRESH_N] = {"asked", "client", "full",
                                                    "store"};

od_refresh od_jobs_refresh(od_jobs *j, const char *id, uint64_t owner,
                           int max_waiting) {
  od_fanout *f = j->fanout;
  if (f == NULL)
    return OD_REFRESH_ASKED;
  pthread_mutex_lock(&f->mu);
  int mine = 0;
  for (int i = 0; i < f->n; i++) {
    const waiting *w = &f->q[(f->head + i) % REFRESH_MAX];
    if (strcmp(w->id, id) == 0) {
      pthread_mutex_unlock(&f->mu); /* waiting already (see the top) */
      return OD_REFRESH_ASKED;
    }
    mine += owner != 0 && w->owner == owner;
  }
  od_refresh r = OD_REFRESH_ASKED;
  if (f->quiet) {
    /* Stopping: nothing to tell, the hub closes every client. */
  } else if (owner != 0 && mine >= max_waiting) {
    r = OD_REFRESH_CLIENT;
  } else if (f->n >= REFRESH_MAX) {
    r = OD_REFRESH_FULL;
  } else {
    waiting *w = &f->q[(f->head + f->n) % REFRESH_MAX];
    snprintf(w->id, sizeof w->id, "%s", id);
    w->owner = owner;
    f->n++;
    pthread_cond_signal(&f->cv);
  }
  pthread_mutex_unlock(&f->mu);
  if (r != OD_REFRESH_ASKED)
    om_counter_inc(j->svc->m.ws_refused[r]);
  return r;
}

/* A read of the job's state that failed (OD_STORE_DOWN: Redis slow past
 * its command timeout, unreachable, or answering an error): the error
 * frame a refused refresh sends (ws.c ask_current), for every subscriber
 * of the job here. */
static char *store_failed(od_fanout *f, const char *id) {
  om_counter_inc(f->j->svc->m.ws_refused[OD_REFRESH_STORE]);
  json_t *data = od_ws_error_data(
      OD_WSE_RESUBSCRIBE,
      "no current state sent for this job: the job store did not answer "
      "the read in time, or answered an error; subscribe again later",
      id);
  if (data == NULL)
    return NULL;
  json_object_set_new(data, "timestamp", json_real(od_wall()));
  return od_ws_event_json(OD_WS_ERROR, data);
}

/* The refresher: a job's current state, read from the store, as the event
 * a subscribe sends (job_update, or its end), into the hub; or, when the
 * read failed, an error saying to subscribe again. */
static void *refresher(void *arg) {
  od_fanout *f = arg;
  pthread_setname_np(pthread_self(), "od-fanout");
  pthread_mutex_lock(&f->mu);
  for (;;) {
    while (f->n == 0 && !f->quiet)
      pthread_cond_wait(&f->cv, &f->mu);
    if (f->quiet)
      break;
    char id[37];
    memcpy(id, f->q[f->head].id, sizeof id);
    f->head = (f->head + 1) % REFRESH_MAX;
    f->n--;
    pthread_mutex_unlock(&f->mu);
    /* One read: a second after a failed one (od_jobs_view, then
     * od_jobs_gone) would wait out Redis's timeout twice. */
    od_job_view v;
    od_ws_event ev = OD_WS_ERROR;
    json_t *data = NULL;
    char *text = NULL;
    od_store_rc rc = od_jobs_current(f->j, id, &v);
    if (rc == OD_STORE_OK || rc == OD_STORE_GONE) /* a removal: its error */
      data = od_job_event_json(&v, &ev);
    if (data != NULL) {
      json_object_set_new(data, "timestamp", json_real(od_wall()));
      text = od_ws_event_json(ev, data); /* takes data */
    } else if (rc == OD_STORE_DOWN) {
      ev = OD_WS_ERROR;
      text = store_failed(f, id);
    } /* no such job: nothing to say, as on one node */
    pthread_mutex_lock(&f->mu);
    if (text != NULL) {
      forward(f, id, ev, text);
      free(text);
    }
  }
  pthread_mutex_unlock(&f->mu);
  return NULL;
}

od_fanout *od_fanout_new(od_jobs *j) {
  od_fanout *f = calloc(1, sizeof *f);
  if (f == NULL)
    return NULL;
  f->j = j;
  pthread_mutex_init(&f->mu, NULL);
  pthread_cond_init(&f->cv, NULL);
  return f;
}

int od_fanout_start(od_fanout *f, char *err, size_t err_len) {
  int rc = pthread_create(&f->th, NULL, refresher, f);
  if (rc != 0) {
    snprintf(err, err_len, "cannot start the event fan-out: %s", strerror(rc));
    return -1;
  }
  f->started = 1;
  od_store_listener l = {.on_event = on_event, .on_resync = on_resync, .u = f};
  return od_store_listen(f->j->store, &l, err, err_len);
}

void od_fanout_quiet(od_fanout *f) {
  if (f == NULL)
    return;
  pthread_mutex_lock(&f->mu);
  f->quiet = 1;
  pthread_cond_signal(&f->cv);
  pthread_mutex_unlock(&f->mu);
  if (f->started)
    pthread_join(f->th, NULL);
  f->started = 0;
}

void od_fanout_free(od_fanout *f) {
  if (f == NULL)
    return;
  od_fanout_quiet(f);
  pthread_cond_destroy(&f->cv);
  pthread_mutex_destroy(&f->mu);
  free(f);
}
