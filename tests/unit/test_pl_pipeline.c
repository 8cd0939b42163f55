/* test_pl_pipeline.c: the whole pipeline through orfeas_pl_run(): stage
 * order and names in the progress callback, durations, cancellation, option
 * checks, mode selection, dimensions, quality grids, simplification and
 * refusals of hostile images, with the result struct's ownership rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "orfeas/pipeline.h"
#include "pl_images.h"
#include "pl_meshes.h"

static uint8_t *encode(tpl_shape s, uint32_t w, uint32_t h, int alpha,
                       size_t *len) {
  uint8_t *px = tpl_draw(s, w, h, alpha, 5);
  uint8_t *png = tpl_png(px, w, h, alpha ? 4 : 3, len);
  free(px);
  assert_non_null(png);
  return png;
}

typedef struct {
  int n;
  orfeas_pl_progress ev[32];
  int cancel_at; /* stage whose BEGIN returns nonzero; -1 = never */
} recorder;

static int record(void *user, const orfeas_pl_progress *p) {
  recorder *r = user;
  if (r->n < 32)
    r->ev[r->n++] = *p;
  return p->event == ORFEAS_PL_EVENT_BEGIN && (int)p->stage == r->cancel_at;
}

static void test_progress(void **s) {
  (void)s;
  static const char *const names[] = {
      "image_loading",     "image_preprocessing", "shape_generation",
      "texture_synthesis", "mesh_optimization",   "mesh_export",
      "quality_validation"};
  size_t len;
  uint8_t *png = encode(TPL_STAR_HOLE, 200, 160, 1, &len);
  recorder rec = {.n = 0, .cancel_at = -1};
  orfeas_pl_options o;
  orfeas_pl_options_init(&o);
  o.format = ORFEAS_PL_GLB;
  o.progress = record;
  o.progress_user = &rec;
  orfeas_pl_result r;
  char msg[256];
  assert_int_equal(orfeas_pl_run(png, len, &o, &r, msg, sizeof msg),
                   ORFEAS_PL_OK);
  assert_int_equal(rec.n, 14);
  double last = 0;
  uint64_t sum = 0;
  for (int i = 0; i < 14; i++) {
    const orfeas_pl_progress *p = &rec.ev[i];
    assert_int_equal(p->stage, i / 2);
    assert_string_equal(p->stage_name, names[i / 2]);
    assert_string_equal(orfeas_pl_stage_name(p->stage), names[i / 2]);
    assert_int_equal(p->event,
                     i % 2 ? ORFEAS_PL_EVENT_END : ORFEAS_PL_EVENT_BEGIN);
    double want = (i % 2) ? 1.0 : 0.0;
    assert_float_equal(p->progress, want, 0);
    assert_true(p->overall >= last && p->overall <= 1.0);
    last = p->overall;
    if (i % 2) {
      assert_int_equal(p->duration_ns, r.stage_ns[i / 2]);
      sum += p->duration_ns;
    } else {
      assert_int_equal(p->duration_ns, 0);
    }
  }
  assert_float_equal(last, 1.0, 0);
  assert_int_equal(sum, r.total_ns);
  assert_true(r.stage_ns[ORFEAS_PL_STAGE_IMAGE_LOADING] > 0);
  assert_true(r.stage_ns[ORFEAS_PL_STAGE_SHAPE_GENERATION] > 0);
  assert_null(orfeas_pl_stage_name(ORFEAS_PL_STAGE_COUNT));
  /* The report. */
  assert_int_equal(r.format, ORFEAS_PL_GLB);
  assert_int_equal(r.mode, ORFEAS_PL_MODE_INFLATE);
  assert_int_equal(r.image_width, 200);
  assert_int_equal(r.grid_width, 200); /* quality 7 = 256, capped at 200 */
  assert_int_equal(r.grid_height, 160);
  assert_int_equal(r.mask_components, 1);
  assert_true(r.quality.closed && r.quality.printable);
  assert_true(r.file.size > 1000);
  assert_memory_equal(r.file.data, "glTF", 4);
  assert_null(r.mesh.pos); /* only run_keep_mesh keeps it */
  orfeas_pl_result_free(&r);
  assert_null(r.file.data);
  orfeas_pl_result_free(&r); /* twice is harmless */
  free(png);
}

static void test_cancel(void **s) {
  (void)s;
  size_t len;
  uint8_t *png = encode(TPL_DISKS, 64, 64, 1, &len);
  for (int at = 0; at < ORFEAS_PL_STAGE_COUNT; at++) {
    recorder rec = {.n = 0, .cancel_at = at};
    orfeas_pl_options o;
    orfeas_pl_options_init(&o);
    o.progress = record;
    o.progress_user = &rec;
    orfeas_pl_result r;
    char msg[256];
    assert_int_equal(orfeas_pl_run(png, len, &o, &r, msg, sizeof msg),
                     ORFEAS_PL_ECANCELLED);
    assert_non_null(strstr(msg, orfeas_pl_stage_name((orfeas_pl_stage)at)));
    assert_int_equal(rec.n, 2 * at + 1); /* nothing after the refusal */
    assert_null(r.file.data);
    for (int k = 0; k < at; k++)
      assert_true(r.stage_ns[k] > 0); /* timings of what ran are kept */
    orfeas_pl_result_free(&r);
  }
  free(png);
}

static void test_options(void **s) {
  (void)s;
  size_t len;
  uint8_t *png = encode(TPL_DISKS, 64, 64, 1, &len);
  int n = 0;
#define BAD(name, stmt)                                                        \
  do {                                                                         \
    orfeas_pl_options o;                                                       \
    orfeas_pl_options_init(&o);                                                \
    stmt;                                                                      \
    orfeas_pl_result r;                                                        \
    char msg[256] = "";                                                        \
    assert_int_equal(orfeas_pl_run(png, len, &o, &r, msg, sizeof msg),         \
                     ORFEAS_PL_EINVAL);                                        \
    assert_non_null(strstr(msg, name));                                        \
    assert_true(orfeas_pl_is_client_error(ORFEAS_PL_EINVAL));                  \
    orfeas_pl_result_free(&r);                                                 \
    n++;                                                                       \
  } while (0)
  BAD("quality", o.quality = 0);
  BAD("quality", o.quality = 11);
  BAD("width", o.width_mm = 0.5);
  BAD("width", o.height_mm = NAN);
  BAD("depth", o.depth_mm = 501);
  BAD("simplify_ratio", o.simplify_ratio = 0);
  BAD("format", o.format = (orfeas_pl_format)7);
  BAD("mode", o.mode = (orfeas_pl_mode)-1);
  BAD("max_side", o.max_side = 8);
#undef BAD
  assert_int_equal(n, 9);
  free(png);
}

static void test_modes_and_dimensions(void **s) {
  (void)s;
  size_t len;
  orfeas_pl_options o;
  orfeas_pl_result r;
  float lo[3], hi[3];
  /* Nothing to cut out: relief on the whole rectangle, 2:1 kept. */
  uint8_t *png = encode(TPL_EMPTY, 200, 100, 0, &len);
  orfeas_pl_options_init(&o);
  o.width_mm = 80;
  o.height_mm = 80;
  o.depth_mm = 5;
  assert_int_equal(orfeas_pl_run_keep_mesh(png, len, &o, &r, NULL, 0),
                   ORFEAS_PL_OK);
  assert_int_equal(r.mode, ORFEAS_PL_MODE_RELIEF);
  assert_int_equal(r.mask_components, 1);
  mesh_bbox(&r.mesh, lo, hi);
  assert_float_equal(hi[0] - lo[0], 80, 1e-3);
  assert_float_equal(hi[1] - lo[1], 40, 1e-3);
  assert_true(lo[2] == 0 && hi[2] <= 5);
  assert_true(r.quality.printable);
  orfeas_pl_result_free(&r);
  free(png);
  /* Three disks, no alpha: Otsu finds them; forced relief ignores them. */
  png = encode(TPL_DISKS, 120, 120, 0, &len);
  orfeas_pl_options_init(&o);
  o.depth_mm = 30;
  assert_int_equal(orfeas_pl_run_keep_mesh(png, len, &o, &r, NULL, 0),
                   ORFEAS_PL_OK);
  assert_int_equal(r.mode, ORFEAS_PL_MODE_INFLATE);
  assert_int_equal(r.mask_components, 3);
  assert_int_equal(r.quality.components, 3);
  mesh_bbox(&r.mesh, lo, hi);
  assert_float_equal(hi[2] - lo[2], 30, 0.5);
  orfeas_pl_result_free(&r);
  o.mode = ORFEAS_PL_MODE_RELIEF;
  assert_int_equal(orfeas_pl_run(png, len, &o, &r, NULL, 0), ORFEAS_PL_OK);
  assert_int_equal(r.mode, ORFEAS_PL_MODE_RELIEF);
  assert_int_equal(r.quality.components, 1);
  orfeas_pl_result_free(&r);
  free(png);
}

static void test_quality_grid_and_simplify(void **s) {
  (void)s;
  size_t len;
  uint8_t *png = encode(TPL_STAR_HOLE, 600, 400, 1, &len);
  orfeas_pl_options o;
  orfeas_pl_options_init(&o);
  orfeas_pl_result r;
  uint32_t last = 0;
  for (int q = 1; q <= 10; q += 3) {
    o.quality = q;
    assert_int_equal(orfeas_pl_run(png, len, &o, &r, NULL, 0), ORFEAS_PL_OK);
    uint32_t want = orfeas_pl_quality_grid(q);
    assert_int_equal(r.grid_width, want < 600 ? want : 600);
    assert_true(r.quality.triangles > last); /* finer grid, more triangles */
    last = r.quality.triangles;
    orfeas_pl_result_free(&r);
  }
  o.quality = 7;
  o.simplify_ratio = 0.3;
  o.format = ORFEAS_PL_PLY;
  assert_int_equal(orfeas_pl_run(png, len, &o, &r, NULL, 0), ORFEAS_PL_OK);
  assert_true(r.simplified || r.simplify_fallback);
  assert_true(r.quality.closed);
  orfeas_pl_result_free(&r);
  free(png);
}

static void test_hostile(void **s) {
  (void)s;
  size_t len;
  uint8_t *bomb = tpl_png_header_only(100000, 1, &len);
  orfeas_pl_options o;
  orfeas_pl_options_init(&o);
  orfeas_pl_result r;
  char msg[256];
  assert_int_equal(orfeas_pl_run(bomb, len, &o, &r, msg, sizeof msg),
                   ORFEAS_PL_ESIZE);
  assert_non_null(strstr(msg, "100000x1"));
  assert_null(r.file.data);
  free(bomb);
  uint8_t *png = encode(TPL_STAR_HOLE, 64, 64, 1, &len);
  assert_int_equal(orfeas_pl_run(png, len / 2, &o, &r, msg, sizeof msg),
                   ORFEAS_PL_ETRUNCATED);
  assert_true(orfeas_pl_is_client_error(ORFEAS_PL_ETRUNCATED));
  /* A lowered side limit is honoured. */
  o.max_side = 48;
  assert_int_equal(orfeas_pl_run(png, len, &o, &r, msg, sizeof msg),
                   ORFEAS_PL_ESIZE);
  assert_int_equal(orfeas_pl_run(png, len, NULL, &r, msg, sizeof msg),
                   ORFEAS_PL_EINVAL);
  assert_int_equal(orfeas_pl_run(png, len, &o, NULL, msg, sizeof msg),
                   ORFEAS_PL_EINVAL);
  free(png);
}

/* The smallest and the largest sides in one image run end to end. */
static void test_extreme_sides(void **s) {
  (void)s;
  size_t len;
  uint8_t *png = encode(TPL_DISKS, 4096, 32, 1, &len);
  orfeas_pl_options o;
  orfeas_pl_options_init(&o);
  o.quality = 10;
  o.format = ORFEAS_PL_GLB;
  orfeas_pl_result r;
  assert_int_equal(orfeas_pl_run(png, len, &o, &r, NULL, 0), ORFEAS_PL_OK);
  assert_int_equal(r.grid_width, 1024);
  assert_int_equal(r.grid_height, 8);
  assert_true(r.quality.closed);
  orfeas_pl_result_free(&r);
  free(png);
}

/* orfeas_pl_run_decoded on the decoded image gives the same file as
 * orfeas_pl_run on its bytes; it takes the pixels in every case, and an
 * image outside the limits fails in image_loading as a decode would. */
static void test_run_decoded(void **s) {
  (void)s;
  size_t len;
  uint8_t *png = encode(TPL_STAR_HOLE, 320, 240, 1, &len);
  orfeas_pl_options o;
  orfeas_pl_options_init(&o);
  o.format = ORFEAS_PL_GLB;
  orfeas_pl_result a, b;
  assert_int_equal(orfeas_pl_run(png, len, &o, &a, NULL, 0), ORFEAS_PL_OK);
  orfeas_pl_image img;
  assert_int_equal(orfeas_pl_image_decode(png, len, 0, 0, &img, NULL, 0),
                   ORFEAS_PL_OK);
  assert_int_equal(orfeas_pl_run_decoded(&img, &o, &b, NULL, 0), ORFEAS_PL_OK);
  assert_null(img.rgba); /* taken */
  assert_int_equal(b.image_width, 320);
  assert_int_equal(a.file.size, b.file.size);
  assert_memory_equal(a.file.data, b.file.data, a.file.size);
  assert_int_equal(a.quality.score == b.quality.score, 1);
  orfeas_pl_result_free(&a);
  orfeas_pl_result_free(&b);
  /* Outside the options' limits: refused, pixels still released. */
  assert_int_equal(orfeas_pl_image_decode(png, len, 0, 0, &img, NULL, 0),
                   ORFEAS_PL_OK);
  o.max_side = 256;
  char msg[128];
  assert_int_equal(orfeas_pl_run_decoded(&img, &o, &b, msg, sizeof msg),
                   ORFEAS_PL_ESIZE);
  assert_null(img.rgba);
  orfeas_pl_result_free(&b);
  free(png);
}

/* orfeas_pl_run_prepared on a grid made by orfeas_pl_prepare gives the
 * same file and report as orfeas_pl_run on the bytes, at every quality and
 * in every format; the stages' events are the same seven, and
 * image_preprocessing reports the time prepare took. Ownership: prepare
 * only reads the pixels (one decode serves every quality here) and
 * run_prepared takes the grid, success or not; a grid of another quality,
 * an image outside the limits, a bad quality and no pixels are refused. */
static void test_run_prepared(void **s) {
  (void)s;
  size_t len;
  uint8_t *png = encode(TPL_STAR_HOLE, 320, 240, 1, &len);
  orfeas_pl_image img;
  assert_int_equal(orfeas_pl_image_decode(png, len, 0, 0, &img, NULL, 0),
                   ORFEAS_PL_OK);
  static const int qualities[] = {1, 7, 10};
  for (int qi = 0; qi < 3; qi++)
    for (int f = ORFEAS_PL_STL; f <= ORFEAS_PL_GLB; f++) {
      orfeas_pl_options o;
      orfeas_pl_options_init(&o);
      o.format = (orfeas_pl_format)f;
      o.quality = qualities[qi];
      orfeas_pl_result a, b;
      assert_int_equal(orfeas_pl_run(png, len, &o, &a, NULL, 0), ORFEAS_PL_OK);
      orfeas_pl_prepared *p = NULL;
      assert_int_equal(orfeas_pl_prepare(&img, o.quality, &p, NULL, 0),
                       ORFEAS_PL_OK);
      assert_non_null(img.rgba); /* still the caller's */
      assert_non_null(p);
      assert_int_equal(orfeas_pl_prepared_quality(p), o.quality);
      /* The grid's cells, 5 bytes each, not the 320 x 240 x 4 pixels. */
      assert_true(orfeas_pl_prepared_bytes(p) >=
                  (size_t)a.grid_width * a.grid_height * 5);
      recorder rec = {.n = 0, .cancel_at = -1};
      o.progress = record;
      o.progress_user = &rec;
      assert_int_equal(orfeas_pl_run_prepared(&p, &o, &b, NULL, 0),
                       ORFEAS_PL_OK);
      assert_null(p); /* taken */
      assert_int_equal(a.file.size, b.file.size);
      assert_memory_equal(a.file.data, b.file.data, a.file.size);
      assert_int_equal(b.image_width, 320);
      assert_int_equal(b.image_height, 240);
      assert_int_equal(b.grid_width, a.grid_width);
      assert_int_equal(b.mask_components, a.mask_components);
      assert_true(a.quality.score == b.quality.score);
      assert_int_equal(rec.n, 14);
      for (int i = 0; i < 14; i++)
        assert_int_equal(rec.ev[i].stage, i / 2);
      assert_true(b.stage_ns[ORFEAS_PL_STAGE_IMAGE_PREPROCESSING] > 0);
      assert_int_equal(rec.ev[3].duration_ns,
                       b.stage_ns[ORFEAS_PL_STAGE_IMAGE_PREPROCESSING]);
      orfeas_pl_result_free(&a);
      orfeas_pl_result_free(&b);
    }
  orfeas_pl_options o;
  orfeas_pl_options_init(&o);
  orfeas_pl_result b;
  char msg[128];
  orfeas_pl_prepared *p = NULL;
  /* Another quality: refused with both numbers, the grid released. */
  assert_int_equal(orfeas_pl_prepare(&img, 3, &p, NULL, 0), ORFEAS_PL_OK);
  assert_int_equal(orfeas_pl_run_prepared(&p, &o, &b, msg, sizeof msg),
                   ORFEAS_PL_EINVAL);
  assert_null(p);
  assert_non_null(strstr(msg, "quality 3, not 7"));
  orfeas_pl_result_free(&b);
  /* Outside the options' limits: image_loading refuses it, as a decode. */
  assert_int_equal(orfeas_pl_prepare(&img, 7, &p, NULL, 0), ORFEAS_PL_OK);
  o.max_side = 256;
  assert_int_equal(orfeas_pl_run_prepared(&p, &o, &b, msg, sizeof msg),
                   ORFEAS_PL_ESIZE);
  assert_null(p);
  orfeas_pl_result_free(&b);
  /* A bad quality, no pixels, no grid: refused, *out NULL. */
  p = (orfeas_pl_prepared *)&o; /* must be overwritten */
  assert_int_equal(orfeas_pl_prepare(&img, 11, &p, msg, sizeof msg),
                   ORFEAS_PL_EINVAL);
  assert_null(p);
  assert_non_null(strstr(msg, "quality"));
  orfeas_pl_image_free(&img);
  assert_int_equal(orfeas_pl_prepare(&img, 7, &p, NULL, 0), ORFEAS_PL_EINVAL);
  assert_null(p);
  assert_int_equal(orfeas_pl_run_prepared(&p, &o, &b, NULL, 0),
                   ORFEAS_PL_EINVAL);
  orfeas_pl_result_free(&b);
  free(png);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_run_decoded),
      cmocka_unit_test(test_run_prepared),
      cmocka_unit_test(test_progress),
      cmocka_unit_test(test_cancel),
      cmocka_unit_test(test_options),
      cmocka_unit_test(test_modes_and_dimensions),
      cmocka_unit_test(test_quality_grid_and_simplify),
      cmocka_unit_test(test_hostile),
      cmocka_unit_test(test_extreme_sides),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
