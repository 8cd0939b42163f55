/* gpu.c: start, stop and summary of the GPU manager. */
#include "gpu_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double gpu_now_mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double gpu_now_wall(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void gpu_log(const orfeas_gpu *g, const char *fmt, ...) {
  char line[320];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (g->opts.log)
    g->opts.log(g->opts.log_user, line);
  else
    fprintf(stderr, "gpu: %s\n", line);
}

static void log_adapter(void *user, const char *line) {
  gpu_log(user, "%s", line);
}

void gpu_count_error(orfeas_gpu *g, const char *call, nvmlReturn_t rc) {
  const char *error = nvml_code_name(rc);
  pthread_mutex_lock(&g->mu);
  unsigned i = 0;
  while (i < g->nerrs && (strcmp(g->errs[i].call, call) != 0 ||
                          strcmp(g->errs[i].error, error) != 0))
    i++;
  if (i == g->nerrs && g->nerrs < GPU_ERRS_MAX)
    g->errs[g->nerrs++] = (struct gpu_error_count){call, error, 0};
  if (i < g->nerrs)
    g->errs[i].n++;
  pthread_mutex_unlock(&g->mu);
}

/* Undoes what start did, in reverse; for a failed start and for a stop
 * whose sampler has ended (or never started). */
static void gpu_free(orfeas_gpu *g) {
  gpu_metrics_unregister(g);
  if (g->loaded)
    nvml_close(&g->lib);
  pthread_cond_destroy(&g->wake);
  pthread_mutex_destroy(&g->mu);
  free(g);
}

orfeas_gpu *orfeas_gpu_start(om_registry *reg, const orfeas_gpu_opts *opts,
                             char *err, size_t errlen) {
  orfeas_gpu *g = calloc(1, sizeof *g);
  if (g == NULL) {
    snprintf(err, errlen, "out of memory starting the GPU manager");
    return NULL;
  }
  if (opts)
    g->opts = *opts;
  if (g->opts.interval_s <= 0)
    g->opts.interval_s = 5;
  if (g->opts.call_timeout_s <= 0)
    g->opts.call_timeout_s = 2;
  g->busy_gpu = GPU_IDLE;
  g->reg = reg;
  char why_sel[256];
  if (gpu_select_parse(g->opts.gpus, g->sel, &g->nsel, why_sel,
                       sizeof why_sel) != 0) {
    snprintf(err, errlen, "GPU list: %s", why_sel);
    free(g);
    return NULL;
  }
  g->opts.gpus = NULL; /* parsed into sel; the caller's string may go */
  pthread_condattr_t ca;
  int rc = pthread_condattr_init(&ca);
  if (rc == 0) {
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    rc = pthread_cond_init(&g->wake, &ca);
    pthread_condattr_destroy(&ca);
  }
  if (rc == 0 && (rc = pthread_mutex_init(&g->mu, NULL)) != 0)
    pthread_cond_destroy(&g->wake);
  if (rc != 0) {
    snprintf(err, errlen, "cannot start the GPU manager: its lock: %s",
             strerror(rc));
    free(g);
    return NULL;
  }

  /* From here on a failure undoes everything with gpu_free: the metrics
   * registered so far point into g, and a scrape after a failed start
   * must not read it. */
  om_error oe = {0};
  if (gpu_metrics_register(g, reg, &oe) != OM_OK) {
    snprintf(err, errlen, "GPU metrics: %s", oe.text);
    gpu_free(g);
    return NULL;
  }
  char why[300];
  if (!nvml_open(&g->lib, g->opts.nvml_lib, log_adapter, g, why, sizeof why)) {
    /* No GPU here is a normal state, not a failure: say it once. */
    gpu_log(g, "%s; running without GPU metrics (orfeas_gpus 0)", why);
    return g;
  }
  g->loaded = true;
  /* nvmlInit_v2 runs on the sampler thread: a wedged driver can hang it,
   * and start-up must not hang with it. */
  rc = pthread_create(&g->thread, NULL, gpu_sampler_main, g);
  if (rc != 0) {
    snprintf(err, errlen, "cannot start the GPU sampler thread: %s",
             strerror(rc));
    gpu_free(g);
    return NULL;
  }
  g->thread_started = true;
  return g;
}

int orfeas_gpu_stop(orfeas_gpu *g, double wait_s) {
  if (g == NULL)
    return 0;
  if (g->thread_started) {
    pthread_mutex_lock(&g->mu);
    g->stop = true;
    pthread_cond_signal(&g->wake);
    pthread_mutex_unlock(&g->mu);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    double wait = wait_s > 0 ? wait_s : 2 * g->opts.call_timeout_s + 1;
    double t = (double)until.tv_sec + until.tv_nsec * 1e-9 + wait;
    until.tv_sec = (time_t)t;
    until.tv_nsec = (long)((t - (double)until.tv_sec) * 1e9);
    int rc = pthread_timedjoin_np(g->thread, NULL, &until);
    if (rc == ETIMEDOUT) {
      /* Stuck in NVML (a round's call or nvmlShutdown, which the sampler
       * makes on its way out): joining could take forever. Leave the
       * thread and everything it uses (g, the library, the registry it is
       * registered in) alive and untouched; the process exit ends them. */
      pthread_mutex_lock(&g->mu);
      const char *call = g->busy_call ? g->busy_call : "an NVML call";
      double in =
          g->busy_gpu != GPU_IDLE ? gpu_now_mono() - g->call_started : 0;
      pthread_mutex_unlock(&g->mu);
      gpu_log(g,
              "sampler stuck in %s for %.1f s, past the %.1f s the stop "
              "waits: leaving it behind (the process exit ends it)",
              call, in, wait);
      pthread_detach(g->thread);
      return 1;
    }
  }
  gpu_free(g);
  return 0;
}

unsigned gpu_shown(const orfeas_gpu *g) {
  unsigned n = 0;
  for (unsigned i = 0; i < g->count; i++)
    n += !g->gpus[i].alias;
  return n;
}

void orfeas_gpu_summary_get(orfeas_gpu *g, orfeas_gpu_summary *s) {
  memset(s, 0, sizeof *s);
  if (g == NULL)
    return;
  pthread_mutex_lock(&g->mu);
  s->nvml_loaded = g->loaded && g->initialised;
  s->count = gpu_shown(g);
  double now = gpu_now_mono();
  for (unsigned i = 0; i < g->count; i++) {
    const gpu_sample *x = &g->gpus[i];
    if (x->alias || !x->up || gpu_call_late(g, i, now))
      continue;
    s->up++;
    if (x->have_util && x->util > s->util_max)
      s->util_max = x->util;
    if (x->have_temp && x->temp_c > s->temp_max)
      s->temp_max = x->temp_c;
    if (x->have_mem) {
      s->mem_used_mb += x->mem_used_mb;
      s->mem_total_mb += x->mem_total_mb;
    }
  }
  pthread_mutex_unlock(&g->mu);
}
