/* bench_pipeline.c: the pipeline cases of `make bench`.
 *
 *  pipeline_1024_glb      a 1024x1024 PNG with alpha -> closed GLB at the
 *                         default quality, one thread: ours_ns is the median
 *                         wall time per job (target <= 60 ms), plus the
 *                         median of each stage (stage_<name>_ns).
 *  pipeline_4096_stl_q10  a 4096x4096 PNG with alpha -> STL at quality 10:
 *                         ours_ns (median of 3) and peak_rss_bytes, the
 *                         high-water mark of a child process that runs only
 *                         these jobs (must stay under 2 GiB).
 *  upload_verify_4096     the upload check (issue #13) on a 4096x4096 PNG and
 *                         JPEG: orfeas_pl_image_verify (ours_ns, PNG;
 *                         ours_jpeg_ns) against a full RGBA decode,
 *                         orfeas_pl_image_decode (peer_ns, peer_jpeg_ns),
 *                         median of 9 each, and the ratios.
 *
 * The images are drawn and encoded before timing starts; only
 * orfeas_pl_run() (or the decode) is inside the clock.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "orfeas/pipeline.h"
#include "pl_images.h"

#define RUNS_1024 21
#define RUNS_4096 3

static uint8_t *make_png(uint32_t side, size_t *len) {
  uint8_t *px = tpl_draw(TPL_STAR_HOLE, side, side, 1, 1);
  uint8_t *png = px ? tpl_png(px, side, side, 4, len) : NULL;
  free(px);
  return png;
}

/* Runs the job n times; fills the median total and per-stage times. */
static int time_jobs(const uint8_t *png, size_t len, const orfeas_pl_options *o,
                     int n, double *total, double stage[ORFEAS_PL_STAGE_COUNT],
                     orfeas_pl_quality *q, size_t *file_bytes) {
  double t[32], st[ORFEAS_PL_STAGE_COUNT][32];
  for (int i = 0; i < n && i < 32; i++) {
    orfeas_pl_result r;
    char msg[256];
    double t0 = bench_now_ns();
    orfeas_pl_code rc = orfeas_pl_run(png, len, o, &r, msg, sizeof msg);
    t[i] = bench_now_ns() - t0;
    if (rc != ORFEAS_PL_OK) {
      fprintf(stderr, "bench_pipeline: %s\n", msg);
      orfeas_pl_result_free(&r);
      return -1;
    }
    for (int s = 0; s < ORFEAS_PL_STAGE_COUNT; s++)
      st[s][i] = (double)r.stage_ns[s];
    *q = r.quality;
    *file_bytes = r.file.size;
    orfeas_pl_result_free(&r);
  }
  *total = bench_median(t, n);
  for (int s = 0; s < ORFEAS_PL_STAGE_COUNT; s++)
    stage[s] = bench_median(st[s], n);
  return 0;
}

static void set_stages(bench_report *r, const char *name,
                       const double stage[ORFEAS_PL_STAGE_COUNT]) {
  for (int s = 0; s < ORFEAS_PL_STAGE_COUNT; s++) {
    char key[48];
    snprintf(key, sizeof key, "stage_%s_ns",
             orfeas_pl_stage_name((orfeas_pl_stage)s));
    bench_set(r, name, key, stage[s]);
  }
}

static void case_1024(bench_report *r) {
  const char *name = "pipeline_1024_glb";
  size_t len;
  uint8_t *png = make_png(1024, &len);
  orfeas_pl_options o;
  orfeas_pl_options_init(&o);
  o.format = ORFEAS_PL_GLB;
  double total, stage[ORFEAS_PL_STAGE_COUNT];
  orfeas_pl_quality q;
  size_t bytes;
  /* Two warm-up jobs fault in the code and the allocator's arenas. */
  if (png == NULL ||
      time_jobs(png, len, &o, 2, &total, stage, &q, &bytes) != 0 ||
      time_jobs(png, len, &o, RUNS_1024, &total, stage, &q, &bytes) != 0) {
    free(png);
    return;
  }
  bench_set(r, name, "ours_ns", total);
  set_stages(r, name, stage);
  bench_set(r, name, "triangles", q.triangles);
  bench_set(r, name, "file_bytes", (double)bytes);
  bench_set(r, name, "closed", q.closed);
  bench_set(r, name, "score", q.score);
  free(png);
}

/* In a child, so peak_rss_bytes is this case's own high-water mark. */
static void case_4096(bench_report *r) {
  const char *name = "pipeline_4096_stl_q10";
  size_t len;
  uint8_t *png = make_png(4096, &len);
  if (png == NULL)
    return;
  int fd[2];
  if (pipe(fd) != 0) {
    free(png);
    return;
  }
  pid_t pid = fork();
  if (pid == 0) {
    close(fd[0]);
    orfeas_pl_options o;
    orfeas_pl_options_init(&o);
    o.format = ORFEAS_PL_STL;
    o.quality = 10;
    double out[3 + ORFEAS_PL_STAGE_COUNT];
    orfeas_pl_quality q;
    size_t bytes;
    int rc = time_jobs(png, len, &o, RUNS_4096, &out[0], out + 3, &q, &bytes);
    out[1] = q.triangles;
    out[2] = (double)bytes;
    ssize_t w = rc == 0 ? write(fd[1], out, sizeof out) : -1;
    _exit(w == (ssize_t)sizeof out ? 0 : 1);
  }
  close(fd[1]);
  double in[3 + ORFEAS_PL_STAGE_COUNT];
  ssize_t got = pid > 0 ? read(fd[0], in, sizeof in) : -1;
  close(fd[0]);
  int status = 0;
  struct rusage ru;
  memset(&ru, 0, sizeof ru);
  if (pid > 0)
    wait4(pid, &status, 0, &ru);
  free(png);
  if (got != (ssize_t)sizeof in || !WIFEXITED(status) ||
      WEXITSTATUS(status) != 0) {
    fprintf(stderr, "bench_pipeline: the 4096 case failed\n");
    return;
  }
  bench_set(r, name, "ours_ns", in[0]);
  bench_set(r, name, "peak_rss_bytes", (double)ru.ru_maxrss * 1024.0);
  bench_set(r, name, "triangles", in[1]);
  bench_set(r, name, "file_bytes", in[2]);
  set_stages(r, name, in + 3);
}

/* Median of 9 verify or decode calls; -1 when one fails. */
static double time_check(const uint8_t *d, size_t len, int full) {
  double t[9];
  for (int i = 0; i < 9; i++) {
    orfeas_pl_image img;
    double t0 = bench_now_ns();
    orfeas_pl_code rc =
        full ? orfeas_pl_image_decode(d, len, 0, 0, &img, NULL, 0)
             : orfeas_pl_image_verify(d, len, 0, 0, NULL, 0);
    t[i] = bench_now_ns() - t0;
    if (full)
      orfeas_pl_image_free(&img);
    if (rc != ORFEAS_PL_OK)
      return -1;
  }
  return bench_median(t, 9);
}

static void case_verify(bench_report *r) {
  const char *name = "upload_verify_4096";
  size_t plen = 0, jlen = 0;
  uint8_t *png = make_png(4096, &plen);
  uint8_t *px = tpl_draw(TPL_STAR_HOLE, 4096, 4096, 0, 1);
  uint8_t *jpg = px ? tpl_jpeg(px, 4096, 4096, &jlen) : NULL;
  free(px);
  double v = png ? time_check(png, plen, 0) : -1;
  double d = png ? time_check(png, plen, 1) : -1;
  double vj = jpg ? time_check(jpg, jlen, 0) : -1;
  double dj = jpg ? time_check(jpg, jlen, 1) : -1;
  free(png);
  free(jpg);
  if (v <= 0 || d <= 0 || vj <= 0 || dj <= 0) {
    fprintf(stderr, "bench_pipeline: the verify case failed\n");
    return;
  }
  bench_set(r, name, "ours_ns", v);
  bench_set(r, name, "peer_ns", d);
  bench_set(r, name, "peer_vs_ours", d / v);
  bench_set(r, name, "ours_jpeg_ns", vj);
  bench_set(r, name, "peer_jpeg_ns", dj);
  bench_set(r, name, "peer_vs_ours_jpeg", dj / vj);
}

void bench_pipeline_suite(bench_report *r) {
  if (bench_wanted(r, "pipeline_1024_glb"))
    case_1024(r);
  if (bench_wanted(r, "pipeline_4096_stl_q10"))
    case_4096(r);
  if (bench_wanted(r, "upload_verify_4096"))
    case_verify(r);
}
