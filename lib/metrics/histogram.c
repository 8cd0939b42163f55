/* histogram.c: observe and read histograms.
 *
 * Each shard has a row: for each bucket (+Inf last) a non-cumulative count
 * and the sum of its observations as double bits, padded to whole cache
 * lines. An exclusive owner
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

/* Long bucket lists: binary search. */
size_t om__bucket_search(const double *b, size_t nb, double v) {
  size_t lo = 0, hi = nb;
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

/* Threads without an exclusive shard share row 0 through atomics. */
void om__histogram_observe_shared(om_histogram *h, size_t i, double v) {
  _Atomic uint64_t *cell = h->hot.rows + 2 * i;
  atomic_fetch_add_explicit(&cell[0], 1, memory_order_relaxed);
  bits old, upd;
  old.u = atomic_load_explicit(&cell[1], memory_order_relaxed);
  do {
    upd.d = old.d + v;
  } while (!atomic_compare_exchange_weak_explicit(
      &cell[1], &old.u, upd.u, memory_order_relaxed, memory_order_relaxed));
}

void om__histogram_read(const struct om_histogram *hg, uint64_t *cumulative,
                        double *sum) {
  const struct om__histogram_hot *h = &hg->hot;
  double total = 0;
  for (size_t k = 0; k <= h->nb; k++)
    cumulative[k] = 0;
  int used = om__shards_used();
  for (int s = 0; s <= used; s++) {
    const _Atomic uint64_t *row = h->rows + (size_t)s * h->row_words;
    for (size_t k = 0; k <= h->nb; k++) {
      cumulative[k] += atomic_load_explicit(&row[2 * k], memory_order_relaxed);
      bits b = {
          .u = atomic_load_explicit(&row[2 * k + 1], memory_order_relaxed)};
      total += b.d;
    }
  }
  for (size_t k = 1; k <= h->nb; k++)
    cumulative[k] += cumulative[k - 1];
  *sum = total;
}

int om_histogram_snapshot(const om_histogram *h, uint64_t *cumulative, size_t n,
                          uint64_t *count, double *sum) {
  if (h == NULL || cumulative == NULL || n < h->hot.nb + 1)
    return OM_EINVAL;
  double s;
  om__histogram_read(h, cumulative, &s);
  if (count != NULL)
    *count = cumulative[h->hot.nb];
  if (sum != NULL)
    *sum = s;
  return OM_OK;
}
