/* nvml_loader.c: dlopen NVML and look up what we call, by versioned name
 * (dlsym takes strings, so the header's nvmlInit -> nvmlInit_v2 macros do
 * nothing for us: we ask for the _v2 names explicitly). */
#include "nvml_loader.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

/* ISO C forbids converting a void * to a function pointer; POSIX requires it
 * to work for dlsym. Copying the bytes is the portable spelling. */
#define LOOKUP(lib, field, name)                                               \
  do {                                                                         \
    void *sym_ = dlsym((lib)->handle, name);                                   \
    memcpy(&(lib)->field, &sym_, sizeof sym_);                                 \
  } while (0)

bool nvml_open(nvml_lib *lib, const char *path, nvml_log_fn log, void *user,
               char *err, size_t errlen) {
  memset(lib, 0, sizeof *lib);
  const char *p = path ? path : "libnvidia-ml.so.1";
  /* RTLD_NOW: a broken library fails here, not in the middle of a sample. */
  lib->handle = dlopen(p, RTLD_NOW | RTLD_LOCAL);
  if (lib->handle == NULL) {
    const char *why = dlerror();
    snprintf(err, errlen, "cannot load NVML from %s: %s", p,
             why ? why : "unknown error");
    return false;
  }
  static const struct {
    const char *name;
    size_t off;
  } required[] = {
      {"nvmlInit_v2", offsetof(nvml_lib, init_v2)},
      {"nvmlShutdown", offsetof(nvml_lib, shutdown)},
      {"nvmlDeviceGetCount_v2", offsetof(nvml_lib, get_count_v2)},
      {"nvmlDeviceGetHandleByIndex_v2", offsetof(nvml_lib, get_handle_v2)},
      {"nvmlDeviceGetName", offsetof(nvml_lib, get_name)},
      {"nvmlDeviceGetUUID", offsetof(nvml_lib, get_uuid)},
      {"nvmlDeviceGetUtilizationRates", offsetof(nvml_lib, get_utilization)},
      {"nvmlDeviceGetMemoryInfo", offsetof(nvml_lib, get_memory)},
  };
  for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
    void *sym = dlsym(lib->handle, required[i].name);
    if (sym == NULL) {
      snprintf(err, errlen, "NVML at %s lacks %s: too old or not NVML", p,
               required[i].name);
      nvml_close(lib);
      return false;
    }
    memcpy((char *)lib + required[i].off, &sym, sizeof sym);
  }
  LOOKUP(lib, get_memory_v2, "nvmlDeviceGetMemoryInfo_v2");
  LOOKUP(lib, get_temperature_v, "nvmlDeviceGetTemperatureV");
  LOOKUP(lib, get_temperature, "nvmlDeviceGetTemperature");
  LOOKUP(lib, get_power, "nvmlDeviceGetPowerUsage");
  LOOKUP(lib, get_handle_uuid, "nvmlDeviceGetHandleByUUID");
  LOOKUP(lib, get_index, "nvmlDeviceGetIndex");
  char line[160];
  if (lib->get_memory_v2 == NULL && log) {
    snprintf(line, sizeof line,
             "NVML has no nvmlDeviceGetMemoryInfo_v2 "
             "(before 11.6): using nvmlDeviceGetMemoryInfo");
    log(user, line);
  }
  if (lib->get_temperature_v == NULL && log) {
    snprintf(line, sizeof line,
             "NVML has no nvmlDeviceGetTemperatureV (before 12.8): using "
             "nvmlDeviceGetTemperature%s",
             lib->get_temperature ? ""
                                  : ", which is missing too: no "
                                    "temperature");
    log(user, line);
  }
  if (lib->get_power == NULL && log)
    log(user, "NVML has no nvmlDeviceGetPowerUsage: no power metric");
  return true;
}

void nvml_close(nvml_lib *lib) {
  if (lib->handle != NULL)
    dlclose(lib->handle);
  memset(lib, 0, sizeof *lib);
}

const char *nvml_code_name(nvmlReturn_t rc) {
  switch (rc) {
  case NVML_SUCCESS:
    return "SUCCESS";
  case NVML_ERROR_UNINITIALIZED:
    return "UNINITIALIZED";
  case NVML_ERROR_INVALID_ARGUMENT:
    return "INVALID_ARGUMENT";
  case NVML_ERROR_NOT_SUPPORTED:
    return "NOT_SUPPORTED";
  case NVML_ERROR_NO_PERMISSION:
    return "NO_PERMISSION";
  case NVML_ERROR_NOT_FOUND:
    return "NOT_FOUND";
  case NVML_ERROR_INSUFFICIENT_SIZE:
    return "INSUFFICIENT_SIZE";
  case NVML_ERROR_DRIVER_NOT_LOADED:
    return "DRIVER_NOT_LOADED";
  case NVML_ERROR_TIMEOUT:
    return "TIMEOUT";
  case NVML_ERROR_LIBRARY_NOT_FOUND:
    return "LIBRARY_NOT_FOUND";
  case NVML_ERROR_FUNCTION_NOT_FOUND:
    return "FUNCTION_NOT_FOUND";
  case NVML_ERROR_GPU_IS_LOST:
    return "GPU_IS_LOST";
  case NVML_ERROR_RESET_REQUIRED:
    return "RESET_REQUIRED";
  case NVML_ERROR_LIB_RM_VERSION_MISMATCH:
    return "LIB_RM_VERSION_MISMATCH";
  case NVML_ERROR_ARGUMENT_VERSION_MISMATCH:
    return "ARGUMENT_VERSION_MISMATCH";
  case NVML_ERROR_DEPRECATED:
    return "DEPRECATED";
  case NVML_ERROR_GPU_NOT_FOUND:
    return "GPU_NOT_FOUND";
  case NVML_ERROR_UNKNOWN:
    return "UNKNOWN";
  case -1:
    return "DEADLINE_EXCEEDED"; /* ours: a call past its deadline */
  default:
    return "OTHER";
  }
}
