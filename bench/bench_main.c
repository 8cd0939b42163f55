/* bench_main.c: the `make bench` driver. Runs every suite, prints a table,
 * and writes the figures as JSON when asked (--json FILE). */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_CASES 64
#define MAX_KEYS 24

typedef struct {
  char name[64];
  int nkeys;
  char keys[MAX_KEYS][48];
  double values[MAX_KEYS];
} bench_case;

struct bench_report {
  const char *filter;
  int ncases;
  bench_case cases[MAX_CASES];
};

double bench_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double bench_median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* --filter A,B: a case runs when its name contains any of the parts. */
int bench_wanted(const bench_report *r, const char *case_name) {
  if (r->filter == NULL)
    return 1;
  for (const char *p = r->filter; *p;) {
    size_t n = strcspn(p, ",");
    char part[64];
    snprintf(part, sizeof part, "%.*s", (int)n, p);
    if (n > 0 && strstr(case_name, part) != NULL)
      return 1;
    p += n + (p[n] == ',');
  }
  return 0;
}

void bench_set(bench_report *r, const char *case_name, const char *key,
               double value) {
  bench_case *c = NULL;
  for (int i = 0; i < r->ncases; i++)
    if (strcmp(r->cases[i].name, case_name) == 0)
      c = &r->cases[i];
  if (c == NULL) {
    if (r->ncases == MAX_CASES) {
      fprintf(stderr, "bench: too many cases (max %d)\n", MAX_CASES);
      exit(2);
    }
    c = &r->cases[r->ncases++];
    snprintf(c->name, sizeof c->name, "%s", case_name);
  }
  for (int i = 0; i < c->nkeys; i++)
    if (strcmp(c->keys[i], key) == 0) {
      c->values[i] = value;
      return;
    }
  if (c->nkeys == MAX_KEYS) {
    fprintf(stderr, "bench: case %s has too many figures\n", case_name);
    exit(2);
  }
  snprintf(c->keys[c->nkeys], sizeof c->keys[0], "%s", key);
  c->values[c->nkeys++] = value;
}

static void print_table(const bench_report *r) {
  printf("\n%-26s %s\n", "case", "figures");
  for (int i = 0; i < r->ncases; i++) {
    const bench_case *c = &r->cases[i];
    printf("%-26s", c->name);
    for (int k = 0; k < c->nkeys; k++)
      printf(" %s=%.4g", c->keys[k], c->values[k]);
    printf("\n");
  }
}

static int write_json(const bench_report *r, const char *path) {
  FILE *f = fopen(path, "w");
  if (f == NULL) {
    perror(path);
    return -1;
  }
  fprintf(f, "{\n");
  for (int i = 0; i < r->ncases; i++) {
    const bench_case *c = &r->cases[i];
    fprintf(f, "  \"%s\": {", c->name);
    for (int k = 0; k < c->nkeys; k++)
      fprintf(f, "%s\"%s\": %.17g", k ? ", " : "", c->keys[k], c->values[k]);
    fprintf(f, "}%s\n", i + 1 < r->ncases ? "," : "");
  }
  fprintf(f, "}\n");
  if (fclose(f) != 0) {
    perror(path);
    return -1;
  }
  return 0;
}

static void usage(FILE *out) {
  fprintf(
      out,
      "usage: orfeas-bench [--json FILE] [--filter SUBSTRING[,SUBSTRING...]]\n"
      "  Runs the ORFEAS benchmarks side by side with their peers and\n"
      "  prints one row per case; --json also writes the figures.\n");
}

int main(int argc, char **argv) {
  static bench_report report;
  const char *json = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--json") == 0 && i + 1 < argc) {
      json = argv[++i];
    } else if (strcmp(argv[i], "--filter") == 0 && i + 1 < argc) {
      report.filter = argv[++i];
    } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(stdout);
      return 0;
    } else {
      usage(stderr);
      return 2;
    }
  }
  bench_metrics_suite(&report);
  bench_pipeline_suite(&report);
  bench_gpu_suite(&report);
  bench_service_suite(&report);
  bench_jobs_suite(&report);
  bench_remove_folders();
  print_table(&report);
  if (json != NULL) {
    if (write_json(&report, json) != 0)
      return 1;
    printf("\nwrote %s\n", json);
  }
  return 0;
}
