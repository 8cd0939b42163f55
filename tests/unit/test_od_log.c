/* The service log (src/log.c): with a stderr that nobody reads, od_log
 * never blocks and counts what it drops; every line that arrives is whole;
 * the writer says how many it dropped; levels and JSON lines.
 *
 * The log's fd is a pipe of one page here, read only when the test says
 * so. A blocking write anywhere would hang the test (ctest's timeout fails
 * it); the waits for the writer have generous deadlines (TSan, a loaded
 * machine). */
#include <fcntl.h>
#include <regex.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>

#include <cmocka.h>

#include "orfeasd.h"

static int rd = -1; /* the read end of the log's pipe */

/* Everything in the pipe now (non-blocking), appended to buf. */
static size_t drain(char *buf, size_t cap, size_t used) {
  ssize_t n;
  while (used + 1 < cap && (n = read(rd, buf + used, cap - 1 - used)) > 0)
    used += (size_t)n;
  buf[used] = '\0';
  return used;
}

/* The write end of a one-page pipe; rd gets the read end. */
static int small_pipe(void) {
  int p[2];
  assert_int_equal(pipe(p), 0);
  fcntl(p[1], F_SETPIPE_SZ, 4096);
  fcntl(p[0], F_SETFL, O_NONBLOCK);
  rd = p[0];
  return p[1];
}

/* The logged lines ("line NNNN") in buf. */
static uint64_t count_lines(const char *buf) {
  uint64_t k = 0;
  for (const char *p = buf; (p = strstr(p, "orfeasd: line ")) != NULL; p++)
    k++;
  return k;
}

static void test_log(void **state) {
  (void)state;
  static char buf[1 << 20];
  od_log_opts o = {.level = OD_LOG_INFO,
                   .json = 0,
                   .buffer_bytes = 4096,
                   .fd = small_pipe()};
  char err[128];
  assert_int_equal(od_log_start(&o, err, sizeof err), 0);
  /* Far more than the pipe (4 KiB) and the ring (4 KiB) hold. */
  for (int i = 0; i < 2000; i++)
    od_log("line %04d %s", i,
           "................................................");
  od_logl(OD_LOG_DEBUG, "a debug line");
  uint64_t dropped = od_log_dropped();
  assert_true(dropped > 0);

  /* Read until the writer has caught up: every line not dropped has come,
   * and the last thing written is its note of what it dropped. A note also
   * comes whenever it caught up in between, so a note at the end alone is
   * not the end (a loaded machine stopped here once, with lines still to
   * come). */
  static const char tail[] = "(--log-buffer-kb)\n";
  size_t n = 0;
  for (int tries = 0;
       tries < 10000 &&
       (n < sizeof tail || strcmp(buf + n - (sizeof tail - 1), tail) != 0 ||
        count_lines(buf) + dropped < 2000);
       tries++) {
    n = drain(buf, sizeof buf, n);
    nanosleep(&(struct timespec){0, 2000000}, NULL);
  }
  assert_non_null(strstr(buf, "orfeasd: warning: log: "));
  assert_null(strstr(buf, "a debug line"));
  /* Every line whole, in order. */
  regex_t re;
  assert_int_equal(
      regcomp(&re,
              "^[0-9T:.-]+Z orfeasd: (line [0-9]{4} \\.+|warning: log: [0-9]+ "
              "lines dropped: .*)$",
              REG_EXTENDED | REG_NOSUB),
      0);
  int lines = 0, last = -1;
  for (char *save, *ln = strtok_r(buf, "\n", &save); ln;
       ln = strtok_r(NULL, "\n", &save), lines++) {
    if (regexec(&re, ln, 0, NULL, 0) != 0)
      fail_msg("a broken line: \"%s\"", ln);
    const char *num = strstr(ln, "line ");
    if (num != NULL) {
      int k = (int)strtol(num + 5, NULL, 10);
      assert_true(k > last);
      last = k;
    }
  }
  regfree(&re);
  assert_true(lines > 0 && (uint64_t)lines + dropped >= 2000);

  /* JSON lines: a second start changes the format and level only. */
  o.json = 1;
  o.level = OD_LOG_DEBUG;
  assert_int_equal(od_log_start(&o, err, sizeof err), 0);
  od_logl(OD_LOG_DEBUG, "say \"hi\"\n\tto\\all\x01");
  od_log_stop(20.0); /* the writer empties the ring first */
  n = drain(buf, sizeof buf, 0);
  assert_non_null(strstr(buf, "\"level\":\"debug\",\"msg\":\"say \\\"hi\\\"\\n"
                              "\\u0009to\\\\all\\u0001\"}\n"));
  /* After the stop (with a writer that finished): written at once. */
  od_log("after stop");
  n = drain(buf, sizeof buf, 0);
  assert_non_null(strstr(buf, "\"msg\":\"after stop\"}\n"));
}

static void test_levels(void **state) {
  (void)state;
  od_log_level l;
  assert_int_equal(od_log_level_parse("warn", &l), 0);
  assert_int_equal(l, OD_LOG_WARN);
  assert_int_equal(od_log_level_parse("error", &l), 0);
  assert_int_equal(l, OD_LOG_ERROR);
  assert_int_equal(od_log_level_parse("loud", &l), -1);
  assert_string_equal(od_log_level_name(OD_LOG_DEBUG), "debug");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_levels),
      cmocka_unit_test(test_log),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
