/* --trusted-proxies and the client address of a request (src/proxy.c): the
 * CIDR list, the rightmost-untrusted rule, the entry forms proxies write,
 * and what is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "orfeasd.h"

static uint32_t ip(const char *s) {
  struct in_addr a;
  assert_int_equal(inet_pton(AF_INET, s, &a), 1);
  return ntohl(a.s_addr);
}

static void parses_cidr_lists(void **state) {
  (void)state;
  od_proxies p;
  char err[256];
  assert_int_equal(od_proxies_parse(&p, "", err, sizeof err), 0);
  assert_int_equal(p.n, 0);
  assert_int_equal(od_proxies_parse(&p, "127.0.0.1/32, 10.0.0.0/8,192.168.1.7",
                                    err, sizeof err),
                   0);
  assert_int_equal(p.n, 3);
  assert_true(od_proxies_trusted_v4(&p, ip("127.0.0.1")));
  assert_false(od_proxies_trusted_v4(&p, ip("127.0.0.2")));
  assert_true(od_proxies_trusted_v4(&p, ip("10.255.1.2")));
  assert_false(od_proxies_trusted_v4(&p, ip("11.0.0.1")));
  assert_true(od_proxies_trusted_v4(&p, ip("192.168.1.7")));
  assert_false(od_proxies_trusted_v4(&p, ip("192.168.1.8")));
  /* A host part past the prefix is masked off: 10.1.2.3/8 is 10/8. */
  assert_int_equal(od_proxies_parse(&p, "10.1.2.3/8", err, sizeof err), 0);
  assert_true(od_proxies_trusted_v4(&p, ip("10.9.9.9")));
  assert_int_equal(od_proxies_parse(&p, "0.0.0.0/0", err, sizeof err), 0);
  assert_true(od_proxies_trusted_v4(&p, ip("8.8.8.8")));
}

static void refuses_bad_entries(void **state) {
  (void)state;
  od_proxies p;
  char err[256];
  const char *bad[] = {"10.0.0.0/33", "10.0.0/8",  "::1",       "10.0.0.0/",
                       "10.0.0.0/8x", "localhost", "1.2.3.4/-1"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_int_equal(od_proxies_parse(&p, bad[i], err, sizeof err), -1);
    assert_non_null(strstr(err, "--trusted-proxies"));
  }
  char many[2048] = "";
  for (int i = 0; i <= OD_PROXIES_MAX; i++) {
    size_t n = strlen(many);
    snprintf(many + n, sizeof many - n, "10.0.%d.0/24,", i);
  }
  assert_int_equal(od_proxies_parse(&p, many, err, sizeof err), -1);
}

static void rightmost_untrusted_is_the_client(void **state) {
  (void)state;
  od_proxies p;
  char err[256], out[64];
  assert_int_equal(
      od_proxies_parse(&p, "127.0.0.1,10.0.0.0/8", err, sizeof err), 0);
  uint32_t proxy = ip("127.0.0.1");
  /* No header: the peer. */
  assert_int_equal(od_client_address(&p, proxy, NULL, out, sizeof out),
                   OD_XFF_NONE);
  assert_string_equal(out, "127.0.0.1");
  assert_int_equal(od_client_address(&p, proxy, "203.0.113.7", out, sizeof out),
                   OD_XFF_USED);
  assert_string_equal(out, "203.0.113.7");
  /* What the client wrote on the left does not count. */
  assert_int_equal(
      od_client_address(&p, proxy, "1.1.1.1, 203.0.113.7", out, sizeof out),
      OD_XFF_USED);
  assert_string_equal(out, "203.0.113.7");
  /* Trusted hops on the right are skipped. */
  assert_int_equal(od_client_address(&p, proxy,
                                     "1.1.1.1,203.0.113.7 , 10.1.1.1,10.2.2.2",
                                     out, sizeof out),
                   OD_XFF_USED);
  assert_string_equal(out, "203.0.113.7");
  /* Every entry trusted: the leftmost. */
  assert_int_equal(
      od_client_address(&p, proxy, "10.3.3.3, 10.1.1.1", out, sizeof out),
      OD_XFF_USED);
  assert_string_equal(out, "10.3.3.3");
}

static void entry_forms(void **state) {
  (void)state;
  od_proxies p;
  char err[256], out[64];
  assert_int_equal(od_proxies_parse(&p, "127.0.0.1", err, sizeof err), 0);
  uint32_t proxy = ip("127.0.0.1");
  static const struct {
    const char *xff, *want;
  } ok[] = {{"203.0.113.7:8080", "203.0.113.7"},
            {"[2001:DB8::1]:443", "2001:db8::1"},
            {"2001:db8:0:0::1", "2001:db8::1"},
            {"\t203.0.113.7 ", "203.0.113.7"},
            {"::ffff:1.2.3.4", "::ffff:1.2.3.4"}};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    assert_int_equal(od_client_address(&p, proxy, ok[i].xff, out, sizeof out),
                     OD_XFF_USED);
    assert_string_equal(out, ok[i].want);
  }
  /* Junk, "unknown", an empty entry, an over-long one: the peer. */
  const char *bad[] = {"unknown",
                       "",
                       "1.2.3.4,",
                       "[::1",
                       "1.2.3.4.5",
                       "203.0.113.7, junk",
                       "1111:2222:3333:4444:5555:6666:7777:8888:9999:0000:1"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_int_equal(od_client_address(&p, proxy, bad[i], out, sizeof out),
                     OD_XFF_MALFORMED);
    assert_string_equal(out, "127.0.0.1");
  }
}

static void untrusted_peer_is_the_client(void **state) {
  (void)state;
  od_proxies p;
  char err[256], out[64];
  assert_int_equal(od_proxies_parse(&p, "", err, sizeof err), 0);
  assert_int_equal(
      od_client_address(&p, ip("127.0.0.1"), "203.0.113.7", out, sizeof out),
      OD_XFF_IGNORED);
  assert_string_equal(out, "127.0.0.1");
  assert_int_equal(od_proxies_parse(&p, "10.0.0.0/8", err, sizeof err), 0);
  assert_int_equal(
      od_client_address(&p, ip("192.0.2.1"), "10.0.0.1", out, sizeof out),
      OD_XFF_IGNORED);
  assert_string_equal(out, "192.0.2.1");
  assert_string_equal(od_xff_result_name(OD_XFF_IGNORED), "ignored");
}

static void rate_key_is_the_v6_prefix(void **state) {
  (void)state;
  char out[64];
  od_rate_key("2001:db8:1:2:aaaa:bbbb:cccc:dddd", out, sizeof out);
  assert_string_equal(out, "2001:db8:1:2::/64");
  od_rate_key("2001:db8:1:2::1", out, sizeof out);
  assert_string_equal(out, "2001:db8:1:2::/64");
  od_rate_key("2001:db8::1", out, sizeof out);
  assert_string_equal(out, "2001:db8::/64");
  od_rate_key("203.0.113.7", out, sizeof out);
  assert_string_equal(out, "203.0.113.7");
  od_rate_key("unknown", out, sizeof out);
  assert_string_equal(out, "unknown");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(rate_key_is_the_v6_prefix),
      cmocka_unit_test(parses_cidr_lists),
      cmocka_unit_test(refuses_bad_entries),
      cmocka_unit_test(rightmost_untrusted_is_the_client),
      cmocka_unit_test(entry_forms),
      cmocka_unit_test(untrusted_peer_is_the_client),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
