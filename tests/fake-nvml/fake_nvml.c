/* fake_nvml.c: a stand-in libnvidia-ml for tests and alert drills.
 *
 * It exports the same symbols as NVML, so orfeasd loads it through the very
 * code path that loads the real library (--nvml-lib PATH). On every call it
 * reads its state from the file named by FAKE_NVML_STATE, lines key=value:
 *
 *   gpus=N               number of GPUs (default 1, at most 16)
 *   hang_ms=M            every call sleeps M ms first (a wedged driver)
 *   gpuI.util=P          utilization percent (default 0)
 *   gpuI.mem_used_mb=X   memory used, MiB (default 0)
 *   gpuI.mem_total_mb=X  memory, MiB (default 16384)
 *   gpuI.temp=C          temperature, Celsius (default 40)
 *   gpuI.power_w=W       power, watts (default 50)
 *   gpuI.name=TEXT       product name (default "Fake NVIDIA GPU I")
 *   gpuI.lost=1          calls on that GPU return NVML_ERROR_GPU_IS_LOST
 *   gpuI.no_permission=1 its handle lookup returns NVML_ERROR_NO_PERMISSION
 *                        (a device file this process may not open)
 *   gpuI.uuid=TEXT       UUID (default GPU-fa4e0000-0000-4000-8000-00..0I)
 *                        (nvmlDeviceGetHandleByUUID finds a GPU by it;
 *                        nvmlDeviceGetIndex gives its index)
 *   gpuI.not_supported=L readings that GPU lacks, comma-separated (util,
 *                        memory, temp, power): their calls return
 *                        NVML_ERROR_NOT_SUPPORTED, as utilization does with
 *                        MIG on and memory on a unified-memory GB10
 *   count_error=CODE     nvmlDeviceGetCount_v2 returns this NVML code
 *   init_error=CODE      nvmlInit_v2 returns this NVML code (9: no driver)
 *   shutdown_hang_ms=M   nvmlShutdown sleeps M ms first (a driver that
 *                        wedges at teardown; hang_ms leaves it alone)
 *
 * Like the real library, every call but nvmlInit_v2 and nvmlShutdown
 * returns NVML_ERROR_UNINITIALIZED while no nvmlInit_v2 is outstanding, so a
 * caller that samples before init or after shutdown is caught here too.
 *
 * A missing file or key means the default. Built twice: libfake-nvml.so has
 * every symbol ORFEAS looks up; libfake-nvml-minimal.so (FAKE_NVML_MINIMAL)
 * lacks the newer optional ones (nvmlDeviceGetMemoryInfo_v2,
 * nvmlDeviceGetTemperatureV, nvmlDeviceGetPowerUsage) to test fallbacks.
 * fake_nvml_calls(NAME) tells tests how often a function was called;
 * fake_nvml_gpu_calls(I) how many calls named GPU I (its index for
 * nvmlDeviceGetHandleByIndex_v2, its handle, or its UUID when
 * nvmlDeviceGetHandleByUUID found it), so a test can tell a GPU was never
 * sampled;
 * fake_nvml_hanging() how many calls are inside their hang_ms sleep now,
 * fake_nvml_hangs_done() how many have come out of it (so a test can tell
 * that something finished while one call was still hung, with no clock).
 */
#include "../../lib/gpu/nvml_abi.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FAKE_MAX 16
#define MIB (1024ull * 1024ull)

enum { NS_UTIL = 1, NS_MEMORY = 2, NS_TEMP = 4, NS_POWER = 8 };

typedef struct {
  double util, mem_used, mem_total, temp, power;
  char name[64], uuid[NVML_NAME_BUFFER];
  int lost;
  int no_permission;
  int not_supported; /* NS_* bits */
} fake_gpu;

typedef struct {
  int gpus, hang_ms, count_error, init_error, shutdown_hang_ms;
  fake_gpu g[FAKE_MAX];
} fake_state;

/* Prototypes of what we export (the real ones live in NVIDIA's header). */
nvmlReturn_t nvmlInit_v2(void);
nvmlReturn_t nvmlShutdown(void);
const char *nvmlErrorString(nvmlReturn_t rc);
nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *n);
nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int i, nvmlDevice_t *d);
nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *d);
nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t d, unsigned int *i);
nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t d, char *name, unsigned int len);
nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t d, char *uuid, unsigned int len);
nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t d,
                                           nvmlUtilization_t *u);
nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t d, nvmlMemory_t *m);
nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t d, int sensor,
                                      unsigned int *t);
#ifndef FAKE_NVML_MINIMAL
nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t d, nvmlMemory_v2_t *m);
nvmlReturn_t nvmlDeviceGetTemperatureV(nvmlDevice_t d, nvmlTemperature_v1_t *t);
nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t d, unsigned int *mw);
#endif
unsigned long fake_nvml_calls(const char *name);
unsigned long fake_nvml_gpu_calls(unsigned i);
unsigned long fake_nvml_hanging(void);
unsigned long fake_nvml_hangs_done(void);

/* ---- call counting ------------------------------------------------------ */

static const char *const names[] = {"nvmlInit_v2",
                                    "nvmlShutdown",
                                    "nvmlDeviceGetCount_v2",
                                    "nvmlDeviceGetHandleByIndex_v2",
                                    "nvmlDeviceGetHandleByUUID",
                                    "nvmlDeviceGetIndex",
                                    "nvmlDeviceGetName",
                                    "nvmlDeviceGetUUID",
                                    "nvmlDeviceGetUtilizationRates",
                                    "nvmlDeviceGetMemoryInfo",
                                    "nvmlDeviceGetMemoryInfo_v2",
                                    "nvmlDeviceGetTemperature",
                                    "nvmlDeviceGetTemperatureV",
                                    "nvmlDeviceGetPowerUsage"};
#define NNAMES (sizeof names / sizeof names[0])
static _Atomic unsigned long calls[NNAMES];

static void count(const char *name) {
  for (size_t i = 0; i < NNAMES; i++)
    if (strcmp(names[i], name) == 0)
      atomic_fetch_add(&calls[i], 1);
}

unsigned long fake_nvml_calls(const char *name) {
  for (size_t i = 0; i < NNAMES; i++)
    if (strcmp(names[i], name) == 0)
      return atomic_load(&calls[i]);
  return 0;
}

/* Calls that named one GPU, by its index. */
static _Atomic unsigned long gpu_calls[FAKE_MAX];

static void count_gpu(unsigned i) {
  if (i < FAKE_MAX)
    atomic_fetch_add(&gpu_calls[i], 1);
}

unsigned long fake_nvml_gpu_calls(unsigned i) {
  return i < FAKE_MAX ? atomic_load(&gpu_calls[i]) : 0;
}

static _Atomic unsigned long hanging, hangs_done;

unsigned long fake_nvml_hanging(void) { return atomic_load(&hanging); }

unsigned long fake_nvml_hangs_done(void) { return atomic_load(&hangs_done); }

/* nvmlInit_v2 calls not yet matched by nvmlShutdown (NVML counts them). */
static _Atomic int inits;

/* ---- state -------------------------------------------------------------- */

static void load(fake_state *s) {
  memset(s, 0, sizeof *s);
  s->gpus = 1;
  for (int i = 0; i < FAKE_MAX; i++) {
    s->g[i].mem_total = 16384;
    s->g[i].temp = 40;
    s->g[i].power = 50;
    snprintf(s->g[i].name, sizeof s->g[i].name, "Fake NVIDIA GPU %d", i);
    snprintf(s->g[i].uuid, sizeof s->g[i].uuid,
             "GPU-fa4e0000-0000-4000-8000-%012d", i);
  }
  const char *path = getenv("FAKE_NVML_STATE");
  FILE *f = path ? fopen(path, "r") : NULL;
  if (f == NULL)
    return;
  char line[256];
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\r\n")] = '\0';
    char *eq = strchr(line, '=');
    if (eq == NULL)
      continue;
    *eq = '\0';
    const char *k = line, *v = eq + 1;
    if (strcmp(k, "gpus") == 0) {
      s->gpus = (int)strtol(v, NULL, 10);
      if (s->gpus < 0)
        s->gpus = 0;
      if (s->gpus > FAKE_MAX)
        s->gpus = FAKE_MAX;
    } else if (strcmp(k, "hang_ms") == 0) {
      s->hang_ms = (int)strtol(v, NULL, 10);
    } else if (strcmp(k, "count_error") == 0) {
      s->count_error = (int)strtol(v, NULL, 10);
    } else if (strcmp(k, "shutdown_hang_ms") == 0) {
      s->shutdown_hang_ms = (int)strtol(v, NULL, 10);
    } else if (strcmp(k, "init_error") == 0) {
      s->init_error = (int)strtol(v, NULL, 10);
    } else if (strncmp(k, "gpu", 3) == 0) {
      char *dot;
      long i = strtol(k + 3, &dot, 10);
      if (*dot != '.' || i < 0 || i >= FAKE_MAX)
        continue;
      fake_gpu *g = &s->g[i];
      const char *f2 = dot + 1;
      double x = strtod(v, NULL);
      if (strcmp(f2, "util") == 0)
        g->util = x;
      else if (strcmp(f2, "mem_used_mb") == 0)
        g->mem_used = x;
      else if (strcmp(f2, "mem_total_mb") == 0)
        g->mem_total = x;
      else if (strcmp(f2, "temp") == 0)
        g->temp = x;
      else if (strcmp(f2, "power_w") == 0)
        g->power = x;
      else if (strcmp(f2, "lost") == 0)
        g->lost = x != 0;
      else if (strcmp(f2, "no_permission") == 0)
        g->no_permission = x != 0;
      else if (strcmp(f2, "name") == 0)
        snprintf(g->name, sizeof g->name, "%s", v);
      else if (strcmp(f2, "uuid") == 0)
        snprintf(g->uuid, sizeof g->uuid, "%s", v);
      else if (strcmp(f2, "not_supported") == 0)
        g->not_supported = (strstr(v, "util") ? NS_UTIL : 0) |
                           (strstr(v, "memory") ? NS_MEMORY : 0) |
                           (strstr(v, "temp") ? NS_TEMP : 0) |
                           (strstr(v, "power") ? NS_POWER : 0);
    }
  }
  fclose(f);
}

/* Sleeps ms, counted by fake_nvml_hanging and fake_nvml_hangs_done. */
static void hang(int ms) {
  if (ms <= 0)
    return;
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  atomic_fetch_add(&hanging, 1);
  while (nanosleep(&ts, &ts) != 0)
    ;
  atomic_fetch_sub(&hanging, 1);
  atomic_fetch_add(&hangs_done, 1);
}

/* Reads the state, counts the call, sleeps hang_ms. */
static void enter(fake_state *s, const char *name) {
  load(s);
  count(name);
  hang(s->hang_ms);
}

/* The GPU behind a handle, or an error code. Handles are index + 1. */
static nvmlReturn_t gpu_of(const fake_state *s, nvmlDevice_t d,
                           const fake_gpu **g, unsigned *idx) {
  uintptr_t i = (uintptr_t)d;
  if (i == 0 || i > (uintptr_t)s->gpus)
    return NVML_ERROR_INVALID_ARGUMENT;
  *g = &s->g[i - 1];
  if (idx)
    *idx = (unsigned)(i - 1);
  return (*g)->lost ? NVML_ERROR_GPU_IS_LOST : NVML_SUCCESS;
}

#define DEVICE_CALL(name)                                                      \
  fake_state s;                                                                \
  const fake_gpu *g;                                                           \
  unsigned idx;                                                                \
  enter(&s, name);                                                             \
  if ((uintptr_t)d > 0)                                                        \
    count_gpu((unsigned)((uintptr_t)d - 1));                                   \
  if (atomic_load(&inits) == 0)                                                \
    return NVML_ERROR_UNINITIALIZED;                                           \
  nvmlReturn_t rc = gpu_of(&s, d, &g, &idx);                                   \
  if (rc != NVML_SUCCESS)                                                      \
    return rc;                                                                 \
  (void)idx

/* ---- NVML --------------------------------------------------------------- */

nvmlReturn_t nvmlInit_v2(void) {
  fake_state s;
  enter(&s, "nvmlInit_v2");
  if (s.init_error != NVML_SUCCESS)
    return s.init_error;
  atomic_fetch_add(&inits, 1);
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlShutdown(void) {
  fake_state s;
  load(&s);
  count("nvmlShutdown");
  hang(s.shutdown_hang_ms);
  /* NVML reports no error for more shutdowns than inits. */
  int n = atomic_load(&inits);
  while (n > 0 && !atomic_compare_exchange_weak(&inits, &n, n - 1))
    ;
  return NVML_SUCCESS;
}

const char *nvmlErrorString(nvmlReturn_t rc) {
  return rc == NVML_SUCCESS ? "Success" : "Fake NVML error";
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *n) {
  fake_state s;
  enter(&s, "nvmlDeviceGetCount_v2");
  if (atomic_load(&inits) == 0)
    return NVML_ERROR_UNINITIALIZED;
  if (s.count_error != NVML_SUCCESS)
    return s.count_error;
  *n = (unsigned)s.gpus;
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int i, nvmlDevice_t *d) {
  fake_state s;
  enter(&s, "nvmlDeviceGetHandleByIndex_v2");
  count_gpu(i);
  if (atomic_load(&inits) == 0)
    return NVML_ERROR_UNINITIALIZED;
  if (i >= (unsigned)s.gpus)
    return NVML_ERROR_INVALID_ARGUMENT;
  if (s.g[i].no_permission)
    return NVML_ERROR_NO_PERMISSION;
  /* Like NVIDIA's mock: a lost GPU fails its handle lookup too. */
  if (s.g[i].lost)
    return NVML_ERROR_GPU_IS_LOST;
  *d = (nvmlDevice_t)(uintptr_t)(i + 1);
  return NVML_SUCCESS;
}

/* NVML searches its GPUs for the UUID itself; the caller names no other
 * GPU, so only the one found is counted as named. */
nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *d) {
  fake_state s;
  enter(&s, "nvmlDeviceGetHandleByUUID");
  if (atomic_load(&inits) == 0)
    return NVML_ERROR_UNINITIALIZED;
  if (uuid == NULL || d == NULL)
    return NVML_ERROR_INVALID_ARGUMENT;
  for (int i = 0; i < s.gpus; i++) {
    if (strcmp(s.g[i].uuid, uuid) != 0)
      continue;
    count_gpu((unsigned)i);
    if (s.g[i].no_permission)
      return NVML_ERROR_NO_PERMISSION;
    if (s.g[i].lost)
      return NVML_ERROR_GPU_IS_LOST;
    *d = (nvmlDevice_t)(uintptr_t)(i + 1);
    return NVML_SUCCESS;
  }
  return NVML_ERROR_NOT_FOUND;
}

nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t d, unsigned int *i) {
  DEVICE_CALL("nvmlDeviceGetIndex");
  *i = idx;
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t d, char *name, unsigned int len) {
  DEVICE_CALL("nvmlDeviceGetName");
  if (strlen(g->name) + 1 > len)
    return NVML_ERROR_INSUFFICIENT_SIZE;
  snprintf(name, len, "%s", g->name);
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t d, char *uuid, unsigned int len) {
  DEVICE_CALL("nvmlDeviceGetUUID");
  if (strlen(g->uuid) + 1 > len)
    return NVML_ERROR_INSUFFICIENT_SIZE;
  snprintf(uuid, len, "%s", g->uuid);
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t d,
                                           nvmlUtilization_t *u) {
  DEVICE_CALL("nvmlDeviceGetUtilizationRates");
  if (g->not_supported & NS_UTIL)
    return NVML_ERROR_NOT_SUPPORTED;
  u->gpu = (unsigned)g->util;
  u->memory = (unsigned)(g->util / 2);
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t d, nvmlMemory_t *m) {
  DEVICE_CALL("nvmlDeviceGetMemoryInfo");
  if (g->not_supported & NS_MEMORY)
    return NVML_ERROR_NOT_SUPPORTED;
  m->total = (unsigned long long)(g->mem_total * MIB);
  m->used = (unsigned long long)(g->mem_used * MIB);
  m->free = m->total - m->used;
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t d, int sensor,
                                      unsigned int *t) {
  DEVICE_CALL("nvmlDeviceGetTemperature");
  if (g->not_supported & NS_TEMP)
    return NVML_ERROR_NOT_SUPPORTED;
  if (sensor != NVML_TEMPERATURE_GPU)
    return NVML_ERROR_INVALID_ARGUMENT;
  *t = (unsigned)g->temp;
  return NVML_SUCCESS;
}

#ifndef FAKE_NVML_MINIMAL
nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t d, nvmlMemory_v2_t *m) {
  DEVICE_CALL("nvmlDeviceGetMemoryInfo_v2");
  if (g->not_supported & NS_MEMORY)
    return NVML_ERROR_NOT_SUPPORTED;
  if (m->version != NVML_MEMORY_V2_VERSION)
    return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
  /* As the driver does: part of what v1 calls used is reserved. */
  unsigned long long used = (unsigned long long)(g->mem_used * MIB);
  m->total = (unsigned long long)(g->mem_total * MIB);
  m->reserved = used / 8;
  m->used = used - m->reserved;
  m->free = m->total - used;
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetTemperatureV(nvmlDevice_t d,
                                       nvmlTemperature_v1_t *t) {
  DEVICE_CALL("nvmlDeviceGetTemperatureV");
  if (g->not_supported & NS_TEMP)
    return NVML_ERROR_NOT_SUPPORTED;
  if (t->version != NVML_TEMPERATURE_V1_VERSION)
    return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
  if (t->sensorType != NVML_TEMPERATURE_GPU)
    return NVML_ERROR_INVALID_ARGUMENT;
  t->temperature = (int)g->temp;
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t d, unsigned int *mw) {
  DEVICE_CALL("nvmlDeviceGetPowerUsage");
  if (g->not_supported & NS_POWER)
    return NVML_ERROR_NOT_SUPPORTED;
  *mw = (unsigned)(g->power * 1000);
  return NVML_SUCCESS;
}
#endif
