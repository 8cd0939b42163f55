// peer_promcpp.cpp: prometheus-cpp 1.0.1 (Debian prometheus-cpp-dev) doing
// what bench_metrics.c asks of ours, in the way its documentation suggests:
// handles resolved once (Counter&, Histogram&), Family::Add for lookups,
// Registry::Collect + TextSerializer for a scrape.
#include "peer_promcpp.h"

#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

extern "C" const double *bench_values(void); // 4096 values, bench_metrics.c
extern "C" const double *bench_bounds(void); // 11 bounds
extern "C" const char *const *bench_methods(void); // 10 label pairs
extern "C" const char *const *bench_codes(void);

struct peer {
  std::shared_ptr<prometheus::Registry> reg =
      std::make_shared<prometheus::Registry>();
  prometheus::Counter *counter = nullptr;
  prometheus::Histogram *histogram = nullptr;
  prometheus::Family<prometheus::Counter> *lookup_family = nullptr;
  std::shared_ptr<prometheus::Registry> render_reg;
  std::string out;
};

extern "C" peer *peer_new(void) {
  peer *p = new peer;
  p->counter = &prometheus::BuildCounter()
                    .Name("bench_counter_total")
                    .Help("h")
                    .Register(*p->reg)
                    .Add({});
  const double *b = bench_bounds();
  p->histogram =
      &prometheus::BuildHistogram()
           .Name("bench_histogram")
           .Help("h")
           .Register(*p->reg)
           .Add({}, prometheus::Histogram::BucketBoundaries(b, b + 11));
  p->lookup_family = &prometheus::BuildCounter()
                          .Name("bench_lookup_total")
                          .Help("h")
                          .Register(*p->reg);
  for (int i = 0; i < 10; i++)
    p->lookup_family->Add(
        {{"method", bench_methods()[i]}, {"code", bench_codes()[i]}});
  return p;
}

extern "C" void peer_free(peer *p) { delete p; }

extern "C" void peer_counter_loop(void *vp, long n) {
  prometheus::Counter &c = *static_cast<peer *>(vp)->counter;
  for (long i = 0; i < n; i++)
    c.Increment();
}

extern "C" void peer_histogram_loop(void *vp, long n) {
  prometheus::Histogram &h = *static_cast<peer *>(vp)->histogram;
  const double *v = bench_values();
  for (long i = 0; i < n; i++)
    h.Observe(v[i & 4095]);
}

extern "C" void peer_lookup_loop(void *vp, long n) {
  auto &fam = *static_cast<peer *>(vp)->lookup_family;
  const char *const *m = bench_methods();
  const char *const *c = bench_codes();
  for (long i = 0; i < n; i++) {
    int k = (int)(i % 10);
    fam.Add({{"method", m[k]}, {"code", c[k]}}).Increment();
  }
}

extern "C" void peer_setup_render_counters(peer *p, int series) {
  p->render_reg = std::make_shared<prometheus::Registry>();
  auto &fam = prometheus::BuildCounter()
                  .Name("bench_render_total")
                  .Help("Render benchmark.")
                  .Register(*p->render_reg);
  for (int i = 0; i < series; i++)
    fam.Add({{"id", std::to_string(i)}}).Increment((double)i);
}

extern "C" void peer_setup_render_histograms(peer *p, int series) {
  p->render_reg = std::make_shared<prometheus::Registry>();
  auto &fam = prometheus::BuildHistogram()
                  .Name("bench_render_seconds")
                  .Help("Render benchmark.")
                  .Register(*p->render_reg);
  const double *b = bench_bounds();
  const double *v = bench_values();
  for (int i = 0; i < series; i++) {
    auto &h = fam.Add({{"id", std::to_string(i)}},
                      prometheus::Histogram::BucketBoundaries(b, b + 11));
    for (int k = 0; k < 16; k++)
      h.Observe(v[(i * 16 + k) & 4095]);
  }
}

extern "C" long peer_render(peer *p) {
  prometheus::TextSerializer s;
  p->out = s.Serialize(p->render_reg->Collect());
  return (long)p->out.size();
}
