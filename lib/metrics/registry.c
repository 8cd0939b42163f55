/* registry.c: the registry, family registration and the counter slot
 * allocator. Registration is start-up work, so it may lock and allocate
 * freely; what it prepares (pre-rendered names, bound texts) is what keeps
 * updates and scrapes cheap. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const double OM_DEFAULT_BUCKETS[11] = {.005, .01, .025, .05, .1, .25,
                                       .5,   1,   2.5,  5,   10};

#define OM_MAX_BUCKETS 1024

om_registry *om_registry_new(const om_registry_opts *opts) {
  om_registry *reg = calloc(1, sizeof *reg);
  if (reg == NULL)
    return NULL;
  reg->c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
  if (reg->c_locale == (locale_t)0 || pthread_mutex_init(&reg->mu, NULL) ||
      pthread_mutex_init(&reg->slot_mu, NULL)) {
    if (reg->c_locale != (locale_t)0)
      freelocale(reg->c_locale);
    free(reg);
    return NULL;
  }
  const char *name = opts && opts->overflow_name
                         ? opts->overflow_name
                         : "metrics_series_overflow_total";
  om_family_opts fo = {
      .name = name,
      .help = "Label sets refused because their family reached its series "
              "limit, by family.",
      .label_names = OM_LABELS("family"),
      .label_count = 1,
      .max_series = 100000};
  reg->overflow_fam = om_family_new(reg, OM_COUNTER, &fo, NULL);
  om_family_opts fd = {
      .name = opts && opts->duplicate_name
                  ? opts->duplicate_name
                  : "metrics_collector_duplicates_total",
      .help = "Series a collector reported again in the same scrape, by "
              "family: the first report is kept, the others are dropped.",
      .label_names = OM_LABELS("family"),
      .label_count = 1,
      .max_series = 100000};
  if (reg->overflow_fam != NULL)
    reg->dup_fam = om_family_new(reg, OM_COUNTER, &fd, NULL);
  if (reg->overflow_fam == NULL || reg->dup_fam == NULL) {
    om_registry_free(reg);
    return NULL;
  }
  return reg;
}

void om_registry_free(om_registry *reg) {
  if (reg == NULL)
    return;
  for (size_t i = 0; i < reg->nfams; i++)
    om__family_free(reg->fams[i]);
  free(reg->fams);
  for (size_t i = 0; i < reg->nchunks; i++)
    free(reg->chunks[i]);
  free(reg->chunks);
  free(reg->seen);
  pthread_mutex_destroy(&reg->mu);
  pthread_mutex_destroy(&reg->slot_mu);
  freelocale(reg->c_locale);
  free(reg);
}

/* Hands out shard 0's integer slot of a fresh counter. Slots are never
 * reused, and chunks never move, so a handle's pointer stays valid. */
_Atomic uint64_t *om__slot_alloc(om_registry *reg) {
  _Atomic uint64_t *slot = NULL;
  pthread_mutex_lock(&reg->slot_mu);
  size_t chunk = reg->next_slot / OM_CHUNK, idx = reg->next_slot % OM_CHUNK;
  if (chunk == reg->nchunks) {
    if (reg->nchunks == reg->chunks_cap) {
      size_t cap = reg->chunks_cap ? 2 * reg->chunks_cap : 8;
      char **p = realloc(reg->chunks, cap * sizeof *p);
      if (p == NULL)
        goto out;
      reg->chunks = p;
      reg->chunks_cap = cap;
    }
    char *mem = aligned_alloc(64, (size_t)OM_CHUNK_BYTES);
    if (mem == NULL)
      goto out;
    memset(mem, 0, (size_t)OM_CHUNK_BYTES);
    reg->chunks[reg->nchunks++] = mem;
  }
  slot = (_Atomic uint64_t *)(reg->chunks[chunk] + idx * sizeof(uint64_t));
  reg->next_slot++;
out:
  pthread_mutex_unlock(&reg->slot_mu);
  return slot;
}

static char *dup_str(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = malloc(n);
  if (p != NULL)
    memcpy(p, s, n);
  return p;
}

static bool ends_with(const char *s, size_t n, const char *suffix) {
  size_t k = strlen(suffix);
  return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

/* Checks opts; returns an om_status and fills err. */
static int check_opts(om_type type, const om_family_opts *o, om_error *err) {
  if (o == NULL || o->name == NULL)
    return om__fail(err, OM_EINVAL, "a metric needs a name");
  if (!om__valid_metric_name(o->name))
    return om__fail(err, OM_EBADNAME,
                    "metric name \"%.80s\" is invalid: use letters, digits, "
                    "'_' and ':', not starting with a digit",
                    o->name);
  if (o->help == NULL)
    return om__fail(err, OM_EINVAL, "metric %.80s needs a help text", o->name);
  if (!om__valid_utf8(o->help))
    return om__fail(err, OM_EINVAL,
                    "metric %.80s: its help text is not valid UTF-8 (a "
                    "scrape that carried it would be refused whole)",
                    o->name);
  if (o->label_count > OM_MAX_LABELS)
    return om__fail(err, OM_EBADLABEL, "metric %.80s has %zu labels (max %d)",
                    o->name, o->label_count, OM_MAX_LABELS);
  if (o->label_count > 0 && o->label_names == NULL)
    return om__fail(err, OM_EINVAL, "metric %.80s: label_names is NULL",
                    o->name);
  for (size_t i = 0; i < o->label_count; i++) {
    const char *l = o->label_names[i];
    if (!om__valid_label_name(l) || strncmp(l, "__", 2) == 0)
      return om__fail(err, OM_EBADLABEL,
                      "metric %.80s: label name \"%.60s\" is invalid: use "
                      "letters, digits and '_', not starting with a digit "
                      "or \"__\"",
                      o->name, l ? l : "(null)");
    if (type == OM_HISTOGRAM && strcmp(l, "le") == 0)
      return om__fail(err, OM_EBADLABEL,
                      "histogram %.80s may not have a label named \"le\"",
                      o->name);
    for (size_t j = 0; j < i; j++)
      if (strcmp(l, o->label_names[j]) == 0)
        return om__fail(err, OM_EBADLABEL,
                        "metric %.80s: label \"%.60s\" appears twice", o->name,
                        l);
  }
  if (o->unit != NULL) {
    size_t n = strlen(o->name), u = strlen(o->unit);
    if (type == OM_COUNTER && ends_with(o->name, n, "_total"))
      n -= 6;
    bool ok = u > 0;
    for (size_t i = 0; i < u; i++)
      ok = ok && (om__valid_label_name(o->unit + i) || o->unit[i] == '_' ||
                  (o->unit[i] >= '0' && o->unit[i] <= '9'));
    if (!ok || n < u + 1 || memcmp(o->name + n - u, o->unit, u) != 0 ||
        o->name[n - u - 1] != '_')
      return om__fail(err, OM_EUNIT,
                      "metric %.80s: unit \"%.40s\" must be letters, digits "
                      "or '_' and end the name (before _total) as \"_%.40s\"",
                      o->name, o->unit, o->unit);
  }
  if (type == OM_HISTOGRAM && o->buckets != NULL) {
    if (o->bucket_count > OM_MAX_BUCKETS)
      return om__fail(err, OM_EBUCKETS, "histogram %.80s: %zu buckets (max %d)",
                      o->name, o->bucket_count, OM_MAX_BUCKETS);
    for (size_t i = 0; i < o->bucket_count; i++)
      if (!isfinite(o->buckets[i]) ||
          (i > 0 && !(o->buckets[i] > o->buckets[i - 1])))
        return om__fail(err, OM_EBUCKETS,
                        "histogram %.80s: bucket bounds must be finite and "
                        "strictly increasing (bound %zu is not)",
                        o->name, i);
  }
  return OM_OK;
}

static int setup_buckets(om_family *f, const om_family_opts *o) {
  const double *b = o->buckets ? o->buckets : OM_DEFAULT_BUCKETS;
  size_t nb = o->buckets ? o->bucket_count : 11;
  f->nb = nb;
  f->bounds = calloc(nb > OM_HIST_PAD ? nb : OM_HIST_PAD, sizeof *f->bounds);
  f->le_text = calloc(nb + 1, sizeof *f->le_text);
  f->le_om = calloc(nb + 1, sizeof *f->le_om);
  f->le_text_len = calloc(nb + 1, sizeof *f->le_text_len);
  f->le_om_len = calloc(nb + 1, sizeof *f->le_om_len);
  if (!f->bounds || !f->le_text || !f->le_om || !f->le_text_len ||
      !f->le_om_len)
    return OM_ENOMEM;
  for (size_t i = 0; i <= nb; i++) {
    /* The whole label, le="...", so a scrape copies it in one go. */
    char t[48] = "le=\"", m[48] = "le=\"";
    size_t tn = 4, mn = 4;
    if (i < nb) {
      f->bounds[i] = b[i];
      tn += om__fmt_bound(t + 4, b[i], false);
      mn += om__fmt_bound(m + 4, b[i], true);
    } else {
      memcpy(t + 4, "+Inf", 4);
      memcpy(m + 4, "+Inf", 4);
      tn = mn = 8;
    }
    t[tn++] = m[mn++] = '"';
    t[tn] = m[mn] = '\0';
    f->le_text_len[i] = tn;
    f->le_om_len[i] = mn;
    if (i == nb) /* pad short lists for the branch-free bucket search */
      for (size_t k = nb; k < OM_HIST_PAD; k++)
        f->bounds[k] = INFINITY;
    f->le_text[i] = dup_str(t);
    f->le_om[i] = dup_str(m);
    if (!f->le_text[i] || !f->le_om[i])
      return OM_ENOMEM;
  }
  return OM_OK;
}

/* Builds a family from checked opts (not yet in the registry). */
static om_family *family_build(om_registry *reg, om_type type,
                               const om_family_opts *o) {
  om_family *f = calloc(1, sizeof *f);
  if (f == NULL)
    return NULL;
  f->reg = reg;
  f->type = type;
  f->max_series = o->max_series ? o->max_series : OM_DEFAULT_MAX_SERIES;
  f->seed = om__new_seed(f);
  pthread_mutex_init(&f->mu, NULL);
  f->name = dup_str(o->name);
  f->help = dup_str(o->help);
  f->unit = o->unit ? dup_str(o->unit) : NULL;
  if (!f->name || !f->help || (o->unit && !f->unit))
    goto fail;
  f->name_len = strlen(f->name);
  /* OpenMetrics names the counter family without its _total suffix; the
   * sample keeps it. */
  f->om_name_len = f->name_len;
  if (type == OM_COUNTER && ends_with(f->name, f->name_len, "_total"))
    f->om_name_len -= 6;
  f->om_name = malloc(f->om_name_len + 1);
  if (f->om_name == NULL)
    goto fail;
  memcpy(f->om_name, f->name, f->om_name_len);
  f->om_name[f->om_name_len] = '\0';
  f->nlabels = o->label_count;
  if (f->nlabels) {
    f->label_names = calloc(f->nlabels, sizeof *f->label_names);
    if (f->label_names == NULL)
      goto fail;
    for (size_t i = 0; i < f->nlabels; i++)
      if ((f->label_names[i] = dup_str(o->label_names[i])) == NULL)
        goto fail;
  }
  if (type == OM_HISTOGRAM && setup_buckets(f, o) != OM_OK)
    goto fail;
  return f;
fail:
  om__family_free(f);
  return NULL;
}

/* The names a family claims on the wire, each a base and a suffix: its
 * family names and sample names in both formats, and the suffixes its type
 * reserves (OpenMetrics' _created, unwritten here but meaningful to a
 * parser). Prometheus's text parser files a foo_count line under a
 * histogram foo whatever its # TYPE line says, so two families that claim
 * one name would give it two meanings. Returns the count (at most 8). */
typedef struct {
  const char *base;
  size_t len;
  const char *suffix;
} om_claim;

static size_t family_claims(const om_family *f, om_claim *out) {
  size_t n = 0;
  out[n++] = (om_claim){f->name, f->name_len, ""};
  if (f->om_name_len != f->name_len)
    out[n++] = (om_claim){f->om_name, f->om_name_len, ""};
  switch (f->type) {
  case OM_COUNTER:
    out[n++] = (om_claim){f->om_name, f->om_name_len, "_total"};
    out[n++] = (om_claim){f->om_name, f->om_name_len, "_created"};
    break;
  case OM_HISTOGRAM:
    out[n++] = (om_claim){f->name, f->name_len, "_bucket"};
    out[n++] = (om_claim){f->name, f->name_len, "_sum"};
    out[n++] = (om_claim){f->name, f->name_len, "_count"};
    out[n++] = (om_claim){f->name, f->name_len, "_created"};
    break;
  case OM_GAUGE:
    break;
  }
  return n;
}

static bool claims_equal(const om_claim *a, const om_claim *b) {
  size_t as = strlen(a->suffix), bs = strlen(b->suffix);
  if (a->len + as != b->len + bs)
    return false;
  /* Compare base+suffix against base+suffix without joining them. */
  const om_claim *s = a->len <= b->len ? a : b, *l = s == a ? b : a;
  return memcmp(s->base, l->base, s->len) == 0 &&
         memcmp(s->suffix, l->base + s->len, l->len - s->len) == 0 &&
         strcmp(s->suffix + (l->len - s->len), l->suffix) == 0;
}

/* Whether f and g claim a common name; fills *what with it. Every name a
 * family claims starts with its OpenMetrics name, so families whose
 * OpenMetrics names are not prefixes of one another cannot clash: that
 * comparison alone settles all but a few pairs. */
static bool families_clash(const om_family *f, const om_family *g,
                           om_claim *what) {
  size_t k = f->om_name_len < g->om_name_len ? f->om_name_len : g->om_name_len;
  if (memcmp(f->om_name, g->om_name, k) != 0)
    return false;
  om_claim fc[8], gc[8];
  size_t fn = family_claims(f, fc), gn = family_claims(g, gc);
  for (size_t i = 0; i < fn; i++)
    for (size_t j = 0; j < gn; j++)
      if (claims_equal(&fc[i], &gc[j])) {
        *what = fc[i];
        return true;
      }
  return false;
}

static const char *type_word(om_type t) {
  return t == OM_COUNTER ? "counter" : t == OM_GAUGE ? "gauge" : "histogram";
}

/* Inserts f into the sorted families array; reg->mu held. */
static int family_insert(om_registry *reg, om_family *f, om_error *err) {
  size_t pos = 0;
  for (; pos < reg->nfams; pos++) {
    om_family *g = reg->fams[pos];
    om_claim what;
    if (strcmp(g->name, f->name) == 0 || strcmp(g->om_name, f->om_name) == 0)
      return om__fail(err, OM_EEXISTS,
                      "metric %.80s is already registered (as %.80s)", f->name,
                      g->name);
    if (families_clash(f, g, &what))
      return om__fail(err, OM_EEXISTS,
                      "metric %.60s (%s) clashes with the %s %.60s: both "
                      "would expose the name %.*s%s; rename one",
                      f->name, type_word(f->type), type_word(g->type), g->name,
                      (int)(what.len < 60 ? what.len : 60), what.base,
                      what.suffix);
  }
  for (pos = 0; pos < reg->nfams && strcmp(reg->fams[pos]->name, f->name) < 0;
       pos++)
    ;
  if (reg->nfams == reg->fams_cap) {
    size_t cap = reg->fams_cap ? 2 * reg->fams_cap : 16;
    om_family **p = realloc(reg->fams, cap * sizeof *p);
    if (p == NULL)
      return om__fail(err, OM_ENOMEM, "out of memory registering %.80s",
                      f->name);
    reg->fams = p;
    reg->fams_cap = cap;
  }
  memmove(reg->fams + pos + 1, reg->fams + pos,
          (reg->nfams - pos) * sizeof *reg->fams);
  reg->fams[pos] = f;
  reg->nfams++;
  if (f->collect != NULL)
    reg->ncollectors++;
  return OM_OK;
}

static om_family *family_register(om_registry *reg, om_type type,
                                  const om_family_opts *opts, om_collect_fn fn,
                                  void *user, om_error *err) {
  if (reg == NULL) {
    om__fail(err, OM_EINVAL, "registry is NULL");
    return NULL;
  }
  if (type != OM_COUNTER && type != OM_GAUGE && type != OM_HISTOGRAM) {
    om__fail(err, OM_ETYPE, "unknown metric type %d", (int)type);
    return NULL;
  }
  if (check_opts(type, opts, err) != OM_OK)
    return NULL;
  locale_t old = uselocale(reg->c_locale); /* bucket texts */
  om_family *f = family_build(reg, type, opts);
  uselocale(old);
  if (f == NULL) {
    om__fail(err, OM_ENOMEM, "out of memory registering %.80s", opts->name);
    return NULL;
  }
  f->collect = fn;
  f->collect_user = user;
  /* The unlabelled child exists from the start (a series at 0), and a
   * labelled family gets its sink; both before anyone can see the family. */
  if (fn == NULL) {
    om_child *c = om__child_new(f, NULL, NULL, 0);
    if (c != NULL && f->nlabels == 0 && om__family_add(f, c) != OM_OK) {
      om__child_free(f, c);
      c = NULL;
    }
    if (c == NULL) {
      om__family_free(f);
      om__fail(err, OM_ENOMEM, "out of memory registering %.80s", opts->name);
      return NULL;
    }
    if (f->nlabels > 0)
      f->sink = c;
  }
  pthread_mutex_lock(&reg->mu);
  int rc = family_insert(reg, f, err);
  pthread_mutex_unlock(&reg->mu);
  if (rc != OM_OK) {
    om__family_free(f);
    return NULL;
  }
  return f;
}

om_family *om_family_new(om_registry *reg, om_type type,
                         const om_family_opts *opts, om_error *err) {
  return family_register(reg, type, opts, NULL, NULL, err);
}

int om_collector_new(om_registry *reg, om_type type, const om_family_opts *opts,
                     om_collect_fn fn, void *user, om_error *err) {
  if (fn == NULL)
    return om__fail(err, OM_EINVAL, "collector callback is NULL");
  if (type == OM_HISTOGRAM)
    return om__fail(err, OM_ETYPE,
                    "collector %.80s: only counters and gauges can be "
                    "collected",
                    opts && opts->name ? opts->name : "(null)");
  om_family *f = family_register(reg, type, opts, fn, user, err);
  return f ? OM_OK : (err ? err->code : OM_EINVAL);
}

int om_collector_remove(om_registry *reg, const char *name, const void *user) {
  if (reg == NULL || name == NULL)
    return OM_EINVAL;
  om_family *gone = NULL;
  /* reg->mu is the render lock too: once we hold it no collector runs, and
   * after we drop it no render can find the family. */
  pthread_mutex_lock(&reg->mu);
  for (size_t i = 0; i < reg->nfams; i++) {
    om_family *f = reg->fams[i];
    if (f->collect != NULL && f->collect_user == user &&
        strcmp(f->name, name) == 0) {
      gone = f;
      memmove(reg->fams + i, reg->fams + i + 1,
              (reg->nfams - i - 1) * sizeof *reg->fams);
      reg->nfams--;
      reg->ncollectors--;
      break;
    }
  }
  pthread_mutex_unlock(&reg->mu);
  if (gone == NULL)
    return OM_EINVAL;
  om__family_free(gone);
  return OM_OK;
}

om_type om_family_type(const om_family *fam) { return fam->type; }
size_t om_family_label_count(const om_family *fam) { return fam->nlabels; }
size_t om_family_series(const om_family *fam) {
  return atomic_load_explicit(&fam->n, memory_order_acquire);
}

static om_child *single_child(om_registry *reg, om_type type,
                              const om_family_opts *o, om_error *err) {
  om_family *f = om_family_new(reg, type, o, err);
  return f ? om__family_child(f, NULL) : NULL;
}

om_counter *om_counter_new(om_registry *reg, const char *name, const char *help,
                           om_error *err) {
  om_family_opts o = {.name = name, .help = help};
  om_child *c = single_child(reg, OM_COUNTER, &o, err);
  return c ? &c->m.c : NULL;
}

om_gauge *om_gauge_new(om_registry *reg, const char *name, const char *help,
                       om_error *err) {
  om_family_opts o = {.name = name, .help = help};
  om_child *c = single_child(reg, OM_GAUGE, &o, err);
  return c ? &c->m.g : NULL;
}

om_histogram *om_histogram_new(om_registry *reg, const char *name,
                               const char *help, const double *buckets,
                               size_t bucket_count, om_error *err) {
  om_family_opts o = {.name = name,
                      .help = help,
                      .buckets = buckets,
                      .bucket_count = bucket_count};
  om_child *c = single_child(reg, OM_HISTOGRAM, &o, err);
  return c ? &c->m.h : NULL;
}

int om_build_info_register(om_registry *reg, const char *name, const char *help,
                           const char *const *label_names,
                           const char *const *label_values, size_t n,
                           om_error *err) {
  om_family_opts o = {.name = name,
                      .help = help,
                      .label_names = label_names,
                      .label_count = n,
                      .max_series = 1};
  om_family *f = om_family_new(reg, OM_GAUGE, &o, err);
  if (f == NULL)
    return err ? err->code : OM_EINVAL;
  om_gauge *g = om_family_gauge(f, n ? label_values : NULL);
  if (g == NULL)
    return om__fail(err, OM_EINVAL, "%.80s: label values missing", name);
  om_gauge_set(g, 1);
  return OM_OK;
}
