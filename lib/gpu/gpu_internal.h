/* gpu_internal.h: the GPU manager's state, shared by its files. */
#ifndef ORFEAS_GPU_INTERNAL_H
#define ORFEAS_GPU_INTERNAL_H

#include "nvml_loader.h"
#include "orfeas/gpu.h"

#include <pthread.h>
#include <stdbool.h>

#define GPU_MAX 64
#define GPU_IDLE (-1)    /* busy_gpu: no NVML call in progress */
#define GPU_ALL (-2)     /* busy_gpu: a call for no one GPU (init, count) */
#define GPU_ERRS_MAX 512 /* orfeas_nvml_errors_total series */

/* One GPU --gpus names: by NVML index, or by UUID (index -1). */
typedef struct gpu_select {
  int index;
  char uuid[NVML_NAME_BUFFER]; /* "GPU-" and lower-case hex, as NVML says */
} gpu_select;

/* The last sample of one GPU: the one at NVML index i (every GPU), or the
 * one the i-th --gpus item names. */
typedef struct gpu_sample {
  /* Its gpu_id label: the NVML index, or the UUID as --gpus gave it while
   * NVML lists no such GPU. */
  char id[NVML_NAME_BUFFER];
  bool up;        /* answered every call of its last round in time */
  bool have_info; /* name and uuid read */
  char name[NVML_NAME_BUFFER], uuid[NVML_NAME_BUFFER];
  double util, mem_used_mb, mem_free_mb, mem_total_mb;
  double temp_c, power_w;
  /* Readings this GPU gave in its last round; one it lacks (NVML says
   * NOT_SUPPORTED) is left out without marking the GPU down. */
  bool have_util, have_mem, have_temp, have_power;
  double last_ok; /* wall-clock seconds of the last good sample, 0 never */
  /* Calls that answered NOT_SUPPORTED for this GPU once already (bits by
   * gpu_sampler.c's call table): counted and logged the first time only. */
  unsigned unsupported;
  bool said_denied;  /* its NO_PERMISSION logged (until it opens again) */
  bool said_missing; /* NVML lists no such GPU, logged (until it does) */
  /* A --gpus UUID of a GPU listed already (by index or an earlier UUID):
   * neither sampled nor shown, logged when it becomes one. */
  bool alias;
} gpu_sample;

struct orfeas_gpu {
  orfeas_gpu_opts opts;
  nvml_lib lib;
  bool loaded;      /* library open */
  bool initialised; /* nvmlInit_v2 succeeded (once) */

  pthread_t thread;
  bool thread_started;
  pthread_mutex_t mu; /* guards everything below and stop */
  pthread_cond_t wake;
  bool stop;
  /* --gpus: nsel GPUs, immutable after start (read without mu); 0 for
   * every GPU NVML lists. */
  gpu_select sel[GPU_MAX];
  unsigned nsel;
  unsigned count; /* gpus[] in use: NVML's count, or nsel */
  gpu_sample gpus[GPU_MAX];
  int busy_gpu;          /* GPU of the NVML call in progress, or GPU_* */
  const char *busy_call; /* its name, for a stop that gives up on it */
  double call_started;   /* monotonic seconds when it began */
  double round_cost;     /* seconds the last full round took */

  /* orfeas_nvml_errors_total{call,error}: kept here and reported by a
   * collector like the other families, so that every family the manager
   * registers can be taken back (om_collector_remove). Call and error names
   * are both from fixed sets (string literals): bounded. */
  struct gpu_error_count {
    const char *call, *error;
    double n;
  } errs[GPU_ERRS_MAX];
  unsigned nerrs;

  om_registry *reg; /* where the collectors are registered */
  int registered;   /* how many of them, in gpu_metric_ctx order */
  struct gpu_metric_ctx {
    struct orfeas_gpu *g;
    int which;
  } ctx[16]; /* collector user pointers, one per family */
};

/* Parses a --gpus value into sel (n = 0 for "all"); -1 with why in err. */
int gpu_select_parse(const char *list, gpu_select *sel, unsigned *n, char *err,
                     size_t errlen);

/* GPUs shown: gpus[] in use, less aliases. mu held. */
unsigned gpu_shown(const orfeas_gpu *g);

double gpu_now_mono(void);
double gpu_now_wall(void);
void gpu_log(const orfeas_gpu *g, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void gpu_count_error(orfeas_gpu *g, const char *call, nvmlReturn_t rc);

/* True when GPU i must show as down because the call in progress (for it,
 * or for all GPUs) has run past its deadline. mu held. */
static inline bool gpu_call_late(const orfeas_gpu *g, unsigned i, double now) {
  return (g->busy_gpu == (int)i || g->busy_gpu == GPU_ALL) &&
         now - g->call_started > g->opts.call_timeout_s;
}

/* gpu_metrics.c: registers every family on reg, or none (what it had
 * registered is taken back before it returns an error). */
int gpu_metrics_register(orfeas_gpu *g, om_registry *reg, om_error *err);
/* Takes back every family gpu_metrics_register registered; once it returns
 * no scrape reads g. */
void gpu_metrics_unregister(orfeas_gpu *g);

/* gpu_sampler.c */
void *gpu_sampler_main(void *arg);

#endif
