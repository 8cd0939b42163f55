/* orfeasd's bounded queue, rate limiter and result cache: the pure
 * modules, single-threaded and under concurrent use (run under TSan). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "orfeasd.h"

static void test_queue_bounds(void **state) {
  (void)state;
  od_queue *q = od_queue_new(2);
  char id[37];
  assert_int_equal(od_queue_push(q, "a"), 0);
  assert_int_equal(od_queue_push(q, "b"), 1);
  assert_int_equal(od_queue_push(q, "c"), -1); /* full */
  assert_int_equal(od_queue_position(q, "b"), 1);
  assert_int_equal(od_queue_position(q, "c"), -1);
  assert_int_equal(od_queue_peek(q, id), 0);
  assert_string_equal(id, "a");
  assert_int_equal(od_queue_pop(q, id, -1), 0);
  assert_string_equal(id, "a");
  assert_int_equal(od_queue_push(q, "c"), 1);
  assert_int_equal(od_queue_depth(q), 2);
  od_queue_free(q);
}

/* The queue holds copies: the caller's buffer may change after a push. */
static void test_queue_copies_ids(void **state) {
  (void)state;
  od_queue *q = od_queue_new(2);
  char mine[37] = "11111111-1111-4111-8111-111111111111", got[37];
  assert_int_equal(od_queue_push(q, mine), 0);
  memset(mine, 'x', 36);
  assert_int_equal(od_queue_pop(q, got, 0), 0);
  assert_string_equal(got, "11111111-1111-4111-8111-111111111111");
  od_queue_free(q);
}

/* The waiting ids, copied in FIFO order, across the ring's wrap. */
static void test_queue_ids(void **state) {
  (void)state;
  od_queue *q = od_queue_new(3);
  char *ids = (char *)1;
  size_t n = 9;
  assert_int_equal(od_queue_ids(q, &ids, &n), 0);
  assert_null(ids);
  assert_int_equal(n, 0);
  char got[37];
  assert_int_equal(od_queue_push(q, "a"), 0); /* push: the position */
  assert_int_equal(od_queue_push(q, "b"), 1);
  assert_int_equal(od_queue_pop(q, got, 0), 0); /* head moves on */
  assert_int_equal(od_queue_push(q, "c"), 1);
  assert_int_equal(od_queue_push(q, "d"), 2); /* wraps */
  assert_int_equal(od_queue_ids(q, &ids, &n), 0);
  assert_int_equal(n, 3);
  assert_string_equal(ids, "b");
  assert_string_equal(ids + 37, "c");
  assert_string_equal(ids + 74, "d");
  free(ids);
  od_queue_free(q);
}

/* A pop with a timeout on an empty queue comes back empty-handed (1), not
 * closed (-1); a zero timeout does not wait at all. */
static void test_queue_pop_times_out(void **state) {
  (void)state;
  od_queue *q = od_queue_new(2);
  char id[37];
  assert_int_equal(od_queue_pop(q, id, 0), 1);
  assert_int_equal(od_queue_pop(q, id, 20), 1);
  assert_int_equal(od_queue_peek(q, id), -1);
  od_queue_close(q, NULL, NULL);
  assert_int_equal(od_queue_pop(q, id, 20), -1);
  od_queue_free(q);
}

static char dropped[8][37];
static int ndropped;

static void drop(const char *id, void *user) {
  (void)user;
  snprintf(dropped[ndropped++], 37, "%s", id);
}

static void test_queue_close(void **state) {
  (void)state;
  od_queue *q = od_queue_new(4);
  const char *v[3] = {"10", "20", "30"};
  for (int i = 0; i < 3; i++)
    od_queue_push(q, v[i]);
  ndropped = 0;
  od_queue_close(q, drop, NULL);
  assert_int_equal(ndropped, 3); /* every waiting id handed back, FIFO */
  assert_string_equal(dropped[0], "10");
  assert_string_equal(dropped[2], "30");
  char id[37];
  assert_int_equal(od_queue_pop(q, id, -1), -1);
  assert_int_equal(od_queue_push(q, v[0]), -2); /* closed, not full */
  od_queue_free(q);
}

#define PRODUCERS 3
#define PER_PRODUCER 2000

typedef struct {
  od_queue *q;
  _Atomic long sum;
  _Atomic int count;
} qshared;

static void *producer(void *arg) {
  qshared *s = arg;
  char id[37];
  for (long i = 1; i <= PER_PRODUCER; i++) {
    snprintf(id, sizeof id, "%ld", i);
    while (od_queue_push(s->q, id) < 0)
      sched_yield();
  }
  return NULL;
}

static void *consumer(void *arg) {
  qshared *s = arg;
  char id[37];
  while (od_queue_pop(s->q, id, -1) == 0) {
    s->sum += strtol(id, NULL, 10);
    s->count++;
  }
  return NULL;
}

static void test_queue_concurrent(void **state) {
  (void)state;
  qshared s = {.q = od_queue_new(8)};
  pthread_t p[PRODUCERS], c[2];
  for (int i = 0; i < 2; i++)
    pthread_create(&c[i], NULL, consumer, &s);
  for (int i = 0; i < PRODUCERS; i++)
    pthread_create(&p[i], NULL, producer, &s);
  for (int i = 0; i < PRODUCERS; i++)
    pthread_join(p[i], NULL);
  /* Every id pushed is popped exactly once before close ends the pops. */
  while (od_queue_depth(s.q) > 0)
    sched_yield();
  od_queue_close(s.q, NULL, NULL);
  for (int i = 0; i < 2; i++)
    pthread_join(c[i], NULL);
  assert_int_equal(s.count, PRODUCERS * PER_PRODUCER);
  assert_int_equal(s.sum,
                   (long)PRODUCERS * PER_PRODUCER * (PER_PRODUCER + 1) / 2);
  od_queue_free(s.q);
}

static void test_ratelimit(void **state) {
  (void)state;
  od_ratelimit *rl = od_ratelimit_new(1.0, 2, 4);
  assert_int_equal(od_ratelimit_take(rl, "10.0.0.1", 100.0), 0);
  assert_int_equal(od_ratelimit_take(rl, "10.0.0.1", 100.0), 0);
  assert_int_equal(od_ratelimit_take(rl, "10.0.0.1", 100.0),
                   1); /* empty: wait 1 s */
  assert_int_equal(od_ratelimit_take(rl, "10.0.0.2", 100.0),
                   0); /* per address */
  assert_int_equal(od_ratelimit_take(rl, "10.0.0.1", 101.1), 0); /* refilled */
  /* More addresses than slots: old ones are forgotten, nothing grows. */
  char key[32];
  for (int i = 0; i < 100; i++) {
    snprintf(key, sizeof key, "192.168.0.%d", i);
    assert_int_equal(od_ratelimit_take(rl, key, 200.0), 0);
  }
  od_ratelimit_free(rl);
  assert_null(od_ratelimit_new(0, 1, 1));
}

static void key_of(int i, uint8_t k[32]) {
  memset(k, 0, 32);
  k[0] = (uint8_t)i;
  k[31] = (uint8_t)(i >> 8);
}

/* A model file dir/m<i> of 100 bytes of 'a' + i, put under key i (the
 * memory tier takes a copy of its bytes). */
static void put_model(od_cache *c, const char *dir, int i, size_t n) {
  char path[128];
  uint8_t k[32], *data = malloc(n);
  assert_non_null(data);
  memset(data, 'a' + i, n);
  snprintf(path, sizeof path, "%s/m%d", dir, i);
  assert_int_equal(od_file_write(path, data, n), 0);
  key_of(i, k);
  od_cache_meta m = {.score = 0.5 + i, .grade = "B", .printable = i % 2};
  od_cache_put(c, k, &m, data, n, path);
}

/* Gets key i into dir/out; the hit's tier, -1 on a miss. */
static int get_model(od_cache *c, const char *dir, int i, unsigned *miss,
                     uint8_t first_last[2]) {
  char dest[128];
  uint8_t k[32];
  od_cache_meta m;
  size_t len = 0, n = 0;
  od_cache_tier tier;
  snprintf(dest, sizeof dest, "%s/out", dir);
  unlink(dest);
  key_of(i, k);
  int rc = od_cache_get(c, k, dest, 1, &m, &len, &tier, miss);
  if (rc != 1)
    return -1;
  assert_true(m.score == 0.5 + i);
  assert_string_equal(m.grade, "B");
  assert_int_equal(m.printable, i % 2);
  uint8_t *got = od_file_read(dest, &n);
  assert_non_null(got);
  assert_int_equal(n, len);
  first_last[0] = got[0];
  first_last[1] = got[n - 1];
  free(got);
  return (int)tier;
}

static void test_cache_tiers(void **state) {
  (void)state;
  char dir[] = "/tmp/od-cache-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char sub[64], err[256];
  snprintf(sub, sizeof sub, "%s/c", dir);
  od_cache *c = od_cache_new(250, sub, 350, err, sizeof err);
  assert_non_null(c);
  uint8_t fl[2];
  unsigned miss;
  for (int i = 0; i < 4; i++)
    put_model(c, dir, i, 100);
  /* Memory holds 2 x 100 (bound 250), disk 3 x 100 (bound 350). */
  assert_int_equal(od_cache_bytes(c, OD_CACHE_MEMORY), 200);
  assert_int_equal(od_cache_bytes(c, OD_CACHE_DISK), 300);
  assert_int_equal(get_model(c, dir, 3, &miss, fl), OD_CACHE_MEMORY);
  assert_int_equal(fl[0], 'd');
  /* The disk entry is the model file itself, not a copy. */
  char m3[128], b3[128], hx[65] = "";
  struct stat st;
  snprintf(m3, sizeof m3, "%s/m3", dir);
  assert_int_equal(stat(m3, &st), 0);
  assert_int_equal(st.st_nlink, 3); /* m3, the cache entry, out */
  assert_int_equal(get_model(c, dir, 1, &miss, fl), OD_CACHE_DISK);
  assert_int_equal(miss, 1u << OD_CACHE_MEMORY);
  assert_int_equal(fl[1], 'b');
  assert_int_equal(get_model(c, dir, 0, &miss, fl), -1); /* evicted from both */
  assert_int_equal(miss, (1u << OD_CACHE_MEMORY) | (1u << OD_CACHE_DISK));
  put_model(c, dir, 9, 400); /* larger than both bounds: skipped */
  assert_int_equal(get_model(c, dir, 9, &miss, fl), -1);
  od_cache_free(c);

  /* A restart adopts the disk tier's complete entries; a stray temporary
   * file, a model without its report and an old one-file entry go. */
  char tmp[128], lone[200];
  snprintf(tmp, sizeof tmp, "%s/junk.tmp", sub);
  FILE *f = fopen(tmp, "w");
  fclose(f);
  for (int i = 0; i < 64; i++)
    hx[i] = "0123456789abcdef"[(i * 7) % 16];
  snprintf(lone, sizeof lone, "%s/%s.bin", sub, hx);
  f = fopen(lone, "w");
  fclose(f);
  c = od_cache_new(250, sub, 350, err, sizeof err);
  assert_non_null(c);
  assert_int_equal(od_cache_bytes(c, OD_CACHE_DISK), 300);
  assert_int_equal(od_cache_bytes(c, OD_CACHE_MEMORY), 0);
  assert_int_not_equal(access(tmp, F_OK), 0);
  assert_int_not_equal(access(lone, F_OK), 0);
  assert_int_equal(get_model(c, dir, 2, &miss, fl), OD_CACHE_DISK);
  assert_int_equal(fl[0], 'c');
  /* A half entry (its model's length differs from its report's) goes. */
  snprintf(b3, sizeof b3, "%s/m3", dir);
  od_cache_free(c);
  assert_int_equal(truncate(b3, 10), 0); /* the same inode as the entry */
  c = od_cache_new(250, sub, 350, err, sizeof err);
  assert_int_equal(od_cache_bytes(c, OD_CACHE_DISK), 200);
  assert_int_equal(get_model(c, dir, 3, &miss, fl), -1);
  od_cache_free(c);
  char cmd[160];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
}

typedef struct {
  od_cache *c;
  const char *dir;
  int base;
} cache_arg;

static void *cache_worker(void *arg) {
  cache_arg *a = arg;
  uint8_t k[32];
  od_cache_meta m = {.score = 1, .grade = "A"};
  size_t len;
  od_cache_tier tier;
  char src[128], dest[128];
  snprintf(dest, sizeof dest, "%s/out%d", a->dir, a->base);
  for (int i = 0; i < 300; i++) {
    int n = (a->base + i) % 40;
    key_of(n, k);
    if (i % 3 == 0) {
      uint8_t *data = malloc(64);
      memset(data, i, 64);
      snprintf(src, sizeof src, "%s/src%d", a->dir, a->base);
      od_file_write_opt(src, data, 64, 0);
      od_cache_put(a->c, k, &m, data, 64, src);
    } else {
      od_cache_get(a->c, k, dest, 0, &m, &len, &tier, NULL);
    }
  }
  return NULL;
}

static void test_cache_concurrent(void **state) {
  (void)state;
  char dir[] = "/tmp/od-cache-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char err[256], sub[64];
  snprintf(sub, sizeof sub, "%s/c", dir);
  od_cache *c = od_cache_new(64 * 10, sub, 64 * 20, err, sizeof err);
  pthread_t t[3];
  cache_arg a[3];
  for (int i = 0; i < 3; i++) {
    a[i] = (cache_arg){c, dir, i * 7};
    pthread_create(&t[i], NULL, cache_worker, &a[i]);
  }
  for (int i = 0; i < 3; i++)
    pthread_join(t[i], NULL);
  assert_true(od_cache_bytes(c, OD_CACHE_MEMORY) <= 640);
  assert_true(od_cache_bytes(c, OD_CACHE_DISK) <= 1280);
  od_cache_free(c);
  char cmd[160];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_queue_bounds),
      cmocka_unit_test(test_queue_copies_ids),
      cmocka_unit_test(test_queue_ids),
      cmocka_unit_test(test_queue_pop_times_out),
      cmocka_unit_test(test_queue_close),
      cmocka_unit_test(test_queue_concurrent),
      cmocka_unit_test(test_ratelimit),
      cmocka_unit_test(test_cache_tiers),
      cmocka_unit_test(test_cache_concurrent),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
