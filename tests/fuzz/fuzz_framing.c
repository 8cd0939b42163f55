/* fuzz_framing.c: libFuzzer target for what orfeasd reads from a request's
 * head before any route sees it.
 *
 *   scripts/fuzz-orfeasd framing [SECONDS]   (docs/api.md, "Fuzzing")
 *
 * The input is a request head as a client sends it: a request line, then
 * header lines, split as libmicrohttpd splits them (at '\n'; a name ends at
 * the first ':', the value's surrounding blanks and the line's CR dropped;
 * a line without a colon is skipped, as MHD refuses it). The raw target
 * goes through the query-argument check and the control-byte check on the
 * path (src/framing.c, from the URI callback), every header line through
 * the framing checks and then the verdict (src/framing.c, from the header
 * scan), Host through the allowed-hosts check (src/hosts.c), Origin
 * through CORS (src/cors.c), X-Forwarded-For through the trusted-proxy
 * walk and the rate-limit key (src/proxy.c). Names and values are heap
 * copies of exactly their bytes plus the NUL MHD gives them, so ASan sees
 * an overread. No crash, leak or UB, and the verdict must hold:
 *   - an accepted request's Content-Length headers all give its length,
 *     it has at most one Transfer-Encoding, exactly "chunked", never both,
 *     at most one Host (one for HTTP/1.1), and no header name holds a byte
 *     outside RFC 9110's tchar nor a value a NUL, CR or LF;
 *   - a path with a control byte, raw or as %XX, is flagged, and only one.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>

#include "orfeasd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static od_hosts hosts;
static od_cors cors;
static od_proxies proxies;

/* What the checks promise, written out differently from src/framing.c. */
typedef struct {
  int lengths, codings, hosts, bad;
  unsigned long long first_length;
  int lengths_differ, coding_not_chunked;
} oracle;

static char *dup_n(const uint8_t *s, size_t n) {
  char *p = malloc(n + 1);
  if (p == NULL)
    abort();
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

static int blank(uint8_t c) { return c == ' ' || c == '\t'; }

/* Every comma piece of a Content-Length value must give the same number
 * (strtoull reads what parse_length accepted, digits after blanks). */
static void oracle_length(oracle *o, const char *v) {
  for (const char *p = v;;) {
    char *end;
    unsigned long long n = strtoull(p, &end, 10);
    if (o->lengths == 0 && p == v)
      o->first_length = n;
    else if (n != o->first_length)
      o->lengths_differ = 1;
    p = strchr(end, ',');
    if (p == NULL)
      break;
    p++;
  }
}

static void oracle_field(oracle *o, const char *name, size_t nl,
                         const char *value, size_t vl) {
  for (size_t i = 0; i < nl; i++)
    if (name[i] <= ' ' || name[i] >= 0x7f ||
        strchr("\"(),/:;<=>?@[\\]{}", name[i]) != NULL)
      o->bad = 1;
  for (size_t i = 0; i < vl; i++)
    if (value[i] == '\0' || value[i] == '\r' || value[i] == '\n')
      o->bad = 1;
  if (o->bad)
    return;
  if (strcasecmp(name, "Content-Length") == 0) {
    oracle_length(o, value);
    o->lengths++;
  } else if (strcasecmp(name, "Transfer-Encoding") == 0) {
    const char *v = value;
    while (blank((uint8_t)*v))
      v++;
    if (strncasecmp(v, "chunked", 7) != 0)
      o->coding_not_chunked = 1;
    for (v += strlen(v) < 7 ? strlen(v) : 7; *v; v++)
      if (!blank((uint8_t)*v))
        o->coding_not_chunked = 1;
    o->codings++;
  } else if (strcasecmp(name, "Host") == 0) {
    o->hosts++;
  }
}

/* The path before '?', %XX decoded once as MHD decodes it: a control
 * byte? */
static int oracle_control(const char *uri) {
  static const char hex[] = "0123456789abcdef";
  size_t n = strcspn(uri, "?");
  for (size_t i = 0; i < n; i++) {
    unsigned c = (unsigned char)uri[i];
    const char *hi, *lo;
    if (c == '%' && i + 2 < n &&
        (hi = memchr(hex, tolower((unsigned char)uri[i + 1]), 16)) != NULL &&
        (lo = memchr(hex, tolower((unsigned char)uri[i + 2]), 16)) != NULL) {
      c = (unsigned)((hi - hex) << 4 | (lo - hex));
      i += 2;
    }
    if (c < 0x20 || c == 0x7f)
      return 1;
  }
  return 0;
}

static void request_line(const char *line, od_framing *f) {
  /* METHOD SP target SP version; the target as MHD's URI callback has it. */
  const char *sp1 = strchr(line, ' ');
  const char *sp2 = sp1 ? strrchr(line, ' ') : NULL;
  char *target = sp1 && sp2 > sp1
                     ? dup_n((const uint8_t *)sp1 + 1, (size_t)(sp2 - sp1 - 1))
                     : dup_n((const uint8_t *)"", 0);
  f->need_host = sp2 == NULL || strcmp(sp2 + 1, "HTTP/1.0") != 0;
  int args = -1;
  od_query_verdict q = od_query_check(target, &args);
  if (args < 0 || (q == OD_QUERY_TOO_MANY && args <= OD_QUERY_MAX_ARGS))
    abort();
  if (q == OD_QUERY_OK && args > OD_QUERY_MAX_ARGS)
    abort();
  if (od_path_has_control(target) != oracle_control(target))
    abort();
  free(target);
}

static void other_headers(const char *name, const char *value, char *xff,
                          size_t xff_cap) {
  if (strcasecmp(name, "Host") == 0) {
    od_hosts_allowed(&hosts, value);
    od_cors_same_origin("http://studio.example", value);
  } else if (strcasecmp(name, "Origin") == 0) {
    od_cors_page_allowed(&cors, value, "studio.example:8000");
    const char *a = od_cors_allow(&cors, value);
    if (a != NULL && strcmp(a, value) != 0 && strcmp(a, "*") != 0)
      abort();
  } else if (strcasecmp(name, "X-Forwarded-For") == 0) {
    snprintf(xff, xff_cap, "%s", value); /* the last one, as cut in http.c */
  }
}

static void client_address(const char *xff) {
  char out[64], key[80];
  /* A trusted peer, so the walk reads the header. */
  od_xff_result r = od_client_address(&proxies, 0x0a000001u,
                                      xff[0] ? xff : NULL, out, sizeof out);
  struct in_addr a4;
  struct in6_addr a6;
  if (r == OD_XFF_USED && inet_pton(AF_INET, out, &a4) != 1 &&
      inet_pton(AF_INET6, out, &a6) != 1)
    abort();
  od_rate_key(out, key, sizeof key);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int ready;
  if (!ready) {
    char err[256];
    if (od_hosts_parse(&hosts, "studio.example, [2001:db8::1], 192.0.2.10",
                       "127.0.0.1", err, sizeof err) != 0 ||
        od_cors_parse(&cors, "http://localhost:8000, https://studio.example",
                      err, sizeof err) != 0 ||
        od_proxies_parse(&proxies, "10.0.0.0/8, 192.168.0.0/16", err,
                         sizeof err) != 0)
      abort();
    ready = 1;
  }
  od_framing f;
  memset(&f, 0, sizeof f);
  oracle o;
  memset(&o, 0, sizeof o);
  char xff[1024] = "";
  const uint8_t *end = data + size, *p = data;
  int first = 1;
  while (p < end) {
    const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
    const uint8_t *le = nl ? nl : end;
    if (le > p && le[-1] == '\r')
      le--;
    if (first) {
      char *line = dup_n(p, (size_t)(le - p));
      request_line(line, &f);
      free(line);
      first = 0;
    } else {
      const uint8_t *colon = memchr(p, ':', (size_t)(le - p));
      if (colon != NULL) {
        const uint8_t *v = colon + 1, *ve = le;
        while (v < ve && blank(*v))
          v++;
        while (ve > v && blank(ve[-1]))
          ve--;
        size_t nl_len = (size_t)(colon - p), vl = (size_t)(ve - v);
        char *name = dup_n(p, nl_len), *value = dup_n(v, vl);
        od_framing_field(&f, name, nl_len, value, vl);
        oracle_field(&o, name, nl_len, value, vl);
        if (!o.bad)
          other_headers(name, value, xff, sizeof xff);
        free(name);
        free(value);
      }
    }
    p = nl ? nl + 1 : end;
  }
  client_address(xff);
  const char *why = od_framing_verdict(&f);
  if (why == NULL) {
    if (o.bad || (o.lengths > 0 && o.codings > 0) || o.lengths_differ ||
        o.codings > 1 || o.coding_not_chunked || o.hosts > 1 ||
        (f.need_host && o.hosts == 0))
      abort();
    if (o.lengths > 0 && f.length != o.first_length)
      abort();
  }
  return 0;
}
