/* gauge.c: gauges are one double, kept as bits in an atomic word. Gauges
 * are set more than added to, and a set must win whole, so no sharding. An
 * unset gauge (its value unknown) holds a NaN of its own, OM__GAUGE_UNSET. */
#include <math.h>

#include "internal.h"

typedef union {
  uint64_t u;
  double d;
} bits;

void om_gauge_set(om_gauge *g, double v) {
  bits b = {.d = v};
  if (isnan(v))
    b.u = OM__GAUGE_NAN; /* never the unset one */
  atomic_store_explicit(&g->bits, b.u, memory_order_relaxed);
}

void om_gauge_unset(om_gauge *g) {
  atomic_store_explicit(&g->bits, OM__GAUGE_UNSET, memory_order_relaxed);
}

void om_gauge_add(om_gauge *g, double v) {
  bits old, upd;
  old.u = atomic_load_explicit(&g->bits, memory_order_relaxed);
  do {
    if (old.u == OM__GAUGE_UNSET)
      return; /* unknown plus a change is still unknown */
    upd.d = old.d + v;
    if (isnan(upd.d))
      upd.u = OM__GAUGE_NAN;
  } while (!atomic_compare_exchange_weak_explicit(
      &g->bits, &old.u, upd.u, memory_order_relaxed, memory_order_relaxed));
}

void om_gauge_inc(om_gauge *g) { om_gauge_add(g, 1); }
void om_gauge_dec(om_gauge *g) { om_gauge_add(g, -1); }

double om_gauge_value(const om_gauge *g) {
  bits b = {.u = atomic_load_explicit(&g->bits, memory_order_relaxed)};
  return b.u == OM__GAUGE_UNSET ? NAN : b.d;
}
