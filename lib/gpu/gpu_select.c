/* gpu_select.c: the --gpus list, checked before anything starts. */
#include "gpu_internal.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define UUID_HELP "as nvidia-smi -L prints it"

/* "GPU-" and 8-4-4-4-12 hex digits into out, hex in lower case (NVML's
 * spelling: nvmlDeviceGetHandleByUUID compares text). */
static bool parse_uuid(const char *s, size_t len, char *out) {
  static const int groups[] = {8, 4, 4, 4, 12};
  if (len != 4 + 32 + 4 || strncasecmp(s, "GPU-", 4) != 0)
    return false;
  memcpy(out, "GPU-", 4);
  size_t at = 4;
  for (int grp = 0; grp < 5; grp++) {
    if (grp > 0) {
      if (s[at] != '-')
        return false;
      out[at] = '-';
      at++;
    }
    for (int k = 0; k < groups[grp]; k++, at++) {
      if (!isxdigit((unsigned char)s[at]))
        return false;
      out[at] = (char)tolower((unsigned char)s[at]);
    }
  }
  out[at] = '\0';
  return true;
}

int gpu_select_parse(const char *list, gpu_select *sel, unsigned *n, char *err,
                     size_t errlen) {
  *n = 0;
  if (list == NULL || strcmp(list, "all") == 0)
    return 0;
  if (list[0] == '\0') {
    snprintf(err, errlen,
             "empty: give \"all\" (the default) or a comma list of NVML "
             "indexes and GPU UUIDs (nvidia-smi -L prints both)");
    return -1;
  }
  unsigned item = 0;
  for (const char *p = list;; p++) {
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    item++;
    /* Spaces around an item are allowed: "0, 1" reads naturally. */
    while (len > 0 && isspace((unsigned char)*p)) {
      p++;
      len--;
    }
    while (len > 0 && isspace((unsigned char)p[len - 1]))
      len--;
    if (len == 0) {
      snprintf(err, errlen,
               "item %u is empty (a doubled or trailing comma?); give NVML "
               "indexes and GPU UUIDs separated by single commas",
               item);
      return -1;
    }
    int shown = len > 60 ? 60 : (int)len; /* for messages */
    if (len == 3 && strncmp(p, "all", 3) == 0) {
      snprintf(err, errlen,
               "\"all\" alone means every GPU; it cannot be listed with "
               "others");
      return -1;
    }
    if (*n == GPU_MAX) {
      snprintf(err, errlen, "more than %d GPUs listed", GPU_MAX);
      return -1;
    }
    gpu_select s = {.index = -1};
    if (isdigit((unsigned char)p[0])) {
      size_t k = 0;
      unsigned long v = 0;
      while (k < len && isdigit((unsigned char)p[k])) {
        if (v < 1000000)
          v = v * 10 + (unsigned long)(p[k] - '0');
        k++;
      }
      if (k == len) {
        if (v >= GPU_MAX) {
          snprintf(err, errlen,
                   "index %.*s is past the %d GPUs orfeasd can watch "
                   "(0..%d)",
                   shown, p, GPU_MAX, GPU_MAX - 1);
          return -1;
        }
        s.index = (int)v;
      }
    } else if (len >= 4 && strncasecmp(p, "MIG-", 4) == 0) {
      snprintf(err, errlen,
               "\"%.*s\" is a MIG instance: orfeasd watches whole GPUs; give "
               "the UUID of its GPU (the GPU- line above it in "
               "nvidia-smi -L)",
               shown, p);
      return -1;
    } else if (len >= 4 && strncasecmp(p, "GPU-", 4) == 0) {
      if (!parse_uuid(p, len, s.uuid)) {
        snprintf(err, errlen,
                 "\"%.*s\" is not a GPU UUID: GPU- and 32 hex digits in "
                 "groups of 8-4-4-4-12, " UUID_HELP,
                 shown, p);
        return -1;
      }
    }
    if (s.index < 0 && s.uuid[0] == '\0') {
      snprintf(err, errlen,
               "\"%.*s\" is neither an NVML index (0, 1, ...: the order of "
               "nvidia-smi -L) nor a GPU UUID (GPU-..., " UUID_HELP ")",
               shown, p);
      return -1;
    }
    for (unsigned j = 0; j < *n; j++)
      if (s.index >= 0 ? sel[j].index == s.index
                       : strcmp(sel[j].uuid, s.uuid) == 0) {
        snprintf(err, errlen, "\"%.*s\" is listed twice", shown, p);
        return -1;
      }
    sel[(*n)++] = s;
    if (end == NULL)
      return 0;
    p = end;
  }
}

int orfeas_gpu_select_check(const char *list, char *err, size_t errlen) {
  gpu_select sel[GPU_MAX]; /* only the verdict is kept */
  unsigned n;
  return gpu_select_parse(list, sel, &n, err, errlen);
}
