/* test_pl_mask.c: image_preprocessing. Otsu and its border polarity, the
 * alpha path, grid sizes per quality, the well-composed fix and component
 * counting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "pl_images.h"
#include "pl_meshes.h"

static orfeas_pl_image image_of(uint8_t *rgba, uint32_t w, uint32_t h,
                                int alpha) {
  orfeas_pl_image img = {w, h, alpha, rgba};
  return img;
}

static void test_otsu(void **s) {
  (void)s;
  uint64_t hist[256] = {0};
  hist[40] = 1000;
  hist[41] = 500;
  hist[200] = 800;
  int t = pl_otsu(hist);
  assert_in_range(t, 41, 199);
}

/* The object must come out as foreground whether it is darker or lighter
 * than the background: the border decides. */
static void test_polarity(void **s) {
  (void)s;
  for (int invert = 0; invert < 2; invert++) {
    uint8_t *px = tpl_draw(TPL_DISKS, 128, 128, 0, 1);
    if (invert)
      for (size_t i = 0; i < (size_t)128 * 128 * 4; i++)
        if (i % 4 != 3)
          px[i] = (uint8_t)(255 - px[i]);
    orfeas_pl_image img = image_of(px, 128, 128, 0);
    pl_grid g;
    assert_int_equal(pl_grid_build(&img, 64, &g), ORFEAS_PL_OK);
    assert_int_equal(g.source, PL_MASK_OTSU);
    assert_int_equal(g.otsu_fg_dark, !invert);
    assert_int_equal(g.gw, 64);
    assert_int_equal(g.fg[0], 0);                    /* corner: background */
    assert_int_equal(g.fg[(size_t)48 * 64 + 32], 1); /* lower disk centre */
    assert_int_equal(g.components, 3);
    assert_true(pl_is_well_composed(g.fg, g.gw, g.gh));
    pl_grid_free(&g);
    assert_null(g.fg);
    free(px);
  }
}

static void test_alpha(void **s) {
  (void)s;
  uint8_t *px = tpl_draw(TPL_STAR_HOLE, 100, 80, 1, 1);
  orfeas_pl_image img = image_of(px, 100, 80, 1);
  pl_grid g;
  assert_int_equal(pl_grid_build(&img, 256, &g), ORFEAS_PL_OK);
  assert_int_equal(g.source, PL_MASK_ALPHA);
  assert_int_equal(g.gw, 100); /* capped at the image's own size */
  assert_int_equal(g.gh, 80);
  assert_int_equal(g.components, 1);
  /* The hole in the middle stays background. */
  assert_int_equal(g.fg[(size_t)40 * 100 + 50], 0);
  /* Colour comes from the object, not the transparent background. */
  size_t c = (size_t)20 * 100 + 50;
  assert_int_equal(g.fg[c], 1);
  assert_int_equal(g.rgb[c * 3 + 2], 90);
  pl_grid_free(&g);
  /* A constant alpha channel carries no mask: Otsu takes over. */
  for (size_t i = 0; i < (size_t)100 * 80; i++)
    px[i * 4 + 3] = 255;
  assert_int_equal(pl_grid_build(&img, 256, &g), ORFEAS_PL_OK);
  assert_int_equal(g.source, PL_MASK_OTSU);
  assert_int_equal(g.components, 1);
  pl_grid_free(&g);
  free(px);
}

/* The alpha path is taken when one pixel's alpha differs, wherever it
 * lies (the scan goes two pixels a word, 64 a block, then a tail), and
 * only for an image that has alpha. */
static void test_alpha_varies_anywhere(void **s) {
  (void)s;
  enum { W = 67, H = 31, N = W * H }; /* 2077: 32 blocks and a tail of 29 */
  uint8_t *px = tpl_draw(TPL_DISKS, W, H, 0, 1);
  for (size_t i = 0; i < N; i++)
    px[i * 4 + 3] = 200;
  orfeas_pl_image img = image_of(px, W, H, 1);
  pl_grid g;
  assert_int_equal(pl_grid_build(&img, 64, &g), ORFEAS_PL_OK);
  assert_int_equal(g.source, PL_MASK_OTSU);
  pl_grid_free(&g);
  static const size_t at[] = {0, 1, 62, 63, 64, 2046, 2047, 2048, 2076};
  for (size_t k = 0; k < sizeof at / sizeof at[0]; k++) {
    px[at[k] * 4 + 3] = 199;
    assert_int_equal(pl_grid_build(&img, 64, &g), ORFEAS_PL_OK);
    if (g.source != PL_MASK_ALPHA)
      fail_msg("alpha differing at pixel %zu was not seen", at[k]);
    pl_grid_free(&g);
    img.has_alpha = 0; /* no alpha channel: its bytes mean nothing */
    assert_int_equal(pl_grid_build(&img, 64, &g), ORFEAS_PL_OK);
    assert_int_equal(g.source, PL_MASK_OTSU);
    pl_grid_free(&g);
    img.has_alpha = 1;
    px[at[k] * 4 + 3] = 200;
  }
  free(px);
}

static void test_grid_sizes(void **s) {
  (void)s;
  static const struct {
    uint32_t w, h, grid, gw, gh;
  } cases[] = {{1024, 512, 256, 256, 128},
               {32, 32, 256, 32, 32},
               {4096, 32, 1024, 1024, 8},
               {33, 4096, 64, 1, 64},
               {300, 200, 64, 64, 43}};
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    uint32_t w = cases[k].w, h = cases[k].h;
    uint8_t *px = calloc((size_t)w * h, 4);
    orfeas_pl_image img = image_of(px, w, h, 0);
    pl_grid g;
    assert_int_equal(pl_grid_build(&img, cases[k].grid, &g), ORFEAS_PL_OK);
    assert_int_equal(g.gw, cases[k].gw);
    assert_int_equal(g.gh, cases[k].gh);
    assert_int_equal(g.fg_cells, 0); /* uniform black: no object */
    pl_grid_free(&g);
    free(px);
  }
  assert_int_equal(orfeas_pl_quality_grid(1), 64);
  assert_int_equal(orfeas_pl_quality_grid(7), 256);
  assert_int_equal(orfeas_pl_quality_grid(10), 1024);
}

static void test_well_composed(void **s) {
  (void)s;
  /* The two diagonal patterns, and the fix keeps every original cell. */
  uint8_t a[4] = {1, 0, 0, 1}, b[4] = {0, 1, 1, 0};
  assert_false(pl_is_well_composed(a, 2, 2));
  assert_int_equal(pl_well_composed(a, 2, 2), 1);
  assert_true(pl_is_well_composed(a, 2, 2));
  assert_int_equal(pl_well_composed(b, 2, 2), 1);
  assert_true(pl_is_well_composed(b, 2, 2));
  uint32_t x = 99;
  for (int round = 0; round < 50; round++) {
    uint32_t gw = 5 + round % 17, gh = 4 + round % 13;
    uint8_t *m = malloc((size_t)gw * gh), *orig = malloc((size_t)gw * gh);
    for (size_t i = 0; i < (size_t)gw * gh; i++) {
      m[i] = orig[i] = (test_rand(&x) % 100) < 45;
    }
    pl_well_composed(m, gw, gh);
    assert_true(pl_is_well_composed(m, gw, gh));
    for (size_t i = 0; i < (size_t)gw * gh; i++)
      assert_true(m[i] >= orig[i]);
    free(m);
    free(orig);
  }
}

static void test_components(void **s) {
  (void)s;
  const uint8_t m[5 * 4] = {1, 1, 0, 0, 1, /* */
                            0, 0, 0, 1, 1, /* */
                            1, 0, 0, 0, 0, /* */
                            1, 0, 1, 1, 1};
  uint32_t n = 0;
  assert_int_equal(pl_count_components(m, 5, 4, &n), ORFEAS_PL_OK);
  assert_int_equal(n, 4);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_otsu),
      cmocka_unit_test(test_polarity),
      cmocka_unit_test(test_alpha),
      cmocka_unit_test(test_alpha_varies_anywhere),
      cmocka_unit_test(test_grid_sizes),
      cmocka_unit_test(test_well_composed),
      cmocka_unit_test(test_components),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
