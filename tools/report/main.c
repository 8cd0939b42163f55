/* orfeas-report: the daily health report, from Prometheus' HTTP API.
 *
 *   orfeas-report --prometheus URL --range 24h --out DIR [--mail-to ADDR]
 *
 * Writes DIR/report.html (self-contained, charts as inline SVG), DIR/report.md
 * and DIR/report.json (DIR and its parents are created), each figure beside
 * the previous period's, and mails the report when --mail-to is given
 * (mail.c). Exit status: 0 written (and mailed); 1 bad usage or cannot
 * write; 2 Prometheus unreachable (nothing written); 3 written, but some
 * queries failed (their sections say "missing" and why); 4 written, but the
 * mail was not sent.
 */
#include "orfeas_build.h"
#include "report.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void usage(FILE *out) {
  fprintf(out,
          "usage: orfeas-report [--prometheus URL] [--range DURATION] "
          "[--out DIR]\n"
          "                     [--end UNIX_SECONDS] [--job NAME] "
          "[--no-compare]\n"
          "                     [--mail-to ADDR[,ADDR...]] [--mail-from ADDR] "
          "[--sendmail PATH]\n\n"
          "Queries Prometheus for the ORFEAS figures of one period and "
          "writes\nDIR/report.html, DIR/report.md and DIR/report.json; "
          "mails them with --mail-to.\n\n"
          "  --prometheus URL    default http://127.0.0.1:9090\n"
          "  --range DURATION    the period, e.g. 24h, 90m, 7d (default 24h)\n"
          "  --out DIR           default . (created with its parents if "
          "missing)\n"
          "  --end SECONDS       end of the period (default: now)\n"
          "  --job NAME          scrape job of orfeasd (default "
          "orfeas-backend)\n"
          "  --no-compare        leave out the previous period (shown beside "
          "each figure\n"
          "                      by default; --compare-previous is accepted "
          "and is the default)\n"
          "  --mail-to ADDRS     also mail the report (text and HTML) to these "
          "addresses\n"
          "  --mail-from ADDR    the sender (default orfeas-report@HOSTNAME)\n"
          "  --sendmail PATH     the sendmail interface (default "
          "/usr/sbin/sendmail: Debian's\n"
          "                      msmtp-mta, configured in /etc/msmtprc)\n"
          "  --version           print the version, git revision and build "
          "type\n\n"
          "Exit: 0 ok, 1 usage or write error, 2 Prometheus unreachable, "
          "3 some queries failed,\n4 written but not mailed.\n");
}

/* mkdir -p: DIR and every missing parent. */
static int make_dirs(const char *dir) {
  char path[PATH_MAX];
  if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path) {
    errno = ENAMETOOLONG;
    return -1;
  }
  for (char *p = path + 1; *p; p++) {
    if (*p != '/')
      continue;
    *p = '\0';
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
      return -1;
    *p = '/';
  }
  return mkdir(path, 0755) != 0 && errno != EEXIST ? -1 : 0;
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

/* Reads argv into o. Returns -1 to go on, or the exit status (--help,
 * --version: 0; a bad option: 1). */
static int parse_args(report_opts *o, int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *val = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      return 0;
    } else if (strcmp(a, "--version") == 0) {
      orfeas_print_version(stdout, "orfeas-report");
      return 0;
    } else if (strcmp(a, "--compare-previous") == 0) {
      continue; /* the default since the previous period is always shown */
    } else if (strcmp(a, "--no-compare") == 0) {
      o->no_compare = true;
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
    else if (strcmp(a, "--mail-to") == 0)
      o->mail_to = val;
    else if (strcmp(a, "--mail-from") == 0)
      o->mail_from = val;
    else if (strcmp(a, "--sendmail") == 0)
      o->sendmail = val;
    else if (strcmp(a, "--range") == 0) {
      o->range_s = parse_duration(val);
      if (o->range_s <= 0) {
        fprintf(stderr,
                "orfeas-report: bad --range '%s' (use e.g. 24h, 90m, "
                "7d)\n",
                val);
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

/* Writes the three files. 0, or 1 when one could not be written. */
static int write_files(const report *r) {
  char path[1024];
  int rc = 0;
  FILE *f;
  bool (*writers[])(const report *, FILE *) = {
      report_write_html, report_write_md, report_write_json};
  const char *names[] = {"report.html", "report.md", "report.json"};
  for (int i = 0; i < 3; i++) {
    if ((f = open_out(r->o.out_dir, names[i], path, sizeof path)) == NULL) {
      rc = 1;
      continue;
    }
    if (!writers[i](r, f) | (fclose(f) != 0)) {
      fprintf(stderr, "orfeas-report: writing %s failed\n", path);
      rc = 1;
    }
  }
  return rc;
}

int main(int argc, char **argv) {
  static report r;
  r.o.prometheus = "http://127.0.0.1:9090";
  r.o.out_dir = ".";
  r.o.job = "orfeas-backend";
  r.o.range_s = 86400;
  r.o.end = (double)time(NULL);
  r.o.sendmail = "/usr/sbin/sendmail";
  int rc = parse_args(&r.o, argc, argv);
  if (rc >= 0)
    return rc;
  char from[300];
  if (r.o.mail_from == NULL) {
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    snprintf(from, sizeof from, "orfeas-report@%s", host);
    r.o.mail_from = from;
  }
  if (make_dirs(r.o.out_dir) != 0) {
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
  rc = write_files(&r);
  for (int i = 0; i < r.nfigs; i++)
    if (r.figs[i].state == FIG_MISSING)
      fprintf(stderr, "orfeas-report: %s: %s\n", r.figs[i].title,
              r.figs[i].err);
  if (rc == 0 && r.failures > 0) {
    fprintf(stderr,
            "orfeas-report: %d queries failed; their sections are "
            "marked missing\n",
            r.failures);
    rc = 3;
  }
  if (rc == 0 || rc == 3)
    printf("wrote %s/report.html, report.md, report.json\n", r.o.out_dir);
  if ((rc == 0 || rc == 3) && r.o.mail_to) {
    char md[1024], html[1024], merr[300];
    snprintf(md, sizeof md, "%s/report.md", r.o.out_dir);
    snprintf(html, sizeof html, "%s/report.html", r.o.out_dir);
    if (report_mail(&r, md, html, merr, sizeof merr)) {
      printf("mailed the report to %s\n", r.o.mail_to);
    } else {
      fprintf(stderr, "orfeas-report: %s\n", merr);
      rc = 4;
    }
  }
  report_free(&r);
  return rc;
}
