/* bench_jobs.c: the durable-jobs cases of `make bench` (issue #11).
 *
 *  store_overhead   full-API jobs/s (upload -> generate -> generation_complete
 *                   over a subscribed WebSocket) of orfeasd with its default
 *                   store (sqlite:DATA/jobs.db, every 2xx synced) against the
 *                   same with --store memory:, same --workers. Target: the
 *                   ratio sqlite / memory >= 0.97 (within 3%).
 *  api_vs_pipeline  the same full-API run (default store) against
 *                   orfeas_pl_run alone, in this process, on as many threads
 *                   as orfeasd has workers, on the same images. Target: the
 *                   ratio api / pipeline >= 0.90.
 *  cache_hit_job    a job whose result is cached, end to end: upload the
 *                   image, generate -> 202 "completed" (its model a link to
 *                   the cached one), on one keep-alive connection; p50 of
 *                   the client's round trips. Target: p50 <= 2 ms. Beside
 *                   it, on the same disk right after: the p50 of one
 *                   fdatasync and of the chain of syncs the hit must make
 *                   (sync_floor: 4, or 5 for bytes never stored), the
 *                   floor durability sets.
 *  cluster_overhead (issue #15) what cluster mode adds to one job: its whole
 *                   life in the job store (insert, queued, enqueue, claim,
 *                   ~20 progress events on the bus, its end) on
 *                   redis://, a redis-server of the bench's own
 *                   (appendonly yes, appendfsync everysec: Redis' default;
 *                   and beside it appendfsync always, every write fsynced
 *                   before its reply, which costs what the disk's fsync
 *                   costs, ~5 per job), minus the same on memory:, per job,
 *                   beside
 *                   the pipeline time of the same job (orfeas_pl_run, GLB,
 *                   1024 px). The lease heartbeat adds one round trip per
 *                   running job per lease/3 (3.3 s by default): nothing
 *                   at this scale. Target: <= 2 ms per job.
 *  cluster_scaling  full-API jobs/s of a 2-node cluster (one Redis, each
 *                   node --workers = the cores) against 1 node, jobs
 *                   submitted to the first node, both clusters idle while
 *                   the other runs; cpu_ms_per_job sums the nodes. Reported
 *                   with the cores: no target (on 2 cores, 2 nodes have the
 *                   same cores as 1, so the ratio shows the coordination's
 *                   cost, not scaling).
 *
 * How the throughput cases are run: each round runs JOBS jobs (1024 px
 * PNGs with alpha, distinct images, GLB at the default quality: the
 * pipeline_1024_glb job) through one side, then the other, the order
 * alternating; a round's figure is jobs / (first upload -> last end). The
 * API side is fed by SUBMITTERS client threads at once. The
 * ratio is taken per pair of rounds (what the shared 2-core machine does
 * lands on both within a second) and reported as the mean over pairs with
 * a Student-t 95% interval, beside the ratio of the mean rates. Each
 * side's CPU per job is measured too (orfeasd's process for the API, this
 * process's for the pipeline): cpu_ratio = pipeline CPU / API CPU per job
 * is the throughput ratio a machine with nothing else running would give,
 * and moves much less with other load than the wall-clock ratio does.
 * Each job gets dimensions of its own, so none is a cache hit. Servers run
 * as shipped, workers at the default --worker-nice 10: nice weighs
 * orfeasd's own threads against each other too, and at 0 the workers took
 * the cores from the HTTP threads' upload checks, so the queue ran dry
 * between uploads (throughput ratio 0.74-0.76 at 0 against 0.79-0.84 at
 * 10 in one A/B, CPU per job the same; docs/performance.md).
 * ORFEAS_BENCH_JOBS_SCALE scales the pairs (default 1).
 *
 * Server data dirs are beside the bench binary (bench_service.c), on the
 * disk the build is on: the syncs cost what they cost there.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/wait.h>
#include <zlib.h>

#include "bench.h"
#include "orfeas/pipeline.h"
#include "pl_images.h"
#include "store.h"

#define SIDE 1024
#define JOBS 24        /* per round */
#define PAIRS 10       /* rounds per side, x the scale */
#define DEADLINE_S 180 /* a round that takes longer failed */
#define CACHE_HITS 200 /* cache_hit_job samples */

typedef struct {
  uint8_t *png[JOBS];
  size_t len[JOBS];
} images;

static int make_images(images *im) {
  for (int i = 0; i < JOBS; i++) {
    uint8_t *px = tpl_draw(TPL_STAR_HOLE, SIDE, SIDE, 1, (uint32_t)(100 + i));
    im->png[i] = px ? tpl_png(px, SIDE, SIDE, 4, &im->len[i]) : NULL;
    free(px);
    if (im->png[i] == NULL)
      return -1;
  }
  return 0;
}

static void free_images(images *im) {
  for (int i = 0; i < JOBS; i++)
    free(im->png[i]);
}

static double scale(void) {
  const char *e = getenv("ORFEAS_BENCH_JOBS_SCALE");
  double v = e ? strtod(e, NULL) : 1.0;
  return v >= 0.2 && v <= 20 ? v : 1.0;
}

/* A copy of png (malloc'd, *out_len bytes) with a tEXt chunk holding n
 * after IHDR: the same pixels, bytes of their own. Every upload of the
 * throughput rounds is a new file (as distinct users' images are), so no
 * round is helped by an earlier one's upload check (the image memo skips
 * the check of bytes it has seen pass). NULL when out of memory. */
static uint8_t *tag_png(const uint8_t *png, size_t len, int n,
                        size_t *out_len) {
  char text[40];
  int tl = snprintf(text, sizeof text, "bench%c%d", 0, n);
  size_t at = 8 + 25, add = 12 + (size_t)tl; /* signature + IHDR */
  uint8_t *out = malloc(len + add);
  if (out == NULL || len < at)
    return free(out), NULL;
  memcpy(out, png, at);
  uint8_t *c = out + at;
  c[0] = c[1] = 0;
  c[2] = (uint8_t)(tl >> 8);
  c[3] = (uint8_t)tl;
  memcpy(c + 4, "tEXt", 4);
  memcpy(c + 8, text, (size_t)tl);
  uLong crc = crc32(0L, c + 4, 4 + (uInt)tl);
  for (int k = 0; k < 4; k++)
    c[8 + tl + k] = (uint8_t)(crc >> (24 - 8 * k));
  memcpy(out + at + add, png + at, len - at);
  *out_len = len + add;
  return out;
}

/* ---- HTTP requests of the API -------------------------------------------- */

static const char BOUNDARY[] = "benchJobsBoundary";

/* POST /api/upload-image on fd (keep-alive); the job id into id. 0 or -1. */
static int upload(int fd, const uint8_t *png, size_t len, char id[37],
                  char **buf, size_t *cap) {
  char pre[256], post[64], head[512];
  int pl = snprintf(pre, sizeof pre,
                    "--%s\r\nContent-Disposition: form-data; name=\"image\"; "
                    "filename=\"b.png\"\r\n\r\n",
                    BOUNDARY);
  int ql = snprintf(post, sizeof post, "\r\n--%s--\r\n", BOUNDARY);
  size_t blen = (size_t)pl + len + (size_t)ql;
  int hl = snprintf(head, sizeof head,
                    "POST /api/upload-image HTTP/1.1\r\nHost: localhost\r\n"
                    "Content-Type: multipart/form-data; boundary=%s\r\n"
                    "Content-Length: %zu\r\n\r\n",
                    BOUNDARY, blen);
  size_t total = (size_t)hl + blen;
  char *req = malloc(total);
  if (req == NULL)
    return -1;
  memcpy(req, head, (size_t)hl);
  memcpy(req + hl, pre, (size_t)pl);
  memcpy(req + hl + pl, png, len);
  memcpy(req + hl + pl + len, post, (size_t)ql);
  size_t got, at;
  int st = roundtrip(fd, req, total, buf, cap, &got, &at);
  free(req);
  char *p = st == 200 ? strstr(*buf + at, "\"job_id\":\"") : NULL;
  if (p == NULL)
    return -1;
  snprintf(id, 37, "%.36s", p + 10);
  return 0;
}

/* The width and height (mm) of the job with serial number n: two serials
 * never share them, so never a cache key. The pipeline side runs its jobs
 * at the same dimensions as the API side's (pl_thread): the mesh's shape
 * is part of the work (the quality check's triangle pass, the GLB's
 * floats), and the two sides must do the same. */
static void job_dims(int n, int *width, int *height) {
  *width = 10 + n % 990;
  *height = 10 + n / 990 % 990;
}

/* POST /api/generate-3d (GLB, default quality; dimensions from the serial
 * number n: job_dims); the status, and whether the answer says "completed"
 * (a cache hit). */
static int generate(int fd, const char *id, int n, int *completed, char **buf,
                    size_t *cap) {
  char json[192], req[512];
  int w, h;
  job_dims(n, &w, &h);
  int jl = snprintf(json, sizeof json,
                    "{\"job_id\":\"%s\",\"format\":\"glb\","
                    "\"dimensions\":{\"width\":%d,\"height\":%d}}",
                    id, w, h);
  int rl = snprintf(req, sizeof req,
                    "POST /api/generate-3d HTTP/1.1\r\nHost: localhost\r\n"
                    "Content-Type: application/json\r\nContent-Length: %d\r\n"
                    "\r\n%s",
                    jl, json);
  size_t got, at;
  int st = roundtrip(fd, req, (size_t)rl, buf, cap, &got, &at);
  if (completed)
    *completed = st == 202 && strstr(*buf + at, "\"completed\"") != NULL;
  return st;
}

/* ---- a WebSocket subscriber ---------------------------------------------- */

typedef struct {
  int fd;
  char *buf; /* bytes read, not yet parsed */
  size_t len, cap;
  _Atomic int ends, errors; /* generation_complete / generation_error */
  _Atomic int stop;
  pthread_t th;
  pthread_mutex_t send_mu; /* the submitters share the connection */
} ws_sub;

static int ws_open(ws_sub *w, int port) {
  memset(w, 0, sizeof *w);
  pthread_mutex_init(&w->send_mu, NULL);
  if ((w->fd = connect_to(port)) < 0)
    return -1;
  static const char hs[] =
      "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
      "Connection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
      "Sec-WebSocket-Version: 13\r\n\r\n";
  if (send_all(w->fd, hs, sizeof hs - 1) != 0)
    return -1;
  char *end = NULL;
  while (end == NULL) {
    ssize_t n = recv_more(w->fd, &w->buf, &w->cap, w->len);
    if (n < 0)
      return -1;
    w->len = (size_t)n;
    end = strstr(w->buf, "\r\n\r\n");
  }
  if (strncmp(w->buf, "HTTP/1.1 101", 12) != 0)
    return -1;
  size_t head = (size_t)(end + 4 - w->buf);
  memmove(w->buf, w->buf + head, w->len - head);
  w->len -= head;
  return 0;
}

/* A text frame, masked (key 0: the payload goes as it is). */
static int ws_send(ws_sub *w, const char *text) {
  size_t n = strlen(text);
  uint8_t hdr[8] = {0x81};
  size_t hl;
  if (n < 126) {
    hdr[1] = (uint8_t)(0x80 | n);
    hl = 2;
  } else {
    hdr[1] = 0x80 | 126;
    hdr[2] = (uint8_t)(n >> 8);
    hdr[3] = (uint8_t)n;
    hl = 4;
  }
  memset(hdr + hl, 0, 4);
  hl += 4;
  pthread_mutex_lock(&w->send_mu);
  int rc = send_all(w->fd, hdr, hl) == 0 && send_all(w->fd, text, n) == 0;
  pthread_mutex_unlock(&w->send_mu);
  return rc ? 0 : -1;
}

/* Counts the terminal events in the frames now in the buffer. */
static void ws_parse(ws_sub *w) {
  size_t off = 0;
  for (;;) {
    if (w->len - off < 2)
      break;
    const uint8_t *b = (const uint8_t *)w->buf + off;
    size_t n = b[1] & 0x7F, h = 2;
    if (n == 126) {
      if (w->len - off < 4)
        break;
      n = (size_t)b[2] << 8 | b[3];
      h = 4;
    } else if (n == 127) {
      if (w->len - off < 10)
        break;
      n = 0;
      for (int i = 0; i < 8; i++)
        n = n << 8 | b[2 + i];
      h = 10;
    }
    if (w->len - off < h + n)
      break;
    const char *p = (const char *)b + h;
    if ((b[0] & 0x0F) == 1 && n > 30) {
      if (memmem(p, n < 48 ? n : 48, "generation_complete", 19) != NULL)
        w->ends++;
      else if (memmem(p, n < 48 ? n : 48, "generation_error", 16) != NULL)
        w->errors++;
    }
    off += h + n;
  }
  memmove(w->buf, w->buf + off, w->len - off);
  w->len -= off;
}

static void *ws_reader(void *arg) {
  ws_sub *w = arg;
  while (!w->stop) {
    ssize_t n = recv_more(w->fd, &w->buf, &w->cap, w->len);
    if (n < 0)
      break;
    w->len = (size_t)n;
    ws_parse(w);
  }
  return NULL;
}

static void ws_close(ws_sub *w) {
  w->stop = 1;
  shutdown(w->fd, SHUT_RDWR);
  pthread_join(w->th, NULL);
  close(w->fd);
  free(w->buf);
  pthread_mutex_destroy(&w->send_mu);
}

/* ---- one round through the API ------------------------------------------- */

static double now_s(void) { return bench_now_ns() * 1e-9; }

/* The clients of a round: SUBMITTERS threads, each on its own keep-alive
 * connection, take the next image, upload it, subscribe to its job and
 * generate it, as independent users would (one client submitting jobs one
 * after the other would measure its own round trips, syncs included, not
 * the service's throughput). */
#define SUBMITTERS 4

typedef struct {
  const server *s;
  const images *im;
  ws_sub *w;
  _Atomic int next, bad;
} round_ctx;

/* Every generate of a bench run gets its own serial (its dimensions), so
 * no job is a cache hit of another, across rounds and cases. */
static _Atomic int serial = 1;

static void *submitter(void *arg) {
  round_ctx *rc = arg;
  int fd = connect_to(rc->s->port);
  char *buf = NULL;
  size_t cap = 0;
  for (int i; fd >= 0 && (i = rc->next++) < JOBS;) {
    char id[37], sub[128];
    int n = serial++;
    size_t len = 0;
    uint8_t *png = tag_png(rc->im->png[i], rc->im->len[i], n, &len);
    int ok = png != NULL && upload(fd, png, len, id, &buf, &cap) == 0;
    free(png);
    snprintf(sub, sizeof sub,
             "{\"event\":\"subscribe\",\"data\":{\"job_id\":\"%s\"}}", id);
    ok = ok && ws_send(rc->w, sub) == 0 &&
         generate(fd, id, n, NULL, &buf, &cap) == 202;
    if (!ok)
      rc->bad++;
  }
  if (fd < 0)
    rc->bad++;
  else
    close(fd);
  free(buf);
  return NULL;
}

/* Minor page faults of process pid so far, or -1. */
static double proc_minflt(pid_t pid) {
  double mf;
  return proc_stat(pid, NULL, &mf) == 0 ? mf : -1;
}

/* orfeasd's minor faults per job over the last API round (a figure the
 * JSON carries: on this VM a fault costs 10-20 us, docs/performance.md). */
static double last_faults_per_job;

/* Runs the JOBS images through s (dimensions of their own): jobs per second
 * from the first upload to the last end event, or -1; *cpu: orfeasd's CPU
 * seconds per job meanwhile. */
static double api_round(const server *s, const images *im, double *cpu) {
  ws_sub w;
  if (ws_open(&w, s->port) != 0) {
    fprintf(stderr, "bench_jobs: cannot connect to orfeasd\n");
    return -1;
  }
  pthread_create(&w.th, NULL, ws_reader, &w);
  round_ctx rc = {.s = s, .im = im, .w = &w};
  pthread_t t[SUBMITTERS];
  double c0 = proc_cpu_s(s->pid), f0 = proc_minflt(s->pid);
  double t0 = now_s();
  for (int k = 0; k < SUBMITTERS; k++)
    pthread_create(&t[k], NULL, submitter, &rc);
  for (int k = 0; k < SUBMITTERS; k++)
    pthread_join(t[k], NULL);
  while (!rc.bad && w.ends + w.errors < JOBS && now_s() - t0 < DEADLINE_S) {
    struct timespec ts = {0, 200000}; /* 0.2 ms: the end's time is the rate */
    nanosleep(&ts, NULL);
  }
  double t1 = now_s(), rate = -1;
  *cpu = (proc_cpu_s(s->pid) - c0) / JOBS;
  last_faults_per_job = (proc_minflt(s->pid) - f0) / JOBS;
  if (!rc.bad && w.ends == JOBS)
    rate = JOBS / (t1 - t0);
  else
    fprintf(stderr,
            "bench_jobs: a round ended with %d of %d jobs done (%d failed, "
            "%d requests refused)\n",
            (int)w.ends, JOBS, (int)w.errors, (int)rc.bad);
  ws_close(&w);
  return rate;
}

/* ---- one round of the pipeline alone ------------------------------------- */

typedef struct {
  const images *im;
  _Atomic int next;
  _Atomic int bad;
} pl_work;

static void *pl_thread(void *arg) {
  pl_work *pw = arg;
  orfeas_pl_options o;
  orfeas_pl_options_init(&o);
  o.format = ORFEAS_PL_GLB;
  for (int i; (i = pw->next++) < JOBS;) {
    orfeas_pl_result r;
    char msg[256];
    int w, h;
    job_dims(serial++, &w, &h);
    o.width_mm = w;
    o.height_mm = h;
    if (orfeas_pl_run(pw->im->png[i], pw->im->len[i], &o, &r, msg,
                      sizeof msg) != ORFEAS_PL_OK)
      pw->bad++;
    orfeas_pl_result_free(&r);
  }
  return NULL;
}

static double self_cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 +
         (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
}

static double pipeline_round(const images *im, int threads, double *cpu) {
  pl_work pw = {.im = im};
  pthread_t t[16];
  double c0 = self_cpu_s();
  double t0 = now_s();
  for (int k = 0; k < threads; k++)
    pthread_create(&t[k], NULL, pl_thread, &pw);
  for (int k = 0; k < threads; k++)
    pthread_join(t[k], NULL);
  double t1 = now_s();
  *cpu = (self_cpu_s() - c0) / JOBS;
  return pw.bad ? -1 : JOBS / (t1 - t0);
}

/* ---- the cases ----------------------------------------------------------- */

static int workers(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n >= 1 && n <= 16 ? (int)n : 2;
}

/* Pairs of rounds a / b; records the mean ratio b / a with its interval,
 * the mean rates and CPU per job. side(ctx, which, &cpu) runs a round. */
typedef double (*round_fn)(void *ctx, int which, double *cpu);

static int compare(bench_report *r, const char *name, const char *a_name,
                   const char *b_name, round_fn side, void *ctx,
                   double target) {
  int pairs = (int)(PAIRS * scale() + 0.5);
  if (pairs < 2)
    pairs = 2;
  double ratio[64], ra = 0, rb = 0, ca = 0, cb = 0, fa = 0, fb = 0;
  if (pairs > 64)
    pairs = 64;
  for (int p = 0; p < pairs; p++) {
    double x[2], c[2];
    for (int k = 0; k < 2; k++) {
      int which = (p + k) % 2; /* a b, b a, a b, ... */
      last_faults_per_job = 0; /* an API round sets it */
      x[which] = side(ctx, which, &c[which]);
      if (x[which] <= 0)
        return -1;
      *(which ? &fb : &fa) += last_faults_per_job;
    }
    ratio[p] = x[1] / x[0];
    ra += x[0];
    rb += x[1];
    ca += c[0];
    cb += c[1];
  }
  double h, m = mean_ci(ratio, pairs, &h);
  char key[64];
  snprintf(key, sizeof key, "%s_jobs_per_s", a_name);
  bench_set(r, name, key, ra / pairs);
  snprintf(key, sizeof key, "%s_jobs_per_s", b_name);
  bench_set(r, name, key, rb / pairs);
  snprintf(key, sizeof key, "%s_cpu_ms_per_job", a_name);
  bench_set(r, name, key, ca / pairs * 1e3);
  snprintf(key, sizeof key, "%s_cpu_ms_per_job", b_name);
  bench_set(r, name, key, cb / pairs * 1e3);
  bench_set(r, name, "cpu_ratio", ca / cb);
  snprintf(key, sizeof key, "%s_faults_per_job", a_name);
  bench_set(r, name, key, fa / pairs);
  snprintf(key, sizeof key, "%s_faults_per_job", b_name);
  bench_set(r, name, key, fb / pairs);
  bench_set(r, name, "ratio_of_means", rb / ra);
  bench_set(r, name, "pairs", pairs);
  bench_set(r, name, "jobs_per_round", JOBS);
  bench_set(r, name, "ratio", m);
  bench_set(r, name, "ratio_ci_lo", m - h);
  bench_set(r, name, "ratio_ci_hi", m + h);
  bench_set(r, name, "target_ratio", target);
  bench_set(r, name, "met", m >= target);
  /* The same target on the CPU reading (the top says why it matters). */
  bench_set(r, name, "cpu_met", ca / cb >= target);
  return 0;
}

typedef struct {
  server *srv[2];
  const images *im;
  int threads;
} ctx_t;

static double servers_round(void *c, int which, double *cpu) {
  ctx_t *x = c;
  return api_round(x->srv[which], x->im, cpu);
}

static double api_or_pipeline_round(void *c, int which, double *cpu) {
  ctx_t *x = c;
  return which == 0 ? pipeline_round(x->im, x->threads, cpu)
                    : api_round(x->srv[1], x->im, cpu);
}

/* The disk's floor for a cache hit, measured beside it in s's data dir
 * (the same disk, the same minute): *sync_ns the p50 of one 4 KB write +
 * fdatasync; the return value the p50 of the chain of syncs this case's
 * hit must make, one after the other as durability orders them: the
 * upload (the same bytes as a stored one: a hard link to it, rename, fsync
 * of the folder; then its row: a WAL-like append + fdatasync) and the
 * generate (the model's link, rename, fsync of the folder; the completed
 * row: append + fdatasync). Four syncs; an upload of bytes never stored
 * adds the file's own fdatasync (*five_ns: that chain's p50). -1 on an
 * error. */
#define FLOOR_SAMPLES 60
static double sync_floor(const server *s, const uint8_t *img, size_t len,
                         double *sync_ns, double *five_ns) {
  char d[PATH_MAX + 32], first[PATH_MAX + 48], up[PATH_MAX + 48],
      tmp[PATH_MAX + 48], wal[PATH_MAX + 48], out[PATH_MAX + 48];
  snprintf(d, sizeof d, "%s/floor", s->dir);
  snprintf(first, sizeof first, "%s/first.png", d);
  snprintf(up, sizeof up, "%s/up.png", d);
  snprintf(tmp, sizeof tmp, "%s/x.tmp", d);
  snprintf(wal, sizeof wal, "%s/wal", d);
  snprintf(out, sizeof out, "%s/model.glb", d);
  if (mkdir(d, 0700) != 0)
    return -1;
  int dfd = open(d, O_RDONLY | O_DIRECTORY);
  int wfd = open(wal, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  int ffd = open(first, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  double one[FLOOR_SAMPLES], chain[FLOOR_SAMPLES], five[FLOOR_SAMPLES];
  static const uint8_t page[4096];
  int ok = dfd >= 0 && wfd >= 0 && ffd >= 0 &&
           write(ffd, img, len) == (ssize_t)len && fdatasync(ffd) == 0;
  for (int i = 0; ok && i < FLOOR_SAMPLES; i++) {
    double t0 = bench_now_ns();
    ok = pwrite(wfd, page, sizeof page, 0) == (ssize_t)sizeof page &&
         fdatasync(wfd) == 0;
    one[i] = bench_now_ns() - t0;
    for (int k = 0; ok && k < 2; k++) {
      t0 = bench_now_ns();
      int fd = -1;
      if (k == 0)
        ok = link(first, tmp) == 0;
      else
        ok = (fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600)) >= 0 &&
             write(fd, img, len) == (ssize_t)len && fdatasync(fd) == 0;
      if (fd >= 0)
        close(fd);
      ok = ok && rename(tmp, up) == 0 && fsync(dfd) == 0 &&
           pwrite(wfd, page, sizeof page, 4096) == (ssize_t)sizeof page &&
           fdatasync(wfd) == 0 && link(up, tmp) == 0 && rename(tmp, out) == 0 &&
           fsync(dfd) == 0 &&
           pwrite(wfd, page, sizeof page, 8192) == (ssize_t)sizeof page &&
           fdatasync(wfd) == 0;
      (k == 0 ? chain : five)[i] = bench_now_ns() - t0;
      unlink(out);
      unlink(up);
    }
  }
  if (dfd >= 0)
    close(dfd);
  if (wfd >= 0)
    close(wfd);
  if (ffd >= 0)
    close(ffd);
  unlink(first);
  unlink(wal);
  rmdir(d);
  if (!ok)
    return -1;
  qsort(one, FLOOR_SAMPLES, sizeof one[0], cmp_d);
  qsort(chain, FLOOR_SAMPLES, sizeof chain[0], cmp_d);
  qsort(five, FLOOR_SAMPLES, sizeof five[0], cmp_d);
  *sync_ns = one[FLOOR_SAMPLES / 2];
  *five_ns = five[FLOOR_SAMPLES / 2];
  return chain[FLOOR_SAMPLES / 2];
}

static void case_cache_hit(bench_report *r, server *s, const images *im) {
  const char *name = "cache_hit_job";
  int fd = connect_to(s->port);
  char *buf = NULL, id[37];
  size_t cap = 0;
  int done = 0;
  double lat[CACHE_HITS], gen[CACHE_HITS];
  /* The first run fills the cache (memory and disk tiers). */
  int ok = fd >= 0 && upload(fd, im->png[0], im->len[0], id, &buf, &cap) == 0 &&
           generate(fd, id, 0, &done, &buf, &cap) == 202;
  for (int t = 0; ok && t < 2000; t++) { /* wait for it: 20 s at most */
    char st[2048], head[160];
    snprintf(head, sizeof head,
             "GET /api/job-status/%s HTTP/1.1\r\nHost: localhost\r\n\r\n", id);
    if (http_simple(s->port, head, NULL, 0, st, sizeof st) == 200 &&
        strstr(st, "\"status\":\"completed\"") != NULL)
      break;
    struct timespec ts = {0, 10 * 1000000};
    nanosleep(&ts, NULL);
  }
  int n = 0;
  double c0 = proc_cpu_s(s->pid);
  for (; ok && n < CACHE_HITS; n++) {
    double t0 = bench_now_ns();
    ok = upload(fd, im->png[0], im->len[0], id, &buf, &cap) == 0;
    double t1 = bench_now_ns();
    ok = ok && generate(fd, id, 0, &done, &buf, &cap) == 202 && done;
    lat[n] = bench_now_ns() - t0;
    gen[n] = bench_now_ns() - t1;
  }
  double cpu_per_hit = (proc_cpu_s(s->pid) - c0) / (n > 0 ? n : 1);
  if (fd >= 0)
    close(fd);
  free(buf);
  double sync1 = 0, five = 0;
  double chain = ok ? sync_floor(s, im->png[0], im->len[0], &sync1, &five) : -1;
  if (chain > 0) {
    bench_set(r, name, "fdatasync_p50_ns", sync1);
    bench_set(r, name, "sync_chain_p50_ns", chain);
    bench_set(r, name, "sync_chain_new_bytes_p50_ns", five);
  }
  if (!ok || n < CACHE_HITS) {
    fprintf(stderr,
            "bench_jobs: cache_hit_job: a request failed or missed the cache "
            "(sample %d of %d)\n",
            n, CACHE_HITS);
    return;
  }
  qsort(lat, (size_t)n, sizeof lat[0], cmp_d);
  qsort(gen, (size_t)n, sizeof gen[0], cmp_d);
  bench_set(r, name, "p50_ns", lat[n / 2]);
  bench_set(r, name, "p90_ns", lat[n * 9 / 10]);
  bench_set(r, name, "generate_p50_ns", gen[n / 2]);
  bench_set(r, name, "server_cpu_ns_per_hit", cpu_per_hit * 1e9);
  bench_set(r, name, "upload_bytes", (double)im->len[0]);
  bench_set(r, name, "samples", n);
  bench_set(r, name, "met", lat[n / 2] <= 2e6);
}

/* ---- cluster mode (issue #15) ------------------------------------------- */

/* A redis-server of the bench's own, in a folder beside the bench binary
 * (the AOF's fsyncs cost what the disk makes them cost), on a free port:
 * s->port, appendonly with appendfsync `fsync` (always, everysec); 0 or
 * -1. stop_server stops it (SIGTERM); the folder goes when the bench ends. */
static int start_redis(server *s, const char *fsync) {
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0)
    return -1;
  exe[n] = '\0';
  *strrchr(exe, '/') = '\0';
  snprintf(s->dir, sizeof s->dir, "%.3900s/bench-tmp", exe);
  mkdir(s->dir, 0700);
  snprintf(s->dir, sizeof s->dir, "%.3900s/bench-tmp/redis-XXXXXX", exe);
  if (mkdtemp(s->dir) == NULL)
    return -1;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t sl = sizeof sa;
  if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
      getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
    if (fd >= 0)
      close(fd);
    return -1;
  }
  s->port = ntohs(sa.sin_port);
  close(fd);
  char port[16];
  snprintf(port, sizeof port, "%d", s->port);
  s->pid = fork();
  if (s->pid == 0) {
    int null = open("/dev/null", O_WRONLY);
    if (null >= 0) {
      dup2(null, 1);
      dup2(null, 2);
    }
    execlp("redis-server", "redis-server", "--port", port, "--bind",
           "127.0.0.1", "--dir", s->dir, "--appendonly", "yes", "--appendfsync",
           fsync, "--save", "", (char *)NULL);
    _exit(127);
  }
  for (int t = 0; t < 500; t++) { /* 5 s at most */
    char out[64];
    int c = connect_to(s->port);
    if (c >= 0) {
      ssize_t got = send_all(c, "PING\r\n", 6) == 0
                        ? recv(c, out, sizeof out - 1, 0)
                        : -1;
      close(c);
      if (got >= 5 && strncmp(out, "+PONG", 5) == 0)
        return 0;
    }
    struct timespec ts = {0, 10 * 1000000};
    nanosleep(&ts, NULL);
  }
  fprintf(stderr,
          "bench_jobs: redis-server did not start (is it installed?)\n");
  return -1;
}

#define LIFE_JOBS 300 /* store lives per side */
#define LIFE_EVENTS 20

/* Mean wall seconds of one job's life in the store at url (see the top),
 * or -1. */
static double store_lives(const char *url, int base) {
  od_store_opts o = {.queue_size = 64,
                     .max_jobs = 4 * LIFE_JOBS,
                     .node_id = "bench",
                     .lease_s = 10};
  char err[512];
  od_store *s = od_store_open(url, &o, err, sizeof err);
  if (s == NULL) {
    fprintf(stderr, "bench_jobs: %s\n", err);
    return -1;
  }
  static const char ev[] =
      "{\"event\":\"generation_progress\",\"data\":{\"job_id\":\"x\","
      "\"progress\":42.5,\"stage\":\"mesh\",\"timestamp\":1}}";
  int ok = 1;
  double t0 = now_s();
  for (int i = 0; i < LIFE_JOBS && ok; i++) {
    od_job_rec r, c;
    memset(&r, 0, sizeof r);
    snprintf(r.id, sizeof r.id, "00000000-0000-4000-8000-%012d", base + i);
    snprintf(r.ext, sizeof r.ext, "png");
    r.t_created = od_wall();
    r.upload_bytes = 1000;
    int pos;
    ok = od_store_insert(s, &r) == OD_STORE_OK;
    ok = ok && od_store_get(s, r.id, &r) == OD_STORE_OK;
    r.state = OD_JOB_QUEUED;
    r.t_queued = od_wall();
    ok = ok &&
         od_store_transition(s, &r, OD_STATES_IDLE, 0, NULL) == OD_STORE_OK;
    ok = ok && od_store_enqueue(s, r.id, &pos) == OD_STORE_OK;
    ok = ok && od_store_claim(s, "w0", 0, &c) == OD_STORE_OK;
    for (int e = 0; ok && e < LIFE_EVENTS && od_store_has_bus(s); e++)
      od_store_publish(s, c.id, 3, ev);
    c.state = OD_JOB_COMPLETED;
    c.t_ended = od_wall();
    ok = ok && od_store_transition(s, &c, OD_STATE_BIT(OD_JOB_PROCESSING),
                                   c.attempt, NULL) == OD_STORE_OK;
  }
  od_store_close(s); /* waits for the publisher to send what is queued */
  double t = now_s() - t0;
  return ok ? t / LIFE_JOBS : -1;
}

static void case_cluster_overhead(bench_report *r, const images *im,
                                  const server *always) {
  const char *name = "cluster_overhead";
  server every = {0};
  char url[64], url_always[64];
  snprintf(url_always, sizeof url_always, "redis://127.0.0.1:%d", always->port);
  double rds = -1, rds_always = store_lives(url_always, 1);
  if (start_redis(&every, "everysec") == 0) {
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", every.port);
    rds = store_lives(url, 1);
  }
  stop_server(&every);
  double mem = store_lives("memory:", 1);
  orfeas_pl_options o;
  orfeas_pl_options_init(&o);
  o.format = ORFEAS_PL_GLB;
  double pl[3];
  for (int k = 0; k < 3; k++) {
    orfeas_pl_result res;
    char msg[256];
    double t0 = now_s();
    int rc = orfeas_pl_run(im->png[0], im->len[0], &o, &res, msg, sizeof msg);
    pl[k] = rc == ORFEAS_PL_OK ? now_s() - t0 : -1;
    orfeas_pl_result_free(&res);
  }
  qsort(pl, 3, sizeof pl[0], cmp_d);
  if (mem < 0 || rds < 0 || rds_always < 0 || pl[0] < 0) {
    fprintf(stderr, "bench_jobs: cluster_overhead did not complete\n");
    return;
  }
  double coord = rds - mem;
  bench_set(r, name, "coordination_ms_per_job", coord * 1e3);
  bench_set(r, name, "redis_store_ms_per_job", rds * 1e3);
  bench_set(r, name, "memory_store_ms_per_job", mem * 1e3);
  bench_set(r, name, "coordination_fsync_always_ms_per_job",
            (rds_always - mem) * 1e3);
  bench_set(r, name, "pipeline_ms_per_job", pl[1] * 1e3);
  bench_set(r, name, "coordination_share", coord / pl[1]);
  bench_set(r, name, "events_per_job", LIFE_EVENTS);
  bench_set(r, name, "jobs", LIFE_JOBS);
  bench_set(r, name, "target_ms", 2);
  bench_set(r, name, "met", coord <= 2e-3);
}

typedef struct {
  server *one, *two[2];
  const images *im;
} cluster_ctx;

static double cluster_round(void *c, int which, double *cpu) {
  cluster_ctx *x = c;
  server *const *nodes = which == 0 ? &x->one : x->two;
  int n = which == 0 ? 1 : 2;
  double c0 = 0, ignored;
  for (int k = 0; k < n; k++)
    c0 += proc_cpu_s(nodes[k]->pid);
  double rate = api_round(nodes[0], x->im, &ignored);
  double c1 = 0;
  for (int k = 0; k < n; k++)
    c1 += proc_cpu_s(nodes[k]->pid);
  *cpu = (c1 - c0) / JOBS;
  return rate;
}

static void cluster_suite(bench_report *r, const images *im, int want_over,
                          int want_scale) {
  server ra = {0}, rb = {0}, one = {0}, two_a = {0}, two_b = {0};
  if (start_redis(&ra, "always") != 0 || start_redis(&rb, "always") != 0) {
    stop_server(&ra);
    stop_server(&rb);
    return;
  }
  if (want_over)
    case_cluster_overhead(r, im, &ra);
  char nw[16], qs[16], url_a[64], url_b[64];
  snprintf(nw, sizeof nw, "%d", workers());
  snprintf(qs, sizeof qs, "%d", JOBS * 2);
  snprintf(url_a, sizeof url_a, "redis://127.0.0.1:%d/1", ra.port);
  snprintf(url_b, sizeof url_b, "redis://127.0.0.1:%d/1", rb.port);
  const char *const one_args[] = {"--workers", nw,        "--queue-size",
                                  qs,          "--store", url_a,
                                  "--node-id", "one",     NULL};
  const char *const a_args[] = {"--workers", nw,        "--queue-size",
                                qs,          "--store", url_b,
                                "--node-id", "two-a",   NULL};
  char shared[PATH_MAX + 16];
  const char *const b_args[] = {
      "--workers", nw,      "--queue-size", qs,     "--store", url_b,
      "--node-id", "two-b", "--data-dir",   shared, NULL};
  /* Node b on a's data dir (its own flag comes later and wins), as on a
   * shared mount. */
  if (want_scale && start_server(&one, one_args) == 0 &&
      start_server(&two_a, a_args) == 0 &&
      snprintf(shared, sizeof shared, "%s/data", two_a.dir) > 0 &&
      start_server(&two_b, b_args) == 0) {
    cluster_ctx c = {.one = &one, .two = {&two_a, &two_b}, .im = im};
    if (compare(r, "cluster_scaling", "one_node", "two_nodes", cluster_round,
                &c, 0) != 0)
      fprintf(stderr, "bench_jobs: cluster_scaling did not complete\n");
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    bench_set(r, "cluster_scaling", "cores", (double)cores);
    bench_set(r, "cluster_scaling", "workers_per_node", workers());
  }
  stop_server(&one);
  stop_server(&two_a);
  stop_server(&two_b);
  stop_server(&ra);
  stop_server(&rb);
}

void bench_jobs_suite(bench_report *r) {
  int want_store = bench_wanted(r, "store_overhead");
  int want_api = bench_wanted(r, "api_vs_pipeline");
  int want_hit = bench_wanted(r, "cache_hit_job");
  int want_over = bench_wanted(r, "cluster_overhead");
  int want_scale = bench_wanted(r, "cluster_scaling");
  if (!want_store && !want_api && !want_hit && !want_over && !want_scale)
    return;
  images im;
  memset(&im, 0, sizeof im);
  if (make_images(&im) != 0) {
    fprintf(stderr, "bench_jobs: cannot draw the images\n");
    free_images(&im);
    return;
  }
  char nw[16], qs[16];
  snprintf(nw, sizeof nw, "%d", workers());
  snprintf(qs, sizeof qs, "%d", JOBS * 2);
  const char *const mem_args[] = {
      "--workers", nw, "--queue-size", qs, "--store", "memory:", NULL};
  const char *const sql_args[] = {"--workers", nw, "--queue-size", qs, NULL};
  if (want_over || want_scale)
    cluster_suite(r, &im, want_over, want_scale);
  server mem = {0}, sql = {0};
  if ((want_store || want_api || want_hit) &&
      start_server(&mem, mem_args) == 0 && start_server(&sql, sql_args) == 0) {
    ctx_t c = {.srv = {&mem, &sql}, .im = &im, .threads = workers()};
    /* One round on each server first, not counted: a fresh process faults
     * its heaps in and warms its caches (tens of page faults per job in
     * its first rounds, none after), and the first case would carry it. */
    double warm_cpu;
    if ((want_store || want_api) && (api_round(&mem, &im, &warm_cpu) <= 0 ||
                                     api_round(&sql, &im, &warm_cpu) <= 0))
      fprintf(stderr, "bench_jobs: a warm-up round failed\n");
    if (want_store && compare(r, "store_overhead", "memory", "sqlite",
                              servers_round, &c, 0.97) != 0)
      fprintf(stderr, "bench_jobs: store_overhead did not complete\n");
    if (want_api && compare(r, "api_vs_pipeline", "pipeline", "api",
                            api_or_pipeline_round, &c, 0.90) != 0)
      fprintf(stderr, "bench_jobs: api_vs_pipeline did not complete\n");
    if (want_api)
      bench_set(r, "api_vs_pipeline", "threads", c.threads);
    if (want_hit) {
      /* The cases above leave hundreds of MB of models not yet written
       * back (the memory store never syncs them): flushed first, so the
       * hits' syncs do not queue behind that writeback. */
      stop_server(&mem);
      sync();
      case_cache_hit(r, &sql, &im);
    }
  } else if (want_store || want_api || want_hit) {
    fprintf(stderr, "bench_jobs: orfeasd did not start\n");
  }
  stop_server(&mem);
  stop_server(&sql);
  free_images(&im);
}
