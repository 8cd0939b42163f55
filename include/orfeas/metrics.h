/* orfeas/metrics.h: the ORFEAS metrics library, its whole public API.
 *
 * Counters, gauges and histograms, with or without labels, exposed in the
 * Prometheus text format 0.0.4 or OpenMetrics 1.0.0. The library depends on
 * nothing else in ORFEAS (libc and pthreads only).
 *
 * The model, in one screen:
 *
 *   om_registry *reg = om_registry_new(NULL);
 *   om_error err;
 *
 *   // An unlabelled counter: one call, one handle.
 *   om_counter *jobs = om_counter_new(reg, "jobs_total", "Jobs run.", &err);
 *   om_counter_inc(jobs);
 *
 *   // A labelled family: resolve each child once, then update the handle.
 *   om_family *req = om_family_new(reg, OM_COUNTER, &(om_family_opts){
 *       .name = "http_requests_total", .help = "HTTP requests.",
 *       .label_names = OM_LABELS("method", "code"), .label_count = 2}, &err);
 *   om_counter *get200 = om_family_counter(req, OM_LABELS("GET", "200"));
 *   om_counter_inc(get200);
 *
 *   // Scrape: render into a buffer the caller owns and reuses.
 *   om_buf buf = {0};
 *   om_registry_render(reg, OM_FORMAT_TEXT, &buf);   // buf.data, buf.len
 *   om_buf_free(&buf);
 *   om_registry_free(reg);
 *
 * Costs. Updating through a handle takes no lock, no hash and no allocation.
 * A counter is sharded per thread: each of the first OM_SHARDS threads that
 * update any counter owns a private slot in every counter and adds to it with
 * plain (non-locked) instructions, so threads never contend on one cache
 * line; later threads share one more slot through atomic adds. A scrape sums
 * the slots. Histograms are sharded the same way. Looking a child up by label
 * values hashes them and probes a table without taking a lock; only creating
 * a child locks its family.
 *
 * Lifetime. Families and children are never removed: a handle stays valid
 * until om_registry_free(). (Collector families, which no handle points
 * into, are the one exception: om_collector_remove.) That is what makes
 * lock-free updates and scrapes safe. Memory is bounded by each family's series
 * cap (see max_series).
 *
 * Errors. Functions that can fail return an om_status (0 on success, a
 * negative OM_E* code otherwise) or NULL, and fill an optional om_error with
 * a sentence a user can act on. om_strerror() names a code.
 *
 * Thread-safety is stated on every function below. "Any thread" means the
 * function may run concurrently with any other function of this header on
 * the same objects, except om_registry_free() and om_buf_free().
 */
#ifndef ORFEAS_METRICS_H
#define ORFEAS_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* A C11 header: the inline fast paths use <stdatomic.h> and _Thread_local,
 * which C++ does not accept. */
#ifdef __cplusplus
#error "orfeas/metrics.h is a C11 header"
#endif

/* ------------------------------------------------------------------ */
/* Errors                                                              */
/* ------------------------------------------------------------------ */

typedef enum om_status {
  OM_OK = 0,
  OM_EINVAL = -1,    /* an argument is NULL, out of range or not finite */
  OM_EBADNAME = -2,  /* metric name not [a-zA-Z_:][a-zA-Z0-9_:]* */
  OM_EBADLABEL = -3, /* label name invalid, reserved (__*, le) or repeated */
  OM_EEXISTS = -4,   /* a family of that name (or one of its sample names)
                        is already registered; a collected series repeated */
  OM_ENOMEM = -5,    /* out of memory */
  OM_ETYPE = -6,     /* wrong metric type for this call */
  OM_EBUCKETS = -7,  /* histogram bounds not finite and strictly increasing */
  OM_EUNIT = -8,     /* unit invalid or not the last part of the name */
  OM_EOVERFLOW = -9  /* the family's series cap is reached */
} om_status;

/* Filled by calls that take one (may be NULL). text is a full sentence. */
typedef struct om_error {
  int code;       /* an om_status */
  char text[240]; /* e.g. "metric name \"1abc\" is invalid: ..." */
} om_error;

/* Static name of a status code ("invalid argument", ...). Any thread.
 * OM_EEXISTS's covers both its uses (a name taken, a collected series
 * repeated); om_error.text says which. */
const char *om_strerror(int status);

/* ------------------------------------------------------------------ */
/* Registry                                                            */
/* ------------------------------------------------------------------ */

typedef struct om_registry om_registry;

typedef struct om_registry_opts {
  /* Name of the counter that counts refused series (see max_series);
   * NULL means "metrics_series_overflow_total". It has one label, family. */
  const char *overflow_name;
  /* Name of the counter that counts series a collector reported twice in
   * one scrape (see om_collect_value); NULL means
   * "metrics_collector_duplicates_total". It has one label, family. It is
   * not rendered while the registry has no collector and it no series. */
  const char *duplicate_name;
} om_registry_opts;

/* Creates an empty registry (opts may be NULL). Returns NULL when out of
 * memory. Any thread. The caller owns the registry. */
om_registry *om_registry_new(const om_registry_opts *opts);

/* Frees the registry, its families and every child handle. No other call may
 * use the registry or its handles during or after this. */
void om_registry_free(om_registry *reg);

/* ------------------------------------------------------------------ */
/* Families                                                            */
/* ------------------------------------------------------------------ */

typedef enum om_type { OM_COUNTER, OM_GAUGE, OM_HISTOGRAM } om_type;

typedef struct om_family om_family;

/* A compound literal for label names or values: OM_LABELS("GET", "200"). */
#define OM_LABELS(...) ((const char *const[]){__VA_ARGS__})

/* The Prometheus default buckets: .005 .01 .025 .05 .1 .25 .5 1 2.5 5 10. */
extern const double OM_DEFAULT_BUCKETS[11];

/* Default series cap per family. */
#define OM_DEFAULT_MAX_SERIES 10000

/* Longest label value kept, in bytes; longer ones are cut. */
#define OM_MAX_LABEL_VALUE 256

/* Most labels a family may have. */
#define OM_MAX_LABELS 16

typedef struct om_family_opts {
  const char *name; /* required; counters conventionally end in _total */
  const char *help; /* required; any UTF-8, escaped on output */
  const char *unit; /* optional (OpenMetrics # UNIT): [a-z0-9_]+, and the
                       name (less _total) must end in "_" unit */
  const char *const *label_names; /* label_count names, or NULL */
  size_t label_count;
  /* Histograms: finite, strictly increasing upper bounds; +Inf is implicit.
   * NULL means OM_DEFAULT_BUCKETS. Ignored for other types. */
  const double *buckets;
  size_t bucket_count;
  /* Most children this family will create; 0 means OM_DEFAULT_MAX_SERIES.
   * Past it, lookups of new label values return the family's sink child,
   * whose updates are discarded, and each such lookup adds 1 to the overflow
   * counter {family="<name>"}. */
  size_t max_series;
} om_family_opts;

/* Registers a family. The registry copies every string and array it is
 * given. Returns NULL and fills err on: a bad name or label name
 * (OM_EBADNAME, OM_EBADLABEL), a name already taken (OM_EEXISTS: no two
 * families may share a family or sample name in either format, so a
 * histogram foo refuses a gauge foo_count, foo_sum, foo_bucket or
 * foo_created, a counter foo a gauge foo_total or foo_created, and the
 * other way round), bad buckets or unit, or no memory. The registry owns the
 * family. Any thread. */
om_family *om_family_new(om_registry *reg, om_type type,
                         const om_family_opts *opts, om_error *err);

/* The family's type and label count. Any thread. */
om_type om_family_type(const om_family *fam);
size_t om_family_label_count(const om_family *fam);

/* Number of children created so far (the sink not included). Any thread. */
size_t om_family_series(const om_family *fam);

/* ------------------------------------------------------------------ */
/* Counters                                                            */
/* ------------------------------------------------------------------ */

typedef struct om_counter om_counter;

/* Registers an unlabelled counter family and returns its only child (NULL
 * and err filled on failure, as om_family_new). Any thread. */
om_counter *om_counter_new(om_registry *reg, const char *name, const char *help,
                           om_error *err);

/* The child of a counter family for these label values (label_count strings,
 * any bytes; NULL when the family has no labels). A value longer than
 * OM_MAX_LABEL_VALUE bytes is cut to that length (at a UTF-8 character
 * boundary), and bytes that are not valid UTF-8 are replaced by U+FFFD, so
 * hostile values can neither grow memory nor break the exposition. Created at 0
 * on first use; later calls return the same handle without allocating. Returns
 * the sink child when the series cap is reached or memory runs out, and NULL
 * only when fam is not a counter family or an argument is NULL. Any thread. */
om_counter *om_family_counter(om_family *fam, const char *const *values);

static inline void om_counter_inc(om_counter *c);
static inline void om_counter_add_u64(om_counter *c, uint64_t n);

/* Adds v >= 0 (finite). Integral v below 2^53 takes the integer path;
 * other values are kept in a separate float sum per shard, so adding 0.25
 * four times gives exactly 1. Returns OM_EINVAL (and changes nothing) for a
 * negative or non-finite v. Any thread; no lock, no allocation. */
int om_counter_add(om_counter *c, double v);

/* The current total (what a scrape would show). Any thread. */
double om_counter_value(const om_counter *c);

/* ------------------------------------------------------------------ */
/* Gauges                                                              */
/* ------------------------------------------------------------------ */

typedef struct om_gauge om_gauge;

/* As om_counter_new / om_family_counter, for gauges. Any thread. */
om_gauge *om_gauge_new(om_registry *reg, const char *name, const char *help,
                       om_error *err);
om_gauge *om_family_gauge(om_family *fam, const char *const *values);

/* Set, add (negative to subtract), inc and dec; any double, NaN and
 * infinities included. Any thread; lock-free (set is one atomic store, add a
 * compare-and-swap loop), no allocation. */
void om_gauge_set(om_gauge *g, double v);
void om_gauge_add(om_gauge *g, double v);
void om_gauge_inc(om_gauge *g);
void om_gauge_dec(om_gauge *g);
/* The value; NaN while the gauge is unset. */
double om_gauge_value(const om_gauge *g);

/* Marks the gauge's value as unknown: its series is left out of every
 * render until the next om_gauge_set (the child stays, and so does its
 * family's HELP and TYPE). The Prometheus habit for a value the process
 * cannot read now (a figure read from a database that is down): no sample,
 * rather than the last one looking current or a NaN. add, inc and dec
 * leave an unset gauge unset. A gauge is set from its creation (at 0).
 * Any thread; one atomic store. */
void om_gauge_unset(om_gauge *g);

/* ------------------------------------------------------------------ */
/* Histograms                                                          */
/* ------------------------------------------------------------------ */

typedef struct om_histogram om_histogram;

/* Registers an unlabelled histogram (buckets as in om_family_opts; NULL
 * means OM_DEFAULT_BUCKETS) and returns its only child. Any thread. */
om_histogram *om_histogram_new(om_registry *reg, const char *name,
                               const char *help, const double *buckets,
                               size_t bucket_count, om_error *err);
om_histogram *om_family_histogram(om_family *fam, const char *const *values);

/* Records one observation: the first bucket whose bound is >= v gets it
 * (NaN goes to +Inf, -Inf to the first), and v is added to the sum unless
 * it is NaN or infinite (then _sum would stay NaN or infinite for the life
 * of the process; OpenMetrics forbids a NaN sum). Any thread; no lock, no
 * allocation. (Inline, below.) */
static inline void om_histogram_observe(om_histogram *h, double v);

/* A consistent snapshot: cumulative[i] for each bound, then +Inf, so the
 * array needs bucket_count + 1 entries (pass n to check). *count equals the
 * +Inf bucket by construction. Returns OM_EINVAL when n is too small. The
 * sum may miss observations that are in flight during the call. Any thread.*/
int om_histogram_snapshot(const om_histogram *h, uint64_t *cumulative, size_t n,
                          uint64_t *count, double *sum);

/* ------------------------------------------------------------------ */
/* Collectors: values produced at scrape time                          */
/* ------------------------------------------------------------------ */

typedef struct om_collect om_collect;

/* Called during every render, with the registry's render lock held: it must
 * not call om_registry_render() or register families, and should be quick
 * (read a cached sample, not a device). It reports each series with
 * om_collect_value(). */
typedef void (*om_collect_fn)(om_collect *out, void *user);

/* Registers a counter or gauge family whose series come from fn at each
 * scrape (for values the process does not update itself: /proc, a GPU
 * sampler's last sample). opts as in om_family_new; max_series caps the
 * series fn may report per scrape. Returns an om_status. Any thread. */
int om_collector_new(om_registry *reg, om_type type, const om_family_opts *opts,
                     om_collect_fn fn, void *user, om_error *err);

/* Unregisters the collector family NAME that was registered with this user
 * pointer, so that a caller which fails half-way through its own start-up
 * (or is stopped) can take back every collector it added before it frees
 * what user points to. Waits for a render in progress: once it returns, fn
 * is not running and will not be called again. Only collectors can be
 * removed (no handle points into them); families made with om_family_new
 * stay until om_registry_free(). Returns OM_EINVAL when no collector of
 * that name with that user pointer is registered. Any thread, but not from
 * inside a collector callback. */
int om_collector_remove(om_registry *reg, const char *name, const void *user);

/* Reports one series from inside a collector callback. values as in
 * om_family_counter (cut to OM_MAX_LABEL_VALUE bytes, bad UTF-8 replaced).
 * A label set may be reported once per scrape: when two reports are the
 * same series on the wire (the same values, or values that only differ past
 * the cut), the first is kept and each later one is dropped, counted in the
 * duplicates counter {family="<name>"} and answered OM_EEXISTS; it does not
 * count against max_series. Returns OM_EINVAL for a counter value that is
 * negative or NaN, OM_EOVERFLOW past max_series distinct series (the series
 * is dropped and counted). Only from the callback's thread, during the
 * callback. */
int om_collect_value(om_collect *out, const char *const *values, double v);

/* A number that grows by one per render, so a collector behind several
 * families can read its source once per scrape. */
uint64_t om_collect_generation(const om_collect *out);

/* Registers the standard process metrics, read from /proc/self at each
 * scrape: process_cpu_seconds_total, process_resident_memory_bytes,
 * process_virtual_memory_bytes, process_open_fds, process_max_fds,
 * process_start_time_seconds. Returns an om_status. Any thread. */
int om_process_collector_register(om_registry *reg, om_error *err);

/* Registers a gauge NAME (e.g. "orfeas_build_info") with the given labels,
 * set to 1: the usual way to expose version and build details. Returns an
 * om_status. Any thread. */
int om_build_info_register(om_registry *reg, const char *name, const char *help,
                           const char *const *label_names,
                           const char *const *label_values, size_t n,
                           om_error *err);

/* ------------------------------------------------------------------ */
/* Exposition                                                          */
/* ------------------------------------------------------------------ */

typedef enum om_format {
  OM_FORMAT_TEXT,       /* Prometheus text format 0.0.4 */
  OM_FORMAT_OPENMETRICS /* OpenMetrics 1.0.0 text */
} om_format;

/* A growable output buffer. Start from {0}; the caller owns it, reuses it
 * across scrapes (no allocation once it is large enough) and frees it with
 * om_buf_free(). data is NUL-terminated after a successful render. */
typedef struct om_buf {
  char *data;
  size_t len;
  size_t cap;
} om_buf;

void om_buf_free(om_buf *buf);

/* Renders every family into buf (replacing its contents). Families come in
 * byte order of their names; series in the order they were created; values
 * are written so they parse back to the same double; HELP text and label
 * values are escaped (backslash, double quote, newline). OpenMetrics output
 * ends with "# EOF", names counter families without _total, adds # UNIT
 * where a unit was given, writes integral histogram bounds as "1.0", and
 * leaves out _sum and _count of a histogram with a negative bound.
 * Returns OM_ENOMEM if buf cannot grow (buf keeps its old memory).
 * Any thread; renders are serialized by a registry lock, and updates go on
 * while a render runs. */
int om_registry_render(om_registry *reg, om_format fmt, om_buf *buf);

/* The HTTP Content-Type of a format. */
const char *om_format_content_type(om_format fmt);

/* Picks the format for an HTTP Accept header (NULL allowed): OpenMetrics
 * when it names application/openmetrics-text with a q above 0 and at least
 * as high as that of any text/plain or wildcard, else text 0.0.4. The q
 * values are read the same whatever the process's locale. */
om_format om_format_negotiate(const char *accept);

/* ------------------------------------------------------------------ */
/* Inline fast paths. Below this line: internals the inline functions   */
/* need. Not part of the API; do not use the om__ names directly.       */
/* ------------------------------------------------------------------ */

/* Threads that get an exclusive shard; the rest share shard 0. */
#define OM_SHARDS 16

/* Byte offset of this thread's exclusive counter slot from shard 0's slot;
 * 0 until the thread claims a shard, negative when it uses the shared one. */
extern _Thread_local intptr_t om__tls_counter_off;

struct om__counter_hot {
  _Atomic uint64_t *slots; /* shard 0's integer slot */
};

void om__counter_add_slow(om_counter *c, uint64_t n);

/* Adds n. Any thread; no lock, no allocation. The owner of an exclusive
 * shard is its only writer, so a relaxed load and store (no lock prefix)
 * is enough; the scrape reads the same slot with a relaxed load. */
static inline void om_counter_add_u64(om_counter *c, uint64_t n) {
  intptr_t off = om__tls_counter_off;
  if (__builtin_expect(off > 0, 1)) {
    _Atomic uint64_t *p =
        (_Atomic uint64_t *)((char *)((struct om__counter_hot *)c)->slots +
                             off);
    atomic_store_explicit(p, atomic_load_explicit(p, memory_order_relaxed) + n,
                          memory_order_relaxed);
  } else {
    om__counter_add_slow(c, n);
  }
}

/* Adds 1. Any thread; no lock, no allocation. */
static inline void om_counter_inc(om_counter *c) { om_counter_add_u64(c, 1); }

/* This thread's shard: 0 unclaimed, -1 shared, 1..OM_SHARDS exclusive. */
extern _Thread_local int om__tls_shard;
int om__shard_claim(void);

struct om__histogram_hot {
  /* OM_SHARDS + 1 rows; row word 2k counts bucket k (+Inf is k = nb), word
   * 2k + 1 holds the sum of its observations as double bits. A sum per
   * bucket, not one per row, so back-to-back observations rarely wait on
   * the previous one's add (they usually land in different buckets). */
  _Atomic uint64_t *rows;
  size_t row_words;     /* words per row (whole cache lines) */
  const double *bounds; /* nb bounds, padded to OM__HIST_PAD with +Inf */
  size_t nb;
  size_t npad; /* nb rounded up to a multiple of 4 (<= OM__HIST_PAD) */
};

#define OM__HIST_PAD 32

size_t om__bucket_search(const double *b, size_t nb, double v);
void om__histogram_observe_shared(om_histogram *h, size_t i, double v);

/* Index of the first bound >= v (nb when none, NaN included). Bucket lists
 * of up to OM__HIST_PAD bounds (the common case: 32 covers hand-made lists
 * like orfeasd's 17-18 bound ones, where 16 sent them to the binary
 * search's unpredictable branches) are padded with +Inf, so
 * this is a fixed-length, branch-free loop: a mispredicted branch per bound
 * would cost more than all the comparisons. With SSE2, cmpnle ("not
 * v <= b", true for NaN) checks two bounds per instruction and subtracting
 * the all-ones masks counts them. */
static inline size_t om__bucket_of(const double *b, size_t nb, size_t npad,
                                   double v) {
  if (__builtin_expect(nb > OM__HIST_PAD, 0))
    return om__bucket_search(b, nb, v);
  size_t i = 0;
#ifdef __SSE2__
  /* Four bounds per step, in two independent accumulators; the steps are
   * unrolled (a switch that falls through) so there is no loop to run. */
  __m128d vv = _mm_set1_pd(v);
  __m128i a0 = _mm_setzero_si128(), a1 = _mm_setzero_si128();
#define OM__STEP(k)                                                            \
  a0 = _mm_sub_epi64(                                                          \
      a0, _mm_castpd_si128(_mm_cmpnle_pd(vv, _mm_loadu_pd(b + (k)))));         \
  a1 = _mm_sub_epi64(                                                          \
      a1, _mm_castpd_si128(_mm_cmpnle_pd(vv, _mm_loadu_pd(b + (k) + 2))))
  switch (npad) {
  case 32:
    OM__STEP(28); /* fall through */
  case 28:
    OM__STEP(24); /* fall through */
  case 24:
    OM__STEP(20); /* fall through */
  case 20:
    OM__STEP(16); /* fall through */
  case 16:
    OM__STEP(12); /* fall through */
  case 12:
    OM__STEP(8); /* fall through */
  case 8:
    OM__STEP(4); /* fall through */
  case 4:
    OM__STEP(0); /* fall through */
  default:
    break;
  }
#undef OM__STEP
  a0 = _mm_add_epi64(a0, a1);
  i = (size_t)(_mm_cvtsi128_si64(a0) +
               _mm_cvtsi128_si64(_mm_unpackhi_epi64(a0, a0)));
#else
  for (size_t k = 0; k < npad; k++)
    i += !(v <= b[k]);
#endif
  return i < nb ? i : nb; /* only NaN passes the +Inf padding */
}

/* The owner of an exclusive shard is the only writer of its row: plain
 * loads and stores. Other threads go through atomics on the shared row. */
static inline void om_histogram_observe(om_histogram *h, double v) {
  const struct om__histogram_hot *hh = (const struct om__histogram_hot *)h;
  size_t i = om__bucket_of(hh->bounds, hh->nb, hh->npad, v);
  /* NaN and +-Inf are counted but not summed: one would poison _sum for
   * good. A compare and a select, no branch ("not |v| <= max" is true for
   * NaN too). */
  if (!(__builtin_fabs(v) <= 1.7976931348623157e308))
    v = 0;
  int s = om__tls_shard;
  if (__builtin_expect(s == 0, 0))
    s = om__shard_claim();
  if (__builtin_expect(s > 0, 1)) {
    _Atomic uint64_t *cell = hh->rows + (size_t)s * hh->row_words + 2 * i;
    atomic_store_explicit(
        &cell[0], atomic_load_explicit(&cell[0], memory_order_relaxed) + 1,
        memory_order_relaxed);
    union {
      uint64_t u;
      double d;
    } sum;
    sum.u = atomic_load_explicit(&cell[1], memory_order_relaxed);
    sum.d += v;
    atomic_store_explicit(&cell[1], sum.u, memory_order_relaxed);
  } else {
    om__histogram_observe_shared(h, i, v);
  }
}

#endif /* ORFEAS_METRICS_H */
