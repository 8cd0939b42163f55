/* test_pl_edt.c: the distance transform is exact: it matches a brute-force
 * nearest-seed search on random grids of many shapes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>

#include "internal.h"
#include "pl_meshes.h"

static void test_matches_brute_force(void **s) {
  (void)s;
  uint32_t x = 7;
  for (int round = 0; round < 40; round++) {
    uint32_t w = 1 + round % 23, h = 1 + (round * 7) % 19;
    size_t n = (size_t)w * h;
    uint8_t *seed = malloc(n);
    float *d = malloc(n * sizeof *d);
    int any = 0;
    for (size_t i = 0; i < n; i++) {
      seed[i] = (test_rand(&x) % 100) < (uint32_t)(2 + round % 30);
      any |= seed[i];
    }
    if (!any)
      seed[n / 2] = 1;
    assert_int_equal(pl_edt(seed, w, h, d), ORFEAS_PL_OK);
    for (uint32_t py = 0; py < h; py++)
      for (uint32_t px = 0; px < w; px++) {
        double best = 1e30;
        for (uint32_t qy = 0; qy < h; qy++)
          for (uint32_t qx = 0; qx < w; qx++)
            if (seed[(size_t)qy * w + qx]) {
              double dx = (double)px - qx, dy = (double)py - qy;
              double e = sqrt(dx * dx + dy * dy);
              if (e < best)
                best = e;
            }
        assert_float_equal(d[(size_t)py * w + px], best, 1e-3);
      }
    free(seed);
    free(d);
  }
}

static void test_no_seed(void **s) {
  (void)s;
  uint8_t seed[12] = {0};
  float d[12];
  assert_int_equal(pl_edt(seed, 4, 3, d), ORFEAS_PL_OK);
  for (int i = 0; i < 12; i++)
    assert_true(d[i] > 1e6f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_matches_brute_force),
      cmocka_unit_test(test_no_seed),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
