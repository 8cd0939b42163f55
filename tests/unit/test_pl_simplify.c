/* test_pl_simplify.c: mesh_optimization. Whatever meshoptimizer does to a
 * closed mesh, the mesh that leaves the stage is closed with positive
 * volume: the simplified one when it passes, else a milder one, else the
 * original. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "pl_images.h"

static void pipeline_mesh(tpl_shape shape, orfeas_pl_mode mode,
                          orfeas_pl_result *r) {
  uint8_t *px = tpl_draw(shape, 128, 96, 1, 11);
  size_t len;
  uint8_t *png = tpl_png(px, 128, 96, 4, &len);
  orfeas_pl_options o;
  orfeas_pl_options_init(&o);
  o.mode = mode;
  o.quality = 4;
  assert_int_equal(orfeas_pl_run_keep_mesh(png, len, &o, r, NULL, 0),
                   ORFEAS_PL_OK);
  free(png);
  free(px);
}

static void test_never_ships_open(void **s) {
  (void)s;
  const double ratios[] = {0.1, 0.25, 0.5, 0.75, 0.9};
  int simplified = 0, fell_back = 0;
  for (int mode = ORFEAS_PL_MODE_INFLATE; mode <= ORFEAS_PL_MODE_RELIEF; mode++)
    for (int shape = TPL_STAR_HOLE; shape <= TPL_DISKS; shape++) {
      orfeas_pl_result r;
      pipeline_mesh((tpl_shape)shape, (orfeas_pl_mode)mode, &r);
      for (size_t k = 0; k < sizeof ratios / sizeof ratios[0]; k++) {
        orfeas_pl_mesh m;
        assert_int_equal(
            orfeas_pl_mesh_alloc(&m, r.mesh.nverts, r.mesh.ntris, 1),
            ORFEAS_PL_OK);
        memcpy(m.pos, r.mesh.pos, (size_t)m.nverts * 12);
        memcpy(m.rgb, r.mesh.rgb, (size_t)m.nverts * 3);
        memcpy(m.idx, r.mesh.idx, (size_t)m.ntris * 12);
        pl_simplify_report rep;
        assert_int_equal(pl_simplify(&m, ratios[k], &rep), ORFEAS_PL_OK);
        orfeas_pl_quality q;
        assert_int_equal(orfeas_pl_quality_check(&m, 0, rep.error, &q),
                         ORFEAS_PL_OK);
        assert_true(q.closed);
        assert_true(q.volume_mm3 > 0);
        assert_non_null(m.rgb);
        if (rep.simplified) {
          assert_true(m.ntris < r.mesh.ntris);
          /* Compacted: every vertex is used. */
          assert_int_equal(q.vertices, m.nverts);
          simplified++;
        } else {
          assert_int_equal(m.ntris, r.mesh.ntris);
          assert_memory_equal(m.idx, r.mesh.idx, (size_t)m.ntris * 12);
        }
        fell_back += rep.fallback;
        orfeas_pl_mesh_free(&m);
      }
      orfeas_pl_result_free(&r);
    }
  /* The stage did real work at least sometimes. */
  assert_true(simplified > 0);
  (void)fell_back;
}

static void test_ratio_one_is_a_no_op(void **s) {
  (void)s;
  orfeas_pl_result r;
  pipeline_mesh(TPL_STAR_HOLE, ORFEAS_PL_MODE_AUTO, &r);
  uint32_t n = r.mesh.ntris;
  pl_simplify_report rep;
  assert_int_equal(pl_simplify(&r.mesh, 1.0, &rep), ORFEAS_PL_OK);
  assert_int_equal(r.mesh.ntris, n);
  assert_false(rep.simplified);
  assert_false(rep.fallback);
  orfeas_pl_result_free(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_never_ships_open),
      cmocka_unit_test(test_ratio_one_is_a_no_op),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
