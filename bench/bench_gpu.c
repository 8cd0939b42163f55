/* bench_gpu.c: what GPU monitoring costs, measured against the fake NVML
 * (no GPU on the machines this runs on; see docs/gpu.md for what a real GPU
 * costs when one is available).
 *
 * gpu_sample_round: the sampler's own figure (orfeas_gpu_sample_duration_
 * seconds) per GPU, with 4 fake GPUs; the fake re-reads its state file on
 * every call, so this is an upper bound of our side's cost.
 * gpu_scrape: rendering the GPU families of 4 GPUs (what /metrics adds).
 */
#include "bench.h"

#include "orfeas/gpu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

void bench_gpu_suite(bench_report *r) {
  if (!bench_wanted(r, "gpu_sample_round") && !bench_wanted(r, "gpu_scrape"))
    return;
  char state[64];
  snprintf(state, sizeof state, "/tmp/orfeas-bench-gpu-%d.state",
           (int)getpid());
  FILE *f = fopen(state, "w");
  if (f == NULL)
    return;
  fputs("gpus=4\ngpu0.util=50\ngpu1.util=60\ngpu2.util=70\ngpu3.util=80\n", f);
  fclose(f);
  setenv("FAKE_NVML_STATE", state, 1);
  om_registry *reg = om_registry_new(NULL);
  orfeas_gpu_opts o = {.nvml_lib = FAKE_NVML, .interval_s = 0.02};
  char err[256];
  orfeas_gpu *g = orfeas_gpu_start(reg, &o, err, sizeof err);
  if (g == NULL) {
    fprintf(stderr, "bench_gpu: %s\n", err);
    return;
  }
  om_buf buf = {0};
  double rounds[40], scrapes[40];
  int n = 0;
  /* Wait for the first full round (bounded), then sample 40 rounds. */
  for (int i = 0; i < 500 && n < 40; i++) {
    sleep_ms(25);
    double t0 = bench_now_ns();
    om_registry_render(reg, OM_FORMAT_TEXT, &buf);
    double t1 = bench_now_ns();
    const char *p = strstr(buf.data, "\norfeas_gpu_sample_duration_seconds ");
    if (p == NULL || strstr(buf.data, "orfeas_gpus 4\n") == NULL)
      continue;
    rounds[n] = strtod(p + 36, NULL) * 1e9 / 4;
    scrapes[n] = t1 - t0;
    n++;
  }
  if (n > 0) {
    bench_set(r, "gpu_sample_round", "ours_ns_per_gpu",
              bench_median(rounds, n));
    bench_set(r, "gpu_scrape", "ours_ns", bench_median(scrapes, n));
  }
  int left = orfeas_gpu_stop(g, 0); /* 1: the sampler still uses reg */
  om_buf_free(&buf);
  if (!left)
    om_registry_free(reg);
  unlink(state);
}
