/* orphans.c's age of a file: a name made by link() and rename() is young
 * though it carries an old file's mtime (an upload of bytes stored before,
 * linked by jobs.c's link_same_upload through od_file_link; a cache hit's
 * model.tmp), so the shared data dir's sweep never takes it for an orphan
 * between its rename and its record's insert. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "jobs_internal.h"

#define AGE_S 3600.0 /* --orphan-age's default */

/* A folder of the test's own (mkdtemp in $TMPDIR, else /tmp), removed
 * with what it holds after each case. */
static char dir[512], src[600], dst[600], tmp[610];

static void cleanup(void) {
  unlink(src);
  unlink(dst);
  unlink(tmp);
  rmdir(dir);
}

/* src: an upload stored two --orphan-age ago (its mtime set back). */
static void old_upload(void) {
  const char *base = getenv("TMPDIR");
  snprintf(dir, sizeof dir, "%s/od_orphans.XXXXXX",
           base != NULL && base[0] ? base : "/tmp");
  assert_non_null(mkdtemp(dir));
  snprintf(src, sizeof src, "%s/00000000-0000-4000-8000-000000000001.png", dir);
  snprintf(dst, sizeof dst, "%s/00000000-0000-4000-8000-000000000002.png", dir);
  snprintf(tmp, sizeof tmp, "%s.tmp", dst);
  static const uint8_t png[] = {0x89, 'P', 'N', 'G'};
  assert_int_equal(od_file_write_opt(src, png, sizeof png, 1), 0);
  struct timeval tv[2] = {{time(NULL) - 2 * (time_t)AGE_S, 0},
                          {time(NULL) - 2 * (time_t)AGE_S, 0}};
  assert_int_equal(utimes(src, tv), 0);
}

/* The new name of the same bytes: its mtime is the old one, yet the sweep
 * ages it from now. The old rule (mtime alone) took it for an orphan. */
static void test_linked_upload_is_young(void **state) {
  (void)state;
  old_upload();
  assert_int_equal(od_file_link(src, dst, 1), 0);
  struct stat st;
  assert_int_equal(stat(dst, &st), 0);
  double now = od_wall(), older = now - AGE_S;
  assert_true((double)st.st_mtime < older); /* what the link carries */
  assert_true(od_orphan_time(&st) > older);
  assert_true(od_orphan_time(&st) >= now - 60);
  cleanup();
}

/* The PATH.tmp a link goes through (a cache hit's model before its
 * rename): young too, from link() alone. */
static void test_link_tmp_is_young(void **state) {
  (void)state;
  old_upload();
  assert_int_equal(link(src, tmp), 0);
  struct stat st;
  assert_int_equal(stat(tmp, &st), 0);
  double older = od_wall() - AGE_S;
  assert_true((double)st.st_mtime < older);
  assert_true(od_orphan_time(&st) > older);
  cleanup();
}

/* A file written later than its last rename ages from its mtime. */
static void test_later_of_the_two(void **state) {
  (void)state;
  struct stat st;
  memset(&st, 0, sizeof st);
  st.st_mtime = 2000;
  st.st_ctime = 1000;
  assert_true(od_orphan_time(&st) == 2000.0);
  st.st_ctime = 3000;
  assert_true(od_orphan_time(&st) == 3000.0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_linked_upload_is_young),
      cmocka_unit_test(test_link_tmp_is_young),
      cmocka_unit_test(test_later_of_the_two),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  cleanup();
  return rc;
}
