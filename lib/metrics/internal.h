/* internal.h: the structures shared by the files of the metrics library.
 * Nothing outside lib/metrics includes this. */
#ifndef OM_INTERNAL_H
#define OM_INTERNAL_H

#include "orfeas/metrics.h"

#include <locale.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

/* ---- shards (shard.c) ------------------------------------------------ */

/* Counter slots live in chunks of OM_CHUNK counters. A chunk holds, for each
 * of the OM_SHARDS + 1 shards, OM_CHUNK integer slots, then the same again
 * for the float parts. So the slot of shard s is always s * OM_SHARD_STRIDE
 * bytes after shard 0's, whichever counter it is: the inline fast path needs
 * one thread-local offset and no lookup. Slots of one shard are adjacent, so
 * the threads that own different shards never write the same cache line. */
#define OM_CHUNK 512
#define OM_SHARD_STRIDE ((intptr_t)(OM_CHUNK * sizeof(uint64_t)))
#define OM_FRAC_OFF ((OM_SHARDS + 1) * OM_SHARD_STRIDE)
#define OM_CHUNK_BYTES (2 * OM_FRAC_OFF)

/* Highest shard ever claimed. Shards above it were never written, so a
 * scrape sums shards 0..om__shards_used() only: with few threads that is a
 * few loads per series instead of OM_SHARDS + 1. */
extern _Atomic int om__shard_hw;
static inline int om__shards_used(void) {
  return atomic_load_explicit(&om__shard_hw, memory_order_acquire);
}

/* om__shard_claim() (declared in metrics.h) claims an exclusive shard for
 * the calling thread if one is free, else marks it shared, and returns
 * om__tls_shard. */

static inline int om__shard(void) {
  int s = om__tls_shard;
  return s != 0 ? s : om__shard_claim();
}

/* Histogram bounds arrays hold at least this many entries, padded with +Inf
 * (see om__bucket_of in metrics.h). */
#define OM_HIST_PAD OM__HIST_PAD

/* ---- children ------------------------------------------------------- */

struct om_counter {
  struct om__counter_hot hot; /* first: the inline path casts to it */
  _Atomic int has_frac;       /* set once any float add happened */
};

struct om_gauge {
  _Atomic uint64_t bits; /* the double's bits, or OM__GAUGE_UNSET */
};

/* The bits of an unset gauge (om_gauge_unset): a NaN no arithmetic makes,
 * and om_gauge_set stores every NaN as the default quiet one. */
#define OM__GAUGE_UNSET UINT64_C(0x7ff00000000000ff)
#define OM__GAUGE_NAN UINT64_C(0x7ff8000000000000)

/* The value in *v and 1, or 0 while the gauge is unset (render leaves its
 * series out): one load, so a concurrent unset never reads as NaN. */
static inline int om__gauge_read(const struct om_gauge *g, double *v) {
  uint64_t u = atomic_load_explicit(&g->bits, memory_order_relaxed);
  if (u == OM__GAUGE_UNSET)
    return 0;
  memcpy(v, &u, sizeof *v);
  return 1;
}

struct om_histogram {
  struct om__histogram_hot hot; /* rows of 2 (nb + 1) words rounded to 8 */
};

/* A series. The metric part comes first, so a handle is the child pointer. */
typedef struct om_child {
  union {
    struct om_counter c;
    struct om_gauge g;
    struct om_histogram h;
  } m;
  uint64_t hash;
  const char **values; /* label values as looked up (canonical) */
  size_t *lens;
  char *labels; /* rendered a="x",b="y" (escaped), "" when none */
  size_t labels_len;
} om_child;

/* ---- families ------------------------------------------------------- */

/* Open-addressing table of children; grows by copy, the old one is kept on
 * the family's retired list until the registry is freed, so lock-free
 * readers never touch freed memory. */
typedef struct om_table {
  size_t mask;
  _Atomic(om_child *) slots[];
} om_table;

typedef struct om_retired {
  struct om_retired *next;
  void *mem;
} om_retired;

struct om_family {
  om_registry *reg;
  om_type type;
  char *name; /* as registered */
  size_t name_len;
  char *om_name; /* OpenMetrics family name (counters lose _total) */
  size_t om_name_len;
  char *help;
  char *unit; /* NULL when none */
  size_t nlabels;
  char **label_names;
  /* histograms */
  double *bounds;
  size_t nb;
  char **le_text; /* le="<bound>" as text 0.0.4 writes it */
  char **le_om;   /* le="<bound>" as OpenMetrics writes it ("1.0") */
  size_t *le_text_len, *le_om_len;
  size_t max_series;

  pthread_mutex_t mu; /* serializes child creation */
  _Atomic(om_table *) table;
  _Atomic(om_child **) list; /* children in creation order */
  size_t list_cap;
  _Atomic size_t n;
  om_child *sink;         /* absorbs updates past max_series */
  om_counter *overflow;   /* this family's child of the overflow counter */
  om_counter *duplicates; /* collectors: child of the duplicates counter */
  om_retired *retired;

  uint64_t seed;         /* label hash seed, random per family */
  om_collect_fn collect; /* collector families only */
  void *collect_user;
};

/* ---- registry ------------------------------------------------------- */

/* One series a collector reported in the current callback: the hash of its
 * label text and where that text lies in the output buffer (an offset: the
 * buffer may move as it grows). Valid only while stamp is the registry's
 * current one, so the table is never cleared between callbacks. */
typedef struct om_seen {
  uint64_t hash;
  uint64_t stamp;
  size_t off, len;
} om_seen;

struct om_registry {
  pthread_mutex_t mu; /* families array, renders, collectors */
  om_family **fams;   /* sorted by name */
  size_t nfams, fams_cap;

  pthread_mutex_t slot_mu; /* counter slot allocator */
  char **chunks;
  size_t nchunks, chunks_cap;
  size_t next_slot;

  om_family *overflow_fam;
  om_family *dup_fam; /* counts series a collector reported twice */
  /* Collector families registered now: without any, dup_fam can count
   * nothing and is not rendered while it has no series. */
  size_t ncollectors;
  uint64_t generation;
  /* Label sets reported by the collector running now (renders hold mu):
   * an open-addressing table of seen_mask + 1 entries, grown as needed and
   * kept for the next scrape. */
  om_seen *seen;
  size_t seen_mask;
  uint64_t seen_stamp;
  locale_t c_locale; /* renders format numbers in the C locale */
};

/* registry.c */
_Atomic uint64_t *om__slot_alloc(om_registry *reg);

/* family.c */
om_child *om__family_child(om_family *fam, const char *const *values);
uint64_t om__hash_text(uint64_t seed, const char *p, size_t n);
om_child *om__child_new(om_family *fam, const char *const *values,
                        const size_t *lens, uint64_t hash);
int om__family_add(om_family *fam, om_child *c); /* fam->mu held */
void om__child_free(const om_family *fam, om_child *c);
uint64_t om__new_seed(const om_family *fam);
void om__family_free(om_family *fam);

/* names.c */
bool om__valid_metric_name(const char *s);
bool om__valid_label_name(const char *s);
size_t om__canon_value(const char *v, char *out, size_t cap);
bool om__valid_utf8(const char *s);

/* errors.c */
int om__fail(om_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* fmt.c: writers into an om_buf; a failed growth sets *err. */
typedef struct om_out {
  om_buf *buf;
  int err;
} om_out;

bool om__reserve(om_out *o, size_t n);
void om__put(om_out *o, const char *s, size_t n);
static inline void om__putc(om_out *o, char c) { om__put(o, &c, 1); }
/* Unchecked appends: callers reserve first. Most pieces of a sample line
 * (suffix, label set, bound, value) are under 16 bytes: copy those with
 * fixed-size moves, which the compiler inlines, instead of calling memcpy. */
static inline void om__put_raw(om_out *o, const char *s, size_t n) {
  char *d = o->buf->data + o->buf->len;
  if (n >= 8 && n <= 16) {
    memcpy(d, s, 8);
    memcpy(d + n - 8, s + n - 8, 8);
  } else if (n >= 4 && n < 8) {
    memcpy(d, s, 4);
    memcpy(d + n - 4, s + n - 4, 4);
  } else if (n < 4) {
    for (size_t i = 0; i < n; i++)
      d[i] = s[i];
  } else {
    memcpy(d, s, n);
  }
  o->buf->len += n;
}
size_t om__fmt_u64(char *dst, uint64_t v);          /* no NUL */
size_t om__fmt_double(char *dst, double v);         /* no NUL, <= 32 */
size_t om__fmt_bound(char *dst, double v, bool om); /* no NUL, <= 32 */
void om__put_escaped(om_out *o, const char *s, size_t n, bool quote);
void om__put_labels(om_out *o, const om_family *fam, const char *const *values,
                    const size_t *lens);

/* render.c: what a collector callback writes through. */
struct om_collect {
  om_out *o;
  om_family *fam;
  om_format fmt;
  size_t count; /* distinct series reported so far */
  uint64_t generation;
};

void om__render_sample_line(om_out *o, const char *name, size_t name_len,
                            const char *suffix, size_t suffix_len,
                            const char *labels, size_t labels_len,
                            const char *extra, size_t extra_len,
                            const char *value, size_t value_len);

/* values */
uint64_t om__counter_ints(const struct om_counter *c);
double om__counter_total(const struct om_counter *c, uint64_t *ints,
                         bool *integral);
void om__histogram_read(const struct om_histogram *h, uint64_t *cumulative,
                        double *sum);

#endif
