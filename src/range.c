/* range.c: one byte range of a file, from a Range header (RFC 9110 14.1-2),
 * and whether If-Range lets it apply (13.1.5). Pure: no I/O, no memory.
 *
 * What is honoured is one range: `bytes=A-B`, `bytes=A-`, `bytes=-N` (the
 * unit in any case, optional whitespace and empty elements around the
 * commas, as the list rule allows). Everything else is ignored and the
 * whole file is sent (200), which 14.2 allows for any Range:
 *  - a value that does not parse (spaces inside a range, `bytes=5-3`, no
 *    `=`, no digits), or another unit;
 *  - more than one range: no multipart/byteranges. A list of ranges costs
 *    the server a part per range while the client sends a few bytes per
 *    range (overlapping ranges of one large file multiply the bytes sent:
 *    the "many ranges" amplification of 14.2's security note); a
 *    downloader resuming needs one. The scan stops at the second range, so
 *    thousands of commas cost one pass over what MHD accepted.
 *  - a suffix range of an empty file: it is satisfiable (a non-zero length)
 *    but has no first or last byte to name in a Content-Range.
 * Numbers past 64 bits saturate, and A and B are compared as decimal
 * strings, so no value wraps: a huge A is past any file (416), a huge B
 * ends at the file's last byte, a huge N is the whole file.
 */
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "orfeasd.h"

/* A run of digits: its value (saturated at UINT64_MAX) and its significant
 * digits (leading zeros skipped) for exact comparison. NULL: no digit. */
typedef struct {
  uint64_t v;
  const char *sig;
  size_t sig_len;
} dec;

static const char *parse_dec(const char *p, const char *end, dec *d) {
  const char *start = p;
  d->v = 0;
  while (p < end && *p == '0')
    p++;
  d->sig = p;
  while (p < end && *p >= '0' && *p <= '9') {
    unsigned digit = (unsigned)(*p - '0');
    d->v = d->v > (UINT64_MAX - digit) / 10 ? UINT64_MAX : d->v * 10 + digit;
    p++;
  }
  d->sig_len = (size_t)(p - d->sig);
  return p == start ? NULL : p;
}

/* <0, 0, >0 as a's value is below, equal to or above b's. */
static int dec_cmp(const dec *a, const dec *b) {
  if (a->sig_len != b->sig_len)
    return a->sig_len < b->sig_len ? -1 : 1;
  return memcmp(a->sig, b->sig, a->sig_len);
}

enum { SPEC_INVALID, SPEC_UNSATISFIABLE, SPEC_OK, SPEC_EMPTY_SUFFIX };

/* One range-spec, [s, e) without surrounding whitespace. */
static int parse_spec(const char *s, const char *e, uint64_t size,
                      uint64_t *first, uint64_t *last) {
  dec a, b;
  if (*s == '-') { /* suffix-range: the last N bytes */
    const char *p = parse_dec(s + 1, e, &b);
    if (p == NULL || p != e)
      return SPEC_INVALID;
    if (b.v == 0)
      return SPEC_UNSATISFIABLE;
    if (size == 0)
      return SPEC_EMPTY_SUFFIX;
    *first = b.v >= size ? 0 : size - b.v;
    *last = size - 1;
    return SPEC_OK;
  }
  const char *p = parse_dec(s, e, &a);
  if (p == NULL || p == e || *p != '-')
    return SPEC_INVALID;
  p++;
  int open_end = p == e;
  if (!open_end) {
    const char *q = parse_dec(p, e, &b);
    if (q == NULL || q != e)
      return SPEC_INVALID;
    if (dec_cmp(&b, &a) < 0) /* bytes=5-3: invalid (14.1.1), not empty */
      return SPEC_INVALID;
  }
  if (a.v >= size)
    return SPEC_UNSATISFIABLE;
  *first = a.v;
  *last = open_end || b.v >= size ? size - 1 : b.v;
  return SPEC_OK;
}

static int ows(char c) { return c == ' ' || c == '\t'; }

od_range_kind od_range_parse(const char *value, uint64_t size, uint64_t *first,
                             uint64_t *last) {
  if (value == NULL)
    return OD_RANGE_NONE;
  static const char unit[] = "bytes=";
  if (strncasecmp(value, unit, sizeof unit - 1) != 0)
    return OD_RANGE_IGNORED;
  const char *p = value + sizeof unit - 1;
  int specs = 0, verdict = SPEC_INVALID;
  while (*p != '\0') {
    const char *comma = strchr(p, ',');
    const char *e = comma ? comma : p + strlen(p);
    const char *s = p;
    p = comma ? comma + 1 : e;
    while (s < e && ows(*s))
      s++;
    while (e > s && ows(e[-1]))
      e--;
    if (s == e) /* an empty list element: allowed, skipped */
      continue;
    if (++specs > 1) /* a second range: no multipart (see the top) */
      return OD_RANGE_IGNORED;
    verdict = parse_spec(s, e, size, first, last);
  }
  switch (verdict) {
  case SPEC_OK:
    return OD_RANGE_PARTIAL;
  case SPEC_UNSATISFIABLE:
    return OD_RANGE_UNSATISFIABLE;
  default: /* invalid, no range at all, or a suffix of an empty file */
    return OD_RANGE_IGNORED;
  }
}

int od_if_range_holds(const char *if_range, const char *etag) {
  if (if_range == NULL)
    return 1;
  /* Only the current strong tag, compared strongly (13.1.5): a weak tag
   * or another one never matches, and a date is not taken either (the
   * file's time is a weak validator when it can change within its second,
   * 8.8.2.2), so any other If-Range sends the whole file, as it must. */
  size_t n = strlen(if_range);
  while (n > 0 && ows(if_range[n - 1]))
    n--;
  while (n > 0 && ows(*if_range)) {
    if_range++;
    n--;
  }
  return etag != NULL && etag[0] == '"' && n == strlen(etag) &&
         memcmp(if_range, etag, n) == 0;
}
