/* test_metrics_registry.c: registration rules, errors, and the cardinality
 * guard against hostile label values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orfeas/metrics.h"

static int reg_fails(om_type type, om_family_opts o, int want) {
  om_registry *reg = om_registry_new(NULL);
  om_error err = {0};
  om_family *f = om_family_new(reg, type, &o, &err);
  int ok = f == NULL && err.code == want && strlen(err.text) > 10;
  if (!ok)
    print_error("%s: got %p code %d (%s)\n", o.name ? o.name : "(null)",
                (void *)f, err.code, err.text);
  om_registry_free(reg);
  return ok;
}

static void bad_names_refused(void **state) {
  (void)state;
  const char *bad[] = {"", "1abc", "a-b", "a b", "é", "a\n"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_true(reg_fails(OM_COUNTER,
                          (om_family_opts){.name = bad[i], .help = "h"},
                          OM_EBADNAME));
  assert_true(reg_fails(OM_COUNTER, (om_family_opts){.help = "h"}, OM_EINVAL));
  assert_true(reg_fails(OM_COUNTER, (om_family_opts){.name = "ok"},
                        OM_EINVAL)); /* no help */
  const char *bad_help[] = {"\xff", "caf\xc3", "\xed\xa0\x80 surrogate",
                            "\xc0\xaf overlong"};
  for (size_t i = 0; i < sizeof bad_help / sizeof bad_help[0]; i++)
    assert_true(reg_fails(OM_COUNTER,
                          (om_family_opts){.name = "ok", .help = bad_help[i]},
                          OM_EINVAL));
  om_registry *reg = om_registry_new(NULL);
  assert_non_null(om_counter_new(reg, "ns:sub_total", "h", NULL));
  assert_non_null(om_counter_new(reg, "_x", "h", NULL));
  om_registry_free(reg);
}

static void bad_labels_refused(void **state) {
  (void)state;
  const char *bad[] = {"__reserved", "1a", "a-b", ""};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_true(reg_fails(
        OM_GAUGE,
        (om_family_opts){
            .name = "g", .help = "h", .label_names = &bad[i], .label_count = 1},
        OM_EBADLABEL));
  assert_true(reg_fails(OM_GAUGE,
                        (om_family_opts){.name = "g",
                                         .help = "h",
                                         .label_names = OM_LABELS("a", "a"),
                                         .label_count = 2},
                        OM_EBADLABEL));
  assert_true(reg_fails(OM_HISTOGRAM,
                        (om_family_opts){.name = "h",
                                         .help = "h",
                                         .label_names = OM_LABELS("le"),
                                         .label_count = 1},
                        OM_EBADLABEL));
}

static void bad_buckets_refused(void **state) {
  (void)state;
  const double dec[] = {1, 0.5};
  const double dup[] = {1, 1};
  const double inf[] = {1, INFINITY};
  const double nan[] = {NAN};
  const double *all[] = {dec, dup, inf, nan};
  size_t n[] = {2, 2, 2, 1};
  for (int i = 0; i < 4; i++)
    assert_true(reg_fails(
        OM_HISTOGRAM,
        (om_family_opts){
            .name = "h", .help = "h", .buckets = all[i], .bucket_count = n[i]},
        OM_EBUCKETS));
}

static void units(void **state) {
  (void)state;
  assert_true(reg_fails(
      OM_GAUGE,
      (om_family_opts){.name = "temp", .help = "h", .unit = "celsius"},
      OM_EUNIT));
  assert_true(reg_fails(
      OM_GAUGE,
      (om_family_opts){.name = "x_Celsius", .help = "h", .unit = "Cel-sius"},
      OM_EUNIT));
  om_registry *reg = om_registry_new(NULL);
  assert_non_null(om_family_new(
      reg, OM_COUNTER,
      &(om_family_opts){.name = "io_bytes_total", .help = "h", .unit = "bytes"},
      NULL));
  om_registry_free(reg);
}

static void duplicates_refused(void **state) {
  (void)state;
  om_registry *reg = om_registry_new(NULL);
  om_error err;
  assert_non_null(om_counter_new(reg, "jobs_total", "h", &err));
  assert_null(om_counter_new(reg, "jobs_total", "h", &err));
  assert_int_equal(err.code, OM_EEXISTS);
  /* Same OpenMetrics family name ("jobs") as the counter above. */
  assert_null(om_gauge_new(reg, "jobs", "h", &err));
  assert_int_equal(err.code, OM_EEXISTS);
  /* The code also answers a collector's second report of a series in one
   * scrape (collector_duplicates_dropped): its name covers both. */
  assert_string_equal(om_strerror(OM_EEXISTS),
                      "metric already registered, or series reported twice "
                      "in one scrape");
  assert_string_equal(om_strerror(12345), "unknown error");
  om_registry_free(reg);
}

/* Past the cap, new label values get the sink: updates vanish, memory does
 * not grow, the overflow counter counts each refusal, and existing children
 * keep working. */
static void cardinality_cap(void **state) {
  (void)state;
  om_registry *reg = om_registry_new(NULL);
  om_family *f =
      om_family_new(reg, OM_COUNTER,
                    &(om_family_opts){.name = "u_total",
                                      .help = "h",
                                      .label_names = OM_LABELS("user"),
                                      .label_count = 1,
                                      .max_series = 100},
                    NULL);
  char v[32];
  om_counter *first = NULL;
  for (int i = 0; i < 10000; i++) {
    snprintf(v, sizeof v, "user-%d", i);
    om_counter *c = om_family_counter(f, OM_LABELS(v));
    assert_non_null(c);
    om_counter_inc(c);
    if (i == 0)
      first = c;
  }
  assert_int_equal(om_family_series(f), 100);
  assert_ptr_equal(first, om_family_counter(f, OM_LABELS("user-0")));
  assert_true(om_counter_value(first) == 1);
  om_buf buf = {0};
  om_registry_render(reg, OM_FORMAT_TEXT, &buf);
  assert_non_null(strstr(buf.data, "u_total{user=\"user-99\"} 1\n"));
  assert_null(strstr(buf.data, "user-100\""));
  assert_non_null(strstr(
      buf.data, "\nmetrics_series_overflow_total{family=\"u_total\"} 9900\n"));
  om_buf_free(&buf);
  om_registry_free(reg);
}

/* Hostile values: huge, invalid UTF-8, quotes and newlines. Stored cut to
 * OM_MAX_LABEL_VALUE bytes, sanitized, and escaped on output. */
static void hostile_label_values(void **state) {
  (void)state;
  om_registry *reg = om_registry_new(NULL);
  om_family *f = om_family_new(reg, OM_GAUGE,
                               &(om_family_opts){.name = "g",
                                                 .help = "h",
                                                 .label_names = OM_LABELS("v"),
                                                 .label_count = 1},
                               NULL);
  size_t big = 1 << 20;
  char *huge = malloc(big + 1);
  memset(huge, 'a', big);
  huge[big] = '\0';
  om_gauge *h1 = om_family_gauge(f, OM_LABELS(huge));
  huge[big - 1] = 'b'; /* differs only past the cut: same series */
  assert_ptr_equal(h1, om_family_gauge(f, OM_LABELS(huge)));
  free(huge);
  /* A multi-byte character straddling the cut is dropped whole. */
  char straddle[OM_MAX_LABEL_VALUE + 8];
  memset(straddle, 'x', sizeof straddle);
  memcpy(straddle + OM_MAX_LABEL_VALUE - 1, "\xc3\xa9", 2);
  straddle[sizeof straddle - 1] = '\0';
  om_gauge_set(om_family_gauge(f, OM_LABELS(straddle)), 2);
  om_gauge *bad1 = om_family_gauge(f, OM_LABELS("\xff\xfe"));
  om_gauge *bad2 = om_family_gauge(f, OM_LABELS("\xef\xbf\xbd\xef\xbf\xbd"));
  assert_ptr_equal(bad1, bad2); /* same text on the wire: same series */
  om_gauge_set(om_family_gauge(f, OM_LABELS("a\"b\\c\nd")), 3);
  om_gauge_set(om_family_gauge(f, OM_LABELS("\xc0\xaf")), 4); /* overlong */
  om_buf buf = {0};
  om_registry_render(reg, OM_FORMAT_TEXT, &buf);
  char want[OM_MAX_LABEL_VALUE + 32];
  snprintf(want, sizeof want, "g{v=\"%.*s\"} 2\n", OM_MAX_LABEL_VALUE - 1,
           straddle);
  assert_non_null(strstr(buf.data, want));
  assert_non_null(strstr(buf.data, "g{v=\"a\\\"b\\\\c\\nd\"} 3\n"));
  assert_non_null(strstr(buf.data, "g{v=\"\xef\xbf\xbd\xef\xbf\xbd\"} 4\n"));
  size_t maxline = 0;
  for (char *p = buf.data, *nl; (nl = strchr(p, '\n')); p = nl + 1)
    if ((size_t)(nl - p) > maxline)
      maxline = (size_t)(nl - p);
  assert_true(maxline < 3 * OM_MAX_LABEL_VALUE + 32);
  om_buf_free(&buf);
  om_registry_free(reg);
}

/* A collector's series appear at scrape time; past its cap they are
 * dropped and counted; bad counter values are refused. */
static int collected_rc[3];
static void collect3(om_collect *out, void *user) {
  (void)user;
  collected_rc[0] = om_collect_value(out, OM_LABELS("0"), 5);
  collected_rc[1] = om_collect_value(out, OM_LABELS("1"), 6);
  collected_rc[2] = om_collect_value(out, OM_LABELS("2"), -1);
}

static void collector_cap(void **state) {
  (void)state;
  om_registry *reg = om_registry_new(NULL);
  om_error err;
  assert_int_equal(
      om_collector_new(reg, OM_COUNTER,
                       &(om_family_opts){.name = "gpu_events_total",
                                         .help = "h",
                                         .label_names = OM_LABELS("gpu"),
                                         .label_count = 1,
                                         .max_series = 1},
                       collect3, NULL, &err),
      OM_OK);
  assert_int_equal(om_collector_new(reg, OM_HISTOGRAM,
                                    &(om_family_opts){.name = "x", .help = "h"},
                                    collect3, NULL, &err),
                   OM_ETYPE);
  om_buf buf = {0};
  om_registry_render(reg, OM_FORMAT_TEXT, &buf);
  assert_int_equal(collected_rc[0], OM_OK);
  assert_int_equal(collected_rc[1], OM_EOVERFLOW);
  assert_int_equal(collected_rc[2], OM_EINVAL);
  assert_non_null(strstr(buf.data, "gpu_events_total{gpu=\"0\"} 5\n"));
  assert_null(strstr(buf.data, "gpu_events_total{gpu=\"1\"}"));
  assert_non_null(strstr(buf.data, "{family=\"gpu_events_total\"} 1\n"));
  om_buf_free(&buf);
  om_registry_free(reg);
}

/* A strict reading of an exposition, as Prometheus's parsers do it: each
 * sample belongs to the family of the # TYPE line before it (its name, or
 * the name plus a suffix its type allows); no name is claimed by two
 * families (a family claims its name, its samples' names, and the names its
 * type reserves: _bucket, _sum and _count of a histogram, which the text
 * parser files under the histogram whatever the # TYPE line says, and in
 * OpenMetrics _created of a counter or histogram); and no series (name and
 * label set) appears twice. Returns the number of problems, printing each. */
enum { MAXN = 256 };
typedef struct {
  char *name[MAXN];
  int fam[MAXN];
  size_t n;
  int problems;
} claims;

static void claim(claims *c, const char *name, size_t len, int fam) {
  for (size_t i = 0; i < c->n; i++)
    if (strlen(c->name[i]) == len && memcmp(c->name[i], name, len) == 0) {
      if (c->fam[i] != fam) {
        print_error("%.*s is claimed by two families\n", (int)len, name);
        c->problems++;
      }
      return;
    }
  assert_true(c->n < MAXN);
  c->name[c->n] = strndup(name, len);
  c->fam[c->n++] = fam;
}

static void claim_suffixed(claims *c, const char *fam, const char *suffix,
                           int fi) {
  char t[300];
  int n = snprintf(t, sizeof t, "%s%s", fam, suffix);
  claim(c, t, (size_t)n, fi);
}

static int exposition_problems(const char *text, bool om) {
  char *keys[MAXN];
  size_t nkeys = 0;
  claims c = {.n = 0};
  char fam[256] = "", type[32] = "";
  int fi = -1;
  for (const char *p = text, *nl; (nl = strchr(p, '\n')); p = nl + 1) {
    size_t n = (size_t)(nl - p);
    if (n >= 7 && memcmp(p, "# TYPE ", 7) == 0) {
      if (sscanf(p + 7, "%255s %31s", fam, type) != 2)
        return c.problems + 1;
      fi++;
      claim(&c, fam, strlen(fam), fi);
      bool hist = strcmp(type, "histogram") == 0;
      if (hist) {
        claim_suffixed(&c, fam, "_bucket", fi);
        claim_suffixed(&c, fam, "_sum", fi);
        claim_suffixed(&c, fam, "_count", fi);
      }
      if (om && (hist || strcmp(type, "counter") == 0))
        claim_suffixed(&c, fam, "_created", fi);
      continue;
    }
    if (n == 0 || p[0] == '#')
      continue;
    /* The series key is everything before the value. */
    size_t k = n;
    while (k > 0 && p[k - 1] != ' ')
      k--;
    if (k == 0)
      return c.problems + 1;
    size_t name_len = strcspn(p, "{ ");
    size_t fl = strlen(fam);
    const char *suffix = p + fl;
    size_t sl = name_len - fl;
    bool ok = name_len >= fl && memcmp(p, fam, fl) == 0;
    if (ok && strcmp(type, "histogram") == 0)
      ok = (sl == 7 && memcmp(suffix, "_bucket", 7) == 0) ||
           (sl == 4 && memcmp(suffix, "_sum", 4) == 0) ||
           (sl == 6 && memcmp(suffix, "_count", 6) == 0);
    else if (ok && om && strcmp(type, "counter") == 0)
      ok = sl == 6 && memcmp(suffix, "_total", 6) == 0;
    else if (ok)
      ok = sl == 0;
    if (!ok) {
      print_error("sample %.*s does not belong to family %s (%s)\n",
                  (int)name_len, p, fam, type);
      c.problems++;
    }
    claim(&c, p, name_len, fi);
    for (size_t i = 0; i < nkeys; i++)
      if (strlen(keys[i]) == k - 1 && memcmp(keys[i], p, k - 1) == 0) {
        print_error("series %.*s appears twice\n", (int)(k - 1), p);
        c.problems++;
      }
    assert_true(nkeys < MAXN);
    keys[nkeys++] = strndup(p, k - 1);
  }
  for (size_t i = 0; i < nkeys; i++)
    free(keys[i]);
  for (size_t i = 0; i < c.n; i++)
    free(c.name[i]);
  return c.problems;
}

/* Whether text names metric name as a whole word. */
static bool names(const char *text, const char *name) {
  size_t n = strlen(name);
  for (const char *p = text; (p = strstr(p, name)); p++) {
    char before = p == text ? ' ' : p[-1], after = p[n];
    if (!isalnum((unsigned char)before) && before != '_' &&
        !isalnum((unsigned char)after) && after != '_')
      return true;
  }
  return false;
}

static int render_problems(om_registry *reg) {
  om_buf buf = {0};
  int problems = 0;
  for (int om = 0; om < 2; om++) {
    assert_int_equal(
        om_registry_render(reg, om ? OM_FORMAT_OPENMETRICS : OM_FORMAT_TEXT,
                           &buf),
        OM_OK);
    problems += exposition_problems(buf.data, om);
  }
  om_buf_free(&buf);
  return problems;
}

/* Two families whose sample names would meet on the wire, in either format:
 * the second to register is refused, whichever it is, with a message that
 * names both, and what is rendered stays valid. */
static void sample_name_clashes_refused(void **state) {
  (void)state;
  static const struct {
    om_type ta;
    const char *a;
    om_type tb;
    const char *b;
  } clash[] = {
      {OM_HISTOGRAM, "foo", OM_GAUGE, "foo_count"},
      {OM_HISTOGRAM, "foo", OM_COUNTER, "foo_sum"},
      {OM_HISTOGRAM, "foo", OM_GAUGE, "foo_bucket"},
      {OM_HISTOGRAM, "foo", OM_GAUGE, "foo_created"},
      {OM_HISTOGRAM, "foo", OM_HISTOGRAM, "foo_count"},
      {OM_COUNTER, "foo", OM_GAUGE, "foo_total"},
      {OM_COUNTER, "foo", OM_GAUGE, "foo_created"},
      {OM_COUNTER, "foo_total", OM_GAUGE, "foo_created"},
      {OM_COUNTER, "foo_total", OM_HISTOGRAM, "foo"},
      {OM_COUNTER, "foo_total", OM_COUNTER, "foo"},
  };
  for (size_t i = 0; i < sizeof clash / sizeof clash[0]; i++) {
    for (int order = 0; order < 2; order++) {
      om_type t1 = order ? clash[i].tb : clash[i].ta;
      om_type t2 = order ? clash[i].ta : clash[i].tb;
      const char *n1 = order ? clash[i].b : clash[i].a;
      const char *n2 = order ? clash[i].a : clash[i].b;
      om_registry *reg = om_registry_new(NULL);
      om_error err = {0};
      assert_non_null(om_family_new(
          reg, t1, &(om_family_opts){.name = n1, .help = "h"}, &err));
      om_family *f2 = om_family_new(
          reg, t2, &(om_family_opts){.name = n2, .help = "h"}, &err);
      if (f2 != NULL)
        print_error("%s after %s was registered\n", n2, n1);
      int problems = render_problems(reg);
      assert_null(f2);
      assert_int_equal(err.code, OM_EEXISTS);
      /* The message names both families. */
      if (!names(err.text, n1) || !names(err.text, n2))
        print_error("message: %s\n", err.text);
      assert_true(names(err.text, n1));
      assert_true(names(err.text, n2));
      assert_int_equal(problems, 0);
      om_registry_free(reg);
    }
  }
  /* Near misses stay allowed: the suffixes only clash with the family types
   * that write them. */
  om_registry *reg = om_registry_new(NULL);
  om_error err = {0};
  assert_non_null(om_gauge_new(reg, "bar", "h", &err));
  assert_non_null(om_gauge_new(reg, "bar_count", "h", &err));
  assert_non_null(om_gauge_new(reg, "bar_total", "h", &err));
  assert_non_null(om_histogram_new(reg, "baz", "h", NULL, 0, &err));
  assert_non_null(om_gauge_new(reg, "baz_counts", "h", &err));
  assert_non_null(om_gauge_new(reg, "baz_c", "h", &err));
  assert_non_null(om_counter_new(reg, "qux_total", "h", &err));
  assert_non_null(om_gauge_new(reg, "qux_total_x", "h", &err));
  assert_int_equal(render_problems(reg), 0);
  om_registry_free(reg);
}

/* A collector that reports a label set twice, or two values that are the
 * same once cut to OM_MAX_LABEL_VALUE bytes: the first report wins, later
 * ones are dropped, refused with OM_EEXISTS and counted, and the exposition
 * holds each series once. */
static int dup_rc[6];
static void collect_dups(om_collect *out, void *user) {
  (void)user;
  char a[OM_MAX_LABEL_VALUE + 2], b[OM_MAX_LABEL_VALUE + 2];
  memset(a, 'v', OM_MAX_LABEL_VALUE);
  memcpy(b, a, OM_MAX_LABEL_VALUE);
  a[OM_MAX_LABEL_VALUE] = 'a';
  b[OM_MAX_LABEL_VALUE] = 'b';
  a[OM_MAX_LABEL_VALUE + 1] = b[OM_MAX_LABEL_VALUE + 1] = '\0';
  dup_rc[0] = om_collect_value(out, OM_LABELS("0", "x"), 1);
  dup_rc[1] = om_collect_value(out, OM_LABELS("0", "x"), 2);
  dup_rc[2] = om_collect_value(out, OM_LABELS("0", a), 3);
  dup_rc[3] = om_collect_value(out, OM_LABELS("0", b), 4);
  dup_rc[4] = om_collect_value(out, OM_LABELS("1", "x"), 5);
  dup_rc[5] = om_collect_value(out, OM_LABELS("0", "x"), 6);
}

static int single_rc[2];
static void collect_single_twice(om_collect *out, void *user) {
  (void)user;
  single_rc[0] = om_collect_value(out, NULL, 7);
  single_rc[1] = om_collect_value(out, NULL, 8);
}

static void collector_duplicates_dropped(void **state) {
  (void)state;
  om_registry *reg = om_registry_new(NULL);
  om_error err = {0};
  assert_int_equal(
      om_collector_new(reg, OM_GAUGE,
                       &(om_family_opts){.name = "gpu_temp",
                                         .help = "h",
                                         .label_names = OM_LABELS("gpu", "n"),
                                         .label_count = 2,
                                         .max_series = 3},
                       collect_dups, NULL, &err),
      OM_OK);
  assert_int_equal(
      om_collector_new(reg, OM_COUNTER,
                       &(om_family_opts){.name = "one_total", .help = "h"},
                       collect_single_twice, NULL, &err),
      OM_OK);
  int problems = render_problems(reg);
  om_buf buf = {0};
  assert_int_equal(om_registry_render(reg, OM_FORMAT_TEXT, &buf), OM_OK);
  assert_int_equal(problems, 0);
  assert_int_equal(dup_rc[0], OM_OK);
  assert_int_equal(dup_rc[1], OM_EEXISTS);
  assert_int_equal(dup_rc[2], OM_OK);
  assert_int_equal(dup_rc[3], OM_EEXISTS);
  /* Duplicates do not use up the cap: the third distinct series fits. */
  assert_int_equal(dup_rc[4], OM_OK);
  assert_int_equal(dup_rc[5], OM_EEXISTS);
  assert_int_equal(single_rc[0], OM_OK);
  assert_int_equal(single_rc[1], OM_EEXISTS);
  /* What a caller would print for it names this use, not only a name
   * already registered. */
  assert_non_null(strstr(om_strerror(dup_rc[1]), "reported twice"));
  assert_non_null(strstr(buf.data, "\ngpu_temp{gpu=\"0\",n=\"x\"} 1\n"));
  assert_non_null(strstr(buf.data, "\ngpu_temp{gpu=\"1\",n=\"x\"} 5\n"));
  assert_non_null(strstr(buf.data, "\"} 3\n"));
  assert_null(strstr(buf.data, "\"} 4\n"));
  assert_non_null(strstr(buf.data, "\none_total 7\n"));
  /* Three renders so far, three duplicates each in gpu_temp and one in
   * one_total. Families render in name order: gpu_temp's duplicates of this
   * render are counted before the counter is written, one_total's after. */
  assert_non_null(
      strstr(buf.data,
             "\nmetrics_collector_duplicates_total{family=\"gpu_temp\"} 9\n"));
  assert_non_null(
      strstr(buf.data,
             "\nmetrics_collector_duplicates_total{family=\"one_total\"} 2\n"));
  assert_null(strstr(buf.data, "metrics_series_overflow_total{"));
  om_buf_free(&buf);
  om_registry_free(reg);
}

/* The duplicates counter only counts collectors' reports: a registry with
 * no collector cannot count one, and does not render the family at all
 * (client_golang renders nothing for a vector without children; here a
 * family with collectors to watch keeps its HELP and TYPE, as every other
 * family without series does). Once counted, a series stays even when the
 * collectors are gone. */
static void duplicates_family_needs_a_collector(void **state) {
  (void)state;
  om_registry *reg = om_registry_new(NULL);
  assert_non_null(om_counter_new(reg, "jobs_total", "h", NULL));
  om_buf buf = {0};
  for (int fmt = 0; fmt < 2; fmt++) {
    assert_int_equal(
        om_registry_render(reg, fmt ? OM_FORMAT_OPENMETRICS : OM_FORMAT_TEXT,
                           &buf),
        OM_OK);
    if (strstr(buf.data, "metrics_collector_duplicates") != NULL)
      fail_msg("no collector, yet:\n%s", buf.data);
    /* The overflow counter concerns every family: it stays (OpenMetrics
     * names a counter family without _total). */
    assert_non_null(strstr(buf.data, "# TYPE metrics_series_overflow"));
  }
  assert_int_equal(
      om_collector_new(reg, OM_COUNTER,
                       &(om_family_opts){.name = "one_total", .help = "h"},
                       collect_single_twice, NULL, NULL),
      OM_OK);
  /* The family renders before one_total (name order): the duplicate of the
   * first render shows in the second. */
  assert_int_equal(om_registry_render(reg, OM_FORMAT_TEXT, &buf), OM_OK);
  assert_non_null(
      strstr(buf.data, "# TYPE metrics_collector_duplicates_total counter\n"));
  assert_int_equal(om_registry_render(reg, OM_FORMAT_TEXT, &buf), OM_OK);
  assert_non_null(strstr(buf.data,
                         "# TYPE metrics_collector_duplicates_total counter\n"
                         "metrics_collector_duplicates_total{family=\"one_"
                         "total\"} 1\n"));
  assert_int_equal(om_collector_remove(reg, "one_total", NULL), OM_OK);
  assert_int_equal(om_registry_render(reg, OM_FORMAT_TEXT, &buf), OM_OK);
  assert_non_null(
      strstr(buf.data,
             "metrics_collector_duplicates_total{family=\"one_total\"} 2\n"));
  om_buf_free(&buf);
  om_registry_free(reg);

  /* A collector that never repeats itself: the family is announced, with
   * no series, like any family without one. */
  reg = om_registry_new(NULL);
  assert_int_equal(om_process_collector_register(reg, NULL), OM_OK);
  assert_int_equal(om_registry_render(reg, OM_FORMAT_TEXT, &buf), OM_OK);
  assert_non_null(
      strstr(buf.data, "# TYPE metrics_collector_duplicates_total counter\n"));
  assert_null(strstr(buf.data, "metrics_collector_duplicates_total{"));
  om_buf_free(&buf);
  om_registry_free(reg);
}

/* A collector can be taken back (by name and user pointer, so one owner
 * cannot remove another's), its name is free again afterwards, and a
 * family made with om_family_new cannot be removed. */
static int collect_calls;
static void collect_one(om_collect *out, void *user) {
  (void)user;
  collect_calls++;
  om_collect_value(out, NULL, 7);
}

static void collector_remove(void **state) {
  (void)state;
  om_registry *reg = om_registry_new(NULL);
  om_error err;
  int mine, other;
  om_family_opts o = {.name = "taken_back", .help = "h"};
  assert_int_equal(
      om_collector_new(reg, OM_GAUGE, &o, collect_one, &mine, &err), OM_OK);
  assert_non_null(om_family_new(
      reg, OM_GAUGE, &(om_family_opts){.name = "plain", .help = "h"}, &err));
  assert_int_equal(om_collector_remove(reg, "taken_back", &other), OM_EINVAL);
  assert_int_equal(om_collector_remove(reg, "plain", NULL), OM_EINVAL);
  assert_int_equal(om_collector_remove(reg, "taken_back", &mine), OM_OK);
  assert_int_equal(om_collector_remove(reg, "taken_back", &mine), OM_EINVAL);
  om_buf buf = {0};
  collect_calls = 0;
  assert_int_equal(om_registry_render(reg, OM_FORMAT_TEXT, &buf), OM_OK);
  assert_int_equal(collect_calls, 0);
  assert_null(strstr(buf.data, "taken_back"));
  assert_non_null(strstr(buf.data, "# TYPE plain gauge\n"));
  assert_int_equal(
      om_collector_new(reg, OM_GAUGE, &o, collect_one, &other, &err), OM_OK);
  assert_int_equal(om_registry_render(reg, OM_FORMAT_TEXT, &buf), OM_OK);
  assert_non_null(strstr(buf.data, "taken_back 7\n"));
  om_buf_free(&buf);
  om_registry_free(reg);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(bad_names_refused),
      cmocka_unit_test(bad_labels_refused),
      cmocka_unit_test(bad_buckets_refused),
      cmocka_unit_test(units),
      cmocka_unit_test(duplicates_refused),
      cmocka_unit_test(cardinality_cap),
      cmocka_unit_test(hostile_label_values),
      cmocka_unit_test(collector_cap),
      cmocka_unit_test(sample_name_clashes_refused),
      cmocka_unit_test(collector_duplicates_dropped),
      cmocka_unit_test(duplicates_family_needs_a_collector),
      cmocka_unit_test(collector_remove),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
