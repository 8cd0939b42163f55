/* mesher.c: shape_generation. One grid mesher, two height fields.
 *
 * The mesh is built on the grid's cells, so it is closed and 2-manifold by
 * construction (docs/pipeline.md has the argument):
 *  - every foreground cell gets two front triangles (z = top) and two back
 *    triangles (z = bottom, reversed);
 *  - front and back vertices stay distinct even on the silhouette, where
 *    they are joined by a side wall along every cell edge whose neighbour is
 *    background; the wall is at least `t` thick, so 1-cell-wide features
 *    never collapse into coincident sheets;
 *  - the mask is well-composed (mask.c), so each silhouette vertex has
 *    exactly one incoming and one outgoing wall edge: no pinch vertices.
 *
 * Heights:
 *  - inflate: d = exact distance from each grid vertex to the silhouette,
 *    r = d / R, h = H * sqrt(r (2 - r)) (a round cross-section) with R the
 *    largest distance (at least 1/8 of the grid's short side), front at
 *    +(t/2 + h) and the mirrored back at -(t/2 + h);
 *  - relief: the whole image on a flat base at z = 0, the front at
 *    base + (depth - base) * (1 - luminance): dark is thick, as in a
 *    lithophane.
 * Axes: millimetres, X right, Y the image's up, Z out of the front; x/y keep
 * the image's aspect inside width x height, z spans depth.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* The thinnest wall we build: printers want about 1 mm. */
#define MIN_WALL_MM 1.0

typedef struct {
  const pl_grid *g;
  int relief;
} cells_view;

static inline int cell_in(const cells_view *c, int64_t cx, int64_t cy) {
  if (cx < 0 || cy < 0 || cx >= c->g->gw || cy >= c->g->gh)
    return 0;
  return c->relief || c->g->fg[(size_t)cy * c->g->gw + (size_t)cx];
}

/* Per grid vertex: bit 0 = touches a foreground cell, bit 1 = touches a
 * background cell (or the grid's edge). */
static void vertex_kinds(const cells_view *c, uint8_t *kind) {
  uint32_t vw = c->g->gw + 1, vh = c->g->gh + 1;
  for (uint32_t j = 0; j < vh; j++)
    for (uint32_t i = 0; i < vw; i++) {
      int n = cell_in(c, (int64_t)i - 1, (int64_t)j - 1) +
              cell_in(c, i, (int64_t)j - 1) + cell_in(c, (int64_t)i - 1, j) +
              cell_in(c, i, j);
      kind[(size_t)j * vw + i] = (uint8_t)((n > 0) | ((n < 4) << 1));
    }
}

static orfeas_pl_code inflate_heights(const cells_view *c, const uint8_t *kind,
                                      double depth, float *zt, float *zb) {
  uint32_t vw = c->g->gw + 1, vh = c->g->gh + 1;
  size_t nv = (size_t)vw * vh;
  /* Seeds: every vertex that is not strictly inside the foreground. */
  uint8_t *seed = calloc(nv, 1);
  if (seed == NULL)
    return ORFEAS_PL_ENOMEM;
  for (size_t i = 0; i < nv; i++)
    seed[i] = kind[i] != 1;
  orfeas_pl_code rc = pl_edt(seed, vw, vh, zt);
  free(seed);
  if (rc != ORFEAS_PL_OK)
    return rc;
  float dmax = 0;
  for (size_t i = 0; i < nv; i++)
    if (kind[i] == 1 && zt[i] > dmax)
      dmax = zt[i];
  /* A shape much narrower than the image (strokes, a thin ring) would
   * otherwise reach the full depth within a cell or two of its rim: spikes,
   * slivers and a part thicker than it is wide. Below an eighth of the
   * grid's short side the profile keeps its radius and stays lower. */
  uint32_t short_side = c->g->gw < c->g->gh ? c->g->gw : c->g->gh;
  float rmin = (float)short_side / 8.0f;
  if (dmax < rmin)
    dmax = rmin;
  double t = depth / 2 < MIN_WALL_MM ? depth / 2 : MIN_WALL_MM;
  double H = (depth - t) / 2;
  for (size_t i = 0; i < nv; i++) {
    double r = dmax > 0 && kind[i] == 1 ? zt[i] / dmax : 0;
    if (r > 1)
      r = 1;
    double z = t / 2 + H * sqrt(r * (2 - r));
    zt[i] = (float)z;
    zb[i] = (float)-z;
  }
  return ORFEAS_PL_OK;
}

static void relief_heights(const pl_grid *g, double depth, float *zt,
                           float *zb) {
  uint32_t vw = g->gw + 1, vh = g->gh + 1;
  double base = depth / 2 < MIN_WALL_MM ? depth / 2 : MIN_WALL_MM;
  for (uint32_t j = 0; j < vh; j++)
    for (uint32_t i = 0; i < vw; i++) {
      /* Mean luminance of the (up to 4) cells around the vertex. */
      uint32_t sum = 0, n = 0;
      for (uint32_t dy = 0; dy < 2; dy++)
        for (uint32_t dx = 0; dx < 2; dx++) {
          int64_t cx = (int64_t)i - 1 + dx, cy = (int64_t)j - 1 + dy;
          if (cx < 0 || cy < 0 || cx >= g->gw || cy >= g->gh)
            continue;
          sum += g->lum[(size_t)cy * g->gw + (size_t)cx];
          n++;
        }
      double lum = n ? (double)sum / n / 255.0 : 1.0;
      size_t k = (size_t)j * vw + i;
      zt[k] = (float)(base + (depth - base) * (1.0 - lum));
      zb[k] = 0.0f;
    }
}

void pl_shape_free(pl_shape *s) {
  if (s == NULL)
    return;
  orfeas_pl_mesh_free(&s->mesh);
  free(s->vgrid);
  memset(s, 0, sizeof *s);
}

/* Appends the two triangles of quad p0 p1 p2 p3 (counter-clockwise seen from
 * the side its normal points to). */
static inline uint32_t *quad(uint32_t *t, uint32_t p0, uint32_t p1, uint32_t p2,
                             uint32_t p3) {
  t[0] = p0, t[1] = p1, t[2] = p2;
  t[3] = p0, t[4] = p2, t[5] = p3;
  return t + 6;
}

static orfeas_pl_code build(const cells_view *c, const uint8_t *kind,
                            const float *zt, const float *zb, double cell_mm,
                            pl_shape *s) {
  const pl_grid *g = c->g;
  uint32_t vw = g->gw + 1, vh = g->gh + 1;
  size_t nv = (size_t)vw * vh;
  /* Mesh vertex ids per grid vertex: front id; the back one is front + 1. */
  uint32_t *id = malloc(nv * sizeof *id);
  if (id == NULL)
    return ORFEAS_PL_ENOMEM;
  uint64_t nverts = 0, ntris = 0;
  for (size_t i = 0; i < nv; i++) {
    id[i] = (uint32_t)nverts;
    if (kind[i] & 1)
      nverts += 2;
  }
  for (uint32_t cy = 0; cy < g->gh; cy++)
    for (uint32_t cx = 0; cx < g->gw; cx++) {
      if (!cell_in(c, cx, cy))
        continue;
      ntris += 4;
      ntris += 2 * (uint64_t)(!cell_in(c, cx, (int64_t)cy + 1) +
                              !cell_in(c, (int64_t)cx + 1, cy) +
                              !cell_in(c, cx, (int64_t)cy - 1) +
                              !cell_in(c, (int64_t)cx - 1, cy));
    }
  if (nverts > UINT32_MAX || ntris > UINT32_MAX / 3) {
    free(id);
    return ORFEAS_PL_ENOMEM;
  }
  orfeas_pl_code rc =
      orfeas_pl_mesh_alloc(&s->mesh, (uint32_t)nverts, (uint32_t)ntris, 0);
  s->vgrid = rc == ORFEAS_PL_OK ? malloc(nverts * sizeof *s->vgrid) : NULL;
  if (rc != ORFEAS_PL_OK || s->vgrid == NULL) {
    free(id);
    pl_shape_free(s);
    return ORFEAS_PL_ENOMEM;
  }
  double ox = g->gw / 2.0, oy = g->gh / 2.0;
  for (uint32_t j = 0; j < vh; j++)
    for (uint32_t i = 0; i < vw; i++) {
      size_t k = (size_t)j * vw + i;
      if (!(kind[k] & 1))
        continue;
      float *p = s->mesh.pos + (size_t)id[k] * 3;
      p[0] = p[3] = (float)((i - ox) * cell_mm);
      p[1] = p[4] = (float)((oy - j) * cell_mm);
      p[2] = zt[k];
      p[5] = zb[k];
      s->vgrid[id[k]] = s->vgrid[id[k] + 1] = (uint32_t)k;
    }
  uint32_t *t = s->mesh.idx;
  for (uint32_t cy = 0; cy < g->gh; cy++)
    for (uint32_t cx = 0; cx < g->gw; cx++) {
      if (!cell_in(c, cx, cy))
        continue;
      /* Corners counter-clockwise seen from +Z (image rows grow downward):
       * a bottom-left, b bottom-right, c top-right, d top-left. */
      uint32_t a = id[(size_t)(cy + 1) * vw + cx];
      uint32_t b = id[(size_t)(cy + 1) * vw + cx + 1];
      uint32_t cc = id[(size_t)cy * vw + cx + 1];
      uint32_t d = id[(size_t)cy * vw + cx];
      t = quad(t, a, b, cc, d);                 /* front */
      t = quad(t, a + 1, d + 1, cc + 1, b + 1); /* back, reversed */
      /* Walls on the cell's edges, walked counter-clockwise (a->b, b->c,
       * c->d, d->a); outside lies to the right of each. */
      const uint32_t ring[5] = {a, b, cc, d, a};
      const int64_t nx[4] = {cx, (int64_t)cx + 1, cx, (int64_t)cx - 1};
      const int64_t ny[4] = {(int64_t)cy + 1, cy, (int64_t)cy - 1, cy};
      for (int e = 0; e < 4; e++) {
        if (cell_in(c, nx[e], ny[e]))
          continue;
        uint32_t p = ring[e], q = ring[e + 1];
        t = quad(t, p, p + 1, q + 1, q);
      }
    }
  free(id);
  return ORFEAS_PL_OK;
}

orfeas_pl_code pl_shape_build(const pl_grid *g, orfeas_pl_mode mode,
                              double width_mm, double height_mm,
                              double depth_mm, pl_shape *s) {
  memset(s, 0, sizeof *s);
  cells_view c = {g, mode == ORFEAS_PL_MODE_RELIEF};
  if (!c.relief && g->fg_cells == 0)
    return ORFEAS_PL_EINVAL;
  size_t nv = (size_t)(g->gw + 1) * (g->gh + 1);
  /* Scratch owned here: vertex kinds and the two height fields. */
  uint8_t *kind = malloc(nv);
  float *zt = malloc(nv * sizeof *zt);
  float *zb = malloc(nv * sizeof *zb);
  orfeas_pl_code rc = ORFEAS_PL_ENOMEM;
  if (kind && zt && zb) {
    vertex_kinds(&c, kind);
    rc = ORFEAS_PL_OK;
    if (c.relief)
      relief_heights(g, depth_mm, zt, zb);
    else
      rc = inflate_heights(&c, kind, depth_mm, zt, zb);
    /* Keep the aspect ratio: the grid fits inside width x height. */
    double sx = width_mm / g->gw, sy = height_mm / g->gh;
    if (rc == ORFEAS_PL_OK)
      rc = build(&c, kind, zt, zb, sx < sy ? sx : sy, s);
  }
  free(kind);
  free(zt);
  free(zb);
  s->gw = g->gw;
  s->gh = g->gh;
  return rc;
}
