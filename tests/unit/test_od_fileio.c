/* fileio.c's writes: every size lands byte for byte under its final name
 * with no PATH.tmp left, through the page cache or past it (O_DIRECT for
 * the whole blocks of a file of 64 KiB or more), on a file system that
 * takes O_DIRECT (the data dir's kind: ext4 here and in CI) and on one that
 * may not (tmpfs), durable or not, over an existing file or not. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "orfeasd.h"

/* Where the ext4-like folder goes: argv[1] (CMake passes the build tree's
 * tests folder: the disk a data dir would be on), else ".". */
static const char *test_base = ".";

/* Both sides of each boundary: the 4 KiB block, DIRECT_MIN (64 KiB), the
 * 1 MiB bounce buffer; a model-sized file with a tail. */
static const size_t sizes[] = {0,
                               1,
                               4095,
                               4096,
                               4097,
                               65535,
                               65536,
                               65537,
                               (1u << 20) - 4096,
                               1u << 20,
                               (1u << 20) + 4097,
                               (3u << 20) + 123};

/* Bytes that differ at every offset and between the two passes, at a
 * 4 KiB-aligned address (written with O_DIRECT as they are) or one byte
 * past it (through the bounce buffer); *base is what to free. */
static uint8_t *pattern(size_t n, unsigned seed, int aligned, void **base) {
  assert_int_equal(posix_memalign(base, 4096, n + 1), 0);
  uint8_t *p = (uint8_t *)*base + (aligned ? 0 : 1);
  for (size_t i = 0; i < n; i++)
    p[i] = (uint8_t)((i * 131u + i / 4096u + seed * 17u) & 0xff);
  return p;
}

/* Writes every size into dir (twice: the second over the first, shorter
 * where sizes shrink) and reads each back. */
static void write_sizes(const char *dir, int durable) {
  for (unsigned pass = 0; pass < 2; pass++) {
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
      size_t n =
          pass == 0 ? sizes[k] : sizes[sizeof sizes / sizeof sizes[0] - 1 - k];
      char path[256], tmp[264];
      snprintf(path, sizeof path, "%s/f%zu", dir, k);
      snprintf(tmp, sizeof tmp, "%s.tmp", path);
      void *base;
      uint8_t *data = pattern(n, pass + 1, pass == 0, &base);
      if (od_file_write_opt(path, data, n, durable) != 0)
        fail_msg("write %zu bytes to %s: %s", n, path, strerror(errno));
      size_t got = 0;
      uint8_t *back = od_file_read(path, &got);
      assert_non_null(back);
      assert_int_equal(got, n);
      if (n > 0 && memcmp(back, data, n) != 0)
        fail_msg("%s: %zu bytes written, different bytes read back", path, n);
      assert_int_equal(access(tmp, F_OK), -1);
      free(back);
      free(base);
    }
  }
}

/* A folder for the test under `base`, removed with its files after. */
static void with_dir(const char *base, void (*fn)(const char *, void *),
                     void *arg) {
  char dir[256];
  snprintf(dir, sizeof dir, "%s/od-fileio-XXXXXX", base);
  if (mkdtemp(dir) == NULL)
    fail_msg("mkdtemp under %s: %s", base, strerror(errno));
  fn(dir, arg);
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    char path[300];
    snprintf(path, sizeof path, "%s/f%zu", dir, k);
    unlink(path);
  }
  assert_int_equal(rmdir(dir), 0);
}

static void run_sizes(const char *dir, void *arg) {
  write_sizes(dir, *(int *)arg);
}

/* The build tree's file system: durable and not. */
static void test_sizes_here(void **state) {
  (void)state;
  int durable = 1;
  with_dir(test_base, run_sizes, &durable);
  durable = 0;
  with_dir(test_base, run_sizes, &durable);
}

/* tmpfs (/dev/shm): O_DIRECT refused or taken, the bytes are the same. */
static void test_sizes_tmpfs(void **state) {
  (void)state;
  struct stat st;
  if (stat("/dev/shm", &st) != 0 || !S_ISDIR(st.st_mode))
    skip();
  int durable = 1;
  with_dir("/dev/shm", run_sizes, &durable);
}

/* Pages of path that are in the page cache, out of *total. */
static size_t cached_pages(const char *path, size_t *total) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  assert_true(fd >= 0);
  struct stat st;
  assert_int_equal(fstat(fd, &st), 0);
  size_t page = (size_t)sysconf(_SC_PAGESIZE), len = (size_t)st.st_size;
  void *m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
  assert_true(m != MAP_FAILED);
  *total = (len + page - 1) / page;
  unsigned char *vec = malloc(*total);
  assert_non_null(vec);
  assert_int_equal(mincore(m, len, vec), 0);
  size_t in = 0;
  for (size_t i = 0; i < *total; i++)
    in += vec[i] & 1;
  free(vec);
  munmap(m, len);
  close(fd);
  return in;
}

/* A 2 MiB + tail file on a file system that takes O_DIRECT is written past
 * the page cache: only its tail's page is cached right after the write
 * (through the page cache, all 514 would be). Skipped where O_DIRECT is
 * refused (then the buffered path above is what runs). */
static void run_direct(const char *dir, void *arg) {
  (void)arg;
  char probe[300], path[300];
  snprintf(probe, sizeof probe, "%s/probe", dir);
  /* A file system may take O_DIRECT at open and refuse the write (then
   * fileio.c writes through the page cache, as it should). */
  int fd = open(probe, O_WRONLY | O_CREAT | O_DIRECT | O_CLOEXEC, 0600);
  void *block = NULL;
  int took = fd >= 0 && posix_memalign(&block, 4096, 4096) == 0 &&
             memset(block, 1, 4096) && pwrite(fd, block, 4096, 0) == 4096;
  int e = errno;
  free(block);
  if (fd >= 0)
    close(fd);
  size_t probe_pages = 0;
  /* tmpfs takes O_DIRECT, and its files are the page cache. */
  int cached = took && cached_pages(probe, &probe_pages) > 0;
  unlink(probe);
  if (!took || cached) {
    print_message("O_DIRECT %s here: nothing to check\n",
                  took ? "keeps the data in the page cache" : strerror(e));
    return;
  }
  size_t n = (2u << 20) + 100;
  for (int aligned = 0; aligned < 2; aligned++) { /* bounced, then as is */
    void *base;
    uint8_t *data = pattern(n, 3, aligned, &base);
    snprintf(path, sizeof path, "%s/f0", dir);
    assert_int_equal(od_file_write(path, data, n), 0);
    size_t total = 0, in = cached_pages(path, &total);
    print_message("%s source: %zu of %zu pages cached after the write\n",
                  aligned ? "aligned" : "unaligned", in, total);
    assert_int_equal(total, 513);
    assert_true(in <= 1);
    free(base);
  }
}

static void test_big_files_skip_the_page_cache(void **state) {
  (void)state;
  with_dir(test_base, run_direct, NULL);
}

int main(int argc, char **argv) {
  if (argc > 1)
    test_base = argv[1];
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sizes_here),
      cmocka_unit_test(test_sizes_tmpfs),
      cmocka_unit_test(test_big_files_skip_the_page_cache),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
