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

/* ---- Markdown ------------------------------------------------------------ */

bool report_write_md(const report *r, FILE *f) {
  char per[96], v[400], d[64];
  period(r, per, sizeof per);
  fprintf(f, "# ORFEAS health report\n\nPeriod: %s (Prometheus %s)\n\n", per,
          r->o.prometheus);
  fprintf(f, "| figure | value |%s\n|---|---|%s\n",
          r->o.compare_previous ? " change vs previous period |" : "",
          r->o.compare_previous ? "---|" : "");
  for (int i = 0; i < r->nfigs; i++) {
    fig_text(&r->figs[i], v, sizeof v);
    fig_delta(&r->figs[i], d, sizeof d);
    fprintf(f, "| %s | %s |", r->figs[i].title, v);
    if (r->o.compare_previous)
      fprintf(f, " %s |", d);
    fputc('\n', f);
  }
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
    case '<': fputs("&lt;", f); break;
    case '>': fputs("&gt;", f); break;
    case '&': fputs("&amp;", f); break;
    case '"': fputs("&quot;", f); break;
    default: fputc(*s, f);
    }
  }
}

static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c",
                                      "#ff7f0e", "#9467bd", "#8c564b"};

/* A line chart: one polyline per series, y from 0 (or the minimum) to the
 * maximum, time on x. NaN points (no data) break nothing: they are skipped. */
static void svg_chart(FILE *f, const report *r, const chart *c) {
  const double W = 640, H = 220, L = 56, R = 12, T = 12, B = 28;
  double lo = 0, hi = 0;
  bool any = false;
  for (size_t i = 0; i < c->data.n; i++)
    for (size_t j = 0; j < c->data.s[i].n; j++) {
      double v = c->data.s[i].v[j];
      if (isnan(v) || isinf(v))
        continue;
      if (!any || v > hi)
        hi = v;
      if (!any || v < lo)
        lo = v;
      any = true;
    }
  if (lo > 0)
    lo = 0;
  if (hi <= lo)
    hi = lo + 1;
  fprintf(f, "<svg class=\"chart\" width=\"%.0f\" height=\"%.0f\" "
             "viewBox=\"0 0 %.0f %.0f\" xmlns=\"http://www.w3.org/2000/svg\" "
             "role=\"img\" aria-label=\"",
          W, H, W, H);
  html_text(f, c->title);
  fprintf(f, "\">\n<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" "
             "fill=\"#fafafa\" stroke=\"#ccc\"/>\n",
          L, T, W - L - R, H - T - B);
  char a[32], b[32];
  time_t s = (time_t)r->start, e = (time_t)r->o.end;
  struct tm tm;
  strftime(a, sizeof a, "%H:%M", gmtime_r(&s, &tm));
  strftime(b, sizeof b, "%H:%M", gmtime_r(&e, &tm));
  fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"11\">%s</text>"
             "<text x=\"%.0f\" y=\"%.0f\" font-size=\"11\" "
             "text-anchor=\"end\">%s</text>\n",
          L, H - 10, a, W - R, H - 10, b);
  fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"11\" "
             "text-anchor=\"end\">%.3g</text><text x=\"%.0f\" y=\"%.0f\" "
             "font-size=\"11\" text-anchor=\"end\">%.3g</text>\n",
          L - 4, T + 10, hi, L - 4, H - B, lo);
  for (size_t i = 0; i < c->data.n && i < 16; i++) {
    const prom_series *sr = &c->data.s[i];
    fprintf(f, "<polyline class=\"series\" fill=\"none\" stroke=\"%s\" "
               "stroke-width=\"2\" data-name=\"",
            palette[i % 6]);
    html_text(f, c->names[i]);
    fprintf(f, "\" points=\"");
    for (size_t j = 0; j < sr->n; j++) {
      if (isnan(sr->v[j]) || isinf(sr->v[j]))
        continue;
      double x = L + (sr->t[j] - r->start) / (r->o.end - r->start) *
                         (W - L - R);
      double y = H - B - (sr->v[j] - lo) / (hi - lo) * (H - T - B);
      fprintf(f, "%.1f,%.1f ", x, y);
    }
    fprintf(f, "\"/>\n<text x=\"%.0f\" y=\"%.0f\" font-size=\"11\" "
               "fill=\"%s\">",
            L + 8 + 90.0 * (double)(i % 6), T + 14.0 + 12.0 * (double)(i / 6),
            palette[i % 6]);
    html_text(f, c->names[i]);
    fputs("</text>\n", f);
  }
  fputs("</svg>\n", f);
}

/* Long on purpose: the page from top to bottom, one section after the
 * other, so the code reads in the order of the HTML it writes. */
bool report_write_html(const report *r, FILE *f) {
  char per[96], v[400], d[64];
  period(r, per, sizeof per);
  fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<title>ORFEAS health report</title>\n<style>body{font-family:"
        "sans-serif;max-width:960px;margin:2em auto;color:#222}table{border-"
        "collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:"
        "4px 8px;text-align:left}.missing{color:#b00}.chart{display:block;"
        "margin:0.5em 0 1.5em}</style></head><body>\n",
        f);
  fputs("<h1>ORFEAS health report</h1>\n<p>Period: ", f);
  html_text(f, per);
  fputs(" (Prometheus ", f);
  html_text(f, r->o.prometheus);
  fputs(")</p>\n<table id=\"figures\"><tr><th>figure</th><th>value</th>", f);
  if (r->o.compare_previous)
    fputs("<th>change vs previous period</th>", f);
  fputs("</tr>\n", f);
  for (int i = 0; i < r->nfigs; i++) {
    const figure *fg = &r->figs[i];
    fig_text(fg, v, sizeof v);
    fig_delta(fg, d, sizeof d);
    fprintf(f, "<tr data-key=\"%s\"><td>", fg->key);
    html_text(f, fg->title);
    fprintf(f, "</td><td%s>", fg->state == FIG_MISSING ? " class=\"missing\""
                                                       : "");
    html_text(f, v);
    fputs("</td>", f);
    if (r->o.compare_previous) {
      fputs("<td>", f);
      html_text(f, d);
      fputs("</td>", f);
    }
    fputs("</tr>\n", f);
  }
  fputs("</table>\n", f);
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

bool report_write_json(const report *r, FILE *f) {
  fprintf(f, "{\"start\": %.3f, \"end\": %.3f, \"figures\": {", r->start,
          r->o.end);
  for (int i = 0; i < r->nfigs; i++) {
    const figure *fg = &r->figs[i];
    fprintf(f, "%s\n  ", i ? "," : "");
    json_str(f, fg->key);
    if (fg->state == FIG_VALUE && !isnan(fg->value) && !isinf(fg->value))
      fprintf(f, ": {\"value\": %.17g", fg->value);
    else
      fprintf(f, ": {\"value\": null, \"state\": \"%s\"",
              fg->state == FIG_MISSING ? "missing" : "no_data");
    if (fg->note[0]) {
      fputs(", \"note\": ", f);
      json_str(f, fg->note);
    }
    fputs("}", f);
  }
  fprintf(f, "\n}, \"failed_queries\": %d}\n", r->failures);
  return !ferror(f);
}
