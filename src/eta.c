/* eta.c: how long jobs take, from the last ETA_WINDOW of each.
 *
 * Every pipeline stage keeps its last 100 durations, and whole jobs theirs.
 * A running job's ETA is what its current stage still needs by that stage's
 * mean (never below 0) plus the means of the stages after it; a queued
 * job's is the mean job time scaled by its place in line over the number of
 * workers; the 429's Retry-After is the time for the queue to drain by one.
 * The same window picks the bottleneck stage (the largest mean,
 * orfeas_pipeline_bottleneck_stage).
 *
 * Process-local on purpose: it describes this machine's speed. One mutex;
 * every call is short and calls nothing else.
 */
#include <stdlib.h>

#include "jobs_internal.h"

#define ETA_WINDOW 100
/* Before anything finished: the stages are tens of ms (docs/performance.md). */
#define FIRST_GUESS_S 0.05

typedef struct {
  double v[ETA_WINDOW];
  int n, pos;
} window;

struct od_eta {
  pthread_mutex_t mu;
  window stage[ORFEAS_PL_STAGE_COUNT];
  window job;
};

static void add(window *w, double v) {
  w->v[w->pos] = v;
  w->pos = (w->pos + 1) % ETA_WINDOW;
  if (w->n < ETA_WINDOW)
    w->n++;
}

static double mean(const window *w, double none) {
  if (w->n == 0)
    return none;
  double sum = 0;
  for (int i = 0; i < w->n; i++)
    sum += w->v[i];
  return sum / w->n;
}

static double job_mean(const od_eta *e) {
  return mean(&e->job, FIRST_GUESS_S * ORFEAS_PL_STAGE_COUNT);
}

od_eta *od_eta_new(void) {
  od_eta *e = calloc(1, sizeof *e);
  if (e != NULL)
    pthread_mutex_init(&e->mu, NULL);
  return e;
}

void od_eta_free(od_eta *e) {
  if (e == NULL)
    return;
  pthread_mutex_destroy(&e->mu);
  free(e);
}

void od_eta_add_stage(od_eta *e, int stage, double seconds) {
  if (stage < 0 || stage >= ORFEAS_PL_STAGE_COUNT)
    return;
  pthread_mutex_lock(&e->mu);
  add(&e->stage[stage], seconds);
  pthread_mutex_unlock(&e->mu);
}

void od_eta_add_job(od_eta *e, double seconds) {
  pthread_mutex_lock(&e->mu);
  add(&e->job, seconds);
  pthread_mutex_unlock(&e->mu);
}

double od_eta_running(od_eta *e, int stage, double stage_progress,
                      double in_stage_s) {
  pthread_mutex_lock(&e->mu);
  double rem = 0;
  if (stage >= 0 && stage < ORFEAS_PL_STAGE_COUNT) {
    if (stage_progress < 1) {
      double left = mean(&e->stage[stage], FIRST_GUESS_S) - in_stage_s;
      rem += left > 0 ? left : 0;
    }
    for (int k = stage + 1; k < ORFEAS_PL_STAGE_COUNT; k++)
      rem += mean(&e->stage[k], FIRST_GUESS_S);
  } else {
    rem = job_mean(e);
  }
  pthread_mutex_unlock(&e->mu);
  return rem;
}

double od_eta_queued(od_eta *e, int position, int workers) {
  pthread_mutex_lock(&e->mu);
  double t =
      job_mean(e) * (1.0 + (double)position / (workers > 0 ? workers : 1));
  pthread_mutex_unlock(&e->mu);
  return t;
}

double od_eta_drain_one(od_eta *e, size_t depth, int workers) {
  pthread_mutex_lock(&e->mu);
  double t = job_mean(e) * (double)(depth + 1) / (workers > 0 ? workers : 1);
  pthread_mutex_unlock(&e->mu);
  return t;
}

int od_eta_bottleneck(od_eta *e) {
  int best = 0;
  double best_mean = 0;
  pthread_mutex_lock(&e->mu);
  for (int s = 0; s < ORFEAS_PL_STAGE_COUNT; s++) {
    double m = mean(&e->stage[s], FIRST_GUESS_S);
    if (s == 0 || m > best_mean) {
      best = s;
      best_mean = m;
    }
  }
  pthread_mutex_unlock(&e->mu);
  return best;
}
