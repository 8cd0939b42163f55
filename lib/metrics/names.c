/* names.c: what a metric name, a label name and a label value may be. */
#include "internal.h"

#include <string.h>

static bool is_alpha_(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
static bool is_digit(char c) { return c >= '0' && c <= '9'; }

bool om__valid_metric_name(const char *s) {
  if (s == NULL || !(is_alpha_(*s) || *s == ':'))
    return false;
  for (s++; *s; s++)
    if (!(is_alpha_(*s) || is_digit(*s) || *s == ':'))
      return false;
  return true;
}

bool om__valid_label_name(const char *s) {
  if (s == NULL || !is_alpha_(*s))
    return false;
  for (s++; *s; s++)
    if (!(is_alpha_(*s) || is_digit(*s)))
      return false;
  return true;
}

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  if (c < 0x80)
    return 1;
  size_t len;
  unsigned min;
  if (c >= 0xc2 && c <= 0xdf) {
    len = 2;
    min = 0x80;
  } else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    min = 0x800;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    min = 0x10000;
  } else {
    return 0;
  }
  if (n < len)
    return 0;
  unsigned cp = c & (0x7f >> len);
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xc0) != 0x80)
      return 0;
    cp = (cp << 6) | (s[i] & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
    return 0;
  return len;
}

/* Whether s is valid UTF-8 throughout (a help text: Prometheus refuses a
 * whole scrape over one bad byte, so registration refuses it). */
bool om__valid_utf8(const char *s) {
  const unsigned char *u = (const unsigned char *)s;
  size_t n = strlen(s);
  for (size_t i = 0, len; i < n; i += len)
    if ((len = utf8_seq(u + i, n - i)) == 0)
      return false;
  return true;
}

/* Writes the canonical form of label value v to out (cap >= 3 *
 * OM_MAX_LABEL_VALUE): at most OM_MAX_LABEL_VALUE bytes of input, cut at a
 * character boundary, each invalid byte replaced by U+FFFD (EF BF BD).
 * Returns the output length. */
size_t om__canon_value(const char *v, char *out, size_t cap) {
  const unsigned char *s = (const unsigned char *)v;
  size_t n = strnlen(v, OM_MAX_LABEL_VALUE + 4);
  size_t i = 0, o = 0;
  while (i < n && i < OM_MAX_LABEL_VALUE) {
    size_t len = utf8_seq(s + i, n - i);
    if (len == 0) {
      if (o + 3 > cap)
        break;
      memcpy(out + o, "\xef\xbf\xbd", 3);
      o += 3;
      i++;
      continue;
    }
    if (i + len > OM_MAX_LABEL_VALUE || o + len > cap)
      break;
    memcpy(out + o, s + i, len);
    o += len;
    i += len;
  }
  return o;
}
