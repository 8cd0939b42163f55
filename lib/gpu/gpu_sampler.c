/* gpu_sampler.c: the thread that calls NVML.
 *
 * Every NVML call goes through tracked(): it records, under the mutex, which
 * GPU the call is for and when it started, and the mutex is NOT held during
 * the call. A scrape that finds a call older than the deadline reports that
 * GPU down at once, without waiting for the call to return; when a late call
 * does return, its GPU (all GPUs for a call for none in particular) stays
 * down until a round answers in time, and the call is counted as a
 * DEADLINE_EXCEEDED error. One thread makes all calls, so a wedged driver
 * stalls sampling, never the service, and no work piles up behind it.
 */
#include "gpu_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NVML_DEADLINE_EXCEEDED (-1) /* our pseudo return code */

typedef struct {
  orfeas_gpu *g;
  int gpu;
  bool late;     /* some call of this round missed its deadline */
  gpu_sample *s; /* the GPU's sample being filled; NULL for GPU_ALL */
} round_ctx;

/* The per-GPU calls, for gpu_sample.unsupported's bits. */
static const char *const gpu_calls[] = {"nvmlDeviceGetHandleByIndex_v2",
                                        "nvmlDeviceGetHandleByUUID",
                                        "nvmlDeviceGetIndex",
                                        "nvmlDeviceGetName",
                                        "nvmlDeviceGetUUID",
                                        "nvmlDeviceGetUtilizationRates",
                                        "nvmlDeviceGetMemoryInfo_v2",
                                        "nvmlDeviceGetMemoryInfo",
                                        "nvmlDeviceGetTemperatureV",
                                        "nvmlDeviceGetTemperature",
                                        "nvmlDeviceGetPowerUsage"};

/* True the first time this GPU answers NOT_SUPPORTED to this call. */
static bool first_unsupported(round_ctx *r, const char *name) {
  for (unsigned i = 0; i < sizeof gpu_calls / sizeof gpu_calls[0]; i++)
    if (strcmp(gpu_calls[i], name) == 0) {
      bool first = !(r->s->unsupported & (1u << i));
      r->s->unsupported |= 1u << i;
      return first;
    }
  return true;
}

static void call_begin(round_ctx *r, const char *name) {
  pthread_mutex_lock(&r->g->mu);
  r->g->busy_gpu = r->gpu;
  r->g->busy_call = name;
  r->g->call_started = gpu_now_mono();
  pthread_mutex_unlock(&r->g->mu);
}

static nvmlReturn_t call_end(round_ctx *r, const char *name, nvmlReturn_t rc) {
  orfeas_gpu *g = r->g;
  pthread_mutex_lock(&g->mu);
  double took = gpu_now_mono() - g->call_started;
  g->busy_gpu = GPU_IDLE;
  g->busy_call = NULL;
  bool late = took > g->opts.call_timeout_s;
  if (late) {
    /* Down now, not at the end of the round: until then a scrape between
     * two late calls would show the previous round's good status, and a
     * slow driver would flap up/down for a whole round. */
    if (r->gpu >= 0)
      g->gpus[r->gpu].up = false;
    else
      for (unsigned i = 0; i < g->count; i++)
        g->gpus[i].up = false;
  }
  pthread_mutex_unlock(&g->mu);
  if (late) {
    r->late = true;
    gpu_count_error(g, name, NVML_DEADLINE_EXCEEDED);
  }
  if (rc == NVML_ERROR_NOT_SUPPORTED && r->s != NULL) {
    /* A reading the GPU lacks (utilization with MIG on, memory on a GB10)
     * is a property of the GPU, not an error of this round: counted and
     * logged once per GPU and call, not every round. */
    if (first_unsupported(r, name)) {
      gpu_count_error(g, name, rc);
      gpu_log(g,
              "GPU %s: %s answers NOT_SUPPORTED: the GPU lacks that "
              "reading, its metric is left out",
              r->s->id, name);
    }
  } else if (rc == NVML_ERROR_NOT_FOUND && r->s != NULL && r->s->said_missing) {
    /* A --gpus UUID NVML does not know, asked again this round: counted
     * (and logged) the round it went missing, not every round after, or
     * the counter would grow for as long as the GPU stays away. */
  } else if (rc != NVML_SUCCESS) {
    gpu_count_error(g, name, rc);
  }
  return rc;
}

/* Wraps one NVML call: TRACK(r, "nvmlX", g->lib.x(args)). */
#define TRACK(r, name, call) (call_begin(r, name), call_end(r, name, (call)))

/* The handle and NVML index of the GPU in gpus[k] this round: the k-th
 * GPU NVML lists (sel NULL) or the one sel names. NVML_ERROR_NOT_FOUND,
 * without a call, for an index past NVML's count n. */
static nvmlReturn_t find_gpu(round_ctx *r, const gpu_select *sel, unsigned k,
                             unsigned n, nvmlDevice_t *dev, unsigned *index) {
  nvml_lib *L = &r->g->lib;
  if (sel == NULL || sel->index >= 0) {
    *index = sel ? (unsigned)sel->index : k;
    if (*index >= n)
      return NVML_ERROR_NOT_FOUND;
    return TRACK(r, "nvmlDeviceGetHandleByIndex_v2",
                 L->get_handle_v2(*index, dev));
  }
  /* NVML finds the UUID itself: we name no other GPU on the way. */
  if (L->get_handle_uuid == NULL || L->get_index == NULL)
    return NVML_ERROR_FUNCTION_NOT_FOUND;
  nvmlReturn_t rc =
      TRACK(r, "nvmlDeviceGetHandleByUUID", L->get_handle_uuid(sel->uuid, dev));
  if (rc == NVML_SUCCESS)
    rc = TRACK(r, "nvmlDeviceGetIndex", L->get_index(*dev, index));
  return rc;
}

/* True when another --gpus item names NVML index idx too: an index item,
 * or an earlier UUID item found there this round (at[]). */
static bool listed_already(const orfeas_gpu *g, unsigned k, unsigned idx,
                           const int *at) {
  for (unsigned j = 0; j < g->nsel; j++)
    if (j != k && (g->sel[j].index == (int)idx || (j < k && at[j] == (int)idx)))
      return true;
  return false;
}

/* Samples gpus[k] into s (a copy, filled without mu). n: NVML's count;
 * at[k]: set to the NVML index the GPU was found at, or -1. */
static void sample_one(orfeas_gpu *g, unsigned k, gpu_sample *s, unsigned n,
                       int *at) {
  round_ctx r = {g, (int)k, false, s};
  nvml_lib *L = &g->lib;
  const gpu_select *sel = g->nsel ? &g->sel[k] : NULL;
  nvmlDevice_t dev;
  unsigned idx = 0;
  s->up = false;
  at[k] = -1;
  nvmlReturn_t rc = find_gpu(&r, sel, k, n, &dev, &idx);
  if (sel &&
      (rc == NVML_ERROR_NOT_FOUND || rc == NVML_ERROR_FUNCTION_NOT_FOUND)) {
    /* Named by the operator, not listed by NVML: a typo, a GPU gone from
     * the bus, or another host's UUID. Shown down under the name given
     * (so an alert on orfeas_gpu_up fires) and said once. */
    if (sel->index < 0)
      snprintf(s->id, sizeof s->id, "%s", sel->uuid);
    s->have_info = false;
    s->alias = false;
    if (!s->said_missing) {
      s->said_missing = true;
      if (rc == NVML_ERROR_FUNCTION_NOT_FOUND)
        gpu_log(g,
                "GPU %s (--gpus): this NVML lacks nvmlDeviceGetHandleByUUID "
                "or nvmlDeviceGetIndex, so a UUID cannot be found; give its "
                "index instead; shown down (orfeas_gpu_up 0)",
                s->id);
      else
        gpu_log(g,
                "GPU %s (--gpus): NVML lists no such GPU (it lists %u; "
                "nvidia-smi -L shows them); shown down (orfeas_gpu_up 0) "
                "until it does",
                s->id, n);
    }
    return;
  }
  if (sel && sel->index < 0 && rc == NVML_SUCCESS) {
    snprintf(s->id, sizeof s->id, "%u", idx);
    if (s->said_missing)
      gpu_log(g, "GPU %s (--gpus): found, NVML index %u", sel->uuid, idx);
    s->said_missing = false;
    bool alias = listed_already(g, k, idx, at);
    if (alias && !s->alias)
      gpu_log(g,
              "GPU %s (--gpus) is GPU %u, listed already: shown once, "
              "under its first listing",
              sel->uuid, idx);
    s->alias = alias;
    if (alias)
      return;
  } else if (rc == NVML_SUCCESS && s->said_missing) {
    gpu_log(g, "GPU %s (--gpus): found", s->id);
    s->said_missing = false;
  }
  if (rc == NVML_SUCCESS)
    at[k] = (int)idx;
  if (rc == NVML_ERROR_NO_PERMISSION && !s->said_denied) {
    /* Not a GPU fault, and no retry or backoff mends it: the device file
     * (its mode, a container's device list) needs the operator. Shown
     * down like any GPU we cannot read, retried each round, and said once
     * with what to check, since the page it raises points at the GPU. A
     * GPU that is another service's is left out with --gpus. */
    s->said_denied = true;
    gpu_log(g,
            "GPU %s: NO_PERMISSION: NVML lists it but this process (uid %u) "
            "may not open its device file (/dev/nvidia*: mode, group, the "
            "container's devices); shown down (orfeas_gpu_up 0) and retried "
            "each round; if it is not this service's, leave it out with "
            "--gpus",
            s->id, (unsigned)getuid());
  }
  if (rc != NVML_SUCCESS)
    return;
  s->said_denied = false;
  if (!s->have_info) {
    if (TRACK(&r, "nvmlDeviceGetName",
              L->get_name(dev, s->name, sizeof s->name)) == NVML_SUCCESS &&
        TRACK(&r, "nvmlDeviceGetUUID",
              L->get_uuid(dev, s->uuid, sizeof s->uuid)) == NVML_SUCCESS)
      s->have_info = true;
  }
  /* NVML_ERROR_NOT_SUPPORTED says the product lacks the reading
   * (utilization on a MIG-enabled GPU, memory on a unified-memory GB10), not
   * that the GPU is unwell: that metric is left out and the GPU stays up.
   * Any other failure of these two still marks it down. */
  s->have_util = false;
  nvmlUtilization_t u;
  rc = TRACK(&r, "nvmlDeviceGetUtilizationRates", L->get_utilization(dev, &u));
  if (rc == NVML_SUCCESS) {
    s->util = u.gpu;
    s->have_util = true;
  } else if (rc != NVML_ERROR_NOT_SUPPORTED) {
    return;
  }

  s->have_mem = false;
  double total = 0, free_b = 0;
  nvmlMemory_v2_t m2 = {.version = NVML_MEMORY_V2_VERSION};
  rc = NVML_ERROR_FUNCTION_NOT_FOUND;
  if (L->get_memory_v2)
    rc = TRACK(&r, "nvmlDeviceGetMemoryInfo_v2", L->get_memory_v2(dev, &m2));
  if (rc == NVML_SUCCESS) {
    total = (double)m2.total;
    free_b = (double)m2.free;
    s->have_mem = true;
  } else if (rc != NVML_ERROR_GPU_IS_LOST) {
    /* v1 where v2 is missing or refuses this struct version. */
    nvmlMemory_t m1;
    rc = TRACK(&r, "nvmlDeviceGetMemoryInfo", L->get_memory(dev, &m1));
    if (rc == NVML_SUCCESS) {
      total = (double)m1.total;
      free_b = (double)m1.free;
      s->have_mem = true;
    }
  }
  if (rc != NVML_SUCCESS && rc != NVML_ERROR_NOT_SUPPORTED)
    return;
  /* used = total - free in both versions (v2's used leaves out what the
   * driver reserves; v1's includes it), so the metric means one thing. */
  s->mem_total_mb = total / 1048576.0;
  s->mem_free_mb = free_b / 1048576.0;
  s->mem_used_mb = (total - free_b) / 1048576.0;

  s->have_temp = false;
  nvmlTemperature_v1_t t = {.version = NVML_TEMPERATURE_V1_VERSION,
                            .sensorType = NVML_TEMPERATURE_GPU};
  rc = NVML_ERROR_FUNCTION_NOT_FOUND;
  if (L->get_temperature_v)
    rc = TRACK(&r, "nvmlDeviceGetTemperatureV", L->get_temperature_v(dev, &t));
  if (rc == NVML_SUCCESS) {
    s->temp_c = t.temperature;
    s->have_temp = true;
  } else if (rc != NVML_ERROR_GPU_IS_LOST && L->get_temperature) {
    unsigned int tc;
    rc = TRACK(&r, "nvmlDeviceGetTemperature",
               L->get_temperature(dev, NVML_TEMPERATURE_GPU, &tc));
    if (rc == NVML_SUCCESS) {
      s->temp_c = tc;
      s->have_temp = true;
    }
  }
  if (rc == NVML_ERROR_GPU_IS_LOST)
    return;

  s->have_power = false;
  unsigned int mw;
  if (L->get_power) {
    rc = TRACK(&r, "nvmlDeviceGetPowerUsage", L->get_power(dev, &mw));
    if (rc == NVML_ERROR_GPU_IS_LOST)
      return;
    if (rc == NVML_SUCCESS) {
      s->power_w = mw / 1000.0;
      s->have_power = true;
    }
  }
  if (r.late)
    return;
  s->up = true;
  s->last_ok = gpu_now_wall();
}

/* Waits until the next round or stop; mu held. Returns false to stop. */
static bool wait_next(orfeas_gpu *g, double from) {
  double next = from + g->opts.interval_s;
  struct timespec ts = {.tv_sec = (time_t)next,
                        .tv_nsec = (long)((next - floor(next)) * 1e9)};
  while (!g->stop && gpu_now_mono() < next)
    pthread_cond_timedwait(&g->wake, &g->mu, &ts);
  return !g->stop;
}

void *gpu_sampler_main(void *arg) {
  orfeas_gpu *g = arg;
  round_ctx global = {g, GPU_ALL, false, NULL};
  bool said = false;
  pthread_mutex_lock(&g->mu);
  /* nvmlInit_v2 once; retried each interval until it works (a driver can
   * come up after us), logged the first time only. */
  while (!g->stop && !g->initialised) {
    double t0 = gpu_now_mono();
    pthread_mutex_unlock(&g->mu);
    nvmlReturn_t rc = TRACK(&global, "nvmlInit_v2", g->lib.init_v2());
    pthread_mutex_lock(&g->mu);
    if (rc == NVML_SUCCESS) {
      g->initialised = true;
      break;
    }
    if (!said) {
      pthread_mutex_unlock(&g->mu);
      gpu_log(g, "nvmlInit_v2 failed (%s); retrying every %.3g s",
              nvml_code_name(rc), g->opts.interval_s);
      pthread_mutex_lock(&g->mu);
      said = true;
    }
    if (!wait_next(g, t0))
      break;
  }
  while (!g->stop) {
    double t0 = gpu_now_mono();
    pthread_mutex_unlock(&g->mu);
    unsigned n = 0;
    if (TRACK(&global, "nvmlDeviceGetCount_v2", g->lib.get_count_v2(&n))) {
      /* Keep the GPUs we knew, shown down. Dropping them to a count of 0
       * would make their series vanish, and an alert on orfeas_gpu_up == 0
       * would resolve just when NVML stops answering. */
      pthread_mutex_lock(&g->mu);
      for (unsigned i = 0; i < g->count; i++)
        g->gpus[i].up = false;
      g->round_cost = gpu_now_mono() - t0;
      if (!wait_next(g, t0))
        break;
      continue;
    }
    if (n > GPU_MAX)
      n = GPU_MAX;
    /* gpus[i]: the GPU at NVML index i, or the one the i-th --gpus item
     * names. */
    unsigned slots = g->nsel ? g->nsel : n;
    int at[GPU_MAX];
    for (unsigned i = 0; i < slots; i++) {
      gpu_sample s;
      pthread_mutex_lock(&g->mu);
      s = g->gpus[i]; /* keeps name, uuid and last_ok */
      pthread_mutex_unlock(&g->mu);
      if (g->nsel == 0 || g->sel[i].index >= 0)
        snprintf(s.id, sizeof s.id, "%d", g->nsel ? g->sel[i].index : (int)i);
      else if (s.id[0] == '\0') /* a UUID not found yet */
        snprintf(s.id, sizeof s.id, "%s", g->sel[i].uuid);
      sample_one(g, i, &s, n, at);
      pthread_mutex_lock(&g->mu);
      g->gpus[i] = s;
      if (i + 1 > g->count)
        g->count = i + 1;
      pthread_mutex_unlock(&g->mu);
    }
    pthread_mutex_lock(&g->mu);
    /* Indexes past the new count are forgotten, name and UUID included:
     * if the count grows again, the GPU at that index may be another board,
     * and it is read afresh. (With --gpus the list does not change.) */
    for (unsigned i = slots; i < g->count; i++)
      memset(&g->gpus[i], 0, sizeof g->gpus[i]);
    g->count = slots;
    g->round_cost = gpu_now_mono() - t0;
    if (!wait_next(g, t0))
      break;
  }
  bool initialised = g->initialised;
  pthread_mutex_unlock(&g->mu);
  /* nvmlShutdown here, not in orfeas_gpu_stop: a driver wedged at teardown
   * then holds up this thread, which the stop waits for with a deadline,
   * and not the process's exit. */
  if (initialised)
    TRACK(&global, "nvmlShutdown", g->lib.shutdown());
  return NULL;
}
