/* framing.c: where a request ends, and what its path may hold.
 *
 * Request smuggling lives in the disagreement between two parsers on where
 * a body ends: a proxy that goes by Content-Length and a server that goes
 * by Transfer-Encoding (or by another Content-Length) see a different
 * second request in the same bytes. libmicrohttpd 0.9.75 takes chunked
 * over a length and the first of two lengths, so a request that carries
 * both, two lengths that differ, a length that is not a number, or a
 * transfer coding other than a single "chunked" is refused here with 400
 * and its connection closed, before a byte of its body is read: whatever
 * follows on that connection is never parsed as a request.
 *
 * Header lines that two parsers read differently are refused the same way
 * (od_framing_field): whitespace between a name and its colon, a bare CR
 * or a NUL inside a line, a Content-Length or Transfer-Encoding folded
 * onto the next line, two Host headers (which site is it for?), and an
 * HTTP/1.1 request with none (RFC 9112 3.2 says a server must answer both
 * with 400, in one sentence; libmicrohttpd 0.9.75 checks for a Host only
 * with MHD_OPTION_STRICT_FOR_CLIENT, which orfeasd does not set, so until
 * 2026-12-03 such a request was answered). HTTP/1.0 may leave Host out.
 *
 * A WebSocket upgrade (an Upgrade header naming websocket) that carries a
 * body is refused the same way. RFC 6455 4.1 opens with a GET without
 * one, and the bytes after its headers are a body to a parser that goes
 * by the framing headers and the first WebSocket frames to one that goes
 * by the upgrade: the same disagreement. (Until 2026-12-03 it got 101.)
 *
 * Query arguments (od_query_check): libmicrohttpd 0.9.75 records each in
 * the connection's memory while it parses the request line, and when they
 * do not fit it answers nothing at all (its 431 is lost: the connection
 * waits for --header-timeout). The check runs in the URI callback, before
 * that: more than OD_QUERY_MAX_ARGS is answered 414 by the access handler
 * (MHD still calls it), and for a line whose arguments may not fit the
 * connection's receiving side is shut down there and then (shutdown(2)
 * SHUT_RD; the edge cuts connections with shutdown too): MHD then sees
 * the end of the stream and closes the connection the usual way, or, when
 * the arguments did fit after all and the headers were in, still calls
 * the handler, which answers (414 past the limit). Nothing is written
 * into MHD's memory.
 *
 * Paths: MHD decodes %XX before the access handler sees the path, so
 * "/health%00.png" would reach the router as "/health". The raw request
 * target is checked instead (od_path_has_control, from MHD's URI log
 * callback, which sees it before decoding): a control byte in the path,
 * raw or percent-encoded, is a 400. Pure functions
 * (tests/unit/test_od_framing.c; fuzzed: tests/fuzz/fuzz_framing.c).
 */
#include <ctype.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "orfeasd.h"

/* Parses a Content-Length value: digits, or a comma list of equal digit
 * runs (a proxy that merged two identical headers). 0, or -1. */
static int parse_length(const char *v, unsigned long long *out) {
  int have = 0;
  unsigned long long first = 0;
  const char *p = v;
  for (;;) {
    while (*p == ' ' || *p == '\t')
      p++;
    if (!isdigit((unsigned char)*p))
      return -1;
    unsigned long long n = 0;
    for (; isdigit((unsigned char)*p); p++) {
      if (n > (~0ull - 9) / 10)
        return -1; /* more than 2^64 */
      n = n * 10 + (unsigned)(*p - '0');
    }
    if (have && n != first)
      return -1;
    first = n;
    have = 1;
    while (*p == ' ' || *p == '\t')
      p++;
    if (*p == '\0')
      break;
    if (*p++ != ',')
      return -1;
  }
  *out = first;
  return 0;
}

int od_header_has_token(const char *v, const char *tok) {
  size_t tl = strlen(tok);
  for (const char *p = v; p && *p; p++)
    if (strncasecmp(p, tok, tl) == 0 &&
        (p == v || p[-1] == ' ' || p[-1] == '\t' || p[-1] == ',') &&
        (p[tl] == '\0' || p[tl] == ',' || p[tl] == ' ' || p[tl] == '\t'))
      return 1;
  return 0;
}

void od_framing_header(od_framing *f, const char *name, const char *value) {
  if (name == NULL)
    return;
  if (strcasecmp(name, "Upgrade") == 0 &&
      od_header_has_token(value, "websocket"))
    f->ws_upgrade = 1;
  if (strcasecmp(name, "Content-Length") == 0) {
    unsigned long long n = 0;
    if (value == NULL || parse_length(value, &n) != 0)
      f->bad_length = 1;
    else if (f->lengths > 0 && n != f->length)
      f->bad_length = 1;
    f->length = n;
    f->lengths++;
  } else if (strcasecmp(name, "Transfer-Encoding") == 0) {
    f->codings++;
    const char *v = value ? value : "";
    while (*v == ' ' || *v == '\t')
      v++;
    size_t n = strlen(v);
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
      n--;
    if (n != 7 || strncasecmp(v, "chunked", 7) != 0)
      f->bad_coding = 1;
  }
}

/* RFC 9110 5.6.2: tchar. */
static int is_tchar(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
         (c >= 'A' && c <= 'Z') || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c));
}

void od_framing_field(od_framing *f, const char *name, size_t name_len,
                      const char *value, size_t value_len) {
  if (name == NULL)
    return;
  /* A name is a token: "Transfer-Encoding : chunked" (whitespace before the
   * colon) is a name libmicrohttpd keeps as "Transfer-Encoding " and
   * ignores, where a lenient proxy reads Transfer-Encoding (RFC 9112 5.1:
   * a server must refuse it). */
  int bad = name_len == 0;
  for (size_t i = 0; i < name_len && !bad; i++)
    bad = !is_tchar((unsigned char)name[i]);
  /* A value holds no NUL, CR or LF (RFC 9110 5.5): libmicrohttpd keeps
   * "X: a\rTransfer-Encoding: chunked" as one header, where a parser that
   * ends lines at a bare CR sees two, and a NUL cuts the value short for
   * whoever reads it as a C string. */
  for (size_t i = 0; value != NULL && i < value_len && !bad; i++)
    bad = value[i] == '\0' || value[i] == '\r' || value[i] == '\n';
  /* A folded line (obs-fold, RFC 9112 5.2): libmicrohttpd 0.9.75 appends
   * the continuation to the header's name, not its value, so
   * "Transfer-Encoding:" + " chunked" on the next line reaches us as a
   * header named "Transfer-Encodingchunked" that frames nothing, where a
   * proxy that unfolds it reads a chunked body. A name that starts with a
   * framing header's name and goes on is taken for that. */
  static const char *const FRAMING[] = {"Content-Length", "Transfer-Encoding"};
  for (size_t k = 0; k < sizeof FRAMING / sizeof FRAMING[0] && !bad; k++) {
    size_t n = strlen(FRAMING[k]);
    bad = name_len > n && strncasecmp(name, FRAMING[k], n) == 0;
  }
  if (bad) {
    f->bad_field = 1;
    return;
  }
  if (strcasecmp(name, "Host") == 0)
    f->hosts++;
  od_framing_header(f, name, value);
}

const char *od_framing_verdict(const od_framing *f) {
  if (f->bad_field)
    return "a header line holds whitespace before its colon, a control "
           "character in its name, or a NUL, CR or LF in its value, or "
           "Content-Length or Transfer-Encoding is folded onto a second line";
  if (f->hosts > 1)
    return "the request has more than one Host header";
  if (f->hosts == 0 && f->need_host)
    return "an HTTP/1.1 request must have a Host header (RFC 9112 3.2)";
  if (f->lengths > 0 && f->codings > 0)
    return "the request has both Content-Length and Transfer-Encoding";
  if (f->bad_length)
    return f->lengths > 1 ? "the request has Content-Length headers that "
                            "differ"
                          : "Content-Length is not a number";
  if (f->codings > 1 || f->bad_coding)
    return "Transfer-Encoding other than a single \"chunked\" is not "
           "supported";
  if (f->ws_upgrade && (f->codings > 0 || (f->lengths > 0 && f->length > 0)))
    return "a WebSocket upgrade request carries a body (RFC 6455 4.1: the "
           "upgrade is a GET without one)";
  return NULL;
}

od_query_verdict od_query_check(const char *uri, int *args) {
  *args = 0;
  if (uri == NULL)
    return OD_QUERY_OK;
  size_t len = strlen(uri);
  const char *q = strchr(uri, '?');
  if (q != NULL && q[1] != '\0') {
    *args = 1;
    for (q++; *q; q++)
      if (*q == '&' && *args < INT_MAX)
        ++*args;
  }
  /* No argument, no record: a long path alone is MHD's 414 to give. */
  if (*args > 0 &&
      (unsigned long long)len + (unsigned long long)*args * OD_QUERY_ARG_COST >
          OD_QUERY_BUDGET)
    return OD_QUERY_PAST_MEMORY;
  return *args > OD_QUERY_MAX_ARGS ? OD_QUERY_TOO_MANY : OD_QUERY_OK;
}

static int hexval(int c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  c = tolower(c);
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int od_path_has_control(const char *uri) {
  for (const char *p = uri; p != NULL && *p && *p != '?'; p++) {
    unsigned char c = (unsigned char)*p;
    if (c == '%') {
      int hi = hexval((unsigned char)p[1]);
      int lo = hi < 0 ? -1 : hexval((unsigned char)p[2]);
      if (hi >= 0 && lo >= 0)
        c = (unsigned char)(hi << 4 | lo);
    }
    if (c < 0x20 || c == 0x7f)
      return 1;
  }
  return 0;
}
