/* pl_meshes.h: small meshes and helpers for the pipeline tests (header-only,
 * static inline). */
#ifndef ORFEAS_PL_MESHES_H
#define ORFEAS_PL_MESHES_H

#include <math.h>
#include <string.h>

#include "orfeas/pipeline.h"

/* An axis-aligned cube of side `side` mm at (ox,0,0), outward CCW; with
 * `copies` 2, a second cube beside it (two parts). Caller frees. */
static inline int cube_mesh(orfeas_pl_mesh *m, float side, int copies,
                            int with_rgb) {
  static const float v[8][3] = {{0, 0, 0}, {1, 0, 0}, {1, 1, 0}, {0, 1, 0},
                                {0, 0, 1}, {1, 0, 1}, {1, 1, 1}, {0, 1, 1}};
  static const uint32_t f[12][3] = {{0, 2, 1}, {0, 3, 2}, {4, 5, 6}, {4, 6, 7},
                                    {0, 1, 5}, {0, 5, 4}, {3, 7, 6}, {3, 6, 2},
                                    {0, 4, 7}, {0, 7, 3}, {1, 2, 6}, {1, 6, 5}};
  if (orfeas_pl_mesh_alloc(m, 8u * (uint32_t)copies, 12u * (uint32_t)copies,
                           with_rgb) != ORFEAS_PL_OK)
    return -1;
  for (int c = 0; c < copies; c++) {
    for (int i = 0; i < 8; i++) {
      for (int k = 0; k < 3; k++)
        m->pos[(c * 8 + i) * 3 + k] =
            v[i][k] * side + (k == 0 ? (float)c * 2 * side : 0);
      if (with_rgb)
        for (int k = 0; k < 3; k++)
          m->rgb[(c * 8 + i) * 3 + k] = (uint8_t)(i * 30 + k);
    }
    for (int t = 0; t < 12; t++)
      for (int k = 0; k < 3; k++)
        m->idx[(c * 12 + t) * 3 + k] = f[t][k] + (uint32_t)c * 8;
  }
  return 0;
}

/* xorshift32: a deterministic stream for random masks and bytes, with no
 * global state (rand() has some). */
static inline uint32_t test_rand(uint32_t *x) {
  *x ^= *x << 13;
  *x ^= *x >> 17;
  *x ^= *x << 5;
  return *x;
}

/* The axis-aligned bounds of a mesh's vertices. */
static inline void mesh_bbox(const orfeas_pl_mesh *m, float lo[3],
                             float hi[3]) {
  for (int k = 0; k < 3; k++)
    lo[k] = INFINITY, hi[k] = -INFINITY;
  for (size_t i = 0; i < (size_t)m->nverts * 3; i++) {
    lo[i % 3] = fminf(lo[i % 3], m->pos[i]);
    hi[i % 3] = fmaxf(hi[i % 3], m->pos[i]);
  }
}

#endif
