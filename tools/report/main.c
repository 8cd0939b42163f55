/* orfeas-report: the daily health report, from Prometheus' HTTP API.
 *
 *   orfeas-report --prometheus URL --range 24h --out DIR [--mail-to ADDR]
 *
 * Writes DIR/report.html (self-contained, charts as inline SVG), DIR/report.md
 * and DIR/report.json (DIR and its parents are created once Prometheus has
 * answered), each figure beside the previous period's, and mails the report
 * when --mail-to is given (mail.c). Exit status: 0 written (and mailed); 1
 * bad usage or cannot write; 2 Prometheus unreachable (nothing written, no
 * folder created); 3 written, but some queries failed (their sections say
 * "missing" and why); 4 written, but the mail was not sent.
 */
#include "orfeas_build.h"
#include "report.h"

#include <errno.h>
#include <fcntl.h>
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
          "                     [--end SECONDS] [--job NAME] "
          "[--no-compare]\n"
          "Queries Prometheus for the ORFEAS figures of one period and "
          "writes\nDIR/report.html, DIR/report.md and DIR/report.json; "
          "mails them with --mail-to.\n\n"
          "  --prometheus URL    where Prometheus answers (default "
          "http://127.0.0.1:9090)\n"
          "  --range DURATION    the period, e.g. 24h, 90m, 7d, or seconds; 1s "
          "to 366d\n"
          "                      (default 24h)\n"
          "  --out DIR           created with its parents if missing (default "
          ".)\n"
          "  --end SECONDS       end of the period, Unix time, up to "
          "253402300799\n"
          "                      (default now)\n"
          "  --timeout S         seconds all queries may take together, each "
          "at most 30;\n"
          "                      the rest are reported missing; 1 to 86400 "
          "(default 300)\n"
          "  --job NAME          scrape job of orfeasd (default "
          "orfeas-backend)\n"
          "  --no-compare        leave out the previous period (shown beside "
          "each figure\n"
          "                      by default; --compare-previous is accepted "
          "and is the default)\n"
          "  --mail-to ADDRS     also mail the report (text and HTML) to these "
          "addresses\n"
          "  --mail-from ADDR    the sender (default orfeas-report@HOSTNAME)\n"
          "  --sendmail PATH     the sendmail interface, e.g. Debian's "
          "msmtp-mta configured\n"
          "                      in /etc/msmtprc (default /usr/sbin/sendmail)\n"
          "  --mail-timeout S    seconds sendmail may take; past them it is "
          "killed and the\n"
          "                      run ends with exit 4; 1 to 3600 (default "
          "120)\n"
          "  --help              print this\n"
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

/* Creates DIR/.NAME.PID-N.tmp for writing, a name no other run uses: two
 * reports into one folder at once (a cron job and an operator) shared one
 * fixed name, and one's probe truncated and removed the file the other was
 * writing. O_EXCL; N counts on past a file left by a run killed while
 * writing. Mode 0666 less the umask, as fopen makes a file. The fd and its
 * path in TMP, or -1 with errno. */
static int open_tmp(const char *dir, const char *name, char *tmp, size_t size) {
  for (int n = 0; n < 100; n++) {
    if (snprintf(tmp, size, "%s/.%s.%ld-%d.tmp", dir, name, (long)getpid(),
                 n) >= (int)size) {
      errno = ENAMETOOLONG;
      return -1;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd >= 0 || errno != EEXIST)
      return fd;
  }
  return -1; /* errno is EEXIST */
}

/* Can a file be made in DIR? Tried under a temporary name of this run's
 * own, removed at once: a folder that takes no file (read-only, not a
 * folder, /proc) is found before the queries, not after them. 0, or -1
 * with errno. */
static int probe_dir(const char *dir) {
  char tmp[PATH_MAX];
  int fd = open_tmp(dir, "report.html", tmp, sizeof tmp);
  if (fd < 0)
    return -1;
  close(fd);
  unlink(tmp);
  return 0;
}

/* The longest --range: a year and a day. Longer has no use (Prometheus keeps
 * 15 days by default) and a period far beyond it has no calendar date to
 * print. */
#define MAX_RANGE_S (366.0 * 86400)
/* The latest --end: the last second of the year 9999, the last that
 * "%Y-%m-%d" can show. */
#define MAX_END_S 253402300799.0

/* "24h", "90m", "30s", "7d", or plain seconds, from 1 s to MAX_RANGE_S.
 * -1 when invalid (NaN and infinity included). */
static double parse_duration(const char *s) {
  char *end;
  double v = strtod(s, &end);
  if (end == s || !isfinite(v) || v <= 0)
    return -1;
  if (strcmp(end, "m") == 0)
    v *= 60;
  else if (strcmp(end, "h") == 0)
    v *= 3600;
  else if (strcmp(end, "d") == 0)
    v *= 86400;
  else if (*end != '\0' && strcmp(end, "s") != 0)
    return -1;
  /* PromQL ranges are whole seconds ("[%.0fs]"): under 1 s reads as 0s. */
  return v >= 1 && v <= MAX_RANGE_S ? v : -1;
}

/* The options that take a value: an unknown one is called unknown, not
 * "needs a value". */
static bool takes_value(const char *a) {
  static const char *const names[] = {
      "--prometheus", "--out",   "--job", "--mail-to", "--mail-from",
      "--sendmail",   "--range", "--end", "--timeout", "--mail-timeout"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strcmp(a, names[i]) == 0)
      return true;
  return false;
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
    if (!takes_value(a)) {
      fprintf(stderr, "orfeas-report: unknown option %s\n", a);
      usage(stderr);
      return 1;
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
                "7d: 1 s to 366d)\n",
                val);
        return 1;
      }
    } else if (strcmp(a, "--end") == 0) {
      char *e;
      o->end = strtod(val, &e);
      if (e == val || *e != '\0' || !isfinite(o->end) || o->end <= 0 ||
          o->end > MAX_END_S) {
        fprintf(stderr,
                "orfeas-report: bad --end '%s' (Unix seconds, e.g. "
                "$(date +%%s), at most %.0f)\n",
                val, MAX_END_S);
        return 1;
      }
    } else if (strcmp(a, "--mail-timeout") == 0) {
      char *e;
      long v = strtol(val, &e, 10);
      if (e == val || *e != '\0' || v < 1 || v > 3600) {
        fprintf(stderr,
                "orfeas-report: bad --mail-timeout '%s' (whole seconds, 1 "
                "to 3600)\n",
                val);
        return 1;
      }
      o->mail_timeout_s = (int)v;
    } else if (strcmp(a, "--timeout") == 0) {
      char *e;
      o->timeout_s = strtod(val, &e);
      if (e == val || *e != '\0' || !isfinite(o->timeout_s) ||
          o->timeout_s < 1 || o->timeout_s > 86400) {
        fprintf(stderr,
                "orfeas-report: bad --timeout '%s' (seconds, 1 to 86400)\n",
                val);
        return 1;
      }
    }
  }
  return -1;
}

/* Writes the three files, each first under a temporary name of this run's
 * own (open_tmp), flushed to the disk (fsync) and renamed over NAME only
 * once all three are whole: a full disk or a write error leaves the previous
 * report (or none) under the final names, never a cut one, and a report
 * written at the same time into the same folder keeps its own files. 0, or
 * 1 when one could not be written (the message names the file). */
static int write_files(const report *r) {
  char tmp[3][PATH_MAX] = {"", "", ""}, path[PATH_MAX];
  int rc = 0;
  bool (*writers[])(const report *, FILE *) = {
      report_write_html, report_write_md, report_write_json};
  const char *names[] = {"report.html", "report.md", "report.json"};
  for (int i = 0; i < 3 && rc == 0; i++) {
    snprintf(path, sizeof path, "%s/%s", r->o.out_dir, names[i]);
    int fd = open_tmp(r->o.out_dir, names[i], tmp[i], sizeof tmp[i]);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (f == NULL) {
      fprintf(stderr, "orfeas-report: cannot write %s: %s\n", tmp[i],
              strerror(errno));
      if (fd >= 0)
        close(fd);
      else
        tmp[i][0] = '\0'; /* not made: nothing to remove */
      rc = 1;
      break;
    }
    /* fflush and fsync before fclose: their errno is the one to report
     * (ENOSPC). fsync: the rename must not reach the disk before the data
     * (a crash would leave an empty report under the final name). */
    bool ok = writers[i](r, f) && fflush(f) == 0 && fsync(fd) == 0;
    int e = errno;
    if ((fclose(f) != 0) | !ok) {
      fprintf(stderr,
              "orfeas-report: writing %s failed: %s (is the disk under %s "
              "full?); %s is left as it was\n",
              path, strerror(ok ? errno : e), r->o.out_dir, path);
      rc = 1;
    }
  }
  for (int i = 0; i < 3; i++) {
    snprintf(path, sizeof path, "%s/%s", r->o.out_dir, names[i]);
    if (rc == 0 && rename(tmp[i], path) != 0) {
      fprintf(stderr, "orfeas-report: cannot rename %s to %s: %s\n", tmp[i],
              path, strerror(errno));
      rc = 1;
    }
    if (rc != 0 && tmp[i][0] != '\0')
      unlink(tmp[i]);
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
  r.o.timeout_s = 300;
  r.o.mail_timeout_s = 120;
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
  prom *p = prom_new(r.o.prometheus, 30, r.o.timeout_s);
  if (p == NULL) {
    fprintf(stderr, "orfeas-report: out of memory\n");
    return 1;
  }
  /* Prometheus first, the folder next: an unreachable Prometheus leaves no
   * empty folder behind (a cron line with --out reports/$(date +%F) left one
   * for each failed day), and a folder that cannot be made or takes no
   * file is still found before the queries, one request in. Past the ready
   * check a failed query is a missing figure (exit 3), never exit 2. */
  char err[PROM_ERR];
  if (!prom_ready(p, err)) {
    fprintf(stderr, "orfeas-report: %s\n", err);
    prom_free(p);
    return 2;
  }
  if (make_dirs(r.o.out_dir) != 0) {
    fprintf(stderr, "orfeas-report: cannot create %s: %s\n", r.o.out_dir,
            strerror(errno));
    prom_free(p);
    return 1;
  }
  if (probe_dir(r.o.out_dir) != 0) {
    fprintf(stderr, "orfeas-report: cannot write into %s: %s\n", r.o.out_dir,
            strerror(errno));
    prom_free(p);
    return 1;
  }
  report_gather(&r, p);
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
