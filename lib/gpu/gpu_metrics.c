/* gpu_metrics.c: the GPU families, filled at scrape time from the last
 * sample (collectors), so a scrape never waits on NVML. */
#include "gpu_internal.h"

enum {
  M_GPUS,
  M_UP,
  M_INFO,
  M_UTIL,
  M_MEM_USED,
  M_MEM_FREE,
  M_MEM_TOTAL,
  M_TEMP,
  M_POWER,
  M_LAST,
  M_COST,
  M_ERRORS,
  M_N
};

static const struct {
  const char *name, *help;
  int labels; /* 0: none, 1: gpu_id, 3: gpu_id name uuid */
} defs[M_N] = {
    [M_GPUS] = {"orfeas_gpus",
                "GPUs watched: every GPU NVML reports, or those --gpus "
                "names (0 without NVML).",
                0},
    [M_UP] = {"orfeas_gpu_up",
              "1 when the GPU answered every NVML call of "
              "its last sample within the deadline, else 0.",
              1},
    [M_INFO] = {"orfeas_gpu_info", "GPU identity; always 1.", 3},
    [M_UTIL] = {"orfeas_gpu_utilization_percent",
                "Percent of time a kernel "
                "ran on the GPU over NVML's last sample period.",
                1},
    [M_MEM_USED] = {"orfeas_gpu_memory_used_mb",
                    "GPU memory in use "
                    "(total - free), MiB.",
                    1},
    [M_MEM_FREE] = {"orfeas_gpu_memory_free_mb", "GPU memory free, MiB.", 1},
    [M_MEM_TOTAL] = {"orfeas_gpu_memory_total_mb", "GPU memory, MiB.", 1},
    [M_TEMP] = {"orfeas_gpu_temperature_celsius",
                "GPU core temperature, "
                "degrees Celsius.",
                1},
    [M_POWER] = {"orfeas_gpu_power_watts", "GPU power draw, watts.", 1},
    [M_LAST] = {"orfeas_gpu_last_sample_timestamp_seconds",
                "Unix time of "
                "the GPU's last good sample.",
                1},
    [M_COST] = {"orfeas_gpu_sample_duration_seconds",
                "Seconds the last "
                "sampling round of all GPUs took.",
                0},
    [M_ERRORS] = {"orfeas_nvml_errors_total",
                  "NVML calls that failed or missed their "
                  "deadline, by call and error.",
                  2},
};

static void collect(om_collect *out, void *user) {
  struct gpu_metric_ctx *ctx = user;
  orfeas_gpu *g = ctx->g;
  pthread_mutex_lock(&g->mu);
  if (ctx->which == M_ERRORS) {
    for (unsigned i = 0; i < g->nerrs; i++)
      om_collect_value(out, OM_LABELS(g->errs[i].call, g->errs[i].error),
                       g->errs[i].n);
  } else if (ctx->which == M_GPUS) {
    om_collect_value(out, NULL, gpu_shown(g));
  } else if (ctx->which == M_COST) {
    if (g->initialised)
      om_collect_value(out, NULL, g->round_cost);
  } else {
    double now = gpu_now_mono();
    for (unsigned i = 0; i < g->count; i++) {
      const gpu_sample *s = &g->gpus[i];
      if (s->alias) /* the GPU shows under its first listing */
        continue;
      const char *id = s->id;
      bool up = s->up && !gpu_call_late(g, i, now);
      const char *const *l = OM_LABELS(id);
      switch (ctx->which) {
      case M_UP:
        om_collect_value(out, l, up);
        break;
      case M_INFO:
        if (s->have_info)
          om_collect_value(out, OM_LABELS(id, s->name, s->uuid), 1);
        break;
      case M_LAST:
        if (s->last_ok > 0)
          om_collect_value(out, l, s->last_ok);
        break;
      default:
        if (!up) /* no stale numbers for a GPU that is down */
          break;
        switch (ctx->which) {
        case M_UTIL:
          if (s->have_util)
            om_collect_value(out, l, s->util);
          break;
        case M_MEM_USED:
          if (s->have_mem)
            om_collect_value(out, l, s->mem_used_mb);
          break;
        case M_MEM_FREE:
          if (s->have_mem)
            om_collect_value(out, l, s->mem_free_mb);
          break;
        case M_MEM_TOTAL:
          if (s->have_mem)
            om_collect_value(out, l, s->mem_total_mb);
          break;
        case M_TEMP:
          if (s->have_temp)
            om_collect_value(out, l, s->temp_c);
          break;
        case M_POWER:
          if (s->have_power)
            om_collect_value(out, l, s->power_w);
          break;
        }
      }
    }
  }
  pthread_mutex_unlock(&g->mu);
}

int gpu_metrics_register(orfeas_gpu *g, om_registry *reg, om_error *err) {
  static const char *const one[] = {"gpu_id"};
  static const char *const two[] = {"call", "error"};
  static const char *const three[] = {"gpu_id", "name", "uuid"};
  static const char *const *const names[] = {NULL, one, two, three};
  g->reg = reg;
  g->registered = 0;
  for (int m = 0; m < M_N; m++) {
    g->ctx[m] = (struct gpu_metric_ctx){g, m};
    om_family_opts o = {.name = defs[m].name,
                        .help = defs[m].help,
                        .label_names = names[defs[m].labels],
                        .label_count = (size_t)defs[m].labels,
                        .max_series = m == M_ERRORS ? GPU_ERRS_MAX : GPU_MAX};
    int rc = om_collector_new(reg, m == M_ERRORS ? OM_COUNTER : OM_GAUGE, &o,
                              collect, &g->ctx[m], err);
    if (rc != OM_OK) {
      /* All or nothing: the ones registered so far point into g, which
       * the caller is about to free. */
      gpu_metrics_unregister(g);
      return rc;
    }
    g->registered = m + 1;
  }
  return OM_OK;
}

void gpu_metrics_unregister(orfeas_gpu *g) {
  for (int m = g->registered - 1; m >= 0; m--)
    om_collector_remove(g->reg, defs[m].name, &g->ctx[m]);
  g->registered = 0;
}
