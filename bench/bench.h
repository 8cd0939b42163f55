/* bench.h: the tiny harness behind `make bench`.
 *
 * Each suite (metrics, pipeline, ...) is a function that runs its cases and
 * records figures with bench_set(). The driver prints every case as a table
 * row and, with --json FILE, writes one JSON object keyed by case name whose
 * values are objects of figures: {"counter_inc_1t": {"ours_ns": 1.9, ...}}.
 *
 * Not thread-safe: suites call these from the driver's thread only.
 */
#ifndef ORFEAS_BENCH_H
#define ORFEAS_BENCH_H

typedef struct bench_report bench_report;

/* Sets figure `key` of case `case_name` (created on first use). */
void bench_set(bench_report *r, const char *case_name, const char *key,
               double value);

/* Nonzero when the case was selected (--filter SUBSTRING, default: all). */
int bench_wanted(const bench_report *r, const char *case_name);

/* Monotonic clock in nanoseconds. */
double bench_now_ns(void);

/* Median of n values (sorts the array in place). */
double bench_median(double *v, int n);

/* ---- orfeasd helpers (bench_service.c), shared with bench_jobs.c ------- */

#include <limits.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct {
  pid_t pid;
  int port;
  char dir[PATH_MAX]; /* its temporary folder (data dir and log inside) */
} server;

/* Starts the build's orfeasd (next to the bench) on a free port with a
 * fresh data dir beside the bench binary and the extra flags (NULL-ended);
 * 0, or -1. stop_server sends SIGTERM and waits; the folder is removed by
 * bench_remove_folders, when the bench ends. */
int start_server(server *s, const char *const *extra);
void stop_server(server *s);
void bench_remove_folders(void);
/* A loopback TCP connection with TCP_NODELAY, or -1. */
int connect_to(int port);
int send_all(int fd, const void *data, size_t len);
/* Appends what the socket has to *buf; the new fill, or -1. */
ssize_t recv_more(int fd, char **buf, size_t *cap, size_t have);
/* Sends req and reads one response; its status (-1 on error), *len bytes
 * in *buf, the body from *body_at. */
int roundtrip(int fd, const void *req, size_t req_len, char **buf, size_t *cap,
              size_t *len, size_t *body_at);
/* One request on a fresh connection; the body (NUL-ended) into out. */
int http_simple(int port, const char *head, const void *body, size_t blen,
                char *out, size_t out_len);
int cmp_d(const void *a, const void *b);
/* Process pid's CPU seconds (user + system) and minor page faults so far,
 * from /proc/PID/stat (either pointer may be NULL); 0, or -1. */
int proc_stat(pid_t pid, double *cpu_s, double *minflt);
/* User + system CPU seconds a process has used (/proc/PID/stat). */
double proc_cpu_s(pid_t pid);
/* Mean of v[0..n) and the half-width of its 95% confidence interval. */
double mean_ci(const double *v, int n, double *half);

/* The suites. Each runs the cases bench_wanted() selects. */
void bench_metrics_suite(bench_report *r);
void bench_pipeline_suite(bench_report *r);
void bench_gpu_suite(bench_report *r);
void bench_service_suite(bench_report *r);
void bench_jobs_suite(bench_report *r);

#endif
