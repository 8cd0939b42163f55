/* pl_gen.c: orfeas-pl-gen, the producer half of the output validation.
 *
 *   orfeas-pl-gen OUTDIR [--big]
 *
 * Draws the test images (every shape, with and without alpha, PNG and JPEG,
 * 32 px and 4096 px sides; --big adds one 4096 x 4096 image), runs each
 * through the pipeline in every format, and writes the files to OUTDIR with
 * a manifest line per file:
 *
 *   FILE FORMAT TRIANGLES COMPONENTS CLOSED
 *
 * CLOSED is our own verdict (orfeas_pl_quality_check). It also writes STLs
 * that are broken on purpose (a hole, a flipped facet, a doubled facet, a
 * detached sliver) with our verdict, so validate-outputs can check that
 * admesh agrees with us. The consumer half is tests/pipeline/validate-outputs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "orfeas/pipeline.h"
#include "pl_images.h"

static FILE *manifest;
static const char *outdir;
static int failures;

static void record(const char *name, orfeas_pl_format f, const void *data,
                   size_t len, uint32_t tris, uint32_t comps, int closed) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s.%s", outdir, name,
           orfeas_pl_format_name(f));
  if (tpl_write_file(path, data, len) != 0) {
    fprintf(stderr, "orfeas-pl-gen: cannot write %s\n", path);
    failures++;
    return;
  }
  fprintf(manifest, "%s %s %u %u %d\n", path, orfeas_pl_format_name(f), tris,
          comps, closed);
}

/* One image through all four formats. */
static void run_case(const char *name, const uint8_t *img, size_t len,
                     int quality, orfeas_pl_mode mode, double simplify) {
  for (int f = ORFEAS_PL_STL; f <= ORFEAS_PL_GLB; f++) {
    orfeas_pl_options o;
    orfeas_pl_options_init(&o);
    o.format = (orfeas_pl_format)f;
    o.quality = quality;
    o.mode = mode;
    o.simplify_ratio = simplify;
    orfeas_pl_result r;
    char msg[256];
    orfeas_pl_code rc = orfeas_pl_run(img, len, &o, &r, msg, sizeof msg);
    if (rc != ORFEAS_PL_OK) {
      fprintf(stderr, "orfeas-pl-gen: %s: %s\n", name, msg);
      failures++;
    } else {
      uint32_t comps = r.mode == ORFEAS_PL_MODE_RELIEF ? 1 : r.mask_components;
      record(name, o.format, r.file.data, r.file.size, r.quality.triangles,
             comps, r.quality.closed);
    }
    orfeas_pl_result_free(&r);
  }
}

static void image_case(tpl_shape s, uint32_t w, uint32_t h, const char *codec,
                       int alpha, int quality) {
  uint8_t *px = tpl_draw(s, w, h, alpha, w ^ h);
  size_t len = 0;
  uint8_t *enc = strcmp(codec, "jpeg") == 0
                     ? tpl_jpeg(px, w, h, &len)
                     : tpl_png(px, w, h, alpha ? 4 : 3, &len);
  char name[128];
  snprintf(name, sizeof name, "%s_%ux%u_%s%s_q%d", tpl_shape_name(s), w, h,
           codec, alpha ? "_alpha" : "", quality);
  if (enc == NULL) {
    fprintf(stderr, "orfeas-pl-gen: cannot encode %s\n", name);
    failures++;
  } else {
    run_case(name, enc, len, quality, ORFEAS_PL_MODE_AUTO, 1.0);
  }
  free(enc);
  free(px);
}

/* STLs broken on purpose, from a clean mesh, with our verdict on each. */
static void broken_cases(void) {
  uint8_t *px = tpl_draw(TPL_STAR_HOLE, 64, 64, 1, 7);
  size_t len;
  uint8_t *png = tpl_png(px, 64, 64, 4, &len);
  orfeas_pl_options o;
  orfeas_pl_options_init(&o);
  orfeas_pl_result r;
  if (png == NULL ||
      orfeas_pl_run_keep_mesh(png, len, &o, &r, NULL, 0) != ORFEAS_PL_OK) {
    fprintf(stderr, "orfeas-pl-gen: cannot build the clean mesh\n");
    failures++;
    free(png);
    free(px);
    return;
  }
  orfeas_pl_mesh *m = &r.mesh;
  const char *names[] = {"broken_clean", "broken_hole", "broken_flipped",
                         "broken_doubled", "broken_gap"};
  for (int k = 0; k < 5; k++) {
    orfeas_pl_mesh b;
    uint32_t extra = k == 3 ? 1 : 0;
    if (orfeas_pl_mesh_alloc(&b, m->nverts + 3, m->ntris + extra, 0) !=
        ORFEAS_PL_OK) {
      failures++;
      break;
    }
    memcpy(b.pos, m->pos, (size_t)m->nverts * 12);
    memcpy(b.idx, m->idx, (size_t)m->ntris * 12);
    b.nverts = m->nverts;
    uint32_t t = m->ntris / 2; /* a front-sheet triangle */
    if (k == 1) {              /* a hole: drop one triangle */
      memmove(b.idx + t * 3, b.idx + (t + 1) * 3,
              ((size_t)m->ntris - t - 1) * 12);
      b.ntris--;
    } else if (k == 2) { /* one facet wound the wrong way */
      uint32_t tmp = b.idx[t * 3 + 1];
      b.idx[t * 3 + 1] = b.idx[t * 3 + 2];
      b.idx[t * 3 + 2] = tmp;
    } else if (k == 3) { /* the same facet twice: non-manifold edges */
      memcpy(b.idx + (size_t)m->ntris * 3, b.idx + t * 3, 12);
    } else if (k == 4) { /* one facet moved off its neighbours: a gap */
      for (int v = 0; v < 3; v++) {
        const float *p = m->pos + (size_t)m->idx[t * 3 + v] * 3;
        float *q = b.pos + (size_t)(m->nverts + v) * 3;
        q[0] = p[0], q[1] = p[1], q[2] = p[2] + 0.5f;
        b.idx[t * 3 + v] = m->nverts + (uint32_t)v;
      }
      b.nverts += 3;
    }
    orfeas_pl_quality q;
    orfeas_pl_buffer out = {0};
    if (orfeas_pl_quality_check(&b, 0, 0, &q) != ORFEAS_PL_OK ||
        orfeas_pl_write(&b, ORFEAS_PL_STL, &out) != ORFEAS_PL_OK) {
      failures++;
    } else {
      char path[512];
      snprintf(path, sizeof path, "%s/%s.stl", outdir, names[k]);
      if (tpl_write_file(path, out.data, out.size) != 0)
        failures++;
      fprintf(manifest, "%s broken-stl %u %u %d\n", path, b.ntris, q.components,
              q.closed);
    }
    orfeas_pl_buffer_free(&out);
    orfeas_pl_mesh_free(&b);
  }
  orfeas_pl_result_free(&r);
  free(png);
  free(px);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: orfeas-pl-gen OUTDIR [--big]\n");
    return 2;
  }
  outdir = argv[1];
  int big = argc > 2 && strcmp(argv[2], "--big") == 0;
  mkdir(outdir, 0755);
  char path[512];
  snprintf(path, sizeof path, "%s/manifest.txt", outdir);
  manifest = fopen(path, "w");
  if (manifest == NULL) {
    perror(path);
    return 1;
  }
  for (int s = 0; s < TPL_SHAPE_COUNT; s++) {
    image_case((tpl_shape)s, 160, 120, "png", 1, 7);
    image_case((tpl_shape)s, 160, 120, "png", 0, 7);
    image_case((tpl_shape)s, 120, 160, "jpeg", 0, 7);
    image_case((tpl_shape)s, 32, 32, "png", 1, 7);
  }
  /* The extreme aspect: a 4096 px side next to a 32 px one, both codecs. */
  image_case(TPL_DISKS, 4096, 32, "png", 1, 10);
  image_case(TPL_THIN, 32, 4096, "jpeg", 0, 5);
  /* Quality ends and forced relief. */
  image_case(TPL_STAR_HOLE, 300, 200, "png", 1, 1);
  image_case(TPL_STAR_HOLE, 300, 200, "png", 1, 10);
  {
    uint8_t *px = tpl_draw(TPL_STAR_HOLE, 96, 64, 0, 1);
    size_t len;
    uint8_t *png = tpl_png(px, 96, 64, 3, &len);
    if (png) {
      run_case("star_hole_96x64_relief", png, len, 7, ORFEAS_PL_MODE_RELIEF,
               1.0);
      /* Simplified meshes go through the same external checks. */
      run_case("star_hole_96x64_relief_simplified", png, len, 7,
               ORFEAS_PL_MODE_RELIEF, 0.5);
      run_case("star_hole_96x64_inflate_simplified", png, len, 7,
               ORFEAS_PL_MODE_INFLATE, 0.9);
    }
    free(png);
    free(px);
  }
  if (big)
    image_case(TPL_STAR_HOLE, 4096, 4096, "png", 1, 7);
  broken_cases();
  fclose(manifest);
  if (failures) {
    fprintf(stderr, "orfeas-pl-gen: %d failures\n", failures);
    return 1;
  }
  return 0;
}
