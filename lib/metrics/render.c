/* render.c: the registry as Prometheus text 0.0.4 or OpenMetrics 1.0.0.
 *
 * One pass over the families (sorted at registration) and their children
 * (creation order), straight into the caller's buffer. Names, label sets and
 * bucket bounds were turned into text when they were created, so a series
 * line is a few memcpys and an integer conversion; the buffer is reserved
 * once per line.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

static const char *type_name(om_type t) {
  return t == OM_COUNTER ? "counter" : t == OM_GAUGE ? "gauge" : "histogram";
}

/* Sample name for a family in a format: OpenMetrics counters are
 * <family>_total, all else is the registered name (plus suffixes). */
static void sample_name(const om_family *f, om_format fmt, const char **name,
                        size_t *len, const char **suffix) {
  if (fmt == OM_FORMAT_OPENMETRICS && f->type == OM_COUNTER) {
    *name = f->om_name;
    *len = f->om_name_len;
    *suffix = "_total";
  } else {
    *name = f->name;
    *len = f->name_len;
    *suffix = "";
  }
}

void om__render_sample_line(om_out *o, const char *name, size_t name_len,
                            const char *suffix, size_t sl, const char *labels,
                            size_t labels_len, const char *extra,
                            size_t extra_len, const char *value,
                            size_t value_len) {
  if (!om__reserve(o, name_len + sl + labels_len + extra_len + value_len + 6))
    return;
  om__put_raw(o, name, name_len);
  om__put_raw(o, suffix, sl);
  if (labels_len || extra_len) {
    om__put_raw(o, "{", 1);
    om__put_raw(o, labels, labels_len);
    if (labels_len && extra_len)
      om__put_raw(o, ",", 1);
    om__put_raw(o, extra, extra_len);
    om__put_raw(o, "}", 1);
  }
  om__put_raw(o, " ", 1);
  om__put_raw(o, value, value_len);
  om__put_raw(o, "\n", 1);
}

static void render_meta(om_out *o, const om_family *f, om_format fmt) {
  bool om = fmt == OM_FORMAT_OPENMETRICS;
  const char *name = om ? f->om_name : f->name;
  size_t len = om ? f->om_name_len : f->name_len;
  om__put(o, "# HELP ", 7);
  om__put(o, name, len);
  om__putc(o, ' ');
  /* 0.0.4 escapes only backslash and newline in HELP; OpenMetrics also
   * escapes double quotes. */
  om__put_escaped(o, f->help, strlen(f->help), om);
  om__put(o, "\n# TYPE ", 8);
  om__put(o, name, len);
  om__putc(o, ' ');
  const char *t = type_name(f->type);
  om__put(o, t, strlen(t));
  om__putc(o, '\n');
  if (om && f->unit) {
    om__put(o, "# UNIT ", 7);
    om__put(o, name, len);
    om__putc(o, ' ');
    om__put(o, f->unit, strlen(f->unit));
    om__putc(o, '\n');
  }
}

static void render_histogram(om_out *o, const om_family *f, om_format fmt,
                             const om_child *c) {
  uint64_t cum[1025];
  double sum;
  char v[40];
  om__histogram_read(&c->m.h, cum, &sum);
  bool om = fmt == OM_FORMAT_OPENMETRICS;
  char **les = om ? f->le_om : f->le_text;
  size_t *lens = om ? f->le_om_len : f->le_text_len;
  for (size_t k = 0; k <= f->nb; k++) {
    size_t vn = om__fmt_u64(v, cum[k]);
    om__render_sample_line(o, f->name, f->name_len, "_bucket", 7, c->labels,
                           c->labels_len, les[k], lens[k], v, vn);
  }
  /* OpenMetrics: with a negative bound the sum is no longer a counter and
   * MUST NOT be exposed, and _count goes with it ("if and only if"). */
  if (om && f->nb > 0 && f->bounds[0] < 0)
    return;
  size_t vn = om__fmt_double(v, sum);
  om__render_sample_line(o, f->name, f->name_len, "_sum", 4, c->labels,
                         c->labels_len, "", 0, v, vn);
  vn = om__fmt_u64(v, cum[f->nb]);
  om__render_sample_line(o, f->name, f->name_len, "_count", 6, c->labels,
                         c->labels_len, "", 0, v, vn);
}

static void render_family(om_out *o, om_registry *reg, om_family *f,
                          om_format fmt) {
  render_meta(o, f, fmt);
  if (f->collect) {
    reg->seen_stamp++; /* forget the previous collector's series */
    om_collect ctx = {o, f, fmt, 0, reg->generation};
    f->collect(&ctx, f->collect_user);
    return;
  }
  const char *name, *suffix;
  size_t len;
  sample_name(f, fmt, &name, &len, &suffix);
  size_t slen = strlen(suffix);
  /* Count first, then the list: the list published with it is at least as
   * new (see om__family_add). */
  size_t n = atomic_load_explicit(&f->n, memory_order_acquire);
  om_child **list = atomic_load_explicit(&f->list, memory_order_acquire);
  char v[40];
  for (size_t i = 0; i < n; i++) {
    const om_child *c = list[i];
    size_t vn;
    switch (f->type) {
    case OM_COUNTER: {
      bool integral;
      uint64_t ints;
      double d = om__counter_total(&c->m.c, &ints, &integral);
      vn = integral ? om__fmt_u64(v, ints) : om__fmt_double(v, d);
      break;
    }
    case OM_GAUGE: {
      double d;
      if (!om__gauge_read(&c->m.g, &d))
        continue; /* unknown now: no sample (om_gauge_unset) */
      vn = om__fmt_double(v, d);
      break;
    }
    case OM_HISTOGRAM:
      render_histogram(o, f, fmt, c);
      continue;
    default:
      continue;
    }
    om__render_sample_line(o, name, len, suffix, slen, c->labels, c->labels_len,
                           "", 0, v, vn);
  }
}

int om_registry_render(om_registry *reg, om_format fmt, om_buf *buf) {
  if (reg == NULL || buf == NULL ||
      (fmt != OM_FORMAT_TEXT && fmt != OM_FORMAT_OPENMETRICS))
    return OM_EINVAL;
  om_out o = {buf, 0};
  buf->len = 0;
  pthread_mutex_lock(&reg->mu);
  /* Numbers and their parse-back check must not depend on the process's
   * locale (a decimal comma would corrupt the exposition). */
  locale_t old = uselocale(reg->c_locale);
  reg->generation++;
  for (size_t i = 0; i < reg->nfams; i++) {
    om_family *f = reg->fams[i];
    /* The duplicates counter of a registry with no collector could only
     * ever be an empty family (client_golang writes nothing for a vector
     * without children); with collectors it is announced like any other. */
    if (f == reg->dup_fam && reg->ncollectors == 0 &&
        atomic_load_explicit(&f->n, memory_order_acquire) == 0)
      continue;
    render_family(&o, reg, f, fmt);
  }
  if (fmt == OM_FORMAT_OPENMETRICS)
    om__put(&o, "# EOF\n", 6);
  uselocale(old);
  pthread_mutex_unlock(&reg->mu);
  if (o.err || !om__reserve(&o, 0)) {
    buf->len = 0;
    return OM_ENOMEM;
  }
  buf->data[buf->len] = '\0';
  return OM_OK;
}

/* ---- collectors ------------------------------------------------------ */

uint64_t om_collect_generation(const om_collect *out) {
  return out->generation;
}

/* Counts a dropped report in the registry's counter c (the overflow or the
 * duplicates one), through the family's cached child *slot. */
static void count_dropped(om_family *f, om_family *c, om_counter **slot) {
  pthread_mutex_lock(&f->mu);
  if (*slot == NULL)
    *slot = om_family_counter(c, OM_LABELS(f->name));
  pthread_mutex_unlock(&f->mu);
  if (*slot)
    om_counter_inc(*slot);
}

/* Finds the label text at buf[off, off + len) among the series the running
 * collector reported: returns its entry, or the empty entry where it would
 * go (stamp not current). Grows the table first so it stays at most half
 * full; NULL when that needs memory there is none of. */
static om_seen *seen_slot(om_registry *reg, const om_buf *buf, size_t count,
                          uint64_t h, size_t off, size_t len) {
  if ((count + 1) * 2 > (reg->seen ? reg->seen_mask + 1 : 0)) {
    size_t ncap = reg->seen ? 2 * (reg->seen_mask + 1) : 16;
    om_seen *nt = calloc(ncap, sizeof *nt);
    if (nt == NULL)
      return NULL;
    for (size_t i = 0; reg->seen && i <= reg->seen_mask; i++) {
      if (reg->seen[i].stamp != reg->seen_stamp)
        continue;
      size_t j = reg->seen[i].hash & (ncap - 1);
      while (nt[j].stamp == reg->seen_stamp)
        j = (j + 1) & (ncap - 1);
      nt[j] = reg->seen[i];
    }
    free(reg->seen);
    reg->seen = nt;
    reg->seen_mask = ncap - 1;
  }
  for (size_t i = h & reg->seen_mask;; i = (i + 1) & reg->seen_mask) {
    om_seen *e = &reg->seen[i];
    if (e->stamp != reg->seen_stamp)
      return e;
    if (e->hash == h && e->len == len &&
        memcmp(buf->data + e->off, buf->data + off, len) == 0)
      return e;
  }
}

int om_collect_value(om_collect *out, const char *const *values, double v) {
  om_family *f = out->fam;
  om_registry *reg = f->reg;
  if (f->type == OM_COUNTER && !(v >= 0))
    return OM_EINVAL;
  if (f->nlabels && values == NULL)
    return OM_EINVAL;
  /* Collected values are not interned, so canonicalize them here. */
  static _Thread_local char canon[OM_MAX_LABELS][3 * OM_MAX_LABEL_VALUE];
  const char *vals[OM_MAX_LABELS];
  size_t lens[OM_MAX_LABELS];
  for (size_t i = 0; i < f->nlabels; i++) {
    if (values[i] == NULL)
      return OM_EINVAL;
    lens[i] = om__canon_value(values[i], canon[i], sizeof canon[i]);
    vals[i] = canon[i];
  }
  const char *name, *suffix;
  size_t len;
  sample_name(f, out->fmt, &name, &len, &suffix);
  om_out *o = out->o;
  size_t line = o->buf->len;
  om__put(o, name, len);
  om__put(o, suffix, strlen(suffix));
  /* The label set as written is the series' identity on the wire: values
   * that differ only past the cut, or in bytes replaced by U+FFFD, write
   * the same text. So duplicates are found by that text, in place. */
  size_t key = o->buf->len;
  if (f->nlabels) {
    om__putc(o, '{');
    om__put_labels(o, f, vals, lens);
    om__putc(o, '}');
  }
  if (o->err)
    return o->err;
  size_t key_len = o->buf->len - key;
  uint64_t h = om__hash_text(f->seed, o->buf->data + key, key_len);
  om_seen *e = seen_slot(reg, o->buf, out->count, h, key, key_len);
  if (e == NULL) {
    o->err = OM_ENOMEM;
    return OM_ENOMEM;
  }
  if (e->stamp == reg->seen_stamp) { /* the first report of it stays */
    o->buf->len = line;
    count_dropped(f, reg->dup_fam, &f->duplicates);
    return OM_EEXISTS;
  }
  if (out->count >= f->max_series) {
    o->buf->len = line;
    count_dropped(f, reg->overflow_fam, &f->overflow);
    return OM_EOVERFLOW;
  }
  *e = (om_seen){h, reg->seen_stamp, key, key_len};
  out->count++;
  char v_txt[40];
  size_t vn = om__fmt_double(v_txt, v);
  om__putc(o, ' ');
  om__put(o, v_txt, vn);
  om__putc(o, '\n');
  return o->err ? o->err : OM_OK;
}
