/* cors.c: which browser origins may use the API (--cors-origins).
 *
 * The original ORFEAS pages are always served from another origin than the
 * API (nginx on :8000, GitHub Pages, a local static server), so they need
 * CORS. The rules, for the /api/ routes:
 *
 *  - Default: no origin is allowed (same-origin only, as a browser does
 *    without CORS). --cors-origins takes a comma list of exact origins
 *    (scheme://host[:port]) or "*". An allowed origin is echoed in
 *    Access-Control-Allow-Origin (with "*", "*" itself is sent), always
 *    with Vary: Origin; Access-Control-Allow-Credentials is never sent, so
 *    no origin is ever trusted with a user's cookies or auth.
 *  - A preflight (OPTIONS with Origin and Access-Control-Request-Method)
 *    from an allowed origin gets 204 with the methods of the route and the
 *    headers the original clients send (Content-Type, Cache-Control,
 *    Pragma, ngrok-skip-browser-warning, X-Requested-With); from another
 *    origin, 403 with a JSON error, counted as cors_refused.
 *  - The WebSocket routes (/ws, /socket.io/) check Origin too: a browser
 *    page from an origin that is neither this server's nor allowed gets 403
 *    (a cross-site page cannot borrow a user's view of the jobs). Clients
 *    that send no Origin (curl, the load tool) are not browsers and pass.
 *  - So do the API's POSTs (upload-image, generate-3d). CORS alone does not
 *    stop them: a form's multipart POST, or JSON sent as text/plain, is a
 *    "simple" request that a browser sends with no preflight, hiding only
 *    the answer from the page. Without this check any web page a user
 *    opens could make the user's browser fill the store of an orfeasd on
 *    the user's machine or network (and push other users' jobs out).
 *
 * None of this stops DNS rebinding (a page whose name is re-pointed at this
 * server is, to the browser, of this server's origin): that is the Host
 * allow-list's business (hosts.c, --allowed-hosts).
 *
 * Pure functions: http.c and routes.c apply them.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "orfeasd.h"

const char OD_CORS_ALLOW_HEADERS[] =
    "Content-Type, Cache-Control, Pragma, ngrok-skip-browser-warning, "
    "X-Requested-With";
const char OD_CORS_EXPOSE_HEADERS[] = "Retry-After, Content-Disposition";

/* scheme://host[:port], lower-case scheme http or https, no path. */
static int origin_well_formed(const char *o, size_t n) {
  size_t p;
  if (n > 7 && strncasecmp(o, "http://", 7) == 0)
    p = 7;
  else if (n > 8 && strncasecmp(o, "https://", 8) == 0)
    p = 8;
  else
    return 0;
  size_t host = p;
  while (p < n && (isalnum((unsigned char)o[p]) || o[p] == '.' || o[p] == '-' ||
                   o[p] == '[' || o[p] == ']' || o[p] == ':'))
    p++;
  return p == n && p > host;
}

int od_cors_parse(od_cors *c, const char *spec, char *err, size_t err_len) {
  memset(c, 0, sizeof *c);
  const char *p = spec ? spec : "", *s;
  size_t n;
  while ((s = od_list_next(&p, &n)) != NULL) {
    if (n == 1 && s[0] == '*') {
      c->any = 1;
      continue;
    }
    if (n >= sizeof c->origins[0] || !origin_well_formed(s, n)) {
      snprintf(
          err, err_len,
          "--cors-origins: \"%.*s\" is not an origin (scheme://host[:port], "
          "e.g. http://localhost:8000, or *)",
          (int)(n > 80 ? 80 : n), s);
      return -1;
    }
    if (c->n == OD_CORS_MAX) {
      snprintf(err, err_len, "--cors-origins: at most %d origins", OD_CORS_MAX);
      return -1;
    }
    memcpy(c->origins[c->n], s, n);
    c->origins[c->n][n] = '\0';
    c->n++;
  }
  return 0;
}

const char *od_cors_allow(const od_cors *c, const char *origin) {
  if (origin == NULL || origin[0] == '\0')
    return NULL;
  if (c->any)
    return "*";
  for (int i = 0; i < c->n; i++)
    if (strcasecmp(c->origins[i], origin) == 0)
      return origin;
  return NULL;
}

int od_cors_same_origin(const char *origin, const char *host) {
  if (origin == NULL || host == NULL)
    return 0;
  const char *h = strstr(origin, "://");
  return h != NULL && strcasecmp(h + 3, host) == 0;
}

int od_cors_page_allowed(const od_cors *c, const char *origin,
                         const char *host) {
  return origin == NULL || od_cors_same_origin(origin, host) ||
         od_cors_allow(c, origin) != NULL;
}
