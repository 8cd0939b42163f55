/* test_pl_concurrency.c: the pipeline is re-entrant. Several threads run
 * jobs at once (different shapes, codecs and formats) and each gets exactly
 * the bytes a lone run produced. Also run under TSan (tsan.pl_concurrency),
 * which fails on any data race. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "orfeas/pipeline.h"
#include "pl_images.h"

#define THREADS 4
#define JOBS 6

typedef struct {
  uint8_t *input;
  size_t input_len;
  orfeas_pl_format format;
  orfeas_pl_buffer expect; /* from the lone run */
} job;

typedef struct {
  job *jobs;
  int first;      /* this thread starts at jobs[first] and runs them all */
  int mismatches; /* written by this thread only, read after join */
  int progress_events;
} worker;

static int count(void *user, const orfeas_pl_progress *p) {
  (void)p;
  ((worker *)user)->progress_events++;
  return 0;
}

static void *work(void *arg) {
  worker *w = arg;
  for (int k = 0; k < JOBS; k++) {
    job *j = &w->jobs[(w->first + k) % JOBS];
    orfeas_pl_options o;
    orfeas_pl_options_init(&o);
    o.format = j->format;
    o.quality = 3;
    o.progress = count;
    o.progress_user = w;
    orfeas_pl_result r;
    if (orfeas_pl_run(j->input, j->input_len, &o, &r, NULL, 0) !=
            ORFEAS_PL_OK ||
        r.file.size != j->expect.size ||
        memcmp(r.file.data, j->expect.data, r.file.size) != 0)
      w->mismatches++;
    orfeas_pl_result_free(&r);
  }
  return NULL;
}

static void test_parallel_runs_match_lone_runs(void **s) {
  (void)s;
  job jobs[JOBS];
  for (int k = 0; k < JOBS; k++) {
    tpl_shape shape = (tpl_shape)(k % 4);
    uint8_t *px = tpl_draw(shape, 96, 80, k % 2, (uint32_t)k);
    jobs[k].input = k % 3 == 2 ? tpl_jpeg(px, 96, 80, &jobs[k].input_len)
                               : tpl_png(px, 96, 80, 4, &jobs[k].input_len);
    free(px);
    assert_non_null(jobs[k].input);
    jobs[k].format = (orfeas_pl_format)(k % 4);
    orfeas_pl_options o;
    orfeas_pl_options_init(&o);
    o.format = jobs[k].format;
    o.quality = 3;
    orfeas_pl_result r;
    assert_int_equal(
        orfeas_pl_run(jobs[k].input, jobs[k].input_len, &o, &r, NULL, 0),
        ORFEAS_PL_OK);
    jobs[k].expect = r.file; /* ownership moves to the job */
    memset(&r.file, 0, sizeof r.file);
    orfeas_pl_result_free(&r);
  }
  pthread_t th[THREADS];
  worker w[THREADS];
  for (int t = 0; t < THREADS; t++) {
    w[t] = (worker){jobs, t, 0, 0};
    assert_int_equal(pthread_create(&th[t], NULL, work, &w[t]), 0);
  }
  for (int t = 0; t < THREADS; t++) {
    assert_int_equal(pthread_join(th[t], NULL), 0);
    assert_int_equal(w[t].mismatches, 0);
    assert_int_equal(w[t].progress_events, JOBS * 14);
  }
  for (int k = 0; k < JOBS; k++) {
    free(jobs[k].input);
    orfeas_pl_buffer_free(&jobs[k].expect);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parallel_runs_match_lone_runs),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
