/* nvml_abi.h: the part of the NVML C ABI ORFEAS calls, declared by us so
 * that nothing needs NVIDIA's header or the CUDA toolkit at build time. The
 * ABI is stable; layouts and codes are from nvml.h 13.3 (go-nvml
 * gen/nvml/nvml.h). Shared with the fake NVML in tests/fake-nvml. */
#ifndef ORFEAS_NVML_ABI_H
#define ORFEAS_NVML_ABI_H

typedef int nvmlReturn_t;
typedef struct nvmlDevice_st *nvmlDevice_t;

enum {
  NVML_SUCCESS = 0,
  NVML_ERROR_UNINITIALIZED = 1,
  NVML_ERROR_INVALID_ARGUMENT = 2,
  NVML_ERROR_NOT_SUPPORTED = 3,
  NVML_ERROR_NO_PERMISSION = 4,
  NVML_ERROR_NOT_FOUND = 6,
  NVML_ERROR_INSUFFICIENT_SIZE = 7,
  NVML_ERROR_DRIVER_NOT_LOADED = 9,
  NVML_ERROR_TIMEOUT = 10,
  NVML_ERROR_LIBRARY_NOT_FOUND = 12,
  NVML_ERROR_FUNCTION_NOT_FOUND = 13,
  NVML_ERROR_GPU_IS_LOST = 15,
  NVML_ERROR_RESET_REQUIRED = 16,
  NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18,
  NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25,
  NVML_ERROR_DEPRECATED = 26,
  NVML_ERROR_GPU_NOT_FOUND = 28,
  NVML_ERROR_UNKNOWN = 999
};

#define NVML_TEMPERATURE_GPU 0
#define NVML_NAME_BUFFER 96 /* name and UUID fit in 96 bytes with the NUL */

typedef struct {
  unsigned int gpu;    /* percent of time a kernel ran */
  unsigned int memory; /* percent of time memory was read or written */
} nvmlUtilization_t;

typedef struct { /* v1: bytes; total = free + used */
  unsigned long long total, free, used;
} nvmlMemory_t;

typedef struct { /* v2: total = reserved + free + used */
  unsigned int version;
  unsigned long long total, reserved, free, used;
} nvmlMemory_v2_t;
#define NVML_MEMORY_V2_VERSION                                                 \
  ((unsigned)(sizeof(nvmlMemory_v2_t) | (2u << 24)))

typedef struct {
  unsigned int version;
  unsigned int sensorType;
  int temperature;
} nvmlTemperature_v1_t;
#define NVML_TEMPERATURE_V1_VERSION                                            \
  ((unsigned)(sizeof(nvmlTemperature_v1_t) | (1u << 24)))

#endif
