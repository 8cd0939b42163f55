/* mesh.c: the mesh struct's allocation and the geometry helpers the writers
 * share. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

orfeas_pl_code orfeas_pl_mesh_alloc(orfeas_pl_mesh *m, uint32_t nverts,
                                    uint32_t ntris, int with_rgb) {
  memset(m, 0, sizeof *m);
  if (ntris > UINT32_MAX / 3)
    return ORFEAS_PL_ENOMEM;
  /* +1: a zero-sized mesh still gets valid (empty) arrays. */
  m->pos = malloc(((size_t)nverts * 3 + 1) * sizeof *m->pos);
  m->idx = malloc(((size_t)ntris * 3 + 1) * sizeof *m->idx);
  m->rgb = with_rgb ? malloc((size_t)nverts * 3 + 1) : NULL;
  if (!m->pos || !m->idx || (with_rgb && !m->rgb)) {
    orfeas_pl_mesh_free(m);
    return ORFEAS_PL_ENOMEM;
  }
  m->nverts = nverts;
  m->ntris = ntris;
  return ORFEAS_PL_OK;
}

void orfeas_pl_mesh_free(orfeas_pl_mesh *m) {
  if (m == NULL)
    return;
  free(m->pos);
  free(m->rgb);
  free(m->idx);
  memset(m, 0, sizeof *m);
}

void pl_tri_normal(const orfeas_pl_mesh *m, uint32_t t, float n[3]) {
  const uint32_t *i = m->idx + (size_t)t * 3;
  const float *a = m->pos + (size_t)i[0] * 3, *b = m->pos + (size_t)i[1] * 3,
              *c = m->pos + (size_t)i[2] * 3;
  double u[3] = {b[0] - a[0], b[1] - a[1], b[2] - a[2]};
  double v[3] = {c[0] - a[0], c[1] - a[1], c[2] - a[2]};
  double x = u[1] * v[2] - u[2] * v[1], y = u[2] * v[0] - u[0] * v[2],
         z = u[0] * v[1] - u[1] * v[0];
  double len = sqrt(x * x + y * y + z * z);
  if (len > 0) {
    n[0] = (float)(x / len);
    n[1] = (float)(y / len);
    n[2] = (float)(z / len);
  } else {
    n[0] = n[1] = n[2] = 0.0f;
  }
}
