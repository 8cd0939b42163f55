/* bench_service.c: the orfeasd cases of `make bench` (issue #4).
 *
 *  api_metrics_overhead  requests/s of GET /health, request metrics on vs
 *                        --http-metrics 0, with an A/A control: three orfeasd
 *                        processes compared request by request (the design
 *                        and why: the comment opening that section below).
 * Closed loop: one request in flight per server. api_metrics_overhead_saturated
 *                        the same with pipelined batches of 16, so the server
 *                        is busy the whole time.
 *  scrape_under_load     GET /metrics latency (p50, p99, max) over keep-alive
 *                        while every worker runs pipeline jobs (1024 px PNG,
 *                        quality 10, distinct sizes so none is a cache hit);
 *                        once as shipped (workers at nice 10), once with
 *                        --worker-nice 0 (the *_nice0 figures).
 *
 * Servers run with --access-log 0: the log line is not request metrics, and
 * its write would only add noise. The binary is the build's orfeasd, next to
 * this one.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "orfeasd.h"
#include "pl_images.h"

/* >= 0: start_server pins the servers it starts (all their threads) to it. */
static int g_server_cpu = -1;

static void pin_self(int cpu) {
  cpu_set_t cs;
  CPU_ZERO(&cs);
  CPU_SET(cpu, &cs);
  if (sched_setaffinity(0, sizeof cs, &cs) != 0)
    fprintf(stderr, "bench_service: could not pin to CPU %d\n", cpu);
}

int start_server(server *s, const char *const *extra) {
  char exe[PATH_MAX], bin[PATH_MAX + 16], logp[PATH_MAX + 16];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0)
    return -1;
  exe[n] = '\0';
  char *slash = strrchr(exe, '/');
  *slash = '\0';
  snprintf(bin, sizeof bin, "%s/orfeasd", exe);
  /* Beside the bench binary, not in /tmp: the job store's syncs must cost
   * what they cost on the disk the service would use (a tmpfs /tmp would
   * make them free). */
  if (snprintf(s->dir, sizeof s->dir, "%.3900s/bench-tmp", exe) > 0)
    mkdir(s->dir, 0700);
  snprintf(s->dir, sizeof s->dir, "%.3900s/bench-tmp/orfeas-bench-XXXXXX", exe);
  if (mkdtemp(s->dir) == NULL)
    return -1;
  snprintf(logp, sizeof logp, "%s/log", s->dir);
  char data[PATH_MAX + 16];
  snprintf(data, sizeof data, "%s/data", s->dir);
  const char *argv[24] = {
      bin, "--listen", "127.0.0.1:0", "--data-dir", data, "--access-log", "0"};
  int a = 7;
  for (int i = 0; extra && extra[i] && a < 22; i++)
    argv[a++] = extra[i];
  argv[a] = NULL;
  s->pid = fork();
  if (s->pid == 0) {
    int fd = open(logp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd >= 0)
      dup2(fd, 2);
    if (g_server_cpu >= 0)
      pin_self(g_server_cpu); /* before exec: every thread inherits it */
    execv(bin, (char *const *)argv);
    _exit(127);
  }
  /* Wait (with a deadline) for the "listening on" line to learn the port. */
  for (int tries = 0; tries < 500; tries++) {
    FILE *f = fopen(logp, "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
      char *p = strstr(line, "listening on http://127.0.0.1:");
      if (p) {
        s->port = (int)strtol(p + 30, NULL, 10);
        fclose(f);
        return 0;
      }
    }
    if (f)
      fclose(f);
    struct timespec ts = {0, 10 * 1000000};
    nanosleep(&ts, NULL);
  }
  fprintf(stderr, "bench_service: %s did not start (see %s)\n", bin, logp);
  return -1;
}

/* The stopped servers' folders, removed when the bench ends
 * (bench_remove_folders), not at stop_server: deleting a case's thousands of
 * files makes ext4 without a journal (this VM's root) skip each deleted
 * inode for 30 s to 5.5 min at every file created after
 * (`recently_deleted()`), so the next case's orfeasd paid for the previous
 * case's rm (0.05-0.25 ms of CPU a job in `perf`; docs/performance.md).
 * Past KEPT_MAX folders, removed at once. */
#define KEPT_MAX 64
static char g_kept[KEPT_MAX][PATH_MAX];
static int g_nkept;

static void remove_folder(const char *dir) {
  char cmd[PATH_MAX + 16];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0)
    fprintf(stderr, "bench_service: could not remove %s\n", dir);
}

void stop_server(server *s) {
  if (s->pid > 0) {
    kill(s->pid, SIGTERM);
    waitpid(s->pid, NULL, 0);
    s->pid = 0;
  }
  if (s->dir[0] == '\0')
    return;
  if (g_nkept < KEPT_MAX)
    snprintf(g_kept[g_nkept++], PATH_MAX, "%s", s->dir);
  else
    remove_folder(s->dir);
  s->dir[0] = '\0';
}

void bench_remove_folders(void) {
  for (int i = 0; i < g_nkept; i++)
    remove_folder(g_kept[i]);
  g_nkept = 0;
}

int connect_to(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    if (fd >= 0)
      close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

/* Writes all of data; 0, or -1 on error. */
int send_all(int fd, const void *data, size_t len) {
  size_t off = 0;
  while (off < len) {
    ssize_t w = send(fd, (const char *)data + off, len - off, MSG_NOSIGNAL);
    if (w <= 0)
      return -1;
    off += (size_t)w;
  }
  return 0;
}

/* Appends what the socket has to *buf (grown as needed, NUL-terminated);
 * returns the new fill, -1 on error or EOF. */
ssize_t recv_more(int fd, char **buf, size_t *cap, size_t have) {
  if (have + 65536 > *cap) {
    size_t nc = (*cap ? *cap * 2 : 131072) + have;
    char *nb = realloc(*buf, nc);
    if (nb == NULL)
      return -1;
    *buf = nb;
    *cap = nc;
  }
  ssize_t r = recv(fd, *buf + have, *cap - have - 1, 0);
  if (r <= 0)
    return -1;
  have += (size_t)r;
  (*buf)[have] = '\0';
  return (ssize_t)have;
}

/* Sends req and reads one response (headers + Content-Length body) into
 * buf; returns the status, -1 on error. *body_at gets the body offset. */
int roundtrip(int fd, const void *req, size_t req_len, char **buf, size_t *cap,
              size_t *len, size_t *body_at) {
  if (send_all(fd, req, req_len) != 0)
    return -1;
  size_t have = 0, need = 0;
  char *hend = NULL;
  for (;;) {
    ssize_t h = recv_more(fd, buf, cap, have);
    if (h < 0)
      return -1;
    have = (size_t)h;
    if (hend == NULL && (hend = strstr(*buf, "\r\n\r\n")) != NULL) {
      char *cl = strcasestr(*buf, "content-length:");
      need = (size_t)(hend + 4 - *buf) +
             (cl && cl < hend ? strtoul(cl + 15, NULL, 10) : 0);
    }
    if (hend != NULL && have >= need)
      break;
  }
  *len = have;
  *body_at = (size_t)(hend + 4 - *buf);
  return (int)strtol(*buf + 9, NULL, 10);
}

/* ---- api_metrics_overhead, api_metrics_overhead_saturated -----------------
 *
 * Why this design: on the shared 2-core VMs this runs on, the machine's
 * speed moves by ~10% between half-second windows (a plain CPU loop shows
 * it) and a vCPU is sometimes stalled for milliseconds. Comparing servers
 * measured one after the other, even in alternating rounds, left an A/A
 * control (two identical servers) 3-15% apart, far above the 1% to resolve.
 * Three things brought the control to within a few tenths of a percent:
 *
 *  - Request-level interleaving: one keep-alive connection to each of three
 *    orfeasd processes (metrics on, --http-metrics 0, and a second "on" as
 *    the A/A control); each cycle sends one request (or one pipelined batch)
 *    to each, in a rotating order, timing each. Whatever the machine does
 *    lands on all three within a fraction of a millisecond, and the
 *    per-cycle ratio cancels it. Stalls make the latency heavy-tailed, so an
 *    epoch's ratio is the median of its per-cycle ratios.
 *  - Pinning: the servers share CPU 1, the client runs on CPU 0. Unpinned,
 *    where the scheduler put each server moved its rate by up to 13% for a
 *    whole epoch. One HTTP thread per server, for the same reason.
 *  - Epochs of fresh processes: identical processes differ by 1-4% in CPU
 *    per request for their whole life (layout, page placement), more at
 *    saturation. Each epoch starts the three anew (in a rotated order), and
 *    the figure is the mean over epochs with a Student-t 95% interval, so
 *    that process-to-process spread is inside the interval, not hidden.
 */
enum { OV_ON, OV_OFF, OV_CTL, OV_NS };

typedef struct {
  const char *name;
  int depth;      /* requests per batch; 1 = plain closed loop */
  int epochs;     /* <= OV_MAX_EPOCHS */
  double seconds; /* measured time over all epochs */
  int verbose;    /* a line per epoch on stderr */
} ov_plan;

enum { OV_MAX_EPOCHS = 256 };

/* ORFEAS_BENCH_OVERHEAD_SCALE scales both cases' measured time (default 1:
 * 60 s closed loop, 90 s saturated); 0.1..60. */
static double overhead_scale(void) {
  const char *e = getenv("ORFEAS_BENCH_OVERHEAD_SCALE");
  double v = e ? strtod(e, NULL) : 1.0;
  return v >= 0.1 && v <= 60.0 ? v : 1.0;
}

int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Pipelined: sends `depth` copies of req in one write and reads `depth`
 * responses; returns how many were 200, -1 on error. */
static int batch_roundtrip(int fd, const char *reqs, size_t reqs_len, int depth,
                           char **buf, size_t *cap) {
  if (send_all(fd, reqs, reqs_len) != 0)
    return -1;
  int got = 0, ok = 0;
  size_t have = 0, pos = 0;
  while (got < depth) {
    ssize_t hv = recv_more(fd, buf, cap, have);
    if (hv < 0)
      return -1;
    have = (size_t)hv;
    for (;;) { /* every complete response now in the buffer */
      char *h = strstr(*buf + pos, "\r\n\r\n");
      if (h == NULL)
        break;
      char *cl = strcasestr(*buf + pos, "content-length:");
      size_t need = (size_t)(h + 4 - *buf) +
                    (cl && cl < h ? strtoul(cl + 15, NULL, 10) : 0);
      if (need > have)
        break;
      ok += strncmp(*buf + pos + 9, "200", 3) == 0;
      pos = need;
      got++;
    }
  }
  return ok;
}

typedef struct {
  int port;
  double seconds;
  long done;
} load_arg;

static void *health_loop(void *p) {
  load_arg *a = p;
  int fd = connect_to(a->port);
  static const char req[] = "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n";
  char *buf = NULL;
  size_t cap = 0, len, at;
  double end = bench_now_ns() + a->seconds * 1e9;
  while (fd >= 0 && bench_now_ns() < end) {
    if (roundtrip(fd, req, sizeof req - 1, &buf, &cap, &len, &at) != 200)
      break;
    a->done++;
  }
  if (fd >= 0)
    close(fd);
  free(buf);
  return NULL;
}

/* user + system CPU of a process, in seconds (/proc/PID/stat fields 14, 15). */
int proc_stat(pid_t pid, double *cpu_s, double *minflt) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  char *p = strrchr(buf, ')'); /* the command name may hold spaces */
  unsigned long mf = 0, ut = 0, st = 0;
  if (p == NULL ||
      sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %lu %*u %*u %*u %lu %lu", &mf,
             &ut, &st) != 3)
    return -1;
  if (cpu_s)
    *cpu_s = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
  if (minflt)
    *minflt = (double)mf;
  return 0;
}

double proc_cpu_s(pid_t pid) {
  double c;
  return proc_stat(pid, &c, NULL) == 0 ? c : -1;
}

/* Server CPU per request at saturation: 4 connections for `seconds`. */
static double server_cpu_ns_per_request(const server *s, double seconds) {
  enum { CLIENTS = 4 };
  pthread_t t[CLIENTS];
  load_arg a[CLIENTS];
  double c0 = proc_cpu_s(s->pid);
  for (int i = 0; i < CLIENTS; i++) {
    a[i] = (load_arg){s->port, seconds, 0};
    pthread_create(&t[i], NULL, health_loop, &a[i]);
  }
  long total = 0;
  for (int i = 0; i < CLIENTS; i++) {
    pthread_join(t[i], NULL);
    total += a[i].done;
  }
  double c1 = proc_cpu_s(s->pid);
  return total > 0 && c0 >= 0 && c1 > c0 ? (c1 - c0) * 1e9 / (double)total : -1;
}

/* The two CPUs to pin to (servers, client), or -1 when fewer than two are
 * allowed. */
static void pick_cpus(int *server_cpu, int *client_cpu) {
  cpu_set_t cs;
  *server_cpu = *client_cpu = -1;
  if (sched_getaffinity(0, sizeof cs, &cs) != 0)
    return;
  for (int c = 0; c < CPU_SETSIZE; c++)
    if (CPU_ISSET(c, &cs)) {
      if (*client_cpu < 0)
        *client_cpu = c;
      else if (*server_cpu < 0)
        *server_cpu = c;
    }
  if (*server_cpu < 0)
    *client_cpu = -1;
}

/* One epoch: three fresh servers started in the order first, first+1, ...,
 * then `seconds` of cycles. q (2 x cap_cycles) is scratch. Writes the
 * medians of the per-cycle ratios (rate on / rate off, rate on / rate
 * control) and adds each server's summed latency to sum[]; with cpu_ns,
 * also measures the off server's CPU per request at saturation. Returns
 * the cycles run, -1 on failure. */
static long overhead_epoch(const ov_plan *pl, int first, double seconds,
                           double *lat, long cap_cycles, double *q,
                           double *med_off, double *med_ctl, double *sum,
                           double *cpu_ns) {
  static const char *const on_args[] = {"--http-threads", "1", NULL};
  static const char *const off_args[] = {"--http-threads", "1",
                                         "--http-metrics", "0", NULL};
  static const char one[] = "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n";
  size_t one_len = sizeof one - 1, reqs_len = one_len * (size_t)pl->depth;
  char *reqs = malloc(reqs_len);
  server sv[OV_NS] = {{0}};
  int fd[OV_NS] = {-1, -1, -1}, ok = reqs != NULL;
  for (int i = 0; ok && i < pl->depth; i++)
    memcpy(reqs + one_len * (size_t)i, one, one_len);
  for (int i = 0; ok && i < OV_NS; i++) {
    int k = (first + i) % OV_NS;
    if (start_server(&sv[k], k == OV_OFF ? off_args : on_args) != 0 ||
        (fd[k] = connect_to(sv[k].port)) < 0)
      ok = 0;
  }
  char *buf = NULL;
  size_t cap = 0, len, at;
  long n = 0;
  double end = bench_now_ns() + 0.3e9; /* warm-up, not recorded */
  for (long c = 0; ok && bench_now_ns() < end; c++)
    for (int j = 0; j < OV_NS && ok; j++)
      ok = pl->depth > 1 ? batch_roundtrip(fd[(c + j) % OV_NS], reqs, reqs_len,
                                           pl->depth, &buf, &cap) == pl->depth
                         : roundtrip(fd[(c + j) % OV_NS], one, one_len, &buf,
                                     &cap, &len, &at) == 200;
  end = bench_now_ns() + seconds * 1e9;
  while (ok && n < cap_cycles && bench_now_ns() < end) {
    double *l = lat + (size_t)n * OV_NS;
    for (int j = 0; j < OV_NS && ok; j++) {
      int k =
          (int)((n + j) % OV_NS); /* each server first, second, third in turn */
      double t0 = bench_now_ns();
      ok = pl->depth > 1
               ? batch_roundtrip(fd[k], reqs, reqs_len, pl->depth, &buf,
                                 &cap) == pl->depth
               : roundtrip(fd[k], one, one_len, &buf, &cap, &len, &at) == 200;
      l[k] = bench_now_ns() - t0;
    }
    if (ok)
      n++;
  }
  free(buf);
  free(reqs);
  for (int k = 0; k < OV_NS; k++)
    if (fd[k] >= 0)
      close(fd[k]);
  if (ok && n >= 20) {
    for (long c = 0; c < n; c++) {
      const double *l = lat + (size_t)c * OV_NS;
      for (int k = 0; k < OV_NS; k++)
        sum[k] += l[k];
      q[c] = l[OV_OFF] / l[OV_ON];
      q[cap_cycles + c] = l[OV_CTL] / l[OV_ON];
    }
    qsort(q, (size_t)n, sizeof *q, cmp_d);
    qsort(q + cap_cycles, (size_t)n, sizeof *q, cmp_d);
    *med_off = q[n / 2];
    *med_ctl = q[cap_cycles + n / 2];
    if (cpu_ns != NULL)
      *cpu_ns = server_cpu_ns_per_request(&sv[OV_OFF], 3.0);
  } else {
    if (ok)
      fprintf(stderr,
              "bench_service: %s: only %ld cycles in an epoch; raise "
              "ORFEAS_BENCH_OVERHEAD_SCALE\n",
              pl->name, n);
    else
      fprintf(stderr,
              "bench_service: %s: a server did not start or a request failed "
              "(after %ld cycles)\n",
              pl->name, n);
    n = -1;
  }
  for (int k = 0; k < OV_NS; k++)
    stop_server(&sv[k]);
  return n;
}

/* The 97.5% quantile of Student's t with df degrees of freedom: a table to
 * 30, past it the Cornish-Fisher expansion around z = 1.96 (error < 1e-3). */
static double t975(int df) {
  static const double t[31] = {0,     12.706, 4.303, 3.182, 2.776, 2.571, 2.447,
                               2.365, 2.306,  2.262, 2.228, 2.201, 2.179, 2.160,
                               2.145, 2.131,  2.120, 2.110, 2.101, 2.093, 2.086,
                               2.080, 2.074,  2.069, 2.064, 2.060, 2.056, 2.052,
                               2.048, 2.045,  2.042};
  if (df <= 30)
    return t[df < 1 ? 1 : df];
  double z = 1.959964, v = df;
  return z + (z * z * z + z) / (4 * v) +
         (5 * pow(z, 5) + 16 * z * z * z + 3 * z) / (96 * v * v);
}

/* Mean of v[0..n) and the half-width of its 95% confidence interval. */
double mean_ci(const double *v, int n, double *half) {
  double m = 0, ss = 0;
  for (int i = 0; i < n; i++)
    m += v[i];
  m /= n;
  for (int i = 0; i < n; i++)
    ss += (v[i] - m) * (v[i] - m);
  *half = n > 1 ? t975(n - 1) * sqrt(ss / (n - 1)) / sqrt((double)n) : 0;
  return m;
}

/* What one request's metrics cost in process (clock reads, the counter and
 * three histograms through the handles cached per route/method/status). */
static double instr_ns_in_process(void) {
  static od_service svc;
  char err[256];
  od_clock_init();
  if (od_metrics_init(&svc.m, "bench", err, sizeof err) != 0)
    return -1;
  svc.cfg.http_metrics = 1;
  enum { N = 1000000 };
  od_req rq = {.route = OD_ROUTE_HEALTH,
               .method = "GET",
               .method_idx = 0,
               .status = 200,
               .resp_bytes = 58};
  double t0 = bench_now_ns();
  for (int i = 0; i < N; i++) {
    rq.recorded = 0;
    rq.t0 = od_ticks();
    od_req_record(&svc, &rq, 0);
  }
  double ns = (bench_now_ns() - t0) / N;
  od_metrics_free(&svc.m);
  return ns;
}

static void run_overhead(bench_report *r, const ov_plan *pl) {
  double per_epoch = pl->seconds / pl->epochs;
  long cap_cycles =
      (long)(per_epoch * 40000) + 1000; /* above any rate seen here */
  double *lat = malloc(sizeof(double) * OV_NS * (size_t)cap_cycles);
  double *q = malloc(sizeof(double) * 2 * (size_t)cap_cycles);
  double med_off[OV_MAX_EPOCHS], med_ctl[OV_MAX_EPOCHS], sum[OV_NS] = {0},
                                                         cpu_ns = -1;
  int server_cpu = -1, client_cpu = -1;
  cpu_set_t saved;
  int restore = sched_getaffinity(0, sizeof saved, &saved) == 0;
  pick_cpus(&server_cpu, &client_cpu); /* -1 on a one-CPU machine: unpinned */
  if (client_cpu >= 0) {
    pin_self(client_cpu);
    g_server_cpu = server_cpu;
  }
  long cycles = 0;
  int e = 0;
  for (; lat != NULL && q != NULL && e < pl->epochs; e++) {
    long n =
        overhead_epoch(pl, e % OV_NS, per_epoch, lat, cap_cycles, q,
                       &med_off[e], &med_ctl[e], sum, e == 0 ? &cpu_ns : NULL);
    if (n < 0)
      break;
    cycles += n;
    if (pl->verbose)
      fprintf(stderr, "%s epoch %d: %ld cycles, on/off %.4f, on/control %.4f\n",
              pl->name, e, n, med_off[e], med_ctl[e]);
  }
  g_server_cpu = -1;
  if (restore)
    sched_setaffinity(0, sizeof saved, &saved);
  free(lat);
  free(q);
  if (e < pl->epochs)
    return;
  double h, hc;
  double ratio = mean_ci(med_off, pl->epochs, &h),
         ctl = mean_ci(med_ctl, pl->epochs, &hc);
  double per_cycle = pl->depth; /* requests per cycle and server */
  bench_set(r, pl->name, "epochs", pl->epochs);
  bench_set(r, pl->name, "cycles", (double)cycles);
  bench_set(r, pl->name, "pinned", client_cpu >= 0);
  bench_set(r, pl->name, "rps_on",
            (double)cycles * per_cycle * 1e9 / sum[OV_ON]);
  bench_set(r, pl->name, "rps_off",
            (double)cycles * per_cycle * 1e9 / sum[OV_OFF]);
  bench_set(r, pl->name, "rps_control",
            (double)cycles * per_cycle * 1e9 / sum[OV_CTL]);
  bench_set(r, pl->name, "ratio_on_off", ratio);
  bench_set(r, pl->name, "ratio_on_off_ci_lo", ratio - h);
  bench_set(r, pl->name, "ratio_on_off_ci_hi", ratio + h);
  bench_set(r, pl->name, "ratio_on_control", ctl);
  bench_set(r, pl->name, "ratio_on_control_ci_lo", ctl - hc);
  bench_set(r, pl->name, "ratio_on_control_ci_hi", ctl + hc);
  bench_set(r, pl->name, "ratio_of_means_on_off", sum[OV_OFF] / sum[OV_ON]);
  /* The target: met when the whole interval lies within 1% of parity. */
  bench_set(r, pl->name, "within_1pct", ratio - h >= 0.99 && ratio + h <= 1.01);
  double ns = instr_ns_in_process();
  if (ns > 0) {
    bench_set(r, pl->name, "instr_ns_per_request", ns);
    if (cpu_ns > 0) {
      bench_set(r, pl->name, "server_cpu_ns_per_request", cpu_ns);
      bench_set(r, pl->name, "instr_share_of_server_cpu", ns / cpu_ns);
    }
  }
}

static void case_overhead(bench_report *r) {
  int verbose = getenv("ORFEAS_BENCH_VERBOSE") != NULL;
  double k = overhead_scale();
  /* Closed loop: one request per server per cycle, as a client that waits
   * for each answer sees it. */
  ov_plan closed = {"api_metrics_overhead", 1, 10, 60 * k, verbose};
  /* Saturated: pipelined batches of 16 keep the server's one HTTP thread
   * busy, so the figure is its CPU per request, with no idle time to hide
   * a cost in. Its process-to-process spread is wider: more epochs. */
  ov_plan sat = {"api_metrics_overhead_saturated", 16, 60, 90 * k, verbose};
  if (bench_wanted(r, closed.name))
    run_overhead(r, &closed);
  if (bench_wanted(r, sat.name))
    run_overhead(r, &sat);
}

int http_simple(int port, const char *head, const void *body, size_t blen,
                char *out, size_t out_len) {
  int fd = connect_to(port);
  if (fd < 0)
    return -1;
  size_t hl = strlen(head);
  char *req = malloc(hl + blen);
  if (req == NULL) {
    close(fd);
    return -1;
  }
  memcpy(req, head, hl);
  if (blen)
    memcpy(req + hl, body, blen);
  char *buf = NULL;
  size_t cap = 0, len = 0, at = 0;
  int st = roundtrip(fd, req, hl + blen, &buf, &cap, &len, &at);
  if (st > 0 && out)
    snprintf(out, out_len, "%s", buf + at);
  free(buf);
  free(req);
  close(fd);
  return st;
}

/* One scrape-under-load run; nice is the workers' --worker-nice, and the
 * figures get the key suffix sfx ("" for the default, "_nice0" for 0).
 * Long on purpose (97 lines): start the server, upload and generate the
 * jobs, scrape while both workers are busy, stop, report; one benchmark
 * case, readable top to bottom. */
static void case_scrape(bench_report *r, const char *nice, const char *sfx) {
  const char *name = "scrape_under_load";
  server s = {0};
  const char *const args[] = {
      "--workers", "2", "--queue-size", "1000", "--worker-nice", nice, NULL};
  if (start_server(&s, args) != 0) {
    stop_server(&s);
    return;
  }
  /* JOBS uploads of the same 1024 px PNG, each generated at its own width
   * so none is a cache hit: enough work to keep both workers busy for the
   * whole scrape window. */
  enum { JOBS = 24 };
  char ids[JOBS][40], head[512], resp[1024];
  int njobs = 0;
  size_t plen = 0;
  uint8_t *px = tpl_draw(TPL_STAR_HOLE, 1024, 1024, 1, 3);
  uint8_t *png = px ? tpl_png(px, 1024, 1024, 4, &plen) : NULL;
  free(px);
  static const char bnd[] = "benchBoundary";
  char pre[256], post[64];
  int pl = snprintf(pre, sizeof pre,
                    "--%s\r\nContent-Disposition: form-data; name=\"image\"; "
                    "filename=\"b.png\"\r\n\r\n",
                    bnd);
  int ql = snprintf(post, sizeof post, "\r\n--%s--\r\n", bnd);
  size_t blen = (size_t)pl + plen + (size_t)ql;
  uint8_t *body = png ? malloc(blen) : NULL;
  if (body) {
    memcpy(body, pre, (size_t)pl);
    memcpy(body + pl, png, plen);
    memcpy(body + pl + plen, post, (size_t)ql);
    snprintf(
        head, sizeof head,
        "POST /api/upload-image HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
        "multipart/form-data; boundary=%s\r\nContent-Length: %zu\r\n\r\n",
        bnd, blen);
    for (int i = 0; i < JOBS; i++) {
      char *p;
      if (http_simple(s.port, head, body, blen, resp, sizeof resp) == 200 &&
          (p = strstr(resp, "\"job_id\":\"")) != NULL)
        snprintf(ids[njobs++], sizeof ids[0], "%.36s", p + 10);
    }
  }
  free(body);
  free(png);
  if (njobs == 0) {
    fprintf(stderr, "bench_service: uploads failed\n");
    stop_server(&s);
    return;
  }
  int accepted = 0;
  for (int i = 0; i < njobs; i++) {
    char json[256];
    int jl = snprintf(json, sizeof json,
                      "{\"job_id\":\"%s\",\"format\":\"stl\",\"quality\":10,"
                      "\"dimensions\":{\"width\":%d}}",
                      ids[i], 100 + i);
    snprintf(
        head, sizeof head,
        "POST /api/generate-3d HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
        "application/json\r\nContent-Length: %d\r\n\r\n",
        jl);
    if (http_simple(s.port, head, json, (size_t)jl, NULL, 0) == 202)
      accepted++;
  }
  /* Scrape while both workers are busy (checked through /api/health). */
  enum { SCRAPES = 300 };
  double lat[SCRAPES];
  int fd = connect_to(s.port), n = 0, busy_seen = 0;
  static const char req[] = "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n";
  char *buf = NULL;
  size_t cap = 0, len, at;
  char health[2048];
  if (http_simple(s.port, "GET /api/health HTTP/1.1\r\nHost: localhost\r\n\r\n",
                  NULL, 0, health, sizeof health) == 200 &&
      strstr(health, "\"busy\":2"))
    busy_seen = 1;
  while (fd >= 0 && n < SCRAPES) {
    double t0 = bench_now_ns();
    if (roundtrip(fd, req, sizeof req - 1, &buf, &cap, &len, &at) != 200)
      break;
    lat[n++] = bench_now_ns() - t0;
    struct timespec ts = {0, 5 * 1000000}; /* 200 scrapes/s at most */
    nanosleep(&ts, NULL);
  }
  if (http_simple(s.port, "GET /api/health HTTP/1.1\r\nHost: localhost\r\n\r\n",
                  NULL, 0, health, sizeof health) == 200 &&
      !strstr(health, "\"busy\":2"))
    busy_seen = 0; /* the load must cover the whole scrape window */
  if (fd >= 0)
    close(fd);
  free(buf);
  if (n > 0) {
    qsort(lat, (size_t)n, sizeof lat[0], cmp_d);
    char key[48];
    snprintf(key, sizeof key, "p50%s_ns", sfx);
    bench_set(r, name, key, lat[n / 2]);
    snprintf(key, sizeof key, "p99%s_ns", sfx);
    bench_set(r, name, key, lat[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1]);
    snprintf(key, sizeof key, "max%s_ns", sfx);
    bench_set(r, name, key, lat[n - 1]);
    snprintf(key, sizeof key, "jobs_accepted%s", sfx);
    bench_set(r, name, key, accepted);
    snprintf(key, sizeof key, "workers_busy_throughout%s", sfx);
    bench_set(r, name, key, busy_seen);
  }
  stop_server(&s);
}

void bench_service_suite(bench_report *r) {
  case_overhead(r);
  if (bench_wanted(r, "scrape_under_load")) {
    case_scrape(r, "10", "");
    case_scrape(r, "0", "_nice0"); /* the same without the worker priority */
  }
}
