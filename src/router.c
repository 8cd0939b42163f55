/* router.c: the route table (OD_ROUTE_LIST in orfeasd.h) as data, and what
 * is read off it: which route a path is, which methods it answers, and its
 * Allow header. Pure functions over constant tables, so the matcher is unit
 * tested without a server (tests/unit/test_od_router.c).
 *
 * Matching is a linear scan in table order: a dozen string compares, no
 * allocation, cheaper than the request's metrics. Prefix routes keep their
 * arguments in fixed fields of the request; a piece that does not fit is
 * marked (starts with '!') rather than cut silently into a valid-looking
 * one.
 */
#include <stdio.h>
#include <string.h>

#include "orfeasd.h"

typedef struct {
  unsigned methods;
  od_match match;
  const char *path;
  size_t path_len;
  const char *endpoint;
  unsigned flags;
} route_def;

static const route_def ROUTES[OD_ROUTE_COUNT] = {
#define OD_ROUTE_DEF(id, methods, match, path, endpoint, flags, handler)       \
  [OD_ROUTE_##id] = {methods, match, path, sizeof path - 1, endpoint, flags},
    OD_ROUTE_LIST(OD_ROUTE_DEF)
#undef OD_ROUTE_DEF
};

static const char *const METHOD_NAMES[OD_METHODS] = {
    [OD_METHOD_GET] = "GET",       [OD_METHOD_POST] = "POST",
    [OD_METHOD_HEAD] = "HEAD",     [OD_METHOD_PUT] = "PUT",
    [OD_METHOD_DELETE] = "DELETE", [OD_METHOD_OPTIONS] = "OPTIONS",
    [OD_METHOD_PATCH] = "PATCH",   [OD_METHOD_OTHER] = "OTHER"};

od_method od_method_index(const char *m) {
  for (int i = 0; i < OD_METHOD_OTHER; i++)
    if (strcmp(m, METHOD_NAMES[i]) == 0)
      return (od_method)i;
  return OD_METHOD_OTHER;
}

const char *od_method_name(od_method m) {
  return (unsigned)m < OD_METHODS ? METHOD_NAMES[m] : "OTHER";
}

/* Copies src into dst (size n), or marks dst when it does not fit. */
static void piece(char *dst, size_t n, const char *src, size_t len) {
  if (len < n) {
    memcpy(dst, src, len);
    dst[len] = '\0';
  } else {
    snprintf(dst, n, "!%.*s", (int)(n - 2), src);
  }
}

void od_route_match(const char *path, od_req *req) {
  req->rest[0] = req->arg1[0] = req->arg2[0] = '\0';
  for (int r = 0; r < OD_ROUTE_COUNT; r++) {
    const route_def *d = &ROUTES[r];
    if (d->match == OD_MATCH_EXACT && strcmp(path, d->path) == 0) {
      req->route = (od_route)r;
      return;
    }
    if (d->match == OD_MATCH_PREFIX &&
        strncmp(path, d->path, d->path_len) == 0) {
      const char *rest = path + d->path_len, *slash = strchr(rest, '/');
      size_t len = strlen(rest);
      size_t n1 = slash ? (size_t)(slash - rest) : len;
      piece(req->rest, sizeof req->rest, rest, len);
      piece(req->arg1, sizeof req->arg1, rest, n1);
      if (slash)
        piece(req->arg2, sizeof req->arg2, slash + 1, len - n1 - 1);
      req->route = (od_route)r;
      return;
    }
  }
  req->route = OD_ROUTE_OTHER;
}

const char *od_route_template(od_route r) {
  return (unsigned)r < OD_ROUTE_COUNT ? ROUTES[r].endpoint : "other";
}

unsigned od_route_flags(od_route r) {
  return (unsigned)r < OD_ROUTE_COUNT ? ROUTES[r].flags : 0;
}

unsigned od_route_methods(od_route r) {
  return (unsigned)r < OD_ROUTE_COUNT ? ROUTES[r].methods : 0;
}

/* The methods a route answers: its own, HEAD where GET is, OPTIONS. */
static unsigned served(od_route r) {
  if ((unsigned)r >= OD_ROUTE_COUNT || ROUTES[r].match == OD_MATCH_NONE)
    return 0;
  unsigned m = ROUTES[r].methods | 1u << OD_METHOD_OPTIONS;
  if (m & OD_M_GET)
    m |= 1u << OD_METHOD_HEAD;
  return m;
}

int od_route_allows(od_route r, od_method m) {
  return m != OD_METHOD_OTHER && (served(r) >> m & 1u);
}

/* "GET, HEAD, OPTIONS" for every route, built once from the table. */
static char ALLOW[OD_ROUTE_COUNT][64];
static pthread_once_t allow_once = PTHREAD_ONCE_INIT;

static void build_allow(void) {
  for (int r = 0; r < OD_ROUTE_COUNT; r++) {
    size_t o = 0;
    unsigned m = served((od_route)r);
    for (int i = 0; i < OD_METHOD_OTHER; i++)
      if (m >> i & 1u)
        o += (size_t)snprintf(ALLOW[r] + o, sizeof ALLOW[r] - o, "%s%s",
                              o ? ", " : "", METHOD_NAMES[i]);
  }
}

const char *od_route_allow_header(od_route r) {
  pthread_once(&allow_once, build_allow);
  return (unsigned)r < OD_ROUTE_COUNT ? ALLOW[r] : "";
}
