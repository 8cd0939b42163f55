/* fmt.c: the byte-level writers of the exposition: buffer growth, integers,
 * doubles that parse back to the same bits, and escaping. No snprintf on the
 * integer path: most sample values are integers, and a scrape writes tens of
 * thousands of them. */
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void om_buf_free(om_buf *buf) {
  if (buf == NULL)
    return;
  free(buf->data);
  buf->data = NULL;
  buf->len = buf->cap = 0;
}

bool om__reserve(om_out *o, size_t n) {
  om_buf *b = o->buf;
  if (o->err)
    return false;
  if (b->len + n + 1 <= b->cap)
    return true;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap < b->len + n + 1)
    cap *= 2;
  char *p = realloc(b->data, cap);
  if (p == NULL) {
    o->err = OM_ENOMEM;
    return false;
  }
  b->data = p;
  b->cap = cap;
  return true;
}

void om__put(om_out *o, const char *s, size_t n) {
  if (!om__reserve(o, n))
    return;
  memcpy(o->buf->data + o->buf->len, s, n);
  o->buf->len += n;
}

static const char digits2[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536"
    "37383940414243444546474849505152535455565758596061626364656667686970717273"
    "7475767778798081828384858687888990919293949596979899";

size_t om__fmt_u64(char *dst, uint64_t v) {
  char tmp[24];
  size_t i = sizeof tmp;
  while (v >= 100) {
    unsigned d = (unsigned)(v % 100) * 2;
    v /= 100;
    tmp[--i] = digits2[d + 1];
    tmp[--i] = digits2[d];
  }
  if (v >= 10) {
    unsigned d = (unsigned)v * 2;
    tmp[--i] = digits2[d + 1];
    tmp[--i] = digits2[d];
  } else {
    tmp[--i] = (char)('0' + v);
  }
  size_t n = sizeof tmp - i;
  memcpy(dst, tmp + i, n);
  return n;
}

static const double pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,
                               1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                               1e12, 1e13, 1e14, 1e15, 1e16, 1e17};

/* Fixed-point form of a in [1e-4, 1e15) with the fewest fractional digits
 * k that give back a exactly, or 0 when k would need more than 2^53 as the
 * integer. Why the check is exact: m and 10^k are both exact doubles, so
 * m / 10^k is the correctly rounded quotient, which is what strtod makes of
 * the text "m * 10^-k". No strtod, no snprintf: a few divisions. */
static size_t fmt_fixed(char *dst, double a) {
  for (int k = 1; k < (int)(sizeof pow10 / sizeof pow10[0]); k++) {
    double s = a * pow10[k];
    if (s >= 9007199254740992.0)
      return 0;
    double m = floor(s + 0.5);
    if (m / pow10[k] != a)
      continue;
    char d[24];
    size_t len = om__fmt_u64(d, (uint64_t)m), n = 0;
    if (len <= (size_t)k) { /* 0.000ddd */
      dst[n++] = '0';
      dst[n++] = '.';
      for (size_t z = len; z < (size_t)k; z++)
        dst[n++] = '0';
      memcpy(dst + n, d, len);
      return n + len;
    }
    memcpy(dst, d, len - (size_t)k);
    n = len - (size_t)k;
    dst[n++] = '.';
    memcpy(dst + n, d + len - (size_t)k, (size_t)k);
    return n + (size_t)k;
  }
  return 0;
}

/* A double as text that strtod reads back to the same bits: an integer, or
 * the shortest fixed-point form (fmt_fixed), or else %.17g, which always
 * round-trips. Sample values only: bucket bounds use om__fmt_bound. The
 * caller runs in the C locale. */
size_t om__fmt_double(char *dst, double v) {
  if (isnan(v)) {
    memcpy(dst, "NaN", 3);
    return 3;
  }
  if (isinf(v)) {
    memcpy(dst, v > 0 ? "+Inf" : "-Inf", 4);
    return 4;
  }
  size_t n;
  if (v == trunc(v) && fabs(v) < 1e15) {
    n = 0;
    if (signbit(v))
      dst[n++] = '-';
    n += om__fmt_u64(dst + n, (uint64_t)fabs(v));
  } else {
    double a = fabs(v);
    size_t sign = signbit(v) ? 1 : 0;
    n = 0;
    if (a >= 1e-4 && a < 1e15) {
      dst[0] = '-';
      n = fmt_fixed(dst + sign, a);
      if (n)
        n += sign;
    }
    if (n == 0) {
      char tmp[40];
      n = (size_t)snprintf(tmp, sizeof tmp, "%.17g", v);
      memcpy(dst, tmp, n);
    }
  }
  return n;
}

/* A bucket bound as the "le" label value: the OpenMetrics canonical number,
 * which is Go's strconv.FormatFloat(v, 'g', -1, 64) (the shortest digits
 * that read back to v; an exponent when it is below -4 or at least 6),
 * plus ".0" on an integer in OpenMetrics. client_golang and client_python
 * write the same, and Prometheus 3 rewrites le to it, so the label does not
 * change with the client or the Prometheus version. Registration time
 * only (snprintf and strtod), in the C locale. */
size_t om__fmt_bound(char *dst, double v, bool om) {
  char e[40];
  for (int p = 0; p < 17; p++) { /* %.16e always reads back */
    snprintf(e, sizeof e, "%.*e", p, v);
    if (strtod(e, NULL) == v)
      break;
  }
  /* e is [-]d[.ddd]e(+|-)xx: gather the digits and the exponent. */
  const char *s = e;
  size_t n = 0;
  if (*s == '-')
    dst[n++] = *s++;
  char dig[24];
  size_t nd = 0;
  for (; *s != 'e'; s++)
    if (*s != '.')
      dig[nd++] = *s;
  int x = (int)strtol(s + 1, NULL, 10);
  while (nd > 1 && dig[nd - 1] == '0')
    nd--;
  if (v == 0)
    x = 0;
  if (x < -4 || x >= 6) {
    dst[n++] = dig[0];
    if (nd > 1) {
      dst[n++] = '.';
      memcpy(dst + n, dig + 1, nd - 1);
      n += nd - 1;
    }
    n += (size_t)snprintf(dst + n, 8, "e%c%02d", x < 0 ? '-' : '+',
                          x < 0 ? -x : x);
    return n;
  }
  if (x < 0) {
    dst[n++] = '0';
    dst[n++] = '.';
    for (int z = -1; z > x; z--)
      dst[n++] = '0';
    memcpy(dst + n, dig, nd);
    return n + nd;
  }
  size_t ip = (size_t)x + 1; /* digits before the point */
  for (size_t i = 0; i < ip; i++)
    dst[n++] = i < nd ? dig[i] : '0';
  if (nd > ip) {
    dst[n++] = '.';
    memcpy(dst + n, dig + ip, nd - ip);
    n += nd - ip;
  } else if (om) {
    dst[n++] = '.';
    dst[n++] = '0';
  }
  return n;
}

/* Appends s with backslash and newline escaped, and double quotes too when
 * quote is set (label values; OpenMetrics HELP). */
void om__put_escaped(om_out *o, const char *s, size_t n, bool quote) {
  if (!om__reserve(o, 2 * n))
    return;
  char *d = o->buf->data + o->buf->len;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (c == '\\') {
      d[k++] = '\\';
      d[k++] = '\\';
    } else if (c == '\n') {
      d[k++] = '\\';
      d[k++] = 'n';
    } else if (c == '"' && quote) {
      d[k++] = '\\';
      d[k++] = '"';
    } else {
      d[k++] = c;
    }
  }
  o->buf->len += k;
}

void om__put_labels(om_out *o, const om_family *fam, const char *const *values,
                    const size_t *lens) {
  for (size_t i = 0; i < fam->nlabels; i++) {
    if (i > 0)
      om__putc(o, ',');
    om__put(o, fam->label_names[i], strlen(fam->label_names[i]));
    om__put(o, "=\"", 2);
    om__put_escaped(o, values[i], lens[i], true);
    om__putc(o, '"');
  }
}
