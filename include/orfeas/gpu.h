/* orfeas/gpu.h: the GPU manager. NVIDIA GPUs through NVML, loaded at run
 * time, sampled by a background thread, exposed as Prometheus metrics.
 *
 * ORFEAS builds and runs without CUDA or a GPU: NVML is opened with
 * dlopen("libnvidia-ml.so.1") (or a path the operator gives), and the few
 * prototypes and structs we call are declared by us (lib/gpu/nvml_abi.h).
 * Without the library the manager logs one line and reports
 * orfeas_gpus 0; the service runs normally.
 *
 * Sampling: one thread calls NVML every interval; a scrape only reads the
 * last sample under a mutex and never calls NVML, so /metrics stays fast when
 * a driver wedges. A call that runs past its deadline marks that GPU down
 * (orfeas_gpu_up 0) at the next scrape, and since one thread does all the
 * calls, nothing queues up behind a stuck call. NVML_ERROR_GPU_IS_LOST marks
 * the GPU down until it answers again. NVML_ERROR_NOT_SUPPORTED for one
 * reading (utilization with MIG on, memory on a unified-memory GB10) leaves
 * that metric out and the GPU up, and is counted once per GPU and call.
 * nvmlInit_v2 is called once, nvmlShutdown once at stop, both on the
 * sampler thread.
 *
 * Which GPUs: every GPU NVML lists, or those opts.gpus names (--gpus: NVML
 * indexes and GPU UUIDs). A GPU not named is never asked anything (no NVML
 * call takes its index or handle) and never shown. A named GPU NVML does
 * not list is logged once by that name and shown down (label gpu_id = the
 * index or UUID as given) until it appears. CUDA_VISIBLE_DEVICES is not
 * read: CUDA numbers GPUs its own way (docs/gpu.md).
 *
 * Metrics (label gpu_id = NVML index): orfeas_gpu_utilization_percent,
 * orfeas_gpu_memory_used_mb, orfeas_gpu_memory_free_mb,
 * orfeas_gpu_memory_total_mb (MiB; used = total - free, the same meaning
 * whichever NVML memory call is available), orfeas_gpu_temperature_celsius,
 * orfeas_gpu_power_watts, orfeas_gpu_info{gpu_id,name,uuid} 1,
 * orfeas_gpu_up, orfeas_gpu_last_sample_timestamp_seconds, and without
 * labels orfeas_gpus and orfeas_gpu_sample_duration_seconds (the cost
 * of the last sampling round), plus orfeas_nvml_errors_total{call,error}.
 * Value gauges are left out for a GPU that is down: no stale numbers.
 *
 * Thread-safety: orfeas_gpu_start/stop from one thread (the service's main);
 * orfeas_gpu_summary from any thread.
 */
#ifndef ORFEAS_GPU_H
#define ORFEAS_GPU_H

#include <stddef.h>

#include "orfeas/metrics.h"

typedef struct orfeas_gpu orfeas_gpu;

/* Log sink: one line, no trailing newline. */
typedef void (*orfeas_gpu_log_fn)(void *user, const char *line);

typedef struct orfeas_gpu_opts {
  const char *nvml_lib;  /* NULL: "libnvidia-ml.so.1" from the loader path */
  double interval_s;     /* sampling interval; <= 0 means 5 s */
  double call_timeout_s; /* one NVML call's deadline; <= 0 means 2 s */
  orfeas_gpu_log_fn log; /* NULL: lines go to stderr prefixed "gpu: " */
  void *log_user;
  /* The GPUs to watch: NULL or "all" for every GPU NVML lists, else a
   * comma list of NVML indexes and GPU UUIDs (orfeas_gpu_select_check). */
  const char *gpus;
} orfeas_gpu_opts;

/* Checks a --gpus value: "all", or a comma list (at most 64 items, spaces
 * around an item ignored) of NVML indexes (0..63) and GPU UUIDs
 * ("GPU-" and 32 hex digits 8-4-4-4-12, as nvidia-smi -L prints them,
 * any case). Returns 0, or -1 with what is wrong in err (errlen bytes):
 * an empty list or item, "all" with others, junk, a MIG UUID, a GPU
 * listed twice. */
int orfeas_gpu_select_check(const char *list, char *err, size_t errlen);

/* Registers the GPU metrics on reg and starts sampling. A missing NVML
 * library is not an error: the manager then reports no GPU. Returns NULL
 * when opts->gpus is not a valid list, when out of memory, when the
 * metrics cannot be registered (a name already taken) or when the sampler
 * thread cannot start, with the reason in err
 * (errlen bytes); a failed start is all or nothing: every family it had
 * registered is taken back and reg renders as before the call. The caller
 * owns the manager. Its collectors read the manager at scrape time: stop the
 * manager before freeing reg. */
orfeas_gpu *orfeas_gpu_start(om_registry *reg, const orfeas_gpu_opts *opts,
                             char *err, size_t errlen);

/* Stops the sampler and frees the manager, waiting at most wait_s seconds
 * for a sampler that is inside an NVML call, nvmlShutdown included (the
 * sampler makes it on its way out; <= 0: twice the call deadline plus a
 * second). Returns 0 when stopped and freed; its families are then
 * gone from reg (a render may run meanwhile). Returns 1 when the
 * sampler was stuck and left to finish on its own (detached): it still uses
 * the manager and still writes its metrics into reg, so neither may be
 * freed; the process exit reclaims them. */
int orfeas_gpu_stop(orfeas_gpu *g, double wait_s);

/* What /api/health shows. */
typedef struct orfeas_gpu_summary {
  int nvml_loaded;    /* 1 when the library was opened and initialised */
  unsigned count;     /* GPUs watched: NVML's, or those --gpus names */
  unsigned up;        /* of those, answering within their deadline */
  double util_max;    /* percent, over GPUs that are up and report it */
  double temp_max;    /* Celsius */
  double mem_used_mb; /* summed over GPUs that are up and report memory */
  double mem_total_mb;
} orfeas_gpu_summary;

/* Fills s from the last sample (zeros without NVML). Any thread. */
void orfeas_gpu_summary_get(orfeas_gpu *g, orfeas_gpu_summary *s);

#endif
