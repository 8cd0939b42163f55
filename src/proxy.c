/* proxy.c: --trusted-proxies, and which address a request comes from.
 *
 * X-Forwarded-For is a list a client can start with anything it likes:
 * each proxy appends the address it received the request from. So it is
 * believed only when the peer itself is a trusted proxy, and then read from
 * the right: the first address that is not a trusted proxy is the client
 * (the "rightmost untrusted" rule; everything to its left was written by
 * the client or by proxies we do not know). Without --trusted-proxies, or
 * from any other peer, the client is the peer address.
 *
 * Entries are IPv4 or IPv6 addresses, optionally with a port (1.2.3.4:80,
 * [2001:db8::1]:443), as proxies write them; each is rewritten in its
 * canonical form, so one client has one rate-limit bucket however a proxy
 * spells its address. An entry that is not an address ("unknown", junk)
 * stops the walk: the request is then keyed by the peer, and counted as
 * malformed. Pure functions (tests/unit/test_od_proxy.c).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orfeasd.h"

/* One "ADDR[/BITS]" IPv4 entry into net/mask. 0, or -1. */
static int parse_cidr(const char *s, size_t len, od_cidr4 *out) {
  char buf[32];
  if (len == 0 || len >= sizeof buf)
    return -1;
  memcpy(buf, s, len);
  buf[len] = '\0';
  long bits = 32;
  char *slash = strchr(buf, '/');
  if (slash != NULL) {
    char *end;
    *slash = '\0';
    errno = 0;
    bits = strtol(slash + 1, &end, 10);
    if (errno || end == slash + 1 || *end != '\0' || bits < 0 || bits > 32)
      return -1;
  }
  struct in_addr a;
  if (inet_pton(AF_INET, buf, &a) != 1)
    return -1;
  out->mask = bits == 0 ? 0 : 0xFFFFFFFFu << (32 - bits);
  out->net = ntohl(a.s_addr) & out->mask;
  return 0;
}

int od_proxies_parse(od_proxies *p, const char *spec, char *err,
                     size_t err_len) {
  memset(p, 0, sizeof *p);
  for (const char *s = spec; s != NULL && *s;) {
    while (*s == ' ' || *s == ',')
      s++;
    if (*s == '\0')
      break;
    size_t n = strcspn(s, ", ");
    if (p->n == OD_PROXIES_MAX) {
      snprintf(err, err_len,
               "--trusted-proxies: more than %d entries (use wider CIDRs)",
               OD_PROXIES_MAX);
      return -1;
    }
    if (parse_cidr(s, n, &p->nets[p->n]) != 0) {
      snprintf(err, err_len,
               "--trusted-proxies: \"%.*s\" is not an IPv4 address or "
               "ADDR/BITS (e.g. 127.0.0.1/32,10.0.0.0/8)",
               (int)(n < 64 ? n : 64), s);
      return -1;
    }
    p->n++;
    s += n;
  }
  return 0;
}

int od_proxies_trusted_v4(const od_proxies *p, uint32_t addr) {
  for (int i = 0; i < p->n; i++)
    if ((addr & p->nets[i].mask) == p->nets[i].net)
      return 1;
  return 0;
}

/* Parses one X-Forwarded-For entry [s, s+len) into its canonical text;
 * *v4 gets the IPv4 address (host order), 0 for IPv6. 0, or -1. */
static int parse_entry(const char *s, size_t len, char *out, size_t out_len,
                       uint32_t *v4) {
  char buf[64];
  while (len > 0 && (*s == ' ' || *s == '\t'))
    s++, len--;
  while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
    len--;
  if (len == 0 || len >= sizeof buf)
    return -1;
  memcpy(buf, s, len);
  buf[len] = '\0';
  char *host = buf;
  if (buf[0] == '[') { /* [v6] or [v6]:port */
    char *close = strchr(buf, ']');
    if (close == NULL || (close[1] != '\0' && close[1] != ':'))
      return -1;
    *close = '\0';
    host = buf + 1;
  } else {
    char *colon = strchr(buf, ':');
    if (colon != NULL && strchr(colon + 1, ':') == NULL)
      *colon = '\0'; /* v4:port (a bare v6 has two colons or more) */
  }
  struct in_addr a4;
  struct in6_addr a6;
  *v4 = 0;
  if (inet_pton(AF_INET, host, &a4) == 1) {
    *v4 = ntohl(a4.s_addr);
    return inet_ntop(AF_INET, &a4, out, (socklen_t)out_len) ? 0 : -1;
  }
  if (inet_pton(AF_INET6, host, &a6) == 1)
    return inet_ntop(AF_INET6, &a6, out, (socklen_t)out_len) ? 0 : -1;
  return -1;
}

void od_rate_key(const char *client, char *out, size_t out_len) {
  struct in6_addr a6;
  char text[INET6_ADDRSTRLEN];
  if (strchr(client, ':') != NULL && inet_pton(AF_INET6, client, &a6) == 1) {
    memset(a6.s6_addr + 8, 0, 8);
    if (inet_ntop(AF_INET6, &a6, text, sizeof text) != NULL) {
      snprintf(out, out_len, "%s/64", text);
      return;
    }
  }
  snprintf(out, out_len, "%s", client);
}

od_xff_result od_client_address(const od_proxies *p, uint32_t peer,
                                const char *xff, char *out, size_t out_len) {
  struct in_addr pa = {.s_addr = htonl(peer)};
  if (inet_ntop(AF_INET, &pa, out, (socklen_t)out_len) == NULL)
    snprintf(out, out_len, "unknown");
  if (xff == NULL)
    return OD_XFF_NONE;
  if (!od_proxies_trusted_v4(p, peer))
    return OD_XFF_IGNORED;
  /* From the right: skip trusted hops; the first other address is the
   * client. When every entry is a trusted proxy, the leftmost one is. */
  char best[INET6_ADDRSTRLEN] = "";
  size_t end = strlen(xff);
  for (;;) {
    size_t start = end;
    while (start > 0 && xff[start - 1] != ',')
      start--;
    char addr[INET6_ADDRSTRLEN];
    uint32_t v4 = 0;
    if (parse_entry(xff + start, end - start, addr, sizeof addr, &v4) != 0)
      return OD_XFF_MALFORMED;
    snprintf(best, sizeof best, "%s", addr);
    if (v4 == 0 || !od_proxies_trusted_v4(p, v4))
      break;
    if (start == 0)
      break;
    end = start - 1;
  }
  snprintf(out, out_len, "%s", best);
  return OD_XFF_USED;
}

const char *od_xff_result_name(od_xff_result r) {
  static const char *const n[OD_XFF_RESULTS] = {"none", "used", "ignored",
                                                "malformed"};
  return (unsigned)r < OD_XFF_RESULTS ? n[r] : "none";
}
