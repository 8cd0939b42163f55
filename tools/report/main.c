/* orfeas-report: the daily health report, from Prometheus' HTTP API.
 *
 *   orfeas-report --prometheus URL --range 24h --out DIR [--compare-previous]
 *
 * Writes DIR/report.html (self-contained, charts as inline SVG), DIR/report.md
 * and DIR/report.json. Exit status: 0 written; 1 bad usage or cannot write;
 * 2 Prometheus unreachable (nothing written); 3 written, but some queries
 * failed (their sections say "missing" and why).
 */
#include "report.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static void usage(FILE *out) {
  fprintf(out,
          "usage: orfeas-report [--prometheus URL] [--range DURATION] "
          "[--out DIR]\n"
          "                     [--end UNIX_SECONDS] [--job NAME] "
          "[--compare-previous]\n\n"
          "Queries Prometheus for the ORFEAS figures of one period and "
          "writes\nDIR/report.html, DIR/report.md and DIR/report.json.\n\n"
          "  --prometheus URL    default http://127.0.0.1:9090\n"
          "  --range DURATION    the period, e.g. 24h, 90m, 7d (default 24h)\n"
          "  --out DIR           default . (created if missing)\n"
          "  --end SECONDS       end of the period (default: now)\n"
          "  --job NAME          scrape job of orfeasd (default "
          "orfeas-backend)\n"
          "  --compare-previous  also show the change against the period "
          "before\n\n"
          "Exit: 0 ok, 1 usage or write error, 2 Prometheus unreachable, "
          "3 some queries failed.\n");
}

/* "24h", "90m", "30s", "7d", or plain seconds. <= 0 when invalid. */
static double parse_duration(const char *s) {
  char *end;
  double v = strtod(s, &end);
  if (end == s || v <= 0)
    return -1;
  if (*end == '\0' || strcmp(end, "s") == 0)
    return v;
  if (strcmp(end, "m") == 0)
    return v * 60;
  if (strcmp(end, "h") == 0)
    return v * 3600;
  if (strcmp(end, "d") == 0)
    return v * 86400;
  return -1;
}

static FILE *open_out(const char *dir, const char *name, char *path,
                      size_t len) {
  snprintf(path, len, "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  if (f == NULL)
    fprintf(stderr, "orfeas-report: cannot write %s: %s\n", path,
            strerror(errno));
  return f;
}

/* The flags into *o (defaults first): -1 to go on, else the exit status (0
 * after --help). */
static int parse_args(int argc, char **argv, report_opts *o) {
  o->prometheus = "http://127.0.0.1:9090";
  o->out_dir = ".";
  o->job = "orfeas-backend";
  o->range_s = 86400;
  o->end = (double)time(NULL);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *val = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      return 0;
    } else if (strcmp(a, "--compare-previous") == 0) {
      o->compare_previous = true;
      continue;
    }
    if (val == NULL) {
      fprintf(stderr, "orfeas-report: %s needs a value\n", a);
      usage(stderr);
      return 1;
    }
    i++;
    if (strcmp(a, "--prometheus") == 0)
      o->prometheus = val;
    else if (strcmp(a, "--out") == 0)
      o->out_dir = val;
    else if (strcmp(a, "--job") == 0)
      o->job = val;
    else if (strcmp(a, "--range") == 0) {
      o->range_s = parse_duration(val);
      if (o->range_s <= 0) {
        fprintf(stderr, "orfeas-report: bad --range '%s' (use e.g. 24h, 90m, "
                        "7d)\n", val);
        return 1;
      }
    } else if (strcmp(a, "--end") == 0) {
      char *e;
      o->end = strtod(val, &e);
      if (*e != '\0' || o->end <= 0) {
        fprintf(stderr, "orfeas-report: bad --end '%s' (Unix seconds)\n", val);
        return 1;
      }
    } else {
      fprintf(stderr, "orfeas-report: unknown option %s\n", a);
      usage(stderr);
      return 1;
    }
  }
  return -1;
}

int main(int argc, char **argv) {
  static report r;
  int prc = parse_args(argc, argv, &r.o);
  if (prc >= 0)
    return prc;
  if (mkdir(r.o.out_dir, 0755) != 0 && errno != EEXIST) {
    fprintf(stderr, "orfeas-report: cannot create %s: %s\n", r.o.out_dir,
            strerror(errno));
    return 1;
  }
  prom *p = prom_new(r.o.prometheus, 30);
  if (p == NULL) {
    fprintf(stderr, "orfeas-report: out of memory\n");
    return 1;
  }
  char err[PROM_ERR];
  if (!report_gather(&r, p, err)) {
    fprintf(stderr, "orfeas-report: %s\n", err);
    prom_free(p);
    return 2;
  }
  prom_free(p);
  char path[1024];
  int rc = 0;
  FILE *f;
  bool (*writers[])(const report *, FILE *) = {
      report_write_html, report_write_md, report_write_json};
  const char *names[] = {"report.html", "report.md", "report.json"};
  for (int i = 0; i < 3; i++) {
    if ((f = open_out(r.o.out_dir, names[i], path, sizeof path)) == NULL) {
      rc = 1;
      continue;
    }
    if (!writers[i](&r, f) | (fclose(f) != 0)) {
      fprintf(stderr, "orfeas-report: writing %s failed\n", path);
      rc = 1;
    }
  }
  for (int i = 0; i < r.nfigs; i++)
    if (r.figs[i].state == FIG_MISSING)
      fprintf(stderr, "orfeas-report: %s: %s\n", r.figs[i].title,
              r.figs[i].err);
  if (rc == 0 && r.failures > 0) {
    fprintf(stderr, "orfeas-report: %d queries failed; their sections are "
                    "marked missing\n", r.failures);
    rc = 3;
  }
  if (rc == 0 || rc == 3)
    printf("wrote %s/report.html, report.md, report.json\n", r.o.out_dir);
  report_free(&r);
  return rc;
}
