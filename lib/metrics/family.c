/* family.c: children of a family, looked up by label values.
 *
 * Reads are lock-free: the table and the creation-order list are published
 * with release stores and only ever replaced by bigger copies, never freed
 * while the registry lives (old copies go on the retired list). Creating a
 * child takes the family's mutex, so two threads asking for the same new
 * label values get the same child.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* 64x64->128 multiply folded to 64 bits: a strong, cheap mixing step. The
 * per-family random seed keeps users from choosing label values that all
 * land in one probe chain. */
static inline uint64_t mix(uint64_t a, uint64_t b) {
  __uint128_t m = (__uint128_t)(a ^ b) * (b ^ 0x9e3779b97f4a7c15ull);
  return (uint64_t)m ^ (uint64_t)(m >> 64);
}

/* Hashes n bytes eight at a time; ors every word into *hi so the caller can
 * tell whether any byte was non-ASCII (then UTF-8 must be checked). */
static inline uint64_t hash_bytes(uint64_t h, const char *p, size_t n,
                                  uint64_t *hi) {
  uint64_t w;
  size_t len = n;
  while (n >= 8) {
    memcpy(&w, p, 8);
    *hi |= w;
    h = mix(h, w);
    p += 8;
    n -= 8;
  }
  /* The last 0-7 bytes, read without a variable-length memcpy call:
   * overlapping fixed-size loads cover them all (the length is mixed in
   * separately, so overlap cannot make two values collide). */
  const unsigned char *u = (const unsigned char *)p;
  if (n >= 4) {
    uint32_t a, b;
    memcpy(&a, p, 4);
    memcpy(&b, p + n - 4, 4);
    w = ((uint64_t)a << 32) | b;
  } else if (n > 0) {
    w = ((uint64_t)u[0] << 16) | ((uint64_t)u[n >> 1] << 8) | u[n - 1];
  } else {
    w = 0;
  }
  *hi |= w;
  return mix(h ^ len, w);
}

/* Equality of n bytes; short values (the usual label) without a call into
 * libc, using the same overlapping fixed-size loads as hash_bytes. */
static inline bool same_bytes(const char *a, const char *b, size_t n) {
  if (n > 16)
    return memcmp(a, b, n) == 0;
  uint64_t x, y, x2, y2;
  if (n >= 8) {
    memcpy(&x, a, 8);
    memcpy(&y, b, 8);
    memcpy(&x2, a + n - 8, 8);
    memcpy(&y2, b + n - 8, 8);
    return ((x ^ y) | (x2 ^ y2)) == 0;
  }
  if (n >= 4) {
    uint32_t p, q, p2, q2;
    memcpy(&p, a, 4);
    memcpy(&q, b, 4);
    memcpy(&p2, a + n - 4, 4);
    memcpy(&q2, b + n - 4, 4);
    return ((p ^ q) | (p2 ^ q2)) == 0;
  }
  /* 0-3 bytes: first, middle and last cover them all. */
  return n == 0 ||
         (a[0] == b[0] && a[n >> 1] == b[n >> 1] && a[n - 1] == b[n - 1]);
}

static inline bool child_matches(const om_child *c, const char *const *vals,
                                 const size_t *lens, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (c->lens[i] != lens[i] || !same_bytes(c->values[i], vals[i], lens[i]))
      return false;
  return true;
}

static inline om_child *probe(const om_table *t, const char *const *vals,
                              const size_t *lens, size_t n, uint64_t h) {
  if (t == NULL)
    return NULL;
  for (size_t i = h & t->mask;; i = (i + 1) & t->mask) {
    om_child *c = atomic_load_explicit(&t->slots[i], memory_order_acquire);
    if (c == NULL)
      return NULL;
    if (c->hash == h && child_matches(c, vals, lens, n))
      return c;
  }
}

static void retire(om_family *fam, void *mem) {
  if (mem == NULL)
    return;
  om_retired *r = malloc(sizeof *r);
  if (r == NULL)
    return; /* out of memory: keep it allocated rather than free it early */
  r->mem = mem;
  r->next = fam->retired;
  fam->retired = r;
}

static void table_put(om_table *t, om_child *c) {
  size_t i = c->hash & t->mask;
  while (atomic_load_explicit(&t->slots[i], memory_order_relaxed) != NULL)
    i = (i + 1) & t->mask;
  atomic_store_explicit(&t->slots[i], c, memory_order_release);
}

int om__family_add(om_family *fam, om_child *c) {
  size_t n = atomic_load_explicit(&fam->n, memory_order_relaxed);
  om_child **list = atomic_load_explicit(&fam->list, memory_order_relaxed);
  if (fam->nlabels > 0) {
    om_table *t = atomic_load_explicit(&fam->table, memory_order_relaxed);
    size_t cap = t ? t->mask + 1 : 0;
    if ((n + 1) * 2 > cap) { /* keep the load at most 1/2: short probes */
      size_t ncap = cap ? 2 * cap : 16;
      om_table *nt = calloc(1, sizeof *nt + ncap * sizeof(_Atomic(om_child *)));
      if (nt == NULL)
        return OM_ENOMEM;
      nt->mask = ncap - 1;
      for (size_t i = 0; i < n; i++)
        table_put(nt, list[i]);
      atomic_store_explicit(&fam->table, nt, memory_order_release);
      retire(fam, t);
    }
  }
  if (n == fam->list_cap) {
    size_t ncap = fam->list_cap ? 2 * fam->list_cap : 8;
    om_child **nl = malloc(ncap * sizeof *nl);
    if (nl == NULL)
      return OM_ENOMEM;
    if (n)
      memcpy(nl, list, n * sizeof *nl);
    /* Publish the new list before the count that needs it: a reader loads
     * the count first, then the list (see render.c). */
    atomic_store_explicit(&fam->list, nl, memory_order_release);
    retire(fam, list);
    fam->list_cap = ncap;
    list = nl;
  }
  if (fam->nlabels > 0)
    table_put(atomic_load_explicit(&fam->table, memory_order_relaxed), c);
  list[n] = c;
  atomic_store_explicit(&fam->n, n + 1, memory_order_release);
  return OM_OK;
}

static void count_overflow(om_family *fam) {
  om_family *of = fam->reg->overflow_fam;
  if (of == NULL || of == fam)
    return; /* the overflow counter's own overflow is not counted */
  if (fam->overflow == NULL)
    fam->overflow = om_family_counter(of, OM_LABELS(fam->name));
  if (fam->overflow != NULL)
    om_counter_inc(fam->overflow);
}

/* Slow path of a lookup: the child was not in the table we read. */
static om_child *create(om_family *fam, const char *const *vals,
                        const size_t *lens, uint64_t h) {
  pthread_mutex_lock(&fam->mu);
  om_child *c = probe(atomic_load_explicit(&fam->table, memory_order_acquire),
                      vals, lens, fam->nlabels, h);
  if (c == NULL) {
    if (atomic_load_explicit(&fam->n, memory_order_relaxed) >=
        fam->max_series) {
      count_overflow(fam);
      c = fam->sink;
    } else {
      c = om__child_new(fam, vals, lens, h);
      if (c != NULL && om__family_add(fam, c) != OM_OK) {
        om__child_free(fam, c);
        c = NULL;
      }
      if (c == NULL)
        c = fam->sink; /* out of memory: updates are lost, nothing breaks */
    }
  }
  pthread_mutex_unlock(&fam->mu);
  return c;
}

static inline om_child *lookup(om_family *fam, const char *const *vals,
                               const size_t *lens, uint64_t h) {
  om_child *c = probe(atomic_load_explicit(&fam->table, memory_order_acquire),
                      vals, lens, fam->nlabels, h);
  return c ? c : create(fam, vals, lens, h);
}

/* Values that are too long or not plain ASCII: canonicalize (cut, replace
 * bad UTF-8) so that the key is what the exposition will show. Kept out of
 * line: its buffers are large and the common path never needs them. */
static __attribute__((noinline)) om_child *
lookup_canon(om_family *fam, const char *const *values) {
  static _Thread_local char buf[OM_MAX_LABELS][3 * OM_MAX_LABEL_VALUE];
  const char *vals[OM_MAX_LABELS];
  size_t lens[OM_MAX_LABELS];
  uint64_t h = fam->seed, hi = 0;
  for (size_t i = 0; i < fam->nlabels; i++) {
    lens[i] = om__canon_value(values[i], buf[i], sizeof buf[i]);
    vals[i] = buf[i];
    h = hash_bytes(h, vals[i], lens[i], &hi);
  }
  return lookup(fam, vals, lens, h);
}

om_child *om__family_child(om_family *fam, const char *const *values) {
  if (fam->nlabels == 0) {
    om_child **l = atomic_load_explicit(&fam->list, memory_order_acquire);
    return l ? l[0] : NULL;
  }
  if (values == NULL)
    return NULL;
  size_t lens[OM_MAX_LABELS];
  uint64_t h = fam->seed, hi = 0;
  for (size_t i = 0; i < fam->nlabels; i++) {
    if (values[i] == NULL)
      return NULL;
    size_t n = strlen(values[i]);
    if (n > OM_MAX_LABEL_VALUE)
      return lookup_canon(fam, values);
    lens[i] = n;
    h = hash_bytes(h, values[i], n, &hi);
  }
  if (hi & 0x8080808080808080ull)
    return lookup_canon(fam, values);
  return lookup(fam, values, lens, h);
}

/* The same hash for other text (a collector's label set, render.c). Out of
 * line, so the lookup path keeps its own inlined copy. */
uint64_t om__hash_text(uint64_t seed, const char *p, size_t n) {
  uint64_t hi = 0;
  return hash_bytes(seed, p, n, &hi);
}

uint64_t om__new_seed(const om_family *fam) {
  uint64_t s;
  if (getrandom(&s, sizeof s, GRND_NONBLOCK) != (ssize_t)sizeof s)
    s = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)fam;
  return s;
}

om_child *om__child_new(om_family *fam, const char *const *vals,
                        const size_t *lens, uint64_t h) {
  om_child *c = calloc(1, sizeof *c);
  if (c == NULL)
    return NULL;
  c->hash = h;
  size_t n = vals ? fam->nlabels : 0;
  size_t total = n * (sizeof(char *) + sizeof(size_t));
  for (size_t i = 0; i < n; i++)
    total += lens[i] + 1;
  char *block = malloc(total ? total : 1);
  if (block == NULL)
    goto fail;
  c->values = (const char **)block;
  c->lens = (size_t *)(block + n * sizeof(char *));
  char *s = block + n * (sizeof(char *) + sizeof(size_t));
  for (size_t i = 0; i < n; i++) {
    memcpy(s, vals[i], lens[i]);
    s[lens[i]] = '\0';
    c->values[i] = s;
    c->lens[i] = lens[i];
    s += lens[i] + 1;
  }
  /* Pre-render a="x",b="y" once, so a scrape only copies it. */
  om_buf lb = {0};
  om_out o = {&lb, 0};
  om__reserve(&o, 0);
  if (n)
    om__put_labels(&o, fam, c->values, c->lens);
  if (o.err)
    goto fail;
  lb.data[lb.len] = '\0';
  c->labels = lb.data;
  c->labels_len = lb.len;

  switch (fam->type) {
  case OM_COUNTER:
    c->m.c.hot.slots = om__slot_alloc(fam->reg);
    if (c->m.c.hot.slots == NULL)
      goto fail;
    break;
  case OM_GAUGE:
    break; /* calloc: bits of +0.0 */
  case OM_HISTOGRAM: {
    struct om__histogram_hot *hg = &c->m.h.hot;
    hg->bounds = fam->bounds;
    hg->nb = fam->nb;
    hg->npad = (fam->nb + 3) & ~(size_t)3;
    /* Each shard's row starts on its own cache line. */
    hg->row_words = (2 * (fam->nb + 1) + 7) & ~(size_t)7;
    size_t bytes = (OM_SHARDS + 1) * hg->row_words * sizeof(uint64_t);
    hg->rows = aligned_alloc(64, bytes);
    if (hg->rows == NULL)
      goto fail;
    memset(hg->rows, 0, bytes);
    break;
  }
  }
  return c;
fail:
  om__child_free(fam, c);
  return NULL;
}

/* Frees a child and what it owns: its value block, its label text, and a
 * histogram's rows (counter slots belong to the registry's chunks). */
void om__child_free(const om_family *fam, om_child *c) {
  if (c == NULL)
    return;
  if (fam->type == OM_HISTOGRAM)
    free(c->m.h.hot.rows);
  free(c->values);
  free(c->labels);
  free(c);
}

om_counter *om_family_counter(om_family *fam, const char *const *values) {
  if (fam == NULL || fam->type != OM_COUNTER || fam->collect)
    return NULL;
  om_child *c = om__family_child(fam, values);
  return c ? &c->m.c : NULL;
}

om_gauge *om_family_gauge(om_family *fam, const char *const *values) {
  if (fam == NULL || fam->type != OM_GAUGE || fam->collect)
    return NULL;
  om_child *c = om__family_child(fam, values);
  return c ? &c->m.g : NULL;
}

om_histogram *om_family_histogram(om_family *fam, const char *const *values) {
  if (fam == NULL || fam->type != OM_HISTOGRAM || fam->collect)
    return NULL;
  om_child *c = om__family_child(fam, values);
  return c ? &c->m.h : NULL;
}

void om__family_free(om_family *fam) {
  if (fam == NULL)
    return;
  size_t n = atomic_load_explicit(&fam->n, memory_order_relaxed);
  om_child **list = atomic_load_explicit(&fam->list, memory_order_relaxed);
  for (size_t i = 0; i < n; i++)
    om__child_free(fam, list[i]);
  free(list);
  om__child_free(fam, fam->sink);
  free(atomic_load_explicit(&fam->table, memory_order_relaxed));
  for (om_retired *r = fam->retired, *next; r; r = next) {
    next = r->next;
    free(r->mem);
    free(r);
  }
  for (size_t i = 0; i < fam->nlabels && fam->label_names; i++)
    free(fam->label_names[i]);
  free(fam->label_names);
  for (size_t i = 0; i <= fam->nb && fam->le_text; i++)
    free(fam->le_text[i]);
  for (size_t i = 0; i <= fam->nb && fam->le_om; i++)
    free(fam->le_om[i]);
  free(fam->le_text);
  free(fam->le_om);
  free(fam->le_text_len);
  free(fam->le_om_len);
  free(fam->bounds);
  free(fam->name);
  free(fam->om_name);
  free(fam->help);
  free(fam->unit);
  pthread_mutex_destroy(&fam->mu);
  free(fam);
}
