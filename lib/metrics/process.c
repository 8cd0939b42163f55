/* process.c: the standard process_* metrics, read from /proc at scrape
 * time. One read of /proc serves all six families of one scrape (the
 * collectors share a cache keyed by registry and scrape generation). */
#include "internal.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

typedef struct {
  double cpu_seconds, rss_bytes, vsize_bytes, open_fds, max_fds, start_time;
  bool ok;
} proc_sample;

static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static const void *cache_reg;
static uint64_t cache_gen;
static proc_sample cache;

static double boot_time(void) {
  FILE *f = fopen("/proc/stat", "r");
  char line[256];
  double bt = 0;
  if (f == NULL)
    return 0;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "btime ", 6) == 0) {
      bt = strtod(line + 6, NULL);
      break;
    }
  fclose(f);
  return bt;
}

static void read_sample(proc_sample *s) {
  memset(s, 0, sizeof *s);
  char buf[1024];
  FILE *f = fopen("/proc/self/stat", "r");
  if (f == NULL)
    return;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  /* The command name (field 2) may hold spaces and parens: fields after it
   * start after the last ')'. Field 3 is the first one after it. */
  char *p = strrchr(buf, ')');
  if (p == NULL)
    return;
  p++;
  double field[25] = {0};
  for (int i = 3; i <= 24; i++) {
    while (*p == ' ')
      p++;
    if (*p == '\0')
      break;
    char *end = strchr(p, ' ');
    if (i > 3) /* field 3 is the state letter */
      field[i] = strtod(p, NULL);
    p = end ? end : p + strlen(p);
  }
  double tick = (double)sysconf(_SC_CLK_TCK);
  double page = (double)sysconf(_SC_PAGESIZE);
  s->cpu_seconds = (field[14] + field[15]) / tick;
  s->vsize_bytes = field[23];
  s->rss_bytes = field[24] * page;
  s->start_time = boot_time() + field[22] / tick;

  DIR *d = opendir("/proc/self/fd");
  if (d != NULL) {
    int self = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
      if (e->d_name[0] != '.' && strtol(e->d_name, NULL, 10) != self)
        s->open_fds++;
    closedir(d);
  }
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
    s->max_fds = rl.rlim_cur == RLIM_INFINITY ? -1 : (double)rl.rlim_cur;
  s->ok = true;
}

typedef enum { P_CPU, P_RSS, P_VSIZE, P_OPEN, P_MAX, P_START } which;

static void collect(om_collect *out, void *user) {
  which w = (which)(intptr_t)user;
  proc_sample s;
  pthread_mutex_lock(&cache_mu);
  /* The registry and its scrape generation name one scrape. */
  if (cache_gen != out->generation || cache_reg != out->fam->reg) {
    read_sample(&cache);
    cache_gen = out->generation;
    cache_reg = out->fam->reg;
  }
  s = cache;
  pthread_mutex_unlock(&cache_mu);
  if (!s.ok)
    return;
  double v[] = {s.cpu_seconds, s.rss_bytes, s.vsize_bytes,
                s.open_fds,    s.max_fds,   s.start_time};
  om_collect_value(out, NULL, v[w]);
}

int om_process_collector_register(om_registry *reg, om_error *err) {
  static const struct {
    const char *name, *help;
    om_type type;
  } m[] = {
      {"process_cpu_seconds_total",
       "Total user and system CPU time spent "
       "in seconds.",
       OM_COUNTER},
      {"process_resident_memory_bytes", "Resident memory size in bytes.",
       OM_GAUGE},
      {"process_virtual_memory_bytes", "Virtual memory size in bytes.",
       OM_GAUGE},
      {"process_open_fds", "Number of open file descriptors.", OM_GAUGE},
      {"process_max_fds", "Maximum number of open file descriptors.", OM_GAUGE},
      {"process_start_time_seconds",
       "Start time of the process since unix "
       "epoch in seconds.",
       OM_GAUGE},
  };
  for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
    om_family_opts o = {.name = m[i].name, .help = m[i].help};
    int rc =
        om_collector_new(reg, m[i].type, &o, collect, (void *)(intptr_t)i, err);
    if (rc != OM_OK)
      return rc;
  }
  return OM_OK;
}
