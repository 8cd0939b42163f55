/* bench_service.c: the orfeasd cases of `make bench` (issue #4).
 *
 *  api_metrics_overhead  requests/s of GET /health over keep-alive loopback
 *                        connections, against two orfeasd processes started
 *                        side by side: one with request metrics on, one with
 *                        --http-metrics 0. Rounds alternate between them so
 *                        drift hits both; the medians and their ratio are
 *                        reported (rps_on, rps_off, ratio_on_off).
 *  scrape_under_load     GET /metrics latency (p50, p99, max) over keep-alive
 *                        while every worker runs pipeline jobs (1024 px PNG,
 *                        quality 10, distinct sizes so none is a cache hit);
 *                        once as shipped (workers at nice 10), once with
 *                        --worker-nice 0 (the *_nice0 figures).
 *
 * Both servers run with --access-log 0 so the log write (identical in both)
 * does not add noise. The binary is the build's orfeasd, next to this one.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "orfeasd.h"
#include "pl_images.h"

typedef struct {
  pid_t pid;
  int port;
  char dir[64];
} server;

static int start_server(server *s, const char *const *extra) {
  char exe[PATH_MAX], bin[PATH_MAX + 16], logp[128];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0)
    return -1;
  exe[n] = '\0';
  char *slash = strrchr(exe, '/');
  *slash = '\0';
  snprintf(bin, sizeof bin, "%s/orfeasd", exe);
  snprintf(s->dir, sizeof s->dir, "/tmp/orfeas-bench-XXXXXX");
  if (mkdtemp(s->dir) == NULL)
    return -1;
  snprintf(logp, sizeof logp, "%s/log", s->dir);
  char data[96];
  snprintf(data, sizeof data, "%s/data", s->dir);
  const char *argv[24] = {bin, "--listen", "127.0.0.1:0", "--data-dir", data, "--access-log", "0"};
  int a = 7;
  for (int i = 0; extra && extra[i] && a < 22; i++)
    argv[a++] = extra[i];
  argv[a] = NULL;
  s->pid = fork();
  if (s->pid == 0) {
    int fd = open(logp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd >= 0)
      dup2(fd, 2);
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

static void stop_server(server *s) {
  if (s->pid > 0) {
    kill(s->pid, SIGTERM);
    waitpid(s->pid, NULL, 0);
  }
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", s->dir);
  if (system(cmd) != 0)
    fprintf(stderr, "bench_service: could not remove %s\n", s->dir);
}

static int connect_to(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
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

/* Sends req and reads one response (headers + Content-Length body) into
 * buf; returns the status, -1 on error. *body_at gets the body offset. */
static int roundtrip(int fd, const void *req, size_t req_len, char **buf, size_t *cap,
                     size_t *len, size_t *body_at) {
  size_t off = 0;
  while (off < req_len) {
    ssize_t w = send(fd, (const char *)req + off, req_len - off, MSG_NOSIGNAL);
    if (w <= 0)
      return -1;
    off += (size_t)w;
  }
  size_t have = 0, need = 0;
  char *hend = NULL;
  for (;;) {
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
    if (hend == NULL && (hend = strstr(*buf, "\r\n\r\n")) != NULL) {
      char *cl = strcasestr(*buf, "content-length:");
      need = (size_t)(hend + 4 - *buf) + (cl && cl < hend ? strtoul(cl + 15, NULL, 10) : 0);
    }
    if (hend != NULL && have >= need)
      break;
  }
  *len = have;
  *body_at = (size_t)(hend + 4 - *buf);
  return (int)strtol(*buf + 9, NULL, 10);
}

typedef struct {
  int port;
  double seconds;
  long done;
} load_arg;

static void *health_loop(void *p) {
  load_arg *a = p;
  int fd = connect_to(a->port);
  static const char req[] = "GET /health HTTP/1.1\r\nHost: bench\r\n\r\n";
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

static double measure_rps(int port, double seconds) {
  enum { CLIENTS = 4 };
  pthread_t t[CLIENTS];
  load_arg a[CLIENTS];
  for (int i = 0; i < CLIENTS; i++) {
    a[i] = (load_arg){port, seconds, 0};
    pthread_create(&t[i], NULL, health_loop, &a[i]);
  }
  long total = 0;
  for (int i = 0; i < CLIENTS; i++) {
    pthread_join(t[i], NULL);
    total += a[i].done;
  }
  return (double)total / seconds;
}

static void case_overhead(bench_report *r) {
  const char *name = "api_metrics_overhead";
  /* Three servers: metrics on, off, and a second "on" as an A/A control
   * whose ratio to the first shows the noise floor of this machine. */
  server on = {0}, off = {0}, on2 = {0};
  static const char *const off_args[] = {"--http-metrics", "0", NULL};
  if (start_server(&on, NULL) != 0 || start_server(&off, off_args) != 0 ||
      start_server(&on2, NULL) != 0) {
    stop_server(&on);
    stop_server(&off);
    stop_server(&on2);
    return;
  }
  enum { ROUNDS = 15 };
  double von[ROUNDS], voff[ROUNDS], von2[ROUNDS], ratio[ROUNDS], aa[ROUNDS];
  measure_rps(on.port, 0.5); /* warm-up */
  measure_rps(off.port, 0.5);
  measure_rps(on2.port, 0.5);
  for (int i = 0; i < ROUNDS; i++) {
    /* Back-to-back triples in a rotating order: the ratios within a round
     * cancel most of the drift of a shared 2-core machine. */
    for (int k = 0; k < 3; k++) {
      int which = (i + k) % 3;
      if (which == 0)
        von[i] = measure_rps(on.port, 0.5);
      else if (which == 1)
        voff[i] = measure_rps(off.port, 0.5);
      else
        von2[i] = measure_rps(on2.port, 0.5);
    }
    ratio[i] = von[i] / voff[i];
    aa[i] = von[i] / von2[i];
  }
  double mon = bench_median(von, ROUNDS), moff = bench_median(voff, ROUNDS);
  bench_set(r, name, "rps_on", mon);
  bench_set(r, name, "rps_off", moff);
  bench_set(r, name, "ratio_on_off", bench_median(ratio, ROUNDS));
  bench_set(r, name, "ratio_on_on_control", bench_median(aa, ROUNDS));
  /* The instrumentation itself, in process: what one request's metrics
   * (counter + 3 histograms through the cached handles) cost, and that as
   * a share of one request's time at the measured rate. */
  static od_service svc;
  char err[256];
  if (od_metrics_init(&svc.m, err, sizeof err) == 0) {
    svc.cfg.http_metrics = 1;
    enum { N = 1000000 };
    od_req req = {.route = OD_ROUTE_HEALTH, .method = "GET", .method_idx = 0,
                  .status = 200, .resp_bytes = 58};
    double t0 = bench_now_ns();
    for (int i = 0; i < N; i++) {
      req.recorded = 0;
      req.t0 = 0;
      od_req_record(&svc, &req, 0);
    }
    double ns = (bench_now_ns() - t0) / N;
    bench_set(r, name, "instr_ns_per_request", ns);
    bench_set(r, name, "instr_share_of_request", ns * moff / 1e9);
    od_metrics_free(&svc.m);
  }
  stop_server(&on);
  stop_server(&off);
  stop_server(&on2);
}

static int http_simple(int port, const char *head, const void *body, size_t blen, char *out,
                       size_t out_len) {
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

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* One scrape-under-load run; nice is the workers' --worker-nice, and the
 * figures get the key suffix sfx ("" for the default, "_nice0" for 0). */
static void case_scrape(bench_report *r, const char *nice, const char *sfx) {
  const char *name = "scrape_under_load";
  server s = {0};
  const char *const args[] = {"--workers", "2", "--queue-size", "1000", "--worker-nice", nice,
                              NULL};
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
  int pl = snprintf(pre, sizeof pre, "--%s\r\nContent-Disposition: form-data; name=\"image\"; "
                    "filename=\"b.png\"\r\n\r\n", bnd);
  int ql = snprintf(post, sizeof post, "\r\n--%s--\r\n", bnd);
  size_t blen = (size_t)pl + plen + (size_t)ql;
  uint8_t *body = png ? malloc(blen) : NULL;
  if (body) {
    memcpy(body, pre, (size_t)pl);
    memcpy(body + pl, png, plen);
    memcpy(body + pl + plen, post, (size_t)ql);
    snprintf(head, sizeof head, "POST /api/upload-image HTTP/1.1\r\nHost: b\r\nContent-Type: "
             "multipart/form-data; boundary=%s\r\nContent-Length: %zu\r\n\r\n", bnd, blen);
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
    int jl = snprintf(json, sizeof json, "{\"job_id\":\"%s\",\"format\":\"stl\",\"quality\":10,"
                      "\"dimensions\":{\"width\":%d}}", ids[i], 100 + i);
    snprintf(head, sizeof head, "POST /api/generate-3d HTTP/1.1\r\nHost: b\r\nContent-Type: "
             "application/json\r\nContent-Length: %d\r\n\r\n", jl);
    if (http_simple(s.port, head, json, (size_t)jl, NULL, 0) == 202)
      accepted++;
  }
  /* Scrape while both workers are busy (checked through /api/health). */
  enum { SCRAPES = 300 };
  double lat[SCRAPES];
  int fd = connect_to(s.port), n = 0, busy_seen = 0;
  static const char req[] = "GET /metrics HTTP/1.1\r\nHost: b\r\n\r\n";
  char *buf = NULL;
  size_t cap = 0, len, at;
  char health[2048];
  if (http_simple(s.port, "GET /api/health HTTP/1.1\r\nHost: b\r\n\r\n", NULL, 0, health,
                  sizeof health) == 200 && strstr(health, "\"busy\":2"))
    busy_seen = 1;
  while (fd >= 0 && n < SCRAPES) {
    double t0 = bench_now_ns();
    if (roundtrip(fd, req, sizeof req - 1, &buf, &cap, &len, &at) != 200)
      break;
    lat[n++] = bench_now_ns() - t0;
    struct timespec ts = {0, 5 * 1000000}; /* 200 scrapes/s at most */
    nanosleep(&ts, NULL);
  }
  if (http_simple(s.port, "GET /api/health HTTP/1.1\r\nHost: b\r\n\r\n", NULL, 0, health,
                  sizeof health) == 200 && !strstr(health, "\"busy\":2"))
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
  if (bench_wanted(r, "api_metrics_overhead"))
    case_overhead(r);
  if (bench_wanted(r, "scrape_under_load")) {
    case_scrape(r, "10", "");
    case_scrape(r, "0", "_nice0"); /* the same without the worker priority */
  }
}
