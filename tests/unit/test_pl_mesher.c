/* test_pl_mesher.c: shape_generation. Every mask (holes, 1-cell features,
 * random noise) gives a closed, consistently wound mesh with positive volume,
 * one part per mask component and the Euler characteristic of its genus;
 * sizes follow the options in millimetres with the aspect ratio kept. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "pl_meshes.h"

/* A grid over a caller's mask; colour and luminance are a fixed ramp. */
static void make_grid(pl_grid *g, const uint8_t *fg, uint32_t gw, uint32_t gh) {
  memset(g, 0, sizeof *g);
  size_t n = (size_t)gw * gh;
  g->gw = gw;
  g->gh = gh;
  g->fg = malloc(n);
  g->rgb = malloc(n * 3);
  g->lum = malloc(n);
  memcpy(g->fg, fg, n);
  for (size_t i = 0; i < n; i++) {
    g->lum[i] = (uint8_t)(i * 37 % 256);
    g->rgb[i * 3] = g->rgb[i * 3 + 1] = g->rgb[i * 3 + 2] = g->lum[i];
    g->fg_cells += fg[i];
  }
  assert_int_equal(pl_count_components(g->fg, gw, gh, &g->components),
                   ORFEAS_PL_OK);
}

/* Builds, checks closed/volume/components, returns the quality report. */
static orfeas_pl_quality check_closed(const pl_grid *g, orfeas_pl_mode mode,
                                      uint32_t want_components) {
  pl_shape sh;
  assert_int_equal(pl_shape_build(g, mode, 100, 100, 20, &sh), ORFEAS_PL_OK);
  orfeas_pl_quality q;
  assert_int_equal(orfeas_pl_quality_check(&sh.mesh, want_components, 0, &q),
                   ORFEAS_PL_OK);
  assert_true(q.closed);
  assert_int_equal(q.open_edges, 0);
  assert_int_equal(q.dup_edges, 0);
  assert_true(q.volume_mm3 > 0);
  assert_int_equal(q.components, want_components);
  assert_int_equal(q.degenerate, 0);
  assert_int_equal(sh.mesh.nverts, q.vertices); /* no unused vertices */
  pl_shape_free(&sh);
  return q;
}

static void test_square_and_ring(void **s) {
  (void)s;
  /* A 3x3 block: a box, genus 0, Euler 2. */
  uint8_t block[25] = {0};
  for (int y = 1; y < 4; y++)
    for (int x = 1; x < 4; x++)
      block[y * 5 + x] = 1;
  pl_grid g;
  make_grid(&g, block, 5, 5);
  orfeas_pl_quality q = check_closed(&g, ORFEAS_PL_MODE_INFLATE, 1);
  assert_int_equal(q.euler, 2);
  /* Punch the centre: a ring, genus 1, Euler 0. */
  g.fg[12] = 0;
  g.fg_cells--;
  q = check_closed(&g, ORFEAS_PL_MODE_INFLATE, 1);
  assert_int_equal(q.euler, 0);
  pl_grid_free(&g);
}

static void test_thin_features(void **s) {
  (void)s;
  /* A 1-cell line, a lone cell and an L: thin walls everywhere. */
  const uint8_t m[6 * 7] = {1, 1, 1, 1, 1, 1, 0, /* */
                            0, 0, 0, 0, 0, 0, 0, /* */
                            0, 1, 0, 0, 1, 0, 0, /* */
                            0, 0, 0, 0, 1, 0, 0, /* */
                            0, 0, 0, 0, 1, 1, 1, /* */
                            0, 0, 0, 0, 0, 0, 0};
  pl_grid g;
  make_grid(&g, m, 7, 6);
  orfeas_pl_quality q = check_closed(&g, ORFEAS_PL_MODE_INFLATE, 3);
  assert_int_equal(q.euler, 6); /* three spheres */
  pl_grid_free(&g);
}

static void test_random_masks(void **s) {
  (void)s;
  uint32_t x = 2024;
  for (int round = 0; round < 60; round++) {
    uint32_t gw = 3 + round % 29, gh = 2 + (round * 5) % 23;
    size_t n = (size_t)gw * gh;
    uint8_t *m = malloc(n);
    for (size_t i = 0; i < n; i++) {
      m[i] = (test_rand(&x) % 100) < (uint32_t)(20 + round % 60);
    }
    m[n / 2] = 1;
    pl_well_composed(m, gw, gh);
    pl_grid g;
    make_grid(&g, m, gw, gh);
    orfeas_pl_quality q =
        check_closed(&g, ORFEAS_PL_MODE_INFLATE, g.components);
    /* Euler = 2 (components - genus): even, and at most 2 per part. */
    assert_int_equal(q.euler % 2, 0);
    assert_true(q.euler <= 2 * (int64_t)g.components);
    check_closed(&g, ORFEAS_PL_MODE_RELIEF, 1);
    pl_grid_free(&g);
    free(m);
  }
}

static void test_dimensions(void **s) {
  (void)s;
  /* A 40 x 20 grid, all foreground, into 100 x 100 x 20 mm: the aspect
   * keeps x = 100 mm, y = 50 mm. */
  uint8_t *m = malloc(800);
  memset(m, 1, 800);
  pl_grid g;
  make_grid(&g, m, 40, 20);
  pl_shape sh;
  float lo[3], hi[3];
  assert_int_equal(pl_shape_build(&g, ORFEAS_PL_MODE_RELIEF, 100, 100, 20, &sh),
                   ORFEAS_PL_OK);
  mesh_bbox(&sh.mesh, lo, hi);
  assert_float_equal(hi[0] - lo[0], 100, 1e-3);
  assert_float_equal(hi[1] - lo[1], 50, 1e-3);
  assert_float_equal(lo[2], 0, 1e-6); /* flat base */
  assert_true(hi[2] <= 20 + 1e-4 && hi[2] >= 1);
  pl_shape_free(&sh);
  /* Inflate with a hole-free interior: depth spans the full 20 mm. */
  memset(g.fg, 0, 800);
  for (int y = 2; y < 18; y++)
    for (int x2 = 2; x2 < 38; x2++)
      g.fg[y * 40 + x2] = 1;
  g.fg_cells = 16 * 36;
  assert_int_equal(pl_shape_build(&g, ORFEAS_PL_MODE_INFLATE, 200, 50, 20, &sh),
                   ORFEAS_PL_OK);
  mesh_bbox(&sh.mesh, lo, hi);
  assert_float_equal(hi[0] - lo[0], 36 * 50.0 / 20, 1e-3); /* y limits */
  assert_float_equal(hi[2] - lo[2], 20, 1e-3);
  assert_float_equal(hi[2], -lo[2], 1e-4); /* mirrored back */
  pl_shape_free(&sh);
  /* An empty mask cannot be inflated. */
  memset(g.fg, 0, 800);
  g.fg_cells = 0;
  assert_int_equal(
      pl_shape_build(&g, ORFEAS_PL_MODE_INFLATE, 100, 100, 20, &sh),
      ORFEAS_PL_EINVAL);
  pl_shape_free(&sh);
  pl_grid_free(&g);
  free(m);
}

static void test_colour(void **s) {
  (void)s;
  uint8_t m[9] = {0, 1, 0, 1, 1, 1, 0, 1, 0};
  pl_grid g;
  make_grid(&g, m, 3, 3);
  pl_shape sh;
  assert_int_equal(pl_shape_build(&g, ORFEAS_PL_MODE_INFLATE, 30, 30, 5, &sh),
                   ORFEAS_PL_OK);
  assert_int_equal(pl_colour(&g, ORFEAS_PL_MODE_INFLATE, &sh), ORFEAS_PL_OK);
  assert_non_null(sh.mesh.rgb);
  /* Grid vertex (1,1) touches cells 0 (background), 1, 3 and 4, whose
   * grey levels are 37, 111 and 148: it takes their mean, 98, and never the
   * background's 0. Both its front and back vertex exist. */
  int seen = 0;
  for (uint32_t v = 0; v < sh.mesh.nverts; v++)
    if (sh.vgrid[v] == 5) {
      assert_int_equal(sh.mesh.rgb[v * 3], 98);
      seen++;
    }
  assert_int_equal(seen, 2);
  pl_shape_free(&sh);
  pl_grid_free(&g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_square_and_ring),
      cmocka_unit_test(test_thin_features),
      cmocka_unit_test(test_random_masks),
      cmocka_unit_test(test_dimensions),
      cmocka_unit_test(test_colour),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
