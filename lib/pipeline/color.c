/* color.c: texture_synthesis. One colour per vertex, sampled from the image.
 *
 * mask.c already averaged each cell's foreground pixels, so a vertex takes
 * the mean of the (up to four) shape cells around it: O(vertices), and the
 * silhouette does not pick up the background it was cut from. Front and back
 * share the colour (the back is the mirrored front). PLY and GLB carry it;
 * STL and OBJ are geometry only.
 */
#include <stdlib.h>

#include "internal.h"

orfeas_pl_code pl_colour(const pl_grid *g, orfeas_pl_mode mode, pl_shape *s) {
  orfeas_pl_mesh *m = &s->mesh;
  if (m->rgb == NULL) {
    /* Owned by the mesh from here (orfeas_pl_mesh_free). */
    m->rgb = malloc((size_t)m->nverts * 3);
    if (m->rgb == NULL)
      return ORFEAS_PL_ENOMEM;
  }
  int relief = mode == ORFEAS_PL_MODE_RELIEF;
  uint32_t vw = g->gw + 1;
  for (uint32_t v = 0; v < m->nverts; v++) {
    uint32_t k = s->vgrid[v];
    int64_t i = k % vw, j = k / vw;
    uint32_t sum[3] = {0, 0, 0}, n = 0;
    for (int dy = -1; dy <= 0; dy++)
      for (int dx = -1; dx <= 0; dx++) {
        int64_t cx = i + dx, cy = j + dy;
        if (cx < 0 || cy < 0 || cx >= g->gw || cy >= g->gh)
          continue;
        size_t c = (size_t)cy * g->gw + (size_t)cx;
        if (!relief && !g->fg[c])
          continue;
        for (int q = 0; q < 3; q++)
          sum[q] += g->rgb[c * 3 + q];
        n++;
      }
    for (int q = 0; q < 3; q++)
      m->rgb[(size_t)v * 3 + q] = (uint8_t)(n ? sum[q] / n : 128);
  }
  return ORFEAS_PL_OK;
}
