/* test_od_hosts.c: --allowed-hosts (src/hosts.c), the DNS rebinding
 * defence: what parses, what is refused with a sentence, the default on a
 * loopback and on another listen address (the service tests may listen on
 * 127.0.0.1 only, so the non-loopback default is decided here), and which
 * Host header values pass. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* After the four above, which it needs. */
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "orfeasd.h"

static od_hosts hosts; /* large: not on the stack */

static void test_parse(void **s) {
  (void)s;
  char err[300];
  assert_int_equal(od_hosts_parse(&hosts, "", "127.0.0.1", err, sizeof err), 0);
  assert_false(hosts.given);
  assert_int_equal(hosts.n, 0);
  assert_int_equal(od_hosts_parse(&hosts,
                                  " Studio.Example., 192.0.2.10 ,"
                                  "[2001:DB8:0::1],,my_host",
                                  "127.0.0.1", err, sizeof err),
                   0);
  assert_true(hosts.given);
  assert_int_equal(hosts.n, 4);
  assert_string_equal(hosts.names[0], "studio.example");
  assert_string_equal(hosts.names[2], "[2001:db8::1]");
  assert_int_equal(od_hosts_parse(&hosts, "*", "127.0.0.1", err, sizeof err),
                   0);
  assert_true(hosts.any);
  static const struct {
    const char *spec, *why;
  } bad[] = {
      {"http://studio.example", "not a URL"},
      {"studio.example:443", "without its port"},
      {"::1", "without its port"},
      {"*.example.org", "wildcard"},
      {".example.org", "host name or IP literal"},
      {"a..b", "host name or IP literal"},
      {"a b", "host name or IP literal"},
      {"[::g]", "host name or IP literal"},
      {"ok.example,[::1", "host name or IP literal"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    err[0] = '\0';
    if (od_hosts_parse(&hosts, bad[i].spec, "127.0.0.1", err, sizeof err) != -1)
      fail_msg("accepted %s", bad[i].spec);
    if (strstr(err, "--allowed-hosts") == NULL ||
        strstr(err, bad[i].why) == NULL)
      fail_msg("%s: %s", bad[i].spec, err);
  }
  char many[4096];
  size_t used = 0;
  for (int i = 0; i <= OD_HOSTS_MAX; i++)
    used +=
        (size_t)snprintf(many + used, sizeof many - used, "h%d.example,", i);
  assert_int_equal(od_hosts_parse(&hosts, many, "127.0.0.1", err, sizeof err),
                   -1);
  assert_non_null(strstr(err, "at most"));
}

/* The default on a loopback listener: loopback names and the address
 * itself, whatever the port and case; nothing else. */
static void test_loopback_default(void **s) {
  (void)s;
  char err[300];
  assert_int_equal(od_hosts_parse(&hosts, NULL, "127.0.0.5", err, sizeof err),
                   0);
  assert_false(hosts.any);
  static const char *const pass[] = {
      "localhost",         "localhost:5000", "LOCALHOST:5000",
      "localhost.:5000",   "a.b.localhost",  "Studio.LocalHost:80",
      "127.0.0.1:5000",    "127.255.0.9",    "[::1]:5000",
      "[0:0:0:0:0:0:0:1]", "127.0.0.5:5000", NULL /* no Host */,
      "" /* empty Host */,
  };
  for (size_t i = 0; i < sizeof pass / sizeof pass[0]; i++)
    if (!od_hosts_allowed(&hosts, pass[i]))
      fail_msg("refused %s", pass[i] ? pass[i] : "(none)");
  static const char *const refuse[] = {
      "attacker.example:5000",
      "attacker.example",
      "localhost.attacker.example",
      "127.0.0.1.nip.io:5000",
      "localhostx",
      "xlocalhost",
      ".localhost",
      "0x7f.1",
      "2130706433",
      "128.0.0.1",
      "0.0.0.0:5000",
      "[::2]:5000",
      "[::ffff:127.0.0.1]",
      "::1",
      "[::1",
      "[::1]x",
      "localhost:",
      "localhost:50a",
      "localhost:5000:1",
      "local host",
  };
  for (size_t i = 0; i < sizeof refuse / sizeof refuse[0]; i++)
    if (od_hosts_allowed(&hosts, refuse[i]))
      fail_msg("allowed %s", refuse[i]);
}

/* Off loopback without the flag: any Host (orfeasd cannot know its public
 * names); with it, the list plus loopback names and the address. */
static void test_other_listener(void **s) {
  (void)s;
  char err[300];
  static const char *const addrs[] = {"0.0.0.0", "10.0.0.5", "192.0.2.1"};
  for (size_t i = 0; i < sizeof addrs / sizeof addrs[0]; i++) {
    assert_int_equal(od_hosts_parse(&hosts, "", addrs[i], err, sizeof err), 0);
    assert_true(hosts.any);
    assert_true(od_hosts_allowed(&hosts, "attacker.example:5000"));
    assert_true(od_hosts_allowed(&hosts, "not even : a host"));
  }
  assert_false(od_hosts_listen_is_loopback("0.0.0.0"));
  assert_false(od_hosts_listen_is_loopback("126.255.255.255"));
  assert_true(od_hosts_listen_is_loopback("127.0.0.1"));
  assert_true(od_hosts_listen_is_loopback("127.1.2.3"));
  assert_false(od_hosts_listen_is_loopback(""));
  assert_int_equal(od_hosts_parse(&hosts, "studio.example,[2001:db8::1]",
                                  "10.0.0.5", err, sizeof err),
                   0);
  assert_false(hosts.any);
  assert_true(od_hosts_allowed(&hosts, "studio.example"));
  assert_true(od_hosts_allowed(&hosts, "STUDIO.example.:443"));
  assert_true(od_hosts_allowed(&hosts, "[2001:db8:0:0::1]:8443"));
  assert_true(od_hosts_allowed(&hosts, "10.0.0.5:5000"));
  assert_true(od_hosts_allowed(&hosts, "localhost:5000"));
  assert_true(od_hosts_allowed(&hosts, "127.0.0.1"));
  assert_false(od_hosts_allowed(&hosts, "10.0.0.6:5000"));
  assert_false(od_hosts_allowed(&hosts, "www.studio.example"));
  assert_false(od_hosts_allowed(&hosts, "studio.example.attacker.example"));
  assert_false(od_hosts_allowed(&hosts, "studio-example"));
  /* "*" on a loopback listener: the defence off. */
  assert_int_equal(
      od_hosts_parse(&hosts, "studio.example, *", "127.0.0.1", err, sizeof err),
      0);
  assert_true(od_hosts_allowed(&hosts, "attacker.example:5000"));
}

/* The flag and its variable reach the config as given. */
static const char *env_hosts(const char *name) {
  return strcmp(name, "ORFEAS_ALLOWED_HOSTS") == 0 ? "from.env" : NULL;
}

static void test_config(void **s) {
  (void)s;
  static od_config c;
  char err[300];
  od_config_defaults(&c);
  char *argv[] = {"orfeasd", NULL};
  assert_int_equal(od_config_parse(&c, 1, argv, env_hosts, err, sizeof err), 0);
  assert_string_equal(c.allowed_hosts, "from.env");
  od_config_defaults(&c);
  char *argv2[] = {"orfeasd", "--allowed-hosts", "a.example,b.example", NULL};
  assert_int_equal(od_config_parse(&c, 3, argv2, env_hosts, err, sizeof err),
                   0);
  assert_string_equal(c.allowed_hosts, "a.example,b.example");
  char usage[16384];
  od_config_usage(usage, sizeof usage);
  assert_non_null(strstr(usage, "--allowed-hosts"));
  assert_non_null(strstr(usage, "ORFEAS_ALLOWED_HOSTS"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse),
      cmocka_unit_test(test_loopback_default),
      cmocka_unit_test(test_other_listener),
      cmocka_unit_test(test_config),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
