/* nvml_loader.h: NVML opened with dlopen, its functions as pointers. */
#ifndef ORFEAS_NVML_LOADER_H
#define ORFEAS_NVML_LOADER_H

#include <stdbool.h>
#include <stddef.h>

#include "nvml_abi.h"

typedef struct nvml_lib {
  void *handle;
  /* Required: the versioned entry points and calls NVML has always had. */
  nvmlReturn_t (*init_v2)(void);
  nvmlReturn_t (*shutdown)(void);
  nvmlReturn_t (*get_count_v2)(unsigned int *);
  nvmlReturn_t (*get_handle_v2)(unsigned int, nvmlDevice_t *);
  nvmlReturn_t (*get_name)(nvmlDevice_t, char *, unsigned int);
  nvmlReturn_t (*get_uuid)(nvmlDevice_t, char *, unsigned int);
  nvmlReturn_t (*get_utilization)(nvmlDevice_t, nvmlUtilization_t *);
  nvmlReturn_t (*get_memory)(nvmlDevice_t, nvmlMemory_t *);
  /* Optional: newer, deprecated or not on every product; NULL if absent. */
  nvmlReturn_t (*get_memory_v2)(nvmlDevice_t, nvmlMemory_v2_t *);
  nvmlReturn_t (*get_temperature_v)(nvmlDevice_t, nvmlTemperature_v1_t *);
  nvmlReturn_t (*get_temperature)(nvmlDevice_t, int, unsigned int *);
  nvmlReturn_t (*get_power)(nvmlDevice_t, unsigned int *);
  /* Only for GPUs --gpus names by UUID (NVML has had both for years). */
  nvmlReturn_t (*get_handle_uuid)(const char *, nvmlDevice_t *);
  nvmlReturn_t (*get_index)(nvmlDevice_t, unsigned int *);
} nvml_lib;

typedef void (*nvml_log_fn)(void *user, const char *line);

/* Opens path (NULL: "libnvidia-ml.so.1") and resolves the symbols. Logs one
 * line per optional symbol that is missing (its fallback). Returns false,
 * with the reason in err, when the library or a required symbol is missing;
 * lib is then closed. */
bool nvml_open(nvml_lib *lib, const char *path, nvml_log_fn log, void *user,
               char *err, size_t errlen);
void nvml_close(nvml_lib *lib);

/* Stable label value for a return code ("GPU_IS_LOST", ...): our own table,
 * because nvmlErrorString needs the library and its text is not a bounded
 * label set. Unknown codes give "OTHER". */
const char *nvml_code_name(nvmlReturn_t rc);

#endif
