/* test_od_static.c: the static file rules of src/static.c. Paths that could
 * leave the folder are refused before any file system call; opening never
 * follows a symbolic link (one pointing outside, one inside, one in the
 * middle of a path) and serves regular files only (a FIFO does not hang);
 * types and the immutable rule. Also under ASan. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* After the four above, which it needs. */
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "orfeasd.h"

static void test_paths(void **s) {
  (void)s;
  static const char *const good[] = {"index.html", "studio.js",
                                     "vendor/three-0.187.0/three.module.js",
                                     "a/b/c/d/e/f/g/h.js", "x-y_z.1.css"};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
    if (!od_static_path_ok(good[i]))
      fail_msg("refused %s", good[i]);
  char longp[300];
  memset(longp, 'a', sizeof longp - 1);
  longp[sizeof longp - 1] = '\0';
  static const char *const bad[] = {
      "",          "/etc/passwd",
      "../main.c", "a/../../b",
      "..",        ".",
      ".hidden",   "a/.git/config",
      "a//b",      "a/",
      "a\\..\\b",  "a/b c",
      "a%2e%2e",   "a/b/c/d/e/f/g/h/i.js",
      "a\nb",      "vendor/three/../../x",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (od_static_path_ok(bad[i]))
      fail_msg("accepted %s", bad[i]);
  assert_false(od_static_path_ok(longp));
}

static void test_types(void **s) {
  (void)s;
  assert_string_equal(od_static_type("index.html"), "text/html; charset=utf-8");
  assert_string_equal(od_static_type("a/b.js"),
                      "text/javascript; charset=utf-8");
  assert_string_equal(od_static_type("s.css"), "text/css; charset=utf-8");
  assert_string_equal(od_static_type("f.svg"), "image/svg+xml");
  assert_string_equal(od_static_type("vendor/three-1.0/LICENSE"),
                      "text/plain; charset=utf-8");
  assert_null(od_static_type("a.exe"));
  assert_null(od_static_type("Makefile"));
  assert_null(od_static_type("a.js.bak"));
  assert_true(od_static_immutable("vendor/three-0.187.0/three.module.js"));
  assert_false(od_static_immutable("vendor/three.js"));
  assert_false(od_static_immutable("vendor/three/x.js"));
  assert_false(od_static_immutable("studio-2.js"));
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static void test_open(void **s) {
  (void)s;
  char root[] = "/tmp/od_static_XXXXXX";
  assert_non_null(mkdtemp(root));
  char p[512], q[512];
  snprintf(p, sizeof p, "%s/site", root);
  assert_int_equal(mkdir(p, 0700), 0);
  snprintf(p, sizeof p, "%s/site/sub", root);
  assert_int_equal(mkdir(p, 0700), 0);
  snprintf(p, sizeof p, "%s/site/index.html", root);
  write_file(p, "<!doctype html>");
  snprintf(p, sizeof p, "%s/site/sub/a.js", root);
  write_file(p, "x");
  snprintf(p, sizeof p, "%s/secret.txt", root);
  write_file(p, "secret");
  /* A link to a file outside, one to a file inside, a linked folder. */
  snprintf(q, sizeof q, "%s/site/out.txt", root);
  assert_int_equal(symlink(p, q), 0);
  snprintf(q, sizeof q, "%s/site/in.html", root);
  assert_int_equal(symlink("index.html", q), 0);
  snprintf(p, sizeof p, "%s", root);
  snprintf(q, sizeof q, "%s/site/up", root);
  assert_int_equal(symlink(p, q), 0);
  snprintf(q, sizeof q, "%s/site/pipe.txt", root);
  assert_int_equal(mkfifo(q, 0600), 0);

  snprintf(p, sizeof p, "%s/site", root);
  int dir = open(p, O_RDONLY | O_DIRECTORY);
  assert_true(dir >= 0);
  uint64_t size = 0;
  time_t mt = 0;
  int fd = od_static_open(dir, "index.html", &size, &mt);
  assert_true(fd >= 0);
  assert_int_equal(size, 15);
  assert_true(mt > 0);
  close(fd);
  fd = od_static_open(dir, "sub/a.js", &size, &mt);
  assert_true(fd >= 0);
  close(fd);
  static const char *const refused[] = {
      "out.txt", "in.html",    "up/secret.txt", "pipe.txt",
      "sub",     "missing.js", "../secret.txt", "sub/../index.html"};
  for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
    if (od_static_open(dir, refused[i], &size, &mt) >= 0)
      fail_msg("opened %s", refused[i]);
  assert_int_equal(od_static_open(-1, "index.html", &size, &mt), -1);
  close(dir);
  static const char *const rm[] = {
      "site/out.txt",  "site/in.html",    "site/up",   "site/pipe.txt",
      "site/sub/a.js", "site/index.html", "secret.txt"};
  for (size_t i = 0; i < sizeof rm / sizeof rm[0]; i++) {
    snprintf(p, sizeof p, "%s/%s", root, rm[i]);
    unlink(p);
  }
  snprintf(p, sizeof p, "%s/site/sub", root);
  rmdir(p);
  snprintf(p, sizeof p, "%s/site", root);
  rmdir(p);
  rmdir(root);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_paths),
      cmocka_unit_test(test_types),
      cmocka_unit_test(test_open),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
