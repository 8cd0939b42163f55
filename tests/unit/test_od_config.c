/* orfeasd config parsing: defaults, environment, flags over environment,
 * and an actionable error for each kind of bad value. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "orfeasd.h"

static const char *no_env(const char *name) {
  (void)name;
  return NULL;
}

static const char *test_env(const char *name) {
  if (strcmp(name, "ORFEAS_WORKERS") == 0)
    return "3";
  if (strcmp(name, "ORFEAS_LISTEN") == 0)
    return "127.0.0.1:6000";
  if (strcmp(name, "ORFEAS_RATE_LIMIT") == 0)
    return "2.5";
  return NULL;
}

static const char *bad_env(const char *name) {
  return strcmp(name, "ORFEAS_QUEUE_SIZE") == 0 ? "lots" : NULL;
}

static int parse(od_config *c, int argc, char **argv,
                 const char *(*env)(const char *), char *err) {
  od_config_defaults(c);
  return od_config_parse(c, argc, argv, env, err, 256);
}

static void test_defaults(void **state) {
  (void)state;
  od_config c;
  char err[256];
  char *argv[] = {"orfeasd"};
  assert_int_equal(parse(&c, 1, argv, no_env, err), 0);
  assert_string_equal(c.listen_host, "127.0.0.1");
  assert_int_equal(c.listen_port, 5000);
  assert_int_equal(c.max_upload_mb, 50);
  assert_true(c.workers >= 1);
  assert_true(c.rate_limit_rps == 0); /* rate limit off by default */
  /* The durable store in the data dir, and its retention. */
  assert_string_equal(c.store, "sqlite:data/jobs.db");
  assert_int_equal(c.max_attempts, 3);
  assert_true(c.result_ttl_s == 86400);
  assert_int_equal(c.refused_hold_s, 60);
  char *dir[] = {"orfeasd", "--data-dir", "/srv/orfeas"};
  assert_int_equal(parse(&c, 3, dir, no_env, err), 0);
  assert_string_equal(c.store, "sqlite:/srv/orfeas/jobs.db");
}

static const char *store_env(const char *name) {
  return strcmp(name, "ORFEAS_STORE") == 0 ? "memory:" : NULL;
}

/* --store / ORFEAS_STORE: a URL whose scheme names a job store; an unknown
 * one is refused at parse time, naming the known ones. */
static void test_store_url(void **state) {
  (void)state;
  od_config c;
  char err[256];
  char *ok[] = {"orfeasd"};
  assert_int_equal(parse(&c, 1, ok, store_env, err), 0);
  assert_string_equal(c.store, "memory:");
  char *bad[] = {"orfeasd", "--store", "mongodb://db/jobs"};
  assert_int_equal(parse(&c, 3, bad, no_env, err), -1);
  assert_non_null(strstr(err, "--store"));
  assert_non_null(strstr(err, "mongodb://db/jobs"));
  assert_non_null(strstr(err, "memory:"));
  assert_non_null(strstr(err, "sqlite:"));
  char *mem[] = {"orfeasd", "--store", "memory:", "--max-attempts", "0"};
  assert_int_equal(parse(&c, 5, mem, no_env, err), -1);
  assert_non_null(strstr(err, "--max-attempts"));
}

static void test_env_then_flags(void **state) {
  (void)state;
  od_config c;
  char err[256];
  char *argv[] = {"orfeasd",           "--workers",    "5",
                  "--data-dir=/tmp/x", "--queue-size", "7"};
  assert_int_equal(parse(&c, 6, argv, test_env, err), 0);
  assert_int_equal(c.workers, 5); /* the flag beats ORFEAS_WORKERS=3 */
  assert_int_equal(c.listen_port, 6000);
  assert_true(c.rate_limit_rps == 2.5);
  assert_string_equal(c.data_dir, "/tmp/x");
  assert_int_equal(c.queue_size, 7);
}

static void test_errors(void **state) {
  (void)state;
  od_config c;
  char err[256];
  struct {
    int argc;
    char *argv[3];
    const char *needle;
  } cases[] = {
      {2, {"orfeasd", "--nope"}, "unknown flag \"--nope\""},
      {2, {"orfeasd", "--workers"}, "--workers needs a value"},
      {3,
       {"orfeasd", "--workers", "0"},
       "--workers: \"0\" is not an integer in 1..256"},
      {3, {"orfeasd", "--workers", "2x"}, "not an integer"},
      {3,
       {"orfeasd", "--listen", "localhost:80"},
       "not a numeric IPv4 address"},
      {3,
       {"orfeasd", "--listen", "127.0.0.1:99999"},
       "not a number in 0..65535"},
      {3, {"orfeasd", "--listen", "5000"}, "expected ADDR:PORT"},
      {3, {"orfeasd", "--rate-limit", "-1"}, "--rate-limit"},
      {2, {"orfeasd", "stray"}, "unexpected argument"},
      {3,
       {"orfeasd", "--log-level", "loud"},
       "--log-level: \"loud\" is not one of"},
      {3,
       {"orfeasd", "--log-format", "xml"},
       "--log-format: \"xml\" is not text or json"},
      {3, {"orfeasd", "--drain-timeout", "0"}, "--drain-timeout"},
      {2,
       {"orfeasd", "--reuse-port=2"},
       "--reuse-port: \"2\" is not an integer in 0..1"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    err[0] = '\0';
    assert_int_equal(parse(&c, cases[i].argc, cases[i].argv, no_env, err), -1);
    if (strstr(err, cases[i].needle) == NULL)
      fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err, cases[i].needle);
  }
  char *argv[] = {"orfeasd"};
  assert_int_equal(parse(&c, 1, argv, bad_env, err), -1);
  assert_non_null(strstr(err, "ORFEAS_QUEUE_SIZE"));
}

/* The process's flags (issue #13): a bare switch, words parsed once. */
static void test_process_flags(void **state) {
  (void)state;
  od_config c;
  char err[256];
  char *none[] = {"orfeasd"};
  assert_int_equal(parse(&c, 1, none, no_env, err), 0);
  assert_int_equal(c.reuse_port, 0);
  assert_int_equal(c.log_level_n, OD_LOG_INFO);
  assert_int_equal(c.log_json, 0);
  assert_true(c.drain_timeout_s == 25);
  assert_int_equal(c.min_free_mb, 256);
  assert_true(c.ws_ping_interval_s == 25 && c.ws_ping_timeout_s == 20);
  char *argv[] = {"orfeasd",           "--reuse-port",    "--log-level", "warn",
                  "--log-format=json", "--drain-timeout", "2.5"};
  assert_int_equal(parse(&c, 7, argv, no_env, err), 0);
  assert_int_equal(c.reuse_port, 1);
  assert_int_equal(c.log_level_n, OD_LOG_WARN);
  assert_int_equal(c.log_json, 1);
  assert_true(c.drain_timeout_s == 2.5);
  char *off[] = {"orfeasd", "--reuse-port=0", "--log-level", "debug"};
  assert_int_equal(parse(&c, 4, off, no_env, err), 0);
  assert_int_equal(c.reuse_port, 0);
  assert_int_equal(c.log_level_n, OD_LOG_DEBUG);
}

static void test_help(void **state) {
  (void)state;
  od_config c;
  /* main.c's size: the whole text must fit (past 8 KiB since
   * --allowed-hosts). */
  static char usage[16384];
  char err[256];
  char *argv[] = {"orfeasd", "--help"};
  assert_int_equal(parse(&c, 2, argv, no_env, err), 1);
  od_config_usage(usage, sizeof usage);
  assert_non_null(strstr(usage, "--max-upload-mb"));
  assert_non_null(strstr(usage, "ORFEAS_MAX_UPLOAD_MB"));
  assert_non_null(strstr(usage, "ORFEAS_DRAIN_TIMEOUT"));
  /* Each number's range, as the parser checks it: a reader of --help
   * knows the bound before trying it. */
  const char *line = strstr(usage, "--request-threads");
  assert_non_null(line);
  const char *nl = strchr(line, '\n');
  assert_non_null(nl);
  const char *range = strstr(line, "[0..64]");
  assert_true(range != NULL && range < nl);
  line = strstr(usage, "--orphan-age");
  assert_non_null(line);
  nl = strchr(line, '\n');
  range = strstr(line, "[60..320000000]");
  assert_true(range != NULL && range < nl);
  char *bad[] = {"orfeasd", "--request-threads", "65"};
  assert_int_equal(parse(&c, 3, bad, no_env, err), -1);
  assert_non_null(strstr(err, "0..64"));
}

static const char *edge_env(const char *name) {
  static const struct {
    const char *name, *value;
  } env[] = {{"ORFEAS_ADMIN_LISTEN", "127.0.0.1:9101"},
             {"ORFEAS_ADMIN_CONNECTIONS", "8"},
             {"ORFEAS_HEADER_TIMEOUT", "2.5"},
             {"ORFEAS_BODY_MIN_RATE", "4096"},
             {"ORFEAS_MAX_CONNS_PER_ADDRESS", "32"},
             {"ORFEAS_MAX_BODY_INFLIGHT_MB", "100"},
             {"ORFEAS_MAX_JSON_KB", "16"},
             {"ORFEAS_TRUSTED_PROXIES", "127.0.0.1/32,10.0.0.0/8"}};
  for (size_t i = 0; i < sizeof env / sizeof env[0]; i++)
    if (strcmp(name, env[i].name) == 0)
      return env[i].value;
  return NULL;
}

/* The HTTP edge's flags (issue #13): defaults, each from its variable and
 * its flag, listed in --help, and refused when bad. */
static void test_edge_flags(void **state) {
  (void)state;
  od_config c;
  char err[256];
  char *none[] = {"orfeasd"};
  assert_int_equal(parse(&c, 1, none, no_env, err), 0);
  assert_string_equal(c.admin_host, "");
  assert_true(c.header_timeout_s == 10);
  assert_int_equal(c.body_min_rate, 1024);
  assert_int_equal(c.max_conns_per_addr, 128);
  assert_int_equal(c.max_body_inflight_mb, 512);
  assert_int_equal(c.max_json_kb, 64);
  assert_int_equal(c.admin_connections, 16);
  assert_int_equal(parse(&c, 1, none, edge_env, err), 0);
  assert_string_equal(c.admin_host, "127.0.0.1");
  assert_int_equal(c.admin_port, 9101);
  assert_int_equal(c.listen_port, 5000); /* --listen is its own field */
  assert_int_equal(c.admin_connections, 8);
  assert_true(c.header_timeout_s == 2.5);
  assert_int_equal(c.body_min_rate, 4096);
  assert_int_equal(c.max_conns_per_addr, 32);
  assert_int_equal(c.max_body_inflight_mb, 100);
  assert_int_equal(c.max_json_kb, 16);
  assert_string_equal(c.trusted_proxies, "127.0.0.1/32,10.0.0.0/8");
  char *flags[] = {"orfeasd", "--admin-listen", "127.0.0.2:0",
                   "--max-conns-per-address", "0"};
  assert_int_equal(parse(&c, 5, flags, edge_env, err), 0);
  assert_string_equal(c.admin_host, "127.0.0.2");
  assert_int_equal(c.admin_port, 0);
  assert_int_equal(c.max_conns_per_addr, 0);
  struct {
    int argc;
    char *argv[3];
    const char *needle;
  } bad[] = {
      {3, {"orfeasd", "--trusted-proxies", "10.0.0.0/40"}, "--trusted-proxies"},
      {3, {"orfeasd", "--trusted-proxies", "::1"}, "not an IPv4 address"},
      {3, {"orfeasd", "--admin-listen", "9101"}, "expected ADDR:PORT"},
      {3, {"orfeasd", "--admin-listen", "127.0.0.1:5000"}, "must differ"},
      {3, {"orfeasd", "--header-timeout", "0"}, "--header-timeout"},
      {3, {"orfeasd", "--max-json-kb", "0"}, "--max-json-kb"},
      {3, {"orfeasd", "--body-min-rate", "-1"}, "--body-min-rate"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    err[0] = '\0';
    assert_int_equal(parse(&c, bad[i].argc, bad[i].argv, no_env, err), -1);
    if (strstr(err, bad[i].needle) == NULL)
      fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err, bad[i].needle);
  }
  char usage[16384];
  od_config_usage(usage, sizeof usage);
  static const char *const listed[] = {
      "--admin-listen",          "ORFEAS_ADMIN_LISTEN",
      "--admin-connections",     "--header-timeout",
      "ORFEAS_HEADER_TIMEOUT",   "--body-min-rate",
      "--max-conns-per-address", "ORFEAS_MAX_CONNS_PER_ADDRESS",
      "--max-body-inflight-mb",  "--max-json-kb",
      "--trusted-proxies",       "ORFEAS_TRUSTED_PROXIES"};
  for (size_t i = 0; i < sizeof listed / sizeof listed[0]; i++)
    assert_non_null(strstr(usage, listed[i]));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_edge_flags),     cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_env_then_flags), cmocka_unit_test(test_store_url),
      cmocka_unit_test(test_errors),         cmocka_unit_test(test_help),
      cmocka_unit_test(test_process_flags),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
