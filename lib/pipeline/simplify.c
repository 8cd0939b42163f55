/* simplify.c: mesh_optimization. Optional simplification, always verified.
 *
 * meshoptimizer's edge collapse often breaks closed meshes (non-manifold
 * edges, flipped slivers) even when its own error is tiny. So the result is
 * checked with the same pass quality_validation uses; a failure is retried
 * once at a milder ratio, and if that fails too the unsimplified mesh ships.
 * A mesh that was closed never leaves this stage open.
 */
#include <meshoptimizer.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* meshoptimizer stops collapsing past this relative error (1 % of the
 * extent), even before it reaches the triangle target. */
#define SIMPLIFY_MAX_ERROR 0.01f

/* One attempt: a compacted, simplified copy of m in *out. */
static orfeas_pl_code attempt(const orfeas_pl_mesh *m, double ratio,
                              orfeas_pl_mesh *out, double *err) {
  memset(out, 0, sizeof *out);
  size_t n = (size_t)m->ntris * 3;
  size_t target = (size_t)(ratio * (double)m->ntris) * 3;
  /* Scratch owned here: meshoptimizer needs room for all indices. */
  uint32_t *dst = malloc((n + 1) * sizeof *dst);
  uint32_t *remap = malloc(((size_t)m->nverts + 1) * sizeof *remap);
  if (dst == NULL || remap == NULL) {
    free(dst);
    free(remap);
    return ORFEAS_PL_ENOMEM;
  }
  float rel = 0;
  size_t got =
      meshopt_simplify(dst, m->idx, n, m->pos, m->nverts, 3 * sizeof(float),
                       target, SIMPLIFY_MAX_ERROR, 0, &rel);
  size_t nv = meshopt_optimizeVertexFetchRemap(remap, dst, got, m->nverts);
  orfeas_pl_code rc = orfeas_pl_mesh_alloc(out, (uint32_t)nv,
                                           (uint32_t)(got / 3), m->rgb != NULL);
  if (rc == ORFEAS_PL_OK) {
    meshopt_remapIndexBuffer(out->idx, dst, got, remap);
    meshopt_remapVertexBuffer(out->pos, m->pos, m->nverts, 3 * sizeof(float),
                              remap);
    if (m->rgb)
      meshopt_remapVertexBuffer(out->rgb, m->rgb, m->nverts, 3, remap);
  }
  free(dst);
  free(remap);
  *err = rel;
  return rc;
}

orfeas_pl_code pl_simplify(orfeas_pl_mesh *m, double ratio,
                           pl_simplify_report *rep) {
  memset(rep, 0, sizeof *rep);
  if (ratio >= 1.0 || m->ntris == 0)
    return ORFEAS_PL_OK;
  const double tries[2] = {ratio, (1.0 + ratio) / 2.0};
  for (int k = 0; k < 2; k++) {
    orfeas_pl_mesh s;
    double err = 0;
    orfeas_pl_code rc = attempt(m, tries[k], &s, &err);
    if (rc != ORFEAS_PL_OK)
      return rc;
    orfeas_pl_quality q;
    rc = orfeas_pl_quality_check(&s, 0, err, &q);
    /* Closed with positive volume is the bar; the few zero-area triangles
     * a collapse can leave are topologically harmless, and the score's D
     * term already counts them. */
    if (rc == ORFEAS_PL_OK && q.closed && q.volume_mm3 > 0 &&
        s.ntris < m->ntris) {
      orfeas_pl_mesh_free(m);
      *m = s;
      rep->simplified = 1;
      rep->error = err;
      return ORFEAS_PL_OK;
    }
    orfeas_pl_mesh_free(&s);
    if (rc == ORFEAS_PL_ENOMEM)
      return rc;
    rep->fallback = 1;
  }
  return ORFEAS_PL_OK;
}
