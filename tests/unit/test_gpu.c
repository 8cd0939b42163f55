/* test_gpu.c: the GPU manager against the fake NVML, loaded with dlopen by
 * the same code that loads the real libnvidia-ml. Every wait is a condition
 * polled against a deadline. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "orfeas/gpu.h"

static char state_path[256];
static char logbuf[4096];
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;

static void capture(void *user, const char *line) {
  (void)user;
  pthread_mutex_lock(&log_mu);
  size_t n = strlen(logbuf);
  snprintf(logbuf + n, sizeof logbuf - n, "%s\n", line);
  pthread_mutex_unlock(&log_mu);
}

static bool log_has(const char *s) {
  pthread_mutex_lock(&log_mu);
  bool r = strstr(logbuf, s) != NULL;
  pthread_mutex_unlock(&log_mu);
  return r;
}

static void write_state(const char *text) {
  char tmp[300];
  snprintf(tmp, sizeof tmp, "%s.tmp", state_path);
  FILE *f = fopen(tmp, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  assert_int_equal(rename(tmp, state_path), 0); /* atomic for the reader */
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct {
  om_registry *reg;
  orfeas_gpu *gpu;
  om_buf buf;
} fixture;

static void render(fixture *f) {
  assert_int_equal(om_registry_render(f->reg, OM_FORMAT_TEXT, &f->buf), OM_OK);
}

/* One of the fake NVML's counters (fake_nvml_hanging, ...), by name. */
static unsigned long fake_counter(const char *name) {
  void *h = dlopen(FAKE_NVML, RTLD_NOW | RTLD_NOLOAD);
  assert_non_null(h);
  unsigned long (*fn)(void);
  void *sym = dlsym(h, name);
  assert_non_null(sym);
  memcpy(&fn, &sym, sizeof sym);
  unsigned long v = fn();
  dlclose(h);
  return v;
}

/* A render while an NVML call is hung returns before that call does: it
 * does not wait on NVML. Told by the fake's counters, not by a clock (a
 * loaded machine stretches any time measured here, issue #12). */
static void render_returns_while_nvml_hangs(fixture *f) {
  double deadline = now_s() + 5;
  while (fake_counter("fake_nvml_hanging") == 0) {
    if (now_s() > deadline)
      fail_msg("no NVML call hung within 5 s");
    struct timespec ts = {0, 5 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  unsigned long done = fake_counter("fake_nvml_hangs_done");
  render(f);
  if (fake_counter("fake_nvml_hangs_done") != done)
    fail_msg("a render waited for a hung NVML call to end");
}

/* Renders until the exposition contains (or, with want = false, lacks)
 * text; fails after `seconds`. */
static void wait_text(fixture *f, const char *text, bool want, double seconds) {
  double deadline = now_s() + seconds;
  for (;;) {
    render(f);
    if ((strstr(f->buf.data, text) != NULL) == want)
      return;
    if (now_s() > deadline)
      fail_msg("after %.1f s the exposition %s \"%s\":\n%s", seconds,
               want ? "still lacks" : "still has", text, f->buf.data);
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
}

/* The value of series (its name and labels, as written) in the last
 * render, or -1 when the exposition lacks it. */
static double series_value(const fixture *f, const char *series) {
  size_t n = strlen(series);
  for (const char *p = f->buf.data; p != NULL && *p != '\0';) {
    if (strncmp(p, series, n) == 0 && p[n] == ' ')
      return strtod(p + n + 1, NULL);
    p = strchr(p, '\n');
    p = p ? p + 1 : NULL;
  }
  return -1;
}

/* Renders until the counter series reads at least min; fails after
 * `seconds`. A counter that grows every round reads a given value for one
 * interval only (0.1 s here), which a waiter descheduled on a loaded
 * machine misses: waiting for that exact value could wait for ever. */
static void wait_at_least(fixture *f, const char *series, double min,
                          double seconds) {
  double deadline = now_s() + seconds;
  for (;;) {
    render(f);
    if (series_value(f, series) >= min)
      return;
    if (now_s() > deadline)
      fail_msg("after %.1f s %s still reads %g, not %g or more:\n%s", seconds,
               series, series_value(f, series), min, f->buf.data);
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
}

/* gpus: the --gpus list (NULL: all). */
static fixture *start_gpus(const char *lib, const char *state,
                           const char *gpus) {
  fixture *f = calloc(1, sizeof *f);
  write_state(state);
  logbuf[0] = '\0';
  f->reg = om_registry_new(NULL);
  orfeas_gpu_opts o = {.nvml_lib = lib,
                       .interval_s = 0.1,
                       .call_timeout_s = 0.5,
                       .log = capture,
                       .gpus = gpus};
  char err[256];
  f->gpu = orfeas_gpu_start(f->reg, &o, err, sizeof err);
  if (f->gpu == NULL)
    fail_msg("orfeas_gpu_start: %s", err);
  return f;
}

static fixture *start(const char *lib, const char *state) {
  return start_gpus(lib, state, NULL);
}

static void finish(fixture *f) {
  /* A sampler left behind still writes into the registry: keep it. */
  if (orfeas_gpu_stop(f->gpu, 0) == 0)
    om_registry_free(f->reg);
  om_buf_free(&f->buf);
  free(f);
}

static void values_appear_and_follow_the_state(void **state) {
  (void)state;
  fixture *f = start(FAKE_NVML, "gpus=1\ngpu0.util=42\ngpu0.mem_used_mb=1024\n"
                                "gpu0.mem_total_mb=8192\ngpu0.temp=71\n"
                                "gpu0.power_w=123.5\ngpu0.name=Tesla Fake\n");
  wait_text(f, "orfeas_gpu_utilization_percent{gpu_id=\"0\"} 42\n", true, 5);
  const char *want[] = {
      "orfeas_gpus 1\n",
      "orfeas_gpu_up{gpu_id=\"0\"} 1\n",
      "orfeas_gpu_memory_used_mb{gpu_id=\"0\"} 1024\n",
      "orfeas_gpu_memory_free_mb{gpu_id=\"0\"} 7168\n",
      "orfeas_gpu_memory_total_mb{gpu_id=\"0\"} 8192\n",
      "orfeas_gpu_temperature_celsius{gpu_id=\"0\"} 71\n",
      "orfeas_gpu_power_watts{gpu_id=\"0\"} 123.5\n",
      "orfeas_gpu_info{gpu_id=\"0\",name=\"Tesla "
      "Fake\",uuid=\"GPU-fa4e0000-0000-"
      "4000-8000-000000000000\"} 1\n",
      "orfeas_gpu_last_sample_timestamp_seconds{gpu_id=\"0\"} ",
      "orfeas_gpu_sample_duration_seconds ",
  };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    if (strstr(f->buf.data, want[i]) == NULL)
      fail_msg("missing %s in:\n%s", want[i], f->buf.data);
  /* A change in the state shows within an interval or so. */
  write_state("gpus=1\ngpu0.util=77\n");
  wait_text(f, "orfeas_gpu_utilization_percent{gpu_id=\"0\"} 77\n", true, 1);
  orfeas_gpu_summary s;
  orfeas_gpu_summary_get(f->gpu, &s);
  assert_int_equal(s.nvml_loaded, 1);
  assert_int_equal(s.count, 1);
  assert_int_equal(s.up, 1);
  /* nvmlInit_v2 once, however many samples. */
  void *h = dlopen(FAKE_NVML, RTLD_NOW | RTLD_NOLOAD);
  assert_non_null(h);
  unsigned long (*calls)(const char *);
  void *sym = dlsym(h, "fake_nvml_calls");
  memcpy(&calls, &sym, sizeof sym);
  assert_true(calls("nvmlDeviceGetUtilizationRates") >= 2);
  assert_int_equal(calls("nvmlInit_v2"), 1);
  /* The newer calls are preferred when the library has them. */
  assert_true(calls("nvmlDeviceGetMemoryInfo_v2") > 0);
  assert_int_equal(calls("nvmlDeviceGetMemoryInfo"), 0);
  assert_true(calls("nvmlDeviceGetTemperatureV") > 0);
  dlclose(h);
  finish(f);
}

static void two_gpus_two_label_sets(void **state) {
  (void)state;
  fixture *f = start(FAKE_NVML, "gpus=2\ngpu0.util=10\ngpu1.util=90\n");
  wait_text(f, "orfeas_gpu_utilization_percent{gpu_id=\"1\"} 90\n", true, 5);
  assert_non_null(
      strstr(f->buf.data, "orfeas_gpu_utilization_percent{gpu_id=\"0\"} 10\n"));
  assert_non_null(strstr(f->buf.data, "orfeas_gpus 2\n"));
  assert_non_null(strstr(f->buf.data, "orfeas_gpu_up{gpu_id=\"1\"} 1\n"));
  finish(f);
}

static void lost_gpu_goes_down_and_comes_back(void **state) {
  (void)state;
  fixture *f = start(FAKE_NVML, "gpus=2\ngpu0.util=5\n");
  wait_text(f, "orfeas_gpu_up{gpu_id=\"0\"} 1\n", true, 5);
  write_state("gpus=2\ngpu0.util=5\ngpu0.lost=1\n");
  wait_text(f, "orfeas_gpu_up{gpu_id=\"0\"} 0\n", true, 2);
  /* No stale values for the lost GPU; the other one carries on. */
  assert_null(
      strstr(f->buf.data, "orfeas_gpu_utilization_percent{gpu_id=\"0\"}"));
  assert_non_null(strstr(f->buf.data, "orfeas_gpu_up{gpu_id=\"1\"} 1\n"));
  wait_text(f,
            "orfeas_nvml_errors_total{call=\"nvmlDeviceGetHandleByIndex_v2\","
            "error=\"GPU_IS_LOST\"} ",
            true, 2);
  orfeas_gpu_summary s;
  orfeas_gpu_summary_get(f->gpu, &s);
  assert_int_equal(s.count, 2);
  assert_int_equal(s.up, 1);
  write_state("gpus=2\ngpu0.util=6\n");
  wait_text(f, "orfeas_gpu_up{gpu_id=\"0\"} 1\n", true, 2);
  wait_text(f, "orfeas_gpu_utilization_percent{gpu_id=\"0\"} 6\n", true, 2);
  finish(f);
}

/* A wedged driver: every call sleeps 1.5 s (3 times the 0.5 s deadline;
 * not more, as the recovery waits the last call out). Scrapes never wait on
 * it, the GPU shows down once the call is past its 0.5 s deadline, the late
 * calls are counted, and it comes back when the driver does. */
static void hung_nvml_keeps_scrapes_fast(void **state) {
  (void)state;
  fixture *f = start(FAKE_NVML, "gpus=1\ngpu0.util=33\n");
  wait_text(f, "orfeas_gpu_up{gpu_id=\"0\"} 1\n", true, 5);
  write_state("gpus=1\ngpu0.util=33\nhang_ms=1500\n");
  render_returns_while_nvml_hangs(f);
  wait_text(f, "orfeas_gpu_up{gpu_id=\"0\"} 0\n", true, 2.5);
  render_returns_while_nvml_hangs(f);
  write_state("gpus=1\ngpu0.util=34\n");
  wait_text(f, "error=\"DEADLINE_EXCEEDED\"} ", true, 8);
  wait_text(f, "orfeas_gpu_utilization_percent{gpu_id=\"0\"} 34\n", true, 8);
  finish(f);
}

/* A slow driver: every call takes 0.8 s, past the 0.5 s deadline. Once a
 * call has been late the GPU stays down: between two late calls a scrape
 * must not show the previous round's good status (found by the live run's
 * gpu-hung drill: the flapping kept OrfeasGPUNotResponding pending for a
 * whole round of late calls). */
static void slow_nvml_stays_down_between_calls(void **state) {
  (void)state;
  fixture *f = start(FAKE_NVML, "gpus=1\ngpu0.util=33\n");
  wait_text(f, "orfeas_gpu_up{gpu_id=\"0\"} 1\n", true, 5);
  write_state("gpus=1\ngpu0.util=33\nhang_ms=800\n");
  wait_text(f, "error=\"DEADLINE_EXCEEDED\"} ", true, 4);
  double until = now_s() + 2.0; /* more than two late calls */
  while (now_s() < until) {
    render(f);
    if (strstr(f->buf.data, "orfeas_gpu_up{gpu_id=\"0\"} 1\n"))
      fail_msg("the GPU showed up again between two late calls:\n%s",
               f->buf.data);
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  write_state("gpus=1\ngpu0.util=35\n");
  wait_text(f, "orfeas_gpu_utilization_percent{gpu_id=\"0\"} 35\n", true, 8);
  finish(f);
}

static void no_library_means_no_gpu(void **state) {
  (void)state;
  fixture *f = start("/nonexistent/libnvidia-ml.so.1", "gpus=1\n");
  render(f);
  assert_non_null(strstr(f->buf.data, "orfeas_gpus 0\n"));
  assert_null(strstr(f->buf.data, "orfeas_gpu_up{"));
  assert_true(log_has("cannot load NVML from /nonexistent/libnvidia-ml.so.1"));
  assert_true(log_has("running without GPU metrics"));
  orfeas_gpu_summary s;
  orfeas_gpu_summary_get(f->gpu, &s);
  assert_int_equal(s.nvml_loaded, 0);
  assert_int_equal(s.count, 0);
  finish(f);
}

/* An older NVML without the _v2 memory call, TemperatureV or power: the
 * fallbacks give the same memory figures (used = total - free) and the
 * temperature, power is left out, and each fallback is logged once. */
static void missing_optional_symbols_use_fallbacks(void **state) {
  (void)state;
  fixture *f =
      start(FAKE_NVML_MINIMAL, "gpus=1\ngpu0.mem_used_mb=1024\n"
                               "gpu0.mem_total_mb=8192\ngpu0.temp=66\n");
  wait_text(f, "orfeas_gpu_memory_used_mb{gpu_id=\"0\"} 1024\n", true, 5);
  wait_text(f, "orfeas_gpu_temperature_celsius{gpu_id=\"0\"} 66\n", true, 2);
  assert_null(strstr(f->buf.data, "orfeas_gpu_power_watts{"));
  assert_true(log_has("using nvmlDeviceGetMemoryInfo"));
  assert_true(log_has("using nvmlDeviceGetTemperature"));
  assert_true(log_has("no power metric"));
  finish(f);
}

/* NVML_ERROR_NOT_SUPPORTED means the product lacks that reading, not that
 * the GPU is unwell: utilization on a MIG-enabled A100/H100, memory on a
 * unified-memory GB10, power on some boards. The GPU stays up, the readings
 * it has are shown, the ones it lacks are left out, and the health summary
 * does not count the missing ones as zeros. */
static void unsupported_readings_leave_the_gpu_up(void **state) {
  (void)state;
  fixture *f =
      start(FAKE_NVML, "gpus=2\ngpu0.not_supported=util,memory,power\n"
                       "gpu0.temp=55\ngpu1.util=20\n"
                       "gpu1.mem_used_mb=1000\ngpu1.mem_total_mb=4000\n");
  wait_text(f, "orfeas_gpu_utilization_percent{gpu_id=\"1\"} 20\n", true, 5);
  wait_text(f, "orfeas_gpu_temperature_celsius{gpu_id=\"0\"} 55\n", true, 2);
  const char *want[] = {"orfeas_gpu_up{gpu_id=\"0\"} 1\n",
                        "orfeas_gpu_up{gpu_id=\"1\"} 1\n",
                        "orfeas_gpu_memory_total_mb{gpu_id=\"1\"} 4000\n",
                        "orfeas_gpu_power_watts{gpu_id=\"1\"} 50\n"};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    if (strstr(f->buf.data, want[i]) == NULL)
      fail_msg("missing %s in:\n%s", want[i], f->buf.data);
  const char *unwanted[] = {"orfeas_gpu_utilization_percent{gpu_id=\"0\"}",
                            "orfeas_gpu_memory_used_mb{gpu_id=\"0\"}",
                            "orfeas_gpu_memory_free_mb{gpu_id=\"0\"}",
                            "orfeas_gpu_memory_total_mb{gpu_id=\"0\"}",
                            "orfeas_gpu_power_watts{gpu_id=\"0\"}"};
  for (size_t i = 0; i < sizeof unwanted / sizeof unwanted[0]; i++)
    if (strstr(f->buf.data, unwanted[i]) != NULL)
      fail_msg("unexpected %s in:\n%s", unwanted[i], f->buf.data);
  orfeas_gpu_summary s;
  orfeas_gpu_summary_get(f->gpu, &s);
  assert_int_equal(s.up, 2);
  assert_true(s.mem_total_mb == 4000); /* GPU 0's unknown memory adds nothing */
  assert_true(s.util_max == 20);
  finish(f);
}

/* How often the fake NVML was called for a function (fake_nvml_calls). */
static unsigned long fake_calls(const char *fn) {
  void *h = dlopen(FAKE_NVML, RTLD_NOW | RTLD_NOLOAD);
  assert_non_null(h);
  unsigned long (*calls)(const char *);
  void *sym = dlsym(h, "fake_nvml_calls");
  assert_non_null(sym);
  memcpy(&calls, &sym, sizeof sym);
  unsigned long v = calls(fn);
  dlclose(h);
  return v;
}

/* A reading a GPU lacks is a property of the GPU, not an error that
 * happens each round: NOT_SUPPORTED is counted once per GPU and call (and
 * logged once), however many rounds ask. It grew by one every round, so
 * orfeas_nvml_errors_total rose forever on a MIG-enabled GPU. */
static void not_supported_is_counted_once_per_gpu(void **state) {
  (void)state;
  fixture *f = start(FAKE_NVML, "gpus=3\ngpu0.not_supported=util,memory\n"
                                "gpu2.not_supported=util\n");
  wait_text(f, "orfeas_gpu_up{gpu_id=\"2\"} 1\n", true, 5);
  /* Five more rounds, each asking all three GPUs. */
  unsigned long until = fake_calls("nvmlDeviceGetUtilizationRates") + 15;
  double deadline = now_s() + 10;
  while (fake_calls("nvmlDeviceGetUtilizationRates") < until) {
    if (now_s() > deadline)
      fail_msg("fewer than 5 rounds in 10 s");
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  render(f);
  const char *want[] = {
      "orfeas_nvml_errors_total{call=\"nvmlDeviceGetUtilizationRates\","
      "error=\"NOT_SUPPORTED\"} 2\n",
      "orfeas_nvml_errors_total{call=\"nvmlDeviceGetMemoryInfo_v2\","
      "error=\"NOT_SUPPORTED\"} 1\n",
      "orfeas_nvml_errors_total{call=\"nvmlDeviceGetMemoryInfo\","
      "error=\"NOT_SUPPORTED\"} 1\n",
      "orfeas_gpu_up{gpu_id=\"0\"} 1\n",
  };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    if (strstr(f->buf.data, want[i]) != NULL)
      continue;
    const char *e = strstr(f->buf.data, "\norfeas_nvml_errors_total{");
    fail_msg("missing %s; the counter reads:%.600s", want[i], e ? e : " none");
  }
  pthread_mutex_lock(&log_mu);
  const char *first = strstr(logbuf, "GPU 0: nvmlDeviceGetUtilizationRates");
  bool twice = first && strstr(first + 1, "GPU 0: nvmlDeviceGetUtilization");
  pthread_mutex_unlock(&log_mu);
  if (first == NULL || twice)
    fail_msg("GPU 0's missing utilization logged %s:\n%s",
             first ? "twice" : "never", logbuf);
  finish(f);
}

/* nvmlDeviceGetCount_v2 failing must not make the GPUs vanish from
 * /metrics: OrfeasGPUNotResponding fires on orfeas_gpu_up == 0, and a series
 * that disappears resolves that alert instead. They stay listed, down. */
static void failing_count_keeps_gpus_shown_down(void **state) {
  (void)state;
  fixture *f = start(FAKE_NVML, "gpus=2\n");
  wait_text(f, "orfeas_gpu_up{gpu_id=\"1\"} 1\n", true, 5);
  write_state("gpus=2\ncount_error=999\n");
  wait_text(f,
            "orfeas_nvml_errors_total{call=\"nvmlDeviceGetCount_v2\","
            "error=\"UNKNOWN\"} ",
            true, 2);
  wait_text(f, "orfeas_gpu_up{gpu_id=\"0\"} 0\n", true, 2);
  assert_non_null(strstr(f->buf.data, "orfeas_gpu_up{gpu_id=\"1\"} 0\n"));
  assert_non_null(strstr(f->buf.data, "orfeas_gpus 2\n"));
  write_state("gpus=2\n");
  wait_text(f, "orfeas_gpu_up{gpu_id=\"1\"} 1\n", true, 2);
  finish(f);
}

/* The name and UUID belong to the board, not to the index: when the device
 * count shrinks and grows again, the GPU now at an index is read afresh
 * rather than shown under the old board's identity. */
static void identity_follows_the_gpu_at_an_index(void **state) {
  (void)state;
  fixture *f =
      start(FAKE_NVML, "gpus=2\ngpu1.name=Old GPU\ngpu1.uuid=GPU-old\n");
  const char *old_info =
      "orfeas_gpu_info{gpu_id=\"1\",name=\"Old GPU\",uuid=\"GPU-old\"} 1\n";
  wait_text(f, old_info, true, 5);
  write_state("gpus=1\n");
  wait_text(f, "orfeas_gpus 1\n", true, 2);
  write_state("gpus=2\ngpu1.name=New GPU\ngpu1.uuid=GPU-new\n");
  wait_text(
      f, "orfeas_gpu_info{gpu_id=\"1\",name=\"New GPU\",uuid=\"GPU-new\"} 1\n",
      true, 2);
  assert_null(strstr(f->buf.data, old_info));
  finish(f);
}

/* The driver comes up after orfeasd: nvmlInit_v2 fails (DRIVER_NOT_LOADED),
 * nothing is sampled meanwhile (the fake, like NVML, refuses calls before
 * init), the failure is logged once, and sampling starts when init works. */
static void init_failure_is_retried_until_the_driver_answers(void **state) {
  (void)state;
  fixture *f = start(FAKE_NVML, "gpus=1\ninit_error=9\n");
  wait_at_least(f,
                "orfeas_nvml_errors_total{call=\"nvmlInit_v2\","
                "error=\"DRIVER_NOT_LOADED\"}",
                2, 5);
  assert_true(log_has("nvmlInit_v2 failed (DRIVER_NOT_LOADED)"));
  assert_non_null(strstr(f->buf.data, "\norfeas_gpus 0\n"));
  assert_null(strstr(f->buf.data, "\norfeas_gpu_sample_duration_seconds "));
  orfeas_gpu_summary s;
  orfeas_gpu_summary_get(f->gpu, &s);
  assert_int_equal(s.nvml_loaded, 0);
  write_state("gpus=1\ngpu0.util=12\n");
  wait_text(f, "orfeas_gpu_utilization_percent{gpu_id=\"0\"} 12\n", true, 2);
  orfeas_gpu_summary_get(f->gpu, &s);
  assert_int_equal(s.nvml_loaded, 1);
  pthread_mutex_lock(&log_mu);
  const char *first = strstr(logbuf, "nvmlInit_v2 failed");
  bool twice = first && strstr(first + 1, "nvmlInit_v2 failed");
  pthread_mutex_unlock(&log_mu);
  assert_false(twice);
  finish(f);
}

/* A GPU this process may not open (NVML_ERROR_NO_PERMISSION from the
 * handle lookup: the device file's mode, a container's device list) shows
 * down, as before, but the log says once why and what to check, so the
 * page it raises can be acted on; it comes up once access is granted. */
static void no_permission_is_logged_once_with_the_fix(void **state) {
  (void)state;
  fixture *f = start(FAKE_NVML, "gpus=2\ngpu1.no_permission=1\n");
  wait_at_least(
      f,
      "orfeas_nvml_errors_total{call=\"nvmlDeviceGetHandleByIndex_v2\","
      "error=\"NO_PERMISSION\"}",
      3, 5);
  assert_non_null(strstr(f->buf.data, "orfeas_gpu_up{gpu_id=\"1\"} 0\n"));
  assert_non_null(strstr(f->buf.data, "orfeas_gpu_up{gpu_id=\"0\"} 1\n"));
  pthread_mutex_lock(&log_mu);
  const char *first = strstr(logbuf, "GPU 1: NO_PERMISSION");
  bool twice = first && strstr(first + 1, "GPU 1: NO_PERMISSION");
  bool fix = first && strstr(first, "device file") != NULL;
  pthread_mutex_unlock(&log_mu);
  if (first == NULL || twice || !fix)
    fail_msg("want one line \"GPU 1: NO_PERMISSION ... device file\":\n%s",
             logbuf);
  write_state("gpus=2\n");
  wait_text(f, "orfeas_gpu_up{gpu_id=\"1\"} 1\n", true, 2);
  finish(f);
}

/* A start that fails half-way, here because a name it registers is taken
 * (in the middle of its families, then its last one), must take back every
 * collector it registered before it frees the manager: a scrape after it
 * read the freed manager (ASan: heap-use-after-free in collect). The error
 * names what failed, and the registry renders as it did before. */
static void failed_start_leaves_nothing_registered(void **state) {
  (void)state;
  const char *taken[] = {"orfeas_gpu_temperature_celsius",
                         "orfeas_nvml_errors_total"};
  for (size_t i = 0; i < sizeof taken / sizeof taken[0]; i++) {
    write_state("gpus=1\n");
    om_registry *reg = om_registry_new(NULL);
    om_error oe;
    if (i == 0)
      assert_non_null(om_gauge_new(reg, taken[i], "Taken first.", &oe));
    else
      assert_non_null(om_counter_new(reg, taken[i], "Taken first.", &oe));
    om_buf before = {0}, after = {0};
    assert_int_equal(om_registry_render(reg, OM_FORMAT_TEXT, &before), OM_OK);
    orfeas_gpu_opts o = {.nvml_lib = FAKE_NVML,
                         .interval_s = 0.1,
                         .call_timeout_s = 0.5,
                         .log = capture};
    char err[256] = "";
    assert_null(orfeas_gpu_start(reg, &o, err, sizeof err));
    if (strstr(err, taken[i]) == NULL)
      fail_msg("the error does not name %s: \"%s\"", taken[i], err);
    assert_int_equal(om_registry_render(reg, OM_FORMAT_TEXT, &after), OM_OK);
    if (strcmp(before.data, after.data) != 0)
      fail_msg("a failed start left families behind:\n%s", after.data);
    om_buf_free(&before);
    om_buf_free(&after);
    om_registry_free(reg);
  }
}

/* A driver that wedges in nvmlShutdown must not hang the stop: it is
 * bounded by wait_s like any other call, returns 1 (the manager left
 * behind, nothing freed that the stuck call could touch), and the log names
 * the call that did not return. Told by the fake's counters: the stop
 * returned while nvmlShutdown was still in its sleep. Before, the stop
 * called nvmlShutdown itself after the join, with no deadline. */
/* Reachable (volatile: the store is kept), so LeakSanitizer does not
 * report the manager the stop left behind. */
static fixture *volatile left_behind;

static void wedged_shutdown_does_not_hang_the_stop(void **state) {
  (void)state;
  fixture *f = start(FAKE_NVML, "gpus=1\n");
  wait_text(f, "orfeas_gpu_up{gpu_id=\"0\"} 1\n", true, 5);
  write_state("gpus=1\nshutdown_hang_ms=2000\n");
  unsigned long done = fake_counter("fake_nvml_hangs_done");
  int rc = orfeas_gpu_stop(f->gpu, 0.3);
  if (rc != 1) /* 0: it waited nvmlShutdown out and closed the library */
    fail_msg("stop returned %d, not 1 (the manager left behind)", rc);
  if (fake_counter("fake_nvml_hangs_done") != done)
    fail_msg("stop returned only after nvmlShutdown came back");
  if (!log_has("nvmlShutdown"))
    fail_msg("the log does not name the stuck call:\n%s", logbuf);
  left_behind = f;
  /* Let the left-behind sampler finish before the process exits. */
  double deadline = now_s() + 10;
  while (fake_counter("fake_nvml_hangs_done") == done) {
    if (now_s() > deadline)
      fail_msg("nvmlShutdown did not come back from its 2 s sleep in 10 s");
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
}

/* Calls the fake NVML got that named GPU i (fake_nvml_gpu_calls). */
static unsigned long fake_gpu_calls(unsigned i) {
  void *h = dlopen(FAKE_NVML, RTLD_NOW | RTLD_NOLOAD);
  assert_non_null(h);
  unsigned long (*calls)(unsigned);
  void *sym = dlsym(h, "fake_nvml_gpu_calls");
  assert_non_null(sym);
  memcpy(&calls, &sym, sizeof sym);
  unsigned long v = calls(i);
  dlclose(h);
  return v;
}

#define UUID_OF(i) "GPU-fa4e0000-0000-4000-8000-00000000000" #i

/* Waits until GPU i has been named in at least n more NVML calls. */
static void wait_gpu_calls(unsigned i, unsigned long n) {
  unsigned long until = fake_gpu_calls(i) + n;
  double deadline = now_s() + 10;
  while (fake_gpu_calls(i) < until) {
    if (now_s() > deadline)
      fail_msg("GPU %u named in fewer than %lu NVML calls in 10 s", i, n);
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
}

/* --gpus: four GPUs, two of them selected, one by index and one by UUID.
 * The other two are another service's: never named in an NVML call (the
 * fake counts the calls per GPU), never in /metrics, not in the summary. */
static void only_selected_gpus_are_sampled_and_shown(void **state) {
  (void)state;
  /* Held open so that the counters run from here (a library unloaded by
   * an earlier test starts again from 0, one left loaded does not). */
  void *keep = dlopen(FAKE_NVML, RTLD_NOW);
  assert_non_null(keep);
  unsigned long before0 = fake_gpu_calls(0), before2 = fake_gpu_calls(2);
  fixture *f = start_gpus(FAKE_NVML,
                          "gpus=4\ngpu0.util=10\ngpu1.util=11\n"
                          "gpu2.util=12\ngpu3.util=13\ngpu0.lost=1\n"
                          "gpu2.no_permission=1\n",
                          "1, " UUID_OF(3));
  wait_text(f, "orfeas_gpu_utilization_percent{gpu_id=\"3\"} 13\n", true, 5);
  wait_text(f, "orfeas_gpu_utilization_percent{gpu_id=\"1\"} 11\n", true, 2);
  /* A few more rounds, in which the others could have been asked. */
  wait_gpu_calls(1, 20);
  wait_gpu_calls(3, 20);
  render(f);
  const char *want[] = {
      "orfeas_gpus 2\n",
      "orfeas_gpu_up{gpu_id=\"1\"} 1\n",
      "orfeas_gpu_up{gpu_id=\"3\"} 1\n",
      "orfeas_gpu_info{gpu_id=\"3\",name=\"Fake NVIDIA GPU 3\",uuid=\"" UUID_OF(
          3) "\"} 1\n",
  };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    if (strstr(f->buf.data, want[i]) == NULL)
      fail_msg("missing %s in:\n%s", want[i], f->buf.data);
  /* GPU 0 (lost) and GPU 2 (NO_PERMISSION) would page if they showed. */
  const char *unwanted[] = {"gpu_id=\"0\"", "gpu_id=\"2\"", "GPU_IS_LOST",
                            "NO_PERMISSION"};
  for (size_t i = 0; i < sizeof unwanted / sizeof unwanted[0]; i++)
    if (strstr(f->buf.data, unwanted[i]) != NULL)
      fail_msg("unexpected %s in:\n%s", unwanted[i], f->buf.data);
  assert_int_equal(fake_gpu_calls(0) - before0, 0);
  assert_int_equal(fake_gpu_calls(2) - before2, 0);
  assert_false(log_has("GPU 2"));
  orfeas_gpu_summary s;
  orfeas_gpu_summary_get(f->gpu, &s);
  assert_int_equal(s.count, 2);
  assert_int_equal(s.up, 2);
  assert_true(s.util_max == 13);
  finish(f);
  dlclose(keep);
}

/* A GPU --gpus names that NVML does not list (an index past the count, a
 * UUID it does not know) is logged by what the operator wrote and shown
 * down under that name; once NVML lists it, it is sampled like the rest. */
static void listed_gpu_nvml_lacks_shows_down_until_it_appears(void **state) {
  (void)state;
  void *keep = dlopen(FAKE_NVML, RTLD_NOW); /* counters from here */
  assert_non_null(keep);
  unsigned long before[10];
  for (unsigned i = 0; i < 10; i++)
    before[i] = fake_gpu_calls(i);
  fixture *f = start_gpus(FAKE_NVML, "gpus=2\n", "0,5," UUID_OF(9));
  wait_text(f, "orfeas_gpu_up{gpu_id=\"" UUID_OF(9) "\"} 0\n", true, 5);
  const char *want[] = {"orfeas_gpus 3\n", "orfeas_gpu_up{gpu_id=\"0\"} 1\n",
                        "orfeas_gpu_up{gpu_id=\"5\"} 0\n"};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    if (strstr(f->buf.data, want[i]) == NULL)
      fail_msg("missing %s in:\n%s", want[i], f->buf.data);
  assert_null(strstr(f->buf.data, "gpu_id=\"1\""));
  if (!log_has("GPU 5 (--gpus): NVML lists no such GPU") ||
      !log_has("GPU " UUID_OF(9) " (--gpus): NVML lists no such GPU"))
    fail_msg("the missing GPUs not logged by name:\n%s", logbuf);
  orfeas_gpu_summary s;
  orfeas_gpu_summary_get(f->gpu, &s);
  assert_int_equal(s.count, 3);
  assert_int_equal(s.up, 1);
  /* Said once, not every round. */
  wait_gpu_calls(0, 20);
  pthread_mutex_lock(&log_mu);
  const char *first = strstr(logbuf, "GPU 5 (--gpus)");
  bool twice = first && strstr(first + 1, "GPU 5 (--gpus)");
  pthread_mutex_unlock(&log_mu);
  assert_false(twice);
  /* Counted once too, the round it went missing: the UUID's lookup
   * answered NOT_FOUND in each of the rounds just waited for, and the
   * counter grew with every one before the fix (it read 5 here). */
  render(f);
  double nf = series_value(f, "orfeas_nvml_errors_total{call=\"nvmlDeviceGetH"
                              "andleByUUID\",error=\"NOT_FOUND\"}");
  if (nf != 1)
    fail_msg("NOT_FOUND for the missing UUID reads %g, not 1:\n%s", nf,
             f->buf.data);
  /* Ten GPUs now: 5 and the UUID's board (index 9) are found. */
  write_state("gpus=10\ngpu5.util=55\ngpu9.util=99\n");
  wait_text(f, "orfeas_gpu_utilization_percent{gpu_id=\"9\"} 99\n", true, 5);
  wait_text(f, "orfeas_gpu_utilization_percent{gpu_id=\"5\"} 55\n", true, 2);
  assert_null(strstr(f->buf.data, "gpu_id=\"" UUID_OF(9) "\""));
  assert_non_null(strstr(f->buf.data, "orfeas_gpus 3\n"));
  assert_true(log_has("GPU " UUID_OF(9) " (--gpus): found, NVML index 9"));
  for (unsigned i = 1; i < 9; i++)
    if (i != 5 && fake_gpu_calls(i) != before[i])
      fail_msg("GPU %u, not selected, named in %lu NVML calls", i,
               fake_gpu_calls(i) - before[i]);
  finish(f);
  dlclose(keep);
}

/* A UUID that turns out to be a GPU listed already (by index, or by an
 * earlier UUID) is said once and left out: one GPU, one set of series. */
static void uuid_of_a_gpu_listed_already_is_left_out(void **state) {
  (void)state;
  fixture *f = start_gpus(FAKE_NVML, "gpus=2\ngpu1.util=21\n",
                          UUID_OF(1) ",1," UUID_OF(0));
  wait_text(f, "orfeas_gpu_up{gpu_id=\"0\"} 1\n", true, 5);
  wait_text(f, "orfeas_gpu_utilization_percent{gpu_id=\"1\"} 21\n", true, 2);
  assert_non_null(strstr(f->buf.data, "orfeas_gpus 2\n"));
  const char *up1 = strstr(f->buf.data, "orfeas_gpu_up{gpu_id=\"1\"}");
  assert_non_null(up1);
  assert_null(strstr(up1 + 1, "orfeas_gpu_up{gpu_id=\"1\"}"));
  assert_true(log_has("GPU " UUID_OF(1) " (--gpus) is GPU 1, listed already"));
  finish(f);
}

/* A bad --gpus value is refused before anything starts, with what is wrong
 * and what a good value looks like; good ones pass. */
static void bad_gpu_lists_are_refused(void **state) {
  (void)state;
  static const struct {
    const char *list, *why;
  } bad[] = {
      {"", "empty"},
      {"0,,1", "item 2 is empty"},
      {"0,", "item 2 is empty"},
      {" ", "item 1 is empty"},
      {"all,0", "\"all\" alone"},
      {"1,1", "\"1\" is listed twice"},
      {UUID_OF(1) ",gpu-FA4E0000-0000-4000-8000-000000000001", "listed twice"},
      {"0x1", "neither an NVML index"},
      {"-1", "neither an NVML index"},
      {"gpu0", "neither an NVML index"},
      {"64", "past the 64 GPUs"},
      {"99999999999999999999", "past the 64 GPUs"},
      {"GPU-1234", "32 hex digits"},
      {"GPU-fa4e0000-0000-4000-8000-00000000000z", "32 hex digits"},
      {"MIG-fa4e0000-0000-4000-8000-000000000001", "MIG instance"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char err[256] = "";
    if (orfeas_gpu_select_check(bad[i].list, err, sizeof err) == 0)
      fail_msg("\"%s\" accepted", bad[i].list);
    if (strstr(err, bad[i].why) == NULL)
      fail_msg("\"%s\": \"%s\" does not say %s", bad[i].list, err, bad[i].why);
  }
  static const char *const good[] = {
      "all",     "0",        "0,1,63",
      " 1 , 0 ", UUID_OF(3), "2,GPU-FA4E0000-0000-4000-8000-000000000003"};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    char err[256] = "";
    if (orfeas_gpu_select_check(good[i], err, sizeof err) != 0)
      fail_msg("\"%s\" refused: %s", good[i], err);
  }
  /* orfeas_gpu_start refuses it too, registering nothing. */
  om_registry *reg = om_registry_new(NULL);
  orfeas_gpu_opts o = {.nvml_lib = FAKE_NVML, .log = capture, .gpus = "0,0"};
  char err[256] = "";
  assert_null(orfeas_gpu_start(reg, &o, err, sizeof err));
  assert_non_null(strstr(err, "listed twice"));
  om_buf b = {0};
  assert_int_equal(om_registry_render(reg, OM_FORMAT_TEXT, &b), OM_OK);
  assert_null(strstr(b.data ? b.data : "", "orfeas_gpu"));
  om_buf_free(&b);
  om_registry_free(reg);
}

int main(void) {
  snprintf(state_path, sizeof state_path, "/tmp/orfeas-test-gpu-%d.state",
           (int)getpid());
  setenv("FAKE_NVML_STATE", state_path, 1);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(values_appear_and_follow_the_state),
      cmocka_unit_test(two_gpus_two_label_sets),
      cmocka_unit_test(lost_gpu_goes_down_and_comes_back),
      cmocka_unit_test(hung_nvml_keeps_scrapes_fast),
      cmocka_unit_test(slow_nvml_stays_down_between_calls),
      cmocka_unit_test(no_library_means_no_gpu),
      cmocka_unit_test(missing_optional_symbols_use_fallbacks),
      cmocka_unit_test(unsupported_readings_leave_the_gpu_up),
      cmocka_unit_test(not_supported_is_counted_once_per_gpu),
      cmocka_unit_test(failing_count_keeps_gpus_shown_down),
      cmocka_unit_test(identity_follows_the_gpu_at_an_index),
      cmocka_unit_test(init_failure_is_retried_until_the_driver_answers),
      cmocka_unit_test(no_permission_is_logged_once_with_the_fix),
      cmocka_unit_test(failed_start_leaves_nothing_registered),
      cmocka_unit_test(only_selected_gpus_are_sampled_and_shown),
      cmocka_unit_test(listed_gpu_nvml_lacks_shows_down_until_it_appears),
      cmocka_unit_test(uuid_of_a_gpu_listed_already_is_left_out),
      cmocka_unit_test(bad_gpu_lists_are_refused),
      /* Last: it leaves a manager behind with NVML initialised. */
      cmocka_unit_test(wedged_shutdown_does_not_hang_the_stop),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  unlink(state_path);
  return rc;
}
