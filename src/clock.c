/* clock.c: the clock behind per-request timing (orfeasd.h, od_ticks).
 *
 * Why not clock_gettime(CLOCK_MONOTONIC) for every request: at saturation
 * its two reads per request were most of what the request metrics cost.
 * `make bench` (api_metrics_overhead_saturated) with the baseline server
 * doing only those two reads put them at ~1% of a GET /health's server CPU,
 * against ~0.25% for the counter and the three histograms. The vDSO reads
 * the TSC behind a serialising instruction (rdtscp, or lfence + rdtsc),
 * which waits for every earlier load to complete, and in a server those
 * are cache misses left by the network stack.
 *
 * So where the kernel itself keeps time with the TSC (clocksource "tsc": it
 * only keeps that clocksource while the TSC is invariant and synchronised
 * across CPUs), od_ticks() reads the TSC directly, and od_ticks_seconds()
 * scales by a rate measured against CLOCK_MONOTONIC at start-up. Anywhere
 * else (another clocksource, another architecture, ORFEAS_CLOCK=monotonic)
 * ticks are CLOCK_MONOTONIC nanoseconds. A few ns of skew from the missing
 * serialisation does not matter to durations of tens of microseconds.
 *
 * The service's two plain clocks live here too: od_now() (CLOCK_MONOTONIC
 * seconds, for intervals, ETAs and uptime) and od_wall() (CLOCK_REALTIME
 * seconds, for timestamps users read).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define OD_HAVE_TSC 1
#else
#define OD_HAVE_TSC 0
#endif

#include "orfeasd.h"

/* Written by od_clock_setup() before any thread that reads them exists
 * (od_clock_init runs before the HTTP daemon starts), read-only after. */
static int g_mode = OD_CLOCK_MONOTONIC;
static double g_sec_per_tick = 1e-9;
static double g_tsc_hz;

double od_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double od_wall(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t od_ticks(void) {
#if OD_HAVE_TSC
  if (g_mode == OD_CLOCK_TSC)
    return (uint64_t)__rdtsc();
#endif
  return mono_ns();
}

double od_ticks_seconds(uint64_t from, uint64_t to) {
  return to > from ? (double)(to - from) * g_sec_per_tick : 0.0;
}

int od_clock_mode(void) { return g_mode; }

double od_clock_tsc_hz(void) { return g_mode == OD_CLOCK_TSC ? g_tsc_hz : 0.0; }

#if OD_HAVE_TSC
/* 1 when the kernel's current clocksource is the TSC. */
static int kernel_uses_tsc(void) {
  FILE *f = fopen(
      "/sys/devices/system/clocksource/clocksource0/current_clocksource", "r");
  char cs[32] = "";
  if (f == NULL)
    return 0;
  if (fgets(cs, sizeof cs, f) == NULL)
    cs[0] = '\0';
  fclose(f);
  return strcmp(cs, "tsc\n") == 0 || strcmp(cs, "tsc") == 0;
}

/* A (TSC, CLOCK_MONOTONIC) pair read as close together as this CPU allows:
 * the tightest of a few brackets, so a preemption in one does not count. */
static void tsc_pair(double *tsc, double *ns) {
  uint64_t best = UINT64_MAX;
  for (int i = 0; i < 9; i++) {
    uint64_t a = __rdtsc(), n = mono_ns(), b = __rdtsc();
    if (b > a && b - a < best) {
      best = b - a;
      *tsc = (double)a + (double)(b - a) / 2;
      *ns = (double)n;
    }
  }
}
#endif

int od_clock_setup(int want_tsc) {
  g_mode = OD_CLOCK_MONOTONIC;
  g_sec_per_tick = 1e-9;
  g_tsc_hz = 0;
#if OD_HAVE_TSC
  if (want_tsc && kernel_uses_tsc()) {
    /* 20 ms against CLOCK_MONOTONIC: with ~100 ns of pairing error at each
     * end the rate is within 1e-5, far finer than any histogram bucket. */
    double t0 = 0, n0 = 0, t1 = 0, n1 = 0;
    tsc_pair(&t0, &n0);
    struct timespec d = {0, 20 * 1000000};
    nanosleep(&d, NULL);
    tsc_pair(&t1, &n1);
    double hz = (t1 - t0) / ((n1 - n0) * 1e-9);
    /* A rate outside 100 MHz..20 GHz means the pairing went wrong. */
    if (n1 > n0 && hz > 1e8 && hz < 2e10) {
      g_tsc_hz = hz;
      g_sec_per_tick = 1.0 / hz;
      g_mode = OD_CLOCK_TSC;
    }
  }
#else
  (void)want_tsc;
#endif
  return g_mode;
}

static void init_once(void) {
  const char *e = getenv("ORFEAS_CLOCK");
  od_clock_setup(!(e != NULL && strcmp(e, "monotonic") == 0));
}

int od_clock_init(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, init_once);
  return g_mode;
}
