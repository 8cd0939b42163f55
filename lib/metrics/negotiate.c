/* negotiate.c: content types and Accept-header negotiation for /metrics. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *om_format_content_type(om_format fmt) {
  return fmt == OM_FORMAT_OPENMETRICS
             ? "application/openmetrics-text; version=1.0.0; charset=utf-8"
             : "text/plain; version=0.0.4; charset=utf-8";
}

/* q of one media range "type/sub;a=b;q=0.5" (n bytes): 1 when absent,
 * 0 for a malformed q. Read by hand, not with strtod, whose decimal point
 * is the locale's: in a de_DE process "0.9" would read as 0. A qvalue is
 * "0", "1" or either with up to three decimals (RFC 9110 12.4.2). */
static double range_q(const char *s, size_t n) {
  const char *end = s + n;
  for (const char *p = memchr(s, ';', n); p && p < end;
       p = memchr(p + 1, ';', (size_t)(end - p - 1))) {
    const char *k = p + 1;
    while (k < end && (*k == ' ' || *k == '\t'))
      k++;
    if (end - k >= 2 && (k[0] == 'q' || k[0] == 'Q') && k[1] == '=') {
      k += 2;
      if (k == end || (*k != '0' && *k != '1'))
        return 0;
      int milli = (*k++ - '0') * 1000, scale = 100;
      if (k < end && *k == '.')
        for (k++; k < end && *k >= '0' && *k <= '9'; k++, scale /= 10)
          milli += (*k - '0') * scale;
      while (k < end && (*k == ' ' || *k == '\t'))
        k++;
      if ((k < end && *k != ';') || milli > 1000)
        return 0;
      return milli / 1000.0;
    }
  }
  return 1;
}

static bool range_is(const char *s, size_t n, const char *type) {
  while (n && (*s == ' ' || *s == '\t')) {
    s++;
    n--;
  }
  size_t t = strlen(type);
  return n >= t && strncasecmp(s, type, t) == 0 &&
         (n == t || s[t] == ';' || s[t] == ' ' || s[t] == '\t');
}

om_format om_format_negotiate(const char *accept) {
  if (accept == NULL)
    return OM_FORMAT_TEXT;
  double q_om = 0, q_text = 0;
  const char *p = accept;
  while (*p) {
    const char *comma = strchr(p, ',');
    size_t n = comma ? (size_t)(comma - p) : strlen(p);
    double q = range_q(p, n);
    if (range_is(p, n, "application/openmetrics-text")) {
      if (q > q_om)
        q_om = q;
    } else if (range_is(p, n, "text/plain") || range_is(p, n, "text/*") ||
               range_is(p, n, "*/*")) {
      if (q > q_text)
        q_text = q;
    }
    p += n + (comma != NULL);
  }
  /* A client that names OpenMetrics explicitly, at least as high as plain
   * text, gets it (Prometheus sends it at q=1, text at q=0.5). */
  return q_om > 0 && q_om >= q_text ? OM_FORMAT_OPENMETRICS : OM_FORMAT_TEXT;
}
