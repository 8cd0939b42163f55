/* histogram.c: observe and read histograms.
 *
 * Each shard has a row: one non-cumulative count per bucket (+Inf last), then
 * the sum as double bits, padded to whole cache lines. An exclusive owner
 * updates its row with plain loads and stores; the shared row uses atomics.
 *
 * Consistency: a scrape derives _count from the buckets it read (the +Inf
 * cumulative bucket IS the count), so count == +Inf bucket always holds, with
 * no seqlock or hot/cold swap on the write path. Only _sum may be one
 * in-flight observation behind or ahead of the count.
 */
#include "internal.h"

typedef union {
  uint64_t u;
  double d;
} bits;

/* Index of the first bound >= v (nb when none, NaN included). Branch-free
 * for the common short bucket lists: a mispredicted branch per bound costs
 * more than the comparisons. */
static inline size_t bucket_of(const double *b, size_t nb, double v) {
  if (nb <= 16) {
    size_t i = 0;
    for (size_t k = 0; k < nb; k++)
      i += !(v <= b[k]);
    return i;
  }
  size_t lo = 0, hi = nb; /* binary search for long lists */
  if (v != v)
    return nb;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (v <= b[mid])
      hi = mid;
    else
      lo = mid + 1;
  }
  return lo;
}

void om_histogram_observe(om_histogram *h, double v) {
  size_t i = bucket_of(h->bounds, h->nb, v);
  int s = om__tls_shard;
  if (__builtin_expect(s == 0, 0))
    s = om__shard_claim();
  if (s > 0) {
    _Atomic uint64_t *row = h->rows + (size_t)s * h->row_words;
    atomic_store_explicit(
        &row[i], atomic_load_explicit(&row[i], memory_order_relaxed) + 1,
        memory_order_relaxed);
    bits sum = {.u = atomic_load_explicit(&row[h->nb + 1],
                                          memory_order_relaxed)};
    sum.d += v;
    atomic_store_explicit(&row[h->nb + 1], sum.u, memory_order_relaxed);
    return;
  }
  _Atomic uint64_t *row = h->rows;
  atomic_fetch_add_explicit(&row[i], 1, memory_order_relaxed);
  bits old, upd;
  old.u = atomic_load_explicit(&row[h->nb + 1], memory_order_relaxed);
  do {
    upd.d = old.d + v;
  } while (!atomic_compare_exchange_weak_explicit(
      &row[h->nb + 1], &old.u, upd.u, memory_order_relaxed,
      memory_order_relaxed));
}

void om__histogram_read(const struct om_histogram *h, uint64_t *cumulative,
                        double *sum) {
  double total = 0;
  for (size_t k = 0; k <= h->nb; k++)
    cumulative[k] = 0;
  for (int s = 0; s <= OM_SHARDS; s++) {
    const _Atomic uint64_t *row = h->rows + (size_t)s * h->row_words;
    for (size_t k = 0; k <= h->nb; k++)
      cumulative[k] += atomic_load_explicit(&row[k], memory_order_relaxed);
    bits b = {.u = atomic_load_explicit(&row[h->nb + 1],
                                        memory_order_relaxed)};
    total += b.d;
  }
  for (size_t k = 1; k <= h->nb; k++)
    cumulative[k] += cumulative[k - 1];
  *sum = total;
}

int om_histogram_snapshot(const om_histogram *h, uint64_t *cumulative,
                          size_t n, uint64_t *count, double *sum) {
  if (h == NULL || cumulative == NULL || n < h->nb + 1)
    return OM_EINVAL;
  double s;
  om__histogram_read(h, cumulative, &s);
  if (count != NULL)
    *count = cumulative[h->nb];
  if (sum != NULL)
    *sum = s;
  return OM_OK;
}
