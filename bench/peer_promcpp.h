/* peer_promcpp.h: prometheus-cpp (the named peer) doing the same operations
 * as our benchmark cases, behind a C interface. Each *_loop runs n ops. */
#ifndef PEER_PROMCPP_H
#define PEER_PROMCPP_H
#ifdef __cplusplus
extern "C" {
#endif

typedef struct peer peer;

peer *peer_new(void);
void peer_free(peer *p);

void peer_counter_loop(void *p, long n);   /* Counter::Increment() */
void peer_histogram_loop(void *p, long n); /* Histogram::Observe(v) */
void peer_lookup_loop(void *p, long n);    /* Family::Add(labels).Increment() */
/* Sets up a registry of 10,000 counter series, or 1,000 histograms. */
void peer_setup_render_counters(peer *p, int series);
void peer_setup_render_histograms(peer *p, int series);
/* One scrape: Collect() + TextSerializer; returns the bytes written. */
long peer_render(peer *p);

#ifdef __cplusplus
}
#endif
#endif
