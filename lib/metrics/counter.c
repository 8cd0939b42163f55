/* counter.c: counter updates and reads.
 *
 * A counter's value is the sum over shards of an integer slot and, only for
 * counters that were ever given a non-integral amount, a float slot. Keeping
 * integers apart keeps the common inc exact at any count (a double loses
 * units past 2^53) and makes it one add; the float part keeps add(0.25)
 * exact as Prometheus clients do.
 */
#include "internal.h"

#include <math.h>

static inline _Atomic uint64_t *slot_at(const om_counter *c, intptr_t off) {
  return (_Atomic uint64_t *)((char *)c->hot.slots + off);
}

void om__counter_add_slow(om_counter *c, uint64_t n) {
  if (om__tls_counter_off == 0)
    om__shard_claim();
  intptr_t off = om__tls_counter_off;
  if (off > 0) {
    _Atomic uint64_t *p = slot_at(c, off);
    atomic_store_explicit(p, atomic_load_explicit(p, memory_order_relaxed) + n,
                          memory_order_relaxed);
  } else {
    atomic_fetch_add_explicit(c->hot.slots, n, memory_order_relaxed);
  }
}

/* Adds v to a double kept as bits. Exclusive owners store directly; the
 * shared shard needs a compare-and-swap loop. */
static void add_double_bits(_Atomic uint64_t *p, double v, bool exclusive) {
  union {
    uint64_t u;
    double d;
  } old, upd;
  old.u = atomic_load_explicit(p, memory_order_relaxed);
  if (exclusive) {
    upd.d = old.d + v;
    atomic_store_explicit(p, upd.u, memory_order_relaxed);
    return;
  }
  do {
    upd.d = old.d + v;
  } while (!atomic_compare_exchange_weak_explicit(
      p, &old.u, upd.u, memory_order_relaxed, memory_order_relaxed));
}

int om_counter_add(om_counter *c, double v) {
  if (c == NULL || !(v >= 0) || isinf(v))
    return OM_EINVAL;
  if (v < 9007199254740992.0 && v == (double)(uint64_t)v) {
    om_counter_add_u64(c, (uint64_t)v);
    return OM_OK;
  }
  int s = om__shard();
  if (!atomic_load_explicit(&c->has_frac, memory_order_relaxed))
    atomic_store_explicit(&c->has_frac, 1, memory_order_relaxed);
  intptr_t off = OM_FRAC_OFF + (s > 0 ? s * OM_SHARD_STRIDE : 0);
  add_double_bits(slot_at(c, off), v, s > 0);
  return OM_OK;
}

uint64_t om__counter_ints(const struct om_counter *c) {
  uint64_t sum = 0;
  int used = om__shards_used();
  for (int s = 0; s <= used; s++)
    sum += atomic_load_explicit(slot_at(c, s * OM_SHARD_STRIDE),
                                memory_order_relaxed);
  return sum;
}

double om__counter_total(const struct om_counter *c, uint64_t *ints,
                         bool *integral) {
  *ints = om__counter_ints(c);
  *integral = true;
  if (!atomic_load_explicit(&c->has_frac, memory_order_relaxed))
    return (double)*ints;
  double frac = 0;
  int used = om__shards_used();
  for (int s = 0; s <= used; s++) {
    union {
      uint64_t u;
      double d;
    } x;
    x.u = atomic_load_explicit(slot_at(c, OM_FRAC_OFF + s * OM_SHARD_STRIDE),
                               memory_order_relaxed);
    frac += x.d;
  }
  *integral = false;
  return (double)*ints + frac;
}

double om_counter_value(const om_counter *c) {
  bool integral;
  uint64_t ints;
  return c == NULL ? 0 : om__counter_total(c, &ints, &integral);
}
