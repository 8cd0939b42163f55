/* report.h: what orfeas-report gathers and writes. */
#ifndef ORFEAS_REPORT_H
#define ORFEAS_REPORT_H

#include <stdbool.h>
#include <stdio.h>

#include "prom.h"

#define MAX_FIGS 24
#define MAX_ROWS 64
#define MAX_COLS 6
#define MAX_CHARTS 6
#define MAX_ALERTS 64

typedef struct {
  const char *prometheus; /* base URL */
  const char *out_dir;
  const char *job;     /* scrape job of orfeasd, for process_* */
  double range_s;      /* the period, e.g. 86400 */
  double end;          /* Unix seconds */
  bool no_compare;     /* --no-compare: no previous period */
  double timeout_s;    /* --timeout: all queries together */
  const char *mail_to; /* comma-separated addresses, or NULL */
  const char *mail_from;
  const char *sendmail; /* the sendmail interface, e.g. /usr/sbin/sendmail */
  int mail_timeout_s;   /* --mail-timeout: sendmail is killed past it */
} report_opts;

/* A single number. state: value, no data (the query matched nothing), or
 * missing (the query failed: err says why). Never a silent zero. */
typedef enum { FIG_VALUE, FIG_NO_DATA, FIG_MISSING } fig_state;

typedef struct {
  const char *key, *title, *unit;
  fig_state state;
  double value;
  char note[96]; /* e.g. the slowest stage's name */
  char err[PROM_ERR];
  fig_state prev_state; /* the period before (unless --no-compare) */
  double prev;
} figure;

typedef struct {
  const char *title;
  int ncols;
  const char *cols[MAX_COLS];
  int nrows;
  char cells[MAX_ROWS][MAX_COLS][96];
  bool missing;
  char err[PROM_ERR];
} table;

/* One alert (a label set of ALERTS) that fired in the period. */
typedef struct {
  char name[96], severity[16], where[160];
  double first;   /* Unix seconds of its first firing sample */
  double seconds; /* firing time in the period */
  int episodes;   /* separate firings */
} alert_fired;

typedef struct {
  const char *title, *unit;
  prom_result data; /* one series per line */
  char names[16][64];
  bool missing;
  char err[PROM_ERR];
} chart;

typedef struct {
  report_opts o;
  double start, step;
  int nfigs, ntables, ncharts;
  figure figs[MAX_FIGS];
  table tables[4];
  chart charts[MAX_CHARTS];
  alert_fired alerts[MAX_ALERTS];
  int nalerts;
  bool alerts_missing;
  char alerts_err[PROM_ERR];
  int failures; /* queries that failed */
} report;

/* gather.c: runs every query, once prom_ready() said Prometheus answers; a
 * query that fails is a missing figure (r->failures), never the whole run. */
void report_gather(report *r, prom *p);
void report_free(report *r);

/* write.c */
bool report_write_md(const report *r, FILE *f);
bool report_write_html(const report *r, FILE *f);
bool report_write_json(const report *r, FILE *f);

/* mail.c: sends report.md and report.html as one message (text and HTML
 * alternatives) through the sendmail interface. false + err on failure. */
bool report_mail(const report *r, const char *md_path, const char *html_path,
                 char *err, size_t err_len);

/* Formats a figure's value with its unit ("12.5 s", "97.0 %"). */
void report_fmt_value(const char *unit, double v, char *buf, size_t len);
void report_fmt_duration(double s, char *buf, size_t len);

#endif
