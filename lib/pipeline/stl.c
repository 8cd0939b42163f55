/* stl.c: binary STL. 80-byte header (not starting with "solid", which
 * readers take for ASCII), uint32 count, then 50 bytes per triangle: unit
 * normal, three vertices, a zero attribute. Millimetres, Z up. */
#include <string.h>

#include "internal.h"

orfeas_pl_code pl_write_stl(const orfeas_pl_mesh *m, orfeas_pl_buffer *b) {
  size_t size = 84 + (size_t)m->ntris * 50;
  orfeas_pl_code rc = pl_buf_reserve(b, size);
  if (rc != ORFEAS_PL_OK)
    return rc;
  uint8_t *p = b->data + b->size;
  memset(p, 0, 80);
  static const char head[] = "ORFEAS binary STL, millimetres";
  memcpy(p, head, sizeof head - 1);
  pl_put_u32(p + 80, m->ntris);
  p += 84;
  for (uint32_t t = 0; t < m->ntris; t++, p += 50) {
    float n[3];
    pl_tri_normal(m, t, n);
    for (int k = 0; k < 3; k++)
      pl_put_f32(p + 4 * k, n[k]);
    for (int v = 0; v < 3; v++) {
      const float *q = m->pos + (size_t)m->idx[(size_t)t * 3 + v] * 3;
      for (int k = 0; k < 3; k++)
        pl_put_f32(p + 12 + 12 * v + 4 * k, q[k]);
    }
    pl_put_u16(p + 48, 0);
  }
  b->size += size;
  return ORFEAS_PL_OK;
}
