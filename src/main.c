/* main.c: orfeasd start-up and shutdown.
 *
 * Order matters:
 *  1. SIGINT/SIGTERM are blocked before any thread starts (MHD's, the
 *     workers', the hub's), so every thread inherits the mask and only
 *     main's sigwait() ever sees them.
 *  2. Metrics, cache, jobs, hub, workers, then HTTP: nothing is reachable
 *     before what it calls exists. /ready turns 200 once workers run.
 *  3. On a signal: stop accepting (quiesce the listener), mark draining
 *     (/ready 503, generate 503), leave queued jobs queued in a durable
 *     store (they run after the next start; the memory store fails them
 *     with a clear status), wait for running ones and for their ends to be
 *     recorded (their events still go out), let the hub deliver the last
 *     events and close clients, then stop HTTP. Exit 0.
 */
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "orfeas_build.h" /* generated: version, git revision, build type */
#include "orfeasd.h"

static const char *env_get(const char *name) { return getenv(name); }

static void gpu_log(void *user, const char *line) {
  (void)user;
  od_log("gpu: %s", line);
}

static int run(od_service *svc) {
  char err[512];
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  signal(SIGPIPE, SIG_IGN);

  if (od_metrics_init(&svc->m, err, sizeof err) != 0)
    goto fail;
  /* The GPU sampler starts after the signal mask is set (its thread
   * inherits it) and its families join the registry before /metrics exists.
   * A missing NVML is not an error: it logs one line and reports no GPU. */
  orfeas_gpu_opts gopts = {.nvml_lib = svc->cfg.nvml_lib[0] ? svc->cfg.nvml_lib : NULL,
                           .interval_s = svc->cfg.gpu_interval_s,
                           .call_timeout_s = svc->cfg.gpu_call_timeout_s,
                           .log = gpu_log};
  if ((svc->gpu = orfeas_gpu_start(svc->m.reg, &gopts, err, sizeof err)) == NULL)
    goto fail;
  if (mkdir(svc->cfg.data_dir, 0700) != 0 && errno != EEXIST) {
    snprintf(err, sizeof err, "--data-dir: cannot create %.300s: %s", svc->cfg.data_dir,
             strerror(errno));
    goto fail;
  }
  char cache_dir[PATH_MAX];
  snprintf(cache_dir, sizeof cache_dir, "%.*s/cache", PATH_MAX - 16, svc->cfg.data_dir);
  svc->cache = od_cache_new((size_t)svc->cfg.cache_memory_mb << 20, cache_dir,
                            (size_t)svc->cfg.cache_disk_mb << 20, err, sizeof err);
  if (svc->cache == NULL)
    goto fail;
  for (int t = 0; t < OD_CACHE_TIERS; t++)
    om_gauge_set(svc->m.cache_size[t], (double)od_cache_bytes(svc->cache, (od_cache_tier)t));
  if (svc->cfg.rate_limit_rps > 0) {
    svc->rl = od_ratelimit_new(svc->cfg.rate_limit_rps, svc->cfg.rate_limit_burst, 4096);
    if (svc->rl == NULL) {
      snprintf(err, sizeof err, "out of memory for the rate limiter");
      goto fail;
    }
  }
  if (od_static_init(svc, "/proc/self/exe", err, sizeof err) != 0)
    goto fail;
  if ((svc->jobs = od_jobs_new(svc, err, sizeof err)) == NULL ||
      (svc->hub = od_hub_new(svc, err, sizeof err)) == NULL ||
      od_hub_start(svc->hub, err, sizeof err) != 0 ||
      od_jobs_start(svc->jobs, err, sizeof err) != 0 ||
      od_http_start(svc, err, sizeof err) != 0)
    goto fail;
  svc->ready = 1;
  od_log("listening on http://%s:%u (workers=%d queue=%d data-dir=%s)",
         svc->cfg.listen_host, svc->cfg.listen_port, svc->cfg.workers,
         svc->cfg.queue_size, svc->cfg.data_dir);
  od_log("  API       http://%s:%u/api/upload-image, /api/generate-3d, /api/job-status/ID",
         svc->cfg.listen_host, svc->cfg.listen_port);
  od_log("  health    http://%s:%u/health  /ready  /api/health", svc->cfg.listen_host,
         svc->cfg.listen_port);
  od_log("  metrics   http://%s:%u/metrics", svc->cfg.listen_host, svc->cfg.listen_port);
  od_log("  websocket ws://%s:%u/ws", svc->cfg.listen_host, svc->cfg.listen_port);
  if (svc->static_fd >= 0)
    od_log("  studio    http://%s:%u/  (page from %s)", svc->cfg.listen_host,
           svc->cfg.listen_port, svc->static_path);
  else
    od_log("  studio    not installed (no static/ next to the binary; see --static-dir)");

  int sig = 0;
  sigwait(&set, &sig);
  od_log("%s: draining (no new connections; running jobs finish; queued jobs %s)",
         sig == SIGTERM ? "SIGTERM" : "SIGINT",
         strncmp(svc->cfg.store, "memory:", 7) == 0 ? "fail" : "stay queued for the next start");
  svc->draining = 1;
  svc->ready = 0;
  od_http_quiesce(svc);
  od_jobs_drain(svc->jobs);
  od_hub_stop(svc->hub);
  od_http_stop(svc);
  od_log("stopped");
  return 0;

fail:
  od_log("error: %s", err);
  return 1;
}

int main(int argc, char **argv) {
  /* Owned by main for the life of the process. */
  static od_service svc;
  /* A job allocates and frees tens of MB (the decoded image, the grid, the
   * mesh, the model). glibc's defaults hand that back to the kernel between
   * jobs in the workers' arenas, and the next job faults it in again: on a
   * VM a page fault costs 10-20 us, about 20 ms of a 31 ms job at 1024 px
   * (docs/performance.md, api_vs_pipeline). Keep freed memory for the next
   * job: blocks under 32 MB come from the arenas, and an arena keeps up to
   * 128 MB free at its top. Larger blocks (a 4096 px image) are still
   * mapped and unmapped per job. */
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 128 << 20);
  char err[512];
  svc.static_fd = -1;
  od_config_defaults(&svc.cfg);
  int rc = od_config_parse(&svc.cfg, argc, argv, env_get, err, sizeof err);
  if (rc == 1) {
    char usage[16384];
    od_config_usage(usage, sizeof usage);
    fputs(usage, stdout);
    return 0;
  }
  if (rc == 2) {
    orfeas_print_version(stdout, "orfeasd");
    return 0;
  }
  if (rc == 0)
    rc = od_cors_parse(&svc.cors, svc.cfg.cors_origins, err, sizeof err);
  if (rc != 0) {
    fprintf(stderr, "orfeasd: %s\n", err);
    return 2;
  }
  rc = run(&svc);
  od_http_stop(&svc);
  /* After HTTP: no scrape reads the GPU collectors any more. */
  orfeas_gpu_stop(svc.gpu);
  od_hub_free(svc.hub);
  od_jobs_free(svc.jobs);
  od_cache_free(svc.cache);
  od_ratelimit_free(svc.rl);
  od_static_free(&svc);
  od_metrics_free(&svc.m);
  return rc;
}
