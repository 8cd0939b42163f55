/* gpu_summary.c: the "gpu" object of GET /api/health, from the GPU
 * manager's last sample: never an NVML call on a request path. */
#include <jansson.h>

#include "orfeasd.h"

json_t *od_gpu_summary(od_service *svc) {
  orfeas_gpu_summary s;
  orfeas_gpu_summary_get(svc->gpu, &s);
  return json_pack("{s:b, s:I, s:I, s:f, s:f, s:f, s:f}", "nvml", s.nvml_loaded,
                   "count", (json_int_t)s.count, "up", (json_int_t)s.up,
                   "utilization_max_percent", s.util_max,
                   "temperature_max_celsius", s.temp_max, "memory_used_mb",
                   s.mem_used_mb, "memory_total_mb", s.mem_total_mb);
}
