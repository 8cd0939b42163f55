/* write.c: the report as Markdown, as self-contained HTML (charts as inline
 * SVG, no scripts, no external files), and as JSON for machines. */
#include "report.h"

#include <math.h>
#include <string.h>
#include <time.h>

void report_fmt_duration(double s, char *buf, size_t len) {
  if (s < 120)
    snprintf(buf, len, "%.0f s", s);
  else if (s < 7200)
    snprintf(buf, len, "%.1f min", s / 60);
  else if (s < 172800)
    snprintf(buf, len, "%.1f h", s / 3600);
  else
    snprintf(buf, len, "%.1f d", s / 86400);
}

void report_fmt_value(const char *unit, double v, char *buf, size_t len) {
  if (isnan(v))
    snprintf(buf, len, "NaN");
  else if (strcmp(unit, "duration") == 0)
    report_fmt_duration(v, buf, len);
  else if (strcmp(unit, "count") == 0) /* increase() extrapolates: 9.06 */
    snprintf(buf, len, "%.0f", v);
  else if (strcmp(unit, "s") == 0)
    snprintf(buf, len, v < 10 ? "%.3g s" : "%.1f s", v);
  else if (strcmp(unit, "%") == 0)
    snprintf(buf, len, "%.1f %%", v);
  else if (unit[0])
    snprintf(buf, len, "%.1f %s", v, unit);
  else if (v == floor(v) && fabs(v) < 1e15)
    snprintf(buf, len, "%.0f", v);
  else
    snprintf(buf, len, "%.3g", v);
}

static void fig_text(const figure *f, char *buf, size_t len) {
  if (f->state == FIG_MISSING)
    snprintf(buf, len, "missing (%s)", f->err);
  else if (f->state == FIG_NO_DATA)
    snprintf(buf, len, "no data");
  else {
    char v[64];
    report_fmt_value(f->unit, f->value, v, sizeof v);
    if (f->note[0])
      snprintf(buf, len, "%s (%s)", v, f->note);
    else
      snprintf(buf, len, "%s", v);
  }
}

static void fig_prev(const figure *f, char *buf, size_t len) {
  figure prev = *f;
  prev.state = f->prev_state;
  prev.value = f->prev;
  prev.note[0] = '\0';
  if (prev.state == FIG_MISSING)
    snprintf(buf, len, "missing");
  else
    fig_text(&prev, buf, len);
}

static void fig_delta(const figure *f, char *buf, size_t len) {
  if (f->state != FIG_VALUE || f->prev_state != FIG_VALUE) {
    snprintf(buf, len, "n/a");
    return;
  }
  char v[64];
  report_fmt_value(strcmp(f->unit, "duration") == 0 ? "s" : f->unit,
                   f->value - f->prev, v, sizeof v);
  snprintf(buf, len, "%s%.60s", f->value >= f->prev ? "+" : "", v);
}

static void period(const report *r, char *buf, size_t len) {
  char a[32], b[32];
  time_t s = (time_t)r->start, e = (time_t)r->o.end;
  struct tm tm;
  strftime(a, sizeof a, "%Y-%m-%d %H:%M UTC", gmtime_r(&s, &tm));
  strftime(b, sizeof b, "%Y-%m-%d %H:%M UTC", gmtime_r(&e, &tm));
  snprintf(buf, len, "%s to %s", a, b);
}

/* "12 Mar 06:00 UTC" */
static void fmt_time(double t, char *buf, size_t len) {
  time_t s = (time_t)t;
  struct tm tm;
  strftime(buf, len, "%d %b %H:%M:%S UTC", gmtime_r(&s, &tm));
}

/* The alerts section's cells of alert i: first fired, firing time. */
static void alert_cells(const alert_fired *a, char *first, size_t flen,
                        char *dur, size_t dlen) {
  fmt_time(a->first, first, flen);
  char d[32];
  report_fmt_duration(a->seconds, d, sizeof d);
  if (a->episodes > 1)
    snprintf(dur, dlen, "%s in %d episodes", d, a->episodes);
  else
    snprintf(dur, dlen, "%s", d);
}

/* ---- Markdown ------------------------------------------------------------ */

static void md_alerts(const report *r, FILE *f) {
  fprintf(f, "\n## Alerts that fired\n\n");
  if (r->alerts_missing) {
    fprintf(f, "Missing: %s\n", r->alerts_err);
    return;
  }
  if (r->nalerts == 0) {
    fprintf(f, "No alert fired in this period.\n");
    return;
  }
  fprintf(f, "| alert | severity | where | first fired | firing for |\n"
             "|---|---|---|---|---|\n");
  for (int i = 0; i < r->nalerts; i++) {
    char first[48], dur[64];
    alert_cells(&r->alerts[i], first, sizeof first, dur, sizeof dur);
    fprintf(f, "| %s | %s | %s | %s | %s |\n", r->alerts[i].name,
            r->alerts[i].severity, r->alerts[i].where, first, dur);
  }
}

bool report_write_md(const report *r, FILE *f) {
  char per[96], v[400], pv[400], d[64];
  bool cmp = !r->o.no_compare;
  period(r, per, sizeof per);
  fprintf(f, "# ORFEAS health report\n\nPeriod: %s (Prometheus %s)\n\n", per,
          r->o.prometheus);
  fprintf(f, "| figure | value |%s\n|---|---|%s\n",
          cmp ? " previous period | change |" : "", cmp ? "---|---|" : "");
  for (int i = 0; i < r->nfigs; i++) {
    fig_text(&r->figs[i], v, sizeof v);
    fig_prev(&r->figs[i], pv, sizeof pv);
    fig_delta(&r->figs[i], d, sizeof d);
    fprintf(f, "| %s | %s |", r->figs[i].title, v);
    if (cmp)
      fprintf(f, " %s | %s |", pv, d);
    fputc('\n', f);
  }
  md_alerts(r, f);
  for (int t = 0; t < r->ntables; t++) {
    const table *tb = &r->tables[t];
    fprintf(f, "\n## %s\n\n", tb->title);
    if (tb->missing) {
      fprintf(f, "Missing: %s\n", tb->err);
      continue;
    }
    if (tb->nrows == 0) {
      fprintf(f, "None.\n");
      continue;
    }
    for (int c = 0; c < tb->ncols; c++)
      fprintf(f, "| %s ", tb->cols[c]);
    fprintf(f, "|\n");
    for (int c = 0; c < tb->ncols; c++)
      fprintf(f, "|---");
    fprintf(f, "|\n");
    for (int row = 0; row < tb->nrows; row++) {
      for (int c = 0; c < tb->ncols; c++)
        fprintf(f, "| %s ", tb->cells[row][c]);
      fprintf(f, "|\n");
    }
  }
  fprintf(f, "\nCharts are in report.html.\n");
  return !ferror(f);
}

/* ---- HTML ---------------------------------------------------------------- */

static void html_text(FILE *f, const char *s) {
  for (; *s; s++) {
    switch (*s) {
    case '<':
      fputs("&lt;", f);
      break;
    case '>':
      fputs("&gt;", f);
      break;
    case '&':
      fputs("&amp;", f);
      break;
    case '"':
      fputs("&quot;", f);
      break;
    default:
      fputc(*s, f);
    }
  }
}

static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c",
                                      "#ff7f0e", "#9467bd", "#8c564b"};

/* A "nice" step (1, 2 or 5 times a power of ten) that divides SPAN into
 * about N parts. */
static double nice_step(double span, int n) {
  double raw = span / n, mag = pow(10, floor(log10(raw)));
  double m = raw / mag;
  return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * mag;
}

/* Time-axis steps: the first that gives at most 8 ticks over the period. */
static double time_step(double span) {
  static const double steps[] = {10,    30,    60,    300,    600,
                                 900,   1800,  3600,  7200,   10800,
                                 21600, 43200, 86400, 172800, 604800};
  for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++)
    if (span / steps[i] <= 8)
      return steps[i];
  return 604800;
}

/* A y-axis tick label: the value with the chart's unit ("2 s", "50 %"). */
static void tick_label(double v, double step, char *buf, size_t len) {
  int dec = step >= 1 ? 0 : (int)ceil(-log10(step));
  snprintf(buf, len, "%.*f", dec > 6 ? 6 : dec, fabs(v) < step / 1e6 ? 0.0 : v);
}

/* The chart's geometry and scales. */
typedef struct {
  double W, H, L, R, T, B; /* size and margins */
  double t0, t1, lo, hi;   /* the data window */
} frame;

static double fx(const frame *g, double t) {
  return g->L + (t - g->t0) / (g->t1 - g->t0) * (g->W - g->L - g->R);
}

static double fy(const frame *g, double v) {
  return g->H - g->B - (v - g->lo) / (g->hi - g->lo) * (g->H - g->T - g->B);
}

/* Axes: value ticks with grid lines and the unit as the y title; time ticks
 * (HH:MM UTC, with the date past a day) and "time (UTC)" as the x title. */
static void svg_axes(FILE *f, const frame *g, const char *unit) {
  double ys = nice_step(g->hi - g->lo, 5);
  for (double v = ceil(g->lo / ys) * ys; v <= g->hi + ys / 1e6; v += ys) {
    char lab[32];
    tick_label(v, ys, lab, sizeof lab);
    fprintf(f,
            "<line class=\"grid\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" "
            "y2=\"%.1f\" stroke=\"#e0e0e0\"/><text class=\"ytick\" x=\"%.1f\" "
            "y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%s</text>\n",
            g->L, g->W - g->R, fy(g, v), fy(g, v), g->L - 4, fy(g, v) + 4, lab);
  }
  double span = g->t1 - g->t0, ts = time_step(span);
  for (double t = ceil(g->t0 / ts) * ts; t <= g->t1; t += ts) {
    char lab[32];
    time_t sec = (time_t)t;
    struct tm tm;
    strftime(lab, sizeof lab,
             span > 86400 ? "%d %b %H:%M"
             : ts < 60    ? "%H:%M:%S"
                          : "%H:%M",
             gmtime_r(&sec, &tm));
    fprintf(f,
            "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" "
            "stroke=\"#999\"/><text class=\"xtick\" x=\"%.1f\" y=\"%.1f\" "
            "font-size=\"11\" text-anchor=\"middle\">%s</text>\n",
            fx(g, t), fx(g, t), g->H - g->B, g->H - g->B + 4, fx(g, t),
            g->H - g->B + 16, lab);
  }
  fprintf(f,
          "<text class=\"xtitle\" x=\"%.1f\" y=\"%.1f\" font-size=\"11\" "
          "text-anchor=\"middle\">time (UTC)</text>\n",
          (g->L + g->W - g->R) / 2, g->H - 4);
  fprintf(f,
          "<text class=\"ytitle\" x=\"12\" y=\"%.1f\" font-size=\"11\" "
          "text-anchor=\"middle\" transform=\"rotate(-90 12 %.1f)\">",
          (g->T + g->H - g->B) / 2, (g->T + g->H - g->B) / 2);
  html_text(f, unit[0] ? unit : "value");
  fputs("</text>\n", f);
}

/* One series as polylines: a missing point (NaN, or no sample for more
 * than 1.5 steps) ends a line and starts the next, so a gap shows as a
 * gap. A lone point between gaps is a dot. */
static void svg_series(FILE *f, const report *r, const frame *g,
                       const prom_series *sr, const char *color,
                       const char *name) {
  size_t j = 0;
  while (j < sr->n) {
    while (j < sr->n && (isnan(sr->v[j]) || isinf(sr->v[j])))
      j++;
    if (j == sr->n)
      break;
    size_t k = j + 1;
    while (k < sr->n && !isnan(sr->v[k]) && !isinf(sr->v[k]) &&
           sr->t[k] - sr->t[k - 1] <= 1.5 * r->step)
      k++;
    if (k - j == 1) {
      fprintf(f,
              "<circle class=\"series\" cx=\"%.1f\" cy=\"%.1f\" r=\"2\" "
              "fill=\"%s\" data-name=\"",
              fx(g, sr->t[j]), fy(g, sr->v[j]), color);
    } else {
      fprintf(f,
              "<polyline class=\"series\" fill=\"none\" stroke=\"%s\" "
              "stroke-width=\"2\" data-name=\"",
              color);
    }
    html_text(f, name);
    if (k - j > 1) {
      fputs("\" points=\"", f);
      for (size_t i = j; i < k; i++)
        fprintf(f, "%.1f,%.1f ", fx(g, sr->t[i]), fy(g, sr->v[i]));
    }
    fputs("\"/>\n", f);
    j = k;
  }
}

/* A line chart: one series per line, time on x, the value from 0 (or the
 * minimum) to the maximum on y, both axes with ticks and titles. */
static void svg_chart(FILE *f, const report *r, const chart *c) {
  frame g = {.W = 680,
             .H = 240,
             .L = 64,
             .R = 12,
             .T = 24,
             .B = 40,
             .t0 = r->start,
             .t1 = r->o.end};
  bool any = false;
  for (size_t i = 0; i < c->data.n; i++)
    for (size_t j = 0; j < c->data.s[i].n; j++) {
      double v = c->data.s[i].v[j];
      if (isnan(v) || isinf(v))
        continue;
      if (!any || v > g.hi)
        g.hi = v;
      if (!any || v < g.lo)
        g.lo = v;
      any = true;
    }
  if (g.lo > 0)
    g.lo = 0;
  if (g.hi <= g.lo)
    g.hi = g.lo + 1;
  g.hi = ceil(g.hi / nice_step(g.hi - g.lo, 5)) * nice_step(g.hi - g.lo, 5);
  fprintf(f,
          "<svg class=\"chart\" width=\"%.0f\" height=\"%.0f\" "
          "viewBox=\"0 0 %.0f %.0f\" xmlns=\"http://www.w3.org/2000/svg\" "
          "role=\"img\" aria-label=\"",
          g.W, g.H, g.W, g.H);
  html_text(f, c->title);
  fprintf(f,
          "\">\n<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" "
          "fill=\"#fafafa\" stroke=\"#ccc\"/>\n",
          g.L, g.T, g.W - g.L - g.R, g.H - g.T - g.B);
  svg_axes(f, &g, c->unit);
  for (size_t i = 0; i < c->data.n && i < 16; i++) {
    svg_series(f, r, &g, &c->data.s[i], palette[i % 6], c->names[i]);
    fprintf(f,
            "<text class=\"legend\" x=\"%.0f\" y=\"%.0f\" font-size=\"11\" "
            "fill=\"%s\">",
            g.L + 8 + 100.0 * (double)(i % 6), 14.0 + 12.0 * (double)(i / 6),
            palette[i % 6]);
    html_text(f, c->names[i]);
    fputs("</text>\n", f);
  }
  fputs("</svg>\n", f);
}

static void html_alerts(const report *r, FILE *f) {
  fputs("<h2 id=\"alerts\">Alerts that fired</h2>\n", f);
  if (r->alerts_missing) {
    fputs("<p class=\"missing\">Missing: ", f);
    html_text(f, r->alerts_err);
    fputs("</p>\n", f);
    return;
  }
  if (r->nalerts == 0) {
    fputs("<p>No alert fired in this period.</p>\n", f);
    return;
  }
  fputs("<table class=\"alerts\"><tr><th>alert</th><th>severity</th><th>where"
        "</th><th>first fired</th><th>firing for</th></tr>\n",
        f);
  for (int i = 0; i < r->nalerts; i++) {
    const alert_fired *a = &r->alerts[i];
    char first[48], dur[64];
    alert_cells(a, first, sizeof first, dur, sizeof dur);
    const char *cells[] = {a->name, a->severity, a->where, first, dur};
    fprintf(f, "<tr class=\"sev-%s\">", a->severity);
    for (int c = 0; c < 5; c++) {
      fputs("<td>", f);
      html_text(f, cells[c]);
      fputs("</td>", f);
    }
    fputs("</tr>\n", f);
  }
  fputs("</table>\n", f);
}

/* The headline figures, each beside the previous period's and the change. */
static void html_figures(const report *r, FILE *f) {
  char v[400], pv[400], d[64];
  fputs("<table id=\"figures\"><tr><th>figure</th><th>value</th>", f);
  if (!r->o.no_compare)
    fputs("<th>previous period</th><th>change</th>", f);
  fputs("</tr>\n", f);
  for (int i = 0; i < r->nfigs; i++) {
    const figure *fg = &r->figs[i];
    fig_text(fg, v, sizeof v);
    fig_prev(fg, pv, sizeof pv);
    fig_delta(fg, d, sizeof d);
    fprintf(f, "<tr data-key=\"%s\"><td>", fg->key);
    html_text(f, fg->title);
    fprintf(f, "</td><td%s>",
            fg->state == FIG_MISSING ? " class=\"missing\"" : "");
    html_text(f, v);
    fputs("</td>", f);
    if (!r->o.no_compare) {
      fputs("<td>", f);
      html_text(f, pv);
      fputs("</td><td>", f);
      html_text(f, d);
      fputs("</td>", f);
    }
    fputs("</tr>\n", f);
  }
  fputs("</table>\n", f);
}

bool report_write_html(const report *r, FILE *f) {
  char per[96];
  period(r, per, sizeof per);
  fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<title>ORFEAS health report</title>\n<style>body{font-family:"
        "sans-serif;max-width:960px;margin:2em auto;color:#222}table{border-"
        "collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:"
        "4px 8px;text-align:left}.missing{color:#b00}.chart{display:block;"
        "margin:0.5em 0 1.5em}.sev-critical td:nth-child(2){color:#b00;"
        "font-weight:bold}.sev-warning td:nth-child(2){color:#b60}"
        "</style></head><body>\n",
        f);
  fputs("<h1>ORFEAS health report</h1>\n<p>Period: ", f);
  html_text(f, per);
  fputs(" (Prometheus ", f);
  html_text(f, r->o.prometheus);
  fputs(")</p>\n", f);
  html_figures(r, f);
  html_alerts(r, f);
  for (int i = 0; i < r->ncharts; i++) {
    const chart *c = &r->charts[i];
    fputs("<h2>", f);
    html_text(f, c->title);
    fputs("</h2>\n", f);
    if (c->missing) {
      fputs("<p class=\"missing\">Missing: ", f);
      html_text(f, c->err);
      fputs("</p>\n", f);
    } else if (c->data.n == 0) {
      fputs("<p>No data in this period.</p>\n", f);
    } else {
      svg_chart(f, r, c);
    }
  }
  for (int t = 0; t < r->ntables; t++) {
    const table *tb = &r->tables[t];
    fputs("<h2>", f);
    html_text(f, tb->title);
    fputs("</h2>\n", f);
    if (tb->missing) {
      fputs("<p class=\"missing\">Missing: ", f);
      html_text(f, tb->err);
      fputs("</p>\n", f);
      continue;
    }
    if (tb->nrows == 0) {
      fputs("<p>None.</p>\n", f);
      continue;
    }
    fputs("<table><tr>", f);
    for (int c = 0; c < tb->ncols; c++) {
      fputs("<th>", f);
      html_text(f, tb->cols[c]);
      fputs("</th>", f);
    }
    fputs("</tr>\n", f);
    for (int row = 0; row < tb->nrows; row++) {
      fputs("<tr>", f);
      for (int c = 0; c < tb->ncols; c++) {
        fputs("<td>", f);
        html_text(f, tb->cells[row][c]);
        fputs("</td>", f);
      }
      fputs("</tr>\n", f);
    }
    fputs("</table>\n", f);
  }
  fputs("</body></html>\n", f);
  return !ferror(f);
}

/* ---- JSON ---------------------------------------------------------------- */

static void json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\')
      fprintf(f, "\\%c", c);
    else if (c < 0x20)
      fprintf(f, "\\u%04x", c);
    else
      fputc(c, f);
  }
  fputc('"', f);
}

static void json_num(FILE *f, fig_state st, double v) {
  if (st == FIG_VALUE && !isnan(v) && !isinf(v))
    fprintf(f, "%.17g", v);
  else
    fputs("null", f);
}

bool report_write_json(const report *r, FILE *f) {
  fprintf(f, "{\"start\": %.3f, \"end\": %.3f, \"figures\": {", r->start,
          r->o.end);
  for (int i = 0; i < r->nfigs; i++) {
    const figure *fg = &r->figs[i];
    fprintf(f, "%s\n  ", i ? "," : "");
    json_str(f, fg->key);
    fputs(": {\"value\": ", f);
    json_num(f, fg->state, fg->value);
    if (fg->state != FIG_VALUE || isnan(fg->value) || isinf(fg->value))
      fprintf(f, ", \"state\": \"%s\"",
              fg->state == FIG_MISSING ? "missing" : "no_data");
    if (!r->o.no_compare) {
      fputs(", \"previous\": ", f);
      json_num(f, fg->prev_state, fg->prev);
    }
    if (fg->note[0]) {
      fputs(", \"note\": ", f);
      json_str(f, fg->note);
    }
    fputs("}", f);
  }
  fputs("\n}, \"alerts\": [", f);
  for (int i = 0; i < r->nalerts; i++) {
    const alert_fired *a = &r->alerts[i];
    fprintf(f, "%s\n  {\"alertname\": ", i ? "," : "");
    json_str(f, a->name);
    fputs(", \"severity\": ", f);
    json_str(f, a->severity);
    fputs(", \"where\": ", f);
    json_str(f, a->where);
    fprintf(f, ", \"first\": %.3f, \"seconds\": %.3f, \"episodes\": %d}",
            a->first, a->seconds, a->episodes);
  }
  fprintf(f, "%s], \"alerts_missing\": %s, \"failed_queries\": %d}\n",
          r->nalerts ? "\n" : "", r->alerts_missing ? "true" : "false",
          r->failures);
  return !ferror(f);
}
