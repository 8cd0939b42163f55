/* metrics_fixture.c: see metrics_fixture.h. */
#include "metrics_fixture.h"

#include <math.h>
#include <stdio.h>

static void collect_gpus(om_collect *out, void *user) {
  (void)user;
  om_collect_value(out, OM_LABELS("0"), 1.5);
  om_collect_value(out, OM_LABELS("1\"x"), 2);
  /* Reported again: dropped (the first stays) and counted. Only in the
   * first scrape, so that later scrapes of the fixture give the same bytes
   * (buffer_reuse). */
  if (om_collect_generation(out) == 1)
    om_collect_value(out, OM_LABELS("0"), 3);
}

#define CHECK(x)                                                               \
  do {                                                                         \
    if (!(x)) {                                                                \
      fprintf(stderr, "fixture: %s failed: %s\n", #x, err.text);               \
      om_registry_free(reg);                                                   \
      return NULL;                                                             \
    }                                                                          \
  } while (0)

/* Long on purpose: one straight list of every family and child the golden
 * files hold, in their order, so the fixture reads like the exposition. */
om_registry *metrics_fixture_new(void) {
  om_error err = {0};
  om_registry *reg = om_registry_new(NULL);
  if (reg == NULL)
    return NULL;

  om_family *req = om_family_new(
      reg, OM_COUNTER,
      &(om_family_opts){.name = "app_requests_total",
                        .help = "Requests \"served\", by path.\nSecond line "
                                "with a \\ backslash.",
                        .label_names = OM_LABELS("method", "path"),
                        .label_count = 2},
      &err);
  CHECK(req);
  om_counter *get_a = om_family_counter(req, OM_LABELS("GET", "/a"));
  CHECK(get_a);
  for (int i = 0; i < 3; i++)
    om_counter_inc(get_a);
  om_counter *weird =
      om_family_counter(req, OM_LABELS("POST", "we\"ird\\path\nx"));
  CHECK(weird);
  om_counter_add(weird, 2);

  om_family *bytes = om_family_new(reg, OM_COUNTER,
                                   &(om_family_opts){.name = "app_bytes_total",
                                                     .help = "Bytes written.",
                                                     .unit = "bytes"},
                                   &err);
  CHECK(bytes);
  om_counter *b = om_family_counter(bytes, NULL);
  for (int i = 0; i < 3; i++)
    om_counter_add(b, 0.25);
  om_counter_add(b, 1);

  om_family *temp =
      om_family_new(reg, OM_GAUGE,
                    &(om_family_opts){.name = "app_temperature_celsius",
                                      .help = "Temperature.",
                                      .unit = "celsius"},
                    &err);
  CHECK(temp);
  om_gauge_set(om_family_gauge(temp, NULL), -12.5);

  om_family *special =
      om_family_new(reg, OM_GAUGE,
                    &(om_family_opts){.name = "app_special",
                                      .help = "Special floats.",
                                      .label_names = OM_LABELS("kind"),
                                      .label_count = 1},
                    &err);
  CHECK(special);
  om_gauge_set(om_family_gauge(special, OM_LABELS("nan")), NAN);
  om_gauge_set(om_family_gauge(special, OM_LABELS("pinf")), INFINITY);
  om_gauge_set(om_family_gauge(special, OM_LABELS("ninf")), -INFINITY);
  om_gauge_set(om_family_gauge(special, OM_LABELS("third")), 0.1 + 0.2);
  om_gauge_set(om_family_gauge(special, OM_LABELS("big")), 1e21);
  om_gauge_set(om_family_gauge(special, OM_LABELS("negzero")), -0.0);
  om_gauge_set(om_family_gauge(special, OM_LABELS("max")),
               1.7976931348623157e308);
  om_gauge_set(om_family_gauge(special, OM_LABELS("bad\xff"
                                                  "utf8")),
               1);

  static const double bounds[] = {0.1, 1, 10};
  om_family *lat =
      om_family_new(reg, OM_HISTOGRAM,
                    &(om_family_opts){.name = "app_latency_seconds",
                                      .help = "Latency.",
                                      .unit = "seconds",
                                      .label_names = OM_LABELS("route"),
                                      .label_count = 1,
                                      .buckets = bounds,
                                      .bucket_count = 3},
                    &err);
  CHECK(lat);
  om_histogram *x = om_family_histogram(lat, OM_LABELS("/x"));
  const double obs[] = {0.05, 0.1, 0.5, 5, 50};
  for (int i = 0; i < 5; i++)
    om_histogram_observe(x, obs[i]);

  CHECK(om_histogram_new(reg, "app_empty_hist", "No observations.", NULL, 0,
                         &err));

  CHECK(om_family_new(reg, OM_COUNTER,
                      &(om_family_opts){.name = "app_empty_total",
                                        .help = "No children.",
                                        .label_names = OM_LABELS("x"),
                                        .label_count = 1},
                      &err));

  CHECK(om_build_info_register(reg, "app_build_info", "Build details.",
                               OM_LABELS("version", "revision"),
                               OM_LABELS("1.2.3", "abc"), 2, &err) == OM_OK);

  om_family *capped =
      om_family_new(reg, OM_COUNTER,
                    &(om_family_opts){.name = "app_capped_total",
                                      .help = "Two series at most.",
                                      .label_names = OM_LABELS("user"),
                                      .label_count = 1,
                                      .max_series = 2},
                    &err);
  CHECK(capped);
  const char *users[] = {"a", "b", "c", "d"};
  for (int i = 0; i < 4; i++)
    om_counter_inc(om_family_counter(capped, OM_LABELS(users[i])));

  CHECK(om_collector_new(reg, OM_GAUGE,
                         &(om_family_opts){.name = "app_collected",
                                           .help = "From a collector.",
                                           .label_names = OM_LABELS("gpu"),
                                           .label_count = 1},
                         collect_gpus, NULL, &err) == OM_OK);
  return reg;
}
