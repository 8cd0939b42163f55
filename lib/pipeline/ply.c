/* ply.c: binary little-endian PLY. Vertices as float x y z (+ uchar
 * red green blue when the mesh has colour), faces as a uchar-counted list of
 * uint indices. Millimetres. */
#include "internal.h"

orfeas_pl_code pl_write_ply(const orfeas_pl_mesh *m, orfeas_pl_buffer *b) {
  int rgb = m->rgb != NULL;
  orfeas_pl_code rc = pl_buf_printf(
      b,
      "ply\nformat binary_little_endian 1.0\ncomment ORFEAS, millimetres\n"
      "element vertex %u\nproperty float x\nproperty float y\n"
      "property float z\n%s"
      "element face %u\nproperty list uchar uint vertex_indices\n"
      "end_header\n",
      m->nverts,
      rgb ? "property uchar red\nproperty uchar green\nproperty uchar blue\n"
          : "",
      m->ntris);
  size_t vsize = (size_t)m->nverts * (12 + (rgb ? 3 : 0));
  size_t fsize = (size_t)m->ntris * 13;
  if (rc == ORFEAS_PL_OK)
    rc = pl_buf_reserve(b, vsize + fsize);
  if (rc != ORFEAS_PL_OK)
    return rc;
  uint8_t *p = b->data + b->size;
  for (uint32_t v = 0; v < m->nverts; v++) {
    for (int k = 0; k < 3; k++, p += 4)
      pl_put_f32(p, m->pos[(size_t)v * 3 + k]);
    if (rgb)
      for (int k = 0; k < 3; k++)
        *p++ = m->rgb[(size_t)v * 3 + k];
  }
  for (uint32_t t = 0; t < m->ntris; t++) {
    *p++ = 3;
    for (int k = 0; k < 3; k++, p += 4)
      pl_put_u32(p, m->idx[(size_t)t * 3 + k]);
  }
  b->size += vsize + fsize;
  return ORFEAS_PL_OK;
}
