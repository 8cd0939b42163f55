/* main.c: orfeasd start-up and shutdown.
 *
 * Order matters:
 *  1. SIGINT/SIGTERM are blocked before any thread starts (the log
 *     writer's, MHD's, the workers', the hub's), so every thread inherits
 *     the mask and only main ever takes them (sigwait, or sigtimedwait
 *     between start-up steps: a signal during start-up stops it there and
 *     exits 0 without opening the listener).
 *  2. The log writer, metrics, cache, jobs, hub, workers, then HTTP:
 *     nothing is reachable before what it calls exists. /ready turns 200
 *     once workers run. Any step that fails logs the reason and main exits
 *     1 at once: what was started is stopped (threads joined) and freed.
 *  3. On a signal the process exits within --drain-timeout (D): mark
 *     draining (nothing new is served on connections opened from then,
 *     http.c's refuse_early; /ready 503, generate 503), leave queued jobs
 *     queued in a durable store (they run after the next start; the memory
 *     store fails them with a clear status) and give running ones until D
 *     minus a reserve to finish and have their ends recorded; past that,
 *     cancel them (they end failed, "service shutting down") and wait a
 *     little more. The hub then delivers the last events and closes
 *     clients (1001), HTTP stops, the log is flushed. Exit 0. A worker
 *     stuck inside a stage is not waited for: the process exits without
 *     freeing what it uses.
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
#include "store.h"

static const char *env_get(const char *name) { return getenv(name); }

static void gpu_log(void *user, const char *line) {
  (void)user;
  od_log("gpu: %s", line);
}

/* A signal that came during start-up (taken, not left pending). */
static int pending_signal(const sigset_t *set) {
  static const struct timespec zero = {0, 0};
  int sig = sigtimedwait(set, NULL, &zero);
  return sig > 0 ? sig : 0;
}

static const char *signame(int sig) {
  return sig == SIGTERM ? "SIGTERM" : "SIGINT";
}

/* Start-up, step by step; 0 when serving, 1 on a failure (err filled), 2
 * when a signal came first (*sig). */
static int start(od_service *svc, const sigset_t *set, int *sig, char *err,
                 size_t err_len) {
  if (od_metrics_init(&svc->m, svc->cfg.node_id, err, err_len) != 0)
    return 1;
  od_log_set_counter(svc->m.log_dropped);
  /* The GPU sampler starts after the signal mask is set (its thread
   * inherits it) and its families join the registry before /metrics exists.
   * A missing NVML is not an error: it logs one line and reports no GPU. */
  orfeas_gpu_opts gopts = {.nvml_lib =
                               svc->cfg.nvml_lib[0] ? svc->cfg.nvml_lib : NULL,
                           .interval_s = svc->cfg.gpu_interval_s,
                           .call_timeout_s = svc->cfg.gpu_call_timeout_s,
                           .log = gpu_log,
                           .gpus = svc->cfg.gpus};
  /* CUDA_VISIBLE_DEVICES numbers GPUs CUDA's way (fastest first unless
   * CUDA_DEVICE_ORDER=PCI_BUS_ID), not NVML's, and is often set for some
   * other program: following it could watch the wrong boards. Say so once
   * where an operator might expect it to apply (docs/gpu.md). */
  const char *cvd = getenv("CUDA_VISIBLE_DEVICES");
  if (cvd != NULL && cvd[0] != '\0' && strcmp(svc->cfg.gpus, "all") == 0)
    od_log("gpu: CUDA_VISIBLE_DEVICES=%.200s is set, but GPU metrics cover "
           "every GPU NVML lists: CUDA's numbering is not NVML's; to watch "
           "only some, give --gpus their UUIDs (nvidia-smi -L)",
           cvd);
  if ((svc->gpu = orfeas_gpu_start(svc->m.reg, &gopts, err, err_len)) == NULL)
    return 1;
  if ((*sig = pending_signal(set)) != 0)
    return 2;
  if (mkdir(svc->cfg.data_dir, 0700) != 0 && errno != EEXIST) {
    snprintf(err, err_len, "--data-dir: cannot create %.300s: %s",
             svc->cfg.data_dir, strerror(errno));
    return 1;
  }
  char cache_dir[PATH_MAX];
  snprintf(cache_dir, sizeof cache_dir, "%.*s/cache", PATH_MAX - 16,
           svc->cfg.data_dir);
  svc->cache = od_cache_new((size_t)svc->cfg.cache_memory_mb << 20, cache_dir,
                            (size_t)svc->cfg.cache_disk_mb << 20, err, err_len);
  if (svc->cache == NULL)
    return 1;
  svc->imgmemo = od_imgmemo_new((size_t)svc->cfg.image_memo_mb << 20);
  if (svc->imgmemo == NULL) {
    snprintf(err, err_len, "out of memory for the image memo");
    return 1;
  }
  om_gauge_set(svc->m.data_dir_min_free,
               (double)svc->cfg.min_free_mb * 1048576);
  for (int t = 0; t < OD_CACHE_TIERS; t++)
    om_gauge_set(svc->m.cache_size[t],
                 (double)od_cache_bytes(svc->cache, (od_cache_tier)t));
  if (svc->cfg.rate_limit_rps > 0) {
    svc->rl = od_ratelimit_new(svc->cfg.rate_limit_rps,
                               svc->cfg.rate_limit_burst, 4096);
    if (svc->rl == NULL) {
      snprintf(err, err_len, "out of memory for the rate limiter");
      return 1;
    }
  }
  if (od_static_init(svc, "/proc/self/exe", err, err_len) != 0)
    return 1;
  if ((svc->jobs = od_jobs_new(svc, err, err_len)) == NULL)
    return 1;
  if ((*sig = pending_signal(set)) != 0)
    return 2;
  if ((svc->hub = od_hub_new(svc, err, err_len)) == NULL ||
      od_hub_start(svc->hub, err, err_len) != 0 ||
      od_jobs_start(svc->jobs, err, err_len) != 0)
    return 1;
  if ((*sig = pending_signal(set)) != 0)
    return 2;
  return od_http_start(svc, err, err_len) != 0 ? 1 : 0;
}

static void announce(const od_service *svc) {
  const char *host = svc->cfg.listen_host;
  unsigned port = svc->cfg.listen_port;
  od_log("listening on http://%s:%u (workers=%d queue=%d data-dir=%s)", host,
         port, svc->cfg.workers, svc->cfg.queue_size, svc->cfg.data_dir);
  od_log("  API       http://%s:%u/api/upload-image, /api/generate-3d, "
         "/api/job-status/ID",
         host, port);
  /* With --admin-listen, /health, /ready and /metrics answer there alone
   * (404 on the public listener): name the address an operator must use. */
  if (svc->cfg.admin_host[0]) {
    od_log("  health    http://%s:%u/health  /ready  (and "
           "http://%s:%u/api/health)",
           svc->cfg.admin_host, (unsigned)svc->cfg.admin_port, host, port);
    od_log("  metrics   http://%s:%u/metrics", svc->cfg.admin_host,
           (unsigned)svc->cfg.admin_port);
  } else {
    od_log("  health    http://%s:%u/health  /ready  /api/health", host, port);
    od_log("  metrics   http://%s:%u/metrics", host, port);
  }
  od_log("  websocket ws://%s:%u/ws", host, port);
  /* Which store, and the node's name in it (--node-id: the node label of
   * its metrics, the consumer in Redis): the first thing to check when a
   * node does not see the cluster's jobs. */
  char store[256];
  od_store_url_shown(svc->cfg.store, store, sizeof store);
  od_log("  store     %s  (node %s)", store, svc->cfg.node_id);
  if (svc->static_fd >= 0)
    od_log("  studio    http://%s:%u/  (page from %s)", host, port,
           svc->static_path);
  else
    od_log("  studio    not installed (no static/ next to the binary; see "
           "--static-dir)");
}

/* The drain, within --drain-timeout of t0. 0, or the number of workers
 * left running (main then frees nothing they use). */
static int drain(od_service *svc, int sig, double t0) {
  double d = svc->cfg.drain_timeout_s;
  /* The reserve after the jobs' deadline: the cancellations, the hub's
   * last events and goodbyes, HTTP's stop and the log's flush. */
  double reserve = d / 4 < 2.0 ? d / 4 : 2.0;
  od_log("%s: draining (no new connections; queued jobs %s; running jobs "
         "have %.3gs to finish)",
         signame(sig),
         strncmp(svc->cfg.store, "memory:", 7) == 0
             ? "fail"
             : "stay queued for the next start",
         d - reserve);
  /* From here nothing new is served on a connection opened after this
   * (http.c's refuse_early: a GET closed unanswered, any other method
   * 503), /ready and generate-3d answer 503. */
  svc->draining = 1;
  svc->ready = 0;
  int left = od_jobs_drain(svc->jobs, t0 + d - reserve, t0 + d - reserve / 2);
  od_hub_stop(svc->hub, t0 + d - reserve / 4);
  od_http_stop(svc);
  od_log("stopped");
  return left;
}

/* *left: workers still running after the drain; *exit_by: when the
 * process must be gone (od_now() seconds; 0 when no drain ran). */
static int run(od_service *svc, int *left, double *exit_by) {
  char err[512];
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  signal(SIGPIPE, SIG_IGN);
  od_log_opts lo = {.level = (od_log_level)svc->cfg.log_level_n,
                    .json = svc->cfg.log_json,
                    .buffer_bytes = (size_t)svc->cfg.log_buffer_kb << 10};
  if (od_log_start(&lo, err, sizeof err) != 0) {
    fprintf(stderr, "orfeasd: %s\n", err);
    return 1;
  }
  int sig = 0;
  int rc = start(svc, &set, &sig, err, sizeof err);
  if (rc == 1) {
    od_logl(OD_LOG_ERROR, "%s", err);
    return 1;
  }
  if (rc == 2) {
    od_log("%s during start-up: stopping", signame(sig));
    return 0;
  }
  svc->ready = 1;
  announce(svc);
  sigwait(&set, &sig);
  double t0 = od_now();
  *exit_by = t0 + svc->cfg.drain_timeout_s;
  *left = drain(svc, sig, t0);
  return 0;
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
  /* Each listener's Host allow-list: the same --allowed-hosts, its own
   * address and loopback default (hosts.c). The admin listener's too: a
   * rebound page could otherwise read /metrics on a loopback admin port. */
  if (rc == 0)
    rc = od_hosts_parse(&svc.hosts[0], svc.cfg.allowed_hosts,
                        svc.cfg.listen_host, err, sizeof err);
  if (rc == 0)
    rc = od_hosts_parse(&svc.hosts[1], svc.cfg.allowed_hosts,
                        svc.cfg.admin_host, err, sizeof err);
  if (rc != 0) {
    fprintf(stderr, "orfeasd: %s\n", err);
    return 2;
  }
  int left = 0;
  double exit_by = 0;
  rc = run(&svc, &left, &exit_by);
  /* What the log may still take to reach stderr: a second, or less when
   * the drain's time is shorter (a reader that reads empties the ring in
   * milliseconds; one that does not is not waited for). */
  double flush = exit_by > 0 ? exit_by - od_now() : 1.0;
  if (flush > 1.0)
    flush = 1.0;
  if (flush < 0.05)
    flush = 0.05;
  if (left > 0) {
    /* Workers still inside a stage use the jobs, the store, the cache and
     * the metrics: exit without freeing them. And without exit()'s
     * destructors: the GPU sampler was not stopped on this path and may be
     * inside libnvidia-ml, whose own teardown would then run beside it
     * (as for a sampler stuck at stop, below). */
    od_log_stop(flush);
    fflush(NULL);
    _exit(rc);
  }
  od_hub_stop(svc.hub, od_now() + 1.0); /* a failed start-up */
  od_http_stop(&svc);
  /* After HTTP: no scrape reads the GPU collectors any more. A sampler
   * stuck in NVML is waited for only within the drain's time; left behind,
   * it still writes into the metrics, which then stay. */
  double gpu_wait = exit_by > 0 ? exit_by - od_now() - flush : 1.0;
  int gpu_left = orfeas_gpu_stop(svc.gpu, gpu_wait > 0.05 ? gpu_wait : 0.05);
  od_jobs_quiet(svc.jobs); /* no event reaches the hub any more */
  od_hub_free(svc.hub);
  od_jobs_free(svc.jobs);
  od_cache_free(svc.cache);
  od_imgmemo_free(svc.imgmemo);
  od_ratelimit_free(svc.rl);
  od_static_free(&svc);
  /* The log last but one: the lines above may still be in its ring. */
  od_log_stop(flush);
  if (gpu_left) {
    /* A sampler stuck in NVML (nvmlShutdown in a wedged driver) still runs
     * inside libnvidia-ml: leave without exit()'s destructors, which would
     * run the library's own teardown beside the stuck call. Everything but
     * the metrics is freed above. */
    fflush(NULL);
    _exit(rc);
  }
  od_metrics_free(&svc.m);
  return rc;
}
