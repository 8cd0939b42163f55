/* test_pl_quality.c: quality_validation. Exact figures on a cube, each
 * defect moves the right term, and the score separates clean pipeline
 * meshes from damaged copies of them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "orfeas/pipeline.h"
#include "pl_images.h"
#include "pl_meshes.h"

static orfeas_pl_quality check(const orfeas_pl_mesh *m, uint32_t expect,
                               double err) {
  orfeas_pl_quality q;
  assert_int_equal(orfeas_pl_quality_check(m, expect, err, &q), ORFEAS_PL_OK);
  return q;
}

static void test_cube(void **s) {
  (void)s;
  orfeas_pl_mesh m;
  assert_int_equal(cube_mesh(&m, 10, 1, 0), 0);
  orfeas_pl_quality q = check(&m, 1, 0);
  assert_true(q.closed);
  assert_int_equal(q.euler, 2);
  assert_int_equal(q.components, 1);
  assert_float_equal(q.volume_mm3, 1000, 1e-6);
  assert_float_equal(q.area_mm2, 600, 1e-6);
  assert_float_equal(q.mean_shape, 0.8660254, 1e-6); /* right isosceles */
  assert_float_equal(q.score, 1.0, 1e-12);
  assert_string_equal(q.grade, "A+");
  assert_true(q.printable);
  orfeas_pl_mesh_free(&m);
}

static void test_defects(void **s) {
  (void)s;
  orfeas_pl_mesh m;
  /* A missing face: 3 open edges; topology term 0, not printable. */
  assert_int_equal(cube_mesh(&m, 10, 1, 0), 0);
  m.ntris = 11;
  orfeas_pl_quality q = check(&m, 1, 0);
  assert_false(q.closed);
  assert_int_equal(q.open_edges, 3);
  assert_int_equal(q.dup_edges, 0);
  assert_true(q.score < 0.80);
  assert_false(q.printable);
  orfeas_pl_mesh_free(&m);
  /* One face wound the wrong way: its 3 edges duplicate their neighbours'. */
  assert_int_equal(cube_mesh(&m, 10, 1, 0), 0);
  uint32_t t = m.idx[1];
  m.idx[1] = m.idx[2];
  m.idx[2] = t;
  q = check(&m, 1, 0);
  assert_false(q.closed);
  assert_int_equal(q.dup_edges, 6);
  assert_false(q.printable);
  orfeas_pl_mesh_free(&m);
  /* Inside out: closed, but negative volume gates the score to 0. */
  assert_int_equal(cube_mesh(&m, 10, 1, 0), 0);
  for (uint32_t i = 0; i < m.ntris; i++) {
    t = m.idx[i * 3 + 1];
    m.idx[i * 3 + 1] = m.idx[i * 3 + 2];
    m.idx[i * 3 + 2] = t;
  }
  q = check(&m, 1, 0);
  assert_true(q.closed);
  assert_float_equal(q.volume_mm3, -1000, 1e-6);
  assert_float_equal(q.score, 0, 0);
  assert_string_equal(q.grade, "F");
  assert_false(q.printable);
  orfeas_pl_mesh_free(&m);
  /* Two parts where one was expected: C = 1/2. */
  assert_int_equal(cube_mesh(&m, 10, 2, 0), 0);
  q = check(&m, 1, 0);
  assert_int_equal(q.components, 2);
  assert_int_equal(q.euler, 4);
  assert_float_equal(q.c_components, 0.5, 1e-12);
  assert_float_equal(check(&m, 2, 0).c_components, 1.0, 1e-12);
  /* Simplification error: 2.5 % of the extent halves E. */
  assert_float_equal(check(&m, 2, 0.025).e_error, 0.5, 1e-12);
  /* A collapsed triangle is degenerate. */
  memcpy(m.pos + 3, m.pos, 12); /* vertex 1 onto vertex 0 */
  q = check(&m, 2, 0);
  assert_true(q.degenerate >= 2);
  assert_true(q.d_degenerate < 1);
  orfeas_pl_mesh_free(&m);
  /* Out-of-range indices are refused, not read. */
  assert_int_equal(cube_mesh(&m, 10, 1, 0), 0);
  m.idx[5] = 8;
  assert_int_equal(orfeas_pl_quality_check(&m, 0, 0, &q), ORFEAS_PL_EINVAL);
  orfeas_pl_mesh_free(&m);
}

static void test_grades(void **s) {
  (void)s;
  static const struct {
    double score;
    const char *grade;
  } g[] = {{1.0, "A+"},  {0.95, "A+"}, {0.9499, "A"}, {0.90, "A"},
           {0.85, "A-"}, {0.80, "B+"}, {0.7999, "B"}, {0.70, "B-"},
           {0.65, "C+"}, {0.60, "C"},  {0.55, "D"},   {0.5499, "F"},
           {0.0, "F"}};
  for (size_t i = 0; i < sizeof g / sizeof g[0]; i++)
    assert_string_equal(orfeas_pl_grade(g[i].score), g[i].grade);
}

/* The acceptance test for the score: clean pipeline meshes score high and
 * printable; every damaged copy scores lower, and every topology-damaged
 * one below the printable bar. */
static void test_separates_clean_from_damaged(void **s) {
  (void)s;
  const tpl_shape shapes[] = {TPL_STAR_HOLE, TPL_DISKS, TPL_THIN};
  for (size_t k = 0; k < 3; k++) {
    uint8_t *px = tpl_draw(shapes[k], 96, 96, 1, 3);
    size_t len;
    uint8_t *png = tpl_png(px, 96, 96, 4, &len);
    orfeas_pl_options o;
    orfeas_pl_options_init(&o);
    orfeas_pl_result r;
    assert_int_equal(orfeas_pl_run_keep_mesh(png, len, &o, &r, NULL, 0),
                     ORFEAS_PL_OK);
    orfeas_pl_mesh *m = &r.mesh;
    uint32_t parts = r.mask_components;
    orfeas_pl_quality clean = check(m, parts, 0);
    assert_true(clean.score >= 0.90);
    assert_true(clean.printable);
    assert_float_equal(clean.score, r.quality.score, 1e-12);

    uint32_t n = m->ntris;
    /* 1. Holes: drop 5 triangles. */
    m->ntris = n - 5;
    orfeas_pl_quality d = check(m, parts, 0);
    assert_true(d.score < 0.80 && !d.printable);
    m->ntris = n;
    /* 2. Three flipped faces. */
    for (uint32_t i = 0; i < 3; i++) {
      uint32_t *f = m->idx + (size_t)(i * (n / 3)) * 3, t = f[1];
      f[1] = f[2], f[2] = t;
    }
    d = check(m, parts, 0);
    assert_true(d.score < 0.80 && !d.printable);
    for (uint32_t i = 0; i < 3; i++) {
      uint32_t *f = m->idx + (size_t)(i * (n / 3)) * 3, t = f[1];
      f[1] = f[2], f[2] = t;
    }
    assert_float_equal(check(m, parts, 0).score, clean.score, 1e-12);
    /* 3. Slivers: squash every 4th vertex onto its neighbour's x/y. */
    float *save = malloc((size_t)m->nverts * 12);
    memcpy(save, m->pos, (size_t)m->nverts * 12);
    for (uint32_t v = 4; v < m->nverts; v += 4) {
      m->pos[v * 3] = m->pos[(v - 2) * 3] + 1e-4f;
      m->pos[v * 3 + 1] = m->pos[(v - 2) * 3 + 1];
    }
    d = check(m, parts, 0);
    assert_true(d.slivers > 0);
    assert_true(d.score < clean.score - 0.08);
    memcpy(m->pos, save, (size_t)m->nverts * 12);
    free(save);
    /* 4. A large simplification error. */
    d = check(m, parts, 0.05);
    assert_true(d.score <= clean.score - 0.15 + 1e-12);
    orfeas_pl_result_free(&r);
    free(png);
    free(px);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cube),
      cmocka_unit_test(test_defects),
      cmocka_unit_test(test_grades),
      cmocka_unit_test(test_separates_clean_from_damaged),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
