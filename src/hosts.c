/* hosts.c: which Host header values orfeasd answers (--allowed-hosts).
 *
 * The defence against DNS rebinding. A page at http://attacker.example:5000
 * whose name the attacker then points at 127.0.0.1 is, for the browser, the
 * same origin as an orfeasd listening there: it passes every CORS and
 * same-origin check (cors.c compares Origin with Host, and both name
 * attacker.example), and could read the jobs, /metrics and the downloads,
 * and upload at will. What such a page cannot change is the Host header its
 * browser sends: the attacker's name. So orfeasd answers only the names it
 * is known by (as Django's ALLOWED_HOSTS, Jupyter, and Ollama's fix for its
 * rebinding CVE do). The rules:
 *
 *  - The name is compared without its port, case-insensitively, with one
 *    trailing dot dropped ("localhost." is "localhost"); an IPv6 literal in
 *    brackets, as in a Host header ("[::1]"), in its canonical form.
 *  - Loopback names are always allowed: "localhost", names ending in
 *    ".localhost" (which resolve to loopback by RFC 6761, and browsers keep
 *    them there), 127.x.x.x and [::1]. A browser sends one only for a page
 *    loaded from this machine under that name, never for a rebound one, so
 *    they cost no safety, and health checks, curl on the box and a
 *    Prometheus scraping 127.0.0.1 keep working whatever the list says.
 *  - So is the listener's own address ("10.0.0.5" for --listen
 *    10.0.0.5:5000): an IP literal involves no DNS, so it cannot be rebound,
 *    and monitoring that scrapes the address keeps working.
 *  - --allowed-hosts LIST adds names (or IP literals); "*" allows any Host.
 *  - Without the flag: a listener on a loopback address (127.0.0.0/8)
 *    answers only the names above. One on any other address (0.0.0.0, a
 *    LAN address) answers any Host: orfeasd cannot guess the names it is
 *    published under, and refusing them all would break every such
 *    deployment on upgrade; operators should set the flag there (--help and
 *    docs/api.md say so).
 *  - A request with no Host header, or an empty one, passes: HTTP/1.1
 *    requires one (framing.c refuses an HTTP/1.1 request without it with
 *    400 before this is asked), so only an HTTP/1.0 client can leave it
 *    out, and a browser never does.
 *  - A Host that does not parse (a port that is not digits, an unclosed
 *    bracket) is refused, unless the listener allows any: no browser sends
 *    one.
 *
 * Each listener has its own od_hosts (the public one from --listen, the
 * admin one from --admin-listen): the same list, but its own address and
 * its own loopback default. Pure functions: http.c applies them.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "orfeasd.h"

/* An IPv6 literal "[...]" (n bytes at s) in canonical form, brackets
 * included, into out (OD_HOST_NAME_MAX); 0, or -1 when not one. */
static int ipv6_canonical(const char *s, size_t n, char *out,
                          struct in6_addr *a) {
  char inner[INET6_ADDRSTRLEN];
  if (n < 3 || s[0] != '[' || s[n - 1] != ']' || n - 2 >= sizeof inner)
    return -1;
  memcpy(inner, s + 1, n - 2);
  inner[n - 2] = '\0';
  if (inet_pton(AF_INET6, inner, a) != 1)
    return -1;
  char text[INET6_ADDRSTRLEN];
  if (inet_ntop(AF_INET6, a, text, sizeof text) == NULL)
    return -1;
  snprintf(out, OD_HOST_NAME_MAX, "[%s]", text);
  return 0;
}

/* A host name or IPv4 literal: letters, digits, '-', '_' and '.', in
 * labels (no empty one). */
static int name_chars_ok(const char *s, size_t n) {
  if (n == 0 || s[0] == '.')
    return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (!(isalnum(c) || c == '-' || c == '_' || c == '.'))
      return 0;
    if (c == '.' && i > 0 && s[i - 1] == '.')
      return 0;
  }
  return 1;
}

/* The name part of n bytes at s (no port) in the form compared: lower
 * case, one trailing dot dropped, IPv6 canonical. 0, or -1 when it is not
 * a name or literal. */
static int normalize(const char *s, size_t n, char out[OD_HOST_NAME_MAX]) {
  if (n > 0 && s[0] == '[') {
    struct in6_addr a;
    return ipv6_canonical(s, n, out, &a);
  }
  if (n > 1 && s[n - 1] == '.')
    n--;
  if (n >= OD_HOST_NAME_MAX || !name_chars_ok(s, n))
    return -1;
  for (size_t i = 0; i < n; i++)
    out[i] = (char)tolower((unsigned char)s[i]);
  out[n] = '\0';
  return 0;
}

int od_hosts_listen_is_loopback(const char *addr) {
  struct in_addr a;
  return addr != NULL && inet_pton(AF_INET, addr, &a) == 1 &&
         (ntohl(a.s_addr) >> 24) == 127;
}

int od_hosts_parse(od_hosts *h, const char *spec, const char *listen_addr,
                   char *err, size_t err_len) {
  memset(h, 0, sizeof *h);
  snprintf(h->self, sizeof h->self, "%s", listen_addr ? listen_addr : "");
  const char *p = spec ? spec : "", *s;
  size_t n;
  while ((s = od_list_next(&p, &n)) != NULL) {
    h->given = 1;
    if (n == 1 && s[0] == '*') {
      h->any = 1;
      continue;
    }
    char name[OD_HOST_NAME_MAX];
    if (normalize(s, n, name) != 0) {
      /* The usual mistakes get their own sentence. */
      const char *colon = memchr(s, ':', n);
      const char *why =
          memchr(s, '/', n) != NULL ? "give a host name, not a URL"
          : memchr(s, '*', n) != NULL
              ? "a name with a wildcard is not supported: list each name "
                "(\"*\" alone allows any Host)"
          : colon != NULL && s[0] != '['
              ? "give the name without its port (ports are not compared; an "
                "IPv6 address goes in brackets)"
              : "give a host name or IP literal";
      snprintf(err, err_len,
               "--allowed-hosts: \"%.*s\" is not valid: %s (e.g. "
               "studio.example, 192.0.2.10, [2001:db8::1], or *)",
               (int)(n > 80 ? 80 : n), s, why);
      return -1;
    }
    if (h->n == OD_HOSTS_MAX) {
      snprintf(err, err_len, "--allowed-hosts: at most %d names (or *)",
               OD_HOSTS_MAX);
      return -1;
    }
    memcpy(h->names[h->n++], name, sizeof name);
  }
  /* Not given: any Host on a listener that is not on loopback (see the
   * top of this file). */
  if (!h->given && !od_hosts_listen_is_loopback(h->self))
    h->any = 1;
  return 0;
}

/* A loopback name (normalized): localhost, *.localhost, 127.x.x.x,
 * [::1]. */
static int loopback_name(const char *name) {
  size_t n = strlen(name);
  if (strcmp(name, "localhost") == 0 ||
      (n > 10 && strcmp(name + n - 10, ".localhost") == 0))
    return 1;
  if (od_hosts_listen_is_loopback(name))
    return 1;
  struct in6_addr a;
  char canon[OD_HOST_NAME_MAX];
  return name[0] == '[' && ipv6_canonical(name, n, canon, &a) == 0 &&
         IN6_IS_ADDR_LOOPBACK(&a);
}

int od_hosts_allowed(const od_hosts *h, const char *host) {
  if (host == NULL || host[0] == '\0' || h->any)
    return 1;
  /* The name ends at the port's colon (after the bracket of an IPv6
   * literal); the port, if any, is digits. */
  size_t len = strlen(host), n;
  if (host[0] == '[') {
    const char *close = strchr(host, ']');
    if (close == NULL)
      return 0;
    n = (size_t)(close - host) + 1;
  } else {
    const char *colon = strchr(host, ':');
    n = colon ? (size_t)(colon - host) : len;
  }
  if (n < len) {
    if (host[n] != ':' || n + 1 == len)
      return 0;
    for (size_t i = n + 1; i < len; i++)
      if (!isdigit((unsigned char)host[i]))
        return 0;
  }
  char name[OD_HOST_NAME_MAX];
  if (normalize(host, n, name) != 0)
    return 0;
  if (loopback_name(name) || strcmp(name, h->self) == 0)
    return 1;
  for (int i = 0; i < h->n; i++)
    if (strcmp(h->names[i], name) == 0)
      return 1;
  return 0;
}
